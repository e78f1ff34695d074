"""The embedded target's memory per held Ping over TLS and over plain HTTP (a script, not a test).

For each transport (plain, TLS with an RSA 2048 and/or an ECDSA P-256 throwaway certificate:
``--tls-self-signed --tls-key-type``), a fresh ``python -m loadgen target`` process with ``--users N``;
this process provisions one device per user (two-step Provision, MS-ASPROV 3.1.5, over a few
keep-alive connections), takes the target's RSS, then holds one Ping per device (HeartbeatInterval
900 s, MS-ASCMD 2.2.1.13; one connection each, as a phone's push connection), waits until the
target's admin API (/admin/counters) counts them all held, and takes the RSS again:
(after - before) / N is the target's memory per held Ping.  The client side uses the event loop's
TLS transport (uvloop) and verifies the certificate with the throwaway CA.

Also printed: the target's CPU seconds per Ping connection opened (its TLS handshake and the request;
/proc/PID/stat) -- not wall time: the machine may be shared.  Every process it starts is stopped by
its PID; files: one per held Ping here and one in the target (N is capped at 18,000).

    .venv/bin/python bench/target_tls_memory.py [--pings 5000] [--kinds plain,rsa,ec]
"""

import argparse
import asyncio
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import target_bench as tb  # noqa: E402  (bench/target_bench.py: the lean client pieces)

HOST = "127.0.0.1"
MAX_PINGS = 18_000


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class TLSConn(tb.Conn):
    """bench/target_bench.py's keep-alive connection, over TLS when given a context."""

    def __init__(self, host, port, ctx=None):
        super().__init__(host, port)
        self.ctx = ctx

    async def open(self):
        if self.ctx is None:
            return await super().open()
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=self.ctx,
                                                                 server_hostname=HOST)


class Target:
    """``python -m loadgen target`` in its own process, stopped by its PID."""

    def __init__(self, users, kind, workdir):
        self.kind = kind
        token_file = os.path.join(workdir, "token")
        with open(token_file, "w") as f:
            f.write("bench-token-%d\n" % os.getpid())
        os.chmod(token_file, 0o600)
        self.token = open(token_file).read().strip()
        args = [sys.executable, "-m", "loadgen", "target", "--listen", "%s:0" % HOST, "--users", str(users),
                "--admin-listen", "%s:0" % HOST, "--admin-token-file", token_file, "--max-concurrency", "10"]
        if kind != "plain":
            args += ["--tls-self-signed", "--tls-key-type", kind]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     env=dict(os.environ, PYTHONPATH=os.path.join(HERE, "..")))
        self.url = self.admin = self.ca = None
        end = time.monotonic() + 120
        while self.admin is None:
            self.log.seek(0)
            text = self.log.read().decode(errors="replace")
            m = re.search(r"listening on (\S+)", text)
            a = re.search(r"admin API and /metrics on (\S+)", text)
            c = re.search(r"--ca (\S+)", text)
            if m and a:
                self.url, self.admin, self.ca = m.group(1), a.group(1), c.group(1) if c else None
            elif self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise SystemExit("easload target did not start: %s" % text[-800:])
            else:
                time.sleep(0.1)
        self.port = int(self.url.split("/")[2].split(":")[1])

    def rss(self):
        return rss_kib(self.proc.pid)

    def cpu(self):
        return tb.cpu_seconds(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to this one PID: the target's normal shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


async def provision_all(port, ctx, users, concurrency):
    keys = {}
    queue = list(range(users))

    async def worker():
        conn = TLSConn(HOST, port, ctx)
        while queue:
            u = queue.pop()
            keys[u] = await tb.provision(conn, u, "M%d" % u)
        conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return keys


async def hold_pings(target, ctx, keys, open_concurrency, deadline):
    """Hold one Ping per device; returns (held, protocols' results so far, transports)."""
    loop = asyncio.get_running_loop()
    results = []
    transports = []
    gate = asyncio.Semaphore(open_concurrency)

    async def one(u, key):
        async with gate:
            try:
                tr, _ = await loop.create_connection(
                    lambda: tb.PingProtocol(tb._ping_request(u, "M%d" % u, key, 900), results.append), HOST,
                    target.port, ssl=ctx, server_hostname=HOST if ctx else None)
                transports.append(tr)
            except (OSError, ssl.SSLError) as exc:
                results.append(type(exc).__name__)

    opening = asyncio.gather(*(one(u, k) for u, k in keys.items()))
    held = 0
    while time.monotonic() < deadline:
        held = (await tb.admin_call(target.admin, target.token, "GET", "/admin/counters"))["held_pings"]
        if held >= len(keys) or results:
            break
        await asyncio.sleep(0.5)
    await opening
    return held, results, transports


async def measure(kind, pings, workdir, budget):
    target = Target(pings, kind, workdir)
    try:
        ctx = None
        if kind != "plain":
            ctx = ssl.create_default_context(cafile=target.ca)
        keys = await provision_all(target.port, ctx, pings, 8)
        await asyncio.sleep(1.0)  # let the target settle before the baseline
        before = target.rss()
        cpu0 = target.cpu()
        t0 = time.monotonic()
        held, results, transports = await hold_pings(target, ctx, keys, 64, time.monotonic() + budget)
        opened = time.monotonic() - t0
        cpu = target.cpu() - cpu0
        await asyncio.sleep(1.0)
        after = target.rss()
        for tr in transports:
            tr.abort()
        odd = sorted(set(map(str, results)))[:5]
        return dict(kind=kind, held=held, before=before, after=after, per=(after - before) / max(held, 1),
                    cpu_ms=1000 * cpu / max(held, 1), opened=opened, odd=odd)
    finally:
        target.stop()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pings", type=int, default=5000, help="devices holding a Ping (one user each)")
    p.add_argument("--kinds", default="plain,rsa,ec", help="plain, rsa (RSA 2048), ec (ECDSA P-256)")
    p.add_argument("--budget", type=float, default=120.0, help="seconds allowed for opening the Pings")
    args = p.parse_args(argv)
    if not 0 < args.pings <= MAX_PINGS:
        raise SystemExit("--pings: 1 to %d (one file per Ping in each process)" % MAX_PINGS)
    tb._raise_nofile()
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    print("held Pings: %d per transport; %d cores, load average %.1f" % (args.pings, os.cpu_count(),
                                                                          os.getloadavg()[0]))
    print("%-6s %7s %11s %11s %14s %16s %9s" % ("kind", "held", "RSS before", "RSS after", "KiB/held Ping",
                                                 "target CPU ms/Ping", "opened s"))
    with tempfile.TemporaryDirectory(prefix="easload-tlsmem-") as workdir:
        for kind in [k for k in args.kinds.split(",") if k]:
            r = loop.run_until_complete(measure(kind, args.pings, workdir, args.budget))
            print("%-6s %7d %8.1f MiB %8.1f MiB %14.1f %16.3f %9.1f%s" % (
                r["kind"], r["held"], r["before"] / 1024, r["after"] / 1024, r["per"], r["cpu_ms"], r["opened"],
                "  other results: %s" % r["odd"] if r["odd"] else ""), flush=True)
    loop.close()


if __name__ == "__main__":
    main()
