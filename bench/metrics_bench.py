"""What the Prometheus metrics cost per request (prints figures; not a test).

easload's devices only update plain counters in ``loadgen.results.stats.Stats``
(``Stats.record``: per-command HDR ``Recorder``, the classic-histogram bucket
slot, counters); ``loadgen.results.metrics`` turns them into metric families when
Prometheus scrapes.  This measures, in ns per request (min of several rounds):

* ``Recorder.record``  one HDR histogram update (two per request: run + interval)
* ``Stats.record``     everything a request costs the statistics and the metrics,
  and the part of it done for Prometheus alone (classic-histogram slot and sum)
* the alternatives it replaces: prometheus-client's own ``Counter.labels().inc()``
  + ``Histogram.labels().observe()`` (one process), and the same in multiprocess
  mode (``PROMETHEUS_MULTIPROC_DIR``, mmap files, in a child process);
* one scrape (``metrics.exposition()``) of a run with every command and outcome,
  and what it adds per request at a given request rate and scrape interval;
* one worker snapshot (``--workers``: shipped to the parent once a second), per
  request at a given rate.

    .venv/bin/python bench/metrics_bench.py [--requests 200000] [--rounds 5]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

COMMANDS = ["Provision", "Settings", "FolderSync", "Sync", "Ping", "ItemOperations", "SendMail", "GetItemEstimate"]
OUTCOMES = [("ok", 200), ("reprovision", 449), ("eas_error", 200), ("throttled", 503), ("http_5xx", 500)]


def best(fn, n, rounds):
    times = []
    for _ in range(rounds):
        t = time.perf_counter_ns()
        fn(n)
        times.append(time.perf_counter_ns() - t)
    return min(times) / n


def inputs(n):
    import random

    rng = random.Random(1)
    return [(rng.choice(COMMANDS), *rng.choice(OUTCOMES), rng.expovariate(1 / 0.02), rng.randint(80, 400),
             rng.randint(40, 4000), rng.choice((1, 1, 1, 3, 144))) for _ in range(n)]


def bench_recorder(n, rounds):
    from loadgen.results.stats import Recorder

    values = [max(1, int(x[3] * 1e6)) for x in inputs(n)]

    def run(_n):
        rec = Recorder()
        record = rec.record
        for v in values:
            record(v)

    return best(run, n, rounds)


def bench_stats(n, rounds):
    from loadgen.results.stats import Stats

    data = inputs(n)

    def run(_n):
        stats = Stats()
        record = stats.record
        for cmd, outcome, status, seconds, sent, received, eas in data:
            record(cmd, status, outcome, seconds, sent, received, eas)

    return best(run, n, rounds)


def bench_metrics_share(n, rounds):
    """The statements of Stats.record that only the Prometheus histogram needs (the bucket slot and the
    sum); the by_key counters and HDR histograms serve the summary too."""
    from bisect import bisect_left

    from loadgen.results.stats import LATENCY_BUCKETS

    data = [((cmd, outcome), seconds) for cmd, outcome, _s, seconds, _a, _b, _e in inputs(n)]

    def run(_n):
        buckets, sums = {}, {}
        for hkey, seconds in data:
            counts = buckets.get(hkey)
            if counts is None:
                counts = buckets[hkey] = [0] * (len(LATENCY_BUCKETS) + 1)
                sums[hkey] = 0.0
            counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
            sums[hkey] += seconds

    def loop_only(_n):
        for hkey, seconds in data:
            pass

    return best(run, n, rounds) - best(loop_only, n, rounds)


def bench_client_direct(n, rounds):
    import prometheus_client as prom

    from loadgen.results.stats import LATENCY_BUCKETS

    data = inputs(n)

    def run(_n):
        reg = prom.CollectorRegistry()
        requests = prom.Counter("x_requests", "", ["command", "outcome", "http_status"], registry=reg)
        duration = prom.Histogram("x_duration_seconds", "", ["command", "outcome"], buckets=LATENCY_BUCKETS,
                                  registry=reg)
        eas = prom.Counter("x_eas_status", "", ["command", "status"], registry=reg)
        sent = prom.Counter("x_sent_bytes", "", registry=reg)
        received = prom.Counter("x_received_bytes", "", registry=reg)
        for cmd, outcome, status, seconds, s, r, st in data:
            requests.labels(cmd, outcome, str(status)).inc()
            duration.labels(cmd, outcome).observe(seconds)
            eas.labels(cmd, str(st)).inc()
            sent.inc(s)
            received.inc(r)

    return best(run, n, rounds)


_MULTIPROC_CHILD = r"""
import sys, time
sys.path.insert(0, %(root)r)
import prometheus_client as prom
from loadgen.results.stats import LATENCY_BUCKETS
sys.path.insert(0, %(bench)r)
from metrics_bench import inputs
n, rounds = %(n)d, %(rounds)d
data = inputs(n)
requests = prom.Counter("x_requests", "", ["command", "outcome", "http_status"])
duration = prom.Histogram("x_duration_seconds", "", ["command", "outcome"], buckets=LATENCY_BUCKETS)
eas = prom.Counter("x_eas_status", "", ["command", "status"])
sent = prom.Counter("x_sent_bytes", "")
received = prom.Counter("x_received_bytes", "")
times = []
for _ in range(rounds):
    t = time.perf_counter_ns()
    for cmd, outcome, status, seconds, s, r, st in data:
        requests.labels(cmd, outcome, str(status)).inc()
        duration.labels(cmd, outcome).observe(seconds)
        eas.labels(cmd, str(st)).inc()
        sent.inc(s)
        received.inc(r)
    times.append(time.perf_counter_ns() - t)
print(min(times) / n)
"""


def bench_client_multiprocess(n, rounds):
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=d)
        code = _MULTIPROC_CHILD % {"root": str(Path(__file__).resolve().parent.parent),
                                   "bench": str(Path(__file__).resolve().parent), "n": n, "rounds": rounds}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return float(out.stdout.strip())


def full_stats(n):
    from loadgen.results.stats import Stats

    stats = Stats()
    for cmd, outcome, status, seconds, sent, received, eas in inputs(n):
        stats.record(cmd, status, outcome, seconds, sent, received, eas)
    for result, ack in (("provisioned", 1), ("provisioned", 2), ("failed", 0), ("blocked", 0)):
        stats.provisioning(result, ack)
    for trigger in ("449", "140", "142", "143", "144"):
        stats.reprovision(trigger)
    for reason in ("OutOfBudgets", "CommandFrequency", "BackOffDuration"):
        stats.throttle(reason)
    for i in range(500):
        stats.start_lag(i / 1000, 0.1)
    return stats


def bench_scrape(rounds):
    from loadgen.results import metrics

    stats = full_stats(20000)
    states = {"provisioned": 9000, "provisioning": 10, "quarantined": 50, "blocked": 5, "wiped": 20,
              "throttled": 30, "failed": 3}
    metrics.attach(stats, lambda: states, run_id="bench", scenario="bench", version="0")
    text = metrics.exposition()
    times = []
    for _ in range(rounds * 4):
        t = time.perf_counter_ns()
        metrics.exposition()
        times.append(time.perf_counter_ns() - t)
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    return min(times), series, len(text)


def bench_snapshot(rounds):
    from collections import Counter

    from loadgen.run.workers import _snapshot

    stats = full_stats(20000)

    class D:
        state = "provisioned"

    devices = [D() for _ in range(5000)]
    times = []
    for _ in range(rounds * 4):
        t = time.perf_counter_ns()
        _snapshot(stats, devices, False)
        times.append(time.perf_counter_ns() - t)
    del Counter
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rate", type=float, default=5000.0, help="requests/s for the per-request share of a scrape")
    ap.add_argument("--scrape-interval", type=float, default=5.0)
    a = ap.parse_args()
    n, rounds = a.requests, a.rounds
    print("metrics cost, %d requests, min of %d rounds (ns per request)" % (n, rounds))
    rec = bench_recorder(n, rounds)
    stats = bench_stats(n, rounds)
    share = bench_metrics_share(n, rounds)
    direct = bench_client_direct(n, rounds)
    multi = bench_client_multiprocess(n // 4, rounds)
    scrape_ns, series, size = bench_scrape(rounds)
    snap_ns = bench_snapshot(rounds)
    per_scrape_req = a.rate * a.scrape_interval
    print("  Recorder.record (one HDR update)                          %8.0f ns" % rec)
    print("  Stats.record (all statistics and metrics of a request)    %8.0f ns" % stats)
    print("    of which only for Prometheus (bucket slot + sum)         %8.0f ns" % share)
    print("  prometheus-client labels().inc/observe, one process       %8.0f ns" % direct)
    print("  prometheus-client labels().inc/observe, multiprocess mode %8.0f ns" % multi)
    print("  one scrape: %d series, %d bytes                          %8.2f ms" % (series, size, scrape_ns / 1e6))
    print("    = per request at %.0f req/s, scraped every %.0f s        %8.1f ns"
          % (a.rate, a.scrape_interval, scrape_ns / per_scrape_req))
    print("  one worker snapshot (5,000 devices, --workers)            %8.2f ms" % (snap_ns / 1e6))
    print("    = per request at %.0f req/s per worker, one a second    %8.1f ns" % (a.rate, snap_ns / a.rate))


if __name__ == "__main__":
    main()
