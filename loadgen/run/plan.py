"""``easload run --dry-run``: what a run would do, computed without sending anything.

The plan comes from the validated scenario and the population builder (the same
deterministic devices, versions and profiles as the run, shard for shard) and the
engine's schedule (closed ramp, open-model arrivals, closed-model stages):

* devices, users, versions and profiles with their counts;
* the requests one device makes to enrol (Autodiscover when asked, Provision
  twice -- once with no policy, never for a non-provisionable device --,
  Settings for 12.1/14.0, FolderSync, the Inbox's initial Sync and first fetch)
  and, once enrolled, a second (one Ping per heartbeat -- on the embedded target
  clamped to its bounds, as Status 5 makes the device do -- or one Sync /
  FolderSync per think time, plus the Syncs new mail causes);
* the expected request rate over time and per phase (enrolment burst, steady
  state; per stage in the open model): arrivals x requests per enrolment +
  enrolled devices x steady rate, plus -- with [workload] -- the tasks' requests
  following the day's curve (loadgen/run/day.py timeline_rate) in proportion to
  the devices up, plus a resync storm's requests in the slice of its time.  An
  estimate that assumes every device enrols and the server answers at once: a
  slow or refusing server changes it;
* the events with their times and what they cost (a resync: the storm's
  FolderSync, Syncs and Pings; a network drop: the reconnects, TLS handshakes
  over https, and the Pings sent again), the target (credentials never shown; for a list of
  URLs -- a multi-process target started on its own -- each URL with the devices it
  gets) and the request-rate cap (ratelimit.py), with a warning when the expected
  peak is above it;
* with [workload] (loadgen/run/day.py summary): tasks per hour per type, requests/s
  per command, messages/s and connections held, for the whole run and its peak hour.
"""

from collections import Counter

from loadgen.wire import ratelimit

_ROWS = 12  # points of the "over time" table


def _safe_url(url):
    from loadgen.scenario import shown_url

    return shown_url(url)


def enrolment_requests(scenario, device):
    """Requests one device sends to enrol, by command."""
    out = Counter()
    if scenario.load.autodiscover is not None:
        out["Autodiscover"] += 1
    if device.profile.caps.provisionable:
        out["Provision"] += 1 if (scenario.target.embedded and scenario.target.no_policy) else 2
    if device.version.device_info_via_settings:
        out["Settings"] += 1
    out["FolderSync"] += 1
    if scenario.load.mode != "foldersync":
        out["Sync"] += 2  # initial (SyncKey 0) and the first fetch
    return out


def steady_rate(scenario):
    """(requests/s of one enrolled device, what it does)."""
    load, target = scenario.load, scenario.target
    if load.mode == "ping":
        heartbeat = load.heartbeat
        note = ""
        if target.embedded:
            clamped = min(max(heartbeat, target.ping_min), target.ping_max)
            if clamped != heartbeat:
                note = " (the embedded target's bounds turn %g s into %g s)" % (heartbeat, clamped)
            heartbeat = clamped
        rate = 1.0 / heartbeat if heartbeat > 0 else 0.0
        mail = target.mail_per_user_per_hour if target.embedded else 0.0
        what = "one Ping every %g s%s" % (heartbeat, note)
        if mail > 0:
            rate += 2 * mail / 3600.0  # each new mail ends the Ping early: a Sync and a new Ping
            what += ", plus a Sync and a Ping per new mail (%g per user per hour)" % mail
        return rate, what
    think = load.think_time
    command = "FolderSync" if load.mode == "foldersync" else "Sync"
    return (1.0 / think if think > 0 else 0.0), "one %s every %g s on average" % (command, think)


def _arrivals(scenario, indexes):
    """(times at which the plan's devices first start, active(t)) for the scenario's load model."""
    from loadgen.run import engine

    load = scenario.load
    if load.model == "closed" and load.stages and hasattr(engine, "active_target"):
        total = scenario.population.devices
        starts = []
        for i in indexes:
            when = engine.first_activation(load.stages, i + 1) if hasattr(engine, "first_activation") else None
            starts.append(when)
        member = set(indexes)

        def active(t):
            n = min(total, engine.active_target(load.stages, t))
            return sum(1 for i in range(n) if i in member) if len(member) != total else n

        return starts, active
    offsets = engine.schedule(scenario)
    starts = [offsets[i] for i in indexes]
    arrived = sorted(s for s in starts if s is not None)

    def active(t):
        import bisect

        return bisect.bisect_right(arrived, t)

    return starts, active


def drawn_versions(scenario, shard=(0, 1), devices=None):
    """{EAS version: devices} the population of ``shard`` drew (summary.json's ``versions``; the
    scenario's weights are ``version_weights``): ``devices`` (a run's) counted, or -- none given, or a
    worker run's placeholders -- loadgen/run/engine.py build_population's draw, counted without building
    the devices."""
    if not devices or any(d is None for d in devices):
        from loadgen.run.engine import build_population

        devices, _ = build_population(scenario, "http://127.0.0.1/Microsoft-Server-ActiveSync", *shard, planned=True)
    return dict(sorted(Counter(d.version.text for d in devices).items()))


def build(scenario, shard=(0, 1), workers=1):
    """The plan as a dict (see :func:`text`)."""
    from loadgen.run.engine import build_population

    urls = scenario.target.urls
    # several URLs: the population builder sends the device of user n to URL n % len (as in the run)
    devices, _ = build_population(scenario, urls if len(urls) > 1 else "http://127.0.0.1/Microsoft-Server-ActiveSync",
                                  *shard, planned=True)
    versions = Counter(d.version.text for d in devices)
    profiles = Counter(d.profile.name for d in devices)
    users = len({d.user for d in devices})
    per_device = [enrolment_requests(scenario, d) for d in devices]
    enrol_total = sum((c for c in per_device), Counter())
    enrol_mean = sum(enrol_total.values()) / len(devices) if devices else 0.0
    steady, steady_what = steady_rate(scenario)
    starts, active = _arrivals(scenario, [d.index for d in devices])
    duration = scenario.duration
    start_times = sorted(s for s in starts if s is not None and s < duration)

    def arrivals_between(a, b):
        """Devices starting in [a, b) (the last slice ends at the duration: nobody starts then)."""
        import bisect

        return bisect.bisect_left(start_times, b) - bisect.bisect_left(start_times, a)

    workload = _workload(scenario)
    tasks_rate = None
    if workload:  # [workload]: the tasks' requests follow the day's curve, in proportion to the devices up
        from loadgen.run import day

        tasks_rate = day.timeline_rate(scenario, workload)
    events = _events(scenario, devices)

    def rate_at(t0, t1, with_tasks=True):
        """Average expected requests/s over [t0, t1] (and the tasks/s of the workload)."""
        span = max(t1 - t0, 1e-9)
        arrivals = arrivals_between(t0, t1 if t1 < duration else t1 + 1)
        enrolled = (active(t0) + active(t1)) / 2.0  # mean over the slice (linear between its ends)
        rate = arrivals * enrol_mean / span + enrolled * steady
        tasks = 0.0
        if tasks_rate is not None and with_tasks and devices:
            task_requests, tasks = tasks_rate(t0, t1)
            up = enrolled / len(devices)
            rate += task_requests * up
            tasks *= up
        # an incident's requests (resync: the storm) in the slice that holds it
        rate += sum(e["requests"] for e in events if t0 <= e["at"] < t1 or (t1 >= duration and e["at"] == t1)) / span
        return rate, arrivals / span, tasks

    # over time: _ROWS equal slices of the run
    step = duration / _ROWS if duration > 0 else 0
    timeline = []
    for k in range(_ROWS if step > 0 else 0):
        t0, t1 = k * step, (k + 1) * step
        rate, arrivals, tasks = rate_at(t0, t1)
        row = {"from": round(t0, 3), "to": round(t1, 3), "active_devices": active(t1),
               "arrivals_per_s": round(arrivals, 3), "requests_per_s": round(rate, 2)}
        if tasks_rate is not None:
            row["tasks_per_s"] = round(tasks, 3)
        timeline.append(row)

    # phases
    load = scenario.load
    phases = []
    if load.model == "open":
        t = 0.0
        windows = []
        for stage_duration, target in load.stages:
            windows.append((t, min(duration, t + stage_duration), "stage to %g arrivals/s" % target))
            t += stage_duration
            if t >= duration:
                break
        if t < duration:
            windows.append((t, duration, "hold %g arrivals/s" % (load.stages[-1][1] if load.stages
                                                                    else load.arrival_rate)))
    elif load.stages:
        t = 0.0
        windows = []
        for stage_duration, target in load.stages:
            windows.append((t, min(duration, t + stage_duration), "stage to %g active devices" % target))
            t += stage_duration
            if t >= duration:
                break
        if t < duration:
            windows.append((t, duration, "steady state"))
    else:
        ramp = min(load.ramp_up, duration)
        windows = []
        if ramp > 0:
            windows.append((0.0, ramp, "enrolment burst"))
        windows.append((ramp, duration, "steady state" if ramp > 0 else "all devices at once, then steady"))
    for t0, t1, label in windows:
        if t1 <= t0 and not (t0 == 0 and t1 == 0):
            continue
        rate, arrivals, _tasks = rate_at(t0, t1)
        enrolled_end = active(t1)
        phases.append({"phase": label, "from": round(t0, 3), "to": round(t1, 3),
                       "arrivals": arrivals_between(t0, t1 if t1 < duration else t1 + 1),
                       "arrivals_per_s": round(arrivals, 3), "active_devices_at_end": enrolled_end,
                       "requests_per_s": round(rate, 2),
                       "steady_requests_per_s_at_end": round(enrolled_end * steady, 2)})
    burst = None
    if load.model == "closed" and not load.stages and min(load.ramp_up, duration) <= 0:
        burst = int(sum(enrol_total.values()))  # all at t = 0: as fast as the server answers
    peak = max([p["requests_per_s"] for p in timeline] + [0.0])

    cap, cap_why = ratelimit.resolve(scenario)  # several URLs: remote if one is
    parts = max(1, workers) * shard[1]
    warnings = []
    cap_this = cap / shard[1] if cap > 0 else 0.0  # this shard's share (its workers split it again)
    throttles = cap_this > 0 and peak > cap_this
    if cap_this > 0 and not throttles and burst and burst > cap_this:
        warnings.append("the enrolment burst (%d requests at once) is above the request-rate cap (%g/s): the cap "
                        "spreads it over about %.0f s" % (burst, cap_this, burst / cap_this))
    if cap <= 0 and "not on this machine" in cap_why:
        warnings.append("no request-rate cap on a target that is not on this machine")
    if scenario.target.embedded:
        target = "embedded target on %s (EAS at %s)" % (scenario.target.listen, scenario.target.path)
    elif len(urls) > 1:
        target = "%d URLs, the device of user n to URL n %% %d" % (len(urls), len(urls))
    else:
        target = _safe_url(scenario.target.url)
    target_urls = []  # several URLs: each with the devices and users the run sends to it
    if len(urls) > 1:
        per_url = Counter(d.base_url for d in devices)
        users_per_url = Counter(url for url, _user in {(d.base_url, d.user) for d in devices})
        target_urls = [{"url": _safe_url(u), "devices": per_url[u], "users": users_per_url[u]} for u in urls]
    return {
        "scenario": scenario.name, "path": scenario.path, "seed": scenario.seed, "duration": duration,
        "target": target, "embedded": scenario.target.embedded, "target_urls": target_urls,
        "shard": list(shard), "workers": workers,
        "devices": len(devices), "devices_total": scenario.population.devices, "users": users,
        "devices_per_user": scenario.population.devices_per_user,
        "versions": dict(sorted(versions.items())), "profiles": dict(sorted(profiles.items())),
        "load": {"model": load.model, "mode": load.mode, "ramp_up": load.ramp_up, "arrival_rate": load.arrival_rate,
                 "stages": [list(s) for s in load.stages], "heartbeat": load.heartbeat, "think_time": load.think_time},
        "autodiscover": scenario.load.autodiscover[0] if scenario.load.autodiscover else None,
        "enrolment_requests": dict(sorted(enrol_total.items())), "enrolment_requests_per_device": round(enrol_mean, 3),
        "steady_requests_per_device_per_s": round(steady, 6), "steady_what": steady_what,
        "steady_requests_per_s": round(len(devices) * steady, 2),
        "phases": phases, "timeline": timeline, "burst_requests": burst, "peak_requests_per_s": round(peak, 2),
        "events": events,
        "rate_cap": {"requests_per_s": cap, "why": cap_why, "processes": parts,
                     "per_process": round(cap / parts, 3) if cap > 0 else 0.0,
                     "shards": shard[1], "per_shard": round(cap_this, 3), "throttles": throttles,
                     "needed": _round_up(peak * shard[1]) if throttles else 0},
        "warnings": warnings + ([throttling(cap, cap_why, shard[1], peak)] if throttles else []),
        "workload": workload,
    }


def throttling(cap, why, shards, peak):
    """The one line that says the request-rate cap is below the plan's peak: ``--dry-run`` prints it as a
    warning, ``easload run`` refuses to start with it unless ``--yes`` (loadgen/cli/app.py)."""
    share = ("the request-rate cap of %g/s per shard (%g/s in total, %s, over %d shards)" % (cap / shards, cap, why,
                                                                                          shards)
             if shards > 1 else "the request-rate cap of %g/s (%s)" % (cap, why))
    return ("the plan's peak, about %.0f requests/s%s, is above %s: the cap would throttle the run (enrolments "
            "and requests wait for it); set [load] max_request_rate = %d or more, or pass --yes to run it throttled"
            % (peak, " per shard" if shards > 1 else "", share, _round_up(peak * shards)))


def _round_up(rate):
    """A rate rounded up to two significant digits (1318.6 -> 1400, 52.7 -> 53): the cap to suggest."""
    import math

    if rate <= 0:
        return 0
    step = 10 ** max(0, int(math.floor(math.log10(rate))) - 1)
    return int(math.ceil(rate / step - 1e-9) * step)


def _events(scenario, devices):
    """The scenario's events with what each is expected to cost: ``requests`` (added to the timeline at
    its time), ``reconnects`` and a ``note``."""
    out = []
    ping = scenario.load.mode == "ping"
    mail = scenario.mail.active or getattr(scenario, "workload", None) is not None
    tls = bool(scenario.target.tls or scenario.target.tls_cert) if scenario.target.embedded else any(
        u.lower().startswith("https:") for u in scenario.target.urls)
    for ev in scenario.events:
        args = dict(ev.args)
        if ev.action == "command":  # environment assignments masked, the program, not its arguments
            args = {"run": ev.display()}
        note, requests, reconnects = "", 0, 0
        share = float(args.get("fraction", 0.0) or 0.0)
        if ev.action == "change_policy":
            note = "every provisioned device provisions again: about %d requests" % (2 * len(devices))
        elif ev.action == "wipe":
            note = "about %d devices wiped" % round(share * len(devices))
        elif ev.action == "resync":
            # each chosen device starts again from SyncKey 0 (MS-ASCMD 2.2.1.5, 2.2.1.21): FolderSync 0, a
            # Sync 0 of its folders (one request with [mail]: the pushed folders together, else the Inbox)
            # and their first download, then its Ping again
            n = round(share * len(devices))
            per = 1 + 2 + (1 if ping else 0)
            requests = n * per
            note = "resync storm: %d devices lose their sync state, about %d requests at once (FolderSync 0, " \
                   "Sync 0 and the first download of %s%s each)" % (n, requests, "the pushed folders" if mail
                                                                   else "the Inbox", ", a new Ping" if ping else "")
        elif ev.action == "network_drop":
            n = round(share * len(devices)) if ping else 0
            reconnects = n
            requests = n  # the held Ping sent again on the new connection
            note = "%d held connections cut: %d reconnects (TCP%s handshakes) and their Pings sent again" % (
                n, n, " and TLS" if tls else "")
        out.append({"at": ev.at, "action": ev.action, "args": args, "note": note, "requests": requests,
                    "reconnects": reconnects})
    return out


def _workload(scenario):
    if getattr(scenario, "workload", None) is None:
        return None
    from loadgen.run import day

    return day.summary(scenario)


def text(plan):
    """The plan as the lines ``easload run --dry-run`` prints."""
    out = []
    add = out.append
    add("easload plan (dry run: nothing is sent): scenario %s (%s), seed %d" % (plan["scenario"], plan["path"],
                                                                              plan["seed"]))
    add("  target      %s" % plan["target"])
    for k, u in enumerate(plan.get("target_urls", ())):
        add("    URL %d  %s: %d devices, %d users" % (k, u["url"], u["devices"], u["users"]))
    shard = plan["shard"]
    add("  devices     %d%s on %d users (%d per user)%s" % (
        plan["devices"], "" if shard[1] == 1 else " of %d (shard %d/%d)" % (plan["devices_total"], *shard),
        plan["users"], plan["devices_per_user"], "" if plan["workers"] == 1 else ", %d worker processes"
        % plan["workers"]))
    add("  versions    %s" % _counts(plan["versions"], plan["devices"]))
    add("  profiles    %s" % _counts(plan["profiles"], plan["devices"]))
    load = plan["load"]
    if load["model"] == "open":
        model = "open: %g arrivals/s at first%s" % (load["arrival_rate"], "".join(
            ", then to %g/s over %gs" % (target, d) for d, target in load["stages"]))
    elif load["stages"]:
        model = "closed, stages:%s" % "".join(" to %g devices over %gs;" % (t, d) for d, t in load["stages"])
    else:
        model = "closed: %d devices started over %g s" % (plan["devices"], load["ramp_up"])
    add("  load model  %s; %g s; mode %s (%s)" % (model, plan["duration"], load["mode"], plan["steady_what"]))
    add("  autodiscover %s" % ("%s, before each enrolment" % plan["autodiscover"] if plan["autodiscover"] else "off"))
    cap = plan["rate_cap"]
    if cap["requests_per_s"] > 0:
        add("  rate cap    %g requests/s in total (%s)%s" % (cap["requests_per_s"], cap["why"], "" if cap["processes"] == 1
                                                          else ", %g/s in each of %d processes"
                                                          % (cap["per_process"], cap["processes"])))
        if "per_shard" in cap:  # the comparison a run makes before it starts (loadgen/cli/app.py)
            per = " per shard" if cap["shards"] > 1 else ""
            add("              the plan's peak about %.0f requests/s%s: %s the cap's %g/s%s" % (
                plan["peak_requests_per_s"], per, "ABOVE" if cap["throttles"] else "within", cap["per_shard"], per))
    else:
        add("  rate cap    off (%s)" % cap["why"])
    add("")
    add("Requests per enrolment: %.2f per device (%s); then %.4g requests/s per device, %.1f/s for all"
        % (plan["enrolment_requests_per_device"],
           ", ".join("%s %d" % kv for kv in plan["enrolment_requests"].items()),
           plan["steady_requests_per_device_per_s"], plan["steady_requests_per_s"]))
    add("")
    add("Expected request rate by phase (assumes every device enrols and the server answers at once)")
    rows = [(p["phase"], "%gs" % p["from"], "%gs" % p["to"], str(p["arrivals"]), "%.1f" % p["arrivals_per_s"],
             str(p["active_devices_at_end"]), "%.1f" % p["requests_per_s"]) for p in plan["phases"]]
    out.extend(_table(("phase", "from", "to", "enrolments", "enrol/s", "devices at end", "requests/s"), rows))
    if plan["burst_requests"]:
        add("  (ramp_up 0: %d enrolment requests at once, as fast as the server answers)" % plan["burst_requests"])
    add("")
    tasks = any("tasks_per_s" in p for p in plan["timeline"])
    add("Expected request rate over time" + (" (the workload's tasks follow the day's curve; events at their "
                                             "time)" if tasks else ""))
    rows = [("%g-%gs" % (p["from"], p["to"]), str(p["active_devices"]), "%.1f" % p["arrivals_per_s"],
             *(("%.2f" % p["tasks_per_s"],) if tasks else ()), "%.1f" % p["requests_per_s"]) for p in plan["timeline"]]
    out.extend(_table(("time", "devices", "enrol/s", *(("tasks/s",) if tasks else ()), "requests/s"), rows))
    add("  peak about %.0f requests/s" % plan["peak_requests_per_s"])
    add("")
    if plan["events"]:
        add("Events")
        rows = [("%gs" % e["at"], e["action"], ", ".join("%s=%s" % kv for kv in e["args"].items()), e["note"])
                for e in plan["events"]]
        out.extend(_table(("at", "action", "arguments", "expected"), rows))
    else:
        add("Events: none")
    if plan.get("workload"):
        from loadgen.run import day

        out.extend(day.text(plan["workload"]))
    for warning in plan["warnings"]:
        add("")
        add("warning: " + warning)
    return "\n".join(out)


def _counts(counter, total):
    return ", ".join("%s %d (%.0f%%)" % (k, v, 100.0 * v / total if total else 0) for k, v in counter.items())


def _table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  " + "  ".join("-" * w for w in widths)]
    for row in rows:
        lines.append("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return lines
