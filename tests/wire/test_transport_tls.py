"""TLS of the devices' transports against a loopback aiohttp server that requires a client certificate.

Certificates are made in the test with the ``openssl`` command (a CA, a server certificate for
``localhost``, a client certificate, and a second CA nobody trusts).  Checked: verification is on by
default (a server whose CA is unknown is a clear error, not a silent success), a CA bundle is
accepted, the client certificate is presented, SNI carries the URL's host name, and ``insecure``
switches verification off with a warning.
"""

import asyncio
import os
import shutil
import ssl
import subprocess

import pytest
from aiohttp import web

from loadgen.wire.transport import AiohttpTransport, DeviceEndpoint, InsecureTLSWarning, LeanTransport
from loadgen.eas.http import request_head

# skipped without the openssl command, unless EASLOAD_REQUIRE_OPENSSL is set (CI): then it fails
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None and not os.environ.get("EASLOAD_REQUIRE_OPENSSL"),
                                reason="needs the openssl command")

OK_BODY = b"\x03\x01\x6a\x00\x00\x07\x56\x52\x03\x31\x00\x01\x01"


def _openssl(*args, cwd):
    subprocess.run(("openssl",) + args, cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=easload test %s" % ca,
                 "-keyout", ca + ".key", "-out", ca + ".pem", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    (d / "elsewhere.ext").write_text("subjectAltName=DNS:elsewhere.example\nextendedKeyUsage=serverAuth\n")
    for name, cn, ca in (("server", "localhost", "ca"), ("client", "easload-device", "ca"),
                         ("stranger", "localhost", "other-ca"), ("elsewhere", "elsewhere.example", "ca")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + cn, "-keyout", name + ".key",
                 "-out", name + ".csr", cwd=d)
        ext = {"client": "client.ext", "elsewhere": "elsewhere.ext"}.get(name, "server.ext")
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                 "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", name + ".pem", cwd=d)
    return d


class TLSServer:
    """aiohttp on 127.0.0.1 with TLS that requires a client certificate from the test CA."""

    def __init__(self, pki, cert="server"):
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
        self.ctx.load_cert_chain(str(pki / (cert + ".pem")), str(pki / (cert + ".key")))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.sni = []
        self.peers = []
        self.ctx.sni_callback = lambda sslobj, name, ctx: self.sni.append(name)

    async def handle(self, request):
        peer = request.transport.get_extra_info("peercert") or {}
        self.peers.append(dict(x[0] for x in peer.get("subject", ())).get("commonName"))
        await request.read()
        return web.Response(body=OK_BODY, content_type="application/vnd.ms-sync.wbxml")

    async def __aenter__(self):
        app = web.Application()
        app.router.add_post("/Microsoft-Server-ActiveSync", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ctx)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()

    def endpoint(self):
        return DeviceEndpoint(request_head("https://localhost:%d/Microsoft-Server-ActiveSync" % self.port, "user1",
                                           "Secret1!", "DEV1", "SmartPhone", "14.1", "ContosoPhone/1.0"))


def _client(pki):
    return {"client_cert": str(pki / "client.pem"), "client_key": str(pki / "client.key")}


@pytest.mark.parametrize("cls", [LeanTransport, AiohttpTransport])
async def test_ca_bundle_client_certificate_and_sni(pki, cls):
    async with TLSServer(pki) as srv:
        t = cls(timeout=5, ca_file=str(pki / "ca.pem"), **_client(pki))
        await t.start()
        r = await t.post(srv.endpoint(), "FolderSync", b"x", "1")
        await t.close()
    assert (r.status, r.body, r.error) == (200, OK_BODY, None)
    assert srv.peers == ["easload-device"]  # the client certificate was presented and verified
    assert srv.sni == ["localhost"]  # SNI: the URL's host name


@pytest.mark.parametrize("cls", [LeanTransport, AiohttpTransport])
async def test_verified_by_default_unknown_ca_is_a_clear_error(pki, cls):
    async with TLSServer(pki) as srv:
        t = cls(timeout=5, **_client(pki))
        await t.start()  # system trust store only: the test CA is unknown
        r = await t.post(srv.endpoint(), "FolderSync", b"", "1")
        await t.close()
    assert r.status == 0
    # the reason is spelled out (OpenSSL's verify message), e.g. "self-signed certificate in certificate chain"
    assert r.error.startswith("connection:SSLCertVerificationError(") and "certificate" in r.error, r.error
    assert "Secret" not in r.error and "user1" not in r.error
    assert srv.peers == []


@pytest.mark.parametrize("cls", [LeanTransport, AiohttpTransport])
async def test_certificate_of_another_ca_is_refused_even_with_a_ca_bundle(pki, cls):
    async with TLSServer(pki, cert="stranger") as srv:
        t = cls(timeout=5, ca_file=str(pki / "ca.pem"), **_client(pki))
        await t.start()
        r = await t.post(srv.endpoint(), "FolderSync", b"", "1")
        await t.close()
    assert r.status == 0 and r.error.startswith("connection:SSLCertVerificationError("), r.error


@pytest.mark.parametrize("cls", [LeanTransport, AiohttpTransport])
async def test_hostname_is_checked(pki, cls):
    async with TLSServer(pki, cert="elsewhere") as srv:  # trusted CA, but issued to elsewhere.example
        t = cls(timeout=5, ca_file=str(pki / "ca.pem"), **_client(pki))
        await t.start()
        r = await t.post(srv.endpoint(), "FolderSync", b"", "1")
        await t.close()
    assert r.status == 0 and r.error.startswith("connection:SSLCertVerificationError(")
    assert "mismatch" in r.error, r.error


async def test_server_refuses_a_client_without_certificate(pki):
    async with TLSServer(pki) as srv:
        t = LeanTransport(timeout=5, ca_file=str(pki / "ca.pem"))
        r = await t.post(srv.endpoint(), "FolderSync", b"", "1")
        await t.close()
    assert r.status == 0 and r.error.startswith("connection:"), r
    assert srv.peers == []


async def test_insecure_opt_out_works_and_warns(pki):
    async with TLSServer(pki) as srv:
        with pytest.warns(InsecureTLSWarning, match="verification is disabled"):
            t = LeanTransport(timeout=5, insecure=True, **_client(pki))
        r = await t.post(srv.endpoint(), "FolderSync", b"", "1")
        await t.close()
    assert r.status == 200 and srv.peers == ["easload-device"]


async def test_tls_connection_is_kept_alive(pki):
    async with TLSServer(pki) as srv:
        t = LeanTransport(timeout=5, ca_file=str(pki / "ca.pem"), **_client(pki))
        ep = srv.endpoint()
        for _ in range(3):
            assert (await t.post(ep, "Sync", b"", "1")).status == 200
        opened = t.connections_opened
        await t.close()
        await asyncio.sleep(0)
    assert opened == 1 and srv.sni == ["localhost"]


def test_client_key_with_a_passphrase_is_a_clear_error_not_a_prompt(pki, tmp_path):
    """OpenSSL would ask for the passphrase on the terminal (blocking the event loop); without a
    terminal the run would fail later as if the server never answered.  One ValueError line instead,
    in a child process with a terminal-less stdin so that a prompt would hang, not pass."""
    import sys

    key = tmp_path / "enc.key"
    _openssl("pkey", "-in", str(pki / "client.key"), "-aes256", "-passout", "pass:hunter2", "-out", str(key),
             cwd=tmp_path)
    code = ("from loadgen.wire.transport import make_ssl_context, EncryptedKeyError\n"
            "try:\n    make_ssl_context(client_cert=%r, client_key=%r)\n"
            "except EncryptedKeyError as exc:\n    assert isinstance(exc, ValueError); print('REFUSED', exc)\n"
            % (str(pki / "client.pem"), str(key)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    assert out.returncode == 0, out.stderr[-500:]
    line = out.stdout.strip()
    assert line.startswith("REFUSED client_key %s is encrypted with a passphrase" % key) and "\n" not in line
    assert "hunter2" not in out.stdout + out.stderr
    # the same key without a passphrase is fine
    make_ssl_context = __import__("loadgen.wire.transport", fromlist=["make_ssl_context"]).make_ssl_context
    make_ssl_context(client_cert=str(pki / "client.pem"), client_key=str(pki / "client.key"))
