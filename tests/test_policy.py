"""Policy compliance, following the rules of seed 000 exactly."""

import pytest

from loadgen.eas.policy import SEED_POLICY, Capabilities, applied, evaluate
from loadgen.eas.status import AckStatus
from loadgen.profiles import PROFILES, identity, luhn_valid

SEED = dict(SEED_POLICY)


def with_(**kw):
    p = dict(SEED)
    p.update({k: str(v) for k, v in kw.items()})
    return p


def test_capable_device_succeeds_on_seed_policy():
    assert evaluate(SEED, Capabilities()).status is AckStatus.SUCCESS


def test_password_not_enforceable_is_failure_whatever_else():
    c = evaluate(with_(RequireDeviceEncryption=1), Capabilities(password=False, device_encryption=False))
    assert c.status is AckStatus.FAILURE


def test_password_sub_policies_ignored_when_password_disabled():
    p = with_(DevicePasswordEnabled=0, AlphanumericDevicePasswordRequired=1)
    assert evaluate(p, Capabilities(password=False, alphanumeric_password=False)).status is AckStatus.SUCCESS


def test_required_feature_missing_is_partial_success():
    c = evaluate(with_(RequireDeviceEncryption=1), Capabilities(device_encryption=False))
    assert c.status is AckStatus.PARTIAL_SUCCESS and c.unmet == ("RequireDeviceEncryption",)


def test_numeric_pin_only_fails_alphanumeric_policy():
    c = evaluate(with_(AlphanumericDevicePasswordRequired=1), Capabilities(alphanumeric_password=False))
    assert c.status is AckStatus.PARTIAL_SUCCESS


@pytest.mark.parametrize("policy,feature", [("AllowBluetooth", "bluetooth"), ("AllowCamera", "camera"),
                                            ("AllowWiFi", "wifi"), ("AllowStorageCard", "storage_card")])
def test_allow_policies_ignored_without_the_feature(policy, feature):
    p = with_(**{policy: 0})
    caps = Capabilities(**{feature: False, "cannot_disable": frozenset({feature})})
    assert evaluate(p, caps).status is AckStatus.SUCCESS
    caps = Capabilities(**{feature: True, "cannot_disable": frozenset({feature})})
    assert evaluate(p, caps).status is AckStatus.PARTIAL_SUCCESS
    assert evaluate(p, Capabilities(**{feature: True})).status is AckStatus.SUCCESS  # can disable it


def test_storage_card_encryption_ignored_without_storage():
    p = with_(RequireStorageCardEncryption=1)
    assert evaluate(p, Capabilities(storage_card=False, storage_card_encryption=False)).status is AckStatus.SUCCESS
    assert evaluate(p, Capabilities(storage_card=True, storage_card_encryption=False)).status is AckStatus.PARTIAL_SUCCESS


def test_externally_managed_answers_4():
    assert evaluate(SEED, Capabilities(externally_managed=True)).status is AckStatus.EXTERNALLY_MANAGED


def test_applied_policy_and_code_word_frequency():
    a = applied(SEED)
    assert a.password_required and a.min_password_length == 4 and a.max_failed_attempts == 8
    assert a.code_word_frequency == 4  # half the wipe threshold (seed 003)
    assert a.max_body_truncation_kb == -1


def test_identity_is_deterministic_and_imei_is_luhn_valid():
    prof = PROFILES["modern"]
    a = identity(7, 3, 1, prof)
    assert a == identity(7, 3, 1, prof)
    assert a.device_id != identity(7, 3, 2, prof).device_id
    assert len(a.imei) == 15 and luhn_valid(a.imei)
    assert a.info["UserAgent"] == prof.user_agent
    assert luhn_valid("490154203237518") and not luhn_valid("490154203237519")


def test_password_rules_and_replacement():
    from loadgen.eas.password import Password, replace, unlock_attempts, violations

    strict = applied(with_(MinDevicePasswordLength=8, AlphanumericDevicePasswordRequired=1,
                           MinDevicePasswordComplexCharacters=3, AllowSimpleDevicePassword=0, DevicePasswordHistory=2))
    assert violations(Password("1234"), strict) == ("too_short", "not_alphanumeric", "not_complex", "simple")
    assert violations(Password("1111"), applied(with_(AllowSimpleDevicePassword=0))) == ("simple",)
    assert violations(Password("2580"), applied(SEED)) == ()
    assert violations(None, applied(SEED)) == ("no_password",)
    assert violations(Password("1"), applied(with_(DevicePasswordEnabled=0))) == ()
    new = replace(Password("1234"), strict, (), 1)
    assert violations(new, strict) == ()
    other = replace(new, strict, (new,), 1)
    assert other != new and violations(other, strict) == ()  # not in the history
    assert unlock_attempts(3, 8) == (False, False) and unlock_attempts(4, 8) == (True, False)
    assert unlock_attempts(8, 8) == (True, True) and unlock_attempts(20, 0) == (False, False)
