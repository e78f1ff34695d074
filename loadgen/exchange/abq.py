"""Allow/Block/Quarantine (ABQ) as Exchange 2010 SP1 and later evaluate it.

Sequence (Exchange 2010 SP1 help, "Understanding Exchange ActiveSync device
access" -- "Determining a Mobile Device's Access State"; ABQ notes in
docs/protocol-notes.md, ABQ and DeviceInformation): after authentication and the policy
check,

1. a personal exemption *blocking* this device id     -> Block   (reason Individual)
2. a personal exemption *allowing* this device id     -> Allow   (reason Individual)
3. a device access rule with level Block matches      -> Block   (reason DeviceRule)
4. a device access rule with level Quarantine matches -> Quarantine (DeviceRule)
5. a device access rule with level Allow matches      -> Allow   (DeviceRule)
6. the organisation's DefaultAccessLevel              -> Allow / Block / Quarantine (Global)

Rules key on the characteristics Exchange offers (``New-ActiveSyncDeviceAccessRule
-Characteristic DeviceType|DeviceModel|DeviceOS|UserAgent``; Microsoft365DSC
EXOActiveSyncDeviceAccessRule): DeviceType comes from the query string,
DeviceModel / DeviceOS from the DeviceInformation the device sent (Provision for
14.1+, Settings for 12.1 / 14.0; docs/protocol-notes.md, ABQ and DeviceInformation), UserAgent from the request's
User-Agent header (Exchange's DeviceUserAgent), else from DeviceInformation.
The query string matches exactly, as in Exchange (case-insensitively here).

"Release from quarantine" is what Exchange does when an admin allows a
quarantined device: it adds a personal exemption (ActiveSyncAllowedDeviceIDs).
"""

from dataclasses import dataclass

ALLOW = "Allow"
BLOCK = "Block"
QUARANTINE = "Quarantine"
LEVELS = {"allow": ALLOW, "block": BLOCK, "quarantine": QUARANTINE}

# Exchange's DeviceAccessStateReason names (docs/protocol-notes.md, Throttling and device reaction): sent in
# X-MS-ASThrottle.
REASON_GLOBAL = "Global"
REASON_INDIVIDUAL = "Individual"
REASON_RULE = "DeviceRule"

CHARACTERISTICS = {
    "devicetype": "DeviceType", "devicemodel": "DeviceModel", "model": "DeviceModel",
    "deviceos": "DeviceOS", "os": "DeviceOS", "useragent": "UserAgent",
}


def level(text):
    try:
        return LEVELS[str(text).lower()]
    except KeyError:
        raise ValueError("access level must be Allow, Block or Quarantine, not %r" % (text,)) from None


@dataclass(frozen=True)
class AccessRule:
    characteristic: str  # DeviceType / DeviceModel / DeviceOS / UserAgent
    query: str
    access: str  # Allow / Block / Quarantine

    @classmethod
    def make(cls, characteristic, query, access):
        try:
            name = CHARACTERISTICS[str(characteristic).lower()]
        except KeyError:
            raise ValueError("rule characteristic must be one of DeviceType, DeviceModel, DeviceOS, UserAgent, "
                             "not %r" % (characteristic,)) from None
        return cls(name, str(query), level(access))

    def to_dict(self):
        return {"characteristic": self.characteristic, "query": self.query, "access": self.access}


def characteristic_value(record, name):
    if name == "DeviceType":
        return record.device_type
    info = record.device_info
    if name == "DeviceModel":
        return info.get("Model")
    if name == "DeviceOS":
        return info.get("OS")
    return record.user_agent or info.get("UserAgent")


class AccessList:
    """The organisation's ABQ configuration; ``evaluate`` is the sequence above."""

    def __init__(self, default=ALLOW, rules=(), allowed_ids=(), blocked_ids=()):
        self.default = level(default)
        self.rules = [r if isinstance(r, AccessRule) else AccessRule.make(**r) for r in rules]
        self.allowed_ids = set(allowed_ids)
        self.blocked_ids = set(blocked_ids)
        self.version = 1  # bumped on every change: cached per-device decisions are then stale

    @property
    def trivial(self):
        """Everything allowed: no evaluation needed on the hot path."""
        return self.default == ALLOW and not self.rules and not self.blocked_ids

    def changed(self):
        self.version += 1

    def evaluate(self, record):
        """(access level, DeviceAccessStateReason) for a device record."""
        device_id = record.device_id
        if device_id in self.blocked_ids:
            return BLOCK, REASON_INDIVIDUAL
        if device_id in self.allowed_ids:
            return ALLOW, REASON_INDIVIDUAL
        if self.rules:
            matched = set()
            for rule in self.rules:
                value = characteristic_value(record, rule.characteristic)
                if value is not None and value.lower() == rule.query.lower():
                    matched.add(rule.access)
            for access in (BLOCK, QUARANTINE, ALLOW):
                if access in matched:
                    return access, REASON_RULE
        return self.default, REASON_GLOBAL

    def to_dict(self):
        return {"default": self.default, "rules": [r.to_dict() for r in self.rules],
                "allowed_ids": sorted(self.allowed_ids), "blocked_ids": sorted(self.blocked_ids)}
