"""WBXML codec benchmark: ns per document and MB/s, compiled twin vs pure twin.

    python bench/wbxml_bench.py [--seconds 1.0]

Documents (as issue 3 asks): the seed's server Provision response (~45 policy
settings), a 14.1 initial Provision request with DeviceInformation (full encode
and pre-encoded Template render), and a Sync response with 100 e-mails with
~500-byte bodies.  Prints figures; asserts nothing.
"""

import argparse
import sys
import time
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


def timeit(fn, seconds):
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return dt / n
        n = max(n * 2, int(n * seconds / max(dt, 1e-9) * 1.1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()
    twins = [("pure", _pure)] + ([("cython", _compiled)] if _compiled is not None else [])
    prov = _pure.encode(provision_response())
    sync = _pure.encode(sync_response())
    req_tree = provision_request_tree(fill=False)
    req = _pure.encode(req_tree)
    print("documents: provision response %d B, provision request %d B, sync response %d B"
          % (len(prov), len(req), len(sync)))
    print("%-38s %-7s %12s %10s" % ("operation", "twin", "ns/doc", "MB/s"))
    results = {}
    for name, mod in twins:
        tpl = mod.Template(provision_request_tree())
        values = tuple(INFO.values())
        wanted = ("Provision:Status", "Provision:PolicyKey")
        assert tpl.render(*values) == req
        cases = [
            ("decode provision response", lambda: mod.decode(prov), len(prov)),
            ("encode provision request (full)", lambda: mod.encode(req_tree), len(req)),
            ("encode provision request (template)", lambda: tpl.render(*values), len(req)),
            ("ack request (template, 2 slots)", lambda: commands.provision_ack("2488355417", 1), 60),
            ("decode sync response (100 mails)", lambda: mod.decode(sync), len(sync)),
            ("extract Status+PolicyKey (provision)", lambda: mod.extract(prov, wanted), len(prov)),
        ]
        for label, fn, size in cases:
            t = timeit(fn, args.seconds)
            results[(label, name)] = t
            print("%-38s %-7s %12.0f %10.1f" % (label, name, t * 1e9, size / t / 1e6))
    if _compiled is not None:
        print()
        for label in ("decode provision response", "encode provision request (full)",
                      "decode sync response (100 mails)"):
            print("speed-up %-34s %5.1fx" % (label, results[(label, "pure")] / results[(label, "cython")]))
        print("extract vs full decode (cython)             %5.1fx" % (
            results[("decode provision response", "cython")]
            / results[("extract Status+PolicyKey (provision)", "cython")]))
    else:
        print("(compiled twin not built: pure only)")


if __name__ == "__main__":
    main()
