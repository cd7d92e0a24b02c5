"""Prometheus metrics of one dispatcher (``GET /metrics``; docs/metrics.md names them).

Each dispatcher has a registry of its own, so two dispatchers in one process never
clash. Counters and histograms follow the dispatcher's event stream, read by one
task (:meth:`DispatcherMetrics.run`); the dispatcher never waits for it -- if it falls
behind, events are dropped and counted (``trio_pipe_metrics_events_dropped_total``).
Gauges (queue depth, workers, heartbeat age, dead letters) are computed when scraped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Final

import trio
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..dispatch import (
    Dispatcher,
    EventsDropped,
    TaskEvent,
    TaskEventKind,
    WorkerState,
)
from ..protocol import TaskStatus

__all__ = ["DispatcherMetrics"]

#: Seconds: from a millisecond to an hour.
BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
#: How far the metrics task may fall behind the dispatcher before events are dropped.
EVENT_BUFFER: Final = 65_536

_ENDED: Final = frozenset(
    {
        TaskEventKind.COMPLETED,
        TaskEventKind.FAILED,
        TaskEventKind.TIMED_OUT,
        TaskEventKind.CANCELLED,
    }
)


class DispatcherMetrics:
    """The metrics of *dispatcher*, in :attr:`registry`; :meth:`run` follows its
    events, at most *buffer* behind."""

    def __init__(self, dispatcher: Dispatcher, *, buffer: int = EVENT_BUFFER) -> None:
        self._dispatcher = dispatcher
        self._buffer = buffer
        self.registry = registry = CollectorRegistry()
        self._waited = Histogram(
            "trio_pipe_task_queue_seconds",
            "Time from submission (or requeue) to the task's first dispatch.",
            ["task_type"], buckets=BUCKETS, registry=registry,
        )  # fmt: skip
        self._ran = Histogram(
            "trio_pipe_task_run_seconds",
            "Time from dispatch to the end of the try (a result, a failure, a timeout).",
            ["task_type"], buckets=BUCKETS, registry=registry,
        )  # fmt: skip
        self._outcomes = Counter(
            "trio_pipe_task_outcomes",
            "Tasks ended, by final status and error code (empty when none).",
            ["task_type", "status", "code"], registry=registry,
        )  # fmt: skip
        self._retries = Counter(
            "trio_pipe_task_retries", "Tries that failed and will be retried.",
            ["task_type"], registry=registry,
        )  # fmt: skip
        self._reassignments = Counter(
            "trio_pipe_task_reassignments",
            "Tries dispatched to another worker than the task's previous try.",
            ["task_type"], registry=registry,
        )  # fmt: skip
        self._dropped = Counter(
            "trio_pipe_metrics_events_dropped",
            "Events the metrics fell too far behind to see (tries then go unmeasured).",
            registry=registry,
        )  # fmt: skip
        self._gauges = _Gauges(dispatcher)
        registry.register(self._gauges)
        #: Per unfinished task: when it was queued (until first dispatched), when its
        #: live try started, and the worker of its latest try.
        self._queued_at: dict[uuid.UUID, float] = {}
        self._started_at: dict[uuid.UUID, float] = {}
        self._worker: dict[uuid.UUID, str] = {}

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Follow the dispatcher's events until it closes (or this is cancelled)."""
        async with self._dispatcher.events(buffer=self._buffer) as events:
            task_status.started()
            async for event in events:
                if isinstance(event, TaskEvent):
                    self._task_event(event)
                elif isinstance(event, EventsDropped):
                    self._dropped.inc(event.count)
                    # What was missed may have ended any of them: start afresh.
                    self._queued_at.clear()
                    self._started_at.clear()
                    self._worker.clear()

    def _task_event(self, event: TaskEvent) -> None:
        kind, task_id, task_type = event.kind, event.task_id, event.task_type
        if kind is TaskEventKind.PENDING:
            if task_id not in self._worker:  # not a retry: it was never dispatched
                self._queued_at.setdefault(task_id, event.time)
        elif kind is TaskEventKind.DISPATCHED:
            queued_at = self._queued_at.pop(task_id, None)
            if queued_at is not None:
                self._waited.labels(task_type).observe(event.time - queued_at)
            self._started_at[task_id] = event.time
            worker_id = event.worker_id or ""
            if self._worker.get(task_id, worker_id) != worker_id:
                self._reassignments.labels(task_type).inc()
            self._worker[task_id] = worker_id
        elif kind is TaskEventKind.RETRYING:
            self._retries.labels(task_type).inc()
            self._try_ended(event)
        elif kind in _ENDED:
            self._try_ended(event)
            self._queued_at.pop(task_id, None)
            self._worker.pop(task_id, None)
            code = "" if event.error is None else event.error.code
            self._outcomes.labels(task_type, kind.value, code).inc()

    def _try_ended(self, event: TaskEvent) -> None:
        started_at = self._started_at.pop(event.task_id, None)
        if started_at is not None:
            self._ran.labels(event.task_type).observe(event.time - started_at)

    async def render(self) -> bytes:
        """The metrics in Prometheus' text format, gauges computed now."""
        store = self._dispatcher.store
        self._gauges.dead_letters = await store.count(status=TaskStatus.FAILED)
        return generate_latest(self.registry)


class _Gauges(Collector):
    """What is true at scrape time, read from the dispatcher then."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self.dead_letters = 0  # set by DispatcherMetrics.render, which may wait

    def collect(self) -> Iterator[Metric]:
        dispatcher = self._dispatcher
        depth = GaugeMetricFamily(
            "trio_pipe_queue_depth",
            "Tasks waiting for a worker.",
            labels=["task_type", "priority"],
        )
        for (task_type, priority), count in sorted(dispatcher.queued_by_type().items()):
            depth.add_metric([task_type, priority.wire_name], count)
        yield depth
        workers = dispatcher.workers()
        by_state = GaugeMetricFamily(
            "trio_pipe_workers", "Workers by state.", labels=["state"]
        )
        for state in WorkerState:
            by_state.add_metric([state.value], sum(w.state is state for w in workers))
        yield by_state
        age = GaugeMetricFamily(
            "trio_pipe_worker_heartbeat_age_seconds",
            "Seconds since a connected worker was last heard from.",
            labels=["worker_id"],
        )
        now = trio.current_time()
        for worker in workers:
            if worker.state is not WorkerState.DEAD:
                age.add_metric([worker.worker_id], max(0.0, now - worker.last_seen))
        yield age
        yield GaugeMetricFamily(
            "trio_pipe_dead_letters",
            "Tasks that ended Failed, kept in the store.",
            value=self.dead_letters,
        )
