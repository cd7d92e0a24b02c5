"""Crash tests: a real dispatcher process over a SQLite store, killed with SIGKILL at
random moments, with real worker processes attached over WebSocket.

Each of :data:`KILLS` incarnations submits a growing set of keyed tasks (the keys it
already submitted come back as the same tasks: a burst of submissions against the
store every time) and is killed at a random moment -- while submitting, while
dispatching, while results come in and group commits run. A last incarnation runs
until every task has ended. Then:

- every task whose ``submit()`` returned (the dispatcher printed ``accepted``) has
  ended ``Completed`` in the store, with its result readable, and a key always meant
  the same task, across incarnations;
- no task ever ran on two workers at once (the workers log each run's start and end
  on the system-wide monotonic clock; the runs of a task must not overlap);
- ``PRAGMA integrity_check`` is ok.

The random seed is printed; ``TRIO_PIPE_CRASH_SEED`` replays a run.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from helpers import free_port

KILLS = int(os.environ.get("TRIO_PIPE_CRASH_KILLS", 50))
KEYS_PER_INCARNATION = 30
ROOT = Path(__file__).resolve().parent.parent


def _start(
    args: list[str], out: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with out.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )


def _wait_for_line(
    path: Path, prefix: str, process: subprocess.Popen[bytes], limit: float
) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if any(line.startswith(prefix) for line in path.read_text().splitlines()):
            return
        if process.poll() is not None:
            raise AssertionError(
                f"the dispatcher exited {process.returncode}:\n{path.read_text()}"
            )
        time.sleep(0.02)
    raise AssertionError(f"no {prefix!r} line within {limit} s:\n{path.read_text()}")


def _accepted(path: Path) -> list[tuple[str, str]]:
    """The ``accepted KEY ID`` lines written completely (a kill may cut the last)."""
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]
    return [
        (fields[1], fields[2])
        for fields in map(str.split, complete.splitlines())
        if len(fields) == 3 and fields[0] == "accepted"
    ]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_kill_9_at_random_moments_loses_no_accepted_task_and_runs_none_twice_at_once(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("TRIO_PIPE_CRASH_SEED", random.randrange(2**32)))
    print(f"TRIO_PIPE_CRASH_SEED={seed}")
    rng = random.Random(seed)
    db, port = tmp_path / "tasks.db", free_port()
    url = f"ws://127.0.0.1:{port}"
    workers = [
        _start(
            ["tests.crash_handlers", url, f"w{n}"],
            tmp_path / f"w{n}.out",
            {"TRIO_PIPE_CRASH_LOG": str(tmp_path / f"w{n}.log")},
        )
        for n in range(2)
    ]
    accepted: dict[str, str] = {}
    try:
        for incarnation in range(KILLS):
            out = tmp_path / f"dispatcher-{incarnation}.out"
            keys = KEYS_PER_INCARNATION * (incarnation + 1)
            dispatcher = _start(
                ["tests.crash_dispatcher", str(db), str(port), str(keys)], out
            )
            try:
                _wait_for_line(out, "ready", dispatcher, 60)
                time.sleep(rng.uniform(0, 0.6))  # the moment of the kill: the test's input
            finally:
                dispatcher.send_signal(signal.SIGKILL)
                dispatcher.wait()
            for key, task_id in _accepted(out):
                assert accepted.setdefault(key, task_id) == task_id, f"{key} changed task"
        out = tmp_path / "dispatcher-last.out"
        last = _start(["tests.crash_dispatcher", str(db), str(port), "0", "--finish"], out)
        try:
            assert last.wait(timeout=600) == 0, out.read_text()
        finally:
            last.kill()
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()

    assert len(accepted) > KEYS_PER_INCARNATION, "too few submissions returned to test"
    with sqlite3.connect(db) as store:
        assert store.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = dict(store.execute("SELECT id, status FROM tasks").fetchall())
        results = dict(store.execute("SELECT id, result FROM tasks").fetchall())
        keys = dict(store.execute("SELECT idempotency_key, id FROM tasks").fetchall())
    for key, task_id in accepted.items():
        assert keys.get(key) == task_id, f"{key}: the store lost or changed its task"
        assert rows[task_id] == "Completed", f"{key} ({task_id}) ended {rows[task_id]}"
        assert f'"payload":"{key}"' in results[task_id]

    runs: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for n in range(2):
        started: dict[tuple[str, str], int] = {}
        for fields in map(str.split, (tmp_path / f"w{n}.log").read_text().splitlines()):
            if fields[0] == "start":
                started[fields[1], fields[2]] = int(fields[3])
            else:
                runs[fields[1]].append(
                    (started.pop((fields[1], fields[2])), int(fields[3]))
                )
        assert not started, f"w{n}: runs that never ended: {started}"
    for task_id, spans in runs.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"task {task_id} ran on two workers at once"
    assert set(runs) >= set(accepted.values())
    with sqlite3.connect(db) as store:
        (restarted,) = store.execute(
            "SELECT count(*) FROM attempts WHERE error_code = 'DISPATCHER_RESTARTED'"
        ).fetchone()
    cancelled = sum(
        line.endswith(" cancelled")
        for n in range(2)
        for line in (tmp_path / f"w{n}.log").read_text().splitlines()
    )
    print(
        f"{len(accepted)} tasks accepted, {sum(map(len, runs.values()))} runs, "
        f"{cancelled} cut short by a kill, {restarted} attempts DISPATCHER_RESTARTED"
    )
