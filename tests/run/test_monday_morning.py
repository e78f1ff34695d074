"""scenarios/monday-morning.toml: the users' day from a [workload] (the average profile) with its incidents
(a resync storm, a network drop), its thresholds valid; the dry run shows what the incidents cost and the
tasks' rate over time; a small copy of it (the same file, fewer phones, seconds instead of minutes) runs
against the embedded target and passes its thresholds."""

import asyncio
from pathlib import Path

from loadgen import scenario as sc
from loadgen.cli import start
from loadgen.results import thresholds
from loadgen.run import plan

FILE = Path(__file__).resolve().parents[2] / "scenarios" / "monday-morning.toml"


def test_monday_morning_is_a_workload_with_its_incidents():
    s = sc.load(str(FILE))
    assert s.workload is not None and s.workload.profiles == {"average": 1.0}
    assert set(s.workload.clients) == {"ios", "android"}
    assert not s.mail.active or s.mail.send_per_hour == 0  # the rates are the profile's
    assert [(e.action, e.at, e.args["fraction"]) for e in s.events] == [("resync", 60, 0.3),
                                                                         ("network_drop", 120, 0.25)]
    metrics = {t.metric for t in s.thresholds}
    assert {"tasks.achieved_ratio", "tasks.failed_ratio", "devices.provisioned"} <= metrics
    p = plan.build(s)
    storm, drop = p["events"]
    assert storm["requests"] == 300 * 4 and "resync storm: 300 devices" in storm["note"]
    assert drop["reconnects"] == 250 and "250 reconnects" in drop["note"]
    timeline = p["timeline"]
    assert all(row["tasks_per_s"] > 0 for row in timeline[2:])  # the users' tasks, from enrolment on
    at_storm = next(row for row in timeline if row["from"] <= 60 < row["to"])
    after = next(row for row in timeline if row["from"] >= at_storm["to"])
    assert at_storm["requests_per_s"] >= after["requests_per_s"] + 1200 / (at_storm["to"] - at_storm["from"]) - 1
    text = plan.text(p)
    assert "tasks/s" in text and "resync storm" in text and "reconnects" in text


def test_a_small_monday_morning_passes_its_thresholds():
    text = FILE.read_text()
    for old, new in (('duration = "3m"', 'duration = "7s"'), ("users = 1000", "users = 20"),
                     ("devices = 1000", "devices = 20"), ('ramp_up = "20s"', 'ramp_up = "1s"'),
                     ('at = "60s"', 'at = "3s"'), ('at = "120s"', 'at = "5s"'),
                     ('graceful_stop = "5s"', 'graceful_stop = "2s"')):
        assert old in text, old
        text = text.replace(old, new)
    s = sc.parse(text, "monday-small.toml")
    result = asyncio.run(start.run(s, progress=False))
    stats = result.stats
    assert result.device_errors == {}
    assert [e[1] for e in stats.events] == ["resync", "network_drop"]
    tasks = stats.tasks_dict()["total"]
    assert tasks["planned"] > 100
    verdicts = thresholds.evaluate(stats, s.thresholds)
    assert all(ok for _t, _v, ok in verdicts), [(str(t), v) for t, v, ok in verdicts if not ok]


def test_the_dry_run_timeline_follows_the_workload_s_curve():
    s = sc.load(str(FILE.parent / "working-day.toml"))  # 8 h in 1 h, the peak two hours from hour 1
    p = plan.build(s)
    rows = p["timeline"]  # twelve 5-minute slices
    peak = [r for r in rows if 450 <= r["from"] and r["to"] <= 1350]  # day hours 1-3: run minutes 7.5-22.5
    rest = [r for r in rows if r["from"] >= 1350]
    assert peak and rest
    ratio = min(r["tasks_per_s"] for r in peak) / max(r["tasks_per_s"] for r in rest)
    assert abs(ratio - 1.8 / ((1 - 0.45) / 0.75)) < 0.05  # peak_factor x the mean vs the rest of the day
    # the tasks' requests are in the rate: more than the Pings and enrolments alone
    quiet = plan.build(sc.parse(FILE.parent.joinpath("working-day.toml").read_text().split("[workload]")[0],
                                "no-workload.toml"))
    assert rows[5]["requests_per_s"] > quiet["timeline"][5]["requests_per_s"] + 10
