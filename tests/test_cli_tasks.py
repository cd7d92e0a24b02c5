"""``trio-pipe tasks``: the task store from the command line, run as a real process.

Each test fills a SQLite store through the store's public API (times chosen by the
test, so that ages and local times are known), closes it, and runs ``python -m
trio_pipe tasks ...`` against the file, as a user would.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from helpers import ROOT

from trio_pipe import Priority, Task, TaskError, TaskResult, TaskStatus
from trio_pipe._table import aligned
from trio_pipe.cli import main
from trio_pipe.store import SqliteStore, TaskRecord

WAIT = 60  # seconds: a bound for each command (one takes a second or two)
MINUTE, HOUR, DAY = 60.0, 3600.0, 24 * 3600.0
# Local time for the commands: UTC+05:30, whatever this machine's zone, so that the
# table's local times are known to differ from UTC. (POSIX: the offset is west of UTC.)
TZ = "XST-05:30"
LOCAL = timezone(timedelta(hours=5, minutes=30))
MISSING = "00000000-0000-4000-8000-000000000000"


# -- the store ------------------------------------------------------------------------


@attrs.frozen
class Filled:
    """A closed store file with seven tasks, one per situation, oldest first."""

    path: Path
    now: float
    ids: dict[str, uuid.UUID]

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def id(self, name: str) -> str:
        return str(self.ids[name])

    def names(self, ids: list[str]) -> list[str]:
        by_id = {str(task_id): name for name, task_id in self.ids.items()}
        return [by_id[task_id] for task_id in ids]

    async def records(self) -> list[TaskRecord]:
        store = SqliteStore(self.path, readonly=True)
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            records = await store.tasks(limit=100)
            nursery.cancel_scope.cancel()
        return records


def _failure(
    task_id: uuid.UUID, status: TaskStatus, error: TaskError, worker: str
) -> TaskResult:
    return TaskResult(task_id, status, error=error, worker_id=worker)


async def fill(path: Path) -> Filled:
    """Write the seven tasks of :class:`Filled` to a new store at *path* and close it.

    - ``done``: resize, Completed on w-1 three days ago;
    - ``dead_old``: resize, failed on w-1 (retryable), then on w-2 (not): Failed two
      days ago, its retry used up;
    - ``timed_out``: email, TimedOut on w-2 an hour ago;
    - ``cancelled``: email, Cancelled while queued half an hour ago;
    - ``dead_new``: email, Failed on w-1 five minutes ago;
    - ``running``: resize, on w-2 now;
    - ``waiting``: email, queued, with every optional field.
    """
    now = time.time()
    store = SqliteStore(path)
    ids: dict[str, uuid.UUID] = {}

    async def add(name: str, task: Task, submitted: float) -> uuid.UUID:
        deadline = submitted + task.metadata.timeout_ms / 1000
        record = TaskRecord(task, TaskStatus.PENDING, submitted, deadline, submitted)
        await store.add(record)
        ids[name] = task.id
        return task.id

    long = int(2 * DAY * 1000)  # ms: the unfinished tasks' deadlines stay ahead
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)

        t = now - 3 * DAY
        done = await add("done", Task.new("resize", {"image": "a.png"}), t)
        store.dispatched(done, 1, "w-1", t + 1)
        completed = TaskResult(done, TaskStatus.COMPLETED, {"width": 640}, worker_id="w-1")
        store.ended(done, 1, completed, t + 2, final=True)

        t = now - 2 * DAY
        dead = await add(
            "dead_old", Task.new("resize", {"image": "b.png"}, max_retries=1), t
        )
        store.dispatched(dead, 1, "w-1", t + 1)
        flaky = TaskError("HANDLER_ERROR", "out of memory", retryable=True)
        store.ended(
            dead, 1, _failure(dead, TaskStatus.FAILED, flaky, "w-1"), t + 2, final=False
        )
        store.dispatched(dead, 2, "w-2", t + 3)
        bad = TaskError("BAD_INPUT", "not an image", retryable=False)
        store.ended(
            dead, 2, _failure(dead, TaskStatus.FAILED, bad, "w-2"), t + 4, final=True
        )

        t = now - HOUR
        late = await add("timed_out", Task.new("email", {"to": "a@example.org"}), t)
        store.dispatched(late, 1, "w-2", t + 1)
        timeout = TaskError("TIMEOUT", "no result within 300000 ms")
        store.ended(
            late,
            1,
            _failure(late, TaskStatus.TIMED_OUT, timeout, "w-2"),
            t + 300,
            final=True,
        )

        t = now - 30 * MINUTE
        gone = await add("cancelled", Task.new("email", {"to": "b@example.org"}), t)
        cancel = TaskError("CANCELLED", "cancelled by the caller")
        store.ended(
            gone, None, _failure(gone, TaskStatus.CANCELLED, cancel, ""), t + 1, final=True
        )

        t = now - 10 * MINUTE
        dead = await add(
            "dead_new", Task.new("email", {"to": "c@example.org"}, max_retries=0), t
        )
        store.dispatched(dead, 1, "w-1", t + 1)
        down = TaskError("SMTP_DOWN", "connection refused", retryable=False)
        store.ended(
            dead, 1, _failure(dead, TaskStatus.FAILED, down, "w-1"), t + 300, final=True
        )

        t = now - MINUTE
        running = await add(
            "running", Task.new("resize", {"image": "c.png"}, timeout_ms=long), t
        )
        store.dispatched(running, 1, "w-2", t + 10)

        waiting = Task.new(
            "email",
            {"to": "d@example.org", "body": "héllo"},
            timeout_ms=long,
            priority=Priority.HIGH,
            trace_id="trace-7",
            idempotency_key="mail-7",
        )
        await add("waiting", waiting, now)
        nursery.cancel_scope.cancel()  # the store writes what is pending, and closes
    return Filled(path, now, ids)


@pytest.fixture
async def filled(tmp_path: Path) -> Filled:
    return await fill(tmp_path / "tasks.db")


# -- running the command -----------------------------------------------------------------


@attrs.frozen
class Done:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def error(self) -> str:
        """The one line on stderr (and there must be exactly one)."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.stderr
        return lines[0]

    def json(self) -> Any:
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)


async def tasks(*args: str) -> Done:
    """Run ``python -m trio_pipe tasks ARGS`` and return what it did."""
    return await run([sys.executable, "-m", "trio_pipe", "tasks", *args])


async def run(argv: list[str]) -> Done:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TZ": TZ}
    with trio.fail_after(WAIT):
        process = await trio.run_process(
            argv, capture_stdout=True, capture_stderr=True, check=False, env=env
        )
    return Done(process.returncode, process.stdout.decode(), process.stderr.decode())


def cells(line: str) -> list[str]:
    return re.split(r" {2,}", line.strip())


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def contents(path: Path) -> bytes | None:
    return None if path.is_dir() else path.read_bytes()


def local(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, LOCAL).strftime("%Y-%m-%d %H:%M:%S")


def utc(text: str) -> float:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text).timestamp()


ORDER = ["done", "dead_old", "timed_out", "cancelled", "dead_new", "running", "waiting"]


# -- list -------------------------------------------------------------------------------


async def test_list_prints_a_table_of_every_task_oldest_first(filled: Filled) -> None:
    done = await tasks("list", "--store", filled.url)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    header, *rows = done.lines
    assert cells(header) == [
        "id", "type", "status", "attempts", "submitted", "finished", "error",
    ]  # fmt: skip
    assert filled.names([cells(row)[0] for row in rows]) == ORDER
    records = {r.id: r for r in await filled.records()}
    errors = ["-", "BAD_INPUT", "TIMEOUT", "CANCELLED", "SMTP_DOWN", "-", "-"]
    for name, row, error in zip(ORDER, rows, errors, strict=True):
        record = records[filled.ids[name]]
        finished = record.finished_at
        assert cells(row) == [
            str(record.id),
            record.task.task_type,
            record.status.value,
            str(len(record.attempts)),
            local(record.submitted_at),
            "-" if finished is None else local(finished),
            error,
        ], name
    # Columns line up: every row's cells start where the header's do.
    starts = [header.index(name) for name in cells(header)]
    for row in rows:
        found = [
            row.index(cell, start) for cell, start in zip(cells(row), starts, strict=True)
        ]
        assert found == starts, row


async def test_list_json_is_every_field_of_every_task(filled: Filled) -> None:
    listed = (await tasks("list", "--store", filled.url, "--json")).json()
    assert [entry["id"] for entry in listed] == [filled.id(name) for name in ORDER]
    records = await filled.records()
    keys = {
        "id", "taskType", "payload", "metadata", "status", "submittedAt", "updatedAt",
        "finishedAt", "deadline", "placement", "countedFrom", "attempts", "result",
    }  # fmt: skip
    for entry, record in zip(listed, records, strict=True):
        assert set(entry) == keys
        assert entry["taskType"] == record.task.task_type
        assert entry["status"] == record.status.value
        assert entry["payload"] == record.task.payload
        for key, seconds in [
            ("submittedAt", record.submitted_at),
            ("updatedAt", record.updated_at),
            ("deadline", record.deadline),
        ]:
            assert utc(entry[key]) == pytest.approx(seconds, abs=1e-6)
        assert len(entry["attempts"]) == len(record.attempts)

    dead = listed[ORDER.index("dead_old")]
    assert dead["payload"] == {"image": "b.png"}
    assert dead["metadata"]["maxRetries"] == 1
    assert utc(dead["finishedAt"]) == pytest.approx(filled.now - 2 * DAY + 4, abs=1e-6)
    assert [
        {k: a[k] for k in ("number", "epoch", "workerId", "status", "error")}
        for a in dead["attempts"]
    ] == [
        {
            "number": 1,
            "epoch": 1,
            "workerId": "w-1",
            "status": "Failed",
            "error": {
                "code": "HANDLER_ERROR",
                "message": "out of memory",
                "retryable": True,
            },
        },
        {
            "number": 2,
            "epoch": 1,
            "workerId": "w-2",
            "status": "Failed",
            "error": {"code": "BAD_INPUT", "message": "not an image", "retryable": False},
        },
    ]
    assert utc(dead["attempts"][1]["startedAt"]) == pytest.approx(
        filled.now - 2 * DAY + 3, abs=1e-6
    )
    assert dead["result"]["status"] == "Failed"
    assert dead["result"]["error"]["code"] == "BAD_INPUT"
    assert dead["countedFrom"] == 0

    done = listed[ORDER.index("done")]
    assert done["result"]["payload"] == {"width": 640}
    running = listed[ORDER.index("running")]
    assert running["finishedAt"] is None and running["result"] is None
    assert running["attempts"][0]["endedAt"] is None
    assert running["attempts"][0]["status"] is None
    waiting = listed[ORDER.index("waiting")]
    assert waiting["attempts"] == []
    assert waiting["payload"] == {"to": "d@example.org", "body": "héllo"}
    assert waiting["metadata"]["priority"] == "High"
    assert waiting["metadata"]["traceId"] == "trace-7"
    assert waiting["metadata"]["idempotencyKey"] == "mail-7"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--status", "dead"], ["dead_old", "dead_new"]),
        (["--status", "FAILED"], ["dead_old", "dead_new"]),
        (["--status", "timed_out"], ["timed_out"]),
        (["--status", "Dispatched"], ["running"]),
        (["--type", "resize"], ["done", "dead_old", "running"]),
        (["--status", "failed", "--type", "email"], ["dead_new"]),
        (["--type", "nothing"], []),
    ],
)
async def test_list_filters_by_status_and_type(
    filled: Filled, filters: list[str], expected: list[str]
) -> None:
    listed = (await tasks("list", "--store", filled.url, "--json", *filters)).json()
    assert filled.names([entry["id"] for entry in listed]) == expected


async def test_list_says_so_when_there_are_no_tasks(filled: Filled) -> None:
    done = await tasks("list", "--store", filled.url, "--type", "nothing")
    assert (done.returncode, done.lines) == (0, ["no tasks"])


async def test_list_pages_with_the_command_it_prints_for_the_next_page(
    filled: Filled,
) -> None:
    pages = []
    argv = ["list", "--store", filled.url, "--limit", "3"]
    while True:
        done = await tasks(*argv)
        assert done.returncode == 0, done.stderr
        *rows, last = done.lines
        if not last.startswith("next page: "):
            pages.append([cells(row)[0] for row in [*rows, last][1:]])
            break
        pages.append([cells(row)[0] for row in rows[1:]])
        command = shlex.split(last.removeprefix("next page: "))
        assert command[:3] == ["trio-pipe", "tasks", "list"]
        argv = command[2:]
    assert [filled.names(page) for page in pages] == [ORDER[:3], ORDER[3:6], ORDER[6:]]


async def test_the_next_page_command_keeps_the_filters(filled: Filled) -> None:
    done = await tasks("list", "--store", filled.url, "--type", "email", "--limit", "2")
    assert done.lines[-1] == (
        f"next page: trio-pipe tasks list --store {filled.url} --type email "
        f"--limit 2 --after {filled.id('cancelled')}"
    )
    done = await tasks("list", "--store", filled.url, "--status", "dead", "--limit", "1")
    assert f"--status Failed --limit 1 --after {filled.id('dead_old')}" in done.lines[-1]


async def test_a_full_last_page_prints_no_next_page(filled: Filled) -> None:
    done = await tasks("list", "--store", filled.url, "--limit", "7")
    assert len(done.lines) == 8
    assert not done.lines[-1].startswith("next page")
    listed = (await tasks("list", "--store", filled.url, "--json", "--limit", "2")).json()
    assert len(listed) == 2  # JSON: the page only


async def test_list_after_an_unknown_task_fails(filled: Filled) -> None:
    done = await tasks("list", "--store", filled.url, "--after", MISSING)
    assert done.returncode == 1
    assert done.error == f"trio-pipe tasks list: no task {MISSING} to list after"
    assert done.stdout == ""


async def test_a_reader_that_stops_reading_ends_the_command_without_a_traceback(
    filled: Filled,
) -> None:
    read, write = os.pipe()
    os.close(read)  # as `| head` does once it has read enough
    try:
        with trio.fail_after(WAIT):
            process = await trio.run_process(
                [sys.executable, "-m", "trio_pipe", "tasks", "list", "--store", filled.url],
                stdout=write,
                capture_stderr=True,
                check=False,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
    finally:
        os.close(write)
    assert (process.returncode, process.stderr) == (1, b"")


# -- show -------------------------------------------------------------------------------


async def test_show_prints_every_field_every_attempt_the_payload_and_the_result(
    filled: Filled,
) -> None:
    done = await tasks("show", "--store", filled.url, filled.id("dead_old"))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    fields = dict(cells(line) for line in text.split("\n\n")[0].splitlines())
    t = filled.now - 2 * DAY
    (record,) = [r for r in await filled.records() if r.id == filled.ids["dead_old"]]
    assert fields == {
        "id:": filled.id("dead_old"),
        "type:": "resize",
        "status:": "Failed",
        "submitted:": local(t),
        "updated:": local(t + 4),
        "finished:": local(t + 4),
        "deadline:": local(t + 300),
        "created:": local(record.task.metadata.created_at.timestamp()),
        "priority:": "Normal",
        "timeout:": "300000 ms",
        "max retries:": "1",
        "retry count:": "0",
        "trace id:": "-",
        "idempotency key:": "-",
        "placement:": "any worker",
        "attempts:": "2",
        "error:": "BAD_INPUT: not an image (not retryable)",
    }
    attempts = [cells(line) for line in text.split("\n\n")[1].splitlines()]
    assert attempts == [
        ["attempt", "epoch", "worker", "started", "ended", "status", "error"],
        ["1", "1", "w-1", local(t + 1), local(t + 2), "Failed",
         "HANDLER_ERROR: out of memory (retryable)"],
        ["2", "1", "w-2", local(t + 3), local(t + 4), "Failed",
         "BAD_INPUT: not an image (not retryable)"],
    ]  # fmt: skip
    payload = text.split("\n\npayload:\n")[1].split("\n\nresult:\n")[0]
    assert payload == '  {\n    "image": "b.png"\n  }'
    result = json.loads(text.split("\n\nresult:\n")[1])
    assert result["status"] == "Failed" and result["workerId"] == "w-2"


async def test_show_of_a_task_without_attempts_or_result(filled: Filled) -> None:
    text = (await tasks("show", "--store", filled.url, filled.id("waiting"))).stdout
    fields = dict(cells(line) for line in text.split("\n\n")[0].splitlines())
    assert fields["status:"] == "Pending"
    assert fields["priority:"] == "High"
    assert fields["trace id:"] == "trace-7"
    assert fields["idempotency key:"] == "mail-7"
    assert fields["finished:"] == "-" and fields["attempts:"] == "0"
    assert "attempt  epoch" not in text
    assert json.loads(text.split("\n\npayload:\n")[1].split("\n\nresult:")[0]) == {
        "to": "d@example.org",
        "body": "héllo",
    }
    assert text.endswith("\n\nresult:\n  -\n")


async def test_show_says_a_completed_task_s_payload_is_not_kept(filled: Filled) -> None:
    text = (await tasks("show", "--store", filled.url, filled.id("done"))).stdout
    assert "payload:\n  (not kept once the task completed)\n" in text
    assert json.loads(text.split("\n\nresult:\n")[1])["payload"] == {"width": 640}
    running = (await tasks("show", "--store", filled.url, filled.id("running"))).stdout
    assert re.search(r"\n  1 +1 +w-2 +\S+ \S+ +- +\(running\) +-\n", running), running


async def test_show_json_is_the_task_as_list_json_gives_it(filled: Filled) -> None:
    listed = (await tasks("list", "--store", filled.url, "--json")).json()
    for name in ("dead_old", "running", "waiting"):
        shown = (
            await tasks("show", "--store", filled.url, filled.id(name), "--json")
        ).json()
        assert shown == listed[ORDER.index(name)]


async def test_show_of_an_unknown_task_fails(filled: Filled) -> None:
    done = await tasks("show", "--store", filled.url, MISSING)
    assert done.returncode == 1
    assert done.error == f"trio-pipe tasks show: no task {MISSING}"
    assert done.stdout == ""


# -- requeue ----------------------------------------------------------------------------


async def test_requeue_sends_tasks_that_ended_without_completing_round_again(
    filled: Filled,
) -> None:
    names = ["dead_old", "timed_out", "cancelled"]
    done = await tasks("requeue", "--store", filled.url, *map(filled.id, names))
    assert done.returncode == 0, done.stderr
    assert done.lines == [
        f"requeued {filled.id('dead_old')} (it was Failed)",
        f"requeued {filled.id('timed_out')} (it was TimedOut)",
        f"requeued {filled.id('cancelled')} (it was Cancelled)",
    ]
    records = {record.id: record for record in await filled.records()}
    for name in names:
        record = records[filled.ids[name]]
        assert record.status is TaskStatus.PENDING
        assert record.result is None and record.finished_at is None
        assert record.tries == 0  # a fresh retry budget; the attempts stay
        assert record.deadline > filled.now
    shown = (
        await tasks("show", "--store", filled.url, filled.id("dead_old"), "--json")
    ).json()
    assert (shown["status"], shown["countedFrom"], len(shown["attempts"])) == (
        "Pending",
        2,
        2,
    )
    text = (await tasks("show", "--store", filled.url, filled.id("dead_old"))).stdout
    assert "\nattempts:         2 (0 since it was last requeued)\n" in text


async def test_requeue_reports_each_task_and_exits_1_if_any_failed(filled: Filled) -> None:
    done = await tasks(
        "requeue", "--store", filled.url,
        filled.id("dead_new"), filled.id("done"), MISSING, filled.id("waiting"),
    )  # fmt: skip
    assert done.returncode == 1
    assert done.lines == [f"requeued {filled.id('dead_new')} (it was Failed)"]
    assert done.stderr.splitlines() == [
        f"trio-pipe tasks requeue: task {filled.id('done')} is Completed: only a task "
        "that ended without completing can be requeued",
        f"trio-pipe tasks requeue: no task {MISSING}",
        f"trio-pipe tasks requeue: task {filled.id('waiting')} is Pending: only a task "
        "that ended without completing can be requeued",
    ]
    dead = [r.id for r in await filled.records() if r.status is TaskStatus.FAILED]
    assert dead == [filled.ids["dead_old"]]


# -- purge ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "deleted"),
    [
        ([], ["dead_old", "dead_new"]),  # by default, every dead letter
        (["--status", "dead", "--older-than", "1d"], ["dead_old"]),
        (["--status", "any", "--older-than", "45m"], ["done", "dead_old", "timed_out"]),
        (["--status", "ANY"], ORDER[:5]),  # never an unfinished task
        (["--status", "timedout"], ["timed_out"]),
        (["ID:done"], []),  # a Completed task is not a dead letter
        (["ID:done", "ID:dead_new", "ID:running", "--status", "any"], ["done", "dead_new"]),
        (["ID:dead_old", "ID:dead_new", "--older-than", "12h"], ["dead_old"]),
    ],
)
async def test_purge_deletes_what_its_dry_run_counts(
    filled: Filled, filters: list[str], deleted: list[str]
) -> None:
    args = [filled.id(f[3:]) if f.startswith("ID:") else f for f in filters]
    dry = await tasks("purge", "--store", filled.url, "--dry-run", *args)
    assert dry.returncode == 0, dry.stderr
    count = f"{len(deleted)} task{'' if len(deleted) == 1 else 's'}"
    assert dry.lines == [f"would delete {count} (dry run)"]
    assert len(await filled.records()) == len(ORDER)  # nothing deleted yet

    done = await tasks("purge", "--store", filled.url, "--yes", *args)
    assert done.returncode == 0, done.stderr
    assert done.lines == [f"deleted {count}"]
    left = filled.names([str(record.id) for record in await filled.records()])
    assert left == [name for name in ORDER if name not in deleted]


async def test_purge_asks_for_yes_unless_it_is_a_dry_run(filled: Filled) -> None:
    done = await tasks("purge", "--store", filled.url)
    assert done.returncode == 2
    assert done.error == (
        "trio-pipe tasks: error: purge deletes tasks for good: add --yes (or --dry-run "
        "to count them)"
    )
    assert len(await filled.records()) == len(ORDER)


# -- a store in use ---------------------------------------------------------------------

HOLDER = """
import sys, trio, trio_pipe

async def main():
    async with trio_pipe.open_dispatcher(port=None, store=sys.argv[1]):
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)  # until stdin is closed

trio.run(main)
"""


async def test_requeue_and_purge_fail_while_a_dispatcher_has_the_store_and_list_works(
    filled: Filled, nursery: trio.Nursery
) -> None:
    argv = [sys.executable, "-c", HOLDER, filled.url]
    holder: trio.Process = await nursery.start(
        partial(
            trio.run_process,
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    )
    assert holder.stdin is not None and holder.stdout is not None
    said = b""
    with trio.fail_after(WAIT):
        while not said.endswith(b"\n"):
            said += await holder.stdout.receive_some()
    assert said == b"ready\n"
    try:
        in_use = (
            f"{filled.path} is in use by another dispatcher (process {holder.pid}); "
            "one store serves one dispatcher at a time"
        )
        done = await tasks("requeue", "--store", filled.url, filled.id("dead_old"))
        assert (done.returncode, done.error) == (1, f"trio-pipe tasks requeue: {in_use}")
        assert done.stdout == ""
        done = await tasks("purge", "--store", filled.url, "--yes")
        assert (done.returncode, done.error) == (1, f"trio-pipe tasks purge: {in_use}")

        listed = await tasks("list", "--store", filled.url, "--json")
        assert len(listed.json()) == len(ORDER)
        shown = await tasks("show", "--store", filled.url, filled.id("dead_old"))
        assert shown.returncode == 0, shown.stderr
        dry = await tasks("purge", "--store", filled.url, "--dry-run")
        assert dry.lines == ["would delete 2 tasks (dry run)"]
    finally:
        await holder.stdin.aclose()
        with trio.fail_after(WAIT):
            await holder.wait()
    assert holder.returncode == 0
    # Free again: the dead letter left with the dispatcher.
    done = await tasks("requeue", "--store", filled.url, filled.id("dead_old"))
    assert done.returncode == 0, done.stderr


# -- files that are not a store, and wrong arguments ------------------------------------

COMMANDS = [
    ["list"],
    ["show", MISSING],
    ["requeue", MISSING],
    ["purge", "--yes"],
    ["purge", "--dry-run"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
async def test_a_missing_file_is_an_error_and_is_not_created(
    tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "nowhere.db"
    done = await tasks(*command[:1], "--store", f"sqlite:///{path}", *command[1:])
    assert done.returncode == 1
    assert (
        done.error == f"trio-pipe tasks {command[0]}: no task store at {path}: no such file"
    )
    assert done.stdout == ""
    assert files_in(tmp_path) == []


@pytest.fixture
def foreign_files(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """Files that are not task stores: text, an empty file, another program's
    SQLite database, and a directory."""
    text, empty, other, folder = (
        tmp_path / name for name in ("notes.db", "empty.db", "app.db", "folder.db")
    )
    text.write_text("not a database\n")
    empty.touch()
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE things (name TEXT)")
    db.close()
    folder.mkdir()
    yield {"text": text, "empty": empty, "other": other, "folder": folder}


@pytest.mark.parametrize("kind", ["text", "empty", "other", "folder"])
@pytest.mark.parametrize(
    "command", [["list"], ["purge", "--yes"]], ids=" ".join
)  # read-only, and for writing
async def test_a_file_that_is_not_a_store_is_an_error_and_is_left_as_it_was(
    foreign_files: dict[str, Path], kind: str, command: list[str]
) -> None:
    path = foreign_files[kind]
    before = files_in(path.parent)
    content = contents(path)
    done = await tasks(*command[:1], "--store", f"sqlite:///{path}", *command[1:])
    assert done.returncode == 1
    assert done.error.startswith(f"trio-pipe tasks {command[0]}: ")
    assert str(path) in done.error
    assert done.stdout == ""
    # Not turned into a store: no tables, no lock file beside it.
    assert contents(path) == content
    assert files_in(path.parent) == before


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://", "a memory:// store lives inside its dispatcher's process"),
        ("redis://db/tasks", "'redis://db/tasks': unknown store"),
        ("postgresql://db/tasks?commit_delay=soon", "commit_delay must be seconds"),
        ("sqlite://", "'sqlite://': no database file given"),
        ("sqlite://host/tasks.db", "a SQLite URL has no host"),
        ("sqlite:///tasks.db?bogus=1", "unknown option(s) bogus"),
    ],
)
async def test_a_bad_store_url_is_a_usage_error(url: str, message: str) -> None:
    done = await tasks("list", "--store", url)
    assert done.returncode == 2
    assert done.error.startswith("trio-pipe tasks: error: --store: ")
    assert message in done.error


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["list", "--status", "bogus"],
            "argument --status: unknown task status 'bogus'; the statuses are Pending, "
            "Dispatched, Running, Completed, Failed, TimedOut, Cancelled, and dead (Failed)",
        ),
        (
            ["list", "--status", "timed-out"],
            "argument --status: unknown task status 'timed-out' (did you mean TimedOut?",
        ),
        (
            ["purge", "--status", "nope", "--yes"],
            "argument --status: only finished tasks are purged: expected Completed, "
            "Failed (or dead), TimedOut, Cancelled or any, got 'nope'",
        ),
        (["list", "--limit", "0"], "argument --limit: must be at least 1, got 0"),
        (["list", "--after", "12"], "argument --after: not a task id (a UUID): '12'"),
        (["show", "nope"], "argument ID: not a task id (a UUID): 'nope'"),
        (["requeue"], "the following arguments are required: ID"),
        (
            ["purge", "--status", "pending", "--yes"],
            "argument --status: only finished tasks are purged: expected Completed, "
            "Failed (or dead), TimedOut, Cancelled or any, got 'pending'",
        ),
        (
            ["purge", "--older-than", "5x", "--yes"],
            "argument --older-than: expected a duration such as 30s, 15m, 12h or 7d, "
            "got '5x'",
        ),
        (
            ["purge", "--older-than", "0d", "--yes"],
            "argument --older-than: must be a positive duration, got '0d'",
        ),
        (
            ["purge", "--yes", "--dry-run"],
            "argument --dry-run: not allowed with argument --yes",
        ),
    ],
)
def test_wrong_arguments_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    action, *rest = argv
    with pytest.raises(SystemExit) as exited:
        main(["tasks", action, "--store", "sqlite:///tasks.db", *rest])
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"trio-pipe tasks {action}: error: {message}")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("12h", 43200),
        ("7d", 604800),
        ("1.5h", 5400),
        ("2D", 172800),
    ],
)
def test_purge_older_than_reads_durations(text: str, seconds: float) -> None:
    from trio_pipe.cli import _duration

    assert _duration(text) == seconds


def test_aligned_pads_every_column_but_the_last() -> None:
    assert aligned(
        [("id", "status", "error"), ("7", "Completed", ""), ("12", "-", "x y")]
    ) == [
        "id  status     error",
        "7   Completed",
        "12  -          x y",
    ]
    assert aligned([("a", "b")], indent="  ") == ["  a  b"]
    assert aligned([]) == []
    with pytest.raises(ValueError):
        aligned([("a", "b"), ("c",)])
