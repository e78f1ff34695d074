"""Scripted raw HTTP/1.1 servers for the hostile-server tests (shared scaffolding, not a test module).

A :class:`ScriptedServer` accepts TCP connections on 127.0.0.1 and hands every request it
reads (head and body, parsed by Content-Length only) to a coroutine ``behave(conn, request)``
that writes whatever it likes: a correct answer, a lie, nothing at all.  It records what it saw
so a test can compare the server's view with the client's accounting (every request the server
saw must be in the client's "sent").

    async def answer(conn, req):
        conn.write(http_response(b"", status=b"401 Unauthorized", content_type=None))
        return True              # keep the connection for the next request; False closes it

    async with ScriptedServer(answer) as srv:
        ... srv.url ... srv.requests ... srv.connections
"""

import asyncio


class Request:
    __slots__ = ("head", "body", "method", "target", "headers")

    def __init__(self, head, body):
        self.head = head
        self.body = body
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        self.method = parts[0].decode("latin-1")
        self.target = parts[1].decode("latin-1") if len(parts) > 1 else ""
        self.headers = {}
        for line in lines[1:]:
            if b":" in line:
                name, _, value = line.partition(b":")
                self.headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")

    @property
    def command(self):
        """The EAS command of the query string (``Cmd=``), or ''."""
        for part in self.target.partition("?")[2].split("&"):
            if part.startswith("Cmd="):
                return part[4:]
        return ""


class Connection:
    """What a behaviour gets: the stream pair and the request number on this connection."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.served = 0

    def write(self, data):
        self.writer.write(data)

    async def drain(self):
        await self.writer.drain()


def http_response(body=b"", status=b"200 OK", content_type=b"application/vnd.ms-sync.wbxml", extra=b""):
    """One HTTP/1.1 response's bytes (``extra``: more header lines, each ending in CRLF)."""
    ct = b"Content-Type: %s\r\n" % content_type if content_type else b""
    return b"HTTP/1.1 %s\r\n%s%sContent-Length: %d\r\n\r\n%s" % (status, ct, extra, len(body), body)


class ScriptedServer:
    """A raw TCP server on 127.0.0.1 (``host`` for another loopback address) with a scripted behaviour."""

    def __init__(self, behave, host="127.0.0.1", path="/Microsoft-Server-ActiveSync", ssl=None):
        self.behave = behave
        self.host = host
        self.path = path
        self.ssl = ssl
        self.requests = []
        self.connections = 0
        self.open = 0
        self._tasks = set()

    @property
    def url(self):
        return "%s://%s:%d%s" % ("https" if self.ssl else "http", self.host, self.port, self.path)

    def count(self, command):
        return sum(1 for r in self.requests if r.command == command)

    async def _handle(self, reader, writer):
        self.connections += 1
        self.open += 1
        self._tasks.add(asyncio.current_task())
        conn = Connection(reader, writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                req = Request(head[:-4], b"")
                length = int(req.headers.get("content-length", "0") or 0)
                req.body = await reader.readexactly(length) if length else b""
                self.requests.append(req)
                conn.served += 1
                if not await self.behave(conn, req):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            self._tasks.discard(asyncio.current_task())
            writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, self.host, 0, ssl=self.ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.wait_closed()


async def wait_for(condition, deadline=30.0, step=0.02):
    """Wait until ``condition()`` is true, at most ``deadline`` seconds (generous: never a timing assertion)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        if loop.time() > end:
            raise AssertionError("condition not met within %.0f s" % deadline)
        await asyncio.sleep(step)
