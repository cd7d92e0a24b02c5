"""The rolling-restart benchmark runs, and a rolling restart under load fails no task
(a small load here; `nox -s bench_restart` measures 1,000 tasks/s)."""

from __future__ import annotations

import pytest
from helpers import child_processes

from benchmarks import rolling_restart

pytestmark = pytest.mark.slow


async def test_a_rolling_restart_under_load_fails_no_task() -> None:
    row = await rolling_restart.measure(
        rate=100, workers=2, nap_ms=50, warmup=1.0, between=0.5, cooldown=1.0
    )
    assert row["failed"] == 0, row["failed_codes"]
    assert row["tasks"] > 100
    assert [r["exit_status"] for r in row["restarts"]] == [0, 0]
    assert row["retried_tasks"] <= row["retries_by_dispatcher"]
    assert "2 Python workers" in row["scenario"]
    assert child_processes() == []
