"""Autodiscover (MS-ASCMD 2.2.2.1 / 6.2-6.4, MS-OXDSCLI): the sans-I/O client, the
embedded target's answers over real HTTP, and the device step in a run."""

import pytest

from loadgen.device import autodiscover as dad
from loadgen.eas import autodiscover as ad
from loadgen.eas.http import basic_authorization
from loadgen import scenario
from loadgen.cli.start import run
from loadgen.exchange.server import start_target
from loadgen.exchange.state import TargetState


def discovery(email, first_urls=(), **kw):
    """The machine guarded as ``discover`` guards it when the caller gives no guard."""
    return ad.Discovery(email, first_urls, guard=dad.rule_guard(first_urls), **kw)


# MS-ASCMD 4.2.4 "Response - Case Server Settings" (two servers: MobileSync and CertEnroll)
SETTINGS_4_2_4 = b"""<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
 <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006">
  <Culture>en:us</Culture>
  <User><DisplayName>Chris Gray</DisplayName><EMailAddress>chris@woodgrovebank.com</EMailAddress></User>
  <Action><Settings>
   <Server><Type>MobileSync</Type>
    <Url> https://loandept.woodgrovebank.com/Microsoft-Server-ActiveSync </Url>
    <Name> https://loandept.woodgrovebank.com/Microsoft-Server-ActiveSync </Name></Server>
   <Server><Type>CertEnroll</Type><Url>https://cert.woodgrovebank.com/CertEnroll</Url><Name />
    <ServerData>CertEnrollTemplate</ServerData></Server>
  </Settings></Action>
 </Response>
</Autodiscover>"""

# MS-ASCMD 4.2.2 "Response - Case Error"
ERROR_4_2_2 = b"""<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
 <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006">
  <Culture>en:us</Culture><User><EMailAddress>chris@woodgrovebank.com</EMailAddress></User>
  <Action><Error><Status>2</Status><Message>The directory service could not be reached</Message>
   <DebugData>MailUser</DebugData></Error></Action>
 </Response>
</Autodiscover>"""


# -- request and response (sans-I/O)

def test_request_body_follows_the_request_schema_6_3():
    body = ad.build_request("a&b@example.com")
    email, schema = ad.parse_request(body)
    assert email == "a&b@example.com" and schema == ad.RESPONSE_SCHEMA  # MS-ASCMD 2.2.3.1: MUST be this value
    assert b'xmlns="http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006"' in body
    assert b"a&amp;b@example.com" in body


def test_parse_settings_example_4_2_4():
    answer = ad.parse_response(SETTINGS_4_2_4)
    assert answer.kind == "settings" and answer.display_name == "Chris Gray"
    assert answer.mobilesync_url == "https://loandept.woodgrovebank.com/Microsoft-Server-ActiveSync"
    assert [s.type for s in answer.servers] == ["MobileSync", "CertEnroll"]


def test_parse_error_example_4_2_2_and_generic_error_codes():
    answer = ad.parse_response(ERROR_4_2_2)
    assert (answer.kind, answer.status, answer.message) == ("error", 2, "The directory service could not be reached")
    generic = ad.parse_response(ad.generic_error(601, "Provider is not available"))  # MS-ASCMD 2.2.3.64
    assert (generic.kind, generic.error_code) == ("error", 601)


def test_parse_redirect_and_reject_what_is_not_autodiscover():
    answer = ad.parse_response(ad.redirect_response("a@x.com", "a@y.com"))
    assert (answer.kind, answer.redirect) == ("redirect", "a@y.com")
    for bad in (b"", b"<html>hello</html>", b"not xml <", b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'):
        with pytest.raises(ad.AutodiscoverError):
            ad.parse_response(bad)


# -- the machine

def _settings(url="https://eas.example.com/Microsoft-Server-ActiveSync", email="u@example.com"):
    return ad.settings_response(email, url)


def test_candidates_in_ms_oxdscli_order():
    d = discovery("u@Example.com", first_urls=("http://127.0.0.1:1/autodiscover/autodiscover.xml",))
    steps = [d.start()]
    while True:
        nxt = d.unreachable("refused")
        if not isinstance(nxt, ad.Step):
            break
        steps.append(nxt)
    assert [(s.method, s.url, s.authenticated) for s in steps] == [
        ("POST", "http://127.0.0.1:1/autodiscover/autodiscover.xml", True),
        ("POST", "https://example.com/autodiscover/autodiscover.xml", True),
        ("POST", "https://autodiscover.example.com/autodiscover/autodiscover.xml", True),
        ("GET", "http://autodiscover.example.com/autodiscover/autodiscover.xml", False),
    ]
    assert steps[-1].body is None
    assert isinstance(nxt, ad.Failed) and "no Autodiscover server answered" in nxt.reason


def test_settings_end_the_discovery():
    d = discovery("u@example.com")
    d.start()
    done = d.receive(200, {}, _settings())
    assert isinstance(done, ad.Done) and done.url == "https://eas.example.com/Microsoft-Server-ActiveSync"


def test_unauthenticated_get_302_is_followed_only_to_https():
    d = discovery("u@example.com")
    d.start()
    d.unreachable("x")
    d.unreachable("x")  # now the GET probe
    assert d.step.method == "GET"
    follow = d.receive(302, {"Location": "https://mail.example.com/autodiscover/autodiscover.xml"}, b"")
    assert (follow.method, follow.url, follow.authenticated) == (
        "POST", "https://mail.example.com/autodiscover/autodiscover.xml", True)
    d2 = discovery("u@example.com")
    d2.start()
    d2.unreachable("x")
    d2.unreachable("x")
    refused = d2.receive(302, {"Location": "http://evil.example.net/autodiscover/autodiscover.xml"}, b"")
    assert isinstance(refused, ad.Failed) and "non-https" in refused.reason


def test_a_get_answer_that_is_not_a_redirect_is_not_trusted():
    d = discovery("u@example.com")
    d.start()
    d.unreachable("x")
    d.unreachable("x")
    assert isinstance(d.receive(200, {}, _settings()), ad.Failed)


def test_redirect_to_another_address_restarts_with_its_domain():
    d = discovery("u@example.com", first_urls=("https://127.0.0.1:1/autodiscover/autodiscover.xml",))
    d.start()
    nxt = d.receive(200, {}, ad.redirect_response("u@example.com", "u@example.org"))
    assert nxt.email == "u@example.org" and nxt.url == "https://127.0.0.1:1/autodiscover/autodiscover.xml"
    assert b"u@example.org" in nxt.body
    d.unreachable("x")
    # named over https: the new domain's hosts may get the credentials (loadgen/wire/redirects.py point 3)
    assert d.step.url == "https://example.org/autodiscover/autodiscover.xml"
    done = d.receive(200, {}, _settings(email="u@example.org"))
    assert isinstance(done, ad.Done) and done.email == "u@example.org" and done.redirects == 1


def test_an_address_redirect_over_plain_http_does_not_send_credentials_to_its_domain():
    d = discovery("u@example.com", first_urls=("http://127.0.0.1:1/autodiscover/autodiscover.xml",))
    d.start()
    nxt = d.receive(200, {}, ad.redirect_response("u@example.com", "u@example.org"))
    assert nxt.url == "http://127.0.0.1:1/autodiscover/autodiscover.xml"  # a configured server: named
    d.unreachable("x")
    # https://example.org and https://autodiscover.example.org are skipped: only the probe (no credentials)
    assert (d.step.method, d.step.url, d.step.authenticated) == (
        "GET", "http://autodiscover.example.org/autodiscover/autodiscover.xml", False)
    assert any("refused" in note and "example.org" in url for url, note in d.tried)


def test_redirect_loop_and_redirect_limit():
    d = discovery("u@a.com")
    d.start()
    d.receive(200, {}, ad.redirect_response("u@a.com", "u@b.com"))
    loop = d.receive(200, {}, ad.redirect_response("u@b.com", "u@a.com"))
    assert isinstance(loop, ad.Failed) and "loop" in loop.reason
    d = discovery("u@d0.com", max_redirects=10)
    result = d.start()
    for i in range(1, 12):
        result = d.receive(302, {"Location": "https://h%d.d0.com/autodiscover/autodiscover.xml" % i}, b"")
        if not isinstance(result, ad.Step):
            break
    assert isinstance(result, ad.Failed) and "more than 10" in result.reason and i == 11


def test_a_302_to_a_host_outside_the_named_ones_gets_no_credentials():
    """loadgen/wire/redirects.py: a 302 to an https host that is neither a configured server nor in the
    e-mail domain is refused (nothing sent), as is one to the URL that answered."""
    d = discovery("u@d0.com", first_urls=("https://eas.corp.test/autodiscover/autodiscover.xml",))
    d.start()
    nxt = d.receive(302, {"Location": "https://evil.example.net/autodiscover/autodiscover.xml"}, b"")
    assert nxt.url == "https://d0.com/autodiscover/autodiscover.xml"  # the next candidate, not evil.example.net
    assert "not a host the run was pointed at" in d.tried[-1][1]
    again = d.receive(302, {"Location": nxt.url}, b"")
    assert again.url == "https://autodiscover.d0.com/autodiscover/autodiscover.xml"
    d.receive(302, {"Location": "https://eas.corp.test:8443/autodiscover/autodiscover.xml"}, b"")
    assert d.step.url == "https://eas.corp.test:8443/autodiscover/autodiscover.xml"  # a configured host, any port


def test_basic_challenge_answered_once_then_auth_failure():
    d = discovery("u@example.com")
    first = d.start()
    again = d.receive(401, {"WWW-Authenticate": 'Basic realm="Exchange"'}, b"")
    assert again is first and again.challenged
    failed = d.receive(401, {"WWW-Authenticate": 'Basic realm="Exchange"'}, b"")
    assert isinstance(failed, ad.Failed) and failed.auth and "DOMAIN" in failed.advice


def test_other_statuses_and_garbage_move_on_errors_stop():
    d = discovery("u@example.com")
    d.start()
    assert d.receive(404, {}, b"").url == "https://autodiscover.example.com/autodiscover/autodiscover.xml"
    assert d.receive(200, {}, b"<html/>").method == "GET"
    d = discovery("u@example.com")
    d.start()
    failed = d.receive(200, {}, ERROR_4_2_2)
    assert isinstance(failed, ad.Failed) and "Status 2" in failed.reason and not failed.auth


def test_bad_addresses():
    for bad in ("user", "@example.com", "u@", "u@host:443"):
        with pytest.raises(ValueError):
            discovery(bad)


# -- over HTTP against the embedded target

async def _target(**kw):
    return await start_target("127.0.0.1", 0, TargetState(users=3, **kw))


async def test_discover_against_the_embedded_target():
    runner, target, url = await _target()
    try:
        seen = []
        result = await dad.discover("user1@example.com", basic_authorization("user1", "Pass1!"),
                                   first_urls=(ad.endpoint_of(url),), on_exchange=lambda *a: seen.append(a[1]))
        assert isinstance(result, ad.Done) and result.url == url and seen == [200]
        bad = await dad.discover("user1@example.com", basic_authorization("user1", "nope"),
                                first_urls=(ad.endpoint_of(url),))
        assert isinstance(bad, ad.Failed) and bad.auth
        foreign = await dad.discover("user2@example.com", basic_authorization("user1", "Pass1!"),
                                    first_urls=(ad.endpoint_of(url),))
        assert isinstance(foreign, ad.Failed) and foreign.answer.status == 2
        assert target.counters[("Autodiscover", 200, None)] == 2
    finally:
        await runner.cleanup()


async def test_embedded_target_redirect_mode_and_mount_path():
    runner, target, url = await _target(autodiscover_redirect={"example.com": "example.org"},
                                        eas_path="/SOGo/Microsoft-Server-ActiveSync")
    try:
        result = await dad.discover("user1@example.com", basic_authorization("user1", "Pass1!"),
                                   first_urls=(ad.endpoint_of(url),))
        assert isinstance(result, ad.Done) and result.redirects == 1 and result.email == "user1@example.org"
        assert result.url.endswith(":%s/SOGo/Microsoft-Server-ActiveSync" % url.split(":")[2].split("/")[0])
    finally:
        await runner.cleanup()
    runner, target, url = await _target(autodiscover_redirect={"a.com": "b.com", "b.com": "a.com"})
    try:
        result = await dad.discover("user1@a.com", basic_authorization("user1", "Pass1!"),
                                   first_urls=(ad.endpoint_of(url),))
        assert isinstance(result, ad.Failed) and "loop" in result.reason
    finally:
        await runner.cleanup()


async def test_embedded_target_rejects_bad_requests_600_601():
    import aiohttp

    runner, target, url = await _target()
    auth = {"Authorization": basic_authorization("user1", "Pass1!"), "Content-Type": "text/xml"}
    endpoint = ad.endpoint_of(url)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(endpoint, data=b"<nope/>", headers=auth) as resp:
                assert ad.parse_response(await resp.read()).error_code == 600
            other = ad.build_request("user1@example.com").replace(b"mobilesync/responseschema", b"outlook/responseschema")
            async with session.post(endpoint, data=other, headers=auth) as resp:
                assert ad.parse_response(await resp.read()).error_code == 601
            async with session.post(endpoint, data=ad.build_request("user1@example.com")) as resp:
                assert resp.status == 401 and resp.headers["WWW-Authenticate"] == 'Basic realm="easload"'
    finally:
        await runner.cleanup()


# -- devices: the first step of enrolment, counted as a command

async def test_devices_autodiscover_first_and_it_counts_as_a_command():
    sc = scenario.parse('duration = 3\n[target]\nautodiscover = "user{n}@example.com"\n'
                        'autodiscover_redirect = { "example.com" = "example.org" }\n'
                        'path = "/SOGo/Microsoft-Server-ActiveSync"\n'
                        '[population]\ndevices = 6\n[load]\nramp_up = 0.5\nmode = "poll"\nthink_time = 1\n')
    result = await run(sc, progress=False, attach_metrics=False)
    stats = result.stats
    # one redirect (Action/Redirect) and one Settings answer per device, both HTTP 200
    assert stats.by_key[("Autodiscover", "ok", "200")] == 12
    assert stats.final_states["provisioned"] == 6
    assert all("/SOGo/Microsoft-Server-ActiveSync" in d.endpoint.url_prefix for d in result.devices)


def test_scenario_autodiscover_validation():
    sc = scenario.parse('[auth]\nuser = "u{n}@corp.example"\n[target]\nautodiscover = true\n')
    assert sc.load.autodiscover == "u{n}@corp.example"
    for bad, msg in (("autodiscover = true", "not one"), ('autodiscover = "nobody"', "e-mail pattern"),
                     ('autodiscover = "u{x}@a.com"', "placeholder"), ('autodiscovr = true', "did you mean")):
        with pytest.raises(scenario.ScenarioError, match=msg):
            scenario.parse("[target]\n%s\n" % bad)


# -- over TLS, with the MS-OXDSCLI candidates' host names sent to loopback (no /etc/hosts)
#
# MS-OXDISCO 3.1.5 / MS-OXWSADISC "indirect attempt": GET http://autodiscover.<domain>/autodiscover/
# autodiscover.xml; the answer is a 302 whose URL starts with https:// -- then the POST goes there.

DOMAIN = "example.test"  # RFC 2606: never a real domain


def _closed_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ad_pki():
    import os
    import shutil

    from loadgen.exchange.tls import TemporaryPKI

    if shutil.which("openssl") is None and not os.environ.get("EASLOAD_REQUIRE_OPENSSL"):  # CI: fails instead
        pytest.skip("needs the openssl command")
    with TemporaryPKI(("127.0.0.1", "localhost", DOMAIN, "autodiscover." + DOMAIN)) as p:
        yield p


class _TLSTargetWithHTTP:
    """The embedded target over TLS plus its plain-HTTP side; host names of the domain mapped to it."""

    def __init__(self, pki):
        self.pki = pki

    async def __aenter__(self):
        self.runner, self.target, self.url = await start_target(
            "127.0.0.1", 0, TargetState(users=3, ping_min=1), tls_cert=self.pki.cert, tls_key=self.pki.key,
            http_port=0)
        closed = "127.0.0.1:%d" % _closed_port()
        self.map = {
            "%s:443" % DOMAIN: closed,  # no Autodiscover on the domain's own https host
            "autodiscover.%s:443" % DOMAIN: closed,  # nor on autodiscover.<domain>:443
            "autodiscover.%s:80" % DOMAIN: self.target.http_url.split("//")[1],  # the http:// redirect probe
            "autodiscover.%s" % DOMAIN: "127.0.0.1",  # the 302's https://autodiscover.<domain>:<TLS port>
        }
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()


async def test_redirect_probe_302_to_https_then_post_over_tls(ad_pki):
    async with _TLSTargetWithHTTP(ad_pki) as srv:
        seen = []
        result = await dad.discover("user1@" + DOMAIN, basic_authorization("user1", "Pass1!"),
                                   ssl=dad.ssl_context(False, ad_pki.ca), resolver=dad.host_map(srv.map), timeout=5,
                                   on_exchange=lambda step, status, headers, body, elapsed, error: seen.append(
                                       (step.method, step.url, status, step.authenticated,
                                        headers.get("Location") if status else error)))
        port = srv.target.https_port
        assert isinstance(result, ad.Done), result
        assert result.url == "https://autodiscover.%s:%d/Microsoft-Server-ActiveSync" % (DOMAIN, port)
        location = "https://autodiscover.%s:%d/autodiscover/autodiscover.xml" % (DOMAIN, port)
        assert [s[:4] for s in seen] == [
            ("POST", "https://%s/autodiscover/autodiscover.xml" % DOMAIN, 0, True),
            ("POST", "https://autodiscover.%s/autodiscover/autodiscover.xml" % DOMAIN, 0, True),
            ("GET", "http://autodiscover.%s/autodiscover/autodiscover.xml" % DOMAIN, 302, False),  # no credentials
            ("POST", location, 200, True),  # verified for the name autodiscover.example.test
        ]
        assert seen[2][4] == location
        assert srv.target.counters[("Autodiscover", 302, None)] == 1
        assert srv.target.counters[("Autodiscover", 200, None)] == 1
        # the plain-HTTP side never takes credentials or EAS: 403 "SSL required" (IIS 403.4)
        import aiohttp

        async with aiohttp.ClientSession() as session:
            async with session.post(srv.target.http_url + ad.PATH, data=ad.build_request("user1@" + DOMAIN)) as r:
                assert r.status == 403


async def test_probe_autodiscovers_over_tls_then_walks_eas_on_the_discovered_host(ad_pki):
    from loadgen.cli.probe import Probe

    async with _TLSTargetWithHTTP(ad_pki) as srv:
        lines = []
        probe = Probe(None, "user1", "Pass1!", ca=ad_pki.ca, heartbeat=1, out=lines.append, timeout=10,
                      autodiscover="user1@" + DOMAIN, resolver=dad.host_map(srv.map))
        code = await probe.run()
        text = "\n".join(lines)
    assert code == 0, text
    assert "==> [OK  ] Autodiscover: the EAS URL is https://autodiscover.%s:%d/" % (DOMAIN, srv.target.https_port) \
        in text
    assert "(no credentials: the redirect probe)" in text
    assert "==> [OK  ] Provision (acknowledgement)" in text and "==> [OK  ] Ping" in text


async def test_probe_without_the_ca_says_certificate_not_trusted_at_autodiscover(ad_pki):
    from loadgen.cli.probe import Probe

    async with _TLSTargetWithHTTP(ad_pki) as srv:
        lines = []
        probe = Probe(None, "user1", "Pass1!", heartbeat=1, out=lines.append, timeout=10,
                      autodiscover="user1@" + DOMAIN, resolver=dad.host_map(srv.map))
        code = await probe.run()
        text = "\n".join(lines)
    assert code == 1
    # the 302 was followed, the https POST refused the unknown CA, and it says so
    assert "<-- 302" in text and "no answer (certificate not trusted)" in text
    assert srv.target.counters.get(("Autodiscover", 200, None)) is None


async def test_redirect_probe_302_to_plain_http_is_refused(ad_pki):
    """A 302 from the http:// probe to another http:// URL is never followed: the credentials would go
    in clear text (MS-OXWSADISC: the redirect URL starts with https://)."""
    from aiohttp import web

    hits = []

    async def handler(request):
        hits.append((request.method, request.path, "Authorization" in request.headers))
        if request.method == "GET":
            raise web.HTTPFound("http://autodiscover.%s:%d/autodiscover/autodiscover.xml" % (DOMAIN, port))
        return web.Response(status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    closed = "127.0.0.1:%d" % _closed_port()
    mapping = {"%s:443" % DOMAIN: closed, "autodiscover.%s:443" % DOMAIN: closed,
               "autodiscover.%s" % DOMAIN: "127.0.0.1:%d" % port}
    try:
        seen = []
        result = await dad.discover("user1@" + DOMAIN, basic_authorization("user1", "Pass1!"),
                                   ssl=dad.ssl_context(False, ad_pki.ca), resolver=dad.host_map(mapping), timeout=5,
                                   on_exchange=lambda step, status, *rest: seen.append((step.method, status)))
    finally:
        await runner.cleanup()
    assert isinstance(result, ad.Failed)
    assert "refused a redirect to a non-https location" in result.reason
    assert seen == [("POST", 0), ("POST", 0), ("GET", 302)]  # nothing sent to the http:// location
    assert hits == [("GET", "/autodiscover/autodiscover.xml", False)]  # and never a credential in clear text
