"""Each fault of the embedded target alone, against the engine ("faults cost what
they should and no more"): the run completes, every request is accounted for (requests
sent = answered + transport errors + timeouts + cancelled, per command, checked against
an independent count of what the devices sent), the target's own count of what it
injected matches what the devices recorded, and once the fault is cleared every device
is provisioned and syncing (or pinging) again.

Faults are set and cleared by scenario events (``action = "faults"``, the same
configuration as the admin API's ``POST /admin/faults``, loadgen/exchange/faults.py).
Short runs: 8 devices, faults from 0 s (so they hit provisioning too) to 2 s.
"""

import asyncio
from collections import Counter

import pytest

from loadgen.cli import start
from loadgen.run import engine

from loadgen.exchange import launch
from loadgen import scenario
from loadgen.exchange.server import start_target
from loadgen.exchange.state import TargetState
from loadgen.wire.transport import Transport as RealTransport

DEVICES = 8
CLEAR_AT = 2.0
DURATION = 5.0
SETTLED = 3.4  # the fault's last effects are over: a 1.3 s latency + timeout + backoff, a 1 s Retry-After


class CountingTransport:
    """The engine's transport, counting what each device sends and when its answers come."""

    def __init__(self, inner):
        self.inner = inner
        self.sent = Counter()  # command -> requests the devices sent
        self.answers = []  # (seconds since start, endpoint, command, HTTP status or 0)
        self.t0 = None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def start(self):
        self.t0 = asyncio.get_running_loop().time()
        await self.inner.start()

    async def close(self):
        await self.inner.close()

    async def post(self, endpoint, command, body, policy_key, timeout=None):
        self.sent[command] += 1
        resp = await self.inner.post(endpoint, command, body, policy_key, timeout)
        self.answers.append((asyncio.get_running_loop().time() - self.t0, endpoint, command, resp.status))
        return resp


@pytest.fixture
def counted(monkeypatch):
    made = []

    def factory(*args, **kwargs):
        made.append(CountingTransport(RealTransport(*args, **kwargs)))
        return made[-1]

    monkeypatch.setattr(engine, "Transport", factory)
    return made


def make(fault, mode="poll", target_url=None):
    events = ""
    if fault is not None:
        events = f"""
[[events]]
at = 0
action = "faults"
settings = {fault}
[[events]]
at = {CLEAR_AT}
action = "faults"
settings = {{}}
"""
    return scenario.parse(f"""
name = "fault"
duration = {DURATION}
seed = 11
[target]
{'url = "%s"' % target_url if target_url else ''}
ping_min = 1
[auth]
users = {DEVICES}
[population]
devices = {DEVICES}
devices_per_user = 1
versions = {{ "14.1" = 1, "12.1" = 1 }}
[load]
ramp_up = 1.2
think_time = 0.1
timeout = 1
graceful_stop = 1
backoff = 0.2
mode = "{mode}"
heartbeat = 1
{events}""", "fault.toml")


def by_status(stats):
    """HTTP status (or error label) -> requests, every command together."""
    out = Counter()
    for (_command, _outcome, status), n in stats.by_key.items():
        out[status] += n
    return out


def outcomes(stats):
    out = Counter()
    for (_command, outcome, _status), n in stats.by_key.items():
        out[outcome] += n
    return out


def check_accounting(stats, transport):
    """Requests sent = answered + transport errors + timeouts + cancelled, per command."""
    accounted = Counter()
    for (command, _outcome, _status), n in stats.by_key.items():
        accounted[command] += n
    accounted.update(stats.cancelled)
    assert accounted == transport.sent
    answered = sum(n for (_c, _o, status), n in stats.by_key.items() if status.isdigit())
    assert answered == sum(1 for _t, _e, _c, status in transport.answers if status)


def check_recovered(result, transport, command="Sync"):
    """Every device provisioned again, and syncing (or pinging) successfully once the fault is over."""
    assert Counter(d.state for d in result.devices) == Counter({"provisioned": DEVICES})
    late = {id(endpoint) for t, endpoint, cmd, status in transport.answers
            if t >= SETTLED and cmd == command and status == 200}
    assert all(id(d.endpoint) in late for d in result.devices)
    last = result.stats.series[-1]
    assert set(last["requests"]) <= {"%s ok" % command, "Sync ok"}, last["requests"]


def run(sc, **kw):
    return asyncio.run(start.run(sc, progress=False, **kw))


def test_no_fault_baseline(counted):
    result = run(make(None))
    check_accounting(result.stats, counted[0])
    check_recovered(result, counted[0])
    assert result.stats.errors() == 0
    assert result.connections_opened == DEVICES  # one keep-alive connection per device


def test_connection_resets(counted):
    result = run(make('{ reset_rate = 0.3, seed = 1 }'))
    st, t = result.stats, counted[0]
    injected = result.target.faults.injected["reset"]
    assert injected > 5
    check_accounting(st, t)
    # every reset is either a transport error or, on a reused connection with nothing received
    # yet, a request re-sent once on a fresh connection (a reconnect) -- none is lost or doubled
    assert by_status(st)["conn_error"] + result.reconnects == injected
    assert outcomes(st)["conn_error"] > 0
    check_recovered(result, t)


def test_http_500(counted):
    result = run(make('{ error_rates = { "500" = 0.3 }, seed = 2 }'))
    st = result.stats
    injected = result.target.faults.injected["http_500"]
    assert injected > 5
    check_accounting(st, counted[0])
    assert by_status(st)["500"] == outcomes(st)["http_5xx"] == injected
    assert st.provisionings.get(("failed", "0"), 0) == 0  # a 500 on Provision is retried, not fatal
    check_recovered(result, counted[0])


def test_http_503_with_retry_after(counted):
    result = run(make('{ error_rates = { "503" = 0.3 }, retry_after = 1, seed = 3 }'))
    st = result.stats
    injected = result.target.faults.injected["http_503"]
    assert injected > 5
    check_accounting(st, counted[0])
    assert by_status(st)["503"] == outcomes(st)["throttled"] == injected
    assert sum(st.throttled.values()) == injected  # each one waited its Retry-After
    check_recovered(result, counted[0])


def test_slow_bodies(counted):
    # an empty mailbox: the trickled answers are the provisioning and hierarchy documents (a
    # generated Inbox's bodies would take longer than the 1 s timeout at 6.4 KB/s)
    result = run(make('{ trickle = { rate = 0.5, chunk = 64, interval = 0.01 }, seed = 4 }'),
                 target_state=TargetState(users=DEVICES, ping_min=1, history_days=0))
    st = result.stats
    assert result.target.faults.injected["trickle"] > 5
    check_accounting(st, counted[0])
    assert st.errors() == 0  # slow (a policy document takes ~0.3 s), within the 1 s timeout: nothing fails
    check_recovered(result, counted[0])


@pytest.mark.parametrize("kind", ["malformed", "truncated"])
def test_damaged_wbxml_is_a_failed_request_and_the_device_retries(counted, kind):
    result = run(make('{ %s_rate = 0.3, seed = 5 }' % kind))
    st = result.stats
    injected = result.target.faults.injected[kind]
    assert injected > 5
    check_accounting(st, counted[0])
    # an undecodable answer is an error (answered, outcome "malformed"), never a success, and
    # never a verdict on the device: a damaged Provision answer is retried, not "failed"
    assert outcomes(st)["malformed"] == sum(st.malformed.values()) == injected
    assert st.malformed["Provision"] > 0
    assert not any(result == "failed" for result, _ack in st.provisionings)
    check_recovered(result, counted[0])


def test_close_after_each_response_costs_a_reconnect_not_a_failure(counted):
    result = run(make('{ close_after_response = true }'))
    st = result.stats
    closes = result.target.faults.injected["close"]
    assert closes > 20
    check_accounting(st, counted[0])
    assert st.errors() == 0
    # one new connection per close (the next request finds the connection gone), none failed
    assert result.connections_opened == DEVICES + closes
    check_recovered(result, counted[0])


def test_latency_beyond_the_timeout(counted):
    result = run(make('{ latency = { dist = "fixed", seconds = 1.3 } }'))
    st = result.stats
    assert result.target.faults.injected["latency"] > 5
    check_accounting(st, counted[0])
    assert outcomes(st)["timeout"] > 0
    assert st.errors() == outcomes(st)["timeout"]  # timeouts and nothing else
    check_recovered(result, counted[0])


def test_target_restarting_mid_run(counted):
    """Stop the embedded target and start a new one on the same port (same partnerships, as a
    restarted server keeps its database) while the devices hold Pings."""
    state = launch.embedded_state(make(None, mode="ping"))

    async def go():
        runner, _target, url = await start_target("127.0.0.1", 0, state)
        port = int(url.split(":")[2].split("/")[0])
        task = asyncio.create_task(start.run(make(None, mode="ping", target_url=url), progress=False))
        await asyncio.sleep(1.8)
        await runner.cleanup()  # held Pings are answered, connections closed
        await asyncio.sleep(0.5)  # devices meet a closed port meanwhile
        runner, target, _url = await start_target("127.0.0.1", port, state)
        try:
            return await task, target
        finally:
            await runner.cleanup()

    result, second = asyncio.run(go())
    st = result.stats
    check_accounting(st, counted[0])
    assert outcomes(st)["conn_error"] > 0  # the outage was seen ...
    assert sum(second.counters.values()) > DEVICES  # ... and the new target served the devices
    check_recovered(result, counted[0], command="Ping")
    assert sum(st.provisionings.values()) == DEVICES  # the restart cost no re-provisioning


def test_admin_api_during_a_run_sets_and_clears_a_fault(counted):
    """The embedded target's admin API is served during the run (loopback, token in a 0600 file,
    printed as a path, never the token): an operator sets 500s with curl and clears them."""
    import io
    import os
    import re
    import stat

    import aiohttp

    stream = io.StringIO()

    async def go():
        task = asyncio.create_task(start.run(make(None), progress=False, stream=stream, admin="127.0.0.1:0"))
        while "admin API" not in stream.getvalue():
            await asyncio.sleep(0.05)
        url, path = re.search(r"admin API of the embedded target on (http://127\.0\.0\.1:\d+) "
                              r"\(bearer token in (\S+)\)", stream.getvalue()).groups()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        token = open(path).read().strip()
        assert token not in stream.getvalue()
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/admin/faults", json={"error_rates": {"500": 1.0}}) as resp:
                assert resp.status == 401  # no token, no action
            headers = {"Authorization": "Bearer " + token}
            await asyncio.sleep(1.0)
            async with http.post(url + "/admin/faults", json={"error_rates": {"500": 1.0}}, headers=headers) as resp:
                assert resp.status == 200
            await asyncio.sleep(0.5)
            async with http.post(url + "/admin/faults", json={}, headers=headers) as resp:
                assert resp.status == 200
            async with http.get(url + "/admin/counters", headers=headers) as resp:
                injected = (await resp.json())["faults"]["http_500"]
        return await task, path, injected

    result, path, injected = asyncio.run(go())
    assert not os.path.exists(path)  # removed at the end of the run
    assert by_status(result.stats)["500"] == injected > 0
    check_accounting(result.stats, counted[0])
    check_recovered(result, counted[0])
