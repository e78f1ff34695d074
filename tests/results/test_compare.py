"""``easload compare BASELINE CURRENT`` (loadgen/results/compare.py, loadgen/cli/compare.py) on crafted
results: a regression beyond the tolerance fails (exit 1), an improvement or a change within it passes,
shards are merged exactly before the comparison, and ``easload report --baseline`` shows it."""

import json

import pytest

from loadgen.cli import app
from loadgen.results import compare, summary
from loadgen.results.stats import Stats


def crafted(sync_ms=10.0, n=200, errors=0, elapsed=10.0, shard=(0, 1), scenario="cmp", ping_ms=None):
    """A summary of ``n`` Sync requests taking ``sync_ms`` (the last 2 % ten times as long: a p99 of
    its own), ``errors`` of them answered HTTP 500, over ``elapsed`` seconds."""
    stats = Stats()
    stats.started = 1_000_000.0
    for i in range(n):
        slow = i >= n - max(1, n // 50)
        ms = sync_ms * (10 if slow else 1)
        if i < errors:
            stats.record("Sync", 500, "http_5xx", ms / 1000, 100, 100)
        else:
            stats.record("Sync", 200, "ok", ms / 1000, 100, 100)
        if ping_ms is not None:
            stats.record("Ping", 200, "ok", ping_ms / 1000, 100, 100)
    stats.ended = stats.started + elapsed
    return summary.build(stats, scenario=scenario, target="embedded", seed=1, devices_total=10, shard=list(shard),
                         versions={"14.1": 1}, mode="ping", model="closed", easload_version="test")


def save(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def rows(result, command="Sync"):
    return {r["metric"]: r for r in result["rows"] if r["command"] == command}


def side(data, name="x"):
    return compare.Side([data], name)


def test_a_slower_p99_beyond_the_tolerance_is_a_regression_and_exits_1(tmp_path, capsys):
    base = save(tmp_path / "base.json", crafted(sync_ms=10))
    cur = save(tmp_path / "cur" / "summary.json", crafted(sync_ms=12))  # an --out directory
    result = compare.compare(side(json.loads(open(base).read())), side(crafted(sync_ms=12)))
    r = rows(result)
    assert r["p99"]["verdict"] == compare.REGRESSION and r["p99"]["change"] == pytest.approx(0.2, abs=0.01)
    assert r["p50"]["verdict"] == compare.REGRESSION  # 10 -> 12 ms: +20 %, and 2 ms > the 1 ms floor
    assert r["throughput"]["verdict"] == compare.SAME and r["error_rate"]["verdict"] == compare.SAME
    junit = tmp_path / "compare.xml"
    assert app.main(["compare", base, str(tmp_path / "cur"), "--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "Sync p99" in out
    xml = junit.read_text()
    assert xml.count("<testcase") == 5 + 2 and 'failures="3"' in xml  # Sync's 5, all's 2; p50, p90, p99 failed
    # the same change within a tolerance of 25 % passes
    assert app.main(["compare", base, cur, "--tolerance", "p99=25%", "--tolerance", "p50=25%", "--tolerance", "p90=25%"]) == 0


def test_an_improvement_passes_and_is_said(tmp_path):
    base = save(tmp_path / "base.json", crafted(sync_ms=20, errors=10))
    cur = save(tmp_path / "cur.json", crafted(sync_ms=10, errors=0))
    assert app.main(["compare", base, cur]) == 0
    result = compare.compare(side(crafted(sync_ms=20, errors=10)), side(crafted(sync_ms=10)))
    assert rows(result)["p99"]["verdict"] == rows(result)["error_rate"]["verdict"] == compare.IMPROVED
    assert result["regressions"] == []


def test_error_rate_and_throughput_regress_by_their_own_rules():
    base = side(crafted(errors=0, elapsed=10))
    more_errors = compare.compare(base, side(crafted(errors=2, elapsed=10)))  # 1 % of 200: +1 point > 0.1
    assert rows(more_errors)["error_rate"]["verdict"] == compare.REGRESSION
    assert rows(more_errors, compare.TOTAL)["error_rate"]["verdict"] == compare.REGRESSION
    slower = compare.compare(base, side(crafted(elapsed=12)))  # 20 -> 16.7 requests/s: -17 %
    assert rows(slower)["throughput"]["verdict"] == compare.REGRESSION
    assert compare.compare(base, side(crafted(elapsed=12)), {"throughput": 0.2})["regressions"] == []


def test_sub_millisecond_changes_and_held_pings_are_not_regressions():
    tiny = compare.compare(side(crafted(sync_ms=0.5)), side(crafted(sync_ms=0.8)))  # +60 %, but 0.3 ms
    assert rows(tiny)["p50"]["verdict"] == compare.SAME
    pings = compare.compare(side(crafted(ping_ms=30_000)), side(crafted(ping_ms=60_000)))
    assert rows(pings, "Ping")["p99"]["verdict"] == compare.ONLY and pings["regressions"] == []


def test_shards_are_merged_before_the_comparison(tmp_path):
    # the current run in two shards: one fast, one slow; merged, its p50 is the slow half's
    base = save(tmp_path / "base.json", crafted(sync_ms=10, n=400, elapsed=10))
    save(tmp_path / "cur" / "shard-0" / "summary.json", crafted(sync_ms=10, n=200, shard=(0, 2)))
    save(tmp_path / "cur" / "shard-1" / "summary.json", crafted(sync_ms=30, n=200, shard=(1, 2)))
    files = compare.result_files(str(tmp_path / "cur"))
    assert len(files) == 2
    cur = compare.Side(summary.read(files), "cur")
    assert cur.commands["Sync"]["count"] == 400 and cur.complete
    result = compare.compare(side(json.loads(open(base).read())), cur)
    assert rows(result)["throughput"]["verdict"] == compare.SAME  # 400 requests in 10 s on both sides
    assert rows(result)["p90"]["current"] == pytest.approx(30, rel=0.01)  # the slow shard's half
    assert app.main(["compare", base, str(tmp_path / "cur")]) == 1
    assert app.main(["compare", base, str(tmp_path / "cur" / "shard-*" / "summary.json")]) == 1  # a glob
    # one shard alone is said to be incomplete
    assert "1 of 2 shards" in " ".join(compare.compare(cur, side(crafted(shard=(0, 2))))["notes"])


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    base = save(tmp_path / "base.json", crafted())
    for args, words in ((["compare", base, str(tmp_path / "none.json")], "none.json"),
                        (["compare", base, base, "--tolerance", "p98=5%"], "did you mean 'p99'"),
                        (["compare", base, base, "--tolerance", "p99=fast"], "p99=fast"),
                        (["compare", base, str(tmp_path)], "base.json")):  # a directory: its *.json shards
        code = app.main(args)
        err = capsys.readouterr().err.strip()
        if args[2] == str(tmp_path):
            assert code == 0  # the directory holds one result, base.json: compared with itself
            continue
        assert code == 2 and len(err.splitlines()) == 1 and words in err, (args, err)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert app.main(["compare", base, str(empty)]) == 2
    assert "no summary.json" in capsys.readouterr().err


def test_the_html_report_shows_the_comparison_with_a_baseline(tmp_path):
    base = save(tmp_path / "base.json", crafted(sync_ms=10))
    cur = save(tmp_path / "cur.json", crafted(sync_ms=20))
    report = tmp_path / "r.html"
    assert app.main(["report", cur, "--baseline", base, "-o", str(report)]) == 0
    html = report.read_text()
    assert '<section id="comparison">' in html and "regressions beyond the tolerances" in html
    assert 'data-table="comparison"' in html and "REGRESSION" in html
    assert app.main(["report", cur, "-o", str(report)]) == 0
    assert '<section id="comparison">' not in report.read_text()
