"""A device's provisioning and the policy's effects on it, and where it may be sent (redirects).

The protocol decisions are the provisioning machine's (``loadgen/eas/provisioning.py``); this part
of the device sends its requests, counts its outcomes and applies what was decided: the policy's
Sync preferences (``loadgen/eas/policy.py``), the password rules (``loadgen/eas/password.py``), a
wipe, a 451 redirect under the rule of ``loadgen/wire/redirects.py``.
"""

import asyncio

from loadgen.device.answers import _http_outcome, _parse_shared, no_answer_outcome
from loadgen.device.profiles import identity
from loadgen.device.states import (
    AUTH_FAILED, BLOCKED, FAILED, MALFORMED, NEW, NO_POLICY, PROVISIONED, PROVISIONING, REFUSED, THROTTLED, WIPED,
)
from loadgen.eas import commands, http, password as passwords, policy as policies
from loadgen.eas.provisioning import Blocked, Failed, Provisioned, Redirect, Refused, Retry, Send, Wiped
from loadgen.wire import ratelimit, redirects

_PREFERENCES = {}  # (id(applied policy), the user's wishes) -> (policy, SyncPreferences): shared, read-only


class PolicyLife:
    """The provisioning and policy part of :class:`loadgen.device.life.Device` (its state: these slots)."""

    __slots__ = ("prov", "password", "password_history", "password_serial", "need_provision", "trigger",
                 "reprovision_streak", "prefs", "fumbled", "enrolled", "trusted", "redirect_streak")

    async def provision(self, transport, deadline):
        """Run the provisioning conversation; returns True when the device may sync."""
        self.state = PROVISIONING
        if self.trigger:
            self.stats.reprovision(self.trigger)
        action = self.prov.start()
        while True:
            resp, tree = await self._exchange(transport, action.command, action.body, action.policy_key)
            if resp.status == 0:
                self._record(action.command, resp, no_answer_outcome(resp.error))
                self.prov.failed()
                await self._backoff(deadline)
                return False
            if tree is MALFORMED:  # a damaged answer is a server fault, not a verdict: start again later
                self._record(action.command, resp, "malformed")
                self.prov.failed()
                await self._backoff(deadline)
                return False
            if resp.status != 451:
                self.redirect_streak = 0
            parsed = None
            if resp.status == 200 and tree is not None:
                try:
                    parsed = _parse_shared(commands.parse_provision, tree)
                except ValueError:
                    pass  # the provisioner parses it again and says why it fails
            result = self.prov.receive(resp.status, resp.headers, tree, parsed)
            status = parsed.status if parsed is not None else commands.root_status(tree)
            if isinstance(result, Send):
                self._record(action.command, resp, "ok" if resp.status == 200 else _http_outcome(resp.status), status)
                action = result
                continue
            return await self._on_outcome(action, resp, result, status, deadline, transport)

    async def _on_outcome(self, action, resp, result, status, deadline, transport=None):
        stats = self.stats
        if isinstance(result, Provisioned):
            self._record(action.command, resp, "ok", status)
            stats.provisioning("no_policy" if result.no_policy else "provisioned", result.ack_status)
            if not result.no_policy:
                self._check_password()
            self._apply_preferences()
            if not self.enrolled and self.intended_start is not None:
                # enrolment time from the intended start (no coordinated omission) and from the actual one
                now = asyncio.get_running_loop().time()
                stats.enrolment(now - self.intended_start, now - self.actual_start)
            self.enrolled = True
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
            await self._backoff(deadline, result.retry_after)
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
            await self._backoff(deadline, result.after)
            return False
        if isinstance(result, Redirect):
            await self._redirect(transport, action.command, resp, result.location, deadline, status)
            return False
        assert isinstance(result, Failed)
        self._record(action.command, resp, "auth" if resp.status == 401 else _http_outcome(resp.status), status)
        stats.provisioning("failed", self.prov.ack_status or 0)
        self.state = AUTH_FAILED if resp.status == 401 else FAILED
        self.detail = result.reason
        self.alive = False
        return False

    def _apply_preferences(self):
        """The user's Sync preferences clamped to the policy just applied (docs/protocol-notes.md, Which
        policies a device may ignore: the user
        cannot choose a value larger than the policy's); each clamp is counted once per policy."""
        load = self.load
        applied = self.prov.applied if self.profile.caps.provisionable else None
        truncation = load.body_truncation if load.body_truncation > 0 else None
        # the applied policy is shared and read-only: the answer is computed once per policy and wishes
        key = (id(applied), load.html_bodies, truncation, load.email_filter, load.calendar_filter)
        found = _PREFERENCES.get(key)
        if found is None or found[0] is not applied:
            if len(_PREFERENCES) > 1000:
                _PREFERENCES.clear()
            found = _PREFERENCES[key] = (applied, policies.sync_preferences(
                applied, html=load.html_bodies, truncation=truncation, email_filter=load.email_filter,
                calendar_filter=load.calendar_filter))
        self.prefs = found[1]
        for effect in self.prefs.effects:
            self.stats.policy_effects[effect] += 1
        self.calendar_due = True  # the calendar window may have changed with the policy

    def _check_password(self):
        """After (re-)provisioning: does the user's password still satisfy the policy? (docs/protocol-notes.md,
        Which policies a device may ignore)"""
        applied = self.prov.applied
        broken = passwords.violations(self.password, applied)
        if not broken:
            return
        for rule in broken:
            self.stats.password_changes[rule] += 1
        self.password_serial += 1
        self.password_history = (self.password_history + (self.password,))[-max(applied.history, 1):]
        self.password = passwords.replace(self.password, applied, self.password_history,
                                          self.index * 1000 + self.password_serial)

    async def _unlock_fumble(self, deadline):
        """The profile's failed unlocks: code word at CodeWordFrequency, local wipe at the threshold
        (docs/protocol-notes.md, Policy storage and refresh)."""
        self.fumbled = True
        applied = self.prov.applied
        code_word, wiped = passwords.unlock_attempts(self.profile.caps.failed_unlocks,
                                                     applied.max_failed_attempts if applied else 0)
        if code_word:
            self.stats.code_words += 1
        if wiped:
            # the device wipes itself: policy key and sync state are gone (no server involved)
            self.stats.local_wipes += 1
            self.state = WIPED
            await self._after_wipe(deadline)

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

    def redirect_rule(self):
        """The run's redirect rule (the run context's, loadgen/run/context.py), or the fallback of a
        device run without one (only its own host named)."""
        rule = self.load.redirect_rule
        return rule if rule is not None else redirects.fallback(self.base_url)

    def redirect_verdict(self, location, domains=(), trusted=(), current=None):
        """The redirect rule's verdict (loadgen/wire/redirects.py) on moving this device from ``current``
        (the URL it uses) to ``location``; its configured URL's host and the hosts an
        Autodiscover answer named over https are named hosts, as are ``trusted`` and the hosts in
        ``domains`` (its e-mail domain)."""
        return self.redirect_rule().check(current or self.endpoint._base, location,
                                          hosts=(redirects.host_of(self.base_url),) + self.trusted + tuple(trusted),
                                          domains=domains)

    def _move(self, transport, verdict):
        """Move the device to the URL an allowed ``verdict`` names; the old endpoint's connections
        are closed (nothing of the old server is kept), and the rate cap is turned on for a host
        not on this machine when the rule says so."""
        old = self.endpoint
        if transport is not None and getattr(transport, "disconnect", None) is not None:
            transport.disconnect(old)
        else:
            old.close()
        if verdict.cap:
            ratelimit.remote_move(self.load, verdict.cap)
        self.endpoint = self._endpoint(verdict.url)

    async def _redirect(self, transport, command, resp, location, deadline, status=None):
        """A 451 (MS-ASHTTP 2.2.2.1.1, 3.2.5.1): follow ``location`` if the redirect rule allows it.
        Refused: counted as "redirect_refused", the device ends FAILED, nothing goes there.  The
        URL in use: counted as "redirect_loop", a retry with backoff.  Redirects in a row without
        another answer between them wait a backoff each after the first (no redirect ping-pong)."""
        verdict = self.redirect_verdict(http.location_url(location))
        if verdict.refused:
            self._record(command, resp, "redirect_refused", status)
            self.state = FAILED
            self.detail = "redirect refused: %s" % verdict.reason
            self.alive = False
            return
        if verdict.same:
            self._record(command, resp, "redirect_loop", status)
            await self._retry(deadline)
            return
        self._record(command, resp, "redirect", status)
        self._move(transport, verdict)
        self.redirect_streak += 1
        if self.redirect_streak > 1:
            await self._retry(deadline)
