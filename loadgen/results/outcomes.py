"""The outcomes a request can end with, and the one list of those that are not errors.

A device records every request with one outcome (``Stats.record``).  The outcomes below are not
errors: an answer (``OK``), a request for (re-)provisioning that the device then obeys
(``REPROVISION``: HTTP 449, or Status 140-144 in the command's root from EAS 14.0 on, as
docs/protocol-notes.md tabulates), a 401 Basic challenge the device
answered with its credentials (``CHALLENGE``: servers that challenge first, RFC 7617), and a Ping
Status 5 whose heartbeat bound the device then follows (``ADJUSTED``, MS-ASCMD 2.2.3.159.3), and a
held Ping the device itself stopped because its user acts (``INTERRUPTED``: one operation per account
at a time, a sync pre-empts the running Ping, as Android's Exchange client does -- AOSP
packages/apps/Exchange PingSyncSynchronizer.java; loadgen/device/mail.py ``ping_stopped``): the
request was sent, so it stays in the accounting, but no answer was awaited and the server did nothing wrong.

Every other outcome is an error, among them ``TIMEOUT``, ``TOO_LARGE`` (a response past the
transport's per-response limit or the process's body budget, loadgen/wire/transport.py),
``REDIRECT_REFUSED`` (a redirect the device refused to follow), ``MALFORMED`` and
``INTERNAL_ERROR`` (a device's unexpected exception, caught by the engine).  The summary, the
merge, the thresholds and the HTML report all count errors with :data:`OK_OUTCOMES`.
"""

OK = "ok"
REPROVISION = "reprovision"
CHALLENGE = "challenge"
ADJUSTED = "adjusted"
INTERRUPTED = "interrupted"

TIMEOUT = "timeout"
TOO_LARGE = "too_large"
MALFORMED = "malformed"
REDIRECT_REFUSED = "redirect_refused"
INTERNAL_ERROR = "internal_error"

# in the order the reports name them
OK_OUTCOMES = (OK, REPROVISION, CHALLENGE, ADJUSTED, INTERRUPTED)


def fold(outcome):
    """An outcome named after an HTTP status the server chose ("http_NNN"): its class (http_3xx ...),
    so that the set of outcomes stays bounded whatever a server sends."""
    if outcome.startswith("http_") and outcome[5:].isdigit():
        code = int(outcome[5:])
        return "http_%dxx" % (code // 100) if 100 <= code <= 599 else "http_other"
    return outcome
