"""YAML pipelines: every validation error, located at file:line:column, and what a
valid file compiles to. No dispatcher here."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from trio_pipe import PipelineError
from trio_pipe.pipeline import SHELL_TASK, parse_pipeline
from trio_pipe.workflow import Ref, Text

ENVIRON = {"HOME_DIR": "/home/x"}


# (id, the file, line, column, what the message says)
ERRORS = [
    ("yaml-syntax", "tasks: [a\n", 2, 1, "invalid YAML"),
    (
        "yaml-character",
        "tasks:\n  a: {run: \x07}\n",
        2,
        12,
        "special characters are not allowed",
    ),
    ("empty", "", 1, 1, "the pipeline is empty"),
    ("not-a-mapping", "- a\n", 1, 1, "the pipeline must be a mapping"),
    ("key-not-a-string", "1: a\n", 1, 1, "keys of the pipeline must be strings"),
    ("duplicate-key", "name: a\nname: b\n", 2, 1, "the pipeline has 'name' twice"),
    ("unknown-top-key", "nmae: a\n", 1, 1, "unknown key 'nmae' in the pipeline"),
    ("not-a-scalar", "name: [a]\ntasks: {a: {run: x}}\n", 1, 7, "expected a single value"),
    (
        "empty-string",
        "name: ''\ntasks: {a: {run: x}}\n",
        1,
        7,
        "name must be a non-empty string",
    ),
    ("bad-name", "name: a b\ntasks: {a: {run: x}}\n", 1, 7, "invalid pipeline name 'a b'"),
    (
        "concurrency",
        "concurrency: 0\ntasks: {a: {run: x}}\n",
        1,
        14,
        "concurrency must be an integer >= 1",
    ),
    (
        "fail-fast",
        "fail_fast: 'no'\ntasks: {a: {run: x}}\n",
        1,
        12,
        "fail_fast must be true or false",
    ),
    (
        "env-name",
        "env: {1X: a}\ntasks: {a: {run: x}}\n",
        1,
        7,
        "invalid environment variable name '1X'",
    ),
    ("env-value", "env: {X: }\ntasks: {a: {run: x}}\n", 1, 9, "env: X needs a value"),
    (
        "env-uses-outputs",
        "env: {X: '${{ tasks.a.outputs }}'}\ntasks: {a: {run: x}}\n",
        1,
        10,
        "task outputs cannot be used here",
    ),
    (
        "env-not-set",
        "env: {X: '${{ env.NOPE }}'}\ntasks: {a: {run: x}}\n",
        1,
        10,
        "environment variable 'NOPE' is not set",
    ),
    ("no-tasks", "name: a\n", 1, 1, "the pipeline has no tasks"),
    ("tasks-empty", "tasks: {}\n", 1, 8, "the pipeline has no tasks"),
    ("tasks-not-a-mapping", "tasks: [a]\n", 1, 8, "tasks must be a mapping"),
    (
        "worker-name",
        "workers: {'a b': {command: [x], tasks: [t]}}\ntasks: {a: {run: x}}\n",
        1,
        11,
        "invalid worker name 'a b'",
    ),
    (
        "worker-unknown-key",
        "workers:\n  w: {cmd: [x], tasks: [t]}\ntasks: {a: {run: x}}\n",
        2,
        7,
        "unknown key 'cmd' in worker 'w'",
    ),
    (
        "worker-neither",
        "workers:\n  w: {tasks: [t]}\ntasks: {a: {run: x}}\n",
        2,
        6,
        "worker 'w' needs a command, wasm or docker",
    ),
    (
        "worker-wasm-and-command",
        "workers:\n  w: {command: [x], wasm: m.wat, tasks: [t]}\ntasks: {a: {run: x}}\n",
        2,
        7,
        "worker 'w': wasm takes no command",
    ),
    (
        "worker-no-tasks",
        "workers:\n  w: {command: [x]}\ntasks: {a: {run: x}}\n",
        2,
        6,
        "worker 'w' needs tasks",
    ),
    (
        "worker-tasks-not-strings",
        "workers:\n  w: {command: [x], tasks: [{a: 1}]}\ntasks: {a: {run: x}}\n",
        2,
        29,
        "expected a single value",
    ),
    (
        "worker-tasks-mapping",
        "workers:\n  w: {command: [x], tasks: {a: 1}}\ntasks: {a: {run: x}}\n",
        2,
        28,
        "worker 'w' tasks must be a list of strings",
    ),
    (
        "worker-empty-command",
        "workers:\n  w: {command: [], tasks: [t]}\ntasks: {a: {run: x}}\n",
        2,
        16,
        "worker 'w' has an empty command",
    ),
    (
        "worker-no-module",
        "workers:\n  w: {wasm: missing.wat, tasks: [t]}\ntasks: {a: {run: x}}\n",
        2,
        13,
        "worker 'w': no file /p/missing.wat",
    ),
    (
        "worker-concurrency",
        "workers:\n  w: {command: [x], tasks: [t], max_concurrency: 0}\ntasks: {a: {run: x}}\n",
        2,
        50,
        "max_concurrency must be an integer >= 1",
    ),
    (
        "worker-env",
        "workers:\n  w: {command: [x], tasks: [t], env: {X: '${{ env.NOPE }}'}}\ntasks: {a: {run: x}}\n",
        2,
        42,
        "environment variable 'NOPE' is not set",
    ),
    (
        "worker-reserved-name",
        "workers:\n  shell: {command: [x], tasks: [t]}\ntasks: {a: {run: x}}\n",
        2,
        3,
        "worker name 'shell' is the shell tasks' own worker",
    ),
    (
        "worker-ssh-without-command",
        "workers:\n  w: {ssh: {host: h}, tasks: [t]}\ntasks: {a: {run: x}}\n",
        2,
        7,
        "worker 'w': ssh needs a command",
    ),
    (
        "worker-ssh-unknown-key",
        "workers:\n  w: {command: [x], ssh: {hots: h}, tasks: [t]}\ntasks: {a: {run: x}}\n",
        2,
        27,
        "unknown key 'hots' in worker 'w' ssh",
    ),
    (
        "worker-ssh-missing",
        "workers:\n  w: {command: [x], ssh: {host: h, user: u, client_keys: [k]}, tasks: [t]}\ntasks: {a: {run: x}}\n",
        2,
        26,
        "worker 'w' ssh needs known_hosts",
    ),
    (
        "worker-ssh-port",
        "workers:\n  w: {command: [x], ssh: {host: h, user: u, known_hosts: k, client_keys: k, port: 0}, tasks: [t]}\ntasks: {a: {run: x}}\n",
        2,
        83,
        "port must be an integer >= 1",
    ),
    (
        "task-worker-unknown",
        "tasks:\n  a: {run: x, worker: w}\n",
        2,
        23,
        "task 'a': no worker 'w' in workers",
    ),
    (
        "task-worker-does-not-serve",
        "workers:\n  w: {command: [x], tasks: [t]}\ntasks:\n  a: {type: u, worker: w}\n",
        4,
        24,
        "task 'a': worker 'w' does not serve 'u'",
    ),
    (
        "shell-task-worker-does-not-serve",
        "workers:\n  w: {command: [x], tasks: [t]}\ntasks:\n  a: {run: x, worker: w}\n",
        4,
        23,
        "task 'a': worker 'w' does not serve 'trio-pipe.shell'",
    ),
    (
        "worker-two-kinds",
        "workers:\n  w: {wasm: m.wat, docker: {image: i}, tasks: [t]}\ntasks: {a: {run: x}}\n",
        2,
        6,
        "worker 'w' has more than one of wasm, ssh and docker",
    ),
    (
        "worker-docker-unknown-key",
        "workers:\n  w: {docker: {img: i}, tasks: [t]}\ntasks: {a: {run: x}}\n",
        2,
        16,
        "unknown key 'img' in worker 'w' docker",
    ),
    (
        "worker-docker-no-image",
        "workers:\n  w: {docker: {network: none}, tasks: [t]}\ntasks: {a: {run: x}}\n",
        2,
        15,
        "worker 'w' docker needs image",
    ),
    ("task-name", "tasks:\n  a.b: {run: x}\n", 2, 3, "invalid task name 'a.b'"),
    ("task-not-a-mapping", "tasks:\n  a: x\n", 2, 6, "task 'a' must be a mapping"),
    (
        "task-unknown-key",
        "tasks:\n  a: {run: x, retry: 1}\n",
        2,
        15,
        "unknown key 'retry' in task 'a'",
    ),
    (
        "task-neither",
        "tasks:\n  a: {retries: 1}\n",
        2,
        6,
        "task 'a' needs either run (a shell command) or type",
    ),
    (
        "task-both",
        "tasks:\n  a: {run: x, type: t}\n",
        2,
        6,
        "task 'a' needs either run (a shell command) or type",
    ),
    (
        "run-with-payload",
        "tasks:\n  a: {run: x, payload: {}}\n",
        2,
        15,
        "task 'a' runs a command: no payload",
    ),
    (
        "type-with-env",
        "tasks:\n  a: {type: t, env: {X: y}}\n",
        2,
        16,
        "env is for shell tasks",
    ),
    ("run-not-a-string", "tasks:\n  a: {run: 5}\n", 2, 12, "run must be a string"),
    ("type-empty", "tasks:\n  a: {type: ''}\n", 2, 13, "type must be a non-empty string"),
    (
        "depends-on-unknown",
        "tasks:\n  a: {run: x, depends_on: [b]}\n",
        2,
        28,
        "task 'a' depends on 'b', which is not a task",
    ),
    (
        "depends-on-not-a-list",
        "tasks:\n  a: {run: x, depends_on: {b: 1}}\n",
        2,
        27,
        "depends_on must be a list of strings",
    ),
    (
        "uses-unknown-task",
        "tasks:\n  a: {run: 'echo ${{ tasks.b.outputs.x }}'}\n",
        2,
        12,
        "task 'a' uses the outputs of unknown task 'b'",
    ),
    (
        "cycle",
        "tasks:\n  a: {run: x, depends_on: [c]}\n  b: {run: x, depends_on: [a]}\n  c: {run: 'echo ${{ tasks.b.outputs.y }}'}\n",
        2,
        3,
        "form a cycle: 'a' -> 'b' -> 'c' -> 'a'",
    ),
    (
        "retries",
        "tasks:\n  a: {run: x, retries: -1}\n",
        2,
        24,
        "retries must be an integer >= 0",
    ),
    (
        "timeout",
        "tasks:\n  a: {run: x, timeout: 0}\n",
        2,
        24,
        "timeout must be a number of seconds > 0",
    ),
    (
        "timeout-bool",
        "tasks:\n  a: {run: x, timeout: true}\n",
        2,
        24,
        "timeout must be a number of seconds > 0",
    ),
    ("unclosed", "tasks:\n  a: {run: 'echo ${{ env.HOME_DIR'}\n", 2, 12, "unclosed ${{"),
    (
        "bad-expression",
        "tasks:\n  a: {run: 'echo ${{ tasks..x }}'}\n",
        2,
        12,
        "invalid expression ${{ tasks..x }}",
    ),
    (
        "unknown-expression",
        "tasks:\n  a: {run: 'echo ${{ secrets.x }}'}\n",
        2,
        12,
        "unknown expression ${{ secrets.x }}",
    ),
    (
        "payload-key",
        "tasks:\n  a: {type: t, payload: {1: 2}}\n",
        2,
        26,
        "keys of a payload must be strings",
    ),
    (
        "task-env-not-set",
        "tasks:\n  a: {run: x, env: {Y: '${{ env.NOPE }}'}}\n",
        2,
        24,
        "environment variable 'NOPE' is not set",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [error[1:] for error in ERRORS],
    ids=[error[0] for error in ERRORS],
)
def test_every_validation_error_gives_file_line_and_column(
    text: str, line: int, column: int, message: str
) -> None:
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(text, "/p/pipe.yaml", environ=ENVIRON)
    error = caught.value
    assert (error.path, error.line, error.column) == ("/p/pipe.yaml", line, column)
    assert message in error.message
    assert str(error) == f"/p/pipe.yaml:{line}:{column}: {error.message}"


def test_a_file_without_a_name_needs_one_that_can_name_a_workflow() -> None:
    with pytest.raises(
        PipelineError, match=r"^/p/my pipe.yaml:1:1: invalid pipeline name 'my pipe'"
    ):
        parse_pipeline("tasks: {a: {run: x}}\n", "/p/my pipe.yaml")
    assert parse_pipeline("tasks: {a: {run: x}}\n", "/p/my-pipe.yml").name == "my-pipe"


def test_a_pipeline_compiles_to_a_workflow_in_dependency_order(tmp_path: Path) -> None:
    (tmp_path / "m.wat").write_text("(module)")
    pipeline = parse_pipeline(
        textwrap.dedent(
            """\
            name: build
            concurrency: 3
            fail_fast: false
            env: {OUT: '${{ env.HOME_DIR }}/out'}
            workers:
              py: {command: [a, b], tasks: [count], version: 2, max_concurrency: 4}
              mod: {wasm: m.wat, tasks: [hash]}
            tasks:
              report:
                run: 'echo ${{ tasks.count.outputs.n }} ${{ tasks.make.outputs.path }}'
                env: {WHERE: '${{ env.OUT }}', FLAG: true, N: '${{ tasks.count.outputs.n }}'}
              count:
                type: count
                payload: {file: '${{ tasks.make.outputs.path }}', first: '${{ tasks.make.outputs.list.0 }}', n: 3}
                retries: 2
                timeout: 1.5
                cache: true
              make:
                run: 'echo path=x >> "$TRIO_PIPE_OUTPUT"'
            """
        ),
        str(tmp_path / "p.yaml"),
        environ=ENVIRON,
    )
    workflow = pipeline.workflow
    assert workflow.name == "build" and not workflow.fail_fast
    assert list(workflow.steps) == ["make", "count", "report"]
    assert pipeline.concurrency == 3
    assert pipeline.shell_steps == {"make", "report"}
    py, mod = pipeline.workers
    assert (py.command, py.tasks, py.tags, py.max_concurrency) == (
        ("a", "b"), ("count",), ("version:2",), 4,
    )  # fmt: skip
    assert mod.wasm == str(tmp_path / "m.wat") and mod.tags == ()
    make, count, report = workflow.steps.values()
    assert make.task_type == report.task_type == SHELL_TASK
    env = report.payload["env"]  # every value a string, or a Text of one
    assert (env["OUT"], env["WHERE"], env["FLAG"]) == ("/home/x/out", "/home/x/out", "true")
    assert isinstance(env["N"], Text) and env["N"].parts[0].source is count
    assert report.payload["cwd"] == str(tmp_path)
    assert isinstance(report.payload["run"], Text)
    file_ref = count.payload["file"]  # a shell step's outputs are its "outputs"
    assert isinstance(file_ref, Ref) and file_ref.source is make
    assert file_ref.path == ("outputs", "path")
    assert count.payload["first"].path == ("outputs", "list", 0)
    assert count.payload["n"] == 3
    assert (count.max_retries, count.timeout_ms) == (2, 1500)
    assert make.max_retries == 0  # no retries unless the file says
    assert count.cache and not make.cache
    workflow.validate()


def test_a_long_chain_is_ordered_without_recursion() -> None:
    lines = ["tasks:"]
    for index in range(3000, 0, -1):  # each task depends on the next one in the file
        lines.append(f"  t{index}: {{run: x, depends_on: [t{index + 1}]}}")
    lines.append("  t3001: {run: x}")
    pipeline = parse_pipeline("\n".join(lines), "/p/chain.yaml")
    assert list(pipeline.workflow.steps) == [f"t{i}" for i in range(3001, 0, -1)]
