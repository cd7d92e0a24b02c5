"""Run the benchmark suite; print a markdown table and save JSON to benchmarks/results/.

python -m benchmarks           # quick smoke run (small N; asserts nothing)
python -m benchmarks --full    # the real numbers
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import trio

from . import (
    docker_start,
    idle_workers,
    inprocess,
    raw_echo,
    stdio_roundtrip,
    store,
    wasm,
    ws_roundtrip,
)
from ._measure import machine


async def _round_trips(full: bool) -> list[dict[str, Any]]:
    """Each scenario with the raw limit of its transport, measured in the same run;
    ``ratio`` is the scenario's throughput over the raw limit's."""
    n, n_latency = (10_000, 2_000) if full else (500, 200)
    sizes = {"tasks": n, "latency_tasks": n_latency}
    raw_ws = await raw_echo.measure_websocket(**sizes)
    raw_stdio = await raw_echo.measure_stdio(**sizes)
    rows = [raw_ws]
    for workers in (1, 2):
        rows.append({**await ws_roundtrip.measure(workers=workers, **sizes), "raw": raw_ws})
    rows.append(raw_stdio)
    for concurrency in (1, 8):
        row = await stdio_roundtrip.measure(concurrency=concurrency, **sizes)
        rows.append({**row, "raw": raw_stdio})
    for row in rows:
        if "raw" in row:
            raw = row.pop("raw")
            row["ratio_to_raw"] = row["tasks_per_s"] / raw["tasks_per_s"]
            row["p50_ratio_to_raw"] = row["p50_us"] / raw["p50_us"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--full", action="store_true", help="full-size runs")
    args = parser.parse_args()
    rows = trio.run(_round_trips, args.full)
    overhead = trio.run(inprocess.dispatch_overhead, 10_000 if args.full else 2_000)
    memory = inprocess.memory_per_queued_task(100_000 if args.full else 20_000)
    print(
        "| scenario | tasks/s (256 in flight; median of 3, min-max) | x raw "
        "| p50 µs | p50 x raw | p99 µs |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        ratio = f"{row['ratio_to_raw']:.2f}" if "ratio_to_raw" in row else "—"
        p50_ratio = f"{row['p50_ratio_to_raw']:.2f}" if "p50_ratio_to_raw" in row else "—"
        print(
            f"| {row['scenario']} | {row['tasks_per_s']:,.0f} "
            f"({row['tasks_per_s_min']:,.0f}-{row['tasks_per_s_max']:,.0f}) | {ratio} "
            f"| {row['p50_us']:,.0f} | {p50_ratio} | {row['p99_us']:,.0f} |"
        )
    print("\n| in-process scenario | figure |")
    print("|---|---|")
    print(
        f"| {overhead['scenario']} | submit {overhead['submit_us_per_task']:.1f} µs/task, "
        f"through the scheduler {overhead['round_trip_us_per_task']:.1f} µs/task |"
    )
    print(f"| {memory['scenario']} | {memory['bytes_per_queued_task']:,.0f} bytes/task |")
    rows += [overhead, memory]
    # A whole number of heartbeat intervals (see idle_workers.measure).
    idle = trio.run(
        partial(
            idle_workers.measure,
            workers=500 if args.full else 50,
            window=20.0 if args.full else 5.0,
        )
    )
    print(
        f"| {idle['scenario']} | dispatcher {idle['dispatcher_cpu_percent']:.1f} % "
        f"of one core, workers' process {idle['workers_process_cpu_percent']:.1f} % "
        f"({idle['workers_connected']} connected, {idle['workers_heard_in_window']} "
        "heard from in the window) |"
    )
    rows.append(idle)
    if docker_start.available():
        docker_start.build_image()
        docker = trio.run(docker_start.measure, 10 if args.full else 2)
        print(
            f"| {docker['scenario']} | median {docker['start_ms_median']:.0f} ms "
            f"({docker['start_ms_min']:.0f}-{docker['start_ms_max']:.0f}) |"
        )
        rows.append(docker)
    else:
        print("| docker worker start | skipped: no Docker engine or no Go |")
    wasm_row = trio.run(wasm.measure, 2000 if args.full else 200, 300 if args.full else 50)
    print(
        f"| wasm, trivial module: per task (p50) / tasks/s at max_concurrency=2 "
        f"| {wasm_row['per_task_us_p50']:,.0f} µs / {wasm_row['tasks_per_s']:,.0f} "
        f"(baseline {wasm_row['baseline']}: "
        f"{wasm_row['baseline_per_task_us_p50']:,.0f} µs / "
        f"{wasm_row['baseline_tasks_per_s']:,.0f}; x{wasm_row['per_task_speedup']:.1f} "
        f"per task, x{wasm_row['tasks_per_s_ratio']:.1f} tasks/s) |"
    )
    rows.append(wasm_row)
    store_rows = trio.run(partial(store.measure, **store.sizes(args.full)))
    store.print_section(store_rows)
    rows += store_rows
    out = Path(__file__).parent / "results" / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(
        json.dumps({"machine": machine(), "full": args.full, "runs": rows}, indent=2)
    )
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
