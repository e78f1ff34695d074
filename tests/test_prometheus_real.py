"""The run's metrics as a real Prometheus server sees them.

One short `easload run` (20 poll-mode devices for 6 s against the embedded
target) is scraped every second by a real ``prometheus`` (Debian package
``prometheus``), storage in a temporary directory.  Once the run has ended
(its ``--json`` summary written) and Prometheus holds a scrape taken after
that, every query is evaluated *at that scrape's timestamp*, so the answers
are the run's final values and do not depend on when the generator's
``--linger`` ends.  Checked:

* totals equal the summary's exactly (requests by command / outcome / HTTP
  status, errors, EAS statuses, provisionings, devices by state, bytes, ...);
* ``histogram_quantile`` over ``easload_request_duration_seconds_bucket``
  gives numbers, and the histograms count every request (Ping apart);
* every ``easload_*`` series has only bounded labels: no device id, user,
  IMEI or URL anywhere;
* deploy/grafana/easload-dashboard.json: every PromQL expression parses and
  runs on this Prometheus, names only metrics the code exports, and the
  run-level panels show data for this run's ``run_id``; its variables find the
  run; deploy/prometheus/prometheus.yml passes ``promtool check config``.

Skipped when /usr/bin/prometheus is missing, unless EASLOAD_REQUIRE_PROMETHEUS
is set (CI sets it), where a missing Prometheus is a failure.  Every process
the test starts is ended by its pid.
"""

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "easload-dashboard.json"
PROM_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS = "/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else shutil.which("prometheus")
PROMTOOL = shutil.which("promtool") or ("/usr/bin/promtool" if os.path.exists("/usr/bin/promtool") else None)

DEVICES, DURATION, LINGER = 20, 6, 8

SCENARIO = """\
name = "prom-real"
description = "tiny poll-mode run scraped by a real Prometheus (tests/test_prometheus_real.py)"
duration = "%ds"
seed = 7

[target]
url = "embedded"
ping_min = 5
ping_max = 60

[auth]
user = "user{n}"
password = "Pass{n}!"
users = 10

[population]
devices = %d
devices_per_user = 2
versions = { "14.1" = 3, "16.1" = 1, "14.0" = 1, "12.1" = 1 }

[load]
ramp_up = "1s"
mode = "poll"
think_time = "0.3s"
timeout = "10s"
graceful_stop = "1s"
""" % (DURATION, DEVICES)

# Label names a series may carry (Prometheus adds job and instance).
ALLOWED_LABELS = {"__name__", "job", "instance", "command", "outcome", "http_status", "le", "status", "state",
                  "result", "ack_status", "trigger", "reason", "run_id", "scenario", "version"}
OUTCOMES = {"ok", "reprovision", "eas_error", "throttled", "http_4xx", "http_5xx", "auth", "refused", "blocked",
            "redirect", "timeout", "conn_error"}
DEVICE_STATES = {"new", "provisioning", "provisioned", "no_policy", "unprovisioned", "refused", "blocked", "wiped",
                 "throttled", "failed", "auth_failed"}


def _require_prometheus():
    if PROMETHEUS is None:
        if os.environ.get("EASLOAD_REQUIRE_PROMETHEUS"):
            pytest.fail("/usr/bin/prometheus is missing (EASLOAD_REQUIRE_PROMETHEUS is set); "
                        "install the Debian package prometheus (.ci/system-packages.sh)")
        pytest.skip("prometheus not installed (Debian package prometheus)")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc):
    """End a process this test started, by its pid."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _tail(path, n=3000):
    try:
        return Path(path).read_text(errors="replace")[-n:]
    except OSError:
        return ""


class Prom:
    def __init__(self, base):
        self.base = base
        self.at = None  # evaluation time of every query (the final scrape)

    def api(self, path, **params):
        url = "%s/api/v1/%s?%s" % (self.base, path, urllib.parse.urlencode(params, doseq=True))
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as exc:  # 400 / 422: a bad query, with Prometheus' reason
            return json.load(exc)

    def query(self, expr, at=None):
        body = self.api("query", query=expr, time="%.3f" % (at if at is not None else self.at))
        assert body["status"] == "success", "%s\n-> %s" % (expr, body)
        return body["data"]

    def vector(self, expr):
        """{frozenset(labels without __name__): value} of an instant vector."""
        data = self.query(expr)
        assert data["resultType"] == "vector", (expr, data)
        return {frozenset((k, v) for k, v in s["metric"].items() if k != "__name__"): float(s["value"][1])
                for s in data["result"]}

    def scalar(self, expr):
        values = list(self.vector(expr).values())
        assert len(values) == 1, (expr, values)
        return values[0]

    def by(self, expr, *labels):
        """{"v1 v2": int} keyed like the summary's dicts."""
        out = {}
        for key, value in self.vector(expr).items():
            d = dict(key)
            out[" ".join(d[label] for label in labels)] = int(value)
        return out


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    _require_prometheus()
    tmp = tmp_path_factory.mktemp("prom")
    metrics_port, web_port = _free_port(), _free_port()
    (tmp / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: easload\n    static_configs:\n"
        "      - targets: ['127.0.0.1:%d']\n" % metrics_port)
    scenario = tmp / "prom-real.toml"
    scenario.write_text(SCENARIO)
    summary_path = tmp / "summary.json"
    prom_log, run_out, run_err = tmp / "prometheus.log", tmp / "run.out", tmp / "run.err"
    prom = run = None
    t0 = time.monotonic()
    try:
        with open(prom_log, "wb") as log:
            prom = subprocess.Popen(
                [PROMETHEUS, "--config.file=%s" % (tmp / "prometheus.yml"), "--storage.tsdb.path=%s" % (tmp / "data"),
                 "--web.listen-address=127.0.0.1:%d" % web_port, "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=tmp)
        with open(run_out, "wb") as out, open(run_err, "wb") as err:
            run = subprocess.Popen(
                [sys.executable, "-m", "loadgen", "run", str(scenario), "--metrics-listen",
                 "127.0.0.1:%d" % metrics_port, "--linger", str(LINGER), "-q", "--json", str(summary_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=ROOT)
        api = Prom("http://127.0.0.1:%d" % web_port)

        def diagnose(what):
            return "%s\n--- easload stderr:\n%s\n--- prometheus log:\n%s" % (what, _tail(run_err), _tail(prom_log))

        # The run ends, writes its summary, lingers; wait for a scrape taken after the summary was written:
        # the stats are final by then, so that scrape holds the run's final values.
        deadline = time.monotonic() + DURATION + LINGER + 15
        final_scrape = None
        while time.monotonic() < deadline:
            assert prom.poll() is None, diagnose("prometheus exited with %s" % prom.returncode)
            if summary_path.exists():
                written = summary_path.stat().st_mtime
                try:
                    body = api.api("query", query="timestamp(easload_run_info)")
                except (OSError, ValueError):
                    body = {}
                results = body.get("data", {}).get("result", []) if body.get("status") == "success" else []
                if results and float(results[0]["value"][1]) > written:
                    final_scrape = float(results[0]["value"][1])
                    break
            else:
                assert run.poll() is None, diagnose("easload run exited with %s before its summary" % run.returncode)
            time.sleep(0.2)
        assert final_scrape is not None, diagnose("no scrape after the end of the run")
        api.at = final_scrape
        rc = run.wait(timeout=LINGER + 10)  # the linger ends by itself
        assert rc == 0, diagnose("easload run exited with %d" % rc)
        summary = json.loads(summary_path.read_text())
        run_info = api.vector("easload_run_info")
        assert len(run_info) == 1, run_info
        info = dict(next(iter(run_info)))
        yield {"api": api, "summary": summary, "info": info, "setup_s": time.monotonic() - t0,
               "stdout": run_out.read_text()}
    finally:
        _stop(run)
        _stop(prom)


def test_run_totals_equal_the_summary(live):
    api, s = live["api"], live["summary"]
    assert s["requests"] > 100, s  # the run did something
    assert live["info"]["scenario"] == "prom-real" and re.fullmatch(r"[0-9a-f]{12}", live["info"]["run_id"])
    assert api.scalar("sum(easload_requests_total)") == s["requests"]
    assert api.by("sum by (command, http_status) (easload_requests_total)", "command", "http_status") \
        == s["by_command_status"]
    assert api.by("sum by (command, outcome) (easload_requests_total)", "command", "outcome") \
        == s["by_command_outcome"]
    assert api.scalar('sum(easload_requests_total{outcome!~"ok|reprovision"}) or vector(0)') == s["errors"]
    assert api.by("easload_eas_status_total", "command", "status") == s["eas_statuses"]
    provisionings = {k.replace(" ", " ack="): v
                     for k, v in api.by("easload_provisionings_total", "result", "ack_status").items()}
    assert provisionings == s["provisionings"]
    assert sum(provisionings.values()) >= DEVICES  # every device provisioned at least once
    assert api.by("easload_devices", "state") == s["devices"]
    assert sum(s["devices"].values()) == DEVICES
    assert api.by("easload_reprovisions_total", "trigger") == s["reprovisions"]
    assert api.by("easload_remote_wipes_total", "ack_status") == s["remote_wipes"]
    assert api.by("easload_throttled_total", "reason") == s["throttled"]
    assert api.by("easload_malformed_responses_total", "command") == s["malformed_responses"]
    assert api.scalar("easload_reenrolments_total") == s["reenrolments"]
    assert api.scalar("easload_sent_bytes_total") == s["bytes_sent"]
    assert api.scalar("easload_received_bytes_total") == s["bytes_received"]
    # The summary text printed the same totals.
    assert "%d devices, %d requests" % (DEVICES, s["requests"]) in live["stdout"]


def test_histograms_count_every_request_and_give_quantiles(live):
    api, s = live["api"], live["summary"]
    counted = api.scalar("sum(easload_request_duration_seconds_count) + "
                         "(sum(easload_ping_duration_seconds_count) or vector(0))")
    assert counted == s["requests"]
    per_command = api.by("sum by (command) (easload_request_duration_seconds_count)", "command")
    assert per_command == {cmd: p["count"] for cmd, p in s["latency"].items() if cmd != "Ping"}
    inf = api.vector('easload_request_duration_seconds_bucket{le="+Inf"}')
    count = api.vector("easload_request_duration_seconds_count")
    assert {k - {("le", "+Inf")}: v for k, v in inf.items()} == count
    for q in ("0.5", "0.95", "0.99"):
        result = api.vector('histogram_quantile(%s, sum by (le, command) '
                            '(easload_request_duration_seconds_bucket{outcome="ok"}))' % q)
        assert {dict(k)["command"] for k in result} >= {"Provision", "FolderSync", "Sync"}, result
        for value in result.values():
            assert math.isfinite(value) and 0 < value <= 10, (q, result)  # the embedded target answers in ms
    over_run = api.scalar('histogram_quantile(0.95, sum by (le) '
                          '(rate(easload_request_duration_seconds_bucket{outcome="ok"}[30s])))')
    assert math.isfinite(over_run) and over_run > 0


def test_every_series_has_bounded_labels(live):
    api = live["api"]
    series = api.query('{__name__=~"easload_.*"}')["result"]
    assert 10 < len(series) < 400, len(series)
    device_like = re.compile(r"[0-9A-Fa-f]{16,}|\d{10,}")  # DeviceIds are 32 hex digits, IMEIs 15 digits
    for s in series:
        labels = s["metric"]
        name = labels["__name__"]
        assert set(labels) <= ALLOWED_LABELS, labels
        for key, value in labels.items():
            if key in ("job", "instance"):
                continue
            low = value.lower()
            assert not device_like.search(value), labels
            assert "user" not in low and "pass" not in low and "@" not in value and "/" not in value, labels
            assert len(value) <= 40, labels
        if "run_id" in labels:
            assert name == "easload_run_info", labels  # run_id only on the info series, never per sample
        if "outcome" in labels:
            assert labels["outcome"] in OUTCOMES, labels
        if name == "easload_devices":
            assert labels["state"] in DEVICE_STATES, labels
        if "command" in labels:
            assert re.fullmatch(r"[A-Z][A-Za-z]{1,29}", labels["command"]), labels
        if "http_status" in labels:
            assert re.fullmatch(r"\d{3}", labels["http_status"]) or labels["http_status"] in OUTCOMES, labels


# --------------------------------------------------------------------------- the dashboard


def _dashboard_exprs():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(panels):
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    exprs.append((panel["title"], target["expr"]))

    walk(dashboard["panels"])
    return dashboard, exprs


def _grafana_vars(expr, values):
    for name, value in values.items():
        expr = expr.replace("${%s}" % name, value).replace("$" + name, value)
    assert "$" not in expr, "unreplaced Grafana variable in %r" % expr
    return expr


def _exported_names():
    """Sample names the code exports (families of both collectors, with their suffixes)."""
    from loadgen.metrics import RunCollector
    from loadgen.report import Stats
    from loadgen.target.metrics import make_registry
    from loadgen.target.server import Target
    from loadgen.target.state import TargetState

    run = RunCollector()
    run.attach(Stats(), dict, {"run_id": "x"})
    families = list(run.collect()) + list(make_registry(Target(TargetState(users=1))).collect())
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {f.name + sfx for f in families for sfx in suffixes[f.type]}


def test_dashboard_queries_run_on_prometheus(live):
    api, info = live["api"], live["info"]
    dashboard, exprs = _dashboard_exprs()
    assert dashboard["schemaVersion"] >= 36 and len(exprs) >= 25
    exported = _exported_names()
    used = {name for _title, expr in exprs for name in re.findall(r"\beasload_[a-z_]+", expr)}
    assert used <= exported, "dashboard names metrics the code does not export: %s" % sorted(used - exported)
    assert {"easload_request_duration_seconds_bucket", "easload_ping_duration_seconds_bucket",
            "easload_throttled_total", "easload_provisionings_total", "easload_reprovisions_total",
            "easload_remote_wipes_total", "easload_sent_bytes_total", "easload_received_bytes_total",
            "easload_eas_status_total", "easload_devices", "easload_target_requests_total"} <= used
    this_run = {"run_id": info["run_id"], "scenario": info["scenario"], "target": ".*",
                "__rate_interval": "30s", "__interval": "5s", "__range": "1m"}
    everything = dict(this_run, run_id=".*", scenario=".*")
    with_data = {}
    for title, expr in exprs:
        for values in (this_run, everything):
            api.query(_grafana_vars(expr, values))  # asserts status "success": it parsed and ran
        with_data.setdefault(title, []).append(api.query(_grafana_vars(expr, this_run))["result"])
    # The client-side panels show this run (the target row has no target scraped here).  Stats: one finite
    # number; time series: some finite numbers (a command that only ran before the first scrape has no rate
    # in the window, and histogram_quantile gives NaN for it, as it would in Grafana).
    stats = {p["title"] for p in dashboard["panels"] if p["type"] == "stat" and "easload_target_" not in json.dumps(p)}
    assert len(stats) >= 6, stats
    for title in sorted(stats) + ["Devices by state", "Requests/s by command",
                                  "Request latency by command: p50 / p90 / p99",
                                  "Provisionings/s by result and ack status", "Bytes/s sent and received",
                                  "Requests by command, outcome and HTTP status (run totals)"]:
        values = [float(sample["value"][1]) for result in with_data[title] for sample in result]
        assert all(with_data[title]) and any(math.isfinite(v) for v in values), \
            "panel %r shows no data for run %s: %s" % (title, info["run_id"], with_data[title])
        if title in stats:
            assert len(values) == 1 and math.isfinite(values[0]), (title, values)
    assert float(with_data["Devices"][0][0]["value"][1]) == DEVICES
    assert float(with_data["Requests (run total)"][0][0]["value"][1]) == live["summary"]["requests"]
    table = with_data["Requests by command, outcome and HTTP status (run totals)"][0]
    by_outcome = {}
    for r in table:
        key = "%s %s" % (r["metric"]["command"], r["metric"]["outcome"])
        by_outcome[key] = by_outcome.get(key, 0) + int(float(r["value"][1]))
    assert by_outcome == live["summary"]["by_command_outcome"]
    error_ratio = float(with_data["Error ratio"][0][0]["value"][1])
    if live["summary"]["errors"] == 0:  # a ratio of rates equals the totals' ratio only at 0
        assert error_ratio == 0
    else:
        assert 0 < error_ratio <= 1


def test_dashboard_variables_find_the_run(live):
    api, info = live["api"], live["info"]
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert any(i["name"] == "DS_PROMETHEUS" for i in dashboard["__inputs"])
    found = {}
    for name in ("scenario", "run_id", "target"):
        definition = variables[name]["definition"]
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", definition)
        assert m, definition
        selector = _grafana_vars(m.group(1), {"scenario": ".*"})
        body = api.api("label/%s/values" % m.group(2), **{"match[]": selector, "start": "%.3f" % (api.at - 60),
                                                           "end": "%.3f" % api.at})
        assert body["status"] == "success", (definition, body)
        found[name] = body["data"]
    assert info["scenario"] in found["scenario"] and info["run_id"] in found["run_id"]
    # every panel uses the datasource variable
    _dash, exprs = _dashboard_exprs()
    text = DASHBOARD.read_text()
    assert text.count('"uid": "${datasource}"') >= len(exprs)


def test_deploy_prometheus_config_is_valid(live):
    if PROMTOOL is None:
        pytest.fail("promtool (Debian package prometheus) is missing next to prometheus")
    result = subprocess.run([PROMTOOL, "check", "config", str(PROM_CONFIG)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    text = PROM_CONFIG.read_text()
    assert "127.0.0.1:9477" in text and "scrape_interval: 5s" in text and "127.0.0.1:8444" in text
