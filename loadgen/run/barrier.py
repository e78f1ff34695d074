"""A start barrier for the shards of one run: no shard starts before every shard is up, and all of them
start at one wall-clock time, without anybody writing that time by hand.

    python -m loadgen.run.barrier --index I --shards N --peers 'HOST-{i}.SERVICE:9476' [--listen 0.0.0.0:9476]

prints the common start (unix seconds) for ``easload run --start-at`` and exits 0.  Each shard
serves ``GET /barrier`` (JSON: its index, the run id, the start once known) on ``--listen``.  Shard 0
polls every other shard's ``/barrier`` (``--peers`` with ``{i}`` replaced by the index: in Kubernetes
the Indexed Job's pod names through its headless Service, ``<job>-<i>.<service>``, Kubernetes' "Pod's
hostname and subdomain" DNS records) until all of them answer for the same run id
(``EASLOAD_RUN_ID``), then fixes the start ``--lead`` seconds ahead; the others poll shard 0 until it
gives them the start.  Shard 0 leaves once every shard has it.  The lead covers the time from here to
``easload run`` waiting for the start (starting Python, reading the scenario).

The shards start together as far as their clocks agree (Kubernetes nodes keep NTP time).  A shard
that never comes up, or a peer of another run, ends the wait after ``--timeout`` seconds with one
line naming the shards missing, exit 3: the run must not start mis-sized.  Bad arguments: exit 2.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXIT_USAGE, EXIT_TIMEOUT = 2, 3


class BarrierTimeout(Exception):
    """The barrier was not passed in time; ``missing`` names the shards not seen."""

    def __init__(self, message, missing):
        super().__init__(message)
        self.missing = missing


class _State:
    def __init__(self, index, run_id):
        self.index, self.run_id = index, run_id
        self.start_at = None
        self.told = set()  # shards that received start_at from this shard (shard 0)
        self.lock = threading.Lock()


def _serve(listen, state):
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            path, _, query = self.path.partition("?")
            if path != "/barrier":
                self.send_error(404)
                return
            asker = None
            for part in query.split("&"):
                key, _, value = part.partition("=")
                if key == "index" and value.isdigit():
                    asker = int(value)
            with state.lock:
                body = {"index": state.index, "run": state.run_id, "start_at": state.start_at}
                if state.start_at is not None and asker is not None:
                    state.told.add(asker)
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # no access log on stderr
            pass

    server = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


def _ask(address, index, timeout):
    """The peer's /barrier answer (a dict), or None while it is not up."""
    try:
        with urllib.request.urlopen("http://%s/barrier?index=%d" % (address, index), timeout=timeout) as r:
            body = json.loads(r.read(4096))
        return body if isinstance(body, dict) else None
    except (OSError, ValueError, urllib.error.URLError):
        return None


def barrier(index, shards, peers, listen, run_id, lead=15.0, timeout=900.0, poll=0.5, clock=time.time):
    """Wait for every shard of the run; the common start (unix seconds).  ``peers``: a ``str.format``
    pattern with ``{i}`` giving shard i's ``host:port``.  Raises :class:`BarrierTimeout`."""
    if shards == 1:
        return clock()
    state = _State(index, run_id)
    server = _serve(listen, state)
    deadline = time.monotonic() + timeout
    try:
        if index == 0:
            waiting = set(range(1, shards))
            while waiting:
                for i in sorted(waiting):
                    answer = _ask(peers.format(i=i), 0, min(2.0, poll * 4))
                    if answer and answer.get("run") == run_id and answer.get("index") == i:
                        waiting.discard(i)
                if waiting:
                    if time.monotonic() > deadline:
                        raise BarrierTimeout("shards %s of %d never answered at %s within %g s"
                                             % (_ranges(waiting), shards, peers, timeout), sorted(waiting))
                    time.sleep(poll)
            with state.lock:
                state.start_at = clock() + lead
            # every shard has polled its start from here before shard 0 leaves (their next poll)
            while True:
                with state.lock:
                    missing = set(range(1, shards)) - state.told
                if not missing:
                    return state.start_at
                if time.monotonic() > deadline or clock() > state.start_at:
                    raise BarrierTimeout("shards %s of %d did not fetch the start in time"
                                         % (_ranges(missing), shards), sorted(missing))
                time.sleep(poll / 5)
        while True:
            answer = _ask(peers.format(i=0), index, min(2.0, poll * 4))
            if answer and answer.get("run") == run_id and answer.get("index") == 0 \
                    and isinstance(answer.get("start_at"), (int, float)):
                return float(answer["start_at"])
            if time.monotonic() > deadline:
                raise BarrierTimeout("shard 0 of %d gave no start at %s within %g s"
                                     % (shards, peers.format(i=0), timeout), [0])
            time.sleep(poll)
    finally:
        server.shutdown()
        server.server_close()


def _ranges(indices):
    return ", ".join(map(str, sorted(indices)[:20])) + (" ..." if len(indices) > 20 else "")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m loadgen.run.barrier",
                                description="Wait for every shard of the run; print the common start.")
    p.add_argument("--index", type=int, required=True, help="this shard's index (JOB_COMPLETION_INDEX)")
    p.add_argument("--shards", type=int, required=True, help="N shards")
    p.add_argument("--peers", required=True, help="host:port of shard {i}, e.g. 'easload-r1-{i}.easload-r1:9476'")
    p.add_argument("--listen", default="0.0.0.0:9476", help="where this shard answers (default 0.0.0.0:9476)")
    p.add_argument("--lead", type=float, default=15.0, help="seconds from the last shard up to the start (15)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for every shard (900)")

    def error(message):  # one line, not argparse's usage block
        print("easload barrier: %s (see --help)" % message, file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    p.error = error
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else 0
    problem = None
    if not 1 <= args.shards <= 100_000:
        problem = "--shards must be 1..100000, not %d" % args.shards
    elif not 0 <= args.index < args.shards:
        problem = "--index must be 0..%d, not %d" % (args.shards - 1, args.index)
    elif "{i}" not in args.peers or ":" not in args.peers:
        problem = "--peers must name shard {i}'s host:port, e.g. 'easload-r1-{i}.easload-r1:9476'"
    elif not args.listen.rpartition(":")[2].isdigit():
        problem = "--listen must be host:port, not %r" % args.listen
    elif not (0 <= args.lead <= 3600 and 0 < args.timeout <= 86400):
        problem = "--lead must be 0..3600 and --timeout 1..86400 seconds"
    if problem:
        print("easload barrier: %s" % problem, file=sys.stderr)
        return EXIT_USAGE
    run_id = os.environ.get("EASLOAD_RUN_ID", "").strip() or "-"
    try:
        start = barrier(args.index, args.shards, args.peers, args.listen, run_id, args.lead, args.timeout)
    except BarrierTimeout as exc:
        print("easload barrier: %s" % exc, file=sys.stderr)
        return EXIT_TIMEOUT
    except OSError as exc:  # --listen taken or not an address of this host
        print("easload barrier: cannot listen on %s: %s" % (args.listen, exc.strerror or exc), file=sys.stderr)
        return EXIT_USAGE
    print("%.3f" % start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
