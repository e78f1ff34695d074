"""Client types (loadgen/device/clients.py) against a scripted server (tests/hostile.py) that records what
a device sends: the AOSP heartbeat and window rules, iOS's pushed folders and GAL look-up, Outlook's
filters, the hanging Sync, the misbehaving loop.  Each device runs for a bounded time; conditions are
waited for with a generous deadline, never a fixed sleep."""

import asyncio
import dataclasses
from collections import Counter

import _wbxml
from hostile import ScriptedServer, http_response, wait_for
from loadgen.device import clients
from loadgen.eas import mail as eas_mail
from loadgen.results.stats import Stats
from loadgen.scenario import MailConfig
from test_mail_device import QUIET, MailServer, collections, live, make_device

_PING_1 = _wbxml.encode(("Ping:Ping", [("Ping:Status", "1")]))


def _heartbeats(server):
    return [int(_wbxml.findtext(p, "Ping:HeartbeatInterval")) for p in server.ping_requests]


def _options(coll):
    options = _wbxml.find(coll, "AirSync:Options")
    return options[1] if options is not None else []


# -- the types as data


def test_named_types_and_the_draw_by_user():
    assert set(clients.CLIENT_TYPES) == {"ios", "android", "outlook-cloud", "hanging-sync", "misbehaving"}
    android = clients.CLIENT_TYPES["android"]
    hb = 480.0
    seq = [hb]
    for _ in range(6):
        hb = android.after_expiry(hb)
        seq.append(hb)
    assert seq == [480, 780, 1080, 1380, 1680, 1680, 1680]  # 8, 13, 18, 23, 28, 28 min
    assert android.after_network_failure(1680) == 1380 and android.after_network_failure(480) == 480
    assert android.next_window(10, True, True) == 20 and android.next_window(505, True, True) == 512
    assert android.next_window(30, True, False) == 10 and android.next_window(30, False, True) == 10
    ios = clients.CLIENT_TYPES["ios"]
    assert ios.after_expiry(600) == 600 and ios.next_window(25, True, True) == 25  # no such rules
    weights = {"ios": 0.4, "android": 0.4, "outlook-cloud": 0.2}
    drawn = [clients.pick(weights, 7, u).name for u in range(5000)]
    assert drawn == [clients.pick(weights, 7, u).name for u in range(5000)]  # the same for every shard
    share = Counter(drawn)
    assert abs(share["ios"] / 5000 - 0.4) < 0.03 and abs(share["outlook-cloud"] / 5000 - 0.2) < 0.03
    assert clients.pick(None, 7, 1) is None and clients.pick({}, 7, 1) is None
    assert [clients.pick(weights, 8, u).name for u in range(50)] != drawn[:50]  # the seed matters


def test_held_sync_request_has_wait_or_heartbeat_after_collections():
    coll = eas_mail.SyncCollection("1", "5", True, 10)
    tree = _wbxml.decode(eas_mail.sync_request([coll], None, None, 600))
    assert [tag for tag, _ in tree[1]] == ["AirSync:Collections", "AirSync:HeartbeatInterval"]
    assert _wbxml.findtext(tree, "AirSync:HeartbeatInterval") == "600"
    tree = _wbxml.decode(eas_mail.sync_request([coll], 50, 10, 600))  # Wait wins: never both (Status 4)
    assert [tag for tag, _ in tree[1]] == ["AirSync:Collections", "AirSync:Wait", "AirSync:WindowSize"]
    assert _wbxml.findtext(tree, "AirSync:Wait") == "10"
    assert _wbxml.findtext(_wbxml.decode(eas_mail.sync_request([coll])), "AirSync:Wait") is None
    limit = _wbxml.encode(("AirSync:Sync", [("AirSync:Status", "14"), ("AirSync:Limit", "120")]))
    answer = eas_mail.parse_sync_all(_wbxml.decode(limit))
    assert (answer.status, answer.limit) == (14, 120)


# -- android (AOSP Exchange)


class ResettingServer(MailServer):
    """Pings answered Status 1 at once, but the Pings numbered in ``drop`` get their connection closed
    unanswered (two in a row: the transport sends a request again once on a fresh connection when a
    kept-alive one was closed under it)."""

    def __init__(self, drop, **kw):
        super().__init__(**kw)
        self.drop = drop

    async def __call__(self, conn, req):
        if req.command == "Ping":
            self.ping_requests.append(_wbxml.decode(req.body))
            if len(self.ping_requests) in self.drop:
                return False  # closed: a network failure for the device
            conn.write(http_response(_PING_1))
            return True
        return await super().__call__(conn, req)


async def test_android_heartbeat_grows_after_clean_expiries_and_falls_after_a_network_failure():
    server = ResettingServer(drop=(7, 8))
    stats = Stats()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET, stats=stats)
        dev.client = clients.CLIENT_TYPES["android"]
        await live(dev, 20, until=lambda: len(server.ping_requests) >= 10)
    # 8, 13, 18, 23, 28, 28 min; the 7th is cut (sent twice): 28 - 5 = 23 min; then a clean expiry: 28
    assert _heartbeats(server)[:10] == [480, 780, 1080, 1380, 1680, 1680, 1680, 1680, 1380, 1680]
    assert sum(n for (c, o, _s), n in stats.by_key.items() if c == "Ping" and o != "ok") == 1


async def test_without_a_client_type_the_heartbeat_stays_the_scenario_s():
    server = ResettingServer(drop=(3, 4))
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET)
        await live(dev, 20, until=lambda: len(server.ping_requests) >= 5)
    assert set(_heartbeats(server)[:5]) == {30}  # [load] heartbeat of the test's load


class StuckWindowServer(MailServer):
    """After the first download, the Inbox answers MoreAvailable with the same SyncKey and nothing in it
    ``stuck`` times, then moves on (what makes AOSP widen its window)."""

    def __init__(self, stuck, **kw):
        super().__init__(**kw)
        self.stuck = stuck

    def _sync(self, tree):
        out = []
        for coll in collections(tree):
            key = _wbxml.findtext(coll, "AirSync:SyncKey")
            fid = _wbxml.findtext(coll, "AirSync:CollectionId")
            if fid == "1" and key == "1" and self.stuck > 0:
                self.stuck -= 1
                kids = [("AirSync:SyncKey", "1"), ("AirSync:CollectionId", fid), ("AirSync:Status", "1"),
                        ("AirSync:MoreAvailable", None)]
            else:
                kids = [("AirSync:SyncKey", str(int(key) + 1)), ("AirSync:CollectionId", fid),
                        ("AirSync:Status", "1")]
            out.append(("AirSync:Collection", kids))
        return _wbxml.encode(("AirSync:Sync", [("AirSync:Collections", out)]))


async def test_android_window_starts_at_10_grows_by_10_and_asks_html_200000():
    changes = _wbxml.encode(("Ping:Ping", [("Ping:Status", "2"), ("Ping:Folders", [("Ping:Folder", "1")])]))
    server = StuckWindowServer(stuck=3, pings=[changes])
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET)
        dev.client = clients.CLIENT_TYPES["android"]
        await live(dev, 20, until=lambda: len(server.ping_requests) >= 2)
    inbox = [c for t in server.syncs for c in collections(t)
             if _wbxml.findtext(c, "AirSync:CollectionId") == "1" and _wbxml.findtext(c, "AirSync:SyncKey") != "0"]
    assert [int(_wbxml.findtext(c, "AirSync:WindowSize")) for c in inbox] == [10, 20, 30, 40, 10]
    pref = _wbxml.find(_wbxml.find(inbox[0], "AirSync:Options"), "AirSyncBase:BodyPreference")
    assert _wbxml.findtext(pref, "AirSyncBase:Type") == "2"
    assert _wbxml.findtext(pref, "AirSyncBase:TruncationSize") == "200000"


# -- ios, outlook-cloud

FOLDERS_WITH_TASKS = (("1", "0", "Inbox", 2), ("4", "0", "Sent Items", 5), ("7", "0", "Calendar", 8),
                      ("8", "0", "Contacts", 9), ("9", "0", "Tasks", 7))


class TasksServer(MailServer):
    async def __call__(self, conn, req):
        if req.command == "FolderSync":
            adds = [("FolderHierarchy:Add", [("FolderHierarchy:ServerId", sid), ("FolderHierarchy:ParentId", p),
                                             ("FolderHierarchy:DisplayName", name),
                                             ("FolderHierarchy:Type", str(kind))])
                    for sid, p, name, kind in FOLDERS_WITH_TASKS]
            conn.write(http_response(_wbxml.encode(("FolderHierarchy:FolderSync", [
                ("FolderHierarchy:Status", "1"), ("FolderHierarchy:SyncKey", "1"),
                ("FolderHierarchy:Changes", [("FolderHierarchy:Count", str(len(adds)))] + adds)]))))
            return True
        if req.command == "SendMail":
            self.syncs.append(("SendMail", None))
        elif req.command == "Search":
            self.syncs.append(("Search", None))
        return await super().__call__(conn, req)


async def test_ios_pings_tasks_too_and_looks_up_the_gal_before_a_new_message():
    mail = dataclasses.replace(QUIET, send_per_hour=3600 * 20, reply_share=0.0, forward_share=0.0,
                               searches_per_hour=0.0)
    server = TasksServer()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, mail)
        dev.client = clients.CLIENT_TYPES["ios"]
        await live(dev, 20, until=lambda: sum(1 for t in server.syncs if t[0] == "SendMail") >= 2)
    classes = {(_wbxml.findtext(f, "Ping:Id"), _wbxml.findtext(f, "Ping:Class"))
               for p in server.ping_requests for f in _wbxml.find(p, "Ping:Folders")[1]}
    assert classes == {("1", "Email"), ("7", "Calendar"), ("8", "Contacts"), ("9", "Tasks")}
    order = [t[0] for t in server.syncs if t[0] in ("Search", "SendMail")]
    first_send = order.index("SendMail")
    assert first_send >= 1 and order[first_send - 1] == "Search"  # the recipient looked up while composing


async def test_outlook_cloud_asks_four_weeks_of_mail():
    server = MailServer()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET)
        dev.client = clients.CLIENT_TYPES["outlook-cloud"]
        await live(dev, 20, until=lambda: len(server.ping_requests) >= 1)
    filters = {_wbxml.findtext(c, "AirSync:CollectionId"): _wbxml.findtext(("o", _options(c)), "AirSync:FilterType")
               for t in server.syncs for c in collections(t) if _wbxml.findtext(c, "AirSync:SyncKey") != "0"}
    assert filters["1"] == "5"  # one month (MS-ASCMD 2.2.3.70.1): four weeks of mail
    assert filters["7"] is None  # all of the calendar: no FilterType


# -- hanging Sync


class HoldingServer(MailServer):
    """A Sync with HeartbeatInterval or Wait is held ``hold`` s and answered empty (no changes), or at
    once with ``first`` (bytes) the first time."""

    def __init__(self, hold=0.2, first=None, **kw):
        super().__init__(**kw)
        self.hold_s = hold
        self.first = first
        self.held = []

    async def __call__(self, conn, req):
        if req.command == "Sync":
            tree = _wbxml.decode(req.body)
            if _wbxml.find(tree, "AirSync:HeartbeatInterval") is not None or _wbxml.find(tree, "AirSync:Wait"):
                self.held.append(tree)
                if self.first is not None:
                    body, self.first = self.first, None
                    conn.write(http_response(body))
                    return True
                await asyncio.sleep(self.hold_s)
                conn.write(http_response(b""))
                return True
        return await super().__call__(conn, req)


async def test_hanging_sync_holds_a_sync_of_the_pushed_folders_instead_of_a_ping():
    server = HoldingServer(hold=0.2)
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET)
        dev.client = clients.CLIENT_TYPES["hanging-sync"]
        await live(dev, 10, until=lambda: len(server.held) >= 1)
    assert not server.ping_requests
    held = server.held[0]
    assert _wbxml.findtext(held, "AirSync:HeartbeatInterval") == "30"  # the device's heartbeat (14.1)
    assert sorted(_wbxml.findtext(c, "AirSync:CollectionId") for c in collections(held)) == ["1", "7", "8"]


async def test_hanging_sync_answered_at_once_and_empty_waits_out_the_interval():
    server = HoldingServer(hold=0.0)  # a server that does not hold it
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET)
        dev.load.heartbeat = 60
        dev.client = clients.CLIENT_TYPES["hanging-sync"]
        await live(dev, 3, until=lambda: len(server.held) >= 3)  # would be hundreds in a tight loop
    assert len(server.held) == 1


async def test_hanging_sync_takes_the_limit_of_a_status_14():
    limit = _wbxml.encode(("AirSync:Sync", [("AirSync:Status", "14"), ("AirSync:Limit", "120")]))
    server = HoldingServer(hold=0.1, first=limit)
    stats = Stats()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET, stats=stats)
        dev.client = clients.CLIENT_TYPES["hanging-sync"]
        await live(dev, 10, until=lambda: len(server.held) >= 2)
    assert [_wbxml.findtext(t, "AirSync:HeartbeatInterval") for t in server.held[:2]] == ["30", "120"]


# -- misbehaving


class EstimateServer(MailServer):
    def __init__(self, **kw):
        super().__init__(other=self._other, **kw)
        self.sequence = []

    async def __call__(self, conn, req):
        self.sequence.append(req.command)
        return await super().__call__(conn, req)

    async def _other(self, conn, req):
        if req.command == "GetItemEstimate":
            conn.write(http_response(_wbxml.encode(("GetItemEstimate:GetItemEstimate", [
                ("GetItemEstimate:Response", [("GetItemEstimate:Status", "1"), ("GetItemEstimate:Collection", [
                    ("GetItemEstimate:CollectionId", "1"), ("GetItemEstimate:Estimate", "0")])])]))))
        else:
            conn.write(http_response(b""))
        return True


async def test_misbehaving_alternates_estimate_and_sync_and_never_pings():
    fast = dataclasses.replace(clients.CLIENT_TYPES["misbehaving"], loop_interval=0.02)  # a short test
    server = EstimateServer()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET)
        dev.client = fast
        await live(dev, 15, until=lambda: server.sequence.count("GetItemEstimate") >= 4)
    assert "Ping" not in server.sequence
    loop = [c for c in server.sequence if c in ("Sync", "GetItemEstimate")]
    first = loop.index("GetItemEstimate")
    assert loop[first:first + 6] == ["GetItemEstimate", "Sync"] * 3
    assert clients.CLIENT_TYPES["misbehaving"].loop_interval == 1.0  # about every second, as reported


def test_mail_config_unchanged_by_client_types():
    assert MailConfig().push_folders == ("inbox", "calendar", "contacts")


# -- every type against the embedded target


async def test_every_type_lives_against_the_embedded_target():
    from loadgen.device import life as device_mod
    from loadgen.device.profiles import PROFILES, identity
    from loadgen.eas import versions
    from loadgen.exchange.server import start_target
    from loadgen.exchange.state import TargetState
    from test_mail_device import _load

    names = sorted(clients.CLIENT_TYPES)
    runner, target, url = await start_target("127.0.0.1", 0, TargetState(users=len(names), no_policy=True,
                                                                         history_days=1, daily_messages=30))
    devices = []
    try:
        for n, name in enumerate(names):
            profile = PROFILES["modern"]
            dev = device_mod.Device(n, "user%d" % n, "Pass%d!" % n, versions.get("14.1"), profile,
                                    identity(1, n, 0, profile), url, _load(QUIET, users=len(names)), Stats(),
                                    __import__("random").Random(n), origin=(1, n, 0),
                                    client=clients.CLIENT_TYPES[name])
            devices.append(dev)

        def inbox_synced(dev):
            box = dev.box
            coll = box.colls.get(dev.inbox) if box is not None and dev.inbox is not None else None
            return coll is not None and coll.primed

        await asyncio.gather(*(live(dev, 8, until=lambda d=dev: inbox_synced(d) and (
            d.client.name != "misbehaving" or d.stats.by_key.get(("GetItemEstimate", "ok", "200")))) for dev in devices))
        for dev in devices:
            assert inbox_synced(dev), dev.client.name
            assert dev.alive and dev.state not in ("auth_failed", "blocked"), (dev.client.name, dev.state)
            errors = {k: v for k, v in dev.stats.by_key.items() if k[1] not in ("ok", "interrupted", "adjusted")}
            assert not errors, (dev.client.name, errors)
        by_name = {d.client.name: d for d in devices}
        assert by_name["android"].window == 10 and by_name["android"].prefs.truncation == 200_000
        assert by_name["outlook-cloud"].prefs.email_filter == 5
        assert by_name["misbehaving"].stats.by_key.get(("GetItemEstimate", "ok", "200"))
        # the target holds the Sync (after a Status 14 whose Limit the device follows, counted as adjusted):
        # never a tight loop of Syncs
        syncs = sum(n for (c, _o, _s), n in by_name["hanging-sync"].stats.by_key.items() if c == "Sync")
        assert syncs <= 8
    finally:
        await runner.cleanup()
