"""``trio-pipe serve``: a real service process, a real worker process attaching to it,
tasks submitted through the HTTP API with a real HTTP client, and real signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from helpers import ROOT, start_python_worker

from trio_pipe import TaskStatus

WAIT = 60  # seconds: a bound on each step (each takes well under a second or two)


@attrs.frozen
class Service:
    process: trio.Process
    workers: str  # ws://...
    http: str  # http://...
    store: str  # sqlite:///...


def config(tmp_path: Path, extra: str = "", http: str = "127.0.0.1:0") -> Path:
    """A configuration with a SQLite store in *tmp_path*, *extra* at its end (from
    line 10)."""
    path = tmp_path / "trio-pipe.toml"
    path.write_text(f'''[store]
url = "sqlite:///{tmp_path}/tasks.db"

[workers]
listen = "127.0.0.1:0"

[http]
listen = "{http}"

{extra}''')
    return path


def serve_argv(path: Path) -> list[str]:
    return [sys.executable, "-m", "trio_pipe", "serve", "--config", str(path)]


@asynccontextmanager
async def open_service(tmp_path: Path, extra: str = "") -> AsyncIterator[Service]:
    """``trio-pipe serve`` as a child process, once it has said it is ready."""
    with (tmp_path / "serve.log").open("wb") as log:
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    serve_argv(config(tmp_path, extra)),
                    check=False,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    cwd=ROOT,
                )
            )
            assert process.stdout is not None
            line = b""
            with trio.fail_after(WAIT):
                while not line.endswith(b"\n"):
                    chunk = await process.stdout.receive_some(1)
                    assert chunk, (tmp_path / "serve.log").read_text()
                    line += chunk
            words = dict(word.split("=", 1) for word in line.decode().split()[1:])
            yield Service(
                process, words["workers"], words["http"], f"sqlite:///{tmp_path}/tasks.db"
            )
            nursery.cancel_scope.cancel()


def lines_of(output: bytes) -> list[str]:
    return output.decode().splitlines()


async def stored(store: str, task_id: str) -> dict[str, Any]:
    """The task as ``trio-pipe tasks show --json`` reads it from the store's file."""
    completed = await trio.run_process(
        [
            sys.executable,
            "-m",
            "trio_pipe",
            "tasks",
            "show",
            "--json",
            "--store",
            store,
            task_id,
        ],
        capture_stdout=True,
        cwd=ROOT,
    )
    record: dict[str, Any] = json.loads(completed.stdout)
    return record


async def until_exists(path: Path) -> None:
    with trio.fail_after(WAIT):
        while not await trio.Path(path).exists():  # noqa: ASYNC110  (another process)
            await trio.sleep(0.01)


async def submit_gate(client: httpx.AsyncClient, tmp_path: Path) -> str:
    """Submit a task that holds its worker until ``release`` exists in *tmp_path*,
    and return its id once the worker has started it."""
    payload = {"started": str(tmp_path / "started"), "release": str(tmp_path / "release")}
    response = await client.post("/tasks", json={"taskType": "gate", "payload": payload})
    assert response.status_code == 201, response.text
    await until_exists(tmp_path / "started")
    return str(response.json()["id"])


async def test_a_worker_process_serves_tasks_submitted_through_the_http_api(
    tmp_path: Path,
) -> None:
    async with open_service(tmp_path) as service, trio.open_nursery() as nursery:
        await start_python_worker(nursery, service.workers, "py-serve")
        async with httpx.AsyncClient(base_url=service.http) as client:
            response = await client.post(
                "/tasks", json={"taskType": "echo", "payload": {"n": 1}}
            )
            assert response.status_code == 201, response.text
            task_id = response.json()["id"]
            with trio.fail_after(WAIT):
                waited = await client.get(
                    f"/tasks/{task_id}/wait", params={"timeout": WAIT}
                )
            body = waited.json()
            assert body["status"] == TaskStatus.COMPLETED.value
            assert body["result"]["payload"] == {"n": 1}
            assert body["attempts"][0]["workerId"] == "py-serve"
        nursery.cancel_scope.cancel()


async def test_sigterm_lets_the_task_in_flight_finish_then_exits_0(tmp_path: Path) -> None:
    async with open_service(tmp_path, "[dispatcher]\nshutdown_grace = 300\n") as service:
        async with trio.open_nursery() as nursery:
            await start_python_worker(nursery, service.workers, "py-drain")
            async with httpx.AsyncClient(base_url=service.http) as client:
                task_id = await submit_gate(client, tmp_path)
                service.process.send_signal(signal.SIGTERM)
                # While it drains, the API still answers, and refuses new tasks.
                with trio.fail_after(WAIT):
                    while True:
                        refused = await client.post("/tasks", json={"taskType": "echo"})
                        if refused.status_code == 503:
                            break
                        await trio.sleep(0.01)  # the signal is not handled yet
                assert refused.json()["error"] == "DISPATCHER_CLOSED"
            (tmp_path / "release").touch()
            with trio.fail_after(WAIT):
                assert await service.process.wait() == 0
            nursery.cancel_scope.cancel()
    record = await stored(service.store, task_id)
    assert record["status"] == TaskStatus.COMPLETED.value
    assert record["result"]["payload"] == "released"
    assert "SIGTERM: draining" in (tmp_path / "serve.log").read_text()


async def test_a_task_past_the_grace_period_is_cancelled_and_the_service_exits(
    tmp_path: Path,
) -> None:
    async with open_service(tmp_path, "[dispatcher]\nshutdown_grace = 0.5\n") as service:
        async with trio.open_nursery() as nursery:
            await start_python_worker(nursery, service.workers, "py-late")
            async with httpx.AsyncClient(base_url=service.http) as client:
                task_id = await submit_gate(client, tmp_path)
            service.process.send_signal(signal.SIGINT)
            with trio.fail_after(WAIT):
                assert await service.process.wait() == 130
            nursery.cancel_scope.cancel()
    assert (await stored(service.store, task_id))["status"] != TaskStatus.COMPLETED.value


async def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    # A grace period far longer than the test's bound: only the second signal can
    # end the service in time.
    async with open_service(tmp_path, "[dispatcher]\nshutdown_grace = 3600\n") as service:
        async with trio.open_nursery() as nursery:
            await start_python_worker(nursery, service.workers, "py-stuck")
            async with httpx.AsyncClient(base_url=service.http) as client:
                task_id = await submit_gate(client, tmp_path)
            service.process.send_signal(signal.SIGTERM)
            log = tmp_path / "serve.log"
            with trio.fail_after(WAIT):
                while "SIGTERM: draining" not in log.read_text():  # noqa: ASYNC110
                    await trio.sleep(0.01)
            service.process.send_signal(signal.SIGTERM)
            with trio.fail_after(WAIT):
                assert await service.process.wait() == 0
            nursery.cancel_scope.cancel()
    assert "second signal: stopping now" in (tmp_path / "serve.log").read_text()
    assert (await stored(service.store, task_id))["status"] != TaskStatus.COMPLETED.value


async def test_an_invalid_configuration_exits_2_naming_file_line_and_key(
    tmp_path: Path,
) -> None:
    path = config(tmp_path, "[dispatcher]\nshutdown_grace = -5\n")
    completed = await trio.run_process(
        serve_argv(path), capture_stdout=True, capture_stderr=True, check=False, cwd=ROOT
    )
    assert completed.returncode == 2
    assert completed.stderr.decode().splitlines() == [
        f"trio-pipe serve: {path}:11: dispatcher.shutdown_grace: shutdown_grace must be "
        "a finite number >= 0, not -5"
    ]


async def test_check_validates_without_starting_anything(tmp_path: Path) -> None:
    completed = await trio.run_process(
        [*serve_argv(config(tmp_path)), "--check"], capture_stdout=True, cwd=ROOT
    )
    assert completed.stdout == b"ok\n"
    assert not (tmp_path / "tasks.db").exists()


async def test_an_address_in_use_exits_1_naming_it(tmp_path: Path) -> None:
    async with open_service(tmp_path) as service:
        port = service.http.rsplit(":", 1)[1]
        other = tmp_path / "other"
        other.mkdir()
        conf = config(other, http=f"127.0.0.1:{port}")
        completed = await trio.run_process(
            serve_argv(conf), capture_stderr=True, check=False, cwd=ROOT
        )
        service.process.send_signal(signal.SIGTERM)
        with trio.fail_after(WAIT):
            await service.process.wait()
    assert completed.returncode == 1
    assert lines_of(completed.stderr)[-1] == (
        f"trio-pipe serve: [Errno 98] cannot serve the HTTP API on 127.0.0.1:{port}: "
        "Address already in use"
    )
    assert "Traceback" not in completed.stderr.decode()


async def test_a_spawned_worker_that_cannot_start_exits_1_naming_its_entry(
    tmp_path: Path,
) -> None:
    path = config(
        tmp_path,
        """
[[spawn]]
kind = "stdio"
argv = ["/nonexistent/worker"]
tasks = ["echo"]
""",
    )
    completed = await trio.run_process(
        serve_argv(path), capture_stderr=True, check=False, cwd=ROOT
    )
    assert completed.returncode == 1
    last = lines_of(completed.stderr)[-1]
    assert last.startswith(f"trio-pipe serve: {path}:11: spawn[0]: cannot start it: ")
    assert "Traceback" not in completed.stderr.decode()


async def test_a_spawned_stdio_worker_serves_tasks(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "trio_pipe", "worker", "--stdio", "--handlers",
            "tests.worker_handlers:HANDLERS"]  # fmt: skip
    spawn = f'[[spawn]]\nkind = "stdio"\nargv = {json.dumps(argv)}\ntasks = ["echo"]\n'
    async with open_service(tmp_path, spawn) as service:
        async with httpx.AsyncClient(base_url=service.http) as client:
            task_id = (
                await client.post("/tasks", json={"taskType": "echo", "payload": "hi"})
            ).json()["id"]
            with trio.fail_after(WAIT):
                body = (
                    await client.get(f"/tasks/{task_id}/wait", params={"timeout": WAIT})
                ).json()
            assert body["result"]["payload"] == "hi"
        service.process.send_signal(signal.SIGTERM)
        with trio.fail_after(WAIT):
            assert await service.process.wait() == 0
    assert uuid.UUID(task_id)


async def test_a_spawned_wasm_worker_runs_with_its_limits(tmp_path: Path) -> None:
    pytest.importorskip("wasmtime")
    module = ROOT / "tests" / "wasm" / "infinite_loop.wat"
    spawn = (
        f'[[spawn]]\nkind = "wasm"\nmodule = "{module}"\ntasks = ["spin"]\nfuel = 1000000\n'
    )
    async with open_service(tmp_path, spawn) as service:
        async with httpx.AsyncClient(base_url=service.http) as client:
            submitted = await client.post(
                "/tasks", json={"taskType": "spin", "maxRetries": 0}
            )
            task_id = submitted.json()["id"]
            with trio.fail_after(WAIT):
                body = (
                    await client.get(f"/tasks/{task_id}/wait", params={"timeout": WAIT})
                ).json()
        assert body["status"] == TaskStatus.FAILED.value
        assert body["result"]["error"]["code"] == "WASM_FUEL_EXHAUSTED"
        service.process.send_signal(signal.SIGTERM)
        with trio.fail_after(WAIT):
            assert await service.process.wait() == 0
