"""The Sync command of the embedded target (MS-ASCMD 2.2.1.21) over the generated mailbox.

* Request: ``Sync/Collections/Collection/{SyncKey, CollectionId, [GetChanges],
  [WindowSize], [Options/airsyncbase:BodyPreference/{Type, TruncationSize}]}``;
  a Sync-level ``WindowSize`` (14.0+) applies to collections without their own.
* Response: ``Sync/Collections/Collection/{SyncKey, CollectionId, Status,
  [MoreAvailable], [Commands/Add/{ServerId, ApplicationData/...}]}`` -- the child
  order of MS-ASCMD 2.2.3.29.2 (Class, SyncKey, CollectionId, Status,
  MoreAvailable, Commands, Responses).
* SyncKey 0 creates the sync state and returns key 1 with no items (MS-ASCMD
  3.1.5.3 "the initial synchronization ... the server returns a new SyncKey and no
  items"); later keys page through the Inbox ``WindowSize`` items at a time
  (default 100, at most 512: MS-ASCMD 2.2.3.199), with ``MoreAvailable`` when
  more are left.  A repeat of the previous key replays the previous answer (the
  client lost it); any other key is Status 3 "Invalid synchronization key".
  With nothing new the key does not change.  An unknown CollectionId is Status
  12 "folder hierarchy has changed" (FolderSync required); an empty request
  (no cached request kept here) is Status 13, a malformed one Status 4.
* ApplicationData (MS-ASEMAIL 2.2.2): To, From, Subject, DateReceived, DisplayTo,
  ThreadTopic, Importance, Read, airsyncbase:Body {Type, EstimatedDataSize,
  [Truncated], Data} (MS-ASAIRS 2.2.2.9), MessageClass, InternetCPID,
  airsyncbase:NativeBodyType.  Body types 1 (plain), 2 (HTML) and 4 (MIME) are
  served; a preference for an unsupported type (3, RTF) falls to the next one,
  then to plain text.  TruncationSize cuts Data (bytes) and sets Truncated.
  Messages with attachments carry airsyncbase:Attachments (FileReference,
  EstimatedDataSize) for ItemOperations Fetch (itemops.py).
* What each device asked for (BodyPreference Type / TruncationSize, FilterType per
  collection) is remembered on its record (``observe_sync``): the proof that
  devices live by the policy they accepted is taken where the server sees it.
"""

from _wbxml import children, encode, find, findtext
from loadgen.exchange.mailbox import INBOX_ID

MAX_WINDOW = 512
DEFAULT_WINDOW = 100
_SUPPORTED_BODY_TYPES = ("1", "2", "4")


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


class SyncResponder:
    def __init__(self, folders):
        self.folder_ids = frozenset(f[0] for f in folders)

    # -- rendering

    @staticmethod
    def _body(msg, to_addr, body_type, truncation):
        if body_type == "2":
            data = "<html><body><p>%s</p></body></html>" % msg.body
        elif body_type == "4":
            data = ("From: \"%s\" <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMIME-Version: 1.0\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n"
                    % (msg.sender, msg.sender_addr, to_addr, msg.subject, msg.received, msg.body))
        else:
            body_type = "1"
            data = msg.body
        raw = data.encode("utf-8")
        body = [("AirSyncBase:Type", body_type), ("AirSyncBase:EstimatedDataSize", str(len(raw)))]
        if truncation is not None and len(raw) > truncation:
            body.append(("AirSyncBase:Truncated", "1"))
            data = raw[:truncation].decode("utf-8", "ignore")
        body.append(("AirSyncBase:Data", data))
        return ("AirSyncBase:Body", body)

    @staticmethod
    def _attachments(msg):
        """airsyncbase:Attachments (MS-ASAIRS 2.2.2.7/2.2.2.8): DisplayName, FileReference,
        Method 1 (normal attachment), EstimatedDataSize (bytes), in the schema's order."""
        return ("AirSyncBase:Attachments", [("AirSyncBase:Attachment", [
            ("AirSyncBase:DisplayName", name), ("AirSyncBase:FileReference", ref), ("AirSyncBase:Method", "1"),
            ("AirSyncBase:EstimatedDataSize", str(size))]) for ref, name, size in msg.attachments])

    def _add(self, msg, box, body_type, truncation):
        data = [
            ("Email:To", '"%s" <%s>' % (box.user, box.address)),
            ("Email:From", '"%s" <%s>' % (msg.sender, msg.sender_addr)),
            ("Email:Subject", msg.subject),
            ("Email:DateReceived", msg.received),
            ("Email:DisplayTo", box.user),
            ("Email:ThreadTopic", msg.subject),
            ("Email:Importance", "1"),
            ("Email:Read", "0"),
            self._body(msg, box.address, body_type, truncation),
            ("Email:MessageClass", "IPM.Note"),
            ("Email:InternetCPID", "65001"),
            ("AirSyncBase:NativeBodyType", "1"),
        ]
        if msg.attachments:  # right before the Body
            data.insert(8, self._attachments(msg))
        return ("AirSync:Add", [("AirSync:ServerId", msg.server_id), ("AirSync:ApplicationData", data)])

    # -- the command

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
            if node[0] != "AirSync:Collection":
                continue
            out.append(("AirSync:Collection", self._collection(record, box, node, sync_window)))
        if not out:
            return None, 4
        return encode(("AirSync:Sync", [("AirSync:Collections", out)])), None

    def _collection(self, record, box, node, sync_window):
        key = findtext(node, "AirSync:SyncKey")
        cid = findtext(node, "AirSync:CollectionId")
        if key is None or cid is None:
            return [("AirSync:SyncKey", key or "0"), ("AirSync:CollectionId", cid or ""), ("AirSync:Status", "4")]
        if cid not in self.folder_ids:
            return [("AirSync:SyncKey", key), ("AirSync:CollectionId", cid), ("AirSync:Status", "12")]
        if key == "0":
            record.sync[cid] = [1, 0, None, 0]
            return [("AirSync:SyncKey", "1"), ("AirSync:CollectionId", cid), ("AirSync:Status", "1")]
        state = record.sync.get(cid)
        n = _int(key)
        if state is None or n is None or n not in (state[0], state[2]):
            record.sync.pop(cid, None)
            return [("AirSync:SyncKey", "0"), ("AirSync:CollectionId", cid), ("AirSync:Status", "3")]
        observe_sync(record, cid, node)
        window = _int(findtext(node, "AirSync:WindowSize"), sync_window) or DEFAULT_WINDOW
        window = max(1, min(window, MAX_WINDOW))
        items = box.inbox if cid == INBOX_ID else ()
        if n == state[0]:
            start = state[1]
            get_changes = findtext(node, "AirSync:GetChanges")
            if get_changes == "0":
                end = start
            else:
                end = min(len(items), start + window)
            new_key = state[0] + 1 if end > start else state[0]
            if end > start:
                record.sync[cid] = [new_key, end, state[0], start]
        else:  # the previous key again: replay the previous answer
            start, end, new_key = state[3], state[1], state[0]
        result = [("AirSync:SyncKey", str(new_key)), ("AirSync:CollectionId", cid), ("AirSync:Status", "1")]
        if end < len(items):
            result.append(("AirSync:MoreAvailable", None))
        if end > start:
            body_type, truncation = self._options(node)
            result.append(("AirSync:Commands", [self._add(m, box, body_type, truncation) for m in items[start:end]]))
        return result

    @staticmethod
    def _options(node):
        options = find(node, "AirSync:Options")
        if options is None:
            return "1", None
        for pref in children(options):
            if pref[0] != "AirSyncBase:BodyPreference":
                continue
            body_type = findtext(pref, "AirSyncBase:Type")
            if body_type in _SUPPORTED_BODY_TYPES:
                return body_type, _int(findtext(pref, "AirSyncBase:TruncationSize"))
        return "1", None
