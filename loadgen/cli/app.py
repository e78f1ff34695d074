"""``easload`` command line: run, target, wbxml decode/encode.

Exit status: 0 success (every threshold passed), 1 a threshold failed or the
run was interrupted, 2 a usage error (bad scenario, missing file, bad flag, a
threshold naming a metric that cannot exist) -- always one clear line, never a
traceback for a user's mistake --, 3 the target never answered (a run ends
within about 10 s of its first requests when none is answered: loadgen/run/engine.py
DeadTarget), 4 the run stopped itself: its queued tasks exceeded ``[workload]
backlog_limit`` x users (loadgen/run/engine.py backlog_limit), 5 the run stopped
itself: an ``abort_on_fail`` threshold failed during it (loadgen/results/thresholds.py
AbortWatch).  ``easload compare``: 0 no regression, 1 a regression beyond the
tolerance, 2 usage.
"""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from loadgen.wire.loop import loop_factory, raise_file_limit
from loadgen.wire.redirects import is_loopback

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_UNREACHABLE = 3
EXIT_ABORTED = 4  # the backlog guard stopped the run (summary.json "aborted" says why)
EXIT_THRESHOLD_ABORT = 5  # an abort_on_fail threshold stopped the run (summary.json "aborted" names it)


def abort_exit(reason):
    """The exit status of a run that stopped itself, from summary.json's "aborted" text."""
    from loadgen.results.thresholds import ABORTED_THRESHOLD, ABORTED_UNREACHABLE

    if reason.startswith(ABORTED_UNREACHABLE):
        return EXIT_UNREACHABLE
    return EXIT_THRESHOLD_ABORT if reason.startswith(ABORTED_THRESHOLD) else EXIT_ABORTED
DEFAULT_METRICS = "127.0.0.1:9477"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse's own errors (a missing argument, ``--devices many``) as one line, exit 2; a value
    that is not one of the choices (a command, ``--transport``) with the closest one."""

    def error(self, message):
        import difflib
        import re

        choice = re.match(r"argument (\S+): invalid choice: '(.*)' \(choose from (.*)\)$", message)
        if choice:
            what, value, listed = choice.groups()
            known = re.findall(r"'([^']*)'", listed)
            close = difflib.get_close_matches(value, known, 1, 0.6)
            if what.lower() == "command":
                from loadgen.cli import shipped

                hint = (" (did you mean '%s'?)" % close[0] if close else
                        " (did you mean 'easload run %s'?)" % value if shipped.find(value) else "")
                message = "unknown command '%s'%s; the commands: %s" % (value, hint, ", ".join(known))
            elif close:
                message = "argument %s: invalid choice: '%s' (did you mean '%s'?)" % (what, value, close[0])
        print("easload: %s (see %s --help)" % (message, self.prog), file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _duration(whole=False):
    """argparse type of a duration flag: seconds or text with a unit, like the scenario files' durations
    ("5s", "90s", "2m", "1h"; loadgen/scenario.py parse_duration); ``whole``: whole seconds (an int)."""

    def parse(text):
        from loadgen.scenario import parse_duration

        try:
            seconds = parse_duration(text)
        except ValueError:
            raise argparse.ArgumentTypeError("must be a duration like 20, 20s, 90s, 2m or 1h, not %r" % text) \
                from None
        if whole:
            if seconds != int(seconds):
                raise argparse.ArgumentTypeError("must be whole seconds, not %r" % text)
            return int(seconds)
        return seconds

    return parse


def _unknown_arguments(parser, args, extra):
    """The first argument no parser took, as one line with the closest flag of the command given
    (or, without a command, the command that has that flag)."""
    import difflib

    token = extra[0]
    command = parser._easload_commands.get(args.command) if args.command else None
    prog = command.prog if command is not None else parser.prog
    if not token.startswith("-"):
        return "%s: unexpected argument %r (see %s --help)" % (prog, token, prog)
    name = token.split("=", 1)[0]
    if command is None:
        owners = [n for n, sub in parser._easload_commands.items() if name in sub._option_string_actions]
        if owners:
            return "easload: %s is a flag of 'easload %s': give the command first, e.g. easload %s %s" % (
                name, owners[0], owners[0], " ".join(extra))
    known = [o for o in (command or parser)._option_string_actions if o.startswith("--")]
    close = difflib.get_close_matches(name, known, 1, 0.6)
    return "%s: unknown flag %s%s (see %s --help)" % (prog, name, " (did you mean %s?)" % close[0] if close else "",
                                                     prog)


class _VersionAction(argparse.Action):
    """``easload --version``: the package's version and the WBXML codec in use, computed when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def version_text():
    """"easload 0.1.0 (WBXML codec: cython, Python 3.11.7)"."""
    import platform

    return "easload %s (WBXML codec: %s, Python %s)" % (_package_version(), codec(), platform.python_version())


def codec():
    """The WBXML codec in use: "cython" (the compiled twin) or "python" (the pure one; _wbxml/__init__.py)."""
    import _wbxml

    return _wbxml.IMPLEMENTATION


def check_flag(flag, value, minimum=None, maximum=None, *, above=None, integer=False):
    """The shared range check of a numeric flag: finite, a whole number if ``integer``, at least
    ``minimum`` (or greater than ``above``) and at most ``maximum``; UsageError naming the flag."""
    import math

    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError("%s must be a finite number, not %s" % (flag, value))
    if integer and value != int(value):
        raise UsageError("%s must be a whole number, not %s" % (flag, value))
    if above is not None and not value > above:
        raise UsageError("%s must be greater than %s, not %s" % (flag, _num(above), _num(value)))
    if minimum is not None and value < minimum:
        raise UsageError("%s must be at least %s, not %s" % (flag, _num(minimum), _num(value)))
    if maximum is not None and value > maximum:
        raise UsageError("%s must be at most %s, not %s" % (flag, _num(maximum), _num(value)))
    return value


def _num(value):
    return "{:,}".format(value) if isinstance(value, int) else "%g" % value


def _check_port(flag, value, port):
    try:
        port = int(port)
    except ValueError:
        raise UsageError("%s must be HOST:PORT, not %r" % (flag, value)) from None
    if not 0 <= port <= 65535:
        raise UsageError("%s: port %d is outside 0..65535" % (flag, port))
    return port


def _arun(coro):
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)


# --------------------------------------------------------------------------- run


def _safety_rail(sc, yes):
    """A load test of more than SAFE_DEVICES devices on a server not on this machine needs the
    operator's explicit confirmation: ``--yes`` or ``confirm = true`` in the scenario's [target].
    With several URLs, one that is not on this machine is enough to ask."""
    if sc.target.embedded:
        return
    remote = [u for u in sc.target.urls if not is_loopback(u)]
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


def cmd_run(args):
    from loadgen.results import metrics, summary
    from loadgen import scenario as scenario_mod
    from loadgen.cli import start
    from loadgen.results.text import junit_xml
    from loadgen.run import plan

    raise_file_limit()
    _check_run_flags(args)
    path = _scenario_file(args.scenario) if args.scenario else scenario_mod.default_scenario_path()
    sc = scenario_mod.load(path, secrets=not args.dry_run)  # a plan sends nothing: no password needed
    url = None
    if args.target is not None:  # "embedded", one URL or URL1,URL2,... (a multi-process target)
        try:
            url = scenario_mod.parse_target_option(args.target)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    sc = scenario_mod.overridden(sc, duration=args.duration, devices=args.devices, url=url,
                                 transport=args.transport, insecure=args.insecure)
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    shard = _shard(args)
    if shard != (0, 1) and args.workers > 1:
        raise UsageError("--shard/--shards and --workers do not combine: run one shard per process or pod")
    per_process = -(-sc.population.devices // (args.workers * shard[1]))
    if per_process > scenario_mod.MAX_DEVICES_PER_PROCESS:
        raise UsageError("%d devices in one process (%d devices over %d) is above %s per process: use --workers N "
                         "(or shards) so that each process holds at most that many"
                         % (per_process, sc.population.devices, args.workers * shard[1],
                            _num(scenario_mod.MAX_DEVICES_PER_PROCESS)))
    start_at = _start_time(args.start_at) if args.start_at else None
    ignored = _embedded_only_warning(sc)
    if ignored:
        print(ignored, file=sys.stderr)
    if args.dry_run:  # the plan, computed from the scenario; nothing is sent (plan.py)
        from loadgen.run import plan as plan_mod

        print(plan_mod.text(plan_mod.build(sc, shard, args.workers)))
        return EXIT_OK
    cap_note = _rate_cap_check(sc, shard, args.workers, args.yes)
    if start_at is not None:
        _wait_until(start_at)
    if sc.target.insecure:
        import warnings

        from loadgen.wire.transport import InsecureTLSWarning

        print("WARNING: TLS certificate verification is disabled (insecure = true)", file=sys.stderr)
        warnings.simplefilter("ignore", InsecureTLSWarning)  # said once, here (not again per transport)
    from loadgen.wire import ratelimit

    if sc.target.embedded and sc.target.tls and sc.target.tls_cert:  # a bad file is one line, before any load
        from loadgen.exchange.tls import server_context

        try:
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
    _check_client_tls(sc, path)
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
        host, _, port = listen.rpartition(":")
        _check_port("--metrics-listen", listen, port)
        try:
            port = metrics.serve(listen)
        except (OSError, ValueError, OverflowError) as exc:
            raise UsageError("--metrics-listen %s: %s" % (listen, exc)) from None
    if listen:
        print("metrics on http://%s:%d/metrics" % (listen.rpartition(":")[0] or "127.0.0.1", port), file=sys.stderr)
    where = "embedded target" if sc.target.embedded else _target_text(sc.target.url)
    print("easload: scenario %s (%s): %d devices for %.0f s against %s; %s%s; WBXML codec %s"
          % (sc.name, path, sc.population.devices, sc.duration, where,
             ratelimit.describe(sc), cap_note, codec()), file=sys.stderr)
    from loadgen.exchange.tls import TLSError

    try:
        result = _arun(start.run(sc, workers=args.workers, parts=args.workers * shard[1], confirmed=args.yes,
                                 progress=not args.quiet, handle_signals=True, shard=shard,
                                 admin="127.0.0.1:0"))  # the embedded target's admin API, printed
    except TLSError as exc:  # the throwaway CA could not be made: one line
        metrics.shutdown()
        raise UsageError("%s: [target] tls: %s" % (path, exc)) from None
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
    verdicts = _show_results(stats, sc.name, target_label, len(result.devices), sc.thresholds)
    data = summary.build(stats, scenario=sc.name, target="embedded" if sc.target.embedded
                         else ", ".join(_safe_url(u) for u in sc.target.urls), verdicts=verdicts, seed=sc.seed,
                         devices_total=len(result.devices), shard=list(shard),
                         versions=plan.drawn_versions(sc, shard, result.devices),
                         version_weights=dict(sc.population.versions),
                         mode=sc.load.mode, model=sc.load.model, easload_version=_package_version(),
                         codec=codec())
    try:
        if args.json:
            Path(args.json).write_bytes(summary.dumps(data))
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.json").write_bytes(summary.dumps(data))
            (out / "junit.xml").write_text(junit_xml(sc.name, verdicts, stats.ended - stats.started))
        if args.report:
            from loadgen.results import html as htmlreport

            size = htmlreport.write([data], args.report)
            print("report: %s (%.0f KiB)" % (args.report, size / 1024), file=sys.stderr)
    except OSError as exc:
        raise UsageError("cannot write results: %s" % exc) from None
    if listen and args.linger > 0:
        import time

        time.sleep(args.linger)
    metrics.shutdown()
    # MS-ASHTTP 2.2.2: every EAS request gets an HTTP response; one that was sent and never got one
    # (a timeout, a connection error, or still waiting when the run ended: cancelled) is "not answered",
    # so a server that reads requests and never answers is exit 3, not "0 requests, 0 errors".
    answered = sum(n for (_c, _o, status), n in stats.by_key.items() if status.isdigit())
    sent = stats.total + sum(stats.cancelled.values())
    if sent and not answered:
        problem = result.tls_problem
        print("easload: the target never answered (%s): %s" % (where, "%s: pass ca_file in [target]" % problem
              if problem else "check the URL, the network and TLS"), file=sys.stderr)
        return EXIT_UNREACHABLE
    if stats.aborted:
        print("easload: run aborted: %s" % stats.aborted, file=sys.stderr)
        return abort_exit(stats.aborted)
    if any(not ok for _t, _v, ok in verdicts) or result.interrupted:
        return EXIT_FAILED
    return EXIT_OK


SAFE_DEVICES = 10


def _rate_cap_check(sc, shard, workers, yes):
    """The request-rate cap (loadgen/wire/ratelimit.py) compared with the plan's peak request rate
    (loadgen/run/plan.py), this shard's share of both, before anything starts: a cap that would throttle
    the plan is a usage error naming the numbers and what to change, unless ``--yes`` (then a warning).
    The start line's words about it ("" when the cap is off)."""
    from loadgen.run import plan as plan_mod
    from loadgen.wire import ratelimit

    if ratelimit.resolve(sc)[0] <= 0:
        return ""  # no cap: nothing can throttle (and the plan is not computed)
    plan = plan_mod.build(sc, shard, workers)
    cap = plan["rate_cap"]
    if cap["throttles"]:
        line = plan_mod.throttling(cap["requests_per_s"], cap["why"], cap["shards"], plan["peak_requests_per_s"])
        if not yes:
            raise UsageError(line)
        print("WARNING: %s (--yes given: running throttled)" % line.split("; set [load]")[0], file=sys.stderr)
    per = " per shard" if cap["shards"] > 1 else ""
    return (", %g/s%s vs the plan's peak of about %.0f/s%s" % (cap["per_shard"], per, plan["peak_requests_per_s"], per)
            if cap["shards"] > 1 else "; the plan's peak about %.0f/s" % plan["peak_requests_per_s"])


def _check_run_flags(args):
    """``easload run``'s numeric flags, checked before the scenario is read and before any load."""
    from loadgen import scenario as scenario_mod

    check_flag("--duration", args.duration, maximum=scenario_mod.MAX_SECONDS, above=0)
    check_flag("--devices", args.devices, 1, scenario_mod.MAX_DEVICES)
    check_flag("--workers", args.workers, 1, scenario_mod.MAX_PROCESSES)
    check_flag("--shards", args.shards, 1, 100_000)
    check_flag("--linger", args.linger, 0, 86400)


def _start_time(when):
    """--start-at as unix seconds: a finite time at most a week ahead (unix seconds or RFC 3339)."""
    import math
    import time
    from datetime import datetime

    try:
        target = float(when)
    except ValueError:
        try:
            target = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError, OSError):
            raise UsageError("--start-at must be unix seconds or an RFC 3339 time, not %r" % when) from None
    if not math.isfinite(target):
        raise UsageError("--start-at must be a finite time, not %r" % when)
    if target - time.time() > 7 * 86400:
        raise UsageError("--start-at %s is more than a week ahead" % when)
    return target


def _check_client_tls(sc, path):
    """The client certificate and key loaded once before any load: a key protected by a passphrase
    (which OpenSSL would ask for on the terminal, blocking the run) or a file that is not PEM is one
    line naming the setting, not "target never answered"."""
    if sc.target.embedded or not sc.target.client_cert:
        return
    import ssl

    from loadgen.wire.transport import make_ssl_context

    key = "client_key" if sc.target.client_key else "client_cert"

    class Passphrase(Exception):
        pass

    def no_passphrase():  # asked for only when the key is encrypted; never a prompt on the terminal
        raise Passphrase

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(sc.target.client_cert, sc.target.client_key,
                                                                password=no_passphrase)
    except Passphrase:
        raise UsageError("%s: [target] %s: the key is protected by a passphrase, which easload cannot ask for "
                         "during a run: give a key without one (openssl pkey -in KEY -out PLAIN_KEY)"
                         % (path, key)) from None
    except (ssl.SSLError, OSError):
        pass  # said below, with make_ssl_context's own words
    try:
        make_ssl_context(True if sc.target.insecure else False, sc.target.ca_file, sc.target.client_cert,
                         sc.target.client_key)
    except ValueError as exc:  # transport's error for a key it cannot use (a passphrase): its own line
        raise UsageError("%s: [target] %s: %s" % (path, key, str(exc).splitlines()[0] if str(exc) else
                                                 "cannot be used")) from None
    except (ssl.SSLError, OSError) as exc:
        raise UsageError("%s: [target] %s: cannot load the client certificate and key (%s); a key protected "
                         "by a passphrase is not supported" % (path, key, getattr(exc, "reason", None) or exc)) \
            from None


def _no_policy_share(stats):
    """(devices that ended no_policy, devices) of a run."""
    total = sum(stats.final_states.values())
    return stats.final_states.get("no_policy", 0), total


# devices.provisioned stays strict (devices that acknowledged a policy, MS-ASPROV 3.1.5.1): a server that
# sends no policy (Policy Status 2, MS-ASPROV 2.2.2.53) did not provision anyone, and an operator testing
# provisioning must see that.  The hint says so and names the metric that counts such a run's devices.
_NO_POLICY_HINT = ("hint: the server sent no policy (Provision Policy Status 2) to %d of %d devices, which ended "
                   "'no_policy', not 'provisioned'; against a server without a policy use the threshold "
                   "\"devices.no_policy\" (e.g. \">= 0.99\") instead of \"devices.provisioned\"")


def _no_policy_hint(stats):
    no_policy, total = _no_policy_share(stats)
    if not no_policy or stats.final_states.get("provisioned", 0):
        return None
    return _NO_POLICY_HINT % (no_policy, total)


def _thresholds_with_hints(text, stats, verdicts):
    """The thresholds table, with a failed devices.provisioned line saying why when no device got a policy."""
    no_policy, _total = _no_policy_share(stats)
    if not no_policy or stats.final_states.get("provisioned", 0):
        return text
    lines = text.split("\n")
    for th, _value, ok in verdicts:
        if th.metric == "devices.provisioned" and not ok:
            for i, line in enumerate(lines):
                if line.strip().startswith(str(th)) and line.rstrip().endswith("FAIL"):
                    lines[i] = line + "  (server sent no policy: see devices.no_policy)"
    return "\n".join(lines)


def _safe_url(url):
    """The URL without user info or query (never credentials in a report); the port kept, which tells
    the processes of one host apart."""
    from loadgen.scenario import shown_url

    return shown_url(url)


def cmd_probe(args):
    import os
    import re

    from loadgen.cli.probe import Probe

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
        try:
            password.encode("utf-8")  # bytes that are not UTF-8 come as surrogate escapes (PEP 383)
        except UnicodeEncodeError:
            raise UsageError("the environment variable %s (--password-env) is not valid UTF-8" % args.password_env) \
                from None
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
    from loadgen.run.engine import build_population

    sc = scenario_mod.load(_scenario_file(args.scenario), secrets=False)  # nothing is sent: no password needed
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


def cmd_populate(args):
    """Fill the scenario's mailboxes over SMTP before a run on a real server (loadgen/cli/populate.py)."""
    from loadgen import scenario as scenario_mod
    from loadgen.cli import populate

    sc = scenario_mod.load(_scenario_file(args.scenario))
    host, sep, port = (args.smtp or "127.0.0.1:25").rpartition(":")
    if not sep or not host:
        raise UsageError("--smtp must be HOST:PORT, not %r" % args.smtp)
    port = _check_port("--smtp", args.smtp, port)
    host = host.strip("[]")
    check_flag("--days", args.days, 1, populate.MAX_DAYS, integer=True)
    check_flag("--per-day", args.per_day, 1, populate.MAX_PER_DAY, integer=True)
    per_day = args.per_day if args.per_day is not None else populate.daily_rate(sc)
    if sc.auth.users * args.days * per_day > populate.MAX_MESSAGES:
        raise UsageError("%d users x %d days x %d a day is more than %s messages: fewer days or --per-day"
                         % (sc.auth.users, args.days, per_day, _num(populate.MAX_MESSAGES)))
    if not is_loopback(host) and not args.yes and not args.dry_run:
        raise UsageError("the SMTP server %s is not on this machine: pass --yes to confirm filling %d mailboxes "
                         "there" % (host, sc.auth.users))
    if args.smtp_password_env and not args.smtp_user:
        raise UsageError("--smtp-password-env needs --smtp-user")
    try:
        password = populate.password_from_env(args.smtp_password_env) if args.smtp_user else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        sent, refused = populate.run(sc, host=host, port=port, days=args.days, per_day=per_day,
                                     starttls=args.starttls, user=args.smtp_user, password=password,
                                     ca_file=args.ca, insecure=args.insecure, dry_run=args.dry_run)
    except populate.PopulateError as exc:
        print("easload: %s" % exc, file=sys.stderr)
        return EXIT_UNREACHABLE
    return EXIT_FAILED if refused else EXIT_OK


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
        check_flag("--shard I/N: N", count, 1, 100_000)
    elif args.shards is not None:
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


def _wait_until(target):
    """Sleep until ``target`` (unix seconds, from _start_time) so that shards start together."""
    import time

    delay = target - time.time()
    if delay > 0:
        print("waiting %.1f s for the common start time" % delay, file=sys.stderr)
        time.sleep(delay)
    elif delay < -5:
        print("warning: the start time passed %.0f s ago; starting now" % -delay, file=sys.stderr)


def _load_summaries(names):
    """summary.json files (or --out directories holding one), their shape checked by the one reader
    (results/summary.read): a damaged file is one line naming it and the field."""
    from loadgen.results import summary

    try:
        return summary.read(names)
    except summary.SummaryError as exc:
        raise UsageError(str(exc)) from None


# What a summary that passed the shape check can still raise deep in a merge or a report: a histogram's
# content (hdrh's or the interval "counts" decoder's errors) or numbers that do not fit together.
def _damaged_errors():
    import struct
    import zlib

    from hdrh.codec import HdrCookieException, HdrHistogramSettingsException, HdrLengthException

    return (KeyError, IndexError, TypeError, ValueError, ArithmeticError, AttributeError, zlib.error, struct.error,
            HdrCookieException, HdrHistogramSettingsException, HdrLengthException)


def _show_results(stats, scenario_name, target, devices_total, thresholds):
    """The end of `run` and `merge` alike: the summary, the thresholds' table with its hints, the
    no-policy hint; the verdicts."""
    from loadgen.results.text import summary_text, thresholds_text
    from loadgen.results.thresholds import evaluate

    print(summary_text(stats, scenario_name, target, devices_total))
    verdicts = evaluate(stats, thresholds)
    if verdicts:
        print()
        print(_thresholds_with_hints(thresholds_text(verdicts), stats, verdicts))
    hint = _no_policy_hint(stats)
    if hint:
        print("\n" + hint)
    return verdicts


def cmd_merge(args):
    from loadgen.results import summary
    from loadgen.results import thresholds as grammar
    from loadgen.results.merge import MergeError, merge
    from loadgen.results.text import junit_xml

    summaries = _load_summaries(args.results)
    try:
        stats, shards, first = merge(summaries)
        versions, weights = summary.merged_versions(summaries)
    except MergeError as exc:
        raise UsageError(str(exc)) from None
    except _damaged_errors() as exc:  # a damaged or hand-edited summary.json: one line, exit 2
        raise UsageError("%s: not a valid easload summary (%s: %s)" % (
            ", ".join(args.results), type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")) from None
    thresholds = [th for th in (grammar.from_text(t["threshold"]) for t in first.get("thresholds", [])) if th]
    verdicts = _show_results(stats, first["scenario"], first.get("target"), shards["devices_total"], thresholds)
    if not shards["complete"]:
        print("\nwarning: %d of %d shards merged (%s)" % (len(shards["shards_merged"]), shards["shards_total"],
                                                         shards["shards_merged"]), file=sys.stderr)
    data = summary.build(stats, scenario=first["scenario"], target=first.get("target"), verdicts=verdicts,
                         versions=versions, **({"version_weights": weights} if weights is not None else {}),
                         **{key: first.get(key) for key in ("seed", "mode", "model", "easload_version")},
                         codec="/".join(sorted({s["codec"] for s in summaries if isinstance(s.get("codec"), str)}))
                         or None,  # shards run with different codecs: both named (e.g. "cython/python")
                         **dict(shards, shard=[0, 1]))
    if args.out:
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.json").write_bytes(summary.dumps(data))
            (out / "junit.xml").write_text(junit_xml(first["scenario"], verdicts, stats.ended - stats.started))
        except OSError as exc:
            raise UsageError("cannot write results: %s" % exc) from None
    if stats.aborted:  # a shard stopped itself (backlog, abort_on_fail): the run's verdict is that
        print("easload: run aborted: %s" % stats.aborted, file=sys.stderr)
        return abort_exit(stats.aborted)
    if any(not ok for _t, _v, ok in verdicts) or stats.interrupted or not shards["complete"]:
        return EXIT_FAILED
    return EXIT_OK


def _package_version():
    """The installed distribution's version; in a checkout run from its sources, the package's own."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("easload")
    except (ImportError, PackageNotFoundError):
        from loadgen import __version__

        return __version__


def cmd_report(args):
    """Render saved or merged summary.json files as one self-contained HTML report."""
    from loadgen.results import html as htmlreport

    summaries = _load_summaries(args.results)
    baseline = _baseline_side(args.baseline) if getattr(args, "baseline", None) else None
    try:
        size = htmlreport.write(summaries, args.output, baseline=baseline)
    except OSError as exc:
        raise UsageError("%s: %s" % (args.output, exc.strerror or exc)) from None
    except _damaged_errors() as exc:  # a histogram's content, or results that do not belong together
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(text if isinstance(exc, ValueError) and not isinstance(exc, UnicodeError)
                         else "%s: not a valid easload summary (%s: %s)" % (", ".join(args.results),
                                                                            type(exc).__name__, text)) from None
    print("report: %s (%.0f KiB) from %d result(s)" % (args.output, size / 1024, len(summaries)), file=sys.stderr)
    return EXIT_OK


def _baseline_side(name):
    """``report --baseline``: the baseline's merged result (loadgen/results/compare.py Side)."""
    from loadgen.results import compare
    from loadgen.results.merge import MergeError

    try:
        return compare.Side(_load_summaries(compare.result_files(name)), name)
    except (compare.CompareError, MergeError) as exc:
        raise UsageError("--baseline %s" % exc if str(exc).startswith(name) else "--baseline %s: %s" % (name, exc)) \
            from None
    except _damaged_errors() as exc:
        raise UsageError("--baseline %s: not a valid easload summary (%s)" % (name, type(exc).__name__)) from None


def cmd_validate(args):
    from loadgen import scenario as scenario_mod

    for name in args.scenarios:
        path = _scenario_file(name)
        sc = scenario_mod.load(path, secrets=False)  # the password variable is needed to send load, not here
        print("%s: ok (%s: %d devices, %.0f s, %d thresholds, %d events)"
              % (path, sc.name, sc.population.devices, sc.duration, len(sc.thresholds), len(sc.events)))
        ignored = _embedded_only_warning(sc)
        if ignored:
            print("%s: %s" % (path, ignored), file=sys.stderr)
    return EXIT_OK


def cmd_scenarios(args):
    """The shipped scenarios by name with their descriptions (loadgen/cli/shipped.py)."""
    import shutil
    import textwrap

    from loadgen.cli import shipped

    found = shipped.names()
    if not found:
        raise UsageError("no shipped scenarios found (the package's loadgen.scenarios data is missing)")
    width = max(len(name) for name in found) + 2
    columns = max(60, min(120, shutil.get_terminal_size((100, 24)).columns))
    print("Shipped scenarios (easload run NAME; easload run NAME --dry-run shows the plan), from %s:"
          % shipped.directory())
    for name, path in found.items():
        lines = textwrap.wrap(shipped.description(path) or "-", columns - width - 2) or ["-"]
        print("  %s%s" % (name.ljust(width), lines[0]))
        for line in lines[1:]:
            print("  %s%s" % (" " * width, line))
    return EXIT_OK


def _scenario_file(argument):
    """The file a scenario argument names: a path, or the name of a shipped scenario (loadgen/cli/shipped.py);
    a mistyped name says which one is close."""
    from loadgen.cli import shipped

    found = shipped.find(argument)
    if found is not None:
        return found
    close = shipped.suggestion(argument)
    if close:
        raise UsageError("%s: no such scenario file or shipped scenario (did you mean '%s'? easload scenarios "
                         "lists them)" % (argument, close))
    return Path(argument)  # scenario.load says: no such scenario file


# [target] keys only the embedded target reads (loadgen/exchange/launch.py); against a server's URL they change
# nothing, which the operator is told (tests/cli/test_cli_basics.py)
EMBEDDED_ONLY = ("allow_non_provisionable", "no_policy", "policy_refresh_minutes", "listen", "ping_min", "ping_max",
                 "mail_per_user_per_hour", "processes", "path", "ignore_policy_key", "options_without_provision",
                 "auth_realm", "challenge_first", "autodiscover_redirect", "tls", "tls_cert", "tls_key",
                 "history_days", "daily_messages", "inbox_items")


def _embedded_only_warning(sc):
    """One warning line naming each embedded-only [target] key the scenario's file sets when its target is
    a server's URL (the file's or --target's); None otherwise."""
    import dataclasses
    import tomllib

    if sc.target.embedded:
        return None
    try:
        given = tomllib.loads(Path(sc.path).read_text(encoding="utf-8")).get("target", {})
    except (OSError, ValueError):  # a scenario parsed from text: the values that differ from the defaults
        given = {f.name: 0 for f in dataclasses.fields(sc.target) if f.name in EMBEDDED_ONLY and getattr(
            sc.target, f.name) != (f.default if f.default is not dataclasses.MISSING else f.default_factory())}
    ignored = [key for key in EMBEDDED_ONLY if key in given]
    if not ignored:
        return None
    return ("warning: [target] %s %s for the embedded target only: ignored against %s (a server applies its own "
            "settings, e.g. Exchange's heartbeat bounds)" % (", ".join(ignored), "is" if len(ignored) == 1 else "are",
                                                              _target_text(sc.target.url)))


# --------------------------------------------------------------------------- target


ADMIN_TOKEN_ENV = "EASLOAD_ADMIN_TOKEN"


def _admin_token(args):
    """The admin API's bearer token given by the operator: --admin-token-file, the EASLOAD_ADMIN_TOKEN
    variable, or --admin-token (argv: visible to every local user, so a warning); None: generate one."""
    import os

    given = [name for name, value in (("--admin-token-file", args.admin_token_file),
                                       ("--admin-token", args.admin_token)) if value]
    if len(given) > 1:
        raise UsageError("give --admin-token-file or --admin-token, not both")
    if args.admin_token_file:
        try:
            with open(args.admin_token_file, "rb") as f:
                token = f.read(4097).strip()
        except OSError as exc:
            raise UsageError("--admin-token-file %s: %s" % (args.admin_token_file, exc.strerror or exc)) from None
        source = "--admin-token-file"
    elif args.admin_token:
        print("easload target: warning: --admin-token is visible to every local user (ps); use --admin-token-file "
              "or %s" % ADMIN_TOKEN_ENV, file=sys.stderr)
        token, source = args.admin_token.encode("utf-8", "surrogateescape"), "--admin-token"
    elif os.environb.get(ADMIN_TOKEN_ENV.encode()) is not None:
        token, source = os.environb[ADMIN_TOKEN_ENV.encode()].strip(), ADMIN_TOKEN_ENV
    else:
        return None
    try:
        text = token.decode("ascii")
    except UnicodeDecodeError:
        text = None
    # RFC 6750 2.1: b64token characters only (it goes into an Authorization header)
    if not text or len(text) > 4096 or not all(c.isalnum() or c in "-._~+/=" for c in text):
        raise UsageError("%s: the admin token must be 1 to 4096 characters of A-Z a-z 0-9 - . _ ~ + / =" % source)
    return text


def _on_sigterm_as_sigint():
    """SIGTERM takes the same shutdown path as Ctrl-C (asyncio.Runner's SIGINT handler cancels the
    main task; the KeyboardInterrupt that follows ends ``easload target`` cleanly, its TLS directory
    removed); returns a function that puts the old handler back."""
    import signal

    def handler(_signum, frame):
        current = signal.getsignal(signal.SIGINT)
        if callable(current):
            current(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (tests calling main() from a thread)
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, old)


def _check_target_flags(args):
    from loadgen import scenario as scenario_mod

    check_flag("--users", args.users, 1, scenario_mod.MAX_USERS)
    check_flag("--processes", args.processes, 1, scenario_mod.MAX_PROCESSES)
    check_flag("--ping-min", args.ping_min, 1, 86400)
    check_flag("--ping-max", args.ping_max, 1, 86400)
    if args.ping_min > args.ping_max:
        raise UsageError("--ping-min %d is above --ping-max %d" % (args.ping_min, args.ping_max))
    check_flag("--policy-refresh-minutes", args.policy_refresh_minutes, 0, 527040)
    from loadgen.exchange.state import MAX_DAILY_MESSAGES, MAX_HISTORY_DAYS, MAX_INBOX

    check_flag("--history-days", args.history_days, 0, MAX_HISTORY_DAYS)
    check_flag("--daily-messages", args.daily_messages, 0, MAX_DAILY_MESSAGES)
    check_flag("--inbox-items", args.inbox_items, 0, MAX_INBOX)
    check_flag("--max-devices", args.max_devices, 1, 100_000)
    check_flag("--max-concurrency", args.max_concurrency, 1, 100_000)
    check_flag("--command-rate", args.command_rate, maximum=scenario_mod.MAX_RATE, above=0)
    check_flag("--command-burst", args.command_burst, 1, scenario_mod.MAX_RATE)
    check_flag("--http-port", args.http_port, 0, 65535)
    for flag, pattern in (("--user-pattern", args.user_pattern), ("--password-pattern", args.password_pattern)):
        problem = scenario_mod.pattern_problem(pattern)
        if problem:
            raise UsageError("%s %s" % (flag, problem))
    for value in args.listen or ():
        _host_port(value, "--listen")


def cmd_target(args):
    _check_target_flags(args)
    restore = _on_sigterm_as_sigint()
    try:
        return _cmd_target(args)
    finally:
        restore()


def _cmd_target(args):
    import secrets

    from loadgen.exchange.state import TargetState

    raise_file_limit()
    kw = dict(allow_non_provisionable=args.allow_non_provisionable, no_policy=args.no_policy,
              refresh_interval_min=args.policy_refresh_minutes, max_devices=args.max_devices,
              ping_min=args.ping_min, ping_max=args.ping_max, abq_default=args.abq_default,
              max_concurrency=args.max_concurrency, command_rate=args.command_rate, command_burst=args.command_burst,
              history_days=args.history_days, daily_messages=args.daily_messages, inbox_items=args.inbox_items)
    if args.token_secret_file:
        from loadgen.exchange.bearer import SecretFileError, secret_from_file

        try:  # shared with the runs' token command (easload token --secret-file): their Bearer tokens
            kw["token_secret"] = secret_from_file(args.token_secret_file, create=True)
        except SecretFileError as exc:
            raise UsageError("--token-secret-file: %s" % exc) from None
        print("OAuth Bearer tokens for its users: [auth] token_command = \"easload token --secret-file %s\""
              % args.token_secret_file, file=sys.stderr)
    try:
        if args.users_csv:
            state = TargetState.from_csv(args.users_csv, **kw)
        else:
            state = TargetState(users=args.users, user_pattern=args.user_pattern,
                                password_pattern=args.password_pattern, **kw)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(str(exc)) from None
    admin = None
    given = _admin_token(args)
    token = given or secrets.token_urlsafe(24)
    if args.admin_listen:
        admin = _host_port(args.admin_listen, "--admin-listen")
    listens = args.listen or ["127.0.0.1:8443"]
    tls, pki = _target_tls(args, listens)
    try:
        if args.processes != 1 or len(listens) > 1:
            return _target_cluster(args, kw, listens, admin, token, len(state.passwords), tls, given is not None)
        return _target_single(args, listens, state, admin, token, tls, given is not None)
    finally:
        if pki is not None:  # the throwaway CA's directory, on every way out (Ctrl-C, SIGTERM, an error)
            pki.cleanup()


def cmd_token(args):
    """``easload token --secret-file F USER``: an OAuth Bearer token for USER that a target started with
    ``--token-secret-file F`` accepts (loadgen/exchange/bearer.py), on stdout: the command a scenario
    names as ``[auth] token_command`` (the user name is its last argument)."""
    import time

    from loadgen.exchange.bearer import SecretFileError, mint, secret_from_file

    if not args.user or any(c.isspace() for c in args.user):
        raise UsageError("token: USER must be one user name, without spaces")
    try:
        secret = secret_from_file(args.secret_file)
    except SecretFileError as exc:
        raise UsageError("--secret-file: %s" % exc) from None
    print(mint(secret, args.user, time.time() + args.lifetime))
    return EXIT_OK


def _target_single(args, listens, state, admin, token, tls, given):
    from loadgen.exchange.server import serve_forever

    host, port = _host_port(listens[0], "--listen")

    def ready(url, admin_url=None, http_url=None):
        print("easload target listening on %s (%d users)" % (url, len(state.passwords)), file=sys.stderr, flush=True)
        if http_url is not None:
            print("plain HTTP (Autodiscover redirect probe, 302 to https) on %s" % http_url, file=sys.stderr,
                  flush=True)
        if admin_url is not None:
            shown = "(the one given)" if given else token
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
    from loadgen.exchange import tls

    if args.tls_key and not args.tls_cert:
        raise UsageError("--tls-key needs --tls-cert")
    if args.tls_self_signed and args.tls_cert:
        raise UsageError("--tls-self-signed and --tls-cert do not combine: one certificate or the other")
    if args.http_port is not None and not (args.tls_cert or args.tls_self_signed):
        raise UsageError("--http-port is the plain-HTTP side of a TLS target: give --tls-cert or --tls-self-signed")
    if args.tls_key_type and not args.tls_self_signed:
        raise UsageError("--tls-key-type is the kind of the --tls-self-signed certificate")
    if args.tls_no_resumption and not (args.tls_cert or args.tls_self_signed):
        raise UsageError("--tls-no-resumption needs --tls-cert or --tls-self-signed")
    pki = None
    options = {}
    try:
        if args.tls_self_signed:
            from loadgen.exchange.cluster import listen_addresses

            pki = tls.TemporaryPKI(tls.loopback_hosts(h for h, _ in listen_addresses(listens, args.processes)),
                                   key_type=args.tls_key_type or tls.DEFAULT_KEY_TYPE)
            options = dict(tls_cert=pki.pki.cert, tls_key=pki.pki.key)
            print("easload target: TLS with a throwaway CA; clients trust it with --ca %s (or ca_file); removed "
                  "when the target stops" % pki.pki.ca, file=sys.stderr, flush=True)
        elif args.tls_cert:
            tls.server_context(args.tls_cert, args.tls_key)  # a bad file is a usage error, before listening
            options = dict(tls_cert=args.tls_cert, tls_key=args.tls_key)
    except ValueError as exc:  # TLSError, or a bad --listen for the certificate's addresses
        raise UsageError(str(exc)) from None
    if args.tls_no_resumption:
        options["tls_resumption"] = False
    if args.http_port is not None:
        if args.processes != 1 or len(listens) > 1:
            raise UsageError("--http-port is for a single target process")
        options["http_port"] = args.http_port
    return options, pki


def _target_cluster(args, kw, listens, admin, token, users, tls=None, given=False):
    """``easload target --processes N``: users sharded over N processes (loadgen/exchange/cluster.py)."""
    from loadgen.exchange.cluster import ClusterError, TargetCluster, serve_cluster

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
            shown = "(the one given)" if given else token
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
    return host.strip("[]") or "127.0.0.1", _check_port(flag, value, port)


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
        raw = _read_input(args.file, True)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError("%s: not UTF-8 text (byte %d)" % (args.file, exc.start)) from None
        try:
            data = _wbxml.encode(_wbxml.from_xml(text))
        except _wbxml.WBXMLError as exc:
            raise UsageError("%s: %s" % (args.file, str(exc).splitlines()[0])) from None
        except RecursionError:  # the depth check comes first; kept so that no nesting is a traceback
            raise UsageError("%s: elements nested too deeply" % args.file) from None
        sys.stdout.buffer.write(data)
    return EXIT_OK


# --------------------------------------------------------------------------- main


_EXAMPLES = """\
examples:
  easload run                      the default scenario (smoke: 200 devices, 20 s) against the embedded target
  easload scenarios                the shipped scenarios, with their descriptions
  easload run policy-change --duration 2m
                                   a shipped scenario by name; durations as 20, 90s, 2m, 1h
  easload run my.toml --dry-run    the plan: devices, request rate over time, the rate cap; sends nothing
  easload run my.toml --target https://mail.example.com/Microsoft-Server-ActiveSync --yes
  easload run my.toml --out results -q --metrics-listen ''
                                   for CI: results/summary.json and junit.xml; the exit status is the verdict
  easload validate my.toml         check a scenario file (no password variable needed)
  easload merge shard-*/ --out merged && easload report merged -o report.html
"""

_EXIT_CODES = """\
exit status:
  0  every threshold passed
  1  a threshold failed, or the run was interrupted (SIGINT/SIGTERM)
  2  usage error: one line naming the flag, file or key; nothing was sent
  3  the target never answered (fail fast: no HTTP response within about 10 s of the first request)
  4  the run stopped itself (its queued tasks exceeded [workload] backlog_limit)
  5  an abort_on_fail threshold failed during the run and stopped it
"""


def _parser():
    p = _Parser(prog="easload", description="Load generator for Exchange ActiveSync servers",
                epilog=_EXAMPLES + "\n" + _EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action=_VersionAction, help="print the version and the WBXML codec in use, and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug information")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run a scenario (default: scenarios/smoke.toml against the embedded target)",
                       epilog=_EXAMPLES + "\n" + _EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("scenario", nargs="?", help="scenario TOML file, or the name of a shipped scenario "
                   "(easload scenarios lists them); default smoke")
    r.add_argument("--duration", type=_duration(), help="override the scenario's duration (20, 90s, 2m, 1h)")
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
    r.add_argument("--linger", type=_duration(), default=0.0, help="keep the metrics endpoint up this long after the "
                   "run (30, 30s, 2m)")
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
    t.add_argument("--admin-token", help="bearer token of the admin API (default: generated, printed once); "
                   "visible to every local user in the process list: prefer --admin-token-file or %s" % ADMIN_TOKEN_ENV)
    t.add_argument("--admin-token-file", help="read the admin API's bearer token from this file")
    t.add_argument("--max-devices", type=int, default=100, help="device partnerships per mailbox (status 177)")
    t.add_argument("--ping-min", type=_duration(whole=True), default=60, help="smallest Ping HeartbeatInterval "
                   "(60, 1m)")
    t.add_argument("--ping-max", type=_duration(whole=True), default=3540, help="largest Ping HeartbeatInterval "
                   "(3540, 59m)")
    t.add_argument("--history-days", type=int, default=3, help="days of received mail in each mailbox (default 3)")
    t.add_argument("--daily-messages", type=int, default=20, help="messages received per day of history (default 20)")
    t.add_argument("--inbox-items", type=int, help="messages in each Inbox instead of the history's")
    t.add_argument("--abq-default", default="Allow", choices=("Allow", "Block", "Quarantine"),
                   help="organisation default access level")
    t.add_argument("--max-concurrency", type=int, default=10, help="concurrent requests per user (503 beyond)")
    t.add_argument("--command-rate", type=float, default=20.0, help="per-device command budget refill (/s)")
    t.add_argument("--command-burst", type=float, default=600.0, help="per-device command budget size")
    t.add_argument("--tls-cert", help="serve HTTPS (as Exchange) with this PEM certificate (chain)")
    t.add_argument("--tls-key", help="the certificate's PEM private key (when not in the --tls-cert file)")
    t.add_argument("--tls-self-signed", action="store_true", help="serve HTTPS with a throwaway CA and certificate "
                   "for 127.0.0.1/localhost (the CA's path is printed: clients pass it as --ca / ca_file)")
    t.add_argument("--tls-key-type", choices=("rsa", "ec"), help="the --tls-self-signed certificate's key: rsa "
                   "(RSA 2048, the default, as Exchange's own certificate) or ec (ECDSA P-256)")
    t.add_argument("--tls-no-resumption", action="store_true", help="refuse TLS session resumption (no session "
                   "tickets, no session ids): every connection a full handshake")
    t.add_argument("--http-port", type=int, help="with TLS, also listen on plain HTTP on this port: the Autodiscover "
                   "redirect probe (GET) gets a 302 to https, anything else 403")
    t.add_argument("--token-secret-file", help="the secret its OAuth Bearer tokens are signed with, kept in this "
                   "file (made, 0600, when missing): runs get tokens with [auth] token_command = "
                   "\"easload token --secret-file FILE\" (default: a random secret, tokens only for runs that "
                   "start the target themselves)")
    t.set_defaults(func=cmd_target)

    tk = sub.add_parser("token", help="print an OAuth Bearer token for USER that a target started with "
                        "--token-secret-file accepts (a scenario's [auth] token_command)")
    tk.add_argument("--secret-file", required=True, help="the target's --token-secret-file")
    tk.add_argument("--lifetime", type=_duration(), default=3600.0, help="seconds the token is valid (3600, 1h)")
    tk.add_argument("user", metavar="USER")
    tk.set_defaults(func=cmd_token)

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
    pr.add_argument("--heartbeat", type=_duration(whole=True), default=60, help="Ping heartbeat (60, 1m)")
    pr.add_argument("--trace", help="write every exchange and verdict as JSON lines to this file")
    pr.set_defaults(func=cmd_probe)

    dv = sub.add_parser("devices", help="list the partnerships a scenario creates (csv) or a PowerShell cleanup")
    dv.add_argument("scenario", help="scenario file or shipped scenario name")
    dv.add_argument("--shard", help="I/N: only this shard's devices")
    dv.add_argument("--format", choices=("csv", "powershell"), default="csv")
    dv.set_defaults(func=cmd_devices)

    po = sub.add_parser("populate", help="fill a scenario's mailboxes on a real server over SMTP (a history of "
                        "N days, before the run)")
    po.add_argument("scenario", help="scenario file or shipped scenario name")
    po.add_argument("--smtp", default="127.0.0.1:25", help="SMTP server HOST:PORT (default 127.0.0.1:25)")
    po.add_argument("--days", type=int, default=3, help="days of history (default 3)")
    po.add_argument("--per-day", type=int, help="messages per mailbox per day (default: the scenario's workload "
                    "profile or [mail] rate)")
    po.add_argument("--starttls", action="store_true", help="STARTTLS before sending (certificate verified)")
    po.add_argument("--ca", help="CA bundle to verify the SMTP server's certificate")
    po.add_argument("--insecure", action="store_true", help="do not verify the certificate (not recommended)")
    po.add_argument("--smtp-user", help="SMTP AUTH user")
    po.add_argument("--smtp-password-env", metavar="VAR", help="environment variable holding the SMTP password")
    po.add_argument("--yes", action="store_true", help="confirm an SMTP server that is not on this machine")
    po.add_argument("--dry-run", action="store_true", help="say what would be sent, send nothing")
    po.set_defaults(func=cmd_populate)

    mg = sub.add_parser("merge", help="merge shard results exactly, evaluate the thresholds, exit 0/1/2")
    mg.add_argument("results", nargs="+", help="summary.json files or --out directories of the shards")
    mg.add_argument("--out", help="directory for the merged summary.json and junit.xml")
    mg.set_defaults(func=cmd_merge)

    rp = sub.add_parser("report", help="HTML report from saved (or several shards') summary.json files")
    rp.add_argument("results", nargs="+", help="summary.json files or the --out directories holding them")
    rp.add_argument("-o", "--output", default="report.html")
    rp.add_argument("--baseline", metavar="RESULT", help="a last good result (as easload compare takes it): the "
                                                        "report shows the comparison with it")
    rp.set_defaults(func=cmd_report)
    from loadgen.cli import compare

    compare.add_parser(sub)

    v = sub.add_parser("validate", help="check scenario files without running them")
    v.add_argument("scenarios", nargs="+", help="scenario files or shipped scenario names")
    v.set_defaults(func=cmd_validate)

    sc = sub.add_parser("scenarios", help="list the shipped scenarios (easload run NAME) with their descriptions")
    sc.set_defaults(func=cmd_scenarios)

    w = sub.add_parser("wbxml", help="decode WBXML to XML or encode XML to WBXML")
    w.add_argument("action", choices=("decode", "encode"))
    w.add_argument("file", help="input file, or - for standard input")
    w.set_defaults(func=cmd_wbxml)
    p._easload_commands = dict(sub.choices)  # for "did you mean" (_unknown_arguments)
    return p


def main(argv=None):
    parser = _parser()
    tokens = sys.argv[1:] if argv is None else list(argv)
    if tokens and tokens[0].startswith("-") and tokens[0].split("=", 1)[0] not in parser._option_string_actions:
        args, extra = argparse.Namespace(command=None), tokens  # a command's flag before any command
    else:
        args, extra = parser.parse_known_args(tokens)
    if extra:  # a mistyped flag: one line with the closest one
        print(_unknown_arguments(parser, args, extra), file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command is None:  # "easload" alone: the help, never a load ("easload run" runs the default scenario)
        parser.print_help()
        return EXIT_OK
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
