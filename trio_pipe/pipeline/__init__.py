"""YAML pipelines: a file of tasks -- shell commands, or task types that workers in
any language serve -- compiled to a :class:`~trio_pipe.workflow.Workflow` and run by
``trio-pipe run``. Needs the ``pipelines`` extra. See docs/workflows.md."""

from .._errors import PipelineError
from ._run import RunOutcome, run_pipeline
from ._runs import DEFAULT_RUNS_DIR, list_runs, new_run_id, read_run
from ._shell import SHELL_TASK
from ._spec import (
    DockerDecl,
    Pipeline,
    SshDecl,
    WorkerDecl,
    load_pipeline,
    parse_pipeline,
)

__all__ = [
    "DEFAULT_RUNS_DIR",
    "SHELL_TASK",
    "DockerDecl",
    "Pipeline",
    "PipelineError",
    "RunOutcome",
    "SshDecl",
    "WorkerDecl",
    "list_runs",
    "load_pipeline",
    "new_run_id",
    "parse_pipeline",
    "read_run",
    "run_pipeline",
]
