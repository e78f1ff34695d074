"""The sans-I/O provisioning state machine: one test per row of its transition table."""

import pytest

import _wbxml
from _wbxml import find, findtext
from loadgen.eas import versions
from loadgen.eas.policy import Capabilities
from loadgen.eas.provisioning import (
    Blocked, Failed, Kind, Provisioned, Provisioner, Redirect, Refused, Retry, Send, State, Wiped, classify,
)

V141 = versions.get("14.1")
V140 = versions.get("14.0")
V121 = versions.get("12.1")
INFO = {"Model": "Contoso X12", "IMEI": "356938035643809", "UserAgent": "ContosoPhone/12.4"}


def provision_response(status="1", policy_status="1", key="1111", data=True, wipe=None):
    children = [("Provision:Status", status)] if status is not None else []
    if wipe:
        children.append(("Provision:" + wipe, None))
        return ("Provision:Provision", children)
    policy = [("Provision:PolicyType", "MS-EAS-Provisioning-WBXML"), ("Provision:Status", policy_status)]
    if key is not None:
        policy.append(("Provision:PolicyKey", key))
    if data:
        policy.append(("Provision:Data", [("Provision:EASProvisionDoc", [
            ("Provision:DevicePasswordEnabled", "1"), ("Provision:RequireDeviceEncryption", "1"),
            ("Provision:MaxAttachmentSize", None)])]))
    children.append(("Provision:Policies", [("Provision:Policy", policy)]))
    return ("Provision:Provision", children)


def body(send):
    return _wbxml.decode(send.body)


def started(version=V141, caps=None):
    p = Provisioner(version, caps or Capabilities(), INFO, retry_interval=3600)
    first = p.start()
    return p, first


def test_start_sends_initial_with_key_zero_and_device_info_for_141():
    p, first = started()
    assert isinstance(first, Send) and first.command == "Provision" and first.policy_key == "0"
    tree = body(first)
    assert findtext(tree, "Settings:DeviceInformation/Settings:Set/Settings:Model") == "Contoso X12"
    assert findtext(tree, "Provision:Policies/Provision:Policy/Provision:PolicyType") == "MS-EAS-Provisioning-WBXML"
    assert p.state is State.AWAIT_POLICY


@pytest.mark.parametrize("version", ["12.0", "12.1", "14.0"])
def test_initial_has_no_device_info_before_141(version):
    p, first = started(versions.get(version))
    assert find(body(first), "Settings:DeviceInformation") is None


def test_policy_then_ack_with_temporary_key_then_final_key():
    p, first = started()
    ack = p.receive(200, {}, provision_response(key="2488355417"))
    assert isinstance(ack, Send) and ack.phase == "ack" and ack.policy_key == "2488355417"
    policy = find(body(ack), "Provision:Policies/Provision:Policy")
    # MS-ASPROV 2.2.2.41: PolicyKey before Status in the acknowledgement
    assert [t for t, _ in policy[1]] == ["Provision:PolicyType", "Provision:PolicyKey", "Provision:Status"]
    assert findtext(policy, "Provision:Status") == "1"
    assert p.temporary_key == "2488355417" and p.state is State.AWAIT_ACK
    done = p.receive(200, {}, provision_response(key="3942919513", data=False))
    assert done == Provisioned("3942919513", 1)
    assert p.policy_key == "3942919513" and p.state is State.PROVISIONED
    assert p.applied.password_required


def test_missing_provision_status_is_tolerated():
    p, _ = started()
    assert isinstance(p.receive(200, {}, provision_response(status=None)), Send)


def test_compliance_decides_ack_status():
    p, _ = started(caps=Capabilities(device_encryption=False))
    ack = p.receive(200, {}, provision_response())
    assert findtext(body(ack), "Provision:Policies/Provision:Policy/Provision:Status") == "2"
    assert p.unmet == ("RequireDeviceEncryption",)


def test_no_policy_proceeds_without_ack():
    p, _ = started()
    out = p.receive(200, {}, provision_response(policy_status="2", key=None, data=False))
    assert isinstance(out, Provisioned) and out.no_policy and p.state is State.PROVISIONED


@pytest.mark.parametrize("pstatus", ["3", "4"])
def test_unknown_type_or_corrupt_policy_fails(pstatus):
    p, _ = started()
    out = p.receive(200, {}, provision_response(policy_status=pstatus))
    assert isinstance(out, Failed) and p.state is State.FAILED


def test_key_mismatch_restarts_from_zero_bounded():
    p, _ = started()
    p.receive(200, {}, provision_response())
    for _ in range(Provisioner.MAX_RESTARTS):
        again = p.receive(200, {}, provision_response(policy_status="5", data=False))
        assert isinstance(again, Send) and again.phase == "initial" and again.policy_key == "0"
        p.receive(200, {}, provision_response())
    out = p.receive(200, {}, provision_response(policy_status="5", data=False))
    assert isinstance(out, Failed)


def test_status_165_sends_device_information_through_settings_then_retries():
    p, _ = started()
    out = p.receive(200, {}, ("Provision:Provision", [("Provision:Status", "165")]))
    assert isinstance(out, Send) and out.command == "Settings"
    assert findtext(body(out), "Settings:DeviceInformation/Settings:Set/Settings:Model") == "Contoso X12"
    assert p.state is State.AWAIT_DEVINFO
    again = p.receive(200, {}, ("Settings:Settings", [("Settings:Status", "1")]))
    assert isinstance(again, Send) and again.phase == "initial"


@pytest.mark.parametrize("wipe,account_only", [("RemoteWipe", False), ("AccountOnlyRemoteWipe", True)])
@pytest.mark.parametrize("fails,ack", [(False, "1"), (True, "2")])
def test_remote_wipe_acknowledged_then_wiped(wipe, account_only, fails, ack):
    p, _ = started(caps=Capabilities(remote_wipe_fails=fails))
    out = p.receive(200, {}, provision_response(wipe=wipe))
    assert isinstance(out, Send) and out.phase == "wipe_ack"
    assert findtext(body(out), "Provision:%s/Provision:Status" % wipe) == ack
    done = p.receive(200, {}, ("Provision:Provision", [("Provision:Status", "1")]))
    assert done == Wiped(int(ack), account_only)
    assert p.state is State.WIPED and p.policy_key is None


def test_wipe_in_ack_response():
    p, _ = started()
    p.receive(200, {}, provision_response())
    out = p.receive(200, {}, provision_response(wipe="RemoteWipe"))
    assert out.phase == "wipe_ack"


def test_protocol_error_fails_and_server_error_retries():
    p, _ = started()
    assert isinstance(p.receive(200, {}, provision_response(status="2")), Failed)
    p, _ = started()
    out = p.receive(200, {}, provision_response(status="3"))
    assert isinstance(out, Retry) and p.state is State.IDLE
    assert isinstance(p.start(), Send)  # may start again


@pytest.mark.parametrize("code", [139, 141, 145])
@pytest.mark.parametrize("http", [200, 403])
def test_refusals_wait_the_retry_interval(code, http):
    p, _ = started()
    tree = ("Provision:Provision", [("Provision:Status", str(code))])
    out = p.receive(http, {}, tree)
    assert out == Refused(code, 3600.0) and p.state is State.REFUSED


def test_blocked_129():
    p, _ = started()
    assert p.receive(403, {}, ("Provision:Provision", [("Provision:Status", "129")])) == Blocked(129)


def test_503_honours_retry_after_and_reason():
    p, _ = started()
    out = p.receive(503, {"Retry-After": "300", "X-MS-ASThrottle": "OutOfBudgets"}, None)
    assert out == Retry(300.0, "OutOfBudgets")


def test_401_fails_and_451_redirects():
    p, _ = started()
    assert isinstance(p.receive(401, {}, None), Failed) and p.state is State.FAILED
    p, _ = started()
    assert p.receive(451, {"X-MS-Location": "https://other/Microsoft-Server-ActiveSync"}, None) == \
        Redirect("https://other/Microsoft-Server-ActiveSync")
    p, _ = started()
    assert isinstance(p.receive(451, {}, None), Failed)


def test_449_on_provision_restarts_and_unexpected_status_fails():
    p, _ = started()
    assert p.receive(449, {}, None).phase == "initial"
    p, _ = started()
    assert isinstance(p.receive(404, {}, None), Failed)
    p, _ = started()
    assert isinstance(p.receive(200, {}, None), Failed)  # empty body


def test_receive_without_request_and_double_start_are_errors():
    p = Provisioner(V141)
    with pytest.raises(RuntimeError):
        p.receive(200, {}, None)
    p.start()
    with pytest.raises(RuntimeError):
        p.start()


# --------------------------------------------------------------------------- classify


def fs(status):
    return ("FolderHierarchy:FolderSync", [("FolderHierarchy:Status", str(status))])


@pytest.mark.parametrize("code", [140, 142, 143, 144])
def test_classify_in_band_reprovision(code):
    r = classify(200, {}, fs(code))
    assert r.kind is Kind.REPROVISION and r.trigger == str(code)


def test_classify_bare_449_for_12x():
    assert classify(449, {}, None).trigger == "449"


@pytest.mark.parametrize("code", [139, 141, 145])
def test_classify_refusals(code):
    assert classify(403, {}, fs(code)).kind is Kind.REFUSED
    assert classify(200, {}, fs(code)).kind is Kind.REFUSED


def test_classify_other_reactions():
    assert classify(200, {}, fs(1)).kind is Kind.OK
    assert classify(403, {}, fs(129)).kind is Kind.BLOCKED
    assert classify(403, {}, None).kind is Kind.REFUSED
    r = classify(503, {"Retry-After": "7", "X-MS-ASThrottle": "CommandFrequency"}, None)
    assert (r.kind, r.wait, r.detail) == (Kind.THROTTLED, 7.0, "CommandFrequency")
    assert classify(451, {"X-MS-Location": "https://x/"}, None).kind is Kind.REDIRECT
    assert classify(401, {}, None).kind is Kind.AUTH
    assert classify(500, {}, None).kind is Kind.ERROR


def test_policy_document_in_ack_answer_is_a_new_policy_not_a_final_key():
    # found by tests/test_device_property.py: Data only comes with an initial answer (MS-ASPROV 2.2.2.24)
    p, _ = started()
    p.receive(200, {}, provision_response(key="T1"))
    again = p.receive(200, {}, provision_response(key="T2"))
    assert isinstance(again, Send) and again.phase == "ack" and again.policy_key == "T2"
    assert p.policy_key is None and p.state is State.AWAIT_ACK
    assert p.receive(200, {}, provision_response(key="F1", data=False)) == Provisioned("F1", 1)


def test_a_failed_exchange_ends_the_conversation():
    # no answer or a damaged one (h11's send_failed): the conversation is over, start() begins it again
    p, first = started()
    p.failed()
    assert p.state is State.IDLE and p.start() == first
    p.receive(200, {}, provision_response(key="T1"))
    assert p.state is State.AWAIT_ACK
    p.failed()
    assert p.state is State.IDLE and p.start().phase == "initial"
    p.failed()
    p.state = State.PROVISIONED  # outside a conversation: nothing to end
    p.failed()
    assert p.state is State.PROVISIONED
