"""MoveItems of the embedded target (MS-ASCMD 2.2.1.12).

Request ``MoveItems/Move/{SrcMsgId, SrcFldId, DstFldId}`` (one or more Move); response
``MoveItems/Response/{SrcMsgId, Status, DstMsgId}`` per Move, in the request's order (MS-ASCMD 4.15.2).
Status per item (MS-ASCMD 2.2.3.177.10): 1 invalid source collection or item id (also an item that was
already moved out), 2 invalid destination collection id (also a folder of another class: a message
into the calendar), 3 success with the item's new id in DstMsgId, 4 source and destination are the
same folder.  Both folders' change logs record the move (a delete in the source, an add in the
destination, store.py), made by this device: its other devices see it at their next Sync, it does not.
A body that is not a MoveItems request is the common status 103 InvalidXML (MS-ASCMD 2.2.2).
"""

from _wbxml import children, encode, findtext


def move_all(target, record, tree):
    """The Response children for a MoveItems tree, or None when it is not one."""
    if tree is None or tree[0] != "Move:MoveItems" or type(tree[1]) is not list:
        return None
    box = target.state.mailbox(record.user)
    folders = target.folder_ids
    out = []
    for move in children(tree):
        if move[0] != "Move:Move" or type(move[1]) is not list:
            continue
        src = findtext(move, "Move:SrcMsgId")
        src_folder = findtext(move, "Move:SrcFldId")
        dst_folder = findtext(move, "Move:DstFldId")
        src = src if type(src) is str else ""
        status, new = _one(box, folders, record.device_id, src, src_folder, dst_folder)
        response = [("Move:SrcMsgId", src), ("Move:Status", str(status))]
        if new is not None:
            response.append(("Move:DstMsgId", new))
        out.append(("Move:Response", response))
    return out or None


def _one(box, folders, origin, src, src_folder, dst_folder):
    if type(src_folder) is not str or src_folder not in folders:
        return 1, None
    if type(dst_folder) is not str or dst_folder not in folders:
        return 2, None
    if src_folder == dst_folder:
        return 4, None
    fid, _, number = src.partition(":")
    if fid != src_folder or not number.isdigit():
        return 1, None
    n = int(number)
    item = box.item(fid, n)
    if item is None:
        return 1, None
    if box.folder(dst_folder).cls != item.cls:
        return 2, None
    new = box.move(fid, n, dst_folder, origin)
    box.store.counters["moved"] += 1
    return 3, "%s:%d" % (dst_folder, new)


def handle(target, record, version, tree):
    """The Target's handler (server.py ``_handlers``)."""
    out = move_all(target, record, tree)
    if out is None:
        return target._error("MoveItems", version, 400, 103)
    return target._wbxml("MoveItems", encode(("Move:MoveItems", out)), 3)
