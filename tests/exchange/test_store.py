"""The embedded target's mail store (loadgen/exchange/store.py), without HTTP: generated history,
overlays and change log, delivery, bounds."""

import sys

from loadgen.exchange import store as st
from loadgen.exchange.store import Store

USERS = {"user%d" % i: "x" for i in range(20)}


def make(**kw):
    kw.setdefault("anchor", 1_760_000_000)
    return Store(7, users=USERS, **kw)


def render_all(box, fid):
    out = []
    for n in box.folder(fid).numbers():
        item = box.item(fid, n)
        if item.cls == "Email":
            out.append((n, item.subject, item.sender_addr, item.to, item.cc, item.date, item.text, item.attachments,
                        item.message_class, box.flags(fid, n, item)))
        elif item.cls == "Calendar":
            out.append((n, item.subject, item.start, item.end, item.uid, item.recurrence, item.organizer))
        elif item.cls == "Contacts":
            out.append((n, item.first, item.last, item.email))
        else:
            out.append((n, item.subject, item.due, item.complete))
    return out


def test_history_is_deterministic_from_seed_user_folder_and_number():
    a, b = make(), make()
    for fid in ("1", "4", "7", "8", "6", "11"):
        assert render_all(a.mailbox("user3"), fid) == render_all(b.mailbox("user3"), fid)
    other_seed = Store(8, users=USERS, anchor=1_760_000_000).mailbox("user3")
    assert render_all(other_seed, "1") != render_all(a.mailbox("user3"), "1")
    assert render_all(a.mailbox("user4"), "1") != render_all(a.mailbox("user3"), "1")


def test_history_size_follows_days_and_daily_rate_and_is_varied():
    s = make(history_days=14, daily_messages=100)
    box = s.mailbox("user1")
    received = sum(box.folder(f).size() for f in ("1", "11", "12", "13"))
    assert received == 1400 and box.folder("4").size() == 350  # a quarter sent
    items = [box.item("1", n) for n in box.folder("1").numbers()]
    assert {i.language for i in items} == set(st.LANGUAGES)
    sizes = {len(i.text) for i in items}
    assert min(sizes) < 500 and max(sizes) > 10_000
    assert sum(1 for i in items if i.attachments) > 100
    meetings = [i for i in items if i.message_class == "IPM.Schedule.Meeting.Request"]
    assert meetings and all(box.item("7", i.meeting) is not None for i in meetings)
    assert [i.date for i in items] == sorted(i.date for i in items)  # oldest first
    assert s.anchor - items[0].date > 13 * 86400 and s.anchor - items[-1].date < 3600
    calendar = [box.item("7", n) for n in box.folder("7").numbers()]
    assert any(c.recurrence is not None for c in calendar) and any(c.kind == "single" for c in calendar)
    assert box.folder("8").size() > 0 and box.folder("6").size() > 0


def test_a_mailbox_costs_a_few_hundred_bytes_until_it_changes():
    s = make(history_days=14, daily_messages=100)
    box = s.mailbox("user1")
    for fid in ("1", "4"):
        list(box.folder(fid).numbers())
    size = sys.getsizeof(box) + sum(sys.getsizeof(f) for f in box.folders.values()) + sys.getsizeof(box.folders)
    assert size < 2000  # no object per generated item


def test_delivery_exactly_once_per_internal_recipient_bcc_removed_external_counted():
    s = make()
    mime = (b"From: user1@example.com\r\nTo: user2@example.com, USER3@example.com, someone@else.org\r\n"
            b"Cc: user2@example.com\r\nBcc: user4@example.com, user3@example.com\r\nSubject: hello\r\n\r\nbody\r\n")
    delivered, external = s.deliver("user1", mime)
    assert sorted(delivered) == ["user2", "user3", "user4"] and external == ["someone@else.org"]
    for user in delivered:
        box = s.mailbox(user)
        inbox = box.folder("1")
        new = [n for n in inbox.numbers() if n > inbox.count]
        assert len(new) == 1
        item = box.item("1", new[0])
        assert item.subject == "hello" and b"Bcc" not in item.mime and item.text.strip() == "body"
    assert s.mailbox("user1").folder("1").size() == s.mailbox("user1").folder("1").count  # the sender got nothing
    assert s.counters["delivered"] == 3 and s.counters["external_recipients"] == 1
    # one parsed message shared by every copy
    items = {id(s.mailbox(u).item("1", s.mailbox(u).folder("1").count + 1)) for u in delivered}
    assert len(items) == 1


def test_changes_are_logged_with_their_origin_and_the_log_is_bounded():
    s = make(inbox_items=10)
    box = s.mailbox("user1")
    inbox = box.folder("1")
    assert box.set_flags("1", 3, read=1, origin="DEV1")
    new = box.move("1", 4, "11", origin="DEV1")
    assert box.item("1", 4) is None and box.item("11", new) is not None
    assert box.item("11", new).subject == st.GenMail(box, "1", 4).subject  # the content moved with it
    assert [(op, n, who) for _cn, op, n, who in inbox.since(0)] == [(st.CHANGE, 3, "DEV1"), (st.DELETE, 4, "DEV1")]
    assert box.remove("1", 4) is None and not box.set_flags("1", 4, read=1)  # gone
    for _ in range(st.LOG_CAP + 10):
        box.set_flags("1", 5, read=0)
    assert len(inbox.log) <= st.LOG_CAP and inbox.since(0) is None and inbox.since(inbox.cn - 1)


def test_new_items_per_folder_are_capped():
    s = make(inbox_items=0)
    for _ in range(st.ADDED_CAP + 5):
        s.deliver_generated("user1")
    inbox = s.mailbox("user1").folder("1")
    assert len(inbox.added) == st.ADDED_CAP and inbox.size() == st.ADDED_CAP
    assert min(inbox.added) == 6  # the oldest went first


def test_ping_waiters_are_woken_per_folder():
    class Fut:
        def __init__(self):
            self.result = None

        def done(self):
            return self.result is not None

        def set_result(self, value):
            self.result = value

    s = make()
    box = s.mailbox("user1")
    a, b = Fut(), Fut()
    box.watch(("1", "7"), a)
    box.watch(("4",), b)
    box.set_flags("4", 1, read=0)
    assert b.result == "4" and a.result is None
    s.deliver_generated("user1")
    assert a.result == "1"
    box.unwatch(("1", "7"), a)
    assert not box.waiters


def test_client_ids_are_remembered_within_a_bound():
    box = make().mailbox("user1")
    assert box.remember_client_id("c1") and not box.remember_client_id("c1")
    for i in range(st.CLIENT_ID_CAP + 1):
        box.remember_client_id("x%d" % i)
    assert box.remember_client_id("c1")  # forgotten beyond the bound


def test_strip_bcc_keeps_everything_else():
    mime = b"To: a@x\r\nBcc: b@x,\r\n c@x\r\nSubject: s\r\n\r\nBcc: not a header\r\n"
    assert st.strip_bcc(mime) == b"To: a@x\r\nSubject: s\r\n\r\nBcc: not a header\r\n"
    assert st.strip_bcc(b"To: a@x\r\n\r\nbody") == b"To: a@x\r\n\r\nbody"


def test_garbage_is_not_a_message():
    s = make()
    assert st.parse_mime(b"") is None and st.parse_mime(b"\x00\x01 no headers") is None
    assert s.deliver("user1", b"") == ([], [])


def test_a_moved_message_keeps_its_content_and_attachments_under_its_new_id():
    s = make(inbox_items=40)
    box = s.mailbox("user1")
    n = next(n for n in box.folder("1").numbers() if box.item("1", n).attachments)
    before = box.item("1", n)
    new = box.move("1", n, "12")
    moved = box.item("12", new)
    assert (moved.subject, moved.text, moved.date) == (before.subject, before.text, before.date)
    refs = moved.attachment_refs("12", new)
    assert [r[1:] for r in refs] == [a[1:] for a in before.attachments]
    for ref, name, size in refs:
        assert ref.startswith("12:%d:" % new)
        found_name, found_size, content = box.attachment(ref)
        assert (found_name, found_size, len(content())) == (name, size, size)
    assert box.attachment(before.attachments[0][0]) is None  # nothing left at the old place
