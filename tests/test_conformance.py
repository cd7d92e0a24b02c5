"""The conformance kit: it passes good workers and fails each broken rule precisely.

The workers are real processes: the Python SDK's ``trio-pipe worker`` and a worker
written against the protocol by hand (``tests/conformance_worker.py``) whose flags
break one rule each.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest
import trio
from helpers import ROOT, child_processes

from trio_pipe.conformance import CASE_NAMES, Report, run_conformance
from trio_pipe.conformance._canonical import check_canonical

pytestmark = pytest.mark.slow

HAND_WRITTEN = [sys.executable, str(ROOT / "tests" / "conformance_worker.py")]


def outcomes(report: Report) -> dict[str, str]:
    return {case.name: case.outcome for case in report.cases}


def detail(report: Report, name: str) -> str:
    return next(case.detail for case in report.cases if case.name == name)


# -- canonical output -------------------------------------------------------------------

RESULT = {
    "taskId": "3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f",
    "status": "Completed",
    "payload": {"n": 1.0, "Odd_Key": True},
    "error": None,
    "durationMs": 3,
    "workerId": "w1",
}


def result_frame(**changes: object) -> str:
    result = {key: value for key, value in (RESULT | changes).items() if value != "DROP"}
    return json.dumps({"type": "TaskResult", "result": result})


@pytest.mark.parametrize(
    ("frame", "problems"),
    [
        (result_frame(), []),  # payload keys are the user's: "Odd_Key" is fine
        (result_frame(payload={"n": 1}), []),  # 1 and 1.0 are the same JSON number
        (
            result_frame(status="completed"),
            ['TaskResult.result.status: "completed" is not canonical, write "Completed"'],
        ),
        (
            result_frame(durationMs="DROP"),
            ["TaskResult.result: field 'durationMs' is missing (write 0)"],
        ),
        (result_frame(extra=1), ["TaskResult.result: unknown field 'extra'"]),
        (
            result_frame(taskId="DROP", task_id=RESULT["taskId"]),
            ["TaskResult.result: field 'task_id' must be spelled 'taskId'"],
        ),
        (
            result_frame(workerid="w1", workerId="DROP"),
            ["TaskResult.result: field 'workerid' must be spelled 'workerId'"],
        ),
    ],
)
def test_check_canonical_names_each_departure(frame: str, problems: list[str]) -> None:
    message, found = check_canonical(frame)
    assert message is not None
    assert found == problems


def _registration_frame(language: object) -> str:
    registration = {"workerId": "w1", "supportedTasks": [], "maxConcurrency": 1}
    registration |= {"language": language, "tags": []}
    return json.dumps({"type": "WorkerRegister", "registration": registration})


def test_check_canonical_holds_language_to_rust_pipes_form() -> None:
    assert check_canonical(_registration_frame("Go"))[1] == []
    assert check_canonical(_registration_frame({"Other": "Java"}))[1] == []
    assert check_canonical(_registration_frame("Java"))[1] == [
        'WorkerRegister.registration.language: "Java" is not canonical, '
        'write {"Other": "Java"}'
    ]
    assert check_canonical(_registration_frame({"Other": "Go"}))[1] == [
        'WorkerRegister.registration.language: {"Other": "Go"} is not canonical, write "Go"'
    ]


def test_check_canonical_reports_what_the_dispatcher_refuses() -> None:
    message, problems = check_canonical('{"type":"TaskResult","result":{"status":"Done"}}')
    assert message is None
    assert problems == [
        "the dispatcher refuses it: invalid TaskResult: required field missing "
        "@ $.result.taskId; unknown task status 'Done' @ $.result.status"
    ]
    assert check_canonical("not json")[1][0].startswith("the dispatcher refuses it: ")


# -- workers that follow the contract ---------------------------------------------------


def _documented_runs() -> list[tuple[list[str], bool]]:
    """The kit commands of docs/conformance.md's first sh block: (worker argv, stdio)."""
    text = (ROOT / "docs" / "conformance.md").read_text(encoding="utf-8")
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    runs = []
    for line in block.splitlines():
        if line.startswith("trio-pipe conformance"):
            options, _, command = " ".join(shlex.split(line)[2:]).partition("-- ")
            argv = shlex.split(command)
            assert argv[0] == "trio-pipe"
            runs.append(
                ([sys.executable, "-m", "trio_pipe", *argv[1:]], "--stdio" in options)
            )
    return runs


@pytest.mark.parametrize(
    ("command", "stdio"), _documented_runs(), ids=["websocket", "stdio"]
)
async def test_the_python_sdk_passes_as_documented(command: list[str], stdio: bool) -> None:
    report = await run_conformance(command, stdio=stdio)
    assert report.passed, report.table()
    skipped = {"registration", "reconnect", "auth"} if stdio else set()
    assert outcomes(report) == {
        name: "skip" if name in skipped else "pass" for name in CASE_NAMES
    }


async def test_a_worker_written_by_hand_passes_in_stdio_mode() -> None:
    report = await run_conformance(HAND_WRITTEN, stdio=True)
    assert report.passed, report.table()


async def test_a_worker_that_never_reconnects_fails_only_reconnect() -> None:
    report = await run_conformance(HAND_WRITTEN)
    failed = {name for name, outcome in outcomes(report).items() if outcome == "fail"}
    assert failed == {"reconnect", "graceful-shutdown"}, report.table()
    assert "the worker exited first" in detail(report, "reconnect")
    assert detail(report, "graceful-shutdown") == "the worker had exited with status 0"


# -- broken workers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "case", "expected"),
    [
        (
            ["--lowercase-status", "--snake-case"],
            "echo",
            "TaskResult.result: field 'task_id' must be spelled 'taskId'; "
            'TaskResult.result.status: "completed" is not canonical, write "Completed"',
        ),
        (
            ["--ignore-kill"],
            "kill",
            "no result for the killed task (does the handler still run?) within 2 s",
        ),
        (["--no-heartbeat"], "heartbeat", "0 heartbeats in 3 s, expected at least 4"),
        (
            ["--unbounded"],
            "max-concurrency",
            # Whichever the kit sees first: a heartbeat during the sleeps, or their end.
            (
                "a heartbeat shows activeTasks 3",
                "3 one-second sleeps completed within 1.5 s on a worker of capacity 2: "
                "they ran at once",
            ),
        ),
        (
            ["--crash-on-garbage"],
            "malformed-input",
            "result for the 'echo' task: the worker exited first (status 1)",
        ),
        (["--exit-status", "3"], "graceful-shutdown", "the worker exited with status 3"),
        (
            ["--no-drain"],
            "sigterm-drain",
            "Backpressure with draining true after SIGTERM: the worker exited first "
            "(status -15)",
        ),
        (["--exit-status", "3"], "sigterm-drain", "the worker exited with status 3"),
    ],
)
async def test_a_broken_rule_fails_its_case_precisely(
    flags: list[str], case: str, expected: str | tuple[str, ...]
) -> None:
    report = await run_conformance([*HAND_WRITTEN, *flags], stdio=True, cases=[case])
    assert not report.passed
    assert outcomes(report)[case] == "fail"
    assert detail(report, case).startswith(expected), report.table()
    others = {outcome for name, outcome in outcomes(report).items() if name != case}
    assert others == {"skip"}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ["--no-token"],
            "the handshake was refused 401: no token: the handshake has no "
            "Authorization header",
        ),
        (
            ["--retry-refused"],
            "no exit of the worker after its handshake was refused with HTTP 401 "
            "within 10 s (it opened ",
        ),
        (
            ["--quiet-refusal"],
            "the worker's output (stdout and stderr) does not mention 401",
        ),
        (
            ["--refusal-exits-0"],
            "the worker exited with status 0 after HTTP 401, expected non-zero",
        ),
    ],
)
async def test_the_auth_case_catches_a_worker_that_mishandles_its_token(
    flags: list[str], expected: str
) -> None:
    report = await run_conformance([*HAND_WRITTEN, *flags], cases=["auth"])
    assert outcomes(report)["auth"] == "fail"
    assert detail(report, "auth").startswith(expected), report.table()


async def test_the_auth_case_passes_a_worker_that_sends_its_token_and_stops_on_401() -> (
    None
):
    report = await run_conformance(HAND_WRITTEN, cases=["auth"])
    assert outcomes(report)["auth"] == "pass", report.table()


async def test_a_run_cancelled_from_outside_stops_the_worker() -> None:
    with trio.move_on_after(2) as scope:  # in the middle of the heartbeat case
        await run_conformance(HAND_WRITTEN, stdio=True)
    assert scope.cancelled_caught
    assert child_processes() == []


async def test_a_command_that_cannot_start_fails_every_case() -> None:
    report = await run_conformance(["/nonexistent/worker"], stdio=True)
    assert {case.outcome for case in report.cases} == {"fail"}
    assert detail(report, "echo").startswith("cannot start '/nonexistent/worker'")


async def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown cases \\['nope'\\]"):
        await run_conformance(HAND_WRITTEN, cases=["nope"])
    with pytest.raises(ValueError, match="time_scale must be positive"):
        await run_conformance(HAND_WRITTEN, time_scale=0)
    with pytest.raises(ValueError, match="no worker command"):
        await run_conformance([])


# -- the command line -------------------------------------------------------------------


def kit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_pipe", "conformance", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_cli_prints_the_table_and_exits_1_on_failure() -> None:
    done = await trio.to_thread.run_sync(
        kit, "--stdio", "--case", "kill", "--", *HAND_WRITTEN, "--ignore-kill"
    )
    assert done.returncode == 1, done.stderr
    assert "kill               FAIL    no result for the killed task" in done.stdout
    assert "stdio mode: 0 passed, 1 failed" in done.stdout


async def test_cli_json_report_and_exit_0_on_success() -> None:
    done = await trio.to_thread.run_sync(
        kit, "--stdio", "--json", "--case", "echo", "--", *HAND_WRITTEN
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] is True
    assert report["mode"] == "stdio"
    assert {"name": "echo", "outcome": "pass"}.items() <= report["cases"][2].items()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give the worker command after '--'"),
        (("--case", "nope", "--", "true"), "invalid choice: 'nope'"),
        (("--time-scale", "0", "--", "true"), "must be a positive number"),
    ],
)
async def test_cli_usage_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    done = await trio.to_thread.run_sync(kit, *args)
    assert done.returncode == 2
    assert message in done.stderr
