"""Running a workflow on a dispatcher, through its public API only.

One :class:`_Run` owns the state of a run (each step's status, the outputs so far)
and is the only one to change it. Each running step is a task in the run's nursery;
it reports how it ended on a memory channel, and the run decides what starts next.
Fail-fast is the nursery's cancel scope: cancelling it cancels every running step,
and a step that is cancelled while its task runs cancels the task's handle -- the
dispatcher sends ``Kill`` to its worker.

Each task a step submits carries the idempotency key
``workflow/<workflow name>/<run id>/<step path>``: a run started again with the same
run id (after a crash, on a durable store) gets the task a completed step already
ran, with its result, instead of running it again.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import trio

from .._errors import TaskFailed, WorkflowError, WorkflowFailed, describe
from ..dispatch import WorkerState
from ..dispatch._events import StepEvent, StepEventKind
from ..protocol import Task, TaskStatus, converter
from ..store import CachedResult
from ._model import Ref, Step, StepKind, Text, Workflow, _Input, _Item

if TYPE_CHECKING:
    from ..dispatch import Dispatcher, TaskHandle

__all__ = ["run_workflow"]

_NO_ITEM: Any = object()


async def run_workflow(
    dispatcher: Dispatcher,
    workflow: Workflow,
    inputs: Mapping[str, Any],
    *,
    run_id: str | None = None,
) -> dict[str, Any]:
    """See :meth:`Dispatcher.run_workflow`."""
    workflow.validate()
    if run_id is None:
        run_id = str(uuid.uuid4())
    elif not isinstance(run_id, str) or not run_id:
        raise WorkflowError(f"run_id must be a non-empty str, not {run_id!r}")
    key = f"workflow/{workflow.name}/{run_id}/"
    return await _Run(dispatcher, workflow, inputs, run_id, key, prefix="").run()


class _StepError(Exception):
    """A step failed at *path* (one of its fan-out items, or a step of a nested
    workflow, rather than the step itself)."""

    def __init__(self, path: str, error: BaseException) -> None:
        super().__init__(path, error)
        self.path = path
        self.error = error


@attrs.frozen
class _Outcome:
    step: str
    value: Any = None
    failures: dict[str, BaseException] | None = None


class _Run:
    def __init__(
        self,
        dispatcher: Dispatcher,
        workflow: Workflow,
        inputs: Mapping[str, Any],
        run_id: str,
        key: str,
        *,
        prefix: str,
    ) -> None:
        for name, user in workflow._input_names().items():
            if name not in inputs:
                by = f"step {user!r}" if user else "an output"
                raise WorkflowError(
                    f"workflow {workflow.name!r}: {by} needs the input {name!r}, "
                    "which was not given",
                    step=f"{prefix}{user}" if user else None,
                )
        self.dispatcher = dispatcher
        self.workflow = workflow
        self.inputs = dict(inputs)
        self.run_id = run_id
        #: What each task's idempotency key starts with (then comes the step's path).
        self.key = key
        self.prefix = prefix
        deps = workflow._dependencies()
        #: The dependencies of each step that have not ended yet.
        self.waiting = {name: set(names) for name, names in deps.items()}
        self.deps = deps
        self.dependents: dict[str, list[str]] = {name: [] for name in workflow.steps}
        for name, names in deps.items():
            for dep in names:
                self.dependents[dep].append(name)
        self.gates = workflow._gates()
        #: Each step's status: a StepEventKind once it started or ended.
        self.status: dict[str, StepEventKind] = {}
        self.outputs: dict[str, Any] = {}
        #: The branches each decision chose.
        self.chosen: dict[str, set[str]] = {}
        self.failures: dict[str, BaseException] = {}
        #: Per step with ``cache=True``: how many tasks it ran, how many of those the
        #: cache served.
        self.tasks: dict[str, int] = {}
        self.hits: dict[str, int] = {}
        self.running = 0
        self.done, self.ended = trio.open_memory_channel[_Outcome](math.inf)

    # ------------------------------------------------------------- the loop

    async def run(self) -> dict[str, Any]:
        try:
            async with trio.open_nursery() as nursery:
                self._release(nursery, [n for n, w in self.waiting.items() if not w])
                while self.running:
                    outcome = await self.ended.receive()
                    self._finish(nursery, outcome)
                    if self.failures and self.workflow.fail_fast:
                        nursery.cancel_scope.cancel()
                        break
        except BaseException:  # Cancelled (in a group, from the nursery), above all
            self._cancel_running("the workflow was cancelled")
            raise
        while True:  # what ended as the run was cancelled
            try:
                outcome = self.ended.receive_nowait()
            except trio.WouldBlock:
                break
            self._record(outcome)
        self._cancel_running("another step failed")
        if self.failures:
            raise WorkflowFailed(
                self.workflow.name,
                self.failures,
                {
                    self._path(name): self.status[name].value
                    if name in self.status
                    else "pending"
                    for name in self.workflow.steps
                },
                {self._path(name): value for name, value in self.outputs.items()},
            )
        if not self.workflow.outputs:
            return dict(self.outputs)
        return {
            name: self._resolve(template, _NO_ITEM)
            for name, template in self.workflow.outputs.items()
        }

    def _cancel_running(self, reason: str) -> None:
        for name in self.workflow.steps:
            if self.status.get(name) is StepEventKind.STARTED:
                self._set(name, StepEventKind.CANCELLED, reason)

    def _set(
        self,
        name: str,
        kind: StepEventKind,
        error: str | None = None,
        *,
        cached: bool = False,
    ) -> None:
        self.status[name] = kind
        self.dispatcher._publish(
            StepEvent(
                kind,
                self.workflow.name,
                self.run_id,
                self._path(name),
                trio.current_time(),
                error,
                cached,
            )
        )

    def _record(self, outcome: _Outcome) -> bool:
        """Note how a step ended; True if it completed."""
        self.running -= 1
        name = outcome.step
        if outcome.failures is None:
            self.outputs[name] = outcome.value
            hits = self.hits.get(name, 0)
            cached = hits > 0 and hits == self.tasks[name]
            self._set(name, StepEventKind.COMPLETED, cached=cached)
            return True
        self.failures.update(outcome.failures)
        path, error = next(iter(outcome.failures.items()))
        reason = describe(error)
        if path != self._path(name):
            reason = f"{path}: {reason}"
        self._set(name, StepEventKind.FAILED, reason)
        return False

    def _finish(self, nursery: trio.Nursery, outcome: _Outcome) -> None:
        name = outcome.step
        if self._record(outcome) and self.workflow.steps[name].branches:
            self.chosen[name] = _branches(self.workflow.steps[name], outcome.value)
        ready = []
        for dependent in self.dependents[name]:
            self.waiting[dependent].discard(name)
            if not self.waiting[dependent]:
                ready.append(dependent)
        self._release(nursery, ready)

    def _release(self, nursery: trio.Nursery, ready: list[str]) -> None:
        """Start, skip or block each step whose dependencies have all ended; the
        steps that skipping or blocking one releases, in turn."""
        while ready:
            name = ready.pop()
            if self.failures and self.workflow.fail_fast:
                return
            verdict = self._verdict(name)
            if verdict is None:
                self.running += 1
                self._set(name, StepEventKind.STARTED)
                nursery.start_soon(self._run_step, self.workflow.steps[name])
                continue
            self._set(name, *verdict)
            for dependent in self.dependents[name]:
                self.waiting[dependent].discard(name)
                if not self.waiting[dependent]:
                    ready.append(dependent)

    def _verdict(self, name: str) -> tuple[StepEventKind, str] | None:
        """Why a step whose dependencies have ended must not run (None: it runs)."""
        gate = self.gates.get(name)
        if gate is not None and gate in self.chosen:
            branches = self.workflow.steps[gate].branches
            if not any(name in branches[b] for b in self.chosen[gate]):
                return StepEventKind.SKIPPED, f"decision {gate!r} chose another branch"
        deps = self.deps[name]
        broken = sorted(
            d
            for d in deps
            if self.status[d] in (StepEventKind.FAILED, StepEventKind.BLOCKED)
        )
        if broken:
            return StepEventKind.BLOCKED, f"step {broken[0]!r} did not complete"
        skipped = sorted(d for d in deps if self.status[d] is StepEventKind.SKIPPED)
        step = self.workflow.steps[name]
        if skipped and (not step.converge or len(skipped) == len(deps)):
            return StepEventKind.SKIPPED, f"step {skipped[0]!r} was skipped"
        return None

    # ----------------------------------------------------------- one step

    def _path(self, name: str) -> str:
        return f"{self.prefix}{name}"

    async def _run_step(self, step: Step) -> None:
        try:
            value = await self._execute(step)
        except _StepError as exc:
            outcome = _Outcome(step.name, failures={exc.path: exc.error})
        except WorkflowFailed as exc:  # a nested workflow's: its paths are ours
            outcome = _Outcome(step.name, failures=exc.failures)
        except Exception as exc:  # the step failed; the run reports it
            outcome = _Outcome(step.name, failures={self._path(step.name): exc})
        else:
            outcome = _Outcome(step.name, value)
        self.done.send_nowait(outcome)

    async def _execute(self, step: Step) -> Any:
        path = self._path(step.name)
        if step.kind is StepKind.WORKFLOW:
            assert step.nested is not None
            inputs = self._resolve(step.payload, _NO_ITEM)
            nested = _Run(
                self.dispatcher,
                step.nested,
                inputs,
                self.run_id,
                self.key,
                prefix=f"{path}/",
            )
            return await nested.run()
        if step.kind is StepKind.MAP:
            items = self._resolve(step.over, _NO_ITEM)
            if not isinstance(items, list):
                raise TypeError(f"map step {path!r} needs a list, not {_kind(items)}")
            return await self._fan_out(step, items)
        if step.kind is StepKind.BATCH:
            count = self._resolve(step.over, _NO_ITEM)
            if isinstance(count, list):
                count = len(count)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise TypeError(
                    f"batch step {path!r} needs a count (an int >= 0, or a list), "
                    f"not {_kind(count)}"
                )
            ranges = [
                {"start": start, "stop": min(start + step.size, count)}
                for start in range(0, count, step.size)
            ]
            return await self._fan_out(step, ranges)
        value = await self._run_task(step, self._resolve(step.payload, _NO_ITEM), path)
        if step.kind is StepKind.DECISION:
            _branches(step, value)  # fails the step if it chose no branch of its own
        return value

    async def _fan_out(self, step: Step, items: list[Any]) -> list[Any]:
        """One task per item, at most ``step.concurrency`` at once; the results in
        item order. The first that fails cancels the others and fails the step."""
        results: list[Any] = [None] * len(items)
        failed: list[_StepError] = []
        limit = trio.Semaphore(step.concurrency)

        async def one(index: int, value: Any) -> None:
            path = f"{self._path(step.name)}[{index}]"
            try:
                payload = self._resolve(step.payload, value)
                results[index] = await self._run_task(step, payload, path)
            except Exception as exc:
                failed.append(_StepError(path, exc))
                nursery.cancel_scope.cancel()
            finally:
                limit.release()

        async with trio.open_nursery() as nursery:
            for index, value in enumerate(items):
                await limit.acquire()
                nursery.start_soon(one, index, value)
        if failed:
            raise failed[0]
        return results

    async def _run_task(self, step: Step, payload: Any, path: str) -> Any:
        """Submit one task of *step* with *payload*, wait for it, return its result
        (structured for a typed step). Cancelled, it kills the task."""
        payload = converter.unstructure(payload)
        if step.spec is not None:  # check the payload against its class
            payload = converter.unstructure(converter.structure(payload, step.spec))
        assert step.task_type is not None
        if step.cache:
            self.tasks[step.name] = self.tasks.get(step.name, 0) + 1
            hit = await self._cached(step, step.task_type, payload)
            if hit is not None:
                self.hits[step.name] = self.hits.get(step.name, 0) + 1
                return self._structured(step, hit.payload)
        task = Task.new(
            step.task_type,
            payload,
            timeout_ms=step.timeout_ms,
            priority=step.priority,
            max_retries=step.max_retries,
            trace_id=self.run_id,
            idempotency_key=f"{self.key}{path}",
        )
        dispatcher = self.dispatcher
        handle: TaskHandle[Any]
        if step.worker is not None:
            handle = await dispatcher.dispatch_to(step.worker, task)
        elif step.tag is not None:
            handle = await dispatcher.dispatch_with_tag(step.tag, task)
        else:
            handle = await dispatcher.submit(task)
        resumed = handle.id != task.id
        if resumed and handle.done and handle.status is not TaskStatus.COMPLETED:
            # An earlier run of this run id ran this task, and it did not complete:
            # run it again (a completed one is kept, and its result used).
            handle = await dispatcher.requeue(handle.id)
        try:
            result = await handle.result()
        except trio.Cancelled:
            handle.cancel_nowait(f"workflow {self.workflow.name!r} stopped")
            raise
        if result.status is not TaskStatus.COMPLETED:
            raise TaskFailed(result)
        if step.cache:
            version = _version_of(dispatcher, result.worker_id)
            if version is not None:
                await dispatcher.store.cache_put(
                    CachedResult(
                        cache_key(step.task_type, version, payload),
                        result.payload,
                        result.worker_id,
                        time.time(),
                    )
                )
        return self._structured(step, result.payload)

    def _structured(self, step: Step, payload: Any) -> Any:
        if step.spec is not None:
            return step.spec.structure_result(payload)
        return payload

    async def _cached(
        self, step: Step, task_type: str, payload: Any
    ) -> CachedResult | None:
        """A result the cache holds for *payload* from a version of the workers that
        may serve *step* now (``None``: dispatch it)."""
        versions = set()
        for info in self.dispatcher.workers():
            if (
                info.state is not WorkerState.DEAD
                and task_type in info.supported_tasks
                and step.worker in (None, info.worker_id)
                and (step.tag is None or step.tag in info.tags)
            ):
                version = worker_version(info.tags)
                if version is not None:
                    versions.add(version)
        for version in sorted(versions):
            hit = await self.dispatcher.store.cache_get(
                cache_key(task_type, version, payload)
            )
            if hit is not None:
                return hit
        return None

    # ---------------------------------------------------------- references

    def _resolve(self, template: Any, item: Any) -> Any:
        if isinstance(template, Ref):
            return self._value(template, item)
        if isinstance(template, Text):
            return "".join(_text(self._resolve(part, item)) for part in template.parts)
        if isinstance(template, Mapping):
            return {key: self._resolve(value, item) for key, value in template.items()}
        if isinstance(template, (list, tuple)):
            return [self._resolve(value, item) for value in template]
        return template

    def _value(self, ref: Ref, item: Any) -> Any:
        source = ref.source
        if isinstance(source, _Input):
            value = self.inputs[source.name]
        elif isinstance(source, _Item):
            assert item is not _NO_ITEM
            value = item
        else:
            value = self.outputs.get(source.name)  # None: a skipped step's
        for key in ref.path:
            value = _index(ref, value, key)
        return value


def worker_version(tags: tuple[str, ...]) -> str | None:
    """What a worker's results are cached by: its ``version:`` and ``digest:`` tags
    (``None``: it declares neither, and its results are not cached)."""
    versions = sorted(tag for tag in tags if tag.startswith(("version:", "digest:")))
    return " ".join(versions) or None


def _version_of(dispatcher: Dispatcher, worker_id: str) -> str | None:
    for info in dispatcher.workers():
        if info.worker_id == worker_id:
            return worker_version(info.tags)
    return None


def cache_key(task_type: str, version: str, payload: Any) -> str:
    """The key of a result: the task type, the worker version, and a hash of the
    payload's canonical JSON (keys sorted, no spaces)."""
    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(canonical).hexdigest()
    return hashlib.sha256(orjson.dumps([task_type, version, digest])).hexdigest()


def _text(value: Any) -> str:
    """A resolved part of a :class:`Text`, as a string."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return orjson.dumps(converter.unstructure(value)).decode()


def _index(ref: Ref, value: Any, key: str | int) -> Any:
    try:
        if isinstance(value, Mapping):
            return value[key]
        if isinstance(key, int) and isinstance(value, (list, tuple)):
            return value[key]
        if isinstance(key, str) and attrs.has(type(value)):
            return getattr(value, key)
    except (LookupError, AttributeError):
        pass
    raise LookupError(f"{ref!r}: {_kind(value)} has no [{key!r}]")


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _branches(step: Step, value: Any) -> set[str]:
    """The branches a decision's output chooses; raises if it chooses none of its
    own."""
    chosen = [value] if isinstance(value, str) else value
    if not isinstance(chosen, list) or not all(isinstance(b, str) for b in chosen):
        raise TypeError(
            f"decision step {step.name!r} must output a branch name or a list of "
            f"them, not {_kind(value)}"
        )
    unknown = sorted(set(chosen) - set(step.branches))
    if unknown:
        raise ValueError(
            f"decision step {step.name!r} chose {unknown[0]!r}, which is not one of "
            f"its branches ({', '.join(map(repr, step.branches))})"
        )
    return set(chosen)
