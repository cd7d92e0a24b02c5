"""Typed tasks: payload and result classes, checked by mypy on both sides.

Run it with ``python docs/examples/typed_tasks.py``.
"""

import attrs
import trio

import trio_pipe
from trio_pipe import TaskSpec
from trio_pipe.worker import Handlers, run_worker


@attrs.frozen
class ScanReport:
    url: str
    links: int


@attrs.frozen
class ScanTarget(TaskSpec[ScanReport], task_type="scan"):
    url: str
    depth: int = 1


handlers = Handlers()


@handlers.typed(ScanTarget)
async def scan(target: ScanTarget) -> ScanReport:
    return ScanReport(url=target.url, links=10 * target.depth)


async def main() -> None:
    async with trio_pipe.open_dispatcher() as dispatcher, trio.open_nursery() as nursery:
        await nursery.start(run_worker, dispatcher.url, handlers)
        report = await dispatcher.run(ScanTarget(url="https://example.org", depth=3))
        # mypy knows `report` is a ScanReport
        print(report.url, report.links)  # https://example.org 30
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
