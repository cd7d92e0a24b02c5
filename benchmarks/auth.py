"""What worker authentication costs, measured with it on and off in the same run.

- **Handshakes per second**: WebSocket opening handshakes to a dispatcher, one after
  another from one client (connect, upgrade, close), without a token to a dispatcher
  without ``auth``, and with a token to one with ``TokenAuth`` (each handshake then
  verifies a JWT).
- **Throughput**: no-op tasks, 256 in flight, through a dispatcher to one Python
  worker process over WebSocket (the set-up of ws_roundtrip.py), the worker attached
  without and with a token. Authentication happens once per connection, so the
  target is that it changes nothing per task: within 5 %.

The two dispatchers are open side by side and measured in alternating rounds, so that
a change in the machine's load weighs on both alike.

    nox -s bench_auth                    # quick
    nox -s bench_auth -- --full          # the figures of docs/performance.md
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
import urllib.parse
from functools import partial
from typing import Any

import trio

import trio_pipe
from trio_pipe.auth import TokenAuth, new_secret
from trio_pipe.transports import connect_websocket

from ._measure import machine, throughput

IN_FLIGHT = 256


async def handshakes(url: str, token: str | None, count: int) -> float:
    """Opening handshakes per second to *url*, one after another."""
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    headers = None if token is None else {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    for _ in range(count):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        async with stream:
            ws = await connect_websocket(stream, url, headers=headers)
            await ws.aclose(1000, "")
    return count / (time.perf_counter() - started)


async def _start_worker(
    nursery: trio.Nursery, dispatcher: trio_pipe.Dispatcher, token: str | None
) -> None:
    argv = [
        sys.executable, "-m", "trio_pipe", "worker",
        "--url", dispatcher.url,
        "--handlers", "benchmarks.handlers:HANDLERS",
        "--worker-id", "bench-0",
        "--max-concurrency", str(IN_FLIGHT),
    ]  # fmt: skip
    env = dict(os.environ)
    env.pop("TRIO_PIPE_TOKEN", None)
    if token is not None:
        env["TRIO_PIPE_TOKEN"] = token
    await nursery.start(
        partial(trio.run_process, argv, check=False, stdin=subprocess.DEVNULL, env=env)
    )
    with trio.fail_after(30):
        await dispatcher.wait_for_workers(1)


async def measure(*, tasks: int, connects: int, rounds: int) -> dict[str, Any]:
    auth = TokenAuth(new_secret())
    token = auth.create(expires_in=3600, worker_id="bench-*")
    setups = {"auth off": (None, None), "auth on": (auth, token)}
    rates: dict[str, list[float]] = {name: [] for name in setups}
    connect_rates: dict[str, list[float]] = {name: [] for name in setups}
    async with contextlib.AsyncExitStack() as stack:
        dispatchers = {
            name: await stack.enter_async_context(trio_pipe.open_dispatcher(auth=a))
            for name, (a, _) in setups.items()
        }
        nursery = await stack.enter_async_context(trio.open_nursery())
        for name, (_, t) in setups.items():
            await _start_worker(nursery, dispatchers[name], t)
            await throughput(dispatchers[name], min(tasks, 500), IN_FLIGHT)  # warm-up
        for r in range(rounds):
            order = list(setups) if r % 2 == 0 else list(reversed(setups))
            for name in order:
                url, t = dispatchers[name].url, setups[name][1]
                connect_rates[name].append(await handshakes(url, t, connects))
                rates[name].append(await throughput(dispatchers[name], tasks, IN_FLIGHT))
        nursery.cancel_scope.cancel()
    off, on = (statistics.median(rates[n]) for n in setups)
    connects_off, connects_on = (statistics.median(connect_rates[n]) for n in setups)
    return {
        "scenario": "worker authentication (TokenAuth) on and off, one Python worker",
        "rounds": rounds,
        "handshakes_per_s_off": connects_off,
        "handshakes_per_s_on": connects_on,
        "handshakes_ratio": connects_on / connects_off,
        "tasks_per_s_off": off,
        "tasks_per_s_on": on,
        "tasks_per_s_ratio": on / off,
        "tasks_per_s_rounds": rates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    sizes = (
        {"tasks": 10_000, "connects": 2_000, "rounds": 6}
        if args.full
        else {"tasks": 300, "connects": 50, "rounds": 2}
    )
    row = trio.run(partial(measure, **sizes))
    print(f"machine: {machine()}")
    print(
        f"handshakes/s: off {row['handshakes_per_s_off']:,.0f}, on "
        f"{row['handshakes_per_s_on']:,.0f} (x{row['handshakes_ratio']:.2f}); "
        f"tasks/s, 256 in flight: off {row['tasks_per_s_off']:,.0f}, on "
        f"{row['tasks_per_s_on']:,.0f} (x{row['tasks_per_s_ratio']:.3f}; medians of "
        f"{row['rounds']} alternating rounds)"
    )
    print(json.dumps(row))


if __name__ == "__main__":
    main()
