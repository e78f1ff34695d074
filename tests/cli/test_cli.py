"""`easload target` as operators start it: the URLs it prints work; bad flags exit 2."""

import asyncio
import base64
import os
import re
import signal
import subprocess
import sys
import urllib.request

from loadgen.cli.app import main


def test_target_command_serves_eas_and_admin():
    """The admin token from the environment (EASLOAD_ADMIN_TOKEN): not on the command line, not echoed."""
    proc = subprocess.Popen([sys.executable, "-m", "loadgen", "target", "--listen", "127.0.0.1:0",
                             "--admin-listen", "127.0.0.1:0", "--users", "3"],
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, EASLOAD_ADMIN_TOKEN="t0k3n"))
    try:
        lines = [proc.stderr.readline() for _ in range(2)]
        eas = re.search(r"(http://\S+/Microsoft-Server-ActiveSync)", lines[0]).group(1)
        admin = re.search(r"(http://127\.0\.0\.1:\d+)", lines[1]).group(1)
        assert "t0k3n" not in lines[1]  # a token the operator gave is not echoed
        auth = "Basic " + base64.b64encode(b"user1:Pass1!").decode()
        req = urllib.request.Request(eas, method="OPTIONS", headers={"Authorization": auth})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert "14.1" in resp.headers["MS-ASProtocolVersions"]
        req = urllib.request.Request(admin + "/admin/devices", headers={"Authorization": "Bearer t0k3n"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_target_bad_flag_exits_2():
    out = subprocess.run([sys.executable, "-m", "loadgen", "target", "--listen", "nope"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == ["easload: --listen must be HOST:PORT, not 'nope'"]


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_exit_3_when_the_run_cannot_start(tmp_path):
    """Exit 3: the target never answered (nothing listens), or the embedded target cannot listen
    where the scenario asks (a single process and a cluster) -- one line, never a traceback."""
    cases = {
        "closed": '[target]\nurl = "http://127.0.0.1:%d/Microsoft-Server-ActiveSync"\n' % _free_port(),
        "bind": '[target]\nlisten = "192.0.2.1"\n',  # TEST-NET-1: not an address of this machine
        "bind-cluster": '[target]\nlisten = "192.0.2.1"\nprocesses = 2\n',
    }
    for name, target in cases.items():
        f = tmp_path / (name + ".toml")
        f.write_text('duration = 2\n%s[population]\ndevices = 2\n[load]\ntimeout = 1\nretry_interval = 0.2\n' % target)
        out = subprocess.run([sys.executable, "-m", "loadgen", "run", str(f), "--metrics-listen", "", "-q"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 3, (name, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr, name
        assert ("never answered" if name == "closed" else "could not start") in out.stderr, (name, out.stderr)


def _start_target(argv, env=None):
    """``easload target`` started in its own session; its stderr lines until the admin API's line."""
    proc = subprocess.Popen([sys.executable, "-m", "loadgen", "target", "--listen", "127.0.0.1:0",
                             "--admin-listen", "127.0.0.1:0", "--users", "2", *argv], stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, env=env or dict(os.environ), start_new_session=True)
    lines = []
    for _ in range(20):
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "admin API" in line:
            break
    return proc, lines


def _admin_get(lines, token):
    admin = re.search(r"admin API and /metrics on (http://127\.0\.0\.1:\d+)", "".join(lines)).group(1)
    req = urllib.request.Request(admin + "/admin/devices", headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status


def _stop(proc, sig=signal.SIGINT):
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_target_admin_token_from_a_file_and_a_warning_for_argv(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("fr0m-a-f1le\n")
    proc, lines = _start_target(["--admin-token-file", str(token_file)])
    try:
        assert _admin_get(lines, "fr0m-a-f1le") == 200
        assert "fr0m-a-f1le" not in "".join(lines) and "warning" not in "".join(lines)
    finally:
        _stop(proc)
    proc, lines = _start_target(["--admin-token", "on-the-command-line"])
    try:
        assert any("warning" in line and "--admin-token" in line and "ps" in line for line in lines), lines
        assert _admin_get(lines, "on-the-command-line") == 200
    finally:
        _stop(proc)
    out = subprocess.run([sys.executable, "-m", "loadgen", "target", "--admin-token-file", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "--admin-token-file" in out.stderr


def test_target_sigterm_removes_its_tls_directory():
    """SIGTERM takes Ctrl-C's way out: exit 0 and the throwaway CA's directory removed."""
    proc, lines = _start_target(["--tls-self-signed"])
    try:
        text = "".join(lines)
        ca = re.search(r"--ca (\S+)", text).group(1)
        assert os.path.exists(ca)
        assert "listening on https://" in text
    except BaseException:
        proc.kill()
        raise
    assert _stop(proc, signal.SIGTERM) == 0
    assert not os.path.exists(os.path.dirname(ca))


def test_run_exit_3_when_the_server_reads_requests_and_never_answers(tmp_path):
    """Requests sent and never answered (timed out, or cancelled when the run ends) are not answers:
    exit 3 "never answered", not "0 requests, 0 errors" and exit 0."""
    import asyncio
    import threading

    from hostile import ScriptedServer

    async def silent(conn, req):
        await asyncio.sleep(3600)  # reads the request, never writes a byte
        return False

    ready = threading.Event()
    box = {}

    def serve():
        async def main():
            async with ScriptedServer(silent) as srv:
                box["srv"], box["stop"] = srv, asyncio.Event()
                box["loop"] = asyncio.get_running_loop()
                ready.set()
                await box["stop"].wait()
        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        f = tmp_path / "silent.toml"
        f.write_text('duration = 2\n[target]\nurl = "%s"\n[population]\ndevices = 2\n[load]\nramp_up = 0\n'
                     'graceful_stop = 0.5\n' % box["srv"].url)
        out = subprocess.run([sys.executable, "-m", "loadgen", "run", str(f), "--metrics-listen", "", "-q"],
                             capture_output=True, text=True, timeout=120)
        assert len(box["srv"].requests) >= 1  # the server did read requests
        assert out.returncode == 3, (out.stdout[-3000:], out.stderr[-3000:])
        assert "never answered" in out.stderr and "Traceback" not in out.stderr
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)


def _serve_in_thread(behaviours, ssl_ctx=None):
    """ScriptedServers (tests/hostile.py) on a loop of their own thread; (servers, stop)."""
    import asyncio
    import contextlib
    import threading

    from hostile import ScriptedServer

    ready = threading.Event()
    box = {}

    def serve():
        async def main():
            async with contextlib.AsyncExitStack() as stack:
                box["srvs"] = [await stack.enter_async_context(ScriptedServer(b, ssl=ssl_ctx)) for b in behaviours]
                box["stop"], box["loop"] = asyncio.Event(), asyncio.get_running_loop()
                ready.set()
                await box["stop"].wait()
        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30)

    def stop():
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)
    return box["srvs"], stop


def test_tls_precheck_never_prints_credentials_of_a_url(tmp_path, capsys):
    """The TLS pre-check of several https URLs names the URLs it could not trust without their user
    info; an unreadable URL with user info is refused without quoting the password either."""
    import ssl

    from loadgen import scenario
    from loadgen.cli import start
    from loadgen.exchange.tls import TemporaryPKI

    async def nothing(conn, req):
        return False

    with TemporaryPKI() as pki:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.cert, pki.key)
        (a, b), stop = _serve_in_thread([nothing, nothing], ctx)
        try:
            urls = [srv.url.replace("https://", "https://bob:hunter2@") for srv in (a, b)]
            sc = scenario.parse('[target]\nurl = ["%s", "%s"]\n' % tuple(urls), "x.toml")
            problems = asyncio.run(start.tls_preflight(sc, sc.target.url, sys.stderr))
        finally:
            stop()
    err = capsys.readouterr().err
    assert problems and "certificate not trusted" in err
    assert "hunter2" not in err and "bob" not in err
    assert main(["run", "--target", "https://bob:hun/ter2@127.0.0.1:1/x", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "hun" not in err and "ter2" not in err and "--target" in err


def test_no_policy_server_gets_a_hint_after_the_summary_and_in_the_threshold_line(tmp_path):
    """A server without a policy: every device ends no_policy; devices.provisioned stays strict (nobody
    was provisioned) and fails, and the output says why and which threshold fits such a server."""
    f = tmp_path / "nopolicy.toml"
    f.write_text('duration = 2\n[target]\nno_policy = true\n[population]\ndevices = 2\n[load]\nramp_up = 0\n'
                 '[thresholds]\n"devices.provisioned" = ">= 0.99"\n"devices.no_policy" = ">= 0.99"\n')
    out = subprocess.run([sys.executable, "-m", "loadgen", "run", str(f), "--metrics-listen", "", "-q"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr[-2000:]
    line = [x for x in out.stdout.splitlines() if x.strip().startswith("devices.provisioned")][0]
    assert "FAIL" in line and "no policy" in line, line
    assert "no_policy" in [x for x in out.stdout.splitlines() if x.strip().startswith("devices.no_policy")][0]
    hints = [x for x in out.stdout.splitlines() if x.startswith("hint:")]
    assert len(hints) == 1 and "no policy" in hints[0] and "devices.no_policy" in hints[0], out.stdout[-2000:]


def test_run_yes_reaches_the_redirect_rule(tmp_path, monkeypatch):
    """--yes confirms a load test on a new host a device is redirected to (loadgen/wire/redirects.py):
    the command line hands it to the run context (loadgen/run/context.py), which holds the run's redirect rule."""
    import loadgen.run.engine as engine_mod
    from loadgen.cli import app as cli

    seen = {}

    async def fake_run(scenario, **kw):
        seen["rule"] = kw["context"].redirect_rule
        raise cli.UsageError("stopped before any load")

    monkeypatch.setattr(engine_mod, "run", fake_run)
    f = tmp_path / "s.toml"
    f.write_text('duration = 1\n[population]\ndevices = 20\n')
    for flags, confirmed in (([], False), (["--yes"], True)):
        seen.clear()
        code = cli.main(["run", str(f), "-q", "--metrics-listen", "", *flags])
        assert code == 2 and seen["rule"].confirmed is confirmed, (flags, seen)
