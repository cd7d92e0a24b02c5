"""``serve_http``: the HTTP API and ``/metrics`` on one address, served by Hypercorn's
Trio worker in the caller's nursery, with the task that keeps the metrics."""

from __future__ import annotations

import logging
import socket
from functools import partial
from typing import cast

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.typing import ASGIFramework

from ..auth import ApiAuth
from ..dispatch import Dispatcher
from ._app import create_app
from ._metrics import DispatcherMetrics

__all__ = ["serve_http"]

log = logging.getLogger("trio_pipe.http")


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to *host*:*port*; raises ``OSError`` naming the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"cannot serve the HTTP API on {host}:{port}: {exc.strerror or exc}"
        ) from None
    return sock


async def serve_http(
    dispatcher: Dispatcher,
    host: str,
    port: int,
    *,
    auth: ApiAuth | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *dispatcher*'s HTTP API on *host*:*port* until cancelled; report its
    URL (``http://host:port``, the real port if *port* is 0) through *task_status*.

    Error handling: an address that cannot be bound raises ``OSError`` (naming it)
    before anything is served. Resource handling: cancellation closes the listening
    socket and every connection; a request in progress is abandoned.
    """
    metrics = DispatcherMetrics(dispatcher)
    config = Config()
    config.accesslog = None
    config.errorlog = log  # it says where it listens, at INFO
    # Starlette types the ASGI interface with plain mappings, Hypercorn with TypedDicts.
    app = cast(ASGIFramework, create_app(dispatcher, auth=auth, metrics=metrics))
    with _bind(host, port) as sock:  # closed here however serving ends
        sock.listen(config.backlog)
        sock.setblocking(False)
        url = f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}"
        async with trio.open_nursery() as nursery:
            await nursery.start(metrics.run)
            # Hypercorn's Trio worker, given the bound socket (its serve() would bind
            # one itself, from text, and raise a bind error from inside its nurseries).
            sockets = Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])
            wrapped = ASGIWrapper(app)
            await nursery.start(partial(worker_serve, wrapped, config, sockets=sockets))
            task_status.started(url)
