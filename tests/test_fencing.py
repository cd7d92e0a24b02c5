"""Fencing with real processes: a worker frozen (SIGSTOP) past the heartbeat timeout
loses its attempt to another worker; when it resumes (SIGCONT), its copy of the task
is stopped and nothing it could say changes the outcome."""

from __future__ import annotations

import os
import signal
import sys
from functools import partial
from pathlib import Path

import pytest
import trio
from helpers import ROOT

from trio_pipe import ErrorCode, Task, TaskEventKind, TaskStatus, open_dispatcher
from trio_pipe.store import SqliteStore


async def start_worker(
    nursery: trio.Nursery, url: str, worker_id: str, log: Path
) -> trio.Process:
    run = partial(
        trio.run_process,
        [sys.executable, "-m", "tests.crash_handlers", url, worker_id],
        cwd=ROOT,
        env={**os.environ, "TRIO_PIPE_CRASH_LOG": str(log)},
        check=False,
    )
    process: trio.Process = await nursery.start(run)
    return process


def runs(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_a_frozen_worker_loses_its_attempt_and_its_copy_is_stopped_on_resume(
    tmp_path: Path,
) -> None:
    frozen_log, other_log = tmp_path / "frozen.log", tmp_path / "other.log"
    store = SqliteStore(tmp_path / "tasks.db")
    async with open_dispatcher(store=store, heartbeat_timeout=1.0) as d:
        async with trio.open_nursery() as nursery, d.events() as events:
            frozen = await start_worker(nursery, d.url, "frozen", frozen_log)
            await d.wait_for_workers(1)
            handle = await d.submit(Task.new("stall-first-attempt", {"seconds": 30}))
            async for event in events:
                if event.kind is TaskEventKind.DISPATCHED:
                    break
            # Another process writes the log: there is no event to wait on.
            while not frozen_log.exists() or not runs(frozen_log):  # noqa: ASYNC110
                await trio.sleep(0.01)  # the handler has started (its first line)
            frozen.send_signal(signal.SIGSTOP)
            await start_worker(nursery, d.url, "other", other_log)
            # Silent past the heartbeat timeout: declared dead, the task retried on the
            # other worker, which completes attempt 2.
            assert await handle.value() == "attempt 2"
            frozen.send_signal(signal.SIGCONT)
            # On resuming it finds its connection gone and stops its copy of attempt
            # 1 (before it reconnects); then it comes back as a new connection.
            with trio.fail_after(20):
                await d.wait_for_workers(2)
            nursery.cancel_scope.cancel()
        assert runs(frozen_log)[1][2:3] == ["1"] and runs(frozen_log)[1][-1] == "cancelled"
        assert [r[-1] for r in runs(other_log) if r[0] == "end"] == ["completed"]
        assert (await handle.result()).payload == "attempt 2"  # the outcome stands
        (record,) = await d.tasks()
        first, second = record.attempts
        assert (first.number, first.worker_id, first.status) == (
            1,
            "frozen",
            TaskStatus.FAILED,
        )
        assert first.error is not None and first.error.code == ErrorCode.WORKER_DISCONNECTED
        assert (second.number, second.worker_id, second.status) == (
            2,
            "other",
            TaskStatus.COMPLETED,
        )
        assert record.result is not None and record.result.payload == "attempt 2"
