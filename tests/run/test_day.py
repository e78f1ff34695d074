"""The simulated day (loadgen/run/day.py): the curve and the clock, the per-user plan (deterministic per
seed and user, the same whatever the shard or worker; rates matching the profile over many users), the
device's share, the external mail, and the dry-run figures."""

import math
import pickle
from collections import Counter

import pytest

from loadgen import scenario as sc
from loadgen.run import day, plan as plan_mod
from loadgen.run.context import RunLoad


def scenario(workload="", users=2000, dpu=1, duration="1h", extra=""):
    return sc.parse("""
duration = "%s"
seed = 5
[auth]
users = %d
[population]
devices = %d
devices_per_user = %d
[workload]
%s
%s""" % (duration, users, users * dpu, dpu, workload, extra), "d.toml")


# -- the curve and the clock

def test_flat_curve_spreads_the_day_evenly():
    w = scenario().workload
    curve = day.Curve(w)
    assert curve.mass(0) == 0 and curve.mass(w.day_length) == 1
    assert curve.mass(7200) == pytest.approx(0.25)
    assert curve.time_at(0.25) == pytest.approx(7200)
    assert curve.rate(100) == pytest.approx(1.0)


def test_diurnal_curve_puts_peak_factor_times_the_mean_into_the_peak_two_hours():
    w = scenario('curve = "diurnal"\npeak_factor = 1.8').workload
    curve = day.Curve(w)
    p0, p1 = w.peak_window()
    assert (p0, p1) == (3600.0, 10800.0)
    assert curve.mass(p1) - curve.mass(p0) == pytest.approx(1.8 * 2 / 8)
    assert curve.rate((p0 + p1) / 2) == pytest.approx(1.8)
    rest = (1 - 0.45) / (6 / 8)  # the rest of the day evenly
    assert curve.rate(100) == pytest.approx(rest) and curve.rate(20000) == pytest.approx(rest)
    for m in (0.01, 0.2, 0.5, 0.9):  # time_at inverts mass
        assert curve.mass(curve.time_at(m)) == pytest.approx(m)


def test_clock_maps_the_replayed_part_of_the_day_onto_the_run():
    w = scenario().workload  # 8 h onto 1 h: 8x
    clock = day.Clock(w, 3600)
    assert clock.dispatch_time(0) == 0 and clock.dispatch_time(28800) == pytest.approx(3600)
    assert clock.dispatch_time(8 * 600) == pytest.approx(600)
    assert clock.day_time(600) == pytest.approx(4800)
    peak = scenario('replay_from = "peak"', duration="2h").workload  # the peak two hours at real speed
    clock = day.Clock(peak, 7200)
    assert clock.dispatch_time(3600) == 0 and clock.dispatch_time(3600 + 1234) == pytest.approx(1234)
    stress = day.Clock(scenario("stress = true").workload, 3600)
    assert stress.dispatch_time(20000) == 0


# -- the plan

def test_plan_is_deterministic_per_seed_and_user():
    s = scenario('profiles = { average = 1, heavy = 1 }')
    a, b = day.Planner(s), day.Planner(pickle.loads(pickle.dumps(s)))
    for user in (0, 1, 17, 1999):
        assert a.user_plan(user) == b.user_plan(user)
    assert a.user_plan(1) != a.user_plan(2)
    other = day.Planner(sc.parse("seed = 6\n[auth]\nusers = 2000\n[population]\ndevices = 2000\n"
                                 "devices_per_user = 1\n[workload]\nprofiles = { average = 1, heavy = 1 }\n"))
    assert other.user_plan(1) != a.user_plan(1)
    times = a.user_plan(3).times
    assert list(times) == sorted(times) and all(0 <= t < 28800 for t in times)


def test_plan_is_the_same_whatever_the_shard_or_worker():
    s = scenario(users=50)
    load = RunLoad.for_run(s)
    worker = pickle.loads(pickle.dumps(load))  # what a worker process gets
    for index in (0, 7, 49):
        mine, theirs = load.workload.device_plan(index), worker.workload.device_plan(index)
        assert list(mine.times) == list(theirs.times) and mine.kinds == theirs.kinds
    assert day.plan(s.workload, s.workload.definitions["average"], 7, 5, shard=(1, 4)) == \
        day.plan(s.workload, s.workload.definitions["average"], 7, 5, shard=(0, 1))


def test_a_users_tasks_are_shared_by_its_devices():
    s = scenario(users=10, dpu=3)
    planner = day.Planner(s)
    user = planner.user_plan(4)
    parts = [planner.device_plan(4 * 3 + slot) for slot in range(3)]
    assert sum(len(p) for p in parts) == len(user.times)
    merged = sorted((t, k) for p in parts for t, k in zip(p.times, p.kinds))
    clock = day.Clock(s.workload, s.duration)
    assert [t for t, _k in merged] == pytest.approx([clock.dispatch_time(t) for t in user.times])


@pytest.mark.parametrize("profile", ["average", "heavy"])
def test_rates_match_the_profile_over_many_users(profile):
    s = scenario('profiles = { %s = 1 }\ncurve = "diurnal"' % profile)
    planner = day.Planner(s)
    users = 2000
    counts = Counter()
    in_peak = total = 0
    p0, p1 = s.workload.peak_window()
    for user in range(users):
        p = planner.user_plan(user)
        counts.update(p.types)
        total += len(p.times)
        in_peak += sum(1 for t in p.times if p0 <= t < p1)
    means = day.daily_means(s.workload.definitions[profile])
    for kind, mean in means.items():
        expected = mean * users
        # Poisson: within 5 % or 4 standard deviations, whichever is wider
        assert abs(counts[kind] - expected) <= max(0.05 * expected, 4 * math.sqrt(expected)), (kind, counts[kind])
    assert in_peak / total == pytest.approx(0.45, abs=0.01)  # 1.8 x 2 h / 8 h


def test_profiles_are_mixed_by_weight_per_user():
    s = scenario('profiles = { average = 0.7, heavy = 0.3 }')
    picked = Counter(day.profile_of(s.workload, 5, u) for u in range(4000))
    assert picked["heavy"] / 4000 == pytest.approx(0.3, abs=0.03)
    assert day.profile_of(s.workload, 5, 11) == day.profile_of(s.workload, 5, 11)
    clients = scenario('clients = { ios = 1, android = 3 }').workload
    got = Counter(day.client_of(clients, 5, u) for u in range(4000))
    assert got["android"] / 4000 == pytest.approx(0.75, abs=0.03)


def test_a_replay_window_plans_only_its_part_of_the_day():
    s = scenario('replay_from = "2h"\nreplay_length = "1h"', duration="10m")
    planner = day.Planner(s)
    for user in range(50):
        p = planner.user_plan(user)
        assert all(7200 <= t < 10800 for t in p.times)
        d = planner.device_plan(user)
        assert all(0 <= t < 600 for t in d.times)


def test_external_mail_is_what_the_other_users_do_not_send():
    s = scenario()
    p = s.workload.definitions["average"]
    internal = p.sent_per_day * ((1 + 3) / 2 + s.mail.cc_share * 1.5 + s.mail.bcc_share) * p.internal_share
    assert day.external_per_day(s.workload, s.mail)["average"] == pytest.approx(80 - internal)
    planner = day.Planner(s)
    times = list(planner.external_times(range(200)))
    assert [t for t, _u in times] == sorted(t for t, _u in times)
    expected = (80 - internal) * 200
    assert abs(len(times) - expected) <= 4 * math.sqrt(expected)
    assert times == list(day.Planner(s).external_times(range(200)))


def test_profile_views_of_the_run_context_share_the_bucket_and_change_only_mail():
    s = scenario('profiles = { average = 1, light = 1 }\n[workload.profile.light]\nbase = "light"\nreply_share = 0.5',
                 users=10)
    load = RunLoad.for_run(s)
    light = load.for_profile("light")
    assert light is load.for_profile("light")
    assert light.mail.reply_share == 0.5 and light.mail.to == (1, 3)
    assert light.users == load.users and light.workload is load.workload
    light.bucket = "b"
    assert load.bucket == "b" and light.bucket == "b"
    assert load.for_profile("average").mail.reply_share == 0.3


# -- the dry run

def test_dry_run_figures():
    s = scenario('profiles = { average = 1 }', users=1000)  # an 8-hour day in one hour, flat
    info = day.summary(s)
    assert info["compression"] == 8
    # every user's day in the hour: tasks per hour = per day x users
    assert info["tasks_per_hour"]["send"] == pytest.approx(12 * 1000)
    assert info["tasks_per_hour"]["process"] == pytest.approx(80 * 1000)
    assert info["tasks_per_hour_peak"] == info["tasks_per_hour"]  # flat
    assert info["requests_per_s"]["SendMail"] == pytest.approx(12 * 1000 / 3600, abs=0.01)
    assert info["requests_per_s"]["SmartReply"] == pytest.approx(6 * 1000 / 3600, abs=0.01)
    assert info["requests_per_s"]["Search"] == pytest.approx((12 * 3 + 2) * 1000 / 3600, abs=0.01)
    assert info["messages_per_s"]["sent"] == pytest.approx(20 * 1000 / 3600, abs=0.01)
    assert info["connections_held"] == 1000 and info["backlog_abort_at"] == 1500
    peak = day.summary(scenario('curve = "diurnal"', users=1000))
    assert peak["tasks_per_hour_peak"]["send"] == pytest.approx(1.8 * peak["tasks_per_hour"]["send"], rel=0.01)
    whole = plan_mod.build(s)
    assert whole["workload"]["tasks_per_hour"] == info["tasks_per_hour"]
    text = plan_mod.text(whole)
    assert "Workload:" in text and "SendMail" in text and "peak hour" in text
    assert plan_mod.build(scenario(users=5).__class__(name="x", path="x"))["workload"] is None
