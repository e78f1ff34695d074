"""Prometheus metrics of a run, read from the run's statistics at scrape time.

Conventions (Prometheus' metric and label naming, prometheus.io/docs/practices/naming): one
prefix ``easload_``, base units, ``_total`` counters, ``_seconds`` histograms, label
values bounded by design (command, outcome, HTTP status code, EAS status,
state, trigger, reason); the values a server controls (HTTP status, EAS status,
X-MS-ASThrottle reason) are folded into ``other`` where they enter
:class:`loadgen.results.stats.Stats`.  Never a device id, user, URL or policy key.

The devices update only plain counters in :class:`loadgen.results.stats.Stats`; this
collector turns them into metric families when Prometheus scrapes.  That costs
nothing per request (prometheus-client's labelled children take a lock and a
label lookup per ``inc``), and the values are exactly those of the end-of-run summary.

Ping is held by the server on purpose for up to the heartbeat interval, so its
duration goes to its own histogram and never into request-latency SLOs.

Mail: ``easload_mail_events_total{event}`` (the fixed MAIL_EVENTS of loadgen/results/mail.py, each
exported from zero, and ``other``) and ``easload_push_latency_seconds{kind}`` (to, cc, bcc: from a
sender's submission to the Sync that returned the message to a recipient's device; the standard
latency buckets, counts equal to the summary's HDR counts).

Tasks of the user-day (loadgen/results/tasks.py): ``easload_tasks_total{type,result}`` (the fixed
TASK_TYPES, and ``other`` once counted; result planned, achieved, failed, late), the histogram
``easload_task_latency_seconds{type}`` (from each task's planned time: open model, no coordinated
omission) and the gauge ``easload_tasks_queued`` (tasks due while their device was busy); exported
only when the run has a workload.

Load shape: ``easload_device_starts_total`` (open model: arrivals),
``easload_late_starts_total`` (more than 100 ms behind schedule) and
``easload_schedule_lag_seconds`` (intended to actual start).  ``easload_run_info``
carries the run id, scenario and version; ``easload_scenario_events_total{action}`` counts the
scenario's ``[[events]]`` as they act (the action names of the scenario grammar: a fixed set, each of
the scenario's own exported from zero so that ``increase`` sees the first one; the dashboard draws
them as annotations); shards of one run share the run id
through ``EASLOAD_RUN_ID`` and are told apart by a ``shard`` *target* label set
by Prometheus (deploy/prometheus), so the dashboard sums them.

The only per-request work done for Prometheus alone is the classic-histogram slot and sum in
``Stats.record``; bench/metrics_bench.py measures it and a scrape.
"""

import os
import re
import sys
import threading

import prometheus_client as prom
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from loadgen.results.mail import MAIL_EVENTS, OTHER, PUSH_KINDS
from loadgen.results.buckets import LONG_BUCKETS, REQUEST_BUCKETS, le_labels
from loadgen.results.stats import TLS_BUCKETS, TLS_RESULTS
from loadgen.results.tasks import RESULTS, TASK_TYPES

REGISTRY = prom.CollectorRegistry(auto_describe=False)
_TLS_BUCKET_LABELS = le_labels(TLS_BUCKETS)

_BUCKET_LABELS = le_labels(LONG_BUCKETS)  # Ping, push, task latency, schedule lag (results/buckets.py)
_REQUEST_LABELS = le_labels(REQUEST_BUCKETS)


class RunCollector:
    """Exposes the current run (set with :func:`attach`)."""

    def __init__(self):
        self.stats = None
        self.device_states = None  # callable -> {state: n}
        self.info = {}
        self.event_actions = ()
        self._states = set()  # every device state exported in this run (one that empties stays, at 0)
        self._lock = threading.Lock()

    def attach(self, stats, device_states, info, event_actions=()):
        with self._lock:
            self.stats, self.device_states, self.info = stats, device_states, dict(info)
            self.event_actions = tuple(event_actions)
            self._states = set()

    def collect(self):
        with self._lock:
            stats, device_states, info, actions = self.stats, self.device_states, self.info, self.event_actions
        info_family = GaugeMetricFamily("easload_run_info", "Information about the run (value 1)",
                                        labels=sorted(info))
        if info:
            info_family.add_metric([info[k] for k in sorted(info)], 1)
        yield info_family
        if stats is None:
            return
        by_key = dict(stats.by_key)  # a snapshot: the event loop keeps counting meanwhile
        requests = CounterMetricFamily("easload_requests", "EAS requests sent, by command, outcome and HTTP status",
                                       labels=["command", "outcome", "http_status"])
        for (command, outcome, status), n in sorted(by_key.items()):
            requests.add_metric([command, outcome, status], n)
        yield requests
        # first attempts the transport sent again on a fresh connection (the server had closed the
        # kept-alive one before answering), and requests cancelled before they were written
        yield _counter("easload_resent_requests", "Requests re-sent on a fresh connection after the server had "
                       "closed the kept-alive one unanswered (reconnects), by command",
                       ["command"], ((c, n) for c, n in list(getattr(stats, "resent", {}).items())))
        yield _counter("easload_device_errors", "Devices ended by an unexpected exception of their own (the "
                       "run goes on), by exception type", ["type"],
                       ((t, n) for t, n in list(getattr(stats, "device_errors", {}).items())))
        yield _counter("easload_not_sent_requests", "Requests cancelled before they were written (never sent), "
                       "by command", ["command"], ((c, n) for c, n in list(getattr(stats, "not_sent", {}).items())))
        duration = HistogramMetricFamily(
            "easload_request_duration_seconds",
            "Request duration (send to full response) by command and outcome; Ping excluded",
            labels=["command", "outcome"])
        ping = HistogramMetricFamily("easload_ping_duration_seconds",
                                     "Ping duration (held by the server on purpose) by outcome", labels=["outcome"])
        for (command, outcome), counts in sorted(list(stats.buckets.items())):
            cumulative, buckets = 0, []
            for label, n in zip(_BUCKET_LABELS if command == "Ping" else _REQUEST_LABELS, list(counts)):
                cumulative += n
                buckets.append((label, cumulative))
            total = stats.sums.get((command, outcome), 0.0)
            if command == "Ping":
                ping.add_metric([outcome], buckets, total)
            else:
                duration.add_metric([command, outcome], buckets, total)
        yield duration
        yield ping
        yield _counter("easload_eas_status", "EAS Status values seen in command roots, by command",
                       ["command", "status"], ((c, str(s), n) for (c, s), n in list(stats.eas_statuses.items())))
        yield _counter("easload_provisionings", "Provisioning conversations by result and acknowledgement status",
                       ["result", "ack_status"], ((r, a, n) for (r, a), n in list(stats.provisionings.items())))
        yield _counter("easload_reprovisions", "Re-provisionings by trigger (449, 140, 142, 143, 144)",
                       ["trigger"], ((t, n) for t, n in list(stats.reprovisions.items())))
        yield _counter("easload_remote_wipes", "Remote wipes acknowledged, by acknowledgement status",
                       ["ack_status"], ((a, n) for a, n in list(stats.wipes.items())))
        yield _counter("easload_throttled", "Throttling answers and back-off requests, by reason (X-MS-ASThrottle)",
                       ["reason"], ((r, n) for r, n in list(stats.throttled.items())))
        yield _counter("easload_malformed_responses", "Responses that could not be decoded, by command",
                       ["command"], ((c, n) for c, n in list(stats.malformed.items())))
        yield _counter("easload_reenrolments", "Wiped devices that re-enrolled as new devices", [],
                       [(stats.reenrolments,)])
        yield _counter("easload_password_changes", "Password changes the policy required, by the rule broken",
                       ["reason"], ((r, n) for r, n in list(stats.password_changes.items())))
        yield _counter("easload_code_word_requests", "Code word requests after CodeWordFrequency failed unlocks",
                       [], [(stats.code_words,)])
        yield _counter("easload_local_wipes", "Devices that wiped themselves after too many failed unlocks", [],
                       [(stats.local_wipes,)])
        yield _counter("easload_policy_effects", "Preferences clamped to the policy and attachment fetches allowed "
                       "or skipped by it, by effect", ["effect"], ((e, n) for e, n in list(stats.policy_effects.items())))
        yield _events(stats, actions)
        yield from _tls(stats)
        yield from _mail(stats)
        yield from _tasks(stats)
        # load shape (open model: arrivals; closed model: the ramp)
        starts = getattr(stats, "starts", 0)
        if not starts and "StartLag" in stats.timings:  # --workers: the parent has the merged timings at the end
            starts = stats.timings["StartLag"].total
        yield _counter("easload_device_starts", "Devices started (open model: arrivals)", [], [(starts,)])
        yield _counter("easload_late_starts", "Devices that started more than 100 ms after their intended time", [],
                       [(stats.late_starts,)])
        lag = HistogramMetricFamily("easload_schedule_lag_seconds",
                                    "Delay between a device's intended and actual start (coordinated omission)")
        lag_counts = list(getattr(stats, "lag_buckets", ()))
        if lag_counts:
            cumulative, buckets = 0, []
            for label, n in zip(_BUCKET_LABELS, lag_counts):
                cumulative += n
                buckets.append((label, cumulative))
            lag.add_metric([], buckets, stats.lag_sum)
        yield lag
        yield _counter("easload_sent_bytes", "Request body bytes sent", [], [(stats.bytes_sent,)])
        yield _counter("easload_received_bytes", "Response body bytes received", [], [(stats.bytes_received,)])
        devices = GaugeMetricFamily("easload_devices", "Simulated devices by state", labels=["state"])
        if device_states is not None:
            # a state left by every device is exported at 0, not dropped: a dropped series keeps its last
            # value in last_over_time (the dashboard's run totals) and its last count would stay added
            counts = dict(device_states())
            self._states |= set(counts)
            for state in sorted(self._states):
                devices.add_metric([state], counts.get(state, 0))
        yield devices


_ACTION = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _events(stats, actions):
    """The scenario's events that acted so far, by action: the scenario's own actions from zero (a
    counter first seen at 1 shows no ``increase``), any other validated action name once it acted."""
    counts = {}
    for event in list(stats.events):
        action = event[1] if _ACTION.fullmatch(str(event[1])) else OTHER
        counts[action] = counts.get(action, 0) + 1
    family = CounterMetricFamily("easload_scenario_events", "Scenario events ([[events]]: policy change, wipe, "
                                 "resync, network_drop, command...) that acted, by action", labels=["action"])
    for action in sorted(set(actions) | set(counts)):
        family.add_metric([action], counts.get(action, 0))
    return family
def _tls(stats):
    """TLS handshakes of the devices' connections (lean transport, loadgen/wire/tlsconn.py): by result,
    each of TLS_RESULTS exported from zero, and their duration by kind (full, resumed)."""
    counts = getattr(stats, "tls_handshakes", None)
    if counts is None:
        return
    counts = dict(counts)
    yield _counter("easload_tls_handshakes", "TLS handshakes of the devices' connections by result: full, resumed "
                   "(the server took the session the device offered) or failed", ["result"],
                   ((r, counts.get(r, 0)) for r in TLS_RESULTS))
    family = HistogramMetricFamily("easload_tls_handshake_duration_seconds",
                                   "TLS handshake duration (TCP connected to handshake done) by kind", labels=["kind"])
    for kind in ("full", "resumed"):
        cumulative, buckets = 0, []
        for label, n in zip(_TLS_BUCKET_LABELS, stats.tls_bucket_counts(kind)):
            cumulative += n
            buckets.append((label, cumulative))
        family.add_metric([kind], buckets, stats.tls_handshake_sums.get(kind, 0.0))
    yield family


def _mail(stats):
    """The mail families: every known event and push kind from zero (a known label value is exported
    before it happens, so rates and dashboards see a 0, not nothing), "other" once it is counted."""
    events = dict(stats.mail_events)
    family = CounterMetricFamily("easload_mail_events", "Mail events of the devices (messages sent and received, "
                                 "read, flagged, deleted, moved, meeting responses, searches...), by event",
                                 labels=["event"])
    for event in MAIL_EVENTS:
        family.add_metric([event], events.get(event, 0))
    if events.get(OTHER):
        family.add_metric([OTHER], events[OTHER])
    yield family
    push = HistogramMetricFamily("easload_push_latency_seconds", "Push latency: from a sender's submission to the "
                                 "Sync that returned the message to a recipient's device, by how the recipient "
                                 "was addressed (to, cc, bcc)", labels=["kind"])
    sums = dict(stats.push_sums)
    for kind in PUSH_KINDS + (OTHER,):
        counts = stats.push_bucket_counts(kind)
        if kind == OTHER and not any(counts):
            continue
        cumulative, buckets = 0, []
        for label, n in zip(_BUCKET_LABELS, counts):
            cumulative += n
            buckets.append((label, cumulative))
        push.add_metric([kind], buckets, sums.get(kind, 0.0))
    yield push


def _tasks(stats):
    """The task families, when the run has a workload (a plan or a task counted): every type and result
    from zero, "other" once it is counted."""
    counts = dict(getattr(stats, "task_counts", None) or {})
    queued = getattr(stats, "tasks_queued", 0)
    if not counts and not getattr(stats, "tasks_queued_peak", 0):
        return
    family = CounterMetricFamily("easload_tasks", "Tasks of the simulated user-day by type and result (planned, "
                                 "achieved, failed, late: started more than 100 ms after its planned time)",
                                 labels=["type", "result"])
    types = TASK_TYPES + ((OTHER,) if any(t == OTHER for t, _r in counts) else ())
    for task_type in types:
        for result in RESULTS:
            family.add_metric([task_type, result], counts.get((task_type, result), 0))
    yield family
    latency = HistogramMetricFamily("easload_task_latency_seconds", "Task latency from its planned time to its "
                                    "last request's answer (open model: a late start counts), by type",
                                    labels=["type"])
    sums = dict(stats.task_sums)
    for task_type in types:
        cumulative, buckets = 0, []
        for label, n in zip(_BUCKET_LABELS, stats.task_bucket_counts(task_type)):
            cumulative += n
            buckets.append((label, cumulative))
        latency.add_metric([task_type], buckets, sums.get(task_type, 0.0))
    yield latency
    gauge = GaugeMetricFamily("easload_tasks_queued", "Tasks due while their device was busy with an earlier one")
    gauge.add_metric([], queued)
    yield gauge


def _counter(name, documentation, labels, rows):
    family = CounterMetricFamily(name, documentation, labels=labels)
    for row in sorted(rows):
        family.add_metric(list(row[:-1]), row[-1])
    return family


COLLECTOR = RunCollector()
REGISTRY.register(COLLECTOR)


RUN_ID_ENV = "EASLOAD_RUN_ID"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def run_id_from_env(default):
    """The run id shared by the shards of one run (``EASLOAD_RUN_ID``, e.g. the Kubernetes Job's uid
    from the downward API), else ``default``.  A bounded token: anything else is ignored with a warning."""
    value = os.environ.get(RUN_ID_ENV, "").strip()
    if not value:
        return default
    if not _RUN_ID.fullmatch(value):
        print("easload: ignoring %s (1-64 letters, digits, '.', '_' or '-' expected); run id %s"
              % (RUN_ID_ENV, default), file=sys.stderr)
        return default
    return value


def attach(stats, device_states, event_actions=(), **info):
    """Expose ``stats`` (and device states, a callable) from now on.  ``EASLOAD_RUN_ID`` replaces the
    run id given, so that the shards of one run show as one run in the dashboard.  ``event_actions``:
    the actions of the scenario's events (``easload_scenario_events_total`` starts them at 0)."""
    if "run_id" in info:
        info["run_id"] = run_id_from_env(info["run_id"])
    COLLECTOR.attach(stats, device_states, info, event_actions)


class _TargetMetrics:
    """The embedded target's own metrics (``easload_target_*``, loadgen/exchange/metrics.py) on the
    run's endpoint, so one scrape shows client and server side by side.  Collected on the
    scrape thread while the run's loop keeps changing the target's dicts: a collection that
    meets a dict changed mid-iteration is simply taken again."""

    def __init__(self):
        self.inner = None

    def collect(self):
        inner = self.inner
        if inner is None:
            return []
        for attempt in range(5):
            try:
                return list(inner.collect())
            except RuntimeError:  # "dictionary changed size during iteration"
                if attempt == 4:
                    raise
        return []


_TARGET = _TargetMetrics()
REGISTRY.register(_TARGET)


def attach_collector(collector):
    """Expose another collector's metrics on the run's endpoint (an embedded target's
    ``easload_target_*`` series, attached by the run's start-up); None: none."""
    _TARGET.inner = collector


_servers = []


def serve(listen):
    """Expose the registry on ``host:port`` (port 0: a free port).  Returns the bound port."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    server, thread = prom.start_http_server(int(port), addr=host, registry=REGISTRY)
    _servers.append((server, thread))
    return server.server_address[1]


def shutdown():
    while _servers:
        server, thread = _servers.pop()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def exposition():
    """The current metrics as Prometheus text (for tests and `--json` companions)."""
    return prom.generate_latest(REGISTRY).decode("utf-8")
