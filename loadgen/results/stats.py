"""Run statistics: what the devices record as the run goes, and the summary's fields (``Stats.to_dict``).

Latency is kept per command in HDR histograms (microseconds, 3 significant
digits, 1 us .. 1 h), so percentiles are exact to 0.1 % and histograms from
several workers or shards can be merged without averaging percentiles.  The
mail figures (``Stats.mail``, ``Stats.push_latency``; their names in
loadgen/results/mail.py) use the same recorders: a push latency of 1 ms .. 1 h
is kept to 0.1 %, a longer one is counted as 1 h.

The hot path (``Stats.record``) only updates plain dicts and lists: the
Prometheus endpoint reads these at scrape time (``loadgen.results.metrics``), so no
metric lock or label lookup is paid per request.
"""

import ctypes
import time
from bisect import bisect_left
from collections import Counter

from hdrh.histogram import HdrHistogram

from loadgen.results.buckets import LONG_BUCKETS, buckets_for
from loadgen.results.histograms import interval_entry, sparse_counts
from loadgen.results.mail import EVENT_LABELS, MAIL_EVENTS, PUSH_LABELS
from loadgen.results.outcomes import INTERRUPTED, OK_OUTCOMES, TIMEOUT, fold
from loadgen.results.tasks import LATE_AFTER, RESULTS, TASK_LABELS

_LOW_US, _HIGH_US, _DIGITS = 1, 3_600_000_000, 3

# Prometheus buckets (loadgen/results/buckets.py): request durations per command (buckets_for: Ping
# apart), and 5 ms .. 1 h for push, task latency and schedule lag
LATENCY_BUCKETS = LONG_BUCKETS


class Recorder:
    """An HdrHistogram with a fast ``record``.

    It computes the counts index of hdrh's ``record_value`` (``_counts_index_for``)
    with precomputed constants and leaves total/min/max to :meth:`histogram`.
    tests/test_report.py checks it against ``record_value`` value for value.
    """

    __slots__ = ("hist", "counts", "mask", "unit", "half_mag", "half_count", "total", "min", "max")

    def __init__(self):
        self.hist = HdrHistogram(_LOW_US, _HIGH_US, _DIGITS)
        h = self.hist
        self.counts = h.counts
        self.mask = h.sub_bucket_mask
        self.unit = h.unit_magnitude
        self.half_mag = h.sub_bucket_half_count_magnitude
        self.half_count = h.sub_bucket_half_count
        self.total = 0
        self.min = None
        self.max = 0

    def record(self, value):
        """Record an integer value in [1, 3.6e9] (microseconds)."""
        bucket = (value | self.mask).bit_length() - self.unit - self.half_mag - 1
        sub = value >> (bucket + self.unit)
        self.counts[((bucket + 1) << self.half_mag) + sub - self.half_count] += 1
        self.total += 1
        if value > self.max:
            self.max = value
        if self.min is None or value < self.min:
            self.min = value

    def reset(self):
        """Empty, for use again: counts zeroed in place (C memset)."""
        ctypes.memset(ctypes.addressof(self.counts), 0, ctypes.sizeof(self.counts))
        self.total = 0
        self.min = None
        self.max = 0

    def histogram(self):
        h = self.hist
        h.total_count = self.total
        if self.total:
            h.min_value = self.min
            h.max_value = self.max
        return h


def _layout():  # every Recorder's counts layout, for Stats.record's inlined index
    h = HdrHistogram(_LOW_US, _HIGH_US, _DIGITS)
    return h.sub_bucket_mask, h.unit_magnitude, h.sub_bucket_half_count_magnitude, h.sub_bucket_half_count


_MASK, _UNIT, _HALF_MAG, _HALF_COUNT = _layout()
_SHIFT = _UNIT + _HALF_MAG + 1


def _add(total, part):
    """Add Recorder ``part`` into Recorder ``total`` (same layout): counts in C, then total/min/max."""
    total.hist.encoder.add(part.hist.encoder)
    total.total += part.total
    if part.max > total.max:
        total.max = part.max
    if part.min is not None and (total.min is None or part.min < total.min):
        total.min = part.min


# Bounded label sets: a value the server controls is folded into OTHER where it first enters Stats,
# so that neither the Prometheus series nor summary.json's keys can grow with what a server sends.
OTHER = "other"
# X-MS-ASThrottle (MS-ASHTTP 2.2.2.1.2.13) as Exchange sends it, the DeviceAccessStateReason for an
# exhausted budget (loadgen/exchange/throttle.py), and the reasons the devices record themselves
# (loadgen/device/life.py, loadgen/eas/provisioning.py)
THROTTLE_REASONS = frozenset((
    "CommandFrequency", "RecentCommands", "TooManyJobsQueued", "OutOfBudgets", "OverBudget",
    "BackOffDuration", "unspecified", "503"))
# EAS Status values: MS-ASCMD defines command-specific values from 1 and the common status codes
# 101-177 (MS-ASCMD 2.2.2); anything outside 1..199, or past EAS_STATUS_CAP distinct values of one
# command, is folded
EAS_STATUS_MAX = 199
EAS_STATUS_CAP = 32


# mail: an event's label by name (MAIL_EVENTS; anything else is OTHER), a push kind's first slot in
# Stats.push_buckets (PUSH_KINDS, then OTHER: one run of len(LATENCY_BUCKETS) + 1 slots each)
_MAIL_LABEL = {e: e for e in MAIL_EVENTS}
_PUSH_SLOTS = len(LATENCY_BUCKETS) + 1
_PUSH_SLOT = {k: i * _PUSH_SLOTS for i, k in enumerate(PUSH_LABELS)}
_PUSH_MAX_S = _HIGH_US / 1_000_000
# tasks (loadgen/results/tasks.py): a type's label (TASK_TYPES, else OTHER) and its first slot in
# Stats.task_buckets (TASK_LABELS' runs of len(LATENCY_BUCKETS) + 1 slots each)
_TASK_SLOT = {t: i * _PUSH_SLOTS for i, t in enumerate(TASK_LABELS)}


# TLS handshakes (loadgen/wire/tlsconn.py): the results counted, and the Prometheus buckets of their
# duration (1 ms .. 10 s: a handshake on a LAN takes a few ms, a loaded server's seconds), per kind
TLS_RESULTS = ("full", "resumed", "failed")
TLS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TLS_TIMINGS = {"full": "TLSHandshakeFull", "resumed": "TLSHandshakeResumed"}  # their HDR timings' names
_TLS_SLOTS = len(TLS_BUCKETS) + 1
_TLS_SLOT = {"full": 0, "resumed": _TLS_SLOTS}


def http_status_label(status):
    """The by_key / Prometheus label of an HTTP status: the number for 100-599 (RFC 9110 15), else "other"."""
    return str(status) if 100 <= status <= 599 else OTHER


class Stats:
    """Everything the summary and the metrics need, recorded as the run goes."""

    def __init__(self):
        self.started = time.time()
        self.ended = None
        self.by_key = {}  # (command, outcome, http status or outcome label) -> n
        self.eas_statuses = Counter()  # (command, status) -> n
        self._latency = {}  # command -> Recorder (microseconds) of the closed intervals; see latency
        self.timings = {}  # Enrolment / EnrolmentUncorrected / StartLag -> Recorder (not requests)
        self.buckets = {}  # (command, outcome) -> [count per LATENCY_BUCKETS slot (+Inf last)]
        self._slots = {}  # (command, outcome, HTTP status) -> record()'s keys and bucket list (see _slot)
        # interval recorders emptied at the interval's end, used again: each holds a 184 KiB counts
        # array (and hdrh's histogram <-> encoder cycle), a new one per command and interval would
        # wait for a full garbage collection and fragment the heap meanwhile
        self._spare = []
        self.sums = {}  # (command, outcome) -> seconds
        self.provisionings = Counter()  # (result, ack status) -> n
        self.reprovisions = Counter()  # trigger -> n
        self.wipes = Counter()  # ack status -> n
        self.throttled = Counter()  # reason -> n
        self.malformed = Counter()  # command -> n
        self.reenrolments = 0
        self.late_starts = 0  # devices that started more than 100 ms after their intended time
        self.starts = 0  # devices started (open model: arrivals), for the metrics' arrival rate
        self.lag_buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # schedule lag per LATENCY_BUCKETS slot (+Inf last)
        self.lag_sum = 0.0
        self.password_changes = Counter()  # rule the old password broke -> changes
        self.code_words = 0  # code word requests after CodeWordFrequency failed unlocks
        self.local_wipes = 0  # wipes after MaxDevicePasswordFailedAttempts failed unlocks
        self.policy_effects = Counter()  # preferences clamped / attachment fetches allowed or skipped (policy.py)
        self.compliance = Counter()  # acknowledgement status the devices sent -> devices
        self.unmet = Counter()  # policy the devices could not apply -> devices
        self.bytes_sent = 0
        self.bytes_received = 0
        # the load generator's own memory (RSS, bytes): before the devices exist, the highest seen at a
        # tick, and at the last tick of the run (the devices in their steady life, e.g. holding Pings);
        # with --workers and merged shards these add up over the processes
        self.rss_base = 0
        self.rss_peak = 0
        self.rss_end = 0
        self.rss_with_target = False  # the embedded target runs in this process: its memory is in the figures
        self.final_states = Counter()
        self.cancelled = Counter()  # command -> requests in flight when the run was cut
        # command -> first attempts of requests the transport re-sent on a fresh connection (the server
        # had closed the kept-alive one before answering; it may have read them): part of "sent"
        self.resent = Counter()
        # command -> requests cancelled before they were written (in the pool's queue, connecting):
        # never sent, so not in "sent" (the transport moves them out of ``cancelled``)
        self.not_sent = Counter()
        # exception type -> devices ended by an unexpected exception of their own (caught in one
        # place, loadgen/run/engine.py Lives.crashed; the run goes on)
        self.device_errors = Counter()
        # mail (loadgen/results/mail.py): event -> n; push latency per recipient kind: its HDR recorder
        # (microseconds), its Prometheus buckets (PUSH_LABELS' runs of LATENCY_BUCKETS slots, +Inf last:
        # a list named *_buckets and a Counter, so that --workers ship them with every snapshot) and sums
        self.mail_events = Counter()
        self.push_hdr = {}  # kind -> Recorder
        self.push_buckets = [0] * (len(PUSH_LABELS) * _PUSH_SLOTS)
        self.push_sums = Counter()  # kind -> seconds
        # tasks of the user-day (loadgen/results/tasks.py): (type, result) -> n with result planned,
        # achieved, failed, late; latency from the planned time per type: HDR recorder (microseconds),
        # Prometheus buckets (TASK_LABELS' runs of LATENCY_BUCKETS slots, +Inf last) and sums; the tasks
        # due while their device was busy (now, and the highest seen)
        self.task_counts = Counter()
        self.task_hdr = {}  # type -> Recorder
        self.task_buckets = [0] * (len(TASK_LABELS) * _PUSH_SLOTS)
        self.task_sums = Counter()  # type -> seconds
        # TLS handshakes of the lean transport: result (TLS_RESULTS) -> n; their duration in TLS_BUCKETS
        # (full, then resumed: +Inf last in each run) and sums per kind; the HDR figures are timings
        # (TLS_TIMINGS: "TLSHandshakeFull", "TLSHandshakeResumed")
        self.tls_handshakes = Counter()
        self.tls_handshake_buckets = [0] * (2 * _TLS_SLOTS)
        self.tls_handshake_sums = Counter()
        self.tasks_queued = 0
        self.tasks_queued_peak = 0
        self.tasks_queued_peak_bound = False  # True: the sum of several processes' peaks (an upper bound)
        self._throttle_reasons = {}  # reason the server sent -> its label (THROTTLE_REASONS or OTHER)
        self._eas_keys = {}  # (command, EAS status) -> its eas_statuses key (folded, see EAS_STATUS_CAP)
        self._eas_per_command = {}  # command -> distinct EAS status values kept (a dict: workers ship Counters)
        self.events = []  # (seconds into the run, action, result)
        self.interval_latency = {}  # command -> Recorder since the last sample
        self.interval_lag = None  # Recorder of the schedule lag (us) since the last sample, None if no start
        self.series = []  # one sample per interval (see sample())
        self._last = {}
        self._last_tasks = {}  # "<type> <result>" -> n at the last sample
        self.interrupted = False
        self.aborted = None  # why the run stopped itself (the backlog guard, loadgen/run/engine.py), or None
        self.total = 0
        self.failures = 0  # requests whose outcome is not in OK_OUTCOMES

    def record(self, command, http_status, outcome, seconds, sent, received, eas_status=None):
        slot = self._slots.get((command, outcome, http_status))
        if slot is None or slot[3] is not self.buckets:
            slot = self._slot(command, outcome, http_status)
        key, hkey, counts, _buckets, failure, edges = slot
        by_key = self.by_key
        by_key[key] = by_key.get(key, 0) + 1
        self.total += 1
        self.failures += failure
        us = int(seconds * 1_000_000)
        us = _LOW_US if us < _LOW_US else (_HIGH_US if us > _HIGH_US else us)
        # only the interval's recorder: it is added to the run's (C, hdrh's add_array) when the
        # interval closes (sample) or when the run's histograms are read (latency)
        rec = self.interval_latency.get(command)
        if rec is None:
            rec = self.interval_latency[command] = self._spare.pop() if self._spare else Recorder()
        # Recorder.record's arithmetic, inlined
        bucket = (us | _MASK).bit_length() - _SHIFT
        rec.counts[((bucket + 1) << _HALF_MAG) + (us >> (bucket + _UNIT)) - _HALF_COUNT] += 1
        rec.total += 1
        if us > rec.max:
            rec.max = us
        if rec.min is None or us < rec.min:
            rec.min = us
        counts[bisect_left(edges, seconds)] += 1
        self.sums[hkey] += seconds
        self.bytes_sent += sent
        self.bytes_received += received
        if eas_status is not None:
            statuses = self.eas_statuses
            skey = self._eas_keys.get((command, eas_status))
            if skey is None:
                skey = self._eas_key(command, eas_status)
            statuses[skey] = statuses.get(skey, 0) + 1

    def _eas_key(self, command, status):
        """The eas_statuses key of an EAS status, worked out once per (command, value): values
        outside 1..EAS_STATUS_MAX, and new values past EAS_STATUS_CAP of one command, are OTHER."""
        keys = self._eas_keys
        if len(keys) > 10_000:  # only reached with folded values: forget them, they fold again
            keys.clear()
        if type(status) is int and 1 <= status <= EAS_STATUS_MAX and (
                (command, status) in self.eas_statuses or self._eas_per_command.get(command, 0) < EAS_STATUS_CAP):
            if (command, status) not in self.eas_statuses:
                self._eas_per_command[command] = self._eas_per_command.get(command, 0) + 1
            key = (command, status)
        else:
            key = (command, OTHER)
        keys[(command, status)] = key
        return key

    def _slot(self, command, outcome_in, http_status):
        """What record() needs for one (command, outcome, HTTP status), worked out once: the
        by_key key (the status label), the (command, outcome) key and its Prometheus bucket
        counts; with the buckets dict it belongs to (merges replace the dicts)."""
        outcome = fold(outcome_in)
        key = (command, outcome, http_status_label(http_status) if http_status else outcome)
        hkey = (command, outcome)
        edges = buckets_for(command)
        counts = self.buckets.get(hkey)
        if counts is None:
            counts = self.buckets[hkey] = [0] * (len(edges) + 1)
        if hkey not in self.sums:
            self.sums[hkey] = 0.0
        if len(self._slots) > 10_000:
            self._slots.clear()
        slot = (key, hkey, counts, self.buckets, 0 if outcome in OK_OUTCOMES else 1, edges)
        self._slots[(command, outcome_in, http_status)] = slot
        return slot

    @property
    def latency(self):
        """command -> Recorder of the whole run so far (microseconds): the closed intervals
        plus the current one (a merged copy: the current interval stays apart)."""
        pending = self.interval_latency
        if not pending:
            return self._latency
        merged = dict(self._latency)
        for command, part in pending.items():
            rec = Recorder()
            total = merged.get(command)
            if total is not None:
                _add(rec, total)
            _add(rec, part)
            merged[command] = rec
        return merged

    @latency.setter
    def latency(self, value):  # merged results (workers.py): histograms of the whole run, nothing pending
        self._latency = value
        self.interval_latency = {}

    def _close_interval(self):
        """Add the interval's recorders to the run's."""
        spare = self._spare
        for command, part in self.interval_latency.items():
            total = self._latency.get(command)
            if total is None:
                total = self._latency[command] = Recorder()
            _add(total, part)
            part.reset()
            spare.append(part)
        self.interval_latency = {}

    def _observe(self, name, seconds):
        rec = self.timings.get(name)
        if rec is None:
            rec = self.timings[name] = Recorder()
        us = int(seconds * 1_000_000)
        rec.record(_LOW_US if us < _LOW_US else (_HIGH_US if us > _HIGH_US else us))

    def enrolment(self, corrected, uncorrected):
        """First provisioning of a device: from its intended start (what a user waiting for the
        phone sees, so a slow server cannot hide behind late starts) and from its actual start."""
        self._observe("Enrolment", corrected)
        self._observe("EnrolmentUncorrected", uncorrected)

    def start_lag(self, lag, late_after):
        lag = max(lag, 0.0)
        self._observe("StartLag", lag)
        rec = self.interval_lag
        if rec is None:
            rec = self.interval_lag = self._spare.pop() if self._spare else Recorder()
        us = int(lag * 1_000_000)
        rec.record(_LOW_US if us < _LOW_US else (_HIGH_US if us > _HIGH_US else us))
        self.starts += 1
        self.lag_buckets[bisect_left(LATENCY_BUCKETS, lag)] += 1
        self.lag_sum += lag
        if lag > late_after:
            self.late_starts += 1

    def mail(self, event, n=1):
        """A mail event of a device (one of MAIL_EVENTS; any other name is counted as "other")."""
        self.mail_events[_MAIL_LABEL.get(event, OTHER)] += n

    def push_latency(self, kind, seconds):
        """A message of this run reached a recipient's device ``seconds`` after its sender submitted it;
        ``kind`` how the recipient was addressed (PUSH_KINDS; any other is "other").  Below 0 (clocks
        of two machines apart) counts as 0, above an hour as an hour, not a number as 0."""
        if kind not in _PUSH_SLOT:
            kind = OTHER
        if not seconds > 0:  # negative, zero or NaN
            seconds = 0.0
        elif seconds > _PUSH_MAX_S:
            seconds = _PUSH_MAX_S
        rec = self.push_hdr.get(kind)
        if rec is None:
            rec = self.push_hdr[kind] = Recorder()
        us = int(seconds * 1_000_000)
        rec.record(us if us > _LOW_US else _LOW_US)
        self.push_buckets[_PUSH_SLOT[kind] + bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.push_sums[kind] += seconds

    def push_bucket_counts(self, kind):
        """The Prometheus bucket counts (one per LATENCY_BUCKETS slot, +Inf last) of a push kind."""
        at = _PUSH_SLOT[kind]
        return self.push_buckets[at:at + _PUSH_SLOTS]

    def push_percentiles(self, kind):
        return percentiles(self.push_hdr[kind].histogram())

    def mail_dict(self):
        """summary.json's ``mail``: events (non-zero, in MAIL_EVENTS' order, "other" last), push latency
        per kind (count, p50/p90/p99/max in ms, as ``latency``) and its HDR histograms (hdrh's form)."""
        kinds = [k for k in PUSH_LABELS if k in self.push_hdr and self.push_hdr[k].total]
        return {
            "events": {e: self.mail_events[e] for e in EVENT_LABELS if self.mail_events.get(e)},
            "push_latency": {k: self.push_percentiles(k) for k in kinds},
            "push_latency_histograms": {k: self.push_hdr[k].histogram().encode().decode("ascii") for k in kinds},
        }

    # -- tasks (loadgen/results/tasks.py)

    def tasks_planned(self, task_type, n=1):
        """``n`` tasks of ``task_type`` in the plan a device took for the run (any other name: "other")."""
        self.task_counts[(task_type if task_type in _TASK_SLOT else OTHER, "planned")] += n

    def task_done(self, task_type, planned_at, started_at, ended_at, ok):
        """A task carried out: its planned, start and end times (the loop's clock, seconds) and whether
        every request of it succeeded.  Its latency counts from the planned time (open model: a late
        start is part of what the user waited); a start more than LATE_AFTER after the plan is late.
        A latency below 0 counts as 0, above an hour as an hour, not a number as 0."""
        if task_type not in _TASK_SLOT:
            task_type = OTHER
        counts = self.task_counts
        counts[(task_type, "achieved" if ok else "failed")] += 1
        if started_at - planned_at > LATE_AFTER:
            counts[(task_type, "late")] += 1
        seconds = ended_at - planned_at
        if not seconds > 0:
            seconds = 0.0
        elif seconds > _PUSH_MAX_S:
            seconds = _PUSH_MAX_S
        rec = self.task_hdr.get(task_type)
        if rec is None:
            rec = self.task_hdr[task_type] = Recorder()
        us = int(seconds * 1_000_000)
        rec.record(us if us > _LOW_US else _LOW_US)
        self.task_buckets[_TASK_SLOT[task_type] + bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.task_sums[task_type] += seconds

    task = task_done

    def task_result(self, task_type, result, n=1):
        """``n`` tasks of ``task_type`` that ended as ``result`` without a latency: "skipped" (found nothing
        to do) or "unstarted" (never started; loadgen/results/tasks.py)."""
        self.task_counts[(task_type if task_type in _TASK_SLOT else OTHER, result)] += n

    def task_queued(self, delta):
        """+1 when a task falls due while its device is busy with an earlier one, -1 when it starts."""
        queued = self.tasks_queued + delta
        self.tasks_queued = queued
        if queued > self.tasks_queued_peak:
            self.tasks_queued_peak = queued

    def task_bucket_counts(self, task_type):
        """The Prometheus bucket counts (one per LATENCY_BUCKETS slot, +Inf last) of a task type."""
        at = _TASK_SLOT[task_type]
        return self.task_buckets[at:at + _PUSH_SLOTS]

    def tasks_dict(self):
        """summary.json's ``tasks`` (empty without a workload): see :func:`tasks_summary`."""
        return tasks_summary(self.task_counts, {t: r.histogram() for t, r in self.task_hdr.items()},
                             self.tasks_queued_peak, self.tasks_queued, self.tasks_queued_peak_bound)

    def provisioning(self, result, ack_status):
        self.provisionings[(result, str(ack_status))] += 1

    def reprovision(self, trigger):
        self.reprovisions[trigger] += 1

    def wipe(self, ack_status):
        self.wipes[str(ack_status)] += 1

    def throttle(self, reason):
        label = self._throttle_reasons.get(reason)
        if label is None:
            label = reason if reason in THROTTLE_REASONS else OTHER
            if len(self._throttle_reasons) < 1000:
                self._throttle_reasons[reason] = label
        self.throttled[label] += 1

    def tls_handshake(self, result, seconds):
        """A TLS handshake of a device's connection: "full", "resumed" (the server took the session
        the device offered: RFC 8446 2.2, RFC 5077) or "failed" (no duration recorded)."""
        if result not in _TLS_SLOT:  # "failed" (anything else is counted as failed too: bounded labels)
            self.tls_handshakes["failed"] += 1
            return
        self.tls_handshakes[result] += 1
        seconds = seconds if seconds > 0 else 0.0
        self._observe(TLS_TIMINGS[result], seconds)
        self.tls_handshake_buckets[_TLS_SLOT[result] + bisect_left(TLS_BUCKETS, seconds)] += 1
        self.tls_handshake_sums[result] += seconds

    def tls_bucket_counts(self, kind):
        """The Prometheus bucket counts (one per TLS_BUCKETS slot, +Inf last) of "full" or "resumed"."""
        at = _TLS_SLOT[kind]
        return self.tls_handshake_buckets[at:at + _TLS_SLOTS]

    def resend(self, command):
        """A request the transport re-sent on a fresh connection: its first attempt is in "sent"."""
        self.resent[command] += 1

    def unsent(self, command):
        """A request cancelled before it was written: out of ``cancelled`` (the engine counts a device's
        request in flight there before it cancels it), into ``not_sent``."""
        if self.cancelled.get(command, 0) > 0:
            self.cancelled[command] -= 1
            if not self.cancelled[command]:
                del self.cancelled[command]
        self.not_sent[command] += 1

    def reenrolment(self):
        self.reenrolments += 1

    def malformed_response(self, command):
        self.malformed[command] += 1

    def sample(self, elapsed, device_states):
        """Close one interval of the time series: counts since the last sample, devices by
        state, and per-command latency of the interval (count, percentiles and the HDR histogram,
        so that percentiles over time stay exact when runs are merged).

        Also per interval, only non-zero keys: ``http`` (command and HTTP status or error label,
        as summary.json's by_command_status), ``eas`` (command and EAS Status, as eas_statuses),
        and ``lag`` when devices started in the interval: starts, late starts (> 100 ms), the
        schedule lag's mean, max and percentiles (ms) and its HDR histogram (microseconds).

        An interval's HDR histogram is ``"counts"``: the non-zero entries of hdrh's counts array in
        the sparse form loadgen/results/histograms.py describes, which merges without decoding, its
        percentiles equal to hdrh's."""
        current = {
            "requests": {"%s %s" % (c, o): n for (c, o), n in self.outcomes.items()},
            "http": {"%s %s" % (c, st): n for (c, st), n in self.requests.items()},
            "eas": {"%s %s" % (c, st): n for (c, st), n in self.eas_statuses.items()},
            "provisionings": {"%s ack=%s" % k: n for k, n in self.provisionings.items()},
            "reprovisions": dict(self.reprovisions),
            "throttled": dict(self.throttled),
            "wipes": dict(self.wipes),
        }
        point = {"t": round(elapsed, 3), "devices": dict(device_states)}
        for name, values in current.items():
            last = self._last.get(name, {})
            point[name] = {k: v - last.get(k, 0) for k, v in values.items() if v - last.get(k, 0)}
        last_starts, last_late, last_sum = self._last.get("lag", (0, 0, 0.0))
        current["lag"] = (self.starts, self.late_starts, self.lag_sum)
        self._last = current
        # percentiles read from the sparse counts, not by hdrh's percentile loop

        def entry(rec):  # the non-zero counts: hdrh's encoder (C) walks the counts array, then decoded
            counts = sparse_counts(rec.histogram().encode())
            keys = sorted(counts)
            return interval_entry(keys, list(map(counts.__getitem__, keys)))

        rec = self.interval_lag
        if rec is not None and rec.total:
            lat = entry(rec)
            starts = self.starts - last_starts
            point["lag"] = {"starts": starts, "late": self.late_starts - last_late,
                            "mean_ms": round((self.lag_sum - last_sum) / max(starts, 1) * 1000, 3),
                            "max_ms": rec.max / 1000, "p50_ms": lat["p50_ms"], "p90_ms": lat["p90_ms"],
                            "p99_ms": lat["p99_ms"], "counts": lat["counts"]}
        if rec is not None:
            rec.reset()
            self._spare.append(rec)
        self.interval_lag = None
        point["latency"] = {command: entry(rec) for command, rec in self.interval_latency.items()}
        if self.task_counts or self.tasks_queued_peak:
            # the interval's tasks: "<type> <result>" -> n (achieved, failed, late, planned), and
            # "queued": the tasks waiting for their device at the interval's end
            last = self._last_tasks
            now = {"%s %s" % k: n for k, n in self.task_counts.items()}
            tasks = {k: v - last.get(k, 0) for k, v in now.items() if v - last.get(k, 0)}
            tasks["queued"] = self.tasks_queued
            point["tasks"] = tasks
            self._last_tasks = now
        self._close_interval()
        self.series.append(point)

    # -- views

    @property
    def requests(self):
        """(command, HTTP status or error label) -> n"""
        result = Counter()
        for (command, _outcome, status), n in self.by_key.items():
            result[(command, status)] += n
        return result

    @property
    def outcomes(self):
        """(command, outcome) -> n"""
        result = Counter()
        for (command, outcome, _status), n in self.by_key.items():
            result[(command, outcome)] += n
        return result

    def errors(self):
        return self.failures

    def percentiles(self, command):
        return percentiles((self.latency.get(command) or self.timings[command]).histogram())

    def to_dict(self, scenario=None, target=None):
        elapsed = (self.ended or time.time()) - self.started
        out = self._to_dict(scenario, elapsed, target)
        tasks = self.tasks_dict()
        if tasks:  # a run with a workload (loadgen/results/tasks.py); without one the summary is as before
            out["tasks"] = tasks
        if self.aborted:
            out["aborted"] = self.aborted
        return out

    def _to_dict(self, scenario, elapsed, target):
        return {
            "scenario": scenario,
            "target": target,
            "started": self.started,
            "elapsed_s": round(elapsed, 3),
            "requests": self.total,
            "requests_per_s": round(self.total / elapsed, 1) if elapsed > 0 else 0.0,
            "errors": self.errors(),
            # (command, outcome, HTTP status or error label, n): the raw counters, mergeable exactly
            "by_key": [[c, o, st, n] for (c, o, st), n in sorted(self.by_key.items())],
            "provisionings_raw": [[r, a, n] for (r, a), n in sorted(self.provisionings.items())],
            "cancelled_raw": dict(self.cancelled),
            "by_command_status": {"%s %s" % k: v for k, v in sorted(self.requests.items())},
            "by_command_outcome": {"%s %s" % k: v for k, v in sorted(self.outcomes.items())},
            "eas_statuses": {"%s %s" % k: v for k, v in sorted(self.eas_statuses.items(), key=eas_order)},
            "latency": {cmd: self.percentiles(cmd) for cmd in sorted(self.latency)},
            # HDR histograms (hdrh's compressed base64 form, microseconds) so runs and shards can be merged
            "histograms": {cmd: self.latency[cmd].histogram().encode().decode("ascii") for cmd in sorted(self.latency)},
            # enrolment time from the intended start (and from the actual start) and the schedule lag
            "timings": {name: self.percentiles(name) for name in sorted(self.timings)},
            "timing_histograms": {name: self.timings[name].histogram().encode().decode("ascii")
                                  for name in sorted(self.timings)},
            "devices": dict(sorted(self.final_states.items())),
            "provisionings": {"%s ack=%s" % k: v for k, v in sorted(self.provisionings.items())},
            "reprovisions": dict(sorted(self.reprovisions.items())),
            "remote_wipes": dict(sorted(self.wipes.items())),
            "reenrolments": self.reenrolments,
            "late_starts": self.late_starts,
            "password_changes": dict(sorted(self.password_changes.items())),
            "code_word_requests": self.code_words,
            "local_wipes": self.local_wipes,
            "policy_effects": dict(sorted(self.policy_effects.items())),
            "compliance": {str(k): v for k, v in sorted(self.compliance.items())},
            "unmet_policies": dict(sorted(self.unmet.items())),
            "throttled": dict(sorted(self.throttled.items())),
            "malformed_responses": dict(sorted(self.malformed.items())),
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "client_rss": {"base_bytes": self.rss_base, "peak_bytes": self.rss_peak, "end_bytes": self.rss_end,
                           "target_in_process": self.rss_with_target},
            "cancelled_in_flight": dict(sorted(self.cancelled.items())),
            # requests re-sent on a fresh connection (their first attempts, part of "sent"), their
            # total (the transports' reconnects), and requests cancelled before they were written
            "resent": dict(sorted(self.resent.items())),
            "reconnects": sum(self.resent.values()),
            "not_sent": dict(sorted(self.not_sent.items())),
            # TLS handshakes by result (full, resumed, failed); their durations are timings
            "tls_handshakes": dict(sorted(self.tls_handshakes.items())),
            "device_errors": dict(sorted(self.device_errors.items())),
            "mail": self.mail_dict(),
            "accounting": accounting(self),
            "events": [{"at_s": t, "action": a, "result": r} for t, a, r in self.events],
            "series": self.series,
            "interrupted": self.interrupted,
        }


def percentiles(hist):
    """A summary's latency entry of an HdrHistogram (microseconds): count, p50/p90/p99/max in ms."""
    return {
        "count": hist.get_total_count(),
        "p50_ms": hist.get_value_at_percentile(50) / 1000,
        "p90_ms": hist.get_value_at_percentile(90) / 1000,
        "p99_ms": hist.get_value_at_percentile(99) / 1000,
        "max_ms": hist.get_max_value() / 1000,
    }


def tasks_summary(counts, hists, queued_peak, queued_end=0, peak_bound=False):
    """summary.json's ``tasks`` from (type, result) -> n counts and type -> HdrHistogram of the latency from
    the planned time (microseconds); ``{}`` when there was no task at all.

    ``by_type``: per type (TASK_TYPES' order, "other" last) planned, achieved, failed, late and the
    latency (count, p50/p90/p99/max in ms, as ``latency``); ``total``: the same counts over the types,
    ``achieved_ratio`` = achieved / planned (None without a plan), ``late_ratio`` = late / done, and the
    queue's peak and end (``queued_peak_bound`` true: the peak is the sum of several processes' or shards'
    peaks, which need not have come at once: an upper bound); ``histograms``: type -> hdrh's encoded form, mergeable exactly."""
    types = [t for t in TASK_LABELS if any(counts.get((t, r)) for r in RESULTS)
             or (t in hists and hists[t].get_total_count())]
    if not types and not queued_peak:
        return {}
    by_type = {}
    total = dict.fromkeys(RESULTS, 0)
    for t in types:
        row = {r: counts.get((t, r), 0) for r in RESULTS}
        for r, n in row.items():
            total[r] += n
        row.update(_ratios(row))
        h = hists.get(t)
        if h is not None and h.get_total_count():
            row["latency"] = percentiles(h)
        by_type[t] = row
    total.update(_ratios(total))
    total["queued_peak"] = queued_peak
    total["queued_peak_bound"] = bool(peak_bound)
    total["queued_end"] = queued_end
    return {"total": total, "by_type": by_type,
            "histograms": {t: hists[t].encode().decode("ascii") for t in types
                           if t in hists and hists[t].get_total_count()}}


def _ratios(row):
    done = row["achieved"] + row["failed"]
    # no plan: no ratio (None, which a threshold on it takes as "no data": it fails)
    return {"achieved_ratio": round(row["achieved"] / row["planned"], 6) if row["planned"] else None,
            "late_ratio": round(row["late"] / done, 6) if done else 0.0,
            "failed_ratio": round(row["failed"] / done, 6) if done else 0.0}


def eas_order(item):
    """Sort key of an ((command, EAS status), n) item: by command, the numbers in order, then "other"."""
    (command, status), _n = item
    return (command, 0, status) if type(status) is int else (command, 1, 0)


def accounting(stats, by_command=False):
    """Where every request of ``stats`` went (see :func:`tally`): totals, or command -> the same dict
    with ``by_command``."""
    return tally((((command, status), n) for (command, _outcome, status), n in stats.by_key.items()),
                 stats.cancelled, stats.resent, stats.not_sent, by_command)


def tally(requests, cancelled, resent, not_sent, by_command=False):
    """Where every request went, from ((command, HTTP status or error label), n) pairs (a Stats' by_key,
    a summary's by_command_status) and the command -> n counters of cancelled, re-sent and never sent
    requests: ``sent`` = ``answered`` (an HTTP status) + ``errors`` (no answer: connection errors,
    malformed or too large responses) + ``timeouts`` + ``cancelled`` (in flight when the run was cut) +
    ``interrupted`` (held Pings the device stopped because its user acted: outcomes.INTERRUPTED) +
    ``resent`` (first attempts the transport sent again on a fresh connection); ``not_sent`` (cancelled
    before they were written) is outside "sent".  A request without an answer carries its outcome as
    its label (``Stats._slot``): "timeout" for a timeout."""
    rows = {}

    def row(command):
        r = rows.get(command)
        if r is None:
            r = rows[command] = {"sent": 0, "answered": 0, "errors": 0, "timeouts": 0, "cancelled": 0,
                                 "interrupted": 0, "resent": 0, "not_sent": 0}
        return r

    for (command, status), n in requests:
        r = row(command)
        if status.isdigit() or status == OTHER:
            r["answered"] += n
        elif status == TIMEOUT:
            r["timeouts"] += n
        elif status == INTERRUPTED:
            r["interrupted"] += n
        else:
            r["errors"] += n
    for name, counter in (("cancelled", cancelled), ("resent", resent), ("not_sent", not_sent)):
        for command, n in counter.items():
            if n:
                row(command)[name] += n
    for r in rows.values():
        r["sent"] = r["answered"] + r["errors"] + r["timeouts"] + r["cancelled"] + r["interrupted"] + r["resent"]
    if by_command:
        return dict(sorted(rows.items()))
    total = {"sent": 0, "answered": 0, "errors": 0, "timeouts": 0, "cancelled": 0, "interrupted": 0, "resent": 0,
             "not_sent": 0}
    for r in rows.values():
        for k, v in r.items():
            total[k] += v
    return total
