"""``trio-pipe tasks``: a dispatcher's task store from the command line.

:mod:`trio_pipe.cli` declares the arguments; this module opens the store and runs the
action, over the store's public API. It is imported only by the ``tasks`` command, so
that no other command loads the store (and ``sqlite3``).

``list`` and ``show`` open the store read-only: no lock, so they work beside the
dispatcher that has it open. ``requeue`` and ``purge`` open it as a dispatcher does,
after a read-only look has shown that the file is a task store (opening a file for
writing would otherwise give any SQLite database, or an empty file, the store's
tables).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio

from ._errors import StoreError, TaskNotFound
from ._table import aligned
from .cli import UsageError
from .protocol import TaskError, TaskStatus, converter
from .store import AttemptRecord, SqliteStore, Store, TaskRecord, store_from_url

__all__ = ["CommandFailed", "list_tasks", "purge_tasks", "requeue_tasks", "show_task"]

T = TypeVar("T")

_COUNT_PAGE = 500  # tasks per read when purge --dry-run counts
_NONE = "-"


class CommandFailed(Exception):
    """The command could not do what was asked; the message says why (exit 1)."""


# -- opening the store --------------------------------------------------------------


def _store(url: str, *, readonly: bool) -> Store:
    """The store *url* names, checked to be one this process can open: a memory store
    lives in its dispatcher's process only, and a file that does not exist is not
    created."""
    if urlsplit(url).scheme == "memory":
        raise UsageError(
            "--store: a memory:// store lives inside its dispatcher's process, where "
            "no command can reach it; give the dispatcher a sqlite:/// store to inspect"
        )
    try:
        store = store_from_url(url, readonly=readonly)
    except ValueError as exc:
        raise UsageError(f"--store: {exc}") from None
    if isinstance(store, SqliteStore):
        if not store.path.exists():
            raise CommandFailed(f"no task store at {store.path}: no such file")
        if not store.path.is_file():
            raise CommandFailed(f"no task store at {store.path}: not a file")
    return store


async def _on_store(store: Store, action: Callable[[Store], Awaitable[T]]) -> T:
    """Open *store*, run *action* on it, and close it; what the store raises comes
    out as :class:`CommandFailed`."""
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(store.run)
            try:
                return await action(store)
            finally:
                nursery.cancel_scope.cancel()
        except (StoreError, TaskNotFound) as exc:
            failure = exc
    raise CommandFailed(str(failure)) from failure


async def _on_writable_store(url: str, action: Callable[[Store], Awaitable[T]]) -> T:
    """:func:`_on_store` with the store opened for writing, once a read-only look has
    found a task store in the file."""
    await _on_store(_store(url, readonly=True), lambda store: store.tasks(limit=1))
    return await _on_store(_store(url, readonly=False), action)


# -- list ---------------------------------------------------------------------------


def list_tasks(
    url: str,
    *,
    status: TaskStatus | None,
    task_type: str | None,
    limit: int,
    after: uuid.UUID | None,
    as_json: bool,
) -> int:
    """Print a page of tasks: a table, then the command for the next page if there
    is one; or a JSON list."""
    records = trio.run(
        _on_store,
        _store(url, readonly=True),
        lambda store: store.tasks(
            status=status, task_type=task_type, limit=limit + 1, after=after
        ),
    )
    page = records[:limit]
    if as_json:
        print(json.dumps([record_json(record) for record in page], indent=2))
        return 0
    if not page:
        print("no tasks")
        return 0
    rows = [("id", "type", "status", "attempts", "submitted", "finished", "error")]
    for record in page:
        error = last_error(record)
        rows.append(
            (
                str(record.id),
                record.task.task_type,
                record.status.value,
                str(len(record.attempts)),
                _local(record.submitted_at),
                _local(record.finished_at),
                _NONE if error is None else error.code,
            )
        )
    print("\n".join(aligned(rows)))
    if len(records) > limit:
        command = ["trio-pipe", "tasks", "list", "--store", url]
        if status is not None:
            command += ["--status", status.value]
        if task_type is not None:
            command += ["--type", task_type]
        command += ["--limit", str(limit), "--after", str(page[-1].id)]
        print(f"next page: {shlex.join(command)}")
    return 0


# -- show ---------------------------------------------------------------------------


def show_task(url: str, task_id: uuid.UUID, *, as_json: bool) -> int:
    """Print one task: every field, every attempt, its payload and its result."""
    record = trio.run(
        _on_store, _store(url, readonly=True), lambda store: store.get(task_id)
    )
    if record is None:
        raise CommandFailed(f"no task {task_id}")
    print(json.dumps(record_json(record), indent=2) if as_json else describe(record))
    return 0


def describe(record: TaskRecord) -> str:
    """*record* for a person to read (times local)."""
    metadata = record.task.metadata
    attempts = str(len(record.attempts))
    if record.counted_from:
        attempts += f" ({record.tries} since it was last requeued)"
    error = last_error(record)
    fields = [
        ("id", str(record.id)),
        ("type", record.task.task_type),
        ("status", record.status.value),
        ("submitted", _local(record.submitted_at)),
        ("updated", _local(record.updated_at)),
        ("finished", _local(record.finished_at)),
        ("deadline", _local(record.deadline)),
        ("created", _local(metadata.created_at.timestamp())),
        ("priority", metadata.priority.wire_name),
        ("timeout", f"{metadata.timeout_ms} ms"),
        ("max retries", str(metadata.max_retries)),
        ("retry count", str(metadata.retry_count)),
        ("trace id", metadata.trace_id or _NONE),
        ("idempotency key", metadata.idempotency_key or _NONE),
        ("placement", record.placement or "any worker"),
        ("attempts", attempts),
        ("error", _NONE if error is None else _error_text(error)),
    ]
    lines = aligned([(f"{name}:", value) for name, value in fields])
    if record.attempts:
        lines.append("")
        lines.extend(aligned(_attempt_rows(record.attempts), indent="  "))
    lines += ["", "payload:"]
    if record.status is TaskStatus.COMPLETED and record.task.payload is None:
        lines.append("  (not kept once the task completed)")
    else:
        lines.append(_indented_json(record.task.payload))
    lines += ["", "result:"]
    if record.result is None:
        lines.append(f"  {_NONE}")
    else:
        lines.append(_indented_json(converter.unstructure(record.result)))
    return "\n".join(lines)


def _attempt_rows(attempts: Iterable[AttemptRecord]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        ("attempt", "epoch", "worker", "started", "ended", "status", "error")
    ]
    for attempt in attempts:
        rows.append(
            (
                str(attempt.number),
                str(attempt.epoch),
                attempt.worker_id,
                _local(attempt.started_at),
                _local(attempt.ended_at),
                "(running)" if attempt.status is None else attempt.status.value,
                _NONE if attempt.error is None else _error_text(attempt.error),
            )
        )
    return rows


def _error_text(error: TaskError) -> str:
    retry = "retryable" if error.retryable else "not retryable"
    return f"{error.code}: {error.message} ({retry})"


def _indented_json(value: Any) -> str:
    return "\n".join(f"  {line}" for line in json.dumps(value, indent=2).splitlines())


# -- requeue ------------------------------------------------------------------------


def requeue_tasks(url: str, task_ids: Sequence[uuid.UUID]) -> int:
    """Requeue each task and print one line per task (on stderr for those that could
    not be requeued); 1 if any could not."""
    outcomes = trio.run(
        _on_writable_store,
        url,
        partial(_requeue_each, dict.fromkeys(task_ids)),  # each once, in order
    )
    for requeued, line in outcomes:
        if requeued:
            print(line)
        else:
            print(f"trio-pipe tasks requeue: {line}", file=sys.stderr)
    return 0 if all(requeued for requeued, _ in outcomes) else 1


async def _requeue_each(
    task_ids: Iterable[uuid.UUID], store: Store
) -> list[tuple[bool, str]]:
    """(requeued, what happened) for each task."""
    outcomes = []
    for task_id in task_ids:
        before = await store.get(task_id)
        try:
            if before is None:
                raise TaskNotFound(f"no task {task_id}")
            await store.requeue(task_id, time.time())
        except (TaskNotFound, ValueError) as exc:
            outcomes.append((False, str(exc)))
        else:
            outcomes.append((True, f"requeued {task_id} (it was {before.status.value})"))
    return outcomes


# -- purge --------------------------------------------------------------------------


def purge_tasks(
    url: str,
    *,
    task_ids: Sequence[uuid.UUID] | None,
    status: TaskStatus | None,
    older_than: float | None,
    dry_run: bool,
) -> int:
    """Delete the finished tasks that match every filter given (or, with *dry_run*,
    count them) and print how many."""
    chosen = None if task_ids is None else frozenset(task_ids)
    before = None if older_than is None else time.time() - older_than
    if dry_run:
        count = trio.run(
            _on_store,
            _store(url, readonly=True),
            partial(_count_purgeable, chosen, status, before),
        )
        print(f"would delete {_tasks(count)} (dry run)")
    else:
        count = trio.run(
            _on_writable_store,
            url,
            lambda store: store.purge(
                task_ids=chosen, status=status, finished_before=before
            ),
        )
        print(f"deleted {_tasks(count)}")
    return 0


async def _count_purgeable(
    task_ids: frozenset[uuid.UUID] | None,
    status: TaskStatus | None,
    before: float | None,
    store: Store,
) -> int:
    """How many tasks ``purge`` would delete, by reading them as ``list`` does."""

    def purgeable(record: TaskRecord | None) -> bool:
        return (
            record is not None
            and record.finished_at is not None
            and (status is None or record.status is status)
            and (before is None or record.finished_at < before)
        )

    if task_ids is not None:
        return sum([purgeable(await store.get(task_id)) for task_id in task_ids])
    count = 0
    after = None
    while page := await store.tasks(status=status, limit=_COUNT_PAGE, after=after):
        count += sum(map(purgeable, page))
        after = page[-1].id
    return count


def _tasks(count: int) -> str:
    return f"{count} task" if count == 1 else f"{count} tasks"


# -- values -------------------------------------------------------------------------


def last_error(record: TaskRecord) -> TaskError | None:
    """Why the task failed, or why its last failed attempt did."""
    if record.result is not None and record.result.error is not None:
        return record.result.error
    errors = [attempt.error for attempt in record.attempts if attempt.error is not None]
    return errors[-1] if errors else None


def record_json(record: TaskRecord) -> dict[str, Any]:
    """Every field of *record* as JSON values: the task as on the wire, then what the
    store keeps of it, times in RFC 3339 (UTC) as in the protocol."""
    return {
        **converter.unstructure(record.task),
        "status": record.status.value,
        "submittedAt": _rfc3339(record.submitted_at),
        "updatedAt": _rfc3339(record.updated_at),
        "finishedAt": _rfc3339(record.finished_at),
        "deadline": _rfc3339(record.deadline),
        "placement": record.placement,
        "countedFrom": record.counted_from,
        "attempts": [
            {
                "number": attempt.number,
                "epoch": attempt.epoch,
                "workerId": attempt.worker_id,
                "startedAt": _rfc3339(attempt.started_at),
                "endedAt": _rfc3339(attempt.ended_at),
                "status": None if attempt.status is None else attempt.status.value,
                "error": converter.unstructure(attempt.error),
            }
            for attempt in record.attempts
        ],
        "result": converter.unstructure(record.result),
    }


def _rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    text: str = converter.unstructure(datetime.fromtimestamp(seconds, UTC))
    return text


def _local(seconds: float | None) -> str:
    """Local time, to the second (or ``-``)."""
    if seconds is None:
        return _NONE
    return datetime.fromtimestamp(seconds).isoformat(sep=" ", timespec="seconds")
