"""``trio-pipe submit``, ``trio-pipe stats`` and ``trio-pipe tasks list|show --url``:
the command line as a client of a dispatcher's HTTP API (docs/http.md).

The API is named by ``--url`` (or ``TRIO_PIPE_API_URL``) and a token by ``--token``
(or ``TRIO_PIPE_API_TOKEN``), sent as ``Authorization: Bearer``. Requests are made with
httpx, one connection kept for a whole command. Every failure is one line on stderr
and exit status 1: the server cannot be reached, refuses the token (401) or the
scope (403), refuses the request (its ``error`` code and message), or does not answer
JSON. Needs the ``http`` extra (httpx, and rich for the progress bar).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._errors import describe
from ._table import aligned
from .cli import EXIT_FAILURE, EXIT_OK, UsageError

__all__ = ["add_api_options", "add_stats_parser", "add_submit_parser", "api_url"]

URL_VARIABLE = "TRIO_PIPE_API_URL"
TOKEN_VARIABLE = "TRIO_PIPE_API_TOKEN"
_NONE = "-"
_PRIORITIES = ("low", "normal", "high", "critical")


class CommandFailed(Exception):
    """The command could not do what was asked; the message says why (exit 1)."""


class Refused(CommandFailed):
    """The API answered with an error: its status, ``error`` code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


# -- the client ----------------------------------------------------------------------


class ApiClient:
    """One connection to the API at *url*, for the length of a command."""

    def __init__(self, url: str, token: str | None) -> None:
        import httpx

        if logging.getLogger().level > logging.DEBUG:
            logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line a request
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._httpx = httpx
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, path: str, *, timeout: float = 30.0, **options: Any) -> Any:
        """The JSON body of the answer to *method* *path*; raises :class:`Refused` for
        an error answer and :class:`CommandFailed` for everything else that fails."""
        try:
            response = self._client.request(method, path, timeout=timeout, **options)
        except self._httpx.HTTPError as exc:
            raise CommandFailed(
                f"cannot reach the HTTP API at {self.url}: {describe(exc)}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            raise CommandFailed(
                f"{self.url}{path} answered {response.status_code} without JSON: is "
                "it a trio-pipe HTTP API?"
            ) from None
        if response.is_success:
            return body
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            raise Refused(response.status_code, body["error"], str(body.get("message")))
        raise CommandFailed(f"{self.url}{path} answered {response.status_code}: {body}")


def add_api_options(parser: argparse.ArgumentParser, *, beside_store: bool = False) -> None:
    """``--url`` and ``--token``, which default to their environment variables
    (*beside_store*: for a command that reads a store without ``--url``)."""
    parser.add_argument(
        "--url",
        metavar="URL",
        help=f"the dispatcher's HTTP API, http://HOST:PORT (default: ${URL_VARIABLE})"
        + ("; selects the API instead of a store" if beside_store else ""),
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"an API token (default: ${TOKEN_VARIABLE}, which keeps it out of the "
        "process list)",
    )


def api_url(args: argparse.Namespace) -> str | None:
    """The API's URL from ``--url`` or the environment, checked; ``None`` if neither."""
    url: str | None = args.url or os.environ.get(URL_VARIABLE) or None
    if url is not None and not url.startswith(("http://", "https://")):
        raise UsageError(f"--url: expected http://HOST:PORT or https://..., got {url!r}")
    return url


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[ApiClient]:
    url = api_url(args)
    if url is None:
        raise UsageError(f"give --url (or set {URL_VARIABLE})")
    client = ApiClient(url, args.token or os.environ.get(TOKEN_VARIABLE))
    try:
        yield client
    finally:
        client.close()


def _run(name: str, args: argparse.Namespace, action: Any) -> int:
    """Run *action* with a client; one line on stderr and status 1 if it fails."""
    try:
        with _client(args) as client:
            status: int = action(client)
            return status
    except CommandFailed as exc:
        print(f"trio-pipe {name}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


# -- submit --------------------------------------------------------------------------


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None


def add_submit_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "submit",
        help="submit tasks through a dispatcher's HTTP API",
        description=(
            "Submit one task (TYPE and its JSON payload) and print its id; with "
            "--wait, wait for it and print its result's payload (exit status 1 if it "
            "did not complete). With --from FILE, submit every line of FILE (JSON "
            'Lines: each a POST /tasks body, such as {"taskType": "resize", '
            '"payload": {...}}; - for stdin) with a progress bar, report each line '
            "that fails with its number and go on, and print a summary (exit status "
            "1 if any line failed). See docs/http.md."
        ),
    )
    parser.add_argument("task_type", nargs="?", metavar="TYPE")
    parser.add_argument("payload", nargs="?", type=_json_value, metavar="JSON")
    parser.add_argument("--from", dest="source", metavar="FILE", help="JSON Lines")
    parser.add_argument("--priority", choices=_PRIORITIES)
    parser.add_argument("--timeout-ms", type=int, metavar="MS")
    parser.add_argument("--max-retries", type=int, metavar="N")
    parser.add_argument("--idempotency-key", metavar="KEY")
    parser.add_argument(
        "--wait", action="store_true", help="wait for the task and print its result"
    )
    add_api_options(parser)
    parser.set_defaults(run=_cmd_submit)
    return parser


def _cmd_submit(args: argparse.Namespace) -> int:
    options = {
        "priority": args.priority,
        "timeoutMs": args.timeout_ms,
        "maxRetries": args.max_retries,
        "idempotencyKey": args.idempotency_key,
    }
    given = {key: value for key, value in options.items() if value is not None}
    if args.source is not None:
        if args.task_type is not None or given or args.wait:
            raise UsageError(
                "--from takes no TYPE, JSON or task options: each line has them"
            )
        return _run("submit", args, lambda client: _submit_lines(client, args.source))
    if args.task_type is None:
        raise UsageError("give TYPE and JSON, or --from FILE")
    body = {"taskType": args.task_type, "payload": args.payload, **given}
    return _run("submit", args, lambda client: _submit_one(client, body, args.wait))


def _submit_one(client: ApiClient, body: Mapping[str, Any], wait: bool) -> int:
    task = client.call("POST", "/tasks", json=body)
    if not wait:
        print(task["id"])
        return EXIT_OK
    while not task["done"]:
        task = client.call(
            "GET", f"/tasks/{task['id']}/wait", params={"timeout": 60}, timeout=90
        )
    result = task["result"] or {}
    if task["status"] == "Completed":
        print(json.dumps(result.get("payload")))
        return EXIT_OK
    error = result.get("error") or {}
    raise CommandFailed(
        f"task {task['id']} ended {task['status']}: {error.get('code', _NONE)}: "
        f"{error.get('message', '')}".rstrip(": ")
    )


def _read_lines(source: str) -> list[tuple[int, str]]:
    """The non-blank lines of *source* (``-``: stdin), with their numbers."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandFailed(f"cannot read {source}: {describe(exc)}") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _submit_lines(client: ApiClient, source: str) -> int:
    """Submit each line of *source*; a line that fails is reported and the rest go
    on, but a failure that every line would meet (no server, a refused token) stops."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    name = "stdin" if source == "-" else source
    lines = _read_lines(source)
    new = 0
    failed: list[int] = []
    console = Console(stderr=True, highlight=False)
    progress = Progress(
        TextColumn("submitting"), BarColumn(), MofNCompleteColumn(), console=console
    )
    with progress:
        bar = progress.add_task("submit", total=len(lines))
        for number, line in lines:
            try:
                body = json.loads(line)
                if not isinstance(body, dict):
                    raise ValueError("expected a JSON object, a POST /tasks body")
                client.call("POST", "/tasks", json=body)
            except Refused as exc:
                if exc.status in (401, 403):
                    raise CommandFailed(f"{exc} (at {name}:{number})") from None
                failed.append(number)
                progress.console.print(
                    f"{name}:{number}: {exc}", markup=False, soft_wrap=True
                )
            except ValueError as exc:
                failed.append(number)
                progress.console.print(
                    f"{name}:{number}: not a task: {exc}", markup=False, soft_wrap=True
                )
            except CommandFailed as exc:
                raise CommandFailed(
                    f"{exc}; stopped at {name}:{number} ({new} submitted before it)"
                ) from None
            else:
                new += 1
            progress.advance(bar)
    summary = f"submitted {new} of {len(lines)} tasks"
    if failed:
        shown = ", ".join(map(str, failed[:20])) + (", ..." if len(failed) > 20 else "")
        summary += f"; {len(failed)} failed (lines {shown})"
    print(summary)
    return EXIT_FAILURE if failed else EXIT_OK


# -- stats ---------------------------------------------------------------------------


def add_stats_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "stats",
        help="a dispatcher's pool statistics, through its HTTP API",
        description="Workers by state, capacity, the queue by priority, and counts.",
    )
    parser.add_argument("--json", action="store_true", help="print the API's JSON")
    add_api_options(parser)
    parser.set_defaults(run=_cmd_stats)
    return parser


def _cmd_stats(args: argparse.Namespace) -> int:
    def show(client: ApiClient) -> int:
        stats = client.call("GET", "/stats")
        if args.json:
            print(json.dumps(stats, indent=2))
            return EXIT_OK
        workers, capacity = stats["workers"], stats["capacity"]
        by_priority = ", ".join(f"{p} {n}" for p, n in stats["queuedByPriority"].items())
        rows = [
            ("workers:", " ".join(f"{state} {n}" for state, n in workers.items())),
            ("capacity:", f"{capacity['used']} of {capacity['total']} slots used"),
            (
                "queued:",
                f"{stats['queued']}" + (f" ({by_priority})" if by_priority else ""),
            ),
            ("in flight:", str(stats["inFlight"])),
            ("completed:", str(stats["completed"])),
            ("failed:", str(stats["failed"])),
            ("retried:", str(stats["retried"])),
            ("rejected:", str(stats["rejected"])),
        ]
        print("\n".join(aligned(rows)))
        return EXIT_OK

    return _run("stats", args, show)


# -- tasks list | show --url ---------------------------------------------------------


def list_tasks(args: argparse.Namespace) -> int:
    """``trio-pipe tasks list --url``: a page of tasks from the API."""

    def show(client: ApiClient) -> int:
        params: dict[str, Any] = {"limit": args.limit}
        if args.status is not None:
            params["status"] = args.status.value
        if args.task_type is not None:
            params["type"] = args.task_type
        if args.after is not None:
            params["after"] = str(args.after)
        page = client.call("GET", "/tasks", params=params)
        tasks = page["tasks"]
        if args.json:
            print(json.dumps(tasks, indent=2))
            return EXIT_OK
        if not tasks:
            print("no tasks")
            return EXIT_OK
        rows = [("id", "type", "status", "priority", "attempts", "worker", "error")]
        for task in tasks:
            error = _last_error(task)
            rows.append(
                (
                    task["id"],
                    task["taskType"],
                    task["status"],
                    task["priority"],
                    str(len(task["attempts"])),
                    task["workerId"] or _NONE,
                    _NONE if error is None else error["code"],
                )
            )
        print("\n".join(aligned(rows)))
        if page["next"] is not None:
            command = ["trio-pipe", "tasks", "list", "--url", client.url]
            for option, value in (
                ("--status", params.get("status")),
                ("--type", args.task_type),
            ):
                if value is not None:
                    command += [option, value]
            command += ["--limit", str(args.limit), "--after", page["next"]]
            print(f"next page: {shlex.join(command)}")
        return EXIT_OK

    return _run("tasks list", args, show)


def show_task(args: argparse.Namespace) -> int:
    """``trio-pipe tasks show --url ID``: one task from the API."""

    def show(client: ApiClient) -> int:
        task = client.call("GET", f"/tasks/{args.task_id}")
        if args.json:
            print(json.dumps(task, indent=2))
            return EXIT_OK
        error = _last_error(task)
        fields = [
            ("id", task["id"]),
            ("type", task["taskType"]),
            ("status", task["status"]),
            ("priority", task["priority"]),
            ("created", task["createdAt"]),
            ("timeout", f"{task['timeoutMs']} ms"),
            ("max retries", str(task["maxRetries"])),
            ("trace id", task["traceId"] or _NONE),
            ("idempotency key", task["idempotencyKey"] or _NONE),
            ("worker", task["workerId"] or _NONE),
            ("error", _NONE if error is None else f"{error['code']}: {error['message']}"),
        ]
        lines = aligned([(f"{name}:", value) for name, value in fields])
        if task["attempts"]:
            rows = [("attempt", "worker", "started", "ended", "status", "error")]
            for attempt in task["attempts"]:
                rows.append(
                    (
                        str(attempt["number"]),
                        attempt["workerId"],
                        attempt["startedAt"],
                        attempt["endedAt"] or _NONE,
                        attempt["status"] or "(running)",
                        _NONE if attempt["error"] is None else attempt["error"]["code"],
                    )
                )
            lines += ["", *aligned(rows, indent="  ")]
        for title, value in (("payload", task["payload"]), ("result", task["result"])):
            shown = json.dumps(value, indent=2).splitlines()
            lines += ["", f"{title}:", *(f"  {line}" for line in shown)]
        print("\n".join(lines))
        return EXIT_OK

    return _run("tasks show", args, show)


def _last_error(task: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Why the task failed, or why its last failed attempt did."""
    result = task.get("result") or {}
    if result.get("error"):
        error: Mapping[str, Any] = result["error"]
        return error
    errors = [attempt["error"] for attempt in task["attempts"] if attempt["error"]]
    return errors[-1] if errors else None
