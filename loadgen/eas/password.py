"""A device's simulated password against the policy it accepted, and its unlock attempts.

Seed 000 ("Important"): after a policy update the client compares the existing
password (length, complexity ...) with the new rules and, when it does not
conform, makes the user configure a new one.  Seed 003: the device asks for a
code word after CodeWordFrequency (half of MaxDevicePasswordFailedAttempts)
failed attempts, and wipes itself at MaxDevicePasswordFailedAttempts.

Sans-I/O: the password is a value object (never a real secret), checks return
the rules it breaks, ``replace`` returns a compliant one that is not in the
history.
"""

from dataclasses import dataclass

_SIMPLE = ("0123456789", "9876543210", "qwertyuiop", "asdfghjkl")


@dataclass(frozen=True)
class Password:
    text: str

    @property
    def numeric(self):
        return self.text.isdigit()

    @property
    def complex_chars(self):
        """Character classes beyond lower-case letters (upper, digit, symbol), MS-ASPROV's 'complex' count."""
        classes = 0
        classes += any(c.isupper() for c in self.text)
        classes += any(c.isdigit() for c in self.text)
        classes += any(not c.isalnum() for c in self.text)
        return classes

    @property
    def simple(self):
        """Repeated or sequential characters, or keyboard order (MS-ASPROV 2.2.2.12; the article
        (docs/protocol-notes.md, source [A]) adds keyboard order:
        '1234', '1111', 'qwerty')."""
        t = self.text.lower()
        if len(set(t)) == 1:
            return True
        return any(t in s for s in _SIMPLE)


def violations(password, applied):
    """The policy rules ``password`` breaks (empty when it complies or no password is required)."""
    if applied is None or not applied.password_required:
        return ()
    broken = []
    if password is None:
        return ("no_password",)
    if len(password.text) < applied.min_password_length:
        broken.append("too_short")
    if applied.alphanumeric and password.numeric:
        broken.append("not_alphanumeric")
    if applied.alphanumeric and password.complex_chars < applied.min_complex_chars:
        broken.append("not_complex")
    if not applied.allow_simple and password.simple:
        broken.append("simple")
    return tuple(broken)


def replace(password, applied, history, serial):
    """A new password that satisfies ``applied`` and is not among the last ``history`` ones.

    ``serial`` makes it deterministic per device and change."""
    length = max(applied.min_password_length, 4) if applied else 4
    if applied is not None and applied.alphanumeric:
        base = "Ab%d!" % (7000 + serial)
        text = (base + "x" * length)[:max(length, len(base))]
    else:
        digits = "".join(str((serial * 7 + i * 3 + 2) % 10) for i in range(length))
        text = digits if not Password(digits).simple else digits[:-1] + str((int(digits[-1]) + 5) % 10)
    new = Password(text)
    if new in history:
        return replace(password, applied, history, serial + 1)
    return new


def unlock_attempts(failed, max_attempts):
    """What ``failed`` consecutive failed unlocks do under a threshold of ``max_attempts`` (0: none).

    Returns (code_word_requested, wiped): the code word is asked for at half the
    threshold (CodeWordFrequency; docs/protocol-notes.md, Policy storage and refresh); the device wipes itself
    at the threshold.
    """
    if max_attempts <= 0 or failed <= 0:
        return False, False
    return failed >= max_attempts // 2, failed >= max_attempts
