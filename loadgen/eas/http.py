"""The MS-ASHTTP request head, sans-I/O: its rules in one place, built once per device.

A request (MS-ASHTTP 2.2.1.1) is ``POST <path>?<query>`` with the plain query string of
MS-ASHTTP 2.2.1.1.1.1 (``User``, ``DeviceId``, ``DeviceType``, then ``Cmd``) and the headers of
MS-ASHTTP 2.2.1.1.2: ``MS-ASProtocolVersion``, ``Content-Type`` (WBXML, MS-ASHTTP 2.2.1.1.2.4),
``User-Agent``, ``Authorization`` (Basic, RFC 7617, with the login ``DOMAIN\\user`` or the
user's name) and ``X-MS-PolicyKey`` (MS-ASHTTP 2.2.1.1.2.6; left out before the device has a key).

:func:`request_head` turns a device's URL, identity and credentials into :class:`RequestHead`,
the pre-built parts the transport (``loadgen/wire/transport.py`` ``DeviceEndpoint``) joins with
the command, the policy key and the body: only those vary from one request to the next.
:func:`authorization`, :func:`query` and :func:`headers` give the same rules to a caller that
builds its requests otherwise (an HTTP client library, a diagnostic tool).
"""

import base64
from typing import NamedTuple
from urllib.parse import quote, urlsplit

WBXML = "application/vnd.ms-sync.wbxml"  # the Content-Type of a command's body (MS-ASHTTP 2.2.1.1.2.4)
DEFAULT_PATH = "/Microsoft-Server-ActiveSync"
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"  # RFC 3986 pchar and "/": kept as they are (a %XX stays encoded)

_URLS = {}  # base URL -> (scheme, host, port, Host header, path): one set of strings for every device
_TAILS = {}  # (host header, version, user agent) -> head bytes shared by every device with them


def login(user, domain=""):
    """The user as the Authorization header and the query string name it: ``DOMAIN\\user`` or ``user``."""
    return "%s\\%s" % (domain, user) if domain else user


def basic_authorization(login, password):
    """``Basic <base64(login:password)>`` (RFC 7617 2).  surrogateescape: a password read from the
    environment with bytes that are not UTF-8 is sent as those bytes."""
    return "Basic " + base64.b64encode(
        ("%s:%s" % (login, password or "")).encode("utf-8", "surrogateescape")).decode("ascii")


def authorization(login, password=None, bearer=None):
    """The Authorization header's value: ``Bearer <token>`` when a token is given, else Basic."""
    return "Bearer " + bearer if bearer else basic_authorization(login, password)


def query(login, device_id, device_type, command=""):
    """The plain query string (MS-ASHTTP 2.2.1.1.1.1), every value percent-encoded, ``Cmd`` last:
    without ``command`` it ends with ``Cmd=`` for the command to be appended."""
    return "User=%s&DeviceId=%s&DeviceType=%s&Cmd=%s" % (
        quote(login, safe="", errors="surrogateescape"), quote(device_id, safe="", errors="surrogateescape"),
        quote(device_type, safe="", errors="surrogateescape"), command)


def headers(version, user_agent, authorization, policy_key=None, body=True):
    """The request headers but Host and Content-Length, as a new dict (MS-ASHTTP 2.2.1.1.2)."""
    found = {"Authorization": authorization, "MS-ASProtocolVersion": version, "User-Agent": user_agent}
    if body:
        found["Content-Type"] = WBXML
    if policy_key is not None:
        found["X-MS-PolicyKey"] = policy_key
    return found


def location_url(location):
    """A redirect's location as a URL: a bare host name (what some servers put in a 451's
    ``X-MS-Location``, MS-ASHTTP 2.2.2.1.1) means ``https://<host>/Microsoft-Server-ActiveSync``;
    anything else is returned as it is (``loadgen/wire/redirects.py`` judges it)."""
    location = (location or "").strip()
    if location and "://" not in location and "/" not in location and "@" not in location:
        return "https://%s%s" % (location, DEFAULT_PATH)
    return location


def url_parts(base_url):
    """(scheme, host, port, Host header, path) of a device's URL.  User info is left out (the
    device's credentials go in its Authorization header only); a non-ASCII host name is given in its
    IDNA form, a non-ASCII path percent-encoded as UTF-8 (RFC 3986 2.1, 3.3)."""
    found = _URLS.get(base_url)
    if found is None:
        parts = urlsplit(base_url)
        scheme = parts.scheme or "http"
        host = parts.hostname or "127.0.0.1"
        if not host.isascii():  # an internationalised host name: its IDNA (xn--) form
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                host = quote(host, safe="")
        port = parts.port or (443 if scheme == "https" else 80)
        path = quote(parts.path, safe=_PATH_SAFE, errors="surrogateescape") or DEFAULT_PATH
        found = (scheme, host, port, host if parts.port is None else "%s:%d" % (host, port), path)
        if len(_URLS) < 10000:  # a handful of servers (redirects add a few)
            _URLS[base_url] = found
    return found


def head_tail(host_header, version, user_agent):
    """The head after the request target, without the Authorization and the policy key: one bytes
    object shared by every device with the same server, version and user agent."""
    key = (host_header, version, user_agent)
    tail = _TAILS.get(key)
    if tail is None:
        tail = _TAILS[key] = (
            " HTTP/1.1\r\nHost: %s\r\nMS-ASProtocolVersion: %s\r\nContent-Type: %s\r\nUser-Agent: %s\r\n"
            "Accept-Language: en-us\r\n" % (host_header, version, WBXML, user_agent)).encode("latin-1")
    return tail


class RequestHead(NamedTuple):
    """A device's pre-built request parts (``DeviceEndpoint`` keeps them)."""

    scheme: str
    host: str  # to connect to (IDNA form)
    port: int
    base: str  # the URL without user info, as requests name it
    prefix: bytes  # b"POST <path>?User=...&DeviceId=...&DeviceType=...&Cmd="
    tail: bytes  # head_tail(...): shared
    auth: bytes  # b"Authorization: ...\r\n"


def request_head(base_url, user, password, device_id, device_type, version, user_agent, domain="", bearer=None):
    """The :class:`RequestHead` of a device at ``base_url``."""
    scheme, host, port, host_header, path = url_parts(base_url)
    name = login(user, domain)
    base = "%s://%s%s" % (scheme, host_header if ":" not in host else "[%s]:%d" % (host, port), path)
    return RequestHead(scheme, host, port, base,
                       ("POST %s?%s" % (path, query(name, device_id, device_type))).encode("latin-1"),
                       head_tail(host_header, version, user_agent),
                       ("Authorization: %s\r\n" % authorization(name, password, bearer)).encode("latin-1"))
