"""Canned EAS responders for the benchmarks: pre-encoded WBXML answers, no EAS logic.

A responder parses only what it must -- the request line's ``Cmd=``, the
``Content-Length`` and, for Provision, the ``X-MS-PolicyKey`` -- and writes
pre-built HTTP responses, so that the client's cost is what a benchmark measures.

* Provision: the policy with the temporary key ``TEMP_KEY`` (the first request),
  then the final key ``FINAL_KEY`` (the acknowledgement, which carries
  ``X-MS-PolicyKey: TEMP_KEY``, or the key in its body when the header is absent).
* FolderSync: a hierarchy (``folders``; ``HIERARCHY``, ``INBOX_ONLY`` or ``()``
  for an empty change list) with SyncKey 1.
* Sync: SyncKey 2, Status 1 on the hierarchy's Inbox (no items).
* Ping: held without an answer (``hold_pings=True``, as a server with nothing new
  does for a whole heartbeat) or answered at once with ``ping_status``.
* Settings: Status 1.
* any other command: the answer named by ``fallback``.

``close=True`` closes the connection after every response, without a
``Connection: close`` header (as some real servers do); ``close="announced"``
sends the header first.

Use in a process of its own::

    proc = ctx.Process(target=serve_process, args=(queue, core), kwargs=options, daemon=True)
    url = queue.get()              # http://127.0.0.1:PORT/Microsoft-Server-ActiveSync

or in a running loop: ``server, responder = await serve(host, port, **options)``.
"""

import asyncio
import os
import resource
import ssl
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEMP_KEY, FINAL_KEY = "1111", "2222"
# (ServerId, DisplayName, Type): the default folders of a mailbox (MS-ASCMD 2.2.3.186.3)
HIERARCHY = (("1", "Inbox", 2), ("2", "Drafts", 3), ("3", "Deleted Items", 4), ("4", "Sent Items", 5),
             ("5", "Outbox", 6), ("7", "Calendar", 8), ("8", "Contacts", 9))
INBOX_ONLY = (("5", "Inbox", 2),)
PATH = "/Microsoft-Server-ActiveSync"
_TEMP = TEMP_KEY.encode()


def responses(folders=HIERARCHY, ping_status="1", announce_close=False):
    """The pre-built HTTP responses, keyed by b"policy", b"final" and the command names (bytes)."""
    from _wbxml import encode
    from loadgen.eas.policy import SEED_POLICY, policy_to_tree

    def provision(key, data):
        policy = [("Provision:PolicyType", "MS-EAS-Provisioning-WBXML"), ("Provision:Status", "1"),
                  ("Provision:PolicyKey", key)]
        if data:
            policy.append(("Provision:Data", [policy_to_tree(dict(SEED_POLICY))]))
        return encode(("Provision:Provision", [("Provision:Status", "1"),
                                               ("Provision:Policies", [("Provision:Policy", policy)])]))

    adds = [("FolderHierarchy:Add", [("FolderHierarchy:ServerId", sid), ("FolderHierarchy:ParentId", "0"),
                                     ("FolderHierarchy:DisplayName", name), ("FolderHierarchy:Type", str(kind))])
            for sid, name, kind in folders]
    folder_sync = encode(("FolderHierarchy:FolderSync", [
        ("FolderHierarchy:Status", "1"), ("FolderHierarchy:SyncKey", "1"),
        ("FolderHierarchy:Changes", [("FolderHierarchy:Count", str(len(adds)))] + adds)]))
    inbox = next((sid for sid, _name, kind in folders if kind == 2), "1")
    sync = encode(("AirSync:Sync", [("AirSync:Collections", [("AirSync:Collection", [
        ("AirSync:SyncKey", "2"), ("AirSync:CollectionId", inbox), ("AirSync:Status", "1")])])]))
    ping = encode(("Ping:Ping", [("Ping:Status", str(ping_status))] + (
        [("Ping:Folders", [("Ping:Folder", inbox)])] if str(ping_status) == "2" else [])))
    settings = encode(("Settings:Settings", [("Settings:Status", "1")]))
    connection = b"Connection: close\r\n" if announce_close else b""

    def http(body):
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\nMS-Server-ActiveSync: 15.1\r\n"
                b"%sContent-Length: %d\r\n\r\n%s" % (connection, len(body), body))

    return {b"policy": http(provision(TEMP_KEY, True)), b"final": http(provision(FINAL_KEY, False)),
            b"FolderSync": http(folder_sync), b"Sync": http(sync), b"Ping": http(ping), b"Settings": http(settings)}


class Responder:
    """The protocol factory of one server: answers and options shared by its connections, and counts.

    ``requests``: requests read; ``held``: Pings held right now (a held Ping's
    connection closed by the client is no longer counted)."""

    def __init__(self, answers=None, *, hold_pings=True, close=False, fallback=b"FolderSync", **response_options):
        if close == "announced":
            response_options["announce_close"] = True
        self.answers = answers if answers is not None else responses(**response_options)
        self.hold_pings = hold_pings
        self.close = bool(close)
        self.fallback = self.answers[fallback if isinstance(fallback, bytes) else fallback.encode()]
        self.requests = 0
        self.held = 0

    def __call__(self):
        return _Connection(self)


class _Connection(asyncio.Protocol):
    __slots__ = ("owner", "transport", "buf", "holding")

    def __init__(self, owner):
        self.owner = owner
        self.transport = None
        self.buf = b""
        self.holding = False

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        if self.holding:
            self.holding = False
            self.owner.held -= 1

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        owner = self.owner
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            i = head.find(b"Content-Length: ")
            # the header may be the head's last line: find its end in buf, where the blank line follows
            length = int(buf[i + 16:buf.find(b"\r\n", i)]) if i >= 0 else 0
            if len(buf) < end + 4 + length:
                break
            body_start = end + 4
            cmd = head[head.find(b"Cmd=") + 4:head.find(b" HTTP/1.1")]
            owner.requests += 1
            if cmd == b"Provision":
                i = head.find(b"X-MS-PolicyKey: ")
                if i >= 0:
                    ack = head.startswith(_TEMP, i + 16)
                else:
                    ack = _TEMP in buf[body_start:body_start + length]
                answer = owner.answers[b"final" if ack else b"policy"]
            elif cmd == b"Ping" and owner.hold_pings:
                if not self.holding:
                    self.holding = True
                    owner.held += 1  # held: no answer for the whole heartbeat
                buf = buf[body_start + length:]
                continue
            else:
                answer = owner.answers.get(cmd, owner.fallback)
            buf = buf[body_start + length:]
            self.transport.write(answer)
            if owner.close:
                self.transport.close()
                buf = b""
                break
        self.buf = buf


class _TLSServer(asyncio.Protocol):
    """TLS of a responder's connection done with an ``ssl.SSLObject`` over memory BIOs (as the lean
    client does, loadgen/wire/tlsconn.py), one shared read buffer: the loop's TLS layer keeps ~190 KiB
    per server connection (uvloop's read buffer), too much for 100,000 held Pings on one machine.
    It is the inner protocol's transport (write, close)."""

    __slots__ = ("inner", "raw", "tls", "incoming", "outgoing", "shaking")

    def __init__(self, ctx, inner):
        self.inner = inner
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.raw = None
        self.shaking = True

    def connection_made(self, transport):
        self.raw = transport
        self.inner.connection_made(self)

    def _flush(self):
        if self.outgoing.pending and self.raw is not None:
            self.raw.write(self.outgoing.read())

    def data_received(self, data):
        tls = self.tls
        if tls is None:
            return
        self.incoming.write(data)
        if self.shaking:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except (ssl.SSLError, OSError):
                self._flush()
                self.close()
                return
            self.shaking = False
            self._flush()
        while True:
            try:
                n = tls.read(len(_READ), _READ)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLError, OSError):
                self.close()
                return
            if not n:
                break
            self.inner.data_received(bytes(_VIEW[:n]))
            if self.tls is None:
                return
        self._flush()

    def connection_lost(self, exc):
        self.tls = self.incoming = self.outgoing = None
        self.inner.connection_lost(exc)

    # the inner protocol's transport

    def write(self, data):
        if self.tls is not None:
            self.tls.write(data)
            self._flush()

    def close(self):
        self.tls = self.incoming = self.outgoing = None
        if self.raw is not None:
            self.raw.close()


_READ = bytearray(64 * 1024)
_VIEW = memoryview(_READ)


async def serve(host="127.0.0.1", port=0, tls=None, tls_tickets=None, **options):
    """Start a responder in the running loop: (server, Responder).  ``tls``: (certificate, key) PEM
    files, served over TLS (``loadgen/exchange/tls.py`` server_context: TLS 1.2+, the module's
    defaults for session tickets; ``tls_tickets``: TLS 1.3 tickets sent after a handshake, OpenSSL's
    SSL_CTX_set_num_tickets, 0 for none)."""
    responder = Responder(**options)
    ctx = None
    if tls is not None:
        from loadgen.exchange.tls import server_context

        ctx = server_context(*tls)
        if tls_tickets is not None:
            ctx.num_tickets = tls_tickets
        server = await asyncio.get_running_loop().create_server(lambda: _TLSServer(ctx, responder()), host, port,
                                                                 backlog=4096)
        return server, responder
    server = await asyncio.get_running_loop().create_server(responder, host, port, backlog=4096)
    return server, responder


def url_of(server, scheme="http"):
    host, port = server.sockets[0].getsockname()[:2]
    return "%s://%s:%d%s" % (scheme, host, port, PATH)


def pin(core):
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def loop_factory():
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:
        return None


def serve_process(queue, core=None, host="127.0.0.1", listeners=1, **options):
    """Process entry: pin to ``core``, serve on ``host`` (any free port), put the URL on ``queue``, serve.

    ``listeners`` > 1: as many ports, one Responder each, their URLs put on ``queue`` one by one -- a
    destination of its own per connection-hungry client, each with its own ~28,000 ephemeral ports."""
    pin(core)
    raise_nofile()

    async def main():
        servers = []
        for _ in range(listeners):
            server, _responder = await serve(host, 0, **options)
            servers.append(server)
            queue.put(url_of(server, "https" if options.get("tls") else "http"))
        await asyncio.sleep(24 * 3600)

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(main())
