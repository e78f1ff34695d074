"""`easload run --target URL0,URL1,...` and `[target] url = [...]`: a multi-process target started
on its own (`easload target --processes N`, loadgen/exchange/cluster.py) driven by a separate run.

Process k of the target owns the users n % N == k and refuses the others (401); the run sends
the device of user n to URL n % N (engine.build_population), so every device enrols and syncs
with 0 errors and each process sees only its own users.  A bad list is a usage error (exit 2)
naming the field (and, in a scenario, the file and line).
"""

import asyncio
import os
import shutil
import signal
import subprocess
import sys

import orjson
import pytest

from loadgen.run import plan
from loadgen import scenario
from loadgen.cli.app import main
from loadgen.scenario import ScenarioError
from loadgen.exchange.cluster import TargetCluster

SMALL = ('duration = 2.5\nseed = 3\n[auth]\nusers = 8\n[population]\ndevices = 16\ndevices_per_user = 2\n'
         '[load]\nramp_up = 0.3\nmode = "poll"\nthink_time = 0.3\ntimeout = 5\n'
         '[thresholds]\n"errors.count" = "== 0"\n')


async def _easload(*args, timeout=90):
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "loadgen", *args, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("workers", [1, 2])
async def test_run_against_a_separately_started_cluster(tmp_path, workers):
    """Every device provisions and syncs, 0 errors, and process k holds only the users n % 2 == k
    (no 401 anywhere) -- in one process and with --workers 2 (each worker gets the list)."""
    f = tmp_path / "small.toml"
    f.write_text(SMALL)
    async with TargetCluster(2, listen=("127.0.0.1:0",), users=8, seed=3) as cluster:
        urls = cluster.urls
        assert [u.split("/")[2].split(":")[0] for u in urls] == ["127.0.0.1", "127.0.0.2"]
        code, out, err = await _easload("run", str(f), "--target", ",".join(urls), "--workers", str(workers),
                                        "--metrics-listen", "", "-q", "--out", str(tmp_path / "o"))
        assert code == 0, out + err
        data = orjson.loads((tmp_path / "o" / "summary.json").read_bytes())
        assert data["devices"] == {"provisioned": 16}
        assert data["errors"] == 0
        by = data["by_command_status"]
        assert set(by) == {"Provision 200", "FolderSync 200", "Sync 200"}  # nothing else: no 401, no error
        assert by["Provision 200"] == 32 and by["FolderSync 200"] == 16
        assert by["Sync 200"] >= 32  # every device's initial Sync and first fetch, then polls
        assert data["target"] == ", ".join(urls)  # the URLs, as given (no credentials to hide)
        start = next(x for x in err.splitlines() if x.startswith("easload: scenario"))
        assert "2 URLs (user n -> URL n %% 2): %s, %s" % tuple(urls) in start
        assert "request-rate cap: off (off by default on loopback)" in start
        summary = next(x for x in out.splitlines() if x.startswith("easload summary:"))
        assert urls[0] in summary and urls[1] in summary
        answers = await cluster.broadcast("GET", "/admin/devices")
        for k, answer in enumerate(answers):
            users = {d["user"] for d in answer["devices"]}
            assert users == {"user%d" % n for n in range(8) if n % 2 == k}, k
            assert len(answer["devices"]) == 8  # 4 users x 2 devices, each partnership in its user's process
        counters = await cluster.counters()
        assert not [r for r in counters["requests"] if r["http_status"] == 401]
        synced = sum(r["count"] for r in counters["requests"] if r["command"] == "Sync" and r["http_status"] == 200)
        assert synced >= 16


async def test_the_printed_list_is_ready_to_paste(tmp_path):
    """`easload target --processes 2` prints the comma-separated list; pasted into --target, it runs."""
    f = tmp_path / "small.toml"
    f.write_text(SMALL)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadgen", "target", "--processes", "2", "--listen", "127.0.0.1:0",
        "--admin-listen", "", "--users", "8", stderr=subprocess.PIPE)
    try:
        line = ""
        while "--target" not in line:
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            assert line, "easload target ended before printing the list"
        pasted = line.split("--target", 1)[1].strip()
        assert pasted.count(",") == 1 and pasted.startswith("http://127.0.0.1:") and ",http://127.0.0.2:" in pasted
        code, out, err = await _easload("run", str(f), "--target", pasted, "--metrics-listen", "", "-q")
        assert code == 0, out + err
        assert "16 devices" in out and ", 0 errors," in out
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("value, needle", [
    ("http://127.0.0.1:1/x,ftp://127.0.0.2:1/x", "--target, URL 2 of 2: 'ftp://127.0.0.2:1/x' is not an http"),
    ("http://127.0.0.1:1/x,http://127.0.0.1:1/x/", "--target, URL 2 of 2 (http://127.0.0.1:1/x/) is URL 1 again"),
    ("http://127.0.0.1:1/x,,http://127.0.0.2:1/x", "--target, URL 2 of 3 is empty"),
    ("", "--target is empty"),
    (",", "--target, URL 1 of 2 is empty"),
    ("http:///x,http://127.0.0.2:1/x", "--target, URL 1 of 2: 'http:///x' has no host"),
    ("http://127.0.0.1:99999/x,http://127.0.0.2:1/x",
     "--target, URL 1 of 2: 'http://127.0.0.1:99999/x' is not a valid URL (Port out of range"),
    ("nonsense", "--target: 'nonsense' is not an http:// or https:// URL"),
])
def test_bad_target_option_exit_2(tmp_path, capsys, value, needle):
    f = tmp_path / "s.toml"
    f.write_text(SMALL)
    assert main(["run", str(f), "--target", value, "--metrics-listen", "", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("easload: ") and needle in err[0], err


@pytest.mark.parametrize("url, needle", [
    ('["http://127.0.0.1:1/x", "https://127.0.0.2/x"]', None),
    ('[]', "s.toml:3: 'url' is empty"),
    ('["http://127.0.0.1:1/x", "HTTP://127.0.0.1:1/x"]', "s.toml:3: 'url', URL 2 of 2 (http://127.0.0.1:1/x) is URL 1"),
    ('["http://127.0.0.1:1/x", "mail.example.com"]', "s.toml:3: 'url', URL 2 of 2: 'mail.example.com' is not an http"),
    ('["http://127.0.0.1:1/x", 8443]', "s.toml:3: 'url', URL 2 of 2 must be a string, not 8443"),
    ('["embedded", "http://127.0.0.1:1/x"]', "s.toml:3: 'url', URL 1 of 2: 'embedded' is not an http"),
    ('"https://"', "s.toml:3: 'url': 'https://' has no host"),
    ('42', "s.toml:3: 'url' must be \"embedded\", an http(s):// URL or an array of URLs"),
])
def test_url_list_in_a_scenario(tmp_path, capsys, url, needle):
    text = 'duration = 1\n[target]\nurl = %s\n[population]\ndevices = 2\n' % url
    if needle is None:
        sc = scenario.parse(text, "s.toml")
        assert sc.target.url == ["http://127.0.0.1:1/x", "https://127.0.0.2/x"] and not sc.target.embedded
        assert sc.target.urls == sc.target.url
        return
    with pytest.raises(ScenarioError) as info:
        scenario.parse(text, "s.toml")
    assert needle in str(info.value) and "\n" not in str(info.value)
    f = tmp_path / "s.toml"
    f.write_text(text)
    assert main(["run", str(f), "--metrics-listen", "", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["easload: " + str(info.value).replace("s.toml", str(f), 1)]


def test_a_list_of_one_is_one_url_and_credentials_never_shown(capsys):
    sc = scenario.parse('[target]\nurl = ["https://u:secret@mail.example.com/x"]\n')
    assert sc.target.url == "https://u:secret@mail.example.com/x"  # one URL: as before
    with pytest.raises(ScenarioError) as info:
        scenario.parse('[target]\nurl = ["https://u:secret@a.example/x", "https://u:secret@a.example/x"]\n')
    assert "secret" not in str(info.value) and "https://a.example/x" in str(info.value)


def test_plan_rate_cap_and_confirmation_with_a_list(tmp_path, capsys):
    """The plan lists the URLs with their devices; one remote URL makes the target remote: the rate
    cap's default applies and more than 10 devices need --yes."""
    text = ('[target]\nurl = ["http://127.0.0.1:1/x", "https://u:secret@mail.example.com/x"]\n[auth]\nusers = 10\n'
            '[population]\ndevices = 20\n')
    p = plan.build(scenario.parse(text))
    assert p["target_urls"] == [{"url": "http://127.0.0.1:1/x", "devices": 10, "users": 5},
                                {"url": "https://mail.example.com/x", "devices": 10, "users": 5}]
    assert p["rate_cap"]["requests_per_s"] == 50 and "not on this machine" in p["rate_cap"]["why"]
    shown = plan.text(p)
    assert "secret" not in shown and "target      2 URLs, the device of user n to URL n % 2" in shown
    loopback = plan.build(scenario.parse(text.replace("https://u:secret@mail.example.com", "http://127.0.0.2:1")))
    assert loopback["rate_cap"]["requests_per_s"] == 0
    f = tmp_path / "r.toml"
    f.write_text(text)
    assert main(["run", str(f), "--metrics-listen", "", "-q"]) == 2
    err = capsys.readouterr().err
    assert "20 devices against https://mail.example.com/x, which is not on this machine: pass --yes" in err
    assert "secret" not in err


def test_probe_refuses_a_list(capsys, monkeypatch):
    monkeypatch.setenv("EAS_PASSWORD", "x")
    assert main(["probe", "http://127.0.0.1:1/x,http://127.0.0.2:1/x", "--user", "user1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "probe takes one URL" in err[0] and "URL n % N" in err[0]


@pytest.mark.skipif(shutil.which("openssl") is None and not os.environ.get("EASLOAD_REQUIRE_OPENSSL"),
                    reason="needs the openssl command")
async def test_tls_preflight_checks_every_host_of_the_list(tmp_path):
    """An https list whose CA the devices are not given: every process's host is named (one check of
    every URL before the run, loadgen/cli/start.py), exit 3; with ca_file the run passes."""
    from loadgen.exchange.tls import TemporaryPKI, loopback_hosts

    f = tmp_path / "small.toml"
    with TemporaryPKI(loopback_hosts(["127.0.0.1", "127.0.0.2"])) as pki:
        tls = dict(tls_cert=pki.cert, tls_key=pki.key)
        async with TargetCluster(2, listen=("127.0.0.1:0",), users=8, seed=3, server_options=tls) as cluster:
            urls = cluster.urls
            assert all(u.startswith("https://") for u in urls)
            f.write_text(SMALL.replace("duration = 2.5", "duration = 1"))
            code, out, err = await _easload("run", str(f), "--target", ",".join(urls), "--metrics-listen", "", "-q")
            assert code == 3, out + err
            for url in urls:
                assert "certificate not trusted" in err and "at %s: the devices cannot connect" % url in err, err
            assert "Traceback" not in err
            f.write_text(SMALL.replace("duration = 2.5", "duration = 1").replace(
                "[auth]", '[target]\nca_file = "%s"\n[auth]' % pki.ca))
            code, out, err = await _easload("run", str(f), "--target", ",".join(urls), "--metrics-listen", "", "-q")
            assert code == 0, out + err
            assert "certificate not trusted" not in err and ", 0 errors," in out
