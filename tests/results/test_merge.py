"""Shards (--shard I/N) merged with `easload merge` equal the whole; bad merges are refused."""

import os
import subprocess
import sys

import orjson


def _run(tmp_path, scenario, *args, env=None):
    return subprocess.run([sys.executable, "-m", "loadgen", "run", str(scenario), "--metrics-listen", "", "-q", *args],
                          capture_output=True, text=True, timeout=90, env=env or dict(os.environ))


def test_shards_merge_exactly(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('duration = 3\nseed = 4\n[population]\ndevices = 9\n[load]\nramp_up = 0.3\nthink_time = 0.3\n'
                 'mode = "poll"\n[thresholds]\n"devices.provisioned" = ">= 1"\n"Sync.p99" = "< 5"\n')
    for i in range(3):
        out = _run(tmp_path, f, "--shard", "%d/3" % i, "--out", str(tmp_path / ("s%d" % i)))
        assert out.returncode == 0, out.stderr
    env = dict(os.environ, JOB_COMPLETION_INDEX="1")
    out = _run(tmp_path, f, "--shards", "3", "--out", str(tmp_path / "k1"), env=env)
    assert out.returncode == 0
    shard1 = orjson.loads((tmp_path / "s1" / "summary.json").read_bytes())
    assert orjson.loads((tmp_path / "k1" / "summary.json").read_bytes())["shard"] == shard1["shard"] == [1, 3]
    parts = [orjson.loads((tmp_path / ("s%d" % i) / "summary.json").read_bytes()) for i in range(3)]
    out = subprocess.run([sys.executable, "-m", "loadgen", "merge", *(str(tmp_path / ("s%d" % i)) for i in range(3)),
                          "--out", str(tmp_path / "m")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    merged = orjson.loads((tmp_path / "m" / "summary.json").read_bytes())
    assert merged["devices"] == {"provisioned": 9} and merged["complete"]
    assert merged["requests"] == sum(p["requests"] for p in parts)
    assert merged["latency"]["Sync"]["count"] == sum(p["latency"]["Sync"]["count"] for p in parts)
    assert [t["passed"] for t in merged["thresholds"]] == [True, True]
    assert (tmp_path / "m" / "junit.xml").read_text().count("<testcase") == 2
    # refused: the same shard twice, a different seed; a missing shard fails the verdict
    out = subprocess.run([sys.executable, "-m", "loadgen", "merge", str(tmp_path / "s0"), str(tmp_path / "s0")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "twice" in out.stderr
    other = dict(parts[2], seed=99)
    (tmp_path / "o.json").write_bytes(orjson.dumps(other))
    out = subprocess.run([sys.executable, "-m", "loadgen", "merge", str(tmp_path / "s0"), str(tmp_path / "o.json")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "different seeds" in out.stderr
    out = subprocess.run([sys.executable, "-m", "loadgen", "merge", str(tmp_path / "s0"), str(tmp_path / "s1")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "2 of 3 shards merged" in out.stderr


def test_shard_flag_errors(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text("[population]\ndevices = 2\n")
    for args, needle in ((["--shard", "3/3"], "outside"), (["--shard", "x"], "I/N"),
                         (["--shards", "2"], "JOB_COMPLETION_INDEX"), (["--start-at", "soon"], "--start-at")):
        env = {k: v for k, v in os.environ.items() if k != "JOB_COMPLETION_INDEX"}
        out = _run(tmp_path, f, *args, env=env)
        assert out.returncode == 2 and needle in out.stderr, (args, out.stderr)


# summary.json keys that are not counts to add up when shards merge
_NOT_ADDITIVE = {"scenario", "target", "started", "elapsed_s", "requests_per_s", "latency", "histograms", "timings",
                 "timing_histograms", "events", "series", "interrupted", "shard", "seed", "easload_version", "mail"}


def test_every_count_of_a_summary_adds_up_when_merged():
    """Two shards with the same counts merge into twice every count of summary.json: a counter
    added to Stats/summary.json but forgotten by merge.py fails here."""
    from loadgen.results.merge import merge
    from loadgen.results.stats import Stats

    s = Stats()
    s.record("Provision", 200, "ok", 0.01, 100, 200, eas_status=1)
    s.record("Sync", 503, "throttled", 0.02, 50, 0)
    s.eas_statuses[("Provision", 1)] += 1
    s.provisioning("provisioned", 1)
    s.reprovision("144")
    s.wipes["1"] += 1
    s.throttled["503"] += 1
    s.malformed["Sync"] += 1
    s.cancelled["Ping"] += 1
    s.final_states["provisioned"] += 1
    s.compliance[1] += 1
    s.unmet["RequireStorageCardEncryption"] += 1
    s.reenrolments += 1
    s.start_lag(0.5, 0.1)
    s.password_changes["MinDevicePasswordLength"] += 1
    s.code_words += 1
    s.local_wipes += 1
    s.policy_effects["attachment_fetch"] += 1
    s.record("Sync", 200, "ok", 0.01, 50, 50)
    s.resend("Sync")
    s.cancelled["Sync"] += 1
    s.unsent("Sync")
    s.device_errors["OverflowError"] += 1
    s.mail("sent_new")
    s.push_latency("cc", 2.5)
    s.tls_handshake("full", 0.004)
    s.tls_handshake("resumed", 0.001)
    s.ended = s.started + 1
    one = s.to_dict("x")
    merged, _shards, _first = merge([dict(one, shard=[0, 2]), dict(one, shard=[1, 2])])
    two = merged.to_dict("x")
    # mail: events doubled, the push latency's counts doubled and its percentiles those of the same data
    assert two["mail"]["events"] == {"sent_new": 2}
    assert two["mail"]["push_latency"]["cc"] == dict(one["mail"]["push_latency"]["cc"], count=2)

    def doubled(a):
        if isinstance(a, dict):
            return {k: doubled(v) for k, v in a.items()}
        if isinstance(a, list):
            return [doubled(v) for v in a]
        return 2 * a if isinstance(a, (int, float)) and not isinstance(a, bool) else a

    for key, value in one.items():
        if key in _NOT_ADDITIVE:
            continue
        if key in ("by_key", "provisionings_raw"):  # rows ending with the count
            assert two[key] == [row[:-1] + [2 * row[-1]] for row in value], key
        elif key == "thresholds":
            continue
        else:
            assert value, "the test should make %r non-zero" % key
            assert two[key] == doubled(value), key


def test_a_damaged_summary_is_a_usage_error(tmp_path):
    """A hand-edited or truncated summary.json: exit 2 with one line, never a traceback."""
    from loadgen.results.stats import Stats

    s = Stats()
    s.record("Sync", 200, "ok", 0.01, 10, 10)
    s.sample(1.0, {"provisioned": 1})
    s.ended = s.started + 1
    good = s.to_dict("x")
    bad_series = orjson.loads(orjson.dumps(good))
    for point in bad_series["series"]:
        for lat in point.get("latency", {}).values():
            lat["counts"] = "9!!not-base64"
    missing = {k: v for k, v in good.items() if k != "by_key"}
    wrong_type = dict(good, by_key=[["Sync", "ok", "200", "many"]])
    for i, broken in enumerate((bad_series, missing, wrong_type)):
        f = tmp_path / ("b%d.json" % i)
        f.write_bytes(orjson.dumps(dict(broken, shard=[0, 2])))
        other = tmp_path / ("g%d.json" % i)
        other.write_bytes(orjson.dumps(dict(good, shard=[1, 2])))
        out = subprocess.run([sys.executable, "-m", "loadgen", "merge", str(f), str(other)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, (i, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr and out.stderr.strip().count("\n") == 0, out.stderr
        needle = ("raw counters" if broken is missing else "field 'by_key'" if broken is wrong_type
                  else "not a valid easload summary")
        assert needle in out.stderr, out.stderr


# -- interval histograms merged many at once (loadgen.results.histograms.group, merge_groups): the percentiles
# of the sum are hdrh's of all the values, whatever the widths, counts and grouping

PCTS = (0, 1, 25, 50, 75, 90, 99, 99.9, 99.99, 100)


def _values(rng, n, big):
    """Latencies (us) over the whole Recorder range, with repeats (``big``: counts that take 2, 4 or 8 bytes)."""
    return [(max(1, min(3_600_000_000, int(rng.lognormvariate(rng.uniform(6, 14), rng.uniform(0.1, 2.5))))),
             rng.choice((1, 1, 1, 2, 3) + big)) for _ in range(n)]


def _hdrh(values_counts):
    from hdrh.histogram import HdrHistogram

    h = HdrHistogram(1, 3_600_000_000, 3)
    for v, n in values_counts:
        h.record_value(v, n)
    return h


def _counts_text(values_counts):
    from loadgen.results.histograms import _REF, encode_counts

    counts = {}
    for v, n in values_counts:
        k = _REF.get_counts_array_index(v)
        counts[k] = counts.get(k, 0) + n
    keys = sorted(counts)
    return encode_counts(keys, [counts[k] for k in keys])


def test_groups_of_parts_give_hdrh_percentiles():
    import random

    from loadgen.results.histograms import entry_raws, group, group_percentiles, merge_groups

    rng = random.Random(17)
    for case in range(400):
        big = rng.choice(((), (), (300,), (70_000,), (2**33,)))
        groups = [[_values(rng, rng.choice((1, 5, 60, 300)), big) for _ in range(rng.randint(1, 4))]
                  for _ in range(rng.randint(1, 9))]
        entries = []
        for parts in groups:  # an entry of one part or several (a merged summary's), or an old "hdr"
            if len(parts) == 1 and rng.random() < 0.2:
                entries.append({"hdr": _hdrh(parts[0]).encode().decode("ascii")})
            else:
                entries.append({"counts": " ".join(_counts_text(p) for p in parts)})
        every = [vc for parts in groups for p in parts for vc in p]
        ref = _hdrh(every)
        want = [ref.get_value_at_percentile(p) for p in PCTS]
        each = [group(entry_raws(e)) for e in entries]
        whole = group([r for e in entries for r in entry_raws(e)])
        summed = merge_groups([merge_groups(each[:2])] + each[2:])
        for g in (whole, summed):
            assert g.total == ref.get_total_count(), case
            assert group_percentiles(g, PCTS) == want, case
            assert group_percentiles(g, PCTS[::-1]) == want[::-1], case


def test_merged_intervals_and_report_points_are_hdrh_of_all_requests():
    """merge_series and the report (a point combines several intervals of several results) read the
    merged histograms exactly: hdrh's percentiles of every request of the interval or the point."""
    import random

    from loadgen.results import html as htmlreport
    from loadgen.results.histograms import merge_series

    rng = random.Random(23)
    shards, intervals = 3, 1250  # more than MAX_POINTS: a point is 3 intervals of each result
    values = [[_values(rng, rng.choice((0, 1, 2, 40, 200)), ()) for _ in range(intervals)] for _ in range(shards)]

    def entry(vcs):
        h = _hdrh(vcs)
        return {"count": h.get_total_count(), "p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "counts": _counts_text(vcs)}

    summaries = [{"scenario": "s", "seed": 1, "target": "t%d" % s, "started": 100.0, "elapsed_s": float(intervals),
                  "series": [dict({"t": i + 1.0, "devices": {"provisioned": 1}, "requests": {"Sync ok": 1}},
                                  latency={"Sync": entry(vcs)} if vcs else {})
                             for i, vcs in enumerate(values[s])]} for s in range(shards)]
    merged = merge_series([s["series"] for s in summaries])
    for i in rng.sample(range(intervals), 60):
        every = [vc for s in range(shards) for vc in values[s][i]]
        lat = merged[i]["latency"].get("Sync")
        if len([s for s in range(shards) if values[s][i]]) < 2:
            continue  # one result's interval: copied
        ref = _hdrh(every)
        assert lat["count"] == ref.get_total_count()
        assert [lat["p50_ms"], lat["p90_ms"], lat["p99_ms"]] == [ref.get_value_at_percentile(p) / 1000
                                                                 for p in (50, 90, 99)], i
    m = htmlreport.merge(summaries)
    factor = -(-intervals // htmlreport.MAX_POINTS)
    views = [(m["points"], range(shards))] + [(pts, (s,)) for s, pts in enumerate(m["shard_points"])]
    for pts, which in views:
        for b in rng.sample(range(len(pts)), 40):
            every = [vc for s in which for i in range(b * factor, min(intervals, (b + 1) * factor))
                     for vc in values[s][i]]
            lat = pts[b]["latency"].get("Sync")
            if sum(1 for s in which for i in range(b * factor, min(intervals, (b + 1) * factor)) if values[s][i]) < 2:
                continue  # one interval: its own numbers
            ref = _hdrh(every)
            assert lat["count"] == ref.get_total_count()
            assert [lat["p50_ms"], lat["p90_ms"], lat["p99_ms"]] == [ref.get_value_at_percentile(p) / 1000
                                                                     for p in (50, 90, 99)], (which, b)


def test_merge_keeps_a_threshold_written_in_exponent_form(tmp_path):
    """summary.json writes a limit with %g ("errors.rate < 1e-05"): easload merge reads it back with
    the one threshold grammar (loadgen/results/thresholds.py) and judges it, as the HTML report does."""
    from loadgen.cli import main
    from loadgen.results.stats import Stats

    s = Stats()
    s.record("Sync", 200, "ok", 0.01, 10, 10)
    s.sample(1.0, {"provisioned": 1})
    s.ended = s.started + 1
    for i in range(2):
        doc = dict(s.to_dict("x"), shard=[i, 2], seed=1, devices_total=1,
                   thresholds=[{"threshold": "errors.rate < 1e-05", "value": 0.0, "passed": True}])
        (tmp_path / ("s%d.json" % i)).write_bytes(orjson.dumps(doc))
    code = main(["merge", str(tmp_path / "s0.json"), str(tmp_path / "s1.json"), "--out", str(tmp_path / "m")])
    merged = orjson.loads((tmp_path / "m" / "summary.json").read_bytes())
    assert [t["threshold"] for t in merged["thresholds"]] == ["errors.rate < 1e-05"] and code == 0
