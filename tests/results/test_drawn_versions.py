"""summary.json's ``versions``: the EAS versions the devices drew (loadgen/run/plan.py drawn_versions, the
population builder's draw counted), not the scenario's weights (kept as ``version_weights``); shards add
up when merged (loadgen/results/summary.py merged_versions) in ``easload merge`` and the HTML report."""

from collections import Counter

from loadgen import scenario as sc
from loadgen.results import summary
from loadgen.run import plan
from loadgen.run.engine import build_population

TEXT = """
name = "versions"
duration = 5
seed = 13
[auth]
users = 60
[population]
devices = 120
devices_per_user = 2
versions = { "14.1" = 6, "16.1" = 1, "12.1" = 3 }
profiles = { modern = 3, legacy = 1 }
%s
"""


def _counts(s, shard=(0, 1)):
    devices, _ = build_population(s, "http://127.0.0.1/Microsoft-Server-ActiveSync", *shard)
    return dict(sorted(Counter(d.version.text for d in devices).items()))


def test_drawn_versions_are_the_population_s_whatever_the_shard():
    for extra in ("", "[workload]\nclients = { ios = 1, outlook-cloud = 1 }"):  # outlook-cloud: one per user
        s = sc.parse(TEXT % extra, "v.toml")
        drawn = plan.drawn_versions(s)
        assert drawn == _counts(s)
        assert sum(drawn.values()) <= 120 and set(drawn) == {"14.1", "16.1", "12.1"}
        assert drawn != {"14.1": 6, "16.1": 1, "12.1": 3}  # counts, not the weights
        shards = [plan.drawn_versions(s, (k, 3)) for k in range(3)]
        assert [plan.drawn_versions(s, (k, 3)) for k in range(3)] == [_counts(s, (k, 3)) for k in range(3)]
        added = Counter()
        for part in shards:
            added.update(part)
        assert dict(sorted(added.items())) == drawn


def test_merged_versions_add_the_shards_and_keep_the_weights():
    weights = {"14.1": 6, "16.1": 1}
    a = {"versions": {"14.1": 50, "16.1": 10}, "version_weights": weights}
    b = {"versions": {"14.1": 55, "16.1": 5}, "version_weights": weights}
    assert summary.merged_versions([a, b]) == ({"14.1": 105, "16.1": 15}, weights)
    old = {"versions": weights}  # a summary from before: its versions are the weights, left as they are
    assert summary.merged_versions([old, a]) == (weights, None)


def test_a_run_writes_the_drawn_versions_and_the_weights(tmp_path):
    import json

    from loadgen.cli import app

    f = tmp_path / "v.toml"
    f.write_text((TEXT % "[load]\ngraceful_stop = 0\nramp_up = 0").replace("duration = 5", "duration = 1")
                 .replace("devices = 120", "devices = 12").replace("users = 60", "users = 6"))
    out = tmp_path / "out"
    app.main(["run", str(f), "-q", "--metrics-listen", "", "--out", str(out)])
    data = json.loads((out / "summary.json").read_text())
    assert data["versions"] == plan.drawn_versions(sc.load(str(f))) and sum(data["versions"].values()) == 12
    assert data["version_weights"] == {"14.1": 6, "16.1": 1, "12.1": 3}
    assert summary.read([str(out)])[0]["versions"] == data["versions"]  # the reader accepts it
