"""``easload merge``: shard results (summary.json) merged exactly into one.

Counts add up; HDR histograms (per command, per timing and per time-series
interval) are added, so percentiles are those of all requests, never an average
of shard percentiles.  Results of different scenarios, seeds, easload versions
or shard counts, or the same shard twice, are refused.
"""

from hdrh.histogram import HdrHistogram

from loadgen.results.report import _OK_OUTCOMES, Stats
from loadgen.results.histograms import _HistogramView as _View
from loadgen.results.histograms import merge_series


class MergeError(ValueError):
    pass


class SummaryError(ValueError):
    """A summary.json that cannot be read: the message names the file and the field."""


# The shape of every summary.json field merge and report read (Stats.to_dict in loadgen/results/report.py,
# cli.cmd_run's additions), checked once when a file is read so that a damaged or hand-edited file is
# one line naming the file and the field, never a traceback from deep inside a merge.
def _is_int(v):
    return type(v) is int


def _is_num(v):
    return (type(v) is int or type(v) is float) and v == v and v not in (float("inf"), float("-inf"))


def _is_str(v):
    return type(v) is str


def _opt(check):
    return lambda v: v is None or check(v)


def _list_of(check, what):
    def inner(v):
        if type(v) is not list:
            return "must be a list of %s" % what
        for i, item in enumerate(v):
            problem = check(item)
            if problem:
                return "item %d %s" % (i, problem)
        return None
    return inner


def _counts(v, key_check=None):
    if type(v) is not dict:
        return "must be an object of name: count"
    for k, n in v.items():
        if not _is_int(n) and not _is_num(n):
            return "%r must be a number, not %r" % (k, n)
        if key_check is not None and not key_check(k):
            return "has a key %r of the wrong form" % (k,)
    return None


def _numbers(v):
    if type(v) is not dict:
        return "must be an object"
    for k, n in v.items():
        if n is not None and not _is_num(n) and type(n) is not bool:
            return "%r must be a number, not %r" % (k, n)
    return None


def _status_key(k):
    """"<command> <EAS status>": a number, or "other" for the values Stats folds (bounded labels)."""
    st = k.rpartition(" ")[2]
    return st.lstrip("-").isdigit() or st == "other"


def _row(*checks):
    def inner(v):
        if type(v) is not list or len(v) != len(checks) or not all(c(x) for c, x in zip(checks, v)):
            return "must be %d values of the right types, not %.60r" % (len(checks), v)
        return None
    return inner


def _scalar(v):
    return v is None or type(v) in (str, int, bool)


def _hdr(v):
    if type(v) is not dict:
        return "must be an object of name: histogram"
    for name, encoded in v.items():
        try:
            if type(encoded) is not str:
                raise TypeError
            HdrHistogram.decode(encoded)
        except Exception:  # hdrh raises its own exception classes, binascii/zlib errors, TypeError...
            return "%r is not an hdrh-encoded histogram" % (name,)
    return None


def _latency_map(v):
    if type(v) is not dict:
        return "must be an object of command: percentiles"
    for name, entry in v.items():
        problem = _numbers(entry)
        if problem:
            return "%r %s" % (name, problem)
    return None


def _interval_hist(entry):
    if type(entry) is not dict:
        return "must be an object"
    for k, x in entry.items():
        if k in ("counts", "hdr"):
            if type(x) is not str:
                return "%r must be a string" % k
        elif x is not None and not _is_num(x):
            return "%r must be a number" % k
    return None


_SERIES_COUNTS = ("requests", "http", "eas", "provisionings", "reprovisions", "throttled", "wipes", "devices")


def _point(p):
    if type(p) is not dict:
        return "must be an object"
    if not _is_num(p.get("t")):
        return "needs a number 't'"
    for name in _SERIES_COUNTS:
        if p.get(name) is not None:
            problem = _counts(p[name])
            if problem:
                return "'%s' %s" % (name, problem)
    if p.get("lag") is not None:
        problem = _interval_hist(p["lag"])
        if problem:
            return "'lag' %s" % problem
    latency = p.get("latency")
    if latency is not None:
        if type(latency) is not dict:
            return "'latency' must be an object"
        for name, entry in latency.items():
            problem = _interval_hist(entry)
            if problem:
                return "'latency' %r %s" % (name, problem)
    return None


def _shard(v):
    if type(v) is not list or len(v) != 2 or not all(_is_int(x) for x in v) or not 0 <= v[0] < v[1]:
        return "must be [index, count] with 0 <= index < count"
    return None


def _event(e):
    if type(e) is not dict or not _is_num(e.get("at_s")) or not _is_str(e.get("action")) \
            or not _scalar(e.get("result")):
        return "must be { at_s: number, action: text, result: text }"
    return None


def _threshold(t):
    if type(t) is not dict or not _is_str(t.get("threshold")) or not _opt(_is_num)(t.get("value")) \
            or type(t.get("passed", False)) is not bool:
        return "must be { threshold: text, value: number or null, passed: true/false }"
    return None


def _simple(check, what):
    return lambda v: None if check(v) else "must be %s, not %.60r" % (what, v)


_COUNT_MAPS = ("by_command_status", "by_command_outcome", "devices", "provisionings", "reprovisions",
               "remote_wipes", "unmet_policies", "throttled", "malformed_responses", "cancelled_in_flight",
               "cancelled_raw", "password_changes", "policy_effects", "versions", "resent", "not_sent",
               "device_errors")
_INTS = ("requests", "errors", "bytes_sent", "bytes_received", "reenrolments", "devices_total", "late_starts",
         "code_word_requests", "local_wipes", "reconnects")
FIELDS = {
    "scenario": _simple(_is_str, "a text"),
    "target": _simple(_opt(_is_str), "a text"),
    "seed": _simple(_opt(_is_int), "a whole number"),
    "easload_version": _simple(_opt(_is_str), "a text"),
    "mode": _simple(_opt(_is_str), "a text"),
    "model": _simple(_opt(_is_str), "a text"),
    "started": _simple(_is_num, "a number (unix seconds)"),
    "elapsed_s": _simple(lambda v: _is_num(v) and v >= 0, "a number of seconds >= 0"),
    "requests_per_s": _simple(_is_num, "a number"),
    "interrupted": _simple(lambda v: type(v) is bool, "true or false"),
    "shard": _shard,
    "by_key": _list_of(_row(_is_str, _is_str, _is_str, _is_int), "[command, outcome, status, count]"),
    "provisionings_raw": _list_of(_row(_is_str, _scalar, _is_int), "[result, ack, count]"),
    "eas_statuses": lambda v: _counts(v, _status_key),
    "compliance": lambda v: _counts(v, lambda k: k.lstrip("-").isdigit()),
    "client_rss": _numbers,
    "latency": _latency_map,
    "timings": _latency_map,
    "histograms": _hdr,
    "timing_histograms": _hdr,
    "events": _list_of(_event, "events"),
    "thresholds": _list_of(_threshold, "thresholds"),
    "series": _list_of(_point, "samples"),
}
FIELDS.update({key: _counts for key in _COUNT_MAPS})
FIELDS.update({key: _simple(lambda v: _is_int(v) and v >= 0, "a whole number >= 0") for key in _INTS})
# what merge() needs besides (summaries written by easload since by_key exists have every one)
MERGE_FIELDS = ("by_key", "provisionings_raw", "eas_statuses", "reprovisions", "throttled", "remote_wipes",
                "malformed_responses", "devices", "compliance", "unmet_policies", "reenrolments", "bytes_sent",
                "bytes_received", "started", "elapsed_s")


def check_summary(data, name):
    """``data`` (a parsed summary.json) if every field merge and report read has its type;
    SummaryError naming the file ``name`` and the first bad field otherwise."""
    if type(data) is not dict:
        raise SummaryError("%s: not an easload summary (a JSON object is expected)" % name)
    if "scenario" not in data:
        raise SummaryError("%s: not an easload summary (no field 'scenario')" % name)
    for key, check in FIELDS.items():
        if key in data:
            problem = check(data[key])
            if problem:
                raise SummaryError("%s: field '%s' %s" % (name, key, problem))
    return data


def read_summaries(names):
    """summary.json files (or --out directories holding one), each checked by check_summary;
    SummaryError with one line naming the file otherwise."""
    from pathlib import Path

    import orjson

    summaries = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            path = path / "summary.json"
        try:
            data = orjson.loads(path.read_bytes())
        except OSError as exc:
            raise SummaryError("%s: %s" % (path, exc.strerror or exc)) from None
        except orjson.JSONDecodeError as exc:
            raise SummaryError("%s: not a summary.json (%s)" % (path, exc)) from None
        summaries.append(check_summary(data, path))
    return summaries


def _hists(encoded):
    return {name: HdrHistogram.decode(value) for name, value in encoded.items()}


def merge(summaries):
    """A Stats holding the exact union of the shards' results, and the shard description."""
    if not summaries:
        raise MergeError("nothing to merge")
    first = summaries[0]
    for key in ("scenario", "seed", "easload_version"):
        values = {repr(s.get(key)) for s in summaries}
        if len(values) > 1:
            raise MergeError("cannot merge results of different %ss: %s" % (key.replace("_", " "), ", ".join(sorted(values))))
    shards = [tuple(s.get("shard") or (0, 1)) for s in summaries]
    if len({n for _i, n in shards}) > 1:
        raise MergeError("cannot merge results with different shard counts: %s" % sorted(set(shards)))
    if len(set(shards)) != len(shards):
        raise MergeError("the same shard appears twice: %s" % sorted(s for s in shards if shards.count(s) > 1))
    for s in summaries:
        if "by_key" not in s:
            raise MergeError("a result without raw counters (written by an older easload?)")
        missing = [key for key in MERGE_FIELDS if key not in s]
        if missing:
            raise MergeError("a result of scenario %r has no field '%s': not a whole easload summary"
                             % (s.get("scenario"), missing[0]))
    stats = Stats()
    stats.by_key = {}
    for s in summaries:
        for c, o, st, n in s["by_key"]:
            stats.by_key[(c, o, st)] = stats.by_key.get((c, o, st), 0) + n
        for r, a, n in s["provisionings_raw"]:
            stats.provisionings[(r, a)] += n
        for key, n in s["eas_statuses"].items():
            c, _, st = key.rpartition(" ")
            stats.eas_statuses[(c, int(st) if st != "other" else st)] += n
        stats.reprovisions.update(s["reprovisions"])
        stats.throttled.update(s["throttled"])
        stats.wipes.update(s["remote_wipes"])
        stats.malformed.update(s["malformed_responses"])
        stats.cancelled.update(s.get("cancelled_raw", {}))
        stats.resent.update(s.get("resent", {}))  # re-sent on a fresh connection (older summaries: none)
        stats.not_sent.update(s.get("not_sent", {}))  # cancelled before they were written
        stats.device_errors.update(s.get("device_errors", {}))  # devices ended by their own exception
        stats.final_states.update(s["devices"])
        stats.compliance.update({int(k): v for k, v in s["compliance"].items()})
        stats.unmet.update(s["unmet_policies"])
        stats.reenrolments += s["reenrolments"]
        stats.late_starts += s.get("late_starts", 0)
        stats.password_changes.update(s.get("password_changes", {}))
        stats.code_words += s.get("code_word_requests", 0)
        stats.local_wipes += s.get("local_wipes", 0)
        stats.policy_effects.update(s.get("policy_effects", {}))
        stats.bytes_sent += s["bytes_sent"]
        stats.bytes_received += s["bytes_received"]
        rss = s.get("client_rss", {})
        stats.rss_base += rss.get("base_bytes", 0)
        stats.rss_peak += rss.get("peak_bytes", 0)
        stats.rss_end += rss.get("end_bytes", 0)
        stats.interrupted = stats.interrupted or s.get("interrupted", False)
    stats.total = sum(stats.by_key.values())
    stats.failures = sum(n for (_c, o, _s), n in stats.by_key.items() if o not in _OK_OUTCOMES)
    for attr, key in (("latency", "histograms"), ("timings", "timing_histograms")):
        merged = {}
        for s in summaries:
            for name, hist in _hists(s.get(key, {})).items():
                if name in merged:
                    merged[name].add(hist)
                else:
                    merged[name] = hist
        setattr(stats, attr, {name: _View(h) for name, h in merged.items()})
    stats.started = min(s["started"] for s in summaries)
    stats.ended = max(s["started"] + s["elapsed_s"] for s in summaries)
    stats.series = merge_series([s.get("series", []) for s in summaries])
    seen = set()
    for s in summaries:
        for e in s.get("events", []):
            key = (e["at_s"], e["action"], e["result"])
            if key not in seen:
                seen.add(key)
                stats.events.append(key)
    stats.events.sort()
    total_shards = shards[0][1]
    return stats, {"shards_merged": sorted(i for i, _n in shards), "shards_total": total_shards,
                   "complete": len(shards) == total_shards, "devices_total": sum(s.get("devices_total", 0)
                                                                                 for s in summaries)}, first


__all__ = ["merge", "MergeError", "SummaryError", "check_summary", "read_summaries"]
