"""MeetingResponse of the embedded target (MS-ASCMD 2.2.1.11).

Request (schema 6.25): ``MeetingResponse{Request{UserResponse, CollectionId, RequestId,
[search:LongId], [InstanceId], [SendResponse]}*}`` -- UserResponse 1 accept, 2 tentative, 3 decline
(MS-ASCMD 2.2.3.194); LongId (from a Search) instead of CollectionId and RequestId.
Answer (schema 6.26): ``MeetingResponse{Result{[RequestId], Status, [CalendarId]}*}`` in the
request's order; CalendarId (the calendar item's ServerId) when accepted or tentative.

What the target does with a response to a meeting request (an Inbox message of class
IPM.Schedule.Meeting.Request, store.py, wherever it was filed since) or to the meeting's calendar
item itself:
* accept / tentative: the calendar item (store.py's calendar number of the meeting) is updated --
  MS-ASCAL BusyStatus 2 busy / 1 tentative, ResponseType 3 accepted / 2 tentative, MeetingStatus 3
  (a meeting received) -- or created again when it was deleted; decline: the calendar item is
  removed;
* the request leaves the folder it is in for Deleted Items, as Exchange files a request that was
  answered;
* a response message (MS-ASEMAIL 2.2.2.50 MessageClass IPM.Schedule.Meeting.Resp.Pos / .Tent /
  .Neg) goes to the organizer's Inbox when the organizer is a user of this target.  Up to 14.1 the
  server sends it; from 16.0 only when the request has SendResponse (MS-ASCMD 2.2.3.163).
These are the server's own changes: every device of the user, the responding one too, gets them
at its next Sync (and the held Pings on those folders wake).

Status (MS-ASCMD 2.2.3.177.9): 1 success; 2 invalid meeting request -- no such item, an item that is
not a meeting request or a received meeting, an appointment the user organizes, an InstanceId
(this target's meetings have no occurrences), a UserResponse other than 1-3, a Request without its
ids.  A body that is not a MeetingResponse request is the common status 103 InvalidXML (MS-ASCMD 2.2.2).
"""

import email.utils

from _wbxml import children, encode, findtext
from loadgen.exchange import store as st
from loadgen.exchange.sync import render_event

ACCEPT, TENTATIVE, DECLINE = 1, 2, 3
_BUSY = {ACCEPT: "2", TENTATIVE: "1"}  # MS-ASCAL 2.2.2.8 BusyStatus
_RESPONSE_TYPE = {ACCEPT: "3", TENTATIVE: "2"}  # MS-ASCAL 2.2.2.40 ResponseType
_CLASS = {ACCEPT: "IPM.Schedule.Meeting.Resp.Pos", TENTATIVE: "IPM.Schedule.Meeting.Resp.Tent",
          DECLINE: "IPM.Schedule.Meeting.Resp.Neg"}
_VERB = {ACCEPT: "Accepted", TENTATIVE: "Tentative", DECLINE: "Declined"}


def _meeting_of(box, fid, item):
    """The calendar number of the meeting ``item`` (in folder ``fid``) is about, or None."""
    if isinstance(item, st.GenMail):
        return item.meeting
    if fid == st.CALENDAR:
        if isinstance(item, st.GenEvent):
            return item.n if item.kind == "meeting" else None
    return None


def _received_meeting(item):
    """True for a calendar ClientItem that is a meeting this user received (MS-ASCAL MeetingStatus 3)."""
    return isinstance(item, st.ClientItem) and item.cls == "Calendar" and any(
        tag == "Calendar:MeetingStatus" and value == "3" for tag, value in item.data)


def _calendar_data(box, number, response):
    """The ApplicationData of meeting ``number`` answered with ``response``."""
    current = box.item(st.CALENDAR, number)
    if isinstance(current, st.ClientItem):
        data = list(current.data)
    else:
        data = render_event(box, st.GenEvent(box, number))
    out = []
    for tag, value in data:
        if tag == "Calendar:BusyStatus":
            value = _BUSY[response]
        elif tag == "Calendar:MeetingStatus":
            value = "3"
        elif tag == "Calendar:ResponseType":
            continue
        elif tag == "AirSyncBase:Body":
            out.append(("Calendar:ResponseType", _RESPONSE_TYPE[response]))
        out.append((tag, value))
    if not any(tag == "Calendar:ResponseType" for tag, _ in out):
        out.append(("Calendar:ResponseType", _RESPONSE_TYPE[response]))
    return out


def _organizer(box, number, item):
    """(name, address) of the organizer of meeting ``number`` (or of a received calendar ClientItem)."""
    if isinstance(item, st.ClientItem):
        values = {tag: value for tag, value in item.data if type(value) is str}
        return values.get("Calendar:OrganizerName", ""), values.get("Calendar:OrganizerEmail", "")
    return st.GenEvent(box, number).organizer


def _subject(box, number, item):
    if isinstance(item, st.ClientItem):
        for tag, value in item.data:
            if tag == "Calendar:Subject" and type(value) is str:
                return value
        return ""
    return st.GenEvent(box, number).subject


def _notify(store, box, organizer, subject, response, now):
    """The response message in the organizer's Inbox when the organizer is a user of this target."""
    name, address = organizer
    user = store.user_for((address or "").lower())
    if user is None or user == box.user:
        return
    mime = ("From: \"%s\" <%s>\r\nTo: \"%s\" <%s>\r\nSubject: %s: %s\r\nDate: %s\r\n"
            "Message-ID: <%d.%s.response@%s>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            "%s has %s your meeting request.\r\n" % (
                box.user, box.address, name, address, _VERB[response], subject,
                email.utils.formatdate(now, usegmt=True), int(now * 1000), box.base, store.domain,
                box.user, _VERB[response].lower())).encode("utf-8")
    message = st.Message(mime, st.parse_mime(mime), now)
    message.message_class = _CLASS[response]
    store.mailbox(user).add(st.INBOX, message)


def respond_one(store, box, folder_ids, node, send_response):
    """(request id, status, calendar id or None) of one Request."""
    request_id = findtext(node, "MeetingResponse:RequestId")
    collection_id = findtext(node, "MeetingResponse:CollectionId")
    long_id = findtext(node, "Search:LongId")
    shown = request_id if type(request_id) is str else None
    try:
        response = int(findtext(node, "MeetingResponse:UserResponse") or "")
    except (TypeError, ValueError):
        return shown, 2, None
    if response not in (ACCEPT, TENTATIVE, DECLINE) or findtext(node, "MeetingResponse:InstanceId") is not None:
        return shown, 2, None
    if type(long_id) is str and long_id:
        found = box.item_by_id(long_id)
    elif type(request_id) is str and type(collection_id) is str and collection_id in folder_ids:
        found = box.item_by_id(request_id)
        if found is not None and found[0] != collection_id:
            found = None
    else:
        found = None
    if found is None:
        return shown, 2, None
    fid, n, item = found
    number = _meeting_of(box, fid, item)
    if number is None:
        if fid == st.CALENDAR and _received_meeting(item):
            number = n
        else:
            return shown, 2, None
    is_request = fid != st.CALENDAR
    calendar = box.folder(st.CALENDAR)
    target_item = box.item(st.CALENDAR, number) if calendar.live(number) else None
    organizer = _organizer(box, number, target_item if target_item is not None else item)
    subject = _subject(box, number, target_item if target_item is not None else item)
    now = store.clock()
    calendar_id = None
    if response == DECLINE:
        if target_item is not None:
            box.remove(st.CALENDAR, number)
    else:
        data = _calendar_data(box, number, response)
        if target_item is not None:
            box.replace(st.CALENDAR, number, data)
            calendar_id = "%s:%d" % (st.CALENDAR, number)
        else:
            new = box.add(st.CALENDAR, st.ClientItem("Calendar", data, now))
            calendar_id = "%s:%d" % (st.CALENDAR, new)
    if is_request and fid != st.DELETED:
        box.move(fid, n, st.DELETED)
    if send_response:
        _notify(store, box, organizer, subject, response, now)
    store.counters["meeting_responses"] += 1
    return shown, 1, calendar_id


def respond(target, record, version, tree):
    """The Result children of a MeetingResponse tree, or None when it is not one."""
    if tree is None or tree[0] != "MeetingResponse:MeetingResponse" or type(tree[1]) is not list:
        return None
    store = target.state.store
    box = store.mailbox(record.user)
    out = []
    for node in children(tree):
        if node[0] != "MeetingResponse:Request" or type(node[1]) is not list:
            continue
        send = version.number < 160 or any(tag == "MeetingResponse:SendResponse" for tag, _ in children(node))
        request_id, status, calendar_id = respond_one(store, box, target.folder_ids, node, send)
        result = []
        if request_id is not None:
            result.append(("MeetingResponse:RequestId", request_id))
        result.append(("MeetingResponse:Status", str(status)))
        if calendar_id is not None:
            result.append(("MeetingResponse:CalendarId", calendar_id))
        out.append(("MeetingResponse:Result", result))
    return out or None


def handle(target, record, version, tree):
    """The Target's handler (handlers.py)."""
    out = respond(target, record, version, tree)
    if out is None:
        return target._error("MeetingResponse", version, 400, 103)
    return target._wbxml("MeetingResponse", encode(("MeetingResponse:MeetingResponse", out)), 1)
