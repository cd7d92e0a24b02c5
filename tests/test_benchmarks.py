"""The benchmark code runs (tiny sizes; speed is measured by `nox -s bench`, never
asserted here)."""

from __future__ import annotations

from benchmarks import inprocess


async def test_the_in_process_overhead_benchmark_runs() -> None:
    row = await inprocess.dispatch_overhead(200)
    assert row["submit_us_per_task"] > 0 and row["round_trip_us_per_task"] > 0


def test_the_memory_benchmark_runs() -> None:
    assert inprocess.memory_per_queued_task(1_000)["bytes_per_queued_task"] > 0
