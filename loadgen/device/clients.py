"""Client types: how a kind of real mail client talks EAS, as behaviour parameters of a device.

A :class:`ClientType` is shared, frozen data; a device with ``client`` None lives exactly as without
client types (the scenario's ``[load]`` and ``[mail]`` settings).  The named types, each from a
public source:

* ``ios`` -- Apple's Mail: Ping over mail, calendar, contacts and tasks (Apple's Exchange ActiveSync
  deployment reference and the ``ExchangeActiveSync`` device-management payload: mail, contacts,
  calendars, reminders synced by push), a GAL Search while the user composes (the recipient field
  looks the name up: MS-ASCMD 2.2.1.16 Search, Store Name "GAL").  DeviceType ``iPhone`` and a
  User-Agent ``Apple-<model identifier, "," as "C">/<iOS build>`` (``Apple-iPhone11C8/1804.70`` for an
  iPhone11,8 on build 18D70, as published captures of iOS Mail's requests show; easload sends an
  iPhone15,2 on iOS 17.1, build 21B74).
* ``android`` -- AOSP Exchange (CyanogenMod/android_packages_apps_Exchange):
  ``src/com/android/exchange/eas/EasPing.java``: the heartbeat starts at 8 min
  (DEFAULT_PING_HEARTBEAT), +5 min (MAXIMUM_HEARTBEAT_INCREMENT) after each Ping Status 1
  (increasePingDuration) up to 28 min (MAXIMUM_PING_HEARTBEAT), -5 min after a network failure of the
  Ping (RESULT_NETWORK_PROBLEM, decreasePingDuration), never below 8 min (MINIMUM_PING_HEARTBEAT);
  ``EasSyncMail.java``: WindowSize 10 (EMAIL_WINDOW_SIZE) times the number of windows, BodyPreference
  Type 2 (HTML) with TruncationSize 200,000 (``Eas.EAS12_TRUNCATION_SIZE``); ``EasSyncBase.java``
  ``performOperation``: the number of windows grows by one when the server answers MoreAvailable
  without a new SyncKey, and is 1 again otherwise; at most 512 (``EasSyncCollectionTypeBase.
  MAX_WINDOW_SIZE``).  ``service/EasServerConnection.java``: DeviceType ``Android`` (DEVICE_TYPE) and
  the User-Agent ``"Android/" + Build.VERSION.RELEASE + "-" + Eas.CLIENT_VERSION`` with
  ``Eas.CLIENT_VERSION = "EAS-1.3"`` (``Eas.java``; easload's release: 7.1.2).  docs/protocol-notes.md
  sections 6 and 17.
* ``outlook-cloud`` -- Outlook for iOS and Android in its cloud architecture (Microsoft Learn,
  "Outlook for iOS and Android in Exchange Online: FAQ" and "Using hybrid Modern Authentication with
  Outlook for iOS and Android"): one partnership per user held by the service, always on, four
  weeks of mail (FilterType 5, one month, the nearest MS-ASCMD 2.2.3.70.1 value) and all of the
  calendar (FilterType 0) and contacts; OAuth: ``Authorization: Bearer`` (RFC 6750 2.1).  DeviceModel
  ``Outlook for iOS and Android`` (what Microsoft Learn's "Enabling Outlook for iOS and Android in
  Exchange Online" has an Allow rule match), DeviceType ``Outlook`` and the User-Agent
  ``Outlook-iOS-Android/1.0`` seen in Exchange's IIS logs for the service's requests.
* The device strings apply to a generic capability profile only (:data:`GENERIC_DEVICE_TYPES`): a
  profile the scenario chose for its own platform keeps its DeviceType and User-Agent.
* ``hanging-sync`` -- Sync with HeartbeatInterval (MS-ASCMD 2.2.3.88.2, 14.0+) or Wait in minutes
  (MS-ASCMD 2.2.3.198, 12.1) instead of Ping: the server holds the Sync until a change or the
  interval's end (MS-ASCMD 3.1.5.4), Status 14 with Limit (MS-ASCMD 2.2.3.97) gives the bound.
* ``misbehaving`` -- a Sync and a GetItemEstimate of the pushed folders alternating about every
  second, as reported against open-source EAS servers (docs/protocol-notes.md section 17, misbehaving
  clients), to exercise a server's protection (throttling, loop detection).

Bearer tokens in runs (``[auth] token_file`` / ``token_command``, loadgen/scenario.py): a
:class:`TokenSource` reads a user's token from a file or runs a command once per user (the user
name its one argument, the token on its standard output), cached; fetched again once when the
server answers 401 with a ``Bearer`` challenge.  A token is never logged, counted or put in argv.
"""

import asyncio
import dataclasses
import hashlib
import shlex
from dataclasses import dataclass

from loadgen.device.states import FAILED_CMD, INTERRUPTED
from loadgen.eas import mail as eas_mail, policy as policies
from loadgen.eas.status import SyncStatus

_SYNC_BAD_WAIT = 14  # MS-ASCMD 2.2.3.177.17: invalid Wait or HeartbeatInterval, Limit gives the bound
_SYNC_BAD_KEY, _SYNC_HIERARCHY_CHANGED = SyncStatus.INVALID_SYNC_KEY, SyncStatus.FOLDER_HIERARCHY_CHANGED
_MINUTE = 60.0


@dataclass(frozen=True, slots=True)
class ClientType:
    """How one kind of client behaves (None / 0: the scenario's setting, no such behaviour)."""

    name: str
    source: str = ""  # where the behaviour is taken from (shown by --dry-run, docs)
    push_folders: tuple | None = None  # folder kinds pinged (loadgen/device/user.py PUSH_FOLDER_TYPES)
    gal_on_compose: bool = False  # a GAL Search as the user types a new message's recipient
    heartbeat: float | None = None  # the first Ping HeartbeatInterval (s)
    heartbeat_step: float = 0.0  # + after a Ping Status 1, - after a Ping's network failure
    heartbeat_min: float = 0.0
    heartbeat_max: float = 3540.0
    window: int | None = None  # the first WindowSize
    window_step: int = 0  # grows by this when MoreAvailable came without a new SyncKey
    window_max: int = 512
    html: bool | None = None  # BodyPreference Type 2 wished
    truncation: int | None = None  # TruncationSize wished (bytes)
    email_filter: int | None = None  # FilterType wished for mail
    calendar_filter: int | None = None
    partnerships_per_user: int = 0  # 1: one device (partnership) per user, whatever devices_per_user says
    bearer: bool = False  # authenticates with an OAuth token ([auth] token_file / token_command)
    hanging_sync: bool = False  # a Sync held by the server (Wait/HeartbeatInterval, the heartbeat) instead of a Ping
    loop_interval: float = 0.0  # misbehaving: seconds between the Sync / GetItemEstimate of its loop
    # what the client calls itself (None: the capability profile's, loadgen/device/profiles.py): the
    # DeviceType of the query (MS-ASHTTP 2.2.1.1.1.2), the User-Agent header, and DeviceInformation's
    # Model and OS (MS-ASCMD 2.2.3.45 / 2.2.3.123)
    device_type: str | None = None
    user_agent: str | None = None
    model: str | None = None
    os: str | None = None

    def after_expiry(self, heartbeat):
        """The heartbeat after a Ping that expired cleanly (Status 1)."""
        if not self.heartbeat_step:
            return heartbeat
        return min(self.heartbeat_max, heartbeat + self.heartbeat_step)

    def after_network_failure(self, heartbeat):
        """The heartbeat after a Ping that got no answer (timeout, reset, closed)."""
        if not self.heartbeat_step:
            return heartbeat
        return max(self.heartbeat_min, heartbeat - self.heartbeat_step)

    def next_window(self, window, more_available, same_key):
        """The WindowSize of the next Sync after an answer (EasSyncBase.performOperation)."""
        if not self.window_step:
            return window
        if more_available and same_key:
            return min(self.window_max, window + self.window_step)
        return self.window


CLIENT_TYPES = {
    "ios": ClientType(
        "ios", "Apple Exchange ActiveSync deployment reference (push of mail, calendars, contacts, reminders)",
        push_folders=("inbox", "calendar", "contacts", "tasks"), gal_on_compose=True,
        device_type="iPhone", user_agent="Apple-iPhone15C2/2102.74", model="iPhone15C2", os="iOS 17.1 21B74"),
    "android": ClientType(
        "android", "AOSP Exchange EasPing.java, EasSyncMail.java, EasSyncBase.java, EasServerConnection.java",
        heartbeat=8 * _MINUTE, heartbeat_step=5 * _MINUTE, heartbeat_min=8 * _MINUTE, heartbeat_max=28 * _MINUTE,
        window=10, window_step=10, window_max=512, html=True, truncation=200_000,
        device_type="Android", user_agent="Android/7.1.2-EAS-1.3", model="Pixel", os="Android 7.1.2"),
    "outlook-cloud": ClientType(
        "outlook-cloud", "Microsoft Learn: Outlook for iOS and Android in Exchange Online, FAQ",
        push_folders=("inbox", "calendar", "contacts"), email_filter=5, calendar_filter=0,
        partnerships_per_user=1, bearer=True, gal_on_compose=True,
        device_type="Outlook", user_agent="Outlook-iOS-Android/1.0", model="Outlook for iOS and Android",
        os="iOS 17.1"),
    "hanging-sync": ClientType(
        "hanging-sync", "MS-ASCMD 2.2.3.88.2 HeartbeatInterval, 2.2.3.198 Wait (Sync held instead of Ping)",
        hanging_sync=True),
    "misbehaving": ClientType(
        "misbehaving", "Sync/GetItemEstimate loop seen against open-source EAS servers (docs/protocol-notes.md 17)",
        loop_interval=1.0),
}


# Capability profiles (loadgen/device/profiles.py) that name no platform of their own: a generic phone
# ("SmartPhone": modern, fumbler).  A client type names the device of such a profile; a profile the
# scenario chose for its platform (legacy PocketPC, no_encryption Android, externally_managed iPhone,
# ...: the device type an Allow/Block/Quarantine rule of the scenario may match) keeps its own.
GENERIC_DEVICE_TYPES = frozenset({"SmartPhone"})
_DRESSED = {}


def dressed(profile, client):
    """``profile`` as a device of ``client`` presents itself: the client type's DeviceType, User-Agent,
    Model and OS in place of a generic profile's (the capabilities stay the profile's, and its name, so
    the summary's profile counts do not change).  Built once per (profile, client type) and shared by
    every such device: the request head and DeviceInformation are made from it once per enrolment
    (loadgen/device/life.py _endpoint, profiles.identity), nothing per request.  ``profile`` itself when
    the client type names nothing or the profile names its own platform."""
    if client is None or client.device_type is None or profile.device_type not in GENERIC_DEVICE_TYPES:
        return profile
    key = (profile.name, client.name)
    found = _DRESSED.get(key)
    if found is None or found[0] is not profile or found[1] is not client:
        found = _DRESSED[key] = (profile, client, dataclasses.replace(
            profile, device_type=client.device_type, user_agent=client.user_agent or profile.user_agent,
            model=client.model or profile.model, os=client.os or profile.os))
    return found[2]


def pick(weights, seed, user_index):
    """The client type of user ``user_index`` drawn by ``weights`` ({name: weight}) from (seed, user
    index) only: every shard and worker draws the same for the same user.  None without weights."""
    if not weights:
        return None
    total = float(sum(weights.values()))
    digest = hashlib.sha256(b"client/%d/%d" % (seed, user_index)).digest()
    x = int.from_bytes(digest[:8], "big") / 2.0 ** 64 * total
    edge = 0.0
    name = None
    for name, weight in weights.items():
        edge += float(weight)
        if x < edge:
            break
    return CLIENT_TYPES[name]


# -- Bearer tokens


class TokenError(Exception):
    """A token could not be had (the message names the user and the source, never a token)."""


class TokenSource:
    """A user's OAuth token: from ``file_pattern`` ({user} replaced by the user name) or the output of
    ``command`` run with the user name as its one argument.  Cached per user; :meth:`get` with
    ``fresh`` reads again (after a 401 Bearer challenge).  The token stays in this object and the
    devices' request heads: not in logs, metrics, argv or exceptions."""

    __slots__ = ("file_pattern", "command", "timeout", "_cache", "_running")

    def __init__(self, file_pattern=None, command=None, timeout=30.0):
        if bool(file_pattern) == bool(command):
            raise ValueError("a token source needs exactly one of a file pattern and a command")
        self.file_pattern = file_pattern
        self.command = command
        self.timeout = timeout
        self._cache = {}
        self._running = {}

    def __repr__(self):  # no token in any representation
        return "TokenSource(%s)" % ("file" if self.file_pattern else "command")

    def cached(self, user):
        return self._cache.get(user)

    async def get(self, user, fresh=False):
        """The token of ``user``; raises TokenError when none can be had."""
        if not fresh:
            found = self._cache.get(user)
            if found is not None:
                return found
        running = self._running.get(user)
        if running is None:  # devices of one user share one read / one run of the command
            running = self._running[user] = asyncio.ensure_future(self._fetch(user))
        try:
            token = await asyncio.shield(running)
        finally:
            if self._running.get(user) is running and running.done():
                del self._running[user]
        self._cache[user] = token
        return token

    async def _fetch(self, user):
        if self.file_pattern:
            path = self.file_pattern.replace("{user}", user)
            try:
                with open(path, encoding="utf-8") as f:
                    token = f.read().strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise TokenError("token file for %s: %s" % (user, getattr(exc, "strerror", None) or
                                                            type(exc).__name__)) from None
        else:
            argv = shlex.split(self.command) + [user]
            try:
                proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                            stdout=asyncio.subprocess.PIPE,
                                                            stderr=asyncio.subprocess.DEVNULL)
            except OSError as exc:
                raise TokenError("token command for %s: %s" % (user, exc.strerror or type(exc).__name__)) from None
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                raise TokenError("token command for %s: no answer in %g s" % (user, self.timeout)) from None
            if proc.returncode != 0:
                raise TokenError("token command for %s: exit status %d" % (user, proc.returncode))
            token = out.decode("utf-8", "replace").strip().splitlines()[0].strip() if out.strip() else ""
        # a token is one RFC 6750 b64token: no spaces or line breaks in a header value
        if not token or any(c in token for c in " \t\r\n") or not token.isascii():
            raise TokenError("the token for %s is empty or not one RFC 6750 b64token" % user)
        return token


def token_source(auth):
    """The :class:`TokenSource` of a scenario's ``[auth]`` part, or None (Basic authentication)."""
    file_pattern = getattr(auth, "token_file", None)
    command = getattr(auth, "token_command", None)
    if not file_pattern and not command:
        return None
    return TokenSource(file_pattern or None, command or None)


def bearer_challenge(resp):
    """Whether a 401 asks for a Bearer token (RFC 6750 3: ``WWW-Authenticate: Bearer ...``)."""
    return resp.status == 401 and resp.headers.get("WWW-Authenticate", "")[:6].lower() == "bearer"


# -- the device's part


class ClientLife:
    """The client type's part of :class:`loadgen.device.life.Device` (its state: the Device slots
    ``_client``, ``window``, ``tokens``); every hook is a no-op for a device without a client type."""

    __slots__ = ()

    def _push_kinds(self):
        client = self._client
        if client is not None and client.push_folders is not None:
            return client.push_folders
        return self.load.mail.push_folders

    def _window_size(self):
        window = self.window
        return window if window else self.load.window_size

    def _ping_expired(self):
        client = self._client
        if client is not None:
            self.heartbeat = client.after_expiry(self.heartbeat)

    def _ping_failed(self):
        client = self._client
        if client is not None:
            self.heartbeat = client.after_network_failure(self.heartbeat)

    def _sync_window(self, more_available, same_key):
        client = self._client
        if client is not None and client.window_step:
            self.window = client.next_window(self.window or client.window, more_available, same_key)

    def _apply_preferences(self):
        """The Sync preferences (loadgen/device/policy_life.py) with the client type's wishes, clamped to
        the policy as the scenario's are."""
        client = self._client
        if client is None or (client.html is None and client.truncation is None and client.email_filter is None
                              and client.calendar_filter is None):
            return super()._apply_preferences()
        load = self.load
        applied = self.prov.applied if self.profile.caps.provisionable else None
        html = load.html_bodies if client.html is None else client.html
        truncation = client.truncation if client.truncation is not None else (
            load.body_truncation if load.body_truncation > 0 else None)
        email_filter = load.email_filter if client.email_filter is None else client.email_filter
        calendar_filter = load.calendar_filter if client.calendar_filter is None else client.calendar_filter
        key = (id(applied), html, truncation, email_filter, calendar_filter)
        found = _PREFERENCES.get(key)
        if found is None or found[0] is not applied:
            if len(_PREFERENCES) > 1000:
                _PREFERENCES.clear()
            found = _PREFERENCES[key] = (applied, policies.sync_preferences(
                applied, html=html, truncation=truncation, email_filter=email_filter,
                calendar_filter=calendar_filter))
        self.prefs = found[1]
        for effect in self.prefs.effects:
            self.stats.policy_effects[effect] += 1
        self.calendar_due = True

    def _sync_answered(self, found, old_key):
        """A collection's answer in a Sync (loadgen/device/mail.py _mail_sync): the window's growth, and
        the changes seen (a held Sync tells an answer with changes from an early empty one by them)."""
        client = self._client
        if client is None:
            return
        if client.window_step and found.collection_id == self.inbox:  # EasSyncMail's window: the mail's
            self.window = client.next_window(self.window or client.window, found.more_available,
                                             found.sync_key == old_key)
        self.client_seen += len(found.added) + len(found.changed) + len(found.deleted)

    # -- instead of a Ping: the hanging Sync and the misbehaving loop (with [mail]: the pushed folders;
    # without: the Inbox, the one folder such a device syncs)

    def _instead_of_ping(self):
        client = self._client
        return client is not None and (client.hanging_sync or client.loop_interval > 0)

    async def _client_wait(self, transport, deadline):
        """What the client does where another would Ping: a held Sync of the pushed folders (of the
        Inbox without [mail]), or the misbehaving loop's next step."""
        if self._client.loop_interval > 0:
            return await self._misbehave(transport, deadline)
        if self.box is None:
            return await self._hanging_inbox_sync(transport, deadline)
        return await self._hanging_sync(transport, deadline)

    def _hold(self, interval):
        """(Wait in minutes, HeartbeatInterval in seconds) of a held Sync: HeartbeatInterval from 14.0
        (MS-ASCMD 2.2.3.88.2), Wait before (MS-ASCMD 2.2.3.198, 1..59 minutes), neither before 12.1."""
        number = self.version.number
        if number >= 140:
            return None, int(interval)
        if number >= 121:
            return max(1, min(59, int(round(interval / _MINUTE)))), None
        return None

    def _pushed_collections(self):
        box = self.box
        return [c for c in (box.colls.get(fid) for fid, _cls in box.pushed) if c is not None and c.key != "0"]

    def _hold_limit(self, result):
        """The interval (s) a Status 14 answer's Limit gives (MS-ASCMD 2.2.3.177.17, 2.2.3.97: seconds;
        minutes for Wait before 14.0) when the device can use it and it is not the one sent, else None."""
        if result.status != _SYNC_BAD_WAIT or not result.limit or result.limit <= 0:
            return None
        limit = float(result.limit) * (_MINUTE if self.version.number < 140 else 1.0)
        if limit == self.heartbeat or not 1 <= limit <= 3540:
            return None
        return limit

    def _hold_refused(self, result):
        """A held Sync answered Status 14: take the Limit as the new interval (:meth:`_hold_limit`)."""
        limit = self._hold_limit(result)
        if limit is None:
            return False
        self.heartbeat = limit
        return True

    @staticmethod
    def _hold_adjusts(device, tree):
        """Whether a held Sync's answer outside the OK statuses is a Status 14 whose Limit the device
        follows (the ``adjusted`` of ``command``): an adjustment, as a Ping's Status 5 is, not an error."""
        try:
            result = eas_mail.parse_sync_all(tree)
        except ValueError:
            return False
        return device._hold_limit(result) is not None

    async def _hanging_sync(self, transport, deadline):
        """One Sync of the pushed folders that the server holds for up to the interval (the device's
        heartbeat) when nothing changes (MS-ASCMD 3.1.5.4), applied by the device's ordinary Sync code.
        An answer without changes that came before the interval's end (a server that does not hold
        it) is followed by a wait for the rest of the interval: never a tight loop.  The user's next
        action stops the wait as it stops a held Ping (counted as interrupted)."""
        colls = self._pushed_collections()
        loop = asyncio.get_running_loop()
        if not colls:
            await self._sleep(min(self.wake_time() - loop.time(), self.heartbeat), deadline)
            return None
        interval = self.heartbeat
        hold = self._hold(interval)
        started = loop.time()
        seen = self.client_seen
        queues = [(c, c.queue) for c in colls]  # the user's changes wait for the ordinary Sync
        for coll in colls:
            coll.queue = None
        try:
            wait = min(self.wake_time(), deadline) - started
            if wait < interval + self.load.timeout:
                try:
                    await asyncio.wait_for(self._mail_sync(transport, deadline, colls, hold), max(wait, 0.0))
                except asyncio.TimeoutError:
                    if self.in_flight == "Sync":
                        self.in_flight = None
                        self.stats.record("Sync", 0, INTERRUPTED, loop.time() - started, 0, 0)
                    return None
            else:
                await self._mail_sync(transport, deadline, colls, hold)
        finally:
            for coll, queue in queues:
                if queue:
                    coll.queue = queue + (coll.queue or [])
        if self.client_seen == seen and not any(c.due for c in colls) and self.heartbeat == interval:
            await self._sleep(min(started + interval, self.wake_time()) - loop.time(), deadline)
        return None

    async def _hanging_inbox_sync(self, transport, deadline):
        """Without [mail]: a Sync of the Inbox that the server holds for up to the heartbeat (MS-ASCMD
        3.1.5.4) in place of the Inbox's Ping.  What it brings is taken as the Inbox's ordinary Sync takes
        it (its SyncKey, the items, MoreAvailable: another Sync at once); Status 14 with a usable Limit
        (MS-ASCMD 2.2.3.97) becomes the next interval.  An answer without changes that came before the
        interval's end (a server that does not hold it) is followed by a wait for the rest of the
        interval: never a tight loop."""
        loop = asyncio.get_running_loop()
        interval = self.heartbeat
        inbox = self.inbox
        prefs = self.prefs
        if prefs is None:
            self._apply_preferences()
            prefs = self.prefs
        request = eas_mail.SyncCollection(inbox, self.sync_key, True, self._window_size(), prefs.email_filter or None,
                                          prefs.body_type, prefs.truncation)
        started = loop.time()
        tree = await self.command(transport, "Sync", eas_mail.sync_request([request], None, *self._hold(interval)),
                                  deadline, timeout=interval + self.load.timeout, adjusted=self._hold_adjusts)
        if tree is FAILED_CMD:
            return None
        result = self._parse("Sync", eas_mail.parse_sync_all, tree)
        if result is None:
            await self._retry(deadline)
            return None
        if result.status == _SYNC_HIERARCHY_CHANGED:
            self.folder_key = "0"
            self.folders = 0
            await self._hierarchy_reset(deadline)
            return None
        if result.status != 1:
            if not self._hold_refused(result):
                await self._retry(deadline)
            return None
        changes = 0
        for found in result.collections:
            if found.collection_id != inbox:
                continue
            if found.status in (None, 1) and found.sync_key:
                self._sync_answered(found, self.sync_key)
                self.sync_key = found.sync_key
                self.items += len(found.added)
                self.pending_sync = found.more_available
                changes += len(found.added) + len(found.changed) + len(found.deleted)
                self.retry_streak = 0
                self.resets = 0
            elif found.status == _SYNC_BAD_KEY:  # start the Inbox again (MS-ASCMD 2.2.3.177.17)
                self.sync_key = "0"
                return None
            else:
                await self._retry(deadline)
                return None
        if not changes and not self.pending_sync:
            await self._sleep(started + interval - loop.time(), deadline)
        return None

    async def _misbehave(self, transport, deadline):
        """The misbehaving loop: every ``loop_interval`` a GetItemEstimate of the pushed folders or a
        Sync of them (of the Inbox without [mail]), in turn, whatever the answers say (the device's own
        backoffs after errors still apply: a server's 503 + Retry-After or a BackOffDuration slows it
        down)."""
        if not await self._sleep(self._client.loop_interval, deadline):
            return None
        self.client_phase ^= 1
        if self.box is None:
            if self.client_phase:
                await self._inbox_estimate(transport, deadline)
            else:
                self.pending_sync = True  # the device's Inbox Sync, next turn (loadgen/device/life.py run)
            return None
        if self.client_phase:
            await self._estimate(transport, deadline)
        else:
            for coll in self._pushed_collections():
                coll.due = True
        return None

    async def _inbox_estimate(self, transport, deadline):
        """GetItemEstimate of the Inbox (MS-ASCMD 2.2.1.9) with its SyncKey and the mail FilterType."""
        if self.sync_key == "0":
            self.pending_sync = True
            return
        prefs = self.prefs
        filter_type = prefs.email_filter if prefs is not None else None
        body = eas_mail.get_item_estimate([(self.sync_key, self.inbox, filter_type, "Email")], self.version.number)
        tree = await self.command(transport, "GetItemEstimate", body, deadline)
        if tree is not FAILED_CMD:
            self._parse("GetItemEstimate", eas_mail.parse_get_item_estimate, tree)


_PREFERENCES = {}
