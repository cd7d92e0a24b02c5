"""spec/ is true to the code: the committed JSON Schema is what the protocol classes
generate (the drift check), every shared test vector holds for the Python codec, and
the schema accepts exactly the canonical output shapes."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import ROOT
from hypothesis import given, settings
from jsonschema import Draft202012Validator
from strategies import messages

from trio_pipe.protocol import (
    DISPATCHER_MESSAGES,
    WORKER_MESSAGES,
    Message,
    Priority,
    ProtocolError,
    TaskStatus,
    decode,
    encode,
)
from trio_pipe.protocol import schema as protocol_schema

SPEC = ROOT / "spec"
SCHEMA_DIR = SPEC / "schema"
VECTOR_DIR = SPEC / "vectors"

SCHEMA = json.loads((SCHEMA_DIR / protocol_schema.SCHEMA_FILE).read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _vectors(name: str) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(
        (VECTOR_DIR / name).read_text(encoding="utf-8")
    )
    return vectors


VALID = _vectors("valid.json")
LENIENT = _vectors("lenient.json")
INVALID = _vectors("invalid.json")


def _name(vector: dict[str, Any]) -> str:
    return str(vector["name"])


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_vectors", SPEC / "generate_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the schema is generated from the code --------------------------------------------


def test_the_committed_schema_is_what_the_code_generates() -> None:
    problems = protocol_schema.check(SCHEMA_DIR)
    assert not problems, "\n".join(
        [*problems, "regenerate: python -m trio_pipe.protocol.schema --write spec/schema"]
    )


def test_the_schema_is_a_draft_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


def test_check_shows_a_diff_and_fails_when_the_files_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    protocol_schema.write(tmp_path)
    assert protocol_schema.main(["--check", str(tmp_path)]) == 0
    path = tmp_path / protocol_schema.SCHEMA_FILE
    path.write_text(path.read_text().replace('"TimedOut"', '"timed_out"'))
    (tmp_path / "stale.schema.json").write_text("{}\n")
    assert protocol_schema.main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert '-        "timed_out",' in err
    assert '+        "TimedOut",' in err
    assert "stale.schema.json" in err
    assert "--write" in err


def test_the_entry_point_runs_without_trio() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trio_pipe.protocol.schema", "--check", "spec/schema"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    probe = "import sys, trio_pipe.protocol.schema; assert 'trio' not in sys.modules"
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=ROOT, timeout=60)


def test_the_schema_names_every_message_once_by_its_type() -> None:
    classes = (*DISPATCHER_MESSAGES, *WORKER_MESSAGES)
    assert SCHEMA["oneOf"] == [{"$ref": f"#/$defs/{cls.__name__}"} for cls in classes]
    tags = [SCHEMA["$defs"][cls.__name__]["properties"]["type"]["const"] for cls in classes]
    assert tags == [cls.TYPE for cls in classes]
    assert SCHEMA["$defs"]["TaskStatus"]["enum"] == [s.value for s in TaskStatus]
    assert SCHEMA["$defs"]["Priority"]["enum"] == [p.wire_name for p in Priority]


@settings(max_examples=150, deadline=None)
@given(messages)
def test_everything_encode_writes_matches_the_schema(message: Message) -> None:
    VALIDATOR.validate(json.loads(encode(message)))


# -- the vectors hold for the codec ---------------------------------------------------


def test_the_vector_files_are_what_the_generator_writes() -> None:
    problems = _generator().check(VECTOR_DIR)
    assert not problems, "\n".join(
        [*problems, "regenerate: python spec/generate_vectors.py"]
    )


@pytest.mark.parametrize("vector", VALID, ids=_name)
def test_valid_vector(vector: dict[str, Any]) -> None:
    text = vector["message"]
    assert json.loads(text) == vector["decoded"]
    VALIDATOR.validate(vector["decoded"])
    assert encode(decode(text)) == text


@pytest.mark.parametrize("vector", LENIENT, ids=_name)
def test_lenient_vector(vector: dict[str, Any]) -> None:
    assert encode(decode(vector["input"])) == vector["canonical"]
    VALIDATOR.validate(json.loads(vector["canonical"]))


@pytest.mark.parametrize("vector", INVALID, ids=_name)
def test_invalid_vector(vector: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(vector["input"])
    assert vector["reason_contains"] in caught.value.reason


def test_the_valid_vectors_cover_every_message_and_enum_value() -> None:
    documents = [vector["decoded"] for vector in VALID]
    types = {doc["type"] for doc in documents}
    assert types == {cls.TYPE for cls in (*DISPATCHER_MESSAGES, *WORKER_MESSAGES)}
    statuses = {doc["result"]["status"] for doc in documents if doc["type"] == "TaskResult"}
    assert statuses == {s.value for s in TaskStatus}
    priorities = {
        doc["task"]["metadata"]["priority"]
        for doc in documents
        if doc["type"] == "TaskDispatch"
    }
    assert priorities == {p.wire_name for p in Priority}


def test_the_lenient_vectors_cover_every_liberal_rule() -> None:
    rules = {_name(vector).split(":")[0] for vector in LENIENT}
    assert rules == {
        "type tag", "TaskStatus", "Priority", "defaults", "alias", "language", "tags",
        "unknown fields", "extensions", "timestamp", "UUID", "number", "JSON",
    }  # fmt: skip
    assert any("timed_out" in vector["input"] for vector in LENIENT)


def test_the_invalid_vectors_cover_every_rejection_class() -> None:
    assert {vector["class"] for vector in INVALID} == {
        "not JSON", "not an object", "missing type", "type not a string", "unknown type",
        "missing field", "mistyped field", "bad enum value", "out of range",
        "bad worker id", "bad UUID", "bad timestamp",
    }  # fmt: skip


def test_the_vector_names_are_unique() -> None:
    for vectors in (VALID, LENIENT, INVALID):
        names = [_name(vector) for vector in vectors]
        assert len(names) == len(set(names))


# -- the schema refuses what is not canonical output ----------------------------------


def _vector(name: str) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(
        next(v["decoded"] for v in VALID if v["name"] == name)
    )
    return document


def _rename(obj: dict[str, Any], old: str, new: str) -> None:
    items = list(obj.items())
    obj.clear()
    obj.update((new if key == old else key, value) for key, value in items)


Mutation = Callable[[dict[str, Any]], None]

NOT_CANONICAL: list[tuple[str, str, Mutation]] = [
    ("lower-case status", "TaskResult: Completed",
     lambda d: d["result"].update(status="completed")),
    ("snake_case status", "TaskResult: TimedOut",
     lambda d: d["result"].update(status="timed_out")),
    ("lower-case priority", "TaskDispatch: typical (priority High, traceId)",
     lambda d: d["task"]["metadata"].update(priority="high")),
    ("snake_case field", "TaskResult: Completed",
     lambda d: _rename(d["result"], "taskId", "task_id")),
    ("snake_case field, rust-pipe's Kill", "Kill: with a reason",
     lambda d: _rename(d, "taskId", "task_id")),
    ("snake_case and camelCase both", "WorkerRegistered: typical",
     lambda d: d.update(worker_id=d["workerId"])),
    ("an optional field left out", "TaskResult: Completed",
     lambda d: d["result"].pop("durationMs")),
    ("null payload left out", "TaskDispatch: every optional field at its default",
     lambda d: d["task"].pop("payload")),
    ("an unknown field", "Heartbeat: typical", lambda d: d["payload"].update(memoryMb=5)),
    ("lower-case type tag", "HeartbeatAck", lambda d: d.update(type="heartbeatack")),
    ("unknown type", "HeartbeatAck", lambda d: d.update(type="Hello")),
    ("upper-case UUID", "Kill: with a reason", lambda d: d.update(taskId=d["taskId"].upper())),
    ("UUID in braces", "Kill: with a reason", lambda d: d.update(taskId="{" + d["taskId"] + "}")),
    ("timestamp with +00:00", "TaskDispatch: typical (priority High, traceId)",
     lambda d: d["task"]["metadata"].update(createdAt="2025-03-14T09:26:53+00:00")),
    ("timestamp with milliseconds", "TaskDispatch: typical (priority High, traceId)",
     lambda d: d["task"]["metadata"].update(createdAt="2025-03-14T09:26:53.250Z")),
    ("a language rust-pipe knows as an object", "WorkerRegister: typical",
     lambda d: d["registration"].update(language={"Other": "Python"})),
    ("another language as a string", "WorkerRegister: a language rust-pipe v0.1 has no name for (Java)",
     lambda d: d["registration"].update(language="Java")),
    ("tags null", "WorkerRegister: typical", lambda d: d["registration"].update(tags=None)),
    ("invalid worker id", "WorkerRegister: typical",
     lambda d: d["registration"].update(workerId="-img")),
    ("maxConcurrency 0", "WorkerRegister: typical",
     lambda d: d["registration"].update(maxConcurrency=0)),
    ("negative count", "Heartbeat: typical", lambda d: d["payload"].update(activeTasks=-1)),
    ("integer as a string", "Heartbeat: typical", lambda d: d["payload"].update(capacity="4")),
    ("error without retryable", "TaskResult: Failed, retryable",
     lambda d: d["result"]["error"].pop("retryable")),
    ("metadata null", "TaskDispatch: typical (priority High, traceId)",
     lambda d: d["task"].update(metadata=None)),
    ("draining false written", "Backpressure: released",
     lambda d: d["signal"].update(draining=False)),
    ("progress null written", "TaskResult: Running (progress report)",
     lambda d: d["result"].update(progress=None)),
    ("extendMs null written", "TaskResult: Running (progress report)",
     lambda d: d["result"].update(extendMs=None)),
    ("extendMs 0", "TaskResult: Running with extendMs (a deadline extension)",
     lambda d: d["result"].update(extendMs=0)),
    ("progress without a message", "TaskResult: Running with progress and a message",
     lambda d: d["result"]["progress"].pop("message")),
    ("fraction above 1", "TaskResult: Running with progress and a message",
     lambda d: d["result"]["progress"].update(fraction=1.5)),
    ("empty maxConcurrencyByType written", "WorkerRegister: typical",
     lambda d: d["registration"].update(maxConcurrencyByType={})),
    ("a limit of 0", "WorkerRegister: a limit per task type (maxConcurrencyByType)",
     lambda d: d["registration"]["maxConcurrencyByType"].update(render=0)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "base", "mutate"), NOT_CANONICAL, ids=[case[0] for case in NOT_CANONICAL]
)
def test_the_schema_rejects_non_canonical_output(
    what: str, base: str, mutate: Mutation
) -> None:
    document = _vector(base)
    assert VALIDATOR.is_valid(document)
    mutate(document)
    assert not VALIDATOR.is_valid(document), what
