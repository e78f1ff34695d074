"""How a planned task ends (loadgen/results/tasks.py): achieved, failed, skipped (a meeting answer with no
request waiting) or unstarted (never started: its device never enrolled, or the run ended first).  The
plan's meeting requests are delivered by the embedded target before their tasks (loadgen/run/day.py
meeting_times; loadgen/exchange/state.py TargetState.deliver_meeting), so that a meeting task usually finds one; the
end-of-run count of the tasks never started (day.count_unstarted) keeps tasks.achieved_ratio honest when devices fail to
come up."""

import asyncio
from types import SimpleNamespace

import pytest

from loadgen import scenario as sc
from loadgen.cli import start
from loadgen.exchange import store as st
from loadgen.exchange.launch import embedded_state
from loadgen.exchange.state import TargetState
from loadgen.results import thresholds
from loadgen.results.stats import Stats
from loadgen.results.tasks import TASK_TYPES
from loadgen.results.text import summary_text
from loadgen.run import day

_CODE = {name: i for i, name in enumerate(TASK_TYPES)}


def scenario(users=4, duration=3, workload="", population="", target="", extra=""):
    return sc.parse(f"""
name = "outcomes"
duration = {duration}
seed = 9
[target]
ping_min = 5
{target}
[auth]
users = {users}
[population]
devices = {users}
devices_per_user = 1
{population}
[load]
ramp_up = 0.5
mode = "ping"
heartbeat = 30
timeout = 5
graceful_stop = 2
[workload]
clients = {{ ios = 1 }}
{workload}
{extra}
""", "outcomes.toml")


# -- unstarted


def test_count_unstarted_takes_the_rest_of_each_plan_and_the_plans_never_taken():
    planner = day.Planner(scenario(users=3))
    stats = Stats()
    taken = planner.device_plan(0)
    taken.next = 5  # five tasks started (counted planned when the device took its plan)
    stats.tasks_planned("send", 0)
    devices = [SimpleNamespace(index=0, task_plan=taken), SimpleNamespace(index=1, task_plan=None),
               SimpleNamespace(index=2)]  # 2: the slot was never set (the device never came to its mail)
    day.count_unstarted(devices, stats, planner)
    never = [planner.device_plan(1), planner.device_plan(2)]
    planned = {k: v for (k, r), v in stats.task_counts.items() if r == "planned" and v}
    unstarted = {k: v for (k, r), v in stats.task_counts.items() if r == "unstarted"}
    assert sum(planned.values()) == len(never[0]) + len(never[1])  # only the plans never taken, once
    assert sum(unstarted.values()) == len(taken) - 5 + len(never[0]) + len(never[1])
    assert unstarted.get("send", 0) == sum(1 for p in (never + [taken]) for i, c in enumerate(p.kinds)
                                           if c == _CODE["send"] and (p is not taken or i >= 5))
    day.count_unstarted(devices, Stats(), None)  # no [workload]: nothing


def test_devices_that_never_enrol_count_their_tasks_planned_and_unstarted():
    # non-provisionable devices on a target that requires provisioning: refused, retried hourly
    s = scenario(users=4, duration=3, population="profiles = { non_provisionable = 1 }")
    result = asyncio.run(start.run(s, progress=False))
    stats = result.stats
    assert not any(d.enrolled for d in result.devices)
    planner = day.Planner(s)
    expected = sum(len(planner.device_plan(i)) for i in range(4))
    assert expected > 0
    tasks = stats.tasks_dict()
    device_rows = {k: v for k, v in tasks["by_type"].items() if k != "receive"}
    assert sum(r["planned"] for r in device_rows.values()) == expected
    assert sum(r["unstarted"] for r in device_rows.values()) == expected
    assert sum(r["achieved"] for r in device_rows.values()) == 0
    assert tasks["total"]["achieved_ratio"] < 0.5  # at most the target's own deliveries
    verdicts = thresholds.evaluate(stats, [thresholds.parse("tasks.achieved_ratio", ">= 0.99"),
                                           thresholds.parse("tasks.unstarted", "< 1")])
    assert [ok for _t, _v, ok in verdicts] == [False, False]
    assert "unstarted" in summary_text(stats, "outcomes", "embedded", 4)


# -- meeting requests for the plan's meeting tasks


def test_meeting_requests_are_planned_before_each_meeting_task():
    s = scenario(users=30, duration=60, workload="profiles = { heavy = 1 }")
    planner = day.Planner(s)
    times = list(planner.meeting_times(range(30)))
    assert times == sorted(times)
    for user in range(30):
        tasks = [planner.clock.dispatch_time(t) for t, k in zip(*(lambda p: (p.times, p.types))(
            planner.user_plan(user))) if k == "meeting"]
        requests = [t for t, u in times if u == user]
        assert len(requests) == len(tasks)
        before = 0.0
        for request, task in zip(requests, tasks):
            assert before <= request <= task  # half way from the previous meeting task
            before = task
    assert sum(1 for _ in times) > 30


def test_the_meeting_deliverer_puts_an_answerable_request_in_the_inbox():
    state = TargetState(users=2, history_days=2, daily_messages=30)
    deliver = state.deliver_meeting
    box = state.store.mailbox("user1")
    before = box.folder(st.INBOX).next
    deliver("user1")
    deliver("user1")
    first, second = box.item(st.INBOX, before), box.item(st.INBOX, before + 1)
    assert first.message_class == second.message_class == "IPM.Schedule.Meeting.Request"
    assert first.meeting != second.meeting  # meetings of the calendar in turn
    assert state.store.counters["delivered"] == 2
    with pytest.raises(KeyError):
        deliver("nobody")
    with pytest.raises(LookupError):  # a mailbox without history has no meeting to invite to again
        TargetState(users=1, history_days=0).deliver_meeting("user0")


_MEETINGS = """
[workload.profile.meetings]
base = "light"
received_per_day = 0
sent_per_day = 0
calendar_edits_per_day = 0
contact_edits_per_day = 0
mailbox_searches_per_day = 0
meeting_requests_per_day = 6
meeting_response = { accept = 0.5, tentative = 0.25, decline = 0.25 }
"""


def test_on_the_embedded_target_meeting_tasks_find_their_requests():
    s = scenario(users=20, duration=8, workload='profiles = { meetings = 1 }\nday_length = "8h"', extra=_MEETINGS)
    state = embedded_state(s)
    result = asyncio.run(start.run(s, target_state=state, progress=False))
    by = result.stats.tasks_dict()["by_type"]
    meeting = by["meeting"]
    assert meeting["planned"] >= 40
    assert meeting["failed"] == 0
    # nearly every task found a request (the last ones may be cut by the run's end: unstarted)
    assert meeting["skipped"] <= 0.15 * meeting["planned"], meeting
    assert meeting["achieved"] >= 0.7 * meeting["planned"], meeting
    assert state.store.counters["meeting_responses"] == meeting["achieved"]
    assert meeting["planned"] == meeting["achieved"] + meeting["skipped"] + meeting["unstarted"] + \
        sum(1 for d in result.devices if d.in_flight == "MeetingResponse")


def test_on_a_multi_process_target_meeting_requests_go_to_the_user_s_process():
    """[target] processes = 2: the users' stores are in other processes; the run's meeting requests go
    through the cluster to the process that owns each user (admin /admin/mail {"meeting": true}), so the
    meeting tasks find them there as they do on a target in the run's own process."""
    s = scenario(users=12, duration=8, workload='profiles = { meetings = 1 }\nday_length = "8h"', extra=_MEETINGS,
                 target="processes = 2")
    result = asyncio.run(start.run(s, progress=False))
    by = result.stats.tasks_dict()["by_type"]
    meeting, receive = by["meeting"], by["receive"]
    assert meeting["planned"] >= 20 and meeting["failed"] == 0
    assert meeting["skipped"] <= 0.15 * meeting["planned"], meeting
    assert meeting["achieved"] >= 0.7 * meeting["planned"], meeting
    assert receive["failed"] == 0 and receive["achieved"] >= meeting["achieved"], receive  # delivered by the cluster


def test_a_meeting_task_with_no_request_waiting_is_skipped_and_sends_nothing(monkeypatch):
    monkeypatch.setattr(TargetState, "deliver_meeting", lambda self, user: None)  # none delivered: only the history's
    s = scenario(users=10, duration=4, workload='profiles = { meetings = 1 }\nday_length = "8h"', extra=_MEETINGS)
    state = embedded_state(s)
    result = asyncio.run(start.run(s, target_state=state, progress=False))
    stats = result.stats
    meeting = stats.tasks_dict()["by_type"]["meeting"]
    assert meeting["skipped"] > 0  # the few requests of the generated history were soon answered
    sent = sum(n for (c, _o, _s), n in stats.by_key.items() if c == "MeetingResponse")
    assert sent == meeting["achieved"] + meeting["failed"] == state.store.counters["meeting_responses"]
    assert meeting["achieved_ratio"] == round(meeting["achieved"] / meeting["planned"], 6) < 1
    assert "latency" not in meeting or meeting["latency"]["count"] == meeting["achieved"] + meeting["failed"]
    verdicts = thresholds.evaluate(stats, [thresholds.parse("tasks.meeting.skipped", "< 1")])
    assert verdicts[0][1] == meeting["skipped"] and not verdicts[0][2]
