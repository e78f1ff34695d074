"""The devices' HTTP transport (EAS over HTTP, MS-ASHTTP).

Two implementations behind one interface, ``await transport.post(endpoint,
command, body, policy_key, timeout=None) -> Response``:

* :class:`LeanTransport` (default): HTTP/1.1 on ``asyncio.Protocol`` (uvloop
  when installed) with the llhttp parser of ``httptools``.  Connections belong
  to devices, as on real phones: each device keeps its own keep-alive
  connection for ordinary commands and a separate one while a Ping is held;
  an ordinary connection left idle longer than ``idle_timeout`` is closed (IIS,
  in front of Exchange, closes idle connections after its ``connectionTimeout``,
  2 minutes by default: learn.microsoft.com/iis/configuration/system.applicationhost/
  sites/sitedefaults/limits), so a device parked in a Ping holds one connection.
  ``pool_size=N`` instead shares N connections per server among all devices,
  for raw request-rate tests.

  The request is one ``bytes`` join of pre-built parts: the device's request
  line prefix and Authorization line (built once per device), a head tail shared
  by every device with the same host, version and user agent, the command, the
  policy key, Content-Length and the body from the codec's templates.  One
  request in flight per connection (EAS clients do not pipeline).  One parser
  per connection; the response body reaches the codec as the parser's own
  ``bytes`` (joined once when it came in several pieces).  Response timeouts are
  kept in a coarse timer wheel (one ``call_at`` per 50 ms slot, a set per slot)
  instead of a timer handle per request: a uvloop ``call_at`` plus ``cancel``
  costs ~3 us, a slot set add/discard ~0.3 us; waits longer than a minute (held
  Pings) share 4 s slots kept as lists (~9 bytes per held Ping instead of a set's
  ~50); idle connections are found by a sweep every ``idle_timeout / 4``.  Requests of one loop turn are written back
  to back (see ``_flush``).

  A request sent on a connection the server had already closed (no response
  byte received) is re-sent once on a fresh connection and counted as a
  reconnect, not a failure; with ``transport.stats`` set (the run's
  :class:`loadgen.results.stats.Stats`), the first attempt is counted there as re-sent
  (``Stats.resend``), so that "sent" covers every request the server may have read.

  ``await transport.park(endpoint, command, body, policy_key, timeout, callback,
  arg)`` sends a request without anything waiting for it: ``callback(arg,
  response)`` is called with the answer (or the timeout, or the error) later.
  A device holding a parked Ping has no task, no coroutine and no future, only
  its connection and a small record of the request (memory per device holding a
  Ping: README.md, "Benchmarks").
* :class:`AiohttpTransport`: one shared aiohttp ClientSession, for comparison
  (``--transport aiohttp``).  A request that met a connection the server had closed
  (aiohttp's ServerDisconnectedError or a reset before any answer) is re-sent once on a
  fresh connection, as by the lean transport.

Memory against a server that answers without end (both transports): a response body may
hold at most ``max_response_bytes`` (default :data:`MAX_BODY_BYTES`, 64 MiB: far above the
largest legitimate EAS answer, e.g. an ItemOperations fetch of an attachment) and all the
response bodies being received in the process together at most one :class:`BodyBudget`
(default :data:`BODY_BUDGET_BYTES`, 256 MiB, shared by every transport of the process unless
``body_budget`` gives another).  A request past either ends with ``error = "too_large"``
(counted by the device as an error outcome), its bytes released at once; a Content-Length
announcing more is refused before any byte of the body is kept.  A response head is bounded
by :data:`MAX_HEADER_BYTES` (64 KiB) of input, checked per received chunk, so a header line
that never ends fails the connection instead of growing inside the parser.  The aiohttp
transport neither asks for nor decodes content codings (EAS bodies are WBXML, MS-ASHTTP
2.2.2.1.2): a gzip body sent unasked stays as it came, so it cannot be inflated.

The request head's parts come prepared (``loadgen/eas/http.py``): user info in a target URL
(``http://u:p@host/``) never goes into a request (the device's own credentials go in its
Authorization header only); a non-ASCII path is percent-encoded as UTF-8 (RFC 3986 2.1, 3.3)
and a non-ASCII host name sent in its IDNA form.

Credentials live only in the pre-built Authorization line and never appear
in errors, logs or metrics.
"""

import asyncio
import ssl
import warnings
from collections import deque
from dataclasses import dataclass
from time import perf_counter

import httptools

MAX_HEADER_BYTES = 64 * 1024  # a response head (status line and headers), bytes of input
MAX_BODY_BYTES = 64 * 1024 * 1024  # one response body, default per-response limit
BODY_BUDGET_BYTES = 256 * 1024 * 1024  # all response bodies being received by the process, default
IDLE_TIMEOUT = 110.0  # s: below IIS's default connectionTimeout (120 s), so the client closes first
_SLOTS_PER_SECOND = 20  # timer wheel resolution: 50 ms
_COARSE = 80  # slots (4 s) shared by deadlines more than a minute away
_SPLICE_LIMIT = 64 * 1024  # bodies up to this size go out in the same bytes as the head (one write)


class BodyBudget:
    """The bytes of response bodies being received, shared by every connection that uses it.

    ``held`` is what the connections hold now (bodies still coming in); a connection whose body
    would take it past ``limit`` ends its request ``too_large`` and gives its bytes back."""

    __slots__ = ("limit", "held")

    def __init__(self, limit=BODY_BUDGET_BYTES):
        self.limit = limit
        self.held = 0


PROCESS_BUDGET = BodyBudget()  # the default: one budget for all the transports of a process


def _budget(body_budget):
    if body_budget is None:
        return PROCESS_BUDGET
    if isinstance(body_budget, BodyBudget):
        return body_budget
    return BodyBudget(int(body_budget))


class TooLarge(Exception):
    """A response past the per-response limit or the process budget (error "too_large")."""


class EncryptedKeyError(ValueError):
    """A client key that needs a passphrase (never asked for on a terminal)."""


class InsecureTLSWarning(UserWarning):
    """TLS certificate verification was switched off (``insecure = true``)."""


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


_COMMANDS = {}  # command -> its bytes
_TAIL_HEADERS = {}  # shared tail -> its headers as a dict (aiohttp, Autodiscover)


_WBXML_TYPE = b"Content-Type: application/vnd.ms-sync.wbxml\r\n"  # in the shared head (eas/http.py head_tail)


class DeviceEndpoint:
    """The pre-built, per-device part of every request, and the device's connections.

    ``head``: the device's request parts (``loadgen/eas/http.py`` ``request_head``: the rules of
    the MS-ASHTTP request head live there): per device the request line up to ``Cmd=`` and the
    Authorization line; the rest of the head is shared with every device of the same server,
    version and user agent."""

    __slots__ = ("scheme", "host", "port", "_prefix", "_tail", "_auth", "_base", "conn", "ping_conn", "listed_by",
                 "tls_session")
    # _base: the URL without user info, as requests name it (aiohttp, Autodiscover); tls_session: the one
    # TLS session the device keeps to resume while it has no connection (loadgen/wire/tlsconn.py)

    def __init__(self, head):
        self.scheme, self.host, self.port, self._base, self._prefix, self._tail, self._auth = head
        self.conn = None
        self.ping_conn = None
        self.listed_by = None  # the LeanTransport whose idle sweep lists this endpoint
        self.tls_session = None

    def request(self, command, policy_key, body):
        """The request bytes: pre-built parts joined once, with the body when it is small."""
        cmd = _COMMANDS.get(command)
        if cmd is None:
            cmd = _COMMANDS[command] = command.encode("ascii")
        tail = body if len(body) <= _SPLICE_LIMIT else b""
        if policy_key is None:
            return b"".join((self._prefix, cmd, self._tail, self._auth, b"Content-Length: ",
                             b"%d" % len(body), b"\r\n\r\n", tail))
        return b"".join((self._prefix, cmd, self._tail, self._auth, b"X-MS-PolicyKey: ",
                         policy_key.encode("latin-1"), b"\r\nContent-Length: ", b"%d" % len(body), b"\r\n\r\n",
                         tail))

    def request_as(self, command, policy_key, body, extra):
        """The request bytes of a body that is not WBXML: ``extra`` = (query parameters to append after
        ``Cmd=<command>``, Content-Type), e.g. a 12.x SendMail's raw MIME (MS-ASHTTP 2.2.1.1.1.1:
        ``&SaveInSent=T``, Content-Type message/rfc822).  Not cached: such requests are rare."""
        query, content_type = extra
        tail = self._tail.replace(_WBXML_TYPE, b"Content-Type: %s\r\n" % content_type.encode("latin-1"))
        key = b"" if policy_key is None else b"X-MS-PolicyKey: %s\r\n" % policy_key.encode("latin-1")
        return b"".join((self._prefix, (command + query).encode("ascii"), tail, self._auth, key, b"Content-Length: ",
                         b"%d" % len(body), b"\r\n\r\n", body if len(body) <= _SPLICE_LIMIT else b""))

    def head(self, command, policy_key, length):
        """The request head alone (for tests and tools)."""
        return self.request(command, policy_key, b"\0" * length)[:-length or None]

    # for aiohttp, Autodiscover and tools: the same request in parts, built on demand

    @property
    def url_prefix(self):
        return self._base + "?" + self._prefix.decode("latin-1").split("?", 1)[1]

    @property
    def headers_no_key(self):
        """The request headers but Host, Content-Length and the policy key: a new dict."""
        shared = _TAIL_HEADERS.get(self._tail)
        if shared is None:
            shared = _TAIL_HEADERS[self._tail] = dict(
                line.split(": ", 1) for line in self._tail.decode("latin-1").split("\r\n")[2:] if line)
        headers = {"Authorization": self._auth[15:-2].decode("latin-1")}
        headers.update(shared)
        return headers

    def close(self):
        for conn in (self.conn, self.ping_conn):
            if conn is not None:
                conn.close()
        self.conn = self.ping_conn = None

    def __repr__(self):  # never show the Authorization header
        return "DeviceEndpoint(%s://%s:%d)" % (self.scheme, self.host, self.port)


class _PassphraseWanted(Exception):
    pass


def _no_passphrase():
    """OpenSSL's password callback: a load generator never prompts on the terminal (it would block
    the event loop, and a run without a terminal would fail later as if the server never answered)."""
    raise _PassphraseWanted()


def make_ssl_context(insecure=False, ca_file=None, client_cert=None, client_key=None):
    """Verified TLS by default (system store, or ``ca_file``); ``insecure`` turns verification
    off and says so with an :class:`InsecureTLSWarning`.  A client key encrypted with a passphrase
    raises :class:`EncryptedKeyError` (a ValueError, one line) instead of OpenSSL's prompt."""
    if insecure:
        warnings.warn("TLS certificate verification is disabled (insecure = true)", InsecureTLSWarning,
                      stacklevel=2)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    if client_cert:
        try:
            ctx.load_cert_chain(client_cert, client_key, password=_no_passphrase)
        except _PassphraseWanted:
            raise EncryptedKeyError(
                "client_key %s is encrypted with a passphrase; easload cannot ask for one: give it a key "
                "without a passphrase (e.g. openssl pkey -in KEY -out PLAIN_KEY)" % (client_key or client_cert)) from None
    return ctx


# --------------------------------------------------------------------------- lean


class ProtocolError(Exception):
    pass


def _failed(exc, t0):
    """The Response of a request that got no answer (credential-free error names)."""
    if isinstance(exc, TimeoutError):
        error = "timeout"
    elif type(exc) is TooLarge:
        error = "too_large"
    elif isinstance(exc, ConnectionResetError):
        error = "connection:reset"
    elif isinstance(exc, ProtocolError):
        error = "protocol:%s" % exc
    else:
        error = "connection:" + _error_name(exc)
    return Response(0, _NO_HEADERS, b"", perf_counter() - t0, error)


class _Parked:
    """The waiter of a parked request (:meth:`LeanTransport.park`): the connection settles it as it
    settles a coroutine's future; the transport then calls the request's callback.  It keeps what a
    re-send on a fresh connection needs, and nothing else (~140 bytes with its float; the deadline
    is the connection's timer wheel slot)."""

    __slots__ = ("transport", "conn", "endpoint", "command", "body", "policy_key", "t0", "fresh", "callback", "arg")

    def __init__(self, transport, conn, endpoint, command, body, policy_key, t0, fresh, callback, arg):
        self.transport = transport
        self.conn = conn
        self.endpoint = endpoint
        self.command = command
        self.body = body
        self.policy_key = policy_key
        self.t0 = t0
        self.fresh = fresh
        self.callback = callback
        self.arg = arg

    def done(self):
        return False  # a connection clears its waiter before settling it: settled at most once

    def set_result(self, result):
        self.transport._parked_done(self, result, None)

    def set_exception(self, exc):
        self.transport._parked_done(self, None, exc)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request in flight, responses parsed by llhttp."""

    __slots__ = ("transport", "parser", "waiter", "headers", "body", "size", "received_any", "closed",
                 "keep_alive", "slot", "until_eof", "lazy", "used", "head", "budget", "limit")
    # no on_message_begin: httptools keeps a bound method per callback and connection (~70 bytes)

    def __init__(self):
        self.transport = None
        self.parser = None
        self.waiter = None
        self.headers = None
        self.body = None
        self.size = 0
        self.received_any = False
        self.closed = False
        self.keep_alive = True
        self.slot = None  # the timer wheel slot (_Slot / _LongSlot) this connection is in
        self.until_eof = False
        # the parser (~800 bytes with its bound callbacks) exists while a response comes in; a
        # "lazy" connection (a Ping's) drops it after each response: a held Ping has none
        self.lazy = False
        self.used = 0.0  # loop time its last response ended (the idle sweep reads it)
        self.head = 0  # bytes received while the response head is still coming; -1 in its body
        self.budget = PROCESS_BUDGET  # the transport's BodyBudget and per-response limit (_connect sets them)
        self.limit = MAX_BODY_BYTES

    # asyncio.Protocol

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self.waiter is None:
            # an unsolicited response: the connection cannot be trusted any more
            self._fail(ProtocolError("unsolicited data from the server"))
            return
        self.received_any = True
        parser = self.parser
        if parser is None:
            parser = self.parser = httptools.HttpResponseParser(self)
        if self.head >= 0:
            self.head += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(cause if isinstance(cause, (ProtocolError, TooLarge)) else ProtocolError("malformed response"))
            return
        except Exception as exc:  # httptools.HttpParserError and the like
            self._fail(ProtocolError("malformed response: %s" % type(exc).__name__))
            return
        if self.head > MAX_HEADER_BYTES and self.waiter is not None:
            # a head still incomplete after this much input (a header line that never ends): the
            # parser would keep buffering it; checked per chunk, not per header
            self._fail(ProtocolError("response head larger than %d bytes" % MAX_HEADER_BYTES))

    def eof_received(self):
        if self.until_eof and self.waiter is not None:
            # a body delimited by the end of the connection (RFC 9112 6.3, item 8)
            self._complete(False)
        return False

    def _give_back(self):
        """A body that was coming in: its bytes go back to the budget."""
        if self.head < 0:
            self.budget.held -= self.size
            self.size = 0
            self.body = None
            self.head = 0

    def connection_lost(self, exc):
        self.closed = True
        self.transport = None
        self.parser = None
        self._give_back()
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection closed by the server"))

    # httptools callbacks

    def on_header(self, name, value):
        headers = self.headers
        if headers is None:
            if self.waiter is None:  # a second response to one request
                raise ProtocolError("unsolicited response from the server")
            headers = self.headers = Headers()
        self.size += len(name) + len(value)
        if self.size > MAX_HEADER_BYTES:
            raise ProtocolError("response headers larger than %d bytes" % MAX_HEADER_BYTES)
        headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self):
        if self.waiter is None:  # a second response to one request
            raise ProtocolError("unsolicited response from the server")
        self.size = 0
        self.head = -1
        headers = self.headers
        if headers is None:
            headers = self.headers = Headers()
        self.until_eof = "content-length" not in headers and "transfer-encoding" not in headers
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            raise TooLarge()  # refused before any byte of the body is kept

    def on_body(self, data):
        n = len(data)
        self.size += n
        budget = self.budget
        budget.held += n
        if self.size > self.limit or budget.held > budget.limit:
            raise TooLarge()
        body = self.body
        if body is None:
            self.body = data
        elif type(body) is list:
            body.append(data)
        else:
            self.body = [body, data]

    def on_message_complete(self):
        self._complete(self.parser.should_keep_alive())

    def _complete(self, keep_alive):
        waiter = self.waiter
        self.waiter = None
        body = self.body
        if body is None:
            body = b""
        elif type(body) is list:
            body = b"".join(body)
        self.keep_alive = keep_alive
        self.budget.held -= self.size  # the body is the device's now (self.size: its bytes)
        self.size = 0
        self.head = 0
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), self.headers, body))
        self.headers = self.body = None
        self.until_eof = False
        if self.lazy:
            self.parser = None
        if not keep_alive:
            self.close()

    # use

    def _fail(self, exc):
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def expire(self):
        """The timer wheel's verdict: a request past its deadline, or an idle connection."""
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())
        self.close()

    def close(self):
        self.closed = True
        self._give_back()
        if self.transport is not None:
            self.transport.close()


class _Slot(set):
    """A timer wheel slot of 50 ms: the connections whose deadline falls in it."""

    __slots__ = ("no",)


class _LongSlot(list):
    """A 4 s slot for long waits (held Pings): a list, ~9 bytes per connection where a set takes
    ~50.  A connection that leaves it early stays listed until the slot fires (its ``slot`` no
    longer names this one); ``live`` counts the connections that are really in it."""

    __slots__ = ("no", "live")


class _Pool:
    __slots__ = ("idle", "count", "waiters")

    def __init__(self):
        self.idle = []  # open, idle connections (LIFO: the warmest first)
        self.count = 0  # connections open or opening
        self.waiters = deque()  # futures of requests waiting for a connection


class LeanTransport:
    """HTTP/1.1 over asyncio.Protocol + httptools; per-device connections, or a shared pool."""

    name = "lean"

    def __init__(self, *, timeout=60.0, insecure=False, ca_file=None, client_cert=None, client_key=None,
                 connect_timeout=15.0, idle_timeout=None, pool_size=0, max_response_bytes=MAX_BODY_BYTES,
                 body_budget=None, tls_resumption=True):
        from loadgen.wire.tlsconn import TLSConnection, resumable

        self._tls_connection = TLSConnection  # TLS over memory BIOs in the connection itself (tlsconn.py)
        self._resumable = resumable
        # a device reconnecting offers its last TLS session (RFC 8446 2.2, RFC 5077); not in pooled mode,
        # where connections belong to no device
        self.tls_resumption = bool(tls_resumption) and not pool_size
        self.handshakes = {"full": 0, "resumed": 0, "failed": 0}  # TLS handshakes of this transport
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes  # one response body (module docstring: memory)
        self.budget = _budget(body_budget)  # all bodies coming in: the process's BodyBudget by default
        # the run's Stats (the engine sets it): re-sent requests and requests that never left the
        # pool's queue are counted there
        self.stats = None
        self.connect_timeout = connect_timeout
        self.idle_timeout = IDLE_TIMEOUT if idle_timeout is None else idle_timeout  # 0: never
        self.pool_size = pool_size  # 0: connections belong to devices
        self._ssl = None
        self._ssl_args = (insecure, ca_file, client_cert, client_key)
        if insecure or client_cert:
            # now, not at the first https request: the warning, and a client key that cannot be
            # loaded (EncryptedKeyError, a ValueError) before any load
            self._ssl = make_ssl_context(*self._ssl_args)
        self.reconnects = 0  # requests re-sent once on a fresh connection
        self.connections_opened = 0
        self.idle_closed = 0  # idle keep-alive connections this client closed
        # endpoints that may have an open connection (the idle sweep's list; a list, ~9 bytes per
        # device where a set of 10,000 takes ~100)
        self._endpoints = []
        self._sweeper = None
        self._pools = {}
        self._wheel = {}  # slot number (negative: a long slot) -> the connections whose deadline falls in it
        self._out = []  # connection, request bytes, ... written together at the next loop turn
        self._loop = None
        self.parked = 0  # parked requests whose callback is still to come (park)
        self._reparking = {}  # task re-sending a parked request on a fresh connection -> the request
        self._closed = False

    async def start(self):
        pass

    @property
    def can_park(self):
        """Whether :meth:`park` may be used: connections belong to devices (not pooled)."""
        return not self.pool_size

    async def close(self):
        """Close every connection; requests still parked are dropped without their callback."""
        self._closed = True
        for endpoint in self._endpoints:
            self._detach(endpoint)
            endpoint.close()
            endpoint.listed_by = None
        self._endpoints = []
        for task in list(self._reparking):
            task.cancel()
        self._reparking.clear()
        self.parked = 0
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for pool in self._pools.values():
            for conn in pool.idle:
                conn.close()
            for waiter in pool.waiters:
                if not waiter.done():
                    waiter.cancel()
        self._pools.clear()
        self._wheel.clear()

    # timer wheel

    def _arm(self, conn, when, delay):
        slot_no = int(when * _SLOTS_PER_SECOND) + 1
        wheel = self._wheel
        if delay > 60.0:
            # long waits (held Pings, idle connections) share 4 s slots, lists keyed by the negative
            # slot number: a Ping's deadline (heartbeat + timeout) does not need 50 ms precision
            slot_no = (slot_no // _COARSE + 1) * _COARSE
            slot = wheel.get(-slot_no)
            if slot is None:
                slot = self._new_slot(-slot_no, _LongSlot())
                slot.live = 0
            slot.append(conn)
            slot.live += 1
        else:
            slot = wheel.get(slot_no)
            if slot is None:
                slot = self._new_slot(slot_no, _Slot())
            slot.add(conn)
        conn.slot = slot

    def _new_slot(self, key, slot):
        wheel = self._wheel
        if key not in wheel:  # (None: emptied, but its call_at is still pending)
            self._loop.call_at(abs(key) / _SLOTS_PER_SECOND, self._fire, key)
        slot.no = abs(key)
        wheel[key] = slot
        return slot

    def _disarm(self, conn):
        slot = conn.slot
        if slot is None:
            return
        conn.slot = None
        if type(slot) is _Slot:
            slot.discard(conn)
            n = len(slot)
            # sets never shrink: an empty one is dropped (None until its call_at fires), one shrunk
            # to 8 or 64 members is copied
            if not n:
                self._wheel[slot.no] = None
            elif n == 8 or n == 64:
                copy = self._wheel[slot.no] = _Slot(slot)
                copy.no = slot.no
                for member in copy:
                    member.slot = copy
        else:
            # a long slot keeps the entry (its ``slot`` no longer names this one) until it fires;
            # compacted when stale entries are the majority, so it stays under twice its members
            slot.live -= 1
            if not slot.live:
                self._wheel[-slot.no] = None
            elif len(slot) >= 64 and slot.live * 2 < len(slot):
                seen = set()
                keep = []
                for member in slot:
                    if member.slot is slot and member not in seen:
                        seen.add(member)
                        keep.append(member)
                slot[:] = keep

    def _fire(self, key):
        slot = self._wheel.pop(key, None)
        if not slot:
            return
        if type(slot) is _Slot:
            for conn in slot:
                conn.slot = None
                conn.expire()
        else:
            for conn in slot:
                if conn.slot is slot:  # not an entry left by a connection that moved on
                    conn.slot = None
                    conn.expire()

    def _flush(self):
        """Write the requests of this loop turn back to back.

        On loopback most of a request's cost is the kernel waking the server; requests
        written together wake it once per batch instead of once per request (measured
        here: 20-28 us per write interleaved with device logic, 11-14 us batched)."""
        out = self._out
        self._out = []
        for i in range(0, len(out), 2):
            conn = out[i]
            if conn.waiter is not None and conn.transport is not None:
                conn.transport.write(out[i + 1])

    # connections

    async def _connect(self, endpoint, loop):
        if endpoint.scheme == "https":
            conn = await self._connect_tls(endpoint, loop)
        else:
            async with asyncio.timeout(self.connect_timeout):
                _transport, conn = await loop.create_connection(_Connection, endpoint.host, endpoint.port)
        self.connections_opened += 1
        conn.budget = self.budget
        conn.limit = self.max_response_bytes
        return conn

    async def _connect_tls(self, endpoint, loop):
        """A connection whose TLS handshake is done (loadgen/wire/tlsconn.py), counted full or resumed
        (``handshakes``, and ``stats.tls_handshake`` with its duration), or the handshake's error
        (counted failed) -- the ssl module's, as the loop's TLS would raise it."""
        if self._ssl is None:
            self._ssl = make_ssl_context(*self._ssl_args)
        ctx = self._ssl
        keep = endpoint if self.tls_resumption else None
        session = self._tls_session(endpoint) if keep is not None else None
        done = loop.create_future()
        host = endpoint.host  # SNI and the name checked against the certificate: the URL's host name
        conn = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                _transport, conn = await loop.create_connection(
                    lambda: self._tls_connection(ctx, host, session, done, keep), host, endpoint.port)
                seconds, resumed = await done
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._count_handshake("failed", 0.0)
            if conn is not None:
                conn.close()
            raise exc from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self._count_handshake("resumed" if resumed else "full", seconds)
        return conn

    def _tls_session(self, endpoint):
        """The session a new connection of ``endpoint``'s device offers: the one it kept (taken: a
        ticket is offered once, RFC 8446 C.4), else the current one of its other open connection."""
        session = endpoint.tls_session
        if session is not None:
            endpoint.tls_session = None
            return session
        for other in (endpoint.conn, endpoint.ping_conn):
            if type(other) is self._tls_connection and other.tls is not None and other.handshake is None:
                return self._resumable(other.tls)
        return None

    def _count_handshake(self, result, seconds):
        self.handshakes[result] += 1
        stats = self.stats
        if stats is not None and hasattr(stats, "tls_handshake"):
            stats.tls_handshake(result, seconds)

    async def _acquire(self, endpoint, ping, loop):
        """(connection, fresh): the device's own connection, or one from the pool."""
        if not self.pool_size:
            conn = endpoint.ping_conn if ping else endpoint.conn
            if conn is not None and not conn.closed:
                return conn, False
            conn = await self._connect(endpoint, loop)
            if ping:
                conn.lazy = True
                endpoint.ping_conn = conn
            else:
                endpoint.conn = conn
            if endpoint.listed_by is not self:
                endpoint.listed_by = self
                self._endpoints.append(endpoint)
            return conn, True
        conn, fresh, _waited = await self._acquire_pooled(endpoint, loop)
        return conn, fresh

    async def _acquire_pooled(self, endpoint, loop):
        """(connection, fresh, seconds queued): a connection of the shared pool, waiting in its
        queue while all ``pool_size`` are busy."""
        key = (endpoint.scheme, endpoint.host, endpoint.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool()
        idle = pool.idle
        waited = 0.0
        while True:
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    return conn, False, waited
                pool.count -= 1
            if pool.count < self.pool_size:
                break
            waiter = loop.create_future()
            pool.waiters.append(waiter)
            queued = perf_counter()
            try:
                conn = await waiter
            except BaseException:
                # cancelled in the queue: a connection (or a free slot, None) handed over meanwhile
                # goes to the next request waiting
                if waiter.done() and not waiter.cancelled():
                    if waiter.result() is not None:
                        self._release(endpoint, waiter.result())
                    else:
                        self._wake(pool, None)
                raise
            waited += perf_counter() - queued
            if conn is not None and not conn.closed:
                return conn, False, waited
            if conn is not None:
                pool.count -= 1
        pool.count += 1
        try:
            return await self._connect(endpoint, loop), True, waited
        except BaseException:
            pool.count -= 1
            self._wake(pool, None)
            raise

    def _sweep(self):
        """Close keep-alive connections idle longer than ``idle_timeout``; runs every idle_timeout / 4
        while there are connections (one scan instead of a timer per request)."""
        self._sweeper = None
        limit = self._loop.time() - self.idle_timeout
        kept = []
        for endpoint in self._endpoints:
            alive = False
            conn = endpoint.conn
            if conn is not None:
                if not conn.closed and conn.waiter is None and conn.used < limit:
                    conn.close()
                    self.idle_closed += 1
                if conn.closed:
                    endpoint.conn = None  # a closed connection is not kept (~140 bytes per device)
                else:
                    alive = True
            conn = endpoint.ping_conn
            if conn is not None:
                if not conn.closed and conn.waiter is None and conn.used < limit:
                    conn.close()
                    self.idle_closed += 1
                if conn.closed:
                    endpoint.ping_conn = None
                else:
                    alive = True
            if alive:
                kept.append(endpoint)
            else:
                endpoint.listed_by = None
        self._endpoints = kept
        pooled = False
        for pool in self._pools.values():
            keep = []
            for conn in pool.idle:
                if not conn.closed and conn.used < limit:
                    conn.close()
                    self.idle_closed += 1
                if conn.closed:
                    pool.count -= 1
                else:
                    keep.append(conn)
            pool.idle[:] = keep
            pooled = pooled or pool.count > 0
        if self._endpoints or pooled:
            self._sweeper = self._loop.call_later(self.idle_timeout / 4, self._sweep)

    def _release(self, endpoint, conn):
        """A pooled connection after its request: to a waiting request, or back to the pool."""
        pool = self._pools.get((endpoint.scheme, endpoint.host, endpoint.port))
        if pool is None:  # the transport was closed meanwhile
            conn.close()
            return
        if conn.closed:
            pool.count -= 1
            self._wake(pool, None)
        elif not self._wake(pool, conn):
            pool.idle.append(conn)

    @staticmethod
    def _wake(pool, conn):
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    async def post(self, endpoint, command, body, policy_key, timeout=None, extra=None):
        """Send a request and wait for its answer (a :class:`Response`, never an exception for the
        network's failures); ``extra``: (query, Content-Type) of a body that is not WBXML
        (:meth:`DeviceEndpoint.request_as`)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        t0 = perf_counter()
        budget = timeout or self.timeout
        deadline = loop.time() + budget
        ping = command == "Ping"
        written = False
        for attempt in (0, 1):
            conn = None
            fresh = True
            try:
                if self.pool_size:
                    # latency and timeout count from the write, not from the pool's queue
                    conn, fresh, waited = await self._acquire_pooled(endpoint, loop)
                    if waited:
                        t0 += waited
                        deadline += waited
                else:
                    conn, fresh = await self._acquire(endpoint, ping, loop)
                waiter = loop.create_future()
                # the request bytes are built in _send, not kept in this frame while the response is
                # awaited (a held Ping would keep them for its whole heartbeat): a re-send builds them again
                self._send(conn, endpoint, command, body, policy_key, loop, waiter, deadline, budget, extra)
                written = True
                status, headers, rbody = await waiter
                elapsed = perf_counter() - t0
                self._disarm(conn)
                conn.used = loop.time()
                if self.pool_size:
                    self._release(endpoint, conn)
                if self._sweeper is None and self.idle_timeout:
                    self._sweeper = loop.call_later(self.idle_timeout / 4, self._sweep)
                return Response(status, headers, rbody, elapsed)
            except ConnectionResetError:
                self._drop(endpoint, conn)
                if attempt == 0 and not fresh and not conn.received_any:
                    # the server had closed the idle keep-alive connection: send again once (the
                    # first attempt is counted as re-sent: the server may have read it)
                    self.reconnects += 1
                    if self.stats is not None:
                        self.stats.resend(command)
                    continue
                return _failed(ConnectionResetError(), t0)
            except (TimeoutError, ProtocolError, TooLarge, OSError, ssl.SSLError) as exc:
                self._drop(endpoint, conn)
                return _failed(exc, t0)
            except BaseException:  # cancelled: the connection has a request in flight, it cannot be reused
                self._drop(endpoint, conn)
                if not written and self.stats is not None:
                    # cancelled before it was written (in the pool's queue, or connecting): it never left
                    self.stats.unsent(command)
                raise
        raise AssertionError("unreachable")

    # parked requests: nothing waits for the answer, the transport calls back

    async def park(self, endpoint, command, body, policy_key, callback, arg, timeout=None):
        """Send a request and return at once, without waiting for its answer.

        Returns None when the request is on its way: ``callback(arg, response)`` is called
        later, once, from the event loop, with the :class:`Response` :meth:`post` would have
        returned (the answer, the timeout or the error; a request sent on a connection the
        server had already closed is re-sent once on a fresh one, as by ``post``), unless
        :meth:`disconnect` or :meth:`close` drops the request first.  Returns the Response at
        once when no connection could be made (nothing was sent).  Not in pooled mode
        (:attr:`can_park`).  What is kept meanwhile is the connection and one small record:
        a device holding a parked Ping costs no task, coroutine or future."""
        if self.pool_size:
            raise RuntimeError("park() needs connections that belong to devices (pool_size = 0)")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        t0 = perf_counter()
        budget = timeout or self.timeout
        deadline = loop.time() + budget
        try:
            conn, fresh = await self._acquire(endpoint, command == "Ping", loop)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            return _failed(exc, t0)
        except BaseException:
            if self.stats is not None:  # cancelled while connecting: it never left
                self.stats.unsent(command)
            raise
        self._send(conn, endpoint, command, body, policy_key, loop,
                   _Parked(self, conn, endpoint, command, body, policy_key, t0, fresh, callback, arg),
                   deadline, budget)
        self.parked += 1
        return None

    def _send(self, conn, endpoint, command, body, policy_key, loop, waiter, deadline, budget, extra=None):
        conn.waiter = waiter
        conn.received_any = False
        self._arm(conn, deadline, budget)
        if extra is not None:
            head = endpoint.request_as(command, policy_key, body, extra)
            if len(body) <= _SPLICE_LIMIT:
                conn.transport.write(head)
            else:
                conn.transport.writelines((head, body))
        elif len(body) <= _SPLICE_LIMIT:
            out = self._out
            if not out:
                loop.call_soon(self._flush)
            out.append(conn)
            out.append(endpoint.request(command, policy_key, body))
        else:
            conn.transport.writelines((endpoint.request(command, policy_key, body), body))

    def _parked_done(self, parked, result, exc):
        """A parked request is settled by its connection (answer, error, or the wheel's timeout)."""
        conn = parked.conn
        parked.conn = None
        if exc is None:
            status, headers, rbody = result
            resp = Response(status, headers, rbody, perf_counter() - parked.t0)
            self._disarm(conn)
            conn.used = self._loop.time()
            if self._sweeper is None and self.idle_timeout:
                self._sweeper = self._loop.call_later(self.idle_timeout / 4, self._sweep)
        else:
            slot = conn.slot  # its deadline, to the wheel's precision
            deadline = slot.no / _SLOTS_PER_SECOND if slot is not None else self._loop.time()
            self._drop(parked.endpoint, conn)
            if type(exc) is ConnectionResetError and not parked.fresh and not conn.received_any \
                    and not self._closed:
                # the server had closed the idle keep-alive connection: send again once, on a fresh one
                self.reconnects += 1
                if self.stats is not None:
                    self.stats.resend(parked.command)
                task = self._loop.create_task(self._repark(parked, deadline))
                self._reparking[task] = parked
                task.add_done_callback(self._reparked)
                return
            resp = _failed(exc, parked.t0)
        self.parked -= 1
        # from the loop, not from inside the parser's callback that settled the request
        self._loop.call_soon(self._deliver, parked, resp)

    def _reparked(self, task):
        self._reparking.pop(task, None)

    def _deliver(self, parked, resp):
        if not self._closed:
            parked.callback(parked.arg, resp)

    async def _repark(self, parked, deadline):
        loop = self._loop
        try:
            conn, fresh = await self._acquire(parked.endpoint, parked.command == "Ping", loop)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            self.parked -= 1
            self._deliver(parked, _failed(exc, parked.t0))
            return
        parked.conn = conn
        parked.fresh = True
        self._send(conn, parked.endpoint, parked.command, parked.body, parked.policy_key, loop, parked,
                   deadline, deadline - loop.time())

    def disconnect(self, endpoint):
        """Close ``endpoint``'s connections (a phone going offline); a request parked on them is
        dropped without its callback."""
        self._detach(endpoint)
        endpoint.close()

    def stop_ping(self, endpoint):
        """Stop ``endpoint``'s held Ping (its user acts): a request parked on the Ping connection is
        dropped without its callback, and that connection closed (a request is in flight on it: it
        cannot carry another); the device's other connection stays open for the work it is stopped for."""
        conn = endpoint.ping_conn
        endpoint.ping_conn = None
        if conn is not None:
            if type(conn.waiter) is _Parked:
                conn.waiter.conn = None
                self.parked -= 1
            self._drop(endpoint, conn)
        for task, parked in list(self._reparking.items()):
            if parked.endpoint is endpoint and parked.command == "Ping":
                del self._reparking[task]
                task.cancel()
                self.parked -= 1

    def _detach(self, endpoint):
        for conn in (endpoint.conn, endpoint.ping_conn):
            if conn is not None and type(conn.waiter) is _Parked:
                conn.waiter.conn = None
                conn.waiter = None
                self._disarm(conn)
                self.parked -= 1
        for task, parked in list(self._reparking.items()):
            if parked.endpoint is endpoint:
                del self._reparking[task]
                task.cancel()
                self.parked -= 1

    def _drop(self, endpoint, conn):
        if conn is None:
            return
        self._disarm(conn)
        conn.waiter = None
        conn.close()
        if self.pool_size:
            self._release(endpoint, conn)


def _aiohttp_error_name(aiohttp, exc):
    """aiohttp's connection error named as the lean transport names it: the ssl module's error
    (with the verification reason) for a TLS failure, else the class name."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _error_name(exc.certificate_error)
    if isinstance(exc, aiohttp.ClientSSLError):
        cause = getattr(exc, "os_error", None) or exc.__cause__
        if isinstance(cause, ssl.SSLError):
            return _error_name(cause)
    return type(exc).__name__


def _error_name(exc):
    """A short, credential-free name for a connection error (TLS verification failures spelled out)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "SSLCertVerificationError(%s)" % (exc.verify_message or "certificate verify failed")
    return type(exc).__name__


# --------------------------------------------------------------------------- aiohttp


class AiohttpTransport:
    """One aiohttp ClientSession shared by all devices of a worker (for comparison).

    Bounded as the lean transport (module docstring: memory): ``max_response_bytes`` per response,
    the process's :class:`BodyBudget` (or ``body_budget``) for all of them; no content coding is
    asked for or decoded.  A request that met a connection the server had closed before any answer
    is re-sent once on a fresh connection (a connector that does not keep connections), counted
    in ``reconnects`` and, with ``stats`` set, as re-sent."""

    name = "aiohttp"

    def __init__(self, *, timeout=60.0, insecure=False, ca_file=None, client_cert=None, client_key=None, limit=0,
                 max_response_bytes=MAX_BODY_BYTES, body_budget=None, **_ignored):
        import aiohttp
        import yarl

        self._aiohttp = aiohttp
        self._URL = yarl.URL
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl = make_ssl_context(insecure, ca_file, client_cert, client_key)
        self._limit = limit
        self.max_response_bytes = max_response_bytes
        self.budget = _budget(body_budget)
        self.session = None
        self._fresh = None  # the session for re-sends: a fresh connection each time
        self.reconnects = 0
        self.stats = None  # the run's Stats (the engine sets it): re-sent requests are counted there

    def _session(self, force_close):
        aiohttp = self._aiohttp
        if force_close:
            connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl, force_close=True)
        else:
            connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl, keepalive_timeout=300)
        # auto_decompress off and no Accept-Encoding: EAS bodies are WBXML (MS-ASHTTP 2.2.2.1.2); a
        # compressed body sent unasked is kept as it came (then undecodable), never inflated
        return aiohttp.ClientSession(connector=connector, timeout=self.timeout, auto_decompress=False,
                                     skip_auto_headers=("Accept-Encoding",))

    async def start(self):
        self.session = self._session(False)

    async def close(self):
        for session in (self.session, self._fresh):
            if session is not None:
                await session.close()
        self.session = self._fresh = None

    can_park = False

    def disconnect(self, endpoint):
        endpoint.close()

    async def post(self, endpoint, command, body, policy_key, timeout=None, extra=None):
        aiohttp = self._aiohttp
        headers = endpoint.headers_no_key
        if policy_key is not None:
            headers["X-MS-PolicyKey"] = policy_key
        query = ""
        if extra is not None:  # a body that is not WBXML (DeviceEndpoint.request_as)
            query, headers["Content-Type"] = extra
        # the request target as the lean transport writes it (percent-encoded once, no user info)
        url = self._URL(endpoint.url_prefix + command + query, encoded=True)
        t0 = perf_counter()
        client_timeout = aiohttp.ClientTimeout(total=timeout) if timeout else self.timeout
        session = self.session
        answered = False
        for attempt in (0, 1):
            try:
                async with session.post(url, data=body, headers=headers, timeout=client_timeout,
                                        allow_redirects=False) as resp:
                    answered = True
                    data = await self._read(resp)
                    if data is None:
                        resp.close()  # the rest is not read: the connection is not reused
                        return Response(0, _NO_HEADERS, b"", perf_counter() - t0, "too_large")
                    return Response(resp.status, resp.headers, data, perf_counter() - t0)
            except asyncio.TimeoutError:
                return Response(0, _NO_HEADERS, b"", perf_counter() - t0, "timeout")
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if attempt == 0 and not answered and not isinstance(exc, aiohttp.ClientConnectorError) \
                        and self.session is not None:
                    # closed by the server before any answer (a kept-alive connection it had
                    # already closed): send again once, on a fresh connection
                    self.reconnects += 1
                    if self.stats is not None:
                        self.stats.resend(command)
                    if self._fresh is None:
                        self._fresh = self._session(True)
                    session = self._fresh
                    continue
                return Response(0, _NO_HEADERS, b"", perf_counter() - t0,
                                "connection:" + _aiohttp_error_name(aiohttp, exc))
            except (aiohttp.ClientError, OSError) as exc:
                # never str(exc) of a request error: it may carry the URL; the class name, and for TLS the
                # ssl module's reason, as the lean transport gives it
                return Response(0, _NO_HEADERS, b"", perf_counter() - t0,
                                "connection:" + _aiohttp_error_name(aiohttp, exc))
        raise AssertionError("unreachable")

    async def _read(self, resp):
        """The body, or None when it is past the per-response limit or the process budget."""
        limit = self.max_response_bytes
        length = resp.content_length
        if length is not None and length > limit:
            return None  # refused before any byte of the body is kept
        budget = self.budget
        parts = []
        size = 0
        try:
            while True:
                chunk = await resp.content.readany()
                if not chunk:
                    break
                n = len(chunk)
                size += n
                budget.held += n
                if size > limit or budget.held > budget.limit:
                    return None
                parts.append(chunk)
        finally:
            budget.held -= size
        return parts[0] if len(parts) == 1 else b"".join(parts)


TRANSPORTS = {"lean": LeanTransport, "aiohttp": AiohttpTransport}


def Transport(kind="lean", **kwargs):  # noqa: N802 -- a factory named like the classes it makes
    try:
        cls = TRANSPORTS[kind]
    except KeyError:
        raise ValueError("unknown transport %r (known: %s)" % (kind, ", ".join(TRANSPORTS))) from None
    return cls(**kwargs)
