"""deploy/kubernetes: the Indexed Job, its ConfigMaps and Secret, the merge Job, one run's names (run.sh).

Static checks on every YAML file (PyYAML), the scenarios validated by ``easload validate``,
and, when ``kubectl`` or ``kustomize`` is installed, the kustomizations rendered and checked.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
KDIR = ROOT / "deploy" / "kubernetes"
KUSTOMIZATIONS = [KDIR / "base", KDIR / "overlays" / "example"]
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # the pod annotation: the one source
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
    for flag in ("--metrics-listen 0.0.0.0:9477", "--linger 30", "-q", "--yes", '--start-at "$start_at"'):
        assert flag in line, flag
    # the start comes from the barrier (every shard up), never from a hand-written time
    assert re.search(r'start_at=\$\(python -m loadgen\.run\.barrier --index "\$JOB_COMPLETION_INDEX" '
                     r'--shards "\$EASLOAD_SHARDS"', line), line
    assert '--peers "$EASLOAD_JOB-{i}.$EASLOAD_SERVICE:9476"' in line and "|| exit 3" in line
    assert "EASLOAD_START_AT" not in line
    env = _env(c)
    assert env["EASLOAD_JOB"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['batch.kubernetes.io/job-name']"
    assert env["EASLOAD_SERVICE"]["value"] == pod["subdomain"]  # the barrier's peers: <job>-<i>.<service>
    assert any(p["containerPort"] == 9476 for p in c["ports"])
    assert spec["ttlSecondsAfterFinished"] > 0
    assert not c["image"].endswith(":latest") and ":" in c["image"], c["image"]
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
    """devices per pod x 2 connections stay under 20,000 files; the memory limit covers the README's
    HTTPS figure on the average workload profile (43 KiB/device) + 40 MiB, and the request at least
    the Ping-only TLS figure (36 KiB/device)."""
    import tomllib

    shards = int(_read_env_file(KDIR / "overlays" / "example" / "run.env")["shards"])
    sc = tomllib.loads((KDIR / "overlays" / "example" / "scenario.toml").read_text())
    per_pod = -(-sc["population"]["devices"] // shards)
    assert per_pod * 2 <= 20000 - 1000
    (patch,) = _docs(KDIR / "overlays" / "example" / "job-patch.yaml")
    resources = _containers(patch)[0]["resources"]
    limit = resources["limits"]["memory"]
    assert limit.endswith("Mi") and int(limit[:-2]) * 1024 >= per_pod * 43 + 40 * 1024
    request = resources["requests"]["memory"]
    assert request.endswith("Mi") and int(request[:-2]) * 1024 >= per_pod * 36 + 40 * 1024


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
        _check_merge_job(docs)
        # a pinned image: tag and digest (a placeholder the README says to replace), the same in both Jobs
        images = {c["image"] for d in docs if d["kind"] == "Job" for c in _containers(d)}
        assert len(images) == 1 and re.fullmatch(r"registry\.example\.com/easload:\d+\.\d+\.\d+@sha256:[0-9a-f]{64}",
                                                  images.pop())


def _check_merge_job(docs):
    """The merge Job comes with the shards: it waits for every shard's results, then merges them and
    writes report.html too; its exit status is the merge's."""
    (job,) = [d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].startswith("easload-merge")]
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["ttlSecondsAfterFinished"] > 0
    shards = _shard_job(docs)
    assert spec["activeDeadlineSeconds"] > shards["spec"]["activeDeadlineSeconds"]  # it waits for the shards
    (c,) = _containers(job)
    line = " ".join(c["command"] + c["args"])
    assert "/results/shard-*/junit.xml" in line and '-lt "$EASLOAD_SHARDS"' in line  # waits for all N
    assert "easload merge /results/shard-*/summary.json --out /results/merged || rc=$?" in line
    assert "easload report /results/shard-*/ -o /results/merged/report.html" in line
    assert line.rstrip().endswith('exit "$rc"')
    claims = {v["persistentVolumeClaim"]["claimName"] for d in (job, shards)
              for v in d["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v}
    assert len(claims) == 1 and ("PersistentVolumeClaim", claims.pop()) in {
        (d["kind"], d["metadata"]["name"]) for d in docs}


# --------------------------------------------------------------------------- Kubernetes schemas

# Validated against the OpenAPI schemas of these Kubernetes versions (kubernetes-validate ships them; no
# network): 1.29, the oldest the base supports (backoffLimitPerIndex, beta and on by default from 1.29), and
# 1.33, a recent one (backoffLimitPerIndex GA).  Strict: an unknown field is an error, as `kubectl apply
# --validate=strict` makes it.
K8S_VERSIONS = ("1.29.0", "1.33.0")


def _rendered(kdir):
    cmd = _kustomize_cmd()
    if cmd is None:
        pytest.skip("neither kustomize nor kubectl on PATH")
    proc = subprocess.run(cmd + [str(kdir)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("kdir", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(KDIR)))
def test_rendered_manifests_match_the_kubernetes_schemas(kdir, version):
    kv = pytest.importorskip("kubernetes_validate")
    docs = _rendered(kdir)
    assert docs
    for doc in docs:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail("%s %s/%s against Kubernetes %s: %s at %s" % (
                kdir.relative_to(KDIR), doc["kind"], doc["metadata"]["name"], version, exc.message,
                "/".join(map(str, exc.path))))


def test_schema_validation_can_fail():
    """The validator rejects what the API server would: an unknown field, a wrong type, a bad enum."""
    kv = pytest.importorskip("kubernetes_validate")
    job = _shard_job(_docs(KDIR / "base" / "job.yaml"))
    kv.validate(job, K8S_VERSIONS[-1], strict=True)
    bad = [
        ("spec", "completionsMode", "Indexed"),  # a typo: unknown field
        ("spec", "parallelism", "two"),  # a string where an integer belongs
    ]
    for section, key, value in bad:
        broken = json.loads(json.dumps(job))
        broken[section][key] = value
        with pytest.raises(kv.ValidationError):
            kv.validate(broken, K8S_VERSIONS[-1], strict=True)
    broken = json.loads(json.dumps(job))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = 6
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, K8S_VERSIONS[-1], strict=True)


# The prometheus-operator PodMonitor is a custom resource: its schema is not in kubernetes-validate and is
# not vendored here (it is prometheus-operator's file).  It is checked structurally instead, against the
# fields and patterns of monitoring.coreos.com/v1 PodMonitor (prometheus-operator's CRD
# example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml): spec.selector is a label
# selector, podMetricsEndpoints[] take port (a container port name), path, interval / scrapeTimeout
# (Prometheus durations) and relabelings (sourceLabels: label names, targetLabel).
_PROM_DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
                            r"(([0-9]+)ms)?)$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_ENDPOINT_FIELDS = {"port", "portNumber", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
                    "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings", "enableHttp2",
                    "filterRunning", "followRedirects", "proxyUrl", "tlsConfig", "authorization", "basicAuth",
                    "oauth2", "bearerTokenSecret", "trackTimestampsStaleness"}
_RELABEL_FIELDS = {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"}


def test_podmonitor_structure():
    (pm,) = _docs(KDIR / "extras" / "podmonitor.yaml")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1" and pm["kind"] == "PodMonitor"
    assert set(pm) <= {"apiVersion", "kind", "metadata", "spec"}
    spec = pm["spec"]
    assert set(spec) <= {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels",
                         "sampleLimit", "targetLimit", "labelLimit", "attachMetadata"}, spec
    assert set(spec["selector"]) <= {"matchLabels", "matchExpressions"}
    job = _shard_job(_docs(KDIR / "base" / "job.yaml"))
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()  # selects the shard pods
    port_names = {p["name"] for c in _containers(job) for p in c.get("ports", [])}
    for ep in spec["podMetricsEndpoints"]:
        assert set(ep) <= _ENDPOINT_FIELDS, ep
        assert ep["port"] in port_names and ep["path"] == "/metrics"
        for key in ("interval", "scrapeTimeout"):
            assert _PROM_DURATION.match(ep[key]), ep[key]
        for r in ep["relabelings"]:
            assert set(r) <= _RELABEL_FIELDS and all(_LABEL_NAME.match(s) for s in r["sourceLabels"]), r
        targets = {r.get("targetLabel") for r in ep["relabelings"]}
        assert "shard" in targets  # the completion index as a target label: the dashboard sums shards
        (shard,) = [r for r in ep["relabelings"] if r.get("targetLabel") == "shard"]
        # the pod annotation the Job controller sets, as prometheus-kubernetes.yml relabels it
        assert shard["sourceLabels"] == ["__meta_kubernetes_pod_annotation_batch_kubernetes_io_job_completion_index"]


def test_one_source_for_the_shard_index():
    """The completion index comes from the pod annotation everywhere: the shards (JOB_COMPLETION_INDEX, the
    controller's copy of it), Prometheus' relabelling and the PodMonitor; never from the pod label."""
    meta = "__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-z0-9]", "_", COMPLETION_INDEX)
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus-kubernetes.yml").read_text())
    sources = [r["source_labels"] for job in prom["scrape_configs"] for r in job.get("relabel_configs", [])
               if r.get("target_label") == "shard"]
    assert sources == [[meta]]
    (pm,) = _docs(KDIR / "extras" / "podmonitor.yaml")
    assert [r["sourceLabels"] for ep in pm["spec"]["podMetricsEndpoints"] for r in ep["relabelings"]
            if r.get("targetLabel") == "shard"] == [[meta]]
    texts = [p.read_text() for p in YAML_FILES] + [(ROOT / "deploy" / "prometheus" / "prometheus-kubernetes.yml")
                                                   .read_text(), (KDIR / "README.md").read_text()]
    for text in texts:
        assert "pod_label_batch_kubernetes_io_job_completion_index" not in text
        assert "-l batch.kubernetes.io/job-completion-index" not in text


def test_shards_share_one_run_id():
    """EASLOAD_RUN_ID (loadgen.results.metrics) comes from the Job's uid label, so every shard reports one run."""
    (c,) = [c for c in _containers(_shard_job(_docs(KDIR / "base" / "job.yaml"))) if c["name"] == "easload"]
    ref = _env(c)["EASLOAD_RUN_ID"]["valueFrom"]["fieldRef"]
    assert ref["fieldPath"] == "metadata.labels['batch.kubernetes.io/controller-uid']"
    from loadgen.results.metrics import RUN_ID_ENV, _RUN_ID

    assert RUN_ID_ENV == "EASLOAD_RUN_ID" and _RUN_ID.fullmatch("0f6b2a9e-4c51-4a0e-9d39-2b1c3f5a7e88")


# --------------------------------------------------------------------------- the Containerfile (static)

# docker here is a client without a daemon, so the image cannot be built in the test suite: the
# Containerfile is checked statically (what it installs, who runs it, what it runs).


def _containerfile():
    lines, current = [], ""
    for raw in (KDIR / "Containerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_containerfile_installs_easload_and_runs_it_as_non_root():
    import tomllib

    instructions = _containerfile()
    froms = [i for i, (op, _a) in enumerate(instructions) if op == "FROM"]
    assert len(froms) >= 1
    final = instructions[froms[-1]:]
    final_ops = dict((op, arg) for op, arg in final)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # a Python the package supports
    m = re.match(r"python:(\d+)\.(\d+)", final[0][1])
    low = re.search(r">=\s*(\d+)\.(\d+)", pyproject["project"]["requires-python"])
    assert m and (int(m[1]), int(m[2])) >= (int(low[1]), int(low[2])), (final[0], low)
    # builds the package from the sources it copies (which exist), and installs it in the final stage
    copied = [arg.split()[:-1] for op, arg in instructions if op == "COPY" and "--from" not in arg]
    for sources in copied:
        for src in sources:
            assert (ROOT / src.rstrip("/")).exists(), src
    assert any("pyproject.toml" in s for s in copied) and any("loadgen/" in s for s in copied)
    assert not any(".venv" in s for srcs in copied for s in srcs)
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    assert re.search(r"pip (wheel|install)[^&]* \.( |$)", runs), runs
    assert re.search(r"pip install [^&]*\.whl", " ".join(arg for op, arg in final if op == "RUN"))
    # the entrypoint is the console script the package declares
    assert json.loads(final_ops["ENTRYPOINT"]) == ["easload"]
    assert "easload" in pyproject["project"]["scripts"]
    # non-root, the uid the Job's securityContext expects
    user = final_ops["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0
    pod = _shard_job(_docs(KDIR / "base" / "job.yaml"))["spec"]["template"]["spec"]
    assert int(user) == pod["securityContext"]["runAsUser"]
    assert "9477" in final_ops.get("EXPOSE", "")


# --------------------------------------------------------------------------- one run's names (run.sh)


def _run_manifests(tmp_path, run):
    if not (shutil.which("kubectl") or shutil.which("kustomize")) or not shutil.which("kubectl"):
        pytest.skip("kubectl not on PATH")
    proc = subprocess.run(["sh", str(KDIR / "run.sh"), "--print", str(KDIR / "overlays" / "example"), run],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, EASLOAD_K8S_RUNS=str(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def test_each_run_has_its_own_names(tmp_path):
    """Two runs of one overlay share no namespaced name (a second run never meets the first one's immutable Job),
    and each run's references, Service, subdomain and barrier peers agree with its own names."""
    runs = {run: _run_manifests(tmp_path, run) for run in ("20260601-0900", "nightly-2")}
    names = {run: {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] != "Namespace"}
             for run, docs in runs.items()}
    assert not names["20260601-0900"] & names["nightly-2"]
    for run, docs in runs.items():
        assert all(("-" + run) in d["metadata"]["name"] for d in docs if d["kind"] != "Namespace")  # + a hash
        job = _shard_job(docs)
        _check_shard_job(job)
        _check_merge_job(docs)
        pod = job["spec"]["template"]
        (svc,) = [d for d in docs if d["kind"] == "Service"]
        assert svc["spec"]["clusterIP"] == "None" and svc["metadata"]["name"] == pod["spec"]["subdomain"]
        assert svc["spec"]["selector"]["app.kubernetes.io/instance"] == run  # this run's shards only
        assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        (c,) = [c for c in pod["spec"]["containers"] if c["name"] == "easload"]
        assert _env(c)["EASLOAD_SERVICE"]["value"] == svc["metadata"]["name"]
        refs = {e["valueFrom"][k]["name"] for d in docs if d["kind"] == "Job" for c in _containers(d)
                for e in c.get("env", []) for k in ("configMapKeyRef", "secretKeyRef") if k in e.get("valueFrom", {})}
        refs |= {v["configMap"]["name"] for v in pod["spec"]["volumes"] if "configMap" in v}
        assert refs <= {n for _k, n in names[run]}, refs - {n for _k, n in names[run]}
        kv = pytest.importorskip("kubernetes_validate")
        for doc in docs:
            kv.validate(doc, K8S_VERSIONS[-1], strict=True)


def test_run_script_refuses_a_bad_run_id(tmp_path):
    for bad in ("Upper", "-lead", "trail-", "a_b", "x" * 21):
        proc = subprocess.run(["sh", str(KDIR / "run.sh"), "--print", str(KDIR / "overlays" / "example"), bad],
                              capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, EASLOAD_K8S_RUNS=str(tmp_path)))
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "RUN" in proc.stderr, (bad, proc.stderr)
