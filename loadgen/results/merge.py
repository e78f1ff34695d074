"""``easload merge``: shard results (summary.json) merged exactly into one.

Counts add up; HDR histograms (per command, per timing and per time-series
interval) are added, so percentiles are those of all requests, never an average
of shard percentiles.  Results of different scenarios, seeds, easload versions
or shard counts, or the same shard twice, are refused.
"""

from hdrh.histogram import HdrHistogram

from loadgen.results.outcomes import OK_OUTCOMES
from loadgen.results.stats import Stats
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
    stats.failures = sum(n for (_c, o, _s), n in stats.by_key.items() if o not in OK_OUTCOMES)
    for attr, key in (("latency", "histograms"), ("timings", "timing_histograms")):
        setattr(stats, attr, {name: _View(h) for name, h in histograms_of(summaries, key).items()})
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


__all__ = ["merge", "MergeError"]
