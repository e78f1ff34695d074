"""The mail figures on the results side: Stats.mail / Stats.push_latency -> summary.json's ``mail`` ->
the reader -> the one merge (easload merge and the HTML report), the text and HTML reports, the
Prometheus series; names from loadgen/results/mail.py, bounded."""

import re

import orjson
import pytest
from hdrh.histogram import HdrHistogram

from loadgen.results import html as htmlreport
from loadgen.results import summary
from loadgen.results.mail import EVENT_LABELS, MAIL_EVENTS, PUSH_KINDS, PUSH_LABELS
from loadgen.results.merge import merge
from loadgen.results.metrics import RunCollector
from loadgen.results.stats import LATENCY_BUCKETS, Stats
from loadgen.results.text import summary_text


def _stats(events, latencies, started=1000.0):
    """A Stats with one request, the mail ``events`` [(event, n)] and push ``latencies`` [(kind, seconds)]."""
    s = Stats()
    s.started = started
    s.record("Sync", 200, "ok", 0.01, 10, 10)
    for event, n in events:
        s.mail(event, n)
    for kind, seconds in latencies:
        s.push_latency(kind, seconds)
    s.ended = started + 10
    return s


def _saved(stats, tmp_path, name, **facts):
    """summary.json as easload run writes it, read back by the one reader."""
    path = tmp_path / name
    path.write_bytes(summary.dumps(summary.build(stats, scenario="mail", target="t", seed=1, **facts)))
    (data,) = summary.read([path])
    return data


def _hdr(seconds):
    h = HdrHistogram(1, 3_600_000_000, 3)
    for s in seconds:
        h.record_value(max(1, int(s * 1_000_000)))
    return h


A_LAT = [("to", 0.8), ("to", 1.2), ("cc", 2.5), ("bcc", 30.0), ("to", 0.05)]
B_LAT = [("to", 4.0), ("cc", 0.3), ("cc", 0.4), ("to", 95.0)]
A_EV = [("sent_new", 3), ("received", 5), ("read", 2), ("meeting_accepted", 1)]
B_EV = [("sent_reply", 1), ("received", 4), ("moved", 2), ("search_gal", 3)]


def test_unknown_names_are_other_and_the_labels_stay_bounded():
    s = Stats()
    for i in range(500):
        s.mail("made-up-%d" % i)
        s.push_latency("kind-%d" % i, 0.5)
    s.mail("read")
    s.push_latency("to", 1.0)
    assert set(s.mail_events) == {"other", "read"} and s.mail_events["other"] == 500
    assert set(s.push_hdr) == {"other", "to"} and s.push_hdr["other"].total == 500
    mail = s.to_dict()["mail"]
    assert set(mail["events"]) <= set(EVENT_LABELS) and set(mail["push_latency"]) <= set(PUSH_LABELS)


def test_push_latency_range_covers_a_millisecond_to_an_hour():
    s = Stats()
    for seconds in (0.001, 3599.0):
        s.push_latency("to", seconds)
    p = s.push_percentiles("to")
    assert p["p50_ms"] == pytest.approx(1.0, rel=1e-3) and p["max_ms"] == pytest.approx(3_599_000, rel=1e-3)
    # past an hour counts as an hour; a negative (two machines' clocks) or NaN latency as 0
    for seconds in (7200.0, float("inf"), -3.0, float("nan")):
        s.push_latency("cc", seconds)
    p = s.push_percentiles("cc")
    assert p["count"] == 4 and p["max_ms"] == pytest.approx(3_600_000, rel=1e-3) and p["p50_ms"] <= 0.001
    assert s.push_bucket_counts("cc")[-2] == 2  # the 3600 s bucket, not +Inf


def test_summary_read_and_merge_of_two_shards_is_the_sum(tmp_path):
    a = _saved(_stats(A_EV, A_LAT), tmp_path, "a.json", shard=[0, 2])
    b = _saved(_stats(B_EV, B_LAT, started=1002.0), tmp_path, "b.json", shard=[1, 2])
    stats, shards, _first = merge([a, b])
    assert shards["complete"]
    mail = stats.to_dict()["mail"]
    want = {}
    for event, n in A_EV + B_EV:
        want[event] = want.get(event, 0) + n
    assert mail["events"] == want
    assert list(mail["events"]) == [e for e in EVENT_LABELS if e in want]  # the reports' order
    for kind in PUSH_KINDS:
        ref = _hdr([sec for k, sec in A_LAT + B_LAT if k == kind])
        got = mail["push_latency"][kind]
        assert got["count"] == ref.get_total_count() == sum(
            s["mail"]["push_latency"].get(kind, {}).get("count", 0) for s in (a, b))
        for q in (50, 90, 99):
            assert got["p%d_ms" % q] == ref.get_value_at_percentile(q) / 1000, (kind, q)
        assert HdrHistogram.decode(mail["push_latency_histograms"][kind]).get_total_count() == got["count"]
    # the HTML report takes the same merge (its own results' rule: no shard numbers needed)
    m = htmlreport.merge([dict(a, shard=None), dict(b, shard=None)])
    assert m["mail"] == mail
    # and a merged summary reads back and merges again with the same figures
    again = _saved(stats, tmp_path, "m.json")
    assert merge([again])[0].to_dict()["mail"] == mail


def test_text_shows_mail_only_when_there_was_mail():
    quiet = summary_text(_stats([], []), "mail", "t", 1)
    assert "Mail" not in quiet and "Push latency" not in quiet
    text = summary_text(_stats(A_EV, A_LAT), "mail", "t", 1)
    block = text.split("\nMail\n", 1)[1]
    assert re.search(r"sent: new \(SendMail\)\s+3\b", block) and re.search(r"meeting accepted\s+1\b", block)
    row = re.search(r"^\s+to\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", block, re.M)
    ref = _hdr([sec for k, sec in A_LAT if k == "to"])
    assert int(row.group(1)) == 3 and float(row.group(2)) == pytest.approx(ref.get_value_at_percentile(50) / 1e6,
                                                                           abs=1e-3)
    assert re.search(r"^\s+bcc\s+1\s", block, re.M)


def _table(doc, name):
    m = re.search(r'<table data-table="%s"[^>]*>(.*?)</table>' % name, doc, re.S)
    if not m:
        return None
    body = m.group(1).split("<tbody>", 1)[1]
    return {re.sub(r"<[^>]+>", "", r[0]): [re.sub(r"<[^>]+>", "", c) for c in r[1:]]
            for r in (re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
                      for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S))}


def test_html_has_a_mail_section_only_when_there_was_mail():
    quiet = _stats([], [])
    quiet.sample(1.0, {"provisioned": 1})
    doc = htmlreport.render([orjson.loads(orjson.dumps(quiet.to_dict("mail")))])
    assert 'id="mail"' not in doc and _table(doc, "mail") is None and 'data-chart="mail"' not in doc
    busy = _stats(A_EV, A_LAT)
    busy.sample(1.0, {"provisioned": 1})
    doc = htmlreport.render([orjson.loads(orjson.dumps(busy.to_dict("mail")))])
    assert '<section id="mail">' in doc and 'data-chart="mail"' in doc
    events = _table(doc, "mail")
    assert events["sent: new (SendMail)"] == ["messages", "3"] and events["marked read"] == ["changes", "2"]
    push = _table(doc, "push_latency")
    assert list(push) == ["to", "cc", "bcc"] and push["to"][0] == "3"
    assert float(push["bcc"][1]) == pytest.approx(30.0, rel=1e-3)


def test_exposition_has_the_mail_series_with_bounded_labels():
    s = _stats(A_EV + [("no-such-event", 2)], A_LAT + [("no-such-kind", 1.0)])
    collector = RunCollector()
    collector.attach(s, dict, {"run_id": "x"})
    families = {f.name: f for f in collector.collect()}
    events = {smp.labels["event"]: smp.value for smp in families["easload_mail_events"].samples}
    assert set(events) == set(MAIL_EVENTS) | {"other"}  # every known event from zero, the unknown as other
    assert events["sent_new"] == 3 and events["other"] == 2 and events["oof"] == 0
    push = families["easload_push_latency_seconds"]
    counts = {smp.labels["kind"]: smp.value for smp in push.samples if smp.name.endswith("_count")}
    assert counts == {k: s.push_hdr[k].total for k in PUSH_LABELS}  # agreeing with the HDR figures
    les = {smp.labels["le"] for smp in push.samples if smp.name.endswith("_bucket")}
    assert len(les) == len(LATENCY_BUCKETS) + 1
    # more of the same adds no series
    before = sum(1 for f in families.values() for _ in f.samples)
    for i in range(100):
        s.mail("x%d" % i)
        s.push_latency("y%d" % i, i)
    assert sum(1 for f in collector.collect() for _ in f.samples) == before


def test_a_quiet_run_still_exports_the_mail_families_at_zero():
    collector = RunCollector()
    collector.attach(Stats(), dict, {"run_id": "x"})
    families = {f.name: f for f in collector.collect()}
    assert all(smp.value == 0 for smp in families["easload_mail_events"].samples)
    assert {smp.labels["kind"] for smp in families["easload_push_latency_seconds"].samples} == set(PUSH_KINDS)


@pytest.mark.parametrize("mail,needle", [
    ("lots", "field 'mail' must be an object"),
    ({"events": {"read": "two"}}, "field 'mail' 'events' 'read' must be a number"),
    ({"push_latency": {"to": {"p50_ms": "fast"}}}, "field 'mail' 'push_latency' 'to'"),
    ({"push_latency_histograms": {"to": "not hdr"}}, "field 'mail' 'push_latency_histograms' 'to' is not an hdrh"),
])
def test_a_damaged_mail_section_is_one_line(tmp_path, mail, needle):
    data = _stats(A_EV, A_LAT).to_dict("mail")
    data["mail"] = mail
    path = tmp_path / "summary.json"
    path.write_bytes(orjson.dumps(data))
    with pytest.raises(summary.SummaryError) as info:
        summary.read([path])
    text = str(info.value)
    assert needle in text and "\n" not in text and text.startswith(str(path))


def test_workers_ship_the_mail_counters_with_every_snapshot():
    """--workers: the parent's Stats is the sum of the workers' snapshots (loadgen/run/workers.py derives
    what it ships from Stats' attributes): mail events and the push-latency Prometheus buckets and sums
    travel without a list of their own."""
    from loadgen.run import workers

    parts = [_stats(A_EV, A_LAT), _stats(B_EV, B_LAT)]
    parent = Stats()
    workers._merge_into(parent, [workers._snapshot(p, [], final=False) for p in parts])
    assert parent.mail_events == parts[0].mail_events + parts[1].mail_events
    for kind in PUSH_KINDS:
        assert parent.push_bucket_counts(kind) == [x + y for x, y in zip(parts[0].push_bucket_counts(kind),
                                                                          parts[1].push_bucket_counts(kind))]
        assert parent.push_sums[kind] == pytest.approx(parts[0].push_sums[kind] + parts[1].push_sums[kind])


def test_the_report_and_easload_merge_are_one_merge(tmp_path):
    """The HTML report's totals are results/merge.py's: every figure both show is the same."""
    parts = []
    for i, (ev, lat) in enumerate(((A_EV, A_LAT), (B_EV, B_LAT))):
        s = _stats(ev, lat, started=1000.0 + i)
        s.record("Ping", 200, "ok", 30.0, 10, 10)
        s.record("Sync", 0, "timeout", 5.0, 10, 0)
        s.provisioning("provisioned", 1)
        s.events.append((1.5, "change_policy", "done"))
        parts.append(_saved(s, tmp_path, "p%d.json" % i, shard=[i, 2], devices_total=3))
    stats, shards, _first = merge(parts)
    want = stats.to_dict()
    m = htmlreport.merge(parts)
    for key in ("requests", "errors", "by_command_status", "by_command_outcome", "provisionings", "latency",
                "histograms", "timings", "mail", "events", "bytes_sent", "cancelled_in_flight"):
        assert m[key] == want[key], key
    assert m["devices_total"] == shards["devices_total"] == 6


def test_a_ping_the_device_interrupted_is_neither_an_error_nor_lost_from_the_accounting():
    from loadgen.results.outcomes import INTERRUPTED
    from loadgen.results.stats import Stats, accounting
    from loadgen.results.text import summary_text

    st = Stats()
    st.record("Ping", 200, "ok", 30.0, 40, 13, 1)
    st.record("Ping", 0, INTERRUPTED, 12.0, 40, 0)  # loadgen/device/mail.py ping_stopped
    st.record("Ping", 0, "timeout", 60.0, 40, 0)
    acc = accounting(st)
    assert (acc["sent"], acc["answered"], acc["interrupted"], acc["timeouts"], acc["errors"]) == (3, 1, 1, 1, 0)
    assert st.errors() == 1  # the timeout only
    text = summary_text(st, "s", "http://127.0.0.1", 1)
    assert "+ interrupted)" in text and "interrupted" in text.split("Accounting")[1]
