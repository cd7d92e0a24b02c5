"""Spawned stdio workers: a Python worker process (this same file, run with
--worker) and, where jq is installed, the bash worker from bash-worker.sh.

Run it with ``python docs/examples/stdio_workers.py``.
"""

import shutil
import sys
from functools import partial
from pathlib import Path

import trio

import trio_pipe
from trio_pipe import RestartPolicy, Task
from trio_pipe.worker import Handlers, serve_stdio

handlers = Handlers()


@handlers.handler("shout")
async def shout(payload: dict[str, str]) -> str:
    return payload["text"].upper() + "!"


HERE = Path(__file__).resolve().parent


async def main() -> None:
    async with trio_pipe.open_dispatcher(port=None) as dispatcher:
        # Any program that speaks newline-delimited JSON on stdin/stdout is a worker;
        # the dispatcher supervises it (restarts on failure, with backoff).
        await dispatcher.spawn_stdio(
            [sys.executable, str(HERE / "stdio_workers.py"), "--worker"],
            tasks=["shout"],
            worker_id="shouter",
            max_concurrency=4,
            restart=RestartPolicy(max_restarts=3, window=60),
        )
        print(await dispatcher.run(Task.new("shout", {"text": "hello"})))  # HELLO!

        if shutil.which("jq"):
            bash = ["bash", str(HERE / "bash-worker.sh")]
            await dispatcher.spawn_stdio(bash, tasks=["word-count"])
            count = await dispatcher.run(Task.new("word-count", {"text": "a b c"}))
            assert count == {"words": 3}

        print(sorted({w.transport for w in dispatcher.workers()}))  # ['stdio']
    # Leaving the block: Shutdown line, stdin closed, and the processes are gone.


if __name__ == "__main__":
    if "--worker" in sys.argv:
        trio.run(partial(serve_stdio, handlers, max_concurrency=4))  # as registered
    else:
        trio.run(main)
