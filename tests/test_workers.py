"""--workers: deterministic shards whose union is the unsharded population; merged results."""

import subprocess
import sys

import orjson

from loadgen import engine, scenario
from loadgen.workers import merge_series


def _ids(devices):
    return {(d.user, d.ident.device_id, d.version.text, d.profile.name) for d in devices}


def test_shards_union_is_the_whole_population():
    sc = scenario.parse('seed = 3\n[auth]\nusers = 50\n[population]\ndevices = 97\ndevices_per_user = 2\n'
                        'versions = { "14.1" = 1, "12.1" = 1 }\nprofiles = { modern = 1, legacy = 1 }\n', "w.toml")
    whole, _ = engine.build_population(sc, "http://127.0.0.1:1/Microsoft-Server-ActiveSync")
    for shards in (2, 3):
        parts = [engine.build_population(sc, "http://127.0.0.1:1/Microsoft-Server-ActiveSync", w, shards)[0]
                 for w in range(shards)]
        assert sum(len(p) for p in parts) == len(whole)
        assert set().union(*(_ids(p) for p in parts)) == _ids(whole)


def test_merge_series_adds_counts_and_merges_histograms():
    from loadgen.report import Stats

    a, b = Stats(), Stats()
    a.record("Sync", 200, "ok", 0.010, 1, 1)
    b.record("Sync", 200, "ok", 0.030, 1, 1)
    b.record("Sync", 200, "ok", 0.030, 1, 1)
    a.sample(1.0, {"provisioned": 2})
    b.sample(1.0, {"provisioned": 3})
    merged = merge_series([a.series, b.series])
    assert merged[0]["devices"] == {"provisioned": 5} and merged[0]["requests"] == {"Sync ok": 3}
    assert merged[0]["latency"]["Sync"]["count"] == 3
    assert 29 <= merged[0]["latency"]["Sync"]["p50_ms"] <= 31


def test_two_workers_end_to_end(tmp_path):
    f = tmp_path / "w.toml"
    f.write_text('duration = 4\n[population]\ndevices = 12\n[load]\nramp_up = 0.5\nthink_time = 0.3\nmode = "poll"\n'
                 '[thresholds]\n"devices.provisioned" = ">= 1"\n[[events]]\nat = 2\naction = "change_policy"\n'
                 'settings = { MinDevicePasswordLength = 6 }\n')
    out = subprocess.run([sys.executable, "-m", "loadgen", "run", str(f), "--workers", "2", "--metrics-listen", "",
                          "-q", "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    data = orjson.loads((tmp_path / "o" / "summary.json").read_bytes())
    assert data["devices"] == {"provisioned": 12}
    assert data["reprovisions"]["144"] == 12  # the parent's event reached every worker's devices
    assert data["requests"] == sum(data["by_command_status"].values())
    assert data["latency"]["Provision"]["count"] == data["by_command_status"]["Provision 200"]
