"""The embedded target's mail store: one :class:`Store` per target, one :class:`UserStore` per mailbox.

History is GENERATED ON DEMAND, never stored: a folder keeps how many items its history holds
(``count``), and the content of item ``n`` is derived from (seed, user, folder, n) whenever a Sync,
an ItemOperations Fetch or a Smart* command needs it.  What changes is kept as overlays on the folder:

* ``added``: new items by number (messages delivered or sent during the run -- their MIME is kept,
  one parsed :class:`Message` shared by every recipient's copy --, items added by a client,
  items moved in), capped at ``ADDED_CAP`` per folder (the oldest dropped, logged as a delete);
* ``deleted``: numbers of generated items that were deleted or moved out;
* ``flags``: ``n -> (read, flag status)`` (MS-ASEMAIL 2.2.2.34 Flag/Status: 0 clear, 1 complete, 2 active);
* ``log``: the change log ``(change number, op, n, origin)`` -- op ``ADD``, ``CHANGE``, ``DELETE``;
  ``origin`` the device (``device_id``) whose command caused it, None for the server's own changes --
  so that a device's sync state is (sync key, change position) per collection and a change made by
  one device is reported to the user's other devices only (MS-ASCMD 3.1.5.3, Sync).  The log keeps
  the last ``LOG_CAP`` entries; a device further behind gets Status 3 and syncs afresh.

Folders (MS-ASCMD 2.2.3.186.3 folder types) are the same for every user: :data:`FOLDERS`.  History:
``history_days`` days at ``daily_messages`` messages received per day, most in the Inbox, some filed
into the user folders, a quarter of the received count sent (Sent Items), a few deleted, drafts;
meeting requests in the Inbox (MessageClass IPM.Schedule.Meeting.Request, MS-ASEMAIL 2.2.2.48
MeetingRequest) with their calendar entries; single and recurring appointments (MS-ASCAL 2.2.2.38
Recurrence); contacts (MS-ASCNTC) and tasks (MS-ASTASK).  Bodies have sizes from a few hundred bytes
to tens of kilobytes in English, German, French, Spanish or Japanese.  Dates: every generated item
is spread over the history ending at the store's ``anchor`` (its creation time, whole hours).

Delivery (:meth:`Store.deliver`): the recipients of an RFC 5322 message (To, Cc, Bcc), each internal
one's Inbox gets the message exactly once, the Bcc header removed from the delivered copy; external
recipients are counted.  Every change wakes the Pings held on that folder (:meth:`UserStore.watch`).
Nothing here does I/O: Ping waiters are plain objects with ``done()`` and ``set_result()`` (futures).
"""

import email
import email.policy
import email.utils
import random
import time
import zlib
from datetime import datetime, timezone

from loadgen.eas.mime import recipients

# (server id, parent id, display name, type): MS-ASCMD 2.2.3.186.3 folder types
FOLDERS = (
    ("1", "0", "Inbox", 2), ("2", "0", "Drafts", 3), ("3", "0", "Deleted Items", 4),
    ("4", "0", "Sent Items", 5), ("5", "0", "Outbox", 6), ("6", "0", "Tasks", 7),
    ("7", "0", "Calendar", 8), ("8", "0", "Contacts", 9), ("9", "0", "Notes", 10),
    ("10", "0", "Journal", 11),
    ("11", "1", "Projects", 12), ("12", "1", "Receipts", 12), ("13", "1", "Newsletters", 12),
)
INBOX, DRAFTS, DELETED, SENT, OUTBOX, TASKS, CALENDAR, CONTACTS, NOTES, JOURNAL = (
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10")
USER_FOLDERS = ("11", "12", "13")
_CLASS_OF_TYPE = {1: "Email", 2: "Email", 3: "Email", 4: "Email", 5: "Email", 6: "Email", 12: "Email",
                  7: "Tasks", 8: "Calendar", 9: "Contacts", 10: "Notes", 11: "Journal", 13: "Calendar",
                  14: "Contacts", 15: "Tasks"}
FOLDER_CLASS = {sid: _CLASS_OF_TYPE[t] for sid, _p, _n, t in FOLDERS}


def folder_class(folder_type):
    """The airsync:Class of a folder type (MS-ASCMD 2.2.3.186.3): Email, Calendar, Contacts, Tasks, Notes..."""
    return _CLASS_OF_TYPE.get(folder_type, "Email")


ADD, CHANGE, DELETE = 1, 2, 3
ADDED_CAP = 1000   # new items kept per folder (the oldest dropped beyond it)
LOG_CAP = 2000     # change-log entries kept per folder
CLIENT_ID_CAP = 1000  # SendMail ClientIds remembered per mailbox (MS-ASCMD 2.2.3.27.1: unique per message)

#: the fixed set of the store's counters (admin /counters, target metrics)
COUNTERS = ("submitted_new", "submitted_reply", "submitted_forward", "delivered", "external_recipients",
            "duplicates", "read", "flagged", "deleted", "moved", "meeting_responses", "searches", "client_adds",
            "sent_saved")

# -- word pools: a few languages, one long text per language built once; a body is a slice of it

_WORDS = {
    "en": ("the", "report", "is", "attached", "please", "review", "before", "our", "next", "meeting", "thanks",
           "for", "your", "help", "with", "this", "project", "we", "should", "discuss", "budget", "timeline",
           "customer", "release", "update", "team", "schedule", "quarter", "numbers", "agenda"),
    "de": ("der", "Bericht", "ist", "angehängt", "bitte", "prüfen", "vor", "unserem", "nächsten", "Termin",
           "danke", "für", "deine", "Hilfe", "mit", "diesem", "Projekt", "wir", "sollten", "besprechen",
           "Budget", "Zeitplan", "Kunde", "Freigabe", "Änderung", "Mannschaft"),
    "fr": ("le", "rapport", "est", "joint", "merci", "de", "relire", "avant", "notre", "prochaine", "réunion",
           "pour", "votre", "aide", "avec", "ce", "projet", "nous", "devrions", "discuter", "budget",
           "calendrier", "client", "équipe", "mise", "à", "jour"),
    "es": ("el", "informe", "está", "adjunto", "por", "favor", "revisar", "antes", "de", "nuestra", "próxima",
           "reunión", "gracias", "su", "ayuda", "con", "este", "proyecto", "deberíamos", "hablar",
           "presupuesto", "calendario", "cliente", "equipo"),
    "ja": ("報告書", "を", "添付", "します", "会議", "の", "前", "に", "確認", "して", "ください", "予算", "と",
           "日程", "について", "相談", "したい", "です", "顧客", "チーム", "更新", "ありがとう"),
}
LANGUAGES = tuple(_WORDS)
_SUBJECTS = {
    "en": ("Quarterly numbers", "Lunch on Friday?", "Build failure", "Meeting notes", "Travel approval",
           "Your expense report", "Welcome aboard", "Server maintenance window", "Customer escalation",
           "Weekly status", "Contract draft", "Release plan"),
    "de": ("Quartalszahlen", "Mittagessen am Freitag?", "Protokoll der Besprechung", "Reisegenehmigung",
           "Wochenbericht", "Vertragsentwurf"),
    "fr": ("Chiffres du trimestre", "Déjeuner vendredi ?", "Compte rendu de réunion", "Note de frais",
           "Point hebdomadaire", "Projet de contrat"),
    "es": ("Cifras trimestrales", "¿Comida el viernes?", "Notas de la reunión", "Aprobación de viaje",
           "Estado semanal", "Borrador del contrato"),
    "ja": ("四半期の数字", "金曜日のランチ", "会議メモ", "出張承認", "週次報告", "契約書の草案"),
}
_FIRST = ("Alice", "Bob", "Carol", "Dan", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Oscar",
          "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Yuki", "Zoé")
_LAST = ("Example", "Contoso", "Fabrikam", "Northwind", "Tailspin", "Litware", "Adatum", "Proseware",
         "Woodgrove", "Lucerne", "Wingtip", "Tanaka")
_EXTERNAL_DOMAINS = ("contoso.com", "fabrikam.net", "northwind.example", "tailspin.example")
_ATTACHMENT_NAMES = ("report.pdf", "photo.jpg", "budget.xlsx", "slides.pptx", "notes.txt", "contract.docx")
_LOCATIONS = ("Room 101", "Room 2.14", "Cafeteria", "Online", "Building B, Floor 3", None)
_TASKS = ("Prepare slides", "Call the customer", "Review the budget", "Book the flight", "Send the minutes",
          "Renew the contract")
_BODY_SIZES = (300, 600, 1200, 2500, 5000, 12000, 30000, 800)  # characters; one picked per message
_TEXT_CHARS = 64 * 1024


def _make_text(language, words):
    rng = random.Random(zlib.crc32(language.encode()))
    sep = "" if language == "ja" else " "
    parts, size = [], 0
    while size < _TEXT_CHARS + 40_000:
        word = rng.choice(words)
        parts.append(word)
        size += len(word) + len(sep)
        if rng.random() < 0.08:
            parts.append("。" if language == "ja" else ".")
    return sep.join(parts)


_TEXTS = {lang: _make_text(lang, words) for lang, words in _WORDS.items()}
_PATTERN = bytes(range(256)) * 64
# MS-ASDTYPE 2.7.4 / MS-ASCAL 2.2.2.46 TimeZone: the base64 of a 172-byte TIME_ZONE_INFORMATION; UTC is zeros
UTC_TIMEZONE = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" \
               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" \
               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def attachment_content(size):
    """The bytes of a generated attachment of ``size`` bytes (a repeated pattern; cheap)."""
    return (_PATTERN * (size // len(_PATTERN) + 1))[:size]


def body_text(language, size, offset):
    """About ``size`` characters of text in ``language`` starting near ``offset`` (deterministic)."""
    text = _TEXTS.get(language) or _TEXTS["en"]
    start = offset % _TEXT_CHARS
    if language != "ja":
        start = text.find(" ", start) + 1
    chunk = text[start:start + size].strip(" .。")
    return chunk[:1].upper() + chunk[1:] + ("。" if language == "ja" else ".")


def _mix(x):
    x &= 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def eas_date(epoch):
    """MS-ASDTYPE 2.3 dateTime as Email:DateReceived carries it: ``YYYY-MM-DDTHH:MM:SS.000Z``."""
    return "%04d-%02d-%02dT%02d:%02d:%02d.000Z" % time.gmtime(int(epoch))[:6]


def eas_compact(epoch):
    """The compact form of MS-ASDTYPE 2.3 used by MS-ASCAL StartTime/EndTime/DtStamp: ``YYYYMMDDTHHMMSSZ``."""
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# -- items

class GenMail:
    """A generated message: computed from one 32-bit draw whenever it is rendered; nothing kept."""

    cls = "Email"
    __slots__ = ("box", "fid", "n", "d", "date", "mime_cache")

    def __init__(self, box, fid, n, date=None):
        self.box, self.fid, self.n = box, fid, n
        self.d = _mix(box.base ^ (int(fid) * 0x9E3779B1) ^ (n * 0x85EBCA6B))
        self.date = box.store.gen_date(box, fid, n, self.d) if date is None else date
        self.mime_cache = None

    @property
    def language(self):
        d = self.d >> 3
        return "en" if d % 10 < 6 else LANGUAGES[1 + (d // 10) % 4]

    @property
    def meeting(self):
        """The calendar number of the meeting this Inbox message requests, or None."""
        if self.fid == INBOX and self.n % 16 == 5 and self.n <= self.box.store.counts(self.box)[INBOX]:
            return self.n // 16 + 1
        return None

    @property
    def message_class(self):
        return "IPM.Schedule.Meeting.Request" if self.meeting is not None else "IPM.Note"

    @property
    def subject(self):
        meeting = self.meeting
        if meeting is not None:
            return "Invitation: " + GenEvent(self.box, meeting).subject
        pool = _SUBJECTS[self.language]
        return pool[(self.d >> 7) % len(pool)]

    def _person(self, k):
        """(display name, address) of a correspondent: a colleague of this target or an external one."""
        store = self.box.store
        if k % 3 and store.user_list:
            user = store.user_list[(k >> 2) % len(store.user_list)]
            return user, store.address(user)
        first, last = _FIRST[k % len(_FIRST)], _LAST[(k >> 5) % len(_LAST)]
        return "%s %s" % (first, last), "%s.%s@%s" % (first.lower(), last.lower(),
                                                      _EXTERNAL_DOMAINS[(k >> 9) % len(_EXTERNAL_DOMAINS)])

    @property
    def sender(self):
        return self.box.user if self.fid in (SENT, DRAFTS) else self._person(self.d >> 11)[0]

    @property
    def sender_addr(self):
        return self.box.address if self.fid in (SENT, DRAFTS) else self._person(self.d >> 11)[1]

    @property
    def from_header(self):
        """Email:From: ``"name" <address>``."""
        if self.fid in (SENT, DRAFTS):
            return '"%s" <%s>' % (self.box.user, self.box.address)
        return '"%s" <%s>' % self._person(self.d >> 11)

    @property
    def to(self):
        if self.fid in (SENT, DRAFTS):
            name, addr = self._person(self.d >> 13)
        else:
            name, addr = self.box.user, self.box.address
        return '"%s" <%s>' % (name, addr)

    @property
    def cc(self):
        if (self.d >> 17) % 4:
            return None
        name, addr = self._person(self.d >> 19)
        return '"%s" <%s>' % (name, addr)

    @property
    def importance(self):
        return "2" if self.d % 29 == 0 else "1"

    @property
    def size(self):
        return _BODY_SIZES[(self.d >> 21) % len(_BODY_SIZES)]

    @property
    def text(self):
        return body_text(self.language, self.size, self.d >> 5)

    @property
    def html(self):
        return "<html><body><p>%s</p></body></html>" % self.text

    @property
    def attachments(self):
        """(file reference, display name, size in bytes): about three messages in eight have one or two,
        of 2 KB to about 300 KB (deterministic per message)."""
        if self.meeting is not None:
            return ()
        k = self.d
        count = (0, 1, 1, 2)[(k >> 1) % 4] if k % 2 == 0 else 0
        return tuple(("%s:%d:%d" % (self.fid, self.n, i), _ATTACHMENT_NAMES[(k + i) % len(_ATTACHMENT_NAMES)],
                      2048 + (k * (i + 7) * 7919) % 300_000) for i in range(count))

    def attachment_refs(self, fid, n):
        """The attachments with file references under the item's current place (``fid``, ``n``): a moved
        item's attachments are fetched where it is now."""
        return tuple(("%s:%d:%d" % (fid, n, i), name, size) for i, (_ref, name, size) in enumerate(self.attachments))

    def default_flags(self):
        """(read, flag status) before any client changed it: older than a day read, a few flagged."""
        if self.fid in (SENT, DRAFTS, DELETED):
            read = 1
        else:
            read = 1 if self.box.store.anchor - self.date > 86400 or self.d % 3 == 0 else 0
        return read, 2 if self.d % 23 == 0 else 0

    @property
    def mime(self):
        """The message as RFC 5322 text (CRLF line endings), built once per render."""
        if self.mime_cache is None:
            cc = self.cc
            self.mime_cache = (
                "From: \"%s\" <%s>\r\nTo: %s\r\n%sSubject: %s\r\nDate: %s\r\nMessage-ID: <%s.%s.%d@%s>\r\n"
                "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
                "\r\n%s\r\n" % (self.sender, self.sender_addr, self.to, "Cc: %s\r\n" % cc if cc else "",
                                self.subject, email.utils.formatdate(self.date, usegmt=True), self.box.base, self.fid,
                                self.n, self.box.store.domain, self.text)).encode("utf-8")
        return self.mime_cache


class GenEvent:
    """A generated calendar item: meetings 1..M (their requests are in the Inbox), then single
    appointments, then a few recurring ones (MS-ASCAL 2.2.2.38 Recurrence)."""

    cls = "Calendar"
    __slots__ = ("box", "n", "d")

    def __init__(self, box, n):
        self.box, self.n = box, n
        self.d = _mix(box.base ^ 0x5BD1E995 ^ (n * 0x85EBCA6B))

    @property
    def kind(self):
        meetings, singles, _rec = self.box.store.calendar_parts(self.box)
        if self.n <= meetings:
            return "meeting"
        return "single" if self.n <= meetings + singles else "recurring"

    @property
    def subject(self):
        pool = _SUBJECTS["en"]
        return ("Standup" if self.kind == "recurring" else pool[(self.d >> 3) % len(pool)]) + " #%d" % self.n

    @property
    def start(self):
        store = self.box.store
        days = store.history_days
        # between history_days ago and two weeks ahead, on the hour
        offset = (self.d >> 5) % ((days + 14) * 24) - days * 24
        return store.anchor + offset * 3600

    @property
    def end(self):
        return self.start + (1 + (self.d >> 9) % 2) * 1800

    @property
    def location(self):
        return _LOCATIONS[(self.d >> 11) % len(_LOCATIONS)]

    @property
    def uid(self):
        return "%08X%08X%08X" % (self.box.base, self.n, self.d)

    @property
    def organizer(self):
        """(name, address): a colleague for meetings, the user for own appointments."""
        if self.kind == "meeting":
            return GenMail(self.box, INBOX, (self.n - 1) * 16 + 5)._person(self.d >> 13)
        return self.box.user, self.box.address

    @property
    def recurrence(self):
        """(Type, Interval, Occurrences, DayOfWeek) of a recurring item (MS-ASCAL 2.2.2.38: Type 0 daily,
        1 weekly; DayOfWeek a bitmask, 62 = Monday..Friday), else None."""
        if self.kind != "recurring":
            return None
        return ("1", "1", str(10 + self.n % 10), "62") if self.n % 2 else ("0", "1", str(5 + self.n % 5), None)

    @property
    def reminder(self):
        return "15"

    @property
    def text(self):
        return body_text("en", 200, self.d >> 7)


class GenContact:
    cls = "Contacts"
    __slots__ = ("box", "n", "d")

    def __init__(self, box, n):
        self.box, self.n = box, n
        self.d = _mix(box.base ^ 0x27D4EB2F ^ (n * 0x85EBCA6B))

    @property
    def first(self):
        return _FIRST[self.d % len(_FIRST)]

    @property
    def last(self):
        return _LAST[(self.d >> 5) % len(_LAST)]

    @property
    def email(self):
        return "%s.%s%d@%s" % (self.first.lower(), self.last.lower(), self.n,
                               _EXTERNAL_DOMAINS[(self.d >> 9) % len(_EXTERNAL_DOMAINS)])

    @property
    def phone(self):
        return "+1 555 %04d" % (self.d % 10000)

    @property
    def company(self):
        return self.last + " Ltd."


class GenTask:
    cls = "Tasks"
    __slots__ = ("box", "n", "d")

    def __init__(self, box, n):
        self.box, self.n = box, n
        self.d = _mix(box.base ^ 0x165667B1 ^ (n * 0x85EBCA6B))

    @property
    def subject(self):
        return _TASKS[self.d % len(_TASKS)]

    @property
    def due(self):
        return self.box.store.anchor + ((self.d >> 4) % 21 - 7) * 86400

    @property
    def complete(self):
        return "1" if self.d % 4 == 0 else "0"


class Message:
    """A message submitted during the run, parsed once and shared by every copy of it."""

    cls = "Email"
    __slots__ = ("mime", "subject", "sender", "sender_addr", "from_header", "to", "cc", "date", "text", "html",
                 "attachments", "message_class", "importance", "language")

    def __init__(self, mime, parsed, date):
        self.mime = mime
        self.subject = _header(parsed, "Subject")
        sender = email.utils.getaddresses([_header(parsed, "From")])
        self.sender, self.sender_addr = sender[0] if sender else ("", "")
        self.sender = self.sender or self.sender_addr
        self.from_header = '"%s" <%s>' % (self.sender, self.sender_addr)
        self.to = _header(parsed, "To")
        self.cc = _header(parsed, "Cc") or None
        self.date = date
        self.importance = "1"
        self.language = "en"
        text = html = None
        atts = []
        try:
            for part in parsed.walk():
                if part.is_multipart():
                    continue
                ctype = part.get_content_type()
                filename = part.get_filename()
                if filename or part.get_content_disposition() == "attachment":
                    payload = part.get_payload(decode=True) or b""
                    atts.append((filename or "attachment", len(payload)))
                elif ctype == "text/plain" and text is None:
                    text = _part_text(part)
                elif ctype == "text/html" and html is None:
                    html = _part_text(part)
        except Exception:  # a message the parser half understood: keep what was read
            pass
        if text is None:
            text = _strip_html(html) if html else ""
        self.text = text
        self.html = html
        self.attachments = tuple(atts)
        self.message_class = "IPM.Note"

    def attachment_refs(self, fid, n):
        return tuple(("%s:%d:%d" % (fid, n, i), name, size) for i, (name, size) in enumerate(self.attachments))

    def attachment_bytes(self, index):
        parsed = email.message_from_bytes(self.mime, policy=email.policy.default)
        i = 0
        for part in parsed.walk():
            if part.is_multipart():
                continue
            if part.get_filename() or part.get_content_disposition() == "attachment":
                if i == index:
                    return part.get_payload(decode=True) or b""
                i += 1
        return b""


def _header(parsed, name):
    try:
        value = parsed.get(name)
        return str(value) if value is not None else ""
    except Exception:  # a header the parser refuses to decode
        return ""


def _part_text(part):
    try:
        return part.get_content()
    except Exception:
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")


def _strip_html(html):
    import re

    return re.sub(r"<[^>]*>", " ", html).strip()


class ClientItem:
    """An item a client added with Sync (calendar item, contact, task): its ApplicationData as sent."""

    __slots__ = ("cls", "data", "date")

    def __init__(self, cls, data, date):
        self.cls, self.data, self.date = cls, data, date


def parse_mime(mime):
    """The parsed message of RFC 5322 bytes, or None when it is not a message (no header at all)."""
    if not isinstance(mime, (bytes, bytearray)) or not mime.strip():
        return None
    try:
        parsed = email.message_from_bytes(bytes(mime), policy=email.policy.default)
    except Exception:
        return None
    if not parsed.keys():
        return None
    return parsed


def strip_bcc(mime):
    """``mime`` without its Bcc header field (and its folded continuation lines), other bytes untouched."""
    end = mime.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = mime.find(b"\n\n"), 2
    if end < 0:
        end, sep = len(mime), 0
    head = mime[:end]
    if b"bcc:" not in head.lower():
        return mime
    lines = head.splitlines(keepends=True)
    kept, skipping = [], False
    for line in lines:
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line[:4].lower() == b"bcc:"
        if not skipping:
            kept.append(line)
    out = b"".join(kept)
    if out and not out.endswith(b"\n"):
        out += b"\r\n" if sep != 2 else b"\n"
    if sep:
        out = out.rstrip(b"\r\n") + mime[end:end + sep]
    return out + mime[end + sep:]


# -- folders and mailboxes

class Folder:
    """One folder of one mailbox: a generated count plus overlays and a change log (module docstring)."""

    __slots__ = ("fid", "cls", "count", "next", "added", "deleted", "flags", "edits", "log", "log_base", "cn")

    def __init__(self, fid, cls, count):
        self.fid, self.cls, self.count = fid, cls, count
        self.next = count + 1
        self.added = self.deleted = self.flags = self.edits = self.log = None
        self.log_base = 1  # change number of log[0]
        self.cn = 0  # the last change number

    def live(self, n):
        if n < 1:
            return False
        if n <= self.count:
            return not (self.deleted and n in self.deleted)
        return self.added is not None and n in self.added

    def numbers(self, after=0):
        """The live item numbers above ``after``, ascending (generator)."""
        deleted = self.deleted or ()
        for n in range(after + 1, self.count + 1):
            if n not in deleted:
                yield n
        if self.added:
            for n in self.added:
                if n > after:
                    yield n

    def size(self):
        return self.count - len(self.deleted or ()) + len(self.added or ())

    def record(self, op, n, origin):
        self.cn += 1
        log = self.log
        if log is None:
            log = self.log = []
            self.log_base = self.cn
        log.append((self.cn, op, n, origin))
        if len(log) > LOG_CAP:
            drop = len(log) - LOG_CAP // 2
            del log[:drop]
            self.log_base += drop

    def since(self, pos):
        """Log entries after change number ``pos``; None if the log no longer reaches back that far."""
        if pos >= self.cn:
            return ()
        if self.log is None or pos + 1 < self.log_base:
            return None
        return self.log[pos + 1 - self.log_base:]


class UserStore:
    """The folders of one mailbox, created on first touch; Ping waiters per folder."""

    __slots__ = ("store", "user", "address", "base", "folders", "waiters", "client_ids")

    def __init__(self, store, user, address):
        self.store, self.user, self.address = store, user, address
        self.base = zlib.crc32(("%s|%s" % (store.seed, user)).encode())
        self.folders = {}
        self.waiters = None  # folder id -> set of futures of held Pings
        self.client_ids = None  # SendMail ClientIds already seen (insertion-ordered dict)

    def folder(self, fid):
        f = self.folders.get(fid)
        if f is None:
            counts = self.store.counts(self)
            f = self.folders[fid] = Folder(fid, FOLDER_CLASS.get(fid, "Email"), counts.get(fid, 0))
        return f

    # -- items

    @property
    def inbox(self):
        """The Inbox's items in order (a list built on each call: for tests and inspection, not the hot path)."""
        return [self.item(INBOX, n) for n in self.folder(INBOX).numbers()]

    def item(self, fid, n):
        """The item ``n`` of folder ``fid`` (GenMail, GenEvent, GenContact, GenTask, Message or
        ClientItem), or None."""
        f = self.folder(fid)
        if not f.live(n):
            return None
        if n > f.count:
            return self._resolve(fid, n, f.added[n])
        if f.edits is not None and n in f.edits:
            return f.edits[n]
        return self._generated(fid, n, f.cls)

    def _generated(self, fid, n, cls):
        if cls == "Email":
            return GenMail(self, fid, n)
        if cls == "Calendar":
            return GenEvent(self, n)
        if cls == "Contacts":
            return GenContact(self, n)
        if cls == "Tasks":
            return GenTask(self, n)
        return None

    def _resolve(self, fid, n, entry):
        if type(entry) is tuple:  # (origin folder, origin number, date): generated content moved or delivered
            src, src_n, date = entry
            cls = FOLDER_CLASS.get(src, "Email")
            if cls == "Email":
                return GenMail(self, src, src_n, date)
            return self._generated(src, src_n, cls)
        return entry

    def item_by_id(self, server_id):
        """(folder id, n, item) of a server id ``"<folder>:<n>"``, or None."""
        fid, _, number = (server_id or "").partition(":")
        if fid not in FOLDER_CLASS or not number.isdigit():
            return None
        n = int(number)
        item = self.item(fid, n)
        return None if item is None else (fid, n, item)

    def flags(self, fid, n, item):
        """(read, flag status) of an email item."""
        f = self.folder(fid)
        if f.flags is not None:
            value = f.flags.get(n)
            if value is not None:
                return value
        if isinstance(item, GenMail):
            return item.default_flags()
        return (1, 0) if fid in (SENT, DRAFTS) else (0, 0)

    def attachment(self, file_reference):
        """(display name, size, content function) of an attachment ``"<folder>:<n>:<i>"``, or None."""
        fid, _, rest = (file_reference or "").partition(":")
        number, _, index = rest.partition(":")
        if not number.isdigit() or not index.isdigit():
            return None
        found = self.item_by_id("%s:%s" % (fid, number))
        if found is None:
            return None
        _fid, n, item = found
        i = int(index)
        if isinstance(item, GenMail):
            atts = item.attachments
            if i < len(atts):
                _ref, name, size = atts[i]
                return name, size, lambda: attachment_content(size)
        elif isinstance(item, Message) and i < len(item.attachments):
            name, size = item.attachments[i]
            return name, size, lambda: item.attachment_bytes(i)
        return None

    # -- changes

    def add(self, fid, entry, origin=None):
        """A new item in ``fid``; returns its number.  Beyond ADDED_CAP the oldest new item is dropped."""
        f = self.folder(fid)
        n = f.next
        f.next += 1
        if f.added is None:
            f.added = {}
        f.added[n] = entry
        f.record(ADD, n, origin)
        if len(f.added) > ADDED_CAP:
            oldest = next(iter(f.added))
            del f.added[oldest]
            if f.flags:
                f.flags.pop(oldest, None)
            f.record(DELETE, oldest, None)
        self.changed(fid)
        return n

    def remove(self, fid, n, origin=None):
        """Delete item ``n`` (no move); returns the removed entry (or ``(fid, n, None)`` for a generated
        one) or None if there is no such item."""
        f = self.folder(fid)
        if not f.live(n):
            return None
        if n > f.count:
            entry = f.added.pop(n)
        else:
            if f.deleted is None:
                f.deleted = set()
            f.deleted.add(n)
            entry = f.edits.pop(n, None) if f.edits else None
            if entry is None:
                entry = (fid, n, None)
        flags = f.flags.pop(n, None) if f.flags else None
        f.record(DELETE, n, origin)
        self.changed(fid)
        return entry, flags

    def move(self, fid, n, dst, origin=None):
        """Move item ``n`` of ``fid`` into ``dst``; returns its new number or None."""
        removed = self.remove(fid, n, origin)
        if removed is None:
            return None
        entry, flags = removed
        if type(entry) is tuple and entry[2] is None:  # a generated item keeps its original date
            item = self._generated(entry[0], entry[1], FOLDER_CLASS.get(entry[0], "Email"))
            entry = (entry[0], entry[1], getattr(item, "date", None))
        new = self.add(dst, entry, origin)
        if flags is not None:
            f = self.folder(dst)
            if f.flags is None:
                f.flags = {}
            f.flags[new] = flags
        return new

    def set_flags(self, fid, n, read=None, flag=None, origin=None):
        """Email Read / Flag Status of item ``n`` (None: unchanged); False if there is no such item."""
        item = self.item(fid, n)
        if item is None:
            return False
        old = self.flags(fid, n, item)
        new = (old[0] if read is None else read, old[1] if flag is None else flag)
        f = self.folder(fid)
        if f.flags is None:
            f.flags = {}
        f.flags[n] = new
        f.record(CHANGE, n, origin)
        self.changed(fid)
        return True

    def replace(self, fid, n, data, origin=None):
        """A client's Change of a calendar item, contact or task: its ApplicationData replaces the item's."""
        f = self.folder(fid)
        if not f.live(n):
            return False
        item = self.item(fid, n)
        new = ClientItem(f.cls, data, getattr(item, "date", None) or self.store.clock())
        if n > f.count:
            f.added[n] = new
        else:  # a generated item keeps its number; the client's version is an overlay
            if f.edits is None:
                f.edits = {}
            f.edits[n] = new
        f.record(CHANGE, n, origin)
        self.changed(fid)
        return True

    # -- Ping

    def watch(self, fids, fut):
        waiters = self.waiters
        if waiters is None:
            waiters = self.waiters = {}
        for fid in fids:
            s = waiters.get(fid)
            if s is None:
                s = waiters[fid] = set()
            s.add(fut)

    def unwatch(self, fids, fut):
        waiters = self.waiters
        if not waiters:
            return
        for fid in fids:
            s = waiters.get(fid)
            if s is not None:
                s.discard(fut)
                if not s:
                    del waiters[fid]

    def changed(self, fid):
        """Wake the Pings held on ``fid`` (they recheck which folders changed for their device)."""
        waiters = self.waiters
        if not waiters:
            return
        s = waiters.pop(fid, None)
        if not s:
            return
        for fut in s:
            if not fut.done():
                fut.set_result(fid)

    def remember_client_id(self, client_id):
        """False if ``client_id`` was already submitted by this mailbox (MS-ASCMD 2.2.3.27.1), else remember it."""
        ids = self.client_ids
        if ids is None:
            ids = self.client_ids = {}
        if client_id in ids:
            return False
        ids[client_id] = None
        if len(ids) > CLIENT_ID_CAP:
            del ids[next(iter(ids))]
        return True


class Store:
    """Every mailbox of a target: generated from (seed, user, folder, n); see the module docstring."""

    def __init__(self, seed=None, *, users=None, domain="example.com", history_days=3, daily_messages=20,
                 inbox_items=None, clock=None, anchor=None):
        self.seed = seed
        self.users = users if users is not None else {}  # user -> anything (membership: internal users)
        self.user_list = tuple(self.users)
        self.domain = domain
        self.history_days = history_days
        self.daily_messages = daily_messages
        self.inbox_items = inbox_items
        self.clock = clock or time.time
        now = self.clock() if anchor is None else anchor
        self.anchor = int(now) // 3600 * 3600
        self.mailboxes = {}
        self.counters = dict.fromkeys(COUNTERS, 0)
        # relay(mime, addresses): hands the addresses of this domain that are not users of this store to
        # whoever holds them (a cluster's process: its parent, cluster.py); None: they are external
        self.relay = None
        received = history_days * daily_messages
        inbox = round(received * 0.8) if inbox_items is None else inbox_items
        self._counts = {
            INBOX: inbox, USER_FOLDERS[0]: round(received * 0.1), USER_FOLDERS[1]: round(received * 0.05),
            USER_FOLDERS[2]: round(received * 0.05), SENT: round(received * 0.25), DELETED: round(received * 0.1),
            DRAFTS: min(3, history_days), CONTACTS: 20 + history_days, TASKS: 5 + history_days // 2,
        }
        meetings = (inbox + 10) // 16  # the Inbox numbers n with n % 16 == 5
        self._calendar = (meetings, 2 * history_days, 3)
        self._counts[CALENDAR] = sum(self._calendar)
        self._steps = {fid: history_days * 86400 / max(1, c) for fid, c in self._counts.items()}

    def counts(self, box):
        return self._counts

    def calendar_parts(self, box):
        """(meetings, single appointments, recurring series) of the generated calendar."""
        return self._calendar

    def gen_date(self, box, fid, n, d):
        count = self._counts.get(fid, 0)
        return self.anchor - int((count - n) * self._steps.get(fid, 3600)) - d % 600

    def first_after(self, box, fid, cutoff):
        """The lowest generated number of ``fid`` whose date may be at or after ``cutoff`` (dates grow
        with the number; every generated item below it is older)."""
        count = self._counts.get(fid, 0)
        step = self._steps.get(fid, 3600)
        return max(1, int(count - (self.anchor - cutoff + 600) / step))

    def address(self, user):
        return user if "@" in user else "%s@%s" % (user, self.domain)

    def user_for(self, address):
        """The user of this target with this address (lowercased addr-spec), or None."""
        users = self.users
        if address in users:
            return address
        local, _, domain = address.rpartition("@")
        if domain == self.domain.lower():
            if local in users:
                return local
            for user in (local, local.capitalize()):
                if user in users:
                    return user
        return None

    def mailbox(self, user):
        box = self.mailboxes.get(user)
        if box is None:
            box = self.mailboxes[user] = UserStore(self, user, self.address(user))
        return box

    def count(self, name, n=1):
        self.counters[name] += n

    # -- delivery

    def deliver(self, sender, mime, now=None, *, parsed=None):
        """Deliver RFC 5322 ``mime`` to its recipients: each internal one's Inbox gets it exactly once
        (Bcc removed from the delivered copy); returns (delivered users, external addresses).
        ``sender``: the submitting user or None (it does not change who receives)."""
        if parsed is None:
            parsed = parse_mime(mime)
            if parsed is None:
                return [], []
        to, cc, bcc = recipients(mime)
        now = self.clock() if now is None else now
        seen, delivered, external = set(), [], []
        for addr in to + cc + bcc:
            if addr in seen:
                continue
            seen.add(addr)
            user = self.user_for(addr)
            if user is None:
                external.append(addr)
            elif user not in seen:
                seen.add(user)
                delivered.append(user)
        copy = strip_bcc(bytes(mime)) if bcc else bytes(mime)
        if self.relay is not None and external:
            domain = "@" + self.domain.lower()
            remote = [a for a in external if a.endswith(domain)]
            if remote:
                external = [a for a in external if not a.endswith(domain)]
                self.relay(copy, remote)
        if delivered:
            message = Message(copy, parsed if not bcc else email.message_from_bytes(copy, policy=email.policy.default),
                              now)
            for user in delivered:
                self.mailbox(user).add(INBOX, message)
        self.counters["delivered"] += len(delivered)
        self.counters["external_recipients"] += len(external)
        return delivered, external

    def deliver_to(self, users, mime, now=None):
        """Deliver ``mime`` (Bcc already removed) into the Inbox of each of ``users`` that this store
        holds, once each: the other half of a relay; returns how many got it."""
        parsed = parse_mime(mime)
        if parsed is None:
            return 0
        message = Message(bytes(mime), parsed, self.clock() if now is None else now)
        done = set()
        for user in users:
            if user in self.users and user not in done:
                done.add(user)
                self.mailbox(user).add(INBOX, message)
        self.counters["delivered"] += len(done)
        return len(done)

    def save_sent(self, user, mime, now=None, parsed=None, origin=None):
        """The sender's copy in Sent Items (with its Bcc); returns its number."""
        if parsed is None:
            parsed = parse_mime(mime)
        now = self.clock() if now is None else now
        self.counters["sent_saved"] += 1
        return self.mailbox(user).add(SENT, Message(bytes(mime), parsed, now), origin)

    def deliver_generated(self, user, count=1):
        """``count`` new generated messages in ``user``'s Inbox (the admin's mail delivery)."""
        box = self.mailbox(user)
        now = self.clock()
        for _ in range(count):
            f = box.folder(INBOX)
            box.add(INBOX, (INBOX, f.next, now))
        self.counters["delivered"] += count
