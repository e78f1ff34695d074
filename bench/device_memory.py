"""Client memory per device with and without mail ([mail]), against the embedded target in another process.

    python bench/device_memory.py [--devices 20000] [--seconds 60] [--ramp 20] [--send-per-hour 30]

One ``easload target`` process serves the users; for each mode (``off``: no [mail], the devices
enrol, sync the Inbox and hold Pings; ``mail``: the same users mailing each other, reading,
filing, searching) a fresh client process runs the devices through enrolment and some mail with
easload's engine (lean transport, Pings parked) and reports its RSS before the devices existed
and at the end of the run (every device holding a Ping), and the sizes of one device's mail state
(MailBox, its collections, windows and queues).  The difference divided by the devices is the
client's memory per device; kernel socket buffers are not in RSS.  Prints figures; asserts nothing.
One process may hold about 20,000 open files here: keep --devices <= ~18,000 per mode's process
or raise the limit.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

SCENARIO = """
name = "device-memory-{mode}"
duration = {seconds}
seed = 3
[target]
url = "{url}"
[auth]
users = {devices}
[population]
devices = {devices}
devices_per_user = 1
versions = {{ "14.1" = 1 }}
[load]
ramp_up = {ramp}
mode = "ping"
heartbeat = 300
timeout = 60
graceful_stop = 0
window_size = 50
{mail}
"""
MAIL = """[mail]
send_per_hour = {rate}
searches_per_hour = 2
read_after = 5
push_folders = ["inbox", "calendar", "contacts"]
"""


def _deep_size(obj, seen=None):
    """Bytes of ``obj`` and what it holds (lists, dicts, tuples, slots), each object once."""
    seen = set() if seen is None else seen
    if id(obj) in seen or obj is None or isinstance(obj, (bool, int, float)) and -5 <= obj <= 256:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        size += sum(_deep_size(v, seen) for v in obj)
    else:
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name) and name != "__dict__":
                    size += _deep_size(getattr(obj, name), seen)
    return size


def child(mode, url, devices, seconds, ramp, rate):
    from _responders import raise_nofile
    from loadgen import scenario
    from loadgen.run import engine
    from loadgen.wire.loop import loop_factory

    raise_nofile()
    text = SCENARIO.format(mode=mode, seconds=seconds, url=url, devices=devices, ramp=ramp,
                           mail=MAIL.format(rate=rate) if mode == "mail" else "")
    sc = scenario.parse(text, "device-memory.toml")
    loop = loop_factory()()
    result = loop.run_until_complete(engine.run(sc, progress=False))
    stats = result.stats
    boxes = [d.box for d in result.devices if getattr(d, "box", None) is not None]
    shared = set()
    for box in boxes[:1]:  # the shared hierarchy is counted once for all devices: not per device
        _deep_size(box.hierarchy, shared)
    box_bytes = [_deep_size(box, set(shared)) for box in boxes[:200]]
    print(json.dumps({
        "mode": mode, "devices": devices, "requests": stats.total, "errors": stats.errors(),
        "rss_base": stats.rss_base, "rss_end": stats.rss_end, "rss_peak": stats.rss_peak,
        "states": dict(stats.final_states),
        "mail": {k: v for k, v in stats.mail_events.items() if v},
        "box_bytes_mean": sum(box_bytes) / len(box_bytes) if box_bytes else 0,
        "box_bytes_max": max(box_bytes) if box_bytes else 0,
    }))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--ramp", type=float, default=20.0)
    ap.add_argument("--send-per-hour", type=float, default=30.0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.url, args.devices, args.seconds, args.ramp, args.send_per_hour)
        return
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(HERE))
    target = subprocess.Popen([sys.executable, "-m", "loadgen", "target", "--listen", "127.0.0.1:%d" % port,
                               "--users", str(args.devices), "--ping-min", "5", "--admin-listen", "",
                               "--max-concurrency", "100", "--command-rate", "100"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if target.poll() is not None:
                    sys.exit("the target did not start: %s" % target.stderr.read().decode(errors="replace")[-500:])
                time.sleep(0.2)
        url = "http://127.0.0.1:%d/Microsoft-Server-ActiveSync" % port
        figures = {}
        for mode in ("off", "mail"):
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--url", url, "--devices",
                                  str(args.devices), "--seconds", str(args.seconds), "--ramp", str(args.ramp),
                                  "--send-per-hour", str(args.send_per_hour)],
                                 env=env, capture_output=True, text=True, timeout=args.seconds * 4 + 300)
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            if not lines:
                sys.exit("client %s failed: %s" % (mode, out.stderr[-2000:]))
            figures[mode] = json.loads(lines[-1])
    finally:
        target.terminate()
        try:
            target.wait(10)
        except subprocess.TimeoutExpired:
            target.kill()
    print("devices: %d, %g s, lean transport, Pings parked, one easload target process" % (args.devices,
                                                                                           args.seconds))
    print("%-5s %9s %7s %12s %12s %14s  %s" % ("mode", "requests", "errors", "RSS base MiB", "RSS end MiB",
                                               "bytes/device", "mail state/device (mean, max)"))
    for mode, f in figures.items():
        per = (f["rss_end"] - f["rss_base"]) / f["devices"]
        print("%-5s %9d %7d %12.1f %12.1f %14.0f  %s" % (
            mode, f["requests"], f["errors"], f["rss_base"] / 2**20, f["rss_end"] / 2**20, per,
            "%.0f, %d B" % (f["box_bytes_mean"], f["box_bytes_max"]) if f["box_bytes_mean"] else "-"))
    off, on = figures["off"], figures["mail"]
    print("with mail - without: %.0f bytes per device" % (
        (on["rss_end"] - on["rss_base"] - off["rss_end"] + off["rss_base"]) / args.devices))
    print("states:", {m: f["states"] for m, f in figures.items()})
    print("mail events:", figures["mail"]["mail"])


if __name__ == "__main__":
    main()
