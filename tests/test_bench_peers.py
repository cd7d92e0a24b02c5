"""benchmarks/peers.py, the Celery comparison run by `nox -s bench_peers`: what runs
without Redis or Celery always; the real thing only where both are installed."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from typing import Any

import pytest

from benchmarks import peers, rust_pipe

HAVE_REDIS = shutil.which("redis-server") is not None
HAVE_CELERY = all(importlib.util.find_spec(m) is not None for m in ("celery", "redis"))
# Neither is there in the `tests` session, CI's, so in CI the two tests that need them
# are skipped, saying why; they run wherever both are installed.
NO_REDIS = (
    "no redis-server: only `nox -s bench_peers` installs it (with apt), and CI does not "
    "run that session"
)
NO_CELERY = (
    "no Celery: it is in the `peers` dependency group, which `nox -s bench_peers` "
    "installs and the `tests` session does not"
)


def _row(scenario: str, rate: float, p50: float) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "tasks_per_s": rate,
        "tasks_per_s_min": rate * 0.9,
        "tasks_per_s_max": rate * 1.1,
        "p50_us": p50,
        "p99_us": p50 * 3,
    }


def test_arguments_and_sizes() -> None:
    quick, full = peers.parse_args([]), peers.parse_args(["--full", "--redis-server", "x"])
    assert (quick.full, quick.redis_server) == (False, "redis-server")
    assert (full.full, full.redis_server) == (True, "x")
    assert peers.sizes(True) == {"tasks": 10_000, "latency_tasks": 2_000}
    assert peers.sizes(False)["tasks"] < 10_000


def test_redis_runs_on_loopback_without_persistence() -> None:
    argv = peers.redis_argv("redis-server", 6390, "/tmp/x")
    pairs = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert pairs["--save"] == "" and pairs["--appendonly"] == "no"
    assert pairs["--bind"] == "127.0.0.1" and pairs["--port"] == "6390"
    assert pairs["--dir"] == "/tmp/x"


def test_the_celery_worker_is_one_solo_process() -> None:
    argv = peers.celery_worker_argv()
    assert "--pool=solo" in argv and "--concurrency=1" in argv


def test_figures_summarise_like_the_main_suite() -> None:
    row = peers.figures([3.0, 1.0, 2.0], [float(n) for n in range(100, 0, -1)])
    assert (row["tasks_per_s"], row["tasks_per_s_min"], row["tasks_per_s_max"]) == (2, 1, 3)
    assert row["p50_us"] == 50.5 and row["p99_us"] == 99


def test_the_table_shows_trio_pipe_as_a_multiple_of_celery() -> None:
    celery = _row("Celery", 650, 1650)
    trio_pipe = peers.with_ratios(_row("trio_pipe", 5200, 495), celery, "Celery")
    assert trio_pipe["ratio_to_celery"] == 8 and trio_pipe["p50_ratio_to_celery"] == 0.3
    assert trio_pipe["p99_ratio_to_celery"] == 0.3
    lines = peers.table([celery, trio_pipe], "Celery").splitlines()
    assert lines[0].startswith("| scenario |") and "x Celery" in lines[0]
    assert lines[2] == "| Celery | 650 (585-715) | — | 1,650 | — | 4,950 | — |"
    assert lines[3] == (
        "| trio_pipe | 5,200 (4,680-5,720) | 8.00 | 495 | 0.30 | 1,485 | 0.30 |"
    )
    assert peers.summary_line([celery, trio_pipe], "Celery") == (
        "trio_pipe / Celery: x8.00 the tasks/s, x0.30 the p50 latency, x0.30 the p99"
    )


def _shapes(row: dict[str, Any], **medians: float) -> dict[str, Any]:
    """*row* with the median tasks/s of other shapes (``submitters=...``, ``map=...``)
    and their range, ±10 %."""
    for name, median in medians.items():
        row |= {
            f"{name}_tasks_per_s": median,
            f"{name}_tasks_per_s_min": median * 0.9,
            f"{name}_tasks_per_s_max": median * 1.1,
        }
    return row


def test_the_table_shows_trio_pipe_as_a_multiple_of_rust_pipe() -> None:
    rust = _shapes(_row("rust-pipe 0.1.2", 60_000, 130), submitters=50_000)
    trio_row = _shapes(_row("trio_pipe", 7_800, 234), submitters=20_000, map=30_000)
    trio_pipe = peers.with_ratios(trio_row, rust, "rust-pipe")
    assert trio_pipe["ratio_to_rust_pipe"] == pytest.approx(0.13)
    assert trio_pipe["submitters_ratio_to_rust_pipe"] == pytest.approx(0.4)
    # The batch path against rust-pipe's best shape, whichever that is:
    assert trio_pipe["map_ratio_to_rust_pipe"] == pytest.approx(0.5)
    assert trio_pipe["p50_ratio_to_rust_pipe"] == pytest.approx(1.8)
    lines = peers.shapes_table([rust, trio_pipe], "rust-pipe").splitlines()
    assert lines[0].count("x rust-pipe") == 5 and "p99 x rust-pipe" in lines[0]
    assert lines[1] == "|---" * 11 + "|"
    assert lines[2] == (
        "| rust-pipe 0.1.2 | 60,000 (54,000-66,000) | — | 50,000 (45,000-55,000) | — "
        "| — | — | 130 | — | 390 | — |"
    )
    assert lines[3] == (
        "| trio_pipe | 7,800 (7,020-8,580) | 0.13 | 20,000 (18,000-22,000) | 0.40 "
        "| 30,000 (27,000-33,000) | 0.50 | 234 | 1.80 | 702 | 1.80 |"
    )
    assert peers.summary_line([rust, trio_pipe], "rust-pipe") == (
        "trio_pipe / rust-pipe: x0.13 the tasks/s, x0.40 with 256 submitters, "
        "x0.50 through map, x1.80 the p50 latency, x1.80 the p99"
    )


def test_what_is_missing_is_named() -> None:
    absent = peers.missing("no-such-redis-server-here")
    assert any("no-such-redis-server-here" in item for item in absent)


def test_a_child_that_ignores_sigterm_is_killed() -> None:
    ignores = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"
    process = peers.start([sys.executable, "-c", ignores], stdout=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.readline()  # the handler is in place
    started = time.monotonic()
    peers.stop(process, timeout=0.5)
    process.stdout.close()
    assert process.returncode == -9 and time.monotonic() - started < 10


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first build of rust-pipe-peer, on a busy machine
@pytest.mark.skipif(rust_pipe.cargo() is None, reason="no cargo: rust-pipe is not built")
@pytest.mark.skipif(rust_pipe.go() is None, reason="no go: the peer worker is not built")
def test_rust_pipe_and_trio_pipe_serve_the_same_go_worker() -> None:
    peer = rust_pipe.build_peer(rust_pipe.cargo() or "cargo")
    worker = rust_pipe.build_peer_worker(rust_pipe.go() or "go")
    rust, bare, trio_row = peers.measure_against_rust_pipe(
        peer, worker, tasks=300, latency_tasks=20
    )
    for row in (rust, bare, trio_row):
        assert row["tasks_per_s_min"] > 0 and 0 < row["p50_us"] <= row["p99_us"]
    for row in (rust, trio_row):
        assert row["submitters_tasks_per_s_min"] > 0
    assert trio_row["map_tasks_per_s_min"] > 0
    assert bare["scenario"].startswith("bare Trio")
    assert rust["scenario"].startswith("rust-pipe 0.1.2") and rust["refused"] >= 0
    assert trio_row["scenario"].startswith("trio_pipe ")


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_REDIS, reason=NO_REDIS)
def test_redis_is_started_and_stopped() -> None:
    with peers.redis_server() as url:
        port = int(url.rsplit(":", 1)[1])
        assert peers.redis_ping(port)
    assert not peers.redis_ping(port)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_REDIS, reason=NO_REDIS)
@pytest.mark.skipif(not HAVE_CELERY, reason=NO_CELERY)
def test_the_whole_comparison_runs() -> None:
    with peers.redis_server() as url, peers.celery_worker(url) as worker:
        row = peers.measure_celery(worker, url, tasks=50, latency_tasks=20, in_flight=8)
    assert row["tasks_per_s"] > 0 and row["p50_us"] > 0
    assert worker.returncode is not None
