"""How the HTTP API shows the dispatcher's values as JSON (docs/openapi.json names
each shape): tasks from a live handle or a stored record, workers, pool stats."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import trio

from ..dispatch import Attempt, PoolStats, TaskHandle, WorkerInfo
from ..protocol import Task, TaskError, TaskResult, TaskStatus, converter
from ..store import AttemptRecord, TaskRecord

__all__ = ["record_view", "handle_view", "rfc3339", "stats_view", "worker_view"]


def rfc3339(seconds: float) -> str:
    """Wall-clock *seconds* since the epoch as an RFC 3339 UTC time."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _error(error: TaskError | None) -> dict[str, Any] | None:
    return None if error is None else converter.unstructure(error)


def _result(result: TaskResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "status": result.status.value,
        "payload": result.payload,
        "error": _error(result.error),
        "durationMs": result.duration_ms,
        "workerId": result.worker_id,
    }


def _task(task: Task, status: TaskStatus, worker_id: str | None) -> dict[str, Any]:
    metadata = task.metadata
    return {
        "id": str(task.id),
        "taskType": task.task_type,
        "payload": task.payload,
        "status": status.value,
        "done": status.is_terminal,
        "priority": metadata.priority.wire_name,
        "timeoutMs": metadata.timeout_ms,
        "maxRetries": metadata.max_retries,
        "traceId": metadata.trace_id,
        "idempotencyKey": metadata.idempotency_key,
        "createdAt": converter.unstructure(metadata.created_at),
        "workerId": worker_id,
    }


def _attempt(attempt: Attempt | AttemptRecord) -> dict[str, Any]:
    ended = attempt.ended_at
    return {
        "number": attempt.number,
        "workerId": attempt.worker_id,
        "status": None if attempt.status is None else attempt.status.value,
        "error": _error(attempt.error),
        "startedAt": rfc3339(attempt.started_at),
        "endedAt": None if ended is None else rfc3339(ended),
    }


def handle_view(handle: TaskHandle[Any]) -> dict[str, Any]:
    """A task as its handle sees it now: live, or resolved."""
    view = _task(handle.task, handle.status, handle.worker_id)
    view["attempts"] = [_attempt(a) for a in handle.attempts]
    view["result"] = _result(handle.result_nowait() if handle.done else None)
    return view


def record_view(record: TaskRecord) -> dict[str, Any]:
    """A task as the store keeps it (every attempt, those before a requeue too)."""
    worker_id = record.attempts[-1].worker_id if record.attempts else None
    view = _task(record.task, record.status, worker_id)
    view["attempts"] = [_attempt(a) for a in record.attempts]
    view["result"] = _result(record.result)
    return view


def worker_view(info: WorkerInfo) -> dict[str, Any]:
    now, wall = trio.current_time(), time.time()
    return {
        "workerId": info.worker_id,
        "state": info.state.value,
        "transport": info.transport,
        "peer": info.peer,
        "language": info.language,
        "supportedTasks": list(info.supported_tasks),
        "tags": list(info.tags),
        "maxConcurrency": info.max_concurrency,
        "activeTasks": info.active_tasks,
        "throttled": info.throttled,
        "connectedAt": rfc3339(wall - (now - info.connected_at)),
        "lastSeenAt": rfc3339(wall - (now - info.last_seen)),
        "heartbeatAgeSeconds": max(0.0, now - info.last_seen),
        "closeReason": info.close_reason,
    }


def stats_view(stats: PoolStats) -> dict[str, Any]:
    return {
        "workers": {
            "total": stats.total,
            "active": stats.active,
            "busy": stats.busy,
            "draining": stats.draining,
            "dead": stats.dead,
        },
        "capacity": {"total": stats.total_capacity, "used": stats.used_capacity},
        "queued": stats.queued,
        "queuedByPriority": {p.wire_name: n for p, n in stats.queued_by_priority.items()},
        "inFlight": stats.in_flight,
        "completed": stats.completed,
        "failed": stats.failed,
        "retried": stats.retried,
        "staleResults": stats.stale_results,
        "rejected": stats.rejected,
    }
