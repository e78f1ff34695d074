"""The HTML report opened in a real headless Chromium (Debian's ``chromium``).

The charts are drawn by the inlined uPlot on canvases; after each draw the page's script records
on the chart's figure what it drew: data-points (the data points in view, which must be every
point of the chart's JSON data), data-ink (coloured pixels read back from the plot canvas: the
series really are painted) and data-markers (event markers drawn by the draw hook, each with its
numbered label element).  Checks: the script ran to its end without an error and every chart
drew, no console error, the policy-change marker on every time chart, the summary tables equal
summary.json, a merged run drawn whole and for one result (#view=N), a screenshot of real size,
and no network request: host names resolve to nothing, and Chromium's own network log shows no
request the page made (a canary page that does make one proves the log would show it).  Then real
input, driven over the DevTools protocol on Chromium's --remote-debugging-pipe (no dependency but
the system Chromium): hover values, a drag that zooms every time chart, a double-click back, and
the result selector worked with the keyboard.

Skipped when chromium is missing, unless EASLOAD_REQUIRE_CHROMIUM is set (CI sets it).  The
screenshot is kept in EASLOAD_ARTIFACTS_DIR when set (its path is printed).
"""

import asyncio
import fcntl
import json
import os
import re
import select
import shutil
import struct
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest

from loadgen.cli import start
from loadgen.results import html as htmlreport
from loadgen import scenario
from loadgen.results.thresholds import evaluate

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
    """Tables by data-table: [[cell text]] of their bodies; chart figures with their attributes and
    the event markers inside each; the report's JSON data."""

    def __init__(self):
        super().__init__()
        self.tables, self.figures = {}, []
        self._table = self._row = self._cell = None
        self._in_body = False
        self._figure = None
        self._json = None
        self.json_text = []
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
            self._figure = dict(a, markers=[], canvases=0)
            self.figures.append(self._figure)
        elif tag == "div" and "ev-marker" in a.get("class", "").split() and self._figure is not None:
            self._figure["markers"].append(a)
        elif tag == "canvas" and self._figure is not None:
            self._figure["canvases"] += 1
        elif tag == "script" and a.get("id") == "report-data":
            self._json = True

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
        elif tag == "figure":
            self._figure = None
        elif tag == "script":
            self._json = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._json:
            self.json_text.append(data)

    def data(self):
        return json.loads("".join(self.json_text))


def open_in_chromium(exe, profile, url, netlog=None):
    """The DOM after the page's script ran (Chromium's --dump-dom), parsed; and the console."""
    extra = ["--log-net-log=%s" % netlog] if netlog else []
    out = chromium(exe, profile, *extra, "--dump-dom", url)
    assert out.returncode == 0, out.stderr[-3000:]
    parsed = Tables()
    parsed.feed(out.stdout)
    return parsed, out.stderr


def assert_every_chart_drawn(parsed, view, events):
    """Every chart with data in this view drew all its points, with colour, and the event markers."""
    assert parsed.root.get("data-report-ready") == "1", parsed.root
    assert "data-js-errors" not in parsed.root, parsed.root
    assert parsed.root.get("data-view") == str(view)
    data = parsed.data()
    specs = dict(data["g"], **data["views"][view]["c"])
    charts = [f for f in parsed.figures if "data-chart" in f]
    drawn = [f for f in charts if "empty" not in f["class"].split()]
    assert {f["data-chart"] for f in drawn} == set(specs)
    assert int(parsed.root["data-charts"]) == len(drawn)
    for f in drawn:
        spec = specs[f["data-chart"]]
        expected = sum(1 for s in spec["s"] for v in s[2] if v is not None)
        assert expected > 0
        assert f["canvases"] >= 1 and int(f.get("data-points", -1)) == expected, f
        assert int(f.get("data-ink", 0)) > 0, f  # coloured pixels on the plot canvas: the series are painted
        if spec["k"] == "cat":
            continue
        # the scenario's events: drawn as a line by the draw hook, each with its numbered label
        assert int(f.get("data-markers", -1)) == len(events), f
        assert [(m.get("data-action"), m.get("title", "").split(":")[0]) for m in f["markers"]] == \
            [(e["action"], "event %d at %.1f s" % (n, e["at_s"])) for n, e in enumerate(events, 1)]
    for f in charts:
        if f not in drawn:
            assert f.get("data-points") == "0" and f["canvases"] == 0
    return drawn


class DevTools:
    """A minimal Chrome DevTools Protocol client over Chromium's --remote-debugging-pipe (JSON
    messages separated by NUL on fds 3 and 4): no extra dependency, the system Chromium only.
    Records the page's console messages, exceptions and network requests."""

    def __init__(self, exe, profile, width=1400, height=1200):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def fds():  # the child reads commands on fd 3 and writes answers on fd 4
            r, w = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions",
             "--user-data-dir=%s" % profile, "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars",
             "--window-size=%d,%d" % (width, height), "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, close_fds=False)
        os.close(to_child_r)
        os.close(from_child_w)
        self._id = 0
        self._buf = b""
        self._pending = []
        self.events = []
        self.session = None

    def _read(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method, params=None, session=True, timeout=30):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method, timeout=30):
        deadline = time.monotonic() + timeout
        for m in self.events:
            if m.get("method") == method:
                return m
        while True:
            m = self._read(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def open(self, url):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(domain + ".enable")
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def js(self, expression):
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")

    def mouse(self, kind, x, y, buttons=0, clicks=0):
        self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left" if buttons or clicks
                                               else "none", "buttons": buttons, "clickCount": clicks})

    def problems(self):
        """Console errors and warnings, uncaught exceptions, log errors of the page."""
        out = []
        for m in self.events:
            p = m.get("params", {})
            if m.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                out.append("console.%s: %s" % (p["type"], [a.get("value") for a in p.get("args", [])]))
            elif m.get("method") == "Runtime.exceptionThrown":
                out.append("exception: %s" % p.get("exceptionDetails"))
            elif m.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                out.append("log: %s" % p["entry"].get("text"))
        return out

    def requests(self):
        return [m["params"]["request"]["url"] for m in self.events if m.get("method") == "Network.requestWillBeSent"]

    def close(self):
        try:
            self.send("Browser.close", session=False, timeout=10)
        except (OSError, EOFError, TimeoutError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)


def _png_size(path):
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


def artefacts(default):
    """Where screenshots go: EASLOAD_ARTIFACTS_DIR (CI keeps it), else the test's directory."""
    where = Path(os.environ.get("EASLOAD_ARTIFACTS_DIR") or default)
    where.mkdir(parents=True, exist_ok=True)
    return where


def _merged(d, summary):
    """A merged run of two results; the second started 0.5 s later and ran only half the intervals."""
    other = dict(summary, started=summary["started"] + 0.5, target="embedded-2")
    other["series"] = summary["series"][: max(1, len(summary["series"]) // 2)]
    path = d / "merged.html"
    htmlreport.write([summary, other], path)
    return path, other


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    exe = _chromium()
    sc = scenario.parse(SCENARIO, "browser-report.toml")
    result = asyncio.run(start.run(sc, progress=False))
    data = result.stats.to_dict(scenario=sc.name, target="embedded")
    data["seed"] = sc.seed
    data["devices_total"] = len(result.devices)
    data["thresholds"] = [{"threshold": str(t), "value": v, "passed": ok}
                          for t, v, ok in evaluate(result.stats, sc.thresholds)]
    summary = orjson.loads(orjson.dumps(data))
    d = tmp_path_factory.mktemp("report")
    (d / "summary.json").write_bytes(orjson.dumps(summary))
    path = d / "report.html"
    htmlreport.write([summary], path)
    return exe, d, path, summary


def test_report_renders_in_chromium_offline(report):
    exe, d, path, summary = report
    parsed, stderr = open_in_chromium(exe, d / "profile-dom", path.as_uri(), netlog=d / "netlog.json")
    # no console error, no script error, every chart drawn with the policy change marked on each time chart
    errors = [m for m in console_messages(stderr) if "error" in m.lower() or "refused" in m.lower()]
    assert not errors, errors
    assert summary["events"][0]["action"] == "change_policy"
    drawn = assert_every_chart_drawn(parsed, 0, summary["events"])
    kinds = [f["data-kind"] for f in drawn]
    names = {f["data-chart"] for f in drawn}  # the load shape and the EAS statuses over time drew too
    assert {"starts", "lag"} <= names and any(n.startswith("eas_t:") for n in names), names
    assert kinds.count("line") >= 1 + len([c for c in summary["latency"]]) and "stack" in kinds and "bars" in kinds
    assert kinds.count("cat") >= 2  # HTTP and EAS statuses by command
    # the summary tables, as the browser has them, say what summary.json says
    req = {"%s %s" % (c, s): int(n.replace(",", "")) for c, s, n in parsed.tables["requests"]}
    assert req == summary["by_command_status"]
    lat = {row[0]: row[1:] for row in parsed.tables["latency"]}
    for command, p in summary["latency"].items():
        assert lat[command] == ["{:,}".format(p["count"])] + ["%.1f" % p[k] for k in ("p50_ms", "p90_ms",
                                                                                      "p99_ms", "max_ms")]
    assert {r[0]: int(r[1]) for r in parsed.tables["reprovisions"]} == summary["reprovisions"]
    assert {r[0]: int(r[1]) for r in parsed.tables["devices"]} == summary["devices"]
    assert {"%s ack=%s" % (r[0], r[1]): int(r[2]) for r in parsed.tables["provisionings"]} == summary["provisionings"]
    assert {"%s %s" % (r[0], r[1]): int(r[2]) for r in parsed.tables["eas_statuses"]} == summary["eas_statuses"]
    errs = {r[0]: (int(r[1].replace(",", "")), int(r[2])) for r in parsed.tables["errors"]}
    assert sum(e for _n, e in errs.values()) == summary["errors"]
    assert sum(n for n, _e in errs.values()) == summary["requests"]
    th = {r[0]: r for r in parsed.tables["thresholds"]}
    assert set(th) == {"errors.rate", "reprovisions.144"} and all("pass" in r[-1] for r in th.values())
    # offline: the page asked the network for nothing
    assert page_requests(d / "netlog.json") == []


def test_merged_run_whole_and_one_result(report, capsys):
    """A merged run of two results: the whole, and (what the selector does) the charts of result 2
    alone, a different result (it ran only the first half of the intervals)."""
    exe, d, _path, summary = report
    path, other = _merged(d, summary)
    whole, stderr = open_in_chromium(exe, d / "profile-merged", path.as_uri())
    assert not [m for m in console_messages(stderr) if "error" in m.lower()]
    drawn_whole = assert_every_chart_drawn(whole, 0, summary["events"])
    assert "by_result" in {f["data-chart"] for f in drawn_whole}
    one, stderr = open_in_chromium(exe, d / "profile-merged", path.as_uri() + "#view=2")
    assert not [m for m in console_messages(stderr) if "error" in m.lower()]
    drawn_one = assert_every_chart_drawn(one, 2, summary["events"])
    points = {f["data-chart"]: int(f["data-points"]) for f in drawn_one}
    points_whole = {f["data-chart"]: int(f["data-points"]) for f in drawn_whole}
    assert points["rps"] < points_whole["rps"]  # result 2's own, shorter series
    data = one.data()
    rps2 = {s[0]: sum(v or 0 for v in s[2]) for s in data["views"][2]["c"]["rps"]["s"]}
    assert rps2 == {c: n for c, n in ((c, sum(v for p in other["series"] for k, v in p["requests"].items()
                                               if k.split(" ")[0] == c)) for c in rps2) if n}
    shot = artefacts(d) / "easload-report-merged-result2.png"
    out = chromium(exe, d / "profile-merged", "--window-size=1400,1600", "--screenshot=%s" % shot,
                   path.as_uri() + "#view=2")
    assert out.returncode == 0 and _png_size(shot) == (1400, 1600), out.stderr[-3000:]
    with capsys.disabled():
        print("\nscreenshot of a merged run's report, result 2 alone: %s" % shot)


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


_CHARTS_JS = """JSON.stringify(Array.prototype.map.call(document.querySelectorAll('figure.chart[data-chart]'),
  function(f){return [f.getAttribute('data-chart'), f.classList.contains('empty') ? 'none' : f.getAttribute('data-kind'),
                      f.getAttribute('data-points'),
                      f.getAttribute('data-markers')];}))"""


def _wait_ready(dt, view):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        root = dt.js("[document.documentElement.getAttribute('data-report-ready'),"
                     "document.documentElement.getAttribute('data-view')]")
        if root == ["1", str(view)]:
            return
        time.sleep(0.05)
    raise AssertionError("view %d never drawn: %r" % (view, root))


def test_interactions_in_chromium(report):
    """Real input events in Chromium, driven over the DevTools protocol: hovering a chart shows its
    values in the legend; dragging across one chart zooms every time chart (the event leaves the
    view of each: no marker is drawn, fewer points); a double-click zooms out (markers back); the
    selector, worked with the keyboard, draws every chart for result 2 alone.  No console error or
    warning, no uncaught exception, no request but the file itself."""
    exe, d, _path, summary = report
    path, _other = _merged(d, summary)
    dt = DevTools(exe, d / "profile-cdp")
    try:
        dt.open(path.as_uri())
        _wait_ready(dt, 0)
        data = json.loads(dt.js("document.getElementById('report-data').textContent"))
        before = {k: (kind, int(p), m) for k, kind, p, m in json.loads(dt.js(_CHARTS_JS)) if kind != "none"}
        timed = [k for k, (kind, _p, _m) in before.items() if kind != "cat"]
        assert len(timed) >= 7 and all(before[k][2] == "1" for k in timed)
        left, top, width, height = dt.js(
            "(function(){var o=document.querySelector('figure[data-chart=\"rps\"] .u-over');"
            "o.scrollIntoView({block:'center'});var r=o.getBoundingClientRect();"
            "return [r.left,r.top,r.width,r.height];})()")

        def x_of(t):
            return left + width * t / data["tmax"]

        y = top + height / 2
        # hover: the legend reads the values under the pointer
        dt.mouse("mouseMoved", x_of(data["t"][0]), y)
        values = dt.js("Array.prototype.map.call(document.querySelectorAll("
                       "'figure[data-chart=\"rps\"] .u-legend .u-value'),function(e){return e.textContent;})")
        assert values[0].endswith("into the run") and any(v.endswith(" req/s") for v in values[1:]), values
        # drag from after the event to the end: every time chart zooms with it
        ev = data["ev"][0]["t"]
        x1, x2 = x_of(ev + 0.3 * (data["tmax"] - ev)), x_of(data["tmax"] * 0.99)
        dt.mouse("mousePressed", x1, y, buttons=1, clicks=1)
        dt.mouse("mouseMoved", (x1 + x2) / 2, y, buttons=1)
        dt.mouse("mouseMoved", x2, y, buttons=1)
        dt.mouse("mouseReleased", x2, y, clicks=1)
        zoomed = {k: (kind, int(p), m) for k, kind, p, m in json.loads(dt.js(_CHARTS_JS)) if kind != "none"}
        for k in timed:
            assert zoomed[k][2] == "0", (k, zoomed[k])  # the event is out of view on every time chart
            assert zoomed[k][1] <= before[k][1], (k, zoomed[k], before[k])
        assert 0 < zoomed["rps"][1] < before["rps"][1] and 0 < zoomed["devices"][1] < before["devices"][1]
        for k in before:
            if k not in timed:
                assert zoomed[k] == before[k]  # the charts by command have no time axis
        # double-click: back to the whole run, markers and all
        dt.mouse("mousePressed", x1, y, buttons=1, clicks=2)
        dt.mouse("mouseReleased", x1, y, clicks=2)
        after = {k: (kind, int(p), m) for k, kind, p, m in json.loads(dt.js(_CHARTS_JS)) if kind != "none"}
        assert after == before
        # the selector, with the keyboard: result 1, then result 2
        dt.js("document.getElementById('view').focus()")
        for _ in range(2):
            dt.send("Input.dispatchKeyEvent", {"type": "rawKeyDown", "key": "ArrowDown", "code": "ArrowDown",
                                               "windowsVirtualKeyCode": 40})
            dt.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": "ArrowDown", "code": "ArrowDown",
                                               "windowsVirtualKeyCode": 40})
        _wait_ready(dt, 2)
        assert dt.js("location.hash") == "#view=2"
        view2 = data["views"][2]["c"]
        shown = {k: int(p) for k, kind, p, _m in json.loads(dt.js(_CHARTS_JS)) if kind != "none"}
        specs = dict(data["g"], **view2)
        assert set(shown) == set(specs)
        for k, n in shown.items():
            assert n == sum(1 for s in specs[k]["s"] for v in s[2] if v is not None), k
        assert shown["rps"] < before["rps"][1]
        assert dt.problems() == []
        assert [u for u in dt.requests() if not u.startswith("file:")] == []
    finally:
        dt.close()


def test_hostile_strings_stay_text_in_chromium(report):
    """Names from the data (scenario, target, commands, states, events) that are markup: the page,
    run in Chromium, shows them as text (legend, marker titles) and runs none of them."""
    exe, d, _path, summary = report
    evil = json.loads(json.dumps(summary))
    bad = '<img src=x onerror=alert(1)><script>alert(2)</script>'
    evil["scenario"] = bad
    evil["target"] = "https://x.example/</title><script>alert(3)</script>"
    evil["events"] = [{"at_s": 1.5, "action": "wipe" + bad, "result": "</script><script>alert(4)</script>"}]
    evil["series"][0]["requests"]["<i>Cmd</i> ok"] = 1
    evil["series"][0]["devices"]["<iframe src=x>"] = 1
    path = d / "hostile.html"
    htmlreport.write([evil], path)
    dt = DevTools(exe, d / "profile-hostile")
    try:
        dt.open(path.as_uri())
        _wait_ready(dt, 0)
        assert not [m for m in dt.events if m.get("method") == "Page.javascriptDialogOpening"]
        assert dt.js("document.querySelectorAll('img, iframe, i, [onerror], [onload]').length") == 0
        assert dt.js("document.querySelectorAll('script').length") == 3
        labels = dt.js("Array.prototype.map.call(document.querySelectorAll('.u-legend .u-label'),"
                       "function(e){return e.textContent;})")
        assert "<i>Cmd</i>" in labels and "<iframe src=x>" in labels
        titles = dt.js("Array.prototype.map.call(document.querySelectorAll('.ev-marker'),"
                       "function(e){return e.title;})")
        assert titles and all(t == "event 1 at 1.5 s: wipe%s: </script><script>alert(4)</script>" % bad for t in titles)
        assert dt.js("document.title") == "easload report: " + bad
        assert dt.problems() == [] and [u for u in dt.requests() if not u.startswith("file:")] == []
    finally:
        dt.close()


def test_screenshot(report, capsys):
    exe, d, path, _summary = report
    where = artefacts(d)
    shot = where / "easload-report.png"
    if shot.exists():
        shot.unlink()
    out = chromium(exe, d / "profile-shot", "--window-size=1400,3400", "--screenshot=%s" % shot, path.as_uri())
    assert out.returncode == 0 and shot.exists(), out.stderr[-3000:]
    assert _png_size(shot) == (1400, 3400)
    # charts and text in colour: far from the few KiB of a blank page
    assert shot.stat().st_size > 100_000, shot.stat().st_size
    shutil.copy(path, where / "easload-report.html")
    with capsys.disabled():
        print("\nscreenshot of the HTML report: %s" % shot)
