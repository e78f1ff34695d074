"""Autodiscover for mobile devices, sans-I/O: from an e-mail address to the EAS URL.

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
  found are put to the ``guard`` the caller gives (the redirect rule of
  ``loadgen/wire/redirects.py``).  A URL it refuses gets nothing: the next candidate is tried,
  and a discovery that ends without an answer says it refused something (``Failed.refused``).

Tolerance: a 401 that carries a ``WWW-Authenticate: Basic`` challenge is answered
once by sending the request again (a server that challenges before it accepts
credentials); a second 401 is an authentication failure.

:class:`Discovery` is the machine (steps out, responses in); the requests and the answers
are built and parsed here for the client and the embedded Exchange alike.  The network
step is the caller's (``loadgen/device/autodiscover.py``).
"""

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit
from xml.sax.saxutils import escape

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


# --------------------------------------------------------------------------- responses (the server's side)


def _document(inner):
    return ('<?xml version="1.0" encoding="utf-8"?>\r\n<Autodiscover xmlns="%s">\r\n%s</Autodiscover>\r\n'
            % (OUTER_NS, inner)).encode("utf-8")


def generic_error(code, message):
    """ErrorCode 600/601 in the generic response schema (MS-ASCMD 6.4, 2.2.3.64)."""
    return _document('  <Response>\r\n    <Error>\r\n      <ErrorCode>%d</ErrorCode>\r\n      <Message>%s</Message>\r\n'
                '      <DebugData />\r\n    </Error>\r\n  </Response>\r\n' % (code, escape(message)))


def _mobilesync(email, action, display_name=None):
    user = "    <User>\r\n%s      <EMailAddress>%s</EMailAddress>\r\n    </User>\r\n" % (
        "      <DisplayName>%s</DisplayName>\r\n" % escape(display_name) if display_name else "", escape(email))
    return _document('  <Response xmlns="%s">\r\n    <Culture>en:us</Culture>\r\n%s    <Action>\r\n%s    </Action>\r\n'
                '  </Response>\r\n' % (RESPONSE_SCHEMA, user, action))


def settings_response(email, url, display_name=None):
    """Action/Settings with one MobileSync server (MS-ASCMD 4.2.4)."""
    return _mobilesync(email, "      <Settings>\r\n        <Server>\r\n          <Type>MobileSync</Type>\r\n"
                       "          <Url>%s</Url>\r\n          <Name>%s</Name>\r\n        </Server>\r\n"
                       "      </Settings>\r\n" % (escape(url), escape(url)), display_name)


def redirect_response(email, address):
    """Action/Redirect to another e-mail address (MS-ASCMD 2.2.3.147)."""
    return _mobilesync(email, "      <Redirect>%s</Redirect>\r\n" % escape(address))


def error_response(email, status, message):
    """Action/Error with Status (MS-ASCMD 4.2.2)."""
    return _mobilesync(email, "      <Error>\r\n        <Status>%d</Status>\r\n        <Message>%s</Message>\r\n"
                       "        <DebugData>MailUser</DebugData>\r\n      </Error>\r\n" % (status, escape(message)))


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

    def __init__(self, email, first_urls=(), max_redirects=MAX_REDIRECTS, *, guard):
        self.domains = {domain_of(email)}  # ValueError for a bad address; hosts inside them are named
        self.email = email
        self.first_urls = tuple(first_urls)
        self.max_redirects = max_redirects
        self.redirects = 0
        self.queue = []
        self.tried = []  # (url, what happened)
        self.seen = {email.lower()}
        self.step = None
        self.named = set()  # https:// URLs answers named: their hosts are named (loadgen/wire/redirects.py point 3)
        self.refusals = 0  # URLs an answer named that the rule refused (a candidate skipped is not one)
        # guard(current URL, new URL, named URLs, domains, credentials) -> a verdict whose ``kind`` is
        # ``ok`` (follow it), ``same`` (the URL in use) or ``refused`` (nothing may be sent to it), with a
        # ``reason`` (loadgen/wire/redirects.py Verdict)
        self.guard = guard

    def _check(self, current, url, credentials=True):
        return self.guard(current, url, tuple(self.named), tuple(self.domains), credentials)

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
            if verdict.refused:  # nothing is sent to it
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
            if not verdict.ok:  # (a 302 to the URL itself: refused as well)
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
                self.named.add(url)
            verdict = self._check(step.url, url)
            if verdict.refused:
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
