"""``easload`` command line: run, target, wbxml decode/encode.

Exit status: 0 success (every threshold passed), 1 a threshold failed or the
run was interrupted, 2 a usage error (bad scenario, missing file, bad flag) --
always one clear line, never a traceback for a user's mistake --, 3 the target
never answered.
"""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import orjson

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_UNREACHABLE = 3
DEFAULT_METRICS = "127.0.0.1:9477"


class UsageError(Exception):
    pass


def _loop_factory():
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _arun(coro):
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(coro)


# --------------------------------------------------------------------------- run


def _raise_file_limit():
    """Each device holds up to two connections: take the hard open-file limit as the soft one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def _safety_rail(sc, yes):
    """A load test of more than SAFE_DEVICES devices on a server not on this machine needs the
    operator's explicit confirmation: ``--yes`` or ``confirm = true`` in the scenario's [target].
    With several URLs, one that is not on this machine is enough to ask."""
    if sc.target.embedded:
        return
    remote = [u for u in sc.target.urls if not _is_loopback(u)]
    if remote and sc.population.devices > SAFE_DEVICES and not yes and not sc.target.confirm:
        raise UsageError("%d devices against %s, which %s not on this machine: pass --yes (or set confirm = true "
                         "in [target]) to confirm the load test"
                         % (sc.population.devices, ", ".join(_safe_url(u) for u in remote),
                            "is" if len(remote) == 1 else "are"))


def _target_text(urls):
    """One URL, or several with the rule that sends each device to one of them; never credentials."""
    if isinstance(urls, str):
        return _safe_url(urls)
    return "%d URLs (user n -> URL n %% %d): %s" % (len(urls), len(urls), ", ".join(_safe_url(u) for u in urls))


def _tls_preflight(sc):
    """The devices' TLS check of the https URLs of a list other than the first (engine.run checks the
    first one, as for a single URL), once per distinct host and port: [(URL, problem)]."""
    from urllib.parse import urlsplit

    urls = sc.target.urls
    if sc.target.embedded or len(urls) < 2 or sc.target.insecure:
        return []
    from loadgen.target.tls import certificate_problem
    from loadgen.transport import make_ssl_context

    def where(url):
        parts = urlsplit(url)
        return parts.hostname.lower(), parts.port or 443

    seen = {where(urls[0])} if urls[0].lower().startswith("https:") else set()
    todo = []
    for url in urls[1:]:
        if url.lower().startswith("https:") and where(url) not in seen:
            seen.add(where(url))
            todo.append(url)
    if not todo:
        return []

    async def check():
        ctx = make_ssl_context(False, sc.target.ca_file)
        found = await asyncio.gather(*(certificate_problem(u, ctx) for u in todo))
        return [(u, problem) for u, problem in zip(todo, found) if problem]

    problems = _arun(check())
    for url, problem in problems:  # as engine.run says it for the first URL
        print("easload: %s at %s: the devices cannot connect; trust its CA with ca_file in [target] "
              "(or insecure = true / --insecure, not recommended)" % (problem, _safe_url(url)), file=sys.stderr)
    return problems


def cmd_run(args):
    from loadgen import metrics, scenario as scenario_mod
    from loadgen.engine import run
    from loadgen.report import evaluate_thresholds, junit_xml, summary_text, thresholds_text

    _raise_file_limit()
    path = args.scenario or scenario_mod.default_scenario_path()
    sc = scenario_mod.load(path)
    if args.duration is not None:
        sc.duration = args.duration
    if args.devices is not None:
        if args.devices < 1:
            raise UsageError("--devices must be at least 1")
        sc.population.devices = args.devices
        sc.auth.users = max(sc.auth.users, -(-args.devices // sc.population.devices_per_user))
    if args.target is not None:  # "embedded", one URL or URL1,URL2,... (a multi-process target)
        try:
            sc.target.url = scenario_mod.parse_target_option(args.target)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.transport:
        sc.load.transport = args.transport
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    shard = _shard(args)
    if shard != (0, 1) and args.workers > 1:
        raise UsageError("--shard/--shards and --workers do not combine: run one shard per process or pod")
    if args.dry_run:  # the plan, computed from the scenario; nothing is sent (plan.py)
        from loadgen import plan as plan_mod

        print(plan_mod.text(plan_mod.build(sc, shard, args.workers)))
        return EXIT_OK
    if args.start_at:
        _wait_until(args.start_at)
    if args.insecure:
        sc.target.insecure = True
    if sc.target.insecure:
        import warnings

        from loadgen.transport import InsecureTLSWarning

        print("WARNING: TLS certificate verification is disabled (insecure = true)", file=sys.stderr)
        warnings.simplefilter("ignore", InsecureTLSWarning)  # said once, here (not again per transport)
    from loadgen import ratelimit

    if sc.load.autodiscover is not None:  # Autodiscover follows the command line's TLS choice too
        sc.load.autodiscover = (sc.load.autodiscover[0], sc.target.insecure, sc.target.ca_file)
    ratelimit.install(sc, args.workers * shard[1])  # (sets the cap on sc.load)
    tls_pki = None  # kept until the run ends: the throwaway CA's files are removed with it
    if sc.target.embedded and sc.target.tls:  # made here: workers trust the same CA; a bad file is one line
        from loadgen.target.tls import for_scenario, server_context

        try:
            sc, tls_pki = for_scenario(sc)
            server_context(sc.target.tls_cert, sc.target.tls_key)
        except ValueError as exc:
            raise UsageError("%s: [target] tls: %s" % (path, exc)) from None
    why = ratelimit.resolve(sc)[1]
    if "turned off" in why and "not on this machine" in why:
        print("WARNING: no request-rate cap (max_request_rate = 0) on a server that is not on this machine",
              file=sys.stderr)
    _safety_rail(sc, args.yes)
    for key in ("ca_file", "client_cert", "client_key"):  # TLS files: a clear error now, not one per connection
        value = getattr(sc.target, key, None)
        if value and not Path(value).is_file():
            raise UsageError("%s: [target] %s: no such file: %s" % (path, key, value))
    listen = args.metrics_listen
    if listen is None:  # the default: 127.0.0.1:9477, or a free port when that one is taken
        try:
            port = metrics.serve(DEFAULT_METRICS)
            listen = DEFAULT_METRICS
        except OSError:
            listen = "127.0.0.1:0"
            port = metrics.serve(listen)
            print("note: %s is in use; metrics moved to port %d" % (DEFAULT_METRICS, port), file=sys.stderr)
    elif listen:
        try:
            port = metrics.serve(listen)
        except (OSError, ValueError) as exc:
            raise UsageError("--metrics-listen %s: %s" % (listen, exc)) from None
    if listen:
        print("metrics on http://%s:%d/metrics" % (listen.rpartition(":")[0] or "127.0.0.1", port), file=sys.stderr)
    where = "embedded target" if sc.target.embedded else _target_text(sc.target.url)
    print("easload: scenario %s (%s): %d devices for %.0f s against %s; %s"
          % (sc.name, path, sc.population.devices, sc.duration, where,
             ratelimit.describe(sc)), file=sys.stderr)
    tls_problems = _tls_preflight(sc)  # several https URLs: every host checked, not only the first
    try:
        if args.workers > 1:
            from loadgen.workers import run_workers

            result = _arun(run_workers(sc, args.workers, progress=not args.quiet))
        else:
            result = _arun(run(sc, progress=not args.quiet, handle_signals=True, shard=shard,
                                  admin="127.0.0.1:0"))  # the embedded target's admin API, printed
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        metrics.shutdown()
        return EXIT_FAILED
    except OSError as exc:  # the embedded target (or a cluster process) could not listen where asked
        print("easload: the run could not start: %s" % exc, file=sys.stderr)
        metrics.shutdown()
        return EXIT_UNREACHABLE
    stats = result.stats
    shown = result.target_url if isinstance(result.target_url, str) else ", ".join(result.target_url)
    target_label = "embedded (%s)" % shown if sc.target.embedded else _target_text(result.target_url)
    print(summary_text(stats, sc.name, target_label, len(result.devices)))
    verdicts = evaluate_thresholds(stats, sc.thresholds)
    if verdicts:
        print()
        print(thresholds_text(verdicts))
    data = stats.to_dict(scenario=sc.name, target="embedded" if sc.target.embedded
                         else ", ".join(_safe_url(u) for u in sc.target.urls))
    data["seed"] = sc.seed
    data["devices_total"] = len(result.devices)
    data["thresholds"] = [{"threshold": str(t), "value": v, "passed": ok} for t, v, ok in verdicts]
    data["shard"] = list(shard)
    data["versions"] = sc.population.versions
    data["mode"] = sc.load.mode
    data["model"] = sc.load.model
    data["easload_version"] = _package_version()
    try:
        if args.json:
            Path(args.json).write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.json").write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
            (out / "junit.xml").write_text(junit_xml(sc.name, verdicts, stats.ended - stats.started))
        if args.report:
            from loadgen import htmlreport

            size = htmlreport.write([data], args.report)
            print("report: %s (%.0f KiB)" % (args.report, size / 1024), file=sys.stderr)
    except OSError as exc:
        raise UsageError("cannot write results: %s" % exc) from None
    if listen and args.linger > 0:
        import time

        time.sleep(args.linger)
    metrics.shutdown()
    answered = sum(n for (_c, _o, status), n in stats.by_key.items() if status.isdigit())
    if stats.total and not answered:
        problem = getattr(result, "tls_problem", None) or (tls_problems[0][1] if tls_problems else None)
        print("easload: the target never answered (%s): %s" % (where, "%s: pass ca_file in [target]" % problem
              if problem else "check the URL, the network and TLS"), file=sys.stderr)
        return EXIT_UNREACHABLE
    if any(not ok for _t, _v, ok in verdicts) or result.interrupted:
        return EXIT_FAILED
    return EXIT_OK


SAFE_DEVICES = 10


def _is_loopback(url):
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _safe_url(url):
    """The URL without user info or query (never credentials in a report); the port kept, which tells
    the processes of one host apart."""
    from loadgen.scenario import shown_url

    return shown_url(url)


def cmd_probe(args):
    import os
    import re

    from loadgen.probe import Probe

    password = token = None
    if args.token_file:
        try:
            token = open(args.token_file, encoding="utf-8").read().strip()
        except OSError as exc:
            raise UsageError("--token-file: %s" % (exc.strerror or exc)) from None
    else:
        password = os.environ.get(args.password_env)
        if password is None:
            raise UsageError("set the password in the environment variable %s (or use --password-env / --token-file)"
                             % args.password_env)
    email = args.autodiscover
    if email == "" or (args.url is None and email is None):  # --autodiscover alone, or no URL: the user's address
        if "@" not in args.user:
            raise UsageError("give the EAS URL, or an e-mail address to Autodiscover it from (--autodiscover EMAIL "
                             "or --user user@domain)")
        email = args.user.rpartition("\\")[2]
    if email is not None and (email.count("@") != 1 or not email.split("@")[1]):
        raise UsageError("--autodiscover needs an e-mail address, not %r" % email)
    if args.url is not None and re.search(r",\s*https?://", args.url, re.IGNORECASE):
        raise UsageError("probe takes one URL (one device of one user), not a list: give the URL of the process "
                         "that serves --user (for user n of an N-process target, URL n % N of the list)")
    if args.url is not None and not args.url.startswith(("http://", "https://")):
        raise UsageError("the URL must start with https:// (or http://), not %r" % args.url)
    if args.version not in ("12.0", "12.1", "14.0", "14.1", "16.0", "16.1"):
        raise UsageError("--version must be one of 12.0, 12.1, 14.0, 14.1, 16.0, 16.1")
    trace = None
    try:
        trace = open(args.trace, "w", encoding="utf-8") if args.trace else None
    except OSError as exc:
        raise UsageError("--trace: %s" % (exc.strerror or exc)) from None
    try:
        probe = Probe(args.url, args.user, password, token, args.version, args.profile, args.ca, args.insecure,
                      args.heartbeat, trace=trace, autodiscover=email)
        return _arun(probe.run())
    finally:
        if trace is not None:
            trace.close()


def cmd_devices(args):
    """The partnerships a scenario creates, for the Exchange admin to remove afterwards."""
    from loadgen import scenario as scenario_mod
    from loadgen.engine import build_population

    sc = scenario_mod.load(args.scenario)
    shard, shards = 0, 1
    if args.shard:
        try:
            shard, shards = (int(x) for x in args.shard.split("/"))
            assert 0 <= shard < shards
        except (ValueError, AssertionError):
            raise UsageError("--shard must be I/N with 0 <= I < N, not %r" % args.shard) from None
    devices, _ = build_population(sc, "http://127.0.0.1/Microsoft-Server-ActiveSync", shard, shards)
    rows = [(d.user, d.ident.device_id, d.ident.device_type, d.profile.model) for d in devices]
    if args.format == "csv":
        print("user,device_id,device_type,model")
        for row in rows:
            print(",".join(row))
        return EXIT_OK
    print("# Removes the Exchange ActiveSync partnerships created by easload scenario %r (seed %d)." % (sc.name, sc.seed))
    print("# Runs with -WhatIf by default: remove -WhatIf below once the list is what you expect.")
    print("$easloadDeviceIds = @(")
    print(",\n".join('  "%s"' % device_id for _u, device_id, _t, _m in rows))
    print(")")
    print("Get-MobileDevice -ResultSize Unlimited | Where-Object { $easloadDeviceIds -contains $_.DeviceId } |")
    print("  Remove-MobileDevice -Confirm:$false -WhatIf")
    return EXIT_OK


def _shard(args):
    """(index, count) from --shard I/N, or --shards N with the index from JOB_COMPLETION_INDEX."""
    import os

    if args.shard and args.shards:
        raise UsageError("give --shard I/N or --shards N, not both")
    if args.shard:
        try:
            index, count = (int(x) for x in args.shard.split("/"))
        except ValueError:
            raise UsageError("--shard must be I/N, not %r" % args.shard) from None
    elif args.shards:
        count = args.shards
        raw = os.environ.get("JOB_COMPLETION_INDEX")
        if raw is None:
            raise UsageError("--shards needs the shard index in JOB_COMPLETION_INDEX (set by a Kubernetes Indexed Job)")
        try:
            index = int(raw)
        except ValueError:
            raise UsageError("JOB_COMPLETION_INDEX must be a number, not %r" % raw) from None
    else:
        return (0, 1)
    if not 0 <= index < count:
        raise UsageError("shard index %d is outside 0..%d" % (index, count - 1))
    return (index, count)


def _wait_until(when):
    """Sleep until ``when`` (unix seconds or RFC 3339) so that shards start together."""
    import time
    from datetime import datetime

    try:
        target = float(when)
    except ValueError:
        try:
            target = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise UsageError("--start-at must be unix seconds or an RFC 3339 time, not %r" % when) from None
    delay = target - time.time()
    if delay > 0:
        print("waiting %.1f s for the common start time" % delay, file=sys.stderr)
        time.sleep(delay)
    elif delay < -5:
        print("warning: the start time passed %.0f s ago; starting now" % -delay, file=sys.stderr)


def _load_summaries(names):
    """summary.json files (or --out directories holding one), with one-line errors."""
    summaries = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            path = path / "summary.json"
        try:
            summaries.append(orjson.loads(path.read_bytes()))
        except OSError as exc:
            raise UsageError("%s: %s" % (path, exc.strerror or exc)) from None
        except orjson.JSONDecodeError as exc:
            raise UsageError("%s: not a summary.json (%s)" % (path, exc)) from None
    return summaries


def cmd_merge(args):
    from loadgen.merge import MergeError, merge
    from loadgen.report import evaluate_thresholds, junit_xml, summary_text, thresholds_text
    from loadgen.scenario import Threshold, _THRESHOLD

    summaries = _load_summaries(args.results)
    try:
        stats, shards, first = merge(summaries)
    except MergeError as exc:
        raise UsageError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:  # a damaged or hand-edited summary.json: one line, exit 2
        raise UsageError("a result is not a valid easload summary (%s: %s)" % (type(exc).__name__, exc)) from None
    thresholds = []
    for t in first.get("thresholds", []):
        metric, op, limit = t["threshold"].rsplit(" ", 2)
        if _THRESHOLD.match("%s %s" % (op, limit)):
            thresholds.append(Threshold(metric, op, float(limit)))
    print(summary_text(stats, first["scenario"], first.get("target"), shards["devices_total"]))
    verdicts = evaluate_thresholds(stats, thresholds)
    if verdicts:
        print()
        print(thresholds_text(verdicts))
    if not shards["complete"]:
        print("\nwarning: %d of %d shards merged (%s)" % (len(shards["shards_merged"]), shards["shards_total"],
                                                         shards["shards_merged"]), file=sys.stderr)
    data = stats.to_dict(scenario=first["scenario"], target=first.get("target"))
    for key in ("seed", "versions", "mode", "model", "easload_version"):
        data[key] = first.get(key)
    data.update(shards)
    data["shard"] = [0, 1]
    data["thresholds"] = [{"threshold": str(t), "value": v, "passed": ok} for t, v, ok in verdicts]
    if args.out:
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.json").write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
            (out / "junit.xml").write_text(junit_xml(first["scenario"], verdicts, stats.ended - stats.started))
        except OSError as exc:
            raise UsageError("cannot write results: %s" % exc) from None
    if any(not ok for _t, _v, ok in verdicts) or stats.interrupted or not shards["complete"]:
        return EXIT_FAILED
    return EXIT_OK


def _package_version():
    from loadgen.engine import _version

    return _version()


def cmd_report(args):
    """Render saved or merged summary.json files as one self-contained HTML report."""
    from loadgen import htmlreport

    summaries = _load_summaries(args.results)
    try:
        size = htmlreport.write(summaries, args.output)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError("%s: %s" % (args.output, exc.strerror or exc)) from None
    print("report: %s (%.0f KiB) from %d result(s)" % (args.output, size / 1024, len(summaries)), file=sys.stderr)
    return EXIT_OK


def cmd_validate(args):
    from loadgen import scenario as scenario_mod

    for path in args.scenarios:
        sc = scenario_mod.load(path)
        print("%s: ok (%s: %d devices, %.0f s, %d thresholds, %d events)"
              % (path, sc.name, sc.population.devices, sc.duration, len(sc.thresholds), len(sc.events)))
    return EXIT_OK


# --------------------------------------------------------------------------- target


def cmd_target(args):
    import secrets

    from loadgen.target.server import serve_forever
    from loadgen.target.state import TargetState

    _raise_file_limit()
    kw = dict(allow_non_provisionable=args.allow_non_provisionable, no_policy=args.no_policy,
              refresh_interval_min=args.policy_refresh_minutes, max_devices=args.max_devices,
              ping_min=args.ping_min, ping_max=args.ping_max, abq_default=args.abq_default,
              max_concurrency=args.max_concurrency, command_rate=args.command_rate, command_burst=args.command_burst)
    try:
        if args.users_csv:
            state = TargetState.from_csv(args.users_csv, **kw)
        else:
            state = TargetState(users=args.users, user_pattern=args.user_pattern,
                                password_pattern=args.password_pattern, **kw)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(str(exc)) from None
    admin = None
    token = args.admin_token or secrets.token_urlsafe(24)
    if args.admin_listen:
        admin = _host_port(args.admin_listen, "--admin-listen")
    listens = args.listen or ["127.0.0.1:8443"]
    tls, _pki = _target_tls(args, listens)
    if args.processes != 1 or len(listens) > 1:
        return _target_cluster(args, kw, listens, admin, token, len(state.passwords), tls)
    host, port = _host_port(listens[0], "--listen")

    def ready(url, admin_url=None, http_url=None):
        print("easload target listening on %s (%d users)" % (url, len(state.passwords)), file=sys.stderr, flush=True)
        if http_url is not None:
            print("plain HTTP (Autodiscover redirect probe, 302 to https) on %s" % http_url, file=sys.stderr,
                  flush=True)
        if admin_url is not None:
            shown = "(the one given)" if args.admin_token else token
            print("admin API and /metrics on %s  bearer token: %s" % (admin_url, shown), file=sys.stderr, flush=True)

    try:
        _arun(serve_forever(host, port, state, ready, admin=admin, admin_token=token, **tls))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise UsageError("cannot listen: %s" % exc) from None
    return EXIT_OK


def _target_tls(args, listens):
    """--tls-cert/--tls-key or --tls-self-signed: (start_target's TLS options, TemporaryPKI or None)."""
    from loadgen.target import tls

    if args.tls_key and not args.tls_cert:
        raise UsageError("--tls-key needs --tls-cert")
    if args.tls_self_signed and args.tls_cert:
        raise UsageError("--tls-self-signed and --tls-cert do not combine: one certificate or the other")
    if args.http_port is not None and not (args.tls_cert or args.tls_self_signed):
        raise UsageError("--http-port is the plain-HTTP side of a TLS target: give --tls-cert or --tls-self-signed")
    pki = None
    options = {}
    try:
        if args.tls_self_signed:
            from loadgen.target.cluster import listen_addresses

            pki = tls.TemporaryPKI(tls.loopback_hosts(h for h, _ in listen_addresses(listens, args.processes)))
            options = dict(tls_cert=pki.pki.cert, tls_key=pki.pki.key)
            print("easload target: TLS with a throwaway CA; clients trust it with --ca %s (or ca_file); removed "
                  "when the target stops" % pki.pki.ca, file=sys.stderr, flush=True)
        elif args.tls_cert:
            tls.server_context(args.tls_cert, args.tls_key)  # a bad file is a usage error, before listening
            options = dict(tls_cert=args.tls_cert, tls_key=args.tls_key)
    except ValueError as exc:  # TLSError, or a bad --listen for the certificate's addresses
        raise UsageError(str(exc)) from None
    if args.http_port is not None:
        if args.processes != 1 or len(listens) > 1:
            raise UsageError("--http-port is for a single target process")
        options["http_port"] = args.http_port
    return options, pki


def _target_cluster(args, kw, listens, admin, token, users, tls=None):
    """``easload target --processes N``: users sharded over N processes (loadgen/target/cluster.py)."""
    from loadgen.target.cluster import ClusterError, TargetCluster, serve_cluster

    if args.processes < 1:
        raise UsageError("--processes must be at least 1, not %d" % args.processes)
    users_kw = dict(users_csv=args.users_csv) if args.users_csv else dict(
        users=args.users, user_pattern=args.user_pattern, password_pattern=args.password_pattern)
    try:
        cluster = TargetCluster(args.processes, listen=listens, server_options=tls, **users_kw, **kw)
    except ValueError as exc:
        raise UsageError("--listen: %s" % exc) from None

    def ready(urls, admin_url=None):
        print("easload target: %d processes, %d users; user n is served by process n %% %d:"
              % (len(urls), users, len(urls)), file=sys.stderr)
        for k, url in enumerate(urls):
            print("  process %d: %s" % (k, url), file=sys.stderr)
        print("drive it from another shell with: easload run SCENARIO --target %s" % ",".join(urls), file=sys.stderr)
        if admin_url is not None:
            shown = "(the one given)" if args.admin_token else token
            print("admin API and /metrics (all processes) on %s  bearer token: %s" % (admin_url, shown),
                  file=sys.stderr)
        sys.stderr.flush()

    try:
        _arun(serve_cluster(cluster, ready, admin=admin, admin_token=token))
    except KeyboardInterrupt:
        pass
    except (OSError, ClusterError) as exc:
        raise UsageError("cannot listen: %s" % exc) from None
    return EXIT_OK


def _host_port(value, flag):
    host, _, port = value.rpartition(":")
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        raise UsageError("%s must be HOST:PORT, not %r" % (flag, value)) from None


# --------------------------------------------------------------------------- wbxml


def _read_input(name, binary):
    if name == "-":
        return sys.stdin.buffer.read() if binary else sys.stdin.read()
    try:
        return Path(name).read_bytes() if binary else Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError("%s: %s" % (name, exc.strerror or exc)) from None


def cmd_wbxml(args):
    import _wbxml

    if args.action == "decode":
        data = _read_input(args.file, True)
        try:
            tree = _wbxml.decode(data)
        except _wbxml.WBXMLError as exc:
            raise UsageError("%s: %s" % (args.file, exc)) from None
        sys.stdout.write(_wbxml.to_xml(tree))
    else:
        text = _read_input(args.file, False)
        try:
            data = _wbxml.encode(_wbxml.from_xml(text))
        except _wbxml.WBXMLError as exc:
            raise UsageError("%s: %s" % (args.file, exc)) from None
        sys.stdout.buffer.write(data)
    return EXIT_OK


# --------------------------------------------------------------------------- main


def _parser():
    p = argparse.ArgumentParser(prog="easload", description="Load generator for Exchange ActiveSync servers")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug information")
    sub = p.add_subparsers(dest="command")

    r = sub.add_parser("run", help="run a scenario (default: scenarios/smoke.toml against the embedded target)")
    r.add_argument("scenario", nargs="?", help="scenario TOML file")
    r.add_argument("--duration", type=float, help="override the scenario's duration (seconds)")
    r.add_argument("--devices", type=int, help="override the number of devices")
    r.add_argument("--target", help="EAS URL (https://host/Microsoft-Server-ActiveSync) instead of the scenario's; "
                   "URL1,URL2,... for a target of several processes started on its own (easload target --processes "
                   "N prints the list): the device of user n goes to URL n %% count; 'embedded' for the embedded one")
    r.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (not recommended)")
    r.add_argument("--transport", choices=("lean", "aiohttp"), help="devices' HTTP client (default: lean)")
    r.add_argument("--shard", help="I/N: run only shard I of N of the population (ids and rates as in the whole)")
    r.add_argument("--shards", type=int, help="N shards, the index from JOB_COMPLETION_INDEX (Kubernetes Indexed Job)")
    r.add_argument("--start-at", help="start at this time (unix seconds or RFC 3339) so that shards start together")
    r.add_argument("--yes", action="store_true", help="confirm a load test of more than %d devices on a server "
                   "that is not on this machine" % SAFE_DEVICES)
    r.add_argument("--workers", type=int, default=1,
                   help="worker processes, each a deterministic shard of the devices (default 1)")
    r.add_argument("--metrics-listen", default=None,
                   help="HOST:PORT of the Prometheus endpoint (default 127.0.0.1:9477; '' to disable)")
    r.add_argument("--linger", type=float, default=0.0, help="keep the metrics endpoint up this long after the run")
    r.add_argument("--json", help="write the summary as JSON to this file")
    r.add_argument("--out", help="directory for summary.json and junit.xml (one test case per threshold)")
    r.add_argument("--report", help="write a self-contained HTML report to this file")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    r.add_argument("--dry-run", action="store_true", help="print the plan (devices, versions, profiles, expected "
                   "request rate over time, events, rate cap) and exit without sending anything")
    r.set_defaults(func=cmd_run)

    t = sub.add_parser("target", help="run the embedded EAS target on its own")
    t.add_argument("--listen", action="append", help="HOST:PORT (default 127.0.0.1:8443); with --processes N, "
                   "once (process k on HOST+k for a 127.x address, else PORT+k) or once per process")
    t.add_argument("--processes", type=int, default=1, help="target processes, users sharded over them "
                   "(user n served by process n %% N); admin API and /metrics merged (default 1)")
    t.add_argument("--users", type=int, default=1000)
    t.add_argument("--user-pattern", default="user{n}")
    t.add_argument("--password-pattern", default="Pass{n}!")
    t.add_argument("--allow-non-provisionable", action="store_true")
    t.add_argument("--no-policy", action="store_true")
    t.add_argument("--policy-refresh-minutes", type=int, default=0)
    t.add_argument("--users-csv", help="users from a CSV file (user,password) instead of the pattern")
    t.add_argument("--admin-listen", default="127.0.0.1:8444",
                   help="HOST:PORT of the admin API and /metrics (default 127.0.0.1:8444; '' to disable)")
    t.add_argument("--admin-token", help="bearer token of the admin API (default: generated, printed once)")
    t.add_argument("--max-devices", type=int, default=100, help="device partnerships per mailbox (status 177)")
    t.add_argument("--ping-min", type=int, default=60, help="smallest Ping HeartbeatInterval (s)")
    t.add_argument("--ping-max", type=int, default=3540, help="largest Ping HeartbeatInterval (s)")
    t.add_argument("--abq-default", default="Allow", choices=("Allow", "Block", "Quarantine"),
                   help="organisation default access level")
    t.add_argument("--max-concurrency", type=int, default=10, help="concurrent requests per user (503 beyond)")
    t.add_argument("--command-rate", type=float, default=20.0, help="per-device command budget refill (/s)")
    t.add_argument("--command-burst", type=float, default=600.0, help="per-device command budget size")
    t.add_argument("--tls-cert", help="serve HTTPS (as Exchange) with this PEM certificate (chain)")
    t.add_argument("--tls-key", help="the certificate's PEM private key (when not in the --tls-cert file)")
    t.add_argument("--tls-self-signed", action="store_true", help="serve HTTPS with a throwaway CA and certificate "
                   "for 127.0.0.1/localhost (the CA's path is printed: clients pass it as --ca / ca_file)")
    t.add_argument("--http-port", type=int, help="with TLS, also listen on plain HTTP on this port: the Autodiscover "
                   "redirect probe (GET) gets a 302 to https, anything else 403")
    t.set_defaults(func=cmd_target)

    pr = sub.add_parser("probe", help="one device walks OPTIONS, Provision, Settings, FolderSync, Sync and Ping, "
                        "printing every exchange decoded")
    pr.add_argument("url", nargs="?", help="https://host/Microsoft-Server-ActiveSync (optional with --autodiscover "
                    "or an e-mail address as --user)")
    pr.add_argument("--autodiscover", nargs="?", const="", metavar="EMAIL",
                    help="find the EAS URL by Autodiscover first (default address: --user); with a URL, its host's "
                    "/autodiscover/autodiscover.xml is tried first")
    pr.add_argument("--user", required=True, help="user name (DOMAIN\\user or UPN)")
    pr.add_argument("--password-env", default="EAS_PASSWORD", help="environment variable holding the password")
    pr.add_argument("--token-file", help="OAuth bearer token in a file (instead of a password)")
    pr.add_argument("--version", default="14.1")
    pr.add_argument("--profile", default="modern", help="device capability profile")
    pr.add_argument("--ca", help="CA bundle to verify the server's certificate")
    pr.add_argument("--insecure", action="store_true", help="do not verify the certificate (not recommended)")
    pr.add_argument("--heartbeat", type=int, default=60, help="Ping heartbeat (s)")
    pr.add_argument("--trace", help="write every exchange and verdict as JSON lines to this file")
    pr.set_defaults(func=cmd_probe)

    dv = sub.add_parser("devices", help="list the partnerships a scenario creates (csv) or a PowerShell cleanup")
    dv.add_argument("scenario")
    dv.add_argument("--shard", help="I/N: only this shard's devices")
    dv.add_argument("--format", choices=("csv", "powershell"), default="csv")
    dv.set_defaults(func=cmd_devices)

    mg = sub.add_parser("merge", help="merge shard results exactly, evaluate the thresholds, exit 0/1/2")
    mg.add_argument("results", nargs="+", help="summary.json files or --out directories of the shards")
    mg.add_argument("--out", help="directory for the merged summary.json and junit.xml")
    mg.set_defaults(func=cmd_merge)

    rp = sub.add_parser("report", help="HTML report from saved (or several shards') summary.json files")
    rp.add_argument("results", nargs="+", help="summary.json files or the --out directories holding them")
    rp.add_argument("-o", "--output", default="report.html")
    rp.set_defaults(func=cmd_report)

    v = sub.add_parser("validate", help="check scenario files without running them")
    v.add_argument("scenarios", nargs="+")
    v.set_defaults(func=cmd_validate)

    w = sub.add_parser("wbxml", help="decode WBXML to XML or encode XML to WBXML")
    w.add_argument("action", choices=("decode", "encode"))
    w.add_argument("file", help="input file, or - for standard input")
    w.set_defaults(func=cmd_wbxml)
    return p


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command is None:
        # "easload" alone: the quick start's default job
        args = parser.parse_args(["run", *([] if argv is None else argv)])
    from loadgen.scenario import ScenarioError

    try:
        return args.func(args)
    except (ScenarioError, UsageError) as exc:
        print("easload: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
