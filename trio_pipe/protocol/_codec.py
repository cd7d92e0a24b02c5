"""One cattrs converter, and ``encode``/``decode`` between messages and JSON text.

Liberal on input (case-insensitive enums, defaults for missing optional fields,
``task_id``/``workerId`` aliases, ``language`` as a string or ``{"Other": ...}``),
exact on output (camelCase fields, PascalCase enums, every field written).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from . import _messages, _types
from ._messages import DISPATCHER_MESSAGES, WORKER_MESSAGES, Message
from ._types import Priority, TaskStatus, _camel

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "ProtocolError",
    "converter",
    "decode",
    "describe_structure_error",
    "encode",
]

DEFAULT_MAX_FRAME_SIZE: Final = 16 * 1024 * 1024
"""Largest frame :func:`decode` accepts by default, in bytes (or characters for ``str``)."""

T = TypeVar("T")


class ProtocolError(Exception):
    """A peer broke the protocol. ``reason`` says precisely how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------
# The converter

converter: Final = cattrs.Converter(detailed_validation=True)
"""The one converter: protocol classes and user payload classes go through it."""

_PROTOCOL_CLASSES: Final[frozenset[type]] = frozenset(
    {
        _types.TaskMetadata,
        _types.Task,
        _types.TaskError,
        _types.TaskResult,
        _types.WorkerRegistration,
        _types.HeartbeatPayload,
        _types.BackpressureSignal,
        *DISPATCHER_MESSAGES,
        *WORKER_MESSAGES,
    }
)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _strict(kind: type[T], *accepted: type) -> Callable[[Any, Any], T]:
    accepted = accepted or (kind,)

    def structure(value: Any, _: Any) -> T:
        if isinstance(value, bool) and bool not in accepted:
            raise TypeError(f"expected {kind.__name__}, got bool")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {_type_name(value)}")
        return kind(value)  # type: ignore[call-arg]

    return structure


converter.register_structure_hook(int, _strict(int))
converter.register_structure_hook(float, _strict(float, float, int))
converter.register_structure_hook(str, _strict(str))
converter.register_structure_hook(bool, _strict(bool))


def _structure_str_tuple(value: Any, _: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"expected a list of strings, got {_type_name(value)}")
    return tuple(value)


def _is_str_tuple(tp: Any) -> bool:
    return bool(tp == tuple[str, ...])


converter.register_structure_hook_func(_is_str_tuple, _structure_str_tuple)
converter.register_unstructure_hook_func(_is_str_tuple, list)


def _structure_uuid(value: Any, _: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise TypeError(f"expected a UUID string, got {_type_name(value)}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError(f"not a UUID: {value[:64]!r}") from None


converter.register_structure_hook(uuid.UUID, _structure_uuid)
converter.register_unstructure_hook(uuid.UUID, str)


def _structure_datetime(value: Any, _: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected an RFC 3339 timestamp, got {_type_name(value)}")
    try:
        parsed = datetime.fromisoformat(value.upper())  # RFC 3339 allows "t" and "z"
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {value[:64]!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _unstructure_datetime(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


converter.register_structure_hook(datetime, _structure_datetime)
converter.register_unstructure_hook(datetime, _unstructure_datetime)

_PRIORITIES: Final = {p.wire_name.lower(): p for p in Priority}
_STATUSES: Final = {s.value.lower(): s for s in TaskStatus}


def _enum_hook(table: Mapping[str, T], what: str) -> Callable[[Any, Any], T]:
    def structure(value: Any, _: Any) -> T:
        if isinstance(value, str):
            found = table.get(value.replace("_", "").lower())
            if found is not None:
                return found
            raise ValueError(f"unknown {what} {value[:64]!r}")
        raise TypeError(f"expected a {what} string, got {_type_name(value)}")

    return structure


converter.register_structure_hook(Priority, _enum_hook(_PRIORITIES, "priority"))
converter.register_unstructure_hook(Priority, lambda p: p.wire_name)
converter.register_structure_hook(TaskStatus, _enum_hook(_STATUSES, "task status"))
converter.register_unstructure_hook(TaskStatus, lambda s: s.value)


@attrs.frozen
class _Alias:
    """Normaliser: read the member *old* as *new* when *new* is absent."""

    old: str
    new: str

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.new not in data and self.old in data:
            data = {**data, self.new: data[self.old]}
        return data


def _alias(old: str, new: str) -> _Alias:
    return _Alias(old, new)


def _normalise_registration(data: dict[str, Any]) -> dict[str, Any]:
    language = data.get("language")
    if isinstance(language, dict) and len(language) == 1:
        data = {**data, "language": next(iter(language.values()))}
    return data


_NORMALISERS: Final[dict[type, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    _messages.Kill: _alias("task_id", "taskId"),
    _messages.WorkerRegistered: _alias("worker_id", "workerId"),
    _types.WorkerRegistration: _normalise_registration,
}


def _protocol_structure_factory(cls: type[T]) -> Callable[[Any, Any], T]:
    renames = {a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)}  # type: ignore[arg-type]
    generated = make_dict_structure_fn(cls, converter, **renames)  # type: ignore[arg-type]
    normalise = _NORMALISERS.get(cls)

    def structure(value: Any, _: Any) -> T:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {_type_name(value)}")
        if normalise is not None:
            value = normalise(value)
        return generated(value, cls)

    return structure


def _protocol_unstructure_factory(cls: type[T]) -> Callable[[T], dict[str, Any]]:
    renames = {a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)}  # type: ignore[arg-type]
    return make_dict_unstructure_fn(cls, converter, **renames)  # type: ignore[arg-type]


converter.register_structure_hook_factory(
    lambda cls: cls in _PROTOCOL_CLASSES, _protocol_structure_factory
)
converter.register_unstructure_hook_factory(
    lambda cls: cls in _PROTOCOL_CLASSES, _protocol_unstructure_factory
)


# ---------------------------------------------------------------------------
# encode / decode

_BY_TAG: Final[dict[str, type[Message]]] = {
    cls.TYPE.lower(): cls for cls in (*DISPATCHER_MESSAGES, *WORKER_MESSAGES)
}
_SNAKE_SEGMENT: Final = re.compile(r"(?<=\.)[a-z0-9]+(?:_[a-z0-9]+)+")


def encode(message: Message) -> str:
    """The canonical JSON text of *message* (compact, camelCase, every field).

    Raises :class:`ValueError` or :class:`TypeError` if a payload is not JSON.
    """
    data = converter.unstructure(message)
    return json.dumps(
        {"type": message.TYPE, **data},
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def _camel_path(error: str) -> str:
    """camelCase the path after the last " @ " (not the quoted value before it)."""
    message, at, path = error.rpartition(" @ ")
    return message + at + _SNAKE_SEGMENT.sub(lambda m: _camel(m.group()), path)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:32]} is out of range")
    return value


def _format_error(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, TypeError | ValueError | OverflowError) and str(exc):
        return str(exc)
    return cattrs.v.format_exception(exc, _type)


def describe_structure_error(exc: Exception, *, path: str = "$") -> list[str]:
    """What :data:`converter` found wrong, one line per problem, each ending with the
    path of the bad value (``expected int, got str @ $.depth``)."""
    return cattrs.transform_error(exc, path=path, format_exception=_format_error)


def decode(data: str | bytes, *, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> Message:
    """Parse one frame into a message. Raises only :class:`ProtocolError`."""
    if len(data) > max_size:
        raise ProtocolError(f"frame of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        obj = json.loads(data, parse_constant=_reject_constant, parse_float=_parse_float)
    except RecursionError:
        raise ProtocolError("not JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"expected a JSON object, got {_type_name(obj)}")
    tag = obj.get("type")
    if not isinstance(tag, str):
        raise ProtocolError(
            "missing message type" if tag is None else "message type must be a string"
        )
    cls = _BY_TAG.get(tag.lower())
    if cls is None:
        raise ProtocolError(f"unknown message type {tag[:64]!r}")
    try:
        return converter.structure(obj, cls)
    except RecursionError:
        raise ProtocolError(f"invalid {cls.TYPE}: nested too deeply") from None
    except Exception as exc:
        details = "; ".join(_camel_path(e) for e in describe_structure_error(exc))
        raise ProtocolError(f"invalid {cls.TYPE}: {details}") from None
