"""deploy/: the Kubernetes scrape configuration and the Grafana provisioning files are well formed.

Debian's Prometheus is built without Kubernetes service discovery, so promtool
cannot check prometheus-kubernetes.yml here; its structure is checked instead.
"""

import json
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_kubernetes_scrape_config_keeps_only_annotated_easload_pods():
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-kubernetes.yml").read_text())
    (job,) = cfg["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    relabel = job["relabel_configs"]
    keeps = [r for r in relabel if r.get("action") == "keep"]
    assert {r["source_labels"][0] for r in keeps} == {
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape", "__meta_kubernetes_pod_label_app_kubernetes_io_name"}
    targets = {r.get("target_label") for r in relabel}
    assert {"__address__", "shard"} <= targets
    assert not targets & {"device_id", "user", "run_id"}  # bounded target labels only
    job_yaml = (DEPLOY / "kubernetes" / "base" / "job.yaml").read_text()
    assert "app.kubernetes.io/name: easload" in job_yaml and "prometheus.io/port" in job_yaml


def test_grafana_provisioning_points_at_the_dashboard():
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "easload.yaml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"
    prov = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "easload.yaml").read_text())
    assert prov["providers"][0]["type"] == "file"
    dashboard = json.loads((DEPLOY / "grafana" / "easload-dashboard.json").read_text())
    assert dashboard["uid"] == "easload-run"


def test_kubernetes_scrape_config_passes_promtool_with_static_discovery(tmp_path):
    """Debian's promtool lacks Kubernetes service discovery: swap kubernetes_sd_configs for a static target
    and let promtool check everything else (intervals, relabel actions, regexes, target labels)."""
    import os
    import shutil
    import subprocess

    import pytest

    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("EASLOAD_REQUIRE_PROMETHEUS"):
            pytest.fail("promtool is not installed (EASLOAD_REQUIRE_PROMETHEUS is set)")
        pytest.skip("promtool not installed (Debian package prometheus)")
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-kubernetes.yml").read_text())
    for job in cfg["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
        job["static_configs"] = [{"targets": ["127.0.0.1:9477"]}]
    path = tmp_path / "prometheus-kubernetes-static.yml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    # and it does fail on a broken relabel rule
    cfg["scrape_configs"][0]["relabel_configs"].append({"source_labels": ["x"], "regex": "(", "action": "keep"})
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0


def test_kubernetes_shard_label_is_the_completion_index():
    """The annotation the Job controller sets on every pod of an Indexed Job becomes the "shard" target
    label, the one the dashboard's $shard variable reads (label_values(easload_run_info, shard))."""
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-kubernetes.yml").read_text())
    (job,) = cfg["scrape_configs"]
    (shard,) = [r for r in job["relabel_configs"] if r.get("target_label") == "shard"]
    assert shard["source_labels"] == ["__meta_kubernetes_pod_annotation_batch_kubernetes_io_job_completion_index"]
    dashboard = json.loads((DEPLOY / "grafana" / "easload-dashboard.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["shard"]["definition"].endswith(", shard)") and variables["shard"]["allValue"] == ".*"


def test_grafana_datasource_matches_the_prometheus_config():
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "easload.yaml").read_text())
    (source,) = ds["datasources"]
    assert source["url"] == "http://127.0.0.1:9090" and source["access"] == "proxy"
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    intervals = {job["scrape_interval"] for job in prom["scrape_configs"]}
    assert intervals == {source["jsonData"]["timeInterval"]}  # $__rate_interval is computed from it


def test_dashboard_has_the_mail_row():
    """A "Mail" row before the target's: mail events/s by event and push latency p50/p99 by kind over the
    metrics loadgen/results/metrics.py exports, joined on the run like every client panel; ids unique and
    no two panels on the same cells."""
    from loadgen.results.metrics import RunCollector
    from loadgen.results.stats import Stats

    dashboard = json.loads((DEPLOY / "grafana" / "easload-dashboard.json").read_text())
    panels = dashboard["panels"]
    rows = [(i, p["title"]) for i, p in enumerate(panels) if p["type"] == "row"]
    (mail_at,) = [i for i, title in rows if title.startswith("Mail")]
    assert rows[-1][1].startswith("Target") and mail_at < rows[-1][0]
    mail = panels[mail_at + 1:rows[-1][0]]
    exprs = [t["expr"] for p in mail for t in p["targets"]]
    assert any(e.startswith("sum by (event) (rate(easload_mail_events_total[") for e in exprs)
    quantiles = [e for e in exprs if "easload_push_latency_seconds_bucket" in e]
    assert [e.split(",")[0] for e in quantiles] == ["histogram_quantile(0.5", "histogram_quantile(0.99"]
    assert all("sum by (le, kind)" in e for e in quantiles)
    join = 'easload_run_info{run_id=~"$run_id", scenario=~"$scenario", shard=~"$shard"}'
    assert all(join in e for e in exprs)
    run = RunCollector()
    run.attach(Stats(), dict, {"run_id": "x"})
    exported = {f.name for f in run.collect()}
    assert {"easload_mail_events", "easload_push_latency_seconds"} <= exported
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in panels:
        g = p["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, p["title"]
        cells |= mine


def test_the_dashboards_error_rate_excludes_exactly_the_ok_outcomes():
    """The error panels count as errors what the summary counts (loadgen/results/outcomes.py OK_OUTCOMES)."""
    import re as _re
    from pathlib import Path as _Path

    from loadgen.results.outcomes import OK_OUTCOMES

    text = (_Path(__file__).resolve().parents[2] / "deploy/grafana/easload-dashboard.json").read_text()
    found = set(_re.findall(r'outcome!~\\"([^"\\]+)\\"', text))
    assert found == {"|".join(OK_OUTCOMES)}, found
