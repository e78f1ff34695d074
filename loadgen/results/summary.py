"""summary.json: the one writer (:func:`build`, :func:`write`) and the one reader (:func:`read`).

A run's summary is its Stats (``Stats.to_dict``) and the facts of the run that only the command
line knows (seed, shard, versions, mode, easload's version, the thresholds' verdicts); ``easload
run`` and ``easload merge`` build it here, in one order.  ``easload merge`` and ``easload report``
read summaries here: every field they use is checked for its type when a file is read, so that a
damaged or hand-edited file is one line naming the file and the field.
"""

import orjson
from hdrh.histogram import HdrHistogram

from loadgen.results.tasks import RESULTS


def build(stats, *, scenario, target, verdicts=(), **facts):
    """The summary of a run (or of merged shards): ``stats.to_dict`` with the scenario's name and
    the target shown (never credentials), then ``facts`` (seed, devices_total, shard, versions -- the EAS
    versions the devices drew, {version: devices} -- and version_weights -- the scenario's --, mode, model,
    easload_version, and a merge's shard description), then the thresholds' verdicts
    [(threshold, value, passed)]."""
    data = stats.to_dict(scenario=scenario, target=target)
    data.update(facts)
    data["thresholds"] = [{"threshold": str(t), "value": v, "passed": ok} for t, v, ok in verdicts]
    return data


def merged_versions(summaries):
    """(versions, version_weights) of merged results: the EAS versions the devices drew, added up over the
    shards (each counts its own devices), and the scenario's weights.  A summary from before the drawn
    counts (no ``version_weights``: its ``versions`` are the weights) gives the first one's as they are."""
    first = summaries[0] if summaries else {}
    if not summaries or not all(isinstance(s.get("version_weights"), dict) and isinstance(s.get("versions"), dict)
                                for s in summaries):
        return first.get("versions"), first.get("version_weights")
    total = {}
    for s in summaries:
        for version, n in s["versions"].items():
            total[version] = total.get(version, 0) + n
    return dict(sorted(total.items())), first["version_weights"]


def dumps(data):
    """summary.json's bytes (indented JSON)."""
    return orjson.dumps(data, option=orjson.OPT_INDENT_2)


class SummaryError(ValueError):
    """A summary.json that cannot be read: the message names the file and the field."""


# The shape of every summary.json field merge and report read (Stats.to_dict in loadgen/results/stats.py and
# the run's facts added by build), checked once when a file is read so that a damaged or hand-edited file is
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


_SERIES_COUNTS = ("requests", "http", "eas", "provisionings", "reprovisions", "throttled", "wipes", "devices",
                  "tasks")


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


def _mail(v):
    """summary.json's ``mail`` (Stats.mail_dict): events (name: count), push_latency (kind: percentiles),
    push_latency_histograms (kind: hdrh-encoded); a part may be missing."""
    if type(v) is not dict:
        return "must be an object of events, push_latency and push_latency_histograms"
    for key, check in (("events", _counts), ("push_latency", _latency_map), ("push_latency_histograms", _hdr)):
        if key in v:
            problem = check(v[key])
            if problem:
                return "'%s' %s" % (key, problem)
    return None


def _tasks(v):
    """summary.json's ``tasks`` (Stats.tasks_dict): total (numbers), by_type (type: counts, ratios and a
    latency entry), histograms (type: hdrh-encoded); a part may be missing."""
    if type(v) is not dict:
        return "must be an object of total, by_type and histograms"
    if "total" in v:
        problem = _numbers(v["total"])
        if problem:
            return "'total' %s" % problem
    by_type = v.get("by_type", {})
    if type(by_type) is not dict:
        return "'by_type' must be an object of type: figures"
    for name, row in by_type.items():
        if type(row) is not dict:
            return "'by_type' %r must be an object" % (name,)
        problem = _numbers({k: x for k, x in row.items() if k != "latency"})
        if not problem and "latency" in row:
            problem = _numbers(row["latency"])
        if not problem and not all(_is_int(row.get(k, 0)) and row.get(k, 0) >= 0
                                   for k in RESULTS):
            problem = "counts must be whole numbers >= 0"
        if problem:
            return "'by_type' %r %s" % (name, problem)
    if "histograms" in v:
        problem = _hdr(v["histograms"])
        if problem:
            return "'histograms' %s" % problem
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
               "cancelled_raw", "password_changes", "policy_effects", "versions", "version_weights", "resent",
               "not_sent", "device_errors", "tls_handshakes")
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
    "mail": _mail,
    "tasks": _tasks,
    "aborted": _simple(_opt(_is_str), "a text"),
}
FIELDS.update({key: _counts for key in _COUNT_MAPS})
FIELDS.update({key: _simple(lambda v: _is_int(v) and v >= 0, "a whole number >= 0") for key in _INTS})
# what merge() needs besides (summaries written by easload since by_key exists have every one)

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


def read(names):
    """summary.json files (or --out directories holding one), each checked by check_summary;
    SummaryError with one line naming the file otherwise."""
    from pathlib import Path

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


__all__ = ["build", "dumps", "read", "check_summary", "SummaryError", "FIELDS"]
