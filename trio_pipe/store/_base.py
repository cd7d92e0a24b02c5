"""The interface between the scheduler and where tasks are kept."""

from __future__ import annotations

import abc
import uuid
from typing import ClassVar

import trio

from ..protocol import TaskResult, TaskStatus
from ._records import CachedResult, TaskRecord

__all__ = ["Store"]


class Store(abc.ABC):
    """Where a dispatcher keeps its tasks: every submission, attempt and outcome.

    The scheduler never waits on a store. It reports each change as it makes it
    (:meth:`dispatched`, :meth:`ended`); a durable store writes those behind, many per
    transaction. The operations a caller waits for -- :meth:`add` above all, which
    ``submit()`` returns after -- are ``async``.

    A store is opened by the dispatcher that uses it, in its nursery
    (``await nursery.start(store.run)``), and belongs to that one dispatcher while it
    runs. Every implementation passes the same contract suite (tests/test_store_*.py).
    """

    #: Whether what the store accepted survives the process (``submit()`` then waits
    #: for the write).
    durable: ClassVar[bool]

    #: The epoch of the dispatcher that opened the store: it grows with every opening,
    #: and goes out with every dispatch as half of the fencing token.
    epoch: int = 0

    @abc.abstractmethod
    async def run(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Open the store and take a new epoch; apply :func:`recover` to every task
        that was on a worker when the last dispatcher stopped; report that it is
        open with ``task_status.started``; then do the store's background work
        (writes, pruning) until cancelled, write what is pending and close.

        Raises :class:`StoreError` if it cannot be opened."""

    @abc.abstractmethod
    async def unfinished(
        self, after: object | None, limit: int
    ) -> tuple[list[TaskRecord], object | None]:
        """A page of the tasks waiting for a worker, for a dispatcher to resume:
        highest priority first, then in submission order. *after* is the cursor the
        previous page returned (``None``: the first page). A task whose deadline
        passed is ended ``TimedOut`` here instead (:func:`recover`). Returns the page
        and the next page's cursor, ``None`` after the last."""

    # -- changes the scheduler reports (never wait) ----------------------------------

    @abc.abstractmethod
    def dispatched(
        self, task_id: uuid.UUID, attempt: int, worker_id: str, at: float
    ) -> None:
        """Attempt number *attempt* of a waiting task went to *worker_id*."""

    @abc.abstractmethod
    def ended(
        self,
        task_id: uuid.UUID,
        attempt: int | None,
        result: TaskResult,
        at: float,
        *,
        final: bool,
    ) -> None:
        """An attempt ended with *result* (``attempt=None``: the task ended without
        one live, e.g. cancelled while queued). *final*: the task ended with it;
        otherwise the task waits for a retry. A change for an attempt that is not the
        task's live one changes nothing (fencing)."""

    # -- what callers wait for -------------------------------------------------------

    @abc.abstractmethod
    async def add(self, record: TaskRecord) -> TaskRecord:
        """Keep a new task; return the stored record -- *record*, or the task that
        already holds its idempotency key. Durable (for a durable store) on return.
        Raises :class:`StoreError` if it cannot be written."""

    def add_nowait(self, record: TaskRecord) -> TaskRecord:
        """:meth:`add` without waiting, for a store that is not durable."""
        raise trio.WouldBlock

    @abc.abstractmethod
    async def get(self, task_id: uuid.UUID) -> TaskRecord | None: ...

    @abc.abstractmethod
    async def tasks(
        self,
        *,
        status: TaskStatus | None = None,
        task_type: str | None = None,
        submitted_after: float | None = None,
        submitted_before: float | None = None,
        limit: int = 100,
        after: uuid.UUID | None = None,
    ) -> list[TaskRecord]:
        """Up to *limit* tasks in the order they were submitted, starting after the
        task *after* (the last of the previous page), filtered by status, type and
        submission time (``submitted_after <= submitted_at < submitted_before``)."""

    @abc.abstractmethod
    async def count(self, *, status: TaskStatus | None = None) -> int:
        """How many tasks the store holds (with *status*, if given)."""

    @abc.abstractmethod
    async def requeue(self, task_id: uuid.UUID, at: float) -> TaskRecord:
        """Send a task that ended without completing round again: a fresh deadline
        and retry budget; its earlier attempts stay in its history. Raises
        :class:`TaskNotFound`, or ``ValueError`` if the task did not end that way."""

    @abc.abstractmethod
    async def purge(
        self,
        *,
        task_ids: frozenset[uuid.UUID] | None = None,
        status: TaskStatus | None = None,
        finished_before: float | None = None,
    ) -> int:
        """Delete finished tasks matching every filter given; return how many. A task
        that is not finished is never deleted."""

    @abc.abstractmethod
    async def prune(self, now: float) -> int:
        """Delete the finished tasks and the cached results that retention no longer
        keeps; return how many (of both)."""

    # -- cached results (workflow steps with ``cache=True``) ------------------------

    @abc.abstractmethod
    async def cache_get(self, key: str) -> CachedResult | None:
        """The result cached under *key*, if retention still keeps it."""

    @abc.abstractmethod
    async def cache_put(self, entry: CachedResult) -> None:
        """Keep *entry* under its key, replacing what was there. Durable (for a
        durable store) on return. Raises :class:`StoreError` if it cannot be
        written."""
