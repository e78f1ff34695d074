"""End to end: scenarios run in-process against the embedded target over real loopback HTTP."""

import asyncio
import os
import subprocess
import sys

import pytest

from loadgen.cli import start
from loadgen import scenario
from loadgen.exchange.server import DEFAULT_FOLDERS
from loadgen.exchange.store import INBOX
from loadgen.exchange.state import TargetState


def make(devices=30, duration=3, versions='{ "14.1" = 1 }', profiles='{ modern = 1 }', extra="", mode="poll",
         target=""):
    text = f"""
name = "e2e"
duration = {duration}
seed = 5
[target]
{target}
[auth]
users = {devices}
[population]
devices = {devices}
devices_per_user = 1
versions = {versions}
profiles = {profiles}
[load]
ramp_up = 0.5
think_time = 0.2
timeout = 10
graceful_stop = 2
mode = "{mode}"
{extra}
"""
    return scenario.parse(text, "e2e.toml")


def run(sc, **kw):
    return asyncio.run(start.run(sc, progress=False, **kw))


@pytest.mark.parametrize("version", ["12.0", "12.1", "14.0", "14.1", "16.0", "16.1"])
def test_every_device_ends_provisioned_with_the_final_key(version):
    result = run(make(devices=20, versions='{ "%s" = 1 }' % version))
    state = result.target.state
    assert result.stats.errors() == 0
    assert {d.state for d in result.devices} == {"provisioned"}
    for d in result.devices:
        assert d.prov.policy_key == state.policy_key
        assert d.folders == len(DEFAULT_FOLDERS)  # the whole hierarchy arrived
        record = state.devices[(d.user, d.ident.device_id)]
        assert record.ack_status == 1 and record.acked_key == state.policy_key
        if version == "12.0":
            assert record.device_info == {}
        else:  # in Provision (14.1+) or through Settings (12.1 / 14.0)
            assert record.device_info["Model"] == d.profile.model
    assert result.stats.provisionings[("provisioned", "1")] == 20
    assert result.stats.requests[("FolderSync", "200")] == 20  # the hierarchy once per device
    assert result.stats.requests[("Sync", "200")] > 40  # initial Sync, fetch, then polling
    # the generated Inbox arrived, whole (the device pages through it with MoreAvailable)
    inbox = {d.user: state.mailbox(d.user).folder(INBOX).size() for d in result.devices}
    assert [d.items for d in result.devices] == [inbox[d.user] for d in result.devices]


def test_policy_change_mid_run_reprovisions_everyone():
    state = TargetState(users=20, seed=2)

    async def scenario_with_change():
        sc = make(devices=20, duration=4, versions='{ "14.1" = 1, "12.1" = 1 }')
        task = asyncio.create_task(start.run(sc, progress=False, target_state=state))
        await asyncio.sleep(2.0)
        state.change_policy(MinDevicePasswordLength=6)
        return await task

    result = asyncio.run(scenario_with_change())
    assert {d.state for d in result.devices} == {"provisioned"}
    assert all(d.prov.policy_key == state.policy_key for d in result.devices)
    triggers = result.stats.reprovisions
    assert triggers["144"] > 0 and triggers["449"] > 0  # 14.1 in-band, 12.1 bare 449
    assert result.stats.errors() == 0


def test_partial_success_device_is_refused_and_waits():
    result = run(make(devices=6, profiles='{ no_encryption = 1 }'), target_state=TargetState(
        users=6, policy=dict(__import__("loadgen.eas.policy", fromlist=["x"]).SEED_POLICY,
                             RequireDeviceEncryption="1")))
    assert {d.state for d in result.devices} == {"refused"}
    assert result.stats.provisionings[("refused_139", "2")] == 6
    # waits the retry interval (1 h by default) instead of looping
    assert result.stats.requests[("Provision", "200")] == 12


def test_non_provisionable_devices():
    result = run(make(devices=5, profiles='{ non_provisionable = 1 }', duration=2))
    assert {d.state for d in result.devices} == {"refused"}  # 141: not allowed by default
    result = run(make(devices=5, profiles='{ non_provisionable = 1 }', duration=2,
                      target="allow_non_provisionable = true"))
    assert {d.state for d in result.devices} == {"unprovisioned"}
    assert result.stats.errors() == 0 and not result.stats.provisionings


def test_remote_wipe_during_run():
    state = TargetState(users=4, seed=9)

    async def go():
        task = asyncio.create_task(start.run(make(devices=4, duration=3), progress=False, target_state=state))
        await asyncio.sleep(1.5)
        for record in list(state.devices.values())[:2]:
            state.request_wipe(record)
        return await task

    result = asyncio.run(go())
    states = sorted(d.state for d in result.devices)
    assert states == ["provisioned", "provisioned", "wiped", "wiped"]
    assert result.stats.wipes["1"] == 2 and result.stats.reprovisions["140"] == 2


def test_cli_run_prints_summary_and_exits_0(tmp_path):
    f = tmp_path / "tiny.toml"
    f.write_text('duration = 2\n[population]\ndevices = 10\n[load]\nramp_up = 0.2\nthink_time = 0.3\n')
    out = subprocess.run([sys.executable, "-m", "loadgen", "run", str(f), "--metrics-listen", "127.0.0.1:0",
                          "--json", str(tmp_path / "s.json")],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert "Requests by command and HTTP status" in out.stdout
    assert "Latency by command" in out.stdout and "provisioned" in out.stdout
    assert "Pass" not in out.stdout + out.stderr  # no credentials anywhere
    assert (tmp_path / "s.json").stat().st_size > 0


def test_wiped_device_reenrols_as_a_new_device():
    state = TargetState(users=2, seed=4)

    async def go():
        sc = make(devices=2, duration=3, extra="reenrol_after = 0.3\n")
        task = asyncio.create_task(start.run(sc, progress=False, target_state=state))
        await asyncio.sleep(1.0)
        state.request_wipe(list(state.devices.values())[0])
        return await task

    result = asyncio.run(go())
    assert {d.state for d in result.devices} == {"provisioned"}
    wiped = [d for d in result.devices if d.generation == 1]
    assert len(wiped) == 1 and result.stats.reenrolments == 1 and result.stats.wipes["1"] == 1
    assert (wiped[0].user, wiped[0].ident.device_id) in state.devices  # a new partnership
    assert len(state.devices) == 3


def test_backoff_duration_header_parsing():
    from loadgen.device.life import _backoff_ms

    assert _backoff_ms("250") == 250 and _backoff_ms("L/-470") == 0 and _backoff_ms("") == 0


def test_direct_push_pings_wake_on_new_mail_and_sync():
    sc = make(devices=10, duration=4, mode="ping", extra='heartbeat = "2s"',
              target="ping_min = 1\nmail_per_user_per_hour = 3600")
    result = run(sc)
    st = result.stats
    assert st.errors() == 0
    assert st.eas_statuses[("Ping", 2)] > 0  # woken by new mail
    assert st.eas_statuses[("Ping", 1)] >= 0
    # a Sync follows every Ping that found changes (but those at the very end of the run)
    assert st.requests[("Sync", "200")] >= 20 + st.eas_statuses[("Ping", 2)] - 10
    assert all(d.items >= 5 for d in result.devices)


def test_heartbeat_out_of_bounds_takes_the_servers_bound():
    sc = make(devices=2, duration=3, mode="ping", extra='heartbeat = "1s"', target="ping_min = 2")
    result = run(sc)
    assert result.stats.eas_statuses[("Ping", 5)] == 2  # once per device, then the bound is used
    assert all(d.heartbeat == 2 for d in result.devices)


def test_sync_truncation_is_clamped_to_the_policy():
    from loadgen.device.life import Device

    state = TargetState(users=2, policy=dict(__import__("loadgen.eas.policy", fromlist=["x"]).SEED_POLICY,
                                             MaxEmailBodyTruncationSize="1"))
    result = run(make(devices=2, duration=2), target_state=state)
    d = result.devices[0]
    assert isinstance(d, Device) and d.prov.applied.max_body_truncation_kb == 1
    body = d._sync_template().render("1", "1")
    tree = __import__("_wbxml").decode(body)
    assert __import__("_wbxml").findtext(tree, "AirSync:Collections/AirSync:Collection/AirSync:Options/"
                                         "AirSyncBase:BodyPreference/AirSyncBase:TruncationSize") == "1024"


def test_thresholds_events_out_dir_and_exit_status(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('duration = 3\n[population]\ndevices = 6\n[load]\nramp_up = 0.2\nthink_time = 0.3\nmode = "poll"\n'
                 '[thresholds]\n"Provision.p99" = "< 5"\n"devices.provisioned" = ">= 0.99"\n"errors.rate" = "< 0.01"\n'
                 '[[events]]\nat = 1.5\naction = "change_policy"\nsettings = { MinDevicePasswordLength = 6 }\n')
    out = subprocess.run([sys.executable, "-m", "loadgen", "run", str(f), "--metrics-listen", "", "-q",
                          "--out", str(tmp_path / "res")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Thresholds" in out.stdout and "FAIL" not in out.stdout and "policy changed" in out.stdout
    import orjson

    data = orjson.loads((tmp_path / "res" / "summary.json").read_bytes())
    assert data["reprovisions"]["144"] == 6 and all(t["passed"] for t in data["thresholds"])
    assert "Provision" in data["histograms"]
    series = data["series"]  # one sample a second, the last one at the end
    assert len(series) >= 3 and all(sum(p["devices"].values()) == 6 for p in series)
    assert sum(n for p in series for k, n in p["requests"].items()) == data["requests"]
    assert sum(p["reprovisions"].get("144", 0) for p in series) == 6
    junit = (tmp_path / "res" / "junit.xml").read_text()
    assert junit.count("<testcase") == 3 and "<failure" not in junit
    # a threshold that fails, and one whose metric has no data: exit 1
    f.write_text(f.read_text().replace('"Provision.p99" = "< 5"', '"Provision.p99" = "< 0.000001"\n"Ping.p50" = "< 1"'))
    out = subprocess.run([sys.executable, "-m", "loadgen", "run", str(f), "--metrics-listen", "", "-q",
                          "--out", str(tmp_path / "res2")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    junit = (tmp_path / "res2" / "junit.xml").read_text()
    assert junit.count("<failure") == 2 and "no data for Ping.p50" in junit


def test_unreachable_target_exits_3(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    f = tmp_path / "u.toml"
    f.write_text('duration = 1.5\n[target]\nurl = "http://127.0.0.1:%d/Microsoft-Server-ActiveSync"\n'
                 '[population]\ndevices = 2\n[load]\nramp_up = 0\nbackoff = 0.2\n' % port)
    out = subprocess.run([sys.executable, "-m", "loadgen", "run", str(f), "--metrics-listen", "", "-q"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and "never answered" in out.stderr


def test_sigterm_still_prints_the_summary(tmp_path):
    import signal
    import time

    f = tmp_path / "s.toml"
    f.write_text('duration = 60\n[population]\ndevices = 4\n[load]\nramp_up = 0\nthink_time = 0.2\nmode = "poll"\n'
                 'graceful_stop = 1\n')
    proc = subprocess.Popen([sys.executable, "-m", "loadgen", "run", str(f), "--metrics-listen", "", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "interrupted" in stdout and "Accounting" in stdout


def test_open_model_schedule_follows_the_rate():
    from loadgen.run.engine import schedule

    sc = scenario.parse('duration = 10\n[population]\ndevices = 1000\n[auth]\nusers = 1000\n'
                        '[load]\nmodel = "open"\narrival_rate = 10\n'
                        'stages = [ { duration = "4s", target = 30 }, { duration = "2s", target = 30 } ]\n', "o.toml")
    offsets = schedule(sc)
    arrived = [o for o in offsets if o is not None]
    # 4 s ramping 10 -> 30 (80), 2 s at 30 (60), then 4 s holding 30 (120): 260 arrivals
    assert len(arrived) == 260 and arrived == sorted(arrived)
    assert sum(1 for o in arrived if o < 4.0) == 80 and arrived[0] == 0.0
    assert all(o is None for o in offsets[len(arrived):])
    closed = schedule(scenario.parse('[population]\ndevices = 4\n[load]\nramp_up = 2\n', "c.toml"))
    assert closed == [0.0, 0.5, 1.0, 1.5]


def test_open_model_run_records_enrolment_from_the_intended_start():
    sc = make(devices=30, duration=3, extra='model = "open"\narrival_rate = 15')
    result = run(sc)
    st = result.stats
    arrived = [d for d in result.devices if d.intended_start is not None]
    assert 40 > len(arrived) >= 30  # 3 s at 15/s is 45 arrivals, capped by the 30-device pool
    assert st.timings["Enrolment"].total == st.timings["EnrolmentUncorrected"].total == 30
    assert st.percentiles("Enrolment")["max_ms"] >= st.percentiles("EnrolmentUncorrected")["max_ms"]
    assert st.timings["StartLag"].total == 30
    assert "Enrolment" not in st.latency  # timings are not requests


def test_run_report_and_report_command(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('duration = 2\n[population]\ndevices = 4\n[load]\nramp_up = 0.2\nthink_time = 0.3\nmode = "poll"\n')
    out = subprocess.run([sys.executable, "-m", "loadgen", "run", str(f), "--metrics-listen", "", "-q",
                          "--out", str(tmp_path / "o"), "--report", str(tmp_path / "r.html")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    html = (tmp_path / "r.html").read_text()
    assert html.startswith("<!DOCTYPE html>") or html.lower().startswith("<!doctype html>")
    out = subprocess.run([sys.executable, "-m", "loadgen", "report", str(tmp_path / "o"), str(tmp_path / "o"),
                          "-o", str(tmp_path / "m.html")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "from 2 result(s)" in out.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = subprocess.run([sys.executable, "-m", "loadgen", "report", str(bad), "-o", str(tmp_path / "x.html")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_opaque_policy_keys_round_trip():
    state = TargetState(users=4, opaque_keys=True, seed=3)
    result = run(make(devices=4, duration=2), target_state=state)
    assert len(state.policy_key) == 40 and not state.policy_key.isdigit()
    assert {d.state for d in result.devices} == {"provisioned"}
    assert all(d.prov.policy_key == state.policy_key for d in result.devices) and result.stats.errors() == 0


def test_password_rechecked_after_policy_change():
    state = TargetState(users=6, seed=5)

    async def go():
        task = asyncio.create_task(start.run(make(devices=6, duration=3.5), progress=False, target_state=state))
        await asyncio.sleep(1.5)
        state.change_policy(MinDevicePasswordLength=8, AlphanumericDevicePasswordRequired=1,
                            MinDevicePasswordComplexCharacters=3, AllowSimpleDevicePassword=0)
        return await task

    result = asyncio.run(go())
    from loadgen.eas.password import violations

    st = result.stats
    # "2580" is 4 digits: too short, not alphanumeric, not complex (2580 is not simple)
    assert st.password_changes == {"too_short": 6, "not_alphanumeric": 6, "not_complex": 6}
    assert all(violations(d.password, d.prov.applied) == () for d in result.devices)
    assert all(len(d.password.text) >= 8 for d in result.devices)


def test_failed_unlocks_code_word_then_local_wipe_and_reenrolment():
    result = run(make(devices=3, duration=4, profiles='{ fumbler = 1 }', extra="reenrol_after = 0.5"))
    st = result.stats
    # 12 failed unlocks against MaxDevicePasswordFailedAttempts 8: code word at 4, wipe at 8
    assert st.local_wipes >= 3 and st.code_words >= 3 and st.reenrolments >= 3
    assert all(d.generation >= 1 for d in result.devices)
    assert st.wipes == {}  # local wipes are not remote wipes


def test_tls_precheck_message_never_shows_the_urls_credentials(monkeypatch):
    """The devices' TLS check before the run names the target without its user info (RFC 3986 3.2.1)."""
    import io
    import socket

    from loadgen.wire import tls

    async def untrusted(url, ctx):
        return "certificate not trusted (test)"

    monkeypatch.setattr(tls, "certificate_problem", untrusted)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sc = scenario.parse('duration = 0.5\n[target]\nurl = "https://alice:s3cret@127.0.0.1:%d/Microsoft-Server-ActiveSync"\n'
                        '[population]\ndevices = 1\n[load]\nramp_up = 0\ngraceful_stop = 0.5\n' % port, "t.toml")
    stream = io.StringIO()
    result = asyncio.run(start.run(sc, progress=False, stream=stream))
    text = stream.getvalue()
    assert "certificate not trusted (test)" in text and "127.0.0.1:%d" % port in text
    assert "s3cret" not in text and "alice" not in text
    assert result.tls_problem


def test_command_events_are_saved_without_environment_values():
    """A command event's result (summary.json, the report) shows NAME=*** for its environment prefix."""
    sc = make(devices=1, duration=1.5, extra='[[events]]\nat = 0\naction = "command"\nrun = "API_TOKEN=s3cret true"\n')
    result = run(sc)
    (event,) = result.stats.events
    assert event[1] == "command" and event[2].startswith("exit 0: API_TOKEN=***")
    assert "s3cret" not in repr(result.stats.events)
