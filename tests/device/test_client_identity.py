"""Client types (loadgen/device/clients.py) as a scripted server (tests/hostile.py) sees them: the DeviceType
of the query and the User-Agent header of each type's devices, built by the engine's population builder
(once per device); and the hanging-Sync and misbehaving types without [mail] (the Inbox-only device): a held
Sync of the Inbox, the Sync / GetItemEstimate loop, never a Ping.  Each device runs for a bounded time;
conditions are waited for with a generous deadline, never a fixed sleep."""

import asyncio
import dataclasses
from urllib.parse import parse_qs, urlsplit

import _wbxml
from hostile import ScriptedServer
from loadgen.device import clients
from loadgen.device.profiles import PROFILES, identity
from loadgen.results.stats import Stats
from loadgen.run.engine import build_population
from loadgen.scenario import parse
from test_clients import EstimateServer, HoldingServer
from test_mail_device import MailServer, collections, live, make_device

_SCENARIO = """
name = "identities"
duration = 60
seed = 4
[auth]
users = 24
[population]
devices = 24
devices_per_user = 1
profiles = { modern = 1, legacy = 1 }
[load]
mode = "ping"
heartbeat = 30
[workload]
clients = { ios = 1, android = 1, outlook-cloud = 1 }
"""


def _query(req):
    return {k: v[0] for k, v in parse_qs(urlsplit(req.target).query).items()}


def test_the_client_type_names_a_generic_device_and_leaves_a_platform_profile_alone():
    ios = clients.CLIENT_TYPES["ios"]
    modern = PROFILES["modern"]
    dressed = clients.dressed(modern, ios)
    assert (dressed.device_type, dressed.user_agent, dressed.model) == ("iPhone", "Apple-iPhone15C2/2102.74",
                                                                        "iPhone15C2")
    assert dressed.caps is modern.caps and dressed.name == "modern"  # capabilities and counts unchanged
    assert clients.dressed(modern, ios) is dressed  # built once, shared by every such device
    info = identity(1, 2, 0, dressed).info
    assert (info["Model"], info["OS"], info["UserAgent"]) == ("iPhone15C2", "iOS 17.1 21B74", dressed.user_agent)
    legacy = PROFILES["legacy"]
    assert clients.dressed(legacy, ios) is legacy  # PocketPC stays PocketPC (an ABQ rule may match it)
    assert clients.dressed(modern, None) is modern
    assert clients.dressed(modern, clients.CLIENT_TYPES["hanging-sync"]) is modern  # a behaviour, no name
    assert clients.CLIENT_TYPES["android"].user_agent.startswith("Android/") and \
        clients.CLIENT_TYPES["android"].user_agent.endswith("-EAS-1.3")  # AOSP EasServerConnection.USER_AGENT


async def test_a_scripted_server_sees_each_type_s_device_type_and_user_agent():
    sc = parse(_SCENARIO, "identities.toml")
    server = MailServer()
    async with ScriptedServer(server) as srv:
        devices, _stats = build_population(sc, srv.url)
        for dev in devices:
            dev.need_provision = False
        seen = lambda: {_query(r).get("DeviceId") for r in srv.requests if r.command == "FolderSync"}  # noqa: E731
        await asyncio.gather(*(live(dev, 15, until=lambda d=dev: d.ident.device_id in seen()) for dev in devices))
    by_id = {d.ident.device_id: d for d in devices}
    checked = set()
    for req in srv.requests:
        q = _query(req)
        dev = by_id[q["DeviceId"]]
        if dev.profile.name == "legacy":
            expected = ("PocketPC", "MSFT-PPC/5.2.5082")
        else:
            expected = (dev.client.device_type, dev.client.user_agent)
        assert (q["DeviceType"], req.headers["user-agent"]) == expected, (dev.client.name, dev.profile.name)
        checked.add((dev.client.name, dev.profile.name))
    # every type on a generic phone, and a platform profile, were seen
    assert {c for c, p in checked if p == "modern"} == {"ios", "android", "outlook-cloud"}
    assert any(p == "legacy" for _c, p in checked)
    assert {q for q in ({_query(r)["DeviceType"] for r in srv.requests})} >= {"iPhone", "Android", "Outlook",
                                                                               "PocketPC"}


# -- hanging Sync and misbehaving without [mail]: the Inbox only


async def test_hanging_sync_without_mail_holds_a_sync_of_the_inbox_instead_of_a_ping():
    server = HoldingServer(hold=0.2)
    stats = Stats()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, None, stats=stats)
        dev.client = clients.CLIENT_TYPES["hanging-sync"]
        await live(dev, 10, until=lambda: len(server.held) >= 1)
    assert dev.box is None and not server.ping_requests and srv.count("Ping") == 0
    held = server.held[0]
    assert _wbxml.findtext(held, "AirSync:HeartbeatInterval") == "30"  # the heartbeat (14.1)
    assert [_wbxml.findtext(c, "AirSync:CollectionId") for c in collections(held)] == ["1"]
    assert _wbxml.findtext(collections(held)[0], "AirSync:SyncKey") == dev.sync_key != "0"
    assert not [k for k in stats.by_key if k[1] not in ("ok",)]


async def test_hanging_sync_without_mail_12_1_sends_wait_in_minutes_and_takes_a_status_14_limit():
    limit = _wbxml.encode(("AirSync:Sync", [("AirSync:Status", "14"), ("AirSync:Limit", "3")]))
    server = HoldingServer(hold=0.1, first=limit)
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, None, version="12.1")
        dev.load.heartbeat = 120
        dev.client = clients.CLIENT_TYPES["hanging-sync"]
        await live(dev, 10, until=lambda: len(server.held) >= 2)
    assert [_wbxml.findtext(t, "AirSync:Wait") for t in server.held[:2]] == ["2", "3"]  # minutes (MS-ASCMD 2.2.3.198)
    assert all(_wbxml.findtext(t, "AirSync:HeartbeatInterval") is None for t in server.held)
    assert dev.heartbeat == 180


async def test_hanging_sync_without_mail_answered_at_once_waits_out_the_interval():
    server = HoldingServer(hold=0.0)  # a server that does not hold it
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, None)
        dev.load.heartbeat = 60
        dev.client = clients.CLIENT_TYPES["hanging-sync"]
        await live(dev, 3, until=lambda: len(server.held) >= 3)  # would be hundreds in a tight loop
    assert len(server.held) == 1 and srv.count("Ping") == 0


async def test_misbehaving_without_mail_loops_estimate_and_sync_of_the_inbox_and_never_pings():
    fast = dataclasses.replace(clients.CLIENT_TYPES["misbehaving"], loop_interval=0.02)
    server = EstimateServer()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, None)
        dev.client = fast
        await live(dev, 15, until=lambda: server.sequence.count("GetItemEstimate") >= 4)
    assert "Ping" not in server.sequence
    loop = [c for c in server.sequence if c in ("Sync", "GetItemEstimate")]
    first = loop.index("GetItemEstimate")
    assert loop[first:first + 6] == ["GetItemEstimate", "Sync"] * 3
    estimates = [r for r in srv.requests if r.command == "GetItemEstimate"]
    tree = _wbxml.decode(estimates[0].body)
    coll = _wbxml.find(_wbxml.find(tree, "GetItemEstimate:Collections"), "GetItemEstimate:Collection")
    assert _wbxml.findtext(coll, "GetItemEstimate:CollectionId") == "1"


async def test_the_misbehaving_loop_is_bounded_by_its_interval():
    slow = dataclasses.replace(clients.CLIENT_TYPES["misbehaving"], loop_interval=0.5)
    server = EstimateServer()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, None)
        dev.client = slow
        await live(dev, 2.2)
    # about one step per 0.5 s after enrolment: never a tight loop (a few, not hundreds)
    assert server.sequence.count("GetItemEstimate") + server.sequence.count("Sync") - 2 <= 6
