"""``easload probe``: one device walks the whole enrolment against a server and says
what it sees, with the WBXML decoded (a diagnostic client in the spirit of Helland's "Exchange ActiveSync
Building Blocks", as a command).

Steps: Autodiscover (with ``--autodiscover EMAIL``, or when no URL is given and the
user is an e-mail address; loadgen/device/autodiscover.py), OPTIONS, Provision (both
steps), Settings/DeviceInformation (12.1/14.0), FolderSync, a Sync of the Inbox
(initial and fetch) and a short Ping.  Every
request and response is printed: method, URL (query decoded), headers with
credentials redacted, status, timing and the body as indented XML.  Each step
ends with a verdict and, where something is off, plain advice.

Everything the server sent is shown through :func:`escape` (control characters and ANSI
escapes as ``\x1b`` etc.): a server cannot drive the terminal, and server text is always
indented or inside a verdict's one line, so it cannot pass for a verdict (those start at the
first column with ``==>``).  The final verdict says only what was shown: "this device can
provision and sync" needs a Sync that worked; a walk that stopped short says where and why
(exit status 1).

Real servers' habits it tolerates and names: a 401 ``WWW-Authenticate: Basic``
challenge before the credentials are accepted (answered once), a server that
closes the connection after every response without saying so (seen as a new
connection for every request), an OPTIONS command list without Provision, no
policy (Policy Status 2), EAS mounted under another path.
"""

import asyncio
import json
import ssl
import time
from urllib.parse import parse_qsl, urlsplit

import aiohttp

import _wbxml
from loadgen.eas import commands, http, versions
from loadgen.eas.provisioning import (Failed, Kind, Provisioned, Provisioner, Refused, Retry, Send, Wiped,
                                       classify)
from loadgen.device.profiles import PROFILES, identity
from loadgen.wire.transport import make_ssl_context

REDACTED = "<redacted>"
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(value):
    """``value`` (text, or bytes: UTF-8 where it is, ``\\xNN`` where not) with every character
    that is not printable shown as an escape: C0 and C1 controls (ESC as ``\\x1b``, CSI as
    ``\\x9b``), DEL, line breaks, and the invisible format characters (bidirectional overrides
    such as U+202E) -- so text from a server reaches the terminal only as text.  The one function
    every byte from the server is printed through (Probe.say, Probe.verdict)."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "backslashreplace")
    elif not isinstance(value, str):
        value = str(value)
    if value.isprintable():
        return value
    out = []
    for ch in value:
        if ch.isprintable():
            out.append(ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        else:
            code = ord(ch)
            out.append("\\x%02x" % code if code < 0x100 else "\\u%04x" % code if code < 0x10000 else "\\U%08x" % code)
    return "".join(out)
_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie"}


class Probe:
    def __init__(self, url, user, password=None, token=None, version="14.1", profile="modern", ca=None,
                 insecure=False, heartbeat=60, out=print, trace=None, timeout=30.0, autodiscover=None, resolver=None):
        self.url = url
        self.resolver = resolver  # an aiohttp resolver (autodiscover.host_map: --connect-to), or None
        self.autodiscover = autodiscover  # e-mail address to Autodiscover first, or None
        self.connections = 0  # TCP connections aiohttp opened (TraceConfig)
        self.server_closed = 0  # requests that needed a new connection although none was announced closed
        self.challenges = []  # realms of the Basic challenges answered
        self._announced_close = True  # the first request needs a connection anyway
        self.user = user
        self.version = versions.get(version)
        self.profile = PROFILES[profile]
        self.ident = identity(0, 0, 0, self.profile)
        self.auth = http.authorization(user, password or "", bearer=token)
        self.ssl = make_ssl_context(insecure, ca)
        self.heartbeat = heartbeat
        self.out = out
        self.trace = trace
        self.timeout = timeout
        self.ok = True
        self.policy_key = None
        self.auth_failed = False  # a 401 that answering a challenge did not cure
        self.provisioned = False
        self.synced = False  # a Sync of the Inbox worked
        self.not_tried = None  # why the walk stopped short without a failure (the final verdict says it)

    # -- output

    def say(self, text=""):
        """One or more lines out; every line through :func:`escape` (nothing reaches the terminal raw)."""
        self.out("\n".join(escape(line) for line in str(text).split("\n")))

    def verdict(self, step, good, message, advice=None):
        """``good``: True (OK), False (FAIL) or None (SKIP: not tried, and why).  The message and the
        advice are one line each whatever they hold (server text in them is escaped, newlines too)."""
        message, advice = escape(message), escape(advice) if advice else advice
        mark = "OK  " if good else "SKIP" if good is None else "FAIL"
        self.out("==> [%s] %s: %s" % (mark, step, message))
        if advice:
            self.out("    advice: %s" % advice)
        if good is False:
            self.ok = False
        if self.trace is not None:
            self.trace.write(json.dumps({"type": "verdict", "step": step, "ok": good, "message": message,
                                         "advice": advice}) + "\n")

    def _headers_text(self, headers):
        return ["    %s: %s" % (k, REDACTED if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()]

    def _body_text(self, body, content_type):
        """The body, every line indented (and escaped by say): server text never starts a line."""
        if not body:
            return "    (no body)"
        if "wbxml" in (content_type or ""):
            try:
                text = _wbxml.to_xml(_escaped_tree(_wbxml.decode(body)))
                return "\n".join("    " + line for line in text.splitlines())
            except _wbxml.WBXMLError as exc:
                return "    (malformed WBXML: %s) %s" % (escape(str(exc)), body[:64].hex())
        return "\n".join("    " + escape(line) for line in body[:500].decode("utf-8", "backslashreplace")
                         .splitlines())

    # -- one exchange

    async def exchange(self, session, method, command, body=b"", policy_key=None, timeout=None, _retry=False):
        if command:
            url = "%s?%s" % (self.url, http.query(self.user, self.ident.device_id, self.ident.device_type, command))
        else:
            url = self.url
        headers = http.headers(self.version.text, self.profile.user_agent, self.auth, policy_key, body=bool(body))
        parts = urlsplit(url)
        self.say("")
        self.say("--> %s %s" % (method, parts.path))
        for k, v in parse_qsl(parts.query):
            self.say("    ?%s=%s" % (k, v))
        self.say("\n".join(self._headers_text(headers)))
        self.say(self._body_text(body, http.WBXML))
        t0 = time.perf_counter()
        try:
            for attempt in (0, 1):
                opened = self.connections
                try:
                    async with session.request(method, url, data=body or None, headers=headers,
                                               allow_redirects=False,
                                               timeout=aiohttp.ClientTimeout(total=timeout or self.timeout)) as resp:
                        data = await resp.read()
                        status, rheaders = resp.status, resp.headers
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                    if attempt or self.connections > opened:
                        raise
                    # sent on a kept-alive connection the server had closed: once more on a new one
                    self.server_closed += 1
                    self._announced_close = True
                    t0 = time.perf_counter()
                    continue
                if self.connections > opened and not self._announced_close:
                    self.server_closed += 1
                self._announced_close = rheaders.get("Connection", "").lower() == "close"
                break
        except aiohttp.ClientConnectorCertificateError as exc:
            reason = escape(getattr(exc.certificate_error, "verify_message", None) or "") or None
            raise ProbeError("the server's certificate is not trusted%s" % (" (%s)" % reason if reason else ""),
                             "certificate not trusted: pass --ca FILE with the CA bundle that signed it "
                             "(or --insecure to skip verification, not recommended)") from None
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            raise ProbeError("TLS failed: %s" % type(exc).__name__, "check the URL scheme and --ca") from None
        except aiohttp.ServerDisconnectedError:
            raise ProbeError("the server closed the connection without answering",
                             "a proxy or load balancer may be in the way") from None
        except asyncio.TimeoutError:
            raise ProbeError("no answer within %.0f s" % (timeout or self.timeout), "check the URL and the network") \
                from None
        except aiohttp.ClientError as exc:
            raise ProbeError("cannot connect: %s" % type(exc).__name__, "check the host name, port and firewall") \
                from None
        elapsed = time.perf_counter() - t0
        self.say("<-- %d %s (%.1f ms)" % (status, getattr(resp, "reason", "") or "", elapsed * 1000))
        self.say("\n".join(self._headers_text(rheaders)))
        self.say(self._body_text(data, rheaders.get("Content-Type")))
        tree = None
        if data and "wbxml" in rheaders.get("Content-Type", ""):
            try:
                tree = _wbxml.decode(data)
            except _wbxml.WBXMLError:
                tree = None
        if self.trace is not None:
            self.trace.write(json.dumps({
                "type": "exchange", "method": method, "command": command, "status": status,
                "elapsed_ms": round(elapsed * 1000, 2),
                "request_headers": {k: (REDACTED if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()},
                "response_headers": {k: (REDACTED if k.lower() in _SECRET_HEADERS else v) for k, v in rheaders.items()},
                "request_xml": _wbxml.to_xml(_wbxml.decode(body)) if body else None,
                "response_xml": _wbxml.to_xml(tree) if tree is not None else None}) + "\n")
        challenge = rheaders.get("WWW-Authenticate", "")
        if status == 401 and challenge[:5].lower() == "basic" and not _retry:
            # a server that challenges before it accepts credentials: answer the challenge once
            self.say("    (a Basic challenge: %s -- sending the request again with the credentials)" % challenge)
            answer = await self.exchange(session, method, command, body, policy_key, timeout, _retry=True)
            if answer[0] != 401:  # the challenge was only a challenge: the credentials were then accepted
                self.challenges.append(challenge)
            return answer
        if status == 401:
            self.auth_failed = True
        return status, rheaders, tree

    # -- the walk

    async def run(self):
        connector = aiohttp.TCPConnector(ssl=self.ssl, limit=2, resolver=self.resolver)
        tracing = aiohttp.TraceConfig()

        async def opened(_session, _ctx, _params):
            self.connections += 1

        tracing.on_connection_create_end.append(opened)
        async with aiohttp.ClientSession(connector=connector, trace_configs=[tracing]) as session:
            try:
                go = await self._autodiscover() if self.autodiscover else True
                if go and self.url:
                    await self._walk(session)
            except ProbeError as exc:
                self.verdict("connection", False, exc.message, exc.advice)
        if self.challenges and not self.auth_failed:
            self.verdict("authentication", True, "the server challenged before accepting the credentials (%s); "
                         "answered %d challenge(s)" % (self.challenges[0], len(self.challenges)),
                         "easload's devices send Basic credentials at once and answer such a challenge once per "
                         "request")
        if self.server_closed:
            self.verdict("connection", True, "%d request(s) needed a new connection" % self.server_closed,
                         "the server closed the connection after the response without saying so (no Connection: "
                         "close): every request pays a new TCP%s handshake" % (
                             " and TLS" if (self.url or "").startswith("https") else ""))
        self.say("")
        if not self.ok:
            final = "problems found"
        elif self.synced:
            final = "this device can provision and sync"
        elif self.provisioned:
            final = "provisioned; Sync not tried: %s" % (self.not_tried or "the walk stopped before it")
        else:
            final = "incomplete: %s" % (self.not_tried or "the walk did not reach Provision")
        self.out("probe verdict: %s" % escape(final))
        return 0 if self.ok and self.synced else 1

    async def _autodiscover(self):
        """Autodiscover step: True when the walk may go on (with the discovered URL)."""
        from loadgen.device import autodiscover as ad
        from loadgen.eas import autodiscover as pox

        def on_exchange(step, status, headers, body, elapsed, error):
            self.say("")
            self.say("--> %s %s   (Autodiscover for %s: %s)" % (step.method, escape(step.url), escape(step.email),
                                                                 escape(step.why)))
            shown = {"Content-Type": pox.CONTENT_TYPE} if step.body else {}
            if step.authenticated:
                shown["Authorization"] = self.auth
            self.say("\n".join(self._headers_text(shown)) if shown else "    (no credentials: the redirect probe)")
            self.say(_xml_text(step.body))
            if status == 0:
                self.say("<-- no answer (%s) after %.1f ms" % (escape(error), elapsed * 1000))
            else:
                self.say("<-- %d (%.1f ms)" % (status, elapsed * 1000))
                self.say("\n".join(self._headers_text(headers)))
                self.say(_xml_text(body))
            if self.trace is not None:
                self.trace.write(json.dumps({
                    "type": "exchange", "method": step.method, "command": "Autodiscover", "url": step.url,
                    "status": status, "error": error, "elapsed_ms": round(elapsed * 1000, 2),
                    "request_xml": (step.body or b"").decode("utf-8", "replace") or None,
                    "response_xml": body[:4096].decode("utf-8", "replace") if body else None}) + "\n")

        first = (pox.endpoint_of(self.url),) if self.url else ()
        try:
            result = await ad.discover(self.autodiscover, self.auth, first_urls=first, ssl=self.ssl,
                                       user_agent=self.profile.user_agent, timeout=self.timeout,
                                       on_exchange=on_exchange, resolver=self.resolver)
        except ValueError as exc:
            self.verdict("Autodiscover", False, str(exc), "pass --autodiscover with an e-mail address")
            return bool(self.url)
        if isinstance(result, pox.Done):
            note = ""
            advice = None
            if result.redirects:
                note = " after %d redirect(s), for %s" % (result.redirects, result.email)
            if self.url and result.url.rstrip("/") != self.url.rstrip("/"):
                advice = "Autodiscover names %s, not the URL given (%s): the probe goes on with the " \
                         "discovered one" % (result.url, self.url)
            self.verdict("Autodiscover", True, "the EAS URL is %s%s" % (result.url, note), advice)
            self.url = result.url
            return True
        self.verdict("Autodiscover", False, result.reason, result.advice)
        if self.url:
            self.say("    (going on with the URL given: %s)" % self.url)
        return bool(self.url) and not result.auth

    async def _walk(self, session):
        status, headers, _ = await self.exchange(session, "OPTIONS", None)
        if status == 401:
            self._unauthorized("OPTIONS")
            return
        if status != 200:
            self.verdict("OPTIONS", False, "HTTP %d" % status, "is this the Microsoft-Server-ActiveSync URL?")
            return
        served = [v.strip() for v in headers.get("MS-ASProtocolVersions", "").split(",") if v.strip()]
        cmds = [c.strip() for c in headers.get("MS-ASProtocolCommands", "").split(",") if c.strip()]
        if self.version.text not in served:
            self.verdict("OPTIONS", False, "the server does not offer version %s (offers %s)"
                         % (self.version.text, ", ".join(served) or "none"), "pass --version with one it offers")
            return
        if "Provision" not in cmds:
            self.verdict("OPTIONS", True, "versions %s" % ", ".join(served),
                         "the server's OPTIONS lists no Provision command: it may not enforce policies")
        else:
            self.verdict("OPTIONS", True, "versions %s; %d commands" % (", ".join(served), len(cmds)))

        prov = Provisioner(self.version, self.profile.caps, self.ident.info, retry_interval=3600)
        action = prov.start()
        outcome = None
        for _ in range(8):
            status, headers, tree = await self.exchange(session, "POST", action.command, action.body,
                                                        action.policy_key)
            if status == 401:
                self._unauthorized("Provision")
                return
            result = prov.receive(status, headers, tree)
            if isinstance(result, Send):
                if result.phase == "ack":
                    self.verdict("Provision (policy)", True, "temporary key %s; the device answers %d%s" % (
                        result.policy_key, prov.ack_status, " (cannot apply: %s)" % ", ".join(prov.unmet)
                        if prov.unmet else ""))
                action = result
                continue
            outcome = result
            break
        if isinstance(outcome, Provisioned):
            self.provisioned = True
            if outcome.no_policy:
                self.verdict("Provision", True, "no policy for this device (Policy Status 2)",
                             "the server has no policy for this device: provisioning is skipped")
            else:
                self.verdict("Provision (acknowledgement)", True, "final policy key %s" % outcome.policy_key)
            self.policy_key = outcome.policy_key
        elif isinstance(outcome, Refused):
            self.verdict("Provision", False, "refused with status %s" % outcome.status,
                         "the policy does not allow this device (139 partial, 141 no key, 145 externally "
                         "managed): ask the administrator or allow non-provisionable devices")
            return
        elif isinstance(outcome, Wiped):
            self.verdict("Provision", False, "the server asked this device to wipe itself (acknowledged)",
                         "a remote wipe is pending for this device id: clear it on the server")
            return
        elif isinstance(outcome, (Retry, Failed)) or outcome is None:
            reason = getattr(outcome, "reason", "no outcome")
            self.verdict("Provision", False, str(reason), "HTTP 449 on Provision means the server wants "
                         "provisioning but did not accept ours" if "restarted" in str(reason) else None)
            return
        else:
            self.verdict("Provision", False, "unexpected: %r" % (outcome,))
            return

        key = self.policy_key
        if self.version.device_info_via_settings:
            status, headers, tree = await self.exchange(session, "POST", "Settings",
                                                        commands.settings_device_information(self.ident.info), key)
            self._settings(status, headers, tree)
        status, headers, tree = await self.exchange(session, "POST", "FolderSync", commands.foldersync("0"), key)
        if not self._check("FolderSync", status, headers, tree):
            return
        fs = commands.parse_foldersync(tree)
        inbox = next((f for f in fs.added if f.type == 2), None)
        self.verdict("FolderSync", fs.status == 1, "%d folders%s" % (len(fs.added), ", Inbox is %s" % inbox.server_id
                                                                      if inbox else ", no Inbox"),
                     None if inbox else "no folder of type 2 (Inbox, MS-ASCMD 2.2.3.186.3): a server without mail "
                     "storage (e.g. no IMAP back end) lists none, and devices have nothing to sync")
        if inbox is None:
            self.not_tried = "the server listed no Inbox"
            self.verdict("Sync", None, "not tried: the server listed no Inbox")
            return
        status, headers, tree = await self.exchange(session, "POST", "Sync", commands.sync_initial(inbox.server_id),
                                                    key)
        if not self._check("Sync", status, headers, tree):
            return
        first = commands.parse_sync(tree)
        if first.sync_key:
            body = commands.sync_template(1, 5120, 25).render(first.sync_key, inbox.server_id)
            status, headers, tree = await self.exchange(session, "POST", "Sync", body, key)
            if self._check("Sync", status, headers, tree):
                resp = commands.parse_sync(tree)
                self.verdict("Sync", resp.status == 1, "%d items in the Inbox window" % resp.added)
                self.synced = resp.status == 1
        else:
            self.verdict("Sync", False, "the initial Sync of the Inbox gave no SyncKey (status %s)" % first.status,
                         "MS-ASCMD 2.2.3.166.4: the first Sync (SyncKey 0) answers the collection's first SyncKey")
        status, headers, tree = await self.exchange(session, "POST", "Ping", commands.ping(self.heartbeat,
                                                    inbox.server_id), key, timeout=self.heartbeat + 30)
        if self._check("Ping", status, headers, tree):
            ping = commands.parse_ping(tree)
            if ping.status == 5:
                self.verdict("Ping", True, "heartbeat %d s is out of the server's bounds; it allows %s s"
                             % (self.heartbeat, ping.heartbeat), "use --heartbeat %s" % ping.heartbeat)
            else:
                self.verdict("Ping", ping.status in (1, 2), "status %s" % ping.status)

    def _unauthorized(self, step):
        self.auth_failed = True
        self.verdict("authentication", False, "401 Unauthorized on %s: the server refused the credentials of %s"
                     % (step, self.user), _AUTH_ADVICE)

    def _settings(self, status, headers, tree):
        """Settings with DeviceInformation (12.1/14.0): OK only when the command and the
        DeviceInformation Set both answer Status 1 (MS-ASCMD 2.2.3.177.14 Status in Settings)."""
        if not self._check("Settings", status, headers, tree):
            return
        root = _wbxml.findtext(tree, "Settings:Status") if tree is not None else None
        info = _wbxml.findtext(tree, "Settings:DeviceInformation/Settings:Status") if tree is not None else None
        if root == "1" and info in ("1", None):
            self.verdict("Settings", True, "device information accepted (Status 1)" if info else
                         "Status 1 (no DeviceInformation status in the answer)")
        else:
            self.verdict("Settings", False, "Status %s, DeviceInformation Status %s" % (root, info),
                         "the server did not accept the device information: Allow/Block/Quarantine rules that "
                         "need the model or OS may not match this device")

    def _check(self, step, status, headers, tree):
        reaction = classify(status, headers, tree)
        if reaction.kind is Kind.OK and reaction.status in (None, 1, 2):
            return True
        if reaction.kind is Kind.OK:
            self.verdict(step, False, "status %s" % reaction.status)
        elif reaction.kind is Kind.REPROVISION:
            self.verdict(step, False, "the server wants provisioning again (%s) right after provisioning"
                         % reaction.trigger, "HTTP 449 on %s: the server wants provisioning; it may not accept "
                         "the policy key it gave" % step if reaction.trigger == "449" else None)
        elif reaction.kind is Kind.THROTTLED:
            self.verdict(step, False, "throttled (%s), retry after %.0f s" % (reaction.detail, reaction.wait))
        elif reaction.kind is Kind.BLOCKED:
            self.verdict(step, False, "blocked or quarantined (129)", "Allow/Block/Quarantine: ask the "
                         "administrator to allow this device type or release it")
        elif reaction.kind is Kind.AUTH:
            self._unauthorized(step)
        else:
            self.verdict(step, False, "HTTP %d%s" % (status, " status %s" % reaction.status if reaction.status else ""))
        return False


def _escaped_tree(node):
    """A decoded WBXML tree with its text shown through :func:`escape` (a line break in a
    server's text stays inside its element instead of starting a line of the transcript)."""
    tag, content = node[0], node[1]
    if type(content) is str:
        return (tag, escape(content))
    if type(content) is list:
        return (tag, [_escaped_tree(child) for child in content])
    return node


def _xml_text(body):
    """An Autodiscover body (XML text) indented for the transcript; never a credential in it."""
    if not body:
        return "    (no body)"
    text = body[:4096].decode("utf-8", "replace")
    try:
        import xml.dom.minidom

        if "<!DOCTYPE" not in text and "<!ENTITY" not in text:
            text = xml.dom.minidom.parseString(body).toprettyxml(indent="  ")
            text = "\n".join(line for line in text.splitlines() if line.strip())
    except Exception:  # not XML: shown as text
        pass
    return "\n".join("    " + line for line in text.splitlines())


_AUTH_ADVICE = "401: check the user name format (DOMAIN\\user or UPN) and the password"


class ProbeError(Exception):
    def __init__(self, message, advice=None):
        super().__init__(message)
        self.message = message
        self.advice = advice
