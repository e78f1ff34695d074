"""EASProvisionDoc: the policy model, and a device's compliance with it.

The compliance rules are those of seed 000 ("Provisioning, Policies, Remote
Wipe, and ABQ"):

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

#: The seed's example policy (seed 000, server provisioning response), in order.
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

# Allow* policies that may be ignored when the device lacks the feature (seed 000),
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

    @property
    def code_word_frequency(self):
        """Failed attempts after which the device asks for a code word (seed 003)."""
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
