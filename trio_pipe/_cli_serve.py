"""``trio-pipe serve --config trio-pipe.toml``: a standalone dispatcher service
(docs/serve.md).

:mod:`trio_pipe._serve_config` reads and checks the file; this module runs what it
describes: ``open_dispatcher`` with its settings, the workers it spawns, and the
signals that stop it. The first SIGTERM or SIGINT drains (the dispatcher's graceful
shutdown: no new task, in-flight tasks finish within ``shutdown_grace``, the rest are
cancelled); a second one stops at once.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import trio

from ._errors import describe
from ._serve_config import ConfigError, ServeConfig, SpawnedWorker, load_config
from .cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from .dispatch import Dispatcher, open_dispatcher

__all__ = ["add_parser", "serve"]

log = logging.getLogger("trio_pipe.serve")

_DESCRIPTION = (
    "Run a dispatcher as a service, as the TOML file given by --config describes it "
    "(docs/serve.md): its store, the address workers connect to (with TLS and token "
    "authentication), the HTTP API, the workers it spawns and their restart policies, "
    "limits and retention. Once it serves, it prints one line on stdout: 'ready "
    "workers=ws://HOST:PORT http=http://HOST:PORT' ('-' for what it does not serve). "
    "SIGTERM or SIGINT drains it: no new task, in-flight tasks finish within "
    "[dispatcher] shutdown_grace, the rest are cancelled; a second signal stops it at "
    "once. Exit status 0 after SIGTERM, 130 after SIGINT, 1 if it could not start "
    "(the reason on stderr), 2 for an invalid configuration (the file, line and key "
    "on stderr)."
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run a dispatcher service from a TOML file", description=_DESCRIPTION
    )
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="the configuration (TOML)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the configuration, print 'ok', and exit (nothing is started)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"trio-pipe serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.check:
        print("ok")
        return EXIT_OK
    try:
        stopped_by = trio.run(serve, config)
    except (OSError, ValueError, ImportError, StartFailed) as exc:
        print(f"trio-pipe serve: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_INTERRUPTED if stopped_by == signal.SIGINT else EXIT_OK


class StartFailed(Exception):
    """A spawned worker could not be started; the message says which and why."""


async def serve(config: ServeConfig) -> int:
    """Run the dispatcher *config* describes until SIGTERM or SIGINT, and return the
    signal's number.

    The first signal leaves ``open_dispatcher``'s block normally: its graceful
    shutdown. A second one cancels that shutdown: every worker gets
    ``Shutdown{graceful:false}`` and every connection is closed within
    ``close_timeout``. Error handling: what stops the dispatcher from starting
    (an address in use, a worker that cannot be spawned) is raised as itself.
    """
    first: list[int] = []
    stop = trio.Event()
    hard_stop = trio.CancelScope()
    failure: Exception | None = None

    async def watch(signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if not first:
                first.append(signum)
                name = signal.Signals(signum).name
                log.info("%s: draining (a second signal stops at once)", name)
                stop.set()
            else:
                log.warning("second signal: stopping now")
                hard_stop.cancel()

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, signals)
            try:
                with hard_stop:
                    async with open_dispatcher(
                        store=config.store, **config.dispatcher
                    ) as dispatcher:
                        for worker in config.spawn:
                            await _spawn(dispatcher, worker)
                        print(_ready_line(config, dispatcher), flush=True)
                        await stop.wait()
            except (OSError, ValueError, ImportError, StartFailed) as exc:
                failure = exc
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return first[0]


def _ready_line(config: ServeConfig, dispatcher: Dispatcher) -> str:
    workers = dispatcher.url if config.dispatcher["port"] is not None else "-"
    http = dispatcher.http_url if "http" in config.dispatcher else "-"
    return f"ready workers={workers} http={http}"


async def _spawn(dispatcher: Dispatcher, worker: SpawnedWorker) -> None:
    """Start *worker* (``count`` copies of it) with ``Dispatcher.spawn_<kind>``."""
    options = dict(worker.options)
    if worker.kind == "wasm":
        options["module_path"] = options.pop("module")
    method = getattr(dispatcher, f"spawn_{worker.kind}")
    for _ in range(worker.count):
        try:
            worker_id = await method(**options)
        except (OSError, ValueError, ImportError) as exc:
            raise StartFailed(f"{worker.where}: cannot start it: {describe(exc)}") from exc
        log.info("spawned %s worker %s", worker.kind, worker_id)
