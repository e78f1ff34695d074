"""The HTML report (loadgen.results.html) from a real run against the embedded target."""

import asyncio
import copy
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from html.parser import HTMLParser

import orjson
import pytest
from hdrh.histogram import HdrHistogram

from loadgen.cli import start
from loadgen.results import html as htmlreport
from loadgen import scenario
from loadgen.results.thresholds import evaluate

SCENARIO = """
name = "report-test"
duration = 3
seed = 21
[target]
ping_min = 1
[auth]
users = 12
[population]
devices = 12
devices_per_user = 1
versions = { "14.1" = 2, "12.1" = 1 }
[load]
ramp_up = 0.3
think_time = 0.2
timeout = 10
graceful_stop = 1
mode = "poll"
[[events]]
at = 1.5
action = "change_policy"
settings = { MinDevicePasswordLength = 6 }
[thresholds]
"errors.rate" = "< 0.01"
"reprovisions.144" = ">= 1"
"Sync.p99" = "< 0.000001"
"""


def run_summary(text=SCENARIO):
    """What ``easload run --out`` writes to summary.json, from an in-process run."""
    sc = scenario.parse(text, "report-test.toml")
    result = asyncio.run(start.run(sc, progress=False))
    verdicts = evaluate(result.stats, sc.thresholds)
    data = result.stats.to_dict(scenario=sc.name, target="embedded")
    data["seed"] = sc.seed
    data["devices_total"] = len(result.devices)
    data["thresholds"] = [{"threshold": str(t), "value": v, "passed": ok} for t, v, ok in verdicts]
    return orjson.loads(orjson.dumps(data))  # exactly what a saved summary.json reads back as


@pytest.fixture(scope="module")
def summary():
    return run_summary()


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []  # (tag, attrs)
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(doc):
    p = _Collect()
    p.feed(doc)
    return p


def table_list(doc, name):
    """[[cells]] of the table data-table=name."""
    m = re.search(r"<table data-table=\"%s\"[^>]*>(.*?)</table>" % re.escape(name), doc, re.S)
    assert m, "no table %s" % name
    body = m.group(1).split("<tbody>", 1)[1]
    return [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def table_rows(doc, name):
    """{first cell: [other cells]} of the table data-table=name."""
    return {cells[0]: cells[1:] for cells in table_list(doc, name)}


def assert_self_contained(doc):
    p = parse(doc)
    for tag, attrs in p.tags:
        for attr in ("src", "href", "xlink:href", "action", "data", "poster"):
            value = attrs.get(attr)
            if value is not None:
                assert not re.match(r"\s*(https?:)?//", value), (tag, attr, value)
        assert not (tag == "script" and "src" in attrs), attrs
        assert not (tag == "link" and attrs.get("rel") in ("stylesheet", "preload", "import")), attrs
        assert tag not in ("iframe", "object", "embed", "img"), tag
    assert "@import" not in doc and not re.search(r"url\(\s*['\"]?(https?:)?//", doc)


def report_data(doc):
    """The JSON document the page's script draws from."""
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', doc, re.S)
    assert m, "no report data"
    return json.loads(m.group(1))


def figures(doc):
    """{data-chart: attributes} of the chart figures."""
    return {a["data-chart"]: a for t, a in parse(doc).tags if t == "figure" and "data-chart" in a}


def test_report_of_a_real_run(summary, tmp_path):
    doc = htmlreport.render([summary])
    assert doc.startswith("<!DOCTYPE html>") and doc.rstrip().endswith("</html>")
    assert_self_contained(doc)
    # header: scenario, target, seed, verdict, each threshold's value against its limit
    assert "report-test" in doc and "embedded" in doc and "<dd>21</dd>" in doc
    assert "FAIL: 1 of 3 thresholds" in doc  # Sync.p99 < 1 us cannot pass
    th = table_rows(doc, "thresholds")
    assert set(th) == {"errors.rate", "reprovisions.144", "Sync.p99"}
    assert th["errors.rate"] == ["0", "&lt;", "0.01", "✔ pass"]
    assert th["reprovisions.144"][0] == "%g" % summary["reprovisions"]["144"] and th["Sync.p99"][-1] == "✘ FAIL"
    # the charts: a container per chart, drawn by the inlined uPlot from the report's JSON data
    assert "uPlot %s" % htmlreport.UPLOT_VERSION in doc and "Copyright (c) 2022 Leon Sorokin" in doc
    assert doc.count("<svg") == 0  # no hand-drawn chart left
    figs = figures(doc)
    data = report_data(doc)
    whole = data["views"][0]["c"]
    drawn = {k for k, a in figs.items() if "empty" not in a["class"].split()}
    assert drawn == set(whole)  # every container with data has its chart data, and no chart data is lost
    assert {"rps", "devices", "prov", "reprov", "http", "eas"} <= drawn
    for command in summary["latency"]:  # every command of the run has its latency chart (Ping apart)
        assert "%s latency (ms)" % command in doc and "lat:" + command in whole
    time_charts = [k for k in drawn if whole[k]["k"] != "cat"]
    assert len(time_charts) >= 6
    # the series say what summary.json's series say: requests per command per interval ...
    assert data["t"] == [p["t"] for p in summary["series"]]
    for name, _colour, values in whole["rps"]["s"]:
        assert values == [sum(n for k, n in p["requests"].items() if k.split(" ")[0] == name)
                          for p in summary["series"]]
    # ... latency percentiles per interval (three significant digits), devices by state, re-provisionings
    p99 = dict((s[0], s[2]) for s in whole["lat:Sync"]["s"])["p99"]
    assert p99 == [pytest.approx(p["latency"]["Sync"]["p99_ms"], rel=5e-3) if "Sync" in p["latency"] else None
                   for p in summary["series"]]
    assert {s[0]: s[2] for s in whole["devices"]["s"]} == \
        {st: [p["devices"].get(st, 0) for p in summary["series"]] for st in summary["devices"]}
    assert sum(sum(s[2]) for s in whole["reprov"]["s"]) == sum(summary["reprovisions"].values())
    cats = whole["http"]["x"]
    assert {"%s %s" % (c, s[0]): n for s in whole["http"]["s"] for c, n in zip(cats, s[2]) if n} == \
        summary["by_command_status"]
    # the event, for the markers the page's script draws on every time chart
    assert summary["events"] and summary["events"][0]["action"] == "change_policy"
    assert data["ev"] == [{"t": e["at_s"], "a": e["action"], "r": e["result"]} for e in summary["events"]]
    assert "1.5 s: <b>change_policy</b>" in doc
    # the final tables carry the numbers of summary.json
    req = table_list(doc, "requests")
    assert {"%s %s" % (c, s): int(n.replace(",", "")) for c, s, n in req} == summary["by_command_status"]
    lat = table_rows(doc, "latency")
    for command, p in summary["latency"].items():
        assert lat[command] == ["{:,}".format(p["count"])] + ["%.1f" % p[k] for k in ("p50_ms", "p90_ms", "p99_ms",
                                                                                      "max_ms")]
    assert table_rows(doc, "reprovisions")["144"] == [str(summary["reprovisions"]["144"])]
    assert 'data-key="requests">%d<' % summary["requests"] in doc


def test_vendored_uplot_is_the_recorded_release():
    """loadgen/results/assets/README.md names the version and the digests: a changed file is noticed."""
    digests = {"uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
               "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
               "LICENSE.uPlot": "8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd"}
    assets = resources.files("loadgen.results").joinpath("assets")
    readme = assets.joinpath("README.md").read_text(encoding="utf-8")
    for name, digest in digests.items():
        assert hashlib.sha256(assets.joinpath(name).read_bytes()).hexdigest() == digest, name
        assert "%s  %s" % (digest, name) in readme
    js = assets.joinpath("uPlot.iife.min.js").read_text(encoding="utf-8")
    assert js.startswith("/*! https://github.com/leeoniya/uPlot (v%s) */" % htmlreport.UPLOT_VERSION)
    assert "</script" not in js.lower() and "<!--" not in js
    # shipped in the wheel: package data of loadgen
    assert '"loadgen.results" = ["assets/*"]' in (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()


def test_own_assets_are_package_data_and_inlined(summary):
    """The report's styles and script are files of the package (assets/report.css, report.js), inlined whole."""
    assets = resources.files("loadgen.results").joinpath("assets")
    doc = htmlreport.render([summary])
    for name, end in (("report.css", "</style"), ("report.js", "</script")):
        text = assets.joinpath(name).read_text(encoding="utf-8")
        assert end not in text.lower() and "<!--" not in text, name
        assert text in doc, name


def test_malicious_strings_are_escaped(summary):
    evil = copy.deepcopy(summary)
    bad = '<script>alert(1)</script><img src=x onerror=alert(2)>"\'&'
    evil["scenario"] = bad
    evil["target"] = "https://x.example/</title><script>alert(3)</script>"
    evil["events"] = [{"at_s": 1.0, "action": "wipe<b>", "result": bad + "</script><script>alert(6)</script>"}]
    evil["by_command_status"]["<svg onload=alert(4)> 200"] = 3
    evil["devices"]["<i>evil</i>"] = 1
    evil["series"][0]["devices"]["</desc><script>alert(5)</script>"] = 2
    evil["series"][0]["requests"]["<b>Cmd</b> ok"] = 1
    evil["thresholds"].append({"threshold": "<x> < 1", "value": None, "passed": False})
    doc = htmlreport.render([evil])
    # exactly the report's data (JSON), uPlot and its own script; no element of the data made it through
    p = parse(doc)
    scripts = [a for t, a in p.tags if t == "script"]
    assert len(scripts) == 3 and scripts[0] == {"type": "application/json", "id": "report-data"}
    assert scripts[1] == {} and scripts[2] == {}
    assert "<script>alert" not in doc and "<img" not in doc and "<svg onload" not in doc and "<i>evil" not in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert not any(k.startswith("on") for _t, a in p.tags for k in a)
    assert "\\u003cb\\u003eCmd" in doc  # in the JSON data of the charts too
    data = report_data(doc)  # and the JSON still reads back as the same strings
    assert data["ev"][0]["a"] == "wipe<b>" and data["ev"][0]["r"].endswith("</script><script>alert(6)</script>")
    assert "<b>Cmd</b>" in {s[0] for s in data["views"][0]["c"]["rps"]["s"]}
    assert_self_contained(doc)


def test_merging_two_results_adds_counts_and_recomputes_percentiles(summary):
    other = copy.deepcopy(summary)
    other["started"] = summary["started"] + 0.4  # another machine, started a little later
    m = htmlreport.merge([summary, other])
    assert m["requests"] == 2 * summary["requests"] and m["shards"] == 2
    assert m["by_command_status"] == {k: 2 * n for k, n in summary["by_command_status"].items()}
    assert m["reprovisions"] == {k: 2 * n for k, n in summary["reprovisions"].items()}
    assert m["devices_total"] == 2 * summary["devices_total"]
    assert m["events"] == [{"at_s": e["at_s"], "action": e["action"], "result": e["result"]} for e in summary["events"]]
    for command, p in summary["latency"].items():
        assert m["latency"][command]["count"] == 2 * p["count"]
        assert m["latency"][command]["p99_ms"] == pytest.approx(p["p99_ms"])  # same data twice: same percentiles
    # the time series: every request of both, each interval's HDR merged
    total = sum(n for p in m["points"] for n in p["requests"].values())
    assert total == 2 * sum(n for p in summary["series"] for n in p["requests"].values())
    lat = [p["latency"][c]["count"] for p in m["points"] for c in p["latency"]]
    assert sum(lat) == 2 * sum(x["count"] for p in summary["series"] for x in p["latency"].values())
    # thresholds judged again on the merged numbers
    assert [t["threshold"] for t in m["thresholds"]] == [t["threshold"] for t in summary["thresholds"]]
    assert [t["passed"] for t in m["thresholds"]] == [t["passed"] for t in summary["thresholds"]]
    doc = htmlreport.render([summary, other])
    assert "Merged from" in doc and 'id="shards"' in doc and '<select id="view">' in doc
    # the whole, and each result on demand: one view of chart data per result, its own numbers
    data = report_data(doc)
    assert [v["n"] for v in data["views"]] == ["the whole run", "result 1", "result 2"]
    for view in data["views"][1:]:
        for name, _colour, values in view["c"]["rps"]["s"]:
            assert sum(values) == sum(n for p in summary["series"] for k, n in p["requests"].items()
                                      if k.split(" ")[0] == name)
    whole = {s[0]: sum(s[2]) for s in data["views"][0]["c"]["rps"]["s"]}
    assert whole == {s[0]: 2 * sum(s[2]) for s in data["views"][1]["c"]["rps"]["s"]}
    assert {s[0] for s in data["g"]["by_result"]["s"]} == {"result 1", "result 2"}
    assert table_rows(doc, "reprovisions")["144"] == [str(2 * summary["reprovisions"]["144"])]
    assert_self_contained(doc)


def test_merging_recomputes_interval_percentiles_from_hdr():
    def hist(values):
        h = HdrHistogram(1, 3_600_000_000, 3)
        for v in values:
            h.record_value(v)
        return h

    def summ(values, started):
        h = hist(values)
        enc = h.encode().decode("ascii")
        lat = {"count": len(values), "p50_ms": h.get_value_at_percentile(50) / 1000,
               "p90_ms": h.get_value_at_percentile(90) / 1000, "p99_ms": h.get_value_at_percentile(99) / 1000,
               "max_ms": h.get_max_value() / 1000}
        return {"scenario": "s", "seed": 1, "target": "t", "started": started, "elapsed_s": 1.0,
                "requests": len(values), "errors": 0, "by_command_status": {"Sync 200": len(values)},
                "latency": {"Sync": lat}, "histograms": {"Sync": enc},
                "series": [{"t": 1.0, "devices": {"provisioned": 1}, "requests": {"Sync ok": len(values)},
                            "latency": {"Sync": dict(lat, hdr=enc)}}]}

    fast = [1000] * 90  # 1 ms
    slow = [200_000] * 10  # 200 ms
    m = htmlreport.merge([summ(fast, 100.0), summ(slow, 100.0)])
    assert m["latency"]["Sync"]["p50_ms"] == pytest.approx(1.0, rel=1e-3)
    assert m["latency"]["Sync"]["p99_ms"] == pytest.approx(200.0, rel=1e-3)
    (point,) = m["points"]
    assert point["latency"]["Sync"]["count"] == 100 and point["latency"]["Sync"]["p90_ms"] == pytest.approx(1.0, rel=1e-3)
    assert point["latency"]["Sync"]["p99_ms"] == pytest.approx(200.0, rel=1e-3)  # not an average of two p99s
    assert point["devices"] == {"provisioned": 2}
    doc = htmlreport.render([summ(fast, 100.0), summ(slow, 100.0)])
    p99 = {s[0]: s[2] for s in report_data(doc)["views"][0]["c"]["lat:Sync"]["s"]}["p99"]
    assert p99 == [200]  # the chart draws the merged interval's p99 too


def test_merging_refuses_different_runs(summary):
    other = copy.deepcopy(summary)
    other["seed"] = 22
    with pytest.raises(ValueError, match="different seeds"):
        htmlreport.render([summary, other])
    other = copy.deepcopy(summary)
    other["scenario"] = "something-else"
    with pytest.raises(ValueError, match="different scenarios"):
        htmlreport.merge([summary, other])
    with pytest.raises(ValueError, match="no result"):
        htmlreport.render([])
    with pytest.raises(ValueError, match="not an easload summary"):
        htmlreport.render([{"foo": 1}])


def _stretched(summary, seconds):
    """A run of ``seconds`` at one sample a second, each sample one of this real run's (same keys,
    same kind of numbers, its own HDR histograms), and an event in the middle."""
    base = summary["series"][1:-1] or summary["series"]
    series = []
    for i in range(seconds):
        p = copy.deepcopy(base[i % len(base)])
        p["t"] = float(i + 1)
        series.append(p)
    events = [dict(e, at_s=seconds / 2) for e in summary["events"]]
    return dict(summary, series=series, elapsed_s=float(seconds), events=events)


@pytest.mark.parametrize("seconds,limit", [(600, 400_000), (3600, 400_000)])
def test_write_and_size_of_a_long_run(summary, tmp_path, seconds, limit):
    # 10 minutes and an hour at one sample a second: at most MAX_POINTS points per line (an
    # hour's intervals are combined six by six), so the file stays small
    long = _stretched(summary, seconds)
    size = htmlreport.write([long], tmp_path / "long.html")
    doc = (tmp_path / "long.html").read_text(encoding="utf-8")
    assert size == len(doc.encode("utf-8")) and size < limit
    m = htmlreport.merge([long])
    assert len(m["points"]) <= htmlreport.MAX_POINTS and m["interval_s"] == max(1.0, seconds / 600)
    assert sum(n for p in m["points"] for n in p["requests"].values()) == \
        sum(n for p in long["series"] for n in p["requests"].values())
    data = report_data(doc)
    assert len(data["t"]) == len(m["points"]) and all(len(s[2]) == len(data["t"])
                                                      for c in data["views"][0]["c"].values() if c["k"] != "cat"
                                                      for s in c["s"])
    print("report of a %d-second run (1 s samples, %d commands): %d bytes" % (seconds, len(summary["latency"]), size))


def test_a_run_without_series_or_thresholds_still_renders():
    doc = htmlreport.render([{"scenario": "bare", "target": None, "started": 0, "elapsed_s": 0, "requests": 0}])
    assert "PASS (no thresholds)" in doc and "Nothing to draw" in doc and "No request in this run" in doc


def test_load_shape_and_eas_statuses_over_time(summary):
    """summary.json's series has per interval the device starts and schedule lag (``lag``), HTTP
    (``http``) and EAS (``eas``) statuses per command; the report draws them over time."""
    series = summary["series"]
    assert sum(p.get("lag", {}).get("starts", 0) for p in series) == summary["timings"]["StartLag"]["count"]
    assert sum(p.get("lag", {}).get("late", 0) for p in series) == summary["late_starts"]
    for name, total in (("http", summary["by_command_status"]), ("eas", summary["eas_statuses"])):
        got = {}
        for p in series:
            for k, n in p.get(name, {}).items():
                assert n > 0  # only non-zero keys
                got[k] = got.get(k, 0) + n
        assert got == total, name
    whole = report_data(htmlreport.render([summary]))["views"][0]["c"]
    starts = {s[0]: s[2] for s in whole["starts"]["s"]}
    assert sum(sum(v) for v in starts.values()) == summary["timings"]["StartLag"]["count"]
    lag = {s[0]: s[2] for s in whole["lag"]["s"]}
    first = next(p["lag"] for p in series if p.get("lag"))
    assert lag["max"][0] == pytest.approx(first["max_ms"], rel=5e-3)
    eas_cmds = {k.split(" ")[0] for k in summary["eas_statuses"]}
    assert {"eas_t:" + c for c in eas_cmds} <= set(whole)
    for c in eas_cmds:
        drawn = {s[0].split(" ", 1)[1]: sum(s[2]) for s in whole["eas_t:" + c]["s"]}
        assert drawn == {k.split(" ")[1]: n for k, n in summary["eas_statuses"].items() if k.split(" ")[0] == c}
    # two results merged: starts and late starts added, max of maxima, percentiles of the merged HDR
    other = copy.deepcopy(summary)
    m = htmlreport.merge([summary, other])
    lags = [p["lag"] for p in m["points"] if p["lag"]]
    assert sum(x["starts"] for x in lags) == 2 * summary["timings"]["StartLag"]["count"]
    assert lags[0]["max_ms"] == first["max_ms"] and lags[0]["p99_ms"] == pytest.approx(first["p99_ms"])


def test_report_reads_interval_counts_and_old_hdr_alike():
    """A shard written before the "counts" form (an "hdr" per interval) and one written after merge
    in the report exactly: the interval's percentiles are hdrh's of both shards' requests."""
    from loadgen.results.histograms import _REF, encode_counts

    def summ(values, started, old):
        h = HdrHistogram(1, 3_600_000_000, 3)
        for v in values:
            h.record_value(v)
        lat = {"count": len(values), "p50_ms": h.get_value_at_percentile(50) / 1000,
               "p90_ms": h.get_value_at_percentile(90) / 1000, "p99_ms": h.get_value_at_percentile(99) / 1000,
               "max_ms": h.get_max_value() / 1000}
        keys = sorted({_REF.get_counts_array_index(v) for v in values})
        hist = {"hdr": h.encode().decode("ascii")} if old else {"counts": encode_counts(keys, [h.counts[k] for k in keys])}
        return {"scenario": "s", "seed": 1, "target": "t", "started": started, "elapsed_s": 1.0,
                "requests": len(values), "errors": 0, "by_command_status": {"Sync 200": len(values)},
                "latency": {"Sync": lat}, "histograms": {"Sync": h.encode().decode("ascii")},
                "series": [{"t": 1.0, "devices": {"provisioned": 1}, "requests": {"Sync ok": len(values)},
                            "latency": {"Sync": dict(lat, **hist)}}]}

    a = [1000 + 37 * i for i in range(70)]
    b = [150_000 + 911 * i for i in range(30)]
    ref = HdrHistogram(1, 3_600_000_000, 3)
    for v in a + b:
        ref.record_value(v)
    want = [ref.get_value_at_percentile(p) / 1000 for p in (50, 90, 99)]
    for old_a, old_b in ((True, False), (False, False), (True, True)):
        (point,) = htmlreport.merge([summ(a, 100.0, old_a), summ(b, 100.0, old_b)])["points"]
        lat = point["latency"]["Sync"]
        assert lat["count"] == 100 and [lat["p50_ms"], lat["p90_ms"], lat["p99_ms"]] == want, (old_a, old_b)


def test_a_401_challenge_answered_is_no_error_in_the_report():
    """The report's OK outcomes are loadgen.results.outcomes': a 401 Basic challenge the device answered (servers
    that challenge first) is not an error, in the errors table as in the text summary."""
    from loadgen.results.stats import Stats

    s = Stats()
    s.record("Sync", 401, "challenge", 0.01, 10, 10)
    s.record("Sync", 200, "ok", 0.01, 10, 10)
    s.sample(1.0, {"provisioned": 1})
    s.ended = s.started + 1
    page = htmlreport.render([s.to_dict("challenge")])
    table = page.split('<table data-table="errors">', 1)[1].split("</table>", 1)[0]
    row = re.search(r'<tr data-key="Sync">(.*?)</tr>', table).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[:3] == ["2", "0", "0.00 %"], cells
    assert "challenge" in table.split("</caption>", 1)[0]


def test_accounting_table_agrees_with_the_summary_accounting():
    """The report's accounting has the summary's terms (loadgen.results.stats.accounting): re-sent first
    attempts are in "sent", requests never written are "not sent", an answer folded to "other" counts
    as answered."""
    from loadgen.results.stats import Stats, accounting

    s = Stats()
    s.record("Sync", 200, "ok", 0.01, 10, 10)
    s.record("Sync", 999, "ok", 0.01, 10, 10)  # an impossible HTTP status: folded to "other"
    s.record("Sync", 0, "timeout", 0.01, 10, 0)
    s.record("Sync", 0, "interrupted", 0.01, 10, 0)  # (a held Ping's outcome, here on Sync for the arithmetic)
    s.resend("Sync")
    s.not_sent["Sync"] += 2
    s.sample(1.0, {"provisioned": 1})
    s.ended = s.started + 1
    want = accounting(s, by_command=True)["Sync"]
    rows = table_rows(htmlreport.render([s.to_dict("acc")]), "accounting")
    assert rows["Sync"] == [str(want[k]) for k in ("sent", "answered", "errors", "timeouts", "cancelled",
                                                   "interrupted", "resent", "not_sent")], (rows, want)
    assert want["interrupted"] == 1 and want["errors"] == 0
