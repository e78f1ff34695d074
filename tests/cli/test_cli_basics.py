"""The command line as a new operator meets it: --version, bare easload, durations with units, shipped
scenarios by name, "did you mean", the request-rate cap compared with the plan before a run starts,
embedded-only keys warned about against a server's URL, validate/devices without the password variable."""

import json
from pathlib import Path

import pytest

import _wbxml
from loadgen import scenario as scenario_mod
from loadgen.cli import app, shipped, start
from loadgen.cli.app import main

REPO = Path(__file__).resolve().parents[2]
TEST_NET = "https://192.0.2.1/Microsoft-Server-ActiveSync"  # RFC 5737: nothing answers; nothing may be sent there


@pytest.fixture
def no_load(monkeypatch):
    """start.run replaced: a test that reaches it would have started a load; the calls are recorded and
    the run ends as a target that could not listen (exit 3) without any connection."""
    calls = []

    async def refuse(scenario, **kw):
        calls.append(scenario)
        raise OSError("test: no load in this test")

    monkeypatch.setattr(start, "run", refuse)
    return calls


def _exit(argv):
    """main(argv)'s status, argparse's own exits (--version, an error) included."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_version_names_the_package_and_the_codec_in_use(capsys):
    assert _exit(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("easload %s " % app._package_version())
    assert "WBXML codec: %s" % _wbxml.IMPLEMENTATION in out


def test_bare_easload_prints_help_with_examples_and_exit_codes_and_starts_nothing(capsys, no_load):
    assert _exit([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: easload")
    assert "examples:" in out and "easload run policy-change --duration 2m" in out
    assert "exit status:" in out and "3  the target never answered" in out
    assert no_load == []


@pytest.mark.parametrize("text,seconds", [("20", 20.0), ("5s", 5.0), ("90s", 90.0), ("2m", 120.0), ("1h", 3600.0),
                                          ("500ms", 0.5), ("1.5m", 90.0)])
def test_duration_flags_take_the_scenario_files_units(text, seconds):
    parser = app._parser()
    assert parser.parse_args(["run", "--duration", text]).duration == seconds
    assert parser.parse_args(["run", "--linger", text]).linger == seconds
    # the same parser as a scenario file's durations (one owner: scenario.parse_duration)
    assert scenario_mod.parse('duration = "%s"\n' % text, "d.toml").duration == seconds


def test_whole_second_flags_take_units_too():
    parser = app._parser()
    assert parser.parse_args(["target", "--ping-min", "1m", "--ping-max", "59m"]).ping_max == 3540
    assert parser.parse_args(["probe", "--user", "u", "--heartbeat", "2m"]).heartbeat == 120


@pytest.mark.parametrize("argv,needle", [
    (["run", "--duration", "5x"], "--duration"),
    (["run", "--duration", "nan"], "--duration"),
    (["run", "--linger", "forever"], "--linger"),
    (["target", "--ping-min", "1.5s"], "--ping-min"),
])
def test_a_bad_duration_is_one_line_naming_the_flag(capsys, no_load, argv, needle):
    assert _exit(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and ("duration like" in err[0] or "whole seconds" in err[0]), err
    assert no_load == []


def test_a_duration_with_a_unit_reaches_the_plan(capsys):
    assert main(["run", "smoke", "--dry-run", "--duration", "2m", "--metrics-listen", ""]) == 0
    assert "; 120 s; mode ping" in capsys.readouterr().out


def test_shipped_scenarios_by_name_from_anywhere(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no ./scenarios here: the shipped ones are found by name
    assert main(["run", "policy-change", "--dry-run"]) == 0
    assert "scenario policy-change" in capsys.readouterr().out
    assert main(["validate", "remote-wipe", "smoke.toml"]) == 0
    out = capsys.readouterr().out
    assert "ok (remote-wipe" in out and "ok (smoke" in out
    assert main(["devices", "smoke"]) == 0
    assert capsys.readouterr().out.startswith("user,device_id,device_type,model\n")


def test_scenarios_lists_every_shipped_file_with_its_description(capsys):
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    files = sorted(p.stem for p in (REPO / "scenarios").glob("*.toml"))
    assert files and sorted(shipped.names()) == files
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.startswith("  ") and line.split()
             and not line.startswith("   ")}
    assert sorted(lines) == files
    for name in files:
        described = shipped.description(REPO / "scenarios" / (name + ".toml"))
        assert described, name  # a description, or the first sentence of the file's opening comment
        assert described.split()[0] in lines[name], (name, lines[name])
    assert "500 phones mailing each other" in out  # [description] of mail.toml


@pytest.mark.parametrize("argv,needle", [
    (["rn"], "unknown command 'rn' (did you mean 'run'?)"),
    (["policy-change"], "did you mean 'easload run policy-change'?"),
    (["run", "--duratoin", "5s"], "unknown flag --duratoin (did you mean --duration?)"),
    (["run", "smoke", "--dry-rn"], "unknown flag --dry-rn (did you mean --dry-run?)"),
    (["--duration", "5s"], "--duration is a flag of 'easload run'"),
    (["run", "--transport", "leen"], "did you mean 'lean'?"),
    (["run", "polcy-change"], "did you mean 'policy-change'?"),
])
def test_mistakes_get_one_line_with_what_was_meant(capsys, no_load, argv, needle):
    assert _exit(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert no_load == []


def _remote(tmp_path, extra="", devices=500):
    f = tmp_path / "remote.toml"
    f.write_text('[target]\nurl = "%s"\n[auth]\nusers = %d\n[population]\ndevices = %d\n[load]\nramp_up = "20s"\n%s'
                 % (TEST_NET, devices, devices, extra))
    return str(f)


def test_a_cap_below_the_plans_peak_refuses_to_start_naming_the_numbers(tmp_path, capsys, no_load):
    # 500 enrolments over 20 s: about 130 requests/s at the peak, above the 50/s default for a remote target
    path = _remote(tmp_path)
    assert main(["run", path, "--metrics-listen", ""]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "is above the request-rate cap of 50/s (default for a target that is not on this machine)" in err[0]
    assert "set [load] max_request_rate = " in err[0] and "--yes" in err[0]
    suggested = int(err[0].split("max_request_rate = ")[1].split()[0])
    assert no_load == []
    # the rate it suggests is enough: the same run reaches the start (exit 3 from the stand-in), no refusal
    assert main(["run", _remote(tmp_path, "max_request_rate = %d\n" % suggested), "--yes", "--metrics-listen", ""]) \
        == 3
    err = capsys.readouterr().err
    assert "WARNING" not in err and "vs the plan" not in err and "the plan's peak about" in err
    assert len(no_load) == 1


def test_yes_runs_a_throttled_plan_with_a_warning(tmp_path, capsys, no_load):
    assert main(["run", _remote(tmp_path), "--yes", "--metrics-listen", ""]) == 3
    err = capsys.readouterr().err
    assert "WARNING: the plan's peak" in err and "running throttled" in err
    assert "request-rate cap: 50 requests/s in total" in err and "WBXML codec %s" % _wbxml.IMPLEMENTATION in err
    assert len(no_load) == 1


def test_the_cap_is_compared_per_shard(tmp_path, capsys, no_load):
    # 100/s in all is enough for the whole plan on one machine, not once split over 4 shards: each shard
    # gets 25/s while its quarter of the devices still enrols in the same 20 s (a quarter of the peak)
    unsharded = _remote(tmp_path, "max_request_rate = 200\n")
    assert main(["run", unsharded, "--yes", "--metrics-listen", ""]) == 3
    capsys.readouterr()
    path = _remote(tmp_path, "max_request_rate = 100\n", devices=2000)
    assert main(["run", path, "--shard", "1/4", "--metrics-listen", ""]) == 2
    err = capsys.readouterr().err
    assert "per shard" in err and "25/s per shard (100/s in total, set in the scenario, over 4 shards)" in err
    assert main(["run", path, "--shard", "1/4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "ABOVE the cap's 25/s per shard" in out and "warning: the plan's peak" in out
    assert len(no_load) == 1


def test_no_cap_on_loopback_computes_no_plan(tmp_path, monkeypatch, capsys, no_load):
    from loadgen.run import plan

    monkeypatch.setattr(plan, "build", lambda *a, **k: pytest.fail("plan built for a run without a cap"))
    f = tmp_path / "loop.toml"
    f.write_text('[target]\nurl = "http://127.0.0.1:9/Microsoft-Server-ActiveSync"\n[population]\ndevices = 2\n')
    assert main(["run", str(f), "--metrics-listen", ""]) == 3
    assert "request-rate cap: off" in capsys.readouterr().err


EMBEDDED_KEYS = ('[target]\nurl = "embedded"\nping_min = 5\nping_max = 3540\nmail_per_user_per_hour = 60\n'
                 '[population]\ndevices = 2\n')


def test_embedded_only_keys_are_named_against_a_url(tmp_path, capsys, no_load):
    f = tmp_path / "emb.toml"
    f.write_text(EMBEDDED_KEYS)
    assert main(["run", str(f), "--target", "http://127.0.0.1:9/Microsoft-Server-ActiveSync", "--dry-run"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "embedded target only" in line]
    assert len(err) == 1
    assert "[target] ping_min, ping_max, mail_per_user_per_hour are for the embedded target only" in err[0]
    assert main(["run", str(f), "--target", "http://127.0.0.1:9/Microsoft-Server-ActiveSync",
                 "--metrics-listen", ""]) == 3
    assert "ping_min, ping_max, mail_per_user_per_hour" in capsys.readouterr().err
    assert main(["run", str(f), "--dry-run"]) == 0  # the embedded target reads them: nothing to say
    assert "embedded target only" not in capsys.readouterr().err
    remote = tmp_path / "remote.toml"
    remote.write_text(EMBEDDED_KEYS.replace('"embedded"', '"%s"' % TEST_NET))
    assert main(["validate", str(remote)]) == 0
    assert "ping_min, ping_max, mail_per_user_per_hour are for the embedded target only" in capsys.readouterr().err


def test_validate_and_devices_need_no_password_variable_a_run_does(tmp_path, monkeypatch, capsys, no_load):
    monkeypatch.delenv("EASLOAD_TEST_UNSET_PW", raising=False)
    f = tmp_path / "pw.toml"
    f.write_text('[target]\nurl = "%s"\n[auth]\nuser = "u{n}@example.com"\npassword_env = "EASLOAD_TEST_UNSET_PW"\n'
                 '[population]\ndevices = 4\n' % TEST_NET)
    assert main(["validate", str(f)]) == 0
    assert main(["devices", str(f), "--format", "powershell"]) == 0
    assert main(["run", str(f), "--dry-run"]) == 0  # a plan sends nothing either
    capsys.readouterr()
    assert main(["run", str(f), "--yes", "--metrics-listen", ""]) == 2
    assert "EASLOAD_TEST_UNSET_PW" in capsys.readouterr().err
    assert no_load == []


def test_a_run_says_its_codec_on_the_start_line_and_in_summary_json(tmp_path, capsys):
    f = tmp_path / "tiny.toml"
    f.write_text('duration = "1s"\n[target]\nurl = "embedded"\n[population]\ndevices = 2\n'
                 '[load]\nramp_up = 0\ngraceful_stop = "0.5s"\n')
    assert main(["run", str(f), "-q", "--metrics-listen", "", "--out", str(tmp_path / "out")]) == 0
    assert "WBXML codec %s" % _wbxml.IMPLEMENTATION in capsys.readouterr().err
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert data["codec"] == _wbxml.IMPLEMENTATION and data["easload_version"] == app._package_version()
    # and a merge of it keeps it
    assert main(["merge", str(tmp_path / "out"), "--out", str(tmp_path / "merged")]) == 0
    assert json.loads((tmp_path / "merged" / "summary.json").read_text())["codec"] == _wbxml.IMPLEMENTATION
