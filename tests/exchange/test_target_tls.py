"""The embedded target over HTTPS, as Exchange serves EAS, end to end with the real device logic.

Real runs (engine, devices, both transports) against the embedded target with TLS
(``[target] tls = true``: a throwaway CA the devices trust, certificates and host
names still verified), devices without the CA (a clear "certificate not trusted",
counted, no traceback), ``insecure = true`` with its warning, a multi-process
target over TLS, ``easload target --tls-self-signed`` and ``easload probe --ca``.
"""

import asyncio
import io
import os
import signal
import shutil
import ssl
import subprocess
import sys

import aiohttp
import pytest

from loadgen import scenario
from loadgen.cli.app import main
from loadgen.cli.start import run
from loadgen.exchange.server import start_target
from loadgen.exchange.state import TargetState
from loadgen.exchange.tls import TLSError, TemporaryPKI, self_signed, server_context
from loadgen.wire.transport import InsecureTLSWarning

# skipped without the openssl command, unless EASLOAD_REQUIRE_OPENSSL is set (CI): then it fails
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None and not os.environ.get("EASLOAD_REQUIRE_OPENSSL"),
                                reason="needs the openssl command")

TRANSPORTS = ["lean", "aiohttp"]


def _scenario(extra_target="", transport="lean", devices=6, duration=3, load=""):
    return scenario.parse(
        'duration = %s\n[target]\nping_min = 1\n%s\n[population]\ndevices = %d\n'
        '[load]\nramp_up = 0.5\nmode = "poll"\nthink_time = 0.5\nbackoff = 0.5\ntransport = "%s"\n%s'
        % (duration, extra_target, devices, transport, load))


@pytest.fixture(scope="module")
def pki():
    with TemporaryPKI() as p:
        yield p


@pytest.fixture(scope="module")
def other_pki():
    with TemporaryPKI() as p:
        yield p


class TLSTarget:
    """An embedded target over TLS on 127.0.0.1, in the test's loop."""

    def __init__(self, pki, **state):
        self.pki = pki
        self.state = TargetState(**{"users": 20, "ping_min": 1, **state})

    async def __aenter__(self):
        self.runner, self.target, self.url = await start_target("127.0.0.1", 0, self.state, tls_cert=self.pki.cert,
                                                                tls_key=self.pki.key)
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()


# -- the certificate material


def test_self_signed_pki_verifies_for_its_names_only(pki, tmp_path):
    ctx = ssl.create_default_context(cafile=pki.ca)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # what strict verifiers (Python 3.13's default) ask
    server = server_context(pki.cert, pki.key)
    for name, ok in (("127.0.0.1", True), ("localhost", True), ("127.0.0.2", False), ("mail.example.com", False)):
        client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
        c = ctx.wrap_bio(client_in, client_out, server_hostname=name)
        s = server.wrap_bio(server_in, server_out, server_side=True)
        verdict = None
        for _ in range(10):  # a handshake in memory, no sockets
            for side in (c, s):
                try:
                    side.do_handshake()
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLCertVerificationError as exc:
                    verdict = exc.verify_message
                    break
            if verdict:
                break
            server_in.write(client_out.read())
            client_in.write(server_out.read())
        assert (verdict is None) == ok, (name, verdict)
    assert not os.path.exists(os.path.join(pki.directory, "ca.key"))  # the throwaway CA signs nothing else
    assert oct(os.stat(pki.key).st_mode & 0o777) == "0o600"
    more = self_signed(tmp_path, ("127.0.0.1", "127.0.0.2", "autodiscover.example.test"))
    text = subprocess.run(["openssl", "x509", "-in", more.cert, "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True, check=True).stdout
    assert "IP Address:127.0.0.2" in text and "DNS:autodiscover.example.test" in text


def test_unusable_certificate_files_are_one_line_errors(pki, tmp_path):
    with pytest.raises(TLSError, match="no such file"):
        server_context(str(tmp_path / "missing.pem"), pki.key)
    with pytest.raises(TLSError, match="cannot use the TLS certificate"):
        server_context(pki.ca, pki.key)  # a certificate that does not go with the key
    assert main(["target", "--tls-cert", pki.ca, "--tls-key", pki.key, "--admin-listen", ""]) == 2
    assert main(["target", "--tls-key", pki.key]) == 2
    assert main(["target", "--http-port", "0"]) == 2


def test_scenario_tls_option():
    assert scenario.parse("[target]\ntls = true\n").target.tls
    assert scenario.parse('[target]\ntls_cert = "c.pem"\ntls_key = "k.pem"\n').target.tls
    with pytest.raises(scenario.ScenarioError, match="embedded target"):
        scenario.parse('[target]\nurl = "https://mail.example.com/Microsoft-Server-ActiveSync"\ntls = true\n')
    with pytest.raises(scenario.ScenarioError, match="needs 'tls_cert'"):
        scenario.parse('[target]\ntls_key = "k.pem"\n')


# -- real runs over TLS


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_run_over_tls_every_device_provisions_and_syncs(transport):
    sc = _scenario("tls = true", transport)
    result = await run(sc, progress=False, attach_metrics=False)
    stats = result.stats
    assert result.target_url.startswith("https://127.0.0.1:")
    assert result.tls_problem is None
    assert stats.final_states["provisioned"] == 6, stats.final_states
    assert stats.by_key[("Provision", "ok", "200")] == 12  # both steps, every device
    assert stats.by_key[("FolderSync", "ok", "200")] == 6
    assert stats.by_key[("Sync", "ok", "200")] >= 12
    assert not [k for k in stats.by_key if k[1] != "ok"], stats.by_key
    # the server saw them over TLS: its own counters
    assert result.target.counters[("Provision", 200, 1)] == 12
    # the scenario given is not changed: the throwaway CA belonged to that run and is gone
    assert sc.target.ca_file is None and sc.target.tls_cert is None


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_devices_without_the_ca_fail_with_certificate_not_trusted(pki, transport):
    async with TLSTarget(pki) as srv:
        sc = _scenario('url = "%s"' % srv.url, transport, devices=4, duration=2)
        out = io.StringIO()
        result = await run(sc, progress=False, attach_metrics=False, stream=out)
    stats = result.stats
    assert result.tls_problem.startswith("certificate not trusted ("), result.tls_problem
    assert "certificate not trusted" in out.getvalue() and "ca_file" in out.getvalue()
    # every device tried, none got through; each attempt counted as a TLS failure (its own outcome,
    # not a generic connection error), no exception
    assert stats.final_states == {"provisioning": 4}
    assert set(stats.by_key) == {("Provision", "tls_error", "tls_error")} and stats.total >= 4
    assert srv.target.counters == {}  # nothing reached the EAS handlers


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_ca_bundle_of_another_ca_is_not_trusted_either(pki, other_pki, transport):
    async with TLSTarget(pki) as srv:
        sc = _scenario('url = "%s"\nca_file = "%s"' % (srv.url, other_pki.ca), transport, devices=2, duration=1.5)
        result = await run(sc, progress=False, attach_metrics=False, stream=io.StringIO())
    assert result.tls_problem.startswith("certificate not trusted"), result.tls_problem
    assert result.stats.final_states == {"provisioning": 2}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_insecure_works_and_warns(pki, transport):
    async with TLSTarget(pki) as srv:
        sc = _scenario('url = "%s"\ninsecure = true' % srv.url, transport, devices=4, duration=2.5)
        with pytest.warns(InsecureTLSWarning, match="verification is disabled"):
            result = await run(sc, progress=False, attach_metrics=False, stream=io.StringIO())
    assert result.tls_problem is None  # not checked: the operator opted out
    assert result.stats.final_states["provisioned"] == 4


async def test_tls_with_ca_file_given_keeps_the_operators_bundle(other_pki):
    """``tls = true`` with ``ca_file``: the devices use that bundle, not the throwaway CA."""
    sc = _scenario('tls = true\nca_file = "%s"' % other_pki.ca, devices=2, duration=1.5)
    result = await run(sc, progress=False, attach_metrics=False, stream=io.StringIO())
    assert result.tls_problem.startswith("certificate not trusted")
    assert result.stats.final_states == {"provisioning": 2}


async def test_multi_process_target_over_tls():
    """[target] processes = 2: every process serves TLS with a certificate for its own address (127.0.0.k)."""
    sc = _scenario("tls = true\nprocesses = 2", devices=6, duration=3)
    result = await run(sc, progress=False, attach_metrics=False)
    assert [u.split("/")[2].split(":")[0] for u in result.target_url] == ["127.0.0.1", "127.0.0.2"]
    assert all(u.startswith("https://") for u in result.target_url)
    assert result.stats.final_states["provisioned"] == 6, result.stats.final_states


async def test_easload_run_command_over_tls(tmp_path):
    f = tmp_path / "tls.toml"
    f.write_text('duration = 2\n[target]\ntls = true\nping_min = 1\n[population]\ndevices = 4\n'
                 '[load]\nramp_up = 0.5\nmode = "poll"\nthink_time = 0.5\n'
                 '[thresholds]\n"devices.provisioned" = ">= 1"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadgen", "run", str(f), "-q", "--metrics-listen", "", "--json",
        str(tmp_path / "s.json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode() + err.decode()
    assert "embedded (https://127.0.0.1:" in out.decode()


async def test_easload_run_command_says_certificate_not_trusted(pki, tmp_path):
    async with TLSTarget(pki) as srv:
        f = tmp_path / "remote.toml"
        f.write_text('duration = 1.5\n[target]\nurl = "%s"\n[population]\ndevices = 2\n[load]\nbackoff = 0.5\n'
                     % srv.url)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadgen", "run", str(f), "-q", "--metrics-listen", "",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    err = err.decode()
    assert proc.returncode == 3, out.decode() + err
    assert "certificate not trusted" in err and "Traceback" not in err
    assert "never answered" in err and "pass ca_file" in err


def test_tls_with_workers_and_one_target_process(tmp_path):
    """--workers N with the single embedded target over HTTPS: the workers trust the run's CA."""
    import orjson

    f = tmp_path / "w.toml"
    f.write_text('duration = 3\n[target]\ntls = true\n[population]\ndevices = 4\n[load]\nramp_up = 0.2\n'
                 'mode = "poll"\nthink_time = 0.3\n')
    out = subprocess.run([sys.executable, "-m", "loadgen", "run", str(f), "--workers", "2", "--metrics-listen", "",
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "https://127.0.0.1:" in out.stdout
    data = orjson.loads((tmp_path / "o" / "summary.json").read_bytes())
    assert data["devices"] == {"provisioned": 4} and data["errors"] == 0


# -- easload target --tls-self-signed, easload probe --ca


async def _start_target_command(*args):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadgen", "target", "--listen", "127.0.0.1:0", "--admin-listen", "", "--users", "3",
        "--ping-min", "1", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = []
    url = ca = http_url = None
    while url is None:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        if not line:
            raise AssertionError("easload target ended: %s" % "".join(lines))
        lines.append(line)
        if "--ca " in line:
            ca = line.split("--ca ", 1)[1].split()[0]
        if "plain HTTP" in line:
            http_url = line.rsplit(" ", 1)[1].strip()
        if "listening on" in line:
            url = line.split("listening on ", 1)[1].split()[0]
    if "--http-port" in args:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        http_url = line.rsplit(" ", 1)[1].strip()
    return proc, url, ca, http_url


async def _stop(proc):
    proc.send_signal(signal.SIGINT)  # that one PID: the target stops as on Ctrl-C
    try:
        await asyncio.wait_for(proc.wait(), 15)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()


async def _probe(url, *args, password="Pass1!"):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadgen", "probe", url, "--user", "user1", "--heartbeat", "1", *args,
        env=dict(os.environ, EAS_PASSWORD=password), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_target_command_self_signed_and_probe_with_and_without_ca():
    proc, url, ca, http_url = await _start_target_command("--tls-self-signed", "--http-port", "0")
    try:
        assert url.startswith("https://127.0.0.1:") and os.path.isfile(ca) and http_url.startswith("http://127.0.0.1:")
        code, out, err = await _probe(url, "--ca", ca)
        assert code == 0, out + err
        assert "probe verdict: this device can provision and sync" in out
        code, out, err = await _probe(url)
        assert code == 1, out + err
        assert "certificate not trusted: pass --ca" in out and "Traceback" not in out + err
        # the plain-HTTP side: EAS is refused there (IIS's 403.4), as on an Exchange site that requires SSL
        async with aiohttp.ClientSession() as session:
            async with session.options(http_url + "/Microsoft-Server-ActiveSync") as resp:
                assert resp.status == 403
    finally:
        await _stop(proc)
    assert proc.returncode == 0
    assert not os.path.exists(os.path.dirname(ca))  # the throwaway CA is removed when the target stops


async def test_target_command_with_a_given_certificate_and_insecure_probe(pki):
    proc, url, ca, _ = await _start_target_command("--tls-cert", pki.cert, "--tls-key", pki.key)
    try:
        assert ca is None and url.startswith("https://")
        code, out, err = await _probe(url, "--insecure")
        assert code == 0, out + err
        code, out, err = await _probe(url.replace("127.0.0.1", "localhost"), "--ca", pki.ca)
        assert code == 0, out + err  # the host name localhost is in the certificate too
    finally:
        await _stop(proc)


async def test_cluster_target_command_over_tls():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadgen", "target", "--listen", "127.0.0.1:0", "--processes", "2", "--admin-listen",
        "", "--users", "4", "--ping-min", "1", "--tls-self-signed", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = []
    try:
        while sum("process " in x and "https://" in x for x in lines) < 2:
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            assert line, "".join(lines)
            lines.append(line)
        ca = next(x for x in lines if "--ca " in x).split("--ca ", 1)[1].split()[0]
        urls = [x.split(": ", 1)[1].strip() for x in lines if "process " in x and "https://" in x]
        # user1 lives in process 1 (127.0.0.2), user0 in process 0
        code, out, err = await _probe(urls[1], "--ca", ca)
        assert code == 0, out + err
        assert urls[1].startswith("https://127.0.0.2:")
    finally:
        await _stop(proc)


async def test_devices_autodiscover_over_tls_with_the_runs_ca():
    """[target] tls with autodiscover: the devices' Autodiscover POST (aiohttp) trusts the run's CA too."""
    sc = _scenario('tls = true\nautodiscover = "user{n}@example.com"', devices=4, duration=2.5)
    result = await run(sc, progress=False, attach_metrics=False)
    stats = result.stats
    assert stats.by_key[("Autodiscover", "ok", "200")] == 4  # the configured server's https Autodiscover URL
    assert stats.final_states["provisioned"] == 4
    assert all(d.endpoint.url_prefix.startswith("https://127.0.0.1:") for d in result.devices)


def test_run_with_an_unusable_tls_cert_is_a_usage_error(pki, tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text('duration = 1\n[target]\ntls_cert = "%s"\ntls_key = "%s"\n[population]\ndevices = 1\n'
                 % (pki.ca, pki.key))  # a CA certificate with another key
    assert main(["run", str(f), "--metrics-listen", ""]) == 2
    err = capsys.readouterr().err
    assert "[target] tls: cannot use the TLS certificate" in err and "Traceback" not in err
