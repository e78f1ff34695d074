"""The embedded target and its admin API against malformed and hostile requests.

Whatever a client sends -- bytes that are not UTF-8 in a header or the query, a DeviceId the
MS-ASHTTP 2.2.1.1.1.2 ABNF does not allow, random WBXML bodies, random JSON for the admin API --
the answer is a 4xx (or the command's own status), never a 500, never a traceback in the log, and
the server goes on serving.  Policy settings that do not exist are refused where they are set
(admin API: 400 naming the setting), so Provision never fails.  The target's constructors refuse
nonsense values with a ValueError.  The throwaway TLS directory is gone after the target stops,
also on SIGTERM.
"""

import asyncio
import base64
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.eas import commands
from loadgen.eas.policy import POLICY_NAMES
from loadgen.exchange.admin import start_admin
from loadgen.exchange.server import start_target
from loadgen.exchange.state import TargetState
from loadgen.exchange.throttle import Throttle

AUTH = b"Basic " + base64.b64encode(b"user1:Pass1!")
TOKEN = "tok3n"


class Served:
    """A target and its admin API on a loop of their own thread (hypothesis tests are synchronous)."""

    def __init__(self, **state_kw):
        self.state_kw = state_kw
        self.loop = asyncio.new_event_loop()
        self.records = []
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._stop())
        self.loop.close()

    async def _start(self):
        self.runner, self.target, url = await start_target(
            "127.0.0.1", 0, TargetState(users=3, ping_min=1, ping_max=2, **self.state_kw))
        self.admin_runner, admin_url, _ = await start_admin("127.0.0.1", 0, self.target, TOKEN)
        self.port = int(url.split(":")[2].split("/")[0])
        self.admin_port = int(admin_url.rsplit(":", 1)[1])

    async def _stop(self):
        await self.admin_runner.cleanup()
        await self.runner.cleanup()

    def __enter__(self):
        self.thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


class Capture(logging.Handler):
    """Every log record of the process (aiohttp's own loggers too)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def tracebacks(self):
        return [r for r in self.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.fixture
def captured():
    handler = Capture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


@pytest.fixture(scope="module")
def served():
    with Served() as s:
        yield s


def raw(port, data, timeout=20.0):
    """Send ``data`` on a new connection; the whole answer (the server closes: Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer):
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer.split(b" ", 2)[1])


def eas(query, headers=b"", body=b"", auth=AUTH, version=b"14.1"):
    head = b"POST /Microsoft-Server-ActiveSync?" + query + b" HTTP/1.1\r\nHost: t\r\n"
    if auth is not None:
        head += b"Authorization: " + auth + b"\r\n"
    if version is not None:
        head += b"MS-ASProtocolVersion: " + version + b"\r\n"
    return head + headers + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body


def admin(method, path, body=b"", auth=b"Bearer " + TOKEN.encode()):
    head = b"%s %s HTTP/1.1\r\nHost: t\r\n" % (method, path)
    if auth is not None:
        head += b"Authorization: " + auth + b"\r\n"
    return head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body


def still_serving(served):
    answer = raw(served.port, b"OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: t\r\nAuthorization: " + AUTH
                 + b"\r\nConnection: close\r\n\r\n")
    assert status_of(answer) == 200
    assert status_of(raw(served.admin_port, admin(b"GET", b"/admin/counters"))) == 200


def no_500(served):
    assert not [k for k in served.target.counters if k[1] == 500], served.target.counters


Q = b"Cmd=%s&User=user1&DeviceId=%s&DeviceType=SmartPhone"


# -- item 2: the admin API's Authorization header

@pytest.mark.parametrize("value", [b"Bearer \xff\xfe", b"\xc3\x28", b"Bearer " + TOKEN.encode() + b"\x80",
                                   b"Bearer t\xc3\xa9", b"x" * 6000])
def test_admin_authorization_that_is_not_utf8_is_401_without_traceback(served, captured, value):
    answer = raw(served.admin_port, admin(b"GET", b"/admin/counters", auth=value))
    assert status_of(answer) == 401, answer[:300]
    assert b"Traceback" not in answer and not captured.tracebacks()
    still_serving(served)


async def test_cluster_admin_authorization_that_is_not_utf8_is_401(captured):
    from aiohttp import web

    from loadgen.exchange.cluster import ClusterAdmin

    app = ClusterAdmin(object(), TOKEN).app
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        answer = await asyncio.to_thread(raw, port, admin(b"GET", b"/admin/counters", auth=b"Bearer \xff"))
        assert status_of(answer) == 401
        assert not captured.tracebacks()
    finally:
        await runner.cleanup()


# -- item 2: the EAS endpoint's query and headers

MALFORMED = [
    # (what, request, expected status)
    ("DeviceId with a comma", eas(Q % (b"Sync", b"DEV,1")), 400),
    ("DeviceId percent-encoded non-UTF-8", eas(Q % (b"Sync", b"%ff%fe")), 400),
    ("DeviceId longer than 32 characters", eas(Q % (b"Sync", b"A" * 33)), 400),
    ("DeviceId of 5000 characters", eas(Q % (b"Sync", b"A" * 5000)), 400),
    ("DeviceId with a space", eas(Q % (b"Sync", b"DEV%201")), 400),
    ("Cmd that is not letters", eas(Q % (b"Sy%00nc", b"DEV1")), 400),
    ("raw non-UTF-8 byte in the query", eas(Q % (b"Sync", b"DEV\xff")), 400),
    ("DeviceType with a control character", eas(b"Cmd=Sync&User=user1&DeviceId=DEV1&DeviceType=a%1bb"), 400),
    ("User of 5000 characters", eas(b"Cmd=Sync&User=" + b"u" * 5000 + b"&DeviceId=DEV1&DeviceType=x"), 400),
    ("base64 query that is not base64", eas(b"%%%%"), 400),
    ("base64 query, random bytes", eas(base64.b64encode(os.urandom(40))), 400),
    ("base64 query, truncated", eas(base64.b64encode(b"\x8d\x00\x09\x04\x10abc")), 400),
    ("no query", eas(b""), 400),
    ("Authorization not UTF-8", eas(Q % (b"Sync", b"DEV1"), auth=b"Basic \xff\xfe\xfd"), 401),
    ("Authorization base64 of non-UTF-8", eas(Q % (b"Sync", b"DEV1"), auth=b"Basic " + base64.b64encode(b"\xff:\xfe")),
     401),
    ("Authorization huge", eas(Q % (b"Sync", b"DEV1"), auth=b"Basic " + b"QUFB" * 1500), 401),
    ("Authorization of another scheme", eas(Q % (b"Sync", b"DEV1"), auth=b"Negotiate \xff"), 401),
    ("MS-ASProtocolVersion not UTF-8", eas(Q % (b"Sync", b"DEV1"), version=b"\xff\xfe"), 400),
    ("MS-ASProtocolVersion huge", eas(Q % (b"Sync", b"DEV1"), version=b"1" * 5000), 400),
    ("no MS-ASProtocolVersion", eas(Q % (b"Sync", b"DEV1"), version=None), 400),
    ("header line longer than the parser takes", eas(Q % (b"Sync", b"DEV1"), headers=b"X-Junk: " + b"j" * 20000
                                                     + b"\r\n"), 400),
]


@pytest.mark.parametrize("what,request_bytes,expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_eas_requests_get_their_status_and_no_traceback(served, captured, what, request_bytes, expected):
    answer = raw(served.port, request_bytes)
    assert status_of(answer) == expected, (what, answer[:300])
    assert b"Traceback" not in answer
    assert not captured.tracebacks(), [r.getMessage() for r in captured.tracebacks()]
    no_500(served)
    still_serving(served)


@pytest.mark.parametrize("key", [b"\xff\xfe", b"\xc3\xa9" * 10, b"9" * 5000, b"", b"0"])
def test_policy_key_header_of_any_bytes_is_answered_in_band(served, captured, key):
    body = commands.foldersync("0")
    answer = raw(served.port, eas(Q % (b"FolderSync", b"DEVPK"), headers=b"X-MS-PolicyKey: " + key + b"\r\n",
                                  body=body))
    assert status_of(answer) in (200, 400, 403, 449), answer[:300]
    no_500(served)
    assert not captured.tracebacks()


# -- item 6: policy settings that do not exist

def test_admin_refuses_an_unknown_policy_setting_and_provision_keeps_working(captured):
    with Served() as s:
        before = s.target.state.policy_version
        answer = raw(s.admin_port, admin(b"POST", b"/admin/policy", json.dumps(
            {"settings": {"AllowWiFi": "0", "NoSuchSetting": "1"}}).encode()))
        assert status_of(answer) == 400 and b"NoSuchSetting" in answer, answer
        assert s.target.state.policy_version == before and "NoSuchSetting" not in s.target.state.policy
        assert s.target.state.policy["AllowWiFi"] == "1"  # nothing of a refused change is applied
        for bad in ({"AllowWiFi": "a\x00b"}, {"AllowWiFi": ["x"]}, {"AllowWiFi": {"x": 1}}, {"": "1"},
                    {"AllowWiFi": "x" * 100_000}):
            answer = raw(s.admin_port, admin(b"POST", b"/admin/policy", json.dumps({"settings": bad}).encode()))
            assert status_of(answer) == 400, (bad, answer[:300])
        answer = raw(s.admin_port, admin(b"POST", b"/admin/policy", json.dumps(
            {"settings": {"AllowWiFi": 0, "MaxAttachmentSize": None}}).encode()))
        assert status_of(answer) == 200
        prov = commands.provision_initial()
        answer = raw(s.port, eas(Q % (b"Provision", b"DEVP"), body=prov))
        assert status_of(answer) == 200
        no_500(s)
        assert not captured.tracebacks()


def test_state_refuses_unknown_policy_settings():
    state = TargetState(users=1)
    with pytest.raises(ValueError, match="NoSuchSetting"):
        state.change_policy(NoSuchSetting="1")
    assert "NoSuchSetting" not in state.policy and state.policy_version == 1
    with pytest.raises(ValueError, match="Bogus"):
        TargetState(users=1, policy={"AllowWiFi": "1", "Bogus": "2"})
    state.change_policy(**{name: "1" for name in POLICY_NAMES[:3]})
    assert state.policy_version == 2


@pytest.mark.parametrize("kw,word", [
    (dict(users=0), "users"), (dict(users=-5), "users"), (dict(users=True), "users"),
    (dict(ping_min=100, ping_max=10), "ping_min"), (dict(ping_min=0), "ping_min"),
    (dict(ping_max=math.inf), "ping_max"), (dict(ping_min=math.nan), "ping_min"),
    (dict(command_rate=-1), "command_rate"), (dict(command_rate=math.nan), "command_rate"),
    (dict(command_burst=-3), "command_burst"), (dict(command_burst=math.inf), "command_burst"),
    (dict(max_concurrency=-1), "max_concurrency"), (dict(max_devices=0), "max_devices"),
    (dict(refresh_interval_min=-1), "refresh_interval_min"), (dict(refresh_interval_min=math.nan),
                                                              "refresh_interval_min"),
    (dict(inbox_items=-1), "inbox_items"), (dict(ping_max_folders=0), "ping_max_folders"),
    (dict(user_pattern="user{0}"), "user_pattern"), (dict(user_pattern="user{n.__class__}"), "user_pattern"),
    (dict(user_pattern="user{n"), "user_pattern"), (dict(password_pattern="p{x}"), "password_pattern"),
    (dict(users=10**12), "users"),
])
def test_state_constructor_refuses_nonsense(kw, word):
    with pytest.raises(ValueError, match=word):
        TargetState(**kw)


@pytest.mark.parametrize("kw,word", [
    (dict(rate=-1), "rate"), (dict(rate=math.nan), "rate"), (dict(burst=math.inf), "burst"),
    (dict(low_water=2), "low_water"), (dict(retry_after=-1), "retry_after"), (dict(max_concurrency=-2),
                                                                             "max_concurrency"),
])
def test_throttle_refuses_nonsense(kw, word):
    with pytest.raises(ValueError, match=word):
        Throttle(**kw)
    throttle = Throttle()
    before = throttle.to_dict()
    with pytest.raises(ValueError, match=word):
        throttle.configure(**kw)
    assert throttle.to_dict() == before


@pytest.mark.parametrize("cfg", [
    {"reset_rate": 2}, {"reset_rate": "nan"}, {"malformed_rate": -0.5}, {"error_rates": {"500": "nan"}},
    {"error_rates": {"500": 1.5}}, {"latency": {"dist": "fixed", "seconds": "inf"}},
    {"latency": {"dist": "uniform", "min": 3, "max": 1}}, {"latency": {"dist": "exponential", "mean": -1}},
    {"trickle": {"rate": 1, "chunk": 0}}, {"trickle": {"interval": "nan"}}, {"retry_after": -1},
    {"latency": "fast"}, {"commands": 5},
])
def test_faults_refuse_nonsense(cfg):
    from loadgen.exchange.faults import Faults

    with pytest.raises((ValueError, TypeError)):
        Faults(**cfg)


# -- robustness: hypothesis against the EAS endpoint and the admin API

COMMAND_NAMES = ["Sync", "FolderSync", "Provision", "Settings", "Ping", "ItemOperations", "GetItemEstimate",
                 "SendMail", "Search", "MoveItems", "Nope"]
VERSIONS = [b"2.5", b"12.0", b"12.1", b"14.0", b"14.1", b"16.0", b"16.1", b"17.0", b"\xff"]


def _wbxml_like():
    """Random bytes, and random bytes after a valid WBXML header (so the decoder goes further)."""
    return st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"\x03\x01\x6a\x00" + b),
                     st.sampled_from([commands.foldersync("0"), commands.ping(1, "1"), commands.sync_initial("1")]))


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@FUZZ
@given(command=st.sampled_from(COMMAND_NAMES), version=st.sampled_from(VERSIONS), body=_wbxml_like(),
       key=st.one_of(st.none(), st.binary(min_size=1, max_size=80).filter(lambda b: b"\r" not in b and b"\n" not in b)),
       device=st.sampled_from([b"FUZZ1", b"FUZZ2", b"F%00", b"\xc3\xa9"]))
def test_fuzz_eas_bodies_and_headers_never_500(served, command, version, body, key, device):
    headers = b"X-MS-PolicyKey: " + key.lstrip() + b"\r\n" if key is not None else b""
    answer = raw(served.port, eas(Q % (command.encode(), device), headers=headers, body=body, version=version))
    assert status_of(answer) != 500 and status_of(answer) < 600, answer[:300]
    no_500(served)


_QUERY_BYTES = st.binary(max_size=120).map(lambda b: bytes(c for c in b if c not in b" \r\n#?"))


@FUZZ
@given(query=st.one_of(_QUERY_BYTES, st.binary(max_size=60).map(base64.b64encode),
                       st.lists(st.tuples(st.sampled_from([b"Cmd", b"User", b"DeviceId", b"DeviceType", b"X"]),
                                          _QUERY_BYTES.map(lambda b: b.replace(b"&", b""))),
                                max_size=6).map(lambda kv: b"&".join(k + b"=" + v for k, v in kv))),
       auth=st.one_of(st.none(), st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b)))
def test_fuzz_eas_queries_never_500(served, query, auth):
    answer = raw(served.port, eas(query, auth=AUTH if auth is None else auth))
    if answer:  # aiohttp may refuse some request lines outright; then it answers 400 itself
        assert status_of(answer) in (400, 401, 403, 404, 405, 411, 413, 449, 501, 503, 200), answer[:300]
    no_500(served)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children,
                                                                                      max_size=4),
                    max_leaves=12)
ADMIN_KEYS = ["settings", "allow_non_provisionable", "no_policy", "refresh_interval_min", "policy_key", "device_id",
              "user", "fraction", "seed", "devices", "account_only", "default", "rules", "allowed_ids",
              "blocked_ids", "allow", "block", "count", "users", "latency", "error_rates", "reset_rate",
              "trickle", "commands", "retry_after", "max_concurrency", "rate", "burst", "low_water"]
ENDPOINTS = [b"policy", b"wipe", b"clear_wipe", b"abq", b"release", b"remove_device", b"mail", b"faults",
             b"throttle"]


NUMBERS = st.one_of(st.integers(-10, 10**6), st.floats(), st.sampled_from(["nan", "inf", "-1", "x"]))
TARGETED = st.one_of(
    st.fixed_dictionaries({"settings": st.dictionaries(st.sampled_from(list(POLICY_NAMES[:5]) + ["Nope", ""])
                                                       | st.text(max_size=8), JSON, min_size=1, max_size=3)}),
    st.dictionaries(st.sampled_from(["max_concurrency", "rate", "burst", "low_water", "retry_after",
                                     "reset_rate", "malformed_rate", "retry_after", "refresh_interval_min"]),
                    NUMBERS, min_size=1, max_size=3),
    st.fixed_dictionaries({"latency": st.fixed_dictionaries({"dist": st.sampled_from(["fixed", "uniform"]),
                                                             "seconds": NUMBERS, "min": NUMBERS, "max": NUMBERS})}),
    st.fixed_dictionaries({"error_rates": st.dictionaries(st.sampled_from(["500", "503", "200", "x"]), NUMBERS,
                                                          max_size=2)}),
)


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS),
       body=st.one_of(st.dictionaries(st.sampled_from(ADMIN_KEYS), JSON, max_size=4).map(
           lambda d: json.dumps(d).encode()), st.binary(max_size=80), JSON.map(lambda j: json.dumps(j).encode()),
           TARGETED.map(lambda d: json.dumps(d).encode())))
def test_fuzz_admin_api_never_500(body, endpoint):
    with Served() as s:
        answer = raw(s.admin_port, admin(b"POST", b"/admin/" + endpoint, body))
        assert status_of(answer) in (200, 400), (endpoint, body, answer[:400])
        still_serving(s)
        # whatever was accepted, the EAS side still answers without a 500
        prov = commands.provision_initial()
        for command, b in ((b"Provision", prov), (b"FolderSync", commands.foldersync("0")),
                           (b"Ping", commands.ping(1, "1"))):
            answer = raw(s.port, eas(Q % (command, b"DEVF"), body=b))
            assert status_of(answer) != 500, (endpoint, body, command, answer[:300])
        no_500(s)


def test_admin_nested_json_is_400(served, captured):
    deep = b"[" * 100_000 + b"]" * 100_000
    for endpoint in ENDPOINTS:
        answer = raw(served.admin_port, admin(b"POST", b"/admin/" + endpoint, deep))
        assert status_of(answer) == 400, answer[:300]
    assert not captured.tracebacks()


# -- item 2: the throwaway TLS key directory

def _wait_gone(path, deadline=30.0):
    import time

    end = time.monotonic() + deadline
    while os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.05)
    return not os.path.exists(path)


def test_temporary_pki_removed_at_exit_and_by_cleanup(tmp_path):
    from loadgen.exchange.tls import TemporaryPKI

    pki = TemporaryPKI()
    d = pki.directory
    assert os.path.isfile(pki.pki.key)
    pki.cleanup()
    assert not os.path.exists(d)
    pki.cleanup()  # twice: nothing happens
    code = ("import sys; from loadgen.exchange.tls import TemporaryPKI; p = TemporaryPKI(); print(p.directory, flush=True);"
            " sys.exit(3)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    d = proc.stdout.strip()
    assert proc.returncode == 3 and d and not os.path.exists(d)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_target_with_a_throwaway_certificate_removes_it_on_a_signal(sig):
    proc = subprocess.Popen([sys.executable, "-m", "loadgen", "target", "--tls-self-signed", "--listen",
                             "127.0.0.1:0", "--users", "2"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True)
    try:
        directory = None
        for line in proc.stderr:
            if "--ca " in line:
                directory = os.path.dirname(line.split("--ca ", 1)[1].split()[0])
            if "listening on" in line:
                break
        assert directory and os.path.isdir(directory)
        proc.send_signal(sig)
        proc.wait(60)
        assert _wait_gone(directory), os.listdir(directory)
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_temporary_pki_survives_a_forked_child_and_a_failed_certificate(monkeypatch):
    code = ("import os, sys; from loadgen.exchange.tls import TemporaryPKI; p = TemporaryPKI()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n    sys.exit(0)\n"
            "os.waitpid(pid, 0); print(p.directory, os.path.isdir(p.directory), flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    directory, alive = proc.stdout.split()
    assert alive == "True", proc.stderr  # the child's exit did not remove its parent's key
    assert not os.path.exists(directory)  # the parent's did

    from loadgen.exchange import tls

    made = []
    real = tls.tempfile.mkdtemp

    def mkdtemp(**kw):
        made.append(real(**kw))
        return made[-1]

    def broken(directory, hosts, days, key_type=None):
        raise tls.TLSError("openssl req failed: test")

    monkeypatch.setattr(tls.tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(tls, "self_signed", broken)
    with pytest.raises(tls.TLSError):
        tls.TemporaryPKI()
    assert made and not os.path.exists(made[0])
