"""Values a server controls never become unbounded label values or summary keys.

A scripted server answers every request with a random HTTP status, a random ``X-MS-ASThrottle``
reason and a random EAS status: the number of Prometheus series and of summary.json's keys stays
bounded (unknown values fold into ``other``), whatever the number of requests.
"""

import asyncio
import random

from hostile import ScriptedServer, http_response

from loadgen.results import metrics
from loadgen.device.life import _http_outcome
from loadgen.results.stats import EAS_STATUS_CAP, OTHER, Stats
from loadgen.results.text import summary_text
from loadgen.wire.transport import DeviceEndpoint, LeanTransport
from loadgen.eas.http import request_head


def _series(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


async def _hostile_run(requests):
    rng = random.Random(7)

    async def behave(conn, req):
        status = rng.choice((rng.randrange(0, 1000), rng.randrange(100, 600), 503))
        reason = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(12))
        conn.write(http_response(b"", status=b"%d Whatever" % status,
                                 extra=b"X-MS-ASThrottle: %s\r\nX-Eas-Status: %d\r\n"
                                 % (reason.encode(), rng.randrange(-5, 100_000))))
        return True

    stats = Stats()
    async with ScriptedServer(behave) as srv:
        t = LeanTransport(timeout=10)
        t.stats = stats
        eps = [DeviceEndpoint(request_head(srv.url, "u%d" % i, "p", "D%d" % i, "T", "14.1", "UA")) for i in range(4)]

        async def device(ep):
            for _ in range(requests // len(eps)):
                resp = await t.post(ep, "Sync", b"abc", "1")
                if not resp.status:
                    stats.record("Sync", 0, "conn_error", resp.elapsed, 3, 0)
                    continue
                # as loadgen/device/life.py records an answer, its throttling reason and EAS status
                stats.record("Sync", resp.status, _http_outcome(resp.status), resp.elapsed, 3, len(resp.body),
                             int(resp.headers["X-Eas-Status"]))
                stats.throttle(resp.headers["X-MS-ASThrottle"])

        await asyncio.gather(*(device(ep) for ep in eps))
        await t.close()
    return stats


async def test_random_statuses_and_throttle_reasons_stay_bounded():
    stats = await _hostile_run(2000)
    assert stats.total == 2000
    metrics.attach(stats, lambda: {}, run_id="bounded")
    try:
        series = _series(metrics.exposition())
    finally:
        metrics.attach(None, None)
    # 500 real HTTP statuses, a few outcomes, ~32 EAS statuses, 1 reason: not thousands
    assert len(series) < 1400, len(series)
    assert set(stats.throttled) == {OTHER}
    statuses = {s for (_c, _o, s) in stats.by_key}
    assert all(s == OTHER or 100 <= int(s) <= 599 for s in statuses - {"conn_error"})
    assert OTHER in statuses  # 0..99 and 600..999 were sent
    outcomes = {o for (_c, o, _s) in stats.by_key}
    assert outcomes <= {"ok", "throttled", "http_4xx", "http_5xx", "http_1xx", "http_2xx", "http_3xx",
                        "http_other", "conn_error"}, outcomes
    eas = [s for (c, s) in stats.eas_statuses]
    assert len(eas) <= EAS_STATUS_CAP + 1 and OTHER in eas
    d = stats.to_dict("s")
    assert len(d["eas_statuses"]) <= EAS_STATUS_CAP + 1 and len(d["throttled"]) == 1
    assert len(d["by_command_status"]) <= 502
    summary_text(stats, "s", "t", 4)  # "other" sorts with the numbers


async def test_more_requests_do_not_add_series():
    """Four times the requests, the same bound: the label sets do not grow with the run."""
    few = await _hostile_run(400)
    many = await _hostile_run(1600)
    assert len(many.eas_statuses) <= EAS_STATUS_CAP + 1 and len(many.throttled) == len(few.throttled) == 1
    assert len(many.to_dict("s")["eas_statuses"]) <= EAS_STATUS_CAP + 1


def test_known_values_are_kept():
    s = Stats()
    for reason in ("CommandFrequency", "OutOfBudgets", "BackOffDuration", "503", "unspecified"):
        s.throttle(reason)
    s.throttle("CommandFrequency")
    assert s.throttled == {"CommandFrequency": 2, "OutOfBudgets": 1, "BackOffDuration": 1, "503": 1,
                           "unspecified": 1}
    s.record("Sync", 200, "ok", 0.01, 1, 1, eas_status=1)
    s.record("Sync", 200, "ok", 0.01, 1, 1, eas_status=177)
    s.record("Sync", 200, "ok", 0.01, 1, 1, eas_status=0)
    s.record("Sync", 200, "ok", 0.01, 1, 1, eas_status=65536)
    s.record("Sync", 451, "http_4xx", 0.01, 1, 1)
    s.record("Sync", 302, "http_302", 0.01, 1, 1)
    assert dict(s.eas_statuses) == {("Sync", 1): 1, ("Sync", 177): 1, ("Sync", OTHER): 2}
    assert {k[2] for k in s.by_key} == {"200", "451", "302"}
    assert ("Sync", "http_3xx", "302") in s.by_key and s.failures == 2
    assert list(s.to_dict()["eas_statuses"]) == ["Sync 1", "Sync 177", "Sync other"]


def test_ok_outcomes_are_one_list():
    from loadgen.results.outcomes import OK_OUTCOMES

    s = Stats()
    for outcome in OK_OUTCOMES:
        s.record("Ping", 200, outcome, 0.01, 1, 1)
    assert s.failures == 0 and "adjusted" in OK_OUTCOMES
    for outcome in ("too_large", "redirect_refused", "internal_error"):
        s.record("Ping", 0, outcome, 0.01, 1, 0)
    assert s.failures == 3
    text = summary_text(s, "s", "t", 1)
    assert "too_large" in text and "internal_error" in text
