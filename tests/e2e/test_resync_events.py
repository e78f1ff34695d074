"""End to end: the incident events ``resync`` and ``network_drop``.

On the embedded target the target acts (loadgen/exchange/state.py TargetState.resync: the chosen
devices' sync states dropped, so a held Ping is answered Status 7 at once, a FolderSync with a key
gets 9 and a Sync 3; server.py Target.drop_connections: open client connections reset).  Against a
server that is not embedded the devices act alone (loadgen/run/engine.py _device_event).  Each test
checks that the storm is visible (FolderSync and Sync from key 0 after the event, connections opened
again after a drop) and that every device recovers (its folders synced again, no device error).
"""

import asyncio

import pytest

from loadgen import scenario
from loadgen.cli import start
from loadgen.exchange.server import start_target
from loadgen.exchange.state import TargetState

DEVICES = 120
EVENT_AT = 4


def _text(events, url="embedded", mail=True, duration=11):
    return f"""
name = "incident"
duration = {duration}
seed = 5
[target]
url = "{url}"
{"ping_min = 5" if url == "embedded" else ""}
[auth]
users = {DEVICES}
[population]
devices = {DEVICES}
devices_per_user = 1
versions = {{ "14.1" = 3, "16.1" = 1, "12.1" = 1 }}
[load]
ramp_up = 2
mode = "ping"
heartbeat = 60
timeout = 30
graceful_stop = 2
{'''[mail]
send_per_hour = 6
read_share = 0.5
push_folders = ["inbox", "calendar", "contacts"]''' if mail else ""}
{events}
"""


def _counter(target, command, http=200, eas=1):
    return target.counters.get((command, http, eas), 0)


def _recovered(devices):
    """Every device synced its hierarchy and every folder it keeps again."""
    for d in devices:
        assert d.state == "provisioned", (d.index, d.state, d.detail)
        assert d.folder_key != "0" and d.inbox is not None, d.index
        if d.box is not None:
            assert d.box.colls and all(c.key != "0" for c in d.box.colls.values()), d.index
        else:
            assert d.sync_key != "0", d.index


def test_the_parser_knows_the_incident_events():
    sc = scenario.parse(_text('[[events]]\nat = 1\naction = "resync"\nfraction = 0.5\nseed = 3\n'
                              '[[events]]\nat = 2\naction = "network_drop"\nfraction = 1\n'), "x.toml")
    assert [(e.action, dict(e.args)) for e in sc.events] == [
        ("resync", {"fraction": 0.5, "seed": 3}), ("network_drop", {"fraction": 1})]
    # a real server: the devices can do these alone, so they are allowed there
    sc = scenario.parse(_text('[[events]]\nat = 1\naction = "resync"\nfraction = 0.5\n',
                              url="https://mail.example.com/Microsoft-Server-ActiveSync"), "x.toml")
    assert sc.events[0].action == "resync"
    for bad, message in (('fraction = 1.5', "a share between 0 and 1"), ('fraction = 1\nseed = -1', "whole number"),
                         ('', "needs fraction"), ('fraction = 1\ncount = 2', "does not take 'count'")):
        with pytest.raises(scenario.ScenarioError, match=message):
            scenario.parse(_text('[[events]]\nat = 1\naction = "resync"\n' + bad + '\n'), "x.toml")


def test_resync_storm_on_the_embedded_target_and_every_device_recovers():
    state = TargetState(users=DEVICES, seed=5, ping_min=5)
    sc = scenario.parse(_text(f'[[events]]\nat = {EVENT_AT}\naction = "resync"\nfraction = 0.5\nseed = 3\n'),
                        "resync.toml")
    result = asyncio.run(start.run(sc, target_state=state, progress=False))
    target = result.target
    assert result.device_errors == {}
    (at, action, outcome), = result.stats.events
    assert action == "resync" and outcome == "sync state dropped for %d devices" % (DEVICES // 2)
    # the storm: the held Pings of the chosen devices answered Status 7 (FolderSync required) at once,
    # then a FolderSync from key 0 each (the first of every device and one more per resynced one)
    assert _counter(target, "Ping", eas=7) >= DEVICES // 4
    assert _counter(target, "FolderSync") >= DEVICES + DEVICES // 2
    # every resynced device went through FolderSync 0 (which clears the flag) and synced its folders again
    assert not [r for r in state.devices.values() if r.resync]
    assert all(r.sync for r in state.devices.values())
    _recovered(result.devices)


@pytest.mark.parametrize("tls", [False, True])
def test_network_drop_on_the_embedded_target_and_every_device_reconnects(tls):
    text = _text(f'[[events]]\nat = {EVENT_AT}\naction = "network_drop"\nfraction = 1\n')
    if tls:  # over https every connection opened again is a TLS handshake again
        text = text.replace("ping_min = 5", "ping_min = 5\ntls = true")
    sc = scenario.parse(text, "drop.toml")
    state = TargetState(users=DEVICES, seed=5, ping_min=5)
    result = asyncio.run(start.run(sc, target_state=state, progress=False))
    assert result.target_url.startswith("https://" if tls else "http://")
    (at, action, outcome), = result.stats.events
    assert action == "network_drop"
    cut = int(outcome.split()[0])
    assert cut >= DEVICES, outcome  # the held Pings' connections at least
    # a reconnect storm: before the drop every device held two connections (its Ping's and the ordinary
    # one); after it, every device opened a connection again for its next Ping (a fresh TCP handshake;
    # the idle timeout, 110 s, is longer than the run: without the drop nothing reconnects)
    assert result.connections_opened >= 2 * DEVICES + DEVICES * 3 // 4, result.connections_opened
    assert result.device_errors == {}
    # and every device came back: the target heard from each after the drop
    assert all(r.requests >= 4 for r in state.devices.values())
    _recovered(result.devices)


async def _against_a_real_server(events, mail=True):
    state = TargetState(users=DEVICES, seed=5, ping_min=5)
    runner, target, url = await start_target("127.0.0.1", 0, state)
    try:
        sc = scenario.parse(_text(events, url=url, mail=mail), "real.toml")
        result = await start.run(sc, progress=False)
    finally:
        await runner.cleanup()
    return result, target, state


@pytest.mark.parametrize("mail", [True, False])
def test_resync_done_by_the_devices_against_a_server_not_embedded(mail):
    result, target, state = asyncio.run(_against_a_real_server(
        f'[[events]]\nat = {EVENT_AT}\naction = "resync"\nfraction = 0.25\nseed = 9\n', mail=mail))
    (at, action, outcome), = result.stats.events
    assert outcome == "sync state dropped on %d devices (device side)" % (DEVICES // 4)
    assert result.device_errors == {}
    # the server saw a second FolderSync from key 0 of each restarted device (its only other FolderSyncs:
    # the first of every device)
    assert _counter(target, "FolderSync") == DEVICES + DEVICES // 4
    # its held Ping was cut short (accounted as cancelled, not lost)
    assert sum(result.stats.cancelled.values()) >= DEVICES // 8
    _recovered(result.devices)


def test_network_drop_done_by_the_devices_against_a_server_not_embedded():
    result, target, state = asyncio.run(_against_a_real_server(
        f'[[events]]\nat = {EVENT_AT}\naction = "network_drop"\nfraction = 0.5\n'))
    (at, action, outcome), = result.stats.events
    n = int(outcome.split()[2])
    assert outcome.endswith("(device side)") and n >= DEVICES // 4, outcome
    # the cut Pings sent again on fresh connections (a reconnect each), or failed and sent again after a
    # backoff: a new connection either way
    assert result.connections_opened >= 2 * DEVICES + n * 3 // 4, (result.connections_opened, result.reconnects)
    assert result.device_errors == {}
    _recovered(result.devices)


def test_both_events_on_a_target_of_two_processes(monkeypatch):
    from loadgen.exchange.cluster import TargetCluster

    monkeypatch.setattr(TargetCluster, "keep_final", True)  # the counters as the run ended
    # two incidents and a target of two processes: more time for the storm to settle before the drop
    # and for every device to come back after it
    text = _text(f'[[events]]\nat = {EVENT_AT + 2}\naction = "resync"\nfraction = 0.5\nseed = 3\n'
                 f'[[events]]\nat = {EVENT_AT + 5}\naction = "network_drop"\nfraction = 1\n', duration=16)
    sc = scenario.parse(text.replace("ping_min = 5", "ping_min = 5\nprocesses = 2"), "cluster.toml")
    result = asyncio.run(start.run(sc, progress=False))
    outcomes = [o for _at, _a, o in result.stats.events]
    # the devices were chosen over the whole population by the parent, as one process would
    assert outcomes[0] == "sync state dropped for %d devices" % (DEVICES // 2)
    assert int(outcomes[1].split()[0]) >= DEVICES  # every process cut its connections
    counters = {(r["command"], r["http_status"], r["eas_status"]): r["count"]
                for r in result.target.final["counters"]["requests"]}
    assert counters.get(("Ping", 200, 7), 0) >= DEVICES // 4
    assert counters.get(("FolderSync", 200, 1), 0) >= DEVICES + DEVICES // 2
    assert result.connections_opened >= 2 * DEVICES + DEVICES * 3 // 4
    assert result.device_errors == {}
    _recovered(result.devices)
