"""The target's own Prometheus metrics, in a registry owned by the target.

Separate from the load generator's ``loadgen.metrics.REGISTRY`` (so a run with
the embedded target never mixes server-side and client-side series), prefixed
``easload_target_``, labels bounded by design (observability-conventions.md):
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
        devices = GaugeMetricFamily("easload_target_devices", "Device partnerships by provisioning, ABQ and wipe state",
                                    labels=["provisioning", "access", "wipe"])
        for (prov, access, wipe), n in sorted(state.state_counts().items()):
            devices.add_metric([prov, access, wipe], n)
        yield devices
        yield GaugeMetricFamily("easload_target_held_pings", "Pings held right now", value=target.held_pings)
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
        yield GaugeMetricFamily("easload_target_policy_version", "Policy changes since start (1 = initial)",
                                value=state.policy_version)


def make_registry(target):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TargetCollector(target))
    return registry


def exposition(registry):
    return generate_latest(registry)
