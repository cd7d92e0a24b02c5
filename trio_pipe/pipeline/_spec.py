"""YAML pipelines: a file parsed into a :class:`Pipeline`, which holds the
:class:`~trio_pipe.workflow.Workflow` it compiles to and the workers it declares.

Every error is a :class:`~trio_pipe.PipelineError` located at the YAML node at
fault (PyYAML's composer keeps each node's position). The format is in
docs/workflows.md ("YAML pipelines").
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from .._errors import PipelineError, WorkflowError
from ..workflow import Ref, Step, Text, Workflow
from ..workflow._model import _check_acyclic
from ._shell import SHELL_TASK

if TYPE_CHECKING:
    import yaml

__all__ = [
    "DockerDecl",
    "Pipeline",
    "SshDecl",
    "WorkerDecl",
    "load_pipeline",
    "parse_pipeline",
]

#: Task names: a plain word, so that ``tasks.NAME.outputs`` reads one way.
_TASK_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
_EXPRESSION: Final = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_SEGMENT: Final = re.compile(r"[A-Za-z0-9_-]+")
#: The worker id of the local worker that runs shell tasks.
SHELL_WORKER: Final = "shell"
#: Shell steps that may run at once when the pipeline does not say.
DEFAULT_CONCURRENCY: Final = 4

_TOP_KEYS: Final = ("name", "env", "concurrency", "fail_fast", "workers", "tasks")
_TASK_KEYS: Final = (
    "run", "type", "payload", "env", "depends_on", "retries", "timeout", "cache",
    "worker",
)  # fmt: skip
_WORKER_KEYS: Final = (
    "command", "wasm", "ssh", "docker", "tasks", "max_concurrency", "version", "env",
)  # fmt: skip
_DOCKER_KEYS: Final = ("image", "network")
_SSH_KEYS: Final = ("host", "user", "port", "known_hosts", "client_keys")


@attrs.frozen
class SshDecl:
    """Where a worker's command runs over SSH (paths absolute)."""

    host: str
    user: str
    known_hosts: str
    client_keys: tuple[str, ...]
    port: int = 22


@attrs.frozen
class DockerDecl:
    """The image a worker runs in (its command, if any, is the container's)."""

    image: str
    network: str | None = None


@attrs.frozen
class WorkerDecl:
    """A worker the pipeline starts: a command (a stdio worker, run locally or, with
    *ssh*, on another host), a *docker* container, or a WASM module."""

    name: str
    tasks: tuple[str, ...]
    command: tuple[str, ...] | None = None
    wasm: str | None = None  # an absolute path
    ssh: SshDecl | None = None
    docker: DockerDecl | None = None
    max_concurrency: int = 1
    version: str | None = None
    env: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def tags(self) -> tuple[str, ...]:
        """What the worker registers with: ``version:V`` if it declares a version."""
        return () if self.version is None else (f"version:{self.version}",)


@attrs.frozen
class Pipeline:
    """A parsed pipeline: its workflow (one step per task, in dependency order),
    the workers it declares and the limit on shell steps running at once."""

    path: str
    text: str
    workflow: Workflow
    workers: tuple[WorkerDecl, ...]
    concurrency: int
    shell_steps: frozenset[str]

    @property
    def name(self) -> str:
        return self.workflow.name

    @property
    def directory(self) -> str:
        """The folder of the file: relative paths in it start there."""
        return os.path.dirname(os.path.abspath(self.path))


def load_pipeline(path: str | os.PathLike[str]) -> Pipeline:
    """Read and parse the pipeline file at *path*. Raises :class:`PipelineError`
    (``OSError`` if it cannot be read)."""
    path = os.fspath(path)
    with open(path, encoding="utf-8") as file:
        text = file.read()
    return parse_pipeline(text, path)


def parse_pipeline(
    text: str, path: str, *, environ: Mapping[str, str] | None = None
) -> Pipeline:
    """Parse pipeline *text* read from *path* (relative paths in it are relative to
    its directory). ``${{ env.NAME }}`` reads the pipeline's ``env``, then *environ*
    (default ``os.environ``). Raises :class:`PipelineError`."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise ImportError(
            f"YAML pipelines need PyYAML ({exc}); "
            "install it with: pip install 'trio-pipe[pipelines]'"
        ) from exc
    return _Parser(yaml, text, path, os.environ if environ is None else environ).parse()


class _Parser:
    def __init__(self, yaml: Any, text: str, path: str, environ: Mapping[str, str]):
        self.yaml = yaml
        self.text = text
        self.path = path
        self.directory = os.path.dirname(os.path.abspath(path))
        self.environ = environ
        self.env: dict[str, str] = {}
        self.loader: Any = None

    def error(self, node: yaml.Node | None, message: str) -> PipelineError:
        mark = None if node is None else node.start_mark
        if mark is None:
            return PipelineError(self.path, 1, 1, message)
        return PipelineError(self.path, mark.line + 1, mark.column + 1, message)

    # ----------------------------------------------------------------- nodes

    def parse(self) -> Pipeline:
        yaml = self.yaml
        try:
            self.loader = yaml.SafeLoader(self.text)
            root = self.loader.get_single_node()
        except yaml.reader.ReaderError as exc:  # a character YAML does not allow
            at = exc.position
            line = self.text.count("\n", 0, at) + 1
            column = at - self.text.rfind("\n", 0, at)
            raise PipelineError(
                self.path, line, column, f"invalid YAML: {exc.reason}"
            ) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = (1, 1) if mark is None else (mark.line + 1, mark.column + 1)
            raise PipelineError(
                self.path, line, column, f"invalid YAML: {exc.problem or exc}"
            ) from None
        try:
            return self._pipeline(root)
        finally:
            self.loader.dispose()

    def mapping(
        self, node: yaml.Node | None, what: str, keys: tuple[str, ...] | None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """The entries of a mapping node, by key: (key node, value node). With
        *keys*, any other key is an error."""
        if not isinstance(node, self.yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping")
        entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node)
            if not isinstance(key, str):
                raise self.error(key_node, f"keys of {what} must be strings, not {key!r}")
            if key in entries:
                raise self.error(key_node, f"{what} has {key!r} twice")
            if keys is not None and key not in keys:
                raise self.error(
                    key_node,
                    f"unknown key {key!r} in {what} (expected one of {', '.join(keys)})",
                )
            entries[key] = (key_node, value_node)
        return entries

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, self.yaml.ScalarNode):
            raise self.error(node, "expected a single value, not a list or mapping")
        return self.loader.construct_object(node, deep=True)

    def string(self, node: yaml.Node, what: str) -> str:
        value = self.scalar(node)
        if not isinstance(value, str) or not value:
            raise self.error(node, f"{what} must be a non-empty string, not {value!r}")
        return value

    def integer(self, node: yaml.Node, what: str, minimum: int) -> int:
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(node, f"{what} must be an integer >= {minimum}, not {value!r}")
        return value

    def boolean(self, node: yaml.Node, what: str) -> bool:
        value = self.scalar(node)
        if not isinstance(value, bool):
            raise self.error(node, f"{what} must be true or false, not {value!r}")
        return value

    def strings(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node]]:
        """A list of non-empty strings (a single string is a list of one)."""
        if isinstance(node, self.yaml.ScalarNode):
            return [(self.string(node, what), node)]
        if not isinstance(node, self.yaml.SequenceNode):
            raise self.error(node, f"{what} must be a list of strings")
        return [(self.string(item, f"each of {what}"), item) for item in node.value]

    def environment(self, node: yaml.Node, what: str) -> dict[str, yaml.Node]:
        """An ``env`` mapping: names to scalar value nodes."""
        env = {}
        for name, (key_node, value_node) in self.mapping(node, what, None).items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise self.error(key_node, f"invalid environment variable name {name!r}")
            value = self.scalar(value_node)
            if value is None or isinstance(value, (dict, list)):
                raise self.error(value_node, f"{what}: {name} needs a value")
            env[name] = value_node
        return env

    # -------------------------------------------------------------- pipeline

    def _pipeline(self, root: yaml.Node | None) -> Pipeline:
        if root is None:
            raise self.error(None, "the pipeline is empty")
        top = self.mapping(root, "the pipeline", _TOP_KEYS)
        stem = os.path.splitext(os.path.basename(self.path))[0]
        name = self.string(top["name"][1], "name") if "name" in top else stem
        fail_fast = (
            self.boolean(top["fail_fast"][1], "fail_fast") if "fail_fast" in top else True
        )
        concurrency = (
            self.integer(top["concurrency"][1], "concurrency", 1)
            if "concurrency" in top
            else DEFAULT_CONCURRENCY
        )
        if "env" in top:
            for var, node in self.environment(top["env"][1], "env").items():
                self.env[var] = self.literal(node)
        workers = tuple(self._workers(top["workers"][1])) if "workers" in top else ()
        if "tasks" not in top:
            raise self.error(root, "the pipeline has no tasks")
        tasks = self.mapping(top["tasks"][1], "tasks", None)
        if not tasks:
            raise self.error(top["tasks"][1], "the pipeline has no tasks")
        try:
            workflow = Workflow(name, fail_fast=fail_fast)
        except WorkflowError:
            raise self.error(
                top["name"][1] if "name" in top else root,
                f"invalid pipeline name {name!r}: 1 to 64 of A-Z a-z 0-9 _ . -",
            ) from None
        shell = self._tasks(workflow, tasks, {w.name: w for w in workers})
        return Pipeline(self.path, self.text, workflow, workers, concurrency, shell)

    def literal(self, node: yaml.Node) -> str:
        """A value known before the run: ``${{ env.NAME }}`` only."""
        value = self.scalar(node)
        text = value if isinstance(value, str) else _json_scalar(value)
        return "".join(self.interpolate(node, text, lambda *_: None))

    def _workers(self, node: yaml.Node) -> Iterator[WorkerDecl]:
        for name, (key_node, value) in self.mapping(node, "workers", None).items():
            what = f"worker {name!r}"
            if not _TASK_NAME.fullmatch(name):
                raise self.error(key_node, f"invalid worker name {name!r}")
            if name == SHELL_WORKER:
                raise self.error(
                    key_node, f"worker name {name!r} is the shell tasks' own worker"
                )
            entries = self.mapping(value, what, _WORKER_KEYS)
            kinds = [kind for kind in ("wasm", "ssh", "docker") if kind in entries]
            if len(kinds) > 1:
                raise self.error(value, f"{what} has more than one of wasm, ssh and docker")
            if not kinds and "command" not in entries:
                raise self.error(value, f"{what} needs a command, wasm or docker")
            if "wasm" in entries and "command" in entries:
                raise self.error(entries["command"][0], f"{what}: wasm takes no command")
            if "ssh" in entries and "command" not in entries:
                raise self.error(entries["ssh"][0], f"{what}: ssh needs a command")
            if "tasks" not in entries:
                raise self.error(value, f"{what} needs tasks (the task types it serves)")
            tasks = tuple(t for t, _ in self.strings(entries["tasks"][1], f"{what} tasks"))
            command = wasm = None
            if "command" in entries:
                argv = self.strings(entries["command"][1], f"{what} command")
                if not argv:
                    raise self.error(entries["command"][1], f"{what} has an empty command")
                command = tuple(arg for arg, _ in argv)
            elif "wasm" in entries:
                wasm = os.path.join(self.directory, self.string(entries["wasm"][1], "wasm"))
                if not os.path.isfile(wasm):
                    raise self.error(entries["wasm"][1], f"{what}: no file {wasm}")
            env = {
                var: self.literal(env_node)
                for var, env_node in (
                    self.environment(entries["env"][1], f"{what} env")
                    if "env" in entries
                    else {}
                ).items()
            }
            ssh = self._ssh(entries["ssh"][1], what) if "ssh" in entries else None
            docker = None
            if "docker" in entries:
                settings = self.mapping(
                    entries["docker"][1], f"{what} docker", _DOCKER_KEYS
                )
                if "image" not in settings:
                    raise self.error(entries["docker"][1], f"{what} docker needs image")
                docker = DockerDecl(
                    self.string(settings["image"][1], "image"),
                    self.string(settings["network"][1], "network")
                    if "network" in settings
                    else None,
                )
            version = None
            if "version" in entries:
                version = str(self.scalar(entries["version"][1]))
            concurrency = (
                self.integer(entries["max_concurrency"][1], "max_concurrency", 1)
                if "max_concurrency" in entries
                else 1
            )
            yield WorkerDecl(
                name, tasks, command, wasm, ssh, docker, concurrency, version, env
            )

    def _ssh(self, node: yaml.Node, what: str) -> SshDecl:
        entries = self.mapping(node, f"{what} ssh", _SSH_KEYS)
        for needed in ("host", "user", "known_hosts", "client_keys"):
            if needed not in entries:
                raise self.error(node, f"{what} ssh needs {needed}")

        def path(value_node: yaml.Node, field: str) -> str:
            return os.path.join(self.directory, self.string(value_node, field))

        keys = self.strings(entries["client_keys"][1], f"{what} ssh client_keys")
        return SshDecl(
            self.string(entries["host"][1], "host"),
            self.string(entries["user"][1], "user"),
            path(entries["known_hosts"][1], "known_hosts"),
            tuple(os.path.join(self.directory, key) for key, _ in keys),
            self.integer(entries["port"][1], "port", 1) if "port" in entries else 22,
        )

    # ----------------------------------------------------------------- tasks

    def _tasks(
        self,
        workflow: Workflow,
        tasks: dict[str, tuple[yaml.Node, yaml.Node]],
        workers: Mapping[str, WorkerDecl],
    ) -> frozenset[str]:
        """Add a step per task, in dependency order; return the shell steps' names."""
        entries: dict[str, dict[str, tuple[yaml.Node, yaml.Node]]] = {}
        shell: set[str] = set()
        for name, (key_node, value) in tasks.items():
            if not _TASK_NAME.fullmatch(name):
                raise self.error(
                    key_node,
                    f"invalid task name {name!r}: 1 to 64 of A-Z a-z 0-9 _ -, "
                    "not starting with -",
                )
            entry = self.mapping(value, f"task {name!r}", _TASK_KEYS)
            if ("run" in entry) == ("type" in entry):
                raise self.error(
                    value, f"task {name!r} needs either run (a shell command) or type"
                )
            if "run" in entry:
                shell.add(name)
                if "payload" in entry:
                    raise self.error(
                        entry["payload"][0], f"task {name!r} runs a command: no payload"
                    )
            elif "env" in entry:
                raise self.error(
                    entry["env"][0],
                    f"task {name!r} is served by a worker: env is for shell tasks",
                )
            entries[name] = entry
        # Dependencies, explicit and referenced, checked and ordered before any step
        # exists: a reference needs the step it refers to.
        deps: dict[str, set[str]] = {}
        for name, entry in entries.items():
            deps[name] = set()
            if "depends_on" in entry:
                for dep, dep_node in self.strings(entry["depends_on"][1], "depends_on"):
                    if dep not in entries:
                        raise self.error(
                            dep_node,
                            f"task {name!r} depends on {dep!r}, which is not a task",
                        )
                    deps[name].add(dep)
            for _, value_node in entry.values():
                for ref, ref_node in self.references(value_node):
                    if ref not in entries:
                        raise self.error(
                            ref_node,
                            f"task {name!r} uses the outputs of unknown task {ref!r}",
                        )
                    deps[name].add(ref)
        try:
            _check_acyclic(workflow.name, deps)
        except WorkflowError as exc:
            assert exc.step is not None
            raise self.error(tasks[exc.step][0], str(exc)) from None
        steps: dict[str, Step] = {}
        for name in _order(deps):
            steps[name] = self._step(workflow, name, entries[name], steps, shell, workers)
        return frozenset(shell)

    def references(self, node: yaml.Node) -> Iterator[tuple[str, yaml.Node]]:
        """The task named by each ``${{ tasks.NAME... }}`` under *node*."""
        if isinstance(node, self.yaml.ScalarNode):
            value = self.scalar(node)
            if isinstance(value, str):
                for match in _EXPRESSION.finditer(value):
                    words = match.group(1).strip().split(".")
                    valid = all(_SEGMENT.fullmatch(word) for word in words)
                    if valid and len(words) >= 2 and words[0] == "tasks":
                        yield words[1], node
        elif isinstance(node, self.yaml.SequenceNode):
            for item in node.value:
                yield from self.references(item)
        elif isinstance(node, self.yaml.MappingNode):
            for _, value in node.value:
                yield from self.references(value)

    def _step(
        self,
        workflow: Workflow,
        name: str,
        entry: dict[str, tuple[yaml.Node, yaml.Node]],
        steps: dict[str, Step],
        shell: set[str],
        workers: Mapping[str, WorkerDecl],
    ) -> Step:
        def output(task: str, node: yaml.Node) -> Ref:
            ref = steps[task].output
            return ref["outputs"] if task in shell else ref

        def template(node: yaml.Node) -> Any:
            return self.template(node, output)

        def text(node: yaml.Node) -> str | Text:
            """A template that is a string when the step runs."""
            value = template(node)
            if isinstance(value, Ref):
                return Text(value)
            return value if isinstance(value, (str, Text)) else _json_scalar(value)

        options: dict[str, Any] = {}
        if "retries" in entry:
            options["retries"] = self.integer(entry["retries"][1], "retries", 0)
        else:
            options["retries"] = 0
        if "timeout" in entry:
            node = entry["timeout"][1]
            seconds = self.scalar(node)
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, (int, float))
                or not (seconds > 0)
            ):
                raise self.error(
                    node, f"timeout must be a number of seconds > 0, not {seconds!r}"
                )
            options["timeout_ms"] = max(1, round(seconds * 1000))
        if "cache" in entry:
            options["cache"] = self.boolean(entry["cache"][1], "cache")
        if "worker" in entry:
            node = entry["worker"][1]
            pinned = self.string(node, "worker")
            served = SHELL_TASK if name in shell else self.scalar(entry["type"][1])
            if pinned not in workers:
                raise self.error(node, f"task {name!r}: no worker {pinned!r} in workers")
            if served not in workers[pinned].tasks:
                raise self.error(
                    node, f"task {name!r}: worker {pinned!r} does not serve {served!r}"
                )
            options["worker"] = pinned
        depends_on = (
            [dep for dep, _ in self.strings(entry["depends_on"][1], "depends_on")]
            if ("depends_on" in entry)
            else []
        )
        if name in shell:
            if not isinstance(self.scalar(entry["run"][1]), str):
                raise self.error(entry["run"][1], f"task {name!r}: run must be a string")
            command = text(entry["run"][1])
            env: dict[str, Any] = dict(self.env)
            if "env" in entry:
                for var, node in self.environment(entry["env"][1], "env").items():
                    env[var] = text(node)
            # On a worker of its own (another host), it runs where that worker starts.
            cwd = None if "worker" in options else self.directory
            shell_payload = {"run": command, "env": env, "cwd": cwd}
            return workflow.step(
                name, SHELL_TASK, shell_payload, depends_on=depends_on, **options
            )
        task_type = self.string(entry["type"][1], "type")
        payload = template(entry["payload"][1]) if "payload" in entry else None
        return workflow.step(name, task_type, payload, depends_on=depends_on, **options)

    def template(self, node: yaml.Node, output: Callable[[str, yaml.Node], Ref]) -> Any:
        """A payload template: the node's value, with each ``${{ }}`` replaced by
        the value it names (a :class:`Ref` for a task's outputs)."""
        if isinstance(node, self.yaml.SequenceNode):
            return [self.template(item, output) for item in node.value]
        if isinstance(node, self.yaml.MappingNode):
            return {
                key: self.template(value, output)
                for key, (_, value) in self.mapping(node, "a payload", None).items()
            }
        value = self.scalar(node)
        if not isinstance(value, str):
            return value
        parts = [part for part in self.interpolate(node, value, output) if part != ""]
        if not parts:
            return ""
        if len(parts) == 1:  # one expression alone keeps its value's type
            return parts[0]
        return Text(
            *(
                part if isinstance(part, (str, Ref)) else _json_scalar(part)
                for part in parts
            )
        )

    def interpolate(
        self, node: yaml.Node, text: str, output: Callable[[str, yaml.Node], Ref | None]
    ) -> Iterator[Any]:
        """The literal parts of *text* and the value of each expression in it."""
        end = 0
        for match in _EXPRESSION.finditer(text):
            yield self._literal_part(node, text[end : match.start()])
            yield self.expression(node, match.group(1).strip(), output)
            end = match.end()
        yield self._literal_part(node, text[end:])

    def _literal_part(self, node: yaml.Node, text: str) -> str:
        if "${{" in text:
            raise self.error(node, "unclosed ${{ (expected }})")
        return text

    def expression(
        self,
        node: yaml.Node,
        expression: str,
        output: Callable[[str, yaml.Node], Ref | None],
    ) -> Any:
        words = expression.split(".")
        if not all(_SEGMENT.fullmatch(word) for word in words):
            raise self.error(node, f"invalid expression ${{{{ {expression} }}}}")
        if words[0] == "env" and len(words) == 2:
            if words[1] in self.env:
                return self.env[words[1]]
            if words[1] in self.environ:
                return self.environ[words[1]]
            raise self.error(node, f"environment variable {words[1]!r} is not set")
        if words[0] == "tasks" and len(words) >= 3 and words[2] == "outputs":
            ref = output(words[1], node)
            if ref is None:
                raise self.error(
                    node, "task outputs cannot be used here, only ${{ env.NAME }}"
                )
            for word in words[3:]:
                ref = ref[int(word) if word.isdigit() else word]
            return ref
        raise self.error(
            node,
            f"unknown expression ${{{{ {expression} }}}} "
            "(expected env.NAME or tasks.NAME.outputs[.KEY...])",
        )


def _order(deps: Mapping[str, set[str]]) -> list[str]:
    """The names of an acyclic graph, each after its dependencies (file order
    otherwise). Iterative: a chain may be thousands of tasks long."""
    order: list[str] = []
    placed: set[str] = set()
    for root in deps:
        if root in placed:
            continue
        placed.add(root)
        stack = [(root, iter(sorted(deps[root])))]
        while stack:
            name, pending = stack[-1]
            for dep in pending:
                if dep not in placed:
                    placed.add(dep)
                    stack.append((dep, iter(sorted(deps[dep]))))
                    break
            else:
                stack.pop()
                order.append(name)
    return order


def _json_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)
