"""WASM workers, in-process: every task runs in a fresh wasmtime instance, in a thread.

The contract (rust-pipe's): a module is a WASI *command*. It reads the whole Task JSON
on stdin and writes the result **payload** JSON on stdout; a trap, a non-zero exit or
output that is not JSON fails the task.

The WASM transport is three modules: ``_wasm_spec`` (what to run, validated),
this one (running an instance: the only module of trio_pipe that imports wasmtime) and
``_wasm_channel``: :class:`WasmChannel`, a :class:`~trio_pipe.transports.FrameChannel`
with no connection behind it. The dispatcher writes ``TaskDispatch``/``Kill``/
``Shutdown`` frames to it, and it answers with ``TaskResult`` frames -- it is a worker
like any other, whose frames cost a few microseconds against the milliseconds of an
instance.

Lifetime and threads
--------------------
:func:`open_wasm_channel` compiles the module once (optionally through an on-disk cache
of ``Module.serialize`` output) and opens the channel's nursery, where two kinds of
tasks live:

* one **runner** per dispatched task: under a ``trio.CapacityLimiter(max_concurrency)``
  it reports ``Running``, then runs the task with ``trio.to_thread.run_sync`` -- a new
  ``Store``, WASI context and instance per task, so nothing leaks from one task to the
  next -- and reports the terminal result;
* the **epoch ticker**: while any instance runs, it calls ``engine.increment_epoch()``
  every :data:`EPOCH_TICK` seconds (a Trio task sleeping, not a thread).

Interruption (timeouts, ``Kill``, caller cancellation, shutdown)
----------------------------------------------------------------
A ``Store`` may only be touched by the thread running it, so the Trio thread never
calls into a running store. Instead each task has a :class:`_Run` with a
``threading.Event`` *stop flag*; the Trio thread only sets it (``Kill``, ``aclose``,
the channel's teardown). Every store is given an epoch deadline of one tick and an
**epoch-deadline callback** (wasmtime's C API ``wasmtime_store_epoch_deadline_callback``,
reached through wasmtime-py's bindings): wasmtime calls it, *on the thread running the
instance*, each time the ticker moves the engine's epoch past the store's deadline.
The callback reads the stop flag, the task's wall-clock deadline and the size of its
output; if any says stop, it returns an error, which unwinds the instance at once;
otherwise it extends the deadline by one tick. So a runaway loop stops within a tick
of its deadline or of a ``Kill``, and ``engine.increment_epoch()`` (an atomic counter)
is the only thing the Trio thread does to the engine.

Wasm code is interruptible this way; a thread blocked *inside a host call* is not
(wasmtime's WASI ``poll_oneoff`` -- ``sleep()`` -- would block the thread for the whole
sleep). So ``poll_oneoff`` is replaced by :func:`_poll_oneoff`, which waits on the stop
flag itself, with the deadline as its bound. The other host calls a module can make
cannot block: stdin, stdout and stderr are files, and there are no sockets.

Teardown therefore has a bound: when the channel closes, every stop flag is set, the
ticker (in a shielded scope) keeps ticking until the last runner's thread has returned,
and only then stops.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import struct
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import attrs
import wasmtime
from wasmtime import _ffi as _wasmtime_ffi

from .._errors import ErrorCode
from ..protocol import (
    Task,
    TaskError,
    TaskResult,
    TaskStatus,
    parse_json_value,
)
from ._wasm_spec import (
    DEFAULT_MAX_MEMORY_BYTES,
    EPOCH_TICK,
    STDERR_IN_MESSAGE,
    WASM_PAGE,
    WasmSpec,
    wasm_spec,
)

__all__ = [
    "DEFAULT_MAX_MEMORY_BYTES",
    "EPOCH_TICK",
    "WASMTIME_VERSION",
    "WasmSpec",
    "result_of",
    "wasm_spec",
]

log = logging.getLogger("trio_pipe.wasm")


WASMTIME_VERSION: Final = metadata.version("wasmtime")

# -- the epoch-deadline callback ---------------------------------------------------------
# wasmtime-py has no wrapper for it, so it is registered through its ctypes bindings of
# the C API. The callback type must be the very ctypes type the binding declares;
# ctypes caches function types by signature, so building it from the same parts gives
# that type.
_DeadlineCallback = ctypes.CFUNCTYPE(
    ctypes.c_size_t,  # a wasmtime_error_t* to stop, or NULL to go on
    ctypes.POINTER(_wasmtime_ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),  # out: ticks until the next call
    ctypes.POINTER(_wasmtime_ffi.wasmtime_update_deadline_kind_t),  # out: continue/yield
)
_Finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_NO_FINALIZER: Final = _Finalizer()  # a NULL function pointer
_UPDATE_DEADLINE_CONTINUE: Final = 0

# What the thread running an instance is running (the callback and the poll_oneoff
# replacement get no per-store data from wasmtime-py; one thread runs one task at once).
_current = threading.local()


def _error_pointer(message: str) -> int:
    """A new ``wasmtime_error_t*``, owned by whoever it is returned to."""
    error = _wasmtime_ffi.wasmtime_error_new(message.encode())
    return ctypes.cast(error, ctypes.c_void_p).value or 0


def _on_epoch_deadline(_context: Any, _data: Any, delta: Any, kind: Any) -> int:
    """Called by wasmtime on the instance's own thread, once per tick: stop or go on.
    Never raises (ctypes would print the error and let the instance run on)."""
    try:
        run: _Run | None = getattr(_current, "run", None)
        reason = "no task is running on this thread" if run is None else run.check()
    except BaseException as exc:  # pragma: no cover - defensive
        reason = f"internal error in the epoch callback: {exc!r}"
    if reason is not None:
        return _error_pointer(reason)
    delta[0] = 1
    kind[0] = _UPDATE_DEADLINE_CONTINUE
    return 0


_ON_EPOCH_DEADLINE: Final = _DeadlineCallback(_on_epoch_deadline)  # lives as long as we do

# -- poll_oneoff, interruptible ----------------------------------------------------------
_ERRNO_SUCCESS: Final = 0
_ERRNO_FAULT: Final = 21
_ERRNO_INVAL: Final = 28
_ERRNO_NOTSUP: Final = 58
_EVENTTYPE_CLOCK: Final = 0
_CLOCK_REALTIME: Final = 0
_CLOCK_MONOTONIC: Final = 1
_SUBCLOCKFLAG_ABSTIME: Final = 1
_SUBSCRIPTION = struct.Struct("<QB7xI4xQQH6x")  # userdata, tag, clock id/fd, timeout...
_EVENT = struct.Struct("<QHB5xQH6x")  # userdata, errno, type, nbytes, flags
_U32 = struct.Struct("<I")


def _poll_oneoff(
    caller: wasmtime.Caller, in_ptr: int, out_ptr: int, count: int, nevents_ptr: int
) -> int:
    """WASI ``poll_oneoff``, with every wait interruptible by the task's stop flag.

    Clock subscriptions (what ``sleep``/``nanosleep`` make, relative, or absolute on
    the realtime clock) wait for the earliest; fd subscriptions report ready at once,
    as poll does for regular files (stdin/stdout/stderr are files here). An absolute
    monotonic deadline is refused (``ENOTSUP`` in its event): its epoch is wasmtime's.
    """
    run: _Run | None = getattr(_current, "run", None)
    memory = caller.get("memory")
    if run is None or not isinstance(memory, wasmtime.Memory):
        return _ERRNO_FAULT
    if count <= 0:
        return _ERRNO_INVAL
    size = memory.data_len(caller)
    end = in_ptr + _SUBSCRIPTION.size * count
    if (
        in_ptr < 0
        or end > size
        or out_ptr + _EVENT.size * count > size
        or nevents_ptr + 4 > size
    ):
        return _ERRNO_FAULT
    raw = bytes(memory.read(caller, in_ptr, end))
    ready: list[bytes] = []  # events due now
    clocks: list[tuple[float, int]] = []  # (seconds from now, userdata)
    for index in range(count):
        userdata, tag, ident, timeout, _precision, flags = _SUBSCRIPTION.unpack_from(
            raw, index * _SUBSCRIPTION.size
        )
        if tag != _EVENTTYPE_CLOCK:  # fd_read / fd_write: files are always ready
            ready.append(_EVENT.pack(userdata, _ERRNO_SUCCESS, tag, 0, 0))
        elif ident not in (_CLOCK_REALTIME, _CLOCK_MONOTONIC):
            ready.append(_EVENT.pack(userdata, _ERRNO_INVAL, tag, 0, 0))
        elif not flags & _SUBCLOCKFLAG_ABSTIME:
            clocks.append((timeout / 1e9, userdata))
        elif ident == _CLOCK_REALTIME:
            clocks.append(((timeout - time.time_ns()) / 1e9, userdata))
        else:
            ready.append(_EVENT.pack(userdata, _ERRNO_NOTSUP, tag, 0, 0))
    if not ready:
        wait = min(seconds for seconds, _ in clocks)
        if wait > 0:
            run.sleep(wait)  # raises a Trap if the task is stopped meanwhile
        ready = [
            _EVENT.pack(userdata, _ERRNO_SUCCESS, _EVENTTYPE_CLOCK, 0, 0)
            for seconds, userdata in clocks
            if seconds <= wait
        ]
    memory.write(caller, b"".join(ready), out_ptr)
    memory.write(caller, _U32.pack(len(ready)), nevents_ptr)
    return _ERRNO_SUCCESS


# -- one task ----------------------------------------------------------------------------


class _Run:
    """One task's run: its input, its limits, and its stop flag.

    Shared by two threads: the Trio thread (which creates it and may call
    :meth:`stop`) and the thread running the instance (which reads the flag in the
    epoch callback and in ``poll_oneoff``). :meth:`stop` is first-wins under a lock;
    the ``threading.Event`` publishes the reason to the other thread.
    """

    def __init__(self, task: Task, stdin: bytes, timeout_ms: int, max_output: int) -> None:
        self.task_id = task.id
        self.stdin = stdin
        self.timeout_ms = timeout_ms
        self.deadline = time.monotonic() + timeout_ms / 1000
        self.max_output = max_output
        self.stop_kind: str | None = None  # "killed", "timeout" or "output"
        self.stop_reason = ""
        self.output_fds: tuple[int, ...] = ()  # stdout, stderr while running
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self, kind: str, reason: str) -> None:
        with self._lock:
            if self.stop_kind is None:
                self.stop_kind, self.stop_reason = kind, reason
                self._stopped.set()

    def check(self) -> str | None:
        """The reason to stop now, if any (the instance's thread, once per tick)."""
        if not self._stopped.is_set():
            if time.monotonic() >= self.deadline:
                self.stop("timeout", f"no result within {self.timeout_ms} ms")
            else:
                for fd in self.output_fds:
                    size = os.fstat(fd).st_size
                    if size > self.max_output:
                        self.stop(
                            "output",
                            f"the module wrote more than {self.max_output} bytes "
                            "to stdout or stderr",
                        )
                        break
        return self.stop_reason if self._stopped.is_set() else None

    def sleep(self, seconds: float) -> None:
        """Block the instance's thread for *seconds*, bounded by the deadline; trap
        (unwinding the instance) if the run is stopped meanwhile."""
        left = self.deadline - time.monotonic()
        if not self._stopped.wait(max(min(seconds, left), 0)) and seconds >= left:
            self.stop("timeout", f"no result within {self.timeout_ms} ms")
        reason = self.check()
        if reason is not None:
            raise wasmtime.Trap(reason)


@attrs.frozen
class _Outcome:
    """How one instance ended, as seen from the thread that ran it."""

    exit_code: int | None = None  # None: it did not exit (trap, error, stopped)
    trap: str | None = None
    trap_code: wasmtime.TrapCode | None = None
    error: str | None = None  # not a trap: instantiation failed, or our own stop
    instantiated: bool = True
    memory_bytes: int = 0
    stdout: bytes = b""
    stderr: bytes = b""
    duration_ms: int = 0


def _scratch_file(name: str, content: bytes, directory: str) -> tuple[int, str]:
    """An unnamed file for one stdio stream and a path that opens it: a memfd on
    Linux (``/proc/self/fd/N``), else a temporary file (unlinked by the caller)."""
    if _HAVE_MEMFD:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        path = f"/proc/self/fd/{fd}"
    else:  # pragma: no cover - not Linux
        fd, path = tempfile.mkstemp(prefix=f"{name}-", dir=directory)
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view) :]
    return fd, path


_HAVE_MEMFD: Final = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


def _cause(error: Exception) -> str:
    """The message of a wasmtime error without its backtrace ("wasm trap: ...")."""
    text = str(error).strip()
    _, found, cause = text.rpartition("Caused by:")
    return " ".join(cause.split()) if found else text


class _Module:
    """The compiled module and everything shared by its instances (all of it safe to
    share between threads: ``Engine``, ``Module`` and ``InstancePre`` are)."""

    def __init__(self, spec: WasmSpec) -> None:
        self.spec = spec
        config = wasmtime.Config()
        config.epoch_interruption = True
        config.consume_fuel = spec.fuel is not None
        self.engine = wasmtime.Engine(config)
        source = Path(spec.module_path).read_bytes()
        try:
            is_binary = source.startswith(b"\0asm")
            wasm = source if is_binary else bytes(wasmtime.wat2wasm(source))
            self.module = self._compile(wasm)
        except wasmtime.WasmtimeError as exc:
            raise ValueError(f"{spec.module_path}: not a valid module: {exc}") from None
        self._check_exports()
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        linker.allow_shadowing = True
        i32 = wasmtime.ValType.i32()
        linker.define_func(
            "wasi_snapshot_preview1",
            "poll_oneoff",
            wasmtime.FuncType([i32, i32, i32, i32], [i32]),
            _poll_oneoff,
            access_caller=True,
        )
        try:
            self.pre = linker.instantiate_pre(self.module)
        except wasmtime.WasmtimeError as exc:
            raise ValueError(
                f"{spec.module_path}: not a WASI command trio_pipe can run: {_cause(exc)}"
            ) from None
        self.argv0 = os.path.basename(spec.module_path)
        self.scratch_dir = "" if _HAVE_MEMFD else tempfile.gettempdir()

    def _compile(self, wasm: bytes) -> wasmtime.Module:
        """Compile, or load what an earlier compile left in ``cache_dir``. The cache
        key covers the module's content, wasmtime's version and the engine settings
        that change code generation (a stale or foreign entry is recompiled)."""
        cache_dir = self.spec.cache_dir
        if cache_dir is None:
            return wasmtime.Module(self.engine, wasm)
        digest = hashlib.sha256(wasm).hexdigest()
        flavour = "fuel" if self.spec.fuel is not None else "nofuel"
        path = Path(cache_dir) / f"{digest}-wasmtime-{WASMTIME_VERSION}-{flavour}.cwasm"
        if path.is_file():
            # Read, not deserialize_file: that maps the file, and a file truncated
            # under a mapping kills the process (SIGBUS).
            try:
                return wasmtime.Module.deserialize(self.engine, path.read_bytes())
            except (OSError, wasmtime.WasmtimeError) as exc:
                log.warning("recompiling %s: cached %s unusable: %s", digest, path, exc)
        module = wasmtime.Module(self.engine, wasm)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(module.serialize())
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
        return module

    def _check_exports(self) -> None:
        exports = {export.name: export.type for export in self.module.exports}
        start = exports.get("_start")
        if not isinstance(start, wasmtime.FuncType) or start.params or start.results:
            raise ValueError(
                f"{self.spec.module_path}: not a WASI command (no `_start` function)"
            )
        if not isinstance(exports.get("memory"), wasmtime.MemoryType):
            raise ValueError(f"{self.spec.module_path}: exports no `memory`")

    def execute(self, run: _Run) -> _Outcome:
        """Run one task in a new store and instance (on a worker thread)."""
        spec = self.spec
        fds: list[int] = []
        paths: list[str] = []
        store: wasmtime.Store | None = None
        _current.run = run
        started = time.perf_counter()
        try:
            if run.check() is not None:
                return _Outcome(error=run.stop_reason, instantiated=False)
            for name, content in (("stdin", run.stdin), ("stdout", b""), ("stderr", b"")):
                fd, path = _scratch_file(f"trio-pipe-{name}", content, self.scratch_dir)
                fds.append(fd)
                paths.append(path)
            run.output_fds = (fds[1], fds[2])
            wasi = wasmtime.WasiConfig()
            wasi.argv = [self.argv0]
            wasi.env = spec.env
            wasi.stdin_file = paths[0]
            wasi.stdout_file = paths[1]
            wasi.stderr_file = paths[2]
            for guest, host in spec.preopen_dirs:
                wasi.preopen_dir(host, guest, spec.preopen_writable)
            store = wasmtime.Store(self.engine)
            store.set_limits(memory_size=spec.max_memory_bytes)
            if spec.fuel is not None:
                store.set_fuel(spec.fuel)
            _wasmtime_ffi.wasmtime_store_epoch_deadline_callback(
                store.ptr(), _ON_EPOCH_DEADLINE, None, _NO_FINALIZER
            )
            store.set_epoch_deadline(1)
            store.set_wasi(wasi)
            try:
                instance = self.pre.instantiate(store)
            except wasmtime.WasmtimeError as exc:
                return _Outcome(error=_cause(exc), instantiated=False)
            exit_code: int | None = None
            trap: wasmtime.Trap | None = None
            error: wasmtime.WasmtimeError | None = None
            try:
                start = instance.exports(store)["_start"]
                assert isinstance(start, wasmtime.Func)
                start(store)
                exit_code = 0
            except wasmtime.ExitTrap as exc:
                exit_code = exc.code
            except wasmtime.Trap as exc:
                trap = exc
            except wasmtime.WasmtimeError as exc:
                error = exc
            memory = instance.exports(store).get("memory")
            return _Outcome(
                exit_code=exit_code,
                trap=None if trap is None else _cause(trap),
                trap_code=None if trap is None else trap.trap_code,
                error=None if error is None else _cause(error),
                memory_bytes=(
                    memory.data_len(store) if isinstance(memory, wasmtime.Memory) else 0
                ),
                stdout=os.pread(fds[1], spec.max_output_bytes + 1, 0),
                stderr=os.pread(fds[2], spec.max_output_bytes + 1, 0),
                duration_ms=round((time.perf_counter() - started) * 1000),
            )
        finally:
            _current.run = None
            run.output_fds = ()
            if store is not None:
                store.close()
            for fd in fds:
                os.close(fd)
            if not _HAVE_MEMFD:  # pragma: no cover - not Linux
                for path in paths:
                    os.unlink(path)


# -- outcomes ----------------------------------------------------------------------------


def _text(data: bytes, limit: int) -> str:
    text = data[:limit].decode(errors="replace").strip()
    return text + ("..." if len(data) > limit else "")


def _near_memory_limit(outcome: _Outcome, limit: int) -> bool:
    """Did the module fail with its memory at the limit? wasmtime-py's store limits
    make ``memory.grow`` fail quietly (-1) rather than trap, so a module that ran out
    of memory shows up as a failure (an abort, an exit) with its memory within one
    sixteenth (at least a page) of the limit."""
    return outcome.memory_bytes + max(limit // 16, WASM_PAGE) > limit


def result_of(run: _Run, outcome: _Outcome, spec: WasmSpec) -> TaskResult:
    """The TaskResult for one run; pure (unit-testable without wasmtime running)."""

    def failed(
        code: str, message: str, status: TaskStatus = TaskStatus.FAILED
    ) -> TaskResult:
        return TaskResult(
            task_id=run.task_id,
            status=status,
            error=TaskError(code=code, message=message, retryable=False),
            duration_ms=outcome.duration_ms,
            worker_id=spec.worker_id,
        )

    stderr = _text(outcome.stderr, STDERR_IN_MESSAGE)
    ended_normally = outcome.exit_code == 0 and outcome.instantiated
    if run.stop_kind is not None and not ended_normally:
        if run.stop_kind == "killed":
            return failed(ErrorCode.KILLED, run.stop_reason, TaskStatus.CANCELLED)
        if run.stop_kind == "timeout":
            message = f"{run.stop_reason}: the module was interrupted"
            return failed(ErrorCode.TIMEOUT, message, TaskStatus.TIMED_OUT)
        return failed(ErrorCode.WASM_OUTPUT_LIMIT, run.stop_reason)
    if not outcome.instantiated:
        message = outcome.error or "the module could not be instantiated"
        if "exceeds memory limits" in message:
            return failed(
                ErrorCode.WASM_MEMORY_LIMIT,
                f"the module needs more memory than max_memory_bytes="
                f"{spec.max_memory_bytes} at start: {message}",
            )
        return failed(ErrorCode.WASM_TRAP, f"the module could not start: {message}")
    if outcome.trap_code is wasmtime.TrapCode.OUT_OF_FUEL:
        return failed(
            ErrorCode.WASM_FUEL_EXHAUSTED,
            f"the module used all its fuel ({spec.fuel}): {outcome.trap}",
        )
    if outcome.exit_code != 0:
        if outcome.exit_code is None:
            how = outcome.trap or outcome.error or "the module failed"
        else:
            how = f"exited with status {outcome.exit_code}"
        if _near_memory_limit(outcome, spec.max_memory_bytes):
            return failed(
                ErrorCode.WASM_MEMORY_LIMIT,
                f"the module reached its memory limit ({outcome.memory_bytes} of "
                f"max_memory_bytes={spec.max_memory_bytes}) and failed: {how}"
                + (f"; stderr: {stderr}" if stderr else ""),
            )
        if outcome.exit_code is None:
            return failed(ErrorCode.WASM_TRAP, how)
        return failed(
            ErrorCode.WASM_EXIT, f"{how}" + (f": {stderr}" if stderr else " (no stderr)")
        )
    if len(outcome.stdout) > spec.max_output_bytes:
        return failed(
            ErrorCode.WASM_OUTPUT_LIMIT,
            f"the module wrote more than {spec.max_output_bytes} bytes to stdout",
        )
    try:
        payload = parse_json_value(outcome.stdout)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        shown = _text(outcome.stdout, 200) or "(nothing)"
        return failed(
            ErrorCode.PARSE_ERROR, f"the module's output is not JSON ({exc}): {shown}"
        )
    return TaskResult(
        task_id=run.task_id,
        status=TaskStatus.COMPLETED,
        payload=payload,
        duration_ms=outcome.duration_ms,
        worker_id=spec.worker_id,
    )


def _host_failure(run: _Run, spec: WasmSpec, exc: Exception) -> TaskResult:
    """A task that failed on our side, not the module's: worth another try."""
    return TaskResult(
        task_id=run.task_id,
        status=TaskStatus.FAILED,
        error=TaskError(
            code=ErrorCode.HANDLER_ERROR,
            message=f"the WASM host could not run the task: {exc!r}",
            retryable=True,
        ),
        worker_id=spec.worker_id,
    )
