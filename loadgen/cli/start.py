"""A run from its start: the embedded Exchange started when the scenario uses it, the devices'
TLS checked once for every https URL, the run context made, then the run (one process or
``--workers N``), and whatever was started stopped however the run ends.

``easload run`` goes through :func:`run`; so do the tests that run a scenario end to end.
"""

import asyncio
import sys

from loadgen.exchange import launch as launch_mod
from loadgen.results import metrics
from loadgen.run import engine
from loadgen.run.context import RunLoad
from loadgen.scenario import shown_url
from loadgen.wire import tls as wire_tls
from loadgen.wire.loop import install_stop_signals

TLS_HINT = ("easload: %s at %s: the devices cannot connect; trust its CA with ca_file in [target] "
            "(or insecure = true / --insecure, not recommended)\n")


async def run(scenario, *, workers=1, target_state=None, admin=None, parts=None, confirmed=False, stream=None,
              progress=True, handle_signals=False, attach_metrics=True, stop=None, **engine_options):
    """Run ``scenario``: start its embedded target (loadgen/exchange/launch.py) when it names no URL,
    check TLS (:func:`tls_preflight`), then ``engine.run`` (or ``workers.run_workers`` with
    ``workers`` > 1); an engine.RunResult, its ``tls_problem`` the first problem found.

    ``target_state``: the embedded target's TargetState (one process; tests look into it);
    ``admin="127.0.0.1:0"``: that target's admin API during the run; ``parts``: the processes
    the run is split over, for the rate cap (default ``workers``); ``confirmed``: the operator's
    ``--yes``.  ``handle_signals``: True for SIGINT and SIGTERM, handled from the start, so a
    signal while the target starts still takes the normal way out.  Other keyword arguments go to
    engine.run (``shard``, ``on_tick``, ``ready``)."""
    stream = stream or sys.stderr
    loop = asyncio.get_running_loop()
    handled = []
    if workers == 1:
        stop = stop if stop is not None else asyncio.Event()
        handled = install_stop_signals(loop, handle_signals, stop.set)
    launched = None
    try:
        if scenario.target.embedded:
            launched = await launch_mod.launch(scenario, state=target_state, admin=admin if workers == 1 else None,
                                               stream=stream)
            scenario = launched.scenario  # with [target] tls: the throwaway CA the devices trust
        if attach_metrics and workers == 1:
            # a single embedded target's easload_target_* series on the run's endpoint (a cluster serves
            # its merged ones on its admin endpoint: exchange/cluster.py)
            metrics.attach_collector(launched.collector if launched is not None else None)
        urls = launched.urls if launched is not None else scenario.target.url
        problems = await tls_preflight(scenario, urls, stream)
        context = RunLoad.for_run(scenario, parts or workers, confirmed)
        if workers > 1:
            from loadgen.run.workers import run_workers

            result = await run_workers(scenario, workers, target=launched, context=context, progress=progress,
                                       stream=stream, handle_signals=handle_signals, stop=stop)
        else:
            result = await engine.run(scenario, target=launched, context=context, progress=progress, stream=stream,
                                      attach_metrics=attach_metrics, stop=stop, **engine_options)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        if launched is not None:
            await launched.close()
    result.tls_problem = problems[0][1] if problems else None
    return result


async def tls_preflight(scenario, urls, stream):
    """The devices' TLS check before any load, once for every https URL (each distinct host and
    port; loadgen/wire/tls.py), each problem said once on ``stream`` without the URL's user info
    (RFC 3986 3.2.1); [(URL, problem)].  Nothing is checked when the operator turned verification
    off."""
    if scenario.target.insecure:
        return []
    from loadgen.wire.transport import make_ssl_context

    urls = [urls] if isinstance(urls, str) else list(urls)
    if not any(u.lower().startswith("https:") for u in urls):
        return []
    problems = await wire_tls.preflight(urls, make_ssl_context(False, scenario.target.ca_file))
    for url, problem in problems:  # the devices will fail every request: say why once, clearly
        stream.write(TLS_HINT % (problem, shown_url(url)))
    if problems:
        stream.flush()
    return problems


__all__ = ["run", "tls_preflight"]
