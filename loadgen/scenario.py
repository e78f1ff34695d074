"""Scenario files (TOML, read with tomllib) validated into typed objects.

Every mistake in a scenario file becomes a :class:`ScenarioError` whose one-line
message names the file, the line and the key, e.g.
``scenarios/x.toml:12: unknown key 'thinktime' in [load] (known: ...)``.

A :class:`Scenario` is frozen by construction: every value is decided while it is built
(:func:`parse`, and :func:`overridden` for the command line's flags, which returns a copy), and
any later write -- to the scenario, to a part of it, or to one of its lists or tables -- raises.
What a run adds while it goes lives in its run context (loadgen/run/context.py).
"""

import difflib
import math
import os
import shlex
import re
import string
import tomllib
from dataclasses import FrozenInstanceError, dataclass, field
from pathlib import Path

from loadgen.eas import versions
from loadgen.device.profiles import PROFILES
from loadgen.device.user import PUSH_FOLDER_TYPES
from loadgen.results.thresholds import ThresholdError
from loadgen.results.thresholds import parse as parse_threshold


class ScenarioError(Exception):
    """A scenario file that cannot be used; the message is meant for the user."""


def _refuse(self, *args, **kwargs):
    raise TypeError("a scenario is not changed after it is built (scenario.overridden or dataclasses.replace "
                    "make a changed copy)")


class FrozenList(list):
    """A list of a scenario (stages, thresholds, events, target URLs) that refuses every change; it
    compares, prints and serialises (JSON, pickle) as the list it holds."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = remove = pop = clear = sort = reverse = _refuse

    def __reduce__(self):
        return (FrozenList, (list(self),))


class FrozenDict(dict):
    """A table of a scenario (version and profile weights, redirects, an event's arguments) that
    refuses every change; it compares, prints and serialises (JSON, pickle) as the dict it holds."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _refuse
    update = setdefault = pop = popitem = clear = _refuse

    def __reduce__(self):
        return (FrozenDict, (dict(self),))


def frozen(value):
    """``value`` with every list and table in it (at any depth) made read-only."""
    if isinstance(value, dict):
        return FrozenDict({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return FrozenList(frozen(v) for v in value)
    return value


def _sealed(cls):
    """A frozen, slotted dataclass whose every attribute write raises FrozenInstanceError, a new name's
    too (Python 3.11's generated ``__setattr__`` fails on a new name of a slotted class with a
    TypeError about super() instead)."""
    def __setattr__(self, name, value):
        raise FrozenInstanceError("cannot assign to field %r: a scenario is not changed after it is built "
                                  "(scenario.overridden or dataclasses.replace make a changed copy)" % name)

    def __delattr__(self, name):
        raise FrozenInstanceError("cannot delete field %r" % name)

    cls.__setattr__ = __setattr__
    cls.__delattr__ = __delattr__
    return cls


def _freeze_fields(obj, names):
    """In ``__post_init__`` of a frozen part: its list and table fields made read-only (a part built
    directly, e.g. ``LoadConfig(stages=[...])``, is as frozen as one :func:`parse` built)."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, (list, dict)):
            object.__setattr__(obj, name, frozen(value))


# The stated ranges every number is checked against before any load (here for files; cli.check_flag
# for flags).  Every number must be finite (TOML's nan and inf are refused).
MAX_DEVICES = 1_000_000  # devices in a run (all workers and shards together)
MAX_DEVICES_PER_PROCESS = 250_000  # devices one client process holds (more: --workers or shards)
MAX_USERS = 1_000_000  # users of a run (the embedded target builds a mailbox for each)
MAX_DEVICES_PER_USER = 100  # EasMaxDevices' default (loadgen/exchange/state.py): more gives status 177
MAX_PROCESSES = 64  # [target] processes and --workers: processes forked on this machine
MAX_SECONDS = 366 * 86400.0  # any duration or interval: at most a year
MAX_RATE = 1_000_000.0  # arrivals or requests per second
MAX_FIRST_USER = 1_000_000_000


def pattern_problem(pattern):
    """Why ``pattern`` is not a user pattern (literal text and {n}; {{ and }} for braces), or None.
    Attribute, index, positional and format-spec fields ({n.__class__}, {0}, {n:>99999}) are refused:
    a pattern is filled once per user, never with anything but the user's number."""
    try:
        for _literal, name, spec, conversion in string.Formatter().parse(pattern):
            if name is not None and (name != "n" or spec or conversion):
                return "may only use the placeholder {n} (and {{ or }} for a brace), not {%s%s%s}" % (
                    name, "!" + conversion if conversion else "", ":" + spec if spec else "")
    except ValueError as exc:
        return "is not a valid pattern (%s; write {{ or }} for a brace)" % exc
    return None


class UserPattern(str):
    """A user, password or e-mail pattern checked by :func:`pattern_problem`; ``format(n=i)`` fills
    {n} with ``first + i`` ([auth] first_user), so directories whose users start at 1 can be used
    without changing device identities (profiles.identity takes the index) or a target's sharding
    of users (by index).  Formatting is a join of pre-split parts: no format-string machinery.
    A pattern is part of a frozen scenario: its attributes are set once, here."""

    __slots__ = ("first", "_parts")

    def __new__(cls, text, first=0):
        self = super().__new__(cls, text)
        parts = []
        for literal, name, _spec, _conv in string.Formatter().parse(text):
            if literal:
                parts.append(literal)
            if name is not None:
                parts.append(None)
        object.__setattr__(self, "first", int(first))
        object.__setattr__(self, "_parts", tuple(parts))
        return self

    def __setattr__(self, name, value):
        raise FrozenInstanceError("cannot assign to field %r of a user pattern" % name)

    def __delattr__(self, name):
        raise FrozenInstanceError("cannot delete field %r of a user pattern" % name)

    def format(self, *args, n=0, **kwargs):
        number = str(n + self.first)
        return "".join(number if part is None else part for part in self._parts)

    def __reduce__(self):  # workers and target processes get the same pattern and offset
        return (UserPattern, (str(self), self.first))


@_sealed
@dataclass(frozen=True, slots=True)
class TargetConfig:
    # "embedded", https://host/Microsoft-Server-ActiveSync, or a list of URLs: a multi-process target
    # started separately (``easload target --processes N``) whose process k serves the users n % N == k;
    # the device of user n goes to url[n % len] (engine.build_population)
    url: str | list = "embedded"
    insecure: bool = False
    ca_file: str | None = None
    client_cert: str | None = None  # a client certificate (PEM) for servers that require one (TLS)
    client_key: str | None = None  # its key, when not in the certificate file
    # a device reconnecting over TLS resumes its last session (RFC 8446 2.2 tickets, RFC 5077 / RFC 5246
    # session ids) as phones do, instead of a full handshake (lean transport; loadgen/wire/tlsconn.py)
    tls_resumption: bool = True
    # embedded target only
    allow_non_provisionable: bool = False
    no_policy: bool = False
    policy_refresh_minutes: int = 0
    listen: str = "127.0.0.1"
    ping_min: int = 60  # Exchange's heartbeat bounds (docs/protocol-notes.md, Ping); lower them for short rehearsals
    ping_max: int = 3540
    mail_per_user_per_hour: float = 0.0  # new mail the embedded target delivers while the run goes
    processes: int = 1  # embedded target processes, users sharded over them (exchange/cluster.py)
    path: str = "/Microsoft-Server-ActiveSync"  # embedded target: where EAS is mounted (e.g. /SOGo/...)
    autodiscover: str | None = None  # e-mail pattern ({n}): devices start with Autodiscover (autodiscover.py)
    # embedded target modes of real servers' habits (tests/test_tolerance.py)
    ignore_policy_key: bool = False  # never checks X-MS-PolicyKey
    options_without_provision: bool = False  # OPTIONS' MS-ASProtocolCommands omits Provision
    auth_realm: str = "easload"  # realm of the 401 Basic challenge
    challenge_first: bool = False  # 401 challenge to the first request of each connection, then accepts
    autodiscover_redirect: dict = field(default_factory=dict)  # Autodiscover: e-mail domain -> domain
    confirm: bool = False  # the operator confirms a load test of a server not on this machine (= --yes)
    # embedded target over HTTPS (exchange/tls.py): a throwaway CA the devices trust, or this certificate and key
    tls: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    # embedded target: the mailboxes' generated history (exchange/store.py): history_days days of
    # daily_messages received mail each, or inbox_items messages in the Inbox instead when given
    history_days: int = 3
    daily_messages: int = 20
    inbox_items: int | None = None
    # embedded target: its OAuth token source for the devices (exchange/bearer.py), set by its start-up
    # (exchange/launch.py), never read from a file
    bearer_tokens: object = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        _freeze_fields(self, ("url", "autodiscover_redirect"))

    @property
    def embedded(self):
        return self.url == "embedded"

    @property
    def urls(self):
        """The target's URLs as a list (one element unless [target] url / --target gave several)."""
        return list(self.url) if isinstance(self.url, (list, tuple)) else [self.url]


def shown_url(url):
    """A URL as it may be printed or stored: without user info, query or fragment (never credentials)."""
    from urllib.parse import urlsplit

    if not re.match(r"^[a-z][a-z0-9+.-]*://", url, re.IGNORECASE):  # not a URL: as given, user info removed
        return re.sub(r"^[^/@]*@", "", url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # unreadable: everything up to the last "@" may be user info (a password with "/" in it)
        scheme, _, rest = url.split("?")[0].split("#")[0].partition("://")
        return "%s://%s" % (scheme, rest.rpartition("@")[2])
    host = parts.hostname or ""
    return "%s://%s%s%s" % (parts.scheme, "[%s]" % host if ":" in host else host, ":%d" % port if port else "",
                            parts.path)


def _url_problem(url):
    """Why ``url`` cannot be a target URL (an http:// or https:// URL with a host), or None."""
    from urllib.parse import urlsplit

    if not re.match(r"^https?://", url, re.IGNORECASE):
        return "%r is not an http:// or https:// URL" % shown_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in 0..65535
    except ValueError as exc:  # the parser's words quote the port, which may be part of a password
        return "%r is not a valid URL (%s)" % (shown_url(url), exc if "@" not in url else "host and port unreadable")
    if not parts.hostname:
        return "%r has no host" % shown_url(url)
    if not parts.netloc.isascii() or any(c.isspace() or ord(c) < 32 for c in parts.netloc):
        return "%r: the host must be ASCII (write an internationalised name in its xn-- form)" % shown_url(url)
    return None


# Characters a URL path keeps as they are (RFC 3986 3.3: pchar and "/", and "%" of an existing escape)
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


def _encoded_path(url):
    """``url`` with a path that is not plain ASCII (spaces, non-ASCII letters, controls) percent-encoded
    as UTF-8 (RFC 3986 2.1, 3.3), so every transport sends the same request line."""
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(url)
    path = quote(parts.path, safe=_PATH_SAFE)
    return url if path == parts.path else urlunsplit(parts._replace(path=path))


def _url_key(url):
    """What makes two target URLs the same process: scheme, host, port and path."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return (scheme, parts.hostname.lower(), parts.port or (443 if scheme == "https" else 80),
            parts.path.rstrip("/") or "/")


def check_urls(items, field):
    """Validate the target URLs ``items`` (from a TOML array or ``--target URL1,URL2``): each an
    http(s):// URL with a host, none twice, at least one.  ``field`` names the setting for the
    message ("'url'", "--target").  Returns the URL (one) or the list of URLs (several);
    ValueError with a one-line message naming the field and the URL otherwise."""
    if not items:
        raise ValueError("%s is empty: give one URL, or several (one per process of a multi-process target)" % field)
    seen = {}
    out = []
    for i, url in enumerate(items, 1):
        which = field if len(items) == 1 else "%s, URL %d of %d" % (field, i, len(items))
        if not isinstance(url, str):
            raise ValueError("%s must be a string, not %r" % (which, url))
        url = url.strip()
        if not url:
            raise ValueError("%s is empty" % which)
        problem = _url_problem(url)
        if problem:
            raise ValueError("%s: %s" % (which, problem))
        url = _encoded_path(url)
        key = _url_key(url)
        if key in seen:
            raise ValueError("%s (%s) is URL %d again: list each process of the target once (user n goes to "
                             "URL n %% %d)" % (which, shown_url(url), seen[key], len(items)))
        seen[key] = i
        out.append(url)
    return out[0] if len(out) == 1 else out


def parse_target_option(value):
    """``--target``: "embedded", one URL, or URL1,URL2,... (comma-separated); ValueError naming --target."""
    value = value.strip()
    if value == "embedded":
        return value
    return check_urls([] if not value else value.split(","), "--target")


@_sealed
@dataclass(frozen=True, slots=True)
class AuthConfig:
    user: str = "user{n}"
    password: str = "Pass{n}!"
    password_env: str | None = None  # take the password pattern from this variable
    domain: str = ""
    users: int = 100
    first_user: int = 0  # {n} of user n's name, password and e-mail is first_user + n (directories often start at 1)
    # OAuth (RFC 6750 Bearer) instead of Basic: a file per user ({user}: the user name; relative to the
    # scenario's folder) or a command run once per user with the user name as its argument, printing the
    # token (loadgen/device/clients.py TokenSource); at most one of them
    token_file: str | None = None
    token_command: str | None = None


@_sealed
@dataclass(frozen=True, slots=True)
class PopulationConfig:
    devices: int = 200
    devices_per_user: int = 2
    versions: dict = field(default_factory=lambda: {"14.1": 1})
    profiles: dict = field(default_factory=lambda: {"modern": 1})
    # client types by weight without the user-day model (loadgen/device/clients.py: a hanging Sync or the
    # misbehaving loop instead of the Ping, Android's heartbeat); with [workload], its ``clients`` instead
    clients: "dict | None" = None

    def __post_init__(self):
        _freeze_fields(self, ("versions", "profiles", "clients"))


@_sealed
@dataclass(frozen=True, slots=True)
class LoadConfig:
    ramp_up: float = 5.0  # seconds over which the devices start
    think_time: float = 2.0  # mean seconds between a device's commands
    timeout: float = 60.0  # per request
    # after 139/141/145 (once per hour; docs/protocol-notes.md, 449 vs in-band statuses 139-145 and how Exchange
    # chooses)
    retry_interval: float = 3600.0
    graceful_stop: float = 5.0
    backoff: float = 5.0  # after a timeout, a connection error or a server error
    reenrol_after: float | None = None  # a wiped device re-enrols as a new device after this; None: never
    transport: str = "lean"  # lean (asyncio.Protocol + httptools) or aiohttp
    pool_size: int = 0  # lean: 0 = connections belong to devices (as on phones); N = N shared (raw rate tests)
    idle_timeout: float = 110.0  # lean: an ordinary keep-alive connection idle this long is closed (0: never)
    mode: str = "ping"  # ping (Direct Push), poll (Sync every think time), foldersync (hierarchy polling)
    heartbeat: float = 480.0  # Ping HeartbeatInterval asked for (s); Exchange allows 60..3540
    window_size: int = 25  # Sync WindowSize
    body_truncation: int = 5120  # bytes asked for; clamped to the policy's limit
    html_bodies: bool = False  # ask for HTML bodies (only where AllowHTMLEmail permits)
    email_filter: int = 0  # FilterType the user wants for mail (0 all, 1..5); clamped to MaxEmailAgeFilter
    calendar_filter: int = 0  # ... for the calendar (0, 4..7); clamped to MaxCalendarAgeFilter
    sync_calendar: bool = False  # also sync the Calendar folder (after enrolment and every new policy)
    open_attachments: float = 0.0  # share of new attachments the user opens (ItemOperations, if the policy lets)
    open_truncated: float = 0.0  # share of truncated new messages whose whole body the user downloads
    quarantine_retry: float = 300.0  # a quarantined device asks again after this
    sample_interval: float = 1.0  # time series interval (summary.json, the HTML report)
    model: str = "closed"  # closed: the devices start over ramp_up; open: devices arrive at a rate
    arrival_rate: float = 10.0  # open model: arrivals (new device enrolments) per second at the start
    stages: list = field(default_factory=list)  # [(duration s, target)], linear ramps (k6): open model
    # target = arrivals/s; closed model target = active devices (ramp up, hold, down; replaces ramp_up)
    max_request_rate: float | None = None  # global cap (ratelimit.py): None default, 0 off
    autodiscover: object = None  # the e-mail pattern (UserPattern) of [target] autodiscover, or None

    def __post_init__(self):
        _freeze_fields(self, ("stages",))


MEETING_RESPONSES = ("accept", "tentative", "decline")  # MS-ASCMD 2.2.3.194 UserResponse 1, 2, 3


@_sealed
@dataclass(frozen=True, slots=True)
class MailConfig:
    """[mail]: what the users do with their mail, per device (rates per hour or per day, shares in
    [0, 1]).  ``send_per_hour`` 0 and every other rate 0 (the default): no mail, the device lives as
    without this table.  One place for the rates: a workload profile fills this part."""

    send_per_hour: float = 0.0  # new messages, replies and forwards a device sends per hour
    reply_share: float = 0.3  # of the messages sent: SmartReply on a message of the Inbox window
    forward_share: float = 0.1  # ... SmartForward
    edit_share: float = 0.2  # of replies and forwards: the user edits the quote (ReplaceMime)
    to: tuple = (1, 3)  # To recipients per message (range)
    cc_share: float = 0.3  # messages with Cc (one or two)
    bcc_share: float = 0.05  # messages with one Bcc
    internal_share: float = 0.8  # recipients who are users of the run (the rest external)
    address: str = "{user}@example.com"  # a user's SMTP address ({user}: the user name); the name itself with "@"
    external_domain: str = "external.example"
    html_share: float = 0.3  # messages with an HTML part
    attachment_share: float = 0.1  # messages with an attachment
    attachment_kb: tuple | None = None  # attachment size range in KB (None: a few fixed sizes, 3-120 KB)
    body_bytes: tuple = (200, 4000)  # body text size (range)
    read_share: float = 0.8  # new messages the user reads (Sync Change Read=1)
    flag_share: float = 0.05  # ... flags for follow-up
    delete_share: float = 0.2  # ... deletes (Sync Delete, DeletesAsMoves)
    move_share: float = 0.1  # ... files into a user folder (MoveItems)
    read_after: float = 30.0  # mean seconds from a message's arrival to the user's changes being sent
    meeting_response: dict = field(default_factory=lambda: {"accept": 0.6, "tentative": 0.2, "decline": 0.1})
    searches_per_hour: float = 0.0  # GAL look-ups as the user types an address (2-4 Search requests)
    mailbox_searches_per_hour: float = 0.0
    resolve_per_hour: float = 0.0  # ResolveRecipients with free/busy
    estimates_per_hour: float = 0.0  # GetItemEstimate of the pushed folders
    oof_per_day: float = 0.0  # Settings Oof Get + Set
    calendar_adds_per_day: float = 0.0
    contact_adds_per_day: float = 0.0
    task_adds_per_day: float = 0.0
    push_folders: tuple = ("inbox", "calendar", "contacts")  # folder types the device pushes (Ping)
    send_until: float | None = None  # seconds into the run after which no new mail is sent (None: the run)
    window: int = 32  # items a device remembers per folder (the last ones synced)
    legacy_mime: bool = True  # 12.x devices send raw MIME (message/rfc822, SaveInSent=T); false: none send

    def __post_init__(self):
        _freeze_fields(self, ("meeting_response",))

    @property
    def active(self):
        """Whether the users do anything with mail (else the device lives as without [mail])."""
        return bool(self.send_per_hour or self.searches_per_hour or self.mailbox_searches_per_hour
                    or self.resolve_per_hour or self.estimates_per_hour or self.oof_per_day
                    or self.calendar_adds_per_day or self.contact_adds_per_day or self.task_adds_per_day)


@_sealed
@dataclass(frozen=True, slots=True)
class Profile:
    """A workload profile ([workload] profiles): what one user does in a day (rates per day, shares in
    [0, 1], ranges (low, high)).  Named ones in loadgen/device/user.py NAMED_PROFILES."""

    name: str = "average"
    received_per_day: float = 80.0  # messages received (from the other users, and from outside)
    sent_per_day: float = 20.0  # messages sent: new, replies and forwards
    reply_share: float = 0.3
    forward_share: float = 0.1
    read_share: float = 0.9
    delete_share: float = 0.3
    move_share: float = 0.1
    flag_share: float = 0.05
    attachment_share: float = 0.1
    attachment_kb: tuple = (20, 500)
    body_bytes: tuple = (300, 6000)
    html_share: float = 0.6
    gal_lookups_per_message: float = 1.0  # GAL look-ups (as the user types a name) per new message
    meeting_requests_per_day: float = 2.0  # meeting requests the user answers
    meeting_response: dict = field(default_factory=lambda: {"accept": 0.6, "tentative": 0.2, "decline": 0.1})
    calendar_edits_per_day: float = 2.0
    contact_edits_per_day: float = 1.0
    mailbox_searches_per_day: float = 2.0
    internal_share: float = 0.7  # recipients who are users of the run
    recipients: tuple = (1, 3)  # To recipients per message (range)

    def __post_init__(self):
        _freeze_fields(self, ("meeting_response",))


CURVES = ("flat", "diurnal")


@_sealed
@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    """[workload]: the user-day model (loadgen/run/day.py): profiles and client types mixed by weight,
    the simulated day mapped onto the run, the backlog limit."""

    profiles: dict = field(default_factory=lambda: {"average": 1})  # profile name -> weight
    definitions: dict = field(default_factory=dict)  # profile name -> Profile (every name of ``profiles``)
    clients: dict = field(default_factory=lambda: {"ios": 1})  # client type -> weight
    day_length: float = 28800.0  # seconds of simulated day
    start_hour: float = 8.0  # the simulated day starts at this hour (the curve's clock)
    curve: str = "flat"
    peak_factor: float = 1.8  # diurnal: the peak two hours at this many times the day's mean rate
    stress: bool = False  # every planned task as fast as the devices take them (the day length ignored)
    backlog_limit: float = 1.5  # abort when queued tasks exceed this many times the users
    replay_from: float = 0.0  # second of the simulated day the run starts at
    replay_length: float | None = None  # seconds of the day the run replays (None: the rest of the day)

    def __post_init__(self):
        _freeze_fields(self, ("profiles", "definitions", "clients"))

    def peak_window(self):
        """(start, end) seconds of the simulated day of its peak two hours: one hour into a working
        day of at least three hours (the morning's mail: easload's assumption), else from its start.
        Exchange is sized for the peak two hours (docs/protocol-notes.md, section 17)."""
        length = min(7200.0, self.day_length)
        start = 3600.0 if self.day_length >= 3 * 3600.0 else 0.0
        return start, start + length

    @property
    def replayed(self):
        """Seconds of the simulated day the run covers."""
        rest = self.day_length - self.replay_from
        return rest if self.replay_length is None else min(self.replay_length, rest)


@_sealed
@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    path: str
    duration: float = 20.0
    seed: int = 1
    description: str = ""
    target: TargetConfig = field(default_factory=TargetConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    population: PopulationConfig = field(default_factory=PopulationConfig)
    load: LoadConfig = field(default_factory=LoadConfig)
    thresholds: list = field(default_factory=list)  # [Threshold]
    events: list = field(default_factory=list)  # [Event], sorted by time
    mail: MailConfig = field(default_factory=MailConfig)
    workload: "WorkloadConfig | None" = None  # [workload]: the user-day model (None: the [mail] rates)

    def __post_init__(self):
        _freeze_fields(self, ("thresholds", "events"))


@_sealed
@dataclass(frozen=True, slots=True)
class Event:
    """An action at a time of the run: on the embedded target, or a shell command for a real server."""

    at: float
    action: str
    args: dict

    def __post_init__(self):
        _freeze_fields(self, ("args",))

    def display(self):
        """The event as it may be printed or saved (summary.json, the HTML report, --dry-run): a command
        shows the values of its leading ``NAME=value`` environment assignments as ``***`` and its
        program, never its arguments (``API_TOKEN=*** ./switch-policy ...``); other actions their name."""
        if self.action != "command":
            return self.action
        return display_command(self.args.get("run", ""))


_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")


def display_command(run):
    """A shell command as it may be shown: leading NAME=value assignments masked, the program, and
    " ..." for its arguments (which can hold secrets too)."""
    import shlex

    try:
        words = shlex.split(run)
    except ValueError:  # unbalanced quotes: show no word of it
        return "(command)"
    shown = []
    for i, word in enumerate(words):
        m = _ASSIGNMENT.match(word)
        if m:
            shown.append("%s=***" % m.group(1))
            continue
        shown.append(word)
        if i + 1 < len(words):
            shown.append("...")
        break
    return " ".join(shown)


EVENT_ACTIONS = {
    # action: allowed arguments
    "change_policy": {"settings"},
    "wipe": {"fraction", "account_only"},
    "mail": {"fraction", "count"},
    "abq": {"default", "rules", "allowed_ids", "blocked_ids"},
    "faults": {"settings"},
    "command": {"run"},
    # incidents (loadgen/run/engine.py, loadgen/exchange/launch.py): a fraction of the devices lose their
    # sync state (a full resync) or their connections (reconnect, TLS handshake again); seed: which ones
    "resync": {"fraction", "seed"},
    "network_drop": {"fraction", "seed"},
}
# actions the devices can do alone against a real server (the engine applies them device-side)
DEVICE_EVENTS = frozenset(("resync", "network_drop"))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}


def parse_duration(value):
    """Seconds from a duration as scenario files and the command line's flags write it: a number of
    seconds, or text like "20", "500ms", "20s", "5m", "1h" (the one parser of both); ValueError
    otherwise.  The range (finite, not negative, at most MAX_SECONDS) is the caller's check."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("a duration like 20, \"20s\", \"5m\" or \"1h\", not %r" % (value,))
    number, unit = match.groups()
    return float(number) * _UNITS[unit]


class _Reader:
    def __init__(self, path, text):
        self.path = path
        self.lines = text.splitlines()
        self.tables = ()  # the top-level keys of the file (set by parse)

    def line_of(self, section, key):
        """Best-effort line number of ``key`` in ``[section]`` (0 if not found)."""
        current = ""
        pattern = re.compile(r"^\s*(?:\"?%s\"?)\s*=" % re.escape(key)) if key else None
        for number, line in enumerate(self.lines, 1):
            stripped = line.strip()
            header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]", stripped)
            if header:
                current = header.group(1)
                if key is None and current == section:
                    return number
                continue
            if pattern and current == section and pattern.match(line):
                return number
        return 0

    def fail(self, section, key, message):
        line = self.line_of(section, key)
        where = "%s:%d" % (self.path, line) if line else str(self.path)
        return ScenarioError("%s: %s" % (where, message))

    def section(self, data, name, known):
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise self.fail("", name, "[%s] must be a table" % name)
        for key in value:
            if key not in known:
                hint = difflib.get_close_matches(key, known, 1)
                raise self.fail(name, key, "unknown key '%s' in [%s]%s (known: %s)" % (
                    key, name, " (did you mean '%s'?)" % hint[0] if hint else "", ", ".join(sorted(known))))
        return value

    def number(self, section, table, key, default, *, minimum=None, maximum=None, integer=False):
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(section, key, "'%s' must be a number, not %r" % (key, value))
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(section, key, "'%s' must be a finite number, not %r" % (key, value))
        if integer and not isinstance(value, int):
            raise self.fail(section, key, "'%s' must be a whole number, not %r" % (key, value))
        if minimum is not None and value < minimum:
            raise self.fail(section, key, "'%s' must be at least %s, not %r" % (key, minimum, value))
        if maximum is not None and value > maximum:
            raise self.fail(section, key, "'%s' must be at most %s, not %r" % (key, _plain(maximum), value))
        return value

    def seconds(self, section, table, key, default):
        if key not in table:
            return default
        value = table[key]
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise self.fail(section, key, "'%s' must be a duration like 20, \"20s\", \"5m\" or \"1h\", not %r" % (key, value)) \
                from None
        if not math.isfinite(seconds):
            raise self.fail(section, key, "'%s' must be a finite duration, not %r" % (key, value))
        if seconds < 0:
            raise self.fail(section, key, "'%s' must not be negative" % key)
        if seconds > MAX_SECONDS:
            raise self.fail(section, key, "'%s' must be at most %d s (366 days), not %r" % (key, MAX_SECONDS, value))
        return seconds

    def string(self, section, table, key, default):
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, str):
            raise self.fail(section, key, "'%s' must be a string, not %r" % (key, value))
        return value

    def boolean(self, section, table, key, default):
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, bool):
            raise self.fail(section, key, "'%s' must be true or false, not %r" % (key, value))
        return value

    def weights(self, section, table, key, default, allowed, what):
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, dict) or not value:
            raise self.fail(section, key, "'%s' must be a table of %s = weight" % (key, what))
        for name, weight in value.items():
            if name not in allowed:
                raise self.fail(section, key, "unknown %s '%s' in '%s' (known: %s)" % (what, name, key, ", ".join(allowed)))
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                raise self.fail(section, key, "weight of '%s' in '%s' must be a number >= 0" % (name, key))
        if sum(value.values()) <= 0:
            raise self.fail(section, key, "weights in '%s' add up to 0" % key)
        return dict(value)


_TOP = {"name", "description", "duration", "seed", "target", "auth", "population", "load", "thresholds", "events",
        "mail", "workload"}
_TARGET = {"url", "insecure", "ca_file", "allow_non_provisionable", "no_policy", "policy_refresh_minutes", "listen",
           "ping_min", "ping_max", "mail_per_user_per_hour", "processes", "path", "autodiscover", "ignore_policy_key",
           "options_without_provision", "auth_realm", "challenge_first", "autodiscover_redirect", "confirm",
           "client_cert", "client_key", "tls", "tls_cert", "tls_key", "tls_resumption", "history_days", "daily_messages",
           "inbox_items"}
_AUTH = {"user", "password", "password_env", "domain", "users", "first_user", "token_file", "token_command"}
_POPULATION = {"devices", "devices_per_user", "versions", "profiles", "clients"}
_LOAD = {"ramp_up", "think_time", "timeout", "retry_interval", "graceful_stop", "backoff", "reenrol_after", "transport", "mode",
         "heartbeat", "window_size", "body_truncation", "html_bodies", "quarantine_retry", "sample_interval",
         "model", "arrival_rate", "stages", "max_request_rate", "pool_size", "idle_timeout",
         "email_filter", "calendar_filter", "sync_calendar", "open_attachments", "open_truncated"}


def _plain(number):
    """1000000 as "1,000,000" in messages."""
    return "{:,}".format(number) if isinstance(number, int) else "%g" % number


def parse(text, path="<scenario>", secrets=True):
    """Validate scenario TOML text into a :class:`Scenario`, built once from values decided here;
    ``secrets=False`` (``validate``, ``devices``: nothing is sent) does not need the password variable."""
    r = _Reader(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError("%s: not valid TOML: %s" % (path, exc)) from None
    for key in data:
        if key not in _TOP:
            hint = difflib.get_close_matches(key, _TOP, 1)
            raise r.fail("", key, "unknown key '%s'%s (known: %s)" % (
                key, " (did you mean '%s'?)" % hint[0] if hint else "", ", ".join(sorted(_TOP))))
    r.tables = tuple(data)
    name = r.string("", data, "name", Path(str(path)).stem)
    description = r.string("", data, "description", "")
    duration = r.seconds("", data, "duration", 20.0)
    if duration <= 0:
        raise r.fail("", "duration", "'duration' must be greater than 0")
    seed = int(r.number("", data, "seed", 1, minimum=-2**63, maximum=2**63 - 1, integer=True))

    t = r.section(data, "target", _TARGET)
    target = _target(r, t)
    auth = _auth(r, r.section(data, "auth", _AUTH), path, secrets)

    p = r.section(data, "population", _POPULATION)
    population = PopulationConfig(
        devices=int(r.number("population", p, "devices", 200, minimum=1, maximum=MAX_DEVICES, integer=True)),
        devices_per_user=int(r.number("population", p, "devices_per_user", 2, minimum=1,
                                      maximum=MAX_DEVICES_PER_USER, integer=True)),
        versions=r.weights("population", p, "versions", {"14.1": 1}, versions.SIMULATED, "protocol version"),
        profiles=r.weights("population", p, "profiles", {"modern": 1}, tuple(PROFILES), "profile"),
        clients=r.weights("population", p, "clients", None, _client_names(), "client type"),
    )
    if population.devices > auth.users * population.devices_per_user:
        raise r.fail("population", "devices", "%d devices need more than %d users x %d devices per user"
                     % (population.devices, auth.users, population.devices_per_user))

    load = _load(r, r.section(data, "load", _LOAD), target, auth, population)
    if target.client_key and not target.client_cert:
        raise r.fail("target", "client_key", "'client_key' needs 'client_cert'")
    if target.ping_min > target.ping_max:
        raise r.fail("target", "ping_min", "'ping_min' (%d) is above 'ping_max' (%d)" % (target.ping_min,
                                                                                       target.ping_max))

    th = data.get("thresholds", {})
    if not isinstance(th, dict):
        raise r.fail("", "thresholds", "[thresholds] must be a table of metric = \"< limit\"")
    thresholds = []
    for metric, expr in th.items():
        try:
            thresholds.append(parse_threshold(metric, expr))
        except ThresholdError as exc:
            raise r.fail("thresholds", metric, str(exc)) from None

    mail = _mail(r, r.section(data, "mail", _MAIL))
    workload = _workload(r, r.section(data, "workload", _WORKLOAD), data.get("workload", {}))
    if workload is not None and population.clients is not None:
        raise r.fail("population", "clients", "'clients' in [population] and a [workload] table: with [workload] "
                     "the client types are its 'clients' (one place)")
    if workload is not None:
        for key in data.get("mail", {}):
            if key not in _MAIL_WITH_WORKLOAD:
                raise r.fail("mail", key, "'%s' in [mail] is a profile's with [workload] (its rates and shares "
                             "come from [workload] profiles; [mail] keeps: %s)" % (key, ", ".join(
                                 sorted(_MAIL_WITH_WORKLOAD))))
    return Scenario(name=name, path=str(path), duration=duration, seed=seed, description=description,
                    target=target, auth=auth, population=population, load=load, thresholds=thresholds,
                    events=_events(r, data, target), mail=mail, workload=workload)


def _target(r, t):
    """[target], with its checks (path, realm, TLS, autodiscover) made before it is built."""
    url = _target_url(r, t)
    embedded = url == "embedded"
    tls = r.boolean("target", t, "tls", False)
    tls_cert = r.string("target", t, "tls_cert", None)
    tls_key = r.string("target", t, "tls_key", None)
    if (tls or tls_cert) and not embedded:
        raise r.fail("target", "tls", "'tls' is for the embedded target; a server's URL says https:// itself")
    if tls_key and not tls_cert:
        raise r.fail("target", "tls_key", "'tls_key' needs 'tls_cert'")
    path = r.string("target", t, "path", "/Microsoft-Server-ActiveSync")
    if (not path.startswith("/") or "?" in path or "#" in path
            or not path.isascii() or any(c.isspace() or ord(c) < 32 for c in path)):
        raise r.fail("target", "path", "'path' must be a URL path like \"/SOGo/Microsoft-Server-ActiveSync\", not %r"
                     % path)
    auth_realm = r.string("target", t, "auth_realm", "easload")
    if '"' in auth_realm:
        raise r.fail("target", "auth_realm", "'auth_realm' must not contain a double quote")
    value = t.get("autodiscover")
    if value is True:
        autodiscover = ""  # the user name, when it is an e-mail address (_autodiscover_pattern)
    elif isinstance(value, str) and value.count("@") == 1 and value.split("@")[1]:
        autodiscover = value
    elif value is None or value is False:
        autodiscover = None
    else:
        raise r.fail("target", "autodiscover", "'autodiscover' must be true or an e-mail pattern like "
                     "\"user{n}@example.com\", not %r" % (value,))
    from loadgen.exchange.state import MAX_DAILY_MESSAGES, MAX_HISTORY_DAYS, MAX_INBOX

    mailboxes = {}  # against a server's URL: warned as ignored (cli/app.py EMBEDDED_ONLY); `easload populate` fills
    for key, default, high in (("history_days", 3, MAX_HISTORY_DAYS), ("daily_messages", 20, MAX_DAILY_MESSAGES),
                               ("inbox_items", None, MAX_INBOX)):
        value = r.number("target", t, key, default, minimum=0, maximum=high, integer=True)
        mailboxes[key] = None if value is None else int(value)
    redirect = t.get("autodiscover_redirect", {})
    if not isinstance(redirect, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in redirect.items()):
        raise r.fail("target", "autodiscover_redirect", "'autodiscover_redirect' must be a table of "
                     "\"from.domain\" = \"to.domain\"")
    return TargetConfig(
        url=url,
        insecure=r.boolean("target", t, "insecure", False),
        ca_file=r.string("target", t, "ca_file", None),
        client_cert=r.string("target", t, "client_cert", None),
        client_key=r.string("target", t, "client_key", None),
        tls_resumption=r.boolean("target", t, "tls_resumption", True),
        allow_non_provisionable=r.boolean("target", t, "allow_non_provisionable", False),
        no_policy=r.boolean("target", t, "no_policy", False),
        policy_refresh_minutes=int(r.number("target", t, "policy_refresh_minutes", 0, minimum=0,
                                            maximum=527040, integer=True)),
        listen=r.string("target", t, "listen", "127.0.0.1"),
        ping_min=int(r.number("target", t, "ping_min", 60, minimum=1, maximum=86400, integer=True)),
        ping_max=int(r.number("target", t, "ping_max", 3540, minimum=1, maximum=86400, integer=True)),
        mail_per_user_per_hour=float(r.number("target", t, "mail_per_user_per_hour", 0.0, minimum=0,
                                              maximum=36000)),
        processes=int(r.number("target", t, "processes", 1, minimum=1, maximum=MAX_PROCESSES, integer=True)),
        path=path,
        autodiscover=autodiscover,
        ignore_policy_key=r.boolean("target", t, "ignore_policy_key", False),
        options_without_provision=r.boolean("target", t, "options_without_provision", False),
        auth_realm=auth_realm,
        challenge_first=r.boolean("target", t, "challenge_first", False),
        autodiscover_redirect={k.lower(): v.lower() for k, v in redirect.items()},
        confirm=r.boolean("target", t, "confirm", False),
        tls=tls or bool(tls_cert),
        tls_cert=tls_cert,
        tls_key=tls_key,
        **mailboxes,
    )


def _auth(r, a, path="<scenario>", secrets=True):
    """[auth]: the password from 'password_env' when named (not needed without ``secrets``: the file's
    pattern stays); user and password as :class:`UserPattern`."""
    first_user = int(r.number("auth", a, "first_user", 0, minimum=0, maximum=MAX_FIRST_USER, integer=True))
    users = int(r.number("auth", a, "users", 100, minimum=1, maximum=MAX_USERS, integer=True))
    patterns = {"user": r.string("auth", a, "user", "user{n}"), "password": r.string("auth", a, "password", "Pass{n}!")}
    password_env = r.string("auth", a, "password_env", None)
    domain = r.string("auth", a, "domain", "")
    if password_env and (secrets or password_env in os.environ):
        value = os.environ.get(password_env)
        if value is None:
            raise r.fail("auth", "password_env", "environment variable %s (named by 'password_env') is not set"
                         % password_env)
        try:
            value.encode("utf-8")  # bytes that are not UTF-8 come as surrogate escapes (PEP 383)
        except UnicodeEncodeError:
            raise r.fail("auth", "password_env", "environment variable %s (named by 'password_env') is not "
                         "valid UTF-8" % password_env) from None
        patterns["password"] = value
    for key in ("user", "password"):
        problem = pattern_problem(patterns[key])
        if problem:
            raise r.fail("auth", "password_env" if key == "password" and password_env else key,
                         "'%s' %s" % (key, problem))
        patterns[key] = UserPattern(patterns[key], first_user)
    token_file = r.string("auth", a, "token_file", None) or None
    token_command = r.string("auth", a, "token_command", None) or None
    if token_file and token_command:
        raise r.fail("auth", "token_command", "'token_file' and 'token_command' exclude each other: give one")
    if token_file is not None:
        if "{user}" not in token_file:
            raise r.fail("auth", "token_file", "'token_file' needs {user} (one token file per user)")
        if not os.path.isabs(token_file) and not str(path).startswith("<"):
            token_file = os.path.join(os.path.dirname(os.path.abspath(str(path))), token_file)
    if token_command is not None:
        try:
            argv = shlex.split(token_command)
        except ValueError as exc:
            raise r.fail("auth", "token_command", "'token_command' is not a command line: %s" % exc) from None
        if not argv:
            raise r.fail("auth", "token_command", "'token_command' is empty")
    return AuthConfig(user=patterns["user"], password=patterns["password"], password_env=password_env,
                      domain=domain, users=users, first_user=first_user, token_file=token_file,
                      token_command=token_command)


def _load(r, lo, target, auth, population):
    """[load], every value checked before the part is built."""
    values = dict(
        ramp_up=r.seconds("load", lo, "ramp_up", 5.0),
        think_time=r.seconds("load", lo, "think_time", 2.0),
        timeout=r.seconds("load", lo, "timeout", 60.0),
        retry_interval=r.seconds("load", lo, "retry_interval", 3600.0),
        graceful_stop=r.seconds("load", lo, "graceful_stop", 5.0),
        backoff=r.seconds("load", lo, "backoff", 5.0),
        reenrol_after=r.seconds("load", lo, "reenrol_after", None),
        transport=r.string("load", lo, "transport", "lean"),
        pool_size=int(r.number("load", lo, "pool_size", 0, minimum=0, maximum=100_000, integer=True)),
        idle_timeout=r.seconds("load", lo, "idle_timeout", 110.0),
        mode=r.string("load", lo, "mode", "ping"),
        heartbeat=r.seconds("load", lo, "heartbeat", 480.0),
        window_size=int(r.number("load", lo, "window_size", 25, minimum=1, maximum=512, integer=True)),
        body_truncation=int(r.number("load", lo, "body_truncation", 5120, minimum=0, maximum=2**31 - 1,
                                     integer=True)),
        html_bodies=r.boolean("load", lo, "html_bodies", False),
        quarantine_retry=r.seconds("load", lo, "quarantine_retry", 300.0),
        sample_interval=r.seconds("load", lo, "sample_interval", 1.0),
        model=r.string("load", lo, "model", "closed"),
        arrival_rate=float(r.number("load", lo, "arrival_rate", 10.0, minimum=0, maximum=MAX_RATE)),
    )
    values["max_request_rate"] = _rate_cap(r, lo)
    values.update(_policy_preferences(r, lo))
    values["autodiscover"] = _autodiscover_pattern(r, target, auth)
    if values["model"] not in ("closed", "open"):
        raise r.fail("load", "model", "'model' must be \"closed\" or \"open\", not %r" % values["model"])
    stages = lo.get("stages", [])
    if not isinstance(stages, list):
        raise r.fail("load", "stages", "'stages' must be an array like [{ duration = \"10s\", target = 100 }]")
    closed = values["model"] == "closed"  # closed: target = active devices (engine.ClosedStages); open: arrivals/s
    values["stages"] = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict) or set(stage) != {"duration", "target"}:
            raise r.fail("load", "stages", "stages[%d] must be { duration = \"10s\", target = %s }"
                         % (i, "<active devices>" if closed else "<arrivals/s>"))
        duration = r.seconds("load", stage, "duration", 0.0)
        goal = r.number("load", stage, "target", 0.0, minimum=0, maximum=MAX_RATE)
        if closed and (not isinstance(goal, int) or goal > population.devices):
            raise r.fail("load", "stages", "stages[%d]: target must be a whole number of active devices from 0 to "
                         "the %d devices of [population], not %r" % (i, population.devices, goal))
        values["stages"].append((duration, float(goal)))
    if closed and stages and "ramp_up" in lo:
        raise r.fail("load", "ramp_up", "'ramp_up' and 'stages' do not combine in the closed model: the stages ramp "
                     "the active devices (start with a stage like { duration = \"30s\", target = 100 })")
    if values["sample_interval"] <= 0:
        raise r.fail("load", "sample_interval", "'sample_interval' must be greater than 0")
    if values["mode"] not in ("ping", "poll", "foldersync"):
        raise r.fail("load", "mode", "'mode' must be \"ping\", \"poll\" or \"foldersync\", not %r" % values["mode"])
    if values["transport"] not in ("lean", "aiohttp"):
        raise r.fail("load", "transport", "'transport' must be \"lean\" or \"aiohttp\", not %r" % values["transport"])
    if values["pool_size"] and values["transport"] != "lean":
        raise r.fail("load", "pool_size", "'pool_size' needs transport = \"lean\"")
    if values["idle_timeout"] < 0:
        raise r.fail("load", "idle_timeout", "'idle_timeout' must be 0 (never) or more")
    if values["timeout"] <= 0:
        raise r.fail("load", "timeout", "'timeout' must be greater than 0")
    return LoadConfig(**values)


_MAIL = set(f for f in MailConfig.__dataclass_fields__)
_MAIL_RATES = ("send_per_hour", "searches_per_hour", "mailbox_searches_per_hour", "resolve_per_hour",
               "estimates_per_hour", "oof_per_day", "calendar_adds_per_day", "contact_adds_per_day",
               "task_adds_per_day")
_MAIL_SHARES = ("reply_share", "forward_share", "edit_share", "cc_share", "bcc_share", "internal_share",
                "html_share", "attachment_share", "read_share", "flag_share", "delete_share", "move_share")


def _range(r, key, table, default, minimum, maximum):
    """An integer range: ``n`` or ``[low, high]`` with minimum <= low <= high <= maximum."""
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or not minimum <= value[0] <= value[1] <= maximum):
        raise r.fail("mail", key, "'%s' must be a whole number or a range [low, high] within %s..%s, not %r"
                     % (key, _plain(minimum), _plain(maximum), value))
    return (value[0], value[1])


def _mail(r, m):
    """[mail], every value checked before the part is built."""
    values = {}
    for key in _MAIL_RATES:  # per device per hour (or day): at most one a second
        values[key] = float(r.number("mail", m, key, 0.0, minimum=0, maximum=3600 if "hour" in key else 86400))
    for key in _MAIL_SHARES:
        default = MailConfig.__dataclass_fields__[key].default
        values[key] = float(r.number("mail", m, key, default, minimum=0, maximum=1))
    if values["reply_share"] + values["forward_share"] > 1:
        raise r.fail("mail", "forward_share", "'reply_share' + 'forward_share' must be at most 1")
    if values["delete_share"] + values["move_share"] > 1.000001:
        raise r.fail("mail", "move_share", "'delete_share' + 'move_share' must be at most 1 (a message is "
                     "deleted or filed, not both)")
    values["to"] = _range(r, "to", m, (1, 3), 1, 100)
    values["body_bytes"] = _range(r, "body_bytes", m, (200, 4000), 0, 10_000_000)
    values["attachment_kb"] = _range(r, "attachment_kb", m, None, 1, 100_000)
    values["read_after"] = r.seconds("mail", m, "read_after", 30.0)
    values["window"] = int(r.number("mail", m, "window", 32, minimum=1, maximum=1024, integer=True))
    values["legacy_mime"] = r.boolean("mail", m, "legacy_mime", True)
    address = r.string("mail", m, "address", "{user}@example.com")
    if address.count("@") != 1 or not address.split("@")[1] or "{user}" not in address:
        raise r.fail("mail", "address", "'address' must be an address pattern like \"{user}@example.com\", not %r"
                     % address)
    try:
        address.format(user="u")
    except (KeyError, IndexError, ValueError):
        raise r.fail("mail", "address", "'address' may hold only {user}, not %r" % address) from None
    values["address"] = address
    domain = r.string("mail", m, "external_domain", "external.example")
    if not domain or "@" in domain or any(c.isspace() for c in domain):
        raise r.fail("mail", "external_domain", "'external_domain' must be a domain like \"external.example\"")
    values["external_domain"] = domain
    shares = m.get("meeting_response", {"accept": 0.6, "tentative": 0.2, "decline": 0.1})
    if not isinstance(shares, dict):
        raise r.fail("mail", "meeting_response", "'meeting_response' must be a table of response = share")
    for name, share in shares.items():
        if name not in MEETING_RESPONSES:
            raise r.fail("mail", "meeting_response", "unknown response '%s' in 'meeting_response' (known: %s)"
                         % (name, ", ".join(MEETING_RESPONSES)))
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise r.fail("mail", "meeting_response", "share of '%s' in 'meeting_response' must be a number "
                         "from 0 to 1" % name)
    if sum(shares.values()) > 1.000001:
        raise r.fail("mail", "meeting_response", "'meeting_response' shares must add up to at most 1 "
                     "(the rest: no response)")
    values["meeting_response"] = {k: float(v) for k, v in shares.items()}
    folders = m.get("push_folders", ["inbox", "calendar", "contacts"])
    if (not isinstance(folders, list) or not folders
            or not all(isinstance(f, str) and f in PUSH_FOLDER_TYPES for f in folders)):
        raise r.fail("mail", "push_folders", "'push_folders' must be a list of folder kinds from %s, not %r"
                     % (", ".join(PUSH_FOLDER_TYPES), folders))
    values["push_folders"] = tuple(dict.fromkeys(folders))
    until = r.seconds("mail", m, "send_until", None)
    values["send_until"] = until
    return MailConfig(**values)


_WORKLOAD = {"profiles", "clients", "day_length", "start_hour", "curve", "peak_factor", "stress", "backlog_limit",
             "replay_from", "replay_length", "profile"}
_PROFILE_RATES = ("received_per_day", "sent_per_day", "meeting_requests_per_day", "calendar_edits_per_day",
                  "contact_edits_per_day", "mailbox_searches_per_day")
_PROFILE_SHARES = ("reply_share", "forward_share", "read_share", "delete_share", "move_share", "flag_share",
                   "attachment_share", "html_share", "internal_share")
_PROFILE_KEYS = set(_PROFILE_RATES + _PROFILE_SHARES) | {"base", "attachment_kb", "body_bytes",
                                                          "gal_lookups_per_message", "meeting_response", "recipients"}
# [mail] keys a [workload] leaves to [mail] (the rest -- rates and shares -- are the profiles')
_MAIL_WITH_WORKLOAD = {"edit_share", "cc_share", "bcc_share", "address", "external_domain", "read_after",
                       "push_folders", "window", "legacy_mime"}


def _client_names():
    """The client types a [workload] may name: loadgen/device/clients.py's when it exists."""
    try:
        from loadgen.device.clients import CLIENT_TYPES
    except ImportError:
        from loadgen.device.user import CLIENT_NAMES as CLIENT_TYPES
    return tuple(CLIENT_TYPES)


def _profile(r, name, table, section):
    """One [workload.profile.<name>] table over its ``base`` (a named profile; "average" by default)."""
    from loadgen.device.user import NAMED_PROFILES

    for key in table:
        if key not in _PROFILE_KEYS:
            hint = difflib.get_close_matches(key, _PROFILE_KEYS, 1)
            raise r.fail(section, key, "unknown key '%s' in [%s]%s (known: %s)" % (
                key, section, " (did you mean '%s'?)" % hint[0] if hint else "", ", ".join(sorted(_PROFILE_KEYS))))
    base = table.get("base", "average")
    if base not in NAMED_PROFILES:
        raise r.fail(section, "base", "'base' must be a named profile (%s), not %r" % (", ".join(NAMED_PROFILES),
                                                                                      base))
    values = dict(NAMED_PROFILES[base])
    for key in _PROFILE_RATES:
        values[key] = float(r.number(section, table, key, values[key], minimum=0, maximum=86400))
    for key in _PROFILE_SHARES:
        values[key] = float(r.number(section, table, key, values[key], minimum=0, maximum=1))
    values["gal_lookups_per_message"] = float(r.number(section, table, "gal_lookups_per_message",
                                                       values["gal_lookups_per_message"], minimum=0, maximum=100))
    if values["reply_share"] + values["forward_share"] > 1:
        raise r.fail(section, "forward_share", "'reply_share' + 'forward_share' must be at most 1")
    if values["delete_share"] + values["move_share"] > 1.000001:
        raise r.fail(section, "move_share", "'delete_share' + 'move_share' must be at most 1")

    def span(key, minimum, maximum):
        if key not in table:
            return tuple(values[key])
        value = table[key]
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value, value]
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                or not minimum <= value[0] <= value[1] <= maximum):
            raise r.fail(section, key, "'%s' must be a whole number or a range [low, high] within %s..%s, not %r"
                         % (key, _plain(minimum), _plain(maximum), value))
        return (value[0], value[1])

    values["attachment_kb"] = span("attachment_kb", 1, 100_000)
    values["body_bytes"] = span("body_bytes", 0, 10_000_000)
    values["recipients"] = span("recipients", 1, 100)
    shares = table.get("meeting_response", values["meeting_response"])
    if not isinstance(shares, dict) or not all(
            k in MEETING_RESPONSES and not isinstance(v, bool) and isinstance(v, (int, float)) and 0 <= v <= 1
            for k, v in shares.items()) or sum(shares.values()) > 1.000001:
        raise r.fail(section, "meeting_response", "'meeting_response' must be a table of %s = share (0 to 1, "
                     "adding up to at most 1), not %r" % (" / ".join(MEETING_RESPONSES), shares))
    values["meeting_response"] = {k: float(v) for k, v in shares.items()}
    return Profile(name=name, **values)


def _workload(r, w, raw):
    """[workload], every value checked before the part is built; None without the table."""
    from loadgen.device.user import NAMED_PROFILES

    if "workload" not in r.tables:
        return None
    custom = w.get("profile", {})
    if not isinstance(custom, dict) or not all(isinstance(v, dict) for v in custom.values()):
        raise r.fail("workload", "profile", "'profile' must hold tables: [workload.profile.<name>]")
    definitions = {}
    for name, table in custom.items():
        definitions[name] = _profile(r, name, table, "workload.profile.%s" % name)
    known = tuple(NAMED_PROFILES) + tuple(n for n in custom if n not in NAMED_PROFILES)
    profiles = r.weights("workload", w, "profiles", {"average": 1}, known, "profile")
    for name in profiles:
        if name not in definitions:
            definitions[name] = _profile(r, name, {"base": name}, "workload")
    definitions = {name: definitions[name] for name in profiles}  # the mixed ones only
    clients = r.weights("workload", w, "clients", {"ios": 1}, _client_names(), "client type")
    day_length = r.seconds("workload", w, "day_length", 28800.0)
    if not 60 <= day_length <= 86400:
        raise r.fail("workload", "day_length", "'day_length' must be from 60 s to 24 h, not %r" % w["day_length"])
    curve = r.string("workload", w, "curve", "flat")
    if curve not in CURVES:
        raise r.fail("workload", "curve", "'curve' must be \"flat\" or \"diurnal\", not %r" % curve)
    peak_factor = float(r.number("workload", w, "peak_factor", 1.8, minimum=1, maximum=100))
    length = WorkloadConfig(day_length=day_length).peak_window()
    if curve == "diurnal" and peak_factor * (length[1] - length[0]) > day_length:
        raise r.fail("workload", "peak_factor", "'peak_factor' %g puts more than the whole day's tasks into its "
                     "peak two hours (at most %g for a %g s day)" % (peak_factor, day_length / (length[1] - length[0]),
                                                                   day_length))
    replay_from = w.get("replay_from", 0.0)
    if replay_from == "peak":
        replay_from = length[0]
        default_length = length[1] - length[0]
    else:
        replay_from = r.seconds("workload", w, "replay_from", 0.0)
        default_length = None
        if replay_from >= day_length:
            raise r.fail("workload", "replay_from", "'replay_from' must be within the day (below 'day_length')")
    replay_length = r.seconds("workload", w, "replay_length", default_length)
    if replay_length is not None and replay_length <= 0:
        raise r.fail("workload", "replay_length", "'replay_length' must be greater than 0")
    return WorkloadConfig(
        profiles={k: float(v) for k, v in profiles.items()}, definitions=definitions,
        clients={k: float(v) for k, v in clients.items()}, day_length=day_length,
        start_hour=float(r.number("workload", w, "start_hour", 8, minimum=0, maximum=23.99)), curve=curve,
        peak_factor=peak_factor, stress=r.boolean("workload", w, "stress", False),
        backlog_limit=float(r.number("workload", w, "backlog_limit", 1.5, minimum=0.01, maximum=1_000_000)),
        replay_from=replay_from, replay_length=replay_length)


def _events(r, data, target):
    """[[events]], checked by action and sorted by time."""
    events = data.get("events", [])
    if not isinstance(events, list):
        raise r.fail("", "events", "'events' must be an array of tables: [[events]]")
    out = []
    for i, ev in enumerate(events):
        where = "events[%d]" % i
        if not isinstance(ev, dict) or "at" not in ev or "action" not in ev:
            raise r.fail("", "events", "%s needs 'at' and 'action'" % where)
        action = ev["action"]
        if action not in EVENT_ACTIONS:
            hint = difflib.get_close_matches(str(action), EVENT_ACTIONS, 1)
            raise r.fail("events", "action", "%s: unknown action %r (known: %s)%s" % (
                where, action, ", ".join(EVENT_ACTIONS), " (did you mean '%s'?)" % hint[0] if hint else ""))
        args = {k: v for k, v in ev.items() if k not in ("at", "action")}
        for key in args:
            if key not in EVENT_ACTIONS[action]:
                raise r.fail("events", key, "%s: '%s' does not take '%s' (it takes: %s)" % (
                    where, action, key, ", ".join(sorted(EVENT_ACTIONS[action]))))
        if action != "command" and action not in DEVICE_EVENTS and not target.embedded:
            raise r.fail("events", "action", "%s: '%s' acts on the embedded target; for a real server use "
                         "action = \"command\" with run = \"...\"" % (where, action))
        _event_args(r, where, action, args)
        at = r.seconds("events", ev, "at", 0.0)
        out.append(Event(at, action, args))
    out.sort(key=lambda e: e.at)
    return out


def _target_url(r, t):
    """[target] url: "embedded", one URL, or an array of URLs (a multi-process target started on its own)."""
    value = t.get("url", "embedded")
    if isinstance(value, str):
        if value == "embedded":
            return value
        if not re.match(r"^https?://", value, re.IGNORECASE):
            raise r.fail("target", "url", "'url' must be \"embedded\" or an http(s):// URL (or an array of them), "
                         "not %r" % shown_url(value))
        items = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise r.fail("target", "url", "'url' must be \"embedded\", an http(s):// URL or an array of URLs, not %r"
                     % (value,))
    try:
        return check_urls(items, "'url'")
    except ValueError as exc:
        raise r.fail("target", "url", str(exc)) from None


def _policy_settings(r, where, settings):
    """``change_policy`` settings: names from the policy table (loadgen/eas/policy.py, the
    EASProvisionDoc elements of MS-ASPROV 2.2.2.27) and whole-number or text values; an unknown name
    would make every Provision of the embedded target fail."""
    from loadgen.eas.policy import POLICY_NAMES

    if not isinstance(settings, dict) or not settings:
        raise r.fail("events", "settings", "%s: 'settings' must be a table of policy = value, like "
                     "{ MinDevicePasswordLength = 6 }" % where)
    for name, value in settings.items():
        if name not in POLICY_NAMES:
            hint = difflib.get_close_matches(name, POLICY_NAMES, 1)
            raise r.fail("events", "settings", "%s: unknown policy setting '%s'%s (known: the EASProvisionDoc "
                         "settings of MS-ASPROV, e.g. %s)" % (where, name, " (did you mean '%s'?)" % hint[0] if hint
                                                             else "", ", ".join(POLICY_NAMES[:4])))
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (
                isinstance(value, int) and not -1 <= value <= 2**31 - 1):
            raise r.fail("events", "settings", "%s: policy setting '%s' must be a whole number (-1 to 2147483647) "
                         "or a string, not %r" % (where, name, value))


_FAULT_RATES = ("reset_rate", "malformed_rate", "truncated_rate")


def _fault_settings(r, where, settings):
    """``faults`` settings: the keys and value types of exchange/faults.py's Faults.configure."""
    def bad(key, what):
        return r.fail("events", "settings", "%s: fault '%s' must be %s, not %r" % (where, key, what, settings[key]))

    def share(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and 0 <= value <= 1

    def seconds(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and 0 <= value <= MAX_SECONDS

    known = ("latency", "error_rates", *_FAULT_RATES, "trickle", "close_after_response", "commands", "seed",
             "retry_after")
    if not isinstance(settings, dict):
        raise r.fail("events", "settings", "%s: 'settings' must be a table of fault = value" % where)
    for key, value in settings.items():
        if key not in known:
            hint = difflib.get_close_matches(key, known, 1)
            raise r.fail("events", "settings", "%s: unknown fault '%s'%s (known: %s)" % (
                where, key, " (did you mean '%s'?)" % hint[0] if hint else "", ", ".join(known)))
        if key in _FAULT_RATES and not share(value):
            raise bad(key, "a share between 0 and 1")
        if key == "error_rates" and not (isinstance(value, dict) and all(
                k.isdigit() and 400 <= int(k) <= 599 and share(v) for k, v in value.items())):
            raise bad(key, "a table of HTTP error status = share, like { \"503\" = 0.1 }")
        if key == "latency" and not (isinstance(value, dict) and value.get("dist", "fixed") in (
                "fixed", "uniform", "exponential") and all(k == "dist" or (k in ("seconds", "min", "max", "mean")
                                                           and seconds(v)) for k, v in value.items())):
            raise bad(key, "{ dist = \"fixed\", seconds = s }, { dist = \"uniform\", min = a, max = b } or "
                      "{ dist = \"exponential\", mean = m }")
        if key == "trickle" and not (isinstance(value, dict) and all(
                (k == "rate" and share(v)) or (k == "interval" and seconds(v)) or
                (k == "chunk" and isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 2**20)
                for k, v in value.items())):
            raise bad(key, "{ rate = share, chunk = bytes (1 to 1048576), interval = seconds }")
        if key == "close_after_response" and not isinstance(value, bool):
            raise bad(key, "true or false")
        if key == "commands" and not (isinstance(value, list) and all(isinstance(c, str) for c in value)):
            raise bad(key, "an array of EAS command names")
        if key in ("seed", "retry_after") and (isinstance(value, bool) or not isinstance(value, int)
                                               or not 0 <= value <= 2**31 - 1):
            raise bad(key, "a whole number from 0 to 2147483647")


def _event_args(r, where, action, args):
    """Each event action's arguments checked by type at parse time, not when the event fires."""
    def bad(key, what):
        return r.fail("events", key, "%s: '%s' of '%s' must be %s, not %r" % (where, key, action, what, args[key]))

    def fraction(key):
        value = args.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 <= value <= 1:
            raise bad(key, "a share between 0 and 1")

    if action == "command":
        if not isinstance(args.get("run"), str) or not args["run"].strip():
            raise r.fail("events", "run", "%s: 'command' needs run = \"a shell command\"" % where)
    elif action == "change_policy":
        _policy_settings(r, where, args.get("settings"))
    elif action == "faults":
        _fault_settings(r, where, args.get("settings", {}))
    elif action == "wipe":
        if "fraction" in args:
            fraction("fraction")
        if "account_only" in args and not isinstance(args["account_only"], bool):
            raise bad("account_only", "true or false")
    elif action in DEVICE_EVENTS:
        if "fraction" not in args:
            raise r.fail("events", "fraction", "%s: '%s' needs fraction = the share of devices (0 to 1)" % (where, action))
        fraction("fraction")
        seed = args.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**31 - 1:
            raise bad("seed", "a whole number from 0 to 2147483647")
    elif action == "mail":
        if "fraction" in args:
            fraction("fraction")
        count = args.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10_000:
            raise bad("count", "a whole number of messages from 1 to 10,000")
    elif action == "abq":
        from loadgen.exchange import abq

        if "default" in args:
            try:
                if not isinstance(args["default"], str):
                    raise ValueError
                abq.level(args["default"])
            except ValueError:
                raise bad("default", "\"Allow\", \"Block\" or \"Quarantine\"") from None
        for key in ("allowed_ids", "blocked_ids"):
            if key in args and not (isinstance(args[key], list) and all(isinstance(i, str) for i in args[key])):
                raise bad(key, "an array of DeviceIds")
        rules = args.get("rules", [])
        if not isinstance(rules, list):
            raise bad("rules", "an array of { characteristic = ..., query = ..., access = ... }")
        for rule in rules:
            try:
                if not (isinstance(rule, dict) and all(isinstance(v, str) for v in rule.values())):
                    raise TypeError
                abq.AccessRule.make(**rule)
            except (TypeError, ValueError) as exc:
                raise r.fail("events", "rules", "%s: each of 'rules' must be { characteristic = \"DeviceType\", "
                             "query = \"...\", access = \"Allow\" }%s" % (
                                 where, ": %s" % exc if isinstance(exc, ValueError) else "")) from None


def _autodiscover_pattern(r, target, auth):
    """The e-mail pattern (:class:`UserPattern`) of [target] autodiscover, or None."""
    pattern = target.autodiscover
    if pattern is None:
        return None
    if pattern == "":
        if "@" not in auth.user:
            raise r.fail("target", "autodiscover", "'autodiscover = true' takes the e-mail address from [auth] user, "
                         "which is not one (%r): give the pattern, e.g. autodiscover = \"user{n}@example.com\""
                         % auth.user)
        pattern = auth.user
    problem = pattern_problem(pattern)
    if problem:
        raise r.fail("target", "autodiscover", "'autodiscover' %s" % problem)
    return UserPattern(str(pattern), auth.first_user)


def _rate_cap(r, lo):
    """[load] max_request_rate: a number of requests/s, 0 or "off" (ratelimit.py); None when not given."""
    if "max_request_rate" not in lo:
        return None
    value = lo["max_request_rate"]
    if isinstance(value, str) and value.strip().lower() == "off":
        return 0.0
    if (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0 <= value <= MAX_RATE):
        return float(value)
    raise r.fail("load", "max_request_rate", "'max_request_rate' must be a number of requests/s from 0 to %s, "
                 "or \"off\", not %r" % (_plain(int(MAX_RATE)), value))


def _policy_preferences(r, lo):
    """[load] preferences the device clamps to the policy it accepted (policy.py; docs/protocol-notes.md, Which
    policies a device may ignore), as LoadConfig's keyword arguments."""
    from loadgen.eas.policy import parse_filter

    out = {}
    for key, calendar in (("email_filter", False), ("calendar_filter", True)):
        if key in lo:
            try:
                out[key] = parse_filter(lo[key], calendar)
            except ValueError as exc:
                raise r.fail("load", key, "'%s' %s" % (key, exc)) from None
    out["sync_calendar"] = r.boolean("load", lo, "sync_calendar", False)
    for key in ("open_attachments", "open_truncated"):
        value = r.number("load", lo, key, 0.0, minimum=0)
        if value > 1:
            raise r.fail("load", key, "'%s' is a share of the messages, between 0 and 1, not %r" % (key, value))
        out[key] = float(value)
    return out


def load(path, secrets=True):
    """Read and validate a scenario file; ScenarioError with a clear line otherwise (``secrets``: parse)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError("%s: no such scenario file" % path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError("%s: cannot read: %s" % (path, exc)) from None
    return parse(text, str(path), secrets)


def overridden(scenario, *, duration=None, devices=None, url=None, transport=None, insecure=False):
    """A copy of ``scenario`` with the command line's overrides (``easload run --duration
    --devices --target --transport --insecure``); the scenario given is not changed (no part of a
    Scenario is written after parsing)."""
    import dataclasses

    replace = dataclasses.replace
    changes = {}
    if duration is not None:
        changes["duration"] = duration
    if devices is not None:
        population = replace(scenario.population, devices=devices)
        changes["population"] = population
        changes["auth"] = replace(scenario.auth, users=max(scenario.auth.users,
                                                           -(-devices // population.devices_per_user)))
    target = {}
    if url is not None:
        target["url"] = url
    if insecure:
        target["insecure"] = True
    if target:
        changes["target"] = replace(scenario.target, **target)
    if transport:
        changes["load"] = replace(scenario.load, transport=transport)
    return replace(scenario, **changes) if changes else scenario


def default_scenario_path():
    """scenarios/smoke.toml from the checkout, or the copy installed with the package."""
    here = Path(__file__).resolve().parent
    for candidate in (Path.cwd() / "scenarios" / "smoke.toml", here.parent / "scenarios" / "smoke.toml",
                      here / "scenarios" / "smoke.toml"):
        if candidate.is_file():
            return candidate
    raise ScenarioError("scenarios/smoke.toml not found: pass a scenario file")
