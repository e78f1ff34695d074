"""Exchange ActiveSync WBXML codec.

Public API: :func:`encode`, :func:`decode`, :class:`Template`, :class:`Slot`,
tree helpers (:func:`find`, :func:`findtext`, ...), the XML text form
(:func:`to_xml`, :func:`from_xml`) and the :class:`WBXMLError` family.

The compiled twin (``_wbxml._codec``, built by Cython from ``_codec.pyx``) is
used when it is importable; the pure one otherwise, or
when ``EASLOAD_NO_EXTENSIONS`` is set to a non-empty value (the pattern of
multidict/yarl/aiohttp).  ``IMPLEMENTATION`` tells which one is active.
"""

import os
import sys

from _wbxml import _pure
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
from _wbxml.tree import Slot, children, find, findall, findtext, iter_elements


def _load_compiled():
    if os.environ.get("EASLOAD_NO_EXTENSIONS") or sys.implementation.name != "cpython":
        return None
    try:
        from _wbxml import _codec
    except ImportError:
        return None
    # only a real extension module counts as compiled
    if (_codec.__file__ or "").endswith(".py"):
        return None
    return _codec


_compiled = _load_compiled()
_impl = _compiled if _compiled is not None else _pure
IMPLEMENTATION = "cython" if _compiled is not None else "python"

encode = _impl.encode
decode = _impl.decode
Template = _impl.Template
extract = _impl.extract
MAX_DEPTH = _pure.MAX_DEPTH
tag_names = _pure.tag_names

from _wbxml.xmlform import from_xml, to_xml  # noqa: E402  (needs encode/decode above)

__all__ = [
    "IMPLEMENTATION", "MAX_DEPTH", "encode", "decode", "extract", "Template", "Slot", "tag_names",
    "children", "find", "findall", "findtext", "iter_elements", "to_xml", "from_xml",
    "WBXMLError", "TruncatedError", "HeaderError", "UnknownTokenError", "UnsupportedError",
    "EncodingError", "NestingError", "TreeError",
]
