"""EASProvisionDoc: the policy model, and a device's compliance with it.

The compliance rules are those of docs/protocol-notes.md, "Which policies a device may ignore" (from its
source [A] and MS-ASPROV 2.2.2.x):

* policies a device may ignore when it lacks the feature (AllowBluetooth,
  AllowCamera, AllowDesktopSync, AllowInternetSharing, AllowIrDA,
  AllowRemoteDesktop, AllowStorageCard, AllowTextMessaging, AllowWifi,
  RequireStorageCardEncryption without removable storage, PasswordRecoveryEnabled);
* password sub-policies are ignored when DevicePasswordEnabled is 0, and
  MinDevicePasswordComplexCharacters when AlphanumericDevicePasswordRequired is 0;
* a device that has a feature it cannot disable reports partial success;
* a required feature the device lacks (e.g. RequireDeviceEncryption) gives
  partial success ("or failure, depending on the status of the other policies");
* DevicePasswordEnabled that cannot be enforced gives failure (3) whatever else;
* a device provisioned by a third party answers 4 (externally managed).
"""

from dataclasses import dataclass, field

from loadgen.eas.status import AckStatus

#: The example policy of the server Provision response in docs/protocol-notes.md's source [A], in order
#: (its elements: MS-ASPROV 2.2.2.28 EASProvisionDoc).
SEED_POLICY = (
    ("DevicePasswordEnabled", "1"),
    ("AlphanumericDevicePasswordRequired", "0"),
    ("PasswordRecoveryEnabled", "0"),
    ("RequireStorageCardEncryption", "0"),
    ("AttachmentsEnabled", "1"),
    ("MinDevicePasswordLength", "4"),
    ("MaxInactivityTimeDeviceLock", "900"),
    ("MaxDevicePasswordFailedAttempts", "8"),
    ("MaxAttachmentSize", None),
    ("AllowSimpleDevicePassword", "1"),
    ("DevicePasswordExpiration", None),
    ("DevicePasswordHistory", "0"),
    ("AllowStorageCard", "1"),
    ("AllowCamera", "1"),
    ("RequireDeviceEncryption", "0"),
    ("AllowUnsignedApplications", "1"),
    ("AllowUnsignedInstallationPackages", "1"),
    ("MinDevicePasswordComplexCharacters", "1"),
    ("AllowWiFi", "1"),
    ("AllowTextMessaging", "1"),
    ("AllowPOPIMAPEmail", "1"),
    ("AllowBluetooth", "2"),
    ("AllowIrDA", "1"),
    ("RequireManualSyncWhenRoaming", "0"),
    ("AllowDesktopSync", "1"),
    ("MaxCalendarAgeFilter", "0"),
    ("AllowHTMLEmail", "1"),
    ("MaxEmailAgeFilter", "0"),
    ("MaxEmailBodyTruncationSize", "-1"),
    ("MaxEmailHTMLBodyTruncationSize", "-1"),
    ("RequireSignedSMIMEMessages", "0"),
    ("RequireEncryptedSMIMEMessages", "0"),
    ("RequireSignedSMIMEAlgorithm", "0"),
    ("RequireEncryptionSMIMEAlgorithm", "0"),
    ("AllowSMIMEEncryptionAlgorithmNegotiation", "2"),
    ("AllowSMIMESoftCerts", "1"),
    ("AllowBrowser", "1"),
    ("AllowConsumerEmail", "1"),
    ("AllowRemoteDesktop", "1"),
    ("AllowInternetSharing", "1"),
    ("UnapprovedInROMApplicationList", None),
    ("ApprovedApplicationList", None),
)

POLICY_NAMES = tuple(name for name, _ in SEED_POLICY)

# Allow* policies that may be ignored when the device lacks the feature (docs/protocol-notes.md, Which policies
# a device may ignore),
# mapped to the capability that says whether the device has it.
_FEATURE_OF = {
    "AllowBluetooth": "bluetooth",
    "AllowCamera": "camera",
    "AllowDesktopSync": "desktop_sync",
    "AllowInternetSharing": "internet_sharing",
    "AllowIrDA": "irda",
    "AllowRemoteDesktop": "remote_desktop",
    "AllowStorageCard": "storage_card",
    "AllowTextMessaging": "text_messaging",
    "AllowWiFi": "wifi",
}

_PASSWORD_SUB_POLICIES = frozenset({
    "AllowSimpleDevicePassword",
    "AlphanumericDevicePasswordRequired",
    "DevicePasswordExpiration",
    "DevicePasswordHistory",
    "MinDevicePasswordComplexCharacters",
    "MaxDevicePasswordFailedAttempts",
    "MinDevicePasswordLength",
    "PasswordRecoveryEnabled",
})


@dataclass(frozen=True)
class Capabilities:
    """What a simulated device can do and enforce (part of its profile)."""

    provisionable: bool = True  # sends X-MS-PolicyKey and asks for the policy
    externally_managed: bool = False  # answers 4
    password: bool = True  # can enforce a device password
    alphanumeric_password: bool = True  # False: numeric PIN only
    device_encryption: bool = True
    storage_card_encryption: bool = True
    # features present on the device
    bluetooth: bool = True
    camera: bool = True
    desktop_sync: bool = False
    internet_sharing: bool = True
    irda: bool = False
    remote_desktop: bool = False
    storage_card: bool = False
    text_messaging: bool = True
    wifi: bool = True
    # features present that the device cannot switch off when the policy says 0
    cannot_disable: frozenset = field(default_factory=frozenset)
    remote_wipe_fails: bool = False  # acknowledges a wipe with 2
    initial_password: str = "2580"  # the user's password before any policy (simulated, not a secret)
    failed_unlocks: int = 0  # consecutive failed unlock attempts the user makes once (0: never)


@dataclass(frozen=True)
class Compliance:
    status: AckStatus
    unmet: tuple  # names of the policies the device could not apply


def _is_on(value):
    return value not in (None, "", "0")


def evaluate(policy, caps):
    """The acknowledgement status a device with ``caps`` sends for ``policy``.

    ``policy`` maps setting names to text values (None for empty elements).
    """
    if caps.externally_managed:
        return Compliance(AckStatus.EXTERNALLY_MANAGED, ())
    unmet = []
    password_on = _is_on(policy.get("DevicePasswordEnabled"))
    if password_on and not caps.password:
        # "must return failure ... regardless of whether it can enforce any other policy"
        return Compliance(AckStatus.FAILURE, ("DevicePasswordEnabled",))
    for name, value in policy.items():
        if name in _PASSWORD_SUB_POLICIES and not password_on:
            continue  # ignored when DevicePasswordEnabled is 0
        feature = _FEATURE_OF.get(name)
        if feature is not None:
            # Allow*: 0 forbids (AllowBluetooth 1: hands-free only); absent features are ignored
            limit = "2" if name == "AllowBluetooth" else "1"
            if value is not None and value != limit and getattr(caps, feature) and feature in caps.cannot_disable:
                unmet.append(name)
            continue
        if name == "AlphanumericDevicePasswordRequired":
            if _is_on(value) and not caps.alphanumeric_password:
                unmet.append(name)
        elif name == "MinDevicePasswordComplexCharacters":
            # may be ignored when AlphanumericDevicePasswordRequired is false
            continue
        elif name == "RequireDeviceEncryption":
            if _is_on(value) and not caps.device_encryption:
                unmet.append(name)
        elif name == "RequireStorageCardEncryption":
            # ignored without removable storage
            if _is_on(value) and caps.storage_card and not caps.storage_card_encryption:
                unmet.append(name)
    if unmet:
        return Compliance(AckStatus.PARTIAL_SUCCESS, tuple(unmet))
    return Compliance(AckStatus.SUCCESS, ())


@dataclass(frozen=True)
class AppliedPolicy:
    """The rules a device lives by after acknowledging a policy (for reports)."""

    password_required: bool
    min_password_length: int
    alphanumeric: bool
    max_failed_attempts: int  # 0: no wipe threshold
    max_inactivity_lock_s: int  # 0: none
    max_body_truncation_kb: int  # -1: unlimited
    max_html_truncation_kb: int
    allow_html: bool
    attachments: bool
    min_complex_chars: int = 0
    allow_simple: bool = True
    history: int = 0
    max_email_age_filter: int = 0  # MS-ASPROV 2.2.2.33: 0 sync all, 1..5 (FilterType values)
    max_calendar_age_filter: int = 0  # MS-ASPROV 2.2.2.32: 0 all, 4..7
    max_attachment_size: int | None = None  # bytes (MS-ASPROV 2.2.2.30); None: empty element, no limit

    @property
    def code_word_frequency(self):
        """Failed attempts after which the device asks for a code word (half the wipe threshold;
        docs/protocol-notes.md, Policy storage and refresh)."""
        return self.max_failed_attempts // 2


def _int(value, default):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def applied(policy):
    return AppliedPolicy(
        password_required=_is_on(policy.get("DevicePasswordEnabled")),
        min_password_length=_int(policy.get("MinDevicePasswordLength"), 0),
        alphanumeric=_is_on(policy.get("AlphanumericDevicePasswordRequired")),
        max_failed_attempts=_int(policy.get("MaxDevicePasswordFailedAttempts"), 0),
        max_inactivity_lock_s=_int(policy.get("MaxInactivityTimeDeviceLock"), 0),
        max_body_truncation_kb=_int(policy.get("MaxEmailBodyTruncationSize"), -1),
        max_html_truncation_kb=_int(policy.get("MaxEmailHTMLBodyTruncationSize"), -1),
        allow_html=policy.get("AllowHTMLEmail", "1") != "0",
        attachments=policy.get("AttachmentsEnabled", "1") != "0",
        min_complex_chars=_int(policy.get("MinDevicePasswordComplexCharacters"), 0),
        allow_simple=policy.get("AllowSimpleDevicePassword", "1") != "0",
        history=_int(policy.get("DevicePasswordHistory"), 0),
        max_email_age_filter=_int(policy.get("MaxEmailAgeFilter"), 0),
        max_calendar_age_filter=_int(policy.get("MaxCalendarAgeFilter"), 0),
        max_attachment_size=_int(policy.get("MaxAttachmentSize"), None),
    )


def policy_from_tree(doc):
    """Settings of an ``Provision:EASProvisionDoc`` element as a name -> text dict."""
    result = {}
    content = doc[1]
    if type(content) is not list:
        return result
    for tag, value in content:
        name = tag.partition(":")[2]
        if type(value) is list:  # application lists: keep the hashes
            result[name] = ",".join(v for _t, v in value if type(v) is str) or None
        elif value == []:
            result[name] = None
        else:
            result[name] = value
    return result


def policy_to_tree(settings):
    """An ``Provision:EASProvisionDoc`` element for the settings (server side)."""
    children = []
    for name, value in settings.items():
        if name in ("UnapprovedInROMApplicationList", "ApprovedApplicationList"):
            children.append(("Provision:" + name, None))
        elif value is None:
            children.append(("Provision:" + name, None))
        else:
            children.append(("Provision:" + name, str(value)))
    return ("Provision:EASProvisionDoc", children)


# --------------------------------------------------------------------------- living by the policy
#
# What the device asks for in Sync and ItemOperations, decided from the user's
# preferences (scenario) and the policy the device acknowledged.  Seed 000: "The
# client must not allow the user to choose a value larger than this setting"
# (MaxEmailBodyTruncationSize, MaxEmailHTMLBodyTruncationSize); the same holds for the
# age filters, AllowHTMLEmail and the attachment policies.

#: FilterType values (MS-ASCMD 2.2.3.70.2) by name; 0 is "no filter" (sync all).
FILTER_NAMES = {
    "all": 0, "1 day": 1, "3 days": 2, "1 week": 3, "2 weeks": 4, "1 month": 5, "3 months": 6, "6 months": 7,
}
#: FilterType values valid for e-mail (MaxEmailAgeFilter, MS-ASPROV 2.2.2.33) and for the
#: calendar (MaxCalendarAgeFilter, MS-ASPROV 2.2.2.32; MS-ASCMD 2.2.3.70.2: 1..3 are not
#: calendar values).  In both, a larger value is a longer (older) window.
_FILTER_LOOKUP = {name.rstrip("s"): v for name, v in FILTER_NAMES.items()}
EMAIL_FILTERS = (0, 1, 2, 3, 4, 5)
CALENDAR_FILTERS = (0, 4, 5, 6, 7)

# bounded labels for reports and metrics (report.Stats.policy_effects)
EFFECT_EMAIL_FILTER = "email_filter_clamped"
EFFECT_CALENDAR_FILTER = "calendar_filter_clamped"
EFFECT_TRUNCATION = "truncation_clamped"
EFFECT_HTML = "html_downgraded"
FETCH = "attachment_fetch"  # the user opened an attachment and the policy lets the device fetch it
SKIP_DISABLED = "attachment_skip_disabled"  # ... AttachmentsEnabled is 0
SKIP_TOO_LARGE = "attachment_skip_too_large"  # ... EstimatedDataSize above MaxAttachmentSize


def parse_filter(value, calendar=False):
    """A scenario's filter preference -- a FilterType number or a name such as "1 month" --
    as a FilterType valid for e-mail (or the calendar); ValueError with the valid choices."""
    valid = CALENDAR_FILTERS if calendar else EMAIL_FILTERS
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str):
        number = _FILTER_LOOKUP.get(" ".join(value.lower().split()).rstrip("s"))  # "2 week" = "2 weeks"
    else:
        number = None
    if number not in valid:
        names = ", ".join('"%s" (%d)' % (n, v) for n, v in FILTER_NAMES.items() if v in valid)
        raise ValueError("must be one of %s, not %r" % (names, value))
    return number


def clamp_filter(preference, limit, calendar=False):
    """The FilterType a device sends: the user's ``preference``, never older than the policy's
    ``limit`` (MaxEmailAgeFilter / MaxCalendarAgeFilter; 0 = no limit).

    A preference of 0 ("all") under a limit becomes the limit.  A limit that is not a valid
    value (a calendar limit of 1..3, which no calendar FilterType can express) is met by the
    narrowest valid window; an unknown larger limit is taken as no narrower than the widest.
    """
    valid = CALENDAR_FILTERS if calendar else EMAIL_FILTERS
    if limit is None or limit <= 0:
        return preference
    if limit not in valid:
        allowed = [v for v in valid if 0 < v <= limit]
        limit = max(allowed) if allowed else min(v for v in valid if v > 0)
    if preference == 0 or preference > limit:
        return limit
    return preference


@dataclass(frozen=True)
class SyncPreferences:
    """What a device asks for, after the policy: body type and truncation (bytes; None = the
    whole body) for Sync, and the FilterType of the e-mail and calendar collections."""

    body_type: int
    truncation: int | None
    email_filter: int
    calendar_filter: int
    effects: tuple = ()  # EFFECT_* labels: the preferences the policy changed


def sync_preferences(applied_policy, html=False, truncation=None, email_filter=0, calendar_filter=0):
    """The user's preferences clamped to ``applied_policy`` (None: no policy, taken as they are).

    * HTML (BodyPreference Type 2) only when AllowHTMLEmail is not 0, else plain text (Type 1);
    * TruncationSize never above MaxEmailHTMLBodyTruncationSize (Type 2) or
      MaxEmailBodyTruncationSize (Type 1), both in KB (-1: no limit, 0: headers only);
    * FilterType never older than MaxEmailAgeFilter / MaxCalendarAgeFilter.
    """
    body_type = 2 if html else 1
    if applied_policy is None:
        return SyncPreferences(body_type, truncation, email_filter, calendar_filter)
    effects = []
    if body_type == 2 and not applied_policy.allow_html:
        body_type = 1
        effects.append(EFFECT_HTML)
    limit_kb = applied_policy.max_html_truncation_kb if body_type == 2 else applied_policy.max_body_truncation_kb
    if limit_kb >= 0 and (truncation is None or truncation > limit_kb * 1024):
        truncation = limit_kb * 1024
        effects.append(EFFECT_TRUNCATION)
    email = clamp_filter(email_filter, applied_policy.max_email_age_filter)
    if email != email_filter:
        effects.append(EFFECT_EMAIL_FILTER)
    calendar = clamp_filter(calendar_filter, applied_policy.max_calendar_age_filter, calendar=True)
    if calendar != calendar_filter:
        effects.append(EFFECT_CALENDAR_FILTER)
    return SyncPreferences(body_type, truncation, email, calendar, tuple(effects))


def attachment_decision(applied_policy, estimated_size):
    """May the device download an attachment of ``estimated_size`` bytes (AirSyncBase
    EstimatedDataSize)?  FETCH, or why not: AttachmentsEnabled 0, or above
    MaxAttachmentSize (bytes, MS-ASPROV 2.2.2.30).  An unknown size under a size limit is
    not fetched (the device cannot tell that it is within the limit)."""
    if applied_policy is None:
        return FETCH
    if not applied_policy.attachments:
        return SKIP_DISABLED
    limit = applied_policy.max_attachment_size
    if limit is not None and (estimated_size is None or estimated_size > limit):
        return SKIP_TOO_LARGE
    return FETCH
