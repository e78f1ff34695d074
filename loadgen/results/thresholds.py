"""Thresholds: the one grammar and the one evaluator.

A threshold is ``metric op limit``, e.g. ``Provision.p99 < 0.5`` (seconds) or ``errors.rate < 0.01``.
A scenario writes it as ``"Provision.p99" = "< 0.5"`` in ``[thresholds]`` (:func:`parse`);
summary.json keeps it as its text, ``str(threshold)``, read back by :func:`from_text`.

Metrics: ``<command>.<stat>`` with a stat of :data:`STATS` (p50 ... max in seconds, count and
errors as counts; a timing such as ``Enrolment`` or ``StartLag`` in place of a command too),
``errors.rate`` / ``errors.count``, ``requests.rate`` (per second) / ``requests.count``,
``devices.<state>`` (the fraction of the devices that ended in that state), and the counts
``provisionings.<result>``, ``reprovisions.<trigger>``, ``throttled.<reason>``.

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

STATS = ("p50", "p90", "p95", "p99", "max", "count", "errors")
GROUPS = ("errors", "requests", "devices", "provisionings", "reprovisions", "throttled")
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
# the condition as a scenario writes it: an operator and a decimal number
CONDITION = re.compile(r"^\s*(<=|>=|==|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")
# a threshold's text as str(Threshold) writes it into summary.json (the limit in %g: 1e-05 too)
_TEXT = re.compile(r"^\s*(\S+)\s*(<=|>=|==|<|>)\s*(\S+)\s*$")


class ThresholdError(ValueError):
    """A scenario's threshold that is not of the grammar: the message says what is wrong."""


@dataclass(frozen=True)
class Threshold:
    """``metric op limit``, e.g. ``Provision.p99 < 0.5`` (seconds), ``errors.rate < 0.01``."""

    metric: str
    op: str
    limit: float

    def __str__(self):
        return "%s %s %g" % (self.metric, self.op, self.limit)


def parse(metric, condition):
    """The Threshold of a scenario's ``metric = "condition"``; ThresholdError if either is wrong."""
    group, _, stat = metric.partition(".")
    if not stat or not (group in GROUPS or stat in STATS):
        hint = difflib.get_close_matches(stat, STATS, 1)
        raise ThresholdError("unknown threshold metric '%s': use <command>.<%s> or %s.<name>%s"
                             % (metric, "|".join(STATS), "|".join(GROUPS),
                                " (did you mean '%s.%s'?)" % (group, hint[0]) if hint else ""))
    m = CONDITION.match(condition) if isinstance(condition, str) else None
    if m and not math.isfinite(float(m.group(2))):
        m = None
    if not m:
        raise ThresholdError("threshold '%s' must look like \"< 0.5\" (<, <=, >, >=, ==), not %r" % (metric, condition))
    return Threshold(metric, m.group(1), float(m.group(2)))


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
                 "command_errors", "counts", "_histograms", "_latency")

    def __init__(self, requests, errors, elapsed_s, devices, provisionings, reprovisions, throttled,
                 command_errors, counts, histograms, latency=None):
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
                   {name: rec.histogram() for name, rec in recorders.items()})

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
                   {name: p.get("count", 0) for name, p in latency.items()}, hists, latency)

    def histogram(self, name):
        """The HdrHistogram of a command or timing, or None."""
        hist = self._histograms.get(name)
        if isinstance(hist, str):
            try:
                hist = self._histograms[name] = HdrHistogram.decode(hist)
            except Exception:  # hdrh raises its own exception classes, binascii/zlib errors...
                hist = self._histograms[name] = None
        return hist

    def value(self, metric):
        """The value a threshold metric names (seconds for latencies), or None when there is no data."""
        group, _, name = metric.partition(".")
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
