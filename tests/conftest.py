"""Shared fixtures: the codec twins (multidict/yarl style); the global metrics registry left clean.

Tests that take ``codec`` run against the pure twin and the compiled one.  The
compiled one is skipped when it was not built -- unless EASLOAD_REQUIRE_EXTENSIONS
is set (CI sets it), where a missing extension is a failure.
"""

import os

import pytest

from _wbxml import _pure


def _compiled():
    try:
        from _wbxml import _codec
    except ImportError:
        return None
    if (_codec.__file__ or "").endswith(".py"):
        return None
    return _codec


COMPILED = _compiled()


@pytest.fixture(params=["python", "cython"])
def codec(request):
    if request.param == "python":
        return _pure
    if COMPILED is None:
        if os.environ.get("EASLOAD_REQUIRE_EXTENSIONS"):
            pytest.fail("the compiled codec _wbxml._codec is not built (EASLOAD_REQUIRE_EXTENSIONS is set)")
        pytest.skip("compiled codec not built")
    return COMPILED


@pytest.fixture
def both_codecs():
    if COMPILED is None:
        if os.environ.get("EASLOAD_REQUIRE_EXTENSIONS"):
            pytest.fail("the compiled codec _wbxml._codec is not built (EASLOAD_REQUIRE_EXTENSIONS is set)")
        pytest.skip("compiled codec not built")
    return _pure, COMPILED


@pytest.fixture(autouse=True)
def _no_target_collector_left():
    """The run's Prometheus registry is global: a test whose in-process run attached its embedded
    target's collector (loadgen/cli/start.py) must not leave it for the next test."""
    yield
    from loadgen.results import metrics

    metrics.attach_collector(None)
