"""The device with [mail]: the user's schedule (loadgen/device/user.py) and the device's mail life
(loadgen/device/mail.py) against a scripted server (tests/hostile.py) that records what it is sent.

Each test runs one device for a bounded time; conditions are waited for with a generous deadline."""

import asyncio
import email
import random
import time
from collections import Counter

import pytest

import _wbxml
from hostile import ScriptedServer, http_response, wait_for
from loadgen.device import life as device_mod
from loadgen.device import user
from loadgen.device.profiles import PROFILES, identity
from loadgen.eas import mime, versions
from loadgen.results.stats import Stats
from loadgen.run.context import RunLoad
from loadgen.run.engine import Lives
from loadgen.scenario import LoadConfig, MailConfig, parse
from loadgen.wire.transport import Transport

RUN_ID = "0badcafe"
FOLDERS = (("1", "0", "Inbox", 2), ("3", "0", "Deleted Items", 4), ("4", "0", "Sent Items", 5),
           ("7", "0", "Calendar", 8), ("8", "0", "Contacts", 9), ("11", "1", "Projects", 12))


# -- the schedule


def test_the_schedule_rate_is_the_sum_of_the_kinds_and_draws_by_weight():
    mail = MailConfig(send_per_hour=30, searches_per_hour=10, oof_per_day=24 * 20)
    sending, draining = user.schedules(mail)
    assert sending.rate == pytest.approx((30 + 10 + 20) / 3600)
    rng = random.Random(3)
    drawn = Counter(sending.pick(rng) for _ in range(60_000))
    assert set(drawn) == {"send", "search_gal", "oof"}
    assert drawn["send"] / 60_000 == pytest.approx(0.5, abs=0.02)
    assert drawn["search_gal"] / 60_000 == pytest.approx(1 / 6, abs=0.02)
    delays = [sending.delay(rng) for _ in range(20_000)]
    assert sum(delays) / len(delays) == pytest.approx(3600 / 60, rel=0.05)  # Poisson: mean 1/rate
    # after send_until: no sending kind, the rest unchanged
    assert draining.rate == pytest.approx(30 / 3600) and "send" not in draining.kinds
    assert user.schedules(MailConfig(send_per_hour=5))[1].delay(rng) == user.NEVER


def test_choices_follow_the_shares():
    rng = random.Random(5)
    mail = MailConfig(send_per_hour=1, reply_share=0.5, forward_share=0.25)
    kinds = Counter(user.message_kind(rng, mail, True) for _ in range(20_000))
    assert kinds["reply"] / 20_000 == pytest.approx(0.5, abs=0.02)
    assert kinds["forward"] / 20_000 == pytest.approx(0.25, abs=0.02)
    assert {user.message_kind(rng, mail, False) for _ in range(100)} == {"new"}
    load = _load(MailConfig(send_per_hour=1, internal_share=1.0, to=(2, 2), cc_share=0, bcc_share=0), users=5)
    for _ in range(200):
        to, cc, bcc = user.recipients(rng, load, 3)
        assert len(to) == 2 and not cc and not bcc
        assert all(a.endswith("@example.com") and a != "user3@example.com" for a in to)
    load = _load(MailConfig(send_per_hour=1, internal_share=0.0, external_domain="far.example"), users=5)
    assert all(user.recipient(rng, load, 0).endswith("@far.example") for _ in range(50))
    answers = Counter(user.meeting_answer(rng, MailConfig(meeting_response={"accept": 0.5, "decline": 0.5}))
                      for _ in range(2000))
    assert set(answers) == {1, 3}


# -- a scripted server that speaks enough EAS


def _folder_sync():
    adds = [("FolderHierarchy:Add", [("FolderHierarchy:ServerId", sid), ("FolderHierarchy:ParentId", parent),
                                     ("FolderHierarchy:DisplayName", name), ("FolderHierarchy:Type", str(kind))])
            for sid, parent, name, kind in FOLDERS]
    return _wbxml.encode(("FolderHierarchy:FolderSync", [
        ("FolderHierarchy:Status", "1"), ("FolderHierarchy:SyncKey", "1"),
        ("FolderHierarchy:Changes", [("FolderHierarchy:Count", str(len(adds)))] + adds)]))


def _email(sid, subject, to="", cc="", cls="IPM.Note"):
    data = [("Email:To", to), ("Email:Subject", subject), ("Email:Read", "0"), ("Email:MessageClass", cls)]
    if cc:
        data.insert(1, ("Email:Cc", cc))
    return ("AirSync:Add", [("AirSync:ServerId", sid), ("AirSync:ApplicationData", data)])


class MailServer:
    """FolderSync with FOLDERS; Sync: key n -> n + 1 per collection, with the Adds queued in ``adds[fid]``
    and the Responses of ``responses(fid, commands)``; Ping: ``pings`` answers in turn (then Status 1
    after a short hold); every other command: ``other(req)``."""

    def __init__(self, pings=(), other=None, responses=None, hold=0.3, on_sync=None, more_forever=False):
        self.adds = {}
        self.more_forever = more_forever  # every Sync after the first: MoreAvailable, and nothing in it
        self.on_sync = on_sync  # on_sync(number of Syncs before this one): e.g. mail arrives
        self.pings = list(pings)
        self.other = other
        self.responses = responses
        self.hold = hold
        self.syncs = []  # decoded Sync requests
        self.ping_requests = []

    async def __call__(self, conn, req):
        cmd = req.command
        if cmd == "FolderSync":
            conn.write(http_response(_folder_sync()))
        elif cmd == "Sync":
            tree = _wbxml.decode(req.body)
            if self.on_sync is not None:
                self.on_sync(len(self.syncs))
            self.syncs.append(tree)
            conn.write(http_response(self._sync(tree)))
        elif cmd == "Ping":
            self.ping_requests.append(_wbxml.decode(req.body))
            if self.pings:
                body = self.pings.pop(0)
            else:
                await asyncio.sleep(self.hold)
                body = _wbxml.encode(("Ping:Ping", [("Ping:Status", "1")]))
            conn.write(http_response(body))
        elif cmd == "Settings":
            conn.write(http_response(_wbxml.encode(("Settings:Settings", [("Settings:Status", "1")]))))
        elif self.other is not None:
            return await self.other(conn, req)
        elif cmd == "Search":
            conn.write(http_response(_wbxml.encode(("Search:Search", [("Search:Status", "1"), ("Search:Response", [
                ("Search:Store", [("Search:Status", "1"), ("Search:Range", "0-0"), ("Search:Total", "0")])])]))))
        else:
            conn.write(http_response(b""))
        return True

    def _sync(self, tree):
        out = []
        for coll in collections(tree):
            key = _wbxml.findtext(coll, "AirSync:SyncKey")
            fid = _wbxml.findtext(coll, "AirSync:CollectionId")
            kids = [("AirSync:SyncKey", str(int(key) + 1)), ("AirSync:CollectionId", fid), ("AirSync:Status", "1")]
            if self.more_forever and key != "0":
                kids.append(("AirSync:MoreAvailable", None))
            adds = self.adds.pop(fid, None) if key != "0" else None
            if adds:
                kids.append(("AirSync:Commands", adds))
            sent = _wbxml.find(coll, "AirSync:Commands")
            if sent is not None and self.responses is not None:
                responses = self.responses(fid, sent[1])
                if responses:
                    kids.append(("AirSync:Responses", responses))
            out.append(("AirSync:Collection", kids))
        return _wbxml.encode(("AirSync:Sync", [("AirSync:Collections", out)]))


def collections(tree):
    return [c for c in _wbxml.find(tree, "AirSync:Collections")[1] if c[0] == "AirSync:Collection"]


def collection_ids(tree):
    return [_wbxml.findtext(c, "AirSync:CollectionId") for c in collections(tree)]


def _load(mail, users=10, mode="ping", think_time=0.0, **load):
    return RunLoad(LoadConfig(think_time=think_time, backoff=0.2, mode=mode, timeout=5.0, heartbeat=30, **load),
                   mail=mail, run_id=RUN_ID, users=users, duration=60.0)


def make_device(url, mail, version="14.1", stats=None, index=0, **load):
    profile = PROFILES["modern"]
    dev = device_mod.Device(index, "user%d" % index, "pw", versions.get(version), profile,
                            identity(1, index, 0, profile), url, _load(mail, **load), stats or Stats(),
                            random.Random(1), origin=(1, index, 0))
    dev.need_provision = False  # the scripted servers play the commands after provisioning
    return dev


async def live(dev, seconds, until=None, parked=False, kind="lean"):
    """Run ``dev`` for at most ``seconds`` (its own deadline), or until ``until()`` holds."""
    transport = Transport(kind, timeout=5.0)
    await transport.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    lives = Lives(transport, deadline, dev.stats)
    try:
        if parked:
            lives.start(dev)
            await wait_for(lambda: until() or loop.time() > deadline, seconds + 30)
        else:
            task = asyncio.ensure_future(dev.run(transport, deadline))
            if until is not None:
                await wait_for(lambda: until() or task.done(), seconds + 30)
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()
    finally:
        lives.closed = True
        for t in list(lives.tasks.values()):
            t.cancel()
        await transport.close()


QUIET = MailConfig(searches_per_hour=0.001, read_share=0, flag_share=0, delete_share=0, move_share=0,
                   meeting_response={"accept": 0.0})  # mail on, the user does (almost) nothing


def outcomes(stats, command):
    return {o: n for (c, o, _s), n in stats.by_key.items() if c == command}


# -- folders, Ping and Sync


async def test_first_syncs_take_the_pushed_folders_together_and_ping_names_them():
    server = MailServer()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET)
        await live(dev, 10, until=lambda: len(server.ping_requests) >= 1)
    first = server.syncs[0]
    assert sorted(collection_ids(first)) == ["1", "7", "8"]  # Inbox, Calendar, Contacts: one request
    assert all(_wbxml.findtext(c, "AirSync:SyncKey") == "0" for c in collections(first))
    folders = _wbxml.find(server.ping_requests[0], "Ping:Folders")[1]
    assert [(_wbxml.findtext(f, "Ping:Id"), _wbxml.findtext(f, "Ping:Class")) for f in folders] == [
        ("1", "Email"), ("7", "Calendar"), ("8", "Contacts")]
    assert [f.server_id for f in dev.box.hierarchy] == [f[0] for f in FOLDERS]  # every folder kept


async def test_ping_status_2_syncs_exactly_the_folders_it_names_in_one_request():
    changes = _wbxml.encode(("Ping:Ping", [("Ping:Status", "2"), ("Ping:Folders", [
        ("Ping:Folder", "1"), ("Ping:Folder", "8")])]))
    server = MailServer(pings=[changes])
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET)
        await live(dev, 10, until=lambda: len(server.ping_requests) >= 2)
    after = [collection_ids(t) for t in server.syncs]
    # the first Sync (SyncKey 0) and the GetChanges of the three, then exactly Inbox + Contacts
    assert sorted(after[-1]) == ["1", "8"]
    assert len(after) == 3


async def test_ping_status_6_pings_at_most_max_folders_after():
    too_many = _wbxml.encode(("Ping:Ping", [("Ping:Status", "6"), ("Ping:MaxFolders", "2")]))
    server = MailServer(pings=[too_many])
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET)
        await live(dev, 10, until=lambda: len(server.ping_requests) >= 2)
    counts = [len(_wbxml.find(p, "Ping:Folders")[1]) for p in server.ping_requests]
    assert counts[:2] == [3, 2]


async def test_the_run_s_messages_are_received_once_with_their_push_latency():
    own = "user0@example.com"
    sent_ms = int(time.time() * 1000) - 1500
    tok = mime.make_token(RUN_ID, 4, 1, sent_ms)
    other = mime.make_token("12345678", 4, 2, sent_ms)
    server = MailServer(pings=[_wbxml.encode(("Ping:Ping", [("Ping:Status", "2"), ("Ping:Folders", [
        ("Ping:Folder", "1")])]))] * 2)
    server.adds["1"] = []  # the first GetChanges: nothing (the folder is then primed)
    stats = Stats()

    def arrive(n):
        if n == 2:  # after the first download: new mail
            server.adds["1"] = [_email("1:50", "hello [%s]" % tok, to=own), _email("1:51", "cc me [%s]" % tok,
                                to="a@b.example", cc=own), _email("1:52", "secret [%s]" % tok, to="a@b.example"),
                                _email("1:53", "foreign [%s]" % other, to=own), _email("1:54", "plain", to=own)]
        elif n == 3:
            server.adds["1"] = [_email("1:50", "hello again [%s]" % tok, to=own)]  # the same ServerId again

    server.on_sync = arrive
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET, stats=stats)
        await live(dev, 15, until=lambda: stats.mail_events.get("duplicate"))
    assert stats.mail_events["received"] == 3
    assert stats.mail_events["received_foreign"] == 2  # another run's token, and no token
    assert stats.mail_events["duplicate"] == 1
    assert {k: stats.push_hdr[k].total for k in ("to", "cc", "bcc")} == {"to": 1, "cc": 1, "bcc": 1}
    assert stats.push_hdr["to"].max >= 1_000_000  # microseconds: the 1.5 s since it was sent


# -- both ways: client commands and their Responses


async def test_reads_flags_and_deletes_go_with_the_next_sync_and_failed_ones_are_not_counted():
    mail = MailConfig(searches_per_hour=0.001, read_share=1.0, flag_share=1.0, delete_share=0.5, move_share=0,
                      read_after=0, meeting_response={"accept": 0.0})

    def responses(fid, commands):
        # the server no longer has 1:61 (Status 8, MS-ASCMD 2.2.3.177.17): its changes failed
        return [(tag, [("AirSync:ServerId", "1:61"), ("AirSync:Status", "8")]) for tag, kids in commands
                if _wbxml.findtext((tag, kids), "AirSync:ServerId") == "1:61"][:1]

    server = MailServer(pings=[_wbxml.encode(("Ping:Ping", [("Ping:Status", "2"), ("Ping:Folders", [
        ("Ping:Folder", "1")])]))], responses=responses)
    server.adds["1"] = []
    stats = Stats()

    def arrive(n):
        if n == 2:
            server.adds["1"] = [_email("1:60", "one", to="user0@example.com"),
                                _email("1:61", "two", to="user0@example.com")]

    server.on_sync = arrive
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, mail, stats=stats)
        await live(dev, 15, until=lambda: stats.mail_events.get("read"))
    sent = [c for t in server.syncs for c in collections(t) if _wbxml.find(c, "AirSync:Commands")]
    assert len(sent) == 1 and _wbxml.findtext(sent[0], "AirSync:CollectionId") == "1"
    commands = _wbxml.find(sent[0], "AirSync:Commands")[1]
    by_item = Counter((tag, _wbxml.findtext((tag, kids), "AirSync:ServerId")) for tag, kids in commands)
    assert by_item[("AirSync:Change", "1:60")] == 2 and by_item[("AirSync:Change", "1:61")] == 2  # read + flag
    assert _wbxml.findtext(sent[0], "AirSync:DeletesAsMoves") == "1"
    # counted: only 1:60's changes (1:61's answered Status 8), and the deletes of 1:60 if it was deleted
    assert stats.mail_events["read"] == 1 and stats.mail_events["flagged"] == 1
    assert stats.mail_events["deleted"] == by_item[("AirSync:Delete", "1:60")]


async def test_a_calendar_add_goes_with_a_sync_and_its_response_is_counted():
    mail = MailConfig(calendar_adds_per_day=86400 * 50, read_share=0, flag_share=0, delete_share=0, move_share=0,
                      meeting_response={"accept": 0.0})

    def responses(fid, commands):
        return [("AirSync:Add", [("AirSync:ClientId", _wbxml.findtext((tag, kids), "AirSync:ClientId")),
                                 ("AirSync:ServerId", "7:%d" % i), ("AirSync:Status", "1")])
                for i, (tag, kids) in enumerate(commands) if tag == "AirSync:Add"]

    server = MailServer(responses=responses)
    stats = Stats()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, mail, stats=stats)
        await live(dev, 10, until=lambda: stats.mail_events.get("calendar_added", 0) >= 2)
    adds = [kids for t in server.syncs for c in collections(t) if _wbxml.find(c, "AirSync:Commands")
            for tag, kids in _wbxml.find(c, "AirSync:Commands")[1] if tag == "AirSync:Add"]
    assert adds and all(_wbxml.findtext(("x", k), "AirSync:ClientId") for k in adds)
    data = _wbxml.find(("x", adds[0]), "AirSync:ApplicationData")[1]
    assert [t for t, _v in data][:3] == ["Calendar:Timezone", "Calendar:AllDayEvent", "Calendar:BusyStatus"]


# -- sending


def _compose_ok(conn, req):
    conn.write(http_response(b""))  # an empty body is success (MS-ASCMD 2.2.1.17)
    return True


async def _send_some(version, other=None, until=1, kind="lean"):
    mail = MailConfig(send_per_hour=3600, reply_share=0, forward_share=0, to=(2, 2), internal_share=1.0,
                      cc_share=0, bcc_share=0, read_share=0, flag_share=0, delete_share=0, move_share=0)
    seen = []

    async def compose(conn, req):
        seen.append(req)
        return await (other or (lambda c, r: asyncio.sleep(0, _compose_ok(c, r))))(conn, req)

    server = MailServer(other=compose)
    stats = Stats()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, mail, version=version, stats=stats, index=3)
        await live(dev, 20, until=lambda: len(seen) >= until, kind=kind)
    return dev, stats, seen


async def test_sendmail_14_is_wbxml_with_a_unique_client_id_and_the_token():
    dev, stats, seen = await _send_some("14.1", until=2)
    trees = [_wbxml.decode(r.body) for r in seen[:2]]
    assert [t[0] for t in trees] == ["ComposeMail:SendMail"] * 2
    ids = [_wbxml.findtext(t, "ComposeMail:ClientId") for t in trees]
    assert len(set(ids)) == 2
    message = email.message_from_bytes(_wbxml.find(trees[0], "ComposeMail:Mime")[1])
    token = mime.find_token(message["Subject"])
    assert token.run == RUN_ID and token.sender == 3 and message[mime.TOKEN_HEADER] == mime.make_token(*token)
    to = [a for _n, a in email.utils.getaddresses([message["To"]])]
    assert len(to) == 2 and all(a.startswith("user") and a != "user3@example.com" for a in to)
    assert stats.mail_events["sent_new"] >= 2


@pytest.mark.parametrize("kind", ["lean", "aiohttp"])
async def test_sendmail_12_is_the_raw_mime_with_saveinsent_in_the_query(kind):
    dev, stats, seen = await _send_some("12.1", kind=kind)
    req = seen[0]
    assert req.target.split("Cmd=")[1] == "SendMail&SaveInSent=T"
    assert req.headers["content-type"] == "message/rfc822"
    message = email.message_from_bytes(req.body)
    assert mime.find_token(message["Subject"]).run == RUN_ID
    assert stats.mail_events["sent_new"] >= 1


@pytest.mark.parametrize("answer", ["garbage", "status110", "http500"])
async def test_a_server_failing_every_mail_command_gets_no_storm_and_the_device_lives(answer):
    async def fail(conn, req):
        if answer == "garbage":
            conn.write(http_response(b"\x03\x01\x6a\x00\x45\xff\xff"))
        elif answer == "status110":
            conn.write(http_response(_wbxml.encode(("ComposeMail:SendMail", [("ComposeMail:Status", "110")]))))
        else:
            conn.write(http_response(b"", status=b"500 Internal Server Error"))
        return True

    mail = MailConfig(send_per_hour=3600, searches_per_hour=3600, resolve_per_hour=3600, estimates_per_hour=3600,
                      read_share=0, flag_share=0, delete_share=0, move_share=0)
    server = MailServer(other=fail)
    stats = Stats()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, mail, stats=stats)
        await live(dev, 4.0)
    mail_requests = sum(srv.count(c) for c in ("SendMail", "SmartReply", "SmartForward", "Search",
                                               "ResolveRecipients", "GetItemEstimate"))
    # four actions a second at most (each a few requests), never a storm
    assert 1 <= mail_requests <= 4 * 4 * 4 + 10
    assert dev.alive
    assert stats.mail_events.get("send_failed", 0) == srv.count("SendMail")
    assert not stats.mail_events.get("sent_new")


async def test_more_available_forever_with_nothing_in_it_is_not_a_sync_storm():
    server = MailServer(more_forever=True)
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET)
        await live(dev, 3.0)
    # backoff 0.2 s doubling per answer that brings nothing: a handful, never hundreds
    assert 2 <= len(server.syncs) <= 12
    assert dev.alive


async def test_ping_naming_no_known_folder_syncs_the_pushed_ones_instead_of_pinging_at_once():
    unknown = _wbxml.encode(("Ping:Ping", [("Ping:Status", "2"), ("Ping:Folders", [("Ping:Folder", "99")])]))
    server = MailServer(pings=[unknown])
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET)
        await live(dev, 10, until=lambda: len(server.ping_requests) >= 2)
    assert sorted(collection_ids(server.syncs[2])) == ["1", "7", "8"]


# -- the user acts while a Ping is held


@pytest.mark.parametrize("parked", [False, True])
async def test_a_held_ping_is_stopped_when_the_user_acts_and_counted_interrupted(parked):
    mail = MailConfig(searches_per_hour=3600, read_share=0, flag_share=0, delete_share=0, move_share=0)
    server = MailServer(hold=60)  # the server holds every Ping for a minute
    stats = Stats()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, mail, stats=stats)
        await live(dev, 30, until=lambda: srv.count("Search") >= 2 and len(server.ping_requests) >= 2,
                   parked=parked)
    assert outcomes(stats, "Ping").get("interrupted", 0) >= 1
    assert stats.mail_events["search_gal"] >= 2
    # one request at a time: every Ping before the last was stopped (or answered) before the next request
    assert dev.alive


async def test_poll_mode_syncs_the_pushed_folders_and_the_user_acts_between():
    mail = MailConfig(searches_per_hour=3600, read_share=0, flag_share=0, delete_share=0, move_share=0)
    server = MailServer()
    stats = Stats()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, mail, stats=stats, mode="poll", think_time=0.3)
        await live(dev, 20, until=lambda: srv.count("Search") >= 2 and len(server.syncs) >= 4)
    assert not server.ping_requests
    assert all(sorted(collection_ids(t)) == ["1", "7", "8"] for t in server.syncs)  # the pushed folders, together
    assert stats.mail_events["search_gal"] >= 2


def test_mail_scenario_parses_and_devices_get_their_addresses():
    sc = parse('[population]\ndevices = 3\n[auth]\nusers = 3\nuser = "alice{n}"\n[mail]\nsend_per_hour = 1\naddress = "{user}@corp.example"\n')
    load = RunLoad.for_run(sc)
    assert load.mail is sc.mail and len(load.run_id) == 8
    assert load.address(2) == "alice2@corp.example"
    sc = parse('[population]\ndevices = 3\n[auth]\nusers = 3\nuser = "Bob{n}@Other.Example"\n[mail]\nsend_per_hour = 1\n')
    assert RunLoad.for_run(sc).address(1) == "bob1@other.example"  # the user name, when it is an address
    assert RunLoad.for_run(parse("")).mail is None  # no [mail]: the devices live as before
