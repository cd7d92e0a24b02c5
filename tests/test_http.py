"""The HTTP API (trio_pipe/http/), through a real HTTP client against a real server on
loopback, in front of a real dispatcher with in-memory workers (and one real worker
process)."""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from helpers import ROOT, start_python_worker

import trio_pipe
from trio_pipe import StoreError
from trio_pipe.auth import ApiAuth, ApiScope, TokenAuth, new_secret, revoke
from trio_pipe.cli import main
from trio_pipe.dispatch import Dispatcher, WorkerEvent, WorkerEventKind
from trio_pipe.http import openapi_document
from trio_pipe.http._views import rfc3339
from trio_pipe.protocol import (
    Kill,
    Shutdown,
    TaskDispatch,
    TaskError,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
)
from trio_pipe.store import MemoryStore, TaskRecord
from trio_pipe.testing import MemoryWorker, connect_memory_worker, open_memory_worker


@asynccontextmanager
async def open_api(
    token: str | None = None, **options: Any
) -> AsyncIterator[tuple[Dispatcher, httpx.AsyncClient]]:
    """A dispatcher serving the HTTP API on a free loopback port, and a client of it."""
    options.setdefault("port", None)
    options.setdefault("http", ("127.0.0.1", 0))
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with trio_pipe.open_dispatcher(**options) as dispatcher:
        async with httpx.AsyncClient(
            base_url=dispatcher.http_url, headers=headers
        ) as client:
            yield dispatcher, client


async def echo(payload: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return payload


async def fail(worker: MemoryWorker, dispatch: TaskDispatch, code: str = "BOOM") -> None:
    error = TaskError(code, "it broke", retryable=False)
    result = TaskResult(
        dispatch.task.id, TaskStatus.FAILED, error=error, worker_id=worker.worker_id
    )
    await worker.send(TaskResultMessage(result))


def assert_error(response: httpx.Response, status: int, code: str, says: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == code, body
    assert says in body["message"], body


# -- submit, get, wait ----------------------------------------------------------------


async def test_a_task_submitted_over_http_runs_and_its_result_can_be_awaited() -> None:
    async with open_api() as (dispatcher, client), trio.open_nursery() as nursery:
        async with open_memory_worker(dispatcher, "w1", ["echo"]) as worker:
            nursery.start_soon(worker.serve, echo)
            submitted = await client.post(
                "/tasks",
                json={"taskType": "echo", "payload": {"n": 1}, "priority": "high",
                      "timeoutMs": 5000, "maxRetries": 1, "traceId": "t-1"},
            )  # fmt: skip
            assert submitted.status_code == 201, submitted.text
            task = submitted.json()
            assert task["priority"] == "High"
            assert (task["timeoutMs"], task["maxRetries"], task["traceId"]) == (
                5000,
                1,
                "t-1",
            )
            waited = await client.get(f"/tasks/{task['id']}/wait", params={"timeout": 30})
            assert waited.status_code == 200
            done = waited.json()
            assert done["done"] is True
            assert done["status"] == "Completed"
            assert done["result"]["payload"] == {"n": 1}
            assert [a["workerId"] for a in done["attempts"]] == ["w1"]
            got = await client.get(f"/tasks/{task['id']}")
            assert got.json()["result"] == done["result"]
            nursery.cancel_scope.cancel()


STORES = ["memory", "sqlite"]


def store_url(kind: str, tmp_path: Path) -> str:
    return "memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'tasks.db'}"


@pytest.mark.parametrize("store", STORES)
async def test_the_same_idempotency_key_returns_the_same_task_never_a_second(
    store: str, tmp_path: Path
) -> None:
    async with open_api(store=store_url(store, tmp_path)) as (_dispatcher, client):
        body = {"taskType": "echo", "payload": 1, "idempotencyKey": "order-42"}
        first = await client.post("/tasks", json=body)
        again = await client.post("/tasks", json={**body, "payload": 2})
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["payload"] == 1
        listed = await client.get("/tasks")
        assert [t["id"] for t in listed.json()["tasks"]] == [first.json()["id"]]


async def test_a_wait_that_times_out_returns_the_unfinished_task() -> None:
    async with open_api() as (_dispatcher, client):
        task = (await client.post("/tasks", json={"taskType": "nobody"})).json()
        started = time.monotonic()
        waited = await client.get(f"/tasks/{task['id']}/wait", params={"timeout": 0.2})
        assert 0.2 <= time.monotonic() - started < 10
        assert waited.status_code == 200
        assert (waited.json()["done"], waited.json()["status"]) == (False, "Pending")


@pytest.mark.parametrize("path", ["/tasks/{}", "/tasks/{}/wait", "/tasks/{}/cancel"])
async def test_an_unknown_task_is_404_and_a_malformed_id_is_400(path: str) -> None:
    async with open_api() as (_dispatcher, client):
        method = "POST" if path.endswith("cancel") else "GET"
        missing = uuid.uuid4()
        response = await client.request(method, path.format(missing))
        assert_error(response, 404, "TASK_NOT_FOUND", str(missing))
        response = await client.request(method, path.format("not-a-uuid"))
        assert_error(response, 400, "INVALID_TASK_ID", "'not-a-uuid'")


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"timeout": "-1"}, "timeout must be a number from 0 to 300"),
        ({"timeout": "301"}, "timeout must be a number from 0 to 300"),
        ({"timeout": "soon"}, "'soon'"),
        ({"timeout": "nan"}, "'nan'"),
        ({"wait": "1"}, "unknown query parameter 'wait'"),
    ],
)
async def test_a_bad_wait_timeout_is_400(params: dict[str, str], says: str) -> None:
    async with open_api() as (_dispatcher, client):
        task = (await client.post("/tasks", json={"taskType": "nobody"})).json()
        response = await client.get(f"/tasks/{task['id']}/wait", params=params)
        assert_error(response, 400, "INVALID_QUERY", says)


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        (b"{", "INVALID_JSON", "not JSON"),
        (b"", "INVALID_TASK", "must be a JSON object"),
        (b"[1]", "INVALID_TASK", "must be a JSON object"),
        (b'{"payload": 1}', "INVALID_TASK", "taskType must be a string"),
        (b'{"taskType": ""}', "INVALID_TASK", "taskType must be a string of 1 to 256"),
        (b'{"taskType": "a", "colour": 1}', "INVALID_TASK", "unknown field 'colour'"),
        (
            b'{"taskType": "a", "priority": "urgent"}',
            "INVALID_TASK",
            "priority must be one of",
        ),
        (
            b'{"taskType": "a", "timeoutMs": 0}',
            "INVALID_TASK",
            "timeoutMs must be an integer from 1",
        ),
        (b'{"taskType": "a", "timeoutMs": 1.5}', "INVALID_TASK", "timeoutMs"),
        (b'{"taskType": "a", "maxRetries": true}', "INVALID_TASK", "maxRetries"),
        (b'{"taskType": "a", "maxRetries": 2147483648}', "INVALID_TASK", "maxRetries"),
        (b'{"taskType": "a", "idempotencyKey": 7}', "INVALID_TASK", "idempotencyKey"),
        (b'{"taskType": "a", "payload": NaN}', "INVALID_JSON", "not JSON"),
    ],
)
async def test_a_bad_submission_is_400_saying_what_is_wrong(
    body: bytes, code: str, says: str
) -> None:
    async with open_api() as (_dispatcher, client):
        response = await client.post(
            "/tasks", content=body, headers={"content-type": "application/json"}
        )
        assert_error(response, 400, code, says)
        assert (await client.get("/tasks")).json()["tasks"] == []


async def test_a_body_beyond_the_limit_is_413() -> None:
    async with open_api() as (_dispatcher, client):
        body = json.dumps({"taskType": "a", "payload": "x" * (1024 * 1024)})
        response = await client.post("/tasks", content=body)
        assert_error(response, 413, "BODY_TOO_LARGE", "1048576 bytes")


async def test_an_unknown_path_is_404_and_an_unknown_method_405_with_allow() -> None:
    async with open_api() as (_dispatcher, client):
        assert_error(await client.get("/nowhere"), 404, "NOT_FOUND", "GET /nowhere")
        response = await client.delete("/tasks")
        assert_error(response, 405, "METHOD_NOT_ALLOWED", "/tasks does not take DELETE")
        assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


async def test_submitting_while_the_dispatcher_closes_is_503() -> None:
    async with trio.open_nursery() as nursery:
        async with open_api(shutdown_grace=30) as (dispatcher, client):
            worker = await connect_memory_worker(dispatcher, "w1", ["slow"])
            await client.post("/tasks", json={"taskType": "slow"})
            dispatch = await worker.receive_task()
            url = dispatcher.http_url

            async def submit_during_shutdown() -> None:
                while not isinstance(await worker.receive(), Shutdown):
                    pass
                async with httpx.AsyncClient(base_url=url) as late:
                    response = await late.post("/tasks", json={"taskType": "slow"})
                assert_error(response, 503, "DISPATCHER_CLOSED", "shutting down")
                await worker.complete(dispatch, "done")

            nursery.start_soon(submit_during_shutdown)


# -- cancel, list ---------------------------------------------------------------------


async def test_cancel_dequeues_a_task_and_a_second_cancel_is_409() -> None:
    async with open_api() as (_dispatcher, client):
        task = (await client.post("/tasks", json={"taskType": "nobody"})).json()
        cancelled = await client.post(f"/tasks/{task['id']}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "Cancelled"
        assert cancelled.json()["result"]["error"]["message"].endswith("HTTP API")
        again = await client.post(f"/tasks/{task['id']}/cancel")
        assert_error(again, 409, "TASK_ENDED", "already ended (Cancelled)")


async def test_cancel_kills_a_running_task_on_its_worker() -> None:
    async with open_api() as (dispatcher, client):
        async with open_memory_worker(dispatcher, "w1", ["slow"]) as worker:
            task = (await client.post("/tasks", json={"taskType": "slow"})).json()
            await worker.receive_task()
            cancelled = await client.post(f"/tasks/{task['id']}/cancel")
            assert cancelled.json()["status"] == "Cancelled"
            kill = await worker.receive()
            assert isinstance(kill, Kill)
            assert kill.task_id == uuid.UUID(task["id"])


@pytest.mark.parametrize("store", STORES)
async def test_tasks_are_listed_by_status_type_and_time_a_page_at_a_time(
    store: str, tmp_path: Path
) -> None:
    async with open_api(store=store_url(store, tmp_path)) as (dispatcher, client):
        ids = []
        for task_type in ["a", "b", "a", "a"]:
            ids.append(
                (await client.post("/tasks", json={"taskType": task_type})).json()["id"]
            )
        await client.post(f"/tasks/{ids[3]}/cancel")

        async def listed(**params: Any) -> list[str]:
            response = await client.get("/tasks", params=params)
            assert response.status_code == 200, response.text
            return [t["id"] for t in response.json()["tasks"]]

        assert await listed() == ids
        assert await listed(type="a") == [ids[0], ids[2], ids[3]]
        assert await listed(status="Cancelled") == [ids[3]]
        assert await listed(status="Pending", type="a") == [ids[0], ids[2]]
        first = (await client.get("/tasks", params={"limit": 3})).json()
        assert [t["id"] for t in first["tasks"]] == ids[:3]
        assert first["next"] == ids[2]
        rest = (
            await client.get("/tasks", params={"limit": 3, "after": first["next"]})
        ).json()
        assert ([t["id"] for t in rest["tasks"]], rest["next"]) == (ids[3:], None)
        second, third = [await dispatcher.store.get(uuid.UUID(i)) for i in ids[1:3]]
        assert second is not None and third is not None
        at = rfc3339((second.submitted_at + third.submitted_at) / 2)
        assert await listed(submittedAfter=at) == ids[2:]
        assert await listed(submittedBefore=at) == ids[:2]
        assert await listed(submittedAfter="2000-01-01T00:00:00+02:00") == ids
        assert await listed(submittedBefore="2000-01-01T00:00:00Z") == []


@pytest.mark.parametrize(
    ("params", "status", "code", "says"),
    [
        ({"status": "Done"}, 400, "INVALID_QUERY", "status must be one of Pending"),
        ({"limit": "0"}, 400, "INVALID_QUERY", "limit must be an integer from 1 to 1000"),
        ({"limit": "1001"}, 400, "INVALID_QUERY", "limit must be an integer"),
        ({"limit": "2.5"}, 400, "INVALID_QUERY", "'2.5'"),
        ({"after": "x"}, 400, "INVALID_QUERY", "after must be a task id"),
        (
            {"submittedAfter": "2026-12-08T10:00:00"},
            400,
            "INVALID_QUERY",
            "with its offset",
        ),
        ({"submittedBefore": "yesterday"}, 400, "INVALID_QUERY", "RFC 3339"),
        ({"sort": "id"}, 400, "INVALID_QUERY", "unknown query parameter 'sort'"),
        (
            {"after": "00000000-0000-4000-8000-000000000000"},
            404,
            "TASK_NOT_FOUND",
            "to list after",
        ),
    ],
)
async def test_a_bad_listing_query_is_refused_saying_why(
    params: dict[str, str], status: int, code: str, says: str
) -> None:
    async with open_api() as (_dispatcher, client):
        assert_error(await client.get("/tasks", params=params), status, code, says)


# -- workers, dead letters, stats --------------------------------------------------------


async def test_workers_are_listed_drained_and_removed() -> None:
    async with open_api() as (dispatcher, client):
        async with open_memory_worker(dispatcher, "w1", ["echo"], max_concurrency=3):
            workers = (await client.get("/workers")).json()["workers"]
            assert [(w["workerId"], w["state"], w["maxConcurrency"]) for w in workers] == [
                ("w1", "active", 3)
            ]
            assert workers[0]["heartbeatAgeSeconds"] >= 0
            drained = await client.post("/workers/w1/drain")
            assert (drained.status_code, drained.json()["state"]) == (200, "draining")
            async with dispatcher.events() as events:
                removed = await client.delete("/workers/w1")
                assert (removed.status_code, removed.content) == (204, b"")
                with trio.fail_after(10):
                    async for event in events:
                        if (
                            isinstance(event, WorkerEvent)
                            and event.kind is WorkerEventKind.REMOVED
                        ):
                            break
            workers = (await client.get("/workers")).json()["workers"]
            assert workers == []  # a removed worker is forgotten
            assert_error(
                await client.post("/workers/nobody/drain"), 404, "WORKER_NOT_FOUND"
            )
            assert_error(await client.delete("/workers/nobody"), 404, "WORKER_NOT_FOUND")


async def test_dead_letters_are_listed_requeued_and_purged() -> None:
    async with open_api() as (dispatcher, client):
        async with open_memory_worker(dispatcher, "w1", ["job"]) as worker:
            ids = []
            for _ in range(3):
                ids.append(
                    (await client.post("/tasks", json={"taskType": "job"})).json()["id"]
                )
                await fail(worker, await worker.receive_task())
                await client.get(f"/tasks/{ids[-1]}/wait", params={"timeout": 10})
            letters = (await client.get("/dead-letters")).json()
            assert [t["id"] for t in letters["tasks"]] == ids
            assert letters["tasks"][0]["result"]["error"]["code"] == "BOOM"

            requeued = await client.post(f"/dead-letters/{ids[0]}/requeue")
            assert requeued.status_code == 200
            assert requeued.json()["status"] in {"Pending", "Dispatched"}
            await worker.complete(await worker.receive_task(), "second time lucky")
            done = (
                await client.get(f"/tasks/{ids[0]}/wait", params={"timeout": 10})
            ).json()
            assert (done["status"], done["result"]["payload"]) == (
                "Completed",
                "second time lucky",
            )
            assert_error(
                await client.post(f"/dead-letters/{ids[0]}/requeue"),
                409, "NOT_REQUEUABLE", "only a task that ended without completing",
            )  # fmt: skip
            assert_error(
                await client.post(f"/dead-letters/{uuid.uuid4()}/requeue"),
                404,
                "TASK_NOT_FOUND",
            )

            purged = await client.post("/dead-letters/purge", json={"ids": [ids[1]]})
            assert purged.json() == {"purged": 1}
            assert (
                await client.post("/dead-letters/purge", json={"olderThanSeconds": 3600})
            ).json() == {"purged": 0}
            assert (await client.post("/dead-letters/purge")).json() == {"purged": 1}
            assert (await client.get("/dead-letters")).json() == {"tasks": [], "next": None}


@pytest.mark.parametrize(
    "body",
    [b"null", b"[]", b'{"ids": "all"}', b'{"ids": ["x"]}', b'{"ids": {}}',
     b'{"olderThanSeconds": -1}', b'{"olderThanSeconds": true}', b'{"status": "Failed"}'],
)  # fmt: skip
async def test_a_bad_purge_is_400(body: bytes) -> None:
    async with open_api() as (_dispatcher, client):
        assert_error(
            await client.post("/dead-letters/purge", content=body), 400, "INVALID_PURGE"
        )


async def test_stats_count_the_pool_and_the_queue() -> None:
    async with open_api() as (dispatcher, client):
        async with open_memory_worker(dispatcher, "w1", ["echo"], max_concurrency=2):
            await client.post("/tasks", json={"taskType": "other", "priority": "Critical"})
            stats = (await client.get("/stats")).json()
            assert stats["workers"]["active"] == 1
            assert stats["capacity"] == {"total": 2, "used": 0}
            assert stats["queued"] == 1
            assert stats["queuedByPriority"] == {
                "Low": 0,
                "Normal": 0,
                "High": 0,
                "Critical": 1,
            }


# -- a real worker process -------------------------------------------------------------


@pytest.mark.slow
async def test_a_real_worker_process_runs_a_task_submitted_over_http() -> None:
    async with open_api(port=0) as (dispatcher, client), trio.open_nursery() as nursery:
        process = await start_python_worker(nursery, dispatcher.url, "proc-1")
        with trio.fail_after(60):
            await dispatcher.wait_for_workers(1)
        task = (
            await client.post("/tasks", json={"taskType": "echo", "payload": [1, 2]})
        ).json()
        done = (
            await client.get(f"/tasks/{task['id']}/wait", params={"timeout": 60})
        ).json()
        assert (done["status"], done["result"]["payload"]) == ("Completed", [1, 2])
        worker = (await client.get("/workers")).json()["workers"][0]
        assert (worker["workerId"], worker["transport"]) == ("proc-1", "websocket")
        process.terminate()
        nursery.cancel_scope.cancel()


# -- authentication ---------------------------------------------------------------------


async def test_without_a_token_every_endpoint_but_the_document_is_401() -> None:
    auth = ApiAuth(new_secret())
    async with open_api(http_auth=auth) as (_dispatcher, client):
        for method, path in [("GET", "/tasks"), ("POST", "/tasks"), ("GET", "/stats"),
                             ("GET", "/workers"), ("POST", "/dead-letters/purge")]:  # fmt: skip
            response = await client.request(method, path)
            assert_error(response, 401, "UNAUTHORIZED", "no Authorization header")
            assert response.headers["www-authenticate"] == "Bearer"
        assert (await client.get("/openapi.json")).status_code == 200


async def test_a_read_token_reads_and_only_an_admin_token_changes_anything() -> None:
    auth = ApiAuth(new_secret())
    reader = {
        "Authorization": f"Bearer {auth.create('read', expires_in=60, subject='ops')}"
    }
    admin = {"Authorization": f"Bearer {auth.create('admin', expires_in=60)}"}
    async with open_api(http_auth=auth) as (_dispatcher, client):
        assert (await client.get("/stats", headers=reader)).status_code == 200
        refused = await client.post("/tasks", json={"taskType": "a"}, headers=reader)
        assert_error(
            refused, 403, "FORBIDDEN", "needs an admin token; 'ops' holds a read one"
        )
        assert_error(
            await client.post("/dead-letters/purge", headers=reader), 403, "FORBIDDEN"
        )
        submitted = await client.post("/tasks", json={"taskType": "a"}, headers=admin)
        assert submitted.status_code == 201
        assert (await client.get("/tasks", headers=admin)).status_code == 200


async def test_worker_expired_revoked_and_forged_tokens_are_refused(tmp_path: Any) -> None:
    secret = new_secret()
    revocations = tmp_path / "revoked"
    auth = ApiAuth(secret, revocations=revocations)
    revoked = auth.create("admin", expires_in=60, token_id="gone")
    revoke(revocations, "gone")
    cases = {
        TokenAuth(secret).create(expires_in=60): "Audience doesn't match",
        auth.create("admin", expires_in=1, now=time.time() - 60): "expired",
        revoked: "token gone has been revoked",
        ApiAuth(new_secret()).create(
            "admin", expires_in=60
        ): "Signature verification failed",
        "not.a.jwt": "invalid token",
    }
    async with open_api(http_auth=auth) as (_dispatcher, client):
        for token, says in cases.items():
            response = await client.get(
                "/stats", headers={"Authorization": f"Bearer {token}"}
            )
            assert_error(response, 401, "UNAUTHORIZED", says)
        response = await client.get("/stats", headers={"Authorization": "Basic eDp5"})
        assert_error(response, 401, "UNAUTHORIZED", "not 'Bearer <token>'")


def test_an_api_token_of_an_unknown_scope_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="'root' is not a valid ApiScope"):
        ApiAuth(new_secret()).create("root", expires_in=60)


# -- where it listens ---------------------------------------------------------------------


async def test_without_tokens_the_api_is_served_on_loopback_only() -> None:
    with pytest.raises(ValueError, match=r"refusing to serve the HTTP API on '0\.0\.0\.0'"):
        async with trio_pipe.open_dispatcher(port=None, http=("0.0.0.0", 0)):
            pass  # pragma: no cover


async def test_http_insecure_serves_beyond_loopback_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "trio_pipe.dispatcher"):
        async with open_api(http=("0.0.0.0", 0), http_insecure=True) as (dispatcher, _):
            port = int(dispatcher.http_url.rsplit(":", 1)[1])
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/stats")
                assert response.status_code == 200
    assert "with no authentication (http_insecure=True)" in caplog.text


async def test_with_tokens_the_api_may_be_served_beyond_loopback() -> None:
    async with open_api(http=("0.0.0.0", 0), http_auth=ApiAuth(new_secret())) as (d, _):
        assert d.http_url.startswith("http://0.0.0.0:")


async def test_an_address_that_cannot_be_bound_fails_open_dispatcher_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot serve the HTTP API on 127.0.0.1:{port}"):
            async with trio_pipe.open_dispatcher(port=None, http=("127.0.0.1", port)):
                pass  # pragma: no cover


@pytest.mark.parametrize(
    "http",
    [("127.0.0.1",), ("127.0.0.1", 70000), ("", 0), ("127.0.0.1", "80"), "localhost:80"],
)
async def test_an_invalid_http_setting_is_refused_before_anything_starts(http: Any) -> None:
    with pytest.raises(ValueError, match="http must be a \\(host, port\\) tuple"):
        async with trio_pipe.open_dispatcher(port=None, http=http):
            pass  # pragma: no cover


async def test_leaving_the_dispatcher_stops_the_server() -> None:
    async with open_api() as (dispatcher, client):
        url = dispatcher.http_url
        assert (await client.get("/stats")).status_code == 200
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{url}/stats")


async def test_http_url_says_when_there_is_no_http_api() -> None:
    async with trio_pipe.open_dispatcher(port=None) as dispatcher:
        with pytest.raises(RuntimeError, match="does not serve the HTTP API"):
            dispatcher.http_url  # noqa: B018


# -- the OpenAPI document ----------------------------------------------------------------


async def test_the_committed_openapi_document_is_the_one_served() -> None:
    async with open_api() as (_dispatcher, client):
        served = (await client.get("/openapi.json")).json()
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert served == committed == openapi_document(), (
        "docs/openapi.json is stale: regenerate it as docs/http.md says"
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_schemathesis_finds_nothing_against_the_live_server(tmp_path: Path) -> None:
    auth = ApiAuth(new_secret())
    token = auth.create("admin", expires_in=3600)
    async with (
        open_api(http_auth=auth, heartbeat_timeout=3600) as (dispatcher, _),
        trio.open_nursery() as nursery,
    ):
        async with open_memory_worker(
            dispatcher, "w1", ["echo"], max_concurrency=4
        ) as worker:
            nursery.start_soon(worker.serve, echo)
            argv = [
                str(Path(sys.executable).parent / "schemathesis"),
                "--config-file", str(ROOT / "tests" / "http" / "schemathesis.toml"),
                "run", f"{dispatcher.http_url}/openapi.json",
                "--checks", "all", "--max-examples", "10", "--seed", "1",
                "--generation-database", "none", "--workers", "1", "--no-color",
                "--header", f"Authorization: Bearer {token}",
            ]  # fmt: skip
            done = await trio.run_process(  # its cache of crashes goes to its cwd
                argv,
                check=False,
                capture_stdout=True,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
            output = done.stdout.decode()
            assert done.returncode == 0, output  # any failure or error is non-zero
            assert re.search(r"\d+ generated, \d+ passed", output), output
            nursery.cancel_scope.cancel()


# -- failures behind the API ----------------------------------------------------------


class BrokenStore(MemoryStore):
    """A store whose listing fails as a full disk would, and whose count has a bug."""

    async def tasks(self, **filters: Any) -> list[TaskRecord]:
        raise StoreError("task store /var/lib/tasks.db: database or disk is full")

    async def count(self, *, status: TaskStatus | None = None) -> int:
        raise RuntimeError("a bug")


async def test_a_failing_store_is_503_and_a_bug_is_500_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_api(store=BrokenStore()) as (_, client):
        response = await client.get("/tasks")
        assert_error(response, 503, "STORE_UNAVAILABLE", "database or disk is full")
        with caplog.at_level(logging.ERROR, "trio_pipe.http"):
            response = await client.get("/metrics")
        assert_error(response, 500, "INTERNAL_ERROR", "RuntimeError('a bug')")
        assert "GET /metrics failed" in caplog.text
        assert (await client.get("/stats")).status_code == 200


async def test_an_http_auth_that_is_not_an_api_auth_is_refused() -> None:
    with pytest.raises(TypeError, match="http_auth"):
        async with trio_pipe.open_dispatcher(
            port=None, http=("127.0.0.1", 0), http_auth="s"
        ):
            pass  # pragma: no cover


# -- the token command ------------------------------------------------------------------


def test_the_token_command_makes_api_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(new_secret(), encoding="utf-8")
    argv = ["token", "create", "--secret-file", str(secret), "--expires", "1h"]
    assert main([*argv, "--api", "read", "--subject", "grafana", "--id", "g-1"]) == 0
    out, err = capsys.readouterr()
    claims = ApiAuth.from_file(secret).authenticate(
        {"Authorization": f"Bearer {out.strip()}"}
    )
    assert (claims.scope, claims.subject, claims.token_id) == (
        ApiScope.READ,
        "grafana",
        "g-1",
    )
    assert err.startswith("token g-1, expires ")
    assert main([*argv, "--api", "admin", "--types", "scan"]) == 1
    assert (
        "--types, --tags and --worker-id are for worker tokens" in capsys.readouterr().err
    )


async def test_without_the_http_extra_open_dispatcher_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "trio_pipe.http", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'trio-pipe\[http\]'"):
        async with trio_pipe.open_dispatcher(port=None, http=("127.0.0.1", 0)):
            pass  # pragma: no cover
