"""Thresholds on tasks in the one grammar (loadgen/results/thresholds.py), and every threshold checked
before the run: a metric that cannot exist is a usage error (exit 2, one line naming the file and the
threshold) for `easload validate` and `easload run` alike, and nothing is sent."""

import socket
from pathlib import Path

import pytest

from loadgen.cli.app import main
from loadgen.results.stats import Stats
from loadgen.results.tasks import TASK_TYPES, TOTAL_FIELDS, TYPE_FIELDS
from loadgen.results.thresholds import (COMMANDS, DEVICE_STATES, ThresholdError, check_metric, evaluate, from_text,
                                        parse)

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """
name = "th"
duration = 5
[target]
url = "{url}"
[auth]
users = 2
password = "x"
[population]
devices = 2
devices_per_user = 1
[thresholds]
"errors.rate" = "< 0.01"
{extra}
"""


def test_every_task_metric_of_the_grammar_parses():
    for field in TOTAL_FIELDS:
        assert parse("tasks." + field, "< 1").metric == "tasks." + field
    for task_type in TASK_TYPES:
        for field in TYPE_FIELDS:
            parse("tasks.%s.%s" % (task_type, field), ">= 0.99")


@pytest.mark.parametrize("metric, words", [
    ("tasks.sned.p99", ["unknown task type", "did you mean 'tasks.send'"]),
    ("tasks.send.p98", ["unknown field", "did you mean 'tasks.send.p99'"]),
    ("tasks.acheived_ratio", ["did you mean 'tasks.achieved_ratio'"]),
    ("tasks.send", ["names a task type but no field"]),
    ("Snyc.p99", ["unknown command", "did you mean 'Sync.p99'"]),
    ("devices.provisoned", ["did you mean 'devices.provisioned'"]),
    ("errors.ratio", ["errors.<rate|count>"]),
    ("throttled.TooMany", ["throttled."]),
    ("reprovisions.1 4", ["reprovisions."]),
    ("Sync.p98", ["unknown threshold metric"]),
])
def test_a_metric_that_cannot_exist_is_refused_with_a_hint(metric, words):
    with pytest.raises(ThresholdError) as err:
        parse(metric, "< 1")
    for word in words:
        assert word in str(err.value), str(err.value)


def test_the_metrics_runs_have_are_accepted():
    for metric in ("Sync.p99", "Provision.max", "SendMail.errors", "Ping.count", "Enrolment.p99", "StartLag.p90",
                   "TLSHandshakeFull.p99", "TLSHandshakeResumed.count",
                   "errors.rate", "requests.rate", "devices.provisioned", "devices.no_policy",
                   "provisionings.refused_2", "reprovisions.144", "throttled.OverBudget", "throttled.other"):
        check_metric(metric)


def test_the_device_states_the_grammar_knows_are_the_devices():
    from loadgen.device import states

    names = {v for k, v in vars(states).items() if k.isupper() and isinstance(v, str) and k != "INTERRUPTED"}
    assert names == set(DEVICE_STATES)


def test_the_commands_the_devices_send_are_known():
    """Every command the device code names in a request is one a threshold may name."""
    import re

    sent = set()
    for path in (ROOT / "loadgen" / "device").glob("*.py"):
        text = path.read_text()
        sent |= set(re.findall(r'\.command\(\s*\w+,\s*"([A-Za-z]+)"', text))
        sent |= set(re.findall(r'stats\.record\(\s*"([A-Za-z]+)"', text))
    assert {"Sync", "Ping", "FolderSync", "Autodiscover"} <= sent  # the search finds them
    assert sent <= set(COMMANDS), sent - set(COMMANDS)


def test_every_ready_scenario_still_validates(capsys):
    files = sorted(str(p) for p in (ROOT / "scenarios").glob("*.toml"))
    assert files and main(["validate", *files]) == 0


def test_task_thresholds_judge_the_stats_and_the_summary_alike():
    s = Stats()
    s.tasks_planned("send", 100)
    for i in range(99):
        s.task_done("send", float(i), float(i) + (0.2 if i < 5 else 0.0), float(i) + 1.0 + i / 100, True)
    s.task_queued(3)
    s.task_queued(-3)
    s.ended = s.started + 1
    ths = [parse(m, c) for m, c in (("tasks.achieved_ratio", ">= 0.99"), ("tasks.send.p99", "< 5"),
                                     ("tasks.send.max", "< 1.5"), ("tasks.late_ratio", "< 0.01"),
                                     ("tasks.queued_peak", "<= 3"), ("tasks.send.achieved_ratio", "== 0.99"),
                                     ("tasks.reply.p99", "< 5"), ("tasks.planned", "== 100"))]
    by_stats = evaluate(s, ths)
    by_summary = evaluate(s.to_dict("x"), ths)
    assert [(str(t), v, ok) for t, v, ok in by_stats] == [(str(t), v, ok) for t, v, ok in by_summary]
    verdict = {str(t): ok for t, _v, ok in by_stats}
    assert verdict == {"tasks.achieved_ratio >= 0.99": True, "tasks.send.p99 < 5": True,
                       "tasks.send.max < 1.5": False,  # the last took 1.98 s
                       "tasks.late_ratio < 0.01": False,  # 5 of 99 late
                       "tasks.queued_peak <= 3": True, "tasks.send.achieved_ratio == 0.99": True,
                       "tasks.reply.p99 < 5": False,  # no reply: no data, never a pass
                       "tasks.planned == 100": True}
    # a summary's threshold text reads back to the same threshold
    assert from_text(str(ths[1])) == ths[1]
    # a run without a workload: every task threshold has no data and fails
    assert [ok for _t, v, ok in evaluate(Stats(), ths)] == [False] * len(ths)


def test_validate_names_the_file_and_the_threshold_and_exits_2(tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text(SCENARIO.format(url="embedded", extra='"tasks.sned.p99" = "< 5"'))
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(f) in err[0] and "tasks.sned.p99" in err[0]


def test_run_refuses_an_impossible_threshold_before_sending_anything(tmp_path, capsys):
    """A server (a bare listening socket) that would see any connection: it sees none, exit 2, no results."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    try:
        url = "http://127.0.0.1:%d/Microsoft-Server-ActiveSync" % server.getsockname()[1]
        f = tmp_path / "bad.toml"
        f.write_text(SCENARIO.format(url=url, extra='"Provison.p99" = "< 1"'))
        out = tmp_path / "out"
        assert main(["run", str(f), "-q", "--metrics-listen", "", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "Provison.p99" in err and str(f) in err and "did you mean 'Provision.p99'" in err
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected
        assert not out.exists()
    finally:
        server.close()
