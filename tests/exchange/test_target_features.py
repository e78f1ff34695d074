"""The embedded target's Exchange rules beyond provisioning, driven with real HTTP requests:
users from CSV, remote wipe lifecycle, Allow/Block/Quarantine, partnership limit,
Settings UserInformation, Sync, Ping, throttling, the catch-all 500."""

import asyncio
import base64

import aiohttp
import pytest

import _wbxml
from _wbxml import encode, find, findall, findtext
from loadgen.eas import commands
from loadgen.eas.commands import root_status
from loadgen.exchange.server import start_target
from loadgen.exchange.state import TargetState
from test_target import AUTH, INFO, Client

# --------------------------------------------------------------------------- request builders (tests only)


def sync_request(*collections, window=None):
    """collections: (collection id, sync key, extra children...)"""
    nodes = []
    for cid, key, *extra in collections:
        nodes.append(("AirSync:Collection", [("AirSync:SyncKey", key), ("AirSync:CollectionId", cid), *extra]))
    children = [("AirSync:Collections", nodes)]
    if window is not None:
        children.append(("AirSync:WindowSize", str(window)))
    return encode(("AirSync:Sync", children))


def body_pref(body_type, truncation=None):
    pref = [("AirSyncBase:Type", str(body_type))]
    if truncation is not None:
        pref.append(("AirSyncBase:TruncationSize", str(truncation)))
    return ("AirSync:Options", [("AirSyncBase:BodyPreference", pref)])


def ping_request(interval=None, folders=("1",)):
    children = []
    if interval is not None:
        children.append(("Ping:HeartbeatInterval", str(interval)))
    if folders:
        children.append(("Ping:Folders", [("Ping:Folder", [("Ping:Id", f), ("Ping:Class", "Email")])
                                          for f in folders]))
    return encode(("Ping:Ping", children))


def userinfo_request():
    return encode(("Settings:Settings", [("Settings:UserInformation", [("Settings:Get", None)])]))


def collection(tree, cid="1"):
    for node in findall(tree, "AirSync:Collections/AirSync:Collection"):
        if findtext(node, "AirSync:CollectionId") == cid:
            return node
    return None


def adds(node):
    return findall(node, "AirSync:Commands/AirSync:Add")


def auth(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


async def provisioned(session, url, version="14.1", device="DEV1", auth_header=AUTH, info=None):
    c = Client(session, url, version, device)
    if auth_header != AUTH:
        orig = c.post

        async def post(cmd, body=b"", key=None, auth=auth_header, query=None):
            return await orig(cmd, body, key, auth, query)
        c.post = post
    if info is not None or version in ("14.1", "16.0", "16.1"):
        body = commands.provision_initial(info or INFO)
    else:
        body = commands.provision_initial(None)
    status, _, tree = await c.post("Provision", body, key="0")
    temp = commands.parse_provision(tree).policy_key
    status, _, tree = await c.post("Provision", commands.provision_ack(temp, 1), key=temp)
    c.key = commands.parse_provision(tree).policy_key
    assert c.key
    return c


async def wait_held(tgt, n):
    for _ in range(500):
        if tgt.held_pings >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("Pings not held")


@pytest.fixture
async def make_target():
    runners = []
    session = aiohttp.ClientSession()

    async def make(**kw):
        kw.setdefault("users", 10)
        kw.setdefault("seed", 3)
        state = TargetState(**kw)
        runner, tgt, url = await start_target("127.0.0.1", 0, state)
        runners.append(runner)
        return tgt, session, url

    yield make
    await session.close()
    for runner in runners:
        await runner.cleanup()


# --------------------------------------------------------------------------- users from CSV


async def test_users_from_csv_file(tmp_path, make_target):
    f = tmp_path / "users.csv"
    f.write_text("user,password\nalice@contoso.com,S3cret,\nbob,hunter2\n\n")
    state = TargetState.from_csv(str(f))
    assert state.passwords == {"alice@contoso.com": "S3cret", "bob": "hunter2"}
    assert TargetState(users_csv=str(f)).passwords == state.passwords
    tgt, session, url = await make_target(users_csv=str(f))
    c = await provisioned(session, url, auth_header=auth("alice@contoso.com", "S3cret"))
    status, _, tree = await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    assert (status, root_status(tree)) == (200, 1)
    status, _, _ = await c.post("FolderSync", commands.foldersync("0"), key=c.key, auth=AUTH)  # user1 not in CSV
    assert status == 401
    # UserInformation gives the user's own SMTP address when the user name is one
    _, _, tree = await c.post("Settings", userinfo_request(), key=c.key)
    assert findtext(tree, "Settings:UserInformation/Settings:Get/Settings:Accounts/Settings:Account/"
                          "Settings:EmailAddresses/Settings:PrimarySmtpAddress") == "alice@contoso.com"


def test_csv_errors(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("justone\n")
    with pytest.raises(ValueError, match="bad.csv:1"):
        TargetState.from_csv(str(f))


# --------------------------------------------------------------------------- remote wipe


async def test_wipe_lifecycle_to_wiped_and_cleared(make_target):
    tgt, session, url = await make_target()
    c = await provisioned(session, url)
    record = tgt.state.devices[("user1", "DEV1")]
    assert record.wipe == "none"
    tgt.state.request_wipe(record)
    assert record.wipe == "pending"
    status, _, tree = await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    assert (status, root_status(tree)) == (200, 140) and record.wipe == "pending"
    _, _, tree = await c.post("Provision", commands.provision_initial(INFO), key=c.key)
    assert commands.parse_provision(tree).remote_wipe and record.wipe == "sent"
    await c.post("Provision", commands.remote_wipe_ack(1), key=c.key)
    assert record.wipe == "acknowledged" and record.wipe_ack_status == 1
    # the wiped device comes back with the same id: wiped, refused until cleared
    status, _, tree = await c.post("Provision", commands.provision_initial(INFO), key="0")
    assert record.wipe == "wiped" and (status, root_status(tree)) == (200, 140)
    status, _, tree = await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    assert (status, root_status(tree)) == (200, 140)
    status, _, tree = await Client(session, url, "12.1", "DEV1").post("FolderSync", commands.foldersync("0"),
                                                                      key=c.key)
    assert (status, tree) == (403, None)  # 12.x: the bare HTTP code
    tgt.state.clear_wipe(record)
    assert record.wipe == "none"
    c2 = await provisioned(session, url)
    status, _, tree = await c2.post("FolderSync", commands.foldersync("0"), key=c2.key)
    assert (status, root_status(tree)) == (200, 1)


@pytest.mark.parametrize("version,account_only", [("16.1", True), ("16.0", False), ("14.1", False)])
async def test_account_only_wipe_only_for_161(make_target, version, account_only):
    tgt, session, url = await make_target()
    c = await provisioned(session, url, version)
    record = tgt.state.devices[("user1", "DEV1")]
    tgt.state.request_wipe(record, account_only=True)
    _, _, tree = await c.post("Provision", commands.provision_initial(INFO), key=c.key)
    r = commands.parse_provision(tree)
    assert (r.account_only_wipe, r.remote_wipe) == (account_only, not account_only)
    await c.post("Provision", commands.remote_wipe_ack(1, account_only=account_only), key=c.key)
    assert record.wipe == "acknowledged" and record.wipe_account_only == account_only


async def test_failed_wipe_ack_stays_refused(make_target):
    tgt, session, url = await make_target()
    c = await provisioned(session, url)
    record = tgt.state.devices[("user1", "DEV1")]
    tgt.state.request_wipe(record)
    await c.post("Provision", commands.provision_initial(INFO), key=c.key)
    await c.post("Provision", commands.remote_wipe_ack(2), key=c.key)
    status, _, tree = await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    assert record.wipe == "acknowledged" and record.wipe_ack_status == 2 and root_status(tree) == 140


def test_wipe_fraction_is_seeded():
    state = TargetState(users=10)
    for n in range(10):
        state.device("user%d" % n, "D%d" % n, "Phone")
    a = {r.device_id for r in state.wipe_fraction(0.3, seed=1)}
    state2 = TargetState(users=10)
    for n in range(10):
        state2.device("user%d" % n, "D%d" % n, "Phone")
    assert len(a) == 3 and a == {r.device_id for r in state2.wipe_fraction(0.3, seed=1)}
    assert sum(r.wipe == "pending" for r in state.devices.values()) == 3


# --------------------------------------------------------------------------- Allow/Block/Quarantine


async def test_default_block_gives_129_in_band_and_403_for_12x(make_target):
    tgt, session, url = await make_target(abq_default="Block")
    c = await provisioned(session, url)  # Provision itself is always answered
    status, headers, tree = await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    assert (status, root_status(tree)) == (200, 129) and headers["X-MS-ASThrottle"] == "Global"
    c12 = await provisioned(session, url, "12.1", device="DEV12")
    status, _, tree = await c12.post("FolderSync", commands.foldersync("0"), key=c12.key)
    assert (status, tree) == (403, None)
    assert tgt.state.devices[("user1", "DEV1")].access == "Block"


async def test_rules_exemptions_and_precedence(make_target):
    tgt, session, url = await make_target()
    state = tgt.state
    state.set_abq(rules=[{"characteristic": "DeviceModel", "query": "Contoso X12", "access": "Block"},
                         {"characteristic": "DeviceType", "query": "SmartPhone", "access": "Allow"}])
    c = await provisioned(session, url)
    status, headers, tree = await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    assert root_status(tree) == 129 and headers["X-MS-ASThrottle"] == "DeviceRule"  # Block beats Allow
    other = await provisioned(session, url, device="DEV2", info={"Model": "Fabrikam 7"})
    assert root_status((await other.post("FolderSync", commands.foldersync("0"), key=other.key))[2]) == 1
    state.allow_device("DEV1")  # a personal exemption beats every rule
    status, headers, tree = await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    assert root_status(tree) == 1
    state.block_device("DEV2")
    status, headers, tree = await other.post("FolderSync", commands.foldersync("0"), key=other.key)
    assert root_status(tree) == 129 and headers["X-MS-ASThrottle"] == "Individual"


async def test_os_and_user_agent_rules(make_target):
    tgt, session, url = await make_target()
    tgt.state.set_abq(rules=[{"characteristic": "UserAgent", "query": "Bad-Agent/1.0", "access": "Block"},
                             {"characteristic": "OS", "query": "Contoso OS 1", "access": "Quarantine"}])
    c = await provisioned(session, url, info={"Model": "M", "OS": "Contoso OS 1"})
    status, _, tree = await c.post("Sync", sync_request(("1", "0")), key=c.key)
    assert root_status(tree) == 129  # quarantined by OS
    c2 = await provisioned(session, url, device="DEV2", info={"Model": "M", "OS": "Other"})
    headers = {"MS-ASProtocolVersion": "14.1", "Authorization": AUTH, "X-MS-PolicyKey": c2.key,
               "User-Agent": "Bad-Agent/1.0"}
    async with session.post(url + "?User=user1&DeviceId=DEV2&DeviceType=SmartPhone&Cmd=FolderSync",
                            data=commands.foldersync("0"), headers=headers) as resp:
        assert root_status(_wbxml.decode(await resp.read())) == 129


async def test_quarantine_allows_provision_settings_foldersync_until_released(make_target):
    tgt, session, url = await make_target(abq_rules=[
        {"characteristic": "DeviceType", "query": "SmartPhone", "access": "Quarantine"}])
    c = await provisioned(session, url)
    assert root_status((await c.post("FolderSync", commands.foldersync("0"), key=c.key))[2]) == 1
    assert root_status((await c.post("Settings", userinfo_request(), key=c.key))[2]) == 1
    status, headers, tree = await c.post("Sync", sync_request(("1", "0")), key=c.key)
    assert (status, root_status(tree), headers["X-MS-ASThrottle"]) == (200, 129, "DeviceRule")
    assert root_status((await c.post("Ping", ping_request(60), key=c.key))[2]) == 129
    listed = {d["device_id"]: d for d in tgt.state.list_devices()}
    assert listed["DEV1"]["access"] == "Quarantine" and listed["DEV1"]["device_info"]["Model"] == "Contoso X12"
    tgt.state.release("DEV1")
    status, _, tree = await c.post("Sync", sync_request(("1", "0")), key=c.key)
    assert (status, root_status(tree)) == (200, None) and findtext(collection(tree), "AirSync:Status") == "1"


async def test_14_0_device_information_through_settings_then_abq(make_target):
    tgt, session, url = await make_target(abq_rules=[
        {"characteristic": "DeviceModel", "query": "Contoso X12", "access": "Block"}])
    c = await provisioned(session, url, "14.0")
    status, _, tree = await c.post("Settings", commands.settings_device_information(INFO), key=c.key)
    assert root_status(tree) == 1  # Settings answered even though the model is blocked
    assert tgt.state.devices[("user1", "DEV1")].device_info["Model"] == "Contoso X12"
    assert root_status((await c.post("FolderSync", commands.foldersync("0"), key=c.key))[2]) == 129


# --------------------------------------------------------------------------- partnership limit


@pytest.mark.parametrize("version,expect", [("14.1", (200, 177)), ("16.1", (200, 177)),
                                            ("14.0", (403, None)), ("12.1", (403, None))])
async def test_partnership_limit_177(make_target, version, expect):
    tgt, session, url = await make_target(max_devices=2)
    for n in range(2):
        await provisioned(session, url, version, device="D%d" % n)
    c = Client(session, url, version, "D2")
    status, _, tree = await c.post("Provision", commands.provision_initial(INFO if version >= "14.1" else None),
                                   key="0")
    assert (status, root_status(tree)) == expect
    assert ("user1", "D2") not in tgt.state.devices
    tgt.state.remove_device(tgt.state.devices[("user1", "D0")])  # Remove-MobileDevice frees a slot
    await provisioned(session, url, version, device="D2")


def test_default_partnership_limit_is_100():
    state = TargetState(users=1)
    assert all(state.device("user0", "D%d" % n, "T") for n in range(100))
    assert state.device("user0", "D100", "T") is None and state.device("user0", "D5", "T") is not None


# --------------------------------------------------------------------------- Settings UserInformation


@pytest.mark.parametrize("version", ["12.1", "14.0"])
async def test_userinformation_before_141(make_target, version):
    tgt, session, url = await make_target(domain="contoso.com")
    c = await provisioned(session, url, version)
    status, _, tree = await c.post("Settings", userinfo_request(), key=c.key)
    assert status == 200 and root_status(tree) == 1
    assert findtext(tree, "Settings:UserInformation/Settings:Status") == "1"
    assert findtext(tree, "Settings:UserInformation/Settings:Get/Settings:EmailAddresses/"
                          "Settings:SMTPAddress") == "user1@contoso.com"


async def test_settings_deviceinformation_and_userinformation_together(make_target):
    tgt, session, url = await make_target()
    c = await provisioned(session, url, "14.0")
    body = encode(("Settings:Settings", [commands.device_information({"Model": "Z"}),
                                         ("Settings:UserInformation", [("Settings:Get", None)])]))
    _, _, tree = await c.post("Settings", body, key=c.key)
    assert findtext(tree, "Settings:DeviceInformation/Settings:Status") == "1"
    assert findtext(tree, "Settings:UserInformation/Settings:Get/Settings:EmailAddresses/Settings:SMTPAddress")
    assert tgt.state.devices[("user1", "DEV1")].device_info == {"Model": "Z"}


# --------------------------------------------------------------------------- Sync


async def test_sync_initial_key_then_windowed_items_then_new_mail(make_target):
    tgt, session, url = await make_target(inbox_items=5)
    c = await provisioned(session, url)
    _, _, tree = await c.post("Sync", sync_request(("1", "0")), key=c.key)
    col = collection(tree)
    assert findtext(col, "AirSync:SyncKey") == "1" and findtext(col, "AirSync:Status") == "1" and not adds(col)
    _, _, tree = await c.post("Sync", sync_request(("1", "1", ("AirSync:WindowSize", "3"))), key=c.key)
    col = collection(tree)
    assert findtext(col, "AirSync:SyncKey") == "2" and len(adds(col)) == 3
    assert find(col, "AirSync:MoreAvailable") is not None
    order = [t for t, _ in col[1]]
    assert order == ["AirSync:SyncKey", "AirSync:CollectionId", "AirSync:Status", "AirSync:MoreAvailable",
                     "AirSync:Commands"]  # MS-ASCMD 2.2.3.29.2 order
    first = adds(col)[0]
    assert findtext(first, "AirSync:ServerId") == "1:1"
    assert findtext(first, "AirSync:ApplicationData/Email:Subject")
    assert findtext(first, "AirSync:ApplicationData/Email:To").endswith("<user1@example.com>")
    # the previous key again replays the previous answer
    _, _, tree = await c.post("Sync", sync_request(("1", "1", ("AirSync:WindowSize", "3"))), key=c.key)
    assert findtext(collection(tree), "AirSync:SyncKey") == "2" and len(adds(collection(tree))) == 3
    _, _, tree = await c.post("Sync", sync_request(("1", "2")), key=c.key)
    col = collection(tree)
    assert findtext(col, "AirSync:SyncKey") == "3" and len(adds(col)) == 2 and find(col, "AirSync:MoreAvailable") is None
    _, _, tree = await c.post("Sync", sync_request(("1", "3")), key=c.key)  # nothing new: same key
    assert findtext(collection(tree), "AirSync:SyncKey") == "3" and not adds(collection(tree))
    tgt.state.deliver_mail("user1", 2)
    _, _, tree = await c.post("Sync", sync_request(("1", "3")), key=c.key)
    assert [findtext(a, "AirSync:ServerId") for a in adds(collection(tree))] == ["1:6", "1:7"]


async def test_sync_body_preferences_and_bad_keys(make_target):
    tgt, session, url = await make_target()
    c = await provisioned(session, url)
    await c.post("Sync", sync_request(("1", "0")), key=c.key)
    _, _, tree = await c.post("Sync", sync_request(("1", "1", body_pref(1, 10))), key=c.key)
    body = find(adds(collection(tree))[0], "AirSync:ApplicationData/AirSyncBase:Body")
    assert findtext(body, "AirSyncBase:Type") == "1" and findtext(body, "AirSyncBase:Truncated") == "1"
    assert len(findtext(body, "AirSyncBase:Data")) == 10 and int(findtext(body, "AirSyncBase:EstimatedDataSize")) > 10
    c2 = await provisioned(session, url, device="DEV2")
    await c2.post("Sync", sync_request(("1", "0")), key=c2.key)
    _, _, tree = await c2.post("Sync", sync_request(("1", "1", body_pref(4))), key=c2.key)
    body = find(adds(collection(tree))[0], "AirSync:ApplicationData/AirSyncBase:Body")
    assert findtext(body, "AirSyncBase:Type") == "4" and "MIME-Version: 1.0" in findtext(body, "AirSyncBase:Data")
    _, _, tree = await c.post("Sync", sync_request(("1", "99")), key=c.key)
    assert findtext(collection(tree), "AirSync:Status") == "3"  # invalid sync key
    _, _, tree = await c.post("Sync", sync_request(("42", "0")), key=c.key)
    assert findtext(collection(tree, "42"), "AirSync:Status") == "12"  # unknown folder
    _, _, tree = await c.post("Sync", sync_request(("7", "0"), ("1", "0")), key=c.key)  # two collections
    assert findtext(collection(tree, "7"), "AirSync:SyncKey") == "1" and collection(tree, "1") is not None
    status, _, tree = await c.post("Sync", b"", key=c.key)
    assert (status, root_status(tree)) == (200, 13)


async def test_sync_window_size_at_sync_level_and_default(make_target):
    tgt, session, url = await make_target(inbox_items=130)
    c = await provisioned(session, url)
    await c.post("Sync", sync_request(("1", "0")), key=c.key)
    _, _, tree = await c.post("Sync", sync_request(("1", "1"), window=7), key=c.key)
    assert len(adds(collection(tree))) == 7
    _, _, tree = await c.post("Sync", sync_request(("1", "2")), key=c.key)
    assert len(adds(collection(tree))) == 100  # MS-ASCMD default WindowSize


# --------------------------------------------------------------------------- Ping


async def test_ping_bounds_and_missing_parameters(make_target):
    tgt, session, url = await make_target(ping_min=2, ping_max=30, ping_max_folders=3)
    c = await provisioned(session, url)
    _, _, tree = await c.post("Ping", ping_request(1), key=c.key)
    assert (root_status(tree), findtext(tree, "Ping:HeartbeatInterval")) == (5, "2")
    _, _, tree = await c.post("Ping", ping_request(31), key=c.key)
    assert (root_status(tree), findtext(tree, "Ping:HeartbeatInterval")) == (5, "30")
    _, _, tree = await c.post("Ping", b"", key=c.key)
    assert root_status(tree) == 3  # nothing cached yet
    _, _, tree = await c.post("Ping", ping_request(5, ("1", "2", "3", "4")), key=c.key)
    assert (root_status(tree), findtext(tree, "Ping:MaxFolders")) == (6, "3")
    _, _, tree = await c.post("Ping", ping_request(5, ("1", "99")), key=c.key)
    assert root_status(tree) == 7


def test_default_ping_bounds_are_exchanges():
    state = TargetState(users=1)
    assert (state.ping_min, state.ping_max) == (60, 3540)


async def test_ping_expires_with_status_1_and_uses_cached_interval(make_target):
    tgt, session, url = await make_target(ping_min=1)
    c = await provisioned(session, url)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    _, _, tree = await c.post("Ping", ping_request(1), key=c.key)
    assert root_status(tree) == 1 and loop.time() - t0 >= 0.9
    t0 = loop.time()
    _, _, tree = await c.post("Ping", b"", key=c.key)  # HeartbeatInterval and folders cached
    assert root_status(tree) == 1 and loop.time() - t0 >= 0.9


async def test_ping_returns_2_when_mail_arrives_while_held(make_target):
    tgt, session, url = await make_target(ping_min=1)
    c = await provisioned(session, url)
    other = await provisioned(session, url, device="DEV2")
    task = asyncio.create_task(c.post("Ping", ping_request(20), key=c.key))
    await wait_held(tgt, 1)
    tgt.state.deliver_mail("user2", 1)  # another user: does not wake this Ping
    await asyncio.sleep(0.05)
    assert not task.done()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    tgt.state.deliver_mail("user1", 1)
    _, _, tree = await asyncio.wait_for(task, 5)
    assert loop.time() - t0 < 1 and root_status(tree) == 2
    assert [f[1] for f in findall(tree, "Ping:Folders/Ping:Folder")] == ["1"]
    # Inbox sync state behind the mailbox: Status 2 at once
    await other.post("Sync", sync_request(("1", "0")), key=other.key)
    _, _, tree = await asyncio.wait_for(other.post("Ping", ping_request(20), key=other.key), 5)
    assert root_status(tree) == 2


async def test_ping_is_policy_checked_from_14_0_only(make_target):
    tgt, session, url = await make_target(ping_min=1)
    c = await provisioned(session, url, "14.0")
    tgt.state.change_policy(MinDevicePasswordLength=6)
    _, _, tree = await c.post("Ping", ping_request(1), key=c.key)
    assert root_status(tree) == 144
    c12 = await provisioned(session, url, "12.1", device="DEV12")
    tgt.state.change_policy(MinDevicePasswordLength=7)
    status, _, tree = await c12.post("Ping", ping_request(1), key=c12.key)
    assert (status, root_status(tree)) == (200, 1)


# --------------------------------------------------------------------------- throttling


async def test_concurrency_limit_counts_held_pings(make_target):
    tgt, session, url = await make_target(ping_min=1, max_concurrency=2)
    a = await provisioned(session, url, device="A")
    b = await provisioned(session, url, device="B")
    c = await provisioned(session, url, device="C")
    held = [asyncio.create_task(x.post("Ping", ping_request(20), key=x.key)) for x in (a, b)]
    await wait_held(tgt, 2)
    status, headers, _ = await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    assert status == 503 and headers["X-MS-ASThrottle"] == "OutOfBudgets" and int(headers["Retry-After"]) > 0
    # another user is not affected
    other = await provisioned(session, url, device="X", auth_header=auth("user2", "Pass2!"))
    assert (await other.post("FolderSync", commands.foldersync("0"), key=other.key))[0] == 200
    tgt.state.deliver_mail("user1", 1)
    await asyncio.gather(*held)
    assert (await c.post("FolderSync", commands.foldersync("0"), key=c.key))[0] == 200
    assert tgt.throttled["OutOfBudgets"] == 1


async def test_command_budget_token_bucket(make_target):
    tgt, session, url = await make_target(command_burst=5, command_rate=0.5)
    c = await provisioned(session, url)  # 2 tokens
    statuses, backoffs = [], []
    for _ in range(4):
        status, headers, _ = await c.post("FolderSync", commands.foldersync("0"), key=c.key)
        statuses.append(status)
        backoffs.append(headers.get("X-MS-BackOffDuration"))
    assert statuses == [200, 200, 200, 503]
    assert backoffs[0] is None and backoffs[2] is not None and int(backoffs[2]) > 0  # below 20 %: back off
    status, headers, _ = await c.post("FolderSync", commands.foldersync("0"), key=c.key)
    assert headers["X-MS-ASThrottle"] == "CommandFrequency" and int(headers["Retry-After"]) >= 1
    other = await provisioned(session, url, device="DEV2")  # per device: a fresh bucket
    assert (await other.post("FolderSync", commands.foldersync("0"), key=other.key))[0] == 200


def test_default_throttle_is_generous():
    state = TargetState(users=1)
    assert state.throttle.max_concurrency == 10
    assert all(state.throttle.spend(("u", "d"))[0] for _ in range(500))


# --------------------------------------------------------------------------- robustness


async def test_unexpected_exception_is_a_500_without_traceback(make_target, monkeypatch, caplog):
    tgt, session, url = await make_target()
    c = await provisioned(session, url)

    def boom(self, record, version, tree):
        raise RuntimeError("secret internals")

    monkeypatch.setitem(type(tgt)._handlers, "FolderSync", boom)
    async with session.post(url + "?User=user1&DeviceId=DEV1&DeviceType=SmartPhone&Cmd=FolderSync",
                            data=commands.foldersync("0"),
                            headers={"MS-ASProtocolVersion": "14.1", "Authorization": AUTH,
                                     "X-MS-PolicyKey": c.key}) as resp:
        text = await resp.text()
        assert resp.status == 500
    assert "Traceback" not in text and "secret" not in text
    assert "secret internals" in caplog.text  # logged instead
    assert tgt.counters[("FolderSync", 500, None)] == 1


async def test_unknown_command_name_is_bounded_in_counters(make_target):
    tgt, session, url = await make_target()
    c = await provisioned(session, url)
    status, _, _ = await c.post("Whatever%d" % 7, key=c.key)
    assert status == 501 and ("other", 501, 137) in tgt.counters
