"""Signals end a run the way its end would: summary printed, results written, exit 1 (interrupted),
no process left behind, no file of the run left behind.

``easload run --workers 2`` against the embedded target, as a subprocess: SIGTERM and SIGINT to the
parent, and to the whole process group (what a terminal's Ctrl-C or a service manager does).  The
load is known to be running from the parent's progress line (requests > 0), never from a sleep;
the workers are the processes whose parent is the run (/proc/<pid>/status PPid).
"""

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time

import orjson
import pytest

DEADLINE = 90.0


def _children(pid):
    """Pids of the live processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/status" % name) as f:
                status = f.read()
        except OSError:
            continue
        ppid = re.search(r"^PPid:\s+(\d+)", status, re.M)
        state = re.search(r"^State:\s+(\S)", status, re.M)
        if ppid and int(ppid.group(1)) == pid and not (state and state.group(1) in "ZX"):
            found.append(int(name))
    return found


def _alive(pid):
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            state = re.search(r"^State:\s+(\S)", f.read(), re.M)
    except OSError:
        return False
    return not (state and state.group(1) in "ZX")


def _wait(condition, what, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("%s: not within %.0f s" % (what, deadline))
        time.sleep(0.05)


class Run:
    """``easload run`` as a subprocess, its stderr read line by line as it comes."""

    def __init__(self, tmp_path, workers=2, extra=(), scenario=None):
        f = tmp_path / "sig.toml"
        f.write_text(scenario or ('duration = 600\n[population]\ndevices = 6\n[load]\nramp_up = 0\n'
                                  'think_time = 0.2\nmode = "poll"\ngraceful_stop = 1\n'))
        self.out = tmp_path / "o"
        args = [sys.executable, "-m", "loadgen", "run", str(f), "--metrics-listen", "", "--out", str(self.out)]
        if workers > 1:
            args += ["--workers", str(workers)]
        self.proc = subprocess.Popen(list(args) + list(extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)  # its own process group
        self.lines = []
        self.stdout = []
        # both pipes read in threads: a process left behind holding them must not block the test
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stderr, self.lines), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True)]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(pipe, into):
        for line in pipe:
            into.append(line)

    def requests(self):
        """The request count of the last progress line ("... | requests N ..."), 0 before one."""
        for line in reversed(self.lines):
            m = re.search(r"\| requests (\d+)", line)
            if m:
                return int(m.group(1))
        return 0

    def finish(self):
        """(stdout, stderr) once the run has exited (at most DEADLINE s each)."""
        self.proc.wait(timeout=DEADLINE)
        for reader in self.readers:
            reader.join(timeout=10)  # (longer only if a process it left holds the pipes: then failed anyway)
        return "".join(self.stdout), "".join(self.lines)

    def kill(self):
        """Whatever is left of the run's process group (only when a test failed)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=DEADLINE)


def _loaded(run, workers=2):
    """Wait until the load is running (a progress line with requests), return the workers' pids."""
    _wait(lambda: run.requests() > 0 or run.proc.poll() is not None, "a progress line with requests")
    assert run.proc.poll() is None, "".join(run.lines)
    kids = _children(run.proc.pid)
    assert len(kids) >= workers, kids  # the workers (and multiprocessing's resource tracker)
    return kids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("to_group", [False, True], ids=["parent", "group"])
def test_workers_run_stopped_by_a_signal_writes_its_results(tmp_path, sig, to_group):
    run = Run(tmp_path)
    try:
        kids = _loaded(run)
        if to_group:
            os.killpg(run.proc.pid, sig)
        else:
            run.proc.send_signal(sig)
        stdout, stderr = run.finish()
    finally:
        run.kill()
    assert run.proc.returncode == 1, stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert "Accounting" in stdout and "interrupted" in stdout  # the summary, saying so
    data = orjson.loads((run.out / "summary.json").read_bytes())
    assert data["interrupted"] is True
    assert data["requests"] > 0 and data["requests"] == sum(data["by_command_status"].values())
    assert sum(data["devices"].values()) == 6  # both workers' devices are in the merged results
    assert (run.out / "junit.xml").is_file()
    _wait(lambda: not any(_alive(k) for k in kids), "every worker ended")


def test_workers_die_with_their_parent(tmp_path):
    """A parent killed outright (SIGKILL: nothing to handle) leaves no worker loading the server."""
    run = Run(tmp_path)
    try:
        kids = _loaded(run)
        run.proc.kill()  # the parent only, not its group
        run.proc.wait(timeout=DEADLINE)
        _wait(lambda: not any(_alive(k) for k in kids), "every worker ended after its parent")
    finally:
        run.kill()


def test_sigterm_to_a_single_process_run_removes_its_admin_token_file(tmp_path):
    """easload run (one process) serves the embedded target's admin API with a token file: SIGTERM
    ends the run through its normal end, and the file is gone."""
    run = Run(tmp_path, workers=1)
    try:
        _wait(lambda: any("bearer token in" in line for line in run.lines) or run.proc.poll() is not None,
              "the admin API line")
        path = re.search(r"bearer token in (\S+?)\)", "".join(run.lines)).group(1)
        assert os.path.exists(path)
        _wait(lambda: run.requests() > 0 or run.proc.poll() is not None, "a progress line with requests")
        run.proc.send_signal(signal.SIGTERM)
        stdout, stderr = run.finish()
    finally:
        run.kill()
    assert run.proc.returncode == 1, stdout + stderr
    assert "Accounting" in stdout
    assert not os.path.exists(path)
    assert (run.out / "summary.json").is_file()


# -- the engine's set-up: what it created is removed when the run fails or is stopped early


def _tls_scenario(devices=2, duration=1.0):
    from loadgen import scenario

    return scenario.parse('duration = %s\n[target]\ntls = true\n[population]\ndevices = %d\n'
                          '[load]\nramp_up = 0\n' % (duration, devices), "tls.toml")


@pytest.fixture
def made(monkeypatch):
    """The TemporaryPKI directories and admin token files a run's start-up makes (exchange/launch.py)."""
    from loadgen.exchange import launch, tls

    found = {"pki": [], "tokens": []}
    real_pki = tls.TemporaryPKI

    def pki(*a, **kw):
        found["pki"].append(real_pki(*a, **kw))
        return found["pki"][-1]

    monkeypatch.setattr(tls, "TemporaryPKI", pki)
    real_admin = launch._start_admin

    async def admin(launched, *a, **kw):
        await real_admin(launched, *a, **kw)
        found["tokens"].append(launched.token_file)

    monkeypatch.setattr(launch, "_start_admin", admin)
    return found


def _pki_dirs(found):
    return [p.directory for p in found["pki"]]


def test_a_run_failing_after_its_set_up_removes_token_file_and_tls_keys(monkeypatch, made):
    import io

    from loadgen.cli import start
    from loadgen.run import engine

    if not _has_openssl():
        pytest.skip("no openssl command")

    def broken(*a, **kw):
        raise RuntimeError("population")

    monkeypatch.setattr(engine, "build_population", broken)
    with pytest.raises(RuntimeError, match="population"):
        asyncio.run(start.run(_tls_scenario(), progress=False, attach_metrics=False, admin="127.0.0.1:0",
                               stream=io.StringIO()))
    assert made["tokens"] and made["pki"]
    assert not any(os.path.exists(p) for p in made["tokens"])
    assert not any(os.path.exists(d) for d in _pki_dirs(made))


def test_a_stop_during_the_set_up_takes_the_normal_way_out(made):
    """A stop (SIGTERM's path) before the load starts: the run returns interrupted, its files removed."""
    import io

    from loadgen.cli import start

    if not _has_openssl():
        pytest.skip("no openssl command")

    async def go():
        stop = asyncio.Event()
        stop.set()
        return await start.run(_tls_scenario(duration=600), progress=False, attach_metrics=False,
                                admin="127.0.0.1:0",
                                stream=io.StringIO(), stop=stop)

    result = asyncio.run(asyncio.wait_for(go(), DEADLINE))
    assert result.interrupted and result.stats.interrupted
    assert made["tokens"] and not any(os.path.exists(p) for p in made["tokens"])
    assert made["pki"] and not any(os.path.exists(d) for d in _pki_dirs(made))


def _has_openssl():
    import shutil

    return shutil.which("openssl") is not None
