"""What differs between EAS protocol versions, as data.

Sources (see docs/protocol-notes.md, Provisioning by version):
* PolicyType: MS-ASPROV 2.2.2.43 -- "MS-WAP-Provisioning-XML" for 2.5,
  "MS-EAS-Provisioning-WBXML" for 12.0 and later.
* DeviceInformation inside the initial Provision only for 14.1/16.0/16.1
  (MS-ASPROV 2.2.2.53); through the Settings command for 12.1/14.0
  (MS-ASCMD 2.2.3.45; Settings before the first FolderSync: docs/protocol-notes.md source [A]
  and/protocol-notes.md, Provisioning by version);
  the Settings command ... before sending the first FolderSync"); 12.0 has no
  DeviceInformation.
* Re-provision signal: bare HTTP 449 below 14.0; from 14.0 HTTP 200 with the
  status in the command's root, limited to the codes the version knows
  (Exchange's AirSyncResponse.SetErrorResponse: 14.0 up to 163, 14.1 up to 177).
"""

from dataclasses import dataclass

POLICY_TYPE_WBXML = "MS-EAS-Provisioning-WBXML"
POLICY_TYPE_WAP = "MS-WAP-Provisioning-XML"  # 2.5: recognised, not simulated


@dataclass(frozen=True)
class Version:
    text: str  # as in MS-ASProtocolVersion
    number: int  # 121 for "12.1"
    policy_type: str
    device_info_in_provision: bool
    device_info_via_settings: bool
    in_band_status: bool  # 14.0+: HTTP 200 + Status N in the root instead of 449
    max_in_band_status: int  # highest common status the version carries in-band
    ping_policy_checked: bool  # Exchange checks the policy key on Ping from 14.0


VERSIONS = {
    "2.5": Version("2.5", 25, POLICY_TYPE_WAP, False, False, False, 0, False),
    "12.0": Version("12.0", 120, POLICY_TYPE_WBXML, False, False, False, 0, False),
    "12.1": Version("12.1", 121, POLICY_TYPE_WBXML, False, True, False, 0, False),
    "14.0": Version("14.0", 140, POLICY_TYPE_WBXML, False, True, True, 163, True),
    "14.1": Version("14.1", 141, POLICY_TYPE_WBXML, True, False, True, 177, True),
    "16.0": Version("16.0", 160, POLICY_TYPE_WBXML, True, False, True, 177, True),
    "16.1": Version("16.1", 161, POLICY_TYPE_WBXML, True, False, True, 177, True),
}

#: Versions a simulated device may speak (2.5 is recognised only).
SIMULATED = ("12.0", "12.1", "14.0", "14.1", "16.0", "16.1")


def get(text):
    """The Version for "14.1" etc.; ValueError naming the supported ones."""
    try:
        return VERSIONS[text]
    except KeyError:
        raise ValueError("unknown EAS protocol version %r (known: %s)" % (text, ", ".join(VERSIONS))) from None
