"""Merging and rendering an hour of 8 shards: ``merge_series`` (easload merge, --workers) and the
HTML report (``easload report`` of 8 summaries, and of the one merged summary).

    python bench/report_bench.py [--shards 8] [--intervals 3600] [--commands 5] [--repeat 1] [--check] [--legacy]
    python bench/report_bench.py --same-as REV [--real a.json[,b.json...]]... [--shards ...]

Synthesised: every shard has ``intervals`` one-second samples; each sample has requests, HTTP and
EAS statuses per command, devices by state, and for each command an interval HDR histogram of
20..300 latencies (log-normal around 22 ms, wide), taken from a pool of 400 distinct histograms per
command, each use a copy (decoding cost does not depend on the content; nothing caches by content
or identity); the first 600
intervals have device starts with a schedule-lag histogram.  Interval histograms are in
summary.json's sparse ``"counts"`` form (loadgen.run.workers), or with --legacy in the ``"hdr"`` form
(hdrh's base64) of summaries written before it.  Prints seconds (min of the repeats) and the size
of the shards' series as summary.json writes them (indented JSON); --check also compares the fast
merge with hdrh's own (decode, add, get_value_at_percentile) on a sample of intervals.  Asserts
nothing else.

--same-as REV: the output must not depend on how fast it is made.  The code of git revision REV
(``git archive``) and the working tree's each synthesise the inputs (both the "counts" and the
--legacy "hdr" form), in a process of their own, and write merge_series' merged series (as
summary.json has it), the report of the shards and the report of the merged summary, and the
report of each --real group (comma-separated summary.json files rendered together); every file
must be byte-identical (the report's rendering time is fixed for the comparison).  Exits 1 if
one differs.
"""

import argparse
import hashlib
import io
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (--same-as runs this file again with the code of another revision first on the path)
sys.path.insert(0, os.environ.get("REPORT_BENCH_CODE") or str(ROOT))

import orjson  # noqa: E402
from hdrh.histogram import HdrHistogram  # noqa: E402

from loadgen.results import html as htmlreport  # noqa: E402
from loadgen.results.stats import Recorder  # noqa: E402
from loadgen.results.histograms import encode_counts, merge_series, sparse_counts  # noqa: E402

COMMANDS = ("Sync", "Ping", "FolderSync", "Provision", "ItemOperations", "SendMail", "MoveItems")


HDR = {}  # id of an interval entry -> its histogram in hdrh's encoding (--check's reference)


def _entry(rng, mu, legacy):
    rec = Recorder()
    for _ in range(rng.randint(20, 300)):
        rec.record(max(1, int(rng.lognormvariate(mu, 1.0))))
    h = rec.histogram()
    encoded = h.encode().decode("ascii")
    e = {"count": rec.total, "p50_ms": h.get_value_at_percentile(50) / 1000,
         "p90_ms": h.get_value_at_percentile(90) / 1000, "p99_ms": h.get_value_at_percentile(99) / 1000}
    if legacy:
        e["hdr"] = encoded
    else:
        counts = sparse_counts(encoded)
        keys = sorted(counts)
        e["counts"] = encode_counts(keys, [counts[k] for k in keys])
    HDR[id(e)] = encoded
    return e


def _fresh(e):
    """A copy of a pool entry whose strings are other objects too: no cache keyed by identity hits."""
    out = {k: (v[:1] + v[1:] if isinstance(v, str) else v) for k, v in e.items()}
    HDR[id(out)] = HDR[id(e)]
    return out


def synthesise(shards, intervals, ncommands, seed=1, legacy=False):
    rng = random.Random(seed)
    commands = COMMANDS[:ncommands]
    pool = {c: [_entry(rng, 10 + k * 0.3, legacy) for _ in range(400)] for k, c in enumerate(commands)}
    lag_pool = [_entry(rng, 8, legacy) for _ in range(100)]
    out = []
    for s in range(shards):
        series = []
        for i in range(intervals):
            lat = {c: _fresh(pool[c][rng.randrange(400)]) for c in commands}
            p = {"t": float(i + 1), "devices": {"provisioned": 1000 + i % 7, "unprovisioned": i % 3},
                 "requests": {"%s ok" % c: e["count"] for c, e in lat.items()},
                 "http": {"%s 200" % c: e["count"] for c, e in lat.items()},
                 "eas": {"%s 1" % c: e["count"] for c, e in lat.items() if c != "Ping"},
                 "provisionings": {"provisioned ack=1": 2} if i < 600 else {},
                 "reprovisions": {}, "throttled": {}, "wipes": {}, "latency": lat}
            if i < 600:
                e = lag_pool[rng.randrange(100)]
                p["lag"] = {"starts": e["count"], "late": e["count"] // 10, "mean_ms": 3.0, "max_ms": 250.0,
                            "p50_ms": e["p50_ms"], "p90_ms": e["p90_ms"], "p99_ms": e["p99_ms"]}
                p["lag"].update((k, e[k]) for k in ("hdr", "counts") if k in e)
                HDR[id(p["lag"])] = HDR[id(e)]
            series.append(p)
        total = sum(n for p in series for n in p["requests"].values())
        out.append({"scenario": "bench", "seed": 1, "target": "shard-%d" % s, "started": 1000.0 + s * 0.01,
                    "elapsed_s": float(intervals), "requests": total, "errors": 0,
                    "by_command_status": {"%s 200" % c: total // ncommands for c in commands},
                    "by_command_outcome": {"%s ok" % c: total // ncommands for c in commands},
                    "latency": {c: {"count": 1, "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "max_ms": 1.0}
                                for c in commands},
                    "histograms": {c: HDR[id(pool[c][0])] for c in commands},
                    "devices": {"provisioned": 1000}, "events": [{"at_s": 1800.0, "action": "change_policy",
                                                                  "result": "ok"}],
                    "series": series})
    return out


def _hdrh_of_counts(text):
    import base64
    import zlib

    h = HdrHistogram(1, 3_600_000_000, 3)
    for part in text.split(" "):  # the histogram is the sum of its parts
        width, raw = int(part[0]), zlib.decompress(base64.b64decode(part[1:]), wbits=-15)
        n = len(raw) // (2 + width)
        assert len(raw) == n * (2 + width)
        for j in range(n):
            index = int.from_bytes(raw[2 * j:2 * j + 2], "little")
            count = int.from_bytes(raw[2 * n + width * j:2 * n + width * (j + 1)], "little")
            h.record_value(h.get_value_from_index(index), count)
    return h


def check(summaries, merged, sample=40):
    """The fast merge against hdrh's own, on ``sample`` intervals."""
    rng = random.Random(2)
    for i in rng.sample(range(len(merged)), min(sample, len(merged))):
        entries = [(c, lat, [s["series"][i]["latency"][c] for s in summaries]) for c, lat in merged[i]["latency"].items()]
        if merged[i].get("lag"):
            entries.append(("lag", merged[i]["lag"], [s["series"][i]["lag"] for s in summaries]))
        for c, lat, parts in entries:
            h = None
            for part in parts:
                x = HdrHistogram.decode(HDR[id(part)])
                h = x if h is None else (h.add(x) or h)
            want = [h.get_value_at_percentile(p) / 1000 for p in (50, 90, 99)]
            assert [lat["p50_ms"], lat["p90_ms"], lat["p99_ms"]] == want, (i, c)
            assert c == "lag" or lat["count"] == h.get_total_count()
            mine = _hdrh_of_counts(lat["counts"])
            assert mine.get_total_count() == h.get_total_count()
            assert all(mine.counts[k] == h.counts[k] for k in range(h.counts_len)), (i, c)
    print("check: fast merge equals hdrh's on %d intervals" % sample)


def emit(out, a, real):
    """Write what --same-as compares into the directory ``out``, with the code on the path."""
    out = Path(out)
    print("  code: %s" % Path(htmlreport.__file__).parent)
    time.time = lambda: 1_800_000_000.0  # the report's "rendered on" (this process only)
    for legacy in (False, True):
        HDR.clear()
        summaries = synthesise(a.shards, a.intervals, a.commands, legacy=legacy)
        tag = "hdr" if legacy else "counts"
        merged = merge_series([s["series"] for s in summaries])
        (out / ("merged-series-%s.json" % tag)).write_bytes(orjson.dumps(merged))
        (out / ("report-shards-%s.html" % tag)).write_text(htmlreport.render(summaries), encoding="utf-8")
        one = dict(summaries[0], series=merged, target="merged")
        del summaries, merged
        (out / ("report-merged-%s.html" % tag)).write_text(htmlreport.render([one]), encoding="utf-8")
    for i, group in enumerate(real):
        docs = [orjson.loads(Path(f).read_bytes()) for f in group.split(",")]
        try:
            text = htmlreport.render(docs)
        except ValueError as exc:
            text = "ValueError: %s\n" % exc
        (out / ("real-%d.html" % i)).write_text(text, encoding="utf-8")


def same_as(rev, a):
    """--same-as: the outputs of the code at ``rev`` and of the working tree, byte for byte."""
    args = ["--shards", str(a.shards), "--intervals", str(a.intervals), "--commands", str(a.commands)]
    for group in a.real:
        args += ["--real", ",".join(str(Path(f).resolve()) for f in group.split(","))]
    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
        code = Path(tmp) / "code"
        code.mkdir()
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "loadgen"],
                             check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            t.extractall(code, filter="data")
        outs = {}
        for name, root in ((rev, code), ("working tree", None)):
            d = Path(tmp) / ("out-" + ("rev" if root else "now"))
            d.mkdir()
            env = dict(os.environ)
            env.pop("REPORT_BENCH_CODE", None)
            if root:
                env["REPORT_BENCH_CODE"] = str(root)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--emit", str(d)] + args, check=True, env=env)
            print("%s: written in %.1f s" % (name, time.perf_counter() - t0))
            outs[name] = d
        names = sorted(p.name for p in outs[rev].iterdir())
        assert names == sorted(p.name for p in outs["working tree"].iterdir())
        differ = 0
        for n in names:
            x, y = (outs[k].joinpath(n).read_bytes() for k in (rev, "working tree"))
            same = x == y
            differ += not same
            print("  %-28s %10d bytes  %s  %s" % (n, len(x), hashlib.sha256(x).hexdigest()[:16],
                                                 "identical" if same else "DIFFERS (%d bytes now)" % len(y)))
        print("same-as %s: %s" % (rev, "all %d outputs byte-identical" % len(names) if not differ
                                  else "%d of %d outputs differ" % (differ, len(names))))
        return differ == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--intervals", type=int, default=3600)
    ap.add_argument("--commands", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--legacy", action="store_true", help='interval histograms as "hdr" (summaries written before)')
    ap.add_argument("--same-as", metavar="REV", help="compare every output with the code of this git revision")
    ap.add_argument("--real", action="append", default=[], metavar="A.json[,B.json]",
                    help="with --same-as: summary.json files rendered together, too (repeatable)")
    ap.add_argument("--emit", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.emit:
        return emit(a.emit, a, a.real)
    if a.same_as:
        sys.exit(0 if same_as(a.same_as, a) else 1)
    t0 = time.perf_counter()
    summaries = synthesise(a.shards, a.intervals, a.commands, legacy=a.legacy)
    print("synthesised %d shards x %d intervals x %d commands (%s) in %.1f s"
          % (a.shards, a.intervals, a.commands, "hdr" if a.legacy else "counts", time.perf_counter() - t0))
    size = sum(len(orjson.dumps(s["series"], option=orjson.OPT_INDENT_2)) for s in summaries)
    print("  series as summary.json has them: %d bytes (%d per shard)" % (size, size // len(summaries)))

    def timed(name, f):
        best, result = None, None
        for _ in range(a.repeat):
            t = time.perf_counter()
            result = f()
            dt = time.perf_counter() - t
            best = dt if best is None else min(best, dt)
        print("%-48s %7.2f s" % (name, best))
        return result

    merged = timed("merge_series (easload merge / --workers)", lambda: merge_series([s["series"] for s in summaries]))
    if a.check:
        check(summaries, merged)
    doc = timed("htmlreport.render of %d summaries" % a.shards, lambda: htmlreport.render(summaries))
    print("  report size: %d bytes" % len(doc.encode("utf-8")))
    one = dict(summaries[0], series=merged, target="merged")
    timed("htmlreport.render of the merged summary", lambda: htmlreport.render([one]))


if __name__ == "__main__":
    main()
