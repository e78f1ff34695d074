"""Statistics, the fast HDR recorder, and the Prometheus exposition of a run."""

from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from loadgen.results import metrics
from loadgen.results.stats import Recorder, Stats


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=3_600_000_000), min_size=1, max_size=200))
def test_recorder_matches_hdrh_record_value(values):
    fast = Recorder()
    ref = HdrHistogram(1, 3_600_000_000, 3)
    for v in values:
        fast.record(v)
        ref.record_value(v)
    hist = fast.histogram()
    assert list(hist.counts) == list(ref.counts)
    assert (hist.get_total_count(), hist.get_min_value(), hist.get_max_value()) == \
        (ref.get_total_count(), ref.get_min_value(), ref.get_max_value())
    for p in (50, 90, 99, 99.9, 100):
        assert hist.get_value_at_percentile(p) == ref.get_value_at_percentile(p)


def scrape():
    return {m.name: m for m in text_string_to_metric_families(metrics.exposition())}


def test_exposition_reads_the_stats():
    stats = Stats()
    stats.record("FolderSync", 200, "ok", 0.003, 13, 40, 1)
    stats.record("FolderSync", 200, "ok", 0.2, 13, 40, 1)
    stats.record("FolderSync", 449, "reprovision", 0.01, 13, 0)
    stats.record("Ping", 200, "ok", 300.0, 20, 10, 1)
    stats.provisioning("provisioned", 1)
    stats.reprovision("449")
    metrics.attach(stats, lambda: {"provisioned": 3, "refused": 1}, run_id="r1", scenario="t", version="0")
    fams = scrape()
    req = {tuple(sorted(s.labels.items())): s.value for s in fams["easload_requests"].samples
           if s.name == "easload_requests_total"}
    assert req[(("command", "FolderSync"), ("http_status", "200"), ("outcome", "ok"))] == 2
    assert req[(("command", "FolderSync"), ("http_status", "449"), ("outcome", "reprovision"))] == 1
    buckets = {s.labels["le"]: s.value for s in fams["easload_request_duration_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["outcome"] == "ok"}
    assert buckets["0.005"] == 1 and buckets["0.25"] == 2 and buckets["+Inf"] == 2
    ping = [s for s in fams["easload_ping_duration_seconds"].samples if s.name.endswith("_count")]
    assert ping[0].value == 1
    assert not any(s.labels.get("command") == "Ping" for s in fams["easload_request_duration_seconds"].samples)
    devices = {s.labels["state"]: s.value for s in fams["easload_devices"].samples}
    assert devices == {"provisioned": 3, "refused": 1}
    assert [s.value for s in fams["easload_sent_bytes"].samples if s.name.endswith("_total")] == [59]
    assert fams["easload_reprovisions"].samples[0].labels == {"trigger": "449"}


def test_summary_views():
    stats = Stats()
    stats.record("Provision", 200, "ok", 0.001, 10, 10)
    stats.record("Provision", 0, "timeout", 30.0, 10, 0)
    assert stats.requests == {("Provision", "200"): 1, ("Provision", "timeout"): 1}
    assert stats.errors() == 1
    assert stats.percentiles("Provision")["count"] == 2


def test_promtool_check_metrics_is_clean():
    import os
    import shutil
    import subprocess

    import pytest

    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("EASLOAD_REQUIRE_PROMETHEUS"):
            pytest.fail("promtool is not installed (EASLOAD_REQUIRE_PROMETHEUS is set)")
        pytest.skip("promtool not installed")
    stats = Stats()
    for cmd, status, outcome in (("Sync", 200, "ok"), ("Ping", 200, "ok"), ("Provision", 503, "throttled")):
        stats.record(cmd, status, outcome, 0.02, 10, 10, 1)
    stats.provisioning("provisioned", 1)
    stats.reprovision("144")
    stats.throttle("OutOfBudgets")
    metrics.attach(stats, lambda: {"provisioned": 1}, run_id="r", scenario="s", version="v")
    out = subprocess.run([promtool, "check", "metrics"], input=metrics.exposition(), capture_output=True, text=True)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr


async def test_embedded_target_metrics_on_the_run_endpoint():
    """`easload run` with the embedded target: the target's easload_target_* series are on the run's
    own endpoint (client and server side by side in one scrape), with the target's exact counts."""
    from loadgen.cli import start
    from loadgen import scenario

    sc = scenario.parse('duration = 2\n[population]\ndevices = 4\n[load]\nramp_up = 0.2\nthink_time = 0.2\n'
                        'mode = "poll"\n')
    result = await start.run(sc, progress=False, attach_metrics=True)
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition())}
    assert "easload_requests" in families and "easload_target_requests" in families
    served = {}
    for s in families["easload_target_requests"].samples:
        if s.name.endswith("_total"):
            served[s.labels["command"]] = served.get(s.labels["command"], 0) + s.value
    assert served.get("Provision", 0) == sum(n for (c, _h, _e), n in result.target.counters.items() if c == "Provision")
    sent = sum(n for (c, _o, _s), n in result.stats.by_key.items() if c == "Provision")
    assert served["Provision"] == sent > 0
    metrics.attach_collector(None)
    assert "easload_target_requests" not in metrics.exposition()


def _shard(seed, index):
    import random

    rng = random.Random(seed)
    s = Stats()
    for _ in range(400):
        outcome, status = rng.choice((("ok", 200), ("challenge", 401), ("timeout", 0), ("http_503", 503)))
        s.record(rng.choice(("Sync", "Ping")), status, outcome, rng.expovariate(20), 10, 10)
    s.enrolment(rng.uniform(0.1, 2), 0.1)
    s.provisioning("provisioned", 1)
    s.final_states.update({"provisioned": 3, "wiped": 1})
    s.ended = s.started + 10
    d = s.to_dict("t")
    d["shard"] = [index, 2]
    return d


def test_one_threshold_evaluator_for_run_merge_and_report():
    """The thresholds of a merged run are judged alike by ``easload merge`` (a merged Stats) and by the HTML
    report (the summaries' dicts), timings included; the text a summary keeps reads back as written."""
    from loadgen.results import html
    from loadgen.results.merge import merge
    from loadgen.results.thresholds import evaluate, from_text, parse

    metrics = ("errors.rate", "errors.count", "requests.count", "devices.provisioned", "provisionings.provisioned",
               "Sync.p50", "Sync.p95", "Sync.max", "Sync.count", "Sync.errors", "Enrolment.p99", "MoveItems.p99")
    ths = [parse(m, "< 0.00001") for m in metrics]
    assert [from_text(str(t)) for t in ths] == ths and str(ths[0]) == "errors.rate < 1e-05"
    shards = [_shard(1, 0), _shard(2, 1)]
    for d in shards:
        d["thresholds"] = [{"threshold": str(t), "value": None, "passed": False} for t in ths]
    stats, _info, _first = merge(shards)
    by_stats = [(str(t), v) for t, v, _ok in evaluate(stats, ths)]
    by_report = [(t["threshold"], t["value"]) for t in html.merge(shards)["thresholds"]]
    assert by_stats == by_report
    assert dict(by_stats)["Enrolment.p99 < 1e-05"] is not None and dict(by_stats)["MoveItems.p99 < 1e-05"] is None  # a command without requests: no data
    assert dict(by_stats)["Sync.errors < 1e-05"] == sum(n for (c, o, _s), n in stats.by_key.items()
                                                        if c == "Sync" and o in ("timeout", "http_5xx"))
