"""Server-side state and rules of the embedded EAS target, independent of HTTP.

The per-request policy decision follows Exchange's own ``Command.IsPolicyCompliant``
(decompiled Exchange source, summarised in docs/protocol-notes.md, 449 vs in-band statuses 139-145 and how
Exchange chooses):

1. remote wipe pending                         -> 140 (449 if a key was sent, else 403)
2. no policy for the mailbox ("no policy" mode) -> allowed
3. no policy key sent                          -> allowed if non-provisionable devices are
                                                  allowed, else 141 (403)
4. acknowledged with a status the policy does not accept
                                                -> 139 (ack 2/3) / 145 (ack 4) (403)
5. never provisioned (or tampered timestamp)   -> 142 (449)
6. PolicyDataRefreshInterval (minutes) exceeded -> 143 (449)
7. key differs from the current one            -> 144 (449)

The last successful provisioning time is signed with a per-server salt
(PolicyDataSalt; docs/protocol-notes.md, Policy storage and refresh): a timestamp whose signature does not verify counts
as "never provisioned".

Besides the policy: mailboxes (generated pattern or a CSV file of user,password),
the remote wipe lifecycle none -> pending -> sent -> acknowledged -> wiped
(grommunio ``SYNC_PROVISION_RWSTATUS_*``; docs/protocol-notes.md, Remote wipe; a wiped
device id stays refused until an admin clears it), Allow/Block/Quarantine
(abq.py), the device partnership limit per mailbox (EasMaxDevices, default 100,
docs/protocol-notes.md, Partnerships per mailbox and 177), the mail store of every user (store.py), Ping bounds
(docs/protocol-notes.md, Ping) and
throttling (throttle.py).  Every admin action is a plain method here, so the
engine can schedule them in-process; the admin HTTP API (admin.py) calls them.
"""

import base64
import csv
import hashlib
import hmac
import math
import os
import random
import time
from dataclasses import dataclass, field

from loadgen.eas.policy import POLICY_NAMES as _POLICY_NAMES, SEED_POLICY
from loadgen.exchange import abq, bearer
from loadgen.exchange.store import Store
from loadgen.exchange.throttle import Throttle

WIPE_NONE = "none"
WIPE_PENDING = "pending"
WIPE_SENT = "sent"
WIPE_ACKNOWLEDGED = "acknowledged"
WIPE_WIPED = "wiped"


@dataclass
class DeviceRecord:
    user: str
    device_id: str
    device_type: str
    version: str = ""
    temporary_key: str | None = None
    acked_key: str | None = None  # final key given on the last acknowledgement
    ack_status: int | None = None
    last_policy_time: float | None = None
    last_policy_sig: str | None = None
    wipe: str = WIPE_NONE
    wipe_account_only: bool = False
    wipe_ack_status: int | None = None
    device_info: dict = field(default_factory=dict)
    folder_sync_key: int = 0
    provisions: int = 0
    user_agent: str | None = None  # User-Agent header of the last request
    wipe_requested_at: float | None = None
    wipe_acked_at: float | None = None
    access: str = abq.ALLOW  # last ABQ decision
    access_reason: str = abq.REASON_GLOBAL
    access_version: int = 0  # AccessList.version the decision was made with (0: stale)
    sync: dict = field(default_factory=dict)  # collection id -> [key, pos, previous key, previous pos]
    ping_interval: int | None = None  # cached HeartbeatInterval (MS-ASCMD 2.2.3.88.1)
    ping_folders: tuple = ()  # cached Ping folder ids
    first_seen: float = 0.0
    last_seen: float = 0.0
    requests: int = 0
    observed: dict | None = None  # what the device asked for in Sync / ItemOperations (sync.observe)
    resync: bool = False  # its sync state was dropped (resync event): Ping 7 until a FolderSync with key 0
    held_ping: object = None  # the future of the Ping it holds, to answer it at once after a resync

    def provisioning_state(self, policy_key):
        if self.acked_key is None:
            return "unprovisioned"
        return "provisioned" if self.acked_key == policy_key else "stale_key"

    def to_dict(self, policy_key):
        return {
            "user": self.user, "device_id": self.device_id, "device_type": self.device_type,
            "version": self.version, "provisioning": self.provisioning_state(policy_key),
            "ack_status": self.ack_status, "wipe": self.wipe, "wipe_account_only": self.wipe_account_only,
            "wipe_ack_status": self.wipe_ack_status, "access": self.access, "access_reason": self.access_reason,
            "device_info": dict(self.device_info), "user_agent": self.user_agent,
            "first_seen": self.first_seen, "last_seen": self.last_seen, "requests": self.requests,
        }


_OPAQUE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


def _new_opaque_key(rng):
    # MS-ASPROV 2.2.2.42: up to 64 characters allowed in an HTTP header; not every server uses integers
    return "".join(rng.choice(_OPAQUE_ALPHABET) for _ in range(40))


def _new_key(rng):
    # MS-ASPROV 2.2.2.42: a string <= 64 chars, SHOULD be the string form of a uint32;
    # never 0 (0 means "not provisioned").
    return str(rng.randint(1, 0xFFFFFFFF))


def scenario_options(scenario):
    """TargetState keyword arguments for a scenario's embedded target (one process, or each
    process of a cluster): users, policy options, Ping bounds, the mailboxes' history and real
    servers' habits."""
    t, auth = scenario.target, scenario.auth
    return dict(
        users=auth.users, user_pattern=auth.user, password_pattern=auth.password,
        no_policy=t.no_policy, allow_non_provisionable=t.allow_non_provisionable,
        refresh_interval_min=t.policy_refresh_minutes, seed=scenario.seed, ping_min=t.ping_min, ping_max=t.ping_max,
        # the mailboxes' generated history (store.py)
        history_days=t.history_days, daily_messages=t.daily_messages, inbox_items=t.inbox_items,
        # target modes: path, Autodiscover, policy-key handling, auth quirks
        eas_path=t.path, ignore_policy_key=t.ignore_policy_key,
        options_without_provision=t.options_without_provision, auth_realm=t.auth_realm,
        challenge_first=t.challenge_first, autodiscover_redirect=t.autodiscover_redirect)


class TargetState:
    """Mailboxes, policy, device partnerships and the policy decision tree."""

    def __init__(self, users=1000, user_pattern="user{n}", password_pattern="Pass{n}!", *,
                 policy=None, no_policy=False, allow_non_provisionable=False,
                 refresh_interval_min=0, seed=None, clock=time.time, users_csv=None, domain="example.com",
                 max_devices=100, inbox_items=None, history_days=3, daily_messages=20, ping_min=60, ping_max=3540, ping_max_folders=300,
                 abq_default=abq.ALLOW, abq_rules=(), max_concurrency=10, command_rate=20.0,
                 command_burst=600.0, opaque_keys=False, eas_path="/Microsoft-Server-ActiveSync",
                 ignore_policy_key=False, options_without_provision=False, auth_realm="easload",
                 challenge_first=False, autodiscover_redirect=None, token_secret=None,
                 token_lifetime=bearer.DEFAULT_LIFETIME):
        users = _number("users", users, 1, MAX_USERS, integer=True) if users_csv is None else users
        ping_min = _number("ping_min", ping_min, 1, MAX_HEARTBEAT)
        ping_max = _number("ping_max", ping_max, 1, MAX_HEARTBEAT)
        if ping_min > ping_max:
            raise ValueError("ping_min (%s) must not be above ping_max (%s)" % (ping_min, ping_max))
        ping_max_folders = _number("ping_max_folders", ping_max_folders, 1, None, integer=True)
        refresh_interval_min = _number("refresh_interval_min", refresh_interval_min, 0, None)
        if inbox_items is not None:
            inbox_items = _number("inbox_items", inbox_items, 0, MAX_INBOX, integer=True)
        history_days = _number("history_days", history_days, 0, MAX_HISTORY_DAYS, integer=True)
        daily_messages = _number("daily_messages", daily_messages, 0, MAX_DAILY_MESSAGES, integer=True)
        if max_devices is not None:
            max_devices = _number("max_devices", max_devices, 1, None, integer=True)
        _check_pattern("user_pattern", user_pattern)
        _check_pattern("password_pattern", password_pattern)
        policy = validate_policy(policy) if policy is not None else None
        self.rng = random.Random(seed)
        # real servers' habits (tests/test_tolerance.py): EAS mount path, a server that never checks
        # X-MS-PolicyKey, an OPTIONS command list without Provision, the 401 realm, a challenge before
        # credentials are accepted, Autodiscover redirects by e-mail domain (exchange/autodiscover.py)
        self.eas_path = eas_path
        self.ignore_policy_key = ignore_policy_key
        self.options_without_provision = options_without_provision
        self.auth_realm = auth_realm
        self.challenge_first = challenge_first
        self.autodiscover_redirect = dict(autodiscover_redirect or {})
        self.opaque_keys = opaque_keys
        self.seed = seed
        self.clock = clock
        if users_csv is not None:
            self.passwords = read_users_csv(users_csv)
        else:
            self.passwords = {user_pattern.format(n=n): password_pattern.format(n=n) for n in range(users)}
        self.domain = domain
        # EasMaxDevices: 100 on Exchange 2013+ (docs/protocol-notes.md, Partnerships per mailbox and 177); None:
        # unlimited
        self.max_devices = max_devices
        # the mail store (store.py): history_days at daily_messages received per day; inbox_items, when
        # given, is the Inbox's generated count instead
        self.inbox_items = inbox_items
        self.history_days = history_days
        self.daily_messages = daily_messages
        self._store = None
        # Ping HeartbeatInterval bounds: Exchange 60..3540 s (docs/protocol-notes.md, Ping); lower them in tests
        self.ping_min = ping_min
        self.ping_max = ping_max
        self.ping_max_folders = ping_max_folders
        self.access_list = abq.AccessList(abq_default, abq_rules)
        try:
            self.throttle = Throttle(max_concurrency, command_rate, command_burst)
        except ValueError as exc:  # the throttle's names are those of its admin API: say ours
            raise ValueError(str(exc).replace("rate ", "command_rate ", 1).replace("burst ", "command_burst ", 1)) \
                from None
        self.user_devices = {}  # user -> number of device partnerships
        self.policy = dict(policy) if policy is not None else dict(SEED_POLICY)
        self.no_policy = no_policy
        self.allow_non_provisionable = allow_non_provisionable
        self.refresh_interval_min = refresh_interval_min
        self.policy_key = self._key()
        self.policy_version = 1
        self._salt = os.urandom(16)  # PolicyDataSalt
        self.devices = {}
        self._auth_cache = {}
        # OAuth-style Bearer tokens (bearer.py): validated with this secret, no table; random per target
        # (a cluster gives its processes the parent's), never logged
        self.token_secret = bytes(token_secret) if token_secret is not None else os.urandom(32)
        self.token_lifetime = _number("token_lifetime", token_lifetime, 1, None)
        self._bearer_cache = {}  # Authorization header -> (user, expiry)
        self._meetings_sent = {}  # user -> meeting requests delivered (deliver_meeting: the calendar's in turn)

    # -- authentication

    def _key(self):
        return _new_opaque_key(self.rng) if self.opaque_keys else _new_key(self.rng)

    def authenticate(self, header):
        """The user name for an ``Authorization: Basic ...`` header, or for ``Authorization: Bearer
        <token>`` (RFC 6750 2.1) with a token of this target (bearer.py) not yet expired; or None."""
        if header is None:
            return None
        user = self._auth_cache.get(header)
        if user is not None:
            return user
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return self._bearer(header, value.strip())
        if scheme.lower() != "basic":
            return None
        try:
            name, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        name = name.rpartition("\\")[2]  # DOMAIN\user
        expected = self.passwords.get(name)
        if expected is None or not hmac.compare_digest(expected, password):
            return None
        if len(self._auth_cache) < 1_000_000:
            self._auth_cache[header] = name
        return name

    def _bearer(self, header, token):
        found = self._bearer_cache.get(header)
        if found is None:
            found = bearer.check(self.token_secret, token)
            if found is None or found[0] not in self.passwords:
                return None
            if len(self._bearer_cache) >= 100_000:  # tokens are renewed: forget the old ones
                self._bearer_cache.clear()
            self._bearer_cache[header] = found
        user, expires = found
        return user if expires > self.clock() else None

    def mint_token(self, user, lifetime=None):
        """Admin and tests: a Bearer token of this target for ``user`` (bearer.py)."""
        return bearer.mint(self.token_secret, user, self.clock() + (self.token_lifetime if lifetime is None
                                                                    else lifetime))

    def token_source(self):
        """The devices' token source for this target's users (bearer.MintedTokens), minting with its secret."""
        return bearer.MintedTokens(self.token_secret, self.token_lifetime)

    @classmethod
    def from_csv(cls, path, **kw):
        """A state whose mailboxes are the rows ``user,password`` of a CSV file."""
        return cls(users_csv=path, **kw)

    # -- devices

    def device(self, user, device_id, device_type):
        """The partnership (user, device id); a new one is created unless the mailbox
        already has ``max_devices`` partnerships (then None: status 177)."""
        key = (user, device_id)
        record = self.devices.get(key)
        if record is None:
            n = self.user_devices.get(user, 0)
            if self.max_devices is not None and n >= self.max_devices:
                return None
            record = self.devices[key] = DeviceRecord(user, device_id, device_type)
            record.first_seen = self.clock()
            self.user_devices[user] = n + 1
        return record

    def find_devices(self, device_id, user=None):
        if user is not None:
            record = self.devices.get((user, device_id))
            return [record] if record is not None else []
        return [r for r in self.devices.values() if r.device_id == device_id]

    def remove_device(self, record):
        """Admin (Remove-MobileDevice): forget the partnership, freeing a slot."""
        if self.devices.pop((record.user, record.device_id), None) is not None:
            n = self.user_devices.get(record.user, 1) - 1
            if n > 0:
                self.user_devices[record.user] = n
            else:
                self.user_devices.pop(record.user, None)

    def list_devices(self):
        key = self.policy_key
        for record in self.devices.values():
            self.access(record)
        return [r.to_dict(key) for r in self.devices.values()]

    def smtp_address(self, user):
        return user if "@" in user else "%s@%s" % (user, self.domain)

    # -- policy

    def change_policy(self, **settings):
        """Admin: change settings; the policy key changes with the policy.  A setting that
        does not exist, or a value that cannot be sent, is a ValueError naming it; nothing
        of a refused change is applied."""
        self.policy.update(validate_policy(settings))
        self.policy_key = self._key()
        self.policy_version += 1

    def _sign(self, record, when):
        msg = ("%s|%s|%r" % (record.user, record.device_id, when)).encode()
        return hmac.new(self._salt, msg, hashlib.sha256).hexdigest()

    def issue_temporary_key(self, record):
        record.temporary_key = self._key()
        return record.temporary_key

    def acknowledge(self, record, key, ack_status):
        """Second Provision step.  Returns (provision status, policy status, final key)."""
        if record.temporary_key is None or key != record.temporary_key:
            return 1, 5, None  # Policy Status 5: acknowledging the wrong policy key
        record.ack_status = ack_status
        refused = self.refusal(record)
        if refused:
            return refused, None, None
        record.temporary_key = None
        record.acked_key = self.policy_key
        now = self.clock()
        record.last_policy_time = now
        record.last_policy_sig = self._sign(record, now)
        record.provisions += 1
        return 1, 1, self.policy_key

    def refusal(self, record):
        """139/145 when the device's acknowledgement does not satisfy the policy."""
        if self.allow_non_provisionable or record.ack_status in (None, 1):
            return 0
        return 145 if record.ack_status == 4 else 139

    def check(self, record, key):
        """Exchange's IsPolicyCompliant: (http status, eas status) or None when allowed."""
        if record.wipe in (WIPE_PENDING, WIPE_SENT):
            return (449, 140) if key is not None else (403, 140)
        if record.wipe in (WIPE_ACKNOWLEDGED, WIPE_WIPED):
            return (403, 140)
        if self.no_policy or self.ignore_policy_key:
            return None
        if key is None:
            return None if self.allow_non_provisionable else (403, 141)
        refused = self.refusal(record)
        if refused:
            return (403, refused)
        last = record.last_policy_time
        if last is None or not hmac.compare_digest(record.last_policy_sig or "", self._sign(record, last)):
            return (449, 142)
        if self.refresh_interval_min and self.clock() - last > self.refresh_interval_min * 60:
            return (449, 143)
        if key != self.policy_key:
            return (449, 144)
        return None

    # -- remote wipe

    def request_wipe(self, record, account_only=False):
        """Admin: wipe the device at its next request (none -> pending).

        AccountOnlyRemoteWipe exists only in 16.1 (MS-ASPROV 2.2.2.1); other
        versions get a full RemoteWipe (decided again when the wipe is sent, as
        the version may change)."""
        record.wipe = WIPE_PENDING
        record.wipe_account_only = bool(account_only) and record.version in ("", "16.1")
        record.wipe_requested_at = self.clock()
        record.wipe_ack_status = None

    def acknowledge_wipe(self, record, status):
        """The device's RemoteWipe/Status (MS-ASPROV 2.2.2.54.3: 1 = will wipe, 2 = could not): sent -> acknowledged."""
        if record.wipe == WIPE_SENT:
            record.wipe = WIPE_ACKNOWLEDGED
            record.wipe_ack_status = status
            record.wipe_acked_at = self.clock()

    def contact(self, record):
        """Any request after a successful wipe acknowledgement is the wiped device coming
        back (it wiped itself; grommunio's RWSTATUS goes to WIPED, docs/protocol-notes.md, Remote wipe):
        acknowledged -> wiped.  The id then
        stays refused (403 / 140) until :meth:`clear_wipe`."""
        if record.wipe == WIPE_ACKNOWLEDGED and record.wipe_ack_status == 1:
            record.wipe = WIPE_WIPED

    def wipe_fraction(self, fraction, seed=None, account_only=False):
        """Admin: wipe a random ``fraction`` of the known devices; returns them."""
        records = sorted(self.devices.values(), key=lambda r: (r.user, r.device_id))
        n = round(len(records) * float(fraction))
        chosen = random.Random(seed).sample(records, n) if n else []
        for record in chosen:
            self.request_wipe(record, account_only)
        return chosen

    def resync(self, record):
        """Admin (an incident: a failover or restore that loses the devices' sync state): the
        hierarchy's and every folder's sync state of ``record`` dropped.  Its next FolderSync with a
        key gets Status 9, its next Sync Status 3 per collection (MS-ASCMD 2.2.3.177.4, 2.2.3.177.17),
        a Ping Status 7 (FolderSync required, MS-ASCMD 2.2.3.177.11) -- a held one at once."""
        record.folder_sync_key = 0
        record.sync.clear()
        record.resync = True
        held = record.held_ping
        if held is not None and not held.done():
            held.set_result(None)

    def resync_fraction(self, fraction, seed=None):
        """Admin: drop the sync state of a random ``fraction`` of the known devices (chosen as
        :meth:`wipe_fraction` chooses); returns them."""
        records = sorted(self.devices.values(), key=lambda r: (r.user, r.device_id))
        n = round(len(records) * float(fraction))
        chosen = random.Random(seed).sample(records, n) if n else []
        for record in chosen:
            self.resync(record)
        return chosen

    def clear_wipe(self, record):
        """Admin: clear a wipe; the device id may connect again and must provision afresh."""
        record.wipe = WIPE_NONE
        record.wipe_account_only = False
        record.wipe_ack_status = None
        record.temporary_key = record.acked_key = record.last_policy_sig = None
        record.last_policy_time = record.ack_status = None
        record.folder_sync_key = 0
        record.sync.clear()

    # -- Allow/Block/Quarantine (abq.py)

    def access(self, record):
        """(access level, reason) of a device, cached until the ABQ config or the device info changes."""
        access_list = self.access_list
        if record.access_version != access_list.version:
            record.access, record.access_reason = access_list.evaluate(record)
            record.access_version = access_list.version
        return record.access

    def set_device_info(self, record, info):
        record.device_info = info
        record.access_version = 0  # re-evaluate ABQ with the new information

    def set_abq(self, default=None, rules=None, allowed_ids=None, blocked_ids=None):
        """Admin: organisation default access level, device access rules, personal exemptions."""
        al = self.access_list
        if default is not None:
            al.default = abq.level(default)
        if rules is not None:
            al.rules = [r if isinstance(r, abq.AccessRule) else abq.AccessRule.make(**r) for r in rules]
        if allowed_ids is not None:
            al.allowed_ids = set(allowed_ids)
        if blocked_ids is not None:
            al.blocked_ids = set(blocked_ids)
        al.changed()
        return al.to_dict()

    def allow_device(self, device_id):
        """Admin: personal exemption allowing this device id (also releases it from quarantine)."""
        self.access_list.blocked_ids.discard(device_id)
        self.access_list.allowed_ids.add(device_id)
        self.access_list.changed()

    release = allow_device  # Exchange's "Allow" on a quarantined device is a personal exemption

    def block_device(self, device_id):
        """Admin: personal exemption blocking this device id."""
        self.access_list.allowed_ids.discard(device_id)
        self.access_list.blocked_ids.add(device_id)
        self.access_list.changed()

    # -- mail

    @property
    def store(self):
        """The mail store (store.py), built on first use: a cluster's process narrows ``passwords`` to its
        own users after construction (cluster.shard_state), and the store's internal users are those."""
        store = self._store
        if store is None:
            store = self._store = Store(self.seed, users=self.passwords, domain=self.domain,
                                        history_days=self.history_days, daily_messages=self.daily_messages,
                                        inbox_items=self.inbox_items, clock=self.clock)
        return store

    @property
    def mailboxes(self):
        return self.store.mailboxes

    def mailbox(self, user):
        return self.store.mailbox(user)

    def deliver_mail(self, user, count=1):
        """Admin: ``count`` new messages in ``user``'s Inbox; wakes that user's held Pings."""
        if user not in self.passwords:
            raise KeyError(user)
        self.store.deliver_generated(user, int(count))

    def deliver_meeting(self, user):
        """Admin: a meeting request in ``user``'s Inbox: one of the meetings of the user's generated
        calendar invited again -- the store holds a meeting request as an Inbox entry of its generated
        mail numbers 16k + 5 (store.py GenMail.meeting), which its MeetingResponse answers (meeting.py)
        --, a new item with a new ServerId that wakes the user's held Pings.  KeyError for a user the
        target does not know, LookupError for a mailbox without meetings (no history)."""
        from loadgen.exchange import store as st

        if user not in self.passwords:
            raise KeyError(user)
        store = self.store
        box = store.mailbox(user)
        meetings = (store.counts(box).get(st.INBOX, 0) + 10) // 16  # as the store's calendar_parts counts them
        if meetings <= 0:
            raise LookupError("no meetings in %s's mailbox" % user)
        sent = self._meetings_sent.get(user, 0)
        self._meetings_sent[user] = sent + 1
        box.add(st.INBOX, (st.INBOX, 16 * (sent % meetings) + 5, store.clock()))
        store.count("delivered")

    def deliver_mail_fraction(self, fraction, count=1, seed=None):
        """Admin: new mail for a random ``fraction`` of all users; returns how many users got mail."""
        users = sorted(self.passwords)
        n = round(len(users) * float(fraction))
        chosen = random.Random(seed).sample(users, n) if n else []
        for user in chosen:
            self.store.deliver_generated(user, int(count))
        return len(chosen)

    # -- reporting

    def state_counts(self):
        """Devices by (provisioning, access, wipe) state, for the admin API and metrics."""
        key = self.policy_key
        result = {}
        for record in self.devices.values():
            k = (record.provisioning_state(key), self.access(record), record.wipe)
            result[k] = result.get(k, 0) + 1
        return result

    def counts(self):
        """Devices by provisioning / wipe state (for admin and metrics)."""
        result = {}
        for record in self.devices.values():
            if record.wipe != WIPE_NONE:
                state = "wipe_" + record.wipe
            elif record.acked_key is None:
                state = "unprovisioned"
            elif record.acked_key == self.policy_key:
                state = "provisioned"
            else:
                state = "stale_key"
            result[state] = result.get(state, 0) + 1
        return result


# Bounds of the values a target is built with (beyond them a value is a mistake, not a test):
MAX_USERS = 10_000_000  # a dict of user -> password; 10^7 is ~2 GB already
MAX_HEARTBEAT = 86_400  # Ping HeartbeatInterval, seconds (MS-ASCMD 2.2.3.88.1: Exchange allows 60..3540)
MAX_INBOX = 1_000_000
MAX_HISTORY_DAYS = 3650
MAX_DAILY_MESSAGES = 100_000
MAX_POLICY_VALUE = 1024  # characters of one policy setting's value


def _number(name, value, low, high, integer=False):
    """``value`` as a number within [low, high] (high None: no upper bound), or a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            if isinstance(value, bool):
                raise TypeError
            value = float(value) if not integer else int(value)
        except (TypeError, ValueError):
            raise ValueError("%s must be a number, not %r" % (name, value)) from None
    if not math.isfinite(value):
        raise ValueError("%s must be a finite number, not %r" % (name, value))
    if integer and value != int(value):
        raise ValueError("%s must be a whole number, not %r" % (name, value))
    if value < low or (high is not None and value > high):
        raise ValueError("%s must be %s, not %r" % (
            name, "at least %s" % low if high is None else "between %s and %s" % (low, high), value))
    return int(value) if integer else value


def _check_pattern(name, pattern):
    """A user or password pattern: plain text with ``{n}`` (optionally with a format spec, e.g.
    ``{n:04d}``) and nothing else a format string could do (no index, attribute, other field)."""
    import string

    if not isinstance(pattern, str):
        raise ValueError("%s must be text, not %r" % (name, pattern))
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
        if any(f != "n" for f in fields):
            raise ValueError("only {n} may be used")
        pattern.format(n=1)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ValueError("%s %r: %s (write {n} for the user number)" % (name, pattern, exc)) from None


def validate_policy(settings):
    """``{setting: value}`` as the target keeps it (text or None), or a ValueError naming the first
    setting that does not exist or whose value cannot be sent.  The settings are the children of
    EASProvisionDoc (MS-ASPROV 2.2.2) the target knows (loadgen/eas/policy.py SEED_POLICY); a
    value is text, a number or a boolean (sent as text), or null for an empty element."""
    if not isinstance(settings, dict):
        raise ValueError("policy settings must be an object of setting: value")
    out = {}
    for name, value in settings.items():
        if name not in _POLICY_NAMES:
            raise ValueError("unknown policy setting %r (MS-ASPROV 2.2.2: one of the EASProvisionDoc settings, "
                             "e.g. DevicePasswordEnabled, AllowWiFi)" % (name,))
        if value is None:
            out[name] = None
            continue
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("policy setting %s: %r is not a value" % (name, value))
        if not isinstance(value, (str, int, float)):
            raise ValueError("policy setting %s must be text or a number, not %s" % (name, type(value).__name__))
        text = str(value)
        if len(text) > MAX_POLICY_VALUE or not text.isprintable():
            raise ValueError("policy setting %s: the value must be printable text of at most %d characters"
                             % (name, MAX_POLICY_VALUE))
        out[name] = text
    return out


def policy_flags(data):
    """The policy switches of an admin request (allow_non_provisionable, no_policy: booleans;
    refresh_interval_min: minutes, finite, not negative), checked; only those present."""
    flags = {}
    for flag in ("allow_non_provisionable", "no_policy"):
        if flag in data:
            if not isinstance(data[flag], (bool, int)) or data[flag] not in (0, 1):
                raise ValueError("%s must be true or false, not %r" % (flag, data[flag]))
            flags[flag] = bool(data[flag])
    if "refresh_interval_min" in data:
        flags["refresh_interval_min"] = _number("refresh_interval_min", data["refresh_interval_min"], 0, None)
    return flags


def read_users_csv(path):
    """``user,password`` rows (a header row naming ``user`` is skipped); blank lines ignored."""
    passwords = {}
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f)):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            if n == 0 and row[0].strip().lower() in ("user", "username", "login"):
                continue
            if len(row) < 2:
                raise ValueError("%s:%d: expected user,password" % (path, n + 1))
            passwords[row[0].strip()] = row[1]
    if not passwords:
        raise ValueError("%s: no users" % (path,))
    return passwords
