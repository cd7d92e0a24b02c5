"""The worker that runs a pipeline's shell steps: ``trio-pipe worker --stdio
--handlers trio_pipe.pipeline._shell:HANDLERS``, spawned by ``trio-pipe run``.

Each task runs ``/bin/sh -c RUN`` in a new session (its own process group), with
the environment and directory the payload gives and ``$TRIO_PIPE_OUTPUT`` naming an
empty file where the command writes its outputs, one ``key=value`` a line. Its
stdout and stderr go to files, and the result carries their last
:data:`MAX_LOG_BYTES` each. A non-zero exit fails the task (``EXIT_STATUS``,
retryable, with the end of stderr). Cancelled -- by ``Kill``, or the task's deadline
-- the whole process group gets SIGTERM, then SIGKILL :data:`KILL_GRACE` seconds
later.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from typing import Any, BinaryIO, Final

import trio

from ..worker import Handlers, TaskFailure

__all__ = ["HANDLERS", "KILL_GRACE", "MAX_LOG_BYTES", "SHELL_TASK"]

#: The task type of a shell step.
SHELL_TASK: Final = "trio-pipe.shell"
#: How much of the end of a step's stdout and of its stderr its result keeps.
MAX_LOG_BYTES: Final = 256 * 1024
#: Seconds between SIGTERM and SIGKILL when a running step is cancelled.
KILL_GRACE: Final = 5.0
#: How much of the end of stderr a failure's message quotes.
_ERROR_TAIL: Final = 2048

HANDLERS = Handlers()


@HANDLERS.handler(SHELL_TASK)
async def run_shell(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one shell step; return ``{"exitCode", "outputs", "stdout", "stderr"}``."""
    if not isinstance(payload, dict) or not isinstance(payload.get("run"), str):
        raise TaskFailure("PARSE_ERROR", "a shell step's payload needs a str 'run'")
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (payload.get("env") or {}).items()})
    with tempfile.TemporaryDirectory(prefix="trio-pipe-step-") as tmp:
        paths = {name: os.path.join(tmp, name) for name in ("outputs", "out", "err")}
        env["TRIO_PIPE_OUTPUT"] = paths["outputs"]
        out, err = _log_files(paths)
        with out, err:
            process = await trio.run_process(
                ["/bin/sh", "-c", payload["run"]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd=payload.get("cwd") or None,
                check=False,
                start_new_session=True,
                deliver_cancel=_kill_group,
            )
        stdout = _tail(paths["out"], MAX_LOG_BYTES)
        stderr = _tail(paths["err"], MAX_LOG_BYTES)
        if process.returncode != 0:
            end = stderr[-_ERROR_TAIL:].strip()
            raise TaskFailure(
                "EXIT_STATUS",
                f"exited with status {process.returncode}"
                + (f"; stderr ends: {end}" if end else ""),
                retryable=True,
            )
        outputs = _outputs(paths["outputs"])
    return {"exitCode": 0, "outputs": outputs, "stdout": stdout, "stderr": stderr}


def _log_files(paths: dict[str, str]) -> tuple[BinaryIO, BinaryIO]:
    """Create the empty outputs file; open the files for stdout and stderr."""
    open(paths["outputs"], "wb").close()
    return open(paths["out"], "wb"), open(paths["err"], "wb")


async def _kill_group(process: trio.Process) -> None:
    """SIGTERM the step's process group, SIGKILL it if it outlives the grace."""
    _signal_group(process, signal.SIGTERM)
    with trio.move_on_after(KILL_GRACE):
        await process.wait()
        return
    _signal_group(process, signal.SIGKILL)


def _signal_group(process: trio.Process, signum: signal.Signals) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:  # already gone
        pass


def _tail(path: str, limit: int) -> str:
    """The last *limit* bytes of a file, as text (undecodable bytes replaced)."""
    with open(path, "rb") as file:
        size = file.seek(0, os.SEEK_END)
        file.seek(max(0, size - limit))
        return file.read().decode("utf-8", "replace")


def _outputs(path: str) -> dict[str, str]:
    """The ``key=value`` lines a step wrote to ``$TRIO_PIPE_OUTPUT``."""
    outputs: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as file:
        for number, line in enumerate(file, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise TaskFailure(
                    "BAD_OUTPUT",
                    f"line {number} of $TRIO_PIPE_OUTPUT is not key=value: {line[:80]!r}",
                )
            outputs[key.strip()] = value
    return outputs
