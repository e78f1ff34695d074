"""The shards' start barrier (loadgen/run/barrier.py), on loopback: one port, shard i on 127.0.0.(i+1)."""

import socket
import subprocess
import sys
import threading
import time

import pytest

from loadgen.run.barrier import BarrierTimeout, _ask, barrier, main


def wait_for(condition, deadline=30.0):
    """Wait until ``condition()`` holds, at most ``deadline`` seconds (generous; never a timing assertion)."""
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not met within %g s" % deadline
        time.sleep(0.02)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(results, i, n, port, run_id="r1", **kw):
    """Shard i of n in a thread; its address 127.0.0.(i+1) -- the pattern maps {i} to i+1 below."""
    def go():
        try:
            results[i] = barrier(i, n, _Plus1(port), "127.0.0.%d:%d" % (i + 1, port), run_id, **kw)
        except BarrierTimeout as exc:
            results[i] = exc

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


class _Plus1(str):
    """A --peers pattern whose {i} is shard i's loopback address 127.0.0.(i+1)."""

    def __new__(cls, port):
        return super().__new__(cls, "127.0.0.x:%d" % port)

    def format(self, i):  # noqa: A003 (str.format's use in barrier)
        return "127.0.0.%d:%s" % (i + 1, self.rsplit(":", 1)[1])


def test_every_shard_gets_one_start_after_the_last_one_came_up():
    port = _free_port()
    results = {}
    threads = [_run(results, i, 3, port, lead=1.0, poll=0.05, timeout=30) for i in (0, 1)]
    # shards 0 and 1 are up and polling; nothing may be decided without shard 2
    wait_for(lambda: _ask("127.0.0.1:%d" % port, 9, 1) and _ask("127.0.0.2:%d" % port, 9, 1))
    assert _ask("127.0.0.1:%d" % port, 9, 1)["start_at"] is None and results == {}
    late = time.time()
    threads.append(_run(results, 2, 3, port, lead=1.0, poll=0.05, timeout=30))
    wait_for(lambda: len(results) == 3)
    for t in threads:
        t.join(timeout=10)
    starts = set(results.values())
    assert len(starts) == 1, results  # one common start
    (start,) = starts
    assert isinstance(start, float) and start >= late + 1.0 - 0.01  # fixed once the last shard was up


def test_a_missing_shard_ends_the_wait_naming_it():
    port = _free_port()
    results = {}
    _run(results, 0, 3, port, lead=1.0, poll=0.05, timeout=0.6)
    _run(results, 1, 3, port, lead=1.0, poll=0.05, timeout=0.6)
    wait_for(lambda: 0 in results and 1 in results)
    assert isinstance(results[0], BarrierTimeout) and results[0].missing == [2]
    assert isinstance(results[1], BarrierTimeout) and results[1].missing == [0]


def test_a_shard_of_another_run_does_not_count():
    port = _free_port()
    results = {}
    _run(results, 0, 2, port, run_id="r1", lead=1.0, poll=0.05, timeout=0.8)
    _run(results, 1, 2, port, run_id="r2", lead=1.0, poll=0.05, timeout=0.8)
    wait_for(lambda: len(results) == 2)
    assert isinstance(results[0], BarrierTimeout) and results[0].missing == [1]
    assert isinstance(results[1], BarrierTimeout)


def test_one_shard_starts_at_once():
    assert abs(barrier(0, 1, "unused-{i}:1", "127.0.0.1:0", "r1") - time.time()) < 5


def test_command_line():
    port = _free_port()
    # shard 0 alone: shard 1 (a name that does not resolve) never answers -> exit 3, one line
    proc = subprocess.run([sys.executable, "-m", "loadgen.run.barrier", "--index", "0", "--shards", "2",
                           "--peers", "easload-test-{i}.invalid:1", "--listen", "127.0.0.1:%d" % port,
                           "--timeout", "1", "--lead", "0"], capture_output=True, text=True, timeout=60)
    err = proc.stderr
    assert proc.returncode == 3 and err.count("\n") == 1 and "shards 1 of 2 never answered" in err, err
    assert proc.stdout == ""
    for argv, needle in ((["--index", "2", "--shards", "2", "--peers", "h-{i}:1"], "--index must be 0..1"),
                         (["--index", "0", "--shards", "2", "--peers", "h:1"], "--peers must name"),
                         (["--index", "x", "--shards", "2", "--peers", "h-{i}:1"], "--index"),
                         (["--shards", "2"], "required")):
        proc = subprocess.run([sys.executable, "-m", "loadgen.run.barrier", *argv], capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_command_line_prints_the_start(capsys):
    assert main(["--index", "0", "--shards", "1", "--peers", "h-{i}:1"]) == 0
    printed = float(capsys.readouterr().out)
    assert abs(printed - time.time()) < 5
