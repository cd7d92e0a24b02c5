"""The workflow model: steps, the references that wire them, and validation.

A :class:`Workflow` is built, step by step, before it runs; nothing here touches a
dispatcher or Trio. Values that are only known at run time -- a workflow input,
another step's output, the item of a fan-out -- are :class:`Ref` s, placed anywhere
in a step's payload (in dicts, lists and tuples). A step depends on every step whose
output it references, on those named in its ``depends_on``, and, if it is in a
branch, on the decision step that chooses it. :meth:`Workflow.validate` checks the
whole graph; every error it raises names the step at fault.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, TypeAlias

from .._errors import WorkflowError
from .._typed import TaskSpec
from ..protocol import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_MS, Priority, converter

__all__ = ["Ref", "Step", "StepKind", "Text", "Workflow", "item"]

#: Step names are what events, errors and resumed runs know a step by: short and
#: plain, so that a path (``"outer/inner"``, ``"resize[3]"``) is unambiguous.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class StepKind(enum.Enum):
    TASK = "task"
    DECISION = "decision"
    MAP = "map"
    BATCH = "batch"
    WORKFLOW = "workflow"


class _Input:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _Item:
    __slots__ = ()


Source: TypeAlias = "_Input | _Item | Step"


class Ref:
    """A value known at run time: a workflow input, a step's output, or the item of a
    fan-out, and a path into it (``ref["key"]``, ``ref[0]``; attributes of a typed
    result are reached by name too)."""

    __slots__ = ("path", "source")

    def __init__(self, source: Source, path: tuple[str | int, ...] = ()) -> None:
        self.source = source
        self.path = path

    def __getitem__(self, key: str | int) -> Ref:
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise TypeError(f"a reference is indexed by a str or an int, not {key!r}")
        return Ref(self.source, (*self.path, key))

    def __repr__(self) -> str:
        source = self.source
        if isinstance(source, _Input):
            base = f"input {source.name!r}"
        elif isinstance(source, _Item):
            base = "item"
        else:
            base = f"output of {source.name!r}"
        return f"<Ref {base}{''.join(f'[{key!r}]' for key in self.path)}>"


#: The item a :meth:`Workflow.map` or :meth:`Workflow.batch` step runs its task for:
#: use it (or a path into it, ``item["url"]``) in that step's payload.
item: Final = Ref(_Item())


class Text:
    """A string with references in it (``Text("out/", ref, ".txt")``), joined when
    the step runs: a string value as it is, ``None`` as nothing, any other value as
    its JSON."""

    __slots__ = ("parts",)

    def __init__(self, *parts: str | Ref) -> None:
        for part in parts:
            if not isinstance(part, (str, Ref)):
                raise TypeError(f"Text parts are strs and Refs, not {part!r}")
        self.parts = parts

    def __repr__(self) -> str:
        return f"<Text {self.parts!r}>"


def refs_in(value: Any) -> Iterator[Ref]:
    """Every :class:`Ref` in a payload template."""
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, Text):
        for part in value.parts:
            if isinstance(part, Ref):
                yield part
    elif isinstance(value, Mapping):
        for inner in value.values():
            yield from refs_in(inner)
    elif isinstance(value, (list, tuple)):
        for inner in value:
            yield from refs_in(inner)


class Step:
    """One step of a workflow, made by a :class:`Workflow` method; read-only.

    :attr:`output` is the reference to what it returns: the task's result payload
    (structured to the result type of a typed task), the list of its tasks' results
    in item order for a fan-out (``map``, ``batch``), the outputs of a nested
    workflow.
    """

    def __init__(
        self,
        workflow: Workflow,
        name: str,
        kind: StepKind,
        *,
        task: str | type[TaskSpec[Any]] | TaskSpec[Any] | None = None,
        payload: Any = None,
        depends_on: str | Step | Sequence[str | Step] = (),
        retries: int | None = None,
        timeout_ms: int | None = None,
        priority: Priority | None = None,
        tag: str | None = None,
        worker: str | None = None,
        converge: bool = False,
        concurrency: int = 16,
        over: Any = None,
        size: int = 1,
        branches: Mapping[str, str | Step | Sequence[str | Step]] | None = None,
        nested: Workflow | None = None,
        cache: bool = False,
    ) -> None:
        self.workflow = workflow
        self.name = name
        self.kind = kind
        self.task_type: str | None = None
        self.spec: type[TaskSpec[Any]] | None = None
        if isinstance(task, TaskSpec):
            if payload is not None:
                raise WorkflowError(
                    f"step {name!r} gives a typed task instance and a payload: "
                    "give one or the other",
                    step=name,
                )
            self.spec = type(task)
            self.task_type = task.task_type
            payload = converter.unstructure(task)
        elif isinstance(task, type) and issubclass(task, TaskSpec):
            self.spec = task
            self.task_type = task.task_type
        elif isinstance(task, str) and task:
            self.task_type = task
        elif kind is not StepKind.WORKFLOW:
            raise WorkflowError(
                f"step {name!r}: task must be a task type (a non-empty str) or a "
                f"TaskSpec class or instance, not {task!r}",
                step=name,
            )
        self.payload = payload
        self.depends_on = _names(depends_on)
        self.max_retries = _option(name, "retries", retries, DEFAULT_MAX_RETRIES, 0)
        self.timeout_ms = _option(name, "timeout_ms", timeout_ms, DEFAULT_TIMEOUT_MS, 1)
        try:
            self.priority = Priority.NORMAL if priority is None else Priority(priority)
        except ValueError:
            raise WorkflowError(
                f"step {name!r}: priority must be a Priority, not {priority!r}", step=name
            ) from None
        if tag is not None and worker is not None:
            raise WorkflowError(
                f"step {name!r} is pinned to worker {worker!r} and to tag {tag!r}: "
                "give one or the other",
                step=name,
            )
        self.tag = tag
        self.worker = worker
        self.converge = converge
        self.concurrency = _option(name, "concurrency", concurrency, 16, 1)
        self.over = over
        self.size = _option(name, "size", size, 1, 1)
        self.branches: dict[str, tuple[str, ...]] = {}
        if kind is StepKind.DECISION:
            if not branches:
                raise WorkflowError(f"decision step {name!r} has no branches", step=name)
            for branch, members in branches.items():
                if not isinstance(branch, str) or not branch:
                    raise WorkflowError(
                        f"decision step {name!r}: branch names are non-empty strs, "
                        f"not {branch!r}",
                        step=name,
                    )
                self.branches[branch] = _names(members)
        self.nested = nested
        if not isinstance(cache, bool):
            raise WorkflowError(
                f"step {name!r}: cache must be a bool, not {cache!r}", step=name
            )
        self.cache = cache

    def __repr__(self) -> str:
        return f"<Step {self.name!r} ({self.kind.value}) of {self.workflow.name!r}>"

    @property
    def output(self) -> Ref:
        """The reference to this step's output."""
        return Ref(self)

    def _templates(self) -> Iterator[Any]:
        """Everything of this step that may hold references."""
        yield self.payload
        yield self.over


def _names(steps: str | Step | Sequence[str | Step]) -> tuple[str, ...]:
    """The names of *steps*: one step or name, or several."""
    if isinstance(steps, (str, Step)):
        steps = (steps,)
    return tuple(step if isinstance(step, str) else step.name for step in steps)


def _option(step: str, name: str, value: int | None, default: int, minimum: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise WorkflowError(
            f"step {step!r}: {name} must be an int >= {minimum}, not {value!r}", step=step
        )
    return value


class Workflow:
    """A DAG of steps, each a task (served by any worker, in any language) or a
    nested workflow. Build it with :meth:`step`, :meth:`map`, :meth:`batch`,
    :meth:`decision` and :meth:`workflow`; run it with
    ``await dispatcher.run_workflow(workflow, inputs)``.

    With ``fail_fast=True`` (the default), the first step that fails ends the run:
    its running siblings are cancelled (their tasks killed on their workers) and no
    other step starts. With ``fail_fast=False``, every step that does not depend on
    a failed one still runs; those that do are *blocked*. Either way the run then
    raises :class:`~trio_pipe.WorkflowFailed`.

    Per-step options: ``retries`` (the task's ``max_retries``), ``timeout_ms``,
    ``priority``, placement -- ``tag`` (any worker registered with that tag) or
    ``worker`` (that one worker id) -- and ``cache``: with ``cache=True``, a task
    whose type, payload and worker version match a result in the dispatcher's store
    is not dispatched; the stored result is its result (docs/workflows.md,
    "Result caching"). ``depends_on`` adds dependencies to those
    inferred from the references in the payload (names or steps; a name may be that
    of a step added later). A ``converge=True`` step runs once each dependency has
    completed or been skipped (and at least one completed); references to a skipped
    step's output are then ``None``. Any other step is skipped if a dependency was.
    """

    def __init__(self, name: str, *, fail_fast: bool = True) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise WorkflowError(f"invalid workflow name {name!r}")
        self.name = name
        self.fail_fast = fail_fast
        self.steps: dict[str, Step] = {}
        self.outputs: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r}: {len(self.steps)} steps>"

    def input(self, name: str) -> Ref:
        """The reference to the workflow input *name* (given to ``run_workflow``)."""
        if not isinstance(name, str) or not name:
            raise WorkflowError(f"workflow {self.name!r}: invalid input name {name!r}")
        return Ref(_Input(name))

    def _add(self, step: Step) -> Step:
        if step.name in self.steps:
            raise WorkflowError(
                f"workflow {self.name!r} already has a step {step.name!r}", step=step.name
            )
        self.steps[step.name] = step
        return step

    def _name(self, name: str) -> str:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise WorkflowError(
                f"invalid step name {name!r} in workflow {self.name!r}: 1 to 64 of "
                "A-Z a-z 0-9 _ . -, not starting with . or -",
                step=str(name),
            )
        return name

    def step(
        self,
        name: str,
        task: str | type[TaskSpec[Any]] | TaskSpec[Any],
        payload: Any = None,
        *,
        depends_on: str | Step | Sequence[str | Step] = (),
        retries: int | None = None,
        timeout_ms: int | None = None,
        priority: Priority | None = None,
        tag: str | None = None,
        worker: str | None = None,
        converge: bool = False,
        cache: bool = False,
    ) -> Step:
        """A step that runs one task. *task* is a task type, a :class:`TaskSpec`
        class (*payload* then gives its fields, and is checked against it when the
        step runs) or a :class:`TaskSpec` instance (no *payload*)."""
        return self._add(
            Step(
                self, self._name(name), StepKind.TASK, task=task, payload=payload,
                depends_on=depends_on, retries=retries, timeout_ms=timeout_ms,
                priority=priority, tag=tag, worker=worker, converge=converge, cache=cache,
            )
        )  # fmt: skip

    def decision(
        self,
        name: str,
        task: str | type[TaskSpec[Any]] | TaskSpec[Any],
        payload: Any = None,
        *,
        branches: Mapping[str, str | Step | Sequence[str | Step]],
        depends_on: str | Step | Sequence[str | Step] = (),
        retries: int | None = None,
        timeout_ms: int | None = None,
        priority: Priority | None = None,
        tag: str | None = None,
        worker: str | None = None,
        converge: bool = False,
        cache: bool = False,
    ) -> Step:
        """A step whose task chooses which branches run. *branches* maps each branch
        name to the steps in it (names or steps; those depend on this one). The
        task's output is a branch name, or a list of them; the steps of the branches
        not chosen are skipped, and so are the steps that depend on them unless they
        converge. An output that names no branch of this step fails it."""
        return self._add(
            Step(
                self, self._name(name), StepKind.DECISION, task=task, payload=payload,
                depends_on=depends_on, retries=retries, timeout_ms=timeout_ms,
                priority=priority, tag=tag, worker=worker, converge=converge, cache=cache,
                branches=branches,
            )
        )  # fmt: skip

    def map(
        self,
        name: str,
        task: str | type[TaskSpec[Any]],
        over: Any,
        payload: Any = item,
        *,
        concurrency: int = 16,
        depends_on: str | Step | Sequence[str | Step] = (),
        retries: int | None = None,
        timeout_ms: int | None = None,
        priority: Priority | None = None,
        tag: str | None = None,
        worker: str | None = None,
        converge: bool = False,
        cache: bool = False,
    ) -> Step:
        """Fan-out: one task per element of the list *over* (a reference, usually to
        another step's output), at most *concurrency* at a time. *payload* is the
        template of each task's payload, with :data:`item` standing for the element.
        Fan-in: the step's output is the list of the results, in the order of
        *over*. A task that fails (its retries used up) fails the step and cancels
        the others still running."""
        return self._add(
            Step(
                self, self._name(name), StepKind.MAP, task=task, payload=payload,
                over=over, concurrency=concurrency, depends_on=depends_on,
                retries=retries, timeout_ms=timeout_ms, priority=priority, tag=tag,
                worker=worker, converge=converge, cache=cache,
            )
        )  # fmt: skip

    def batch(
        self,
        name: str,
        task: str | type[TaskSpec[Any]],
        count: Any,
        *,
        size: int,
        payload: Any = item,
        concurrency: int = 16,
        depends_on: str | Step | Sequence[str | Step] = (),
        retries: int | None = None,
        timeout_ms: int | None = None,
        priority: Priority | None = None,
        tag: str | None = None,
        worker: str | None = None,
        converge: bool = False,
        cache: bool = False,
    ) -> Step:
        """Batches: split *count* items (an int, or a list whose length counts; a
        reference, usually) into ranges of *size* and run one task per range, at
        most *concurrency* at a time. In *payload*, :data:`item` stands for the range,
        ``{"start": s, "stop": e}`` (items ``s`` to ``e - 1``). The output is the
        list of the ranges' results, in order: converge on it with a step that
        references it."""
        return self._add(
            Step(
                self, self._name(name), StepKind.BATCH, task=task, payload=payload,
                over=count, size=size, concurrency=concurrency, depends_on=depends_on,
                retries=retries, timeout_ms=timeout_ms, priority=priority, tag=tag,
                worker=worker, converge=converge, cache=cache,
            )
        )  # fmt: skip

    def workflow(
        self,
        name: str,
        workflow: Workflow,
        inputs: Mapping[str, Any] | None = None,
        *,
        depends_on: str | Step | Sequence[str | Step] = (),
        converge: bool = False,
    ) -> Step:
        """A step that runs *workflow* (nested) with *inputs* (a template, like a
        payload). Its output is the nested workflow's outputs; a step of it that
        fails fails this step, named by its path (``"name/inner-step"``)."""
        if not isinstance(workflow, Workflow):
            raise WorkflowError(
                f"step {name!r}: expected a Workflow to nest, not {workflow!r}", step=name
            )
        return self._add(
            Step(
                self, self._name(name), StepKind.WORKFLOW, payload=dict(inputs or {}),
                depends_on=depends_on, converge=converge, nested=workflow,
            )
        )  # fmt: skip

    def output(self, name: str, value: Any) -> None:
        """Declare an output of the workflow: *value* is a template (a reference to
        a step's output, or a structure holding some). ``run_workflow`` returns the
        outputs by name; with none declared, it returns every completed step's
        output by step name."""
        if not isinstance(name, str) or not name:
            raise WorkflowError(f"workflow {self.name!r}: invalid output name {name!r}")
        if name in self.outputs:
            raise WorkflowError(f"workflow {self.name!r} already has an output {name!r}")
        self.outputs[name] = value

    # ----------------------------------------------------------------- graph

    def _dependencies(self) -> dict[str, set[str]]:
        """Each step's dependencies, by name (explicit, inferred from references,
        and the decision that gates it). Assumes a valid workflow."""
        deps = {name: set(step.depends_on) for name, step in self.steps.items()}
        for name, step in self.steps.items():
            for template in step._templates():
                for ref in refs_in(template):
                    if isinstance(ref.source, Step):
                        deps[name].add(ref.source.name)
            for members in step.branches.values():
                for member in members:
                    deps[member].add(name)
        return deps

    def _gates(self) -> dict[str, str]:
        """The decision step that gates each step in a branch."""
        return {
            member: name
            for name, step in self.steps.items()
            for members in step.branches.values()
            for member in members
        }

    def _input_names(self) -> dict[str, str]:
        """Each input the workflow's steps use, and the first step that uses it."""
        used: dict[str, str] = {}
        for name, step in self.steps.items():
            for template in step._templates():
                for ref in refs_in(template):
                    if isinstance(ref.source, _Input):
                        used.setdefault(ref.source.name, name)
        for ref in refs_in(list(self.outputs.values())):
            if isinstance(ref.source, _Input):
                used.setdefault(ref.source.name, "")
        return used

    def validate(self) -> None:
        """Check the whole workflow (and those it nests); raise
        :class:`~trio_pipe.WorkflowError` naming the step at fault."""
        self._validate(())

    def _validate(self, nesting: tuple[Workflow, ...]) -> None:
        if not self.steps:
            raise WorkflowError(f"workflow {self.name!r} has no steps")
        gated_by: dict[str, str] = {}
        for name, step in self.steps.items():
            for dep in step.depends_on:
                if dep not in self.steps:
                    raise WorkflowError(
                        f"step {name!r} depends on {dep!r}, which is not a step of "
                        f"workflow {self.name!r}",
                        step=name,
                    )
            fans_out = step.kind in (StepKind.MAP, StepKind.BATCH)
            for ref in refs_in(step.payload):
                self._check_ref(name, ref, item_allowed=fans_out)
            for ref in refs_in(step.over):
                self._check_ref(name, ref, item_allowed=False)
            for branch, members in step.branches.items():
                for member in members:
                    if member not in self.steps:
                        raise WorkflowError(
                            f"branch {branch!r} of decision step {name!r} names "
                            f"{member!r}, which is not a step of workflow {self.name!r}",
                            step=name,
                        )
                    if gated_by.setdefault(member, name) != name:
                        raise WorkflowError(
                            f"step {member!r} is in branches of two decisions, "
                            f"{gated_by[member]!r} and {name!r}",
                            step=member,
                        )
            if step.nested is not None:
                if step.nested is self or step.nested in nesting:
                    raise WorkflowError(
                        f"step {name!r} nests workflow {step.nested.name!r} inside itself",
                        step=name,
                    )
                try:
                    step.nested._validate((*nesting, self))
                except WorkflowError as exc:
                    inner = f"{name}/{exc.step}" if exc.step else name
                    raise WorkflowError(f"in step {name!r}: {exc}", step=inner) from None
                given = step.payload
                for needed, user in step.nested._input_names().items():
                    if needed not in given:
                        where = f" (used by its step {user!r})" if user else ""
                        raise WorkflowError(
                            f"step {name!r} does not give input {needed!r} of workflow "
                            f"{step.nested.name!r}{where}",
                            step=name,
                        )
        for output, template in self.outputs.items():
            for ref in refs_in(template):
                if isinstance(ref.source, _Item):
                    raise WorkflowError(
                        f"output {output!r} of workflow {self.name!r} uses item, which "
                        "only the payload of a map or batch step may"
                    )
                if isinstance(ref.source, Step) and (
                    self.steps.get(ref.source.name) is not ref.source
                ):
                    raise WorkflowError(
                        f"output {output!r} of workflow {self.name!r} uses the output "
                        f"of {ref.source!r}, which is not a step of this workflow"
                    )
        deps = self._dependencies()
        for name, step in self.steps.items():
            if step.converge and not deps[name]:
                raise WorkflowError(
                    f"step {name!r} converges but depends on no step", step=name
                )
        _check_acyclic(self.name, deps)

    def _check_ref(self, name: str, ref: Ref, *, item_allowed: bool) -> None:
        source = ref.source
        if isinstance(source, _Item) and not item_allowed:
            raise WorkflowError(
                f"step {name!r} uses item outside the payload of a map or batch step",
                step=name,
            )
        if isinstance(source, Step) and self.steps.get(source.name) is not source:
            raise WorkflowError(
                f"step {name!r} uses the output of {source!r}, which is not a step of "
                f"workflow {self.name!r}",
                step=name,
            )


def _check_acyclic(workflow: str, deps: dict[str, set[str]]) -> None:
    """Raise a :class:`WorkflowError` naming the steps of a cycle, if there is one."""
    dependents: dict[str, list[str]] = {name: [] for name in deps}
    for name, names in deps.items():
        for dep in names:
            dependents[dep].append(name)
    waiting = {name: len(names) for name, names in deps.items()}
    ready = [name for name, count in waiting.items() if not count]
    while ready:  # Kahn: take away every step whose dependencies are taken away
        for dependent in dependents[ready.pop()]:
            waiting[dependent] -= 1
            if not waiting[dependent]:
                ready.append(dependent)
    stuck = {name for name, count in waiting.items() if count}
    if not stuck:
        return
    # Each step left depends on another step left: follow them until one repeats.
    path = [min(stuck)]
    while path.count(path[-1]) < 2:
        path.append(min(deps[path[-1]] & stuck))
    cycle = path[path.index(path[-1]) :]
    raise WorkflowError(
        f"steps of workflow {workflow!r} form a cycle: "
        + " -> ".join(repr(step) for step in reversed(cycle)),
        step=cycle[0],
    )
