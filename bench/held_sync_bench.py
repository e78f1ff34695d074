"""What a held Sync (Wait / HeartbeatInterval, loadgen/exchange/server.py held_sync) costs the embedded
target next to a held Ping: Python memory per held request (tracemalloc, the target's side and the
client's in one process: the same client code for both), and how long it takes to wake them all with
one delivery each.

    python bench/held_sync_bench.py [--n 500]
"""

import argparse
import asyncio
import base64
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from _wbxml import encode  # noqa: E402
from loadgen.eas import commands  # noqa: E402
from loadgen.exchange.server import start_target  # noqa: E402
from loadgen.exchange.state import TargetState  # noqa: E402

INBOX = "1"


async def _post(session, url, user, cmd, body, key=None):
    headers = {"MS-ASProtocolVersion": "14.1", "Content-Type": "application/vnd.ms-sync.wbxml",
               "Authorization": "Basic " + base64.b64encode(("%s:Pass%s!" % (user, user[4:])).encode()).decode()}
    if key is not None:
        headers["X-MS-PolicyKey"] = key
    q = "?User=%s&DeviceId=D%s&DeviceType=SmartPhone&Cmd=%s" % (user, user[4:], cmd)
    async with session.post(url + q, data=body, headers=headers) as resp:
        return resp.status, await resp.read()


def _sync(key, heartbeat=None):
    root = [("AirSync:Collections", [("AirSync:Collection", [("AirSync:SyncKey", key),
                                                             ("AirSync:CollectionId", INBOX)])])]
    if heartbeat:
        root.append(("AirSync:HeartbeatInterval", str(heartbeat)))
    return encode(("AirSync:Sync", root))


def _ping(heartbeat):
    return encode(("Ping:Ping", [("Ping:HeartbeatInterval", str(heartbeat)), ("Ping:Folders", [
        ("Ping:Folder", [("Ping:Id", INBOX), ("Ping:Class", "Email")])])]))


async def _ready(session, url, user):
    """Provisioned, FolderSync done, Inbox synced to its end (history_days 0: empty): the policy key."""
    from _wbxml import decode

    _, body = await _post(session, url, user, "Provision", commands.provision_initial({"Model": "X"}), "0")
    temp = commands.parse_provision(decode(body)).policy_key
    _, body = await _post(session, url, user, "Provision", commands.provision_ack(temp, 1), temp)
    key = commands.parse_provision(decode(body)).policy_key
    await _post(session, url, user, "FolderSync", commands.foldersync("0"), key)
    await _post(session, url, user, "Sync", _sync("0"), key)
    await _post(session, url, user, "Sync", _sync("1"), key)  # the (empty) first pass: key 2
    return key


async def measure(kind, n):
    state = TargetState(users=n, ping_min=1, history_days=0, max_concurrency=n, command_burst=10_000)
    runner, target, url = await start_target("127.0.0.1", 0, state)
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            users = ["user%d" % i for i in range(n)]
            keys = await asyncio.gather(*(_ready(session, url, u) for u in users))
            body = _ping(300) if kind == "Ping" else _sync("2", 300)
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            held = [asyncio.ensure_future(_post(session, url, u, kind, body, k)) for u, k in zip(users, keys)]
            while (target.held_pings if kind == "Ping" else target.held_syncs) < n:
                await asyncio.sleep(0.01)
            per = (tracemalloc.get_traced_memory()[0] - before) / n
            tracemalloc.stop()
            t0 = time.perf_counter()
            for u in users:
                state.deliver_mail(u)
            answers = await asyncio.gather(*held)
            wake = time.perf_counter() - t0
            assert all(status == 200 and data for status, data in answers)
            return per, wake
    finally:
        await runner.cleanup()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500, help="held requests of each kind")
    args = p.parse_args()
    print("%-5s %8s %22s %20s" % ("kind", "held", "bytes per held request", "wake all (s)"))
    for kind in ("Ping", "Sync"):
        per, wake = asyncio.run(measure(kind, args.n))
        print("%-5s %8d %22.0f %20.3f" % (kind, args.n, per, wake))


if __name__ == "__main__":
    main()
