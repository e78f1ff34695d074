"""The workload's task figures: fixed names of task types and results.

A user-day (loadgen/run/day.py) is a list of tasks, each of one of ``TASK_TYPES``; the device counts
what the plan gives it with ``Stats.tasks_planned(type, n)`` and each task it carried out with
``Stats.task_done(type, planned_at, started_at, ended_at, ok)``, whose latency counts from the planned
time (open model: a task started late because the device was busy or the server slow is not hidden,
the "coordinated omission" a closed loop would commit).  ``Stats.task_queued(+1 / -1)`` follows the
tasks that fell due while their device was busy.  Every name outside ``TASK_TYPES`` is counted as
``other``, so neither summary.json's keys nor the Prometheus series (``easload_tasks_total{type,result}``,
``easload_task_latency_seconds{type}``) can grow with what a device does.

The task types (what a user does, with the requests each needs; MS-ASCMD):
  send      compose a new message: GAL look-ups while typing (2.2.1.16 Search), then SendMail (2.2.1.17)
  reply     SmartReply (2.2.1.20) on a message of the Inbox
  forward   SmartForward (2.2.1.19)
  process   read / delete / move / flag the new mail: a Sync with the changes (2.2.1.21), MoveItems (2.2.1.12)
  meeting   answer a meeting request (2.2.1.11 MeetingResponse)
  calendar  add or edit an appointment (Sync Add/Change in the calendar folder, MS-ASCAL)
  contact   add or edit a contact (Sync Add/Change in the contacts folder, MS-ASCNTC)
  search    a mailbox search (2.2.1.16 Search, Mailbox store)
  receive   external mail the embedded target delivers (a target-side task: planned, achieved when delivered)

A task is *late* when it started more than ``LATE_AFTER`` seconds after its planned time (as a device's
start is, loadgen/run/engine.py).

Every planned task ends as exactly one of: *achieved*, *failed*, *skipped* -- carried out at its time but
it found nothing to act on (a meeting answer with no meeting request waiting: nothing is sent, and the
planned load was not generated) --, *unstarted* -- never started: its device never enrolled (Provision
refused, blocked, quarantined, no answer) or was busy or gone until the run ended --, or cut (in flight
when the run ended: counted nowhere but planned).  ``achieved_ratio`` is achieved / planned: skipped and
unstarted tasks count against it, so a run whose devices failed to come up or whose tasks found nothing
to do cannot look good; ``tasks.skipped`` / ``tasks.unstarted`` (and per type) are thresholds of their own.
"""

OTHER = "other"

TASK_TYPES = ("send", "reply", "forward", "process", "meeting", "calendar", "contact", "search", "receive")
TASK_LABELS = TASK_TYPES + (OTHER,)

# what is counted per type: planned (the plan of every device of the run), achieved (done, ok), failed (done,
# not ok), late (started more than LATE_AFTER after its planned time; achieved or failed), skipped (found
# nothing to do), unstarted (never started)
RESULTS = ("planned", "achieved", "failed", "late", "skipped", "unstarted")
SKIPPED = "skipped"  # what a task returns when it found nothing to act on (loadgen/device/mail.py _run_task)

LATE_AFTER = 0.1  # seconds

# threshold fields of a task type (loadgen/results/thresholds.py): latency percentiles from the planned
# time (seconds) and ratios
LATENCY_FIELDS = ("p50", "p90", "p95", "p99", "max")
TYPE_FIELDS = LATENCY_FIELDS + ("achieved_ratio", "late_ratio") + RESULTS
# over every type: tasks.<field>
TOTAL_FIELDS = ("achieved_ratio", "late_ratio", "failed_ratio", "queued_peak") + RESULTS

_TYPE_SET = frozenset(TASK_TYPES)


def task_label(task_type):
    """``task_type`` if it is one of TASK_TYPES, else "other"."""
    return task_type if task_type in _TYPE_SET else OTHER


__all__ = ["TASK_TYPES", "TASK_LABELS", "RESULTS", "SKIPPED", "LATE_AFTER", "LATENCY_FIELDS", "TYPE_FIELDS",
           "TOTAL_FIELDS", "OTHER", "task_label"]
