"""Settings of the embedded target (MS-ASCMD 2.2.1.18): Oof Get/Set per user, DeviceInformation Set,
DevicePassword Set and UserInformation Get.

Request (schema 6.39): ``Settings{[Oof{Get{BodyType} | Set{OofState, [StartTime, EndTime],
OofMessage*{AppliesToInternal | AppliesToExternalKnown | AppliesToExternalUnknown, [Enabled],
[ReplyMessage], [BodyType]}}}], [DevicePassword{Set{Password}}], [DeviceInformation{Set{...}}],
[UserInformation{Get}]}``.
Answer (schema 6.40): ``Settings{Status, [Oof{Status, [Get{OofState, [StartTime, EndTime],
OofMessage*}]}], [DevicePassword{Status}], [DeviceInformation{Status}], [UserInformation{Status,
Get{...}}]}`` -- one element per part of the request, in the schema's order.

* Oof (MS-ASCMD 2.2.3.122): OofState 0 disabled, 1 global, 2 time-based (with StartTime and
  EndTime, MS-ASDTYPE dateTime); a message per audience (Enabled, ReplyMessage, BodyType "Text" or
  "HTML").  Kept per user for the target's life (:class:`OofBook`, next to the store); a Get before
  any Set is OofState 0 with the three audiences disabled.  A Get returns ReplyMessage in the
  BodyType it asks for (HTML kept as is or wrapped around the text; text kept or stripped of tags).
* DeviceInformation Set (MS-ASCMD 2.2.3.45; 12.1/14.0 devices send it here, docs/protocol-notes.md,
  ABQ and DeviceInformation) is recorded on the device (state.set_device_info); UserInformation Get
  answers the user's SMTP address, from 14.1 in Accounts/Account with UserDisplayName and
  PrimarySmtpAddress (MS-ASCMD 2.2.3.3, 2.2.3.4, 2.2.3.137) -- as the target answered before Oof.
* Status (MS-ASCMD 2.2.3.177.15): the Settings element's 2 "protocol error" for a body that is not a
  Settings request; an Oof part's 2 for a malformed one (no Get or Set, an OofState that is not
  0-2, an OofMessage without its audience), 5 "invalid arguments" for a time-based state without a
  valid StartTime before EndTime.  A request with no part is answered as DeviceInformation (Status
  1), as before.
"""

import re
import weakref

from _wbxml import children, encode, find, findtext
from loadgen.exchange.resolve import parse_time
from loadgen.exchange.store import eas_date

AUDIENCES = ("Settings:AppliesToInternal", "Settings:AppliesToExternalKnown", "Settings:AppliesToExternalUnknown")
MAX_MESSAGE = 8 * 1024  # characters of one reply message kept (a bound per user)
_TAGS = re.compile(r"<[^>]*>")

_NOT_SETTINGS = encode(("Settings:Settings", [("Settings:Status", "2")]))
_DEVICE_INFO_ONLY = encode(("Settings:Settings", [
    ("Settings:Status", "1"), ("Settings:DeviceInformation", [("Settings:Status", "1")])]))


class Oof:
    """One user's Out of Office settings."""

    __slots__ = ("state", "start", "end", "messages")

    def __init__(self):
        self.state = 0
        self.start = self.end = None
        self.messages = {}  # audience tag -> (enabled "0"/"1", reply text, body type "Text"/"HTML")


class OofBook:
    """Oof per user of one store (a dict: bounded by the target's users)."""

    def __init__(self):
        self.users = {}

    def get(self, user):
        return self.users.get(user) or Oof()

    def put(self, user, oof):
        self.users[user] = oof


_BOOKS = weakref.WeakKeyDictionary()  # store -> OofBook


def book(store):
    b = _BOOKS.get(store)
    if b is None:
        b = _BOOKS[store] = OofBook()
    return b


def _as_body(text, stored_type, wanted):
    if wanted.upper() == "HTML":
        return text if stored_type.upper() == "HTML" else "<html><body>%s</body></html>" % text
    return _TAGS.sub("", text).strip() if stored_type.upper() == "HTML" else text


def oof_get(oof, body_type):
    """The Oof answer children of a Get."""
    get = [("Settings:OofState", str(oof.state))]
    if oof.state == 2:
        get += [("Settings:StartTime", eas_date(oof.start)), ("Settings:EndTime", eas_date(oof.end))]
    for audience in AUDIENCES:
        enabled, text, stored_type = oof.messages.get(audience, ("0", "", "Text"))
        message = [(audience, None), ("Settings:Enabled", enabled)]
        if text:
            message.append(("Settings:ReplyMessage", _as_body(text, stored_type, body_type)))
        message.append(("Settings:BodyType", "HTML" if body_type.upper() == "HTML" else "Text"))
        get.append(("Settings:OofMessage", message))
    return [("Settings:Status", "1"), ("Settings:Get", get)]


def oof_set(node):
    """(status, Oof or None) of a Set element."""
    try:
        state = int(findtext(node, "Settings:OofState") or "")
    except (TypeError, ValueError):
        return 2, None
    if state not in (0, 1, 2):
        return 2, None
    oof = Oof()
    oof.state = state
    start_text, end_text = findtext(node, "Settings:StartTime"), findtext(node, "Settings:EndTime")
    if state == 2 or start_text is not None or end_text is not None:
        start, end = parse_time(start_text), parse_time(end_text)
        if state == 2 and (start is None or end is None or end <= start):
            return 5, None
        oof.start, oof.end = start, end
    for message in children(node):
        if message[0] != "Settings:OofMessage":
            continue
        if type(message[1]) is not list:
            return 2, None
        audience = next((tag for tag, _ in message[1] if tag in AUDIENCES), None)
        if audience is None:
            return 2, None
        enabled = findtext(message, "Settings:Enabled") or "0"
        text = findtext(message, "Settings:ReplyMessage") or ""
        body_type = findtext(message, "Settings:BodyType") or "Text"
        if enabled not in ("0", "1") or type(text) is not str or body_type.upper() not in ("TEXT", "HTML"):
            return 2, None
        oof.messages[audience] = (enabled, text[:MAX_MESSAGE], body_type)
    return 1, oof


def _oof(state, user, node):
    """The Oof answer element of an Oof request element."""
    if type(node[1]) is not list:
        return ("Settings:Oof", [("Settings:Status", "2")])
    get, put = find(node, "Settings:Get"), find(node, "Settings:Set")
    oofs = book(state.store)
    if get is not None:
        body_type = findtext(get, "Settings:BodyType") if type(get[1]) is list else None
        return ("Settings:Oof", oof_get(oofs.get(user), body_type if type(body_type) is str else "Text"))
    if put is not None and type(put[1]) is list:
        status, oof = oof_set(put)
        if oof is not None:
            oofs.put(user, oof)
        return ("Settings:Oof", [("Settings:Status", str(status))])
    return ("Settings:Oof", [("Settings:Status", "2")])


def respond(state, record, version, tree):
    """(WBXML answer, status) of a Settings request tree."""
    if tree is None or tree[0] != "Settings:Settings" or type(tree[1]) is not list:
        return _NOT_SETTINGS, 2
    out = [("Settings:Status", "1")]
    oof = find(tree, "Settings:Oof")
    if oof is not None:
        out.append(_oof(state, record.user, oof))
    password = find(tree, "Settings:DevicePassword")
    if password is not None:
        out.append(("Settings:DevicePassword", [("Settings:Status", "1")]))  # nothing kept: a test target
    info = find(tree, "Settings:DeviceInformation/Settings:Set")
    if info is not None:
        state.set_device_info(record, {t.partition(":")[2]: v for t, v in info[1] or () if type(v) is str})
        out.append(("Settings:DeviceInformation", [("Settings:Status", "1")]))
    userinfo = find(tree, "Settings:UserInformation")
    if userinfo is not None:
        smtp = state.smtp_address(record.user)
        if version.number >= 141:
            out.append(_user_info_141(record.user, smtp))
        else:
            out.append(_user_info(smtp))
    if len(out) == 1:
        return _DEVICE_INFO_ONLY, 1
    return encode(("Settings:Settings", out)), 1


def _user_info(smtp):
    return ("Settings:UserInformation", [("Settings:Status", "1"), ("Settings:Get", [
        ("Settings:EmailAddresses", [("Settings:SMTPAddress", smtp)])])])


def _user_info_141(name, smtp):
    return ("Settings:UserInformation", [("Settings:Status", "1"), ("Settings:Get", [
        ("Settings:Accounts", [("Settings:Account", [
            ("Settings:UserDisplayName", name),
            ("Settings:EmailAddresses", [("Settings:SMTPAddress", smtp), ("Settings:PrimarySmtpAddress", smtp)])])])])])


def handle(target, record, version, tree):
    """The Target's handler for Settings (handlers.py)."""
    body, status = respond(target.state, record, version, tree)
    return target._wbxml("Settings", body, status)
