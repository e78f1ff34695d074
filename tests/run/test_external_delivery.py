"""The plan's external mail (loadgen/run/day.py deliver_external) on a target that is behind: each
delivery is late and counted so, and the loop still runs everything else between two deliveries (a
target in the same loop keeps answering requests and accepting connections while it catches up)."""

import asyncio

from loadgen import scenario
from loadgen.results.stats import Stats
from loadgen.run import day

TEXT = """
name = "ext"
duration = 60
seed = 5
[auth]
users = 50
[population]
devices = 50
devices_per_user = 1
[workload]
profiles = { average = 1 }
"""


def test_a_target_behind_the_plan_delivers_one_message_per_turn_of_the_loop():
    sc = scenario.parse(TEXT, "ext.toml")
    planner = day.Planner(sc)
    due = sum(1 for at, _u in planner.external_times(range(50)) if at < 30)
    long_due = sum(1 for at, _u in planner.external_times(range(50)) if at < 29)  # late by more than 0.1 s
    assert due > 20
    stats = Stats()

    async def main():
        loop = asyncio.get_running_loop()
        turns = []  # the other work of the loop, one entry per turn it got
        delivered = []

        def deliver(name):
            delivered.append((name, len(turns)))

        async def other():
            while True:
                turns.append(None)
                await asyncio.sleep(0)

        side = asyncio.create_task(other())
        await asyncio.sleep(0)
        t0 = loop.time() - 30  # thirty seconds behind: every message of the first half minute is due
        await asyncio.wait_for(day.deliver_external(planner, deliver, "u{}".format, t0, loop.time() + 0.05,
                                                    stats), 30)
        side.cancel()
        return delivered

    delivered = asyncio.run(main())
    assert len(delivered) >= due
    marks = [n for _name, n in delivered[:due]]
    assert all(b > a for a, b in zip(marks, marks[1:]))  # the loop turned between any two deliveries
    counts = stats.task_counts
    assert counts[("receive", "achieved")] == len(delivered) and counts[("receive", "late")] >= long_due


def test_the_tasks_of_devices_that_never_took_their_plan_are_planned_not_forgotten():
    """A device the target never let in (no enrolment, no plan taken): its tasks count as planned at
    the run's end (loadgen/run/day.py count_unstarted), so planned is the plan's and they show as not achieved."""
    from types import SimpleNamespace

    sc = scenario.parse(TEXT, "ext.toml")
    planner = day.Planner(sc)
    took = SimpleNamespace(index=0, task_plan=planner.device_plan(0))
    never = [SimpleNamespace(index=i) for i in (1, 2)]  # no task_plan: as an unset slot of Device
    stats = Stats()
    day.count_unstarted([took] + never, stats, planner)
    expected = {}
    for d in never:
        for code in planner.device_plan(d.index).kinds:
            name = day.TASK_TYPES[code]
            expected[name] = expected.get(name, 0) + 1
    assert sum(expected.values()) > 10
    assert {t: n for (t, r), n in stats.task_counts.items() if r == "planned"} == expected
    day.count_unstarted(never, Stats(), None)  # no [workload]: nothing


def test_the_external_mail_goes_only_to_the_users_of_this_runs_devices():
    """``--devices`` below ``[auth] users``: the plan's external mail (and meeting requests) go to the
    users that have a device in this run (or shard), not to every user the scenario names -- the
    embedded target would otherwise deliver mail nobody reads, at several times the plan's rate."""
    from types import SimpleNamespace

    sc = scenario.parse(TEXT.replace("devices = 50", "devices = 10"), "ext.toml")
    assert day.run_users(sc) == list(range(10))
    assert day.run_users(sc, (1, 3)) == [1, 4, 7]
    two = scenario.parse(TEXT.replace("devices = 50\ndevices_per_user = 1", "devices = 9\ndevices_per_user = 2"),
                         "ext.toml")
    assert day.run_users(two) == [0, 1, 2, 3, 4]
    delivered = []

    async def deliver(name):
        delivered.append(name)

    async def main():
        loop = asyncio.get_running_loop()
        target = SimpleNamespace(in_process=True, state=SimpleNamespace(deliver_mail=deliver, deliver_meeting=deliver))
        planner = day.Planner(sc)
        run = day.external_delivery(sc, SimpleNamespace(workload=planner), target, loop.time() - 60,
                                    loop.time() + 1, None)
        await asyncio.wait_for(run, 60)

    asyncio.run(main())
    assert delivered  # the mail due in the first 60 s of ten users' day
    assert {int(name[len("user"):]) for name in delivered} <= set(range(10)), sorted(set(delivered))
