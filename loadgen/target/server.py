"""The embedded EAS target: an aiohttp server that answers as Exchange does.

Envelopes (Exchange's AirSyncResponse.SetErrorResponse, eas-protocol-facts.md (a)):
a policy or provisioning error goes in the command's root Status with HTTP 200
when the request's version can carry that code in-band (14.0 up to 163, 14.1
and later up to 177); otherwise the bare HTTP code (449 "Retry after sending a
PROVISION command", 403) is sent, as to every 12.x device.
"""

import asyncio
import logging

from aiohttp import web

import _wbxml
from _wbxml import Slot, Template, WBXMLError, encode, find, findtext
from loadgen.eas import versions
from loadgen.eas.commands import root_status
from loadgen.eas.policy import policy_to_tree
from loadgen.target.state import WIPE_ACKNOWLEDGED, WIPE_PENDING, WIPE_SENT, TargetState

log = logging.getLogger("easload.target")

WBXML = "application/vnd.ms-sync.wbxml"
SUPPORTED_VERSIONS = "2.5,12.0,12.1,14.0,14.1,16.0,16.1"
SUPPORTED_COMMANDS = ",".join((
    "Sync", "SendMail", "SmartForward", "SmartReply", "GetAttachment", "GetHierarchy", "CreateCollection",
    "DeleteCollection", "MoveCollection", "FolderSync", "FolderCreate", "FolderDelete", "FolderUpdate",
    "MoveItems", "GetItemEstimate", "MeetingResponse", "Search", "Settings", "Ping", "ItemOperations",
    "Provision", "ResolveRecipients", "ValidateCert",
))
SERVER_HEADERS = {"MS-Server-ActiveSync": "15.1", "Cache-Control": "private"}

# Command name -> (code page, root tag) for in-band error envelopes.
_ROOTS = {
    "Sync": "AirSync:Sync", "FolderSync": "FolderHierarchy:FolderSync", "FolderCreate": "FolderHierarchy:FolderCreate",
    "FolderDelete": "FolderHierarchy:FolderDelete", "FolderUpdate": "FolderHierarchy:FolderUpdate",
    "GetItemEstimate": "GetItemEstimate:GetItemEstimate", "MoveItems": "Move:MoveItems", "Ping": "Ping:Ping",
    "Settings": "Settings:Settings", "Provision": "Provision:Provision", "Search": "Search:Search",
    "ItemOperations": "ItemOperations:ItemOperations", "MeetingResponse": "MeetingResponse:MeetingResponse",
    "ResolveRecipients": "ResolveRecipients:ResolveRecipients", "ValidateCert": "ValidateCert:ValidateCert",
    "SendMail": "ComposeMail:SendMail", "SmartForward": "ComposeMail:SmartForward", "SmartReply": "ComposeMail:SmartReply",
}
_STATUS_TEMPLATES = {cmd: Template((root, [(root.partition(":")[0] + ":Status", Slot("s"))]))
                     for cmd, root in _ROOTS.items()}

DEFAULT_FOLDERS = (
    # (server id, parent, display name, type) -- MS-ASCMD 2.2.3.186.3 folder types
    ("1", "0", "Inbox", 2), ("2", "0", "Drafts", 3), ("3", "0", "Deleted Items", 4),
    ("4", "0", "Sent Items", 5), ("5", "0", "Outbox", 6), ("6", "0", "Tasks", 7),
    ("7", "0", "Calendar", 8), ("8", "0", "Contacts", 9), ("9", "0", "Notes", 10),
    ("10", "0", "Journal", 11),
)


def _foldersync_full(folders):
    adds = [("FolderHierarchy:Add", [
        ("FolderHierarchy:ServerId", sid), ("FolderHierarchy:ParentId", parent),
        ("FolderHierarchy:DisplayName", name), ("FolderHierarchy:Type", str(ftype)),
    ]) for sid, parent, name, ftype in folders]
    return Template(("FolderHierarchy:FolderSync", [
        ("FolderHierarchy:Status", "1"), ("FolderHierarchy:SyncKey", Slot("key")),
        ("FolderHierarchy:Changes", [("FolderHierarchy:Count", str(len(adds))), *adds]),
    ]))


_FOLDERSYNC_NONE = Template(("FolderHierarchy:FolderSync", [
    ("FolderHierarchy:Status", "1"), ("FolderHierarchy:SyncKey", Slot("key")),
    ("FolderHierarchy:Changes", [("FolderHierarchy:Count", "0")]),
]))
_FOLDERSYNC_BADKEY = encode(("FolderHierarchy:FolderSync", [("FolderHierarchy:Status", "9")]))
_SETTINGS_OK = encode(("Settings:Settings", [
    ("Settings:Status", "1"), ("Settings:DeviceInformation", [("Settings:Status", "1")])]))
_PROVISION_WIPE = encode(("Provision:Provision", [("Provision:Status", "1"), ("Provision:RemoteWipe", None)]))
_PROVISION_ACCOUNT_WIPE = encode(
    ("Provision:Provision", [("Provision:Status", "1"), ("Provision:AccountOnlyRemoteWipe", None)]))
_PROVISION_WIPE_ACKED = encode(("Provision:Provision", [("Provision:Status", "1")]))
_ACK_RESPONSE = Template(("Provision:Provision", [("Provision:Status", "1"), ("Provision:Policies", [
    ("Provision:Policy", [("Provision:PolicyType", Slot("type")), ("Provision:Status", Slot("status")),
                          ("Provision:PolicyKey", Slot("key"))])])]))
_POLICY_STATUS_ONLY = Template(("Provision:Provision", [("Provision:Status", "1"), ("Provision:Policies", [
    ("Provision:Policy", [("Provision:PolicyType", Slot("type")), ("Provision:Status", Slot("status"))])])]))


class Target:
    """aiohttp application around a :class:`TargetState`."""

    def __init__(self, state=None, folders=DEFAULT_FOLDERS):
        self.state = state or TargetState()
        self.folders = folders
        self._foldersync_full = _foldersync_full(folders)
        self._policy_template = None
        self._policy_template_version = None
        self.counters = {}  # (command, http status, eas status) -> count
        self.app = web.Application(client_max_size=16 * 1024 * 1024)
        self.app.router.add_route("OPTIONS", "/Microsoft-Server-ActiveSync", self.options)
        self.app.router.add_route("POST", "/Microsoft-Server-ActiveSync", self.post)

    # -- helpers

    def _count(self, command, http_status, eas_status):
        key = (command, http_status, eas_status)
        self.counters[key] = self.counters.get(key, 0) + 1

    def _wbxml(self, command, body, eas_status=None):
        self._count(command, 200, eas_status)
        return web.Response(body=body, content_type=WBXML, headers=SERVER_HEADERS)

    def _error(self, command, version, http_status, eas_status):
        """Exchange's SetErrorResponse: in-band when the version knows the code."""
        template = _STATUS_TEMPLATES.get(command)
        if template is not None and version is not None and version.in_band_status \
                and eas_status <= version.max_in_band_status:
            return self._wbxml(command, template.render(str(eas_status)), eas_status)
        self._count(command, http_status, eas_status)
        reason = "Retry after sending a PROVISION command" if http_status == 449 else None
        return web.Response(status=http_status, reason=reason, headers=SERVER_HEADERS)

    def _plain(self, command, http_status, text=None, headers=None):
        self._count(command, http_status, None)
        return web.Response(status=http_status, text=text, headers=headers)

    def _policy_response(self):
        state = self.state
        if self._policy_template_version != state.policy_version:
            self._policy_template = Template(("Provision:Provision", [
                ("Provision:Status", "1"),
                ("Provision:Policies", [("Provision:Policy", [
                    ("Provision:PolicyType", versions.POLICY_TYPE_WBXML),
                    ("Provision:Status", "1"),
                    ("Provision:PolicyKey", Slot("key")),
                    ("Provision:Data", [policy_to_tree(state.policy)]),
                ])]),
            ]))
            self._policy_template_version = state.policy_version
        return self._policy_template

    # -- handlers

    async def options(self, request):
        if self.state.authenticate(request.headers.get("Authorization")) is None:
            return self._unauthorized("OPTIONS")
        self._count("OPTIONS", 200, None)
        return web.Response(headers={
            **SERVER_HEADERS, "MS-ASProtocolVersions": SUPPORTED_VERSIONS,
            "MS-ASProtocolCommands": SUPPORTED_COMMANDS, "Allow": "OPTIONS,POST",
        })

    def _unauthorized(self, command):
        return self._plain(command, 401, "Unauthorized", {"WWW-Authenticate": 'Basic realm="easload"'})

    async def post(self, request):
        query = request.query
        command = query.get("Cmd")
        user_param = query.get("User")
        device_id = query.get("DeviceId")
        device_type = query.get("DeviceType")
        if not command or not user_param or not device_id or not device_type:
            return self._plain(command or "unknown", 400, "Cmd, User, DeviceId and DeviceType are required")
        user = self.state.authenticate(request.headers.get("Authorization"))
        if user is None:
            return self._unauthorized(command)
        version = versions.VERSIONS.get(request.headers.get("MS-ASProtocolVersion", ""))
        if version is None:
            return self._plain(command, 400, "unsupported MS-ASProtocolVersion")
        body = await request.read()
        tree = None
        if body:
            try:
                tree = _wbxml.decode(body)
            except WBXMLError:
                return self._error(command, version, 400, 102)  # InvalidWBXML
        record = self.state.device(user, device_id, device_type)
        record.version = version.text
        key = request.headers.get("X-MS-PolicyKey")
        if command == "Provision":
            return self.provision(record, version, key, tree)
        if command == "Ping" and not version.ping_policy_checked:
            pass  # Exchange checks Ping only from 14.0
        else:
            verdict = self.state.check(record, key)
            if verdict is not None:
                return self._error(command, version, *verdict)
        handler = self._handlers.get(command)
        if handler is None:
            return self._error(command, version, 501, 137)  # CommandNotSupported
        return handler(self, record, version, tree)

    def provision(self, record, version, key, tree):
        state = self.state
        if tree is None or tree[0] != "Provision:Provision":
            return self._wbxml("Provision", _STATUS_TEMPLATES["Provision"].render("2"), 2)
        wipe = find(tree, "Provision:RemoteWipe") or find(tree, "Provision:AccountOnlyRemoteWipe")
        if wipe is not None:
            if record.wipe == WIPE_SENT:
                record.wipe = WIPE_ACKNOWLEDGED
                try:
                    record.wipe_ack_status = int(findtext(wipe, "Provision:Status") or 0)
                except ValueError:
                    record.wipe_ack_status = 0
            return self._wbxml("Provision", _PROVISION_WIPE_ACKED, 1)
        if record.wipe in (WIPE_PENDING, WIPE_SENT):
            record.wipe = WIPE_SENT
            body = _PROVISION_ACCOUNT_WIPE if record.wipe_account_only else _PROVISION_WIPE
            return self._wbxml("Provision", body, 1)
        policy = find(tree, "Provision:Policies/Provision:Policy")
        if policy is None:
            return self._wbxml("Provision", _STATUS_TEMPLATES["Provision"].render("2"), 2)
        policy_type = findtext(policy, "Provision:PolicyType") or ""
        if policy_type != version.policy_type:
            return self._wbxml("Provision", _POLICY_STATUS_ONLY.render(policy_type, "3"), 1)
        ack_key = findtext(policy, "Provision:PolicyKey")
        if ack_key is None:  # initial request
            info = find(tree, "Settings:DeviceInformation/Settings:Set")
            if info is not None:
                record.device_info = {t.partition(":")[2]: v for t, v in info[1] if type(v) is str}
            if version.device_info_in_provision and not record.device_info.get("Model"):
                return self._wbxml("Provision", _STATUS_TEMPLATES["Provision"].render("165"), 165)
            if state.no_policy:
                return self._wbxml("Provision", _POLICY_STATUS_ONLY.render(policy_type, "2"), 1)
            temp = state.issue_temporary_key(record)
            return self._wbxml("Provision", self._policy_response().render(temp), 1)
        try:
            ack_status = int(findtext(policy, "Provision:Status") or "")
        except ValueError:
            return self._wbxml("Provision", _STATUS_TEMPLATES["Provision"].render("2"), 2)
        pstatus, policy_status, final = state.acknowledge(record, ack_key.strip(), ack_status)
        if pstatus != 1:
            return self._error("Provision", version, 403, pstatus)
        if policy_status != 1:
            return self._wbxml("Provision", _POLICY_STATUS_ONLY.render(policy_type, str(policy_status)), 1)
        return self._wbxml("Provision", _ACK_RESPONSE.render(policy_type, "1", final), 1)

    def foldersync(self, record, version, tree):
        sync_key = findtext(tree, "FolderHierarchy:SyncKey") if tree is not None else None
        if sync_key == "0":
            record.folder_sync_key = 1
            return self._wbxml("FolderSync", self._foldersync_full.render("1"), 1)
        if sync_key is not None and sync_key == str(record.folder_sync_key):
            return self._wbxml("FolderSync", _FOLDERSYNC_NONE.render(sync_key), 1)
        return self._wbxml("FolderSync", _FOLDERSYNC_BADKEY, 9)

    def settings(self, record, version, tree):
        info = find(tree, "Settings:DeviceInformation/Settings:Set") if tree is not None else None
        if info is not None:
            record.device_info = {t.partition(":")[2]: v for t, v in info[1] if type(v) is str}
        return self._wbxml("Settings", _SETTINGS_OK, 1)

    _handlers = {"FolderSync": foldersync, "Settings": settings}


async def start_target(host="127.0.0.1", port=0, state=None):
    """Start a target on ``host:port`` (0: a free port).  Returns (runner, target, url)."""
    target = Target(state)
    runner = web.AppRunner(target.app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    sockets = site._server.sockets  # the actual port when 0 was asked
    actual = sockets[0].getsockname()[1]
    return runner, target, "http://%s:%d/Microsoft-Server-ActiveSync" % (host, actual)


async def serve_forever(host, port, state, ready=None):
    runner, target, url = await start_target(host, port, state)
    if ready is not None:
        ready(url)
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        await runner.cleanup()


__all__ = ["Target", "TargetState", "start_target", "serve_forever", "root_status", "WIPE_PENDING"]
