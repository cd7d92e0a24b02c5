"""Run records: what ``trio-pipe run`` writes under ``.trio-pipe/runs/<run-id>/``
and ``trio-pipe runs list|show`` reads back.

A run's folder holds ``run.json`` (the metadata: pipeline, times, status, and each
step's status, times, error and whether the result cache served it), a copy of
the pipeline file as it ran (``pipeline.yaml``), and per step
``steps/<name>/outputs.json`` and, for a shell step, ``stdout.log`` and
``stderr.log``. ``run.json`` is replaced atomically at every step transition, so
that a reader never sees half of it.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import uuid
from collections.abc import Mapping
from typing import Any, Final

import orjson

from ..dispatch._events import StepEvent, StepEventKind
from ..protocol import converter
from ._spec import Pipeline

__all__ = [
    "DEFAULT_RUNS_DIR",
    "RunRecorder",
    "check_run_id",
    "list_runs",
    "new_run_id",
    "read_run",
    "step_outputs",
]

#: Where runs are recorded, relative to the current directory.
DEFAULT_RUNS_DIR: Final = os.path.join(".trio-pipe", "runs")
#: Run ids name folders: plain words only.
_RUN_ID: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def check_run_id(run_id: str) -> str:
    """*run_id*, if it can name a run's folder; else ``ValueError``."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise ValueError(
            f"invalid run id {run_id!r}: 1 to 128 of A-Z a-z 0-9 _ . -, "
            "starting with a letter, digit or _"
        )
    return run_id


def step_outputs(pipeline: Pipeline, name: str, value: Any) -> Any:
    """What ``${{ tasks.NAME.outputs }}`` is for step *name* whose result is *value*:
    a shell step's ``outputs``, any other step's whole result."""
    if name in pipeline.shell_steps and isinstance(value, dict):
        return value.get("outputs", {})
    return value


def new_run_id() -> str:
    """A run id that sorts by start time: ``20261208T021500Z-1a2b3c4d``."""
    now = datetime.datetime.now(datetime.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def _write_json(path: str, value: Any) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "wb") as file:
        file.write(orjson.dumps(value, option=orjson.OPT_INDENT_2))
    os.replace(temporary, path)


class RunRecorder:
    """Records one run of *pipeline* in ``runs_dir/run_id``."""

    def __init__(self, pipeline: Pipeline, runs_dir: str, run_id: str) -> None:
        self.pipeline = pipeline
        self.directory = os.path.join(runs_dir, check_run_id(run_id))
        os.makedirs(os.path.join(self.directory, "steps"), exist_ok=True)
        with open(
            os.path.join(self.directory, "pipeline.yaml"), "w", encoding="utf-8"
        ) as f:
            f.write(pipeline.text)
        self.record: dict[str, Any] = {
            "runId": run_id,
            "pipeline": pipeline.name,
            "file": os.path.abspath(pipeline.path),
            "sha256": hashlib.sha256(pipeline.text.encode()).hexdigest(),
            "status": "running",
            "startedAt": _now(),
            "endedAt": None,
            "error": None,
            "steps": {
                name: {
                    "status": "pending",
                    "kind": "shell" if name in pipeline.shell_steps else "task",
                    "taskType": step.task_type,
                    "startedAt": None,
                    "endedAt": None,
                    "error": None,
                    "cached": False,
                }
                for name, step in pipeline.workflow.steps.items()
            },
        }
        self._save()

    def _save(self) -> None:
        _write_json(os.path.join(self.directory, "run.json"), self.record)

    def step_event(self, event: StepEvent) -> None:
        """Note a step's transition."""
        step = self.record["steps"].get(event.step)
        if step is None:  # not a step of this pipeline's workflow
            return
        step["status"] = event.kind.value
        if event.kind is StepEventKind.STARTED:
            step["startedAt"] = _now()
        else:
            step["endedAt"] = _now()
            step["error"] = event.error
            step["cached"] = event.cached
        self._save()

    def finish(self, outputs: Mapping[str, Any], error: str | None) -> None:
        """Write each completed step's outputs (and a shell step's logs), then the
        run's end: ``completed``, or ``failed`` with *error*."""
        for name, value in outputs.items():
            folder = os.path.join(self.directory, "steps", name)
            os.makedirs(folder, exist_ok=True)
            value = converter.unstructure(value)
            if name in self.pipeline.shell_steps and isinstance(value, dict):
                for stream in ("stdout", "stderr"):
                    with open(os.path.join(folder, f"{stream}.log"), "w") as file:
                        file.write(str(value.get(stream, "")))
            _write_json(
                os.path.join(folder, "outputs.json"),
                step_outputs(self.pipeline, name, value),
            )
        self.record["status"] = "failed" if error else "completed"
        self.record["error"] = error
        self.record["endedAt"] = _now()
        self._save()


def read_run(runs_dir: str, run_id: str) -> dict[str, Any]:
    """The ``run.json`` of run *run_id*. Raises ``FileNotFoundError``."""
    if not _RUN_ID.fullmatch(run_id):
        raise FileNotFoundError(f"no run {run_id!r}")
    path = os.path.join(runs_dir, run_id, "run.json")
    with open(path, "rb") as file:
        record: dict[str, Any] = orjson.loads(file.read())
    return record


def list_runs(runs_dir: str) -> list[dict[str, Any]]:
    """Every run recorded in *runs_dir*, oldest first."""
    try:
        names = sorted(os.listdir(runs_dir))
    except FileNotFoundError:
        return []
    runs = []
    for name in names:
        try:
            runs.append(read_run(runs_dir, name))
        except (OSError, orjson.JSONDecodeError):
            continue  # not a run's folder, or one being created
    return runs
