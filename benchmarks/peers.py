"""trio_pipe next to its peers, measured in the same run:

- **rust-pipe**, the Rust dispatcher that trio_pipe re-imagines (the published crate,
  ``benchmarks/rust-pipe-peer``), and trio_pipe's dispatcher, each serving one process
  of the same minimal Go worker (``benchmarks/peer-worker``);
- **Celery 5** with Redis as broker and result backend, and trio_pipe over WebSocket
  with one Python worker process.

python -m benchmarks.peers           # quick (small N)
python -m benchmarks.peers --full    # the real numbers
nox -s bench_peers [-- --full]       # the same, after installing Celery and redis-server

Every side runs no-op tasks the same way as the main suite (``benchmarks/_measure.py``;
rust-pipe-peer does the same in Rust): a warm-up, three throughput runs with 256 tasks
in flight (median, min-max), then latency one task at a time. rust-pipe-peer and the Go
worker are built first (release; from ``Cargo.lock`` and ``go.sum``). Celery: one worker
process (``--pool=solo``), tasks sent with ``apply_async`` and results collected with
``AsyncResult.get`` (oldest first: the solo pool finishes them in order); redis-server
is started for the run on a free loopback port, without persistence, in a temporary
directory. Every process started here is stopped on the way out, on failure, Ctrl-C
and SIGTERM too.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import trio

import trio_pipe

from . import bare_trio, rust_pipe, ws_roundtrip
from ._measure import machine, rates
from .sdks import measure_worker

ROOT = Path(__file__).resolve().parent.parent
IN_FLIGHT = 256
RUST_PIPE = "rust-pipe"
CELERY = "Celery"
T = TypeVar("T")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers")
    parser.add_argument("--full", action="store_true", help="full-size runs")
    parser.add_argument(
        "--redis-server", default="redis-server", help="the redis-server executable"
    )
    return parser.parse_args(argv)


def sizes(full: bool) -> dict[str, int]:
    """Tasks per throughput run and latency samples, as in the main suite."""
    tasks, latency_tasks = (10_000, 2_000) if full else (500, 200)
    return {"tasks": tasks, "latency_tasks": latency_tasks}


# -- processes --------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGKILL if this process dies, however it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start(argv: Sequence[str], **options: Any) -> subprocess.Popen[bytes]:
    preexec = _die_with_parent if sys.platform == "linux" else None
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=preexec, **options)


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after *timeout* seconds; reaps the process."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


@contextlib.contextmanager
def terminated_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit, so that ``finally`` blocks stop the children
    (inside ``trio.run``, Trio's own signal handling takes over)."""

    def exit_(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def redis_argv(executable: str, port: int, directory: str) -> list[str]:
    """redis-server on loopback only, without RDB snapshots or an append-only file."""
    return [
        executable,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", directory,
        "--daemonize", "no",
        "--loglevel", "warning",
    ]  # fmt: skip


def redis_ping(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def redis_server(executable: str = "redis-server", timeout: float = 20.0) -> Iterator[str]:
    """A throwaway redis-server; yields its URL (without a database number)."""
    with tempfile.TemporaryDirectory(prefix="trio-pipe-bench-redis-") as directory:
        port = free_port()
        log = Path(directory) / "redis.log"
        argv = [*redis_argv(executable, port, directory), "--logfile", str(log)]
        process = start(argv, cwd=directory)
        try:
            deadline = time.monotonic() + timeout
            while not redis_ping(port):
                if process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {process.returncode}:\n{_tail(log)}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server not answering after {timeout} s")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}"
        finally:
            stop(process)


def celery_worker_argv() -> list[str]:
    # Gossip, mingle and heartbeat are cluster events between workers, not on the
    # path of a task; without them the worker starts faster.
    return [
        sys.executable, "-m", "celery", "--quiet", "-A", "benchmarks.celery_app",
        "worker", "--pool=solo", "--concurrency=1", "--loglevel=WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--hostname", "trio-pipe-bench@%h",
    ]  # fmt: skip


@contextlib.contextmanager
def celery_worker(redis_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """One Celery worker process serving the Redis at *redis_url*; its output goes to
    a log, shown if anything fails while it runs."""
    env = {**os.environ, "TRIO_PIPE_BENCH_REDIS": redis_url}
    with tempfile.TemporaryDirectory(prefix="trio-pipe-bench-celery-") as directory:
        log = Path(directory) / "worker.log"
        with log.open("wb") as output:
            process = start(
                celery_worker_argv(), cwd=ROOT, env=env, stdout=output, stderr=output
            )
            try:
                yield process
            except Exception:
                stop(process)
                print(f"the Celery worker's output:\n{_tail(log)}", file=sys.stderr)
                raise
            finally:
                stop(process)


# -- measuring --------------------------------------------------------------------


def figures(runs: Sequence[float], samples: Sequence[float]) -> dict[str, float]:
    """The summary of ``_measure.summary``: *runs* in tasks/s, *samples* in µs."""
    ordered = sorted(samples)
    return {
        **rates(list(runs)),
        "p50_us": statistics.median(ordered),
        "p99_us": ordered[int(len(ordered) * 0.99) - 1],
    }


def measure_celery(
    worker: subprocess.Popen[bytes],
    redis_url: str,
    *,
    tasks: int,
    latency_tasks: int,
    in_flight: int = IN_FLIGHT,
    start_timeout: float = 60.0,
) -> dict[str, Any]:
    """No-op round trips through *worker*, which serves the Redis at *redis_url*."""
    from celery.exceptions import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
        TimeoutError as CeleryTimeout,
    )

    from .celery_app import app, noop

    app.conf.update(broker_url=f"{redis_url}/0", result_backend=f"{redis_url}/1")
    first = noop.apply_async((0,))
    deadline = time.monotonic() + start_timeout
    while True:
        try:
            first.get(timeout=1)
            break
        except CeleryTimeout:
            if worker.poll() is not None:
                raise RuntimeError(
                    f"the Celery worker exited with {worker.returncode}"
                ) from None
            if time.monotonic() > deadline:
                raise

    def throughput(n: int) -> float:
        pending: collections.deque[Any] = collections.deque()
        started = time.perf_counter()
        try:
            for i in range(n):
                if len(pending) >= in_flight:
                    pending.popleft().get(timeout=60)
                pending.append(noop.apply_async((i,)))
            while pending:
                pending.popleft().get(timeout=60)
        finally:
            pending.clear()  # unsubscribes while Redis is still there, on failure too
        return n / (time.perf_counter() - started)

    throughput(min(tasks, 500))
    rates = [throughput(tasks) for _ in range(3)]
    samples = []
    for i in range(latency_tasks):
        started = time.perf_counter()
        noop.apply_async((i,)).get(timeout=60)
        samples.append((time.perf_counter() - started) * 1e6)
    conf = app.conf
    return {
        "scenario": (
            f"Celery {_version('celery')} + Redis {redis_version()}, one worker "
            "process (solo pool)"
        ),
        **figures(rates, samples),
        "celery_config": {
            "pool": "solo",
            "worker_prefetch_multiplier": conf.worker_prefetch_multiplier,
            "task_acks_late": conf.task_acks_late,
            "serializer": conf.task_serializer,
            "broker": "redis db 0",
            "result_backend": "redis db 1",
        },
    }


async def _stopped_by_sigterm(measure: Callable[[], Awaitable[T]]) -> T | None:
    """Run *measure*; on SIGTERM cancel it (so its processes are stopped by Trio)
    and return ``None``."""
    row = None
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

        async def run() -> None:
            nonlocal row
            row = await measure()
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        nursery.start_soon(run)
    return row


def _run_trio(measure: Callable[[], Awaitable[T]]) -> T:
    """``trio.run`` a measurement; SIGTERM stops it, and the benchmark."""
    result = trio.run(_stopped_by_sigterm, measure)
    if result is None:
        raise SystemExit(128 + signal.SIGTERM)
    return result


def measure_trio_pipe(*, tasks: int, latency_tasks: int) -> dict[str, Any]:
    measure = partial(
        ws_roundtrip.measure,
        workers=1,
        tasks=tasks,
        latency_tasks=latency_tasks,
        in_flight=IN_FLIGHT,
    )
    row = _run_trio(measure)
    return {**row, "scenario": f"trio_pipe {trio_pipe.__version__}: {row['scenario']}"}


def measure_against_rust_pipe(
    peer: Path, worker: Path, *, tasks: int, latency_tasks: int
) -> list[dict[str, Any]]:
    """rust-pipe's dispatcher, then a bare Trio program (``bare_trio``: the ceiling
    for Python and Trio), then trio_pipe's dispatcher, each serving one process of the
    Go peer worker: their rows, in that order."""
    workload = {"tasks": tasks, "latency_tasks": latency_tasks, "in_flight": IN_FLIGHT}
    spawned, submitters, samples, refused = _run_trio(
        partial(rust_pipe.measure_rust_pipe, [str(worker)], executable=peer, **workload)
    )
    rust_row = {
        "scenario": f"rust-pipe {rust_pipe.RUST_PIPE_VERSION} (Rust, tokio)",
        **figures(spawned, samples),
        **{f"submitters_{k}": v for k, v in rates(submitters).items()},
        "refused": refused,
    }
    trio_row = _run_trio(
        partial(
            measure_worker,
            [str(worker)],
            "bench-peer-worker",
            task_type="noop",
            shapes=True,
            **workload,
        )
    )
    trio_row = {"scenario": f"trio_pipe {trio_pipe.__version__} (Python, Trio)", **trio_row}
    bare_row = _run_trio(partial(bare_trio.measure, [str(worker)], **workload))
    return [rust_row, bare_row, trio_row]


def _key(peer: str) -> str:
    return peer.lower().replace("-", "_")


def with_ratios(
    trio_row: dict[str, Any], peer_row: dict[str, Any], peer: str
) -> dict[str, Any]:
    """*trio_row* with its throughput, p50 and p99 as multiples of *peer_row*'s; and,
    where both rows have them, each other way of keeping tasks in flight as a
    multiple of the peer's same way, and :meth:`Dispatcher.map` (trio_pipe's batch
    path) as a multiple of the peer's best way."""
    key = _key(peer)
    ratios = {
        f"ratio_to_{key}": trio_row["tasks_per_s"] / peer_row["tasks_per_s"],
        f"p50_ratio_to_{key}": trio_row["p50_us"] / peer_row["p50_us"],
        f"p99_ratio_to_{key}": trio_row["p99_us"] / peer_row["p99_us"],
    }
    if "submitters_tasks_per_s" in trio_row and "submitters_tasks_per_s" in peer_row:
        ratios[f"submitters_ratio_to_{key}"] = (
            trio_row["submitters_tasks_per_s"] / peer_row["submitters_tasks_per_s"]
        )
    if "map_tasks_per_s" in trio_row:
        best = max(peer_row[k] for k in _SHAPES if k in peer_row)
        ratios[f"map_ratio_to_{key}"] = trio_row["map_tasks_per_s"] / best
    return {**trio_row, **ratios}


# Each way of keeping 256 tasks in flight, by the key of its median tasks/s:
_SHAPES = {
    "tasks_per_s": "a task spawned per task, and a semaphore",
    "submitters_tasks_per_s": "256 submitters, each submitting and awaiting in turn",
    "map_tasks_per_s": "the batch path (trio_pipe: `Dispatcher.map`)",
}


def table(rows: Sequence[dict[str, Any]], peer: str) -> str:
    """Markdown: the peer's row, then trio_pipe's with its multiples of the peer's."""
    key = _key(peer)
    lines = [
        f"| scenario | tasks/s (256 in flight; median of 3, min-max) | x {peer} "
        f"| p50 µs | p50 x {peer} | p99 µs | p99 x {peer} |",
        "|---|---|---|---|---|---|---|",
    ]

    def ratio(row: dict[str, Any], name: str) -> str:
        return f"{row[name]:.2f}" if name in row else "—"

    for row in rows:
        lines.append(
            f"| {row['scenario']} | {row['tasks_per_s']:,.0f} "
            f"({row['tasks_per_s_min']:,.0f}-{row['tasks_per_s_max']:,.0f}) "
            f"| {ratio(row, f'ratio_to_{key}')} "
            f"| {row['p50_us']:,.0f} | {ratio(row, f'p50_ratio_to_{key}')} "
            f"| {row['p99_us']:,.0f} | {ratio(row, f'p99_ratio_to_{key}')} |"
        )
    return "\n".join(lines)


def shapes_table(rows: Sequence[dict[str, Any]], peer: str) -> str:
    """Markdown: tasks/s of each way of keeping 256 tasks in flight (median of 3,
    min-max) and latency one at a time, the peer's row first, then trio_pipe's with
    its multiples of the peer's."""
    key = _key(peer)
    names = [name for name in _SHAPES if any(name in row for row in rows)]
    header = "| dispatcher |"
    for name in names:
        header += f" {_SHAPES[name]}: tasks/s | x {peer} |"
    header += f" p50 µs | p50 x {peer} | p99 µs | p99 x {peer} |"
    lines = [header, "|---" * (1 + 2 * len(names) + 4) + "|"]

    def ratio(row: dict[str, Any], name: str) -> str:
        return f"{row[name]:.2f}" if name in row else "—"

    for row in rows:
        cells = [row["scenario"]]
        for name in names:
            prefix = name.removesuffix("tasks_per_s")
            if name not in row:
                cells += ["—", "—"]
                continue
            cells.append(
                f"{row[name]:,.0f} ({row[prefix + 'tasks_per_s_min']:,.0f}-"
                f"{row[prefix + 'tasks_per_s_max']:,.0f})"
            )
            cells.append(ratio(row, f"{prefix}ratio_to_{key}"))
        cells += [
            f"{row['p50_us']:,.0f}",
            ratio(row, f"p50_ratio_to_{key}"),
            f"{row['p99_us']:,.0f}",
            ratio(row, f"p99_ratio_to_{key}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def redis_version(executable: str = "redis-server") -> str:
    try:
        out = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except OSError:
        return "absent"
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out.strip() or "unknown"


def _tool_version(argv: Sequence[str | None]) -> str:
    if argv[0] is None:
        return "absent"
    try:
        out = subprocess.run(
            list(map(str, argv)), capture_output=True, text=True, timeout=30
        ).stdout
    except OSError:
        return "absent"
    return out.strip() or "unknown"


def _machine(redis_executable: str) -> dict[str, Any]:
    return machine() | {
        "load_average": os.getloadavg(),
        "rust_pipe": rust_pipe.RUST_PIPE_VERSION,
        "rustc": _tool_version([shutil.which("rustc"), "--version"]),
        "go": _tool_version([rust_pipe.go(), "version"]),
        "celery": _version("celery"),
        "kombu": _version("kombu"),
        "redis_py": _version("redis"),
        "redis_server": redis_version(redis_executable),
    }


def missing(redis_executable: str) -> list[str]:
    """What this benchmark needs and does not find."""
    absent = []
    if rust_pipe.cargo() is None:
        absent.append("cargo, to build rust-pipe (https://rustup.rs)")
    if rust_pipe.go() is None:
        absent.append("go, to build the peer worker (Go 1.23 or newer)")
    if shutil.which(redis_executable) is None:
        absent.append(f"{redis_executable} (apt-get install redis-server)")
    for module in ("celery", "redis"):
        try:
            __import__(module)
        except ImportError:
            absent.append(f"the {module} module (pip install 'celery[redis]>=5,<6')")
    return absent


def run(
    full: bool, redis_executable: str = "redis-server"
) -> dict[str, list[dict[str, Any]]]:
    """Both comparisons in one run: for each peer, its row and trio_pipe's (with its
    ratios to the peer's)."""
    n = sizes(full)
    with terminated_on_sigterm():
        peer = rust_pipe.build_peer(rust_pipe.cargo() or "cargo")
        worker = rust_pipe.build_peer_worker(rust_pipe.go() or "go")
        # trio_pipe first, while nothing else of ours is running.
        trio_row = measure_trio_pipe(**n)
        rust_row, *rows = measure_against_rust_pipe(peer, worker, **n)
        with redis_server(redis_executable) as url, celery_worker(url) as celery_process:
            celery_row = measure_celery(celery_process, url, **n)
    return {
        RUST_PIPE: [rust_row, *(with_ratios(row, rust_row, RUST_PIPE) for row in rows)],
        CELERY: [celery_row, with_ratios(trio_row, celery_row, CELERY)],
    }


def save(
    comparisons: dict[str, list[dict[str, Any]]],
    full: bool,
    machine_then: dict[str, Any],
) -> Path:
    out = ROOT / "benchmarks" / "results" / f"peers-{time.strftime('%Y%m%dT%H%M%S')}.json"
    document = {"machine": machine_then, "full": full, "comparisons": comparisons}
    out.write_text(json.dumps(document, indent=2))
    return out


def summary_line(rows: Sequence[dict[str, Any]], peer: str) -> str:
    key = _key(peer)
    trio_row = rows[-1]
    shapes = "".join(
        f", x{trio_row[name]:.2f} {what}"
        for name, what in [
            (f"submitters_ratio_to_{key}", "with 256 submitters"),
            (f"map_ratio_to_{key}", "through map"),
        ]
        if name in trio_row
    )
    return (
        f"trio_pipe / {peer}: x{trio_row[f'ratio_to_{key}']:.2f} the tasks/s{shapes}, "
        f"x{trio_row[f'p50_ratio_to_{key}']:.2f} the p50 latency, "
        f"x{trio_row[f'p99_ratio_to_{key}']:.2f} the p99"
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if absent := missing(args.redis_server):
        sys.exit(
            "missing: "
            + "; ".join(absent)
            + " (nox -s bench_peers installs Celery and redis-server)"
        )
    machine_then = _machine(args.redis_server)  # the load average before the run
    comparisons = run(args.full, args.redis_server)
    for peer, rows in comparisons.items():
        print(f"{(shapes_table if peer == RUST_PIPE else table)(rows, peer)}\n")
    for peer, rows in comparisons.items():
        print(summary_line(rows, peer))
    print(f"\nsaved {save(comparisons, args.full, machine_then)}")


if __name__ == "__main__":
    main()
