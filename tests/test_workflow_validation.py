"""Every way a workflow can be invalid is refused before anything runs, naming the
step at fault."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

import trio_pipe
from trio_pipe import TaskSpec, WorkflowError
from trio_pipe.workflow import Workflow, item


@attrs.frozen
class Ping(TaskSpec[str], task_type="ping"):
    text: str


def duplicate() -> Workflow:
    wf = Workflow("w")
    wf.step("a", "t")
    wf.step("a", "t")
    return wf


def unknown_dependency() -> Workflow:
    wf = Workflow("w")
    wf.step("a", "t", depends_on=["ghost"])
    return wf


def cycle() -> Workflow:
    wf = Workflow("w")
    wf.step("a", "t", depends_on=["c"])
    wf.step("b", "t", wf.steps["a"].output)
    wf.step("c", "t", depends_on=["b"])
    wf.step("d", "t")  # not in the cycle
    return wf


def self_dependency() -> Workflow:
    wf = Workflow("w")
    wf.step("a", "t", depends_on=["a"])
    return wf


def foreign_reference() -> Workflow:
    other = Workflow("other")
    elsewhere = other.step("x", "t")
    wf = Workflow("w")
    wf.step("a", "t", {"value": elsewhere.output})
    return wf


def item_outside_fan_out() -> Workflow:
    wf = Workflow("w")
    wf.step("a", "t", {"value": item})
    return wf


def item_in_map_over() -> Workflow:
    wf = Workflow("w")
    wf.map("a", "t", over=item)
    return wf


def unknown_branch_step() -> Workflow:
    wf = Workflow("w")
    wf.decision("pick", "t", branches={"left": ["nowhere"]})
    return wf


def two_decisions() -> Workflow:
    wf = Workflow("w")
    wf.decision("one", "t", branches={"x": ["a"]})
    wf.decision("two", "t", branches={"y": ["a"]})
    wf.step("a", "t")
    return wf


def decision_gating_its_dependency() -> Workflow:
    wf = Workflow("w")
    a = wf.step("a", "t")
    wf.decision("pick", "t", a.output, branches={"x": ["a"]})
    return wf


def valid() -> Workflow:
    wf = Workflow("w")
    wf.step("a", "t")
    return wf


def converge_without_dependencies() -> Workflow:
    wf = Workflow("w")
    wf.step("a", "t", converge=True)
    return wf


def empty() -> Workflow:
    return Workflow("w")


def nested_missing_input() -> Workflow:
    inner = Workflow("inner")
    inner.step("uses", "t", inner.input("n"))
    wf = Workflow("w")
    wf.workflow("sub", inner, {})
    return wf


def nested_inside_itself() -> Workflow:
    wf = Workflow("w")
    wf.step("a", "t")
    wf.workflow("again", wf)
    return wf


def nested_invalid() -> Workflow:
    inner = Workflow("inner")
    inner.step("a", "t", depends_on=["ghost"])
    wf = Workflow("w")
    wf.workflow("sub", inner)
    return wf


def output_with_item() -> Workflow:
    wf = Workflow("w")
    wf.step("a", "t")
    wf.output("o", item)
    return wf


def output_of_foreign_step() -> Workflow:
    other = Workflow("other")
    x = other.step("x", "t")
    wf = Workflow("w")
    wf.step("a", "t")
    wf.output("o", x.output)
    return wf


@pytest.mark.parametrize(
    ("build", "step", "message"),
    [
        (unknown_dependency, "a", "step 'a' depends on 'ghost', which is not a step"),
        (cycle, "a", "form a cycle: 'a' -> 'b' -> 'c' -> 'a'"),
        (self_dependency, "a", "form a cycle: 'a' -> 'a'"),
        (foreign_reference, "a", "step 'a' uses the output of <Step 'x' (task) of 'other'>"),
        (item_outside_fan_out, "a", "step 'a' uses item outside the payload of a map"),
        (item_in_map_over, "a", "step 'a' uses item outside the payload of a map"),
        (unknown_branch_step, "pick", "branch 'left' of decision step 'pick' names 'nowhere'"),
        (two_decisions, "a", "step 'a' is in branches of two decisions, 'one' and 'two'"),
        (decision_gating_its_dependency, "a", "form a cycle"),
        (converge_without_dependencies, "a", "step 'a' converges but depends on no step"),
        (empty, None, "workflow 'w' has no steps"),
        (nested_missing_input, "sub", "step 'sub' does not give input 'n' of workflow "
         "'inner' (used by its step 'uses')"),
        (nested_inside_itself, "again", "step 'again' nests workflow 'w' inside itself"),
        (nested_invalid, "sub/a", "in step 'sub': step 'a' depends on 'ghost'"),
        (output_with_item, None, "output 'o' of workflow 'w' uses item"),
        (output_of_foreign_step, None, "output 'o' of workflow 'w' uses the output of"),
    ],
)  # fmt: skip
def test_validate_refuses_an_invalid_workflow_naming_the_step(
    build: Callable[[], Workflow], step: str | None, message: str
) -> None:
    with pytest.raises(WorkflowError) as refused:
        build().validate()
    assert refused.value.step == step
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("build", "step", "message"),
    [
        (duplicate, "a", "workflow 'w' already has a step 'a'"),
        (lambda: Workflow("w").step("", "t"), "", "invalid step name ''"),
        (lambda: Workflow("w").step("a/b", "t"), "a/b", "invalid step name 'a/b'"),
        (lambda: Workflow("w").step("a", ""), "a", "step 'a': task must be a task type"),
        (lambda: Workflow("w").step("a", 42), "a", "step 'a': task must be a task type"),  # type: ignore[arg-type]
        (lambda: Workflow("w").step("a", Ping("x"), {"text": "y"}), "a",
         "step 'a' gives a typed task instance and a payload"),
        (lambda: Workflow("w").step("a", "t", retries=-1), "a",
         "step 'a': retries must be an int >= 0, not -1"),
        (lambda: Workflow("w").step("a", "t", timeout_ms=0), "a",
         "step 'a': timeout_ms must be an int >= 1, not 0"),
        (lambda: Workflow("w").map("a", "t", over=[], concurrency=0), "a",
         "step 'a': concurrency must be an int >= 1, not 0"),
        (lambda: Workflow("w").batch("a", "t", 10, size=0), "a",
         "step 'a': size must be an int >= 1, not 0"),
        (lambda: Workflow("w").step("a", "t", priority="Urgent"), "a",  # type: ignore[arg-type]
         "step 'a': priority must be a Priority, not 'Urgent'"),
        (lambda: Workflow("w").step("a", "t", tag="gpu", worker="w1"), "a",
         "step 'a' is pinned to worker 'w1' and to tag 'gpu'"),
        (lambda: Workflow("w").decision("a", "t", branches={}), "a",
         "decision step 'a' has no branches"),
        (lambda: Workflow("w").decision("a", "t", branches={"": ["b"]}), "a",
         "decision step 'a': branch names are non-empty strs"),
        (lambda: Workflow("w").workflow("a", "not a workflow"), "a",  # type: ignore[arg-type]
         "step 'a': expected a Workflow to nest"),
    ],
)  # fmt: skip
def test_building_an_invalid_step_is_refused_naming_it(
    build: Callable[[], Any], step: str, message: str
) -> None:
    with pytest.raises(WorkflowError) as refused:
        build()
    assert refused.value.step == step
    assert message in str(refused.value)


def test_workflow_and_output_names_are_checked() -> None:
    with pytest.raises(WorkflowError, match="invalid workflow name"):
        Workflow("no spaces")
    wf = Workflow("w")
    wf.output("o", 1)
    with pytest.raises(WorkflowError, match="already has an output 'o'"):
        wf.output("o", 2)
    with pytest.raises(WorkflowError, match="invalid input name"):
        wf.input("")


async def test_run_workflow_refuses_a_missing_input_naming_the_step() -> None:
    wf = Workflow("w")
    wf.step("a", "t", {"n": wf.input("n")})
    async with trio_pipe.open_dispatcher(port=None) as d:
        with pytest.raises(WorkflowError) as refused:
            await d.run_workflow(wf, {"m": 1})
        assert (await d.tasks()) == []  # nothing ran
    assert refused.value.step == "a"
    assert "step 'a' needs the input 'n', which was not given" in str(refused.value)


async def test_run_workflow_validates_before_anything_runs() -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        wf = cycle()
        with pytest.raises(WorkflowError, match="cycle"):
            await d.run_workflow(wf)
        with pytest.raises(WorkflowError, match="run_id must be a non-empty str"):
            await d.run_workflow(valid(), run_id="")
        assert (await d.tasks()) == []


def test_one_name_stands_for_a_list_of_one_in_depends_on_and_branches() -> None:
    wf = Workflow("w")
    wf.decision("pick", "t", branches={"left": "left-step", "right": ["right-step"]})
    wf.step("left-step", "t", depends_on="other")
    wf.step("right-step", "t")
    other = wf.step("other", "t")
    wf.step("last", "t", depends_on=other)
    wf.validate()
    assert wf.steps["pick"].branches == {"left": ("left-step",), "right": ("right-step",)}
    assert wf.steps["left-step"].depends_on == ("other",)
    assert wf.steps["last"].depends_on == ("other",)
