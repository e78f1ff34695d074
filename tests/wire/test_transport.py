"""The lean HTTP/1.1 transport against local misbehaving servers (raw asyncio sockets)."""

import asyncio

import pytest

from loadgen.wire.transport import AiohttpTransport, DeviceEndpoint, LeanTransport
from loadgen.eas.http import request_head

OK_BODY = b"\x03\x01\x6a\x00\x00\x07\x56\x52\x03\x31\x00\x01\x01"


def endpoint(port, host="127.0.0.1"):
    return DeviceEndpoint(request_head("http://%s:%d/Microsoft-Server-ActiveSync" % (host, port), "user1", "Secret1!",
                                       "DEV1", "SmartPhone", "14.1", "ContosoPhone/1.0"))


class RawServer:
    """A TCP server whose per-request behaviour is a coroutine of (reader, writer, request head)."""

    def __init__(self, behave):
        self.behave = behave
        self.requests = []
        self.connections = 0

    async def handle(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append((head, body))
                again = await self.behave(reader, writer, head, len(self.requests))
                if not again:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


def response(body=OK_BODY, status=b"200 OK", extra=b""):
    return b"HTTP/1.1 %s\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n%sContent-Length: %d\r\n\r\n%s" % (
        status, extra, len(body), body)


async def ok(reader, writer, head, n):
    writer.write(response())
    await writer.drain()
    return True


async def test_request_head_and_keep_alive():
    async with RawServer(ok) as srv:
        t = LeanTransport(timeout=5)
        ep = endpoint(srv.port)
        for key in ("0", "123", None):
            r = await t.post(ep, "FolderSync", b"abc", key)
            assert (r.status, r.body, r.headers.get("content-type")) == (200, OK_BODY, "application/vnd.ms-sync.wbxml")
        await t.close()
    assert srv.connections == 1  # one keep-alive connection per device
    head, body = srv.requests[0]
    assert head.startswith(b"POST /Microsoft-Server-ActiveSync?User=user1&DeviceId=DEV1&DeviceType=SmartPhone"
                           b"&Cmd=FolderSync HTTP/1.1\r\n")
    assert b"X-MS-PolicyKey: 0\r\n" in head and b"MS-ASProtocolVersion: 14.1\r\n" in head and body == b"abc"
    assert b"X-MS-PolicyKey" not in srv.requests[2][0]


async def test_ping_uses_its_own_connection():
    async with RawServer(ok) as srv:
        t = LeanTransport(timeout=5)
        ep = endpoint(srv.port)
        await t.post(ep, "FolderSync", b"", "1")
        await t.post(ep, "Ping", b"", "1")
        await t.post(ep, "Sync", b"", "1")
        await t.close()
    assert srv.connections == 2


async def test_dribbled_and_chunked_responses():
    async def dribble(reader, writer, head, n):
        data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n\x03\x01\x6a\x00\x00\r\n8\r\n" \
               b"\x07\x56\x52\x03\x31\x00\x01\x01\r\n0\r\n\r\n"
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
        return True

    async with RawServer(dribble) as srv:
        t = LeanTransport(timeout=5)
        r = await t.post(endpoint(srv.port), "FolderSync", b"", "1")
        await t.close()
    assert (r.status, r.body) == (200, OK_BODY)


async def test_server_closing_idle_connection_is_resent_once():
    async def close_after_each(reader, writer, head, n):
        writer.write(response())  # no "Connection: close" header, then close
        await writer.drain()
        return False

    async with RawServer(close_after_each) as srv:
        t = LeanTransport(timeout=5)
        ep = endpoint(srv.port)
        for _ in range(3):
            r = await t.post(ep, "FolderSync", b"", "1")
            await asyncio.sleep(0.05)
            assert r.status == 200
        await t.close()
    assert len(srv.requests) == 3 and srv.connections == 3


async def test_connection_close_header_honoured():
    async def close_hdr(reader, writer, head, n):
        writer.write(response(extra=b"Connection: close\r\n"))
        await writer.drain()
        return True

    async with RawServer(close_hdr) as srv:
        t = LeanTransport(timeout=5)
        ep = endpoint(srv.port)
        assert (await t.post(ep, "FolderSync", b"", "1")).status == 200
        assert (await t.post(ep, "FolderSync", b"", "1")).status == 200
        await t.close()
    assert srv.connections == 2


async def test_body_cut_short_is_an_error_not_a_hang():
    async def cut(reader, writer, head, n):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
        await writer.drain()
        return False

    async with RawServer(cut) as srv:
        t = LeanTransport(timeout=5)
        r = await t.post(endpoint(srv.port), "FolderSync", b"", "1")
        await t.close()
    assert r.status == 0 and r.error.startswith("connection")


async def test_stalled_server_times_out():
    async def stall(reader, writer, head, n):
        await asyncio.sleep(10)
        return False

    async with RawServer(stall) as srv:
        t = LeanTransport(timeout=0.3)
        r = await t.post(endpoint(srv.port), "FolderSync", b"", "1")
        await t.close()
    assert (r.status, r.error) == (0, "timeout") and r.elapsed < 2


async def test_malformed_and_oversized_responses():
    async def garbage(reader, writer, head, n):
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        return False

    async def huge(reader, writer, head, n):
        writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        return False

    for behave in (garbage, huge):
        async with RawServer(behave) as srv:
            t = LeanTransport(timeout=5)
            r = await t.post(endpoint(srv.port), "FolderSync", b"", "1")
            await t.close()
        assert r.status == 0 and r.error.startswith("protocol:"), r


async def test_unsolicited_response_closes_the_connection():
    async def two(reader, writer, head, n):
        writer.write(response() + response())
        await writer.drain()
        return True

    async with RawServer(two) as srv:
        t = LeanTransport(timeout=5)
        ep = endpoint(srv.port)
        assert (await t.post(ep, "FolderSync", b"", "1")).status == 200
        await asyncio.sleep(0.05)
        assert (await t.post(ep, "FolderSync", b"", "1")).status == 200  # on a new connection
        await t.close()
    assert srv.connections == 2


async def test_connection_refused_is_reported():
    t = LeanTransport(timeout=2)
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    r = await t.post(endpoint(port), "FolderSync", b"", "1")
    assert r.status == 0 and r.error.startswith("connection:")


def test_endpoint_repr_hides_credentials():
    ep = endpoint(80)
    assert "Secret" not in repr(ep) and "user1" not in repr(ep)


@pytest.mark.parametrize("cls", [LeanTransport, AiohttpTransport])
async def test_both_transports_same_answer(cls):
    async with RawServer(ok) as srv:
        t = cls(timeout=5)
        await t.start()
        r = await t.post(endpoint(srv.port), "FolderSync", b"xy", "7")
        await t.close()
    assert (r.status, r.body) == (200, OK_BODY)
    assert r.headers.get("Content-Type") == "application/vnd.ms-sync.wbxml"


async def test_large_body_goes_out_after_the_head():
    async with RawServer(ok) as srv:
        t = LeanTransport(timeout=5)
        big = bytes(range(256)) * 1024  # 256 KiB: head and body written separately
        r = await t.post(endpoint(srv.port), "SendMail", big, "1")
        await t.close()
    assert r.status == 200
    head, body = srv.requests[0]
    assert b"Content-Length: %d\r\n" % len(big) in head and body == big


async def test_body_delimited_by_connection_close():
    """A response without Content-Length or chunking ends at EOF (RFC 9112 6.3 item 8)."""
    async def until_eof(reader, writer, head, n):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n\r\n" + OK_BODY)
        await writer.drain()
        return False

    async with RawServer(until_eof) as srv:
        t = LeanTransport(timeout=5)
        ep = endpoint(srv.port)
        r = await t.post(ep, "FolderSync", b"", "1")
        r2 = await t.post(ep, "FolderSync", b"", "1")
        await t.close()
    assert (r.status, r.body) == (200, OK_BODY) and (r2.status, r2.body) == (200, OK_BODY)
    assert srv.connections == 2 and t.reconnects == 0


async def test_idle_ordinary_connection_is_closed_by_the_client():
    """The ordinary keep-alive connection closes after idle_timeout (IIS closes idle ones after
    its connectionTimeout); the next command opens a new one -- no reconnect, no error."""
    async with RawServer(ok) as srv:
        t = LeanTransport(timeout=5, idle_timeout=0.2)
        ep = endpoint(srv.port)
        assert (await t.post(ep, "FolderSync", b"", "1")).status == 200
        await asyncio.sleep(0.6)
        assert ep.conn is None and t.idle_closed == 1  # closed, and not kept by the device
        assert (await t.post(ep, "FolderSync", b"", "1")).status == 200
        await t.close()
    assert srv.connections == 2 and t.reconnects == 0


async def test_held_ping_outlives_the_idle_timeout_of_the_other_connection():
    """A device parked in a Ping holds one connection: its ordinary one was closed when idle,
    the Ping's own is not touched by the idle timer while the request is in flight."""
    release = asyncio.Event()

    async def hold_ping(reader, writer, head, n):
        if b"Cmd=Ping" in head:
            await release.wait()
        writer.write(response())
        await writer.drain()
        return True

    async with RawServer(hold_ping) as srv:
        t = LeanTransport(timeout=5, idle_timeout=0.2)
        ep = endpoint(srv.port)
        assert (await t.post(ep, "Sync", b"", "1")).status == 200
        ping = asyncio.create_task(t.post(ep, "Ping", b"", "1", timeout=3))
        await asyncio.sleep(0.6)
        assert ep.conn is None and not ep.ping_conn.closed
        release.set()
        r = await ping
        await t.close()
    assert r.status == 200 and t.idle_closed == 1


async def test_ping_timeout_follows_its_own_budget():
    async def stall(reader, writer, head, n):
        await asyncio.sleep(5)
        return False

    async with RawServer(stall) as srv:
        t = LeanTransport(timeout=30)
        r = await t.post(endpoint(srv.port), "Ping", b"", "1", timeout=0.3)
        await t.close()
    assert (r.status, r.error) == (0, "timeout") and r.elapsed < 2


async def test_many_devices_at_once_each_get_their_own_answer():
    """Requests written together at a loop turn (one batch) still pair with their responses."""
    async def echo_id(reader, writer, head, n):
        dev = head.split(b"DeviceId=")[1].split(b"&")[0]
        writer.write(response(body=dev))
        await writer.drain()
        return True

    async with RawServer(echo_id) as srv:
        t = LeanTransport(timeout=5)
        eps = [DeviceEndpoint(request_head("http://127.0.0.1:%d/Microsoft-Server-ActiveSync" % srv.port, "u%d" % i, "p",
                                           "DEV%d" % i, "SmartPhone", "14.1", "UA/1")) for i in range(50)]
        for _ in range(3):
            rs = await asyncio.gather(*(t.post(ep, "Sync", b"x", "1") for ep in eps))
            assert [r.body for r in rs] == [b"DEV%d" % i for i in range(50)]
        await t.close()
    assert srv.connections == 50  # one keep-alive connection per device


async def test_pooled_mode_shares_a_bounded_pool():
    """pool_size=N: all devices share at most N connections per server (raw request-rate tests);
    each request still carries its own device's identity and credentials."""
    peak = [0, 0]

    async def echo_id(reader, writer, head, n):
        peak[0] += 1
        peak[1] = max(peak[1], peak[0])
        await asyncio.sleep(0.01)
        peak[0] -= 1
        writer.write(response(body=head.split(b"DeviceId=")[1].split(b"&")[0]))
        await writer.drain()
        return True

    async with RawServer(echo_id) as srv:
        t = LeanTransport(timeout=5, pool_size=3)
        eps = [DeviceEndpoint(request_head("http://127.0.0.1:%d/Microsoft-Server-ActiveSync" % srv.port, "u%d" % i, "p",
                                           "DEV%d" % i, "SmartPhone", "14.1", "UA/1")) for i in range(20)]
        rs = await asyncio.gather(*(t.post(ep, "Sync", b"x", "1") for ep in eps for _ in range(3)))
        await t.close()
    assert [r.body for r in rs] == [b"DEV%d" % i for i in range(20) for _ in range(3)]
    assert srv.connections == 3 and peak[1] <= 3
    assert all(ep.conn is None for ep in eps)  # connections belong to the pool, not to devices


async def test_pooled_mode_replaces_connections_the_server_closes():
    async def close_after_each(reader, writer, head, n):
        writer.write(response(extra=b"Connection: close\r\n"))
        await writer.drain()
        return False

    async with RawServer(close_after_each) as srv:
        t = LeanTransport(timeout=5, pool_size=2)
        eps = [endpoint(srv.port) for _ in range(4)]
        rs = await asyncio.gather(*(t.post(ep, "Sync", b"", "1") for ep in eps for _ in range(2)))
        await t.close()
    assert [r.status for r in rs] == [200] * 8 and srv.connections == 8


async def test_pooled_mode_connection_refused_frees_the_slot():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    t = LeanTransport(timeout=2, pool_size=1)
    rs = await asyncio.gather(*(t.post(endpoint(port), "Sync", b"", "1") for _ in range(3)))
    await t.close()
    assert all(r.status == 0 and r.error.startswith("connection:") for r in rs)


def test_request_bytes_share_the_common_head():
    a = endpoint(80)
    b = DeviceEndpoint(request_head("http://127.0.0.1:80/Microsoft-Server-ActiveSync", "user2", "Other2!", "DEV2",
                                    "SmartPhone", "14.1", "ContosoPhone/1.0"))
    assert a._tail is b._tail  # shared by every device with the same server, version and user agent
    req = a.request("Ping", "42", b"body")
    assert req.endswith(b"X-MS-PolicyKey: 42\r\nContent-Length: 4\r\n\r\nbody")
    assert a.headers_no_key["Authorization"].startswith("Basic ") and "Authorization" not in b._tail.decode()


async def _observed(transport_kind):
    from loadgen.cli import start
    from loadgen import scenario

    sc = scenario.parse(f"""
duration = 4
seed = 7
[auth]
users = 6
[population]
devices = 12
devices_per_user = 2
versions = {{ "14.1" = 2, "16.1" = 1, "12.1" = 1 }}
[load]
ramp_up = 0.5
mode = "ping"
heartbeat = 120
think_time = 0
transport = "{transport_kind}"
graceful_stop = 0.5
""", "both.toml")
    result = await start.run(sc, progress=False, attach_metrics=False)
    return {dev_id: (r.user, r.device_type, r.version, r.user_agent, r.requests, r.provisions, r.ack_status,
                     r.folder_sync_key, sorted(r.device_info.items()))
            for dev_id, r in result.target.state.devices.items()}, result.stats.errors()


async def test_same_scenario_same_requests_per_device_over_both_transports():
    """The embedded target sees the same conversation from every device, lean or aiohttp:
    provisioning (two steps, acknowledgement, DeviceInformation), FolderSync, Sync, then a held Ping."""
    lean, lean_errors = await _observed("lean")
    other, other_errors = await _observed("aiohttp")
    assert len(lean) == 12 and lean == other
    assert lean_errors == other_errors == 0
    assert all(v[4] >= 6 and v[5] >= 1 and v[6] == 1 for v in lean.values())  # got as far as the Ping
