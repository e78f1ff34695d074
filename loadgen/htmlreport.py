"""The HTML report: one self-contained file (inline CSS, inline SVG charts, a little inline JS).

``render(summaries)`` takes one summary.json (as a dict) or several of the same scenario and
seed (shards or machines of one distributed run) and returns one HTML document that needs no
network: an operator opens it on an air-gapped jump host or from a CI job page.

Several summaries are merged: counts are added, latency percentiles come from the merged HDR
histograms (overall and per interval of the time series, so percentiles over time stay
exact), time series are aligned on wall-clock time, and thresholds are evaluated again on the
merged numbers.  Long runs are drawn with at most ``MAX_POINTS`` points per line: intervals are
combined (counts added, HDR histograms merged), never sampled.

The charts are SVG drawn here in Python: they show in any browser, print, and need no script.
The inline script only adds a hover read-out (values at the time under the pointer) and marks
every chart it finds drawn (``data-drawn``), which the browser test reads.

Every string that comes from the data (scenario, target, command and state names, event
results, threshold texts) is escaped: it comes from servers and users.
"""

import html
import json
import math
import re
import time
from collections import Counter

from hdrh.histogram import HdrHistogram

from loadgen import __version__

MAX_POINTS = 600

# Okabe-Ito, then a few more: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D31", "#555555",
           "#B2182B", "#7B3294", "#1B7837", "#F0A30A")
PCT_COLOURS = {"p50": "#0072B2", "p90": "#E69F00", "p99": "#D55E00"}
STATE_COLOURS = {"provisioned": "#009E73", "wiped": "#CC79A7", "refused": "#D55E00", "unprovisioned": "#999999",
                 "blocked": "#B2182B", "quarantined": "#E69F00", "new": "#56B4E9"}

_COUNT_FIELDS = ("by_command_status", "by_command_outcome", "eas_statuses", "devices", "provisionings",
                 "reprovisions", "remote_wipes", "compliance", "unmet_policies", "throttled",
                 "malformed_responses", "cancelled_in_flight")
_SUM_FIELDS = ("requests", "errors", "bytes_sent", "bytes_received", "reenrolments", "devices_total")
_SERIES_COUNTS = ("requests", "provisionings", "reprovisions", "throttled", "wipes")
_OK_OUTCOMES = ("ok", "reprovision")
_THRESHOLD_RE = re.compile(r"^\s*(\S+)\s*(<=|>=|==|<|>)\s*(\S+)\s*$")
_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b, "==": lambda a, b: a == b}


def esc(value):
    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------- merging


def _check_same_run(summaries):
    if not summaries:
        raise ValueError("no result to report on")
    for i, s in enumerate(summaries):
        if not isinstance(s, dict) or "scenario" not in s:
            raise ValueError("result %d is not an easload summary (no 'scenario')" % (i + 1))
    first = summaries[0]
    for i, s in enumerate(summaries[1:], 2):
        if s.get("scenario") != first.get("scenario"):
            raise ValueError("cannot merge results of different scenarios: result 1 is %r, result %d is %r"
                             % (first.get("scenario"), i, s.get("scenario")))
        if s.get("seed") != first.get("seed"):
            raise ValueError("cannot merge results of different seeds (scenario %r): result 1 has seed %r, "
                             "result %d has seed %r" % (first.get("scenario"), first.get("seed"), i, s.get("seed")))


def _percentiles(hist):
    return {"count": hist.get_total_count(), "p50_ms": hist.get_value_at_percentile(50) / 1000,
            "p90_ms": hist.get_value_at_percentile(90) / 1000, "p99_ms": hist.get_value_at_percentile(99) / 1000,
            "max_ms": hist.get_max_value() / 1000}


def _merge_hdr(encoded_list):
    merged = None
    for encoded in encoded_list:
        hist = HdrHistogram.decode(encoded)
        if merged is None:
            merged = hist
        else:
            merged.add(hist)
    return merged


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


def _threshold_value(m, metric, hists):
    """The merged run's value of a threshold metric (as loadgen.report.threshold_value), or None."""
    group, _, name = metric.partition(".")
    if group == "errors":
        if name == "rate":
            return m["errors"] / m["requests"] if m["requests"] else None
        if name == "count":
            return float(m["errors"])
    elif group == "requests":
        if name == "rate":
            return m["requests"] / max(1e-9, m["elapsed_s"])
        if name == "count":
            return float(m["requests"])
    elif group == "devices":
        total = sum(m["devices"].values())
        return m["devices"].get(name, 0) / total if total else None
    elif group == "provisionings":
        return float(sum(n for k, n in m["provisionings"].items() if k.rsplit(" ack=", 1)[0] == name))
    elif group == "reprovisions":
        return float(m["reprovisions"].get(name, 0))
    elif group == "throttled":
        return float(m["throttled"].get(name, 0))
    if group in m["latency"]:
        if name == "count":
            return float(m["latency"][group]["count"])
        if name == "errors":
            return float(sum(n for k, n in m["by_command_outcome"].items()
                             if k.split(" ", 1)[0] == group and k.split(" ", 1)[1] not in _OK_OUTCOMES))
        hist = hists.get(group)
        if hist is not None:
            if name == "max":
                return hist.get_max_value() / 1e6
            if name.startswith("p"):
                try:
                    return hist.get_value_at_percentile(float(name[1:])) / 1e6
                except ValueError:
                    return None
        elif name == "max":
            return m["latency"][group]["max_ms"] / 1000
        elif name in ("p50", "p90", "p99"):
            return m["latency"][group][name + "_ms"] / 1000
    return None


def merge(summaries):
    """One summary from several of the same scenario and seed (a copy for a single one), with
    the time series aligned and combined into at most MAX_POINTS intervals: ``points``."""
    if isinstance(summaries, dict):
        summaries = [summaries]
    summaries = list(summaries)
    _check_same_run(summaries)
    first = summaries[0]
    start0 = min(s.get("started") or 0.0 for s in summaries)
    end = max((s.get("started") or 0.0) + (s.get("elapsed_s") or 0.0) for s in summaries)
    m = {"scenario": first.get("scenario"), "seed": first.get("seed"), "started": start0,
         "elapsed_s": round(end - start0, 3), "shards": len(summaries)}
    targets = []
    for s in summaries:
        if s.get("target") not in targets:
            targets.append(s.get("target"))
    m["target"] = targets[0] if len(targets) == 1 else ", ".join(str(t) for t in targets)
    for key in ("easload_version", "versions", "mode"):
        if first.get(key) is not None:
            m[key] = first[key]
    for key in _SUM_FIELDS:
        m[key] = sum(s.get(key) or 0 for s in summaries)
    m["requests_per_s"] = round(m["requests"] / m["elapsed_s"], 1) if m["elapsed_s"] > 0 else 0.0
    for key in _COUNT_FIELDS:
        total = Counter()
        for s in summaries:
            total.update(s.get(key) or {})
        m[key] = dict(sorted(total.items()))
    m["interrupted"] = any(s.get("interrupted") for s in summaries)
    hists = {}
    if len(summaries) == 1:
        m["latency"] = dict(first.get("latency") or {})
        m["histograms"] = dict(first.get("histograms") or {})
    else:
        commands = sorted({c for s in summaries for c in (s.get("histograms") or {})})
        for c in commands:
            hists[c] = _merge_hdr([s["histograms"][c] for s in summaries if c in (s.get("histograms") or {})])
        m["latency"] = {c: _percentiles(h) for c, h in hists.items()}
        m["histograms"] = {c: h.encode().decode("ascii") for c, h in hists.items()}
    # events: relative to the merged start; the same event reported by several shards once
    events = []
    seen = set()
    for s in summaries:
        off = (s.get("started") or start0) - start0
        for e in s.get("events") or ():
            at = round((e.get("at_s") or 0.0) + off, 3)
            key = (e.get("action"), e.get("result"), round(at))
            if key in seen:
                continue
            seen.add(key)
            events.append({"at_s": at, "action": e.get("action"), "result": e.get("result")})
    m["events"] = sorted(events, key=lambda e: e["at_s"])
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
            match = _THRESHOLD_RE.match(str(text))
            value, passed = None, False
            if match:
                metric, op, limit = match.groups()
                try:
                    value = _threshold_value(m, metric, hists)
                    passed = value is not None and _OPS[op](value, float(limit))
                except (ValueError, KeyError):
                    value, passed = None, False
            m["thresholds"].append({"threshold": text, "value": value, "passed": passed})
    grid = _grid(summaries, start0)
    m["interval_s"] = round(grid[0] * grid[1], 3)
    m["points"] = _align(summaries, start0, grid)
    m["shard_points"] = [_align([s], start0, grid) for s in summaries] if len(summaries) > 1 else []
    m["shard_info"] = [{"target": s.get("target"), "started": s.get("started"), "elapsed_s": s.get("elapsed_s"),
                        "requests": s.get("requests") or 0, "errors": s.get("errors") or 0,
                        "requests_per_s": s.get("requests_per_s") or 0.0, "devices_total": s.get("devices_total"),
                        "interrupted": bool(s.get("interrupted")),
                        "thresholds_failed": sum(1 for t in s.get("thresholds") or () if not t.get("passed")),
                        "latency": s.get("latency") or {}} for s in summaries]
    return m


def _grid(summaries, start0):
    """(interval, combining factor, number of points) of the merged time axis."""
    base = _interval(summaries)
    last = 0
    for s in summaries:
        shift = int(round(((s.get("started") or start0) - start0) / base))
        last = max(last, shift + len(s.get("series") or ()))
    return base, max(1, math.ceil(last / MAX_POINTS)), last


def _align(summaries, start0, grid):
    """The series of several summaries on one time axis, at most MAX_POINTS points.

    A shard's i-th sample is the i-th interval of its run (as loadgen.workers.merge_series has
    it), shifted by the shard's later start; ``factor`` consecutive intervals are combined.  Each
    point has its time ``t`` (end of its interval(s) into the merged run) and length ``dt``."""
    base, factor, last = grid
    n = math.ceil(last / factor)
    buckets = [None] * n
    for si, s in enumerate(summaries):
        off = (s.get("started") or start0) - start0
        shift = int(round(off / base))
        for i, p in enumerate(s.get("series") or ()):
            b_i = (shift + i) // factor
            b = buckets[b_i]
            if b is None:
                b = buckets[b_i] = {"counts": {name: Counter() for name in _SERIES_COUNTS}, "devices": {},
                                    "latency": {}, "t": 0.0}
            b["t"] = max(b["t"], off + p["t"])
            for name in _SERIES_COUNTS:
                b["counts"][name].update(p.get(name) or {})
            b["devices"][si] = p.get("devices") or {}  # a gauge: the last of each shard in the interval
            for cmd, lat in (p.get("latency") or {}).items():
                b["latency"].setdefault(cmd, []).append(lat)
    width = base * factor
    points = []
    prev = 0.0
    for i, b in enumerate(buckets):
        t = b["t"] if b is not None else prev + width
        if i == 0 and b is not None:
            prev = max(0.0, t - width)
        point = {"t": round(t, 3), "dt": max(t - prev, width / 10)}
        prev = t
        if b is None:
            point.update({name: {} for name in _SERIES_COUNTS})
            point["devices"] = None
            point["latency"] = {}
        else:
            for name in _SERIES_COUNTS:
                point[name] = dict(b["counts"][name])
            devices = Counter()
            for d in b["devices"].values():
                devices.update(d)
            point["devices"] = dict(devices)
            latency = {}
            for cmd, lats in b["latency"].items():
                if len(lats) == 1 or not all("hdr" in x for x in lats):
                    x = lats[-1] if len(lats) == 1 else max(lats, key=lambda v: v.get("count", 0))
                    latency[cmd] = {"count": sum(v.get("count", 0) for v in lats), "p50_ms": x.get("p50_ms"),
                                    "p90_ms": x.get("p90_ms"), "p99_ms": x.get("p99_ms")}
                else:
                    latency[cmd] = _percentiles(_merge_hdr([x["hdr"] for x in lats]))
            point["latency"] = latency
        points.append(point)
    return points


# ---------------------------------------------------------------- SVG charts

W, H = 760, 250
ML, MR, MT, MB = 58, 14, 22, 34
PW, PH = W - ML - MR, H - MT - MB


def _num(v):
    return ("%.1f" % v).rstrip("0").rstrip(".")


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


def _nice_ticks(vmax, n=5):
    if vmax <= 0:
        return 1.0, [0, 1]
    raw = vmax / n
    mag = 10 ** math.floor(math.log10(raw))
    for f in (1, 2, 2.5, 5, 10):
        step = f * mag
        if step >= raw:
            break
    top = math.ceil(vmax / step - 1e-9) * step
    ticks = []
    v = 0.0
    while v <= top + step / 2:
        ticks.append(round(v, 10))
        v += step
    return top, ticks


def _time_ticks(tmax):
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400):
        if tmax / step <= 9:
            break
    ticks = []
    v = 0
    while v <= tmax + 1e-9:
        ticks.append(v)
        v += step
    return ticks


def _tlabel(s):
    s = int(round(s))
    if s < 60:
        return "%ds" % s
    if s < 3600:
        return "%dm" % (s // 60) if s % 60 == 0 else "%d:%02d" % (s // 60, s % 60)
    return "%dh%02d" % (s // 3600, (s % 3600) // 60)


class _Axis:
    def __init__(self, tmax, ymax, log=False, ymin=None):
        self.tmax = max(tmax, 1e-9)
        self.log = log
        if log:
            lo = ymin if ymin and ymin > 0 else 0.01
            self.lo = 10 ** math.floor(math.log10(lo))
            self.hi = 10 ** math.ceil(math.log10(max(ymax, self.lo * 10)))
            self.ticks = []
            v = self.lo
            while v <= self.hi * 1.0001:
                self.ticks.append(v)
                v *= 10
        else:
            self.hi, self.ticks = _nice_ticks(ymax)
            self.lo = 0.0

    def x(self, t):
        return ML + PW * t / self.tmax

    def y(self, v):
        if self.log:
            v = max(v, self.lo)
            f = (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        else:
            f = v / self.hi if self.hi else 0
        return MT + PH * (1 - f)


def _frame(axis, unit):
    out = ['<g class="axes">']
    for v in axis.ticks:
        y = axis.y(v)
        out.append('<line class="grid" x1="%d" x2="%d" y1="%s" y2="%s"/>' % (ML, ML + PW, _num(y), _num(y)))
        out.append('<text class="tick" x="%d" y="%s" text-anchor="end">%s</text>' % (ML - 6, _num(y + 4), _fmt(v)))
    for t in _time_ticks(axis.tmax):
        x = axis.x(t)
        out.append('<line class="tickmark" x1="%s" x2="%s" y1="%d" y2="%d"/>' % (_num(x), _num(x), MT + PH, MT + PH + 4))
        out.append('<text class="tick" x="%s" y="%d" text-anchor="middle">%s</text>' % (_num(x), MT + PH + 17, _tlabel(t)))
    out.append('<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>' % (ML, ML + PW, MT + PH, MT + PH))
    out.append('<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>' % (ML, ML, MT, MT + PH))
    out.append('<text class="unit" x="%d" y="%d">%s</text>' % (ML - 50, MT - 8, esc(unit)))
    out.append('<text class="unit" x="%d" y="%d" text-anchor="end">time into the run</text>' % (ML + PW, H - 2))
    out.append("</g>")
    return out


def _event_marks(axis, events):
    out = ['<g class="events">']
    for n, e in enumerate(events, 1):
        if e["at_s"] > axis.tmax * 1.001:
            continue
        x = _num(axis.x(e["at_s"]))
        label = "event %d at %.1f s: %s: %s" % (n, e["at_s"], e["action"], e["result"])
        out.append('<g class="event-marker" data-action="%s"><title>%s</title>'
                   '<line x1="%s" x2="%s" y1="%d" y2="%d"/><rect x="%s" y="%d" width="16" height="14" rx="3"/>'
                   '<text x="%s" y="%d" text-anchor="middle">%d</text></g>'
                   % (esc(e["action"]), esc(label), x, x, MT - 4, MT + PH, _num(float(x) - 8), MT - 18,
                      x, MT - 7, n))
    out.append("</g>")
    return out


def _svg_open(title, desc, cid):
    return ['<svg class="plot" id="%s" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-t %s-d" '
            'preserveAspectRatio="xMidYMid meet">' % (cid, W, H, cid, cid),
            '<title id="%s-t">%s</title><desc id="%s-d">%s</desc>' % (cid, esc(title), cid, esc(desc))]


def _legend(items):
    if not items:
        return ""
    return '<ul class="legend">%s</ul>' % "".join(
        '<li><span class="sw%s" style="background:%s"></span>%s</li>'
        % (" dash" if dashed else "", colour, esc(name)) for name, colour, dashed in items)


class _Ids:
    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1
        return "c%d" % self.n


def _no_data(title, note):
    return ('<figure class="chart empty"><figcaption>%s</figcaption><p class="nodata">%s</p></figure>'
            % (esc(title), esc(note)))


def _json_for_html(obj):
    return json.dumps(obj, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("&", "\\u0026")


def _time_chart(ids, title, unit, times, series, events, tmax, kind="line", log=False, note=""):
    """series: [(name, colour, [value or None per time], dashed)]. kind: line, stack (areas) or bars."""
    series = [s for s in series if any(v for v in s[2] if v)]
    if not series or not times:
        return _no_data(title, note or "nothing to draw: no data of this kind in the run")
    cid = ids()
    if kind in ("stack", "bars"):
        ymax = max(sum(s[2][i] or 0 for s in series) for i in range(len(times)))
    else:
        ymax = max(v for s in series for v in s[2] if v is not None)
    ymin = min((v for s in series for v in s[2] if v), default=None)
    axis = _Axis(tmax, ymax, log=log, ymin=ymin)
    peak = max(series, key=lambda s: max(v or 0 for v in s[2]))
    pv = max(peak[2], key=lambda v: v or 0)
    desc = "%s over time, %s. Highest: %s %s %s at %s." % (
        title, ", ".join(s[0] for s in series), peak[0], _fmt(pv), unit, _tlabel(times[peak[2].index(pv)]))
    if events:
        desc += " Events marked: %s." % "; ".join("%d %s at %.0f s" % (n, e["action"], e["at_s"])
                                                  for n, e in enumerate(events, 1))
    out = _svg_open(title, desc, cid)
    out += _frame(axis, unit)
    out.append('<g class="data">')
    if kind == "line":
        for name, colour, values, dashed in series:
            d = []
            pen = False
            for t, v in zip(times, values):
                if v is None:
                    pen = False
                    continue
                d.append("%s%s,%s" % ("L" if pen else "M", _num(axis.x(t)), _num(axis.y(v))))
                pen = True
            out.append('<path class="mark line%s" stroke="%s" d="%s"><title>%s</title></path>'
                       % (" dashed" if dashed else "", colour, "".join(d), esc(name)))
            for i, (t, v) in enumerate(zip(times, values)):
                if v is None:
                    continue
                alone = (i == 0 or values[i - 1] is None) and (i == len(values) - 1 or values[i + 1] is None)
                if alone or len(times) <= 60:  # a point with no neighbour draws no line: a dot shows it
                    out.append('<circle class="%s" cx="%s" cy="%s" r="%s" fill="%s"/>'
                               % ("mark dot" if alone else "dot", _num(axis.x(t)), _num(axis.y(v)),
                                  "3" if alone else "2", colour))
    elif kind == "stack":
        base = [0.0] * len(times)
        for name, colour, values, _d in series:
            top = [b + (v or 0) for b, v in zip(base, values)]
            pts = []
            for i, t in enumerate(times):
                t0 = times[i - 1] if i else max(0.0, t - (times[1] - times[0] if len(times) > 1 else t))
                pts.append((t0, top[i]))
                pts.append((t, top[i]))
            bottom = []
            for i, t in enumerate(times):
                t0 = times[i - 1] if i else max(0.0, t - (times[1] - times[0] if len(times) > 1 else t))
                bottom.append((t0, base[i]))
                bottom.append((t, base[i]))
            poly = pts + bottom[::-1]
            out.append('<path class="mark area" fill="%s" d="M%sZ"><title>%s</title></path>'
                       % (colour, "L".join("%s,%s" % (_num(axis.x(t)), _num(axis.y(v))) for t, v in poly), esc(name)))
            base = top
    else:  # bars, stacked
        base = [0.0] * len(times)
        for name, colour, values, _d in series:
            rects = []
            for i, t in enumerate(times):
                v = values[i] or 0
                if not v:
                    continue
                t0 = times[i - 1] if i else max(0.0, t - (times[1] - times[0] if len(times) > 1 else t))
                x0, x1 = axis.x(t0), axis.x(t)
                y0, y1 = axis.y(base[i] + v), axis.y(base[i])
                rects.append("M%s,%sh%sv%sh%sZ" % (_num(x0 + 0.5), _num(y1), _num(max(0.6, x1 - x0 - 1)),
                                                   _num(y0 - y1), _num(-max(0.6, x1 - x0 - 1))))
                base[i] += v
            out.append('<path class="mark bar" fill="%s" d="%s"><title>%s</title></path>'
                       % (colour, "".join(rects), esc(name)))
    out.append("</g>")
    out += _event_marks(axis, events)
    out.append('<line class="hover" x1="0" x2="0" y1="%d" y2="%d"/>' % (MT, MT + PH))
    out.append("</svg>")
    data = {"l": ML, "w": PW, "W": W, "tmax": axis.tmax, "unit": unit, "t": times,
            "s": [{"n": s[0], "c": s[1], "v": [None if v is None else round(v, 3) for v in s[2]]} for s in series]}
    legend = _legend([(s[0], s[1], s[3]) for s in series])
    return ('<figure class="chart timechart" data-chart="%s"><figcaption>%s</figcaption>%s%s'
            '<script type="application/json" class="chart-data">%s</script>%s</figure>'
            % (cid, esc(title), "".join(out), legend, _json_for_html(data),
               '<p class="note">%s</p>' % esc(note) if note else ""))


def _hbar_chart(ids, title, rows, colours, unit="requests"):
    """Horizontal stacked bars: rows = [(label, [(segment, n)])]."""
    rows = [(label, [(s, n) for s, n in segs if n]) for label, segs in rows]
    rows = [r for r in rows if r[1]]
    if not rows:
        return _no_data(title, "none in this run")
    cid = ids()
    bar_h, gap, left, right = 22, 8, 150, 70
    height = MT + len(rows) * (bar_h + gap) + 24
    width = W
    total_max = max(sum(n for _s, n in segs) for _l, segs in rows)
    pw = width - left - right
    desc = "; ".join("%s: %s" % (label, ", ".join("%s %s" % (s, _fmt(n)) for s, n in segs)) for label, segs in rows)
    out = ['<svg class="plot" id="%s" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-t %s-d">'
           % (cid, width, height, cid, cid),
           '<title id="%s-t">%s</title><desc id="%s-d">%s</desc>' % (cid, esc(title), cid, esc(desc)),
           '<g class="data">']
    for i, (label, segs) in enumerate(rows):
        y = MT + i * (bar_h + gap)
        out.append('<text class="rowlabel" x="%d" y="%d" text-anchor="end">%s</text>'
                   % (left - 8, y + bar_h * 0.7, esc(label)))
        x = left
        for seg, n in segs:
            w = pw * n / total_max
            out.append('<rect class="mark" x="%s" y="%d" width="%s" height="%d" fill="%s"><title>%s</title></rect>'
                       % (_num(x), y, _num(max(w, 0.8)), bar_h, colours.get(seg, "#777"),
                          esc("%s %s: %s %s" % (label, seg, _fmt(n), unit))))
            x += w
        out.append('<text class="rowvalue" x="%s" y="%d">%s</text>'
                   % (_num(x + 6), y + bar_h * 0.7, _fmt(sum(n for _s, n in segs))))
    out.append("</g></svg>")
    legend = _legend([(s, colours.get(s, "#777"), False) for s in dict.fromkeys(s for _l, segs in rows for s, _n in segs)])
    return ('<figure class="chart barchart" data-chart="%s"><figcaption>%s</figcaption>%s%s</figure>'
            % (cid, esc(title), "".join(out), legend))


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
    sent, answered, timeouts, nondigit = Counter(), Counter(), Counter(), Counter()
    for key, n in m["by_command_status"].items():
        c, status = _split(key)
        sent[c] += n
        if status.isdigit():
            answered[c] += n
        else:
            nondigit[c] += n
    for key, n in m["by_command_outcome"].items():
        c, outcome = _split(key)
        if outcome == "timeout":
            timeouts[c] += n
    for c, n in m["cancelled_in_flight"].items():
        sent[c] += n
    return [(c, sent[c], answered[c], nondigit[c] - timeouts[c], timeouts[c], m["cancelled_in_flight"].get(c, 0))
            for c in sorted(sent)]


# ---------------------------------------------------------------- the document


def _verdict(m):
    failed = [t for t in m["thresholds"] if not t.get("passed")]
    answered = sum(n for k, n in m["by_command_status"].items() if _split(k)[1].isdigit())
    if m["requests"] and not answered:
        return "fail", "FAIL: the target never answered"
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
        match = _THRESHOLD_RE.match(str(t.get("threshold")))
        metric, op, limit = match.groups() if match else (t.get("threshold"), "", "")
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


def _sections(m):
    ids = _Ids()
    pts = m["points"]
    times = [p["t"] for p in pts]
    tmax = max([m["elapsed_s"]] + times) if times else m["elapsed_s"]
    events = m["events"]
    out = []
    commands = sorted({_split(k)[0] for p in pts for k in p["requests"]} | set(m["latency"]))
    ccol = _colours(commands)

    # throughput
    out.append('<section id="throughput"><h2>Throughput</h2><div class="grid">')
    series = []
    for c in commands:
        series.append((c, ccol[c], [sum(n for k, n in p["requests"].items() if _split(k)[0] == c) / p["dt"]
                                    for p in pts], False))
    out.append(_time_chart(ids, "Requests per second by command", "req/s", times, series, events, tmax))
    outcomes = sorted({_split(k)[1] for p in pts for k in p["requests"]} - set(_OK_OUTCOMES))
    fail_series = []
    keys = sorted({k for p in pts for k in p["requests"] if _split(k)[1] not in _OK_OUTCOMES})
    kcol = _colours(keys)
    for k in keys:
        fail_series.append((k, kcol[k], [p["requests"].get(k, 0) / p["dt"] for p in pts], False))
    out.append(_time_chart(ids, "Failed requests per second by command and outcome", "req/s", times, fail_series,
                           events, tmax, note="" if outcomes else "No failed request in this run."))
    out.append("</div></section>")

    # latency
    out.append('<section id="latency"><h2>Latency over time</h2><p class="note">Percentiles of each interval '
               '(%s s) from its HDR histogram; logarithmic scale when the values span more than a decade. '
               'Ping is apart: the server holds it on purpose for the heartbeat.</p><div class="grid">'
               % _fmt(m["interval_s"]))
    lat_cmds = [c for c in commands if c != "Ping" and any(c in p["latency"] for p in pts)]
    for c in lat_cmds:
        out.append(_latency_chart(ids, c, pts, times, events, tmax))
    if not lat_cmds:
        out.append(_no_data("Latency", "no request in this run"))
    out.append("</div>")
    if any("Ping" in p["latency"] for p in pts):
        out.append('<h3>Ping (held by the server up to the heartbeat)</h3><div class="grid">')
        out.append(_latency_chart(ids, "Ping", pts, times, events, tmax))
        out.append("</div>")
    out.append("</section>")

    # devices
    out.append('<section id="devices"><h2>Devices</h2><div class="grid">')
    states = sorted({s for p in pts if p["devices"] for s in p["devices"]},
                    key=lambda s: (s != "provisioned", s))
    scol = _colours(states, STATE_COLOURS)
    dseries = [(s, scol[s], [None if p["devices"] is None else p["devices"].get(s, 0) for p in pts], False)
               for s in states]
    out.append(_time_chart(ids, "Devices by state (stacked)", "devices", times, dseries, events, tmax, kind="stack"))
    provs = sorted({k for p in pts for k in p["provisionings"]})
    pcol = _colours(provs, {k: "#009E73" for k in provs if k.startswith("provisioned ack=1")})
    out.append(_time_chart(ids, "Provisioning outcomes per interval", "provisionings", times,
                           [(k, pcol[k], [p["provisionings"].get(k, 0) for p in pts], False) for k in provs],
                           events, tmax, kind="bars"))
    trig = sorted({k for p in pts for k in p["reprovisions"]})
    tcol = _colours(trig)
    out.append(_time_chart(ids, "Re-provisioning triggers per interval", "re-provisionings", times,
                           [("trigger " + k, tcol[k], [p["reprovisions"].get(k, 0) for p in pts], False) for k in trig],
                           events, tmax, kind="bars",
                           note="144: policy changed (in-band), 449: HTTP re-provision (12.x), "
                                "140: remote wipe, 142/143: unknown or invalid policy key."))
    wipes = sorted({k for p in pts for k in p["wipes"]})
    if wipes:
        wcol = _colours(wipes)
        out.append(_time_chart(ids, "Remote wipes acknowledged per interval", "wipes", times,
                               [("ack " + k, wcol[k], [p["wipes"].get(k, 0) for p in pts], False) for k in wipes],
                               events, tmax, kind="bars"))
    thr = sorted({k for p in pts for k in p["throttled"]})
    if thr:
        thcol = _colours(thr)
        out.append(_time_chart(ids, "Throttled requests per interval by reason", "requests", times,
                               [(k, thcol[k], [p["throttled"].get(k, 0) for p in pts], False) for k in thr],
                               events, tmax, kind="bars"))
    out.append("</div></section>")

    # statuses and errors
    out.append('<section id="statuses"><h2>Errors and statuses by command</h2><div class="grid">')
    by_cmd = {}
    for k, n in m["by_command_status"].items():
        c, s = _split(k)
        by_cmd.setdefault(c, []).append((s, n))
    statuses = sorted({s for segs in by_cmd.values() for s, _n in segs})
    stcol = _colours(statuses, {s: _status_colour(s) for s in statuses if _status_colour(s)})
    out.append(_hbar_chart(ids, "HTTP status (or transport error) by command",
                           sorted(by_cmd.items()), stcol))
    eas = {}
    for k, n in m["eas_statuses"].items():
        c, s = _split(k)
        eas.setdefault(c, []).append((s, n))
    estat = sorted({s for segs in eas.values() for s, _n in segs}, key=lambda s: (len(s), s))
    ecol = _colours(estat, {s: _status_colour(s) for s in estat if _status_colour(s)})
    out.append(_hbar_chart(ids, "EAS Status by command", sorted(eas.items()), ecol, unit="responses"))
    out.append(_hbar_chart(ids, "Throttling by reason", [(r, [("throttled", n)]) for r, n in sorted(m["throttled"].items())],
                           {"throttled": "#E69F00"}))
    out.append("</div>")
    err_rows = []
    per_cmd = {}
    for k, n in m["by_command_outcome"].items():
        c, o = _split(k)
        per_cmd.setdefault(c, Counter())[o] += n
    for c, outs in sorted(per_cmd.items()):
        total = sum(outs.values())
        errors = sum(n for o, n in outs.items() if o not in _OK_OUTCOMES)
        err_rows.append((c, total, errors, "%.2f %%" % (100.0 * errors / total) if total else "–",
                         ", ".join("%s %s" % (o, _fmt(n)) for o, n in sorted(outs.items()))))
    out.append(_table("errors", "Errors by command (errors: outcomes other than ok and reprovision)",
                      ("command", "requests", "errors", "error rate", "outcomes"), err_rows))
    out.append("</section>")

    if m["shards"] > 1:
        out.append(_shards(ids, m, tmax, events, ccol))
    out.append(_summary_tables(m))
    return "".join(out)


def _latency_chart(ids, c, pts, times, events, tmax):
    vals = {q: [p["latency"][c][q + "_ms"] if c in p["latency"] and p["latency"][c].get("count") else None
                for p in pts] for q in ("p50", "p90", "p99")}
    nonzero = [v for vs in vals.values() for v in vs if v]
    log = bool(nonzero) and max(nonzero) / max(min(nonzero), 1e-3) > 20
    return _time_chart(ids, "%s latency (ms)" % c, "ms", times,
                       [(q, PCT_COLOURS[q], vals[q], q == "p50") for q in ("p50", "p90", "p99")],
                       events, tmax, log=log)


def _shards(ids, m, tmax, events, ccol):
    rows = []
    for i, s in enumerate(m["shard_info"], 1):
        rows.append(("result %d" % i, s["target"], _when(s["started"]), "%.1f s" % (s["elapsed_s"] or 0),
                     s["devices_total"] if s["devices_total"] is not None else "–", s["requests"],
                     s["requests_per_s"], s["errors"], s["thresholds_failed"], "yes" if s["interrupted"] else "no"))
    table = _table("shards", "Each result as it was run (thresholds as each judged itself)",
                   ("result", "target", "started", "duration", "devices", "requests", "req/s", "errors",
                    "thresholds failed", "interrupted"), rows, numeric_from=4)
    scol = _colours(["result %d" % i for i in range(1, len(m["shard_info"]) + 1)])
    series = []
    times = [p["t"] for p in m["points"]]
    for i, pts in enumerate(m["shard_points"], 1):
        vals = [None] * len(times)
        for j, p in enumerate(pts[:len(times)]):
            vals[j] = None if p["devices"] is None else sum(p["requests"].values()) / p["dt"]
        series.append(("result %d" % i, scol["result %d" % i], vals, False))
    chart = _time_chart(ids, "Requests per second by result", "req/s", times, series, events, tmax)
    lat_rows = [("result %d" % i, c, p.get("count", 0), "%.1f" % p.get("p50_ms", 0), "%.1f" % p.get("p90_ms", 0),
                 "%.1f" % p.get("p99_ms", 0), "%.1f" % p.get("max_ms", 0))
                for i, s in enumerate(m["shard_info"], 1) for c, p in sorted(s["latency"].items())]
    lat = _table("shard_latency", "Latency by result and command (ms)",
                 ("result", "command", "count", "p50", "p90", "p99", "max"), lat_rows, numeric_from=2)
    return ('<section id="shards"><h2>Per shard</h2><details><summary>%d merged results: show each one</summary>'
            '<div class="grid">%s</div><div class="tables">%s%s</div></details></section>'
            % (len(m["shard_info"]), chart, table, lat))


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
    t.append(_table("accounting", "Accounting (sent = answered + transport errors + timeouts + cancelled at the end)",
                    ("command", "sent", "answered", "transport errors", "timeouts", "cancelled"), _accounting(m)))
    out += [x for x in t if x]
    out.append("</div></section>")
    return "".join(out)


_CSS = """
:root{--fg:#1a1a1a;--muted:#555;--bg:#fff;--panel:#f6f7f9;--line:#d6d9de;--pass:#0a6b3d;--fail:#b00020}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);
background:var(--bg);margin:0 auto;max-width:1600px;padding:16px 24px}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;border-bottom:2px solid var(--line);padding-bottom:2px;margin-top:1.6em}
h2.small{font-size:1em;border:0;margin:1em 0 .2em}h3{font-size:1em}
.verdict{display:inline-block;font-weight:700;font-size:1.1em;padding:4px 12px;border-radius:4px;margin:.3em 0}
.verdict.pass{background:#e3f4ea;color:var(--pass);border:1px solid var(--pass)}
.verdict.fail{background:#fde7ea;color:var(--fail);border:1px solid var(--fail)}
.warn{color:var(--fail);font-weight:700}
dl.facts{display:flex;flex-wrap:wrap;gap:6px 28px;margin:.6em 0}dl.facts div{min-width:8em}
dt{font-size:.8em;color:var(--muted);text-transform:uppercase;letter-spacing:.03em}dd{margin:0;font-weight:600;overflow-wrap:anywhere}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:700;padding:4px 0}
th,td{padding:3px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{border-bottom:2px solid var(--line);font-size:.9em;color:var(--muted)}
.num{text-align:right}tbody th{font-weight:600}
table.thresholds tr.pass .verdict{color:var(--pass);font-weight:700}
table.thresholds tr.fail .verdict{color:var(--fail);font-weight:700}
table.thresholds tr.fail{background:#fdf1f3}
.events-list{margin:.2em 0;padding-left:0;list-style:none}.events-list li{margin:2px 0}
.badge{display:inline-block;min-width:1.4em;text-align:center;background:#333;color:#fff;border-radius:3px;
font-size:.85em;font-weight:700}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:10px 24px}
.tables{display:flex;flex-wrap:wrap;gap:0 40px;align-items:flex-start}
figure.chart{margin:.6em 0;padding:8px 10px;background:var(--panel);border:1px solid var(--line);border-radius:4px;
break-inside:avoid;page-break-inside:avoid;position:relative}
figcaption{font-weight:700;margin-bottom:2px}
svg.plot{width:100%;height:auto;display:block;font-size:13px}
svg .grid{stroke:#e2e5ea;stroke-width:1}svg .axis,svg .tickmark{stroke:#888;stroke-width:1}
svg .tick{fill:#444}svg .unit{fill:#555;font-style:italic}
svg .line{fill:none;stroke-width:1.8;stroke-linejoin:round;stroke-linecap:round}svg .line.dashed{stroke-dasharray:5 3}
svg .area{opacity:.9;stroke:#fff;stroke-width:.3}
svg .rowlabel,svg .rowvalue{fill:#222;font-size:13px}
svg .event-marker line{stroke:#222;stroke-width:1.2;stroke-dasharray:3 3}
svg .event-marker rect{fill:#222}svg .event-marker text{fill:#fff;font-size:11px;font-weight:700}
svg .hover{stroke:#000;stroke-width:1;opacity:0;pointer-events:none}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:2px 16px;padding:0;margin:4px 0 0;font-size:.9em}
.sw{display:inline-block;width:14px;height:10px;margin-right:5px;vertical-align:baseline;border-radius:2px}
.sw.dash{height:4px;margin-bottom:3px}
.note{color:var(--muted);font-size:.9em;margin:.3em 0}.nodata{color:var(--muted);font-style:italic;margin:1em 0}
#tip{position:absolute;display:none;background:#fff;border:1px solid #888;border-radius:4px;padding:4px 8px;
font-size:12px;pointer-events:none;box-shadow:0 2px 6px rgba(0,0,0,.2);z-index:10;white-space:nowrap}
#tip b{display:block}#tip i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
details summary{cursor:pointer;font-weight:600;margin:.4em 0}
code{font-size:.95em}
footer{margin-top:2em;color:var(--muted);font-size:.85em}
@media print{body{max-width:none;padding:0;font-size:10pt}#tip,svg .hover{display:none}
.grid{grid-template-columns:1fr 1fr}figure.chart{background:none}section{break-before:auto}
h2{break-after:avoid}a{color:inherit;text-decoration:none}}
"""

_JS = r"""
(function(){
  var errs=[];
  window.addEventListener('error',function(e){errs.push(String(e.message));
    document.documentElement.setAttribute('data-js-errors',errs.join(' | '));});
  var tip=document.getElementById('tip');
  function fmt(v){if(v===null||v===undefined)return '\u2013';var a=Math.abs(v);
    return a>=100?v.toFixed(0):a>=10?v.toFixed(1):a>=1?v.toFixed(2):v.toPrecision(3);}
  function tl(s){s=Math.round(s);if(s<60)return s+' s';var m=Math.floor(s/60),r=s%60;
    return m+':'+(r<10?'0':'')+r;}
  Array.prototype.forEach.call(document.querySelectorAll('figure.timechart'),function(fig){
    var d=JSON.parse(fig.querySelector('script.chart-data').textContent);
    var svg=fig.querySelector('svg'),hover=svg.querySelector('.hover');
    function hide(){tip.style.display='none';hover.style.opacity=0;}
    svg.addEventListener('mousemove',function(ev){
      var r=svg.getBoundingClientRect(),x=(ev.clientX-r.left)*d.W/r.width;
      var t=(x-d.l)/d.w*d.tmax,best=-1,bd=Infinity;
      for(var i=0;i<d.t.length;i++){var dd=Math.abs(d.t[i]-t);if(dd<bd){bd=dd;best=i;}}
      if(best<0||x<d.l||x>d.l+d.w){hide();return;}
      var hx=d.l+d.w*d.t[best]/d.tmax;hover.setAttribute('x1',hx);hover.setAttribute('x2',hx);hover.style.opacity=.5;
      while(tip.firstChild)tip.removeChild(tip.firstChild);
      var h=document.createElement('b');h.textContent=tl(d.t[best])+' into the run ('+d.unit+')';tip.appendChild(h);
      d.s.forEach(function(s){var row=document.createElement('div'),sw=document.createElement('i');
        sw.style.background=s.c;row.appendChild(sw);row.appendChild(document.createTextNode(s.n+': '+fmt(s.v[best])));
        tip.appendChild(row);});
      tip.style.display='block';
      tip.style.left=Math.min(ev.pageX+14,document.documentElement.scrollWidth-tip.offsetWidth-8)+'px';
      tip.style.top=(ev.pageY+14)+'px';
    });
    svg.addEventListener('mouseleave',hide);
  });
  Array.prototype.forEach.call(document.querySelectorAll('figure.chart'),function(fig){
    var n=0;Array.prototype.forEach.call(fig.querySelectorAll('.mark'),function(m){
      var b=m.getBBox();if(b.width>0||b.height>0)n++;});
    fig.setAttribute('data-drawn',String(n));
  });
  document.documentElement.setAttribute('data-report-ready','1');
})();
"""


def render(summaries):
    """One self-contained HTML document from one summary dict or several of the same run."""
    m = merge(summaries)
    title = "easload report: %s" % m["scenario"]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            '<meta name="generator" content="easload %s">'
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            'style-src \'unsafe-inline\'; script-src \'unsafe-inline\'; img-src data:">'
            '<title>%s</title><style>%s</style></head><body>%s<main>%s</main>'
            '<footer>Rendered by easload %s on %s from %d result%s; intervals of %s s. '
            'The file is self-contained and works offline.</footer>'
            '<div id="tip" role="tooltip"></div><script>%s</script></body></html>\n'
            % (esc(__version__), esc(title), _CSS, _header(m), _sections(m), esc(__version__),
               _when(time.time()), m["shards"], "" if m["shards"] == 1 else "s", _fmt(m["interval_s"]), _JS))


def write(summaries, path):
    """Render and write the report (UTF-8); returns its size in bytes."""
    data = render(summaries).encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


__all__ = ["render", "write", "merge"]
