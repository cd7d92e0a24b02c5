"""``trio-pipe run PIPELINE.yaml`` and ``trio-pipe runs list|show``: YAML pipelines
from the command line (docs/workflows.md). :mod:`trio_pipe.cli` registers the two
commands with :data:`SUBCOMMANDS`; everything else is here, imported when a command
runs so that no other command loads PyYAML or rich."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ._errors import TrioPipeError
from ._table import aligned

if TYPE_CHECKING:
    from .pipeline import Pipeline, RunOutcome

__all__ = ["SUBCOMMANDS"]

_EXIT_OK = 0
_EXIT_FAILURE = 1
_EXIT_USAGE = 2


def _add_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run a YAML pipeline",
        description=(
            "Run the pipeline in FILE: its shell tasks on a local worker, its task types "
            "on the workers it declares and on any worker that connects to the URL "
            "printed first. Steps show live; the run is recorded under "
            "RUNS_DIR/<run id>/. Exit status: 0 if every step completed, 1 if one "
            "failed, 2 if the file is not valid (file:line:column: message)."
        ),
    )
    parser.add_argument("file", metavar="FILE", help="the pipeline (YAML)")
    _runs_dir_argument(parser)
    parser.add_argument(
        "--run-id",
        type=_run_id,
        help="name the run (default: start time and a random suffix); running again "
        "with the same id and a durable --store resumes it, rerunning no step that "
        "completed",
    )
    parser.add_argument(
        "--store", metavar="URL", help="the task store (default memory://; sqlite:///F)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="port for WebSocket workers to connect to (default: any free one)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--check", action="store_true", help="only validate the file, and say so"
    )
    parser.set_defaults(run=_cmd_run)
    return parser


def _add_runs_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "runs",
        help="list and show recorded pipeline runs",
        description="Read back the runs `trio-pipe run` recorded.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every recorded run, oldest first")
    _runs_dir_argument(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = actions.add_parser("show", help="one run: its steps and where their files are")
    show.add_argument("run_id", metavar="RUN_ID")
    _runs_dir_argument(show)
    show.add_argument("--json", action="store_true", help="print run.json")
    parser.set_defaults(run=_cmd_runs)
    return parser


def _run_id(text: str) -> str:
    from .pipeline._runs import check_run_id

    try:
        return check_run_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _runs_dir_argument(parser: argparse.ArgumentParser) -> None:
    from .pipeline._runs import DEFAULT_RUNS_DIR

    parser.add_argument(
        "--runs-dir",
        default=DEFAULT_RUNS_DIR,
        help=f"where runs are recorded (default {DEFAULT_RUNS_DIR})",
    )


SUBCOMMANDS: tuple[Callable[[Any], argparse.ArgumentParser], ...] = (
    _add_run_parser,
    _add_runs_parser,
)


def _cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .pipeline import PipelineError, load_pipeline, new_run_id
    from .pipeline._run import ProgressDisplay, why

    try:
        pipeline = load_pipeline(args.file)
    except PipelineError as exc:
        print(f"trio-pipe run: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    except OSError as exc:
        print(f"trio-pipe run: cannot read {args.file}: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    if args.check:
        print(
            f"{args.file}: pipeline {pipeline.name!r}, {len(pipeline.workflow.steps)} tasks"
        )
        return _EXIT_OK
    console = Console(highlight=False)
    run_id = args.run_id or new_run_id()
    console.print(f"run {run_id}", markup=False)
    with ProgressDisplay(pipeline, console) as display:
        try:
            outcome = _run(pipeline, args, run_id, console, display)
        except (OSError, ValueError, TrioPipeError, ExceptionGroup) as exc:
            # A worker that cannot start, a store that cannot open: the record
            # says so too.
            print(f"trio-pipe run: {why(exc)}", file=sys.stderr)
            return _EXIT_FAILURE
    if outcome.error is not None:
        console.print(f"failed: {outcome.error}", markup=False)
    console.print(f"recorded in {outcome.directory}", markup=False)
    return _EXIT_FAILURE if outcome.error is not None else _EXIT_OK


def _run(
    pipeline: Pipeline, args: argparse.Namespace, run_id: str, console: Any, display: Any
) -> RunOutcome:
    from .pipeline import run_pipeline

    return trio.run(
        lambda: run_pipeline(
            pipeline,
            runs_dir=args.runs_dir,
            run_id=run_id,
            store=args.store,
            host=args.host,
            port=args.port,
            on_event=display,
            on_listening=lambda url: console.print(
                f"workers may connect to {url}", markup=False
            ),
        )
    )


def _cmd_runs(args: argparse.Namespace) -> int:
    from .pipeline import list_runs, read_run

    if args.action == "list":
        runs = list_runs(args.runs_dir)
        if args.json:
            print(json.dumps(runs, indent=2))
            return _EXIT_OK
        rows: list[tuple[str, ...]] = [
            ("RUN", "PIPELINE", "STATUS", "STARTED", "TOOK", "STEPS")
        ]
        for run in runs:
            steps = run["steps"].values()
            done = sum(step["status"] == "completed" for step in steps)
            rows.append(
                (
                    run["runId"],
                    run["pipeline"],
                    run["status"],
                    run["startedAt"],
                    _took(run["startedAt"], run["endedAt"]),
                    f"{done}/{len(steps)} completed",
                )
            )
        print("\n".join(aligned(rows)))
        return _EXIT_OK
    try:
        run = read_run(args.runs_dir, args.run_id)
    except (OSError, ValueError):
        print(f"trio-pipe runs: no run {args.run_id!r} in {args.runs_dir}", file=sys.stderr)
        return _EXIT_FAILURE
    if args.json:
        print(json.dumps(run, indent=2))
        return _EXIT_OK
    print(f"run       {run['runId']}")
    print(f"pipeline  {run['pipeline']} ({run['file']}, sha256 {run['sha256'][:12]})")
    print(f"status    {run['status']}")
    print(f"started   {run['startedAt']}")
    print(f"took      {_took(run['startedAt'], run['endedAt'])}")
    if run["error"]:
        print(f"error     {run['error']}")
    rows = [("STEP", "KIND", "STATUS", "TOOK", "ERROR")]
    for name, step in run["steps"].items():
        rows.append(
            (
                name,
                step["kind"],
                step["status"] + (" (cached)" if step.get("cached") else ""),
                _took(step["startedAt"], step["endedAt"]),
                step["error"] or "",
            )
        )
    print()
    print("\n".join(aligned(rows)))
    return _EXIT_OK


def _took(started: str | None, ended: str | None) -> str:
    if not started or not ended:
        return "-"
    seconds = (
        datetime.datetime.fromisoformat(ended) - datetime.datetime.fromisoformat(started)
    ).total_seconds()
    return f"{seconds:.1f}s"
