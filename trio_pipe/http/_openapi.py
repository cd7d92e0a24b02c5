"""The OpenAPI 3.1 document of the HTTP API, served at ``/openapi.json`` and committed
as docs/openapi.json (a test holds the two equal)."""

from __future__ import annotations

from typing import Any, Final

from .._version import __version__

__all__ = ["MAX_INT", "MAX_NAME", "MAX_PAGE", "MAX_WAIT", "openapi_document"]

# The bounds the API holds requests to (``_app`` checks them; the document states them).
#: The most tasks one page lists.
MAX_PAGE: Final = 1000
#: The longest one wait request may wait, in seconds.
MAX_WAIT: Final = 300
#: The longest task type, idempotency key and trace id accepted.
MAX_NAME: Final = 256
#: The highest ``timeoutMs`` and ``maxRetries`` accepted (the SDKs' 32-bit int).
MAX_INT: Final = 2**31 - 1

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(
    properties: dict[str, Any], *, optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


_ANY: Final[dict[str, Any]] = {}
_TIME: Final = {"type": "string", "format": "date-time"}
_NAME: Final = {"type": "string", "minLength": 1, "maxLength": MAX_NAME}
_STATUS: Final = {
    "type": "string",
    "enum": [
        "Pending",
        "Dispatched",
        "Running",
        "Completed",
        "Failed",
        "TimedOut",
        "Cancelled",
    ],
}
_PRIORITY: Final = {"type": "string", "enum": ["Low", "Normal", "High", "Critical"]}
_COUNT: Final = {"type": "integer", "minimum": 0}

_SCHEMAS: Final[dict[str, Any]] = {
    "Error": _object(
        {
            "error": {"type": "string", "description": "A code, e.g. TASK_NOT_FOUND."},
            "message": {"type": "string", "description": "What went wrong, for people."},
        }
    ),
    "TaskError": _object(
        {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "retryable": {"type": "boolean"},
        }
    ),
    "TaskResult": _object(
        {
            "status": _STATUS,
            "payload": _ANY,
            "error": _nullable(_ref("TaskError")),
            "durationMs": _COUNT,
            "workerId": {"type": "string"},
        }
    ),
    "Attempt": _object(
        {
            "number": _COUNT,
            "workerId": {"type": "string"},
            "status": _nullable(_STATUS),
            "error": _nullable(_ref("TaskError")),
            "startedAt": _TIME,
            "endedAt": _nullable(_TIME),
        }
    ),
    "Task": _object(
        {
            "id": {"type": "string", "format": "uuid"},
            "taskType": {"type": "string"},
            "payload": _ANY,
            "status": _STATUS,
            "done": {"type": "boolean", "description": "Whether the status is terminal."},
            "priority": _PRIORITY,
            "timeoutMs": _COUNT,
            "maxRetries": _COUNT,
            "traceId": _nullable({"type": "string"}),
            "idempotencyKey": _nullable({"type": "string"}),
            "createdAt": _TIME,
            "workerId": _nullable({"type": "string"}),
            "attempts": {"type": "array", "items": _ref("Attempt")},
            "result": _nullable(_ref("TaskResult")),
        }
    ),
    "NewTask": _object(
        {
            "taskType": _NAME,
            "payload": _ANY,
            "priority": {**_PRIORITY, "default": "Normal"},
            "timeoutMs": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_INT,
                "default": 300000,
            },
            "maxRetries": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_INT,
                "default": 3,
            },
            "traceId": _nullable(_NAME),
            "idempotencyKey": _nullable(
                {
                    **_NAME,
                    "description": "A second submission with the same key returns the "
                    "task the first one made, for as long as the store keeps it.",
                }
            ),
        },
        optional=(
            "payload",
            "priority",
            "timeoutMs",
            "maxRetries",
            "traceId",
            "idempotencyKey",
        ),
    ),
    "TaskPage": _object(
        {
            "tasks": {"type": "array", "items": _ref("Task")},
            "next": _nullable({"type": "string", "format": "uuid"}),
        }
    ),
    "Worker": _object(
        {
            "workerId": {"type": "string"},
            "state": {"type": "string", "enum": ["active", "draining", "dead"]},
            "transport": {"type": "string"},
            "peer": {"type": "string"},
            "language": {"type": "string"},
            "supportedTasks": {"type": "array", "items": {"type": "string"}},
            "tags": {"type": "array", "items": {"type": "string"}},
            "maxConcurrency": _COUNT,
            "activeTasks": _COUNT,
            "throttled": {"type": "boolean"},
            "connectedAt": _TIME,
            "lastSeenAt": _TIME,
            "heartbeatAgeSeconds": {"type": "number", "minimum": 0},
            "closeReason": _nullable({"type": "string"}),
        }
    ),
    "WorkerList": _object({"workers": {"type": "array", "items": _ref("Worker")}}),
    "Purge": _object(
        {
            "ids": _nullable(
                {"type": "array", "items": {"type": "string", "format": "uuid"}}
            ),
            "olderThanSeconds": _nullable({"type": "number", "minimum": 0}),
        },
        optional=("ids", "olderThanSeconds"),
    ),
    "Purged": _object({"purged": _COUNT}),
    "Stats": _object(
        {
            "workers": _object(
                {name: _COUNT for name in ("total", "active", "busy", "draining", "dead")}
            ),
            "capacity": _object({"total": _COUNT, "used": _COUNT}),
            "queued": _COUNT,
            "queuedByPriority": _object(
                {name: _COUNT for name in ("Low", "Normal", "High", "Critical")}
            ),
            "inFlight": _COUNT,
            "completed": _COUNT,
            "failed": _COUNT,
            "retried": _COUNT,
            "staleResults": _COUNT,
            "rejected": _COUNT,
        }
    ),
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _ok(schema: str, description: str = "OK") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema)}},
    }


_AUTH_ERRORS: Final = {
    "401": _error("No valid API token (only when the API has authentication)."),
    "403": _error("The token's scope does not allow this."),
}
_UNAVAILABLE: Final = {"503": _error("The dispatcher is closing, or its store failed.")}


def _operation(
    summary: str,
    responses: dict[str, Any],
    *,
    scope: str,
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
    body_required: bool = True,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": [scope]}, {}],
        "parameters": parameters or [],
        "responses": {**responses, **_AUTH_ERRORS, **_UNAVAILABLE},
    }
    if body is not None:
        operation["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_TASK_ID: Final = _path("task_id", {"type": "string", "format": "uuid"})
_WORKER_ID: Final = _path("worker_id", {"type": "string", "minLength": 1})
_LIMIT: Final = _query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100},
    "The most tasks in the page.",
)
_AFTER: Final = _query(
    "after",
    {"type": "string", "format": "uuid"},
    "The `next` of the previous page: list the tasks submitted after this one.",
)
_BAD: Final = {"400": _error("The request is invalid: the message says how.")}
_NO_TASK: Final = {"404": _error("No such task (or the store no longer keeps it).")}

_PATHS: Final[dict[str, Any]] = {
    "/tasks": {
        "post": _operation(
            "Submit a task",
            {
                "201": _ok("Task", "Submitted."),
                "200": _ok("Task", "Its idempotency key named an existing task: that one."),
                **_BAD,
                "413": _error("The body is too large."),
            },
            scope="admin",
            body="NewTask",
        ),
        "get": _operation(
            "List tasks, in submission order, a page at a time",
            {"200": _ok("TaskPage"), **_BAD, "404": _error("No task `after` names.")},
            scope="read",
            parameters=[
                _query("status", _STATUS, "Only tasks with this status."),
                _query("type", {"type": "string"}, "Only tasks of this type."),
                _query("submittedAfter", _TIME, "Only tasks submitted at or after this."),
                _query("submittedBefore", _TIME, "Only tasks submitted before this."),
                _LIMIT,
                _AFTER,
            ],
        ),
    },
    "/tasks/{task_id}": {
        "get": _operation(
            "Get a task",
            {"200": _ok("Task"), **_BAD, **_NO_TASK},
            scope="read",
            parameters=[_TASK_ID],
        ),
    },
    "/tasks/{task_id}/wait": {
        "get": _operation(
            "Wait for a task to end (long poll); `done` says whether it has",
            {"200": _ok("Task"), **_BAD, **_NO_TASK},
            scope="read",
            parameters=[
                _TASK_ID,
                _query(
                    "timeout",
                    {"type": "number", "minimum": 0, "maximum": MAX_WAIT, "default": 30},
                    "The longest to wait, in seconds.",
                ),
            ],
        ),
    },
    "/tasks/{task_id}/cancel": {
        "post": _operation(
            "Cancel a task: dequeue it, or kill it on its worker",
            {
                "200": _ok("Task"),
                **_BAD,
                **_NO_TASK,
                "409": _error("The task has already ended."),
            },
            scope="admin",
            parameters=[_TASK_ID],
        ),
    },
    "/workers": {
        "get": _operation(
            "List workers: connected ones, then remembered dead ones",
            {"200": _ok("WorkerList")},
            scope="read",
        ),
    },
    "/workers/{worker_id}/drain": {
        "post": _operation(
            "Drain a worker: no new tasks; its running ones finish",
            {"200": _ok("Worker"), "404": _error("No such connected worker.")},
            scope="admin",
            parameters=[_WORKER_ID],
        ),
    },
    "/workers/{worker_id}": {
        "delete": _operation(
            "Remove a worker now; its unfinished tasks are retried elsewhere",
            {"204": {"description": "Removed."}, "404": _error("No such worker.")},
            scope="admin",
            parameters=[_WORKER_ID],
        ),
    },
    "/dead-letters": {
        "get": _operation(
            "List dead letters (tasks that ended Failed), a page at a time",
            {"200": _ok("TaskPage"), **_BAD, "404": _error("No task `after` names.")},
            scope="read",
            parameters=[_LIMIT, _AFTER],
        ),
    },
    "/dead-letters/{task_id}/requeue": {
        "post": _operation(
            "Send a task that ended without completing round again",
            {
                "200": _ok("Task"),
                **_BAD,
                **_NO_TASK,
                "409": _error("The task is unfinished, or completed."),
            },
            scope="admin",
            parameters=[_TASK_ID],
        ),
    },
    "/dead-letters/purge": {
        "post": _operation(
            "Delete dead letters: all, those listed, or those older than a bound",
            {"200": _ok("Purged"), **_BAD},
            scope="admin",
            body="Purge",
            body_required=False,
        ),
    },
    "/stats": {
        "get": _operation("Pool statistics", {"200": _ok("Stats")}, scope="read"),
    },
    "/metrics": {
        "get": _operation(
            "Prometheus metrics (docs/metrics.md)",
            {
                "200": {
                    "description": "The Prometheus text format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
            scope="read",
        ),
    },
}


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trio_pipe dispatcher",
            "version": __version__,
            "description": "Submit, inspect and manage the tasks and workers of one "
            "dispatcher (docs/http.md).",
        },
        "paths": _PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An API token (trio_pipe.auth.ApiAuth): scope read "
                    "or admin.",
                }
            },
        },
    }
