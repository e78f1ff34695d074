# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled twin of ``_wbxml._pure``: same API, same trees, same errors.

Written against the C API where it pays: a raw pointer walk over the input,
open elements on a C stack, children moved into lists made at their final
size, tag names from a C table, short texts located in one pass and equal
leaves shared between decodes (see "Leaf cache" below), UTF-8 decoded straight
from the buffer, a realloc'd output buffer for encoding, and an extractor that
skips runs of unwanted leaves.  Behaviour is pinned to the pure twin by
the differential and property tests in tests/test_wbxml.py and by
bench/fuzz_wbxml.py (same tree, or same error class at the same byte offset).
The code page tables and the interned tag names are the pure twin's, so trees
from both twins share the very same tag objects.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.list cimport PyList_New
from cpython.object cimport PyObject
from libc.string cimport memchr, memcmp, memcpy

from _wbxml._pure import HEADER, MAX_DEPTH, _NAMES, _TOKENS
from _wbxml.errors import (
    EncodingError,
    HeaderError,
    NestingError,
    TreeError,
    TruncatedError,
    UnknownTokenError,
    UnsupportedError,
    WBXMLError,
)
from _wbxml.tree import Slot

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL

cdef tuple NAMES = _NAMES
cdef dict TOKENS = _TOKENS
cdef Py_ssize_t C_MAX_DEPTH = MAX_DEPTH
cdef object SlotType = Slot
cdef tuple EMPTY_TUPLE = ()


# --------------------------------------------------------------------------- decode
#
# The decoder keeps the open elements in a C array of frames and the finished
# children of all open elements on one C stack of owned pointers: at END the
# children are moved into a list made at its final size (no appends, no
# reallocs), and the (tag, content) tuple is filled with PyTuple_SET_ITEM.
# Tag names come from a C table of the interned names (borrowed: NAMES keeps
# them alive).  Every check happens in the same order as in the pure twin, so
# the errors (class and byte offset) are the same.
#
# Leaf cache.  Most elements of EAS documents are leaves holding a short ASCII
# text (policy settings "0"/"1", statuses, keys, ids), and a load generator
# decodes the same ones over and over.  A leaf (tag, text) is deeply immutable,
# so, like interned strings, equal leaves may be one shared object: a short
# ASCII text is only located when its STR_I is read (one pass finds its end,
# checks it is ASCII -- ASCII cannot fail to decode -- and hashes it), and at
# the element's END the (tag, text) tuple comes from a direct-mapped cache of
# recently decoded leaves when the tag and the bytes match, or is made and
# cached.  Empty elements (tag, None) are cached per tag.  Lists are mutable
# and never shared.  Trees are equal to the pure twin's; only the identity of
# equal leaf tuples differs (shared between decodes).  The cache holds at most
# LEAF_SLOTS leaves of texts up to SHORT_TEXT bytes; a miss costs a hash and a
# compare more than a plain decode (bench: "decode provision response (new
# values)").  The extractor takes its texts from there too when they are cached.
#
# Safety.  Memory: at most LEAF_SLOTS tuples of texts under SHORT_TEXT bytes (about
# 140 KB), plus one (tag, None) per known tag; a replaced entry is released
# (bench/wbxml_bench.py --leak-check: RSS flat over 1e6 decodes).  Threads and
# reentrancy: the GIL is held throughout, but an allocation of a tuple can start
# a garbage collection whose __del__ methods run Python code -- which may decode,
# or switch to another thread that decodes.  So a slot is only read and written
# with no allocation in between: a hit takes its reference at once, a miss makes
# the new leaf first and then reads the old entry, stores the new one and releases
# the old one last (tests/test_wbxml.py: test_leaf_cache_*).  Not for free-threaded
# CPython builds (the module does not declare itself free-threading safe, so such
# a build turns the GIL back on when importing it).

cdef inline int _mb(const unsigned char* buf, Py_ssize_t n, Py_ssize_t* pos, unsigned long long* out) except -1:
    cdef unsigned long long value = 0
    cdef Py_ssize_t start = pos[0]
    cdef Py_ssize_t p = start
    cdef unsigned char b
    while True:
        if p >= n:
            raise TruncatedError("document ends inside a multi-byte integer", start)
        b = buf[p]
        p += 1
        value = (value << 7) | (b & 0x7F)
        if value > 0xFFFFFFFF or p - start > 5:
            raise WBXMLError("multi-byte integer overflows 32 bits", start)
        if not (b & 0x80):
            pos[0] = p
            out[0] = value
            return 0


cdef extern from *:
    """
    static CYTHON_INLINE PyObject* easload_pair(PyObject* tag, PyObject* content) {
        /* (tag, content): steals content, also when it fails */
        PyObject* t = PyTuple_New(2);
        if (t == NULL) { Py_DECREF(content); return NULL; }
        Py_INCREF(tag);
        PyTuple_SET_ITEM(t, 0, tag);
        PyTuple_SET_ITEM(t, 1, content);
        return t;
    }
    static CYTHON_INLINE PyObject* easload_list(PyObject** items, Py_ssize_t n) {
        /* a list of n items: steals them on success, leaves them alone on failure */
        PyObject* l = PyList_New(n);
        if (l == NULL) return NULL;
        if (n) memcpy(((PyListObject*)l)->ob_item, items, n * sizeof(PyObject*));
        return l;
    }
    static CYTHON_INLINE PyObject* easload_ascii(const unsigned char* s, Py_ssize_t n) {
        /* a new str from n ASCII bytes */
        PyObject* u = PyUnicode_New(n, 127);
        if (u == NULL) return NULL;
        memcpy(PyUnicode_1BYTE_DATA(u), s, n);
        return u;
    }
    /* The end of a short text: the index of the first NUL in s[0:avail], or -1 when
       there is none there.  Eight bytes at a time (the zero-byte trick: the lowest
       flagged byte is the first NUL), so texts of any length up to `avail` cost no
       mispredicted loop exits; also hashes the text and reports whether it is ASCII. */
    static CYTHON_INLINE Py_ssize_t easload_scan(const unsigned char* s, Py_ssize_t avail,
                                                 size_t* hash, int* ascii) {
        Py_ssize_t i = 0;
        uint64_t h = 0x9E3779B97F4A7C15ULL, high = 0, v, z;
    #if PY_LITTLE_ENDIAN
        for (; i + 8 <= avail; i += 8) {
            memcpy(&v, s + i, 8);
            z = (v - 0x0101010101010101ULL) & ~v & 0x8080808080808080ULL;
            if (z) {
                int k = __builtin_ctzll(z) >> 3;
                v = k ? v & (~0ULL >> (64 - 8 * k)) : 0;
                high |= v;
                *hash = (size_t)((h ^ v ^ (uint64_t)(i + k)) * 0x100000001B3ULL);
                *ascii = (high & 0x8080808080808080ULL) == 0;
                return i + k;
            }
            high |= v;
            h = (h ^ v) * 0x100000001B3ULL;
        }
    #endif
        for (; i < avail; i++) {
            if (s[i] == 0) {
                *hash = (size_t)((h ^ (uint64_t)i) * 0x100000001B3ULL);
                *ascii = (high & 0x8080808080808080ULL) == 0;
                return i;
            }
            high |= s[i];
            h = (h ^ s[i]) * 0x100000001B3ULL;
        }
        return -1;
    }
    /* The extractor's leaf runs: from a content tag at `pos`, skip elements
       <T> STR_I text END (a text of at most 32 bytes; T a known tag the
       extractor does not want: bit T of `skip`) and elements without text, <T/>
       and <T></T> (T a known tag: bit T of `known`); returns where the first
       other thing starts.  One-byte texts ("0", "1": most policy settings, statuses,
       flags) are tested without a loop. */
    static CYTHON_INLINE Py_ssize_t easload_skip_leaves(const unsigned char* buf, Py_ssize_t pos, Py_ssize_t n,
                                                        uint64_t skip, uint64_t known) {
        while (pos + 5 <= n) {
            unsigned char b = buf[pos];
            Py_ssize_t q, limit;
    #if PY_LITTLE_ENDIAN
            uint32_t w;
            uint64_t v, z;
            uint16_t u;
            /* two one-byte-text leaves T1 03 X 00 01 T2 03 Y 00 01 at once: the bytes at fixed
               places in one masked compare, X and Y not NUL, T1 and T2 skipped (content flag, bit in `skip`) */
            memcpy(&w, buf + pos + 1, 4);  /* STR_I, one byte, NUL, END: one test, one branch */
            if (((b & 0xC0) == 0x40) & ((skip >> (b & 0x3F)) & 1) & ((w & 0xFFFF00FFu) == 0x01000003u)
                    & ((w & 0xFF00u) != 0)) {
                pos += 5;
                continue;
            }
    #endif
            if ((b & 0xC0) == 0 && ((known >> b) & 1)) {  /* an empty element: nothing to extract */
                pos += 1;
                continue;
            }
            if ((b & 0xC0) == 0x40 && buf[pos + 1] == 0x01 && ((known >> (b & 0x3F)) & 1)) {
                pos += 2;  /* <T></T>: no text either */
                continue;
            }
            if ((b & 0xC0) != 0x40 || !((skip >> (b & 0x3F)) & 1) || buf[pos + 1] != 0x03)
                break;
            if (buf[pos + 2] != 0 && buf[pos + 3] == 0 && buf[pos + 4] == 0x01) {
                pos += 5;
                continue;
            }
            q = pos + 2;
            limit = q + 32 < n ? q + 32 : n;
    #if PY_LITTLE_ENDIAN
            /* the text's NUL eight bytes at a time (the lowest flagged byte is the first NUL) */
            while (q + 8 <= limit) {
                memcpy(&v, buf + q, 8);
                z = (v - 0x0101010101010101ULL) & ~v & 0x8080808080808080ULL;
                if (z) {
                    q += __builtin_ctzll(z) >> 3;
                    goto found;
                }
                q += 8;
            }
    #endif
            while (q < limit && buf[q] != 0)
                q++;
    #if PY_LITTLE_ENDIAN
        found:
    #endif
            if (q >= limit || q + 1 >= n || buf[q + 1] != 0x01)
                break;
            pos = q + 2;
        }
        return pos;
    }
    #define easload_new_ref(o) (Py_INCREF(o), (o))
    #define easload_tuple(size) PyTuple_New(size)
    #define easload_tuple_set(t, i, o) PyTuple_SET_ITEM(t, i, o)
    #define easload_steal(o) (o)
    #define easload_decref(o) Py_DECREF(o)
    #define easload_xdecref(o) Py_XDECREF(o)
    #define easload_none() (Py_INCREF(Py_None), Py_None)
    #define easload_text(element) PyTuple_GET_ITEM(element, 1)
    #define easload_text_data(element) ((const char*)PyUnicode_1BYTE_DATA(PyTuple_GET_ITEM(element, 1)))
    """
    PyObject* easload_pair(PyObject* tag, PyObject* content) except NULL
    PyObject* easload_list(PyObject** items, Py_ssize_t n) except NULL
    PyObject* easload_ascii(const unsigned char* s, Py_ssize_t n) except NULL
    PyObject* easload_new_ref(PyObject* o)
    PyObject* easload_tuple(Py_ssize_t size) except NULL
    void easload_tuple_set(PyObject* t, Py_ssize_t i, PyObject* o)  # steals o
    object easload_steal(PyObject* o)
    void easload_decref(PyObject* o)
    void easload_xdecref(PyObject* o)
    PyObject* easload_none()
    const char* easload_text_data(PyObject* element)
    PyObject* easload_text(PyObject* element)
    Py_ssize_t easload_skip_leaves(const unsigned char* buf, Py_ssize_t pos, Py_ssize_t n,
                                   unsigned long long skip, unsigned long long known)
    Py_ssize_t easload_scan(const unsigned char* s, Py_ssize_t avail, size_t* hash, int* ascii)
    PyObject* Raw_DecodeUTF8 "PyUnicode_DecodeUTF8"(const char* s, Py_ssize_t size, const char* errors)
    PyObject* Raw_Concat "PyUnicode_Concat"(PyObject* left, PyObject* right) except NULL
    PyObject* Raw_BytesFromStringAndSize "PyBytes_FromStringAndSize"(const char* s, Py_ssize_t size) except NULL
    PyObject* Raw_Add "PyNumber_Add"(PyObject* left, PyObject* right) except NULL
    void PyErr_Clear()
    void Raw_List_SET_ITEM "PyList_SET_ITEM"(object l, Py_ssize_t i, PyObject* o)  # steals o


cdef enum:
    FRAMES = 512  # == MAX_DEPTH (checked at import)
    LOCAL_KIDS = 128
    SHORT_TEXT = 32  # texts up to this many bytes are scanned inline and may come from the leaf cache
    LEAF_SLOTS = 1024  # power of two
    K_NONE = 0   # nothing yet
    K_TEXT = 1   # content is a str
    K_BYTES = 2  # content is bytes
    K_LIST = 3   # children on the child stack from `first` on
    K_RAW = 4    # one short ASCII text, not made yet: buf[first:first + length]

if MAX_DEPTH != FRAMES:
    raise ImportError("_codec.pyx was built for MAX_DEPTH %d, _pure says %d" % (FRAMES, MAX_DEPTH))

cdef struct Frame:
    PyObject* tag       # borrowed
    PyObject* content   # owned (K_TEXT, K_BYTES) or NULL
    Py_ssize_t first    # K_LIST: index of the first child on the child stack; K_RAW: text offset
    Py_ssize_t length   # K_RAW: text length
    size_t hash         # K_RAW: hash of the text
    int code            # page * 64 + token
    int kind

cdef struct Kids:
    PyObject** items    # owned references items[0:top]
    Py_ssize_t top
    Py_ssize_t cap
    PyObject* local[LOCAL_KIDS]

cdef struct Leaf:
    PyObject* element   # owned (tag, text) tuple, or NULL
    const char* data    # the text's ASCII bytes (inside element)
    Py_ssize_t length
    int code


# TAGS[page * 64 + token]: the interned "Page:Name" string (borrowed from NAMES) or NULL
cdef PyObject* TAGS[256 * 64]
cdef unsigned char PAGE_KNOWN[256]
for _page in range(256):
    PAGE_KNOWN[_page] = NAMES[_page] is not None
    for _token in range(64):
        _name = NAMES[_page][_token] if NAMES[_page] is not None else None
        TAGS[_page * 64 + _token] = <PyObject*>_name if _name is not None else NULL

# KNOWN_TOKENS[page]: bit t set when the code page defines tag token t
cdef unsigned long long KNOWN_TOKENS[256]
for _page in range(256):
    KNOWN_TOKENS[_page] = 0
    for _token in range(64):
        if TAGS[_page * 64 + _token] != NULL:
            KNOWN_TOKENS[_page] |= 1ULL << _token

cdef PyObject* EMPTY_LEAVES[256 * 64]  # (tag, None) per tag, owned, made on first use
cdef Leaf LEAVES[LEAF_SLOTS]

# Short ASCII values ("0", "1", "-1", "14" ...) dominate policy documents and statuses:
# one- and two-character strings come from prebuilt tables instead of new allocations.
cdef list _SMALL = [chr(i) for i in range(128)] + [chr(a) + chr(b) for a in range(32, 127) for b in range(32, 127)]
cdef PyObject* ONE_CHAR[128]
cdef PyObject* TWO_CHARS[95 * 95]
for _i in range(128):
    ONE_CHAR[_i] = <PyObject*>_SMALL[_i]
for _i in range(95 * 95):
    TWO_CHARS[_i] = <PyObject*>_SMALL[128 + _i]


cdef inline Py_ssize_t _text_end(const unsigned char* buf, Py_ssize_t start, Py_ssize_t n,
                                 size_t* h, int* ascii):
    """Index of the NUL ending the text at ``start``, or -1.  ``ascii`` (and ``h``, its
    hash) only for a short ASCII text: longer ones are found with memchr."""
    cdef Py_ssize_t limit = n - start, q
    cdef const unsigned char* hit
    if limit > SHORT_TEXT:
        limit = SHORT_TEXT
    q = easload_scan(buf + start, limit, h, ascii)
    if q >= 0:
        return start + q
    ascii[0] = False
    hit = <const unsigned char*>memchr(buf + start + limit, 0, n - start - limit)
    return -1 if hit == NULL else hit - buf


cdef inline Py_ssize_t _nul(const unsigned char* buf, Py_ssize_t start, Py_ssize_t n):
    """Index of the NUL ending the text at ``start``, or -1 (short texts: a byte loop, then memchr)."""
    cdef Py_ssize_t q = start
    cdef Py_ssize_t limit = start + SHORT_TEXT if n - start > SHORT_TEXT else n
    cdef const unsigned char* hit
    while q < limit:
        if buf[q] == 0:
            return q
        q += 1
    hit = <const unsigned char*>memchr(buf + q, 0, n - q)
    return -1 if hit == NULL else hit - buf


cdef int _utf8_error(const unsigned char* buf, Py_ssize_t start, Py_ssize_t end, Py_ssize_t offset) except -1:
    # cold path: the same message and offset as the pure twin
    PyErr_Clear()
    try:
        (<bytes>PyBytes_FromStringAndSize(<const char*>buf + start, end - start)).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EncodingError("invalid UTF-8 in string: " + exc.reason, offset + exc.start) from None
    raise SystemError("UTF-8 decoding failed without a UnicodeDecodeError")


cdef inline PyObject* _small(const unsigned char* buf, Py_ssize_t start, Py_ssize_t length):
    """A new reference to a prebuilt 1- or 2-character string, or NULL (no error set)."""
    cdef unsigned char a, b
    if length == 1:
        a = buf[start]
        if a < 128:
            return easload_new_ref(ONE_CHAR[a])
    elif length == 2:
        a = buf[start] - 32
        b = buf[start + 1] - 32
        if a < 95 and b < 95:
            return easload_new_ref(TWO_CHARS[a * 95 + b])
    return NULL


cdef inline PyObject* _text(const unsigned char* buf, Py_ssize_t start, Py_ssize_t end,
                            Py_ssize_t offset) except NULL:
    """A new reference to the text buf[start:end] (UTF-8)."""
    cdef PyObject* s = _small(buf, start, end - start)
    if s != NULL:
        return s
    s = Raw_DecodeUTF8(<const char*>buf + start, end - start, NULL)
    if s == NULL:
        _utf8_error(buf, start, end, offset)
    return s


cdef inline PyObject* _ascii(const unsigned char* buf, Py_ssize_t start, Py_ssize_t length) except NULL:
    """A new reference to the ASCII text buf[start:start + length]."""
    cdef PyObject* s = _small(buf, start, length)
    if s != NULL:
        return s
    return easload_ascii(buf + start, length)


cdef inline Leaf* _leaf_slot(size_t h, int code):
    h = (h ^ <size_t>code) * <size_t>0x9E3779B97F4A7C15ULL
    return &LEAVES[(h >> 40) & (LEAF_SLOTS - 1)]


cdef PyObject* _leaf(Frame* frame, const unsigned char* buf) except NULL:
    """The finished element of a K_RAW frame: (tag, text), from the leaf cache when it is there."""
    cdef Leaf* slot = _leaf_slot(frame.hash, frame.code)
    cdef PyObject* element
    cdef PyObject* old
    if (slot.element != NULL and slot.code == frame.code and slot.length == frame.length
            and memcmp(slot.data, buf + frame.first, frame.length) == 0):
        return easload_new_ref(slot.element)
    element = easload_pair(frame.tag, _ascii(buf, frame.first, frame.length))
    old = slot.element
    slot.element = easload_new_ref(element)
    slot.data = easload_text_data(element)
    slot.length = frame.length
    slot.code = frame.code
    easload_xdecref(old)  # last: frees nothing the slot still points to
    return element


cdef inline PyObject* _empty_leaf(PyObject* tag, int code) except NULL:
    cdef PyObject* element = EMPTY_LEAVES[code]
    if element == NULL:
        element = easload_pair(tag, easload_none())
        if EMPTY_LEAVES[code] == NULL:  # (a decode run by the GC inside easload_pair may have made it)
            EMPTY_LEAVES[code] = element
            return easload_new_ref(element)
        easload_decref(element)
        element = EMPTY_LEAVES[code]
    return easload_new_ref(element)


cdef int _grow(Kids* kids) except -1:
    cdef PyObject** grown
    cdef Py_ssize_t cap = kids.cap * 2
    if kids.items == kids.local:
        grown = <PyObject**>PyMem_Malloc(cap * sizeof(PyObject*))
        if grown != NULL:
            memcpy(grown, kids.local, kids.top * sizeof(PyObject*))
    else:
        grown = <PyObject**>PyMem_Realloc(kids.items, cap * sizeof(PyObject*))
    if grown == NULL:
        raise MemoryError()
    kids.items = grown
    kids.cap = cap
    return 0


cdef inline int _add_child(Frame* frame, Kids* kids, PyObject* element, Py_ssize_t pos) except -1:
    """Add a finished element (owned; taken also on failure) to the open element ``frame``."""
    if frame.kind != K_LIST:
        if frame.kind != K_NONE:
            easload_decref(element)
            raise UnsupportedError("element mixed with text or opaque data", pos)
        frame.kind = K_LIST
    if kids.top == kids.cap:
        try:
            _grow(kids)
        except MemoryError:
            easload_decref(element)
            raise
    kids.items[kids.top] = element
    kids.top += 1
    return 0


cdef int _add_text(Frame* frame, const unsigned char* buf, PyObject* text, Py_ssize_t pos) except -1:
    """Add text (owned; taken also on failure) to the open element ``frame``."""
    cdef PyObject* joined
    if frame.kind == K_NONE:
        frame.kind = K_TEXT
        frame.content = text
        return 0
    if frame.kind == K_RAW:  # make the first piece now
        try:
            frame.content = _ascii(buf, frame.first, frame.length)
        except MemoryError:
            easload_decref(text)
            raise
        frame.kind = K_TEXT
    if frame.kind == K_TEXT:
        try:
            joined = Raw_Concat(frame.content, text)
        finally:
            easload_decref(text)
        easload_decref(frame.content)
        frame.content = joined
        return 0
    easload_decref(text)
    raise UnsupportedError("text mixed with elements or opaque data", pos)


cdef Py_ssize_t _header(const unsigned char* buf, Py_ssize_t n, Py_ssize_t* tbl_start,
                        Py_ssize_t* tbl_len) except -1:
    cdef unsigned long long public_id, public_index, charset, strtbl_len
    cdef Py_ssize_t pos
    cdef unsigned char version
    if n < 4:
        raise TruncatedError("document shorter than the WBXML header", n)
    version = buf[0]
    if version != 0x03 and version != 0x02 and version != 0x01:
        raise HeaderError("unsupported WBXML version 0x%02x (EAS uses 0x03)" % version, 0)
    if buf[1] == 0x01 and buf[2] == 0x6A and buf[3] == 0x00:  # the header EAS sends: no string table
        tbl_start[0] = 4
        tbl_len[0] = 0
        return 4
    pos = 1
    _mb(buf, n, &pos, &public_id)
    has_index = False
    if public_id == 0:
        _mb(buf, n, &pos, &public_index)
        has_index = True
    _mb(buf, n, &pos, &charset)
    if charset != 106:
        raise HeaderError("unsupported charset MIBenum %d (EAS uses 106, UTF-8)" % charset, pos - 1)
    _mb(buf, n, &pos, &strtbl_len)
    if strtbl_len > <unsigned long long>(n - pos):
        raise TruncatedError("string table longer than the document", pos)
    tbl_start[0] = pos
    tbl_len[0] = <Py_ssize_t>strtbl_len
    pos += <Py_ssize_t>strtbl_len
    if has_index and public_index >= strtbl_len:
        raise WBXMLError("public id string-table index out of range", 1)
    return pos


def decode(data):
    """Decode a WBXML document into an element tree ``(tag, content)``."""
    if type(data) is not bytes:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        else:
            raise TypeError("decode() needs bytes, not %s" % type(data).__name__)
    return _decode(<bytes>data)


cdef tuple _decode(bytes data):
    cdef Frame frames[FRAMES]
    cdef Kids kids
    cdef Py_ssize_t depth = 0
    kids.items = kids.local
    kids.top = 0
    kids.cap = LOCAL_KIDS
    try:
        return <tuple>easload_steal(_walk(data, frames, &depth, &kids))
    finally:
        # on an error: release what the open elements and the child stack still hold
        while depth > 0:
            depth -= 1
            easload_xdecref(frames[depth].content)
        while kids.top > 0:
            kids.top -= 1
            easload_decref(kids.items[kids.top])
        if kids.items != kids.local:
            PyMem_Free(kids.items)


cdef inline PyObject* _root(PyObject* element, Py_ssize_t pos, Py_ssize_t n) except NULL:
    if pos != n:
        easload_decref(element)
        raise WBXMLError("data after the root element", pos)
    return element


cdef PyObject* _walk(bytes data, Frame* frames, Py_ssize_t* depth_out, Kids* kids) except NULL:
    """The decoder loop; returns the root element (a new reference)."""
    cdef const unsigned char* buf = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t tbl_start = 0, tbl_len = 0, pos, end, start, length, count, limit, q
    cdef Py_ssize_t depth = 0
    cdef unsigned long long value
    cdef unsigned char b, token
    cdef int ascii
    cdef size_t h = 0
    cdef const unsigned char* hit
    cdef int page = 0, code
    cdef PyObject* tag
    cdef PyObject* content
    cdef PyObject* element
    cdef PyObject* chunk
    cdef PyObject* joined
    cdef Frame* frame
    pos = _header(buf, n, &tbl_start, &tbl_len)
    while pos < n:
        b = buf[pos]
        token = b & 0x3F
        if token >= 5:
            if b & 0x80:
                raise UnsupportedError("attributes are not used by EAS (tag byte 0x%02x)" % b, pos)
            code = page + token
            tag = TAGS[code]
            if tag == NULL:
                raise UnknownTokenError("unknown tag token 0x%02x" % token, pos)
            pos += 1
            if depth >= FRAMES:  # also an empty element one level too deep (the encoder's limit)
                raise NestingError("elements nested deeper than %d" % FRAMES, pos - 1)
            if b & 0x40:
                frame = &frames[depth]
                frame.tag = tag
                frame.content = NULL
                frame.first = kids.top
                frame.code = code
                frame.kind = K_NONE
                depth += 1
                depth_out[0] = depth
                continue
            element = _empty_leaf(tag, code)
            if depth == 0:
                return _root(element, pos, n)
            _add_child(&frames[depth - 1], kids, element, pos - 1)
        elif b == 0x03:  # STR_I
            start = pos + 1
            end = _text_end(buf, start, n, &h, &ascii)
            if end < 0:
                raise TruncatedError("unterminated inline string", pos)
            if depth == 0:
                raise WBXMLError("text outside the root element", pos)
            frame = &frames[depth - 1]
            if frame.kind == K_NONE:  # the usual case: the element's only text
                if ascii:
                    frame.kind = K_RAW
                    frame.first = start
                    frame.length = end - start
                    frame.hash = h
                else:
                    frame.content = _text(buf, start, end, start)
                    frame.kind = K_TEXT
            else:
                _add_text(frame, buf, _text(buf, start, end, start), pos)
            pos = end + 1
        elif b == 0x01:  # END
            if depth == 0:
                raise NestingError("END without an open element", pos)
            frame = &frames[depth - 1]
            if frame.kind == K_RAW:
                element = _leaf(frame, buf)
            else:
                if frame.kind == K_LIST:
                    count = kids.top - frame.first
                    content = easload_list(kids.items + frame.first, count)
                    kids.top = frame.first
                elif frame.kind == K_NONE:
                    content = easload_list(NULL, 0)
                else:
                    content = frame.content
                    frame.content = NULL
                element = easload_pair(frame.tag, content)
            depth -= 1
            depth_out[0] = depth
            pos += 1
            if depth == 0:
                return _root(element, pos, n)
            frame = &frames[depth - 1]
            if frame.kind == K_LIST and kids.top < kids.cap:  # the usual case, inline
                kids.items[kids.top] = element
                kids.top += 1
            else:
                _add_child(frame, kids, element, pos - 1)
        elif b == 0x00:  # SWITCH_PAGE
            if pos + 1 >= n:
                raise TruncatedError("document ends inside SWITCH_PAGE", pos)
            if not PAGE_KNOWN[buf[pos + 1]]:
                raise UnknownTokenError("unknown code page %d" % buf[pos + 1], pos + 1)
            page = buf[pos + 1] * 64
            pos += 2
        elif b == 0xC3:  # OPAQUE
            start = pos
            pos += 1
            _mb(buf, n, &pos, &value)
            if value > <unsigned long long>(n - pos):
                raise TruncatedError("opaque data longer than the document", start)
            if depth == 0:
                raise WBXMLError("opaque data outside the root element", start)
            length = <Py_ssize_t>value
            chunk = Raw_BytesFromStringAndSize(<const char*>buf + pos, length)
            frame = &frames[depth - 1]
            if frame.kind == K_NONE:
                frame.kind = K_BYTES
                frame.content = chunk
            elif frame.kind == K_BYTES:
                try:
                    joined = Raw_Add(frame.content, chunk)
                finally:
                    easload_decref(chunk)
                easload_decref(frame.content)
                frame.content = joined
            else:
                easload_decref(chunk)
                raise UnsupportedError("opaque data mixed with text or elements", start)
            pos += length
        elif b == 0x83:  # STR_T
            start = pos
            pos += 1
            _mb(buf, n, &pos, &value)
            if value >= <unsigned long long>tbl_len:
                raise WBXMLError("string-table reference out of range", start)
            hit = <const unsigned char*>memchr(buf + tbl_start + value, 0, tbl_len - <Py_ssize_t>value)
            if hit == NULL:
                raise TruncatedError("unterminated string in the string table", start)
            if depth == 0:
                raise WBXMLError("text outside the root element", start)
            _add_text(&frames[depth - 1], buf,
                      _text(buf, tbl_start + <Py_ssize_t>value, hit - buf, start), start)
        elif b == 0x02:  # ENTITY
            start = pos
            pos += 1
            _mb(buf, n, &pos, &value)
            if depth == 0:
                raise WBXMLError("entity outside the root element", start)
            if value == 0 or value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:  # NUL cannot be encoded back
                raise EncodingError("entity is not a Unicode scalar value", start)
            text = chr(<int>value)
            _add_text(&frames[depth - 1], buf, easload_new_ref(<PyObject*>text), start)
        else:
            raise UnsupportedError("global token 0x%02x is not used by EAS" % b, pos)
    if depth:
        raise TruncatedError("document ends inside <%s>" % <object>frames[depth - 1].tag, n)
    raise TruncatedError("document has no root element", n)


# --------------------------------------------------------------------------- encode

cdef struct Buffer:
    char* data
    Py_ssize_t size
    Py_ssize_t cap


cdef inline int _reserve(Buffer* out, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap
    cdef char* grown
    if out.size + extra <= out.cap:
        return 0
    cap = out.cap * 2
    if cap < out.size + extra:
        cap = out.size + extra + 64
    grown = <char*>PyMem_Realloc(out.data, cap)
    if grown == NULL:
        raise MemoryError()
    out.data = grown
    out.cap = cap
    return 0


cdef inline int _put(Buffer* out, unsigned char c) except -1:
    if out.size >= out.cap:
        _reserve(out, 1)
    out.data[out.size] = <char>c
    out.size += 1
    return 0


cdef inline int _write(Buffer* out, const char* src, Py_ssize_t length) except -1:
    _reserve(out, length)
    memcpy(out.data + out.size, src, length)
    out.size += length
    return 0


cdef int _put_mb(Buffer* out, Py_ssize_t value) except -1:
    cdef unsigned char tmp[10]
    cdef int i = 0
    tmp[0] = value & 0x7F
    value >>= 7
    while value:
        i += 1
        tmp[i] = (value & 0x7F) | 0x80
        value >>= 7
    while i >= 0:
        _put(out, tmp[i])
        i -= 1
    return 0


cdef int _encode_element(Buffer* out, object element, int page, int depth, list slots) except -1:
    cdef Py_ssize_t size
    cdef const char* raw
    cdef int number, token
    if type(element) is not tuple or len(<tuple>element) != 2:
        raise TreeError("an element must be a (tag, content) tuple, not %r" % (element,))
    if depth > C_MAX_DEPTH:
        raise NestingError("elements nested deeper than %d" % C_MAX_DEPTH)
    tag = (<tuple>element)[0]
    content = (<tuple>element)[1]
    try:
        entry = TOKENS[tag]
    except (KeyError, TypeError):
        raise TreeError("unknown tag %r" % (tag,)) from None
    number = (<tuple>entry)[0]
    token = (<tuple>entry)[1]
    if number != page:
        _put(out, 0x00)
        _put(out, number)
        page = number
    if content is None:
        _put(out, token)
        return page
    _put(out, token | 0x40)
    kind = type(content)
    if kind is str:
        try:
            raw = PyUnicode_AsUTF8AndSize(content, &size)
        except UnicodeEncodeError:
            raise TreeError("text of <%s> cannot be encoded as UTF-8" % tag) from None
        if memchr(raw, 0, size) != NULL:
            raise TreeError("text of <%s> contains a NUL character" % tag)
        _put(out, 0x03)
        _write(out, raw, size)
        _put(out, 0)
    elif kind is list:
        for child in <list>content:
            page = _encode_element(out, child, page, depth + 1, slots)
    elif kind is bytes or kind is bytearray:
        _put(out, 0xC3)
        _put_mb(out, len(content))
        if kind is bytes:
            _write(out, PyBytes_AS_STRING(content), PyBytes_GET_SIZE(content))
        else:
            b = bytes(content)
            _write(out, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
    elif kind is SlotType and slots is not None:
        _put(out, 0x03)
        slots.append((out.size, content.name))
        _put(out, 0)
    else:
        raise TreeError("content of <%s> must be None, str, bytes or a list, not %s" % (tag, kind.__name__))
    _put(out, 0x01)
    return page


cdef bytes _encode(object element, list slots):
    cdef Buffer out
    out.data = <char*>PyMem_Malloc(256)
    if out.data == NULL:
        raise MemoryError()
    out.cap = 256
    out.size = 0
    try:
        _write(&out, b"\x03\x01\x6a\x00", 4)
        _encode_element(&out, element, 0, 1, slots)
        return PyBytes_FromStringAndSize(out.data, out.size)
    finally:
        PyMem_Free(out.data)


def encode(element):
    """Encode an element tree into a WBXML document (bytes)."""
    return _encode(element, None)


cdef class Template:
    """A request pre-encoded once, with text slots filled in per request (see _pure.Template)."""

    cdef readonly tuple parts
    cdef readonly tuple names
    cdef bytes _fixed
    cdef Py_ssize_t _fixed_len

    def __init__(self, tree):
        cdef list slots = []
        data = _encode(tree, slots)
        parts = []
        names = []
        last = 0
        for offset, name in slots:
            parts.append(data[last:offset])
            names.append(name)
            last = offset
        parts.append(data[last:])
        self.parts = tuple(parts)
        self.names = tuple(names)
        self._fixed = data if not names else None
        self._fixed_len = sum(len(p) for p in parts)

    def render(self, *values):
        cdef Py_ssize_t count = len(values), i, total, size, pos
        cdef const char* raw
        cdef bytes part, result
        cdef char* dst
        if count != len(self.names):
            raise TreeError("template needs %d values (%s), got %d"
                            % (len(self.names), ", ".join(self.names), count))
        if self._fixed is not None:
            return self._fixed
        total = self._fixed_len
        encoded = []
        for i in range(count):
            value = values[i]
            if type(value) is str:
                try:
                    raw = PyUnicode_AsUTF8AndSize(value, &size)
                except UnicodeEncodeError:
                    raise TreeError("template value for %s cannot be encoded as UTF-8" % self.names[i]) from None
                value = PyBytes_FromStringAndSize(raw, size)
            elif type(value) is not bytes:
                raise TreeError("template value for %s must be str or bytes" % self.names[i])
            size = PyBytes_GET_SIZE(value)
            if memchr(PyBytes_AS_STRING(value), 0, size) != NULL:
                raise TreeError("template value for %s contains a NUL character" % self.names[i])
            encoded.append(value)
            total += size
        result = PyBytes_FromStringAndSize(NULL, total)
        dst = PyBytes_AS_STRING(result)
        pos = 0
        for i in range(count + 1):
            part = <bytes>self.parts[i]
            size = PyBytes_GET_SIZE(part)
            memcpy(dst + pos, PyBytes_AS_STRING(part), size)
            pos += size
            if i < count:
                part = <bytes>encoded[i]
                size = PyBytes_GET_SIZE(part)
                memcpy(dst + pos, PyBytes_AS_STRING(part), size)
                pos += size
        return result


# --------------------------------------------------------------------------- extract

cdef enum:
    MAX_WANTED = 32
    LOCAL_HITS = 16


cdef class _Wanted:
    """A wanted-tag sequence compiled once: the distinct tags' page * 64 + token codes, and for
    every entry of the sequence the index of its code (-1: a tag no code page defines)."""
    cdef tuple tags
    cdef tuple empty  # the result when no wanted tag holds text: () per entry
    cdef int codes[MAX_WANTED]
    cdef int count  # distinct codes; -1: too many entries, walk a full decode
    cdef int entries[MAX_WANTED]
    cdef Py_ssize_t nentries
    cdef unsigned long long mask  # bit (code & 63) of every code: most tags are ruled out by one test

    def __cinit__(self, tuple wanted):
        cdef int i, j, code
        self.tags = wanted
        self.empty = ((),) * len(wanted)
        self.count = 0
        self.mask = 0
        self.nentries = len(wanted)
        if self.nentries > MAX_WANTED:
            for t in wanted:
                TOKENS.get(t)  # an unhashable tag: the pure twin's TypeError
            self.count = -1
            return
        for i in range(self.nentries):
            self.entries[i] = -1
            entry = TOKENS.get(wanted[i])  # (an unhashable tag: TypeError, as in the pure twin)
            if entry is None:
                continue
            code = (<tuple>entry)[0] * 64 + (<tuple>entry)[1]
            for j in range(self.count):
                if self.codes[j] == code:
                    self.entries[i] = j
                    break
            else:
                self.codes[self.count] = code
                self.entries[i] = self.count
                self.count += 1
                self.mask |= 1ULL << (code & 63)


cdef struct Hit:
    Py_ssize_t start
    Py_ssize_t end
    int slot  # index into _Wanted.codes


cdef dict _WANTED = {}  # wanted tuple -> _Wanted: the callers' constant tag lists
cdef object _last_key = None  # the last wanted tuple (kept alive, so `is` is safe) ...
cdef _Wanted _last_wanted = None  # ... and its compiled form


def extract(data, wanted):
    """Texts of the ``wanted`` tags, in document order, without building the tree.

    Returns one tuple per entry of the sequence ``wanted``, in its order: the
    texts of all elements with that tag, in document order (``()`` when none
    holds text), e.g. ``(("1", "1"), ("2488355417",))`` for
    ``("Provision:Status", "Provision:PolicyKey")`` and the article's (docs/protocol-notes.md, source [A])
    example Provision
    response.  Malformed documents raise a :class:`WBXMLError` (its offset may
    differ from the one :func:`decode` reports, since less is checked before it
    is found).
    """
    global _last_key, _last_wanted
    cdef _Wanted compiled
    if type(data) is not bytes:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        else:
            raise TypeError("extract() needs bytes, not %s" % type(data).__name__)
    if wanted is _last_key:
        compiled = _last_wanted
    elif type(wanted) is tuple:
        compiled = _WANTED.get(wanted)
        if compiled is None:
            compiled = _Wanted(wanted)
            if len(_WANTED) < 1024:
                _WANTED[wanted] = compiled
        _last_key = wanted
        _last_wanted = compiled
    else:
        compiled = _Wanted(tuple(wanted))
    if compiled.count < 0:
        return _extract_slow(<bytes>data, compiled.tags)
    return _extract_codes(<bytes>data, compiled)


cdef inline int _hit(Hit** hits, Py_ssize_t* nhits, Py_ssize_t* cap, Hit* local, Py_ssize_t start,
                     Py_ssize_t end, int slot) except -1:
    """Record a wanted text buf[start:end] (the hits array grows on the heap past LOCAL_HITS)."""
    cdef Hit* grown
    if nhits[0] == cap[0]:
        if hits[0] == local:
            grown = <Hit*>PyMem_Malloc(2 * cap[0] * sizeof(Hit))
            if grown != NULL:
                memcpy(grown, local, nhits[0] * sizeof(Hit))
        else:
            grown = <Hit*>PyMem_Realloc(hits[0], 2 * cap[0] * sizeof(Hit))
        if grown == NULL:
            raise MemoryError()
        hits[0] = grown
        cap[0] *= 2
    hits[0][nhits[0]].start = start
    hits[0][nhits[0]].end = end
    hits[0][nhits[0]].slot = slot
    nhits[0] += 1
    return 0


cdef tuple _extract_codes(bytes data, _Wanted wanted):
    """The extractor's fast path: tokens compared as integers, texts located, then made."""
    cdef const unsigned char* buf = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t tbl_start = 0, tbl_len = 0, pos, depth = 0, end, q, capture_depth = -1
    cdef unsigned long long value
    cdef unsigned char b, token
    cdef int page = 0, code, i, slot = -1
    cdef bint captured = False
    cdef Hit local[LOCAL_HITS]
    cdef Hit* hits = local
    cdef Py_ssize_t nhits = 0, cap = LOCAL_HITS
    try:
        pos = _header(buf, n, &tbl_start, &tbl_len)
        while pos < n:
            b = buf[pos]
            if b == 0x03:  # STR_I
                end = _nul(buf, pos + 1, n)
                if end < 0:
                    raise TruncatedError("unterminated inline string", pos)
                if capture_depth == depth:
                    if captured:  # text in pieces: rare, let the full decode join them
                        return _extract_slow(data, wanted.tags)
                    captured = True
                    _hit(&hits, &nhits, &cap, local, pos + 1, end, slot)
                pos = end + 1
            elif b == 0x01:  # END
                if depth == 0:
                    raise NestingError("END without an open element", pos)
                depth -= 1
                capture_depth = -1
                pos += 1
                if depth == 0:
                    return _hits_to_result(buf, n, hits, nhits, wanted)
            else:
                token = b & 0x3F
                if token >= 5:
                    if b & 0x80:
                        raise UnsupportedError("attributes are not used by EAS (tag byte 0x%02x)" % b, pos)
                    code = page + token
                    if TAGS[code] == NULL:
                        raise UnknownTokenError("unknown tag token 0x%02x" % token, pos)
                    pos += 1
                    if b & 0x40:
                        if depth >= C_MAX_DEPTH:
                            raise NestingError("elements nested deeper than %d" % C_MAX_DEPTH, pos - 1)
                        capture_depth = -1
                        if (wanted.mask >> token) & 1:
                            for i in range(wanted.count):
                                if wanted.codes[i] == code:
                                    capture_depth = depth + 1
                                    captured = False
                                    slot = i
                                    break
                            if capture_depth > 0 and depth > 0 and pos < n and buf[pos] == 0x03:
                                # a wanted leaf <tag> STR_I text END: in one step
                                end = _nul(buf, pos + 1, n)
                                if end < 0:
                                    raise TruncatedError("unterminated inline string", pos)
                                _hit(&hits, &nhits, &cap, local, pos + 1, end, slot)
                                if end + 1 < n and buf[end + 1] == 0x01:
                                    capture_depth = -1
                                    pos = end + 2
                                    continue
                                captured = True  # more follows: an ordinary element
                                depth += 1
                                pos = end + 1
                                continue
                        if capture_depth < 0 and depth > 0:
                            # a run of unwanted leaves <tag> STR_I text END (most elements): skip it
                            q = easload_skip_leaves(buf, pos - 1, n, KNOWN_TOKENS[page >> 6] & ~wanted.mask,
                                                    KNOWN_TOKENS[page >> 6])
                            if q != pos - 1:
                                pos = q
                                continue
                        depth += 1
                    elif depth == 0:
                        return wanted.empty
                elif b == 0x00:  # SWITCH_PAGE
                    if pos + 1 >= n:
                        raise TruncatedError("document ends inside SWITCH_PAGE", pos)
                    if not PAGE_KNOWN[buf[pos + 1]]:
                        raise UnknownTokenError("unknown code page %d" % buf[pos + 1], pos + 1)
                    page = buf[pos + 1] * 64
                    pos += 2
                elif b == 0xC3:  # OPAQUE
                    q = pos
                    pos += 1
                    _mb(buf, n, &pos, &value)
                    if value > <unsigned long long>(n - pos):
                        raise TruncatedError("opaque data longer than the document", q)
                    pos += <Py_ssize_t>value
                elif b == 0x83 or b == 0x02:  # STR_T, ENTITY
                    if capture_depth == depth:
                        return _extract_slow(data, wanted.tags)
                    pos += 1
                    _mb(buf, n, &pos, &value)
                else:
                    raise UnsupportedError("global token 0x%02x is not used by EAS" % b, pos)
        raise TruncatedError("document ends inside an element", n)
    finally:
        if hits != local:
            PyMem_Free(hits)


cdef inline PyObject* _hit_text(const unsigned char* buf, Py_ssize_t n, Hit* hit, int code) except NULL:
    """A new reference to a hit's text: the leaf cache's when a decode made that leaf."""
    cdef Leaf* slot
    cdef Py_ssize_t length = hit.end - hit.start
    cdef PyObject* s = _small(buf, hit.start, length)
    cdef size_t h = 0
    cdef int ascii = 0
    if s != NULL:
        return s
    if length < SHORT_TEXT and _text_end(buf, hit.start, n, &h, &ascii) >= 0 and ascii:  # the decoder's hash
        slot = _leaf_slot(h, code)
        if (slot.element != NULL and slot.code == code and slot.length == length
                and memcmp(slot.data, buf + hit.start, length) == 0):
            return easload_new_ref(easload_text(slot.element))
    return _text(buf, hit.start, hit.end, hit.start)


cdef tuple _hits_to_result(const unsigned char* buf, Py_ssize_t n, Hit* hits, Py_ssize_t nhits, _Wanted wanted):
    """One tuple of texts per wanted entry; each tuple made at its final size."""
    cdef PyObject* texts[MAX_WANTED]  # per distinct code: owned tuple, or NULL
    cdef Py_ssize_t counts[MAX_WANTED]
    cdef Py_ssize_t i
    cdef int slot
    cdef PyObject* item
    cdef tuple result
    for i in range(wanted.count):
        counts[i] = 0
        texts[i] = NULL
    for i in range(nhits):
        counts[hits[i].slot] += 1
    try:
        for i in range(wanted.count):
            if counts[i]:
                texts[i] = easload_tuple(counts[i])
                counts[i] = 0
        for i in range(nhits):  # in document order
            slot = hits[i].slot
            easload_tuple_set(texts[slot], counts[slot], _hit_text(buf, n, &hits[i], wanted.codes[slot]))
            counts[slot] += 1
        result = <tuple>easload_steal(easload_tuple(wanted.nentries))
        for i in range(wanted.nentries):
            slot = wanted.entries[i]
            item = texts[slot] if slot >= 0 and texts[slot] != NULL else <PyObject*>EMPTY_TUPLE
            easload_tuple_set(<PyObject*>result, i, easload_new_ref(item))
        return result
    finally:
        for i in range(wanted.count):
            easload_xdecref(texts[i])


cdef tuple _extract_slow(bytes data, tuple wanted):
    """The pure twin's walk over a full decode (too many wanted tags, text in pieces, STR_T...)."""
    cdef dict found = {}
    for tag in wanted:
        found[tag] = []
    stack = [_decode(data)]
    while stack:
        tag, content = stack.pop()
        if type(content) is list:
            stack.extend(reversed(content))
        elif type(content) is str:
            texts = found.get(tag)
            if texts is not None:
                (<list>texts).append(content)
    return tuple([tuple(found[tag]) for tag in wanted])
