"""YAML pipelines running: real shell steps on the spawned shell worker, real worker
processes, the two examples through the real command line, and the run records that
``trio-pipe runs`` reads back."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import test_docker
import test_ssh
import trio
from helpers import ROOT, start_python_worker
from test_ssh import SshServer

from trio_pipe import StepEvent, StepEventKind
from trio_pipe.pipeline import RunOutcome, list_runs, parse_pipeline, read_run, run_pipeline

pytestmark = pytest.mark.timeout(120)
EXAMPLES = ROOT / "examples"
ssh_server = test_ssh.sshd  # the fixture: a real sshd on 127.0.0.1
docker_image = test_docker.image  # the fixture: an image of a Go worker, on an engine


async def run(
    tmp_path: Path, text: str, *, run_id: str = "run-1", **options: Any
) -> tuple[RunOutcome, list[StepEvent]]:
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    pipeline = parse_pipeline(path.read_text(), str(path))
    events: list[StepEvent] = []
    also = options.pop("on_event", lambda event: None)

    def on_event(event: StepEvent) -> None:
        events.append(event)
        also(event)

    options.setdefault("port", None)
    outcome = await run_pipeline(
        pipeline,
        runs_dir=str(tmp_path / "runs"),
        run_id=run_id,
        on_event=on_event,
        **options,
    )
    return outcome, events


def record(tmp_path: Path, run_id: str = "run-1") -> dict[str, Any]:
    return read_run(str(tmp_path / "runs"), run_id)


async def test_outputs_flow_from_step_to_step_and_every_step_is_recorded(
    tmp_path: Path,
) -> None:
    outcome, events = await run(
        tmp_path,
        """\
        env: {GREETING: hello}
        tasks:
          make:
            run: |
              echo "making"
              echo "making quietly" >&2
              echo "path=$PWD/made.txt" >> "$TRIO_PIPE_OUTPUT"
              echo "count=3" >> "$TRIO_PIPE_OUTPUT"
          use:
            env: {WHO: '${{ env.GREETING }} world'}
            run: 'echo "$WHO: ${{ tasks.make.outputs.path }} x${{ tasks.make.outputs.count }}"'
        """,
    )
    assert outcome.error is None
    assert outcome.outputs == {
        "make": {"path": f"{tmp_path}/made.txt", "count": "3"},
        "use": {},
    }
    assert [(e.step, e.kind) for e in events] == [
        ("make", StepEventKind.STARTED),
        ("make", StepEventKind.COMPLETED),
        ("use", StepEventKind.STARTED),
        ("use", StepEventKind.COMPLETED),
    ]
    steps = tmp_path / "runs" / "run-1" / "steps"
    assert (steps / "use" / "stdout.log").read_text() == (
        f"hello world: {tmp_path}/made.txt x3\n"
    )
    assert (steps / "make" / "stderr.log").read_text() == "making quietly\n"
    assert json.loads((steps / "make" / "outputs.json").read_text())["count"] == "3"
    run_json = record(tmp_path)
    assert run_json["status"] == "completed" and run_json["error"] is None
    assert run_json["pipeline"] == "pipeline"
    assert {name: s["status"] for name, s in run_json["steps"].items()} == {
        "make": "completed",
        "use": "completed",
    }
    assert all(s["startedAt"] <= s["endedAt"] for s in run_json["steps"].values())
    assert (tmp_path / "runs" / "run-1" / "pipeline.yaml").read_text() == (
        tmp_path / "pipeline.yaml"
    ).read_text()


async def test_fail_fast_kills_a_running_sibling_and_records_why(tmp_path: Path) -> None:
    started = tmp_path / "started"
    finished = tmp_path / "finished"
    with trio.fail_after(60):
        outcome, events = await run(
            tmp_path,
            f"""\
            tasks:
              slow:
                run: 'touch {started}; sleep 60; touch {finished}'
              broken:
                run: 'while [ ! -e {started} ]; do sleep 0.01; done; echo doomed >&2; exit 3'
              after:
                run: 'true'
                depends_on: [broken]
            """,
        )
    assert outcome.error is not None and "'broken'" in outcome.error
    steps = record(tmp_path)["steps"]
    assert steps["broken"]["status"] == "failed"
    assert "exited with status 3; stderr ends: doomed" in steps["broken"]["error"]
    assert steps["slow"]["status"] == "cancelled"
    assert steps["after"]["status"] == "pending"
    assert record(tmp_path)["status"] == "failed"
    assert not finished.exists()
    assert StepEventKind.CANCELLED in {e.kind for e in events if e.step == "slow"}


async def test_without_fail_fast_independent_steps_run_and_dependents_are_blocked(
    tmp_path: Path,
) -> None:
    outcome, _ = await run(
        tmp_path,
        """\
        fail_fast: false
        tasks:
          broken: {run: 'exit 1'}
          after: {run: 'true', depends_on: [broken]}
          other: {run: 'echo ok=1 >> "$TRIO_PIPE_OUTPUT"'}
        """,
    )
    assert outcome.error is not None
    assert outcome.outputs == {"other": {"ok": "1"}}
    steps = record(tmp_path)["steps"]
    assert [steps[n]["status"] for n in ("broken", "after", "other")] == [
        "failed", "blocked", "completed",
    ]  # fmt: skip


async def test_retries_run_a_failed_step_again(tmp_path: Path) -> None:
    outcome, _ = await run(
        tmp_path,
        """\
        tasks:
          flaky:
            retries: 2
            run: 'echo x >> tries; [ "$(wc -l < tries)" -ge 3 ] && echo "tries=$(wc -l < tries)" >> "$TRIO_PIPE_OUTPUT"'
        """,
    )
    assert outcome.error is None
    assert outcome.outputs == {"flaky": {"tries": "3"}}


async def test_a_step_past_its_timeout_is_killed_with_its_children(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "child.pid"
    with trio.fail_after(60):
        outcome, _ = await run(
            tmp_path,
            f"""\
            tasks:
              warm: {{run: 'true'}}  # the shell worker is up before the clock starts
              stuck:
                depends_on: [warm]
                timeout: 2
                run: 'sleep 60 & echo $! > {pid_file}; wait'
            """,
        )
    assert outcome.error is not None and "TimedOut" in outcome.error
    assert record(tmp_path)["steps"]["stuck"]["status"] == "failed"
    pid = int(pid_file.read_text())
    # The worker killed the step's process group as the task timed out, and stopped
    # only once the group was gone; the run ends after its workers stop.
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead, not yet reaped
        return stat.read().split(") ")[-1][0] != "Z"


async def test_concurrency_bounds_the_shell_steps_running_at_once(
    tmp_path: Path,
) -> None:
    # Each step holds a directory while it runs; a second step running at the same
    # time fails to make it.
    step = "{run: 'mkdir held && sleep 0.2 && rmdir held'}"
    outcome, _ = await run(
        tmp_path,
        f"""\
        concurrency: 1
        tasks:
          a: {step}
          b: {step}
          c: {step}
        """,
    )
    assert outcome.error is None


async def test_a_task_type_step_runs_on_a_worker_that_attaches(tmp_path: Path) -> None:
    listening = trio.Event()
    url = ""

    def on_listening(address: str) -> None:
        nonlocal url
        url = address
        listening.set()

    async with trio.open_nursery() as nursery:

        async def attach() -> None:
            await listening.wait()
            await start_python_worker(nursery, url, "attached")

        nursery.start_soon(attach)
        with trio.fail_after(60):
            outcome, _ = await run(
                tmp_path,
                """\
                tasks:
                  make: {run: 'echo "n=7" >> "$TRIO_PIPE_OUTPUT"'}
                  echo:
                    type: echo
                    payload: {got: '${{ tasks.make.outputs.n }}', all: '${{ tasks.make.outputs }}', text: 'n is ${{ tasks.make.outputs }}'}
                """,
                port=0,
                on_listening=on_listening,
            )
        nursery.cancel_scope.cancel()
    assert outcome.error is None
    assert outcome.outputs["echo"] == {
        "got": "7", "all": {"n": "7"}, "text": 'n is {"n":"7"}',
    }  # fmt: skip


# -- the command line ----------------------------------------------------------------


async def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)  # the worker command `trio-pipe` of the examples
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    completed = await trio.run_process(
        [sys.executable, "-m", "trio_pipe", "--log-level", "WARNING", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=cwd,
        env=env,
    )
    return subprocess.CompletedProcess(
        completed.args,
        completed.returncode,
        completed.stdout.decode(),
        completed.stderr.decode(),
    )


def fnv1a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


@pytest.mark.slow
async def test_the_word_report_example_mixes_shell_python_and_wasm(
    tmp_path: Path,
) -> None:
    pytest.importorskip("wasmtime")
    folder = tmp_path / "word-report"
    shutil.copytree(EXAMPLES / "word-report", folder)
    with trio.fail_after(90):
        completed = await cli("run", "pipeline.yaml", "--run-id", "r1", cwd=folder)
    assert completed.returncode == 0, completed.stderr
    text = " ".join((folder / "poem.txt").read_text().splitlines()) + " "
    runs = folder / ".trio-pipe" / "runs" / "r1"
    outputs = {
        step: json.loads((runs / "steps" / step / "outputs.json").read_text())
        for step in ("read", "frequencies", "checksum", "report")
    }
    assert outputs["read"] == {"text": text}
    assert outputs["frequencies"] == {"words": 18, "top": "the:5 plain:3 rain:2"}
    assert outputs["checksum"] == {"fnv1a": fnv1a(text.encode())}
    assert outputs["report"] == {
        "summary": f"the:5 plain:3 rain:2 / {fnv1a(text.encode())}"
    }
    assert (
        (runs / "steps" / "report" / "stdout.log")
        .read_text()
        .startswith("18 words; top: the:5 plain:3 rain:2\n")
    )
    kinds = {
        name: step["kind"]
        for name, step in read_run(str(runs.parent), "r1")["steps"].items()
    }
    assert kinds == {
        "read": "shell",
        "frequencies": "task",
        "checksum": "task",
        "report": "shell",
    }


@pytest.mark.slow
async def test_the_release_example_packages_what_its_steps_made(tmp_path: Path) -> None:
    folder = tmp_path / "release"
    shutil.copytree(EXAMPLES / "release", folder)
    with trio.fail_after(90):
        completed = await cli("run", "pipeline.yaml", "--run-id", "r1", cwd=folder)
    assert completed.returncode == 0, completed.stderr
    assert "package completed" in completed.stdout  # not a terminal: one line each
    archive = folder / "release-1.4.0.tar.gz"
    listing = await trio.run_process(["tar", "-tf", archive], capture_stdout=True)
    assert sorted(listing.stdout.decode().split()) == [
        "./", "./README", "./VERSION", "./numbers.txt",
    ]  # fmt: skip
    outputs = json.loads(
        (folder / ".trio-pipe/runs/r1/steps/package/outputs.json").read_text()
    )
    assert outputs == {"archive": str(archive), "files": "3"}


async def test_runs_list_and_show_read_the_records_back(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: twice\ntasks:\n  ok: {run: 'true'}\n  bad: {run: 'exit 4', depends_on: [ok]}\n"
    )
    with trio.fail_after(60):
        failed = await cli("run", "p.yaml", "--run-id", "a-first", cwd=tmp_path)
        (tmp_path / "p.yaml").write_text("name: twice\ntasks:\n  ok: {run: 'true'}\n")
        passed = await cli("run", "p.yaml", "--run-id", "b-second", cwd=tmp_path)
    assert failed.returncode == 1 and "failed at step 'bad'" in failed.stdout
    assert passed.returncode == 0
    listing = await cli("runs", "list", cwd=tmp_path)
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["RUN", "PIPELINE", "STATUS", "STARTED", "TOOK", "STEPS"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["a-first", "twice", "failed"],
        ["b-second", "twice", "completed"],
    ]
    assert "1/2 completed" in lines[1] and "1/1 completed" in lines[2]
    as_json = json.loads((await cli("runs", "list", "--json", cwd=tmp_path)).stdout)
    assert as_json == list_runs(str(tmp_path / ".trio-pipe" / "runs"))
    show = await cli("runs", "show", "a-first", cwd=tmp_path)
    assert show.returncode == 0
    assert "status    failed" in show.stdout
    assert any(
        line.split()[:3] == ["bad", "shell", "failed"] and "exited with status 4" in line
        for line in show.stdout.splitlines()
    )
    shown = json.loads(
        (await cli("runs", "show", "b-second", "--json", cwd=tmp_path)).stdout
    )
    assert shown["runId"] == "b-second" and shown["steps"]["ok"]["status"] == "completed"
    missing = await cli("runs", "show", "nope", cwd=tmp_path)
    assert missing.returncode == 1 and "no run 'nope'" in missing.stderr


async def test_an_invalid_file_exits_2_with_its_position(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("tasks:\n  a: {run: x, depends_on: [b]}\n")
    completed = await cli("run", "p.yaml", cwd=tmp_path)
    assert completed.returncode == 2
    assert completed.stderr == (
        "trio-pipe run: p.yaml:2:28: task 'a' depends on 'b', which is not a task\n"
    )
    assert not (tmp_path / ".trio-pipe").exists()
    unreadable = await cli("run", "missing.yaml", cwd=tmp_path)
    assert unreadable.returncode == 2 and "cannot read missing.yaml" in unreadable.stderr
    (tmp_path / "ok.yaml").write_text("tasks:\n  a: {run: x}\n")
    escaping = await cli("run", "ok.yaml", "--run-id", "../elsewhere", cwd=tmp_path)
    assert escaping.returncode == 2 and "invalid run id '../elsewhere'" in escaping.stderr
    assert not (tmp_path / ".trio-pipe").exists()
    checked = await cli("run", "--check", "ok.yaml", cwd=tmp_path)
    assert (checked.returncode, checked.stdout) == (0, "ok.yaml: pipeline 'ok', 1 tasks\n")


async def test_cached_steps_are_served_from_the_store_until_the_worker_version_changes(
    tmp_path: Path,
) -> None:
    store = f"sqlite:///{tmp_path}/tasks.db"

    def pipeline(version: str) -> str:
        return f"""\
            workers:
              py:
                command: [{sys.executable}, -m, trio_pipe, worker, --stdio, --handlers, "tests.worker_handlers:HANDLERS"]
                env: {{PYTHONPATH: {ROOT}}}
                tasks: [echo]
                version: "{version}"
            tasks:
              count:
                cache: true
                run: 'echo ran >> ran.log; echo "n=1" >> "$TRIO_PIPE_OUTPUT"; echo said'
              echo:
                cache: true
                type: echo
                payload: {{n: '${{{{ tasks.count.outputs.n }}}}'}}
            """

    with trio.fail_after(90):
        first, _ = await run(tmp_path, pipeline("1"), run_id="a", store=store)
        second, events = await run(tmp_path, pipeline("1"), run_id="b", store=store)
        third, _ = await run(tmp_path, pipeline("2"), run_id="c", store=store)
    assert first.error is second.error is third.error is None
    assert first.outputs == second.outputs == third.outputs
    assert {e.step: e.cached for e in events if e.kind is StepEventKind.COMPLETED} == {
        "count": True,
        "echo": True,
    }
    cached = {
        run_id: {name: s["cached"] for name, s in record(tmp_path, run_id)["steps"].items()}
        for run_id in "abc"
    }
    assert cached == {
        "a": {"count": False, "echo": False},
        "b": {"count": True, "echo": True},
        "c": {"count": True, "echo": False},  # the echo worker's version changed
    }
    assert (tmp_path / "ran.log").read_text() == "ran\n"  # the command ran once
    # A cached shell step's logs are those of the run that produced them.
    assert (tmp_path / "runs" / "b" / "steps" / "count" / "stdout.log").read_text() == (
        "said\n"
    )


async def test_a_cancelled_run_is_recorded_as_failed_and_its_steps_killed(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "child.pid"
    with trio.move_on_after(60) as timeout, trio.CancelScope() as scope:

        def cancel_once_started(event: StepEvent) -> None:
            if event.step == "slow" and event.kind is StepEventKind.STARTED:
                scope.cancel()

        await run(
            tmp_path,
            f"""\
            tasks:
              warm: {{run: 'true'}}  # the shell worker is up when slow starts
              slow:
                depends_on: [warm]
                run: 'sleep 60 & echo $! > {pid_file}; wait'
            """,
            on_event=cancel_once_started,
        )
    assert scope.cancelled_caught and not timeout.cancelled_caught
    run_json = record(tmp_path)
    assert (run_json["status"], run_json["error"]) == ("failed", "the run was cancelled")
    assert run_json["steps"]["slow"]["status"] == "cancelled"
    if pid_file.exists():  # the command had started when the run was cancelled
        assert not _alive(int(pid_file.read_text()))


def test_the_live_display_is_a_table_of_the_steps_on_a_terminal(tmp_path: Path) -> None:
    from rich.console import Console

    from trio_pipe.pipeline._run import ProgressDisplay

    path = tmp_path / "p.yaml"
    path.write_text("tasks:\n  a: {run: x}\n  b: {run: x}\n  c: {run: x, cache: true}\n")
    pipeline = parse_pipeline(path.read_text(), str(path))
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)

    def event(step: str, kind: StepEventKind, **extra: Any) -> StepEvent:
        return StepEvent(kind, "p", "r", step, 0.0, **extra)

    with ProgressDisplay(pipeline, console) as display:
        assert display.live is not None
        display(event("a", StepEventKind.STARTED))
        display(event("a", StepEventKind.FAILED, error="exited with status 2"))
        display(event("c", StepEventKind.COMPLETED, cached=True))
    rows = {}  # the last drawing of each step's row: step -> (status, time, note)
    for line in screen.getvalue().splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 4 and cells[0] in ("a", "b", "c"):
            rows[cells[0]] = (cells[1], cells[3])
    assert rows == {
        "a": ("failed", "exited with status 2"),
        "b": ("pending", ""),
        "c": ("completed", "cached"),
    }


@pytest.mark.slow
async def test_workers_over_ssh_serve_task_types_and_pinned_shell_tasks(
    tmp_path: Path, ssh_server: SshServer
) -> None:
    keys = f"{{host: 127.0.0.1, user: {ssh_server.user}, port: {ssh_server.port}, known_hosts: {ssh_server.known_hosts}, client_keys: [{ssh_server.client_key}]}}"
    python = f"[{sys.executable}, -m, trio_pipe, --log-level, WARNING, worker, --stdio, --handlers"
    with trio.fail_after(90):
        outcome, _ = await run(
            tmp_path,
            f"""\
            workers:
              remote-shell:
                ssh: {keys}
                command: {python}, "trio_pipe.pipeline._shell:HANDLERS"]
                tasks: [trio-pipe.shell]
                env: {{FROM_WORKER: remote}}
              remote-echo:
                ssh: {keys}
                command: {python}, "tests.worker_handlers:HANDLERS"]
                env: {{PYTHONPATH: {ROOT}}}
                tasks: [echo]
            tasks:
              there:
                worker: remote-shell
                run: 'echo "where=$FROM_WORKER" >> "$TRIO_PIPE_OUTPUT"; echo "pwd=$PWD" >> "$TRIO_PIPE_OUTPUT"'
              back:
                type: echo
                payload: {{where: '${{{{ tasks.there.outputs.where }}}}'}}
            """,
        )
    assert outcome.error is None, outcome.error
    assert outcome.outputs["there"]["where"] == "remote"
    # Pinned to another host, a shell task runs where its worker starts, not in the
    # pipeline's folder.
    assert outcome.outputs["there"]["pwd"] != str(tmp_path)
    assert outcome.outputs["back"] == {"where": "remote"}


@pytest.mark.slow
async def test_a_docker_worker_serves_its_task_types_and_is_cached_by_image_id(
    tmp_path: Path, docker_image: str
) -> None:
    store = f"sqlite:///{tmp_path}/tasks.db"
    pipeline = f"""\
        workers:
          box:
            docker: {{image: "{docker_image}", network: none}}
            command: [/worker]
            tasks: [whoami, echo]
        tasks:
          where: {{type: whoami, cache: true}}
          back: {{type: echo, payload: {{host: '${{{{ tasks.where.outputs }}}}'}}}}
        """
    with trio.fail_after(120):
        first, _ = await run(tmp_path, pipeline, run_id="a", store=store)
        second, events = await run(tmp_path, pipeline, run_id="b", store=store)
    assert first.error is None, first.error
    hostname = first.outputs["where"]
    assert isinstance(hostname, str) and hostname != os.uname().nodename  # in a container
    assert first.outputs["back"] == {"host": hostname}
    # The second run's whoami came from the cache, keyed by the image's id.
    assert second.outputs == first.outputs
    assert [
        e.cached for e in events if e.step == "where" and e.kind is StepEventKind.COMPLETED
    ] == [True]
    missing = pipeline.replace(docker_image, "trio-pipe-test/missing:0")
    with pytest.raises(OSError, match=r"^docker image inspect"):
        await run(tmp_path, missing, run_id="c", store=store)
    assert record(tmp_path, "c")["error"].startswith("the run stopped: OSError: docker")


async def test_a_worker_that_cannot_start_stops_the_run_and_is_recorded(
    tmp_path: Path,
) -> None:
    (tmp_path / "p.yaml").write_text(
        "workers:\n  w: {command: [./no-such-worker], tasks: [t]}\ntasks:\n  a: {type: t}\n"
    )
    with trio.fail_after(60):
        completed = await cli("run", "p.yaml", "--run-id", "r", cwd=tmp_path)
    assert completed.returncode == 1
    assert completed.stderr.startswith("trio-pipe run: the run stopped: ")
    assert "no-such-worker" in completed.stderr
    assert "Traceback" not in completed.stderr
    run_json = read_run(str(tmp_path / ".trio-pipe" / "runs"), "r")
    assert run_json["status"] == "failed"
    assert run_json["error"] == completed.stderr.removeprefix("trio-pipe run: ").strip()
    assert run_json["steps"]["a"]["status"] == "pending"
