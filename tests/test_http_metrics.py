"""Prometheus metrics at /metrics (trio_pipe/http/_metrics.py), scraped over HTTP from
a live server; docs/metrics.md lists every name."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio
import trio.testing
from helpers import ROOT
from prometheus_client.parser import text_string_to_metric_families

import trio_pipe
from trio_pipe.auth import ApiAuth, new_secret
from trio_pipe.dispatch import Dispatcher
from trio_pipe.http import DispatcherMetrics
from trio_pipe.protocol import TaskError, TaskResult, TaskResultMessage, TaskStatus
from trio_pipe.testing import MemoryWorker, open_memory_worker

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@asynccontextmanager
async def open_api(**options: Any) -> AsyncIterator[tuple[Dispatcher, httpx.AsyncClient]]:
    async with trio_pipe.open_dispatcher(port=None, http=("127.0.0.1", 0), **options) as d:
        async with httpx.AsyncClient(base_url=d.http_url) as client:
            yield d, client


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    """Every sample at /metrics, once the metrics have seen every event so far."""
    await trio.testing.wait_all_tasks_blocked()
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def end(
    worker: MemoryWorker, task_id: uuid.UUID, code: str, *, retryable: bool
) -> None:
    error = TaskError(code, "it broke", retryable=retryable)
    result = TaskResult(task_id, TaskStatus.FAILED, error=error, worker_id=worker.worker_id)
    await worker.send(TaskResultMessage(result))


async def test_outcomes_retries_reassignments_and_durations_are_counted() -> None:
    async with open_api(retry_backoff=0) as (dispatcher, client):
        async with open_memory_worker(dispatcher, "w1", ["job"]) as first:
            ok = await dispatcher.submit(trio_pipe.Task.new("job"))
            await first.complete(await first.receive_task(), "done")
            bad = await dispatcher.submit(trio_pipe.Task.new("job"))
            await end(first, (await first.receive_task()).task.id, "BOOM", retryable=False)
            retried = await dispatcher.submit(trio_pipe.Task.new("job"))
            dispatch = await first.receive_task()
            async with open_memory_worker(dispatcher, "w2", ["job"]) as second:
                dispatcher.drain_worker("w1")
                await end(first, dispatch.task.id, "FLAKY", retryable=True)
                await second.complete(await second.receive_task(), "done")
                for handle in (ok, bad, retried):
                    await handle.result()
                samples = await scrape(client)
    outcome = "trio_pipe_task_outcomes_total"
    assert value(samples, outcome, task_type="job", status="Completed", code="") == 2
    assert value(samples, outcome, task_type="job", status="Failed", code="BOOM") == 1
    assert value(samples, "trio_pipe_task_retries_total", task_type="job") == 1
    assert value(samples, "trio_pipe_task_reassignments_total", task_type="job") == 1
    # Three tasks waited for their first dispatch; four tries ran.
    assert value(samples, "trio_pipe_task_queue_seconds_count", task_type="job") == 3
    assert value(samples, "trio_pipe_task_run_seconds_count", task_type="job") == 4
    assert value(samples, "trio_pipe_task_run_seconds_sum", task_type="job") >= 0
    assert value(samples, "trio_pipe_metrics_events_dropped_total") == 0


async def test_gauges_are_read_at_scrape_time() -> None:
    async with open_api() as (dispatcher, client):
        async with open_memory_worker(dispatcher, "w1", ["job"]) as worker:
            async with open_memory_worker(dispatcher, "w2", ["job"]):
                dispatcher.drain_worker("w2")
                for priority in ("High", "High", "Low"):
                    await client.post(
                        "/tasks", json={"taskType": "x", "priority": priority}
                    )
                doomed = await dispatcher.submit(trio_pipe.Task.new("job"))
                await end(
                    worker, (await worker.receive_task()).task.id, "BOOM", retryable=False
                )
                await doomed.result()
                samples = await scrape(client)
                assert (
                    value(samples, "trio_pipe_queue_depth", task_type="x", priority="High")
                    == 2
                )
                assert (
                    value(samples, "trio_pipe_queue_depth", task_type="x", priority="Low")
                    == 1
                )
                assert value(samples, "trio_pipe_workers", state="active") == 1
                assert value(samples, "trio_pipe_workers", state="draining") == 1
                ages = {
                    dict(labels)["worker_id"]: age
                    for (name, labels), age in samples.items()
                    if name == "trio_pipe_worker_heartbeat_age_seconds"
                }
                assert set(ages) == {"w1", "w2"} and all(age >= 0 for age in ages.values())
                assert value(samples, "trio_pipe_dead_letters") == 1
            await client.post("/dead-letters/purge")
            samples = await scrape(client)
            assert value(samples, "trio_pipe_dead_letters") == 0
            assert value(samples, "trio_pipe_workers", state="draining") == 0


async def test_two_dispatchers_in_one_process_keep_their_own_metrics() -> None:
    async with open_api() as (one, first), open_api() as (_, second):
        async with open_memory_worker(one, "w1", ["job"]) as worker:
            handle = await one.submit(trio_pipe.Task.new("job"))
            await worker.complete(await worker.receive_task())
            await handle.result()
            ones, twos = await scrape(first), await scrape(second)
    outcome = {"task_type": "job", "status": "Completed", "code": ""}
    assert value(ones, "trio_pipe_task_outcomes_total", **outcome) == 1
    assert value(twos, "trio_pipe_task_outcomes_total", **outcome) == 0


async def test_metrics_that_fall_behind_count_what_they_missed() -> None:
    async with trio_pipe.open_dispatcher(port=None) as dispatcher:
        metrics = DispatcherMetrics(dispatcher, buffer=2)
        async with (
            trio.open_nursery() as nursery,
            open_memory_worker(dispatcher, "w", ["x"]),
        ):
            await nursery.start(metrics.run)
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(5):  # five Pending events at least, no checkpoint between
                dispatcher.submit_nowait(trio_pipe.Task.new("x"))
            await trio.testing.wait_all_tasks_blocked()
            # A listener hears how many it missed with the next event it has room for.
            dispatcher.submit_nowait(trio_pipe.Task.new("x"))
            await trio.testing.wait_all_tasks_blocked()
            text = (await metrics.render()).decode()
            dropped = re.search(
                r"^trio_pipe_metrics_events_dropped_total (\S+)$", text, re.M
            )
            assert dropped is not None and float(dropped[1]) >= 3, text
            nursery.cancel_scope.cancel()


async def test_metrics_need_a_read_token_when_the_api_has_tokens() -> None:
    auth = ApiAuth(new_secret())
    async with open_api(http_auth=auth) as (_, client):
        assert (await client.get("/metrics")).status_code == 401
        token = auth.create("read", expires_in=60)
        samples = await scrape(client, Authorization=f"Bearer {token}")
        assert value(samples, "trio_pipe_dead_letters") == 0


async def test_docs_metrics_lists_every_metric_with_its_labels() -> None:
    async with open_api(retry_backoff=0) as (dispatcher, client):
        async with open_memory_worker(dispatcher, "w1", ["job"]) as worker:
            handle = await dispatcher.submit(trio_pipe.Task.new("job"))
            await end(worker, (await worker.receive_task()).task.id, "X", retryable=True)
            await worker.complete(await worker.receive_task())
            await handle.result()
            await dispatcher.submit(trio_pipe.Task.new("other"))
            await trio.testing.wait_all_tasks_blocked()
            text = (await client.get("/metrics")).text
    families = {  # prometheus-client's own _created samples parse as families
        family.name: family
        for family in text_string_to_metric_families(text)
        if not family.name.endswith("_created")
    }
    page = (ROOT / "docs" / "metrics.md").read_text()
    documented = dict(re.findall(r"^\| `(trio_pipe_\w+)` \| \w+ \|([^|]*)\|", page, re.M))
    for name, family in families.items():
        suffix = {"counter": "_total"}.get(family.type, "")
        assert f"{name}{suffix}" in documented, f"docs/metrics.md does not list {name}"
        labels = {
            label for sample in family.samples for label in sample.labels if label != "le"
        }
        shown = set(re.findall(r"`(\w+)`", documented[f"{name}{suffix}"]))
        if family.samples:  # a labelled family shows its labels once it has a sample
            assert labels == shown, (name, labels, shown)
    assert len(documented) == len(families)
