"""A device against scripted hostile servers (tests/hostile.py): retry storms, redirects, an empty
401, absurd back-off values.  Each test runs one device for a short, bounded time and checks
what a user needs: the request rate stays under the backoff's bound, credentials never reach a
server the run was not pointed at, the device ends in the state that says what happened."""

import asyncio
import random

import pytest

import _wbxml
from hostile import ScriptedServer, http_response
from loadgen.device import life as device_mod
from loadgen.device import states
from loadgen.eas import versions
from loadgen.device.profiles import PROFILES, identity
from loadgen.results.stats import Stats
from loadgen.run.context import RunLoad
from loadgen.scenario import LoadConfig
from loadgen.wire.transport import Transport

BACKOFF = 0.2
RUN = 1.5
# a device retrying at most once per backoff sends at most this many requests in RUN seconds
BOUND = int(RUN / BACKOFF) + 2


def foldersync(status=1, key="1", folders=()):
    kids = [("FolderHierarchy:Status", str(status))]
    if status == 1:
        kids.append(("FolderHierarchy:SyncKey", key))
        adds = [("FolderHierarchy:Add", [("FolderHierarchy:ServerId", sid), ("FolderHierarchy:ParentId", "0"),
                                         ("FolderHierarchy:DisplayName", name), ("FolderHierarchy:Type", str(kind))])
                for sid, name, kind in folders]
        kids.append(("FolderHierarchy:Changes", [("FolderHierarchy:Count", str(len(adds)))] + adds))
    return _wbxml.encode(("FolderHierarchy:FolderSync", kids))


def sync(key="2"):
    return _wbxml.encode(("AirSync:Sync", [("AirSync:Collections", [("AirSync:Collection", [
        ("AirSync:SyncKey", key), ("AirSync:CollectionId", "inbox"), ("AirSync:Status", "1")])])]))


def ping(status, heartbeat=None):
    kids = [("Ping:Status", str(status))]
    if heartbeat is not None:
        kids.append(("Ping:HeartbeatInterval", str(heartbeat)))
    return _wbxml.encode(("Ping:Ping", kids))


INBOX = (("inbox", "Inbox", 2),)


def make_device(url, stats=None, **load):
    profile = PROFILES["modern"]
    config = RunLoad(LoadConfig(think_time=0.0, backoff=BACKOFF, mode=load.pop("mode", "poll"), timeout=5.0,
                                **load))
    dev = device_mod.Device(0, "user0", "pw", versions.get("14.1"), profile, identity(1, 0, 0, profile), url,
                            config, stats or Stats(), random.Random(1), origin=(1, 0, 0))
    dev.need_provision = False  # these servers play the commands after provisioning
    return dev


async def live(dev, seconds=RUN, kind="lean"):
    transport = Transport(kind, timeout=5.0)
    await transport.start()
    loop = asyncio.get_running_loop()
    try:
        # the device's own deadline ends it; wait_for is a generous guard against a hang
        await asyncio.wait_for(dev.run(transport, loop.time() + seconds), seconds + 30)
    finally:
        await transport.close()


def outcomes(stats, command):
    return {o: n for (c, o, _s), n in stats.by_key.items() if c == command}


# -- retry storms


async def test_foldersync_error_status_is_retried_with_a_backoff():
    async def answer(conn, req):
        conn.write(http_response(foldersync(status=6)))
        return True

    async with ScriptedServer(answer) as srv:
        await live(make_device(srv.url))
    assert 1 <= srv.count("FolderSync") <= BOUND


async def test_foldersync_status_9_for_sync_key_0_is_not_a_loop():
    async def answer(conn, req):
        conn.write(http_response(foldersync(status=9)))
        return True

    async with ScriptedServer(answer) as srv:
        await live(make_device(srv.url))
    assert 1 <= srv.count("FolderSync") <= BOUND


async def test_a_server_without_an_inbox_does_not_get_foldersync_in_a_loop():
    async def answer(conn, req):
        conn.write(http_response(foldersync(folders=(("cal", "Calendar", 8), ("con", "Contacts", 9)))))
        return True

    async with ScriptedServer(answer) as srv:
        dev = make_device(srv.url)
        await live(dev)
    assert 1 <= srv.count("FolderSync") <= BOUND
    assert dev.alive and dev.inbox is None


async def _ping_server(ping_answers):
    """FolderSync with an Inbox, Syncs, then Pings answered from ``ping_answers(n)``."""
    async def answer(conn, req):
        if req.command == "FolderSync":
            conn.write(http_response(foldersync(folders=INBOX)))
        elif req.command == "Sync":
            conn.write(http_response(sync()))
        else:
            conn.write(http_response(ping_answers(srv.count("Ping"))))
        return True

    srv = ScriptedServer(answer)
    return srv


@pytest.mark.parametrize("bound", [0, 100000, 480], ids=["zero", "too_large", "the_same_again"])
async def test_ping_status_5_with_an_impossible_bound_is_not_a_loop(bound):
    srv = await _ping_server(lambda n: ping(5, bound))
    async with srv:
        dev = make_device(srv.url, mode="ping", heartbeat=480)
        await live(dev)
    assert 1 <= srv.count("Ping") <= BOUND
    assert dev.heartbeat == 480


async def test_ping_status_5_bounds_that_contradict_each_other_are_not_a_loop():
    srv = await _ping_server(lambda n: ping(5, 60 if n % 2 else 600))
    async with srv:
        dev = make_device(srv.url, mode="ping", heartbeat=480)
        await live(dev)
    assert 1 <= srv.count("Ping") <= BOUND + 1


async def test_ping_status_5_that_the_device_follows_is_not_an_error():
    """MS-ASCMD 2.2.3.88.1: Status 5 gives the server's minimum or maximum interval; the device takes it."""
    held = asyncio.Event()

    async def answers(conn, req):
        if req.command == "FolderSync":
            conn.write(http_response(foldersync(folders=INBOX)))
        elif req.command == "Sync":
            conn.write(http_response(sync()))
        elif srv.count("Ping") == 1:
            conn.write(http_response(ping(5, 60)))
        else:  # the bound taken: this Ping is seen, then the connection closes (a conn_error)
            held.set()
            return False
        return True

    srv = ScriptedServer(answers)
    stats = Stats()
    async with srv:
        dev = make_device(srv.url, stats=stats, mode="ping", heartbeat=480)
        await live(dev)
    assert held.is_set() and dev.heartbeat == 60
    assert b"60" in [r.body for r in srv.requests if r.command == "Ping"][1]  # the next Ping asks for 60
    pings = outcomes(stats, "Ping")
    assert "eas_error" not in pings and pings.get(device_mod.ADJUSTED, 0) >= 1, pings


# -- 451


async def test_451_to_the_url_in_use_backs_off_and_does_not_leak_connections():
    async def answer(conn, req):
        conn.write(http_response(b"", status=b"451 Redirect", content_type=None,
                                 extra=b"X-MS-Location: %s\r\n" % srv.url.encode()))
        return True

    srv = ScriptedServer(answer)
    stats = Stats()
    async with srv:
        await live(make_device(srv.url, stats=stats))
        open_after = srv.open
    assert 1 <= len(srv.requests) <= BOUND
    assert srv.connections <= 2 and open_after <= 1
    assert outcomes(stats, "FolderSync").get("redirect_loop", 0) >= 1


async def test_451_ping_pong_between_two_servers_backs_off_and_closes_the_old_connections():
    async def to_b(conn, req):
        conn.write(http_response(b"", status=b"451 Redirect", content_type=None,
                                 extra=b"X-MS-Location: %s\r\n" % b_srv.url.encode()))
        return True

    async def to_a(conn, req):
        conn.write(http_response(b"", status=b"451 Redirect", content_type=None,
                                 extra=b"X-MS-Location: %s\r\n" % a_srv.url.encode()))
        return True

    a_srv = ScriptedServer(to_b)
    b_srv = ScriptedServer(to_a)
    async with a_srv, b_srv:
        await live(make_device(a_srv.url))
        still_open = a_srv.open + b_srv.open
    total = len(a_srv.requests) + len(b_srv.requests)
    assert 2 <= total <= BOUND + 1
    assert still_open <= 1  # the connection of the server left behind is closed when the device moves


async def test_451_to_a_host_the_run_was_not_pointed_at_gets_nothing():
    """The credentials go only to named hosts (loadgen/wire/redirects.py): 127.0.0.2 is not 127.0.0.1."""
    async def elsewhere(conn, req):
        conn.write(http_response(foldersync(folders=INBOX)))
        return True

    async def answer(conn, req):
        conn.write(http_response(b"", status=b"451 Redirect", content_type=None,
                                 extra=b"X-MS-Location: %s\r\n" % other.url.encode()))
        return True

    other = ScriptedServer(elsewhere, host="127.0.0.2")
    srv = ScriptedServer(answer)
    stats = Stats()
    async with other, srv:
        dev = make_device(srv.url, stats=stats)
        await live(dev)
    assert other.requests == [] and other.connections == 0
    assert dev.state == states.FAILED and not dev.alive and "redirect refused" in dev.detail
    assert outcomes(stats, "FolderSync") == {"redirect_refused": 1}


# -- 401 without a Content-Type (SOGo)


@pytest.mark.parametrize("kind", ["lean", "aiohttp"])
async def test_401_without_a_content_type_is_an_authentication_failure(kind):
    async def answer(conn, req):
        conn.write(http_response(b"<html>Unauthorized</html>", status=b"401 Unauthorized", content_type=None,
                                 extra=b'WWW-Authenticate: Basic realm="SOGo"\r\n'))
        return True

    stats = Stats()
    async with ScriptedServer(answer) as srv:
        dev = make_device(srv.url, stats=stats)
        await live(dev, kind=kind)
    assert dev.state == device_mod.AUTH_FAILED and not dev.alive
    assert len(srv.requests) == 2  # the challenge answered once, then the verdict
    assert outcomes(stats, "FolderSync") == {"challenge": 1, "auth": 1}


# -- absurd server-given waits


async def test_a_400_digit_backoff_duration_neither_crashes_nor_hangs_the_device():
    async def answer(conn, req):
        conn.write(http_response(foldersync(folders=INBOX), extra=b"X-MS-BackOffDuration: %s\r\n" % (b"9" * 400)))
        return True

    async with ScriptedServer(answer) as srv:
        dev = make_device(srv.url)
        task = asyncio.ensure_future(live(dev, seconds=0.5))
        # the device honours a day-long back-off: it sends nothing more; the run's end cancels it
        done, _ = await asyncio.wait({task}, timeout=3)
        if task in done:
            task.result()  # no OverflowError
        else:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert srv.count("FolderSync") == 1


def test_server_waits_are_clamped_to_a_day():
    from loadgen.eas.provisioning import retry_after

    assert device_mod._backoff_ms("9" * 400) == 24 * 3600 * 1000
    assert device_mod._backoff_ms("9" * 5000) == 24 * 3600 * 1000  # int() would refuse so many digits
    assert device_mod._backoff_ms("0" * 30 + "250") == 250
    assert device_mod._backoff_ms("250") == 250 and device_mod._backoff_ms("L/-470") == 0
    assert retry_after({"Retry-After": "9" * 400}, 5.0) == 24 * 3600
    assert retry_after({"Retry-After": "1e999"}, 5.0) == 24 * 3600
    assert retry_after({"Retry-After": "nan"}, 5.0) == 5.0
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 5.0) == 5.0


async def test_retry_after_0_on_503_still_waits_the_floor():
    async def answer(conn, req):
        conn.write(http_response(b"", status=b"503 Service Unavailable", content_type=None,
                                 extra=b"Retry-After: 0\r\n"))
        return True

    async with ScriptedServer(answer) as srv:
        await live(make_device(srv.url), seconds=1.0)
    assert device_mod.RETRY_FLOOR == 0.1
    assert 1 <= len(srv.requests) <= int(1.0 / 0.1) + 2


# -- an answer too large to hold


@pytest.mark.parametrize("kind", ["lean", "aiohttp"])
async def test_an_answer_past_the_response_limit_is_counted_too_large(kind):
    """The transport ends an answer past its per-response limit (error "too_large"); the device
    counts that outcome by name, not as a connection error, and backs off."""
    async def answer(conn, req):
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
                   b"Content-Length: 99999999999999\r\n\r\n")
        return False

    async with ScriptedServer(answer) as srv:
        stats = Stats()
        await live(make_device(srv.url, stats), kind=kind)
    seen = outcomes(stats, "FolderSync")
    assert seen.get("too_large", 0) >= 1 and "conn_error" not in seen, seen
    assert srv.count("FolderSync") <= BOUND
