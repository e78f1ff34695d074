"""Capacity of the embedded EAS target (a script, not a test).

The target runs in its own process, pinned to one core (os.sched_setaffinity
where available); this process drives it with a lean raw-asyncio HTTP/1.1
client (keep-alive connections, pre-encoded bodies), pinned to another core.

Printed:
* two-step provisionings/s (initial Provision + acknowledgement, new device ids),
* Provision requests/s (the same run, counted per request),
* FolderSync requests/s (steady state: provisioned devices, current sync key),
* held Pings: how many are held at once for each level, the target's RSS at that
  count, and how fast they are all answered when mail arrives for every user.

Bounded in time (well under 2 minutes) and in file descriptors (each held Ping
is one connection: one fd here and one in the target; levels are capped so that
neither process passes 18,000 open files).

Then the multi-process target (loadgen/exchange/cluster.py: users sharded over
processes, each on its own 127.0.0.x address), driven by several client
processes (one process may open at most 20,000 files here; one destination
ip:port gives a client ~28,000 ephemeral ports): ``--cluster PINGS:TARGETS:CLIENTS``
(default 20000:2:2) and ``--scale`` (e.g. 100000:8:8).  Each client provisions
its devices two-step against their users' processes (provisionings/s in all and
per target process, with the target processes' CPU), then holds one Ping per
device with a minimal asyncio.Protocol client (the request bytes, one response),
paced (``--open-rate``) so that the targets' listen backlogs do not overflow.
Printed: Pings held (per process), the target processes' RSS in all and per held
Ping, whether that is within 1 GiB, the clients' RSS, and how fast new mail for
every user answers them all.  Every process raises RLIMIT_NOFILE to the hard
limit; heartbeat ``--heartbeat`` (120 s; the target's bounds are set to allow
it), time budget ``--budget``; the bench stops only the processes it started.

    .venv/bin/python bench/target_bench.py [--seconds 6] [--pings 5000,10000]
    .venv/bin/python bench/target_bench.py --no-single --cluster '' --scale 100000:8:8
"""

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import _wbxml  # noqa: E402
from loadgen.eas import commands  # noqa: E402

MAX_FDS = 18_000
AUTH_CACHE = {}


def _pin(core):
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        try:
            os.sched_setaffinity(0, {cores[core % len(cores)]})
            return cores[core % len(cores)]
        except OSError:
            return None
    return None


def _raise_nofile():
    """The soft open-file limit up to the hard one (every process of the bench calls it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else MAX_FDS + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _loop():
    try:
        import uvloop

        return uvloop.new_event_loop(), "uvloop"
    except ImportError:
        return asyncio.new_event_loop(), "asyncio"


# --------------------------------------------------------------------------- target process


def target_main(conn, users):
    core = _pin(0)
    _raise_nofile()
    import logging

    logging.disable(logging.CRITICAL)
    from loadgen.exchange.admin import start_admin
    from loadgen.exchange.server import start_target
    from loadgen.exchange.state import TargetState

    loop, kind = _loop()
    asyncio.set_event_loop(loop)

    async def main():
        state = TargetState(users=users, seed=1, ping_min=1, max_concurrency=10)
        runner, target, url = await start_target("127.0.0.1", 0, state)
        arunner, aurl, token = await start_admin("127.0.0.1", 0, target)
        conn.send((url, aurl, token, core, kind, _wbxml.IMPLEMENTATION))
        while True:
            await asyncio.sleep(3600)

    loop.run_until_complete(main())


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_seconds(pid):
    """utime + stime of a process (to tell whether the target or this client was the limit)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- lean client

_CL = re.compile(rb"content-length:\s*(\d+)", re.I)


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, path, body, headers):
        if self.writer is None:
            await self.open()
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n%s"
                          % (path, len(body), headers, body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        m = _CL.search(head)
        data = await self.reader.readexactly(int(m.group(1))) if m else b""
        return status, data

    def close(self):
        if self.writer is not None:
            self.writer.close()


def auth_header(n):
    import base64

    return b"Authorization: Basic " + base64.b64encode(b"user%d:Pass%d!" % (n, n)) + b"\r\n"


def headers_for(user, key=None, version=b"14.1"):
    h = auth_header(user) + b"MS-ASProtocolVersion: " + version + b"\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
    if key is not None:
        h += b"X-MS-PolicyKey: " + key.encode() + b"\r\n"
    return h


def path_for(user, device, cmd):
    return b"/Microsoft-Server-ActiveSync?Cmd=%s&User=user%d&DeviceId=%s&DeviceType=Bench" % (
        cmd, user, device.encode())


INITIAL = commands.provision_initial({"Model": "Bench 1", "OS": "BenchOS 1", "UserAgent": "Bench/1.0"})


async def provision(conn, user, device):
    status, data = await conn.request(path_for(user, device, b"Provision"), INITIAL, headers_for(user, "0"))
    r = commands.parse_provision(_wbxml.decode(data))
    status, data = await conn.request(path_for(user, device, b"Provision"), commands.provision_ack(r.policy_key, 1),
                                      headers_for(user, r.policy_key))
    final = commands.parse_provision(_wbxml.decode(data)).policy_key
    if status != 200 or not final:
        raise RuntimeError("provisioning failed: %s" % status)
    return final


async def bench_provisioning(host, port, users, seconds, concurrency):
    done = []
    counter = [0]
    stop = time.perf_counter() + seconds

    async def worker(w):
        conn = Conn(host, port)
        while time.perf_counter() < stop:
            n = counter[0]
            counter[0] += 1
            user = n % users
            device = "P%d" % n
            key = await provision(conn, user, device)
            done.append((user, device, key))
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return done, time.perf_counter() - t0


async def bench_foldersync(host, port, devices, seconds, concurrency):
    count = [0]
    stop = time.perf_counter() + seconds
    body0 = commands.foldersync("0")
    body1 = commands.foldersync("1")

    async def worker(w):
        conn = Conn(host, port)
        user, device, key = devices[w]
        path, headers = path_for(user, device, b"FolderSync"), headers_for(user, key)
        status, _ = await conn.request(path, body0, headers)
        while time.perf_counter() < stop:
            status, _ = await conn.request(path, body1, headers)
            if status != 200:
                raise RuntimeError("FolderSync answered %d" % status)
            count[0] += 1
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return count[0], time.perf_counter() - t0


async def admin_call(aurl, token, method, path, body=None):
    host, port = aurl[len("http://"):].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    data = json.dumps(body).encode() if body is not None else b""
    writer.write(b"%s %s HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                 % (method.encode(), path.encode(), token.encode(), len(data), data))
    raw = await reader.read()
    writer.close()
    return json.loads(raw.split(b"\r\n\r\n", 1)[1] or b"null")


async def bench_pings(host, port, aurl, token, pid, devices, level, deadline):
    """Hold ``level`` Pings (one per device/user), then wake them all with new mail."""
    body = _wbxml.encode(("Ping:Ping", [("Ping:HeartbeatInterval", "900"), ("Ping:Folders", [
        ("Ping:Folder", [("Ping:Id", "1"), ("Ping:Class", "Email")])])]))
    conns = []
    results = []

    async def one(user, device, key):
        conn = Conn(host, port)
        conns.append(conn)
        try:
            await conn.open()
            status, data = await conn.request(path_for(user, device, b"Ping"), body, headers_for(user, key))
            results.append(commands.root_status(_wbxml.decode(data)) if status == 200 else -status)
        except (OSError, asyncio.IncompleteReadError) as exc:
            results.append(type(exc).__name__)

    base = rss_mb(pid)
    t0 = time.perf_counter()
    tasks = []
    for user, device, key in devices[:level]:
        tasks.append(asyncio.create_task(one(user, device, key)))
        if len(tasks) % 500 == 0:
            await asyncio.sleep(0)  # let connections open in batches
    held = 0
    while time.perf_counter() < deadline:
        held = (await admin_call(aurl, token, "GET", "/admin/counters"))["held_pings"]
        if held >= level or results:
            break
        await asyncio.sleep(0.2)
    opened = time.perf_counter() - t0
    rss = rss_mb(pid)
    t1 = time.perf_counter()
    await admin_call(aurl, token, "POST", "/admin/mail", {"fraction": 1.0, "count": 1, "seed": 1})
    await asyncio.wait_for(asyncio.gather(*tasks), max(5.0, deadline - time.perf_counter()))
    woke = time.perf_counter() - t1
    for c in conns:
        c.close()
    changed = sum(1 for r in results if r == 2)
    return held, opened, rss, base, changed, woke, [r for r in results if r != 2][:5]


async def client_main(args, url, aurl, token, pid):
    host, port = url[len("http://"):].split("/")[0].split(":")
    port = int(port)
    start = time.perf_counter()
    print("target idle RSS: %.1f MB" % rss_mb(pid))

    cpu0, me0 = cpu_seconds(pid), time.process_time()
    devices, elapsed = await bench_provisioning(host, port, args.users, args.seconds, args.concurrency)
    n = len(devices)
    busy = "target CPU %.0f%%, client CPU %.0f%%" % (100 * (cpu_seconds(pid) - cpu0) / elapsed,
                                                     100 * (time.process_time() - me0) / elapsed)
    print("two-step provisionings/s: %.0f  (%d in %.1f s, %d concurrent connections; %s)"
          % (n / elapsed, n, elapsed, args.concurrency, busy))
    print("Provision requests/s:     %.0f" % (2 * n / elapsed))

    # one device per user for the steady-state and Ping phases
    seen = {}
    for user, device, key in devices:
        seen.setdefault(user, (user, device, key))
    per_user = list(seen.values())
    levels = [lv for lv in args.pings if lv < MAX_FDS - 500]
    need = max(levels + [args.concurrency])
    extra = 0
    conn = Conn(host, port)
    for user in range(min(need, args.users)):
        if user not in seen:
            key = await provision(conn, user, "X%d" % user)
            seen[user] = (user, "X%d" % user, key)
            per_user.append(seen[user])
            extra += 1
    conn.close()
    per_user.sort()

    cpu0, me0 = cpu_seconds(pid), time.process_time()
    count, elapsed = await bench_foldersync(host, port, per_user, args.seconds, args.concurrency)
    busy = "target CPU %.0f%%, client CPU %.0f%%" % (100 * (cpu_seconds(pid) - cpu0) / elapsed,
                                                     100 * (time.process_time() - me0) / elapsed)
    print("FolderSync requests/s:    %.0f  (%d in %.1f s, %d concurrent connections, steady-state sync key; %s)"
          % (count / elapsed, count, elapsed, args.concurrency, busy))
    print("target RSS after %d partnerships: %.1f MB" % (n + extra, rss_mb(pid)))

    for level in levels:
        remaining = 110 - (time.perf_counter() - start)
        if remaining < 15:
            print("held Pings %d: skipped (time budget)" % level)
            continue
        held, opened, rss, base, changed, woke, odd = await bench_pings(
            host, port, aurl, token, pid, per_user, level, time.perf_counter() + min(40, remaining - 10))
        print("held Pings: %d of %d held at once (opened in %.1f s); target RSS %.1f MB (%.1f KB per held Ping "
              "over the %.1f MB before); all answered Status 2 after new mail: %d in %.2f s (%.0f/s)%s"
              % (held, level, opened, rss, (rss - base) * 1024 / max(held, 1), base, changed, woke, changed / woke if woke else 0,
                 "" if not odd else "; other results: %r" % (odd,)))
        await asyncio.sleep(0.5)
    print("total bench time: %.1f s" % (time.perf_counter() - start))


# --------------------------------------------------------------------------- multi-process target


class PingProtocol(asyncio.Protocol):
    """The minimal client of one held Ping: send the request bytes, read one response."""

    __slots__ = ("request", "buf", "done", "transport")

    def __init__(self, request, done):
        self.request = request
        self.done = done  # callback(result), called once
        self.buf = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)
        self.request = None

    def data_received(self, data):
        self.buf += data
        head, sep, body = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return
        m = _CL.search(head)
        length = int(m.group(1)) if m else 0
        if len(body) < length:
            return
        status = int(head[9:12])
        result = commands.root_status(_wbxml.decode(body[:length])) if status == 200 and length else -status
        self.buf = b""
        done, self.done = self.done, None
        self.transport.close()
        done(result)

    def connection_lost(self, exc):
        if self.done is not None:  # closed before a whole response
            done, self.done = self.done, None
            done("lost")


def _ping_request(user, device, key, heartbeat):
    body = _wbxml.encode(("Ping:Ping", [("Ping:HeartbeatInterval", str(heartbeat)), ("Ping:Folders", [
        ("Ping:Folder", [("Ping:Id", "1"), ("Ping:Class", "Email")])])]))
    return b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n%s" % (
        path_for(user, device, b"Ping"), len(body), headers_for(user, key), body)


def cluster_client_main(conn, index, clients, urls, total, heartbeat, provision_concurrency, open_rate):
    """A client process: provision its devices (users u with u % clients == index, each sent to the
    target process of its user, u % len(urls)), then, on "ping", hold one Ping per device."""
    _raise_nofile()
    loop, _ = _loop()
    asyncio.set_event_loop(loop)
    ends = [(u.split("/")[2].split(":")[0], int(u.split("/")[2].split(":")[1])) for u in urls]
    users = list(range(index, total, clients))

    async def main():
        keys = {}
        by_target = {}
        for u in users:
            by_target.setdefault(u % len(ends), []).append(u)
        t0 = time.perf_counter()

        async def worker(k, queue):
            c = Conn(*ends[k])
            while queue:
                u = queue.pop()
                keys[u] = await provision(c, u, "C%d" % u)
            c.close()
        workers = []
        for k, queue in by_target.items():
            workers += [worker(k, queue) for _ in range(provision_concurrency)]
        await asyncio.gather(*workers)
        conn.send(("provisioned", len(keys), time.perf_counter() - t0))
        await loop.run_in_executor(None, conn.recv)  # "ping"
        results = {}
        pending = [len(users)]
        finished = loop.create_future()

        def done(result):
            results[result] = results.get(result, 0) + 1
            pending[0] -= 1
            if pending[0] == 0 and not finished.done():
                finished.set_result(None)

        protocols = []
        t0 = time.perf_counter()
        errors = 0
        async def open_one(u):
            host, port = ends[u % len(ends)]
            try:
                _, proto = await loop.create_connection(
                    lambda: PingProtocol(_ping_request(u, "C%d" % u, keys[u], heartbeat), done), host, port)
                protocols.append(proto)
                return 0
            except OSError as exc:
                done("connect " + (exc.strerror or type(exc).__name__))
                return 1

        for n in range(0, len(users), 50):  # 50 at once, paced: faster than the target accepts would
            errors += sum(await asyncio.gather(*(open_one(u) for u in users[n:n + 50])))  # overflow its backlog
            ahead = t0 + (n + 50) / open_rate - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
        conn.send(("opened", len(protocols), errors, time.perf_counter() - t0, rss_mb(os.getpid())))
        try:
            await asyncio.wait_for(finished, heartbeat + 30)
        except asyncio.TimeoutError:
            pass
        conn.send(("results", results))

    loop.run_until_complete(main())


async def cluster_bench(label, total, processes, clients, heartbeat, budget, open_rate):
    """``total`` held Pings against a ``processes``-process target, from ``clients`` client processes."""
    import logging

    logging.disable(logging.CRITICAL)
    from loadgen.exchange.cluster import TargetCluster

    start = time.perf_counter()
    deadline = start + budget
    cluster = TargetCluster(processes, listen=("127.0.0.1:0",), users=total, seed=1, ping_min=1,
                            ping_max=max(3540, heartbeat), max_concurrency=10)
    print("\n== %s: %d held Pings, %d target processes, %d client processes, heartbeat %d s, Pings opened at "
          "%.0f/s" % (label, total, processes, clients, heartbeat, open_rate))
    await cluster.start()
    ctx = mp.get_context("spawn")
    procs, pipes = [], []
    loop = asyncio.get_running_loop()
    try:
        idle = [rss_mb(pid) for pid in cluster.pids]
        print("target processes %s on %s; idle RSS %.1f MB in all (%s)" % (
            cluster.pids, ", ".join(u.split("/")[2] for u in cluster.urls), sum(idle),
            ", ".join("%.1f" % r for r in idle)))
        per_client_conc = max(2, 48 // clients)
        for c in range(clients):
            a, b = ctx.Pipe()
            proc = ctx.Process(target=cluster_client_main, daemon=True,
                               args=(b, c, clients, cluster.urls, total, heartbeat, per_client_conc,
                                     open_rate / clients))
            proc.start()
            procs.append(proc)
            pipes.append(a)

        async def recv(pipe):
            left = deadline - time.perf_counter()
            if left <= 0 or not await loop.run_in_executor(None, pipe.poll, left):
                raise TimeoutError("client did not answer within the time budget")
            return pipe.recv()

        cpu0 = [cpu_seconds(pid) for pid in cluster.pids]
        t0 = time.perf_counter()
        prov = [await recv(p) for p in pipes]
        elapsed = max(m[2] for m in prov)
        busy = [100 * (cpu_seconds(pid) - c0) / elapsed for pid, c0 in zip(cluster.pids, cpu0)]
        done = sum(m[1] for m in prov)
        print("two-step provisionings/s: %.0f in all, %.0f per target process (%d devices in %.1f s, %d "
              "connections per target process; target CPU %s%%; %.0f per CPU-second of a target process)" % (
                  done / elapsed, done / elapsed / processes, done, elapsed, per_client_conc * clients,
                  "/".join("%.0f" % b for b in busy), done / max(1e-9, sum(busy) * elapsed / 100)))
        base = [rss_mb(pid) for pid in cluster.pids]
        print("target RSS after %d partnerships: %.1f MB in all" % (done, sum(base)))
        t1 = time.perf_counter()
        cpu0 = [cpu_seconds(pid) for pid in cluster.pids]
        for p in pipes:
            p.send("ping")
        opened = [await recv(p) for p in pipes]
        held, per = 0, []
        while time.perf_counter() < deadline:
            counters = await cluster.counters()
            held, per = counters["held_pings"], [p["held_pings"] for p in counters["processes"]]
            if held >= total:
                break
            await asyncio.sleep(0.5)
        took = time.perf_counter() - t1
        busy = [100 * (cpu_seconds(pid) - c0) / took for pid, c0 in zip(cluster.pids, cpu0)]
        rss = [rss_mb(pid) for pid in cluster.pids]
        parent = rss_mb(os.getpid())
        client_rss = sum(m[4] for m in opened)
        errors = sum(m[2] for m in opened)
        total_rss = sum(rss)
        print("held Pings: %d of %d held at once (%s per process; all held after %.1f s, connections opened in "
              "%.1f s; %d connect errors; target CPU %s%%)" % (held, total, "/".join(map(str, per)), took,
                                                             max(m[3] for m in opened), errors,
                                                             "/".join("%.0f" % b for b in busy)))
        print("target RSS with the Pings held: %.1f MB in all (%s MB per process) = %.1f KB per held Ping in all, "
              "%.1f KB per held Ping over the %.1f MB before; %s 1 GiB%s" % (
                  total_rss, "/".join("%.0f" % r for r in rss), total_rss * 1024 / max(held, 1),
                  (total_rss - sum(base)) * 1024 / max(held, 1), sum(base),
                  "within" if total_rss < 1024 else "NOT within",
                  "; cluster parent (admin, merged metrics) %.1f MB besides" % parent))
        print("client processes RSS %.1f MB in all (%.1f KB per held Ping)" % (
            client_rss, client_rss * 1024 / max(held, 1)))
        t2 = time.perf_counter()
        users = await cluster.deliver_mail_fraction(1.0, 1, seed=1)
        results = {}
        for p in pipes:
            for k, n in (await recv(p))[1].items():
                results[k] = results.get(k, 0) + n
        woke = time.perf_counter() - t2
        print("new mail for %d users: %d Pings answered Status 2 in %.2f s (%.0f/s)%s" % (
            users, results.get(2, 0), woke, results.get(2, 0) / woke if woke else 0,
            "" if set(results) <= {2} else "; other results: %r" % {k: v for k, v in results.items() if k != 2}))
        print("%s: %s" % (label, "HELD" if held >= total and results.get(2, 0) == total else "NOT held"))
        print("time: %.1f s" % (time.perf_counter() - start))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(5)
        await cluster.cleanup()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=6.0, help="duration of each rate measurement")
    p.add_argument("--concurrency", type=int, default=64, help="client connections for the rate measurements")
    p.add_argument("--users", type=int, default=20000)
    p.add_argument("--pings", default="5000,10000", help="held-Ping levels to try (comma list)")
    p.add_argument("--single", action=argparse.BooleanOptionalAction, default=True,
                   help="the one-process measurements (default on)")
    p.add_argument("--cluster", default="20000:2:2",
                   help="PINGS:TARGET_PROCESSES:CLIENT_PROCESSES held against a multi-process target ('' to skip)")
    p.add_argument("--scale", default="",
                   help="the same at scale, e.g. 100000:8:8 (default: skipped)")
    p.add_argument("--heartbeat", type=int, default=120, help="Ping HeartbeatInterval of the multi-process runs (s)")
    p.add_argument("--budget", type=float, default=240, help="time budget of each multi-process run (s)")
    p.add_argument("--open-rate", type=float, default=3000, help="new Ping connections per second, all clients")
    args = p.parse_args()
    args.pings = [int(x) for x in args.pings.split(",") if x]
    _raise_nofile()
    if args.single:
        single(args)
    for label, spec in (("cluster", args.cluster), ("scale", args.scale)):
        if spec:
            total, processes, clients = (int(x) for x in spec.split(":"))
            loop, _ = _loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(cluster_bench(label, total, processes, clients, args.heartbeat, args.budget,
                                                 args.open_rate))
            loop.close()


def single(args):
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target_main, args=(child, args.users), daemon=True)
    proc.start()
    try:
        url, aurl, token, core, kind, codec = parent.recv()
        mine = _pin(1)
        print("target pid %d on core %s (%s, codec %s); client on core %s; url %s"
              % (proc.pid, core, kind, codec, mine, url))
        loop, _ = _loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(client_main(args, url, aurl, token, proc.pid))
    finally:
        proc.terminate()
        proc.join(5)
        if hasattr(os, "sched_setaffinity"):  # the multi-process runs use every core
            os.sched_setaffinity(0, range(os.cpu_count() or 1))


if __name__ == "__main__":
    main()
