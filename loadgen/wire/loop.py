"""The event loop every easload process runs (the run, its workers, the target's processes).

uvloop when it is installed, else asyncio's own; and the open-file limit raised to the hard one,
since each device holds up to two connections and each held Ping one socket in the target.
"""

import signal


def loop_factory():
    """``asyncio.Runner``'s ``loop_factory``: uvloop's new_event_loop, or None (asyncio's default)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def raise_file_limit():
    """Take the hard open-file limit as the soft one (getrlimit(2)); nothing where it cannot be read."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def install_stop_signals(loop, which, callback):
    """``callback`` on each signal of ``which`` (True: SIGINT and SIGTERM; or a tuple of signals)
    through the loop; the signals actually handled (none where the loop cannot: not the main
    thread, no signals on this platform).  The caller removes them with loop.remove_signal_handler."""
    signals = (signal.SIGINT, signal.SIGTERM) if which is True else tuple(which or ())
    handled = []
    for sig in signals:
        try:
            loop.add_signal_handler(sig, callback)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    return handled


__all__ = ["install_stop_signals", "loop_factory", "raise_file_limit"]
