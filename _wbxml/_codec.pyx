# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled twin of ``_wbxml._pure``: same API, same trees, same errors.

Written against the C API where it pays (a raw pointer walk over the input,
``memchr`` for string ends, UTF-8 decoded straight from the buffer, a
realloc'd output buffer for encoding).  Behaviour is pinned to the pure twin by
the differential and property tests in tests/test_wbxml.py and by
bench/fuzz_wbxml.py (same tree, or same error class at the same byte offset).
The code page tables and the interned tag names are the pure twin's, so trees
from both twins share the very same tag objects.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memchr, memcpy

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
# KNOWN[page * 64 + token]: the code page defines that tag (the extractor checks tokens in C)
cdef unsigned char KNOWN[256 * 64]
for _page in range(256):
    for _token in range(64):
        KNOWN[_page * 64 + _token] = 1 if NAMES[_page] is not None and NAMES[_page][_token] is not None else 0
cdef dict TOKENS = _TOKENS
cdef Py_ssize_t C_MAX_DEPTH = MAX_DEPTH
cdef object SlotType = Slot


# --------------------------------------------------------------------------- decode

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


# Short ASCII values ("0", "1", "-1", "14" ...) dominate policy documents and statuses:
# one- and two-character strings come from prebuilt tables instead of new allocations.
cdef tuple ONE_CHAR = tuple(chr(i) for i in range(128))
cdef dict TWO_CHARS = {(a << 8) | b: chr(a) + chr(b) for a in range(32, 127) for b in range(32, 127)}


cdef str _utf8(const unsigned char* buf, Py_ssize_t start, Py_ssize_t end, Py_ssize_t offset):
    cdef Py_ssize_t length = end - start
    if length == 1 and buf[start] < 128:
        return <str>ONE_CHAR[buf[start]]
    if length == 2 and 32 <= buf[start] < 127 and 32 <= buf[start + 1] < 127:
        return <str>TWO_CHARS[(buf[start] << 8) | buf[start + 1]]
    try:
        return PyUnicode_DecodeUTF8(<const char*>buf + start, end - start, NULL)
    except UnicodeDecodeError as exc:
        raise EncodingError("invalid UTF-8 in string: " + exc.reason, offset + exc.start) from None


cdef int _add_text(list contents, Py_ssize_t depth, str text, Py_ssize_t pos) except -1:
    cur = contents[depth - 1]
    if cur is None:
        contents[depth - 1] = text
    elif type(cur) is str:
        contents[depth - 1] = cur + text
    else:
        raise UnsupportedError("text mixed with elements or opaque data", pos)
    return 0


cdef int _add_child(list contents, Py_ssize_t depth, tuple element, Py_ssize_t pos) except -1:
    cur = contents[depth - 1]
    if cur is None:
        contents[depth - 1] = [element]
    elif type(cur) is list:
        (<list>cur).append(element)
    else:
        raise UnsupportedError("element mixed with text or opaque data", pos)
    return 0


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
    cdef const unsigned char* buf = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t tbl_start = 0, tbl_len = 0, pos, depth = 0, end, start, length
    cdef unsigned long long value
    cdef unsigned char b, token
    cdef const unsigned char* hit
    cdef tuple names, element
    cdef list tags = [], contents = []
    cdef object tag, content, cur
    cdef object root = None
    pos = _header(buf, n, &tbl_start, &tbl_len)
    names = <tuple>NAMES[0]
    while pos < n:
        b = buf[pos]
        token = b & 0x3F
        if token >= 5:
            if b & 0x80:
                raise UnsupportedError("attributes are not used by EAS (tag byte 0x%02x)" % b, pos)
            tag = names[token]
            if tag is None:
                raise UnknownTokenError("unknown tag token 0x%02x" % token, pos)
            pos += 1
            if b & 0x40:
                if depth >= C_MAX_DEPTH:
                    raise NestingError("elements nested deeper than %d" % C_MAX_DEPTH, pos - 1)
                tags.append(tag)
                contents.append(None)
                depth += 1
                continue
            if depth >= C_MAX_DEPTH:  # an empty element one level too deep (the encoder's limit)
                raise NestingError("elements nested deeper than %d" % C_MAX_DEPTH, pos - 1)
            element = (tag, None)
            if depth == 0:
                root = element
                break
            _add_child(contents, depth, element, pos - 1)
        elif b == 0x03:  # STR_I
            hit = <const unsigned char*>memchr(buf + pos + 1, 0, n - pos - 1)
            if hit == NULL:
                raise TruncatedError("unterminated inline string", pos)
            end = hit - buf
            if depth == 0:
                raise WBXMLError("text outside the root element", pos)
            text = _utf8(buf, pos + 1, end, pos + 1)
            cur = contents[depth - 1]
            if cur is None:
                contents[depth - 1] = text
            elif type(cur) is str:
                contents[depth - 1] = cur + text
            else:
                raise UnsupportedError("text mixed with elements or opaque data", pos)
            pos = end + 1
        elif b == 0x01:  # END
            if depth == 0:
                raise NestingError("END without an open element", pos)
            depth -= 1
            content = contents.pop()
            if content is None:
                content = []
            element = (tags.pop(), content)
            pos += 1
            if depth == 0:
                root = element
                break
            _add_child(contents, depth, element, pos - 1)
        elif b == 0x00:  # SWITCH_PAGE
            if pos + 1 >= n:
                raise TruncatedError("document ends inside SWITCH_PAGE", pos)
            obj = NAMES[buf[pos + 1]]
            if obj is None:
                raise UnknownTokenError("unknown code page %d" % buf[pos + 1], pos + 1)
            names = <tuple>obj
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
            chunk = PyBytes_FromStringAndSize(<const char*>buf + pos, length)
            cur = contents[depth - 1]
            if cur is None:
                contents[depth - 1] = chunk
            elif type(cur) is bytes:
                contents[depth - 1] = cur + chunk
            else:
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
            _add_text(contents, depth, _utf8(buf, tbl_start + <Py_ssize_t>value, hit - buf, start), start)
        elif b == 0x02:  # ENTITY
            start = pos
            pos += 1
            _mb(buf, n, &pos, &value)
            if depth == 0:
                raise WBXMLError("entity outside the root element", start)
            if value == 0 or value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:  # NUL cannot be encoded back
                raise EncodingError("entity is not a Unicode scalar value", start)
            _add_text(contents, depth, chr(<int>value), start)
        else:
            raise UnsupportedError("global token 0x%02x is not used by EAS" % b, pos)
    if root is None:
        if depth:
            raise TruncatedError("document ends inside <%s>" % tags[len(tags) - 1], n)
        raise TruncatedError("document has no root element", n)
    if pos != n:
        raise WBXMLError("data after the root element", pos)
    return <tuple>root


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

def extract(data, wanted):
    """Texts of the ``wanted`` tags, in document order, without building the tree.

    Returns ``{tag: [text, ...]}`` for the tags in ``wanted`` that hold text.
    Malformed documents raise a :class:`WBXMLError` (its offset may differ from
    the one :func:`decode` reports, since less is checked before it is found).
    """
    if type(data) is not bytes:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        else:
            raise TypeError("extract() needs bytes, not %s" % type(data).__name__)
    cdef int codes[32]
    cdef int count = 0
    cached = _WANTED.get(wanted) if type(wanted) is tuple else None
    if cached is None:
        wanted_set = frozenset(wanted)
        ints = tuple((<tuple>TOKENS[t])[0] * 64 + (<tuple>TOKENS[t])[1] for t in wanted_set if t in TOKENS)
        cached = (wanted_set, ints)
        if type(wanted) is tuple and len(_WANTED) < 1024:
            _WANTED[wanted] = cached
    wanted_set, ints = cached
    if len(ints) > 32:
        return _extract_slow(<bytes>data, wanted_set)  # more than 32 tags: walk a full decode
    for code in ints:
        codes[count] = code
        count += 1
    return _extract_codes(<bytes>data, codes, count, wanted_set)


cdef dict _WANTED = {}  # wanted tuple -> (frozenset, token codes): the caller's constant tag lists


cdef dict _extract_codes(bytes data, int* codes, int count, frozenset wanted):
    """The extractor's fast path: tokens compared as integers, Python objects only for hits."""
    cdef const unsigned char* buf = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t tbl_start = 0, tbl_len = 0, pos, depth = 0, end, capture_depth = -1
    cdef unsigned long long value
    cdef unsigned char b, token
    cdef const unsigned char* hit
    cdef int page = 0, code, i, capture_code = -1
    cdef bint captured = False
    cdef dict result = {}
    pos = _header(buf, n, &tbl_start, &tbl_len)
    while pos < n:
        b = buf[pos]
        token = b & 0x3F
        if token >= 5:
            if b & 0x80:
                raise UnsupportedError("attributes are not used by EAS (tag byte 0x%02x)" % b, pos)
            code = page * 64 + token
            if not KNOWN[code]:
                raise UnknownTokenError("unknown tag token 0x%02x" % token, pos)
            pos += 1
            if b & 0x40:
                if depth >= C_MAX_DEPTH:
                    raise NestingError("elements nested deeper than %d" % C_MAX_DEPTH, pos - 1)
                depth += 1
                captured = False
                capture_code = -1
                for i in range(count):
                    if codes[i] == code:
                        capture_code = code
                        capture_depth = depth
                        break
            elif depth == 0:
                return result
        elif b == 0x03:
            hit = <const unsigned char*>memchr(buf + pos + 1, 0, n - pos - 1)
            if hit == NULL:
                raise TruncatedError("unterminated inline string", pos)
            end = hit - buf
            if capture_code >= 0 and capture_depth == depth:
                tag = (<tuple>NAMES[capture_code >> 6])[capture_code & 63]
                text = _utf8(buf, pos + 1, end, pos + 1)
                lst = result.get(tag)
                if lst is None:
                    result[tag] = [text]
                elif captured:
                    (<list>lst)[len(<list>lst) - 1] += text
                else:
                    (<list>lst).append(text)
                captured = True
            pos = end + 1
        elif b == 0x01:
            if depth == 0:
                raise NestingError("END without an open element", pos)
            depth -= 1
            capture_code = -1
            captured = False
            pos += 1
            if depth == 0:
                return result
        elif b == 0x00:
            if pos + 1 >= n:
                raise TruncatedError("document ends inside SWITCH_PAGE", pos)
            if NAMES[buf[pos + 1]] is None:
                raise UnknownTokenError("unknown code page %d" % buf[pos + 1], pos + 1)
            page = buf[pos + 1]
            pos += 2
        elif b == 0xC3:
            start = pos
            pos += 1
            _mb(buf, n, &pos, &value)
            if value > <unsigned long long>(n - pos):
                raise TruncatedError("opaque data longer than the document", start)
            pos += <Py_ssize_t>value
        elif b == 0x83 or b == 0x02:
            if capture_code >= 0:
                return _extract_slow(data, wanted)
            pos += 1
            _mb(buf, n, &pos, &value)
        else:
            raise UnsupportedError("global token 0x%02x is not used by EAS" % b, pos)
    raise TruncatedError("document ends inside an element", n)


cdef dict _extract_slow(bytes data, frozenset wanted):
    cdef dict result = {}
    stack = [_decode(data)]
    while stack:
        tag, content = stack.pop()
        if type(content) is list:
            stack.extend(reversed(content))
        elif tag in wanted and type(content) is str:
            result.setdefault(tag, []).append(content)
    return result
