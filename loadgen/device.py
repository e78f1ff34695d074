"""A simulated device: identity, capabilities, stored policy key, and its life.

The device owns its identity and stored policy key; every protocol decision is
taken by ``loadgen.eas`` (the sans-I/O provisioning machine and ``classify``);
the transport owns the socket; the engine owns the clock's end (deadline).

Life: provision (two steps) -> Settings/DeviceInformation for 12.1/14.0 ->
FolderSync with SyncKey 0 -> FolderSync cycles with think time, reacting to
re-provision signals (449, 140, 142, 143, 144), refusals (139/141/145, retried
at the retry interval), blocks (129), throttling (503 + Retry-After),
redirects (451) and authentication failures (401) until the run ends.
"""

import asyncio
import re

import _wbxml
from _wbxml import WBXMLError
from loadgen.eas import commands
from loadgen.eas.provisioning import (
    Blocked, Failed, Provisioned, Provisioner, Redirect, Refused, Retry, Send, Wiped, classify,
)
from loadgen.profiles import identity
from loadgen.transport import DeviceEndpoint

# Final / current states reported by the engine.
NEW = "new"
PROVISIONING = "provisioning"
PROVISIONED = "provisioned"
NO_POLICY = "no_policy"  # the server has no policy for the device (Policy Status 2)
UNPROVISIONED = "unprovisioned"  # non-provisionable device allowed without a policy
REFUSED = "refused"
BLOCKED = "blocked"
WIPED = "wiped"
THROTTLED = "throttled"
FAILED = "failed"
AUTH_FAILED = "auth_failed"

_MAX_REPROVISION_STREAK = 3  # 449/142/144 right after provisioning: stop looping (seed 000, 12.1 note)


class Device:
    def __init__(self, index, user, password, version, profile, ident, base_url, load, stats, rng, domain="",
                 origin=None):
        self.index = index
        self.origin = origin  # (seed, user index, slot): where the identity comes from
        self.generation = 0  # factory resets so far
        self.base_url = base_url
        self.user = user
        self.version = version
        self.profile = profile
        self.ident = ident
        self.load = load
        self.stats = stats
        self.rng = rng
        self._password = password
        self._domain = domain
        self._enrol(ident)
        self.state = NEW
        self.backoff_until = 0.0
        self.detail = None
        self.alive = True
        self._sent = 0

    def _enrol(self, ident):
        """Start as a factory-fresh device with identity ``ident``."""
        self.ident = ident
        self.endpoint = DeviceEndpoint(self.base_url, self.user, self._password, ident.device_id, ident.device_type,
                                       self.version.text, self.profile.user_agent, self._domain)
        self.prov = Provisioner(self.version, self.profile.caps, ident.info, retry_interval=self.load.retry_interval,
                                retry_backoff=self.load.backoff)
        self.folder_key = "0"
        self.folders = 0
        self.devinfo_sent = False
        self.need_provision = self.profile.caps.provisionable
        self.trigger = None
        self.reprovision_streak = 0

    # -- plumbing

    async def _sleep(self, seconds, deadline):
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(seconds, remaining))
        return loop.time() < deadline

    async def _exchange(self, transport, command, body, policy_key):
        loop = asyncio.get_running_loop()
        if self.backoff_until > loop.time():
            await asyncio.sleep(self.backoff_until - loop.time())
        resp = await transport.post(self.endpoint, command, body, policy_key)
        self._sent = len(body)
        backoff = resp.headers.get("X-MS-BackOffDuration") if resp.status else None
        if backoff:
            ms = _backoff_ms(backoff)
            if ms > 0:
                # Exchange's budget back-off suggestion: honour it before the next request
                self.backoff_until = loop.time() + ms / 1000.0
                self.stats.throttle("BackOffDuration")
        tree = None
        if resp.status and resp.body and "wbxml" in resp.headers.get("Content-Type", "wbxml"):
            try:
                tree = _wbxml.decode(resp.body)
            except WBXMLError:
                self.stats.malformed_response(command)
        return resp, tree

    def _record(self, command, resp, outcome, eas_status=None):
        self.stats.record(command, resp.status, outcome, resp.elapsed, self._sent, len(resp.body), eas_status)

    # -- provisioning

    async def provision(self, transport, deadline):
        """Run the provisioning conversation; returns True when the device may sync."""
        self.state = PROVISIONING
        if self.trigger:
            self.stats.reprovision(self.trigger)
        action = self.prov.start()
        while True:
            resp, tree = await self._exchange(transport, action.command, action.body, action.policy_key)
            if resp.status == 0:
                self._record(action.command, resp, "timeout" if resp.error == "timeout" else "conn_error")
                self.prov.state = self.prov.state.__class__.IDLE
                await self._sleep(self.load.backoff, deadline)
                return False
            result = self.prov.receive(resp.status, resp.headers, tree)
            status = commands.root_status(tree)
            if isinstance(result, Send):
                self._record(action.command, resp, "ok" if resp.status == 200 else _http_outcome(resp.status), status)
                action = result
                continue
            return await self._on_outcome(action, resp, result, status, deadline)

    async def _on_outcome(self, action, resp, result, status, deadline):
        stats = self.stats
        if isinstance(result, Provisioned):
            self._record(action.command, resp, "ok", status)
            stats.provisioning("no_policy" if result.no_policy else "provisioned", result.ack_status)
            self.state = NO_POLICY if result.no_policy else PROVISIONED
            self.need_provision = False
            return True
        if isinstance(result, Wiped):
            self._record(action.command, resp, "ok", status)
            stats.wipe(result.ack_status)
            self.state = WIPED
            await self._after_wipe(deadline)
            return False
        if isinstance(result, Refused):
            self._record(action.command, resp, "refused", status)
            stats.provisioning("refused_%d" % result.status, self.prov.ack_status or 0)
            self.state = REFUSED
            await self._sleep(result.retry_after, deadline)
            return False
        if isinstance(result, Blocked):
            self._record(action.command, resp, "blocked", status)
            stats.provisioning("blocked", 0)
            self.state = BLOCKED
            self.alive = False
            return False
        if isinstance(result, Retry):
            self._record(action.command, resp, "throttled" if resp.status == 503 else _http_outcome(resp.status), status)
            if resp.status == 503:
                stats.throttle(result.reason)
                self.state = THROTTLED
            await self._sleep(result.after, deadline)
            return False
        if isinstance(result, Redirect):
            self._record(action.command, resp, "redirect", status)
            self._redirect(result.location)
            return False
        assert isinstance(result, Failed)
        self._record(action.command, resp, "auth" if resp.status == 401 else _http_outcome(resp.status), status)
        stats.provisioning("failed", self.prov.ack_status or 0)
        self.state = AUTH_FAILED if resp.status == 401 else FAILED
        self.detail = result.reason
        self.alive = False
        return False

    async def _after_wipe(self, deadline):
        """Stop for good, or re-enrol later as a factory-fresh device (scenario's reenrol_after)."""
        if self.load.reenrol_after is None or self.origin is None:
            self.alive = False
            return
        if not await self._sleep(self.load.reenrol_after, deadline):
            self.alive = False
            return
        self.generation += 1
        seed, user_index, slot = self.origin
        self._enrol(identity(seed, user_index, slot, self.profile, self.generation))
        self.state = NEW
        self.stats.reenrolment()

    def _redirect(self, location):
        base = location if "://" in location else "https://%s/Microsoft-Server-ActiveSync" % location
        self.endpoint = DeviceEndpoint(base, self.user, self._password, self.ident.device_id,
                                       self.ident.device_type, self.version.text, self.profile.user_agent,
                                       self._domain)

    # -- ordinary commands

    async def command(self, transport, name, body, deadline):
        """Send an ordinary command; returns the decoded tree on success, None otherwise."""
        key = self.prov.policy_key if self.profile.caps.provisionable else None
        resp, tree = await self._exchange(transport, name, body, key)
        if resp.status == 0:
            self._record(name, resp, "timeout" if resp.error == "timeout" else "conn_error")
            await self._sleep(self.load.backoff, deadline)
            return None
        reaction = classify(resp.status, resp.headers, tree, self.load.retry_interval, self.load.backoff)
        kind = reaction.kind
        if kind == "ok":
            outcome = "ok" if reaction.status in (None, 1) else "eas_error"
            self._record(name, resp, outcome, reaction.status)
            self.reprovision_streak = 0
            return tree
        self._record(name, resp, kind if kind != "error" else _http_outcome(resp.status), reaction.status)
        if kind == "reprovision":
            self.reprovision_streak += 1
            if self.reprovision_streak > _MAX_REPROVISION_STREAK or not self.profile.caps.provisionable:
                # provisioning does not satisfy the server: behave as refused, retry hourly
                self.state = REFUSED
                self.detail = "re-provision loop (%s)" % reaction.trigger
                await self._sleep(self.load.retry_interval, deadline)
                self.reprovision_streak = 0
            self.need_provision = self.profile.caps.provisionable
            self.trigger = reaction.trigger
        elif kind == "refused":
            self.state = REFUSED
            self.detail = "status %s" % reaction.status
            await self._sleep(reaction.wait, deadline)
            self.need_provision = self.profile.caps.provisionable
            self.trigger = None
        elif kind == "blocked":
            self.state = BLOCKED
            self.alive = False
        elif kind == "throttled":
            self.stats.throttle(reaction.detail)
            self.state = THROTTLED
            await self._sleep(reaction.wait, deadline)
        elif kind == "redirect":
            self._redirect(reaction.detail)
        elif kind == "auth":
            self.state = AUTH_FAILED
            self.alive = False
        else:
            await self._sleep(reaction.wait, deadline)
        return None

    # -- life

    async def run(self, transport, deadline):
        loop = asyncio.get_running_loop()
        load = self.load
        while self.alive and loop.time() < deadline:
            if self.need_provision:
                if not await self.provision(transport, deadline):
                    continue
                self.trigger = None
            elif self.state in (NEW, REFUSED, THROTTLED):
                self.state = UNPROVISIONED if not self.profile.caps.provisionable else PROVISIONED
            if self.version.device_info_via_settings and not self.devinfo_sent:
                # 12.1 / 14.0: DeviceInformation through Settings, after provisioning and
                # before the first FolderSync (seed 000, ABQ section)
                tree = await self.command(transport, "Settings",
                                          commands.settings_device_information(self.ident.info), deadline)
                if tree is None:
                    continue
                self.devinfo_sent = True
            if self.folder_key != "0":
                think = self.rng.expovariate(1.0 / load.think_time) if load.think_time > 0 else 0.0
                if not await self._sleep(think, deadline):
                    break
            tree = await self.command(transport, "FolderSync", commands.foldersync(self.folder_key), deadline)
            if tree is None:
                continue
            try:
                fs = commands.parse_foldersync(tree)
            except ValueError:
                self.stats.malformed_response("FolderSync")
                continue
            if fs.status == 1 and fs.sync_key:
                self.folder_key = fs.sync_key
                self.folders += len(fs.added)
            elif fs.status == 9:  # invalid sync key: start the hierarchy again
                self.folder_key = "0"
                self.folders = 0


def _http_outcome(status):
    if status == 200:
        return "ok"
    if status == 503:
        return "throttled"
    if 400 <= status < 500:
        return "http_4xx"
    if status >= 500:
        return "http_5xx"
    return "http_%d" % status


_NUMBER = re.compile(r"-?\d+")


def _backoff_ms(value):
    """X-MS-BackOffDuration in milliseconds (0 when absent or not positive).

    The header's exact format is not in the stored specification excerpts
    (unverified): the last integer in the value is taken as milliseconds, which
    reads both a bare number and a prefixed form such as "L/-470".
    """
    found = _NUMBER.findall(value)
    if not found:
        return 0
    return max(0, int(found[-1]))
