"""OAuth Bearer tokens in runs: [auth] token_file / token_command (loadgen/scenario.py), the token source
(loadgen/device/clients.py TokenSource) and a device that sends ``Authorization: Bearer``, fetches a fresh
token once on a 401 Bearer challenge (RFC 6750 3) and then fails as auth_failed; the token never in a
log, the device's detail, the statistics or argv."""

import asyncio
import logging
import os
import random
import shlex
import sys

import pytest

import _wbxml
from hostile import ScriptedServer, http_response, wait_for
from loadgen import scenario
from loadgen.device import clients
from loadgen.device import life as device_mod
from loadgen.device.profiles import PROFILES, identity
from loadgen.device.states import AUTH_FAILED
from loadgen.eas import versions
from loadgen.results.stats import Stats
from loadgen.run.context import RunLoad
from loadgen.scenario import LoadConfig, ScenarioError
from loadgen.wire.transport import Transport

# a token command: prints "tok-<user>-<n>", n counting its runs in a file beside it (a fresh token each run)
_COUNTER = r"""
import os, sys
path = sys.argv[1]
n = int(open(path).read()) + 1 if os.path.exists(path) else 1
open(path, "w").write(str(n))
print("tok-%s-%d" % (sys.argv[2], n))
"""


def _command(tmp_path):
    script = tmp_path / "token.py"
    script.write_text(_COUNTER)
    return "%s %s %s" % (shlex.quote(sys.executable), shlex.quote(str(script)), shlex.quote(str(tmp_path / "n")))


# -- the scenario


def test_token_file_and_command_parse(tmp_path):
    path = tmp_path / "s.toml"
    sc = scenario.parse('[auth]\ntoken_file = "tokens/{user}.txt"\n', str(path))
    assert sc.auth.token_file == os.path.join(str(tmp_path), "tokens/{user}.txt")  # beside the scenario
    assert sc.auth.token_command is None
    sc = scenario.parse('[auth]\ntoken_command = "get-token --tenant x"\n', str(path))
    assert sc.auth.token_command == "get-token --tenant x" and sc.auth.token_file is None
    plain = scenario.parse("", str(path))
    assert plain.auth.token_file is None and plain.auth.token_command is None
    assert clients.token_source(plain.auth) is None  # Basic, as before
    assert isinstance(clients.token_source(sc.auth), clients.TokenSource)


@pytest.mark.parametrize("text, needle", [
    ('[auth]\ntoken_file = "t/{user}"\ntoken_command = "x"\n', "exclude each other"),
    ('[auth]\ntoken_file = "tokens/all.txt"\n', "{user}"),
    ('[auth]\ntoken_command = "\'unclosed"\n', "not a command line"),
    ('[auth]\ntoken_command = "  "\n', "empty"),
    ('[auth]\ntoken_komand = "x"\n', "token_komand"),
])
def test_token_settings_mistakes_are_one_clear_line(text, needle):
    with pytest.raises(ScenarioError) as err:
        scenario.parse(text, "x.toml")
    assert needle in str(err.value) and "\n" not in str(err.value)


# -- the token source


async def test_token_file_per_user_cached_and_read_again_when_fresh(tmp_path):
    (tmp_path / "alice.txt").write_text("abc.def-1\n")
    source = clients.TokenSource(str(tmp_path / "{user}.txt"))
    assert await source.get("alice") == "abc.def-1"
    (tmp_path / "alice.txt").write_text("abc.def-2\n")
    assert await source.get("alice") == "abc.def-1"  # cached
    assert await source.get("alice", fresh=True) == "abc.def-2"
    with pytest.raises(clients.TokenError) as err:
        await source.get("bob")
    assert "bob" in str(err.value)
    (tmp_path / "eve.txt").write_text("two words\n")
    with pytest.raises(clients.TokenError):
        await source.get("eve")  # not one RFC 6750 b64token: refused, not sent
    assert "abc" not in repr(source)


async def test_token_command_runs_once_per_user_with_the_user_as_argument(tmp_path):
    source = clients.TokenSource(command=_command(tmp_path))
    tokens = await asyncio.gather(*(source.get("u1") for _ in range(5)))
    assert set(tokens) == {"tok-u1-1"}  # one run for the five devices of the user
    assert await source.get("u1", fresh=True) == "tok-u1-2"
    failing = clients.TokenSource(command="%s -c 'import sys; sys.exit(3)'" % shlex.quote(sys.executable))
    with pytest.raises(clients.TokenError) as err:
        await failing.get("u1")
    assert "exit status 3" in str(err.value)
    missing = clients.TokenSource(command="/nonexistent/easload-token-command")
    with pytest.raises(clients.TokenError):
        await missing.get("u1")


# -- a device with Bearer


def _device(url, tokens, stats):
    profile = PROFILES["modern"]
    load = RunLoad(LoadConfig(think_time=0.0, backoff=0.1, mode="foldersync", timeout=5.0), run_id="0badcafe")
    dev = device_mod.Device(0, "alice", "not-used", versions.get("14.1"), profile, identity(1, 0, 0, profile), url,
                            load, stats, random.Random(1), origin=(1, 0, 0), tokens=tokens)
    dev.need_provision = False
    return dev


def _foldersync():
    return _wbxml.encode(("FolderHierarchy:FolderSync", [("FolderHierarchy:Status", "1"),
                                                         ("FolderHierarchy:SyncKey", "1"),
                                                         ("FolderHierarchy:Changes", [("FolderHierarchy:Count", "0")])]))


_CHALLENGE = b'WWW-Authenticate: Bearer realm="easload", error="invalid_token"\r\n'


async def _live(dev, seconds, until):
    transport = Transport("lean", timeout=5.0)
    await transport.start()
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(dev.run(transport, loop.time() + seconds))
    try:
        await wait_for(lambda: until() or task.done(), seconds + 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await transport.close()


async def test_bearer_sent_refreshed_once_on_a_bearer_challenge_and_never_logged(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    rejected = set()

    async def behave(conn, req):
        auth = req.headers.get("authorization", "")
        if auth == "Bearer tok-alice-1":  # the first token has expired
            rejected.add(auth)
            conn.write(http_response(b"", status=b"401 Unauthorized", content_type=None, extra=_CHALLENGE))
        elif auth == "Bearer tok-alice-2":
            conn.write(http_response(_foldersync()))
        else:
            conn.write(http_response(b"", status=b"400 Bad Request", content_type=None))
        return True

    stats = Stats()
    source = clients.TokenSource(command=_command(tmp_path))
    async with ScriptedServer(behave) as srv:
        dev = _device(srv.url, source, stats)
        await _live(dev, 10, until=lambda: sum(1 for r in srv.requests if r.command == "FolderSync") >= 3)
        auths = [r.headers.get("authorization") for r in srv.requests]
    assert auths[:2] == ["Bearer tok-alice-1", "Bearer tok-alice-2"]  # the request once more, fresh token
    assert set(auths[2:]) == {"Bearer tok-alice-2"}  # the fresh one kept, the command not run again
    assert dev.alive and dev.state != AUTH_FAILED
    assert (tmp_path / "n").read_text() == "2"
    everything = caplog.text + repr(stats.by_key) + repr(dev.detail) + repr(stats.summary() if hasattr(
        stats, "summary") else "")
    assert "tok-alice" not in everything


async def test_a_second_bearer_challenge_fails_the_device_as_auth_failed(tmp_path):
    async def behave(conn, req):
        conn.write(http_response(b"", status=b"401 Unauthorized", content_type=None, extra=_CHALLENGE))
        return True

    stats = Stats()
    source = clients.TokenSource(command=_command(tmp_path))
    async with ScriptedServer(behave) as srv:
        dev = _device(srv.url, source, stats)
        await _live(dev, 10, until=lambda: not dev.alive)
        sent = len(srv.requests)
    assert dev.state == AUTH_FAILED and not dev.alive
    assert sent == 2 and (tmp_path / "n").read_text() == "2"  # one refresh, then no more requests
    assert "tok-alice" not in (dev.detail or "")


async def test_no_token_to_be_had_fails_before_any_request(tmp_path):
    async def behave(conn, req):
        conn.write(http_response(_foldersync()))
        return True

    source = clients.TokenSource(str(tmp_path / "{user}.txt"))  # no file for alice
    async with ScriptedServer(behave) as srv:
        dev = _device(srv.url, source, Stats())
        await _live(dev, 10, until=lambda: not dev.alive)
        assert not srv.requests
    assert dev.state == AUTH_FAILED and "alice" in dev.detail


async def test_without_tokens_the_device_sends_basic():
    seen = []

    async def behave(conn, req):
        seen.append(req.headers.get("authorization", ""))
        conn.write(http_response(_foldersync()))
        return True

    async with ScriptedServer(behave) as srv:
        dev = _device(srv.url, None, Stats())
        await _live(dev, 10, until=lambda: len(seen) >= 1)
    assert seen[0].startswith("Basic ")


async def test_a_parked_ping_answered_with_a_bearer_challenge_is_sent_again_with_a_fresh_token(tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "device"))
    from test_mail_device import QUIET, MailServer, live, make_device

    challenged = []

    class Server(MailServer):
        async def __call__(self, conn, req):
            if req.command == "Ping" and not challenged:
                challenged.append(req.headers.get("authorization"))
                conn.write(http_response(b"", status=b"401 Unauthorized", content_type=None, extra=_CHALLENGE))
                return True
            self.auth = req.headers.get("authorization")
            return await super().__call__(conn, req)

    server = Server()
    async with ScriptedServer(server) as srv:
        dev = make_device(srv.url, QUIET)
        dev.tokens = clients.TokenSource(command=_command(tmp_path))
        await live(dev, 10, until=lambda: len(server.ping_requests) >= 1, parked=True)
    assert challenged == ["Bearer tok-user0-1"]
    assert server.auth == "Bearer tok-user0-2" and dev.alive
