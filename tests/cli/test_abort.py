"""Verdicts that come early: ``abort_on_fail`` thresholds (loadgen/results/thresholds.py AbortWatch,
judged during the run by loadgen/run/engine.py, or by the parent of ``--workers`` processes on their
merged figures) end a run gracefully with exit 5; a target that never answers ends it with exit 3
within about 10 s of its first requests (engine.DeadTarget), while a target answering HTTP 500 is alive
and runs its whole duration."""

import asyncio
import json
import socket

import pytest

from hostile import ScriptedServer, http_response
from loadgen import scenario
from loadgen.cli import app, start
from loadgen.results import thresholds as grammar
from loadgen.results.thresholds import AbortWatch, Figures, Threshold, ThresholdError
from loadgen.run import engine

TOML = """
name = "abort"
duration = {duration}
seed = 5
[target]
url = "{url}"
ping_min = 5
[auth]
users = 4
[population]
devices = 4
devices_per_user = 1
[load]
mode = "ping"
heartbeat = "5s"
ramp_up = 0.5
timeout = 5
graceful_stop = 0.5
[thresholds]
"errors.rate" = "< 0.5"
{extra}
"""


def write(tmp_path, duration=120, url="embedded", extra=""):
    f = tmp_path / "abort.toml"
    f.write_text(TOML.format(duration=duration, url=url, extra=extra))
    return f


# -- the grammar


def test_the_table_form_carries_abort_on_fail_and_its_delay():
    th = grammar.parse("Sync.p99", {"expr": "< 2", "abort_on_fail": True, "delay": "30s"})
    assert th == Threshold("Sync.p99", "<", 2.0, True, 30.0)
    assert str(th) == "Sync.p99 < 2"  # summary.json's text is the plain threshold's
    assert grammar.parse("Sync.p99", {"expr": "< 2"}) == grammar.parse("Sync.p99", "< 2") == Threshold("Sync.p99", "<", 2)
    assert grammar.parse("errors.rate", {"expr": "< 0.1", "abort_on_fail": True, "delay": 90}).delay == 90
    assert grammar.parse("errors.rate", {"expr": "< 0.1", "abort_on_fail": True, "delay": "2m"}).delay == 120


@pytest.mark.parametrize("table, words", [
    ({"expr": "< 2", "abortOnFail": True}, ["unknown key 'abortOnFail'", "did you mean 'abort_on_fail'"]),
    ({"expr": "< 2", "delayAbortEval": "10s"}, ["did you mean 'delay'"]),
    ({"abort_on_fail": True}, ["needs expr"]),
    ({"expr": "< 2", "abort_on_fail": "yes"}, ["abort_on_fail must be true or false"]),
    ({"expr": "< 2", "delay": "10s"}, ["delay applies to abort_on_fail = true only"]),
    ({"expr": "< 2", "abort_on_fail": True, "delay": "soon"}, ["delay must be a duration"]),
    ({"expr": "< 2", "abort_on_fail": True, "delay": -1}, ["between 0 and"]),
    ({"expr": "two", "abort_on_fail": True}, ["must look like"]),
])
def test_a_bad_table_is_one_line_naming_the_threshold(table, words):
    with pytest.raises(ThresholdError) as err:
        grammar.parse("Sync.p99", table)
    for word in words:
        assert word in str(err.value) and "Sync.p99" in str(err.value)


def test_validate_reads_the_table_form_and_refuses_a_misspelt_metric_in_it(tmp_path, capsys):
    ok = write(tmp_path, extra='"Sync.p99" = { expr = "< 2", abort_on_fail = true, delay = "30s" }')
    assert app.main(["validate", str(ok)]) == 0
    sc = scenario.load(ok)
    assert [th for th in sc.thresholds if th.abort_on_fail] == [Threshold("Sync.p99", "<", 2.0, True, 30.0)]
    bad = write(tmp_path, extra='"Provison.p99" = { expr = "< 2", abort_on_fail = true }')
    assert app.main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'Provision.p99'" in err and "abort.toml:" in err


# -- the watch


def figures(p99_s=None, requests=100, errors=0):
    from hdrh.histogram import HdrHistogram

    hists, counts = {}, {}
    if p99_s is not None:
        h = HdrHistogram(1, 3_600_000_000, 3)
        h.record_value(int(p99_s * 1e6), 100)
        hists["Sync"], counts["Sync"] = h, 100
    return Figures(requests, errors, 10.0, {}, {}, {}, {}, {}, counts, hists)


def test_the_watch_waits_for_the_delay_judges_at_its_interval_and_ignores_a_metric_without_data():
    sync = grammar.parse("Sync.p99", {"expr": "< 2", "abort_on_fail": True, "delay": 30})
    plain = grammar.parse("errors.rate", "< 0.01")  # not watched: only the final verdict reads it
    watch = AbortWatch([sync, plain], interval=5)
    assert watch and watch.watched == (sync,)
    assert watch.check(figures(p99_s=3, errors=50), 29.9) is None  # before its delay
    assert watch.check(figures(), 30) is None  # no Sync answered yet: no breach
    assert watch.check(figures(p99_s=3), 31) is None  # judged again only 5 s later
    reason = watch.check(figures(p99_s=3), 35)
    assert reason.startswith(grammar.ABORTED_THRESHOLD) and "Sync.p99 < 2" in reason and "35 s" in reason
    assert watch.threshold == sync and watch.check(figures(p99_s=1), 99) == reason  # it stays
    passing = AbortWatch([sync], interval=0)
    assert all(passing.check(figures(p99_s=1.5), t) is None for t in (30, 31, 40))
    assert not AbortWatch([plain])


def test_the_workers_ship_histograms_live_only_when_an_abort_threshold_reads_a_percentile():
    parse = grammar.parse
    assert grammar.needs_histograms([parse("Sync.p99", {"expr": "< 2", "abort_on_fail": True})])
    assert grammar.needs_histograms([parse("Enrolment.max", {"expr": "< 60", "abort_on_fail": True})])
    assert grammar.needs_histograms([parse("tasks.send.p90", {"expr": "< 60", "abort_on_fail": True})])
    assert not grammar.needs_histograms([parse("Sync.p99", "< 2"), parse("Sync.errors", {"expr": "< 5",
                                                                                         "abort_on_fail": True})])
    assert not grammar.needs_histograms([parse("errors.rate", {"expr": "< 0.1", "abort_on_fail": True})])


def test_each_way_a_run_stops_itself_has_its_exit_status():
    assert app.abort_exit("backlog: 5 queued tasks > limit 3") == app.EXIT_ABORTED == 4
    assert app.abort_exit(grammar.ABORTED_THRESHOLD + "Sync.p99 < 2 ...") == app.EXIT_THRESHOLD_ABORT == 5
    assert app.abort_exit(grammar.ABORTED_UNREACHABLE + "no HTTP response") == app.EXIT_UNREACHABLE == 3
    assert len({0, 1, 2, 3, 4, app.EXIT_THRESHOLD_ABORT}) == 6


# -- runs


def test_a_breached_abort_threshold_stops_the_run_gracefully_with_exit_5(tmp_path, capsys):
    # no Sync answers within a microsecond: the run stops at the first judgement after 1 s
    f = write(tmp_path, extra='"Sync.p50" = { expr = "< 0.000001", abort_on_fail = true, delay = "1s" }')
    out = tmp_path / "out"
    assert app.main(["run", str(f), "-q", "--metrics-listen", "", "--out", str(out)]) == 5
    data = json.loads((out / "summary.json").read_text())
    assert data["aborted"].startswith("threshold Sync.p50 < 1e-06 (abort_on_fail) failed at ")
    assert data["interrupted"] is True and data["elapsed_s"] < 60  # long before its 120 s
    assert data["requests"] > 0 and data["devices"].get("provisioned") == 4  # results kept
    assert [t["passed"] for t in data["thresholds"]] == [True, False]
    captured = capsys.readouterr()
    assert "run aborted: threshold Sync.p50" in captured.err and "The run stopped itself: threshold" in captured.out


def test_an_abort_threshold_that_holds_lets_the_run_end_normally(tmp_path):
    f = write(tmp_path, duration=2, extra='"Sync.p99" = { expr = "< 30", abort_on_fail = true }')
    result = asyncio.run(start.run(scenario.load(f), progress=False, attach_metrics=False))
    assert not result.interrupted and result.stats.aborted is None and result.stats.total > 0


def test_with_workers_the_parent_aborts_on_the_merged_figures(tmp_path):
    f = write(tmp_path, extra='"Sync.p50" = { expr = "< 0.000001", abort_on_fail = true }')
    out = tmp_path / "out"
    assert app.main(["run", str(f), "-q", "--workers", "2", "--metrics-listen", "", "--out", str(out)]) == 5
    data = json.loads((out / "summary.json").read_text())
    assert data["aborted"].startswith("threshold Sync.p50") and data["elapsed_s"] < 60


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: every connection is refused
    return port


def test_a_target_refusing_every_connection_ends_the_run_early_with_exit_3(tmp_path, capsys):
    f = write(tmp_path, url="http://127.0.0.1:%d/Microsoft-Server-ActiveSync" % _closed_port())
    out = tmp_path / "out"
    assert app.main(["run", str(f), "-q", "--metrics-listen", "", "--out", str(out)]) == 3
    data = json.loads((out / "summary.json").read_text())
    assert data["aborted"].startswith(grammar.ABORTED_UNREACHABLE) and data["elapsed_s"] < 60
    assert "the target never answered" in capsys.readouterr().err


def test_a_target_that_accepts_and_never_answers_ends_the_run_after_the_fail_fast_time(monkeypatch):
    monkeypatch.setattr(engine.DeadTarget, "FAIL_FAST_S", 1.0)  # 10 s in a real run

    async def silent(conn, req):
        await asyncio.sleep(3600)

    async def main():
        async with ScriptedServer(silent) as srv:
            sc = scenario.parse(TOML.format(duration=120, url=srv.url, extra=""), "silent.toml")
            return await start.run(sc, progress=False, attach_metrics=False)

    stats = asyncio.run(main()).stats
    assert stats.aborted.startswith(grammar.ABORTED_UNREACHABLE) and stats.ended - stats.started < 60


def test_a_target_answering_500_is_not_dead_and_runs_its_duration():
    async def error(conn, req):
        conn.write(http_response(b"", status=b"500 Internal Server Error", content_type=None))
        return True

    async def main():
        async with ScriptedServer(error) as srv:
            sc = scenario.parse(TOML.format(duration=2, url=srv.url, extra=""), "errors.toml")
            return await start.run(sc, progress=False, attach_metrics=False)

    result = asyncio.run(main())
    assert result.stats.aborted is None and not result.interrupted
    assert result.stats.total > 0 and result.stats.failures == result.stats.total  # answered, all errors
