"""TLS for the embedded target: real Exchange servers speak only HTTPS.

* :func:`server_context` -- the server's ``ssl.SSLContext`` from a certificate
  (chain) and key in PEM files; a file that cannot be used is a :class:`TLSError`
  (a ValueError) whose one-line message names it.  Session resumption is on by
  default (TLS 1.3 session tickets, RFC 8446 4.6.1 and 2.2; OpenSSL's default of
  two tickets per full handshake); ``resumption=False`` makes a server that
  refuses it (no tickets, RFC 8446 4.6.1 / RFC 5077; nothing resumes by session
  id either), so that clients can be shown to work against such a server.
* :func:`self_signed` -- a throwaway CA and a server certificate signed by it for
  the given host names and IP addresses (127.0.0.1 and localhost by default),
  written into a directory: ``ca.pem`` (what clients trust: ``--ca``, ``ca_file``),
  ``server.pem`` / ``server.key``.  The devices keep verifying certificates (and
  host names) as they would against a real server: only the trust anchor is ours.
  Made with the ``openssl`` command (the ``cryptography`` package is not a
  dependency).  ``key_type``: ``"rsa"`` (RSA 2048, the default: what Exchange's
  own self-signed certificate and most public CAs issue -- New-ExchangeCertificate's
  default KeySize is 2048, https://learn.microsoft.com/en-us/powershell/module/exchange/new-exchangecertificate)
  or ``"ec"`` (ECDSA P-256: a server handshake costs the server far less; the
  client's verification costs a little more -- ``bench/tls_handshake.py`` measures both).
* :class:`TemporaryPKI` -- :func:`self_signed` in a private temporary directory,
  removed on ``cleanup()`` (``[target] tls = true``, ``easload target --tls-self-signed``).

The certificate follows what strict verifiers ask (Python 3.13's
VERIFY_X509_STRICT, browsers): the CA has critical basicConstraints CA:TRUE and
keyUsage keyCertSign; the server certificate has subjectAltName (host names as
DNS, addresses as IP), extendedKeyUsage serverAuth, an authority key identifier.
"""

import ipaddress
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import weakref
from dataclasses import dataclass

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
DAYS = 30
# certificate kinds: the openssl req -newkey arguments
KEY_TYPES = {
    "rsa": ("rsa:2048",),
    "ec": ("ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
}
DEFAULT_KEY_TYPE = "rsa"


class TLSError(ValueError):
    """TLS material that cannot be used; the message is meant for the user."""


@dataclass(frozen=True)
class PKI:
    ca: str  # the CA certificate clients trust
    cert: str  # the server certificate (PEM)
    key: str  # its private key (PEM, 0600)
    directory: str


def server_context(cert, key=None, *, resumption=True):
    """A TLS server context (TLS 1.2+) serving ``cert`` (PEM, chain allowed) with ``key``.

    ``resumption`` (default on): TLS 1.3 session tickets (RFC 8446 4.6.1), TLS 1.2 tickets
    (RFC 5077) and TLS 1.2 session ids (RFC 5246 7.4.1.2; OpenSSL's server session cache).
    Off: no ticket is issued (``num_tickets = 0`` for TLS 1.3, ``OP_NO_TICKET`` for TLS 1.2)
    and the server session cache is off (:func:`_session_cache_off`), so a client offering
    its previous session gets a full handshake (tests/exchange/test_tls_options.py)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not resumption:
        ctx.options |= ssl.OP_NO_TICKET
        ctx.num_tickets = 0
        _session_cache_off(ctx)
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise TLSError("TLS certificate or key %s: no such file" % (exc.filename or cert)) from None
    except (ssl.SSLError, OSError) as exc:
        raise TLSError("cannot use the TLS certificate %s%s: %s" % (
            cert, " with the key %s" % key if key else "", getattr(exc, "reason", None) or exc)) from None
    return ctx


SSL_CTRL_SET_SESS_CACHE_MODE = 44  # openssl/ssl.h: SSL_CTX_set_session_cache_mode() is SSL_CTX_ctrl(ctx, 44, mode)
SSL_CTRL_GET_SESS_CACHE_MODE = 45
SSL_SESS_CACHE_OFF = 0
SSL_SESS_CACHE_SERVER = 2  # OpenSSL's default mode (SSL_CTX_set_session_cache_mode(3))


def _session_cache_off(ctx):
    """``SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF)`` on a Python ``SSLContext``.

    Python's ssl has no switch for the server session cache, through which a TLS 1.2 client
    resumes by session id even with tickets off (and a server that sends close_notify keeps the
    session there).  The ``SSL_CTX`` pointer is the first member of CPython's ``PySSLContext``
    (Modules/_ssl.c: ``PyObject_HEAD`` then ``SSL_CTX *ctx``); ``SSL_CTX_ctrl`` is found through
    the ``_ssl`` module's own handle (the libssl it is linked with).  The mode read back first
    must be OpenSSL's default, or nothing is written; anything unexpected is a :class:`TLSError`."""
    import ctypes

    try:
        ctrl = ctypes.CDLL(ssl._ssl.__file__).SSL_CTX_ctrl
    except (OSError, AttributeError) as exc:
        raise TLSError("refusing TLS session resumption needs OpenSSL's SSL_CTX_ctrl: %s" % exc) from None
    ctrl.restype = ctypes.c_long
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not pointer or ctrl(pointer, SSL_CTRL_GET_SESS_CACHE_MODE, 0, None) != SSL_SESS_CACHE_SERVER:
        raise TLSError("refusing TLS session resumption: this Python's SSLContext is not laid out as expected")
    ctrl(pointer, SSL_CTRL_SET_SESS_CACHE_MODE, SSL_SESS_CACHE_OFF, None)
    if ctrl(pointer, SSL_CTRL_GET_SESS_CACHE_MODE, 0, None) != SSL_SESS_CACHE_OFF:
        raise TLSError("refusing TLS session resumption: the server session cache stays on")


def _san(hosts):
    names = []
    for host in hosts:
        try:
            names.append("IP:%s" % ipaddress.ip_address(host))
        except ValueError:
            names.append("DNS:%s" % host)
    return ",".join(dict.fromkeys(names))


def _openssl(args, cwd):
    if shutil.which("openssl") is None:
        raise TLSError("making a self-signed certificate needs the openssl command (Debian package openssl), "
                       "or give --tls-cert/--tls-key")
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]
        raise TLSError("openssl %s failed: %s" % (args[0], last))


def self_signed(directory, hosts=DEFAULT_HOSTS, days=DAYS, key_type=DEFAULT_KEY_TYPE):
    """A throwaway CA and a server certificate for ``hosts`` in ``directory``; returns a :class:`PKI`.
    ``key_type``: "rsa" (RSA 2048) or "ec" (ECDSA P-256), for the CA and the server alike."""
    if key_type not in KEY_TYPES:
        raise TLSError("certificate key type %r: one of %s" % (key_type, ", ".join(KEY_TYPES)))
    newkey = list(KEY_TYPES[key_type])
    hosts = tuple(hosts) or DEFAULT_HOSTS
    d = str(directory)
    cn = next((h for h in hosts if not _is_ip(h)), hosts[0])
    _openssl(["req", "-x509", "-newkey", *newkey, "-nodes",
              "-days", str(days), "-subj", "/CN=easload throwaway test CA %s" % secrets.token_hex(4),
              "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
              "-keyout", "ca.key", "-out", "ca.pem"], d)
    _openssl(["req", "-new", "-newkey", *newkey, "-nodes",
              "-subj", "/CN=%s" % cn, "-keyout", "server.key", "-out", "server.csr"], d)
    with open(os.path.join(d, "server.ext"), "w", encoding="ascii") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,%s\n"
                "basicConstraints=critical,CA:FALSE\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
                % (_san(hosts), "digitalSignature,keyEncipherment" if key_type == "rsa" else "digitalSignature"))
    _openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
              "-set_serial", "0x" + secrets.token_hex(16), "-days", str(days), "-extfile", "server.ext",
              "-out", "server.pem"], d)
    os.chmod(os.path.join(d, "server.key"), 0o600)
    os.unlink(os.path.join(d, "ca.key"))  # nothing else is ever signed with this CA
    os.unlink(os.path.join(d, "server.csr"))
    return PKI(os.path.join(d, "ca.pem"), os.path.join(d, "server.pem"), os.path.join(d, "server.key"), d)


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _remove(directory, owner):
    """Remove ``directory`` -- only in the process that made it: a forked child that exits
    normally runs the inherited exit hooks too, and must not take its parent's key away."""
    if os.getpid() == owner:
        shutil.rmtree(directory, True)


class TemporaryPKI:
    """:func:`self_signed` in a new private temporary directory; ``cleanup()`` (or ``close()``)
    removes it.  The removal is certain on every normal end of the process: it is also an exit
    hook (weakref.finalize, run by atexit; SystemExit and an uncaught exception end the process
    normally in this sense) and runs when the object is collected; a failure while making the
    certificate removes the directory at once.  SIGTERM ends a process without exit hooks:
    its owner turns SIGTERM into its normal shutdown (exchange/server.py serve_forever)."""

    def __init__(self, hosts=DEFAULT_HOSTS, days=DAYS, key_type=DEFAULT_KEY_TYPE):
        self.directory = tempfile.mkdtemp(prefix="easload-tls-")  # 0700
        # removed at cleanup(), or when this object is collected or the interpreter exits
        self._finalizer = weakref.finalize(self, _remove, self.directory, os.getpid())
        try:
            self.pki = self_signed(self.directory, hosts, days, key_type)
        except BaseException:
            self._finalizer()
            raise

    def cleanup(self):
        """Remove the directory now (again: nothing happens)."""
        self._finalizer()

    close = cleanup

    def __enter__(self):
        return self.pki

    def __exit__(self, *exc):
        self.cleanup()


def loopback_hosts(addresses):
    """The host names and addresses a certificate for targets listening on ``addresses`` needs:
    localhost, 127.0.0.1 and every listen address (a cluster's 127.0.0.k)."""
    hosts = list(DEFAULT_HOSTS)
    for host in addresses:
        if host and host not in ("0.0.0.0", "::") and host not in hosts:
            hosts.append(host)
    return tuple(hosts)


def for_scenario(scenario):
    """``[target] tls`` of an embedded target: (scenario, TemporaryPKI or None).

    Without ``tls_cert``, a throwaway CA and certificate for every address the target
    will listen on (a cluster's 127.0.0.1..k too) are made in a temporary directory
    (the caller cleans it up), and the devices (and their Autodiscover) trust that CA
    unless ``ca_file`` names another bundle: certificates stay verified.  The scenario
    returned is a copy; the one given is not changed."""
    import dataclasses

    t = scenario.target
    if not (t.embedded and t.tls) or t.tls_cert:
        return scenario, None
    from loadgen.exchange.cluster import listen_addresses

    hosts = loopback_hosts(h for h, _ in listen_addresses([t.listen + ":0"], max(1, t.processes)))
    temporary = TemporaryPKI(hosts)
    target = dataclasses.replace(t, tls_cert=temporary.pki.cert, tls_key=temporary.pki.key,
                                 ca_file=t.ca_file or temporary.pki.ca)
    return dataclasses.replace(scenario, target=target), temporary
