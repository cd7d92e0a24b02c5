"""What the HTTP API and its Prometheus metrics cost, measured with them on and off in
the same run.

- **Throughput**: no-op tasks, 256 in flight, submitted in-process, through a
  dispatcher to one Python worker process over WebSocket (the set-up of
  ws_roundtrip.py). "plain" is a dispatcher without ``http=``; "http + metrics" serves
  the HTTP API and ``/metrics`` (its metrics task keeping every gauge) while a client
  scrapes ``/metrics`` every second, as Prometheus would. The two dispatchers are open
  side by side, each with its own worker process, and measured in alternating rounds,
  so that a change in the machine's load weighs on both alike; the figures are
  medians.
- **Latency**: the p50 of one task at a time, submitted and awaited in-process
  (``dispatcher.run``) and through the HTTP API (``POST /tasks`` then ``GET
  /tasks/{id}/wait``, on one kept-alive connection), on the "http + metrics"
  dispatcher.

    nox -s bench_http                    # quick
    nox -s bench_http -- --full          # the figures of docs/performance.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from typing import Any

import httpx
import trio

import trio_pipe
from trio_pipe import Task

from ._measure import machine, throughput

IN_FLIGHT = 256
SCRAPE_INTERVAL = 1.0


async def _start_worker(
    nursery: trio.Nursery, dispatcher: trio_pipe.Dispatcher, worker_id: str
) -> None:
    argv = [
        sys.executable, "-m", "trio_pipe", "worker",
        "--url", dispatcher.url,
        "--handlers", "benchmarks.handlers:HANDLERS",
        "--worker-id", worker_id,
        "--max-concurrency", str(IN_FLIGHT),
    ]  # fmt: skip
    await nursery.start(
        partial(trio.run_process, argv, check=False, stdin=subprocess.DEVNULL)
    )
    with trio.fail_after(30):
        await dispatcher.wait_for_workers(1)


async def _scrape(url: str, scrapes: list[float]) -> None:
    """GET /metrics every second; note how long each took (ms)."""
    async with httpx.AsyncClient(base_url=url) as client:
        while True:
            started = time.perf_counter()
            response = await client.get("/metrics")
            response.raise_for_status()
            scrapes.append((time.perf_counter() - started) * 1000)
            await trio.sleep(SCRAPE_INTERVAL)


async def _in_process_latencies(
    dispatcher: trio_pipe.Dispatcher, count: int
) -> list[float]:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        await dispatcher.run(Task.new("noop", i))
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


async def _http_latencies(url: str, count: int) -> list[float]:
    samples = []
    async with httpx.AsyncClient(base_url=url) as client:
        for i in range(count):
            started = time.perf_counter()
            submitted = await client.post("/tasks", json={"taskType": "noop", "payload": i})
            task_id = submitted.raise_for_status().json()["id"]
            waited = await client.get(f"/tasks/{task_id}/wait", params={"timeout": 30})
            assert waited.raise_for_status().json()["status"] == "Completed"
            samples.append((time.perf_counter() - started) * 1e6)
    return samples


async def measure(*, tasks: int, latency_tasks: int, rounds: int) -> dict[str, Any]:
    setups = {"plain": None, "http + metrics": ("127.0.0.1", 0)}
    rates: dict[str, list[float]] = {name: [] for name in setups}
    scrapes: list[float] = []
    latencies: dict[str, list[float]] = {"in-process": [], "http": []}
    async with contextlib.AsyncExitStack() as stack:
        dispatchers = {
            name: await stack.enter_async_context(trio_pipe.open_dispatcher(http=http))
            for name, http in setups.items()
        }
        nursery = await stack.enter_async_context(trio.open_nursery())
        for index, dispatcher in enumerate(dispatchers.values()):
            await _start_worker(nursery, dispatcher, f"bench-{index}")
            await throughput(dispatcher, min(tasks, 500), IN_FLIGHT)  # warm-up
        served = dispatchers["http + metrics"]
        nursery.start_soon(_scrape, served.http_url, scrapes)
        for r in range(rounds):
            order = list(setups) if r % 2 == 0 else list(reversed(setups))
            for name in order:
                rates[name].append(await throughput(dispatchers[name], tasks, IN_FLIGHT))
        await _http_latencies(served.http_url, min(latency_tasks, 100))  # warm-up
        one_at_a_time = {
            "in-process": partial(_in_process_latencies, served),
            "http": partial(_http_latencies, served.http_url),
        }
        for r in range(rounds):  # alternating, as the throughput rounds
            order = list(one_at_a_time) if r % 2 == 0 else list(reversed(one_at_a_time))
            for name in order:
                latencies[name] += await one_at_a_time[name](latency_tasks // rounds)
        nursery.cancel_scope.cancel()
    plain, served_rate = (statistics.median(rates[n]) for n in setups)
    p50 = {name: statistics.median(samples) for name, samples in latencies.items()}
    return {
        "scenario": "HTTP API + /metrics scraped every second vs none, one Python worker",
        "load_average": os.getloadavg(),
        "rounds": rounds,
        "tasks_per_s_plain": plain,
        "tasks_per_s_http_metrics": served_rate,
        "tasks_per_s_ratio": served_rate / plain,
        "tasks_per_s_rounds": rates,
        "scrapes": len(scrapes),
        "scrape_ms_p50": statistics.median(scrapes) if scrapes else None,
        "p50_us_in_process": p50["in-process"],
        "p50_us_http": p50["http"],
        "latency_samples": len(latencies["http"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    sizes = (
        {"tasks": 10_000, "latency_tasks": 2_000, "rounds": 6}
        if args.full
        else {"tasks": 300, "latency_tasks": 100, "rounds": 2}
    )
    load_before = os.getloadavg()
    row = trio.run(partial(measure, **sizes))
    print(f"machine: {machine()}")
    print(f"load average before: {load_before}, after: {row['load_average']}")
    print(
        f"tasks/s, 256 in flight: plain {row['tasks_per_s_plain']:,.0f}, http + metrics "
        f"{row['tasks_per_s_http_metrics']:,.0f} (x{row['tasks_per_s_ratio']:.3f}; "
        f"medians of {row['rounds']} alternating rounds; {row['scrapes']} scrapes, "
        f"p50 {row['scrape_ms_p50'] or 0:.1f} ms)"
    )
    print(
        f"p50 submit + result, one at a time: in-process {row['p50_us_in_process']:,.0f} "
        f"us, through the HTTP API {row['p50_us_http']:,.0f} us "
        f"({row['latency_samples']} samples each)"
    )
    print(json.dumps({**row, "load_average_before": load_before}))


if __name__ == "__main__":
    main()
