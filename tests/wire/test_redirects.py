"""The redirect rule (loadgen/wire/redirects.py): scheme, named hosts, the URL in use, the safety rail
and the rate cap for a new host; the run context (loadgen/run/context.py) carries it to worker processes."""

import pickle

from loadgen import scenario
from loadgen.eas import http
from loadgen.run.context import RunLoad
from loadgen.wire import ratelimit, redirects

EAS = "https://mail.corp.test/Microsoft-Server-ActiveSync"


def test_https_to_http_is_never_followed():
    rule = redirects.Rule(hosts=["mail.corp.test"], loopback_only=False)
    v = rule.check(EAS, "http://mail.corp.test:8080/Microsoft-Server-ActiveSync")
    assert v.kind == redirects.REFUSED and "clear text" in v.reason
    assert rule.check("http://mail.corp.test/x", EAS).ok  # http -> https: stronger


def test_credentials_go_only_to_named_hosts():
    rule = redirects.Rule(hosts=["mail.corp.test"], loopback_only=False)
    assert rule.check(EAS, "https://evil.test/Microsoft-Server-ActiveSync").kind == redirects.REFUSED
    assert rule.check(EAS, "https://mail.corp.test:444/Microsoft-Server-ActiveSync").ok
    assert rule.check(EAS, "https://eas.corp.test/M", domains=("corp.test",)).ok  # the e-mail domain
    assert rule.check(EAS, "https://found.test/M", hosts=("found.test",)).ok  # named by an https answer
    assert rule.check(EAS, "https://user:pw@mail.corp.test/M").kind == redirects.REFUSED
    assert rule.check(EAS, "ftp://mail.corp.test/M").kind == redirects.REFUSED
    assert rule.check(EAS, "mail.corp.test").kind == redirects.REFUSED  # not a URL: the protocol makes it one first
    assert rule.check(EAS, http.location_url("mail.corp.test")).url == EAS  # a bare host name (MS-ASHTTP 2.2.2.1.1)


def test_the_url_in_use_is_not_a_move():
    rule = redirects.Rule(hosts=["mail.corp.test"], loopback_only=False)
    assert rule.check(EAS, "https://MAIL.corp.test:443/Microsoft-Server-ActiveSync").kind == redirects.SAME


def test_a_remote_host_from_a_loopback_run_needs_confirmation_and_turns_the_cap_on():
    sc = scenario.parse('[target]\nurl = "http://127.0.0.1:9/Microsoft-Server-ActiveSync"\n'
                        '[population]\ndevices = 50\n')
    ctx = RunLoad.for_run(sc, parts=2)
    rule = pickle.loads(pickle.dumps(ctx)).redirect_rule  # what a worker process gets
    assert ctx.request_cap == 0
    v = rule.check(sc.target.url, "https://eas.example.test/M", domains=("example.test",))
    assert v.kind == redirects.REFUSED and "--yes" in v.reason
    ctx = RunLoad.for_run(sc, parts=2, confirmed=True)
    v = ctx.redirect_rule.check(sc.target.url, "https://eas.example.test/M", domains=("example.test",))
    assert v.ok and v.cap == ratelimit.DEFAULT_REMOTE_RATE / 2
    ratelimit.remote_move(ctx, v.cap)
    assert ctx.request_cap == ratelimit.DEFAULT_REMOTE_RATE / 2
    assert not hasattr(sc.load, "request_cap")  # the scenario carries no run-time state
    # a cap the operator turned off stays off
    sc2 = scenario.parse('[target]\nurl = "http://127.0.0.1:9/M"\n[load]\nmax_request_rate = "off"\n')
    assert RunLoad.for_run(sc2, confirmed=True).redirect_rule.check(sc2.target.url, "https://a.example.test/M", hosts=("a.example.test",)).cap == 0
