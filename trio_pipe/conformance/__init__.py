"""The conformance kit: checks that a worker, in any language, speaks the protocol.

``trio-pipe conformance [--stdio] -- <worker command...>`` runs :func:`run_conformance`
and prints its :class:`Report`. The contract (what the worker is given, the task types
it serves, every case) is ``docs/conformance.md``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Literal

import attrs
import trio

from .._table import aligned
from ._cases import CASES, Case, Mode
from ._harness import CaseFailed, Harness

__all__ = ["CASE_NAMES", "CaseResult", "Report", "run_conformance"]

Outcome = Literal["pass", "fail", "skip"]
CASE_NAMES: tuple[str, ...] = tuple(case.name for case in CASES)
_CASE_LIMIT = 30.0  # seconds; no case needs more than a few
_PROBLEMS_SHOWN = 3


@attrs.frozen
class CaseResult:
    name: str
    outcome: Outcome
    detail: str = ""
    seconds: float = 0.0


@attrs.frozen
class Report:
    mode: Mode
    command: tuple[str, ...]
    cases: tuple[CaseResult, ...]
    worker_log: tuple[str, ...] = ()  # the last lines the worker wrote, if any case failed

    @property
    def passed(self) -> bool:
        return all(case.outcome != "fail" for case in self.cases)

    def table(self) -> str:
        """The report as a plain-text table, with the worker's last output on failure."""
        rows = [("case", "result", "detail")]
        for case in self.cases:
            outcome = "FAIL" if case.outcome == "fail" else case.outcome
            rows.append((case.name, outcome, case.detail))
        lines = aligned(rows)
        failed = sum(case.outcome == "fail" for case in self.cases)
        passed = sum(case.outcome == "pass" for case in self.cases)
        lines.append(f"\n{self.mode} mode: {passed} passed, {failed} failed")
        if self.worker_log:
            lines.append("the worker's last output:")
            lines.extend(f"  {line}" for line in self.worker_log)
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self) | {"passed": self.passed}, indent=2)


async def run_conformance(
    command: Sequence[str],
    *,
    stdio: bool = False,
    cases: Collection[str] | None = None,
    time_scale: float = 1.0,
) -> Report:
    """Run the kit against the worker started by *command* (argv, no shell).

    *cases* selects cases by name (default: all); the others are reported ``skip``.
    *time_scale* multiplies every time limit. The worker process is stopped before
    this returns.
    """
    unknown = set(cases or ()) - set(CASE_NAMES)
    if unknown:
        raise ValueError(f"unknown cases {sorted(unknown)}; the cases are {CASE_NAMES}")
    if not time_scale > 0:
        raise ValueError(f"time_scale must be positive, got {time_scale}")
    harness = Harness(command, stdio=stdio, time_scale=time_scale)
    mode: Mode = "stdio" if stdio else "websocket"
    results: list[CaseResult] = []
    async with trio.open_nursery() as nursery:
        try:
            await harness.start(nursery)
            checked = 0
            for case in CASES:
                selected = cases is None or case.name in cases
                results.append(await _run_case(harness, case, mode, selected, checked))
                checked = harness.mark()
        except CaseFailed as exc:  # the worker could not be started
            results = [CaseResult(case.name, "fail", str(exc)) for case in CASES]
        finally:  # however the run ends, the worker does not outlive it
            with trio.CancelScope(shield=True):
                await harness.stop()
            nursery.cancel_scope.cancel()
    failed = any(result.outcome == "fail" for result in results)
    return Report(
        mode, tuple(command), tuple(results), tuple(harness.log) if failed else ()
    )


async def _run_case(
    harness: Harness, case: Case, mode: Mode, selected: bool, checked: int
) -> CaseResult:
    if not selected:
        return CaseResult(case.name, "skip", "not selected")
    if mode not in case.modes:
        return CaseResult(case.name, "skip", f"{mode} mode: {case.skip_reason}")
    started = trio.current_time()
    outcome: Outcome
    try:
        if harness.exit_status is not None and not case.launches:
            raise CaseFailed(f"the worker had exited with status {harness.exit_status}")
        with trio.fail_after(harness.seconds(_CASE_LIMIT)):
            await case.run(harness)
    except CaseFailed as exc:
        outcome, detail = "fail", str(exc)
    except trio.TooSlowError:
        outcome, detail = (
            "fail",
            f"did not finish within {harness.seconds(_CASE_LIMIT):g} s",
        )
    else:
        outcome, detail = "pass", ""
    problems = list(dict.fromkeys(harness.problems_since(checked)))  # each once
    if problems:
        shown = problems[:_PROBLEMS_SHOWN]
        if len(problems) > len(shown):
            shown.append(f"and {len(problems) - len(shown)} more")
        outcome, detail = "fail", "; ".join([*shown, *([detail] if detail else [])])
    seconds = trio.current_time() - started
    return CaseResult(case.name, outcome, detail, round(seconds, 3))
