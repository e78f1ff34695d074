"""The device-side provisioning state machine, sans-I/O (in the manner of h11).

The caller owns the socket and the clock.  It asks :meth:`Provisioner.start`
for the first request, sends it, hands the answer (HTTP status, headers,
decoded body) to :meth:`Provisioner.receive` and gets back either the next
request to send or an outcome.  Ordinary commands' answers go through
:func:`classify` which says whether the server wants the device to provision,
is refusing it, is throttling it, and so on.

Transition table (state, input -> action, next state).  Sources: MS-ASPROV 3.1.5.1, 3.1.5.2, 2.2.2.54.x;
docs/protocol-notes.md, "Two-step Provision and acknowledgement statuses" (two-step exchange, Policy/Provision
statuses), "449 vs in-band statuses 139-145 and how Exchange chooses", "Remote wipe" and "Provisioning by
version" (165, Tencent's missing Provision/Status).

======================  ==============================================  =============================================
state                   input                                           action -> next state
======================  ==============================================  =============================================
IDLE                    start()                                         initial Provision, key "0" -> AWAIT_POLICY
AWAIT_*                 failed() (no answer, a damaged one)             -> IDLE
AWAIT_POLICY            200, RemoteWipe / AccountOnlyRemoteWipe         wipe ack (1, or 2 if wipe fails) -> AWAIT_WIPE_ACK
AWAIT_POLICY            200, Status 1 (or absent), Policy Status 1      ack (temp key, compliance status) -> AWAIT_ACK
AWAIT_POLICY            200, Policy Status 2 (no policy)                Provisioned(no_policy) -> PROVISIONED
AWAIT_POLICY            200, Policy Status 3 / 4                        Failed(unknown type / corrupt) -> FAILED
AWAIT_POLICY            200, Policy Status 5                            initial Provision, key "0" (bounded) -> AWAIT_POLICY
AWAIT_POLICY            200, Status 165 (DeviceInformationRequired)     Settings(DeviceInformation) -> AWAIT_DEVINFO
AWAIT_DEVINFO           any                                             initial Provision -> AWAIT_POLICY
AWAIT_ACK               200, Status 1, Policy Status 1 (final key)      Provisioned(final key) -> PROVISIONED
AWAIT_ACK               200, RemoteWipe                                 wipe ack -> AWAIT_WIPE_ACK
AWAIT_ACK               200, Policy Status 5 (wrong key)                initial Provision, key "0" (bounded) -> AWAIT_POLICY
AWAIT_ACK               200, a new policy document (Data) and key       ack of the new policy (bounded) -> AWAIT_ACK
AWAIT_WIPE_ACK          any answer                                      Wiped(ack status) -> WIPED
AWAIT_*                 Status 2 (protocol error)                       Failed(protocol error) -> FAILED
AWAIT_*                 Status 3 (server error), HTTP 5xx but 503       Retry(backoff) -> IDLE
AWAIT_*                 HTTP 503                                        Retry(Retry-After / backoff, throttle reason) -> IDLE
AWAIT_*                 Status 139 / 141 / 145 (200 or 403)             Refused(status, retry interval) -> REFUSED
AWAIT_*                 Status 129 / HTTP 403 + 129                     Blocked -> BLOCKED
AWAIT_*                 Status 140                                      initial Provision (wipe pending) -> AWAIT_POLICY
AWAIT_*                 HTTP 401                                        Failed(auth) -> FAILED
AWAIT_*                 HTTP 451 + X-MS-Location                        Redirect(url) -> IDLE
AWAIT_*                 undecodable body / other HTTP status            Failed(...) -> FAILED
======================  ==============================================  =============================================

The state after an outcome is where the device stands; :meth:`start` may be
called again from any state but AWAIT_* (re-provisioning on 142/143/144/449).
"""

from dataclasses import dataclass
from enum import Enum

from loadgen.eas import commands
from loadgen.eas.policy import Capabilities, applied, evaluate
from loadgen.eas.status import (
    REFUSED_STATUSES, REPROVISION_STATUSES, AckStatus, CommonStatus, PolicyStatus, ProvisionStatus, RemoteWipeAck,
)


class State(Enum):
    IDLE = "idle"
    AWAIT_POLICY = "await_policy"
    AWAIT_DEVINFO = "await_devinfo"
    AWAIT_ACK = "await_ack"
    AWAIT_WIPE_ACK = "await_wipe_ack"
    PROVISIONED = "provisioned"
    REFUSED = "refused"
    BLOCKED = "blocked"
    WIPED = "wiped"
    FAILED = "failed"


# enum members as module globals: an Enum attribute costs ~120 ns per access on the hot path
_AWAIT_ACK = State.AWAIT_ACK
_AWAIT_DEVINFO = State.AWAIT_DEVINFO
_AWAIT_POLICY = State.AWAIT_POLICY
_AWAIT_WIPE_ACK = State.AWAIT_WIPE_ACK
_BLOCKED = State.BLOCKED
_FAILED = State.FAILED
_IDLE = State.IDLE
_PROVISIONED = State.PROVISIONED
_REFUSED = State.REFUSED
_WIPED = State.WIPED
_P_NO_POLICY = PolicyStatus.NO_POLICY
_P_POLICY_DATA_CORRUPT = PolicyStatus.POLICY_DATA_CORRUPT
_P_POLICY_KEY_MISMATCH = PolicyStatus.POLICY_KEY_MISMATCH
_P_SUCCESS = PolicyStatus.SUCCESS
_P_UNKNOWN_POLICY_TYPE = PolicyStatus.UNKNOWN_POLICY_TYPE
_BLOCKED_STATUS = CommonStatus.DeviceIsBlockedForThisUser  # 129
_WIPE_REQUESTED = CommonStatus.RemoteWipeRequested  # 140
_DEVINFO_REQUIRED = CommonStatus.DeviceInformationRequired  # 165


# ----------------------------------------------------------------- actions and outcomes


@dataclass(frozen=True)
class Send:
    """Send ``command`` with ``body``; header X-MS-PolicyKey = ``policy_key`` (omit if None)."""

    command: str
    body: bytes
    policy_key: str | None
    phase: str  # initial / ack / wipe_ack / device_info


@dataclass(frozen=True)
class Provisioned:
    policy_key: str
    ack_status: int  # 0 when no policy was acknowledged
    no_policy: bool = False


@dataclass(frozen=True)
class Wiped:
    ack_status: int
    account_only: bool


@dataclass(frozen=True)
class Refused:
    status: int  # 139 / 141 / 145, or 403 for a bare 403
    retry_after: float


@dataclass(frozen=True)
class Blocked:
    status: int


@dataclass(frozen=True)
class Retry:
    after: float
    reason: str


@dataclass(frozen=True)
class Redirect:
    location: str


@dataclass(frozen=True)
class Failed:
    reason: str


def _header(headers, name):
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


MAX_RETRY_AFTER = 24 * 3600.0  # a server-given wait is clamped to a day


def retry_after(headers, default):
    """Retry-After in seconds (RFC 9110 10.2.3: delay-seconds), clamped to 0..MAX_RETRY_AFTER;
    ``default`` when absent or not a number (an HTTP-date, nan, garbage)."""
    value = _header(headers, "Retry-After")
    if value is None:
        return default
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return default
    if seconds != seconds:  # nan
        return default
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


_POLICIES = {}  # one dict per distinct policy, shared by every device that holds it
_SHARED_SEEN = {}  # id(policy) -> (policy, its shared copy): a dict seen before is not sorted again
_APPLIED = {}
_COMPLIANCE = {}  # (id(shared policy), id(caps)) -> (policy, caps, evaluate(policy, caps))


def _shared(policy):
    """The same policy as ``policy``, shared: thousands of devices hold one copy (read-only)."""
    seen = _SHARED_SEEN.get(id(policy))
    if seen is not None and seen[0] is policy:  # (commands.parse_provision shares equal documents)
        return seen[1]
    key = tuple(sorted(policy.items(), key=lambda kv: kv[0]))
    found = _POLICIES.get(key)
    if found is None:
        if len(_POLICIES) > 1000:
            _POLICIES.clear()
        found = _POLICIES[key] = policy
    if len(_SHARED_SEEN) > 1000:
        _SHARED_SEEN.clear()
    _SHARED_SEEN[id(policy)] = (policy, found)  # keeps ``policy`` alive: its id is not reused meanwhile
    return found


def _evaluate(policy, caps):
    """``evaluate(policy, caps)`` once per shared policy and capability set (both read-only)."""
    key = (id(policy), id(caps))
    found = _COMPLIANCE.get(key)
    if found is None or found[0] is not policy or found[1] is not caps:
        if len(_COMPLIANCE) > 1000:
            _COMPLIANCE.clear()
        found = _COMPLIANCE[key] = (policy, caps, evaluate(policy, caps))
    return found[2]


def _shared_applied(policy):
    key = id(policy)
    found = _APPLIED.get(key)
    if found is None or found[0] is not policy:
        if len(_APPLIED) > 1000:
            _APPLIED.clear()
        found = _APPLIED[key] = (policy, applied(policy))
    return found[1]


_ACK_SENDS = {}  # (temporary key, compliance status) -> the acknowledgement (immutable, shared)


def _ack_send(temporary_key, status):
    """The acknowledgement of a policy (MS-ASPROV 2.2.2.41): the same bytes for every device
    that got the same temporary key and answers the same status, built once."""
    key = (temporary_key, status)
    send = _ACK_SENDS.get(key)
    if send is None:
        if len(_ACK_SENDS) > 1000:
            _ACK_SENDS.clear()
        send = _ACK_SENDS[key] = Send("Provision", commands.provision_ack(temporary_key, status), temporary_key, "ack")
    return send


class Provisioner:
    """One device's provisioning conversation.  See the module docstring."""

    # one per device: slots, not a ~270-byte attribute dict (memory per device)
    __slots__ = ("version", "caps", "device_info", "retry_interval", "retry_backoff", "state", "policy_key",
                 "temporary_key", "policy", "applied", "ack_status", "unmet", "_restarts", "_initial_send",
                 "_devinfo_sent", "_wipe_outcome")

    MAX_RESTARTS = 3

    def __init__(self, version, caps=None, device_info=None, retry_interval=3600.0, retry_backoff=5.0):
        self.version = version
        self.caps = caps or Capabilities()
        self.device_info = device_info
        self.retry_interval = float(retry_interval)
        self.retry_backoff = float(retry_backoff)
        self.state = _IDLE
        self.policy_key = None  # final key, None until provisioned
        self.temporary_key = None
        self.policy = None  # settings of the last EASProvisionDoc
        self.applied = None  # AppliedPolicy once acknowledged
        self.ack_status = None
        self.unmet = ()
        self._restarts = 0
        self._initial_send = None  # the initial Provision: built once per conversation (its DeviceInformation)
        self._devinfo_sent = False
        self._wipe_outcome = None

    # -- requests

    def _device_info(self):
        """The DeviceInformation fields: ``device_info`` is a dict, or a callable that builds one (a
        device builds it only for the request that carries it)."""
        info = self.device_info
        return info() if callable(info) else info

    def _initial(self):
        send = self._initial_send
        if send is None:
            info = self._device_info() if self.version.device_info_in_provision else None
            # A provisionable device announces itself with X-MS-PolicyKey: 0 (MS-ASPROV 3.1.5.1.1;
            # docs/protocol-notes.md, Two-step Provision and acknowledgement statuses).
            send = self._initial_send = Send("Provision", commands.provision_initial(info, self.version.policy_type),
                                             "0", "initial")
        self.state = _AWAIT_POLICY
        self.temporary_key = None
        return send

    def start(self):
        state = self.state
        if state is _AWAIT_POLICY or state is _AWAIT_ACK or state is _AWAIT_WIPE_ACK or state is _AWAIT_DEVINFO:
            raise RuntimeError("provisioning already in progress (%s)" % self.state.value)
        self._restarts = 0
        return self._initial()

    # -- answers

    def receive(self, http_status, headers, tree, parsed=None):
        """The answer to the request last asked for.  ``parsed``: ``commands.parse_provision(tree)``
        when the caller has it already (the device shares the parse of identical answers)."""
        state = self.state
        if not (state is _AWAIT_POLICY or state is _AWAIT_ACK or state is _AWAIT_WIPE_ACK or state is _AWAIT_DEVINFO):
            raise RuntimeError("no provisioning request outstanding (%s)" % state.value)
        if state is _AWAIT_WIPE_ACK:
            # The device acknowledged first and wipes now, whatever the answer (MS-ASPROV 3.1.5.1.2.2).
            return self._finish(_WIPED, self._wipe_outcome)
        if state is _AWAIT_DEVINFO:
            return self._initial()
        if http_status == 200:
            if parsed is not None:
                return self._on_provision(parsed)
            if tree is None:
                return self._finish(_FAILED, Failed("empty Provision response"))
            try:
                resp = commands.parse_provision(tree)
            except ValueError as exc:
                return self._finish(_FAILED, Failed(str(exc)))
            return self._on_provision(resp)
        return self._on_http_error(http_status, headers, tree)

    def _on_http_error(self, http_status, headers, tree):
        status = commands.root_status(tree)
        if http_status == 503:
            reason = _header(headers, "X-MS-ASThrottle") or "503"
            return self._finish(_IDLE, Retry(retry_after(headers, self.retry_backoff), reason))
        if http_status == 401:
            return self._finish(_FAILED, Failed("authentication failed (401)"))
        if http_status == 451:
            location = _header(headers, "X-MS-Location")
            if location:
                return self._finish(_IDLE, Redirect(location))
            return self._finish(_FAILED, Failed("451 without X-MS-Location"))
        if http_status == 403:
            if status == _BLOCKED_STATUS:
                return self._finish(_BLOCKED, Blocked(_BLOCKED_STATUS))
            if status == _WIPE_REQUESTED:
                return self._restart()
            return self._finish(_REFUSED, Refused(status or 403, self.retry_interval))
        if http_status == 449:
            return self._restart()
        if 500 <= http_status < 600:
            return self._finish(_IDLE, Retry(self.retry_backoff, "http_%d" % http_status))
        return self._finish(_FAILED, Failed("unexpected HTTP %d on Provision" % http_status))

    def _restart(self):
        self._restarts += 1
        if self._restarts > self.MAX_RESTARTS:
            return self._finish(_FAILED, Failed("provisioning restarted too often"))
        return self._initial()

    def _on_provision(self, resp):
        if resp.remote_wipe or resp.account_only_wipe:
            ack = RemoteWipeAck.FAILURE if self.caps.remote_wipe_fails else RemoteWipeAck.SUCCESS
            self._wipe_outcome = Wiped(int(ack), resp.account_only_wipe and not resp.remote_wipe)
            self.state = _AWAIT_WIPE_ACK
            body = commands.remote_wipe_ack(ack, account_only=self._wipe_outcome.account_only)
            return Send("Provision", body, self.policy_key or "0", "wipe_ack")
        # Tencent omits it (docs/protocol-notes.md, Provisioning by version)
        status = resp.status if resp.status is not None else ProvisionStatus.SUCCESS
        if status == ProvisionStatus.PROTOCOL_ERROR:
            return self._finish(_FAILED, Failed("Provision status 2 (protocol error)"))
        if status == ProvisionStatus.GENERAL_SERVER_ERROR:
            return self._finish(_IDLE, Retry(self.retry_backoff, "provision_server_error"))
        if status in REFUSED_STATUSES:
            return self._finish(_REFUSED, Refused(status, self.retry_interval))
        if status == _BLOCKED_STATUS:
            return self._finish(_BLOCKED, Blocked(_BLOCKED_STATUS))
        if status == _DEVINFO_REQUIRED and not self._devinfo_sent and self.device_info is not None:
            self._devinfo_sent = True
            self.state = _AWAIT_DEVINFO
            return Send("Settings", commands.settings_device_information(self._device_info()), "0", "device_info")
        if status in REPROVISION_STATUSES:
            return self._restart()
        if status != ProvisionStatus.SUCCESS:
            return self._finish(_FAILED, Failed("Provision status %d" % status))
        pstatus = resp.policy_status
        if pstatus == _P_POLICY_KEY_MISMATCH:
            return self._restart()
        if pstatus == _P_UNKNOWN_POLICY_TYPE:
            return self._finish(_FAILED, Failed("server does not know policy type %s" % self.version.policy_type))
        if pstatus == _P_POLICY_DATA_CORRUPT:
            return self._finish(_FAILED, Failed("policy data corrupt on the server: contact the administrator"))
        if self.state is _AWAIT_ACK and resp.policy is not None and pstatus == _P_SUCCESS:
            # Data belongs only to the answer to an initial request (MS-ASPROV 2.2.2.24):
            # a policy document here is a new policy with a new temporary key, not a final key.
            self._restarts += 1
            if self._restarts > self.MAX_RESTARTS:
                return self._finish(_FAILED, Failed("provisioning restarted too often"))
            self.state = _AWAIT_POLICY
        if self.state is _AWAIT_POLICY:
            if pstatus == _P_NO_POLICY:
                self.policy_key = resp.policy_key or "0"
                self.ack_status = 0
                return self._finish(_PROVISIONED, Provisioned(self.policy_key, 0, no_policy=True))
            if pstatus != _P_SUCCESS or not resp.policy_key:
                return self._finish(_FAILED, Failed("Policy status %s without a policy key" % pstatus))
            self.temporary_key = resp.policy_key
            self.policy = _shared(resp.policy or {})
            compliance = _evaluate(self.policy, self.caps)
            self.ack_status = int(compliance.status)
            self.unmet = compliance.unmet
            self.state = _AWAIT_ACK
            return _ack_send(resp.policy_key, compliance.status)
        # AWAIT_ACK
        if pstatus not in (_P_SUCCESS, None) or not resp.policy_key:
            return self._finish(_FAILED, Failed("acknowledgement answered with Policy status %s" % pstatus))
        self.policy_key = resp.policy_key
        self.applied = _shared_applied(self.policy or {})
        return self._finish(_PROVISIONED, Provisioned(resp.policy_key, self.ack_status))

    def _finish(self, state, outcome):
        self.state = state
        # the initial request (~350 bytes with the device's DeviceInformation) serves the restarts of
        # this conversation; a device holds it no longer (a re-provisioning builds it again)
        self._initial_send = None
        if state is _WIPED:
            self.policy_key = None
            self.policy = None
            self.applied = None
        return outcome

    def failed(self):
        """The exchange in progress got no usable answer (none at all, a damaged one, the device
        gone): the conversation is over, :meth:`start` begins it again (h11's ``send_failed``).
        Outside a conversation: nothing to end."""
        state = self.state
        if state is _AWAIT_POLICY or state is _AWAIT_ACK or state is _AWAIT_WIPE_ACK or state is _AWAIT_DEVINFO:
            self.state = _IDLE


# ----------------------------------------------------------------- ordinary commands


class Kind(str, Enum):
    """What an ordinary command's answer means for the device (:attr:`Reaction.kind`); the value
    is the request's outcome where the device counts it so."""

    OK = "ok"
    REPROVISION = "reprovision"
    REFUSED = "refused"
    BLOCKED = "blocked"
    THROTTLED = "throttled"
    REDIRECT = "redirect"
    AUTH = "auth"
    ERROR = "error"


@dataclass(frozen=True)
class Reaction:
    """What an ordinary command's answer means for the device."""

    kind: Kind
    status: int | None = None  # EAS status in the root, if any
    trigger: str | None = None  # reprovision trigger: "449", "140", "142", "143", "144"
    wait: float = 0.0
    detail: str | None = None


_OK_REACTIONS = {}  # status -> Reaction(Kind.OK, status): immutable, one per status


def classify(http_status, headers, tree, retry_interval=3600.0, backoff=5.0):
    """Classify an ordinary command's answer (FolderSync, Sync, Ping, Settings ...).

    12.x servers say "provision" with a bare HTTP 449; 14.0+ Exchange with HTTP
    200 and Status 140/142/143/144 in the command's root, and refuses with HTTP
    403 and 139/141/145 (Command.IsPolicyCompliant; docs/protocol-notes.md, 449 vs in-band statuses 139-145 and
    how Exchange chooses).
    """
    status = commands.root_status(tree) if tree is not None else None
    if http_status == 200:
        if status in REPROVISION_STATUSES:
            return Reaction(Kind.REPROVISION, status, str(status))
        if status in REFUSED_STATUSES:
            return Reaction(Kind.REFUSED, status, wait=retry_interval)
        if status == _BLOCKED_STATUS:
            return Reaction(Kind.BLOCKED, status)
        found = _OK_REACTIONS.get(status)
        if found is None:
            found = Reaction(Kind.OK, status)
            if len(_OK_REACTIONS) < 1000:
                _OK_REACTIONS[status] = found
        return found
    if http_status == 449:
        return Reaction(Kind.REPROVISION, status, "449")
    if http_status == 403:
        if status in REPROVISION_STATUSES:
            return Reaction(Kind.REPROVISION, status, str(status))
        if status == _BLOCKED_STATUS:
            return Reaction(Kind.BLOCKED, status)
        return Reaction(Kind.REFUSED, status or 403, wait=retry_interval)
    if http_status == 503:
        reason = _header(headers, "X-MS-ASThrottle") or "unspecified"
        return Reaction(Kind.THROTTLED, status, wait=retry_after(headers, backoff), detail=reason)
    if http_status == 451:
        location = _header(headers, "X-MS-Location")
        if location:
            return Reaction(Kind.REDIRECT, detail=location)
        return Reaction(Kind.ERROR, detail="451 without X-MS-Location")
    if http_status == 401:
        return Reaction(Kind.AUTH, detail="401")
    return Reaction(Kind.ERROR, status, wait=backoff, detail="http_%d" % http_status)


__all__ = [
    "AckStatus", "Blocked", "Failed", "Kind", "Provisioned", "Provisioner", "Reaction", "Redirect", "Refused",
    "Retry", "Send", "State", "Wiped", "classify",
]
