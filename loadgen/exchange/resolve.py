"""ResolveRecipients of the embedded target (MS-ASCMD 2.2.1.15).

Request (schema 6.31): ``ResolveRecipients{To*, [Options{[CertificateRetrieval], [MaxCertificates],
[MaxAmbiguousRecipients], [Availability{StartTime, [EndTime]}], [Picture]}]}``.
Answer (schema 6.32): ``ResolveRecipients{Status, Response*{To, Status, RecipientCount,
Recipient*{Type, DisplayName, EmailAddress, [Availability{Status, [MergedFreeBusy]}]}}}``.

* An SMTP address of a user of this target resolves to its GAL entry (Type 1); another address
  resolves when it is in the user's Contacts folder (Type 2), else it is not found.  A name is
  looked up as the GAL search does (search.Directory: a prefix of the display name, last name or
  address) and in the user's contacts: one match resolves, several are ambiguous -- at most
  MaxAmbiguousRecipients suggestions (0-9999, MS-ASCMD 2.2.3.100; :data:`DEFAULT_AMBIGUOUS` when
  absent, this target's choice) with RecipientCount the number of matches (MS-ASCMD 2.2.3.146).
* Response Status (MS-ASCMD 2.2.3.177.12): 1 resolved, 2 ambiguous (every suggestion returned),
  3 ambiguous with a partial list of suggestions, 4 not found.  The command's Status: 1, or 5
  protocol error (not a ResolveRecipients request, no To or more than 1,000, Availability in a
  12.x request or with a malformed time, EndTime less than 30 minutes after StartTime or more
  than :data:`MAX_AVAILABILITY_DAYS` days after it -- MS-ASCMD 2.2.3.61.1 EndTime).
* Availability (14.0+) for a recipient resolved to one entry only: MergedFreeBusy (MS-ASCMD
  2.2.3.107), one digit per 30 minutes from StartTime -- 0 free, 1 tentative, 2 busy, 3 out of
  office, 4 no data -- the highest digit of the calendar items that overlap the interval.  A user of
  this target: from its calendar (store.py's generated items, recurring series expanded, and the
  items clients or MeetingResponse changed: their MS-ASCAL BusyStatus); a contact: all 4.  With
  more than 100 To, every Availability is Status 160 (MS-ASCMD 2.2.3.16).
"""

import math
from datetime import datetime, timezone

from _wbxml import children, encode, find, findtext
from loadgen.exchange import store as st
from loadgen.exchange.search import Person, directory

MAX_TO = 1000
MAX_AVAILABILITY_TO = 100
DEFAULT_AMBIGUOUS = 20
MAX_AVAILABILITY_DAYS = 42
SLOT = 1800  # seconds per MergedFreeBusy digit
TYPE_GAL, TYPE_CONTACT = "1", "2"
_PROTOCOL_ERROR = encode(("ResolveRecipients:ResolveRecipients", [("ResolveRecipients:Status", "5")]))
_DAY_BITS = (2, 4, 8, 16, 32, 64, 1)  # MS-ASCAL 2.2.2.18 DayOfWeek bit of datetime.weekday() 0..6 (Monday..Sunday)


def parse_time(text):
    """Epoch seconds of an MS-ASDTYPE dateTime (``2024-05-01T10:00:00.000Z``; the compact form too)."""
    if type(text) is not str:
        return None
    text = text.strip()
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y%m%dT%H%M%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    return None


# -- calendar -> free/busy

def _busy_digit(value):
    try:
        busy = int(value)
    except (TypeError, ValueError):
        return 2
    return busy if busy in (0, 1, 2, 3) else 2


def _occurrences(start, end, recurrence, until):
    """(start, end) of each occurrence up to ``until`` (MS-ASCAL 2.2.2.38 Recurrence: Type 0 daily,
    1 weekly with DayOfWeek; other types: the first occurrence only)."""
    yield start, end
    if recurrence is None:
        return
    rtype, interval, occurrences, days = recurrence
    try:
        interval = max(1, int(interval or 1))
        occurrences = min(int(occurrences or 10), 500)
        days = int(days) if days else None
    except ValueError:
        return
    length = end - start
    if rtype == "0":
        for k in range(1, occurrences):
            s = start + k * interval * 86400
            if s >= until:
                return
            yield s, s + length
    elif rtype == "1" and days:
        found, s = 1, start
        while found < occurrences:
            s += 86400
            if s >= until:
                return
            if days & _DAY_BITS[datetime.fromtimestamp(s, timezone.utc).weekday()]:
                found += 1
                yield s, s + length


def _client_event(data):
    """(start, end, busy digit, recurrence) of a calendar ClientItem's ApplicationData, or None."""
    values = {tag: value for tag, value in data if type(value) is str}
    start = parse_time(values.get("Calendar:StartTime"))
    end = parse_time(values.get("Calendar:EndTime"))
    if start is None or end is None:
        return None
    recurrence = None
    for tag, value in data:
        if tag == "Calendar:Recurrence" and type(value) is list:
            recurrence = (findtext((tag, value), "Calendar:Type"), findtext((tag, value), "Calendar:Interval"),
                          findtext((tag, value), "Calendar:Occurrences"), findtext((tag, value), "Calendar:DayOfWeek"))
    return start, end, _busy_digit(values.get("Calendar:BusyStatus")), recurrence


def merged_free_busy(box, start, end):
    """The MergedFreeBusy string of ``box``'s calendar from ``start`` to ``end`` (epoch seconds)."""
    slots = max(1, math.ceil((end - start) / SLOT))
    digits = bytearray(b"0" * slots)
    folder = box.folder(st.CALENDAR)
    for n in folder.numbers():
        item = box.item(st.CALENDAR, n)
        if isinstance(item, st.GenEvent):
            event = (item.start, item.end, 2, item.recurrence)
        elif isinstance(item, st.ClientItem) and item.cls == "Calendar":
            event = _client_event(item.data)
        else:
            continue
        if event is None:
            continue
        s0, e0, digit, recurrence = event
        mark = ord("0") + digit
        for s, e in _occurrences(s0, e0, recurrence, end):
            if e <= start or s >= end:
                continue
            first = max(0, int((s - start) // SLOT))
            last = min(slots, math.ceil((e - start) / SLOT))
            for i in range(first, last):
                if digits[i] < mark:
                    digits[i] = mark
    return digits.decode("ascii")


# -- resolution

def _contacts(box):
    """(display name, address) of every contact of the user (generated and client-added)."""
    folder = box.folder(st.CONTACTS)
    for n in folder.numbers():
        item = box.item(st.CONTACTS, n)
        if isinstance(item, st.GenContact):
            yield "%s %s" % (item.first, item.last), item.email
        elif isinstance(item, st.ClientItem):
            values = {tag: value for tag, value in item.data if type(value) is str}
            address = values.get("Contacts:Email1Address", "")
            if "<" in address:
                address = address.rpartition("<")[2].rstrip(">").strip()
            name = " ".join(v for v in (values.get("Contacts:FirstName"), values.get("Contacts:LastName")) if v)
            if address:
                yield name or address, address


def resolve_one(store, box, to, limit):
    """(status, recipient count, [(type, display name, address, user or None)]) of one To."""
    text = to.strip()
    if "<" in text and text.endswith(">"):  # "Name <addr>"
        text = text.rpartition("<")[2][:-1].strip()
    if not text:
        return 4, 0, []
    query = text.casefold()
    d = directory(store)
    if "@" in text:
        user = store.user_for(query)
        if user is not None:
            p = Person(d, user)
            return 1, 1, [(TYPE_GAL, p.display, p.address, user)]
        for name, address in _contacts(box):
            if address.casefold() == query:
                return 1, 1, [(TYPE_CONTACT, name, address, None)]
        return 4, 0, []
    found, total = d.matches(query, 0, max(limit, 1))
    entries = [(TYPE_GAL, p.display, p.address, p.user) for p in (d.person(i) for i in found)]
    for name, address in _contacts(box):
        if name.casefold().startswith(query) or address.casefold().startswith(query):
            total += 1
            if len(entries) < max(limit, 1):
                entries.append((TYPE_CONTACT, name, address, None))
    if total == 0:
        return 4, 0, []
    if total == 1:
        return 1, 1, entries[:1]
    entries = entries[:limit]
    return (2 if len(entries) >= total else 3), total, entries


def _options(version, tree):
    """(max ambiguous, (start, end) or None) of the request's Options, or None for a protocol error."""
    options = find(tree, "ResolveRecipients:Options")
    if options is None:
        return DEFAULT_AMBIGUOUS, None
    if type(options[1]) is not list:
        return None
    limit = findtext(options, "ResolveRecipients:MaxAmbiguousRecipients")
    if limit is None:
        limit = DEFAULT_AMBIGUOUS
    else:
        try:
            limit = int(limit)
        except (TypeError, ValueError):
            return None
        if not 0 <= limit <= 9999:
            return None
    node = find(options, "ResolveRecipients:Availability")
    if node is None:
        return limit, None
    if version.number < 140 or type(node[1]) is not list:
        return None
    start = parse_time(findtext(node, "ResolveRecipients:StartTime"))
    end_text = findtext(node, "ResolveRecipients:EndTime")
    end = parse_time(end_text) if end_text is not None else (start + 86400 if start is not None else None)
    if start is None or end is None or end - start < SLOT or end - start > MAX_AVAILABILITY_DAYS * 86400:
        return None
    return limit, (start, end)


def respond(state, record, version, tree):
    """The WBXML answer of a ResolveRecipients request and its status."""
    if tree is None or tree[0] != "ResolveRecipients:ResolveRecipients" or type(tree[1]) is not list:
        return _PROTOCOL_ERROR, 5
    tos = [value for tag, value in children(tree) if tag == "ResolveRecipients:To"]
    if not tos or len(tos) > MAX_TO or not all(type(t) is str for t in tos):
        return _PROTOCOL_ERROR, 5
    options = _options(version, tree)
    if options is None:
        return _PROTOCOL_ERROR, 5
    limit, availability = options
    store = state.store
    box = store.mailbox(record.user)
    too_many = availability is not None and len(tos) > MAX_AVAILABILITY_TO
    out = [("ResolveRecipients:Status", "1")]
    for to in tos:
        status, count, entries = resolve_one(store, box, to, limit)
        response = [("ResolveRecipients:To", to), ("ResolveRecipients:Status", str(status)),
                    ("ResolveRecipients:RecipientCount", str(count))]
        for rtype, name, address, user in entries:
            recipient = [("ResolveRecipients:Type", rtype), ("ResolveRecipients:DisplayName", name),
                         ("ResolveRecipients:EmailAddress", address)]
            if availability is not None and status == 1:
                if too_many:
                    recipient.append(("ResolveRecipients:Availability", [("ResolveRecipients:Status", "160")]))
                else:
                    if user is not None:
                        free_busy = merged_free_busy(store.mailbox(user), *availability)
                    else:
                        free_busy = "4" * max(1, math.ceil((availability[1] - availability[0]) / SLOT))
                    recipient.append(("ResolveRecipients:Availability", [
                        ("ResolveRecipients:Status", "1"), ("ResolveRecipients:MergedFreeBusy", free_busy)]))
            response.append(("ResolveRecipients:Recipient", recipient))
        out.append(("ResolveRecipients:Response", response))
    return encode(("ResolveRecipients:ResolveRecipients", out)), 1


def handle(target, record, version, tree):
    """The Target's handler (handlers.py)."""
    body, status = respond(target.state, record, version, tree)
    return target._wbxml("ResolveRecipients", body, status)
