"""The embedded target's other mail commands over real HTTP: MeetingResponse, Search (GAL and
Mailbox), ResolveRecipients, GetItemEstimate, Settings Oof.  Requests are built with the device's
own protocol module (loadgen/eas/mail.py) or by hand for malformed ones; answers are decoded by our
codec and checked element by element."""

import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as hs

from _wbxml import children, decode, encode, find, findall, findtext
from loadgen.eas import mail
from loadgen.eas.versions import VERSIONS
from loadgen.exchange import estimate, handlers, meeting, oof, resolve, search, store as st
from loadgen.exchange.server import Target
from loadgen.exchange.state import TargetState
from test_mail_target import sync_folder, user  # noqa: F401
from test_target_features import make_target  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    """The handlers as handlers.py registers them (a no-op once server.py's table includes them)."""
    monkeypatch.setattr(Target, "_handlers", handlers.install(dict(Target._handlers)))


async def post(c, command, body):
    status, _, tree = await c.post(command, body, key=c.key)
    assert status == 200, (command, status)
    return tree


def tags(node):
    return [tag for tag, _ in children(node)]


# --------------------------------------------------------------------------- MeetingResponse


def _meeting_request(box):
    """(server id, calendar number) of the first meeting request in the generated Inbox."""
    for n in box.folder(st.INBOX).numbers():
        item = box.item(st.INBOX, n)
        if isinstance(item, st.GenMail) and item.meeting is not None:
            return "1:%d" % n, item.meeting
    raise AssertionError("no meeting request generated")


def _internal_organizer(box):
    """(server id, calendar number, organizer user) of a meeting request whose organizer is a user."""
    store = box.store
    for n in box.folder(st.INBOX).numbers():
        item = box.item(st.INBOX, n)
        if isinstance(item, st.GenMail) and item.meeting is not None:
            _name, addr = st.GenEvent(box, item.meeting).organizer
            organizer = store.user_for(addr.lower())
            if organizer is not None and organizer != box.user:
                return "1:%d" % n, item.meeting, organizer
    raise AssertionError("no meeting request from a colleague")


async def test_meeting_accept_updates_calendar_removes_request_and_answers_the_organizer(make_target):
    tgt, session, url = await make_target(history_days=7, daily_messages=20)
    c = await user(session, url, 1)
    store = tgt.state.store
    box = store.mailbox("user1")
    request_id, number, organizer = _internal_organizer(box)
    keys = {}
    await sync_folder(c, "1", keys)
    await sync_folder(c, "7", keys)
    org_inbox = store.mailbox(organizer).folder(st.INBOX)
    before = org_inbox.size()
    tree = await post(c, "MeetingResponse", mail.meeting_response(mail.ACCEPT, "1", request_id))
    assert tree[0] == "MeetingResponse:MeetingResponse"
    results = findall(tree, "MeetingResponse:Result")
    assert len(results) == 1
    assert tags(results[0]) == ["MeetingResponse:RequestId", "MeetingResponse:Status", "MeetingResponse:CalendarId"]
    assert findtext(results[0], "MeetingResponse:RequestId") == request_id
    assert findtext(results[0], "MeetingResponse:Status") == "1"
    assert findtext(results[0], "MeetingResponse:CalendarId") == "7:%d" % number
    assert mail.parse_meeting_response(tree) == [mail.MeetingResult(request_id, 1, "7:%d" % number)]
    # the request left the Inbox for Deleted Items; the device sees it at its next Sync (the server's change)
    assert box.item_by_id(request_id) is None
    _, _, deleted = await sync_folder(c, "1", keys)
    assert deleted == [request_id]
    # the calendar item: busy, accepted, a received meeting -- sent to the device as a Change
    data = dict((t, v) for t, v in box.item(st.CALENDAR, number).data if type(v) is str)
    assert (data["Calendar:BusyStatus"], data["Calendar:ResponseType"], data["Calendar:MeetingStatus"]) \
        == ("2", "3", "3")
    _, changed, _ = await sync_folder(c, "7", keys)
    assert changed == ["7:%d" % number]
    # the organizer got IPM.Schedule.Meeting.Resp.Pos
    assert org_inbox.size() == before + 1
    response = store.mailbox(organizer).item(st.INBOX, org_inbox.next - 1)
    assert response.message_class == "IPM.Schedule.Meeting.Resp.Pos"
    assert response.subject.startswith("Accepted: ")
    assert store.counters["meeting_responses"] == 1
    # the same request again: gone from the Inbox -> 2 invalid meeting request
    tree = await post(c, "MeetingResponse", mail.meeting_response(mail.ACCEPT, "1", request_id))
    assert mail.parse_meeting_response(tree) == [mail.MeetingResult(request_id, 2, None)]
    assert store.counters["meeting_responses"] == 1


async def test_meeting_tentative_then_decline_and_free_busy_follows(make_target):
    tgt, session, url = await make_target(history_days=7, daily_messages=20)
    c = await user(session, url, 1)
    box = tgt.state.store.mailbox("user1")
    request_id, number = _meeting_request(box)
    tree = await post(c, "MeetingResponse", mail.meeting_response(mail.TENTATIVE, "1", request_id))
    assert mail.parse_meeting_response(tree) == [mail.MeetingResult(request_id, 1, "7:%d" % number)]
    data = dict((t, v) for t, v in box.item(st.CALENDAR, number).data if type(v) is str)
    assert (data["Calendar:BusyStatus"], data["Calendar:ResponseType"]) == ("1", "2")
    # the calendar item itself answered (declined): removed, no CalendarId
    tree = await post(c, "MeetingResponse", mail.meeting_response(mail.DECLINE, "7", "7:%d" % number))
    result = findall(tree, "MeetingResponse:Result")[0]
    assert tags(result) == ["MeetingResponse:RequestId", "MeetingResponse:Status"]
    assert findtext(result, "MeetingResponse:Status") == "1"
    assert box.item(st.CALENDAR, number) is None
    # accepting the (now filed) request again creates the calendar item anew
    moved = box.folder(st.DELETED).next - 1
    tree = await post(c, "MeetingResponse", mail.meeting_response(mail.ACCEPT, "3", "3:%d" % moved))
    (res,) = mail.parse_meeting_response(tree)
    assert res.status == 1 and res.calendar_id.startswith("7:") and res.calendar_id != "7:%d" % number
    assert box.item_by_id(res.calendar_id) is not None


async def test_meeting_response_statuses(make_target):
    tgt, session, url = await make_target(history_days=7, daily_messages=20)
    c = await user(session, url, 1)
    box = tgt.state.store.mailbox("user1")
    request_id, number = _meeting_request(box)
    plain = next("1:%d" % n for n in box.folder("1").numbers() if box.item("1", n).meeting is None)
    own = box.store.calendar_parts(box)[0] + 1  # the first single appointment: the user organizes it
    cases = [
        (mail.meeting_response(mail.ACCEPT, "1", plain), plain),  # not a meeting request
        (mail.meeting_response(mail.ACCEPT, "1", "1:99999"), "1:99999"),  # no such item
        (mail.meeting_response(mail.ACCEPT, "4", request_id), request_id),  # not in that folder
        (mail.meeting_response(mail.ACCEPT, "7", "7:%d" % own), "7:%d" % own),  # the user's own appointment
        (mail.meeting_response(mail.ACCEPT, "1", request_id, instance_id="2024-01-01T00:00:00.000Z"), request_id),
        (encode(("MeetingResponse:MeetingResponse", [("MeetingResponse:Request", [
            ("MeetingResponse:UserResponse", "7"), ("MeetingResponse:CollectionId", "1"),
            ("MeetingResponse:RequestId", request_id)])])), request_id),
    ]
    for body, rid in cases:
        tree = await post(c, "MeetingResponse", body)
        assert mail.parse_meeting_response(tree) == [mail.MeetingResult(rid, 2, None)], rid
    assert box.item_by_id(request_id) is not None  # nothing happened to the real request
    assert tgt.state.store.counters["meeting_responses"] == 0
    # several requests in one: each its Result, in order
    body = encode(("MeetingResponse:MeetingResponse", [
        ("MeetingResponse:Request", [("MeetingResponse:UserResponse", "1"), ("MeetingResponse:CollectionId", "1"),
                                     ("MeetingResponse:RequestId", "1:99999")]),
        ("MeetingResponse:Request", [("MeetingResponse:UserResponse", "2"), ("MeetingResponse:CollectionId", "1"),
                                     ("MeetingResponse:RequestId", request_id)])]))
    tree = await post(c, "MeetingResponse", body)
    assert [r.status for r in mail.parse_meeting_response(tree)] == [2, 1]
    # not a MeetingResponse request: 103 in the root (14.1 carries it in-band)
    for body in (encode(("Search:Search", [])), encode(("MeetingResponse:MeetingResponse", None))):
        tree = await post(c, "MeetingResponse", body)
        assert tree == ("MeetingResponse:MeetingResponse", [("MeetingResponse:Status", "103")])


# --------------------------------------------------------------------------- Search: GAL


async def test_gal_search_prefix_range_total_and_properties(make_target):
    tgt, session, url = await make_target(users=300)
    c = await user(session, url, 1)
    d = search.directory(tgt.state.store)
    people = [d.person(i) for i in range(300)]
    last = people[7].last
    expected = sorted({p.user for p in people if p.last.lower().startswith(last[:3].lower())
                       or p.display.lower().startswith(last[:3].lower())
                       or p.address.lower().startswith(last[:3].lower())})
    tree = await post(c, "Search", mail.search_gal(last[:3].upper(), "0-4"))
    assert tags(tree) == ["Search:Status", "Search:Response"] and findtext(tree, "Search:Status") == "1"
    store_node = find(tree, "Search:Response/Search:Store")
    got = findall(store_node, "Search:Result")
    assert tags(store_node) == ["Search:Status"] + ["Search:Result"] * len(got) + ["Search:Range", "Search:Total"]
    assert findtext(store_node, "Search:Status") == "1"
    assert len(got) == min(5, len(expected))
    assert findtext(store_node, "Search:Range") == "0-%d" % (len(got) - 1)
    assert findtext(store_node, "Search:Total") == str(len(expected))
    props = find(got[0], "Search:Properties")
    assert tags(props) == ["GAL:DisplayName", "GAL:Phone", "GAL:Office", "GAL:Title", "GAL:Company", "GAL:Alias",
                           "GAL:FirstName", "GAL:LastName", "GAL:MobilePhone", "GAL:EmailAddress"]
    found_users = [findtext(r, "Search:Properties/GAL:Alias") for r in got]
    assert set(found_users) <= set(expected) and len(set(found_users)) == len(found_users)
    # paging: the next window holds the following distinct entries
    tree = await post(c, "Search", mail.search_gal(last[:3], "5-9"))
    more = [findtext(r, "Search:Properties/GAL:Alias")
            for r in findall(tree, "Search:Response/Search:Store/Search:Result") if r[1]]
    assert not set(more) & set(found_users)
    # an address prefix finds its user; the parsed answer agrees
    tree = await post(c, "Search", mail.search_gal("user42@", "0-9"))
    r = mail.parse_search(tree)
    assert (r.status, r.store_status, r.total, r.results, r.range_) == (1, 1, 1, 1, "0-0")
    assert findtext(tree, "Search:Response/Search:Store/Search:Result/Search:Properties/GAL:EmailAddress") \
        == "user42@example.com"
    # no match: one empty Result, no Range, Total 0
    tree = await post(c, "Search", mail.search_gal("zzzz-nobody", "0-9"))
    store_node = find(tree, "Search:Response/Search:Store")
    assert store_node[1] == [("Search:Status", "1"), ("Search:Result", None), ("Search:Total", "0")]
    assert tgt.state.store.counters["searches"] == 4


async def test_gal_search_statuses(make_target):
    tgt, session, url = await make_target(users=20)
    c = await user(session, url, 1)

    async def store_status(body):
        tree = await post(c, "Search", body)
        return mail.parse_search(tree)

    assert (await store_status(mail.search_gal("a", "nonsense"))).store_status == 2  # malformed Range
    assert (await store_status(mail.search_gal("a", "9-3"))).store_status == 2
    assert (await store_status(mail.search_gal("a", "100-109"))).store_status == 12  # beyond what is retrievable
    assert (await store_status(mail.search_gal("   ", "0-9"))).store_status == 2  # no query
    r = await store_status(mail.search_gal("user", "0-500"))  # cut to 100 (20 users here)
    assert (r.store_status, r.results, r.total, r.range_) == (1, 20, 20, "0-19")
    unknown = encode(("Search:Search", [("Search:Store", [("Search:Name", "DocumentLibrary"),
                                                          ("Search:Query", "x")])]))
    assert (await store_status(unknown)).store_status == 2
    for body in (encode(("Search:Search", [])), encode(("Ping:Ping", [])), encode(("Search:Search", None))):
        tree = await post(c, "Search", body)
        assert tree == ("Search:Search", [("Search:Status", "103")])
    assert tgt.state.store.counters["searches"] == 1  # only the successful one


def test_gal_index_for_100000_users_answers_without_a_scan():
    state = TargetState(users=100_000, seed=5)
    d = search.directory(state.store)
    assert search.directory(state.store) is d  # built once per store
    assert len(d.keys) == 300_000 and list(d.keys) == sorted(d.keys)
    touched = []

    class Counting(list):
        def __getitem__(self, i):
            touched.append(i)
            return list.__getitem__(self, i)

    d.owner = Counting(d.owner)  # count the index positions a query reads
    found, total = d.matches("user4", 0, 10)
    assert len(found) == 10 and len(touched) <= 40  # 11,111 users match; the walk stops after the window
    assert total >= 11_111
    assert all(d.person(i).alias.startswith("user4") for i in found)
    touched.clear()
    found, total = d.matches("user99999@", 0, 10)
    assert [d.users[i] for i in found] == ["user99999"] and total == 1 and len(touched) == 1


# --------------------------------------------------------------------------- Search: Mailbox


async def test_mailbox_search_free_text_folder_range_and_long_id(make_target):
    tgt, session, url = await make_target(history_days=3, daily_messages=20)
    c = await user(session, url, 1)
    box = tgt.state.store.mailbox("user1")
    subject = box.item("1", 1).subject
    word = subject.split()[0]
    expected = {"1:%d" % n for n in box.folder("1").numbers()
                if word.lower() in ("%s\n%s\n%s" % (box.item("1", n).subject, box.item("1", n).sender,
                                                    box.item("1", n).text[:search.BODY_SCAN])).lower()}
    tree = await post(c, "Search", mail.search_mailbox(word, "1", "0-2", body_type=1, truncation=100))
    store_node = find(tree, "Search:Response/Search:Store")
    results = findall(store_node, "Search:Result")
    assert findtext(store_node, "Search:Status") == "1"
    assert findtext(store_node, "Search:Total") == str(len(expected))
    assert len(results) == min(3, len(expected))
    for r in results:
        assert tags(r) == ["AirSync:Class", "Search:LongId", "AirSync:CollectionId", "Search:Properties"]
        assert findtext(r, "AirSync:Class") == "Email" and findtext(r, "AirSync:CollectionId") == "1"
        assert findtext(r, "Search:LongId") in expected
        props = find(r, "Search:Properties")
        assert "Email:Subject" in tags(props) and findtext(props, "AirSyncBase:Body/AirSyncBase:Type") == "1"
        assert len(findtext(props, "AirSyncBase:Body/AirSyncBase:Data").encode()) <= 100
    dates = [findtext(r, "Search:Properties/Email:DateReceived") for r in results]
    assert dates == sorted(dates, reverse=True)  # newest first
    # the LongId is usable as a SmartReply source
    long_id = findtext(results[0], "Search:LongId")
    reply = mail.smart_reply("sr-1", b"From: user1@example.com\r\nTo: user2@example.com\r\nSubject: Re\r\n\r\nok\r\n",
                             None, None, long_id=long_id)
    status, _, answer = await c.post("SmartReply", reply, key=c.key)
    assert status == 200 and answer is None
    # all mail folders (no CollectionId), a word nowhere, an unknown folder, no FreeText
    r = mail.parse_search(await post(c, "Search", mail.search_mailbox(word)))
    assert r.store_status == 1 and r.total >= len(expected)
    r = mail.parse_search(await post(c, "Search", mail.search_mailbox("qqqxyzzy")))
    assert (r.store_status, r.total, r.results) == (1, 0, 0)
    r = mail.parse_search(await post(c, "Search", mail.search_mailbox(word, "999")))
    assert r.store_status == 11
    no_text = encode(("Search:Search", [("Search:Store", [("Search:Name", "Mailbox"), ("Search:Query", [
        ("Search:And", [("AirSync:Class", "Email")])]), ("Search:Options", [("Search:Range", "0-9")])])]))
    assert mail.parse_search(await post(c, "Search", no_text)).store_status == 2


async def test_mailbox_search_finds_a_delivered_message(make_target):
    tgt, session, url = await make_target(history_days=1, daily_messages=5)
    a = await user(session, url, 1)
    b = await user(session, url, 2)
    body = b"From: user1@example.com\r\nTo: user2@example.com\r\nSubject: Walrus report\r\n\r\nbody\r\n"
    status, _, _ = await a.post("SendMail", mail.send_mail("w1", body), key=a.key)
    assert status == 200
    tree = await post(b, "Search", mail.search_mailbox("walrus", "1"))
    results = findall(tree, "Search:Response/Search:Store/Search:Result")
    assert [findtext(r, "Search:Properties/Email:Subject") for r in results] == ["Walrus report"]


# --------------------------------------------------------------------------- ResolveRecipients


def _iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(epoch))


async def test_resolve_recipients_users_contacts_ambiguous_and_unknown(make_target):
    tgt, session, url = await make_target(users=200)
    c = await user(session, url, 1)
    store = tgt.state.store
    d = search.directory(store)
    p5 = d.person(5)
    same = [i for i in range(200) if d.person(i).display == p5.display]
    first = d.person(5).first
    with_first = [i for i in range(200) if d.person(i).display.lower().startswith(first.lower())]
    assert len(with_first) > 1
    contact = store.mailbox("user1").item(st.CONTACTS, 1)
    tos = ["user5@example.com", "<USER7@example.com>", contact.email, "nobody@elsewhere.example", first,
           "Zzzz Nobody"]
    tree = await post(c, "ResolveRecipients", mail.resolve_recipients(tos, max_ambiguous=1))
    assert tree[0] == "ResolveRecipients:ResolveRecipients"
    assert tags(tree) == ["ResolveRecipients:Status"] + ["ResolveRecipients:Response"] * len(tos)
    assert findtext(tree, "ResolveRecipients:Status") == "1"
    responses = findall(tree, "ResolveRecipients:Response")
    by_to = {findtext(r, "ResolveRecipients:To"): r for r in responses}
    r = by_to["user5@example.com"]
    assert tags(r) == ["ResolveRecipients:To", "ResolveRecipients:Status", "ResolveRecipients:RecipientCount",
                       "ResolveRecipients:Recipient"]
    rec = find(r, "ResolveRecipients:Recipient")
    assert rec[1] == [("ResolveRecipients:Type", "1"), ("ResolveRecipients:DisplayName", p5.display),
                      ("ResolveRecipients:EmailAddress", "user5@example.com")]
    assert findtext(by_to["<USER7@example.com>"], "ResolveRecipients:Recipient/ResolveRecipients:EmailAddress") \
        == "user7@example.com"
    r = by_to[contact.email]
    assert findtext(r, "ResolveRecipients:Status") == "1"
    assert findtext(r, "ResolveRecipients:Recipient/ResolveRecipients:Type") == "2"
    r = by_to["nobody@elsewhere.example"]
    assert r[1] == [("ResolveRecipients:To", "nobody@elsewhere.example"), ("ResolveRecipients:Status", "4"),
                    ("ResolveRecipients:RecipientCount", "0")]
    r = by_to[first]
    count = int(findtext(r, "ResolveRecipients:RecipientCount"))
    assert count >= len(with_first)
    assert len(findall(r, "ResolveRecipients:Recipient")) == 1 and findtext(r, "ResolveRecipients:Status") == "3"
    assert findtext(by_to["Zzzz Nobody"], "ResolveRecipients:Status") == "4"
    # the full display name of a unique person resolves to it; a shared one is ambiguous with every suggestion
    tree = await post(c, "ResolveRecipients", mail.resolve_recipients([p5.display], max_ambiguous=50))
    parsed = mail.parse_resolve_recipients(tree)
    expected = 1 if len(same) == 1 else 2
    assert parsed.status == 1 and parsed.per_to[0][1] == expected and parsed.per_to[0][2] >= len(same)


async def test_resolve_recipients_availability_from_the_calendar(make_target):
    tgt, session, url = await make_target(users=20, history_days=7, daily_messages=20)
    c = await user(session, url, 1)
    store = tgt.state.store
    box = store.mailbox("user3")
    event = next(st.GenEvent(box, n) for n in range(1, 200) if st.GenEvent(box, n).kind == "single")
    start = event.start - 3600
    end = event.start + 3 * 3600
    tree = await post(c, "ResolveRecipients", mail.resolve_recipients(["user3@example.com", "nobody@x.example"],
                                                                     availability=(start, end)))
    rec = find(findall(tree, "ResolveRecipients:Response")[0], "ResolveRecipients:Recipient")
    assert tags(rec) == ["ResolveRecipients:Type", "ResolveRecipients:DisplayName", "ResolveRecipients:EmailAddress",
                         "ResolveRecipients:Availability"]
    availability = find(rec, "ResolveRecipients:Availability")
    assert tags(availability) == ["ResolveRecipients:Status", "ResolveRecipients:MergedFreeBusy"]
    assert findtext(availability, "ResolveRecipients:Status") == "1"
    digits = findtext(availability, "ResolveRecipients:MergedFreeBusy")
    assert len(digits) == 8 and set(digits) <= set("0123")
    assert digits[2] == "2"  # the event's first half hour: busy
    assert digits == resolve.merged_free_busy(box, start, end)
    # not resolved: no Recipient, so no Availability
    assert findall(findall(tree, "ResolveRecipients:Response")[1], "ResolveRecipients:Recipient") == []
    # too short a span, a span beyond 42 days, a 12.x device: protocol error 5
    for availability_span, version in (((start, start + 600), "14.1"), ((start, start + 50 * 86400), "14.1"),
                                       ((start, end), "12.1")):
        dev = await user(session, url, 1, device="DEVX%s" % version.replace(".", ""), version=version)
        tree = await post(dev, "ResolveRecipients", mail.resolve_recipients(["user3@example.com"],
                                                                           availability=availability_span))
        assert tree == ("ResolveRecipients:ResolveRecipients", [("ResolveRecipients:Status", "5")])


async def test_resolve_recipients_malformed(make_target):
    tgt, session, url = await make_target(users=10)
    c = await user(session, url, 1)
    for body in (encode(("ResolveRecipients:ResolveRecipients", [])), encode(("Search:Search", [])),
                 encode(("ResolveRecipients:ResolveRecipients", [("ResolveRecipients:To", "a"), (
                     "ResolveRecipients:Options", [("ResolveRecipients:MaxAmbiguousRecipients", "x")])])),
                 encode(("ResolveRecipients:ResolveRecipients",
                         [("ResolveRecipients:To", "u%d" % i) for i in range(1001)]))):
        tree = await post(c, "ResolveRecipients", body)
        assert tree == ("ResolveRecipients:ResolveRecipients", [("ResolveRecipients:Status", "5")])


def test_free_busy_digits_of_a_recurring_series_and_a_tentative_meeting():
    state = TargetState(users=5, seed=1, history_days=7, daily_messages=20)
    box = state.store.mailbox("user1")
    start = box.store.anchor
    item = st.ClientItem("Calendar", [("Calendar:StartTime", st.eas_compact(start + 1800)),
                                      ("Calendar:EndTime", st.eas_compact(start + 3600)),
                                      ("Calendar:BusyStatus", "1"),
                                      ("Calendar:Recurrence", [("Calendar:Type", "0"), ("Calendar:Interval", "1"),
                                                               ("Calendar:Occurrences", "3")])], start)
    # an empty calendar but this item
    for n in list(box.folder(st.CALENDAR).numbers()):
        box.remove(st.CALENDAR, n)
    box.add(st.CALENDAR, item)
    digits = resolve.merged_free_busy(box, start, start + 3 * 86400)
    assert len(digits) == 144
    assert [i for i, ch in enumerate(digits) if ch != "0"] == [1, 49, 97]
    assert {digits[1], digits[49], digits[97]} == {"1"}


# --------------------------------------------------------------------------- GetItemEstimate


async def test_get_item_estimate_counts_what_a_sync_would_return(make_target):
    tgt, session, url = await make_target(history_days=2, daily_messages=10)
    c = await user(session, url, 1)
    other = await user(session, url, 1, device="DEV2")
    box = tgt.state.store.mailbox("user1")
    col = (await _sync(c, mail.SyncCollection("1", "0")))["1"]
    key = col.sync_key

    async def estimate(collections, version=141, dev=c):
        tree = await post(dev, "GetItemEstimate", mail.get_item_estimate(collections, version))
        return tree

    tree = await estimate([(key, "1", None)])
    assert tags(tree) == ["GetItemEstimate:Response"]
    response = find(tree, "GetItemEstimate:Response")
    assert tags(response) == ["GetItemEstimate:Status", "GetItemEstimate:Collection"]
    assert find(response, "GetItemEstimate:Collection")[1] == [
        ("GetItemEstimate:CollectionId", "1"), ("GetItemEstimate:Estimate", str(box.folder("1").size()))]
    # after paging through: 0; a delivered message and a change from another device: 2
    keys = {"1": key}
    await sync_folder(c, "1", keys, window=100)
    assert mail.parse_get_item_estimate(await estimate([(keys["1"], "1", None)])).collections == [("1", 1, 0)]
    tgt.state.deliver_mail("user1", 1)
    other_keys = {}
    await sync_folder(other, "1", other_keys)
    status, _, _ = await other.post("Sync", mail.sync_request([mail.SyncCollection(
        "1", other_keys["1"], commands=[mail.Change("1:1", mail.email_read(False))])]), key=other.key)
    assert status == 200
    assert mail.parse_get_item_estimate(await estimate([(keys["1"], "1", None)])).collections == [("1", 1, 2)]
    # the estimate did not advance the key: the Sync returns those two
    added, changed, _ = await sync_folder(c, "1", keys)
    assert len(added) == 1 and changed == ["1:1"]
    # statuses: not primed (never synced / key 0), wrong key, unknown collection -- in the request's order
    r = mail.parse_get_item_estimate(await estimate([("0", "1", None), ("1", "4", None), ("999", "1", None),
                                                     (keys["1"], "42", None)]))
    assert r.collections == [("1", 3, None), ("4", 3, None), ("1", 4, None), ("42", 2, None)]


async def test_get_item_estimate_12x_form_and_filter_type(make_target):
    tgt, session, url = await make_target(history_days=14, daily_messages=10)
    c = await user(session, url, 1, version="12.1")
    box = tgt.state.store.mailbox("user1")
    col = (await _sync(c, mail.SyncCollection("1", "0")))["1"]
    body = mail.get_item_estimate([(col.sync_key, "1", 3)], 121)  # FilterType 3: one week
    assert find(decode(body), "GetItemEstimate:Collections/GetItemEstimate:Collection/GetItemEstimate:Class") \
        is not None
    r = mail.parse_get_item_estimate(await post(c, "GetItemEstimate", body))
    cutoff = tgt.state.store.clock() - 7 * 86400
    week = sum(1 for n in box.folder("1").numbers() if box.item("1", n).date >= cutoff)
    assert r.collections == [("1", 1, week)] and 0 < week < box.folder("1").size()
    # malformed: 103 (12.x has no in-band status: HTTP 400)
    status, _, _ = await c.post("GetItemEstimate", encode(("GetItemEstimate:GetItemEstimate", [])), key=c.key)
    assert status == 400


async def _sync(c, *collections):
    status, _, tree = await c.post("Sync", mail.sync_request(list(collections)), key=c.key)
    assert status == 200
    return {col.collection_id: col for col in mail.parse_sync_all(tree).collections}


# --------------------------------------------------------------------------- Settings Oof


async def test_oof_set_get_per_user_and_user_information_alongside(make_target):
    tgt, session, url = await make_target(users=10)
    c = await user(session, url, 1)
    b = await user(session, url, 2)
    tree = await post(c, "Settings", mail.settings_oof_get())
    assert tags(tree) == ["Settings:Status", "Settings:Oof"]
    oof = find(tree, "Settings:Oof")
    assert tags(oof) == ["Settings:Status", "Settings:Get"]
    get = find(oof, "Settings:Get")
    assert tags(get) == ["Settings:OofState"] + ["Settings:OofMessage"] * 3
    assert findtext(get, "Settings:OofState") == "0"
    assert [m[1][0][0] for m in findall(get, "Settings:OofMessage")] == [
        "Settings:AppliesToInternal", "Settings:AppliesToExternalKnown", "Settings:AppliesToExternalUnknown"]
    tree = await post(c, "Settings", mail.settings_oof_set(True, "Away until Monday"))
    assert tree == ("Settings:Settings", [("Settings:Status", "1"), ("Settings:Oof", [("Settings:Status", "1")])])
    tree = await post(c, "Settings", mail.settings_oof_get())
    assert mail.parse_settings(tree) == mail.SettingsResult(1, 1, 1, None)
    message = findall(tree, "Settings:Oof/Settings:Get/Settings:OofMessage")[0]
    assert message[1] == [("Settings:AppliesToInternal", None), ("Settings:Enabled", "1"),
                          ("Settings:ReplyMessage", "Away until Monday"), ("Settings:BodyType", "Text")]
    # another user is untouched
    assert mail.parse_settings(await post(b, "Settings", mail.settings_oof_get())).oof_state == 0
    # time-based: StartTime and EndTime come back
    body = encode(("Settings:Settings", [("Settings:Oof", [("Settings:Set", [
        ("Settings:OofState", "2"), ("Settings:StartTime", "2030-01-01T00:00:00.000Z"),
        ("Settings:EndTime", "2030-01-08T00:00:00.000Z")])])]))
    assert mail.parse_settings(await post(c, "Settings", body)).oof_status == 1
    get = find(await post(c, "Settings", mail.settings_oof_get()), "Settings:Oof/Settings:Get")
    assert tags(get)[:3] == ["Settings:OofState", "Settings:StartTime", "Settings:EndTime"]
    assert findtext(get, "Settings:OofState") == "2"
    assert findtext(get, "Settings:StartTime") == "2030-01-01T00:00:00.000Z"
    # Oof and UserInformation in one request: both answered, in the schema's order
    body = encode(("Settings:Settings", [("Settings:Oof", [("Settings:Get", [("Settings:BodyType", "HTML")])]),
                                         ("Settings:UserInformation", [("Settings:Get", None)])]))
    tree = await post(c, "Settings", body)
    assert tags(tree) == ["Settings:Status", "Settings:Oof", "Settings:UserInformation"]
    assert findtext(tree, "Settings:UserInformation/Settings:Get/Settings:Accounts/Settings:Account/"
                          "Settings:EmailAddresses/Settings:PrimarySmtpAddress") == "user1@example.com"
    # off again
    mail.parse_settings(await post(c, "Settings", mail.settings_oof_set(False)))
    assert mail.parse_settings(await post(c, "Settings", mail.settings_oof_get())).oof_state == 0


async def test_oof_and_settings_statuses(make_target):
    tgt, session, url = await make_target(users=10)
    c = await user(session, url, 1)

    def oof_set(*children_):
        return encode(("Settings:Settings", [("Settings:Oof", [("Settings:Set", list(children_))])]))

    cases = [
        (oof_set(("Settings:OofState", "9")), 2),
        (oof_set(("Settings:OofState", "x")), 2),
        (oof_set(), 2),
        (oof_set(("Settings:OofState", "2")), 5),  # time-based without times
        (oof_set(("Settings:OofState", "2"), ("Settings:StartTime", "2030-01-08T00:00:00.000Z"),
                 ("Settings:EndTime", "2030-01-01T00:00:00.000Z")), 5),
        (oof_set(("Settings:OofState", "1"), ("Settings:OofMessage", [("Settings:Enabled", "1")])), 2),
        (encode(("Settings:Settings", [("Settings:Oof", None)])), 2),
        (encode(("Settings:Settings", [("Settings:Oof", [("Settings:Status", "1")])])), 2),
    ]
    for body, expected in cases:
        r = mail.parse_settings(await post(c, "Settings", body))
        assert (r.status, r.oof_status) == (1, expected), body
    assert mail.parse_settings(await post(c, "Settings", mail.settings_oof_get())).oof_state == 0
    tree = await post(c, "Settings", encode(("Search:Search", [])))
    assert tree == ("Settings:Settings", [("Settings:Status", "2")])
    # a request with no part: answered as before (DeviceInformation)
    tree = await post(c, "Settings", encode(("Settings:Settings", [])))
    assert tree == ("Settings:Settings", [("Settings:Status", "1"), ("Settings:DeviceInformation", [
        ("Settings:Status", "1")])])


# --------------------------------------------------------------------------- hostile bodies


async def test_arbitrary_trees_never_500(make_target):
    """Every command of this module with bodies of the wrong shape: an answer, never a 500."""
    tgt, session, url = await make_target(users=10)
    c = await user(session, url, 1)
    shapes = [
        None, [], "text", [("Search:Store", "x")], [("Search:Store", [("Search:Name", "GAL"), ("Search:Query", [])])],
        [("Search:Store", [("Search:Name", "Mailbox"), ("Search:Query", "text")])],
        [("MeetingResponse:Request", "x")], [("MeetingResponse:Request", [("MeetingResponse:UserResponse", None)])],
        [("ResolveRecipients:To", [("ResolveRecipients:To", "x")])],
        [("ResolveRecipients:To", "a"), ("ResolveRecipients:Options", "x")],
        [("GetItemEstimate:Collections", "x")], [("GetItemEstimate:Collections", [("GetItemEstimate:Collection", [])])],
        [("GetItemEstimate:Collections", [("GetItemEstimate:Collection", [("GetItemEstimate:CollectionId", [])])])],
        [("Settings:Oof", [("Settings:Get", None)])], [("Settings:Oof", [("Settings:Set", None)])],
        [("Settings:DeviceInformation", [("Settings:Set", None)])],
    ]
    roots = {"Search": "Search:Search", "MeetingResponse": "MeetingResponse:MeetingResponse",
             "ResolveRecipients": "ResolveRecipients:ResolveRecipients",
             "GetItemEstimate": "GetItemEstimate:GetItemEstimate", "Settings": "Settings:Settings"}
    for command, root in roots.items():
        for shape in shapes:
            status, _, tree = await c.post(command, encode((root, shape)), key=c.key)
            assert status == 200, (command, shape, status)
            assert tree is not None and tree[0] == root
    counters = {k: v for k, v in tgt.counters.items() if k[1] == 500}
    assert counters == {}


# --------------------------------------------------------------------------- arbitrary trees, without HTTP
_TAGS = ["Search:Search", "Search:Store", "Search:Name", "Search:Query", "Search:Options", "Search:Range",
         "Search:And", "Search:FreeText", "Search:DeepTraversal", "Search:LongId", "AirSync:CollectionId",
         "AirSync:Class", "AirSync:SyncKey", "AirSync:FilterType", "AirSync:Options", "AirSyncBase:BodyPreference",
         "AirSyncBase:Type", "AirSyncBase:TruncationSize", "MeetingResponse:MeetingResponse",
         "MeetingResponse:Request", "MeetingResponse:UserResponse", "MeetingResponse:CollectionId",
         "MeetingResponse:RequestId", "MeetingResponse:InstanceId", "ResolveRecipients:ResolveRecipients",
         "ResolveRecipients:To", "ResolveRecipients:Options", "ResolveRecipients:Availability",
         "ResolveRecipients:StartTime", "ResolveRecipients:EndTime", "ResolveRecipients:MaxAmbiguousRecipients",
         "GetItemEstimate:GetItemEstimate", "GetItemEstimate:Collections", "GetItemEstimate:Collection",
         "GetItemEstimate:CollectionId", "Settings:Settings", "Settings:Oof", "Settings:Get", "Settings:Set",
         "Settings:OofState", "Settings:OofMessage", "Settings:Enabled", "Settings:ReplyMessage", "Settings:BodyType",
         "Settings:AppliesToInternal", "Settings:StartTime", "Settings:EndTime", "Settings:UserInformation",
         "Settings:DeviceInformation"]
_VALUES = hs.sampled_from(["", "0", "1", "2", "3", "7", "1:5", "7:1", "0-9", "5-2", "user1", "user1@example.com",
                           "2030-01-01T00:00:00.000Z", "Email", "GAL", "Mailbox", "x" * 300, "-1", "99999999999"])
_TREES = hs.recursive(hs.tuples(hs.sampled_from(_TAGS), hs.none() | _VALUES),
                      lambda inner: hs.tuples(hs.sampled_from(_TAGS), hs.lists(inner, max_size=5)), max_leaves=25)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(tree=_TREES, version=hs.sampled_from(["12.1", "14.0", "16.1"]))
def test_every_responder_answers_any_tree(tree, version):
    """Each command's responder returns an answer (or None for "not this command") for any tree."""
    class FakeTarget:
        folder_ids = frozenset(f[0] for f in st.FOLDERS)

    target = FakeTarget()
    target.state = _STATE
    record = _STATE.device("user1", "FUZZ", "SmartPhone")
    v = VERSIONS[version]
    search.respond(_STATE, record, tree)
    meeting.respond(target, record, v, tree)
    resolve.respond(_STATE, record, v, tree)
    estimate.respond(target, record, tree)
    oof.respond(_STATE, record, v, tree)


_STATE = TargetState(users=20, seed=9, history_days=2, daily_messages=10)
