"""Where a device may follow a redirect: one rule for every path that moves a device to a new URL.

The paths: an HTTP 451 with ``X-MS-Location`` (MS-ASHTTP 2.2.2.1.1, 3.2.5.1), the MobileSync ``Url``
of an Autodiscover answer (MS-ASCMD 2.2.3.186.1), and inside Autodiscover an HTTP 302 ``Location``
(MS-OXDSCLI 3.1.5) and the candidates of an ``Action/Redirect`` address (MS-ASCMD 2.2.3.147).
Every one of them is checked by :meth:`Rule.check` before a single byte goes to the new URL.

The rule (a location that fails any point is refused: nothing is sent to it):

1. **A URL.**  ``http://`` or ``https://`` with a host, no user info.  (A bare host name, the form
   some servers put in X-MS-Location, is made a URL by the protocol's rule before it gets here:
   ``loadgen/eas/http.py`` ``location_url``.)
2. **Same scheme or stronger.**  http -> https is allowed, https -> http never (the Basic
   credentials would cross the network in clear text, RFC 7617 4).
3. **Credentials only to hosts the user named.**  A host is named when it is:

   * the host of one of the run's target URLs (``[target] url`` / ``urls``, or the URL the run was
     given, e.g. the embedded target's) -- the exact host, any port;
   * for Autodiscover, the domain of the device's e-mail address or a host inside it
     (``example.com``, ``autodiscover.example.com``, ``mail.example.com``: the hosts MS-OXDSCLI
     3.1.5 derives from the address live in the DNS zone of the user's own domain);
   * a host an Autodiscover answer named in an ``https://`` URL (the MobileSync ``Url``; the
     ``https://`` candidates of an ``Action/Redirect`` address): the server that answered holds the
     credentials already, and TLS verifies the name it sends the device to.

   A 451 to any other host is refused: name the host in the scenario's target URLs to allow it.
4. **The URL in use is not a redirect.**  A 451 pointing to the URL the device uses already
   (scheme, host, port and path) is a server fault: the caller counts it and backs off instead of
   sending the same request again (:data:`SAME`).
5. **A new host is checked like a new target** (``loadgen/cli/app.py`` ``_safety_rail``,
   ``loadgen/wire/ratelimit.py``): when every target URL of the run was on this machine, a host that
   is not needs the operator's confirmation (``--yes`` / ``confirm = true``) for more than
   :data:`SAFE_DEVICES` devices, and the move turns on the default remote rate cap if the cap was
   off only because the target was on this machine (:attr:`Verdict.cap`).

:class:`Rule` holds what the rule needs about the run (made by ``ratelimit.plan`` and
kept in the run context, loadgen/run/context.py, which reaches worker processes pickled); it is pure: no
asyncio, no I/O.
"""

import ipaddress
from urllib.parse import urlsplit

SAFE_DEVICES = 10  # devices on a server not on this machine without --yes (loadgen/cli/app.py SAFE_DEVICES)

OK = "ok"
SAME = "same"  # the URL in use: not a move
REFUSED = "refused"


def host_of(url):
    """The lower-case host of ``url`` without a trailing dot ('' when it has none)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.rstrip(".").lower()


def is_loopback(url_or_host):
    host = host_of(url_or_host) if "/" in url_or_host else url_or_host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def in_domain(host, domain):
    """Whether ``host`` is ``domain`` or a host inside it (a one-label domain: only itself)."""
    return host == domain or ("." in domain and host.endswith("." + domain))


def _where(url):
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").rstrip(".").lower(), port, parts.path or "/"


class Verdict:
    """``kind``: OK (follow ``url``), SAME (the URL in use) or REFUSED (``reason`` says why);
    ``cap``: the per-process request rate to turn on with the move (0: none)."""

    __slots__ = ("kind", "url", "reason", "cap")

    def __init__(self, kind, url, reason=None, cap=0.0):
        self.kind = kind
        self.url = url
        self.reason = reason
        self.cap = cap

    @property
    def ok(self):
        return self.kind == OK

    @property
    def same(self):
        return self.kind == SAME

    @property
    def refused(self):
        return self.kind == REFUSED

    def __repr__(self):
        return "Verdict(%s, %r, %r, cap=%g)" % (self.kind, self.url, self.reason, self.cap)


class Rule:
    """What the redirect rule knows about the run (picklable: it travels with the scenario)."""

    __slots__ = ("hosts", "loopback_only", "confirmed", "devices", "remote_cap")

    def __init__(self, hosts=(), loopback_only=True, confirmed=False, devices=SAFE_DEVICES + 1, remote_cap=0.0):
        self.hosts = frozenset(h.rstrip(".").lower() for h in hosts if h)  # the target URLs' hosts
        self.loopback_only = loopback_only  # every target URL was on this machine (or the embedded target)
        self.confirmed = confirmed  # --yes / confirm = true
        self.devices = devices  # devices in the whole run
        self.remote_cap = remote_cap  # per-process rate to turn on for a remote host (0: leave the cap as it is)

    def __getstate__(self):
        return (self.hosts, self.loopback_only, self.confirmed, self.devices, self.remote_cap)

    def __setstate__(self, state):
        self.hosts, self.loopback_only, self.confirmed, self.devices, self.remote_cap = state

    @classmethod
    def for_scenario(cls, scenario, confirmed=False, remote_cap=0.0):
        target = scenario.target
        urls = [] if target.embedded else list(target.urls)
        return cls(hosts=[host_of(u) for u in urls],
                   loopback_only=target.embedded or all(is_loopback(u) for u in urls),
                   confirmed=bool(confirmed or getattr(target, "confirm", False)),
                   devices=scenario.population.devices, remote_cap=remote_cap)

    def named(self, host, hosts=(), domains=()):
        """Whether credentials may go to ``host``: a target host, one of ``hosts`` (the device's own
        URL, hosts an Autodiscover answer named over https) or a host inside one of ``domains``
        (the device's e-mail domain)."""
        if host in self.hosts or host in hosts:
            return True
        return any(in_domain(host, d) for d in domains)

    def check(self, current, location, hosts=(), domains=(), credentials=True):
        """The :class:`Verdict` on moving from the URL ``current`` to ``location`` (see the module
        docstring).  ``credentials=False``: a request that carries none (the unauthenticated
        MS-OXDSCLI redirect probe): points 3 and 4 do not apply."""
        location = (location or "").strip()
        if not location:
            return Verdict(REFUSED, location, "an empty location")
        if "://" not in location:
            return Verdict(REFUSED, location, "not a URL")
        try:
            parts = urlsplit(location)
            parts.port  # noqa: B018 -- a port out of range raises here
        except ValueError:
            return Verdict(REFUSED, location, "not a URL")
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            return Verdict(REFUSED, location, "scheme %s is not http or https" % scheme)
        if "@" in parts.netloc:
            return Verdict(REFUSED, location, "the location carries user info")
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            return Verdict(REFUSED, location, "no host")
        if current and urlsplit(current).scheme.lower() == "https" and scheme != "https":
            return Verdict(REFUSED, location, "https to http: the credentials would go in clear text")
        if credentials:
            if current and _where(current) == _where(location):
                return Verdict(SAME, location, "the URL already in use")
            if not self.named(host, hosts, domains):
                return Verdict(REFUSED, location, "%s is not a host the run was pointed at (name it in the "
                                                  "target URLs to allow it)" % host)
        cap = 0.0
        if self.loopback_only and not is_loopback(host):
            if not self.confirmed and self.devices > SAFE_DEVICES:
                return Verdict(REFUSED, location, "%s is not on this machine and the run was: %d devices need "
                                                  "--yes (or confirm = true in [target])" % (host, self.devices))
            cap = self.remote_cap
        return Verdict(OK, location, None, cap)


def fallback(url):
    """The rule for a device whose run context holds none (a device made without a run): the device's own URL is the only named host, and a host not on this machine needs
    a confirmation it does not have when that URL was on this machine."""
    return Rule(hosts=(host_of(url),), loopback_only=is_loopback(url), confirmed=False)
