"""Suite-wide guarantees: nothing is left behind, and every test is bounded in time.

Two bounds, so that a regression that hangs fails with the test's name instead of
stalling the run:

* **Trio's**, for every Trio test: the test's body runs in a cancel scope with a
  deadline on the run's own clock, :data:`TRIO_BOUND` seconds by default. Under
  ``autojump_clock`` a hung test therefore fails at once (the clock jumps to the
  deadline); a ``MockClock`` test is also held to the same number of real seconds (a
  test that keeps Trio busy without moving its clock). When the deadline passes the
  body is cancelled, its fixtures are torn down as usual, and the test fails with
  :class:`TimeBoundExceeded`, chained to where it was waiting. For a Hypothesis test
  the bound holds for each example, and an example that exceeds it ends the test at
  once: shrinking a hang would cost the bound again for every attempt.
* **pytest-timeout's**, for every test (``timeout`` in pyproject.toml): the whole-process
  backstop for sync tests and for hangs that Trio cannot interrupt (a shielded scope,
  a thread or a C call that never returns, a fixture's teardown). It dumps every
  thread's stack, naming the test first, and ends the process. For a Trio test it is
  moved past Trio's bound (by :data:`BACKSTOP_GRACE`) so that Trio's clean failure
  comes first.

``@pytest.mark.timeout(SECONDS)`` (pytest-timeout's marker) says how long one test may
take: Trio's bound for a Trio test, the backstop for a sync one. ``--timeout=0`` lifts
both, for a session in a debugger.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import os
import shutil
import subprocess
import threading
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import Any

import attrs
import pytest
import pytest_timeout
import trio
import trio.testing
from helpers import child_processes, postgres_binaries

from benchmarks._postgres import Cluster, throwaway_cluster

#: Seconds a Trio test's body may take unless its ``timeout`` marker says otherwise.
TRIO_BOUND = 120.0
#: How much later than Trio's bound pytest-timeout's backstop fires for a Trio test.
BACKSTOP_GRACE = 60.0

_TRIO_BOUND = pytest.StashKey[float]()
_WRAPPED = "_trio_pipe_time_bounded"


class TimeBoundExceeded(BaseException):
    """A Trio test ran past its time bound. A BaseException, so that Hypothesis ends
    the test with it instead of shrinking (which would run into the bound again)."""


def _leftover_containers() -> list[str]:
    if shutil.which("docker") is None:
        return []
    listed = subprocess.run(
        ["docker", "ps", "--all", "--filter", "name=trio-pipe-", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return listed.stdout.split() if listed.returncode == 0 else []


@pytest.fixture(scope="session", autouse=True)
def nothing_is_left_behind() -> Iterator[None]:
    """After the whole suite: no worker process, container or SSH session of ours."""
    yield
    assert child_processes() == [], "processes outlived the test suite"
    assert _leftover_containers() == [], "containers outlived the test suite"


# -- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the whole run (initdb and the server as the
    ``postgres`` user, loopback, a temporary directory; the server stops with the run
    however it ends: benchmarks/_postgres.py).
    Skipped where no PostgreSQL server binaries are installed, unless
    ``TRIO_PIPE_REQUIRE_POSTGRES=1`` (as in CI, .ci/run), where that fails."""
    with throwaway_cluster(postgres_binaries(), durable=False) as cluster:
        yield cluster


_databases = itertools.count()


@pytest.fixture
def new_postgres_database(postgres_cluster: Cluster) -> Iterator[Callable[[], str]]:
    """Makes empty databases in the run's cluster (returning each one's URL), and
    drops them after the test."""
    import psycopg

    made: list[str] = []

    def new() -> str:
        name = f"test_{os.getpid()}_{next(_databases)}"
        with psycopg.connect(postgres_cluster.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        made.append(name)
        return postgres_cluster.dsn(name)

    yield new
    with psycopg.connect(postgres_cluster.dsn(), autocommit=True) as conn:
        for name in made:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def postgres_url(new_postgres_database: Callable[[], str]) -> str:
    """The URL of an empty database in the run's cluster."""
    return new_postgres_database()


# -- time bounds --------------------------------------------------------------------------


def _marked_seconds(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker("timeout")
    if marker is None:
        return None
    seconds = marker.kwargs.get("timeout", marker.args[0] if marker.args else None)
    if seconds is None or not float(seconds) > 0:  # pytest-timeout's "no timeout"
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.timeout({seconds!r}), but every test is "
            "bounded: give it the seconds it needs"
        )
    return float(seconds)


@pytest.hookimpl(trylast=True)  # after pytest-trio has marked the Trio tests
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        seconds = _marked_seconds(item)
        if item.get_closest_marker("trio") is not None and config.getoption("timeout") != 0:
            item.stash[_TRIO_BOUND] = TRIO_BOUND if seconds is None else seconds


@attrs.frozen
class _Bound:
    nodeid: str
    seconds: float
    hypothesis: bool


#: The bound of the test running now: read by the wrapper when it runs, since a
#: Hypothesis test's inner function is shared by its parametrized items.
_current_bound: contextvars.ContextVar[_Bound] = contextvars.ContextVar("_current_bound")


def _bounded(test: Callable[..., Awaitable[object]]) -> Callable[..., Awaitable[object]]:
    """*test* (a coroutine function) with its body in a cancel scope with the current
    test's bound as its deadline, the signature kept (pytest-trio passes fixtures by
    name; Hypothesis, its examples)."""

    @functools.wraps(test)
    async def bounded(*args: Any, **kwargs: Any) -> object:
        __tracebackhide__ = True
        bound = _current_bound.get(None)
        if bound is None:  # called outside pytest_runtest_call below: unbounded
            return await test(*args, **kwargs)
        mock = isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
        scope = trio.CancelScope(deadline=trio.current_time() + bound.seconds)
        real_time_out = threading.Event()
        timer = None
        if mock:  # real time too: a test can keep Trio busy without moving its clock
            token = trio.lowlevel.current_trio_token()

            def cancel_from_thread() -> None:
                real_time_out.set()
                try:
                    token.run_sync_soon(scope.cancel)
                except trio.RunFinishedError:
                    pass

            timer = threading.Timer(bound.seconds, cancel_from_thread)
            timer.daemon = True
            timer.start()
        waiting: BaseException | None = None
        try:
            with scope:
                try:
                    return await test(*args, **kwargs)
                except BaseException as exc:
                    if not scope.cancel_called:
                        raise
                    waiting = exc
        finally:
            if timer is not None:
                timer.cancel()
        clock = "virtual s (MockClock)" if mock and not real_time_out.is_set() else "s"
        name = bound.nodeid
        if bound.hypothesis:
            example = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
            name += f" (example: {example[:300]})"
        raise TimeBoundExceeded(
            f"{name} did not finish within its time bound of {bound.seconds:g} {clock}; "
            "the traceback above shows where it was waiting. A test that needs longer "
            "says so with @pytest.mark.timeout(SECONDS)."
        ) from waiting

    setattr(bounded, _WRAPPED, True)
    return bounded


@pytest.hookimpl(wrapper=True, tryfirst=True)  # before pytest-trio wraps it for trio.run
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    seconds = item.stash.get(_TRIO_BOUND, None)
    if seconds is None or not isinstance(item, pytest.Function):
        return (yield)
    hypothesis = getattr(item.obj, "hypothesis", None)
    test = item.obj if hypothesis is None else hypothesis.inner_test
    # Wrapped once: pytest-trio then replaces a shared Hypothesis inner test with its
    # own sync runner, which calls this wrapper for every item.
    if inspect.iscoroutinefunction(test) and not getattr(test, _WRAPPED, False):
        if hypothesis is None:
            item.obj = _bounded(test)
        else:
            hypothesis.inner_test = _bounded(test)
    token = _current_bound.set(_Bound(item.nodeid, seconds, hypothesis is not None))
    try:
        return (yield)
    finally:
        _current_bound.reset(token)


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: pytest_timeout.Settings) -> bool:
    """pytest-timeout's backstop, past Trio's bound for a Trio test, and naming the test
    when it fires (pytest-timeout's own report has the stacks, not the test's name)."""
    trio_bound = item.stash.get(_TRIO_BOUND, None)
    if trio_bound is not None:
        settings = settings._replace(
            timeout=max(settings.timeout, trio_bound + BACKSTOP_GRACE)
        )
    if settings.method != "thread":
        return bool(pytest_timeout.pytest_timeout_set_timer(item, settings))

    def expire() -> None:
        if not settings.disable_debugger_detection and pytest_timeout.is_debugging():
            return
        capture = item.config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture()
        item.config.get_terminal_writer().line(
            f"\n{item.nodeid} did not finish within the whole-process backstop of "
            f"{settings.timeout:g} s (pytest-timeout): stacks follow, then the run ends.",
            red=True,
            bold=True,
        )
        pytest_timeout.timeout_timer(item, settings)

    timer = threading.Timer(settings.timeout, expire)
    timer.name = f"backstop {item.nodeid}"
    timer.daemon = True

    def cancel() -> None:
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # pytest-timeout's slot
    timer.start()
    return True
