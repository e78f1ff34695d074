"""The devices' HTTP transport (EAS over HTTP, MS-ASHTTP).

This first transport uses one shared aiohttp ClientSession with keep-alive
connections; the lean asyncio.Protocol client of the transport issue will
replace it behind the same ``post`` interface.

Per device, the constant parts of every request (URL prefix with User,
DeviceId and DeviceType, Authorization, MS-ASProtocolVersion, User-Agent,
Content-Type) are built once; a request only adds Cmd and the policy key.
Credentials live only in the prebuilt Authorization header and never appear
in errors, logs or metrics.
"""

import asyncio
import base64
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

WBXML = "application/vnd.ms-sync.wbxml"


@dataclass(slots=True)
class Response:
    status: int  # HTTP status; 0 when no response arrived
    headers: object  # case-insensitive mapping
    body: bytes
    elapsed: float  # seconds
    error: str | None = None  # "timeout" / "connection" when status is 0


class DeviceEndpoint:
    """The prebuilt, per-device part of every request."""

    __slots__ = ("url_prefix", "headers", "headers_no_key")

    def __init__(self, base_url, user, password, device_id, device_type, version, user_agent, domain=""):
        login = "%s\\%s" % (domain, user) if domain else user
        token = base64.b64encode(("%s:%s" % (login, password)).encode("utf-8")).decode("ascii")
        self.url_prefix = "%s?User=%s&DeviceId=%s&DeviceType=%s&Cmd=" % (
            base_url, quote(login, safe=""), quote(device_id, safe=""), quote(device_type, safe=""))
        self.headers_no_key = {
            "Authorization": "Basic " + token,
            "MS-ASProtocolVersion": version,
            "Content-Type": WBXML,
            "User-Agent": user_agent,
            "Accept-Language": "en-us",
        }
        self.headers = self.headers_no_key

    def __repr__(self):  # never show the Authorization header
        return "DeviceEndpoint(%s...)" % self.url_prefix.split("?")[0]


def make_ssl_context(insecure=False, ca_file=None):
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    return ctx


class Transport:
    """One aiohttp ClientSession shared by all devices of a worker."""

    def __init__(self, *, timeout=60.0, insecure=False, ca_file=None, limit=0):
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl = make_ssl_context(insecure, ca_file)
        self._limit = limit
        self.session = None

    async def start(self):
        connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl, keepalive_timeout=300,
                                         enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(connector=connector, timeout=self.timeout, auto_decompress=True,
                                             skip_auto_headers=("Accept-Encoding",))

    async def close(self):
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def post(self, endpoint, command, body, policy_key, timeout=None):
        headers = endpoint.headers_no_key
        if policy_key is not None:
            headers = dict(headers)
            headers["X-MS-PolicyKey"] = policy_key
        t0 = time.perf_counter()
        try:
            async with self.session.post(endpoint.url_prefix + command, data=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=timeout) if timeout else self.timeout, allow_redirects=False) as resp:
                data = await resp.read()
                return Response(resp.status, resp.headers, data, time.perf_counter() - t0)
        except asyncio.TimeoutError:
            return Response(0, {}, b"", time.perf_counter() - t0, "timeout")
        except (aiohttp.ClientError, OSError) as exc:
            # never str(exc) of a request error: it may carry the URL; keep the class name
            return Response(0, {}, b"", time.perf_counter() - t0, "connection:" + type(exc).__name__)
