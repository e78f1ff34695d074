"""TLS session resumption of the lean transport (loadgen/wire/tlsconn.py), and TLS verification of both.

A loopback server (asyncio with an OpenSSL server context, TLS 1.3 unless a test says otherwise)
records, per connection, whether it resumed the session the client offered (the server's
``SSLObject.session_reused``), so that the tests see resumption from the server's side:

* a device that reconnects offers its last session and the server resumes it (TLS 1.3 ticket,
  RFC 8446 2.2; TLS 1.2 session id, RFC 5246 7.4.1.2); counted full / resumed by the transport and
  in Stats; with ``tls_resumption`` off, every handshake is full;
* a server that sends no tickets, or one that no longer knows the ticket (a fresh server behind the
  same address: a load balancer's failover), still serves the device, with a full handshake counted full;
* verification stays on by default: an untrusted CA and a certificate for another host name fail
  as ``tls_error`` over both transports, counted as failed handshakes by the lean one;
* the accounting of a run stays exact through reconnects that resume (embedded target over TLS).
"""

import asyncio
import shutil
import ssl

import pytest

from loadgen.device.answers import no_answer_outcome
from loadgen.eas.http import request_head
from loadgen.exchange.tls import self_signed, server_context
from loadgen.results.stats import Stats
from loadgen.wire.transport import AiohttpTransport, DeviceEndpoint, LeanTransport

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

PATH = "/Microsoft-Server-ActiveSync"
OK_BODY = b"\x03\x01\x6a\x00\x00\x07\x56\x52\x03\x31\x00\x01\x01"
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\nContent-Length: %d\r\n\r\n"
          % len(OK_BODY)) + OK_BODY


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    good = self_signed(tmp_path_factory.mktemp("good"), ("127.0.0.1", "localhost"))
    elsewhere = self_signed(tmp_path_factory.mktemp("elsewhere"), ("elsewhere.example",))
    return {"good": good, "elsewhere": elsewhere}


class _Http(asyncio.Protocol):
    """Answers every complete request with ANSWER; ``close_after``: closes the connection after each answer
    without saying so (as a server ending an idle keep-alive connection does)."""

    def __init__(self, server):
        self.server = server
        self.buf = b""

    def connection_made(self, transport):
        self.transport = transport
        sslobj = transport.get_extra_info("ssl_object")
        self.server.reused.append(sslobj.session_reused if sslobj is not None else None)

    def data_received(self, data):
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(rest) < length:
                return
            self.buf = rest[length:]
            self.server.requests += 1
            self.transport.write(ANSWER)
            if self.server.close_after:
                self.transport.close()
                return


class Server:
    """A TLS server on 127.0.0.1 recording, per connection, whether the server resumed a session."""

    def __init__(self, pki, *, version=ssl.TLSVersion.TLSv1_3, tickets=None, cert="good", close_after=False, port=0):
        material = pki[cert]
        self.ctx = server_context(material.cert, material.key)
        self.ctx.minimum_version = self.ctx.maximum_version = version
        if tickets is not None:
            self.ctx.num_tickets = tickets  # TLS 1.3 tickets sent after each handshake (OpenSSL default: 2)
        self.close_after = close_after
        self.port = port
        self.reused = []
        self.requests = 0

    async def __aenter__(self):
        self.server = await asyncio.get_running_loop().create_server(lambda: _Http(self), "127.0.0.1", self.port,
                                                                      ssl=self.ctx, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    def endpoint(self, host="127.0.0.1", n=1):
        return DeviceEndpoint(request_head("https://%s:%d%s" % (host, self.port, PATH), "user%d" % n, "Secret1!",
                                           "DEV%d" % n, "SmartPhone", "14.1", "ContosoPhone/1.0"))


def _lean(pki, **kw):
    t = LeanTransport(timeout=10, ca_file=pki["good"].ca, **kw)
    t.stats = Stats()
    return t


async def _twice(t, srv, ep=None):
    """A request, the device offline (its connections closed), a request again: the two responses."""
    ep = ep or srv.endpoint()
    first = await t.post(ep, "FolderSync", b"x", "1")
    t.disconnect(ep)
    second = await t.post(ep, "FolderSync", b"x", "1")
    return first, second


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
async def test_a_reconnecting_device_resumes_its_session(pki, version):
    async with Server(pki, version=version) as srv:
        t = _lean(pki)
        first, second = await _twice(t, srv)
        await t.close()
    assert (first.status, second.status, second.body) == (200, 200, OK_BODY)
    assert srv.reused == [False, True]  # the server's own view: the second connection resumed
    assert t.handshakes == {"full": 1, "resumed": 1, "failed": 0}
    assert t.stats.tls_handshakes == {"full": 1, "resumed": 1}
    assert t.stats.timings["TLSHandshakeFull"].total == 1 and t.stats.timings["TLSHandshakeResumed"].total == 1
    assert sum(t.stats.tls_bucket_counts("resumed")) == 1


async def test_the_ping_connection_resumes_from_the_open_ordinary_one(pki):
    """A device opening its Ping connection while its ordinary one is open offers that one's session."""
    async with Server(pki) as srv:
        t = _lean(pki)
        ep = srv.endpoint()
        assert (await t.post(ep, "Sync", b"x", "1")).status == 200
        assert (await t.post(ep, "Ping", b"x", "1")).status == 200
        # the device keeps no session of its own while a connection carries one
        assert ep.tls_session is None
        t.idle_timeout = 0.001
        t._sweep()  # the ordinary connection closed as idle (as by idle_timeout): the Ping's carries the session
        assert ep.conn is None and ep.ping_conn is not None and ep.tls_session is None
        t.disconnect(ep)  # the last connection closed: its session is kept, one per device
        assert ep.tls_session is not None
        await t.close()
    assert srv.reused == [False, True]


async def test_devices_do_not_share_sessions(pki):
    async with Server(pki) as srv:
        t = _lean(pki)
        await t.post(srv.endpoint(n=1), "FolderSync", b"x", "1")
        await t.post(srv.endpoint(n=2), "FolderSync", b"x", "1")
        await t.close()
    assert srv.reused == [False, False]


async def test_resumption_off(pki):
    async with Server(pki) as srv:
        t = _lean(pki, tls_resumption=False)
        first, second = await _twice(t, srv)
        await t.close()
    assert (first.status, second.status) == (200, 200)
    assert srv.reused == [False, False]
    assert t.handshakes == {"full": 2, "resumed": 0, "failed": 0}


async def test_the_scenario_key_reaches_the_transport():
    from loadgen import scenario

    assert scenario.parse("[target]\nurl = \"https://eas.example/\"\n").target.tls_resumption is True
    off = scenario.parse("[target]\nurl = \"https://eas.example/\"\ntls_resumption = false\n")
    assert off.target.tls_resumption is False
    with pytest.raises(scenario.ScenarioError, match="tls_resumption"):
        scenario.parse("[target]\ntls_resumption = \"yes\"\n")


async def test_a_server_sending_no_tickets_is_served_with_full_handshakes(pki):
    async with Server(pki, tickets=0) as srv:
        t = _lean(pki)
        first, second = await _twice(t, srv)
        await t.close()
    assert (first.status, second.status) == (200, 200)
    assert srv.reused == [False, False]
    assert t.handshakes == {"full": 2, "resumed": 0, "failed": 0}


async def test_a_server_that_no_longer_knows_the_ticket_still_works(pki):
    """The device offers its ticket to a fresh server behind the same address (new ticket keys, as after a
    load balancer's failover): the server declines it, the handshake is full, the request answered."""
    async with Server(pki) as srv:
        t = _lean(pki)
        ep = srv.endpoint()
        assert (await t.post(ep, "FolderSync", b"x", "1")).status == 200
        port = srv.port
    t.disconnect(ep)
    assert ep.tls_session is not None  # what it will offer
    async with Server(pki, port=port) as fresh:
        r = await t.post(ep, "FolderSync", b"x", "1")
        await t.close()
    assert r.status == 200
    assert fresh.reused == [False]
    assert t.handshakes == {"full": 2, "resumed": 0, "failed": 0}


async def test_a_server_closing_each_connection_resumes_on_the_reconnect_and_counts_exactly(pki):
    """The server closes the connection after every answer without saying so: the next request meets the
    closed connection, is re-sent once on a fresh one (counted re-sent) that resumes the session."""
    async with Server(pki, close_after=True) as srv:
        t = _lean(pki)
        ep = srv.endpoint()
        answers = []
        for _ in range(4):
            answers.append((await t.post(ep, "Sync", b"x", "1")).status)
            await asyncio.sleep(0)  # (no wait for the close: a request may meet it, or find it closed)
        await t.close()
    assert answers == [200] * 4 and srv.requests == 4
    assert t.handshakes["full"] == 1 and t.handshakes["resumed"] == len(srv.reused) - 1 >= 3
    assert srv.reused == [False] + [True] * (len(srv.reused) - 1)
    assert t.connections_opened == len(srv.reused)


# verification: on by default, over both transports; the outcome is tls_error


@pytest.mark.parametrize("cls", [LeanTransport, AiohttpTransport])
async def test_untrusted_ca_is_a_tls_error(pki, cls):
    async with Server(pki) as srv:
        t = cls(timeout=10)  # the system trust store only
        await t.start()
        r = await t.post(srv.endpoint(), "FolderSync", b"x", "1")
        await t.close()
    assert no_answer_outcome(r.error) == "tls_error", r.error
    assert "SSLCertVerificationError" in r.error and "Secret" not in r.error
    assert srv.requests == 0
    if cls is LeanTransport:
        assert t.handshakes == {"full": 0, "resumed": 0, "failed": 1}


@pytest.mark.parametrize("cls", [LeanTransport, AiohttpTransport])
async def test_a_certificate_for_another_host_name_is_a_tls_error(pki, cls):
    async with Server(pki, cert="elsewhere") as srv:  # trusted CA? its own: trusted below, name wrong
        t = cls(timeout=10, ca_file=pki["elsewhere"].ca)
        await t.start()
        r = await t.post(srv.endpoint(), "FolderSync", b"x", "1")
        await t.close()
    assert no_answer_outcome(r.error) == "tls_error", r.error
    assert "mismatch" in r.error, r.error
    assert srv.requests == 0


async def test_a_failed_handshake_keeps_no_session_and_the_next_one_is_full(pki):
    async with Server(pki, cert="elsewhere") as srv:
        t = _lean(pki)
        ep = srv.endpoint()
        r = await t.post(ep, "FolderSync", b"x", "1")
        await t.close()
    assert no_answer_outcome(r.error) == "tls_error"
    assert ep.tls_session is None
    assert t.stats.tls_handshakes == {"failed": 1}


def test_accounting_stays_exact_through_reconnects_that_resume():
    """A run against the embedded target over TLS whose devices close their idle connection after 0.2 s
    and think 0.6 s between requests (2 s): nearly every request opens a connection again, resuming the
    device's session.  Every request sent is accounted for, every connection opened is one counted
    handshake, and no handshake fails."""
    from loadgen import scenario
    from loadgen.cli import start
    from loadgen.results.stats import accounting

    sc = scenario.parse("duration = 2\nseed = 3\n[target]\ntls = true\n[auth]\nusers = 3\n[population]\n"
                        "devices = 3\ndevices_per_user = 1\n[load]\nramp_up = 0\nthink_time = 0.6\n"
                        "idle_timeout = 0.2\ngraceful_stop = 1\n", "tls-reconnects.toml")
    result = asyncio.run(start.run(sc, progress=False))
    stats = result.stats
    assert result.target_url.startswith("https://")
    total = accounting(stats)
    assert total["sent"] == (total["answered"] + total["errors"] + total["timeouts"] + total["cancelled"]
                             + total["interrupted"] + total["resent"])
    assert total["errors"] == 0 and total["timeouts"] == 0, total
    # what the devices count as answered is what the target answered (its own counters); a Ping held
    # when the run ended is cancelled by the device and may be counted by the target as it closes
    served = {}
    for (command, _http, _eas), n in result.target.counters.items():
        served[command] = served.get(command, 0) + n
    by_command = accounting(stats, by_command=True)
    for command, row in by_command.items():
        if command == "Ping":
            assert row["answered"] <= served.get("Ping", 0) <= row["answered"] + row["cancelled"], (row, served)
        else:
            assert row["answered"] == served.get(command, 0) > 0, (command, row, served)
    assert stats.tls_handshakes.get("failed", 0) == 0
    assert stats.tls_handshakes["resumed"] >= 3, stats.tls_handshakes  # each device reconnected and resumed
    assert stats.tls_handshakes["full"] + stats.tls_handshakes["resumed"] == result.connections_opened
    summary = stats.to_dict("x")
    assert summary["tls_handshakes"] == dict(stats.tls_handshakes)
    assert summary["timings"]["TLSHandshakeResumed"]["count"] == stats.tls_handshakes["resumed"]
    # the handshakes' latencies are threshold metrics, on the live figures and on the summary alike
    from loadgen.results.thresholds import evaluate, parse as parse_threshold

    checks = [parse_threshold("TLSHandshakeResumed.count", "== %d" % stats.tls_handshakes["resumed"]),
              parse_threshold("TLSHandshakeFull.p99", "< 30"), parse_threshold("TLSHandshakeFull.max", "< 0")]
    for source in (stats, summary):
        assert [passed for _th, _value, passed in evaluate(source, checks)] == [True, True, False]


def _bio_capacity(mbio):
    """Bytes allocated by an ssl.MemoryBIO's OpenSSL buffer (BIO_get_mem_ptr: its BUF_MEM's max, a
    public struct of include/openssl/buffer.h), read through the BIO pointer tlsconn uses."""
    import ctypes

    from loadgen.wire import tlsconn

    class BufMem(ctypes.Structure):
        _fields_ = [("length", ctypes.c_size_t), ("data", ctypes.c_void_p), ("max", ctypes.c_size_t),
                    ("flags", ctypes.c_ulong)]

    bio = tlsconn.NATIVE._bio_of(mbio)
    out = ctypes.POINTER(BufMem)()
    tlsconn.NATIVE.bio_ctrl(bio, 115, 0, ctypes.cast(ctypes.byref(out), ctypes.c_void_p))  # BIO_C_GET_BUF_MEM_PTR
    return out.contents.max


class _Big(asyncio.Protocol):
    """Reads a whole request, then answers with a 300,000-byte body in one write."""

    BODY = bytes(range(256)) * 1172

    def connection_made(self, transport):
        self.transport, self.buf = transport, b""

    def data_received(self, data):
        self.buf += data
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        if _ and len(rest) >= int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]):
            self.buf = b""
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(self.BODY) + self.BODY)


async def test_a_large_body_does_not_stay_in_the_connection_s_buffers(pki):
    """OpenSSL's memory BIO keeps the largest chunk ever written into it (bss_mem.c): without giving it
    back, a connection that carried a 300 KB response and a 200 KB request would hold ~100 KiB or more
    for the rest of its life.  tlsconn gives an emptied BIO's buffer back (_Native.shrink), and the
    bytes still arrive intact."""
    from loadgen.wire import tlsconn

    if tlsconn.NATIVE is None:
        pytest.skip("no native OpenSSL access here: the ssl module's API only")
    ctx = server_context(pki["good"].cert, pki["good"].key)
    server = await asyncio.get_running_loop().create_server(_Big, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    t = _lean(pki)
    ep = DeviceEndpoint(request_head("https://127.0.0.1:%d%s" % (port, PATH), "user1", "Secret1!", "DEV1",
                                     "SmartPhone", "14.1", "ContosoPhone/1.0"))
    try:
        answer = await t.post(ep, "Sync", b"\x03\x01\x6a\x00" + b"m" * 200_000, "1")
        assert (answer.status, bytes(answer.body)) == (200, _Big.BODY)
        conn = ep.conn
        assert type(conn) is tlsconn.TLSConnection and not conn.closed
        assert _bio_capacity(conn.incoming) < 4096 and _bio_capacity(conn.outgoing) < 4096
        answer = await t.post(ep, "Sync", b"\x03\x01\x6a\x00", "1")  # the same connection goes on working
        assert (answer.status, bytes(answer.body), ep.conn is conn) == (200, _Big.BODY, True)
    finally:
        await t.close()
        server.close()
        await server.wait_closed()
