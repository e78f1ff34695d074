"""End to end: 600 users (one phone each) mail each other through the embedded target in this process.

The devices send for the first part of the run ([mail] send_until) and the rest of it drains.  The
test then reads the target's store: every message of the run, found by its token (loadgen/eas/mime.py)
in its sender's Sent Items, is in each internal recipient's mailbox exactly once; the recipients'
devices counted it exactly once (received == internal deliveries, no duplicate) with a push latency
each; Sent Items, Deleted Items and the user folders hold what the devices asked.
"""

import asyncio
from collections import Counter

from loadgen import scenario
from loadgen.cli import start
from loadgen.eas.mime import find_token, recipients
from loadgen.exchange import store as st

USERS = 600
TEXT = f"""
name = "mail-e2e"
duration = 30
seed = 11
[target]
ping_min = 5
[auth]
users = {USERS}
[population]
devices = {USERS}
devices_per_user = 1
versions = {{ "14.1" = 6, "16.1" = 1, "14.0" = 2, "12.1" = 1 }}
[load]
ramp_up = 6
mode = "ping"
heartbeat = 30
timeout = 30
graceful_stop = 5
window_size = 50
[mail]
send_per_hour = 150
reply_share = 0.3
forward_share = 0.1
to = [1, 3]
cc_share = 0.3
bcc_share = 0.2
internal_share = 0.8
attachment_share = 0.1
html_share = 0.3
read_share = 0.7
flag_share = 0.1
delete_share = 0.2
move_share = 0.1
read_after = 3
searches_per_hour = 3
resolve_per_hour = 3
send_until = 16
"""


def _messages(box, fid):
    """(n, Message) of the run's messages in folder ``fid`` of ``box`` (those added during the run)."""
    folder = box.folders.get(fid)
    if folder is None or not folder.added:
        return []
    found = []
    for n in folder.added:
        item = box.item(fid, n)
        if isinstance(item, st.Message):
            found.append((n, item))
    return found


def test_users_mail_each_other_and_every_message_arrives_once():
    sc = scenario.parse(TEXT, "mail-e2e.toml")
    result = asyncio.run(start.run(sc, progress=False))
    stats = result.stats
    events = stats.mail_events
    store = result.target.state.store
    run_id = result.devices[0].load.run_id
    assert all(d.state == "provisioned" for d in result.devices)
    assert result.device_errors == {}

    # what was sent: the senders' Sent Items (SaveInSentItems), one copy per message, with its Bcc
    sent = {}
    for user, box in store.mailboxes.items():
        for _n, message in _messages(box, st.SENT):
            token = find_token(message.subject)
            assert token is not None and token.run == run_id
            assert token not in sent
            sent[token] = (user, message)
    submitted = events["sent_new"] + events["sent_reply"] + events["sent_forward"]
    assert submitted > 150  # a few hundred messages in a few tens of seconds
    assert len(sent) == submitted == store.counters["sent_saved"]
    assert events["send_failed"] == 0

    # where each landed: every internal recipient's mailbox has it exactly once (Inbox, or where its
    # user filed or deleted it), nobody else has it
    copies = Counter()
    for user, box in store.mailboxes.items():
        for fid in (st.INBOX, st.DELETED) + st.USER_FOLDERS:
            for _n, message in _messages(box, fid):
                token = find_token(message.subject)
                if token is not None and token.run == run_id:
                    copies[(token, user)] += 1
                    assert "bcc:" not in message.mime[:message.mime.find(b"\r\n\r\n")].decode("latin-1").lower()
    expected = set()
    for token, (sender, message) in sent.items():
        to, cc, bcc = recipients(message.mime)
        for address in to + cc + bcc:
            user = store.user_for(address)
            if user is not None:
                expected.add((token, user))
    assert set(copies) == expected
    assert all(count == 1 for count in copies.values())
    assert len(expected) == store.counters["delivered"]

    # every recipient's phone got each of its messages exactly once, with a push latency each
    assert events["duplicate"] == 0
    assert events["received"] == len(expected)
    latencies = sum(stats.push_hdr[kind].total for kind in stats.push_hdr)
    assert latencies == events["received"]
    assert {"to", "cc", "bcc"} <= set(k for k in stats.push_hdr if stats.push_hdr[k].total)

    # the devices' changes are what the store holds: Deleted Items = deletes + answered meeting
    # requests (the target files them there, MS-ASCMD 2.2.1.11), the user folders = MoveItems
    deleted_items = sum(len(box.folders[st.DELETED].added or ()) for box in store.mailboxes.values()
                        if st.DELETED in box.folders)
    meetings = events["meeting_accepted"] + events["meeting_tentative"] + events["meeting_declined"]
    assert events["deleted"] > 0 and events["moved"] > 0 and events["read"] > 0
    assert deleted_items == events["deleted"] + meetings
    assert store.counters["deleted"] == events["deleted"]
    assert store.counters["moved"] == events["moved"]
    filed = sum(len(box.folders[fid].added or ()) for box in store.mailboxes.values()
                for fid in st.USER_FOLDERS if fid in box.folders)
    assert filed == events["moved"]
    assert store.counters["read"] >= events["read"]  # the target also counts reads of its own
    # nothing is an error but the Pings the devices stopped to act (loadgen/device/mail.py ping_stopped)
    failures = {k: v for k, v in stats.by_key.items() if k[1] not in ("ok", "interrupted", "challenge", "adjusted")}
    assert failures == {}
