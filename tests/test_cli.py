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
