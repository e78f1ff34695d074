"""TLS for the embedded target: real Exchange servers speak only HTTPS.

* :func:`server_context` -- the server's ``ssl.SSLContext`` from a certificate
  (chain) and key in PEM files; a file that cannot be used is a :class:`TLSError`
  (a ValueError) whose one-line message names it.
* :func:`self_signed` -- a throwaway CA and a server certificate signed by it for
  the given host names and IP addresses (127.0.0.1 and localhost by default),
  written into a directory: ``ca.pem`` (what clients trust: ``--ca``, ``ca_file``),
  ``server.pem`` / ``server.key``.  The devices keep verifying certificates (and
  host names) as they would against a real server: only the trust anchor is ours.
  Made with the ``openssl`` command (the ``cryptography`` package is not a
  dependency); EC P-256 keys: a CA and a certificate take ~0.1 s, and the TLS
  handshakes of thousands of devices stay cheaper than with RSA.
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


class TLSError(ValueError):
    """TLS material that cannot be used; the message is meant for the user."""


@dataclass(frozen=True)
class PKI:
    ca: str  # the CA certificate clients trust
    cert: str  # the server certificate (PEM)
    key: str  # its private key (PEM, 0600)
    directory: str


def server_context(cert, key=None):
    """A TLS server context (TLS 1.2+) serving ``cert`` (PEM, chain allowed) with ``key``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise TLSError("TLS certificate or key %s: no such file" % (exc.filename or cert)) from None
    except (ssl.SSLError, OSError) as exc:
        raise TLSError("cannot use the TLS certificate %s%s: %s" % (
            cert, " with the key %s" % key if key else "", getattr(exc, "reason", None) or exc)) from None
    return ctx


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


def self_signed(directory, hosts=DEFAULT_HOSTS, days=DAYS):
    """A throwaway CA and a server certificate for ``hosts`` in ``directory``; returns a :class:`PKI`."""
    hosts = tuple(hosts) or DEFAULT_HOSTS
    d = str(directory)
    cn = next((h for h in hosts if not _is_ip(h)), hosts[0])
    _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-days", str(days), "-subj", "/CN=easload throwaway test CA %s" % secrets.token_hex(4),
              "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
              "-keyout", "ca.key", "-out", "ca.pem"], d)
    _openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-subj", "/CN=%s" % cn, "-keyout", "server.key", "-out", "server.csr"], d)
    with open(os.path.join(d, "server.ext"), "w", encoding="ascii") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n"
                "basicConstraints=critical,CA:FALSE\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
                % _san(hosts))
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

    def __init__(self, hosts=DEFAULT_HOSTS, days=DAYS):
        self.directory = tempfile.mkdtemp(prefix="easload-tls-")  # 0700
        # removed at cleanup(), or when this object is collected or the interpreter exits
        self._finalizer = weakref.finalize(self, _remove, self.directory, os.getpid())
        try:
            self.pki = self_signed(self.directory, hosts, days)
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
