"""A throwaway PostgreSQL cluster on loopback, for the PostgreSQL benchmarks and tests.

``initdb`` and ``postgres`` come from the distribution's ``postgresql`` package
(``/usr/lib/postgresql/<version>/bin``). The server refuses to run as root, so when
this process is root they run as the ``postgres`` user, in a temporary directory that
user owns. The cluster trusts local connections and listens on 127.0.0.1 only, on a
free port.

The server runs in the foreground as a child of this process (not daemonized by
``pg_ctl``), with a parent-death signal: it is stopped when the block ends, and, if
this process is killed instead (SIGTERM, SIGKILL), the kernel sends it SIGQUIT, its
immediate shutdown. Only the temporary directory can then be left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["Cluster", "find_binaries", "throwaway_cluster"]

_PR_SET_PDEATHSIG = 1

#: The process ids of the servers running now (the tests' leak checks leave them be).
servers: set[int] = set()


def find_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or ``None``."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("postgres") else None


class Cluster:
    """A cluster in *directory*, its server a child of this process."""

    def __init__(
        self, bin_dir: Path, directory: Path, user: str | None, options: list[str]
    ) -> None:
        self.bin = bin_dir
        self.directory = directory
        self.data = directory / "data"
        self.user = user  # who the server runs as (None: this process's user)
        self.options = options
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._server: subprocess.Popen[bytes] | None = None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def initdb(self) -> None:
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
             "-U", "postgres", "--no-sync"],
            check=True, stdout=subprocess.DEVNULL, preexec_fn=self._as_user(), timeout=120,
        )  # fmt: skip

    def start(self) -> None:
        """Start the server and wait until it accepts connections. Call it from a
        thread that lives as long as the server should: the parent-death signal comes
        when the *thread* that started the server ends (the main thread, typically;
        never a thread pool's)."""
        with open(self.directory / "log", "ab") as log:
            self._server = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data),
                 "-k", str(self.directory), "-h", "127.0.0.1", "-p", str(self.port),
                 *self.options],
                stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=self._as_user(dies_with_parent=True),
            )  # fmt: skip
        servers.add(self._server.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                break
            ready = subprocess.run(
                [
                    str(self.bin / "pg_isready"),
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                ],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        log_text = (self.directory / "log").read_text(errors="replace")
        self.stop(immediate=True)
        raise RuntimeError(f"PostgreSQL did not start:\n{log_text}")

    def stop(self, *, immediate: bool = False) -> None:
        """Stop the server: a fast shutdown (SIGINT), or an immediate one (SIGQUIT)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        servers.discard(server.pid)

    def restart(self) -> None:
        """What ``pg_ctl restart -m fast`` does: every connection is closed."""
        self.stop()
        self.start()

    def _as_user(self, *, dies_with_parent: bool = False) -> Callable[[], None]:
        user = None if self.user is None else pwd.getpwnam(self.user)

        def demote() -> None:  # in the child, before exec
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
            if dies_with_parent:  # after setuid, which clears it
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)

        return demote


@contextlib.contextmanager
def throwaway_cluster(bin_dir: Path, *, durable: bool = True) -> Iterator[Cluster]:
    """A fresh cluster, started; *durable=False* turns ``fsync`` off (tests: faster,
    and nothing here must survive a power loss)."""
    user = "postgres" if os.geteuid() == 0 else None
    directory = Path(tempfile.mkdtemp(prefix="trio-pipe-pg-"))
    try:
        if user is not None:
            owner = pwd.getpwnam(user)
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        options = [] if durable else [
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"
        ]  # fmt: skip
        cluster = Cluster(bin_dir, directory, user, options)
        cluster.initdb()
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop(immediate=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
