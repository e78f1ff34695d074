"""End to end: the client types that need the embedded target's side, against it in this process.

* hanging-sync (loadgen/device/clients.py): the devices send a Sync with HeartbeatInterval instead of a
  Ping; the target holds it (server.py ``Target.held_sync``), pushes new mail through it and counts
  held Syncs apart from Pings (the empty answer at expiry: tests/exchange/test_sync_hold.py).
* outlook-cloud (Bearer): the run gets its tokens from the embedded target with no user setup
  (exchange/launch.py, exchange/bearer.py); they are accepted where Basic would not be, refreshed after
  a 401 Bearer challenge when they expire, and appear in no log, summary or metric.
"""

import asyncio
import logging

from prometheus_client import generate_latest

from loadgen import scenario
from loadgen.cli import start
from loadgen.exchange.metrics import exposition, make_registry
from loadgen.exchange.state import TargetState
from loadgen.exchange.store import INBOX
from loadgen.results import metrics, summary

QUIET = "\n".join("%s = 0" % k for k in ("received_per_day", "sent_per_day", "meeting_requests_per_day",
                                         "calendar_edits_per_day", "contact_edits_per_day",
                                         "mailbox_searches_per_day"))


def _text(client, devices, duration, heartbeat, events="", password="Pass{n}!"):
    return f"""
name = "{client}-e2e"
duration = {duration}
seed = 7
[target]
ping_min = 1
[auth]
users = {devices}
password = "{password}"
[population]
devices = {devices}
devices_per_user = 1
versions = {{ "14.1" = 3, "16.1" = 1 }}
[load]
ramp_up = 1
mode = "ping"
heartbeat = {heartbeat}
timeout = 10
graceful_stop = 2
[workload]
profiles = {{ quiet = 1 }}
clients = {{ {client} = 1 }}
[workload.profile.quiet]
{QUIET}
{events}
"""


def test_hanging_sync_devices_get_new_mail_through_the_held_sync():
    devices = 16
    events = "".join('[[events]]\nat = %d\naction = "mail"\nfraction = 1\n' % at for at in (3, 5))
    # a heartbeat longer than the run: mail that reaches a device came through a held Sync woken for it
    sc = scenario.parse(_text("hanging-sync", devices, 7, 30, events), "hanging.toml")
    state = TargetState(users=devices, seed=7, ping_min=1)
    result = asyncio.run(start.run(sc, target_state=state, progress=False))
    target = result.target
    assert result.device_errors == {}
    assert all(d.state == "provisioned" for d in result.devices), [d.detail for d in result.devices]
    assert [outcome for _at, _action, outcome in result.stats.events] == ["mail for %d users" % devices] * 2
    # no Ping: the Syncs were held instead, and counted apart
    assert not [k for k in target.counters if k[0] == "Ping"]
    holds = target.sync_holds
    assert holds.get("changes", 0) >= devices, holds  # the new mail went out through held Syncs
    assert "refused" not in holds  # HeartbeatInterval 30 is inside ping_min..ping_max
    assert sum(target.held_sync_durations.data["Sync"][:-1]) >= holds["changes"]
    assert target.held_syncs == 0 and target.held_pings == 0  # the run's end answered the last ones
    text = exposition(make_registry(target)).decode()
    assert 'easload_target_sync_holds_total{outcome="changes"}' in text
    # every device got all of its Inbox's new mail (its sync state reached the folder's last change)
    for record in state.devices.values():
        folder = state.mailbox(record.user).folder(INBOX)
        assert folder.size() >= 2 and record.sync[INBOX].pos == folder.cn, record.user


def test_bearer_devices_on_the_embedded_target_refresh_expired_tokens_and_never_show_them(caplog):
    caplog.set_level(logging.DEBUG)
    devices = 8
    # the scenario's passwords are wrong: the devices get in with the target's tokens or not at all
    sc = scenario.parse(_text("outlook-cloud", devices, 5, 2, password="Wrong{n}"), "cloud.toml")
    assert sc.target.bearer_tokens is None  # made by the target's start-up, never read from the file
    state = TargetState(users=devices, seed=7, ping_min=1, token_lifetime=1)  # tokens expire during the run
    result = asyncio.run(start.run(sc, target_state=state, progress=False))
    target = result.target
    assert result.device_errors == {}
    assert all(d.state == "provisioned" and d.folder_key != "0" for d in result.devices), \
        [(d.state, d.detail) for d in result.devices]
    assert all(d.endpoint._auth.startswith(b"Authorization: Bearer eas1.") for d in result.devices)
    # expired tokens were refused with the Bearer challenge, and the devices came back with fresh ones
    refused = sum(n for (command, http, _eas), n in target.counters.items() if http == 401)
    assert refused >= devices, target.counters
    challenged = sum(n for key, n in result.stats.by_key.items() if "challenge" in key)
    assert challenged == refused
    assert all(r.requests > 4 for r in state.devices.values())
    # no token nor the secret in the logs, the summary, the metrics or a device's detail
    tokens = {t for d in result.devices for t in d.tokens._cache.values()}
    assert tokens and all(t.startswith("eas1.") for t in tokens)
    shown = "".join((
        caplog.text, summary.dumps(summary.build(result.stats, scenario=sc.name, target="embedded")).decode(),
        generate_latest(metrics.REGISTRY).decode(), exposition(make_registry(target)).decode(),
        repr(sc), repr([d.detail for d in result.devices]), repr(result.devices[0].tokens)))
    assert "eas1." not in shown and state.token_secret.hex() not in shown
    assert not any(t in shown for t in tokens)


def _population_text(client, devices, duration):
    """Client types without the user-day model: [population] clients, no [mail], no [workload]."""
    return f"""
name = "{client}-population"
duration = {duration}
seed = 11
[target]
ping_min = 1
[auth]
users = {devices}
[population]
devices = {devices}
devices_per_user = 1
clients = {{ {client} = 1 }}
[load]
ramp_up = 1
mode = "ping"
heartbeat = 2
timeout = 10
graceful_stop = 2
"""


def test_population_clients_hanging_sync_without_mail_holds_syncs_of_the_inbox_instead_of_pings():
    """[population] clients reaches the client types without [workload] (which would turn mail on): a
    hanging-sync device with no [mail] holds a Sync of its Inbox (MS-ASCMD 2.2.3.88.2 HeartbeatInterval)
    where a device of the same scenario without the client type holds a Ping."""
    devices = 6
    sc = scenario.parse(_population_text("hanging-sync", devices, 6), "hanging-pop.toml")
    assert sc.workload is None and dict(sc.population.clients) == {"hanging-sync": 1}
    state = TargetState(users=devices, seed=11, ping_min=1)
    result = asyncio.run(start.run(sc, target_state=state, progress=False))
    target = result.target
    assert result.device_errors == {}
    assert all(d.state == "provisioned" for d in result.devices), [d.detail for d in result.devices]
    assert not [k for k in target.counters if k[0] == "Ping"], target.counters
    # held Syncs that expired empty (heartbeat 2 s in a 6 s run): several per device
    assert target.sync_holds.get("expired", 0) >= devices, target.sync_holds


def test_population_clients_misbehaving_without_mail_loops_estimates_and_syncs():
    devices = 4
    sc = scenario.parse(_population_text("misbehaving", devices, 6), "misbehaving-pop.toml")
    state = TargetState(users=devices, seed=11, ping_min=1)
    result = asyncio.run(start.run(sc, target_state=state, progress=False))
    target = result.target
    assert result.device_errors == {}
    assert not [k for k in target.counters if k[0] == "Ping"], target.counters
    estimates = sum(n for k, n in target.counters.items() if k[0] == "GetItemEstimate")
    syncs = sum(n for k, n in target.counters.items() if k[0] == "Sync")
    # about one request a second per device in a loop of ~4 s after enrolment: far above a Ping's rate
    assert estimates >= devices and syncs >= 2 * devices, target.counters
