"""Both transports against hostile and quirky servers on the wire (scripted with tests/hostile.py).

What a user needs from each: every request the server saw is in "sent" and sent = answered +
errors + timeouts + cancelled + re-sent (requests written on a connection the server had closed,
sent again once on a fresh one); a server that answers without end cannot grow the client's memory
past the per-response limit or the process budget, and the request ends counted (``too_large``);
a request line with user info or a non-ASCII path does not crash a transport.
"""

import asyncio
import gc

import pytest
from hostile import ScriptedServer, http_response, wait_for

from loadgen.wire import transport as tr
from loadgen.results.stats import Stats, accounting
from loadgen.results.text import summary_text
from loadgen.wire.transport import AiohttpTransport, BodyBudget, DeviceEndpoint, LeanTransport
from loadgen.eas.http import request_head

OK_BODY = b"\x03\x01\x6a\x00\x00\x07\x56\x52\x03\x31\x00\x01\x01"
KINDS = ("lean", "aiohttp")


def make(kind, **kw):
    cls = LeanTransport if kind == "lean" else AiohttpTransport
    return cls(timeout=kw.pop("timeout", 10), **kw)


def endpoint(url, n=0, user="user%d"):
    return DeviceEndpoint(request_head(url, user % n, "Secret1!", "DEV%d" % n, "SmartPhone", "14.1",
                                       "ContosoPhone/1.0"))


def outcome(resp):
    """The device's classification, in short (loadgen/device/answers.py no_answer_outcome)."""
    if resp.status == 200:
        return "ok"
    if resp.status:
        return "http_%d" % resp.status
    if resp.error == "timeout":
        return "timeout"
    if resp.error == "too_large":
        return "too_large"
    return "conn_error"


async def drive(t, stats, endpoints, per_device, command="Sync"):
    """Each endpoint sends ``per_device`` requests one after the other, as a device does; each is recorded."""
    async def device(ep):
        for _ in range(per_device):
            resp = await t.post(ep, command, b"abc", "1")
            stats.record(command, resp.status, outcome(resp), resp.elapsed, 3, len(resp.body))

    await asyncio.gather(*(device(ep) for ep in endpoints))


def check_invariant(stats, server_saw):
    acc = accounting(stats)
    assert acc["sent"] == acc["answered"] + acc["errors"] + acc["timeouts"] + acc["cancelled"] + acc["resent"]
    assert server_saw <= acc["sent"]  # every request the server saw is in "sent"
    return acc


# -------------------------------------------------------------- re-sent requests are counted (and sent)


@pytest.mark.parametrize("kind", KINDS)
async def test_request_on_a_connection_the_server_closed_is_resent_and_counted(kind):
    """The server answers the first request of a connection and closes on the second without an
    answer (it read it): the transport sends it again on a fresh connection, counted as re-sent."""
    async def behave(conn, req):
        if conn.served == 1:
            conn.write(http_response(OK_BODY))
            return True
        return False  # read, then closed unanswered

    async with ScriptedServer(behave) as srv:
        t = make(kind)
        await t.start()
        stats = Stats()
        t.stats = stats
        try:
            await drive(t, stats, [endpoint(srv.url, i) for i in range(4)], 6)
        finally:
            await t.close()
        saw = len(srv.requests)
    acc = check_invariant(stats, saw)
    assert stats.failures == 0 and acc["answered"] == 24
    assert acc["resent"] == t.reconnects > 0
    assert acc["sent"] == saw  # the server saw exactly what was sent, re-sent requests included
    d = stats.to_dict()
    assert d["reconnects"] == t.reconnects and sum(d["resent"].values()) == t.reconnects
    assert d["accounting"]["sent"] == saw
    text = summary_text(stats, "s", "t", 4)
    assert "re-sent" in text and "%d requests re-sent on a fresh connection" % t.reconnects in text


@pytest.mark.parametrize("kind", KINDS)
async def test_server_closing_after_every_response_without_saying_so(kind):
    """Keep-alive by default (no ``Connection: close``), then the server closes: the next request
    meets a closed connection; both transports send it again, no request fails."""
    async def behave(conn, req):
        conn.write(http_response(OK_BODY))
        await conn.drain()
        return False

    async with ScriptedServer(behave) as srv:
        t = make(kind)
        await t.start()
        stats = Stats()
        t.stats = stats
        try:
            await drive(t, stats, [endpoint(srv.url, i) for i in range(8)], 15)
        finally:
            await t.close()
        saw = len(srv.requests)
    acc = check_invariant(stats, saw)
    assert stats.failures == 0 and acc["answered"] == 120 == saw


async def test_a_server_that_really_refuses_still_fails():
    """Re-sent once only: a server that closes every connection unanswered gets each request twice at
    most, and the device sees the failure."""
    async def behave(conn, req):
        return False

    for kind in KINDS:
        async with ScriptedServer(behave) as srv:
            t = make(kind)
            await t.start()
            stats = Stats()
            t.stats = stats
            try:
                await drive(t, stats, [endpoint(srv.url, 0)], 3)
            finally:
                await t.close()
            saw = len(srv.requests)
        acc = check_invariant(stats, saw)
        assert acc["errors"] == 3 and saw <= 6, kind


# -------------------------------------------------------------- pooled mode: queued requests never left


async def test_pooled_requests_still_queued_at_the_end_are_not_sent():
    """pool_size 1: one request held by the server, three queued behind it; the run's end cancels all
    four (the engine counts each device's request in flight as cancelled first).  Only the one on
    the wire is "sent"; the queued ones are ``not_sent``."""
    release = asyncio.Event()

    async def behave(conn, req):
        await release.wait()
        conn.write(http_response(OK_BODY))
        return True

    async with ScriptedServer(behave) as srv:
        t = LeanTransport(timeout=30, pool_size=1)
        stats = Stats()
        t.stats = stats
        tasks = [asyncio.create_task(t.post(endpoint(srv.url, i), "Sync", b"abc", "1")) for i in range(4)]
        await wait_for(lambda: len(srv.requests) == 1)
        for task in tasks:  # what the engine does at the run's end: in flight = cancelled, then cancel
            stats.cancelled["Sync"] += 1
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await t.close()
        release.set()
        saw = len(srv.requests)
    acc = check_invariant(stats, saw)
    assert (acc["sent"], acc["cancelled"], acc["not_sent"]) == (1, 1, 3)
    assert stats.to_dict()["not_sent"] == {"Sync": 3}


async def test_pooled_latency_is_measured_from_the_write_not_the_queue():
    """pool_size 1, two requests: the second waits in the queue until the first is answered; its
    latency starts when it is written, so it is not longer than its own answer took."""
    release = asyncio.Event()

    async def behave(conn, req):
        if conn.served == 1:
            await release.wait()
        conn.write(http_response(OK_BODY))
        return True

    async with ScriptedServer(behave) as srv:
        t = LeanTransport(timeout=30, pool_size=1)
        loop = asyncio.get_running_loop()
        first = asyncio.create_task(t.post(endpoint(srv.url, 0), "Sync", b"abc", "1"))
        second_started = loop.time()
        second = asyncio.create_task(t.post(endpoint(srv.url, 1), "Sync", b"abc", "1"))
        await wait_for(lambda: len(srv.requests) == 1)
        # hold the first answer back until a measurable queue time has passed (a condition on the
        # loop's clock, not an assertion on it)
        await wait_for(lambda: loop.time() - second_started > 0.3)
        release.set()
        r1, r2 = await asyncio.gather(first, second)
        await t.close()
    assert r1.status == r2.status == 200
    assert r1.elapsed > 0.3
    assert r2.elapsed < r1.elapsed  # the queue time (> 0.3 s) is not in the second's latency


# -------------------------------------------------------------- memory: per-response limit and process budget


def _held(t):
    return t.budget.held


@pytest.mark.parametrize("kind", KINDS)
async def test_huge_content_length_ends_the_request_too_large(kind):
    """A Content-Length of 10 GB and bytes that keep coming: the request ends ``too_large`` at the
    per-response limit, nothing is left held."""
    async def behave(conn, req):
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
                   b"Content-Length: 10000000000\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(100_000):
            conn.write(chunk)
            await conn.drain()
        return False

    async with ScriptedServer(behave) as srv:
        t = make(kind, max_response_bytes=1 << 20)
        await t.start()
        try:
            resp = await t.post(endpoint(srv.url), "Sync", b"abc", "1")
        finally:
            await t.close()
    assert (resp.status, resp.error, resp.body) == (0, "too_large", b"")
    assert _held(t) == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_endless_chunked_body_ends_the_request_too_large(kind):
    async def behave(conn, req):
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b"y" * 65536 + b"\r\n"
        for _ in range(100_000):
            conn.write(chunk)
            await conn.drain()
        return False

    async with ScriptedServer(behave) as srv:
        t = make(kind, max_response_bytes=1 << 20)
        await t.start()
        try:
            resp = await t.post(endpoint(srv.url), "Sync", b"abc", "1")
        finally:
            await t.close()
    assert (resp.status, resp.error) == (0, "too_large")
    assert _held(t) == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_process_budget_bounds_many_large_answers_at_once(kind):
    """Twenty devices, each answered slowly with a body below the per-response limit: together they
    would hold 20 x 1.5 MiB; the process budget (4 MiB) ends the requests that would pass it
    (``too_large``), the bytes held never pass the budget, and every request ends counted."""
    size = 3 << 19  # 1.5 MiB
    gate = asyncio.Event()

    async def behave(conn, req):
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
                   b"Content-Length: %d\r\n\r\n" % size)
        conn.write(b"z" * (size // 2))
        await conn.drain()
        await gate.wait()
        conn.write(b"z" * (size - size // 2))
        await conn.drain()
        return True

    budget = BodyBudget(4 << 20)
    peak = [0]
    async with ScriptedServer(behave) as srv:
        t = make(kind, max_response_bytes=2 << 20, body_budget=budget)
        await t.start()
        stats = Stats()
        t.stats = stats
        task = asyncio.create_task(drive(t, stats, [endpoint(srv.url, i) for i in range(20)], 1))

        def watch():
            peak[0] = max(peak[0], budget.held)
            return len(srv.requests) == 20 and (stats.total >= 14 or budget.held >= (4 << 20) - size)
        await wait_for(watch)
        gate.set()
        while not task.done():
            peak[0] = max(peak[0], budget.held)
            await asyncio.sleep(0.005)
        await task
        await t.close()
    assert peak[0] <= budget.limit
    acc = check_invariant(stats, 20)
    assert acc["sent"] == 20
    too_large = sum(n for (c, o, s), n in stats.by_key.items() if o == "too_large")
    # at most 5 halves fit the budget at once: most requests end too_large, each one counted
    assert too_large >= 10 and acc["answered"] + too_large == 20
    assert budget.held == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_header_line_that_never_ends_is_bounded(kind):
    """A header line that never ends: the connection fails once the head passes its limit (64 KiB),
    long before the server stops sending."""
    sent = [0]

    async def behave(conn, req):
        conn.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        chunk = b"a" * 16384
        for _ in range(20_000):  # 320 MiB if nobody stops it
            conn.write(chunk)
            sent[0] += len(chunk)
            await conn.drain()
        return False

    async with ScriptedServer(behave) as srv:
        t = make(kind)
        await t.start()
        try:
            resp = await t.post(endpoint(srv.url), "Sync", b"abc", "1")
        finally:
            await t.close()
    assert resp.status == 0 and resp.error and resp.error.startswith(("protocol:", "connection:"))
    assert sent[0] < 64 << 20


async def test_lean_head_limit_is_checked_per_chunk(monkeypatch):
    """The lean transport stops a head at MAX_HEADER_BYTES of input, whatever the parser buffers."""
    monkeypatch.setattr(tr, "MAX_HEADER_BYTES", 4096)

    async def behave(conn, req):
        conn.write(b"HTTP/1.1 200 OK\r\nX-Endless: " + b"a" * 8000)
        await conn.drain()
        await asyncio.sleep(30)
        return False

    async with ScriptedServer(behave) as srv:
        t = LeanTransport(timeout=20)
        resp = await t.post(endpoint(srv.url), "Sync", b"abc", "1")
        await t.close()
    assert resp.status == 0 and resp.error.startswith("protocol:"), resp.error


async def test_aiohttp_does_not_inflate_a_gzip_bomb():
    """gzip of 64 MiB of zeros (~64 KiB on the wire) sent unasked: the body is not inflated."""
    import gzip

    bomb = gzip.compress(b"\0" * (64 << 20), 9)

    async def behave(conn, req):
        conn.write(http_response(bomb, extra=b"Content-Encoding: gzip\r\n"))
        return True

    async with ScriptedServer(behave) as srv:
        t = AiohttpTransport(timeout=10)
        await t.start()
        try:
            resp = await t.post(endpoint(srv.url), "Sync", b"abc", "1")
        finally:
            await t.close()
    assert "accept-encoding" not in srv.requests[0].headers
    assert len(resp.body) <= len(bomb)


# -------------------------------------------------------------- URLs: user info, non-ASCII paths


@pytest.mark.parametrize("kind", KINDS)
async def test_user_info_in_the_url_stays_out_of_the_request(kind):
    async def behave(conn, req):
        conn.write(http_response(OK_BODY))
        return True

    async with ScriptedServer(behave) as srv:
        url = srv.url.replace("http://", "http://alice:s3cret@")
        t = make(kind)
        await t.start()
        try:
            resp = await t.post(endpoint(url), "Sync", b"abc", "1")
        finally:
            await t.close()
    assert resp.status == 200
    req = srv.requests[0]
    assert b"s3cret" not in req.head and b"alice:" not in req.head
    assert req.headers["authorization"].startswith("Basic ")  # the device's own credentials


@pytest.mark.parametrize("kind", KINDS)
async def test_non_ascii_path_is_percent_encoded(kind):
    async def behave(conn, req):
        conn.write(http_response(OK_BODY))
        return True

    async with ScriptedServer(behave, path="/Microsoft-Server-ActiveSync") as srv:
        url = srv.url.replace("/Microsoft-Server-ActiveSync", "/sync/Ä€/日本")
        t = make(kind)
        await t.start()
        try:
            resp = await t.post(endpoint(url, user="usér%d"), "Sync", b"abc", "1")
        finally:
            await t.close()
    assert resp.status == 200
    target = srv.requests[0].target
    assert target.startswith("/sync/%C3%84%E2%82%AC/%E6%97%A5%E6%9C%AC?User=us%C3%A9r0&"), target
    assert target.isascii()


def test_non_utf8_password_does_not_crash():
    """A password read from the environment with undecodable bytes (surrogate escapes) is sent as
    those bytes, not a UnicodeEncodeError."""
    ep = DeviceEndpoint(request_head("http://127.0.0.1:1/x", "u", "pa\udcffss", "D", "T", "14.1", "UA"))
    head = ep.head("Sync", None, 0)
    assert b"Authorization: Basic " in head
    gc.collect()


# -------------------------------------------------------------- the whole run: the server's count is in "sent"


@pytest.mark.parametrize("kind", KINDS)
def test_engine_run_counts_every_request_the_server_saw(kind):
    """A front for the embedded target that reads the second request of every connection and closes
    it unanswered (the kept-alive connection a server dropped): the devices' transport sends each
    such request again on a fresh connection.  At the end, every request the front saw is in the
    run's "sent", and sent = answered + errors + timeouts + cancelled + re-sent."""
    import aiohttp

    from loadgen.cli import start

    from loadgen.exchange import launch
    from loadgen import scenario
    from loadgen.exchange.server import start_target

    def make_scenario(url=None):
        return scenario.parse("""
name = "closing-front"
duration = 3
seed = 5
[target]
%s
ping_min = 1
[auth]
users = 4
[population]
devices = 4
devices_per_user = 1
[load]
ramp_up = 0.5
think_time = 0.05
timeout = 5
graceful_stop = 1
mode = "poll"
transport = "%s"
""" % ('url = "%s"' % url if url else "", kind), "front.toml")

    async def go():
        state = launch.embedded_state(make_scenario())
        runner, _target, upstream = await start_target("127.0.0.1", 0, state)
        base = upstream.split("/Microsoft-Server-ActiveSync")[0]
        session = aiohttp.ClientSession(auto_decompress=False)

        async def front(conn, req):
            if conn.served >= 2:
                return False  # read, then closed without an answer
            headers = {k: v for k, v in req.headers.items() if k not in ("host", "content-length", "connection")}
            async with session.request(req.method, base + req.target, headers=headers, data=req.body,
                                       allow_redirects=False) as r:
                body = await r.read()
                extra = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in r.headers.items()
                                 if k.lower() not in ("content-length", "content-type", "transfer-encoding",
                                                      "connection", "date", "server"))
                conn.write(http_response(body, status=b"%d %s" % (r.status, (r.reason or "X").encode()),
                                         content_type=r.headers.get("Content-Type", "").encode() or None,
                                         extra=extra))
            return True

        try:
            async with ScriptedServer(front) as srv:
                result = await start.run(make_scenario(srv.url), progress=False)
                saw = len(srv.requests)
        finally:
            await session.close()
            await runner.cleanup()
        return result, saw

    result, saw = asyncio.run(go())
    st = result.stats
    resent = sum(getattr(st, "resent", {}).values())
    sent = sum(st.by_key.values()) + sum(st.cancelled.values()) + resent
    assert result.reconnects > 0 and resent == result.reconnects
    assert saw <= sent <= saw + 4  # at most a request per device written as the run was cut
    assert st.errors() == 0
    acc = accounting(st)
    assert acc["sent"] == sent
    assert acc["sent"] == acc["answered"] + acc["errors"] + acc["timeouts"] + acc["cancelled"] + acc["resent"]
    assert st.to_dict()["reconnects"] == result.reconnects
