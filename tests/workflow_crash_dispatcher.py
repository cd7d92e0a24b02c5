"""The dispatcher process of the workflow crash test (tests/test_workflow_crash.py).

``python -m tests.workflow_crash_dispatcher DB PORT ITEMS``: opens a dispatcher on
127.0.0.1:PORT over the SQLite store DB, prints ``ready``, and runs (with the run id
``crash-run``, whatever the incarnation) a workflow of ``ITEMS`` squares and their
sum, served by the workers of tests/crash_handlers.py; prints ``done TOTAL`` and
exits 0 when it ends.
"""

from __future__ import annotations

import sys

import trio

from trio_pipe import open_dispatcher
from trio_pipe.store import SqliteStore
from trio_pipe.workflow import Workflow, item


def squares_and_sum() -> Workflow:
    wf = Workflow("squares")
    numbers = wf.step("numbers", "workflow-step", {"op": "range", "value": wf.input("n")})
    squares = wf.map(
        "square", "workflow-step", over=numbers.output,
        payload={"op": "square", "value": item}, concurrency=4,
    )  # fmt: skip
    total = wf.step("total", "workflow-step", {"op": "sum", "value": squares.output})
    wf.output("total", total.output)
    return wf


async def main(path: str, port: int, items: int) -> None:
    async with open_dispatcher(port=port, store=SqliteStore(path)) as dispatcher:
        print("ready", dispatcher.store.epoch, flush=True)
        outputs = await dispatcher.run_workflow(
            squares_and_sum(), {"n": items}, run_id="crash-run"
        )
        print("done", outputs["total"], flush=True)


if __name__ == "__main__":
    db, port, items = sys.argv[1:]
    trio.run(main, db, int(port), int(items))
