"""Property: whatever the server answers, a device stays in a valid state and never
sends an ordinary command without the final policy key it was given.

A fake transport plays a hostile server: each answer is drawn by hypothesis from
everything a server may say (policy and acknowledgement responses with right or
wrong keys, Provision/Policy statuses, 449, in-band 139-145, 403, 401, 451, 503,
timeouts, garbage bodies, remote wipes).  The only exception the specification
allows: the Settings request that answers status 165 during provisioning.
"""

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

import _wbxml
from loadgen.device import life as device_mod, states
from loadgen.eas import versions
from loadgen.device.profiles import PROFILES, identity
from loadgen.results.stats import Stats
from loadgen.run.context import RunLoad
from loadgen.scenario import LoadConfig
from loadgen.wire.transport import Response

VALID_STATES = {states.NEW, states.PROVISIONING, states.PROVISIONED, states.NO_POLICY,
                states.UNPROVISIONED, states.REFUSED, states.BLOCKED, states.WIPED,
                states.THROTTLED, states.FAILED, states.AUTH_FAILED, states.QUARANTINED}


def prov(status="1", pstatus="1", key=None, data=True, wipe=None):
    kids = [("Provision:Status", status)]
    if wipe:
        kids.append(("Provision:" + wipe, None))
    else:
        pol = [("Provision:PolicyType", "MS-EAS-Provisioning-WBXML"), ("Provision:Status", pstatus)]
        if key:
            pol.append(("Provision:PolicyKey", key))
        if data:
            pol.append(("Provision:Data", [("Provision:EASProvisionDoc", [("Provision:DevicePasswordEnabled", "1")])]))
        kids.append(("Provision:Policies", [("Provision:Policy", pol)]))
    return _wbxml.encode(("Provision:Provision", kids))


def fs(status, key="1"):
    kids = [("FolderHierarchy:Status", str(status))]
    if status == 1:
        kids.append(("FolderHierarchy:SyncKey", key))
    return _wbxml.encode(("FolderHierarchy:FolderSync", kids))


ANSWERS = st.sampled_from([
    "policy", "ack_ok", "ack_wrong", "policy_status_2", "policy_status_3", "policy_status_5", "prov_status_2",
    "prov_status_3", "prov_165", "wipe", "ok", "in_band_140", "in_band_142", "in_band_143", "in_band_144",
    "in_band_139", "in_band_141", "in_band_145", "http_449", "http_403", "http_403_129", "http_401", "http_451",
    "http_503", "http_500", "timeout", "garbage", "empty",
])


class HostileServer:
    """Answers from a script; remembers which final keys it issued."""

    def __init__(self, script):
        self.script = list(script)
        self.final_keys = set()
        self.violations = []
        self.requests = 0
        self.temp = 0

    async def post(self, endpoint, command, body, policy_key, timeout=None):
        self.requests += 1
        if command not in ("Provision",) and policy_key is not None:
            if policy_key not in self.final_keys and not (command == "Settings" and policy_key == "0"):
                self.violations.append((command, policy_key))
        answer = self.script.pop(0) if self.script else "ok"
        await asyncio.sleep(0)
        headers = {"Content-Type": "application/vnd.ms-sync.wbxml"}
        if answer == "policy":
            self.temp += 1
            return Response(200, headers, prov(key="T%d" % self.temp), 0.001)
        if answer == "ack_ok":
            key = "F%d" % (len(self.final_keys) + 1)
            self.final_keys.add(key)
            return Response(200, headers, prov(key=key, data=False), 0.001)
        simple = {
            "ack_wrong": prov(pstatus="5", data=False), "policy_status_2": prov(pstatus="2", data=False),
            "policy_status_3": prov(pstatus="3", data=False), "policy_status_5": prov(pstatus="5", data=False),
            "prov_status_2": prov(status="2", data=False), "prov_status_3": prov(status="3", data=False),
            "prov_165": _wbxml.encode(("Provision:Provision", [("Provision:Status", "165")])),
            "wipe": prov(wipe="RemoteWipe"), "ok": fs(1),
        }
        if answer == "policy_status_2":
            self.final_keys.add("0")  # no policy: Exchange allows a zero key (PolicyKeyNeeded == 0)
        if answer in simple:
            return Response(200, headers, simple[answer], 0.001)
        if answer.startswith("in_band_"):
            return Response(200, headers, fs(int(answer[8:])), 0.001)
        if answer == "http_403_129":
            return Response(403, headers, fs(129), 0.001)
        if answer.startswith("http_"):
            code = int(answer[5:])
            extra = {"Retry-After": "1", "X-MS-ASThrottle": "OutOfBudgets"} if code == 503 else {}
            if code == 451:
                extra = {"X-MS-Location": "https://elsewhere.example/Microsoft-Server-ActiveSync"}
            return Response(code, {**headers, **extra}, b"", 0.001)
        if answer == "timeout":
            return Response(0, {}, b"", 0.001, "timeout")
        if answer == "garbage":
            return Response(200, headers, b"\x03\x01\x6a\x00\x00\x07\x7f", 0.001)
        return Response(200, headers, b"", 0.001)


class InstantDevice(device_mod.Device):
    """Sleeps are counted, not waited, so that hours of retry intervals take no time."""

    async def _sleep(self, seconds, deadline):
        await asyncio.sleep(0)
        return asyncio.get_running_loop().time() < deadline


@settings(max_examples=int(__import__("os").environ.get("EASLOAD_PROPERTY_EXAMPLES", "150")), deadline=None)
@given(st.lists(ANSWERS, min_size=1, max_size=40), st.sampled_from(versions.SIMULATED),
       st.sampled_from(sorted(PROFILES)))
def test_device_never_sends_a_command_without_its_final_key(script, version, profile_name):
    profile = PROFILES[profile_name]
    server = HostileServer(script)
    load = RunLoad(LoadConfig(think_time=0.0, retry_interval=3600.0, backoff=5.0, reenrol_after=1.0))
    dev = InstantDevice(0, "user0", "pw", versions.get(version), profile, identity(1, 0, 0, profile),
                        "https://t/Microsoft-Server-ActiveSync", load, Stats(), random.Random(1), origin=(1, 0, 0))

    async def go():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.3
        while server.script and dev.alive and loop.time() < deadline:
            await dev.run(server, min(deadline, loop.time() + 0.05))

    asyncio.run(go())
    assert server.violations == []
    assert dev.state in VALID_STATES
    if dev.prov.policy_key is not None and dev.state == states.PROVISIONED and not dev.prov.policy_key == "0":
        assert dev.prov.policy_key in server.final_keys


def test_reprovision_loop_stops_and_says_so():
    # the server keeps answering 449 right after every successful provisioning (docs/protocol-notes.md, 449 vs
    # in-band statuses 139-145 and how Exchange chooses)
    script = ["policy", "ack_ok", "ok", "ok"] + ["http_449", "policy", "ack_ok"] * 4 + ["http_449", "policy", "ack_ok"]
    server = HostileServer(script)
    profile = PROFILES["modern"]
    load = RunLoad(LoadConfig(think_time=0.0, retry_interval=3600.0, mode="poll"))
    stats = Stats()
    dev = InstantDevice(0, "user0", "pw", versions.get("12.1"), profile, identity(1, 0, 0, profile),
                        "https://t/Microsoft-Server-ActiveSync", load, stats, random.Random(1), origin=(1, 0, 0))

    async def go():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.3
        while server.script and dev.alive and loop.time() < deadline:
            await dev.run(server, min(deadline, loop.time() + 0.05))

    asyncio.run(go())
    assert stats.provisionings[("loop_449", "1")] == 1
    assert "contact the administrator" in dev.detail


# --------------------------------------------------------------------------- living by the policy

from _wbxml import find, findall, findtext  # noqa: E402
from loadgen.eas import policy as policies  # noqa: E402

_DAYS = {0: float("inf"), 1: 1, 2: 3, 3: 7, 4: 14, 5: 31, 6: 92, 7: 183}  # FilterType -> days (MS-ASCMD)

POLICIES = st.fixed_dictionaries({
    "AllowHTMLEmail": st.sampled_from(["0", "1"]),
    "MaxEmailBodyTruncationSize": st.sampled_from(["-1", "0", "1", "2", "50"]),
    "MaxEmailHTMLBodyTruncationSize": st.sampled_from(["-1", "0", "1", "4"]),
    "MaxEmailAgeFilter": st.sampled_from(["0", "1", "2", "3", "4", "5"]),
    "MaxCalendarAgeFilter": st.sampled_from(["0", "4", "5", "6", "7"]),
    "AttachmentsEnabled": st.sampled_from(["0", "1"]),
    "MaxAttachmentSize": st.sampled_from([None, "0", "3000", "100000"]),
})


def _policy_doc(policy):
    return [("Provision:" + k, v) for k, v in policy.items()]


class PolicyServer:
    """Gives a device a policy, then mail with attachments and truncated bodies; after a few Syncs
    answers 449 and gives the second policy.  Every Sync and ItemOperations request is checked
    against the policy in force (the one whose final key the device sent)."""

    def __init__(self, first, second, attachment_sizes):
        self.policies = {"F1": first, "F2": second}
        self.given = first
        self.temp = None
        self.sizes = attachment_sizes
        self.syncs = 0
        self.checked = {"Sync": 0, "ItemOperations": 0, "attachment": 0}
        self.refused_fetches = 0  # attachment fetches answered 449 (checked, then sent again)
        self.violations = []

    def _items(self):
        adds = []
        for i, size in enumerate(self.sizes):
            data = [("Email:Subject", "m%d" % i), ("AirSyncBase:Attachments", [("AirSyncBase:Attachment", [
                ("AirSyncBase:DisplayName", "a"), ("AirSyncBase:FileReference", "1:%d:0" % i),
                ("AirSyncBase:Method", "1"), ("AirSyncBase:EstimatedDataSize", str(size))])]),
                ("AirSyncBase:Body", [("AirSyncBase:Type", "1"), ("AirSyncBase:EstimatedDataSize", "9000"),
                                      ("AirSyncBase:Truncated", "1"), ("AirSyncBase:Data", "x")])]
            adds.append(("AirSync:Add", [("AirSync:ServerId", "1:%d" % i), ("AirSync:ApplicationData", data)]))
        return adds

    def _check(self, command, tree, policy):
        applied = policies.applied(policy)
        bad = self.violations.append
        if command == "Sync":
            options = find(tree, "AirSync:Collections/AirSync:Collection/AirSync:Options")
            if options is None:
                return  # the initial SyncKey 0 request carries no options
            self.checked["Sync"] += 1
            cid = findtext(tree, "AirSync:Collections/AirSync:Collection/AirSync:CollectionId")
            limit = applied.max_calendar_age_filter if cid == "7" else applied.max_email_age_filter
            filter_type = int(findtext(options, "AirSync:FilterType"))
            if limit and _DAYS[filter_type] > _DAYS[max(limit, 4) if cid == "7" else limit]:
                bad(("FilterType", cid, filter_type, limit))
            body_type = findtext(options, "AirSyncBase:BodyPreference/AirSyncBase:Type")
            if body_type == "2" and not applied.allow_html:
                bad(("html", body_type))
            kb = applied.max_html_truncation_kb if body_type == "2" else applied.max_body_truncation_kb
            size = findtext(options, "AirSyncBase:BodyPreference/AirSyncBase:TruncationSize")
            if kb >= 0 and (size is None or int(size) > kb * 1024):
                bad(("TruncationSize", size, kb))
        elif command == "ItemOperations":
            self.checked["ItemOperations"] += 1
            ref = findtext(tree, "ItemOperations:Fetch/AirSyncBase:FileReference")
            if ref is not None:
                self.checked["attachment"] += 1
                size = self.sizes[int(ref.split(":")[1])]
                if policies.attachment_decision(applied, size) != policies.FETCH:
                    bad(("attachment", ref, size))
            elif findtext(tree, "ItemOperations:Fetch/ItemOperations:Options/AirSyncBase:BodyPreference/"
                                "AirSyncBase:Type") == "2" and not applied.allow_html:
                bad(("html body fetch",))

    async def post(self, endpoint, command, body, policy_key, timeout=None):
        await asyncio.sleep(0)
        headers = {"Content-Type": "application/vnd.ms-sync.wbxml"}
        tree = _wbxml.decode(body) if body else None
        if command == "Provision":
            if findtext(tree, "Provision:Policies/Provision:Policy/Provision:PolicyKey") is None:
                self.temp = "T-" + ("F2" if self.given is self.policies["F2"] else "F1")
                pol = [("Provision:PolicyType", "MS-EAS-Provisioning-WBXML"), ("Provision:Status", "1"),
                       ("Provision:PolicyKey", self.temp),
                       ("Provision:Data", [("Provision:EASProvisionDoc", _policy_doc(self.given))])]
                return Response(200, headers, _wbxml.encode(("Provision:Provision", [
                    ("Provision:Status", "1"), ("Provision:Policies", [("Provision:Policy", pol)])])), 0.001)
            return Response(200, headers, prov(key=self.temp[2:], data=False), 0.001)
        if command in ("Sync", "ItemOperations"):
            self._check(command, tree, self.policies[policy_key])
        if command == "FolderSync":
            return Response(200, headers, _wbxml.encode(("FolderHierarchy:FolderSync", [
                ("FolderHierarchy:Status", "1"), ("FolderHierarchy:SyncKey", "1"), ("FolderHierarchy:Changes", [
                    ("FolderHierarchy:Count", "2"),
                    ("FolderHierarchy:Add", [("FolderHierarchy:ServerId", "1"), ("FolderHierarchy:ParentId", "0"),
                                             ("FolderHierarchy:DisplayName", "Inbox"), ("FolderHierarchy:Type", "2")]),
                    ("FolderHierarchy:Add", [("FolderHierarchy:ServerId", "7"), ("FolderHierarchy:ParentId", "0"),
                                             ("FolderHierarchy:DisplayName", "Calendar"),
                                             ("FolderHierarchy:Type", "8")])])])), 0.001)
        if command == "ItemOperations" and self.given is self.policies["F1"]:
            self.refused_fetches += findtext(tree, "ItemOperations:Fetch/AirSyncBase:FileReference") is not None
            self.given = self.policies["F2"]  # the admin changed the policy while mail was being opened
            return Response(449, {}, b"", 0.001)
        if command == "Sync":
            self.syncs += 1
            if self.syncs == 6 and self.given is self.policies["F1"]:
                self.given = self.policies["F2"]  # the admin changed the policy: 449 (12.1 style)
                return Response(449, {}, b"", 0.001)
            key = findtext(tree, "AirSync:Collections/AirSync:Collection/AirSync:SyncKey")
            cid = findtext(tree, "AirSync:Collections/AirSync:Collection/AirSync:CollectionId")
            kids = [("AirSync:SyncKey", str(int(key) + 1)), ("AirSync:CollectionId", cid), ("AirSync:Status", "1")]
            if key == "1" and cid == "1":
                kids.append(("AirSync:Commands", self._items()))
            return Response(200, headers, _wbxml.encode(("AirSync:Sync", [
                ("AirSync:Collections", [("AirSync:Collection", kids)])])), 0.001)
        if command == "ItemOperations":
            return Response(200, headers, _wbxml.encode(("ItemOperations:ItemOperations", [
                ("ItemOperations:Status", "1"), ("ItemOperations:Response", [
                    ("ItemOperations:Fetch", [("ItemOperations:Status", "1")])])])), 0.001)
        return Response(200, headers, _wbxml.encode(("Settings:Settings", [("Settings:Status", "1")])), 0.001)


@settings(max_examples=int(__import__("os").environ.get("EASLOAD_PROPERTY_EXAMPLES", "150")), deadline=None)
@given(POLICIES, POLICIES, st.lists(st.sampled_from([0, 2000, 3000, 3001, 99_999, 100_001]), min_size=1, max_size=6),
       st.booleans(), st.sampled_from([0, 100, 5000]), st.sampled_from(policies.EMAIL_FILTERS),
       st.sampled_from(policies.CALENDAR_FILTERS), st.sampled_from(["12.1", "14.1", "16.1"]))
def test_sync_and_itemoperations_stay_within_the_policy_in_force(first, second, sizes, html, truncation, email,
                                                                   calendar, version):
    server = PolicyServer(first, second, sizes)
    load = RunLoad(LoadConfig(think_time=0.0, mode="poll", html_bodies=html, body_truncation=truncation,
                              email_filter=email, calendar_filter=calendar, sync_calendar=True, open_attachments=1.0,
                              open_truncated=1.0))
    profile = PROFILES["modern"]
    stats = Stats()
    dev = InstantDevice(0, "user0", "pw", versions.get(version), profile, identity(1, 0, 0, profile),
                        "https://t/Microsoft-Server-ActiveSync", load, stats, random.Random(1), origin=(1, 0, 0))

    async def go():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.3
        while dev.alive and server.syncs < 14 and loop.time() < deadline:
            await dev.run(server, min(deadline, loop.time() + 0.05))

    asyncio.run(go())
    assert server.violations == []
    assert server.checked["Sync"] >= 4  # Syncs with options were sent and checked, under both policies
    assert server.given is server.policies["F2"] and dev.prov.policy_key == "F2"
    opened = stats.policy_effects
    # every opened attachment was either fetched once (under the policy in force) or skipped by policy
    assert server.checked["attachment"] - server.refused_fetches == opened[policies.FETCH]
    assert sum(opened[k] for k in (policies.FETCH, policies.SKIP_DISABLED, policies.SKIP_TOO_LARGE)) == len(sizes)
