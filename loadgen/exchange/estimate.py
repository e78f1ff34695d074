"""GetItemEstimate of the embedded target (MS-ASCMD 2.2.1.9).

Request (schema 6.20), both forms accepted whatever the version:
* 14.0 and later: ``Collections{Collection{airsync:SyncKey, CollectionId, [airsync:ConversationMode],
  [airsync:Options{[airsync:FilterType], [airsync:Class], [airsync:MaxItems]}]}*}`` (example 4.9.1);
* 12.x: ``Collection{Class, CollectionId, airsync:FilterType, airsync:SyncKey}``.
Answer (schema 6.21): ``GetItemEstimate{Response{Status, Collection{CollectionId, [Estimate]}}*}`` in
the request's order.

The Estimate is the number of items a Sync with that key would return now (sync.py): during the
first pass over a folder, its items not yet sent that pass the FilterType; then the folder's
change log since the device's position, one per item (an item added and deleted since counts
nothing; changes made by this device are not counted -- they are not sent back to it).  The key is
not advanced (MS-ASCMD 2.2.3.181.3).

Status per collection (MS-ASCMD 2.2.3.177.7): 1 success, 2 the collection is invalid (no such
folder), 3 the sync state is not primed (this device never synced the folder, or SyncKey 0),
4 the SyncKey is not the device's current one (MS-ASCMD 2.2.3.181.3: "MUST provide ... 4").
A body that is not a GetItemEstimate request is the common status 103 InvalidXML (MS-ASCMD 2.2.2).
"""

from _wbxml import children, encode, find, findtext
from loadgen.exchange import store as st
from loadgen.exchange.sync import _FILTER_DAYS, SyncState, _in_filter


def _filter_type(node):
    """The FilterType of a Collection: a direct child (12.x) or in an Options (14.0+)."""
    value = findtext(node, "AirSync:FilterType")
    if value is not None:
        return value
    for option in children(node):
        if option[0] == "AirSync:Options" and type(option[1]) is list:
            value = findtext(option, "AirSync:FilterType")
            if value is not None:
                return value
    return None


def estimate(box, folder, state, origin, filter_type):
    """The number of items a Sync from ``state`` would send (see the module docstring)."""
    fid, cls = folder.fid, folder.cls
    days = _FILTER_DAYS.get(filter_type)
    cutoff = box.store.clock() - days * 86400 if days else None
    count = 0
    if state.cursor is not None:
        cursor = state.cursor
        if cutoff is not None and cls == "Email":  # generated mail is in date order (as sync.py skips it)
            cursor = max(cursor, box.store.first_after(box, fid, cutoff) - 1)
        for n in folder.numbers(cursor):
            if n >= state.end:
                break
            if cutoff is None and filter_type != "8":
                count += 1
                continue
            item = box.item(fid, n)
            if item is not None and _in_filter(item, cls, cutoff, filter_type):
                count += 1
    entries = folder.since(state.pos)
    if entries is None:
        return None
    last = {}  # n -> (first op, last op) of the entries of other origins
    for _cn, op, n, who in entries:
        if who == origin:
            continue
        seen = last.get(n)
        last[n] = (op if seen is None else seen[0], op)
    for first, final in last.values():
        if final == st.DELETE and first == st.ADD:
            continue  # added and deleted since: nothing to send
        count += 1
    return count


def _one(box, record, folder_ids, node):
    """(collection id, status, estimate or None) of one Collection."""
    cid = findtext(node, "GetItemEstimate:CollectionId")
    key = findtext(node, "AirSync:SyncKey")
    if type(cid) is not str or cid not in folder_ids:
        return (cid if type(cid) is str else ""), 2, None
    state = record.sync.get(cid)
    if type(key) is not str or key == "0" or type(state) is not SyncState:
        return cid, 3, None
    if key != str(state.key):
        return cid, 4, None
    folder = box.folder(cid)
    count = estimate(box, folder, state, record.device_id, _filter_type(node))
    if count is None:  # behind the change log: its next Sync gets Status 3
        return cid, 4, None
    return cid, 1, count


def respond(target, record, tree):
    """The Response children of a GetItemEstimate tree, or None when it is not one."""
    if tree is None or tree[0] != "GetItemEstimate:GetItemEstimate" or type(tree[1]) is not list:
        return None
    collections = find(tree, "GetItemEstimate:Collections")
    if collections is None or type(collections[1]) is not list:
        return None
    box = target.state.mailbox(record.user)
    out = []
    for node in children(collections):
        if node[0] != "GetItemEstimate:Collection" or type(node[1]) is not list:
            continue
        cid, status, count = _one(box, record, target.folder_ids, node)
        collection = [("GetItemEstimate:CollectionId", cid)]
        if count is not None:
            collection.append(("GetItemEstimate:Estimate", str(count)))
        out.append(("GetItemEstimate:Response", [("GetItemEstimate:Status", str(status)),
                                                 ("GetItemEstimate:Collection", collection)]))
    return out or None


def handle(target, record, version, tree):
    """The Target's handler (handlers.py)."""
    out = respond(target, record, tree)
    if out is None:
        return target._error("GetItemEstimate", version, 400, 103)
    return target._wbxml("GetItemEstimate", encode(("GetItemEstimate:GetItemEstimate", out)), 1)
