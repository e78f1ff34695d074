"""Request builders and response parsers for the mail commands a device uses, sans-I/O.

Builders return WBXML bytes; a request that varies only in a few values is pre-encoded once as a
``_wbxml.Template`` (cached per shape: the set of optional elements present) and only the values
are spliced in.  Element order is the one MS-ASCMD gives (its request schemas, section 6, and its
examples, section 4); docs/protocol-notes.md "18. Mail commands" lists it with the status codes.

Parsers take the decoded tree (``_wbxml.decode``: ``(tag, content)`` tuples, tags "Page:Name"),
raise ValueError on a wrong root or a malformed tree, skip unknown children and never raise
anything else.  The command's root Status is read with ``commands.root_status`` where a parser
returns only the per-item results (MoveItems, MeetingResponse): the in-band re-provision statuses
140-145 (MS-ASCMD 2.2.2) come in the root.
"""

import base64
import time
from datetime import datetime, timezone
from email.utils import getaddresses
from typing import NamedTuple
from urllib.parse import quote

from _wbxml import Slot, Template, encode
from loadgen.eas.commands import AttachmentRef, root_status

MIME_CONTENT_TYPE = "message/rfc822"  # 12.x SendMail/SmartReply/SmartForward body (MS-ASCMD 2.2.1.17)

_NO_ITEMS = ()  # shared empty attachment list


def _int(text):
    if type(text) is not str:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _text(content):
    """An element's text: its string, "" when empty, None when it holds elements or opaque data."""
    if type(content) is str:
        return content
    if content is None or content == []:
        return ""
    return None


def _children(content):
    return content if type(content) is list else ()


def _bounded(cache, key, make, limit=512):
    found = cache.get(key)
    if found is None:
        if len(cache) >= limit:
            cache.clear()
        found = cache[key] = make()
    return found


def _guard(parse):
    """Any exception but ValueError from walking a malformed tree becomes a ValueError."""

    def guarded(tree, *args, **kwargs):
        try:
            return parse(tree, *args, **kwargs)
        except ValueError:
            raise
        except (TypeError, AttributeError, IndexError, KeyError) as exc:
            raise ValueError("malformed %s tree: %s" % (parse.__name__.lstrip("_"), exc)) from None

    guarded.__name__ = parse.__name__.lstrip("_")
    guarded.__doc__ = parse.__doc__
    return guarded


def eas_datetime(epoch_s, compact=False):
    """An MS-ASDTYPE date-time: ``YYYYMMDDTHHMMSSZ`` (compact: MS-ASCAL StartTime, EndTime, DtStamp)
    or ``YYYY-MM-DDTHH:MM:SS.000Z`` (MS-ASDTYPE 2.3: e-mail, tasks, ResolveRecipients), UTC."""
    moment = datetime.fromtimestamp(int(epoch_s), timezone.utc)
    return moment.strftime("%Y%m%dT%H%M%SZ" if compact else "%Y-%m-%dT%H:%M:%S.000Z")


# --------------------------------------------------------------------------- SendMail, SmartReply, SmartForward
#
# MS-ASCMD 2.2.1.17 SendMail (6.36: ClientId, AccountId, SaveInSentItems, Mime), 2.2.1.20 SmartReply
# (6.43) and 2.2.1.19 SmartForward (6.41): ClientId, Source{FolderId, ItemId | LongId, InstanceId},
# AccountId, SaveInSentItems, ReplaceMime, Mime.  Mime is OPAQUE (MS-ASCMD 2.2.3.109): the template
# holds a marker there, replaced by the message's bytes with their length (WBXML 1.3 5.8.4.6).

_MARK = b"\xffeasload-mime\xff"  # 0xFF never occurs in a UTF-8 slot value
_MARK_ENCODED = b"\xc3" + bytes([len(_MARK)]) + _MARK  # OPAQUE, mb_u_int32 length (< 128), data


def _mb(value):
    """WBXML mb_u_int32 (WBXML 1.3 5.1)."""
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:
        return bytes((0x80 | value >> 7, value & 0x7F))
    if value < 0x200000:
        return bytes((0x80 | value >> 14, 0x80 | (value >> 7) & 0x7F, value & 0x7F))
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


_TAIL = len(_MARK_ENCODED) + 2  # the marker, END of Mime, END of the root: Mime is the last child


def _with_mime(doc, mime):
    if type(mime) is not bytes:
        mime = mime.encode("utf-8") if type(mime) is str else bytes(mime)
    return b"".join((doc[:-_TAIL], b"\xc3", _mb(len(mime)), mime, b"\x01\x01"))


_COMPOSE_TEMPLATES = {}


def _compose_template(root, save, replace, source):
    """``source``: None (SendMail), "item" (FolderId + ItemId), "inbox" (ItemId only: MS-ASCMD
    2.2.3.93, FolderId may be left out for the Inbox), "long" (LongId), each + "+instance"."""

    def make():
        children = [("ComposeMail:ClientId", Slot("client_id"))]
        if source is not None:
            kind, _, instance = source.partition("+")
            src = []
            if kind == "long":
                src.append(("ComposeMail:LongId", Slot("long_id")))
            else:
                if kind == "item":
                    src.append(("ComposeMail:FolderId", Slot("folder_id")))
                src.append(("ComposeMail:ItemId", Slot("item_id")))
            if instance:
                src.append(("ComposeMail:InstanceId", Slot("instance_id")))
            children.append(("ComposeMail:Source", src))
        if save:
            children.append(("ComposeMail:SaveInSentItems", None))
        if replace:
            children.append(("ComposeMail:ReplaceMime", None))
        children.append(("ComposeMail:Mime", _MARK))
        return Template(("ComposeMail:" + root, children))

    return _bounded(_COMPOSE_TEMPLATES, (root, bool(save), bool(replace), source), make)


def send_mail(client_id, mime, save_in_sent=True):
    """SendMail (14.0+, MS-ASCMD 2.2.1.17): ClientId (unique per message, up to 40 characters: the
    server refuses a repeated one with Status 118), SaveInSentItems, Mime."""
    return _with_mime(_compose_template("SendMail", save_in_sent, False, None).render(str(client_id)), mime)


def _smart(root, client_id, mime, folder_id, item_id, save_in_sent, replace_mime, long_id, instance_id):
    values = [str(client_id)]
    if long_id:
        kind = "long"
        values.append(str(long_id))
    else:
        if item_id is None:
            raise ValueError("%s needs an item_id or a long_id" % root)
        if folder_id is not None:
            kind = "item"
            values.append(str(folder_id))
        else:
            kind = "inbox"
        values.append(str(item_id))
    if instance_id is not None:
        kind += "+instance"
        values.append(str(instance_id))
    return _with_mime(_compose_template(root, save_in_sent, replace_mime, kind).render(*values), mime)


def smart_reply(client_id, mime, folder_id, item_id, *, save_in_sent=True, replace_mime=False, long_id=None,
                instance_id=None):
    """SmartReply (14.0+, MS-ASCMD 2.2.1.20): Source{FolderId, ItemId} (FolderId None: the item is
    in the Inbox) or Source{LongId} (an item found by Search), ReplaceMime when the user edited the
    quoted text (the server then adds nothing of the original, MS-ASCMD 2.2.3.148)."""
    return _smart("SmartReply", client_id, mime, folder_id, item_id, save_in_sent, replace_mime, long_id, instance_id)


def smart_forward(client_id, mime, folder_id, item_id, *, save_in_sent=True, replace_mime=False, long_id=None,
                  instance_id=None):
    """SmartForward (14.0+, MS-ASCMD 2.2.1.19): as :func:`smart_reply`; without ReplaceMime the
    server attaches the original message's body and attachments."""
    return _smart("SmartForward", client_id, mime, folder_id, item_id, save_in_sent, replace_mime, long_id,
                  instance_id)


def legacy_query(save_in_sent=True, item_id=None, collection_id=None, long_id=None):
    """The extra plain-query parameters of a 12.x SendMail/SmartReply/SmartForward, whose body is the
    raw MIME (Content-Type ``message/rfc822``): ``&SaveInSent=T``, ``&ItemId=``, ``&CollectionId=``,
    ``&LongId=`` (MS-ASHTTP 2.2.1.1.1.1), to append after ``Cmd=<command>``.  Each value is
    percent-encoded exactly once (RFC 3986 2.1: ':' and '%' in an id become %3A and %25)."""
    out = []
    if save_in_sent:
        out.append("&SaveInSent=T")
    if item_id is not None:
        out.append("&ItemId=" + quote(str(item_id), safe=""))
    if collection_id is not None:
        out.append("&CollectionId=" + quote(str(collection_id), safe=""))
    if long_id is not None:
        out.append("&LongId=" + quote(str(long_id), safe=""))
    return "".join(out)


_COMPOSE_ROOTS = frozenset(("ComposeMail:SendMail", "ComposeMail:SmartReply", "ComposeMail:SmartForward"))

MESSAGE_PREVIOUSLY_SENT = 118  # MS-ASCMD 2.2.2 common status: a repeated ClientId


@_guard
def _parse_compose(tree):
    """The Status of a SendMail/SmartReply/SmartForward answer; None for success (an empty body,
    or a root without Status).  118 = message previously sent (a repeated ClientId)."""
    if tree is None:
        return None
    if tree[0] not in _COMPOSE_ROOTS:
        raise ValueError("not a SendMail/SmartReply/SmartForward response: root %r" % (tree[0],))
    return root_status(tree)


parse_compose = _parse_compose


# --------------------------------------------------------------------------- Sync (MS-ASCMD 2.2.1.21)

class Change(NamedTuple):
    """A client Change (MS-ASCMD 2.2.3.24): ServerId, ApplicationData."""

    server_id: str
    data: list


class Delete(NamedTuple):
    """A client Delete (MS-ASCMD 2.2.1.21): ServerId (moved to Deleted Items when the collection
    has DeletesAsMoves)."""

    server_id: str


class Add(NamedTuple):
    """A client Add (MS-ASCMD 2.2.3.7.2): ClientId (the device's temporary id), ApplicationData."""

    client_id: str
    data: list


class Fetch(NamedTuple):
    """A client Fetch (MS-ASCMD 2.2.1.21): ServerId."""

    server_id: str


ClientCommand = (Change, Delete, Add, Fetch)


def email_read(read=True):
    """ApplicationData of a Change marking a message read (1) or unread (0) (MS-ASEMAIL 2.2.2.58)."""
    return [("Email:Read", "1" if read else "0")]


FLAG_CLEAR, FLAG_COMPLETE, FLAG_ACTIVE = 0, 1, 2  # MS-ASEMAIL 2.2.2.74 Flag/Status


def email_flag(status, at=None):
    """ApplicationData of a Change setting a message's flag (MS-ASEMAIL 3.1.5.4.1, 3.2.5.4.2):
    2 active: Status, FlagType "Flag for follow up", tasks:StartDate, UtcStartDate, DueDate,
    UtcDueDate; 1 complete: Status, CompleteTime, tasks:DateCompleted; 0 clear: an empty Flag.
    ``at``: epoch seconds of the dates (default now)."""
    status = int(status)
    if status == FLAG_CLEAR:
        return [("Email:Flag", None)]
    when = eas_datetime(time.time() if at is None else at)
    if status == FLAG_COMPLETE:
        return [("Email:Flag", [("Email:Status", "1"), ("Email:CompleteTime", when), ("Tasks:DateCompleted", when)])]
    if status == FLAG_ACTIVE:
        return [("Email:Flag", [
            ("Email:Status", "2"), ("Email:FlagType", "Flag for follow up"), ("Tasks:StartDate", when),
            ("Tasks:UtcStartDate", when), ("Tasks:DueDate", when), ("Tasks:UtcDueDate", when)])]
    raise ValueError("flag status must be 0, 1 or 2, not %r" % (status,))


# TIME_ZONE_INFORMATION of UTC (MS-ASDTYPE 2.7.4: 172 bytes, base64): bias 0, no daylight rule
UTC_TIMEZONE = base64.b64encode(bytes(172)).decode("ascii")


def calendar_item(subject, start, end, location=None, uid=None, busy=2, reminder=None, at=None):
    """ApplicationData of a client Add of an appointment (MS-ASCAL 2.2.2): Timezone (UTC),
    AllDayEvent 0, BusyStatus (0 free, 1 tentative, 2 busy, 3 out of office), DtStamp, EndTime,
    Location, Reminder (minutes), Sensitivity 0, Subject, StartTime, UID, MeetingStatus 0 (an
    appointment).  ``start``/``end``/``at`` epoch seconds; dates in the compact form.  Location is
    calendar:Location (12.0-14.1; 16.x uses airsyncbase:Location)."""
    data = [("Calendar:Timezone", UTC_TIMEZONE), ("Calendar:AllDayEvent", "0"), ("Calendar:BusyStatus", str(int(busy))),
            ("Calendar:DtStamp", eas_datetime(time.time() if at is None else at, True)),
            ("Calendar:EndTime", eas_datetime(end, True))]
    if location:
        data.append(("Calendar:Location", location))
    if reminder is not None:
        data.append(("Calendar:Reminder", str(int(reminder))))
    data += [("Calendar:Sensitivity", "0"), ("Calendar:Subject", subject), ("Calendar:StartTime", eas_datetime(start, True))]
    if uid:
        data.append(("Calendar:UID", uid))
    data.append(("Calendar:MeetingStatus", "0"))
    return data


def contact_item(first, last, email, phone=None, company=None):
    """ApplicationData of a client Add of a contact (MS-ASCNTC 2.2.2): CompanyName, Email1Address,
    FileAs ("Last, First"), FirstName, LastName, MobilePhoneNumber."""
    data = []
    if company:
        data.append(("Contacts:CompanyName", company))
    data += [("Contacts:Email1Address", email), ("Contacts:FileAs", "%s, %s" % (last, first) if last else first),
             ("Contacts:FirstName", first), ("Contacts:LastName", last)]
    if phone:
        data.append(("Contacts:MobilePhoneNumber", phone))
    return data


def task_item(subject, due=None):
    """ApplicationData of a client Add of a task (MS-ASTASK 2.2.2): Complete 0, DueDate and
    UtcDueDate (both or neither), Importance 1, Subject."""
    data = [("Tasks:Complete", "0")]
    if due is not None:
        when = eas_datetime(due)
        data += [("Tasks:DueDate", when), ("Tasks:UtcDueDate", when)]
    data += [("Tasks:Importance", "1"), ("Tasks:Subject", subject)]
    return data


class SyncCollection(NamedTuple):
    """One collection of a Sync request (MS-ASCMD 2.2.3.29.2).  ``truncation`` in bytes (None: the
    whole body); ``body_type`` None leaves BodyPreference out; ``commands``: Change/Delete/Add/Fetch."""

    collection_id: str
    sync_key: str
    get_changes: bool = True
    window_size: int | None = None
    filter_type: int | None = None
    body_type: int | None = None
    truncation: int | None = None
    deletes_as_moves: bool = True
    commands: tuple = ()


def _command_element(command):
    kind = type(command)
    if kind is Change:
        return ("AirSync:Change", [("AirSync:ServerId", command.server_id), ("AirSync:ApplicationData", list(command.data))])
    if kind is Delete:
        return ("AirSync:Delete", [("AirSync:ServerId", command.server_id)])
    if kind is Add:
        return ("AirSync:Add", [("AirSync:ClientId", command.client_id), ("AirSync:ApplicationData", list(command.data))])
    if kind is Fetch:
        return ("AirSync:Fetch", [("AirSync:ServerId", command.server_id)])
    raise ValueError("not a Sync client command: %r" % (command,))


def _collection_element(c, sync_key, collection_id, with_commands):
    """Collection children in the order of MS-ASCMD 6.45 (SyncRequest.xsd): SyncKey, CollectionId,
    DeletesAsMoves, GetChanges, WindowSize, Options, Commands.  SyncKey "0" (MS-ASCMD 2.2.3.181.4:
    the first Sync of a folder) gets only SyncKey and CollectionId."""
    children = [("AirSync:SyncKey", sync_key), ("AirSync:CollectionId", collection_id)]
    if c.sync_key == "0":
        return ("AirSync:Collection", children)
    children.append(("AirSync:DeletesAsMoves", "1" if c.deletes_as_moves else "0"))
    # GetChanges is TRUE when present without a value (MS-ASCMD 2.2.3.84): "0" only to turn it off
    children.append(("AirSync:GetChanges", None if c.get_changes else "0"))
    if c.window_size is not None:
        children.append(("AirSync:WindowSize", str(int(c.window_size))))
    options = []
    if c.filter_type is not None:
        options.append(("AirSync:FilterType", str(int(c.filter_type))))
    if c.body_type is not None:
        preference = [("AirSyncBase:Type", str(int(c.body_type)))]
        if c.truncation is not None and c.truncation >= 0:
            preference.append(("AirSyncBase:TruncationSize", str(int(c.truncation))))
        options.append(("AirSyncBase:BodyPreference", preference))
        if int(c.body_type) == 4:  # MIME: MIMESupport 2, MIME for every message (MS-ASCMD 2.2.3.110.3)
            options.append(("AirSync:MIMESupport", "2"))
    if options:
        children.append(("AirSync:Options", options))
    if with_commands and c.commands:
        children.append(("AirSync:Commands", [_command_element(cmd) for cmd in c.commands]))
    return ("AirSync:Collection", children)


def _sync_tree(collections, window_size, values, wait=None, heartbeat=None):
    root = [("AirSync:Collections", [
        _collection_element(c, *value, True) for c, value in zip(collections, values)])]
    # a held Sync: Wait (minutes, 1-59, MS-ASCMD 2.2.3.198) or HeartbeatInterval (seconds, 14.0+,
    # MS-ASCMD 2.2.3.88.2), never both (Status 4); after Collections, before WindowSize (schema 6.45)
    if wait is not None:
        root.append(("AirSync:Wait", str(int(wait))))
    elif heartbeat is not None:
        root.append(("AirSync:HeartbeatInterval", str(int(heartbeat))))
    if window_size is not None:  # the request-wide limit (14.0+, MS-ASCMD 2.2.3.199)
        root.append(("AirSync:WindowSize", str(int(window_size))))
    return ("AirSync:Sync", root)


_SYNC_TEMPLATES = {}


def sync_request(collections, window_size=None, wait=None, heartbeat=None):
    """A Sync of several collections in one request (MS-ASCMD 2.2.1.21).  Without client commands
    the document is a Template per shape (the collections' options), with commands it is encoded.
    ``wait`` (minutes) or ``heartbeat`` (seconds): the server may hold the answer that long when
    nothing changes (MS-ASCMD 3.1.5.4; ``wait`` wins when both are given)."""
    if wait is not None:
        heartbeat = None
    values = []
    shape = []
    commands_ = False
    for c in collections:
        sync_key, collection_id = c[1], c[0]
        values.append(sync_key if type(sync_key) is str else str(sync_key))
        values.append(collection_id if type(collection_id) is str else str(collection_id))
        initial = sync_key == "0"
        if c[8] and not initial:
            commands_ = True
        shape.append((initial, c[2:8]))  # get_changes .. deletes_as_moves
    if not values:
        raise ValueError("a Sync request needs at least one collection")
    collections = tuple(collections)
    if commands_:
        return encode(_sync_tree(collections, window_size, list(zip(values[::2], values[1::2])), wait, heartbeat))
    key = (tuple(shape), window_size, wait, heartbeat)
    template = _SYNC_TEMPLATES.get(key)
    if template is None:
        template = _bounded(_SYNC_TEMPLATES, key, lambda: Template(_sync_tree(
            collections, window_size, [(Slot("key%d" % i), Slot("id%d" % i)) for i in range(len(collections))],
            wait, heartbeat)))
    return template.render(*values)


class AddedItem(NamedTuple):
    """An item a Sync answer adds (MS-ASCMD 2.2.3.7.2; MS-ASEMAIL, MS-ASCAL, MS-ASTASK fields).

    ``to``/``cc``: the raw Email:To / Email:Cc strings ("" when absent); ``attachments``: AttachmentRef
    (a shared empty tuple when none); ``kind``: "to", "cc" or "bcc" -- where the own address was
    found -- when ``parse_sync_all`` was given ``own_address``, else None."""

    server_id: str
    subject: str | None
    message_class: str | None
    read: bool
    to: str
    cc: str
    attachments: tuple
    truncated: bool
    kind: str | None = None


class ItemResponse(NamedTuple):
    """A Responses entry (MS-ASCMD 2.2.3.154): the server's answer to one client command; ``kind``
    is "Add", "Change", "Delete" or "Fetch"."""

    kind: str
    client_id: str | None
    server_id: str | None
    status: int | None


class CollectionResult(NamedTuple):
    collection_id: str | None
    status: int | None
    sync_key: str | None
    more_available: bool
    added: list  # [AddedItem]
    changed: list  # server ids
    deleted: list  # server ids (Delete and SoftDelete)
    responses: list  # [ItemResponse]


class SyncAll(NamedTuple):
    """A Sync answer: ``status`` the root Status (errors only; 1 when absent or for an empty body,
    None when it is not a number; MS-ASCMD 2.2.3.177.17), ``collections`` in answer order."""

    status: int | None
    collections: list
    limit: int | None = None  # Status 14: the allowed Wait / HeartbeatInterval bound (MS-ASCMD 2.2.3.97)


_SUBJECTS = frozenset(("Email:Subject", "Calendar:Subject", "Tasks:Subject"))


_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~.@")  # RFC 5322 atext, '.', '@'
_DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.@_")


def _address_in(own, raw):
    """Whether ``own`` (lowercased) is one of the addr-specs of a To/Cc string: found with no
    address character either side of it (so ``xbob@`` or ``@example.com.evil`` do not count);
    a string with quotes (a display name could hold the address) is parsed with getaddresses."""
    low = raw.lower()
    at = low.find(own)
    if at < 0:
        return False
    if '"' in raw:
        return any(addr.strip().lower() == own for _name, addr in getaddresses([raw]))
    end = len(own)
    while at >= 0:
        if (at == 0 or low[at - 1] not in _LOCAL_CHARS) and (
                at + end == len(low) or low[at + end] not in _DOMAIN_CHARS):
            return True
        at = low.find(own, at + 1)
    return False


def _added_item(content, own):
    server_id = None
    data = None
    for tag, value in _children(content):
        if tag == "AirSync:ServerId":
            if server_id is None:
                server_id = _text(value)
        elif tag == "AirSync:ApplicationData":
            data = value
    subject = message_class = None
    read = truncated = False
    to = cc = ""
    attachments = _NO_ITEMS
    for tag, value in _children(data):
        if tag in _SUBJECTS:
            if subject is None:
                subject = _text(value)
        elif tag == "Email:MessageClass":
            message_class = _text(value)
        elif tag == "Email:Read":
            read = value == "1"
        elif tag == "Email:To":
            to = _text(value) or ""
        elif tag == "Email:Cc":
            cc = _text(value) or ""
        elif tag == "AirSyncBase:Attachments" and type(value) is list and server_id:
            for atag, avalue in value:
                if atag != "AirSyncBase:Attachment":
                    continue
                ref = size = None
                for ftag, fvalue in _children(avalue):
                    if ftag == "AirSyncBase:FileReference":
                        ref = _text(fvalue)
                    elif ftag == "AirSyncBase:EstimatedDataSize":
                        size = _int(fvalue)
                if ref:
                    if attachments is _NO_ITEMS:
                        attachments = []
                    attachments.append(AttachmentRef(server_id, ref, size))
        elif tag == "AirSyncBase:Body":
            for btag, bvalue in _children(value):
                if btag == "AirSyncBase:Truncated":
                    truncated = bvalue in ("1", "true")
    kind = None
    if own:
        kind = "to" if to and _address_in(own, to) else "cc" if cc and _address_in(own, cc) else "bcc"
    return AddedItem(server_id or "", subject, message_class, read, to, cc, attachments, truncated, kind)


def _server_id(content):
    for tag, value in _children(content):
        if tag == "AirSync:ServerId":
            return _text(value)
    return None


def _item_response(kind, content):
    client_id = server_id = status = None
    for tag, value in _children(content):
        if tag == "AirSync:ClientId":
            client_id = _text(value)
        elif tag == "AirSync:ServerId":
            server_id = _text(value)
        elif tag == "AirSync:Status":
            status = _int(value)
    return ItemResponse(kind, client_id, server_id, status)


_RESPONSE_KINDS = {"AirSync:Add": "Add", "AirSync:Change": "Change", "AirSync:Delete": "Delete", "AirSync:Fetch": "Fetch"}


def _collection_result(content, own):
    collection_id = status = sync_key = None
    more = False
    added, changed, deleted, responses = [], [], [], []
    for tag, value in _children(content):
        if tag == "AirSync:SyncKey":
            if sync_key is None:
                sync_key = _text(value)
        elif tag == "AirSync:CollectionId":
            if collection_id is None:
                collection_id = _text(value)
        elif tag == "AirSync:Status":
            if status is None:
                status = _int(value)
        elif tag == "AirSync:MoreAvailable":
            more = True
        elif tag == "AirSync:Commands":
            for ctag, cvalue in _children(value):
                if ctag == "AirSync:Add":
                    added.append(_added_item(cvalue, own))
                elif ctag == "AirSync:Change":
                    sid = _server_id(cvalue)
                    if sid:
                        changed.append(sid)
                elif ctag in ("AirSync:Delete", "AirSync:SoftDelete"):
                    sid = _server_id(cvalue)
                    if sid:
                        deleted.append(sid)
        elif tag == "AirSync:Responses":
            for rtag, rvalue in _children(value):
                kind = _RESPONSE_KINDS.get(rtag)
                if kind is not None:
                    responses.append(_item_response(kind, rvalue))
    return CollectionResult(collection_id, status, sync_key, more, added, changed, deleted, responses)


@_guard
def _parse_sync_all(tree, own_address=None):
    """A Sync answer with every collection (MS-ASCMD 2.2.1.21).  An empty body (``tree`` None) is
    status 1 and no collections.  With ``own_address`` each added item's ``kind`` tells whether the
    address is in its To, its Cc or neither (Bcc)."""
    if tree is None:
        return SyncAll(1, [])
    if tree[0] != "AirSync:Sync":
        raise ValueError("not a Sync response: root %r" % (tree[0],))
    own = own_address.strip().lower() if own_address else None
    status = 1  # absent: no Sync-level error
    seen_status = False
    collections = []
    limit = None
    for tag, value in _children(tree[1]):
        if tag == "AirSync:Status":
            if not seen_status:
                seen_status = True
                status = _int(value)  # None when it is not a number
        elif tag == "AirSync:Collections":
            for ctag, cvalue in _children(value):
                if ctag == "AirSync:Collection":
                    collections.append(_collection_result(cvalue, own))
        elif tag == "AirSync:Limit":
            limit = _int(value)
    return SyncAll(status, collections, limit)


parse_sync_all = _parse_sync_all


# --------------------------------------------------------------------------- MoveItems (MS-ASCMD 2.2.1.12)

_MOVE_ONE = Template(("Move:MoveItems", [("Move:Move", [
    ("Move:SrcMsgId", Slot("src_msg")), ("Move:SrcFldId", Slot("src_fld")), ("Move:DstFldId", Slot("dst_fld"))])]))


def move_items(moves):
    """MoveItems (MS-ASCMD 2.2.1.12, 6.27): Move{SrcMsgId, SrcFldId, DstFldId} per (message,
    source folder, destination folder)."""
    moves = [tuple(str(v) for v in move) for move in moves]
    if not moves:
        raise ValueError("MoveItems needs at least one move")
    if len(moves) == 1:
        return _MOVE_ONE.render(*moves[0])
    return encode(("Move:MoveItems", [("Move:Move", [
        ("Move:SrcMsgId", src), ("Move:SrcFldId", fld), ("Move:DstFldId", dst)]) for src, fld, dst in moves]))


MOVE_SUCCESS = 3  # MS-ASCMD 2.2.3.177.10


class MoveResult(NamedTuple):
    src_msg_id: str | None
    status: int | None  # 3 success; 1 invalid source, 2 invalid destination, 4 same folder, ...
    dst_msg_id: str | None


@_guard
def _parse_move_items(tree):
    """The Response entries of a MoveItems answer, in order (MS-ASCMD 6.28): SrcMsgId, Status,
    DstMsgId.  The root Status of a failed command: ``commands.root_status(tree)``."""
    if tree is None or tree[0] != "Move:MoveItems":
        raise ValueError("not a MoveItems response: root %r" % (tree and tree[0],))
    results = []
    for tag, value in _children(tree[1]):
        if tag != "Move:Response":
            continue
        src = dst = status = None
        for rtag, rvalue in _children(value):
            if rtag == "Move:SrcMsgId":
                src = _text(rvalue)
            elif rtag == "Move:Status":
                status = _int(rvalue)
            elif rtag == "Move:DstMsgId":
                dst = _text(rvalue)
        results.append(MoveResult(src, status, dst))
    return results


parse_move_items = _parse_move_items


# --------------------------------------------------------------------------- MeetingResponse (MS-ASCMD 2.2.1.11)

ACCEPT, TENTATIVE, DECLINE = 1, 2, 3  # UserResponse (MS-ASCMD 2.2.3.194)

_MEETING = Template(("MeetingResponse:MeetingResponse", [("MeetingResponse:Request", [
    ("MeetingResponse:UserResponse", Slot("response")), ("MeetingResponse:CollectionId", Slot("collection")),
    ("MeetingResponse:RequestId", Slot("request"))])]))
_MEETING_INSTANCE = Template(("MeetingResponse:MeetingResponse", [("MeetingResponse:Request", [
    ("MeetingResponse:UserResponse", Slot("response")), ("MeetingResponse:CollectionId", Slot("collection")),
    ("MeetingResponse:RequestId", Slot("request")), ("MeetingResponse:InstanceId", Slot("instance"))])]))


def meeting_response(user_response, collection_id, request_id, instance_id=None):
    """MeetingResponse (MS-ASCMD 2.2.1.11, 6.25): Request{UserResponse (1 accept, 2 tentative,
    3 decline), CollectionId (the folder of the request, usually the Inbox), RequestId (its
    ServerId), InstanceId (one occurrence; 14.1+)}."""
    response = int(user_response)
    if response not in (ACCEPT, TENTATIVE, DECLINE):
        raise ValueError("UserResponse must be 1, 2 or 3, not %r" % (user_response,))
    if instance_id is None:
        return _MEETING.render(str(response), str(collection_id), str(request_id))
    return _MEETING_INSTANCE.render(str(response), str(collection_id), str(request_id), str(instance_id))


class MeetingResult(NamedTuple):
    request_id: str | None
    status: int | None  # 1 success, 2 invalid request, 3 mailbox error, 4 server error (MS-ASCMD 2.2.1.11)
    calendar_id: str | None  # the calendar item's ServerId (accepted or tentative)


@_guard
def _parse_meeting_response(tree):
    """The Result entries of a MeetingResponse answer (MS-ASCMD 6.26): RequestId, Status, CalendarId."""
    if tree is None or tree[0] != "MeetingResponse:MeetingResponse":
        raise ValueError("not a MeetingResponse response: root %r" % (tree and tree[0],))
    results = []
    for tag, value in _children(tree[1]):
        if tag != "MeetingResponse:Result":
            continue
        request = status = calendar = None
        for rtag, rvalue in _children(value):
            if rtag == "MeetingResponse:RequestId":
                request = _text(rvalue)
            elif rtag == "MeetingResponse:Status":
                status = _int(rvalue)
            elif rtag == "MeetingResponse:CalendarId":
                calendar = _text(rvalue)
        results.append(MeetingResult(request, status, calendar))
    return results


parse_meeting_response = _parse_meeting_response


# --------------------------------------------------------------------------- Search (MS-ASCMD 2.2.1.16)

_SEARCH_GAL = Template(("Search:Search", [("Search:Store", [
    ("Search:Name", "GAL"), ("Search:Query", Slot("query")), ("Search:Options", [("Search:Range", Slot("range"))])])]))


def search_gal(query, range_="0-9"):
    """Search of the Global Address List (MS-ASCMD 2.2.1.16, example 4.13.1): Store{Name "GAL",
    Query (a prefix), Options{Range}} -- a phone's look-up while the user types an address."""
    return _SEARCH_GAL.render(str(query), str(range_))


_SEARCH_MAILBOX_TEMPLATES = {}


def search_mailbox(query, collection_id=None, range_="0-9", body_type=None, truncation=None):
    """Search of the mailbox (MS-ASCMD 2.2.1.16, example 4.12.1.1): Store{Name "Mailbox",
    Query{And{airsync:Class "Email", airsync:CollectionId, FreeText}}, Options{RebuildResults,
    Range, DeepTraversal (with a folder: its subfolders too), airsyncbase:BodyPreference}}."""
    folder = collection_id is not None
    preference = None
    if body_type is not None:
        preference = (str(int(body_type)), None if truncation is None or truncation < 0 else str(int(truncation)))

    def make():
        conditions = [("AirSync:Class", "Email")]
        if folder:
            conditions.append(("AirSync:CollectionId", Slot("collection")))
        conditions.append(("Search:FreeText", Slot("query")))
        options = [("Search:RebuildResults", None), ("Search:Range", Slot("range"))]
        if folder:
            options.append(("Search:DeepTraversal", None))
        if preference is not None:
            pref = [("AirSyncBase:Type", preference[0])]
            if preference[1] is not None:
                pref.append(("AirSyncBase:TruncationSize", preference[1]))
            options.append(("AirSyncBase:BodyPreference", pref))
        return Template(("Search:Search", [("Search:Store", [
            ("Search:Name", "Mailbox"), ("Search:Query", [("Search:And", conditions)]), ("Search:Options", options)])]))

    template = _bounded(_SEARCH_MAILBOX_TEMPLATES, (folder, preference), make)
    values = [str(collection_id)] if folder else []
    values += [str(query), str(range_)]
    return template.render(*values)


class SearchResult(NamedTuple):
    status: int | None  # the Search Status (MS-ASCMD 2.2.1.16: 1 success, 2 invalid request, ...)
    store_status: int | None  # the Store's Status
    total: int | None  # Total: the server's estimate of the matches
    results: int  # Result elements with content (an empty Result means no match)
    range_: str | None  # the Range returned


@_guard
def _parse_search(tree):
    """A Search answer (MS-ASCMD 6.35): Search{Status, Response{Store{Status, Result*, Range, Total}}}."""
    if tree is None or tree[0] != "Search:Search":
        raise ValueError("not a Search response: root %r" % (tree and tree[0],))
    status = store_status = total = range_ = None
    results = 0
    for tag, value in _children(tree[1]):
        if tag == "Search:Status":
            if status is None:
                status = _int(value)
        elif tag == "Search:Response":
            for rtag, rvalue in _children(value):
                if rtag != "Search:Store":
                    continue
                for stag, svalue in _children(rvalue):
                    if stag == "Search:Status":
                        store_status = _int(svalue)
                    elif stag == "Search:Result":
                        if type(svalue) is list and svalue:
                            results += 1
                    elif stag == "Search:Total":
                        total = _int(svalue)
                    elif stag == "Search:Range":
                        range_ = _text(svalue)
    return SearchResult(status, store_status, total, results, range_)


parse_search = _parse_search


# --------------------------------------------------------------------------- ResolveRecipients (MS-ASCMD 2.2.1.15)

def resolve_recipients(to, availability=None, max_ambiguous=None):
    """ResolveRecipients (MS-ASCMD 2.2.1.15, 6.31): To (1..100 with Availability), Options{
    MaxAmbiguousRecipients, Availability{StartTime, EndTime}} -- ``availability`` (start, end)
    epoch seconds asks for free/busy (14.0+; the span at least 30 minutes, MS-ASCMD 2.2.3.61.1)."""
    children = [("ResolveRecipients:To", str(address)) for address in to]
    if not children:
        raise ValueError("ResolveRecipients needs at least one To")
    options = []
    if max_ambiguous is not None:
        options.append(("ResolveRecipients:MaxAmbiguousRecipients", str(int(max_ambiguous))))
    if availability is not None:
        start, end = availability
        options.append(("ResolveRecipients:Availability", [
            ("ResolveRecipients:StartTime", eas_datetime(start)), ("ResolveRecipients:EndTime", eas_datetime(end))]))
    if options:
        children.append(("ResolveRecipients:Options", options))
    return encode(("ResolveRecipients:ResolveRecipients", children))


class ResolveResult(NamedTuple):
    status: int | None  # the command's Status (MS-ASCMD 2.2.3.177.12)
    per_to: list  # [(to, status, recipient_count, availability_status)]


@_guard
def _parse_resolve_recipients(tree):
    """A ResolveRecipients answer (MS-ASCMD 6.32): Status, Response*{To, Status, RecipientCount,
    Recipient*{Type, DisplayName, EmailAddress, Availability{Status, MergedFreeBusy}}};
    ``availability_status`` is the first Recipient's Availability Status (None without one)."""
    if tree is None or tree[0] != "ResolveRecipients:ResolveRecipients":
        raise ValueError("not a ResolveRecipients response: root %r" % (tree and tree[0],))
    status = None
    per_to = []
    for tag, value in _children(tree[1]):
        if tag == "ResolveRecipients:Status":
            if status is None:
                status = _int(value)
        elif tag == "ResolveRecipients:Response":
            to = rstatus = count = free_busy = None
            for rtag, rvalue in _children(value):
                if rtag == "ResolveRecipients:To":
                    to = _text(rvalue)
                elif rtag == "ResolveRecipients:Status":
                    rstatus = _int(rvalue)
                elif rtag == "ResolveRecipients:RecipientCount":
                    count = _int(rvalue)
                elif rtag == "ResolveRecipients:Recipient" and free_busy is None:
                    for ptag, pvalue in _children(rvalue):
                        if ptag == "ResolveRecipients:Availability":
                            for atag, avalue in _children(pvalue):
                                if atag == "ResolveRecipients:Status":
                                    free_busy = _int(avalue)
                                    break
            per_to.append((to, rstatus, count, free_busy))
    return ResolveResult(status, per_to)


parse_resolve_recipients = _parse_resolve_recipients


# --------------------------------------------------------------------------- GetItemEstimate (MS-ASCMD 2.2.1.9)

def get_item_estimate(collections, version_number):
    """GetItemEstimate (MS-ASCMD 2.2.1.9, 6.20) of (sync_key, collection_id, filter_type[, class])
    tuples.  14.0+ (``version_number`` >= 140): Collection{airsync:SyncKey, CollectionId,
    airsync:Options{airsync:FilterType, airsync:Class}} (example 4.9.1; Options only with a
    filter or a class).  12.x: Collection{Class (default "Email"), CollectionId,
    airsync:FilterType (default 0), airsync:SyncKey}."""
    entries = []
    for entry in collections:
        sync_key, collection_id, filter_type = entry[0], entry[1], entry[2]
        cls = entry[3] if len(entry) > 3 else None
        if version_number >= 140:
            children = [("AirSync:SyncKey", str(sync_key)), ("GetItemEstimate:CollectionId", str(collection_id))]
            options = []
            if filter_type is not None:
                options.append(("AirSync:FilterType", str(int(filter_type))))
            if cls:
                options.append(("AirSync:Class", cls))
            if options:
                children.append(("AirSync:Options", options))
        else:
            children = [("GetItemEstimate:Class", cls or "Email"), ("GetItemEstimate:CollectionId", str(collection_id)),
                        ("AirSync:FilterType", str(int(filter_type or 0))), ("AirSync:SyncKey", str(sync_key))]
        entries.append(("GetItemEstimate:Collection", children))
    if not entries:
        raise ValueError("GetItemEstimate needs at least one collection")
    return encode(("GetItemEstimate:GetItemEstimate", [("GetItemEstimate:Collections", entries)]))


class EstimateResult(NamedTuple):
    status: int | None  # the root Status (errors), else None
    collections: list  # [(collection_id, status, estimate)]: status 1 success, 2 invalid collection,
    # 3 sync state not primed, 4 invalid sync key (MS-ASCMD 2.2.3.177.7)


@_guard
def _parse_get_item_estimate(tree):
    """A GetItemEstimate answer (MS-ASCMD 6.21): Status?, Response*{Status, Collection{CollectionId,
    Estimate}}."""
    if tree is None or tree[0] != "GetItemEstimate:GetItemEstimate":
        raise ValueError("not a GetItemEstimate response: root %r" % (tree and tree[0],))
    status = None
    found = []
    for tag, value in _children(tree[1]):
        if tag == "GetItemEstimate:Status":
            if status is None:
                status = _int(value)
        elif tag == "GetItemEstimate:Response":
            rstatus = collection_id = estimate = None
            for rtag, rvalue in _children(value):
                if rtag == "GetItemEstimate:Status":
                    rstatus = _int(rvalue)
                elif rtag == "GetItemEstimate:Collection":
                    for ctag, cvalue in _children(rvalue):
                        if ctag == "GetItemEstimate:CollectionId":
                            collection_id = _text(cvalue)
                        elif ctag == "GetItemEstimate:Estimate":
                            estimate = _int(cvalue)
            found.append((collection_id, rstatus, estimate))
    return EstimateResult(status, found)


parse_get_item_estimate = _parse_get_item_estimate


# --------------------------------------------------------------------------- Settings (MS-ASCMD 2.2.1.18)

_OOF_GET = Template(("Settings:Settings", [("Settings:Oof", [("Settings:Get", [("Settings:BodyType", "Text")])])]))
_USER_INFORMATION = Template(("Settings:Settings", [("Settings:UserInformation", [("Settings:Get", None)])]))
_OOF_OFF = Template(("Settings:Settings", [("Settings:Oof", [("Settings:Set", [("Settings:OofState", "0")])])]))
_OOF_ON = Template(("Settings:Settings", [("Settings:Oof", [("Settings:Set", [("Settings:OofState", "1")] + [
    ("Settings:OofMessage", [(audience, None), ("Settings:Enabled", "1"), ("Settings:ReplyMessage", Slot(audience)),
                             ("Settings:BodyType", "Text")])
    for audience in ("Settings:AppliesToInternal", "Settings:AppliesToExternalKnown", "Settings:AppliesToExternalUnknown")
])])]))


def settings_oof_get():
    """Settings Oof Get (MS-ASCMD 2.2.3.122): Oof{Get{BodyType "Text"}}."""
    return _OOF_GET.render()


def settings_oof_set(enabled, message=""):
    """Settings Oof Set (MS-ASCMD 2.2.3.122, 6.39): OofState 1 (global) with one OofMessage per
    audience (AppliesToInternal, AppliesToExternalKnown, AppliesToExternalUnknown: Enabled,
    ReplyMessage, BodyType), or OofState 0."""
    if not enabled:
        return _OOF_OFF.render()
    message = str(message)
    return _OOF_ON.render(message, message, message)


def settings_user_information():
    """Settings UserInformation Get (MS-ASCMD 2.2.1.18): the user's addresses."""
    return _USER_INFORMATION.render()


class SettingsResult(NamedTuple):
    status: int | None  # the Settings Status (MS-ASCMD 2.2.3.177.15)
    oof_status: int | None  # the Oof element's Status
    oof_state: int | None  # Oof/Get/OofState: 0 disabled, 1 global, 2 time based
    user_status: int | None  # the UserInformation element's Status


@_guard
def _parse_settings(tree):
    """A Settings answer (MS-ASCMD 6.40): Status, Oof{Status, Get{OofState, ...}},
    UserInformation{Status, Get{...}}."""
    if tree is None or tree[0] != "Settings:Settings":
        raise ValueError("not a Settings response: root %r" % (tree and tree[0],))
    status = oof_status = oof_state = user_status = None
    for tag, value in _children(tree[1]):
        if tag == "Settings:Status":
            if status is None:
                status = _int(value)
        elif tag == "Settings:Oof":
            for otag, ovalue in _children(value):
                if otag == "Settings:Status":
                    oof_status = _int(ovalue)
                elif otag == "Settings:Get":
                    for gtag, gvalue in _children(ovalue):
                        if gtag == "Settings:OofState":
                            oof_state = _int(gvalue)
        elif tag == "Settings:UserInformation":
            for utag, uvalue in _children(value):
                if utag == "Settings:Status":
                    user_status = _int(uvalue)
    return SettingsResult(status, oof_status, oof_state, user_status)


parse_settings = _parse_settings


# --------------------------------------------------------------------------- Ping (MS-ASCMD 2.2.1.13)

PING_CLASSES = ("Email", "Calendar", "Contacts", "Tasks", "Notes")  # Ping Class values (MS-ASCMD 2.2.1.13)
_PING_TEMPLATES = {}


def ping_folders(heartbeat_s, folders):
    """A Ping over several folders (MS-ASCMD 2.2.1.13): HeartbeatInterval, Folders{Folder{Id,
    Class}*}; ``folders``: (folder id, class) pairs.  A Status 6 answer gives MaxFolders
    (``commands.parse_ping``): the device then pings at most that many."""
    ids = [str(int(heartbeat_s))]
    classes = []
    for fid, cls in folders:
        ids.append(fid if type(fid) is str else str(fid))
        classes.append(cls)
    key = tuple(classes)
    template = _PING_TEMPLATES.get(key)
    if template is None:
        if not key:
            raise ValueError("a Ping needs at least one folder")
        template = _bounded(_PING_TEMPLATES, key, lambda: Template(("Ping:Ping", [
            ("Ping:HeartbeatInterval", Slot("interval")),
            ("Ping:Folders", [("Ping:Folder", [("Ping:Id", Slot("id%d" % i)), ("Ping:Class", str(cls))])
                              for i, cls in enumerate(key)])])))
    return template.render(*ids)
