"""Workflows: a DAG of steps -- a fan-out, batches, a decision, a convergence.

Run it with ``python docs/examples/workflows.py``.
"""

import trio

import trio_pipe
from trio_pipe import StepEvent, StepEventKind, WorkflowFailed
from trio_pipe.worker import Handlers, TaskFailure, run_worker
from trio_pipe.workflow import Workflow, item

handlers = Handlers()


@handlers.handler("split")
async def split(payload: dict[str, str]) -> list[str]:
    return payload["text"].split(". ")


@handlers.handler("count-words")
async def count_words(sentence: str) -> int:
    return len(sentence.split())


@handlers.handler("count-letters")
async def count_letters(payload: dict[str, object]) -> int:
    sentences, span = payload["sentences"], payload["range"]
    assert isinstance(sentences, list) and isinstance(span, dict)
    return sum(len(s) for s in sentences[span["start"] : span["stop"]])


@handlers.handler("add")
async def add(numbers: list[int]) -> int:
    return sum(numbers)


@handlers.handler("classify")
async def classify(counts: list[int]) -> str:
    return "long" if max(counts) > 5 else "short"


@handlers.handler("summarise")
async def summarise(payload: dict[str, object]) -> str:
    return f"{payload['kind']} sentences, {payload['words']} words"


@handlers.handler("first")
async def first(values: list[object]) -> object:
    return next(value for value in values if value is not None)


@handlers.handler("fail")
async def fail(payload: object) -> None:
    raise TaskFailure("BROKEN", "this step always fails")


def text_report() -> Workflow:
    wf = Workflow("text-report")
    # A step's payload may hold references: to a workflow input...
    sentences = wf.step("split", "split", {"text": wf.input("text")})
    # ...or to another step's output, which makes it depend on that step.
    # Fan-out: one task per sentence, at most 4 at a time; the output is the list.
    words = wf.map("words", "count-words", over=sentences.output, concurrency=4)
    total = wf.step("total-words", "add", words.output)
    # Batches: the sentences in ranges of 2, then converge on the list of results.
    letters = wf.batch(
        "letters", "count-letters", sentences.output, size=2,
        payload={"sentences": sentences.output, "range": item},
    )  # fmt: skip
    wf.step("total-letters", "add", letters.output)
    # A decision: its output names the branch to run; the other one is skipped.
    wf.decision(
        "size", "classify", words.output,
        branches={"long": ["long-summary"], "short": ["short-summary"]},
    )  # fmt: skip
    for kind in ("long", "short"):
        wf.step(f"{kind}-summary", "summarise", {"kind": kind, "words": total.output})
    # A converging step runs after whichever branch ran (the other's output: None).
    summary = wf.step(
        "summary", "first",
        [wf.steps["long-summary"].output, wf.steps["short-summary"].output],
        converge=True,
    )  # fmt: skip
    wf.output("words", words.output)
    wf.output("letters", wf.steps["total-letters"].output)
    wf.output("summary", summary.output)
    return wf


async def main() -> None:
    async with (
        trio_pipe.open_dispatcher() as dispatcher,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(run_worker, dispatcher.url, handlers)
        async with dispatcher.events() as events:
            text = "Trio runs every task in a nursery. It is tidy. Workers speak JSON"
            outputs = await dispatcher.run_workflow(text_report(), {"text": text})
            print(outputs["words"])  # [7, 3, 3]
            print(outputs["letters"])  # 61
            print(outputs["summary"])  # long sentences, 13 words
            events.close()
            skipped = [
                e.step
                async for e in events
                if isinstance(e, StepEvent) and e.kind is StepEventKind.SKIPPED
            ]
            print(skipped)  # ['short-summary']

        # Fail-fast (the default): the first failure cancels what still runs.
        broken = Workflow("broken")
        broken.step("ok", "add", [1, 2])
        broken.step("bad", "fail", None, retries=0)
        try:
            await dispatcher.run_workflow(broken)
        except WorkflowFailed as failed:
            print(failed.step, failed.statuses["bad"])  # bad failed
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
