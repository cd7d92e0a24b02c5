"""The one cattrs converter and its hooks: how protocol values map to JSON values.

Liberal on input (enums in any ASCII case, and in snake_case for names of several
words, with a hint for a near miss; defaults for missing optional fields; ``task_id``
and ``worker_id`` read as ``taskId`` and ``workerId``; ``language`` as a string or
``{"Other": ...}``; a terminal result's ``progress`` and ``extendMs`` dropped), exact on
output (camelCase fields, PascalCase enums, UUIDs, RFC 3339 timestamps in UTC,
``language`` in rust-pipe's own form, every field written but an extension field at its
default). Scalar hooks are strict (no ``3`` for a ``str``).
:func:`describe_structure_error` says what the converter refused, and where.

JSON values, not JSON text: :mod:`._codec` reads and writes the text, and :mod:`._fast`
reuses the hooks it needs.
"""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from . import _messages, _types
from ._messages import DISPATCHER_MESSAGES, WORKER_MESSAGES
from ._types import EXTENSION, Priority, TaskStatus, _camel

__all__ = ["converter", "describe_structure_error"]

T = TypeVar("T")


converter: Final = cattrs.Converter(detailed_validation=True)
"""The one converter: protocol classes and user payload classes go through it."""

_PROTOCOL_CLASSES: Final[frozenset[type]] = frozenset(
    {
        _types.TaskMetadata,
        _types.Task,
        _types.TaskError,
        _types.TaskProgress,
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


def _structure_limits(value: Any, _: Any) -> Mapping[str, int]:
    """An object of integers (task type -> limit); the class checks their range."""
    if not isinstance(value, dict):
        raise TypeError(f"expected an object of integers, got {_type_name(value)}")
    for key, limit in value.items():
        if type(limit) is not int:
            kind = _type_name(limit)
            raise TypeError(f"expected an integer for {key[:64]!r}, got {kind}")
    return value


def _is_limits(tp: Any) -> bool:
    return bool(tp == Mapping[str, int])


converter.register_structure_hook_func(_is_limits, _structure_limits)
converter.register_unstructure_hook_func(_is_limits, dict)


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

_PRIORITIES: Final = {p.wire_name: p for p in Priority}
_STATUSES: Final = {s.value: s for s in TaskStatus}
_WORD_START: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _spellings(name: str) -> tuple[str, ...]:
    """The spellings of the PascalCase enum value *name* that receivers accept, apart
    from case: the name itself and, for a name of several words, its snake_case
    (``TimedOut``, ``timed_out``). docs/protocol.md, "Enum"."""
    snake = _WORD_START.sub("_", name).lower()
    return (name,) if snake == name.lower() else (name, snake)


def _near_miss_hint(value: str, names: Mapping[str, object]) -> str:
    """For a value that is close to one of *names* once case and everything but ASCII
    letters and digits are set aside (``timed-out``, ``Pend_ing``, ``TimedOu``): which
    name it misses, and how that name may be written. Empty for anything else."""
    if len(value) > 64:
        return ""
    letters = "".join(c for c in value.casefold() if c.isascii() and c.isalnum())
    by_letters = {name.lower(): name for name in names}
    close = difflib.get_close_matches(letters, by_letters, n=1, cutoff=0.8)
    if not close:
        return ""
    name = by_letters[close[0]]
    accepted = " or ".join(repr(spelling) for spelling in _spellings(name))
    return f" (did you mean {name}? accepted: {accepted}, in any ASCII case)"


def _enum_hook(names: Mapping[str, T], what: str) -> Callable[[Any, Any], T]:
    """Exactly the spellings of :func:`_spellings` in any ASCII case: no other
    separator, no underscore elsewhere, no non-ASCII letter that folds to an ASCII one."""
    table = {s.lower(): member for name, member in names.items() for s in _spellings(name)}

    def structure(value: Any, _: Any) -> T:
        if isinstance(value, str):
            found = table.get(value.lower()) if value.isascii() else None
            if found is not None:
                return found
            hint = _near_miss_hint(value, names)
            raise ValueError(f"unknown {what} {value[:64]!r}{hint}")
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


def _normalise_result(data: dict[str, Any]) -> dict[str, Any]:
    """A terminal result's progress report and deadline extension mean nothing: they
    are dropped (a sender never writes them; a receiver ignores them)."""
    if "progress" not in data and "extendMs" not in data:
        return data
    try:
        terminal = converter.structure(data.get("status"), TaskStatus).is_terminal
    except (TypeError, ValueError):
        return data  # the status itself is wrong: structuring says so
    if terminal:
        data = {k: v for k, v in data.items() if k not in ("progress", "extendMs")}
    return data


_NORMALISERS: Final[dict[type, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    _messages.Kill: _alias("task_id", "taskId"),
    _messages.WorkerRegistered: _alias("worker_id", "workerId"),
    _types.WorkerRegistration: _normalise_registration,
    _types.TaskResult: _normalise_result,
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


_FIELD_WRITERS: Final[dict[tuple[type, str], Callable[[Any], Any]]] = {
    (_types.WorkerRegistration, "language"): _types._language_on_wire,
}
"""Fields written in a form of their own, by the function that makes it."""


def _protocol_unstructure_factory(cls: type[T]) -> Callable[[T], dict[str, Any]]:
    renames = {
        a.name: override(
            rename=_camel(a.name),
            omit_if_default=a.metadata.get(EXTENSION),
            unstruct_hook=_FIELD_WRITERS.get((cls, a.name)),
        )
        for a in attrs.fields(cls)  # type: ignore[arg-type]
    }
    return make_dict_unstructure_fn(cls, converter, **renames)  # type: ignore[arg-type]


converter.register_structure_hook_factory(
    lambda cls: cls in _PROTOCOL_CLASSES, _protocol_structure_factory
)
converter.register_unstructure_hook_factory(
    lambda cls: cls in _PROTOCOL_CLASSES, _protocol_unstructure_factory
)


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
