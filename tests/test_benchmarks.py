"""The benchmark code runs (tiny sizes; speed is measured by `nox -s bench`, never
asserted here)."""

from __future__ import annotations

import pytest
from helpers import child_processes

from benchmarks import inprocess, store


async def test_the_in_process_overhead_benchmark_runs() -> None:
    row = await inprocess.dispatch_overhead(200)
    assert row["submit_us_per_task"] > 0 and row["round_trip_us_per_task"] > 0


def test_the_memory_benchmark_runs() -> None:
    assert inprocess.memory_per_queued_task(1_000)["bytes_per_queued_task"] > 0


@pytest.mark.slow
@pytest.mark.timeout(300)  # a few seconds on an idle machine; minutes on a busy one
async def test_the_store_section_runs_in_quick_mode_and_reports_every_figure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    quick = store.sizes(full=False)
    rows = await store.measure(**quick)
    trips = [row for row in rows if "tasks_per_s" in row]
    (size,) = [row for row in rows if "file_bytes" in row]
    restarts = [row for row in rows if "open_s" in row]

    assert [row["store"] for row in trips] == list(store.STORES)
    for row in trips:
        for figure in (
            "tasks_per_s",
            "tasks_per_s_min",
            "tasks_per_s_max",
            "submitters_tasks_per_s",
            "submitters_tasks_per_s_min",
            "submitters_tasks_per_s_max",
            "p50_us",
            "p99_us",
        ):
            assert row[figure] > 0, figure
        counts = (
            row["transactions_per_task"],
            row["submitters_transactions_per_task"],
            row["one_at_a_time_transactions_per_task"],
        )
        if row["store"] == "memory":
            assert counts == (None, None, None)
            assert "ratio_to_memory" not in row
        else:
            # A task is written in at most about one transaction (its submission's,
            # which its dispatch and result share with others').
            assert all(0 < count <= 2 for count in counts), counts
            assert row["ratio_to_memory"] > 0 and row["submitters_ratio_to_memory"] > 0
            assert row["p50_added_us"] == row["p50_us"] - trips[0]["p50_us"]

    assert size["tasks"] == size["pruned"] == quick["size_tasks"]
    assert size["bytes_per_task"] == size["file_bytes"] / size["tasks"]
    assert 0 < size["pruned_used_bytes"] < size["file_bytes"]
    assert size["pruned_used_bytes"] < size["pruned_file_bytes"]  # freed pages stay
    assert 0 < size["vacuumed_file_bytes"] < size["file_bytes"]

    assert [row["store"] for row in restarts] == ["memory", "sqlite"]
    for row in restarts:
        # A page at a time: at least the first page by the first task, at most all.
        assert row["tasks"] == quick["restart_tasks"]
        assert 0 < row["resumed"] <= row["tasks"]
        assert row["fill_s"] > 0 and row["store_open_s"] > 0
        assert 0 < row["open_s"] < row["first_task_s"]

    store.print_section(rows)
    printed = capsys.readouterr().out
    for row in trips:
        assert f"| {row['store']} |" in printed
    for row in (size, *restarts):
        assert f"| {row['scenario']} |" in printed
    assert child_processes() == []


@pytest.mark.slow
@pytest.mark.timeout(300)  # seconds on an idle machine; minutes on a busy one
async def test_the_http_api_benchmark_runs_and_reports_every_figure() -> None:
    from benchmarks import http_api

    row = await http_api.measure(tasks=100, latency_tasks=20, rounds=2)
    for figure in (
        "tasks_per_s_plain",
        "tasks_per_s_http_metrics",
        "p50_us_in_process",
        "p50_us_http",
    ):
        assert row[figure] > 0, figure
    assert [len(runs) for runs in row["tasks_per_s_rounds"].values()] == [2, 2]
    assert row["scrapes"] >= 1
    assert row["latency_samples"] == 20
    assert child_processes() == []
