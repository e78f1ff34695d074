"""Client memory per device holding a Ping, and many devices holding Pings on one machine.

    python bench/scale_run.py --devices 10000                 # one client worker, breakdown
    python bench/scale_run.py --devices 100000 --workers 6    # 100k devices, 6 client workers (~4 min)
    python bench/scale_run.py --devices 10000 --workers 2 --tls --rate 40   # over TLS (TLS 1.3, verified)

Over TLS (``--tls``) the responders use a throwaway CA and the devices verify it; the report adds
where the RSS grew (malloc heap, other anonymous memory), malloc's bytes in use and free inside the
heap, and the TLS sessions devices keep without a connection.  On a busy machine keep the rate low:
handshake storms time out and the retries' garbage inflates RSS.

Targets: canned responders in their own processes, one per client worker, each
on its own loopback address (127.0.0.2, 127.0.0.3, ...).  A responder answers
Provision (policy, then final key), FolderSync (a hierarchy with an Inbox) and
Sync (a new sync key) from pre-encoded bodies and *holds* every Ping without
answering, as a server with nothing new to say does for a whole heartbeat.

Clients: easload's engine, full device logic on the lean transport, in mode
ping with a long heartbeat.  Each worker measures its RSS after imports, before
its devices exist, and again once every device is parked in a held Ping (and
its ordinary keep-alive connection was closed by the idle timeout, as IIS's
two-minute connectionTimeout would do; ``--idle`` shortens the wait).  The
difference divided by the devices is the client's memory per holding device;
kernel socket buffers are not in RSS.  ``--breakdown`` also sizes one device's
objects (device, identity, endpoint, connection, the parked request's record,
and the task and coroutine frames of a Ping held by a task, if any).
Prints figures; asserts nothing.  One process may hold at most 20,000 open
files here: keep --devices / --workers <= ~18,000.
"""

import argparse
import asyncio
import ctypes
import gc
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _responders import INBOX_ONLY, raise_nofile, serve_process  # noqa: E402


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def malloc_kib():
    """(bytes in use, bytes free inside the heap) of glibc's malloc, KiB (mallinfo2(3)); (0, 0) elsewhere.
    RSS minus what is in use is what fragmentation and Python's own pools keep."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return 0, 0
    return (info.uordblks + info.hblkhd) // 1024, info.fordblks // 1024


def rss_split_kib():
    """RSS in KiB of the process's malloc heap ([heap], grown by brk) and of its other anonymous mappings
    (Python's object arenas, malloc's mmapped blocks, uvloop's buffers), from /proc/self/smaps."""
    heap = anon = 0
    where = None
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                    parts = line.split()
                    where = "heap" if parts[-1] == "[heap]" else ("anon" if len(parts) == 5 else None)
                elif line.startswith("Rss:") and where is not None:
                    kib = int(line.split()[1])
                    if where == "heap":
                        heap += kib
                    else:
                        anon += kib
    except OSError:
        pass
    return heap, anon


def breakdown(device, task):
    """Bytes of one holding device's own objects (shallow sizes; shared parts not counted)."""
    size = sys.getsizeof
    out = {}
    out["Device object (slots) + attribute dict if any"] = size(device) + (size(device.__dict__) if getattr(device, "__dict__", None) else 0)
    prov = device.prov
    out["Provisioner (+ dict if any)"] = size(prov) + (size(prov.__dict__) if hasattr(prov, "__dict__") else 0)
    ident = device.ident
    out["identity (Identity + DeviceInformation dict and its strings)"] = (
        size(ident) + size(ident.device_id) + size(ident.imei) + size(ident.info)
        + sum(size(v) for k, v in ident.info.items() if k in ("IMEI", "FriendlyName", "PhoneNumber")))
    ep = device.endpoint
    out["DeviceEndpoint (+ own prefix and Authorization bytes)"] = size(ep) + size(ep._prefix) + size(ep._auth)
    conns = [c for c in (ep.conn, ep.ping_conn) if c is not None and not c.closed]
    out["open connections"] = len(conns)
    out["_Connection protocol objects"] = sum(size(c) for c in conns)
    out["httptools parsers (Python object; none while a Ping is held)"] = sum(size(c.parser) for c in conns
                                                                          if c.parser is not None)
    out["uvloop TCPTransport objects (Python object)"] = sum(size(c.transport) for c in conns)
    waiters = [c.waiter for c in conns if c.waiter is not None]
    out["request waiters (%s)" % ", ".join(sorted({type(w).__name__ for w in waiters}))] = sum(
        size(w) + (size(w.t0) if hasattr(w, "t0") else 0) for w in waiters)
    frames = 0
    depth = 0
    coro = task.get_coro() if task is not None else None
    while coro is not None and hasattr(coro, "cr_frame"):
        frames += size(coro)
        depth += 1
        coro = coro.cr_await
    out["task: %s" % ("none (the Ping is parked)" if task is None else "yes")] = size(task) if task is not None else 0
    out["task coroutine chain: depth"] = depth
    out["task coroutine chain: bytes"] = frames
    return out


def client(index, url, devices, heartbeat, idle, settle, rate, result_queue, want_breakdown, ca_file=None,
           target_extra="", load_extra="", deadline=1800.0):
    raise_nofile()
    import uvloop

    from loadgen.run import engine
    from loadgen import scenario

    sc = scenario.parse(f"""
duration = 100000
seed = {index + 1}
[target]
url = "{url[0] if isinstance(url, list) else url}"
{'ca_file = "%s"' % ca_file if ca_file else ""}
{target_extra}
[auth]
users = {devices}
[population]
devices = {devices}
devices_per_user = 1
versions = {{ "14.1" = 1 }}
[load]
ramp_up = {max(1.0, devices / rate)}
mode = "ping"
heartbeat = {heartbeat}
think_time = 0
timeout = 60
graceful_stop = 1
idle_timeout = {idle}
{load_extra}
""", "scale.toml")
    gc.collect()
    if want_breakdown == "trace":
        import tracemalloc
        tracemalloc.start(1)
        base = tracemalloc.take_snapshot()
    before = rss_kib()
    malloc_before = malloc_kib()
    split_before = rss_split_kib()
    started = time.monotonic()
    report = {}

    async def main():
        state = {"holding_since": None}

        def on_tick(stats, devs, final):
            if final or "rss_kib" in report:
                return
            holding = sum(1 for d in devs if d.in_flight == "Ping")
            open_conns = sum((d.endpoint.conn is not None and not d.endpoint.conn.closed)
                             + (d.endpoint.ping_conn is not None and not d.endpoint.ping_conn.closed) for d in devs)
            if holding == devices and open_conns == devices:
                if state["holding_since"] is None:
                    state["holding_since"] = time.monotonic()
                if time.monotonic() - state["holding_since"] >= settle:
                    gc.collect()
                    report.update(rss_kib=rss_kib(), holding=holding, open=open_conns, errors=stats.errors(),
                                  seconds=round(time.monotonic() - started, 1),
                                  failures=sorted(("%s %s %s" % k, n) for k, n in stats.by_key.items()
                                                  if k[1] not in ("ok", "reprovision")))
                    if want_breakdown:
                        holder = next(d for d in devs if d.in_flight == "Ping")
                        # every holding device's task has the same chain: measure any (no f_locals,
                        # which would materialise a dict per frame)
                        holder_task = next((t for t in asyncio.all_tasks()
                                            if getattr(t.get_coro(), "__name__", "") in ("start_device", "_life")),
                                           None)  # none: the Pings are parked (engine.Lives)
                        report["breakdown"] = breakdown(holder, holder_task)
                    if want_breakdown == "trace":
                        snap = tracemalloc.take_snapshot()
                        diff = snap.compare_to(base, "lineno")
                        report["breakdown"]["traced total (Python allocations)"] = "%.0f B/device" % (
                            sum(st.size_diff for st in diff) / devices)
                        top = diff[:30]
                        report["breakdown"].update(
                            ("traced %s:%d" % (Path(st.traceback[0].filename).name, st.traceback[0].lineno),
                             "%.0f B/device (%d blocks)" % (st.size_diff / devices, st.count_diff)) for st in top)
                    # report, and keep holding: the main process stops the workers once all have reported,
                    # so every device of every worker holds its Ping at the same time
                    report["sessions_kept"] = sum(getattr(d.endpoint, "tls_session", None) is not None for d in devs)
                    import os
                    if os.environ.get("D1_DEBUG"):
                        ex = [d for d in devs if getattr(d.endpoint, "tls_session", None) is not None][:3]
                        report["debug"] = [(repr(d.endpoint.conn), d.endpoint.ping_conn.tls is not None,
                                            d.endpoint.ping_conn.tls.session_reused) for d in ex]
                    split = rss_split_kib()
                    report["heap_kib"] = split[0] - split_before[0]
                    report["anon_kib"] = split[1] - split_before[1]
                    used, free = malloc_kib()
                    report.update(index=index, devices=devices, before_kib=before, malloc_used_kib=used - malloc_before[0],
                                  malloc_free_kib=free - malloc_before[1])
                    result_queue.put(dict(report))
            elif time.monotonic() - started > deadline:
                report.update(rss_kib=rss_kib(), holding=holding, open=open_conns, errors=stats.errors(),
                              seconds=round(time.monotonic() - started, 1), incomplete=True,
                              failures=sorted(("%s %s %s" % k, n) for k, n in stats.by_key.items()
                                              if k[1] not in ("ok", "reprovision"))[:12],
                              index=index, devices=devices, before_kib=before)
                result_queue.put(dict(report))

        try:
            await engine.run(sc, target_url=url, progress=False, on_tick=on_tick, attach_metrics=False)
        except asyncio.CancelledError:
            pass

    uvloop.run(main())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--heartbeat", type=float, default=3000)
    ap.add_argument("--idle", type=float, default=3.0,
                    help="idle timeout of the ordinary connection (s; IIS: 120); while it is open a device holds "
                         "two connections, so keep idle x rate well under the 20,000 files of a process")
    ap.add_argument("--rate", type=float, default=None,
                    help="devices started per second per worker (default: 800/s over all workers, at most 400 "
                         "per worker: 6 workers at 400/s each overload this 2-core machine -- accept queues "
                         "overflow, tens of thousands of timeouts and retries, and their garbage inflates RSS)")
    ap.add_argument("--destinations", type=int, default=1,
                    help="ports each responder listens on, a worker's devices spread over them: with one, each new "
                         "connection's ephemeral port search walks past all of that destination's ports in use (Linux "
                         "__inet_hash_connect, ~5 ms per connect() at 15,000), which at 100,000 TLS devices took a "
                         "core of system time; 4 makes each search about a quarter as long")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds all devices must hold before measuring")
    ap.add_argument("--tls", action="store_true",
                    help="the responders over TLS (a throwaway CA and a certificate for their addresses, --key-type, "
                         "loadgen/exchange/tls.py); the devices verify it as they would a real server's")
    ap.add_argument("--key-type", choices=("rsa", "ec"), default="rsa",
                    help="with --tls: the certificates' keys, RSA 2048 (what Exchange is usually given) or ECDSA P-256")
    ap.add_argument("--server-tickets", type=int, default=None,
                    help="with --tls: TLS 1.3 session tickets the responders send per handshake (OpenSSL's default: 2)")
    ap.add_argument("--target-extra", default="", help="scenario lines added to [target] (e.g. a variant)")
    ap.add_argument("--load-extra", default="", help="scenario lines added to [load] (e.g. transport = \"aiohttp\")")
    ap.add_argument("--deadline", type=float, default=1800.0,
                    help="seconds after which a worker reports what it has (marked INCOMPLETE)")
    ap.add_argument("--breakdown", action="store_true")
    ap.add_argument("--trace", action="store_true", help="with --breakdown: tracemalloc by allocation site (slow)")
    args = ap.parse_args()
    if args.rate is None:
        args.rate = min(400.0, 800.0 / args.workers)
    per_worker = -(-args.devices // args.workers)
    if per_worker > 18000:
        raise SystemExit("scale_run: at most 18,000 devices per worker (20,000 open files per process)")
    ctx = multiprocessing.get_context("fork")
    ports = ctx.Queue()
    results = ctx.Queue()
    servers, clients = [], []
    pki = None
    try:
        urls = []
        hosts = ["127.0.0.%d" % (i + 2) for i in range(args.workers)]
        tls = {}
        if args.tls:
            from loadgen.exchange.tls import TemporaryPKI

            pki = TemporaryPKI(hosts, key_type=args.key_type)
            tls = {"tls": (pki.pki.cert, pki.pki.key), "tls_tickets": args.server_tickets}
        for host in hosts:
            # the shared canned responder: Provision keys, a FolderSync with only the Inbox, Sync on it;
            # every Ping held unanswered, as a server with nothing new to say does for a whole heartbeat
            p = ctx.Process(target=serve_process, args=(ports, None, host),
                            kwargs={"folders": INBOX_ONLY, "fallback": b"Sync", "listeners": args.destinations, **tls},
                            daemon=True)
            p.start()
            servers.append(p)
            group = [ports.get(timeout=30) for _ in range(args.destinations)]
            urls.append(group if len(group) > 1 else group[0])
        t0 = time.monotonic()
        left = args.devices
        for i, url in enumerate(urls):
            n = min(per_worker, left)
            left -= n
            p = ctx.Process(target=client, args=(i, url, n, args.heartbeat, args.idle, args.settle, args.rate, results,
                                                 ("trace" if args.trace else True) if args.breakdown and i == 0
                                                 else False, pki.pki.ca if pki else None, args.target_extra,
                                                 args.load_extra, args.deadline))
            p.start()
            clients.append(p)
        reports = [results.get(timeout=3600) for _ in clients]
        alive = sum(p.is_alive() for p in clients)  # all still holding while the figures are printed
        total = sum(r["devices"] for r in reports)
        holding = sum(r["holding"] for r in reports)
        delta = sum(r["rss_kib"] - r["before_kib"] for r in reports)
        print("%d devices in %d client workers (%d alive, holding at once); %d holding a Ping with %d connections "
              "open; %d failed requests on the way; %.0f s" % (
                  total, len(reports), alive, holding, sum(r["open"] for r in reports),
                  sum(r["errors"] for r in reports), time.monotonic() - t0))
        for r in sorted(reports, key=lambda r: r["index"]):
            print("  worker %d: %6d devices, RSS %7.1f MiB -> %7.1f MiB: %.2f KiB per holding device%s" % (
                r["index"], r["devices"], r["before_kib"] / 1024, r["rss_kib"] / 1024,
                (r["rss_kib"] - r["before_kib"]) / max(r["devices"], 1), " (INCOMPLETE)" if r.get("incomplete") else ""))
            if r.get("debug"):
                print("      debug", r["debug"])
            if r.get("sessions_kept"):
                print("      TLS sessions kept by devices without a connection carrying one: %d" % r["sessions_kept"])
            if r.get("heap_kib") is not None:
                print("      RSS growth: %.2f KiB per device in the malloc heap, %.2f KiB in other anonymous memory "
                      "(Python's arenas, mmapped blocks)" % (r["heap_kib"] / max(r["devices"], 1),
                                                             r["anon_kib"] / max(r["devices"], 1)))
            if r.get("malloc_used_kib") is not None:
                print("      malloc: %.2f KiB per device in use, %.2f KiB per device free inside the heap (fragments)" % (
                    r["malloc_used_kib"] / max(r["devices"], 1), r["malloc_free_kib"] / max(r["devices"], 1)))
            if r.get("failures"):
                print("      failed requests: %s" % ", ".join("%s: %d" % kv for kv in r["failures"]))
            for k, v in r.get("breakdown", {}).items():
                print("      %-55s %s" % (k, v))
        print("client RSS per holding device: %.2f KiB (all workers: %.1f MiB for %d devices)" % (
            delta / max(total, 1), delta / 1024, total))
    finally:
        for p in clients + servers:
            if p.is_alive():
                p.terminate()
        for p in clients + servers:
            p.join(5)
        if pki is not None:
            pki.cleanup()


if __name__ == "__main__":
    main()
