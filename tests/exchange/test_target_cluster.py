"""The multi-process embedded target (loadgen/exchange/cluster.py), over real HTTP and real processes.

Users are sharded over the processes (user n -> process n % N); organisation-wide admin
actions are broadcast; the admin device list, counters and /metrics of the parent are the
merge of the processes'.  A real ``easload run`` (engine.run) with events drives a
3-process target, and the same scenario gives the same device set with 1 and 3 processes.
"""

import asyncio
import base64

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadgen.cli import start
from loadgen import scenario
from loadgen.eas import commands
from loadgen.exchange.cluster import TargetCluster, listen_addresses, pick_fraction
from loadgen.exchange.metrics import merge_expositions
from test_target import Client
from test_target_features import ping_request

# --------------------------------------------------------------------------- pure parts


def test_listen_addresses_one_loopback_address_per_process():
    assert listen_addresses(["127.0.0.1:8443"], 3) == [("127.0.0.1", 8443), ("127.0.0.2", 8443), ("127.0.0.3", 8443)]
    assert listen_addresses(["localhost:8443"], 2) == [("localhost", 8443), ("localhost", 8444)]
    assert listen_addresses(["localhost:0"], 2) == [("localhost", 0), ("localhost", 0)]
    assert listen_addresses(["127.0.0.1:1", "127.0.0.9:2"], 2) == [("127.0.0.1", 1), ("127.0.0.9", 2)]
    assert listen_addresses(["127.0.0.5"], 2) == [("127.0.0.5", 0), ("127.0.0.6", 0)]
    with pytest.raises(ValueError, match="2 listen addresses for 3 processes"):
        listen_addresses(["127.0.0.1:1", "127.0.0.2:1"], 3)
    with pytest.raises(ValueError, match="leaves 127.0.0.0/8"):
        listen_addresses(["127.255.255.254:1"], 3)
    with pytest.raises(ValueError, match="HOST:PORT"):
        listen_addresses(["127.0.0.1:http"], 1)


def test_pick_fraction_is_the_single_target_choice():
    """The parent chooses as TargetState.wipe_fraction / deliver_mail_fraction do (sorted, seeded sample)."""
    from loadgen.exchange.state import TargetState

    state = TargetState(users=40, seed=1)
    for n in range(40):
        state.device("user%d" % n, "D%d" % n, "Phone")
    wiped = state.wipe_fraction(0.25, seed=7)
    assert pick_fraction([(u, d) for u, d in state.devices], 0.25, 7) == [(r.user, r.device_id) for r in wiped]
    mailed = pick_fraction(state.passwords, 0.5, 3)
    assert len(mailed) == state.deliver_mail_fraction(0.5, 1, seed=3) == 20
    assert sorted(u for u, box in state.mailboxes.items() if box.folder("1").added) == sorted(mailed)


def _samples(text):
    out = {}
    for family in text_string_to_metric_families(text.decode() if isinstance(text, bytes) else text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_merge_expositions_adds_every_sample_and_keeps_the_policy_version():
    from loadgen.exchange.metrics import exposition, make_registry
    from loadgen.exchange.server import Target
    from loadgen.exchange.state import TargetState

    a, b = Target(TargetState(users=2, seed=1)), Target(TargetState(users=2, seed=2))
    a._count("Ping", 200, 2)
    a._count("Sync", 200, 1)
    b._count("Ping", 200, 2)
    a.durations.observe("Sync", 0.003)
    b.durations.observe("Sync", 0.2)
    b.held_pings = 5
    a.state.change_policy(MinDevicePasswordLength=6)
    b.state.change_policy(MinDevicePasswordLength=6)
    texts = [exposition(make_registry(t)) for t in (a, b)]
    merged = _samples(merge_expositions(texts, per_process={0: 0, 1: 5}))
    sa, sb = _samples(texts[0]), _samples(texts[1])
    for key in set(sa) | set(sb):
        if key[0] == "easload_target_policy_version":
            assert merged[key] == 2
        else:
            assert merged[key] == sa.get(key, 0) + sb.get(key, 0), key
    ping = ("easload_target_requests_total", (("command", "Ping"), ("eas_status", "2"), ("http_status", "200")))
    assert merged[ping] == 2
    assert merged[("easload_target_request_duration_seconds_count", (("command", "Sync"),))] == 2
    assert merged[("easload_target_held_pings", ())] == 5
    assert merged[("easload_target_process_held_pings", (("process", "1"),))] == 5
    assert merged[("easload_target_processes", ())] == 2


# --------------------------------------------------------------------------- a cluster over HTTP


def _auth(n):
    return "Basic " + base64.b64encode(b"user%d:Pass%d!" % (n, n)).decode()


class UserClient(Client):
    def __init__(self, session, url, user, device, version="14.1"):
        super().__init__(session, url, version, device)
        self.user = user

    async def post(self, cmd, body=b"", key=None, auth=None, query=None):
        q = "User=user%d&DeviceId=%s&DeviceType=SmartPhone&Cmd=%s" % (self.user, self.device, cmd)
        return await super().post(cmd, body, key, _auth(self.user), q)


async def _provision(c):
    status, tree = await c.provision()
    assert status == 200
    return commands.parse_provision(tree).policy_key


async def _until(predicate, what, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(what)


@pytest.fixture
async def cluster():
    c = TargetCluster(3, listen=("127.0.0.1:0",), users=12, seed=4, ping_min=1, max_concurrency=10)
    await c.start()
    runner, aurl, token = await c.serve_admin("127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        async def call(method, path, body=None, tok=token):
            headers = {"Authorization": "Bearer " + tok}
            async with session.request(method, aurl + path, json=body, headers=headers) as resp:
                data = await resp.json() if resp.content_type == "application/json" else await resp.read()
                return resp.status, data
        yield c, session, call, aurl
    await runner.cleanup()
    pids = list(c.pids)
    await c.cleanup()
    for pid in pids:  # every process of the cluster is gone
        with pytest.raises(ProcessLookupError):
            import os

            os.kill(pid, 0)


async def test_users_are_sharded_and_a_wrong_process_refuses(cluster):
    c, session, call, aurl = cluster
    assert len(set(c.urls)) == 3 and [u.split("/")[2].split(":")[0] for u in c.urls] == \
        ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    for n in range(12):
        assert c.url_for("user%d" % n) == c.urls[n % 3]
        status, _, _ = await UserClient(session, c.urls[n % 3], n, "D%d" % n).post("Provision", b"", key="0")
        assert status != 401  # its own process knows the user
        status, _, _ = await UserClient(session, c.urls[(n + 1) % 3], n, "X%d" % n).post(
            "Provision", b"", key="0")
        assert status == 401  # another process does not: no second partnership anywhere
    status, data = await call("GET", "/admin/devices")
    assert status == 200 and sorted(d["device_id"] for d in data["devices"]) == sorted("D%d" % n for n in range(12))
    status, counters = await call("GET", "/admin/counters")
    assert [p["devices"] for p in counters["processes"]] == [4, 4, 4]
    assert (await call("GET", "/admin/devices", tok="wrong"))[0] == 401


async def test_policy_change_one_key_in_every_process_and_every_device_reprovisions(cluster):
    c, session, call, aurl = cluster
    clients = [UserClient(session, c.urls[n % 3], n, "P%d" % n) for n in range(6)]
    keys = {await _provision(cl) for cl in clients}
    assert keys == {c.state.policy_key}  # the parent's key is every process's key
    status, data = await call("POST", "/admin/policy", {"settings": {"MinDevicePasswordLength": 6}})
    assert status == 200 and data["policy_version"] == 2 and data["policy"]["MinDevicePasswordLength"] == "6"
    old = keys.pop()
    for cl in clients:  # every process answers the old key with 144 (in-band for 14.1)
        status, _, tree = await cl.post("FolderSync", commands.foldersync("0"), key=old)
        assert status == 200 and commands.root_status(tree) == 144
    new = {await _provision(cl) for cl in clients}
    assert new == {c.state.policy_key} and old not in new
    status, devices = await call("GET", "/admin/devices")
    assert {d["provisioning"] for d in devices["devices"]} == {"provisioned"}


async def test_admin_actions_broadcast_or_routed(cluster):
    c, session, call, aurl = cluster
    clients = [UserClient(session, c.urls[n % 3], n, "W%d" % n) for n in range(6)]
    for cl in clients:
        cl.key = await _provision(cl)
    # ABQ: organisation-wide, in every process
    status, _ = await call("POST", "/admin/abq", {"default": "Block"})
    assert status == 200
    for cl in clients:
        status, _, tree = await cl.post("FolderSync", commands.foldersync("0"), key=cl.key)
        assert commands.root_status(tree) == 129
    assert (await call("POST", "/admin/abq", {"default": "Allow"}))[0] == 200
    assert (await call("POST", "/admin/abq", {"default": "Sometimes"}))[0] == 400  # validated, nothing changed
    # wipe one device id without a user: found in whichever process has it
    status, data = await call("POST", "/admin/wipe", {"device_id": "W4"})
    assert status == 200 and data["wiped"] == [["user4", "W4"]]
    status, _, tree = await clients[4].post("FolderSync", commands.foldersync("0"), key=clients[4].key)
    assert commands.root_status(tree) == 140
    assert (await call("POST", "/admin/wipe", {"device_id": "nope"}))[0] == 400
    assert (await call("POST", "/admin/clear_wipe", {"device_id": "W4", "user": "user4"}))[1] == {"cleared": 1}
    # faults: broadcast (every process answers 503)
    assert (await call("POST", "/admin/faults", {"error_rates": {"503": 1.0}}))[0] == 200
    for cl in clients[:3]:
        status, _, _ = await cl.post("FolderSync", commands.foldersync("0"), key=cl.key)
        assert status == 503
    assert (await call("POST", "/admin/faults", {}))[0] == 200
    # wipe a fraction: the same choice a single target makes over the same devices
    status, data = await call("POST", "/admin/wipe", {"fraction": 0.5, "seed": 9})
    assert sorted(map(tuple, data["wiped"])) == sorted(pick_fraction([("user%d" % n, "W%d" % n) for n in range(6)],
                                                                     0.5, 9))
    status, devices = await call("GET", "/admin/devices")
    wiped = {(d["user"], d["device_id"]) for d in devices["devices"] if d["wipe"] == "pending"}
    assert wiped == set(map(tuple, data["wiped"])) and len(wiped) == 3


async def test_mail_wakes_pings_in_every_process_and_metrics_are_the_sum(cluster):
    c, session, call, aurl = cluster
    clients = [UserClient(session, c.urls[n % 3], n, "M%d" % n) for n in range(12)]
    for cl in clients:
        cl.key = await _provision(cl)
        await cl.post("FolderSync", commands.foldersync("0"), key=cl.key)
    pings = [asyncio.create_task(cl.post("Ping", ping_request(60), key=cl.key)) for cl in clients]

    async def all_held():
        return (await call("GET", "/admin/counters"))[1]["held_pings"] == 12
    await _until(all_held, "12 Pings held")
    counters = (await call("GET", "/admin/counters"))[1]
    assert [p["held_pings"] for p in counters["processes"]] == [4, 4, 4]
    status, data = await call("POST", "/admin/mail", {"fraction": 1.0, "count": 1, "seed": 1})
    assert data == {"users": 12}
    results = await asyncio.wait_for(asyncio.gather(*pings), 10)
    assert [commands.root_status(tree) for status, _, tree in results] == [2] * 12
    status, data = await call("POST", "/admin/mail", {"user": "user5"})
    assert data == {"users": 1}
    assert (await call("POST", "/admin/mail", {"user": "nobody"}))[0] == 400

    async def settled():
        return (await call("GET", "/admin/counters"))[1]["held_pings"] == 0
    await _until(settled, "Pings answered")
    status, merged = await call("GET", "/metrics")
    per_process = [_samples(t) for t in await c.process_metrics()]
    merged = _samples(merged)
    keys = set().union(*per_process)
    for key in keys:
        total = sum(p.get(key, 0) for p in per_process)
        if key[0] == "easload_target_policy_version":
            assert merged[key] == 1
        elif not key[0].startswith("easload_target_request_duration_seconds"):  # admin scrapes do not count
            assert merged[key] == total, key
    ping2 = ("easload_target_requests_total", (("command", "Ping"), ("eas_status", "2"), ("http_status", "200")))
    assert [p[ping2] for p in per_process] == [4, 4, 4] and merged[ping2] == 12


# --------------------------------------------------------------------------- a real run with events


SCENARIO = """
name = "cluster"
duration = 9
seed = 11
[target]
processes = {processes}
ping_min = 1
[auth]
users = 24
[population]
devices = 36
devices_per_user = 2
versions = {{ "14.1" = 3, "12.1" = 1, "16.1" = 1 }}
[load]
ramp_up = 0.5
mode = "ping"
heartbeat = 2
timeout = 15
graceful_stop = 3
[[events]]
at = 2.5
action = "mail"
fraction = 1.0
[[events]]
at = 3.5
action = "change_policy"
settings = {{ MinDevicePasswordLength = 6 }}
[[events]]
at = 5.5
action = "wipe"
fraction = 0.25
"""


def _run(processes):
    sc = scenario.parse(SCENARIO.format(processes=processes), "cluster.toml")
    return sc, asyncio.run(start.run(sc, progress=False))


def _device_set(devices):
    return {(d["user"], d["device_id"], d["provisioning"], d["wipe"] != "none") for d in devices}


@pytest.fixture(scope="module")
def runs():
    TargetCluster.keep_final = True
    try:
        one = _run(1)
        three = _run(3)
    finally:
        TargetCluster.keep_final = False
    return one, three


def test_run_with_events_on_three_processes(runs):
    sc, result = runs[1]
    final = result.target.final
    stats = result.stats
    assert [e[1] for e in stats.events] == ["mail", "change_policy", "wipe"]
    assert stats.events[2][2] == "9 devices to wipe"
    # the policy change reached every process: every device whose Pings are policy-checked (14.0 and later;
    # 12.1 Pings are not, and these devices only Ping) re-provisioned with 144; the 9 wiped ones saw 140
    checked = sum(1 for d in result.devices if d.version.text != "12.1")
    assert 0 < checked < 36
    assert stats.reprovisions == {"144": checked, "140": 9}
    # the admin device list is every process's: all 36 partnerships, each in its user's process
    assert len(final["devices"]) == 36
    per_process = [p["devices"] for p in final["counters"]["processes"]]
    assert per_process == [12, 12, 12]  # users 0..17 have devices: 6 users of each residue, 2 devices each
    # new mail woke the held Pings in every process
    ping2 = ("easload_target_requests_total", (("command", "Ping"), ("eas_status", "2"), ("http_status", "200")))
    woken = [_samples(t).get(ping2, 0) for t in final["process_metrics"]]
    assert all(n >= 12 for n in woken), woken
    # metrics totals are the sum of the processes'
    merged = _samples(final["metrics"])
    for key in set().union(*(_samples(t) for t in final["process_metrics"])):
        if key[0] != "easload_target_policy_version":
            assert merged[key] == sum(_samples(t).get(key, 0) for t in final["process_metrics"]), key
    assert merged[("easload_target_policy_version", ())] == 2
    wiped = {(d["user"], d["device_id"]) for d in final["devices"] if d["wipe"] != "none"}
    assert len(wiped) == 9
    assert stats.errors() == 0


def test_same_device_set_with_one_and_three_processes(runs):
    (_, one), (_, three) = runs
    single = one.target.state.list_devices()
    assert _device_set(single) == _device_set(three.target.final["devices"])
    provisioned = {(d["user"], d["device_id"]) for d in single if d["provisioning"] == "provisioned"
                   and d["wipe"] == "none"}
    wiped = {(d["user"], d["device_id"]) for d in single if d["wipe"] != "none"}
    assert len(wiped) == 9
    # provisioned with the new key: every device not wiped whose Pings are policy-checked (not 12.1)
    assert provisioned == {(d.user, d.ident.device_id) for d in one.devices if d.version.text != "12.1"} - wiped
    assert len(provisioned) > 18
    assert one.stats.reprovisions == three.stats.reprovisions


# --------------------------------------------------------------------------- command line and scenario


def test_scenario_processes_is_validated():
    sc = scenario.parse('name = "x"\n[target]\nprocesses = 4\n', "x.toml")
    assert sc.target.processes == 4
    assert scenario.parse('name = "x"\n', "x.toml").target.processes == 1
    for bad in ("0", "1.5", '"two"'):
        with pytest.raises(scenario.ScenarioError, match="processes"):
            scenario.parse('name = "x"\n[target]\nprocesses = %s\n' % bad, "x.toml")


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_easload_target_processes_command(tmp_path):
    """`easload target --processes 2`: two processes on 127.0.0.1 and 127.0.0.2, one admin API that
    merges them; SIGTERM stops every process; a bad --listen is a one-line usage error (exit 2)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    port, admin_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadgen", "target", "--processes", "2", "--listen", "127.0.0.1:%d" % port,
         "--admin-listen", "127.0.0.1:%d" % admin_port, "--admin-token", "t0ken-for-test", "--users", "6"],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("admin API" in line for line in lines):
            lines.append(proc.stderr.readline())
        text = "".join(lines)
        assert "process 0: http://127.0.0.1:%d/" % port in text and "process 1: http://127.0.0.2:%d/" % port in text
        assert "t0ken-for-test" not in text

        def get(path):
            req = urllib.request.Request("http://127.0.0.1:%d%s" % (admin_port, path),
                                         headers={"Authorization": "Bearer t0ken-for-test"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.read()
        import json

        counters = json.loads(get("/admin/counters"))
        pids = [p["pid"] for p in counters["processes"]]
        assert len(pids) == 2
        # user1 is served by process 1 (127.0.0.2), not by process 0
        for host, expected in (("127.0.0.2", 200), ("127.0.0.1", 401)):
            req = urllib.request.Request("http://%s:%d/Microsoft-Server-ActiveSync" % (host, port), method="OPTIONS",
                                         headers={"Authorization": _auth(1)})
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            assert status == expected, host
        merged = _samples(get("/metrics"))
        assert merged[("easload_target_processes", ())] == 2
        options = ("easload_target_requests_total",
                   (("command", "OPTIONS"), ("eas_status", ""), ("http_status", "200")))
        assert merged[options] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    bad = subprocess.run([sys.executable, "-m", "loadgen", "target", "--processes", "3", "--listen", "127.0.0.1:1",
                          "--listen", "127.0.0.2:1"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("easload: --listen: 2 listen addresses for 3 processes")


async def test_mail_rate_delivers_in_every_process():
    """[target] mail_per_user_per_hour on a cluster: each process delivers to its own users (Pings wake)."""
    async with TargetCluster(2, users=4, seed=2, ping_min=1, mail_per_user_per_hour=36000) as c:
        async with aiohttp.ClientSession() as session:
            clients = [UserClient(session, c.urls[n % 2], n, "R%d" % n) for n in range(4)]
            for cl in clients:
                cl.key = await _provision(cl)
                await cl.post("FolderSync", commands.foldersync("0"), key=cl.key)
            results = await asyncio.wait_for(asyncio.gather(
                *(cl.post("Ping", ping_request(60), key=cl.key) for cl in clients)), 30)
            assert [commands.root_status(tree) for _, _, tree in results] == [2, 2, 2, 2]


def test_workers_with_a_cluster_and_its_modes(tmp_path):
    """--workers N with [target] processes > 1 starts the cluster (not one process), and the
    scenario's target modes reach every process: EAS mounted under /SOGo/."""
    import subprocess
    import sys

    import orjson

    f = tmp_path / "c.toml"
    f.write_text('duration = 4\n[target]\nprocesses = 2\npath = "/SOGo/Microsoft-Server-ActiveSync"\n'
                 '[population]\ndevices = 8\n[load]\nramp_up = 0.3\nthink_time = 0.3\nmode = "poll"\n')
    out = subprocess.run([sys.executable, "-m", "loadgen", "run", str(f), "--workers", "2", "--metrics-listen", "",
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    data = orjson.loads((tmp_path / "o" / "summary.json").read_bytes())
    assert data["devices"] == {"provisioned": 8}
    assert data["errors"] == 0
    line = next(x for x in out.stdout.splitlines() if x.startswith("easload summary:"))
    assert "127.0.0.1:" in line and "127.0.0.2:" in line  # one address per target process
    assert line.count("/SOGo/Microsoft-Server-ActiveSync") == 2
