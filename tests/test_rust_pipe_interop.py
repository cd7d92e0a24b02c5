"""trio_pipe and rust-pipe serve each other's workers.

rust-pipe's own dispatcher (the published crate, built here from crates.io at the
version ``benchmarks/rust-pipe-peer/Cargo.lock`` pins, in release mode) is run against
each SDK's conformance worker -- Python, TypeScript, Go, Java -- exactly as a user
would start it. The worker must register (rust-pipe never sends
``WorkerRegistered``), stay connected through a quiet spell longer than every timeout
involved, run ``echo`` and ``fail``, stop a task on rust-pipe's ``Kill`` (written with
a snake_case ``task_id``), and exit 0 on its ``Shutdown``. The other way round,
trio_pipe's dispatcher serves the worker that rust-pipe's crate ships for its own
end-to-end tests.

Skipped where ``cargo`` is missing, unless the environment variable ``CI`` is set or
``TRIO_PIPE_REQUIRE_CARGO=1`` (``.ci/run`` sets it), in which case that is a failure;
likewise for an SDK whose toolchain is missing. An SDK's conformance worker is built
with its ``build.sh`` if it is not built yet (CI builds them first, in the
``conformance`` session).

The tests are synchronous, each running Trio itself under its own time bound: the
first one carries the crate's build in its setup, which pytest-timeout counts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import ROOT

import trio_pipe
from benchmarks import rust_pipe

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CARGO = rust_pipe.cargo()
REQUIRED = bool(os.environ.get("CI")) or os.environ.get("TRIO_PIPE_REQUIRE_CARGO") == "1"
SDKS = ("python", "typescript", "go", "java")
LANGUAGES: dict[str, Any] = {
    "python": "Python",
    "typescript": "TypeScript",
    "go": "Go",
    "java": {"Other": "Java"},  # rust-pipe knows no "Java": this is how it reads one
}
# What each SDK's build needs, and what its build leaves for conformance-worker to run.
TOOLS = {"typescript": ("node", "npm"), "go": ("go",), "java": ("java", "mvn")}
BUILT = {
    "typescript": ("dist/examples/conformance-worker.js",),
    "go": ("bin/conformance-worker",),
    "java": ("target/classpath.txt", "target/test-classes"),
}
WORKER_ID = "interop-1"
BOUND = 120  # seconds for one test's body: a JVM's start, 21 s of quiet, four steps


def run_trio(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with trio.fail_after(BOUND):
            await test()

    trio.run(bounded)


def unavailable(why: str) -> None:
    if REQUIRED:
        pytest.fail(f"CI or TRIO_PIPE_REQUIRE_CARGO=1, but {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def cargo() -> str:
    if CARGO is None:
        unavailable("the rust-pipe interop tests need `cargo` on PATH (rustup)")
    assert CARGO is not None
    return CARGO


@pytest.fixture(scope="session")
def peer(cargo: str) -> Path:
    """rust-pipe-peer, built once per session (release, from the committed lock)."""
    return rust_pipe.build_peer(cargo)


def _has_tool(tool: str) -> bool:
    return (rust_pipe.go() if tool == "go" else shutil.which(tool)) is not None


@pytest.fixture(scope="session", params=SDKS)
def sdk_worker(request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    """(sdk, the command of its conformance worker, to which the URL is appended)."""
    sdk: str = request.param
    if sdk == "python":
        handlers = "trio_pipe.conformance.handlers:HANDLERS"
        return sdk, [
            sys.executable,
            "-m",
            "trio_pipe",
            "worker",
            "--handlers",
            handlers,
            "--url",
        ]
    directory = ROOT / "sdks" / sdk
    if not all((directory / path).exists() for path in BUILT[sdk]):
        if missing := [tool for tool in TOOLS[sdk] if not _has_tool(tool)]:
            unavailable(f"building the {sdk} SDK needs {', '.join(missing)} on PATH")
        subprocess.run(["bash", str(directory / "build.sh")], check=True)
    return sdk, [str(directory / "conformance-worker")]


def test_every_sdk_serves_rust_pipes_dispatcher(
    peer: Path, sdk_worker: tuple[str, list[str]], tmp_path: Path
) -> None:
    sdk, command = sdk_worker
    log = tmp_path / "worker.log"
    lines: list[dict[str, Any]] = []

    async def interop() -> None:
        steps = ("idle", "echo", "fail", "kill")
        async with (
            rust_pipe.open_rust_pipe("interop", *steps, executable=peer) as dispatcher,
            trio.open_nursery() as nursery,
        ):
            env = os.environ | {
                "TRIO_PIPE_URL": dispatcher.url,
                "TRIO_PIPE_WORKER_ID": WORKER_ID,
                "TRIO_PIPE_MAX_CONCURRENCY": "2",
                "TRIO_PIPE_HEARTBEAT_MS": "250",
            }
            with log.open("wb") as output:
                worker: trio.Process = await nursery.start(
                    partial(
                        trio.run_process,
                        [*command, dispatcher.url],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=output,
                        stderr=output,
                        check=False,
                    )
                )
            while not lines or lines[-1].get("event") != "stopped":
                lines.append(await dispatcher.receive())
            # rust-pipe's stop() sent Shutdown{graceful:true}: the worker exits by itself.
            assert await worker.wait() == 0

    try:
        run_trio(interop)
    except BaseException:
        print(
            f"rust-pipe-peer said: {lines}\nthe {sdk} worker's output:\n{log.read_text()}"
        )
        raise
    registered, idle, echo, fail, kill, stopped = lines
    assert registered["workerId"] == WORKER_ID
    assert sorted(registered["supportedTasks"]) == ["echo", "fail", "sleep"]
    assert registered["language"] == LANGUAGES[sdk]
    # Registered on its first connection, never declared dead, never reconnected.
    assert (idle["step"], idle["sameRegistration"], idle["status"]) == (
        "idle",
        True,
        "Active",
    )
    result = echo["result"]
    assert (result["status"], result["payload"]) == ("Completed", echo["sent"])
    assert result["workerId"] == WORKER_ID
    result = fail["result"]
    assert result["status"] == "Failed"
    assert result["error"]["code"] == "HANDLER_ERROR" and result["error"]["retryable"]
    assert "failed on purpose for rust-pipe" in result["error"]["message"]
    assert (kill["step"], kill.get("error"), kill["killed"]) == ("kill", None, True)
    assert stopped == {"event": "stopped"}


def test_trio_pipes_dispatcher_serves_rust_pipes_own_worker(cargo: str, peer: Path) -> None:
    """The Python worker that rust-pipe 0.1.2 ships for its end-to-end tests: it
    sends no heartbeat, waits for no answer, omits ``tags``, and exits on Shutdown."""
    worker_script = rust_pipe.rust_pipe_source(cargo) / "tests" / "py_worker" / "worker.py"
    assert worker_script.is_file(), worker_script

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            async with trio_pipe.open_dispatcher(port=0) as dispatcher:
                env = os.environ | {"DISPATCHER_URL": dispatcher.url}
                worker: trio.Process = await nursery.start(
                    partial(
                        trio.run_process,
                        [sys.executable, str(worker_script)],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        check=False,
                    )
                )
                await dispatcher.wait_for_workers(1)
                (info,) = dispatcher.workers()
                assert info.language == "Python"
                assert set(info.supported_tasks) == {"echo", "multiply", "reverse-string"}
                run = dispatcher.run
                assert await run(trio_pipe.Task.new("echo", {"x": [1, None]})) == {
                    "echoed": {"x": [1, None]}
                }
                assert await run(trio_pipe.Task.new("multiply", {"a": 6, "b": 7})) == {
                    "product": 42
                }
                assert await run(
                    trio_pipe.Task.new("reverse-string", {"text": "trio"})
                ) == {"reversed": "oirt"}
            # Leaving the dispatcher sent Shutdown, on which the worker exits.
            assert await worker.wait() == 0

    run_trio(serve)
