"""Durable resume: a workflow whose dispatcher process is killed with SIGKILL at
random moments, over a SQLite store, with real worker processes attached over
WebSocket. Each incarnation runs the workflow again with the same run id.

After each kill the test reads from the store which steps had completed (their tasks,
found by their idempotency keys, ``workflow/squares/crash-run/<step path>``); the workers log the
start of every step they run (on the system-wide monotonic clock). No step that had
completed at a kill is started after it, and the last incarnation, which is let
finish, returns the right total. The random seed is printed;
``TRIO_PIPE_CRASH_SEED`` replays a run, ``TRIO_PIPE_WORKFLOW_KILLS`` sets the number
of kills.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from helpers import free_port
from test_crash import _start, _wait_for_line

KILLS = int(os.environ.get("TRIO_PIPE_WORKFLOW_KILLS", 20))
ITEMS = 400


def _completed_steps(db: Path) -> set[str]:
    if not db.exists():
        return set()
    with sqlite3.connect(db) as store:
        rows = store.execute(
            "SELECT idempotency_key FROM tasks WHERE status = 'Completed'"
        ).fetchall()
    return {key for (key,) in rows}


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_workflow_killed_with_sigkill_resumes_and_reruns_no_completed_step(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("TRIO_PIPE_CRASH_SEED", random.randrange(2**32)))
    print(f"TRIO_PIPE_CRASH_SEED={seed}")
    rng = random.Random(seed)
    db, port = tmp_path / "tasks.db", free_port()
    url = f"ws://127.0.0.1:{port}"
    logs = [tmp_path / f"w{n}.log" for n in range(2)]
    workers = [
        _start(
            ["tests.crash_handlers", url, f"w{n}"],
            tmp_path / f"w{n}.out",
            {"TRIO_PIPE_CRASH_LOG": str(log)},
        )
        for n, log in enumerate(logs)
    ]
    argv = ["tests.workflow_crash_dispatcher", str(db), str(port), str(ITEMS)]
    kills: list[tuple[int, set[str]]] = []  # when, and the steps completed then
    try:
        for incarnation in range(KILLS):
            out = tmp_path / f"dispatcher-{incarnation}.out"
            dispatcher = _start(argv, out)
            try:
                _wait_for_line(out, "ready", dispatcher, 60)
                time.sleep(rng.uniform(0, 1.0))  # the moment of the kill
            finally:
                dispatcher.send_signal(signal.SIGKILL)
                dispatcher.wait()
            kills.append((time.monotonic_ns(), _completed_steps(db)))
        out = tmp_path / "dispatcher-last.out"
        last = _start(argv, out)
        try:
            assert last.wait(timeout=600) == 0, out.read_text()
        finally:
            last.kill()
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()

    assert f"done {sum(i * i for i in range(ITEMS))}" in out.read_text()
    starts = [
        (fields[1], int(fields[2]))
        for log in logs
        for fields in map(str.split, log.read_text().splitlines())
        if fields[0] == "start"
    ]
    for killed_at, completed in kills:
        rerun = sorted(key for key, at in starts if at > killed_at and key in completed)
        assert not rerun, f"completed before a kill, run again after it: {rerun}"
    steps = ITEMS + 2  # numbers, each square, total
    with sqlite3.connect(db) as store:
        statuses = store.execute(
            "SELECT idempotency_key, status FROM tasks WHERE idempotency_key LIKE "
            "'workflow/squares/crash-run/%'"
        ).fetchall()
    assert len(statuses) == steps, "one task per step, whatever the incarnations"
    assert {status for _, status in statuses} == {"Completed"}
    midway = sum(0 < len(completed) < steps for _, completed in kills)
    print(
        f"{KILLS} kills, {midway} with the workflow part done; {len(starts)} step "
        f"runs for {steps} steps; completed at each kill: "
        + " ".join(str(len(completed)) for _, completed in kills)
    )
    assert midway >= KILLS // 4, "too few kills landed mid-run to test resuming"
