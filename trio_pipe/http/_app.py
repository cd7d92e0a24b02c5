"""The HTTP API: a Starlette application over one :class:`Dispatcher`'s public API.

Every endpoint answers JSON; every refusal is ``{"error": CODE, "message": text}``
with its status code (docs/http.md lists them). Requests are checked here, against
the same rules docs/openapi.json states, before the dispatcher sees them.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from datetime import datetime
from typing import Any, Final

import orjson
import trio
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._errors import (
    DispatcherClosed,
    StoreError,
    TaskNotFound,
    WorkerNotFound,
)
from ..auth import ApiAuth, ApiScope, AuthenticationFailed
from ..dispatch import Dispatcher
from ..protocol import Priority, Task, TaskStatus, parse_json_value
from ._metrics import DispatcherMetrics
from ._openapi import MAX_INT, MAX_NAME, MAX_PAGE, MAX_WAIT, openapi_document
from ._views import handle_view, record_view, stats_view, worker_view

__all__ = ["ApiError", "create_app"]

log = logging.getLogger("trio_pipe.http")

#: The largest request body accepted, in bytes.
MAX_BODY: Final = 1024 * 1024

_SUBMIT_FIELDS: Final = frozenset(
    {
        "taskType",
        "payload",
        "priority",
        "timeoutMs",
        "maxRetries",
        "traceId",
        "idempotencyKey",
    }
)
_PRIORITIES: Final = {p.wire_name.lower(): p for p in Priority}
_STATUSES: Final = {s.value: s for s in TaskStatus}


class ApiError(Exception):
    """A request refused: *status*, an upper-case *code* and a *message* that says
    what to change."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status, media_type="application/json")


def _problem(error: ApiError, headers: Mapping[str, str] | None = None) -> Response:
    response = _json({"error": error.code, "message": error.message}, error.status)
    if headers:
        response.headers.update(headers)
    return response


# -- reading requests -----------------------------------------------------------------


def _task_id(request: Request) -> uuid.UUID:
    text = request.path_params["task_id"]
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ApiError(
            400, "INVALID_TASK_ID", f"not a task id (a UUID): {text!r}"
        ) from None


def _only(request: Request, allowed: frozenset[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise ApiError(400, "INVALID_QUERY", f"unknown query parameter {unknown[0]!r}")


def _number(
    request: Request, name: str, default: float, low: float, high: float, *, integer: bool
) -> float:
    text = request.query_params.get(name)
    if text is None:
        return default
    kind = "an integer" if integer else "a number"
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise ApiError(
            400,
            "INVALID_QUERY",
            f"{name} must be {kind} from {low:g} to {high:g}, not {text!r}",
        )
    return value


def _time(request: Request, name: str) -> float | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ApiError(
            400,
            "INVALID_QUERY",
            f"{name} must be an RFC 3339 time with its offset "
            f"(2026-12-08T10:00:00Z), not {text!r}",
        )
    return moment.timestamp()


def _cursor(request: Request) -> uuid.UUID | None:
    text = request.query_params.get("after")
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ApiError(
            400, "INVALID_QUERY", f"after must be a task id, not {text!r}"
        ) from None


async def _body(request: Request, *, empty: Any) -> Any:
    """The request's JSON body (*empty* if it has none)."""
    chunks: list[bytes] = []
    size = 0
    async with aclosing(request.stream()) as stream:
        async for chunk in stream:
            size += len(chunk)
            if size > MAX_BODY:
                raise ApiError(413, "BODY_TOO_LARGE", f"the body exceeds {MAX_BODY} bytes")
            chunks.append(chunk)
    data = b"".join(chunks)
    if not data.strip():
        return empty
    try:
        return parse_json_value(data)
    except ValueError as exc:
        raise ApiError(400, "INVALID_JSON", f"the body is not JSON: {exc}") from None


def _text(body: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME:
        raise ApiError(
            400, "INVALID_TASK", f"{name} must be a string of 1 to {MAX_NAME} characters"
        )
    return value


def _count(body: Mapping[str, Any], name: str, default: int, low: int) -> int:
    value = body.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 13.0 is an integer to JSON Schema
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_INT:
        raise ApiError(
            400, "INVALID_TASK", f"{name} must be an integer from {low} to {MAX_INT}"
        )
    return value


def _new_task(body: Any) -> Task:
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_TASK", "the body must be a JSON object (a task)")
    unknown = sorted(set(body) - _SUBMIT_FIELDS)
    if unknown:
        raise ApiError(400, "INVALID_TASK", f"unknown field {unknown[0]!r}")
    task_type = _text(body, "taskType", required=True)
    assert task_type is not None
    priority = body.get("priority", "Normal")
    if not isinstance(priority, str) or priority.lower() not in _PRIORITIES:
        raise ApiError(
            400, "INVALID_TASK", "priority must be one of Low, Normal, High, Critical"
        )
    return Task.new(
        task_type,
        body.get("payload"),
        timeout_ms=_count(body, "timeoutMs", 300_000, 1),
        priority=_PRIORITIES[priority.lower()],
        max_retries=_count(body, "maxRetries", 3, 0),
        trace_id=_text(body, "traceId"),
        idempotency_key=_text(body, "idempotencyKey"),
    )


# -- the application -------------------------------------------------------------------

Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(
    dispatcher: Dispatcher,
    *,
    auth: ApiAuth | None = None,
    metrics: DispatcherMetrics | None = None,
) -> Starlette:
    """The HTTP API over *dispatcher*, as an ASGI application; ``/metrics`` too, given
    *metrics* (whose :meth:`~DispatcherMetrics.run` the caller runs).

    With *auth*, every endpoint but ``/openapi.json`` needs a bearer token: a
    ``read`` one for ``GET``, an ``admin`` one for the rest. Without, every request
    may do everything: serve it on loopback only (``open_dispatcher`` insists).
    """

    def guarded(scope: ApiScope, endpoint: Endpoint) -> Endpoint:
        async def guard(request: Request) -> Response:
            if auth is not None:
                try:
                    claims = auth.authenticate(request.headers)
                except AuthenticationFailed as exc:
                    raise ApiError(401, "UNAUTHORIZED", exc.reason) from None
                if not claims.allows(scope):
                    raise ApiError(
                        403,
                        "FORBIDDEN",
                        f"this needs an {scope.value} token; {claims.subject!r} holds a "
                        f"{claims.scope.value} one",
                    )
            try:
                return await endpoint(request)
            except TaskNotFound as exc:
                raise ApiError(404, "TASK_NOT_FOUND", str(exc)) from None
            except WorkerNotFound as exc:
                raise ApiError(404, "WORKER_NOT_FOUND", str(exc)) from None
            except DispatcherClosed as exc:
                raise ApiError(503, "DISPATCHER_CLOSED", str(exc)) from None
            except StoreError as exc:
                raise ApiError(503, "STORE_UNAVAILABLE", str(exc)) from None

        return guard

    async def submit(request: Request) -> Response:
        task = _new_task(await _body(request, empty=None))
        handle = await dispatcher.submit(task)
        return _json(handle_view(handle), 201 if handle.id == task.id else 200)

    async def get_task(request: Request) -> Response:
        _only(request, frozenset())
        return _json(handle_view(await dispatcher.handle(_task_id(request))))

    async def wait_task(request: Request) -> Response:
        _only(request, frozenset({"timeout"}))
        timeout = _number(request, "timeout", 30.0, 0.0, MAX_WAIT, integer=False)
        handle = await dispatcher.handle(_task_id(request))
        with trio.move_on_after(timeout):
            await handle.result()
        return _json(handle_view(handle))

    async def cancel_task(request: Request) -> Response:
        _only(request, frozenset())
        handle = await dispatcher.handle(_task_id(request))
        if handle.done:
            raise ApiError(
                409,
                "TASK_ENDED",
                f"task {handle.id} has already ended ({handle.status.value})",
            )
        await handle.cancel("cancelled through the HTTP API")
        return _json(handle_view(handle))

    async def list_tasks(request: Request) -> Response:
        _only(
            request,
            frozenset(
                {"status", "type", "submittedAfter", "submittedBefore", "limit", "after"}
            ),
        )
        status_text = request.query_params.get("status")
        status = None if status_text is None else _STATUSES.get(status_text)
        if status_text is not None and status is None:
            raise ApiError(
                400, "INVALID_QUERY", f"status must be one of {', '.join(_STATUSES)}"
            )
        limit = int(_number(request, "limit", 100, 1, MAX_PAGE, integer=True))
        page = await dispatcher.tasks(
            status=status,
            task_type=request.query_params.get("type"),
            submitted_after=_time(request, "submittedAfter"),
            submitted_before=_time(request, "submittedBefore"),
            limit=limit,
            after=_cursor(request),
        )
        return _page(page, limit)

    async def list_workers(request: Request) -> Response:
        _only(request, frozenset())
        return _json({"workers": [worker_view(w) for w in dispatcher.workers()]})

    def _worker(worker_id: str) -> dict[str, Any]:
        for info in dispatcher.workers():
            if info.worker_id == worker_id:
                return worker_view(info)
        raise WorkerNotFound(f"no worker {worker_id!r}")

    async def drain_worker(request: Request) -> Response:
        _only(request, frozenset())
        worker_id = request.path_params["worker_id"]
        dispatcher.drain_worker(worker_id)
        return _json(_worker(worker_id))

    async def remove_worker(request: Request) -> Response:
        _only(request, frozenset())
        dispatcher.remove_worker(request.path_params["worker_id"])
        return Response(status_code=204)

    async def dead_letters(request: Request) -> Response:
        _only(request, frozenset({"limit", "after"}))
        limit = int(_number(request, "limit", 100, 1, MAX_PAGE, integer=True))
        page = await dispatcher.dead_letters(limit=limit, after=_cursor(request))
        return _page(page, limit)

    async def requeue(request: Request) -> Response:
        _only(request, frozenset())
        try:
            handle = await dispatcher.requeue(_task_id(request))
        except ValueError as exc:
            raise ApiError(409, "NOT_REQUEUABLE", str(exc)) from None
        return _json(handle_view(handle))

    async def purge(request: Request) -> Response:
        _only(request, frozenset())
        body = await _body(request, empty={})
        if not isinstance(body, dict) or set(body) - {"ids", "olderThanSeconds"}:
            raise ApiError(
                400, "INVALID_PURGE", "the body may hold only ids and olderThanSeconds"
            )
        ids = body.get("ids")
        if ids is not None:
            try:
                if not isinstance(ids, list):
                    raise TypeError
                ids = [uuid.UUID(i) for i in ids]
            except (TypeError, ValueError, AttributeError):
                raise ApiError(
                    400, "INVALID_PURGE", "ids must be a list of task ids"
                ) from None
        older = body.get("olderThanSeconds")
        if older is not None and (
            isinstance(older, bool)
            or not isinstance(older, int | float)
            or not (math.isfinite(older) and older >= 0)
        ):
            raise ApiError(400, "INVALID_PURGE", "olderThanSeconds must be a number >= 0")
        purged = await dispatcher.purge(ids, older_than=older)
        return _json({"purged": purged})

    async def stats(request: Request) -> Response:
        _only(request, frozenset())
        return _json(stats_view(dispatcher.pool_stats()))

    async def prometheus(request: Request) -> Response:
        _only(request, frozenset())
        assert metrics is not None
        return Response(await metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return _json(openapi_document())

    read, admin = ApiScope.READ, ApiScope.ADMIN
    endpoints: dict[str, dict[str, Endpoint]] = {
        "/openapi.json": {"GET": openapi},
        "/tasks": {"GET": guarded(read, list_tasks), "POST": guarded(admin, submit)},
        "/tasks/{task_id}": {"GET": guarded(read, get_task)},
        "/tasks/{task_id}/wait": {"GET": guarded(read, wait_task)},
        "/tasks/{task_id}/cancel": {"POST": guarded(admin, cancel_task)},
        "/workers": {"GET": guarded(read, list_workers)},
        "/workers/{worker_id}": {"DELETE": guarded(admin, remove_worker)},
        "/workers/{worker_id}/drain": {"POST": guarded(admin, drain_worker)},
        "/dead-letters": {"GET": guarded(read, dead_letters)},
        "/dead-letters/purge": {"POST": guarded(admin, purge)},
        "/dead-letters/{task_id}/requeue": {"POST": guarded(admin, requeue)},
        "/stats": {"GET": guarded(read, stats)},
    }
    if metrics is not None:
        endpoints["/metrics"] = {"GET": guarded(read, prometheus)}
    routes = [
        Route(path, _by_method(methods), methods=list(methods))
        for path, methods in endpoints.items()
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )


def _by_method(endpoints: Mapping[str, Endpoint]) -> Endpoint:
    """One route's endpoint: the one for the request's method (Starlette answers
    405, with ``Allow``, for the others; ``HEAD`` is a ``GET``)."""

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await endpoints[method](request)

    return endpoint


def _page(records: list[Any], limit: int) -> Response:
    return _json(
        {
            "tasks": [record_view(r) for r in records],
            "next": str(records[-1].id) if len(records) == limit else None,
        }
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _problem(exc, headers)


_CODES: Final = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _CODES.get(exc.status_code, "HTTP_ERROR")
    if exc.status_code == 404:
        message = f"no endpoint {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.url.path} does not take {request.method}"
    else:
        message = str(exc.detail)
    return _problem(ApiError(exc.status_code, code, message), exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _problem(ApiError(500, "INTERNAL_ERROR", f"the request failed: {exc!r}"))
