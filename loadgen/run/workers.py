"""Multi-process runs: ``--workers N`` shards of one population, merged exactly.

Each worker process runs its own event loop (uvloop) and the devices ``i`` with
``i % N == w``; identities, versions and profiles do not depend on N (see
``engine.build_population``).  The parent holds the embedded target (started by
the command line, loadgen/exchange/launch.py) and runs the scenario's events, the
progress line and the Prometheus endpoint.  Workers send the parent a snapshot of their cumulative counters every
sample interval (cheap dicts over a multiprocessing queue -- nothing per request);
the parent's :class:`~loadgen.results.stats.Stats` is the sum of the latest snapshots, so
the metrics of N workers are one endpoint with correct totals.  At the end each
worker sends its HDR histograms (encoded) and time series; the parent merges
them (histograms added, so percentiles are those of all requests).
"""

import asyncio
import multiprocessing
import os
import pickle
import queue as queue_mod
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace

from loadgen.results import metrics
from loadgen.results.histograms import _HistogramView, merge_series
from loadgen.results.merge import histograms_of
from loadgen.results.stats import Stats
from loadgen.results.thresholds import AbortWatch, needs_histograms
from loadgen.run import day

# What a worker ships to the parent is derived from Stats itself, so a counter added to Stats is
# merged without a second list to keep in step: every Counter is added key by key, every number
# (but the clock fields) is summed, every ``*_buckets`` list is summed slot by slot.
_FRESH = vars(Stats())
_NOT_SUMMED = ("started", "ended", "interrupted", "total_devices")
_COUNTERS = tuple(n for n, v in _FRESH.items() if isinstance(v, Counter))
_SCALARS = tuple(n for n, v in _FRESH.items()
                 if type(v) in (int, float) and n not in _NOT_SUMMED)
_LISTS = tuple(n for n, v in _FRESH.items() if n.endswith("_buckets") and isinstance(v, list))
del _FRESH


def _snapshot(stats, devices, final, live_histograms=False):
    """``live_histograms``: the HDR histograms (encoded) in every snapshot, not only the final one --
    when the parent judges an abort_on_fail threshold on a percentile (thresholds.needs_histograms)."""
    snap = {
        "by_key": dict(stats.by_key),
        "buckets": {k: list(v) for k, v in stats.buckets.items()},
        "sums": dict(stats.sums),
        "devices": dict(Counter(d.state for d in devices)),
        "aborted": stats.aborted,  # the worker's backlog guard stopped it (engine.backlog_exceeded)
    }
    for name in _COUNTERS:
        snap[name] = dict(getattr(stats, name))
    for name in _SCALARS:
        snap[name] = getattr(stats, name)
    for name in _LISTS:
        snap[name] = list(getattr(stats, name))
    if final or live_histograms:
        snap["histograms"] = {c: r.histogram().encode() for c, r in stats.latency.items()}
        snap["timings"] = {c: r.histogram().encode() for c, r in stats.timings.items()}
        snap["task_latency"] = {k: r.histogram().encode() for k, r in stats.task_hdr.items()}
    if final:
        snap["final"] = True
        snap["push_latency"] = {k: r.histogram().encode() for k, r in stats.push_hdr.items()}
        snap["series"] = stats.series
        snap["started"], snap["ended"] = stats.started, stats.ended
        snap["interrupted"] = stats.interrupted
    return snap


class SharedQueue:
    """The tasks queued on every worker (loadgen/results/tasks.py), counted in shared memory as they
    change, so that the run's peak is exact: the peak of the sum, not the sum of the workers' peaks
    (which need not fall together).  Cheap: a worker touches it only when its own queue changes (a
    task falls due while its device is busy, or such a task starts), under a process-shared lock.

    ``values``: [queued now, peak, broken]; broken is set when a worker could not take the lock in
    time (one killed while holding it): the parent then falls back to the sum of the workers' peaks,
    an upper bound, and says so."""

    LOCK_WAIT = 1.0  # s

    def __init__(self, ctx):
        self.values = ctx.RawArray("q", 3)
        self.lock = ctx.Lock()

    def follow(self, stats):
        """Count ``stats``' queue changes (Stats.task_queued) here too: a worker's Stats, before its
        devices start."""
        own = stats.task_queued
        values, lock, wait = self.values, self.lock, self.LOCK_WAIT

        def task_queued(delta):
            own(delta)
            if lock.acquire(True, wait):
                try:
                    now = values[0] + delta
                    values[0] = now
                    if now > values[1]:
                        values[1] = now
                finally:
                    lock.release()
            else:
                values[2] = 1

        stats.task_queued = task_queued

    def queued(self):
        """Tasks queued on every worker now."""
        return self.values[0]

    def peak(self):
        """The exact peak of the run's queue, or None when it cannot be known (see ``broken``)."""
        return None if self.values[2] else self.values[1]


def _die_with_parent(parent_pid):
    """End this worker with its parent: prctl(PR_SET_PDEATHSIG, SIGKILL) on Linux (prctl(2)); a
    worker whose parent is already gone ends now.  Without prctl the parent's pipe tells (see
    _worker's watcher)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError, TypeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def _worker(scenario, url, context, shard, shards, out, go, halt, parent_pid, queue=None):
    """One worker process: its shard of the population, run until the end, ``halt`` (the parent
    asks every worker to stop: a signal to the parent) or SIGTERM to the worker itself.

    SIGINT is ignored: the terminal sends it to the whole process group, and the parent, which
    also receives it, stops the workers itself (graceful stop, then their results).  The run's
    clock starts when the parent sets ``go`` (every worker ready), so the parent's scenario events
    fall at the same point of every worker's run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    early = []
    signal.signal(signal.SIGTERM, lambda *_: early.append(True))  # until the run's loop handles it
    _die_with_parent(parent_pid)
    from loadgen.run.engine import run
    from loadgen.wire.loop import loop_factory

    live = needs_histograms(scenario.thresholds)

    def on_tick(stats, devices, final):
        out.put((shard, _snapshot(stats, devices, final, live)))

    async def main():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def watch():  # the parent's halt, or the parent gone
            while not halt.value and os.getppid() == parent_pid:
                time.sleep(0.1)
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the run is over (its loop closed): nothing to stop
                pass

        threading.Thread(target=watch, daemon=True).start()
        if early:
            stop.set()

        async def ready():
            out.put((shard, {"ready": True}))
            while not go.value and not stop.is_set():
                await asyncio.sleep(0.01)
            if halt.value or early:  # the parent opened the gate to stop, or a SIGTERM came: no device starts
                stop.set()

        # abort_on_fail is judged by the parent on every worker's merged figures, not by each worker on its own
        return await run(replace(scenario, thresholds=[th for th in scenario.thresholds if not th.abort_on_fail]),
                         target_url=url, context=context, progress=False, handle_signals=(signal.SIGTERM,),
                         shard=(shard, shards), on_tick=on_tick, attach_metrics=False, stop=stop, ready=ready,
                         queue=queue)

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(main())
    except BaseException as exc:  # report, never hang the parent
        report = {"error": "%s: %s" % (type(exc).__name__, exc)}
        try:
            pickle.dumps(exc)
            report["exception"] = exc  # re-raised by the parent when no worker has results (e.g. a bad file)
        except Exception:
            pass
        out.put((shard, report))


def _merge_into(stats, snaps):
    """Set ``stats``' counters to the sum of the workers' latest snapshots."""
    stats.by_key = {}
    stats.buckets = {}
    stats.sums = {}
    for name in _COUNTERS:
        setattr(stats, name, Counter())
    for name in _SCALARS:
        setattr(stats, name, 0)
    for name in _LISTS:
        setattr(stats, name, [0] * len(getattr(stats, name)))
    for snap in snaps:
        for k, v in snap["by_key"].items():
            stats.by_key[k] = stats.by_key.get(k, 0) + v
        for k, counts in snap["buckets"].items():
            mine = stats.buckets.setdefault(k, [0] * len(counts))
            for i, c in enumerate(counts):
                mine[i] += c
        for k, v in snap["sums"].items():
            stats.sums[k] = stats.sums.get(k, 0.0) + v
        for name in _COUNTERS:
            getattr(stats, name).update(snap[name])
        for name in _SCALARS:
            setattr(stats, name, getattr(stats, name) + snap[name])
        for name in _LISTS:
            mine = getattr(stats, name)
            for i, c in enumerate(snap[name]):
                mine[i] += c


def _merge_final(stats, finals, queued_peak=None):
    _merge_into(stats, finals)
    stats.latency = {c: _HistogramView(h) for c, h in histograms_of(finals, "histograms").items()}
    stats.timings = {c: _HistogramView(h) for c, h in histograms_of(finals, "timings").items()}
    stats.push_hdr = {k: _HistogramView(h) for k, h in histograms_of(finals, "push_latency").items()}
    stats.task_hdr = {k: _HistogramView(h) for k, h in histograms_of(finals, "task_latency").items()}
    # the run's queue peak: exact when the workers counted it together (SharedQueue), else the sum of
    # their peaks, an upper bound (they need not peak together)
    bound = sum(s.get("tasks_queued_peak", 0) for s in finals)
    stats.tasks_queued_peak = bound if queued_peak is None else min(queued_peak, bound)
    stats.tasks_queued_peak_bound = queued_peak is None and sum(bool(s.get("tasks_queued_peak")) for s in finals) > 1
    stats.started = min(s["started"] for s in finals)
    stats.ended = max(s["ended"] for s in finals)
    stats.interrupted = stats.interrupted or any(s["interrupted"] for s in finals)
    stats.series = merge_series([s["series"] for s in finals])


class _Devices:
    """What the progress line needs of the population: a state per device."""

    def __init__(self):
        self.states = {}

    def counts(self):
        total = Counter()
        for c in self.states.values():
            total.update(c)
        return total


async def run_workers(scenario, workers, *, target=None, context=None, progress=True, stream=None,
                      handle_signals=True, stop=None):
    """Run ``scenario`` over ``workers`` processes; returns an engine.RunResult.

    ``target``: the embedded Exchange the command line started (its launch handle,
    loadgen/exchange/launch.py), held here in the parent; ``context``: the run context pickled
    to every worker (loadgen/run/context.py; by default one for ``workers`` processes).
    SIGINT and SIGTERM to this (parent) process end the run as its end would: every worker is
    asked to stop (it gets the graceful stop time for its requests in flight), what they recorded
    is collected and merged, and the result is marked interrupted.  A second signal does not wait
    for the graceful stop.  No worker outlives the run: one that does not send its results in
    time is killed, and a worker dies with its parent (see _die_with_parent).  ``stop``: an
    asyncio.Event that, once set, stops the run the same way (as engine.run's)."""
    from loadgen.run.context import RunLoad
    from loadgen.run.engine import RunResult
    from loadgen.wire.loop import install_stop_signals

    stream = stream or sys.stderr
    if context is None:
        context = RunLoad.for_run(scenario, workers)
    url = target.urls if target is not None else scenario.target.url
    loop = asyncio.get_running_loop()
    ctl = _Control(loop, workers, stop)
    handled = install_stop_signals(loop, handle_signals, ctl.signalled)
    procs = []
    try:
        stats, interrupted = await _collect(scenario, workers, progress, stream, target, url, context, ctl, procs)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        ctl.halt.value = 1
        ctl.go.value = 1
        for p in procs:  # none left running, whatever happened
            await loop.run_in_executor(None, p.join, 10 if not ctl.forced else 0.5)
            if p.is_alive():
                p.kill()
                await loop.run_in_executor(None, p.join, 5)
    return RunResult(stats, [None] * scenario.population.devices, url,
                     target.target if target is not None else None, interrupted)


class _Control:
    """The parent's side of the workers: the start gate, the stop request, the signals."""

    FORCE_AFTER = 30.0  # s past the graceful stop time: a worker that has not sent its results is killed

    def __init__(self, loop, workers, stop=None):
        ctx = multiprocessing.get_context("spawn")
        self.ctx = ctx
        self.out = ctx.Queue()
        # flags in shared memory, read by polling: a multiprocessing.Event's set() waits for every
        # process waiting on it to wake, and hangs for ever if one ended while waiting
        self.go = ctx.RawValue("b", 0)  # 1: every worker's clock starts now
        self.halt = ctx.RawValue("b", 0)  # 1: every worker stops now (graceful stop time for what is in flight)
        self.loop = loop
        self.workers = workers
        self.stopping = None  # loop time the stop was asked, or None
        self.forced = False
        self.interrupted = False
        self.asked = stop  # the caller's asyncio.Event, or None
        self.queue = SharedQueue(ctx)  # the tasks queued on every worker, counted together

    def check(self):
        """The caller's stop, once set, taken as a signal is."""
        if self.asked is not None and self.asked.is_set() and self.stopping is None:
            self.interrupted = True
            self.stop()

    def signalled(self):
        if self.stopping is not None:
            self.forced = True  # a second signal: do not wait for the graceful stop
        self.interrupted = True
        self.stop()

    def stop(self):
        if self.stopping is None:
            self.stopping = self.loop.time()
        self.halt.value = 1
        self.go.value = 1  # a worker still waiting at the gate goes through it and stops at once


async def _collect(scenario, workers, progress, stream, target, url, context, ctl, procs):
    from loadgen.run.engine import _run_events, _version, backlog_exceeded, backlog_limit

    backlog = backlog_limit(scenario)
    watch = AbortWatch(scenario.thresholds)  # on the merged figures of every worker
    loop = asyncio.get_running_loop()
    stats = Stats()
    own = Stats()  # what the parent itself counts: the plan's external mail its target delivers (receive tasks)
    views = _Devices()
    metrics.attach(stats, views.counts, run_id=uuid.uuid4().hex[:12], scenario=scenario.name, version=_version(),
                   event_actions=sorted({e.action for e in scenario.events}))
    out = ctl.out
    parent = os.getpid()
    procs.extend(ctl.ctx.Process(target=_worker, args=(scenario, url, context, w, workers, out, ctl.go, ctl.halt,
                                                       parent, ctl.queue),
                                 daemon=True) for w in range(workers))
    for p in procs:
        p.start()
    t0 = None
    side = []
    ready = set()
    latest, finals, errors, exceptions = {}, {}, [], []
    last_print = 0.0
    try:
        while len(finals) + len(errors) < workers:
            ctl.check()
            if ctl.stopping is not None:
                for task in side:  # no more scenario events once the run is stopped
                    task.cancel()
                limit = ctl.stopping + scenario.load.graceful_stop + _Control.FORCE_AFTER
                if ctl.forced or loop.time() > limit:
                    missing = [w for w in range(workers) if w not in finals]
                    errors.extend("worker %d: stopped without its final results" % w for w in missing
                                  if not any(e.startswith("worker %d:" % w) for e in errors))
                    for w in missing:
                        if procs[w].is_alive():
                            procs[w].kill()
                    break
            try:
                shard, snap = await loop.run_in_executor(None, out.get, True, 0.25)
            except queue_mod.Empty:
                if not any(p.is_alive() for p in procs) and out.empty():
                    errors.append("a worker ended without its results")
                    break
                continue
            except asyncio.CancelledError:
                ctl.interrupted = True
                ctl.stop()
                continue
            if "error" in snap:
                errors.append("worker %d: %s" % (shard, snap["error"]))
                if snap.get("exception") is not None:
                    exceptions.append(snap["exception"])
                if t0 is None:
                    ctl.stop()  # the others must not wait at the start gate for it
                continue
            if snap.get("ready"):
                ready.add(shard)
                if len(ready) == workers and t0 is None and ctl.stopping is None:
                    t0 = loop.time()  # every worker starts its clock now: the events fall at the same point
                    ctl.go.value = 1
                    deadline = t0 + scenario.duration
                    if target is not None:
                        if scenario.events:
                            side.append(asyncio.create_task(_run_events(scenario, target, t0, deadline, stats)))
                        if scenario.target.mail_per_user_per_hour > 0:
                            side.append(asyncio.create_task(target.deliver_mail(deadline)))
                    # [workload]: the plan's external mail, by the parent's embedded target at its times
                    external = day.external_delivery(scenario, context, target, t0, deadline, own)
                    if external is not None:
                        side.append(asyncio.create_task(external))
                continue
            latest[shard] = snap
            views.states[shard] = snap["devices"]
            if snap.get("final"):
                finals[shard] = snap
            _merge_into(stats, list(latest.values()) + ([_snapshot(own, (), False)] if own.task_counts else []))
            stats.tasks_queued = ctl.queue.queued()  # every worker's queue now, not as last sampled
            # the backlog guard over every worker's queue (each worker also checks the shared count)
            if snap.get("aborted") and not stats.aborted:
                stats.aborted = snap["aborted"]
            if watch and t0 is not None:
                _live_histograms(stats, latest.values())
                reason = watch.check(stats, loop.time() - t0, views.counts())
                if reason:
                    stats.aborted = stats.aborted or reason
            if stats.aborted or (backlog is not None and backlog_exceeded(stats, backlog)):
                if ctl.stopping is None:
                    ctl.interrupted = True
                    ctl.stop()
            now = loop.time()
            if progress and now - last_print >= (1.0 if stream.isatty() else 5.0):
                last_print = now
                states = ", ".join("%s %d" % kv for kv in views.counts().most_common(4))
                stream.write("[%5.1fs/%.0fs] %d workers | devices %d (%s) | requests %d | errors %d\n" % (
                    now - (t0 or now), scenario.duration, workers, scenario.population.devices, states,
                    stats.total, stats.failures))
                stream.flush()
    finally:
        events = list(stats.events)
        for task in side:
            task.cancel()
        await asyncio.gather(*side, return_exceptions=True)
    if errors:
        if not latest and exceptions:
            raise exceptions[0]  # no worker ran: the cause as the single-process run would raise it
        if not latest:
            raise RuntimeError("; ".join(errors))
        for line in errors:  # what is missing is said; what the others recorded is still merged and written
            stream.write("easload: %s\n" % line)
        stream.flush()
    parts = [finals[w] for w in sorted(finals)]
    parts += [_as_final(latest[w]) for w in sorted(latest) if w not in finals]  # counts without histograms
    if own.task_counts and parts:  # the parent's receive tasks, within the workers' run
        parts.append(dict(_snapshot(own, (), True), series=[], interrupted=False,
                          started=min(p["started"] for p in parts), ended=max(p["ended"] for p in parts)))
    peak = ctl.queue.peak()
    if peak is None:
        stream.write("easload: the tasks' queue peak is the sum of the workers' peaks (an upper bound)\n")
    _merge_final(stats, parts, peak)
    stats.events = events
    stats.interrupted = stats.interrupted or ctl.interrupted or bool(errors)
    return stats, stats.interrupted


def _live_histograms(stats, snaps):
    """The parent's Stats given the workers' latest histograms (when they send them live), so that an
    abort_on_fail percentile is judged on every request so far; the final merge replaces them."""
    for attr, key in (("latency", "histograms"), ("timings", "timings"), ("task_hdr", "task_latency")):
        parts = [s for s in snaps if key in s]
        if parts:
            setattr(stats, attr, {c: _HistogramView(h) for c, h in histograms_of(parts, key).items()})


def _as_final(snap):
    """A worker's last live snapshot standing for the final one it never sent: its counts; no
    histograms or time series."""
    now = time.time()
    return dict(snap, final=True, histograms={}, timings={}, task_latency={}, series=[], started=now, ended=now, interrupted=True)


__all__ = ["SharedQueue", "run_workers"]
