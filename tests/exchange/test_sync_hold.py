"""The embedded target holds a Sync with Wait (MS-ASCMD 2.2.3.198) or HeartbeatInterval (2.2.3.88.2) as it
holds a Ping: answered at once when something is pending, else held until one of its collections changes
for this device (answered with those changes) or the interval ends (the empty Sync response, MS-ASCMD
2.2.1.21.2); out of the target's bounds Status 14 with Limit (2.2.3.97), both elements Status 4.  Held
Syncs have their own gauge, histogram and outcome counts."""

import asyncio

import pytest

from _wbxml import encode, findtext
from hostile import wait_for
from loadgen.eas import commands, mail
from loadgen.eas.commands import root_status
from loadgen.exchange.metrics import exposition, make_registry
from loadgen.exchange.sync import hold_interval
from test_target_features import make_target, provisioned  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

INBOX = "1"  # store.py FOLDERS: the Inbox


def held_request(key, wait=None, heartbeat=None, cid=INBOX, commands_=()):
    children = [("AirSync:SyncKey", key), ("AirSync:CollectionId", cid)]
    if commands_:
        children.append(("AirSync:Commands", list(commands_)))
    root = [("AirSync:Collections", [("AirSync:Collection", children)])]
    if wait is not None:
        root.append(("AirSync:Wait", str(wait)))
    if heartbeat is not None:
        root.append(("AirSync:HeartbeatInterval", str(heartbeat)))
    return encode(("AirSync:Sync", root))


async def synced(session, url):
    """A provisioned device whose Inbox is synced to its end: (client, current key)."""
    c = await provisioned(session, url)
    status, _, tree = await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    assert (status, root_status(tree)) == (200, 1)
    key = "0"
    while True:
        status, _, tree = await c.post("Sync", held_request(key), key=c.key)
        found = {x.collection_id: x for x in mail.parse_sync_all(tree).collections}[INBOX] if tree else None
        if found is None or found.sync_key == key:
            return c, key
        key = found.sync_key


def test_the_interval_bounds():
    tree = ("AirSync:Sync", [("AirSync:Collections", []), ("AirSync:HeartbeatInterval", "30")])
    assert hold_interval(tree, 60, 3540) == (None, (14, 60))
    assert hold_interval(tree, 1, 20) == (None, (14, 20))
    assert hold_interval(tree, 1, 3540) == (30, None)
    wait = ("AirSync:Sync", [("AirSync:Collections", []), ("AirSync:Wait", "0")])
    assert hold_interval(wait, 60, 3540) == (None, (14, 1))
    assert hold_interval(("AirSync:Sync", [("AirSync:Wait", "60")]), 60, 3540) == (None, (14, 59))
    assert hold_interval(("AirSync:Sync", [("AirSync:Wait", "2")]), 60, 3540) == (120, None)
    assert hold_interval(("AirSync:Sync", [("AirSync:Wait", "2")]), 300, 3540) == (None, (14, 5))
    both = ("AirSync:Sync", [("AirSync:Wait", "2"), ("AirSync:HeartbeatInterval", "120")])
    assert hold_interval(both, 60, 3540) == (None, (4, None))
    assert hold_interval(("AirSync:Sync", [("AirSync:Wait", "soon")]), 60, 3540) == (None, (4, None))
    assert hold_interval(("AirSync:Sync", [("AirSync:Collections", [])]), 60, 3540) == (0, None)


async def test_out_of_range_is_status_14_with_the_bound_and_both_is_4(make_target):
    tgt, session, url = await make_target(ping_min=30, ping_max=600, history_days=0)
    c, key = await synced(session, url)
    for kw, status, limit in (({"heartbeat": 5}, 14, "30"), ({"heartbeat": 601}, 14, "600"),
                              ({"wait": 11}, 14, "10"), ({"wait": 1, "heartbeat": 60}, 4, None)):
        code, _, tree = await c.post("Sync", held_request(key, **kw), key=c.key)
        assert (code, root_status(tree), findtext(tree, "AirSync:Limit")) == (200, status, limit), kw
        assert mail.parse_sync_all(tree).limit == (int(limit) if limit else None)  # as the device reads it
    assert tgt.sync_holds == {"refused": 4} and tgt.held_syncs == 0


async def test_held_until_expiry_then_the_empty_answer(make_target):
    tgt, session, url = await make_target(ping_min=1, history_days=0)
    c, key = await synced(session, url)
    ordinary = sum(tgt.durations.data["Sync"][:-1])
    post = asyncio.ensure_future(c.post("Sync", held_request(key, heartbeat=1), key=c.key))
    await wait_for(lambda: tgt.held_syncs == 1 or post.done(), 10)
    assert tgt.held_syncs == 1 and tgt.held_pings == 0  # held, and not counted as a Ping
    status, headers, tree = await asyncio.wait_for(post, 10)
    assert (status, tree, headers.get("Content-Length")) == (200, None, "0")  # MS-ASCMD 2.2.1.21.2
    assert tgt.held_syncs == 0 and tgt.sync_holds == {"expired": 1}
    assert sum(tgt.held_sync_durations.data["Sync"][:-1]) == 1  # its own histogram, not the requests'
    assert sum(tgt.durations.data["Sync"][:-1]) == ordinary
    text = exposition(make_registry(tgt)).decode()
    assert 'easload_target_sync_holds_total{outcome="expired"} 1.0' in text
    assert "easload_target_held_syncs 0.0" in text
    assert 'easload_target_held_sync_duration_seconds_count{command="Sync"} 1.0' in text


async def test_new_mail_answers_the_held_sync_with_the_change(make_target):
    tgt, session, url = await make_target(ping_min=1, history_days=0)
    c, key = await synced(session, url)
    post = asyncio.ensure_future(c.post("Sync", held_request(key, heartbeat=300), key=c.key))
    await wait_for(lambda: tgt.held_syncs == 1 or post.done(), 10)
    assert not post.done()
    tgt.state.deliver_mail("user1")
    status, _, tree = await asyncio.wait_for(post, 10)
    found, = mail.parse_sync_all(tree).collections
    assert status == 200 and found.collection_id == INBOX and found.sync_key != key and len(found.added) == 1
    assert tgt.sync_holds == {"changes": 1} and tgt.held_syncs == 0


async def test_answered_at_once_when_something_is_pending_or_sent(make_target):
    tgt, session, url = await make_target(ping_min=1, history_days=0)
    c, key = await synced(session, url)
    tgt.state.deliver_mail("user1")  # before the request: no hold
    status, _, tree = await asyncio.wait_for(c.post("Sync", held_request(key, heartbeat=300), key=c.key), 10)
    found, = mail.parse_sync_all(tree).collections
    assert len(found.added) == 1 and tgt.sync_holds == {}
    # a client command in the request: answered at once, even with nothing new on the server
    sid = found.added[0].server_id
    change = ("AirSync:Change", [("AirSync:ServerId", sid), ("AirSync:ApplicationData", [("Email:Read", "1")])])
    status, _, tree = await asyncio.wait_for(
        c.post("Sync", held_request(found.sync_key, heartbeat=300, commands_=[change]), key=c.key), 10)
    found, = mail.parse_sync_all(tree).collections
    assert (status, found.status) == (200, 1) and tgt.sync_holds == {} and tgt.state.mailbox("user1").flags(
        INBOX, int(sid.partition(":")[2]), None)[0]  # the Read change applied


async def test_a_resync_answers_the_held_sync_with_status_3(make_target):
    tgt, session, url = await make_target(ping_min=1, history_days=0)
    c, key = await synced(session, url)
    post = asyncio.ensure_future(c.post("Sync", held_request(key, heartbeat=300), key=c.key))
    await wait_for(lambda: tgt.held_syncs == 1 or post.done(), 10)
    record, = tgt.state.devices.values()
    tgt.state.resync(record)
    status, _, tree = await asyncio.wait_for(post, 10)
    found, = mail.parse_sync_all(tree).collections
    assert found.status == 3 and tgt.held_syncs == 0
