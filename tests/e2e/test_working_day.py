"""End to end: a working day compressed onto a 30-second run against the embedded target in this
process -- 500 users on the average profile, the first half hour of their 8-hour day replayed 60x.

The devices take their share of the plan and carry out each task at its planned time; the target
delivers the plan's external mail (day.external_delivery).  The test compares what the target saw
(its store's counters) with the plan: every planned submission, client Add and search arrived (the
tolerance: the tasks due in the last seconds of the run, which the run's end may cut, at most 3 %),
every meeting answer the devices counted arrived, the external mail was delivered, and the plan the
devices counted is exactly the sum of their shares.
"""

import asyncio

from loadgen import scenario
from loadgen.cli import start
from loadgen.exchange.launch import embedded_state
from loadgen.run import day

USERS = 500
TEXT = f"""
name = "working-day-e2e"
duration = 30
seed = 20
[target]
ping_min = 5
[auth]
users = {USERS}
[population]
devices = {USERS}
devices_per_user = 1
versions = {{ "14.1" = 6, "16.1" = 3, "14.0" = 1 }}
[load]
ramp_up = 5
mode = "ping"
heartbeat = 60
timeout = 30
graceful_stop = 8
[workload]
profiles = {{ average = 1 }}
clients = {{ ios = 0.4, android = 0.4, outlook-cloud = 0.2 }}
replay_from = "0h"
replay_length = "30m"
"""
TOLERANCE = 0.03


def test_working_day_the_target_sees_the_planned_tasks():
    sc = scenario.parse(TEXT, "working-day-e2e.toml")
    state = embedded_state(sc)

    async def main():  # the engine has the embedded target deliver the plan's external mail
        return await start.run(sc, target_state=state, progress=False)

    result = asyncio.run(main())
    stats = result.stats
    assert result.device_errors == {}
    assert all(d.state == "provisioned" for d in result.devices)
    tasks = stats.tasks_dict()
    by = tasks["by_type"]

    # the plan the devices counted is the sum of their shares, exactly
    shares = {}
    for d in result.devices:
        for code in d.task_plan.kinds:
            name = day.TASK_TYPES[code]
            shares[name] = shares.get(name, 0) + 1
    assert {k: v["planned"] for k, v in by.items() if k != "receive"} == shares
    # ... and matches the profile's means (Poisson: within 4 standard deviations)
    expected = day.summary(sc)["tasks_planned"]
    for kind, mean in expected.items():
        assert abs(shares.get(kind, 0) - mean) <= 4 * mean ** 0.5 + 1, (kind, shares.get(kind), mean)

    def planned(*kinds):
        return sum(by.get(k, {}).get("planned", 0) for k in kinds)

    def achieved(*kinds):
        return sum(by.get(k, {}).get("achieved", 0) for k in kinds)

    counters = state.store.counters
    # a healthy target: nearly every planned task achieved, none failed
    assert tasks["total"]["failed"] == 0
    assert tasks["total"]["achieved"] >= (1 - TOLERANCE) * tasks["total"]["planned"]
    # submissions: a reply or forward with nothing to answer yet goes as a new message
    submitted = counters["submitted_new"] + counters["submitted_reply"] + counters["submitted_forward"]
    assert submitted == achieved("send", "reply", "forward")
    assert submitted >= (1 - TOLERANCE) * planned("send", "reply", "forward")
    assert counters["submitted_reply"] + counters["submitted_forward"] <= achieved("reply", "forward")
    # calendar and contact edits: each a client Add the target stored
    assert counters["client_adds"] == achieved("calendar", "contact")
    assert counters["client_adds"] >= (1 - TOLERANCE) * planned("calendar", "contact")
    # mailbox searches (and the GAL look-ups of new messages, 2 to 4 Search requests each)
    assert counters["searches"] >= achieved("search") + 2 * achieved("send")
    # meeting answers: as many as the devices had requests to answer
    assert counters["meeting_responses"] == stats.mail_events["meeting_accepted"] + \
        stats.mail_events["meeting_tentative"] + stats.mail_events["meeting_declined"]
    assert counters["meeting_responses"] <= achieved("meeting")
    # the external mail: planned, delivered at its times
    assert by["receive"]["planned"] > 0
    assert by["receive"]["achieved"] >= (1 - TOLERANCE) * by["receive"]["planned"]
    assert counters["delivered"] >= by["receive"]["achieved"]
    # the processing of new mail: Syncs with the user's changes
    assert achieved("process") >= (1 - TOLERANCE) * planned("process")
    assert counters["read"] > 0 and counters["deleted"] > 0
