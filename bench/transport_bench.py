"""Transport benchmark: full device logic + codec + metrics against a canned fast responder.

    python bench/transport_bench.py [--devices 64 512] [--seconds 10] [--transports lean aiohttp]

The responder runs in its own process (pinned to the last core when possible)
and answers every Provision with a policy/final key and every FolderSync with a
pre-encoded body, parsing only the request line and Content-Length.  The client
is ``easload``'s engine itself (one process, pinned to core 0), with zero think
time, so the figure is requests per second per client core with everything a
device does.  Prints figures; asserts nothing.
"""

import argparse
import asyncio
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _bodies():
    from _wbxml import encode
    from loadgen.eas.policy import SEED_POLICY, policy_to_tree

    policy = encode(("Provision:Provision", [("Provision:Status", "1"), ("Provision:Policies", [("Provision:Policy", [
        ("Provision:PolicyType", "MS-EAS-Provisioning-WBXML"), ("Provision:Status", "1"),
        ("Provision:PolicyKey", "1111"), ("Provision:Data", [policy_to_tree(dict(SEED_POLICY))])])])]))
    final = encode(("Provision:Provision", [("Provision:Status", "1"), ("Provision:Policies", [("Provision:Policy", [
        ("Provision:PolicyType", "MS-EAS-Provisioning-WBXML"), ("Provision:Status", "1"),
        ("Provision:PolicyKey", "2222")])])]))
    folders = encode(("FolderHierarchy:FolderSync", [("FolderHierarchy:Status", "1"),
                                                     ("FolderHierarchy:SyncKey", "1"),
                                                     ("FolderHierarchy:Changes", [("FolderHierarchy:Count", "0")])]))
    settings = encode(("Settings:Settings", [("Settings:Status", "1")]))

    def resp(body):
        return b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\nContent-Length: %d\r\n\r\n%s" % (
            len(body), body)

    return {"policy": resp(policy), "final": resp(final), "FolderSync": resp(folders), "Settings": resp(settings)}


class Responder(asyncio.Protocol):
    bodies = None

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
            length = 0
            i = head.find(b"Content-Length: ")
            if i >= 0:
                length = int(head[i + 16:head.find(b"\r\n", i)])
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            cmd = head[head.find(b"Cmd=") + 4:head.find(b" HTTP/1.1")]
            if cmd == b"Provision":
                key = b"X-MS-PolicyKey: 1111" in head
                self.transport.write(self.bodies["final" if key else "policy"])
            else:
                self.transport.write(self.bodies.get(cmd.decode(), self.bodies["FolderSync"]))


def serve(port_queue, core):
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    Responder.bodies = _bodies()

    async def main():
        server = await asyncio.get_running_loop().create_server(Responder, "127.0.0.1", 0, backlog=4096)
        port_queue.put(server.sockets[0].getsockname()[1])
        await asyncio.sleep(3600)

    asyncio.run(main())


def run_client(url, transport, devices, seconds):
    from loadgen import engine, scenario

    sc = scenario.parse(f"""
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
transport = "{transport}"
graceful_stop = 2
""", "bench.toml")
    try:
        import uvloop
        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    cpu0 = time.process_time()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(engine.run(sc, progress=False))
    cpu = time.process_time() - cpu0
    stats = result.stats
    elapsed = stats.ended - stats.started
    fs = stats.percentiles("FolderSync")
    return stats.total, elapsed, cpu, fs, stats.errors()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--transports", nargs="+", default=["lean", "aiohttp"])
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    q = multiprocessing.Queue()
    proc = multiprocessing.Process(target=serve, args=(q, cores - 1 if cores > 1 else None), daemon=True)
    proc.start()
    port = q.get(timeout=30)
    url = "http://127.0.0.1:%d/Microsoft-Server-ActiveSync" % port
    if hasattr(os, "sched_setaffinity") and cores > 1:
        os.sched_setaffinity(0, {0})
    print("canned responder pid %d on core %s; client on core 0; %.0f s per run" % (proc.pid, cores - 1, args.seconds))
    print("%-8s %8s %10s %10s %12s %10s %10s %7s" % ("transport", "devices", "requests", "req/s", "req/s/cpu-s",
                                                      "p50 ms", "p99 ms", "errors"))
    results = {}
    try:
        for devices in args.devices:
            for transport in args.transports:
                total, elapsed, cpu, fs, errors = run_client(url, transport, devices, args.seconds)
                results[(transport, devices)] = total / elapsed
                print("%-8s %8d %10d %10.0f %12.0f %10.2f %10.2f %7d" % (
                    transport, devices, total, total / elapsed, total / cpu if cpu else 0, fs["p50_ms"],
                    fs["p99_ms"], errors))
        for devices in args.devices:
            if ("lean", devices) in results and ("aiohttp", devices) in results:
                print("lean / aiohttp at %d devices: %.1fx" % (
                    devices, results[("lean", devices)] / results[("aiohttp", devices)]))
        print("client max RSS: %.1f MiB" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    finally:
        proc.terminate()
        proc.join(5)


if __name__ == "__main__":
    main()
