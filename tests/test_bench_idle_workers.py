"""The idle-worker CPU benchmark runs and reports sane fields (tiny sizes; the CPU
figures themselves are measured by `nox -s bench`, never asserted here)."""

from __future__ import annotations

import resource

import pytest
from helpers import child_processes

from benchmarks import idle_workers

pytestmark = pytest.mark.slow


async def test_idle_workers_connect_heartbeat_and_are_cleaned_up() -> None:
    row = await idle_workers.measure(workers=20, window=1.5, settle=0.2, start_timeout=60)
    assert row["workers"] == 20
    assert row["workers_connected"] == 20
    assert row["workers_lost"] == 0
    assert 0 <= row["workers_heard_in_window"] <= 20
    assert row["window_s"] >= 1.5
    assert row["heartbeat_interval_s"] == idle_workers.DEFAULT_HEARTBEAT_INTERVAL == 5.0
    assert row["dispatcher_cpu_percent"] >= 0
    assert row["workers_process_cpu_percent"] >= 0
    assert "20 WebSocket workers" in row["scenario"]
    assert child_processes() == []


def test_the_fd_limit_is_left_alone_when_it_suffices() -> None:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert idle_workers.raise_fd_limit(16) == soft
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == soft
