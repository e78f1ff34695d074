"""What one run adds to its scenario: the state the devices share while it goes.

The scenario is what the file says and nothing more (loadgen/scenario.py); a run needs more:
this process's share of the request-rate cap and its token bucket (loadgen/wire/ratelimit.py), the
redirect rule a device's move to another host is checked by (loadgen/wire/redirects.py), and the
Autodiscover step's TLS settings as the command line and the embedded target's CA make them.
:class:`RunLoad` holds them together with the scenario's ``[load]`` settings, so that a device
reads every one of them as one attribute of ``device.load``.  It is built once per run and
pickled to the worker processes; each process makes its own token bucket.

Mail ([mail], loadgen/scenario.py MailConfig): ``mail`` is the scenario's part when its users do
anything with mail, else None (the devices then live exactly as without it); ``run_id`` the run's
eight hex characters in every push-latency token (loadgen/eas/mime.py make_token), drawn once in
the process that builds the context, so every worker (it gets this context pickled) shares it;
``users``, ``user_pattern``, ``devices_per_user`` and ``duration`` what a device needs to address
the other users and to know when the run stops sending (``send_until``).

The user-day ([workload], loadgen/run/day.py): ``workload`` is the run's :class:`~loadgen.run.day.Planner`
(None without [workload]): a device takes its share of its user's planned day from it, and reads the
[mail] choices of its user's profile through :meth:`RunLoad.for_profile`, a view of this context
whose ``mail`` is the profile's (everything else, the token bucket too, is this context's).
"""

import dataclasses
import secrets

from loadgen.wire import ratelimit


class RunLoad:
    """The ``[load]`` settings of a scenario (copied: the same names, plain attributes as fast to
    read as before; the scenario's own part is frozen) and the run's state.

    ``request_cap``: requests/s this process may send (0: no cap); ``redirect_rule``: the
    :class:`~loadgen.wire.redirects.Rule` of this run (None: each device falls back to its own
    URL's); ``autodiscover``: (e-mail pattern, insecure, ca_file) or None; ``bucket``: this
    process's token bucket, made by the first request under a cap."""

    def __init__(self, load, *, request_cap=0.0, redirect_rule=None, autodiscover=None, mail=None, run_id=None,
                 users=1, user_pattern="user{n}", devices_per_user=1, duration=0.0, workload=None):
        self.__dict__.update((f.name, getattr(load, f.name)) for f in dataclasses.fields(load))
        self.request_cap = request_cap
        self.redirect_rule = redirect_rule
        self.autodiscover = autodiscover
        self.bucket = None
        self.mail = mail if mail is not None and mail.active else None
        self.workload = workload
        if workload is not None:  # every device has mail: the first profile's until it takes its own
            self.mail = workload.mail_for(next(iter(workload.workload.profiles)))
        self._views = {}
        self.run_id = run_id or secrets.token_hex(4)
        self.users = users
        self.user_pattern = user_pattern
        self.devices_per_user = devices_per_user
        self.duration = duration
        self._addresses = {}

    def address(self, user_index):
        """The SMTP address of user ``user_index`` of the run: [mail] address with {user}, or the user
        name itself when it holds an "@" (lowercased: RFC 5321 2.4 domains are case-blind, the
        target's store lowercases the local part too)."""
        found = self._addresses.get(user_index)
        if found is None:
            name = self.user_pattern.format(n=user_index)
            found = (name if "@" in name else self.mail.address.format(user=name)).lower()
            if len(self._addresses) < 4096:  # the most used ones; the rest are formatted again
                self._addresses[user_index] = found
        return found

    def for_profile(self, name):
        """This context as a device of workload profile ``name`` reads it (built once per profile)."""
        view = self._views.get(name)
        if view is None:
            view = self._views[name] = _ProfileLoad(self, self.workload.mail_for(name))
        return view

    @classmethod
    def for_run(cls, scenario, parts=1, confirmed=False):
        """The run context of ``scenario`` run in ``parts`` processes (``--workers`` times the
        shards: each takes its share of the cap); ``confirmed``: the operator's ``--yes``."""
        cap, rule = ratelimit.plan(scenario, parts, confirmed)
        pattern = scenario.load.autodiscover
        workload = None
        if getattr(scenario, "workload", None) is not None:
            from loadgen.run.day import Planner

            workload = Planner(scenario)
        return cls(scenario.load, request_cap=cap, redirect_rule=rule,
                   autodiscover=None if pattern is None else (pattern, scenario.target.insecure,
                                                              scenario.target.ca_file),
                   mail=scenario.mail, users=scenario.auth.users, user_pattern=scenario.auth.user,
                   devices_per_user=scenario.population.devices_per_user, duration=scenario.duration,
                   workload=workload)

    def __getstate__(self):
        return dict(self.__dict__, bucket=None, _addresses={}, _views={})  # a worker process makes its own


class _ProfileLoad(RunLoad):
    """A run context as the devices of one workload profile read it: its own ``mail``, everything else
    the base context's (copied plain attributes; the token bucket and the address cache shared)."""

    def __init__(self, base, mail):  # noqa: super().__init__ not called: a copy of base
        self.__dict__.update(base.__dict__)
        self.__dict__.pop("bucket", None)
        self._base = base
        self.mail = mail

    @property
    def bucket(self):
        return self._base.bucket

    @bucket.setter
    def bucket(self, value):
        self._base.bucket = value

    def for_profile(self, name):
        return self._base.for_profile(name)

    def __reduce__(self):
        return (RunLoad.for_profile, (self._base, next(k for k, v in self._base._views.items() if v is self)))


__all__ = ["RunLoad"]
