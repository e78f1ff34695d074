"""deploy/: the Kubernetes scrape configuration and the Grafana provisioning files are well formed.

Debian's Prometheus is built without Kubernetes service discovery, so promtool
cannot check prometheus-kubernetes.yml here; its structure is checked instead.
"""

import json
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


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
