"""The Node.js example worker (written from docs/protocol.md alone) against a real
dispatcher: registration, heartbeats, results, an unknown task type, a retried
handler error, and Shutdown making the process exit by itself.

Skipped where `node` or `npm` is missing, unless TRIO_PIPE_REQUIRE_NODE=1 (as in CI,
whose .ci/run installs Node.js), in which case that is a failure."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest
import trio
from helpers import ROOT

import trio_pipe

WORKER_DIR = ROOT / "docs" / "examples" / "node-worker"
NODE = shutil.which("node")
NPM = shutil.which("npm")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def node_worker() -> list[str]:
    """The command that starts the example worker (without its URL argument), after
    installing its locked dependencies once if node_modules is missing."""
    if NODE is None or NPM is None:
        missing = "the Node.js example worker needs `node` and `npm` on PATH"
        if os.environ.get("TRIO_PIPE_REQUIRE_NODE") == "1":
            pytest.fail(f"TRIO_PIPE_REQUIRE_NODE=1 but {missing}")
        pytest.skip(missing)
    if not (WORKER_DIR / "node_modules" / "ws").is_dir():
        subprocess.run(
            [NPM, "ci", "--prefix", str(WORKER_DIR), "--no-audit", "--no-fund"],
            check=True,
            timeout=300,
            stdout=subprocess.DEVNULL,
        )
    return [NODE, str(WORKER_DIR / "worker.mjs")]


async def test_node_worker_runs_tasks_and_exits_on_shutdown(node_worker: list[str]) -> None:
    env = {
        **os.environ,
        # "mystery" is announced but has no handler: it takes the UNKNOWN_TASK_TYPE path.
        "SUPPORTED_TASKS": "echo,upper,mystery",
    }
    async with trio.open_nursery() as nursery:
        async with trio_pipe.open_dispatcher(port=0) as d:
            argv = [*node_worker, d.url, "node-test-1"]
            process = await nursery.start(
                functools.partial(trio.run_process, argv, check=False, env=env)
            )
            with trio.fail_after(30):
                await d.wait_for_workers(1)
            (info,) = d.workers()
            assert info.worker_id == "node-test-1"
            assert info.language == "JavaScript"
            assert set(info.supported_tasks) == {"echo", "upper", "mystery"}
            assert info.max_concurrency == 4

            with trio.fail_after(30):
                assert await d.run(trio_pipe.Task.new("upper", {"text": "abc"})) == {
                    "text": "ABC"
                }
                payload = {"nested": [1, 2.5, None, True, "é"], "n": {"x": {}}}
                assert await d.run(trio_pipe.Task.new("echo", payload)) == payload

                # More tasks than the worker's maxConcurrency, all at once.
                results: dict[int, object] = {}

                async def echo(i: int) -> None:
                    results[i] = await d.run(trio_pipe.Task.new("echo", i))

                async with trio.open_nursery() as tasks:
                    for i in range(20):
                        tasks.start_soon(echo, i)
                assert results == {i: i for i in range(20)}

                with pytest.raises(trio_pipe.TaskFailed) as failed:
                    await d.run(trio_pipe.Task.new("mystery", {}))
                assert failed.value.code == "UNKNOWN_TASK_TYPE"
                assert failed.value.result.status is trio_pipe.TaskStatus.FAILED
                assert failed.value.result.worker_id == "node-test-1"

                # A handler error is retryable: tried 1 + max_retries times, retryCount
                # counting up on the wire, then the last failure is the result.
                handle = await d.submit(trio_pipe.Task.new("upper", {}, max_retries=1))
                result = await handle.result()
                assert result.status is trio_pipe.TaskStatus.FAILED
                assert result.error is not None
                assert result.error.code == "HANDLER_ERROR"
                assert result.error.retryable
                assert [a.error.code for a in handle.attempts if a.error] == [
                    "HANDLER_ERROR",
                    "HANDLER_ERROR",
                ]

            # Heartbeats every second are well-formed and answered: still registered.
            await trio.sleep(1.5)
            (info,) = d.workers()
            assert info.state is trio_pipe.WorkerState.ACTIVE
            assert info.active_tasks == 0

        # Leaving the dispatcher block sent Shutdown: the worker exits by itself, 0
        # meaning it saw Shutdown before the connection closed.
        with trio.fail_after(30):
            await process.wait()
        assert process.returncode == 0
