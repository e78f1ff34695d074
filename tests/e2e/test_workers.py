"""--workers: deterministic shards whose union is the unsharded population; merged results."""

import subprocess
import sys

import orjson
import pytest

from loadgen.run import engine
from loadgen import scenario
from loadgen.results.histograms import merge_series


def _ids(devices):
    return {(d.user, d.ident.device_id, d.version.text, d.profile.name) for d in devices}


def test_shards_union_is_the_whole_population():
    sc = scenario.parse('seed = 3\n[auth]\nusers = 50\n[population]\ndevices = 97\ndevices_per_user = 2\n'
                        'versions = { "14.1" = 1, "12.1" = 1 }\nprofiles = { modern = 1, legacy = 1 }\n', "w.toml")
    whole, _ = engine.build_population(sc, "http://127.0.0.1:1/Microsoft-Server-ActiveSync")
    for shards in (2, 3):
        parts = [engine.build_population(sc, "http://127.0.0.1:1/Microsoft-Server-ActiveSync", w, shards)[0]
                 for w in range(shards)]
        assert sum(len(p) for p in parts) == len(whole)
        assert set().union(*(_ids(p) for p in parts)) == _ids(whole)


def test_merge_series_adds_counts_and_merges_histograms():
    from loadgen.results.stats import Stats

    a, b = Stats(), Stats()
    a.record("Sync", 200, "ok", 0.010, 1, 1)
    b.record("Sync", 200, "ok", 0.030, 1, 1)
    b.record("Sync", 200, "ok", 0.030, 1, 1)
    a.sample(1.0, {"provisioned": 2})
    b.sample(1.0, {"provisioned": 3})
    merged = merge_series([a.series, b.series])
    assert merged[0]["devices"] == {"provisioned": 5} and merged[0]["requests"] == {"Sync ok": 3}
    assert merged[0]["latency"]["Sync"]["count"] == 3
    assert 29 <= merged[0]["latency"]["Sync"]["p50_ms"] <= 31


def test_two_workers_end_to_end(tmp_path):
    """Two workers against the parent's embedded target: a policy change made once every device is
    provisioned reaches every device of both workers (each reprovisions once, after a 144), and the
    merged results account for every request.  Driven by conditions on the target's state, not by
    times inside the run (the run is long and stopped by the test), so a loaded machine only makes
    it slower; the scenario's event at 0 s is applied by the parent when the workers start."""
    import asyncio

    from hostile import wait_for

    from loadgen.cli.start import run as start_run
    from loadgen.exchange import launch

    sc = scenario.parse('duration = 600\n[population]\ndevices = 12\n[load]\nramp_up = 0.5\nthink_time = 0.3\n'
                        'mode = "poll"\ngraceful_stop = 5\n[[events]]\nat = 0\naction = "mail"\nfraction = 1.0\n',
                        "w.toml")

    async def go():
        state = launch.embedded_state(sc)
        stop = asyncio.Event()
        run = asyncio.create_task(start_run(sc, workers=2, progress=False, target_state=state, stop=stop,
                                            handle_signals=False))

        def all_on(key):
            return len(state.devices) == 12 and all(r.acked_key == key for r in state.devices.values())

        try:
            await wait_for(lambda: all_on(state.policy_key) or run.done(), 120)
            assert not run.done(), run
            state.change_policy(MinDevicePasswordLength=6)
            await wait_for(lambda: all_on(state.policy_key) or run.done(), 120)
            assert not run.done(), run
        finally:
            stop.set()
        return await asyncio.wait_for(run, 120)

    result = asyncio.run(go())
    stats = result.stats
    assert result.interrupted  # stopped by the test, not at its end
    assert stats.reprovisions["144"] == 12  # the parent's policy change reached every worker's devices
    assert [e[1] for e in stats.events] == ["mail"] and stats.events[0][2].startswith("mail for ")
    data = stats.to_dict(scenario=sc.name, target="embedded")
    assert data["devices"] == {"provisioned": 12}
    assert data["requests"] == sum(data["by_command_status"].values())
    assert data["latency"]["Provision"]["count"] == data["by_command_status"]["Provision 200"]


def test_worker_snapshots_carry_every_counter_of_stats():
    """What the parent shows live for --workers N (metrics, progress) is the sum of the workers'
    snapshots: every Counter, number and *_buckets list of Stats must travel, including the
    open-model arrival and schedule-lag figures (easload_device_starts_total, _schedule_lag_seconds)."""
    from collections import Counter

    from loadgen.results.stats import Stats
    from loadgen.run.workers import _merge_into, _snapshot

    shards = []
    for n in (1, 2):
        s = Stats()
        for _ in range(n):
            s.record("Provision", 200, "ok", 0.01, 100, 200, eas_status=1)
            s.start_lag(0.5 * n, 0.1)
            s.reprovision("144")
            s.provisioning("provisioned", 1)
        s.reenrolments += n
        shards.append(_snapshot(s, [], final=False))
    merged = Stats()
    _merge_into(merged, shards)
    assert merged.total == 3 and merged.starts == 3 and merged.late_starts == 3
    assert merged.lag_sum == 0.5 * 1 + 1.0 * 2
    assert sum(merged.lag_buckets) == 3
    assert merged.reprovisions == Counter({"144": 3})
    assert merged.provisionings == Counter({("provisioned", "1"): 3})
    assert merged.reenrolments == 3 and merged.bytes_sent == 300
    fresh = vars(Stats())
    for name, value in fresh.items():  # nothing of Stats is left behind by the snapshot
        if isinstance(value, Counter) or name.endswith("_buckets") or (
                type(value) in (int, float) and name not in ("started", "ended", "interrupted")):
            assert name in shards[0], name


def _same_counts(text, ref):
    return list(_hdrh_of(text).counts) == list(ref.counts)


def _hdrh_of(text):
    """hdrh's histogram of an interval's "counts" (loadgen.run.workers: parts separated by spaces, each a
    digit W and the base64 of raw DEFLATE of n uint16 LE counts indices then n W-byte LE counts), decoded
    here by the letter of that description."""
    import base64
    import zlib

    from hdrh.histogram import HdrHistogram

    h = HdrHistogram(1, 3_600_000_000, 3)
    for part in text.split(" "):  # the histogram is the sum of its parts
        width, raw = int(part[0]), zlib.decompress(base64.b64decode(part[1:]), wbits=-15)
        n = len(raw) // (2 + width)
        assert len(raw) == n * (2 + width)
        for j in range(n):
            index = int.from_bytes(raw[2 * j:2 * j + 2], "little")
            count = int.from_bytes(raw[2 * n + width * j:2 * n + width * (j + 1)], "little")
            h.record_value(h.get_value_from_index(index), count)
    return h


def test_merge_series_merges_lag_and_statuses_exactly():
    """Per-interval schedule lag, HTTP and EAS statuses (Stats.sample) merge exactly: counts added,
    max of maxima, mean weighted by starts, percentiles of the merged HDR equal to hdrh's own."""
    from hdrh.histogram import HdrHistogram

    from loadgen.results.stats import Stats
    from loadgen.results.histograms import sparse_counts, sparse_percentiles

    a, b = Stats(), Stats()
    for lag in (0.001, 0.002, 0.003):
        a.start_lag(lag, 0.1)
    for lag in (0.2, 0.5):
        b.start_lag(lag, 0.1)
    a.record("Sync", 200, "ok", 0.010, 1, 1, eas_status=1)
    b.record("Sync", 503, "http_error", 0.020, 1, 1)
    b.record("Sync", 200, "ok", 0.020, 1, 1, eas_status=3)
    a.sample(1.0, {})
    b.sample(1.0, {})
    a.sample(2.0, {})  # no start, no request: no lag, nothing counted
    assert "lag" not in a.series[1] and a.series[1]["http"] == {} and a.series[1]["eas"] == {}
    assert b.series[0]["lag"]["late"] == 2 and b.series[0]["lag"]["max_ms"] == 500.0
    merged = merge_series([a.series, b.series])
    lag = merged[0]["lag"]
    assert lag["starts"] == 5 and lag["late"] == 2 and lag["max_ms"] == 500.0
    assert lag["mean_ms"] == pytest.approx((1 + 2 + 3 + 200 + 500) / 5, rel=1e-6)
    ref = HdrHistogram(1, 3_600_000_000, 3)  # hdrh's own, of the values recorded (us)
    for us in (1000, 2000, 3000, 200_000, 500_000):
        ref.record_value(us)
    assert [lag["p50_ms"], lag["p90_ms"], lag["p99_ms"]] == [ref.get_value_at_percentile(p) / 1000 for p in (50, 90, 99)]
    assert _hdrh_of(lag["counts"]).get_total_count() == 5
    assert _same_counts(lag["counts"], ref)
    sync = b.series[0]["latency"]["Sync"]  # sample()'s own percentiles are hdrh's, to the bit
    hb = HdrHistogram(1, 3_600_000_000, 3)
    hb.record_value(20_000, 2)
    assert [sync["p50_ms"], sync["p99_ms"]] == [hb.get_value_at_percentile(p) / 1000 for p in (50, 99)]
    assert sync["count"] == 2 and "hdr" not in sync
    assert merged[0]["http"] == {"Sync 200": 2, "Sync 503": 1}
    assert merged[0]["eas"] == {"Sync 1": 1, "Sync 3": 1}
    assert "lag" not in merged[1] and "http" not in merged[1]
    # the fast decoder and percentiles agree with hdrh on a wide histogram, value for value
    h = HdrHistogram(1, 3_600_000_000, 3)
    for v in list(range(1, 3000, 7)) + [10 ** k for k in range(3, 10)] + [123_456] * 300:
        h.record_value(v)
    counts = sparse_counts(h.encode())
    assert sum(counts.values()) == h.get_total_count()
    assert all(h.counts[i] == n for i, n in counts.items())
    assert sparse_percentiles(counts, (1, 50, 90, 99, 99.9, 100)) == \
        [h.get_value_at_percentile(p) for p in (1, 50, 90, 99, 99.9, 100)]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(devices=st.integers(1, 60), per_user=st.integers(1, 4), seed=st.integers(0, 2**32 - 1),
       shards=st.integers(1, 7), weights=st.lists(st.integers(0, 3), min_size=4, max_size=4).filter(any),
       urls=st.integers(1, 3))
def test_sharding_never_changes_a_device(devices, per_user, seed, shards, weights, urls):
    """Property: whatever (population, N), the shards partition the population and each
    device keeps its identity -- user, password, device id, IMEI, version, profile, index and the
    target process of its user -- as in the unsharded run."""
    versions = dict(zip(("12.1", "14.0", "14.1", "16.1"), weights))
    sc = scenario.parse('seed = %d\n[auth]\nusers = %d\n[population]\ndevices = %d\ndevices_per_user = %d\n'
                        'versions = { %s }\nprofiles = { modern = 2, legacy = 1, fumbler = 1 }\n'
                        % (seed, -(-devices // per_user), devices, per_user,
                           ", ".join('"%s" = %d' % kv for kv in versions.items())), "p.toml")
    base = ["http://127.0.0.%d:1/Microsoft-Server-ActiveSync" % (k + 1) for k in range(urls)]

    def key(d):
        return (d.index, d.user, d.password, d.ident.device_id, d.ident.imei, d.version.text, d.profile.name,
                d.base_url)

    whole = {key(d) for d in engine.build_population(sc, base)[0]}
    seen = []
    for w in range(shards):
        part = engine.build_population(sc, base, w, shards)[0]
        assert all(d.index % shards == w for d in part)
        seen.extend(key(d) for d in part)
    assert len(seen) == len(set(seen)) == devices  # a partition: no device twice, none lost
    assert set(seen) == whole


def _hdrh(values_counts):
    from hdrh.histogram import HdrHistogram

    h = HdrHistogram(1, 3_600_000_000, 3)
    for v, n in values_counts:
        h.record_value(v, n)
    return h


def _random_values(rng, n):
    """Latencies (us) over the whole Recorder range, with repeats and both ends."""
    out = [(max(1, min(3_600_000_000, int(rng.lognormvariate(rng.uniform(6, 14), rng.uniform(0.1, 2.5))))),
            rng.choice((1, 1, 1, 2, 7, 300, 70_000))) for _ in range(n)]
    return out + [(1, 1), (3_600_000_000, 1)] if rng.random() < 0.3 else out


def _part_of(values_counts):
    from loadgen.results.histograms import _REF, encode_counts

    counts = {}
    for v, n in values_counts:
        k = _REF.get_counts_array_index(v)
        counts[k] = counts.get(k, 0) + n
    keys = sorted(counts)
    return encode_counts(keys, [counts[k] for k in keys])


PCTS = (0, 1, 25, 50, 75, 90, 99, 99.9, 99.99, 100)


def test_interval_counts_are_hdrh_counts_and_parts_sum_exactly():
    """The "counts" form (loadgen.run.workers notes): an encoded histogram decodes to hdrh's own counts
    array, by this test's independent decoder too; a text of several parts is their sum, and its
    percentiles (read without adding the parts) are hdrh's get_value_at_percentile of the sum."""
    import random

    from loadgen.results.histograms import decode_counts, interval_parts, parts_count, parts_percentiles

    rng = random.Random(7)
    for case in range(60):
        groups = [_random_values(rng, rng.choice((1, 3, 40, 400))) for _ in range(rng.randint(1, 9))]
        ref = _hdrh([vc for g in groups for vc in g])
        text = " ".join(_part_of(g) for g in groups)
        assert _same_counts(text, ref), case
        indices, counts = decode_counts(text)
        assert [ref.counts[i] for i in indices] == counts and sum(counts) == ref.get_total_count()
        parts = interval_parts({"counts": text})
        assert parts_count(parts) == ref.get_total_count()
        assert parts_percentiles(parts, PCTS) == [ref.get_value_at_percentile(p) for p in PCTS], case


def test_merge_series_joins_parts_and_compacts_past_max_parts():
    """Merged intervals keep their shards' parts (no re-encoding) up to MAX_PARTS, then one part;
    either way the merged histogram and its percentiles are hdrh's of all the requests, and a merged
    series merges again."""
    import random

    from loadgen.results.histograms import MAX_PARTS

    rng = random.Random(3)
    shards = [_random_values(rng, 50) for _ in range(MAX_PARTS + 1)]
    series = [[{"t": 1.0, "devices": {}, "requests": {"Sync ok": sum(n for _v, n in g)},
                "latency": {"Sync": {"count": sum(n for _v, n in g), "counts": _part_of(g)}}}] for g in shards]
    for k in (2, 5, MAX_PARTS, MAX_PARTS + 1):
        ref = _hdrh([vc for g in shards[:k] for vc in g])
        (point,) = merge_series(series[:k])
        lat = point["latency"]["Sync"]
        assert lat["counts"].count(" ") + 1 == (k if k <= MAX_PARTS else 1)
        assert lat["count"] == ref.get_total_count() == point["requests"]["Sync ok"]
        assert [lat["p50_ms"], lat["p90_ms"], lat["p99_ms"]] == [ref.get_value_at_percentile(p) / 1000 for p in (50, 90, 99)]
        assert _same_counts(lat["counts"], ref)
    ref = _hdrh([vc for g in shards[:5] for vc in g])
    again = merge_series([merge_series(series[:2]), merge_series(series[2:5])])
    assert again[0]["latency"]["Sync"]["p99_ms"] == ref.get_value_at_percentile(99) / 1000
    assert _same_counts(again[0]["latency"]["Sync"]["counts"], ref)


def test_old_summaries_with_hdr_intervals_still_merge():
    """Summaries written before the "counts" form carry hdrh's base64 per interval ("hdr"): they merge
    with new ones exactly, and the result is written in the new form only."""
    import random

    rng = random.Random(5)
    old_values, new_values, lag_values = _random_values(rng, 80), _random_values(rng, 80), _random_values(rng, 5)
    old = _hdrh(old_values)
    old_lag = _hdrh(lag_values)
    old_series = [{"t": 1.0, "devices": {}, "requests": {},
                   "lag": {"starts": 5, "late": 0, "mean_ms": 1.0, "max_ms": 1.0, "hdr": old_lag.encode().decode("ascii")},
                   "latency": {"Sync": {"count": old.get_total_count(), "hdr": old.encode().decode("ascii")},
                               "Ping": {"count": old.get_total_count(), "hdr": old.encode().decode("ascii")}}}]
    new_series = [{"t": 1.0, "devices": {}, "requests": {},
                   "lag": {"starts": 1, "late": 0, "mean_ms": 1.0, "max_ms": 1.0, "counts": _part_of(new_values[:1])},
                   "latency": {"Sync": {"count": 0, "counts": _part_of(new_values)}}}]
    (point,) = merge_series([old_series, new_series])
    ref = _hdrh(old_values + new_values)
    assert point["latency"]["Sync"]["count"] == ref.get_total_count()
    assert point["latency"]["Sync"]["p90_ms"] == ref.get_value_at_percentile(90) / 1000
    assert _same_counts(point["latency"]["Sync"]["counts"], ref)
    ping = point["latency"]["Ping"]  # in one series only: copied, its histogram rewritten
    assert "hdr" not in ping and _same_counts(ping["counts"], old)
    lag_ref = _hdrh(lag_values + new_values[:1])
    assert point["lag"]["starts"] == 6 and point["lag"]["p99_ms"] == lag_ref.get_value_at_percentile(99) / 1000
    assert "hdr" not in point["lag"]


def test_malformed_interval_counts_are_a_clear_error():
    from loadgen.results.histograms import interval_parts

    good = _part_of([(1000, 1)])
    for bad in ("x" + good[1:], "3" + good[1:], good[:1] + "!!", good + " 1", "1" + good[1:-4], 12):
        with pytest.raises(ValueError, match="interval histogram"):
            merge_series([[{"t": 1.0, "latency": {"Sync": {"count": 1, "counts": bad}}}],
                          [{"t": 1.0, "latency": {"Sync": {"count": 1, "counts": good}}}]])
    with pytest.raises(ValueError, match="beyond the last"):
        from loadgen.results.histograms import encode_counts

        interval_parts({"counts": encode_counts([23_552], [1])})
