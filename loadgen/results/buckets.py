"""Bucket boundaries (seconds) of the Prometheus classic histograms (loadgen/results/metrics.py).

The verdict and the summary use the HDR histograms (loadgen/results/stats.py: 0.1 %); the dashboard
computes percentiles with ``histogram_quantile`` over these buckets, which interpolates linearly inside
the bucket that holds the rank (prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile,
promql/quantile.go).  So the buckets decide how far the dashboard can be from the verdict:

* ``REQUEST_BUCKETS`` (request durations, Ping apart): 0.5 ms .. 120 s, about 10 per decade (ratio
  1.2-1.5 between neighbours from 1 ms to 5 s), including every value a shipped scenario's or the README's threshold
  uses (1, 2.5, 5 ms; 0.75, 1, 1.5, 2, 3, 5 s), so "p99 < 2 s" is a bucket edge, not an interpolation.
  tests/results/test_buckets.py feeds the same samples (log-normal from 1.5 ms to 3 s medians,
  bimodal, gamma, uniform, narrow) to HDR and to these buckets: ``histogram_quantile``'s p50 / p90 /
  p99 stay within ``STATED_ERROR`` (10 %) of HDR's between 0.5 ms and 30 s (the worst case of the
  interpolation is one bucket's width: 50 % where neighbours are 1.5 apart; smooth distributions
  come nowhere near it).  Nothing at 300-3600 s: the longest request timeout of the shipped
  scenarios is 90 s; a longer request (a Sync the server holds, MS-ASCMD 2.2.3.88.2 HeartbeatInterval)
  counts in +Inf, where ``histogram_quantile`` answers 120.
  The price: 47 series per (command, outcome) pair instead of 21 (a shard of a run with faults and
  throttling, ~24 pairs, exports about 1,250 series; a plain run about half that).  Every outcome of a
  command shares one set of edges, so ``sum by (le)`` over outcomes stays a valid histogram.
* ``LONG_BUCKETS`` (Ping, held by the server up to the heartbeat: Exchange allows 60..3540 s, MS-ASCMD
  2.2.3.88.2; push latency, task latency and schedule lag, which span milliseconds to an hour): 5 ms ..
  1 h, coarse.

Prometheus native histograms (exponential buckets, no choice to make) are not used: the installed
prometheus-client (0.26) writes them only in its experimental OpenMetrics 2.0 text, which Prometheus
does not scrape (Prometheus 2.x takes native histograms from the protobuf format only, behind
``--enable-feature=native-histograms``); the client has no protobuf exposition.
"""

REQUEST_BUCKETS = (0.0005, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0065, 0.008,
                   0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08,
                   0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.75,
                   1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0,
                   15.0, 20.0, 30.0, 60.0, 120.0)

LONG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                600.0, 1200.0, 1800.0, 3600.0)

# relative error of histogram_quantile against HDR that tests/results/test_buckets.py holds the
# request buckets to (p50 / p90 / p99, 0.5 ms .. 30 s)
STATED_ERROR = 0.10


def buckets_for(command):
    """The bucket boundaries of a command's request durations: Ping is held on purpose (LONG_BUCKETS)."""
    return LONG_BUCKETS if command == "Ping" else REQUEST_BUCKETS


def le_labels(edges):
    """The ``le`` label values of ``edges`` and +Inf, as prometheus-client writes them (floatToGoString)."""
    return [repr(float(b)) for b in edges] + ["+Inf"]
