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
_ATTACHMENT_NAMES = ("report.pdf", "photo.jpg", "budget.xlsx", "slides.pptx", "notes.txt", "contract.docx")
_EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)
_rng = random.Random(0)
# One text generated once; a message body is a slice of it (cheap for 100,000 mailboxes).
_TEXT = " ".join(_rng.choice(_WORDS) for _ in range(2000))
del _rng


class Message:
    """A generated message: only its number and one random draw are stored; the
    fields are derived when a Sync renders it."""

    __slots__ = ("n", "r")

    def __init__(self, n, r):
        self.n = n
        self.r = r

    @property
    def server_id(self):
        return "%s:%d" % (INBOX_ID, self.n + 1)

    @property
    def subject(self):
        return _SUBJECTS[int(self.r * 7877) % len(_SUBJECTS)]

    @property
    def sender(self):
        return _SENDERS[int(self.r * len(_SENDERS))]

    @property
    def sender_addr(self):
        return self.sender.split()[0].lower() + "@example.com"

    @property
    def received(self):  # MS-ASDTYPE 2.3 date-time
        when = _EPOCH + timedelta(minutes=7 * self.n + int(self.r * 6))
        return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    @property
    def attachments(self):
        """(file reference, display name, size in bytes) of the message's attachments: about three
        messages in eight have one or two, of 2 KB to about 300 KB (deterministic per message)."""
        k = int(self.r * 1_000_003)
        count = (0, 1, 1, 2)[(k >> 1) % 4] if k % 2 == 0 else 0
        return tuple(("%s:%d:%d" % (INBOX_ID, self.n + 1, i), _ATTACHMENT_NAMES[(k + i) % len(_ATTACHMENT_NAMES)],
                      2048 + (k * (i + 7) * 7919) % 300_000) for i in range(count))

    @property
    def body(self):
        start = _TEXT.find(" ", int(self.r * 7919) % 9000) + 1
        length = 100 + int(self.r * 104729) % 600
        return _TEXT[start:start + length].strip().capitalize() + "."


def attachment_content(size):
    """The bytes of a generated attachment of ``size`` bytes (a repeated pattern; cheap)."""
    return (_PATTERN * (size // len(_PATTERN) + 1))[:size]


_PATTERN = bytes(range(256)) * 64


class Mailbox:
    __slots__ = ("user", "address", "inbox", "base", "waiters")

    def __init__(self, user, address, seed, initial):
        self.user = user
        self.address = address
        self.inbox = []
        self.base = zlib.crc32(("%s|%s" % (seed, user)).encode())
        self.waiters = set()  # futures of held Pings of this user's devices
        self.add(initial, wake=False)

    def _message(self, n):
        # a cheap deterministic draw in [0, 1) per (mailbox, message number)
        return Message(n, ((self.base ^ (n * 0x9E3779B1)) * 0x85EBCA6B % 0xFFFFFFFB) / 0xFFFFFFFB)

    def add(self, count, wake=True):
        base = len(self.inbox)
        self.inbox.extend(self._message(base + i) for i in range(count))
        if wake and count:
            self.wake()

    def message(self, server_id):
        """The Inbox message with ``server_id`` ("1:<n>"), or None."""
        folder, _, number = server_id.partition(":")
        if folder != INBOX_ID or not number.isdigit():
            return None
        n = int(number) - 1
        return self.inbox[n] if 0 <= n < len(self.inbox) else None

    def attachment(self, file_reference):
        """(message, display name, size) of the attachment with ``file_reference``, or None."""
        folder, _, rest = file_reference.partition(":")
        number, _, index = rest.partition(":")
        msg = self.message("%s:%s" % (folder, number)) if index.isdigit() else None
        if msg is None:
            return None
        for ref, name, size in msg.attachments:
            if ref == file_reference:
                return msg, name, size
        return None

    def wake(self):
        waiters, self.waiters = self.waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(INBOX_ID)
