"""JSON Schema (draft 2020-12) of the wire protocol, generated from the protocol classes.

The attrs classes in :mod:`._types` and :mod:`._messages` and the one cattrs
:data:`~._converter.converter` are the single source of truth: field names are camelCased
as the codec writes them, enum values are what the converter writes for each member,
lower bounds come from the fields' validators, defaults from the fields' defaults. The
schema describes the **canonical output** (every field written but an extension at its
default, exact spellings); receivers are more liberal, as the descriptions say (see
``docs/protocol.md``).

No Trio here: ``python -m trio_pipe.protocol.schema`` runs without it.
"""

from __future__ import annotations

import argparse
import difflib
import enum
import json
import sys
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import attrs

from . import _converter, _types
from ._converter import converter
from ._messages import DISPATCHER_MESSAGES, WORKER_MESSAGES

__all__ = ["SCHEMA_FILE", "check", "json_schema", "main", "schema_files", "write"]

SCHEMA_FILE: Final = "messages.schema.json"
"""The one file of ``spec/schema/``: every message and type, in ``$defs``."""

_DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"
_COMMAND: Final = "python -m trio_pipe.protocol.schema --write spec/schema"

_OVERVIEW: Final = (
    "One trio_pipe wire message (a JSON object whose `type` names it), in the canonical "
    "form every sender writes: every field present, in the order of `properties`, with "
    "`type` first, but for the optional extensions of rust-pipe v0.1 (`draining`, "
    "`progress`, `extendMs`, `maxConcurrencyByType`: not in `required`), which are "
    "written only when they hold something; camelCase names; enums in PascalCase; "
    "UUIDs lowercase and hyphenated; "
    "timestamps in UTC with a `Z`. Receivers are liberal (docs/protocol.md): they ignore "
    "members they do not know, match `type` in any ASCII case and enum values as their "
    "name or its snake_case in any ASCII case, give a missing optional field its "
    "default (see each field's description), read rust-pipe's `task_id` (Kill) and "
    "`worker_id` (WorkerRegistered), "
    '`language` as `{"Other": ...}` and `tags: null`, and accept the other UUID and '
    "RFC 3339 spellings described under Uuid and Timestamp; spec/vectors/lenient.json "
    "shows each rule. Integers are JSON integers without fraction or exponent (`3.0` is "
    "rejected by receivers, although JSON Schema's `integer` admits it); the protocol "
    "sets no upper bound, and every SDK handles at least 0 to 2^53-1. "
    f"Generated from trio_pipe.protocol by `{_COMMAND}`: do not edit."
)

_DESCRIPTIONS: Final[dict[str, str]] = {
    # Messages, dispatcher to worker
    "TaskDispatch": "Dispatcher to worker: run a task.",
    "Kill": (
        "Dispatcher to worker: stop one task now and report it (`Cancelled` with code "
        "`KILLED` is recommended); a Kill for a task the worker is not running is ignored."
    ),
    "Shutdown": "Dispatcher to worker: stop taking work, finish or stop the tasks in "
    "flight, report them, and exit.",
    "WorkerRegistered": (
        "Dispatcher to worker: the registration is accepted; tasks may follow. A "
        "dispatcher may send none (rust-pipe v0.1 never does): a TaskDispatch that "
        "comes first accepts the registration as well, and so does silence, since a "
        "dispatcher that refuses a registration closes the connection."
    ),
    "HeartbeatAck": "Dispatcher to worker: the answer to every Heartbeat.",
    # Messages, worker to dispatcher
    "WorkerRegister": "Worker to dispatcher: the first message of a WebSocket worker.",
    "Heartbeat": "Worker to dispatcher: I am alive, and this busy.",
    "TaskResultMessage": (
        "Worker to dispatcher: the outcome of a task, or a progress report for it "
        "(`type` is `TaskResult`; named TaskResultMessage here, apart from the "
        "TaskResult type it carries)."
    ),
    "Backpressure": "Worker to dispatcher: stop sending me tasks for now, or I can take "
    "tasks again; or, with `draining`, I take no new task on this connection.",
    "DispatcherMessage": "A message the dispatcher sends; a worker receives only these.",
    "WorkerMessage": "A message a worker sends; the dispatcher receives only these.",
    # Types
    "Task": "One unit of work: `taskType` selects the worker's handler, `payload` is its "
    "input.",
    "TaskMetadata": "Scheduling information of a task.",
    "TaskError": "Why a task did not complete. `code` is an open set, UPPER_SNAKE_CASE by "
    "convention (docs/protocol.md lists the codes with a fixed meaning).",
    "TaskResult": "What a worker reports about one task: a terminal status, or `Running` "
    "as a progress report, which alone may carry `progress` and `extendMs`.",
    "TaskProgress": "How far a running task has come: the fraction done and a message "
    "for people, either `null` if the worker does not say.",
    "WorkerRegistration": "How a worker describes itself when it registers.",
    "HeartbeatPayload": "A worker's current state, carried by every Heartbeat.",
    "BackpressureSignal": "A worker's load, whether it wants new tasks, and whether it "
    "is draining.",
    "Priority": "Task priority, lowest first. Written in PascalCase as listed; receivers "
    "match in any ASCII case (`critical`, `CRITICAL`).",
    "TaskStatus": "Where a task is in its lifecycle; `Completed`, `Failed`, `TimedOut` "
    "and `Cancelled` are terminal. Written in PascalCase as listed; receivers match "
    "the name or its snake_case in any ASCII case (`timed_out`, `TIMEDOUT`).",
    # Values
    "Uuid": "A UUID, written lowercase and hyphenated. Receivers also accept upper case, "
    "braces, `urn:uuid:` and 32 bare hex digits.",
    "Timestamp": "An RFC 3339 timestamp, written in UTC with a `Z` suffix, with "
    "microseconds only when they are not zero (`2025-03-14T09:26:53Z`, "
    "`2025-03-14T09:26:53.250000Z`). Receivers accept any offset (converted to UTC), "
    "none (taken as UTC), lower-case `t` and `z`, and more than six fractional digits "
    "(truncated to microseconds).",
    "WorkerId": "A worker id: 1 to 128 characters of `A-Z a-z 0-9 . _ -`, starting with a "
    "letter or a digit.",
}

_FIELD_NOTES: Final[dict[tuple[type, str], str]] = {
    (_types.WorkerRegistration, "language"): (
        "Written as rust-pipe v0.1 writes it, so that its dispatcher can read every "
        'registration: `"TypeScript"`, `"Python"` and `"Go"` as strings, any other '
        'language as `{"Other": name}` (`{"Other": "Java"}`). Receivers read both '
        "forms: an object with a single member stands for that member's string value."
    ),
    (_types.WorkerRegistration, "tags"): "Receivers read `null` as `[]`.",
    (_types.TaskResult, "worker_id"): "Informational: the dispatcher replaces it with "
    "the id the connection registered with.",
    (_types.TaskMetadata, "idempotency_key"): "The submitter's key: the dispatcher keeps "
    "one task per key (for its store's retention). Workers may use it to make side "
    "effects idempotent.",
    (_types.TaskMetadata, "attempt"): "Which try of the task this dispatch is, counted "
    "over the task's whole life (across retries and dispatcher restarts). With `epoch`, "
    "the fencing token of this try: a worker may pass both to the systems it writes to.",
    (_types.TaskMetadata, "epoch"): "The dispatcher's epoch: it grows each time a "
    "dispatcher opens the task store.",
    (_types.TaskResult, "progress"): "Only in a progress report (`Running`); receivers "
    "ignore it in a terminal result. The dispatcher surfaces each report, in order.",
    (_types.TaskResult, "extend_ms"): "Only in a progress report (`Running`): I am "
    "alive, let my deadline be now + extendMs milliseconds. The dispatcher grants it "
    "if the task's type allows it, up to a maximum life per type; receivers ignore it "
    "in a terminal result.",
    (_types.WorkerRegistration, "max_concurrency_by_type"): "Task type -> the most "
    "tasks of that type the worker runs at once, each from 1 to `maxConcurrency`. The "
    "dispatcher never has more unfinished tasks of a type on the worker.",
    (_types.BackpressureSignal, "draining"): "`true`: the worker is draining (stopping): "
    "it takes no new task for the rest of this connection, and neither a later "
    "Backpressure nor a Heartbeat lifts that; the tasks it runs finish normally.",
}

_FIELD_SCHEMAS: Final[dict[tuple[type, str], dict[str, Any]]] = {
    (_types.WorkerRegistration, "language"): {
        "anyOf": [
            {"enum": sorted(_types.RUST_PIPE_LANGUAGES)},
            {
                "type": "object",
                "properties": {
                    "Other": {
                        "type": "string",
                        "not": {"enum": sorted(_types.RUST_PIPE_LANGUAGES)},
                    }
                },
                "required": ["Other"],
                "additionalProperties": False,
            },
        ]
    },
}
"""The schemas of the fields written in a form of their own
(``_converter._FIELD_WRITERS``)."""

_FACTORY_DEFAULTS: Final[dict[Any, str]] = {
    _types._utcnow: "the time the message is decoded (so senders always write it)",
    dict: "{} (no limit per type)",
}

_VALUE_DEFS: Final[dict[type, tuple[str, dict[str, Any]]]] = {
    uuid.UUID: (
        "Uuid",
        {
            "type": "string",
            "format": "uuid",
            "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        },
    ),
    datetime: (
        "Timestamp",
        {
            "type": "string",
            "format": "date-time",
            "pattern": (
                "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{6})?Z$"
            ),
        },
    ),
}


_WRITTEN_ONLY_IF: Final[dict[Any, dict[str, Any]]] = {
    "boolean": {"const": True},  # an extension is written only when not its default
    "object": {"minProperties": 1},
}


def _written_type(tp: Any) -> Any:
    """The type of an extension field as it is written: never ``None``, which is its
    default and so never written."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        others = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(others) == 1:
            return others[0]
    return tp


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}"}


def _wire_name(name: str) -> str:
    return _types._camel(name)  # the renaming the codec's factories apply


class _Builder:
    """Walks the protocol classes and collects ``$defs`` in the order first reached."""

    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}
        self._pending: list[tuple[str, Any]] = []

    def _need(self, name: str, what: Any) -> dict[str, Any]:
        if name not in self.defs and all(name != n for n, _ in self._pending):
            self._pending.append((name, what))
        return _ref(name)

    def build_pending(self) -> None:
        while self._pending:
            name, what = self._pending.pop(0)
            if isinstance(what, type) and attrs.has(what):
                self.defs[name] = self._object(what)
            elif isinstance(what, type) and issubclass(what, enum.Enum):
                self.defs[name] = self._enum(name, what)
            else:
                self.defs[name] = self._value(name, what)

    def _describe(self, name: str) -> str:
        try:
            return _DESCRIPTIONS[name]
        except KeyError:
            raise LookupError(
                f"no description for {name!r} in _schema._DESCRIPTIONS"
            ) from None

    def _value(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"title": name, "description": self._describe(name), **schema}

    def _enum(self, name: str, cls: type[enum.Enum]) -> dict[str, Any]:
        values = [converter.unstructure(member) for member in cls]
        if not all(isinstance(v, str) for v in values):
            raise TypeError(f"{cls.__name__} is not written as strings: {values!r}")
        return {"title": name, "description": self._describe(name), "enum": values}

    def _object(self, cls: type) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        properties: dict[str, Any] = {}
        required = []
        tag: str | None = getattr(cls, "TYPE", None)
        if tag is not None:
            properties["type"] = {
                "const": tag,
                "description": "The message's name; receivers match it ignoring case.",
            }
            required.append("type")
        for field in attrs.fields(cls):
            name = _wire_name(field.name)
            properties[name] = self._field(cls, field, hints[field.name])
            if not field.metadata.get(_types.EXTENSION):  # written only if not default
                required.append(name)
        return {
            "title": cls.__name__,
            "description": self._describe(cls.__name__),
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }

    def _field(self, cls: type, field: attrs.Attribute[Any], tp: Any) -> dict[str, Any]:
        extension = bool(field.metadata.get(_types.EXTENSION))
        written = _FIELD_SCHEMAS.get((cls, field.name))
        if written is not None:
            schema = dict(written)
        else:
            schema = self.type_schema(_written_type(tp) if extension else tp)
        bounds = self._bounds(cls, field)
        schema = bounds if "$ref" in bounds else {**schema, **bounds}
        notes = []
        default: Any = field.default
        if default is attrs.NOTHING:
            notes.append("Required.")
        else:
            missing = self._missing(cls, field)
            if extension:
                schema |= _WRITTEN_ONLY_IF.get(schema.get("type"), {})
                notes.append(
                    "Optional, an extension of rust-pipe v0.1: written only when it "
                    f"holds something. A missing value means {missing}."
                )
            else:
                if not isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                    write = _converter._FIELD_WRITERS.get((cls, field.name))
                    value = converter.unstructure(default)
                    schema["default"] = write(value) if write else value
                notes.append(f"Optional on input: a missing value means {missing}.")
        alias = _input_alias(cls, _wire_name(field.name))
        if alias is not None:
            notes.append(
                f"Receivers also accept the name `{alias}` "
                f"(`{_wire_name(field.name)}` wins if both are present)."
            )
        note = _FIELD_NOTES.get((cls, field.name))
        if note is not None:
            notes.append(note)
        return {"description": " ".join(notes), **schema}

    def _missing(self, cls: type, field: attrs.Attribute[Any]) -> str:
        """What a missing value of *field* means, in words."""
        default: Any = field.default
        if not isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            return json.dumps(converter.unstructure(default), ensure_ascii=False)
        factory = default.factory
        if isinstance(factory, type) and attrs.has(factory):
            return f"an object with every {factory.__name__} default"
        try:
            return _FACTORY_DEFAULTS[factory]
        except (KeyError, TypeError):
            raise LookupError(
                f"{cls.__name__}.{field.name}: describe its default factory "
                "in _schema._FACTORY_DEFAULTS"
            ) from None

    def _bounds(self, cls: type, field: attrs.Attribute[Any]) -> dict[str, Any]:
        validator = field.validator
        if validator is None:
            return {}
        if isinstance(validator, _types._AtLeast):
            return {"minimum": validator.minimum}
        if isinstance(validator, _types._Fraction):
            return {"minimum": 0, "maximum": 1}
        if isinstance(validator, _types._ConcurrencyLimits):
            return {"additionalProperties": {"type": "integer", "minimum": 1}}
        if validator is _types._check_extensions:
            return {"minimum": 1}
        if validator is _types._check_worker_id:
            return self._need("WorkerId", _worker_id_schema())
        raise TypeError(
            f"{cls.__name__}.{field.name}: no JSON Schema for validator {validator!r}"
        )

    def type_schema(self, tp: Any) -> dict[str, Any]:
        """The schema of a value of Python type *tp*, as the codec writes it."""
        if tp is Any:
            return {}  # any JSON value, null included
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (types.UnionType, typing.Union):
            others = [a for a in args if a is not type(None)]
            if len(others) != 1 or len(args) != 2:
                raise TypeError(f"no JSON Schema for {tp!r}: only X | None unions")
            inner = self.type_schema(others[0])
            if set(inner) == {"type"} and isinstance(inner["type"], str):
                return {"type": [inner["type"], "null"]}
            return {"anyOf": [inner, {"type": "null"}]}
        if origin is tuple and args == (str, Ellipsis):
            return {"type": "array", "items": {"type": "string"}}
        if tp == Mapping[str, int]:
            return {"type": "object", "additionalProperties": {"type": "integer"}}
        simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
        if tp in simple:
            return {"type": simple[tp]}
        if tp in _VALUE_DEFS:
            name, schema = _VALUE_DEFS[tp]
            return self._need(name, schema)
        if isinstance(tp, type) and (attrs.has(tp) or issubclass(tp, enum.Enum)):
            return self._need(tp.__name__, tp)
        raise TypeError(f"no JSON Schema for {tp!r}")

    def need_class(self, cls: type) -> dict[str, Any]:
        """A ``$ref`` to the definition of *cls*, built by :meth:`build_pending`."""
        return self._need(cls.__name__, cls)


def _kind(definition: dict[str, Any]) -> int:
    return 0 if "properties" in definition else 1 if "enum" in definition else 2


def _input_alias(cls: type, wire_name: str) -> str | None:
    """The other member name the codec reads as *wire_name* of *cls*, if any."""
    normalise = _converter._NORMALISERS.get(cls)
    if isinstance(normalise, _converter._Alias) and normalise.new == wire_name:
        return normalise.old
    return None


def _worker_id_schema() -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{_types._WORKER_ID.pattern}$"}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of every wire message, as the codec writes them."""
    builder = _Builder()
    dispatcher = [builder.need_class(cls) for cls in DISPATCHER_MESSAGES]
    worker = [builder.need_class(cls) for cls in WORKER_MESSAGES]
    builder.build_pending()
    defs = builder.defs
    names = [cls.__name__ for cls in (*DISPATCHER_MESSAGES, *WORKER_MESSAGES)]
    messages = {name: defs.pop(name) for name in names}
    # Then what they use: objects, enums, values, each kind in the order first reached.
    defs = dict(sorted(defs.items(), key=lambda item: _kind(item[1])))
    directions = {
        "DispatcherMessage": {
            "title": "DispatcherMessage",
            "description": _DESCRIPTIONS["DispatcherMessage"],
            "oneOf": dispatcher,
        },
        "WorkerMessage": {
            "title": "WorkerMessage",
            "description": _DESCRIPTIONS["WorkerMessage"],
            "oneOf": worker,
        },
    }
    return {
        "$schema": _DRAFT,
        "title": "trio_pipe wire message",
        "description": _OVERVIEW,
        "oneOf": [*dispatcher, *worker],
        "$defs": {**messages, **directions, **defs},
    }


def _dumps(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def schema_files() -> dict[str, str]:
    """The files of ``spec/schema/``, by name, with their exact text."""
    return {SCHEMA_FILE: _dumps(json_schema())}


def write(directory: Path) -> list[Path]:
    """Write :func:`schema_files` into *directory*; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_files().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check(directory: Path) -> list[str]:
    """How the files in *directory* differ from :func:`schema_files` (empty: they
    match), as unified diffs and one-line notes."""
    expected = schema_files()
    problems = []
    for name, text in expected.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"missing: {path}")
            continue
        committed = path.read_text(encoding="utf-8")
        if committed != text:
            problems.append(
                "".join(
                    difflib.unified_diff(
                        committed.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        fromfile=f"{path} (committed)",
                        tofile=f"{path} (generated from trio_pipe.protocol)",
                    )
                )
            )
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            if path.name not in expected:
                problems.append(f"not generated, remove it: {path}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trio_pipe.protocol.schema",
        description="Write or check the JSON Schema of the trio_pipe wire protocol "
        "(spec/schema/), generated from trio_pipe.protocol.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", metavar="DIR", type=Path, help="write the schema here")
    mode.add_argument(
        "--check",
        metavar="DIR",
        type=Path,
        help="exit 1, showing the differences, unless DIR holds exactly the schema",
    )
    args = parser.parse_args(argv)
    if args.write is not None:
        for path in write(args.write):
            print(f"wrote {path}")
        return 0
    if args.check is not None:
        problems = check(args.check)
        if problems:
            for problem in problems:
                print(problem, file=sys.stderr)
            print(
                f"{args.check} is out of date with trio_pipe.protocol; regenerate it with "
                f"`python -m trio_pipe.protocol.schema --write {args.check}`",
                file=sys.stderr,
            )
            return 1
        print(f"{args.check} matches trio_pipe.protocol")
        return 0
    sys.stdout.write(schema_files()[SCHEMA_FILE])
    return 0
