"""Run statistics (HDR histograms) and the end-of-run summary.

Latency is kept per command in HDR histograms (microseconds, 3 significant
digits, 1 us .. 1 h), so percentiles are exact to 0.1 % and histograms from
several workers or shards can be merged without averaging percentiles.
"""

import time
from collections import Counter

from hdrh.histogram import HdrHistogram

from loadgen import metrics

_LOW_US, _HIGH_US, _DIGITS = 1, 3_600_000_000, 3


def _new_histogram():
    return HdrHistogram(_LOW_US, _HIGH_US, _DIGITS)


class Stats:
    """Everything the summary needs, recorded as the run goes."""

    def __init__(self):
        self.started = time.time()
        self.ended = None
        self.requests = Counter()  # (command, http status or error label) -> n
        self.outcomes = Counter()  # (command, outcome) -> n
        self.eas_statuses = Counter()  # (command, status) -> n
        self.latency = {}  # command -> HdrHistogram (microseconds)
        self.provisionings = Counter()  # (result, ack status) -> n
        self.reprovisions = Counter()  # trigger -> n
        self.wipes = Counter()  # ack status -> n
        self.throttled = Counter()  # reason -> n
        self.malformed = Counter()  # command -> n
        self.reenrolments = 0
        self.compliance = Counter()  # acknowledgement status the devices sent -> devices
        self.unmet = Counter()  # policy the devices could not apply -> devices
        self.bytes_sent = 0
        self.bytes_received = 0
        self.final_states = Counter()
        self.total = 0

    def record(self, command, http_status, outcome, seconds, sent, received, eas_status=None):
        status_label = str(http_status) if http_status else outcome
        self.requests[(command, status_label)] += 1
        self.outcomes[(command, outcome)] += 1
        self.total += 1
        hist = self.latency.get(command)
        if hist is None:
            hist = self.latency[command] = _new_histogram()
        hist.record_value(max(_LOW_US, min(_HIGH_US, int(seconds * 1_000_000))))
        self.bytes_sent += sent
        self.bytes_received += received
        metrics.REQUESTS.labels(command, outcome, status_label).inc()
        if command == "Ping":
            metrics.PING_DURATION.labels(outcome).observe(seconds)
        else:
            metrics.REQUEST_DURATION.labels(command, outcome).observe(seconds)
        if eas_status is not None:
            self.eas_statuses[(command, eas_status)] += 1
            metrics.EAS_STATUS.labels(command, str(eas_status)).inc()
        metrics.BYTES_SENT.inc(sent)
        metrics.BYTES_RECEIVED.inc(received)

    def provisioning(self, result, ack_status):
        self.provisionings[(result, str(ack_status))] += 1
        metrics.PROVISIONINGS.labels(result, str(ack_status)).inc()

    def reprovision(self, trigger):
        self.reprovisions[trigger] += 1
        metrics.REPROVISIONS.labels(trigger).inc()

    def wipe(self, ack_status):
        self.wipes[str(ack_status)] += 1
        metrics.REMOTE_WIPES.labels(str(ack_status)).inc()

    def throttle(self, reason):
        self.throttled[reason] += 1
        metrics.THROTTLED.labels(reason).inc()

    def reenrolment(self):
        self.reenrolments += 1

    def malformed_response(self, command):
        self.malformed[command] += 1
        metrics.MALFORMED.labels(command).inc()

    # -- summary

    def errors(self):
        return sum(n for (_cmd, outcome), n in self.outcomes.items() if outcome not in ("ok", "reprovision"))

    def percentiles(self, command):
        hist = self.latency[command]
        return {
            "count": hist.get_total_count(),
            "p50_ms": hist.get_value_at_percentile(50) / 1000,
            "p90_ms": hist.get_value_at_percentile(90) / 1000,
            "p99_ms": hist.get_value_at_percentile(99) / 1000,
            "max_ms": hist.get_max_value() / 1000,
        }

    def to_dict(self, scenario=None, target=None):
        elapsed = (self.ended or time.time()) - self.started
        return {
            "scenario": scenario,
            "target": target,
            "started": self.started,
            "elapsed_s": round(elapsed, 3),
            "requests": self.total,
            "requests_per_s": round(self.total / elapsed, 1) if elapsed > 0 else 0.0,
            "errors": self.errors(),
            "by_command_status": {"%s %s" % k: v for k, v in sorted(self.requests.items())},
            "by_command_outcome": {"%s %s" % k: v for k, v in sorted(self.outcomes.items())},
            "eas_statuses": {"%s %s" % k: v for k, v in sorted(self.eas_statuses.items())},
            "latency": {cmd: self.percentiles(cmd) for cmd in sorted(self.latency)},
            "devices": dict(sorted(self.final_states.items())),
            "provisionings": {"%s ack=%s" % k: v for k, v in sorted(self.provisionings.items())},
            "reprovisions": dict(sorted(self.reprovisions.items())),
            "remote_wipes": dict(sorted(self.wipes.items())),
            "reenrolments": self.reenrolments,
            "compliance": {str(k): v for k, v in sorted(self.compliance.items())},
            "unmet_policies": dict(sorted(self.unmet.items())),
            "throttled": dict(sorted(self.throttled.items())),
            "malformed_responses": dict(sorted(self.malformed.items())),
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
        }


def _table(headers, rows):
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(str(cell)))
    lines = ["  ".join(str(h).ljust(w) if i == 0 else str(h).rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join("  " + line for line in lines)


def summary_text(stats, scenario_name, target, devices_total):
    d = stats.to_dict()
    out = []
    out.append("easload summary: scenario %s, target %s" % (scenario_name, target))
    out.append("  %d devices, %d requests in %.1f s (%.1f req/s), %d errors, %.1f KiB sent, %.1f KiB received"
               % (devices_total, d["requests"], d["elapsed_s"], d["requests_per_s"], d["errors"],
                  d["bytes_sent"] / 1024, d["bytes_received"] / 1024))
    out.append("")
    out.append("Requests by command and HTTP status")
    out.append(_table(("command", "status", "count"),
                      [(cmd, status, n) for (cmd, status), n in sorted(stats.requests.items())]))
    out.append("")
    out.append("Latency by command (ms; Ping is held by the server on purpose)")
    rows = []
    for cmd in sorted(stats.latency):
        p = stats.percentiles(cmd)
        rows.append((cmd, p["count"], "%.1f" % p["p50_ms"], "%.1f" % p["p90_ms"], "%.1f" % p["p99_ms"],
                     "%.1f" % p["max_ms"]))
    out.append(_table(("command", "count", "p50", "p90", "p99", "max"), rows))
    out.append("")
    out.append("Devices by final state")
    out.append(_table(("state", "devices"), sorted(stats.final_states.items())))
    out.append("")
    out.append("Provisioning outcomes")
    prov_rows = [(result, ack, n) for (result, ack), n in sorted(stats.provisionings.items())]
    out.append(_table(("result", "ack status", "count"), prov_rows) if prov_rows else "  (none)")
    if stats.reprovisions:
        out.append("")
        out.append("Re-provisioning triggers")
        out.append(_table(("trigger", "count"), sorted(stats.reprovisions.items())))
    extra = []
    if stats.eas_statuses:
        extra.append(("EAS statuses by command", ("command", "status", "count"),
                      [(c, s, n) for (c, s), n in sorted(stats.eas_statuses.items())]))
    if stats.throttled:
        extra.append(("Throttling by reason", ("reason", "count"), sorted(stats.throttled.items())))
    if stats.malformed:
        extra.append(("Malformed responses", ("command", "count"), sorted(stats.malformed.items())))
    if stats.compliance:
        names = {1: "success", 2: "partial success", 3: "failure", 4: "externally managed"}
        extra.append(("Policy compliance (acknowledgement the devices sent)", ("ack status", "devices"),
                      [("%d %s" % (k, names.get(k, "")), n) for k, n in sorted(stats.compliance.items())]))
    if stats.unmet:
        extra.append(("Policies the devices could not apply", ("policy", "devices"), sorted(stats.unmet.items())))
    if stats.wipes:
        extra.append(("Remote wipes by ack status", ("ack status", "count"), sorted(stats.wipes.items())))
    for title, headers, rows in extra:
        out.append("")
        out.append(title)
        out.append(_table(headers, rows))
    return "\n".join(out)
