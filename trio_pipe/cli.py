"""The ``trio-pipe`` command line, over the public API only.

Each subcommand is a pair of functions: ``_add_<name>_parser`` declares its arguments
and ``_cmd_<name>`` runs it and returns the exit status. Add a subcommand by writing
the pair and listing the first in ``_SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import signal
import ssl
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import trio

from . import _cli_run
from ._errors import describe
from .protocol import TaskStatus, converter, validate_worker_id
from .worker import (
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_STDIO_MAX_CONCURRENCY,
    Handlers,
    WorkerConnectionError,
    check_handlers,
    check_token,
    check_websocket_url,
    run_worker,
    serve_stdio,
)

__all__ = ["main"]


EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command-line value is wrong; the message says which and why (exit 2)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, as every other error of the CLI
    (``trio-pipe worker: error: ...``; ``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# -- argument types ----------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_quantity(text: str, unit: str = "seconds") -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {unit}, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of {unit}, got {text}")
    return value


def _positive_seconds(text: str) -> float:
    return _positive_quantity(text)


def _milliseconds_as_seconds(text: str) -> float:
    return _positive_quantity(text, "milliseconds") / 1000


def _non_negative_quantity(text: str, unit: str = "seconds") -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {unit}, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of {unit} >= 0, got {text}")
    return value


def _drain_seconds(text: str) -> float:
    return _non_negative_quantity(text)


def _drain_milliseconds_as_seconds(text: str) -> float:
    return _non_negative_quantity(text, "milliseconds") / 1000


def _type_limit(text: str) -> tuple[str, int]:
    task_type, sep, limit = text.rpartition("=")
    if not sep or not task_type:
        raise argparse.ArgumentTypeError(f"expected TYPE=N, got {text!r}")
    return task_type, _positive_int(limit)


def _websocket_url(text: str) -> str:
    try:
        return check_websocket_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _worker_id(text: str) -> str:
    try:
        return validate_worker_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 24 * 3600}


def _duration(text: str) -> float:
    """``30s``, ``15m``, ``12h``, ``7d``: a positive duration, in seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 30s, 15m, 12h or 7d, got {text!r}"
        )
    seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be a positive duration, got {text!r}")
    return seconds


def _task_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a task id (a UUID): {text!r}") from None


#: What ``--status`` of ``tasks`` takes for Failed, besides the wire names: a dead letter.
_DEAD = "dead"
_FINISHED = "Completed, Failed (or dead), TimedOut, Cancelled"


def _task_status(text: str) -> TaskStatus:
    """A status's wire name, in any case (as the protocol reads it), or ``dead``."""
    if text.lower() == _DEAD:
        return TaskStatus.FAILED
    try:
        status: TaskStatus = converter.structure(text, TaskStatus)
    except ValueError as exc:
        names = ", ".join(member.value for member in TaskStatus)
        raise argparse.ArgumentTypeError(
            f"{exc}; the statuses are {names}, and {_DEAD} (Failed)"
        ) from None
    return status


def _finished_status(text: str) -> TaskStatus | None:
    """A status a finished task can have, or ``any`` (None): what ``purge`` deletes."""
    if text.lower() == "any":
        return None
    try:
        status = _task_status(text)
    except argparse.ArgumentTypeError:
        status = None
    if status is None or not status.is_terminal:
        raise argparse.ArgumentTypeError(
            f"only finished tasks are purged: expected {_FINISHED} or any, got {text!r}"
        )
    return status


# -- worker --------------------------------------------------------------------------


def load_handlers(spec: str) -> Mapping[str, Any]:
    """Import ``package.module:NAME`` (``NAME`` may be dotted) and return the handlers
    it names: a :class:`~trio_pipe.worker.Handlers` or a mapping of task type to
    async handler. The current directory is importable, as with ``python -m``.

    Raises :class:`UsageError` with a precise message for every way this can fail.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise UsageError(
            f"--handlers expects MODULE:NAME (e.g. my_pkg.tasks:HANDLERS), got {spec!r}"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import module {module_name!r}: {exc}") from exc
    except Exception as exc:
        raise UsageError(
            f"importing module {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(
                f"module {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not isinstance(target, Mapping):
        raise UsageError(
            f"{spec} is a {type(target).__name__}, expected a trio_pipe.worker.Handlers "
            "or a dict of task type -> handler"
        )
    if not target:
        raise UsageError(f"{spec} is empty: a worker needs at least one handler")
    try:
        handlers = Handlers(target)
        check_handlers(handlers)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{spec}: {exc}") from exc
    return handlers


def _add_worker_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="run a Python worker that serves handlers to a dispatcher",
        description=(
            "Serve the handlers named by --handlers (async functions, plain functions "
            "run in threads, in_process() ones run in processes) until the dispatcher "
            "shuts the worker down or it is drained. With --url, connect to a "
            "dispatcher over WebSocket, and reconnect with backoff when the "
            "connection is lost. With --stdio, be a worker that a dispatcher spawned: "
            "read messages from stdin and write them to stdout, one JSON object per "
            "line (logs go to stderr); exit when stdin is closed. SIGTERM or SIGINT "
            "drains the worker: no new task, in-flight tasks finish within "
            "--drain-timeout, the rest are cancelled and retried elsewhere; a second "
            "signal stops them at once; exit status 0 after SIGTERM, 130 after "
            "SIGINT. TRIO_PIPE_WORKER_ID, TRIO_PIPE_MAX_CONCURRENCY, "
            "TRIO_PIPE_HEARTBEAT_MS, TRIO_PIPE_DRAIN_TIMEOUT_MS (milliseconds), "
            "TRIO_PIPE_CAFILE, TRIO_PIPE_CERTFILE and TRIO_PIPE_KEYFILE in the "
            "environment stand for the options of the same meaning when those are "
            "not given, and TRIO_PIPE_TOKEN holds the token when --token-file is not "
            "given. A dispatcher that refuses the token (HTTP 401 or 403) or the "
            "registration (close code 1008) ends the worker with status 1."
        ),
    )
    transport = parser.add_mutually_exclusive_group(required=True)
    transport.add_argument(
        "--url", type=_websocket_url, help="dispatcher URL, ws://HOST:PORT"
    )
    transport.add_argument(
        "--stdio",
        action="store_true",
        help="serve over stdin/stdout as a process spawned by the dispatcher",
    )
    parser.add_argument(
        "--handlers",
        required=True,
        metavar="MODULE:NAME",
        help="a Handlers object or dict of handlers, e.g. my_pkg.tasks:HANDLERS",
    )
    parser.add_argument("--worker-id", type=_worker_id, help="default: py-<host>-<random>")
    parser.add_argument(
        "--max-concurrency",
        type=_positive_int,
        metavar="N",
        help=(
            f"default {DEFAULT_MAX_CONCURRENCY} "
            f"({DEFAULT_STDIO_MAX_CONCURRENCY} with --stdio)"
        ),
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=_positive_seconds,
        metavar="S",
        help=(
            f"seconds between heartbeats, default {DEFAULT_HEARTBEAT_INTERVAL:g} "
            "(none with --stdio)"
        ),
    )
    parser.add_argument(
        "--max-concurrency-by-type",
        dest="max_concurrency_by_type",
        action="append",
        type=_type_limit,
        metavar="TYPE=N",
        help="run at most N tasks of TYPE at once (repeatable; registered with the "
        "dispatcher, which sends no more)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=_drain_seconds,
        metavar="S",
        help=(
            "after SIGTERM or SIGINT, seconds in-flight tasks have to finish before "
            f"they are cancelled, default {DEFAULT_DRAIN_TIMEOUT:g}"
        ),
    )
    parser.add_argument(
        "--tag",
        dest="tags",
        action="append",
        default=[],
        metavar="T",
        help="a tag for task routing (repeatable; not with --stdio)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=_positive_seconds,
        metavar="S",
        help=(
            "seconds each step of connecting may take (TCP and TLS, the WebSocket "
            "handshake, registration), default 10 (not with --stdio)"
        ),
    )
    credentials = parser.add_argument_group(
        "credentials (--url only)",
        "A token authenticates the worker; TLS options apply to wss:// URLs.",
    )
    credentials.add_argument(
        "--token-file",
        metavar="PATH",
        help=(
            "read the token from this file (all of it, stripped) and send it as "
            "'Authorization: Bearer' in every handshake; default: TRIO_PIPE_TOKEN"
        ),
    )
    credentials.add_argument(
        "--cafile",
        metavar="PATH",
        help="trust the dispatcher's certificate only if these CA certificates (PEM) "
        "sign it (default: the system's trust store)",
    )
    credentials.add_argument(
        "--certfile",
        metavar="PATH",
        help="present this client certificate (PEM) for mutual TLS; it holds the key "
        "too unless --keyfile is given",
    )
    credentials.add_argument(
        "--keyfile", metavar="PATH", help="the private key of --certfile (PEM)"
    )
    parser.add_argument(
        "--no-reconnect",
        dest="reconnect",
        action="store_false",
        help=(
            "exit with status 1 instead of reconnecting when the connection fails "
            "(not with --stdio)"
        ),
    )
    parser.set_defaults(run=_cmd_worker)
    return parser


# What each kind of worker takes from the command line; an option not given is left
# out, so that the function's own default applies.
_STDIO_OPTIONS = (
    "worker_id",
    "max_concurrency",
    "heartbeat_interval",
    "drain_timeout",
    "max_concurrency_by_type",
)
_URL_OPTIONS = (*_STDIO_OPTIONS, "reconnect", "connect_timeout")


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


# Environment variables that supply options not given on the command line, as the
# conformance kit (docs/conformance.md) sets them for a worker under test.
_ENV_OPTIONS = (
    ("worker_id", "TRIO_PIPE_WORKER_ID", _worker_id),
    ("max_concurrency", "TRIO_PIPE_MAX_CONCURRENCY", _positive_int),
    ("heartbeat_interval", "TRIO_PIPE_HEARTBEAT_MS", _milliseconds_as_seconds),
    ("drain_timeout", "TRIO_PIPE_DRAIN_TIMEOUT_MS", _drain_milliseconds_as_seconds),
)


def _apply_environment(args: argparse.Namespace) -> None:
    for option, variable, parse in _ENV_OPTIONS:
        text = os.environ.get(variable)
        if getattr(args, option) is None and text:
            try:
                setattr(args, option, parse(text))
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"{variable}: {exc}") from None


def _type_limits(args: argparse.Namespace, handlers: Mapping[str, Any]) -> None:
    """``--max-concurrency-by-type`` as a dict, checked against the handlers."""
    if args.max_concurrency_by_type is None:
        return
    default = DEFAULT_STDIO_MAX_CONCURRENCY if args.stdio else DEFAULT_MAX_CONCURRENCY
    most = args.max_concurrency or default
    limits = dict(args.max_concurrency_by_type)
    for task_type, limit in limits.items():
        if task_type not in handlers:
            raise UsageError(
                f"--max-concurrency-by-type: no handler for task type {task_type!r}"
            )
        if limit > most:
            raise UsageError(
                f"--max-concurrency-by-type {task_type}={limit}: more than "
                f"--max-concurrency ({most})"
            )
    args.max_concurrency_by_type = limits


_TLS_OPTIONS = (
    ("cafile", "TRIO_PIPE_CAFILE"),
    ("certfile", "TRIO_PIPE_CERTFILE"),
    ("keyfile", "TRIO_PIPE_KEYFILE"),
)


def _read_token(path: str) -> str:
    """The token in the file at *path*: all of it, without surrounding whitespace."""
    try:
        with open(path, encoding="utf-8") as file:
            return check_token(file.read().strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--token-file: cannot read {path}: {describe(exc)}") from exc
    except ValueError as exc:  # never shows the token: it says what is wrong with it
        raise UsageError(f"--token-file {path}: {exc}") from exc


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The client TLS context that --cafile, --certfile and --keyfile (or their
    variables) describe; ``None`` when none is given (the default context then)."""
    from_options = {name: getattr(args, name) for name, _ in _TLS_OPTIONS}
    if urllib.parse.urlsplit(args.url).scheme == "ws":
        given = [f"--{name}" for name, value in from_options.items() if value]
        if given:
            raise UsageError(f"{', '.join(given)}: TLS applies to wss:// URLs only")
        return None
    paths = {
        name: from_options[name] or os.environ.get(variable) or None
        for name, variable in _TLS_OPTIONS
    }
    if paths["keyfile"] and not paths["certfile"]:
        raise UsageError("--keyfile needs --certfile (the certificate of that key)")
    if not any(paths.values()):
        return None
    try:
        context = ssl.create_default_context(cafile=paths["cafile"])
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--cafile {paths['cafile']}: {describe(exc)}") from exc
    if paths["certfile"]:
        try:
            context.load_cert_chain(paths["certfile"], paths["keyfile"])
        except (OSError, ssl.SSLError) as exc:
            files = " / ".join(
                path for path in (paths["certfile"], paths["keyfile"]) if path
            )
            raise UsageError(f"--certfile/--keyfile {files}: {describe(exc)}") from exc
    return context


def _cmd_worker(args: argparse.Namespace) -> int:
    _apply_environment(args)
    handlers = load_handlers(args.handlers)
    _type_limits(args, handlers)
    worker: Callable[[], Any]
    if args.stdio:
        # The dispatcher registers a spawned worker: there is nothing to tag, and
        # nothing to reconnect to, and no handshake to authenticate.
        for flag, given in (
            ("--tag", args.tags),
            ("--no-reconnect", not args.reconnect),
            ("--connect-timeout", args.connect_timeout is not None),
            ("--token-file", args.token_file),
            *((f"--{name}", getattr(args, name)) for name, _ in _TLS_OPTIONS),
        ):
            if given:
                raise UsageError(f"{flag} applies to --url workers only")
        options = _given(args, _STDIO_OPTIONS)
        worker = partial(serve_stdio, handlers, handle_signals=True, **options)
    else:
        options = _given(args, _URL_OPTIONS)
        if args.token_file is not None:
            options["token"] = _read_token(args.token_file)
        worker = partial(
            run_worker,
            args.url,
            handlers,
            tags=tuple(args.tags),
            handle_signals=True,
            ssl_context=_tls_context(args),
            **options,
        )
    try:
        stopped_by = trio.run(worker)
    except WorkerConnectionError as exc:
        print(f"trio-pipe worker: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_INTERRUPTED if stopped_by is signal.SIGINT else EXIT_OK


class _CaseNames:
    """The kit's case names, as ``choices``: imported on first use only, since
    importing the kit would add ~50 ms to the start of every other subcommand (a
    spawned ``trio-pipe worker`` among them)."""

    def __iter__(self) -> Iterator[str]:
        from .conformance import CASE_NAMES

        return iter(CASE_NAMES)

    def __contains__(self, name: object) -> bool:
        return name in list(self)


def _add_conformance_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "conformance",
        help="check that a worker in any language speaks the protocol",
        description=(
            "Launch the worker command given after '--' and play a scripted dispatcher "
            "to it: each named case checks one rule of the protocol. In WebSocket mode "
            "the dispatcher URL is appended to the command and set in TRIO_PIPE_URL; "
            "the worker also gets TRIO_PIPE_WORKER_ID, TRIO_PIPE_MAX_CONCURRENCY and "
            "TRIO_PIPE_HEARTBEAT_MS (and TRIO_PIPE_TOKEN in the auth case). See "
            "docs/conformance.md. Exit status 1 if a case failed."
        ),
    )
    parser.add_argument(
        "--stdio",
        action="store_true",
        help="the worker speaks on its stdin/stdout (default: it connects over WebSocket)",
    )
    parser.add_argument(
        "--case",
        dest="cases",
        action="append",
        choices=_CaseNames(),
        metavar="NAME",
        help="run only this case (repeatable): %(choices)s",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--time-scale",
        type=_positive_seconds,
        default=1.0,
        metavar="F",
        help="multiply every time limit by F (default 1)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- WORKER COMMAND...")
    parser.set_defaults(run=_cmd_conformance)
    return parser


def _cmd_conformance(args: argparse.Namespace) -> int:
    from .conformance import run_conformance

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UsageError("give the worker command after '--'")
    report = trio.run(
        partial(
            run_conformance,
            command,
            stdio=args.stdio,
            cases=args.cases,
            time_scale=args.time_scale,
        )
    )
    print(report.to_json() if args.json else report.table())
    return EXIT_OK if report.passed else EXIT_FAILURE


def _add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="watch a dispatcher at work: worker processes, tasks, a worker killed",
        description=(
            "Start a dispatcher and a few Python worker processes, dispatch tasks of "
            "mixed priority, kill one worker on purpose, and summarise what happened."
        ),
    )
    parser.add_argument("--tasks", type=_positive_int, default=300, metavar="N")
    parser.add_argument("--workers", type=_positive_int, default=3, metavar="N")
    parser.set_defaults(run=_cmd_demo)
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import _demo

    _demo.run(tasks=args.tasks, workers=args.workers)
    return EXIT_OK


# -- tasks -----------------------------------------------------------------------------

_TASKS_DESCRIPTION = (
    "Read and tend the tasks a dispatcher keeps in a durable store (--store "
    "sqlite:///path/to/tasks.db, the URL given to open_dispatcher). With --url (or "
    "TRIO_PIPE_API_URL) instead, list and show ask a running dispatcher's HTTP API, "
    "which works with every store, the memory store included. list and show open "
    "the store read-only, so they work while a dispatcher runs; requeue and purge open "
    "it for writing, as a dispatcher does, and so fail while one has it open (use the "
    "dispatcher's own requeue() and purge() then). Errors are one line on stderr; the "
    "exit status is 1 if the command failed, 2 if it was called wrongly."
)


class _OneLineErrors(argparse.ArgumentParser):
    """A parser that reports a wrong argument in one line, without the usage (which
    ``--help`` shows): the errors of ``tasks`` are one line each, whatever finds them."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_tasks_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "tasks",
        help="list, show, requeue and purge the tasks in a dispatcher's store",
        description=_TASKS_DESCRIPTION,
    )
    store = _OneLineErrors(add_help=False)
    store.add_argument(
        "--store",
        required=True,
        metavar="URL",
        help="the dispatcher's task store: sqlite:///relative.db or sqlite:////absolute.db",
    )
    source = _OneLineErrors(add_help=False)  # list and show: a store, or the API
    source.add_argument("--store", metavar="URL", help="the dispatcher's task store")
    _add_api_options(source)
    as_json = _OneLineErrors(add_help=False)
    as_json.add_argument(
        "--json", action="store_true", help="print JSON (times in RFC 3339, UTC)"
    )
    actions = parser.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=_OneLineErrors
    )

    listing = actions.add_parser(
        "list",
        parents=[source, as_json],
        help="a page of tasks, oldest first",
        description=(
            "Tasks in the order they were submitted, as a table (times are local) or, "
            "with --json, as one JSON list of every field of each task. When there are "
            "more, the last line is the command for the next page."
        ),
    )
    listing.add_argument(
        "--status",
        type=_task_status,
        metavar="STATUS",
        help="only tasks in this status: Pending, Dispatched, Completed, Failed (or "
        "dead), TimedOut, Cancelled; any case",
    )
    listing.add_argument(
        "--type", dest="task_type", metavar="TYPE", help="only this task type"
    )
    listing.add_argument(
        "--limit", type=_positive_int, default=50, metavar="N", help="default 50"
    )
    listing.add_argument(
        "--after", type=_task_id, metavar="ID", help="start after this task (paging)"
    )

    show = actions.add_parser(
        "show",
        parents=[source, as_json],
        help="one task: every field, every attempt, its payload and result",
        description="One task: every field, every attempt, its payload and its result.",
    )
    show.add_argument("task_id", type=_task_id, metavar="ID")

    requeue = actions.add_parser(
        "requeue",
        parents=[store],
        help="send tasks that ended without completing round again",
        description=(
            "Requeue each task -- one that ended Failed, TimedOut or Cancelled -- with "
            "a fresh deadline and retry budget: the next dispatcher to open the store "
            "runs it. One line per task says what happened; the exit status is 1 if "
            "any could not be requeued."
        ),
    )
    requeue.add_argument("task_ids", type=_task_id, nargs="+", metavar="ID")

    purge = actions.add_parser(
        "purge",
        parents=[store],
        help="delete finished tasks (by default every dead letter)",
        description=(
            "Delete finished tasks that match every filter given -- by default every "
            "task that ended Failed -- and print how many. Unfinished tasks are never "
            "deleted."
        ),
    )
    purge.add_argument(
        "task_ids", type=_task_id, nargs="*", metavar="ID", help="only these tasks"
    )
    purge.add_argument(
        "--status",
        type=_finished_status,
        default=TaskStatus.FAILED,
        metavar="STATUS",
        help=f"{_FINISHED}, or any (default: Failed)",
    )
    purge.add_argument(
        "--older-than",
        type=_duration,
        metavar="DURATION",
        help="only tasks finished longer ago than this: 30s, 15m, 12h, 7d",
    )
    confirm = purge.add_mutually_exclusive_group()
    confirm.add_argument(
        "--yes", action="store_true", help="delete (required unless --dry-run)"
    )
    confirm.add_argument(
        "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
    )
    parser.set_defaults(run=_cmd_tasks)
    return parser


def _cmd_tasks(args: argparse.Namespace) -> int:
    from . import _cli_tasks as tasks

    if args.action == "purge" and not (args.yes or args.dry_run):
        raise UsageError(
            "purge deletes tasks for good: add --yes (or --dry-run to count them)"
        )
    if args.action in ("list", "show"):
        from ._cli_api import api_url
        from ._cli_api import list_tasks as list_api_tasks
        from ._cli_api import show_task as show_api_task

        if args.store is not None and args.url is not None:
            raise UsageError("give --store or --url, not both")
        if args.store is None:
            if api_url(args) is None:
                raise UsageError("give --store URL, or --url (or TRIO_PIPE_API_URL)")
            return list_api_tasks(args) if args.action == "list" else show_api_task(args)
    actions: dict[str, Callable[[], int]] = {
        "list": lambda: tasks.list_tasks(
            args.store,
            status=args.status,
            task_type=args.task_type,
            limit=args.limit,
            after=args.after,
            as_json=args.json,
        ),
        "show": lambda: tasks.show_task(args.store, args.task_id, as_json=args.json),
        "requeue": lambda: tasks.requeue_tasks(args.store, args.task_ids),
        "purge": lambda: tasks.purge_tasks(
            args.store,
            task_ids=args.task_ids or None,
            status=args.status,
            older_than=args.older_than,
            dry_run=args.dry_run,
        ),
    }
    try:
        status = actions[args.action]()
        sys.stdout.flush()  # here, so that a reader gone away is noticed here
    except tasks.CommandFailed as exc:
        print(f"trio-pipe tasks {args.action}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # Whoever read the output stopped (``| head``): stop too, without a word.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    return status


# -- token ---------------------------------------------------------------------------

_TOKEN_DESCRIPTION = (
    "Worker tokens for a dispatcher opened with auth=TokenAuth.from_file(SECRET_FILE, "
    "revocations=FILE) (docs/security.md), and with --api, HTTP API tokens for "
    "http_auth=ApiAuth.from_file(...) (docs/http.md). secret prints a new secret; "
    "create prints a token (its id and expiry go to stderr); revoke adds an id to the "
    "revocation file, which the dispatcher reads again without a restart."
)


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(
            f"expected names separated by commas, got {text!r}"
        )
    return names


def _add_token_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "token",
        help="make and revoke worker and API tokens",
        description=_TOKEN_DESCRIPTION,
    )
    actions = parser.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=_OneLineErrors
    )
    actions.add_parser(
        "secret",
        help="print a new random secret (save it to a file only the dispatcher reads)",
    )
    create = actions.add_parser(
        "create",
        help="print a token for a worker (or the API)",
        description=_TOKEN_DESCRIPTION,
    )
    create.add_argument("--secret-file", required=True, type=Path, metavar="FILE")
    create.add_argument(
        "--expires", required=True, type=_duration, metavar="DURATION",
        help="how long it is valid: 30s, 15m, 12h, 30d",
    )  # fmt: skip
    create.add_argument(
        "--types", type=_names, metavar="T1,T2",
        help="the task types it may claim (default: any)",
    )  # fmt: skip
    create.add_argument(
        "--tags", type=_names, metavar="G1,G2", help="the tags it may claim (default: any)"
    )
    create.add_argument(
        "--worker-id", default="*", metavar="PATTERN",
        help="the worker ids it may register under, a glob such as 'gpu-*' (default: any)",
    )  # fmt: skip
    create.add_argument(
        "--id", dest="token_id", metavar="ID", help="its id, to revoke it (default: random)"
    )
    create.add_argument(
        "--api", choices=("read", "admin"), metavar="SCOPE",
        help="an HTTP API token of this scope, read or admin, instead of a worker token "
        "(--types, --tags and --worker-id do not apply)",
    )  # fmt: skip
    create.add_argument(
        "--subject", default="api", metavar="NAME",
        help="with --api: who holds it, named in refusals (default: api)",
    )  # fmt: skip
    revoke = actions.add_parser(
        "revoke", help="revoke a token by its id", description=_TOKEN_DESCRIPTION
    )
    revoke.add_argument("token_id", metavar="ID")
    revoke.add_argument(
        "--revocations", required=True, type=Path, metavar="FILE",
        help="the dispatcher's revocation file (created if missing)",
    )  # fmt: skip
    parser.set_defaults(run=_cmd_token)
    return parser


def _cmd_token(args: argparse.Namespace) -> int:
    from . import auth

    try:
        if args.action == "secret":
            print(auth.new_secret())
        elif args.action == "create":
            token_id = args.token_id or uuid.uuid4().hex
            if args.api is not None:
                if args.types is not None or args.tags is not None or args.worker_id != "*":
                    raise ValueError(
                        "--types, --tags and --worker-id are for worker tokens"
                    )
                token = auth.ApiAuth.from_file(args.secret_file).create(
                    args.api,
                    expires_in=args.expires,
                    subject=args.subject,
                    token_id=token_id,
                )
            else:
                token = auth.TokenAuth.from_file(args.secret_file).create(
                    expires_in=args.expires,
                    task_types=args.types,
                    tags=args.tags,
                    worker_id=args.worker_id,
                    token_id=token_id,
                )
            expires = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(
                time.time() + args.expires
            ))  # fmt: skip
            print(f"token {token_id}, expires {expires}", file=sys.stderr)
            print(token)
        else:
            auth.revoke(args.revocations, args.token_id)
            print(f"revoked {args.token_id.strip()}", file=sys.stderr)
    except (OSError, ValueError) as exc:
        print(f"trio-pipe token {args.action}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _add_api_options(parser: argparse.ArgumentParser) -> None:
    from ._cli_api import add_api_options

    add_api_options(parser, beside_store=True)


def _add_submit_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ._cli_api import add_submit_parser

    return add_submit_parser(subparsers)


def _add_stats_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ._cli_api import add_stats_parser

    return add_stats_parser(subparsers)


def _add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ._cli_serve import add_parser

    return add_parser(subparsers)


# -- main ------------------------------------------------------------------------------

_SUBCOMMANDS: tuple[Callable[[Any], argparse.ArgumentParser], ...] = (
    _add_worker_parser,
    _add_serve_parser,
    _add_conformance_parser,
    _add_demo_parser,
    _add_tasks_parser,
    _add_submit_parser,
    _add_stats_parser,
    _add_token_parser,
    *_cli_run.SUBCOMMANDS,
)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trio-pipe", description="Typed task dispatch from Trio to workers."
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level on stderr (default INFO)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in _SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``trio-pipe`` with *argv* (default ``sys.argv[1:]``); return the exit status.

    Bad arguments, including a ``--handlers`` that cannot be loaded, print a one-line
    message and exit with status 2 (``SystemExit``); Ctrl-C returns 130, without a
    traceback.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(  # stderr: stdout is the protocol of a --stdio worker
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except UsageError as exc:
        parser.exit(EXIT_USAGE, f"trio-pipe {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as group:  # Ctrl-C inside trio.run, in a nursery's group
        _, rest = group.split(KeyboardInterrupt)
        if rest is not None:
            raise
        return EXIT_INTERRUPTED
