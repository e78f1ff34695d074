"""The Sync command of the embedded target (MS-ASCMD 2.2.1.21) over the mail store (store.py), both ways.

* Request: ``Sync/[WindowSize]/Collections/Collection/{SyncKey, CollectionId, [DeletesAsMoves],
  [GetChanges], [WindowSize], [Options/{FilterType, airsyncbase:BodyPreference/{Type, TruncationSize}}],
  [Commands/{Add, Change, Delete, Fetch}]}``; several collections in one request; a Sync-level
  ``WindowSize`` (14.0+) applies to collections without their own.
* Response: ``Sync/Collections/Collection/{SyncKey, CollectionId, Status, [MoreAvailable],
  [Commands/{Add, Change, Delete}], [Responses/{Add, Change, Delete, Fetch}]}`` -- the child order of
  MS-ASCMD 2.2.3.29.2 (Class, SyncKey, CollectionId, Status, MoreAvailable, Commands, Responses).
* SyncKey 0 creates the sync state of (device, collection) and returns key 1 with no items (MS-ASCMD
  3.1.5.3); later keys first page through the folder's content as it was then, ``WindowSize`` items at
  a time (default 100, at most 512: MS-ASCMD 2.2.3.199) with ``MoreAvailable``, then through the
  folder's change log (store.py): new items, changed Read/Flag (Email) or data (Calendar, Contacts,
  Tasks), deletes.  A change made by this device is not sent back to it; the user's other devices get
  it.  The key advances when the answer carries anything; with nothing new it stays.  The previous key
  again replays from the previous state (the client lost the answer; Adds it sent again keep the
  ServerIds they were given); any other key, or a state further behind than the change log reaches,
  is Status 3 "Invalid synchronization key" (MS-ASCMD 2.2.3.177.17).  An unknown CollectionId is
  Status 12 (FolderSync required); an empty request (no cached request kept here) is Status 13, a
  malformed one Status 4.
* Client commands (MS-ASCMD 2.2.3.24 Change, 2.2.3.42 Delete, 2.2.3.7 Add, 2.2.3.63 Fetch):
  Change of Email:Read / Email:Flag (MS-ASEMAIL 2.2.2.34 Flag/Status) on mail, of the whole
  ApplicationData on calendar items, contacts and tasks; Delete -- with DeletesAsMoves (default 1) a
  message goes to Deleted Items, from Deleted Items or with DeletesAsMoves 0 it is gone; Add of a
  calendar item, contact or task with its ClientId -> ``Responses/Add/{ClientId, ServerId, Status}``;
  Fetch -> ``Responses/Fetch/{ServerId, Status, ApplicationData}``.  Per-item Status: 6 "error in
  client/server conversion" (an Add to a mail folder, data of another class, no ClientId), 8 "object
  not found" (MS-ASCMD 2.2.3.177.17).  A Change or Delete is in Responses only when it failed
  (MS-ASCMD 2.2.3.24.3, 2.2.3.42.3).
* ApplicationData: Email (MS-ASEMAIL 2.2.2: To, Cc, From, Subject, DateReceived, DisplayTo,
  ThreadTopic, Importance, Read, airsyncbase:Attachments, airsyncbase:Body, MessageClass,
  MeetingRequest, InternetCPID, Flag, airsyncbase:NativeBodyType), Calendar (MS-ASCAL 2.2.2: Timezone,
  AllDayEvent, StartTime, Subject, UID, DtStamp, EndTime, Location, Reminder, BusyStatus, Sensitivity,
  MeetingStatus, OrganizerName, OrganizerEmail, Recurrence, Body), Contacts (MS-ASCNTC 2.2.2),
  Tasks (MS-ASTASK 2.2.2).  Body types 1 (plain), 2 (HTML) and 4 (MIME) are served; a preference for
  an unsupported type (3, RTF) falls to the next one, then to plain text.  TruncationSize cuts Data
  (bytes) and sets Truncated.  FilterType (MS-ASCMD 2.2.3.70.1) limits mail by DateReceived and
  calendar items by their end (recurring series always), 8 keeps incomplete tasks.
* What each device asked for (BodyPreference Type / TruncationSize, FilterType per collection) is
  remembered on its record (``observe_sync``): the proof that devices live by the policy they accepted
  is taken where the server sees it.
* A held Sync (MS-ASCMD 2.2.3.198 Wait, minutes; 2.2.3.88.2 HeartbeatInterval, seconds; never both:
  Status 4): :func:`hold_interval` checks the interval (out of range: Status 14 with Limit, the
  violated bound, MS-ASCMD 2.2.3.97) and :meth:`SyncResponder.quiet` says whether the request has
  nothing to answer yet, so that the server (server.py ``Target.held_sync``) parks it as it parks a
  Ping until one of its collections changes for this device or the interval ends -- then the empty
  Sync response of "no changes" (MS-ASCMD 2.2.1.21.2).
"""

from _wbxml import children, encode, find, findtext
from loadgen.exchange import store as st

MAX_WINDOW = 512
DEFAULT_WINDOW = 100
_SUPPORTED_BODY_TYPES = ("1", "2", "4")
_FILTER_DAYS = {"1": 1, "2": 3, "3": 7, "4": 14, "5": 31, "6": 92, "7": 183}
_PAGE_OF_CLASS = {"Calendar": "Calendar:", "Contacts": "Contacts:", "Tasks": "Tasks:", "Email": "Email:"}


def _int(text, default=None):
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def observe(record, kind, value, limit=1000):
    """Remember on the device's record what it asked for (tests and the admin view check that a
    device lives by its policy): ``record.observed[kind]`` is a set of distinct values, or for
    "fetch" a list of file references (at most ``limit`` kept, the count is exact)."""
    seen = record.observed
    if seen is None:
        seen = record.observed = {}
    if kind == "fetch":
        refs = seen.get(kind)
        if refs is None:
            refs = seen[kind] = []
            seen["fetch_count"] = 0
        seen["fetch_count"] += 1
        if len(refs) < limit:
            refs.append(value)
        return
    values = seen.get(kind)
    if values is None:
        values = seen[kind] = set()
    if len(values) < limit:
        values.add(value)


def observe_sync(record, collection_id, node):
    """(BodyPreference Type, TruncationSize, FilterType) of a Sync collection, as received
    (strings; None when absent): every distinct one under ``("sync", collection_id)``, the
    latest under ``("last_sync", collection_id)``."""
    options = find(node, "AirSync:Options")
    body_type = truncation = filter_type = None
    if options is not None:
        filter_type = findtext(options, "AirSync:FilterType")
        pref = find(options, "AirSyncBase:BodyPreference")
        if pref is not None:
            body_type = findtext(pref, "AirSyncBase:Type")
            truncation = findtext(pref, "AirSyncBase:TruncationSize")
    value = (body_type, truncation, filter_type)
    observe(record, ("sync", collection_id), value)
    record.observed[("last_sync", collection_id)] = value


# MS-ASCMD 2.2.3.198: Wait is 1..59 minutes (Limit 1 or 59 outside it, MS-ASCMD 2.2.3.97)
WAIT_MIN, WAIT_MAX = 1, 59


def hold_interval(tree, ping_min, ping_max):
    """The hold a Sync request asks for: (seconds, None) -- 0 when it asks for none --, or (None,
    (status, limit)) for a refused one: Status 4 when both Wait and HeartbeatInterval are given
    (MS-ASCMD 2.2.3.198) or one is not a number, Status 14 with Limit (the violated bound) when it is
    out of range.  HeartbeatInterval (seconds) is bounded by the target's ``ping_min..ping_max``, the
    bounds of a Ping's HeartbeatInterval (Exchange 60..3540, docs/protocol-notes.md section 6); Wait
    (minutes) by 1..59 narrowed to the whole minutes inside those bounds."""
    if tree is None or tree[0] != "AirSync:Sync":
        return 0, None
    wait = findtext(tree, "AirSync:Wait")
    heartbeat = findtext(tree, "AirSync:HeartbeatInterval")
    if wait is None and heartbeat is None:
        return 0, None
    if wait is not None and heartbeat is not None:
        return None, (4, None)
    value = _int(wait if wait is not None else heartbeat)
    if value is None:
        return None, (4, None)
    if wait is not None:
        low = max(WAIT_MIN, -(-int(ping_min) // 60))
        high = max(low, min(WAIT_MAX, int(ping_max) // 60))
        seconds = 60
    else:
        low, high, seconds = int(ping_min), int(ping_max), 1
    if value < low:
        return None, (14, low)
    if value > high:
        return None, (14, high)
    return value * seconds, None


class SyncState:
    """One device's sync state of one collection: the key it must send next, where the first pass
    over the folder stands (``cursor``: the last item number sent, None when done; ``end``: the
    folder's next number when the pass began), the change number reached (``pos``), the state
    before the last answer (``prev``) and the ClientIds of the Adds of the last request (``adds``)."""

    __slots__ = ("key", "cursor", "end", "pos", "prev", "adds")

    def __init__(self, folder):
        self.key = 1
        self.cursor = 0
        self.end = folder.next
        self.pos = folder.cn
        self.prev = None
        self.adds = None

    def pending(self, folder, origin):
        """True when the folder holds something this device has not been sent (Ping)."""
        if self.cursor is not None:
            return True
        entries = folder.since(self.pos)
        if entries is None:
            return True
        return any(e[3] != origin for e in entries)


# -- rendering

def _body(item, body_type, truncation):
    if body_type == "2":
        data = item.html or "<html><body><pre>%s</pre></body></html>" % item.text
    elif body_type == "4":
        data = item.mime.decode("utf-8", "replace")
    else:
        body_type = "1"
        data = item.text
    raw = data.encode("utf-8")
    body = [("AirSyncBase:Type", body_type), ("AirSyncBase:EstimatedDataSize", str(len(raw)))]
    if truncation is not None and len(raw) > truncation:
        body.append(("AirSyncBase:Truncated", "1"))
        data = raw[:max(0, truncation)].decode("utf-8", "ignore")
    body.append(("AirSyncBase:Data", data))
    return ("AirSyncBase:Body", body)


def _attachments(refs):
    """airsyncbase:Attachments (MS-ASAIRS 2.2.2.7/2.2.2.8): DisplayName, FileReference,
    Method 1 (normal attachment), EstimatedDataSize (bytes), in the schema's order."""
    return ("AirSyncBase:Attachments", [("AirSyncBase:Attachment", [
        ("AirSyncBase:DisplayName", name), ("AirSyncBase:FileReference", ref), ("AirSyncBase:Method", "1"),
        ("AirSyncBase:EstimatedDataSize", str(size))]) for ref, name, size in refs])


def _flag(status):
    """MS-ASEMAIL 2.2.2.34 Flag: empty when cleared, else Status (1 complete, 2 active) and FlagType."""
    if not status:
        return ("Email:Flag", None)
    out = [("Email:Status", str(status))]
    if status == 2:
        out.append(("Email:FlagType", "for Follow Up"))
    return ("Email:Flag", out)


def _meeting_request(box, number):
    """Email:MeetingRequest (MS-ASEMAIL 2.2.2.48) of the calendar item a request is for."""
    event = st.GenEvent(box, number)
    name, addr = event.organizer
    out = [("Email:AllDayEvent", "0"), ("Email:StartTime", st.eas_date(event.start)),
           ("Email:DtStamp", st.eas_date(box.store.anchor)), ("Email:EndTime", st.eas_date(event.end)),
           ("Email:InstanceType", "0")]
    if event.location:
        out.append(("Email:Location", event.location))
    out += [("Email:Organizer", '"%s" <%s>' % (name, addr)), ("Email:Reminder", "900"),
            ("Email:ResponseRequested", "1"), ("Email:Sensitivity", "0"), ("Email:BusyStatus", "2"),
            ("Email:TimeZone", st.UTC_TIMEZONE), ("Email:GlobalObjId", event.uid)]
    return ("Email:MeetingRequest", out)


def render_email(box, fid, n, item, body_type, truncation, flags=None):
    read, flag = flags if flags is not None else box.flags(fid, n, item)
    subject = item.subject
    to = item.to
    data = [("Email:To", to)]
    cc = item.cc
    if cc:
        data.append(("Email:Cc", cc))
    data += [("Email:From", item.from_header), ("Email:Subject", subject),
             ("Email:DateReceived", st.eas_date(item.date)),
             ("Email:DisplayTo", to.partition("<")[0].strip().strip('"') or to),
             ("Email:ThreadTopic", subject), ("Email:Importance", item.importance),
             ("Email:Read", "1" if read else "0")]
    refs = item.attachment_refs(fid, n)
    if refs:
        data.append(_attachments(refs))
    data.append(_body(item, body_type, truncation))
    data.append(("Email:MessageClass", item.message_class))
    meeting = item.meeting if isinstance(item, st.GenMail) else None
    if meeting is not None:
        data.append(_meeting_request(box, meeting))
    data += [("Email:InternetCPID", "65001"), _flag(flag),
             ("AirSyncBase:NativeBodyType", "1" if isinstance(item, st.GenMail) or not item.html else "2")]
    return data


def render_event(box, item):
    c = st.eas_compact
    name, addr = item.organizer
    data = [("Calendar:Timezone", st.UTC_TIMEZONE), ("Calendar:AllDayEvent", "0"),
            ("Calendar:StartTime", c(item.start)), ("Calendar:Subject", item.subject), ("Calendar:UID", item.uid),
            ("Calendar:DtStamp", c(box.store.anchor)), ("Calendar:EndTime", c(item.end))]
    if item.location:
        data.append(("Calendar:Location", item.location))
    meeting = item.kind == "meeting"
    data += [("Calendar:Reminder", item.reminder), ("Calendar:BusyStatus", "2"), ("Calendar:Sensitivity", "0"),
             ("Calendar:MeetingStatus", "3" if meeting else "0"),
             ("Calendar:OrganizerName", name), ("Calendar:OrganizerEmail", addr)]
    if meeting:
        data.append(("Calendar:Attendees", [("Calendar:Attendee", [
            ("Calendar:Email", box.address), ("Calendar:Name", box.user), ("Calendar:AttendeeType", "1")])]))
    recurrence = item.recurrence
    if recurrence is not None:
        rtype, interval, occurrences, days = recurrence
        rec = [("Calendar:Type", rtype), ("Calendar:Interval", interval), ("Calendar:Occurrences", occurrences)]
        if days is not None:
            rec.append(("Calendar:DayOfWeek", days))
        data.append(("Calendar:Recurrence", rec))
    text = item.text
    data.append(("AirSyncBase:Body", [("AirSyncBase:Type", "1"), ("AirSyncBase:EstimatedDataSize",
                                                                   str(len(text.encode("utf-8")))),
                                      ("AirSyncBase:Data", text)]))
    return data


def render_contact(item):
    return [("Contacts:CompanyName", item.company), ("Contacts:Email1Address", '"%s %s" <%s>' % (
        item.first, item.last, item.email)), ("Contacts:FileAs", "%s, %s" % (item.last, item.first)),
        ("Contacts:FirstName", item.first), ("Contacts:LastName", item.last),
        ("Contacts:MobilePhoneNumber", item.phone)]


def render_task(item):
    due = st.eas_date(item.due)
    start = st.eas_date(item.due - 3 * 86400)
    data = [("Tasks:Subject", item.subject), ("Tasks:Importance", "1"), ("Tasks:UtcStartDate", start),
            ("Tasks:StartDate", start), ("Tasks:UtcDueDate", due), ("Tasks:DueDate", due),
            ("Tasks:Complete", item.complete)]
    if item.complete == "1":  # MS-ASTASK 2.2.2.9: DateCompleted is required when Complete is 1
        data.append(("Tasks:DateCompleted", due))
    data += [("Tasks:Sensitivity", "0"), ("Tasks:ReminderSet", "0")]
    return data


def render(box, fid, n, item, body_type="1", truncation=None):
    """The ApplicationData children of any item."""
    cls = item.cls
    if isinstance(item, st.ClientItem):
        return item.data
    if cls == "Email":
        return render_email(box, fid, n, item, body_type, truncation)
    if cls == "Calendar":
        return render_event(box, item)
    if cls == "Contacts":
        return render_contact(item)
    if cls == "Tasks":
        return render_task(item)
    return []


def _in_filter(item, cls, cutoff, filter_type):
    if cls == "Email":
        return cutoff is None or item.date >= cutoff
    if cls == "Calendar" and isinstance(item, st.GenEvent):
        return cutoff is None or item.recurrence is not None or item.end >= cutoff
    if cls == "Tasks" and filter_type == "8" and isinstance(item, st.GenTask):
        return item.complete != "1"
    return True


class SyncResponder:
    def __init__(self, folders):
        self.folder_ids = frozenset(f[0] for f in folders)

    # -- the command

    def quiet(self, record, box, tree, observe=True):
        """The collection ids a Sync request may be held on, when it has nothing to answer now: every
        collection is known, at the device's current key (no key 0, no replay), carries no client
        commands, asks for changes, and has nothing this device has not been sent (SyncState.pending;
        its own changes do not count).  None when the request must be answered at once (by
        :meth:`respond`).  With ``observe``, what each collection asked for is remembered as
        :meth:`respond` does."""
        if tree is None or tree[0] != "AirSync:Sync" or record.resync:
            return None
        collections = find(tree, "AirSync:Collections")
        if collections is None or type(collections[1]) is not list:
            return None
        origin = record.device_id
        fids = []
        nodes = []
        for node in children(collections):
            if node[0] != "AirSync:Collection" or type(node[1]) is not list:
                continue
            cid = findtext(node, "AirSync:CollectionId")
            if type(cid) is not str or cid not in self.folder_ids:
                return None
            state = record.sync.get(cid)
            if type(state) is not SyncState or _int(findtext(node, "AirSync:SyncKey")) != state.key:
                return None
            commands = find(node, "AirSync:Commands")
            if (commands is not None and commands[1]) or findtext(node, "AirSync:GetChanges") == "0":
                return None
            if state.pending(box.folder(cid), origin):
                return None
            fids.append(cid)
            nodes.append(node)
        if not fids:
            return None
        for cid, node in zip(fids, nodes) if observe else ():
            observe_sync(record, cid, node)
        return tuple(fids)

    def respond(self, record, box, tree):
        """(WBXML body, Sync-level status or None) for a Sync request tree."""
        if tree is None:
            return None, 13  # empty request and no cached one
        if tree[0] != "AirSync:Sync":
            return None, 4
        collections = find(tree, "AirSync:Collections")
        if collections is None:
            return None, 13 if not children(tree) else 4
        sync_window = _int(findtext(tree, "AirSync:WindowSize"))
        out = []
        for node in children(collections):
            if node[0] != "AirSync:Collection" or type(node[1]) is not list:
                continue
            out.append(("AirSync:Collection", self._collection(record, box, node, sync_window)))
        if not out:
            return None, 4
        return encode(("AirSync:Sync", [("AirSync:Collections", out)])), None

    def _collection(self, record, box, node, sync_window):
        key = findtext(node, "AirSync:SyncKey")
        cid = findtext(node, "AirSync:CollectionId")
        if type(key) is not str or type(cid) is not str:
            return [("AirSync:SyncKey", key if type(key) is str else "0"),
                    ("AirSync:CollectionId", cid if type(cid) is str else ""), ("AirSync:Status", "4")]
        if cid not in self.folder_ids:
            return [("AirSync:SyncKey", key), ("AirSync:CollectionId", cid), ("AirSync:Status", "12")]
        folder = box.folder(cid)
        if key == "0":
            record.sync[cid] = SyncState(folder)
            return [("AirSync:SyncKey", "1"), ("AirSync:CollectionId", cid), ("AirSync:Status", "1")]
        state = record.sync.get(cid)
        n = _int(key)
        replay = False
        if type(state) is not SyncState or n is None:
            state = None
        elif n != state.key:
            if state.prev is not None and n == state.prev[0]:
                replay = True  # the client lost our last answer: answer again from the state before it
                state.key, state.cursor, state.pos = state.prev
            else:
                state = None
        if state is None:
            record.sync.pop(cid, None)
            return [("AirSync:SyncKey", "0"), ("AirSync:CollectionId", cid), ("AirSync:Status", "3")]
        observe_sync(record, cid, node)
        before = (state.key, state.cursor, state.pos)
        origin = record.device_id
        responses = []
        commands = find(node, "AirSync:Commands")
        if commands is not None and type(commands[1]) is list:
            responses = self._apply(box, folder, state, node, commands[1], origin, replay)
        elif not replay:
            state.adds = None
        window = _int(findtext(node, "AirSync:WindowSize"), sync_window) or DEFAULT_WINDOW
        window = max(1, min(window, MAX_WINDOW))
        changes, more = [], False
        if findtext(node, "AirSync:GetChanges") != "0":
            body_type, truncation, cutoff, filter_type = self._options(node, box)
            got = self._changes(box, folder, state, origin, window, body_type, truncation, cutoff, filter_type)
            if got is None:  # behind the change log: the client must sync afresh
                record.sync.pop(cid, None)
                return [("AirSync:SyncKey", "0"), ("AirSync:CollectionId", cid), ("AirSync:Status", "3")]
            changes, more = got
        if changes or responses or (state.cursor, state.pos) != before[1:]:
            state.prev = before
            state.key = before[0] + 1
        result = [("AirSync:SyncKey", str(state.key)), ("AirSync:CollectionId", cid), ("AirSync:Status", "1")]
        if more:
            result.append(("AirSync:MoreAvailable", None))
        if changes:
            result.append(("AirSync:Commands", changes))
        if responses:
            result.append(("AirSync:Responses", responses))
        return result

    @staticmethod
    def _options(node, box):
        """(body type, truncation, filter cutoff epoch or None, FilterType) of a collection's Options."""
        options = find(node, "AirSync:Options")
        if options is None or type(options[1]) is not list:
            return "1", None, None, None
        filter_type = findtext(options, "AirSync:FilterType")
        days = _FILTER_DAYS.get(filter_type)
        cutoff = box.store.clock() - days * 86400 if days else None
        for pref in children(options):
            if pref[0] != "AirSyncBase:BodyPreference":
                continue
            body_type = findtext(pref, "AirSyncBase:Type")
            if body_type in _SUPPORTED_BODY_TYPES:
                return body_type, _int(findtext(pref, "AirSyncBase:TruncationSize")), cutoff, filter_type
        return "1", None, cutoff, filter_type

    # -- server -> client

    def _changes(self, box, folder, state, origin, window, body_type, truncation, cutoff, filter_type):
        """(Commands children, more available) from the state's position, at most ``window`` of them;
        None when the change log no longer reaches the state's position."""
        out = []
        fid, cls = folder.fid, folder.cls
        if state.cursor is not None:
            end = state.end
            if cutoff is not None and cls == "Email":  # generated mail is in date order: skip what is older
                state.cursor = max(state.cursor, box.store.first_after(box, fid, cutoff) - 1)
            last = state.cursor
            done = True
            for n in folder.numbers(state.cursor):
                if n >= end:
                    break
                if len(out) >= window:
                    done = False
                    break
                last = n
                item = box.item(fid, n)
                if item is None or not _in_filter(item, cls, cutoff, filter_type):
                    continue
                out.append(("AirSync:Add", [("AirSync:ServerId", "%s:%d" % (fid, n)), (
                    "AirSync:ApplicationData", render(box, fid, n, item, body_type, truncation))]))
            if not done:
                state.cursor = last
                return out, True
            state.cursor = None
        entries = folder.since(state.pos)
        if entries is None:
            return None
        slot = {}  # n -> index in out of its Add/Change in this answer (coalescing)
        more = False
        for cn, op, n, who in entries:
            if who == origin:
                state.pos = cn
                continue
            if len(out) >= window and n not in slot:
                more = True
                break
            state.pos = cn
            sid = "%s:%d" % (fid, n)
            if op == st.DELETE:
                i = slot.pop(n, None)
                if i is not None:
                    added = out[i][0] == "AirSync:Add"
                    out[i] = None
                    if added:
                        continue
                out.append(("AirSync:Delete", [("AirSync:ServerId", sid)]))
                continue
            if n in slot:
                continue  # already in this answer with its current state
            item = box.item(fid, n)
            if item is None:
                continue  # gone since: its Delete follows
            if op == st.ADD:
                slot[n] = len(out)
                out.append(("AirSync:Add", [("AirSync:ServerId", sid), (
                    "AirSync:ApplicationData", render(box, fid, n, item, body_type, truncation))]))
            else:
                slot[n] = len(out)
                if cls == "Email":
                    read, flag = box.flags(fid, n, item)
                    data = [("Email:Read", "1" if read else "0"), _flag(flag)]
                else:
                    data = render(box, fid, n, item, body_type, truncation)
                out.append(("AirSync:Change", [("AirSync:ServerId", sid), ("AirSync:ApplicationData", data)]))
        return [c for c in out if c is not None], more

    # -- client -> server

    def _apply(self, box, folder, state, node, commands, origin, replay):
        """Apply a collection's client commands; the Responses children."""
        fid, cls = folder.fid, folder.cls
        counters = box.store.counters
        as_moves = findtext(node, "AirSync:DeletesAsMoves") != "0"
        previous = state.adds if replay else None
        adds = {}
        out = []
        for cmd in commands:
            tag, content = cmd
            if type(content) is not list:
                content = []
            sid = findtext(cmd, "AirSync:ServerId") if content else None
            sid = sid if type(sid) is str else None
            data = find(cmd, "AirSync:ApplicationData") if content else None
            data = data[1] if data is not None and type(data[1]) is list else None
            if tag == "AirSync:Add":
                client_id = findtext(cmd, "AirSync:ClientId") if content else None
                client_id = client_id if type(client_id) is str else None
                if previous and client_id in previous:
                    server_id = previous[client_id]
                    adds[client_id] = server_id
                    out.append(("AirSync:Add", [("AirSync:ClientId", client_id), ("AirSync:ServerId", server_id),
                                                ("AirSync:Status", "1")]))
                    continue
                prefix = _PAGE_OF_CLASS.get(cls)
                if (client_id is None or not data or cls == "Email" or prefix is None
                        or not all(type(c) is tuple and c[0].startswith((prefix, "AirSyncBase:")) for c in data)):
                    out.append(("AirSync:Add", [("AirSync:ClientId", client_id or ""), ("AirSync:Status", "6")]))
                    continue
                n = box.add(fid, st.ClientItem(cls, data, box.store.clock()), origin)
                server_id = "%s:%d" % (fid, n)
                adds[client_id] = server_id
                counters["client_adds"] += 1
                out.append(("AirSync:Add", [("AirSync:ClientId", client_id), ("AirSync:ServerId", server_id),
                                            ("AirSync:Status", "1")]))
            elif tag == "AirSync:Change":
                status = self._change(box, fid, cls, sid, data, origin)
                if status != 1:
                    out.append(("AirSync:Change", [("AirSync:ServerId", sid or ""), ("AirSync:Status", str(status))]))
            elif tag == "AirSync:Delete":
                n = _number_in(fid, sid)
                gone = n is None or box.item(fid, n) is None
                if gone:
                    if not replay:  # a replayed Delete already happened
                        out.append(("AirSync:Delete", [("AirSync:ServerId", sid or ""), ("AirSync:Status", "8")]))
                    continue
                if as_moves and cls == "Email" and fid != st.DELETED:
                    box.move(fid, n, st.DELETED, origin)
                else:
                    box.remove(fid, n, origin)
                counters["deleted"] += 1
            elif tag == "AirSync:Fetch":
                n = _number_in(fid, sid)
                item = box.item(fid, n) if n is not None else None
                if item is None:
                    out.append(("AirSync:Fetch", [("AirSync:ServerId", sid or ""), ("AirSync:Status", "8")]))
                    continue
                body_type, truncation, _cutoff, _filter = self._options(node, box)
                out.append(("AirSync:Fetch", [("AirSync:ServerId", sid), ("AirSync:Status", "1"), (
                    "AirSync:ApplicationData", render(box, fid, n, item, body_type, truncation))]))
            # anything else (SoftDelete is the server's) is ignored
        state.adds = adds or None
        return out

    @staticmethod
    def _change(box, fid, cls, sid, data, origin):
        n = _number_in(fid, sid)
        item = box.item(fid, n) if n is not None else None
        if item is None:
            return 8
        if data is None:
            return 6
        if cls == "Email":
            read = flag = None
            for tag, value in data:
                if tag == "Email:Read":
                    if value not in ("0", "1"):
                        return 6
                    read = int(value)
                elif tag == "Email:Flag":
                    status = findtext((tag, value), "Email:Status") if type(value) is list else None
                    flag = _int(status, 0) if status is not None else 0
                    if flag not in (0, 1, 2):
                        return 6
            if read is None and flag is None:
                return 1  # nothing this target keeps (categories...): accepted
            box.set_flags(fid, n, read, flag, origin)
            counters = box.store.counters
            if read:
                counters["read"] += 1
            if flag is not None:
                counters["flagged"] += 1
            return 1
        prefix = _PAGE_OF_CLASS.get(cls)
        if prefix is None or not all(type(c) is tuple and c[0].startswith((prefix, "AirSyncBase:")) for c in data):
            return 6
        box.replace(fid, n, data, origin)
        return 1


def _number_in(fid, server_id):
    """The item number of ``server_id`` when it names an item of folder ``fid``, else None."""
    if server_id is None:
        return None
    folder, _, number = server_id.partition(":")
    if folder != fid or not number.isdigit():
        return None
    return int(number)
