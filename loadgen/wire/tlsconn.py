"""TLS for the lean transport: an ``ssl.SSLObject`` over memory BIOs inside a plain asyncio.Protocol.

The event loop's own TLS layer (``create_connection(ssl=...)``: asyncio's or uvloop's SSLProtocol)
keeps, per connection, a protocol object, an app-facing transport, two memory BIOs, its own read
buffer (uvloop: 256 KiB per connection) and write backlog; measured with bench/scale_run.py
--tls, a device holding a Ping over it cost ~120 KiB of client RSS.  :class:`TLSConnection`
is the lean transport's HTTP connection (``transport._Connection``) with the TLS layer folded in:

* one object per connection: it is the loop's protocol of the TCP socket (``raw``) and the
  ``transport`` its HTTP side writes to (``write``/``writelines`` encrypt into the outgoing
  BIO and hand the records to the socket);
* received records go into the incoming BIO and are decrypted into *one* read buffer shared by
  every connection of the process (:data:`_READ`), from which the HTTP parser copies what it
  keeps; nothing is buffered per connection but what OpenSSL itself holds (CPython sets
  SSL_MODE_RELEASE_BUFFERS on every context: OpenSSL frees its record buffers while idle);
* certificate and host name verification are the context's (``transport.make_ssl_context``:
  verified, host name checked, SNI from the URL's host), so a failure is the same
  ``ssl.SSLCertVerificationError`` as before (outcome ``tls_error``).

Session resumption (RFC 8446 2.2: TLS 1.3 PSK from a NewSessionTicket; RFC 5077 tickets and
RFC 5246 session ids in TLS 1.2): a connection may start with a session (``wrap_bio(session=)``);
its handshake then reports whether the server resumed it (``SSLObject.session_reused``).  Which
session a device offers, and that it keeps at most one, is the transport's business
(``LeanTransport._tls_session``); a connection that closes leaves its last resumable session
on its endpoint (:meth:`TLSConnection._leave_session`) when the device has no other connection
that carries one.
"""

import ctypes
import ssl
from time import perf_counter

from loadgen.wire.transport import _Connection

_READ = bytearray(256 * 1024)  # the one read buffer: plaintext is decrypted here, the parser copies it
_VIEW = memoryview(_READ)
_WANT_READ = ssl.SSLWantReadError
_ZERO_RETURN = ssl.SSLZeroReturnError
_SSL_ERROR = ssl.SSLError
_BIG = 1024  # a chunk this large through a memory BIO: its buffer is given back (_Native.shrink) once the
# BIO is empty -- the incoming one's when the response is complete, not after every chunk of a large body
_BIO_TYPE_MEM = 1 | 0x0400  # include/openssl/bio.h: BIO_TYPE_MEM
_BIO_CTRL_PENDING = 10
_BIO_C_SET_BUF_MEM = 114
_BIO_CLOSE = 1


class _Native:
    """OpenSSL calls on the SSL of an ``ssl.SSLObject`` that the ssl module does not offer, or
    ``NATIVE = None`` where they cannot be made safely.

    The SSL pointer is read from CPython's _ssl object (the field after PyObject_HEAD and the
    socket) and checked on every use: SSL_get_SSL_CTX of it must be the context's own SSL_CTX (the
    field after PyObject_HEAD of the SSLContext), else nothing is done (and the ssl module's own
    API is used).  The layout is checked once at import on a fresh object.

    * ``release(tls)``: SSL_free_buffers.  CPython sets SSL_MODE_RELEASE_BUFFERS, but OpenSSL 3.0
      gives its 16 KiB record read buffer back only after reading application data; a connection
      whose last records were the NewSessionTickets a TLS 1.3 server sends after the handshake
      (RFC 8446 4.6.1) would keep it for a held Ping's whole heartbeat.  OpenSSL refuses when the
      buffers hold data (fixed in 3.0.14: CVE-2024-4741).
    * ``session(tls)`` / ``offer(tls, session)``: SSL_get1_session and SSL_set_session, sharing one
      SSL_SESSION by reference.  The ssl module's ``SSLObject.session`` instead returns a copy made by
      i2d/d2i_SSL_SESSION (CPython Modules/_ssl.c, _ssl_session_dup), which parses the server's
      certificate again: measured here (OpenSSL 3.0), ~6 KiB more per resumed connection, and as
      much left allocated after every connection and session were freed; a kept session costs
      ~6.5 KiB by reference against ~12.6 KiB as the copy.
    * ``shrink(bio)``: give an empty ``ssl.MemoryBIO``'s buffer back.  OpenSSL's memory BIO never
      shrinks: its buffer keeps the largest amount ever written into it at once, a third more
      (crypto/bio/bss_mem.c mem_write, crypto/buffer/buffer.c BUF_MEM_grow_clean), so each
      connection kept ~4 KiB from the server's first flight for good, and would keep ~90 KiB after a
      64 KiB chunk of a large Sync response.  An empty BIO is given a new empty BUF_MEM
      (BIO_C_SET_BUF_MEM, which frees the old one: public API, BIO_s_mem(3)); a BIO holding data is
      left as it is.  The BIO pointer is read from CPython's MemoryBIO object (the field after
      PyObject_HEAD) and its method checked to be BIO_s_mem on every use."""

    def __init__(self):
        lib = ctypes.CDLL(ssl._ssl.__file__)  # dlsym also searches its libssl
        void = ctypes.c_void_p
        self.get_ctx = self._fn(lib.SSL_get_SSL_CTX, void, void)
        self.free_buffers = self._fn(lib.SSL_free_buffers, ctypes.c_int, void)
        self.get1_session = self._fn(lib.SSL_get1_session, void, void)
        self.set_session = self._fn(lib.SSL_set_session, ctypes.c_int, void, void)
        self.session_free = self._fn(lib.SSL_SESSION_free, None, void)
        self.is_resumable = self._fn(lib.SSL_SESSION_is_resumable, ctypes.c_int, void)
        self.bio_method_type = self._fn(lib.BIO_method_type, ctypes.c_int, void)
        self.bio_ctrl = self._fn(lib.BIO_ctrl, ctypes.c_long, void, ctypes.c_int, ctypes.c_long, void)
        self.buf_mem_new = self._fn(lib.BUF_MEM_new, void)
        self.words = ctypes.POINTER(ctypes.c_void_p)
        probe = ssl.create_default_context()
        sslobj = probe.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="localhost")
        if not self.ssl_of(sslobj):
            raise OSError("unexpected _ssl layout")
        bio = ssl.MemoryBIO()
        bio.write(b"abc")
        ptr = self._bio_of(bio)
        if ptr is None or self.bio_ctrl(ptr, _BIO_CTRL_PENDING, 0, None) != 3:
            raise OSError("unexpected _ssl MemoryBIO layout")

    @staticmethod
    def _fn(fn, restype, *argtypes):
        fn.restype = restype
        fn.argtypes = list(argtypes)
        return fn

    def ssl_of(self, tls):
        """The SSL* of an SSLObject, checked against its context's SSL_CTX*; 0 when it does not match."""
        cast, words = ctypes.cast, self.words
        ptr = cast(id(tls._sslobj), words)[3]
        if ptr and self.get_ctx(ptr) == cast(id(tls.context), words)[2]:
            return ptr
        return 0

    def _bio_of(self, mbio):
        """The BIO* of an ssl.MemoryBIO if it is a memory BIO, else None."""
        ptr = ctypes.cast(id(mbio), self.words)[2]
        if ptr and self.bio_method_type(ptr) == _BIO_TYPE_MEM:
            return ptr
        return None

    def shrink(self, mbio):
        bio = self._bio_of(mbio)
        if bio is not None and not self.bio_ctrl(bio, _BIO_CTRL_PENDING, 0, None):
            fresh = self.buf_mem_new()
            if fresh:
                self.bio_ctrl(bio, _BIO_C_SET_BUF_MEM, _BIO_CLOSE, fresh)

    def release(self, tls):
        ptr = self.ssl_of(tls)
        if ptr:
            self.free_buffers(ptr)

    def session(self, tls):
        """A :class:`Session` holding the SSL's current session if it is resumable, else None."""
        ptr = self.ssl_of(tls)
        if not ptr:
            return None
        sess = self.get1_session(ptr)
        if not sess:
            return None
        if not self.is_resumable(sess):  # e.g. TLS 1.3 without a ticket (RFC 8446 4.6.1)
            self.session_free(sess)
            return None
        return Session(sess)

    def offer(self, tls, session):
        ptr = self.ssl_of(tls)
        return bool(ptr) and self.set_session(ptr, session.ptr) == 1


class Session:
    """One reference to an OpenSSL SSL_SESSION (freed with this object)."""

    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr

    def __del__(self):
        ptr = self.ptr
        self.ptr = None
        if ptr and NATIVE is not None:
            NATIVE.session_free(ptr)


try:
    NATIVE = _Native()
except Exception:  # noqa: BLE001 -- no libssl symbols, another layout: the ssl module's API instead
    NATIVE = None


def resumable(tls):
    """The session of ``tls`` (an SSLObject after its handshake) if it can be offered again, else None:
    TLS 1.3 needs a ticket (RFC 8446 4.6.1), TLS 1.2 a ticket (RFC 5077) or a session id the server
    gave (RFC 5246 7.4.1.3: an empty one means the server will not cache it)."""
    if NATIVE is not None:
        return NATIVE.session(tls)
    try:
        session = tls.session
    except (ValueError, _SSL_ERROR):
        return None
    if session is None:
        return None
    if session.has_ticket:
        return session
    if session.id and tls.version() != "TLSv1.3":
        return session
    return None


class TLSConnection(_Connection):
    """An HTTP/1.1 connection (``transport._Connection``) over TLS done here with an SSLObject.

    ``handshake``: a future while the handshake runs, resolved with (its duration in seconds from the
    TCP connection to the handshake's end, whether the server resumed the session offered) or with
    its exception; None afterwards.
    ``endpoint``: the device's endpoint a closing connection leaves its session on (None: nowhere,
    e.g. a shared pool's connection or resumption off)."""

    __slots__ = ("raw", "tls", "incoming", "outgoing", "handshake", "endpoint", "t0", "grown")

    def __init__(self, ctx, server_hostname, session, handshake, endpoint):
        _Connection.__init__(self)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        if type(session) is Session:
            self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=False, server_hostname=server_hostname)
            NATIVE.offer(self.tls, session)
        else:
            self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=False,
                                    server_hostname=server_hostname, session=session)
        self.handshake = handshake
        self.endpoint = endpoint
        self.raw = None
        self.t0 = 0.0
        self.grown = False  # a chunk above _BIG went into the incoming BIO since it was last shrunk

    # the TCP side (asyncio.Protocol)

    def connection_made(self, transport):
        self.raw = transport
        self.transport = self  # the HTTP side writes here: encrypted, then to the socket
        self.t0 = perf_counter()
        self._shake()

    def _shake(self):
        tls = self.tls
        try:
            tls.do_handshake()
        except _WANT_READ:
            self._send_records()
            return
        except Exception as exc:  # SSLCertVerificationError, SSLError, ...: the alert goes out, then the end
            self._send_records()
            fut = self.handshake
            self.handshake = None
            self.endpoint = None  # no session to keep from a failed handshake
            if fut is not None and not fut.done():
                fut.set_exception(exc)
            self._teardown()
            return
        self._send_records()
        if NATIVE is not None:  # the flights' bytes: a server's certificates are a few KiB
            NATIVE.shrink(self.incoming)
            NATIVE.shrink(self.outgoing)
        fut = self.handshake
        self.handshake = None
        if fut is not None and not fut.done():
            fut.set_result((perf_counter() - self.t0, tls.session_reused))

    def _send_records(self):
        out = self.outgoing
        if out.pending and self.raw is not None:
            self.raw.write(out.read())

    def data_received(self, data):
        tls = self.tls
        if tls is None:
            return
        self.incoming.write(data)
        if len(data) > _BIG:
            self.grown = True
        if self.handshake is not None:
            self._shake()
            if self.handshake is not None or self.tls is None:
                return
        deliver = _Connection.data_received
        plain = False
        while True:
            try:
                n = tls.read(262144, _READ)
            except _WANT_READ:
                break
            except _ZERO_RETURN:  # close_notify (RFC 8446 6.1): the end of the data, as a TCP EOF
                self.eof_received()
                self.close()
                return
            except _SSL_ERROR as exc:  # a bad record (RFC 8446 6.2: the connection is over)
                self._fail(ConnectionResetError("TLS: %s" % (exc.reason or type(exc).__name__)))
                return
            if not n:
                break
            plain = True
            deliver(self, _VIEW[:n])
            if self.tls is None or self.closed:
                return
            if not self.incoming.pending and not tls.pending():
                break  # all read: no SSLWantReadError raised (and collected) per response
        if self.outgoing.pending:  # e.g. a KeyUpdate answered (RFC 8446 4.6.3)
            self._send_records()
        if NATIVE is not None:
            if not plain:
                NATIVE.release(tls)  # only post-handshake records came (tickets): OpenSSL keeps its read buffer
            if self.grown and self.waiter is None:  # the response complete: its chunks' buffer given back
                self.grown = False
                NATIVE.shrink(self.incoming)

    def eof_received(self):
        # a TCP end without close_notify (RFC 8446 6.1 calls it a truncation; servers do it): as plain HTTP
        return _Connection.eof_received(self)

    def connection_lost(self, exc):
        fut = self.handshake
        if fut is not None:  # ended during the handshake: no session to keep, nothing to shut down
            self.handshake = None
            self.endpoint = None
            self.tls = self.incoming = self.outgoing = None
            if not fut.done():
                fut.set_exception(ConnectionResetError("connection closed during the TLS handshake"))
        self.raw = None
        self._teardown()
        _Connection.connection_lost(self, exc)

    # the HTTP side (what _Connection and the transport call as ``conn.transport``)

    def write(self, data):
        tls = self.tls
        if tls is None or self.raw is None:
            return
        try:
            tls.write(data)
        except _SSL_ERROR:
            self._fail(ConnectionResetError("TLS write failed"))
            return
        self.raw.write(self.outgoing.read())
        if len(data) > _BIG and NATIVE is not None:
            NATIVE.shrink(self.outgoing)

    def writelines(self, parts):
        for part in parts:
            self.write(part)

    def get_extra_info(self, name, default=None):
        raw = self.raw
        return raw.get_extra_info(name, default) if raw is not None else default

    def close(self):
        """Close the connection: its last session left on the endpoint, close_notify sent (RFC 8446
        6.1), the socket closed, OpenSSL's state freed now (not at the loop's connection_lost)."""
        self.closed = True
        self._give_back()
        self._teardown()

    def _teardown(self):
        tls = self.tls
        if tls is None:
            return
        self._leave_session()
        if self.handshake is None:
            # close_notify (RFC 8446 6.1), sent while the socket is there; said in any case: OpenSSL
            # marks the session of an SSL freed without it not resumable (ssl_clear_bad_session), while
            # a connection the server ended may be resumed (RFC 5246 7.2.1, since TLS 1.1)
            try:
                tls.unwrap()
            except (_SSL_ERROR, ValueError):
                pass
            self._send_records()
        self.tls = self.incoming = self.outgoing = None
        self.closed = True
        raw = self.raw
        if raw is not None:
            raw.close()

    def _leave_session(self):
        endpoint = self.endpoint
        if endpoint is None or self.tls is None or self.handshake is not None:
            return
        self.endpoint = None
        # at most one session per device: a connection still open carries one already (its own,
        # taken when a new connection needs it: LeanTransport._tls_session)
        for other in (endpoint.conn, endpoint.ping_conn):
            if other is not None and other is not self and type(other) is TLSConnection and other.tls is not None \
                    and other.handshake is None:
                return
        session = resumable(self.tls)
        if session is not None:
            endpoint.tls_session = session


__all__ = ["TLSConnection", "resumable"]
