"""A simulated device: identity, capabilities, stored policy key, and its life.

The device owns its identity and stored policy key; every protocol decision is
taken by ``loadgen.eas`` (the sans-I/O provisioning machine and ``classify``);
the transport owns the socket; the engine owns the clock's end (deadline).

Life: provision (two steps) -> Settings/DeviceInformation for 12.1/14.0 ->
FolderSync with SyncKey 0 -> FolderSync cycles with think time, reacting to
re-provision signals (449, 140, 142, 143, 144), refusals (139/141/145, retried
at the retry interval), blocks (129), throttling (503 + Retry-After),
redirects (451) and authentication failures (401) until the run ends.

The device by concern: this module the loop, the plumbing of a request and the
ordinary command's reactions; ``policy_life.py`` provisioning, the policy's effects
and redirects; ``mail.py`` the folders, Sync, ItemOperations and Ping;
``profiles.py`` the identity; ``autodiscover.py`` the Autodiscover step;
``states.py`` the states it reports; ``answers.py`` how it reads an answer.
"""

import asyncio

from _wbxml import WBXMLError
from loadgen.device import autodiscover
from loadgen.device.answers import _backoff_ms, _decode, _http_outcome, _parse_shared, no_answer_outcome
from loadgen.device.clients import ClientLife, TokenError, bearer_challenge
from loadgen.device.mail import MailBox, MailLife
from loadgen.device.states import (
    AUTH_FAILED, BLOCKED, FAILED_CMD, MALFORMED, NEW, PARKED, PROVISIONED, QUARANTINED, REFUSED, THROTTLED,
    UNPROVISIONED, Stopped,
)
from loadgen.eas import commands, http, password as passwords
from loadgen.eas.provisioning import Kind, Provisioner, classify
from loadgen.eas.status import SyncStatus
from loadgen.results.outcomes import ADJUSTED
from loadgen.wire import ratelimit
from loadgen.wire.transport import DeviceEndpoint

_OK, _REDIRECT, _ERROR, _REPROVISION = Kind.OK, Kind.REDIRECT, Kind.ERROR, Kind.REPROVISION
_REFUSED, _BLOCKED, _THROTTLED, _AUTH = Kind.REFUSED, Kind.BLOCKED, Kind.THROTTLED, Kind.AUTH
_SUCCESS = (int(SyncStatus.SUCCESS),)  # an ordinary command's OK status: 1, success, for every command
# 449/142/144 right after provisioning: stop looping (docs/protocol-notes.md, 449 vs in-band statuses 139-145
# and how Exchange chooses)
_MAX_REPROVISION_STREAK = 3
# Every retry waits at least RETRY_FLOOR seconds, whatever the scenario's backoff or the server's
# Retry-After says; a retry that met the same failure again (a streak) waits twice as long as the
# last one, up to _STREAK_CAP seconds (or the configured wait, if longer).
RETRY_FLOOR = 0.1
_STREAK_CAP = 300.0
_STATUS_BODIES = frozenset({403, 449, 503})  # non-200 answers whose body may carry an EAS status


class Device(ClientLife, MailLife):
    # slots: ~400 bytes per device instead of a ~1.6 KB attribute dict (more than 30 attributes
    # defeat CPython's key-sharing dicts); an attribute not listed still works (it goes to
    # __dict__, created on first use), but list new ones here or in the slots of the part that owns
    # them (policy_life.PolicyLife, mail.MailLife) (memory per device matters: see transport.py)
    __slots__ = ("_domain", "_password", "_sent", "actual_start", "alive", "backoff_until", "base_url", "detail",
                 "devinfo_sent", "discovered", "endpoint", "generation", "ident", "in_flight", "index",
                 "intended_start", "load", "origin", "profile", "rng", "state", "stats", "stopping", "user",
                 "version", "retry_streak", "_client", "window", "tokens", "token_ok", "client_seen", "client_phase",
                 "__dict__")

    def __init__(self, index, user, password, version, profile, ident, base_url, load, stats, rng, domain="",
                 origin=None, client=None, tokens=None):
        self.index = index
        # the client type (loadgen/device/clients.py ClientType; None: as without client types) and the
        # run's OAuth token source (None: Basic with the password)
        self._client = client
        self.tokens = tokens
        self.token_ok = False
        self.client_seen = 0
        self.client_phase = 0
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
        self.prov = Provisioner(self.version, self.profile.caps, ident.device_information, retry_interval=self.load.retry_interval,
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
        client = self._client
        self.heartbeat = client.heartbeat if client is not None and client.heartbeat else self.load.heartbeat
        self.window = client.window if client is not None and client.window else 0  # 0: [load] window_size
        self.fumbled = False  # the profile's failed unlocks happen once per enrolment
        self.devinfo_sent = False
        self.need_provision = self.profile.caps.provisionable
        self.trigger = None
        self.reprovision_streak = 0
        mail = getattr(self.load, "mail", None)
        # [mail]: the user's mail state (loadgen/device/mail.py MailBox), None without mail
        old_box = getattr(self, "box", None)
        self.box = MailBox(self.load.address(self.index // self.load.devices_per_user)) if mail is not None else None
        if old_box is not None and self.box is not None:  # re-enrolled: its messages keep unique ClientIds, tokens
            self.box.seq = old_box.seq
            self.box.adds = old_box.adds
        self.wake = None

    @property
    def client(self):
        return self._client

    @client.setter
    def client(self, client):
        """Set the client type (the engine, before the device starts): its first heartbeat and window."""
        self._client = client
        self.heartbeat = client.heartbeat if client is not None and client.heartbeat else self.load.heartbeat
        self.window = client.window if client is not None and client.window else 0

    # -- plumbing

    def _endpoint(self, url):
        """The device's request head at ``url`` (MS-ASHTTP 2.2.1.1), built once, and its connections."""
        ident = self.ident
        bearer = self.tokens.cached(self.user) if self.tokens is not None else None
        return DeviceEndpoint(http.request_head(url, self.user, self._password, ident.device_id, ident.device_type,
                                                self.version.text, self.profile.user_agent, self._domain,
                                                bearer=bearer))

    async def _take_token(self, fresh=False):
        """The user's OAuth token into the request head (loadgen/device/clients.py TokenSource); False, the
        device failed as AUTH_FAILED, when none can be had (the reason, never the token, in ``detail``)."""
        try:
            token = await self.tokens.get(self.user, fresh)
        except TokenError as exc:
            self.state = AUTH_FAILED
            self.detail = str(exc)
            self.alive = False
            return False
        # the Authorization line of the head, as loadgen/eas/http.py builds it; the connections stay
        self.endpoint._auth = ("Authorization: %s\r\n" % http.authorization("", bearer=token)).encode("latin-1")
        self.token_ok = True
        return True

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

    async def _exchange(self, transport, command, body, policy_key, timeout=None, park=None, extra=None):
        """(response, decoded tree); (None, None) when ``park`` is given and the request was parked:
        ``transport.park`` then calls ``park(self, response)`` with the answer.  ``extra``: (query,
        Content-Type) of a request that is not WBXML (a 12.x SendMail's raw MIME, MS-ASHTTP 2.2.1.1.1.1)."""
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
        elif extra is None:
            resp = await transport.post(self.endpoint, command, body, policy_key, timeout)
        else:
            resp = await transport.post(self.endpoint, command, body, policy_key, timeout, extra=extra)
        if resp.status == 401 and self.tokens is not None and bearer_challenge(resp):
            # RFC 6750 3: the token expired or was revoked: a fresh one, the request once more
            self.stats.record(command, 401, "challenge", resp.elapsed, len(body), len(resp.body))
            if await self._take_token(fresh=True):  # else the 401 is classified below: AUTH_FAILED
                if extra is None:
                    resp = await transport.post(self.endpoint, command, body, policy_key, timeout)
                else:
                    resp = await transport.post(self.endpoint, command, body, policy_key, timeout, extra=extra)
        elif resp.status == 401 and resp.headers.get("WWW-Authenticate", "")[:5].lower() == "basic":
            self.stats.record(command, 401, "challenge", resp.elapsed, len(body), len(resp.body))  # answer once
            if extra is None:
                resp = await transport.post(self.endpoint, command, body, policy_key, timeout)
            else:
                resp = await transport.post(self.endpoint, command, body, policy_key, timeout, extra=extra)
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

    # -- ordinary commands

    async def command(self, transport, name, body, deadline, ok_statuses=_SUCCESS, timeout=None, park=None,
                      answer=None, adjusted=None, extra=None):
        """Send an ordinary command; the decoded tree (None for an empty body) on
        success, ``FAILED`` when the answer sent the device elsewhere.  ``park``: send it
        parked (``PARKED`` is returned at once); ``answer``: (response, tree) of a parked one;
        ``adjusted(tree)``: whether a status not in ``ok_statuses`` is an adjustment the device
        follows (counted as ADJUSTED, not as an error)."""
        if answer is None:
            key = self.prov.policy_key if self.profile.caps.provisionable else None
            resp, tree = await self._exchange(transport, name, body, key, timeout, park, extra)
            if resp is None:
                return PARKED
        else:
            resp, tree = answer
        if resp.status == 0:
            self._record(name, resp, no_answer_outcome(resp.error))
            if name == "Ping":
                self._ping_failed()  # the client type's heartbeat rule (loadgen/device/clients.py)
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
            if self.tokens is not None and not self.token_ok:  # [auth] token_file / token_command
                if not await self._take_token():
                    break
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
            if self.box is not None:  # [mail]: every folder, both ways, and the user's actions
                if (self.profile.caps.failed_unlocks and not self.fumbled and self.prov.applied is not None
                        and self.box.colls.get(self.inbox) is not None and self.box.colls[self.inbox].key != "0"):
                    await self._unlock_fumble(deadline)
                    continue
                if await self._mail_turn(transport, deadline, park) is PARKED:
                    return
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
