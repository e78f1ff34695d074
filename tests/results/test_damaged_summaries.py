"""`easload merge` and `easload report` on damaged summary.json files: a real summary mutated (keys
deleted, values of another type, the file truncated) is either still usable or refused with exit 2
and one line naming the file -- never a traceback."""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.cli.app import main


@pytest.fixture(scope="module")
def real_summary(tmp_path_factory):
    """summary.json of a short run on the embedded target: every field, a series, histograms, an event."""
    tmp = tmp_path_factory.mktemp("real")
    f = tmp / "s.toml"
    f.write_text('duration = 2\nseed = 3\n[population]\ndevices = 4\n[load]\nramp_up = 0.2\nthink_time = 0.2\n'
                 'mode = "poll"\nsample_interval = 0.5\n[[events]]\nat = 1\naction = "mail"\n'
                 '[thresholds]\n"devices.provisioned" = ">= 1"\n"Sync.p99" = "< 5"\n')
    out = subprocess.run([sys.executable, "-m", "loadgen", "run", str(f), "--metrics-listen", "", "-q", "--out",
                          str(tmp / "out")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return orjson.loads((tmp / "out" / "summary.json").read_bytes())


def _paths(node, prefix=()):
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _parent(doc, path):
    for step in path[:-1]:
        doc = doc[step]
    return doc


JUNK = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                 st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def _mutated(summary, data):
    doc = json.loads(json.dumps(summary))
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = paths[data.draw(st.integers(0, len(paths) - 1), label="path")]
        parent = _parent(doc, path)
        if data.draw(st.booleans(), label="delete"):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(JUNK, label="value")
    raw = json.dumps(doc).encode()
    if data.draw(st.integers(0, 9), label="truncate?") == 0:
        raw = raw[:data.draw(st.integers(0, len(raw)), label="cut")]
    return raw


def _check(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)  # an exception here is the traceback the user would see: the test fails
    lines = err.getvalue().strip().splitlines()
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("easload: "), err.getvalue()
    else:
        assert code in (0, 1), (code, err.getvalue())
    return code, lines


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_merge_of_a_damaged_summary_is_exit_2_or_success(real_summary, data):
    raw = _mutated(real_summary, data)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "summary.json")
        with open(path, "wb") as f:
            f.write(raw)
        code, lines = _check(["merge", path, "--out", os.path.join(tmp, "m")])
        if code == 2:
            assert path in lines[0] or "result" in lines[0], lines


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_report_of_a_damaged_summary_is_exit_2_or_success(real_summary, data):
    raw = _mutated(real_summary, data)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "summary.json")
        with open(path, "wb") as f:
            f.write(raw)
        _check(["report", path, "-o", os.path.join(tmp, "r.html")])


@pytest.mark.parametrize("field,value", [
    ("by_key", [["Sync", "ok", "200"]]),
    ("by_key", "many"),
    ("devices", {"provisioned": "four"}),
    ("eas_statuses", {"Sync one": 1}),
    ("histograms", {"Sync": "not-a-histogram"}),
    ("series", [{"t": "later"}]),
    ("started", None),
    ("shard", [3, 2]),
    ("events", [{"at_s": 1}]),
    ("thresholds", [{"threshold": 5}]),
])
def test_a_damaged_field_is_named(real_summary, tmp_path, capsys, field, value):
    path = tmp_path / "summary.json"
    path.write_bytes(json.dumps(dict(real_summary, **{field: value})).encode())
    for argv in (["merge", str(path)], ["report", str(path), "-o", str(tmp_path / "r.html")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and "'%s'" % field in err, err


def test_a_folded_eas_status_merges(real_summary, tmp_path):
    """Stats folds EAS statuses past its bound into "other" (bounded labels): such a summary is not
    damaged, and merge keeps the folded count."""
    for i in range(2):
        doc = json.loads(json.dumps(real_summary))
        doc["eas_statuses"]["Sync other"] = 3
        doc["shard"] = [i, 2]
        (tmp_path / ("s%d.json" % i)).write_bytes(orjson.dumps(doc))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["merge", str(tmp_path / "s0.json"), str(tmp_path / "s1.json"), "--out", str(tmp_path / "m")])
    assert code in (0, 1), err.getvalue()
    merged = orjson.loads((tmp_path / "m" / "summary.json").read_bytes())
    assert merged["eas_statuses"]["Sync other"] == 6
