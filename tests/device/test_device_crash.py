"""One device's unexpected exception never ends the run (engine.Lives is the one place it is caught).

A device whose code raises -- an OverflowError from a header, a bad URL, a decode error -- is
counted (``internal_error`` for the command it had in flight, a per-exception-type device error
count), ended in the state ``failed`` with the exception's type and one-line message as its
detail, and the other devices go on; the run returns its results, and ``easload run`` prints its
summary and writes summary.json and junit.xml.
"""

import asyncio
import subprocess
import sys
import textwrap

import orjson
import pytest

from loadgen.cli import start
from loadgen import scenario
from loadgen.device.life import Device

DEVICES = 8
VICTIM = 3


def _scenario(mode="poll", transport="lean", duration=2.5, target="", load=""):
    return scenario.parse(textwrap.dedent("""
        name = "crash"
        duration = %s
        [target]
        %s
        [auth]
        users = %d
        [population]
        devices = %d
        devices_per_user = 1
        [load]
        ramp_up = 0.2
        think_time = 0.1
        timeout = 10
        graceful_stop = 2
        mode = "%s"
        transport = "%s"
        %s
        """ % (duration, target, DEVICES, DEVICES, mode, transport, load)), "crash.toml")


@pytest.mark.parametrize("transport", ["lean", "aiohttp"])
def test_a_device_whose_answer_handling_raises_is_counted_and_ended(monkeypatch, transport):
    """The exception is raised while the request is in flight (the answer is being taken in):
    that request is counted as internal_error, the device ends failed, the others go on."""
    original = Device._received

    def received(self, command, body, resp):
        if self.index == VICTIM and command == "FolderSync":
            raise OverflowError("int too large to convert to float")
        return original(self, command, body, resp)

    monkeypatch.setattr(Device, "_received", received)
    result = asyncio.run(start.run(_scenario(transport=transport), progress=False, attach_metrics=False))
    victim = next(d for d in result.devices if d.index == VICTIM)
    assert victim.state == "failed"
    assert victim.detail == "OverflowError: int too large to convert to float"
    assert victim.in_flight is None
    others = [d for d in result.devices if d.index != VICTIM]
    assert all(d.state == "provisioned" for d in others), [d.state for d in others]
    stats = result.stats
    assert stats.by_key.get(("FolderSync", "internal_error", "internal_error")) == 1
    assert result.device_errors == {"OverflowError": 1}
    assert stats.final_states["failed"] == 1
    assert not stats.cancelled.get("FolderSync")  # counted once, as internal_error, not again at the end


def test_a_device_whose_parse_raises_ends_and_the_run_goes_on(monkeypatch):
    """Raised after the answer was counted: no extra request is invented, the device ends failed."""
    original = Device._parse

    def parse(self, command, fn, tree, **kw):
        if self.index == VICTIM and command == "FolderSync":
            raise ValueError("cannot decode %s" % ("x" * 500) + "\nsecond line")
        return original(self, command, fn, tree, **kw)

    monkeypatch.setattr(Device, "_parse", parse)
    result = asyncio.run(start.run(_scenario(), progress=False, attach_metrics=False))
    victim = next(d for d in result.devices if d.index == VICTIM)
    assert victim.state == "failed"
    assert victim.detail.startswith("ValueError: cannot decode x") and "\n" not in victim.detail
    assert len(victim.detail) <= 200
    assert not any(o == "internal_error" for (_c, o, _l) in result.stats.by_key)
    assert result.device_errors == {"ValueError": 1}
    assert sum(1 for d in result.devices if d.state == "provisioned") == DEVICES - 1


def test_an_exception_while_reading_an_answer_counts_the_request_once(monkeypatch):
    """Raised while the answer is read (decoding, the back-off header), before the device records an
    outcome: the request is still in flight, so the catch-all records it as internal_error -- every
    request the server answered is counted exactly once."""
    original = Device._tree

    def tree(self, command, status, body):
        if self.index == VICTIM and command == "FolderSync":
            raise RecursionError("maximum recursion depth exceeded")
        return original(self, command, status, body)

    monkeypatch.setattr(Device, "_tree", tree)
    result = asyncio.run(start.run(_scenario(), progress=False, attach_metrics=False))
    internal = {c: n for (c, o, _l), n in result.stats.by_key.items() if o == "internal_error"}
    assert internal == {"FolderSync": 1}, internal
    assert result.device_errors == {"RecursionError": 1}


def test_a_parked_ping_answer_that_raises_is_caught_by_the_same_place(monkeypatch):
    """The lean transport calls back into the device when a parked Ping's answer arrives: an
    exception there ends that device only."""
    original = Device.ping_answered
    raised = []

    async def ping_answered(self, transport, resp, deadline):
        if self.index == VICTIM:
            raised.append(self.index)
            self.in_flight = "Ping"
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        return await original(self, transport, resp, deadline)

    monkeypatch.setattr(Device, "ping_answered", ping_answered)
    # a 1-s heartbeat the target accepts: parked Pings are answered (Status 1) within the run
    sc = _scenario(mode="ping", duration=4, target="ping_min = 1", load="heartbeat = 1")
    result = asyncio.run(start.run(sc, progress=False, attach_metrics=False))
    victim = next(d for d in result.devices if d.index == VICTIM)
    assert raised == [VICTIM]
    assert victim.state == "failed" and victim.detail.startswith("UnicodeDecodeError: ")
    assert result.stats.by_key.get(("Ping", "internal_error", "internal_error")) == 1
    assert result.device_errors == {"UnicodeDecodeError": 1}


def test_detail_never_shows_credentials(monkeypatch):
    original = Device._received

    def received(self, command, body, resp):
        if self.index == VICTIM:
            raise ValueError("bad URL http://%s:%s@example.test/x" % (self.user, self._password))
        return original(self, command, body, resp)

    monkeypatch.setattr(Device, "_received", received)
    result = asyncio.run(start.run(_scenario(duration=1.5), progress=False, attach_metrics=False))
    victim = next(d for d in result.devices if d.index == VICTIM)
    assert victim.state == "failed"
    assert victim._password not in victim.detail and "***" in victim.detail


# loaded by every process of the run (the workers are spawned interpreters) through sitecustomize
CRASHER = textwrap.dedent("""
    from loadgen.device.life import Device

    original = Device._received

    def received(self, command, body, resp):
        if self.index == 3 and command == "FolderSync":
            raise OverflowError("int too large to convert to float")
        return original(self, command, body, resp)

    Device._received = received
""")


@pytest.mark.parametrize("workers", [1, 2])
def test_easload_run_with_a_crashing_device_writes_its_results(tmp_path, workers):
    import os

    f = tmp_path / "c.toml"
    f.write_text('duration = 2\n[population]\ndevices = 8\n[load]\nramp_up = 0.2\nthink_time = 0.2\nmode = "poll"\n')
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(CRASHER)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), root]))
    out = subprocess.run([sys.executable, "-m", "loadgen", "run", str(f), "--metrics-listen", "", "-q",
                          "--workers", str(workers), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode in (0, 1), out.stdout + out.stderr
    data = orjson.loads((tmp_path / "o" / "summary.json").read_bytes())
    assert data["devices"].get("failed") == 1, data["devices"]
    assert data["device_errors"] == {"OverflowError": 1}, data["device_errors"]  # also with --workers: merged
    assert "1 devices ended by an unexpected exception" in out.stdout
    assert (tmp_path / "o" / "junit.xml").is_file()
    assert "Accounting" in out.stdout
