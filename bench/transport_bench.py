"""Transport benchmark: lean vs aiohttp, side by side in one run, against a canned fast responder.

    python bench/transport_bench.py [--conns 64 512] [--seconds 5] [--repeat 3] [--modes device plain]

The responder (bench/_responders.py) runs in its own process pinned to the last
core and answers every Provision with a policy/final key and every other command
with pre-encoded bytes (FolderSync: SyncKey 1, no changes), parsing only the
request line, Content-Length and, for Provision, X-MS-PolicyKey.  The client
runs pinned to core 0, so requests per second are per client core.

* ``device``: easload's engine itself -- provisioning state machine, device
  logic, WBXML codec, stats and metrics -- with zero think time (mode
  foldersync), one device per connection.
* ``plain``: the transport alone, ``await transport.post(...)`` in a loop per
  connection, with pre-encoded bodies.

Runs are interleaved (lean, aiohttp, lean, ...) so that noise from other work on
the machine falls on both; each figure is reported as min / median of the
repeats, with requests per client CPU-second beside it.  Prints figures; asserts
nothing.
"""

import argparse
import asyncio
import multiprocessing
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _responders import serve_process  # noqa: E402 -- after the path


def _scenario(url, transport, devices, seconds):
    from loadgen import scenario

    return scenario.parse(f"""
duration = {seconds}
[target]
url = "{url}"
[auth]
users = {devices}
[population]
devices = {devices}
devices_per_user = 1
versions = {{ "14.1" = 1 }}
[load]
ramp_up = 0
think_time = 0
mode = "foldersync"
transport = "{transport}"
graceful_stop = 2
""", "bench.toml")


def _loop_factory():
    try:
        import uvloop
        return uvloop.new_event_loop
    except ImportError:
        return None


def run_device(url, transport, devices, seconds):
    """The engine with full device logic: (requests, seconds, cpu seconds, errors)."""
    from loadgen.run import engine

    sc = _scenario(url, transport, devices, seconds)
    cpu0 = time.process_time()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        result = runner.run(engine.run(sc, progress=False))
    cpu = time.process_time() - cpu0
    stats = result.stats
    return stats.total, stats.ended - stats.started, cpu, stats.errors()


def run_plain(url, transport, conns, seconds):
    """The transport alone: ``post`` in a loop on ``conns`` connections."""
    from loadgen.eas import commands
    from loadgen.eas.http import request_head
    from loadgen.wire.transport import DeviceEndpoint, Transport

    body = commands.foldersync("1")
    kind, _, pooled = transport.partition("-")
    counts = [0, 0]

    async def main():
        t = Transport(kind, timeout=30, **({"pool_size": conns} if pooled else {}))
        await t.start()
        loop = asyncio.get_running_loop()
        endpoints = [DeviceEndpoint(request_head(url, "user%d" % i, "Pass%d!" % i, "BENCH%08d" % i, "SmartPhone",
                                                 "14.1", "easload-bench/1.0")) for i in range(conns)]
        stop = loop.time() + seconds

        async def one(ep):
            while loop.time() < stop:
                r = await t.post(ep, "FolderSync", body, "2222")
                counts[0 if r.status == 200 else 1] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one(ep) for ep in endpoints))
        elapsed = time.perf_counter() - t0
        await t.close()
        return elapsed

    cpu0 = time.process_time()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        elapsed = runner.run(main())
    return counts[0], elapsed, time.process_time() - cpu0, counts[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", "--devices", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=["device", "plain"], choices=["device", "plain"])
    ap.add_argument("--transports", nargs="+", default=["lean", "aiohttp"],
                    help="lean, aiohttp; lean-pooled (plain mode: one shared pool of --conns connections)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    q = multiprocessing.Queue()
    proc = multiprocessing.Process(target=serve_process, args=(q, cores - 1 if cores > 1 else None),
                                   kwargs={"folders": ()}, daemon=True)
    proc.start()
    url = q.get(timeout=30)
    if hasattr(os, "sched_setaffinity") and cores > 1:
        os.sched_setaffinity(0, {0})
    print("canned responder pid %d on core %d; client on core 0; %.0f s per run, %d runs each, interleaved" % (
        proc.pid, cores - 1, args.seconds, args.repeat))
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    runners = {"device": run_device, "plain": run_plain}
    rates, cpu_rates, errors = {}, {}, {}
    try:
        for mode in args.modes:
            for conns in args.conns:
                for _ in range(args.repeat):
                    for transport in args.transports:
                        if mode == "device" and "-" in transport:
                            continue
                        total, elapsed, cpu, errs = runners[mode](url, transport, conns, args.seconds)
                        key = (mode, transport, conns)
                        rates.setdefault(key, []).append(total / elapsed)
                        cpu_rates.setdefault(key, []).append(total / cpu if cpu else 0.0)
                        errors[key] = errors.get(key, 0) + errs
        print("%-7s %-13s %6s %18s %22s %7s" % ("mode", "transport", "conns", "req/s min / median",
                                                "req/cpu-s min / median", "errors"))
        for key in rates:
            r, c = rates[key], cpu_rates[key]
            print("%-7s %-13s %6d %8.0f / %7.0f %10.0f / %9.0f %7d" % (
                key[0], key[1], key[2], min(r), statistics.median(r), min(c), statistics.median(c), errors[key]))
        for mode in args.modes:
            for conns in args.conns:
                lean, other = rates.get((mode, "lean", conns)), rates.get((mode, "aiohttp", conns))
                if lean and other:
                    lc, oc = cpu_rates[(mode, "lean", conns)], cpu_rates[(mode, "aiohttp", conns)]
                    # per CPU-second: what each costs, even when other work on the machine took the core
                    print("%-7s lean / aiohttp at %4d connections: %.1fx (medians), %.1fx (mins); "
                          "per CPU-second %.1fx (medians)" % (
                              mode, conns, statistics.median(lean) / statistics.median(other), min(lean) / min(other),
                              statistics.median(lc) / statistics.median(oc)))
        print("client max RSS: %.1f MiB" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
        print("load average at end: %.2f %.2f %.2f" % os.getloadavg())
    finally:
        proc.terminate()
        proc.join(5)


if __name__ == "__main__":
    main()
