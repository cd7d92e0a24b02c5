"""How a Trio program can talk to PostgreSQL: the three ways docs/architecture.md
weighs for PostgresStore, measured in the same run on one throwaway cluster.

- **psycopg, threads**: psycopg 3's blocking connection, each call made in a worker
  thread (``trio.to_thread.run_sync``), as PostgresStore does.
- **psycopg, generator core**: psycopg's non-blocking libpq generators
  (``psycopg.generators.execute``) driven by ``trio.lowlevel.wait_readable`` on the
  connection's socket: no thread, but psycopg's internal API and no row adaptation.
- **asyncpg, trio-asyncio**: asyncpg on an asyncio loop run inside Trio, each call
  wrapped with ``trio_asyncio.aio_as_trio`` (as the SSH transport drives asyncssh).

For each: sequential round trips of a one-parameter ``SELECT`` (statements/s, p50
and p99), and 100-row ``INSERT`` batches in one transaction each (rows/s), the shape
of a group commit. Needs PostgreSQL's server binaries (Debian's ``postgresql``).

    python -m benchmarks.postgres_drivers            # quick
    python -m benchmarks.postgres_drivers --full     # the figures of docs/architecture.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
import trio
import trio_asyncio
from psycopg import generators
from psycopg.waiting import Ready, Wait

from ._measure import machine
from ._postgres import find_binaries, throwaway_cluster

BATCH = 100


def _figures(label: str, times: list[float], batches: list[float]) -> dict[str, Any]:
    times.sort()
    return {
        "driver": label,
        "statements_per_s": round(len(times) / sum(times)),
        "p50_us": round(statistics.median(times) * 1e6, 1),
        "p99_us": round(times[int(len(times) * 0.99)] * 1e6, 1),
        "batch_rows_per_s": round(BATCH * len(batches) / sum(batches)),
    }


async def _measure(
    round_trip: Callable[[], Awaitable[object]],
    batch: Callable[[], Awaitable[object]],
    n: int,
) -> tuple[list[float], list[float]]:
    for _ in range(min(n // 10, 200)):  # warm up
        await round_trip()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await round_trip()
        times.append(time.perf_counter() - start)
    batches = []
    for _ in range(max(n // BATCH, 10)):
        start = time.perf_counter()
        await batch()
        batches.append(time.perf_counter() - start)
    return times, batches


async def psycopg_threads(dsn: str, n: int) -> dict[str, Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    limiter = trio.CapacityLimiter(1)
    rows = [(i,) for i in range(BATCH)]

    def select() -> object:
        return conn.execute("SELECT %s::int", (1,)).fetchone()

    def insert() -> None:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.executemany("INSERT INTO bench VALUES (%s)", rows)

    try:
        times, batches = await _measure(
            lambda: trio.to_thread.run_sync(select, limiter=limiter),
            lambda: trio.to_thread.run_sync(insert, limiter=limiter),
            n,
        )
    finally:
        conn.close()
    return _figures("psycopg, threads", times, batches)


async def _drive(pgconn: Any, generator: Any) -> Any:
    """Run one of psycopg's libpq generators to its end on Trio's I/O waits."""
    fd = pgconn.socket
    try:
        wait = next(generator)
        while True:
            if wait == Wait.W:
                await trio.lowlevel.wait_writable(fd)
                wait = generator.send(Ready.W)
            else:  # R or RW: the reply is what is awaited
                await trio.lowlevel.wait_readable(fd)
                wait = generator.send(Ready.R)
    except StopIteration as done:
        return done.value


async def psycopg_generators(dsn: str, n: int) -> dict[str, Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    pgconn = conn.pgconn
    pgconn.nonblocking = 1

    async def execute(sql: bytes, params: list[bytes | None] | None = None) -> Any:
        if params is None:
            pgconn.send_query(sql)
        else:
            pgconn.send_query_params(sql, params)
        results = await _drive(pgconn, generators.execute(pgconn))
        for result in results:
            if result.status == psycopg.pq.ExecStatus.FATAL_ERROR:
                raise RuntimeError(result.error_message.decode())
        return results

    values = b", ".join(b"(%d)" % i for i in range(BATCH))

    async def insert() -> None:
        # No parameter adaptation or executemany at this layer: one literal statement.
        await execute(b"BEGIN")
        await execute(b"INSERT INTO bench VALUES " + values)
        await execute(b"COMMIT")

    try:
        times, batches = await _measure(
            lambda: execute(b"SELECT $1::int", [b"1"]), insert, n
        )
    finally:
        conn.close()
    return _figures("psycopg, generator core + wait_readable", times, batches)


async def asyncpg_trio_asyncio(dsn: str, n: int) -> dict[str, Any]:
    async with trio_asyncio.open_loop():
        conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(dsn)
        rows = [(i,) for i in range(BATCH)]

        async def insert() -> None:
            async def transaction() -> None:
                async with conn.transaction():
                    await conn.executemany("INSERT INTO bench VALUES ($1)", rows)

            await trio_asyncio.aio_as_trio(transaction)()

        try:
            times, batches = await _measure(
                lambda: trio_asyncio.aio_as_trio(conn.fetchval)("SELECT $1::int", 1),
                insert,
                n,
            )
        finally:
            await trio_asyncio.aio_as_trio(conn.close)()
    return _figures("asyncpg, trio-asyncio", times, batches)


DRIVERS = (psycopg_threads, psycopg_generators, asyncpg_trio_asyncio)


def run(n: int) -> dict[str, Any]:
    bin_dir = find_binaries()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL server binaries: apt-get install postgresql")
    with throwaway_cluster(bin_dir) as cluster:
        dsn = cluster.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE bench (n int)")
        results = [trio.run(driver, dsn, n) for driver in DRIVERS]
    return {"machine": machine(), "round_trips": n, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="20,000 round trips each")
    args = parser.parse_args()
    print(json.dumps(run(20_000 if args.full else 2_000), indent=2))


if __name__ == "__main__":
    main()
