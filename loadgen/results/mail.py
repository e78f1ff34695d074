"""The mail figures' fixed names: what users do with mail (``MAIL_EVENTS``) and how a recipient was
addressed when a message of the run reached its device (``PUSH_KINDS``).

The devices count an event with ``Stats.mail(event)`` and the push latency of a message of the run
(from the sender's submission to the Sync that returned it to a recipient's device) with
``Stats.push_latency(kind, seconds)``.  Both sets are closed: a name outside them is counted under
``other`` (:data:`loadgen.results.stats.OTHER`), so that neither summary.json's keys nor the
Prometheus series (``easload_mail_events_total{event}``, ``easload_push_latency_seconds{kind}``) can
grow with what a device or a server does.
"""

OTHER = "other"

# In the order the reports name them: messages sent (MS-ASCMD 2.2.1.17 SendMail, 2.2.1.20 SmartReply,
# 2.2.1.19 SmartForward) and received (a message of this run found by its token, loadgen/eas/mime.py;
# "received_foreign": of another run or no token; "duplicate": returned by Sync a second time), the
# client's changes (MS-ASCMD 2.2.1.21 Sync Change/Delete, 2.2.1.12 MoveItems), meeting responses
# (MS-ASCMD 2.2.1.11), searches and look-ups (2.2.1.16 Search, 2.2.1.15 ResolveRecipients,
# 2.2.1.9 GetItemEstimate, 2.2.1.18 Settings Oof), items the client added (Sync Add) and folder
# hierarchy changes (2.2.1.5 FolderSync).
MAIL_EVENTS = (
    "sent_new", "sent_reply", "sent_forward", "send_failed",
    "received", "received_foreign", "duplicate",
    "read", "flagged", "deleted", "moved",
    "meeting_accepted", "meeting_tentative", "meeting_declined",
    "search_gal", "search_mailbox", "resolve_recipients", "item_estimate", "oof",
    "calendar_added", "contact_added", "task_added", "folder_changes",
)

# How the recipient was addressed: its own address in the message's Email:To, else in Email:Cc, else it
# was a Bcc recipient (MS-ASEMAIL To and Cc elements; Bcc is not delivered to recipients, RFC 5322 3.6.3)
PUSH_KINDS = ("to", "cc", "bcc")

# every label the figures can carry
EVENT_LABELS = MAIL_EVENTS + (OTHER,)
PUSH_LABELS = PUSH_KINDS + (OTHER,)

# the text and HTML reports' groups of events: (heading, [(event, what it is)])
GROUPS = (
    ("messages", (("sent_new", "sent: new (SendMail)"), ("sent_reply", "sent: reply (SmartReply)"),
                  ("sent_forward", "sent: forward (SmartForward)"), ("send_failed", "send failed"),
                  ("received", "received: messages of this run"),
                  ("received_foreign", "received: other messages"),
                  ("duplicate", "received again (duplicate)"))),
    ("changes", (("read", "marked read"), ("flagged", "flag changed"), ("deleted", "deleted"),
                 ("moved", "moved (MoveItems)"))),
    ("meetings", (("meeting_accepted", "meeting accepted"), ("meeting_tentative", "meeting tentative"),
                  ("meeting_declined", "meeting declined"))),
    ("searches", (("search_gal", "search: GAL"), ("search_mailbox", "search: mailbox"),
                  ("resolve_recipients", "ResolveRecipients"), ("item_estimate", "GetItemEstimate"),
                  ("oof", "Settings Oof"))),
    ("items", (("calendar_added", "calendar item added"), ("contact_added", "contact added"),
               ("task_added", "task added"), ("folder_changes", "folder changes (FolderSync)"),
               (OTHER, "other"))),
)

_EVENT_SET = frozenset(MAIL_EVENTS)
_KIND_SET = frozenset(PUSH_KINDS)


def event_label(event):
    """``event`` if it is one of MAIL_EVENTS, else "other"."""
    return event if event in _EVENT_SET else OTHER


def kind_label(kind):
    """``kind`` if it is one of PUSH_KINDS, else "other"."""
    return kind if kind in _KIND_SET else OTHER


__all__ = ["MAIL_EVENTS", "PUSH_KINDS", "EVENT_LABELS", "PUSH_LABELS", "GROUPS", "OTHER", "event_label",
           "kind_label"]
