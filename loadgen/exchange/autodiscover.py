"""Autodiscover on the embedded target (POX mobilesync schema, MS-ASCMD 2.2.2.1, 6.2-6.4).

``POST /autodiscover/autodiscover.xml`` (path compared case-insensitively, as IIS
does), authenticated with the same Basic credentials as EAS:

* a request that is not the mobilesync request schema -> ``Response/Error`` with
  ``ErrorCode`` 600 (invalid request); another ``AcceptableResponseSchema`` -> 601
  (no provider for it) (MS-ASCMD 2.2.3.64), in the generic response schema;
* an address whose domain is in ``state.autodiscover_redirect`` -> ``Action/Redirect``
  to the same local part at the mapped domain (MS-ASCMD 2.2.3.147) -- the mode that
  tests redirect following (a map a -> b, b -> a makes a loop);
* an address that is the authenticated user's (its local part, or the full
  address for UPN users) -> ``Action/Settings/Server`` Type MobileSync with the
  target's own EAS URL (scheme and Host of the request + ``state.eas_path``);
* any other address -> ``Action/Error`` Status 2 (protocol error, MS-ASCMD
  2.2.3.177.1) with a message.  Which error Exchange gives for an unknown or
  foreign address is not in the stored specification excerpts: this is a choice.

``GET`` (what the unauthenticated MS-OXDSCLI redirect probe sends) gets 401 without
credentials and ErrorCode 600 with them: this server has no redirect to give.

With TLS, the target may also listen on plain HTTP (``start_target(http_port=...)``):
that side plays the http:// site of an Exchange organisation (:func:`plain_http_app`):
the unauthenticated ``GET http://autodiscover.<domain>/autodiscover/autodiscover.xml``
gets a 302 to ``https://<same host>:<TLS port>/autodiscover/autodiscover.xml``
(MS-OXDSCLI 3.1.5: the client follows it only to https, then POSTs there), every
other request a 403 "SSL required" (IIS's answer, 403.4, on a site that requires SSL).
"""

from aiohttp import web

from loadgen.eas.autodiscover import (
    PATH, RESPONSE_SCHEMA, AutodiscoverError, error_response, generic_error, parse_request, redirect_response,
    settings_response,
)

COMMAND = "Autodiscover"  # the label in the target's counters


def answer(state, user, email, eas_url):
    """The response body for an authenticated ``user`` asking about ``email``."""
    local, _, domain = email.rpartition("@")
    target = state.autodiscover_redirect.get(domain.lower())
    if target:
        return redirect_response(email, "%s@%s" % (local, target))
    if user == email or user.lower() == local.lower() or state.smtp_address(user).lower() == email.lower():
        return settings_response(email, eas_url, user)
    return error_response(email, 2, "The e-mail address does not belong to the authenticated user")


async def handle(target, request):
    """aiohttp handler (bound by server.py): GET and POST on the Autodiscover path."""
    state = target.state
    user = state.authenticate(request.headers.get("Authorization"))
    if user is None or target._challenge(request):
        return target._unauthorized(COMMAND)
    if request.method != "POST":
        return _reply(target, 200, generic_error(600, "Invalid Request"))
    body = await request.read()
    try:
        email, schema = parse_request(body)
    except AutodiscoverError:
        return _reply(target, 200, generic_error(600, "Invalid Request"))
    if schema != RESPONSE_SCHEMA:
        return _reply(target, 200, generic_error(601, "Provider is not available"))
    if "@" not in email:
        return _reply(target, 200, generic_error(600, "Invalid Request"))
    eas_url = "%s://%s%s" % (request.scheme, request.host, state.eas_path)
    return _reply(target, 200, answer(state, user, email, eas_url))


def _reply(target, status, body):
    target._count(COMMAND, status, None)
    return web.Response(status=status, body=body, content_type="text/xml", charset="utf-8")


def plain_http_app(target):
    """The plain-HTTP side of a TLS target (its port in ``target.https_port``): the Autodiscover
    redirect probe's 302 to https, 403 otherwise."""

    async def plain(request):
        path = request.path.lower()
        if path == PATH and request.method == "GET":
            target._count(COMMAND, 302, None)
            host = request.url.host or "127.0.0.1"
            if ":" in host:  # an IPv6 address
                host = "[%s]" % host
            raise web.HTTPFound("https://%s:%d%s" % (host, target.https_port, PATH))
        await request.read()
        command = COMMAND if path == PATH else (request.query.get("Cmd") or request.method)
        return target._plain(command, 403, "403.4 SSL required")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", plain)
    return app
