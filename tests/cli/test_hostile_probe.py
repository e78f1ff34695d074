"""`easload probe` against hostile and quirky servers: what it prints and what it concludes.

* Every byte that came from the server is shown escaped (ESC as ``\\x1b``, other control
  characters likewise), in headers, reason phrases, bodies, decoded WBXML text and Autodiscover
  XML: a server cannot clear the terminal or print a line that looks like one of the probe's
  verdicts (those start at the first column with ``==>``; server text never does).
* Verdicts say only what was shown: no Sync tried (no Inbox) is not "can provision and sync";
  Settings gets its own verdict; a 401 is an authentication failure, never "[OK] authentication".
"""

import asyncio

from hostile import ScriptedServer, http_response

import _wbxml
from loadgen.cli import probe as probe_module
from loadgen.cli.probe import Probe
from loadgen.exchange.server import DEFAULT_FOLDERS, start_target
from loadgen.exchange.state import TargetState

ESC = "\x1b"
FAKE = "\n==> [OK  ] Sync: 777 items in the Inbox window\nprobe verdict: this device can provision and sync\n"


async def probe(url, password="Pass1!", **kw):
    lines = []
    kw.setdefault("timeout", 20.0)
    p = Probe(url, "user1", password, heartbeat=1, out=lines.append, **kw)
    code = await asyncio.wait_for(p.run(), 120)
    return code, "\n".join(lines)


async def probe_target(state=None, password="Pass1!", folders=DEFAULT_FOLDERS, **kw):
    runner, target, url = await start_target("127.0.0.1", 0, state or TargetState(users=3, ping_min=1),
                                             folders=folders)
    try:
        return await probe(url, password, **kw)
    finally:
        await runner.cleanup()


def verdict_lines(out):
    return [line for line in out.splitlines() if line.startswith("==>") or line.startswith("probe verdict")]


def assert_clean(out):
    """Nothing that could drive a terminal: no C0 control but newline, no DEL, no C1 control."""
    bad = [c for c in out if (ord(c) < 32 and c != "\n") or 0x7f <= ord(c) < 0xa0]
    assert not bad, sorted(set(bad))


# -- escaping

def test_escape_shows_control_characters_and_keeps_text():
    escape = probe_module.escape
    assert escape("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert escape("line\nnext\r") == "line\\nnext\\r"
    assert escape("\x9b31m\x7f") == "\\x9b31m\\x7f"
    assert escape("caf\u00e9 \u202e") == "caf\u00e9 \\u202e"  # text stays; a bidi override is shown
    assert escape(b"\xff\x1bok") == "\\xff\\x1bok"  # bytes: not UTF-8 shown as \xNN
    assert escape("plain text: 100%") == "plain text: 100%"


async def test_a_body_that_clears_the_screen_and_fakes_verdicts_is_shown_escaped():
    async def answer(conn, req):
        body = (ESC + "[2J" + ESC + "[H" + FAKE + "\x07\x9b").encode("utf-8") + b"\xff"
        conn.write(http_response(body, status=b"500 Internal Server Error", content_type=b"text/plain"))
        return True

    async with ScriptedServer(answer) as srv:
        code, out = await probe(srv.url)
    assert code == 1
    assert_clean(out)
    assert "\\x1b[2J" in out
    assert not [v for v in verdict_lines(out) if "[OK  ]" in v or "can provision" in v], verdict_lines(out)


async def test_reason_phrase_and_headers_from_the_server_are_escaped():
    async def answer(conn, req):
        conn.write(b"HTTP/1.1 200 O\x1b[2JK\r\nMS-ASProtocolVersions: 14.1\x1b[31m\r\n"
                   b"X-Note: \x1b]0;pwned\x07\r\nContent-Length: 0\r\n\r\n")
        return True

    async with ScriptedServer(answer) as srv:
        code, out = await probe(srv.url)
    assert_clean(out)
    assert code == 1


async def test_wbxml_text_from_the_server_is_escaped():
    folders = (("1", "0", "In" + ESC + "[2Jbox" + FAKE, 2),) + DEFAULT_FOLDERS[1:]
    code, out = await probe_target(folders=folders)
    assert_clean(out)
    assert "In\\x1b[2Jbox" in out
    fakes = [v for v in verdict_lines(out) if v.startswith("==> [OK  ] Sync: 777 items")]
    assert not fakes, fakes


async def test_autodiscover_xml_from_the_server_is_escaped():
    async def answer(conn, req):
        body = ("<?xml version=\"1.0\"?><Autodiscover><Response><Error>" + ESC + "[2J" + FAKE.replace("\n", "&#10;")
                + "</Error></Response></Autodiscover>").encode()
        conn.write(http_response(body, content_type=b"text/xml"))
        return True

    async with ScriptedServer(answer, path="/autodiscover/autodiscover.xml") as srv:
        # the https candidates reach this plain-HTTP server, which waits for a request that never comes
        # (a TLS ClientHello is not one): a short timeout ends those attempts, then the http one answers
        code, out = await probe(None, autodiscover="user1@example.com", resolver=_to(srv.port), timeout=3)
    assert_clean(out)
    assert code == 1
    assert not [v for v in verdict_lines(out) if "can provision" in v]


def _to(port):
    """A resolver that sends every name to 127.0.0.1 (Autodiscover's example.com hosts too); the
    scripted server answers on ``port`` whatever port was asked."""
    from aiohttp.abc import AbstractResolver

    class To(AbstractResolver):
        async def resolve(self, host, _port=0, family=0):
            import socket

            return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0,
                     "flags": 0}]

        async def close(self):
            pass

    return To()


# -- verdicts

async def test_no_inbox_is_not_called_provision_and_sync():
    folders = tuple(f for f in DEFAULT_FOLDERS if f[3] != 2)
    code, out = await probe_target(folders=folders)
    assert "this device can provision and sync" not in out
    assert "Sync not tried: the server listed no Inbox" in out
    assert "==> [OK  ] Provision (acknowledgement)" in out
    final = [line for line in out.splitlines() if line.startswith("probe verdict")]
    assert final and "provisioned" in final[0] and "Sync not tried" in final[0], final
    assert code == 1


async def test_full_walk_still_says_provision_and_sync():
    code, out = await probe_target()
    assert code == 0, out
    assert "probe verdict: this device can provision and sync" in out


async def test_settings_gets_a_verdict():
    code, out = await probe_target(version="14.0")
    assert code == 0, out
    assert "==> [OK  ] Settings: " in out


async def test_settings_refused_is_a_failed_verdict():
    """A Settings answer with Status 2 (protocol error, MS-ASCMD 2.2.3.177.14) is a FAIL for Settings."""
    runner, target, url = await start_target("127.0.0.1", 0, TargetState(users=3, ping_min=1))
    target._handlers = dict(target._handlers, Settings=lambda self, record, version, tree: self._wbxml(
        "Settings", _wbxml.encode(("Settings:Settings", [("Settings:Status", "2")])), 2))
    try:
        code, out = await probe(url, version="14.0")
    finally:
        await runner.cleanup()
    assert "==> [FAIL] Settings: " in out and code == 1


async def test_wrong_password_is_an_authentication_failure_not_ok():
    code, out = await probe_target(password="wrong")
    assert code == 1
    assert "[OK  ] authentication" not in out
    assert "==> [FAIL] authentication: " in out
    assert "this device can provision" not in out


async def test_wrong_password_behind_a_challenge_is_an_authentication_failure():
    state = TargetState(users=3, ping_min=1, challenge_first=True, auth_realm="SOGo")
    code, out = await probe_target(state, password="wrong")
    assert code == 1
    assert "[OK  ] authentication" not in out and "==> [FAIL] authentication: " in out


async def test_a_401_after_provisioning_is_an_authentication_failure():
    calls = {"n": 0}

    async def answer(conn, req):
        calls["n"] += 1
        conn.write(http_response(b"", status=b"401 Unauthorized", content_type=None))
        return True

    async with ScriptedServer(answer) as srv:
        code, out = await probe(srv.url)
    assert code == 1 and "==> [FAIL] authentication: " in out and "[OK  ]" not in out
