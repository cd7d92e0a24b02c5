"""Workflows on a dispatcher: DAGs, fan-out, decisions, batches, failure modes, nesting.

In-memory workers under autojump_clock, except where a real worker process is the
point (fail-fast killing a sibling's task on its worker).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from helpers import ROOT

import trio_pipe
from trio_pipe import (
    EventStream,
    StepEvent,
    StepEventKind,
    TaskEvent,
    TaskEventKind,
    TaskFailed,
    TaskSpec,
    WorkflowFailed,
)
from trio_pipe.protocol import (
    Kill,
    TaskDispatch,
    TaskError,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
)
from trio_pipe.testing import MemoryWorker, connect_memory_worker
from trio_pipe.workflow import Workflow, item

Handler = Callable[[Any], Awaitable[Any]]


class Fail(Exception):
    """Raised by a test handler: the worker answers the task ``Failed``."""


async def serve(worker: MemoryWorker, handler: Handler) -> None:
    """Answer every task the worker is sent, each in its own task (so that it runs as
    many at once as the dispatcher sends it), and honour ``Kill``."""
    running: dict[Any, trio.CancelScope] = {}

    async def answer(dispatch: TaskDispatch) -> None:
        task = dispatch.task
        with trio.CancelScope() as scope:
            running[task.id] = scope
            try:
                payload = await handler(task.payload)
            except Fail as exc:
                status, payload = TaskStatus.FAILED, None
                error = TaskError("HANDLER_ERROR", str(exc), retryable=False)
            else:
                status, error = TaskStatus.COMPLETED, None
            result = TaskResult(task.id, status, payload, error, worker_id=worker.worker_id)
            await worker.send(TaskResultMessage(result))
        del running[task.id]

    try:
        async with trio.open_nursery() as nursery:
            while True:
                message = await worker.receive()
                if isinstance(message, TaskDispatch):
                    nursery.start_soon(answer, message)
                elif isinstance(message, Kill) and message.task_id in running:
                    running[message.task_id].cancel()
    except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
        return


@asynccontextmanager
async def dispatcher_with(
    handlers: dict[str, Handler], *, workers: int = 1, max_concurrency: int = 64
) -> AsyncIterator[trio_pipe.Dispatcher]:
    """A dispatcher with *workers* memory workers serving *handlers*."""
    async with trio_pipe.open_dispatcher(port=None) as d, trio.open_nursery() as n:

        async def handler(payload: Any) -> Any:
            kind, value = payload["kind"], payload.get("value")
            return await handlers[kind](value)

        for index in range(workers):
            w = await connect_memory_worker(
                d, f"w{index}", ["job"], max_concurrency=max_concurrency
            )
            n.start_soon(serve, w, handler)
        yield d
        n.cancel_scope.cancel()


def job(kind: str, value: Any = None) -> dict[str, Any]:
    """The payload of a task of type ``job`` run by handler *kind*."""
    return {"kind": kind, "value": value}


async def returns(value: Any) -> Any:
    await trio.sleep(1)
    return value


async def double(value: int) -> int:
    await trio.sleep(1)
    return value * 2


async def total(values: list[int | None]) -> int:
    await trio.sleep(1)
    return sum(v for v in values if v is not None)


async def lingers(value: Any) -> Any:
    await trio.sleep(10)
    return value


async def fails(message: str) -> None:
    await trio.sleep(1)
    raise Fail(message)


async def collect(stream: EventStream, into: list[StepEvent]) -> None:
    """Keep the step events of *stream* (a listener from before the run starts)."""
    async with stream:
        async for event in stream:
            if isinstance(event, StepEvent):
                into.append(event)


def steps_by(events: list[StepEvent], kind: StepEventKind) -> list[str]:
    return [e.step for e in events if e.kind is kind]


async def test_a_diamond_runs_each_step_once_its_dependencies_completed(
    autojump_clock: object,
) -> None:
    wf = Workflow("diamond")
    a = wf.step("a", "job", job("returns", wf.input("x")))
    b = wf.step("b", "job", job("double", a.output))
    c = wf.step("c", "job", job("double", a.output))
    d_ = wf.step("d", "job", job("total", [b.output, c.output]))
    wf.output("sum", d_.output)
    events: list[StepEvent] = []
    handlers = {"returns": returns, "double": double, "total": total}
    async with dispatcher_with(handlers) as d, trio.open_nursery() as n:
        n.start_soon(collect, d.events(), events)
        started = trio.current_time()
        assert await d.run_workflow(wf, {"x": 5}) == {"sum": 20}
        # a, then b and c side by side, then d: three rounds of one second.
        assert trio.current_time() - started == pytest.approx(3, abs=0.1)
        n.cancel_scope.cancel()
    assert sorted(steps_by(events, StepEventKind.COMPLETED)) == ["a", "b", "c", "d"]
    order = [(e.kind, e.step) for e in events]
    assert order.index((StepEventKind.STARTED, "d")) > max(
        order.index((StepEventKind.COMPLETED, "b")),
        order.index((StepEventKind.COMPLETED, "c")),
    )
    assert {e.workflow for e in events} == {"diamond"}


async def test_without_declared_outputs_every_step_output_is_returned(
    autojump_clock: object,
) -> None:
    wf = Workflow("plain")
    a = wf.step("a", "job", job("returns", 1))
    wf.step("b", "job", job("returns", 2), depends_on=[a])
    async with dispatcher_with({"returns": returns}) as d:
        assert await d.run_workflow(wf) == {"a": 1, "b": 2}


async def test_a_fan_out_of_1000_never_runs_more_than_its_concurrency(
    autojump_clock: object,
) -> None:
    seen = {"now": 0, "peak": 0}

    async def measured(value: int) -> int:
        seen["now"] += 1
        seen["peak"] = max(seen["peak"], seen["now"])
        await trio.sleep(1)
        seen["now"] -= 1
        return value * value

    async def numbers(count: int) -> list[int]:
        return list(range(count))

    wf = Workflow("fan")
    listed = wf.step("list", "job", job("numbers", 1000))
    squares = wf.map(
        "square", "job", over=listed.output, payload=job("measured", item), concurrency=16
    )
    wf.step("sum", "job", job("total", squares.output))
    wf.output("squares", squares.output)
    wf.output("sum", wf.steps["sum"].output)
    handlers = {"numbers": numbers, "measured": measured, "total": total}
    # Four workers of 64 slots: room for far more than 16 at once.
    async with dispatcher_with(handlers, workers=4) as d:
        outputs = await d.run_workflow(wf)
    assert seen["peak"] == 16
    assert outputs["squares"] == [i * i for i in range(1000)]
    assert outputs["sum"] == sum(i * i for i in range(1000))


async def test_a_decision_skips_the_branch_it_did_not_choose(
    autojump_clock: object,
) -> None:
    wf = Workflow("route")
    size = wf.decision(
        "size", "job", job("returns", wf.input("choice")),
        branches={"big": ["big-1"], "small": ["small-1"]},
    )  # fmt: skip
    big = wf.step("big-1", "job", job("returns", "big"))
    wf.step("big-2", "job", job("returns", big.output))  # skipped with its dependency
    small = wf.step("small-1", "job", job("returns", "small"))
    wf.step(
        "join", "job", job("returns", [wf.steps["big-2"].output, small.output]),
        converge=True,
    )  # fmt: skip
    wf.output("joined", wf.steps["join"].output)
    wf.output("chosen", size.output)
    events: list[StepEvent] = []
    async with dispatcher_with({"returns": returns}) as d, trio.open_nursery() as n:
        n.start_soon(collect, d.events(), events)
        outputs = await d.run_workflow(wf, {"choice": "small"})
        n.cancel_scope.cancel()
    assert outputs == {"joined": [None, "small"], "chosen": "small"}
    assert sorted(steps_by(events, StepEventKind.SKIPPED)) == ["big-1", "big-2"]
    assert "big-1" not in steps_by(events, StepEventKind.STARTED)
    skipped = {e.step: e.error for e in events if e.kind is StepEventKind.SKIPPED}
    assert skipped == {
        "big-1": "decision 'size' chose another branch",
        "big-2": "step 'big-1' was skipped",
    }


async def test_a_decision_may_choose_several_branches(autojump_clock: object) -> None:
    wf = Workflow("both")
    wf.decision(
        "pick",
        "job",
        job("returns", ["a", "b"]),
        branches={"a": ["x"], "b": ["y"], "c": ["z"]},
    )
    for name in "xyz":
        wf.step(name, "job", job("returns", name))
    async with dispatcher_with({"returns": returns}) as d:
        outputs = await d.run_workflow(wf)
    assert outputs == {"pick": ["a", "b"], "x": "x", "y": "y"}


async def test_a_decision_that_names_no_branch_of_its_own_fails(
    autojump_clock: object,
) -> None:
    wf = Workflow("bad-choice")
    wf.decision("pick", "job", job("returns", "nowhere"), branches={"a": ["x"]})
    wf.step("x", "job", job("returns", 1))
    async with dispatcher_with({"returns": returns}) as d:
        with pytest.raises(WorkflowFailed) as failed:
            await d.run_workflow(wf)
    assert failed.value.step == "pick"
    assert "chose 'nowhere', which is not one of its branches ('a')" in str(failed.value)


async def test_a_step_skipped_by_every_dependency_is_skipped_even_if_it_converges(
    autojump_clock: object,
) -> None:
    wf = Workflow("all-skipped")
    wf.decision("pick", "job", job("returns", "a"), branches={"a": ["x"], "b": ["y"]})
    wf.step("x", "job", job("returns", 1))
    y = wf.step("y", "job", job("returns", 2))
    wf.step("after-y", "job", job("returns", y.output), converge=True)
    async with dispatcher_with({"returns": returns}) as d:
        outputs = await d.run_workflow(wf)
    assert outputs == {"pick": "a", "x": 1}


async def test_a_batch_splits_its_items_into_ranges_and_converges(
    autojump_clock: object,
) -> None:
    ranges: list[dict[str, int]] = []

    async def sum_range(bounds: dict[str, int]) -> int:
        ranges.append(bounds)
        await trio.sleep(1)
        return sum(range(bounds["start"], bounds["stop"]))

    wf = Workflow("batches")
    parts = wf.batch(
        "parts", "job", wf.input("count"), size=300, payload=job("range", item),
        concurrency=2,
    )  # fmt: skip
    wf.output("sum", wf.step("converge", "job", job("total", parts.output)).output)
    wf.output("parts", parts.output)
    async with dispatcher_with({"range": sum_range, "total": total}) as d:
        started = trio.current_time()
        outputs = await d.run_workflow(wf, {"count": 1000})
        elapsed = trio.current_time() - started
    assert sorted((r["start"], r["stop"]) for r in ranges) == [
        (0, 300), (300, 600), (600, 900), (900, 1000),
    ]  # fmt: skip
    assert outputs["parts"] == [
        sum(range(0, 300)), sum(range(300, 600)), sum(range(600, 900)),
        sum(range(900, 1000)),
    ]  # fmt: skip
    assert outputs["sum"] == sum(range(1000))
    assert elapsed == pytest.approx(3, abs=0.1)  # two rounds of two, then the sum


async def test_a_batch_counts_the_items_of_a_list(autojump_clock: object) -> None:
    wf = Workflow("list-batches")
    wf.batch("parts", "job", ["a", "b", "c"], size=2, payload=job("returns", item))
    async with dispatcher_with({"returns": returns}) as d:
        outputs = await d.run_workflow(wf)
    assert outputs == {"parts": [{"start": 0, "stop": 2}, {"start": 2, "stop": 3}]}


async def test_a_failed_fan_out_item_fails_its_step_and_cancels_the_others(
    autojump_clock: object,
) -> None:
    killed: list[int] = []

    async def maybe(value: int) -> int:
        try:
            await trio.sleep(1 if value == 3 else 10)
        except trio.Cancelled:
            killed.append(value)
            raise
        if value == 3:
            raise Fail("three")
        return value

    wf = Workflow("fan-fail")
    wf.map("items", "job", over=list(range(8)), payload=job("maybe", item), concurrency=4)
    async with dispatcher_with({"maybe": maybe}) as d:
        with pytest.raises(WorkflowFailed) as failed:
            await d.run_workflow(wf)
        await trio.sleep(1)  # the Kill frames reach the worker
    assert failed.value.step == "items[3]"
    assert failed.value.statuses == {"items": "failed"}
    error = failed.value.failures["items[3]"]
    assert isinstance(error, TaskFailed) and error.code == "HANDLER_ERROR"
    assert sorted(killed) == [0, 1, 2]  # the three others in flight, killed


async def test_continue_mode_runs_every_step_that_does_not_depend_on_the_failure(
    autojump_clock: object,
) -> None:
    wf = Workflow("keep-going", fail_fast=False)
    bad = wf.step("bad", "job", job("fails", "no luck"), retries=0)
    wf.step("after-bad", "job", job("returns", bad.output))
    wf.step("after-after", "job", job("returns", 0), depends_on=["after-bad"])
    good = wf.step("good", "job", job("returns", 1))
    wf.step("after-good", "job", job("double", good.output))
    events: list[StepEvent] = []
    handlers = {"fails": fails, "returns": returns, "double": double}
    async with dispatcher_with(handlers) as d, trio.open_nursery() as n:
        n.start_soon(collect, d.events(), events)
        with pytest.raises(WorkflowFailed) as failed:
            await d.run_workflow(wf)
        n.cancel_scope.cancel()
    assert failed.value.step == "bad"
    assert list(failed.value.failures) == ["bad"]
    assert failed.value.outputs == {"good": 1, "after-good": 2}
    assert failed.value.statuses == {
        "bad": "failed",
        "after-bad": "blocked",
        "after-after": "blocked",
        "good": "completed",
        "after-good": "completed",
    }
    assert "workflow 'keep-going' failed at step 'bad': TaskFailed" in str(failed.value)
    blocked = {e.step: e.error for e in events if e.kind is StepEventKind.BLOCKED}
    assert blocked == {
        "after-bad": "step 'bad' did not complete",
        "after-after": "step 'after-bad' did not complete",
    }


async def test_continue_mode_reports_every_failure(autojump_clock: object) -> None:
    wf = Workflow("two-failures", fail_fast=False)
    wf.step("one", "job", job("fails", "first"), retries=0)
    wf.step("two", "job", job("fails", "second"), retries=0)
    async with dispatcher_with({"fails": fails}) as d:
        with pytest.raises(WorkflowFailed) as failed:
            await d.run_workflow(wf)
    assert sorted(failed.value.failures) == ["one", "two"]
    assert "(and 1 more)" in str(failed.value)


async def test_fail_fast_cancels_running_steps_and_starts_no_other(
    autojump_clock: object,
) -> None:
    wf = Workflow("fast")
    wf.step("bad", "job", job("fails", "boom"), retries=0)
    slow = wf.step("slow", "job", job("lingers", "late"))
    wf.step("after-slow", "job", job("returns", slow.output))
    events: list[StepEvent] = []
    handlers = {"fails": fails, "returns": returns, "lingers": lingers}
    async with dispatcher_with(handlers) as d:
        async with trio.open_nursery() as n:
            n.start_soon(collect, d.events(), events)
            with pytest.raises(WorkflowFailed) as failed:
                await d.run_workflow(wf)
            n.cancel_scope.cancel()
    assert failed.value.statuses == {
        "bad": "failed", "slow": "cancelled", "after-slow": "pending",
    }  # fmt: skip
    cancelled = [e for e in events if e.kind is StepEventKind.CANCELLED]
    assert [(e.step, e.error) for e in cancelled] == [("slow", "another step failed")]


async def test_a_retried_step_completes_on_a_later_try(autojump_clock: object) -> None:
    tries = {"count": 0}

    async def flaky(value: Any) -> str:
        tries["count"] += 1
        if tries["count"] < 3:
            raise Fail("not yet")
        return "done"

    wf = Workflow("retries")
    wf.step("flaky", "job", job("flaky"), retries=2)
    async with trio_pipe.open_dispatcher(port=None) as d, trio.open_nursery() as n:
        w = await connect_memory_worker(d, "w", ["job"])

        async def answer_retryably() -> None:
            while True:
                dispatch = await w.receive_task()
                try:
                    payload, error = await flaky(None), None
                    status = TaskStatus.COMPLETED
                except Fail as exc:
                    payload, status = None, TaskStatus.FAILED
                    error = TaskError("HANDLER_ERROR", str(exc), retryable=True)
                result = TaskResult(dispatch.task.id, status, payload, error, worker_id="w")
                await w.send(TaskResultMessage(result))

        n.start_soon(answer_retryably)
        assert await d.run_workflow(wf) == {"flaky": "done"}
        n.cancel_scope.cancel()
    assert tries["count"] == 3


async def test_step_options_reach_the_task(autojump_clock: object) -> None:
    wf = Workflow("options")
    wf.step(
        "urgent", "job", job("returns", 1), retries=5, timeout_ms=1234,
        priority=trio_pipe.Priority.HIGH,
    )  # fmt: skip
    async with dispatcher_with({"returns": returns}) as d:
        await d.run_workflow(wf, run_id="run-1")
        (task,) = [r.task for r in await d.tasks()]
    assert task.metadata.max_retries == 5
    assert task.metadata.timeout_ms == 1234
    assert task.metadata.priority is trio_pipe.Priority.HIGH
    assert task.metadata.idempotency_key == "workflow/options/run-1/urgent"
    assert task.metadata.trace_id == "run-1"


async def test_a_step_pinned_to_a_worker_or_a_tag_runs_only_there(
    autojump_clock: object,
) -> None:
    def whoami(worker_id: str) -> Handler:
        async def handler(payload: Any) -> str:
            return worker_id

        return handler

    wf = Workflow("pinned")
    wf.step("on-b", "job", job("who"), worker="b")
    wf.step("tagged", "job", job("who"), tag="gpu")
    wf.step("on-a", "job", job("who"), worker="a")
    async with trio_pipe.open_dispatcher(port=None) as d, trio.open_nursery() as n:
        for worker_id, tags in (("a", ()), ("b", ()), ("c", ("gpu",))):
            w = await connect_memory_worker(d, worker_id, ["job"], tags=tags)
            n.start_soon(w.serve, whoami(worker_id))
        outputs = await d.run_workflow(wf)
        n.cancel_scope.cancel()
    assert outputs == {"on-b": "b", "tagged": "c", "on-a": "a"}


async def test_a_step_pinned_to_an_absent_worker_fails_naming_it(
    autojump_clock: object,
) -> None:
    wf = Workflow("absent")
    wf.step("lost", "job", job("returns", 1), worker="nobody")
    async with dispatcher_with({"returns": returns}) as d:
        with pytest.raises(WorkflowFailed) as failed:
            await d.run_workflow(wf)
    assert failed.value.step == "lost"
    assert isinstance(failed.value.failures["lost"], trio_pipe.WorkerNotFound)


@attrs.frozen
class Area:
    square_metres: int


@attrs.frozen
class Room(TaskSpec[Area], task_type="area"):
    width: int
    length: int


async def test_a_typed_step_checks_its_payload_and_structures_its_result(
    autojump_clock: object,
) -> None:
    async def area(payload: dict[str, int]) -> dict[str, int]:
        return {"square_metres": payload["width"] * payload["length"]}

    wf = Workflow("typed")
    room = wf.step("room", Room, {"width": wf.input("width"), "length": 4})
    fixed = wf.step("fixed", Room(width=2, length=2))
    wf.step("twice", "area", {"width": room.output["square_metres"], "length": 2})
    wf.output("room", room.output)
    wf.output("fixed", fixed.output["square_metres"])
    wf.output("twice", wf.steps["twice"].output["square_metres"])
    async with trio_pipe.open_dispatcher(port=None) as d, trio.open_nursery() as n:
        w = await connect_memory_worker(d, "w", ["area"], max_concurrency=4)
        n.start_soon(w.serve, area)
        outputs = await d.run_workflow(wf, {"width": 3})
        with pytest.raises(WorkflowFailed) as failed:
            await d.run_workflow(wf, {"width": "three"})
        n.cancel_scope.cancel()
    assert outputs == {"room": Area(12), "fixed": 4, "twice": 24}
    assert failed.value.step == "room"  # "three" is no int: the task is never sent


async def test_a_reference_to_a_missing_key_fails_the_step(autojump_clock: object) -> None:
    wf = Workflow("missing-key")
    a = wf.step("a", "job", job("returns", {"x": 1}))
    wf.step("b", "job", job("returns", a.output["y"]))
    async with dispatcher_with({"returns": returns}) as d:
        with pytest.raises(WorkflowFailed) as failed:
            await d.run_workflow(wf)
    assert failed.value.step == "b"
    assert "has no ['y']" in str(failed.value)


async def test_a_map_over_something_not_a_list_fails_the_step(
    autojump_clock: object,
) -> None:
    wf = Workflow("not-a-list")
    a = wf.step("a", "job", job("returns", {"x": 1}))
    wf.map("m", "job", over=a.output, payload=job("returns", item))
    async with dispatcher_with({"returns": returns}) as d:
        with pytest.raises(WorkflowFailed) as failed:
            await d.run_workflow(wf)
    assert failed.value.step == "m"
    assert "map step 'm' needs a list, not dict" in str(failed.value)


def inner_workflow() -> Workflow:
    inner = Workflow("inner")
    doubled = inner.step("double", "job", job("double", inner.input("n")))
    inner.step("check", "job", job("returns", doubled.output))
    inner.output("doubled", inner.steps["check"].output)
    return inner


async def test_a_nested_workflow_runs_as_one_step(autojump_clock: object) -> None:
    inner = inner_workflow()
    outer = Workflow("outer")
    first = outer.workflow("first", inner, {"n": outer.input("n")})
    second = outer.workflow("second", inner, {"n": first.output["doubled"]})
    outer.output("result", second.output["doubled"])
    events: list[StepEvent] = []
    async with dispatcher_with({"double": double, "returns": returns}) as d:
        async with trio.open_nursery() as n:
            n.start_soon(collect, d.events(), events)
            assert await d.run_workflow(outer, {"n": 3}) == {"result": 12}
            n.cancel_scope.cancel()
    assert steps_by(events, StepEventKind.COMPLETED) == [
        "first/double", "first/check", "first",
        "second/double", "second/check", "second",
    ]  # fmt: skip
    assert {e.workflow for e in events} == {"inner", "outer"}


async def test_a_failure_in_a_nested_workflow_names_its_path(
    autojump_clock: object,
) -> None:
    inner = Workflow("inner")
    inner.step("boom", "job", job("fails", "deep"), retries=0)
    outer = Workflow("outer")
    outer.step("before", "job", job("returns", 1))
    outer.workflow("sub", inner, depends_on=["before"])
    async with dispatcher_with({"fails": fails, "returns": returns}) as d:
        with pytest.raises(WorkflowFailed) as failed:
            await d.run_workflow(outer)
    assert failed.value.step == "sub/boom"
    assert failed.value.statuses == {"before": "completed", "sub": "failed"}
    assert "failed at step 'sub/boom'" in str(failed.value)


async def test_cancelling_the_caller_kills_the_running_tasks(
    autojump_clock: object,
) -> None:
    killed: list[str] = []

    async def slow(value: str) -> None:
        try:
            await trio.sleep(100)
        finally:
            killed.append(value)

    inner = Workflow("inner")
    inner.step("two", "job", job("slow", "two"))
    wf = Workflow("abandoned")
    wf.step("one", "job", job("slow", "one"))
    wf.workflow("sub", inner)
    events: list[StepEvent] = []
    async with dispatcher_with({"slow": slow}) as d, trio.open_nursery() as n:
        n.start_soon(collect, d.events(), events)
        with trio.move_on_after(5):
            await d.run_workflow(wf)
        await trio.sleep(1)
        statuses = [r.status for r in await d.tasks()]
        n.cancel_scope.cancel()
    assert sorted(killed) == ["one", "two"]
    assert statuses == [TaskStatus.CANCELLED, TaskStatus.CANCELLED]
    cancelled = {e.step: e.error for e in events if e.kind is StepEventKind.CANCELLED}
    assert cancelled == dict.fromkeys(
        ["one", "sub", "sub/two"], "the workflow was cancelled"
    )


async def test_the_same_run_id_reuses_completed_steps_and_reruns_failed_ones(
    autojump_clock: object,
) -> None:
    calls: list[str] = []
    broken = {"yes": True}

    async def counted(value: str) -> str:
        calls.append(value)
        if value == "second" and broken["yes"]:
            raise Fail("broken")
        return value

    wf = Workflow("again")
    first = wf.step("first", "job", job("counted", "first"))
    wf.step("second", "job", job("counted", "second"), depends_on=[first], retries=0)
    async with dispatcher_with({"counted": counted}) as d:
        with pytest.raises(WorkflowFailed):
            await d.run_workflow(wf, run_id="r")
        broken["yes"] = False
        expected = {"first": "first", "second": "second"}
        assert await d.run_workflow(wf, run_id="r") == expected
        assert await d.run_workflow(wf, run_id="r") == expected
    assert calls == ["first", "second", "second"]


# ------------------------------------------------------- a real worker process

SDK_WORKER = [
    sys.executable, "-m", "trio_pipe", "--log-level", "WARNING",
    "worker", "--stdio", "--handlers", "tests.worker_handlers:HANDLERS",
]  # fmt: skip


@pytest.mark.timeout(60)
async def test_fail_fast_kills_a_sibling_on_a_real_worker_process(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    wf = Workflow("real")
    wf.step("slow", "hang-reporting", {"marker": str(marker)})
    wf.step("bad", "job", job("fails"), retries=0)
    outcome: list[WorkflowFailed] = []

    async def run() -> None:
        with pytest.raises(WorkflowFailed) as failed:
            await d.run_workflow(wf)
        outcome.append(failed.value)

    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_stdio(SDK_WORKER, ["hang-reporting"], cwd=str(ROOT))
        w = await connect_memory_worker(d, "memory", ["job"])
        with trio.fail_after(30):
            async with d.events() as events, trio.open_nursery() as n:
                n.start_soon(run)
                bad = await w.receive_task()
                async for event in events:  # the real worker runs the slow step
                    if (
                        isinstance(event, TaskEvent)
                        and event.kind is TaskEventKind.PROGRESS
                        and event.task_type == "hang-reporting"
                    ):
                        slow_id = event.task_id
                        break
                error = TaskError("HANDLER_ERROR", "boom", retryable=False)
                await w.send(
                    TaskResultMessage(
                        TaskResult(
                            bad.task.id, TaskStatus.FAILED, None, error, worker_id="memory"
                        )
                    )
                )
            assert (await d.handle(slow_id)).status is TaskStatus.CANCELLED
            while not await trio.Path(marker).exists():  # noqa: ASYNC110  (another process)
                await trio.sleep(0.05)
    (failed,) = outcome
    assert failed.step == "bad"
    assert failed.statuses == {"slow": "cancelled", "bad": "failed"}
    assert marker.read_text() == "cancelled"


async def test_an_empty_fan_out_completes_with_an_empty_list(
    autojump_clock: object,
) -> None:
    wf = Workflow("empty")
    wf.map("none", "job", over=[], payload=job("returns", item))
    wf.batch("no-batches", "job", 0, size=10, payload=job("returns", item))
    async with dispatcher_with({"returns": returns}) as d:
        assert await d.run_workflow(wf) == {"none": [], "no-batches": []}
        assert await d.tasks() == []


async def test_a_typed_fan_out_structures_each_result(autojump_clock: object) -> None:
    async def area(payload: dict[str, int]) -> dict[str, int]:
        return {"square_metres": payload["width"] * payload["length"]}

    wf = Workflow("typed-fan")
    wf.map("rooms", Room, over=[1, 2, 3], payload={"width": item, "length": 10})
    async with trio_pipe.open_dispatcher(port=None) as d, trio.open_nursery() as n:
        w = await connect_memory_worker(d, "w", ["area"], max_concurrency=4)
        n.start_soon(w.serve, area)
        outputs = await d.run_workflow(wf)
        n.cancel_scope.cancel()
    assert outputs == {"rooms": [Area(10), Area(20), Area(30)]}


async def test_in_continue_mode_a_failed_decision_blocks_its_branches(
    autojump_clock: object,
) -> None:
    wf = Workflow("failed-decision", fail_fast=False)
    wf.decision("pick", "job", job("fails", "undecided"), retries=0, branches={"a": ["x"]})
    wf.step("x", "job", job("returns", 1))
    wf.step("other", "job", job("returns", 2))
    async with dispatcher_with({"fails": fails, "returns": returns}) as d:
        with pytest.raises(WorkflowFailed) as failed:
            await d.run_workflow(wf)
    assert failed.value.statuses == {"pick": "failed", "x": "blocked", "other": "completed"}
