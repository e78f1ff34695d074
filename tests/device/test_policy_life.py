"""End to end: devices live by the policy they accepted, proven where the server sees it.

Real runs of the engine against the embedded target over loopback HTTP.  The target
records per device what it received -- the BodyPreference Type / TruncationSize and
FilterType of every Sync collection, the attachments fetched with ItemOperations and the
BodyPreference of body fetches (``DeviceRecord.observed``, target/sync.py) -- and the
tests compare that with the policy the devices acknowledged.
"""

import asyncio

from loadgen.cli import start
from loadgen.results import metrics
from loadgen import scenario
from loadgen.eas.policy import SEED_POLICY
from loadgen.results.text import summary_text
from loadgen.exchange.store import INBOX as INBOX_ID
from loadgen.exchange.state import TargetState

CALENDAR_ID = "7"  # DEFAULT_FOLDERS in target/server.py


def make(devices=6, duration=3.0, load="", events=""):
    text = f"""
name = "policy-life"
duration = {duration}
seed = 11
[auth]
users = {devices}
[population]
devices = {devices}
devices_per_user = 1
versions = {{ "14.1" = 2, "12.1" = 1, "16.1" = 1 }}
[load]
ramp_up = 0.3
think_time = 0.3
timeout = 10
graceful_stop = 2
mode = "poll"
{load}
{events}
"""
    return scenario.parse(text, "policy-life.toml")


def run(sc, **policy):
    state = TargetState(users=sc.auth.users, seed=4, inbox_items=24, policy=dict(SEED_POLICY, **policy))
    result = asyncio.run(start.run(sc, progress=False, target_state=state))
    return result, state


def records(result, state):
    return [state.devices[(d.user, d.ident.device_id)] for d in result.devices]


def attachments_of(state, user):
    return {ref: size for m in state.mailbox(user).inbox for ref, _name, size in m.attachments}


def test_truncation_filter_html_and_attachment_size_policy_reach_the_target():
    sc = make(load='html_bodies = true\nbody_truncation = 0\nemail_filter = "1 month"\ncalendar_filter = 0\n'
                   'sync_calendar = true\nopen_attachments = 1.0\nopen_truncated = 1.0\n')
    # MaxEmailBodyTruncationSize 0: headers only (MS-ASPROV 2.2.2.34), so every body comes truncated
    result, state = run(sc, AllowHTMLEmail="0", MaxEmailBodyTruncationSize="0", MaxEmailHTMLBodyTruncationSize="2",
                        MaxEmailAgeFilter="2", MaxCalendarAgeFilter="4", MaxAttachmentSize="100000")
    stats = result.stats
    assert stats.errors() == 0 and {d.state for d in result.devices} == {"provisioned"}
    n = len(result.devices)
    fetched_total = skipped_total = 0
    for d, rec in zip(result.devices, records(result, state)):
        seen = rec.observed
        # no HTML (AllowHTMLEmail 0), 0 bytes (MaxEmailBodyTruncationSize 0), 3 days (MaxEmailAgeFilter 2)
        assert seen[("sync", INBOX_ID)] == {("1", "0", "2")}, seen
        # the calendar: its own limit (MaxCalendarAgeFilter 4 = 2 weeks) instead of the user's "all"
        assert seen[("sync", CALENDAR_ID)] == {("1", "0", "4")}, seen
        # every attachment the user opened was fetched unless it is above MaxAttachmentSize
        sizes = attachments_of(state, d.user)
        allowed = {ref for ref, size in sizes.items() if size <= 100_000}
        assert set(seen.get("fetch", ())) == allowed and seen.get("fetch_count", 0) == len(allowed)
        assert d.attachments_fetched == len(allowed)
        fetched_total += len(allowed)
        skipped_total += len(sizes) - len(allowed)
        # the truncated bodies were downloaded whole (docs/protocol-notes.md, Which policies a device may
        # ignore: the truncation policies do not restrict
        # ItemOperations), and as plain text (AllowHTMLEmail 0 holds there too)
        assert seen["fetch_body"] == {("1", None)}
    assert fetched_total > 0 and skipped_total > 0  # the mailboxes have attachments on both sides of the limit
    effects = stats.policy_effects
    assert effects["html_downgraded"] == n and effects["truncation_clamped"] == n
    assert effects["email_filter_clamped"] == n and effects["calendar_filter_clamped"] == n
    assert effects["attachment_fetch"] == fetched_total and effects["attachment_skip_too_large"] == skipped_total
    assert "attachment_skip_disabled" not in effects
    # one ItemOperations per allowed attachment and per (truncated) message, all answered
    assert stats.requests[("ItemOperations", "200")] == fetched_total + 24 * n
    assert stats.eas_statuses[("ItemOperations", 1)] == fetched_total + 24 * n
    text = summary_text(stats, "policy-life", "embedded", n)
    assert "attachment fetch skipped by policy: above MaxAttachmentSize" in text
    assert "preference clamped: e-mail FilterType (MaxEmailAgeFilter)" in text
    assert stats.to_dict()["policy_effects"]["attachment_skip_too_large"] == skipped_total
    collector = metrics.RunCollector()
    collector.attach(stats, None, {})
    family = next(f for f in collector.collect() if f.name == "easload_policy_effects")
    values = {s.labels["effect"]: s.value for s in family.samples if s.name.endswith("_total")}
    assert values == {k: float(v) for k, v in effects.items()}


def test_attachments_disabled_means_no_attachment_fetch_at_the_target():
    sc = make(devices=4, load="open_attachments = 1.0\n")
    result, state = run(sc, AttachmentsEnabled="0")
    assert result.stats.errors() == 0
    for rec in records(result, state):
        assert "fetch" not in (rec.observed or {})
    opened = sum(len(attachments_of(state, d.user)) for d in result.devices)
    assert opened > 0 and result.stats.policy_effects["attachment_skip_disabled"] == opened
    assert ("ItemOperations", "200") not in result.stats.requests


def test_policy_tightened_mid_run_changes_what_the_target_receives():
    # the admin tightens truncation and the e-mail window at 1.5 s; every device re-provisions (144)
    # and from then on asks only for what the new policy allows
    sc = make(devices=4, duration=4.0, load="body_truncation = 5120\n",
              events='[[events]]\nat = 1.5\naction = "change_policy"\n'
                     'settings = { MaxEmailBodyTruncationSize = 1, MaxEmailAgeFilter = 1 }\n')
    result, state = run(sc)
    assert result.stats.errors() == 0
    assert result.stats.reprovisions["144"] + result.stats.reprovisions["449"] == 4
    for rec in records(result, state):
        seen = rec.observed
        assert seen[("sync", INBOX_ID)] == {("1", "5120", "0"), ("1", "1024", "1")}, seen
        assert seen[("last_sync", INBOX_ID)] == ("1", "1024", "1")
    assert result.stats.policy_effects["truncation_clamped"] == 4
    assert result.stats.policy_effects["email_filter_clamped"] == 4
