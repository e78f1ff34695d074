"""A small generated mailbox per user: an Inbox of messages, append-only.

Messages are generated deterministically from (seed, user) the first time a
mailbox is touched, so 100,000 users cost nothing until their devices sync.
New mail is appended by the admin (``TargetState.deliver_mail``); every
append wakes the Pings held for that user (MS-ASCMD 2.2.1.13 Ping: Status 2
"changes occurred in at least one of the monitored folders").
"""

import random
import zlib
from datetime import datetime, timedelta, timezone

INBOX_ID = "1"  # DEFAULT_FOLDERS in server.py: ("1", "0", "Inbox", 2)

_SUBJECTS = (
    "Quarterly numbers", "Lunch on Friday?", "Re: build failure", "Meeting notes", "Travel approval",
    "Your expense report", "Welcome aboard", "Server maintenance window", "Re: customer escalation",
    "Weekly status", "Invitation: design review", "FW: contract draft",
)
_SENDERS = ("Alice Example", "Bob Contoso", "Carol Fabrikam", "Dan Northwind", "Eve Tailspin", "Frank Litware")
_WORDS = ("the", "report", "is", "attached", "please", "review", "before", "our", "next", "meeting", "thanks",
          "for", "your", "help", "with", "this", "project", "we", "should", "discuss", "budget", "timeline")
_EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)


class Message:
    __slots__ = ("server_id", "subject", "sender", "sender_addr", "received", "body")

    def __init__(self, server_id, subject, sender, sender_addr, received, body):
        self.server_id = server_id
        self.subject = subject
        self.sender = sender
        self.sender_addr = sender_addr
        self.received = received  # MS-ASDTYPE 2.3 date-time string
        self.body = body


class Mailbox:
    __slots__ = ("user", "address", "inbox", "rng", "waiters")

    def __init__(self, user, address, seed, initial):
        self.user = user
        self.address = address
        self.inbox = []
        self.rng = random.Random(zlib.crc32(("%s|%s" % (seed, user)).encode()))
        self.waiters = set()  # futures of held Pings of this user's devices
        self.add(initial, wake=False)

    def _message(self, n):
        rng = self.rng
        sender = rng.choice(_SENDERS)
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(20, 120)))
        when = _EPOCH + timedelta(minutes=7 * n + rng.randint(0, 6))
        return Message(
            "%s:%d" % (INBOX_ID, n + 1), rng.choice(_SUBJECTS), sender,
            sender.split()[0].lower() + "@example.com", when.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            words.capitalize() + ".")

    def add(self, count, wake=True):
        base = len(self.inbox)
        self.inbox.extend(self._message(base + i) for i in range(count))
        if wake and count:
            self.wake()

    def wake(self):
        waiters, self.waiters = self.waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(INBOX_ID)
