"""The tasks queued over --workers N (loadgen/run/workers.py SharedQueue): counted together as they change,
so that the run's peak is the peak of the sum (exact), not the sum of the workers' peaks (an upper bound:
they need not peak together), and the backlog guard (loadgen/run/engine.py) judges the total."""

import multiprocessing

from loadgen.results.stats import Stats
from loadgen.run import engine
from loadgen.run.workers import SharedQueue, _merge_final, _snapshot


def finals(*parts):
    for s in parts:
        s.ended = s.started + 1
    return [_snapshot(s, (), True) for s in parts]


def test_the_peak_of_the_sum_not_the_sum_of_the_peaks():
    shared = SharedQueue(multiprocessing.get_context("spawn"))
    a, b = Stats(), Stats()
    shared.follow(a)
    shared.follow(b)
    a.task_queued(3)  # worker a's queue peaks ...
    for _ in range(3):
        a.task_queued(-1)
    b.task_queued(2)  # ... and is empty when worker b's does
    b.task_queued(1)
    b.task_queued(-1)
    assert (a.tasks_queued_peak, b.tasks_queued_peak) == (3, 3)  # each worker still counts its own
    assert (a.tasks_queued, b.tasks_queued) == (0, 2)
    assert shared.queued() == 2 and shared.peak() == 3
    parent = Stats()
    _merge_final(parent, finals(a, b), shared.peak())
    assert parent.tasks_dict()["total"]["queued_peak"] == 3
    assert parent.tasks_dict()["total"]["queued_peak_bound"] is False  # counted together: exact
    assert parent.tasks_dict()["total"]["queued_end"] == 2
    # without the shared count (a worker killed while holding its lock): the upper bound
    shared.values[2] = 1
    assert shared.peak() is None
    parent = Stats()
    _merge_final(parent, finals(a, b), shared.peak())
    assert parent.tasks_dict()["total"]["queued_peak"] == 6
    assert parent.tasks_dict()["total"]["queued_peak_bound"] is True  # labelled: an upper bound
    from loadgen.results.text import tasks_text

    assert "peak at most 6" in "\n".join(tasks_text(parent))


def _churn(shared, n, start):
    s = Stats()
    shared.follow(s)
    start.wait()
    for _ in range(n):
        s.task_queued(1)
        s.task_queued(-1)


def test_processes_lose_no_change():
    ctx = multiprocessing.get_context("spawn")
    shared = SharedQueue(ctx)
    start = ctx.Event()
    procs = [ctx.Process(target=_churn, args=(shared, 20000, start)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert shared.queued() == 0  # every +1 and -1 of both processes counted, none lost
    assert 1 <= shared.peak() <= 2


def test_the_guard_judges_the_total_when_given():
    s = Stats()
    s.task_queued(2)
    assert not engine.backlog_exceeded(s, 10)
    assert engine.backlog_exceeded(s, 10, queued=11)
    assert s.aborted == "backlog: 11 queued tasks > limit 10"
    assert not engine.backlog_exceeded(Stats(), 10, queued=0)  # 0 is a count, not "not given"
