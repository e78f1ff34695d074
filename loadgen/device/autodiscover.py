"""Autodiscover for mobile devices: from an e-mail address to the EAS URL.

The plain-old-XML (POX) "mobilesync" schema of MS-ASCMD 2.2.2.1 (Autodiscover
command, request and response schemas in MS-ASCMD 6.2-6.4), found and followed
as MS-OXDSCLI describes:

* the request (MS-ASCMD 6.3): ``<Autodiscover xmlns=".../mobilesync/requestschema/2006">
  <Request><EMailAddress/><AcceptableResponseSchema/></Request></Autodiscover>``,
  ``AcceptableResponseSchema`` MUST be :data:`RESPONSE_SCHEMA` (MS-ASCMD 2.2.3.1),
  sent as ``Content-Type: text/xml`` (MS-ASCMD 2.2.2.1), never WBXML;
* where (MS-OXDSCLI 3.1.5, MS-OXDISCO): POST to
  ``https://<domain>/autodiscover/autodiscover.xml``, then
  ``https://autodiscover.<domain>/autodiscover/autodiscover.xml``, then an
  unauthenticated GET of ``http://autodiscover.<domain>/autodiscover/autodiscover.xml``
  whose 302 is followed only to an https:// location; URLs the caller already
  knows (``first_urls``: the configured server, as an SCP lookup would give) are
  tried before those;
* answers: ``Action/Settings/Server`` with ``Type`` MobileSync and its ``Url``
  (MS-ASCMD 2.2.3.186.1, 4.2.4): done; ``Action/Redirect``, an e-mail address
  whose domain the client uses for a new Autodiscover (MS-ASCMD 2.2.3.147);
  an HTTP 302 with an https:// Location: POST there (MS-OXDSCLI 3.2.5); an
  ``Action/Error`` (``Status`` 2 protocol error, MS-ASCMD 2.2.3.177.1, 4.2.2) or
  the generic ``Response/Error/ErrorCode`` (600 invalid request, 601 no provider
  for the schema, MS-ASCMD 2.2.3.64): failed; anything else (no answer, another
  HTTP status, not Autodiscover XML): the next URL (MS-OXDSCLI 3.1.5.1);
* at most :data:`MAX_REDIRECTS` redirects of either kind ("stop redirecting after
  10 redirects", Exchange's POX Autodiscover reference, RedirectUrl);
* where the credentials may go: every authenticated request, every 302 and the MobileSync URL
  found are checked by the redirect rule of ``loadgen/wire/redirects.py`` (same scheme or stronger;
  only hosts the user named -- the configured servers, the e-mail domain and hosts inside it --
  or hosts an answer named in an https:// URL; the safety rail for a host not on this machine).
  A URL it refuses gets nothing: the next candidate is tried, and a discovery that ends without
  an answer says it refused something (``Failed.refused``).

Tolerance: a 401 that carries a ``WWW-Authenticate: Basic`` challenge is answered
once by sending the request again (a server that challenges before it accepts
credentials); a second 401 is an authentication failure.

:class:`Discovery` is the sans-I/O machine (steps out, responses in), tested without
a network; :func:`discover` drives it with aiohttp; :func:`device_step` is the
first step of a simulated device's enrolment when the scenario asks for it.
"""

import asyncio
import base64
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit
from xml.sax.saxutils import escape

from loadgen.wire import redirects

REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006"
RESPONSE_SCHEMA = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
OUTER_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
CONTENT_TYPE = "text/xml"
PATH = "/autodiscover/autodiscover.xml"
MAX_REDIRECTS = 10
MAX_BODY = 256 * 1024  # an Autodiscover answer is a few hundred bytes

_M = "{%s}" % RESPONSE_SCHEMA
_O = "{%s}" % OUTER_NS


class AutodiscoverError(ValueError):
    """A body that is not an Autodiscover response."""


# --------------------------------------------------------------------------- request / response


def build_request(email):
    """The POX request body (MS-ASCMD 6.3) for ``email``."""
    return ('<?xml version="1.0" encoding="utf-8"?>\r\n'
            '<Autodiscover xmlns="%s">\r\n  <Request>\r\n    <EMailAddress>%s</EMailAddress>\r\n'
            '    <AcceptableResponseSchema>%s</AcceptableResponseSchema>\r\n  </Request>\r\n</Autodiscover>\r\n'
            % (REQUEST_NS, escape(email), RESPONSE_SCHEMA)).encode("utf-8")


def parse_request(body):
    """(e-mail address, acceptable response schema) of a request body; AutodiscoverError otherwise."""
    root = _xml(body)
    ns = "{%s}" % REQUEST_NS
    if root.tag != ns + "Autodiscover":
        raise AutodiscoverError("the root is %s, not Autodiscover of the mobilesync request schema" % root.tag)
    request = root.find(ns + "Request")
    if request is None:
        raise AutodiscoverError("no Request element")
    email = (request.findtext(ns + "EMailAddress") or "").strip()
    schema = (request.findtext(ns + "AcceptableResponseSchema") or "").strip()
    return email, schema


@dataclass
class Server:
    type: str
    url: str
    name: str | None = None


@dataclass
class Answer:
    """A parsed Autodiscover response."""

    kind: str  # "settings", "redirect" or "error"
    email: str | None = None  # User/EMailAddress
    display_name: str | None = None
    culture: str | None = None
    servers: list = field(default_factory=list)  # [Server]
    redirect: str | None = None  # Action/Redirect: another e-mail address
    status: int | None = None  # Action/Error/Status (2: protocol error)
    error_code: int | None = None  # Response/Error/ErrorCode (600, 601)
    message: str | None = None
    debug_data: str | None = None

    @property
    def mobilesync_url(self):
        for server in self.servers:
            if server.type == "MobileSync" and server.url:
                return server.url
        return None

    def describe(self):
        if self.kind == "settings":
            return "MobileSync URL %s" % (self.mobilesync_url or "(none)")
        if self.kind == "redirect":
            return "redirect to the address %s" % self.redirect
        parts = []
        if self.status is not None:
            parts.append("Status %d" % self.status)
        if self.error_code is not None:
            parts.append("ErrorCode %d" % self.error_code)
        if self.message:
            parts.append(repr(self.message))
        return "error " + " ".join(parts)


def _xml(body):
    if isinstance(body, str):
        body = body.encode("utf-8")
    if not body or not body.strip():
        raise AutodiscoverError("empty body")
    if len(body) > MAX_BODY:
        raise AutodiscoverError("body larger than %d bytes" % MAX_BODY)
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:  # no entity expansion from a server
        raise AutodiscoverError("a DOCTYPE or ENTITY declaration")
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise AutodiscoverError("not XML: %s" % exc) from None


def _text(element, path):
    value = element.findtext(path)
    return value.strip() if value is not None else None


def _int(value):
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_response(body):
    """The :class:`Answer` in an Autodiscover response body (MS-ASCMD 6.2, 6.4)."""
    root = _xml(body)
    if root.tag != _O + "Autodiscover":
        raise AutodiscoverError("the root is %s, not Autodiscover of the response schema" % root.tag)
    response = root.find(_M + "Response")
    if response is None:
        generic = root.find(_O + "Response")
        if generic is None:
            raise AutodiscoverError("no Response element")
        error = generic.find(_O + "Error")
        if error is None:
            raise AutodiscoverError("a Response of the generic schema without an Error")
        return Answer("error", error_code=_int(_text(error, _O + "ErrorCode")), message=_text(error, _O + "Message"),
                      debug_data=_text(error, _O + "DebugData"))
    answer = Answer("error", culture=_text(response, _M + "Culture"),
                    email=_text(response, _M + "User/" + _M + "EMailAddress"),
                    display_name=_text(response, _M + "User/" + _M + "DisplayName"))
    action = response.find(_M + "Action")
    error = response.find(_M + "Error") if action is None else action.find(_M + "Error")
    if error is None and action is not None:
        redirect = _text(action, _M + "Redirect")
        settings = action.find(_M + "Settings")
        if redirect:
            answer.kind = "redirect"
            answer.redirect = redirect
            return answer
        if settings is not None:
            answer.kind = "settings"
            for server in settings.findall(_M + "Server"):
                answer.servers.append(Server(_text(server, _M + "Type") or "", _text(server, _M + "Url") or "",
                                             _text(server, _M + "Name")))
            return answer
    if error is None:
        raise AutodiscoverError("a Response with neither Settings, Redirect nor Error")
    answer.status = _int(_text(error, _M + "Status"))
    answer.error_code = _int(_text(error, _M + "ErrorCode"))
    answer.message = _text(error, _M + "Message")
    answer.debug_data = _text(error, _M + "DebugData")
    return answer


# --------------------------------------------------------------------------- the machine


def domain_of(email):
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or "/" in domain or ":" in domain:
        raise ValueError("%r is not an e-mail address" % email)
    return domain.lower()


def endpoint_of(url):
    """The Autodiscover URL on the same scheme, host and port as ``url`` (an EAS URL)."""
    parts = urlsplit(url)
    return "%s://%s%s" % (parts.scheme, parts.netloc.rpartition("@")[2], PATH)


@dataclass
class Step:
    """One request to send: POST the request body (authenticated) or GET (never authenticated)."""

    method: str
    url: str
    email: str
    body: bytes | None = None
    authenticated: bool = True
    why: str = ""  # how the URL was found
    challenged: bool = False  # a Basic challenge was already answered for this step
    refused: str | None = None  # the answer named a URL the redirect rule refused (why)


@dataclass
class Done:
    url: str  # the EAS (MobileSync) URL
    email: str  # the address it was found for (after Redirects)
    answer: Answer
    redirects: int


@dataclass
class Failed:
    reason: str
    advice: str | None = None
    answer: Answer | None = None
    auth: bool = False  # the server refused the credentials
    redirects: int = 0
    refused: bool = False  # the redirect rule (loadgen/wire/redirects.py) refused a URL on the way


AUTH_ADVICE = "401 on Autodiscover: check the user name format (DOMAIN\\user or UPN) and the password"


class Discovery:
    """Sans-I/O Autodiscover client: ``start()`` gives the first :class:`Step`; feed each
    answer to ``receive(status, headers, body)`` (or ``unreachable(reason)`` when there
    was none); each returns the next Step, or the outcome (:class:`Done` / :class:`Failed`)."""

    def __init__(self, email, first_urls=(), max_redirects=MAX_REDIRECTS, guard=None):
        self.domains = {domain_of(email)}  # ValueError for a bad address; hosts inside them are named
        self.email = email
        self.first_urls = tuple(first_urls)
        self.max_redirects = max_redirects
        self.redirects = 0
        self.queue = []
        self.tried = []  # (url, what happened)
        self.seen = {email.lower()}
        self.step = None
        self.hosts = set()  # hosts answers named in https:// URLs (loadgen/wire/redirects.py point 3)
        self.refusals = 0  # URLs an answer named that the rule refused (a candidate skipped is not one)
        # guard(current URL, new URL, hosts, domains, credentials) -> redirects.Verdict; by default
        # the rule with the configured servers as the named hosts and no safety rail
        if guard is None:
            rule = redirects.Rule(hosts=[redirects.host_of(u) for u in self.first_urls], loopback_only=False)
            guard = rule.check
        self.guard = guard

    def _check(self, current, url, credentials=True):
        return self.guard(current, url, tuple(self.hosts), tuple(self.domains), credentials)

    def _candidates(self, email):
        domain = domain_of(email)
        body = build_request(email)
        steps = [Step("POST", url, email, body, why="configured server") for url in self.first_urls]
        steps.append(Step("POST", "https://%s%s" % (domain, PATH), email, body, why="the e-mail domain"))
        steps.append(Step("POST", "https://autodiscover.%s%s" % (domain, PATH), email, body,
                          why="autodiscover. host of the e-mail domain"))
        steps.append(Step("GET", "http://autodiscover.%s%s" % (domain, PATH), email, None, authenticated=False,
                          why="unauthenticated redirect probe (MS-OXDSCLI)"))
        return steps

    def start(self):
        self.queue = self._candidates(self.email)
        return self._next()

    def _next(self, note=None):
        if note is not None and self.step is not None:
            self.tried.append((self.step.url, note))
        while self.queue:
            step = self.queue.pop(0)
            verdict = self._check(None, step.url, step.authenticated)
            if verdict.kind == redirects.REFUSED:  # nothing is sent to it
                self.tried.append((step.url, "refused: %s" % verdict.reason))
                continue
            self.step = step
            return step
        tried = "; ".join("%s: %s" % t for t in self.tried[-4:])
        return Failed("no Autodiscover server answered for %s (%s)" % (self.email, tried or "nothing tried"),
                      "check DNS for %s and autodiscover.%s, or give the EAS URL" % (
                          domain_of(self.email), domain_of(self.email)), redirects=self.redirects,
                      refused=self.refusals > 0)

    def _redirected(self):
        self.redirects += 1
        return self.redirects > self.max_redirects

    def unreachable(self, reason):
        """No answer from the current step's URL (connection, TLS, DNS, timeout)."""
        return self._next(reason)

    def receive(self, status, headers, body):
        step = self.step
        if status in (301, 302, 303, 307, 308):
            location = headers.get("Location") or headers.get("location")
            if not location:
                return self._next("HTTP %d without a Location" % status)
            location = urljoin(step.url, location)
            if not location.lower().startswith("https://"):
                self.refusals += 1
                step.refused = "a non-https location"
                return self._next("refused a redirect to a non-https location %s" % location)
            verdict = self._check(step.url, location)
            if verdict.kind != redirects.OK:  # (a 302 to the URL itself: refused as well)
                self.refusals += 1
                step.refused = verdict.reason
                return self._next("refused a redirect to %s: %s" % (location, verdict.reason))
            if self._redirected():
                return Failed("more than %d Autodiscover redirects" % self.max_redirects, redirects=self.redirects)
            self.tried.append((step.url, "HTTP %d to %s" % (status, location)))
            self.step = Step("POST", location, step.email, build_request(step.email),
                             why="HTTP %d from %s" % (status, step.url))
            return self.step
        if step.method == "GET":  # the redirect probe: only a redirect counts
            return self._next("HTTP %d, not a redirect" % status)
        if status == 401:
            challenge = headers.get("WWW-Authenticate") or headers.get("www-authenticate") or ""
            if challenge.lower().startswith("basic") and not step.challenged:
                step.challenged = True  # answer the challenge once: send the request again
                return step
            return Failed("401 Unauthorized at %s" % step.url, AUTH_ADVICE, auth=True, redirects=self.redirects)
        if status != 200:
            return self._next("HTTP %d" % status)
        try:
            answer = parse_response(body)
        except AutodiscoverError as exc:
            return self._next("not an Autodiscover response (%s)" % exc)
        if answer.kind == "settings":
            url = answer.mobilesync_url
            if not url:
                return Failed("the Autodiscover response has no MobileSync server", answer=answer,
                              redirects=self.redirects)
            if url.lower().startswith("https://"):
                self.hosts.add(redirects.host_of(url))
            verdict = self._check(step.url, url)
            if verdict.kind == redirects.REFUSED:
                step.refused = verdict.reason
                return Failed("the MobileSync URL %s is refused: %s" % (url, verdict.reason), answer=answer,
                              redirects=self.redirects, refused=True)
            return Done(url, step.email, answer, self.redirects)
        if answer.kind == "redirect":
            address = answer.redirect
            try:
                domain_of(address)
            except ValueError:
                return Failed("redirect to %r, which is not an e-mail address" % address, answer=answer,
                              redirects=self.redirects)
            if self._redirected():
                return Failed("more than %d Autodiscover redirects" % self.max_redirects, answer=answer,
                              redirects=self.redirects)
            if address.lower() in self.seen:
                return Failed("Autodiscover redirect loop (back to %s)" % address, answer=answer,
                              redirects=self.redirects)
            self.seen.add(address.lower())
            if step.url.lower().startswith("https://"):  # named over TLS: its candidates may get credentials
                self.domains.add(domain_of(address))
            self.tried.append((step.url, "redirect to the address %s" % address))
            self.email = address
            self.queue = self._candidates(address)
            self.step = None
            return self._next()
        advice = None
        if answer.error_code == 601:
            advice = "the server has no provider for the mobilesync schema: is ActiveSync enabled?"
        elif answer.error_code == 600:
            advice = "the server found the request invalid"
        return Failed("Autodiscover %s" % answer.describe(), advice, answer=answer, redirects=self.redirects)


# --------------------------------------------------------------------------- aiohttp driver

_SSL = {}


def host_map(mapping):
    """An aiohttp resolver that sends chosen host names to chosen addresses (curl's --connect-to).

    ``mapping``: ``{"host:port": "address:port"}`` or ``{"host": "address"}`` (the port kept);
    other names are resolved as usual.  The URL's host name is still the one TLS verifies and
    SNI carries: only where the connection goes changes.  For tests on loopback (the MS-OXDSCLI
    candidates autodiscover.<domain>:80/443) without touching /etc/hosts."""
    import socket

    from aiohttp.abc import AbstractResolver
    from aiohttp.resolver import DefaultResolver

    table = {k.lower(): v for k, v in mapping.items()}

    class HostMap(AbstractResolver):
        def __init__(self):
            self._default = None

        async def resolve(self, host, port=0, family=socket.AF_INET):
            to = table.get("%s:%d" % (host.lower(), port)) or table.get(host.lower())
            if to is None:
                if self._default is None:
                    self._default = DefaultResolver()
                return await self._default.resolve(host, port, family)
            if to.startswith("["):  # [IPv6]:port
                address, _, rest = to[1:].partition("]")
                to_port = rest[1:]
            elif to.count(":") == 1:
                address, to_port = to.split(":")
            else:
                address, to_port = to, ""
            fam = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [{"hostname": host, "host": address, "port": int(to_port) if to_port else port, "family": fam,
                     "proto": 0, "flags": socket.AI_NUMERICHOST}]

        async def close(self):
            if self._default is not None:
                await self._default.close()

    return HostMap()


def ssl_context(insecure=False, ca_file=None):
    """One TLS context per (insecure, CA file) per process."""
    key = (bool(insecure), ca_file)
    ctx = _SSL.get(key)
    if ctx is None:
        from loadgen.wire.transport import make_ssl_context

        ctx = _SSL[key] = make_ssl_context(insecure, ca_file)
    return ctx


def basic_authorization(login, password):
    return "Basic " + base64.b64encode(("%s:%s" % (login, password or "")).encode("utf-8")).decode("ascii")


async def discover(email, authorization, *, first_urls=(), ssl=None, user_agent="easload", timeout=30.0,
                   session=None, on_exchange=None, before_request=None, max_redirects=MAX_REDIRECTS, resolver=None,
                   guard=None):
    """Run a :class:`Discovery` over HTTP; returns :class:`Done` or :class:`Failed`.

    ``on_exchange(step, status, headers, body, elapsed, error)`` sees every exchange
    (status 0 and ``error`` when there was no answer), after the machine took the answer
    (``step.refused`` says whether it named a URL the redirect rule refused);
    ``before_request()`` is awaited before each request (the rate cap); ``resolver``: an
    aiohttp resolver for the session made here (e.g. :func:`host_map`); ``guard``: the
    redirect rule's check (:class:`Discovery`)."""
    import aiohttp

    machine = Discovery(email, first_urls, max_redirects, guard)
    own = session is None
    if own:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl if ssl is not None else True,
                                                                       force_close=True, resolver=resolver))
    try:
        result = machine.start()
        while isinstance(result, Step):
            step = result
            headers = {"User-Agent": user_agent}
            if step.body is not None:
                headers["Content-Type"] = CONTENT_TYPE
            if step.authenticated and authorization:
                headers["Authorization"] = authorization
            if before_request is not None:
                await before_request()
            t0 = time.perf_counter()
            try:
                async with session.request(step.method, step.url, data=step.body, headers=headers,
                                           allow_redirects=False,
                                           timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                    body = await resp.content.read(MAX_BODY + 1)
                    status, rheaders = resp.status, resp.headers
            except asyncio.TimeoutError:
                elapsed = time.perf_counter() - t0
                if on_exchange is not None:
                    on_exchange(step, 0, {}, b"", elapsed, "timeout")
                result = machine.unreachable("no answer within %.0f s" % timeout)
                continue
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                # never str(exc) of a request error: it may carry the URL's user info; the class name
                elapsed = time.perf_counter() - t0
                kind = "certificate not trusted" if isinstance(exc, aiohttp.ClientConnectorCertificateError) \
                    else type(exc).__name__
                if on_exchange is not None:
                    on_exchange(step, 0, {}, b"", elapsed, kind)
                result = machine.unreachable(kind)
                continue
            elapsed = time.perf_counter() - t0
            result = machine.receive(status, rheaders, body)
            if on_exchange is not None:
                on_exchange(step, status, rheaders, body, elapsed, None)
        return result
    finally:
        if own:
            await session.close()


# --------------------------------------------------------------------------- devices


def _outcome(status, body):
    if status == 0:
        return "conn_error"
    if status == 200 or 300 <= status < 400:
        if status == 200:
            try:
                if parse_response(body).kind == "error":
                    return "eas_error"
            except AutodiscoverError:
                return "malformed"
        return "ok"
    if status == 401:
        return "auth"
    if status == 503:
        return "throttled"
    return "http_4xx" if status < 500 else "http_5xx"


async def device_step(device, deadline, transport=None):
    """A device's Autodiscover before its first Provision (scenario ``[target] autodiscover``).

    Every request is counted as the command "Autodiscover" in the stats.  Found: the
    device uses the discovered URL and returns True.  401: the device stops
    (auth_failed).  A URL the redirect rule refuses (loadgen/wire/redirects.py): counted as
    "redirect_refused", the device stops (failed).  Otherwise it waits its back-off and
    returns False (tries again)."""
    from loadgen.wire import ratelimit

    pattern, insecure, ca_file = device.load.autodiscover
    n = device.origin[1] if device.origin is not None else device.index
    email = pattern.format(n=n)
    stats = device.stats
    load = device.load

    def on_exchange(step, status, headers, body, elapsed, error):
        if status == 0:  # no answer: timeout, the TLS handshake refused (certificate ...), or a connection error
            outcome = ("timeout" if error == "timeout" else
                       "tls_error" if error == "certificate not trusted" or "SSL" in (error or "") else "conn_error")
        elif step.refused:
            outcome = "redirect_refused"
        else:
            outcome = _outcome(status, body)
        stats.record("Autodiscover", status, outcome, elapsed, len(step.body or b""), len(body))

    def guard(current, url, hosts, domains, credentials):
        verdict = device.redirect_verdict(url, domains, hosts, current) if credentials else \
            device.redirect_rule().check(current, url, credentials=False)
        if verdict.kind == redirects.OK and verdict.cap:  # a host not on this machine: the cap goes on
            ratelimit.remote_move(load, verdict.cap)
        return verdict

    async def before():
        if load.request_cap:  # (it may go on during the discovery)
            await ratelimit.acquire(load)

    device.in_flight = "Autodiscover"
    try:
        result = await discover(email, device.endpoint.headers_no_key["Authorization"],
                                first_urls=(endpoint_of(device.base_url),),
                                ssl=ssl_context(insecure, ca_file),
                                user_agent=device.profile.user_agent, timeout=load.timeout,
                                on_exchange=on_exchange, before_request=before, guard=guard)
    except ValueError as exc:  # not an e-mail address
        result = Failed(str(exc))
    finally:
        device.in_flight = None
    if isinstance(result, Done):
        trusted = (redirects.host_of(result.url),) if result.url.lower().startswith("https://") else ()
        verdict = device.redirect_verdict(result.url, (domain_of(result.email),), trusted)
        if verdict.kind == redirects.REFUSED:  # (the machine checked it already: a device's own rule)
            result = Failed("the MobileSync URL %s is refused: %s" % (result.url, verdict.reason), refused=True)
        else:
            device.trusted = trusted
            if verdict.kind == redirects.OK:
                device._move(transport, verdict)
            device.discovered = True
            return True
    device.detail = "Autodiscover: " + result.reason
    if result.auth:
        device.state = "auth_failed"
        device.alive = False
        return False
    if result.refused:  # the rule will not change its mind: the device stops
        device.state = "failed"
        device.alive = False
        return False
    await device._backoff(deadline)
    return False
