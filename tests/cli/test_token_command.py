"""Bearer tokens for a target started on its own: ``easload target --token-secret-file F`` signs and
checks tokens with the secret kept in F (loadgen/exchange/bearer.py), ``easload token --secret-file F
USER`` prints one, and a run names that command as ``[auth] token_command``: its outlook-cloud devices
get in with tokens where the scenario's passwords are wrong.  The secret never reaches argv, and a
missing or damaged file is one line naming it (exit 2)."""

import asyncio
import os
import stat
import subprocess
import sys
import time

import pytest

from loadgen import scenario
from loadgen.cli import start
from loadgen.exchange import bearer


def test_the_secret_file_is_made_private_and_read_back(tmp_path):
    path = tmp_path / "secret"
    made = bearer.secret_from_file(str(path), create=True)
    assert len(made) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert bearer.secret_from_file(str(path)) == made == bearer.secret_from_file(str(path), create=True)
    bad = tmp_path / "bad"
    bad.write_text("not hex at all\n")
    for target, words in ((bad, "not 64 hex digits"), (tmp_path / "none", "no such file")):
        with pytest.raises(bearer.SecretFileError) as exc:
            bearer.secret_from_file(str(target))
        assert str(target) in str(exc.value) and words in str(exc.value)


def test_easload_token_prints_a_token_the_secret_checks(tmp_path):
    path = tmp_path / "secret"
    secret = bearer.secret_from_file(str(path), create=True)
    proc = subprocess.run([sys.executable, "-m", "loadgen", "token", "--secret-file", str(path), "--lifetime", "2m",
                           "user7"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    user, expiry = bearer.check(secret, proc.stdout.strip())
    assert user == "user7" and 60 < expiry - time.time() <= 120
    assert secret.hex() not in proc.stdout + proc.stderr
    for args, words in (([str(tmp_path / "none"), "user7"], "no such file"),
                        ([str(path), "two words"], "USER")):
        proc = subprocess.run([sys.executable, "-m", "loadgen", "token", "--secret-file", *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


async def _target(secret_file, users):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadgen", "target", "--listen", "127.0.0.1:0", "--admin-listen", "", "--users",
        str(users), "--ping-min", "1", "--token-secret-file", secret_file, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    lines = []
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        if not line:
            raise AssertionError("easload target ended: %s" % "".join(lines))
        lines.append(line)
        if "listening on" in line:
            return proc, line.split("listening on ", 1)[1].split()[0], "".join(lines)


def test_a_run_gets_bearer_tokens_from_a_target_started_on_its_own(tmp_path):
    devices = 4
    secret_file = str(tmp_path / "secret")

    async def main():
        proc, url, said = await _target(secret_file, devices)
        try:
            assert "easload token --secret-file %s" % secret_file in said
            secret = bearer.secret_from_file(secret_file)  # made by the target, 0600
            sc = scenario.parse(f"""
name = "cloud-external"
duration = 4
seed = 3
[target]
url = "{url}"
[auth]
users = {devices}
password = "Wrong{{n}}"
token_command = "{sys.executable} -m loadgen token --secret-file {secret_file}"
[population]
devices = {devices}
devices_per_user = 1
clients = {{ outlook-cloud = 1 }}
[load]
ramp_up = 1
mode = "ping"
heartbeat = 1
timeout = 20
graceful_stop = 2
""", "cloud.toml")
            result = await start.run(sc, progress=False)
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
        return result, secret

    result, secret = asyncio.run(main())
    assert result.device_errors == {}
    # the passwords are wrong: the devices got in with the command's tokens, signed with the file's secret
    assert all(d.state == "provisioned" for d in result.devices), [(d.state, d.detail) for d in result.devices]
    for d in result.devices:
        head = d.endpoint._auth
        assert head.startswith(b"Authorization: Bearer eas1.")
        token = head.split(b"Bearer ", 1)[1].split(b"\r\n")[0].decode()
        assert bearer.check(secret, token)[0] == d.user
