"""Policy compliance, following the rules in docs/protocol-notes.md, Which policies a device may ignore."""

import pytest

from loadgen.eas.policy import SEED_POLICY, Capabilities, applied, evaluate
from loadgen.eas.status import AckStatus
from loadgen.device.profiles import PROFILES, identity, luhn_valid

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
    assert a.code_word_frequency == 4  # half the wipe threshold (docs/protocol-notes.md, Policy storage and refresh)
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


# --------------------------------------------------------------------------- living by the policy

from loadgen.eas import policy as P  # noqa: E402

# the window each FilterType value stands for, in days (MS-ASCMD 2.2.3.70.2; 0 = everything):
# an oracle independent of the implementation's "larger value, longer window" shortcut
_DAYS = {0: float("inf"), 1: 1, 2: 3, 3: 7, 4: 14, 5: 31, 6: 92, 7: 183}


@pytest.mark.parametrize("calendar", [False, True], ids=["email", "calendar"])
def test_filter_clamp_over_all_combinations(calendar):
    # MS-ASPROV 2.2.2.33 MaxEmailAgeFilter 0..5, 2.2.2.32 MaxCalendarAgeFilter 0, 4..7; 0 = no limit
    valid = P.CALENDAR_FILTERS if calendar else P.EMAIL_FILTERS
    assert valid == ((0, 4, 5, 6, 7) if calendar else (0, 1, 2, 3, 4, 5))
    for pref in valid:
        for limit in valid:
            got = P.clamp_filter(pref, limit, calendar)
            assert got in valid
            if limit == 0:
                assert got == pref  # no limit: the user's choice stands
            else:
                # never older than the policy allows, and no narrower than the user asked
                assert _DAYS[got] == min(_DAYS[pref], _DAYS[limit]), (pref, limit, got)


def test_calendar_limit_the_calendar_cannot_express_takes_the_narrowest_window():
    # a calendar limit of 1..3 (1 day .. 1 week) is not a calendar FilterType: 2 weeks is the narrowest
    for limit in (1, 2, 3):
        assert P.clamp_filter(0, limit, calendar=True) == 4
        assert P.clamp_filter(7, limit, calendar=True) == 4
    assert P.clamp_filter(3, 9) == 3 and P.clamp_filter(0, 9) == 5  # unknown wide limit: the widest valid one


def test_filter_preferences_from_the_scenario():
    assert P.parse_filter("1 month") == 5 and P.parse_filter("all") == 0 and P.parse_filter(3) == 3
    assert P.parse_filter("2 Week") == 4 and P.parse_filter("6 months", calendar=True) == 7
    for bad, calendar in (("3 months", False), (2, True), (8, False), ("fortnight", False), (True, False), (1.5, False)):
        with pytest.raises(ValueError):
            P.parse_filter(bad, calendar)


def test_applied_policy_reads_filters_and_attachment_limit():
    a = applied(SEED)
    assert (a.max_email_age_filter, a.max_calendar_age_filter, a.max_attachment_size) == (0, 0, None)
    b = applied(with_(MaxEmailAgeFilter=2, MaxCalendarAgeFilter=5, MaxAttachmentSize=50000))
    assert (b.max_email_age_filter, b.max_calendar_age_filter, b.max_attachment_size) == (2, 5, 50000)
    assert applied(dict(SEED, MaxAttachmentSize="")).max_attachment_size is None  # empty: no limit (2.2.2.30)


_TRUNCATION_LIMITS_KB = (-1, 0, 1, 4, 100)
_TRUNCATION_PREFS = (None, 0, 500, 1024, 4096, 200_000)


@pytest.mark.parametrize("allow_html", [True, False])
@pytest.mark.parametrize("html", [True, False])
def test_body_preference_never_above_the_policy(html, allow_html):
    # the user cannot choose a value larger than Max(HTML)BodyTruncationSize (KB; -1 unlimited; MS-ASPROV
    # 2.2.2.34/2.2.2.35)
    for plain_kb in _TRUNCATION_LIMITS_KB:
        for html_kb in _TRUNCATION_LIMITS_KB:
            for pref in _TRUNCATION_PREFS:
                a = applied(with_(AllowHTMLEmail=int(allow_html), MaxEmailBodyTruncationSize=plain_kb,
                                  MaxEmailHTMLBodyTruncationSize=html_kb))
                got = P.sync_preferences(a, html=html, truncation=pref)
                assert got.body_type == (2 if html and allow_html else 1)
                assert (P.EFFECT_HTML in got.effects) == (html and not allow_html)
                limit_kb = html_kb if got.body_type == 2 else plain_kb
                if limit_kb < 0:
                    assert got.truncation == pref and P.EFFECT_TRUNCATION not in got.effects
                else:
                    assert got.truncation is not None and got.truncation <= limit_kb * 1024
                    if pref is not None and pref <= limit_kb * 1024:
                        assert got.truncation == pref and P.EFFECT_TRUNCATION not in got.effects
                    else:
                        assert got.truncation == limit_kb * 1024 and P.EFFECT_TRUNCATION in got.effects


def test_sync_preferences_without_policy_and_filter_effects():
    assert P.sync_preferences(None, html=True, truncation=None, email_filter=0, calendar_filter=0) == \
        P.SyncPreferences(2, None, 0, 0, ())
    got = P.sync_preferences(applied(with_(MaxEmailAgeFilter=3, MaxCalendarAgeFilter=6)), email_filter=5,
                             calendar_filter=0)
    assert (got.email_filter, got.calendar_filter) == (3, 6)
    assert set(got.effects) == {P.EFFECT_EMAIL_FILTER, P.EFFECT_CALENDAR_FILTER}
    got = P.sync_preferences(applied(with_(MaxEmailAgeFilter=3)), email_filter=2)
    assert got.email_filter == 2 and got.effects == ()


def test_attachment_decision_over_all_combinations():
    for enabled in (0, 1):
        for max_size in (None, 0, 1000, 50000):
            policy = with_(AttachmentsEnabled=enabled)
            policy["MaxAttachmentSize"] = None if max_size is None else str(max_size)
            a = applied(policy)
            for size in (None, 0, 999, 1000, 1001, 60000):
                got = P.attachment_decision(a, size)
                if not enabled:
                    assert got == P.SKIP_DISABLED
                elif max_size is not None and (size is None or size > max_size):
                    assert got == P.SKIP_TOO_LARGE
                else:
                    assert got == P.FETCH
    assert P.attachment_decision(None, 10**9) == P.FETCH  # no policy, no limit
