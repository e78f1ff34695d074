"""Admin API of the embedded target: JSON over HTTP on its own aiohttp app and site.

Bound to 127.0.0.1 by default; every ``/admin/*`` request needs
``Authorization: Bearer <token>`` (a random token is generated when none is
given; it is returned to the caller and never logged).  ``GET /metrics``
(Prometheus text, metrics.py) needs no token.

Endpoints (all call plain methods of TargetState / Target, which the engine can
also call in-process):

POST /admin/policy    {"settings": {...}, "allow_non_provisionable": b, "no_policy": b,
                       "refresh_interval_min": n}     -> state.change_policy(**settings)
                      ("policy_key": k sets the key the change produced: used by a multi-process
                       target (cluster.py), whose parent decides one key for every process)
POST /admin/wipe      {"device_id": id [, "user": u]} or {"fraction": f, "seed": s}
                      or {"devices": [[user, device id], ...]}; "account_only": b
POST /admin/clear_wipe {"device_id": id [, "user": u]}
POST /admin/abq       {"default": "Allow|Block|Quarantine", "rules": [{characteristic, query, access}],
                       "allowed_ids": [...], "blocked_ids": [...], "allow": id, "block": id}
POST /admin/release   {"device_id": id}                -> state.release (personal Allow exemption)
POST /admin/remove_device {"device_id": id [, "user": u]}
POST /admin/mail      {"user": u, "count": n} or {"fraction": f, "count": n, "seed": s}
                      or {"user": u, "meeting": true} (a meeting request: state.deliver_meeting)
                      or {"users": [u, ...], "count": n}
                      or {"mime": base64, "recipients": [u, ...]} (a message a cluster's parent relays)
POST /admin/resync    {"fraction": f, "seed": s} or {"devices": [[user, device id], ...]}: their sync state
                      dropped (state.resync: FolderSync 9, Sync 3, Ping 7 until they sync afresh)
POST /admin/drop      {"fraction": f, "seed": s}: that share of the open client connections reset
POST /admin/faults    faults.py configuration ({} turns faults off)
POST /admin/throttle  {"max_concurrency", "rate", "burst", "low_water", "retry_after"}
GET  /admin/devices   every partnership with provisioning, access and wipe state and device info
                      (?ids=1: only [[user, device id], ...], what a multi-process target's parent needs)
GET  /admin/counters  requests by (command, HTTP status, EAS status), device states, throttling, faults,
                     mail actions (messages submitted, delivered, read, flagged, deleted, moved...: store.py)
"""

import base64
import hmac
import json
import logging
import secrets

from aiohttp import web

from loadgen.exchange.metrics import exposition, make_registry
from loadgen.exchange.state import policy_flags, validate_policy

log = logging.getLogger("easload.target.admin")


ADMIN_KEY = web.AppKey("admin", object)


def authorized(request, expected):
    """True when the request's Authorization header is exactly ``expected`` (bytes).

    The header is compared as the bytes that were sent: aiohttp hands header values over decoded
    as UTF-8 with surrogate escapes, so a value that is not UTF-8 (RFC 9110 5.5: field values are
    octets) comes back to its own bytes here instead of raising; it is simply not the token."""
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected)


async def read_json(request):
    """The JSON object of a POST body, or a 400 response: not JSON, not UTF-8, nested too deep
    for the parser, or not an object (RFC 8259; RFC 9110 15.5.1 400 Bad Request)."""
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return web.json_response({"error": "body is not JSON"}, status=400)
    if not isinstance(data, dict):
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    return data


def _json(data, status=200):
    return web.json_response(data, status=status)


class BadRequest(Exception):
    pass


def _message(exc):
    """One line for a refused admin request (a KeyError's repr quotes its key)."""
    text = str(exc) if not isinstance(exc, KeyError) else "unknown %s" % (exc.args[0] if exc.args else "key")
    return (text or type(exc).__name__).splitlines()[0][:300]


def _share(value):
    value = float(value)
    if not 0 <= value <= 1:
        raise BadRequest("fraction must be between 0 and 1")
    return value


class Admin:
    def __init__(self, target, token=None):
        self.target = target
        self.state = target.state
        self.token = token or secrets.token_urlsafe(24)
        self._expected = ("Bearer " + self.token).encode()
        self.registry = make_registry(target)
        self.app = web.Application(middlewares=[self._auth])
        r = self.app.router
        r.add_get("/metrics", self.metrics)
        r.add_post("/admin/policy", self._wrap(self.policy))
        r.add_post("/admin/wipe", self._wrap(self.wipe))
        r.add_post("/admin/clear_wipe", self._wrap(self.clear_wipe))
        r.add_post("/admin/abq", self._wrap(self.abq))
        r.add_post("/admin/release", self._wrap(self.release))
        r.add_post("/admin/remove_device", self._wrap(self.remove_device))
        r.add_post("/admin/mail", self._wrap(self.mail))
        r.add_post("/admin/faults", self._wrap(self.faults))
        r.add_post("/admin/resync", self._wrap(self.resync))
        r.add_post("/admin/drop", self._wrap(self.drop))
        r.add_post("/admin/throttle", self._wrap(self.throttle))
        r.add_get("/admin/devices", self._wrap(self.devices))
        r.add_get("/admin/counters", self._wrap(self.counters))

    @web.middleware
    async def _auth(self, request, handler):
        if request.path.startswith("/admin") and not authorized(request, self._expected):
            return _json({"error": "unauthorized"}, 401)
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("admin request %s failed", request.path)
            return _json({"error": "internal error"}, 500)

    def _wrap(self, method):
        async def handler(request):
            data = dict(request.query) if request.method == "GET" else {}
            if request.method == "POST":
                data = await read_json(request)
                if isinstance(data, web.StreamResponse):
                    return data
            try:
                return _json(method(data))
            except (BadRequest, ValueError, TypeError, KeyError, AttributeError, OverflowError,
                    RecursionError) as exc:  # a value of the wrong type or range: the caller's mistake
                return _json({"error": _message(exc)}, 400)
        return handler

    # -- endpoints (plain functions of a dict; usable without HTTP too)

    def _records(self, data):
        device_id = data.get("device_id")
        if not device_id:
            raise BadRequest("device_id is required")
        records = self.state.find_devices(device_id, data.get("user"))
        if not records:
            raise BadRequest("no device %r" % (device_id,))
        return records

    def policy(self, data):
        state = self.state
        settings = data.get("settings") or {}
        if not isinstance(settings, dict):
            raise BadRequest("settings must be an object")
        settings = validate_policy(settings)  # every value is checked before anything changes
        flags = policy_flags(data)
        key = None
        if data.get("policy_key") is not None:
            key = str(data["policy_key"])
            # MS-ASPROV 2.2.2.42: at most 64 characters; it travels in the X-MS-PolicyKey header
            if not key or len(key) > 64 or not key.isprintable() or not key.isascii():
                raise BadRequest("policy_key must have 1 to 64 printable ASCII characters")
        for flag, value in flags.items():
            setattr(state, flag, value)
        if settings:
            state.change_policy(**settings)
        if key is not None:
            state.policy_key = key
        return {"policy_version": state.policy_version, "policy": state.policy}

    def wipe(self, data):
        account_only = bool(data.get("account_only", False))
        if "fraction" in data:
            records = self.state.wipe_fraction(float(data["fraction"]), data.get("seed"), account_only)
        elif "devices" in data:  # chosen by the parent of a multi-process target (cluster.py)
            records = []
            for user, device_id in data["devices"]:
                record = self.state.devices.get((user, device_id))
                if record is not None:
                    records.append(record)
            for record in records:
                self.state.request_wipe(record, account_only)
        else:
            records = self._records(data)
            for record in records:
                self.state.request_wipe(record, account_only)
        return {"wiped": [[r.user, r.device_id] for r in records]}

    def clear_wipe(self, data):
        records = self._records(data)
        for record in records:
            self.state.clear_wipe(record)
        return {"cleared": len(records)}

    def abq(self, data):
        state = self.state
        result = state.set_abq(default=data.get("default"), rules=data.get("rules"),
                               allowed_ids=data.get("allowed_ids"), blocked_ids=data.get("blocked_ids"))
        if data.get("allow"):
            state.allow_device(data["allow"])
        if data.get("block"):
            state.block_device(data["block"])
        return state.access_list.to_dict() if data.get("allow") or data.get("block") else result

    def release(self, data):
        if not data.get("device_id"):
            raise BadRequest("device_id is required")
        self.state.release(data["device_id"])
        return {"released": data["device_id"]}

    def remove_device(self, data):
        records = self._records(data)
        for record in records:
            self.state.remove_device(record)
        return {"removed": len(records)}

    def mail(self, data):
        if "mime" in data:  # a message relayed by a cluster's parent to the owner of its recipients (cluster.py)
            try:
                mime = base64.b64decode(data["mime"], validate=True)
            except (TypeError, ValueError):
                raise BadRequest("mime must be base64") from None
            recipients = data.get("recipients")
            if not isinstance(recipients, list) or not all(isinstance(u, str) for u in recipients):
                raise BadRequest("recipients must be a list of user names")
            return {"delivered": self.state.store.deliver_to(recipients, mime)}
        if data.get("meeting") is True:  # the plan's meeting requests (loadgen/run/day.py deliver_external)
            if not data.get("user"):
                raise BadRequest("user is required")
            try:
                self.state.deliver_meeting(data["user"])
            except LookupError as exc:  # an unknown user, a mailbox without meetings
                raise BadRequest("no meeting request for %s: %s" % (data["user"], exc)) from None
            return {"users": 1}
        count = int(data.get("count", 1))
        if "fraction" in data:
            return {"users": self.state.deliver_mail_fraction(float(data["fraction"]), count, data.get("seed"))}
        if "users" in data:  # chosen by the parent of a multi-process target (cluster.py)
            for user in data["users"]:
                self.state.deliver_mail(user, count)
            return {"users": len(data["users"])}
        if not data.get("user"):
            raise BadRequest("user or fraction is required")
        self.state.deliver_mail(data["user"], count)
        return {"users": 1}

    def faults(self, data):
        return self.target.set_faults(**data)

    def resync(self, data):
        if "devices" in data:  # chosen by the parent of a multi-process target (cluster.py)
            records = [r for r in (self.state.devices.get((u, d)) for u, d in data["devices"]) if r is not None]
            for record in records:
                self.state.resync(record)
        elif "fraction" in data:
            records = self.state.resync_fraction(_share(data["fraction"]), data.get("seed"))
        else:
            raise BadRequest("fraction or devices is required")
        return {"resynced": len(records)}

    def drop(self, data):
        return {"dropped": self.target.drop_connections(_share(data.get("fraction", 0)), data.get("seed"))}

    def throttle(self, data):
        return self.state.throttle.configure(**data)

    def devices(self, data):
        if data.get("ids"):
            return {"ids": [[user, device_id] for user, device_id in self.state.devices]}
        return {"devices": self.state.list_devices()}

    def counters(self, data):
        target = self.target
        return {
            "requests": [{"command": c, "http_status": h, "eas_status": e, "count": n}
                         for (c, h, e), n in sorted(target.counters.items(), key=lambda kv: str(kv[0]))],
            "devices": [{"provisioning": p, "access": a, "wipe": w, "count": n}
                        for (p, a, w), n in sorted(self.state.state_counts().items())],
            "held_pings": target.held_pings,
            "held_syncs": target.held_syncs,  # Syncs with Wait / HeartbeatInterval (server.py held_sync)
            "sync_holds": dict(target.sync_holds),
            "throttled": dict(target.throttled),
            "faults": dict(target.faults.injected),
            "mail": dict(self.state.store.counters),  # the mail store's actions (store.COUNTERS)
        }

    async def metrics(self, request):
        return web.Response(body=exposition(self.registry),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def start_admin(host="127.0.0.1", port=0, target=None, token=None):
    """Start the admin API for ``target``.  Returns (runner, url, token)."""
    admin = Admin(target, token)
    admin.app[ADMIN_KEY] = admin  # reachable from the runner: runner.app[ADMIN_KEY]
    from loadgen.exchange.server import HTTP_LOG

    runner = web.AppRunner(admin.app, access_log=None, handle_signals=False, logger=HTTP_LOG)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    actual = site._server.sockets[0].getsockname()[1]
    url = "http://%s:%d" % (host, actual)
    return runner, url, admin.token
