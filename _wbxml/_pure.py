"""WBXML 1.3 codec for Exchange ActiveSync: the readable reference twin.

The compiled twin ``_wbxml._codec`` (``_codec.pyx``) has the same API and
behaviour, written against the C API for speed; the tests and
bench/fuzz_wbxml.py hold the two to identical trees, bytes and errors.

Tree form (cheap to build, to walk and to compare across twins): an element is
a 2-tuple ``(tag, content)`` where ``tag`` is the interned qualified name
``"Page:Name"`` (e.g. ``"Provision:PolicyKey"``) and ``content`` is

* ``None``   -- the element has no content (WBXML tag without the content flag),
* ``str``    -- text (one or more STR_I / STR_T / ENTITY pieces, joined),
* ``bytes``  -- OPAQUE data (e.g. ``Email2:ConversationId``, MIME bodies),
* ``list``   -- child elements (an empty list: content flag set, no content).

Document format (WBXML 1.3 as EAS uses it, MS-ASWBXML 2.1.1): version 0x03,
public id 0x01 ("unknown"), charset 106 (UTF-8), empty string table on encode;
tokens SWITCH_PAGE 0x00, END 0x01, ENTITY 0x02, STR_I 0x03, STR_T 0x83,
OPAQUE 0xC3; tag byte = token | 0x40 when it has content.  Attributes,
literals, extensions and processing instructions are not used by EAS and are
rejected with a clear error.
"""

import sys

from _wbxml.codepages import PAGES
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

#: Documented nesting limit: deeper documents are refused (no RecursionError,
#: no unbounded stack).  Real EAS documents are under 12 levels deep.
MAX_DEPTH = 512

HEADER = b"\x03\x01\x6a\x00"  # version 1.3, public id 1 (unknown), UTF-8, no string table

# Global tokens (WBXML 1.3 section 7.1).  EAS never uses LITERAL*, EXT_* or PI.
_SWITCH_PAGE = 0x00
_END = 0x01
_ENTITY = 0x02
_STR_I = 0x03
_STR_T = 0x83
_OPAQUE = 0xC3


def _build_tables():
    names = [None] * 256
    tokens = {}
    for number, page_name, _ns, _aliases, _section, tags in PAGES:
        row = [None] * 64
        for token, tag_name in tags.items():
            qualified = sys.intern(f"{page_name}:{tag_name}")
            row[token] = qualified
            tokens[qualified] = (number, token)
        names[number] = tuple(row)
    return tuple(names), tokens


_NAMES, _TOKENS = _build_tables()


def tag_names():
    """All qualified tag names known to the codec, in page/token order."""
    return [t for row in _NAMES if row is not None for t in row if t is not None]


# --------------------------------------------------------------------------- decode


def _read_mb(data, pos, n):
    """Read a WBXML mb_u_int32 at ``pos``; return (value, new_pos)."""
    value = 0
    start = pos
    while True:
        if pos >= n:
            raise TruncatedError("document ends inside a multi-byte integer", start)
        b = data[pos]
        pos += 1
        value = (value << 7) | (b & 0x7F)
        if value > 0xFFFFFFFF or pos - start > 5:
            raise WBXMLError("multi-byte integer overflows 32 bits", start)
        if not (b & 0x80):
            return value, pos


def _read_header(data, n):
    if n < 4:
        raise TruncatedError("document shorter than the WBXML header", n)
    version = data[0]
    if version != 0x03 and version != 0x02 and version != 0x01:
        raise HeaderError("unsupported WBXML version 0x%02x (EAS uses 0x03)" % version, 0)
    public_id, pos = _read_mb(data, 1, n)
    public_index = -1
    if public_id == 0:
        public_index, pos = _read_mb(data, pos, n)
    charset, pos = _read_mb(data, pos, n)
    if charset != 106:
        raise HeaderError("unsupported charset MIBenum %d (EAS uses 106, UTF-8)" % charset, pos - 1)
    strtbl_len, pos = _read_mb(data, pos, n)
    if strtbl_len > n - pos:
        raise TruncatedError("string table longer than the document", pos)
    strtbl = data[pos : pos + strtbl_len]
    pos += strtbl_len
    if public_index >= strtbl_len:
        raise WBXMLError("public id string-table index out of range", 1)
    return pos, strtbl


def _utf8(raw, offset):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EncodingError("invalid UTF-8 in string: " + exc.reason, offset + exc.start) from None


def _add_text(contents, text, pos):
    cur = contents[-1]
    if cur is None:
        contents[-1] = text
    elif type(cur) is str:
        contents[-1] = cur + text
    else:
        raise UnsupportedError("text mixed with elements or opaque data", pos)


def decode(data):
    """Decode a WBXML document into an element tree ``(tag, content)``."""
    if type(data) is not bytes:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        else:
            raise TypeError("decode() needs bytes, not %s" % type(data).__name__)
    return _decode(data)


def _decode(data):
    # Token values are written as literals (not the named constants above) so that
    # the compiled twin compares C integers instead of looking up module globals.
    n = len(data)
    pos, strtbl = _read_header(data, n)
    names = _NAMES[0]
    tags = []  # open elements' tags
    contents = []  # open elements' content so far (None: nothing yet)
    depth = 0
    root = None
    while pos < n:
        b = data[pos]
        token = b & 0x3F
        if token >= 5:  # a tag (global tokens are 0x00-0x04 in each of the four columns)
            if b & 0x80:
                raise UnsupportedError("attributes are not used by EAS (tag byte 0x%02x)" % b, pos)
            tag = names[token]
            if tag is None:
                raise UnknownTokenError("unknown tag token 0x%02x" % token, pos)
            pos += 1
            if b & 0x40:
                if depth >= 512:  # MAX_DEPTH
                    raise NestingError("elements nested deeper than %d" % MAX_DEPTH, pos - 1)
                tags.append(tag)
                contents.append(None)
                depth += 1
                continue
            if depth >= 512:  # an empty element one level too deep (the encoder's limit)
                raise NestingError("elements nested deeper than %d" % MAX_DEPTH, pos - 1)
            element = (tag, None)
            if depth == 0:
                root = element
                break
            cur = contents[depth - 1]
            if cur is None:
                contents[depth - 1] = [element]
            elif type(cur) is list:
                cur.append(element)
            else:
                raise UnsupportedError("element mixed with text or opaque data", pos - 1)
        elif b == 0x03:  # STR_I
            end = data.find(b"\x00", pos + 1)
            if end < 0:
                raise TruncatedError("unterminated inline string", pos)
            if depth == 0:
                raise WBXMLError("text outside the root element", pos)
            try:
                text = data[pos + 1 : end].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise EncodingError("invalid UTF-8 in string: " + exc.reason, pos + 1 + exc.start) from None
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
            cur = contents[depth - 1]
            if cur is None:
                contents[depth - 1] = [element]
            elif type(cur) is list:
                cur.append(element)
            else:
                raise UnsupportedError("element mixed with text or opaque data", pos - 1)
        elif b == 0x00:  # SWITCH_PAGE
            if pos + 1 >= n:
                raise TruncatedError("document ends inside SWITCH_PAGE", pos)
            p = data[pos + 1]
            names = _NAMES[p]
            if names is None:
                raise UnknownTokenError("unknown code page %d" % p, pos + 1)
            pos += 2
        elif b == 0xC3:  # OPAQUE
            start = pos
            length, pos = _read_mb(data, pos + 1, n)
            if length > n - pos:
                raise TruncatedError("opaque data longer than the document", start)
            if depth == 0:
                raise WBXMLError("opaque data outside the root element", start)
            chunk = data[pos : pos + length]
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
            offset, pos = _read_mb(data, pos + 1, n)
            if offset >= len(strtbl):
                raise WBXMLError("string-table reference out of range", start)
            end = strtbl.find(b"\x00", offset)
            if end < 0:
                raise TruncatedError("unterminated string in the string table", start)
            if depth == 0:
                raise WBXMLError("text outside the root element", start)
            _add_text(contents, _utf8(strtbl[offset:end], start), start)
        elif b == 0x02:  # ENTITY
            start = pos
            code, pos = _read_mb(data, pos + 1, n)
            if depth == 0:
                raise WBXMLError("entity outside the root element", start)
            if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:  # NUL cannot be encoded back
                raise EncodingError("entity is not a Unicode scalar value", start)
            _add_text(contents, chr(code), start)
        else:  # LITERAL*, EXT_*, PI
            raise UnsupportedError("global token 0x%02x is not used by EAS" % b, pos)
    if root is None:
        if depth:
            raise TruncatedError("document ends inside <%s>" % tags[-1], n)
        raise TruncatedError("document has no root element", n)
    if pos != n:
        raise WBXMLError("data after the root element", pos)
    return root


def extract(data, wanted):
    """Texts of the ``wanted`` tags, in document order, one tuple per wanted tag.

    ``wanted`` is a sequence of tags; the result has one tuple per entry, in its
    order: the texts of all elements with that tag, in document order (``()``
    when none holds text; elements holding elements, opaque data or nothing are
    not counted), e.g. ``(("1", "1"), ("2488355417",))`` for
    ``("Provision:Status", "Provision:PolicyKey")`` and the article's (docs/protocol-notes.md, source [A])
    example Provision
    response.  The compiled twin finds them without building the tree; this
    reference decodes the whole document and walks it.
    """
    wanted = tuple(wanted)
    found = {tag: [] for tag in wanted}
    stack = [decode(data)]
    while stack:
        tag, content = stack.pop()
        if type(content) is list:
            stack.extend(reversed(content))
        elif type(content) is str:
            texts = found.get(tag)
            if texts is not None:
                texts.append(content)
    return tuple(tuple(found[tag]) for tag in wanted)


# --------------------------------------------------------------------------- encode


def _write_mb(out, value):
    if value < 0x80:
        out.append(value)
        return
    tmp = bytearray()
    tmp.append(value & 0x7F)
    value >>= 7
    while value:
        tmp.append((value & 0x7F) | 0x80)
        value >>= 7
    tmp.reverse()
    out += tmp


def _encode_element(out, element, page, depth, slots):
    if type(element) is not tuple or len(element) != 2:
        raise TreeError("an element must be a (tag, content) tuple, not %r" % (element,))
    if depth > 512:  # MAX_DEPTH
        raise NestingError("elements nested deeper than %d" % MAX_DEPTH)
    tag, content = element
    try:
        number, token = _TOKENS[tag]
    except (KeyError, TypeError):
        raise TreeError("unknown tag %r" % (tag,)) from None
    if number != page:
        out.append(0x00)  # SWITCH_PAGE
        out.append(number)
        page = number
    if content is None:
        out.append(token)
        return page
    out.append(token | 0x40)
    kind = type(content)
    if kind is str:
        try:
            raw = content.encode("utf-8")
        except UnicodeEncodeError:
            raise TreeError("text of <%s> cannot be encoded as UTF-8" % tag) from None
        if b"\x00" in raw:
            raise TreeError("text of <%s> contains a NUL character" % tag)
        out.append(0x03)  # STR_I
        out += raw
        out.append(0)
    elif kind is list:
        for child in content:
            page = _encode_element(out, child, page, depth + 1, slots)
    elif kind is bytes or kind is bytearray:
        out.append(0xC3)  # OPAQUE
        _write_mb(out, len(content))
        out += content
    elif kind is Slot and slots is not None:
        out.append(0x03)  # STR_I
        slots.append((len(out), content.name))
        out.append(0)
    else:
        raise TreeError("content of <%s> must be None, str, bytes or a list, not %s" % (tag, kind.__name__))
    out.append(0x01)  # END
    return page


def encode(element):
    """Encode an element tree into a WBXML document (bytes)."""
    out = bytearray(HEADER)
    _encode_element(out, element, 0, 1, None)
    return bytes(out)


class Template:
    """A request pre-encoded once, with text slots filled in per request.

    ``Template(tree)`` where some contents are :class:`Slot` instances;
    ``render(value, ...)`` takes the slot values (str or UTF-8 bytes) in the
    order the slots appear in the document and returns the WBXML bytes.
    Encoding the constant parts happens once, in the constructor.
    """

    __slots__ = ("parts", "names", "_fixed")

    def __init__(self, tree):
        out = bytearray(HEADER)
        slots = []
        _encode_element(out, tree, 0, 1, slots)
        data = bytes(out)
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

    def render(self, *values):
        if len(values) != len(self.names):
            raise TreeError("template needs %d values (%s), got %d" % (len(self.names), ", ".join(self.names), len(values)))
        if self._fixed is not None:
            return self._fixed
        parts = self.parts
        pieces = [parts[0]]
        i = 1
        for value in values:
            if type(value) is str:
                value = value.encode("utf-8")
            elif type(value) is not bytes:
                raise TreeError("template value for %s must be str or bytes" % self.names[i - 1])
            if b"\x00" in value:
                raise TreeError("template value for %s contains a NUL character" % self.names[i - 1])
            pieces.append(value)
            pieces.append(parts[i])
            i += 1
        return b"".join(pieces)
