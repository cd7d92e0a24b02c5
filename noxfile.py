"""The one entry point: every command in README and CI is a session here."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import nox

# Every session installs exactly what uv.lock pins (`uv sync --locked`), with uv, which
# README's first command installs beside nox from requirements-nox.txt (itself exported
# from uv.lock). A lock that is stale against pyproject.toml is an error, never a
# silent new resolution: `nox -s lock` refreshes it.
nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]
# Sessions use the interpreter nox runs under: a fresh machine may have only one.
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")

ALL_EXTRAS = ("ssh", "wasm", "http", "pipelines", "postgres")
NOX_REQUIREMENTS = "requirements-nox.txt"


def _sync(
    session: nox.Session,
    *,
    extras: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
    project: bool = True,
) -> None:
    """Install the project (editable) with these extras and dependency groups into the
    session's environment, exactly as uv.lock pins them, and nothing else."""
    args = ["uv", "sync", "--locked", "--no-default-groups"]
    args += [f"--extra={extra}" for extra in extras]
    args += [f"--group={group}" for group in groups]
    if not project:
        args.append("--no-install-project")
    session.run_install(*args)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (pass pytest arguments after --)."""
    _sync(session, extras=ALL_EXTRAS, groups=("test",))
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    _sync(session, groups=("lint",), project=False)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on trio_pipe/ and on the typed examples in docs/."""
    _sync(session, extras=ALL_EXTRAS, groups=("test", "typecheck"))
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
    _sync(session)
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
    _sync(session)
    _build_sdks(session, list(SDKS))
    session.run("python", "-m", "benchmarks.sdks", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """A dispatcher, a few worker processes, a few hundred tasks, one worker killed."""
    _sync(session)
    session.run("trio-pipe", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (quick by default; pass -- --full for the real numbers)."""
    _sync(session, extras=("wasm",), groups=("bench",))
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def bench_auth(session: nox.Session) -> None:
    """Worker authentication on and off in the same run: handshakes/s, and tasks/s
    with 256 in flight (-- --full for the real numbers)."""
    _sync(session, groups=("bench",))
    session.run("python", "-m", "benchmarks.auth", *session.posargs)


@nox.session
def bench_http(session: nox.Session) -> None:
    """The HTTP API with /metrics scraped every second, and no HTTP at all, in the same
    run: tasks/s with 256 in flight; p50 of submit + result in-process and through the
    API (-- --full for the real numbers)."""
    _sync(session, extras=("http",))
    session.run("python", "-m", "benchmarks.http_api", *session.posargs)


@nox.session
def bench_restart(session: nox.Session) -> None:
    """A rolling restart of 3 Python workers under 1,000 tasks/s: tasks failed and
    retried (-- --rate N, --workers N, --nap-ms N)."""
    _sync(session)
    session.run("python", "-m", "benchmarks.rolling_restart", *session.posargs)


@nox.session
def bench_peers(session: nox.Session) -> None:
    """trio_pipe next to rust-pipe (both serving the same Go worker) and next to
    Celery 5 + Redis, in the same run (not in CI). Builds rust-pipe from crates.io with
    cargo and the Go worker, installs Celery into this session and redis-server with
    apt if missing; -- --full for the real numbers."""
    _sync(session, groups=("peers",))
    if shutil.which("redis-server") is None:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
        session.run(*apt, "update", external=True)
        session.run(*apt, "install", "-y", "redis-server", external=True)
    session.run("python", "-m", "benchmarks.peers", *session.posargs)


@nox.session(venv_backend="none")
def lock(session: nox.Session) -> None:
    """Refresh uv.lock from pyproject.toml (versions already locked stay unless they
    must move; -- --upgrade for the newest of everything, -- --upgrade-package NAME for
    one) and re-export requirements-nox.txt from it. -- --check changes nothing and
    fails, naming the fix, when either file is stale."""
    uv = _uv()
    if "--check" in session.posargs:
        stale = []
        if subprocess.run([uv, "lock", "--check"], check=False).returncode != 0:
            stale.append("uv.lock")
        with tempfile.TemporaryDirectory() as tmp:
            exported = Path(tmp, NOX_REQUIREMENTS)
            _export_nox_requirements(session, uv, exported)
            if exported.read_text() != Path(NOX_REQUIREMENTS).read_text():
                stale.append(NOX_REQUIREMENTS)
        if stale:
            session.error(
                f"stale lock: {' and '.join(stale)} no longer match pyproject.toml; "
                "run `nox -s lock` and commit the result"
            )
        return
    session.run(uv, "lock", *session.posargs)
    _export_nox_requirements(session, uv, Path(NOX_REQUIREMENTS))


@nox.session
def upgrade_check(session: nox.Session) -> None:
    """Upstream drift, found on purpose (not part of CI): what a fresh resolution would
    change in uv.lock, then the type check and the whole test suite against the newest
    releases that pyproject.toml allows (pytest arguments after --). The lock is left
    as it is; `nox -s lock -- --upgrade` takes the new versions once they pass."""
    session.run("uv", "lock", "--upgrade", "--dry-run")
    session.run_install(
        "uv", "pip", "install", "--upgrade", "--resolution=highest",
        "-e", f".[{','.join(ALL_EXTRAS)}]", "--group=test", "--group=typecheck",
    )  # fmt: skip
    session.run("uv", "pip", "list")
    session.run("mypy", "--strict", "trio_pipe")
    session.run("pytest", *session.posargs)


def _uv() -> str:
    """The uv that nox itself uses (installed beside it from requirements-nox.txt)."""
    found, uv, _ = nox.virtualenv.find_uv()
    if not found:
        raise SystemExit(f"uv not found: install nox from {NOX_REQUIREMENTS}")
    return uv


def _export_nox_requirements(session: nox.Session, uv: str, path: Path) -> None:
    """What README's commands install before nox exists: nox and uv, with hashes."""
    session.run(
        uv, "export", "--frozen", "--quiet", "--only-group=nox", "--no-emit-project",
        "--no-header", f"--output-file={path}",
    )  # fmt: skip
