"""Device capability profiles (named data) and deterministic device identities.

An identity is derived from (scenario seed, user index, slot) only, so repeated
runs reuse the same DeviceIds and partnerships instead of exhausting the
mailbox's device limit (status 177; docs/protocol-notes.md, Partnerships per mailbox and 177).
"""

import hashlib
from dataclasses import dataclass

from loadgen.eas.policy import Capabilities


@dataclass(frozen=True)
class Profile:
    name: str
    caps: Capabilities
    device_type: str
    model: str
    os: str
    user_agent: str
    operator: str = "ContosoTelecom"
    language: str = "English"


PROFILES = {
    "modern": Profile(
        "modern", Capabilities(), "SmartPhone", "Contoso X12", "Contoso Phone 12.4.1", "ContosoPhone/12.4",
    ),
    "legacy": Profile(
        "legacy", Capabilities(device_encryption=False, storage_card=True, storage_card_encryption=False,
                               internet_sharing=False),
        "PocketPC", "Contoso WM65", "Windows Mobile 6.5", "MSFT-PPC/5.2.5082",
    ),
    "no_encryption": Profile(
        "no_encryption", Capabilities(device_encryption=False), "Android", "Fabrikam A3", "Android 9.0.0",
        "Android-EAS/9.0",
    ),
    "no_password": Profile(
        "no_password", Capabilities(password=False), "Tablet", "Fabrikam Tab 2", "FabrikamOS 3.1", "FabTab/3.1",
    ),
    "non_provisionable": Profile(
        "non_provisionable", Capabilities(provisionable=False), "DesktopClient", "Woodgrove Mail",
        "Linux 6.1", "WoodgroveMail/1.0",
    ),
    "fumbler": Profile(
        "fumbler", Capabilities(failed_unlocks=12), "SmartPhone", "Contoso X9", "Contoso Phone 11.2.0",
        "ContosoPhone/11.2",
    ),
    "externally_managed": Profile(
        "externally_managed", Capabilities(externally_managed=True), "iPhone", "Contoso MDM Phone",
        "iOS 17.1", "Apple-iPhone/2101.1",
    ),
}


def _luhn_digit(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # every second digit from the right of the payload
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number):
    return number.isdigit() and _luhn_digit(number[:-1]) == number[-1]


@dataclass(frozen=True, slots=True)
class Identity:
    """A device's ids; its DeviceInformation (:attr:`info`) is built when a request needs it -- the
    initial Provision or a Settings, once or twice in a device's life -- instead of a dict of nine
    strings held by every device for the whole run."""

    device_id: str
    device_type: str
    imei: str
    phone: str
    user_index: int
    slot: int
    profile: object  # the shared Profile: Model, OS, language, operator, User-Agent

    @property
    def info(self):
        """DeviceInformation fields (Settings:Set, MS-ASCMD 2.2.3.45), a new dict each time."""
        profile = self.profile
        return {
            "Model": profile.model,
            "IMEI": self.imei,
            "FriendlyName": "%s %d-%d" % (profile.model, self.user_index, self.slot),
            "OS": profile.os,
            "OSLanguage": profile.language,
            "PhoneNumber": self.phone,
            "MobileOperator": profile.operator,
            # matches the User-Agent header (docs/protocol-notes.md, ABQ and DeviceInformation)
            "UserAgent": profile.user_agent,
        }

    def device_information(self):
        """:attr:`info` as a callable (loadgen/eas/provisioning.py Provisioner takes one)."""
        return self.info


def identity(seed, user_index, slot, profile, generation=0):
    """The device in ``slot`` of user ``user_index``; ``generation`` counts factory resets
    (a wiped device that re-enrols comes back as a new device with new ids)."""
    key = "%d/%d/%d" % (seed, user_index, slot) + ("/%d" % generation if generation else "")
    digest = hashlib.sha256(key.encode()).hexdigest()
    device_id = digest[:32].upper()
    payload = "35" + str(int(digest[32:48], 16))[-12:].zfill(12)  # 14 digits, TAC-like prefix
    imei = payload + _luhn_digit(payload)
    phone = "+1555%07d" % (int(digest[48:56], 16) % 10_000_000)
    return Identity(device_id, profile.device_type, imei, phone, user_index, slot, profile)
