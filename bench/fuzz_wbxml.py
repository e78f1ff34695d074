#!/usr/bin/env python3
"""Differential mutation fuzzer for the WBXML codec twins.

    python bench/fuzz_wbxml.py [--count 1000000] [--seed N] [--seconds S] [--jobs J]
    python bench/fuzz_wbxml.py --replay 03016a0045020001   # one reproducer, both twins

Runs the pure twin (``_wbxml._pure``) and, when it is built, the compiled twin
(``_wbxml._codec`` as an extension module, not the ``.py`` fallback) over
mutated real documents and checks, for every input:

* both twins give the same verdict: the same tree, or the same exception class
  with the same byte offset;
* nothing but ``_wbxml.WBXMLError`` subclasses escapes ``decode`` (MemoryError,
  RecursionError, IndexError, SystemError, UnicodeError... are bugs);
* no input takes longer than ``--slow`` seconds (per-input time guard); a real
  hang -- or a segfault in the compiled twin -- kills the worker process, and
  the parent prints the input it was working on (kept in a shared file);
* every successfully decoded tree re-encodes (both twins, same bytes) and
  decodes back to the same tree;
* ``extract`` raises nothing but ``WBXMLError`` subclasses, and on every valid
  document both twins extract the same texts (fixed tags and tags the
  document holds).

Seed corpus: realistic EAS documents (Provision request / response with the
seed policy / acknowledgement, FolderSync, Sync with e-mails including opaque
data, Settings, Ping, ItemOperations), hand-made header variants (string
table, STR_T, ENTITY, multi-byte public id) and the libwbxml differential
corpus (one document per code page holding every tag of the page).  Mutations:
bit flips, byte insert / delete / replace, truncation, splicing two documents,
chunk duplication, interesting tokens, mb_u_int32 boundary values (also over-long
and overflowing ones), and deep nesting around MAX_DEPTH and far beyond.

Prints inputs/s, counts per verdict class, and every disagreement / crash /
round-trip failure with a reproducer hex dump (first few per signature).  Exit
status 1 on any finding.  Not a test: it asserts nothing under pytest.
"""

import argparse
import collections
import faulthandler
import json
import mmap
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _wbxml import _pure  # noqa: E402
from _wbxml.codepages import OPAQUE_TAGS, PAGES  # noqa: E402
from _wbxml.errors import WBXMLError  # noqa: E402

MAX_INPUT = 1 << 20  # mutated inputs are capped at 1 MiB (the state file holds one)
STATE_SIZE = MAX_INPUT + 64
REPORT_PER_SIGNATURE = 3


def load_compiled():
    try:
        from _wbxml import _codec
    except ImportError:
        return None
    if (getattr(_codec, "__file__", "") or "").endswith(".py"):
        return None
    return _codec


# --------------------------------------------------------------------------- seed corpus


def _realistic_trees():
    from loadgen.eas.policy import SEED_POLICY, policy_to_tree

    device = [("Settings:Model", "CONTOSO"), ("Settings:IMEI", "123456789012345"),
              ("Settings:FriendlyName", "Matt's Phone"), ("Settings:OS", "Contoso Phone1.0.1234"),
              ("Settings:OSLanguage", "English"), ("Settings:PhoneNumber", "555-555-1234"),
              ("Settings:MobileOperator", "ContosoTelecom"), ("Settings:UserAgent", "ContosoPhone1"),
              ("Settings:EnableOutboundSMS", "1")]
    provision_request = ("Provision:Provision", [
        ("Settings:DeviceInformation", [("Settings:Set", device)]),
        ("Provision:Policies", [("Provision:Policy", [("Provision:PolicyType", "MS-EAS-Provisioning-WBXML")])]),
    ])
    provision_response = ("Provision:Provision", [
        ("Provision:Status", "1"),
        ("Provision:Policies", [("Provision:Policy", [
            ("Provision:PolicyType", "MS-EAS-Provisioning-WBXML"), ("Provision:Status", "1"),
            ("Provision:PolicyKey", "2488355417"),
            ("Provision:Data", [policy_to_tree(dict(SEED_POLICY))]),
        ])]),
    ])
    provision_ack = ("Provision:Provision", [("Provision:Policies", [("Provision:Policy", [
        ("Provision:PolicyType", "MS-EAS-Provisioning-WBXML"), ("Provision:PolicyKey", "2488355417"),
        ("Provision:Status", "1")])])])
    remote_wipe = ("Provision:Provision", [("Provision:Status", "1"), ("Provision:RemoteWipe", None)])
    foldersync_req = ("FolderHierarchy:FolderSync", [("FolderHierarchy:SyncKey", "0")])
    foldersync_resp = ("FolderHierarchy:FolderSync", [
        ("FolderHierarchy:Status", "1"), ("FolderHierarchy:SyncKey", "1"),
        ("FolderHierarchy:Changes", [("FolderHierarchy:Count", "4")] + [
            ("FolderHierarchy:Add", [
                ("FolderHierarchy:ServerId", str(i)), ("FolderHierarchy:ParentId", "0"),
                ("FolderHierarchy:DisplayName", name), ("FolderHierarchy:Type", kind)])
            for i, (name, kind) in enumerate((("Inbox", "2"), ("Éléments envoyés", "5"),
                                              ("Calendar", "8"), ("Contacts", "9")), 1)]),
    ])
    mails = []
    for i in range(3):
        mails.append(("AirSync:Add", [
            ("AirSync:ServerId", "1:%d" % i),
            ("AirSync:ApplicationData", [
                ("Email:To", '"Zoë" <zoe@example.com>'), ("Email:From", "bob@example.com"),
                ("Email:Subject", "Réunion n°%d 📅" % i), ("Email:DateReceived", "2024-05-01T10:00:00.000Z"),
                ("Email:DisplayTo", "Zoë"), ("Email:Importance", "1"), ("Email:Read", "0"),
                ("AirSyncBase:Body", [("AirSyncBase:Type", "4"), ("AirSyncBase:EstimatedDataSize", "60"),
                                      ("AirSyncBase:Data",
                                       b"From: bob@example.com\r\nSubject: hi\r\n\r\nHello \xff\x00 world\r\n")]),
                ("AirSyncBase:Attachments", [("AirSyncBase:Attachment", [
                    ("AirSyncBase:DisplayName", "a.pdf"), ("AirSyncBase:FileReference", "1%3a0%3a0"),
                    ("AirSyncBase:Method", "1"), ("AirSyncBase:EstimatedDataSize", "12345")])]),
                ("Email:MessageClass", "IPM.Note"), ("Email:InternetCPID", "65001"),
                ("Email2:ConversationId", bytes(range(i, i + 16))),
                ("Email2:ConversationIndex", b"\x01\xd9\x9b\x00\xff"),
                ("AirSyncBase:NativeBodyType", "1"),
            ])]))
    sync_resp = ("AirSync:Sync", [("AirSync:Collections", [("AirSync:Collection", [
        ("AirSync:SyncKey", "2"), ("AirSync:CollectionId", "1"), ("AirSync:Status", "1"),
        ("AirSync:Commands", mails), ("AirSync:MoreAvailable", None)])])])
    sync_req = ("AirSync:Sync", [("AirSync:Collections", [("AirSync:Collection", [
        ("AirSync:SyncKey", "1"), ("AirSync:CollectionId", "1"), ("AirSync:DeletesAsMoves", "1"),
        ("AirSync:GetChanges", None), ("AirSync:WindowSize", "100"),
        ("AirSync:Options", [("AirSync:FilterType", "3"), ("AirSyncBase:BodyPreference", [
            ("AirSyncBase:Type", "2"), ("AirSyncBase:TruncationSize", "51200")])])])])])
    settings = ("Settings:Settings", [
        ("Settings:Oof", [("Settings:Get", [("Settings:BodyType", "Text")])]),
        ("Settings:DeviceInformation", [("Settings:Set", device)]),
        ("Settings:UserInformation", [("Settings:Get", None)]),
    ])
    ping = ("Ping:Ping", [("Ping:HeartbeatInterval", "900"), ("Ping:Folders", [
        ("Ping:Folder", [("Ping:Id", "1"), ("Ping:Class", "Email")])])])
    fetch = ("ItemOperations:ItemOperations", [("ItemOperations:Response", [("ItemOperations:Fetch", [
        ("ItemOperations:Status", "1"), ("AirSyncBase:FileReference", "1%3a0%3a0"),
        ("ItemOperations:Properties", [("AirSyncBase:ContentType", "application/pdf"),
                                       ("ItemOperations:Data", "JVBERi0xLjQK")])])])])
    return [("provision-request", provision_request), ("provision-response", provision_response),
            ("provision-ack", provision_ack), ("remote-wipe", remote_wipe),
            ("foldersync-request", foldersync_req), ("foldersync-response", foldersync_resp),
            ("sync-response-mails", sync_resp), ("sync-request", sync_req), ("settings", settings),
            ("ping", ping), ("itemoperations-fetch", fetch)]


def _page_trees():
    """The libwbxml differential corpus: per page, every tag as a leaf of the page's first tag."""
    docs = []
    for _number, page, _ns, _aliases, _section, tags in PAGES:
        tokens = sorted(tags)
        kids = []
        for t in tokens:
            if (page, tags[t]) in OPAQUE_TAGS:
                kids.append(("%s:%s" % (page, tags[t]), bytes([0x00, 0xFF, 0xC3, t]) + b"opaque"))
            else:
                kids.append(("%s:%s" % (page, tags[t]), "p%s-t%02x" % (page, t)))
        docs.append(("page-" + page, ("%s:%s" % (page, tags[tokens[0]]), kids)))
    return docs


def _hand_made():
    h = bytes([0x03, 0x01, 0x6A, 0x00])
    return [
        # public id 0 -> string table index 0, string table "abc\0", STR_T 0
        ("strtbl-publicid", bytes([0x03, 0x00, 0x00, 0x6A, 0x04]) + b"abc\x00"
         + bytes([0x00, 0x07, 0x56, 0x52, 0x83, 0x00, 0x01, 0x01])),
        # string table with two strings, STR_T 4 and 0, mixed with STR_I
        ("strtbl-refs", bytes([0x03, 0x01, 0x6A, 0x08]) + b"abc\x00xyz\x00"
         + bytes([0x00, 0x07, 0x56, 0x52, 0x83, 0x04, 0x03]) + b"-\x00" + bytes([0x83, 0x00, 0x01, 0x01])),
        # ENTITY (U+00E9, U+1F4F1) inside text
        ("entities", h + bytes([0x00, 0x12, 0x45, 0x57, 0x03]) + b"Zo" + bytes([0x00, 0x02, 0x81, 0x69, 0x02,
                                                                                 0x87, 0xE9, 0x11, 0x01, 0x01])),
        # multi-byte public id (0x81 0x01 = 129) and version 1.2
        ("mb-publicid", bytes([0x02, 0x81, 0x01, 0x6A, 0x00, 0x00, 0x07, 0x56, 0x52, 0x03, 0x30, 0x00, 0x01, 0x01])),
        # opaque split in two chunks, zero-length opaque
        ("opaque-chunks", h + bytes([0x00, 0x0E, 0x45, 0x4A, 0xC3, 0x02, 0x00, 0xFF, 0xC3, 0x00, 0xC3, 0x01, 0x41,
                                     0x01, 0x01])),
        # empty elements: no content flag, content flag with nothing, STR_I ""
        ("empties", h + bytes([0x45, 0x0B, 0x4B, 0x01, 0x4B, 0x03, 0x00, 0x01, 0x01])),
    ]


def seed_corpus():
    seeds = []
    for name, tree in _realistic_trees() + _page_trees():
        seeds.append((name, _pure.encode(tree)))
    seeds.extend(_hand_made())
    for name, data in seeds:  # a seed that does not decode is a bug in this script
        _pure.decode(data)
    return seeds


# --------------------------------------------------------------------------- mutations


def mb(value):
    """mb_u_int32 encoding of value (any non-negative int; > 32 bits gives an overflowing one)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


MB_BOUNDARY = [mb(v) for v in (0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000, 0xFFFFFFF, 0x10000000,
                               0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, 0x100000000, 1 << 35, 0x10FFFF,
                               0x110000, 0xD800, 0xDFFF)] + [
    b"\x80\x00", b"\x80\x80\x80\x80\x00", b"\x80\x80\x80\x80\x80\x00", b"\x8F\xFF\xFF\xFF\x7F",
    b"\x90\x80\x80\x80\x00", b"\xFF\xFF\xFF\xFF\xFF\x7F", b"\x80" * 12 + b"\x01", b"\xFF", b"\x80\x80",
]
GLOBAL_TOKENS = [0x00, 0x01, 0x02, 0x03, 0x04, 0x40, 0x41, 0x42, 0x43, 0x44, 0x80, 0x81, 0x82, 0x83, 0x84,
                 0xC0, 0xC1, 0xC2, 0xC3, 0xC4]
MB_TOKENS = [0x02, 0x83, 0xC3, 0x80, 0x81, 0x82, 0x04, 0x44, 0x84, 0xC4]  # tokens followed by an mb_u_int32
INTERESTING = bytes([0x00, 0x01, 0x03, 0x05, 0x3F, 0x40, 0x45, 0x7F, 0x80, 0x83, 0xBF, 0xC3, 0xFF, 0x19, 0x1A, 0x6A])


class Mutator:
    def __init__(self, rng, seeds):
        self.rng = rng
        self.seeds = [d for _n, d in seeds]
        self.ops = [
            (self.bit_flip, 12), (self.byte_replace, 10), (self.byte_insert, 8), (self.byte_delete, 8),
            (self.truncate, 6), (self.splice, 6), (self.duplicate_chunk, 4), (self.delete_chunk, 4),
            (self.token_insert, 8), (self.mb_boundary, 8), (self.mb_header, 3), (self.page_switch, 4),
            (self.deep_nesting, 2), (self.deep_nesting_inside, 2), (self.text_bytes, 4),
        ]
        self.funcs = [f for f, _w in self.ops]
        self.cum = []
        total = 0
        for _f, w in self.ops:
            total += w
            self.cum.append(total)

    def __call__(self):
        rng = self.rng
        data = bytearray(rng.choice(self.seeds))
        for _ in range(1 + (rng.random() < 0.35) + (rng.random() < 0.15)):
            f = self.funcs[_bisect(self.cum, rng.random() * self.cum[-1])]
            data = f(data)
            if len(data) > MAX_INPUT:
                data = data[:MAX_INPUT]
        return bytes(data)

    def _pos(self, data, end_ok=True):
        return self.rng.randint(0, len(data) if end_ok else max(len(data) - 1, 0))

    def bit_flip(self, d):
        if d:
            i = self._pos(d, False)
            d[i] ^= 1 << self.rng.randrange(8)
        return d

    def byte_replace(self, d):
        if d:
            i = self._pos(d, False)
            d[i] = self.rng.choice(INTERESTING) if self.rng.random() < 0.5 else self.rng.randrange(256)
        return d

    def byte_insert(self, d):
        i = self._pos(d)
        b = self.rng.choice(INTERESTING) if self.rng.random() < 0.5 else self.rng.randrange(256)
        d[i:i] = bytes([b])
        return d

    def byte_delete(self, d):
        if d:
            i = self._pos(d, False)
            del d[i:i + self.rng.choice((1, 1, 1, 2, 4))]
        return d

    def truncate(self, d):
        return d[:self._pos(d)]

    def splice(self, d):
        other = self.rng.choice(self.seeds)
        i, j = self._pos(d), self.rng.randint(0, len(other))
        return d[:i] + other[j:]

    def duplicate_chunk(self, d):
        if d:
            i = self._pos(d, False)
            n = self.rng.randint(1, min(64, len(d) - i))
            k = self._pos(d)
            d[k:k] = d[i:i + n] * self.rng.choice((1, 1, 2, 8))
        return d

    def delete_chunk(self, d):
        if d:
            i = self._pos(d, False)
            del d[i:i + self.rng.randint(1, 64)]
        return d

    def token_insert(self, d):
        i = self._pos(d)
        t = self.rng.choice(GLOBAL_TOKENS)
        extra = b""
        if t in MB_TOKENS and self.rng.random() < 0.7:
            extra = self.rng.choice(MB_BOUNDARY)
        elif t in (0x03, 0x43, 0x83, 0xC3) and self.rng.random() < 0.3:
            extra = b"x\x00"
        d[i:i] = bytes([t]) + extra
        return d

    def mb_boundary(self, d):
        """Replace the mb_u_int32 after an OPAQUE/STR_T/ENTITY token (or insert one with a token)."""
        spots = [i for i in range(4, len(d)) if d[i] in (0xC3, 0x83, 0x02)]
        value = self.rng.choice(MB_BOUNDARY)
        if spots and self.rng.random() < 0.8:
            i = self.rng.choice(spots) + 1
            j = i
            while j < len(d) and d[j] & 0x80 and j - i < 6:
                j += 1
            d[i:j + 1] = value
        else:
            i = self._pos(d)
            d[i:i] = bytes([self.rng.choice((0xC3, 0x83, 0x02))]) + value
        return d

    def mb_header(self, d):
        """Rewrite the header: public id / string table length with boundary values."""
        rng = self.rng
        body_start = _body_start(d)
        if body_start is None:
            return d
        version = rng.choice((0x03, 0x03, 0x01, 0x02, 0x00, 0x04, 0x13))
        public = rng.choice((b"\x01", b"\x00" + rng.choice(MB_BOUNDARY), rng.choice(MB_BOUNDARY)))
        charset = rng.choice((b"\x6A", b"\x6A", b"\x00", b"\x04", b"\x80\x6A", rng.choice(MB_BOUNDARY)))
        if rng.random() < 0.5:
            table = bytes(rng.randrange(256) for _ in range(rng.randint(0, 8)))
            strtbl = mb(max(0, len(table) + rng.choice((0, 0, 0, 1, -1, 100)))) if table or rng.random() < 0.5 else b"\x00"
            strtbl += table
        else:
            strtbl = rng.choice(MB_BOUNDARY)
        return bytearray(bytes([version]) + public + charset + strtbl) + d[body_start:]

    def page_switch(self, d):
        i = self._pos(d)
        page = self.rng.choice((0, 1, 7, 14, 17, 18, 24, 25, 26, 27, 99, 255))
        d[i:i] = bytes([0x00, page])
        return d

    def deep_nesting(self, d):
        rng = self.rng
        depth = rng.choice((510, 511, 512, 513, 514, 1000, 10000, 100000, 400000))
        tag = bytes([0x40 | rng.randrange(5, 0x40)])
        close = rng.random()
        body = bytes([0x00, rng.choice((0, 1, 7, 14, 17))]) + tag * depth
        if close < 0.4:
            body += b"\x01" * depth
        elif close < 0.7:
            body += b"\x03x\x00" + b"\x01" * depth
        elif close < 0.85:
            body += b"\x01" * (depth - 1)  # one END short
        else:
            body += b"\x01" * (depth + 1)  # one END too many
        return bytearray(b"\x03\x01\x6A\x00") + body

    def deep_nesting_inside(self, d):
        """Insert a run of content-flagged open tags (and maybe their ENDs) inside a real document."""
        rng = self.rng
        depth = rng.choice((100, 511, 512, 513, 3000))
        i = self._pos(d)
        tag = bytes([d[i - 1] | 0x40]) if 4 < i <= len(d) and (d[i - 1] & 0x3F) >= 5 else b"\x45"
        run = tag * depth + (b"\x01" * depth if rng.random() < 0.7 else b"")
        d[i:i] = run
        return d

    def text_bytes(self, d):
        """Put awkward bytes inside an inline string: invalid UTF-8, surrogates, NUL-adjacent, overlong."""
        spots = [i for i in range(4, len(d)) if d[i] == 0x03]
        if not spots:
            return d
        i = self.rng.choice(spots) + 1
        junk = self.rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe2\x82",
                                b"\xf0\x9f\x93\xb1", b"\xef\xbb\xbf", b"\r\n", b"\x7f"))
        d[i:i] = junk
        return d


def _bisect(cum, x):
    lo, hi = 0, len(cum)
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _skip_mb(d, i):
    while i < len(d) and d[i] & 0x80:
        i += 1
    return i + 1 if i < len(d) else None


def _body_start(d):
    """Offset of the first body byte of a well-formed-ish header, or None."""
    if len(d) < 4:
        return None
    i = _skip_mb(d, 1)
    if i is None:
        return None
    if d[1] == 0:
        i = _skip_mb(d, i)
    i = i and _skip_mb(d, i)
    if i is None or i >= len(d):
        return None
    start = i
    length = 0
    while i < len(d) and d[i] & 0x80 and i - start < 5:
        length = (length << 7) | (d[i] & 0x7F)
        i += 1
    if i >= len(d):
        return None
    length = (length << 7) | d[i]
    end = i + 1 + length
    return end if end <= len(d) else None


# --------------------------------------------------------------------------- checks


def verdict(codec, data):
    """("ok", tree) | ("err", class name, offset) | ("crash", class name, message)."""
    try:
        tree = codec.decode(data)
    except WBXMLError as exc:
        return ("err", type(exc).__name__, exc.offset)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # MemoryError, RecursionError, IndexError, SystemError...: bugs
        return ("crash", type(exc).__name__, str(exc)[:300])
    return ("ok", tree)


def _exc(codec, fn, arg):
    try:
        return ("ok", fn(arg))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return ("raise", type(exc).__name__, str(exc)[:300])


def roundtrip_problems(codecs, tree):
    """Re-encode the decoded tree with every twin and decode it back; return a list of problems."""
    problems = []
    encodings = []
    for codec in codecs:
        r = _exc(codec, codec.encode, tree)
        if r[0] != "ok":
            problems.append(("roundtrip-encode-fails:%s:%s" % (r[1], _stem(r[2])),
                             "%s.encode raises %s: %s" % (_name(codec), r[1], r[2])))
            continue
        encodings.append(r[1])
        back = _exc(codec, codec.decode, r[1])
        if back[0] != "ok":
            problems.append(("roundtrip-decode-fails:%s" % back[1], "%s.decode(encode(tree)) raises %s: %s"
                             % (_name(codec), back[1], back[2])))
        elif not tree_equal(back[1], tree):
            problems.append(("roundtrip-tree-differs", "%s: decode(encode(tree)) = %s, tree = %s"
                             % (_name(codec), _short(back[1]), _short(tree))))
    if len(encodings) == 2 and encodings[0] != encodings[1]:
        problems.append(("encode-disagreement", "pure encode %s != compiled encode %s"
                         % (encodings[0][:64].hex(), encodings[1][:64].hex())))
    return problems


def tree_equal(a, b):
    """Iterative ``a == b`` for trees (and verdicts): decoded trees can be 512 levels deep, more
    than the recursion limit allows ``==`` on nested tuples -- and raising that limit could hide
    a RecursionError in the pure twin."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if type(x) is tuple or type(x) is list:
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y))
        elif x != y:
            return False
    return True


def _depth_repr(obj, limit):
    """repr() that gives up below ``limit`` levels (deep trees)."""
    if limit == 0:
        return "..."
    if type(obj) is tuple:
        return "(" + ", ".join(_depth_repr(o, limit - 1) for o in obj) + ")"
    if type(obj) is list:
        return "[" + ", ".join(_depth_repr(o, limit - 1) for o in obj[:20]) + (", ...]" if len(obj) > 20 else "]")
    return repr(obj)


def _name(codec):
    return "pure" if codec is _pure else "compiled"


def _short(obj, limit=300):
    text = _depth_repr(obj, 12)
    return text if len(text) <= limit else text[:limit] + "...(%d chars)" % len(text)


def _vclass(v):
    return "ok" if v[0] == "ok" else "%s:%s" % (v[0], v[1])


def _describe(v):
    if v[0] == "ok":
        return "ok " + _short(v[1], 200)
    return "%s %s %s" % (v[0], v[1], v[2])


# --------------------------------------------------------------------------- worker


def _stem(message):
    """An error message without its variable parts, for grouping findings."""
    return re.sub(r"<[^>]*>|'[^']*'|\"[^\"]*\"|0x[0-9a-fA-F]+|\d+", "_", message)[:120]


EXTRACT_FIXED = ("Provision:Status", "Provision:PolicyKey", "AirSync:SyncKey", "FolderHierarchy:SyncKey")


def _text_tags(tree, limit=3):
    """The first ``limit`` distinct tags holding text, in document order (iterative: deep trees)."""
    found = []
    stack = [tree]
    while stack and len(found) < limit:
        tag, content = stack.pop()
        if type(content) is list:
            stack.extend(reversed(content))
        elif type(content) is str and tag not in found:
            found.append(tag)
    return tuple(found)


def extract_problems(codecs, data, tree):
    """The extractor raises nothing but WBXMLError (the compiled one checks less than decode, so
    on malformed input only that); on a valid document both twins give the same texts -- for
    fixed tags (mostly absent: the compiled extractor's leaf runs) and for tags the document has."""
    problems = []
    for wanted in (EXTRACT_FIXED,) if tree is None else (EXTRACT_FIXED, _text_tags(tree)):
        results = []
        for codec in codecs:
            try:
                results.append(("ok", codec.extract(data, wanted)))
            except WBXMLError as exc:
                results.append(("err", type(exc).__name__))
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                results.append(("crash", type(exc).__name__))
                problems.append(("crash-extract:%s:%s:%s" % (_name(codec), type(exc).__name__, _stem(str(exc))),
                                 "%s.extract(data, %r) raises %s: %s" % (_name(codec), wanted, type(exc).__name__,
                                                                         str(exc)[:300])))
        if tree is not None and len(results) == 2 and results[0] != results[1]:
            problems.append(("extract-disagreement", "wanted %r: pure %s | compiled %s"
                             % (wanted, _short(results[0]), _short(results[1]))))
    return problems


def check_input(codecs, data):
    """Verdict class (of the pure twin) and the problems found: [(signature, detail)]."""
    verdicts = [verdict(c, data) for c in codecs]
    v0 = verdicts[0]
    problems = []
    for codec, v in zip(codecs, verdicts):
        if v[0] == "crash":
            problems.append(("crash:%s:%s:%s" % (_name(codec), v[1], _stem(v[2])), _describe(v)))
    if len(verdicts) == 2 and not tree_equal(verdicts[0], verdicts[1]):
        a, b = verdicts
        problems.append(("disagreement:%s/%s" % (_vclass(a), _vclass(b)),
                         "pure: %s | compiled: %s" % (_describe(a), _describe(b))))
    agreed = v0[0] == "ok" and all(tree_equal(v, v0) for v in verdicts)
    if agreed:
        problems.extend(roundtrip_problems(codecs, v0[1]))
    problems.extend(extract_problems(codecs, data, v0[1] if agreed else None))
    return _vclass(v0), problems


def minimize(codecs, data, signature, budget=3000):
    """Greedy chunk removal (then byte simplification) keeping ``signature`` among the problems."""
    def still(candidate):
        return any(sig == signature for sig, _d in check_input(codecs, candidate)[1])

    tries = 0
    chunk = max(1, len(data) // 2)
    while chunk >= 1 and tries < budget:
        i = 0
        changed = False
        while i < len(data) and tries < budget:
            candidate = data[:i] + data[i + chunk:]
            tries += 1
            if candidate and still(candidate):
                data = candidate
                changed = True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return data


def worker(args):
    faulthandler.enable()  # a segfault in the compiled twin prints where it happened
    codecs = [_pure]
    compiled = load_compiled()
    if compiled is not None and not args.pure_only:
        codecs.append(compiled)
    seeds = seed_corpus()
    rng = random.Random(args.seed)
    mutate = Mutator(rng, seeds)

    fd = os.open(args.state, os.O_RDWR)
    state = mmap.mmap(fd, STATE_SIZE)
    os.close(fd)

    counts = collections.Counter()
    findings = collections.defaultdict(list)  # signature -> [(detail, hex)]
    finding_total = collections.Counter()
    slowest = (0.0, b"")
    deadline = time.monotonic() + args.seconds if args.seconds else None
    start = time.perf_counter()
    n = 0

    def record(signature, detail, data):
        finding_total[signature] += 1
        if len(findings[signature]) < REPORT_PER_SIGNATURE:
            findings[signature].append((detail, data.hex()))

    # inputs: every seed once, then mutations
    pending = [d for _n, d in seeds]
    while n < args.count:
        if n % 256 == 0:
            # hard watchdog (a C-level thread: works even if the compiled twin spins holding the GIL)
            faulthandler.dump_traceback_later(args.hang, exit=True)
            if deadline is not None and time.monotonic() > deadline:
                break
        data = pending.pop() if pending else mutate()
        state[0:8] = len(data).to_bytes(8, "little")
        state[8:8 + len(data)] = data
        n += 1

        t0 = time.perf_counter()
        vclass, problems = check_input(codecs, data)
        elapsed = time.perf_counter() - t0
        counts[vclass] += 1
        if elapsed > slowest[0]:
            slowest = (elapsed, data)
        if elapsed > args.slow:
            record("slow", "decode + round trip took %.3f s for %d bytes" % (elapsed, len(data)), data)
        for sig, detail in problems:
            record(sig, detail, data)

    # shrink the first reproducer of every signature (same signature must still show)
    faulthandler.cancel_dump_traceback_later()
    for sig, examples in findings.items():
        if sig == "slow" or not examples:
            continue
        small = minimize(codecs, bytes.fromhex(examples[0][1]), sig)
        details = [d for s2, d in check_input(codecs, small)[1] if s2 == sig]
        examples.insert(0, ("minimized: " + (details[0] if details else "?"), small.hex()))

    faulthandler.cancel_dump_traceback_later()
    elapsed = time.perf_counter() - start
    result = {
        "inputs": n, "seconds": elapsed, "counts": dict(counts),
        "twins": [_name(c) for c in codecs],
        "compiled_file": getattr(compiled, "__file__", None),
        "findings": {k: v for k, v in findings.items()}, "finding_total": dict(finding_total),
        "slowest": [slowest[0], slowest[1][:256].hex(), len(slowest[1])],
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


# --------------------------------------------------------------------------- parent


def run(args):
    compiled = load_compiled()
    twins = "pure" + ("" if compiled is None or args.pure_only else " + compiled (%s)" % compiled.__file__)
    print("fuzz_wbxml: %d inputs, seed %d, %d job(s), twins: %s" % (args.count, args.seed, args.jobs, twins))
    if compiled is None:
        print("fuzz_wbxml: compiled twin not built: only crash/round-trip checks of the pure twin")
    seeds = seed_corpus()
    print("fuzz_wbxml: %d seed documents (%d bytes total)" % (len(seeds), sum(len(d) for _n, d in seeds)))

    tmp = tempfile.mkdtemp(prefix="fuzz_wbxml-")
    procs = []
    per_job = [args.count // args.jobs + (1 if j < args.count % args.jobs else 0) for j in range(args.jobs)]
    for j in range(args.jobs):
        state = os.path.join(tmp, "job%d.state" % j)
        with open(state, "wb") as f:
            f.truncate(STATE_SIZE)
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--state", state,
               "--count", str(per_job[j]), "--seed", str(args.seed * 1000 + j),
               "--slow", str(args.slow), "--hang", str(args.hang)]
        if args.seconds:
            cmd += ["--seconds", str(args.seconds)]
        if args.pure_only:
            cmd.append("--pure-only")
        procs.append((j, state, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)))

    results, bad_exit = [], []
    for j, state, p in procs:
        out, err = p.communicate()
        if p.returncode == 0:
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        else:
            with open(state, "rb") as f:
                raw = f.read()
            length = int.from_bytes(raw[:8], "little")
            data = raw[8:8 + length]
            why = ("killed by signal %s" % signal.Signals(-p.returncode).name if p.returncode < 0
                   else "exit status %d" % p.returncode)
            bad_exit.append((j, why, data, err.decode(errors="replace")[-3000:]))

    inputs = sum(r["inputs"] for r in results)
    seconds = max((r["seconds"] for r in results), default=0.0)
    counts = collections.Counter()
    findings = collections.defaultdict(list)
    totals = collections.Counter()
    for r in results:
        counts.update(r["counts"])
        totals.update(r["finding_total"])
        for k, v in r["findings"].items():
            findings[k].extend(v)

    print("inputs: %d in %.1f s wall (%d job(s)): %.0f inputs/s" % (inputs, seconds, args.jobs,
                                                                    inputs / seconds if seconds else 0))
    print("verdicts (pure twin; the compiled one must agree):")
    for k, v in sorted(counts.items(), key=lambda kv: -kv[1]):
        print("  %-40s %9d  %5.1f%%" % (k, v, 100.0 * v / max(inputs, 1)))
    if results:
        slow = max(results, key=lambda r: r["slowest"][0])["slowest"]
        print("slowest input: %.4f s (%d bytes), starts %s" % (slow[0], slow[2], slow[1][:80]))

    for j, why, data, err in bad_exit:
        print("\nWORKER %d DIED (%s) -- hang, segfault or abort on this input (%d bytes):" % (j, why, len(data)))
        print("  reproducer hex: %s" % data.hex())
        print("  worker stderr tail:\n" + "\n".join("    " + line for line in err.splitlines()[-30:]))

    if findings:
        print("\nFINDINGS:")
        for sig in sorted(findings):
            print("  %s: %d input(s)" % (sig, totals[sig]))
            for detail, hexdata in findings[sig][:REPORT_PER_SIGNATURE]:
                print("    %s" % detail)
                print("    reproducer hex (%d bytes): %s" % (len(hexdata) // 2,
                                                             hexdata if len(hexdata) <= 2048 else
                                                             hexdata[:2048] + "...(truncated)"))
    elif not bad_exit:
        print("no disagreement, crash, hang or round-trip failure")
    return 1 if (findings or bad_exit) else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1_000_000, help="number of inputs (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (reproducible runs)")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (0: no limit)")
    ap.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 4), help="worker processes")
    ap.add_argument("--slow", type=float, default=0.5, help="per-input time guard: report slower inputs")
    ap.add_argument("--hang", type=float, default=30.0, help="kill a worker stuck this long on 256 inputs")
    ap.add_argument("--pure-only", action="store_true", help="do not use the compiled twin")
    ap.add_argument("--replay", metavar="HEX", help="check one reproducer (hex) with both twins and exit")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--state", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.replay:
        codecs = [_pure] + ([load_compiled()] if load_compiled() and not args.pure_only else [])
        data = bytes.fromhex(args.replay)
        vclass, problems = check_input(codecs, data)
        for codec in codecs:
            print("%-8s %s" % (_name(codec), _describe(verdict(codec, data))))
        for sig, detail in problems:
            print("PROBLEM %s\n  %s" % (sig, detail))
        return 1 if problems else 0
    args.jobs = max(1, min(args.jobs, args.count or 1))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
