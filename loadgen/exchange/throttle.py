"""Exchange-style throttling: per-user concurrency and a per-device command budget.

* ``EasMaxConcurrency`` (Exchange 2013+ on-premises default **10**, Exchange Online
  4; docs/protocol-notes.md, Throttling and device reaction; Exchange's ThrottlingPolicyDefaults): "how many concurrent
  connections an Exchange ActiveSync user can have against an Exchange server at
  one time. A connection is held from the moment a request is received until a
  response is sent in its entirety" (New-ThrottlingPolicy documentation).  So a
  held **Ping counts** for its whole heartbeat: that is the choice here too.
  Over the limit: HTTP 503, ``X-MS-ASThrottle: OutOfBudgets`` (the
  DeviceAccessStateReason Exchange sends for budget exhaustion; MS-ASHTTP 2.2.2.1.2.13, docs/protocol-notes.md,
  Throttling and device reaction) and
  ``Retry-After``.
* A per-device command budget as a token bucket (``burst`` commands, refilled at
  ``rate`` commands/s).  It stands in for Exchange's EasMaxBurst / EasRechargeRate /
  EasCutoffBalance (which budget server time, not commands) and the
  CommandFrequency auto-block.  Empty bucket: HTTP 503, ``X-MS-ASThrottle:
  CommandFrequency``, ``Retry-After`` = seconds until one token is back.  While the
  bucket is below ``low_water`` of its capacity every response carries
  ``X-MS-BackOffDuration`` (Exchange adds it to every response as a back-off
  suggestion; docs/protocol-notes.md, Throttling and device reaction); its value here is milliseconds until the
  bucket is back
  to ``low_water`` -- Exchange's exact value format is unverified.
  Defaults (burst 600, 20 commands/s) are far above what a simulated device does,
  so normal scenarios are never throttled.
"""

import math

OUT_OF_BUDGETS = "OutOfBudgets"
COMMAND_FREQUENCY = "CommandFrequency"


# setting -> (type, lowest, highest): a budget of commands, not of server time (see above)
_RANGES = {"max_concurrency": (int, 0, 1_000_000), "rate": (float, 0.0, 1e9), "burst": (float, 1.0, 1e12),
           "low_water": (float, 0.0, 1.0), "retry_after": (int, 0, 86_400)}


def _setting(name, value):
    kind, low, high = _RANGES[name]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("throttle %s must be a number, not %r" % (name, value))
    try:
        number = float(value)
    except ValueError:
        raise ValueError("throttle %s must be a number, not %r" % (name, value)) from None
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError("%s must be a finite number from %s to %s, not %r" % (name, low, high, value))
    if kind is int and number != int(number):
        raise ValueError("%s must be a whole number, not %r" % (name, value))
    return kind(number)


class Throttle:
    __slots__ = ("max_concurrency", "rate", "burst", "low_water", "retry_after", "active", "buckets", "clock")

    def __init__(self, max_concurrency=10, rate=20.0, burst=600.0, low_water=0.2, retry_after=30, clock=None):
        import time

        self.max_concurrency = 0  # None or 0: unlimited
        self.rate = 0.0  # 0: no command budget
        self.burst = 600.0
        self.low_water = 0.2
        self.retry_after = 30
        self.configure(max_concurrency=max_concurrency or 0, rate=rate or 0.0, burst=burst, low_water=low_water,
                       retry_after=retry_after)
        self.active = {}  # user -> concurrent requests
        self.buckets = {}  # (user, device id) -> [tokens, last time]
        self.clock = clock or time.monotonic

    def configure(self, **kw):
        """Change the given settings (None: unchanged); a value out of its range is a ValueError
        naming it, and then nothing is changed."""
        unknown = set(kw) - set(_RANGES)
        if unknown:
            raise ValueError("unknown throttle setting %s (one of %s)" % (sorted(unknown)[0], ", ".join(_RANGES)))
        values = {name: _setting(name, kw[name]) for name in _RANGES if kw.get(name) is not None}
        for name, value in values.items():
            setattr(self, name, value)
        return self.to_dict()

    def to_dict(self):
        return {"max_concurrency": self.max_concurrency, "rate": self.rate, "burst": self.burst,
                "low_water": self.low_water, "retry_after": self.retry_after}

    def acquire(self, user):
        """Count a request in; False when the user is over EasMaxConcurrency (nothing counted)."""
        n = self.active.get(user, 0)
        if self.max_concurrency and n >= self.max_concurrency:
            return False
        self.active[user] = n + 1
        return True

    def release(self, user):
        n = self.active.get(user, 1) - 1
        if n > 0:
            self.active[user] = n
        else:
            self.active.pop(user, None)

    def spend(self, key):
        """Take one token: (allowed, header value for X-MS-BackOffDuration or None, retry seconds)."""
        if not self.rate:
            return True, None, 0
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = [self.burst, now]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False, None, max(1, math.ceil((1.0 - tokens) / self.rate))
        tokens -= 1.0
        bucket[0] = tokens
        low = self.burst * self.low_water
        if tokens < low:
            return True, str(int((low - tokens) / self.rate * 1000)), 0
        return True, None, 0
