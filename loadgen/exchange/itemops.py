"""The ItemOperations command of the embedded target (MS-ASCMD 2.2.1.10): Fetch.

* Fetch of an attachment: ``Fetch/{Store "Mailbox", airsyncbase:FileReference,
  [Options/Range]}`` -> ``Response/Fetch/{Status, airsyncbase:FileReference,
  Properties/{airsyncbase:ContentType, [Range, Total], Data}}``, Data being the base64
  of the bytes (MS-ASCMD 2.2.3.39.2).  An unknown or empty file reference is Status 15
  "attachment or attachment ID is invalid" (MS-ASAIRS: a zero-length FileReference is 15).
  ``Range`` "first-last" (bytes, inclusive) returns that part with the Total size; a
  range that starts beyond the data is Status 8 "the byte-range is invalid or too large".
* Fetch of an item (any folder of the mail store, store.py): ``Fetch/{Store, airsync:CollectionId, airsync:ServerId,
  [Options/airsyncbase:BodyPreference]}`` -> ``Fetch/{Status, CollectionId, ServerId,
  airsync:Class, Properties/{airsyncbase:Body}}``; a message that does not exist is
  Status 6 "the object was not found".
* Anything else in the request (Move, EmptyFolderContents, a Fetch without Store, a
  second FileReference in one Fetch) is Status 2, per operation.  A body that is not an
  ItemOperations request at all is the top-level Status 2.
  Status codes: MS-ASCMD 2.2.3.177.8.

Every fetch is remembered on the device's record (``sync.observe``): the attachment
file references and the BodyPreference of body fetches, so that tests and the admin
can check what a device downloaded against the policy it acknowledged.
"""

import base64

from _wbxml import children, encode, find, findtext
from loadgen.exchange.sync import _body, observe, render

_CONTENT_TYPES = {"pdf": "application/pdf", "jpg": "image/jpeg", "txt": "text/plain",
                  "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                  "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
                  "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}
_SUPPORTED_BODY_TYPES = ("1", "2", "4")


def _status(n):
    return ("ItemOperations:Status", str(n))


def _range(text, size):
    """(start, end exclusive) of a Range "first-last" over ``size`` bytes, or None if invalid."""
    first, sep, last = (text or "").partition("-")
    if not sep or not first.isdigit() or not last.isdigit():
        return None
    start, end = int(first), int(last) + 1
    if start >= size or end <= start:
        return None
    return start, min(end, size)


class ItemOperationsResponder:
    def respond(self, record, box, tree):
        """(WBXML body, top-level status) for an ItemOperations request tree."""
        if tree is None or tree[0] != "ItemOperations:ItemOperations":
            return encode(("ItemOperations:ItemOperations", [_status(2)])), 2
        out = []
        for op in children(tree):
            if op[0] == "ItemOperations:Fetch":
                out.append(("ItemOperations:Fetch", self._fetch(record, box, op)))
            else:  # Move, EmptyFolderContents: not served here
                out.append((op[0], [_status(2)]))
        if not out:
            return encode(("ItemOperations:ItemOperations", [_status(2)])), 2
        return encode(("ItemOperations:ItemOperations", [_status(1), ("ItemOperations:Response", out)])), 1

    def _fetch(self, record, box, node):
        if findtext(node, "ItemOperations:Store") != "Mailbox":
            return [_status(2)]  # document libraries (Store = a UNC or URL) are not served
        refs = [c for c in children(node) if c[0] == "AirSyncBase:FileReference"]
        if len(refs) > 1:
            return [_status(2)]  # one FileReference per Fetch (MS-ASCMD 2.2.3.8)
        if refs:
            return self._attachment(record, box, node, refs[0][1] if type(refs[0][1]) is str else "")
        return self._message(record, box, node)

    @staticmethod
    def _attachment(record, box, node, ref):
        found = box.attachment(ref) if ref else None
        if found is None:
            return [_status(15), ("AirSyncBase:FileReference", ref)]
        name, size, content_of = found
        observe(record, "fetch", ref)
        content = content_of()
        size = len(content)
        props = [("AirSyncBase:ContentType", _CONTENT_TYPES.get(name.rpartition(".")[2], "application/octet-stream"))]
        wanted = findtext(node, "ItemOperations:Options/ItemOperations:Range")
        if wanted is not None:
            span = _range(wanted, size)
            if span is None:
                return [_status(8), ("AirSyncBase:FileReference", ref)]
            content = content[span[0]:span[1]]
            props += [("ItemOperations:Range", "%d-%d" % (span[0], span[1] - 1)), ("ItemOperations:Total", str(size))]
        props.append(("ItemOperations:Data", base64.b64encode(content).decode("ascii")))
        return [_status(1), ("AirSyncBase:FileReference", ref), ("ItemOperations:Properties", props)]

    @staticmethod
    def _message(record, box, node):
        cid = findtext(node, "AirSync:CollectionId")
        sid = findtext(node, "AirSync:ServerId")
        if cid is None or sid is None:
            return [_status(2)]
        found = box.item_by_id(sid) if type(sid) is str else None
        if found is None or found[0] != cid:
            return [_status(6), ("AirSync:CollectionId", cid), ("AirSync:ServerId", sid)]
        fid, n, item = found
        body_type, truncation = "1", None
        options = find(node, "ItemOperations:Options")
        raw_type = raw_truncation = None
        if options is not None:
            for pref in children(options):
                if pref[0] != "AirSyncBase:BodyPreference":
                    continue
                raw_type = findtext(pref, "AirSyncBase:Type")
                raw_truncation = findtext(pref, "AirSyncBase:TruncationSize")
                if raw_type in _SUPPORTED_BODY_TYPES:
                    body_type = raw_type
                    try:
                        truncation = int(raw_truncation) if raw_truncation is not None else None
                    except ValueError:
                        truncation = None
                    break
        observe(record, "fetch_body", (raw_type, raw_truncation))
        if item.cls == "Email":
            props = [_body(item, body_type, truncation)]
        else:
            props = render(box, fid, n, item, body_type, truncation)
        return [_status(1), ("AirSync:CollectionId", cid), ("AirSync:ServerId", sid), ("AirSync:Class", item.cls),
                ("ItemOperations:Properties", props)]


_RESPONDER = ItemOperationsResponder()


def handle(target, record, version, tree):
    """The Target's handler (server.py ``_handlers``): answer and count like the other commands."""
    body, status = _RESPONDER.respond(record, target.state.mailbox(record.user), tree)
    return target._wbxml("ItemOperations", body, status)
