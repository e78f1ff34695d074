"""TLS handshakes per client core: full and resumed, RSA 2048 and ECDSA P-256 (a script, not a test).

Certificates of the kinds Exchange serves (RSA 2048 -- New-ExchangeCertificate's default key size --
and ECDSA P-256) are made with openssl in a temporary directory (loadgen/exchange/tls.py
self_signed).  Two servers for each kind, each in its own process on 127.0.0.1:

* the embedded target (``python -m loadgen target --tls-cert ... --tls-key ...``);
* ``openssl s_server -www`` (the anchor; it answers one connection at a time).

Against each, these clients connect, handshake, send one small HTTP request (``GET /``, read to the
end: TLS 1.3 session tickets arrive after the handshake, RFC 8446 4.6.1) and close, for ``--seconds``:

* ``s_time``: ``openssl s_time -new`` (full) and ``-reuse`` (resumed), the anchor from this
  machine; its CPU is the child's user+sys time from wait4(2) (s_time's own "connections/user sec"
  counts user time only, shown beside it);
* ``asyncio-ssl``: ``loop.create_connection(ssl=...)``, the event loop's TLS transport (uvloop, as
  easload runs; ``--loop asyncio`` for asyncio's).  Full handshakes only: that API cannot offer a
  previous session (``SSLContext.wrap_bio`` is called without ``session=``);
* ``sslobject``: ``ssl.SSLObject`` over ``ssl.MemoryBIO`` driven from an ``asyncio.Protocol``,
  the way a transport of our own does TLS; full, and resumed (each connection offers the session of
  its worker's previous one, as a phone reconnecting does; RFC 8446 2.2, RFC 5077).

The Python clients verify the certificate and the host name (ssl.create_default_context with the
throwaway CA), as devices do; s_time is given the CA too (``-verify 1``).

The machine may be shared: the figure that matters is **handshakes per client CPU second**
(``resource.getrusage`` user+sys of this process around the Python clients, wait4 of s_time),
which does not depend on how long the client waited for a busy server.  Also shown: the server's
CPU per handshake (/proc/PID/stat utime+stime) and the wall rate (informative only).

    .venv/bin/python bench/tls_handshake.py [--seconds 3] [--kinds rsa,ec] [--servers target,s_server]
                                            [--concurrency 4] [--tls 1.3|1.2] [--loop uvloop|asyncio]
"""

import argparse
import asyncio
import os
import re
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from loadgen.exchange.tls import self_signed  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
HOST = "127.0.0.1"
CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """utime + stime of a process in seconds (/proc/PID/stat fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_listening(port, proc, deadline=60.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit("server ended early (exit %s)" % proc.returncode)
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server on port %d never listened" % port)


# --------------------------------------------------------------------------- servers


class Server:
    def __init__(self, kind, pki, name):
        self.kind, self.pki, self.name = kind, pki, name
        self.proc = None
        self.port = None
        self._log = None

    def start(self):
        self._log = tempfile.TemporaryFile()
        if self.name == "s_server":
            self.port = free_port()
            self.proc = subprocess.Popen(["openssl", "s_server", "-accept", "%s:%d" % (HOST, self.port), "-cert",
                                          self.pki.cert, "-key", self.pki.key, "-www", "-quiet"],
                                         stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        else:
            self.proc = subprocess.Popen([sys.executable, "-m", "loadgen", "target", "--listen", "%s:0" % HOST,
                                          "--admin-listen", "", "--users", "10", "--tls-cert", self.pki.cert,
                                          "--tls-key", self.pki.key],
                                         stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path[:1])))
            end = time.monotonic() + 60
            while self.port is None and time.monotonic() < end:
                self._log.seek(0)
                m = re.search(rb"listening on https://[\d.]+:(\d+)/", self._log.read())
                if m:
                    self.port = int(m.group(1))
                elif self.proc.poll() is not None:
                    self._log.seek(0)
                    raise SystemExit("easload target ended: %s" % self._log.read().decode(errors="replace"))
                else:
                    time.sleep(0.1)
        wait_listening(self.port, self.proc)
        return self

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # this one PID, started here
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()


# --------------------------------------------------------------------------- s_time


_STIME = re.compile(rb"(\d+) connections in ([\d.]+)s; ([\d.]+) connections/user sec")


def s_time(port, ca, mode, seconds, tls):
    """``openssl s_time`` for ``seconds``: (handshakes, resumed, child CPU s, s_time's own conns/user s)."""
    args = ["openssl", "s_time", "-connect", "%s:%d" % (HOST, port), "-" + mode, "-time", str(seconds), "-www", "/",
            "-CAfile", ca, "-verify", "1"]
    if tls == "1.2":
        args.append("-tls1_2")
    elif tls == "1.3":
        args.append("-tls1_3")
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    m = _STIME.search(text)
    if proc.returncode != 0 or not m:
        raise SystemExit("s_time failed (exit %d): %s" % (proc.returncode, text[-500:].decode(errors="replace")))
    marks = b"".join(line for line in text.splitlines() if line and not line.strip(b"r*"))
    return int(m.group(1)), marks.count(b"r"), usage.ru_utime + usage.ru_stime, float(m.group(3))


# --------------------------------------------------------------------------- Python clients


class StreamClient(asyncio.Protocol):
    """Over the loop's TLS transport: the handshake is done before connection_made."""

    def __init__(self, done):
        self.done = done

    def connection_made(self, transport):
        transport.write(REQUEST)

    def data_received(self, data):
        pass

    def eof_received(self):
        return False  # the response ends with the server's close

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(exc)


class BIOClient(asyncio.Protocol):
    """TLS in memory: ssl.SSLObject over two MemoryBIOs, the bytes carried by a plain transport."""

    def __init__(self, ctx, session, done):
        self.ctx, self.session, self.done = ctx, session, done
        self.transport = self.obj = self.incoming = self.outgoing = None
        self.handshaking = True
        self.reused = False

    def connection_made(self, transport):
        self.transport = transport
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = self.ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=HOST, session=self.session)
        self._handshake()

    def _flush(self):
        data = self.outgoing.read()
        if data:
            self.transport.write(data)

    def _handshake(self):
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as exc:
            return self._finish(exc)
        self.handshaking = False
        self.reused = self.obj.session_reused
        self.obj.write(REQUEST)
        self._flush()
        self._read()

    def _read(self):
        try:
            while self.obj.read(65536):
                pass
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLZeroReturnError:
            pass
        except ssl.SSLError as exc:
            return self._finish(exc)
        self._finish(None)  # the server's close_notify or end of data

    def _finish(self, exc):
        if self.done.done():
            return
        if exc is None:
            self.session = self.obj.session
            try:
                self.obj.unwrap()  # our close_notify: a cleanly closed session stays resumable
            except ssl.SSLError:
                pass
            self._flush()
        self.transport.close()
        self.done.set_result(exc)

    def data_received(self, data):
        self.incoming.write(data)
        if self.handshaking:
            self._handshake()
        elif not self.done.done():
            self._read()

    def eof_received(self):
        self.incoming.write_eof()
        if not self.done.done() and not self.handshaking:
            self._read()
        return False

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(exc or ConnectionError("closed during the handshake"))


async def python_clients(client, mode, port, ctx, seconds, concurrency):
    """(handshakes, resumed, CPU seconds of this process, wall seconds, errors)."""
    loop = asyncio.get_running_loop()
    counts = {"n": 0, "resumed": 0, "errors": 0}
    stop = time.monotonic() + seconds

    async def worker():
        session = None
        while time.monotonic() < stop:
            done = loop.create_future()
            try:
                if client == "asyncio-ssl":
                    await loop.create_connection(lambda: StreamClient(done), HOST, port, ssl=ctx,
                                                 server_hostname=HOST)
                    proto = None
                else:
                    proto = BIOClient(ctx, session if mode == "resumed" else None, done)
                    await loop.create_connection(lambda: proto, HOST, port)
                exc = await done
            except (OSError, ssl.SSLError) as e:
                exc = e
            if exc is not None:
                counts["errors"] += 1
                continue
            counts["n"] += 1
            if proto is not None:
                counts["resumed"] += proto.reused
                session = proto.session

    c0, w0 = self_cpu(), time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counts["n"], counts["resumed"], self_cpu() - c0, time.monotonic() - w0, counts["errors"]


def client_context(ca, tls):
    ctx = ssl.create_default_context(cafile=ca)
    if tls == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif tls == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


# --------------------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=3, help="per measurement (s_time takes whole seconds)")
    p.add_argument("--kinds", default="rsa,ec")
    p.add_argument("--servers", default="target,s_server")
    p.add_argument("--concurrency", type=int, default=4, help="connections at once of the Python clients")
    p.add_argument("--tls", choices=("1.3", "1.2", "any"), default="1.3")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = p.parse_args(argv)
    if shutil.which("openssl") is None:
        raise SystemExit("needs the openssl command")
    kinds = [k for k in args.kinds.split(",") if k]
    servers = [s for s in args.servers.split(",") if s]
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    print("TLS %s, %d s per measurement, Python clients: %d connections at once on %s; OpenSSL %s; %d cores, "
          "load average %.1f" % (args.tls, args.seconds, args.concurrency, args.loop, ssl.OPENSSL_VERSION,
                                 os.cpu_count(), os.getloadavg()[0]))
    head = ("%-4s %-9s %-12s %-8s %7s %7s %8s %10s %9s %9s %8s" % (
        "cert", "server", "client", "mode", "hs", "resumed", "cli CPU", "hs/cli-s", "cli ms/hs", "srv ms/hs", "wall/s"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="easload-tlsbench-") as tmp:
        for kind in kinds:
            d = os.path.join(tmp, kind)
            os.mkdir(d)
            pki = self_signed(d, key_type=kind)
            ctx = client_context(pki.ca, args.tls)
            for name in servers:
                server = Server(kind, pki, name).start()
                try:
                    for client, mode in (("s_time", "full"), ("s_time", "resumed"), ("asyncio-ssl", "full"),
                                         ("sslobject", "full"), ("sslobject", "resumed")):
                        s0, w0 = server.cpu(), time.monotonic()
                        extra = ""
                        if client == "s_time":
                            n, resumed, cpu, own = s_time(server.port, pki.ca, "new" if mode == "full" else "reuse",
                                                          args.seconds, args.tls)
                            wall = time.monotonic() - w0
                            extra = "s_time's own: %.0f conns/user-s" % own
                        else:
                            n, resumed, cpu, wall, errors = loop.run_until_complete(python_clients(
                                client, mode, server.port, ctx, args.seconds, args.concurrency))
                            if errors:
                                extra = "%d errors" % errors
                        srv = server.cpu() - s0
                        row = ("%-4s %-9s %-12s %-8s %7d %7s %8.2f %10.0f %9.3f %9.3f %8.0f  %s" % (
                            kind, name, client, mode, n, resumed if client != "asyncio-ssl" else "-", cpu,
                            n / cpu if cpu else float("nan"), 1000 * cpu / max(n, 1), 1000 * srv / max(n, 1),
                            n / wall, extra))
                        rows.append(row)
                        print(row if len(rows) > 1 else head + "\n" + row, flush=True)
                finally:
                    server.stop()
    print()
    print("hs/cli-s: handshakes (each with one small request) per client CPU second = per client core; "
          "cli ms/hs and srv ms/hs: CPU milliseconds per handshake in the client and the server process")
    loop.close()


if __name__ == "__main__":
    main()
