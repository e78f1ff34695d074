"""The simulated day ([workload], loadgen/scenario.py WorkloadConfig): profiles, the day's clock and
curve, each user's planned tasks, and the plan's totals for ``--dry-run``.

Exchange Load Generator modelled a user-day: N tasks per user per day spread over a simulated day
(docs/protocol-notes.md, section 17: Microsoft's message profiles are messages sent and received per
mailbox per day, sizing is for the peak two hours).  easload does the same:

* :class:`Curve`: how the day's tasks spread over it -- ``flat``, or ``diurnal`` (the peak two hours at
  ``peak_factor`` times the day's mean rate, the rest of the day evenly; where the peak sits:
  WorkloadConfig.peak_window);
* :class:`Clock`: a second of the simulated day -> a second of the run (the replayed part of the day,
  ``replay_from`` for ``replay_length`` seconds, stretched or compressed onto the run's duration;
  ``stress``: every task at once, taken as fast as the device can);
* :func:`plan`: the tasks of one user over the replayed part of the day, as (day second, task type)
  in time order, drawn from (seed, user index) only -- the same whatever the shard, worker or the
  other users -- each type a Poisson process with the profile's daily mean, its times following the
  curve;
* :class:`Planner`: what a run's devices read through their run context (loadgen/run/context.py):
  a device's share of its user's plan (task k of a user goes to its device k % devices_per_user), the
  per-profile [mail] choices, the external mail the embedded target delivers (``receive`` tasks);
* :func:`summary`: tasks per hour per type, requests/s per command, messages/s and connections held,
  for the whole run and its peak hour.

Task types are loadgen/results/tasks.py TASK_TYPES.
"""

import bisect
import dataclasses
import heapq
import math
import random
from array import array

from collections import Counter

from loadgen.device import clients
from loadgen.device.user import DayTasks
from loadgen.results.tasks import TASK_TYPES

DEVICE_TASKS = TASK_TYPES[:8]  # send .. search: what a device does; "receive" is the target's
_CODE = {name: i for i, name in enumerate(TASK_TYPES)}
RECEIVE = "receive"
_SALT_PROFILE, _SALT_CLIENT, _SALT_PLAN, _SALT_RECEIVE = "profile", "client", "plan", "receive"


# -- the curve and the clock


class Curve:
    """A piecewise-constant density of the day's tasks over [0, day_length): ``edges`` (day seconds)
    and the cumulative share of the day's tasks at each edge."""

    __slots__ = ("edges", "cumulative", "day_length")

    def __init__(self, workload):
        length = workload.day_length
        self.day_length = length
        if workload.curve == "diurnal":
            p0, p1 = workload.peak_window()
            peak = workload.peak_factor * (p1 - p0) / length  # share of the day's tasks in the peak
            rest = length - (p1 - p0)
            edges = [0.0, p0, p1, length]
            shares = [(1 - peak) * p0 / rest if rest else 0.0, peak,
                      (1 - peak) * (length - p1) / rest if rest else 0.0]
        else:
            edges, shares = [0.0, length], [1.0]
        cumulative = [0.0]
        for share in shares:
            cumulative.append(cumulative[-1] + share)
        cumulative[-1] = 1.0
        self.edges = tuple(edges)
        self.cumulative = tuple(cumulative)

    def mass(self, t):
        """Share of the day's tasks planned before day second ``t``."""
        edges, cum = self.edges, self.cumulative
        if t <= 0:
            return 0.0
        if t >= self.day_length:
            return 1.0
        k = bisect.bisect_right(edges, t) - 1
        span = edges[k + 1] - edges[k]
        return cum[k] + (cum[k + 1] - cum[k]) * (t - edges[k]) / span if span else cum[k]

    def time_at(self, m):
        """The day second at which the share ``m`` of the day's tasks is reached (inverse of mass)."""
        edges, cum = self.edges, self.cumulative
        k = bisect.bisect_right(cum, m) - 1
        k = min(max(k, 0), len(edges) - 2)
        while k < len(edges) - 2 and cum[k + 1] == cum[k] and m >= cum[k + 1]:
            k += 1
        width = cum[k + 1] - cum[k]
        return edges[k] + (edges[k + 1] - edges[k]) * ((m - cum[k]) / width if width else 0.0)

    def rate(self, t):
        """The rate at day second ``t`` as a multiple of the day's mean rate."""
        edges, cum = self.edges, self.cumulative
        k = min(max(bisect.bisect_right(edges, t) - 1, 0), len(edges) - 2)
        span = edges[k + 1] - edges[k]
        return (cum[k + 1] - cum[k]) * self.day_length / span if span else 0.0


class Clock:
    """A second of the simulated day -> a second of the run: run_t = (day_t - replay_from) x
    duration / replayed; ``stress``: 0 (every task due at once, taken one after the other)."""

    __slots__ = ("start", "scale", "stress")

    def __init__(self, workload, duration):
        self.start = workload.replay_from
        replayed = workload.replayed
        self.scale = duration / replayed if replayed > 0 else 0.0
        self.stress = workload.stress

    def dispatch_time(self, day_t):
        return 0.0 if self.stress else (day_t - self.start) * self.scale

    def day_time(self, run_t):
        return self.start + (run_t / self.scale if self.scale else 0.0)


# -- who does what


def _rng(seed, user_index, salt, day=0):
    """A generator for one user's draws: seeded from (seed, user index, purpose, day) only (a string
    seed is hashed with SHA-512 by random.seed: the same in every process)."""
    return random.Random("%d:%d:%s:%d" % (seed, user_index, salt, day))


def _weighted(weights, x):
    total = sum(weights.values())
    edge = 0.0
    for name, weight in weights.items():
        edge += weight / total
        if x < edge:
            return name
    return name


def profile_of(workload, seed, user_index):
    """The profile name of user ``user_index``, by the profiles' weights (deterministic per user)."""
    return _weighted(workload.profiles, _rng(seed, user_index, _SALT_PROFILE).random())


def client_of(workload, seed, user_index, slot=0):
    """The client type of device ``slot`` of user ``user_index``, by the client types' weights."""
    return _weighted(workload.clients, _rng(seed, user_index * 1000 + slot, _SALT_CLIENT).random())


def daily_means(profile, mail=None):
    """Tasks per user per simulated day by type (the profile's means)."""
    sent = profile.sent_per_day
    answered = sum(profile.meeting_response.values())
    return {
        "send": sent * (1.0 - profile.reply_share - profile.forward_share),
        "reply": sent * profile.reply_share,
        "forward": sent * profile.forward_share,
        "process": profile.received_per_day,  # each message received is looked at once (read, filed, ...)
        "meeting": profile.meeting_requests_per_day * answered,
        "calendar": profile.calendar_edits_per_day,
        "contact": profile.contact_edits_per_day,
        "search": profile.mailbox_searches_per_day,
    }


def recipients_per_message(profile, mail):
    """Mean addresses per message: To (the profile's range), Cc (one or two, [mail] cc_share), Bcc."""
    low, high = profile.recipients
    return (low + high) / 2.0 + mail.cc_share * 1.5 + mail.bcc_share


def external_per_day(workload, mail):
    """{profile: messages per user per day the target delivers from outside}: the profile's
    received_per_day minus what the other users' internal sends bring, averaged over the users
    (sent x recipients x internal_share, weighted by the profiles' shares); never below 0."""
    total = sum(workload.profiles.values())
    internal = sum(workload.profiles[name] / total * p.sent_per_day * recipients_per_message(p, mail)
                   * p.internal_share for name, p in workload.definitions.items())
    return {name: max(0.0, p.received_per_day - internal) for name, p in workload.definitions.items()}


def _poisson_times(rng, per_day, m0, m1, curve, out, code):
    """Arrivals of a Poisson process of ``per_day`` a day between the day's shares m0 and m1 (its
    times following ``curve``), appended to ``out`` as (day second, code)."""
    if per_day <= 0:
        return
    m = m0
    while True:
        m += rng.expovariate(per_day)
        if m >= m1:
            return
        out.append((curve.time_at(m), code))


@dataclasses.dataclass(frozen=True)
class DayPlan:
    """One user's tasks over the replayed part of the day, in time order."""

    profile: str
    times: tuple  # day seconds
    types: tuple  # task type names

    def counts(self):
        out = dict.fromkeys(DEVICE_TASKS, 0)
        for name in self.types:
            out[name] += 1
        return out


def plan(workload, profile, user_index, seed, shard=None, day=0, curve=None):
    """The tasks of user ``user_index`` over the replayed part of the simulated day: a
    :class:`DayPlan`.  Drawn from (seed, user index, day) only: ``shard`` (or the number of workers,
    or the other users) changes nothing."""
    curve = curve or Curve(workload)
    m0 = curve.mass(workload.replay_from)
    m1 = curve.mass(workload.replay_from + workload.replayed)
    rng = _rng(seed, user_index, _SALT_PLAN, day)
    out = []
    for name, per_day in daily_means(profile).items():
        _poisson_times(rng, per_day, m0, m1, curve, out, _CODE[name])
    out.sort()
    return DayPlan(profile.name, tuple(t for t, _c in out), tuple(DEVICE_TASKS[c] for _t, c in out))


class Planner:
    """The workload of a run as its devices read it (``device.load.workload``): built once per run,
    pickled to the worker processes with the run context."""

    def __init__(self, scenario):
        self.workload = workload = scenario.workload
        self.seed = scenario.seed
        self.duration = scenario.duration
        self.devices_per_user = scenario.population.devices_per_user
        self.users = scenario.auth.users
        self.clock = Clock(workload, scenario.duration)
        self.base_mail = scenario.mail
        self._mails = {}
        self._curve = None

    def __getstate__(self):
        return dict(self.__dict__, _mails={}, _curve=None)

    @property
    def curve(self):
        if self._curve is None:
            self._curve = Curve(self.workload)
        return self._curve

    def mail_for(self, profile_name):
        """The [mail] part a device of ``profile_name`` reads: the scenario's, with the profile's shares
        (built once per profile)."""
        found = self._mails.get(profile_name)
        if found is None:
            p = self.workload.definitions[profile_name]
            found = self._mails[profile_name] = dataclasses.replace(
                self.base_mail, reply_share=p.reply_share, forward_share=p.forward_share, to=p.recipients,
                internal_share=p.internal_share, html_share=p.html_share, attachment_share=p.attachment_share,
                attachment_kb=p.attachment_kb, body_bytes=p.body_bytes, read_share=p.read_share,
                flag_share=p.flag_share, delete_share=p.delete_share, move_share=p.move_share,
                meeting_response=dict(p.meeting_response))
        return found

    def profile_of(self, user_index):
        return profile_of(self.workload, self.seed, user_index)

    def user_plan(self, user_index, day=0):
        name = self.profile_of(user_index)
        return plan(self.workload, self.workload.definitions[name], user_index, self.seed, day=day, curve=self.curve)

    def device_plan(self, index, day=0):
        """Device ``index``'s share of its user's plan (task k to the device k % devices_per_user; a user
        whose client type keeps fewer partnerships -- outlook-cloud: one, loadgen/device/clients.py --
        shares it among those), its times as run seconds: a :class:`loadgen.device.user.DayTasks`."""
        user_index, slot = divmod(index, self.devices_per_user)
        p = self.user_plan(user_index, day)
        step = self.devices_per_user
        client = clients.pick(self.workload.clients, self.seed, user_index)
        if client is not None and 0 < client.partnerships_per_user < step:
            step = client.partnerships_per_user
        clock = self.clock
        times = array("d", (clock.dispatch_time(t) for t in p.times[slot::step]))
        kinds = bytes(_CODE[k] for k in p.types[slot::step])
        profile = self.workload.definitions[p.profile]
        return DayTasks(p.profile, times, kinds, profile.gal_lookups_per_message, day, self.workload.stress)

    def external_times(self, user_indexes):
        """(run second, user index) of every external message the target delivers, in time order, for
        ``user_indexes``: each user's a Poisson process of its profile's external rate (drawn from
        (seed, user index) only), following the curve."""
        rates = external_per_day(self.workload, self.base_mail)
        curve = self.curve
        w = self.workload
        m0, m1 = curve.mass(w.replay_from), curve.mass(w.replay_from + w.replayed)
        clock = self.clock

        def one(user):
            out = []
            _poisson_times(_rng(self.seed, user, _SALT_RECEIVE), rates[self.profile_of(user)], m0, m1, curve, out, 0)
            for t, _c in out:
                yield clock.dispatch_time(t), user

        return heapq.merge(*(one(u) for u in user_indexes))

    def meeting_times(self, user_indexes):
        """(run second, user index) of the meeting requests the target delivers, in time order: one for
        each ``meeting`` task of the user's plan (the answered requests), half way between the user's
        previous meeting task (or the start of the replayed day) and this one, so that the request has
        usually reached the user's device by the task's time (docs/protocol-notes.md section 17)."""
        clock = self.clock

        def one(user):
            p = self.user_plan(user)
            before = self.workload.replay_from
            for t, kind in zip(p.times, p.types):
                if kind == "meeting":
                    yield clock.dispatch_time((before + t) / 2.0), user
                    before = t

        return heapq.merge(*(one(u) for u in user_indexes))


async def deliver_external(planner, deliver, user_name, t0, deadline, stats=None, users=None, meeting=None):
    """The external mail of the plan (``receive`` tasks), delivered by the embedded target at the planned
    times until ``deadline`` (loop times): ``deliver(user name)`` (a TargetState's deliver_mail, or a
    coroutine function: a cluster's).  Each is planned, and achieved when delivered (late if the loop
    was behind).  ``users``: the user indexes (default: every user of the run).  ``meeting(user name)``:
    delivers a meeting request (TargetState.deliver_meeting, or a cluster's); with it the plan's meeting requests
    (:meth:`Planner.meeting_times`) are delivered too, each a ``receive`` task as well."""
    import asyncio

    loop = asyncio.get_running_loop()
    users = range(planner.users) if users is None else users

    def timeline():
        mail = ((at, user, deliver) for at, user in planner.external_times(users))
        if meeting is None:
            return mail
        return heapq.merge(mail, ((at, user, meeting) for at, user in planner.meeting_times(users)),
                           key=lambda item: item[0])

    if stats is not None:
        stats.tasks_planned(RECEIVE, sum(1 for _ in timeline()))
    for at, user, how in timeline():
        when = t0 + at
        if when >= deadline:
            return
        # behind the plan (a busy target): still one delivery per turn of the loop, never a burst that
        # holds the target's own requests and new connections until it has caught up
        delay = when - loop.time()
        await asyncio.sleep(delay if delay > 0 else 0)
        started = loop.time()
        ok = True
        try:
            result = how(user_name(user))
            if asyncio.iscoroutine(result):
                await result
        except Exception:  # a user the target does not know: counted as failed, the rest go on
            ok = False
        if stats is not None:
            stats.task_done(RECEIVE, when, started, loop.time(), ok)


def count_unstarted(devices, stats, planner):
    """At the run's end: every planned task of ``devices`` that never started is counted ``unstarted``
    (loadgen/results/tasks.py); a device that never took its share of the plan -- it never enrolled
    (Provision refused, blocked, quarantined, no answer) or never started -- counts that share as planned
    first, so that tasks.achieved_ratio cannot look good because devices failed to come up."""
    if planner is None:
        return
    planned, unstarted = Counter(), Counter()
    for device in devices:
        plan = getattr(device, "task_plan", None)
        if plan is None:
            plan = planner.device_plan(device.index)
            planned.update(plan.kinds)
        unstarted.update(plan.kinds[plan.next:])
    for code, n in planned.items():
        stats.tasks_planned(TASK_TYPES[code], n)
    for code, n in unstarted.items():
        stats.task_result(TASK_TYPES[code], "unstarted", n)


def run_users(scenario, shard=(0, 1)):
    """The user indexes of the devices of this run (of its shard ``(index, count)``): device ``i`` is
    user ``i // devices_per_user``'s (loadgen/run/engine.py build_population), so ``--devices`` below
    ``[auth] users`` uses only the first users; only theirs is the plan's mail."""
    pop = scenario.population
    index, count = shard
    users = scenario.auth.users
    return sorted({i // pop.devices_per_user for i in range(index, pop.devices, count)
                   if i // pop.devices_per_user < users})


def external_delivery(scenario, context, target, t0, deadline, stats, shard=(0, 1)):
    """The coroutine that delivers the plan's external mail on the embedded target this process
    started (``target``: its launch handle, loadgen/exchange/launch.py; one process: its state's
    deliver_mail, a cluster: its coroutine), or None (no [workload], no embedded target) -- to the
    users of this run's devices only (:func:`run_users`)."""
    planner = getattr(context, "workload", None)
    if planner is None or target is None:
        return None
    # mail and meeting requests (loadgen/exchange/state.py; a cluster relays them to the user's process)
    owner = target.state if target.in_process else target.target
    deliver, meeting = owner.deliver_mail, owner.deliver_meeting
    pattern = scenario.auth.user
    return deliver_external(planner, deliver, lambda u: pattern.format(n=u), t0, deadline, stats,
                            users=run_users(scenario, shard), meeting=meeting)


# -- the plan's totals (--dry-run)

# requests of one task by command: the recipe of each task type (MS-ASCMD); "send" adds its GAL
# look-ups (2 to 4 Search requests each, as the user types: loadgen/device/user.py prefixes)
_RECIPES = {
    "send": {"SendMail": 1},
    "reply": {"SmartReply": 1},
    "forward": {"SmartForward": 1},
    "process": {"Sync": 1},  # plus MoveItems for the filed share
    "meeting": {"MeetingResponse": 1},
    "calendar": {"Sync": 1},
    "contact": {"Sync": 1},
    "search": {"Search": 1},
}
_GAL_SEARCHES = 3.0  # mean Search requests per GAL look-up (2 to 4 prefixes)


def summary(scenario, sample=2000):
    """The plan's totals: tasks per hour per type (whole run and peak hour), requests/s per command,
    messages/s, connections held.  Means over the profile mix (exact means, not a draw)."""
    workload = scenario.workload
    if workload is None:
        return None
    planner = Planner(scenario)
    curve = planner.curve
    total_w = sum(workload.profiles.values())
    users = scenario.auth.users
    devices = scenario.population.devices
    mail = scenario.mail
    per_day = dict.fromkeys(DEVICE_TASKS, 0.0)  # per user, mixed
    requests_day = {}
    gal = 0.0
    moves = 0.0
    for name, profile in workload.definitions.items():
        share = workload.profiles[name] / total_w
        means = daily_means(profile)
        for kind, n in means.items():
            per_day[kind] += share * n
            for command, k in _RECIPES[kind].items():
                requests_day[command] = requests_day.get(command, 0.0) + share * n * k
        gal += share * means["send"] * profile.gal_lookups_per_message * _GAL_SEARCHES
        moves += share * means["process"] * profile.move_share
    requests_day["Search"] = requests_day.get("Search", 0.0) + gal
    requests_day["MoveItems"] = requests_day.get("MoveItems", 0.0) + moves
    external = external_per_day(workload, mail)
    received = sum(workload.profiles[n] / total_w * p.received_per_day for n, p in workload.definitions.items())
    external_mean = sum(workload.profiles[n] / total_w * external[n] for n in workload.definitions)
    sent = sum(workload.profiles[n] / total_w * p.sent_per_day for n, p in workload.definitions.items())
    # every message received ends the held Ping of each of its user's devices: a Sync and a new Ping
    per_user_devices = devices / users if users else 1.0
    per_user_devices = min(per_user_devices, scenario.population.devices_per_user)
    requests_day["Sync"] = requests_day.get("Sync", 0.0) + received * per_user_devices
    requests_day["Ping"] = requests_day.get("Ping", 0.0) + received * per_user_devices
    active_users = min(users, math.ceil(devices / scenario.population.devices_per_user))

    w0, w1 = workload.replay_from, workload.replay_from + workload.replayed
    share_replayed = curve.mass(w1) - curve.mass(w0)
    run_seconds = scenario.duration
    # the run's mean: the replayed share of the day's tasks over the run
    scale = share_replayed * active_users / run_seconds if run_seconds > 0 else 0.0
    # the peak: the highest hour of the replayed part of the day
    peak_rate = max((curve.rate(t) for t in _probe_points(curve, w0, w1)), default=1.0)
    mean_rate = share_replayed * curve.day_length / workload.replayed if workload.replayed else 1.0
    peak_scale = scale * peak_rate / mean_rate if mean_rate else scale
    heartbeat = scenario.load.heartbeat
    if scenario.target.embedded:
        heartbeat = min(max(heartbeat, scenario.target.ping_min), scenario.target.ping_max)
    pings = devices / heartbeat if scenario.load.mode == "ping" and heartbeat > 0 else 0.0
    hour = 3600.0
    day_per_run_hour = workload.replayed / run_seconds if run_seconds > 0 else 0.0
    return {
        "profiles": dict(workload.profiles), "clients": dict(workload.clients), "curve": workload.curve,
        "day_length": workload.day_length, "replay_from": w0, "replayed": workload.replayed,
        "stress": workload.stress, "compression": round(day_per_run_hour, 3),
        "tasks_per_user_per_day": {k: round(v, 3) for k, v in per_day.items()},
        "tasks_per_hour": {k: round(v * scale * hour, 1) for k, v in per_day.items()},
        "tasks_per_hour_peak": {k: round(v * peak_scale * hour, 1) for k, v in per_day.items()},
        "tasks_planned": {k: round(v * share_replayed * active_users) for k, v in per_day.items()},
        "requests_per_s": dict(sorted((c, round(v * scale + (pings if c == "Ping" else 0.0), 3))
                                      for c, v in requests_day.items())),
        "requests_per_s_peak": dict(sorted((c, round(v * peak_scale + (pings if c == "Ping" else 0.0), 3))
                                           for c, v in requests_day.items())),
        "messages_per_s": {"sent": round(sent * scale, 3), "received": round(received * scale, 3),
                           "external": round(external_mean * scale, 3)},
        "messages_per_s_peak": {"sent": round(sent * peak_scale, 3), "received": round(received * peak_scale, 3)},
        "external_per_user_per_day": {k: round(v, 2) for k, v in external.items()},
        "external_by": "the embedded target" if scenario.target.embedded else "easload populate (a real server)",
        "connections_held": devices if scenario.load.mode == "ping" else 0,
        "backlog_abort_at": round(workload.backlog_limit * active_users),
        # per user per simulated day, mixed over the profiles: what :func:`timeline_rate` spreads over the run
        "requests_per_user_per_day": {c: round(v, 3) for c, v in sorted(requests_day.items())},
        "active_users": active_users,
    }


def timeline_rate(scenario, info):
    """``rate(t0, t1)``: (requests/s, tasks/s) the workload's tasks add over run seconds [t0, t1) when
    every device of the plan is up, following the day's curve (the replayed part of the day mapped onto
    the run by :class:`Clock`); ``info``: :func:`summary`'s.  Stress: every task is due at the start, so
    the whole plan falls into the slice that holds second 0 (as fast as the server answers)."""
    workload = scenario.workload
    curve = Curve(workload)
    clock = Clock(workload, scenario.duration)
    users = info["active_users"]
    requests = sum(info["requests_per_user_per_day"].values())
    tasks = sum(info["tasks_per_user_per_day"].values())
    w0, w1 = workload.replay_from, workload.replay_from + workload.replayed

    def rate(t0, t1):
        span = max(t1 - t0, 1e-9)
        if workload.stress:
            share = curve.mass(w1) - curve.mass(w0) if t0 <= 0 < t1 else 0.0
        else:
            d0, d1 = (min(max(clock.day_time(t), w0), w1) for t in (t0, t1))
            share = curve.mass(d1) - curve.mass(d0)
        return requests * share * users / span, tasks * share * users / span

    return rate


def _probe_points(curve, w0, w1):
    points = [t for t in curve.edges if w0 <= t < w1] + [w0]
    return [min(max(t + 1e-6, w0), w1 - 1e-6) for t in points]


def text(info):
    """The plan's workload lines for ``easload run --dry-run`` (loadgen/run/plan.py)."""
    if not info:
        return []
    out = ["", "Workload: profiles %s; clients %s; a %g h day (%s curve), %s" % (
        ", ".join("%s %g" % kv for kv in info["profiles"].items()),
        ", ".join("%s %g" % kv for kv in info["clients"].items()), info["day_length"] / 3600.0, info["curve"],
        "stress: every task as fast as the devices take it" if info["stress"] else
        "%g h of it from %g h replayed, %gx real time" % (info["replayed"] / 3600.0, info["replay_from"] / 3600.0,
                                                         info["compression"]))]
    rows = [(k, "%g" % info["tasks_per_user_per_day"][k], "%d" % info["tasks_planned"][k],
             "%.0f" % info["tasks_per_hour"][k], "%.0f" % info["tasks_per_hour_peak"][k]) for k in DEVICE_TASKS]
    out.extend(_table(("task", "per user per day", "planned", "per hour", "peak hour"), rows))
    rows = [(c, "%.2f" % v, "%.2f" % info["requests_per_s_peak"][c]) for c, v in info["requests_per_s"].items()]
    out.append("")
    out.extend(_table(("command", "requests/s", "peak"), rows))
    m, mp = info["messages_per_s"], info["messages_per_s_peak"]
    out.append("  messages/s: %.2f sent, %.2f received (%.2f from outside, by %s); peak %.2f sent, %.2f received"
               % (m["sent"], m["received"], m["external"], info["external_by"], mp["sent"], mp["received"]))
    out.append("  connections held: %d (one held Ping per device); the run stops when more than %d tasks are "
               "queued" % (info["connections_held"], info["backlog_abort_at"]))
    return out


def _table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  " + "  ".join("-" * w for w in widths)]
    for row in rows:
        lines.append("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return lines
