"""The global request-rate cap: a token bucket per process.

A safety rail, not a workload model: whatever the scenario asks, the devices of
a run never send more than ``max_request_rate`` requests a second in total.
It is on by default for a target that is not on this machine
(:data:`DEFAULT_REMOTE_RATE`), off by default on loopback and the embedded target,
set with ``[load] max_request_rate = N`` and turned off with ``0`` or ``"off"``
(with a warning for a remote target).

The run's rate is split evenly across the processes that run it (``--workers``
and ``--shard``/``--shards``): each process owns a bucket of ``rate / parts``
tokens a second, so the whole keeps the cap.  The cap and the bucket are the
run's state (``loadgen/run/context.py``), never the scenario's.  The devices' hook
(:func:`acquire`, called before each request) costs one attribute test when the
cap is off.

The bucket holds at most ``burst`` tokens (one second of the process's rate, at
least 1): after an idle moment the devices may send one second's worth at once,
never more.  Waiters are served in arrival order (each reserves its token and
sleeps until it is due), so no device starves.
"""

import asyncio
import time

from loadgen.wire import redirects

DEFAULT_REMOTE_RATE = 50.0  # requests/s for a target that is not on this machine


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; ``reserve()`` says how long
    to wait for the next token (:func:`acquire` waits)."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "clock", "waited", "taken")

    def __init__(self, rate, burst=None, clock=time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate)
        self.tokens = self.burst
        self.clock = clock
        self.stamp = clock()
        self.waited = 0  # requests that had to wait (for the summary line)
        self.taken = 0

    def reserve(self):
        """Take one token; the seconds to wait before using it (0: at once).

        Tokens may go negative: each caller reserves the next free slot, so
        concurrent callers are spaced 1/rate apart in arrival order."""
        now = self.clock()
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        tokens -= 1.0
        self.tokens = tokens
        self.taken += 1
        if tokens >= 0:
            return 0.0
        self.waited += 1
        return -tokens / self.rate


def resolve(scenario):
    """(requests/s for the whole run or 0 when off, a phrase saying why) for a scenario.

    ``scenario.load.max_request_rate`` is None (the default), 0 (off) or a rate."""
    configured = scenario.load.max_request_rate
    # several URLs (a multi-process target): remote as soon as one of them is not on this machine
    remote = not scenario.target.embedded and not all(redirects.is_loopback(url) for url in scenario.target.urls)
    if configured is None:
        if remote:
            return DEFAULT_REMOTE_RATE, "default for a target that is not on this machine"
        return 0.0, "off by default on loopback"
    if configured <= 0:
        return 0.0, "turned off in the scenario" + (" -- the target is not on this machine" if remote else "")
    return float(configured), "set in the scenario"


def describe(scenario):
    rate, why = resolve(scenario)
    if rate <= 0:
        return "request-rate cap: off (%s)" % why
    return "request-rate cap: %g requests/s in total (%s)" % (rate, why)


def plan(scenario, parts=1, confirmed=False):
    """(this process's requests/s, the redirect rule) for a run of ``scenario`` in ``parts``
    processes; ``confirmed``: the operator's ``--yes``.  The rule (loadgen/wire/redirects.py)
    re-checks the safety rail and this cap when a device moves to a new host.  The scenario is
    not changed: the run keeps both (loadgen/run/context.py)."""
    rate, _ = resolve(scenario)
    parts = max(1, parts)
    # the cap is off only because the target is on this machine: a move to a remote host turns it on
    remote_cap = DEFAULT_REMOTE_RATE / parts if scenario.load.max_request_rate is None and rate <= 0 else 0.0
    rule = redirects.Rule.for_scenario(scenario, confirmed=confirmed, remote_cap=remote_cap)
    return (rate / parts if rate > 0 else 0.0), rule


def bucket(load):
    """The process's bucket for the run's cap (``load``: the run context, ``load.request_cap``)."""
    b = load.bucket
    if b is None or b.rate != load.request_cap:
        b = load.bucket = TokenBucket(load.request_cap)
    return b


async def acquire(load):
    """The devices' hook: wait for a token when the cap is on (``load.request_cap`` > 0)."""
    b = load.bucket
    if b is None or b.rate != load.request_cap:
        b = bucket(load)
    delay = b.reserve()
    if delay > 0:
        await asyncio.sleep(delay)


def remote_move(load, cap):
    """A device moved to a host not on this machine (loadgen/wire/redirects.py): turn the cap on at
    ``cap`` requests/s for this process when it is off (it was off only because the target was
    on this machine; ``cap`` is 0 when the operator turned it off or set it)."""
    if cap > 0 and not load.request_cap:
        load.request_cap = cap
