"""A throwaway PostgreSQL cluster on loopback, for the PostgreSQL benchmarks and tests.

``initdb`` and ``pg_ctl`` come from the distribution's ``postgresql`` package
(``/usr/lib/postgresql/<version>/bin``). The server refuses to run as root, so when
this process is root they run as the ``postgres`` user, in a temporary directory that
user owns. The cluster trusts local connections, listens on 127.0.0.1 only, on a free
port, and is stopped (``pg_ctl stop -m immediate``) and deleted however the block
ends.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs

__all__ = ["Cluster", "find_binaries", "throwaway_cluster"]


def find_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or ``None``."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


@attrs.frozen
class Cluster:
    bin: Path
    data: Path
    port: int
    user: str | None  # who the server runs as (None: this process's user)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def pg_ctl(self, *args: str) -> None:
        """Run ``pg_ctl`` on the cluster (``restart -m fast``, ``stop``...)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", *args)

    def _run(self, *argv: str) -> None:
        if self.user is not None:
            argv = ("runuser", "-u", self.user, "--", *argv)
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        cluster = Cluster(bin_dir, directory / "data", _free_port(), user)
        cluster._run(
            str(bin_dir / "initdb"), "-D", str(cluster.data), "-A", "trust",
            "-U", "postgres", "--no-sync",
        )  # fmt: skip
        options = f"-k {directory} -h 127.0.0.1 -p {cluster.port}"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        cluster.pg_ctl("-l", str(directory / "log"), "-o", options, "start")
        try:
            yield cluster
        finally:
            with contextlib.suppress(subprocess.SubprocessError):
                cluster.pg_ctl("-m", "immediate", "stop")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
