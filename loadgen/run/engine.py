"""The engine: population, ramp, one task per device, progress, shutdown.

It owns time and concurrency (asyncio, on uvloop when available); devices own
their identity and policy key; ``loadgen.eas`` owns the protocol rules.
"""

import asyncio
import heapq
import gc
import math
import os
import random
import re
import sys
import time
import uuid
from collections import Counter, namedtuple
from dataclasses import dataclass, field

from loadgen.results import metrics
from loadgen.device import clients
from loadgen.device.life import Device
from loadgen.eas import versions
from loadgen.device.profiles import PROFILES, identity
from loadgen.results.stats import Stats
from loadgen.results.thresholds import ABORTED_UNREACHABLE, AbortWatch
from loadgen.run import day
from loadgen.run.context import RunLoad
from loadgen.scenario import DEVICE_EVENTS
from loadgen.wire.loop import install_stop_signals
from loadgen.wire.transport import Transport


def _weighted_picker(weights, rng):
    names = list(weights)
    cumulative = []
    total = 0.0
    for name in names:
        total += float(weights[name])
        cumulative.append(total)

    def pick():
        x = rng.random() * total
        for name, edge in zip(names, cumulative):
            if x < edge:
                return name
        return names[-1]

    return pick


# a device as the plan sees it (loadgen/run/plan.py): the same draws as the Device a run builds, nothing more
PlannedDevice = namedtuple("PlannedDevice", "index user version profile base_url")


def build_population(scenario, base_url, shard=0, shards=1, load=None, planned=False):
    """The scenario's devices, deterministic for its seed (ids, versions, profiles).

    With ``shards`` > 1 only the devices ``i`` with ``i % shards == shard`` are built;
    versions and profiles are still drawn for every device in order, so a device has
    the same identity, version and profile whatever the number of shards.  ``load``: the
    run context the devices read (loadgen/run/context.py; by default one process's).  ``planned``:
    :data:`PlannedDevice` tuples instead of devices (the plan's figures, before a run starts)."""
    if load is None:
        load = RunLoad.for_run(scenario)
    pop = scenario.population
    auth = scenario.auth
    rng = random.Random(scenario.seed)
    pick_version = _weighted_picker(pop.versions, rng)
    pick_profile = _weighted_picker(pop.profiles, rng)
    think_rng = random.Random(scenario.seed ^ 0x5EED)
    workload = getattr(scenario, "workload", None)
    # per user (loadgen/device/clients.py): [workload] clients, or [population] clients without the day model
    client_weights = workload.clients if workload is not None else pop.clients
    tokens = clients.token_source(auth)  # [auth] token_file / token_command: Bearer (None: Basic)
    minted = None if tokens is not None else scenario.target.bearer_tokens  # the embedded target's, for bearer types
    stats = Stats()
    devices = []
    for i in range(pop.devices):
        user_index, slot = divmod(i, pop.devices_per_user)
        # several URLs: a multi-process target whose process k owns the users n % len == k (exchange/cluster.py)
        url = base_url[user_index % len(base_url)] if isinstance(base_url, (list, tuple)) else base_url
        version = versions.get(pick_version())
        profile = PROFILES[pick_profile()]
        if i % shards != shard:
            continue
        client = clients.pick(client_weights, scenario.seed, user_index)
        if client is not None and client.partnerships_per_user and slot >= client.partnerships_per_user:
            continue  # outlook-cloud: one partnership per user, held by the service
        if planned:
            devices.append(PlannedDevice(i, auth.user.format(n=user_index), version, profile, url))
            continue
        profile = clients.dressed(profile, client)  # its DeviceType and User-Agent, once per device
        ident = identity(scenario.seed, user_index, slot, profile)
        devices.append(Device(
            i, auth.user.format(n=user_index), auth.password.format(n=user_index), version, profile, ident,
            url, load, stats, think_rng, auth.domain, origin=(scenario.seed, user_index, slot),
            client=client, tokens=minted if minted is not None and client is not None and client.bearer else tokens,
        ))
    return devices, stats


def settle_population():
    """Take the population just built out of the cyclic garbage collector's sight.

    The devices live for the whole run; without this, every full collection walks all
    their objects, a pause that lands in the latency of every request in flight.
    ``gc.unfreeze()`` at the end of the run undoes it."""
    gc.collect()
    gc.freeze()


def schedule(scenario):
    """Start offset (s) of every device of the population; None for one that never arrives.

    closed: device i starts at ramp_up * i / devices.  open: devices arrive at the
    scenario's rate -- ``arrival_rate`` at first, then linear ramps to each stage's
    target over its duration (k6's ramping-arrival-rate), holding the last rate
    until the end; arrival n (from 0) happens when the integral of the rate reaches n.
    """
    total = scenario.population.devices
    load = scenario.load
    if load.model == "closed":
        ramp = min(load.ramp_up, scenario.duration)
        return [ramp * i / total for i in range(total)]
    segments = []  # (start, duration, r0, r1)
    t, rate = 0.0, load.arrival_rate
    for duration, target in load.stages:
        segments.append((t, duration, rate, target))
        t, rate = t + duration, target
    if t < scenario.duration:
        segments.append((t, scenario.duration - t, rate, rate))
    offsets = []
    done = 0.0  # arrivals before the current segment
    for start, duration, r0, r1 in segments:
        if duration <= 0:
            continue
        in_segment = (r0 + r1) / 2.0 * duration
        while len(offsets) < total and len(offsets) < done + in_segment - 1e-9:
            need = len(offsets) - done  # arrivals into this segment: r0 x + (r1 - r0) x^2 / (2 D)
            a = (r1 - r0) / (2.0 * duration)
            if abs(a) < 1e-12:
                x = need / r0 if r0 > 0 else 0.0
            else:
                x = (-r0 + math.sqrt(max(0.0, r0 * r0 + 4 * a * need))) / (2 * a)
            offsets.append(start + min(max(x, 0.0), duration))
        done += in_segment
    return offsets + [None] * (total - len(offsets))


def active_target(stages, t):
    """Closed model with stages: how many devices are active ``t`` seconds into the run.

    Linear ramps from 0 to each stage's target over its duration (k6's ramping-vus
    executor with startVUs = 0), the last target held until the end; whole devices
    (rounded down), so device i is active while the target is above i."""
    level, start = 0.0, 0.0
    for duration, target in stages:
        if duration > 0 and t < start + duration:
            return int(level + (target - level) * (t - start) / duration + 1e-9)
        start += duration
        level = target
    return int(level)


def first_activation(stages, k):
    """When the target of :func:`active_target` first reaches ``k`` (s into the run), or None."""
    level, start = 0.0, 0.0
    for duration, target in stages:
        if level >= k:
            return start
        if target >= k:
            return start + (duration * (k - level) / (target - level) if duration > 0 else 0.0)
        start += duration
        level = target
    return start if level >= k else None


class Lives:
    """The devices' lives on this loop: a task per device while it works, none while it holds a Ping.

    A device sends requests, thinks and backs off in a task of its own.  In mode ping, over a
    transport that can park requests (the lean one, connections belonging to devices), a device
    parks its Ping: the transport sends it and calls :meth:`answered` with the answer, and the
    device's task ends meanwhile.  A device holding a Ping thus costs its connection and a small
    record of the request, not a task with six coroutine frames and a future (about 2.5 KB of
    the ~9 KiB per holding device measured before).  The answer starts a fresh task
    that takes it as the waiting coroutine would have, and the device's life goes on.

    While a Ping is parked the device's ``in_flight`` stays "Ping", so the run's end and a
    closed-model ramp-down account it as cancelled exactly as a Ping held by a task."""

    def __init__(self, transport, deadline, stats=None):
        self.transport = transport
        self.deadline = deadline
        self.stats = stats
        self.tasks = {}  # device -> the task of its life (none while it holds a parked Ping, or has ended)
        self.closed = False  # after the run: answers are dropped (their Pings are counted as cancelled)
        # exception type name -> devices whose life raised it (see crashed): counted, never raised
        counter = getattr(stats, "device_errors", None)
        self.device_errors = counter if isinstance(counter, Counter) else Counter()
        # a wrapper around a transport that does not define park itself (a test counting post) gets
        # the coroutine path: nothing it does not see is sent
        self.park = self.answered if getattr(type(transport), "park", None) and transport.can_park else None
        self._peak = 0
        self._wakes = []  # heap of (loop time, n, device): parked Pings to stop when their user acts
        self._wake_n = 0
        self._waker = None  # the loop's timer for the earliest of them
        self._waker_at = None
        from loadgen.device.states import Stopped

        self._stopped = Stopped

    def start(self, device):
        """Start (or resume, after a ramp-down) ``device``'s life in a task."""
        return self._spawn(device, None)

    def answered(self, device, resp):
        """The transport's callback for a parked Ping: its answer (or timeout or error).  A device
        already woken (see :meth:`_wake_due`: its Ping was stopped, and counted, just as this answer
        was on its way) keeps its life; the answer is dropped."""
        if not self.closed and device not in self.tasks:
            self._spawn(device, resp)

    # [mail]: a device holding a parked Ping whose user wants to act (an action falls due) is woken
    # then: its Ping is stopped -- its connections closed, as Android's Exchange client stops a running
    # Ping when a sync is requested (AOSP Exchange, service/PingSyncSynchronizer.java syncStart) -- and
    # its life goes on in a fresh task.  One timer for the earliest of them, a heap for the rest:
    # nothing per device but the heap's entry.

    def _wake_at(self, device, when):
        self._wake_n += 1
        heapq.heappush(self._wakes, (when, self._wake_n, device))
        if self._waker_at is None or when < self._waker_at:
            if self._waker is not None:
                self._waker.cancel()
            self._waker_at = when
            self._waker = asyncio.get_running_loop().call_at(when, self._wake_due)

    def _wake_due(self):
        self._waker = self._waker_at = None
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        wakes = self._wakes
        while wakes and wakes[0][0] <= now:
            when, _n, device = heapq.heappop(wakes)
            # still holding the Ping it parked for this wake (not answered since, not ended)
            if device.wake != when or device.in_flight is None or device in self.tasks or not device.alive:
                continue
            # the parked Ping dropped without its callback, its connection closed; the other one stays
            stop = getattr(self.transport, "stop_ping", None)
            if stop is not None:
                stop(device.endpoint)
            else:
                _disconnect(self.transport, device.endpoint)
            device.ping_stopped()
            self._spawn(device, None)
        if wakes:
            self._waker_at = wakes[0][0]
            self._waker = loop.call_at(self._waker_at, self._wake_due)

    def alive(self, device):
        """Whether ``device``'s life goes on: it has a task, or holds a parked Ping."""
        return device in self.tasks or (self.park is not None and device.in_flight is not None)

    def cancel(self, device):
        """End ``device``'s life now: its task is cancelled, or its parked Ping dropped unanswered."""
        task = self.tasks.pop(device, None)
        if task is not None:
            task.cancel()
        elif self.park is not None:
            _disconnect(self.transport, device.endpoint)

    def parked(self):
        return getattr(self.transport, "parked", 0) if self.park is not None else 0

    def _spawn(self, device, answer):
        task = asyncio.get_running_loop().create_task(self._life(device, answer))
        tasks = self.tasks
        tasks[device] = task
        if len(tasks) > self._peak:
            self._peak = len(tasks)
        return task

    async def _life(self, device, answer):
        try:
            if answer is not None:
                await device.ping_answered(self.transport, answer, self.deadline)
            await device.run(self.transport, self.deadline, self.park)
            wake = getattr(device, "wake", None)
            if wake is not None and device.in_flight is not None:  # [mail]: parked until its user acts
                self._wake_at(device, wake)
        except self._stopped:  # a closed-model ramp-down stopped it before a request
            pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the one place a device's unexpected exception is caught (see crashed)
            self.crashed(device, exc)
        finally:
            tasks = self.tasks
            if tasks.get(device) is asyncio.current_task():
                del tasks[device]
                # a dict keeps the table of its largest size: after a crowd (all Pings answered at
                # once) copy it when it holds an eighth of that, not a table per device for ever
                if self._peak > 64 and len(tasks) * 8 < self._peak:
                    self.tasks = dict(tasks)
                    self._peak = len(tasks)

    def crashed(self, device, exc):
        """``device``'s life raised ``exc``: a bug or a server's answer the device code did not expect
        (a header that overflows, a URL it cannot send to, bytes it cannot decode).  One device must
        not end the run: the request it had in flight is counted (outcome ``internal_error``, so
        every request sent stays accounted for), the exception's type is counted in
        ``device_errors``, and the device ends in the state ``failed`` with the type and the first
        line of the message (credentials masked) as its detail; its connections are closed."""
        from loadgen.device.states import FAILED

        command = device.in_flight
        if command is not None:
            device.in_flight = None  # accounted here, not again as cancelled at the end of the run
            if self.stats is not None:
                self.stats.record(command, 0, "internal_error", 0.0, 0, 0)
        self.device_errors[type(exc).__name__] += 1
        device.detail = _exception_line(exc, device)
        device.state = FAILED
        device.alive = False
        try:
            _disconnect(self.transport, device.endpoint)
        except Exception:  # its connections may be the broken part: the device is ended all the same
            pass


_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/@\s]*@")


def _exception_line(exc, device):
    """``Type: first line of the message`` (at most 200 characters), without the device's password
    or the user info of a URL (RFC 3986 3.2.1: never shown)."""
    text = str(exc).strip().splitlines()
    text = "%s: %s" % (type(exc).__name__, text[0]) if text else type(exc).__name__
    password = getattr(device, "_password", None)
    if isinstance(password, str) and password:
        text = text.replace(password, "***")
    text = _USERINFO.sub(r"\1***@", text)
    return text if len(text) <= 200 else text[:197] + "..."


def _disconnect(transport, endpoint):
    disconnect = getattr(transport, "disconnect", None)
    if disconnect is not None:
        disconnect(endpoint)
    else:
        endpoint.close()


class ClosedStages:
    """Closed model with ``stages``: the number of active devices follows the stages.

    Device i of the whole population is active while the target is above i (the
    same devices whatever the shard).  Going up starts devices (or resumes stopped
    ones, which keep their partnership, policy key and sync state, as a phone that
    comes back); going down stops the highest-numbered devices first: a stopping
    device finishes the request it has in flight (up to ``graceful_stop``; then the
    request is cancelled and accounted as cancelled), sends no other, closes its
    connections and ends in the state "stopped" -- not a failure.
    """

    TICK = 0.05

    def __init__(self, scenario, devices, transport, stats, t0, deadline, lives, late_after=0.1):
        self.stages = scenario.load.stages
        self.graceful = scenario.load.graceful_stop
        self.by_index = sorted(devices, key=lambda d: d.index)
        self.transport = transport
        self.stats = stats
        self.t0, self.deadline = t0, deadline
        self.lives = lives  # the devices' tasks and parked Pings (Lives)
        self.late_after = late_after
        self.running = set()  # indices of the devices started and not stopped since
        self.stopping = {}  # device -> loop time after which its request in flight is cancelled
        self.saved = {}  # device -> state it had when it was stopped
        self.level = 0

    def _start(self, device, now):
        if device in self.stopping:  # asked to stop and back before it finished: keep going
            del self.stopping[device]
            device.stopping = False
            return
        device.stopping = False
        if device.intended_start is None:
            when = first_activation(self.stages, device.index + 1)
            device.intended_start = self.t0 + (when if when is not None else now - self.t0)
            device.actual_start = now
            self.stats.start_lag(now - device.intended_start, self.late_after)
        if device in self.saved:
            device.state = self.saved.pop(device)
        self.lives.start(device)
        self.running.add(device.index)

    def _finish(self, device):
        from loadgen.device.states import STOPPED

        if device.index in self.running:
            self.running.discard(device.index)
            if self.lives.alive(device):
                if device.in_flight is not None:  # cut after the graceful stop time: accounted as cancelled
                    self.stats.cancelled[device.in_flight] += 1
                    device.in_flight = None
                self.lives.cancel(device)  # its task, or its parked Ping (dropped without an answer)
        device.prov.failed()  # a conversation cut here starts again when the device comes back
        _disconnect(self.transport, device.endpoint)  # a phone going offline drops its connections
        self.saved[device] = device.state
        device.state = STOPPED
        self.stopping.pop(device, None)

    def step(self, now):
        target = active_target(self.stages, now - self.t0)
        if target > self.level:
            for device in self.by_index:
                if self.level <= device.index < target:
                    self._start(device, now)
        elif target < self.level:
            for device in reversed(self.by_index):  # the last started stop first
                # a device whose life already ended (blocked, failed) keeps its state
                if target <= device.index < self.level and device.index in self.running \
                        and self.lives.alive(device) and device not in self.stopping:
                    device.stopping = True
                    self.stopping[device] = now + self.graceful
        self.level = target
        for device, limit in list(self.stopping.items()):
            if not self.lives.alive(device) or device.in_flight is None or now >= limit:
                self._finish(device)

    async def control(self):
        loop = asyncio.get_running_loop()
        try:
            while loop.time() < self.deadline:
                self.step(loop.time())
                await asyncio.sleep(min(self.TICK, max(0.0, self.deadline - loop.time())))
        finally:
            for device in list(self.stopping):  # still finishing at the end of the run
                self._finish(device)


@dataclass
class RunResult:
    stats: Stats
    devices: list
    target_url: str
    target: object = None  # the embedded Target (or TargetCluster) the run was given, if any
    interrupted: bool = False
    # the devices' transport: requests re-sent once on a fresh connection after the server had closed
    # the kept-alive one (not failures), and connections opened in all (lean transport only)
    reconnects: int = 0
    connections_opened: int = 0
    tls_problem: str | None = None  # "certificate not trusted (...)": the devices' TLS check before the run
    # exception type name -> devices whose life raised it, each ended "failed" (Lives.crashed)
    device_errors: dict = field(default_factory=dict)


class Progress:
    """A live progress line on a terminal; a line every 5 s otherwise."""

    def __init__(self, stream, duration, devices, enabled=True, interval=1.0):
        self.stream = stream
        self.duration = duration
        self.devices = devices
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self._last_total = 0
        self._last_time = time.monotonic()  # the rate covers the time since the previous line
        self._last_print = 0.0
        self._last_sample = 0.0
        self.interval = interval

    def line(self, elapsed, stats, final=False, states=None):
        now = time.monotonic()
        rate = 0.0
        if final:
            rate = stats.total / elapsed if elapsed > 0 else 0.0  # whole-run average
        elif self._last_time is not None and now > self._last_time:
            rate = (stats.total - self._last_total) / (now - self._last_time)
        self._last_total, self._last_time = stats.total, now
        if states is None:
            states = Counter(d.state for d in self.devices)
        top = ", ".join("%s %d" % kv for kv in states.most_common(4))
        return "[%5.1fs/%.0fs] devices %d (%s) | requests %d (%.0f/s) | errors %d" % (
            elapsed, self.duration, len(self.devices), top, stats.total, rate, stats.errors())

    def tick(self, elapsed, stats, final=False):
        sample = final or elapsed - self._last_sample >= self.interval - 1e-6
        show = self.enabled and (self.tty or final or elapsed - self._last_print >= 5.0)
        if not (sample or show):
            return
        states = Counter(d.state for d in self.devices)  # once per tick: O(devices)
        if sample:
            self._last_sample = elapsed
            stats.sample(elapsed, states)
        if not show:
            return
        text = self.line(elapsed, stats, final, states)
        if self.tty:
            self.stream.write("\r\x1b[K" + text + ("\n" if final else ""))
        else:
            self._last_print = elapsed
            self.stream.write(text + "\n")
        self.stream.flush()


class _Held:
    """What a run holds that must go however the run ends -- normally, interrupted, or by an
    exception before the load starts: the devices' transport."""

    def __init__(self):
        self.transport = None

    async def release(self):
        transport, self.transport = self.transport, None
        if transport is not None:
            try:
                await transport.close()
            except Exception:  # a close that fails must not hide the run's results
                pass


async def run(scenario, *, target=None, target_url=None, context=None, progress=True, stream=None,
              handle_signals=False, shard=(0, 1), on_tick=None, attach_metrics=True, stop=None, ready=None,
              queue=None):
    """Run ``scenario``'s devices against ``target`` or ``target_url``.

    ``target``: the embedded Exchange the command line started for this run (its launch handle,
    loadgen/exchange/launch.py: ``urls``, ``apply_event``, ``deliver_mail``, ``in_process``,
    ``target``); ``target_url``: the URL(s) to use instead of the scenario's (a worker process's
    embedded target, started by its parent).  ``context``: the run context the devices read
    (loadgen/run/context.py; by default one process's).  ``handle_signals``: True for SIGINT and
    SIGTERM, or a tuple of signals, each ending the run as ``stop`` does; they are handled from
    the start, so a signal during the set-up still takes the normal way out (results returned).
    ``stop``: an asyncio.Event that, once set, ends the run early: no new work, the graceful stop
    time for the requests in flight, results marked interrupted.  ``ready``: a coroutine function
    awaited once the devices and their transport are ready, before the run's clock starts
    (workers.py starts every worker's clock together with it).  ``queue``: the tasks queued on every
    worker of the run (workers.SharedQueue), counted there too; the backlog guard judges that total."""
    stream = stream or sys.stderr
    loop = asyncio.get_running_loop()
    stop = stop if stop is not None else asyncio.Event()
    handled = install_stop_signals(loop, handle_signals, stop.set)
    held = _Held()
    try:
        return await _run(scenario, held, stop, target, target_url, context, progress, stream, shard, on_tick,
                          attach_metrics, ready, queue)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await held.release()


async def _ready(scenario, held, stop, ready, stats):
    """The devices' transport, started, then ``ready`` awaited (unless the run is already stopped)."""
    held.transport = transport = Transport(
        scenario.load.transport, timeout=scenario.load.timeout, insecure=scenario.target.insecure,
        ca_file=scenario.target.ca_file, client_cert=scenario.target.client_cert,
        client_key=scenario.target.client_key,
        **({"pool_size": scenario.load.pool_size, "idle_timeout": scenario.load.idle_timeout,
            "tls_resumption": scenario.target.tls_resumption} if scenario.load.transport == "lean" else {}))
    transport.stats = stats  # both transports count what they re-send on a fresh connection into it
    await transport.start()
    if ready is not None and not stop.is_set():
        await ready()
    return transport


async def _run(scenario, held, stop, target, target_url, context, progress, stream, shard, on_tick,
               attach_metrics, ready, queue=None):
    if target is not None:
        target_url = target.urls
    elif target_url is None:
        target_url = scenario.target.url
    if context is None:
        context = RunLoad.for_run(scenario)
    rss_base = rss_bytes()  # before the devices exist: what they cost is measured from here
    devices, stats = build_population(scenario, target_url, *shard, load=context)
    if queue is not None:
        queue.follow(stats)
    settle_population()
    try:
        transport = await _ready(scenario, held, stop, ready, stats)
    except BaseException:
        gc.unfreeze()
        raise
    stats.rss_base = stats.rss_peak = stats.rss_end = rss_base
    stats.rss_with_target = target is not None and target.in_process  # not a cluster's processes
    if attach_metrics:
        metrics.attach(stats, lambda: Counter(d.state for d in devices), run_id=uuid.uuid4().hex[:12],
                       event_actions=sorted({e.action for e in scenario.events}),
                       scenario=scenario.name, version=_version())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    deadline = t0 + scenario.duration
    prog = Progress(stream, scenario.duration, devices, progress, scenario.load.sample_interval)
    stats.started = time.time()

    late_after = 0.1  # a device starting more than 100 ms after its intended time is a late start
    lives = Lives(transport, deadline, stats)

    async def start_devices(offsets):
        """Each device at its scheduled time (one task for all, not a sleeping task per device)."""
        # device i of the whole population starts at its scheduled time, whatever the shard
        order = sorted(((offsets[d.index], d) for d in devices if offsets[d.index] is not None),
                       key=lambda pair: pair[0])
        del offsets
        order.reverse()
        while order:
            offset, device = order.pop()  # the list shrinks as devices start: nothing kept after
            when = t0 + offset
            if when > loop.time():
                await asyncio.sleep(when - loop.time())
            now = loop.time()
            if now >= deadline:
                return
            device.intended_start = when
            device.actual_start = now
            stats.start_lag(now - when, late_after)
            lives.start(device)

    starter = None
    if scenario.load.model == "closed" and scenario.load.stages:
        tasks = [asyncio.create_task(
            ClosedStages(scenario, devices, transport, stats, t0, deadline, lives, late_after).control())]
    else:
        starter = asyncio.create_task(start_devices(schedule(scenario)))
        tasks = [starter]
    if target is not None and scenario.target.mail_per_user_per_hour > 0:
        tasks.append(asyncio.create_task(target.deliver_mail(deadline)))
    # [workload]: the plan's external mail, delivered by the embedded target at the plan's times
    external = day.external_delivery(scenario, context, target, t0, deadline, stats, shard)
    if external is not None:
        tasks.append(asyncio.create_task(external))
    # events act once: on the embedded target this process started, or (a shell command for a real
    # server) in the first shard; resync and network_drop against a real server: every shard, each on
    # its own devices (the devices do them alone, _device_event)
    device_side = target is None and not scenario.target.embedded
    if scenario.events and (target is not None or (device_side and (
            shard[0] == 0 or any(e.action in DEVICE_EVENTS for e in scenario.events)))):
        tasks.append(asyncio.create_task(_run_events(
            scenario, target, t0, deadline, stats,
            devices=(devices, lives, scenario.population.devices, shard[0] == 0) if device_side else None)))
    interrupted = False
    # the limit of the whole run over every worker's queue, or this shard's share over its own
    backlog = backlog_limit(scenario) if queue is not None else backlog_limit(scenario, len(devices))
    watch = AbortWatch(scenario.thresholds)  # abort_on_fail thresholds (results/thresholds.py)
    dead = DeadTarget()
    try:
        while loop.time() < deadline and not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), min(prog.interval, 1.0, max(0.0, deadline - loop.time())))
            except asyncio.TimeoutError:
                pass
            if backlog is not None and backlog_exceeded(stats, backlog, queue and queue.queued()):
                stop.set()  # the graceful stop, as SIGTERM's; the summary says why
            if dead.watching and dead.check(stats, loop.time() - t0, devices):
                stats.aborted = stats.aborted or dead.reason
                stop.set()
            if watch and watch.check(stats, loop.time() - t0, Counter(d.state for d in devices)):
                stats.aborted = stats.aborted or watch.reason
                stop.set()
            prog.tick(loop.time() - t0, stats)
            stats.rss_end = rss = rss_bytes()  # the last tick's is the steady life's (e.g. holding Pings)
            if rss > stats.rss_peak:
                stats.rss_peak = rss
            if on_tick is not None:
                on_tick(stats, devices, False)
        if stop.is_set():
            interrupted = True  # stop starting work; what is in flight gets the graceful stop time
            if starter is not None:
                starter.cancel()
        # the graceful stop: requests in flight (held Pings too, parked or not) may still be answered
        limit = loop.time() + (scenario.load.graceful_stop if dead.reason is None else 0.0)  # none answers
        while loop.time() < limit and (lives.tasks or lives.parked() or any(not t.done() for t in tasks)):
            await asyncio.sleep(min(0.02, max(0.0, limit - loop.time())))
    except asyncio.CancelledError:
        interrupted = True
    finally:
        lives.closed = True  # a parked Ping answered from now on is not taken: it is counted here
        for d in devices:  # requests still in flight when the run is cut: accounted as cancelled
            if d.in_flight is not None:
                stats.cancelled[d.in_flight] += 1
        everything = tasks + list(lives.tasks.values())
        for t in everything:
            t.cancel()
        await asyncio.gather(*everything, return_exceptions=True)
        stats.ended = time.time()
        gc.unfreeze()  # the population may become garbage now: back in the collector's sight
        prog.tick(loop.time() - t0, stats, final=True)
        await held.release()
    for t in tasks:
        if not t.cancelled() and t.exception() is not None:
            raise t.exception()
    stats.final_states = Counter(d.state for d in devices)
    day.count_unstarted(devices, stats, getattr(context, "workload", None))  # tasks never started
    stats.compliance = Counter(d.prov.ack_status for d in devices if d.prov.ack_status)
    stats.unmet = Counter(name for d in devices for name in d.prov.unmet)
    stats.interrupted = interrupted
    if on_tick is not None:
        on_tick(stats, devices, True)
    return RunResult(stats, devices, target_url, target.target if target is not None else None, interrupted,
                     getattr(transport, "reconnects", 0), getattr(transport, "connections_opened", 0), None,
                     dict(lives.device_errors))


class DeadTarget:
    """Fail fast: a target that never answers ends the run within ``FAIL_FAST_S`` seconds (exit 3),
    not after its whole duration.  Dead: no HTTP response at all (MS-ASHTTP 2.2.2: every request
    gets one; an HTTP 500 is an answer, the target is not dead) while requests were sent, and either
    ``FAIL_FAST_S`` seconds of the run have passed or ``FAIL_FAST_FAILURES`` requests (the first
    devices' connections refused, reset or timed out) failed without one.  The first answer ends the
    watch for the rest of the run: nothing is checked per request."""

    FAIL_FAST_S = 10.0
    FAIL_FAST_FAILURES = 10

    __slots__ = ("watching", "reason", "since")

    def __init__(self):
        self.watching = True
        self.reason = None
        self.since = None  # the run's second when requests were first seen sent

    def check(self, stats, elapsed, devices):
        """The reason to stop the run (also in ``reason``), or None; ``devices``: the population."""
        failed = 0
        for (_command, _outcome, status), n in stats.by_key.items():
            if status.isdigit():
                self.watching = False  # an answer: alive, whatever its status
                return None
            failed += n
        if self.since is None:
            if not failed and not any(d.in_flight is not None for d in devices):
                return None  # nothing sent yet (a slow ramp's first device is still to start)
            self.since = elapsed
        if failed >= min(self.FAIL_FAST_FAILURES, len(devices) or 1) or elapsed - self.since >= self.FAIL_FAST_S:
            self.watching = False
            self.reason = "%sno HTTP response from the target %.0f s after its first request (%d failed without " \
                          "one)" % (ABORTED_UNREACHABLE, elapsed - self.since, failed)
            return self.reason
        return None


def backlog_limit(scenario, devices_here=None):
    """The queued tasks past which the run stops itself, or None without a ``[workload]``.

    Exchange Load Generator gave up on a run when its unfinished tasks exceeded 1.5 times the users
    (``[workload] backlog_limit``, default 1.5, times ``[auth] users``): past that the server is not
    keeping up and the figures say nothing more.  ``devices_here``: the devices of this process (a
    shard or worker holds its share of the limit)."""
    workload = getattr(scenario, "workload", None)
    factor = getattr(workload, "backlog_limit", None) if workload is not None else None
    if not factor or factor <= 0:
        return None
    limit = factor * scenario.auth.users
    total = scenario.population.devices
    if devices_here is not None and total and devices_here < total:
        limit = limit * devices_here / total
    return limit


def backlog_exceeded(stats, limit, queued=None):
    """True (and ``stats.aborted`` says why) when the tasks queued (``stats``', or ``queued``: every
    worker's) exceed ``limit``."""
    if queued is None:
        queued = stats.tasks_queued
    if queued > limit:
        if not stats.aborted:
            stats.aborted = "backlog: %d queued tasks > limit %g" % (queued, limit)
        return True
    return False


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes():
    """This process's resident memory now (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def _run_events(scenario, target, t0, deadline, stats, devices=None):
    """The scenario's events at their times; each outcome is kept for the summary.  ``devices``:
    (this shard's devices, their Lives, the population's size, whether this is the first shard)
    when the target is a real server: resync and network_drop are then done by the devices."""
    loop = asyncio.get_running_loop()
    for event in scenario.events:
        if devices is not None and event.action == "command" and not devices[3]:
            continue  # a shell command runs once, in the first shard
        delay = t0 + event.at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if loop.time() >= deadline:
            return
        try:
            if devices is not None and event.action in DEVICE_EVENTS:
                result = _device_event(event, *devices[:3], scenario.seed, stats)
            else:
                result = await _apply_event(event, target, scenario.seed)
        except Exception as exc:  # a bad event argument must not end the run
            result = "failed: %s" % exc
        stats.events.append((round(loop.time() - t0, 3), event.action, result))


_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")


def _shown_command(event):
    """A command event as it may be saved (summary.json, the report): the scenario's own display
    (``Event.display``) when it has one, else the leading ``NAME=value`` environment assignments
    (POSIX shell, 2.9.1 Simple Commands) with their values as ``***``, then the program."""
    display = getattr(event, "display", None)
    if display is not None:
        return display()
    import shlex

    try:
        words = shlex.split(event.args.get("run", ""))
    except ValueError:  # unbalanced quotes: no word of it is shown
        return "(command)"
    shown = []
    for word in words:
        m = _ASSIGNMENT.match(word)
        if not m:
            shown.append(word)
            break
        shown.append("%s=***" % m.group(1))
    return " ".join(shown)


async def _apply_event(event, target, seed):
    """A command event runs here (a shell command: the run's, whatever the target); every other
    acts on the embedded target (its launch handle's ``apply_event``)."""
    if event.action == "command":
        proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", event.args["run"],
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        code = await proc.wait()
        return "exit %d: %s" % (code, _shown_command(event))
    if target is None:
        raise ValueError("%s needs the embedded target" % event.action)
    return await target.apply_event(event, seed)


def _chosen(total, fraction, seed):
    """The population indices a device-side event picks: ``round(total * fraction)`` of them, drawn
    with ``random.Random(seed)`` over the whole population, so every shard agrees."""
    n = round(total * float(fraction))
    return frozenset(random.Random(seed).sample(range(total), n)) if n else frozenset()


def _cut(transport, endpoint):
    """``endpoint``'s connections reset under it, as a network failure does: the lean transport sees
    them lost and sends what was on them again on fresh ones (a new TCP and TLS handshake); other
    transports close them."""
    conns = [getattr(endpoint, name, None) for name in ("conn", "ping_conn")]
    sockets = [getattr(c, "transport", None) for c in conns if c is not None]
    sockets = [t for t in sockets if t is not None and hasattr(t, "abort")]
    if sockets:
        for t in sockets:
            t.abort()
        return True
    if any(c is not None for c in conns):
        _disconnect(transport, endpoint)
        return True
    return False


def _device_event(event, devices, lives, total, seed, stats):
    """resync / network_drop done by this shard's devices themselves (a real server, whose side the
    run cannot reach).  resync: a chosen device restarts as after an OS update -- its request in
    flight is lost (accounted as cancelled), its connections closed, its sync state forgotten
    (Device.forget_sync_state), its life started again: FolderSync 0 and a Sync 0 of every folder.
    network_drop: a chosen device's connections are reset under it (_cut)."""
    chosen = _chosen(total, event.args.get("fraction", 0.0), event.args.get("seed", seed))
    transport = lives.transport
    n = 0
    for device in devices:
        if device.index not in chosen or not device.alive:
            continue
        if event.action == "network_drop":
            n += _cut(transport, device.endpoint)
            continue
        running = device in lives.tasks or device.in_flight is not None
        task = lives.tasks.pop(device, None)
        if task is not None:
            task.cancel()
        if device.in_flight is not None:
            stats.cancelled[device.in_flight] += 1
            device.in_flight = None
        device.wake = None
        _disconnect(transport, device.endpoint)
        device.forget_sync_state()
        if running and not lives.closed:
            lives.start(device)
        n += 1
    if event.action == "network_drop":
        return "connections of %d devices cut (device side)" % n
    return "sync state dropped on %d devices (device side)" % n


def _version():
    try:
        from importlib.metadata import version

        return version("easload")
    except Exception:
        return "unknown"
