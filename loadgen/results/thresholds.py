"""Thresholds: the one grammar and the one evaluator.

A threshold is ``metric op limit``, e.g. ``Provision.p99 < 0.5`` (seconds) or ``errors.rate < 0.01``.
A scenario writes it as ``"Provision.p99" = "< 0.5"`` in ``[thresholds]`` (:func:`parse`), or as a table
that may also stop the run early, as k6's thresholds with ``abortOnFail`` / ``delayAbortEval`` do
(https://grafana.com/docs/k6/latest/using-k6/thresholds/): ``"Sync.p99" = { expr = "< 2", abort_on_fail
= true, delay = "30s" }`` -- judged on the live statistics every :data:`ABORT_INTERVAL` seconds once
``delay`` has passed (:class:`AbortWatch`); a breach ends the run gracefully, its results kept.
summary.json keeps a threshold as its text, ``str(threshold)``, read back by :func:`from_text`.

Metrics: ``<command>.<stat>`` with a stat of :data:`STATS` (p50 ... max in seconds, count and
errors as counts; a timing such as ``Enrolment`` or ``StartLag`` in place of a command too),
``errors.rate`` / ``errors.count``, ``requests.rate`` (per second) / ``requests.count``,
``devices.<state>`` (the fraction of the devices that ended in that state), and the counts
``provisionings.<result>``, ``reprovisions.<trigger>``, ``throttled.<reason>``.  The workload's tasks
(loadgen/results/tasks.py): ``tasks.achieved_ratio`` (achieved / planned), ``tasks.late_ratio`` and
``tasks.failed_ratio`` (of the tasks done), ``tasks.queued_peak`` and the counts ``tasks.planned`` /
``achieved`` / ``failed`` / ``late``; per type ``tasks.<type>.p50|p90|p99|max`` (seconds from the
planned time), ``tasks.<type>.achieved_ratio`` / ``late_ratio`` and its counts.

:func:`parse` refuses a metric that cannot exist -- a command MS-ASCMD does not define, a device state,
throttling reason or task type no device records, a field no group has -- so that a typo is a usage
error before the run (loadgen/scenario.py calls it for ``easload validate`` and ``run`` alike), not a
failed threshold after an hour of load.

:func:`evaluate` judges thresholds on :class:`Figures`: the few numbers thresholds read, taken
from a live ``Stats`` (the run, ``easload merge``) or from a summary dict (the HTML report's merge
of several results) by the same rules, so that every place gives a threshold the same verdict.
A metric without data fails: it never passes.
"""

import difflib
import math
import operator
import re
import time
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

from loadgen.results.outcomes import OK_OUTCOMES
from loadgen.results.stats import THROTTLE_REASONS, TLS_TIMINGS, OTHER
from loadgen.results.tasks import RESULTS, TASK_LABELS, TOTAL_FIELDS, TYPE_FIELDS

STATS = ("p50", "p90", "p95", "p99", "max", "count", "errors")
GROUPS = ("errors", "requests", "devices", "provisionings", "reprovisions", "throttled", "tasks")
# what a <command>.<stat> may name: the commands of MS-ASCMD 2.2.1 (Autodiscover 2.2.1.1 ... ValidateCert
# 2.2.1.22, Find in 16.1), the HTTP OPTIONS request of MS-ASHTTP 2.2.3, and the timings of
# loadgen/results/stats.py (Stats.enrolment, Stats.start_lag)
COMMANDS = ("Autodiscover", "Find", "FolderCreate", "FolderDelete", "FolderSync", "FolderUpdate", "GetAttachment",
            "GetHierarchy", "GetItemEstimate", "ItemOperations", "MeetingResponse", "MoveItems", "Ping", "Provision",
            "ResolveRecipients", "Search", "SendMail", "Settings", "SmartForward", "SmartReply", "Sync",
            "ValidateCert", "OPTIONS")
# the TLS handshakes' own latencies (from the TCP connection to the handshake's end), full and resumed
TIMINGS = ("Enrolment", "EnrolmentUncorrected", "StartLag") + tuple(TLS_TIMINGS.values())
# a device's final states (loadgen/device/states.py; tests/cli/test_task_thresholds.py keeps the two in step)
DEVICE_STATES = ("new", "provisioning", "provisioned", "no_policy", "unprovisioned", "refused", "blocked",
                 "quarantined", "wiped", "throttled", "failed", "auth_failed", "stopped")
_FIXED = {"errors": ("rate", "count"), "requests": ("rate", "count"), "devices": DEVICE_STATES,
          "throttled": tuple(sorted(THROTTLE_REASONS)) + (OTHER,)}
# provisioning results and re-provisioning triggers carry numbers the server sends (refused_<status>,
# loop_<trigger>, 140, 144 ...): one word of letters, digits and underscores
_LABEL = re.compile(r"^[A-Za-z0-9_]+$")
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
# the condition as a scenario writes it: an operator and a decimal number
CONDITION = re.compile(r"^\s*(<=|>=|==|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")
# a threshold's text as str(Threshold) writes it into summary.json (the limit in %g: 1e-05 too)
_TEXT = re.compile(r"^\s*(\S+)\s*(<=|>=|==|<|>)\s*(\S+)\s*$")


class ThresholdError(ValueError):
    """A scenario's threshold that is not of the grammar: the message says what is wrong."""


@dataclass(frozen=True)
class Threshold:
    """``metric op limit``, e.g. ``Provision.p99 < 0.5`` (seconds), ``errors.rate < 0.01``;
    ``abort_on_fail``: a breach during the run ends it (after ``delay`` seconds of the run)."""

    metric: str
    op: str
    limit: float
    abort_on_fail: bool = False
    delay: float = 0.0

    def __str__(self):
        return "%s %s %g" % (self.metric, self.op, self.limit)


def _did_you_mean(word, names, prefix=""):
    hint = difflib.get_close_matches(word, names, 1)
    return " (did you mean '%s%s'?)" % (prefix, hint[0]) if hint else ""


def check_metric(metric):
    """ThresholdError when ``metric`` is not one a run can have (see the module's list), else None."""
    group, _, stat = metric.partition(".") if isinstance(metric, str) else ("", "", "")
    if not stat or not (group in GROUPS or stat in STATS):
        hint = difflib.get_close_matches(stat, STATS, 1)
        raise ThresholdError("unknown threshold metric '%s': use <command>.<%s> or %s.<name>%s"
                             % (metric, "|".join(STATS), "|".join(GROUPS),
                                " (did you mean '%s.%s'?)" % (group, hint[0]) if hint else ""))
    if group == "tasks":
        task_type, _, field = stat.partition(".")
        if not field:
            if stat not in TOTAL_FIELDS and stat not in TASK_LABELS:
                raise ThresholdError("unknown threshold metric '%s': tasks.<%s> or tasks.<type>.<field>%s"
                                     % (metric, "|".join(TOTAL_FIELDS), _did_you_mean(stat, TOTAL_FIELDS, "tasks.")))
            if stat in TASK_LABELS:
                raise ThresholdError("threshold metric '%s' names a task type but no field: tasks.%s.<%s>"
                                     % (metric, stat, "|".join(TYPE_FIELDS)))
        elif task_type not in TASK_LABELS:
            raise ThresholdError("unknown task type in threshold metric '%s': %s%s"
                                 % (metric, ", ".join(TASK_LABELS), _did_you_mean(task_type, TASK_LABELS, "tasks.")))
        elif field not in TYPE_FIELDS:
            raise ThresholdError("unknown field in threshold metric '%s': tasks.%s.<%s>%s"
                                 % (metric, task_type, "|".join(TYPE_FIELDS),
                                    _did_you_mean(field, TYPE_FIELDS, "tasks.%s." % task_type)))
    elif group in _FIXED:
        if stat not in _FIXED[group]:
            raise ThresholdError("unknown threshold metric '%s': %s.<%s>%s" % (
                metric, group, "|".join(_FIXED[group]), _did_you_mean(stat, _FIXED[group], group + ".")))
    elif group in ("provisionings", "reprovisions"):
        if not _LABEL.match(stat):
            raise ThresholdError("unknown threshold metric '%s': %s.<one word of letters, digits, _>" % (metric, group))
    elif group not in COMMANDS and group not in TIMINGS:
        names = COMMANDS + TIMINGS
        raise ThresholdError("unknown command in threshold metric '%s': an MS-ASCMD command (%s) or a timing "
                             "(%s)%s" % (metric, ", ".join(COMMANDS), ", ".join(TIMINGS),
                                         _did_you_mean(group, names, "").replace("'?)", ".%s'?)" % stat)))


# the keys of a threshold's table form; k6's own names (abortOnFail, delayAbortEval, threshold) are
# pointed at these
TABLE_KEYS = ("expr", "abort_on_fail", "delay")
_K6_KEYS = {"threshold": "expr", "abortOnFail": "abort_on_fail", "delayAbortEval": "delay"}
_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}
MAX_DELAY = 366 * 86400  # a run's longest duration (loadgen/scenario.py MAX_SECONDS)


def parse(metric, condition):
    """The Threshold of a scenario's ``metric = "condition"`` or ``metric = { expr = "condition",
    abort_on_fail = true, delay = "30s" }``; ThresholdError if any part is wrong, or if the metric
    is not one a run can have (:func:`check_metric`)."""
    check_metric(metric)
    abort, delay = False, 0.0
    if isinstance(condition, dict):
        for key in condition:
            if key not in TABLE_KEYS:
                hint = _K6_KEYS.get(key) or (difflib.get_close_matches(key, TABLE_KEYS, 1) or [None])[0]
                raise ThresholdError("threshold '%s': unknown key '%s'%s (known: %s)" % (
                    metric, key, " (did you mean '%s'?)" % hint if hint else "", ", ".join(TABLE_KEYS)))
        if "expr" not in condition:
            raise ThresholdError("threshold '%s' needs expr, e.g. { expr = \"< 2\", abort_on_fail = true }" % metric)
        abort = condition.get("abort_on_fail", False)
        if not isinstance(abort, bool):
            raise ThresholdError("threshold '%s': abort_on_fail must be true or false, not %r" % (metric, abort))
        delay = _delay(metric, condition.get("delay", 0))
        if delay and not abort:
            raise ThresholdError("threshold '%s': delay applies to abort_on_fail = true only" % metric)
        condition = condition["expr"]
    m = CONDITION.match(condition) if isinstance(condition, str) else None
    if m and not math.isfinite(float(m.group(2))):
        m = None
    if not m:
        raise ThresholdError("threshold '%s' must look like \"< 0.5\" (<, <=, >, >=, ==), not %r" % (metric, condition))
    return Threshold(metric, m.group(1), float(m.group(2)), abort, delay)


def _delay(metric, value):
    """A threshold's ``delay`` in seconds: a number or "30s", "500ms", "5m", "1h"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DELAY.match(value):
        number, unit = _DELAY.match(value).groups()
        seconds = float(number) * _UNITS[unit]
    else:
        raise ThresholdError("threshold '%s': delay must be a duration like \"30s\", \"5m\" or 30, not %r"
                             % (metric, value))
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DELAY:
        raise ThresholdError("threshold '%s': delay must be between 0 and %d s, not %r" % (metric, MAX_DELAY, value))
    return seconds


def split(text):
    """(metric, op, limit as written) of a threshold's text, or None when it has not that shape."""
    m = _TEXT.match(str(text))
    return m.groups() if m else None


def from_text(text):
    """The Threshold a summary.json's threshold text stands for, or None (not of the form, or a
    limit that is no finite number)."""
    parts = split(text)
    if parts is None:
        return None
    try:
        limit = float(parts[2])
    except ValueError:
        return None
    return Threshold(parts[0], parts[1], limit) if math.isfinite(limit) else None


class Figures:
    """The numbers thresholds are judged on, read-only.  ``of_stats`` takes them from a live Stats,
    ``of_summary`` from a summary dict (summary.json's fields); both by the same rules."""

    __slots__ = ("requests", "errors", "elapsed_s", "devices", "provisionings", "reprovisions", "throttled",
                 "command_errors", "counts", "_histograms", "_latency", "tasks")

    def __init__(self, requests, errors, elapsed_s, devices, provisionings, reprovisions, throttled,
                 command_errors, counts, histograms, latency=None, tasks=None):
        self.requests = requests  # requests made
        self.errors = errors  # of which not in OK_OUTCOMES
        self.elapsed_s = elapsed_s
        self.devices = devices  # final state -> devices
        self.provisionings = provisionings  # result -> provisionings
        self.reprovisions = reprovisions  # trigger -> n
        self.throttled = throttled  # reason -> n
        self.command_errors = command_errors  # command -> requests not in OK_OUTCOMES
        self.counts = counts  # command or timing -> values in its histogram
        self._histograms = histograms  # command or timing -> HdrHistogram, or hdrh's encoded text
        self._latency = latency or {}  # summary's percentiles (ms), used when a histogram is missing
        self.tasks = tasks or {}  # summary.json's "tasks" (Stats.tasks_dict): {} without a workload

    @classmethod
    def of_stats(cls, stats):
        command_errors = {}
        for (command, outcome, _status), n in stats.by_key.items():
            if outcome not in OK_OUTCOMES:
                command_errors[command] = command_errors.get(command, 0) + n
        provisionings = {}
        for (result, _ack), n in stats.provisionings.items():
            provisionings[result] = provisionings.get(result, 0) + n
        recorders = dict(stats.timings)
        recorders.update(stats.latency)  # a command before a timing of the same name
        return cls(stats.total, stats.failures, (stats.ended or time.time()) - stats.started, stats.final_states,
                   provisionings, stats.reprovisions, stats.throttled, command_errors,
                   {name: rec.total for name, rec in recorders.items()},
                   {name: rec.histogram() for name, rec in recorders.items()}, tasks=stats.tasks_dict())

    @classmethod
    def of_summary(cls, summary, histograms=None):
        """From a summary dict; ``histograms`` (name -> HdrHistogram) when the caller holds them decoded."""
        command_errors = {}
        for key, n in (summary.get("by_command_outcome") or {}).items():
            command, _, outcome = key.partition(" ")
            if outcome not in OK_OUTCOMES:
                command_errors[command] = command_errors.get(command, 0) + n
        provisionings = {}
        for key, n in (summary.get("provisionings") or {}).items():
            result = key.rsplit(" ack=", 1)[0]
            provisionings[result] = provisionings.get(result, 0) + n
        latency = dict(summary.get("timings") or {})
        latency.update(summary.get("latency") or {})
        hists = dict(summary.get("timing_histograms") or {})
        hists.update(summary.get("histograms") or {})
        hists.update(histograms or {})
        return cls(summary.get("requests") or 0, summary.get("errors") or 0, summary.get("elapsed_s") or 0.0,
                   summary.get("devices") or {}, provisionings, summary.get("reprovisions") or {},
                   summary.get("throttled") or {}, command_errors,
                   {name: p.get("count", 0) for name, p in latency.items()}, hists, latency,
                   tasks=summary.get("tasks") if isinstance(summary.get("tasks"), dict) else None)

    def histogram(self, name):
        """The HdrHistogram of a command or timing, or None."""
        hist = self._histograms.get(name)
        if isinstance(hist, str):
            try:
                hist = self._histograms[name] = HdrHistogram.decode(hist)
            except Exception:  # hdrh raises its own exception classes, binascii/zlib errors...
                hist = self._histograms[name] = None
        return hist

    def task_value(self, name):
        """The value of ``tasks.<name>`` (see the module), or None when there is no data."""
        tasks = self.tasks
        if not tasks:
            return None
        total = tasks.get("total") or {}
        task_type, _, field = name.partition(".")
        if not field:
            value = total.get(name)
            return float(value) if isinstance(value, (int, float)) else None
        row = (tasks.get("by_type") or {}).get(task_type)
        if row is None:
            return None
        if field in RESULTS or field in ("achieved_ratio", "late_ratio", "failed_ratio"):
            value = row.get(field)
            return float(value) if isinstance(value, (int, float)) else None
        hist = (tasks.get("histograms") or {}).get(task_type)
        if isinstance(hist, str):
            try:
                hist = HdrHistogram.decode(hist)
            except Exception:  # a damaged summary: its percentiles, below
                hist = None
        if hist is None or not hist.get_total_count():
            ms = (row.get("latency") or {}).get(field + "_ms")
            return ms / 1000 if isinstance(ms, (int, float)) else None
        if field == "max":
            return hist.get_max_value() / 1e6
        try:
            return hist.get_value_at_percentile(float(field[1:])) / 1e6
        except ValueError:
            return None

    def value(self, metric):
        """The value a threshold metric names (seconds for latencies), or None when there is no data."""
        group, _, name = metric.partition(".")
        if group == "tasks":
            return self.task_value(name)
        if group == "errors":
            if name == "rate":
                return self.errors / self.requests if self.requests else None
            if name == "count":
                return float(self.errors)
        elif group == "requests":
            if name == "rate":
                return self.requests / max(1e-9, self.elapsed_s)
            if name == "count":
                return float(self.requests)
        elif group == "devices":
            total = sum(self.devices.values())
            return self.devices.get(name, 0) / total if total else None
        elif group == "provisionings":
            return float(self.provisionings.get(name, 0))
        elif group == "reprovisions":
            return float(self.reprovisions.get(name, 0))
        elif group == "throttled":
            return float(self.throttled.get(name, 0))
        if group not in self.counts:
            return None
        if name == "count":
            return float(self.counts[group])
        if name == "errors":
            return float(self.command_errors.get(group, 0))
        if name != "max" and not name.startswith("p"):
            return None
        hist = self.histogram(group)
        if hist is None:  # a summary without the histogram: its percentiles, if it has this one
            ms = self._latency.get(group, {}).get(name + "_ms")
            return ms / 1000 if ms is not None else None
        if name == "max":
            return hist.get_max_value() / 1e6
        try:
            return hist.get_value_at_percentile(float(name[1:])) / 1e6
        except ValueError:  # "p" and no number (a hand-edited summary)
            return None


def evaluate(source, thresholds):
    """[(threshold, value or None, passed)] on ``source``: Figures, a Stats or a summary dict.
    A metric without data fails, it never passes."""
    if not thresholds:
        return []
    figures = source if isinstance(source, Figures) else (
        Figures.of_summary(source) if isinstance(source, dict) else Figures.of_stats(source))
    results = []
    for th in thresholds:
        value = figures.value(th.metric)
        results.append((th, value, value is not None and OPS[th.op](value, th.limit)))
    return results


# ------------------------------------------------------------------ verdicts during the run

ABORT_INTERVAL = 1.0  # s between two judgements of the abort_on_fail thresholds on the live statistics
# the beginnings of summary.json's "aborted" text, one per way a run stops itself; the command line's
# exit status follows from them (loadgen/cli/app.py abort_exit): 3, 4 or 5
ABORTED_THRESHOLD = "threshold "
ABORTED_UNREACHABLE = "unreachable: "


def needs_histograms(thresholds):
    """Whether an abort_on_fail threshold reads a percentile (or max) during the run: the workers of
    ``--workers`` then send their histograms with every snapshot (loadgen/run/workers.py)."""
    for th in thresholds:
        if th.abort_on_fail:
            group, _, stat = th.metric.partition(".")
            stat = stat.rpartition(".")[2] if group == "tasks" else stat
            if stat == "max" or (stat[:1] == "p" and stat[1:2].isdigit()):
                return True
    return False


class AbortWatch:
    """The ``abort_on_fail`` thresholds of a run, judged on its live statistics.

    :meth:`check` is called on every tick of the run (engine.py, or the parent of ``--workers``
    processes on the workers' merged counts and histograms); every ``interval`` seconds it judges
    each such threshold whose ``delay`` has passed.  A breach is a value that fails the condition; a
    metric without data yet (no Sync answered so far) is no breach -- the final verdict still fails it.
    The condition is judged on the figures so far, as k6 does: a ``count >`` threshold is breached
    until the count is reached, so give it a delay.  ``devices.<state>`` reads the devices' states now
    (``devices`` of :meth:`check`), not their final ones."""

    __slots__ = ("watched", "interval", "due", "reason", "threshold")

    def __init__(self, thresholds, interval=ABORT_INTERVAL):
        self.watched = tuple(th for th in thresholds if th.abort_on_fail)
        self.interval = interval
        self.due = min((th.delay for th in self.watched), default=0.0)
        self.reason = None  # "threshold ... failed ..." once one did
        self.threshold = None

    def __bool__(self):
        return bool(self.watched)

    def check(self, source, elapsed, devices=None):
        """The reason to stop the run (also kept in ``reason``), or None.  ``source``: Figures or a
        live Stats; ``elapsed``: seconds since the run's clock started; ``devices``: state -> devices now."""
        if self.reason is not None or not self.watched or elapsed < self.due:
            return self.reason
        self.due = elapsed + self.interval
        live = [th for th in self.watched if elapsed >= th.delay]
        figures = source if isinstance(source, Figures) else Figures.of_stats(source)
        if devices is not None:
            figures.devices = devices
        for th in live:
            value = figures.value(th.metric)
            if value is not None and not OPS[th.op](value, th.limit):
                self.threshold = th
                self.reason = "%s%s (abort_on_fail) failed at %.0f s of the run: value %g" % (
                    ABORTED_THRESHOLD, th, elapsed, value)
                return self.reason
        return None
