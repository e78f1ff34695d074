"""Server-side state and rules of the embedded EAS target, independent of HTTP.

The per-request policy decision follows Exchange's own ``Command.IsPolicyCompliant``
(decompiled Exchange source, summarised in ../shared/reference/eas-protocol-facts.md (a)):

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
(PolicyDataSalt, seed 003): a timestamp whose signature does not verify counts
as "never provisioned".
"""

import base64
import hashlib
import hmac
import os
import random
import time
from dataclasses import dataclass, field

from loadgen.eas.policy import SEED_POLICY

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


def _new_key(rng):
    # MS-ASPROV 2.2.2.42: a string <= 64 chars, SHOULD be the string form of a uint32;
    # never 0 (0 means "not provisioned").
    return str(rng.randint(1, 0xFFFFFFFF))


class TargetState:
    """Mailboxes, policy, device partnerships and the policy decision tree."""

    def __init__(self, users=1000, user_pattern="user{n}", password_pattern="Pass{n}!", *,
                 policy=None, no_policy=False, allow_non_provisionable=False,
                 refresh_interval_min=0, seed=None, clock=time.time):
        self.rng = random.Random(seed)
        self.clock = clock
        self.passwords = {user_pattern.format(n=n): password_pattern.format(n=n) for n in range(users)}
        self.policy = dict(policy) if policy is not None else dict(SEED_POLICY)
        self.no_policy = no_policy
        self.allow_non_provisionable = allow_non_provisionable
        self.refresh_interval_min = refresh_interval_min
        self.policy_key = _new_key(self.rng)
        self.policy_version = 1
        self._salt = os.urandom(16)  # PolicyDataSalt
        self.devices = {}
        self._auth_cache = {}

    # -- authentication

    def authenticate(self, header):
        """The user name for an ``Authorization: Basic ...`` header, or None."""
        if header is None:
            return None
        user = self._auth_cache.get(header)
        if user is not None:
            return user
        scheme, _, value = header.partition(" ")
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

    # -- devices

    def device(self, user, device_id, device_type):
        key = (user, device_id)
        record = self.devices.get(key)
        if record is None:
            record = self.devices[key] = DeviceRecord(user, device_id, device_type)
        return record

    # -- policy

    def change_policy(self, **settings):
        """Admin: change settings; the policy key changes with the policy."""
        self.policy.update({k: (None if v is None else str(v)) for k, v in settings.items()})
        self.policy_key = _new_key(self.rng)
        self.policy_version += 1

    def _sign(self, record, when):
        msg = ("%s|%s|%r" % (record.user, record.device_id, when)).encode()
        return hmac.new(self._salt, msg, hashlib.sha256).hexdigest()

    def issue_temporary_key(self, record):
        record.temporary_key = _new_key(self.rng)
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
        if self.no_policy:
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
        record.wipe = WIPE_PENDING
        record.wipe_account_only = account_only

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
