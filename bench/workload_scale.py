"""Client memory and CPU per device on a [workload] profile, against the embedded target in other processes.

    python bench/workload_scale.py --devices 10000 --workers 2 --targets 2
    python bench/workload_scale.py --devices 50000 --workers 6 --targets 6 --ramp 1800
    python bench/workload_scale.py --devices 2000 --trace      # where the bytes go (tracemalloc, worker 0)
    python bench/workload_scale.py --devices 10000 --workers 2 --targets 2 --ramp 250 --tls   # over TLS

The devices: the average profile (``[workload] profiles = {average = 1}``; loadgen/device/user.py
NAMED_PROFILES, Microsoft's "100 profile": 80 messages received and 20 sent a day), the client mix of
scenarios/working-day.toml (iOS, Android, Outlook mobile: each pushes its folders and keeps their
sync state, loadgen/device/clients.py), plain HTTP, the lean transport.

The target: ``easload target --processes P`` (users sharded over the processes, process k on
127.0.0.(2+k): one loopback destination has ~28,000 ephemeral ports) and a deliverer process that
hands the plan's external mail to the target's admin API at the planned times (loadgen/run/day.py
deliver_external), so a device receives what its profile receives.

The clients: W worker processes (at most ~9,000 devices each: a device may hold two connections,
one process may hold 20,000 open files here), each running easload's engine on its shard.  The run
is a ramp (every device enrols: Provision, FolderSync, the first Sync of every pushed folder, Ping),
a settle, then the day window.  Each worker reads its RSS (/proc) and its CPU (user + sys,
getrusage) before its devices exist, at the start of the window and at its end:

* RSS per device = (RSS at the window's end - RSS before the devices) / devices;
* CPU per device-hour = CPU in the window / (devices x simulated hours in the window), the
  simulated day running ``--speed`` times faster than the clock (a flat curve: the day's mean rate);
* CPU per request = CPU in the window / requests answered in the window;
* cores for 100,000 phones = CPU per device-hour x 100,000 / 3600 (at the profile's mean rate;
  the peak two hours at 1.8x, docs/protocol-notes.md section 17).

Kernel socket buffers are not in RSS.  Prints a table; asserts nothing.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import shutil
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "bench"))

SCENARIO = """
name = "workload-scale"
duration = {duration}
seed = 20
[target]
url = "http://127.0.0.2:9/Microsoft-Server-ActiveSync"
{ca_line}
[auth]
users = {devices}
[population]
devices = {devices}
devices_per_user = 1
versions = {{ "14.1" = 6, "16.1" = 3, "14.0" = 1 }}
[load]
ramp_up = {ramp}
mode = "ping"
heartbeat = "15m"
timeout = "60s"
graceful_stop = 0
idle_timeout = {idle}
[mail]
cc_share = 0.3
bcc_share = 0.05
[workload]
profiles = {{ average = 1 }}
clients = {{ ios = 0.4, android = 0.4, outlook-cloud = 0.2 }}
day_length = "8h"
start_hour = 8
curve = "flat"
replay_length = {replayed}
backlog_limit = 1000
"""


def _cpu():
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _scenario(cfg):
    from loadgen import scenario

    duration = cfg["ramp"] + cfg["settle"] + cfg["window"] + 2
    text = SCENARIO.format(duration=duration, devices=cfg["devices"], ramp=cfg["ramp"], idle=cfg["idle"],
                           replayed=duration * cfg["speed"],
                           ca_line='ca_file = "%s"' % cfg["ca_file"] if cfg.get("ca_file") else "")
    return scenario.parse(text, "workload-scale.toml")


def sizes(device):
    """Bytes of one device's own objects by part (each object counted once; the shared hierarchy,
    profile, client type, run context and codec tables are not the device's)."""
    from device_memory import _deep_size

    seen = set()
    shared = [device.load, device.stats, device.profile, getattr(device, "_client", None), device.rng, device.version,
              device.prov.policy, device.prov.applied]  # the policy's parse is shared by the devices that got it
    box = device.box
    if box is not None:
        shared.append(box.hierarchy)
        shared.append(box.pushed)
    for obj in shared:
        _deep_size(obj, seen)
    out = {"Device (slots)": sys.getsizeof(device)}
    dict_ = getattr(device, "__dict__", None)
    out["Device __dict__ (attributes not in slots)"] = _deep_size(dict_, seen) if dict_ else 0
    if dict_:
        out["  names in __dict__"] = ",".join(sorted(dict_))
    for name in ("ident", "prov", "password", "prefs", "fetches", "task_plan", "trusted"):
        obj = getattr(device, name, None)
        out[name] = _deep_size(obj, set(seen))  # each part against the shared objects only
    ep = device.endpoint  # its own objects only: its connections lead to the shared transport and loop
    out["endpoint (+ its request prefix and Authorization)"] = (sys.getsizeof(ep) + sys.getsizeof(ep._prefix)
                                                                + sys.getsizeof(ep._auth))
    out["open connections (objects not sized: see bench/scale_run.py --breakdown)"] = sum(
        c is not None and not c.closed for c in (ep.conn, ep.ping_conn))
    seen.add(id(ep))
    if box is not None:
        out["box (MailBox)"] = sys.getsizeof(box)
        colls = box.colls
        out["box.colls dict"] = sys.getsizeof(colls)
        out["box collections (%d)" % len(colls)] = sum(sys.getsizeof(c) for c in colls.values())
        out["box windows (%d entries)" % sum(len(c.window) for c in colls.values())] = sum(
            _deep_size(c.window, seen) for c in colls.values())
        out["box queues, moves, meetings"] = (sum(_deep_size(c.queue, seen) for c in colls.values())
                                             + _deep_size(box.moves, seen) + _deep_size(box.meetings, seen))
        out["box other (keys, address)"] = sum(_deep_size(c.key, seen) + _deep_size(c.fid, seen)
                                               for c in colls.values()) + _deep_size(box.address, seen)
    slots = {}
    for cls in type(device).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name != "__dict__" and name not in out and hasattr(device, name):
                v = getattr(device, name)
                if id(v) not in seen:
                    slots[name] = _deep_size(v, seen)
    out["other slot values"] = sum(slots.values())
    out["  largest other slots"] = ", ".join("%s %d" % kv for kv in sorted(slots.items(), key=lambda kv: -kv[1])[:6])
    return out


def child(cfg):
    import asyncio
    import gc

    from _responders import raise_nofile
    from loadgen.run import engine
    from loadgen.wire.loop import loop_factory

    raise_nofile()
    sc = _scenario(cfg)
    trace = cfg.get("trace")
    if trace:
        import tracemalloc

        tracemalloc.start(1)
        base = tracemalloc.take_snapshot()
    gc.collect()
    report = {"index": cfg["index"], "rss_before": _rss(), "cpu_before": _cpu()}
    mark_at = cfg["ramp"] + cfg["settle"]
    end_at = mark_at + cfg["window"]

    def point(stats, devs, full):
        p = {"rss": _rss(), "cpu": _cpu(), "requests": stats.total, "errors": stats.errors(),
             "t": time.time() - stats.started}
        if full:
            p["holding"] = sum(1 for d in devs if d.in_flight == "Ping")
            p["primed"] = sum(1 for d in devs if d.box is not None and d.box.colls
                              and all(c.primed for c in d.box.colls.values()))
        return p

    def on_tick(stats, devs, final):
        if final or "end" in report:
            return
        t = time.time() - stats.started
        if "mark" not in report:
            if t >= mark_at:
                report["mark"] = point(stats, devs, True)
            return
        if t >= end_at:
            report["end"] = point(stats, devs, True)
            report["states"] = dict(__import__("collections").Counter(d.state for d in devs))
            report["waiting"] = dict(__import__("collections").Counter(
                "%s/%s/%s/%s" % (d.state, d.in_flight, getattr(d._client, "name", None), d.version.text)
                for d in devs).most_common(12))
            report["commands"] = sorted(("%s %s %s" % k, n) for k, n in stats.by_key.items())
            if cfg["index"] == 0:
                holder = next((d for d in devs if d.box is not None and d.box.colls), devs[0])
                report["sizes"] = sizes(holder)
            if trace:
                snap = tracemalloc.take_snapshot()
                diff = snap.compare_to(base, "lineno")
                n = len(devs)
                report["traced_total"] = sum(st.size_diff for st in diff) / n
                report["traced"] = [("%s:%d" % ("/".join(Path(st.traceback[0].filename).parts[-2:]),
                                               st.traceback[0].lineno), st.size_diff / n, st.count_diff)
                                    for st in diff[:30]]

    loop = loop_factory()()
    result = loop.run_until_complete(engine.run(sc, target_url=cfg["urls"], shard=(cfg["index"], cfg["workers"]),
                                                progress=False, on_tick=on_tick, attach_metrics=False))
    report["devices"] = len(result.devices)
    report["rss_base"] = result.stats.rss_base
    print(json.dumps(report), flush=True)


def deliverer(cfg):
    """The plan's external mail, POSTed to the target's admin API at the planned times."""
    import asyncio

    import aiohttp

    from loadgen.run.context import RunLoad
    from loadgen.run.day import deliver_external

    sc = _scenario(cfg)
    planner = RunLoad.for_run(sc).workload
    headers = {"Authorization": "Bearer " + cfg["token"]}
    url = cfg["admin"] + "/admin/mail"
    counts = {"ok": 0, "failed": 0}

    async def main():
        async with aiohttp.ClientSession(headers=headers) as session:
            sem = asyncio.Semaphore(32)

            async def post(name):
                async with sem:
                    try:
                        async with session.post(url, json={"user": name}) as r:
                            counts["ok" if r.status == 200 else "failed"] += 1
                    except aiohttp.ClientError:
                        counts["failed"] += 1

            pending = set()

            def deliver(name):  # never blocks the schedule: the POSTs run beside it
                t = asyncio.ensure_future(post(name))
                pending.add(t)
                t.add_done_callback(pending.discard)

            loop = asyncio.get_running_loop()
            t0 = loop.time() + cfg["start_in"]
            await asyncio.sleep(cfg["start_in"])
            await deliver_external(planner, deliver, lambda u: sc.auth.user.format(n=u), t0, t0 + sc.duration)
            counts["unsent_at_end"] = len(pending)  # a target behind: what it had not taken is dropped
            for t in list(pending):
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    asyncio.run(main())
    print(json.dumps(counts), flush=True)


def _tail(path, size=3000):
    with open(path, "rb") as f:
        text = f.read().decode(errors="replace")
    return text if size is None else text[-size:]


def _spawn(argv, env, folder, name, stdout=True):
    """A child process, its output in files (a pipe nobody reads while it runs fills and stops the child) of ``folder`` (``args_out``, ``args_err``: their paths)."""
    out, err = os.path.join(folder, name + ".out"), os.path.join(folder, name + ".err")
    with open(out, "wb") as o, open(err, "wb") as e:
        p = subprocess.Popen(argv, env=env, stdout=o if stdout else subprocess.DEVNULL, stderr=e)
    p.args_out, p.args_err = out, err
    return p


def _free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_listening(host, port, proc, what):
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), 0.5).close()
            return
        except OSError:
            if proc.poll() is not None:
                sys.exit("%s did not start: %s" % (what, _tail(proc.args_err)))
            time.sleep(0.3)
    sys.exit("%s did not start within 300 s" % what)


def run_size(args, devices):
    env = dict(os.environ, PYTHONPATH=str(HERE))
    port = _free_port("127.0.0.2")
    admin_port = _free_port("127.0.0.1")
    token_dir = tempfile.mkdtemp(prefix="workload-scale-")
    token_file = os.path.join(token_dir, "token")
    token = os.urandom(12).hex()
    with open(token_file, "w") as f:
        f.write(token)
    tls, scheme, ca_file, pki = [], "http", None, None
    if args.tls:  # the target over HTTPS with a throwaway CA for its addresses; the devices verify it
        from loadgen.exchange.tls import TemporaryPKI

        pki = TemporaryPKI(["127.0.0.%d" % (2 + k) for k in range(args.targets)], key_type=args.key_type)
        tls, scheme, ca_file = ["--tls-cert", pki.pki.cert, "--tls-key", pki.pki.key], "https", pki.pki.ca
    target = _spawn([sys.executable, "-m", "loadgen", "target", "--processes", str(args.targets),
                     "--listen", "127.0.0.2:%d" % port, "--users", str(devices), "--ping-min", "60",
                     "--admin-listen", "127.0.0.1:%d" % admin_port, "--admin-token-file", token_file,
                     "--max-concurrency", "100", "--command-rate", "100", *tls], env, token_dir, "target",
                    stdout=False)
    procs = []
    deliver = None
    try:
        for k in range(args.targets):
            _wait_listening("127.0.0.%d" % (2 + k), port, target, "the target")
        _wait_listening("127.0.0.1", admin_port, target, "the target's admin API")
        urls = ["%s://127.0.0.%d:%d/Microsoft-Server-ActiveSync" % (scheme, 2 + k, port) for k in range(args.targets)]
        base = dict(devices=devices, ramp=args.ramp, settle=args.settle, window=args.window, speed=args.speed,
                    idle=args.idle, urls=urls, workers=args.workers, ca_file=ca_file)
        started = time.time()
        for i in range(args.workers):
            cfg = dict(base, index=i, trace=args.trace and i == 0)
            procs.append(_spawn([sys.executable, __file__, "--child", json.dumps(cfg)], env, token_dir, "client%d" % i))
        # the workers build their populations first (a few seconds): the deliverer's clock starts
        # about when theirs do; a message early or late by a second changes nothing measured
        dcfg = dict(base, admin="http://127.0.0.1:%d" % admin_port, token=token, start_in=3.0)
        if not args.no_external:
            deliver = _spawn([sys.executable, __file__, "--deliver", json.dumps(dcfg)], env, token_dir, "deliver")
        timeout = args.ramp + args.settle + args.window + 600
        reports = []
        for p in procs:
            p.wait(timeout=timeout)
            out, err = _tail(p.args_out, None), _tail(p.args_err)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if not lines:
                sys.exit("client worker failed: %s" % err)
            reports.append(json.loads(lines[-1]))
        delivered = None
        if deliver is not None:
            try:
                deliver.wait(timeout=60)
            except subprocess.TimeoutExpired:
                deliver.kill()
                deliver.wait()
            out, err = _tail(deliver.args_out, None), _tail(deliver.args_err)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            delivered = json.loads(lines[-1]) if lines else {"error": err}
        wall = time.time() - started
    finally:
        for p in procs + ([deliver] if deliver is not None else []):
            if p.poll() is None:
                p.kill()
        target.terminate()
        try:
            target.wait(15)
        except subprocess.TimeoutExpired:
            target.kill()
        shutil.rmtree(token_dir, ignore_errors=True)
        if pki is not None:
            pki.cleanup()
    return reports, delivered, wall


def summarise(args, devices, reports, delivered, wall):
    incomplete = [r["index"] for r in reports if "mark" not in r or "end" not in r]
    if incomplete:
        return {"devices": devices, "incomplete": incomplete}
    n = sum(r["devices"] for r in reports)
    rss_dev = sum(r["end"]["rss"] - r["rss_before"] for r in reports) / n
    rss_mark = sum(r["mark"]["rss"] - r["rss_before"] for r in reports) / n
    cpu_enrol = sum(r["mark"]["cpu"] - r["cpu_before"] for r in reports)
    cpu = sum(r["end"]["cpu"] - r["mark"]["cpu"] for r in reports)
    requests = sum(r["end"]["requests"] - r["mark"]["requests"] for r in reports)
    seconds = sum(r["end"]["t"] - r["mark"]["t"] for r in reports) / len(reports)
    device_hours = n * seconds * args.speed / 3600.0
    per_dh = cpu / device_hours
    return {
        "devices": n, "workers": len(reports), "wall": wall, "rss_dev": rss_dev, "rss_mark": rss_mark,
        "rss_total": sum(r["end"]["rss"] for r in reports), "cpu_enrol": cpu_enrol,
        "cpu": cpu, "requests": requests, "device_hours": device_hours, "cpu_dh": per_dh,
        "cpu_req": cpu / requests if requests else 0.0, "req_dh": requests / device_hours,
        "cores_100k": per_dh * 100_000 / 3600.0,
        "holding": sum(r["end"]["holding"] for r in reports), "primed": sum(r["end"]["primed"] for r in reports),
        "errors": sum(r["end"]["errors"] for r in reports), "waiting": reports[0].get("waiting"),
        "commands": reports[0].get("commands"),
        "states": {k: sum(r["states"].get(k, 0) for r in reports) for r in reports for k in r["states"]},
        "delivered": delivered, "sizes": reports[0].get("sizes"), "traced": reports[0].get("traced"),
        "traced_total": reports[0].get("traced_total"),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, nargs="+", default=[10000])
    ap.add_argument("--workers", type=int, default=None, help="client worker processes (default: 1 per 8,500 devices)")
    ap.add_argument("--targets", type=int, default=None, help="target processes (default: 1 per 10,000 devices)")
    ap.add_argument("--ramp", type=float, default=None,
                    help="seconds over which the devices start (default: 30 a second: the target generates each "
                         "mailbox and renders its first Sync; faster, its queue outgrows the 60 s timeout)")
    ap.add_argument("--settle", type=float, default=30.0, help="seconds after the ramp before the window")
    ap.add_argument("--window", type=float, default=60.0, help="seconds of the measured day window")
    ap.add_argument("--speed", type=float, default=1.0,
                    help="simulated seconds of the day per second of the run (the day's traffic runs during the "
                         "ramp too: keep devices x 22 requests/h x speed well within the target's capacity)")
    ap.add_argument("--idle", type=float, default=110.0, help="idle timeout of the ordinary connection (s)")
    ap.add_argument("--no-external", action="store_true", help="no external mail (only the users' own)")
    ap.add_argument("--tls", action="store_true", help="the target over HTTPS (TLS 1.3, resumption on; a throwaway "
                    "CA the devices verify): the workload's memory and CPU over TLS")
    ap.add_argument("--key-type", choices=("rsa", "ec"), default="rsa", help="with --tls: the certificate's key")
    ap.add_argument("--trace", action="store_true", help="tracemalloc in worker 0: the top allocation sites")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--deliver", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    if args.deliver:
        deliverer(json.loads(args.deliver))
        return
    rows = []
    for devices in args.devices:
        a = argparse.Namespace(**vars(args))
        a.workers = args.workers or max(1, -(-devices // 8500))
        a.targets = args.targets or max(1, -(-devices // 10000))
        a.ramp = args.ramp or max(10.0, devices / 30.0)
        if -(-devices // a.workers) > 9000:
            sys.exit("workload_scale: at most 9,000 devices per worker (two connections each, 20,000 files)")
        if a.speed * (a.ramp + a.settle + a.window + 2) > 28800:
            sys.exit("workload_scale: --speed x the run's length must fit the 8-hour day")
        reports, delivered, wall = run_size(a, devices)
        s = summarise(a, devices, reports, delivered, wall)
        s.update(targets=a.targets, ramp=a.ramp, speed=a.speed, window=a.window)
        rows.append(s)
        print(json.dumps({k: v for k, v in s.items() if k not in ("sizes", "traced")}), file=sys.stderr, flush=True)
    print("average profile, client mix ios 0.4 / android 0.4 / outlook-cloud 0.2, %s, lean transport;"
          % ("HTTPS (TLS 1.3, %s certificate, resumption on)" % args.key_type.upper() if args.tls else "plain HTTP"))
    print("window: after the ramp and settle; the day at --speed x; CPU = user + sys of the client workers")
    print("%8s %4s %4s %7s %6s %11s %11s %10s %9s %8s %10s %9s %10s %9s" % (
        "devices", "wrk", "tgt", "ramp s", "speed", "RSS B/dev", "(at mark)", "enrol CPU", "window s",
        "requests", "req/dev-h", "CPU us/req", "CPU ms/dev-h", "cores/100k"))
    for s in rows:
        if "incomplete" in s:
            print("%8d  incomplete: workers %s never reached the window" % (s["devices"], s["incomplete"]))
            continue
        print("%8d %4d %4d %7.0f %6.1f %11.0f %11.0f %9.1fs %9.0f %8d %10.1f %9.0f %10.1f %9.2f" % (
            s["devices"], s["workers"], s["targets"], s["ramp"], s["speed"], s["rss_dev"], s["rss_mark"],
            s["cpu_enrol"], s["window"], s["requests"], s["req_dh"], s["cpu_req"] * 1e6, s["cpu_dh"] * 1e3,
            s["cores_100k"]))
    for s in rows:
        if "incomplete" in s:
            continue
        print("%d devices: %d holding a Ping at the end, %d with every collection primed, %d failed requests; "
              "states %s; external mail %s; %.0f s" % (s["devices"], s["holding"], s["primed"], s["errors"],
                                                       s["states"], s["delivered"], s["wall"]))
        if s.get("sizes"):
            print("  one device's objects (worker 0, bytes):")
            for k, v in s["sizes"].items():
                print("    %-50s %s" % (k, v))
        if s.get("traced"):
            print("  tracemalloc, worker 0: %.0f B/device traced in all; top sites (B/device, blocks):"
                  % s["traced_total"])
            for site, per, count in s["traced"]:
                print("    %-45s %8.1f %9d" % (site, per, count))


if __name__ == "__main__":
    main()
