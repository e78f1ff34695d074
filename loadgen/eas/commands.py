"""Request builders and response parsers for the EAS commands a device uses.

Requests that differ only in one or two values are pre-encoded once as
``_wbxml.Template`` objects; a builder call only splices the values in.

Every parser returns the command's root ``Status`` the same way (``status``),
so that the caller can recognise the in-band re-provision statuses 140-145
(MS-ASCMD 2.2.2; docs/protocol-notes.md, 449 vs in-band statuses 139-145 and how Exchange chooses) whatever the command.
"""

import base64
import binascii
from dataclasses import dataclass, field
from typing import NamedTuple

from _wbxml import Slot, Template, encode, find, findtext
from loadgen.eas.policy import policy_from_tree
from loadgen.eas.versions import POLICY_TYPE_WBXML

DEVICE_INFO_FIELDS = (
    "Model", "IMEI", "FriendlyName", "OS", "OSLanguage", "PhoneNumber", "MobileOperator", "UserAgent",
)


_DEVICE_INFO_TAGS = tuple((name, "Settings:" + name) for name in DEVICE_INFO_FIELDS)


def _device_info_fields(info):
    """(tags, values) of the DeviceInformation fields given (in spec order)."""
    tags = []
    values = []
    for name, tag in _DEVICE_INFO_TAGS:
        value = info.get(name)
        if value:
            tags.append(tag)
            values.append(value)
    if "EnableOutboundSMS" in info:
        tags.append("Settings:EnableOutboundSMS")
        values.append(str(info["EnableOutboundSMS"]))
    return tags, values


def device_information(info):
    """``Settings:DeviceInformation`` with a ``Set`` of the given fields (in spec order)."""
    tags, values = _device_info_fields(info)
    return ("Settings:DeviceInformation", [("Settings:Set", list(zip(tags, values)))])


def _policies(policy_type, *inner):
    return ("Provision:Policies", [("Provision:Policy", [("Provision:PolicyType", policy_type), *inner])])


def provision_initial(device_info=None, policy_type=POLICY_TYPE_WBXML):
    """Initial Provision request (bytes); DeviceInformation only when given (14.1+).

    Every device sends one with its own DeviceInformation values, so the document is
    pre-encoded once per (set of fields present, policy type) as a Template and only
    the values are spliced in (tests/test_commands_fast.py: equal to ``encode``)."""
    if device_info is None:
        return _initial_template(None, policy_type).render()
    tags, values = _device_info_fields(device_info)
    return _initial_template(tuple(tags), policy_type).render(*values)


_INITIAL_TEMPLATES = {}  # (DeviceInformation tags present or None, policy type) -> Template


def _initial_template(tags, policy_type):
    key = (tags, policy_type)
    template = _INITIAL_TEMPLATES.get(key)
    if template is None:
        children = []
        if tags is not None:
            children.append(("Settings:DeviceInformation", [("Settings:Set", [(tag, Slot(tag)) for tag in tags])]))
        children.append(_policies(policy_type))
        if len(_INITIAL_TEMPLATES) > 256:
            _INITIAL_TEMPLATES.clear()
        template = _INITIAL_TEMPLATES[key] = Template(("Provision:Provision", children))
    return template


# Acknowledgement: PolicyKey MUST come before Status (MS-ASPROV 2.2.2.41).
_ACK = Template(("Provision:Provision", [_policies(
    POLICY_TYPE_WBXML, ("Provision:PolicyKey", Slot("key")), ("Provision:Status", Slot("status")))]))


def provision_ack(temporary_key, ack_status):
    return _ACK.render(temporary_key, str(int(ack_status)))


_WIPE_ACK = Template(("Provision:Provision", [("Provision:RemoteWipe", [("Provision:Status", Slot("status"))])]))
_ACCOUNT_WIPE_ACK = Template(
    ("Provision:Provision", [("Provision:AccountOnlyRemoteWipe", [("Provision:Status", Slot("status"))])]))


def remote_wipe_ack(status, account_only=False):
    """The device's acknowledgement of a (account-only) remote wipe (MS-ASPROV 3.1.5.1.2.2 / 3.1.5.1.2.3,
    examples in 4.2)."""
    return (_ACCOUNT_WIPE_ACK if account_only else _WIPE_ACK).render(str(int(status)))


def settings_device_information(device_info):
    """Settings request that sets DeviceInformation (12.1/14.0; MS-ASCMD 2.2.3.45, docs/protocol-notes.md, ABQ
    and DeviceInformation)."""
    return encode(("Settings:Settings", [device_information(device_info)]))


_FOLDERSYNC = Template(("FolderHierarchy:FolderSync", [("FolderHierarchy:SyncKey", Slot("key"))]))


def foldersync(sync_key="0"):
    return _FOLDERSYNC.render(sync_key)


# --------------------------------------------------------------------------- parsers


def root_status(tree):
    """The integer Status directly under the root, or None."""
    if tree is None or type(tree[1]) is not list:
        return None
    for tag, content in tree[1]:
        if tag.endswith(":Status") and type(content) is str:
            try:
                return int(content.split()[0])
            except (ValueError, IndexError):
                return None
    return None


@dataclass
class ProvisionResponse:
    status: int | None
    policy_status: int | None = None
    policy_type: str | None = None
    policy_key: str | None = None
    policy: dict | None = None  # EASProvisionDoc settings, initial response only
    remote_wipe: bool = False
    account_only_wipe: bool = False
    device_info_status: int | None = None


def _int_or_none(text):
    try:
        return int(text.split()[0]) if text else None
    except (ValueError, IndexError):
        return None


_ABSENT = object()  # no element with the tag (yet): the first one found is the one that counts, as for findtext


def _text(content, default=None):
    """What ``findtext`` returns for the first element of a tag whose content is ``content``."""
    if type(content) is str:
        return content
    if content is None or content == []:
        return ""
    return default


_POLICY_DOCS = {}  # EASProvisionDoc children (hashable) -> policy_from_tree's dict, shared (read-only)


def _policy_doc(doc):
    """``policy_from_tree(doc)``, computed once per distinct document: every device enrolling
    under the same policy gets the same dict (as provisioning._shared would give it anyway)."""
    content = doc[1]
    if type(content) is not list:
        return policy_from_tree(doc)
    try:
        key = tuple(content)
        found = _POLICY_DOCS.get(key)  # hashes the children: TypeError for application lists
    except TypeError:
        return policy_from_tree(doc)
    if found is None:
        if len(_POLICY_DOCS) > 1000:
            _POLICY_DOCS.clear()
        found = _POLICY_DOCS[key] = policy_from_tree(doc)
    return found


def parse_provision(tree):
    """The answer to a Provision request.  ``policy`` (the EASProvisionDoc settings) is shared
    by every answer carrying the same document: read-only."""
    if tree is None or tree[0] != "Provision:Provision":
        raise ValueError("not a Provision response: root %r" % (tree and tree[0],))
    result = ProvisionResponse(status=root_status(tree))
    for tag, content in tree[1] if type(tree[1]) is list else ():
        if tag == "Provision:RemoteWipe":
            result.remote_wipe = True
        elif tag == "Provision:AccountOnlyRemoteWipe":
            result.account_only_wipe = True
        elif tag == "Settings:DeviceInformation":
            result.device_info_status = _int_or_none(findtext((tag, content), "Settings:Status"))
        elif tag == "Provision:Policies" and type(content) is list:
            for ptag, pcontent in content:
                if ptag != "Provision:Policy" or type(pcontent) is not list:
                    continue
                # one pass over the Policy's children; each field from the first element of its tag
                ptype = pstatus = key = _ABSENT
                for dtag, dcontent in pcontent:
                    if dtag == "Provision:PolicyKey":
                        if key is _ABSENT:
                            key = dcontent
                    elif dtag == "Provision:Status":
                        if pstatus is _ABSENT:
                            pstatus = dcontent
                    elif dtag == "Provision:PolicyType":
                        if ptype is _ABSENT:
                            ptype = dcontent
                    elif dtag == "Provision:Data" and type(dcontent) is list:
                        for doc in dcontent:
                            if doc[0] == "Provision:EASProvisionDoc":
                                result.policy = _policy_doc(doc)
                result.policy_type = None if ptype is _ABSENT else _text(ptype)
                result.policy_status = None if pstatus is _ABSENT else _int_or_none(_text(pstatus))
                key = None if key is _ABSENT else _text(key)
                result.policy_key = key.strip() if key is not None else None
                break
    return result


class Folder(NamedTuple):
    """A folder of a FolderSync Add (immutable: equal folders are shared between answers)."""

    server_id: str
    parent_id: str
    display_name: str
    type: int


@dataclass
class FolderSyncResponse:
    """A FolderSync answer (MS-ASCMD 2.2.1.5): the folders added, the folders updated (an Update,
    renamed or moved: its ServerId, ParentId, DisplayName and Type) and the ServerIds of the folders
    deleted (a Delete), besides the counts of Updates and Deletes."""

    status: int | None
    sync_key: str | None
    added: list
    changed: int = 0
    deleted: int = 0
    updated: list = field(default_factory=list)  # [Folder] of the Update elements
    deleted_ids: list = field(default_factory=list)  # ServerId texts of the Delete elements


_FOLDERS = {}  # an Add's children (hashable: leaves only) -> Folder, shared by every answer carrying them


def _shared_folder(ccontent, folders):
    """The Folder of an Add's or Update's children, shared through ``folders`` when hashable."""
    try:
        key = tuple(ccontent)
        folder = folders.get(key)  # hashes the children: TypeError for nested lists
    except TypeError:
        return _folder(ccontent)
    if folder is None:
        if len(folders) > 4096:
            folders.clear()
        folder = folders[key] = _folder(ccontent)
    return folder


def _folder(ccontent):
    """The Folder of one Add (or Update): each field from the first element of its tag, as findtext reads
    it (text, "" for an empty element, else the default "" / "0" / no type)."""
    server_id = parent_id = name = kind = _ABSENT
    for ftag, fcontent in ccontent:
        if ftag == "FolderHierarchy:ServerId":
            if server_id is _ABSENT:
                server_id = fcontent
        elif ftag == "FolderHierarchy:ParentId":
            if parent_id is _ABSENT:
                parent_id = fcontent
        elif ftag == "FolderHierarchy:DisplayName":
            if name is _ABSENT:
                name = fcontent
        elif ftag == "FolderHierarchy:Type":
            if kind is _ABSENT:
                kind = fcontent
    return Folder(
        server_id if type(server_id) is str else "",
        parent_id if type(parent_id) is str else ("" if parent_id is None or parent_id == [] else "0"),
        name if type(name) is str else "",
        (_int_or_none(kind) or 0) if type(kind) is str else 0,
    )


def parse_foldersync(tree):
    if tree is None or tree[0] != "FolderHierarchy:FolderSync":
        raise ValueError("not a FolderSync response: root %r" % (tree and tree[0],))
    content = tree[1]
    result = FolderSyncResponse(status=root_status(tree), sync_key=None, added=[])
    if type(content) is not list:
        result.sync_key = findtext(tree, "FolderHierarchy:SyncKey")
        return result
    sync_key = _ABSENT
    added = result.added
    folders = _FOLDERS
    for tag, content in content:
        if tag == "FolderHierarchy:SyncKey":
            if sync_key is _ABSENT:
                sync_key = content
            continue
        if tag != "FolderHierarchy:Changes" or type(content) is not list:
            continue
        for ctag, ccontent in content:
            if ctag == "FolderHierarchy:Add":
                if type(ccontent) is not list:
                    added.append(Folder("", "0", "", 0))
                    continue
                try:
                    key = tuple(ccontent)
                    folder = folders.get(key)  # hashes the children: TypeError for nested lists
                except TypeError:
                    added.append(_folder(ccontent))
                    continue
                if folder is None:
                    if len(folders) > 4096:
                        folders.clear()
                    folder = folders[key] = _folder(ccontent)
                added.append(folder)
            elif ctag == "FolderHierarchy:Update":
                result.changed += 1
                if type(ccontent) is list:
                    result.updated.append(_shared_folder(ccontent, folders))
            elif ctag == "FolderHierarchy:Delete":
                result.deleted += 1
                if type(ccontent) is list:
                    for dtag, dcontent in ccontent:
                        if dtag == "FolderHierarchy:ServerId":
                            if type(dcontent) is str:
                                result.deleted_ids.append(dcontent)
                            break
    # findtext's reading of the first SyncKey directly under the root: text, "" when empty
    result.sync_key = None if sync_key is _ABSENT else _text(sync_key)
    return result


# --------------------------------------------------------------------------- Sync (MS-ASCMD 2.2.1.21)

_SYNC_INITIAL = Template(("AirSync:Sync", [("AirSync:Collections", [("AirSync:Collection", [
    ("AirSync:SyncKey", "0"), ("AirSync:CollectionId", Slot("collection"))])])]))


def sync_initial(collection_id):
    """The first Sync of a folder: SyncKey 0 creates the sync state, no items come back."""
    return _SYNC_INITIAL.render(collection_id)


def sync_template(body_type, truncation_bytes, window_size, filter_type=None):
    """A pre-encoded Sync for one collection with GetChanges, FilterType and a BodyPreference.

    ``render(sync_key, collection_id)``.  ``truncation_bytes`` None (or negative) asks for
    the whole body (the element is left out); 0 is sent as 0 (a policy of 0 KB: headers
    only).  ``filter_type`` None leaves FilterType out (MS-ASCMD 2.2.3.70.2; Options
    children in the order FilterType, BodyPreference).
    """
    preference = [("AirSyncBase:Type", str(body_type))]
    if truncation_bytes is not None and truncation_bytes >= 0:
        preference.append(("AirSyncBase:TruncationSize", str(truncation_bytes)))
    options = [("AirSyncBase:BodyPreference", preference)]
    if filter_type is not None:
        options.insert(0, ("AirSync:FilterType", str(filter_type)))
    return Template(("AirSync:Sync", [("AirSync:Collections", [("AirSync:Collection", [
        ("AirSync:SyncKey", Slot("key")), ("AirSync:CollectionId", Slot("collection")),
        ("AirSync:DeletesAsMoves", "1"), ("AirSync:GetChanges", None), ("AirSync:WindowSize", str(window_size)),
        ("AirSync:Options", options),
    ])])]))


class AttachmentRef(NamedTuple):
    """An attachment announced in a Sync Add (MS-ASAIRS 2.2.2.7 Attachment)."""

    server_id: str  # the message
    file_reference: str  # airsyncbase:FileReference, what ItemOperations Fetch asks for
    estimated_size: int | None  # airsyncbase:EstimatedDataSize (bytes)


@dataclass
class SyncResponse:
    status: int | None  # Sync-level Status (errors only), else the collection's Status
    sync_key: str | None = None
    added: int = 0
    changed: int = 0
    deleted: int = 0
    more_available: bool = False
    attachments: list = None  # [AttachmentRef] of the added items (details=True only)
    truncated: list = None  # server ids of added items whose body came truncated (details=True only)


def _add_details(add, attachments, truncated):
    server_id = None
    data = None
    for tag, content in add[1] if type(add[1]) is list else ():
        if tag == "AirSync:ServerId":
            server_id = content
        elif tag == "AirSync:ApplicationData":
            data = content
    if type(data) is not list or type(server_id) is not str:
        return
    for tag, content in data:
        if type(content) is not list:
            continue
        if tag == "AirSyncBase:Attachments":
            for atag, acontent in content:
                if atag != "AirSyncBase:Attachment" or type(acontent) is not list:
                    continue
                ref = size = None
                for ftag, fvalue in acontent:
                    if ftag == "AirSyncBase:FileReference":
                        ref = fvalue
                    elif ftag == "AirSyncBase:EstimatedDataSize":
                        size = _int_or_none(fvalue) if type(fvalue) is str else None
                if ref and type(ref) is str:
                    attachments.append(AttachmentRef(server_id, ref, size))
        elif tag == "AirSyncBase:Body":
            for btag, bvalue in content:
                if btag == "AirSyncBase:Truncated" and bvalue in ("1", "true"):
                    truncated.append(server_id)
                    break


def parse_sync(tree, details=False):
    """A Sync response; ``None`` (an empty body) means nothing changed.  With ``details`` the
    attachments and truncated bodies of the added items are collected too."""
    if tree is None:
        return SyncResponse(status=1)
    if tree[0] != "AirSync:Sync":
        raise ValueError("not a Sync response: root %r" % (tree[0],))
    top = root_status(tree)
    collection = find(tree, "AirSync:Collections/AirSync:Collection")
    if collection is None:
        return SyncResponse(status=top)
    result = SyncResponse(status=top if top is not None else _int_or_none(findtext(collection, "AirSync:Status")),
                          sync_key=findtext(collection, "AirSync:SyncKey"))
    if details:
        result.attachments = []
        result.truncated = []
    for tag, content in collection[1] if type(collection[1]) is list else ():
        if tag == "AirSync:MoreAvailable":
            result.more_available = True
        elif tag == "AirSync:Commands" and type(content) is list:
            for ctag, ccontent in content:
                if ctag == "AirSync:Add":
                    result.added += 1
                    if details:
                        _add_details((ctag, ccontent), result.attachments, result.truncated)
                elif ctag == "AirSync:Change":
                    result.changed += 1
                elif ctag in ("AirSync:Delete", "AirSync:SoftDelete"):
                    result.deleted += 1
    return result


# --------------------------------------------------------------------------- ItemOperations (MS-ASCMD 2.2.1.10)
#
# Fetch of an attachment: ItemOperations/Fetch/{Store "Mailbox", airsyncbase:FileReference}
# (MS-ASCMD 2.2.3.8: one FileReference per Fetch; with a FileReference only Range may be in
# Options, so none is sent).  Fetch of a message body: Fetch/{Store, airsync:CollectionId,
# airsync:ServerId, Options/airsyncbase:BodyPreference}.  The response: ItemOperations/
# {Status, Response/Fetch/{Status, [FileReference | CollectionId, ServerId, Class],
# Properties/{...}}} (Status values: MS-ASCMD 2.2.3.177.8).

_FETCH_ATTACHMENT = Template(("ItemOperations:ItemOperations", [("ItemOperations:Fetch", [
    ("ItemOperations:Store", "Mailbox"), ("AirSyncBase:FileReference", Slot("ref"))])]))


def itemoperations_fetch_attachment(file_reference):
    """ItemOperations request fetching one attachment by its FileReference (bytes)."""
    return _FETCH_ATTACHMENT.render(file_reference)


def itemoperations_fetch_body(collection_id, server_id, body_type, truncation_bytes=None):
    """ItemOperations request fetching a message's body (bytes).  Seed 000: the truncation
    policies do "not restrict the size of items returned by the ItemOperations command", so a
    device normally passes no ``truncation_bytes``; ``body_type`` still follows AllowHTMLEmail."""
    preference = [("AirSyncBase:Type", str(body_type))]
    if truncation_bytes is not None and truncation_bytes >= 0:
        preference.append(("AirSyncBase:TruncationSize", str(truncation_bytes)))
    return encode(("ItemOperations:ItemOperations", [("ItemOperations:Fetch", [
        ("ItemOperations:Store", "Mailbox"), ("AirSync:CollectionId", collection_id),
        ("AirSync:ServerId", server_id),
        ("ItemOperations:Options", [("AirSyncBase:BodyPreference", preference)])])]))


@dataclass
class FetchResult:
    status: int | None
    file_reference: str | None = None
    server_id: str | None = None
    size: int = 0  # bytes of the fetched attachment (decoded) or body data


@dataclass
class ItemOperationsResponse:
    status: int | None
    fetches: list  # [FetchResult], in response order


def _fetch_result(node):
    result = FetchResult(_int_or_none(findtext(node, "ItemOperations:Status")),
                         findtext(node, "AirSyncBase:FileReference"), findtext(node, "AirSync:ServerId"))
    props = find(node, "ItemOperations:Properties")
    if props is not None:
        data = find(props, "ItemOperations:Data")
        if data is not None:  # base64 of the attachment (MS-ASCMD 2.2.3.39.2); opaque bytes accepted too
            content = data[1]
            if type(content) is bytes:
                result.size = len(content)
            elif type(content) is str:
                try:
                    result.size = len(base64.b64decode(content))
                except (ValueError, binascii.Error):
                    result.size = 0
        else:
            body = find(props, "AirSyncBase:Body/AirSyncBase:Data")
            if body is not None and type(body[1]) in (str, bytes):
                result.size = len(body[1].encode("utf-8") if type(body[1]) is str else body[1])
    return result


def parse_itemoperations(tree):
    if tree is None or tree[0] != "ItemOperations:ItemOperations":
        raise ValueError("not an ItemOperations response: root %r" % (tree and tree[0],))
    fetches = []
    response = find(tree, "ItemOperations:Response")
    if response is not None and type(response[1]) is list:
        for node in response[1]:
            if node[0] == "ItemOperations:Fetch":
                fetches.append(_fetch_result(node))
    return ItemOperationsResponse(root_status(tree), fetches)


# --------------------------------------------------------------------------- Ping (MS-ASCMD 2.2.1.13)

_PING = Template(("Ping:Ping", [("Ping:HeartbeatInterval", Slot("interval")), ("Ping:Folders", [
    ("Ping:Folder", [("Ping:Id", Slot("folder")), ("Ping:Class", "Email")])])]))


def ping(heartbeat_s, folder_id):
    """A full Ping (heartbeat and folder), accepted whether or not the server cached one."""
    return _PING.render(str(int(heartbeat_s)), folder_id)


@dataclass
class PingResponse:
    status: int | None
    heartbeat: int | None = None  # the allowed bound with Status 5
    folders: tuple = ()  # folders with changes with Status 2
    max_folders: int | None = None


def parse_ping(tree):
    if tree is None or tree[0] != "Ping:Ping":
        raise ValueError("not a Ping response: root %r" % (tree and tree[0],))
    folders = find(tree, "Ping:Folders")
    ids = tuple(c for t, c in (folders[1] if folders is not None and type(folders[1]) is list else ())
                if t == "Ping:Folder" and type(c) is str)
    return PingResponse(root_status(tree), _int_or_none(findtext(tree, "Ping:HeartbeatInterval")), ids,
                        _int_or_none(findtext(tree, "Ping:MaxFolders")))
