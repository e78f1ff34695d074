"""The devices' HTTP transport (EAS over HTTP, MS-ASHTTP).

Two implementations behind one interface, ``await transport.post(endpoint,
command, body, policy_key, timeout=None) -> Response``:

* :class:`LeanTransport` (default): HTTP/1.1 on ``asyncio.Protocol`` (uvloop
  when installed) with the llhttp parser of ``httptools``.  Connections belong
  to devices, as on real phones: each device keeps its own keep-alive
  connection for ordinary commands and a separate one while a Ping is held.
  The request head is pre-built per device and command; only the policy key
  and Content-Length are spliced in.  One request in flight per connection
  (EAS clients do not pipeline).  A request sent on a connection the server had
  already closed (no response byte received) is re-sent once on a fresh
  connection and counted as a reconnect, not a failure.
* :class:`AiohttpTransport`: one shared aiohttp ClientSession, for comparison
  (``--transport aiohttp``).

Credentials live only in the pre-built Authorization header and never appear
in errors, logs or metrics.
"""

import asyncio
import base64
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

WBXML = "application/vnd.ms-sync.wbxml"
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


class Headers(dict):
    """Response headers with lower-case keys; ``get`` is case-insensitive."""

    __slots__ = ()

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())


_NO_HEADERS = Headers()


@dataclass(slots=True)
class Response:
    status: int  # HTTP status; 0 when no response arrived
    headers: object  # case-insensitive mapping
    body: bytes
    elapsed: float  # seconds
    error: str | None = None  # "timeout" / "connection:..." / "protocol:..." when status is 0


class DeviceEndpoint:
    """The pre-built, per-device part of every request, and the device's connections."""

    __slots__ = ("url_prefix", "headers_no_key", "host", "port", "scheme", "_heads", "_head_prefix",
                 "conn", "ping_conn")

    def __init__(self, base_url, user, password, device_id, device_type, version, user_agent, domain="",
                 bearer=None):
        parts = urlsplit(base_url)
        self.scheme = parts.scheme or "http"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        login = "%s\\%s" % (domain, user) if domain else user
        if bearer:
            authorization = "Bearer " + bearer
        else:
            authorization = "Basic " + base64.b64encode(("%s:%s" % (login, password)).encode("utf-8")).decode("ascii")
        query = "User=%s&DeviceId=%s&DeviceType=%s&Cmd=" % (
            quote(login, safe=""), quote(device_id, safe=""), quote(device_type, safe=""))
        self.url_prefix = "%s?%s" % (base_url, query)
        self.headers_no_key = {
            "Authorization": authorization,
            "MS-ASProtocolVersion": version,
            "Content-Type": WBXML,
            "User-Agent": user_agent,
            "Accept-Language": "en-us",
        }
        host_header = self.host if parts.port is None else "%s:%d" % (self.host, self.port)
        path = parts.path or "/Microsoft-Server-ActiveSync"
        self._head_prefix = "POST %s?%s" % (path, query)
        self._heads = {}
        fixed = "".join("%s: %s\r\n" % kv for kv in self.headers_no_key.items())
        self._heads[None] = (" HTTP/1.1\r\nHost: %s\r\n%s" % (host_header, fixed)).encode("latin-1")
        self.conn = None
        self.ping_conn = None

    def head(self, command, policy_key, length):
        """Request head bytes: pre-built per command, policy key and length spliced in."""
        prebuilt = self._heads.get(command)
        if prebuilt is None:
            prebuilt = self._heads[command] = self._head_prefix.encode("latin-1") + command.encode("ascii") \
                + self._heads[None]
        if policy_key is None:
            return b"%sContent-Length: %d\r\n\r\n" % (prebuilt, length)
        return b"%sX-MS-PolicyKey: %s\r\nContent-Length: %d\r\n\r\n" % (prebuilt, policy_key.encode("latin-1"), length)

    def close(self):
        for conn in (self.conn, self.ping_conn):
            if conn is not None:
                conn.close()
        self.conn = self.ping_conn = None

    def __repr__(self):  # never show the Authorization header
        return "DeviceEndpoint(%s://%s:%d)" % (self.scheme, self.host, self.port)


def make_ssl_context(insecure=False, ca_file=None, client_cert=None, client_key=None):
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key)
    return ctx


# --------------------------------------------------------------------------- lean


class ProtocolError(Exception):
    pass


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request in flight, responses parsed by llhttp."""

    __slots__ = ("transport", "parser", "waiter", "headers", "body", "header_bytes", "body_bytes",
                 "received_any", "closed", "keep_alive", "_name")

    def __init__(self):
        import httptools

        self.transport = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter = None
        self.headers = None
        self.body = None
        self.header_bytes = 0
        self.body_bytes = 0
        self.received_any = False
        self.closed = False
        self.keep_alive = True
        self._name = None

    # asyncio.Protocol

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.received_any = True
        if self.waiter is None:
            # an unsolicited response: the connection cannot be trusted any more
            self._fail(ProtocolError("unsolicited data from the server"))
            return
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # httptools.HttpParserError and callbacks' errors
            self._fail(ProtocolError("malformed response: %s" % type(exc).__name__))

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection closed by the server"))
        self.waiter = None

    # httptools callbacks

    def on_message_begin(self):
        if self.waiter is None:  # a second response to one request
            raise ProtocolError("unsolicited response from the server")
        self.headers = Headers()
        self.body = []
        self.header_bytes = 0
        self.body_bytes = 0

    def on_header(self, name, value):
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise ProtocolError("response headers larger than %d bytes" % MAX_HEADER_BYTES)
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, data):
        self.body_bytes += len(data)
        if self.body_bytes > MAX_BODY_BYTES:
            raise ProtocolError("response body larger than %d bytes" % MAX_BODY_BYTES)
        self.body.append(data)

    def on_message_complete(self):
        waiter = self.waiter
        self.waiter = None
        self.keep_alive = self.parser.should_keep_alive()
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), self.headers, body))
        if not self.keep_alive:
            self.close()

    # use

    def _fail(self, exc):
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self):
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, head, body, loop):
        import httptools

        self.parser = httptools.HttpResponseParser(self)
        self.received_any = False
        self.waiter = loop.create_future()
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)
        return self.waiter


class LeanTransport:
    """Per-device keep-alive connections over asyncio.Protocol + httptools."""

    name = "lean"

    def __init__(self, *, timeout=60.0, insecure=False, ca_file=None, client_cert=None, client_key=None,
                 connect_timeout=15.0):
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._ssl = None
        self._ssl_args = (insecure, ca_file, client_cert, client_key)
        self.reconnects = 0
        self.connections_opened = 0
        self._endpoints = set()

    async def start(self):
        pass

    async def close(self):
        for endpoint in list(self._endpoints):
            endpoint.close()
        self._endpoints.clear()

    async def _connect(self, endpoint, loop):
        ssl_ctx = None
        if endpoint.scheme == "https":
            if self._ssl is None:
                self._ssl = make_ssl_context(*self._ssl_args)
            ssl_ctx = self._ssl
        _transport, conn = await asyncio.wait_for(
            loop.create_connection(_Connection, endpoint.host, endpoint.port, ssl=ssl_ctx,
                                   server_hostname=endpoint.host if ssl_ctx else None),
            self.connect_timeout)
        self.connections_opened += 1
        self._endpoints.add(endpoint)
        return conn

    async def post(self, endpoint, command, body, policy_key, timeout=None):
        loop = asyncio.get_running_loop()
        ping = command == "Ping"
        head = endpoint.head(command, policy_key, len(body))
        t0 = time.perf_counter()
        budget = timeout or self.timeout
        for attempt in (0, 1):
            conn = endpoint.ping_conn if ping else endpoint.conn
            fresh = conn is None or conn.closed
            try:
                if fresh:
                    conn = await self._connect(endpoint, loop)
                    if ping:
                        endpoint.ping_conn = conn
                    else:
                        endpoint.conn = conn
                waiter = conn.send(head, body, loop)
                timer = loop.call_later(max(0.001, budget - (time.perf_counter() - t0)), _expire, waiter)
                try:
                    status, headers, data = await waiter
                finally:
                    timer.cancel()
                return Response(status, headers, data, time.perf_counter() - t0)
            except asyncio.TimeoutError:
                if conn is not None:
                    conn.close()
                return Response(0, _NO_HEADERS, b"", time.perf_counter() - t0, "timeout")
            except ConnectionResetError:
                conn.close()
                if attempt == 0 and not fresh and not conn.received_any:
                    # the server had closed the idle keep-alive connection: send again once
                    self.reconnects += 1
                    continue
                return Response(0, _NO_HEADERS, b"", time.perf_counter() - t0, "connection:reset")
            except ProtocolError as exc:
                conn.close()
                return Response(0, _NO_HEADERS, b"", time.perf_counter() - t0, "protocol:%s" % exc)
            except (OSError, ssl.SSLError) as exc:
                if conn is not None:
                    conn.close()
                return Response(0, _NO_HEADERS, b"", time.perf_counter() - t0, "connection:" + type(exc).__name__)
        raise AssertionError("unreachable")


def _expire(waiter):
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


# --------------------------------------------------------------------------- aiohttp


class AiohttpTransport:
    """One aiohttp ClientSession shared by all devices of a worker (for comparison)."""

    name = "aiohttp"

    def __init__(self, *, timeout=60.0, insecure=False, ca_file=None, client_cert=None, client_key=None, limit=0):
        import aiohttp

        self._aiohttp = aiohttp
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl = make_ssl_context(insecure, ca_file, client_cert, client_key)
        self._limit = limit
        self.session = None
        self.reconnects = 0

    async def start(self):
        aiohttp = self._aiohttp
        connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl, keepalive_timeout=300,
                                         enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(connector=connector, timeout=self.timeout, auto_decompress=True,
                                             skip_auto_headers=("Accept-Encoding",))

    async def close(self):
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def post(self, endpoint, command, body, policy_key, timeout=None):
        aiohttp = self._aiohttp
        headers = endpoint.headers_no_key
        if policy_key is not None:
            headers = dict(headers)
            headers["X-MS-PolicyKey"] = policy_key
        t0 = time.perf_counter()
        try:
            async with self.session.post(endpoint.url_prefix + command, data=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=timeout) if timeout else self.timeout,
                                         allow_redirects=False) as resp:
                data = await resp.read()
                return Response(resp.status, resp.headers, data, time.perf_counter() - t0)
        except asyncio.TimeoutError:
            return Response(0, _NO_HEADERS, b"", time.perf_counter() - t0, "timeout")
        except (aiohttp.ClientError, OSError) as exc:
            # never str(exc) of a request error: it may carry the URL; keep the class name
            return Response(0, _NO_HEADERS, b"", time.perf_counter() - t0, "connection:" + type(exc).__name__)


TRANSPORTS = {"lean": LeanTransport, "aiohttp": AiohttpTransport}


def Transport(kind="lean", **kwargs):  # noqa: N802 -- a factory named like the classes it makes
    try:
        cls = TRANSPORTS[kind]
    except KeyError:
        raise ValueError("unknown transport %r (known: %s)" % (kind, ", ".join(TRANSPORTS))) from None
    return cls(**kwargs)
