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
from loadgen import device as device_mod
from loadgen.eas import versions
from loadgen.profiles import PROFILES, identity
from loadgen.report import Stats
from loadgen.scenario import LoadConfig
from loadgen.transport import Response

VALID_STATES = {device_mod.NEW, device_mod.PROVISIONING, device_mod.PROVISIONED, device_mod.NO_POLICY,
                device_mod.UNPROVISIONED, device_mod.REFUSED, device_mod.BLOCKED, device_mod.WIPED,
                device_mod.THROTTLED, device_mod.FAILED, device_mod.AUTH_FAILED, device_mod.QUARANTINED}


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
    load = LoadConfig(think_time=0.0, retry_interval=3600.0, backoff=5.0, reenrol_after=1.0)
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
    if dev.prov.policy_key is not None and dev.state == device_mod.PROVISIONED and not dev.prov.policy_key == "0":
        assert dev.prov.policy_key in server.final_keys


def test_reprovision_loop_stops_and_says_so():
    # the server keeps answering 449 right after every successful provisioning (seed 000, 12.1 note)
    script = ["policy", "ack_ok", "ok", "ok"] + ["http_449", "policy", "ack_ok"] * 4 + ["http_449", "policy", "ack_ok"]
    server = HostileServer(script)
    profile = PROFILES["modern"]
    load = LoadConfig(think_time=0.0, retry_interval=3600.0, mode="poll")
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
