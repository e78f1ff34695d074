"""What one run adds to its scenario: the state the devices share while it goes.

The scenario is what the file says and nothing more (loadgen/scenario.py); a run needs more:
this process's share of the request-rate cap and its token bucket (loadgen/wire/ratelimit.py), the
redirect rule a device's move to another host is checked by (loadgen/wire/redirects.py), and the
Autodiscover step's TLS settings as the command line and the embedded target's CA make them.
:class:`RunLoad` holds them together with the scenario's ``[load]`` settings, so that a device
reads every one of them as one attribute of ``device.load``.  It is built once per run and
pickled to the worker processes; each process makes its own token bucket.
"""

import dataclasses

from loadgen.wire import ratelimit


class RunLoad:
    """The ``[load]`` settings of a scenario (copied: the same names, plain attributes as fast to
    read as before; the scenario's own part is frozen) and the run's state.

    ``request_cap``: requests/s this process may send (0: no cap); ``redirect_rule``: the
    :class:`~loadgen.wire.redirects.Rule` of this run (None: each device falls back to its own
    URL's); ``autodiscover``: (e-mail pattern, insecure, ca_file) or None; ``bucket``: this
    process's token bucket, made by the first request under a cap."""

    def __init__(self, load, *, request_cap=0.0, redirect_rule=None, autodiscover=None):
        self.__dict__.update((f.name, getattr(load, f.name)) for f in dataclasses.fields(load))
        self.request_cap = request_cap
        self.redirect_rule = redirect_rule
        self.autodiscover = autodiscover
        self.bucket = None

    @classmethod
    def for_run(cls, scenario, parts=1, confirmed=False):
        """The run context of ``scenario`` run in ``parts`` processes (``--workers`` times the
        shards: each takes its share of the cap); ``confirmed``: the operator's ``--yes``."""
        cap, rule = ratelimit.plan(scenario, parts, confirmed)
        pattern = scenario.load.autodiscover
        return cls(scenario.load, request_cap=cap, redirect_rule=rule,
                   autodiscover=None if pattern is None else (pattern, scenario.target.insecure,
                                                              scenario.target.ca_file))

    def __getstate__(self):
        return dict(self.__dict__, bucket=None)  # a worker process makes its own


__all__ = ["RunLoad"]
