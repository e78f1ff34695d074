"""The embedded target, driven with real HTTP requests: Exchange's decision tree and envelopes."""

import base64

import aiohttp
import pytest

import _wbxml
from _wbxml import findtext
from loadgen.eas import commands
from loadgen.eas.commands import root_status
from loadgen.exchange.server import start_target
from loadgen.exchange.state import TargetState

AUTH = "Basic " + base64.b64encode(b"user1:Pass1!").decode()
INFO = {"Model": "Contoso X12", "IMEI": "356938035643809"}


class Client:
    def __init__(self, session, url, version="14.1", device="DEV1"):
        self.session, self.url, self.version, self.device = session, url, version, device

    async def post(self, cmd, body=b"", key=None, auth=AUTH, query=None):
        headers = {"MS-ASProtocolVersion": self.version, "Content-Type": "application/vnd.ms-sync.wbxml"}
        if auth:
            headers["Authorization"] = auth
        if key is not None:
            headers["X-MS-PolicyKey"] = key
        q = query if query is not None else "User=user1&DeviceId=%s&DeviceType=SmartPhone&Cmd=%s" % (self.device, cmd)
        async with self.session.post(self.url + "?" + q, data=body, headers=headers) as resp:
            data = await resp.read()
            wbxml = resp.content_type == "application/vnd.ms-sync.wbxml"
            return resp.status, resp.headers, (_wbxml.decode(data) if data and wbxml else None)

    async def provision(self, ack=1):
        info = INFO if self.version in ("14.1", "16.0", "16.1") else None
        status, _, tree = await self.post("Provision", commands.provision_initial(info), key="0")
        assert status == 200
        r = commands.parse_provision(tree)
        status, _, tree = await self.post("Provision", commands.provision_ack(r.policy_key, ack), key=r.policy_key)
        return status, tree


@pytest.fixture
async def target():
    state = TargetState(users=10, seed=3)
    runner, tgt, url = await start_target("127.0.0.1", 0, state)
    async with aiohttp.ClientSession() as session:
        yield tgt, session, url
    await runner.cleanup()


async def test_two_step_provisioning_temporary_then_final_key(target):
    tgt, session, url = target
    c = Client(session, url)
    status, _, tree = await c.post("Provision", commands.provision_initial(INFO), key="0")
    r = commands.parse_provision(tree)
    assert status == 200 and r.status == 1 and r.policy_status == 1 and r.policy
    assert r.policy["MaxDevicePasswordFailedAttempts"] == "8"
    temp = r.policy_key
    status, _, tree = await c.post("Provision", commands.provision_ack(temp, 1), key=temp)
    final = commands.parse_provision(tree).policy_key
    assert final == tgt.state.policy_key != temp
    status, _, tree = await c.post("FolderSync", commands.foldersync("0"), key=final)
    assert status == 200 and root_status(tree) == 1
    assert tgt.state.devices[("user1", "DEV1")].device_info["Model"] == "Contoso X12"


async def test_wrong_ack_key_gets_policy_status_5(target):
    tgt, session, url = target
    c = Client(session, url)
    await c.post("Provision", commands.provision_initial(INFO), key="0")
    status, _, tree = await c.post("Provision", commands.provision_ack("999", 1), key="999")
    assert commands.parse_provision(tree).policy_status == 5


@pytest.mark.parametrize("version,expect", [("14.1", (200, 142)), ("14.0", (200, 142)), ("12.1", (449, None))])
async def test_never_provisioned_envelope_by_version(target, version, expect):
    tgt, session, url = target
    status, headers, tree = await Client(session, url, version).post("FolderSync", commands.foldersync("0"), key="0")
    assert (status, root_status(tree)) == expect


async def test_no_key_and_non_provisionable_not_allowed_is_141(target):
    tgt, session, url = target
    status, _, tree = await Client(session, url, "14.1").post("FolderSync", commands.foldersync("0"))
    assert (status, root_status(tree)) == (200, 141)
    status, _, tree = await Client(session, url, "12.1").post("FolderSync", commands.foldersync("0"))
    assert (status, tree) == (403, None)
    tgt.state.allow_non_provisionable = True
    status, _, tree = await Client(session, url, "14.1").post("FolderSync", commands.foldersync("0"))
    assert (status, root_status(tree)) == (200, 1)


async def test_policy_change_gives_144_and_12x_449(target):
    tgt, session, url = target
    c = Client(session, url, "14.1")
    _, tree = await c.provision()
    key = commands.parse_provision(tree).policy_key
    tgt.state.change_policy(MinDevicePasswordLength=6)
    status, _, tree = await c.post("FolderSync", commands.foldersync("0"), key=key)
    assert (status, root_status(tree)) == (200, 144)
    c12 = Client(session, url, "12.1", device="DEV12")
    _, tree = await c12.provision()
    key = commands.parse_provision(tree).policy_key
    tgt.state.change_policy(MinDevicePasswordLength=8)
    status, _, tree = await c12.post("FolderSync", commands.foldersync("0"), key=key)
    assert status == 449 and tree is None


async def test_partial_ack_refused_with_139_unless_allowed(target):
    tgt, session, url = target
    c = Client(session, url)
    status, tree = await c.provision(ack=2)
    assert (status, root_status(tree)) == (200, 139)
    c4 = Client(session, url, device="DEV4")
    status, tree = await c4.provision(ack=4)
    assert (status, root_status(tree)) == (200, 145)


async def test_refresh_interval_gives_143(target):
    tgt, session, url = target
    now = [1000.0]
    tgt.state.clock = lambda: now[0]
    tgt.state.refresh_interval_min = 60
    c = Client(session, url)
    _, tree = await c.provision()
    key = commands.parse_provision(tree).policy_key
    assert root_status((await c.post("FolderSync", commands.foldersync("0"), key=key))[2]) == 1
    now[0] += 3601
    assert root_status((await c.post("FolderSync", commands.foldersync("0"), key=key))[2]) == 143


async def test_tampered_policy_timestamp_counts_as_never_provisioned(target):
    tgt, session, url = target
    c = Client(session, url)
    _, tree = await c.provision()
    key = commands.parse_provision(tree).policy_key
    tgt.state.devices[("user1", "DEV1")].last_policy_time += 86400  # signature no longer verifies
    assert root_status((await c.post("FolderSync", commands.foldersync("0"), key=key))[2]) == 142


async def test_remote_wipe_lifecycle(target):
    tgt, session, url = target
    c = Client(session, url)
    _, tree = await c.provision()
    key = commands.parse_provision(tree).policy_key
    record = tgt.state.devices[("user1", "DEV1")]
    tgt.state.request_wipe(record)
    assert root_status((await c.post("FolderSync", commands.foldersync("0"), key=key))[2]) == 140
    status, _, tree = await c.post("Provision", commands.provision_initial(INFO), key=key)
    assert commands.parse_provision(tree).remote_wipe and record.wipe == "sent"
    await c.post("Provision", commands.remote_wipe_ack(1), key=key)
    assert record.wipe == "acknowledged" and record.wipe_ack_status == 1


async def test_auth_and_bad_requests(target):
    tgt, session, url = target
    c = Client(session, url)
    status, headers, _ = await c.post("FolderSync", auth="Basic " + base64.b64encode(b"user1:wrong").decode())
    assert status == 401 and "Basic" in headers["WWW-Authenticate"]
    status, _, _ = await c.post("FolderSync", query="User=user1&Cmd=FolderSync")
    assert status == 400
    status, _, tree = await c.post("FolderSync", body=b"\x03\x01\x6a\x00\x00\x07", key="0")
    assert (status, root_status(tree)) == (200, 102)
    _, tree = await c.provision()
    key = commands.parse_provision(tree).policy_key
    status, _, tree = await c.post("Bogus", key=key)
    assert status == 501


async def test_options_headers(target):
    tgt, session, url = target
    async with session.options(url, headers={"Authorization": AUTH}) as resp:
        assert resp.status == 200
        assert "14.1" in resp.headers["MS-ASProtocolVersions"].split(",")
        assert "Provision" in resp.headers["MS-ASProtocolCommands"].split(",")
        assert resp.headers["MS-Server-ActiveSync"]


async def test_missing_device_information_on_141_gives_165(target):
    tgt, session, url = target
    status, _, tree = await Client(session, url).post("Provision", commands.provision_initial(None), key="0")
    assert root_status(tree) == 165


async def test_foldersync_hierarchy_and_sync_keys(target):
    tgt, session, url = target
    c = Client(session, url)
    _, tree = await c.provision()
    key = commands.parse_provision(tree).policy_key
    _, _, tree = await c.post("FolderSync", commands.foldersync("0"), key=key)
    fs = commands.parse_foldersync(tree)
    assert fs.status == 1 and fs.sync_key == "1" and {f.display_name for f in fs.added} >= {"Inbox", "Calendar"}
    _, _, tree = await c.post("FolderSync", commands.foldersync("1"), key=key)
    assert commands.parse_foldersync(tree).added == []
    _, _, tree = await c.post("FolderSync", commands.foldersync("77"), key=key)
    assert findtext(tree, "FolderHierarchy:Status") == "9"
