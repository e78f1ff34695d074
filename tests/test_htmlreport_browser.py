"""The HTML report opened in a real headless Chromium (Debian's ``chromium``).

Checks: the inline script ran without error and found every chart drawn (data-drawn, from
getBBox of the laid-out SVG), no console error, the policy-change marker on every time chart,
the summary tables equal summary.json, a screenshot of real size, and no network request:
host names resolve to nothing, and Chromium's own network log shows no request the page made
(a canary page that does make one proves the log would show it).

Skipped when chromium is missing, unless EASLOAD_REQUIRE_CHROMIUM is set (CI sets it).  The
screenshot is kept in EASLOAD_ARTIFACTS_DIR when set (its path is printed).
"""

import asyncio
import json
import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest

from loadgen import engine, htmlreport, scenario
from loadgen.report import evaluate_thresholds

SCENARIO = """
name = "browser-report"
duration = 3
seed = 8
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
"""


def _chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("EASLOAD_REQUIRE_CHROMIUM"):
        pytest.fail("chromium is not installed (EASLOAD_REQUIRE_CHROMIUM is set): apt-get install chromium")
    pytest.skip("chromium is not installed")


def chromium(exe, profile, *args, timeout=90):
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions",
           "--user-data-dir=%s" % profile, '--host-resolver-rules=MAP * ~NOTFOUND', "--hide-scrollbars",
           "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def console_messages(stderr):
    return re.findall(r":CONSOLE[^\]]*\] (.*)", stderr)


def page_requests(netlog):
    """URLs of the network requests made on behalf of a page opened from a file:// URL (Chromium's
    own update and account checks have no file:// network isolation key and are not counted)."""
    data = json.loads(Path(netlog).read_text())
    start = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for e in data["events"]:
        p = e.get("params") or {}
        if e["type"] == start and "file://" in str(p.get("network_isolation_key", "")) \
                and not p.get("url", "").startswith(("file:", "data:")):
            urls.append(p["url"])
    return urls


class Tables(HTMLParser):
    """Tables by data-table: [[cell text]] of their bodies; figures by attributes."""

    def __init__(self):
        super().__init__()
        self.tables, self.figures, self.markers = {}, [], 0
        self._table = self._row = self._cell = None
        self._in_body = False
        self.root = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.root = a
        if tag == "table" and "data-table" in a:
            self._table = self.tables.setdefault(a["data-table"], [])
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._table is not None and self._in_body:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "figure":
            self.figures.append(a)
        elif tag == "g" and "event-marker" in a.get("class", ""):
            self.markers += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _png_size(path):
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    exe = _chromium()
    sc = scenario.parse(SCENARIO, "browser-report.toml")
    result = asyncio.run(engine.run(sc, progress=False))
    data = result.stats.to_dict(scenario=sc.name, target="embedded")
    data["seed"] = sc.seed
    data["devices_total"] = len(result.devices)
    data["thresholds"] = [{"threshold": str(t), "value": v, "passed": ok}
                          for t, v, ok in evaluate_thresholds(result.stats, sc.thresholds)]
    summary = orjson.loads(orjson.dumps(data))
    d = tmp_path_factory.mktemp("report")
    (d / "summary.json").write_bytes(orjson.dumps(summary))
    path = d / "report.html"
    htmlreport.write([summary], path)
    return exe, d, path, summary


def test_report_renders_in_chromium_offline(report):
    exe, d, path, summary = report
    out = chromium(exe, d / "profile-dom", "--log-net-log=%s" % (d / "netlog.json"), "--dump-dom", path.as_uri())
    assert out.returncode == 0, out.stderr[-3000:]
    dom = out.stdout
    parsed = Tables()
    parsed.feed(dom)
    # the inline script ran to its end, without an error, and found every chart drawn
    assert parsed.root.get("data-report-ready") == "1", out.stderr[-3000:]
    assert "data-js-errors" not in parsed.root, parsed.root
    errors = [m for m in console_messages(out.stderr) if "error" in m.lower() or "refused" in m.lower()]
    assert not errors, errors
    charts = [f for f in parsed.figures if "chart" in f.get("class", "").split() and
              "empty" not in f.get("class", "").split()]
    time_charts = [f for f in charts if "timechart" in f.get("class", "")]
    assert len(time_charts) >= 6 and len(charts) >= len(time_charts) + 2
    undrawn = [f.get("data-chart") for f in charts if int(f.get("data-drawn", "0")) < 1]
    assert not undrawn, undrawn
    # the policy change: a marker on every time chart
    assert summary["events"][0]["action"] == "change_policy"
    assert parsed.markers == len(time_charts)
    # the summary tables, as the browser has them, say what summary.json says
    req = {"%s %s" % (c, s): int(n.replace(",", "")) for c, s, n in parsed.tables["requests"]}
    assert req == summary["by_command_status"]
    lat = {row[0]: row[1:] for row in parsed.tables["latency"]}
    for command, p in summary["latency"].items():
        assert lat[command] == ["{:,}".format(p["count"])] + ["%.1f" % p[k] for k in ("p50_ms", "p90_ms",
                                                                                      "p99_ms", "max_ms")]
    assert {r[0]: int(r[1]) for r in parsed.tables["reprovisions"]} == summary["reprovisions"]
    assert {r[0]: int(r[1]) for r in parsed.tables["devices"]} == summary["devices"]
    th = {r[0]: r for r in parsed.tables["thresholds"]}
    assert set(th) == {"errors.rate", "reprovisions.144"} and all("pass" in r[-1] for r in th.values())
    # offline: the page asked the network for nothing
    assert page_requests(d / "netlog.json") == []


def test_the_network_check_would_see_a_request(report):
    """The canary: the same report with a remote image (and without its CSP) is caught."""
    exe, d, path, _summary = report
    doc = path.read_text(encoding="utf-8")
    doc = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", doc)
    doc = doc.replace("<main>", '<main><img alt="" src="http://easload-canary.invalid/x.png">', 1)
    canary = d / "canary.html"
    canary.write_text(doc, encoding="utf-8")
    out = chromium(exe, d / "profile-canary", "--log-net-log=%s" % (d / "canary-netlog.json"), "--dump-dom",
                   canary.as_uri())
    assert out.returncode == 0, out.stderr[-3000:]
    assert page_requests(d / "canary-netlog.json") == ["http://easload-canary.invalid/x.png"]


def test_screenshot(report, capsys):
    exe, d, path, _summary = report
    where = Path(os.environ.get("EASLOAD_ARTIFACTS_DIR") or d)
    where.mkdir(parents=True, exist_ok=True)
    shot = where / "easload-report.png"
    if shot.exists():
        shot.unlink()
    out = chromium(exe, d / "profile-shot", "--window-size=1400,4200", "--screenshot=%s" % shot, path.as_uri())
    assert out.returncode == 0 and shot.exists(), out.stderr[-3000:]
    assert _png_size(shot) == (1400, 4200)
    # charts and text in colour: far from the few KiB of a blank page
    assert shot.stat().st_size > 100_000, shot.stat().st_size
    if where != d:
        shutil.copy(path, where / "easload-report.html")
    with capsys.disabled():
        print("\nscreenshot of the HTML report: %s" % shot)
