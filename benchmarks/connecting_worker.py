"""A WebSocket worker for the restart benchmark (benchmarks/store.py), started before
its dispatcher listens:

    python -m benchmarks.connecting_worker URL WORKER_ID MAX_CONCURRENCY

It prints ``connecting`` once it is about to try, then tries again every few
milliseconds until the dispatcher answers, so that the time to its first task
measures the dispatcher's opening rather than the worker's backoff (``trio-pipe
worker`` backs off up to 10 s between attempts). It serves benchmarks/handlers.py
and exits when the dispatcher shuts it down.
"""

from __future__ import annotations

import logging
import sys
from functools import partial

import trio

from trio_pipe.worker import run_worker

from .handlers import HANDLERS

#: Seconds between connection attempts, at most (the delay is drawn in [0, this]).
RETRY_INTERVAL = 0.005


def main() -> None:
    url, worker_id, max_concurrency = sys.argv[1:]
    # Every refused attempt is a warning; hundreds of them say nothing here.
    logging.getLogger("trio_pipe.worker").setLevel(logging.ERROR)
    print("connecting", flush=True)
    trio.run(
        partial(
            run_worker,
            url,
            HANDLERS,
            worker_id=worker_id,
            max_concurrency=int(max_concurrency),
            backoff_initial=RETRY_INTERVAL,
            backoff_max=RETRY_INTERVAL,
        )
    )


if __name__ == "__main__":
    main()
