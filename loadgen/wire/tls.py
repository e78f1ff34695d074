"""The devices' TLS check before a run: one handshake per https host with the devices' settings.

A device that does not trust the server's certificate fails every request; the run says why once,
before any load, instead of counting thousands of ``tls_error`` outcomes without a reason.
"""

import asyncio
import ssl
from urllib.parse import urlsplit


async def certificate_problem(url, ctx, timeout=5.0):
    """One TLS handshake with the devices' settings (``ctx``): "certificate not trusted (...)" when
    verification fails (RFC 5280 6), else None (other failures are the devices' to count)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return None
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 443, ssl=ctx,
                                                            server_hostname=parts.hostname)
        writer.close()
    except ssl.SSLCertVerificationError as exc:
        return "certificate not trusted (%s)" % (exc.verify_message or "certificate verify failed")
    except (OSError, ssl.SSLError, TimeoutError):
        return None
    return None


def _where(url):
    parts = urlsplit(url)
    return (parts.hostname or "").lower(), parts.port or 443


async def preflight(urls, ctx):
    """:func:`certificate_problem` for every https URL of ``urls``, once per distinct host and port,
    all at once: [(URL, problem)] in the order of ``urls``, only those with a problem."""
    todo, seen = [], set()
    for url in urls:
        if url.lower().startswith("https:") and _where(url) not in seen:
            seen.add(_where(url))
            todo.append(url)
    found = await asyncio.gather(*(certificate_problem(u, ctx) for u in todo))
    return [(u, problem) for u, problem in zip(todo, found) if problem]


__all__ = ["certificate_problem", "preflight"]
