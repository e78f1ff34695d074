"""The run's metrics as a real Prometheus server sees them, and the shipped dashboard on them.

Set-up (about 30 s): a standalone embedded target (``easload target``, its own
``easload_target_*`` metrics on the admin listener), two shards of one scenario
(``easload run --shard 0/2`` and ``1/2``, separate processes, one run id through
``EASLOAD_RUN_ID``, started together with ``--start-at``), and a real
``prometheus`` (Debian package) on loopback running the SHIPPED
``deploy/prometheus/prometheus.yml``: only the scrape intervals are shortened to
1 s and the addresses replaced by the free ports taken here; the second shard is
added as the config's comment tells operators to (one more target with its
``shard`` label).  Storage in a temporary directory.

The scenario (open model, Direct Push) is made to exercise every panel: while
it runs, ``command`` events (the way a run against a real server acts on it)
call the target's admin API: a policy change (re-provisioning: 144 in-band,
449 for 12.1), a command budget so tight that the target throttles, injected
faults (HTTP 500, undecodable bodies), a remote wipe of some devices (which
re-enrol as new devices) and an ABQ default of Quarantine (new partnerships are
quarantined).  Late starts: 3 s into the run the test stops both generator
processes for 0.8 s (SIGSTOP/SIGCONT, what a GC pause or a starved CPU does)
while devices are due to arrive.

Once both shards have written their summary and Prometheus holds a scrape of
every endpoint taken after that, queries are evaluated *at that time*, so the
answers are the run's final values.  Checked:

* totals equal the summaries exactly: the sum of both shards equals the
  ``easload merge`` of their summaries (requests by command / outcome / HTTP
  status, EAS statuses, provisionings, re-provisionings by trigger, wipes,
  throttling, starts, late starts, bytes, ...), and each shard's series equal
  its own summary;
* EVERY PromQL expression of deploy/grafana/easload-dashboard.json, with the
  dashboard variables substituted as Grafana does, is run as Grafana runs it
  (range query over the run, or instant for table targets) and returns data
  (EXEMPT lists the exceptions, with the reason); the stat panels
  sum both shards, and selecting each shard gives parts that add up;
* the same, as Grafana evaluates it 6 minutes after the run ended (past the
  5-minute lookback: every generator series stale): every panel still has
  data, the tables and run-total stats still equal the merged summary (one
  run serves both checks: no second set-up);
* the scenario events' counter and the dashboard's annotation query mark each
  event of the run;
* the dashboard variables find the run and its shards;
* ``promtool check metrics`` on real scrapes of both endpoints, ``promtool
  check config`` on the shipped and the derived configurations;
* every ``easload_*`` series has only bounded labels.

Skipped when /usr/bin/prometheus is missing, unless EASLOAD_REQUIRE_PROMETHEUS
is set (CI sets it), where a missing Prometheus is a failure.  Every process
the test starts is ended by its pid.  The last test (no identifying label
value, opaque policy keys) needs no Prometheus.
"""

import json
import math
import os
import re
import secrets
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

from loadgen.results.outcomes import OK_OUTCOMES

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "easload-dashboard.json"
PROM_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS = "/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else shutil.which("prometheus")
PROMTOOL = shutil.which("promtool") or ("/usr/bin/promtool" if os.path.exists("/usr/bin/promtool") else None)

SHARDS, DEVICES, DURATION, LINGER = 2, 48, 14, 10
SCRAPE = 1  # seconds: the shipped 5 s, shortened
FREEZE = 0.8  # seconds the generators are stopped (SIGSTOP) while devices are due: late starts

# Dashboard expressions allowed to return no data in this run, with the reason.  Empty: the scenario
# makes every panel show something.  Adding an entry needs a reason a reviewer accepts.
EXEMPT = {  # (panel title, refId) -> why it has no data in this test's run
    ("Tasks/s by type and result", "A"): "no [workload] in this scenario: no task families",
    ("Task latency from the planned time p50 / p99 by type", "A"): "no [workload] in this scenario",
    ("Task latency from the planned time p50 / p99 by type", "B"): "no [workload] in this scenario",
    ("Tasks queued behind a busy device", "A"): "no [workload] in this scenario",
}

ADMIN_SCRIPT = """\
# POST a JSON body to the easload target's admin API (a scenario 'command' event)
import os, sys, urllib.request
req = urllib.request.Request(os.environ["EASLOAD_TEST_ADMIN"] + sys.argv[1], data=sys.argv[2].encode(),
                             headers={"Authorization": "Bearer " + os.environ["EASLOAD_TEST_ADMIN_TOKEN"],
                                      "Content-Type": "application/json"}, method="POST")
urllib.request.urlopen(req, timeout=5).read()
"""

# (at, admin path, JSON body): what an operator would do to a real server during a run
EVENTS = [
    (4, "/admin/policy", {"settings": {"MinDevicePasswordLength": 6}}),
    (5, "/admin/faults", {"error_rates": {"500": 0.03}, "malformed_rate": 0.02, "seed": 3}),
    (6, "/admin/wipe", {"fraction": 0.15, "seed": 5}),
    (6.5, "/admin/abq", {"default": "Quarantine"}),
    (7, "/admin/throttle", {"rate": 0.5, "burst": 2, "retry_after": 1}),
]


def _scenario(url, python, admin_script):
    events = "".join(
        "\n[[events]]\nat = %s\naction = \"command\"\nrun = '''%s %s %s '%s' '''\n"
        % (at, python, admin_script, path, json.dumps(body)) for at, path, body in EVENTS)
    return """\
name = "prom-real"
description = "two shards scraped by a real Prometheus (tests/test_prometheus_real.py)"
duration = "%ds"
seed = 7

[target]
url = "%s"

[auth]
user = "user{n}"
password = "Pass{n}!"
users = 24

[population]
devices = %d
devices_per_user = 2
versions = { "14.1" = 3, "16.1" = 1, "14.0" = 1, "12.1" = 1 }
profiles = { modern = 3, legacy = 1 }

[load]
model = "open"
arrival_rate = 4            # one arrival every 0.25 s (0.5 s per shard) for 12 s
mode = "ping"
heartbeat = "2s"
timeout = "10s"
graceful_stop = "1s"
reenrol_after = "1s"
quarantine_retry = "2s"

[mail]                      # the users mail each other: the Mail row's panels (events, push latency);
send_per_hour = 1200        # new messages only, no filing or meetings: few more commands (series)
reply_share = 0
forward_share = 0
internal_share = 1.0
to = [1, 2]
cc_share = 0.5
bcc_share = 0.3
read_after = "1s"
move_share = 0
meeting_response = { accept = 0 }
%s""" % (DURATION, url, DEVICES, events)


def _require_prometheus():
    if PROMETHEUS is None or PROMTOOL is None:
        if os.environ.get("EASLOAD_REQUIRE_PROMETHEUS"):
            pytest.fail("prometheus/promtool is missing (EASLOAD_REQUIRE_PROMETHEUS is set); "
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


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode("utf-8")


def derived_config(shipped, shard_ports, admin_port):
    """The shipped configuration with 1 s scrapes, this test's ports, and one target per shard."""
    cfg = json.loads(json.dumps(shipped))
    cfg["global"]["scrape_interval"] = cfg["global"]["evaluation_interval"] = "%ds" % SCRAPE
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    assert set(jobs) == {"easload", "easload-target"}, set(jobs)
    for job in jobs.values():
        job["scrape_interval"], job["scrape_timeout"] = "%ds" % SCRAPE, "%ds" % SCRAPE
    (static,) = jobs["easload"]["static_configs"]
    assert static["targets"] == ["127.0.0.1:9477"] and static["labels"] == {"shard": "0"}, static
    jobs["easload"]["static_configs"] = [{"targets": ["127.0.0.1:%d" % port], "labels": {"shard": str(i)}}
                                         for i, port in enumerate(shard_ports)]
    (static,) = jobs["easload-target"]["static_configs"]
    assert static["targets"] == ["127.0.0.1:8444"], static
    static["targets"] = ["127.0.0.1:%d" % admin_port]
    return cfg


class Prom:
    def __init__(self, base):
        self.base = base
        self.at = None  # evaluation time of every instant query (after the final scrapes)
        self.start = None  # start of range queries (the run's start)

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

    def query_range(self, expr, step=1, end=None):
        body = self.api("query_range", query=expr, start="%.3f" % self.start,
                        end="%.3f" % (end if end is not None else self.at), step=step)
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
    shard_ports = [_free_port() for _ in range(SHARDS)]
    target_port, admin_port, web_port = _free_port(), _free_port(), _free_port()
    token = secrets.token_hex(16)  # token_urlsafe may start with "-", which argparse takes for a flag
    run_id = secrets.token_hex(6)
    shipped = yaml.safe_load(PROM_CONFIG.read_text())
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump(derived_config(shipped, shard_ports, admin_port)))
    (tmp / "admin.py").write_text(ADMIN_SCRIPT)
    procs = []
    logs = {name: tmp / ("%s.log" % name) for name in ["target", "prometheus"] + ["shard%d" % i for i in range(SHARDS)]}
    outs = [tmp / ("shard-%d" % i) for i in range(SHARDS)]
    t0 = time.monotonic()

    def start(name, argv, env=None):
        with open(logs[name], "wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=tmp, env=env)
        procs.append(proc)
        return proc

    def diagnose(what):
        return "%s\n%s" % (what, "\n".join("--- %s:\n%s" % (n, _tail(p)) for n, p in logs.items()))

    try:
        target = start("target", [sys.executable, "-m", "loadgen", "target", "--listen", "127.0.0.1:%d" % target_port,
                                  "--admin-listen", "127.0.0.1:%d" % admin_port, "--admin-token", token,
                                  "--users", "24", "--ping-min", "1", "--ping-max", "60"])
        prom = start("prometheus", [PROMETHEUS, "--config.file=%s" % config, "--storage.tsdb.path=%s" % (tmp / "data"),
                                    "--web.listen-address=127.0.0.1:%d" % web_port, "--log.level=warn"])
        url = None
        deadline = time.monotonic() + 20
        while url is None and time.monotonic() < deadline:
            assert target.poll() is None, diagnose("easload target exited with %s" % target.returncode)
            m = re.search(r"listening on (\S+)", _tail(logs["target"]))
            url = m.group(1) if m else time.sleep(0.1)
        assert url, diagnose("easload target did not start")
        scenario = tmp / "prom-real.toml"
        scenario.write_text(_scenario(url, sys.executable, tmp / "admin.py"))
        env = dict(os.environ, EASLOAD_RUN_ID=run_id, EASLOAD_TEST_ADMIN="http://127.0.0.1:%d" % admin_port,
                   EASLOAD_TEST_ADMIN_TOKEN=token)
        start_at = "%.3f" % (time.time() + 2.0)  # the shards start together
        runs = [start("shard%d" % i, [sys.executable, "-m", "loadgen", "run", str(scenario), "--shard", "%d/%d" % (i, SHARDS),
                                      "--start-at", start_at, "--metrics-listen", "127.0.0.1:%d" % port,
                                      "--linger", str(LINGER), "-q", "--out", str(outs[i])], env=env)
                for i, port in enumerate(shard_ports)]
        # Late starts, for real: 3 s into the run both generators stall for FREEZE s (what a GC pause, a
        # starved CPU or a noisy neighbour does); every arrival due meanwhile starts late.  Arrivals are
        # 0.5 s apart per shard, so each shard has at least one start more than 100 ms late.
        time.sleep(max(0.0, float(start_at) + 3.0 - time.time()))
        for run in runs:
            os.kill(run.pid, signal.SIGSTOP)
        try:
            time.sleep(FREEZE)
        finally:
            for run in runs:
                os.kill(run.pid, signal.SIGCONT)
        api = Prom("http://127.0.0.1:%d" % web_port)
        instances = ["127.0.0.1:%d" % p for p in shard_ports] + ["127.0.0.1:%d" % admin_port]
        # Both shards end, write their summary and linger: wait for a scrape of every endpoint taken after
        # the last summary was written (the generators' values are final by then).
        deadline = time.monotonic() + DURATION + LINGER + 20
        final = scrapes = None
        while time.monotonic() < deadline:
            assert prom.poll() is None, diagnose("prometheus exited with %s" % prom.returncode)
            summaries = [o / "summary.json" for o in outs]
            if all(s.exists() for s in summaries):
                if scrapes is None:  # real scrapes of the endpoints, for promtool check metrics
                    scrapes = {name: _get("http://%s/metrics" % inst)
                               for name, inst in zip(["shard0", "shard1", "target"], instances)}
                written = max(s.stat().st_mtime for s in summaries)
                body = api.api("query", query="timestamp(up)")
                stamps = {r["metric"]["instance"]: float(r["value"][1])
                          for r in body.get("data", {}).get("result", [])} if body.get("status") == "success" else {}
                if all(stamps.get(i, 0) > written for i in instances):
                    final = max(stamps.values())
                    break
            else:
                for i, run in enumerate(runs):
                    assert run.poll() is None, diagnose("shard %d exited with %s before its summary" % (i, run.returncode))
            time.sleep(0.2)
        assert final is not None, diagnose("no scrape of every endpoint after the end of the run")
        api.at = final
        summaries = [json.loads((o / "summary.json").read_text()) for o in outs]
        api.start = min(s["started"] for s in summaries) - 2
        merged_dir = tmp / "merged"
        merge = subprocess.run([sys.executable, "-m", "loadgen", "merge", *map(str, outs), "--out", str(merged_dir)],
                               capture_output=True, text=True, cwd=tmp, timeout=60)
        assert merge.returncode == 0, merge.stdout + merge.stderr
        for i, run in enumerate(runs):
            rc = run.wait(timeout=LINGER + 10)  # the linger ends by itself
            assert rc == 0, diagnose("shard %d exited with %d" % (i, rc))
        yield {"api": api, "summaries": summaries, "merged": json.loads((merged_dir / "summary.json").read_text()),
               "run_id": run_id, "config": config, "scrapes": scrapes, "target_instance": instances[-1],
               "setup_s": time.monotonic() - t0}
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _run_join(shard=".*", run_id=None):
    return '* on (job, instance) group_left () easload_run_info{run_id=~"%s", shard=~"%s"}' % (run_id or ".*", shard)


def test_setup_is_quick_and_events_ran(live):
    assert live["setup_s"] < 60, live["setup_s"]
    events = live["summaries"][0]["events"]  # events of a real-server run act once, from shard 0
    assert [e["action"] for e in events] == ["command"] * len(EVENTS), events
    assert all(e["result"].startswith("exit 0") for e in events), events
    assert live["summaries"][1]["events"] == []


def test_totals_equal_the_merged_summary(live):
    api, m = live["api"], live["merged"]
    assert m["requests"] > 150 and m["devices_total"] == DEVICES, m["requests"]
    info = api.vector("easload_run_info")
    assert len(info) == SHARDS and {dict(k)["run_id"] for k in info} == {live["run_id"]}  # one run, two shards
    assert {dict(k)["shard"] for k in info} == {str(i) for i in range(SHARDS)}
    assert api.scalar("sum(easload_requests_total)") == m["requests"]
    assert api.by("sum by (command, http_status) (easload_requests_total)", "command", "http_status") \
        == m["by_command_status"]
    assert api.by("sum by (command, outcome) (easload_requests_total)", "command", "outcome") \
        == m["by_command_outcome"]
    errors = 'sum(easload_requests_total{outcome!~"%s"})' % "|".join(OK_OUTCOMES)  # results/outcomes.py
    assert api.scalar(errors) == m["errors"] > 0
    assert api.by("sum by (command, status) (easload_eas_status_total)", "command", "status") == m["eas_statuses"]
    provisionings = {k.replace(" ", " ack="): v for k, v in
                     api.by("sum by (result, ack_status) (easload_provisionings_total)", "result", "ack_status").items()}
    assert provisionings == m["provisionings"]
    devices = api.by("sum by (state) (easload_devices)", "state")  # a state the devices left stays, at 0
    assert {k: v for k, v in devices.items() if v} == {k: v for k, v in m["devices"].items() if v}
    assert devices.get("new") == 0
    reprovisions = api.by("sum by (trigger) (easload_reprovisions_total)", "trigger")
    assert reprovisions == m["reprovisions"] and "144" in reprovisions, reprovisions  # the policy change
    wipes = api.by("sum by (ack_status) (easload_remote_wipes_total)", "ack_status")
    assert wipes == m["remote_wipes"] and sum(wipes.values()) > 0
    assert api.scalar("sum(easload_reenrolments_total)") == m["reenrolments"] > 0
    throttled = api.by("sum by (reason) (easload_throttled_total)", "reason")
    assert throttled == m["throttled"] and throttled, throttled
    assert api.by("sum by (command) (easload_malformed_responses_total)", "command") == m["malformed_responses"]
    assert m["malformed_responses"]
    assert api.scalar("sum(easload_device_starts_total)") == m["timings"]["StartLag"]["count"] >= DEVICES
    assert api.scalar("sum(easload_schedule_lag_seconds_count)") == m["timings"]["StartLag"]["count"]
    assert api.scalar("sum(easload_late_starts_total)") == m["late_starts"] > 0
    assert api.scalar("sum(easload_sent_bytes_total)") == m["bytes_sent"]
    assert api.scalar("sum(easload_received_bytes_total)") == m["bytes_received"]
    assert api.by("sum by (state) (easload_devices)", "state").get("quarantined", 0) > 0  # ABQ quarantine


def test_each_shard_equals_its_own_summary(live):
    api = live["api"]
    for i, s in enumerate(live["summaries"]):
        sel = '{shard="%d"}' % i
        assert s["shard"] == [i, SHARDS]
        assert api.scalar("sum(easload_requests_total%s)" % sel) == s["requests"]
        assert api.by("sum by (command, outcome) (easload_requests_total%s)" % sel, "command", "outcome") \
            == s["by_command_outcome"]
        assert api.by("sum by (trigger) (easload_reprovisions_total%s)" % sel, "trigger") == s["reprovisions"]
        assert api.scalar("sum(easload_late_starts_total%s)" % sel) == s["late_starts"]
        assert api.scalar("sum(easload_devices%s)" % sel) == s["devices_total"]


def test_histograms_count_every_request_and_give_quantiles(live):
    api, m = live["api"], live["merged"]
    counted = api.scalar("sum(easload_request_duration_seconds_count) + sum(easload_ping_duration_seconds_count)")
    assert counted == m["requests"]
    per_command = api.by("sum by (command) (easload_request_duration_seconds_count)", "command")
    assert per_command == {cmd: p["count"] for cmd, p in m["latency"].items() if cmd != "Ping"}
    assert api.scalar("sum(easload_ping_duration_seconds_count)") == m["latency"]["Ping"]["count"]
    inf = api.vector('easload_request_duration_seconds_bucket{le="+Inf"}')
    count = api.vector("easload_request_duration_seconds_count")
    assert {k - {("le", "+Inf")}: v for k, v in inf.items()} == count
    result = api.vector('histogram_quantile(0.99, sum by (le, command) '
                        '(easload_request_duration_seconds_bucket{outcome="ok"}))')
    assert {dict(k)["command"] for k in result} >= {"Provision", "FolderSync", "Sync"}, result
    for value in result.values():
        assert math.isfinite(value) and 0 < value <= 10, result  # the embedded target answers in ms


def test_every_series_has_bounded_labels(live):
    api = live["api"]
    series = api.query('{__name__=~"easload_.*"}')["result"]
    per_instance = {}
    for s in series:
        per_instance[s["metric"]["instance"]] = per_instance.get(s["metric"]["instance"], 0) + 1
    # bounded: a shard of this hostile run has ~24 (command, outcome) pairs x 47 request-duration series
    # (loadgen/results/buckets.py), about 1,250 in all
    assert len(per_instance) == SHARDS + 1 and all(30 < n < 1600 for n in per_instance.values()), per_instance
    allowed = {"__name__", "job", "instance", "shard", "command", "outcome", "http_status", "le", "status", "state",
               "result", "ack_status", "trigger", "reason", "run_id", "scenario", "version", "eas_status",
               "provisioning", "access", "wipe", "kind", "event", "action"}
    for s in series:
        labels = s["metric"]
        assert set(labels) <= allowed, labels
        if "run_id" in labels:
            assert labels["__name__"] == "easload_run_info", labels  # run_id only on the info series
        for key, value in labels.items():
            if key not in ("job", "instance", "__name__"):
                assert re.fullmatch(r"[A-Za-z0-9_.+-]{0,40}", value), labels


# --------------------------------------------------------------------------- the dashboard


def _dashboard():
    return json.loads(DASHBOARD.read_text())


def _targets(dashboard):
    """(panel title, target) of every panel, rows' collapsed panels included."""
    out = []

    def walk(panels):
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                out.append((panel["title"], target))

    walk(dashboard["panels"])
    return out


def _grafana_vars(expr, values):
    """Substitute Grafana variables, longest names first ($__rate_interval before $__range...)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${%s}" % name, values[name]).replace("$" + name, values[name])
    assert "$" not in expr, "unreplaced Grafana variable in %r" % expr
    return expr


def _values(live, shard=".*", end=None):
    """Grafana's variables for a dashboard whose time range is [the run's start, ``end``] (default: the
    final scrape)."""
    api = live["api"]
    rng = int(math.ceil((end if end is not None else api.at) - api.start))
    return {"run_id": live["run_id"], "scenario": "prom-real", "shard": shard,
            "target": live["target_instance"],
            # what Grafana sends for a 1 s scrape interval (datasource timeInterval) and a 1 s step:
            # $__rate_interval = max($__interval + scrape interval, 4 x scrape interval)
            "__rate_interval": "%ds" % (4 * SCRAPE), "__interval": "1s", "__range": "%ds" % rng,
            "__range_s": str(rng)}


def _run_target(api, target, values, end=None, step=1):
    """A panel target as Grafana runs it for a time range ending at ``end`` (default: the final scrape):
    instant at ``end``, or a range query over the range.  A range query's values are the last non-null
    one of each series (the stat panels' lastNotNull reducer; NaN is dropped by Grafana too)."""
    expr = _grafana_vars(target["expr"], values)
    if target.get("instant"):
        data = api.query(expr, at=end)
        return expr, [float(s["value"][1]) for s in data["result"]], len(data["result"])
    data = api.query_range(expr, step=step, end=end)
    last = [next((float(v) for _t, v in reversed(s["values"]) if math.isfinite(float(v))), math.nan)
            for s in data["result"]]
    return expr, last, len(data["result"])


def _exported_names():
    """Sample names the code exports (families of both collectors, with their suffixes)."""
    from loadgen.results.metrics import RunCollector
    from loadgen.results.stats import Stats
    from loadgen.exchange.metrics import make_registry
    from loadgen.exchange.server import Target
    from loadgen.exchange.state import TargetState

    run = RunCollector()
    stats = Stats()
    stats.tasks_planned("send")  # the task families are exported for a run with a [workload] only
    run.attach(stats, dict, {"run_id": "x"})
    families = list(run.collect()) + list(make_registry(Target(TargetState(users=1))).collect())
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {f.name + sfx for f in families for sfx in suffixes[f.type]}


def test_dashboard_has_the_issue_rows():
    dashboard = _dashboard()
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows[0] == "Run" and rows[1] == "Load shape" and rows[-1].startswith("Target")
    titles = {t for t, _ in _targets(dashboard)}
    for needed in ("Devices", "Request rate", "Error ratio", "Provision p99 (run)", "Devices by state",
                   "Arrivals/s and late starts/s", "Late starts (run total)", "Schedule lag p50 / p99",
                   "Request latency by command: p50 / p90 / p99", "Non-ok outcomes/s by command",
                   "Provisionings/s by result and ack status", "Re-provisions/s by trigger",
                   "Remote wipes and re-enrolments (/s)", "ABQ: quarantined and blocked devices",
                   "Throttling/s by reason", "Requests/s by shard", "Runs and shards",
                   "Target answers/s by command and HTTP status"):
        assert needed in titles, needed
    exprs = [t["expr"] for _p, t in _targets(dashboard)]
    assert sum("histogram_quantile" in e for e in exprs) >= 6
    exported = _exported_names()
    used = {name for e in exprs for name in re.findall(r"\beasload_[a-z_]+", e)}
    assert used <= exported, "dashboard names metrics the code does not export: %s" % sorted(used - exported)
    # Every client-side expression joins on the run info with the run, scenario and shard variables, and
    # never sums by instance: shards (target label "shard") add up.
    for e in exprs:
        if re.search(r"\beasload_(?!target_)", e) and e.strip() != "":
            assert 'easload_run_info{run_id=~"$run_id", scenario=~"$scenario", shard=~"$shard"}' in e, e
        # (the run info of a table's time range, one per endpoint, is the only thing kept per instance)
        data = e.replace("max by (job, instance) (last_over_time(easload_run_info{", "")
        assert "by (instance" not in data and "by (job" not in data, e
    text = DASHBOARD.read_text()
    assert text.count('"uid": "${datasource}"') >= len(exprs)


def test_every_dashboard_expression_returns_data(live):
    api = live["api"]
    dashboard = _dashboard()
    targets = _targets(dashboard)
    assert len(targets) >= 40
    values = _values(live)
    empty = []
    for title, target in targets:
        expr, numbers, n = _run_target(api, target, values)
        if n == 0 or not any(math.isfinite(v) for v in numbers):
            empty.append((title, target["refId"], expr))
    unexplained = [e for e in empty if (e[0], e[1]) not in EXEMPT]
    assert not unexplained, "dashboard expressions without data:\n" + "\n".join(map(str, unexplained))
    assert len(empty) == len(EXEMPT), "EXEMPT lists expressions that have data now: %s" % EXEMPT


# Past Prometheus' 5-minute lookback (query.lookback-delta) after the final scrape: every series of the
# generators is stale by then (prometheus.io/docs/prometheus/latest/querying/basics/#staleness)
AFTER = 6 * 60


def test_every_panel_shows_the_run_after_it_ends(live):
    """The same run seen by Grafana 6 minutes after its end (time range [run start, end + 6 min]): every
    panel still has data (a range query's last non-null value, an instant query's last_over_time over
    the range), and the run-total tables and stats show the final totals."""
    api, m = live["api"], live["merged"]
    end = api.at + AFTER
    assert not api.query("easload_requests_total", at=end)["result"]  # stale: a plain instant query finds nothing
    dashboard = _dashboard()
    values = _values(live, end=end)
    empty = []
    for title, target in _targets(dashboard):
        expr, numbers, n = _run_target(api, target, values, end=end, step=2)
        if n == 0 or not any(math.isfinite(v) for v in numbers):
            empty.append((title, target["refId"], expr))
    unexplained = [e for e in empty if (e[0], e[1]) not in EXEMPT]
    assert not unexplained, "dashboard expressions without data after the run:\n" + "\n".join(map(str, unexplained))
    by_title = {title: target for title, target in _targets(dashboard)}
    _e, (total,), _n = _run_target(api, by_title["Requests (run total)"], values, end=end, step=2)
    assert total == m["requests"]
    table = "Requests by command, outcome and HTTP status (run totals)"
    by_outcome = {}
    for r in api.query(_grafana_vars(by_title[table]["expr"], values), at=end)["result"]:
        key = "%s %s" % (r["metric"]["command"], r["metric"]["outcome"])
        by_outcome[key] = by_outcome.get(key, 0) + int(float(r["value"][1]))
    assert by_outcome == m["by_command_outcome"]
    eas = api.query(_grafana_vars(by_title["EAS statuses by command (run totals)"]["expr"], values), at=end)
    assert {"%s %s" % (r["metric"]["command"], r["metric"]["status"]): int(float(r["value"][1]))
            for r in eas["result"] if float(r["value"][1])} == {k: v for k, v in m["eas_statuses"].items() if v}
    runs = api.query(_grafana_vars(by_title["Runs and shards"]["expr"], values), at=end)["result"]
    assert sorted(r["metric"]["shard"] for r in runs) == [str(i) for i in range(SHARDS)]
    for panel in dashboard["panels"]:  # a stat's reducer keeps the last non-null value, never "last"
        if panel["type"] == "stat":
            assert panel["options"]["reduceOptions"]["calcs"] == ["lastNotNull"], panel["title"]


def test_scenario_events_are_annotations(live):
    """easload_scenario_events_total counts the run's events by action, and the dashboard's annotation
    query (run as Grafana runs it: a range query at its step) marks each one within its window."""
    api = live["api"]
    first = live["summaries"][0]
    assert api.by("sum by (action) (easload_scenario_events_total)", "action") == {"command": len(EVENTS)}
    (note,) = [a for a in _dashboard()["annotations"]["list"] if a.get("name") == "Scenario events"]
    assert note["datasource"]["uid"] == "${datasource}" and note["titleFormat"] == "{{action}}"
    expr = _grafana_vars(note["expr"], _values(live))
    step = int(note["step"].rstrip("s"))
    assert 'easload_run_info{run_id=~"$run_id", scenario=~"$scenario", shard=~"$shard"}' in note["expr"]
    (series,) = api.query_range(expr, step=step, end=api.at + AFTER)["result"]
    assert series["metric"] == {"action": "command"}, series
    marked = [float(t) for t, _v in series["values"]]
    window = int(re.search(r"\[(\d+)s\]", note["expr"]).group(1))
    for event in first["events"]:
        when = first["started"] + event["at_s"]  # "started" is read just after the run's clock starts
        assert any(when - 0.5 <= t <= when + window + step + SCRAPE for t in marked), (event, when, marked)
    assert min(marked) >= first["started"] + min(e["at_s"] for e in first["events"]) - 0.5


def test_dashboard_stats_sum_the_shards(live):
    """Run-level stats show the sum of both shards and the merged summary; selecting a shard shows its part."""
    api, m = live["api"], live["merged"]
    stats = {p["title"]: p["targets"][0] for p in _dashboard()["panels"] if p["type"] == "stat"}

    def last(title, shard=".*"):
        expr = _grafana_vars(stats[title]["expr"], _values(live, shard))
        (value,) = [float(s["value"][1]) for s in api.query(expr)["result"]]
        return value

    assert last("Devices") == DEVICES
    assert last("Requests (run total)") == m["requests"]
    assert last("Late starts (run total)") == m["late_starts"]
    assert last("Throttled (run total)") == sum(m["throttled"].values())
    for title in ("Devices", "Requests (run total)", "Late starts (run total)", "Throttled (run total)"):
        assert sum(last(title, str(i)) for i in range(SHARDS)) == last(title), title
    for i, s in enumerate(live["summaries"]):
        assert last("Requests (run total)", str(i)) == s["requests"]
    p99 = last("Provision p99 (run)")
    assert math.isfinite(p99) and 0 < p99 <= 10
    table = "Requests by command, outcome and HTTP status (run totals)"
    (target,) = [t for title, t in _targets(_dashboard()) if title == table]
    by_outcome = {}
    for r in api.query(_grafana_vars(target["expr"], _values(live)))["result"]:
        key = "%s %s" % (r["metric"]["command"], r["metric"]["outcome"])
        by_outcome[key] = by_outcome.get(key, 0) + int(float(r["value"][1]))
    assert by_outcome == m["by_command_outcome"]


def test_dashboard_variables_find_the_run(live):
    api = live["api"]
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert any(i["name"] == "DS_PROMETHEUS" for i in dashboard["__inputs"])
    found = {}
    for name in ("scenario", "run_id", "shard", "target"):
        definition = variables[name]["definition"]
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", definition)
        assert m, definition
        selector = _grafana_vars(m.group(1), {"scenario": ".*", "run_id": ".*"})
        body = api.api("label/%s/values" % m.group(2), **{"match[]": selector, "start": "%.3f" % api.start,
                                                           "end": "%.3f" % api.at})
        assert body["status"] == "success", (definition, body)
        found[name] = body["data"]
    assert "prom-real" in found["scenario"] and live["run_id"] in found["run_id"]
    assert found["shard"] == [str(i) for i in range(SHARDS)]
    assert found["target"] == [live["target_instance"]]


def test_promtool_check_metrics_on_real_scrapes(live):
    for name, text in live["scrapes"].items():
        assert "easload_" in text, name
        out = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), (name, out.stdout + out.stderr)


def test_promtool_check_config(live):
    for path in (PROM_CONFIG, live["config"]):
        result = subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr
    text = PROM_CONFIG.read_text()
    assert "127.0.0.1:9477" in text and "scrape_interval: 5s" in text and "127.0.0.1:8444" in text


# --------------------------------------------------------------------------- no identity in any label


async def test_no_label_value_identifies_a_device_user_url_or_key(tmp_path):
    """A run with every profile and version, opaque policy keys, a policy change and wipes: no label
    value of the generator's or the target's scrape holds a device id, IMEI, user, password, policy key
    or URL (whatever appears in the run's own identities)."""
    from prometheus_client.parser import text_string_to_metric_families

    from loadgen.results import metrics
    from loadgen.cli.start import run
    from loadgen.exchange.launch import embedded_state
    from loadgen.device.profiles import PROFILES
    from loadgen.scenario import parse
    from loadgen.exchange.metrics import exposition, make_registry

    sc = parse("""
name = "labels"
duration = "4s"
seed = 11
[target]
url = "embedded"
allow_non_provisionable = true
ping_min = 1
[auth]
users = 6
[population]
devices = 24
devices_per_user = 4
versions = { "12.1" = 1, "14.0" = 1, "14.1" = 1, "16.0" = 1, "16.1" = 1 }
profiles = { %s }
[load]
ramp_up = "0.5s"
mode = "poll"
think_time = "0.2s"
graceful_stop = "0.5s"
reenrol_after = "0.5s"
[[events]]
at = "1.5s"
action = "change_policy"
settings = { MinDevicePasswordLength = 6 }
[[events]]
at = "2s"
action = "wipe"
fraction = 0.2
""" % ", ".join("%s = 1" % name for name in sorted(PROFILES)))
    state = embedded_state(sc)
    state.opaque_keys = True
    result = await run(sc, progress=False, target_state=state)
    text = metrics.exposition() + exposition(make_registry(result.target)).decode()
    secrets_seen = {result.target_url, result.target.state.policy_key}
    for d in result.devices:
        ident = d.ident
        secrets_seen |= {d.user, d._password, ident.device_id, ident.imei, ident.info["PhoneNumber"],
                         ident.info["FriendlyName"], d.endpoint.url_prefix, d.prov.policy_key or ""}
    for record in result.target.state.devices.values():
        secrets_seen |= {record.user, record.device_id, record.temporary_key or "", record.acked_key or ""}
    secrets_seen = {str(v) for v in secrets_seen if v and len(str(v)) >= 4}
    assert len(result.target.state.policy_key) == 40  # opaque keys were handed out
    assert len(secrets_seen) > 3 * len(result.devices), len(secrets_seen)
    values = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values |= {v for k, v in sample.labels.items()}
    assert values, text[:500]
    for value in values:
        assert value not in secrets_seen, value
        assert not any(s in value for s in secrets_seen if len(s) >= 6), value
        assert "://" not in value and "@" not in value and "\\" not in value, value
        assert re.fullmatch(r"[A-Za-z0-9_.+ -]{0,40}", value), value
    assert result.stats.reprovisions and result.stats.wipes  # the run did what the scenario said
