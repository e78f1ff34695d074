"""Latency histograms in the results' mergeable form: the whole run's HDR histograms (hdrh's own
encoding) and, per interval of the time series, the sparse "counts" form described below, with
their merge and percentile math.  Used by the statistics (``report.Stats.sample``), the shard merge,
the HTML report and the multi-process runner alike: one format, one merge.
"""

import base64
import binascii
import contextlib
import gc
import struct
import sys
import zlib
from array import array
from bisect import bisect_left, bisect_right
from itertools import accumulate, chain, repeat
from operator import and_, getitem, itemgetter, sub

from hdrh.histogram import HdrHistogram

class _HistogramView:
    """Stands for a Recorder in a merged Stats: ``histogram()`` and ``total``."""

    def __init__(self, hist):
        self.hist = hist
        self.total = hist.get_total_count()

    def histogram(self):
        return self.hist


# -- per-interval HDR histograms, in summary.json in a sparse form that merges without decoding.
#
# Each interval of the time series (loadgen.results.stats.Stats.sample) carries, per command and for the
# schedule lag, its HDR histogram as ``"counts"``: the non-zero entries of hdrh's counts array for
# the Recorder's fixed parameters (lowest 1 us, highest 3,600,000,000 us, 3 significant digits:
# counts indices 0 .. 23,551; index i holds the values from
# ``HdrHistogram(1, 3600000000, 3).get_value_from_index(i)`` to that value's
# ``get_highest_equivalent_value``).  The text is one or more *parts* separated by spaces; the
# histogram is the sum of its parts.  A part is one digit W (1, 2, 4 or 8) then the base64
# (RFC 4648) of a raw DEFLATE stream (RFC 1951, no zlib header) of: n counts indices, ascending,
# as little-endian uint16, then their n counts (>= 1) as little-endian unsigned integers of W
# bytes each (the fewest that hold the largest).  (Indices rather than their gaps: 15 % larger
# for a busy interval, but decoded with no Python object per index.)
#
# A run writes one part per interval (smaller than hdrh's own encoding for an interval's few
# requests; a JSON list would cost a line per number in the indented summary.json).  Merging
# intervals -- shards, workers, or the report's combined points -- concatenates their parts: no
# decoding, no addition, exact.  A percentile of the sum is that of hdrh's get_value_at_percentile
# on the merged histogram (the first index whose running total reaches max(1, int(p * total / 100
# + 0.5))), to the bit: parts_percentiles finds it by bisecting the counts index (~15 steps, each a
# C-level sum over the parts of their running totals up to that index); merge_series and the
# report read it from the parts' entries sorted together (group, below), which costs less when
# an interval has a hundred entries or more (tests/test_workers.py, tests/test_merge.py,
# bench/report_bench.py --check).  A part decodes with C-level builtins only (base64, zlib,
# array, accumulate).  Past MAX_PARTS parts a merged interval is
# compacted into one (counts added).  Summaries written before carry ``"hdr"`` (hdrh's
# compressed base64 form) instead: decoded once by sparse_counts, written again as a part.
# The whole-run histograms stay in hdrh's form.

_HDR_PARAMS = (1, 3_600_000_000, 3)  # loadgen.results.stats' Recorder (microseconds)
_REF = HdrHistogram(*_HDR_PARAMS)
_COUNTS_LEN = _REF.counts_len
_HEADER = struct.Struct(">IIIIQQd")  # hdrh's PayloadHeader (40 bytes, big-endian)
_TYPECODES = {array(t).itemsize: t for t in "QLIHB"}  # bytes -> array typecode (the standard sizes)
_WIDTHS = tuple((w, _TYPECODES[w], 1 << 8 * w) for w in (1, 2, 4, 8))
_BIG_ENDIAN = sys.byteorder == "big"
MAX_PARTS = 32


def sparse_counts(encoded):
    """{counts index: count} of an hdrh-encoded histogram (V2 compressed form: base64 of an 8-byte
    header and a zlib-compressed payload, a 40-byte header then ZigZag LEB128 counts, a negative
    number being a run of that many zero counts).  Histograms of other parameters than the
    Recorder's are decoded by hdrh and re-indexed (exact, slower)."""
    raw = base64.b64decode(encoded)
    data = zlib.decompress(raw[8:])
    _cookie, _plen, offset, digits, low, high, _ratio = _HEADER.unpack_from(data)
    if (low, high, digits) != _HDR_PARAMS or offset:
        hist = HdrHistogram.decode(encoded)
        out = {}
        for index in range(hist.counts_len):
            n = hist.counts[index]
            if n:
                k = _REF.get_counts_array_index(hist.get_value_from_index(index))
                out[k] = out.get(k, 0) + n
        return out
    out = {}
    index = 0
    i = 40
    end = len(data)
    while i < end:
        b = data[i]
        i += 1
        if b >= 128:
            v = b & 127
            shift = 7
            while True:
                b = data[i]
                i += 1
                v |= (b & 127) << shift
                if b < 128:
                    break
                shift += 7
            b = v
        if b & 1:
            index += (b + 1) >> 1  # a run of zeros
        else:
            if b:
                out[index] = b >> 1
            index += 1
    return out


def add_counts(into, counts):
    get = into.get
    for k, n in counts.items():
        into[k] = get(k, 0) + n


def encode_counts(indices, counts):
    """The ``"counts"`` text (one part) of a histogram given as ascending counts indices and their counts."""
    if not indices:
        return ""
    top = max(counts)
    for width, code, limit in _WIDTHS:
        if top < limit:
            break
    else:
        raise ValueError("interval histogram: a count of %d does not fit in 64 bits" % top)
    index_array = array("H", indices)
    values = array(code, counts)
    if _BIG_ENDIAN:
        index_array.byteswap()
        values.byteswap()
    raw = zlib.compress(index_array.tobytes() + values.tobytes(), wbits=-15)
    return "%d%s" % (width, base64.b64encode(raw).decode("ascii"))


def _bad(text, why="not a \"counts\" text"):
    return ValueError("interval histogram: %s: %.40r" % (why, text))


def decode_part(text):
    """One part of a ``"counts"`` text as (counts indices, running totals): two arrays, the indices
    ascending, ``totals[j]`` the sum of the counts of the first j indices (``totals[0]`` = 0)."""
    try:
        code = _TYPECODES[int(text[0])]
        raw = zlib.decompress(base64.b64decode(text[1:], validate=True), wbits=-15)
    except (ValueError, KeyError, TypeError, IndexError, zlib.error):
        raise _bad(text) from None
    values = array(code)
    n, rest = divmod(len(raw), 2 + values.itemsize)
    if rest or not n:
        raise _bad(text)
    indices = array("H")
    indices.frombytes(raw[:2 * n])
    values.frombytes(raw[2 * n:])
    if _BIG_ENDIAN:
        indices.byteswap()
        values.byteswap()
    totals = array("I", (0,))  # (4 bytes an entry while the report keeps them all, if that is enough)
    try:
        totals.extend(accumulate(values))
    except OverflowError:
        totals = array("Q", (0,))
        totals.extend(accumulate(values))
    if indices[-1] >= _COUNTS_LEN:
        raise _bad(text, "counts index %d beyond the last (%d)" % (indices[-1], _COUNTS_LEN - 1))
    return indices, totals


def _split(text):
    if not isinstance(text, str):
        raise _bad(text)
    return text.split()


def decode_counts(text):
    """(ascending counts indices, counts) of a whole ``"counts"`` text: its parts added."""
    parts = [decode_part(p) for p in _split(text)]
    return merge_counts([(i.tolist(), list(map(sub, t[1:], t[:-1]))) for i, t in parts])


def interval_parts(entry):
    """The parts (decode_part) of an interval's ``latency`` or ``lag`` entry: its ``"counts"``, or
    the ``"hdr"`` of a summary written before; None when it carries no histogram."""
    text = entry.get("counts")
    if text is not None:
        return [decode_part(p) for p in _split(text)]
    encoded = entry.get("hdr")
    if encoded is None:
        return None
    try:
        counts = sparse_counts(encoded)
    except (ValueError, TypeError, zlib.error, struct.error, IndexError):
        raise ValueError("interval histogram: not an hdrh-encoded histogram: %.40r" % (encoded,)) from None
    if not counts:
        return []
    keys = sorted(counts)
    totals = array("Q", (0,))
    totals.extend(accumulate(map(counts.__getitem__, keys)))
    return [(array("H", keys), totals)]


def _text(entry):
    """An entry's ``"counts"`` text, an old ``"hdr"`` written as one part."""
    text = entry.get("counts")
    if text is not None:
        return text
    return " ".join(encode_counts(i.tolist(), list(map(sub, t[1:], t[:-1]))) for i, t in interval_parts(entry))


def merge_counts(parts):
    """The sum of several (ascending indices, counts) histograms, as (indices, counts) lists."""
    parts = sorted((p for p in parts if len(p[0])), key=lambda p: len(p[0]), reverse=True)
    if len(parts) <= 1:
        return (list(parts[0][0]), list(parts[0][1])) if parts else ([], [])
    total = dict(zip(*parts[0]))  # the largest one; the others added to it, in C but for shared indices
    for indices, counts in parts[1:]:
        more = dict(zip(indices, counts))
        for k in more.keys() & total.keys():
            more[k] += total[k]
        total.update(more)
    keys = sorted(total)
    return keys, list(map(total.__getitem__, keys))


def _value_at(index, p):
    value = _REF.get_value_from_index(index)
    return _REF.get_highest_equivalent_value(value) if p else _REF.get_lowest_equivalent_value(value)


def _target(p, total):
    return max(int(min(p, 100.0) * total / 100 + 0.5), 1)  # hdrh's get_target_count_at_percentile


def counts_percentiles(indices, counts, percentiles=(50, 90, 99)):
    """Values (microseconds) at the percentiles of an (indices, counts) histogram, as hdrh's
    get_value_at_percentile gives them: the first counts index whose running total reaches
    max(1, int(p * total / 100 + 0.5)), its highest equivalent value (its lowest for p = 0)."""
    if not len(indices):
        return [0] * len(percentiles)
    running = list(accumulate(counts))
    last = len(indices) - 1
    return [_value_at(indices[min(bisect_left(running, _target(p, running[-1])), last)], p) for p in percentiles]


def sparse_percentiles(counts, percentiles=(50, 90, 99)):
    """counts_percentiles of a {counts index: count} histogram."""
    keys = sorted(counts)
    return counts_percentiles(keys, list(map(counts.__getitem__, keys)), percentiles)


def parts_percentiles(parts, percentiles=(50, 90, 99)):
    """counts_percentiles of the sum of parts (decode_part), without adding them: the smallest
    counts index x at which the parts' running totals up to x sum to the target, by bisection."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return [0] * len(percentiles)
    if len(parts) == 1:
        indices, totals = parts[0]
        last = len(indices) - 1
        return [_value_at(indices[min(bisect_left(totals, _target(p, totals[-1])) - 1, last)], p)
                for p in percentiles]
    index_arrays = [i for i, _t in parts]
    total_arrays = [t for _i, t in parts]
    total = sum(t[-1] for t in total_arrays)
    low = min(i[0] for i in index_arrays)
    high = max(i[-1] for i in index_arrays)
    starts = [0] * len(parts)
    ends = list(map(len, index_arrays))
    out = []
    last_target, last = 0, low
    for p in percentiles:
        target = _target(p, total)
        a, b = (last, high) if target >= last_target else (low, high)  # (percentiles ascending: from the last)
        los, his = starts, ends  # each part's position of the answer lies in [los, his]: bisected there
        while a < b:
            mid = (a + b) >> 1
            pos = list(map(bisect_right, index_arrays, repeat(mid), los, his))
            if sum(map(getitem, total_arrays, pos)) >= target:
                b, his = mid, pos
            else:
                a, los = mid + 1, pos
        out.append(_value_at(a, p))
        last_target, last = target, a
    return out


def parts_count(parts):
    return sum(t[-1] for _i, t in parts)


# -- many intervals' histograms merged at once (easload merge, the report): sorted packed keys.
#
# A *group* is the sum of several parts (the shards' entries of an interval, the intervals of a
# report's point).  Its entries are read as one list of packed keys ``index << S | count``
# (S = 16 while the group holds fewer than 65,536 values, else 32), built from the parts' raw
# bytes by slice assignments and sorted by sorted() -- in C, and the parts are runs already, so it
# merges them.  The count of the first j entries is the sum of their keys, masked (the indices
# only add multiples of 2**S): every count being at least 1, the entry reaching a target count T
# is among the first T, so a percentile is one sum of keys (of the shorter side: the total is
# known) and, when some counts exceed 1, the running counts of the few keys just below the T-th.
# A group of groups (a report point of several results, each a group of its intervals) is read
# without sorting their lists together: the entry reaching T is of rank T - (values - entries) ..
# T in their union; keys read off each list at that fraction of its length bracket those ranks
# (_sum_percentiles); only the keys between are sorted.  Both equal parts_percentiles -- hdrh's
# get_value_at_percentile of the summed histogram -- to the bit (tests/test_merge.py,
# bench/report_bench.py --check, --same-as).  Parts whose counts take 4 or 8 bytes, a zero count,
# 2**32 values or more, a big-endian machine: parts_percentiles.  Decoding (base64, zlib) and
# sorting are most of its cost (bench/report_bench.py).

_FAST = not _BIG_ENDIAN and array("I").itemsize == 4 and array("Q").itemsize == 8
_WIDTH_OF = {"1": 1, "2": 2}  # the "counts" widths read as raw bytes (wider ones: decode_part)
_VALUES = {}  # _value_at, memoized: ~ a thousand distinct answers in a report


def _value(index, p):
    key = index if p else -1 - index
    value = _VALUES.get(key)
    if value is None:
        value = _VALUES[key] = _value_at(index, p)
    return value


def _raw_part(text):
    """One part of a "counts" text as (indices, counts, width): its counts indices as little-endian
    uint16 bytes and its counts as bytes (width 1 or 2 each); decode_part's checks and errors.  Other
    widths (and on a big-endian machine, every part): (indices, running totals, 0) of decode_part."""
    width = _WIDTH_OF.get(text[0]) if _FAST else None
    if width is None:
        indices, totals = decode_part(text)
        return indices, totals, 0
    try:
        raw = zlib.decompress(binascii.a2b_base64(text[1:], strict_mode=True), -15)
    except (ValueError, TypeError, zlib.error):
        raise _bad(text) from None
    n, rest = divmod(len(raw), 2 + width)
    if rest or not n:
        raise _bad(text)
    cut = 2 * n
    last = raw[cut - 2] | raw[cut - 1] << 8
    if last >= _COUNTS_LEN:
        raise _bad(text, "counts index %d beyond the last (%d)" % (last, _COUNTS_LEN - 1))
    return raw[:cut], raw[cut:], width


def _raw_of(indices, totals):
    """A decoded part (decode_part, interval_parts) as a raw part, in bytes when its counts fit."""
    counts = list(map(sub, totals[1:], totals[:-1]))
    if _FAST and counts and min(counts) > 0 and max(counts) < 65536:
        width = 1 if max(counts) < 256 else 2
        return array("H", indices).tobytes(), array("B" if width == 1 else "H", counts).tobytes(), width
    return indices, totals, 0


def entry_raws(entry):
    """The parts (_raw_part) of an interval's ``latency`` or ``lag`` entry, interval_parts' twin
    (same checks, same errors); None when it carries no histogram."""
    text = entry.get("counts")
    if type(text) is str and _FAST:  # _raw_part inlined; anything unusual: by _raw_part, from the start
        out = []
        for part in text.split():
            step = _STEPS.get(part[0])
            if not step:
                break
            try:
                raw = _inflate(_unbase64(part[1:], strict_mode=True), -15)
            except (ValueError, TypeError, zlib.error):
                raise _bad(part) from None
            n, rest = divmod(len(raw), step)
            cut = 2 * n
            if rest or not n or raw[cut - 2] | raw[cut - 1] << 8 >= _COUNTS_LEN:
                break
            out.append((raw[:cut], raw[cut:], step - 2))
        else:
            return out
    if text is not None:
        return [_raw_part(p) for p in _split(text)]
    parts = interval_parts(entry)
    return None if parts is None else [_raw_of(i, t) for i, t in parts]


_STEPS = {"1": 3, "2": 4}  # bytes an entry of a part of that width
_inflate = zlib.decompress
_unbase64 = binascii.a2b_base64


def _as_part(raw):
    """A raw part as decode_part gives it: (indices, running totals)."""
    a, b, width = raw
    if not width:
        return a, b
    indices = array("H")
    indices.frombytes(a)
    counts = array("B" if width == 1 else "H")
    counts.frombytes(b)
    totals = array("I", (0,))
    totals.extend(accumulate(counts))
    return indices, totals


class Group:
    """The sum of raw parts: ``total`` values; ``keys`` (sorted packed keys, shift ``shift``), or
    ``groups`` (Groups with keys of the same shift, summed when read), or neither when it is read by
    parts_percentiles."""

    __slots__ = ("raws", "total", "keys", "shift", "groups")

    def __init__(self, raws, total, keys, shift, groups=None):
        self.raws, self.total, self.keys, self.shift, self.groups = raws, total, keys, shift, groups


def group(raws):
    """The Group of raw parts (_raw_part, entry_raws)."""
    if len(raws) == 1:
        indices, counts, width = raws[0]
    elif max(map(itemgetter(2), raws)) == 1 == min(map(itemgetter(2), raws)):
        indices, counts, width = b"".join(map(itemgetter(0), raws)), b"".join(map(itemgetter(1), raws)), 1
    else:
        indices = counts = None
        width = 0
    if width == 1:
        if 0 in counts:
            return Group(raws, sum(counts), None, 0)
        total = sum(counts)
    else:  # widths 2 (or mixed 1 and 2): counts as uint16; wider, by parts_percentiles
        total = 0
        fast = True
        for _a, b, w in raws:
            if w == 1:
                fast = fast and 0 not in b
                total += sum(b)
            elif w == 2:
                c = array("H")
                c.frombytes(b)
                fast = fast and 0 not in c
                total += sum(c)
            else:
                fast = False
                total += b[-1]
        if not fast:
            return Group(raws, total, None, 0)
    if total >= 1 << 32:
        return Group(raws, total, None, 0)
    shift = 16 if total < 1 << 16 else 32
    return Group(raws, total, _packed(raws, shift, indices, counts if width == 1 else None), shift)


def _packed(raws, shift, indices=None, counts=None):
    """The sorted keys ``index << shift | count`` of raw parts of width 1 or 2 (``indices`` and
    ``counts``: all their indices and counts joined, when they are of width 1)."""
    step, at = (4, 2) if shift == 16 else (8, 4)
    if indices is None:
        indices = raws[0][0] if len(raws) == 1 else b"".join([r[0] for r in raws])
    rec = bytearray(len(indices) * (step >> 1))
    rec[at::step] = indices[0::2]
    rec[at + 1::step] = indices[1::2]
    if counts is not None:
        rec[0::step] = counts
    else:
        at = 0
        for _a, b, width in raws:
            k = len(b) // width
            end = step * (at + k)
            if width == 1:
                rec[step * at:end:step] = b
            else:
                rec[step * at:end:step] = b[0::2]
                rec[step * at + 1:end:step] = b[1::2]
            at += k
    keys = array("I" if shift == 16 else "Q")
    keys.frombytes(rec)
    return sorted(keys) if len(raws) > 1 else keys.tolist()


def merge_groups(groups):
    """The Group of the sum of several Groups: one that reads theirs when they have keys of the same
    shift that holds the sum, else one of all their parts."""
    if len(groups) == 1:
        return groups[0]
    subs = [x for g in groups for x in (g.groups or (g,))]
    total = sum(g.total for g in subs)
    shift = subs[0].shift
    raws = [r for g in subs for r in g.raws]
    if total >= 1 << shift or not all(g.keys is not None and g.shift == shift for g in subs):
        return group(raws)
    return Group(raws, total, None, shift, [g for g in subs if g.keys])


def group_percentiles(g, percentiles=(50, 90, 99)):
    """parts_percentiles of a Group's parts."""
    keys = g.keys
    if keys is None:
        if g.groups is not None:
            return _sum_percentiles(g, percentiles)
        return parts_percentiles([_as_part(r) for r in g.raws], percentiles)
    if not keys:
        return [0] * len(percentiles)
    total, shift = g.total, g.shift
    mask = (1 << shift) - 1
    n = len(keys)
    half = n >> 1
    out = []
    for p in percentiles:
        target = int(min(p, 100.0) * total / 100 + 0.5)  # _target
        if target < 1:
            target = 1
        m = target if target < n else n  # the entry reaching the target is among the first m
        # the count of the first m entries (the shorter side summed), less the target (>= 0)
        excess = (sum(keys[:m]) & mask if m <= half else total - (sum(keys[m:]) & mask)) - target
        if excess:  # each entry counting 1 or more, none before the excess-th one below reaches it
            low = m - excess if m > excess else 1
            window = keys[low - 1:m]
            running = list(accumulate(map(and_, window, repeat(mask))))
            key = window[bisect_left(running, running[-1] - excess)]
        else:
            key = keys[m - 1]
        value = _VALUES.get(key >> shift if p else -1 - (key >> shift))
        out.append(value if value is not None else _value(key >> shift, p))
    return out


def _sum_percentiles(g, percentiles):
    """group_percentiles of a Group of Groups, without sorting all their keys together: the entry
    reaching the target is among the entries of ranks target - (total - entries) .. target (each
    counts 1 or more) of the sorted union; keys that bracket those ranks are read off each list at
    the same fraction of its length (at or below the lowest rank in every list, at or above the
    highest in some); the keys between are sorted, the count below them summed (masked once: the
    total holds in the mask)."""
    lists = [x.keys for x in g.groups]
    if not lists:
        return [0] * len(percentiles)
    sizes = list(map(len, lists))
    n = sum(sizes)
    total, shift = g.total, g.shift
    mask = (1 << shift) - 1
    extra = total - n
    out = []
    for p in percentiles:
        target = _target(p, total)
        high = target if target < n else n
        low = target - extra if target - extra > 1 else 1
        a = min(map(getitem, lists, [max(low * k // n - 1, 0) for k in sizes]))  # rank of a <= low
        b = max(map(getitem, lists, [-(-high * k // n) - 1 for k in sizes]))  # rank of b >= high
        starts = list(map(bisect_left, lists, repeat(a)))
        if sum(starts) <= n >> 1:  # the count below the window (the shorter side summed)
            below = sum(map(sum, map(getitem, lists, map(slice, repeat(0), starts)))) & mask
        else:
            below = total - (sum(map(sum, map(getitem, lists, map(slice, starts, repeat(None))))) & mask)
        window = sorted(chain.from_iterable(map(getitem, lists, map(slice, starts,
                                                                       map(bisect_right, lists, repeat(b))))))
        out.append(_value(_reaching(window, target - below, mask) >> shift, p))
    return out


def _reaching(keys, target, mask):
    """The key, in sorted ``keys``, of the entry whose running count reaches ``target`` (at least 1,
    at most their count): the sum of the first ``target`` keys, masked, is their count (every
    entry counting 1 or more, the entry is among them), and its excess over the target says how
    many entries back it may be."""
    m = target if target < len(keys) else len(keys)
    excess = (sum(keys[:m]) & mask) - target
    if not excess:
        return keys[m - 1]
    low = m - excess if m > excess else 1
    window = keys[low - 1:m]
    running = list(accumulate(map(and_, window, repeat(mask))))
    return window[bisect_left(running, running[-1] - excess)]


def _hist(g, encode, entries):
    """count, p50/p90/p99 (ms) of a Group (_merged_hist's) and, if ``encode``, the entries' texts."""
    p50, p90, p99 = group_percentiles(g)
    out = {"count": g.total, "p50_ms": p50 / 1000, "p90_ms": p90 / 1000, "p99_ms": p99 / 1000}
    if encode:
        if len(g.raws) > MAX_PARTS:
            out["counts"] = encode_counts(*merge_counts([(i.tolist(), list(map(sub, t[1:], t[:-1])))
                                                         for i, t in map(_as_part, g.raws)]))
        else:
            out["counts"] = " ".join(t for t in map(_text, entries) if t)
    return out


def lag_fields(entries):
    """merge_lag's fields but the histogram's: starts, late starts, mean weighted by starts, max."""
    starts = sum(e.get("starts", 0) for e in entries)
    return {"starts": starts, "late": sum(e.get("late", 0) for e in entries),
            "mean_ms": round(sum(e.get("mean_ms", 0.0) * e.get("starts", 0) for e in entries) / max(starts, 1), 3),
            "max_ms": max(e.get("max_ms", 0.0) for e in entries)}


def latency_of(g):
    """An interval's (or a report point's) latency of a Group: count, p50/p90/p99 (ms)."""
    p50, p90, p99 = group_percentiles(g)
    return {"count": g.total, "p50_ms": p50 / 1000, "p90_ms": p90 / 1000, "p99_ms": p99 / 1000}


def lag_of(entries, g):
    """merge_lag(entries, encode=False) of entries whose Group is ``g`` (every entry with a histogram)."""
    out = lag_fields(entries)
    if g.raws:
        hist = _hist(g, False, ())
        hist.pop("count")
        out.update(hist)
    return out


def _all_raws(entries):
    """Every entry's raw parts (all decoded, as merge_latency does), or None if one has no histogram."""
    each = [entry_raws(e) for e in entries]
    return [r for rs in each for r in rs] if all(rs is not None for rs in each) else None


def interval_entry(indices, counts):
    """An interval's ``latency`` entry of an (indices, counts) histogram: count, p50/p90/p99 (ms), counts."""
    p50, p90, p99 = counts_percentiles(indices, counts)
    return {"count": sum(counts), "p50_ms": p50 / 1000, "p90_ms": p90 / 1000, "p99_ms": p99 / 1000,
            "counts": encode_counts(indices, counts)}


def _merged_hist(entries, parts, encode):
    """count, p50/p90/p99 (ms) of the sum of ``parts`` and, if ``encode``, the entries' texts joined."""
    p50, p90, p99 = parts_percentiles(parts)
    out = {"count": parts_count(parts), "p50_ms": p50 / 1000, "p90_ms": p90 / 1000, "p99_ms": p99 / 1000}
    if encode:
        if len(parts) > MAX_PARTS:
            out["counts"] = encode_counts(*merge_counts([(i.tolist(), list(map(sub, t[1:], t[:-1])))
                                                         for i, t in parts]))
        else:
            out["counts"] = " ".join(t for t in map(_text, entries) if t)
    return out


def merge_lag(entries, parts=None, encode=True):
    """One interval's schedule lag from several (the ``lag`` of loadgen.results.stats.Stats.sample): starts
    and late starts added, mean weighted by starts, max of maxima, percentiles of the merged HDR
    (``parts``: the entries' parts, decode_part, when the caller has them) and, if ``encode``,
    that histogram as ``"counts"``."""
    if len(entries) == 1 and parts is None:
        return dict(entries[0])
    out = lag_fields(entries)
    if parts is None:
        raws = _all_raws(entries)
        if raws:
            hist = _hist(group(raws), encode, entries)
            hist.pop("count")
            out.update(hist)
        return out
    if parts:
        hist = _merged_hist(entries, parts, encode)
        hist.pop("count")
        out.update(hist)
    return out


def merge_latency(entries, parts=None, encode=True):
    """One interval's latency of a command from several entries: count and percentiles of the sum of
    their histograms and, if ``encode``, that sum as ``"counts"`` (``parts``: all the entries' parts,
    decode_part, when the caller has them).  Should an entry carry no histogram (not written by
    easload), the counts are added and the percentiles are those of the entry with the most
    requests -- the only case that is not exact."""
    if parts is None:
        raws = _all_raws(entries)
        if raws is not None:
            return _hist(group(raws), encode, entries)
    else:
        return _merged_hist(entries, parts, encode)
    x = max(entries, key=lambda v: v.get("count", 0))
    return {"count": sum(v.get("count", 0) for v in entries), "p50_ms": x.get("p50_ms"), "p90_ms": x.get("p90_ms"),
            "p99_ms": x.get("p99_ms")}


@contextlib.contextmanager
def paused_gc():
    """The cyclic garbage collector paused (as it was after): merging a long run's series allocates
    millions of lists, tuples and dicts, none in a cycle, and each full collection this sets off
    walks every object of the summaries (a tenth of the report's time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_SERIES_COUNTERS = ("devices", "requests", "http", "eas", "provisionings", "reprovisions", "throttled", "wipes",
                    "tasks")


def merge_series(all_series):
    """Merge time series point by point (same interval index): counts added, HDR histograms merged
    (their parts joined, percentiles read from them), schedule lag merged by merge_lag.  A command
    (or the lag) only one series has in an interval is copied, an old summary's ``"hdr"`` turned
    into ``"counts"``."""
    with paused_gc():
        return _merge_series(all_series)


def _merge_series(all_series):
    merged = []
    for i in range(max((len(s) for s in all_series), default=0)):
        points = [s[i] for s in all_series if i < len(s)]
        point = {"t": max(p["t"] for p in points)}
        for name in _SERIES_COUNTERS:
            total = {}
            for p in points:
                add_counts(total, p.get(name) or {})
            if name in ("devices", "requests", "provisionings", "reprovisions", "throttled", "wipes") or total:
                point[name] = total
        lags = [p["lag"] for p in points if p.get("lag")]
        if lags:
            point["lag"] = merge_lag(lags) if len(lags) > 1 else _upgraded(lags[0])
        by_command = {}
        for p in points:
            for command, lat in (p.get("latency") or {}).items():
                by_command.setdefault(command, []).append(lat)
        point["latency"] = {command: merge_latency(lats) if len(lats) > 1 else _upgraded(lats[0])
                            for command, lats in by_command.items()}
        merged.append(point)
    return merged


def _upgraded(entry):
    """A copy of an interval entry, an old ``"hdr"`` given as ``"counts"``."""
    out = dict(entry)
    if "hdr" in out and "counts" not in out:
        out["counts"] = _text(out)
        del out["hdr"]
    return out
