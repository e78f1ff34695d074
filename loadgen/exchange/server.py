"""The embedded EAS target: an aiohttp server that answers as Exchange does.

Envelopes (Exchange's AirSyncResponse.SetErrorResponse; docs/protocol-notes.md, 449 vs in-band statuses 139-145
and how Exchange chooses):
a policy or provisioning error goes in the command's root Status with HTTP 200
when the request's version can carry that code in-band (14.0 up to 163, 14.1
and later up to 177); otherwise the bare HTTP code (449 "Retry after sending a
PROVISION command", 403) is sent, as to every 12.x device.

Order of the checks for an EAS POST (each cited where it is implemented):
query (400) -> authentication (401) -> protocol version (400) -> device
partnership limit (177) -> throttling (503) -> WBXML decode (102) -> remote
wipe / policy (IsPolicyCompliant, state.py) -> unknown command (501) ->
Allow/Block/Quarantine (129) -> the command.  A catch-all middleware turns any
unexpected exception into a logged 500 with no traceback in the body, and
applies the injected faults (faults.py).
"""

import asyncio
import logging
import random
import re
import socket
import struct

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

import _wbxml
from _wbxml import Slot, Template, WBXMLError, encode, find, findtext
from loadgen.eas import versions
from loadgen.eas.commands import root_status
from loadgen.eas.policy import policy_to_tree
from loadgen.wire.loop import install_stop_signals
from loadgen.exchange import abq, compose, handlers, itemops, moveitems, search
import functools  # noqa: E402 -- Autodiscover route

from loadgen.exchange import autodiscover  # noqa: E402
from loadgen.exchange.faults import Faults
from loadgen.exchange.store import FOLDERS
from loadgen.exchange.sync import SyncResponder, SyncState, hold_interval
from loadgen.exchange.state import (
    WIPE_ACKNOWLEDGED, WIPE_PENDING, WIPE_SENT, WIPE_WIPED, TargetState,
)
from loadgen.exchange.throttle import COMMAND_FREQUENCY, OUT_OF_BUDGETS

log = logging.getLogger("easload.target")


class _ClientErrorFilter(logging.Filter):
    """aiohttp logs a request its parser refuses (a byte that is not allowed in the request line
    or a header, a header line longer than it takes: RFC 9112 3, 5) with a traceback, although it
    answers 400 and the fault is the client's.  Such a record becomes one line without the
    traceback and without the message (which quotes the client's bytes: they may hold credentials)."""

    def filter(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500:
            record.msg = "refused a malformed request (%s, HTTP %d)"
            record.args = (type(exc).__name__, exc.code)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


#: the logger of the target's (and its admin API's) HTTP servers: aiohttp's, with the filter above
HTTP_LOG = logging.getLogger("easload.target.http")
HTTP_LOG.addFilter(_ClientErrorFilter())

# The plain-text query value (MS-ASHTTP 2.2.1.1.1.2): device-id = 1*32(ALPHA / DIGIT);
# command-name = 1*ALPHA (a digit is let through too: an unknown command is 501 / 137, as for
# any name the target does not serve); user-name and device-type are 1*VCHAR -- printable text
# is accepted for them (a directory's user names are not all ASCII), up to MAX_QUERY_VALUE characters.
_COMMAND_NAME = re.compile(r"[A-Za-z0-9]{1,64}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9]{1,32}")
MAX_QUERY_VALUE = 256

WBXML = "application/vnd.ms-sync.wbxml"
SUPPORTED_VERSIONS = "2.5,12.0,12.1,14.0,14.1,16.0,16.1"
SUPPORTED_COMMANDS = ",".join((
    "Sync", "SendMail", "SmartForward", "SmartReply", "GetAttachment", "GetHierarchy", "CreateCollection",
    "DeleteCollection", "MoveCollection", "FolderSync", "FolderCreate", "FolderDelete", "FolderUpdate",
    "MoveItems", "GetItemEstimate", "MeetingResponse", "Search", "Settings", "Ping", "ItemOperations",
    "Provision", "ResolveRecipients", "ValidateCert",
))
SERVER_HEADERS = {"MS-Server-ActiveSync": "15.1", "Cache-Control": "private"}
_WITHOUT_PROVISION = ",".join(c for c in SUPPORTED_COMMANDS.split(",") if c != "Provision")
KNOWN_COMMANDS = frozenset(SUPPORTED_COMMANDS.split(",")) | {"Find", "OPTIONS", "Autodiscover"}
# Quarantine model (see Target._abq).
QUARANTINE_ALLOWED = frozenset({"Settings", "FolderSync"})

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

# (server id, parent, display name, type) -- MS-ASCMD 2.2.3.186.3 folder types: the default folders
# and three user mail folders (type 12) under the Inbox, the same for every mailbox (store.py)
DEFAULT_FOLDERS = FOLDERS


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
_PROVISION_WIPE = encode(("Provision:Provision", [("Provision:Status", "1"), ("Provision:RemoteWipe", None)]))
_PROVISION_ACCOUNT_WIPE = encode(
    ("Provision:Provision", [("Provision:Status", "1"), ("Provision:AccountOnlyRemoteWipe", None)]))
_PING_EXPIRED = encode(("Ping:Ping", [("Ping:Status", "1")]))
_PING_CHANGED = Template(("Ping:Ping", [("Ping:Status", "2"), ("Ping:Folders", [("Ping:Folder", Slot("id"))])]))
_PING_BOUND = Template(("Ping:Ping", [("Ping:Status", "5"), ("Ping:HeartbeatInterval", Slot("hbi"))]))
_PING_MAXFOLDERS = Template(("Ping:Ping", [("Ping:Status", "6"), ("Ping:MaxFolders", Slot("max"))]))
_SYNC_BOUND = Template(("AirSync:Sync", [("AirSync:Status", "14"), ("AirSync:Limit", Slot("limit"))]))
_HELD = web.RequestKey("easload_held", bool)  # on a request that was parked (a held Sync): its own histogram
_PROVISION_WIPE_ACKED = encode(("Provision:Provision", [("Provision:Status", "1")]))
_ACK_RESPONSE = Template(("Provision:Provision", [("Provision:Status", "1"), ("Provision:Policies", [
    ("Provision:Policy", [("Provision:PolicyType", Slot("type")), ("Provision:Status", Slot("status")),
                          ("Provision:PolicyKey", Slot("key"))])])]))
_POLICY_STATUS_ONLY = Template(("Provision:Provision", [("Provision:Status", "1"), ("Provision:Policies", [
    ("Provision:Policy", [("Provision:PolicyType", Slot("type")), ("Provision:Status", Slot("status"))])])]))


class Histogram:
    """Fixed-bucket latency histogram per command (exposed by metrics.py; no per-request allocation)."""

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
               600, 1200, 1800, 3600)

    def __init__(self):
        self.data = {}  # label -> [bucket counts..., +Inf count, sum]

    def observe(self, label, seconds):
        row = self.data.get(label)
        if row is None:
            row = self.data[label] = [0] * (len(self.BUCKETS) + 1) + [0.0]
        for i, bound in enumerate(self.BUCKETS):
            if seconds <= bound:
                row[i] += 1
                break
        else:
            row[len(self.BUCKETS)] += 1
        row[-1] += seconds


def _command_label(command):
    return command if command in KNOWN_COMMANDS else "other"


class Target:
    """aiohttp application around a :class:`TargetState`."""

    def __init__(self, state=None, folders=DEFAULT_FOLDERS, faults=None):
        self.state = state or TargetState()
        self.folders = folders
        self.folder_ids = frozenset(f[0] for f in folders)
        self._foldersync_full = _foldersync_full(folders)
        self._policy_template = None
        self._policy_template_version = None
        self._sync = SyncResponder(folders)
        self.faults = faults or Faults()
        self.counters = {}  # (command, http status, eas status) -> count; command bounded (KNOWN_COMMANDS)
        self.throttled = {}  # X-MS-ASThrottle reason -> count
        self.durations = Histogram()  # request duration by command, Ping excluded
        self.ping_durations = Histogram()  # Ping is held on purpose: its own histogram
        self.held_sync_durations = Histogram()  # so is a Sync with Wait / HeartbeatInterval that was held
        self.held_pings = 0
        self.held_syncs = 0
        self.sync_holds = {}  # how held Syncs ended: "changes", "expired", "refused" (Status 14 / 4) -> count
        self._ping_futures = set()
        self.http_server = None  # aiohttp's server of the EAS side (start_target): its connections
        self.app = web.Application(client_max_size=16 * 1024 * 1024, middlewares=[self._middleware])
        self.app.router.add_route("OPTIONS", self.state.eas_path, self.options)  # mount path: state.eas_path
        self.app.router.add_route("POST", self.state.eas_path, self.post)
        for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):  # exchange/autodiscover.py
            self.app.router.add_route("*", path, functools.partial(autodiscover.handle, self))
        self._challenged = set()  # peers already challenged (state.challenge_first)
        self.app.on_shutdown.append(self._on_shutdown)

    # -- admin actions that belong to the HTTP side

    def set_faults(self, **cfg):
        """Admin: replace the fault injection configuration (faults.py); {} turns faults off."""
        Faults(**cfg)  # validate first: a bad configuration changes nothing
        self.faults.configure(**cfg)
        return self.faults.to_dict()

    def drop_connections(self, fraction, seed=None):
        """Admin (an incident: a network failure between the phones and the server): a random
        ``fraction`` of the open client connections reset (RST), held Pings among them; the
        devices reconnect (and, over https, shake hands again).  How many were cut."""
        server = self.http_server
        if server is None:
            return 0
        conns = [(t.get_extra_info("peername") or (), i, t) for i, t in enumerate(server._connections.values())
                 if t is not None and not t.is_closing()]
        conns.sort(key=lambda c: (str(c[0]), c[1]))
        n = round(len(conns) * float(fraction))
        chosen = random.Random(seed).sample(conns, n) if n else []
        for _peer, _i, transport in chosen:
            _abort(transport)
        return len(chosen)

    def expire_pings(self):
        """Answer every held Ping (Status 1) and held Sync (empty) now; used at shutdown."""
        for fut in list(self._ping_futures):
            if not fut.done():
                fut.set_result(None)

    async def _on_shutdown(self, app):
        self.expire_pings()

    # -- helpers

    def _count(self, command, http_status, eas_status):
        key = (_command_label(command), http_status, eas_status)
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

    def _throttled(self, command, reason, retry_after):
        """HTTP 503 + X-MS-ASThrottle + Retry-After, no EAS status (docs/protocol-notes.md, Throttling and
        device reaction; throttle.py)."""
        self.throttled[reason] = self.throttled.get(reason, 0) + 1
        return self._plain(command, 503, "Service Unavailable",
                           {**SERVER_HEADERS, "X-MS-ASThrottle": reason, "Retry-After": str(retry_after)})

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

    # -- middleware: timing, faults, catch-all

    @web.middleware
    async def _middleware(self, request, handler):
        loop = asyncio.get_running_loop()
        start = loop.time()
        command = request.query.get("Cmd") or request.method
        try:
            faults = self.faults
            if faults.active and faults.applies(command) and request.method == "POST":
                resp = await self._with_faults(request, handler, command)
            else:
                resp = await handler(request)
        except web.HTTPException:
            raise
        except Exception:  # no traceback in the body (issue item 7); the log has it
            log.exception("unexpected error while answering %s", _command_label(command))
            resp = self._plain(command, 500, "Internal Server Error")
        label = _command_label(command)
        if label == "Ping":
            self.ping_durations.observe(label, loop.time() - start)
        elif request.get(_HELD):
            self.held_sync_durations.observe(label, loop.time() - start)
        else:
            self.durations.observe(label, loop.time() - start)
        return resp

    async def _with_faults(self, request, handler, command):
        faults = self.faults
        delay = faults.delay()
        if delay > 0:
            faults.hit("latency")
            await asyncio.sleep(delay)
        if faults.chance(faults.reset_rate):
            faults.hit("reset")
            self._count(command, 0, None)
            _reset(request)
            return web.Response(status=500)  # never reaches the client: the connection is gone
        code = faults.error_status()
        if code is not None:
            faults.hit("http_%d" % code)
            headers = {"Retry-After": str(faults.retry_after)} if code == 503 else None
            return self._plain(command, code, "injected fault", headers)
        resp = await handler(request)
        if isinstance(resp, web.Response) and resp.content_type == WBXML and resp.body:
            kind, body = faults.mangle(resp.body)
            if kind is not None:
                faults.hit(kind)
                resp.body = body
            trickle = faults.trickle
            if trickle and faults.chance(trickle["rate"]):
                faults.hit("trickle")
                resp = await self._trickle(request, resp, int(trickle["chunk"]), float(trickle["interval"]))
        if faults.close_after_response:
            faults.hit("close")
            await resp.prepare(request)
            await resp.write_eof()
            request.protocol.force_close()  # after the response: no Connection: close header was sent
        return resp

    @staticmethod
    async def _trickle(request, resp, chunk, interval):
        body = bytes(resp.body)
        out = web.StreamResponse(status=resp.status, headers=resp.headers)
        out.content_length = len(body)
        await out.prepare(request)
        for i in range(0, len(body), max(1, chunk)):
            await out.write(body[i:i + chunk])
            await asyncio.sleep(interval)
        await out.write_eof()
        return out

    # -- handlers

    async def options(self, request):
        authorization = request.headers.get("Authorization")
        if self.state.authenticate(authorization) is None or self._challenge(request):
            return self._unauthorized("OPTIONS", authorization, bearer=True)
        self._count("OPTIONS", 200, None)
        return web.Response(headers={
            **SERVER_HEADERS, "MS-ASProtocolVersions": SUPPORTED_VERSIONS,
            "MS-ASProtocolCommands": _WITHOUT_PROVISION if self.state.options_without_provision else SUPPORTED_COMMANDS,
            "Allow": "OPTIONS,POST",
        })

    def _unauthorized(self, command, authorization=None, bearer=False):
        """401 with a Basic challenge (RFC 7617).  With ``bearer`` (EAS, where Bearer tokens are accepted
        too: TargetState.authenticate), the challenge of the scheme the request tried: for a Bearer
        token Bearer with ``error="invalid_token"`` (RFC 6750 3.1: expired, malformed, not ours); to a
        request with no credentials both challenges, Basic first (RFC 9110 11.6.1 allows several;
        RFC 6750 3: no error code then)."""
        realm = self.state.auth_realm
        scheme = authorization.partition(" ")[0].lower() if bearer and authorization else ""
        if scheme == "bearer":
            challenge = 'Bearer realm="%s", error="invalid_token"' % realm
        elif bearer and not authorization:
            challenge = 'Basic realm="%s", Bearer realm="%s"' % (realm, realm)
        else:
            challenge = 'Basic realm="%s"' % realm
        return self._plain(command, 401, "Unauthorized", {"WWW-Authenticate": challenge})

    def _challenge(self, request):
        """state.challenge_first: True for the first request of a connection (a front end that
        challenges before it accepts credentials, even preemptive ones); then it accepts."""
        if not self.state.challenge_first:
            return False
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        if peer in self._challenged:
            return False
        if len(self._challenged) > 100_000:
            self._challenged.clear()
        self._challenged.add(peer)
        return True

    async def post(self, request):
        query = request.query
        command = query.get("Cmd")
        user_param = query.get("User")
        device_id = query.get("DeviceId")
        device_type = query.get("DeviceType")
        if not command or not user_param or not device_id or not device_type:
            if request.query_string and "=" not in request.query_string:
                # MS-ASHTTP 2.2.1.1.1.1: the base64-encoded query value is not served here
                return self._plain("unknown", 400, "a base64-encoded query value is not supported: "
                                   "send the plain-text query (Cmd, User, DeviceId, DeviceType)")
            return self._plain(command or "unknown", 400, "Cmd, User, DeviceId and DeviceType are required")
        if not (_COMMAND_NAME.fullmatch(command) and _DEVICE_ID.fullmatch(device_id)
                and _text_value(user_param) and _text_value(device_type)):
            # MS-ASHTTP 2.2.1.1.1.2: not the plain-text query value's syntax
            return self._plain(command, 400, "malformed Cmd, User, DeviceId or DeviceType (MS-ASHTTP 2.2.1.1.1.2)")
        state = self.state
        authorization = request.headers.get("Authorization")
        user = state.authenticate(authorization)
        if user is None or self._challenge(request):
            return self._unauthorized(command, authorization, bearer=True)
        version = versions.VERSIONS.get(request.headers.get("MS-ASProtocolVersion", ""))
        if version is None:
            return self._plain(command, 400, "unsupported MS-ASProtocolVersion")
        record = state.device(user, device_id, device_type)
        if record is None:
            # EasMaxDevices reached: 177 MaximumDevicesReached, in-band only from 14.1
            # (SetErrorResponse; docs/protocol-notes.md, Partnerships per mailbox and 177); otherwise a bare 403.
            return self._error(command, version, 403, 177)
        throttle = state.throttle
        if not throttle.acquire(user):  # EasMaxConcurrency (throttle.py)
            return self._throttled(command, OUT_OF_BUDGETS, throttle.retry_after)
        try:
            allowed, backoff, retry = throttle.spend((user, device_id))
            if not allowed:
                return self._throttled(command, COMMAND_FREQUENCY, retry)
            resp = await self._dispatch(request, command, record, version)
            if backoff is not None:
                resp.headers["X-MS-BackOffDuration"] = backoff
            return resp
        finally:
            throttle.release(user)

    async def _dispatch(self, request, command, record, version):
        state = self.state
        body = await request.read()
        tree = None
        raw = command in compose.COMMANDS and (request.content_type == compose.MIME_CONTENT_TYPE
                                               or version.number < 140)
        if body and not raw:
            try:
                tree = _wbxml.decode(body)
            except WBXMLError:
                return self._error(command, version, 400, 102)  # InvalidWBXML
        record.version = version.text
        record.user_agent = request.headers.get("User-Agent")
        record.last_seen = state.clock()
        record.requests += 1
        state.contact(record)
        key = request.headers.get("X-MS-PolicyKey")
        if command == "Provision":
            return self.provision(record, version, key, tree)
        if command == "Ping" and not version.ping_policy_checked:
            pass  # Exchange checks Ping only from 14.0
        else:
            verdict = state.check(record, key)
            if verdict is not None:
                return self._error(command, version, *verdict)
        handler = self._handlers.get(command)
        if handler is None:
            return self._error(command, version, 501, 137)  # CommandNotSupported
        if command != "Settings" and not state.access_list.trivial:
            refused = self._abq(command, record, version)
            if refused is not None:
                return refused
        if command == "Ping":
            return await self.ping(record, version, tree)
        if command == "Sync" and tree is not None and tree[0] == "AirSync:Sync" and (
                find(tree, "AirSync:Wait") is not None or find(tree, "AirSync:HeartbeatInterval") is not None):
            return await self.held_sync(request, record, version, tree)
        if command in compose.COMMANDS:  # 12.x: the raw MIME and the query's parameters (MS-ASHTTP 2.2.1.1.1.1)
            return handler(self, record, version, tree, body if raw else None, request.query)
        return handler(self, record, version, tree)

    def _abq(self, command, record, version):
        """Allow/Block/Quarantine after the policy check (abq.py for the sequence).

        Blocked: 129 DeviceIsBlockedForThisUser, HTTP 403 envelope (in-band for 14.x as
        every SetErrorResponse), with ``X-MS-ASThrottle: <DeviceAccessStateReason>``
        (Exchange adds it for admin blocks too; docs/protocol-notes.md, Throttling and device reaction).

        Quarantined -- the model chosen here, because Exchange's exact quarantine
        behaviour is unverified (facts, ABQ notes; Exchange routes it through an
        undocumented HandleQuarantinedState): Provision, Settings and FolderSync are
        answered normally, so the device can provision, identify itself (which an
        admin needs to decide) and see its folders; Sync, Ping and every other
        command get 129 with the same envelope as a block.  This is the
        conservative choice: a load test never counts mail delivered to a
        quarantined device as success, and "Blocked/quarantined devices surface as
        Status 129 / HTTP 403-like failures" is the documented symptom.  The
        quarantine notice Exchange puts in the Inbox is not simulated.  Releasing
        (``TargetState.release``) adds a personal Allow exemption, as Exchange does.
        """
        access = self.state.access(record)
        if access == abq.ALLOW or (access == abq.QUARANTINE and command in QUARANTINE_ALLOWED):
            return None
        resp = self._error(command, version, 403, 129)
        resp.headers["X-MS-ASThrottle"] = record.access_reason
        return resp

    def provision(self, record, version, key, tree):
        state = self.state
        if tree is None or tree[0] != "Provision:Provision":
            return self._wbxml("Provision", _STATUS_TEMPLATES["Provision"].render("2"), 2)
        wipe = find(tree, "Provision:RemoteWipe") or find(tree, "Provision:AccountOnlyRemoteWipe")
        if wipe is not None:
            try:
                status = int(findtext(wipe, "Provision:Status") or 0)
            except ValueError:
                status = 0
            state.acknowledge_wipe(record, status)  # sent -> acknowledged
            return self._wbxml("Provision", _PROVISION_WIPE_ACKED, 1)
        if record.wipe in (WIPE_PENDING, WIPE_SENT):
            # pending -> sent: RemoteWipe in the Provision response (MS-ASPROV 3.2.5.1.2.1,
            # docs/protocol-notes.md, Remote wipe); AccountOnlyRemoteWipe only for 16.1 (MS-ASPROV
            # 2.2.2.1), a full wipe for every other version.
            record.wipe = WIPE_SENT
            record.wipe_account_only = record.wipe_account_only and version.text == "16.1"
            body = _PROVISION_ACCOUNT_WIPE if record.wipe_account_only else _PROVISION_WIPE
            return self._wbxml("Provision", body, 1)
        if record.wipe in (WIPE_ACKNOWLEDGED, WIPE_WIPED):
            return self._error("Provision", version, 403, 140)  # refused until an admin clears it
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
                state.set_device_info(record, {t.partition(":")[2]: v for t, v in info[1] if type(v) is str})
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
            record.resync = False
            return self._wbxml("FolderSync", self._foldersync_full.render("1"), 1)
        if sync_key is not None and sync_key == str(record.folder_sync_key):
            return self._wbxml("FolderSync", _FOLDERSYNC_NONE.render(sync_key), 1)
        return self._wbxml("FolderSync", _FOLDERSYNC_BADKEY, 9)

    def sync(self, record, version, tree):
        body, status = self._sync.respond(record, self.state.mailbox(record.user), tree)
        if body is None:
            return self._wbxml("Sync", _STATUS_TEMPLATES["Sync"].render(str(status)), status)
        return self._wbxml("Sync", body, 1)

    async def ping(self, record, version, tree):
        """Ping (MS-ASCMD 2.2.1.13; statuses MS-ASCMD 2.2.3.177.11, docs/protocol-notes.md, Ping).

        HeartbeatInterval and the folder list are cached per device and may be
        omitted later (3 when nothing is cached).  Outside ``ping_min..ping_max``
        (Exchange 60..3540 s): Status 5 with the violated bound.  More folders than
        ``ping_max_folders``: Status 6 with MaxFolders.  A folder id the hierarchy
        does not have: Status 7 (FolderSync required).  Otherwise Status 2 at once when
        a watched folder holds something this device has not been sent yet (its sync
        state behind the folder: sync.SyncState.pending; changes the device made itself
        do not count), else the request is held until a watched folder changes
        for this device -- Status 2 naming exactly the folders that changed (a folder
        the device never synced counts when a change in it woke the Ping) -- or the
        heartbeat expires (Status 1).
        """
        state = self.state
        interval = folders = None
        if tree is not None:
            if tree[0] != "Ping:Ping":
                return self._wbxml("Ping", _STATUS_TEMPLATES["Ping"].render("4"), 4)
            interval = findtext(tree, "Ping:HeartbeatInterval")
            folder_list = find(tree, "Ping:Folders")
            if folder_list is not None:
                folders = tuple(findtext(f, "Ping:Id") for f in folder_list[1] or () if f[0] == "Ping:Folder")
        if interval is not None:
            try:
                interval = int(interval)
            except ValueError:
                return self._wbxml("Ping", _STATUS_TEMPLATES["Ping"].render("4"), 4)
            if interval < state.ping_min:
                return self._wbxml("Ping", _PING_BOUND.render(str(state.ping_min)), 5)
            if interval > state.ping_max:
                return self._wbxml("Ping", _PING_BOUND.render(str(state.ping_max)), 5)
            record.ping_interval = interval
        if folders is not None:
            if len(folders) > state.ping_max_folders:
                return self._wbxml("Ping", _PING_MAXFOLDERS.render(str(state.ping_max_folders)), 6)
            if not all(f in self.folder_ids for f in folders):
                return self._wbxml("Ping", _STATUS_TEMPLATES["Ping"].render("7"), 7)
            record.ping_folders = folders
        if record.ping_interval is None or not record.ping_folders:
            return self._wbxml("Ping", _STATUS_TEMPLATES["Ping"].render("3"), 3)
        if record.resync:  # its sync state was dropped (state.resync): the hierarchy first
            return self._wbxml("Ping", _STATUS_TEMPLATES["Ping"].render("7"), 7)
        box = state.mailbox(record.user)
        folders = record.ping_folders
        changed = _ping_changed(record, box, folders, ())
        if changed:
            return self._wbxml("Ping", _ping_changed_body(changed), 2)
        self.held_pings += 1
        try:
            changed = await self._hold(record, box, folders, record.ping_interval,
                                       lambda woke: _ping_changed(record, box, folders, (woke,)))
        finally:
            self.held_pings -= 1
        if record.resync:
            return self._wbxml("Ping", _STATUS_TEMPLATES["Ping"].render("7"), 7)
        if changed:
            return self._wbxml("Ping", _ping_changed_body(changed), 2)
        return self._wbxml("Ping", _PING_EXPIRED, 1)

    async def _hold(self, record, box, folders, seconds, changed):
        """Park a request (a Ping, a held Sync) on ``folders`` of ``box`` for up to ``seconds``: the
        one holding mechanism of the target.  Every change of a watched folder (store.py
        ``UserStore.changed``) calls ``changed(folder id)``; a truthy result ends the hold and is
        returned; a falsy one (a change this device made itself) holds on until the same deadline.
        None when the interval expired, at shutdown (:meth:`expire_pings`) or when the device's
        sync state was dropped (``TargetState.resync`` answers ``record.held_ping`` at once)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        fut = loop.create_future()
        box.watch(folders, fut)
        self._ping_futures.add(fut)
        timer = loop.call_at(deadline, _expire, fut)
        record.held_ping = fut
        try:
            while True:
                woke = await fut
                if woke is None:  # expired, shutdown, or a resync (state.resync)
                    return None
                found = changed(woke)
                if found:
                    return found
                # a change this device made itself: hold on until the same deadline
                box.unwatch(folders, fut)
                self._ping_futures.discard(fut)
                timer.cancel()
                fut = loop.create_future()
                box.watch(folders, fut)
                self._ping_futures.add(fut)
                timer = loop.call_at(deadline, _expire, fut)
                record.held_ping = fut
        finally:
            record.held_ping = None
            timer.cancel()
            box.unwatch(folders, fut)
            self._ping_futures.discard(fut)

    async def held_sync(self, request, record, version, tree):
        """A Sync with Wait (minutes, MS-ASCMD 2.2.3.198) or HeartbeatInterval (seconds, 2.2.3.88.2):
        the hanging Sync some clients send instead of a Ping (loadgen/device/clients.py hanging-sync).

        Both given or not a number: Status 4; out of the bounds (sync.hold_interval: the target's
        ``ping_min..ping_max``, as for a Ping): Status 14 with Limit, the violated bound (MS-ASCMD
        2.2.3.97).  A request with something to answer now (client commands, a key to move, changes
        pending for this device: sync.SyncResponder.quiet) is answered at once as any Sync; otherwise
        it is parked on its collections with the Ping's mechanism (:meth:`_hold`) and answered as soon
        as one of them changes for this device -- with those changes --, or when the interval ends
        with the empty Sync response of "no changes" (MS-ASCMD 2.2.1.21.2, example 4.5.10).  Held Syncs
        have their own gauge, duration histogram and outcome counts (metrics.py)."""
        state = self.state
        seconds, refused = hold_interval(tree, state.ping_min, state.ping_max)
        if refused is not None:
            self._hold_ended("refused")
            status, limit = refused
            if limit is None:
                return self._wbxml("Sync", _STATUS_TEMPLATES["Sync"].render(str(status)), status)
            return self._wbxml("Sync", _SYNC_BOUND.render(str(limit)), status)
        box = state.mailbox(record.user)
        responder = self._sync
        folders = responder.quiet(record, box, tree)
        if folders is None or not seconds:
            return self.sync(record, version, tree)
        request[_HELD] = True
        self.held_syncs += 1
        try:
            await self._hold(record, box, folders, seconds,
                             lambda woke: responder.quiet(record, box, tree, False) is None)
        finally:
            self.held_syncs -= 1
        if responder.quiet(record, box, tree, False) is None:  # changes for this device, or its sync state dropped
            self._hold_ended("changes")
            return self.sync(record, version, tree)
        self._hold_ended("expired")
        self._count("Sync", 200, 1)
        return web.Response(headers=SERVER_HEADERS)  # the empty Sync response: no changes

    def _hold_ended(self, outcome):
        self.sync_holds[outcome] = self.sync_holds.get(outcome, 0) + 1

    _handlers = handlers.install({
        "FolderSync": foldersync, "Sync": sync, "Ping": ping,
        "ItemOperations": itemops.handle, "MoveItems": moveitems.handle,
        "SendMail": compose.handle, "SmartReply": compose.handle, "SmartForward": compose.handle})
    # handlers.py: MeetingResponse, Search, ResolveRecipients, GetItemEstimate and Settings (oof.py: Oof,
    # DeviceInformation -- ABQ re-evaluated with it --, DevicePassword, UserInformation)


def _ping_changed(record, box, folders, woke):
    """The watched folders that changed for this device (Ping Status 2, MS-ASCMD 2.2.3.177.11)."""
    out = []
    origin = record.device_id
    for fid in folders:
        sync = record.sync.get(fid)
        if type(sync) is SyncState:
            if sync.pending(box.folder(fid), origin):
                out.append(fid)
        elif fid in woke:
            out.append(fid)
    return out


def _ping_changed_body(changed):
    if len(changed) == 1:
        return _PING_CHANGED.render(changed[0])
    return encode(("Ping:Ping", [("Ping:Status", "2"), ("Ping:Folders", [("Ping:Folder", f) for f in changed])]))


def _text_value(value):
    return len(value) <= MAX_QUERY_VALUE and value.isprintable()


def _expire(fut):
    if not fut.done():
        fut.set_result(None)


def _reset(request):
    """Reset the TCP connection (RST): SO_LINGER 0, then abort."""
    transport = request.transport
    if transport is None:
        return
    _abort(transport)


def _abort(transport):
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


async def start_target(host="127.0.0.1", port=0, state=None, *, faults=None, reuse_port=None, tls_cert=None,
                       tls_key=None, tls_resumption=True, http_port=None, folders=DEFAULT_FOLDERS):
    """Start a target on ``host:port`` (0: a free port).  Returns (runner, target, url).

    ``tls_cert`` (PEM, with ``tls_key``): HTTPS only, as Exchange (exchange/tls.py); the URL
    is https://; ``tls_resumption=False``: a server that resumes no TLS session (exchange/tls.py
    server_context).  With TLS, ``http_port`` (0: a free one) adds the plain-HTTP side of an
    Exchange site: the unauthenticated Autodiscover GET is redirected (302) to the https
    Autodiscover URL, anything else is refused (403, IIS's "SSL required") --
    ``target.http_url`` is its base URL (exchange/autodiscover.py, MS-OXDSCLI 3.1.5).
    ``folders``: the hierarchy FolderSync lists ((server id, parent, name, type), as DEFAULT_FOLDERS)."""
    ssl_context = None
    if tls_cert:
        from loadgen.exchange.tls import server_context

        # TLSError (ValueError) before anything listens
        ssl_context = server_context(tls_cert, tls_key, resumption=tls_resumption)
    target = Target(state, folders=folders, faults=faults)
    # the GAL's index (Search, ResolveRecipients) built before the server listens: ~1 s for 100,000
    # users, which the first GAL search would otherwise spend blocking every other request
    search.directory(target.state.store)
    target.http_url = plain = None
    if ssl_context is not None and http_port is not None:
        plain = web.AppRunner(autodiscover.plain_http_app(target), access_log=None, handle_signals=False,
                              logger=HTTP_LOG)

        async def stop_plain(_app):
            await plain.cleanup()

        target.app.on_cleanup.append(stop_plain)  # before the app is frozen by its runner
    runner = web.AppRunner(target.app, access_log=None, handle_signals=False, handler_cancellation=True,
                           shutdown_timeout=2.0, logger=HTTP_LOG)
    await runner.setup()
    target.http_server = runner.server
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port, backlog=4096,
                           ssl_context=ssl_context)
        await site.start()
        sockets = site._server.sockets  # the actual port when 0 was asked
        actual = sockets[0].getsockname()[1]
        target.https_port = actual if ssl_context is not None else None
        if plain is not None:
            await plain.setup()
            plain_site = web.TCPSite(plain, host, http_port, reuse_address=True)
            await plain_site.start()
            target.http_url = "http://%s:%d" % (host, plain_site._server.sockets[0].getsockname()[1])
    except BaseException:
        await runner.cleanup()
        raise
    scheme = "https" if ssl_context is not None else "http"
    return runner, target, "%s://%s:%d%s" % (scheme, host, actual, target.state.eas_path)


async def serve_forever(host, port, state, ready=None, admin=None, admin_token=None, **server_options):
    """Run the target (and, with ``admin=(host, port)``, its admin API) until SIGTERM, SIGINT or
    cancellation, then stop it and return normally (so what its caller holds -- a throwaway TLS
    directory, exchange/tls.py -- is cleaned up as on any normal end); ``server_options``:
    start_target's (TLS)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled = install_stop_signals(loop, True, stop.set)
    admin_runner = runner = None
    try:
        runner, target, url = await start_target(host, port, state, **server_options)
        if admin is not None:
            from loadgen.exchange.admin import start_admin

            admin_runner, admin_url, admin_token = await start_admin(admin[0], admin[1], target, admin_token)
            log.info("admin API on %s", admin_url)  # the token is never logged
        if ready is not None:
            extra = {"http_url": target.http_url} if target.http_url else {}  # TLS with its plain-HTTP side
            ready(url, admin_url if admin is not None else None, **extra)
        await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        if admin_runner is not None:
            await admin_runner.cleanup()
        if runner is not None:
            await runner.cleanup()


__all__ = ["Target", "TargetState", "start_target", "serve_forever", "root_status", "WIPE_PENDING"]
