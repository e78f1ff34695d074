"""End to end: the workload's verdict when the target is slow (README "Exit status", the backlog guard of
loadgen/run/engine.py, the task figures of loadgen/results/tasks.py).

One small scenario, three runs against the embedded target of this process: 8 users whose day (an hour
of it, replayed onto 4 s) holds 12 new messages each -- 3 SendMail tasks a second per device, dispatched
open-model at their planned times.  With a normal target every task is done well within the thresholds
(exit 0).  With the target's SendMail made slow by fault injection (a fixed 1 s before the handler,
``[[events]] action = "faults"``, loadgen/exchange/faults.py) a device can take one task a second while
three fall due: tasks start late, queue behind their device, their latency -- counted from the planned
time, the wait included -- breaks the thresholds (exit 1).  With the backlog limit at Exchange Load
Generator's 1.5 x users the queue passes it about two seconds in and the run stops itself (exit 4).

The margins are wide on purpose (a loaded two-core machine): the healthy run's send p99 is tens to a few
hundred milliseconds against a 2 s threshold; the slow one's arrivals are three times what the target
serves, so its queue grows by about two tasks a second per device whatever the machine does.
"""

import json

from loadgen.cli import app
from loadgen.run import engine

USERS = 8
DURATION = 4
LATENCY = 1.0  # seconds the target waits before each SendMail when slow

TEXT = f"""
name = "verdict"
duration = {DURATION}
seed = 7
[target]
ping_min = 1
[auth]
users = {USERS}
[population]
devices = {USERS}
devices_per_user = 1
versions = {{ "14.1" = 1 }}
[load]
ramp_up = 0.3
mode = "ping"
heartbeat = 30
timeout = 10
graceful_stop = 0.5
[workload]
profiles = {{ burst = 1 }}
clients = {{ ios = 1 }}
day_length = 3600
backlog_limit = @BACKLOG@
[workload.profile.burst]
sent_per_day = 12
received_per_day = @RECEIVED@
reply_share = 0
forward_share = 0
meeting_requests_per_day = 0
calendar_edits_per_day = 0
contact_edits_per_day = 0
mailbox_searches_per_day = 0
gal_lookups_per_message = 0
internal_share = 0
attachment_share = 0
html_share = 0
body_bytes = [200, 800]
[thresholds]
"tasks.achieved_ratio" = ">= 0.8"
"tasks.send.p99" = "< 2"
@EVENTS@
"""
SLOW = f"""
[[events]]
at = 0
action = "faults"
settings = {{ latency = {{ dist = "fixed", seconds = {LATENCY} }}, commands = ["SendMail"] }}
"""


def run(tmp_path, monkeypatch, *, slow, backlog=20, received=0, args=()):
    """`easload run` of the scenario (in this process): (exit status, summary.json, the devices)."""
    f = tmp_path / "verdict.toml"
    f.write_text(TEXT.replace("@BACKLOG@", str(backlog)).replace("@EVENTS@", SLOW if slow else "")
                 .replace("@RECEIVED@", str(received)))
    made = []
    build = engine.build_population

    def keep(*args, **kwargs):
        devices, stats = build(*args, **kwargs)
        made.extend(devices)
        return devices, stats

    monkeypatch.setattr(engine, "build_population", keep)
    out = tmp_path / "out"
    code = app.main(["run", str(f), "-q", "--metrics-listen", "", "--out", str(out), *args])
    return code, json.loads((out / "summary.json").read_text()), made


def verdicts(summary):
    return {t["threshold"]: t["passed"] for t in summary["thresholds"]}


def test_a_normal_target_passes(tmp_path, monkeypatch):
    code, summary, _ = run(tmp_path, monkeypatch, slow=False)
    tasks = summary["tasks"]["total"]
    assert code == app.EXIT_OK, (verdicts(summary), tasks)
    assert "aborted" not in summary
    assert tasks["planned"] > 80 and tasks["failed"] == 0
    assert all(verdicts(summary).values())


def wait_lower_bound(devices, service):
    """The largest latency some finished task must have had, from the plans alone: a device takes its
    tasks one after the other, each at the earliest at its planned time and each taking at least
    ``service`` seconds, so task k ends at or after e_k = max(p_k, e_(k-1)) + service; tasks 0 ..
    next - 2 of a device are over (task next - 1 may have been cut by the run's end)."""
    bound = 0.0
    for d in devices:
        plan = d.task_plan
        end = float("-inf")
        for k in range(plan.next - 1):
            planned = plan.times[k]  # run seconds (plan.t0 is the run's start)
            end = max(planned, end) + service
            bound = max(bound, end - planned)
    return bound


def test_a_slow_target_makes_late_tasks_with_their_wait_counted_and_a_failing_verdict(tmp_path, monkeypatch):
    code, summary, devices = run(tmp_path, monkeypatch, slow=True)
    assert code == app.EXIT_FAILED, (verdicts(summary), summary["tasks"]["total"])
    assert "aborted" not in summary  # below the (raised) backlog limit: a verdict, not an abort
    assert verdicts(summary) == {"tasks.achieved_ratio >= 0.8": False, "tasks.send.p99 < 2": False}
    total = summary["tasks"]["total"]
    assert total["late"] > 0 and total["queued_peak"] >= USERS  # more than one waiting per device
    assert total["achieved"] < 0.6 * total["planned"]
    assert len(devices) == USERS
    # no coordinated omission: the latency of a task counts from its planned time, so the longest one
    # holds the wait behind the earlier tasks of its device, not only the target's 1 s
    worst = summary["tasks"]["by_type"]["send"]["latency"]["max_ms"] / 1000.0
    bound = wait_lower_bound(devices, 0.99 * LATENCY)  # a timer may fire a millisecond early
    assert bound > 2 * LATENCY
    assert worst >= 0.99 * bound, (worst, bound)


def test_past_the_backlog_limit_the_slow_run_stops_itself(tmp_path, monkeypatch):
    code, summary, _ = run(tmp_path, monkeypatch, slow=True, backlog=1.5)
    assert code == app.EXIT_ABORTED
    limit = 1.5 * USERS
    assert summary["aborted"].startswith("backlog: ") and summary["aborted"].endswith("> limit %g" % limit)
    assert summary["interrupted"] is True
    assert summary["tasks"]["total"]["queued_peak"] > limit
    assert summary["elapsed_s"] < DURATION + 1  # stopped before its end (its graceful stop 0.5 s)


def test_two_workers_the_backlog_guard_judges_their_queues_together(tmp_path, monkeypatch, capsys):
    """--workers 2: the same slow target; the workers count their queues together (workers.SharedQueue)
    and the guard judges the total against the whole run's limit: the run stops itself, exit 4, with the
    exact peak of the run's queue.  The parent's target delivers the plan's external mail (receive
    tasks), merged with the workers' tasks."""
    code, summary, _ = run(tmp_path, monkeypatch, slow=True, backlog=1.5, received=6, args=("--workers", "2"))
    err = capsys.readouterr().err
    assert code == app.EXIT_ABORTED, err
    limit = 1.5 * USERS
    assert summary["aborted"].startswith("backlog: ") and summary["aborted"].endswith("> limit %g" % limit)
    total = summary["tasks"]["total"]
    assert total["queued_peak"] > limit
    assert "upper bound" not in err  # the peak is the exact one, not the sum of the workers' peaks
    by = summary["tasks"]["by_type"]
    assert by["send"]["planned"] > 80 and by["send"]["achieved"] > 0  # both workers' devices
    assert by["receive"]["planned"] > 0 and by["receive"]["achieved"] > 0  # the parent's deliveries
    assert summary["elapsed_s"] < DURATION + 1
