"""The HTML report: one self-contained file (inline CSS, data and script; charts by uPlot, inlined).

``render(summaries)`` takes one summary.json (as a dict) or several of the same scenario and
seed (shards or machines of one distributed run) and returns one HTML document that needs no
network: an operator opens it on an air-gapped jump host or from a CI job page.

Several summaries are merged by loadgen/results/merge.py (the one merge, as ``easload merge``):
counts are added, latency percentiles come from the merged HDR histograms, thresholds are
evaluated again on the merged numbers.  The report derives its views from that: the time series
of every result aligned on wall-clock time (percentiles of each point from the merged HDR
histograms of its intervals, so percentiles over time stay exact).  Long runs are drawn with at most ``MAX_POINTS`` points per line: intervals are
combined (counts added, HDR histograms merged), never sampled.

The charts are drawn in the browser by uPlot (MIT, vendored in ``loadgen/results/assets/`` and
inlined into every report with its licence): interactive canvas charts (values under the
pointer, zoom in time across all charts, series toggled from the legend).  Python prepares
their data as one JSON document (counts per interval, latencies to three significant digits);
the page's own script (``assets/report.js``, with its styles in ``assets/report.css``, both
inlined like uPlot's) builds each chart, draws the scenario's events as numbered markers on
every time chart, and, for a merged run, draws every chart again for one result on demand
(a selector, or ``#view=N`` in the URL).  The tables need no script.

Every string that comes from the data (scenario, target, command and state names, event
results, threshold texts) is escaped: in HTML as entities, in the JSON so that it cannot end
its script element, and the script only ever puts it into the page as text.
"""

import html
import json
import math
import time
from collections import Counter
from importlib import resources

from loadgen import __version__
from loadgen.results.histograms import (add_counts, entry_raws, group, lag_of, latency_of, merge_groups, merge_lag,
                                        merge_latency, paused_gc)
from loadgen.results.mail import EVENT_LABELS, PUSH_LABELS
from loadgen.results.mail import GROUPS as MAIL_GROUPS
from loadgen.results.merge import merge as merge_results
from loadgen.results.outcomes import OK_OUTCOMES
from loadgen.results.stats import tally
from loadgen.results.summary import merged_versions
from loadgen.results.thresholds import evaluate, from_text
from loadgen.results.thresholds import split as split_threshold

MAX_POINTS = 600

# Okabe-Ito, then a few more: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D31", "#555555",
           "#B2182B", "#7B3294", "#1B7837", "#F0A30A")
PCT_COLOURS = {"p50": "#0072B2", "p90": "#E69F00", "p99": "#D55E00"}
STATE_COLOURS = {"provisioned": "#009E73", "wiped": "#CC79A7", "refused": "#D55E00", "unprovisioned": "#999999",
                 "blocked": "#B2182B", "quarantined": "#E69F00", "new": "#56B4E9"}

_SERIES_COUNTS = ("requests", "http", "eas", "provisionings", "reprovisions", "throttled", "wipes")


def esc(value):
    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------- merging


def _interval(summaries):
    """The sampling interval: the mean spacing of the samples (the last one, at the very end of the
    run, may be short), so that numbering them does not drift from their times."""
    spans = []
    for s in summaries:
        ts = [p["t"] for p in s.get("series") or ()]
        if len(ts) >= 3:
            spans.append((ts[-2] - ts[0]) / (len(ts) - 2))
        elif len(ts) == 2 and ts[1] > ts[0]:
            spans.append(ts[1] - ts[0])
    if not spans:
        return 1.0
    return max(0.001, round(sum(spans) / len(spans), 3))


def merge(summaries):
    """One summary from several of the same scenario and seed (loadgen.results.merge.merge's), with
    the time series aligned and combined into at most MAX_POINTS intervals: ``points``."""
    with paused_gc():
        return _merge(summaries)


def _merge(summaries):
    """The merged results (loadgen.results.merge.merge: counts added, HDR histograms merged, events on the
    merged clock, thresholds evaluated again for several results) as a summary dict (Stats.to_dict),
    with what only the report needs: the facts of the first result, the targets, the results' count
    and each result's own figures (``shard_info``), and the time axis of the views."""
    if isinstance(summaries, dict):
        summaries = [summaries]
    summaries = list(summaries)
    stats, described, first = merge_results(summaries, shards=False, series=False)
    targets = []
    for s in summaries:
        if s.get("target") not in targets:
            targets.append(s.get("target"))
    m = stats.to_dict(scenario=first.get("scenario"),
                      target=targets[0] if len(targets) == 1 else ", ".join(str(t) for t in targets))
    m["seed"] = first.get("seed")
    m["shards"] = len(summaries)
    m["devices_total"] = described["devices_total"]
    for key in ("easload_version", "mode"):
        if first.get(key) is not None:
            m[key] = first[key]
    versions, _weights = merged_versions(summaries)  # the versions drawn, added up over the shards
    if versions is not None:
        m["versions"] = versions
    # thresholds: as the run judged them, or evaluated again on the merged numbers
    if len(summaries) == 1:
        m["thresholds"] = [dict(t) for t in first.get("thresholds") or ()]
    else:
        texts = []
        for s in summaries:
            for t in s.get("thresholds") or ():
                if t.get("threshold") not in texts:
                    texts.append(t.get("threshold"))
        m["thresholds"] = []
        for text in texts:
            th = from_text(text)
            value, passed = evaluate(stats, [th])[0][1:] if th is not None else (None, False)
            m["thresholds"].append({"threshold": text, "value": value, "passed": passed})
    start0 = m["started"]
    grid = _grid(summaries, start0)
    m["interval_s"] = round(grid[0] * grid[1], 3)
    m["points"], m["shard_points"] = _views(summaries, start0, grid)
    m["shard_info"] = [{"target": s.get("target"), "started": s.get("started"), "elapsed_s": s.get("elapsed_s"),
                        "requests": s.get("requests") or 0, "errors": s.get("errors") or 0,
                        "requests_per_s": s.get("requests_per_s") or 0.0, "devices_total": s.get("devices_total"),
                        "interrupted": bool(s.get("interrupted")),
                        "thresholds_failed": sum(1 for t in s.get("thresholds") or () if not t.get("passed")),
                        "latency": s.get("latency") or {},
                        "by_command_status": s.get("by_command_status") or {},
                        "eas_statuses": s.get("eas_statuses") or {},
                        "throttled": s.get("throttled") or {},
                        "mail": s.get("mail") or {}} for s in summaries]
    return m


def _grid(summaries, start0):
    """(interval, combining factor, number of points) of the merged time axis."""
    base = _interval(summaries)
    last = 0
    for s in summaries:
        shift = int(round(((s.get("started") or start0) - start0) / base))
        last = max(last, shift + len(s.get("series") or ()))
    return base, max(1, math.ceil(last / MAX_POINTS)), last


def _views(summaries, start0, grid):
    """The series of several summaries on one time axis, at most MAX_POINTS points: those of the
    whole run and, for several summaries, those of each (``shard_points``).

    A shard's i-th sample is the i-th interval of its run (as loadgen.results.histograms.merge_series has
    it), shifted by the shard's later start; ``factor`` consecutive intervals are combined.  Each
    point has its time ``t`` (end of its interval(s) into the merged run) and length ``dt``.

    Each summary's samples go into its own buckets once; a bucket of the whole run is the sum of
    the summaries' (counts added, intervals listed in summary order, as if they had been put there
    one by one).  Interval histograms are decoded once (loadgen.results.histograms.entry_raws) and merged the
    way loadgen.results.histograms.group does it: a summary's point is the group of its intervals, the whole
    run's point the sum of the summaries' groups."""
    base, factor, last = grid
    n = math.ceil(last / factor)
    width = base * factor
    own = [_buckets(si, s, start0, base, factor, n) for si, s in enumerate(summaries)]
    if len(summaries) == 1:
        whole = own[0]
        own = []
    else:
        whole = [_sum_buckets([buckets[b] for buckets in own]) for b in range(n)]
    results = [{} for _ in own]  # (bucket, command or None for the lag) -> a summary's point's, made with the whole's
    histograms = []
    for b, bucket in enumerate(whole):
        if bucket is None:
            histograms.append(None)
            continue
        parts = [(si, buckets[b]) for si, buckets in enumerate(own) if buckets[b] is not None]
        latency = {}
        for command, entries in bucket["latency"].items():
            latency[command] = _merged(entries, [(si, sb["latency"][command]) for si, sb in parts
                                                 if command in sb["latency"]], results, (b, command), _latency)
        lag = _merged(bucket["lag"], [(si, sb["lag"]) for si, sb in parts if sb["lag"]], results, (b, None), _lag) \
            if bucket["lag"] else None
        histograms.append((latency, lag))
    points = _points(whole, histograms, width)
    shard_points = []
    for si, buckets in enumerate(own):
        done = results[si]
        histograms = []
        for b, bucket in enumerate(buckets):
            if bucket is None:
                histograms.append(None)
                continue
            latency = {}
            for command, entries in bucket["latency"].items():
                hit = done.get((b, command))
                latency[command] = hit if hit is not None else _merged(entries, (), (), None, _latency)
            hit = done.get((b, None))
            lag = hit if hit is not None else _merged(bucket["lag"], (), (), None, _lag) if bucket["lag"] else None
            histograms.append((latency, lag))
        shard_points.append(_points(buckets, histograms, width))
    return points, shard_points


def _buckets(si, s, start0, base, factor, n):
    """One summary's samples by point: counts added, devices (the last sample's), intervals listed."""
    off = (s.get("started") or start0) - start0
    shift = int(round(off / base))
    buckets = [None] * n
    for i, p in enumerate(s.get("series") or ()):
        b_i = (shift + i) // factor
        b = buckets[b_i]
        if b is None:
            b = buckets[b_i] = {"counts": {name: {} for name in _SERIES_COUNTS}, "devices": {},
                                "latency": {}, "lag": [], "t": 0.0, "samples": []}
        b["t"] = max(b["t"], off + p["t"])
        b["samples"].append(p)
        counts = b["counts"]
        for name in _SERIES_COUNTS:
            more = p.get(name)
            if more:  # (add_counts inlined)
                into = counts[name]
                get = into.get
                for k, v in more.items():
                    into[k] = get(k, 0) + v
        if p.get("lag"):
            b["lag"].append(p["lag"])
        b["devices"][si] = p.get("devices") or {}  # a gauge: the last of each shard in the interval
        latency = b["latency"]
        for cmd, lat in (p.get("latency") or {}).items():
            if cmd in latency:
                latency[cmd].append(lat)
            else:
                latency[cmd] = [lat]
    return buckets


def _sum_buckets(buckets):
    """The bucket of several summaries' (in summary order): what putting their samples into one
    bucket one by one makes."""
    out = None
    for sb in buckets:
        if sb is None:
            continue
        if out is None:
            out = {"counts": {name: {} for name in _SERIES_COUNTS}, "devices": {}, "latency": {}, "lag": [],
                   "t": 0.0, "samples": None}
        out["t"] = max(out["t"], sb["t"])
        counts = out["counts"]
        for name in _SERIES_COUNTS:
            add_counts(counts[name], sb["counts"][name])
        out["lag"] += sb["lag"]
        out["devices"].update(sb["devices"])
        latency = out["latency"]
        for cmd, lats in sb["latency"].items():
            if cmd in latency:
                latency[cmd] += lats
            else:
                latency[cmd] = list(lats)
    if out is not None and not all(type(v) is int for c in out["counts"].values() for v in c.values()):
        # not whole numbers: added sample by sample, in that order (floats add up differently)
        out["counts"] = {name: {} for name in _SERIES_COUNTS}
        for sb in buckets:
            for p in sb["samples"] if sb is not None else ():
                for name in _SERIES_COUNTS:
                    add_counts(out["counts"][name], p.get(name) or {})
    return out


def _latency(entries, g):
    if g is None:  # an interval without its histogram: loadgen.results.histograms.merge_latency's rule
        return merge_latency(entries, None, encode=False)
    return latency_of(g)


def _lag(entries, g):
    if g is None:
        return merge_lag(entries, None, encode=False)
    return lag_of(entries, g)


def _merged(entries, own, results, key, make):
    """A point's latency of a command (``make`` _latency) or schedule lag (_lag) from its intervals'
    ``entries``.  One interval: its own numbers (the lag copied).  Else their HDR histograms, each
    decoded once (loadgen.results.histograms.entry_raws, in order; at the first interval without one,
    loadgen.results.histograms.merge_latency's or merge_lag's own rule), merged by loadgen.results.histograms.group.
    ``own``: the summaries' (index, intervals) at this point, in summary order (``entries`` is
    their concatenation): their points' too, into ``results`` at ``key``, each a Group of its
    intervals, the whole's the sum of theirs."""
    if len(entries) == 1:
        if make is _lag:
            return merge_lag(entries)
        x = entries[0]
        return {"count": x.get("count", 0), "p50_ms": x.get("p50_ms"), "p90_ms": x.get("p90_ms"),
                "p99_ms": x.get("p99_ms")}
    decoded = []
    for entry in entries:
        raws = entry_raws(entry)
        if raws is None:
            return make(entries, None)
        decoded.append(raws)
    if not own:
        return make(entries, group([r for raws in decoded for r in raws]))
    groups = []
    at = 0
    for si, mine in own:
        k = len(mine)
        g = group(decoded[at] if k == 1 else [r for raws in decoded[at:at + k] for r in raws])
        at += k
        groups.append(g)
        if k > 1:
            results[si][key] = make(mine, g)
    return make(entries, merge_groups(groups))


def _points(buckets, histograms, width):
    points = []
    prev = 0.0
    for i, (b, hist) in enumerate(zip(buckets, histograms)):
        t = b["t"] if b is not None else prev + width
        if i == 0 and b is not None:
            prev = max(0.0, t - width)
        point = {"t": round(t, 3), "dt": max(t - prev, width / 10)}
        prev = t
        if b is None:
            point.update({name: {} for name in _SERIES_COUNTS})
            point["devices"] = None
            point["latency"] = {}
            point["lag"] = None
        else:
            point.update(b["counts"])
            devices = Counter()
            for d in b["devices"].values():
                devices.update(d)
            point["devices"] = dict(devices)
            point["latency"], point["lag"] = hist
        points.append(point)
    return points


# ---------------------------------------------------------------- charts (data for uPlot)

ASSETS = "assets"
UPLOT_VERSION = "1.6.32"


def _asset(name):
    return resources.files("loadgen.results").joinpath(ASSETS, name).read_text(encoding="utf-8")


def _fmt(v):
    if v is None:
        return "–"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) >= 1):
        return "{:,}".format(int(v))
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.3g" % v


def _tlabel(s):
    s = int(round(s))
    if s < 60:
        return "%ds" % s
    if s < 3600:
        return "%d:%02d" % (s // 60, s % 60)
    return "%d:%02d:%02d" % (s // 3600, (s % 3600) // 60, s % 60)


def _sig3(v):
    """A latency in ms to three significant digits: what a chart can show, in few bytes."""
    if v is None:
        return None
    r = _SIG3.get(v)
    if r is None:
        if len(_SIG3) > 100_000:
            _SIG3.clear()
        r = _SIG3[v] = _sig3_of(v)
    return r


_SIG3 = {}  # _sig3 by value: a report's latencies are a few thousand distinct values


def _sig3_of(v):
    if v == 0:
        return 0
    r = float("%.3g" % v)
    return int(r) if r.is_integer() else r


def _json_for_html(obj):
    """JSON that cannot end the <script> element it sits in, whatever strings the data has."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c") \
        .replace(">", "\\u003e").replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _series(name, colour, values, dashed=False):
    return [name, colour, values, 1] if dashed else [name, colour, values]


def _spec(kind, unit, series, rate=False, log=False, cats=None, cat_label="command"):
    """One chart's data: kind line | stack (areas) | bars (stacked, per interval) | cat (stacked bars
    by category); series [[name, colour, values(, dashed)]] without the empty ones; None if nothing."""
    series = [s for s in series if any(v for v in s[2] if v)]
    if not series:
        return None
    spec = {"k": kind, "u": unit, "s": series}
    if rate:
        spec["r"] = 1  # values are counts per interval: the page divides by each interval's length
    if log:
        spec["log"] = 1
    if cats is not None:
        spec["x"] = cats
        spec["xl"] = cat_label
    return spec


def _palette(m):
    """Colours by name, fixed from the whole run so that every view uses the same."""
    pts = m["points"]
    commands = sorted({_split(k)[0] for p in pts for k in p["requests"]} | set(m["latency"]))
    statuses = sorted({_split(k)[1] for k in m["by_command_status"]})
    estat = sorted({_split(k)[1] for k in m["eas_statuses"]}, key=lambda s: (len(s), s))
    states = sorted({s for p in pts if p["devices"] for s in p["devices"]} | set(m["devices"]),
                    key=lambda s: (s != "provisioned", s))
    provs = sorted({k for p in pts for k in p["provisionings"]})
    eas_keys = sorted({k for p in pts for k in p.get("eas") or ()}, key=lambda k: (_split(k)[0], len(k), k))
    return {
        "commands": commands,
        "cmd": _colours(commands),
        "fail": _colours(sorted({k for p in pts for k in p["requests"] if _split(k)[1] not in OK_OUTCOMES})),
        "states": states,
        "state": _colours(states, STATE_COLOURS),
        "prov": _colours(provs, {k: "#009E73" for k in provs if k.startswith("provisioned ack=1")}),
        "trig": _colours(sorted({k for p in pts for k in p["reprovisions"]})),
        "wipe": _colours(sorted({k for p in pts for k in p["wipes"]})),
        "thr": _colours(sorted({k for p in pts for k in p["throttled"]} | set(m["throttled"]))),
        "status": _colours(statuses, {s: _status_colour(s) for s in statuses if _status_colour(s)}),
        "eas": _colours(estat, {s: _status_colour(s) for s in estat if _status_colour(s)}),
        "eas_keys": eas_keys,
        "eas_cmds": sorted({_split(k)[0] for k in eas_keys}),
    }


def _colour(table, name):
    return table.get(name) or PALETTE[len(table) % len(PALETTE)]


def _by_category(counts, colours):
    """{"command status": n} -> categories (commands) and one series per status (stacked bars)."""
    cats = sorted({_split(k)[0] for k in counts})
    segs = sorted({_split(k)[1] for k in counts}, key=lambda s: (len(s), s))
    return cats, [_series(s, _colour(colours, s), [counts.get("%s %s" % (c, s), 0) for c in cats]) for s in segs]


def _charts(pts, totals, pal):
    """Every chart of one view (the whole run or one result), in page order:
    [(key, section, title, note, spec or None)]."""
    out = []
    cmds = pal["commands"]
    # an interval without any sample (a result that had not started yet, or had ended) is a gap, not a zero
    sampled = [p["devices"] is not None for p in pts]

    def per_interval(name, key):
        return [p[name].get(key, 0) if ok else None for p, ok in zip(pts, sampled)]

    by_command = []  # per point: requests by command (added in the point's order, as sum() would)
    for p, ok in zip(pts, sampled):
        if ok:
            total = {}
            for k, n in p["requests"].items():
                c = str(k).partition(" ")[0]
                total[c] = total.get(c, 0) + n
            by_command.append(total)
        else:
            by_command.append(None)

    def rate_of(c):
        return [None if total is None else total.get(c, 0) for total in by_command]

    out.append(("rps", "throughput", "Requests per second by command", "",
                _spec("line", "req/s", [_series(c, pal["cmd"][c], rate_of(c)) for c in cmds], rate=True)))
    fail = sorted({k for p in pts for k in p["requests"] if _split(k)[1] not in OK_OUTCOMES} | set(pal["fail"]))
    out.append(("fail", "throughput", "Failed requests per second by command and outcome",
                "Failed: outcomes other than %s." % ", ".join(OK_OUTCOMES),
                _spec("line", "req/s", [_series(k, _colour(pal["fail"], k), per_interval("requests", k))
                                        for k in fail], rate=True)))
    for c in cmds:
        vals = {q: [_sig3(p["latency"][c][q + "_ms"]) if c in p["latency"] and p["latency"][c].get("count")
                    else None for p in pts] for q in ("p50", "p90", "p99")}
        nonzero = [v for vs in vals.values() for v in vs if v]
        log = bool(nonzero) and max(nonzero) / max(min(nonzero), 1e-3) > 20
        out.append(("lat:" + c, "ping" if c == "Ping" else "latency", "%s latency (ms)" % c, "",
                    _spec("line", "ms", [_series(q, PCT_COLOURS[q], vals[q]) for q in ("p50", "p90", "p99")],
                          log=log)))
    lagged = [p.get("lag") if ok else None for p, ok in zip(pts, sampled)]
    started = [(lg or {}).get("starts", 0) if ok else None for lg, ok in zip(lagged, sampled)]
    late = [(lg or {}).get("late", 0) if ok else None for lg, ok in zip(lagged, sampled)]
    out.append(("starts", "load", "Devices started per interval, late starts apart", "Late: started more than "
                "100 ms after the intended time (the client could not keep the schedule: its results understate "
                "the load asked for).",
                _spec("bars", "devices", [_series("on time", "#009E73", [None if n is None else n - k
                                                                      for n, k in zip(started, late)]),
                                          _series("late (> 100 ms)", "#D55E00", late)])))
    out.append(("lag", "load", "Schedule lag of the devices started (ms)", "From each device's intended start to "
                "its actual start; percentiles of each interval from its HDR histogram.",
                _spec("line", "ms", [_series(name, colour, [None if lg is None or lg.get(key) is None
                                                            else _sig3(lg[key]) for lg in lagged], dashed)
                                     for name, key, colour, dashed in (
                                         ("p50", "p50_ms", PCT_COLOURS["p50"], False),
                                         ("p99", "p99_ms", PCT_COLOURS["p99"], False),
                                         ("max", "max_ms", "#555555", True),
                                         ("mean", "mean_ms", "#009E73", True))])))
    out.append(("devices", "devices", "Devices by state (stacked)", "",
                _spec("stack", "devices", [_series(s, pal["state"][s],
                                                   [None if p["devices"] is None else p["devices"].get(s, 0)
                                                    for p in pts]) for s in pal["states"]])))
    out.append(("prov", "devices", "Provisioning outcomes per interval", "",
                _spec("bars", "provisionings", [_series(k, v, per_interval("provisionings", k))
                                                for k, v in pal["prov"].items()])))
    out.append(("reprov", "devices", "Re-provisioning triggers per interval",
                "144: policy changed (in-band), 449: HTTP re-provision (12.x), 140: remote wipe, "
                "142/143: unknown or invalid policy key.",
                _spec("bars", "re-provisionings", [_series("trigger " + k, v, per_interval("reprovisions", k))
                                                   for k, v in pal["trig"].items()])))
    if pal["wipe"]:
        out.append(("wipes", "devices", "Remote wipes acknowledged per interval", "",
                    _spec("bars", "wipes", [_series("ack " + k, v, per_interval("wipes", k))
                                            for k, v in pal["wipe"].items()])))
    if pal["thr"]:
        out.append(("thr_t", "devices", "Throttled requests per interval by reason", "",
                    _spec("bars", "requests", [_series(k, v, per_interval("throttled", k))
                                               for k, v in pal["thr"].items()])))
    cats, series = _by_category(totals.get("by_command_status") or {}, pal["status"])
    out.append(("http", "statuses", "HTTP status (or transport error) by command", "",
                _spec("cat", "requests", series, cats=cats)))
    cats, series = _by_category(totals.get("eas_statuses") or {}, pal["eas"])
    out.append(("eas", "statuses", "EAS Status by command", "", _spec("cat", "responses", series, cats=cats)))
    for c in pal["eas_cmds"]:
        keys = [k for k in pal["eas_keys"] if _split(k)[0] == c]
        out.append(("eas_t:" + c, "statuses", "%s: EAS Status per interval" % c, "",
                    _spec("bars", "responses", [_series("Status " + _split(k)[1], _colour(pal["eas"], _split(k)[1]),
                                                        per_interval("eas", k)) for k in keys])))
    thr = totals.get("throttled") or {}
    out.append(("thr", "statuses", "Throttling by reason", "",
                _spec("cat", "requests", [_series("throttled", "#E69F00", [thr[r] for r in sorted(thr)])],
                      cats=sorted(thr), cat_label="reason")))
    events = (totals.get("mail") or {}).get("events") or {}
    cats = [e for e in EVENT_LABELS if events.get(e)]
    if cats:
        out.append(("mail", "mail", "Mail events (run totals)", "",
                    _spec("cat", "events", [_series("events", "#0072B2", [events[e] for e in cats])], cats=cats,
                          cat_label="event")))
    return out


def _by_result_chart(m):
    """Requests per second of each merged result on one chart (the same in every view)."""
    scol = _colours(["result %d" % i for i in range(1, len(m["shard_points"]) + 1)])
    series = []
    n = len(m["points"])
    for i, pts in enumerate(m["shard_points"], 1):
        vals = [None] * n
        for j, p in enumerate(pts[:n]):
            vals[j] = None if p["devices"] is None else sum(p["requests"].values())
        series.append(_series("result %d" % i, scol["result %d" % i], vals))
    return _spec("line", "req/s", series, rate=True)


def _describe(title, spec, pts):
    """A text alternative of a chart (aria-label): its series and highest value."""
    best = None
    for s in spec["s"]:
        for i, v in enumerate(s[2]):
            if v is not None and spec.get("r"):
                v = v / pts[i]["dt"]
            if v is not None and (best is None or v > best[1]):
                best = (s[0], v, i)
    where = ("for %s" % spec["x"][best[2]]) if spec["k"] == "cat" else "at %s" % _tlabel(pts[best[2]]["t"])
    return "%s: %s. Highest: %s %s %s %s." % (title, ", ".join(s[0] for s in spec["s"]), best[0], _fmt(best[1]),
                                             spec["u"], where)


def _figure(key, title, note, spec, pts):
    if spec is None:
        empty = "No failed request in this run." if key == "fail" else "Nothing to draw: none of this in the run."
        return ('<figure class="chart empty" data-chart="%s" data-kind="none"><figcaption>%s</figcaption>'
                '<div class="plot nodata" data-empty="%s">%s</div></figure>'
                % (esc(key), esc(title), esc(empty), esc(empty)))
    kind = spec["k"]
    return ('<figure class="chart %s" data-chart="%s" data-kind="%s"><figcaption>%s</figcaption>'
            '<p class="sr-only">%s</p><div class="plot"></div>%s</figure>'
            % ("catchart" if kind == "cat" else "timechart", esc(key), kind, esc(title),
               esc(_describe(title, spec, pts)), '<p class="note">%s</p>' % esc(note) if note else ""))


# ---------------------------------------------------------------- tables


def _table(name, caption, headers, rows, numeric_from=1):
    if not rows:
        return ""
    head = "".join('<th scope="col"%s>%s</th>' % (' class="num"' if i >= numeric_from else "", esc(h))
                   for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            if i == 0:
                cells.append('<th scope="row">%s</th>' % esc(c))
            else:
                cells.append('<td%s>%s</td>' % (' class="num"' if i >= numeric_from else "",
                                                 esc(_fmt(c) if isinstance(c, (int, float)) and not isinstance(c, bool) else c)))
        body.append('<tr data-key="%s">%s</tr>' % (esc(row[0]), "".join(cells)))
    return ('<table data-table="%s"><caption>%s</caption><thead><tr>%s</tr></thead><tbody>%s</tbody></table>'
            % (esc(name), esc(caption), head, "".join(body)))


def _split(key):
    a, _, b = str(key).partition(" ")
    return a, b


def _accounting(m):
    """Per command: the summary's accounting (loadgen.results.stats.tally) from its counts."""
    acc = tally(((_split(key), n) for key, n in m["by_command_status"].items()), m["cancelled_in_flight"],
                m.get("resent") or {}, m.get("not_sent") or {}, by_command=True)
    return [(c, r["sent"], r["answered"], r["errors"], r["timeouts"], r["cancelled"], r["interrupted"], r["resent"],
             r["not_sent"])
            for c, r in acc.items()]


# ---------------------------------------------------------------- the document


def _verdict(m):
    failed = [t for t in m["thresholds"] if not t.get("passed")]
    answered = sum(n for k, n in m["by_command_status"].items() if _split(k)[1].isdigit())
    if m["requests"] and not answered:
        return "fail", "FAIL: the target never answered"
    if m.get("aborted"):
        return "fail", "FAIL: the run stopped itself (%s)" % m["aborted"]
    if failed:
        return "fail", "FAIL: %d of %d thresholds" % (len(failed), len(m["thresholds"]))
    if m["interrupted"]:
        return "fail", "FAIL: interrupted before its end"
    if not m["thresholds"]:
        return "pass", "PASS (no thresholds)"
    return "pass", "PASS: %d of %d thresholds" % (len(m["thresholds"]), len(m["thresholds"]))


def _when(ts):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "–"


def _colours(names, fixed=None):
    fixed = fixed or {}
    out = {}
    i = 0
    for n in names:
        if n in fixed:
            out[n] = fixed[n]
        else:
            out[n] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def _status_colour(status):
    s = str(status)
    if s == "200" or s == "1":
        return "#009E73"
    if s in ("449", "140", "142", "143", "144"):
        return "#56B4E9"
    if s.startswith("5") or s in ("timeout", "error"):
        return "#B2182B"
    if s.startswith("4") or s.startswith("3"):
        return "#E69F00"
    return None


def _header(m):
    cls, verdict = _verdict(m)
    facts = [("Scenario", m["scenario"]), ("Target", m["target"]), ("Seed", m["seed"])]
    if m.get("versions"):
        v = m["versions"]
        facts.append(("EAS versions", ", ".join("%s × %s" % (k, n) for k, n in v.items()) if isinstance(v, dict) else v))
    facts.append(("easload", m.get("easload_version") or __version__))
    facts += [("Started", _when(m["started"])), ("Ended", _when(m["started"] + m["elapsed_s"])),
              ("Duration", "%.1f s" % m["elapsed_s"]), ("Devices", m["devices_total"] or sum(m["devices"].values())),
              ("Requests", "%s (%s/s)" % (_fmt(m["requests"]), _fmt(m["requests_per_s"]))),
              ("Errors", _fmt(m["errors"]))]
    if m["shards"] > 1:
        facts.append(("Merged from", "%d results" % m["shards"]))
    dl = "".join("<div><dt>%s</dt><dd>%s</dd></div>" % (esc(k), esc(v)) for k, v in facts)
    rows = []
    for t in m["thresholds"]:
        metric, op, limit = split_threshold(t.get("threshold")) or (t.get("threshold"), "", "")
        value = t.get("value")
        ok = t.get("passed")
        rows.append('<tr class="%s" data-key="%s"><th scope="row"><code>%s</code></th><td class="num">%s</td>'
                    '<td class="op">%s</td><td class="num">%s</td><td class="verdict">%s</td></tr>'
                    % ("pass" if ok else "fail", esc(t.get("threshold")), esc(metric),
                       "no data" if value is None else esc("%g" % value), esc(op), esc(limit),
                       "✔ pass" if ok else "✘ FAIL"))
    thresholds = ('<table data-table="thresholds" class="thresholds"><caption>Thresholds%s</caption><thead><tr>'
                  '<th scope="col">metric</th><th scope="col" class="num">value</th><th scope="col">op</th>'
                  '<th scope="col" class="num">limit</th><th scope="col">verdict</th></tr></thead><tbody>%s</tbody>'
                  '</table>' % (" (evaluated again on the merged results)" if m["shards"] > 1 else "", "".join(rows))
                  if rows else '<p class="note">This scenario sets no thresholds.</p>')
    events = ""
    if m["events"]:
        events = '<ol class="events-list">%s</ol>' % "".join(
            '<li><span class="badge">%d</span> at %.1f s: <b>%s</b> — %s</li>'
            % (n, e["at_s"], esc(e["action"]), esc(e["result"])) for n, e in enumerate(m["events"], 1))
    interrupted = '<p class="warn">The run was interrupted before its end.</p>' if m["interrupted"] else ""
    return ('<header><h1>easload report: <span class="scenario">%s</span></h1>'
            '<p class="verdict %s" role="status">%s</p>%s<dl class="facts">%s</dl>%s'
            '<h2 class="small">Events</h2>%s</header>'
            % (esc(m["scenario"]), cls, esc(verdict), interrupted, dl, thresholds,
               events or '<p class="note">No scheduled events.</p>'))




_SECTIONS = (
    ("throughput", "Throughput", ""),
    ("latency", "Latency over time",
     "Percentiles of each interval (%s s) from its HDR histogram; logarithmic scale when the values span more "
     "than a decade."),
    ("ping", "Ping (held by the server up to the heartbeat)",
     "Ping is apart: the server holds it on purpose for the heartbeat, so its latency is not a response time."),
    ("load", "Load shape: device starts and schedule lag", ""),
    ("devices", "Devices, provisioning and re-provisioning", ""),
    ("statuses", "Errors and statuses by command", ""),
    ("mail", "Mail", "What the users did with mail, and the push latency of the run's messages: from the sender's "
     "submission to the Sync that returned the message to a recipient's device (HDR histograms, merged exactly)."),
    ("tasks", "Tasks of the user-day",
     "The tasks the simulated day planned, achieved, failed and started late (more than 100 ms after their planned "
     "time), and their latency from the planned time (open model: a late start counts; HDR histograms, merged "
     "exactly)."),
)


def _toolbar(m):
    hint = ('<span class="hint">Every chart: hover for values, drag across to zoom all charts in time, '
            'double-click to zoom out, click a legend entry to hide or show its line. Numbered markers are the '
            'scenario\'s events.</span>')
    if m["shards"] <= 1:
        return '<div class="toolbar">%s</div>' % hint
    options = ['<option value="0">the whole run (%d results merged)</option>' % m["shards"]]
    for i, s in enumerate(m["shard_info"], 1):
        options.append('<option value="%d">result %d: %s, %s devices, %s requests</option>'
                       % (i, i, esc(s["target"]), esc(_fmt(s["devices_total"])), esc(_fmt(s["requests"]))))
    return ('<div class="toolbar"><label for="view">Charts of</label> <select id="view">%s</select> %s</div>'
            % ("".join(options), hint))


def _sections(m, charts):
    pts = m["points"]
    figs = {}
    for key, sec, title, note, spec in charts:
        figs.setdefault(sec, []).append(_figure(key, title, note, spec, pts))
    out = ['<noscript><p class="warn">The charts are drawn by the report\'s own script (uPlot, inlined): allow '
           'JavaScript for this file to see them. The tables below need no script.</p></noscript>', _toolbar(m)]
    mail = _mail_tables(m)
    if mail and "mail" not in figs:
        figs["mail"] = []
    tasks = _tasks_tables(m)
    if tasks and "tasks" not in figs:
        figs["tasks"] = []
    for sec, heading, intro in _SECTIONS:
        if sec not in figs:
            if sec != "latency":
                continue
            figs[sec] = ['<p class="nodata">No request in this run.</p>']
        if "%s" in intro:
            intro = intro % _fmt(m["interval_s"])
        out.append('<section id="%s"><h2>%s</h2>%s<div class="grid">%s</div>'
                   % (sec, esc(heading), '<p class="note">%s</p>' % esc(intro) if intro else "", "".join(figs[sec])))
        if sec == "statuses":
            out.append(_errors_table(m))
        if sec == "mail":
            out.append(mail)
        if sec == "tasks":
            out.append(tasks)
        out.append("</section>")
    if m["shards"] > 1:
        out.append(_shards(m))
    if m.get("comparison"):
        out.append(_comparison(m["comparison"]))
    out.append(_summary_tables(m))
    return "".join(out)


def _comparison(result):
    """``easload report --baseline``: the comparison of loadgen/results/compare.py, as a table."""
    from loadgen.results import compare

    n = len(result["regressions"])
    notes = "".join('<p class="warn">%s</p>' % esc(note) for note in result["notes"])
    return ('<section id="comparison"><h2>Compared with the baseline</h2><p class="note">Baseline %s; %s</p>%s%s'
            '</section>' % (esc(result["baseline"]), esc("%d regression%s beyond the tolerances" % (n, "" if n == 1
                                                                                              else "s")),
                            notes, _table("comparison", "Change per command and metric (latency ms, error rate, "
                                          "requests/s)", compare.HEADERS, compare.table_rows(result), numeric_from=2)))


def _mail_tables(m):
    """The Mail section's tables ("" when the run had no mail): events by group, push latency by kind."""
    mail = m.get("mail") or {}
    events = mail.get("events") or {}
    push = mail.get("push_latency") or {}
    if not any(events.values()) and not push:
        return ""
    rows = [(what, group, events[event]) for group, named in MAIL_GROUPS for event, what in named
            if events.get(event)]
    tables = [_table("mail", "Mail events", ("event", "group", "count"), rows, numeric_from=2)]
    lat = [(kind, p.get("count", 0), "%.3f" % (p.get("p50_ms", 0) / 1000), "%.3f" % (p.get("p90_ms", 0) / 1000),
            "%.3f" % (p.get("p99_ms", 0) / 1000), "%.3f" % (p.get("max_ms", 0) / 1000))
           for kind, p in sorted(push.items(), key=lambda kv: PUSH_LABELS.index(kv[0])
                                 if kv[0] in PUSH_LABELS else len(PUSH_LABELS))]
    tables.append(_table("push_latency", "Push latency by how the recipient was addressed (s)",
                         ("recipient", "count", "p50", "p90", "p99", "max"), lat))
    return '<div class="tables">%s</div>' % "".join(t for t in tables if t)


def _tasks_tables(m):
    """The Tasks section's table ("" without a workload): per type and over all, the queue's peak."""
    tasks = m.get("tasks") or {}
    by_type = tasks.get("by_type") or {}
    if not by_type:
        return ""

    def row(name, r):
        lat = r.get("latency") or {}
        ratio = r.get("achieved_ratio")
        return (name, r.get("planned", 0), r.get("achieved", 0), r.get("failed", 0), r.get("late", 0),
                r.get("skipped", 0), r.get("unstarted", 0), "–" if ratio is None else "%.3f" % ratio,
                *("–" if k not in lat else "%.3f" % (lat[k] / 1000) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")))

    total = tasks.get("total") or {}
    rows = [row(name, r) for name, r in by_type.items()] + [row("all", total)]
    table = _table("tasks", "Tasks by type (latency in s from the planned time); queued behind a busy device: "
                   "peak %s%s" % ("at most " if total.get("queued_peak_bound") else "",
                                  _fmt(total.get("queued_peak", 0))),
                   ("task", "planned", "achieved", "failed", "late", "skipped", "unstarted", "achieved/planned", "p50",
                    "p90", "p99", "max"), rows)
    return '<div class="tables">%s</div>' % table


def _errors_table(m):
    rows = []
    per_cmd = {}
    for k, n in m["by_command_outcome"].items():
        c, o = _split(k)
        per_cmd.setdefault(c, Counter())[o] += n
    for c, outs in sorted(per_cmd.items()):
        total = sum(outs.values())
        errors = sum(n for o, n in outs.items() if o not in OK_OUTCOMES)
        rows.append((c, total, errors, "%.2f %%" % (100.0 * errors / total) if total else "–",
                     ", ".join("%s %s" % (o, _fmt(n)) for o, n in sorted(outs.items()))))
    return '<div class="tables">%s</div>' % _table(
        "errors", "Errors by command (errors: outcomes other than %s)" % ", ".join(OK_OUTCOMES),
        ("command", "requests", "errors", "error rate", "outcomes"), rows)


def _shards(m):
    rows = []
    for i, s in enumerate(m["shard_info"], 1):
        rows.append(("result %d" % i, s["target"], _when(s["started"]), "%.1f s" % (s["elapsed_s"] or 0),
                     s["devices_total"] if s["devices_total"] is not None else "–", s["requests"],
                     s["requests_per_s"], s["errors"], s["thresholds_failed"], "yes" if s["interrupted"] else "no"))
    table = _table("shards", "Each result as it was run (thresholds as each judged itself)",
                   ("result", "target", "started", "duration", "devices", "requests", "req/s", "errors",
                    "thresholds failed", "interrupted"), rows, numeric_from=4)
    lat_rows = [("result %d" % i, c, p.get("count", 0), "%.1f" % p.get("p50_ms", 0), "%.1f" % p.get("p90_ms", 0),
                 "%.1f" % p.get("p99_ms", 0), "%.1f" % p.get("max_ms", 0))
                for i, s in enumerate(m["shard_info"], 1) for c, p in sorted(s["latency"].items())]
    lat = _table("shard_latency", "Latency by result and command (ms)",
                 ("result", "command", "count", "p50", "p90", "p99", "max"), lat_rows, numeric_from=2)
    chart = _figure("by_result", "Requests per second by result", "", _by_result_chart(m), m["points"])
    return ('<section id="shards"><h2>Per result</h2><p class="note">Merged from %d results. Choose one in '
            '<a href="#view">the selector above the charts</a> to draw every chart for it alone.</p>'
            '<div class="grid">%s</div><div class="tables">%s%s</div></section>'
            % (len(m["shard_info"]), chart, table, lat))


def _data(m, charts, pal):
    """Everything the page's script draws, as one JSON document."""
    pts = m["points"]
    times = [p["t"] for p in pts]
    tmax = max([m["elapsed_s"]] + times) if times else m["elapsed_s"]
    views = [{"n": "the whole run", "c": {k: spec for k, _s, _t, _n, spec in charts if spec}}]
    for i, (spts, info) in enumerate(zip(m["shard_points"], m["shard_info"]), 1):
        views.append({"n": "result %d" % i, "c": {k: spec for k, _s, _t, _n, spec in _charts(spts, info, pal) if spec}})
    glob = {}
    if m["shards"] > 1:
        spec = _by_result_chart(m)
        if spec:
            glob["by_result"] = spec
    return {"t": times, "dt": [round(p["dt"], 3) for p in pts], "tmax": round(tmax, 3),
            "ev": [{"t": e["at_s"], "a": str(e["action"]), "r": str(e["result"])} for e in m["events"]],
            "views": views, "g": glob}


def _summary_tables(m):
    out = ['<section id="summary"><h2>Summary</h2>',
           '<p class="totals" data-table="totals">%s devices, <span data-key="requests">%s</span> requests in '
           '<span data-key="elapsed_s">%.1f</span> s (<span data-key="requests_per_s">%.1f</span> req/s), '
           '<span data-key="errors">%s</span> errors, %.1f KiB sent, %.1f KiB received</p>'
           % (esc(_fmt(m["devices_total"] or sum(m["devices"].values()))), m["requests"], m["elapsed_s"],
              m["requests_per_s"], m["errors"], m["bytes_sent"] / 1024, m["bytes_received"] / 1024),
           '<div class="tables">']
    t = []
    t.append(_table("requests", "Requests by command and HTTP status", ("command", "status", "count"),
                    [(*_split(k), n) for k, n in sorted(m["by_command_status"].items())], numeric_from=2))
    t.append(_table("latency", "Latency by command (ms; Ping is held by the server on purpose)",
                    ("command", "count", "p50", "p90", "p99", "max"),
                    [(c, p["count"], "%.1f" % p["p50_ms"], "%.1f" % p["p90_ms"], "%.1f" % p["p99_ms"],
                      "%.1f" % p.get("max_ms", 0.0)) for c, p in sorted(m["latency"].items())]))
    t.append(_table("devices", "Devices by final state", ("state", "devices"), sorted(m["devices"].items())))
    t.append(_table("provisionings", "Provisioning outcomes", ("result", "ack status", "count"),
                    [(*k.rsplit(" ack=", 1), n) if " ack=" in k else (k, "", n)
                     for k, n in sorted(m["provisionings"].items())], numeric_from=2)
             or '<p class="note">No provisioning.</p>')
    t.append(_table("reprovisions", "Re-provisioning triggers", ("trigger", "count"), sorted(m["reprovisions"].items())))
    t.append(_table("eas_statuses", "EAS statuses by command", ("command", "status", "count"),
                    [(*_split(k), n) for k, n in sorted(m["eas_statuses"].items())], numeric_from=2))
    t.append(_table("throttled", "Throttling by reason", ("reason", "count"), sorted(m["throttled"].items())))
    t.append(_table("malformed", "Malformed responses", ("command", "count"), sorted(m["malformed_responses"].items())))
    names = {"1": "success", "2": "partial success", "3": "failure", "4": "externally managed"}
    t.append(_table("compliance", "Policy compliance (acknowledgement the devices sent)", ("ack status", "devices"),
                    [("%s %s" % (k, names.get(str(k), "")), n) for k, n in sorted(m["compliance"].items())]))
    t.append(_table("unmet", "Policies the devices could not apply", ("policy", "devices"),
                    sorted(m["unmet_policies"].items())))
    t.append(_table("wipes", "Remote wipes by ack status", ("ack status", "count"), sorted(m["remote_wipes"].items())))
    t.append(_table("events", "Events", ("at (s)", "action", "result"),
                    [("%.3f" % e["at_s"], e["action"], e["result"]) for e in m["events"]], numeric_from=9))
    t.append(_table("accounting", "Accounting (sent = answered + transport errors + timeouts + cancelled at the end "
                    "+ held Pings the device interrupted for its user + re-sent on a fresh connection; not sent: "
                    "cancelled before they were written)",
                    ("command", "sent", "answered", "transport errors", "timeouts", "cancelled", "interrupted", "re-sent",
                     "not sent"),
                    _accounting(m)))
    out += [x for x in t if x]
    out.append("</div></section>")
    return "".join(out)


def _license_comment():
    text = _asset("LICENSE.uPlot").replace("*/", "* /")
    return "/*! uPlot %s (https://github.com/leeoniya/uPlot), inlined unchanged below.\n%s*/\n" % (UPLOT_VERSION, text)


def render(summaries, baseline=None):
    """One self-contained HTML document from one summary dict or several of the same run;
    ``baseline``: a loadgen/results/compare.py Side to compare the run with."""
    with paused_gc():
        m = merge(summaries)
        if baseline is not None:
            from loadgen.results import compare

            m["comparison"] = compare.compare(baseline, compare.Side(summaries, "this run", shards=False))
        pal = _palette(m)
        charts = _charts(m["points"], m, pal)
        data = _data(m, charts, pal)
    title = "easload report: %s" % m["scenario"]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            '<meta name="generator" content="easload %s">'
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            'style-src \'unsafe-inline\'; script-src \'unsafe-inline\'; img-src data:">'
            '<title>%s</title><style>%s\n%s</style></head><body>%s<main>%s</main>'
            '<footer>Rendered by easload %s on %s from %d result%s; intervals of %s s. '
            'The file is self-contained and works offline; charts drawn with uPlot %s (MIT licence).</footer>'
            '<script type="application/json" id="report-data">%s</script>'
            '<script>%s%s</script><script>%s</script></body></html>\n'
            % (esc(__version__), esc(title), _asset("uPlot.min.css"), _asset("report.css"), _header(m), _sections(m, charts),
               esc(__version__), _when(time.time()), m["shards"], "" if m["shards"] == 1 else "s",
               _fmt(m["interval_s"]), UPLOT_VERSION, _json_for_html(data), _license_comment(),
               _asset("uPlot.iife.min.js"), _asset("report.js")))


def write(summaries, path, baseline=None):
    """Render and write the report (UTF-8); returns its size in bytes."""
    data = render(summaries, baseline).encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


__all__ = ["render", "write", "merge"]
