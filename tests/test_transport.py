"""The lean HTTP/1.1 transport against local misbehaving servers (raw asyncio sockets)."""

import asyncio

import pytest

from loadgen.transport import AiohttpTransport, DeviceEndpoint, LeanTransport

OK_BODY = b"\x03\x01\x6a\x00\x00\x07\x56\x52\x03\x31\x00\x01\x01"


def endpoint(port, host="127.0.0.1"):
    return DeviceEndpoint("http://%s:%d/Microsoft-Server-ActiveSync" % (host, port), "user1", "Secret1!",
                          "DEV1", "SmartPhone", "14.1", "ContosoPhone/1.0")


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
