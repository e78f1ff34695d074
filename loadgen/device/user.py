"""What the user of a device does with mail, and when: the action schedule and the user's choices.

The rates and shares are the scenario's ``[mail]`` part (loadgen/scenario.py ``MailConfig``: one
place a workload profile fills).  The device (loadgen/device/mail.py) asks this module *what* and
*when*; it does the protocol.

* Schedule: one Poisson process per device whose rate is the sum of every action's rate; when an
  action falls due its kind is drawn by weight (the rates), so a device keeps one next-action time
  and no timer per kind.  After ``send_until`` the sending kinds leave the draw (a run can drain);
  a schedule left with no rate never falls due.
* Choices: a message's kind (new, reply, forward), its recipients (internal users of the run or
  external addresses; To, Cc, Bcc), its body and attachments; what the user does with a message
  that arrives (read, flag, delete or file); the answer to a meeting request.
"""

import math

from loadgen.eas import mime

# [mail] push_folders: folder kinds a device may push (Ping) -> MS-ASCMD 2.2.3.186.3 folder types
PUSH_FOLDER_TYPES = {"inbox": (2,), "drafts": (3,), "deleted": (4,), "sent": (5,), "tasks": (7, 15),
                     "calendar": (8, 13), "contacts": (9, 14), "notes": (10, 17), "user": (12,)}

SEND = "send"
KINDS = ("send", "search_gal", "search_mailbox", "resolve", "estimate", "oof", "calendar_add", "contact_add",
         "task_add")
_RATES = (("send", "send_per_hour", 3600.0), ("search_gal", "searches_per_hour", 3600.0),
          ("search_mailbox", "mailbox_searches_per_hour", 3600.0), ("resolve", "resolve_per_hour", 3600.0),
          ("estimate", "estimates_per_hour", 3600.0), ("oof", "oof_per_day", 86400.0),
          ("calendar_add", "calendar_adds_per_day", 86400.0), ("contact_add", "contact_adds_per_day", 86400.0),
          ("task_add", "task_adds_per_day", 86400.0))
NEVER = math.inf


class Schedule:
    """The actions of a device per second and the draw of the next one's kind (shared by every device
    of the same [mail] part; immutable)."""

    __slots__ = ("kinds", "cumulative", "rate")

    def __init__(self, mail, sending=True):
        kinds, cumulative, total = [], [], 0.0
        for kind, name, per in _RATES:
            rate = getattr(mail, name) / per
            if rate > 0 and (sending or kind != SEND):
                total += rate
                kinds.append(kind)
                cumulative.append(total)
        self.kinds = tuple(kinds)
        self.cumulative = tuple(cumulative)
        self.rate = total  # actions per second

    def delay(self, rng):
        """Seconds to the next action (exponential: a Poisson process); NEVER without any rate."""
        return rng.expovariate(self.rate) if self.rate > 0 else NEVER

    def pick(self, rng):
        """The kind of the action that fell due, drawn by the kinds' rates."""
        x = rng.random() * self.rate
        for kind, edge in zip(self.kinds, self.cumulative):
            if x < edge:
                return kind
        return self.kinds[-1]


_SCHEDULES = {}


def schedules(mail):
    """(schedule while the run sends, schedule after send_until) of ``mail``, built once per part."""
    found = _SCHEDULES.get(id(mail))
    if found is None or found[0] is not mail:
        if len(_SCHEDULES) > 64:
            _SCHEDULES.clear()
        found = _SCHEDULES[id(mail)] = (mail, Schedule(mail), Schedule(mail, sending=False))
    return found[1], found[2]


# -- a message


def message_kind(rng, mail, can_answer):
    """"new", "reply" or "forward" (a reply or forward needs a message to answer: ``can_answer``)."""
    if can_answer:
        x = rng.random()
        if x < mail.reply_share:
            return "reply"
        if x < mail.reply_share + mail.forward_share:
            return "forward"
    return "new"


def recipient(rng, load, own_user):
    """One recipient's address: another user of the run ([mail] internal_share) or an external one."""
    mail = load.mail
    users = load.users
    if users > 1 and rng.random() < mail.internal_share:
        k = rng.randrange(users - 1)
        return load.address(k + (k >= own_user))
    return "x%d@%s" % (rng.randrange(1_000_000), mail.external_domain)


def recipients(rng, load, own_user, first=None):
    """(to, cc, bcc) address lists of a message; ``first``: an address the To starts with (a reply's)."""
    mail = load.mail
    low, high = mail.to
    count = rng.randint(low, high)
    to = [first] if first else []
    taken = set(to)

    def fresh():
        # a person is named once per message (a server would deliver one copy anyway); with few
        # users a repeat may be all there is: a few draws, then the repeat is dropped
        for _ in range(8):
            address = recipient(rng, load, own_user)
            if address not in taken:
                taken.add(address)
                return address
        return None

    while len(to) < count:
        address = fresh()
        if address is None:
            break
        to.append(address)
    cc = [a for a in (fresh() for _ in range(rng.randint(1, 2))) if a] if rng.random() < mail.cc_share else []
    bcc = [a for a in (fresh(),) if a] if rng.random() < mail.bcc_share else []
    if not to:  # never a message without a To
        to.append(recipient(rng, load, own_user))
    return to, cc, bcc


# -- the user-day ([workload]): named profiles and client types

# Named workload profiles, per user per day.  The message counts are Microsoft's Exchange sizing
# message profiles (messages sent and received per mailbox per day: 50, 100, 200, 500, with the
# "100 profile" of LoadGen at 80 received and 20 sent; docs/protocol-notes.md, section 17); the
# other figures are easload's assumptions for a phone user (stated, not measured), scaled with the
# message count.  A scenario's [workload.profile.<name>] table overrides any of them.
_BASE_PROFILE = dict(reply_share=0.3, forward_share=0.1, read_share=0.9, delete_share=0.3, move_share=0.1,
                     flag_share=0.05, attachment_share=0.1, attachment_kb=(20, 500), body_bytes=(300, 6000),
                     html_share=0.6, gal_lookups_per_message=1.0,
                     meeting_response={"accept": 0.6, "tentative": 0.2, "decline": 0.1},
                     internal_share=0.7, recipients=(1, 3))
NAMED_PROFILES = {
    "light": dict(_BASE_PROFILE, received_per_day=40.0, sent_per_day=10.0, meeting_requests_per_day=1.0,
                  calendar_edits_per_day=1.0, contact_edits_per_day=0.5, mailbox_searches_per_day=1.0),
    "average": dict(_BASE_PROFILE, received_per_day=80.0, sent_per_day=20.0, meeting_requests_per_day=2.0,
                    calendar_edits_per_day=2.0, contact_edits_per_day=1.0, mailbox_searches_per_day=2.0),
    "heavy": dict(_BASE_PROFILE, received_per_day=160.0, sent_per_day=40.0, meeting_requests_per_day=4.0,
                  calendar_edits_per_day=3.0, contact_edits_per_day=2.0, mailbox_searches_per_day=4.0),
    "very-heavy": dict(_BASE_PROFILE, received_per_day=400.0, sent_per_day=100.0, meeting_requests_per_day=8.0,
                       calendar_edits_per_day=5.0, contact_edits_per_day=3.0, mailbox_searches_per_day=8.0),
}
# The client types a [workload] may mix (loadgen/device/clients.py CLIENT_TYPES defines their behaviour
# when present; these names stand in until then)
CLIENT_NAMES = ("ios", "android", "outlook-cloud", "hanging-sync", "misbehaving")


class DayTasks:
    """A device's share of its user's planned day ([workload], loadgen/run/day.py Planner.device_plan):
    ``times`` the run seconds (array of doubles) and ``kinds`` the task types (codes of
    loadgen/results/tasks.py TASK_TYPES, one byte each) in time order; ``next`` the next task's
    position; tasks from ``next + 1`` up to ``queued_to`` fell due while the device was busy (counted
    queued); ``t0`` the run's start (loop time); ``gal`` GAL look-ups per new message; ``day`` which
    day of the user's (stress: one after the other)."""

    __slots__ = ("profile", "times", "kinds", "gal", "day", "stress", "next", "queued_to", "t0")

    def __init__(self, profile, times, kinds, gal=0.0, day=0, stress=False):
        self.profile = profile
        self.times = times
        self.kinds = kinds
        self.gal = gal
        self.day = day
        self.stress = stress
        self.next = 0
        self.queued_to = 0
        self.t0 = 0.0

    def __len__(self):
        return len(self.kinds)


def gal_lookups(rng, mean):
    """GAL look-ups while composing a new message: ``mean`` on average (its whole part, plus one more
    with the probability of its fraction)."""
    whole = int(mean)
    return whole + (1 if rng.random() < mean - whole else 0)


_ATTACHMENTS = {}  # size class -> (file name, type, data): a few shared attachments, built once
_FILLER = bytes((j * 31 + 7) & 0xFF for j in range(256))  # every attachment's content: this, repeated
_CONTENT = [b""]  # the longest content asked for so far; an attachment is a view of its start (no copy)
_ATTACHMENT_KINDS = (("report.pdf", "application/pdf", 48_000), ("photo.jpg", "image/jpeg", 120_000),
                     ("notes.txt", "text/plain", 3_000), ("sheet.xlsx", "application/vnd.openxmlformats-"
                                                         "officedocument.spreadsheetml.sheet", 20_000))


def attachment(rng, kb=None):
    """One of a few shared attachments (name, MIME type, data: a bytes-like view): no per-message bytes to build.
    ``kb``: a (low, high) size range in KB ([workload] profile attachment_kb): a size drawn in it,
    rounded to one of at most 16 size classes of the range, so the attachments stay shared."""
    i = rng.randrange(len(_ATTACHMENT_KINDS))
    if kb is None:
        key = i
    else:
        low, high = kb
        step = max(1, (high - low) // 15)
        key = (i, low + step * rng.randint(0, (high - low) // step))
    found = _ATTACHMENTS.get(key)
    if found is None:
        name, kind, size = _ATTACHMENT_KINDS[i]
        if kb is not None:
            size = max(1, key[1]) * 1024
            if len(_ATTACHMENTS) > 256:
                _ATTACHMENTS.clear()
        found = _ATTACHMENTS[key] = (name, kind, _content(size))
    return found


def _content(size):
    """``size`` bytes of the filler as a read-only view of one shared buffer (built once per process at the
    largest size asked: the classes of a range share it instead of holding a copy each, up to 16 MB)."""
    content = _CONTENT[0]
    if len(content) < size:
        content = _CONTENT[0] = _FILLER * (size // 256 + 1)
    return memoryview(content)[:size]


def message(rng, load, sender, to, cc, bcc, token, subject=None):
    """The RFC 5322 bytes of a message (loadgen/eas/mime.py build_message) with the run's token."""
    mail = load.mail
    low, high = mail.body_bytes
    text = mime.body_text(rng, rng.randint(low, high))
    html = None
    if rng.random() < mail.html_share:
        html = "<html><body><p>%s</p></body></html>" % text.replace("&", "&amp;").replace("<", "&lt;")
    attachments = (attachment(rng, mail.attachment_kb),) if rng.random() < mail.attachment_share else ()
    if subject is None:
        subject = text[:rng.randint(12, 40)].strip() or "hello"
    return mime.build_message(sender=sender, to=to, cc=cc, bcc=bcc, subject=subject, text=text, html=html,
                              attachments=attachments, token=token)


# -- what the user does with what arrives

READ, FLAG, DELETE, MOVE = 1, 2, 4, 8


def reaction(rng, mail):
    """What the user does with a new message: READ and FLAG bits, and DELETE or MOVE (or neither)."""
    what = READ if rng.random() < mail.read_share else 0
    if rng.random() < mail.flag_share:
        what |= FLAG
    x = rng.random()
    if x < mail.delete_share:
        what |= DELETE
    elif x < mail.delete_share + mail.move_share:
        what |= MOVE
    return what


_RESPONSES = (("accept", 1), ("tentative", 2), ("decline", 3))  # MS-ASCMD 2.2.3.194 UserResponse


def meeting_answer(rng, mail, answered=False):
    """The UserResponse to a meeting request (1 accept, 2 tentative, 3 decline) or None (no answer);
    ``answered``: one of the three, by the shares among themselves (accept when every share is 0)."""
    shares = mail.meeting_response
    x = rng.random()
    if answered:
        total = sum(shares.get(name, 0.0) for name, _code in _RESPONSES)
        if total <= 0:
            return 1
        x *= total
    edge = 0.0
    for name, code in _RESPONSES:
        edge += shares.get(name, 0.0)
        if x < edge:
            return code
    if answered:  # a rounding at the top edge: the last answer with a share
        return next(code for name, code in reversed(_RESPONSES) if shares.get(name, 0.0) > 0)
    return None


_WORDS = ("report", "meeting", "budget", "project", "release", "update", "agenda", "customer")


def search_word(rng):
    """A word a user searches the mailbox for (the target's bodies and subjects use these)."""
    return _WORDS[rng.randrange(len(_WORDS))]


def prefixes(rng, name):
    """2 to 4 growing prefixes of ``name``: a phone's GAL look-ups as the user types it."""
    count = rng.randint(2, 4)
    start = min(2, len(name))
    return [name[:min(len(name), start + i)] for i in range(count)]
