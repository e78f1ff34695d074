"""The end-of-run texts: the terminal summary, the thresholds' verdicts, and JUnit XML for CI job pages.

They read a :class:`loadgen.results.stats.Stats` (a run's, or the merge of several) and the verdicts of
:func:`loadgen.results.thresholds.evaluate`; they compute nothing of their own.
"""

from xml.sax.saxutils import quoteattr

from loadgen.results.mail import GROUPS, PUSH_LABELS
from loadgen.results.stats import accounting, eas_order

_EFFECTS = {  # Stats.policy_effects labels (loadgen/eas/policy.py) as the summary says them
    "email_filter_clamped": "preference clamped: e-mail FilterType (MaxEmailAgeFilter)",
    "calendar_filter_clamped": "preference clamped: calendar FilterType (MaxCalendarAgeFilter)",
    "truncation_clamped": "preference clamped: body TruncationSize (Max*BodyTruncationSize)",
    "html_downgraded": "preference clamped: plain text, not HTML (AllowHTMLEmail 0)",
    "attachment_fetch": "attachment opened and fetched (ItemOperations)",
    "attachment_skip_disabled": "attachment fetch skipped by policy: AttachmentsEnabled 0",
    "attachment_skip_too_large": "attachment fetch skipped by policy: above MaxAttachmentSize",
    "fetch_skipped_queue_full": "fetch skipped: the device's queue of 100 opened items was full",
}


def junit_xml(scenario_name, results, elapsed):
    """One test case per threshold (JUnit XML for CI job pages)."""
    failures = sum(1 for _t, _v, ok in results if not ok)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<testsuites><testsuite name=%s tests="%d" failures="%d" time="%.3f">'
             % (quoteattr("easload." + scenario_name), len(results), failures, elapsed)]
    for th, value, ok in results:
        lines.append('  <testcase classname=%s name=%s>' % (quoteattr("easload." + scenario_name), quoteattr(str(th))))
        if not ok:
            msg = "no data for %s" % th.metric if value is None else "%s = %g" % (th.metric, value)
            lines.append('    <failure message=%s/>' % quoteattr(msg))
        lines.append('  </testcase>')
    lines.append("</testsuite></testsuites>")
    return "\n".join(lines) + "\n"


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
    if stats.rss_end and devices_total:
        out.append("  client memory%s: %.1f MiB RSS before the devices, %.1f MiB at the end (peak %.1f MiB): "
                   "%.1f KiB per device (fixed costs included: meaningful for thousands of devices)"
                   % (" (the embedded target in the same process included)" if stats.rss_with_target else "",
                      stats.rss_base / 2**20, stats.rss_end / 2**20, stats.rss_peak / 2**20,
                      max(0, stats.rss_end - stats.rss_base) / 1024 / devices_total))
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
    if stats.timings:
        out.append("")
        out.append("Enrolment (ms; from each device's intended start, and from its actual start) and schedule lag; "
                   "%d late starts (> 100 ms)" % stats.late_starts)
        rows = []
        for name in sorted(stats.timings):
            p = stats.percentiles(name)
            rows.append((name, p["count"], "%.1f" % p["p50_ms"], "%.1f" % p["p90_ms"], "%.1f" % p["p99_ms"],
                         "%.1f" % p["max_ms"]))
        out.append(_table(("timing", "count", "p50", "p90", "p99", "max"), rows))
    out += mail_text(stats)
    out += tasks_text(stats)
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
                      [(c, s, n) for (c, s), n in sorted(stats.eas_statuses.items(), key=eas_order)]))
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
    if stats.password_changes or stats.local_wipes or stats.code_words or stats.policy_effects:
        rows = [("password change required: %s" % k, n) for k, n in sorted(stats.password_changes.items())]
        rows += [("code word requested", stats.code_words), ("local wipe (failed unlocks)", stats.local_wipes)]
        rows += [(_EFFECTS.get(k, k), n) for k, n in sorted(stats.policy_effects.items())]
        extra.append(("Living by the policy", ("event", "count"), rows))
    if stats.wipes:
        extra.append(("Remote wipes by ack status", ("ack status", "count"), sorted(stats.wipes.items())))
    if stats.events:
        extra.append(("Events", ("at (s)", "action", "result"), [(t, a, r) for t, a, r in stats.events]))
    acc = accounting(stats, by_command=True)
    headers = ("command", "sent", "answered", "transport errors", "timeouts", "cancelled", "re-sent")
    title = "Accounting (sent = answered + transport errors + timeouts + cancelled at the end + re-sent)"
    rows = [(c, r["sent"], r["answered"], r["errors"], r["timeouts"], r["cancelled"], r["resent"])
            for c, r in acc.items()]
    if any(r["interrupted"] for r in acc.values()):  # held Pings stopped by the device for its user
        headers += ("interrupted",)
        title = title[:-1] + " + interrupted)"
        rows = [row + (acc[row[0]]["interrupted"],) for row in rows]
    if any(r["not_sent"] for r in acc.values()):
        headers += ("not sent",)
        rows = [row + (acc[row[0]]["not_sent"],) for row in rows]
    extra.append((title, headers, rows))
    for title, headers, rows in extra:
        out.append("")
        out.append(title)
        out.append(_table(headers, rows))
    tls = getattr(stats, "tls_handshakes", None)
    if tls:
        out.append("")
        out.append("TLS handshakes: %d full, %d resumed, %d failed (durations: the TLSHandshake timings)" % (
            tls.get("full", 0), tls.get("resumed", 0), tls.get("failed", 0)))
    resent = sum(stats.resent.values())
    if resent:
        out.append("")
        out.append("%d requests re-sent on a fresh connection (the server had closed the kept-alive one "
                   "before answering; the first attempts are in \"sent\" as re-sent)" % resent)
    not_sent = sum(stats.not_sent.values())
    if not_sent:
        out.append("%d requests cancelled before they were written (never sent)" % not_sent)
    if stats.device_errors:
        out.append("")
        out.append("%d devices ended by an unexpected exception of their own (counted as internal_error; the run "
                   "went on): %s" % (sum(stats.device_errors.values()),
                                     ", ".join("%s %d" % kv for kv in sorted(stats.device_errors.items()))))
    if getattr(stats, "aborted", None):
        out.append("")
        out.append("The run stopped itself: %s." % stats.aborted)
    elif stats.interrupted:
        out.append("")
        out.append("The run was interrupted before its end.")
    return "\n".join(out)


def tasks_text(stats):
    """The Tasks block's lines (empty without a workload): per task type planned, achieved, failed and late,
    the achieved ratio and the latency from the planned time (s), then the totals and the queue's peak."""
    tasks = stats.tasks_dict()
    if not tasks:
        return []
    rows = []

    def row(name, r):
        lat = r.get("latency") or {}
        ratio = r.get("achieved_ratio")
        return (name, r["planned"], r["achieved"], r["failed"], r["late"], r.get("skipped", 0), r.get("unstarted", 0),
                "-" if ratio is None else "%.3f" % ratio,
                *("-" if k not in lat else "%.3f" % (lat[k] / 1000) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")))

    for name, r in tasks["by_type"].items():
        rows.append(row(name, r))
    total = tasks["total"]
    rows.append(row("all", total))
    out = ["", "Tasks (planned by the user-day, achieved, failed, late: started > 100 ms after the plan; skipped: "
               "nothing to act on; unstarted: never started; latency in s from the planned time)",
           _table(("task", "planned", "achieved", "failed", "late", "skipped", "unstarted", "achieved/planned", "p50",
                   "p90", "p99", "max"),
                  rows),
           "  tasks queued behind a busy device: peak %s, at the end %d" % (
               "at most %d (the sum of the shards' or workers' own peaks)" % total["queued_peak"]
               if total.get("queued_peak_bound") else total["queued_peak"], total["queued_end"])]
    return out


def mail_text(stats):
    """The Mail block's lines (empty when no mail event and no push latency was recorded): the events
    by group, and the push latency per recipient kind (from the sender's submission to the Sync that
    returned the message to the recipient's device)."""
    events = stats.mail_events
    kinds = [k for k in PUSH_LABELS if k in stats.push_hdr and stats.push_hdr[k].total]
    if not any(events.values()) and not kinds:
        return []
    out = ["", "Mail"]
    rows = [(group, what, events[event]) for group, named in GROUPS for event, what in named if events.get(event)]
    if rows:
        out.append(_table(("group", "event", "count"), rows))
    if kinds:
        out.append("")
        out.append("Push latency (s; sender's submission to the recipient's Sync, by how the recipient was addressed)")
        lat = []
        for kind in kinds:
            p = stats.push_percentiles(kind)
            lat.append((kind, p["count"], "%.3f" % (p["p50_ms"] / 1000), "%.3f" % (p["p90_ms"] / 1000),
                        "%.3f" % (p["p99_ms"] / 1000), "%.3f" % (p["max_ms"] / 1000)))
        out.append(_table(("recipient", "count", "p50", "p90", "p99", "max"), lat))
    return out


def thresholds_text(results):
    if not results:
        return ""
    rows = [(str(th), "no data" if v is None else "%g" % v, "pass" if ok else "FAIL") for th, v, ok in results]
    return "Thresholds\n" + _table(("threshold", "value", "verdict"), rows)
