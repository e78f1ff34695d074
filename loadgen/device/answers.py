"""How a device reads an answer: decoding shared between devices, the outcome of a request without
an HTTP answer or with an HTTP error, and the server's back-off header."""

import re

import _wbxml

_MAX_WAIT_S = 24 * 3600  # a server-given wait (X-MS-BackOffDuration, Retry-After) is clamped to a day

# Identical answers are decoded and parsed once.  In a provisioning storm every device under a
# policy gets the same Provision answers (one policy document, one policy key) and fresh mailboxes
# the same FolderSync hierarchy; the codec and the parsers are pure functions of the bytes, so the
# tree and the parse of a small body are kept (bounded) and shared, read-only, by every device that
# receives the same bytes.  Bodies above _SHARE_MAX_BODY (Sync with mail) are always decoded anew.
_SHARE_MAX_BODY = 2048
_SHARE_MAX_ENTRIES = 512
_SHARED_TREES = {}  # body bytes -> decoded tree
_SHARED_PARSES = {}  # id(tree) -> (tree, {parser: result}); the tree is held, so its id is not reused


def _decode(body):
    """``_wbxml.decode(body)``; one shared (read-only) tree per distinct small body."""
    if len(body) > _SHARE_MAX_BODY:
        return _wbxml.decode(body)
    tree = _SHARED_TREES.get(body)
    if tree is None:
        tree = _wbxml.decode(body)  # WBXMLError: not kept
        if len(_SHARED_TREES) >= _SHARE_MAX_ENTRIES:
            _SHARED_TREES.clear()
            _SHARED_PARSES.clear()
        _SHARED_TREES[body] = tree
        _SHARED_PARSES[id(tree)] = (tree, {})
    return tree


def _parse_shared(parse, tree):
    """``parse(tree)``, computed once per shared tree (see _decode); a ValueError is not kept."""
    entry = _SHARED_PARSES.get(id(tree))
    if entry is None or entry[0] is not tree:
        return parse(tree)
    results = entry[1]
    result = results.get(parse)
    if result is None:
        result = results[parse] = parse(tree)
    return result


def no_answer_outcome(error):
    """The outcome of a request that got no HTTP answer, from the transport's error: "timeout",
    "tls_error" (the TLS handshake failed: an untrusted certificate, a host name mismatch ...;
    the reason is in the error, e.g. "connection:SSLCertVerificationError(...)"), else
    "too_large" (the answer passed the transport's per-response limit or the process's body
    budget), else "conn_error" (refused, reset, malformed response ...)."""
    if error == "timeout" or error == "too_large":
        return error
    if error and error.startswith("connection:SSL"):
        return "tls_error"
    return "conn_error"


def _http_outcome(status):
    if status == 200:
        return "ok"
    if status == 503:
        return "throttled"
    if 400 <= status < 500:
        return "http_4xx"
    if status >= 500:
        return "http_5xx"
    return "http_%d" % status


_NUMBER = re.compile(r"-?\d+")
_MAX_WAIT_MS = _MAX_WAIT_S * 1000


def _backoff_ms(value):
    """X-MS-BackOffDuration in milliseconds (0 when absent or not positive), at most a day.

    The header's exact format is not in the stored specification excerpts
    (unverified): the last integer in the value is taken as milliseconds, which
    reads both a bare number and a prefixed form such as "L/-470".  A number of
    any length is clamped to 0.._MAX_WAIT_MS (never an OverflowError, nor the
    ValueError of int() on thousands of digits).
    """
    found = _NUMBER.findall(value)
    if not found:
        return 0
    last = found[-1]
    if last.startswith("-"):
        return 0
    last = last.lstrip("0") or "0"
    if len(last) > 12:
        return _MAX_WAIT_MS
    return min(int(last), _MAX_WAIT_MS)
