"""Spawned stdio workers: real processes under the dispatcher's supervision."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import pytest
import trio
from helpers import ROOT, child_processes

import trio_pipe
from trio_pipe import (
    ErrorCode,
    Task,
    TaskFailed,
    TaskStatus,
    WorkerEvent,
    WorkerEventKind,
    WorkerState,
)
from trio_pipe.dispatch import Restart, RestartPolicy

pytestmark = pytest.mark.slow

PLAIN = [sys.executable, str(ROOT / "tests" / "stdio_workers" / "plain.py")]
FAST_RESTART = RestartPolicy(backoff=0.05, backoff_max=0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is not alive


def _group_members(pgid: int) -> list[int]:
    """Living (non-zombie) processes in process group *pgid*."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


_NO_JQ = shutil.which("jq") is None


@pytest.mark.skipif(
    _NO_JQ and os.environ.get("TRIO_PIPE_REQUIRE_JQ") != "1",
    reason="the bash example needs jq (.ci/run installs it)",
)
async def test_the_bash_example_is_a_worker() -> None:
    assert not _NO_JQ, "TRIO_PIPE_REQUIRE_JQ=1 but jq is not installed"
    async with trio_pipe.open_dispatcher(port=None) as d:
        argv = ["bash", str(ROOT / "docs" / "examples" / "bash-worker.sh")]
        await d.spawn_stdio(argv, ["word-count"])
        with trio.fail_after(30):
            result = await d.run(Task.new("word-count", {"text": "one two  three"}))
        assert result == {"words": 3}


async def test_a_plain_script_completes_tasks_and_its_chatter_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with trio_pipe.open_dispatcher(port=None) as d:
        worker_id = await d.spawn_stdio(
            PLAIN, ["echo"], worker_id="plain", max_concurrency=4
        )
        assert worker_id == "plain"
        with trio.fail_after(30):
            values = [await d.run(Task.new("echo", i)) for i in range(20)]
        assert [v["echo"] for v in values] == list(range(20))
        (info,) = d.workers()
        assert (info.transport, info.max_concurrency) == ("stdio", 4)
    assert "a log line, not a message" in caplog.text
    assert "JSON, but not a message" in caplog.text


async def test_a_crash_resolves_its_tasks_at_once_and_the_worker_is_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with trio_pipe.open_dispatcher(port=None, retry_backoff=0.01) as d:
        await d.spawn_stdio(PLAIN, ["echo"], worker_id="crashy", restart=FAST_RESTART)
        with trio.fail_after(30):
            before = await d.run(Task.new("echo", "first"))
            crashed = await d.submit(Task.new("echo", "crash", max_retries=0))
            result = await crashed.result()
            assert result.error is not None
            assert result.error.code == ErrorCode.WORKER_DISCONNECTED
            await d.wait_for_workers(1)
            after = await d.run(Task.new("echo", "again"))
    assert before["pid"] != after["pid"]
    assert "crashing on purpose" in caplog.text  # its stderr, in the log
    assert "trio_pipe.worker.crashy" in {r.name for r in caplog.records}


async def test_a_task_on_a_crashed_process_is_retried_on_its_restart() -> None:
    async with trio_pipe.open_dispatcher(port=None, retry_backoff=0.01) as d:
        await d.spawn_stdio(PLAIN, ["echo"], restart=FAST_RESTART)
        with trio.fail_after(30):
            await d.run(Task.new("echo", "warm up"))
            doomed = await d.submit(Task.new("echo", "crash", max_retries=1))
            result = await doomed.result()
        # It crashed twice (the payload always crashes): two tries, both lost.
        assert [a.error.code for a in doomed.attempts if a.error] == [
            ErrorCode.WORKER_DISCONNECTED
        ] * 2
        assert result.status is TaskStatus.FAILED


async def test_restart_never_leaves_a_dead_worker_dead() -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        policy = RestartPolicy(mode=Restart.NEVER)
        await d.spawn_stdio(PLAIN, ["echo"], worker_id="once", restart=policy)
        with trio.fail_after(30):
            handle = await d.submit(Task.new("echo", "crash", max_retries=0))
            await handle.result()
            with pytest.raises(TaskFailed) as failed:
                await d.run(Task.new("echo", "nobody left", timeout_ms=500))
        assert failed.value.result.status is TaskStatus.TIMED_OUT
        assert [(w.worker_id, w.state) for w in d.workers()] == [("once", WorkerState.DEAD)]


async def test_the_supervisor_gives_up_after_too_many_restarts() -> None:
    argv = [sys.executable, "-c", "import sys; sys.exit(5)"]
    async with trio_pipe.open_dispatcher(port=None) as d, d.events() as events:
        policy = RestartPolicy(max_restarts=2, window=60, backoff=0.01, backoff_max=0.02)
        await d.spawn_stdio(argv, ["x"], worker_id="failing", restart=policy)
        kinds = []
        with trio.fail_after(30):
            async for event in events:
                if isinstance(event, WorkerEvent):
                    kinds.append(event.kind)
                    if event.kind is WorkerEventKind.GAVE_UP:
                        break
    assert kinds.count(WorkerEventKind.REGISTERED) == 3
    assert kinds.count(WorkerEventKind.RESTARTING) == 2


async def test_graceful_shutdown_sends_shutdown_then_closes_stdin() -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_stdio(PLAIN, ["echo"], worker_id="polite")
        with trio.fail_after(30):
            value = await d.run(Task.new("echo", 1))
        pid = value["pid"]
        assert _alive(pid)
    assert not _alive(pid)
    assert child_processes() == []


async def test_a_process_ignoring_eof_and_sigterm_is_killed_with_its_children(
    tmp_path: object,
) -> None:
    argv = ["bash", str(ROOT / "tests" / "stdio_workers" / "stubborn.sh")]
    started = trio.current_time()
    with trio.fail_after(30):
        async with trio_pipe.open_dispatcher(port=None) as d:
            await d.spawn_stdio(argv, ["x"], worker_id="stubborn", stop_grace=0.5)
            await d.wait_for_workers(1)
            (info,) = d.workers()
            leader = int(info.peer.split()[-1])
            assert _alive(leader)
    took = trio.current_time() - started
    assert not _alive(leader)
    assert child_processes() == []
    assert took < 10
    assert _group_members(leader) == []  # its `sleep 1000` child went with it


async def test_cancelling_the_dispatcher_abruptly_leaves_no_process() -> None:
    with trio.move_on_after(5) as scope:
        async with trio_pipe.open_dispatcher(port=None) as d:
            await d.spawn_stdio(PLAIN, ["echo"], worker_id="a", stop_grace=0.5)
            argv = ["bash", str(ROOT / "tests" / "stdio_workers" / "stubborn.sh")]
            await d.spawn_stdio(argv, ["x"], worker_id="b", stop_grace=0.5)
            pids = [int(w.peer.split()[-1]) for w in d.workers()]
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert not any(_alive(pid) for pid in pids)
    assert child_processes() == []


async def test_remove_worker_stops_a_spawned_worker_for_good() -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_stdio(PLAIN, ["echo"], worker_id="gone", restart=FAST_RESTART)
        with trio.fail_after(30):
            pid = (await d.run(Task.new("echo", 1)))["pid"]
            d.remove_worker("gone")
            while _alive(pid):  # noqa: ASYNC110  (another process's state)
                await trio.sleep(0.05)
        assert d.workers() == []


async def test_a_program_that_cannot_start_is_an_error_at_once() -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        with pytest.raises(FileNotFoundError):
            await d.spawn_stdio(["/nonexistent/worker"], ["x"])
        with pytest.raises(ValueError, match="argv"):
            await d.spawn_stdio("python worker.py", ["x"])  # type: ignore[arg-type]


SDK_WORKER = [
    sys.executable, "-m", "trio_pipe", "--log-level", "WARNING",
    "worker", "--stdio", "--handlers", "tests.worker_handlers:HANDLERS",
]  # fmt: skip


async def test_a_python_stdio_worker_runs_the_same_handlers(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_stdio(
            [*SDK_WORKER, "--max-concurrency", "8"], ["echo", "fail", "hang", "sleep"],
            max_concurrency=8, cwd=str(ROOT),
        )  # fmt: skip
        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                for _ in range(8):  # eight at once: the worker's whole capacity
                    n.start_soon(d.run, Task.new("sleep", {"seconds": 0.2}))
            assert [await d.run(Task.new("echo", i)) for i in range(5)] == list(range(5))
            with pytest.raises(TaskFailed) as failed:
                await d.run(Task.new("fail", {"message": "nope"}, max_retries=0))
            assert failed.value.code == ErrorCode.HANDLER_ERROR
            with pytest.raises(TaskFailed) as timed_out:
                await d.run(Task.new("hang", {"marker": str(marker)}, timeout_ms=300))
            assert timed_out.value.result.status is TaskStatus.TIMED_OUT
            while not await trio.Path(marker).exists():  # noqa: ASYNC110  (another process)
                await trio.sleep(0.05)
