"""The backlog guard (loadgen/run/engine.py backlog_limit, backlog_exceeded): Exchange Load Generator gave
up on a run when its unfinished tasks exceeded 1.5 times the users; easload stops gracefully, says why in
the summary ("aborted") and exits 4.  The queue is driven by hand here (Stats.task_queued), the run is a
small real one against the embedded target."""

import asyncio
from types import SimpleNamespace

from loadgen import scenario
from loadgen.cli import app, start
from loadgen.results.stats import Stats
from loadgen.run import engine

TOML = """
name = "backlog"
duration = 120
seed = 3
[auth]
users = {users}
[population]
devices = {devices}
devices_per_user = 1
[load]
mode = "poll"
think_time = 0.5
timeout = 5
graceful_stop = 0.5
ramp_up = 0.5
{extra}
"""


def make(users=4, devices=4, extra=""):
    return scenario.parse(TOML.format(users=users, devices=devices, extra=extra), "backlog.toml")


def fake(backlog_limit, users=10, devices=10):
    return SimpleNamespace(workload=SimpleNamespace(backlog_limit=backlog_limit),
                           auth=SimpleNamespace(users=users), population=SimpleNamespace(devices=devices))


def test_the_limit_is_the_factor_times_the_users_and_a_shard_holds_its_share():
    assert engine.backlog_limit(fake(1.5, users=100, devices=200)) == 150
    assert engine.backlog_limit(fake(1.5, users=100, devices=200), devices_here=50) == 37.5
    assert engine.backlog_limit(fake(2, users=10, devices=10), devices_here=10) == 20
    assert engine.backlog_limit(fake(0)) is None
    assert engine.backlog_limit(make()) is None  # no [workload]: no guard
    sc = make(users=8, devices=8, extra="[workload]\nbacklog_limit = 2\n")
    assert engine.backlog_limit(sc) == 16
    assert engine.backlog_limit(make(users=8, devices=8, extra="[workload]\n")) == 12  # LoadGen's 1.5


def test_exceeded_only_past_the_limit_and_the_reason_is_kept():
    s = Stats()
    for _ in range(15):
        s.task_queued(1)
    assert not engine.backlog_exceeded(s, 15) and s.aborted is None
    s.task_queued(1)
    assert engine.backlog_exceeded(s, 15)
    assert s.aborted == "backlog: 16 queued tasks > limit 15"
    s.task_queued(1)
    engine.backlog_exceeded(s, 15)
    assert s.aborted == "backlog: 16 queued tasks > limit 15"  # the first reason stays


def pile_up(monkeypatch, limit, queued):
    """The guard's limit set to ``limit``, and ``queued`` tasks queued half a second into the run."""
    monkeypatch.setattr(engine, "backlog_limit", lambda sc, devices_here=None: limit)
    build = engine.build_population

    def build_and_queue(*args, **kwargs):
        devices, stats = build(*args, **kwargs)

        def queue():
            for _ in range(queued):
                stats.task_queued(1)

        asyncio.get_running_loop().call_later(0.5, queue)
        return devices, stats

    monkeypatch.setattr(engine, "build_population", build_and_queue)


def test_a_run_past_the_backlog_stops_gracefully_and_says_why(monkeypatch):
    pile_up(monkeypatch, limit=3, queued=5)
    result = asyncio.run(start.run(make(), progress=False))
    stats = result.stats
    assert result.interrupted and stats.interrupted
    assert stats.aborted == "backlog: 5 queued tasks > limit 3"
    assert stats.ended - stats.started < 60  # stopped long before its 120 s
    summary = stats.to_dict("backlog")
    assert summary["aborted"] == stats.aborted and summary["tasks"]["total"]["queued_peak"] == 5
    assert stats.total > 0  # the devices did run


def test_below_the_backlog_the_run_is_not_stopped(monkeypatch):
    pile_up(monkeypatch, limit=5, queued=5)
    sc = scenario.parse(TOML.format(users=4, devices=4, extra="").replace("duration = 120", "duration = 3"),
                        "backlog.toml")
    result = asyncio.run(start.run(sc, progress=False))
    assert not result.interrupted and result.stats.aborted is None


def test_the_command_line_exits_4_and_the_summary_records_it(monkeypatch, tmp_path, capsys):
    import json

    pile_up(monkeypatch, limit=3, queued=4)
    f = tmp_path / "backlog.toml"
    f.write_text(TOML.format(users=4, devices=4, extra=""))
    out = tmp_path / "out"
    assert app.main(["run", str(f), "-q", "--metrics-listen", "", "--out", str(out)]) == app.EXIT_ABORTED == 4
    data = json.loads((out / "summary.json").read_text())
    assert data["aborted"] == "backlog: 4 queued tasks > limit 3" and data["interrupted"] is True
    captured = capsys.readouterr()
    assert "run aborted: backlog: 4 queued tasks > limit 3" in captured.err
    assert "The run stopped itself: backlog" in captured.out
