"""``trio-pipe submit``, ``stats`` and ``tasks list|show --url``: the command line, run
as a real process, against a dispatcher's live HTTP API on loopback (with in-memory
workers behind it), and every way that can fail."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import ROOT, free_port

import trio_pipe
from trio_pipe.auth import ApiAuth, new_secret
from trio_pipe.dispatch import Dispatcher
from trio_pipe.protocol import TaskError, TaskResult, TaskResultMessage, TaskStatus
from trio_pipe.testing import MemoryWorker, open_memory_worker

WAIT = 60  # seconds: a bound on each command (each takes about a second)


async def cli(
    *args: str, env: Mapping[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``python -m trio_pipe ARGS``, to its end, its output captured; the API's
    variables are not inherited from the environment running the tests."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRIO_PIPE_API_")}
    with trio.fail_after(WAIT):
        return await trio.run_process(
            [sys.executable, "-m", "trio_pipe", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            stdin=stdin,
            cwd=ROOT,
            env={**base, **(env or {})},
        )


def lines(output: bytes) -> list[str]:
    return output.decode().splitlines()


async def echo(payload: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return payload


async def fail_every_task(worker: MemoryWorker) -> None:
    while True:
        dispatch = await worker.receive_task()
        error = TaskError("BOOM", "it broke", retryable=False)
        result = TaskResult(
            dispatch.task.id, TaskStatus.FAILED, error=error, worker_id=worker.worker_id
        )
        await worker.send(TaskResultMessage(result))


@asynccontextmanager
async def open_api(**options: Any) -> AsyncIterator[Dispatcher]:
    """A dispatcher serving its HTTP API on a free loopback port, with a worker for
    ``echo`` and one that fails every ``boom``."""
    async with (
        trio_pipe.open_dispatcher(
            port=None, http=("127.0.0.1", 0), **options
        ) as dispatcher,
        trio.open_nursery() as nursery,
    ):
        async with open_memory_worker(
            dispatcher, "echoer", ["echo"], max_concurrency=10
        ) as echoer:
            async with open_memory_worker(dispatcher, "failer", ["boom"]) as failer:
                nursery.start_soon(echoer.serve, echo)
                nursery.start_soon(fail_every_task, failer)
                yield dispatcher
                nursery.cancel_scope.cancel()


# -- submit -----------------------------------------------------------------------------


async def test_submit_prints_the_task_id_and_the_task_runs() -> None:
    async with open_api() as dispatcher:
        done = await cli(
            "submit", "echo", '{"n": 1}', "--priority", "high", "--idempotency-key", "k-1",
            "--url", dispatcher.http_url,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        (task_id,) = lines(done.stdout)
        handle = await dispatcher.handle(__import__("uuid").UUID(task_id))
        result = await handle.result()
        assert result.payload == {"n": 1}
        assert handle.task.metadata.idempotency_key == "k-1"


async def test_submit_wait_prints_the_result_payload() -> None:
    async with open_api() as dispatcher:
        env = {"TRIO_PIPE_API_URL": dispatcher.http_url}
        done = await cli("submit", "echo", '[1, "two"]', "--wait", env=env)
        assert (done.returncode, lines(done.stdout)) == (0, ['[1, "two"]']), done.stderr


async def test_submit_wait_for_a_task_that_fails_exits_1_saying_why() -> None:
    async with open_api() as dispatcher:
        done = await cli("submit", "boom", "{}", "--wait", "--url", dispatcher.http_url)
    assert done.returncode == 1
    assert re.fullmatch(
        r"trio-pipe submit: task \S+ ended Failed: BOOM: it broke",
        done.stderr.decode().strip(),
    ), done.stderr


async def test_submit_with_a_payload_that_is_not_json_exits_2() -> None:
    done = await cli("submit", "echo", "{oops", "--url", "http://127.0.0.1:1")
    assert done.returncode == 2
    assert "argument JSON: not JSON: " in done.stderr.decode()


async def test_submit_without_a_url_exits_2() -> None:
    done = await cli("submit", "echo", "{}")
    assert done.returncode == 2
    assert "give --url (or set TRIO_PIPE_API_URL)" in done.stderr.decode()


async def test_a_task_the_api_refuses_exits_1_with_its_code() -> None:
    async with open_api() as dispatcher:
        done = await cli(
            "submit", "echo", "{}", "--timeout-ms", "-5", "--url", dispatcher.http_url
        )
    assert done.returncode == 1
    assert lines(done.stderr)[-1].startswith("trio-pipe submit: 400 INVALID_TASK: ")


# -- submit --from ----------------------------------------------------------------------


async def test_submit_from_reports_each_failing_line_and_submits_the_others(
    tmp_path: Path,
) -> None:
    # "later" has no worker: its tasks wait, and keep their payloads to be checked.
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        '{"taskType": "later", "payload": 1}\n'
        '{"taskType": "later", "payload": \n'  # 2: not JSON
        "[1, 2]\n"  # 3: not an object
        "\n"  # blank: skipped
        '{"payload": 4}\n'  # 5: refused by the API (no taskType)
        '{"taskType": "later", "payload": 6, "priority": "low"}\n'
        '{"taskType": "later", "payload": 7}\n'
    )
    async with open_api() as dispatcher:
        done = await cli("submit", "--from", str(tasks), "--url", dispatcher.http_url)
        submitted = await dispatcher.tasks(limit=100)
    assert done.returncode == 1
    assert lines(done.stdout) == ["submitted 3 of 6 tasks; 3 failed (lines 2, 3, 5)"]
    errors = [line for line in lines(done.stderr) if line.startswith(str(tasks))]
    assert [line.split(": ", 1)[0] for line in errors] == [
        f"{tasks}:{n}" for n in (2, 3, 5)
    ]
    assert errors[0].startswith(f"{tasks}:2: not a task: Expecting value")
    assert errors[1] == f"{tasks}:3: not a task: expected a JSON object, a POST /tasks body"
    assert errors[2].startswith(f"{tasks}:5: 400 INVALID_TASK: ")
    assert sorted(record.task.payload or 0 for record in submitted) == [1, 6, 7]


async def test_submit_from_stdin_with_every_line_accepted_exits_0() -> None:
    body = "".join(json.dumps({"taskType": "echo", "payload": n}) + "\n" for n in range(50))
    async with open_api() as dispatcher:
        done = await cli(
            "submit", "--from", "-", "--url", dispatcher.http_url, stdin=body.encode()
        )
        assert len(await dispatcher.tasks(limit=100)) == 50
    assert (done.returncode, lines(done.stdout)) == (0, ["submitted 50 of 50 tasks"])


async def test_submit_from_a_missing_file_exits_1() -> None:
    done = await cli(
        "submit", "--from", "/nonexistent.jsonl", "--url", "http://127.0.0.1:1"
    )
    assert done.returncode == 1
    assert lines(done.stderr) == [
        "trio-pipe submit: cannot read /nonexistent.jsonl: FileNotFoundError: [Errno 2] "
        "No such file or directory: '/nonexistent.jsonl'"
    ]


async def test_submit_from_stops_when_the_server_is_down(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"taskType": "echo"}\n' * 3)
    url = f"http://127.0.0.1:{free_port()}"
    done = await cli("submit", "--from", str(tasks), "--url", url)
    assert done.returncode == 1
    last = lines(done.stderr)[-1]
    assert last.startswith(f"trio-pipe submit: cannot reach the HTTP API at {url}: ")
    assert last.endswith(f"; stopped at {tasks}:1 (0 submitted before it)")


# -- the server: down, refusing, not the API ----------------------------------------------


@pytest.mark.parametrize(
    "command", [["submit", "echo", "{}"], ["stats"], ["tasks", "list"]]
)
async def test_a_server_that_is_down_exits_1(command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = await cli(*command, "--url", url)
    assert done.returncode == 1
    assert re.fullmatch(
        rf"trio-pipe {' '.join(command[:2]) if command[0] == 'tasks' else command[0]}: "
        rf"cannot reach the HTTP API at {re.escape(url)}: ConnectError: .*",
        done.stderr.decode().strip(),
    ), done.stderr


async def test_no_token_and_a_read_token_are_refused_with_401_and_403(
    tmp_path: Path,
) -> None:
    auth = ApiAuth(new_secret())
    read = auth.create("read", expires_in=3600, subject="grafana")
    admin = auth.create("admin", expires_in=3600)
    async with open_api(http_auth=auth) as dispatcher:
        url = dispatcher.http_url
        anonymous = await cli("stats", "--url", url)
        reader = await cli("submit", "echo", "{}", "--url", url, "--token", read)
        tasks = tmp_path / "tasks.jsonl"
        tasks.write_text('{"taskType": "echo"}\n' * 3)
        reader_from = await cli(
            "submit", "--from", str(tasks), "--url", url, "--token", read
        )
        admin_env = await cli(
            "submit", "echo", "{}", "--url", url, env={"TRIO_PIPE_API_TOKEN": admin}
        )
        reader_stats = await cli("stats", "--url", url, env={"TRIO_PIPE_API_TOKEN": read})
    assert anonymous.returncode == 1
    assert anonymous.stderr.decode().startswith("trio-pipe stats: 401 UNAUTHORIZED: ")
    assert reader.returncode == 1
    assert reader.stderr.decode().startswith("trio-pipe submit: 403 FORBIDDEN: ")
    # A refused token stops a whole file at its first line: every line would meet it.
    assert reader_from.returncode == 1
    assert lines(reader_from.stderr)[-1].endswith(f"(at {tasks}:1)")
    assert admin_env.returncode == 0, admin_env.stderr
    assert reader_stats.returncode == 0, reader_stats.stderr


async def test_a_server_that_is_not_the_api_exits_1() -> None:
    # The worker port: an HTTP server that answers a plain GET without JSON.
    async with trio_pipe.open_dispatcher(port=0) as dispatcher:
        url = dispatcher.url.replace("ws://", "http://")
        done = await cli("stats", "--url", url)
    assert done.returncode == 1
    assert re.fullmatch(
        rf"trio-pipe stats: {re.escape(url)}/stats answered \d+ without JSON: is it a "
        r"trio-pipe HTTP API\?",
        done.stderr.decode().strip(),
    ), done.stderr


async def test_a_url_that_is_not_http_exits_2() -> None:
    done = await cli("stats", "--url", "ws://127.0.0.1:9876")
    assert done.returncode == 2
    assert "--url: expected http://HOST:PORT" in done.stderr.decode()


# -- stats, tasks list and show ---------------------------------------------------------


async def test_stats_prints_the_pool_and_the_queue() -> None:
    async with open_api() as dispatcher:
        table = await cli("stats", "--url", dispatcher.http_url)
        as_json = await cli("stats", "--json", "--url", dispatcher.http_url)
    assert table.returncode == 0
    text = table.stdout.decode()
    assert re.search(r"^workers: +total 2 active 2 busy 0 draining 0 dead 0$", text, re.M)
    assert re.search(r"^capacity: +0 of 11 slots used$", text, re.M)
    assert json.loads(as_json.stdout)["workers"]["total"] == 2


async def test_tasks_list_and_show_with_url_read_the_api_with_a_memory_store() -> None:
    async with open_api() as dispatcher:
        url = dispatcher.http_url
        handles = [await dispatcher.submit(trio_pipe.Task.new("echo", n)) for n in range(3)]
        for handle in handles:
            await handle.result()
        first = await cli("tasks", "list", "--limit", "2", "--url", url)
        json_page = await cli("tasks", "list", "--json", "--url", url)
        show = await cli("tasks", "show", str(handles[0].id), "--url", url)
        missing = await cli(
            "tasks", "show", "00000000-0000-4000-8000-000000000000", "--url", url
        )
    assert first.returncode == 0, first.stderr
    rows = lines(first.stdout)
    assert rows[0].split() == [
        "id",
        "type",
        "status",
        "priority",
        "attempts",
        "worker",
        "error",
    ]
    assert [row.split()[0] for row in rows[1:3]] == [str(h.id) for h in handles[:2]]
    assert rows[1].split()[1:] == ["echo", "Completed", "Normal", "1", "echoer", "-"]
    assert rows[3] == (
        f"next page: trio-pipe tasks list --url {url} --limit 2 --after {handles[1].id}"
    )
    assert [task["id"] for task in json.loads(json_page.stdout)] == [
        str(h.id) for h in handles
    ]
    assert show.returncode == 0
    assert re.search(r"^status: +Completed$", show.stdout.decode(), re.M)
    assert missing.returncode == 1
    assert missing.stderr.decode().startswith("trio-pipe tasks show: 404 TASK_NOT_FOUND: ")


async def test_tasks_takes_a_store_or_a_url_not_both_nor_neither(tmp_path: Path) -> None:
    both = await cli(
        "tasks", "list", "--store", f"sqlite:///{tmp_path}/t.db", "--url", "http://x:1"
    )
    neither = await cli("tasks", "list")
    assert (both.returncode, neither.returncode) == (2, 2)
    assert "give --store or --url, not both" in both.stderr.decode()
    assert "give --store URL, or --url (or TRIO_PIPE_API_URL)" in neither.stderr.decode()
