"""Every exception of trio_pipe's public API, under :class:`TrioPipeError`, and the
error codes trio_pipe itself writes. (The protocol's own errors, ``ProtocolError`` and
its two kinds, are ``TrioPipeError`` s too, defined with the sans-IO codec.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .protocol import TaskResult

__all__ = [
    "AuthenticationFailed",
    "ChannelClosed",
    "DispatcherClosed",
    "HandshakeFailed",
    "HandshakeRefused",
    "HostKeyError",
    "InvalidSpec",
    "ErrorCode",
    "NoWorkerAvailable",
    "PoolFull",
    "QueueFull",
    "RegistrationRefused",
    "SshError",
    "StoreError",
    "TaskFailed",
    "TaskNotFound",
    "TrioPipeError",
    "WorkerConnectionError",
    "WorkerNotFound",
    "WorkflowError",
    "WorkflowFailed",
]


class ErrorCode:
    """The ``TaskError.code`` values trio_pipe produces (workers may add their own)."""

    UNKNOWN_TASK_TYPE: Final = "UNKNOWN_TASK_TYPE"
    HANDLER_ERROR: Final = "HANDLER_ERROR"
    PARSE_ERROR: Final = "PARSE_ERROR"
    TIMEOUT: Final = "TIMEOUT"
    KILLED: Final = "KILLED"
    CANCELLED: Final = "CANCELLED"
    WORKER_DISCONNECTED: Final = "WORKER_DISCONNECTED"
    WORKER_REMOVED: Final = "WORKER_REMOVED"
    WORKER_SATURATED: Final = "WORKER_SATURATED"
    WORKER_SHUTTING_DOWN: Final = "WORKER_SHUTTING_DOWN"
    DISPATCHER_CLOSED: Final = "DISPATCHER_CLOSED"
    DISPATCHER_RESTARTED: Final = "DISPATCHER_RESTARTED"  # on a worker when it stopped
    INVALID_PAYLOAD: Final = "INVALID_PAYLOAD"
    # WASM workers (spawn_wasm): how a module's run failed.
    WASM_TRAP: Final = "WASM_TRAP"  # a trap; the message is the trap's
    WASM_EXIT: Final = "WASM_EXIT"  # a non-zero exit status; the message has stderr
    WASM_MEMORY_LIMIT: Final = "WASM_MEMORY_LIMIT"  # failed at max_memory_bytes
    WASM_FUEL_EXHAUSTED: Final = "WASM_FUEL_EXHAUSTED"  # used up its fuel budget
    WASM_OUTPUT_LIMIT: Final = "WASM_OUTPUT_LIMIT"  # wrote more than max_output_bytes


class TrioPipeError(Exception):
    """Base class of trio_pipe's own exceptions."""


class AuthenticationFailed(TrioPipeError):
    """A worker's handshake is refused (``trio_pipe.auth``): *status* 401 (no valid
    credentials) or 403 (valid credentials that may not connect), with a *reason* the
    worker is told."""

    def __init__(self, reason: str, *, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class StoreError(TrioPipeError):
    """The task store cannot do what was asked: the disk is full, the file is
    read-only or in use by another dispatcher, its schema is from a newer version.
    The message says which, and names the store."""


class TaskNotFound(TrioPipeError, LookupError):
    """No task with this id in the store (never submitted, or pruned)."""


class TaskFailed(TrioPipeError):
    """A task ended in any status but ``Completed``; ``result`` tells how."""

    def __init__(self, result: TaskResult) -> None:
        error = result.error
        detail = f"{error.code}: {error.message}" if error else "no error given"
        super().__init__(f"task {result.task_id} {result.status.value}: {detail}")
        self.result = result

    @property
    def code(self) -> str | None:
        return self.result.error.code if self.result.error else None


class DispatcherClosed(TrioPipeError):
    """The dispatcher is shutting down or closed; it takes no new tasks."""


class NoWorkerAvailable(TrioPipeError):
    """No registered worker supports this task type (``submit_nowait`` only)."""


class QueueFull(TrioPipeError):
    """The dispatcher's queue holds ``max_queued`` tasks (``submit_nowait`` only)."""


class WorkerNotFound(TrioPipeError, LookupError):
    """No connected worker has this id."""


class PoolFull(TrioPipeError):
    """The pool already holds ``max_pool_size`` workers."""


class InvalidSpec(TrioPipeError, ValueError):
    """A value that would reach a worker process is malformed or unsafe.

    ``field`` names the value (``"image"``, ``"env key"``, ``"argv[2]"``...), ``reason``
    says what is wrong, and ``shown`` is a short, :func:`repr`-escaped rendering of the
    offending value (``None`` when there is nothing useful to show).
    """

    def __init__(self, field: str, reason: str, shown: str | None = None) -> None:
        # All three go to ``args`` so the exception pickles and unpickles unchanged.
        super().__init__(field, reason, shown)
        self.field = field
        self.reason = reason
        self.shown = shown

    def __str__(self) -> str:
        if self.shown is None:
            return f"{self.field} {self.reason}"
        return f"{self.field} {self.reason} (got {self.shown})"


class ChannelClosed(TrioPipeError):
    """The connection to the worker is gone (closed, reset, or the process exited).

    ``close_code`` and ``close_reason`` are the code and reason of the WebSocket close
    frame that ended the connection, when one did (``None`` otherwise)."""

    def __init__(
        self,
        message: str = "",
        *,
        close_code: int | None = None,
        close_reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.close_reason = close_reason


class HandshakeFailed(TrioPipeError):
    """The opening handshake failed: rejected, malformed, or the connection ended."""


class SshError(TrioPipeError, OSError):
    """An SSH connection could not be opened (refused, timed out, authentication
    failed...) or a remote command could not be started on it.

    An ``OSError``, so that the supervisor treats it as a failed start: raised by
    ``spawn_ssh`` for the first start, counted against the restart policy later.
    """


class HostKeyError(SshError):
    """The server's host key is not in ``known_hosts``, or differs from the key there.

    No connection is made: the key exchange is abandoned before authentication, so
    nothing (no key, no command) reaches a host that may be an impostor.
    """


class WorkerConnectionError(TrioPipeError):
    """A worker that may not reconnect (``reconnect=False``) could not connect or
    register, or lost its connection. The message says why; ``__cause__`` holds the
    transport's error when there is one."""


class HandshakeRefused(HandshakeFailed, WorkerConnectionError):
    """The dispatcher answered a worker's opening handshake with an HTTP error
    instead of accepting it: ``status`` is the HTTP status, ``reason`` the short text
    of the answer's body (or of its status line when the body is empty).

    A worker raises it out of ``run_worker`` for 401 (no token, or one the dispatcher
    does not accept) and 403 (a valid token that may not connect), whether or not it
    may reconnect: the same credential cannot succeed on another try. Any other
    status (503 when the dispatcher is at its connection limit...) is retried with
    the usual backoff."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"the dispatcher refused the connection (HTTP {status}): {reason}")
        self.status = status
        self.reason = reason

    def __reduce__(self) -> tuple[type[HandshakeRefused], tuple[int, str]]:
        return type(self), (self.status, self.reason)


class RegistrationRefused(WorkerConnectionError):
    """The dispatcher closed the connection with code 1008 (policy violation) before
    it accepted the worker's registration: a task type or tag outside the token's
    scope, a worker id that a live connection holds... ``reason`` is the close
    reason. Raised out of ``run_worker``, which does not reconnect: the same
    registration would be refused again."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the dispatcher refused the registration: {reason}")
        self.reason = reason

    def __reduce__(self) -> tuple[type[RegistrationRefused], tuple[str]]:
        return type(self), (self.reason,)


class WorkflowError(TrioPipeError, ValueError):
    """A workflow is not valid (a cycle, an unknown step, a bad option...) or cannot
    run with the inputs given. ``step`` names the step at fault (``None`` when the
    fault is the workflow's own)."""

    def __init__(self, message: str, *, step: str | None = None) -> None:
        super().__init__(message)
        self.step = step


class PipelineError(TrioPipeError, ValueError):
    """A YAML pipeline file is not valid. ``path``, ``line`` and ``column`` (both
    from 1) locate the fault; ``str()`` is ``path:line:column: message``."""

    def __init__(self, path: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{path}:{line}:{column}: {message}")
        self.path = path
        self.line = line
        self.column = column
        self.message = message

    def __reduce__(self) -> tuple[type[PipelineError], tuple[str, int, int, str]]:
        return type(self), (self.path, self.line, self.column, self.message)


class WorkflowFailed(TrioPipeError):
    """A workflow run ended with a failed step.

    ``step`` is the path of the first step that failed (``"build/compile"`` inside
    a nested workflow, ``"resize[17]"`` for one item of a fan-out); ``failures`` maps
    the path of every failed step to its error (one with ``fail_fast``); ``statuses``
    gives every step's final status (a ``StepEventKind`` value, ``"pending"`` for a
    step never reached); ``outputs`` holds the output of each step that completed.
    """

    def __init__(
        self,
        workflow: str,
        failures: dict[str, BaseException],
        statuses: dict[str, str],
        outputs: dict[str, object],
    ) -> None:
        step, error = next(iter(failures.items()))
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        super().__init__(
            f"workflow {workflow!r} failed at step {step!r}: {describe(error)}{more}"
        )
        self.workflow = workflow
        self.step = step
        self.failures = failures
        self.statuses = statuses
        self.outputs = outputs


def describe(exc: BaseException) -> str:
    """``"TypeName: message"`` (or the bare type name), for a one-line error report."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
