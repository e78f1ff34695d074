"""`easload target` as operators start it: the URLs it prints work; bad flags exit 2."""

import base64
import os
import re
import signal
import subprocess
import sys
import urllib.request


def test_target_command_serves_eas_and_admin():
    proc = subprocess.Popen([sys.executable, "-m", "loadgen", "target", "--listen", "127.0.0.1:0",
                             "--admin-listen", "127.0.0.1:0", "--users", "3", "--admin-token", "t0k3n"],
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
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
