"""Workflows: DAGs of steps, each a task that any worker (in any language) serves, or
a nested workflow. Build a :class:`Workflow`, then ``await
dispatcher.run_workflow(workflow, inputs)``. See docs/workflows.md."""

from .._errors import WorkflowError, WorkflowFailed
from ..dispatch._events import StepEvent, StepEventKind
from ._model import Ref, Step, StepKind, Text, Workflow, item

__all__ = [
    "Ref",
    "Step",
    "StepEvent",
    "StepEventKind",
    "StepKind",
    "Text",
    "Workflow",
    "WorkflowError",
    "WorkflowFailed",
    "item",
]
