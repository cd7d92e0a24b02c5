"""The Celery side of ``benchmarks.peers``: one no-op task, broker and result backend
on the Redis at ``$TRIO_PIPE_BENCH_REDIS`` (broker database 0, results database 1).

Celery is not a dependency of trio_pipe: only ``nox -s bench_peers`` installs it.
Configuration is Celery's default apart from the settings below.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery  # type: ignore[import-untyped, import-not-found, unused-ignore]

REDIS_URL = os.environ.get("TRIO_PIPE_BENCH_REDIS", "redis://127.0.0.1:6379")

app = Celery("trio_pipe_bench", broker=f"{REDIS_URL}/0", backend=f"{REDIS_URL}/1")
app.conf.update(broker_connection_retry_on_startup=True)


@app.task(name="noop")  # type: ignore[untyped-decorator, unused-ignore]
def noop(payload: Any) -> Any:
    return payload
