"""WASM workers (spawn_wasm): every outcome, the limits, Kill and cancellation.

The modules are built from source in tests/wasm/ during the run, as tests need them:
C with clang's wasm32-wasi target, WAT text compiled by wasmtime itself, a Rust module
where rustc has the wasm32-wasip1 target and a Zig one where ziglang is installed.
Without one of these toolchains (or without wasmtime) the tests that need it are
skipped, unless TRIO_PIPE_REQUIRE_WASM=1 (as in CI, whose .ci/run installs clang's
target and Rust's, ziglang being in the locked test environment), in which case that
is a failure."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import ROOT

import trio_pipe
from trio_pipe import ErrorCode, Task, TaskEventKind, TaskFailed, TaskStatus
from trio_pipe.protocol import (
    Kill,
    Message,
    TaskDispatch,
    TaskResultMessage,
    decode,
    encode,
)

SOURCES = ROOT / "tests" / "wasm"
REQUIRED = os.environ.get("TRIO_PIPE_REQUIRE_WASM") == "1"
# Real-clock bounds (the deadlines here are the module's own, on time.monotonic(), in
# its thread, so no mock clock reaches them): what a test allows beyond a deadline is
# measured, not fixed -- a trivial task's round trip on the same machine just before,
# times ROUND_TRIPS, plus HICCUP for a scheduler that is busy with something else.
ROUND_TRIPS = 100
HICCUP = 0.5  # seconds


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"TRIO_PIPE_REQUIRE_WASM=1 but {reason}")
    pytest.skip(reason)


def _clang(source: Path, output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["clang", "--target=wasm32-wasi", "-O2", "-Wall", "-Wextra", "-Werror",
         "-Wl,--strip-all", "-o", str(output), str(source)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


class Modules:
    """The test modules by name: WAT text as it is (wasmtime compiles it), C built on
    first use. A test that needs a C module is skipped (or failed, if required) where
    clang cannot build for wasm32-wasi; one that needs only WAT still runs."""

    def __init__(self, build: Path) -> None:
        self._build = build
        self._built: dict[str, Path] = {}
        self._toolchain_error: str | None = None

    def __getitem__(self, name: str) -> Path:
        wat = SOURCES / f"{name}.wat"
        if wat.exists():
            return wat
        if name not in self._built:
            self._built[name] = self._compile(name)
        return self._built[name]

    def _compile(self, name: str) -> Path:
        if self._toolchain_error is None and shutil.which("clang") is None:
            self._toolchain_error = (
                "no clang (apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32)"
            )
        if self._toolchain_error is None:
            probe = self._build / "probe.c"
            probe.write_text("int main(void) { return 0; }\n")
            compiled = _clang(probe, self._build / "probe.wasm")
            self._toolchain_error = (
                ""
                if compiled.returncode == 0
                else f"clang cannot build for wasm32-wasi: {compiled.stderr[-500:]}"
            )
        if self._toolchain_error:
            _unavailable(self._toolchain_error)
        output = self._build / f"{name}.wasm"
        compiled = _clang(SOURCES / f"{name}.c", output)
        if compiled.returncode != 0:
            pytest.fail(f"{name}.c does not build: {compiled.stderr}")
        return output


@pytest.fixture(scope="session")
def modules(tmp_path_factory: pytest.TempPathFactory) -> Modules:
    try:
        import wasmtime  # noqa: F401
    except ImportError:
        _unavailable("wasmtime is not installed (pip install 'trio-pipe[wasm]')")
    return Modules(tmp_path_factory.mktemp("wasm"))


@pytest.fixture(scope="session")
def rust_text_stats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """text_stats.rs built for wasm32-wasip1 (skipped where rustc cannot)."""
    if shutil.which("rustc") is None:
        _unavailable("no rustc")
    output = tmp_path_factory.mktemp("wasm-rust") / "text_stats_rs.wasm"
    compiled = subprocess.run(
        ["rustc", "--edition", "2021", "--target", "wasm32-wasip1", "-O",
         "-C", "strip=symbols", "-o", str(output), str(SOURCES / "text_stats.rs")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if compiled.returncode != 0:
        if "target may not be installed" in compiled.stderr or "E0463" in compiled.stderr:
            _unavailable(
                "rustc has no wasm32-wasip1 target (rustup target add wasm32-wasip1)"
            )
        pytest.fail(f"text_stats.rs does not build: {compiled.stderr}")
    return output


# -- helpers ------------------------------------------------------------------------------


def text_stats(text: str) -> dict[str, Any]:
    """What a text-stats module must answer for *text* (the reference)."""
    data = text.encode()
    digest = 2166136261
    for byte in data:
        digest = ((digest ^ byte) * 16777619) % 2**32
    words = [w for w in text.replace("\t", " ").replace("\n", " ").replace("\r", " ")
             .replace("\f", " ").replace("\v", " ").split(" ") if w]  # fmt: skip
    upper = "".join(ch.upper() if "a" <= ch <= "z" else ch for ch in text)
    return {"upper": upper, "words": len(words), "fnv1a": digest}


async def slack(modules: Modules) -> float:
    """Seconds a test allows on top of a deadline: ROUND_TRIPS times the slowest of a
    few trivial round trips (submit, a new instance, a trap, the result) on a
    dispatcher of its own, plus HICCUP. It must stay far below the 60 s that these
    tests tell a stopped module from (the task's own timeout, or never)."""
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(modules["trap"], ["baseline"])
        trips = []
        for _ in range(3):
            started = time.monotonic()
            await failure(d, Task.new("baseline", {}))
            trips.append(time.monotonic() - started)
    allowed = HICCUP + ROUND_TRIPS * max(trips)
    assert allowed < 20, f"a trivial task took {max(trips):.3f} s: too slow a machine"
    return allowed


async def failure(d: trio_pipe.Dispatcher, task: Task) -> trio_pipe.TaskResult:
    with pytest.raises(TaskFailed) as caught:
        await d.run(task)
    return caught.value.result


async def wait_running(events: trio_pipe.EventStream, *task_ids: uuid.UUID) -> None:
    """Until the worker has said that each of these tasks' instances started."""
    waiting = set(task_ids)
    with trio.fail_after(10):
        async for event in events:
            if (
                isinstance(event, trio_pipe.TaskEvent)
                and event.kind is TaskEventKind.RUNNING
            ):
                waiting.discard(event.task_id)
                if not waiting:
                    return


async def next_task_starts(
    d: trio_pipe.Dispatcher, events: trio_pipe.EventStream, task_type: str
) -> float:
    """Seconds until a new task's instance starts on a worker of one slot: that slot
    frees only when the instance before it has reported, i.e. its thread has returned.
    The new task is cancelled again."""
    started = time.monotonic()
    handle = await d.submit(Task.new(task_type, {}, timeout_ms=60_000))
    await wait_running(events, handle.id)
    took = time.monotonic() - started
    await handle.cancel()
    return took


# -- completed ----------------------------------------------------------------------------

TEXTS = [
    "hello world",
    "",
    "  several   spaces\tand\ttabs\nand lines  ",
    'quotes " and \\ backslashes',
    "héllo wörld: ünïcode, emoji 😀 and a control \x01 char",
]


async def test_a_c_module_does_real_work(modules: Modules) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(modules["text_stats"], ["text-stats"])
        for text in TEXTS:
            assert await d.run(Task.new("text-stats", {"text": text})) == text_stats(text)


async def test_a_rust_module_answers_the_same(rust_text_stats: Path) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(rust_text_stats, ["text-stats"])
        for text in TEXTS:
            assert await d.run(Task.new("text-stats", {"text": text})) == text_stats(text)


async def test_the_worker_registers_as_a_wasm_worker(modules: Modules) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        worker_id = await d.spawn_wasm(
            modules["text_stats"], ["text-stats"], max_concurrency=3, tags=["sandboxed"]
        )
        assert worker_id.startswith("wasm-text_stats-")
        [info] = d.workers()
        assert (info.worker_id, info.transport, info.language) == (
            worker_id,
            "wasm",
            "wasm",
        )
        digest = hashlib.sha256(modules["text_stats"].read_bytes()).hexdigest()
        assert (info.max_concurrency, info.tags) == (
            3,
            ("sandboxed", f"digest:sha256:{digest}"),
        )
        assert info.supported_tasks == ("text-stats",)


async def test_a_hundred_tasks_share_no_state(modules: Modules) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(modules["counter"], ["count"], max_concurrency=2)
        results = []
        async with trio.open_nursery() as nursery:

            async def one() -> None:
                results.append(await d.run(Task.new("count", {})))

            for _ in range(100):
                nursery.start_soon(one)
        assert results == [{"calls": 1, "dirty": False}] * 100


async def test_the_task_json_is_the_module_s_stdin(modules: Modules) -> None:
    """The module sees the whole task: a field outside the payload is there too."""
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(modules["text_stats"], ["text-stats"])
        result = await failure(d, Task.new("text-stats", {"no text": 1}))
        assert (
            result.error is not None and "payload.text is missing" in result.error.message
        )


# -- failed -------------------------------------------------------------------------------


async def test_a_trap_fails_the_task_with_the_trap_message(
    modules: Modules,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(modules["trap"], ["trap"])
        result = await failure(d, Task.new("trap", {}))
        assert result.status is TaskStatus.FAILED and result.error is not None
        assert result.error.code == ErrorCode.WASM_TRAP
        assert result.error.message == "wasm trap: wasm `unreachable` instruction executed"


async def test_a_non_zero_exit_fails_with_stderr(modules: Modules) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(modules["exit_error"], ["exit"])
        result = await failure(d, Task.new("exit", {}))
        assert result.status is TaskStatus.FAILED and result.error is not None
        assert result.error.code == ErrorCode.WASM_EXIT
        assert result.error.message == (
            "exited with status 3: exit_error: the input could not be processed"
        )


async def test_output_that_is_not_json_is_a_parse_error(modules: Modules) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(modules["not_json"], ["talk"])
        result = await failure(d, Task.new("talk", {}))
        assert result.status is TaskStatus.FAILED and result.error is not None
        assert result.error.code == ErrorCode.PARSE_ERROR
        assert "hello, this is not JSON" in result.error.message


async def test_a_memory_bomb_fails_at_the_memory_limit(modules: Modules) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(modules["memory_bomb"], ["bomb"], max_memory_bytes=2**20)
        result = await failure(d, Task.new("bomb", {}))
        assert result.status is TaskStatus.FAILED and result.error is not None
        assert result.error.code == ErrorCode.WASM_MEMORY_LIMIT
        assert "1048576 of max_memory_bytes=1048576" in result.error.message


async def test_a_module_too_big_to_start_fails_at_the_memory_limit(tmp_path: Path) -> None:
    module = tmp_path / "big.wat"
    module.write_text('(module (memory (export "memory") 100) (func (export "_start")))')
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(module, ["big"], max_memory_bytes=2**20)  # 100 pages > 16
        result = await failure(d, Task.new("big", {}))
        assert result.error is not None
        assert result.error.code == ErrorCode.WASM_MEMORY_LIMIT
        assert "at start" in result.error.message


async def test_a_fuel_budget_stops_a_loop_deterministically(
    modules: Modules,
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(modules["infinite_loop"], ["spin"], fuel=1_000_000)
        result = await failure(d, Task.new("spin", {}))
        assert result.status is TaskStatus.FAILED and result.error is not None
        assert result.error.code == ErrorCode.WASM_FUEL_EXHAUSTED


async def test_real_work_fits_in_a_fuel_budget(modules: Modules) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(modules["text_stats"], ["text-stats"], fuel=50_000_000)
        assert await d.run(Task.new("text-stats", {"text": "a b"})) == text_stats("a b")


async def test_endless_output_is_stopped_at_the_output_limit(
    modules: Modules,
) -> None:
    async with trio_pipe.open_dispatcher(port=None, max_frame_size=2**16) as d:
        await d.spawn_wasm(modules["chatty"], ["chat"])
        result = await failure(d, Task.new("chat", {}, timeout_ms=30_000))
        assert result.status is TaskStatus.FAILED and result.error is not None
        assert result.error.code == ErrorCode.WASM_OUTPUT_LIMIT
        assert "more than 65536 bytes" in result.error.message


# -- time limits, Kill, cancellation ------------------------------------------------------


@pytest.mark.parametrize("module", ["infinite_loop", "sleeper"])
async def test_a_runaway_is_timed_out_within_its_timeout(
    modules: Modules, module: str
) -> None:
    """spawn_wasm's timeout_ms caps every task: the module itself is interrupted
    (a loop in wasm code, or a sleep in the host) and reports TimedOut."""
    allowed = await slack(modules)
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(modules[module], ["run"], timeout_ms=300)
        started = time.monotonic()
        result = await failure(d, Task.new("run", {}, timeout_ms=60_000))
        elapsed = time.monotonic() - started
        assert result.status is TaskStatus.TIMED_OUT and result.error is not None
        assert result.error.code == ErrorCode.TIMEOUT
        assert result.error.message == "no result within 300 ms: the module was interrupted"
        assert 0.3 <= elapsed < 0.3 + allowed  # not at the task's 60 s


async def test_the_task_s_own_timeout_stops_the_module(modules: Modules) -> None:
    allowed = await slack(modules)
    async with trio_pipe.open_dispatcher(port=None) as d, d.events() as events:
        await d.spawn_wasm(modules["infinite_loop"], ["spin"], max_concurrency=1)
        result = await failure(d, Task.new("spin", {}, timeout_ms=300))
        assert result.status is TaskStatus.TIMED_OUT
        assert await next_task_starts(d, events, "spin") < allowed


@pytest.mark.parametrize("module", ["infinite_loop", "sleeper"])
async def test_caller_cancellation_interrupts_the_module(
    modules: Modules, module: str
) -> None:
    allowed = await slack(modules)
    async with trio_pipe.open_dispatcher(port=None) as d, d.events() as events:
        await d.spawn_wasm(modules[module], ["run"], max_concurrency=1)
        with trio.move_on_after(0.3) as scope:
            await d.run(Task.new("run", {}, timeout_ms=60_000))
        assert scope.cancelled_caught
        assert await next_task_starts(d, events, "run") < allowed


@pytest.mark.parametrize("module", ["infinite_loop", "sleeper"])
async def test_cancelling_a_running_task_kills_its_instance(
    modules: Modules, module: str
) -> None:
    allowed = await slack(modules)
    async with trio_pipe.open_dispatcher(port=None) as d, d.events() as events:
        await d.spawn_wasm(modules[module], ["run"], max_concurrency=1)
        handle = await d.submit(Task.new("run", {}, timeout_ms=60_000))
        await wait_running(events, handle.id)
        await handle.cancel("enough")
        result = await handle.result()
        assert result.status is TaskStatus.CANCELLED
        assert await next_task_starts(d, events, "run") < allowed
        assert d.pool_stats().completed == 0


async def test_closing_the_dispatcher_interrupts_running_instances(
    modules: Modules,
) -> None:
    allowed = await slack(modules)
    async with trio_pipe.open_dispatcher(port=None, shutdown_grace=0.1) as d:
        await d.spawn_wasm(modules["infinite_loop"], ["spin"], max_concurrency=2)
        async with d.events() as events:
            handles = [await d.submit(Task.new("spin", {})) for _ in range(2)]
            await wait_running(events, *(handle.id for handle in handles))
        closing = time.monotonic()
    assert time.monotonic() - closing < 0.1 + allowed  # the grace period, not forever
    for handle in handles:
        assert (await handle.result()).status is TaskStatus.CANCELLED


async def test_removing_the_worker_interrupts_its_instances(
    modules: Modules,
) -> None:
    # Leaving the dispatcher waits for the worker's runners: it ends only if the
    # removed worker's looping instance was interrupted.
    allowed = await slack(modules)
    with trio.fail_after(allowed + 2):
        async with trio_pipe.open_dispatcher(port=None) as d, d.events() as events:
            worker_id = await d.spawn_wasm(modules["infinite_loop"], ["spin"])
            handle = await d.submit(Task.new("spin", {}, max_retries=0))
            await wait_running(events, handle.id)
            d.remove_worker(worker_id)
            result = await handle.result()
            assert result.error is not None
            assert result.error.code == ErrorCode.WORKER_REMOVED
            assert d.workers() == []


# -- concurrency --------------------------------------------------------------------------


async def test_at_most_max_concurrency_instances_run_at_once(
    modules: Modules,
) -> None:
    """Straight at the channel, past the dispatcher's own capacity accounting: four
    tasks on a channel of two, and only two instances start until one ends."""
    from trio_pipe.transports._wasm_channel import open_wasm_channel
    from trio_pipe.transports._wasm_spec import wasm_spec

    allowed = await slack(modules)
    spec = wasm_spec(modules["infinite_loop"], worker_id="limit", max_concurrency=2)
    tasks = [Task.new("spin", {}, timeout_ms=60_000) for _ in range(4)]
    async with open_wasm_channel(spec) as channel:
        await channel.send_all([encode(TaskDispatch(task)) for task in tasks])
        started: list[uuid.UUID] = []
        with trio.fail_after(10):
            while len(started) < 2:
                started.append(_running(decode(await channel.receive())))
        assert channel.running == 2  # counted before Running is posted
        # Kill one: exactly one more starts, after it ended.
        await channel.send_all([encode(Kill(task_id=started[0], reason="test"))])
        with trio.fail_after(allowed):
            ended = decode(await channel.receive())
        assert isinstance(ended, TaskResultMessage)
        assert (ended.result.task_id, ended.result.status) == (
            started[0],
            TaskStatus.CANCELLED,
        )
        assert ended.result.error is not None and ended.result.error.code == "KILLED"
        with trio.fail_after(allowed):
            third = _running(decode(await channel.receive()))
        assert third not in started and channel.running <= 2
    assert channel.running == 0


def _running(message: Message) -> uuid.UUID:
    assert isinstance(message, TaskResultMessage)
    assert message.result.status is TaskStatus.RUNNING
    return message.result.task_id


async def test_two_instances_run_in_parallel(modules: Modules) -> None:
    """Two sleeping tasks on a worker of two take one sleep's time, not two: the
    threads do not hold each other up. Each sleep is as long as the margin allowed
    for the pair beyond it, so that two sleeps in a row cannot fit."""
    nap = 0.1 + await slack(modules)
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(
            modules["sleeper"], ["nap"], max_concurrency=2, timeout_ms=math.ceil(nap * 1000)
        )
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(failure, d, Task.new("nap", {}))
        assert time.monotonic() - started < 2 * nap - 0.1


# -- the sandbox --------------------------------------------------------------------------


async def test_only_allowed_environment_variables_are_seen(
    modules: Modules, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIO_PIPE_TEST_SHOWN", "visible value")
    monkeypatch.setenv("TRIO_PIPE_TEST_HIDDEN", "secret")
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(
            modules["sandbox_probe"],
            ["probe"],
            env_allow=["TRIO_PIPE_TEST_SHOWN", "UNSET_X"],
        )
        seen = await d.run(Task.new("probe", {}))
        assert seen == {
            "env": {"TRIO_PIPE_TEST_SHOWN": "visible value"},
            "data": None,
            "hostname": None,
            "wrote": False,
        }


async def test_a_preopened_directory_is_readable_not_writable(
    modules: Modules, tmp_path: Path
) -> None:
    (tmp_path / "hello.txt").write_text("hi from the host")
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(
            modules["sandbox_probe"], ["probe"], preopen_dirs={"/data": tmp_path}
        )
        seen = await d.run(Task.new("probe", {}))
    assert (seen["data"], seen["hostname"], seen["wrote"]) == (
        "hi from the host",
        None,
        False,
    )
    assert not (tmp_path / "written.txt").exists()


async def test_a_writable_preopen_can_be_written(modules: Modules, tmp_path: Path) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(
            modules["sandbox_probe"],
            ["probe"],
            preopen_dirs={"/data": str(tmp_path)},
            preopen_writable=True,
        )
        seen = await d.run(Task.new("probe", {}))
    assert seen["wrote"] is True and (tmp_path / "written.txt").exists()


# -- spawning -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"env_allow": ["NOT-A-NAME"]}, "env_allow key"),
        ({"env_allow": "HOME"}, "env_allow"),
        ({"preopen_dirs": {"/data": "/no/such/directory"}}, "preopen_dirs['/data']"),
        ({"preopen_dirs": {"/../etc": "/tmp"}}, "preopen_dirs guest path"),
        ({"max_memory_bytes": 1000}, "max_memory_bytes"),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"fuel": -1}, "fuel"),
        ({"worker_id": "-bad"}, "worker id"),
    ],
)
async def test_invalid_options_are_refused_before_anything_runs(
    modules: Modules, options: dict[str, Any], field: str
) -> None:
    from trio_pipe._validation import InvalidSpec

    async with trio_pipe.open_dispatcher(port=None) as d:
        with pytest.raises(InvalidSpec) as caught:
            await d.spawn_wasm(modules["counter"], ["count"], **options)
        assert caught.value.field == field
        assert d.workers() == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('(module (func (export "main")))', "no `_start` function"),
        ('(module (func (export "_start")))', "exports no `memory`"),
        (
            '(module (import "env" "magic" (func)) (memory (export "memory") 1)'
            ' (func (export "_start")))',
            "not a WASI command trio_pipe can run",
        ),
        ("(module (func (export", "not a valid module"),
    ],
)
async def test_a_module_that_is_not_a_wasi_command_is_refused(
    tmp_path: Path, modules: Modules, text: str, message: str
) -> None:
    module = tmp_path / "bad.wat"
    module.write_text(text)
    async with trio_pipe.open_dispatcher(port=None) as d:
        with pytest.raises(ValueError, match=message):
            await d.spawn_wasm(module, ["bad"])
        with pytest.raises(FileNotFoundError):
            await d.spawn_wasm(tmp_path / "missing.wasm", ["bad"])
        assert d.workers() == []


async def test_a_worker_id_is_taken_once(modules: Modules) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(modules["counter"], ["count"], worker_id="only")
        with pytest.raises(ValueError, match="already supervised"):
            await d.spawn_wasm(modules["counter"], ["count"], worker_id="only")


async def test_the_compiled_module_is_cached_on_disk(
    modules: Modules, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(modules["text_stats"], ["a"], cache_dir=cache)
        [entry] = cache.iterdir()
        assert entry.suffix == ".cwasm" and "wasmtime-" in entry.name
        written = entry.stat().st_mtime_ns
        await d.spawn_wasm(modules["text_stats"], ["b"], cache_dir=cache)
        assert entry.stat().st_mtime_ns == written  # loaded, not rewritten
        assert await d.run(Task.new("b", {"text": "x y"})) == text_stats("x y")
        # A damaged entry is compiled again, not trusted.
        entry.write_bytes(b"garbage")
        await d.spawn_wasm(modules["text_stats"], ["c"], cache_dir=cache)
        assert await d.run(Task.new("c", {"text": "x"})) == text_stats("x")
        assert "recompiling" in caplog.text
        assert entry.read_bytes() != b"garbage"
        # Fuel metering changes the code: another entry.
        await d.spawn_wasm(modules["text_stats"], ["d"], cache_dir=cache, fuel=10**8)
        assert len(list(cache.iterdir())) == 2


async def test_stderr_is_logged_under_the_worker_id(
    modules: Modules, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="trio_pipe.worker")
    async with trio_pipe.open_dispatcher(port=None) as d:
        worker_id = await d.spawn_wasm(modules["exit_error"], ["exit"])
        await failure(d, Task.new("exit", {}))
    [record] = [r for r in caplog.records if r.name == f"trio_pipe.worker.{worker_id}"]
    assert record.getMessage() == "exit_error: the input could not be processed"


def _scratch_files() -> list[str]:
    """The tasks' stdio files (memfds) open in this process now."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/memfd:trio-pipe-"):
            found.append(target)
    return found


@pytest.fixture(autouse=True)
def _no_scratch_file_outlives_its_task() -> Iterator[None]:
    """Every task's stdio files get closed. wasmtime reads a file-backed stdin on its
    own tokio threads and closes it a moment after the store is gone (~0.3 ms; longer
    on a loaded machine), hence the bounded wait."""
    yield
    if os.path.isdir("/proc/self/fd"):
        deadline = time.monotonic() + 5
        while _scratch_files() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert _scratch_files() == []


# -- other languages, the docs, the benchmark -----------------------------------------------


@pytest.fixture(scope="session")
def zig_word_count(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """word_count.zig built with PyPI's ziglang (skipped, or failed if required, where
    it is not installed)."""
    if importlib.util.find_spec("ziglang") is not None:
        zig = [sys.executable, "-m", "ziglang"]
    elif shutil.which("zig") is not None:
        zig = ["zig"]
    else:
        _unavailable("no Zig (ziglang is in the locked test environment)")
    build = tmp_path_factory.mktemp("wasm-zig")
    compiled = subprocess.run(
        [*zig, "build-exe", "-target", "wasm32-wasi", "-O", "ReleaseSmall",
         str(SOURCES / "word_count.zig")],
        capture_output=True, text=True, timeout=600, cwd=build,
        env={**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(build / "cache"),
             "ZIG_LOCAL_CACHE_DIR": str(build / "cache")},
    )  # fmt: skip
    if compiled.returncode != 0:
        pytest.fail(f"word_count.zig does not build: {compiled.stderr}")
    return build / "word_count.wasm"


async def test_a_zig_module_counts_words(zig_word_count: Path) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_wasm(zig_word_count, ["count"])
        assert await d.run(Task.new("count", {"text": " one two\tthree\n"})) == {"words": 3}
        result = await failure(d, Task.new("count", {"no": "text"}))
        assert result.error is not None and result.error.code == ErrorCode.WASM_EXIT
        assert result.error.message == "exited with status 1: error: NoText"


def _code_blocks(language: str) -> list[str]:
    page = (ROOT / "docs" / "wasm.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", page, flags=re.DOTALL)


def test_the_docs_show_the_test_modules_as_they_are() -> None:
    [c_main] = _code_blocks("c")
    assert c_main.strip() in (SOURCES / "text_stats.c").read_text()
    [zig] = _code_blocks("zig")
    assert zig == (SOURCES / "word_count.zig").read_text()


def test_the_docs_example_runs(modules: Modules) -> None:
    example = _code_blocks("python")[0]
    done = subprocess.run(
        [sys.executable, "-c", example, str(modules["text_stats"])],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [promised] = re.findall(r"^\s+# (\{.*\})$", example, flags=re.MULTILINE)
    assert done.stdout.strip() == promised
    assert ast.literal_eval(promised) == text_stats("hello wasm")


def test_only_the_wasm_transport_imports_wasmtime() -> None:
    importers = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "trio_pipe").rglob("*.py")
        if re.search(r"^\s*(import|from) wasmtime\b", path.read_text(), re.MULTILINE)
    ]
    assert importers == ["trio_pipe/transports/_wasm.py"]
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys, trio_pipe, trio_pipe.dispatch, trio_pipe.transports, trio_pipe.testing;"
         "print('wasmtime' in sys.modules)"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.stdout.strip() == "False", done.stderr


async def test_the_benchmark_runs(modules: Modules) -> None:
    from benchmarks import wasm as bench

    row = await bench.measure(tasks=20, latency_tasks=5, baseline_tasks=4)
    assert row["instantiate_run_us"] > 0 and row["tasks_per_s"] > 0
    assert row["baseline_tasks_per_s"] > 0 and row["per_task_speedup"] > 0
