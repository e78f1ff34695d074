"""The embedded target's TLS options: the certificate kind and session resumption.

* the throwaway CA's kind: RSA 2048 (the default, as Exchange's own certificate) or ECDSA P-256,
  both verifying strictly for their names;
* resumption on by default (TLS 1.3 session tickets, RFC 8446 4.6.1; TLS 1.2 tickets, RFC 5077) and
  refusable (no tickets, no session id resumed): seen from a plain ``ssl`` client offering its
  previous session (``SSLSocket.session_reused``), over TLS 1.2 and 1.3;
* devices still provision and sync against a server that refuses resumption;
* ``easload target --tls-key-type`` / ``--tls-no-resumption``, and their usage errors.
"""

import asyncio
import io
import os
import shutil
import socket
import ssl
import subprocess

import pytest

from loadgen import scenario
from loadgen.cli.app import main
from loadgen.cli.start import run
from loadgen.exchange.server import start_target
from loadgen.exchange.state import TargetState
from loadgen.exchange.tls import TLSError, TemporaryPKI, self_signed

from tests.exchange.test_target_tls import _start_target_command, _stop

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None and not os.environ.get("EASLOAD_REQUIRE_OPENSSL"),
                                reason="needs the openssl command")

EC_PUBLIC_KEY_OID = bytes.fromhex("06072a8648ce3d0201")  # DER of id-ecPublicKey, 1.2.840.10045.2.1
RSA_ENCRYPTION_OID = bytes.fromhex("06092a864886f70d010101")  # DER of rsaEncryption, 1.2.840.113549.1.1.1


@pytest.fixture(scope="module")
def pkis():
    with TemporaryPKI() as rsa, TemporaryPKI(key_type="ec") as ec:
        yield {"rsa": rsa, "ec": ec}


def _x509_text(path):
    return subprocess.run(["openssl", "x509", "-in", path, "-noout", "-text"], capture_output=True, text=True,
                          check=True).stdout


def _memory_handshake(client_ctx, server_ctx, name):
    """A handshake over memory BIOs; returns the client's verification message or None."""
    bios = [ssl.MemoryBIO() for _ in range(4)]
    c = client_ctx.wrap_bio(bios[0], bios[1], server_hostname=name)
    s = server_ctx.wrap_bio(bios[2], bios[3], server_side=True)
    for _ in range(10):
        for side in (c, s):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError as exc:
                return exc.verify_message
        bios[2].write(bios[1].read())
        bios[0].write(bios[3].read())
    return None


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_certificate_kinds_verify_strictly(pkis, kind):
    from loadgen.exchange.tls import server_context

    pki = pkis[kind]
    for path in (pki.ca, pki.cert):
        text = _x509_text(path)
        if kind == "rsa":
            assert "rsaEncryption" in text and "(2048 bit)" in text, text
        else:
            assert "id-ecPublicKey" in text and "prime256v1" in text, text
    ctx = ssl.create_default_context(cafile=pki.ca)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    server = server_context(pki.cert, pki.key)
    assert _memory_handshake(ctx, server, "127.0.0.1") is None
    assert _memory_handshake(ctx, server, "localhost") is None
    assert _memory_handshake(ctx, server, "mail.example.com") is not None  # the name still checked


def test_default_kind_is_rsa_and_an_unknown_kind_is_one_line(tmp_path):
    pki = self_signed(tmp_path)
    assert "rsaEncryption" in _x509_text(pki.cert)
    with pytest.raises(TLSError, match="key type 'dsa'"):
        self_signed(tmp_path, key_type="dsa")


def _two_connections(port, ca, version):
    """Two HTTPS requests from a plain ssl client, the second offering the first's session.
    Returns [(session_reused, status line, session has a ticket)] for both."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ctx.maximum_version = version
    session = None
    seen = []
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                data = b""
                while True:  # read to the end: TLS 1.3 tickets come after the handshake (RFC 8446 4.6.1)
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                session = s.session
                seen.append((s.session_reused, data.split(b"\r\n", 1)[0], session.has_ticket))
    return seen


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize("resumption", [True, False], ids=["allowed", "refused"])
async def test_target_resumes_a_session_when_allowed_and_not_when_refused(pkis, version, resumption):
    pki = pkis["rsa"]
    runner, target, url = await start_target("127.0.0.1", 0, TargetState(users=2), tls_cert=pki.cert,
                                             tls_key=pki.key, tls_resumption=resumption)
    try:
        first, second = await asyncio.to_thread(_two_connections, target.https_port, pki.ca, version)
    finally:
        await runner.cleanup()
    assert first[0] is False  # a full handshake: nothing to resume yet
    assert first[1].startswith(b"HTTP/1.1 ") and second[1].startswith(b"HTTP/1.1 ")  # both connections served
    assert first[2] is resumption  # a ticket issued only when resumption is allowed
    assert second[0] is resumption, (first, second)


@pytest.mark.parametrize("transport", ["lean", "aiohttp"])
async def test_devices_work_against_a_server_that_refuses_resumption(pkis, transport):
    pki = pkis["ec"]
    state = TargetState(users=10, ping_min=1)
    runner, target, url = await start_target("127.0.0.1", 0, state, tls_cert=pki.cert, tls_key=pki.key,
                                             tls_resumption=False)
    try:
        sc = scenario.parse(
            'duration = 2\n[target]\nurl = "%s"\nca_file = "%s"\n[population]\ndevices = 3\n'
            '[load]\nramp_up = 0.3\nmode = "poll"\nthink_time = 0.3\nbackoff = 0.5\ntransport = "%s"\n'
            % (url, pki.ca, transport))
        result = await run(sc, progress=False, attach_metrics=False, stream=io.StringIO())
    finally:
        await runner.cleanup()
    stats = result.stats
    assert result.tls_problem is None
    assert stats.final_states.get("provisioned") == 3, stats.final_states
    assert stats.by_key[("Provision", "ok", "200")] == 6
    assert stats.by_key[("FolderSync", "ok", "200")] == 3
    assert not [k for k in stats.by_key if k[1] != "ok"], stats.by_key


def _peer_certificate(port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.getpeercert(binary_form=True)


async def test_target_command_key_type_and_no_resumption_flags():
    proc, url, ca, _ = await _start_target_command("--tls-self-signed", "--tls-key-type", "ec",
                                                   "--tls-no-resumption")
    try:
        port = int(url.split("/")[2].split(":")[1])
        der = await asyncio.to_thread(_peer_certificate, port, ca)
        assert EC_PUBLIC_KEY_OID in der and RSA_ENCRYPTION_OID not in der
        first, second = await asyncio.to_thread(_two_connections, port, ca, ssl.TLSVersion.TLSv1_3)
        assert (first[0], first[2], second[0]) == (False, False, False)
    finally:
        await _stop(proc)


def test_target_flags_usage_errors(capsys):
    assert main(["target", "--tls-key-type", "ec", "--admin-listen", ""]) == 2
    assert "--tls-key-type" in capsys.readouterr().err
    assert main(["target", "--tls-no-resumption", "--admin-listen", ""]) == 2
    assert "--tls-no-resumption needs" in capsys.readouterr().err
