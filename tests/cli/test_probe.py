"""`easload probe` and `easload devices` against the embedded target."""

import json
import os
import subprocess
import sys

import pytest

from loadgen.cli.app import main
from loadgen.exchange.server import start_target
from loadgen.exchange.state import TargetState


async def _probe(tmp_path, password, state=None, *extra):
    runner, target, url = await start_target("127.0.0.1", 0, state or TargetState(users=3, ping_min=1))
    try:
        env = dict(os.environ, EAS_PASSWORD=password)
        proc = await __import__("asyncio").create_subprocess_exec(
            sys.executable, "-m", "loadgen", "probe", url, "--user", "user1", "--heartbeat", "1",
            "--trace", str(tmp_path / "t.jsonl"), *extra, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode, out.decode(), err.decode()
    finally:
        await runner.cleanup()


async def test_probe_walks_everything_and_redacts(tmp_path):
    code, out, err = await _probe(tmp_path, "Pass1!")
    assert code == 0, out + err
    for step in ("OPTIONS", "Provision (policy)", "Provision (acknowledgement)", "FolderSync", "Sync", "Ping"):
        assert "==> [OK  ] %s" % step in out
    assert "<Provision xmlns=\"Provision:\"" in out and "Authorization: <redacted>" in out
    assert "Pass1!" not in out and "UGFzczEh" not in out  # nor its base64
    lines = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert any(x["type"] == "verdict" and x["step"] == "Ping" for x in lines)
    assert "Pass1!" not in (tmp_path / "t.jsonl").read_text()


async def test_probe_wrong_password_and_no_policy(tmp_path):
    code, out, _ = await _probe(tmp_path, "wrong")
    assert code == 1 and "check the user name format" in out
    code, out, _ = await _probe(tmp_path, "Pass1!", TargetState(users=3, no_policy=True, ping_min=1))
    assert code == 0 and "the server has no policy for this device" in out


async def test_probe_refused_device(tmp_path):
    code, out, _ = await _probe(tmp_path, "Pass1!", TargetState(users=3, ping_min=1), "--profile", "no_password")
    assert code == 1 and "refused with status 139" in out


def test_probe_unreachable_and_usage(capsys):
    assert main(["probe", "ftp://x", "--user", "u"]) == 2


def test_devices_csv_and_powershell(tmp_path, capsys):
    f = tmp_path / "d.toml"
    f.write_text("[population]\ndevices = 5\n")
    assert main(["devices", str(f)]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "user,device_id,device_type,model" and len(rows) == 6
    assert main(["devices", str(f), "--shard", "1/2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert main(["devices", str(f), "--format", "powershell"]) == 0
    ps = capsys.readouterr().out
    assert "Remove-MobileDevice" in ps and "-WhatIf" in ps and rows[1].split(",")[1] in ps


def test_safety_rail_for_remote_targets(tmp_path, capsys):
    f = tmp_path / "r.toml"
    f.write_text('[target]\nurl = "https://mail.example.com/Microsoft-Server-ActiveSync"\n[population]\ndevices = 50\n')
    assert main(["run", str(f), "--metrics-listen", ""]) == 2
    assert "pass --yes" in capsys.readouterr().err


def test_safety_rail_confirmed_in_the_scenario():
    from loadgen import scenario
    from loadgen.cli.app import UsageError, _safety_rail

    remote = '[target]\nurl = "https://mail.example.com/Microsoft-Server-ActiveSync"\n%s[population]\ndevices = 50\n'
    with pytest.raises(UsageError, match="confirm = true"):
        _safety_rail(scenario.parse(remote % ""), yes=False)
    _safety_rail(scenario.parse(remote % ""), yes=True)
    _safety_rail(scenario.parse(remote % "confirm = true\n"), yes=False)
    _safety_rail(scenario.parse('[target]\nurl = "https://127.0.0.2/x"\n[population]\ndevices = 50\n'), yes=False)
    with pytest.raises(scenario.ScenarioError, match="confirm"):
        scenario.parse(remote % 'confirm = "yes"\n')


async def test_probe_autodiscovers_the_url_first(tmp_path):
    code, out, _ = await _probe(tmp_path, "Pass1!", None, "--autodiscover", "user1@example.com")
    assert code == 0, out
    assert "==> [OK  ] Autodiscover: the EAS URL is http://127.0.0.1:" in out
    assert "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006" \
        in out and "<Type>MobileSync</Type>" in out
    assert "Pass1!" not in out and "UGFzczEh" not in out
    lines = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert any(x.get("command") == "Autodiscover" and x["status"] == 200 for x in lines)


async def test_probe_autodiscover_failures_are_verdicts(tmp_path):
    code, out, _ = await _probe(tmp_path, "wrong", None, "--autodiscover", "user1@example.com")
    assert code == 1 and "401 on Autodiscover: check the user name format" in out
    code, out, _ = await _probe(tmp_path, "Pass1!", None, "--autodiscover", "user2@example.com")
    assert code == 1 and "[FAIL] Autodiscover: Autodiscover error Status 2" in out


def test_probe_autodiscover_usage():
    assert main(["probe", "--user", "user1"]) == 2  # neither a URL nor an e-mail address
    assert main(["probe", "http://127.0.0.1:1/Microsoft-Server-ActiveSync", "--user", "u",
                 "--autodiscover", "not-an-address"]) == 2
