"""``easload compare BASELINE CURRENT``: did this build get slower than the last good one?

Each side is one result: a summary.json, an ``--out`` directory holding one, or the shards of one run
(a directory of ``shard-*/summary.json`` or ``*.json`` files, or a glob), merged exactly first by
loadgen/results/merge.py (HDR histograms added: the percentiles are those of every request).

Per command, the change of each metric from the baseline to the current result:

* ``p50`` / ``p90`` / ``p99``: latency (ms, from the merged HDR histograms); a regression is a rise of
  more than the tolerance (relative, default 10 %) *and* more than :data:`LATENCY_FLOOR_MS` (1 ms):
  a sub-millisecond wobble on loopback is noise, not a slower build.  Ping's latency is reported and not
  judged: the server holds a Ping on purpose until its heartbeat or a change (MS-ASCMD 2.2.3.88.1), so
  its latency measures the mail flow, not the server's speed.
* ``error_rate``: requests not in loadgen/results/outcomes.py OK_OUTCOMES over requests; a regression is
  a rise of more than the tolerance in percentage points (default 0.1 %, i.e. 0.001).
* ``throughput``: requests per second; a regression is a fall of more than the tolerance (relative,
  default 10 %).

The row ``all`` holds the run's totals (error rate and throughput).  A command in only one result is
listed and not judged.  Tolerances: ``--tolerance p99=5%`` (repeatable; :func:`parse_tolerance`).
"""

import glob
import math
from pathlib import Path
from xml.sax.saxutils import quoteattr

from loadgen.results.merge import merge
from loadgen.results.outcomes import OK_OUTCOMES

PERCENTILES = ("p50", "p90", "p99")
METRICS = PERCENTILES + ("error_rate", "throughput")
# relative for the latencies and throughput, percentage points for the error rate
DEFAULT_TOLERANCES = {"p50": 0.10, "p90": 0.10, "p99": 0.10, "error_rate": 0.001, "throughput": 0.10}
LATENCY_FLOOR_MS = 1.0
NOT_JUDGED_LATENCY = ("Ping",)  # held by the server on purpose (see the module)
TOTAL = "all"

REGRESSION, IMPROVED, SAME, ONLY = "regression", "improved", "ok", "not compared"


class CompareError(ValueError):
    """A result that cannot be read or compared: the message names it."""


def parse_tolerance(text, tolerances=None):
    """``METRIC=VALUE`` (``p99=10%``, ``throughput=0.05``, ``error_rate=0.5%``) into ``tolerances``
    (a copy of the defaults when None); CompareError naming the part that is wrong."""
    tolerances = dict(DEFAULT_TOLERANCES) if tolerances is None else tolerances
    metric, sep, value = str(text).partition("=")
    metric, value = metric.strip(), value.strip()
    if not sep or metric not in METRICS:
        import difflib

        hint = difflib.get_close_matches(metric, METRICS, 1)
        raise CompareError("--tolerance %r: METRIC=VALUE with a metric of %s%s" % (
            text, ", ".join(METRICS), " (did you mean '%s'?)" % hint[0] if hint else ""))
    try:
        number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        number = float("nan")
    if not math.isfinite(number) or number < 0:
        raise CompareError("--tolerance %r: the value must be a number >= 0 such as 10%% or 0.1" % text)
    tolerances[metric] = number
    return tolerances


def result_files(name):
    """The summary.json files one side names: a file, an ``--out`` directory, a directory of shards
    (``*/summary.json`` or ``*.json``) or a glob pattern."""
    path = Path(name)
    if path.is_dir():
        if (path / "summary.json").is_file():
            return [str(path / "summary.json")]
        files = sorted(glob.glob(str(path / "*" / "summary.json"))) or sorted(glob.glob(str(path / "*.json")))
        if not files:
            raise CompareError("%s: no summary.json in it, nor shards (*/summary.json, *.json)" % name)
        return files
    if any(c in name for c in "*?[") and not path.exists():
        files = sorted(glob.glob(name))
        if not files:
            raise CompareError("%s: no file matches" % name)
        return files
    return [name]


class Side:
    """One side of a comparison: per command its count, errors and latency percentiles (ms), the run's
    totals, the elapsed time."""

    def __init__(self, summaries, label, shards=True):
        stats, shards, first = merge(summaries, shards=shards, series=False)
        self.label = label
        self.scenario = first.get("scenario")
        self.complete = shards["complete"]
        self.shards = (len(shards["shards_merged"]), shards["shards_total"])
        self.elapsed = max(1e-9, stats.ended - stats.started)
        counts, errors = {}, {}
        for (command, outcome, _status), n in stats.by_key.items():
            counts[command] = counts.get(command, 0) + n
            if outcome not in OK_OUTCOMES:
                errors[command] = errors.get(command, 0) + n
        self.commands = {}
        for command, n in counts.items():
            row = {"count": n, "error_rate": errors.get(command, 0) / n if n else None,
                   "throughput": n / self.elapsed}
            view = stats.latency.get(command)
            hist = view.histogram() if view is not None else None
            for p in PERCENTILES:
                row[p] = (hist.get_value_at_percentile(float(p[1:])) / 1000.0
                          if hist is not None and hist.get_total_count() else None)
            self.commands[command] = row
        total = sum(counts.values())
        self.commands[TOTAL] = {"count": total, "error_rate": sum(errors.values()) / total if total else None,
                                "throughput": total / self.elapsed, "p50": None, "p90": None, "p99": None}


def _judge(metric, command, base, cur, tolerance):
    """(change, verdict) of one metric; change relative for latency and throughput, absolute (points)
    for the error rate."""
    if base is None or cur is None:
        return None, ONLY
    if metric == "error_rate":
        change = cur - base
        if change > tolerance + 1e-12:
            return change, REGRESSION
        return change, IMPROVED if change < -tolerance - 1e-12 else SAME
    change = (cur - base) / base if base else (0.0 if cur == base else math.inf)
    if metric == "throughput":
        if change < -tolerance - 1e-12:
            return change, REGRESSION
        return change, IMPROVED if change > tolerance + 1e-12 else SAME
    if command in NOT_JUDGED_LATENCY:
        return change, ONLY
    if change > tolerance + 1e-12 and cur - base > LATENCY_FLOOR_MS:
        return change, REGRESSION
    return change, IMPROVED if change < -tolerance - 1e-12 and base - cur > LATENCY_FLOOR_MS else SAME


def compare(baseline, current, tolerances=None):
    """The comparison of two Sides: a dict with the rows (command, metric, baseline, current, change,
    tolerance, verdict), the regressions among them, and notes (different scenarios, missing shards)."""
    tolerances = dict(DEFAULT_TOLERANCES, **(tolerances or {}))
    rows = []
    names = sorted((set(baseline.commands) | set(current.commands)) - {TOTAL}) + [TOTAL]
    for command in names:
        b, c = baseline.commands.get(command), current.commands.get(command)
        for metric in METRICS:
            if command == TOTAL and metric in PERCENTILES:
                continue
            bv, cv = (b or {}).get(metric), (c or {}).get(metric)
            change, verdict = _judge(metric, command, bv, cv, tolerances[metric])
            rows.append({"command": command, "metric": metric, "baseline": bv, "current": cv, "change": change,
                         "tolerance": tolerances[metric], "verdict": verdict})
    notes = []
    if baseline.scenario != current.scenario:
        notes.append("the results are of different scenarios (%s, %s)" % (baseline.scenario, current.scenario))
    for side in (baseline, current):
        if not side.complete:
            notes.append("%s: %d of %d shards" % (side.label, side.shards[0], side.shards[1]))
    return {"baseline": baseline.label, "current": current.label, "rows": rows, "notes": notes,
            "regressions": [r for r in rows if r["verdict"] == REGRESSION], "tolerances": tolerances}


def _value(metric, v):
    if v is None:
        return "-"
    if metric == "error_rate":
        return "%.3f%%" % (100 * v)
    if metric == "throughput":
        return "%.2f/s" % v
    return "%.1f ms" % v


def _change(metric, change):
    if change is None:
        return "-"
    if math.isinf(change):
        return "new"
    if metric == "error_rate":
        return "%+.3f pt" % (100 * change)
    return "%+.1f%%" % (100 * change)


def _tolerance(metric, t):
    return ("+%g pt" % (100 * t)) if metric == "error_rate" else ("%s%g%%" % ("-" if metric == "throughput" else "+",
                                                                             100 * t))


def table_rows(result):
    """The rows as text cells: command, metric, baseline, current, change, tolerance, verdict."""
    return [(r["command"], r["metric"], _value(r["metric"], r["baseline"]), _value(r["metric"], r["current"]),
             _change(r["metric"], r["change"]), _tolerance(r["metric"], r["tolerance"]), r["verdict"].upper()
             if r["verdict"] == REGRESSION else r["verdict"]) for r in result["rows"]]


HEADERS = ("command", "metric", "baseline", "current", "change", "tolerance", "verdict")


def text(result):
    from loadgen.results.text import _table

    lines = ["easload compare: baseline %s, current %s" % (result["baseline"], result["current"])]
    lines += ["note: %s" % n for n in result["notes"]]
    lines.append(_table(HEADERS, table_rows(result)))
    n = len(result["regressions"])
    lines.append("%d regression%s beyond the tolerance%s" % (
        n, "" if n == 1 else "s", ": " + ", ".join("%s %s" % (r["command"], r["metric"])
                                                   for r in result["regressions"]) if n else ""))
    return "\n".join(lines)


def junit(result):
    """One test case per judged command and metric, failed when it regressed (JUnit XML)."""
    judged = [r for r in result["rows"] if r["verdict"] != ONLY]
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<testsuites><testsuite name="easload.compare" tests="%d" failures="%d">'
             % (len(judged), len(result["regressions"]))]
    for r in judged:
        lines.append('  <testcase classname=%s name=%s>' % (quoteattr("easload.compare." + r["command"]),
                                                           quoteattr(r["metric"])))
        if r["verdict"] == REGRESSION:
            lines.append('    <failure message=%s/>' % quoteattr("%s %s: %s -> %s (%s, tolerance %s)" % (
                r["command"], r["metric"], _value(r["metric"], r["baseline"]), _value(r["metric"], r["current"]),
                _change(r["metric"], r["change"]), _tolerance(r["metric"], r["tolerance"]))))
        lines.append('  </testcase>')
    lines.append("</testsuite></testsuites>")
    return "\n".join(lines) + "\n"


__all__ = ["compare", "parse_tolerance", "result_files", "Side", "text", "junit", "table_rows", "CompareError",
           "DEFAULT_TOLERANCES"]
