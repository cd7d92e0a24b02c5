"""Helpers shared by tests: real worker subprocesses and process accounting."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio
import trio_websocket

from benchmarks import _postgres
from trio_pipe.store import Store, TaskRecord

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a server that must keep one port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_python_worker(
    nursery: trio.Nursery,
    url: str,
    worker_id: str,
    *,
    max_concurrency: int = 10,
    heartbeat_interval: float = 1.0,
    extra: Sequence[str] = (),
) -> trio.Process:
    """Start ``trio-pipe worker`` with tests/worker_handlers.py as a real subprocess,
    as a child of *nursery* (killed if the nursery is cancelled)."""
    argv = [
        sys.executable, "-m", "trio_pipe", "worker",
        "--url", url,
        "--handlers", "tests.worker_handlers:HANDLERS",
        "--worker-id", worker_id,
        "--max-concurrency", str(max_concurrency),
        "--heartbeat-interval", str(heartbeat_interval),
        *extra,
    ]  # fmt: skip
    process: trio.Process = await nursery.start(
        partial(trio.run_process, argv, check=False, stdin=subprocess.DEVNULL, cwd=ROOT)
    )
    return process


async def worker_cli(
    *options: str, env: Mapping[str, str] | None = None, log_level: str = "INFO"
) -> subprocess.CompletedProcess[bytes]:
    """Run ``trio-pipe worker`` with tests/worker_handlers.py and *options* to its end
    (the caller bounds it), its stdout and stderr captured, *env* added to the
    environment."""
    argv = [
        sys.executable, "-m", "trio_pipe", "--log-level", log_level, "worker",
        "--handlers", "tests.worker_handlers:HANDLERS", *options,
    ]  # fmt: skip
    return await trio.run_process(
        argv,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=ROOT,
        env=None if env is None else {**os.environ, **env},
    )


def error_line(completed: subprocess.CompletedProcess[bytes]) -> str:
    """The one error line of a failed ``trio-pipe worker`` (the rest of stderr is its
    log), checking that there is exactly one, and no traceback."""
    err = completed.stderr.decode()
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("trio-pipe worker: ")]
    assert len(errors) == 1, err
    return errors[0]


def child_pids() -> list[int]:
    """This process's living children (zombies excluded; and the tests' PostgreSQL
    server, which lives for the whole run)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid, state, ppid = int(stat.parent.name), fields[0], int(fields[1])
        if ppid == os.getpid() and state != "Z" and pid not in _postgres.servers:
            pids.append(pid)
    return pids


def child_processes() -> list[str]:
    """Command lines of :func:`child_pids`."""
    children = []
    for pid in child_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile
        children.append(cmdline.replace(b"\0", b" ").decode())
    return children


def _rejection(exc: BaseException) -> trio_websocket.ConnectionRejected | None:
    if isinstance(exc, BaseExceptionGroup):
        found = [_rejection(e) for e in exc.exceptions]
        return next((f for f in found if f is not None), None)
    return exc if isinstance(exc, trio_websocket.ConnectionRejected) else None


@asynccontextmanager
async def open_raw_websocket(
    url: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A bare WebSocket client for speaking the protocol by hand, sending *headers*
    with its upgrade request (over TLS with *ssl_context*). Owns its TCP stream:
    trio-websocket's own client leaves it open when the server closes first. A
    refused handshake raises ``trio_websocket.ConnectionRejected``."""
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    stream: trio.abc.Stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    if ssl_context is not None:
        stream = trio.SSLStream(stream, ssl_context, server_hostname=parts.hostname)
    try:
        async with stream, trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                f"{parts.hostname}:{parts.port}",
                "/",
                extra_headers=[(k.encode(), v.encode()) for k, v in headers],
            )
            try:
                yield ws
            finally:
                await ws.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # A refused handshake (from trio-websocket's reader task), as itself.
        rejected = _rejection(group)
        if rejected is None:
            raise
        raise rejected from None


async def every_unfinished(store: Store) -> list[TaskRecord]:
    """What a dispatcher opening *store* resumes, read two to a page (to page)."""
    records: list[TaskRecord] = []
    cursor: object | None = None
    while True:
        page, cursor = await store.unfinished(cursor, 2)
        records.extend(page)
        if cursor is None:
            return records


def postgres_binaries() -> Path:
    """The PostgreSQL server binaries the tests' cluster runs. Where none are
    installed the test is skipped, saying so -- or fails, under
    ``TRIO_PIPE_REQUIRE_POSTGRES=1`` (as in CI, .ci/run)."""
    bin_dir = _postgres.find_binaries()
    if bin_dir is None:
        why = "no PostgreSQL server binaries (initdb, postgres): apt-get install postgresql"
        if os.environ.get("TRIO_PIPE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"TRIO_PIPE_REQUIRE_POSTGRES=1 but {why}")
        pytest.skip(why)
    return bin_dir
