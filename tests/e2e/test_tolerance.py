"""Real servers' habits, end to end against the embedded target's modes and faults:
easload run (the engine) and easload probe, one test each."""

import asyncio
import os
import subprocess
import sys

import pytest

from loadgen import scenario
from loadgen.cli.start import run
from loadgen.exchange.faults import Faults
from loadgen.exchange.server import start_target
from loadgen.exchange.state import TargetState

RUN = ('duration = 3\n[population]\ndevices = 6\n[load]\nramp_up = 0.5\nmode = "poll"\nthink_time = 0.5\n'
       'graceful_stop = 1\n[target]\nping_min = 1\n')


async def _run(extra_target="", events=""):
    sc = scenario.parse(RUN + extra_target + events)
    result = await run(sc, progress=False, attach_metrics=False)
    return result, result.stats


def _ok(stats, command):
    return sum(n for (c, outcome, _s), n in stats.by_key.items() if c == command and outcome == "ok")


def _healthy(result, stats, states=("provisioned",)):
    assert sum(stats.final_states[s] for s in states) == 6, stats.final_states
    assert _ok(stats, "Sync") >= 12 and _ok(stats, "FolderSync") >= 6


async def _probe(state, *extra, faults=None, user="user1"):
    runner, target, url = await start_target("127.0.0.1", 0, state, faults=faults)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadgen", "probe", url, "--user", user, "--heartbeat", "1", *extra,
            env=dict(os.environ, EAS_PASSWORD="Pass1!"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out.decode() + err.decode(), target
    finally:
        await runner.cleanup()


# -- EAS mounted under another path (SOGo)

async def test_run_with_eas_under_another_path():
    result, stats = await _run('path = "/SOGo/Microsoft-Server-ActiveSync"\n')
    assert result.target_url.endswith("/SOGo/Microsoft-Server-ActiveSync")
    _healthy(result, stats)


async def test_probe_with_eas_under_another_path():
    code, out, _ = await _probe(TargetState(users=3, ping_min=1, eas_path="/SOGo/Microsoft-Server-ActiveSync"))
    assert code == 0, out
    assert "--> POST /SOGo/Microsoft-Server-ActiveSync" in out


async def test_the_default_path_is_not_served_when_mounted_elsewhere():
    import aiohttp

    runner, target, url = await start_target("127.0.0.1", 0, TargetState(users=3, eas_path="/SOGo/Microsoft-Server-ActiveSync"))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.options(url.replace("/SOGo", "")) as resp:
                assert resp.status == 404
    finally:
        await runner.cleanup()


# -- a server without policies (Policy Status 2)

async def test_run_against_a_server_without_policies():
    result, stats = await _run("no_policy = true\n")
    _healthy(result, stats, ("no_policy",))
    assert stats.provisionings[("no_policy", 0)] + sum(n for (r, _a), n in stats.provisionings.items()
                                                       if r == "no_policy") >= 6


async def test_probe_against_a_server_without_policies():
    code, out, _ = await _probe(TargetState(users=3, ping_min=1, no_policy=True))
    assert code == 0 and "Policy Status 2" in out


# -- connections closed after every response, without Connection: close

async def test_run_with_connections_closed_after_every_response():
    result, stats = await _run(events='[[events]]\nat = 0\naction = "faults"\nsettings = { close_after_response = true }\n')
    _healthy(result, stats)
    assert stats.failures == 0  # each request went out again on a fresh connection: no error


async def test_probe_names_connections_closed_after_every_response():
    code, out, target = await _probe(TargetState(users=3, ping_min=1), faults=Faults(close_after_response=True))
    assert code == 0, out
    assert "the server closed the connection after the response without saying so" in out
    assert target.faults.injected["close"] >= 5


# -- an OPTIONS command list that omits Provision

async def test_probe_options_without_provision():
    code, out, _ = await _probe(TargetState(users=3, ping_min=1, options_without_provision=True))
    assert "the server's OPTIONS lists no Provision command" in out
    assert code == 0  # the device provisions all the same: the list is advice, not a verdict


async def test_run_with_options_without_provision():
    result, stats = await _run("options_without_provision = true\n")
    _healthy(result, stats)


# -- a server that never checks the policy key

async def test_run_against_a_server_that_ignores_the_policy_key():
    # the policy changes at 1 s: a server that checks keys would answer 144/449 and make every device
    # provision again; this one never looks at X-MS-PolicyKey, so nobody does
    result, stats = await _run("ignore_policy_key = true\n", '[[events]]\nat = 1\naction = "change_policy"\n'
                               'settings = { MinDevicePasswordLength = 6 }\n')
    _healthy(result, stats)
    assert sum(stats.reprovisions.values()) == 0
    checked, stats2 = await _run("", '[[events]]\nat = 1\naction = "change_policy"\n'
                                 'settings = { MinDevicePasswordLength = 6 }\n')
    assert sum(stats2.reprovisions.values()) >= 6  # the same run against a server that checks


async def test_probe_against_a_server_that_ignores_the_policy_key():
    code, out, _ = await _probe(TargetState(users=3, ping_min=1, ignore_policy_key=True))
    assert code == 0, out


# -- HTTP Basic realm challenges before the credentials are accepted

async def test_run_with_basic_realm_challenges():
    result, stats = await _run('challenge_first = true\nauth_realm = "SOGo"\n')
    _healthy(result, stats)
    challenges = sum(n for (c, outcome, s), n in stats.by_key.items() if outcome == "challenge")
    assert challenges >= 6  # at least one per device connection, each answered
    assert stats.final_states["auth_failed"] == 0
    # an answered challenge is part of the handshake, not an error: errors.rate does not count it
    from loadgen.results.thresholds import Figures
    assert stats.failures == sum(n for (c, o, s), n in stats.by_key.items() if o not in ("ok", "reprovision", "challenge"))
    assert Figures.of_stats(stats).value("errors.rate") * stats.total == stats.failures


async def test_probe_with_basic_realm_challenges():
    code, out, _ = await _probe(TargetState(users=3, ping_min=1, challenge_first=True, auth_realm="SOGo"))
    assert code == 0, out
    assert 'the server challenged before accepting the credentials (Basic realm="SOGo")' in out


async def test_a_wrong_password_is_still_an_authentication_failure():
    sc = scenario.parse(RUN)  # the target's passwords are not the scenario's
    state = TargetState(users=100, password_pattern="Other{n}!", challenge_first=True)
    result = await run(sc, progress=False, attach_metrics=False, target_state=state)
    assert result.stats.final_states["auth_failed"] == 6


# -- Autodiscover with the modes: redirect to another address, then the mounted path

async def test_probe_autodiscover_redirect_and_mount_path():
    state = TargetState(users=3, ping_min=1, eas_path="/SOGo/Microsoft-Server-ActiveSync",
                        autodiscover_redirect={"example.com": "example.org"})
    code, out, _ = await _probe(state, "--autodiscover", "user1@example.com")
    assert code == 0, out
    assert "<Redirect>user1@example.org</Redirect>" in out
    assert "Autodiscover: the EAS URL is http://127.0.0.1:" in out and "after 1 redirect(s)" in out
