"""Admin API (bearer token, JSON), the target's own Prometheus metrics, fault injection."""

import asyncio
import logging

import aiohttp
import pytest

import _wbxml
from loadgen.eas import commands
from loadgen.eas.commands import root_status
from loadgen.exchange.admin import start_admin
from loadgen.exchange.server import start_target
from loadgen.exchange.state import TargetState
from test_target import AUTH, Client
from test_target_features import ping_request, provisioned, sync_request


async def wait_held(tgt, n):
    for _ in range(500):
        if tgt.held_pings >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("Pings not held")


@pytest.fixture
async def admin(caplog):
    caplog.set_level(logging.DEBUG)
    state = TargetState(users=10, seed=3, ping_min=1)
    runner, tgt, url = await start_target("127.0.0.1", 0, state)
    arunner, aurl, token = await start_admin("127.0.0.1", 0, tgt)
    async with aiohttp.ClientSession() as session:
        async def call(method, path, body=None, token=token):
            headers = {"Authorization": "Bearer " + token} if token else {}
            async with session.request(method, aurl + path, json=body, headers=headers) as resp:
                data = await resp.json() if resp.content_type == "application/json" else await resp.text()
                return resp.status, data
        yield tgt, session, url, call, aurl, token
    await arunner.cleanup()
    await runner.cleanup()
    assert token not in caplog.text  # never logged


async def test_token_required_and_generated(admin):
    tgt, session, url, call, aurl, token = admin
    assert len(token) >= 24 and aurl.startswith("http://127.0.0.1:")
    assert (await call("GET", "/admin/devices", token=None))[0] == 401
    assert (await call("GET", "/admin/devices", token="wrong"))[0] == 401
    assert (await call("GET", "/admin/devices"))[0] == 200


async def test_given_token_is_used():
    state = TargetState(users=1)
    runner, tgt, url = await start_target("127.0.0.1", 0, state)
    arunner, aurl, token = await start_admin("127.0.0.1", 0, tgt, "fixed-token")
    try:
        assert token == "fixed-token"
        async with aiohttp.ClientSession() as s:
            async with s.get(aurl + "/admin/counters", headers={"Authorization": "Bearer fixed-token"}) as r:
                assert r.status == 200
    finally:
        await arunner.cleanup()
        await runner.cleanup()


async def test_policy_wipe_devices_counters(admin):
    tgt, session, url, call, aurl, token = admin
    c = await provisioned(session, url)
    status, data = await call("POST", "/admin/policy", {"settings": {"MinDevicePasswordLength": 6}})
    assert status == 200 and data["policy"]["MinDevicePasswordLength"] == "6"
    assert root_status((await c.post("FolderSync", commands.foldersync("0"), key=c.key))[2]) == 144
    c = await provisioned(session, url)
    status, data = await call("POST", "/admin/wipe", {"device_id": "DEV1", "account_only": True})
    assert status == 200 and data["wiped"] == [["user1", "DEV1"]]
    status, data = await call("GET", "/admin/devices")
    (dev,) = data["devices"]
    assert dev["wipe"] == "pending" and dev["device_info"]["Model"] == "Contoso X12" and dev["access"] == "Allow"
    assert (await call("POST", "/admin/wipe", {"device_id": "NOPE"}))[0] == 400
    assert (await call("POST", "/admin/wipe", {"fraction": 1.0, "seed": 1}))[1]["wiped"] == [["user1", "DEV1"]]
    assert (await call("POST", "/admin/clear_wipe", {"device_id": "DEV1"}))[0] == 200
    status, data = await call("GET", "/admin/counters")
    assert {"command": "Provision", "http_status": 200, "eas_status": 1} == {
        k: v for k, v in data["requests"][0].items() if k != "count"} or any(
        r["command"] == "Provision" for r in data["requests"])
    assert data["devices"][0]["wipe"] == "none"
    assert (await call("POST", "/admin/policy", "not an object"))[0] == 400


async def test_abq_release_and_mail(admin):
    tgt, session, url, call, aurl, token = admin
    status, data = await call("POST", "/admin/abq", {"default": "Quarantine", "rules": [
        {"characteristic": "DeviceType", "query": "Blocked", "access": "Block"}]})
    assert status == 200 and data["default"] == "Quarantine" and data["rules"][0]["access"] == "Block"
    assert (await call("POST", "/admin/abq", {"default": "Sometimes"}))[0] == 400
    c = await provisioned(session, url)
    assert root_status((await c.post("Sync", sync_request(("1", "0")), key=c.key))[2]) == 129
    _, data = await call("GET", "/admin/devices")
    assert data["devices"][0]["access"] == "Quarantine"
    assert (await call("POST", "/admin/release", {"device_id": "DEV1"}))[0] == 200
    task = asyncio.create_task(c.post("Ping", ping_request(20), key=c.key))
    await wait_held(tgt, 1)
    assert (await call("POST", "/admin/mail", {"user": "user1", "count": 2}))[1] == {"users": 1}
    assert root_status((await asyncio.wait_for(task, 5))[2]) == 2
    _, _, tree = await c.post("Sync", sync_request(("1", "0")), key=c.key)
    assert root_status(tree) is None  # a normal Sync answer
    assert (await call("POST", "/admin/mail", {"fraction": 0.5, "count": 1, "seed": 4}))[1] == {"users": 5}
    assert (await call("POST", "/admin/mail", {"user": "nobody"}))[0] == 400
    # a meeting request (the plan's, loadgen/run/day.py): an Inbox item the MeetingResponse can answer
    from loadgen.exchange import store as st

    box = tgt.state.store.mailbox("user1")
    before = box.folder(st.INBOX).next
    assert (await call("POST", "/admin/mail", {"user": "user1", "meeting": True})) == (200, {"users": 1})
    assert box.item(st.INBOX, before).message_class == "IPM.Schedule.Meeting.Request"
    assert (await call("POST", "/admin/mail", {"user": "nobody", "meeting": True}))[0] == 400


async def test_metrics_endpoint_without_auth(admin):
    tgt, session, url, call, aurl, token = admin
    c = await provisioned(session, url)
    await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    await c.post("Bogus%d" % 1, key=c.key)
    async with session.get(aurl + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert all(n.startswith("easload_target_") for n in names)
    assert 'easload_target_requests_total{command="FolderSync",eas_status="1",http_status="200"} 1.0' in text
    assert 'command="other"' in text and "Bogus" not in text  # bounded labels
    assert 'easload_target_devices{access="Allow",provisioning="provisioned",wipe="none"} 1.0' in text
    assert "easload_target_request_duration_seconds_bucket" in text and "easload_target_held_pings 0.0" in text
    from loadgen.results import metrics as run_metrics
    assert b"easload_target_" not in __import__("prometheus_client").generate_latest(run_metrics.REGISTRY)


# --------------------------------------------------------------------------- faults


async def test_fault_latency_and_error_rates(admin):
    tgt, session, url, call, aurl, token = admin
    c = await provisioned(session, url)
    status, data = await call("POST", "/admin/faults", {"latency": {"dist": "fixed", "seconds": 0.3},
                                                        "commands": ["FolderSync"]})
    assert status == 200 and data["latency"]["seconds"] == 0.3
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert (await c.post("FolderSync", commands.foldersync("0"), key=c.key))[0] == 200
    assert loop.time() - t0 >= 0.3
    t0 = loop.time()
    await c.post("Settings", commands.settings_device_information({"Model": "x"}), key=c.key)
    assert loop.time() - t0 < 0.3  # other commands untouched
    for dist in ({"dist": "uniform", "min": 0.01, "max": 0.02}, {"dist": "exponential", "mean": 0.01}):
        tgt.set_faults(latency=dist, seed=1)
        assert (await c.post("FolderSync", commands.foldersync("0"), key=c.key))[0] == 200
    tgt.set_faults(error_rates={"500": 1.0})
    status, _, _ = await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    assert status == 500
    tgt.set_faults(error_rates={"503": 1.0})
    status, headers, _ = await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    assert status == 503 and "Retry-After" in headers
    tgt.set_faults(error_rates={"500": 0.5}, seed=7)
    statuses = [(await c.post("FolderSync", commands.foldersync("0"), key=c.key))[0] for _ in range(20)]
    assert 0 < statuses.count(500) < 20
    assert (await call("POST", "/admin/faults", {"latency": {"dist": "gamma"}}))[0] == 400
    assert (await call("POST", "/admin/faults", {}))[1]["injected"]["http_500"] >= 1
    assert (await c.post("FolderSync", commands.foldersync("0"), key=c.key))[0] == 200


async def test_fault_malformed_truncated_reset(admin):
    tgt, session, url, call, aurl, token = admin
    c = await provisioned(session, url)
    tgt.set_faults(malformed_rate=1.0)
    with pytest.raises(_wbxml.WBXMLError):
        await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    tgt.set_faults(truncated_rate=1.0)
    with pytest.raises(_wbxml.WBXMLError):
        await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    tgt.set_faults(reset_rate=1.0)
    with pytest.raises(aiohttp.ClientError):
        await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    tgt.set_faults()
    assert (await c.post("FolderSync", commands.foldersync("0"), key=c.key))[0] == 200
    assert tgt.counters[("FolderSync", 0, None)] == 1  # resets are counted with HTTP status 0


async def _raw_post(port, path, body, headers):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % (path, len(body))
    head += "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    return reader, writer


async def test_fault_trickle_and_close_after_response(admin):
    tgt, session, url, call, aurl, token = admin
    c = await provisioned(session, url)
    tgt.set_faults(trickle={"rate": 1.0, "chunk": 50, "interval": 0.05})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    status, _, tree = await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    assert status == 200 and len(commands.parse_foldersync(tree).added) == 13  # whole body, slowly
    assert loop.time() - t0 >= 0.2
    tgt.set_faults(close_after_response=True)
    port = int(url.split(":")[2].split("/")[0])
    reader, writer = await _raw_post(
        port, "/Microsoft-Server-ActiveSync?User=user1&DeviceId=DEV1&DeviceType=SmartPhone&Cmd=FolderSync",
        commands.foldersync("0"), {"MS-ASProtocolVersion": "14.1", "Authorization": AUTH, "X-MS-PolicyKey": c.key})
    data = await asyncio.wait_for(reader.read(), 5)  # returns at EOF: the server closed the connection
    writer.close()
    head = data.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 200") and b"connection: close" not in head
    tgt.set_faults()


async def test_ping_held_requests_answered_at_shutdown():
    state = TargetState(users=2, ping_min=1)
    runner, tgt, url = await start_target("127.0.0.1", 0, state)
    async with aiohttp.ClientSession() as session:
        c = await provisioned(session, url)
        task = asyncio.create_task(c.post("Ping", ping_request(600), key=c.key))
        await wait_held(tgt, 1)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await runner.cleanup()
        assert loop.time() - t0 < 3
        try:
            _, _, tree = await asyncio.wait_for(task, 3)
            assert root_status(tree) == 1
        except aiohttp.ClientError:
            pass
