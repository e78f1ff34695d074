"""The one merge of results (summary.json): ``easload merge`` of shards, and the HTML report of
several results (loadgen/results/html.py derives its views from what :func:`merge` returns).

Counts add up; HDR histograms (per command, per timing, per push-latency kind, per task type and per
time-series interval) are added, so percentiles are those of all requests, never an average of shard
percentiles.  Results of different scenarios or seeds are refused; as shards (``easload merge``)
also results of different easload versions or shard counts, or the same shard twice.
"""

from hdrh.histogram import HdrHistogram

from loadgen.results.outcomes import OK_OUTCOMES
from loadgen.results.stats import Stats
from loadgen.results.tasks import RESULTS
from loadgen.results.histograms import _HistogramView as _View
from loadgen.results.histograms import merge_series


class MergeError(ValueError):
    pass


# what merge needs of every shard's summary (read and checked by loadgen/results/summary.py)
MERGE_FIELDS = ("by_key", "provisionings_raw", "eas_statuses", "reprovisions", "throttled", "remote_wipes",
                "malformed_responses", "devices", "compliance", "unmet_policies", "reenrolments", "bytes_sent",
                "bytes_received", "started", "elapsed_s")


def histograms_of(summaries, key):
    """name -> the sum of the summaries' hdrh-encoded histograms under ``key`` ("histograms" per command,
    "timing_histograms"), in name order."""
    merged = {}
    for s in summaries:
        for name, encoded in (s.get(key) or {}).items():
            hist = HdrHistogram.decode(encoded)
            if name in merged:
                merged[name].add(hist)
            else:
                merged[name] = hist
    return dict(sorted(merged.items()))


def _raw_counts(s):
    """A summary's (command, outcome, status label) -> n: its ``by_key``; for a summary without one (written
    before it, or by hand: the HTML report takes those) its ``by_command_status`` with the outcome an
    answer has ("ok" for an HTTP status, else the label itself: Stats._slot's rule), an approximation."""
    if "by_key" in s:
        return s["by_key"]
    rows = []
    for key, n in (s.get("by_command_status") or {}).items():
        c, _, st = key.partition(" ")
        rows.append((c, "ok" if st.isdigit() or st == "other" else st, st, n))
    return rows


def _events(summaries, start0):
    """The events of several results, their times relative to the earliest start; the same event (action
    and result in the same second) reported by several results once."""
    events = []
    seen = set()
    for s in summaries:
        off = (s.get("started") or start0) - start0
        for e in s.get("events") or ():
            at = round((e.get("at_s") or 0.0) + off, 3)
            key = (e.get("action"), e.get("result"), round(at))
            if key not in seen:
                seen.add(key)
                events.append((at, e.get("action"), e.get("result")))
    events.sort(key=lambda e: e[0])
    return events


def merge(summaries, *, shards=True, series=True):
    """A Stats holding the exact union of the results, the shard description, and the first result.

    ``shards``: the results are shards of one run (``easload merge``): the same easload version and
    shard count, no shard twice, every field merge needs present.  Else (the HTML report) results of
    one scenario and seed from anywhere -- machines of one distributed run, or the same result twice --
    with any field missing read as empty.  ``series``: merge the time series too (the HTML report
    draws its own from each result's)."""
    if not summaries:
        raise MergeError("no result to merge")
    for i, s in enumerate(summaries):
        if not isinstance(s, dict) or "scenario" not in s:
            raise MergeError("result %d is not an easload summary (no 'scenario')" % (i + 1))
    first = summaries[0]
    for key in ("scenario", "seed", "easload_version") if shards else ("scenario", "seed"):
        values = {repr(s.get(key)) for s in summaries}
        if len(values) > 1:
            raise MergeError("cannot merge results of different %ss: %s" % (key.replace("_", " "), ", ".join(sorted(values))))
    numbers = [tuple(s.get("shard") or (0, 1)) for s in summaries]
    if shards:
        if len({n for _i, n in numbers}) > 1:
            raise MergeError("cannot merge results with different shard counts: %s" % sorted(set(numbers)))
        if len(set(numbers)) != len(numbers):
            raise MergeError("the same shard appears twice: %s" % sorted(s for s in numbers if numbers.count(s) > 1))
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
        for c, o, st, n in _raw_counts(s):
            stats.by_key[(c, o, st)] = stats.by_key.get((c, o, st), 0) + n
        for r, a, n in s.get("provisionings_raw") or ():
            stats.provisionings[(r, a)] += n
        for key, n in (s.get("eas_statuses") or {}).items():
            c, _, st = key.rpartition(" ")
            stats.eas_statuses[(c, int(st) if st != "other" else st)] += n
        stats.reprovisions.update(s.get("reprovisions") or {})
        stats.throttled.update(s.get("throttled") or {})
        stats.wipes.update(s.get("remote_wipes") or {})
        stats.malformed.update(s.get("malformed_responses") or {})
        stats.cancelled.update(s.get("cancelled_raw", {}))
        stats.resent.update(s.get("resent", {}))  # re-sent on a fresh connection (older summaries: none)
        stats.not_sent.update(s.get("not_sent", {}))  # cancelled before they were written
        stats.device_errors.update(s.get("device_errors", {}))  # devices ended by their own exception
        stats.tls_handshakes.update(s.get("tls_handshakes", {}))  # full / resumed / failed (older: none)
        stats.final_states.update(s.get("devices") or {})
        stats.compliance.update({int(k): v for k, v in (s.get("compliance") or {}).items()})
        stats.unmet.update(s.get("unmet_policies") or {})
        stats.reenrolments += s.get("reenrolments", 0)
        stats.late_starts += s.get("late_starts", 0)
        stats.password_changes.update(s.get("password_changes", {}))
        stats.code_words += s.get("code_word_requests", 0)
        stats.local_wipes += s.get("local_wipes", 0)
        stats.policy_effects.update(s.get("policy_effects", {}))
        stats.bytes_sent += s.get("bytes_sent", 0)
        stats.bytes_received += s.get("bytes_received", 0)
        stats.mail_events.update((s.get("mail") or {}).get("events") or {})
        tasks = s.get("tasks") or {}
        for task_type, row in (tasks.get("by_type") or {}).items():
            for result in RESULTS:
                if row.get(result):
                    stats.task_counts[(task_type, result)] += row[result]
        # the queue's peak of several shards: the sum of theirs, an upper bound (they need not peak
        # together), labelled so when more than one shard had a queue or a shard's was a bound already
        total = tasks.get("total") or {}
        peak = total.get("queued_peak", 0)
        stats.tasks_queued_peak_bound = bool(stats.tasks_queued_peak_bound or total.get("queued_peak_bound")
                                             or (peak and stats.tasks_queued_peak))
        stats.tasks_queued_peak += peak
        stats.tasks_queued += total.get("queued_end", 0)
        rss = s.get("client_rss", {})
        stats.rss_base += rss.get("base_bytes", 0)
        stats.rss_peak += rss.get("peak_bytes", 0)
        stats.rss_end += rss.get("end_bytes", 0)
        stats.interrupted = stats.interrupted or s.get("interrupted", False)
        stats.aborted = stats.aborted or s.get("aborted")  # the first shard's reason
    stats.total = sum(stats.by_key.values())
    stats.failures = sum(n for (_c, o, _s), n in stats.by_key.items() if o not in OK_OUTCOMES)
    for attr, key in (("latency", "histograms"), ("timings", "timing_histograms")):
        setattr(stats, attr, {name: _View(h) for name, h in histograms_of(summaries, key).items()})
    stats.push_hdr = {kind: _View(h) for kind, h in
                      histograms_of([s.get("mail") or {} for s in summaries], "push_latency_histograms").items()}
    stats.task_hdr = {t: _View(h) for t, h in
                      histograms_of([s.get("tasks") or {} for s in summaries], "histograms").items()}
    stats.started = min(s.get("started") or 0.0 for s in summaries)
    stats.ended = max((s.get("started") or 0.0) + (s.get("elapsed_s") or 0.0) for s in summaries)
    stats.series = merge_series([s.get("series") or [] for s in summaries]) if series else []
    stats.events = _events(summaries, stats.started)
    total_shards = numbers[0][1]
    return stats, {"shards_merged": sorted(i for i, _n in numbers), "shards_total": total_shards,
                   "complete": len(numbers) == total_shards, "devices_total": sum(s.get("devices_total") or 0
                                                                                 for s in summaries)}, first


__all__ = ["merge", "MergeError"]
