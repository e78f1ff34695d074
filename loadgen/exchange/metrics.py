"""The target's own Prometheus metrics, in a registry owned by the target.

Separate from the load generator's ``loadgen.results.metrics.REGISTRY`` (so a run with
the embedded target never mixes server-side and client-side series), prefixed
``easload_target_``, labels bounded by design (docs/protocol-notes.md, Observability conventions):
command (the MS-ASHTTP command names, anything else is "other"), HTTP status,
EAS status, device provisioning / access / wipe state, fault kind, throttle
reason.  Everything is computed on scrape from counters the target keeps anyway,
so a request pays nothing for metrics beyond one dict increment.
"""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily


def _histogram(name, doc, hist):
    family = HistogramMetricFamily(name, doc, labels=["command"])
    bounds = hist.BUCKETS
    for label, row in sorted(hist.data.items()):
        cumulative = []
        total = 0
        for bound, count in zip(bounds, row):
            total += count
            cumulative.append((repr(float(bound)), total))
        total += row[len(bounds)]
        cumulative.append(("+Inf", total))
        family.add_metric([label], cumulative, row[-1])
    return family


class TargetCollector:
    def __init__(self, target):
        self.target = target

    def collect(self):
        target = self.target
        state = target.state
        requests = CounterMetricFamily(
            "easload_target_requests", "Requests answered, by command, HTTP status and EAS status (\"\" = none)",
            labels=["command", "http_status", "eas_status"])
        for (command, http, eas), n in sorted(target.counters.items(), key=lambda kv: str(kv[0])):
            requests.add_metric([command, str(http), "" if eas is None else str(eas)], n)
        yield requests
        yield _histogram("easload_target_request_duration_seconds",
                         "Time to answer a request by command (Ping excluded: it is held on purpose)",
                         target.durations)
        yield _histogram("easload_target_ping_duration_seconds", "How long Pings were held", target.ping_durations)
        yield _histogram("easload_target_held_sync_duration_seconds",
                         "How long Syncs with Wait / HeartbeatInterval were held (not in the request durations)",
                         target.held_sync_durations)
        devices = GaugeMetricFamily("easload_target_devices", "Device partnerships by provisioning, ABQ and wipe state",
                                    labels=["provisioning", "access", "wipe"])
        for (prov, access, wipe), n in sorted(state.state_counts().items()):
            devices.add_metric([prov, access, wipe], n)
        yield devices
        yield GaugeMetricFamily("easload_target_held_pings", "Pings held right now", value=target.held_pings)
        yield GaugeMetricFamily("easload_target_held_syncs", "Syncs with Wait / HeartbeatInterval held right now",
                                value=target.held_syncs)
        holds = CounterMetricFamily("easload_target_sync_holds", "Syncs with Wait / HeartbeatInterval by how they "
                                    "ended: changes, expired (empty answer), refused (Status 14 or 4)",
                                    labels=["outcome"])
        for outcome, n in sorted(target.sync_holds.items()):  # a fixed set of names (server.py held_sync)
            holds.add_metric([outcome], n)
        yield holds
        yield GaugeMetricFamily("easload_target_active_requests", "Requests in progress (counted for EasMaxConcurrency)",
                                value=sum(state.throttle.active.values()))
        yield GaugeMetricFamily("easload_target_mailboxes", "Mailboxes materialised", value=len(state.mailboxes))
        throttled = CounterMetricFamily("easload_target_throttled", "503 throttling answers by X-MS-ASThrottle reason",
                                        labels=["reason"])
        for reason, n in sorted(target.throttled.items()):
            throttled.add_metric([reason], n)
        yield throttled
        faults = CounterMetricFamily("easload_target_faults_injected", "Injected faults by kind", labels=["kind"])
        for kind, n in sorted(target.faults.injected.items()):
            faults.add_metric([kind], n)
        yield faults
        mail = CounterMetricFamily("easload_target_mail", "Mail actions of the target's store (submitted, delivered, "
                                   "external recipients, duplicates, read, flagged, deleted, moved...)", labels=["event"])
        for event, n in state.store.counters.items():  # a fixed set of names (store.COUNTERS)
            mail.add_metric([event], n)
        yield mail
        yield GaugeMetricFamily("easload_target_policy_version", "Policy changes since start (1 = initial)",
                                value=state.policy_version)


def make_registry(target):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TargetCollector(target))
    return registry


def exposition(registry):
    return generate_latest(registry)


# -- a multi-process target (cluster.py): one endpoint with the totals of every process

# Gauges that every process has the same value of (the policy is broadcast): the merged value is the
# largest one (equal in a settled cluster), not a sum.
SAME_IN_EVERY_PROCESS = frozenset({"easload_target_policy_version"})


class _MergedCollector:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return iter(self.families)


def merge_expositions(texts, per_process=None):
    """One exposition whose every sample is the sum over the processes' expositions ``texts``.

    Counters, histogram buckets/_count/_sum and the gauges of counts (devices,
    held Pings and Syncs, active requests, mailboxes) are additive across processes that
    own disjoint users, so the merged endpoint reads exactly like a single
    target's; :data:`SAME_IN_EVERY_PROCESS` gauges take the maximum.
    ``per_process`` (optional: {process index: held Pings}) adds
    ``easload_target_process_held_pings{process}`` (label bounded by the number
    of processes) and ``easload_target_processes``.
    """
    from prometheus_client.core import Metric
    from prometheus_client.parser import text_string_to_metric_families

    order = []
    merged = {}  # family name -> (Metric, {(sample name, labels): value})
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        for family in text_string_to_metric_families(text):
            entry = merged.get(family.name)
            if entry is None:
                entry = merged[family.name] = (Metric(family.name, family.documentation, family.type), {})
                order.append(family.name)
            values = entry[1]
            same = family.name in SAME_IN_EVERY_PROCESS
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = values.get(key)
                if old is None:
                    values[key] = sample.value
                else:
                    values[key] = max(old, sample.value) if same else old + sample.value
    families = []
    for name in order:
        metric, values = merged[name]
        for (sample_name, labels), value in values.items():
            metric.add_sample(sample_name, dict(labels), value)
        families.append(metric)
    if per_process is not None:
        processes = GaugeMetricFamily("easload_target_processes", "Processes of the embedded target",
                                      value=len(per_process))
        held = GaugeMetricFamily("easload_target_process_held_pings", "Pings held right now, by target process",
                                 labels=["process"])
        for index, n in sorted(per_process.items()):
            held.add_metric([str(index)], n)
        families += [processes, held]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_MergedCollector(families))
    return generate_latest(registry)
