"""Target memory per mailbox with a real history (a script, not a test).

Builds the embedded target's state (loadgen/exchange/state.py) with N users (default 10,000) whose
mailboxes hold ``--days`` days (14) of ``--daily`` messages a day (100) -- generated on demand by the
mail store (loadgen/exchange/store.py) --, then touches every mailbox as a phone would: a device
partnership, an initial Sync of the Inbox (SyncKey 0, then one window of ``--window`` items rendered
and encoded), and every ``--sender-every``-th user sends a message to three others (delivered into
their Inboxes, a copy in Sent Items).  Printed: the process RSS before and after, the RSS per mailbox,
the generated history per mailbox it stands for, the time taken, and whether N mailboxes at this
rate stay under 2 GiB.  In-process, no HTTP: the figure is the store's and the sync state's.

    .venv/bin/python bench/target_mail_memory.py [--users 10000] [--days 14] [--daily 100]
"""

import argparse
import gc
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import _wbxml  # noqa: E402
from loadgen.eas import mail, mime  # noqa: E402
from loadgen.exchange.state import TargetState  # noqa: E402
from loadgen.exchange.store import FOLDERS  # noqa: E402
from loadgen.exchange.sync import SyncResponder  # noqa: E402


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--daily", type=int, default=100)
    p.add_argument("--window", type=int, default=50, help="items of the initial Sync rendered per mailbox")
    p.add_argument("--sender-every", type=int, default=10, help="one user in this many sends a message")
    args = p.parse_args(argv)

    state = TargetState(users=args.users, seed=1, history_days=args.days, daily_messages=args.daily)
    store = state.store
    responder = SyncResponder(FOLDERS)
    first = _wbxml.decode(mail.sync_request([mail.SyncCollection("1", "0")]))
    page = _wbxml.decode(mail.sync_request([mail.SyncCollection("1", "1", window_size=args.window, body_type=1,
                                                                truncation=5120)]))
    users = sorted(state.passwords)
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    rng = random.Random(5)
    rendered = 0
    for i, user in enumerate(users):
        record = state.device(user, "DEV%d" % i, "SmartPhone")
        box = store.mailbox(user)
        responder.respond(record, box, first)
        body, _ = responder.respond(record, box, page)
        rendered += len(body)
        if i % args.sender_every == 0:
            to = ["%s@%s" % (u, state.domain) for u in rng.sample(users, 3)]
            message = mime.build_message(sender=store.address(user), to=to, subject="bench %d" % i,
                                         text=mime.body_text(rng, 2000))
            store.deliver(user, message)
            store.save_sent(user, message)
    elapsed = time.perf_counter() - t0
    gc.collect()
    after = rss_bytes()
    per = (after - before) / len(users)
    history = sum(store.counts(None).values())
    print("mailboxes: %d, history per mailbox: %d items (%d days x %d received/day, sent, calendar, contacts, "
          "tasks)" % (len(users), history, args.days, args.daily))
    print("touched: initial Inbox Sync (%d items rendered each, %.1f MB of WBXML in all), %d messages delivered"
          % (args.window, rendered / 1e6, store.counters["delivered"]))
    print("RSS before %.1f MiB, after %.1f MiB: %.0f bytes per mailbox (device partnership and sync state "
          "included)" % (before / 2**20, after / 2**20, per))
    print("time: %.1f s (%.0f us per mailbox)" % (elapsed, elapsed / len(users) * 1e6))
    total = after
    print("whole process: %.1f MiB for %d mailboxes -> %s 2 GiB" % (
        total / 2**20, len(users), "within" if total < 2 * 2**30 else "OVER"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
