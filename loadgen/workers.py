"""Multi-process runs: ``--workers N`` shards of one population, merged exactly.

Each worker process runs its own event loop (uvloop) and the devices ``i`` with
``i % N == w``; identities, versions and profiles do not depend on N (see
``engine.build_population``).  The parent runs the embedded target (when the
scenario uses it), the scenario's events, the progress line and the Prometheus
endpoint.  Workers send the parent a snapshot of their cumulative counters every
sample interval (cheap dicts over a multiprocessing queue -- nothing per request);
the parent's :class:`~loadgen.report.Stats` is the sum of the latest snapshots, so
the metrics of N workers are one endpoint with correct totals.  At the end each
worker sends its HDR histograms (encoded) and time series; the parent merges
them (histograms added, so percentiles are those of all requests).
"""

import asyncio
import base64
import multiprocessing
import queue as queue_mod
import struct
import sys
import uuid
import zlib
from bisect import bisect_left
from collections import Counter
from itertools import accumulate

from hdrh.histogram import HdrHistogram

from loadgen import metrics
from loadgen.report import Stats

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


def _snapshot(stats, devices, final):
    snap = {
        "by_key": dict(stats.by_key),
        "buckets": {k: list(v) for k, v in stats.buckets.items()},
        "sums": dict(stats.sums),
        "devices": dict(Counter(d.state for d in devices)),
    }
    for name in _COUNTERS:
        snap[name] = dict(getattr(stats, name))
    for name in _SCALARS:
        snap[name] = getattr(stats, name)
    for name in _LISTS:
        snap[name] = list(getattr(stats, name))
    if final:
        snap["final"] = True
        snap["histograms"] = {c: r.histogram().encode() for c, r in stats.latency.items()}
        snap["timings"] = {c: r.histogram().encode() for c, r in stats.timings.items()}
        snap["series"] = stats.series
        snap["started"], snap["ended"] = stats.started, stats.ended
        snap["interrupted"] = stats.interrupted
    return snap


def _worker(scenario, url, shard, shards, out):
    from loadgen.cli import _loop_factory
    from loadgen.engine import run

    def on_tick(stats, devices, final):
        out.put((shard, _snapshot(stats, devices, final)))

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(run(scenario, target_url=url, progress=False, handle_signals=True, shard=(shard, shards),
                           on_tick=on_tick, attach_metrics=False))
    except BaseException as exc:  # report, never hang the parent
        out.put((shard, {"error": "%s: %s" % (type(exc).__name__, exc)}))


class _HistogramView:
    """Stands for a Recorder in a merged Stats: ``histogram()`` and ``total``."""

    def __init__(self, hist):
        self.hist = hist
        self.total = hist.get_total_count()

    def histogram(self):
        return self.hist


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


def _merge_final(stats, finals):
    _merge_into(stats, finals)
    merged = {}
    for snap in finals:
        for command, encoded in snap["histograms"].items():
            hist = HdrHistogram.decode(encoded)
            if command in merged:
                merged[command].add(hist)
            else:
                merged[command] = hist
    stats.latency = {c: _HistogramView(h) for c, h in merged.items()}
    timings = {}
    for snap in finals:
        for name, encoded in snap.get("timings", {}).items():
            hist = HdrHistogram.decode(encoded)
            if name in timings:
                timings[name].add(hist)
            else:
                timings[name] = hist
    stats.timings = {c: _HistogramView(h) for c, h in timings.items()}
    stats.started = min(s["started"] for s in finals)
    stats.ended = max(s["ended"] for s in finals)
    stats.interrupted = stats.interrupted or any(s["interrupted"] for s in finals)
    stats.series = merge_series([s["series"] for s in finals])


# -- per-interval HDR histograms, merged fast.  hdrh's own decode (a 190 KB counts array per
# histogram) and above all its get_value_at_percentile (a Python loop over the counts array, about
# 1.5 ms per percentile) made merging an hour of 8 shards take over a minute (bench/report_bench.py).
# An interval's histogram has few non-zero counts: it is decoded once into {counts index: count}
# and merged, and its percentiles read, over those alone -- the same values hdrh gives, to the bit.

_HDR_PARAMS = (1, 3_600_000_000, 3)  # loadgen.report's Recorder (microseconds)
_REF = HdrHistogram(*_HDR_PARAMS)
_HEADER = struct.Struct(">IIIIQQd")  # hdrh's PayloadHeader (40 bytes, big-endian)


def sparse_counts(encoded):
    """{counts index: count} of an hdrh-encoded histogram (V2 compressed form: base64 of an 8-byte
    header and a zlib-compressed payload, a 40-byte header then ZigZag LEB128 counts, a negative
    number being a run of that many zero counts).  Histograms of other parameters than the
    Recorder's are decoded by hdrh and re-indexed (exact, slower)."""
    raw = base64.b64decode(encoded)
    data = zlib.decompress(raw[8:])
    _cookie, _plen, offset, digits, low, high, _ratio = _HEADER.unpack_from(data)
    if (low, high, digits) != _HDR_PARAMS or offset:
        hist = HdrHistogram.decode(encoded)
        out = {}
        for index in range(hist.counts_len):
            n = hist.counts[index]
            if n:
                k = _REF.get_counts_array_index(hist.get_value_from_index(index))
                out[k] = out.get(k, 0) + n
        return out
    out = {}
    index = 0
    i = 40
    end = len(data)
    while i < end:
        b = data[i]
        i += 1
        if b >= 128:
            v = b & 127
            shift = 7
            while True:
                b = data[i]
                i += 1
                v |= (b & 127) << shift
                if b < 128:
                    break
                shift += 7
            b = v
        if b & 1:
            index += (b + 1) >> 1  # a run of zeros
        else:
            if b:
                out[index] = b >> 1
            index += 1
    return out


def add_counts(into, counts):
    get = into.get
    for k, n in counts.items():
        into[k] = get(k, 0) + n


def sparse_percentiles(counts, percentiles=(50, 90, 99)):
    """Values (microseconds) at the percentiles, as hdrh's get_value_at_percentile gives them: the
    highest equivalent value of the first counts index whose running total reaches the target."""
    if not counts:
        return [0] * len(percentiles)
    keys = sorted(counts)
    running = list(accumulate(map(counts.__getitem__, keys)))
    total = running[-1]
    out = []
    for p in percentiles:
        j = bisect_left(running, max(int(min(p, 100.0) * total / 100 + 0.5), 1))
        out.append(_REF.get_highest_equivalent_value(_REF.get_value_from_index(keys[min(j, len(keys) - 1)])))
    return out


def sparse_encode(counts):
    """The hdrh encoding (base64 text) of a {counts index: count} histogram."""
    hist = HdrHistogram(*_HDR_PARAMS)
    c = hist.counts
    for k, n in counts.items():
        c[k] = n
    if counts:
        hist.set_internal_tacking_values(min(counts), max(counts), sum(counts.values()))
    return hist.encode().decode("ascii")


def _latency_entry(counts):
    p50, p90, p99 = sparse_percentiles(counts)
    return {"count": sum(counts.values()), "p50_ms": p50 / 1000, "p90_ms": p90 / 1000, "p99_ms": p99 / 1000,
            "hdr": sparse_encode(counts)}


def merge_lag(entries, counts=None):
    """One interval's schedule lag from several (the ``lag`` of loadgen.report.Stats.sample): starts
    and late starts added, mean weighted by starts, max of maxima, percentiles of the merged HDR
    (``counts``: the entries' histograms already merged, when the caller has them)."""
    if len(entries) == 1 and counts is None:
        return dict(entries[0])
    starts = sum(e.get("starts", 0) for e in entries)
    out = {"starts": starts, "late": sum(e.get("late", 0) for e in entries),
           "mean_ms": round(sum(e.get("mean_ms", 0.0) * e.get("starts", 0) for e in entries) / max(starts, 1), 3),
           "max_ms": max(e.get("max_ms", 0.0) for e in entries)}
    if counts is None and all("hdr" in e for e in entries):
        counts = {}
        for e in entries:
            add_counts(counts, sparse_counts(e["hdr"]))
    if counts:
        entry = _latency_entry(counts)
        out.update(p50_ms=entry["p50_ms"], p90_ms=entry["p90_ms"], p99_ms=entry["p99_ms"], hdr=entry["hdr"])
    return out


_SERIES_COUNTERS = ("devices", "requests", "http", "eas", "provisionings", "reprovisions", "throttled", "wipes")


def merge_series(all_series):
    """Merge time series point by point (same interval index): counts added, HDR merged (each
    interval's histogram decoded once, percentiles read from the merged counts), schedule lag
    merged by merge_lag.  A command (or the lag) only one series has in an interval is copied."""
    merged = []
    for i in range(max((len(s) for s in all_series), default=0)):
        points = [s[i] for s in all_series if i < len(s)]
        point = {"t": max(p["t"] for p in points)}
        for name in _SERIES_COUNTERS:
            total = {}
            for p in points:
                add_counts(total, p.get(name) or {})
            if name in ("devices", "requests", "provisionings", "reprovisions", "throttled", "wipes") or total:
                point[name] = total
        lags = [p["lag"] for p in points if p.get("lag")]
        if lags:
            point["lag"] = merge_lag(lags)
        by_command = {}
        for p in points:
            for command, lat in (p.get("latency") or {}).items():
                by_command.setdefault(command, []).append(lat)
        latency = {}
        for command, lats in by_command.items():
            if len(lats) == 1:
                latency[command] = dict(lats[0])
                continue
            counts = {}
            for lat in lats:
                add_counts(counts, sparse_counts(lat["hdr"]))
            latency[command] = _latency_entry(counts)
        point["latency"] = latency
        merged.append(point)
    return merged


class _Devices:
    """What the progress line needs of the population: a state per device."""

    def __init__(self):
        self.states = {}

    def counts(self):
        total = Counter()
        for c in self.states.values():
            total.update(c)
        return total


async def run_workers(scenario, workers, *, progress=True, stream=None, target_state=None):
    """Run ``scenario`` over ``workers`` processes; returns an engine.RunResult."""
    from loadgen.engine import RunResult, _deliver_mail, _run_events, _version

    stream = stream or sys.stderr
    loop = asyncio.get_running_loop()
    runner = target = None
    url = scenario.target.url
    if scenario.target.embedded and scenario.target.processes > 1 and target_state is None:
        from loadgen.target.cluster import start_cluster

        runner = target = await start_cluster(scenario)  # users sharded over processes
        url = target.urls  # each worker sends a device to its user's process (engine.build_population)
    elif scenario.target.embedded:
        from loadgen.engine import embedded_state
        from loadgen.target.server import start_target

        target_state = target_state or embedded_state(scenario)
        tls = dict(tls_cert=scenario.target.tls_cert, tls_key=scenario.target.tls_key) if scenario.target.tls else {}
        runner, target, url = await start_target(scenario.target.listen, 0, target_state, **tls)
    stats = Stats()
    views = _Devices()
    metrics.attach(stats, views.counts, run_id=uuid.uuid4().hex[:12], scenario=scenario.name, version=_version())
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(scenario, url, w, workers, out), daemon=True) for w in range(workers)]
    for p in procs:
        p.start()
    t0 = loop.time()
    deadline = t0 + scenario.duration
    side = []
    if target is not None:
        if scenario.events:
            side.append(asyncio.create_task(_run_events(scenario, target, t0, deadline, stats)))
        if scenario.target.mail_per_user_per_hour > 0 and not hasattr(target, "apply_event"):  # (a cluster: its own)
            side.append(asyncio.create_task(_deliver_mail(target.state, scenario, deadline)))
    latest, finals, errors = {}, {}, []
    last_print = 0.0
    interrupted = False
    try:
        while len(finals) + len(errors) < workers:
            try:
                shard, snap = await loop.run_in_executor(None, out.get, True, 0.5)
            except queue_mod.Empty:
                if not any(p.is_alive() for p in procs) and out.empty():
                    errors.append("a worker ended without its results")
                    break
                continue
            except asyncio.CancelledError:
                interrupted = True
                continue
            if "error" in snap:
                errors.append("worker %d: %s" % (shard, snap["error"]))
                continue
            latest[shard] = snap
            views.states[shard] = snap["devices"]
            if snap.get("final"):
                finals[shard] = snap
            _merge_into(stats, list(latest.values()))
            now = loop.time()
            if progress and now - last_print >= (1.0 if stream.isatty() else 5.0):
                last_print = now
                states = ", ".join("%s %d" % kv for kv in views.counts().most_common(4))
                stream.write("[%5.1fs/%.0fs] %d workers | devices %d (%s) | requests %d | errors %d\n" % (
                    now - t0, scenario.duration, workers, scenario.population.devices, states, stats.total,
                    stats.failures))
                stream.flush()
    finally:
        events = list(stats.events)
        for task in side:
            task.cancel()
        await asyncio.gather(*side, return_exceptions=True)
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        if runner is not None:
            await runner.cleanup()
    if errors:
        raise RuntimeError("; ".join(errors))
    _merge_final(stats, [finals[w] for w in sorted(finals)])
    stats.events = events
    stats.interrupted = stats.interrupted or interrupted
    return RunResult(stats, [None] * scenario.population.devices, url, target, stats.interrupted)


__all__ = ["run_workers", "merge_series"]
