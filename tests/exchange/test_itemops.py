"""ItemOperations (MS-ASCMD 2.2.1.10): the device's builders and parser (sans-I/O), the
attachments the embedded target announces in Sync (MS-ASAIRS 2.2.2.7), and its Fetch
answers over real HTTP, with what it records per device."""

import base64

import pytest

import _wbxml
from _wbxml import encode, find, findall, findtext
from loadgen.eas import commands
from loadgen.exchange.store import Store, attachment_content
from test_target_features import adds, body_pref, collection, make_target, provisioned, sync_request  # noqa: F401

# --------------------------------------------------------------------------- builders and parsers


def inbox(box):
    """The Inbox items of a mailbox of the store (store.py), in order."""
    return [box.item("1", n) for n in box.folder("1").numbers()]


def test_fetch_attachment_request_has_store_and_one_file_reference():
    tree = _wbxml.decode(commands.itemoperations_fetch_attachment("1:7:0"))
    assert tree == ("ItemOperations:ItemOperations", [("ItemOperations:Fetch", [
        ("ItemOperations:Store", "Mailbox"), ("AirSyncBase:FileReference", "1:7:0")])])


def test_fetch_body_request_carries_the_body_preference_and_no_truncation_by_default():
    tree = _wbxml.decode(commands.itemoperations_fetch_body("1", "1:3", 1))
    fetch = find(tree, "ItemOperations:Fetch")
    assert [t for t, _ in fetch[1]] == ["ItemOperations:Store", "AirSync:CollectionId", "AirSync:ServerId",
                                        "ItemOperations:Options"]
    pref = find(fetch, "ItemOperations:Options/AirSyncBase:BodyPreference")
    assert findtext(pref, "AirSyncBase:Type") == "1" and find(pref, "AirSyncBase:TruncationSize") is None
    tree = _wbxml.decode(commands.itemoperations_fetch_body("1", "1:3", 2, 0))
    assert findtext(tree, "ItemOperations:Fetch/ItemOperations:Options/AirSyncBase:BodyPreference/"
                          "AirSyncBase:TruncationSize") == "0"


def test_sync_template_filter_type_and_zero_truncation():
    tree = _wbxml.decode(commands.sync_template(1, 0, 25, 3).render("4", "1"))
    options = find(tree, "AirSync:Collections/AirSync:Collection/AirSync:Options")
    assert [t for t, _ in options[1]] == ["AirSync:FilterType", "AirSyncBase:BodyPreference"]  # MS-ASCMD order
    assert findtext(options, "AirSync:FilterType") == "3"
    assert findtext(options, "AirSyncBase:BodyPreference/AirSyncBase:TruncationSize") == "0"  # 0 KB: headers only
    tree = _wbxml.decode(commands.sync_template(2, None, 25).render("4", "1"))
    options = find(tree, "AirSync:Collections/AirSync:Collection/AirSync:Options")
    assert find(options, "AirSync:FilterType") is None
    assert find(options, "AirSyncBase:BodyPreference/AirSyncBase:TruncationSize") is None


def test_parse_itemoperations_sizes_of_attachments_and_bodies():
    data = bytes(range(200))
    tree = ("ItemOperations:ItemOperations", [("ItemOperations:Status", "1"), ("ItemOperations:Response", [
        ("ItemOperations:Fetch", [("ItemOperations:Status", "1"), ("AirSyncBase:FileReference", "1:2:0"),
                                  ("ItemOperations:Properties", [("AirSyncBase:ContentType", "image/jpeg"),
                                                                 ("ItemOperations:Data", base64.b64encode(data).decode())])]),
        ("ItemOperations:Fetch", [("ItemOperations:Status", "1"), ("AirSyncBase:FileReference", "1:2:1"),
                                  ("ItemOperations:Properties", [("ItemOperations:Data", b"\x00\x01\x02")])]),
        ("ItemOperations:Fetch", [("ItemOperations:Status", "15"), ("AirSyncBase:FileReference", "nope")]),
        ("ItemOperations:Fetch", [("ItemOperations:Status", "1"), ("AirSync:CollectionId", "1"),
                                  ("AirSync:ServerId", "1:2"), ("ItemOperations:Properties", [
                                      ("AirSyncBase:Body", [("AirSyncBase:Type", "1"), ("AirSyncBase:Data", "héllo")])])]),
    ])])
    resp = commands.parse_itemoperations(_wbxml.decode(encode(tree)))
    assert resp.status == 1
    assert [(f.status, f.file_reference, f.server_id, f.size) for f in resp.fetches] == [
        (1, "1:2:0", None, 200), (1, "1:2:1", None, 3), (15, "nope", None, 0), (1, None, "1:2", 6)]
    with pytest.raises(ValueError):
        commands.parse_itemoperations(("AirSync:Sync", []))
    assert commands.parse_itemoperations(("ItemOperations:ItemOperations", [("ItemOperations:Status", "2")])).status == 2


def test_parse_sync_details_collects_attachments_and_truncated_bodies():
    def add(sid, attachments=(), truncated=False):
        data = [("Email:Subject", "s")]
        if attachments:
            data.append(("AirSyncBase:Attachments", [("AirSyncBase:Attachment", [
                ("AirSyncBase:DisplayName", "a"), ("AirSyncBase:FileReference", ref), ("AirSyncBase:Method", "1"),
                ("AirSyncBase:EstimatedDataSize", str(size))]) for ref, size in attachments]))
        body = [("AirSyncBase:Type", "1"), ("AirSyncBase:EstimatedDataSize", "500")]
        if truncated:
            body.append(("AirSyncBase:Truncated", "1"))
        data.append(("AirSyncBase:Body", body + [("AirSyncBase:Data", "x")]))
        return ("AirSync:Add", [("AirSync:ServerId", sid), ("AirSync:ApplicationData", data)])

    tree = ("AirSync:Sync", [("AirSync:Collections", [("AirSync:Collection", [
        ("AirSync:SyncKey", "3"), ("AirSync:CollectionId", "1"), ("AirSync:Status", "1"),
        ("AirSync:Commands", [add("1:1"), add("1:2", [("1:2:0", 1000), ("1:2:1", 70000)], truncated=True),
                              add("1:3", truncated=True)])])])])
    resp = commands.parse_sync(_wbxml.decode(encode(tree)), details=True)
    assert resp.added == 3 and resp.truncated == ["1:2", "1:3"]
    assert [(a.server_id, a.file_reference, a.estimated_size) for a in resp.attachments] == [
        ("1:2", "1:2:0", 1000), ("1:2", "1:2:1", 70000)]
    plain = commands.parse_sync(_wbxml.decode(encode(tree)))
    assert plain.added == 3 and plain.attachments is None  # the hot path collects nothing


def test_generated_attachments_are_deterministic_and_addressable():
    a, b = (Store(3, inbox_items=40, history_days=0, anchor=0).mailbox("u1") for _ in range(2))
    refs = [att for m in inbox(a) for att in m.attachments]
    assert refs == [att for m in inbox(b) for att in m.attachments] and len(refs) >= 5
    for ref, _name, size in refs:
        _, found_size, content = a.attachment(ref)
        assert found_size == size and len(content()) == size == len(attachment_content(size))
    assert a.attachment("1:999:0") is None and a.attachment("junk") is None and a.attachment("") is None
    assert a.item_by_id("1:1")[2].n == 1 and a.item_by_id("2:1") is None and a.item_by_id("1:0") is None


# --------------------------------------------------------------------------- the embedded target, real HTTP


def _itemops(*fetches):
    return encode(("ItemOperations:ItemOperations", list(fetches)))


def _fetch_ref(*refs, options=None):
    kids = [("ItemOperations:Store", "Mailbox")] + [("AirSyncBase:FileReference", r) for r in refs]
    if options:
        kids.append(("ItemOperations:Options", options))
    return ("ItemOperations:Fetch", kids)


async def _synced(session, url, tgt, device="DEV1", options=body_pref(1, 100)):
    c = await provisioned(session, url, device=device)
    await c.post("Sync", sync_request(("1", "0")), key=c.key)
    _, _, tree = await c.post("Sync", sync_request(("1", "1", ("AirSync:WindowSize", "100"), options)), key=c.key)
    return c, adds(collection(tree))


async def test_sync_announces_attachments_with_file_reference_and_size(make_target):
    tgt, session, url = await make_target(inbox_items=30)
    _c, items = await _synced(session, url, tgt)
    box = tgt.state.mailbox("user1")
    announced = []
    for item in items:
        data = find(item, "AirSync:ApplicationData")
        order = [t for t, _ in data[1]]
        atts = findall(data, "AirSyncBase:Attachments/AirSyncBase:Attachment")
        msg = box.item_by_id(findtext(item, "AirSync:ServerId"))[2]
        assert len(atts) == len(msg.attachments)
        if atts:
            assert order.index("AirSyncBase:Attachments") == order.index("AirSyncBase:Body") - 1
        for att in atts:
            assert [t for t, _ in att[1]] == ["AirSyncBase:DisplayName", "AirSyncBase:FileReference",
                                              "AirSyncBase:Method", "AirSyncBase:EstimatedDataSize"]
            announced.append((findtext(att, "AirSyncBase:FileReference"),
                              int(findtext(att, "AirSyncBase:EstimatedDataSize"))))
    assert announced == [(ref, size) for m in inbox(box) for ref, _n, size in m.attachments] and announced
    seen = tgt.state.devices[("user1", "DEV1")].observed
    assert seen[("sync", "1")] == {("1", "100", None)} and seen[("last_sync", "1")] == ("1", "100", None)


async def test_fetch_attachment_whole_and_by_range(make_target):
    tgt, session, url = await make_target(inbox_items=30)
    c, _items = await _synced(session, url, tgt)
    box = tgt.state.mailbox("user1")
    ref, _name, size = next(att for m in inbox(box) for att in m.attachments)
    status, _, tree = await c.post("ItemOperations", _itemops(_fetch_ref(ref)), key=c.key)
    assert status == 200 and findtext(tree, "ItemOperations:Status") == "1"
    fetch = find(tree, "ItemOperations:Response/ItemOperations:Fetch")
    assert findtext(fetch, "ItemOperations:Status") == "1" and findtext(fetch, "AirSyncBase:FileReference") == ref
    data = base64.b64decode(findtext(fetch, "ItemOperations:Properties/ItemOperations:Data"))
    assert data == attachment_content(size) and len(data) == size
    assert findtext(fetch, "ItemOperations:Properties/AirSyncBase:ContentType")
    parsed = commands.parse_itemoperations(tree)
    assert parsed.fetches[0].size == size
    # a byte range (MS-ASCMD 2.2.3.143.2): that part and the total
    _, _, tree = await c.post("ItemOperations", _itemops(_fetch_ref(ref, options=[("ItemOperations:Range", "10-19")])),
                              key=c.key)
    props = find(tree, "ItemOperations:Response/ItemOperations:Fetch/ItemOperations:Properties")
    assert findtext(props, "ItemOperations:Range") == "10-19" and findtext(props, "ItemOperations:Total") == str(size)
    assert base64.b64decode(findtext(props, "ItemOperations:Data")) == attachment_content(size)[10:20]
    _, _, tree = await c.post("ItemOperations", _itemops(_fetch_ref(ref, options=[
        ("ItemOperations:Range", "%d-%d" % (size, size + 5))])), key=c.key)
    assert findtext(tree, "ItemOperations:Response/ItemOperations:Fetch/ItemOperations:Status") == "8"
    seen = tgt.state.devices[("user1", "DEV1")].observed
    assert seen["fetch"] == [ref, ref, ref] and seen["fetch_count"] == 3


async def test_fetch_errors_per_operation(make_target):
    tgt, session, url = await make_target(inbox_items=30)
    c, _ = await _synced(session, url, tgt)
    ref = next(att[0] for m in inbox(tgt.state.mailbox("user1")) for att in m.attachments)
    body = _itemops(_fetch_ref("1:999:0"), _fetch_ref(""), _fetch_ref(ref, ref),
                    ("ItemOperations:Fetch", [("ItemOperations:Store", "\\\\server\\share\\f.doc")]),
                    ("ItemOperations:EmptyFolderContents", [("AirSync:CollectionId", "1")]))
    _, _, tree = await c.post("ItemOperations", body, key=c.key)
    assert findtext(tree, "ItemOperations:Status") == "1"
    statuses = [findtext(n, "ItemOperations:Status") for n in find(tree, "ItemOperations:Response")[1]]
    assert statuses == ["15", "15", "2", "2", "2"]  # MS-ASCMD 2.2.3.177.8; one FileReference per Fetch (2.2.3.8)
    _, _, tree = await c.post("ItemOperations", encode(("AirSync:Sync", [])), key=c.key)
    assert tree == ("ItemOperations:ItemOperations", [("ItemOperations:Status", "2")])
    assert tgt.state.devices[("user1", "DEV1")].observed.get("fetch") is None  # nothing was served


async def test_fetch_body_follows_the_body_preference(make_target):
    tgt, session, url = await make_target(inbox_items=3)
    c, _ = await _synced(session, url, tgt)
    msg = inbox(tgt.state.mailbox("user1"))[1]

    def fetch_body(sid, pref):
        return _itemops(("ItemOperations:Fetch", [
            ("ItemOperations:Store", "Mailbox"), ("AirSync:CollectionId", "1"), ("AirSync:ServerId", sid),
            ("ItemOperations:Options", [("AirSyncBase:BodyPreference", pref)])]))

    _, _, tree = await c.post("ItemOperations", fetch_body("1:2", [("AirSyncBase:Type", "2")]), key=c.key)
    fetch = find(tree, "ItemOperations:Response/ItemOperations:Fetch")
    assert findtext(fetch, "ItemOperations:Status") == "1" and findtext(fetch, "AirSync:Class") == "Email"
    body = find(fetch, "ItemOperations:Properties/AirSyncBase:Body")
    assert findtext(body, "AirSyncBase:Type") == "2" and msg.text in findtext(body, "AirSyncBase:Data")
    assert find(body, "AirSyncBase:Truncated") is None
    _, _, tree = await c.post("ItemOperations", fetch_body(
        "1:2", [("AirSyncBase:Type", "1"), ("AirSyncBase:TruncationSize", "5")]), key=c.key)
    body = find(tree, "ItemOperations:Response/ItemOperations:Fetch/ItemOperations:Properties/AirSyncBase:Body")
    assert findtext(body, "AirSyncBase:Data") == msg.text[:5] and findtext(body, "AirSyncBase:Truncated") == "1"
    _, _, tree = await c.post("ItemOperations", fetch_body("1:99", [("AirSyncBase:Type", "1")]), key=c.key)
    assert findtext(tree, "ItemOperations:Response/ItemOperations:Fetch/ItemOperations:Status") == "6"
    seen = tgt.state.devices[("user1", "DEV1")].observed
    assert seen["fetch_body"] == {("2", None), ("1", "5")}


async def test_itemoperations_goes_through_the_policy_check(make_target):
    tgt, session, url = await make_target(inbox_items=3)
    c, _ = await _synced(session, url, tgt)
    status, _, tree = await c.post("ItemOperations", _itemops(_fetch_ref("1:1:0")), key="12345")  # a stale key
    # in-band for 14.1 (docs/protocol-notes.md, 449 vs in-band statuses 139-145 and how Exchange chooses)
    assert status == 200 and findtext(tree, "ItemOperations:Status") == "144"
