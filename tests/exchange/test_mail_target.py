"""The embedded target's mail over real HTTP: SendMail / SmartReply / SmartForward (14.x WBXML and the
12.x raw MIME), Sync both ways (paging, keys, client commands and their Responses, a second device
of the same user), Ping over several folders, MoveItems, malformed requests.  The requests are built
and the answers read with the device's own protocol module (loadgen/eas/mail.py)."""

import asyncio

import pytest

import _wbxml
from _wbxml import encode, findall
from loadgen.eas import mail, mime
from loadgen.eas.commands import root_status
from test_target_features import auth, make_target, ping_request, provisioned, wait_held  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def message(sender, to=(), cc=(), bcc=(), subject="hello", text="the body"):
    return mime.build_message(sender=sender, to=list(to), cc=list(cc), bcc=list(bcc), subject=subject, text=text)


async def user(session, url, n, device="DEV1", version="14.1"):
    if n == 1:
        return await provisioned(session, url, version, device)
    return await provisioned(session, url, version, device, auth_header=auth("user%d" % n, "Pass%d!" % n))


async def sync(c, *collections, window=None):
    """POST one Sync; the parsed answer's collections by id."""
    status, _, tree = await c.post("Sync", mail.sync_request(list(collections), window), key=c.key)
    assert status == 200
    return {col.collection_id: col for col in mail.parse_sync_all(tree).collections}


async def sync_folder(c, cid, keys, window=50):
    """Sync ``cid`` from the key kept in ``keys`` (0 first) until nothing more is available;
    (added, changed, deleted, responses) of every answer, in order."""
    added, changed, deleted = [], [], []
    if keys.get(cid) is None:
        col = (await sync(c, mail.SyncCollection(cid, "0")))[cid]
        assert col.status == 1
        keys[cid] = col.sync_key
    for _ in range(200):
        col = (await sync(c, mail.SyncCollection(cid, keys[cid], window_size=window)))[cid]
        assert col.status == 1
        keys[cid] = col.sync_key
        added += col.added
        changed += col.changed
        deleted += col.deleted
        if not col.more_available:
            return added, changed, deleted
    raise AssertionError("MoreAvailable without end")


async def send(c, body, command="SendMail"):
    status, _, tree = await c.post(command, body, key=c.key)
    assert status == 200
    return mail.parse_compose(tree)


# --------------------------------------------------------------------------- SendMail


async def test_sendmail_delivers_once_to_every_internal_recipient_and_saves_the_sent_copy(make_target):
    tgt, session, url = await make_target(history_days=1, daily_messages=5)
    a = await user(session, url, 1)
    receivers = {n: await user(session, url, n) for n in (2, 3, 4)}
    keys = {n: {} for n in receivers}
    for n, c in receivers.items():
        assert await sync_folder(c, "1", keys[n])  # the history first
    body = message("user1@example.com", to=["user2@example.com", "someone@elsewhere.org"],
                   cc=["user3@example.com", "USER2@example.com"], bcc=["user4@example.com"], subject="quarterly")
    assert await send(a, mail.send_mail("c-1", body, save_in_sent=True)) is None
    for n, c in receivers.items():
        added, _, _ = await sync_folder(c, "1", keys[n])
        assert [i.subject for i in added] == ["quarterly"], n  # exactly once, even when named twice
        assert "user4" not in added[0].to + added[0].cc  # Bcc is not in the delivered copy
    # the sender's Sent Items holds it, with its Bcc
    sent_keys = {}
    added, _, _ = await sync_folder(a, "4", sent_keys)
    assert added[-1].subject == "quarterly"
    box = tgt.state.store.mailbox("user1")
    sent = box.item("4", box.folder("4").next - 1)
    assert b"Bcc: user4@example.com" in sent.mime
    counters = tgt.state.store.counters
    assert (counters["submitted_new"], counters["delivered"], counters["external_recipients"]) == (1, 3, 1)
    # the same ClientId again: 118 MessagePreviouslySent, nothing delivered
    assert await send(a, mail.send_mail("c-1", body)) == 118
    assert counters["duplicates"] == 1 and counters["delivered"] == 3
    # without SaveInSentItems: no second copy in Sent Items
    assert await send(a, mail.send_mail("c-2", body, save_in_sent=False)) is None
    added, _, _ = await sync_folder(a, "4", sent_keys)
    assert added == []


async def test_sendmail_12x_raw_mime_with_the_query_parameters(make_target):
    tgt, session, url = await make_target(history_days=0, daily_messages=0)
    a = await user(session, url, 1, version="12.1")
    box = tgt.state.store.mailbox("user1")

    async def post(command, body, extra=""):
        headers = {"MS-ASProtocolVersion": "12.1", "Content-Type": mail.MIME_CONTENT_TYPE, "Authorization": auth(
            "user1", "Pass1!"), "X-MS-PolicyKey": a.key}
        q = "User=user1&DeviceId=DEV1&DeviceType=SmartPhone&Cmd=%s%s" % (command, extra)
        async with session.post(url + "?" + q, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    body = message("user1@example.com", to=["user2@example.com"], subject="legacy")
    assert await post("SendMail", body, mail.legacy_query(save_in_sent=True)) == (200, b"")
    assert box.folder("4").size() == 1 and tgt.state.store.mailbox("user2").folder("1").size() == 1
    assert await post("SendMail", body, mail.legacy_query(save_in_sent=False)) == (200, b"")
    assert box.folder("4").size() == 1 and tgt.state.store.mailbox("user2").folder("1").size() == 2
    # SmartReply to the message user1 saved: 12.x names it with ItemId and CollectionId
    reply = message("user1@example.com", to=["user2@example.com"], subject="Re: legacy", text="my answer")
    status, _ = await post("SmartReply", reply, mail.legacy_query(True, item_id="4:1", collection_id="4"))
    assert status == 200
    got = tgt.state.store.mailbox("user2").item("1", 3)
    assert "my answer" in got.text and "the body" in got.text  # the original appended
    status, _ = await post("SmartForward", reply, mail.legacy_query(True, item_id="4:99", collection_id="4"))
    assert status == 400  # no such item: 12.x has no WBXML answer
    status, _ = await post("SendMail", b"\x00\x01\x02", mail.legacy_query(True))
    assert status == 400


async def test_smart_reply_and_forward_source_item_and_replace_mime(make_target):
    tgt, session, url = await make_target(inbox_items=3, history_days=1)
    a = await user(session, url, 1)
    store = tgt.state.store
    original = store.mailbox("user1").item("1", 2)
    reply = message("user1@example.com", to=["user2@example.com"], subject="Re: x", text="short answer")
    assert await send(a, mail.smart_reply("r1", reply, "1", "1:2"), "SmartReply") is None
    got = store.mailbox("user2").item("1", store.mailbox("user2").folder("1").next - 1)
    assert got.text.startswith("short answer") and original.text[:40] in got.text
    assert await send(a, mail.smart_forward("f1", reply, "1", "1:2", replace_mime=True), "SmartForward") is None
    got = store.mailbox("user2").item("1", store.mailbox("user2").folder("1").next - 1)
    assert got.text.strip() == "short answer"  # ReplaceMime: the client's message as written
    assert await send(a, mail.smart_forward("f2", reply, "1", "1:99"), "SmartForward") == 150  # ItemNotFound
    assert await send(a, mail.smart_reply("r2", reply, "4", "1:2"), "SmartReply") == 150  # not in that folder
    assert await send(a, mail.smart_reply("r3", reply, None, None, long_id="1:1"), "SmartReply") is None
    counters = store.counters
    assert (counters["submitted_reply"], counters["submitted_forward"]) == (2, 1)


async def test_compose_malformed_requests_get_their_statuses_never_500(make_target):
    tgt, session, url = await make_target(history_days=0)
    a = await user(session, url, 1)
    assert await send(a, mail.send_mail("g1", b"\x00\xff garbage without headers")) == 107  # InvalidMIME
    assert await send(a, mail.send_mail("g2", b"Subject: nobody\r\n\r\nbody")) == 119  # MessageHasNoRecipient
    wrong_root = encode(("ComposeMail:SmartReply", [("ComposeMail:ClientId", "x")]))
    assert await send(a, wrong_root) == 103  # not a SendMail request
    no_mime = encode(("ComposeMail:SendMail", [("ComposeMail:ClientId", "x")]))
    assert await send(a, no_mime) == 103
    no_source = encode(("ComposeMail:SmartForward", [("ComposeMail:ClientId", "y"), ("ComposeMail:Mime", b"To: a@b")]))
    assert await send(a, no_source, "SmartForward") == 103
    status, _, tree = await a.post("SendMail", b"\x03\x01j\x00\x45\x46", key=a.key)  # not WBXML that decodes
    assert status == 200 and root_status(tree) == 102
    status, _, _ = await a.post("SendMail", b"", key=a.key)
    assert status == 200
    assert not any(h == 500 for (_c, h, _e) in tgt.counters)
    assert tgt.state.store.counters["delivered"] == 0


# --------------------------------------------------------------------------- Sync both ways


async def test_sync_paging_several_collections_stale_and_replayed_keys(make_target):
    tgt, session, url = await make_target(inbox_items=12, history_days=2)
    c = await user(session, url, 1)
    cols = await sync(c, mail.SyncCollection("1", "0"), mail.SyncCollection("7", "0"), mail.SyncCollection("8", "0"))
    assert {k: v.sync_key for k, v in cols.items()} == {"1": "1", "7": "1", "8": "1"}
    cols = await sync(c, mail.SyncCollection("1", "1", window_size=5), mail.SyncCollection("7", "1", window_size=100),
                      mail.SyncCollection("8", "1", window_size=100))
    assert len(cols["1"].added) == 5 and cols["1"].more_available
    assert not cols["7"].more_available and cols["7"].added and cols["8"].added
    assert {i.message_class for i in cols["1"].added} >= {"IPM.Note", "IPM.Schedule.Meeting.Request"}
    # a lost answer: the previous key again gives the same items and the same next key
    again = await sync(c, mail.SyncCollection("1", "1", window_size=5))
    assert [i.server_id for i in again["1"].added] == [i.server_id for i in cols["1"].added]
    assert again["1"].sync_key == cols["1"].sync_key == "2"
    rest = await sync(c, mail.SyncCollection("1", "2", window_size=100))
    assert len(rest["1"].added) == 7 and not rest["1"].more_available
    stale = await sync(c, mail.SyncCollection("1", "1"))  # two keys back
    assert stale["1"].status == 3
    stale = await sync(c, mail.SyncCollection("1", "77"))
    assert stale["1"].status == 3


async def test_filter_type_limits_mail_by_date(make_target):
    tgt, session, url = await make_target(history_days=10, daily_messages=10)
    c = await user(session, url, 1)
    await sync(c, mail.SyncCollection("1", "0"))
    cols = await sync(c, mail.SyncCollection("1", "1", window_size=512, filter_type=1))  # one day
    box = tgt.state.store.mailbox("user1")
    expected = [n for n in box.folder("1").numbers() if box.item("1", n).date >= tgt.state.store.clock() - 86400]
    assert 0 < len(cols["1"].added) == len(expected) < box.folder("1").size()
    assert [i.server_id for i in cols["1"].added] == ["1:%d" % n for n in expected]
    # the calendar by the end of its items (a recurring series whatever its dates)
    await sync(c, mail.SyncCollection("7", "0"))
    cols = await sync(c, mail.SyncCollection("7", "1", window_size=512, filter_type=3))  # one week
    kept = [n for n in box.folder("7").numbers()
            if box.item("7", n).recurrence or box.item("7", n).end >= tgt.state.store.clock() - 7 * 86400]
    assert [i.server_id for i in cols["7"].added] == ["7:%d" % n for n in kept]
    assert len(kept) < box.folder("7").size()


async def test_client_commands_responses_and_a_second_device_of_the_same_user(make_target):
    tgt, session, url = await make_target(inbox_items=6, history_days=1)
    a = await user(session, url, 1, device="PHONE")
    b = await user(session, url, 1, device="TABLET")
    ka, kb = {}, {}
    for c, keys in ((a, ka), (b, kb)):
        for cid in ("1", "3", "7"):
            await sync_folder(c, cid, keys)
    commands = (mail.Change("1:1", mail.email_read(True)), mail.Change("1:2", mail.email_flag(2)),
                mail.Change("1:99", mail.email_read(True)), mail.Delete("1:3"), mail.Delete("1:98"),
                mail.Fetch("1:4"), mail.Fetch("1:97"))
    cols = await sync(a, mail.SyncCollection("1", ka["1"], commands=commands))
    col = cols["1"]
    ka["1"] = col.sync_key
    assert not col.added and not col.changed and not col.deleted  # nothing echoed
    assert sorted((r.kind, r.server_id, r.status) for r in col.responses) == [
        ("Change", "1:99", 8), ("Delete", "1:98", 8), ("Fetch", "1:4", 1), ("Fetch", "1:97", 8)]
    # Add of a calendar item: ClientId -> ServerId; an Add to the Inbox is refused (6)
    cols = await sync(a, mail.SyncCollection("7", ka["7"], commands=(
        mail.Add("cal-1", mail.calendar_item("Dentist", 1_800_000_000, 1_800_003_600)),)),
        mail.SyncCollection("1", ka["1"], commands=(mail.Add("mail-1", mail.email_read(True)),)))
    (added,) = cols["7"].responses
    assert (added.kind, added.client_id, added.status) == ("Add", "cal-1", 1) and added.server_id.startswith("7:")
    assert [(r.kind, r.status) for r in cols["1"].responses] == [("Add", 6)]
    ka["7"], ka["1"] = cols["7"].sync_key, cols["1"].sync_key
    # the other device sees every change once
    added_b, changed_b, deleted_b = await sync_folder(b, "1", kb)
    assert sorted(changed_b) == ["1:1", "1:2"] and deleted_b == ["1:3"] and not added_b
    added_b, _, _ = await sync_folder(b, "3", kb)  # DeletesAsMoves: in Deleted Items
    assert [i.subject for i in added_b] == [tgt.state.store.mailbox("user1").item("3", added_b[0].server_id and int(
        added_b[0].server_id.partition(":")[2])).subject]
    added_b, _, _ = await sync_folder(b, "7", kb)
    assert [i.server_id for i in added_b] == [added.server_id]
    # ... and the device that made them gets nothing back
    for cid in ("1", "3", "7"):
        assert await sync_folder(a, cid, ka) == ([], [], [])
    box = tgt.state.store.mailbox("user1")
    assert box.flags("1", 1, box.item("1", 1))[0] == 1 and box.flags("1", 2, box.item("1", 2))[1] == 2
    counters = tgt.state.store.counters
    assert (counters["read"], counters["flagged"], counters["deleted"], counters["client_adds"]) == (1, 1, 1, 1)


async def test_a_replayed_add_keeps_its_server_id(make_target):
    tgt, session, url = await make_target(history_days=0)
    c = await user(session, url, 1)
    await sync(c, mail.SyncCollection("8", "0"))
    request = mail.SyncCollection("8", "1", commands=(mail.Add("k1", mail.contact_item("Ann", "Lee", "ann@x.org")),))
    first = (await sync(c, request))["8"]
    again = (await sync(c, request))["8"]  # the answer was lost: the same request again
    assert first.responses == again.responses and first.sync_key == again.sync_key
    assert tgt.state.store.mailbox("user1").folder("8").size() == tgt.state.store.counts(None)["8"] + 1


# --------------------------------------------------------------------------- Ping


async def test_ping_over_several_folders_names_exactly_the_changed_ones(make_target):
    tgt, session, url = await make_target(ping_min=1, history_days=1, daily_messages=4)
    a = await user(session, url, 1, device="PHONE")
    b = await user(session, url, 1, device="TABLET")
    sender = await user(session, url, 2)
    ka, kb = {}, {}
    for c, keys in ((a, ka), (b, kb)):
        for cid in ("1", "4", "7"):
            await sync_folder(c, cid, keys)
    task = asyncio.create_task(a.post("Ping", ping_request(30, ("1", "4", "7")), key=a.key))
    await wait_held(tgt, 1)
    # a change the pinging device made itself does not wake it
    await sync(a, mail.SyncCollection("4", ka["4"], commands=(mail.Change("4:1", mail.email_read(False)),)))
    await asyncio.sleep(0.05)
    assert not task.done()
    assert await send(sender, mail.send_mail("s1", message("user2@example.com", to=["user1@example.com"]))) is None
    _, _, tree = await asyncio.wait_for(task, 10)
    assert root_status(tree) == 2
    assert [f[1] for f in findall(tree, "Ping:Folders/Ping:Folder")] == ["1"]
    # the other device: both the Inbox and its Sent Items changed for it -- at once
    _, _, tree = await asyncio.wait_for(b.post("Ping", ping_request(30, ("1", "4", "7")), key=b.key), 10)
    assert root_status(tree) == 2 and [f[1] for f in findall(tree, "Ping:Folders/Ping:Folder")] == ["1", "4"]


# --------------------------------------------------------------------------- MoveItems


async def test_move_items_statuses_and_both_change_logs(make_target):
    tgt, session, url = await make_target(inbox_items=5, history_days=1)
    a = await user(session, url, 1, device="PHONE")
    b = await user(session, url, 1, device="TABLET")
    kb = {}
    for cid in ("1", "11"):
        await sync_folder(b, cid, kb)
    body = mail.move_items([("1:1", "1", "11"), ("1:1", "1", "11"), ("1:2", "1", "99"), ("1:2", "1", "1"),
                            ("1:2", "1", "7"), ("5:1", "5", "11")])
    status, _, tree = await a.post("MoveItems", body, key=a.key)
    assert status == 200
    results = mail.parse_move_items(tree)
    assert [r.status for r in results] == [3, 1, 2, 4, 2, 1]  # MS-ASCMD 2.2.3.177.10
    new = results[0].dst_msg_id
    assert new.startswith("11:") and tgt.state.store.counters["moved"] == 1
    _, _, deleted = await sync_folder(b, "1", kb)
    added, _, _ = await sync_folder(b, "11", kb)
    assert deleted == ["1:1"] and [i.server_id for i in added] == [new]
    status, _, tree = await a.post("MoveItems", encode(("Move:Move", [])), key=a.key)
    assert status == 200 and root_status(tree) == 103


async def test_malformed_sync_requests_are_statuses_not_500(make_target):
    tgt, session, url = await make_target(history_days=1)
    c = await user(session, url, 1)
    await sync(c, mail.SyncCollection("1", "0"))
    bodies = [
        encode(("AirSync:Sync", [("AirSync:Collections", [("AirSync:Collection", [
            ("AirSync:SyncKey", "1"), ("AirSync:CollectionId", "1"), ("AirSync:Commands", [
                ("AirSync:Change", None), ("AirSync:Delete", [("AirSync:ServerId", None)]),
                ("AirSync:Add", [("AirSync:ApplicationData", [("Email:Read", "1")])]),
                ("AirSync:Change", [("AirSync:ServerId", "1:1"), ("AirSync:ApplicationData", [("Email:Read", "7")])]),
                ("AirSync:Fetch", [])])])])])),
        encode(("AirSync:Sync", [("AirSync:Collections", [("AirSync:Collection", None)])])),
        encode(("AirSync:Sync", [("AirSync:Collections", [("AirSync:Collection", [("AirSync:SyncKey", None)])])])),
        encode(("AirSync:Sync", [("AirSync:Collections", None)])),
        encode(("Ping:Ping", [])),
    ]
    for body in bodies:
        status, _, tree = await c.post("Sync", body, key=c.key)
        assert status == 200 and tree is not None
    assert not any(h == 500 for (_c, h, _e) in tgt.counters)
    exposition = (await _metrics(tgt)).decode()
    assert 'easload_target_mail_total{event="deleted"}' in exposition


async def _metrics(tgt):
    from loadgen.exchange.metrics import exposition, make_registry

    return exposition(make_registry(tgt))


def test_decode_of_an_empty_compose_answer_is_success():
    assert mail.parse_compose(None) is None
    assert mail.parse_compose(_wbxml.decode(encode(("ComposeMail:SendMail", [("ComposeMail:Status", "118")])))) == 118


async def test_a_cluster_relays_mail_for_users_of_other_processes():
    """exchange/cluster.py: the sender's process delivers to its own users and hands the others to the
    parent, which delivers to their processes; every internal recipient once, the Bcc one too."""
    import aiohttp

    from loadgen.exchange.cluster import TargetCluster

    async with TargetCluster(2, users=4, seed=2, history_days=0) as cluster:
        async with aiohttp.ClientSession() as session:
            a = await provisioned(session, cluster.url_for("user0"), device="R0", auth_header=auth("user0", "Pass0!"))
            body = message("user0@example.com", to=["user1@example.com", "user2@example.com"],
                           cc=["user1@example.com"], bcc=["user3@example.com"], subject="across")
            assert await send(a, mail.send_mail("x-1", body)) is None
            loop = asyncio.get_running_loop()
            end = loop.time() + 30
            while True:
                counters = (await cluster.counters())["mail"]
                if counters["delivered"] >= 3 or loop.time() > end:
                    break
                await asyncio.sleep(0.05)
            assert counters["delivered"] == 3 and counters["external_recipients"] == 0
            # user3 (process 1) syncs it from its own process, without the Bcc header
            d = await provisioned(session, cluster.url_for("user3"), device="R3", auth_header=auth("user3", "Pass3!"))
            added, _, _ = await sync_folder(d, "1", {})
            assert [i.subject for i in added] == ["across"] and "user3" not in added[0].to
