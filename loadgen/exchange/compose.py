"""SendMail, SmartReply and SmartForward of the embedded target (MS-ASCMD 2.2.1.17, 2.2.1.18, 2.2.1.19).

* 14.0 and later: WBXML ``ComposeMail:SendMail/{ClientId, [AccountId], [SaveInSentItems], Mime}``;
  SmartReply / SmartForward add ``Source/{FolderId, ItemId} | Source/{LongId}`` (and
  ``[InstanceId]``) and ``[ReplaceMime]``.  Success is an empty HTTP 200 body; a failure is the root's
  Status (MS-ASCMD 2.2.3.177.2 common status codes).
* 12.x: the body is the raw message (``Content-Type: message/rfc822``) and the plain query carries
  ``SaveInSent=T`` and, for the Smart commands, ``ItemId`` + ``CollectionId`` or ``LongId``
  (MS-ASHTTP 2.2.1.1.1.1.2 command parameters); a failure is HTTP 400 (no WBXML answer in 12.x).

Recipients come from the message's To, Cc and Bcc (RFC 5322 3.6.3); each internal recipient's Inbox
gets the message exactly once, its Bcc removed (store.Store.deliver); the sender's copy goes to Sent
Items when SaveInSentItems / SaveInSent=T asks for it.  Statuses (MS-ASCMD 2.2.2 common status codes):
103 InvalidXML (not the command's request, no ClientId or no Mime), 107 InvalidMIME (not a message),
118 MessagePreviouslySent (a ClientId this mailbox already submitted), 119 MessageHasNoRecipient,
150 ItemNotFound (a Smart command's source item does not exist).  Without ReplaceMime the original's
text is appended to the new message's plain-text part (MS-ASCMD 2.2.3.144 ReplaceMime: absent, the
server appends the original message); its attachments are not carried along.
"""

import email
import email.policy
import email.utils

from _wbxml import find, findtext
from loadgen.eas.mime import recipients
from loadgen.exchange import store as st

COMMANDS = frozenset({"SendMail", "SmartReply", "SmartForward"})
MIME_CONTENT_TYPE = "message/rfc822"
_KIND = {"SendMail": "submitted_new", "SmartReply": "submitted_reply", "SmartForward": "submitted_forward"}
MAX_MIME = 16 * 1024 * 1024


def handle(target, record, version, tree, raw=None, query=None):
    """The Target's handler for the three commands (server.py ``_handlers``; the command is the query's Cmd)."""
    query = query or {}
    command = query.get("Cmd", "SendMail")
    status = submit(target.state.store, record, command, tree, raw, query)
    if status is None:
        return target._wbxml(command, b"")  # success: an empty body (MS-ASCMD 2.2.1.17)
    return target._error(command, version, 400, status)


def submit(store, record, command, tree, raw, query):
    """Submit one message; None on success, else the status (MS-ASCMD 2.2.2)."""
    box = store.mailbox(record.user)
    replace_mime = False
    client_id = None
    source = None
    if raw is not None:  # 12.x: message/rfc822 body, parameters in the query
        mime = raw
        save = query.get("SaveInSent", "").upper() == "T"
        if command != "SendMail":
            long_id = query.get("LongId")
            source = (None, long_id) if long_id else (query.get("CollectionId"), query.get("ItemId"))
    else:
        if tree is None or tree[0] != "ComposeMail:" + command or type(tree[1]) is not list:
            return 103
        client_id = findtext(tree, "ComposeMail:ClientId")
        node = find(tree, "ComposeMail:Mime")  # opaque data (bytes), or a string from some encoders
        mime = node[1] if node is not None else None
        if isinstance(mime, str):
            mime = mime.encode("utf-8")
        if type(client_id) is not str or not client_id or not isinstance(mime, (bytes, bytearray)):
            return 103
        save = find(tree, "ComposeMail:SaveInSentItems") is not None
        replace_mime = find(tree, "ComposeMail:ReplaceMime") is not None
        if command != "SendMail":
            node = find(tree, "ComposeMail:Source")
            if node is None or type(node[1]) is not list:
                return 103
            long_id = findtext(node, "ComposeMail:LongId")
            source = (None, long_id) if long_id else (findtext(node, "ComposeMail:FolderId"),
                                                      findtext(node, "ComposeMail:ItemId"))
    if len(mime) > MAX_MIME:
        return 107
    original = None
    if source is not None:
        folder_id, item_id = source
        found = box.item_by_id(item_id) if type(item_id) is str else None
        if found is None or (folder_id is not None and found[0] != folder_id) or found[2].cls != "Email":
            return 150
        original = found[2]
    parsed = st.parse_mime(mime)
    if parsed is None:
        return 107
    to, cc, bcc = recipients(mime)
    if not (to or cc or bcc):
        return 119
    if client_id is not None and not box.remember_client_id(client_id):
        store.counters["duplicates"] += 1
        return 118
    if original is not None and not replace_mime:
        mime, parsed = _with_original(mime, parsed, original, command == "SmartForward")
    store.deliver(record.user, mime, parsed=parsed)
    if save:
        store.save_sent(record.user, mime, parsed=parsed)
    store.counters[_KIND.get(command, "submitted_new")] += 1
    return None


def _with_original(mime, parsed, original, forward):
    """The message with the original's text appended to its plain-text part (as Exchange composes
    a reply or forward without ReplaceMime); the message unchanged if it has no such part."""
    try:
        part = parsed.get_body(("plain",))
        if part is None:
            return mime, parsed
        current = part.get_content()
        quote = "\n\n%s\nFrom: %s <%s>\nSubject: %s\n\n%s" % (
            "---------- Forwarded message ----------" if forward else "-----Original Message-----",
            original.sender, original.sender_addr, original.subject, original.text)
        part.set_content(current.rstrip("\r\n") + quote, charset="utf-8")
        out = parsed.as_bytes(policy=email.policy.SMTP)
        return out, email.message_from_bytes(out, policy=email.policy.default)
    except Exception:  # a message the library cannot rewrite: delivered as the client wrote it
        return mime, parsed
