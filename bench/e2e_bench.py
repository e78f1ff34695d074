"""End-to-end benchmark: full provisioning flows per second on one client core.

    python bench/e2e_bench.py [--seconds 3] [--repeat 3] [--concurrency 64] [--devices 12000]

A flow is what a new phone does first: Provision (policy request with the
temporary key), Provision (acknowledgement, final key) and FolderSync with
SyncKey 0 -- three requests.  Measured in the same run, interleaved, with the
client pinned to core 0 and every server in its own process pinned to the last
core.  Servers: ``canned`` (bench/_responders.py: pre-encoded WBXML answers,
keep-alive; one port per client mode, so that no mode's TIME_WAITs take another's
ephemeral ports) and ``embedded`` (easload's embedded EAS target).

Device flows -- the complete device logic (easload's Device: provisioning state
machine, WBXML codec encode and decode, FolderSync parsing, Stats recording, the
metrics' hot path; Prometheus reads those counters at scrape time), one fresh
device per flow, built before the clock starts, with its own endpoint; the same
``device_flows`` code over either transport:

* ``device lean``: over the lean transport: each device opens its own
  connection and keeps it open (never closed during the run);
* ``device aiohttp``: over the aiohttp transport (``Transport("aiohttp")``): one
  ClientSession whose pool the devices share, as ``--transport aiohttp`` runs.

Plain loops -- the same three requests (bodies captured from a real flow,
pre-built), no device logic, against the canned responder:

* ``plain lean fresh``: loadgen/wire/transport.py's public ``Transport("lean").post``
  with one pre-built DeviceEndpoint per flow (``--devices`` of them), its new
  connection left open -- exactly the device flows' connection pattern;
* ``plain lean reconnect``: one endpoint per worker, its connection closed and
  reopened before each flow;
* ``plain lean keepalive``: one endpoint per worker, its connection kept alive;
* ``plain aiohttp``: an aiohttp ClientSession loop (shared pool).

"device logic cost vs X" = 1 - (device requests/s) / (X's requests/s): the share
of the plain loop's request rate that the complete device logic, codec and
metrics cost (the target: no more than 30 %).  Like for like: ``device
lean`` vs ``plain lean fresh`` and ``device aiohttp`` vs ``plain aiohttp``.
Also per client CPU-second (process time while the clock runs), which other
work on the machine disturbs less.  Each figure: min / median of the repeats.
The load average is printed at start and end.  Prints figures; asserts nothing.
"""

import argparse
import asyncio
import gc
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _responders import loop_factory, pin, raise_nofile, serve_process  # noqa: E402 -- after the path


def serve_embedded(queue, core, users):
    pin(core)
    raise_nofile()
    from loadgen.exchange.server import serve_forever
    from loadgen.exchange.state import TargetState

    state = TargetState(users=users)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(serve_forever("127.0.0.1", 0, state, ready=lambda url, admin_url=None: queue.put(url)))


# --------------------------------------------------------------------------- client


def _scenario(url, devices, seed):
    from loadgen import scenario

    return scenario.parse(f"""
seed = {seed}
[target]
url = "{url}"
[auth]
users = {devices}
[population]
devices = {devices}
devices_per_user = 1
versions = {{ "14.1" = 1 }}
[load]
timeout = 30
backoff = 1
""", "e2e-bench.toml")


class Result:
    __slots__ = ("flows", "requests", "elapsed", "cpu", "errors", "exhausted")

    def __init__(self, flows, requests, elapsed, cpu, errors, exhausted=False):
        self.flows, self.requests, self.elapsed, self.cpu, self.errors = flows, requests, elapsed, cpu, errors
        self.exhausted = exhausted


async def device_flows(url, devices_count, seconds, concurrency, seed, kind="lean", recorder=None):
    """Full device logic, one fresh device per flow."""
    from loadgen.run.engine import build_population, settle_population
    from loadgen.wire.transport import Transport

    devices, stats = build_population(_scenario(url, devices_count, seed), url)
    settle_population()  # as engine.run does after building the population
    transport = Transport(kind, timeout=30)
    await transport.start()
    if recorder is not None:
        transport = recorder(transport)
    loop = asyncio.get_running_loop()
    pool = iter(devices)
    flows = [0]
    started = [0]
    stop = loop.time() + seconds
    deadline = stop + 60

    async def worker():
        for device in pool:
            if loop.time() >= stop:
                return
            started[0] += 1
            if await device.provision(transport, deadline):
                await device._foldersync(transport, deadline)
                if device.folder_key != "0":
                    flows[0] += 1

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    requests0 = stats.total
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    await (transport.inner if recorder is not None else transport).close()
    gc.unfreeze()
    return Result(flows[0], stats.total - requests0, elapsed, cpu, stats.errors(), started[0] >= devices_count)


class Recorder:
    """Records the requests of one real flow: the plain loops send exactly these."""

    def __init__(self, inner):
        self.inner = inner
        self.requests = []

    async def post(self, endpoint, command, body, policy_key, timeout=None):
        self.requests.append((command, bytes(body), policy_key))
        return await self.inner.post(endpoint, command, body, policy_key, timeout)


def _endpoint(url, i):
    from loadgen.eas.http import request_head
    from loadgen.wire.transport import DeviceEndpoint

    return DeviceEndpoint(request_head(url, "user%d" % i, "Pass%d!" % i, "BENCH%08d" % i, "SmartPhone", "14.1",
                                       "easload-bench/1"))


async def plain_lean(url, requests, seconds, concurrency, pattern, devices):
    """``pattern``: "fresh" (one pre-built endpoint per flow, left open), "reconnect", "keepalive"."""
    from loadgen.wire.transport import Transport

    transport = Transport("lean", timeout=30)
    await transport.start()
    loop = asyncio.get_running_loop()
    counts = [0, 0]
    started = [0]
    fresh = pattern == "fresh"
    pool = iter([_endpoint(url, i) for i in range(devices)] if fresh else ())
    stop = loop.time() + seconds

    async def flow(ep):
        for command, body, key in requests:
            r = await transport.post(ep, command, body, key)
            counts[0 if r.status == 200 else 1] += 1

    async def worker(i):
        if fresh:  # a new phone per flow, as the device flows: own endpoint, own new connection, never closed
            for ep in pool:
                if loop.time() >= stop:
                    return
                started[0] += 1
                await flow(ep)
            return
        ep = _endpoint(url, i)
        while loop.time() < stop:
            if pattern == "reconnect":  # a new connection per flow on the same endpoint
                ep.close()
            await flow(ep)

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    await transport.close()
    return Result(counts[0] // len(requests), counts[0], elapsed, cpu, counts[1], fresh and started[0] >= devices)


async def plain_aiohttp(url, requests, seconds, concurrency):
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0)
    loop = asyncio.get_running_loop()
    counts = [0, 0]
    stop = loop.time() + seconds
    base = {"MS-ASProtocolVersion": "14.1", "Content-Type": "application/vnd.ms-sync.wbxml",
            "User-Agent": "easload-bench/1", "Authorization": "Basic dXNlcjA6UGFzczAh"}
    prepared = [(url + "?User=user0&DeviceId=BENCH&DeviceType=SmartPhone&Cmd=" + command, body,
                 dict(base, **({"X-MS-PolicyKey": key} if key else {}))) for command, body, key in requests]
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker():
            while loop.time() < stop:
                for target, body, headers in prepared:
                    async with session.post(target, data=body, headers=headers) as resp:
                        await resp.read()
                        counts[0 if resp.status == 200 else 1] += 1

        cpu0 = time.process_time()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    return Result(counts[0] // len(requests), counts[0], elapsed, cpu, counts[1])


def run(coro):
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)


def _loadavg():
    return "%.2f %.2f %.2f" % os.getloadavg()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--devices", type=int, default=12000,
                    help="devices (and plain-lean-fresh endpoints) built per run: one per flow")
    args = ap.parse_args()
    raise_nofile()
    cores = os.cpu_count() or 1
    server_core = cores - 1 if cores > 1 else None
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    # one port per canned client mode: each destination has its own ephemeral ports and TIME_WAITs
    canned = ctx.Process(target=serve_process, args=(queue, server_core), kwargs={"listeners": 6}, daemon=True)
    canned.start()
    canned_urls = [queue.get(timeout=60) for _ in range(6)]
    users = args.devices * (args.repeat + 1)
    embedded = ctx.Process(target=serve_embedded, args=(queue, server_core, users), daemon=True)
    embedded.start()
    embedded_url = queue.get(timeout=120)
    if server_core is not None:
        pin(0)
    print("client on core 0; canned responder (pid %d) and embedded target (pid %d) on core %s; "
          "%d concurrent flows, %.0f s per run, %d runs each, interleaved; %d devices built per run"
          % (canned.pid, embedded.pid, server_core, args.concurrency, args.seconds, args.repeat, args.devices))
    print("load average at start: %s (1, 5, 15 min; %d cores)" % (_loadavg(), cores))
    try:
        recorded = []

        def recorder(inner):
            recorded.append(Recorder(inner))
            return recorded[-1]

        run(device_flows(canned_urls[0], 1, 5, 1, 999, recorder=recorder))  # one real flow: the plain loops' requests
        requests = recorded[0].requests
        assert [c for c, _b, _k in requests] == ["Provision", "Provision", "FolderSync"], requests
        s, c, n = args.seconds, args.concurrency, args.devices
        u = iter(canned_urls)
        # (client, connections, server): run i
        modes = {
            ("device lean", "own, kept open", "canned"): lambda i, url=next(u): device_flows(url, n, s, c, 100 + i),
            ("device aiohttp", "shared pool", "canned"):
                lambda i, url=next(u): device_flows(url, n, s, c, 300 + i, kind="aiohttp"),
            ("device lean", "own, kept open", "embedded"): lambda i: device_flows(embedded_url, n, s, c, 200 + i),
            ("plain lean", "fresh per flow", "canned"):
                lambda i, url=next(u): plain_lean(url, requests, s, c, "fresh", n),
            ("plain lean", "reconnect", "canned"):
                lambda i, url=next(u): plain_lean(url, requests, s, c, "reconnect", n),
            ("plain lean", "keep-alive", "canned"):
                lambda i, url=next(u): plain_lean(url, requests, s, c, "keepalive", n),
            ("plain aiohttp", "shared pool", "canned"): lambda i, url=next(u): plain_aiohttp(url, requests, s, c),
        }
        results = {}
        for i in range(args.repeat):
            for name, make in modes.items():
                results.setdefault(name, []).append(run(make(i)))
        print()
        print("%-14s %-15s %-8s %17s %20s %19s %6s" % ("client", "connections", "server", "flows/s min / med",
                                                       "requests/s min / med", "req/cpu-s min / med", "errors"))
        for name, rs in results.items():
            f = [r.flows / r.elapsed for r in rs]
            q = [r.requests / r.elapsed for r in rs]
            u = [r.requests / r.cpu if r.cpu else 0.0 for r in rs]
            print("%-14s %-15s %-8s %8.0f / %6.0f %10.0f / %7.0f %10.0f / %6.0f %6d%s" % (
                name + (min(f), statistics.median(f), min(q), statistics.median(q), min(u), statistics.median(u),
                        sum(r.errors for r in rs), "  *" if any(r.exhausted for r in rs) else "")))
        if any(r.exhausted for rs in results.values() for r in rs):
            print("* some runs ended before --seconds: their %d devices (or endpoints) were used up; "
                  "rates are over the time taken" % args.devices)

        def cost(device, plain, label):
            d, p = results[device], results[plain]
            dq, pq = [r.requests / r.elapsed for r in d], [r.requests / r.elapsed for r in p]
            du, pu = [r.requests / r.cpu for r in d], [r.requests / r.cpu for r in p]
            print("  %-50s %6.1f %% (medians) %6.1f %% (mins) %6.1f %% (per CPU-s, medians)" % (
                label, 100 * (1 - statistics.median(dq) / statistics.median(pq)), 100 * (1 - min(dq) / min(pq)),
                100 * (1 - statistics.median(du) / statistics.median(pu))))

        lean = ("device lean", "own, kept open", "canned")
        print()
        print("device logic cost = 1 - device requests/s / plain requests/s (target <= 30 %); canned responder:")
        cost(lean, ("plain lean", "fresh per flow", "canned"), "device lean    vs plain lean fresh (like for like)")
        cost(lean, ("plain lean", "reconnect", "canned"), "device lean    vs plain lean reconnect")
        cost(lean, ("plain lean", "keep-alive", "canned"), "device lean    vs plain lean keep-alive")
        cost(("device aiohttp", "shared pool", "canned"), ("plain aiohttp", "shared pool", "canned"),
             "device aiohttp vs plain aiohttp (like for like)")
        cost(lean, ("plain aiohttp", "shared pool", "canned"), "device lean    vs plain aiohttp")
        print()
        print("load average at end: %s" % _loadavg())
    finally:
        for proc in (canned, embedded):
            proc.terminate()
            proc.join(5)


if __name__ == "__main__":
    main()
