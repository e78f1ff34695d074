"""A simulated device: identity, capabilities, stored policy key, and its life.

The device owns its identity and stored policy key; every protocol decision is
taken by ``loadgen.eas`` (the sans-I/O provisioning machine and ``classify``);
the transport owns the socket; the engine owns the clock's end (deadline).

Life: provision (two steps) -> Settings/DeviceInformation for 12.1/14.0 ->
FolderSync with SyncKey 0 -> FolderSync cycles with think time, reacting to
re-provision signals (449, 140, 142, 143, 144), refusals (139/141/145, retried
at the retry interval), blocks (129), throttling (503 + Retry-After),
redirects (451) and authentication failures (401) until the run ends.
"""

import asyncio
import re

import _wbxml
from _wbxml import WBXMLError
from loadgen.eas import commands, http, password as passwords, policy as policies
from loadgen.eas.provisioning import (
    Blocked, Failed, Kind, Provisioned, Provisioner, Redirect, Refused, Retry, Send, Wiped, classify,
)
from loadgen.eas.status import FolderSyncStatus, ItemOperationsStatus, PingStatus, SyncStatus
from loadgen.device import autodiscover
from loadgen.wire import ratelimit, redirects
from loadgen.device.profiles import identity
from loadgen.wire.transport import DeviceEndpoint

# Final / current states reported by the engine.
NEW = "new"
PROVISIONING = "provisioning"
PROVISIONED = "provisioned"
NO_POLICY = "no_policy"  # the server has no policy for the device (Policy Status 2)
UNPROVISIONED = "unprovisioned"  # non-provisionable device allowed without a policy
REFUSED = "refused"
BLOCKED = "blocked"
QUARANTINED = "quarantined"
WIPED = "wiped"
THROTTLED = "throttled"
FAILED = "failed"
AUTH_FAILED = "auth_failed"
STOPPED = "stopped"  # stopped by a closed-model ramp-down (engine.ClosedStages): not a failure

_OK, _REDIRECT, _ERROR, _REPROVISION = Kind.OK, Kind.REDIRECT, Kind.ERROR, Kind.REPROVISION
_REFUSED, _BLOCKED, _THROTTLED, _AUTH = Kind.REFUSED, Kind.BLOCKED, Kind.THROTTLED, Kind.AUTH
# EAS statuses by name (loadgen/eas/status.py), bound once as module globals for the request path
_FOLDERSYNC_OK, _FOLDERSYNC_BAD_KEY = FolderSyncStatus.SUCCESS, FolderSyncStatus.SYNC_KEY_ERROR
_SYNC_OK, _SYNC_BAD_KEY = SyncStatus.SUCCESS, SyncStatus.INVALID_SYNC_KEY
_SYNC_HIERARCHY_CHANGED = SyncStatus.FOLDER_HIERARCHY_CHANGED
_ITEMOPS_OK = ItemOperationsStatus.SUCCESS
_PING_EXPIRED, _PING_CHANGES = PingStatus.HEARTBEAT_EXPIRED, PingStatus.CHANGES_FOUND
_PING_BOUND, _PING_FOLDERSYNC = PingStatus.INVALID_HEARTBEAT, PingStatus.FOLDER_SYNC_REQUIRED
_SUCCESS = (int(SyncStatus.SUCCESS),)  # an ordinary command's OK status: 1, success, for every command
_PING_OK = (int(_PING_EXPIRED), int(_PING_CHANGES))

FAILED_CMD = object()  # an ordinary command that did not succeed
PARKED = object()  # a Ping sent with transport.park: the answer comes to a callback (Device.ping_answered)
MALFORMED = object()  # the tree of a WBXML body that does not decode (truncated, corrupt): a failed request


class Stopped(Exception):
    """Raised instead of sending a request once the engine asked the device to stop (closed-model ramp-down)."""


_SYNC_TEMPLATES = {}  # (body type, truncation, window, filter) -> Template, shared by all devices
_PREFERENCES = {}  # (id(applied policy), the user's wishes) -> (policy, SyncPreferences): shared, read-only
_MAX_PENDING_FETCHES = 100  # ItemOperations a device keeps queued (what the user opened); more are dropped
FETCH_QUEUE_FULL = "fetch_skipped_queue_full"  # policy_effects label of an opened item dropped, the queue full
# 449/142/144 right after provisioning: stop looping (docs/protocol-notes.md, 449 vs in-band statuses 139-145
# and how Exchange chooses)
_MAX_REPROVISION_STREAK = 3
# Every retry waits at least RETRY_FLOOR seconds, whatever the scenario's backoff or the server's
# Retry-After says; a retry that met the same failure again (a streak) waits twice as long as the
# last one, up to _STREAK_CAP seconds (or the configured wait, if longer).
RETRY_FLOOR = 0.1
_STREAK_CAP = 300.0
_MAX_WAIT_S = 24 * 3600  # a server-given wait (X-MS-BackOffDuration, Retry-After) is clamped to a day
# Ping HeartbeatInterval values the device can use (MS-ASCMD 2.2.3.88.1: "implementation-specific";
# Exchange's range is 60..3540, test servers go lower): a Status 5 bound outside them is not followed
HEARTBEAT_RANGE = (1, 3540)
ADJUSTED = "adjusted"  # a Ping Status 5 whose bound the device follows: an OK outcome (loadgen/results/report.py OK_OUTCOMES)


class Device:
    # slots: ~400 bytes per device instead of a ~1.6 KB attribute dict (more than 30 attributes
    # defeat CPython's key-sharing dicts); an attribute not listed still works (it goes to
    # __dict__, created on first use), but list new ones here (memory per device matters: see transport.py)
    __slots__ = ("_domain", "_password", "_sent", "actual_start", "alive", "attachments_fetched", "backoff_until",
                 "base_url", "calendar", "calendar_due", "calendar_key", "detail", "devinfo_sent", "discovered",
                 "endpoint", "enrolled", "fetches", "folder_key", "folders", "fumbled", "generation", "heartbeat",
                 "ident", "in_flight", "inbox", "index", "intended_start", "items", "load", "need_provision",
                 "origin", "password", "password_history", "password_serial", "pending_sync", "prefs", "profile",
                 "prov", "reprovision_streak", "rng", "state", "stats", "stopping", "sync_key", "trigger", "user",
                 "version", "retry_streak", "redirect_streak", "trusted", "resets", "ping_adjusted", "__dict__")

    def __init__(self, index, user, password, version, profile, ident, base_url, load, stats, rng, domain="",
                 origin=None):
        self.index = index
        self.origin = origin  # (seed, user index, slot): where the identity comes from
        self.generation = 0  # factory resets so far
        self.base_url = base_url
        self.user = user
        self.version = version
        self.profile = profile
        self.ident = ident
        self.load = load
        self.stats = stats
        self.rng = rng
        self._password = password
        self._domain = domain
        self._enrol(ident)
        self.state = NEW
        self.backoff_until = 0.0
        self.detail = None
        self.alive = True
        self.stopping = False  # ramp-down: finish the request in flight, send no other (engine.Stages)
        self._sent = 0
        self.in_flight = None  # the command whose answer the device is waiting for
        self.password = passwords.Password(profile.caps.initial_password) if profile.caps.password else None
        self.password_history = ()
        self.password_serial = 0
        self.intended_start = None  # loop time the schedule meant the device to start
        self.actual_start = None
        self.enrolled = False

    def _enrol(self, ident):
        """Start as a factory-fresh device with identity ``ident``."""
        self.ident = ident
        old = getattr(self, "endpoint", None)
        if old is not None:  # re-enrolment: the old identity's connections are not kept
            old.close()
        self.trusted = ()  # hosts an Autodiscover answer named over https (loadgen/wire/redirects.py)
        self.retry_streak = 0  # retries in a row that met the same failure (see _retry)
        self.redirect_streak = 0  # redirects in a row without an answer in between
        self.resets = 0  # hierarchy resets (Ping 7, Sync 12) in a row without a Sync or Ping answered OK
        self.ping_adjusted = False  # the last Ping answer was a Status 5 the device followed
        self.endpoint = self._endpoint(self.base_url)
        self.prov = Provisioner(self.version, self.profile.caps, ident.info, retry_interval=self.load.retry_interval,
                                retry_backoff=self.load.backoff)
        self.discovered = False  # Autodiscover again as a factory-fresh device
        self.folder_key = "0"
        self.folders = 0
        self.inbox = None
        self.sync_key = "0"
        self.pending_sync = False
        self.items = 0
        self.calendar = None  # the Calendar folder's id (type 8), synced when load.sync_calendar
        self.calendar_key = "0"
        self.calendar_due = False  # sync the calendar (after enrolment and every new policy)
        self.prefs = None  # policies.SyncPreferences: the user's wishes clamped to the applied policy
        self.fetches = []  # queued ItemOperations: ("attachment", file reference) / ("body", server id)
        self.attachments_fetched = 0
        self.heartbeat = self.load.heartbeat
        self.fumbled = False  # the profile's failed unlocks happen once per enrolment
        self.devinfo_sent = False
        self.need_provision = self.profile.caps.provisionable
        self.trigger = None
        self.reprovision_streak = 0

    # -- plumbing

    def _endpoint(self, url):
        """The device's request head at ``url`` (MS-ASHTTP 2.2.1.1), built once, and its connections."""
        ident = self.ident
        return DeviceEndpoint(http.request_head(url, self.user, self._password, ident.device_id, ident.device_type,
                                                self.version.text, self.profile.user_agent, self._domain))

    async def _sleep(self, seconds, deadline):
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        if seconds <= 0:  # zero think time: no extra loop turn (the next request awaits the network anyway)
            return True
        await asyncio.sleep(min(seconds, remaining))
        return loop.time() < deadline

    async def _backoff(self, deadline, seconds=None):
        """Wait before a retry: ``seconds`` (the scenario's backoff by default), at least RETRY_FLOOR."""
        if seconds is None:
            seconds = self.load.backoff
        return await self._sleep(seconds if seconds > RETRY_FLOOR else RETRY_FLOOR, deadline)

    async def _retry(self, deadline, seconds=None):
        """Wait before retrying what failed the last time too: the backoff doubled for every
        failure in a row (``retry_streak``), from RETRY_FLOOR up to _STREAK_CAP."""
        base = self.load.backoff if seconds is None else seconds
        base = base if base > RETRY_FLOOR else RETRY_FLOOR
        wait = base * (1 << min(self.retry_streak, 16))
        self.retry_streak += 1
        return await self._sleep(min(wait, max(base, _STREAK_CAP)), deadline)

    async def _hierarchy_reset(self, deadline):
        """Ping 7 / Sync 12 sent the device to FolderSync; the second in a row without a Ping or
        Sync answered OK between them waits a backoff (a server that keeps saying so)."""
        self.resets += 1
        if self.resets > 1:
            await self._backoff(deadline)

    async def _exchange(self, transport, command, body, policy_key, timeout=None, park=None):
        """(response, decoded tree); (None, None) when ``park`` is given and the request was parked:
        ``transport.park`` then calls ``park(self, response)`` with the answer."""
        if self.backoff_until:  # an X-MS-BackOffDuration to honour first (0.0: none yet)
            loop = asyncio.get_running_loop()
            if self.backoff_until > loop.time():
                await asyncio.sleep(self.backoff_until - loop.time())
        if self.stopping:
            raise Stopped()
        if self.load.request_cap:  # the global request-rate cap (ratelimit.py): one test when off
            await ratelimit.acquire(self.load)
        self.in_flight = command
        if park is not None:
            resp = await transport.park(self.endpoint, command, body, policy_key, park, self, timeout)
            if resp is None:
                return None, None  # in flight, and no coroutine waits for it (in_flight stays set)
        else:
            resp = await transport.post(self.endpoint, command, body, policy_key, timeout)
        if resp.status == 401 and resp.headers.get("WWW-Authenticate", "")[:5].lower() == "basic":
            self.stats.record(command, 401, "challenge", resp.elapsed, len(body), len(resp.body))  # answer once
            resp = await transport.post(self.endpoint, command, body, policy_key, timeout)
        return resp, self._received(command, body, resp)

    def _received(self, command, body, resp):
        """The answer is in: the decoded tree (None for no body, MALFORMED for a damaged one).
        ``in_flight`` is cleared once the answer is read, so an exception while reading it leaves the
        request in flight for the engine's catch-all to count (loadgen/run/engine.py Lives.crashed)."""
        self._sent = len(body)
        backoff = resp.headers.get("X-MS-BackOffDuration") if resp.status else None
        if backoff:
            ms = _backoff_ms(backoff)
            if ms > 0:
                # Exchange's budget back-off suggestion: honour it before the next request
                self.backoff_until = asyncio.get_running_loop().time() + ms / 1000.0
                self.stats.throttle("BackOffDuration")
        tree = self._tree(command, resp.status, resp.body)
        self.in_flight = None
        return tree

    def _tree(self, command, status, body):
        """The body's part in classifying an answer, which goes by HTTP status first: a 200's body
        is the command's answer (MALFORMED when it does not decode); a 403's, 449's or 503's may
        carry an EAS status (MS-ASCMD 2.2.2) and is read when it decodes, else the status alone
        decides; any other status (401, 451, 5xx ...) is classified without its body.  The
        Content-Type is not consulted: servers leave it out or get it wrong (an empty 401)."""
        if not body:
            return None
        if status == 200:
            try:
                return _decode(body)
            except WBXMLError:
                self.stats.malformed_response(command)
                return MALFORMED
        if status in _STATUS_BODIES:
            try:
                return _decode(body)
            except WBXMLError:
                return None
        return None

    def _record(self, command, resp, outcome, eas_status=None):
        self.stats.record(command, resp.status, outcome, resp.elapsed, self._sent, len(resp.body), eas_status)

    # -- provisioning

    async def provision(self, transport, deadline):
        """Run the provisioning conversation; returns True when the device may sync."""
        self.state = PROVISIONING
        if self.trigger:
            self.stats.reprovision(self.trigger)
        action = self.prov.start()
        while True:
            resp, tree = await self._exchange(transport, action.command, action.body, action.policy_key)
            if resp.status == 0:
                self._record(action.command, resp, no_answer_outcome(resp.error))
                self.prov.failed()
                await self._backoff(deadline)
                return False
            if tree is MALFORMED:  # a damaged answer is a server fault, not a verdict: start again later
                self._record(action.command, resp, "malformed")
                self.prov.failed()
                await self._backoff(deadline)
                return False
            if resp.status != 451:
                self.redirect_streak = 0
            parsed = None
            if resp.status == 200 and tree is not None:
                try:
                    parsed = _parse_shared(commands.parse_provision, tree)
                except ValueError:
                    pass  # the provisioner parses it again and says why it fails
            result = self.prov.receive(resp.status, resp.headers, tree, parsed)
            status = parsed.status if parsed is not None else commands.root_status(tree)
            if isinstance(result, Send):
                self._record(action.command, resp, "ok" if resp.status == 200 else _http_outcome(resp.status), status)
                action = result
                continue
            return await self._on_outcome(action, resp, result, status, deadline, transport)

    async def _on_outcome(self, action, resp, result, status, deadline, transport=None):
        stats = self.stats
        if isinstance(result, Provisioned):
            self._record(action.command, resp, "ok", status)
            stats.provisioning("no_policy" if result.no_policy else "provisioned", result.ack_status)
            if not result.no_policy:
                self._check_password()
            self._apply_preferences()
            if not self.enrolled and self.intended_start is not None:
                # enrolment time from the intended start (no coordinated omission) and from the actual one
                now = asyncio.get_running_loop().time()
                stats.enrolment(now - self.intended_start, now - self.actual_start)
            self.enrolled = True
            self.state = NO_POLICY if result.no_policy else PROVISIONED
            self.need_provision = False
            return True
        if isinstance(result, Wiped):
            self._record(action.command, resp, "ok", status)
            stats.wipe(result.ack_status)
            self.state = WIPED
            await self._after_wipe(deadline)
            return False
        if isinstance(result, Refused):
            self._record(action.command, resp, "refused", status)
            stats.provisioning("refused_%d" % result.status, self.prov.ack_status or 0)
            self.state = REFUSED
            await self._backoff(deadline, result.retry_after)
            return False
        if isinstance(result, Blocked):
            self._record(action.command, resp, "blocked", status)
            stats.provisioning("blocked", 0)
            self.state = BLOCKED
            self.alive = False
            return False
        if isinstance(result, Retry):
            self._record(action.command, resp, "throttled" if resp.status == 503 else _http_outcome(resp.status), status)
            if resp.status == 503:
                stats.throttle(result.reason)
                self.state = THROTTLED
            await self._backoff(deadline, result.after)
            return False
        if isinstance(result, Redirect):
            await self._redirect(transport, action.command, resp, result.location, deadline, status)
            return False
        assert isinstance(result, Failed)
        self._record(action.command, resp, "auth" if resp.status == 401 else _http_outcome(resp.status), status)
        stats.provisioning("failed", self.prov.ack_status or 0)
        self.state = AUTH_FAILED if resp.status == 401 else FAILED
        self.detail = result.reason
        self.alive = False
        return False

    def _apply_preferences(self):
        """The user's Sync preferences clamped to the policy just applied (docs/protocol-notes.md, Which
        policies a device may ignore: the user
        cannot choose a value larger than the policy's); each clamp is counted once per policy."""
        load = self.load
        applied = self.prov.applied if self.profile.caps.provisionable else None
        truncation = load.body_truncation if load.body_truncation > 0 else None
        # the applied policy is shared and read-only: the answer is computed once per policy and wishes
        key = (id(applied), load.html_bodies, truncation, load.email_filter, load.calendar_filter)
        found = _PREFERENCES.get(key)
        if found is None or found[0] is not applied:
            if len(_PREFERENCES) > 1000:
                _PREFERENCES.clear()
            found = _PREFERENCES[key] = (applied, policies.sync_preferences(
                applied, html=load.html_bodies, truncation=truncation, email_filter=load.email_filter,
                calendar_filter=load.calendar_filter))
        self.prefs = found[1]
        for effect in self.prefs.effects:
            self.stats.policy_effects[effect] += 1
        self.calendar_due = True  # the calendar window may have changed with the policy

    def _check_password(self):
        """After (re-)provisioning: does the user's password still satisfy the policy? (docs/protocol-notes.md,
        Which policies a device may ignore)"""
        applied = self.prov.applied
        broken = passwords.violations(self.password, applied)
        if not broken:
            return
        for rule in broken:
            self.stats.password_changes[rule] += 1
        self.password_serial += 1
        self.password_history = (self.password_history + (self.password,))[-max(applied.history, 1):]
        self.password = passwords.replace(self.password, applied, self.password_history,
                                          self.index * 1000 + self.password_serial)

    async def _unlock_fumble(self, deadline):
        """The profile's failed unlocks: code word at CodeWordFrequency, local wipe at the threshold
        (docs/protocol-notes.md, Policy storage and refresh)."""
        self.fumbled = True
        applied = self.prov.applied
        code_word, wiped = passwords.unlock_attempts(self.profile.caps.failed_unlocks,
                                                     applied.max_failed_attempts if applied else 0)
        if code_word:
            self.stats.code_words += 1
        if wiped:
            # the device wipes itself: policy key and sync state are gone (no server involved)
            self.stats.local_wipes += 1
            self.state = WIPED
            await self._after_wipe(deadline)

    async def _after_wipe(self, deadline):
        """Stop for good, or re-enrol later as a factory-fresh device (scenario's reenrol_after)."""
        if self.load.reenrol_after is None or self.origin is None:
            self.alive = False
            return
        if not await self._sleep(self.load.reenrol_after, deadline):
            self.alive = False
            return
        self.generation += 1
        seed, user_index, slot = self.origin
        self._enrol(identity(seed, user_index, slot, self.profile, self.generation))
        self.state = NEW
        self.stats.reenrolment()

    def redirect_rule(self):
        """The run's redirect rule (``ratelimit.install`` puts it on the load configuration), or
        the fallback for a run that did not go through it."""
        rule = self.load.__dict__.get("redirect_rule")
        if rule is None:
            rule = self.load.__dict__["redirect_rule"] = redirects.fallback(self.base_url)
        return rule

    def redirect_verdict(self, location, domains=(), trusted=(), current=None):
        """The redirect rule's verdict (loadgen/wire/redirects.py) on moving this device from ``current``
        (the URL it uses) to ``location``; its configured URL's host and the hosts an
        Autodiscover answer named over https are named hosts, as are ``trusted`` and the hosts in
        ``domains`` (its e-mail domain)."""
        return self.redirect_rule().check(current or self.endpoint._base, location,
                                          hosts=(redirects.host_of(self.base_url),) + self.trusted + tuple(trusted),
                                          domains=domains)

    def _move(self, transport, verdict):
        """Move the device to the URL an allowed ``verdict`` names; the old endpoint's connections
        are closed (nothing of the old server is kept), and the rate cap is turned on for a host
        not on this machine when the rule says so."""
        old = self.endpoint
        if transport is not None and getattr(transport, "disconnect", None) is not None:
            transport.disconnect(old)
        else:
            old.close()
        if verdict.cap:
            ratelimit.remote_move(self.load, verdict.cap)
        self.endpoint = self._endpoint(verdict.url)

    async def _redirect(self, transport, command, resp, location, deadline, status=None):
        """A 451 (MS-ASHTTP 2.2.2.1.1, 3.2.5.1): follow ``location`` if the redirect rule allows it.
        Refused: counted as "redirect_refused", the device ends FAILED, nothing goes there.  The
        URL in use: counted as "redirect_loop", a retry with backoff.  Redirects in a row without
        another answer between them wait a backoff each after the first (no redirect ping-pong)."""
        verdict = self.redirect_verdict(location)
        if verdict.kind == redirects.REFUSED:
            self._record(command, resp, "redirect_refused", status)
            self.state = FAILED
            self.detail = "redirect refused: %s" % verdict.reason
            self.alive = False
            return
        if verdict.kind == redirects.SAME:
            self._record(command, resp, "redirect_loop", status)
            await self._retry(deadline)
            return
        self._record(command, resp, "redirect", status)
        self._move(transport, verdict)
        self.redirect_streak += 1
        if self.redirect_streak > 1:
            await self._retry(deadline)

    # -- ordinary commands

    async def command(self, transport, name, body, deadline, ok_statuses=_SUCCESS, timeout=None, park=None,
                      answer=None, adjusted=None):
        """Send an ordinary command; the decoded tree (None for an empty body) on
        success, ``FAILED`` when the answer sent the device elsewhere.  ``park``: send it
        parked (``PARKED`` is returned at once); ``answer``: (response, tree) of a parked one;
        ``adjusted(tree)``: whether a status not in ``ok_statuses`` is an adjustment the device
        follows (counted as ADJUSTED, not as an error)."""
        if answer is None:
            key = self.prov.policy_key if self.profile.caps.provisionable else None
            resp, tree = await self._exchange(transport, name, body, key, timeout, park)
            if resp is None:
                return PARKED
        else:
            resp, tree = answer
        if resp.status == 0:
            self._record(name, resp, no_answer_outcome(resp.error))
            await self._backoff(deadline)
            return FAILED_CMD
        if tree is MALFORMED:
            self._record(name, resp, "malformed")
            await self._backoff(deadline)
            return FAILED_CMD
        reaction = classify(resp.status, resp.headers, tree, self.load.retry_interval, self.load.backoff)
        kind = reaction.kind
        if kind is _OK:
            status = reaction.status
            if status is None or status in ok_statuses:
                outcome = "ok"
            elif adjusted is not None and adjusted(self, tree):
                outcome = ADJUSTED  # a bound the device follows (Ping Status 5): not an error
            else:
                outcome = "eas_error"
            self._record(name, resp, outcome, status)
            self.reprovision_streak = 0
            self.redirect_streak = 0
            return tree
        if kind is _REDIRECT:
            await self._redirect(transport, name, resp, reaction.detail, deadline, reaction.status)
            return FAILED_CMD
        self.redirect_streak = 0
        self._record(name, resp, kind.value if kind is not _ERROR else _http_outcome(resp.status), reaction.status)
        if kind is _REPROVISION:
            self.reprovision_streak += 1
            if self.reprovision_streak > _MAX_REPROVISION_STREAK or not self.profile.caps.provisionable:
                # provisioning does not satisfy the server: behave as refused, retry hourly
                self.state = REFUSED
                # 12.1: tell the user to contact the administrator, retry hourly (docs/protocol-notes.md, 449 vs
                # in-band statuses 139-145 and how Exchange chooses)
                self.detail = "server keeps asking for provisioning (%s): contact the administrator" % reaction.trigger
                self.stats.provisioning("loop_%s" % reaction.trigger, self.prov.ack_status or 0)
                await self._backoff(deadline, self.load.retry_interval)
                self.reprovision_streak = 0
            self.need_provision = self.profile.caps.provisionable
            self.trigger = reaction.trigger
        elif kind is _REFUSED:
            self.state = REFUSED
            self.detail = "status %s" % reaction.status
            await self._backoff(deadline, reaction.wait)
            self.need_provision = self.profile.caps.provisionable
            self.trigger = None
        elif kind is _BLOCKED:
            if name in ("Sync", "Ping") and self.folder_key != "0":
                # 129 after the hierarchy was allowed: quarantine (Exchange lets a quarantined
                # device provision and see its folders; see loadgen/exchange/server.py _abq).  The
                # device keeps that limited life and asks again later: an admin may release it.
                self.state = QUARANTINED
                await self._backoff(deadline, self.load.quarantine_retry)
            else:
                self.state = BLOCKED
                self.alive = False
        elif kind is _THROTTLED:
            self.stats.throttle(reaction.detail)
            self.state = THROTTLED
            await self._backoff(deadline, reaction.wait)
        elif kind is _AUTH:
            self.state = AUTH_FAILED
            self.detail = "authentication failed (HTTP 401 on %s)" % name
            self.alive = False
        else:
            await self._backoff(deadline, reaction.wait)
        return FAILED_CMD

    # -- life

    async def run(self, transport, deadline, park=None):
        """The device's life until ``deadline``.  With ``park`` (engine.Lives, over a transport that
        can park requests) a Ping is sent parked and ``run`` returns while it is held: the
        transport calls ``park(self, response)`` with its answer, and the life goes on with
        :meth:`ping_answered` and ``run`` again, in a fresh task.  A device holding a Ping then
        costs no task, coroutine or future (memory per device)."""
        loop = asyncio.get_running_loop()
        while self.alive and not self.stopping and loop.time() < deadline:
            if self.load.autodiscover is not None and not self.discovered:  # [target] autodiscover
                if not await autodiscover.device_step(self, deadline, transport):
                    continue
            if self.need_provision:
                if not await self.provision(transport, deadline):
                    continue
                self.trigger = None
            elif self.state in (NEW, REFUSED, THROTTLED, QUARANTINED):
                self.state = UNPROVISIONED if not self.profile.caps.provisionable else PROVISIONED
            if self.version.device_info_via_settings and not self.devinfo_sent:
                # 12.1 / 14.0: DeviceInformation through Settings, after provisioning and
                # before the first FolderSync (MS-ASCMD 2.2.3.45; docs/protocol-notes.md, ABQ and DeviceInformation)
                tree = await self.command(transport, "Settings",
                                          commands.settings_device_information(self.ident.info), deadline)
                if tree is FAILED_CMD:
                    continue
                self.devinfo_sent = True
            if self.folder_key == "0" or self.load.mode == "foldersync":
                if self.folder_key != "0" and not await self._think(deadline):
                    break
                await self._foldersync(transport, deadline)
                continue
            if self.inbox is None:
                # no Inbox in the hierarchy (a server without mail storage): the device syncs what
                # exists (the Calendar, when asked) and otherwise idles, asking for the hierarchy's
                # changes again after a wait that doubles each time it still finds no Inbox
                if self.calendar_due and self.calendar is not None and self.load.sync_calendar:
                    await self._sync_calendar(transport, deadline)
                    continue
                if await self._retry(deadline, max(self.load.think_time, self.load.backoff)):
                    await self._foldersync(transport, deadline)
                continue
            if (self.profile.caps.failed_unlocks and not self.fumbled and self.sync_key != "0"
                    and self.prov.applied is not None):
                await self._unlock_fumble(deadline)
                continue
            if self.sync_key == "0" or self.pending_sync:
                await self._sync(transport, deadline)
            elif self.fetches:
                await self._itemops(transport, deadline)
            elif self.calendar_due and self.calendar is not None and self.load.sync_calendar:
                await self._sync_calendar(transport, deadline)
            elif self.load.mode == "ping":
                if await self._ping(transport, deadline, park) is PARKED:
                    return
            else:  # poll: Sync the Inbox every think time
                if not await self._think(deadline):
                    break
                self.pending_sync = True

    async def _think(self, deadline):
        think = self.load.think_time
        if think > 0:
            think = self.rng.expovariate(1.0 / think)
        return await self._sleep(think, deadline)

    def _parse(self, command, parse, tree, **kw):
        """``parse(tree)``, or None when the answer is malformed: counted, and the device carries on."""
        try:
            return _parse_shared(parse, tree, **kw) if not kw else parse(tree, **kw)
        except ValueError:
            self.stats.malformed_response(command)
            return None

    async def _foldersync(self, transport, deadline):
        tree = await self.command(transport, "FolderSync", commands.foldersync(self.folder_key), deadline)
        if tree is FAILED_CMD:
            return
        fs = self._parse("FolderSync", commands.parse_foldersync, tree)
        if fs is None:  # counted as malformed: retried after a backoff
            await self._retry(deadline)
            return
        if fs.status == _FOLDERSYNC_OK and fs.sync_key:
            if self.inbox is not None:
                self.retry_streak = 0
            if self.folder_key == "0":
                self.inbox = None
            self.folder_key = fs.sync_key
            self.folders += len(fs.added)
            for folder in fs.added:
                if folder.type == 2 and self.inbox is None:  # the Inbox (MS-ASCMD 2.2.3.186.3)
                    self.inbox = folder.server_id
                    self.sync_key = "0"
                elif folder.type == 8 and self.calendar is None:  # the default Calendar
                    self.calendar = folder.server_id
                    self.calendar_key = "0"
                    self.calendar_due = True
        elif fs.status == _FOLDERSYNC_BAD_KEY and self.folder_key != "0":  # start the hierarchy again
            self.folder_key = "0"
            self.folders = 0
            self.calendar = None
        else:
            # MS-ASCMD 2.2.3.177.4: 6 server error, 10/11/12 ..., 9 for SyncKey 0 itself, or a
            # status 1 without a SyncKey: the same request again after a backoff that grows
            await self._retry(deadline)

    def _sync_template(self, calendar=False):
        """The Sync request of a collection, within the applied policy (policy.sync_preferences):
        body type and TruncationSize, and the e-mail's or the calendar's FilterType."""
        prefs = self.prefs
        if prefs is None:
            self._apply_preferences()
            prefs = self.prefs
        filter_type = prefs.calendar_filter if calendar else prefs.email_filter
        key = (prefs.body_type, prefs.truncation, self.load.window_size, filter_type)
        template = _SYNC_TEMPLATES.get(key)
        if template is None:
            template = _SYNC_TEMPLATES[key] = commands.sync_template(prefs.body_type, prefs.truncation,
                                                                     self.load.window_size, filter_type)
        return template

    async def _sync(self, transport, deadline):
        if self.sync_key == "0":
            body = commands.sync_initial(self.inbox)
        else:
            body = self._sync_template().render(self.sync_key, self.inbox)
        tree = await self.command(transport, "Sync", body, deadline)
        if tree is FAILED_CMD:
            return
        load = self.load
        opens_attachments = load.open_attachments
        opens_truncated = load.open_truncated
        resp = self._parse("Sync", commands.parse_sync, tree, details=opens_attachments > 0 or opens_truncated > 0)
        if resp is None:
            self.pending_sync = False
            await self._retry(deadline)
            return
        if resp.status == _SYNC_OK:
            if resp.sync_key:
                first = self.sync_key == "0"
                self.sync_key = resp.sync_key
                self.items += resp.added
                if resp.attachments or resp.truncated:
                    self._open(resp, opens_attachments, opens_truncated)
                # after the initial Sync, fetch; then again while the server has more
                self.pending_sync = first or resp.more_available
                self.retry_streak = 0
                self.resets = 0
            else:
                self.pending_sync = False
                if self.sync_key == "0":  # no SyncKey for SyncKey 0: the same request again, later
                    await self._retry(deadline)
        elif resp.status == _SYNC_BAD_KEY:  # start the folder again (MS-ASCMD 2.2.3.177.17)
            if self.sync_key == "0":  # ... for SyncKey 0 itself: not a way forward, back off
                await self._retry(deadline)
            self.sync_key = "0"
        elif resp.status == _SYNC_HIERARCHY_CHANGED:  # FolderSync first
            self.folder_key = "0"
            self.folders = 0
            await self._hierarchy_reset(deadline)
        else:
            self.pending_sync = False
            await self._backoff(deadline)

    def _open(self, resp, opens_attachments, opens_truncated):
        """The user opens some of the new mail: attachments (fetched only where the policy lets
        the device: AttachmentsEnabled, MaxAttachmentSize) and truncated bodies."""
        rng = self.rng
        fetches = self.fetches
        stats = self.stats
        applied = self.prov.applied if self.profile.caps.provisionable else None
        for att in resp.attachments:
            if rng.random() >= opens_attachments:
                continue
            decision = policies.attachment_decision(applied, att.estimated_size)
            if decision != policies.FETCH:
                stats.policy_effects[decision] += 1
            elif len(fetches) < _MAX_PENDING_FETCHES:
                fetches.append(("attachment", att.file_reference, att.estimated_size))
            else:
                stats.policy_effects[FETCH_QUEUE_FULL] += 1
        for server_id in resp.truncated:
            if rng.random() < opens_truncated:
                if len(fetches) < _MAX_PENDING_FETCHES:
                    fetches.append(("body", server_id, None))
                else:
                    stats.policy_effects[FETCH_QUEUE_FULL] += 1

    async def _itemops(self, transport, deadline):
        """One queued ItemOperations Fetch (MS-ASCMD 2.2.1.10), decided again under the policy in
        force when it is sent (the policy may have changed since the user opened the mail).  A
        body fetch asks for the device's body type (no HTML where AllowHTMLEmail is 0) and no
        TruncationSize: the truncation policies do not restrict ItemOperations, the device may fetch the whole
        item (MS-ASPROV 2.2.2.34/2.2.2.35; docs/protocol-notes.md, Which policies a device may ignore).
        returned by the ItemOperations command.  The device can download the full items"."""
        kind, ref, size = item = self.fetches.pop(0)
        if kind == "attachment":
            applied = self.prov.applied if self.profile.caps.provisionable else None
            decision = policies.attachment_decision(applied, size)
            if decision != policies.FETCH:
                self.stats.policy_effects[decision] += 1
                return
            body = commands.itemoperations_fetch_attachment(ref)
        else:
            prefs = self.prefs
            if prefs is None:
                self._apply_preferences()
                prefs = self.prefs
            body = commands.itemoperations_fetch_body(self.inbox, ref, prefs.body_type)
        tree = await self.command(transport, "ItemOperations", body, deadline)
        if tree is FAILED_CMD and self.need_provision:
            self.fetches.insert(0, item)  # 449 / 140-144: provision first, then decide again under the new policy
            return
        if kind == "attachment":
            self.stats.policy_effects[policies.FETCH] += 1  # a fetch request sent
        if tree is FAILED_CMD:
            return
        resp = self._parse("ItemOperations", commands.parse_itemoperations, tree)
        if resp is None:
            return
        if (kind == "attachment" and resp.status == _ITEMOPS_OK and resp.fetches
                and resp.fetches[0].status == _ITEMOPS_OK):
            self.attachments_fetched += 1

    async def _sync_calendar(self, transport, deadline):
        """Sync the Calendar with the calendar FilterType (MaxCalendarAgeFilter clamp): SyncKey 0,
        then GetChanges until nothing more is available; again after every new policy."""
        if self.calendar_key == "0":
            body = commands.sync_initial(self.calendar)
        else:
            body = self._sync_template(calendar=True).render(self.calendar_key, self.calendar)
        tree = await self.command(transport, "Sync", body, deadline)
        if tree is FAILED_CMD:
            return
        resp = self._parse("Sync", commands.parse_sync, tree)
        if resp is None:
            self.calendar_due = False
            await self._retry(deadline)
            return
        if resp.status == _SYNC_OK and resp.sync_key:
            first = self.calendar_key == "0"
            self.calendar_key = resp.sync_key
            self.calendar_due = first or resp.more_available
        elif resp.status == _SYNC_BAD_KEY:
            if self.calendar_key == "0":  # invalid for SyncKey 0 itself: back off
                await self._retry(deadline)
            self.calendar_key = "0"
        elif resp.status == _SYNC_HIERARCHY_CHANGED:
            self.folder_key = "0"
            self.folders = 0
            self.calendar = None
            await self._hierarchy_reset(deadline)
        else:
            self.calendar_due = False
            await self._backoff(deadline)

    async def ping_answered(self, transport, resp, deadline):
        """The answer to a Ping that ``run`` parked, taken as ``_ping`` takes an awaited one."""
        heartbeat = self.heartbeat
        body = _ping_body(heartbeat, self.inbox)
        if resp.status == 401 and resp.headers.get("WWW-Authenticate", "")[:5].lower() == "basic":
            self.stats.record("Ping", 401, "challenge", resp.elapsed, len(body), len(resp.body))  # answer once
            key = self.prov.policy_key if self.profile.caps.provisionable else None
            resp = await transport.post(self.endpoint, "Ping", body, key, heartbeat + self.load.timeout)
        await self._ping(transport, deadline, answer=(resp, self._received("Ping", body, resp)))

    async def _ping(self, transport, deadline, park=None, answer=None):
        heartbeat = self.heartbeat
        tree = await self.command(transport, "Ping", _ping_body(heartbeat, self.inbox), deadline,
                                  ok_statuses=_PING_OK, timeout=heartbeat + self.load.timeout, park=park,
                                  answer=answer, adjusted=_ping_adjusts)
        if tree is FAILED_CMD or tree is PARKED:
            return tree
        resp = self._parse("Ping", commands.parse_ping, tree)
        if resp is None:
            await self._retry(deadline)
            return
        status = resp.status
        adjusted = self.ping_adjusted
        self.ping_adjusted = False
        if status == _PING_CHANGES:  # Sync the folders it names
            self.pending_sync = True
            self.resets = 0
        elif status == _PING_EXPIRED:  # without changes: Ping again
            self.retry_streak = 0
            self.resets = 0
        elif status == _PING_BOUND and not adjusted and _usable_bound(resp.heartbeat) and resp.heartbeat != heartbeat:
            # MS-ASCMD 2.2.3.88.1: the server's minimum or maximum interval: take it (an adjustment)
            self.heartbeat = resp.heartbeat
            self.ping_adjusted = True
        elif status == _PING_FOLDERSYNC:
            self.folder_key = "0"
            self.folders = 0
            await self._hierarchy_reset(deadline)
        else:
            # 3, 4, 6, 8, another status, or a Status 5 whose bound the device cannot use (none,
            # out of HEARTBEAT_RANGE, the very interval it just sent, or a second Status 5 right
            # after it followed one: bounds that contradict each other): the same Ping would get
            # the same answer; wait a backoff that grows while it does
            await self._retry(deadline)


def _usable_bound(heartbeat):
    return heartbeat is not None and HEARTBEAT_RANGE[0] <= heartbeat <= HEARTBEAT_RANGE[1]


def _ping_adjusts(device, tree):
    """Whether a Ping answer outside the OK statuses is a Status 5 the device follows: a bound in
    HEARTBEAT_RANGE other than the interval it sent (``command``'s ``adjusted``)."""
    try:
        resp = _parse_shared(commands.parse_ping, tree)
    except ValueError:
        return False
    return (resp.status == _PING_BOUND and not device.ping_adjusted and _usable_bound(resp.heartbeat)
            and resp.heartbeat != device.heartbeat)


# Identical answers are decoded and parsed once.  In a provisioning storm every device under a
# policy gets the same Provision answers (one policy document, one policy key) and fresh mailboxes
# the same FolderSync hierarchy; the codec and the parsers are pure functions of the bytes, so the
# tree and the parse of a small body are kept (bounded) and shared, read-only, by every device that
# receives the same bytes.  Bodies above _SHARE_MAX_BODY (Sync with mail) are always decoded anew.
_SHARE_MAX_BODY = 2048
_SHARE_MAX_ENTRIES = 512
_SHARED_TREES = {}  # body bytes -> decoded tree
_SHARED_PARSES = {}  # id(tree) -> (tree, {parser: result}); the tree is held, so its id is not reused


def _decode(body):
    """``_wbxml.decode(body)``; one shared (read-only) tree per distinct small body."""
    if len(body) > _SHARE_MAX_BODY:
        return _wbxml.decode(body)
    tree = _SHARED_TREES.get(body)
    if tree is None:
        tree = _wbxml.decode(body)  # WBXMLError: not kept
        if len(_SHARED_TREES) >= _SHARE_MAX_ENTRIES:
            _SHARED_TREES.clear()
            _SHARED_PARSES.clear()
        _SHARED_TREES[body] = tree
        _SHARED_PARSES[id(tree)] = (tree, {})
    return tree


def _parse_shared(parse, tree):
    """``parse(tree)``, computed once per shared tree (see _decode); a ValueError is not kept."""
    entry = _SHARED_PARSES.get(id(tree))
    if entry is None or entry[0] is not tree:
        return parse(tree)
    results = entry[1]
    result = results.get(parse)
    if result is None:
        result = results[parse] = parse(tree)
    return result


_PING_BODIES = {}  # (heartbeat, folder) -> the Ping's body, one bytes object for every device holding it


def _ping_body(heartbeat, folder):
    key = (heartbeat, folder)
    body = _PING_BODIES.get(key)
    if body is None:
        if len(_PING_BODIES) >= 1024:
            _PING_BODIES.clear()
        body = _PING_BODIES[key] = commands.ping(heartbeat, folder)
    return body


def no_answer_outcome(error):
    """The outcome of a request that got no HTTP answer, from the transport's error: "timeout",
    "tls_error" (the TLS handshake failed: an untrusted certificate, a host name mismatch ...;
    the reason is in the error, e.g. "connection:SSLCertVerificationError(...)"), else
    "too_large" (the answer passed the transport's per-response limit or the process's body
    budget), else "conn_error" (refused, reset, malformed response ...)."""
    if error == "timeout" or error == "too_large":
        return error
    if error and error.startswith("connection:SSL"):
        return "tls_error"
    return "conn_error"


def _http_outcome(status):
    if status == 200:
        return "ok"
    if status == 503:
        return "throttled"
    if 400 <= status < 500:
        return "http_4xx"
    if status >= 500:
        return "http_5xx"
    return "http_%d" % status


_NUMBER = re.compile(r"-?\d+")
_STATUS_BODIES = frozenset({403, 449, 503})  # non-200 answers whose body may carry an EAS status
_MAX_WAIT_MS = _MAX_WAIT_S * 1000


def _backoff_ms(value):
    """X-MS-BackOffDuration in milliseconds (0 when absent or not positive), at most a day.

    The header's exact format is not in the stored specification excerpts
    (unverified): the last integer in the value is taken as milliseconds, which
    reads both a bare number and a prefixed form such as "L/-470".  A number of
    any length is clamped to 0.._MAX_WAIT_MS (never an OverflowError, nor the
    ValueError of int() on thousands of digits).
    """
    found = _NUMBER.findall(value)
    if not found:
        return 0
    last = found[-1]
    if last.startswith("-"):
        return 0
    last = last.lstrip("0") or "0"
    if len(last) > 12:
        return _MAX_WAIT_MS
    return min(int(last), _MAX_WAIT_MS)
