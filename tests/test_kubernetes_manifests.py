"""deploy/kubernetes: the Indexed Job, its ConfigMaps and Secret, the merge Job (issue 8).

Static checks on every YAML file (PyYAML), the scenarios validated by ``easload validate``,
and, when ``kubectl`` or ``kustomize`` is installed, the kustomizations rendered and checked.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
KDIR = ROOT / "deploy" / "kubernetes"
KUSTOMIZATIONS = [KDIR / "base", KDIR / "overlays" / "example", KDIR / "overlays" / "example" / "merge"]
YAML_FILES = sorted(p for p in KDIR.rglob("*") if p.suffix in (".yaml", ".yml"))


def _docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _all_docs():
    return [(p, d) for p in YAML_FILES for d in _docs(p)]


def _containers(job):
    return job["spec"]["template"]["spec"]["containers"]


def _env(container):
    return {e["name"]: e for e in container.get("env", [])}


def _read_env_file(path):
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _shard_job(docs):
    jobs = [d for d in docs if d.get("kind") == "Job" and d.get("spec", {}).get("completionMode") == "Indexed"]
    assert len(jobs) == 1, "one Indexed Job expected, found %d" % len(jobs)
    return jobs[0]


def test_every_yaml_file_parses():
    assert YAML_FILES, "no YAML under deploy/kubernetes"
    for path in YAML_FILES:
        docs = _docs(path)
        assert docs, path
        for d in docs:
            assert isinstance(d, dict), path
            if path.name != "kustomization.yaml" and not path.name.endswith("-patch.yaml"):
                assert d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name"), path


def _check_shard_job(job):
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] >= 1
    assert "backoffLimitPerIndex" in spec or "backoffLimit" in spec
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["terminationGracePeriodSeconds"] >= 60  # graceful stop + --linger 30 + writing results
    (c,) = [c for c in _containers(job) if c["name"] == "easload"]
    line = " ".join(c.get("command", []) + c.get("args", []))
    assert "easload run /scenario/scenario.toml" in line
    assert re.search(r"--shards\s+\"?\$\(?EASLOAD_SHARDS", line)
    assert "JOB_COMPLETION_INDEX" in line and "--out" in line
    for flag in ("--metrics-listen 0.0.0.0:9477", "--linger 30", "-q", "--yes", "--start-at"):
        assert flag in line, flag
    env = _env(c)
    assert env["EASLOAD_SHARDS"]["value"] == str(spec["completions"])
    ref = env["EAS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref["key"] == "EAS_PASSWORD" and ref["name"].startswith("easload-credentials")
    res = c["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
    assert any(p["containerPort"] == 9477 for p in c["ports"])
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert "/scenario" in mounts and "/results" in mounts
    ann = spec["template"]["metadata"].get("annotations", {})
    assert ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == "9477"
    assert pod.get("topologySpreadConstraints") or pod.get("affinity", {}).get("podAntiAffinity")


def test_base_job():
    job = _shard_job(_docs(KDIR / "base" / "job.yaml"))
    _check_shard_job(job)
    assert _read_env_file(KDIR / "base" / "run.env")["shards"] == str(job["spec"]["completions"])


def test_no_password_in_configmaps_or_scenarios():
    literal = re.compile(r"^\s*password\s*=", re.M)
    for path in KDIR.rglob("scenario*.toml"):
        text = path.read_text()
        assert not literal.search(text), "%s: a password literal; use password_env" % path
        assert re.search(r'^\s*password_env\s*=\s*"EAS_PASSWORD"', text, re.M), path
    for path, d in _all_docs():
        if d.get("kind") == "ConfigMap":
            for value in (d.get("data") or {}).values():
                assert not literal.search(value) and "EAS_PASSWORD=" not in value, path
        if path.name == "kustomization.yaml":
            for gen in d.get("configMapGenerator", []):
                assert not any("PASSWORD" in x.upper() for x in gen.get("literals", [])), path
                for f in gen.get("envs", []):
                    assert "PASSWORD" not in (path.parent / f).read_text().upper(), path
            for gen in d.get("secretGenerator", []):
                for f in gen.get("envs", []):  # the committed Secret holds a placeholder only
                    assert _read_env_file(path.parent / f).get("EAS_PASSWORD") == "CHANGE-ME", path


def _generated_files():
    for k in KUSTOMIZATIONS:
        (doc,) = _docs(k / "kustomization.yaml")
        for gen in doc.get("configMapGenerator", []):
            for f in gen.get("files", []):
                yield k, gen["name"], k / f.split("=")[-1]


def test_scenario_configmap_files_exist_and_validate():
    scenarios = [p for _k, name, p in _generated_files() if name == "easload-scenario"]
    assert len(scenarios) >= 2  # base and example
    for p in scenarios:
        assert p.is_file(), p
    env = dict(os.environ, EAS_PASSWORD="placeholder")
    proc = subprocess.run([sys.executable, "-m", "loadgen", "validate", *map(str, scenarios)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_example_sizing_fits_one_process():
    """devices per pod x 2 connections stay under 20,000 files; memory limit covers 25 KiB/device + 40 MiB."""
    import tomllib

    shards = int(_read_env_file(KDIR / "overlays" / "example" / "run.env")["shards"])
    sc = tomllib.loads((KDIR / "overlays" / "example" / "scenario.toml").read_text())
    per_pod = -(-sc["population"]["devices"] // shards)
    assert per_pod * 2 <= 20000 - 1000
    (patch,) = _docs(KDIR / "overlays" / "example" / "job-patch.yaml")
    limit = _containers(patch)[0]["resources"]["limits"]["memory"]
    assert limit.endswith("Mi") and int(limit[:-2]) * 1024 >= per_pod * 25 + 40 * 1024


def _kustomize_cmd():
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.parametrize("kdir", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(KDIR)))
def test_kustomize_build(kdir):
    cmd = _kustomize_cmd()
    if cmd is None:
        pytest.skip("neither kustomize nor kubectl on PATH")
    proc = subprocess.run(cmd + [str(kdir)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    kinds = {d["kind"] for d in docs}
    if kdir.name == "merge":
        (job,) = [d for d in docs if d["kind"] == "Job"]
        assert job["spec"]["backoffLimit"] == 0 and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        (c,) = _containers(job)
        line = " ".join(c["command"] + c["args"])
        assert "easload merge" in line and "--out" in line and "shard-*/summary.json" in line
        return
    assert {"Job", "ConfigMap", "Service"} <= kinds
    job = _shard_job(docs)
    _check_shard_job(job)
    run = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "easload-run"]
    assert run and run[0]["data"]["shards"] == str(job["spec"]["completions"])
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    pod = job["spec"]["template"]["spec"]
    scenario_cm = [v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v]
    assert scenario_cm and ("ConfigMap", scenario_cm[0]) in names  # the generated (hashed) name
    svc = [d for d in docs if d["kind"] == "Service"][0]
    assert svc["spec"]["clusterIP"] == "None" and svc["metadata"]["name"] == pod["subdomain"]
    if kdir.name == "example":
        assert job["spec"]["completions"] == 25
        assert ("Secret", "easload-credentials") in names and ("PersistentVolumeClaim", "easload-results") in names
        (results,) = [v for v in pod["volumes"] if v["name"] == "results"]
        assert "emptyDir" not in results and results["persistentVolumeClaim"]["claimName"] == "easload-results"
