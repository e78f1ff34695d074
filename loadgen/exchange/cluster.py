"""A multi-process embedded target: users sharded over processes, admin actions broadcast.

One process of the embedded target holds about 17,000 Pings before it meets
the open-file limit of this machine (20,000 per process), and one loopback
destination ``ip:port`` gives a client only ~28,000 ephemeral ports.  A cluster
spreads the target over N processes, each on its own address:

* **Users are sharded, not connections.**  Process ``k`` owns the users whose
  index (their position in the user list: ``n`` of the ``user{n}`` pattern, the
  row of the CSV file) is ``k`` modulo N, and only them: its mailbox list holds
  its own users, so a request that reaches the wrong process is refused (401)
  instead of silently creating a second partnership.  Every piece of state that
  Exchange keeps per device or per mailbox (partnerships, policy keys issued,
  wipe state, folder and sync keys, the Inbox, throttling budgets, the
  partnership limit) therefore lives in exactly one process, and the clients
  send each device to the process of its user (``engine.build_population``
  takes the list of URLs: device of user ``n`` -> ``urls[n % N]``).
  SO_REUSEPORT over one port would let the kernel spread one device's requests
  over processes with different state: it is not used.
* **Organisation-wide state is broadcast.**  The policy (one policy key for all
  processes, decided by the parent: a key generated in each process would
  differ), the Allow/Block/Quarantine configuration, faults, throttling limits.
  Actions that pick at random (wipe a fraction of devices, mail for a fraction
  of users) are decided by the parent over the whole population with the same
  algorithm as :class:`~loadgen.exchange.state.TargetState` (sorted devices or
  users, ``random.Random(seed).sample``), then sent to the owners: the same
  seed wipes the same devices whatever N.
* **One admin API and one /metrics for the cluster**, served by the parent:
  device lists concatenated, counters added, and the Prometheus expositions of
  the processes summed sample by sample (metrics.merge_expositions) so that the
  series and totals read exactly as a single target's -- dashboards and
  ``sum(rate(...))`` queries do not change with N, and a per-process view is
  kept for the one figure where balance matters
  (``easload_target_process_held_pings{process}``).

The child processes are started with the ``spawn`` method (no fork of a running
event loop), raise their soft open-file limit to the hard one, run uvloop when
available, stop on SIGTERM (held Pings answered, as a single target does at
shutdown) and stop by themselves when their parent is gone.
"""

import asyncio
import base64
import ipaddress
import logging
import multiprocessing
import os
import random
import secrets
import signal

from loadgen.wire.loop import install_stop_signals

log = logging.getLogger("easload.target.cluster")

# TargetState options a cluster passes to its processes (the same for every process).
STATE_OPTIONS = ("users", "user_pattern", "password_pattern", "users_csv", "policy", "no_policy",
                 "allow_non_provisionable", "refresh_interval_min", "seed", "domain", "max_devices", "inbox_items",
                 "history_days", "daily_messages",
                 "ping_min", "ping_max", "ping_max_folders", "abq_default", "abq_rules", "max_concurrency",
                 "command_rate", "command_burst", "opaque_keys", "eas_path", "ignore_policy_key",
                 "options_without_provision", "auth_realm", "challenge_first", "autodiscover_redirect",
                 "token_secret", "token_lifetime")


def listen_addresses(listens, processes):
    """(host, port) of each of ``processes`` processes from the ``--listen`` values.

    As many values as processes: one each.  One value ``HOST:PORT``: process k
    listens on HOST+k (same port) when HOST is an IPv4 loopback address (127/8:
    several loopback addresses, so a client gets ~28,000 ephemeral ports towards
    each), otherwise on PORT+k (or a free port each when PORT is 0).
    """
    if processes < 1:
        raise ValueError("processes must be at least 1, not %d" % processes)
    parsed = []
    for value in listens:
        host, sep, port = str(value).rpartition(":")
        if not sep:
            host, port = str(value), "0"
        try:
            parsed.append((host.strip("[]") or "127.0.0.1", int(port)))
        except ValueError:
            raise ValueError("listen address must be HOST:PORT, not %r" % (value,)) from None
    if len(parsed) == processes:
        return parsed
    if len(parsed) != 1:
        raise ValueError("%d listen addresses for %d processes: give one (HOST:PORT, process k takes HOST+k) "
                         "or one per process" % (len(parsed), processes))
    host, port = parsed[0]
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        ip = None
    if ip is not None and ip.is_loopback:
        last = ip + (processes - 1)
        if not last.is_loopback:
            raise ValueError("%s + %d processes leaves 127.0.0.0/8" % (host, processes))
        return [(str(ip + k), port) for k in range(processes)]
    return [(host, port + k if port else 0) for k in range(processes)]


def owner_index(users):
    """{user name: process-independent index} for a list of users in their defined order."""
    return {user: i for i, user in enumerate(users)}


def pick_fraction(items, fraction, seed):
    """The choice TargetState.wipe_fraction / deliver_mail_fraction make: sorted items,
    ``round(len * fraction)`` of them sampled with ``random.Random(seed)``."""
    items = sorted(items)
    n = round(len(items) * float(fraction))
    return random.Random(seed).sample(items, n) if n else []


# --------------------------------------------------------------------------- child process


def _child_main(conn, index, count, options, host, port, admin_token, mail_per_user_per_hour, server_options):
    from loadgen.wire.loop import loop_factory, raise_file_limit

    # Ctrl-C reaches the whole process group: the parent decides when its processes stop (SIGTERM), so
    # that a run's graceful stop still has a target to talk to
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_file_limit()
    logging.getLogger("aiohttp.access").disabled = True
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(_child(conn, index, count, options, host, port, admin_token, mail_per_user_per_hour,
                              server_options))
    except KeyboardInterrupt:
        pass
    except BaseException as exc:  # tell the parent; never hang it
        try:
            conn.send(("error", "%s: %s" % (type(exc).__name__, exc)))
        except (OSError, ValueError):
            pass


def shard_state(options, index, count):
    """The TargetState of process ``index`` of ``count``: only its own users."""
    from loadgen.exchange.state import TargetState

    kw = {k: v for k, v in options.items() if k in STATE_OPTIONS}
    policy_key = options.get("policy_key")
    state = TargetState(**kw)
    state.passwords = {u: p for i, (u, p) in enumerate(state.passwords.items()) if i % count == index}
    if policy_key is not None:
        state.policy_key = policy_key
    return state


async def _child(conn, index, count, options, host, port, admin_token, mail_per_user_per_hour, server_options):
    from loadgen.exchange.admin import start_admin
    from loadgen.exchange.server import start_target

    state = shard_state(options, index, count)
    if count > 1:  # mail for a user of another process goes through the parent (TargetCluster._relay)
        state.store.relay = lambda mime, addresses: _send_relay(conn, mime, addresses)
    parent = os.getppid()
    runner, target, url = await start_target(host, port, state, **server_options)
    admin_runner, admin_url, _ = await start_admin("127.0.0.1", 0, target, admin_token)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    conn.send(("ready", url, admin_url, os.getpid()))
    mail = None
    if mail_per_user_per_hour > 0:
        from loadgen.exchange.launch import mail_at_rate

        # each process draws its own arrivals, seeded by the scenario's seed and its index
        rng = random.Random(((options.get("seed") or 0) ^ 0x3A11) * 1000003 + index)
        mail = asyncio.create_task(mail_at_rate(state, mail_per_user_per_hour, rng))
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                if os.getppid() != parent:  # the parent is gone: do not linger
                    break
    finally:
        if mail is not None:
            mail.cancel()
        await admin_runner.cleanup()
        await runner.cleanup()  # held Pings are answered (Target._on_shutdown)


def _send_relay(conn, mime, addresses):
    try:
        conn.send(("relay", bytes(mime), list(addresses)))
    except (OSError, ValueError):  # the parent is gone: the process stops by itself soon
        log.warning("could not relay a message to the parent")


# --------------------------------------------------------------------------- parent


class ClusterError(OSError):
    """A target process could not start or answer (an OSError, like a bind failure of one target)."""


class TargetCluster:
    """N target processes, their users sharded by index modulo N; the admin side in this process.

    ``await start()`` -> ``urls`` (index k: the process that owns users with index
    ≡ k mod N).  The admin actions are coroutines mirroring TargetState's and
    Target's; :meth:`serve_admin` puts the admin API of the whole cluster on HTTP.
    """

    keep_final = False  # take a last snapshot (devices, counters, metrics) in cleanup(); tests set it

    def __init__(self, processes, listen=("127.0.0.1:0",), mail_per_user_per_hour=0.0, start_timeout=60.0,
                 server_options=None, **options):
        from loadgen.exchange.state import TargetState

        unknown = set(options) - set(STATE_OPTIONS)
        if unknown:
            raise TypeError("unknown target option(s): %s" % ", ".join(sorted(unknown)))
        self.processes = int(processes)
        self.addresses = listen_addresses(listen, self.processes)
        self.options = dict(options)
        self.mail_per_user_per_hour = float(mail_per_user_per_hour)
        # keyword arguments of server.start_target in every process (the server's modes); picklable values
        self.server_options = dict(server_options or {})
        self.start_timeout = start_timeout
        # The canonical organisation-wide state: user list, policy, policy key, ABQ configuration.
        self.state = TargetState(**options)
        self._index = owner_index(self.state.passwords)
        self.token = secrets.token_urlsafe(24)  # the processes' admin APIs; never logged
        self.urls = []
        self.admin_urls = []
        self.pids = []
        self._procs = []
        self._pipes = []
        self._relays = set()
        self._session = None
        self.final = None

    # -- lifecycle

    async def start(self):
        ctx = multiprocessing.get_context("spawn")
        # one policy key and one Bearer token secret for every process (bearer.py: a token minted for
        # the run is valid on the process of its user)
        options = dict(self.options, policy_key=self.state.policy_key, token_secret=self.state.token_secret)
        pipes = []
        for k, (host, port) in enumerate(self.addresses):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=_child_main, name="easload-target-%d" % k, daemon=True,
                               args=(child_end, k, self.processes, options, host, port, self.token,
                                     self.mail_per_user_per_hour, self.server_options))
            proc.start()
            child_end.close()
            self._procs.append(proc)
            pipes.append(parent_end)
        loop = asyncio.get_running_loop()
        try:
            for k, pipe in enumerate(pipes):
                ready = await loop.run_in_executor(None, pipe.poll, self.start_timeout)
                if not ready:
                    raise ClusterError("target process %d did not start within %.0f s" % (k, self.start_timeout))
                try:
                    msg = pipe.recv()
                except EOFError:
                    raise ClusterError("target process %d ended while starting" % k) from None
                if msg[0] != "ready":
                    raise ClusterError("target process %d on %s:%d: %s" % (k, *self.addresses[k], msg[1]))
                self.urls.append(msg[1])
                self.admin_urls.append(msg[2])
                self.pids.append(msg[3])
        except BaseException:
            await self._stop_processes()
            for pipe in pipes:
                pipe.close()
            raise
        # the pipes stay open: a process relays mail for users of other processes through them
        self._pipes = pipes
        for k, pipe in enumerate(pipes):
            loop.add_reader(pipe.fileno(), self._on_pipe, k)
        import aiohttp

        self._session = aiohttp.ClientSession(
            headers={"Authorization": "Bearer " + self.token},
            timeout=aiohttp.ClientTimeout(total=120), connector=aiohttp.TCPConnector(limit=0))
        return self.urls

    def _on_pipe(self, k):
        """A message from process ``k``: ("relay", mime, addresses) -- deliver to the owners of those
        addresses (POST /admin/mail of each owner; the same message once per recipient)."""
        pipe = self._pipes[k]
        fd = pipe.fileno()
        # uvloop's add_reader makes the descriptor non-blocking, and a message larger than the socket
        # buffer (a relayed message with attachments) arrives in parts: Connection.recv() would then
        # raise BlockingIOError half way, the reader would be dropped, and the sending process would
        # block in its send for good (its whole event loop with it).  Readable means a message has
        # begun; its sender is writing the rest right now, so a blocking read of it is short.
        os.set_blocking(fd, True)
        try:
            msg = pipe.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(fd)
            return
        finally:
            os.set_blocking(fd, False)
        if not isinstance(msg, tuple) or len(msg) != 3 or msg[0] != "relay":
            return
        _, mime, addresses = msg
        store = self.state.store
        by_owner = {}
        for address in addresses:
            user = store.user_for(address)
            if user is not None:
                by_owner.setdefault(self.owner(user), []).append(user)
        if by_owner and self._session is not None:
            body = base64.b64encode(mime).decode("ascii")
            for owner, users in by_owner.items():
                task = asyncio.ensure_future(self._relay(owner, body, users))
                self._relays.add(task)
                task.add_done_callback(self._relays.discard)

    async def _relay(self, k, body, users):
        try:
            await self._call(k, "POST", "/admin/mail", {"mime": body, "recipients": users})
        except (OSError, asyncio.TimeoutError, ValueError) as exc:  # aiohttp's errors are OSErrors
            log.warning("relaying a message to process %d failed: %s", k, type(exc).__name__)

    async def cleanup(self):
        """Stop every process (SIGTERM: held Pings answered; SIGKILL after 10 s)."""
        loop = asyncio.get_running_loop()
        for pipe in self._pipes:
            try:
                loop.remove_reader(pipe.fileno())
            except (OSError, ValueError):
                pass
        try:
            if self.keep_final and self._session is not None and self.final is None:
                texts = await self.process_metrics()
                self.final = {"devices": await self.devices(), "counters": await self.counters(),
                              "process_metrics": texts, "metrics": await self.metrics(texts)}
        finally:
            for task in list(self._relays):
                task.cancel()
            if self._session is not None:
                await self._session.close()
                self._session = None
            await self._stop_processes()
            for pipe in self._pipes:
                pipe.close()
            self._pipes = []

    async def _stop_processes(self):
        loop = asyncio.get_running_loop()
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM to that one PID
        for proc in self._procs:
            await loop.run_in_executor(None, proc.join, 10)
            if proc.is_alive():
                proc.kill()
                await loop.run_in_executor(None, proc.join, 5)
        self._procs = []

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.cleanup()

    # -- routing

    def owner(self, user):
        """Index of the process that owns ``user`` (KeyError for an unknown user)."""
        return self._index[user] % self.processes

    def url_for(self, user):
        return self.urls[self.owner(user)]

    async def _call(self, k, method, path, body=None):
        async with self._session.request(method, self.admin_urls[k] + path, json=body) as resp:
            data = await resp.json()
            if resp.status != 200:
                raise ClusterError("target process %d: %s %s: %s" % (k, method, path, data.get("error", resp.status)))
            return data

    async def _try(self, k, method, path, body=None):
        async with self._session.request(method, self.admin_urls[k] + path, json=body) as resp:
            return resp.status, await resp.json()

    async def broadcast(self, method, path, body=None):
        """The same admin call on every process; their answers in process order."""
        return await asyncio.gather(*(self._call(k, method, path, body) for k in range(self.processes)))

    async def _each(self, path, bodies):
        """POST bodies[k] to process k (skipping None)."""
        calls = [self._call(k, "POST", path, body) for k, body in enumerate(bodies) if body is not None]
        return await asyncio.gather(*calls)

    # -- admin actions (the same semantics as TargetState / Target, over every process)

    async def change_policy(self, settings=None, **flags):
        """New policy settings and/or flags (allow_non_provisionable, no_policy, refresh_interval_min):
        one new policy key, decided here, for every process."""
        from loadgen.exchange.state import policy_flags, validate_policy

        settings = validate_policy(settings or {})  # checked before anything changes, here or in a process
        state = self.state
        for flag, value in policy_flags(flags).items():
            setattr(state, flag, value)
        body = dict(flags)
        if settings:
            state.change_policy(**settings)
            body.update(settings=settings, policy_key=state.policy_key)
        answers = await self.broadcast("POST", "/admin/policy", body)
        versions = {a["policy_version"] for a in answers}
        if versions != {state.policy_version}:
            log.warning("policy versions differ between target processes: %s", sorted(versions))
        return {"policy_version": state.policy_version, "policy": state.policy}

    async def devices(self):
        """Every partnership of every process (GET /admin/devices of each, concatenated)."""
        answers = await self.broadcast("GET", "/admin/devices")
        return [d for a in answers for d in a["devices"]]

    async def wipe_fraction(self, fraction, seed=None, account_only=False):
        """Wipe ``fraction`` of all devices, chosen as TargetState.wipe_fraction does over the whole
        population; returns the chosen [(user, device id)]."""
        answers = await self.broadcast("GET", "/admin/devices?ids=1")
        chosen = pick_fraction([(u, d) for a in answers for u, d in a["ids"]], fraction, seed)
        bodies = [None] * self.processes
        for user, device_id in chosen:
            k = self.owner(user)
            if bodies[k] is None:
                bodies[k] = {"devices": [], "account_only": bool(account_only)}
            bodies[k]["devices"].append([user, device_id])
        await self._each("/admin/wipe", bodies)
        return chosen

    async def _device_action(self, path, data, result_key):
        """An action on one device id: to its user's process, or (no user) to every process."""
        user = data.get("user")
        targets = [self.owner(user)] if user in self._index else range(self.processes)
        results = await asyncio.gather(*(self._try(k, "POST", path, data) for k in targets))
        found = [answer for status, answer in results if status == 200]
        if not found:
            errors = {answer.get("error") for status, answer in results}
            raise ValueError("; ".join(sorted(e for e in errors if e)) or "no device")
        if isinstance(found[0][result_key], list):
            return {result_key: [x for a in found for x in a[result_key]]}
        return {result_key: sum(a[result_key] for a in found)}

    async def wipe_device(self, device_id, user=None, account_only=False):
        data = {"device_id": device_id, "account_only": account_only}
        if user is not None:
            data["user"] = user
        return await self._device_action("/admin/wipe", data, "wiped")

    async def deliver_mail(self, user, count=1):
        if user not in self._index:
            raise KeyError(user)
        await self._call(self.owner(user), "POST", "/admin/mail", {"user": user, "count": int(count)})

    async def deliver_meeting(self, user):
        """A meeting request for ``user``, by the process that owns the user (TargetState.deliver_meeting)."""
        if user not in self._index:
            raise KeyError(user)
        await self._call(self.owner(user), "POST", "/admin/mail", {"user": user, "meeting": True})

    async def deliver_mail_fraction(self, fraction, count=1, seed=None):
        """New mail for ``fraction`` of all users, chosen as TargetState.deliver_mail_fraction does."""
        chosen = pick_fraction(self.state.passwords, fraction, seed)
        bodies = [None] * self.processes
        for user in chosen:
            k = self.owner(user)
            if bodies[k] is None:
                bodies[k] = {"users": [], "count": int(count)}
            bodies[k]["users"].append(user)
        await self._each("/admin/mail", bodies)
        return len(chosen)

    async def resync_fraction(self, fraction, seed=None):
        """Drop the sync state of ``fraction`` of all devices, chosen as TargetState.resync_fraction
        does over the whole population; how many."""
        answers = await self.broadcast("GET", "/admin/devices?ids=1")
        chosen = pick_fraction([(u, d) for a in answers for u, d in a["ids"]], fraction, seed)
        bodies = [None] * self.processes
        for user, device_id in chosen:
            k = self.owner(user)
            if bodies[k] is None:
                bodies[k] = {"devices": []}
            bodies[k]["devices"].append([user, device_id])
        await self._each("/admin/resync", bodies)
        return len(chosen)

    async def drop_connections(self, fraction, seed=None):
        """Reset ``fraction`` of each process's open client connections (process k draws with
        seed + k); how many in all."""
        base = seed if isinstance(seed, int) else 0
        answers = await self._each("/admin/drop", [{"fraction": float(fraction), "seed": base + k}
                                                   for k in range(self.processes)])
        return sum(a["dropped"] for a in answers)

    async def set_abq(self, **config):
        self.state.set_abq(**config)  # validates (a bad rule changes nothing anywhere)
        return (await self.broadcast("POST", "/admin/abq", config))[0]

    async def set_faults(self, **config):
        from loadgen.exchange.faults import Faults

        Faults(**config)  # validate before anything changes
        return (await self.broadcast("POST", "/admin/faults", config))[0]

    async def counters(self):
        """GET /admin/counters of every process, added; ``processes`` keeps each one's figures."""
        answers = await self.broadcast("GET", "/admin/counters")
        requests, devices, throttled, faults, mail, holds = {}, {}, {}, {}, {}, {}
        for a in answers:
            for r in a["requests"]:
                key = (r["command"], r["http_status"], r["eas_status"])
                requests[key] = requests.get(key, 0) + r["count"]
            for d in a["devices"]:
                key = (d["provisioning"], d["access"], d["wipe"])
                devices[key] = devices.get(key, 0) + d["count"]
            for name, into in (("throttled", throttled), ("faults", faults), ("mail", mail), ("sync_holds", holds)):
                for k, n in a.get(name, {}).items():
                    into[k] = into.get(k, 0) + n
        return {
            "requests": [{"command": c, "http_status": h, "eas_status": e, "count": n}
                         for (c, h, e), n in sorted(requests.items(), key=lambda kv: str(kv[0]))],
            "devices": [{"provisioning": p, "access": a, "wipe": w, "count": n}
                        for (p, a, w), n in sorted(devices.items())],
            "held_pings": sum(a["held_pings"] for a in answers),
            "held_syncs": sum(a.get("held_syncs", 0) for a in answers),
            "sync_holds": holds,
            "throttled": throttled,
            "faults": faults,
            "mail": mail,
            "processes": [{"process": k, "url": self.urls[k], "pid": self.pids[k], "held_pings": a["held_pings"],
                           "devices": sum(d["count"] for d in a["devices"])} for k, a in enumerate(answers)],
        }

    async def process_metrics(self):
        """The Prometheus exposition of each process (bytes), in process order."""
        async def one(k):
            async with self._session.get(self.admin_urls[k] + "/metrics") as resp:
                return await resp.read()
        return list(await asyncio.gather(*(one(k) for k in range(self.processes))))

    async def metrics(self, texts=None):
        """One exposition for the cluster: every sample summed over the processes."""
        from loadgen.exchange.metrics import merge_expositions

        if texts is None:
            texts = await self.process_metrics()
        held = {}
        for k, text in enumerate(texts):
            for line in text.decode().splitlines():
                if line.startswith("easload_target_held_pings "):
                    held[k] = float(line.split()[1])
        return merge_expositions(texts, per_process=held)

    # -- the cluster's admin API on HTTP (same routes as admin.py)

    async def serve_admin(self, host="127.0.0.1", port=0, token=None):
        """Admin API and /metrics of the whole cluster.  Returns (runner, url, token)."""
        from aiohttp import web

        admin = ClusterAdmin(self, token)
        from loadgen.exchange.server import HTTP_LOG

        runner = web.AppRunner(admin.app, access_log=None, handle_signals=False, logger=HTTP_LOG)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        actual = site._server.sockets[0].getsockname()[1]
        return runner, "http://%s:%d" % (host, actual), admin.token


class ClusterAdmin:
    """admin.py's API for a cluster: actions broadcast or routed to the owner, answers merged."""

    def __init__(self, cluster, token=None):
        from aiohttp import web

        from loadgen.exchange.admin import authorized

        self.cluster = cluster
        self.token = token or secrets.token_urlsafe(24)
        expected = ("Bearer " + self.token).encode()

        @web.middleware
        async def auth(request, handler):
            if request.path.startswith("/admin") and not authorized(request, expected):
                return web.json_response({"error": "unauthorized"}, status=401)
            try:
                return await handler(request)
            except web.HTTPException:
                raise
            except ClusterError as exc:
                return web.json_response({"error": str(exc)}, status=502)
            except Exception:
                log.exception("admin request %s failed", request.path)
                return web.json_response({"error": "internal error"}, status=500)

        self.app = web.Application(middlewares=[auth])
        r = self.app.router
        r.add_get("/metrics", self.metrics)
        for name in ("policy", "wipe", "clear_wipe", "abq", "release", "remove_device", "mail", "faults",
                     "throttle", "resync", "drop"):
            r.add_post("/admin/" + name, self._wrap(getattr(self, name)))
        r.add_get("/admin/devices", self._wrap(self.devices))
        r.add_get("/admin/counters", self._wrap(self.counters))

    def _wrap(self, method):
        from aiohttp import web

        from loadgen.exchange.admin import _message, read_json

        async def handler(request):
            data = {}
            if request.method == "POST":
                data = await read_json(request)
                if isinstance(data, web.StreamResponse):
                    return data
            try:
                return web.json_response(await method(data))
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
                return web.json_response({"error": _message(exc)}, status=400)
        return handler

    async def policy(self, data):
        settings = data.get("settings") or {}
        if not isinstance(settings, dict):
            raise ValueError("settings must be an object")
        flags = {k: data[k] for k in ("allow_non_provisionable", "no_policy", "refresh_interval_min") if k in data}
        return await self.cluster.change_policy(settings, **flags)

    async def wipe(self, data):
        c = self.cluster
        if "fraction" in data:
            chosen = await c.wipe_fraction(float(data["fraction"]), data.get("seed"),
                                           bool(data.get("account_only", False)))
            return {"wiped": [list(x) for x in chosen]}
        if not data.get("device_id"):
            raise ValueError("device_id is required")
        return await c.wipe_device(data["device_id"], data.get("user"), bool(data.get("account_only", False)))

    async def clear_wipe(self, data):
        if not data.get("device_id"):
            raise ValueError("device_id is required")
        return await self.cluster._device_action("/admin/clear_wipe", data, "cleared")

    async def remove_device(self, data):
        if not data.get("device_id"):
            raise ValueError("device_id is required")
        return await self.cluster._device_action("/admin/remove_device", data, "removed")

    async def abq(self, data):
        c = self.cluster
        config = {k: data[k] for k in ("default", "rules", "allowed_ids", "blocked_ids") if k in data}
        c.state.set_abq(**config)  # validate here first
        return (await c.broadcast("POST", "/admin/abq", data))[0]

    async def release(self, data):
        if not data.get("device_id"):
            raise ValueError("device_id is required")
        return (await self.cluster.broadcast("POST", "/admin/release", data))[0]

    async def mail(self, data):
        c = self.cluster
        count = int(data.get("count", 1))
        if "fraction" in data:
            return {"users": await c.deliver_mail_fraction(float(data["fraction"]), count, data.get("seed"))}
        if not data.get("user"):
            raise ValueError("user or fraction is required")
        await c.deliver_mail(data["user"], count)
        return {"users": 1}

    async def faults(self, data):
        return await self.cluster.set_faults(**data)

    async def resync(self, data):
        if "fraction" not in data:
            raise ValueError("fraction is required")
        return {"resynced": await self.cluster.resync_fraction(float(data["fraction"]), data.get("seed"))}

    async def drop(self, data):
        return {"dropped": await self.cluster.drop_connections(float(data.get("fraction", 0)), data.get("seed"))}

    async def throttle(self, data):
        self.cluster.state.throttle.configure(**data)  # validate here first
        return (await self.cluster.broadcast("POST", "/admin/throttle", data))[0]

    async def devices(self, data):
        return {"devices": await self.cluster.devices()}

    async def counters(self, data):
        return await self.cluster.counters()

    async def metrics(self, request):
        from aiohttp import web

        return web.Response(body=await self.cluster.metrics(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def start_cluster(scenario):
    """The embedded target of a scenario with ``[target] processes = N`` (exchange/launch.py)."""
    from loadgen.exchange.state import scenario_options

    t = scenario.target
    # [target] tls: every process serves the same certificate (made for 127.0.0.1..k by exchange/launch.py)
    tls = dict(tls_cert=t.tls_cert, tls_key=t.tls_key) if t.tls_cert else None
    cluster = TargetCluster(t.processes, listen=(t.listen + ":0",), mail_per_user_per_hour=t.mail_per_user_per_hour,
                            server_options=tls, **scenario_options(scenario))
    await cluster.start()
    return cluster


__all__ = ["TargetCluster", "ClusterAdmin", "ClusterError", "listen_addresses", "pick_fraction", "start_cluster",
           "shard_state"]


async def serve_cluster(cluster, ready=None, admin=None, admin_token=None):
    """``easload target --processes N``: start the cluster (and, with ``admin=(host, port)``, its admin
    API and merged /metrics) and run until SIGINT/SIGTERM or cancellation; the processes are stopped."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled = install_stop_signals(loop, True, stop.set)
    admin_runner = admin_url = None
    try:
        await cluster.start()
        if admin is not None:
            admin_runner, admin_url, admin_token = await cluster.serve_admin(admin[0], admin[1], admin_token)
        if ready is not None:
            ready(cluster.urls, admin_url)
        await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        if admin_runner is not None:
            await admin_runner.cleanup()
        await cluster.cleanup()
