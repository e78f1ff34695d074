"""The workload's task figures (loadgen/results/tasks.py, Stats.tasks_planned / task_done / task_queued):
counted per type with bounded labels, latency from the planned time in HDR histograms, per-interval
series, the summary's ``tasks`` section read back by the summary reader, merged exactly across shards
(results/merge.py) and workers (run/workers.py), and shown by the text, HTML and Prometheus outputs."""

import math

import pytest
from hdrh.histogram import HdrHistogram

from loadgen.results import html, metrics
from loadgen.results.histograms import merge_series
from loadgen.results.merge import merge
from loadgen.results.stats import Stats
from loadgen.results.summary import SummaryError, check_summary
from loadgen.results.tasks import TASK_TYPES
from loadgen.results.text import summary_text


def day(stats=None):
    """A small day: 10 sends planned, 8 achieved (3 of them late), 1 failed; 4 processes planned, 4 done."""
    s = stats or Stats()
    s.tasks_planned("send", 10)
    s.tasks_planned("process", 4)
    for i in range(8):
        start = 100.0 + i + (0.5 if i < 3 else 0.01)  # 3 starts 500 ms after the plan: late
        s.task_done("send", 100.0 + i, start, start + 1.0 + i / 10, True)
    s.task_done("send", 200.0, 200.0, 230.0, False)
    for i in range(4):
        s.task_done("process", 50.0, 50.0, 50.2, True)
    return s


def test_tasks_are_counted_per_type_with_latency_from_the_planned_time():
    s = day()
    t = s.to_dict("x")["tasks"]
    send = t["by_type"]["send"]
    assert (send["planned"], send["achieved"], send["failed"], send["late"]) == (10, 8, 1, 3)
    assert send["achieved_ratio"] == 0.8 and send["late_ratio"] == pytest.approx(3 / 9, abs=1e-6)
    hist = HdrHistogram.decode(t["histograms"]["send"])
    assert hist.get_total_count() == 9
    # latency counts from the planned time: a task started 0.5 s late that took 0.5 s waited 1 s
    one = Stats()
    one.task_done("reply", 10.0, 10.5, 11.0, True)
    assert one.tasks_dict()["by_type"]["reply"]["latency"]["p50_ms"] == pytest.approx(1000, rel=1e-3)
    assert one.tasks_dict()["by_type"]["reply"]["late"] == 1
    assert send["latency"]["max_ms"] == pytest.approx(30_000, rel=1e-3)
    assert t["by_type"]["process"]["achieved_ratio"] == 1.0
    assert t["total"]["planned"] == 14 and t["total"]["achieved"] == 12
    assert t["total"]["achieved_ratio"] == pytest.approx(12 / 14, abs=1e-6)
    assert list(t["by_type"]) == ["send", "process"]  # TASK_TYPES' order


def test_a_run_without_tasks_has_no_tasks_section():
    s = Stats()
    s.record("Sync", 200, "ok", 0.01, 10, 10)
    s.sample(1.0, {})
    d = s.to_dict("x")
    assert "tasks" not in d and "tasks" not in d["series"][0] and "aborted" not in d


def test_labels_are_bounded_and_odd_times_are_clamped():
    s = Stats()
    s.tasks_planned("dance", 2)
    s.task_done("dance", 10.0, 10.0, 5.0, True)  # ended before its plan: 0
    s.task_done("sing", 0.0, 0.0, float("nan"), True)  # not a number: 0
    s.task_done("send", 0.0, 0.0, 10 * 3600.0, True)  # beyond an hour: an hour
    t = s.tasks_dict()
    assert set(t["by_type"]) == {"send", "other"}
    assert t["by_type"]["other"]["planned"] == 2 and t["by_type"]["other"]["achieved"] == 2
    assert t["by_type"]["send"]["latency"]["max_ms"] == pytest.approx(3_600_000, rel=1e-3)
    assert t["by_type"]["send"]["achieved_ratio"] is None  # nothing planned: no ratio
    assert all(k[0] in TASK_TYPES + ("other",) for k in s.task_counts)


def test_queued_tasks_and_their_peak():
    s = Stats()
    for delta in (1, 1, 1, -1, 1, -1, -1, -1):
        s.task_queued(delta)
    assert s.tasks_queued == 0 and s.tasks_queued_peak == 3
    assert s.tasks_dict()["total"]["queued_peak"] == 3


def test_the_series_has_each_interval_s_tasks_and_the_queue():
    s = Stats()
    s.tasks_planned("send", 3)
    s.task_done("send", 0.0, 0.0, 0.5, True)
    s.task_queued(2)
    s.sample(1.0, {})
    s.task_done("send", 1.0, 1.5, 2.0, True)
    s.task_done("send", 1.0, 1.0, 2.0, False)
    s.task_queued(-1)
    s.sample(2.0, {})
    first, second = s.series[0]["tasks"], s.series[1]["tasks"]
    assert first == {"send planned": 3, "send achieved": 1, "queued": 2}
    assert second == {"send achieved": 1, "send failed": 1, "send late": 1, "queued": 1}
    merged = merge_series([s.series, s.series])
    assert merged[1]["tasks"] == {"send achieved": 2, "send failed": 2, "send late": 2, "queued": 2}


def test_the_summary_reader_checks_the_tasks_section():
    d = day().to_dict("x")
    check_summary(d, "ok.json")
    for damage in ({"by_type": {"send": {"planned": "ten"}}}, {"by_type": []}, {"histograms": {"send": "nope"}},
                   {"total": {"planned": "x"}}, "tasks", {"by_type": {"send": {"planned": -1}}}):
        with pytest.raises(SummaryError, match="tasks"):
            check_summary(dict(d, tasks=damage), "bad.json")
    with pytest.raises(SummaryError, match="aborted"):
        check_summary(dict(d, aborted=4), "bad.json")


def test_shards_merge_exactly():
    one = day().to_dict("x")
    two = day().to_dict("x")
    stats, _shards, _first = merge([dict(one, shard=[0, 2]), dict(two, shard=[1, 2])], shards=False)
    t = stats.tasks_dict()
    send = t["by_type"]["send"]
    assert (send["planned"], send["achieved"], send["failed"], send["late"]) == (20, 16, 2, 6)
    assert send["achieved_ratio"] == 0.8
    # the same data twice: the same percentiles, twice the count
    assert send["latency"] == dict(one["tasks"]["by_type"]["send"]["latency"], count=18)


def test_the_merged_queue_peak_is_labelled_an_upper_bound_when_it_is_one():
    """Shards' queues need not peak together: their peaks' sum is an upper bound, said so in the summary
    and the text; one shard with a queue (the others' empty) gives its peak exactly."""
    queued, empty = day(), day()
    queued.task_queued(2)
    other = day()
    other.task_queued(1)
    d = {name: s.to_dict("x") for name, s in (("queued", queued), ("empty", empty), ("other", other))}
    assert d["queued"]["tasks"]["total"]["queued_peak_bound"] is False
    stats, _s, _f = merge([dict(d["queued"], shard=[0, 2]), dict(d["empty"], shard=[1, 2])], shards=False)
    assert (stats.tasks_dict()["total"]["queued_peak"], stats.tasks_dict()["total"]["queued_peak_bound"]) == (2, False)
    stats, _s, _f = merge([dict(d["queued"], shard=[0, 2]), dict(d["other"], shard=[1, 2])], shards=False)
    total = stats.tasks_dict()["total"]
    assert (total["queued_peak"], total["queued_peak_bound"]) == (3, True)
    assert "peak at most 3 (the sum of" in summary_text(stats, "x", "t", 10)
    assert "peak at most 3" in html.render([dict(d["queued"], shard=[0, 2]), dict(d["other"], shard=[1, 2])])


def test_workers_ship_the_task_histograms():
    from loadgen.run.workers import _merge_final, _snapshot

    a, b = day(), day()
    a.task_queued(2)
    b.task_queued(1)
    for s in (a, b):
        s.ended = s.started + 1
    parent = Stats()
    _merge_final(parent, [_snapshot(a, [], True), _snapshot(b, [], True)])
    t = parent.tasks_dict()
    assert t["by_type"]["send"]["planned"] == 20 and t["by_type"]["send"]["late"] == 6
    assert t["by_type"]["send"]["latency"]["count"] == 18
    assert t["total"]["queued_end"] == 3 and t["total"]["queued_peak"] == 3
    # Prometheus' buckets and sums are summed too
    assert sum(parent.task_bucket_counts("send")) == 18
    assert math.isclose(parent.task_sums["send"], 2 * a.task_sums["send"])


def test_text_html_and_prometheus_show_the_tasks():
    s = day()
    s.task_queued(1)
    s.ended = s.started + 10
    text = summary_text(s, "x", "t", 10)
    assert "Tasks (planned by the user-day" in text
    line = [ln for ln in text.splitlines() if ln.strip().startswith("send ")][0]
    assert line.split()[1:8] == ["10", "8", "1", "3", "0", "0", "0.800"]  # skipped, unstarted: 0
    assert "peak 1" in text
    d = s.to_dict("x")
    d["thresholds"] = []
    page = html.render([d])
    assert 'id="tasks"' in page and 'data-table="tasks"' in page
    run = metrics.RunCollector()
    run.attach(s, dict, {"run_id": "x"})
    families = {f.name: f for f in run.collect()}
    samples = {(x.labels.get("type"), x.labels.get("result")): x.value for x in families["easload_tasks"].samples}
    assert samples[("send", "planned")] == 10 and samples[("send", "late")] == 3
    assert samples[("search", "achieved")] == 0  # every type from zero
    counts = [x for x in families["easload_task_latency_seconds"].samples
              if x.name.endswith("_count") and x.labels["type"] == "send"]
    assert counts[0].value == 9
    assert families["easload_tasks_queued"].samples[0].value == 1
    # a run without a workload exports no task family
    quiet = metrics.RunCollector()
    quiet.attach(Stats(), dict, {"run_id": "x"})
    assert not {"easload_tasks", "easload_tasks_queued"} & {f.name for f in quiet.collect()}


def test_a_run_that_stopped_itself_says_why():
    s = day()
    s.aborted = "backlog: 16 queued tasks > limit 15"
    s.interrupted = True
    s.ended = s.started + 1
    assert "stopped itself: backlog: 16 queued tasks > limit 15" in summary_text(s, "x", "t", 10)
    d = s.to_dict("x")
    assert d["aborted"] == "backlog: 16 queued tasks > limit 15"
    d["thresholds"] = []
    assert "stopped itself" in html.render([d])
    stats, _s, _f = merge([dict(d, shard=[0, 2]), dict(day().to_dict("x"), shard=[1, 2])], shards=False)
    assert stats.aborted == d["aborted"]
