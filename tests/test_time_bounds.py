"""Every test is bounded (tests/conftest.py): Trio's bound on each Trio test's body, and
pytest-timeout's whole-process backstop. Here in this process, what a test sees of its
bound; in a pytest of its own, tests that hang, and the failures that name them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import trio
import trio.testing
from conftest import BACKSTOP_GRACE, TRIO_BOUND
from helpers import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

# -- in this process ---------------------------------------------------------------------


def _seconds_left() -> float:
    return trio.current_effective_deadline() - trio.current_time()


async def test_a_trio_test_runs_under_the_default_bound() -> None:
    assert 0 < _seconds_left() <= TRIO_BOUND


async def test_under_autojump_clock_the_bound_is_on_the_mock_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert _seconds_left() == pytest.approx(TRIO_BOUND)
    await trio.sleep(TRIO_BOUND / 2)  # virtual time: the bound is that clock's
    assert _seconds_left() == pytest.approx(TRIO_BOUND / 2)


@pytest.mark.timeout(TRIO_BOUND * 3)
async def test_the_timeout_marker_sets_the_bound() -> None:
    assert TRIO_BOUND * 2 < _seconds_left() <= TRIO_BOUND * 3


@pytest.fixture
async def async_value(nursery: trio.Nursery) -> str:
    nursery.start_soon(trio.sleep_forever)  # a fixture's task outside the bound's scope
    return "from an async fixture"


@pytest.mark.parametrize("number", [1, 2])
async def test_fixtures_and_parameters_reach_the_wrapped_test(
    async_value: str, number: int, request: pytest.FixtureRequest
) -> None:
    assert async_value == "from an async fixture"
    assert request.node.name.endswith(f"[{number}]") and _seconds_left() <= TRIO_BOUND


@settings(max_examples=5, deadline=None)
@given(value=st.integers())
async def test_each_hypothesis_example_runs_under_the_bound(value: int) -> None:
    assert isinstance(value, int) and 0 < _seconds_left() <= TRIO_BOUND


# -- in a pytest of its own ---------------------------------------------------------------

HANGING = """
import threading

import pytest
import trio
from hypothesis import given, settings, strategies as st


async def test_hangs_on_the_mock_clock(autojump_clock):
    await trio.sleep_forever()


@pytest.mark.timeout(1)
async def test_spins_without_moving_the_mock_clock(autojump_clock):
    while True:
        await trio.sleep(0)


@pytest.mark.timeout(0.5)
async def test_hangs_on_the_real_clock():
    await trio.sleep_forever()


EXAMPLES = []


@pytest.mark.timeout(0.5)
@settings(max_examples=20, deadline=None, database=None)
@given(number=st.integers(min_value=0, max_value=10))
async def test_hangs_in_one_hypothesis_example(number):
    EXAMPLES.append(number)
    await trio.sleep_forever()


def test_hypothesis_did_not_shrink_a_hang():
    assert len(EXAMPLES) == 1


async def test_finishes_in_time(autojump_clock, nursery):
    await trio.sleep(60)


@pytest.mark.timeout(0.5)
def test_a_sync_test_that_hangs():
    threading.Event().wait()
"""

INI = """
[pytest]
trio_mode = true
timeout = 300
timeout_method = thread
addopts = -p conftest -p no:cacheprovider
"""


def _pytest(
    directory: Path, *args: str, timeout: float, source: str = HANGING
) -> subprocess.CompletedProcess[str]:
    """pytest on *source* in *directory*, with tests/conftest.py as a plugin."""
    (directory / "pytest.ini").write_text(textwrap.dedent(INI))
    (directory / "test_hanging.py").write_text(source)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _failures(junit: Path) -> dict[str, str]:
    """Test name -> the failure's message and traceback, from a JUnit XML report."""
    found = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        failure = case.find("failure")
        if failure is not None:
            found[case.attrib["name"]] = f"{failure.attrib['message']}\n{failure.text}"
        elif case.find("skipped") is not None or case.find("error") is not None:
            found[case.attrib["name"]] = "not run"
    return found


def test_hung_trio_tests_fail_naming_their_bound(tmp_path: Path) -> None:
    # The mock clock's hangs end as soon as the clock can jump; the subprocess' own
    # timeout is below the bound in real time, so it also proves that they did not
    # wait for it in real time.
    assert TRIO_BOUND > 90
    done = _pytest(
        tmp_path,
        "--junitxml=report.xml",
        "-k",
        "not sync_test and not spins",
        timeout=90,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    failures = _failures(tmp_path / "report.xml")
    assert sorted(failures) == [
        "test_hangs_in_one_hypothesis_example",
        "test_hangs_on_the_mock_clock",
        "test_hangs_on_the_real_clock",
    ], done.stdout
    mock = failures["test_hangs_on_the_mock_clock"]
    assert (
        f"test_hanging.py::test_hangs_on_the_mock_clock did not finish within its time "
        f"bound of {TRIO_BOUND:g} virtual s (MockClock)" in mock
    )
    assert "TimeBoundExceeded" in mock and "@pytest.mark.timeout(SECONDS)" in mock
    # Chained to where it was waiting.
    assert "await trio.sleep_forever()" in mock and "Cancelled" in mock
    # Trio's failure, not the backstop's: the marker's 0.5 s moved it to 0.5 s + grace.
    assert BACKSTOP_GRACE > 0.5
    real = failures["test_hangs_on_the_real_clock"]
    assert (
        "test_hangs_on_the_real_clock did not finish within its time bound of 0.5 s;"
        in real
    )
    example = failures["test_hangs_in_one_hypothesis_example"]
    assert "did not finish within its time bound of 0.5 s" in example
    assert "(example: number=" in example


def test_a_mock_clock_test_is_bounded_in_real_time_too(tmp_path: Path) -> None:
    """A test that keeps Trio busy without ever letting the mock clock move: the same
    bound, in real seconds (lowered here, by the marker, to keep this short)."""
    done = _pytest(tmp_path, "--junitxml=report.xml", "-k", "spins", timeout=90)
    assert done.returncode == 1, done.stdout + done.stderr
    failures = _failures(tmp_path / "report.xml")
    assert list(failures) == ["test_spins_without_moving_the_mock_clock"]
    spins = failures["test_spins_without_moving_the_mock_clock"]
    assert "did not finish within its time bound of 1 s;" in spins


def test_the_backstop_names_the_test_and_ends_the_run(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "-k", "sync_test", timeout=90)
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert (
        "test_hanging.py::test_a_sync_test_that_hangs did not finish within the "
        "whole-process backstop of 0.5 s (pytest-timeout)"
    ) in output, output
    assert "threading.Event().wait()" in output  # the stacks follow
    assert "deselected" not in output  # the run ended there, before its summary


def test_a_timeout_marker_cannot_unbound_a_test(tmp_path: Path) -> None:
    """pytest-timeout reads timeout(0) as "no timeout": refused, for every test."""
    source = "import pytest\n\n\n@pytest.mark.timeout(0)\ndef test_unbounded():\n    pass\n"
    done = _pytest(tmp_path, "--collect-only", timeout=90, source=source)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert (
        "test_hanging.py::test_unbounded: @pytest.mark.timeout(0), but every test is bounded"
        in done.stderr
    )
