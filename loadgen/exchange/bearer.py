"""OAuth-style access tokens of the embedded target: ``Authorization: Bearer <token>`` (RFC 6750 2.1) as
Exchange Online accepts from Outlook for iOS and Android (loadgen/device/clients.py, outlook-cloud).

A token is self-contained, so the target validates it without a table: ``eas1.<user>.<expiry>.<mac>``
with the user name in unpadded base64url, the expiry in Unix seconds and the mac an HMAC-SHA256 over
``user|expiry`` with the target's secret (a random one per target, shared by the processes of a
cluster), truncated to 128 bits.  Every character is of RFC 6750's b64token.  A token that is
malformed, signed with another secret, for a user the target does not serve or past its expiry is
refused with a 401 and ``WWW-Authenticate: Bearer realm=..., error="invalid_token"`` (RFC 6750 3, 3.1):
the device then gets a fresh token (TokenSource ``fresh``) and sends the request again.

:class:`MintedTokens` is the token source the run's devices get when the run starts the embedded target
(exchange/launch.py puts it in the scenario's ``[target]``; loadgen/run/engine.py hands it to the
Bearer client types when ``[auth] token_file`` / ``token_command`` name none): the same interface as
loadgen/device/clients.py ``TokenSource`` (``cached``, ``get``), minting with the target's secret.
A token and the secret are never logged, counted or put in a representation.

A target started on its own (``easload target --token-secret-file F``) and the runs against it share
the secret through a file: :func:`secret_from_file` reads it (or creates it, 0600), and ``easload token
--secret-file F USER`` prints a token, the command a scenario names as ``[auth] token_command``.
"""

import base64
import binascii
import hashlib
import hmac
import os
import time

PREFIX = "eas1"
DEFAULT_LIFETIME = 3600.0  # seconds a minted token is valid (an hour, as a typical OAuth access token)
_MAC_BYTES = 16


def _b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret, user_part, expiry_part):
    return _b64(hmac.new(secret, ("%s|%s" % (user_part, expiry_part)).encode("ascii"),
                         hashlib.sha256).digest()[:_MAC_BYTES])


def mint(secret, user, expires):
    """A token for ``user`` valid until ``expires`` (Unix seconds)."""
    user_part = _b64(user.encode("utf-8"))
    expiry_part = str(int(expires))
    return "%s.%s.%s.%s" % (PREFIX, user_part, expiry_part, _mac(secret, user_part, expiry_part))


def check(secret, token):
    """(user, expiry) of a token signed with ``secret``, or None (malformed or not ours).  The expiry
    is the caller's to compare with its clock."""
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != PREFIX or not parts[2].isdigit() or len(parts[2]) > 12:
        return None
    try:
        if not hmac.compare_digest(_mac(secret, parts[1], parts[2]), parts[3]):
            return None
        user = _unb64(parts[1]).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeError):
        return None
    return user, int(parts[2])


class SecretFileError(ValueError):
    """The secret file cannot be read or made (the message names the file, never the secret)."""


def secret_from_file(path, create=False):
    """The token secret kept in ``path`` (64 hex digits: 32 bytes).  ``create``: a missing file is made
    with a fresh random secret, readable by its owner only (O_EXCL, mode 0600)."""
    try:
        with open(path, "rb") as f:
            text = f.read(200).strip()
    except FileNotFoundError:
        if not create:
            raise SecretFileError("token secret file %s: no such file" % path) from None
        secret = os.urandom(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise SecretFileError("token secret file %s: %s" % (path, exc.strerror or exc)) from None
        with os.fdopen(fd, "wb") as f:
            f.write(secret.hex().encode("ascii") + b"\n")
        return secret
    except OSError as exc:
        raise SecretFileError("token secret file %s: %s" % (path, exc.strerror or exc)) from None
    try:
        secret = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        secret = b""
    if len(secret) != 32:
        raise SecretFileError("token secret file %s: not 64 hex digits (32 bytes)" % path)
    return secret


class MintedTokens:
    """A token source for the embedded target's users (loadgen/device/clients.py TokenSource's
    interface): a token per user minted with the target's ``secret``, valid ``lifetime`` seconds,
    cached; ``get(user, fresh=True)`` mints a new one (after a 401 Bearer challenge).  Picklable for
    ``--workers`` (the cache stays behind); its representation names no token or secret."""

    __slots__ = ("_secret", "lifetime", "clock", "_cache")

    def __init__(self, secret, lifetime=DEFAULT_LIFETIME, clock=time.time):
        self._secret = bytes(secret)
        self.lifetime = float(lifetime)
        self.clock = clock
        self._cache = {}

    def __repr__(self):
        return "MintedTokens(embedded target)"

    def __reduce__(self):
        return (MintedTokens, (self._secret, self.lifetime))

    def cached(self, user):
        return self._cache.get(user)

    async def get(self, user, fresh=False):
        if not fresh:
            found = self._cache.get(user)
            if found is not None:
                return found
        token = self._cache[user] = mint(self._secret, user, self.clock() + self.lifetime)
        return token
