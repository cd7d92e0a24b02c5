"""What the task store costs: MemoryStore and SqliteStore, measured in the same run.

- **Round trips**: no-op tasks through a dispatcher to one Python worker process over
  WebSocket (the set-up of ws_roundtrip.py), once with each store: throughput with
  256 tasks in flight -- from one submitter (the suite's harness, as in every other
  section) and from 256 submitters (which lets the store commit their submissions
  together) --, latency with one task at a time, and SQLite's transactions per task.
- **Size**: the SQLite database after many completed tasks, after pruning them, and
  after ``VACUUM``.
- **Restart**: a store left holding many queued tasks is opened again by a dispatcher
  while a worker is already trying to connect: the time until the dispatcher is open,
  and until the worker runs its first task.

SqliteStore runs as it ships (``synchronous=NORMAL``, group commit without a
``commit_delay``) and, for the round trips, also with ``synchronous=FULL``. Its files
are in a temporary directory on the machine's disk.

``python -m benchmarks`` runs this section with the others; alone:

    python -m benchmarks.store           # quick (small N)
    python -m benchmarks.store --full    # the figures of docs/performance.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

import trio_pipe
from trio_pipe import Task
from trio_pipe.store import MemoryStore, Retention, SqliteStore, Store
from trio_pipe.testing import connect_memory_worker

from . import inprocess, ws_roundtrip
from ._measure import latencies, machine, throughput, throughput_submitters

IN_FLIGHT = 256

#: The stores compared, each made from a database path (which memory ignores).
STORES: dict[str, Callable[[Path], Store]] = {
    "memory": lambda path: MemoryStore(),
    "sqlite": lambda path: SqliteStore(path),
    "sqlite, synchronous FULL": lambda path: SqliteStore(path, synchronous="FULL"),
}


def sizes(full: bool) -> dict[str, int]:
    """How many tasks each measurement uses, in full and quick mode."""
    if full:
        return {
            "tasks": 10_000,
            "latency_tasks": 2_000,
            "size_tasks": 100_000,
            "restart_tasks": 100_000,
        }
    return {"tasks": 200, "latency_tasks": 100, "size_tasks": 2_000, "restart_tasks": 2_000}


async def measure(
    *, tasks: int, latency_tasks: int, size_tasks: int, restart_tasks: int
) -> list[dict[str, Any]]:
    """Every figure of the section: a row per store for the round trips, one for the
    database's size, one per store (memory, sqlite) for the restart."""
    with tempfile.TemporaryDirectory(prefix="trio-pipe-store-bench-") as tmp:
        directory = Path(tmp)
        rows = await round_trips(directory, tasks=tasks, latency_tasks=latency_tasks)
        rows.append(await database_size(directory / "size.db", size_tasks))
        for name in ("memory", "sqlite"):
            store = STORES[name](directory / "restart.db")
            rows.append(await restart(name, store, restart_tasks))
    return rows


# -- round trips ------------------------------------------------------------------------


class Transactions:
    """Counts the transactions a :class:`SqliteStore` commits, with SQLite's trace
    callback on the store's connection (the store keeps no count of its own). Any
    other store counts nothing: :meth:`per_task` is ``None``."""

    def __init__(self, store: Store) -> None:
        self.count = 0
        self.counting = isinstance(store, SqliteStore)
        if isinstance(store, SqliteStore):
            connection = store._db
            assert connection is not None, "the store is not open"
            connection.set_trace_callback(self._statement)

    def _statement(self, sql: str) -> None:  # on the store's thread
        if sql == "COMMIT":
            self.count += 1

    def per_task(self, count: int, tasks: int) -> float | None:
        """*count* transactions over *tasks* tasks, per task."""
        return count / tasks if self.counting else None


@attrs.define
class _Series:
    """One store's dispatcher, and what was measured through it so far."""

    name: str
    dispatcher: trio_pipe.Dispatcher
    transactions: Transactions
    rates: list[float] = attrs.Factory(list)
    submitter_rates: list[float] = attrs.Factory(list)
    samples: list[float] = attrs.Factory(list)
    counted: dict[str, int] = attrs.Factory(dict)  # transactions, per measure

    async def measure(self, kind: str, run: Callable[[], Awaitable[Any]]) -> Any:
        """``await run()``, counting the store's transactions under *kind*."""
        before = self.transactions.count
        result = await run()
        self.counted[kind] = self.counted.get(kind, 0) + self.transactions.count - before
        return result


async def round_trips(
    directory: Path, *, tasks: int, latency_tasks: int
) -> list[dict[str, Any]]:
    """A dispatcher per store, each with its worker process, open side by side; then,
    after a warm-up, the measures in rounds that take each store in turn (in a
    rotating order), so that a change in the machine's load between rounds weighs
    on every store alike: three runs of *tasks* from one submitter, three from
    :data:`IN_FLIGHT` submitters, and *latency_tasks* one at a time in four parts.
    A row per store; each SQLite row also gives its throughput as a ratio to
    memory's and its p50 minus memory's."""
    async with contextlib.AsyncExitStack() as stack:
        series = []
        for n, (name, make) in enumerate(STORES.items()):
            store = make(directory / f"round-trips-{n}.db")
            dispatcher = await stack.enter_async_context(
                trio_pipe.open_dispatcher(store=store)
            )
            series.append(_Series(name, dispatcher, Transactions(store)))
        # Entered last, so cancelled first: the workers stop before the dispatchers.
        nursery = await stack.enter_async_context(trio.open_nursery())
        async with trio.open_nursery() as starting:  # the workers start at once
            for one in series:
                starting.start_soon(
                    ws_roundtrip.start_workers, nursery, one.dispatcher, 1, IN_FLIGHT
                )
        for one in series:
            await throughput(one.dispatcher, min(tasks, 500), IN_FLIGHT)  # warm-up

        def rounds(count: int) -> Iterator[_Series]:
            for r in range(count):
                turn = r % len(series)
                yield from series[turn:] + series[:turn]

        for one in rounds(3):
            run = partial(throughput, one.dispatcher, tasks, IN_FLIGHT)
            one.rates.append(await one.measure("one_submitter", run))
        for one in rounds(3):
            run = partial(throughput_submitters, one.dispatcher, tasks, IN_FLIGHT)
            one.submitter_rates.append(await one.measure("submitters", run))
        parts = 4
        for one in rounds(parts):
            run = partial(latencies, one.dispatcher, latency_tasks // parts)
            one.samples += await one.measure("one_at_a_time", run)
        nursery.cancel_scope.cancel()
    rows = [_round_trip_row(one, tasks, latency_tasks // parts * parts) for one in series]
    memory = rows[0]
    for row in rows[1:]:
        row["ratio_to_memory"] = row["tasks_per_s"] / memory["tasks_per_s"]
        row["submitters_ratio_to_memory"] = (
            row["submitters_tasks_per_s"] / memory["submitters_tasks_per_s"]
        )
        row["p50_added_us"] = row["p50_us"] - memory["p50_us"]
    return rows


def _round_trip_row(series: _Series, tasks: int, latency_tasks: int) -> dict[str, Any]:
    samples = sorted(series.samples)
    per_task = series.transactions.per_task
    return {
        "scenario": f"store: {series.name}; websocket, one Python worker process",
        "store": series.name,
        "tasks_per_s": statistics.median(series.rates),
        "tasks_per_s_min": min(series.rates),
        "tasks_per_s_max": max(series.rates),
        "submitters_tasks_per_s": statistics.median(series.submitter_rates),
        "submitters_tasks_per_s_min": min(series.submitter_rates),
        "submitters_tasks_per_s_max": max(series.submitter_rates),
        "p50_us": statistics.median(samples),
        "p99_us": samples[int(len(samples) * 0.99) - 1],
        "transactions_per_task": per_task(series.counted["one_submitter"], 3 * tasks),
        "submitters_transactions_per_task": per_task(
            series.counted["submitters"], 3 * tasks
        ),
        "one_at_a_time_transactions_per_task": per_task(
            series.counted["one_at_a_time"], latency_tasks
        ),
    }


# -- size -------------------------------------------------------------------------------


def _file_bytes(path: Path) -> int:
    """The database file and its write-ahead log, if it has one."""
    wal = path.with_name(path.name + "-wal")
    return sum(p.stat().st_size for p in (path, wal) if p.exists())


def _used_bytes(path: Path) -> int:
    """The bytes of the database's pages in use (its size less its free pages)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        (free,) = db.execute("PRAGMA freelist_count").fetchone()
    return int((pages - free) * page_size)


def _vacuum(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("VACUUM")


async def database_size(path: Path, tasks: int) -> dict[str, Any]:
    """Complete *tasks* no-op tasks through a SqliteStore (with a worker in the
    dispatcher's process: the database is the same as with a remote one), close it;
    open it again with a retention that expires them all and prune; then ``VACUUM``.
    Sizes are of the file (and its WAL, which closing the store leaves empty);
    pruning frees pages without shrinking the file, so the bytes of the pages still
    in use are reported beside it."""
    async with (
        trio_pipe.open_dispatcher(port=None, store=SqliteStore(path)) as dispatcher,
        trio.open_nursery() as nursery,
    ):
        worker = await connect_memory_worker(
            dispatcher, "mem", ["noop"], max_concurrency=IN_FLIGHT
        )
        nursery.start_soon(inprocess.answer_everything, worker)
        await throughput_submitters(dispatcher, tasks, IN_FLIGHT)
        nursery.cancel_scope.cancel()
    filled = _file_bytes(path)
    expiring = SqliteStore(path, retention=Retention(completed=0.0, failed=0.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(expiring.run)
        pruned = await expiring.prune(time.time())
        nursery.cancel_scope.cancel()
    pruned_file, pruned_used = _file_bytes(path), _used_bytes(path)
    _vacuum(path)
    return {
        "scenario": f"sqlite database, {tasks:,} completed tasks",
        "tasks": tasks,
        "file_bytes": filled,
        "bytes_per_task": filled / tasks,
        "pruned": pruned,
        "pruned_file_bytes": pruned_file,
        "pruned_used_bytes": pruned_used,
        "vacuumed_file_bytes": _file_bytes(path),
    }


# -- restart ----------------------------------------------------------------------------


async def _submit(dispatcher: trio_pipe.Dispatcher, tasks: int, task_type: str) -> None:
    """Submit *tasks* tasks from :data:`IN_FLIGHT` submitters, waiting for none."""
    numbers = iter(range(tasks))

    async def submitter() -> None:
        for i in numbers:  # shared: each number is taken once
            await dispatcher.submit(Task.new(task_type, i))

    async with trio.open_nursery() as nursery:
        for _ in range(IN_FLIGHT):
            nursery.start_soon(submitter)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _start_connecting_worker(nursery: trio.Nursery, url: str) -> None:
    """Start benchmarks/connecting_worker.py; return once it is trying to connect."""
    argv = [
        sys.executable, "-m", "benchmarks.connecting_worker", url, "restart",
        str(IN_FLIGHT),
    ]  # fmt: skip
    process = await nursery.start(
        partial(
            trio.run_process,
            argv,
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
    )
    with trio.fail_after(30):
        said = b""
        while not said.endswith(b"\n"):
            chunk = await process.stdout.receive_some()
            if not chunk:
                raise RuntimeError(f"the worker exited before connecting: {said!r}")
            said += chunk
    if said != b"connecting\n":
        raise RuntimeError(f"the worker said {said!r} instead of 'connecting'")


def _reopened(store: Store) -> Store:
    """*store* for the next dispatcher: the same MemoryStore (it outlives its
    dispatcher only in this process), or a new SqliteStore on the same file, as a
    restarted process would make."""
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path, synchronous=store.synchronous)
    return store


async def restart(name: str, store: Store, tasks: int) -> dict[str, Any]:
    """Queue *tasks* tasks in *store* with no worker, close the dispatcher (its queued
    tasks stay in the store). Time the store's opening alone (reading and recovering
    its tasks). Then start a worker that tries to connect every few milliseconds, and
    time a new dispatcher on the store until it is open (the store opened, every task
    queued again, the listener up) and until the worker runs its first task (the
    oldest; its handler reports the wall-clock time it ran)."""
    fill_started = time.perf_counter()
    async with trio_pipe.open_dispatcher(
        port=None, store=store, max_queued=tasks
    ) as dispatcher:
        await _submit(dispatcher, tasks, "stamp")
        (oldest,) = await dispatcher.tasks(limit=1)
    fill_s = time.perf_counter() - fill_started
    store = _reopened(store)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        store_open_s = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    port = _free_port()
    async with trio.open_nursery() as nursery:
        await _start_connecting_worker(nursery, f"ws://127.0.0.1:{port}")
        store = _reopened(store)
        started = time.time()
        async with trio_pipe.open_dispatcher(port=port, store=store) as dispatcher:
            opened = time.time()
            stats = dispatcher.pool_stats()
            handle = await dispatcher.handle(oldest.id)
            ran: float = await handle.value()
        nursery.cancel_scope.cancel()
    return {
        "scenario": f"restart with {tasks:,} queued tasks: {name}",
        "store": name,
        "tasks": tasks,
        "resumed": stats.queued + stats.in_flight,
        "fill_s": fill_s,
        "store_open_s": store_open_s,
        "open_s": opened - started,
        "first_task_s": ran - started,
    }


# -- report -----------------------------------------------------------------------------


def _transactions(row: dict[str, Any]) -> str:
    keys = (
        "transactions_per_task",
        "submitters_transactions_per_task",
        "one_at_a_time_transactions_per_task",
    )
    if row[keys[0]] is None:
        return "—"
    return " / ".join(f"{row[key]:.2f}" for key in keys)


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def print_section(rows: list[dict[str, Any]]) -> None:
    """The section's tables, in the suite's markdown."""
    print(
        "\n| store (websocket, one Python worker) | tasks/s, 256 in flight, one submitter "
        "(median of 3, min-max) | x memory | tasks/s, 256 submitters | x memory "
        "| p50 µs | p50 added over memory, µs | p99 µs "
        "| SQLite transactions/task (one submitter / 256 / one at a time) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "tasks_per_s" not in row:
            continue
        ratio = f"{row['ratio_to_memory']:.2f}" if "ratio_to_memory" in row else "—"
        submitters_ratio = (
            f"{row['submitters_ratio_to_memory']:.2f}" if "ratio_to_memory" in row else "—"
        )
        added = f"{row['p50_added_us']:+,.0f}" if "p50_added_us" in row else "—"
        print(
            f"| {row['store']} | {row['tasks_per_s']:,.0f} "
            f"({row['tasks_per_s_min']:,.0f}-{row['tasks_per_s_max']:,.0f}) | {ratio} "
            f"| {row['submitters_tasks_per_s']:,.0f} "
            f"({row['submitters_tasks_per_s_min']:,.0f}-"
            f"{row['submitters_tasks_per_s_max']:,.0f}) | {submitters_ratio} "
            f"| {row['p50_us']:,.0f} | {added} | {row['p99_us']:,.0f} "
            f"| {_transactions(row)} |"
        )
    print("\n| store scenario | figure |")
    print("|---|---|")
    for row in rows:
        if "file_bytes" in row:
            print(
                f"| {row['scenario']} | {_megabytes(row['file_bytes'])} "
                f"({row['bytes_per_task']:,.0f} bytes/task); {row['pruned']:,} pruned: "
                f"file {_megabytes(row['pruned_file_bytes'])}, pages in use "
                f"{_megabytes(row['pruned_used_bytes'])}; after VACUUM "
                f"{_megabytes(row['vacuumed_file_bytes'])} |"
            )
        elif "open_s" in row:
            print(
                f"| {row['scenario']} | open {row['open_s']:.2f} s (the store alone "
                f"{row['store_open_s']:.2f} s), the worker's first task "
                f"{row['first_task_s']:.2f} s after opening began ({row['resumed']:,} "
                f"resumed when it opened, the rest a page at a time; filling took "
                f"{row['fill_s']:.1f} s) |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store")
    parser.add_argument("--full", action="store_true", help="full-size runs")
    args = parser.parse_args()
    rows = trio.run(partial(measure, **sizes(args.full)))
    print_section(rows)
    out = Path(__file__).parent / "results" / f"store-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(
        json.dumps({"machine": machine(), "full": args.full, "runs": rows}, indent=2)
    )
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
