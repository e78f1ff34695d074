"""Errors raised by the WBXML codec.

Every decode error carries the byte offset at which the problem was found, so
that an operator reading a captured body knows where to look.
"""


class WBXMLError(ValueError):
    """Base class: malformed or unsupported WBXML (decode) or tree (encode)."""

    def __init__(self, message, offset=-1):
        self.offset = offset
        if offset >= 0:
            message = f"{message} (at byte {offset})"
        super().__init__(message)


class TruncatedError(WBXMLError):
    """The document ends in the middle of a header, string, token or element."""


class HeaderError(WBXMLError):
    """Wrong WBXML version, public id or charset."""


class UnknownTokenError(WBXMLError):
    """A code page or tag token that MS-ASWBXML does not define."""


class UnsupportedError(WBXMLError):
    """A WBXML feature EAS does not use (attributes, literals, extensions, PI)."""


class EncodingError(WBXMLError):
    """Text that is not valid UTF-8, or a string that cannot be encoded."""


class NestingError(WBXMLError):
    """Elements nested deeper than MAX_DEPTH, or an END without an open element."""


class TreeError(WBXMLError):
    """A tree handed to the encoder is not a valid element tree."""
