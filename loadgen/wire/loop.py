"""The event loop every easload process runs (the run, its workers, the target's processes).

uvloop when it is installed, else asyncio's own; and the open-file limit raised to the hard one,
since each device holds up to two connections and each held Ping one socket in the target.
"""


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


__all__ = ["loop_factory", "raise_file_limit"]
