"""Prometheus metrics of a run (prometheus-client), created once at import.

Conventions (../shared/reference/observability-conventions.md): one prefix
``easload_``, base units, ``_total`` counters, ``_seconds`` histograms, label
values bounded by design (command, outcome, HTTP status code, EAS status,
state, trigger, reason).  Never a device id, user, URL or policy key.

Ping is held by the server on purpose for up to the heartbeat interval, so its
duration goes to its own histogram and never into request-latency SLOs.
"""

import prometheus_client as prom

REGISTRY = prom.CollectorRegistry(auto_describe=True)

# 5 ms .. 1 h: the longest Ping heartbeat Exchange allows is 3,540 s (facts (d)).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)

REQUESTS = prom.Counter(
    "easload_requests", "EAS requests sent, by command, outcome and HTTP status code",
    ["command", "outcome", "http_status"], registry=REGISTRY)
REQUEST_DURATION = prom.Histogram(
    "easload_request_duration_seconds", "Request duration (send to full response) by command and outcome; Ping excluded",
    ["command", "outcome"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
PING_DURATION = prom.Histogram(
    "easload_ping_duration_seconds", "Ping duration (held by the server on purpose) by outcome",
    ["outcome"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
EAS_STATUS = prom.Counter(
    "easload_eas_status", "EAS Status values seen in command roots, by command", ["command", "status"], registry=REGISTRY)
DEVICES = prom.Gauge("easload_devices", "Simulated devices by state", ["state"], registry=REGISTRY)
PROVISIONINGS = prom.Counter(
    "easload_provisionings", "Provisioning conversations by result and acknowledgement status",
    ["result", "ack_status"], registry=REGISTRY)
REPROVISIONS = prom.Counter(
    "easload_reprovisions", "Re-provisionings by trigger (449, 140, 142, 143, 144)", ["trigger"], registry=REGISTRY)
REMOTE_WIPES = prom.Counter("easload_remote_wipes", "Remote wipes acknowledged, by ack status", ["ack_status"],
                            registry=REGISTRY)
THROTTLED = prom.Counter("easload_throttled", "Throttling answers by reason (X-MS-ASThrottle)", ["reason"],
                         registry=REGISTRY)
BYTES_SENT = prom.Counter("easload_sent_bytes", "Request body bytes sent", registry=REGISTRY)
BYTES_RECEIVED = prom.Counter("easload_received_bytes", "Response body bytes received", registry=REGISTRY)
MALFORMED = prom.Counter("easload_malformed_responses", "Responses that could not be decoded, by command",
                         ["command"], registry=REGISTRY)
RUN_INFO = prom.Gauge("easload_run_info", "Information about the run (value 1)", ["run_id", "scenario", "version"],
                      registry=REGISTRY)

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
