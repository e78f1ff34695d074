"""loadgen/eas/mail.py element by element: build -> decode -> the exact tree (and the reference
encoder's bytes); parsers on hand-made answers, empty bodies, errors, missing fields, wrong roots."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import _wbxml
from _wbxml import _pure
from loadgen.eas import commands, mail
from loadgen.eas.commands import AttachmentRef


def check(data, tree):
    """``data`` decodes to ``tree`` and is exactly the reference encoder's bytes for it."""
    assert _wbxml.decode(data) == tree
    assert _pure.decode(data) == tree
    assert data == _pure.encode(tree)


def compose(root, *children):
    return ("ComposeMail:" + root, list(children))


MIME = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nbody\r\n"


# --------------------------------------------------------------------------- SendMail / SmartReply / SmartForward

def test_send_mail_element_order():
    check(mail.send_mail("c-1", MIME), compose(
        "SendMail", ("ComposeMail:ClientId", "c-1"), ("ComposeMail:SaveInSentItems", None), ("ComposeMail:Mime", MIME)))
    check(mail.send_mail(42, MIME, save_in_sent=False),
          compose("SendMail", ("ComposeMail:ClientId", "42"), ("ComposeMail:Mime", MIME)))


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16383, 16384, 300_000])
def test_send_mail_mime_length_encodings(size):
    body = bytes((i * 7) & 0xFF for i in range(size))  # NULs, 0xC3, 0x01: opaque is length-delimited
    check(mail.send_mail("id", body), compose(
        "SendMail", ("ComposeMail:ClientId", "id"), ("ComposeMail:SaveInSentItems", None), ("ComposeMail:Mime", body)))


def test_send_mail_mime_holding_the_template_marker_and_other_types():
    body = mail._MARK_ENCODED * 3 + b"tail"
    tree = compose("SendMail", ("ComposeMail:ClientId", "x"), ("ComposeMail:SaveInSentItems", None), ("ComposeMail:Mime", body))
    check(mail.send_mail("x", body), tree)
    check(mail.send_mail("x", bytearray(body)), tree)
    check(mail.send_mail("x", memoryview(body)), tree)
    check(mail.send_mail("x", "Subject: é\r\n"), compose(
        "SendMail", ("ComposeMail:ClientId", "x"), ("ComposeMail:SaveInSentItems", None),
        ("ComposeMail:Mime", "Subject: é\r\n".encode())))


def test_smart_reply_with_folder_and_item():
    check(mail.smart_reply("r1", MIME, "5", "5:12"), compose(
        "SmartReply", ("ComposeMail:ClientId", "r1"),
        ("ComposeMail:Source", [("ComposeMail:FolderId", "5"), ("ComposeMail:ItemId", "5:12")]),
        ("ComposeMail:SaveInSentItems", None), ("ComposeMail:Mime", MIME)))


def test_smart_reply_inbox_item_replace_mime_no_save():
    check(mail.smart_reply("r2", MIME, None, "2:7", save_in_sent=False, replace_mime=True), compose(
        "SmartReply", ("ComposeMail:ClientId", "r2"), ("ComposeMail:Source", [("ComposeMail:ItemId", "2:7")]),
        ("ComposeMail:ReplaceMime", None), ("ComposeMail:Mime", MIME)))


def test_smart_forward_long_id_and_instance():
    check(mail.smart_forward("f1", MIME, "5", "5:1", long_id="RgAAAAD"), compose(
        "SmartForward", ("ComposeMail:ClientId", "f1"), ("ComposeMail:Source", [("ComposeMail:LongId", "RgAAAAD")]),
        ("ComposeMail:SaveInSentItems", None), ("ComposeMail:Mime", MIME)))
    check(mail.smart_forward("f2", MIME, "8", "8:3", instance_id="2024-05-01T10:00:00.000Z", replace_mime=True), compose(
        "SmartForward", ("ComposeMail:ClientId", "f2"),
        ("ComposeMail:Source", [("ComposeMail:FolderId", "8"), ("ComposeMail:ItemId", "8:3"),
                                ("ComposeMail:InstanceId", "2024-05-01T10:00:00.000Z")]),
        ("ComposeMail:SaveInSentItems", None), ("ComposeMail:ReplaceMime", None), ("ComposeMail:Mime", MIME)))


def test_smart_needs_an_item():
    with pytest.raises(ValueError):
        mail.smart_reply("r", MIME, "5", None)


def test_legacy_query_percent_encodes_once():
    assert mail.legacy_query() == "&SaveInSent=T"
    assert mail.legacy_query(save_in_sent=False) == ""
    query = mail.legacy_query(True, item_id="5:1%2", collection_id="5/x y")
    assert query == "&SaveInSent=T&ItemId=5%3A1%252&CollectionId=5%2Fx%20y"
    # an id that already looks encoded is encoded again: once, as data
    assert mail.legacy_query(False, item_id="%3A") == "&ItemId=%253A"
    assert mail.legacy_query(False, long_id="RgA+/=") == "&LongId=RgA%2B%2F%3D"
    assert mail.MIME_CONTENT_TYPE == "message/rfc822"


def test_parse_compose():
    assert mail.parse_compose(None) is None  # an empty body: sent
    assert mail.parse_compose(("ComposeMail:SendMail", None)) is None
    assert mail.parse_compose(("ComposeMail:SendMail", [("ComposeMail:Status", "118")])) == 118
    assert mail.parse_compose(("ComposeMail:SmartReply", [("ComposeMail:Status", "150")])) == 150
    assert mail.parse_compose(("ComposeMail:SmartForward", [("ComposeMail:Status", "x")])) is None
    for bad in [("AirSync:Sync", []), ("ComposeMail:Status", "1"), (), "ComposeMail:SendMail"]:
        with pytest.raises(ValueError):
            mail.parse_compose(bad)


# --------------------------------------------------------------------------- Sync requests

def collection(*children):
    return ("AirSync:Collection", list(children))


def test_sync_initial_key_gets_only_key_and_id_and_no_commands():
    c = mail.SyncCollection("5", "0", window_size=10, filter_type=3, body_type=2, commands=(mail.Fetch("5:1"),))
    check(mail.sync_request([c]), ("AirSync:Sync", [("AirSync:Collections", [
        collection(("AirSync:SyncKey", "0"), ("AirSync:CollectionId", "5"))])]))


def test_sync_several_collections_options_and_top_window():
    data = mail.sync_request([
        mail.SyncCollection("2", "k2", window_size=25, filter_type=3, body_type=2, truncation=5120),
        mail.SyncCollection("8", "k8", get_changes=False, deletes_as_moves=False),
        mail.SyncCollection("5", "k5", body_type=4, truncation=-1),
    ], window_size=100)
    check(data, ("AirSync:Sync", [("AirSync:Collections", [
        collection(("AirSync:SyncKey", "k2"), ("AirSync:CollectionId", "2"), ("AirSync:DeletesAsMoves", "1"),
                   ("AirSync:GetChanges", None), ("AirSync:WindowSize", "25"), ("AirSync:Options", [
                       ("AirSync:FilterType", "3"),
                       ("AirSyncBase:BodyPreference", [("AirSyncBase:Type", "2"), ("AirSyncBase:TruncationSize", "5120")])])),
        collection(("AirSync:SyncKey", "k8"), ("AirSync:CollectionId", "8"), ("AirSync:DeletesAsMoves", "0"),
                   ("AirSync:GetChanges", "0")),
        collection(("AirSync:SyncKey", "k5"), ("AirSync:CollectionId", "5"), ("AirSync:DeletesAsMoves", "1"),
                   ("AirSync:GetChanges", None), ("AirSync:Options", [
                       ("AirSyncBase:BodyPreference", [("AirSyncBase:Type", "4")]), ("AirSync:MIMESupport", "2")])),
    ]), ("AirSync:WindowSize", "100")]))


def test_sync_template_reused_per_shape_values_differ():
    shape = dict(window_size=5, filter_type=2)
    first = mail.sync_request([mail.SyncCollection("2", "a", **shape)])
    second = mail.sync_request([mail.SyncCollection("2:x", "bbbbbbbbbb", **shape)])
    assert _wbxml.decode(first)[1][0][1][0][1][:2] == [("AirSync:SyncKey", "a"), ("AirSync:CollectionId", "2")]
    assert _wbxml.decode(second)[1][0][1][0][1][:2] == [("AirSync:SyncKey", "bbbbbbbbbb"),
                                                        ("AirSync:CollectionId", "2:x")]


def test_sync_client_commands():
    commands_ = (
        mail.Change("2:1", mail.email_read(True)),
        mail.Change("2:2", mail.email_flag(mail.FLAG_ACTIVE, at=1714557600)),
        mail.Delete("2:3"),
        mail.Add("c1", mail.calendar_item("Lunch", 1714557600, 1714561200, location="Canteen", uid="u-1", reminder=15,
                                          at=1714550000)),
        mail.Fetch("2:4"),
    )
    data = mail.sync_request([mail.SyncCollection("2", "k", window_size=50, commands=commands_)])
    when = "2024-05-01T10:00:00.000Z"
    check(data, ("AirSync:Sync", [("AirSync:Collections", [collection(
        ("AirSync:SyncKey", "k"), ("AirSync:CollectionId", "2"), ("AirSync:DeletesAsMoves", "1"),
        ("AirSync:GetChanges", None), ("AirSync:WindowSize", "50"),
        ("AirSync:Commands", [
            ("AirSync:Change", [("AirSync:ServerId", "2:1"), ("AirSync:ApplicationData", [("Email:Read", "1")])]),
            ("AirSync:Change", [("AirSync:ServerId", "2:2"), ("AirSync:ApplicationData", [("Email:Flag", [
                ("Email:Status", "2"), ("Email:FlagType", "Flag for follow up"), ("Tasks:StartDate", when),
                ("Tasks:UtcStartDate", when), ("Tasks:DueDate", when), ("Tasks:UtcDueDate", when)])])]),
            ("AirSync:Delete", [("AirSync:ServerId", "2:3")]),
            ("AirSync:Add", [("AirSync:ClientId", "c1"), ("AirSync:ApplicationData", [
                ("Calendar:Timezone", mail.UTC_TIMEZONE), ("Calendar:AllDayEvent", "0"), ("Calendar:BusyStatus", "2"),
                ("Calendar:DtStamp", "20240501T075320Z"), ("Calendar:EndTime", "20240501T110000Z"),
                ("Calendar:Location", "Canteen"), ("Calendar:Reminder", "15"), ("Calendar:Sensitivity", "0"),
                ("Calendar:Subject", "Lunch"), ("Calendar:StartTime", "20240501T100000Z"), ("Calendar:UID", "u-1"),
                ("Calendar:MeetingStatus", "0")])]),
            ("AirSync:Fetch", [("AirSync:ServerId", "2:4")]),
        ]))])]))


def test_sync_request_refuses_nothing_and_unknown_commands():
    with pytest.raises(ValueError):
        mail.sync_request([])
    with pytest.raises(ValueError):
        mail.sync_request([mail.SyncCollection("2", "k", commands=(("Change", "2:1"),))])


def test_application_data_helpers():
    assert mail.email_read(False) == [("Email:Read", "0")]
    assert mail.email_flag(0) == [("Email:Flag", None)]  # clearing: an empty Flag (MS-ASEMAIL 3.2.5.4.2)
    when = "2024-05-01T10:00:00.000Z"
    assert mail.email_flag(1, at=1714557600) == [("Email:Flag", [
        ("Email:Status", "1"), ("Email:CompleteTime", when), ("Tasks:DateCompleted", when)])]
    with pytest.raises(ValueError):
        mail.email_flag(3)
    assert mail.contact_item("Ann", "Lee", "ann@example.com", phone="+1 555", company="Contoso") == [
        ("Contacts:CompanyName", "Contoso"), ("Contacts:Email1Address", "ann@example.com"), ("Contacts:FileAs", "Lee, Ann"),
        ("Contacts:FirstName", "Ann"), ("Contacts:LastName", "Lee"), ("Contacts:MobilePhoneNumber", "+1 555")]
    assert mail.contact_item("Ann", "", "a@example.com")[1:3] == [("Contacts:FileAs", "Ann"), ("Contacts:FirstName", "Ann")]
    assert mail.task_item("Call back") == [("Tasks:Complete", "0"), ("Tasks:Importance", "1"), ("Tasks:Subject", "Call back")]
    assert mail.task_item("x", due=1714557600)[1:3] == [("Tasks:DueDate", when), ("Tasks:UtcDueDate", when)]
    minimal = mail.calendar_item("s", 0, 1800, at=0)
    assert [tag for tag, _ in minimal] == [
        "Calendar:Timezone", "Calendar:AllDayEvent", "Calendar:BusyStatus", "Calendar:DtStamp", "Calendar:EndTime",
        "Calendar:Sensitivity", "Calendar:Subject", "Calendar:StartTime", "Calendar:MeetingStatus"]
    import base64
    assert base64.b64decode(mail.UTC_TIMEZONE) == bytes(172)  # TIME_ZONE_INFORMATION, UTC


def test_eas_datetime_forms():
    assert mail.eas_datetime(1714557600) == "2024-05-01T10:00:00.000Z"
    assert mail.eas_datetime(1714557600.9, compact=True) == "20240501T100000Z"


# --------------------------------------------------------------------------- Sync answers

def add(server_id, *data):
    return ("AirSync:Add", [("AirSync:ServerId", server_id), ("AirSync:ApplicationData", list(data))])


def sync_answer(*collections, status=None):
    root = [("AirSync:Status", status)] if status else []
    return ("AirSync:Sync", root + [("AirSync:Collections", list(collections))])


def test_parse_sync_all_empty_body_and_error_root():
    assert mail.parse_sync_all(None) == mail.SyncAll(1, [])
    assert mail.parse_sync_all(("AirSync:Sync", None)) == mail.SyncAll(1, [])
    assert mail.parse_sync_all(("AirSync:Sync", [("AirSync:Status", "12")])) == mail.SyncAll(12, [])
    with pytest.raises(ValueError):
        mail.parse_sync_all(("FolderHierarchy:FolderSync", []))


def test_parse_sync_all_two_collections():
    inbox = collection(
        ("AirSync:SyncKey", "k2"), ("AirSync:CollectionId", "2"), ("AirSync:Status", "1"), ("AirSync:MoreAvailable", None),
        ("AirSync:Commands", [
            add("2:1", ("Email:To", '"Bob" <bob@example.com>, carol@example.com'), ("Email:Cc", "dave@example.com"),
                ("Email:Subject", "Hello [el1.0a1b2c3d.1.2.3]"), ("Email:Read", "1"),
                ("AirSyncBase:Body", [("AirSyncBase:Type", "2"), ("AirSyncBase:Truncated", "1")]),
                ("Email:MessageClass", "IPM.Note"),
                ("AirSyncBase:Attachments", [
                    ("AirSyncBase:Attachment", [("AirSyncBase:DisplayName", "a.pdf"), ("AirSyncBase:FileReference", "2:1:0"),
                                                ("AirSyncBase:EstimatedDataSize", "1234")]),
                    ("AirSyncBase:Attachment", [("AirSyncBase:FileReference", "2:1:1")]),
                    ("AirSyncBase:Attachment", [("AirSyncBase:DisplayName", "no reference")])])),
            add("2:2", ("Email:Subject", "Invitation"), ("Email:MessageClass", "IPM.Schedule.Meeting.Request"),
                ("Email:Read", "0")),
            ("AirSync:Change", [("AirSync:ServerId", "2:3"), ("AirSync:ApplicationData", [("Email:Read", "1")])]),
            ("AirSync:Delete", [("AirSync:ServerId", "2:4")]),
            ("AirSync:SoftDelete", [("AirSync:ServerId", "2:5")]),
            ("AirSync:Class", "Email"),  # not a command: skipped
        ]))
    calendar = collection(
        ("AirSync:SyncKey", "k8"), ("AirSync:CollectionId", "8"), ("AirSync:Status", "1"),
        ("AirSync:Responses", [
            ("AirSync:Add", [("AirSync:ClientId", "c1"), ("AirSync:ServerId", "8:9"), ("AirSync:Status", "1")]),
            ("AirSync:Change", [("AirSync:ServerId", "8:2"), ("AirSync:Status", "7")]),
            ("AirSync:Fetch", [("AirSync:ServerId", "8:3"), ("AirSync:Status", "8")]),
        ]),
        ("AirSync:Commands", [add("8:4", ("Calendar:Subject", "Standup"), ("Calendar:StartTime", "20240501T100000Z"))]))
    got = mail.parse_sync_all(sync_answer(inbox, calendar))
    assert got.status == 1
    first, second = got.collections
    assert (first.collection_id, first.status, first.sync_key, first.more_available) == ("2", 1, "k2", True)
    assert first.added == [
        mail.AddedItem("2:1", "Hello [el1.0a1b2c3d.1.2.3]", "IPM.Note", True, '"Bob" <bob@example.com>, carol@example.com',
                       "dave@example.com", [AttachmentRef("2:1", "2:1:0", 1234), AttachmentRef("2:1", "2:1:1", None)], True),
        mail.AddedItem("2:2", "Invitation", "IPM.Schedule.Meeting.Request", False, "", "", (), False),
    ]
    assert first.changed == ["2:3"] and first.deleted == ["2:4", "2:5"] and first.responses == []
    assert (second.collection_id, second.sync_key, second.more_available) == ("8", "k8", False)
    assert second.responses == [mail.ItemResponse("Add", "c1", "8:9", 1), mail.ItemResponse("Change", None, "8:2", 7),
                                mail.ItemResponse("Fetch", None, "8:3", 8)]
    assert second.added[0].subject == "Standup" and second.added[0].message_class is None


@pytest.mark.parametrize("to,cc,kind", [
    ('"Bob" <Bob@Example.com>', "", "to"),
    ("carol@example.com", "Bob <bob@example.com>", "cc"),
    ("carol@example.com", "", "bcc"),
    ("xbob@example.com", "bob@example.com.evil", "bcc"),  # a substring is not the address
    ("Team: bob@example.com, eve@example.com;", "", "to"),
    ("Bob <bob@example.com>", "", "to"),
    ("bob@example.com", "", "to"),
    ("xbob@example.com, bob@example.com", "", "to"),  # the second occurrence counts
    ('"bob@example.com" <eve@example.com>', "", "bcc"),  # only in a quoted display name
    ("bob@example.community", "bob_x@example.com", "bcc"),
])
def test_parse_sync_all_recipient_kind(to, cc, kind):
    data = [("Email:Subject", "s")] + ([("Email:To", to)] if to else []) + ([("Email:Cc", cc)] if cc else [])
    tree = sync_answer(collection(("AirSync:CollectionId", "2"), ("AirSync:Commands", [add("2:1", *data)])))
    assert mail.parse_sync_all(tree, own_address=" BOB@example.com ").collections[0].added[0].kind == kind
    assert mail.parse_sync_all(tree).collections[0].added[0].kind is None


def test_parse_sync_all_missing_and_odd_fields():
    tree = sync_answer(
        collection(),  # nothing at all
        ("AirSync:Collection", None),
        collection(("AirSync:Status", "3"), ("AirSync:SyncKey", None), ("AirSync:Commands", [
            ("AirSync:Add", None),  # an Add without children
            ("AirSync:Add", [("AirSync:ServerId", "2:1"), ("AirSync:ApplicationData", "text")]),
            ("AirSync:Add", [("AirSync:ServerId", b"opaque"), ("AirSync:ApplicationData", [
                ("Email:Subject", ["nested"]), ("Email:Read", None), ("Email:To", b"x"),
                ("AirSyncBase:Attachments", "x"), ("AirSyncBase:Body", "x")])]),
            ("AirSync:Change", None), ("AirSync:Delete", [("AirSync:ServerId", [])]),
        ]), ("AirSync:Responses", "x")),
        status="not a number")
    got = mail.parse_sync_all(tree, own_address="a@example.com")
    assert got.status is None
    assert got.collections[0] == mail.CollectionResult(None, None, None, False, [], [], [], [])
    odd = got.collections[2]
    assert odd.status == 3 and odd.sync_key == ""
    assert [item.server_id for item in odd.added] == ["", "2:1", ""]
    assert odd.added[2].subject is None and odd.added[2].to == "" and odd.added[2].kind == "bcc"
    assert odd.changed == [] and odd.deleted == []


# --------------------------------------------------------------------------- MoveItems

def test_move_items_one_and_many():
    check(mail.move_items([("2:1", "2", "12")]), ("Move:MoveItems", [("Move:Move", [
        ("Move:SrcMsgId", "2:1"), ("Move:SrcFldId", "2"), ("Move:DstFldId", "12")])]))
    check(mail.move_items([("2:1", "2", "4"), ("5:9", 5, 12)]), ("Move:MoveItems", [
        ("Move:Move", [("Move:SrcMsgId", "2:1"), ("Move:SrcFldId", "2"), ("Move:DstFldId", "4")]),
        ("Move:Move", [("Move:SrcMsgId", "5:9"), ("Move:SrcFldId", "5"), ("Move:DstFldId", "12")])]))
    with pytest.raises(ValueError):
        mail.move_items([])


def test_parse_move_items():
    tree = ("Move:MoveItems", [
        ("Move:Response", [("Move:SrcMsgId", "5:1"), ("Move:Status", "3"), ("Move:DstMsgId", "14:1")]),
        ("Move:Response", [("Move:SrcMsgId", "5:2"), ("Move:Status", "1")]),
        ("Move:Response", None), ("Move:Other", "x")])
    assert mail.parse_move_items(tree) == [mail.MoveResult("5:1", 3, "14:1"), mail.MoveResult("5:2", 1, None),
                                           mail.MoveResult(None, None, None)]
    assert mail.parse_move_items(("Move:MoveItems", [("Move:Status", "5")])) == []
    assert commands.root_status(("Move:MoveItems", [("Move:Status", "5")])) == 5
    with pytest.raises(ValueError):
        mail.parse_move_items(None)


# --------------------------------------------------------------------------- MeetingResponse

def test_meeting_response_builders():
    check(mail.meeting_response(mail.ACCEPT, "2", "2:7"), ("MeetingResponse:MeetingResponse", [("MeetingResponse:Request", [
        ("MeetingResponse:UserResponse", "1"), ("MeetingResponse:CollectionId", "2"), ("MeetingResponse:RequestId", "2:7")])]))
    check(mail.meeting_response(3, "2", "2:8", instance_id="2024-05-01T10:00:00.000Z"), (
        "MeetingResponse:MeetingResponse", [("MeetingResponse:Request", [
            ("MeetingResponse:UserResponse", "3"), ("MeetingResponse:CollectionId", "2"),
            ("MeetingResponse:RequestId", "2:8"), ("MeetingResponse:InstanceId", "2024-05-01T10:00:00.000Z")])]))
    with pytest.raises(ValueError):
        mail.meeting_response(4, "2", "2:1")


def test_parse_meeting_response():
    tree = ("MeetingResponse:MeetingResponse", [
        ("MeetingResponse:Result", [("MeetingResponse:RequestId", "2:7"), ("MeetingResponse:Status", "1"),
                                    ("MeetingResponse:CalendarId", "8:3")]),
        ("MeetingResponse:Result", [("MeetingResponse:RequestId", "2:8"), ("MeetingResponse:Status", "2")])])
    assert mail.parse_meeting_response(tree) == [mail.MeetingResult("2:7", 1, "8:3"), mail.MeetingResult("2:8", 2, None)]
    assert mail.parse_meeting_response(("MeetingResponse:MeetingResponse", None)) == []
    with pytest.raises(ValueError):
        mail.parse_meeting_response(("Move:MoveItems", []))


# --------------------------------------------------------------------------- Search

def test_search_gal():
    check(mail.search_gal("ann"), ("Search:Search", [("Search:Store", [
        ("Search:Name", "GAL"), ("Search:Query", "ann"), ("Search:Options", [("Search:Range", "0-9")])])]))


def test_search_mailbox_with_and_without_folder():
    check(mail.search_mailbox("budget", "2", range_="0-4", body_type=2, truncation=256), ("Search:Search", [("Search:Store", [
        ("Search:Name", "Mailbox"),
        ("Search:Query", [("Search:And", [("AirSync:Class", "Email"), ("AirSync:CollectionId", "2"),
                                          ("Search:FreeText", "budget")])]),
        ("Search:Options", [("Search:RebuildResults", None), ("Search:Range", "0-4"), ("Search:DeepTraversal", None),
                            ("AirSyncBase:BodyPreference", [("AirSyncBase:Type", "2"), ("AirSyncBase:TruncationSize", "256")])]),
    ])]))
    check(mail.search_mailbox("x"), ("Search:Search", [("Search:Store", [
        ("Search:Name", "Mailbox"),
        ("Search:Query", [("Search:And", [("AirSync:Class", "Email"), ("Search:FreeText", "x")])]),
        ("Search:Options", [("Search:RebuildResults", None), ("Search:Range", "0-9")])])]))


def test_parse_search():
    tree = ("Search:Search", [("Search:Status", "1"), ("Search:Response", [("Search:Store", [
        ("Search:Status", "1"),
        ("Search:Result", [("Search:Properties", [("GAL:DisplayName", "Ann")])]),
        ("Search:Result", [("Search:Properties", [("GAL:DisplayName", "Anne")])]),
        ("Search:Range", "0-1"), ("Search:Total", "7")])])])
    assert mail.parse_search(tree) == mail.SearchResult(1, 1, 7, 2, "0-1")
    no_match = ("Search:Search", [("Search:Status", "1"), ("Search:Response", [("Search:Store", [
        ("Search:Status", "1"), ("Search:Result", None), ("Search:Total", "0")])])])
    assert mail.parse_search(no_match) == mail.SearchResult(1, 1, 0, 0, None)
    assert mail.parse_search(("Search:Search", [("Search:Status", "3")])) == mail.SearchResult(3, None, None, 0, None)
    with pytest.raises(ValueError):
        mail.parse_search(("GAL:DisplayName", "x"))


# --------------------------------------------------------------------------- ResolveRecipients

def test_resolve_recipients_builders():
    check(mail.resolve_recipients(["ann@example.com", "Bob"]), ("ResolveRecipients:ResolveRecipients", [
        ("ResolveRecipients:To", "ann@example.com"), ("ResolveRecipients:To", "Bob")]))
    check(mail.resolve_recipients(["ann@example.com"], availability=(1714557600, 1714561200), max_ambiguous=3), (
        "ResolveRecipients:ResolveRecipients", [
            ("ResolveRecipients:To", "ann@example.com"),
            ("ResolveRecipients:Options", [
                ("ResolveRecipients:MaxAmbiguousRecipients", "3"),
                ("ResolveRecipients:Availability", [("ResolveRecipients:StartTime", "2024-05-01T10:00:00.000Z"),
                                                    ("ResolveRecipients:EndTime", "2024-05-01T11:00:00.000Z")])])]))
    with pytest.raises(ValueError):
        mail.resolve_recipients([])


def test_parse_resolve_recipients():
    tree = ("ResolveRecipients:ResolveRecipients", [
        ("ResolveRecipients:Status", "1"),
        ("ResolveRecipients:Response", [
            ("ResolveRecipients:To", "ann@example.com"), ("ResolveRecipients:Status", "1"),
            ("ResolveRecipients:RecipientCount", "1"),
            ("ResolveRecipients:Recipient", [
                ("ResolveRecipients:Type", "1"), ("ResolveRecipients:DisplayName", "Ann"),
                ("ResolveRecipients:EmailAddress", "ann@example.com"),
                ("ResolveRecipients:Availability", [("ResolveRecipients:Status", "1"),
                                                    ("ResolveRecipients:MergedFreeBusy", "0022")])])]),
        ("ResolveRecipients:Response", [("ResolveRecipients:To", "zz"), ("ResolveRecipients:Status", "4"),
                                        ("ResolveRecipients:RecipientCount", "0")])])
    assert mail.parse_resolve_recipients(tree) == mail.ResolveResult(1, [("ann@example.com", 1, 1, 1), ("zz", 4, 0, None)])
    assert mail.parse_resolve_recipients(("ResolveRecipients:ResolveRecipients", [("ResolveRecipients:Status", "5")])) == \
        mail.ResolveResult(5, [])
    with pytest.raises(ValueError):
        mail.parse_resolve_recipients(None)


# --------------------------------------------------------------------------- GetItemEstimate

def test_get_item_estimate_14():
    check(mail.get_item_estimate([("k2", "2", 3), ("k8", "8", None, "Calendar"), ("k9", "9", None)], 140), (
        "GetItemEstimate:GetItemEstimate", [("GetItemEstimate:Collections", [
            ("GetItemEstimate:Collection", [("AirSync:SyncKey", "k2"), ("GetItemEstimate:CollectionId", "2"),
                                            ("AirSync:Options", [("AirSync:FilterType", "3")])]),
            ("GetItemEstimate:Collection", [("AirSync:SyncKey", "k8"), ("GetItemEstimate:CollectionId", "8"),
                                            ("AirSync:Options", [("AirSync:Class", "Calendar")])]),
            ("GetItemEstimate:Collection", [("AirSync:SyncKey", "k9"), ("GetItemEstimate:CollectionId", "9")])])]))


def test_get_item_estimate_12():
    check(mail.get_item_estimate([("k2", "2", 3), ("k8", "8", None, "Calendar")], 121), (
        "GetItemEstimate:GetItemEstimate", [("GetItemEstimate:Collections", [
            ("GetItemEstimate:Collection", [("GetItemEstimate:Class", "Email"), ("GetItemEstimate:CollectionId", "2"),
                                            ("AirSync:FilterType", "3"), ("AirSync:SyncKey", "k2")]),
            ("GetItemEstimate:Collection", [("GetItemEstimate:Class", "Calendar"), ("GetItemEstimate:CollectionId", "8"),
                                            ("AirSync:FilterType", "0"), ("AirSync:SyncKey", "k8")])])]))
    with pytest.raises(ValueError):
        mail.get_item_estimate([], 140)


def test_parse_get_item_estimate():
    tree = ("GetItemEstimate:GetItemEstimate", [
        ("GetItemEstimate:Response", [("GetItemEstimate:Status", "1"), ("GetItemEstimate:Collection", [
            ("GetItemEstimate:CollectionId", "2"), ("GetItemEstimate:Estimate", "12")])]),
        ("GetItemEstimate:Response", [("GetItemEstimate:Status", "4"), ("GetItemEstimate:Collection", [
            ("GetItemEstimate:CollectionId", "8")])])])
    got = mail.parse_get_item_estimate(tree)
    assert got == mail.EstimateResult(None, [("2", 1, 12), ("8", 4, None)])
    status, collections = got
    assert status is None and len(collections) == 2
    assert mail.parse_get_item_estimate(("GetItemEstimate:GetItemEstimate", [("GetItemEstimate:Status", "2")])) == \
        mail.EstimateResult(2, [])
    with pytest.raises(ValueError):
        mail.parse_get_item_estimate(("AirSync:Sync", []))


# --------------------------------------------------------------------------- Settings

def test_settings_builders():
    check(mail.settings_oof_get(), ("Settings:Settings", [("Settings:Oof", [("Settings:Get", [("Settings:BodyType", "Text")])])]))
    check(mail.settings_user_information(), ("Settings:Settings", [("Settings:UserInformation", [("Settings:Get", None)])]))
    check(mail.settings_oof_set(False), ("Settings:Settings", [("Settings:Oof", [("Settings:Set", [("Settings:OofState", "0")])])]))
    message = [("Settings:Enabled", "1"), ("Settings:ReplyMessage", "Away until Monday"), ("Settings:BodyType", "Text")]
    check(mail.settings_oof_set(True, "Away until Monday"), ("Settings:Settings", [("Settings:Oof", [("Settings:Set", [
        ("Settings:OofState", "1"),
        ("Settings:OofMessage", [("Settings:AppliesToInternal", None)] + message),
        ("Settings:OofMessage", [("Settings:AppliesToExternalKnown", None)] + message),
        ("Settings:OofMessage", [("Settings:AppliesToExternalUnknown", None)] + message)])])]))


def test_parse_settings():
    tree = ("Settings:Settings", [
        ("Settings:Status", "1"),
        ("Settings:Oof", [("Settings:Status", "1"), ("Settings:Get", [("Settings:OofState", "2"),
                                                                     ("Settings:StartTime", "2024-05-01T00:00:00.000Z")])]),
        ("Settings:UserInformation", [("Settings:Status", "1"), ("Settings:Get", [
            ("Settings:EmailAddresses", [("Settings:SMTPAddress", "ann@example.com")])])])])
    assert mail.parse_settings(tree) == mail.SettingsResult(1, 1, 2, 1)
    assert mail.parse_settings(("Settings:Settings", [("Settings:Status", "2")])) == mail.SettingsResult(2, None, None, None)
    with pytest.raises(ValueError):
        mail.parse_settings(("Provision:Provision", []))


# --------------------------------------------------------------------------- Ping

def test_ping_folders_several_classes():
    folders = [("2", "Email"), ("8", "Calendar"), ("9", "Contacts"), ("7", "Tasks"), ("12", "Email")]
    check(mail.ping_folders(480, folders), ("Ping:Ping", [("Ping:HeartbeatInterval", "480"), ("Ping:Folders", [
        ("Ping:Folder", [("Ping:Id", fid), ("Ping:Class", cls)]) for fid, cls in folders])]))
    check(mail.ping_folders(60.0, [("2", "Email")]), ("Ping:Ping", [("Ping:HeartbeatInterval", "60"), ("Ping:Folders", [
        ("Ping:Folder", [("Ping:Id", "2"), ("Ping:Class", "Email")])])]))
    assert mail.ping_folders(480, [("2", "Email")]) == commands.ping(480, "2")  # the one-folder Ping unchanged
    with pytest.raises(ValueError):
        mail.ping_folders(480, [])


def test_parse_ping_status_2_names_the_folders():
    got = commands.parse_ping(("Ping:Ping", [("Ping:Status", "2"), ("Ping:Folders", [
        ("Ping:Folder", "2"), ("Ping:Folder", "8")])]))
    assert (got.status, got.folders) == (2, ("2", "8"))
    got = commands.parse_ping(("Ping:Ping", [("Ping:Status", "6"), ("Ping:MaxFolders", "3")]))
    assert (got.status, got.max_folders) == (6, 3)


# --------------------------------------------------------------------------- FolderSync changes

def test_foldersync_updates_and_deletes():
    tree = ("FolderHierarchy:FolderSync", [("FolderHierarchy:Status", "1"), ("FolderHierarchy:SyncKey", "3"),
                                          ("FolderHierarchy:Changes", [
        ("FolderHierarchy:Count", "4"),
        ("FolderHierarchy:Add", [("FolderHierarchy:ServerId", "20"), ("FolderHierarchy:ParentId", "2"),
                                 ("FolderHierarchy:DisplayName", "Projects"), ("FolderHierarchy:Type", "12")]),
        ("FolderHierarchy:Update", [("FolderHierarchy:ServerId", "21"), ("FolderHierarchy:ParentId", "0"),
                                    ("FolderHierarchy:DisplayName", "Receipts 2024"), ("FolderHierarchy:Type", "12")]),
        ("FolderHierarchy:Update", None),
        ("FolderHierarchy:Delete", [("FolderHierarchy:ServerId", "22")]),
        ("FolderHierarchy:Delete", [("FolderHierarchy:ServerId", ["x"])]),
    ])])
    got = commands.parse_foldersync(tree)
    assert got.added == [commands.Folder("20", "2", "Projects", 12)]
    assert got.updated == [commands.Folder("21", "0", "Receipts 2024", 12)]
    assert got.deleted_ids == ["22"]
    assert (got.changed, got.deleted) == (2, 2)
    assert commands.parse_foldersync(("FolderHierarchy:FolderSync", [("FolderHierarchy:Status", "9")])).updated == []


# --------------------------------------------------------------------------- parsers on arbitrary trees

_TAGS = ["AirSync:Sync", "AirSync:Collections", "AirSync:Collection", "AirSync:Commands", "AirSync:Add", "AirSync:Responses",
         "AirSync:ApplicationData", "AirSync:ServerId", "AirSync:Status", "Email:To", "AirSyncBase:Attachments",
         "AirSyncBase:Attachment", "AirSyncBase:Body", "Move:Response", "Search:Response", "Search:Store", "Search:Result",
         "ResolveRecipients:Response", "ResolveRecipients:Recipient", "ResolveRecipients:Availability",
         "GetItemEstimate:Response", "GetItemEstimate:Collection", "Settings:Oof", "Settings:Get", "MeetingResponse:Result",
         "ComposeMail:Status"]
_LEAVES = st.one_of(st.none(), st.text(max_size=8), st.binary(max_size=4), st.just([]))
_TREES = st.recursive(st.tuples(st.sampled_from(_TAGS), _LEAVES),
                      lambda inner: st.tuples(st.sampled_from(_TAGS), st.lists(inner, max_size=4)), max_leaves=30)
_PARSERS = [(mail.parse_sync_all, "AirSync:Sync"), (mail.parse_move_items, "Move:MoveItems"),
            (mail.parse_meeting_response, "MeetingResponse:MeetingResponse"), (mail.parse_search, "Search:Search"),
            (mail.parse_resolve_recipients, "ResolveRecipients:ResolveRecipients"),
            (mail.parse_get_item_estimate, "GetItemEstimate:GetItemEstimate"), (mail.parse_settings, "Settings:Settings"),
            (mail.parse_compose, "ComposeMail:SendMail")]


@settings(max_examples=300, deadline=None)
@given(children=st.one_of(st.lists(_TREES, max_size=5), _LEAVES))
def test_property_parsers_never_raise_on_decoded_trees(children):
    for parse, root in _PARSERS:
        parse((root, children))
        if parse is mail.parse_sync_all:
            parse((root, children), own_address="a@example.com")


@settings(max_examples=200, deadline=None)
@given(garbage=st.one_of(st.integers(), st.text(max_size=5), st.tuples(), st.lists(st.integers(), max_size=3),
                         st.tuples(st.sampled_from([r for _p, r in _PARSERS]), st.lists(st.integers(), min_size=1, max_size=3))))
def test_property_parsers_raise_only_value_error_on_malformed_trees(garbage):
    for parse, _root in _PARSERS:
        try:
            parse(garbage)
        except ValueError:
            pass
