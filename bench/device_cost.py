"""The device logic's cost per request, counted rather than timed: Python bytecodes executed and
function calls, for the first flow of a phone (Provision, Provision acknowledgement, FolderSync)
and for its steady life (Sync, then Ping answered Status 1, again and again).

    python bench/device_cost.py [--devices 2000] [--pings 5] [--against REV]

Timing on a shared two-core machine moves by several per cent from one run to the next; the
number of bytecodes the interpreter executes for the same work does not move at all, so a
restructuring of the device's code can be compared exactly.  The transport is a fake that
answers at once with pre-encoded bodies (bench/_responders.py's answers): no socket, no event
loop wake-ups, only the device, the protocol machine, the codec's calls and Stats.record.
The codec itself (C) and the kernel are not counted: they are the same for both trees.

``--against REV`` checks REV out into a temporary git worktree (the compiled codec copied from
this tree), runs the same count there in its own process, and prints the ratio
(this tree / REV): 1.00 means the same work per request.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

_CHILD = r'''
import asyncio, gc, json, sys
tree, n, pings = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, tree); sys.path.insert(0, tree + "/bench")
from _responders import TEMP_KEY, FINAL_KEY, HIERARCHY
from _wbxml import encode
from loadgen.eas.policy import SEED_POLICY, policy_to_tree
try:  # the layout since the house plan
    from loadgen.wire.transport import Response
    from loadgen.run.engine import build_population, settle_population
except ImportError:  # the flat layout before it
    from loadgen.transport import Response
    from loadgen.engine import build_population, settle_population
from loadgen import scenario

URL = "http://127.0.0.1:9/Microsoft-Server-ActiveSync"

def prov(key, data):
    policy = [("Provision:PolicyType", "MS-EAS-Provisioning-WBXML"), ("Provision:Status", "1"),
              ("Provision:PolicyKey", key)]
    if data:
        policy.append(("Provision:Data", [policy_to_tree(dict(SEED_POLICY))]))
    return encode(("Provision:Provision", [("Provision:Status", "1"),
                                           ("Provision:Policies", [("Provision:Policy", policy)])]))

adds = [("FolderHierarchy:Add", [("FolderHierarchy:ServerId", s), ("FolderHierarchy:ParentId", "0"),
         ("FolderHierarchy:DisplayName", d), ("FolderHierarchy:Type", str(t))]) for s, d, t in HIERARCHY]
BODIES = {
    "policy": prov(TEMP_KEY, True), "final": prov(FINAL_KEY, False),
    "FolderSync": encode(("FolderHierarchy:FolderSync", [
        ("FolderHierarchy:Status", "1"), ("FolderHierarchy:SyncKey", "1"),
        ("FolderHierarchy:Changes", [("FolderHierarchy:Count", str(len(adds)))] + adds)])),
    "Sync": encode(("AirSync:Sync", [("AirSync:Collections", [("AirSync:Collection", [
        ("AirSync:SyncKey", "2"), ("AirSync:CollectionId", "1"), ("AirSync:Status", "1")])])])),
    "Ping": encode(("Ping:Ping", [("Ping:Status", "1")])),
}
HEADERS = {"Content-Type": "application/vnd.ms-sync.wbxml"}

class Fake:
    can_park = False
    async def post(self, endpoint, command, body, key, timeout=None):
        if command == "Provision":
            return Response(200, HEADERS, BODIES["policy" if key in (None, "0") else "final"], 0.001)
        return Response(200, HEADERS, BODIES[command], 0.001)
    def disconnect(self, endpoint):
        pass

def count(fn):
    """(bytecodes, calls) executed by ``fn()`` (a coroutine function), run to its end."""
    ops = [0, 0]
    def trace(frame, event, arg):
        if event == "opcode":
            ops[0] += 1
        elif event == "call":
            ops[1] += 1
            frame.f_trace_opcodes = True
        return trace
    async def wrapped():
        sys.settrace(trace)
        try:
            await fn()
        finally:
            sys.settrace(None)
    asyncio.run(wrapped())
    return ops

scen = scenario.parse("""
seed = 7
[target]
url = "%s"
[auth]
users = %d
[population]
devices = %d
devices_per_user = 1
versions = { "14.1" = 1 }
[load]
timeout = 30
backoff = 1
mode = "ping"
""" % (URL, n, n), "device-cost.toml")
devices, stats = build_population(scen, URL)
settle_population()
gc.disable()
transport = Fake()
DEADLINE = 1e12

async def first_flow():
    for d in devices:
        if await d.provision(transport, DEADLINE):
            await d._foldersync(transport, DEADLINE)

async def steady():
    for d in devices:
        await d._sync(transport, DEADLINE)  # SyncKey 0
        for _ in range(pings):
            await d._ping(transport, DEADLINE)

r0 = stats.total
first = count(first_flow)
r1 = stats.total
life = count(steady)
r2 = stats.total
print(json.dumps({"first": [first[0] / (r1 - r0), first[1] / (r1 - r0)],
                  "steady": [life[0] / (r2 - r1), life[1] / (r2 - r1)], "errors": stats.errors()}))
'''


def measure(tree, devices, pings):
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tree), str(devices), str(pings)], check=True,
                         capture_output=True, text=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def worktree(rev):
    path = Path(tempfile.mkdtemp(prefix="device-cost-"))
    subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", str(path / "tree"), rev], check=True,
                   capture_output=True)
    for built in (HERE / "_wbxml").glob("_codec*.so"):
        shutil.copy(built, path / "tree" / "_wbxml" / built.name)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--pings", type=int, default=5)
    ap.add_argument("--against", metavar="REV", help="a git revision to compare with (a temporary worktree)")
    args = ap.parse_args()
    rows = [("this tree", measure(HERE, args.devices, args.pings))]
    if args.against:
        path = worktree(args.against)
        try:
            rows.append((args.against, measure(path / "tree", args.devices, args.pings)))
        finally:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(path / "tree")],
                           capture_output=True)
            shutil.rmtree(path, ignore_errors=True)
    print("per request                    bytecodes   calls   (first flow: Provision x2 + FolderSync;"
          " steady: Sync + Ping)")
    for name, r in rows:
        for phase in ("first", "steady"):
            print("%-14s %-14s %10.1f %7.1f" % (name[:14], phase, r[phase][0], r[phase][1]))
        if r["errors"]:
            print("  errors:", r["errors"])
    if len(rows) == 2:
        for phase in ("first", "steady"):
            print("ratio %-8s (this tree / %s): bytecodes %.3f, calls %.3f" % (
                phase, args.against, rows[0][1][phase][0] / rows[1][1][phase][0],
                rows[0][1][phase][1] / rows[1][1][phase][1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
