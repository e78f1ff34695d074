"""A device's Autodiscover step over the network (the protocol: ``loadgen/eas/autodiscover.py``).

:func:`discover` drives the sans-I/O :class:`~loadgen.eas.autodiscover.Discovery` with aiohttp,
every URL it would send credentials to put to the redirect rule of ``loadgen/wire/redirects.py``
(same scheme or stronger; only hosts the user named -- the configured servers, the e-mail domain
and hosts inside it -- or hosts an answer named in an https:// URL; the safety rail for a host not
on this machine); :func:`device_step` is the first step of a simulated device's enrolment when the
scenario asks for it.
"""

import asyncio
import time

from loadgen.eas.autodiscover import (
    CONTENT_TYPE, MAX_BODY, MAX_REDIRECTS, AutodiscoverError, Discovery, Done, Failed, Step, domain_of, endpoint_of,
    parse_response,
)
from loadgen.wire import redirects

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


def hosts_of(urls):
    """The hosts of the URLs an Autodiscover answer named (the machine keeps URLs, the rule hosts)."""
    return tuple(redirects.host_of(u) for u in urls)


def rule_guard(first_urls=()):
    """The machine's guard when the caller gives none: the redirect rule with the configured
    servers (``first_urls``) as the named hosts and no safety rail."""
    check = redirects.Rule(hosts=hosts_of(first_urls), loopback_only=False).check

    def guard(current, url, named, domains, credentials):
        return check(current, url, hosts_of(named), domains, credentials)

    return guard


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

    machine = Discovery(email, first_urls, max_redirects, guard=guard if guard is not None else rule_guard(first_urls))
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

    def guard(current, url, named, domains, credentials):
        verdict = device.redirect_verdict(url, domains, hosts_of(named), current) if credentials else \
            device.redirect_rule().check(current, url, credentials=False)
        if verdict.ok and verdict.cap:  # a host not on this machine: the cap goes on
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
        if verdict.refused:  # (the machine checked it already: a device's own rule)
            result = Failed("the MobileSync URL %s is refused: %s" % (result.url, verdict.reason), refused=True)
        else:
            device.trusted = trusted
            if verdict.ok:
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
