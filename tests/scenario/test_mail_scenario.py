"""[mail]: the users' mail in a scenario -- typed, ranged, frozen, one clear line for every mistake."""

import dataclasses

import pytest

from loadgen import scenario
from loadgen.cli.app import main
from loadgen.run.context import RunLoad
from loadgen.scenario import MailConfig, ScenarioError


def test_without_mail_the_users_do_nothing_with_mail():
    sc = scenario.parse("", "x.toml")
    assert sc.mail == MailConfig() and not sc.mail.active
    assert RunLoad.for_run(sc).mail is None  # the devices live exactly as before


def test_mail_values_and_defaults():
    sc = scenario.parse(
        '[mail]\nsend_per_hour = 2.5\nto = 4\nbody_bytes = [100, 900]\nsend_until = "5m"\nread_after = "2s"\n'
        'push_folders = ["inbox", "sent", "user", "inbox"]\nmeeting_response = { decline = 1 }\n'
        'oof_per_day = 2\nexternal_domain = "far.example"\naddress = "{user}@corp.example"\n', "x.toml")
    m = sc.mail
    assert m.active and m.send_per_hour == 2.5 and m.oof_per_day == 2.0
    assert m.to == (4, 4) and m.body_bytes == (100, 900)
    assert m.send_until == 300.0 and m.read_after == 2.0
    assert m.push_folders == ("inbox", "sent", "user")
    assert m.meeting_response == {"decline": 1.0}
    assert m.reply_share == 0.3 and m.window == 32  # the defaults
    none = scenario.parse("[mail]\nsend_per_hour = 1\nmeeting_response = { accept = 0 }\n", "x.toml").mail
    assert none.meeting_response == {"accept": 0.0}  # nobody answers meeting requests
    assert m.address == "{user}@corp.example" and m.external_domain == "far.example"


def test_mail_is_frozen():
    sc = scenario.parse('[mail]\nsend_per_hour = 1\n', "x.toml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sc.mail.send_per_hour = 5
    with pytest.raises(TypeError):
        sc.mail.meeting_response["accept"] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        sc.mail = MailConfig()


@pytest.mark.parametrize("text,needle", [
    ("[mail]\nsend_per_hr = 1\n", "x.toml:2: unknown key 'send_per_hr' in [mail] (did you mean 'send_per_hour'?)"),
    ('[mail]\nsend_per_hour = "lots"\n', "x.toml:2: 'send_per_hour' must be a number"),
    ("[mail]\nsend_per_hour = -1\n", "x.toml:2: 'send_per_hour' must be at least 0"),
    ("[mail]\nsend_per_hour = 4000\n", "x.toml:2: 'send_per_hour' must be at most 3,600"),
    ("[mail]\noof_per_day = nan\n", "x.toml:2: 'oof_per_day' must be a finite number"),
    ("[mail]\nread_share = 1.5\n", "x.toml:2: 'read_share' must be at most 1"),
    ("[mail]\nreply_share = 0.8\nforward_share = 0.5\n", "'reply_share' + 'forward_share' must be at most 1"),
    ("[mail]\ndelete_share = 0.8\nmove_share = 0.5\n", "'delete_share' + 'move_share' must be at most 1"),
    ("[mail]\nto = [3, 1]\n", "x.toml:2: 'to' must be a whole number or a range [low, high] within 1..100"),
    ("[mail]\nto = 0\n", "'to' must be a whole number or a range"),
    ('[mail]\nbody_bytes = "big"\n', "'body_bytes' must be a whole number or a range"),
    ('[mail]\npush_folders = ["inbox", "spam"]\n', "x.toml:2: 'push_folders' must be a list of folder kinds"),
    ("[mail]\npush_folders = []\n", "'push_folders' must be a list"),
    ("[mail]\nmeeting_response = { maybe = 1 }\n", "unknown response 'maybe' in 'meeting_response'"),
    ("[mail]\nmeeting_response = { accept = -1 }\n", "share of 'accept' in 'meeting_response' must be a number"),
    ("[mail]\nmeeting_response = 1\n", "'meeting_response' must be a table"),
    ("[mail]\nmeeting_response = { accept = 0.8, decline = 0.5 }\n", "'meeting_response' shares must add up to at most 1"),
    ('[mail]\naddress = "nobody"\n', "x.toml:2: 'address' must be an address pattern"),
    ('[mail]\naddress = "{usr}@x.example"\n', "'address' must be an address pattern"),
    ('[mail]\naddress = "{user}{0}@x.example"\n', "'address' may hold only {user}"),
    ('[mail]\nexternal_domain = "a@b"\n', "'external_domain' must be a domain"),
    ('[mail]\nsend_until = "later"\n', "'send_until' must be a duration"),
    ("[mail]\nwindow = 0\n", "'window' must be at least 1"),
    ('[mail]\nlegacy_mime = "yes"\n', "'legacy_mime' must be true or false"),
    ("mail = 1\n", "[mail] must be a table"),
])
def test_mail_errors_name_file_line_and_key(text, needle):
    with pytest.raises(ScenarioError) as info:
        scenario.parse(text, "x.toml")
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_mail_mistake_exit_2_one_line(tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text('[mail]\nsend_per_hour = 1\ncc_share = 2\n')
    assert main(["run", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.toml:3" in err[0] and "cc_share" in err[0]


def test_the_mail_scenarios_send_mail():
    for name in ("mail.toml", "smoke.toml"):
        sc = scenario.load(scenario.default_scenario_path().parent / name)
        assert sc.mail.active and sc.mail.send_per_hour > 0
    sc = scenario.load(scenario.default_scenario_path().parent / "mail.toml")
    assert sc.mail.send_until is not None and sc.mail.send_until < sc.duration  # it drains
