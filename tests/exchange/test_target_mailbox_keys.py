"""[target] history_days / daily_messages / inbox_items: parsed strictly (one line naming the key, bounds),
named as ignored against a server's URL (as the other embedded-only keys), passed to the embedded target
of one process and of a cluster; ``easload target`` has the same as flags."""

import subprocess
import sys

import pytest

from loadgen import scenario
from loadgen.exchange.cluster import shard_state
from loadgen.exchange.launch import embedded_state
from loadgen.exchange.state import MAX_HISTORY_DAYS, scenario_options
from loadgen.exchange.store import INBOX

BASE = "[auth]\nusers = 4\n[population]\ndevices = 4\n"


def _parse(target_lines):
    return scenario.parse("[target]\n%s\n%s" % (target_lines, BASE), "x.toml")


def test_defaults_and_values_reach_the_embedded_target():
    t = _parse("").target
    assert (t.history_days, t.daily_messages, t.inbox_items) == (3, 20, None)  # the target's defaults
    sc = _parse("history_days = 10\ndaily_messages = 7")
    assert (sc.target.history_days, sc.target.daily_messages, sc.target.inbox_items) == (10, 7, None)
    state = embedded_state(sc)
    assert (state.store.history_days, state.store.daily_messages) == (10, 7)
    assert state.mailbox("user0").folder(INBOX).count == round(10 * 7 * 0.8)  # store.py: most of it in the Inbox
    sc = _parse("inbox_items = 5\nhistory_days = 0")
    assert embedded_state(sc).mailbox("user1").folder(INBOX).count == 5
    # each process of a cluster builds its state from the same options
    process = shard_state(scenario_options(sc), 1, 2)
    assert process.mailbox("user1").folder(INBOX).count == 5 and "user0" not in process.passwords


@pytest.mark.parametrize("line, needle", [
    ("history_days = -1", "'history_days' must be at least 0"),
    ("history_days = %d" % (MAX_HISTORY_DAYS + 1), "'history_days' must be at most"),
    ("daily_messages = 2.5", "'daily_messages' must be a whole number"),
    ("daily_messages = true", "'daily_messages' must be a number"),
    ("inbox_items = \"many\"", "'inbox_items' must be a number"),
    ("inbox_items = 10000000", "'inbox_items' must be at most"),
    ("history_dayz = 5", "did you mean 'history_days'"),
])
def test_mistakes_are_one_line_naming_the_key(line, needle):
    with pytest.raises(scenario.ScenarioError) as err:
        _parse(line)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_against_a_server_s_url_they_are_named_as_ignored():
    from loadgen.cli.app import _embedded_only_warning

    sc = _parse('url = "https://mail.example.com/Microsoft-Server-ActiveSync"\nhistory_days = 5\ninbox_items = 2')
    warning = _embedded_only_warning(sc)
    assert "history_days, inbox_items are for the embedded target only" in warning and "\n" not in warning
    assert _embedded_only_warning(_parse("history_days = 5")) is None  # the embedded target reads them


@pytest.mark.parametrize("argv, needle", [
    (["--history-days", "-1"], "--history-days"),
    (["--inbox-items", "10000000"], "--inbox-items"),
])
def test_target_flags_are_checked(argv, needle):
    out = subprocess.run([sys.executable, "-m", "loadgen", "target", *argv], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL, start_new_session=True)
    assert out.returncode == 2 and needle in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
