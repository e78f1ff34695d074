"""End-to-end benchmark: full provisioning flows per second on one client core.

    python bench/e2e_bench.py [--seconds 3] [--repeat 3] [--concurrency 64]

A flow is what a new phone does first: Provision (policy request with the
temporary key), Provision (acknowledgement, final key) and FolderSync with
SyncKey 0 -- three requests.  Measured in the same run, interleaved, with the
client pinned to core 0 and every server in its own process pinned to core 1:

* ``canned``: full device logic (easload's Device: provisioning state machine,
  WBXML codec encode and decode, FolderSync parsing, Stats recording -- the
  metrics' hot path; Prometheus reads those counters at scrape time) over the
  lean transport, against a tiny asyncio responder answering each command with
  pre-encoded WBXML bytes;
* ``embedded``: the same device logic against easload's embedded EAS target;
* ``plain-aiohttp``: the same three requests (bodies captured from a real flow,
  pre-built) in a loop on an aiohttp ClientSession, no device logic, against the
  canned responder;
* ``plain-lean``: the same loop over the lean transport (loadgen/transport.py's
  public ``Transport("lean").post``), against the canned responder, on kept-alive
  connections; ``plain-lean-new``: the same with a new connection per flow, as a
  new phone (and every device flow here) opens one -- the like-for-like baseline.

"device logic cost vs plain loop" = 1 - (canned requests/s) / (plain requests/s):
the share of the plain loop's request rate that the complete device logic, codec
and metrics cost (target: no more than 30 %).  Each figure: min / median of the
repeats.  Devices are built before the clock starts (one fresh device per flow).
Prints figures; asserts nothing.
"""

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEMP_KEY, FINAL_KEY = "1111", "2222"


def _pin(core):
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})


def _uvloop():
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:
        return None


# --------------------------------------------------------------------------- canned responder


def _canned_responses():
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
            for sid, name, kind in (("1", "Inbox", 2), ("2", "Drafts", 3), ("3", "Deleted Items", 4),
                                    ("4", "Sent Items", 5), ("5", "Outbox", 6), ("7", "Calendar", 8),
                                    ("8", "Contacts", 9))]
    folders = encode(("FolderHierarchy:FolderSync", [
        ("FolderHierarchy:Status", "1"), ("FolderHierarchy:SyncKey", "1"),
        ("FolderHierarchy:Changes", [("FolderHierarchy:Count", str(len(adds)))] + adds)]))

    def http(body):
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\nMS-Server-ActiveSync: 15.1\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    return {"policy": http(provision(TEMP_KEY, True)), "final": http(provision(FINAL_KEY, False)),
            "FolderSync": http(folders)}


class Canned(asyncio.Protocol):
    """Answers each request with pre-encoded bytes; parses only the head's Cmd and Content-Length."""

    responses = None

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            i = head.find(b"Content-Length: ")
            length = int(head[i + 16:head.find(b"\r\n", i)]) if i >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4:end + 4 + length]
            self.buf = self.buf[end + 4 + length:]
            cmd = head[head.find(b"Cmd=") + 4:head.find(b" HTTP/1.1")]
            if cmd == b"Provision":
                ack = b"X-MS-PolicyKey: " + TEMP_KEY.encode() in head or TEMP_KEY.encode() in body
                self.transport.write(self.responses["final" if ack else "policy"])
            else:
                self.transport.write(self.responses["FolderSync"])


def serve_canned(queue, core):
    _pin(core)
    Canned.responses = _canned_responses()

    async def main():
        server = await asyncio.get_running_loop().create_server(Canned, "127.0.0.1", 0, backlog=4096)
        queue.put("http://127.0.0.1:%d/Microsoft-Server-ActiveSync" % server.sockets[0].getsockname()[1])
        await asyncio.sleep(3600)

    with asyncio.Runner(loop_factory=_uvloop()) as runner:
        runner.run(main())


def serve_embedded(queue, core, users):
    _pin(core)
    from loadgen.target.server import serve_forever
    from loadgen.target.state import TargetState

    state = TargetState(users=users)
    with asyncio.Runner(loop_factory=_uvloop()) as runner:
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


async def device_flows(url, devices_count, seconds, concurrency, seed, recorder=None):
    """Full device logic: (flows, requests, elapsed, errors)."""
    from loadgen.engine import build_population
    from loadgen.transport import Transport

    devices, stats = build_population(_scenario(url, devices_count, seed), url)
    transport = Transport("lean", timeout=30)
    await transport.start()
    if recorder is not None:
        transport = recorder(transport)
    loop = asyncio.get_running_loop()
    pool = iter(devices)
    flows = [0]
    stop = loop.time() + seconds
    deadline = stop + 60

    async def worker():
        for device in pool:
            if loop.time() >= stop:
                return
            if await device.provision(transport, deadline):
                await device._foldersync(transport, deadline)
                if device.folder_key != "0":
                    flows[0] += 1

    t0 = time.perf_counter()
    requests0 = stats.total
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await (transport.inner if recorder is not None else transport).close()
    return flows[0], stats.total - requests0, elapsed, stats.errors()


class Recorder:
    """Records the requests of one real flow: the plain loops send exactly these."""

    def __init__(self, inner):
        self.inner = inner
        self.requests = []

    async def post(self, endpoint, command, body, policy_key, timeout=None):
        self.requests.append((command, bytes(body), policy_key))
        return await self.inner.post(endpoint, command, body, policy_key, timeout)


async def plain_lean(url, requests, seconds, concurrency, fresh=False):
    from loadgen.transport import DeviceEndpoint, Transport

    transport = Transport("lean", timeout=30)
    await transport.start()
    loop = asyncio.get_running_loop()
    counts = [0, 0]
    stop = loop.time() + seconds

    async def worker(i):
        ep = DeviceEndpoint(url, "user%d" % i, "Pass%d!" % i, "BENCH%08d" % i, "SmartPhone", "14.1", "easload-bench/1")
        while loop.time() < stop:
            if fresh:  # a new phone: a new connection per flow, as the device flows have
                ep.close()
            for command, body, key in requests:
                r = await transport.post(ep, command, body, key)
                counts[0 if r.status == 200 else 1] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await transport.close()
    return counts[0] // len(requests), counts[0], elapsed, counts[1]


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

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return counts[0] // len(requests), counts[0], elapsed, counts[1]


def run(coro):
    with asyncio.Runner(loop_factory=_uvloop()) as runner:
        return runner.run(coro)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--devices", type=int, default=12000, help="devices built per run (one per flow)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    server_core = cores - 1 if cores > 1 else None
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    canned = ctx.Process(target=serve_canned, args=(queue, server_core), daemon=True)
    canned.start()
    canned_url = queue.get(timeout=60)
    users = args.devices * (args.repeat + 1)
    embedded = ctx.Process(target=serve_embedded, args=(queue, server_core, users), daemon=True)
    embedded.start()
    embedded_url = queue.get(timeout=120)
    if server_core is not None:
        _pin(0)
    print("client on core 0; canned responder (pid %d) and embedded target (pid %d) on core %s; "
          "%d concurrent flows, %.0f s per run, %d runs each, interleaved"
          % (canned.pid, embedded.pid, server_core, args.concurrency, args.seconds, args.repeat))
    try:
        recorded = []

        def recorder(inner):
            recorded.append(Recorder(inner))
            return recorded[-1]

        run(device_flows(canned_url, 1, 5, 1, 999, recorder))  # one real flow: the plain loops' requests
        requests = recorded[0].requests
        assert [c for c, _b, _k in requests] == ["Provision", "Provision", "FolderSync"], requests
        modes = {
            "canned": lambda i: device_flows(canned_url, args.devices, args.seconds, args.concurrency, 100 + i),
            "embedded": lambda i: device_flows(embedded_url, args.devices, args.seconds, args.concurrency, 200 + i),
            "plain-aiohttp": lambda i: plain_aiohttp(canned_url, requests, args.seconds, args.concurrency),
            "plain-lean": lambda i: plain_lean(canned_url, requests, args.seconds, args.concurrency),
            "plain-lean-new": lambda i: plain_lean(canned_url, requests, args.seconds, args.concurrency, fresh=True),
        }
        flows, rps, errors = {}, {}, {}
        for i in range(args.repeat):
            for name, make in modes.items():
                n, reqs, elapsed, errs = run(make(i))
                flows.setdefault(name, []).append(n / elapsed)
                rps.setdefault(name, []).append(reqs / elapsed)
                errors[name] = errors.get(name, 0) + errs
        print("%-14s %22s %24s %7s" % ("mode", "flows/s min / median", "requests/s min / median", "errors"))
        for name in modes:
            f, r = flows[name], rps[name]
            print("%-14s %10.0f / %9.0f %11.0f / %10.0f %7d" % (name, min(f), statistics.median(f), min(r),
                                                                statistics.median(r), errors[name]))
        device = rps["canned"]
        for plain in ("plain-lean-new", "plain-lean", "plain-aiohttp"):
            p = rps[plain]
            print("device logic cost vs %-13s: %5.1f %% (medians), %5.1f %% (mins); target <= 30 %%"
                  % (plain, 100 * (1 - statistics.median(device) / statistics.median(p)), 100 * (1 - min(device) / min(p))))
    finally:
        for proc in (canned, embedded):
            proc.terminate()
            proc.join(5)


if __name__ == "__main__":
    main()
