"""A device's mail: the folder hierarchy, the Inbox and Calendar Sync, the items the user opens
(ItemOperations) and the Ping that waits for changes (MS-ASCMD 2.2.1.5, 2.2.1.21, 2.2.1.10, 2.2.1.13)."""

import asyncio
import time
from array import array

from loadgen.device import user
from loadgen.device.answers import _parse_shared
from loadgen.device.policy_life import PolicyLife
from loadgen.device.states import FAILED_CMD, INTERRUPTED, PARKED
from loadgen.eas import commands, mail as eas_mail, mime, policy as policies
from loadgen.eas.mime import find_token
from loadgen.eas.status import FolderSyncStatus, ItemOperationsStatus, PingStatus, SyncStatus
from loadgen.results.tasks import SKIPPED, TASK_TYPES

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


# =========================================================================== the users' mail ([mail])
#
# With [mail] (loadgen/scenario.py MailConfig; RunLoad.mail not None) a device keeps a MailBox and
# lives by _mail_turn instead of the Inbox-only Sync and Ping above: every folder of FolderSync
# (a shared hierarchy), Sync of several collections both ways, a Ping over the pushed folders, the
# user's actions (loadgen/device/user.py: one Poisson schedule) and the push latency of the run's
# messages.  Without [mail] nothing below runs and the device is as it was.

_EMAIL_TYPES = frozenset((1, 2, 3, 4, 5, 6, 12))  # mail folder types (MS-ASCMD 2.2.3.186.3)
_CLASS_OF_TYPE = {7: "Tasks", 15: "Tasks", 8: "Calendar", 13: "Calendar", 9: "Contacts", 14: "Contacts",
                  10: "Notes", 17: "Notes", 11: "Journal"}
_ADD_EVENTS = {"Calendar": "calendar_added", "Contacts": "contact_added", "Tasks": "task_added"}
_MAX_COMMANDS = 32  # client commands per collection per Sync request; more wait for the next one
_MAX_QUEUED = 128  # client commands a collection keeps queued (a server that refuses them: oldest dropped)
_MAX_COLLECTIONS = 16  # collections in one Sync request
_MAX_MOVES = 32  # MoveItems moves per request (queued beyond it: dropped, counted as not done)
_MAX_MEETINGS = 8
_MEETING_EVENTS = {1: "meeting_accepted", 2: "meeting_tentative", 3: "meeting_declined"}
_INFO_READ, _INFO_MEETING, _INFO_FLAGGED, _INFO_SHIFT = 1, 2, 4, 3  # window entry: flags | (sender + 1) << 3
_MOVE_OK = 3  # MS-ASCMD 2.2.3.177.10 MoveItems Status 3: success
_ITEM_NOT_FOUND = 8  # MS-ASCMD 2.2.3.177.17 Sync per-item Status 8: object not found
_PING_TOO_MANY = PingStatus.TOO_MANY_FOLDERS if hasattr(PingStatus, "TOO_MANY_FOLDERS") else 6
_SYNC_RETRY = (int(_SYNC_BAD_KEY),)
_HIERARCHIES = {}  # a hierarchy (tuple of Folders) -> the one shared tuple every device with it holds
_PUSHED = {}  # (hierarchy, push folder types) -> ((folder id, class), ...) shared
_INT64, _UINT32 = 2 ** 63, 2 ** 32


def _key(fid, sid):
    """A window's key for server id ``sid`` of folder ``fid``: the number n of a "<fid>:<n>" id (an int
    is half the bytes of the string), else the id itself (MS-ASCMD 2.2.3.166.4: ServerIds are opaque)."""
    head, sep, n = sid.partition(":")
    if sep and head == fid and n.isdigit() and n[0] != "0" and len(n) < 18:
        return int(n)
    return sid


def _sid(fid, key):
    return key if type(key) is str else "%s:%d" % (fid, key)


def _shared_hierarchy(folders):
    found = _HIERARCHIES.get(folders)
    if found is None:
        if len(_HIERARCHIES) > 1024:
            _HIERARCHIES.clear()
        found = _HIERARCHIES[folders] = folders
    return found


def folder_class(folder_type):
    """The airsync:Class of a folder type (MS-ASCMD 2.2.1.13 Ping Class, 2.2.3.186.3 types)."""
    return "Email" if folder_type in _EMAIL_TYPES else _CLASS_OF_TYPE.get(folder_type, "Email")


_NO_ENTRY = object()


class Window:
    """The window of a collection: server id key (loadgen/device/mail.py _key) -> info (flags and sender),
    in insertion order, as a dict is used here (``in``, get, set, ``del``, ``pop``, ``len``, iteration
    over the keys, ``items``).  Kept as two arrays (8 + 4 bytes an entry) while every key is an int and
    every info fits 32 bits, a dict otherwise: a dict of [mail] window (32) int keys and int infos is
    ~3 KB a device with its int objects, the arrays ~0.5 KB.  An empty window holds nothing (the
    folders that keep none: calendar, contacts, tasks)."""

    __slots__ = ("_keys", "_infos", "_dict")

    def __init__(self):
        self._keys = self._infos = self._dict = None

    def _at(self, key):
        keys = self._keys
        if keys is None or type(key) is not int:
            return -1
        try:
            return keys.index(key)
        except ValueError:
            return -1

    def __len__(self):
        d = self._dict
        if d is not None:
            return len(d)
        keys = self._keys
        return 0 if keys is None else len(keys)

    def __contains__(self, key):
        d = self._dict
        if d is not None:
            return key in d
        keys = self._keys
        return keys is not None and type(key) is int and key in keys

    def __getitem__(self, key):
        d = self._dict
        if d is not None:
            return d[key]
        i = self._at(key)
        if i < 0:
            raise KeyError(key)
        return self._infos[i]

    def __setitem__(self, key, info):
        d = self._dict
        if d is None:
            if type(key) is int and -_INT64 <= key < _INT64 and type(info) is int and 0 <= info < _UINT32:
                i = self._at(key)
                if i >= 0:
                    self._infos[i] = info
                elif self._keys is None:
                    self._keys = array("q", (key,))
                    self._infos = array("I", (info,))
                else:
                    self._keys.append(key)
                    self._infos.append(info)
                return
            d = self._dict = dict(self.items())  # an opaque id (or a big info): a dict from now on
            self._keys = self._infos = None
        d[key] = info

    def __delitem__(self, key):
        if self.pop(key, _NO_ENTRY) is _NO_ENTRY:
            raise KeyError(key)

    def pop(self, key, default=_NO_ENTRY):
        d = self._dict
        if d is not None:
            return d.pop(key) if default is _NO_ENTRY else d.pop(key, default)
        i = self._at(key)
        if i < 0:
            if default is _NO_ENTRY:
                raise KeyError(key)
            return default
        info = self._infos[i]
        del self._keys[i]
        del self._infos[i]
        return info

    def __iter__(self):
        d = self._dict
        if d is not None:
            return iter(d)
        return iter(()) if self._keys is None else iter(self._keys)

    def items(self):
        """(key, info) pairs in insertion order (a list: the window may change while it is read)."""
        d = self._dict
        if d is not None:
            return list(d.items())
        return [] if self._keys is None else list(zip(self._keys, self._infos))


class Collection:
    """A folder the device syncs: its SyncKey, whether a Sync of it is due, whether its first download
    is over (``primed``), the window of the last items it synced (server id -> info, insertion order,
    at most [mail] window) and the client commands queued for its next Sync."""

    __slots__ = ("fid", "cls", "type", "key", "due", "primed", "window", "queue")

    def __init__(self, fid, folder_type):
        self.fid = fid
        self.type = folder_type
        self.cls = folder_class(folder_type)
        self.key = "0"
        self.due = True
        self.primed = False
        self.window = Window()
        self.queue = None


class MailBox:
    """A device's mail state (only with [mail]): small and bounded (windows, queues)."""

    __slots__ = ("hierarchy", "colls", "pushed", "max_folders", "next_action", "flush_at", "seq", "address",
                 "moves", "meetings", "oof", "informed", "ping_t0", "sending", "adds")

    def __init__(self, address):
        self.hierarchy = ()
        self.colls = {}
        self.pushed = ()
        self.max_folders = None  # Ping Status 6: at most this many folders
        self.next_action = None  # loop time of the next action (None: to be drawn)
        self.flush_at = 0.0  # loop time the user's changes are sent (0: none queued)
        self.seq = 0  # messages sent (the token's and ClientId's counter)
        self.address = address
        self.moves = None  # [(server id, source folder, destination folder)]
        self.meetings = None  # [(user response, folder id, server id)]
        self.oof = False
        self.informed = False  # Settings UserInformation asked
        self.ping_t0 = 0.0
        self.sending = True
        self.adds = 0


class MailUser:
    """The [mail] part of MailLife (mixed in: see MailLife's bases)."""

    __slots__ = ()

    # -- the hierarchy

    def _mail_folders(self, fs, fresh):
        """FolderSync's answer applied to the shared hierarchy: Adds, Updates, Deletes (MS-ASCMD
        2.2.1.5); the pushed folders' collections made (due: SyncKey 0), the deleted ones' dropped."""
        box = self.box
        if fresh:
            folders = {}
            box.colls = {}
            box.max_folders = None
        else:
            folders = {f.server_id: f for f in box.hierarchy}
            changes = len(fs.added) + len(fs.updated) + len(fs.deleted_ids)
            if changes:
                self.stats.mail("folder_changes", changes)
        for folder in fs.added:
            folders[folder.server_id] = folder
        for folder in fs.updated:
            folders[folder.server_id] = folder
        for sid in fs.deleted_ids:
            folders.pop(sid, None)
            box.colls.pop(sid, None)
        box.hierarchy = _shared_hierarchy(tuple(folders.values()))
        kinds = self._push_kinds()  # the client type's, else [mail] push_folders (loadgen/device/clients.py)
        key = (box.hierarchy, kinds)
        pushed = _PUSHED.get(key)
        if pushed is None:
            wanted = set()
            for name in kinds:
                wanted.update(user.PUSH_FOLDER_TYPES[name])
            pushed = tuple((f.server_id, folder_class(f.type)) for f in box.hierarchy if f.type in wanted)
            if len(_PUSHED) > 1024:
                _PUSHED.clear()
            _PUSHED[key] = pushed
        box.pushed = pushed
        types = {f.server_id: f.type for f in box.hierarchy}
        for fid, _cls in pushed:
            if fid not in box.colls:
                box.colls[fid] = Collection(fid, types[fid])
        inbox = self.inbox
        if inbox is not None and inbox not in box.colls and inbox in types:  # synced even when not pushed
            box.colls[inbox] = Collection(inbox, 2)

    def _collection(self, folder_type):
        """The collection of the first folder of ``folder_type`` (made on first use), or None."""
        box = self.box
        for folder in box.hierarchy:
            if folder.type == folder_type:
                coll = box.colls.get(folder.server_id)
                if coll is None:
                    coll = box.colls[folder.server_id] = Collection(folder.server_id, folder_type)
                return coll
        return None

    # -- the turn: one step of the life with [mail]

    def wake_time(self):
        """Loop time the user next wants to do something (an action, or changes to send)."""
        box = self.box
        wake = box.next_action
        if box.flush_at and box.flush_at < wake:
            wake = box.flush_at
        return wake

    async def _mail_turn(self, transport, deadline, park):
        box = self.box
        loop = asyncio.get_running_loop()
        now = loop.time()
        workload = getattr(self.load, "workload", None)
        if box.next_action is None:
            if workload is not None:
                box.next_action = self._take_plan(deadline)
            else:
                box.next_action = now + self._schedule(deadline, now).delay(self.rng)
        due = [c for c in box.colls.values() if c.due]
        if due:
            await self._mail_sync(transport, deadline, due[:_MAX_COLLECTIONS])
            return None
        if self.fetches:
            await self._itemops(transport, deadline)
            return None
        if not box.informed:
            box.informed = True
            await self._user_information(transport, deadline)
            return None
        if box.flush_at and now >= box.flush_at:
            await self._mail_flush(transport, deadline)
            return None
        if now >= box.next_action:
            if workload is not None:
                await self._task_turn(transport, deadline, now)
                return None
            schedule = self._schedule(deadline, now)
            box.next_action = now + schedule.delay(self.rng)
            if schedule.rate > 0:
                await self._mail_action(transport, deadline, schedule.pick(self.rng))
            return None
        if self.load.mode == "ping":
            return await self._mail_ping(transport, deadline, park)
        # poll: Sync the pushed folders every think time; the user acts in between
        think = self.load.think_time
        wait = self.rng.expovariate(1.0 / think) if think > 0 else 0.0
        wake = self.wake_time() - now
        if wake < wait:
            await self._sleep(wake, deadline)
            return None
        if await self._sleep(wait, deadline):
            for fid, _cls in box.pushed:
                coll = box.colls.get(fid)
                if coll is not None:
                    coll.due = True
        return None

    def _schedule(self, deadline, now):
        """The schedule in force: with sending until [mail] send_until seconds into the run."""
        mail = self.load.mail
        sending, draining = user.schedules(mail)
        if mail.send_until is not None and now >= deadline - self.load.duration + mail.send_until:
            self.box.sending = False
            return draining
        return sending

    # -- Sync, both ways (MS-ASCMD 2.2.1.21)

    def _collection_request(self, coll):
        if coll.key == "0":
            return eas_mail.SyncCollection(coll.fid, "0"), ()
        prefs = self.prefs
        if prefs is None:
            self._apply_preferences()
            prefs = self.prefs
        cls = coll.cls
        filter_type = prefs.email_filter if cls == "Email" else prefs.calendar_filter if cls == "Calendar" else None
        commands_ = ()
        if coll.queue:
            commands_ = tuple(coll.queue[:_MAX_COMMANDS])
            del coll.queue[:_MAX_COMMANDS]
        return eas_mail.SyncCollection(coll.fid, coll.key, True, self._window_size(), filter_type or None,
                                       prefs.body_type, prefs.truncation, True, commands_), commands_

    async def _mail_sync(self, transport, deadline, colls, hold=None):
        """One Sync of ``colls`` (several collections in one request), their answers applied.  ``hold``:
        (Wait, HeartbeatInterval) of a Sync the server may hold (loadgen/device/clients.py hanging Sync)."""
        requests, sent = [], {}
        for coll in colls:
            request, commands_ = self._collection_request(coll)
            requests.append(request)
            if commands_:
                sent[coll.fid] = commands_
        if hold is None:
            tree = await self.command(transport, "Sync", eas_mail.sync_request(requests), deadline)
        else:
            tree = await self.command(transport, "Sync", eas_mail.sync_request(requests, None, *hold), deadline,
                                      timeout=self.heartbeat + self.load.timeout, adjusted=self._hold_adjusts)
        if tree is FAILED_CMD:
            self._requeue(sent)
            return False
        box = self.box
        result = self._parse("Sync", eas_mail.parse_sync_all, tree, own_address=box.address)
        if result is None:
            self._requeue(sent)
            await self._retry(deadline)
            return False
        if result.status == _SYNC_HIERARCHY_CHANGED:
            self.folder_key = "0"
            self.folders = 0
            await self._hierarchy_reset(deadline)
            return False
        if result.status != _SYNC_OK:
            self._requeue(sent)
            if hold is None or not self._hold_refused(result):
                await self._retry(deadline)
            return False
        if not result.collections:  # an empty answer: nothing changed in any of them (MS-ASCMD 2.2.1.21)
            for coll in colls:
                if coll.key != "0":
                    coll.due = False
                    if not coll.primed:
                        self._primed(coll)
                self._applied(coll, sent.get(coll.fid, ()), ())
            if any(c.key == "0" for c in colls):
                await self._retry(deadline)  # SyncKey 0 needs an answer with a key: not a way forward
            return
        answered = set()
        trouble = False
        now_wall = time.time()
        for found in result.collections:
            coll = box.colls.get(found.collection_id)
            if coll is None or coll not in colls or coll.fid in answered:
                continue
            answered.add(coll.fid)
            commands_ = sent.pop(coll.fid, ())
            status = found.status
            if status in (None, _SYNC_OK) and found.sync_key:
                first = coll.key == "0"
                if self._client is not None:
                    self._sync_answered(found, coll.key)
                coll.key = found.sync_key
                self._received_items(coll, found, now_wall)
                self._applied(coll, commands_, found.responses)
                coll.due = first or found.more_available
                if not first and not found.more_available and not coll.primed:
                    self._primed(coll)
                if found.more_available and not (found.added or found.changed or found.deleted):
                    trouble = True  # "more" and nothing in it: not a way forward, the next page after a wait
            elif status in _SYNC_RETRY:  # start the folder again (MS-ASCMD 2.2.3.177.17)
                trouble = trouble or coll.key == "0"
                coll.key = "0"
                coll.primed = False
                coll.window = Window()
                coll.due = True
            elif status == _SYNC_HIERARCHY_CHANGED:
                self.folder_key = "0"
                self.folders = 0
                await self._hierarchy_reset(deadline)
                return False
            else:  # another status (or none, without a key): the commands go again with the next Sync
                self._requeue({coll.fid: commands_})
                coll.due = False
                trouble = True
        for coll in colls:  # not in the answer: nothing for it this time
            if coll.fid not in answered:
                self._requeue({coll.fid: sent.pop(coll.fid, ())})
                if coll.key != "0":
                    coll.due = False
                else:
                    trouble = True
        if trouble:
            await self._retry(deadline)
        else:
            self.retry_streak = 0
            self.resets = 0
        return not trouble

    def _requeue(self, sent):
        box = self.box
        for fid, commands_ in sent.items():
            coll = box.colls.get(fid)
            if coll is None or not commands_:
                continue
            queue = list(commands_) + (coll.queue or [])
            coll.queue = queue[-_MAX_QUEUED:]

    def _applied(self, coll, commands_, responses):
        """The client commands a Sync carried, answered: a Change or Delete is in Responses only when it
        failed (MS-ASCMD 2.2.3.24.3, 2.2.3.42.3; Status 8: the item is gone -- dropped); an Add's
        Response gives its ServerId."""
        if not commands_:
            return
        failed = {r.server_id for r in responses if r.kind in ("Change", "Delete") and r.status not in (None, 1)}
        added = {r.client_id: r for r in responses if r.kind == "Add"}
        stats = self.stats
        for command in commands_:
            kind = type(command)
            if kind is eas_mail.Add:
                response = added.get(command.client_id)
                if response is not None and response.status == 1 and response.server_id:
                    stats.mail(_ADD_EVENTS.get(coll.cls, "other"))
                continue
            if command.server_id in failed:
                continue
            if kind is eas_mail.Delete:
                stats.mail("deleted")
            elif kind is eas_mail.Change:
                stats.mail("flagged" if command.data[0][0] == "Email:Flag" else "read")

    def _received_items(self, coll, found, now_wall):
        """What a Sync brought: the window updated, the run's messages found by their token (push
        latency), and what the user does with new mail queued (read, flag, delete, file, answer)."""
        window = coll.window
        fid = coll.fid
        for sid in found.deleted:
            window.pop(_key(fid, sid), None)
        # the window keeps what the device needs: the server's changes of flags are not; and only
        # mail folders have one (calendar items, contacts and tasks are not acted on once synced)
        if not found.added or coll.cls != "Email":
            return
        load = self.load
        mail = load.mail
        stats = self.stats
        rng = self.rng
        inbox = coll.type == 2
        run_id = load.run_id
        limit = mail.window
        fresh = coll.primed
        for item in found.added:
            sid = item.server_id
            if not sid:
                continue
            key = _key(fid, sid)
            if key in window:
                stats.mail("duplicate")
                continue
            info = _INFO_READ if item.read else 0
            if inbox:
                subject = item.subject
                token = find_token(subject) if subject and "[el1." in subject else None
                if token is not None and token.run == run_id:
                    stats.mail("received")
                    stats.push_latency(item.kind or "bcc", now_wall - token.sent_ms / 1000.0)
                    info |= (token.sender // load.devices_per_user + 1) << _INFO_SHIFT
                elif fresh:
                    stats.mail("received_foreign")
                cls = item.message_class
                if cls and cls.startswith("IPM.Schedule.Meeting.Request"):
                    info |= _INFO_MEETING
                    if fresh:
                        self._answer_meeting(coll, sid)
                if fresh:
                    what = user.reaction(rng, mail)
                    if info & _INFO_MEETING:  # a request is answered, not deleted or filed: the server
                        what &= user.READ | user.FLAG  # files it when answered (loadgen/exchange/meeting.py)
                    if what:
                        self._react(coll, sid, what, item.read)
                        if what & (user.DELETE | user.MOVE):
                            continue  # gone from the window
            window[key] = info
            if len(window) > limit:
                del window[next(iter(window))]

    def _answer_meeting(self, coll, sid):
        """The user answers a meeting request (or leaves it): queued for a MeetingResponse."""
        answer = user.meeting_answer(self.rng, self.load.mail)
        if answer is None:
            return
        box = self.box
        meetings = box.meetings
        if meetings is None:
            meetings = box.meetings = []
        if len(meetings) < _MAX_MEETINGS:
            meetings.append((answer, coll.fid, sid))
            self._flush_soon()

    def _primed(self, coll):
        """The folder's first download is over: the unread meeting requests still in the Inbox window
        (the last ones) are answered as the user finds them."""
        coll.primed = True
        if coll.type == 2:
            for key, info in coll.window.items():
                if info & (_INFO_MEETING | _INFO_READ) == _INFO_MEETING:
                    self._answer_meeting(coll, _sid(coll.fid, key))

    def _react(self, coll, sid, what, already_read):
        queue = coll.queue
        if queue is None:
            queue = coll.queue = []
        if what & user.READ and not already_read:
            queue.append(eas_mail.Change(sid, _READ))
        if what & user.FLAG:
            queue.append(eas_mail.Change(sid, eas_mail.email_flag(eas_mail.FLAG_ACTIVE)))
        if what & user.DELETE:
            queue.append(eas_mail.Delete(sid))
        elif what & user.MOVE:
            box = self.box
            target = self._move_target()
            if target is not None:
                moves = box.moves
                if moves is None:
                    moves = box.moves = []
                if len(moves) < _MAX_MOVES:
                    moves.append((sid, coll.fid, target))
        if len(queue) > _MAX_QUEUED:
            del queue[:len(queue) - _MAX_QUEUED]
        self._flush_soon()

    def _move_target(self):
        """Where a message is filed: a user mail folder (type 12), else Deleted Items."""
        targets = [f.server_id for f in self.box.hierarchy if f.type == 12] or \
                  [f.server_id for f in self.box.hierarchy if f.type == 4]
        return targets[self.rng.randrange(len(targets))] if targets else None

    def _flush_soon(self):
        box = self.box
        if not box.flush_at and getattr(self.load, "workload", None) is None:  # [workload]: a "process" task sends them
            read_after = self.load.mail.read_after
            delay = self.rng.expovariate(1.0 / read_after) if read_after > 0 else 0.0
            box.flush_at = asyncio.get_running_loop().time() + delay

    async def _mail_flush(self, transport, deadline):
        """The user's changes go out: queued client commands with the next Sync of their folders, then
        MoveItems and MeetingResponse, one request per turn."""
        box = self.box
        for coll in box.colls.values():
            if coll.queue:
                coll.due = True
        if box.moves:
            moves, box.moves = box.moves, None
            await self._mail_move(transport, deadline, moves)
        elif box.meetings:
            answer, fid, sid = box.meetings.pop(0)
            await self._meeting(transport, deadline, answer, fid, sid)
        if not box.moves and not box.meetings:
            box.flush_at = 0.0

    async def _mail_move(self, transport, deadline, moves):
        tree = await self.command(transport, "MoveItems", eas_mail.move_items(moves), deadline,
                                  ok_statuses=(1, _MOVE_OK))
        if tree is FAILED_CMD:
            return False
        results = self._parse("MoveItems", eas_mail.parse_move_items, tree)
        if results is None:
            return False
        moved = sum(1 for r in results if r.status == _MOVE_OK)
        if moved:
            self.stats.mail("moved", moved)

    async def _meeting(self, transport, deadline, answer, fid, sid):
        tree = await self.command(transport, "MeetingResponse", eas_mail.meeting_response(answer, fid, sid), deadline)
        if tree is FAILED_CMD:
            return False
        results = self._parse("MeetingResponse", eas_mail.parse_meeting_response, tree)
        coll = self.box.colls.get(fid)
        if results and coll is not None:  # answered, or not a request the server can answer: not again
            coll.window.pop(_key(fid, sid), None)  # (an answered request is filed by the server)
        if not (results and results[0].status == 1):
            return False
        self.stats.mail(_MEETING_EVENTS[answer])
        return True

    # -- Ping over the pushed folders (MS-ASCMD 2.2.1.13)

    def _ping_request(self):
        box = self.box
        folders = box.pushed
        if box.max_folders is not None:
            folders = folders[:box.max_folders]
        return eas_mail.ping_folders(self.heartbeat, folders)

    async def _mail_ping(self, transport, deadline, park, answer=None):
        if answer is None and self._instead_of_ping():  # a held Sync or a loop (loadgen/device/clients.py)
            return await self._client_wait(transport, deadline)
        box = self.box
        if not box.pushed:  # nothing to push: the user's actions only
            now = asyncio.get_running_loop().time()
            await self._sleep(min(self.wake_time() - now, self.heartbeat), deadline)
            return None
        body = self._ping_request()
        if answer is None:
            loop = asyncio.get_running_loop()
            box.ping_t0 = loop.time()
            # the user's next action stops the Ping; changes to send wait for its answer (the next
            # mail, the heartbeat) or that action: a Ping is not stopped for them alone
            if park is None:  # awaited: the device stops its own wait when the user acts
                wait = box.next_action - box.ping_t0
                if wait < self.heartbeat + self.load.timeout:
                    try:
                        tree = await asyncio.wait_for(self._ping_command(transport, body, deadline), max(wait, 0.0))
                    except asyncio.TimeoutError:
                        if self.in_flight == "Ping":
                            self.ping_stopped()
                        return None
                    return await self._mail_pinged(tree, deadline)
            else:
                wake = box.next_action
                self.wake = wake if wake < deadline else None  # the engine stops the parked Ping then
        tree = await self._ping_command(transport, body, deadline, park, answer)
        if tree is PARKED:
            return PARKED
        self.wake = None
        return await self._mail_pinged(tree, deadline)

    def _ping_command(self, transport, body, deadline, park=None, answer=None):
        return self.command(transport, "Ping", body, deadline, ok_statuses=_PING_OK,
                            timeout=self.heartbeat + self.load.timeout, park=park, answer=answer,
                            adjusted=_ping_adjusts)

    def ping_stopped(self):
        """The held Ping was stopped because the user acts, as Android's Exchange client does: one
        operation per account at a time, and a sync pre-empts a running Ping (AOSP
        packages/apps/Exchange src/com/android/exchange/service/PingSyncSynchronizer.java,
        AccountSyncState.syncStart).  Counted as the outcome ``interrupted``: not lost from the
        accounting, and not the server's error."""
        self.wake = None
        self.in_flight = None
        held = asyncio.get_running_loop().time() - self.box.ping_t0
        self.stats.record("Ping", 0, INTERRUPTED, held, len(self._ping_request()), 0)

    async def _mail_pinged(self, tree, deadline):
        if tree is FAILED_CMD:
            return None
        resp = self._parse("Ping", commands.parse_ping, tree)
        if resp is None:
            await self._retry(deadline)
            return None
        box = self.box
        status = resp.status
        adjusted = self.ping_adjusted
        self.ping_adjusted = False
        if status == _PING_CHANGES:  # Sync exactly the folders it names
            named = 0
            for fid in resp.folders:
                coll = box.colls.get(fid)
                if coll is not None:
                    coll.due = True
                    named += 1
            if not named:  # none the device pushes (or none at all): the pushed ones, not a Ping again at once
                for coll in box.colls.values():
                    coll.due = True
            self.resets = 0
            self.retry_streak = 0
        elif status == _PING_EXPIRED:
            self.retry_streak = 0
            self.resets = 0
            self._ping_expired()  # the client type's heartbeat rule (loadgen/device/clients.py)
        elif (status == _PING_BOUND and not adjusted and _usable_bound(resp.heartbeat)
              and resp.heartbeat != self.heartbeat):
            self.heartbeat = resp.heartbeat
            self.ping_adjusted = True
        elif status == _PING_TOO_MANY and resp.max_folders and resp.max_folders > 0 and (
                box.max_folders is None or resp.max_folders < box.max_folders):
            box.max_folders = resp.max_folders  # MS-ASCMD 2.2.3.100: ping at most MaxFolders folders
        elif status == _PING_FOLDERSYNC:
            self.folder_key = "0"
            self.folders = 0
            await self._hierarchy_reset(deadline)
        else:
            await self._retry(deadline)
        return None

    # -- the user's actions

    async def _mail_action(self, transport, deadline, kind):
        if kind == user.SEND:
            await self._send(transport, deadline)
        elif kind == "search_gal":
            await self._search_gal(transport, deadline)
        elif kind == "search_mailbox":
            await self._search_mailbox(transport, deadline)
        elif kind == "resolve":
            await self._resolve(transport, deadline)
        elif kind == "estimate":
            await self._estimate(transport, deadline)
        elif kind == "oof":
            await self._oof(transport, deadline)
        else:
            self._add_item(kind)

    # -- the planned day ([workload], loadgen/run/day.py): tasks at their planned times, open model

    def _take_plan(self, deadline):
        """The device's share of its user's planned day, taken once (a re-enrolled device goes on with
        it): counted as planned; the [mail] choices of its user's profile from now on.  The loop time
        of its first task."""
        plan = getattr(self, "task_plan", None)
        workload = self.load.workload
        if plan is None:
            plan = self.task_plan = workload.device_plan(self.index)
            plan.t0 = deadline - self.load.duration
            self._planned(plan)
        if self.load.mail is not workload.mail_for(plan.profile):
            self.load = self.load.for_profile(plan.profile)
        return self._next_due(plan)

    def _planned(self, plan):
        counts = {}
        for code in plan.kinds:
            counts[code] = counts.get(code, 0) + 1
        for code, n in counts.items():
            self.stats.tasks_planned(TASK_TYPES[code], n)

    def _next_due(self, plan):
        """Loop time of the plan's next task (stress: now, while there is one); NEVER after the last."""
        if plan.next >= len(plan.kinds):
            return user.NEVER
        if plan.stress:
            return 0.0
        return plan.t0 + plan.times[plan.next]

    async def _task_turn(self, transport, deadline, now):
        """The plan's next task, started now; the tasks also due by now wait behind it (queued: they
        fell due while the device was busy), none is skipped.  Its latency counts from its planned time
        (no coordinated omission); stress: from its start, one task after the other, day after day."""
        plan = self.task_plan
        stats = self.stats
        i = plan.next
        kinds = plan.kinds
        if plan.stress:
            planned = now
        else:
            times, t0 = plan.times, plan.t0
            planned = t0 + times[i]
            was_queued = plan.queued_to > i
            j = plan.queued_to if plan.queued_to > i + 1 else i + 1
            low = j
            n = len(kinds)
            while j < n and t0 + times[j] <= now:
                j += 1
            if j > low:
                stats.task_queued(j - low)
                plan.queued_to = j
            if was_queued:
                stats.task_queued(-1)
        plan.next = i + 1
        if plan.stress and plan.next >= len(kinds) and now < deadline:  # the next day at once
            plan = self.task_plan = self.load.workload.device_plan(self.index, plan.day + 1)
            plan.t0 = deadline - self.load.duration
            self._planned(plan)
        self.box.next_action = self._next_due(plan)
        kind = TASK_TYPES[kinds[i]]
        ok = await self._run_task(transport, deadline, kind)
        if ok is SKIPPED:  # nothing to act on: not achieved, not failed (loadgen/results/tasks.py)
            stats.task_result(kind, SKIPPED)
        else:
            stats.task_done(kind, planned, now, asyncio.get_running_loop().time(), ok is not False)

    async def _run_task(self, transport, deadline, kind):
        """One task as the chain of requests it needs; False when one of them failed."""
        if kind == "send" or kind == "reply" or kind == "forward":
            if kind == "send":  # GAL look-ups as the user types the recipients, then SendMail
                for _ in range(user.gal_lookups(self.rng, self.task_plan.gal)):
                    if await self._search_gal(transport, deadline) is False:
                        return False
            return await self._send(transport, deadline, kind)
        box = self.box
        if kind == "process":  # the user's changes to the new mail: a Sync with them, MoveItems for the filed
            inbox = box.colls.get(self.inbox)
            if inbox is not None:
                inbox.due = True
            for coll in box.colls.values():
                if coll.queue:
                    coll.due = True
            ok = True
            due = [c for c in box.colls.values() if c.due]
            if due:
                ok = await self._mail_sync(transport, deadline, due[:_MAX_COLLECTIONS])
            if box.moves:
                moves, box.moves = box.moves, None
                ok = await self._mail_move(transport, deadline, moves) is not False and ok is not False
            return ok
        if kind == "meeting":  # the oldest meeting request the user has not answered
            found = box.meetings.pop(0) if box.meetings else self._meeting_waiting()
            if found is None:
                return SKIPPED  # no request waiting: nothing is sent, and the task is not achieved
            answer, fid, sid = found
            return await self._meeting(transport, deadline, answer, fid, sid)
        if kind == "calendar" or kind == "contact":  # a client Add, and the Sync that carries it
            self._add_item(kind + "_add")
            coll = self._collection(8 if kind == "calendar" else 9)
            if coll is None:
                return False
            return await self._mail_sync(transport, deadline, [coll])
        if kind == "search":
            return await self._search_mailbox(transport, deadline)
        return True

    def _meeting_waiting(self):
        """(answer, folder, server id) of the oldest meeting request still in the Inbox window that no
        answer is queued for (one the user left, or read before: a planned answer takes it), or None.
        The answer is drawn among the answers (the plan's meeting tasks are the answered requests)."""
        coll = self.box.colls.get(self.inbox)
        if coll is None:
            return None
        for key, info in coll.window.items():
            if info & _INFO_MEETING:
                return user.meeting_answer(self.rng, self.load.mail, answered=True), coll.fid, _sid(coll.fid, key)
        return None

    def _own_user(self):
        return self.index // self.load.devices_per_user

    async def _send(self, transport, deadline, kind=None):
        """A new message (SendMail), a reply (SmartReply) or a forward (SmartForward) of a message in
        the Inbox window (Source FolderId + ItemId; ReplaceMime when the user edits the quote), with
        the run's token; 12.x: the raw MIME with SaveInSent=T in the query (MS-ASCMD 2.2.1.17-19,
        MS-ASHTTP 2.2.1.1.1.1)."""
        box = self.box
        load = self.load
        mail = load.mail
        rng = self.rng
        inbox = box.colls.get(self.inbox)
        window = inbox.window if inbox is not None else None
        drawn = kind is None  # [mail]'s schedule (a [workload] send task has its profile's GAL look-ups)
        if kind is None or kind == "send":
            kind = user.message_kind(rng, mail, bool(window)) if kind is None else "new"
        elif not window:  # [workload] reply or forward with nothing to answer yet: a new message
            kind = "new"
        if drawn and kind == "new" and self._client is not None and self._client.gal_on_compose:
            await self._search_gal(transport, deadline)  # the recipient typed in (loadgen/device/clients.py)
        own = self._own_user()
        first = source = None
        if kind != "new":
            keys = list(window)
            key = keys[rng.randrange(len(keys))]
            source = _sid(self.inbox, key)
            sender = window[key] >> _INFO_SHIFT
            if kind == "reply" and sender:
                first = load.address(sender - 1)
        to, cc, bcc = user.recipients(rng, load, own, first)
        box.seq += 1
        seq = box.seq
        sent_ms = int(time.time() * 1000)
        token = mime.make_token(load.run_id, self.index, seq, sent_ms)
        message = user.message(rng, load, box.address, to, cc, bcc, token)
        client_id = "%s.%d.%d" % (load.run_id, self.index, seq)
        name = {"new": "SendMail", "reply": "SmartReply", "forward": "SmartForward"}[kind]
        edit = kind != "new" and rng.random() < mail.edit_share
        extra = None
        if self.version.number < 140:
            if not mail.legacy_mime:
                return None
            extra = (eas_mail.legacy_query(True, source, self.inbox if source else None), eas_mail.MIME_CONTENT_TYPE)
            body = message
        elif kind == "new":
            body = eas_mail.send_mail(client_id, message)
        elif kind == "reply":
            body = eas_mail.smart_reply(client_id, message, self.inbox, source, replace_mime=edit)
        else:
            body = eas_mail.smart_forward(client_id, message, self.inbox, source, replace_mime=edit)
        tree = await self.command(transport, name, body, deadline, extra=extra)
        if tree is FAILED_CMD:
            self.stats.mail("send_failed")
            return False
        status = None
        if tree is not None:  # an empty body is success (MS-ASCMD 2.2.1.17.2)
            try:
                status = eas_mail.parse_compose(tree)
            except ValueError:
                self.stats.malformed_response(name)
                self.stats.mail("send_failed")
                return False
        if status in (None, 1, eas_mail.MESSAGE_PREVIOUSLY_SENT):  # 118: the first submission went through
            self.stats.mail("sent_" + kind)
            return True
        self.stats.mail("send_failed")
        return False

    async def _search_gal(self, transport, deadline):
        load = self.load
        rng = self.rng
        k = rng.randrange(load.users)
        name = load.user_pattern.format(n=k).split("@")[0]
        for prefix in user.prefixes(rng, name):  # as the user types: Range 0-9 each time
            tree = await self.command(transport, "Search", eas_mail.search_gal(prefix), deadline)
            if tree is FAILED_CMD:
                return False
            if self._parse("Search", eas_mail.parse_search, tree) is None:
                return False
            self.stats.mail("search_gal")
        return True

    async def _search_mailbox(self, transport, deadline):
        prefs = self.prefs
        body_type = prefs.body_type if prefs is not None else None
        body = eas_mail.search_mailbox(user.search_word(self.rng), self.inbox, "0-9", body_type, 512)
        tree = await self.command(transport, "Search", body, deadline)
        if tree is not FAILED_CMD and self._parse("Search", eas_mail.parse_search, tree) is not None:
            self.stats.mail("search_mailbox")
            return True
        return False

    async def _resolve(self, transport, deadline):
        rng = self.rng
        own = self._own_user()
        to = [user.recipient(rng, self.load, own) for _ in range(rng.randint(1, 3))]
        now = time.time()
        availability = (now, now + 7200) if self.version.number >= 140 else None  # free/busy: 14.0+
        tree = await self.command(transport, "ResolveRecipients", eas_mail.resolve_recipients(to, availability),
                                  deadline)
        if tree is not FAILED_CMD and self._parse("ResolveRecipients", eas_mail.parse_resolve_recipients,
                                                  tree) is not None:
            self.stats.mail("resolve_recipients")

    async def _estimate(self, transport, deadline):
        box = self.box
        prefs = self.prefs
        entries = []
        for fid, cls in box.pushed:
            coll = box.colls.get(fid)
            if coll is not None and coll.key != "0":
                filter_type = None
                if prefs is not None:
                    filter_type = prefs.email_filter if cls == "Email" else prefs.calendar_filter if cls == "Calendar" \
                        else None
                entries.append((coll.key, fid, filter_type, cls))
        if not entries:
            return
        body = eas_mail.get_item_estimate(entries, self.version.number)
        tree = await self.command(transport, "GetItemEstimate", body, deadline)
        if tree is not FAILED_CMD and self._parse("GetItemEstimate", eas_mail.parse_get_item_estimate,
                                                  tree) is not None:
            self.stats.mail("item_estimate")

    async def _oof(self, transport, deadline):
        """Settings Oof: Get, then Set (on, or off again) (MS-ASCMD 2.2.1.18)."""
        tree = await self.command(transport, "Settings", eas_mail.settings_oof_get(), deadline)
        if tree is FAILED_CMD or self._parse("Settings", eas_mail.parse_settings, tree) is None:
            return
        box = self.box
        box.oof = not box.oof
        tree = await self.command(transport, "Settings",
                                  eas_mail.settings_oof_set(box.oof, "Out of the office" if box.oof else ""),
                                  deadline)
        if tree is not FAILED_CMD and self._parse("Settings", eas_mail.parse_settings, tree) is not None:
            self.stats.mail("oof")

    async def _user_information(self, transport, deadline):
        """Settings UserInformation (MS-ASCMD 2.2.3.197): the device takes its own address from the answer
        (Get/EmailAddresses/SMTPAddress, 14.1: Accounts/Account/EmailAddresses/PrimarySmtpAddress)."""
        tree = await self.command(transport, "Settings", eas_mail.settings_user_information(), deadline)
        if tree is FAILED_CMD or tree is None or self._parse("Settings", eas_mail.parse_settings, tree) is None:
            return
        address = _first_address(tree)
        if address:
            self.box.address = address

    def _add_item(self, kind):
        """A calendar item, contact or task the user adds: a client Add queued for its folder's next Sync."""
        folder_type = {"calendar_add": 8, "contact_add": 9, "task_add": 7}[kind]
        coll = self._collection(folder_type)
        if coll is None:
            return
        box = self.box
        rng = self.rng
        box.adds += 1
        client_id = "%d.%d" % (self.index, box.adds)
        if folder_type == 8:
            start = (int(time.time()) // 1800 + rng.randint(1, 96)) * 1800
            data = eas_mail.calendar_item("Meeting %d" % box.adds, start, start + 1800 * rng.randint(1, 4),
                                          location="Room %d" % rng.randint(1, 40), reminder=15)
        elif folder_type == 9:
            data = eas_mail.contact_item("Alex%d" % rng.randrange(1000), "Smith%d" % rng.randrange(1000),
                                         "contact%d@%s" % (rng.randrange(100000), self.load.mail.external_domain))
        else:
            data = eas_mail.task_item("Task %d" % box.adds, time.time() + 86400 * rng.randint(1, 14))
        if coll.queue is None:
            coll.queue = []
        if len(coll.queue) < _MAX_QUEUED:
            coll.queue.append(eas_mail.Add(client_id, data))
        coll.due = True


_READ = eas_mail.email_read(True)
_ADDRESS_TAGS = frozenset(("Settings:PrimarySmtpAddress", "Settings:SMTPAddress"))


def _first_address(tree, depth=0):
    """The first PrimarySmtpAddress or SMTPAddress text in a Settings answer (lowercased), or None."""
    if depth > 8 or type(tree) is not tuple or len(tree) != 2:
        return None
    tag, content = tree
    if tag in _ADDRESS_TAGS and type(content) is str and "@" in content:
        return content.strip().lower()
    if type(content) is list:
        for child in content:
            found = _first_address(child, depth + 1)
            if found:
                return found
    return None


class MailLife(MailUser, PolicyLife):
    """The mail part of :class:`loadgen.device.life.Device` (its state: these slots; ``box`` the
    [mail] state, None without [mail]; ``wake`` the loop time a parked Ping is to be stopped at)."""

    __slots__ = ("folder_key", "folders", "inbox", "sync_key", "pending_sync", "items", "calendar", "calendar_key",
                 "calendar_due", "fetches", "attachments_fetched", "heartbeat", "ping_adjusted", "resets", "box",
                 "wake", "task_plan")

    def forget_sync_state(self):
        """The device lost its sync state (a restore, an OS update): the hierarchy and every folder start
        again from SyncKey 0 (FolderSync, then Sync of each folder: MS-ASCMD 2.2.1.5, 2.2.1.21)."""
        self.folder_key = "0"
        self.folders = 0
        self.inbox = None
        self.sync_key = "0"
        self.pending_sync = False
        self.calendar = None
        self.calendar_key = "0"
        self.calendar_due = False
        self.fetches = []
        self.resets = 0
        box = self.box
        if box is not None:
            box.hierarchy = box.pushed = ()
            box.colls = {}
            box.flush_at = 0.0
            box.moves = box.meetings = None

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
            fresh = self.folder_key == "0"
            if fresh:
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
            if self.box is not None:
                self._mail_folders(fs, fresh)
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
        window = self._window_size()
        key = (prefs.body_type, prefs.truncation, window, filter_type)
        template = _SYNC_TEMPLATES.get(key)
        if template is None:
            template = _SYNC_TEMPLATES[key] = commands.sync_template(prefs.body_type, prefs.truncation,
                                                                     window, filter_type)
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
        body = _ping_body(heartbeat, self.inbox) if self.box is None else self._ping_request()
        bearer = self.tokens is not None and resp.status == 401 and \
            resp.headers.get("WWW-Authenticate", "")[:6].lower() == "bearer"  # RFC 6750 3: a fresh token, once
        if resp.status == 401 and (bearer or resp.headers.get("WWW-Authenticate", "")[:5].lower() == "basic"):
            self.stats.record("Ping", 401, "challenge", resp.elapsed, len(body), len(resp.body))  # answer once
            key = self.prov.policy_key if self.profile.caps.provisionable else None
            if not bearer or await self._take_token(fresh=True):
                resp = await transport.post(self.endpoint, "Ping", body, key, heartbeat + self.load.timeout)
        answer = (resp, self._received("Ping", body, resp))
        if self.box is not None:
            await self._mail_ping(transport, deadline, None, answer)
        else:
            await self._ping(transport, deadline, answer=answer)

    async def _ping(self, transport, deadline, park=None, answer=None):
        if self._client is not None and answer is None and self._instead_of_ping():  # loadgen/device/clients.py
            return await self._client_wait(transport, deadline)
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
            self._ping_expired()
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
