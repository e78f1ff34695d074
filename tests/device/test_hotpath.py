"""The device's hot path gives the answers of the plain, obvious code.

Each fast path (pre-encoded initial Provision, one-pass FolderSync parsing with
shared folders, the shared decode and parse of identical answers, the latency
recorded per interval and added up later) is checked against a reference built
the slow way: ``encode`` of the whole tree, ``findtext``, a fresh decode, hdrh's
own ``record_value``.
"""

import random

import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings, strategies as st

import _wbxml
from _wbxml import encode, findtext
from loadgen.device import answers, mail
from loadgen.eas import commands
from loadgen.eas.provisioning import Provisioner, Send
from loadgen.eas.versions import get as version
from loadgen.results.stats import Stats

# ---------------------------------------------------------------- initial Provision (MS-ASPROV 2.2.2.52, 14.1+)

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12)
_INFO = st.dictionaries(st.sampled_from(commands.DEVICE_INFO_FIELDS + ("EnableOutboundSMS", "Other")), _TEXT)


def _reference_initial(info, policy_type):
    children = []
    if info is not None:
        fields = [("Settings:" + n, info[n]) for n in commands.DEVICE_INFO_FIELDS if info.get(n)]
        if "EnableOutboundSMS" in info:
            fields.append(("Settings:EnableOutboundSMS", str(info["EnableOutboundSMS"])))
        children.append(("Settings:DeviceInformation", [("Settings:Set", fields)]))
    children.append(("Provision:Policies", [("Provision:Policy", [("Provision:PolicyType", policy_type)])]))
    return encode(("Provision:Provision", children))


@settings(max_examples=300, deadline=None)
@given(info=st.one_of(st.none(), _INFO), policy_type=st.sampled_from(["MS-EAS-Provisioning-WBXML", "MS-WAP-Provisioning-XML"]))
def test_initial_provision_template_equals_encode(info, policy_type):
    assert commands.provision_initial(info, policy_type) == _reference_initial(info, policy_type)


def test_initial_provision_send_is_built_once_per_device():
    prov = Provisioner(version("14.1"), device_info={"Model": "X", "IMEI": "1"})
    first = prov.start()
    prov.failed()
    assert prov.start() is first and isinstance(first, Send) and first.policy_key == "0"


# ---------------------------------------------------------------- FolderSync (MS-ASCMD 2.2.1.5)

def _reference_foldersync(tree):
    """The parser as first written: findtext over each Add."""
    added = []
    changed = deleted = 0
    for tag, content in tree[1] if type(tree[1]) is list else ():
        if tag != "FolderHierarchy:Changes" or type(content) is not list:
            continue
        for ctag, ccontent in content:
            if ctag == "FolderHierarchy:Add":
                add = (ctag, ccontent)
                kind = findtext(add, "FolderHierarchy:Type")
                try:
                    kind = int(kind.split()[0]) if kind else 0
                except (ValueError, IndexError):
                    kind = 0
                added.append((findtext(add, "FolderHierarchy:ServerId", ""), findtext(add, "FolderHierarchy:ParentId", "0"),
                              findtext(add, "FolderHierarchy:DisplayName", ""), kind))
            elif ctag == "FolderHierarchy:Update":
                changed += 1
            elif ctag == "FolderHierarchy:Delete":
                deleted += 1
    return (commands.root_status(tree), findtext(tree, "FolderHierarchy:SyncKey"), added, changed, deleted)


_LEAF = st.one_of(st.none(), st.just([]), st.sampled_from(["1", "2", " 8 ", "x", "", "12 extra"]))
_FIELD = st.tuples(st.sampled_from(["FolderHierarchy:ServerId", "FolderHierarchy:ParentId", "FolderHierarchy:DisplayName",
                                    "FolderHierarchy:Type", "FolderHierarchy:Count"]),
                   st.one_of(_LEAF, st.just([("FolderHierarchy:Type", "2")])))
_CHANGE = st.tuples(st.sampled_from(["FolderHierarchy:Add", "FolderHierarchy:Update", "FolderHierarchy:Delete",
                                     "FolderHierarchy:Count"]), st.one_of(st.lists(_FIELD, max_size=6), _LEAF))
_ROOT_CHILD = st.one_of(
    st.tuples(st.sampled_from(["FolderHierarchy:Status", "FolderHierarchy:SyncKey"]), _LEAF),
    st.tuples(st.just("FolderHierarchy:Changes"), st.one_of(st.lists(_CHANGE, max_size=8), _LEAF)),
)


@settings(max_examples=500, deadline=None)
@given(children=st.one_of(st.lists(_ROOT_CHILD, max_size=6), _LEAF))
def test_foldersync_parser_equals_findtext_reading(children):
    tree = ("FolderHierarchy:FolderSync", children)
    got = commands.parse_foldersync(tree)
    status, key, added, changed, deleted = _reference_foldersync(tree)
    assert (got.status, got.sync_key, got.changed, got.deleted) == (status, key, changed, deleted)
    assert [tuple(f) for f in got.added] == added
    again = commands.parse_foldersync(tree)  # the second time from the shared folders: equal
    assert again.added == got.added


# ---------------------------------------------------------------- identical answers decoded and parsed once

def _provision_answer(key, with_policy):
    from loadgen.eas.policy import SEED_POLICY, policy_to_tree

    policy = [("Provision:PolicyType", "MS-EAS-Provisioning-WBXML"), ("Provision:Status", "1"),
              ("Provision:PolicyKey", key)]
    if with_policy:
        policy.append(("Provision:Data", [policy_to_tree(dict(SEED_POLICY))]))
    return encode(("Provision:Provision", [("Provision:Status", "1"), ("Provision:Policies", [("Provision:Policy", policy)])]))


def test_shared_decode_and_parse_equal_fresh_ones():
    bodies = [_provision_answer(str(k), k % 2 == 0) for k in range(40)]
    random.Random(5).shuffle(bodies)
    for body in bodies * 3:
        tree = answers._decode(body)
        assert tree == _wbxml.decode(body)
        assert answers._decode(bytes(body)) is tree  # equal bytes, another object: the same tree
        parsed = answers._parse_shared(commands.parse_provision, tree)
        assert parsed == commands.parse_provision(_wbxml.decode(body))
        assert answers._parse_shared(commands.parse_provision, tree) is parsed


def test_shared_decode_is_bounded_and_skips_large_bodies(monkeypatch):
    monkeypatch.setattr(answers, "_SHARE_MAX_ENTRIES", 8)
    answers._SHARED_TREES.clear()
    answers._SHARED_PARSES.clear()
    for k in range(50):
        answers._decode(_provision_answer("k%d" % k, False))
        assert len(answers._SHARED_TREES) <= 8 and len(answers._SHARED_PARSES) <= 8
    big = _provision_answer("big", True) + b""
    monkeypatch.setattr(answers, "_SHARE_MAX_BODY", len(big) - 1)
    assert answers._decode(big) is not answers._decode(big)


def test_parse_of_a_tree_not_shared_is_not_kept():
    tree = _wbxml.decode(_provision_answer("77", False))
    before = len(answers._SHARED_PARSES)
    assert answers._parse_shared(commands.parse_provision, tree).policy_key == "77"
    assert len(answers._SHARED_PARSES) == before


def test_malformed_body_is_not_kept():
    with pytest.raises(_wbxml.WBXMLError):
        answers._decode(b"\x03\x01\x6a\x00\x45")
    assert b"\x03\x01\x6a\x00\x45" not in answers._SHARED_TREES


# ---------------------------------------------------------------- latency: per interval, added up later

def test_latency_recorded_per_interval_adds_up_to_hdrh():
    stats = Stats()
    ref = HdrHistogram(1, 3_600_000_000, 3)
    rng = random.Random(3)
    for i in range(3000):
        seconds = rng.choice([rng.random() * 0.01, rng.random() * 5, rng.random() * 4000, 0.0])
        stats.record("Sync", 200, "ok", seconds, 1, 1)
        ref.record_value(max(1, min(int(seconds * 1e6), 3_600_000_000)))
        if i % 700 == 699:
            stats.sample(1.0, {})
        if i % 1000 == 500:  # read mid-interval: a merged copy, nothing counted twice
            assert stats.latency["Sync"].histogram().get_total_count() == i + 1
    assert stats.interval_latency  # the last interval is still open
    hist = stats.latency["Sync"].histogram()
    assert hist.get_total_count() == ref.get_total_count() == 3000
    assert (hist.get_min_value(), hist.get_max_value()) == (ref.get_min_value(), ref.get_max_value())
    for p in (1, 50, 90, 99, 99.9, 100):
        assert hist.get_value_at_percentile(p) == ref.get_value_at_percentile(p)
    assert stats.percentiles("Sync")["count"] == 3000
    assert len(stats.series) == 4 and all("Sync" in point["latency"] for point in stats.series)


# ---------------------------------------------------------------- opened items beyond the device's queue are counted

def test_fetch_dropped_when_the_queue_is_full_is_counted():
    from loadgen import scenario
    from loadgen.eas.commands import AttachmentRef, SyncResponse
    from loadgen.run.engine import build_population

    sc = scenario.parse("[population]\ndevices = 1\n[load]\nopen_attachments = 1.0\nopen_truncated = 1.0\n", "t.toml")
    (dev,), stats = build_population(sc, "http://127.0.0.1:1/Microsoft-Server-ActiveSync")
    resp = SyncResponse(status=1, attachments=[AttachmentRef("1:%d" % i, "1:%d:0" % i, 10) for i in range(70)],
                        truncated=["1:%d" % i for i in range(50)])
    dev._open(resp, 1.0, 1.0)
    assert len(dev.fetches) == mail._MAX_PENDING_FETCHES == 100
    assert stats.policy_effects[mail.FETCH_QUEUE_FULL] == 20  # 120 opened, 100 queued
    assert stats.policy_effects["attachment_skip_disabled"] == 0


def test_interval_recorders_are_used_again_and_start_empty():
    stats = Stats()
    stats.record("Ping", 200, "ok", 0.5, 1, 1)
    stats.start_lag(0.2, 0.1)
    first, lag = stats.interval_latency["Ping"], stats.interval_lag
    stats.sample(1.0, {})
    stats.record("Sync", 200, "ok", 0.001, 1, 1)  # another command takes a recorder emptied at the sample
    again = stats.interval_latency["Sync"]
    assert any(again is r for r in (first, lag)) and again.total == 1  # no new 184 KiB array
    stats.sample(2.0, {})
    last = stats.series[-1]
    assert set(last["latency"]) == {"Sync"} and "lag" not in last
    hist = stats.latency["Sync"].histogram()
    assert hist.get_total_count() == 1 and hist.get_max_value() < 2000  # nothing of the Ping's 0.5 s
    assert stats.latency["Ping"].histogram().get_total_count() == 1
