"""A device's mail: the folder hierarchy, the Inbox and Calendar Sync, the items the user opens
(ItemOperations) and the Ping that waits for changes (MS-ASCMD 2.2.1.5, 2.2.1.21, 2.2.1.10, 2.2.1.13)."""

from loadgen.device.answers import _parse_shared
from loadgen.device.policy_life import PolicyLife
from loadgen.device.states import FAILED_CMD, PARKED
from loadgen.eas import commands, policy as policies
from loadgen.eas.status import FolderSyncStatus, ItemOperationsStatus, PingStatus, SyncStatus

# EAS statuses by name (loadgen/eas/status.py), bound once as module globals for the request path
_FOLDERSYNC_OK, _FOLDERSYNC_BAD_KEY = FolderSyncStatus.SUCCESS, FolderSyncStatus.SYNC_KEY_ERROR
_SYNC_OK, _SYNC_BAD_KEY = SyncStatus.SUCCESS, SyncStatus.INVALID_SYNC_KEY
_SYNC_HIERARCHY_CHANGED = SyncStatus.FOLDER_HIERARCHY_CHANGED
_ITEMOPS_OK = ItemOperationsStatus.SUCCESS
_PING_EXPIRED, _PING_CHANGES = PingStatus.HEARTBEAT_EXPIRED, PingStatus.CHANGES_FOUND
_PING_BOUND, _PING_FOLDERSYNC = PingStatus.INVALID_HEARTBEAT, PingStatus.FOLDER_SYNC_REQUIRED
_PING_OK = (int(_PING_EXPIRED), int(_PING_CHANGES))

_SYNC_TEMPLATES = {}  # (body type, truncation, window, filter) -> Template, shared by all devices
_MAX_PENDING_FETCHES = 100  # ItemOperations a device keeps queued (what the user opened); more are dropped
FETCH_QUEUE_FULL = "fetch_skipped_queue_full"  # policy_effects label of an opened item dropped, the queue full
# Ping HeartbeatInterval values the device can use (MS-ASCMD 2.2.3.88.1: "implementation-specific";
# Exchange's range is 60..3540, test servers go lower): a Status 5 bound outside them is not followed
HEARTBEAT_RANGE = (1, 3540)


class MailLife(PolicyLife):
    """The mail part of :class:`loadgen.device.life.Device` (its state: these slots)."""

    __slots__ = ("folder_key", "folders", "inbox", "sync_key", "pending_sync", "items", "calendar", "calendar_key",
                 "calendar_due", "fetches", "attachments_fetched", "heartbeat", "ping_adjusted", "resets")

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


_PING_BODIES = {}  # (heartbeat, folder) -> the Ping's body, one bytes object for every device holding it


def _ping_body(heartbeat, folder):
    key = (heartbeat, folder)
    body = _PING_BODIES.get(key)
    if body is None:
        if len(_PING_BODIES) >= 1024:
            _PING_BODIES.clear()
        body = _PING_BODIES[key] = commands.ping(heartbeat, folder)
    return body
