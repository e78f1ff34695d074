"""The one start-up of the embedded Exchange for a run: one process or a cluster, TLS or not, its
admin API and token file.

The command line starts it (``loadgen/cli/start.py``) and hands the :class:`Launched` handle to
the run, which reads the URL(s) the devices talk to and gives the handle the scenario's events;
the run imports nothing of this package.  Everything the start-up made (the processes, the
throwaway CA's directory, the admin token file) goes with :meth:`Launched.close`, and with the
start-up itself when it fails half-way.
"""

import asyncio
import os
import random
import tempfile

from loadgen.exchange import tls as tls_mod
from loadgen.exchange.state import TargetState, scenario_options


def embedded_state(scenario):
    """The embedded target's state for a scenario (its users, policy options, Ping bounds, modes)."""
    return TargetState(**scenario_options(scenario))


class Launched:
    """The embedded Exchange of one run, as the run sees it.

    ``scenario``: the scenario the devices use (with ``[target] tls``, the throwaway CA as their
    ``ca_file``); ``urls``: one URL, or a cluster's list (process k serves the users n with
    n % N == k); ``target``: the :class:`~loadgen.exchange.server.Target` or
    :class:`~loadgen.exchange.cluster.TargetCluster`; ``state``: its TargetState (a cluster's is
    the organisation-wide one); ``collector``: the Prometheus collector of its ``easload_target_*``
    series on the run's endpoint (None for a cluster, which serves them merged on its admin
    endpoint); ``in_process``: whether its memory is this process's."""

    def __init__(self, scenario):
        self.scenario = scenario
        self.urls = None
        self.target = self.state = self.collector = None
        self.in_process = False
        self.admin_url = self.token_file = None
        self._pki = self._runner = self._admin_runner = None

    async def apply_event(self, event, seed):
        """A scenario event on this target (one process or every process of a cluster); its result
        as a line for the summary.  The one applier of the target's events."""
        if self.in_process:
            return await _apply(_Local(self.target), event, seed)
        return await _apply(self.target, event, seed)

    async def deliver_mail(self, deadline):
        """New mail at ``[target] mail_per_user_per_hour`` (Poisson) until ``deadline`` (loop time),
        waking held Pings; a cluster's processes deliver their own (exchange/cluster.py)."""
        rate = self.scenario.target.mail_per_user_per_hour
        if not self.in_process or rate <= 0:
            return
        await mail_at_rate(self.state, rate, random.Random(self.scenario.seed ^ 0x3A11), deadline)

    async def close(self):
        """Stop the target (held Pings answered), its admin API; remove the token file and the
        throwaway CA's directory.  The files first: nothing awaited before them, so a cancellation
        cannot leave them behind."""
        if self.token_file is not None:
            try:
                os.unlink(self.token_file)
            except OSError:
                pass
            self.token_file = None
        if self._pki is not None:
            try:
                self._pki.cleanup()
            except OSError:
                pass
            self._pki = None
        for name in ("_admin_runner", "_runner"):
            held = getattr(self, name)
            setattr(self, name, None)
            if held is not None:
                try:
                    await held.cleanup()
                except Exception:  # a close that fails must not hide the run's results
                    pass


async def mail_at_rate(state, per_user_per_hour, rng, until=None):
    """New mail for ``state``'s users at ``per_user_per_hour`` each (Poisson arrivals drawn from
    ``rng``) until ``until`` (loop time; None: until cancelled), waking their held Pings."""
    users = sorted(state.passwords)
    if not users:
        return
    loop = asyncio.get_running_loop()
    per_second = per_user_per_hour * len(users) / 3600.0
    tick = 0.25
    while until is None or loop.time() < until:
        await asyncio.sleep(tick)
        # Poisson arrivals in one tick, by counting exponential gaps
        t = rng.expovariate(per_second)
        while t < tick:
            state.deliver_mail(rng.choice(users))
            t += rng.expovariate(per_second)


async def launch(scenario, *, state=None, admin=None, stream=None):
    """Start the embedded Exchange a scenario describes; a :class:`Launched`.

    ``[target] processes = N`` (and no ``state`` given): N processes, users sharded over them
    (exchange/cluster.py).  ``[target] tls``: HTTPS with the scenario's certificate or a
    throwaway CA (exchange/tls.py).  ``state``: the TargetState to serve (tests look into it).
    ``admin="127.0.0.1:0"``: a single process's admin API during the run, so that an operator
    can act on the target with curl; its bearer token is written to a file only the user can
    read (0600), removed by :meth:`Launched.close`; the URL and the file's path are written to
    ``stream``, never the token."""
    launched = Launched(scenario)
    try:
        await _start(launched, scenario, state, admin, stream)
    except BaseException:
        await launched.close()
        raise
    return launched


async def _start(launched, scenario, state, admin, stream):
    scenario, launched._pki = tls_mod.for_scenario(scenario)
    launched.scenario = scenario
    t = scenario.target
    if t.processes > 1 and state is None:
        from loadgen.exchange.cluster import start_cluster

        launched._runner = launched.target = cluster = await start_cluster(scenario)
        launched.urls, launched.state = cluster.urls, cluster.state
        _with_tokens(launched)
        return
    from loadgen.exchange.metrics import TargetCollector
    from loadgen.exchange.server import start_target

    tls = dict(tls_cert=t.tls_cert, tls_key=t.tls_key) if t.tls else {}
    launched.state = state if state is not None else embedded_state(scenario)
    _with_tokens(launched)
    launched._runner, target, launched.urls = await start_target(t.listen, 0, launched.state, **tls)
    launched.target, launched.in_process, launched.collector = target, True, TargetCollector(target)
    if admin:
        await _start_admin(launched, admin, stream)


def _with_tokens(launched):
    """The devices' Bearer tokens for this target, with no user setup: the scenario handed to the run
    carries a token source minting with the target's secret (bearer.py; a cluster's processes share
    it), which the run gives its Bearer client types unless ``[auth] token_file`` / ``token_command``
    name their own (loadgen/run/engine.py build_population)."""
    import dataclasses

    scenario = launched.scenario
    target = dataclasses.replace(scenario.target, bearer_tokens=launched.state.token_source())
    launched.scenario = dataclasses.replace(scenario, target=target)


async def _start_admin(launched, listen, stream):
    from loadgen.exchange.admin import start_admin

    host, _, port = listen.rpartition(":")
    launched._admin_runner, url, token = await start_admin(host or "127.0.0.1", int(port or 0), launched.target)
    fd, path = tempfile.mkstemp(prefix="easload-admin-", suffix=".token")  # created 0600
    launched.token_file = path
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    launched.admin_url = url
    if stream is not None:
        stream.write("admin API of the embedded target on %s (bearer token in %s), e.g.\n"
                     "  curl -H \"Authorization: Bearer $(cat %s)\" %s/admin/counters\n" % (url, path, path, url))
        stream.flush()


class _Local:
    """One in-process target's actions as the cluster's coroutines, for :func:`_apply`."""

    def __init__(self, target):
        self.target = target
        self.state = target.state

    async def change_policy(self, settings):
        self.state.change_policy(**settings)

    async def wipe_fraction(self, fraction, seed=None, account_only=False):
        return self.state.wipe_fraction(fraction, seed=seed, account_only=account_only)

    async def deliver_mail_fraction(self, fraction, count=1, seed=None):
        return self.state.deliver_mail_fraction(fraction, count, seed=seed)

    async def set_abq(self, **config):
        self.state.set_abq(**config)

    async def set_faults(self, **config):
        self.target.set_faults(**config)

    async def resync_fraction(self, fraction, seed=None):
        return len(self.state.resync_fraction(fraction, seed=seed))

    async def drop_connections(self, fraction, seed=None):
        return self.target.drop_connections(fraction, seed=seed)


async def _apply(target, event, seed):
    """``event`` (change_policy, wipe, mail, abq, faults, resync, network_drop) through ``target``'s
    admin actions; an event's own ``seed`` picks its devices, else the scenario's."""
    args = event.args
    if event.action == "change_policy":
        await target.change_policy(args.get("settings", {}))
        return "policy changed (%s)" % ", ".join(sorted(args.get("settings", {})))
    if event.action == "wipe":
        wiped = await target.wipe_fraction(args.get("fraction", 0.0), seed=seed,
                                           account_only=args.get("account_only", False))
        return "%d devices to wipe" % len(wiped)
    if event.action == "mail":
        users = await target.deliver_mail_fraction(args.get("fraction", 1.0), args.get("count", 1), seed=seed)
        return "mail for %d users" % users
    if event.action == "abq":
        await target.set_abq(**args)
        return "access rules set"
    if event.action == "faults":
        await target.set_faults(**args.get("settings", {}))
        return "faults %s" % (", ".join(sorted(args.get("settings", {}))) or "off")
    if event.action == "resync":
        n = await target.resync_fraction(args.get("fraction", 0.0), seed=args.get("seed", seed))
        return "sync state dropped for %d devices" % n
    if event.action == "network_drop":
        n = await target.drop_connections(args.get("fraction", 0.0), seed=args.get("seed", seed))
        return "%d connections cut" % n
    raise ValueError("unknown action %s" % event.action)


__all__ = ["Launched", "launch", "embedded_state", "mail_at_rate"]
