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
