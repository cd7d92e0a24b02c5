"""Running a pipeline: a dispatcher, the workers the pipeline declares, its workflow,
a live display of its steps and a record of the run."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import trio

from .._errors import WorkflowFailed, describe
from .._version import __version__
from ..dispatch import Dispatcher, open_dispatcher
from ..dispatch._events import StepEvent, StepEventKind
from ..store import Store
from ._runs import RunRecorder, step_outputs
from ._shell import SHELL_TASK
from ._spec import SHELL_WORKER, Pipeline

__all__ = ["ProgressDisplay", "RunOutcome", "run_pipeline", "why"]

#: Events the recorder may fall behind by (each task adds a few of its own).
_EVENT_BUFFER = 1 << 16


@attrs.frozen
class RunOutcome:
    run_id: str
    directory: str
    #: Each completed step's output (a shell step's: its ``outputs``).
    outputs: dict[str, Any]
    #: Why the run failed (``None``: it completed).
    error: str | None


async def run_pipeline(
    pipeline: Pipeline,
    *,
    runs_dir: str,
    run_id: str,
    store: Store | str | None = None,
    host: str = "127.0.0.1",
    port: int | None = 0,
    on_event: Callable[[StepEvent], object] = lambda event: None,
    on_listening: Callable[[str], object] = lambda url: None,
) -> RunOutcome:
    """Run *pipeline* as run *run_id*, recorded in ``runs_dir/run_id``.

    Opens a dispatcher (listening on *host*:*port* for workers that serve the
    pipeline's task types, ``port=None``: none; *store*, default in memory),
    spawns the shell worker and the workers the pipeline declares, runs the
    workflow, and closes it all. Each step event goes to the record and to
    *on_event*. A failed step does not raise: the outcome says why the run failed.
    Cancelled, the running steps are killed and the record says ``failed``; so it
    does, with the error, if a worker cannot be started (``OSError``, ``InvalidSpec``
    ..., raised, perhaps in an exception group from the dispatcher's nursery).
    """
    recorder = RunRecorder(pipeline, runs_dir, run_id)
    outputs: dict[str, Any] = {}
    error: str | None = None
    try:
        async with open_dispatcher(host, port, store=store) as dispatcher:
            if port is not None:
                on_listening(dispatcher.url)
            await _spawn_workers(dispatcher, pipeline)
            async with dispatcher.events(buffer=_EVENT_BUFFER) as events:

                async def follow() -> None:
                    async for event in events:
                        if isinstance(event, StepEvent) and event.run_id == run_id:
                            recorder.step_event(event)
                            on_event(event)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(follow)
                    try:
                        outputs = await dispatcher.run_workflow(
                            pipeline.workflow, run_id=run_id
                        )
                    except WorkflowFailed as exc:
                        outputs = dict(exc.outputs)
                        error = str(exc)
                    finally:
                        events.close()  # follow() ends once it has read them all
    except BaseException as exc:
        error = why(exc)
        raise
    finally:
        recorder.finish(outputs, error)
    visible = {name: step_outputs(pipeline, name, value) for name, value in outputs.items()}
    return RunOutcome(run_id, recorder.directory, visible, error)


def why(exc: BaseException) -> str:
    """Why a run stopped before its end, in one line: the first error that is not
    a cancellation (the nurseries it went through may hold several)."""
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        if rest is None:
            return "the run was cancelled"
        exc = rest
        while isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
    if isinstance(exc, trio.Cancelled):
        return "the run was cancelled"
    return f"the run stopped: {describe(exc)}"


async def _spawn_workers(dispatcher: Dispatcher, pipeline: Pipeline) -> None:
    directory = pipeline.directory
    if pipeline.shell_steps:
        await dispatcher.spawn_stdio(
            [
                sys.executable, "-m", "trio_pipe", "--log-level", "WARNING", "worker",
                "--stdio", "--handlers", "trio_pipe.pipeline._shell:HANDLERS",
                "--max-concurrency", str(pipeline.concurrency),
            ],
            [SHELL_TASK],
            worker_id=SHELL_WORKER,
            max_concurrency=pipeline.concurrency,
            tags=[f"version:{__version__}"],  # what cached shell steps are keyed by
            cwd=directory,
        )  # fmt: skip
    for worker in pipeline.workers:
        if worker.ssh is not None:
            assert worker.command is not None
            await dispatcher.spawn_ssh(
                worker.ssh.host,
                list(worker.command),
                list(worker.tasks),
                user=worker.ssh.user,
                port=worker.ssh.port,
                known_hosts=worker.ssh.known_hosts,
                client_keys=list(worker.ssh.client_keys),
                worker_id=worker.name,
                max_concurrency=worker.max_concurrency,
                tags=worker.tags,
                env=worker.env or None,
            )
        elif worker.docker is not None:
            image = worker.docker.image
            await dispatcher.spawn_docker(
                image,
                list(worker.tasks),
                command=None if worker.command is None else list(worker.command),
                worker_id=worker.name,
                max_concurrency=worker.max_concurrency,
                tags=(*worker.tags, f"digest:{await _image_id(image)}"),
                env=worker.env or None,
                network=worker.docker.network,
            )
        elif worker.command is not None:
            await dispatcher.spawn_stdio(
                list(worker.command),
                list(worker.tasks),
                worker_id=worker.name,
                max_concurrency=worker.max_concurrency,
                tags=worker.tags,
                env=worker.env or None,
                cwd=directory,
            )
        else:
            assert worker.wasm is not None
            await dispatcher.spawn_wasm(
                worker.wasm,
                list(worker.tasks),
                worker_id=worker.name,
                max_concurrency=worker.max_concurrency,
                tags=worker.tags,
            )


async def _image_id(image: str) -> str:
    """The id of a local Docker image (``sha256:...``): what its workers' results are
    cached by. Raises ``OSError`` if docker cannot say."""
    found = await trio.run_process(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    if found.returncode != 0:
        raise OSError(f"docker image inspect {image}: {found.stderr.decode().strip()}")
    return str(found.stdout.decode().strip())


class ProgressDisplay:
    """The live table of a run's steps (rich), or one line per transition when the
    output is not a terminal."""

    _STYLE: ClassVar[dict[str, str]] = {
        "pending": "dim",
        StepEventKind.STARTED.value: "yellow",
        StepEventKind.COMPLETED.value: "green",
        StepEventKind.FAILED.value: "bold red",
        StepEventKind.SKIPPED.value: "dim",
        StepEventKind.BLOCKED.value: "red",
        StepEventKind.CANCELLED.value: "magenta",
    }

    def __init__(self, pipeline: Pipeline, console: Any) -> None:
        self.pipeline = pipeline
        self.console = console
        self.status = {name: "pending" for name in pipeline.workflow.steps}
        self.started: dict[str, float] = {}
        self.took: dict[str, float] = {}
        self.notes: dict[str, str] = {}
        self.live: Any = None

    def __enter__(self) -> ProgressDisplay:
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self.table(), console=self.console, refresh_per_second=8)
            self.live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.live is not None:
            self.live.update(self.table())
            self.live.__exit__(None, None, None)

    def table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"pipeline {self.pipeline.name}", title_justify="left")
        table.add_column("step")
        table.add_column("status")
        table.add_column("time", justify="right")
        table.add_column("note", overflow="fold")
        now = time.monotonic()
        for name, status in self.status.items():
            took = self.took.get(name)
            if took is None and name in self.started:
                took = now - self.started[name]
            table.add_row(
                name,
                f"[{self._STYLE.get(status, '')}]{status}[/]",
                "" if took is None else f"{took:.1f}s",
                self.notes.get(name, ""),
            )
        return table

    def __call__(self, event: StepEvent) -> None:
        self.status[event.step] = event.kind.value
        if event.kind is StepEventKind.STARTED:
            self.started[event.step] = time.monotonic()
        elif event.step in self.started:
            self.took[event.step] = time.monotonic() - self.started[event.step]
        if event.error:
            self.notes[event.step] = event.error
        elif event.cached:
            self.notes[event.step] = "cached"
        if self.live is not None:
            self.live.update(self.table())
        else:
            note = (
                f": {event.error}" if event.error else " (cached)" if event.cached else ""
            )
            self.console.print(f"{event.step} {event.kind.value}{note}", markup=False)
