"""What a WASM worker runs, validated: :class:`WasmSpec` and :func:`wasm_spec`, and
the limits' defaults. Pure values: no wasmtime here (``_wasm`` runs them)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Final

import attrs

from .._validation import InvalidSpec, validate_env, validate_path
from ..protocol import DEFAULT_MAX_FRAME_SIZE

__all__ = [
    "DEFAULT_MAX_MEMORY_BYTES",
    "EPOCH_TICK",
    "STDERR_IN_MESSAGE",
    "WASM_PAGE",
    "WasmSpec",
    "wasm_spec",
]

#: Seconds between two epoch ticks while an instance runs: the resolution of timeouts
#: and the longest a ``Kill`` waits to reach a module running wasm code.
EPOCH_TICK: Final = 0.005
DEFAULT_MAX_MEMORY_BYTES: Final = 64 * 1024 * 1024
WASM_PAGE: Final = 65536
#: stderr kept for a failure message (the rest is logged, up to the output limit).
STDERR_IN_MESSAGE: Final = 2048


@attrs.frozen
class WasmSpec:
    """What to run for one WASM worker, validated (make it with :func:`wasm_spec`)."""

    module_path: str
    worker_id: str
    max_concurrency: int
    max_memory_bytes: int
    timeout_ms: int | None
    fuel: int | None
    env: tuple[tuple[str, str], ...]  # copied from os.environ by name, at spawn
    preopen_dirs: tuple[tuple[str, str], ...]  # (guest path, host directory)
    preopen_writable: bool
    cache_dir: str | None
    max_output_bytes: int


def _positive_int(value: object, field: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidSpec(field, f"must be an int >= {minimum}", repr(value)[:64])
    return int(value)


def wasm_spec(
    module_path: str | os.PathLike[str],
    *,
    worker_id: str,
    max_concurrency: int = 2,
    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
    timeout_ms: int | None = None,
    fuel: int | None = None,
    env_allow: Sequence[str] = (),
    preopen_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
    preopen_writable: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    max_output_bytes: int = DEFAULT_MAX_FRAME_SIZE,
) -> WasmSpec:
    """Validate the options of :meth:`Dispatcher.spawn_wasm` (``InvalidSpec``)."""
    if isinstance(env_allow, str):
        raise InvalidSpec("env_allow", "must be a sequence of names, not one str")
    names = validate_env(dict.fromkeys(env_allow, ""), field="env_allow")
    directories = []
    for guest, host in (preopen_dirs or {}).items():
        guest_path = validate_path(guest, field="preopen_dirs guest path")
        host_path = validate_path(host, field=f"preopen_dirs[{guest_path!r}]")
        if not os.path.isdir(host_path):
            raise InvalidSpec(
                f"preopen_dirs[{guest_path!r}]", "is not a directory", repr(host_path)[:64]
            )
        directories.append((guest_path, host_path))
    cache = None if cache_dir is None else validate_path(cache_dir, field="cache_dir")
    return WasmSpec(
        module_path=validate_path(module_path, field="module_path"),
        worker_id=worker_id,
        max_concurrency=_positive_int(max_concurrency, "max_concurrency"),
        max_memory_bytes=_positive_int(
            max_memory_bytes, "max_memory_bytes", minimum=WASM_PAGE
        ),
        timeout_ms=None if timeout_ms is None else _positive_int(timeout_ms, "timeout_ms"),
        fuel=None if fuel is None else _positive_int(fuel, "fuel"),
        env=tuple((name, os.environ[name]) for name in names if name in os.environ),
        preopen_dirs=tuple(directories),
        preopen_writable=bool(preopen_writable),
        cache_dir=cache,
        max_output_bytes=_positive_int(max_output_bytes, "max_output_bytes"),
    )
