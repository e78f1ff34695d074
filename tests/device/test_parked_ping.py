"""Parked Pings: a device holding a Ping has no task, coroutine or future (LeanTransport.park,
engine.Lives); the answer is taken exactly as an awaited Ping's answer.

Transport-level tests against raw local servers, and engine runs against a scripted EAS server
that answers each device's Pings from a script (statuses 1, 2, 5, 7, 142, HTTP 449, 503 with
Retry-After, a hold to the deadline, a hold to the end of the run).  The same scripted run over
the parked path and over the awaited one (a transport wrapper without ``park``) must produce the
same requests per device, the same counts and the same end states, with exact accounting: what
the server received = answered + transport errors + timeouts + cancelled, per command."""

import asyncio
import os
import signal
from collections import Counter, defaultdict
from urllib.parse import parse_qs, urlsplit

import pytest

from _wbxml import decode, encode
from loadgen.cli import start
from loadgen.run import engine
from loadgen import scenario
from loadgen.eas.policy import SEED_POLICY, policy_to_tree
from loadgen.wire.transport import DeviceEndpoint, LeanTransport
from loadgen.eas.http import request_head
from loadgen.wire.transport import Transport as RealTransport

OK_BODY = b"\x03\x01\x6a\x00\x00\x07\x56\x52\x03\x31\x00\x01\x01"


def endpoint(port):
    return DeviceEndpoint(request_head("http://127.0.0.1:%d/Microsoft-Server-ActiveSync" % port, "user1", "Secret1!",
                                       "DEV1", "SmartPhone", "14.1", "ContosoPhone/1.0"))


def http(status=b"200 OK", body=b"", extra=b""):
    return b"HTTP/1.1 %s\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n%sContent-Length: %d\r\n\r\n%s" % (
        status, extra, len(body), body)


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await reader.readexactly(length) if length else b""
    return head, body


class Calls:
    """A parked request's callback: what it was called with."""

    def __init__(self):
        self.calls = []
        self.event = asyncio.Event()

    def __call__(self, arg, resp):
        self.calls.append((arg, resp))
        self.event.set()


async def serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


# ------------------------------------------------------------------ the transport


async def test_parked_request_is_answered_through_its_callback_with_nothing_waiting():
    release = asyncio.Event()

    async def handler(reader, writer):
        await read_request(reader)
        await release.wait()
        writer.write(http(body=OK_BODY))
        await writer.drain()
        await reader.read()  # keep the connection open: it stays the device's Ping connection

    server, port = await serve(handler)
    t = LeanTransport(timeout=5)
    ep = endpoint(port)
    calls = Calls()
    assert t.can_park
    assert await t.park(ep, "Ping", b"abc", "1", calls, "device", timeout=30) is None
    await asyncio.sleep(0.2)
    # held: no task of the transport's, no future; only the connection and its record
    assert t.parked == 1 and calls.calls == []
    client_tasks = [t for t in asyncio.all_tasks()
                    if t is not asyncio.current_task() and "handler" not in t.get_coro().__qualname__]
    assert client_tasks == []
    assert ep.ping_conn is not None and not ep.ping_conn.closed
    release.set()
    await asyncio.wait_for(calls.event.wait(), 5)
    [(arg, resp)] = calls.calls
    assert arg == "device" and (resp.status, resp.body, resp.error) == (200, OK_BODY, None)
    assert t.parked == 0 and not ep.ping_conn.closed  # kept alive for the next Ping
    await t.close()
    server.close()
    await server.wait_closed()


async def test_parked_request_past_its_deadline_gets_a_timeout():
    async def stall(reader, writer):
        await read_request(reader)
        await reader.read()

    server, port = await serve(stall)
    t = LeanTransport(timeout=30)
    ep = endpoint(port)
    calls = Calls()
    assert await t.park(ep, "Ping", b"", "1", calls, None, timeout=0.3) is None
    await asyncio.wait_for(calls.event.wait(), 5)
    [(_, resp)] = calls.calls
    assert (resp.status, resp.error) == (0, "timeout")
    assert t.parked == 0 and (ep.ping_conn is None or ep.ping_conn.closed)  # a late answer cannot land
    await t.close()
    server.close()
    await server.wait_closed()


async def test_parked_request_on_a_connection_the_server_closed_is_sent_again_once():
    """The server closes the kept-alive Ping connection on the next request without a byte of
    answer (as it would an idle one): re-sent once on a fresh connection, a reconnect, not an error."""
    conns = []

    async def handler(reader, writer):
        conns.append(writer)
        n = 0
        try:
            while True:
                await read_request(reader)
                n += 1
                if len(conns) == 1 and n == 2:
                    writer.close()  # no answer: closed under the request
                    return
                writer.write(http(body=OK_BODY))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    server, port = await serve(handler)
    t = LeanTransport(timeout=5)
    ep = endpoint(port)
    first, second = Calls(), Calls()
    await t.park(ep, "Ping", b"", "1", first, 1, timeout=5)
    await asyncio.wait_for(first.event.wait(), 5)
    await t.park(ep, "Ping", b"", "1", second, 2, timeout=5)
    await asyncio.wait_for(second.event.wait(), 5)
    await asyncio.sleep(0.1)
    [(_, resp)] = second.calls
    assert (resp.status, resp.body, resp.error) == (200, OK_BODY, None)
    assert t.reconnects == 1 and len(conns) == 2 and len(first.calls) == 1
    assert t.parked == 0
    await t.close()
    server.close()
    await server.wait_closed()


async def test_park_without_a_server_answers_at_once_and_parks_nothing():
    server, port = await serve(lambda r, w: None)
    server.close()
    await server.wait_closed()  # nobody listens on that port any more
    t = LeanTransport(timeout=5)
    calls = Calls()
    resp = await t.park(endpoint(port), "Ping", b"", "1", calls, None, timeout=5)
    assert resp is not None and resp.status == 0 and resp.error.startswith("connection:")
    await asyncio.sleep(0.1)
    assert calls.calls == [] and t.parked == 0
    await t.close()


@pytest.mark.parametrize("how", ["disconnect", "close"])
async def test_a_dropped_parked_request_never_calls_back(how):
    answer = asyncio.Event()
    closed = asyncio.Event()

    async def handler(reader, writer):
        await read_request(reader)
        await answer.wait()
        try:
            writer.write(http(body=OK_BODY))
            await writer.drain()
            await reader.read()
        except ConnectionError:
            pass
        closed.set()

    server, port = await serve(handler)
    t = LeanTransport(timeout=5)
    ep = endpoint(port)
    calls = Calls()
    await t.park(ep, "Ping", b"", "1", calls, None, timeout=30)
    await asyncio.sleep(0.1)
    if how == "disconnect":
        t.disconnect(ep)  # a phone going offline (engine.ClosedStages ramp-down)
    else:
        await t.close()
    answer.set()
    await asyncio.wait_for(closed.wait(), 5)
    await asyncio.sleep(0.1)
    assert calls.calls == [] and t.parked == 0
    await t.close()
    server.close()
    await server.wait_closed()


async def test_stop_ping_drops_the_held_ping_and_keeps_the_other_connection():
    """A user acting while a Ping is held (loadgen/device/mail.py ping_stopped): the Ping's connection
    is closed and its callback never called; the device's ordinary connection stays open and carries
    the work."""
    accepted = []
    ping_seen = asyncio.Event()
    ping_closed = asyncio.Event()

    async def handler(reader, writer):
        accepted.append(writer)
        try:
            while True:
                head, _body = await read_request(reader)
                if b"Cmd=Ping" in head.split(b"\r\n")[0]:
                    ping_seen.set()
                    await reader.read()  # held until the client closes it
                    ping_closed.set()
                    return
                writer.write(http(body=OK_BODY))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    server, port = await serve(handler)
    t = LeanTransport(timeout=5)
    ep = endpoint(port)
    calls = Calls()
    assert (await t.post(ep, "Sync", b"", "1")).status == 200
    await t.park(ep, "Ping", b"", "1", calls, None, timeout=30)
    assert t.parked == 1
    await asyncio.wait_for(ping_seen.wait(), 10)
    t.stop_ping(ep)
    await asyncio.wait_for(ping_closed.wait(), 10)  # the server saw the Ping's connection end
    assert (await t.post(ep, "Sync", b"", "1")).status == 200
    assert len(accepted) == 2  # the Sync connection and the Ping's: the second Sync reused the first
    assert calls.calls == [] and t.parked == 0
    await t.close()
    server.close()
    await server.wait_closed()


async def test_pooled_connections_do_not_park():
    t = LeanTransport(timeout=5, pool_size=4)
    assert not t.can_park
    with pytest.raises(RuntimeError):
        await t.park(endpoint(1), "Ping", b"", "1", Calls(), None)


# ------------------------------------------------------------------ the engine, against a scripted server


def _prov(key, data):
    policy = [("Provision:PolicyType", "MS-EAS-Provisioning-WBXML"), ("Provision:Status", "1"),
              ("Provision:PolicyKey", key)]
    if data:
        policy.append(("Provision:Data", [policy_to_tree(dict(SEED_POLICY))]))
    return encode(("Provision:Provision", [("Provision:Status", "1"),
                                           ("Provision:Policies", [("Provision:Policy", policy)])]))


FOLDERS = encode(("FolderHierarchy:FolderSync", [
    ("FolderHierarchy:Status", "1"), ("FolderHierarchy:SyncKey", "1"),
    ("FolderHierarchy:Changes", [("FolderHierarchy:Count", "1"), ("FolderHierarchy:Add", [
        ("FolderHierarchy:ServerId", "5"), ("FolderHierarchy:ParentId", "0"),
        ("FolderHierarchy:DisplayName", "Inbox"), ("FolderHierarchy:Type", "2")])])]))
SYNC = encode(("AirSync:Sync", [("AirSync:Collections", [("AirSync:Collection", [
    ("AirSync:SyncKey", "2"), ("AirSync:CollectionId", "5"), ("AirSync:Status", "1")])])]))


def ping_status(status, *extra):
    return http(body=encode(("Ping:Ping", [("Ping:Status", str(status))] + list(extra))))


# each device's Pings, in order: what the server does with Ping n (then: hold until the end)
SCRIPT = [
    ("answer", 0.05, ping_status(1)),  # heartbeat expired: Ping again
    ("answer", 0.05, ping_status(2, ("Ping:Folders", [("Ping:Folder", "5")]))),  # changes: Sync, then Ping
    ("answer", 0.05, ping_status(5, ("Ping:HeartbeatInterval", "120"))),  # out of bounds: take 120
    ("answer", 0.05, ping_status(7)),  # hierarchy changed: FolderSync from 0, Sync, Ping
    ("answer", 0.05, ping_status(142)),  # policy changed: provision again
    ("answer", 0.05, http(b"449 Retry After Sending Device Information")),  # provision (12.x style)
    ("answer", 0.05, http(b"503 Service Unavailable", extra=b"Retry-After: 1\r\n")),  # throttled 1 s
    ("answer", 0.05, ping_status(3)),  # an error status: back off, Ping again
    ("hold", 0.0, b""),  # held until the end of the run: cancelled
]


class ScriptedTarget:
    """An EAS server for the engine: Provision / FolderSync / Sync answered at once, Pings from SCRIPT."""

    def __init__(self, script=SCRIPT):
        self.script = script
        self.received = Counter()  # command -> requests received (the accounting's reference)
        self.log = defaultdict(list)  # user -> [command or (Ping, heartbeat)]
        self.pings = Counter()  # user -> Pings so far
        self.held = 0
        self.writers = []

    async def handle(self, reader, writer):
        self.writers.append(writer)
        try:
            while True:
                head, body = await read_request(reader)
                target = head.split(b" ", 2)[1].decode()
                query = parse_qs(urlsplit(target).query)
                user, cmd = query["User"][0], query["Cmd"][0]
                self.received[cmd] += 1
                if cmd == "Ping":
                    heartbeat = dict(decode(body)[1])["Ping:HeartbeatInterval"]
                    self.log[user].append(("Ping", heartbeat))
                    n = self.pings[user]
                    self.pings[user] += 1
                    kind, delay, answer = self.script[min(n, len(self.script) - 1)]
                    if kind == "hold":
                        self.held += 1
                        await reader.read()  # until the client closes it
                        return
                    await asyncio.sleep(delay)
                    writer.write(answer)
                elif cmd == "Provision":
                    self.log[user].append(cmd)
                    writer.write(http(body=_prov("2222", False) if b"X-MS-PolicyKey: 1111" in head
                                      else _prov("1111", True)))
                else:
                    self.log[user].append(cmd)
                    writer.write(http(body=FOLDERS if cmd == "FolderSync" else SYNC))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.url = "http://127.0.0.1:%d/Microsoft-Server-ActiveSync" % self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        for w in self.writers:
            w.close()
        await asyncio.sleep(0.1)  # the handlers see their connections closed and end


def make(url, devices=4, duration=4.0, heartbeat=60, timeout=5, graceful=0.5):
    return scenario.parse(f"""
name = "parked"
duration = {duration}
seed = 9
[target]
url = "{url}"
[auth]
users = {devices}
[population]
devices = {devices}
devices_per_user = 1
versions = {{ "14.1" = 1 }}
[load]
ramp_up = 0.1
mode = "ping"
heartbeat = {heartbeat}
think_time = 0
timeout = {timeout}
backoff = 0.1
graceful_stop = {graceful}
sample_interval = 0.1
""", "parked.toml")


class AwaitedOnly:
    """The lean transport without ``park``: every Ping is awaited by its device's task."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        if name in ("park", "can_park"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def start(self):
        await self.inner.start()

    async def close(self):
        await self.inner.close()

    async def post(self, endpoint, command, body, policy_key, timeout=None):
        return await self.inner.post(endpoint, command, body, policy_key, timeout)


def accounted(stats):
    total = Counter()
    for (command, _outcome, _status), n in stats.by_key.items():
        total[command] += n
    total.update(stats.cancelled)
    return total


def scripted_run(monkeypatch, parked, script=SCRIPT, stop_when_held=False, **kw):
    """One engine run against a ScriptedTarget; (result, target, what was seen while all Pings were held)."""
    seen = {}

    def factory(*args, **kwargs):
        t = RealTransport(*args, **kwargs)
        seen["transport"] = t
        return t if parked else AwaitedOnly(t)

    monkeypatch.setattr(engine, "Transport", factory)

    async def main():
        async with ScriptedTarget(script) as target:
            sc = make(target.url, **kw)

            def on_tick(stats, devices, final):
                if final or target.held < len(devices) or "tasks" in seen:
                    return
                # every device holds its last Ping: count the devices' tasks now
                seen["tasks"] = sum(1 for t in asyncio.all_tasks()
                                    if getattr(t.get_coro(), "__name__", "") in ("_life", "run"))
                seen["parked"] = seen["transport"].parked if parked else None
                if stop_when_held:
                    os.kill(os.getpid(), signal.SIGINT)  # as an operator's Ctrl-C

            result = await start.run(sc, progress=False, on_tick=on_tick, handle_signals=stop_when_held)
            return result, target

    result, target = asyncio.run(main())
    return result, target, seen


def test_parked_pings_answered_with_every_status_behave_as_awaited_ones(monkeypatch):
    parked, target_p, seen_p = scripted_run(monkeypatch, parked=True)
    awaited, target_a, seen_a = scripted_run(monkeypatch, parked=False)
    devices = 4
    # parked: while every device held its last Ping, no device had a task; awaited: one task each
    assert seen_p["tasks"] == 0 and seen_p["parked"] == devices
    assert seen_a["tasks"] == devices
    # the same conversation per device, request by request
    expected = (["Provision", "Provision", "FolderSync", "Sync", "Sync", ("Ping", "60")]
                + [("Ping", "60")]  # status 1: Ping again
                + ["Sync", ("Ping", "60")]  # status 2: Sync first
                + [("Ping", "120")]  # status 5: the server's bound from now on
                + ["FolderSync", "Sync", "Sync", ("Ping", "120")]  # status 7: hierarchy from 0, Inbox again
                + ["Provision", "Provision", ("Ping", "120")]  # status 142: provision again
                + ["Provision", "Provision", ("Ping", "120")]  # HTTP 449: provision again
                + [("Ping", "120")]  # 503 + Retry-After: 1 s later
                + [("Ping", "120")])  # status 3: after the back-off; held until the end
    for log in (target_p.log, target_a.log):
        assert len(log) == devices
        for user, requests in log.items():
            assert requests == expected, user
    # the same counts, outcomes and end states
    assert parked.stats.by_key == awaited.stats.by_key
    assert parked.stats.cancelled == awaited.stats.cancelled == Counter({"Ping": devices})
    assert parked.stats.throttled == awaited.stats.throttled == Counter({"unspecified": devices})
    assert parked.stats.provisionings == awaited.stats.provisionings
    assert [(d.state, d.heartbeat, d.prov.policy_key) for d in parked.devices] == \
        [(d.state, d.heartbeat, d.prov.policy_key) for d in awaited.devices] == [("provisioned", 120, "2222")] * devices
    # exact accounting: received = answered + transport errors + timeouts + cancelled, per command
    assert accounted(parked.stats) == target_p.received
    assert accounted(awaited.stats) == target_a.received
    assert parked.stats.errors() == awaited.stats.errors()


def test_parked_ping_past_its_deadline_is_a_timeout_and_the_device_pings_again(monkeypatch):
    # heartbeat 1 s + timeout 0.5 s: the held Ping expires, the device backs off and Pings again
    script = [("hold", 0.0, b"")]
    result, target, seen = scripted_run(monkeypatch, parked=True, script=script, devices=3, duration=3.5,
                                        heartbeat=1, timeout=0.5)
    st = result.stats
    timeouts = sum(n for (cmd, outcome, _s), n in st.by_key.items() if cmd == "Ping" and outcome == "timeout")
    assert timeouts >= 3 and all(count >= 2 for count in target.pings.values())
    assert st.cancelled["Ping"] <= 3
    assert accounted(st) == target.received
    assert {d.state for d in result.devices} == {"provisioned"}


def test_stop_while_pings_are_parked_counts_them_as_cancelled(monkeypatch):
    script = [("hold", 0.0, b"")]
    result, target, seen = scripted_run(monkeypatch, parked=True, script=script, devices=5, duration=30,
                                        stop_when_held=True)
    assert seen["tasks"] == 0 and seen["parked"] == 5
    assert result.interrupted
    st = result.stats
    assert st.cancelled == Counter({"Ping": 5})
    assert accounted(st) == target.received
    assert st.errors() == 0
    assert seen["transport"].parked == 0  # dropped at the close: no late answer is taken
