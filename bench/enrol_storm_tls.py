"""An enrolment storm over TLS: devices enrolled per second per client core (a script, not a test).

The real engine: ``python -m loadgen run`` (``--workers``, default 2) with ``--devices`` devices
(10,000) ramped up within ``--ramp`` seconds against ``python -m loadgen target --tls-self-signed``
(``--tls-key-type`` rsa: RSA 2048, as Exchange; or ec) in its own process, the devices trusting
the throwaway CA (``ca_file``: certificates and host names still verified).  Each device enrols as
the provisioning-storm scenario's do: two-step Provision (MS-ASPROV 3.1.5), FolderSync, the first
Sync, then parks in a Ping (heartbeat 600 s); its idle command connection closes after 2 s
(``idle_timeout``) so that neither process passes 20,000 open files.  ``plain`` runs the same
storm over HTTP for comparison.

Measured while the storm runs, every 0.5 s: the target's count of successful FolderSyncs (one per
enrolling device; its admin API, /admin/counters) and the CPU seconds (utime+stime, /proc/PID/stat)
of the run's processes (the run and its workers) and of the target.  The storm's window is from
the first enrolled device to the last: devices enrolled / client CPU seconds in it = devices
enrolled per client core per second -- a figure that holds on a shared machine, where wall time
does not.  The run is then stopped (SIGINT to its PID: its normal shutdown); its summary's
device states and errors are printed too.

A storm faster than the target's handshake capacity collapses over TLS and not over plain HTTP:
a device whose connection and handshake take longer than the transport's connect timeout (15 s)
gives up, backs off and reconnects with a new full handshake, while the target still spends its
CPU on the ClientHellos queued by connections already abandoned.  The per-core figure is only a
client's cost when the target keeps up (few "not ok" rows): pace the storm with ``--ramp``.

    .venv/bin/python bench/enrol_storm_tls.py [--devices 10000] [--ramp 10] [--kinds plain,rsa,ec]
"""

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import target_bench as tb  # noqa: E402
from target_tls_memory import Target  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid):
    """CPU seconds (utime+stime) of ``pid`` and its live descendants."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK
            for tid in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, tid)) as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            pass
    return total


def enrolled(counters):
    return sum(r["count"] for r in counters["requests"]
               if r["command"] == "FolderSync" and r["http_status"] == 200 and r["eas_status"] == 1)


def scenario_text(url, ca, devices, ramp, budget):
    return ("duration = \"%ds\"\nseed = 7\n[target]\nurl = \"%s\"\n%s[auth]\nusers = %d\n"
            "[population]\ndevices = %d\n"
            "[load]\nramp_up = \"%ss\"\nmode = \"ping\"\nheartbeat = \"600s\"\nidle_timeout = \"2s\"\ntimeout = \"60s\"\n"
            % (budget, url, "ca_file = \"%s\"\n" % ca if ca else "", devices, devices, ramp))


def storm(kind, args, workdir):
    target = Target(args.devices, kind, workdir)
    try:
        path = os.path.join(workdir, "storm-%s.toml" % kind)
        with open(path, "w") as f:
            f.write(scenario_text(target.url, target.ca, args.devices, args.ramp, int(args.budget)))
        out = os.path.join(workdir, "out-%s" % kind)
        log = tempfile.TemporaryFile()
        run = subprocess.Popen([sys.executable, "-m", "loadgen", "run", path, "-q", "--yes", "--metrics-listen", "",
                                "--workers", str(args.workers), "--out", out], stdin=subprocess.DEVNULL, stdout=log,
                               stderr=log, env=dict(os.environ, PYTHONPATH=os.path.join(HERE, "..")))
        samples = []  # (wall, enrolled, client CPU, target CPU)
        end = time.monotonic() + args.budget
        loop = asyncio.new_event_loop()
        try:
            while time.monotonic() < end and run.poll() is None:
                n = enrolled(loop.run_until_complete(tb.admin_call(target.admin, target.token, "GET",
                                                                   "/admin/counters")))
                samples.append((time.monotonic(), n, tree_cpu(run.pid), target.cpu()))
                if n >= args.devices:
                    break
                time.sleep(0.5)
        finally:
            loop.close()
            if run.poll() is None:
                run.send_signal(signal.SIGINT)  # this one PID: the run's normal shutdown, summary written
            try:
                run.wait(120)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
        summary = {}
        try:
            with open(os.path.join(out, "summary.json")) as f:
                summary = json.load(f)
        except (OSError, ValueError):
            log.seek(0)
            print("  (no summary: %s)" % log.read().decode(errors="replace")[-600:])
        log.close()
        first = next((s for s in samples if s[1] > 0), None)
        last = samples[-1] if samples else None
        return first, last, samples, summary
    finally:
        target.stop()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--ramp", type=float, default=10.0, help="seconds within which every device starts")
    p.add_argument("--kinds", default="plain,rsa", help="plain, rsa (RSA 2048), ec (ECDSA P-256)")
    p.add_argument("--workers", type=int, default=2, help="the run's worker processes (files: 2 per device)")
    p.add_argument("--budget", type=float, default=240.0, help="seconds allowed per storm")
    args = p.parse_args(argv)
    print("enrolment storm: %d devices within %.0f s, %d client worker processes, one target process; "
          "%d cores, load average %.1f" % (args.devices, args.ramp, args.workers, os.cpu_count(),
                                           os.getloadavg()[0]))
    print("%-6s %9s %8s %10s %12s %14s %12s %10s  %s" % (
        "kind", "enrolled", "window s", "client CPU", "target CPU", "enrol/cli-core-s", "cli ms/enrol", "srv ms/enrol",
        "summary: devices, errors"))
    with tempfile.TemporaryDirectory(prefix="easload-storm-") as workdir:
        for kind in [k for k in args.kinds.split(",") if k]:
            first, last, samples, summary = storm(kind, args, workdir)
            if first is None:
                print("%-6s nothing enrolled" % kind)
                continue
            n = last[1] - first[1]
            wall, cli, srv = last[0] - first[0], last[2] - first[2], last[3] - first[3]
            print("%-6s %9d %8.1f %10.1f %12.1f %14.0f %12.2f %10.2f  %s, %s" % (
                kind, last[1], wall, cli, srv, n / cli if cli else float("nan"), 1000 * cli / max(n, 1),
                1000 * srv / max(n, 1), summary.get("devices"), summary.get("errors")), flush=True)
            odd = sorted((row for row in summary.get("by_key", []) if row[1] != "ok"), key=lambda r: -r[3])[:6]
            if odd:
                print("       not ok: %s" % ", ".join("%s %s %s x%d" % tuple(r) for r in odd))


if __name__ == "__main__":
    main()
