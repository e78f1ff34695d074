"""Scenario files (TOML, read with tomllib) validated into typed objects.

Every mistake in a scenario file becomes a :class:`ScenarioError` whose one-line
message names the file, the line and the key, e.g.
``scenarios/x.toml:12: unknown key 'thinktime' in [load] (known: ...)``.
"""

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from loadgen.eas import versions
from loadgen.profiles import PROFILES


class ScenarioError(Exception):
    """A scenario file that cannot be used; the message is meant for the user."""


@dataclass
class TargetConfig:
    # "embedded", https://host/Microsoft-Server-ActiveSync, or a list of URLs: a multi-process target
    # started separately (``easload target --processes N``) whose process k serves the users n % N == k;
    # the device of user n goes to url[n % len] (engine.build_population)
    url: str | list = "embedded"
    insecure: bool = False
    ca_file: str | None = None
    client_cert: str | None = None  # a client certificate (PEM) for servers that require one (TLS)
    client_key: str | None = None  # its key, when not in the certificate file
    # embedded target only
    allow_non_provisionable: bool = False
    no_policy: bool = False
    policy_refresh_minutes: int = 0
    listen: str = "127.0.0.1"
    ping_min: int = 60  # Exchange's heartbeat bounds (facts (d)); lower them for short rehearsals
    ping_max: int = 3540
    mail_per_user_per_hour: float = 0.0  # new mail the embedded target delivers while the run goes
    processes: int = 1  # embedded target processes, users sharded over them (target/cluster.py)
    path: str = "/Microsoft-Server-ActiveSync"  # embedded target: where EAS is mounted (e.g. /SOGo/...)
    autodiscover: str | None = None  # e-mail pattern ({n}): devices start with Autodiscover (autodiscover.py)
    # embedded target modes of real servers' habits (tests/test_tolerance.py)
    ignore_policy_key: bool = False  # never checks X-MS-PolicyKey
    options_without_provision: bool = False  # OPTIONS' MS-ASProtocolCommands omits Provision
    auth_realm: str = "easload"  # realm of the 401 Basic challenge
    challenge_first: bool = False  # 401 challenge to the first request of each connection, then accepts
    autodiscover_redirect: dict = field(default_factory=dict)  # Autodiscover: e-mail domain -> domain
    confirm: bool = False  # the operator confirms a load test of a server not on this machine (= --yes)
    # embedded target over HTTPS (target/tls.py): a throwaway CA the devices trust, or this certificate and key
    tls: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None

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
    except ValueError:
        return re.sub(r"//[^/@]*@", "//", url.split("?")[0].split("#")[0])
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
    except ValueError as exc:
        return "%r is not a valid URL (%s)" % (shown_url(url), exc)
    if not parts.hostname:
        return "%r has no host" % shown_url(url)
    return None


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


@dataclass
class AuthConfig:
    user: str = "user{n}"
    password: str = "Pass{n}!"
    password_env: str | None = None  # take the password pattern from this variable
    domain: str = ""
    users: int = 100


@dataclass
class PopulationConfig:
    devices: int = 200
    devices_per_user: int = 2
    versions: dict = field(default_factory=lambda: {"14.1": 1})
    profiles: dict = field(default_factory=lambda: {"modern": 1})


@dataclass
class LoadConfig:
    ramp_up: float = 5.0  # seconds over which the devices start
    think_time: float = 2.0  # mean seconds between a device's commands
    timeout: float = 60.0  # per request
    retry_interval: float = 3600.0  # after 139/141/145 (seed 000: once per hour)
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
    request_cap: float = 0.0  # this process's share of the cap, set by ratelimit.install (0: off)
    autodiscover: object = None  # (e-mail pattern, insecure, ca_file) from [target] autodiscover (devices see load)


@dataclass
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


@dataclass(frozen=True)
class Threshold:
    """``metric op limit``, e.g. ``Provision.p99 < 0.5`` (seconds), ``errors.rate < 0.01``."""

    metric: str
    op: str
    limit: float

    def __str__(self):
        return "%s %s %g" % (self.metric, self.op, self.limit)


@dataclass(frozen=True)
class Event:
    """An action at a time of the run: on the embedded target, or a shell command for a real server."""

    at: float
    action: str
    args: dict


# Threshold metrics: <command>.<stat> (seconds or count), errors.rate/count, devices.<state> (fraction),
# requests.rate/count, provisionings.<result> / reprovisions.<trigger> / throttled.<reason> (counts).
THRESHOLD_STATS = ("p50", "p90", "p95", "p99", "max", "count", "errors")
THRESHOLD_GROUPS = ("errors", "requests", "devices", "provisionings", "reprovisions", "throttled")
_THRESHOLD = re.compile(r"^\s*(<=|>=|==|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")
EVENT_ACTIONS = {
    # action: allowed arguments
    "change_policy": {"settings"},
    "wipe": {"fraction", "account_only"},
    "mail": {"fraction", "count"},
    "abq": {"default", "rules", "allowed_ids", "blocked_ids"},
    "faults": {"settings"},
    "command": {"run"},
}


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}


class _Reader:
    def __init__(self, path, text):
        self.path = path
        self.lines = text.splitlines()

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

    def number(self, section, table, key, default, *, minimum=None, integer=False):
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(section, key, "'%s' must be a number, not %r" % (key, value))
        if integer and not isinstance(value, int):
            raise self.fail(section, key, "'%s' must be a whole number, not %r" % (key, value))
        if minimum is not None and value < minimum:
            raise self.fail(section, key, "'%s' must be at least %s, not %r" % (key, minimum, value))
        return value

    def seconds(self, section, table, key, default):
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and _DURATION.match(value):
            number, unit = _DURATION.match(value).groups()
            seconds = float(number) * _UNITS[unit]
        else:
            raise self.fail(section, key, "'%s' must be a duration like 20, \"20s\", \"5m\" or \"1h\", not %r" % (key, value))
        if seconds < 0:
            raise self.fail(section, key, "'%s' must not be negative" % key)
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


_TOP = {"name", "description", "duration", "seed", "target", "auth", "population", "load", "thresholds", "events"}
_TARGET = {"url", "insecure", "ca_file", "allow_non_provisionable", "no_policy", "policy_refresh_minutes", "listen",
           "ping_min", "ping_max", "mail_per_user_per_hour", "processes", "path", "autodiscover", "ignore_policy_key",
           "options_without_provision", "auth_realm", "challenge_first", "autodiscover_redirect", "confirm",
           "client_cert", "client_key", "tls", "tls_cert", "tls_key"}
_AUTH = {"user", "password", "password_env", "domain", "users"}
_POPULATION = {"devices", "devices_per_user", "versions", "profiles"}
_LOAD = {"ramp_up", "think_time", "timeout", "retry_interval", "graceful_stop", "backoff", "reenrol_after", "transport", "mode",
         "heartbeat", "window_size", "body_truncation", "html_bodies", "quarantine_retry", "sample_interval",
         "model", "arrival_rate", "stages", "max_request_rate", "pool_size", "idle_timeout",
         "email_filter", "calendar_filter", "sync_calendar", "open_attachments", "open_truncated"}


def parse(text, path="<scenario>"):
    """Validate scenario TOML text into a :class:`Scenario`."""
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
    s = Scenario(name=r.string("", data, "name", Path(str(path)).stem), path=str(path))
    s.description = r.string("", data, "description", "")
    s.duration = r.seconds("", data, "duration", s.duration)
    s.seed = int(r.number("", data, "seed", s.seed, integer=True))

    t = r.section(data, "target", _TARGET)
    s.target = TargetConfig(
        url=_target_url(r, t),
        insecure=r.boolean("target", t, "insecure", False),
        ca_file=r.string("target", t, "ca_file", None),
        client_cert=r.string("target", t, "client_cert", None),
        client_key=r.string("target", t, "client_key", None),
        allow_non_provisionable=r.boolean("target", t, "allow_non_provisionable", False),
        no_policy=r.boolean("target", t, "no_policy", False),
        policy_refresh_minutes=int(r.number("target", t, "policy_refresh_minutes", 0, minimum=0, integer=True)),
        listen=r.string("target", t, "listen", "127.0.0.1"),
        ping_min=int(r.number("target", t, "ping_min", 60, minimum=1, integer=True)),
        ping_max=int(r.number("target", t, "ping_max", 3540, minimum=1, integer=True)),
        mail_per_user_per_hour=float(r.number("target", t, "mail_per_user_per_hour", 0.0, minimum=0)),
        processes=int(r.number("target", t, "processes", 1, minimum=1, integer=True)),
        path=r.string("target", t, "path", "/Microsoft-Server-ActiveSync"),
        ignore_policy_key=r.boolean("target", t, "ignore_policy_key", False),
        options_without_provision=r.boolean("target", t, "options_without_provision", False),
        auth_realm=r.string("target", t, "auth_realm", "easload"),
        challenge_first=r.boolean("target", t, "challenge_first", False),
        confirm=r.boolean("target", t, "confirm", False),
        tls=r.boolean("target", t, "tls", False),
        tls_cert=r.string("target", t, "tls_cert", None),
        tls_key=r.string("target", t, "tls_key", None),
    )
    _target_extras(r, t, s)

    a = r.section(data, "auth", _AUTH)
    s.auth = AuthConfig(
        user=r.string("auth", a, "user", "user{n}"),
        password=r.string("auth", a, "password", "Pass{n}!"),
        password_env=r.string("auth", a, "password_env", None),
        domain=r.string("auth", a, "domain", ""),
        users=int(r.number("auth", a, "users", 100, minimum=1, integer=True)),
    )
    if s.auth.password_env:
        value = os.environ.get(s.auth.password_env)
        if value is None:
            raise r.fail("auth", "password_env", "environment variable %s (named by 'password_env') is not set"
                         % s.auth.password_env)
        s.auth.password = value
    for key, pattern in (("user", s.auth.user), ("password", s.auth.password)):
        try:
            pattern.format(n=0)
        except (KeyError, IndexError, ValueError):
            raise r.fail("auth", key, "'%s' may only use the placeholder {n}" % key) from None

    p = r.section(data, "population", _POPULATION)
    s.population = PopulationConfig(
        devices=int(r.number("population", p, "devices", 200, minimum=1, integer=True)),
        devices_per_user=int(r.number("population", p, "devices_per_user", 2, minimum=1, integer=True)),
        versions=r.weights("population", p, "versions", {"14.1": 1}, versions.SIMULATED, "protocol version"),
        profiles=r.weights("population", p, "profiles", {"modern": 1}, tuple(PROFILES), "profile"),
    )
    if s.population.devices > s.auth.users * s.population.devices_per_user:
        raise r.fail("population", "devices", "%d devices need more than %d users x %d devices per user"
                     % (s.population.devices, s.auth.users, s.population.devices_per_user))

    lo = r.section(data, "load", _LOAD)
    s.load = LoadConfig(
        ramp_up=r.seconds("load", lo, "ramp_up", 5.0),
        think_time=r.seconds("load", lo, "think_time", 2.0),
        timeout=r.seconds("load", lo, "timeout", 60.0),
        retry_interval=r.seconds("load", lo, "retry_interval", 3600.0),
        graceful_stop=r.seconds("load", lo, "graceful_stop", 5.0),
        backoff=r.seconds("load", lo, "backoff", 5.0),
        reenrol_after=r.seconds("load", lo, "reenrol_after", None),
        transport=r.string("load", lo, "transport", "lean"),
        pool_size=int(r.number("load", lo, "pool_size", 0, minimum=0, integer=True)),
        idle_timeout=r.seconds("load", lo, "idle_timeout", 110.0),
        mode=r.string("load", lo, "mode", "ping"),
        heartbeat=r.seconds("load", lo, "heartbeat", 480.0),
        window_size=int(r.number("load", lo, "window_size", 25, minimum=1, integer=True)),
        body_truncation=int(r.number("load", lo, "body_truncation", 5120, minimum=0, integer=True)),
        html_bodies=r.boolean("load", lo, "html_bodies", False),
        quarantine_retry=r.seconds("load", lo, "quarantine_retry", 300.0),
        sample_interval=r.seconds("load", lo, "sample_interval", 1.0),
        model=r.string("load", lo, "model", "closed"),
        arrival_rate=float(r.number("load", lo, "arrival_rate", 10.0, minimum=0)),
    )
    _rate_cap(r, lo, s)
    _policy_preferences(r, lo, s)
    _autodiscover_pattern(r, s)
    if s.load.model not in ("closed", "open"):
        raise r.fail("load", "model", "'model' must be \"closed\" or \"open\", not %r" % s.load.model)
    stages = lo.get("stages", [])
    if not isinstance(stages, list):
        raise r.fail("load", "stages", "'stages' must be an array like [{ duration = \"10s\", target = 100 }]")
    closed = s.load.model == "closed"  # closed: target = active devices (engine.ClosedStages); open: arrivals/s
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict) or set(stage) != {"duration", "target"}:
            raise r.fail("load", "stages", "stages[%d] must be { duration = \"10s\", target = %s }"
                         % (i, "<active devices>" if closed else "<arrivals/s>"))
        duration = r.seconds("load", stage, "duration", 0.0)
        target = r.number("load", stage, "target", 0.0, minimum=0)
        if closed and (not isinstance(target, int) or target > s.population.devices):
            raise r.fail("load", "stages", "stages[%d]: target must be a whole number of active devices from 0 to "
                         "the %d devices of [population], not %r" % (i, s.population.devices, target))
        s.load.stages.append((duration, float(target)))
    if closed and stages and "ramp_up" in lo:
        raise r.fail("load", "ramp_up", "'ramp_up' and 'stages' do not combine in the closed model: the stages ramp "
                     "the active devices (start with a stage like { duration = \"30s\", target = 100 })")
    if s.load.sample_interval <= 0:
        raise r.fail("load", "sample_interval", "'sample_interval' must be greater than 0")
    if s.load.mode not in ("ping", "poll", "foldersync"):
        raise r.fail("load", "mode", "'mode' must be \"ping\", \"poll\" or \"foldersync\", not %r" % s.load.mode)
    if s.load.transport not in ("lean", "aiohttp"):
        raise r.fail("load", "transport", "'transport' must be \"lean\" or \"aiohttp\", not %r" % s.load.transport)
    if s.load.pool_size and s.load.transport != "lean":
        raise r.fail("load", "pool_size", "'pool_size' needs transport = \"lean\"")
    if s.load.idle_timeout < 0:
        raise r.fail("load", "idle_timeout", "'idle_timeout' must be 0 (never) or more")
    if s.target.client_key and not s.target.client_cert:
        raise r.fail("target", "client_key", "'client_key' needs 'client_cert'")
    if s.load.timeout <= 0:
        raise r.fail("load", "timeout", "'timeout' must be greater than 0")

    th = data.get("thresholds", {})
    if not isinstance(th, dict):
        raise r.fail("", "thresholds", "[thresholds] must be a table of metric = \"< limit\"")
    for metric, expr in th.items():
        group, _, stat = metric.partition(".")
        known = group in THRESHOLD_GROUPS or stat in THRESHOLD_STATS
        if not stat or not known:
            hint = difflib.get_close_matches(stat, THRESHOLD_STATS, 1)
            raise r.fail("thresholds", metric, "unknown threshold metric '%s': use <command>.<%s> or %s.<name>%s"
                         % (metric, "|".join(THRESHOLD_STATS), "|".join(THRESHOLD_GROUPS),
                            " (did you mean '%s.%s'?)" % (group, hint[0]) if hint else ""))
        m = _THRESHOLD.match(expr) if isinstance(expr, str) else None
        if not m:
            raise r.fail("thresholds", metric, "threshold '%s' must look like \"< 0.5\" (<, <=, >, >=, ==), not %r"
                         % (metric, expr))
        s.thresholds.append(Threshold(metric, m.group(1), float(m.group(2))))

    events = data.get("events", [])
    if not isinstance(events, list):
        raise r.fail("", "events", "'events' must be an array of tables: [[events]]")
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
        if action != "command" and not s.target.embedded:
            raise r.fail("events", "action", "%s: '%s' acts on the embedded target; for a real server use "
                         "action = \"command\" with run = \"...\"" % (where, action))
        at = r.seconds("events", ev, "at", 0.0)
        s.events.append(Event(at, action, args))
    s.events.sort(key=lambda e: e.at)
    return s


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


def _target_extras(r, t, s):
    """[target] path, autodiscover and autodiscover_redirect (issue 10); tls, tls_cert, tls_key."""
    if (s.target.tls or s.target.tls_cert) and not s.target.embedded:
        raise r.fail("target", "tls", "'tls' is for the embedded target; a server's URL says https:// itself")
    if s.target.tls_key and not s.target.tls_cert:
        raise r.fail("target", "tls_key", "'tls_key' needs 'tls_cert'")
    s.target.tls = s.target.tls or bool(s.target.tls_cert)
    if not s.target.path.startswith("/") or "?" in s.target.path or " " in s.target.path:
        raise r.fail("target", "path", "'path' must be a URL path like \"/SOGo/Microsoft-Server-ActiveSync\", not %r"
                     % s.target.path)
    if '"' in s.target.auth_realm:
        raise r.fail("target", "auth_realm", "'auth_realm' must not contain a double quote")
    value = t.get("autodiscover")
    if value is True:
        s.target.autodiscover = ""  # the user name, when it is an e-mail address (_autodiscover_pattern)
    elif isinstance(value, str) and value.count("@") == 1 and value.split("@")[1]:
        s.target.autodiscover = value
    elif value is not None and value is not False:
        raise r.fail("target", "autodiscover", "'autodiscover' must be true or an e-mail pattern like "
                     "\"user{n}@example.com\", not %r" % (value,))
    redirect = t.get("autodiscover_redirect", {})
    if not isinstance(redirect, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in redirect.items()):
        raise r.fail("target", "autodiscover_redirect", "'autodiscover_redirect' must be a table of "
                     "\"from.domain\" = \"to.domain\"")
    s.target.autodiscover_redirect = {k.lower(): v.lower() for k, v in redirect.items()}


def _autodiscover_pattern(r, s):
    pattern = s.target.autodiscover
    if pattern is None:
        return
    if pattern == "":
        if "@" not in s.auth.user:
            raise r.fail("target", "autodiscover", "'autodiscover = true' takes the e-mail address from [auth] user, "
                         "which is not one (%r): give the pattern, e.g. autodiscover = \"user{n}@example.com\""
                         % s.auth.user)
        pattern = s.auth.user
    try:
        pattern.format(n=0)
    except (KeyError, IndexError, ValueError):
        raise r.fail("target", "autodiscover", "'autodiscover' may only use the placeholder {n}") from None
    s.load.autodiscover = (pattern, s.target.insecure, s.target.ca_file)


def _rate_cap(r, lo, s):
    """[load] max_request_rate: a number of requests/s, 0 or "off" (ratelimit.py)."""
    if "max_request_rate" not in lo:
        return
    value = lo["max_request_rate"]
    if isinstance(value, str) and value.strip().lower() == "off":
        s.load.max_request_rate = 0.0
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        s.load.max_request_rate = float(value)
    else:
        raise r.fail("load", "max_request_rate", "'max_request_rate' must be a number of requests/s >= 0, or \"off\", "
                     "not %r" % (value,))
    s.load.request_cap = s.load.max_request_rate  # one process unless ratelimit.install splits it


def _policy_preferences(r, lo, s):
    """[load] preferences the device clamps to the policy it accepted (issue 11, policy.py)."""
    from loadgen.eas.policy import parse_filter

    for key, calendar in (("email_filter", False), ("calendar_filter", True)):
        if key in lo:
            try:
                setattr(s.load, key, parse_filter(lo[key], calendar))
            except ValueError as exc:
                raise r.fail("load", key, "'%s' %s" % (key, exc)) from None
    s.load.sync_calendar = r.boolean("load", lo, "sync_calendar", False)
    for key in ("open_attachments", "open_truncated"):
        value = r.number("load", lo, key, 0.0, minimum=0)
        if value > 1:
            raise r.fail("load", key, "'%s' is a share of the messages, between 0 and 1, not %r" % (key, value))
        setattr(s.load, key, float(value))


def load(path):
    """Read and validate a scenario file; ScenarioError with a clear line otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError("%s: no such scenario file" % path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError("%s: cannot read: %s" % (path, exc)) from None
    return parse(text, str(path))


def default_scenario_path():
    """scenarios/smoke.toml from the checkout, or the copy installed with the package."""
    here = Path(__file__).resolve().parent
    for candidate in (Path.cwd() / "scenarios" / "smoke.toml", here.parent / "scenarios" / "smoke.toml",
                      here / "scenarios" / "smoke.toml"):
        if candidate.is_file():
            return candidate
    raise ScenarioError("scenarios/smoke.toml not found: pass a scenario file")
