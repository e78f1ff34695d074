"""WBXML codec benchmark: ns per document and MB/s, compiled twin vs pure twin.

    python bench/wbxml_bench.py [--seconds 1.0]

Documents: the example server Provision response of the article (docs/protocol-notes.md, source [A]) (~45 policy
settings), a 14.1 initial Provision request with DeviceInformation (full encode
and pre-encoded Template render), and a Sync response with 100 e-mails with
~500-byte bodies.  Prints figures; asserts nothing.

Each figure is the minimum over repeated runs (``timeit.Timer`` on a statement,
no lambda frame in the measurement), the cases of a twin taking turns round by
round: on a shared machine the minimum is the run least disturbed by other
processes, and turns expose every case to the same disturbances.  The compiled decoder shares equal
leaves (tag, short text) between decodes; "decode provision response (new
values)" decodes documents whose every value is new to it, its slow path, and
"extract ... (new values)" extracts from those documents (the extractor takes
texts from that leaf cache too when they are there).
"""

import argparse
import os
import sys
import time
import timeit as _timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _wbxml import Slot, _pure  # noqa: E402
from loadgen.eas import commands  # noqa: E402
from loadgen.eas.policy import SEED_POLICY, policy_to_tree  # noqa: E402

try:
    from _wbxml import _codec as _compiled

    if _compiled.__file__.endswith(".py"):
        _compiled = None
except ImportError:
    _compiled = None


def provision_response():
    return ("Provision:Provision", [
        ("Provision:Status", "1"),
        ("Provision:Policies", [("Provision:Policy", [
            ("Provision:PolicyType", "MS-EAS-Provisioning-WBXML"), ("Provision:Status", "1"),
            ("Provision:PolicyKey", "2488355417"),
            ("Provision:Data", [policy_to_tree(dict(SEED_POLICY))]),
        ])]),
    ])


INFO = {"Model": "Contoso X12", "IMEI": "356938035643809", "FriendlyName": "Contoso X12 17-1",
        "OS": "Contoso Phone 12.4.1", "OSLanguage": "English", "PhoneNumber": "+15550000017",
        "MobileOperator": "ContosoTelecom", "UserAgent": "ContosoPhone/12.4"}


def provision_request_tree(fill=None):
    info = {k: (Slot(k) if fill is None else v) for k, v in INFO.items()} if fill is not False else INFO
    return ("Provision:Provision", [
        ("Settings:DeviceInformation", [("Settings:Set", [("Settings:" + k, v) for k, v in info.items()])]),
        ("Provision:Policies", [("Provision:Policy", [("Provision:PolicyType", "MS-EAS-Provisioning-WBXML")])]),
    ])


def sync_response(n=100):
    body = ("Hello, this is a test message body. " * 14)[:500]
    adds = []
    for i in range(n):
        adds.append(("AirSync:Add", [
            ("AirSync:ServerId", "1:%d" % i),
            ("AirSync:ApplicationData", [
                ("Email:To", '"User" <user%d@contoso.com>' % i),
                ("Email:From", '"Sender" <sender@contoso.com>'),
                ("Email:Subject", "Subject of message number %d" % i),
                ("Email:DateReceived", "2026-11-23T10:%02d:00.000Z" % (i % 60)),
                ("Email:DisplayTo", "User %d" % i),
                ("Email:Importance", "1"),
                ("Email:Read", "0"),
                ("AirSyncBase:Body", [
                    ("AirSyncBase:Type", "1"),
                    ("AirSyncBase:EstimatedDataSize", str(len(body))),
                    ("AirSyncBase:Data", body),
                ]),
                ("Email:MessageClass", "IPM.Note"),
                ("Email:InternetCPID", "65001"),
                ("Email:Flag", None),
                ("Email:ContentClass", "urn:content-classes:message"),
                ("AirSyncBase:NativeBodyType", "1"),
                ("Email2:ConversationId", bytes(range(16))),
                ("Email2:ConversationIndex", b"\x01\x02\x03\x04\x05"),
            ]),
        ]))
    return ("AirSync:Sync", [("AirSync:Collections", [("AirSync:Collection", [
        ("AirSync:SyncKey", "2"), ("AirSync:CollectionId", "1"), ("AirSync:Status", "1"),
        ("AirSync:Commands", adds)])])])


def provision_responses_new_values(count=2048):
    """``count`` Provision responses like the seed's, every value distinct from all others."""
    docs = []
    serial = 0
    for _ in range(count):
        tree = provision_response()
        leaves = []
        stack = [tree]
        while stack:
            node = stack.pop()
            if type(node[1]) is list:
                stack.extend(node[1])
            elif type(node[1]) is str:
                leaves.append(node)
        values = {}
        for leaf in leaves:
            serial += 1
            values[id(leaf)] = str(serial)

        def renew(node):
            tag, content = node
            if type(content) is list:
                return (tag, [renew(c) for c in content])
            return (tag, values.get(id(node), content))
        docs.append(_pure.encode(renew(tree)))
    return docs


def measure(cases, namespace, seconds):
    """Seconds per call of every case's statement: the minimum over rounds in which every case
    runs once (``number`` calls, at least 5 ms), so that all cases sample the same moments of
    a shared, noisy machine; rounds go on for ``seconds`` per case (at least 5 rounds)."""
    timers = []
    for _label, stmt, _size, _per_run in cases:
        timer = _timeit.Timer(stmt, globals=namespace)
        number = 1
        while True:
            dt = timer.timeit(number)
            if dt >= 0.005:
                break
            number = max(number * 2, int(number * 0.006 / max(dt, 1e-9)))
        timers.append([timer, number, dt])
    deadline = time.perf_counter() + seconds * len(cases)
    rounds = 1
    while rounds < 5 or time.perf_counter() < deadline:
        for entry in timers:
            entry[2] = min(entry[2], entry[0].timeit(entry[1]))
        rounds += 1
    return [best / number / per_run for (_t, number, best), (_l, _s, _z, per_run) in zip(timers, cases)]


def _rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def leak_check(count):
    """``count`` compiled decodes (and extracts) cycling over 6144 distinct documents -- seed-like
    Provision responses with new values, other documents of the same shape as the article's
    (docs/protocol-notes.md, source [A]) example, Sync responses --
    with RSS printed every tenth: the leaf cache must keep it flat once warm (bounded entries,
    no reference leak)."""
    docs = provision_responses_new_values(4096)
    docs += [_pure.encode(provision_response())] * 8
    docs += [_pure.encode(sync_response(n)) for n in range(1, 9)]
    base = len(docs)
    docs += provision_responses_new_values(2048 - 16)
    assert len(docs) == 6144 and base == 4112
    decode, extract = _compiled.decode, _compiled.extract
    wanted = ("Provision:Status", "Provision:PolicyKey")
    step = max(count // 10, 1)
    first = None
    t0 = time.perf_counter()
    for i in range(count):
        data = docs[i % len(docs)]
        decode(data)
        if i & 1:
            extract(data, wanted)
        if i % step == step - 1:
            rss = _rss_kib()
            first = rss if first is None else first
            print("%9d decodes: RSS %7d KiB (%+d KiB since the first tenth)" % (i + 1, rss, rss - first))
    print("%d decodes in %.1f s" % (count, time.perf_counter() - t0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--leak-check", type=int, metavar="N", default=0,
                    help="instead of timing: N compiled decodes of varied documents, printing RSS")
    args = ap.parse_args()
    if args.leak_check:
        if _compiled is None:
            sys.exit("wbxml_bench: --leak-check needs the compiled twin")
        leak_check(args.leak_check)
        return
    twins = [("pure", _pure)] + ([("cython", _compiled)] if _compiled is not None else [])
    prov = _pure.encode(provision_response())
    sync = _pure.encode(sync_response())
    req_tree = provision_request_tree(fill=False)
    req = _pure.encode(req_tree)
    print("documents: provision response %d B, provision request %d B, sync response %d B"
          % (len(prov), len(req), len(sync)))
    print("%-40s %-7s %12s %10s" % ("operation", "twin", "ns/doc", "MB/s"))
    fresh = provision_responses_new_values()
    fresh_size = sum(len(d) for d in fresh) / len(fresh)
    results = {}
    for name, mod in twins:
        tpl = mod.Template(provision_request_tree())
        values = tuple(INFO.values())
        wanted = ("Provision:Status", "Provision:PolicyKey")
        assert tpl.render(*values) == req
        ns = {"decode": mod.decode, "encode": mod.encode, "extract": mod.extract, "render": tpl.render,
              "ack": commands.provision_ack, "prov": prov, "sync": sync, "req_tree": req_tree, "values": values,
              "wanted": wanted, "fresh": fresh}
        cases = [
            ("decode provision response", "decode(prov)", len(prov), 1),
            ("decode provision response (new values)", "for d in fresh: decode(d)", fresh_size, len(fresh)),
            ("encode provision request (full)", "encode(req_tree)", len(req), 1),
            ("encode provision request (template)", "render(*values)", len(req), 1),
            ("ack request (template, 2 slots)", "ack('2488355417', 1)", 60, 1),
            ("decode sync response (100 mails)", "decode(sync)", len(sync), 1),
            ("extract Status+PolicyKey (provision)", "extract(prov, wanted)", len(prov), 1),
            ("extract Status+PolicyKey (new values)", "for d in fresh: extract(d, wanted)", fresh_size, len(fresh)),
        ]
        for (label, _stmt, size, _per_run), t in zip(cases, measure(cases, ns, args.seconds)):
            results[(label, name)] = t
            print("%-40s %-7s %12.0f %10.1f" % (label, name, t * 1e9, size / t / 1e6))
    if _compiled is not None:
        print()
        for label in ("decode provision response", "decode provision response (new values)",
                      "encode provision request (full)", "decode sync response (100 mails)"):
            print("speed-up %-40s %5.1fx" % (label, results[(label, "pure")] / results[(label, "cython")]))
        for suffix in ("provision", "new values"):
            decode_label = "decode provision response" + ("" if suffix == "provision" else " (new values)")
            print("%-49s %5.1fx" % (
                "extract vs full decode (cython, %s)" % suffix, results[(decode_label, "cython")] / results[("extract Status+PolicyKey (%s)" % suffix, "cython")]))
    else:
        print("(compiled twin not built: pure only)")


if __name__ == "__main__":
    main()
