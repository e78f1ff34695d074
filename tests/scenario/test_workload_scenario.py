"""[workload] in a scenario: defaults, named and custom profiles, client types, the day's settings;
frozen; every mistake one line naming the key (the command line's exit 2)."""

import dataclasses
import pickle
import subprocess
import sys

import pytest

from loadgen import scenario as sc
from loadgen.device.user import CLIENT_NAMES, NAMED_PROFILES


def parse(text):
    return sc.parse(text, "w.toml")


def test_without_workload_the_scenario_has_none():
    assert parse("").workload is None
    assert parse("[mail]\nsend_per_hour = 3\n").workload is None


def test_defaults():
    w = parse("[workload]\n").workload
    assert w.profiles == {"average": 1.0}
    assert w.clients == {"ios": 1.0}
    assert (w.day_length, w.start_hour, w.curve, w.peak_factor, w.stress, w.backlog_limit) == (
        28800.0, 8.0, "flat", 1.8, False, 1.5)
    assert w.replay_from == 0 and w.replayed == 28800.0
    p = w.definitions["average"]
    assert (p.received_per_day, p.sent_per_day) == (80.0, 20.0)  # Microsoft's "100 profile"


@pytest.mark.parametrize("name, received, sent", [("light", 40, 10), ("average", 80, 20), ("heavy", 160, 40),
                                                  ("very-heavy", 400, 100)])
def test_named_profiles_are_microsofts_message_profiles(name, received, sent):
    w = parse('[workload]\nprofiles = { "%s" = 1 }\n' % name).workload
    p = w.definitions[name]
    assert (p.received_per_day, p.sent_per_day) == (received, sent)
    assert p.name == name


def test_custom_profile_over_a_base_and_mixed_by_weight():
    w = parse('''
[workload]
profiles = { average = 0.7, heavy = 0.2, sales = 0.1 }
clients = { ios = 0.4, android = 0.4, outlook-cloud = 0.2 }
curve = "diurnal"
day_length = "10h"
[workload.profile.sales]
base = "heavy"
sent_per_day = 70
recipients = [2, 5]
meeting_response = { accept = 0.9 }
''').workload
    assert list(w.definitions) == ["average", "heavy", "sales"]
    sales = w.definitions["sales"]
    assert sales.sent_per_day == 70 and sales.received_per_day == NAMED_PROFILES["heavy"]["received_per_day"]
    assert sales.recipients == (2, 5) and sales.meeting_response == {"accept": 0.9}
    assert w.clients == {"ios": 0.4, "android": 0.4, "outlook-cloud": 0.2}
    assert w.day_length == 36000.0 and w.curve == "diurnal"


def test_replay_the_peak_two_hours():
    w = parse('[workload]\nreplay_from = "peak"\n').workload
    assert (w.replay_from, w.replayed) == (3600.0, 7200.0) == (w.peak_window()[0], 7200.0)
    w = parse('[workload]\nreplay_from = "2h"\nreplay_length = "30m"\n').workload
    assert (w.replay_from, w.replayed) == (7200.0, 1800.0)
    w = parse('[workload]\nreplay_from = "7h"\nreplay_length = "3h"\n').workload
    assert w.replayed == 3600.0  # not past the end of the day


def test_frozen_and_picklable():
    s = parse('[workload]\nprofiles = { average = 1, sales = 1 }\n[workload.profile.sales]\nsent_per_day = 3\n')
    w = s.workload
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.day_length = 1
    with pytest.raises(TypeError):
        w.profiles["x"] = 1
    with pytest.raises(TypeError):
        w.definitions["sales"].meeting_response["accept"] = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.definitions["sales"].sent_per_day = 1
    assert pickle.loads(pickle.dumps(s)) == s


@pytest.mark.parametrize("text, where, words", [
    ("[workload]\nprofiles = { avrage = 1 }\n", ":2:", "unknown profile 'avrage'"),
    ("[workload]\nclients = { iphone = 1 }\n", ":2:", "unknown client type 'iphone'"),
    ("[workload]\ncurve = \"sine\"\n", ":2:", "'curve'"),
    ("[workload]\nday_length = \"30s\"\n", ":2:", "'day_length'"),
    ("[workload]\ncurve = \"diurnal\"\npeak_factor = 5\n", ":3:", "'peak_factor'"),
    ("[workload]\nbacklog_limit = 0\n", ":2:", "'backlog_limit'"),
    ("[workload]\nstress = 1\n", ":2:", "'stress'"),
    ("[workload]\nreplay_from = \"9h\"\n", ":2:", "'replay_from'"),
    ("[workload]\nthink = 1\n", ":2:", "unknown key 'think'"),
    ("[workload]\n[workload.profile.x]\nbse = \"light\"\n", ":3:", "unknown key 'bse'"),
    ("[workload]\n[workload.profile.x]\nbase = \"huge\"\n", ":3:", "'base'"),
    ("[workload]\n[workload.profile.x]\nreply_share = 0.8\nforward_share = 0.5\n", ":4:", "'forward_share'"),
    ("[workload]\n[workload.profile.x]\nsent_per_day = -1\n", ":3:", "'sent_per_day'"),
    ("[workload]\n[workload.profile.x]\nrecipients = [3, 1]\n", ":3:", "'recipients'"),
    ("[workload]\n[workload.profile.x]\nmeeting_response = { accept = 0.9, decline = 0.5 }\n", ":3:",
     "'meeting_response'"),
    ("[mail]\nsend_per_hour = 3\n[workload]\n", ":2:", "'send_per_hour' in [mail]"),
    ("[population]\nclients = { iphone = 1 }\n", ":2:", "unknown client type 'iphone'"),
    ("[population]\nclients = { ios = 1 }\n[workload]\n", ":2:", "'clients' in [population]"),
])
def test_every_mistake_is_one_line_naming_the_key(text, where, words):
    with pytest.raises(sc.ScenarioError) as exc:
        parse(text)
    message = str(exc.value)
    assert "\n" not in message and where in message and words in message, message


def test_population_clients_without_the_day_model():
    """[population] clients: client types by weight for devices without [workload] (none: no client type)."""
    assert parse("").population.clients is None
    s = parse('[population]\nclients = { "hanging-sync" = 3, misbehaving = 1 }\n')
    assert s.workload is None and s.population.clients == {"hanging-sync": 3, "misbehaving": 1}
    with pytest.raises(TypeError):
        s.population.clients["ios"] = 1


def test_client_types_are_the_known_ones():
    names = sc._client_names()
    assert set(names) >= {"ios", "android", "outlook-cloud"}
    assert set(CLIENT_NAMES) == {"ios", "android", "outlook-cloud", "hanging-sync", "misbehaving"}


def test_a_mistake_is_exit_2_on_the_command_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[workload]\nprofiles = { avrage = 1 }\n")
    proc = subprocess.run([sys.executable, "-m", "loadgen", "run", str(path), "--dry-run"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown profile 'avrage'" in proc.stderr
