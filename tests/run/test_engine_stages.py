"""Closed-model stages: the number of active devices ramps up, holds and ramps down
(k6's ramping-vus executor); devices beyond the target finish their request and stop,
counted as "stopped", not failed.  Real runs against the embedded target."""

import asyncio
from collections import Counter

import pytest

from loadgen.cli import start
from loadgen.run import engine
from loadgen import scenario
from loadgen.run.engine import active_target, first_activation
from loadgen.scenario import ScenarioError
from loadgen.wire.transport import Transport as RealTransport

INACTIVE = ("new", "stopped")


def make(stages, devices=16, duration=6, mode="poll", extra=""):
    return scenario.parse(f"""
name = "stages"
duration = {duration}
seed = 3
[target]
ping_min = 1
[auth]
users = {devices}
[population]
devices = {devices}
devices_per_user = 1
[load]
think_time = 0.2
timeout = 5
graceful_stop = 0.5
backoff = 0.3
mode = "{mode}"
heartbeat = 3
stages = {stages}
{extra}
""", "stages.toml")


class CountingTransport:
    """The engine's transport, counting every request the devices send (the accounting's left side)."""

    def __init__(self, inner):
        self.inner = inner
        self.sent = Counter()
        self.parked_sent = Counter()  # sent parked (engine.Lives): no task waits for the answer

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def start(self):
        await self.inner.start()

    async def close(self):
        await self.inner.close()

    async def post(self, endpoint, command, body, policy_key, timeout=None):
        self.sent[command] += 1
        return await self.inner.post(endpoint, command, body, policy_key, timeout)

    @property
    def can_park(self):
        return self.inner.can_park

    async def park(self, endpoint, command, body, policy_key, callback, arg, timeout=None):
        # a parked Ping (engine.Lives) is sent too: counted here, then re-counted on a re-send
        # only if the transport reconnects (it does not here)
        self.sent[command] += 1
        self.parked_sent[command] += 1
        return await self.inner.park(endpoint, command, body, policy_key, callback, arg, timeout)


@pytest.fixture
def counted(monkeypatch):
    made = []

    def factory(*args, **kwargs):
        made.append(CountingTransport(RealTransport(*args, **kwargs)))
        return made[-1]

    monkeypatch.setattr(engine, "Transport", factory)
    return made


def active(point):
    return sum(n for state, n in point["devices"].items() if state not in INACTIVE)


def accounting(stats):
    """command -> answered + transport errors + timeouts + cancelled, from the run's own counts."""
    total = Counter()
    for (command, _outcome, _status), n in stats.by_key.items():
        total[command] += n
    total.update(stats.cancelled)
    return total


def test_active_target_ramps_holds_and_ramps_down():
    stages = [(2.0, 20.0), (2.0, 20.0), (2.0, 5.0)]
    assert [active_target(stages, t) for t in (0, 0.5, 1.0, 1.99, 2.0, 3.9, 5.0, 6.0, 100)] == \
        [0, 5, 10, 19, 20, 20, 12, 5, 5]
    assert active_target([(0.0, 7.0)], 0.0) == 7  # a zero-length stage jumps
    assert first_activation(stages, 1) == pytest.approx(0.1)
    assert first_activation(stages, 20) == pytest.approx(2.0)
    assert first_activation(stages, 21) is None
    assert first_activation([(0.0, 7.0)], 7) == 0.0


def test_closed_stages_validation():
    with pytest.raises(ScenarioError, match=r"stages\[1\]: target must be a whole number .* 16 devices"):
        make('[{ duration = "1s", target = 4 }, { duration = "1s", target = 17 }]')
    with pytest.raises(ScenarioError, match=r"stages\[0\]: target must be a whole number"):
        make('[{ duration = "1s", target = 2.5 }]')
    with pytest.raises(ScenarioError, match="'ramp_up' and 'stages' do not combine"):
        make('[{ duration = "1s", target = 4 }]', extra="ramp_up = 2")
    with pytest.raises(ScenarioError, match=r"stages\[0\] must be .*<active devices>"):
        make('[{ duration = "1s", devices = 4 }]')
    # the open model keeps arrivals/s: fractions and rates above the population are fine
    sc = make('[{ duration = "1s", target = 2.5 }, { duration = "1s", target = 40 }]', extra='model = "open"')
    assert sc.load.stages == [(1.0, 2.5), (1.0, 40.0)]


def test_active_devices_follow_the_stages_and_the_rest_stop_gracefully(counted):
    stages = [(2.0, 16.0), (2.0, 16.0), (1.0, 4.0)]
    sc = make('[{ duration = "2s", target = 16 }, { duration = "2s", target = 16 }, { duration = "1s", target = 4 }]')
    result = asyncio.run(start.run(sc, progress=False))
    st = result.stats
    points = [p for p in st.series if p["t"] <= sc.duration]
    assert len(points) >= 5
    for p in points:
        # the controller steps every 50 ms: at most one step of the ramp (8 devices/s) behind
        expected = active_target(stages, p["t"])
        assert expected - 1 <= active(p) <= active_target(stages, max(0.0, p["t"] - 0.1)) + 1, p
    hold = [p for p in points if 2.3 <= p["t"] <= 3.9]
    assert hold and all(active(p) == 16 and "stopped" not in p["devices"] for p in hold)
    # the end: 4 devices left, the 12 highest-numbered stopped (not failed), nothing lost
    states = {d.index: d.state for d in result.devices}
    assert all(states[i] == "stopped" for i in range(4, 16))
    assert all(states[i] == "provisioned" for i in range(4))
    assert st.final_states == Counter({"stopped": 12, "provisioned": 4})
    assert st.errors() == 0
    assert accounting(st) == counted[0].sent


def test_held_pings_of_stopping_devices_are_cancelled_and_devices_resume_without_reprovisioning(counted):
    # up to 12, down to 4 while every device holds a 3 s Ping (graceful stop 0.5 s), up to 12 again
    sc = make('[{ duration = "1s", target = 12 }, { duration = "1s", target = 12 }, '
              '{ duration = "0.5s", target = 4 }, { duration = "1.5s", target = 4 }, { duration = "0.5s", target = 12 }]',
              devices=12, duration=5.5, mode="ping")
    result = asyncio.run(start.run(sc, progress=False))
    st = result.stats
    down = [p for p in st.series if 3.0 <= p["t"] <= 3.9]
    assert down and all(active(p) == 4 and p["devices"].get("stopped") == 8 for p in down)
    assert Counter(d.state for d in result.devices) == Counter({"provisioned": 12})  # all back at the end
    # the 8 held Pings cut at the ramp-down are cancelled, not errors; the resumed devices kept
    # their policy key: one provisioning per device in the whole run
    assert st.cancelled["Ping"] >= 8
    assert counted[0].parked_sent["Ping"] == counted[0].sent["Ping"]  # every Ping held without a task
    assert st.errors() == 0
    assert sum(st.provisionings.values()) == 12
    assert accounting(st) == counted[0].sent
