"""The global request-rate cap (loadgen/wire/ratelimit.py)."""

import pytest

from loadgen import scenario
from loadgen.cli.start import run
from loadgen.run.context import RunLoad
from loadgen.wire import ratelimit


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_bucket_spaces_requests_in_arrival_order():
    clock = Clock()
    bucket = ratelimit.TokenBucket(10, burst=2, clock=clock)
    # the saved burst first, then one token every 1/rate, each waiter after the previous one
    assert [bucket.reserve() for _ in range(5)] == pytest.approx([0, 0, 0.1, 0.2, 0.3])
    clock.now += 1.0  # a second later: the queue is paid off and the burst is full again (never more)
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0, 0, 0.1])
    assert bucket.taken == 8 and bucket.waited == 4


def test_bucket_rejects_a_zero_rate():
    with pytest.raises(ValueError):
        ratelimit.TokenBucket(0)


def _sc(text):
    return scenario.parse(text)


def test_defaults_remote_on_loopback_off_and_overrides():
    remote = '[target]\nurl = "https://mail.example.com/Microsoft-Server-ActiveSync"\n'
    assert ratelimit.resolve(_sc(remote))[0] == ratelimit.DEFAULT_REMOTE_RATE
    assert ratelimit.resolve(_sc(""))[0] == 0  # embedded
    assert ratelimit.resolve(_sc('[target]\nurl = "http://127.0.0.1:1/Microsoft-Server-ActiveSync"\n'))[0] == 0
    assert ratelimit.resolve(_sc(remote + "[load]\nmax_request_rate = 200\n"))[0] == 200
    rate, why = ratelimit.resolve(_sc(remote + '[load]\nmax_request_rate = "off"\n'))
    assert rate == 0 and "turned off" in why and "not on this machine" in why
    assert ratelimit.resolve(_sc("[load]\nmax_request_rate = 5\n"))[0] == 5  # on loopback when asked


def test_the_run_context_splits_the_cap_across_processes():
    sc = _sc('[target]\nurl = "https://mail.example.com/Microsoft-Server-ActiveSync"\n[load]\nmax_request_rate = 90\n')
    assert RunLoad.for_run(sc, parts=3).request_cap == 30
    assert "90 requests/s in total" in ratelimit.describe(sc)
    sc = _sc("")
    assert RunLoad.for_run(sc, parts=4).request_cap == 0 and "off" in ratelimit.describe(sc)


def test_bad_values_are_one_line_errors():
    for bad in ("-1", '"fast"', "true"):
        with pytest.raises(scenario.ScenarioError, match="max_request_rate"):
            _sc("[load]\nmax_request_rate = %s\n" % bad)


async def test_a_capped_run_stays_under_the_cap():
    # 30 devices polling every 50 ms would send several hundred requests in 2 s; capped at 20/s the
    # whole run can send at most 20 (the burst) + 20 x 2 s, plus the ones waiting when the run ends
    sc = _sc('duration = 2\n[population]\ndevices = 30\n[load]\nramp_up = 0\nmode = "poll"\nthink_time = 0.05\n'
             'graceful_stop = 0.5\nmax_request_rate = 20\n')
    result = await run(sc, progress=False, attach_metrics=False)
    assert 20 <= result.stats.total <= 20 + 20 * 2.5
    uncapped = _sc('duration = 2\n[population]\ndevices = 30\n[load]\nramp_up = 0\nmode = "poll"\n'
                   'think_time = 0.05\ngraceful_stop = 0.5\n')
    result = await run(uncapped, progress=False, attach_metrics=False)
    assert result.stats.total > 100  # the same load without the cap: the cap did the limiting


async def test_acquire_waits_when_on():
    # a slow rate, so that no stall of a busy machine refills the bucket between two calls:
    # 10 saved tokens, then 2 more that have to wait (0.1 s and 0.2 s)
    ctx = RunLoad.for_run(_sc("[load]\nmax_request_rate = 10\n"))
    for _ in range(12):
        await ratelimit.acquire(ctx)
    assert ratelimit.bucket(ctx).waited >= 1
