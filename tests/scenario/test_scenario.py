"""Scenario files: typed values, and one clear line for every mistake."""

import pytest

from loadgen import scenario
from loadgen.cli.app import main
from loadgen.scenario import ScenarioError


def test_smoke_scenario_loads():
    s = scenario.load(scenario.default_scenario_path())
    assert s.name == "smoke" and s.population.devices == 200 and s.duration == 20.0
    assert s.target.embedded


def test_durations_and_defaults():
    s = scenario.parse('duration = "2m"\n[load]\nthink_time = "500ms"\n', "x.toml")
    assert s.duration == 120.0 and s.load.think_time == 0.5 and s.load.retry_interval == 3600.0


@pytest.mark.parametrize("text,needle", [
    ('name = "x"\nbogus = 1\n', "x.toml:2: unknown key 'bogus'"),
    ('[load]\nramp_up = 1\nthinktime = 2\n', "x.toml:3: unknown key 'thinktime' in [load]"),
    ('[population]\ndevices = "many"\n', "x.toml:2: 'devices' must be a number"),
    ('[population]\nversions = { "13.0" = 1 }\n', "unknown protocol version '13.0'"),
    ('[population]\nprofiles = { nokia = 1 }\n', "unknown profile 'nokia'"),
    ('duration = "soon"\n', "x.toml:1: 'duration' must be a duration"),
    ('[target]\nurl = "ftp://x"\n', "x.toml:2: 'url' must be"),
    ('[target]\ninsecure = true\nurl = [\n  "http://127.0.0.1:1/x",\n  "http://127.0.0.1:1/x",\n]\n',
     "x.toml:3: 'url', URL 2 of 2 (http://127.0.0.1:1/x) is URL 1 again"),  # a multi-line array: its first line
    ('[target]\nurl = []\n', "x.toml:2: 'url' is empty"),
    ('[auth]\nuser = "u{m}"\n', "'user' may only use the placeholder {n}"),
    ('[auth]\npassword_env = "EASLOAD_TEST_UNSET_VAR"\n', "EASLOAD_TEST_UNSET_VAR"),
    ('[auth]\nusers = 1\n[population]\ndevices = 5\ndevices_per_user = 2\n', "5 devices need more than"),
    ('name = \n', "not valid TOML"),
])
def test_errors_name_file_line_and_key(text, needle):
    with pytest.raises(ScenarioError) as info:
        scenario.parse(text, "x.toml")
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_missing_file_exit_2_one_line(capsys):
    assert main(["run", "missing.toml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["easload: missing.toml: no such scenario file"]


def test_cli_unknown_key_exit_2(tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text('[load]\nthinktime = 1\n')
    assert main(["run", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.toml:2" in err[0] and "thinktime" in err[0]


def test_cli_wbxml_decode_bad_input_exit_2(tmp_path, capsys):
    f = tmp_path / "x.wbxml"
    f.write_bytes(b"\x03\x01\x6a\x00\x00\x07")
    assert main(["wbxml", "decode", str(f)]) == 2
    assert "at byte" in capsys.readouterr().err


def test_thresholds_and_events_parse():
    s = scenario.parse('[thresholds]\n"Provision.p99" = "< 0.5"\n"errors.rate" = "<= 0.01"\n'
                       '"devices.provisioned" = ">= 0.99"\n'
                       '[[events]]\nat = "10s"\naction = "change_policy"\nsettings = { MinDevicePasswordLength = 6 }\n'
                       '[[events]]\nat = 5\naction = "wipe"\nfraction = 0.1\n', "x.toml")
    assert [str(t) for t in s.thresholds] == ["Provision.p99 < 0.5", "errors.rate <= 0.01", "devices.provisioned >= 0.99"]
    assert [(e.at, e.action) for e in s.events] == [(5.0, "wipe"), (10.0, "change_policy")]


@pytest.mark.parametrize("text,needle", [
    ('[thresholds]\n"Provision.p98" = "< 1"\n', "x.toml:2: unknown threshold metric 'Provision.p98'"),
    ('[thresholds]\n"errors.rate" = "about 1"\n', "must look like"),
    ('[[events]]\nat = 1\naction = "wipes"\n', "unknown action 'wipes'"),
    ('[[events]]\nat = 1\naction = "wipes"\n', "did you mean 'wipe'"),
    ('[[events]]\nat = 1\naction = "wipe"\nfractoin = 1\n', "x.toml:4: events[0]: 'wipe' does not take 'fractoin'"),
    ('[target]\nurl = "https://x/"\n[[events]]\nat = 1\naction = "wipe"\n', "use action = \"command\""),
    ('[load]\nthink_tim = 1\n', "did you mean 'think_time'"),
])
def test_threshold_and_event_errors(text, needle):
    with pytest.raises(ScenarioError) as info:
        scenario.parse(text, "x.toml")
    assert needle in str(info.value)


def test_every_shipped_scenario_validates(capsys):
    from pathlib import Path

    files = sorted(str(p) for p in (Path(__file__).resolve().parents[2] / "scenarios").glob("*.toml"))
    assert len(files) >= 7
    assert main(["validate", *files]) == 0
    assert capsys.readouterr().out.count(": ok (") == len(files)


@pytest.mark.parametrize("text, needle", [
    ('[load]\ntransport = "aiohttp"\npool_size = 4\n', "'pool_size' needs transport"),
    ("[load]\npool_size = -1\n", "pool_size"),
    ("[load]\nidle_timeout = -5\n", "idle_timeout"),
    ('[target]\nclient_key = "k.pem"\n', "'client_key' needs 'client_cert'"),
])
def test_transport_options_are_validated(text, needle):
    with pytest.raises(ScenarioError, match=needle):
        scenario.parse(text)


def test_missing_tls_file_is_a_usage_error(tmp_path, capsys):
    f = tmp_path / "t.toml"
    f.write_text('[target]\nurl = "https://127.0.0.1:1/Microsoft-Server-ActiveSync"\nclient_cert = "%s"\n'
                 % (tmp_path / "missing.pem"))
    assert main(["run", str(f), "--metrics-listen", ""]) == 2
    err = capsys.readouterr().err
    assert "[target] client_cert: no such file" in err and "Traceback" not in err


async def test_pooled_connections_from_the_scenario():
    """[load] pool_size = 2: the devices share two connections (raw request-rate tests), against
    one or more per device by default (connections belong to devices, as on phones)."""
    from loadgen.cli.start import run

    base = 'duration = 1.5\n[population]\ndevices = 8\n[load]\nramp_up = 0\nmode = "poll"\nthink_time = 0.05\n'
    pooled = await run(scenario.parse(base + "pool_size = 2\n"), progress=False, attach_metrics=False)
    assert pooled.stats.final_states["provisioned"] == 8 and pooled.stats.failures == 0
    assert 1 <= pooled.connections_opened <= 2
    own = await run(scenario.parse(base), progress=False, attach_metrics=False)
    assert own.connections_opened >= 8


def test_event_display_masks_environment_prefixes():
    """A command's leading NAME=value assignments are shown as ***, its arguments not at all."""
    s = scenario.parse('[target]\nurl = "http://127.0.0.1:1/x"\n[[events]]\nat = 1\naction = "command"\n'
                       'run = "API_TOKEN=s3cr3t OTHER=\'two words\' ./switch-policy --token s3cr3t2"\n', "x.toml")
    shown = s.events[0].display()
    assert shown == "API_TOKEN=*** OTHER=*** ./switch-policy ..."
    assert "s3cr3t" not in shown and "two words" not in shown
    assert scenario.Event(1.0, "mail", {}).display() == "mail"


def test_dry_run_never_shows_a_command_environment_value(tmp_path, capsys):
    f = tmp_path / "cmd.toml"
    f.write_text('[target]\nurl = "http://127.0.0.1:1/x"\n[population]\ndevices = 2\n[[events]]\nat = 1\n'
                 'action = "command"\nrun = "API_TOKEN=s3cr3t ./switch-policy"\n')
    assert main(["run", str(f), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "API_TOKEN=***" in out and "s3cr3t" not in out


def test_first_user_shifts_names_passwords_and_email_not_identities():
    """[auth] first_user = 1: user{n} is user1 for the first user (directories often start at 1); device ids
    (profiles.identity of the user index) and the target's users stay consistent with the devices."""
    from loadgen.run.engine import build_population
    from loadgen.exchange.state import TargetState, scenario_options

    text = ('[auth]\nuser = "user{n}@example.com"\npassword = "Pass{n}!"\nusers = 3\n%s[population]\ndevices = 3\n'
            'devices_per_user = 1\n[target]\nautodiscover = true\n')
    base = scenario.parse(text % "", "x.toml")
    s = scenario.parse(text % "first_user = 1\n", "x.toml")
    devices, _ = build_population(s, "http://127.0.0.1/Microsoft-Server-ActiveSync")
    before, _ = build_population(base, "http://127.0.0.1/Microsoft-Server-ActiveSync")
    assert [d.user for d in devices] == ["user1@example.com", "user2@example.com", "user3@example.com"]
    assert devices[0]._password == "Pass1!"  # the account password (device.password is the lock screen's)
    assert [d.ident.device_id for d in devices] == [d.ident.device_id for d in before]
    assert s.load.autodiscover.format(n=0) == "user1@example.com"
    state = TargetState(**scenario_options(s))
    assert sorted(state.passwords) == [d.user for d in devices] and state.passwords["user3@example.com"] == "Pass3!"
    import pickle

    again = pickle.loads(pickle.dumps(s.auth.user))  # as --workers and target processes receive it
    assert again.format(n=4) == "user5@example.com"


def test_a_non_ascii_url_path_is_percent_encoded():
    s = scenario.parse('[target]\nurl = "https://mail.example.com/Micro Soft/é"\n', "x.toml")
    assert s.target.url == "https://mail.example.com/Micro%20Soft/%C3%A9"
    assert scenario.parse_target_option("http://127.0.0.1:1/ä") == "http://127.0.0.1:1/%C3%A4"
