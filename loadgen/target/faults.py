"""Fault injection for the embedded target (not Exchange behaviour: test tooling).

One :class:`Faults` configuration, set through the admin API
(``POST /admin/faults``) or ``Target.set_faults(**cfg)``:

``latency``            added before the handler: ``{"dist": "fixed", "seconds": s}``,
                       ``{"dist": "uniform", "min": a, "max": b}`` or
                       ``{"dist": "exponential", "mean": m}``
``error_rates``        ``{"500": p, "503": p}``: answer that HTTP status instead
                       (503 with ``Retry-After``); any 4xx/5xx code is accepted
``reset_rate``         probability of resetting the TCP connection (RST, no response)
``malformed_rate``     probability of replacing a WBXML body by undecodable bytes
``truncated_rate``     probability of cutting a WBXML body in half
``trickle``            ``{"rate": p, "chunk": bytes, "interval": s}``: send the body
                       ``chunk`` bytes at a time, ``interval`` seconds apart
``close_after_response``  close the connection after each response, without a
                       ``Connection: close`` header (a keep-alive client sees the
                       reset on its next request)
``commands``           apply only to these EAS commands (default: all)

Probabilities are drawn from one seeded RNG (``seed``), so a run is repeatable.
"""

import random

_MALFORMED = b"\x03\x01\x6a\x00\x45\x5c\xff\xff\xff\xff"  # a tag token from no code page, then junk


class Faults:
    def __init__(self, **cfg):
        self.configure(**cfg)

    def configure(self, latency=None, error_rates=None, reset_rate=0.0, malformed_rate=0.0, truncated_rate=0.0,
                  trickle=None, close_after_response=False, commands=None, seed=None, retry_after=5):
        self.latency = dict(latency) if latency else None
        if self.latency:
            dist = self.latency.setdefault("dist", "fixed")
            if dist not in ("fixed", "uniform", "exponential"):
                raise ValueError("latency dist must be fixed, uniform or exponential, not %r" % (dist,))
        self.error_rates = {int(k): float(v) for k, v in (error_rates or {}).items()}
        for code in self.error_rates:
            if not 400 <= code <= 599:
                raise ValueError("error_rates keys must be HTTP error statuses, not %r" % (code,))
        self.reset_rate = float(reset_rate)
        self.malformed_rate = float(malformed_rate)
        self.truncated_rate = float(truncated_rate)
        self.trickle = dict(trickle) if trickle else None
        if self.trickle:
            self.trickle.setdefault("rate", 1.0)
            self.trickle.setdefault("chunk", 64)
            self.trickle.setdefault("interval", 0.05)
        self.close_after_response = bool(close_after_response)
        self.commands = frozenset(commands) if commands else None
        self.retry_after = int(retry_after)
        self.rng = random.Random(seed)
        self.active = bool(self.latency or self.error_rates or self.reset_rate or self.malformed_rate
                           or self.truncated_rate or self.trickle or self.close_after_response)
        if not hasattr(self, "injected"):
            self.injected = {}  # fault kind -> count; kept across configurations (a Prometheus counter)
        return self

    def applies(self, command):
        return self.active and (self.commands is None or command in self.commands)

    def hit(self, kind):
        self.injected[kind] = self.injected.get(kind, 0) + 1

    def delay(self):
        lat = self.latency
        if not lat:
            return 0.0
        dist = lat["dist"]
        if dist == "fixed":
            return float(lat.get("seconds", 0.0))
        if dist == "uniform":
            return self.rng.uniform(float(lat.get("min", 0.0)), float(lat.get("max", 0.0)))
        return self.rng.expovariate(1.0 / float(lat["mean"])) if float(lat.get("mean", 0)) > 0 else 0.0

    def error_status(self):
        for code, p in self.error_rates.items():
            if p > 0 and self.rng.random() < p:
                return code
        return None

    def chance(self, p):
        return p > 0 and self.rng.random() < p

    def mangle(self, body):
        """(kind, new body) for a WBXML body, or (None, body)."""
        if self.chance(self.malformed_rate):
            return "malformed", _MALFORMED
        if self.chance(self.truncated_rate):
            return "truncated", body[: max(1, len(body) // 2)]
        return None, body

    def to_dict(self):
        return {"latency": self.latency, "error_rates": {str(k): v for k, v in self.error_rates.items()},
                "reset_rate": self.reset_rate, "malformed_rate": self.malformed_rate,
                "truncated_rate": self.truncated_rate, "trickle": self.trickle,
                "close_after_response": self.close_after_response,
                "commands": sorted(self.commands) if self.commands else None,
                "retry_after": self.retry_after, "injected": dict(self.injected)}
