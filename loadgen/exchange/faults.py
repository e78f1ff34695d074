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

import math
import random

MAX_SECONDS = 3600.0  # an injected delay or trickle interval longer than an hour is a mistake


def _number(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("%s must be a number, not %r" % (name, value))
    try:
        number = float(value)
    except ValueError:
        raise ValueError("%s must be a number, not %r" % (name, value)) from None
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError("%s must be a finite number from %s to %s, not %r" % (name, low, high, value))
    return number


def _probability(name, value):
    return _number(name, value, 0.0, 1.0)


def _mapping(name, value):
    if not value:
        return {}
    if not isinstance(value, dict):
        raise ValueError("%s must be an object, not %r" % (name, value))
    return value


def _status(code):
    try:
        status = int(code)
    except (TypeError, ValueError):
        raise ValueError("error_rates keys must be HTTP error statuses, not %r" % (code,)) from None
    if not 400 <= status <= 599:  # RFC 9110 15.5, 15.6: client and server errors
        raise ValueError("error_rates keys must be HTTP error statuses, not %r" % (code,))
    return status


def _latency(latency):
    """``latency`` checked: a dist and the numbers it needs, each finite, from 0 to MAX_SECONDS."""
    latency = dict(_mapping("latency", latency))
    if not latency:
        return None
    dist = latency.setdefault("dist", "fixed")
    if dist not in ("fixed", "uniform", "exponential"):
        raise ValueError("latency dist must be fixed, uniform or exponential, not %r" % (dist,))
    names = {"fixed": ("seconds",), "uniform": ("min", "max"), "exponential": ("mean",)}[dist]
    for name in set(latency) - set(names) - {"dist"}:
        raise ValueError("latency %s has no setting %r (%s)" % (dist, name, ", ".join(names)))
    for name in names:
        latency[name] = _number("latency %s" % name, latency.get(name, 0.0), 0.0, MAX_SECONDS)
    if dist == "uniform" and latency["min"] > latency["max"]:
        raise ValueError("latency min (%s) must not be above max (%s)" % (latency["min"], latency["max"]))
    return latency

_MALFORMED = b"\x03\x01\x6a\x00\x45\x5c\xff\xff\xff\xff"  # a tag token from no code page, then junk


class Faults:
    def __init__(self, **cfg):
        self.configure(**cfg)

    def configure(self, latency=None, error_rates=None, reset_rate=0.0, malformed_rate=0.0, truncated_rate=0.0,
                  trickle=None, close_after_response=False, commands=None, seed=None, retry_after=5):
        """Replace the configuration.  Every value is checked first (a ValueError or TypeError
        naming it): a refused configuration changes nothing."""
        latency = _latency(latency)
        error_rates = _mapping("error_rates", error_rates)
        error_rates = {_status(k): _probability("error_rates %s" % k, v) for k, v in error_rates.items()}
        rates = {name: _probability(name, value) for name, value in
                 (("reset_rate", reset_rate), ("malformed_rate", malformed_rate), ("truncated_rate", truncated_rate))}
        trickle = dict(_mapping("trickle", trickle)) or None
        if trickle:
            unknown = set(trickle) - {"rate", "chunk", "interval"}
            if unknown:
                raise ValueError("trickle has no setting %r (rate, chunk, interval)" % sorted(unknown)[0])
            trickle = {"rate": _probability("trickle rate", trickle.get("rate", 1.0)),
                       "chunk": int(_number("trickle chunk", trickle.get("chunk", 64), 1, 1 << 20)),
                       "interval": _number("trickle interval", trickle.get("interval", 0.05), 0, MAX_SECONDS)}
        if commands is not None and (isinstance(commands, (str, bytes)) or not isinstance(commands, (list, tuple,
                                                                                                      set, frozenset))
                                     or not all(isinstance(c, str) for c in commands)):
            raise ValueError("commands must be a list of EAS command names, not %r" % (commands,))
        retry_after = int(_number("retry_after", retry_after, 0, 86_400))
        if seed is not None and not isinstance(seed, (int, float, str)) or isinstance(seed, float) \
                and not math.isfinite(seed):
            raise ValueError("seed must be a number or text, not %r" % (seed,))
        self.latency = latency
        self.error_rates = error_rates
        self.reset_rate = rates["reset_rate"]
        self.malformed_rate = rates["malformed_rate"]
        self.truncated_rate = rates["truncated_rate"]
        self.trickle = trickle
        self.close_after_response = bool(close_after_response)
        self.commands = frozenset(commands) if commands else None
        self.retry_after = retry_after
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
