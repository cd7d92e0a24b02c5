"""``encode``/``decode`` between messages and JSON text: the public entry points and
the reference path.

The reference path is the standard library's ``json`` and :data:`~._converter.converter`:
it decides every rule (compact canonical text out; on the way in, precise
:class:`RemoteProtocolError` reasons with the path of the bad value, and the refusal of
NaN, out-of-range numbers and lone surrogates). :func:`parse_json_value` shares its
reading of JSON with the rest of the package.

The two messages of every task (``TaskDispatch`` out, ``TaskResult`` back) first try the
fast paths of :mod:`._fast` (orjson), which answer only when they give exactly what the
reference path gives; anything unusual goes the reference way.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

import attrs
import orjson

from ._converter import _type_name, converter, describe_structure_error
from ._errors import NotAMessage, ProtocolError, RemoteProtocolError
from ._fast import _decode_fast, _encode_dispatch_fast, _encode_result_fast
from ._messages import (
    DISPATCHER_MESSAGES,
    WORKER_MESSAGES,
    Message,
    TaskDispatch,
    TaskResultMessage,
)
from ._types import Task, _camel

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_JSON_DEPTH",
    "ProtocolError",
    "decode",
    "encode",
    "encode_dispatch",
    "parse_json_value",
]

DEFAULT_MAX_FRAME_SIZE: Final = 16 * 1024 * 1024
"""Largest frame :func:`decode` accepts by default, in bytes (or characters for ``str``)."""
DEFAULT_MAX_JSON_DEPTH: Final = 128
"""Deepest nesting of arrays and objects :func:`decode` accepts by default (a message's
own envelope takes 2 or 3 levels; ``{}`` and ``[]`` are one level). Never above 1024,
orjson's own limit."""
_ORJSON_DEPTH_LIMIT: Final = 1024


_BY_TAG: Final[dict[str, type[Message]]] = {
    cls.TYPE.lower(): cls for cls in (*DISPATCHER_MESSAGES, *WORKER_MESSAGES)
}
_SNAKE_SEGMENT: Final = re.compile(r"(?<=\.)[a-z0-9]+(?:_[a-z0-9]+)+")


_JSON_ENCODER: Final = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def encode(message: Message) -> str:
    """The canonical JSON text of *message* (compact, camelCase, every field).

    Raises :class:`ValueError` or :class:`TypeError` if a payload is not JSON.
    """
    if isinstance(message, TaskDispatch):
        return encode_dispatch(message.task)
    if isinstance(message, TaskResultMessage):
        text = _encode_result_fast(message.result)
        if text is not None:
            return text
    return _encode_reference(message)


def encode_dispatch(
    task: Task,
    *,
    timeout_ms: int | None = None,
    retry_count: int | None = None,
    attempt: int | None = None,
    epoch: int | None = None,
) -> str:
    """``encode(TaskDispatch(task))``, with the metadata's ``timeoutMs``,
    ``retryCount``, ``attempt`` and ``epoch`` replaced when given (the dispatcher's hot
    path: no copy of the task)."""
    metadata = task.metadata
    timeout = metadata.timeout_ms if timeout_ms is None else timeout_ms
    retries = metadata.retry_count if retry_count is None else retry_count
    attempt = metadata.attempt if attempt is None else attempt
    epoch = metadata.epoch if epoch is None else epoch
    text = _encode_dispatch_fast(task, timeout, retries, attempt, epoch)
    if text is not None:
        return text
    changed = attrs.evolve(
        metadata, timeout_ms=timeout, retry_count=retries, attempt=attempt, epoch=epoch
    )
    if changed != metadata:
        task = attrs.evolve(task, metadata=changed)
    return _encode_reference(TaskDispatch(task))


def _encode_reference(message: Message) -> str:
    data = converter.unstructure(message)
    text = _JSON_ENCODER.encode({"type": message.TYPE, **data})
    # The fast paths (orjson) refuse a lone surrogate; the standard library writes it
    # as it is, into a frame no transport can send as UTF-8. Refuse it here too.
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        bad = ord(text[exc.start])
        raise ValueError(
            f"{message.TYPE}: lone surrogate U+{bad:04X} in a string (not valid "
            "Unicode text)"
        ) from None
    return text


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


def parse_json_value(data: str | bytes) -> Any:
    """The JSON value in *data*, read as :func:`decode` reads a frame: ``NaN``,
    ``Infinity``, numbers beyond a float's range and nesting deeper than ``json`` reads
    are refused. A string may hold a lone surrogate (``"\\ud800"``), as ``json`` reads it.

    Raises :class:`ValueError` saying why *data* is not JSON (``json``'s
    ``JSONDecodeError`` and ``UnicodeDecodeError`` are ValueErrors).
    """
    try:
        return json.loads(data, parse_constant=_reject_constant, parse_float=_parse_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def decode(
    data: str | bytes,
    *,
    max_size: int = DEFAULT_MAX_FRAME_SIZE,
    max_depth: int = DEFAULT_MAX_JSON_DEPTH,
) -> Message:
    """Parse one frame into a message.

    Raises only :class:`RemoteProtocolError` (the frame came from the peer), whose
    reason says what is wrong and where: not JSON, not an object or no ``"type"``
    (these three as :class:`NotAMessage`), not a known message, a field
    missing, mistyped or out of range, a string holding a lone surrogate (which no
    UTF-8 text can carry), a frame over *max_size*, arrays and objects nested deeper
    than *max_depth* (at most 1024; nesting too deep for the standard library's
    ``json`` to read, about 1000 levels, is not JSON: :class:`NotAMessage`).
    """
    if len(data) > max_size:
        raise RemoteProtocolError(
            f"frame of {len(data)} bytes exceeds the limit of {max_size}"
        )
    max_depth = min(max_depth, _ORJSON_DEPTH_LIMIT)
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        # The reference path says why, or reads what orjson cannot.
        return _decode_reference(data, max_depth=max_depth)
    _check_depth(data, obj, max_depth)
    message = _decode_fast(obj)
    if message is not None:
        return message
    # orjson read it, so it holds no lone surrogate: orjson refuses them all.
    return _decode_reference(data, max_depth=max_depth, unicode_checked=True)


def _too_deep(max_depth: int) -> RemoteProtocolError:
    return RemoteProtocolError(f"JSON nested too deeply (more than {max_depth} levels)")


def _check_depth(data: str | bytes, obj: Any, max_depth: int) -> None:
    """Raise :class:`RemoteProtocolError` if arrays and objects in *obj* (read from
    *data*) nest deeper than *max_depth*. A frame with fewer opening brackets than
    that (counted at C speed, in strings too) cannot: most frames skip the walk."""
    if isinstance(data, str):
        brackets = data.count("[") + data.count("{")
    else:
        brackets = data.count(b"[") + data.count(b"{")
    if brackets <= max_depth:
        return
    # Iterative, over containers only: the walk is bounded by the frame's size.
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            raise _too_deep(max_depth)
        if type(value) is dict:
            children: Any = value.values()
        elif type(value) is list:
            children = value
        else:
            continue
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))


def _decode_reference(
    data: str | bytes,
    *,
    max_depth: int = DEFAULT_MAX_JSON_DEPTH,
    unicode_checked: bool = False,
) -> Message:
    """:func:`decode` by the reference way (the standard library's ``json``, then
    cattrs), which also raises only :class:`RemoteProtocolError`. With
    *unicode_checked*, the caller knows that no string in *data* holds a lone
    surrogate, and the search for one is skipped."""
    try:
        obj = parse_json_value(data)
    except ValueError as exc:  # (JSON too deep to read at all is no message either)
        raise NotAMessage(f"not JSON: {exc}") from None
    _check_depth(data, obj, max_depth)  # (rarely walked twice: see _check_depth)
    if not isinstance(obj, dict):
        raise NotAMessage(f"expected a JSON object, got {_type_name(obj)}")
    tag = obj.get("type")
    if tag is None:
        raise NotAMessage("missing message type")
    if not isinstance(tag, str):
        raise RemoteProtocolError("message type must be a string")
    cls = _BY_TAG.get(tag.lower()) if tag.isascii() else None  # ASCII case only
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {tag[:64]!r}")
    if not unicode_checked:
        _reject_lone_surrogates(obj, cls)
    try:
        return converter.structure(obj, cls)
    except RecursionError:
        raise RemoteProtocolError(f"invalid {cls.TYPE}: nested too deeply") from None
    except Exception as exc:
        details = "; ".join(_camel_path(e) for e in describe_structure_error(exc))
        raise RemoteProtocolError(f"invalid {cls.TYPE}: {details}") from None


# A lone surrogate (U+D800-U+DFFF not in a pair) is no character: no UTF-8 text holds
# one. ``json`` reads the escape ``"\ud800"`` (and a raw one in a ``str``, or an
# encoded one in bytes) into such a string anyway, and whatever writes that string out
# again as UTF-8 then fails (a result echoed back, a log line). orjson refuses them
# all, so a frame that orjson read needs no search; one it refused does.

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _reject_lone_surrogates(obj: dict[str, Any], cls: type[Message]) -> None:
    """Raise :class:`RemoteProtocolError` naming the first string (or member name) of
    *obj* that holds a lone surrogate, with its path."""
    try:
        # A tenth of the walk's cost. orjson also refuses integers beyond 64 bits and
        # deep nesting: then the walk decides.
        orjson.dumps(obj)
    except orjson.JSONEncodeError:
        pass
    else:
        return
    found = _find_lone_surrogate(obj)
    if found is not None:
        where, text, path = found
        code = next(ord(c) for c in text if 0xD800 <= ord(c) <= 0xDFFF)
        raise RemoteProtocolError(
            f"invalid {cls.TYPE}: lone surrogate U+{code:04X} in {where}"
            f" (not valid Unicode text) @ {path}"
        )


def _find_lone_surrogate(obj: Any) -> tuple[str, str, str] | None:
    """(``"a string"`` or ``"a member name"``, the text, its path) for the first text
    in *obj*, in document order, that UTF-8 cannot encode; None if there is none.
    Iterative: *obj* may be nested as deeply as ``json`` reads."""
    # Entries: (value, parent entry, step from the parent); a path is built only once.
    stack: list[tuple[Any, Any, str]] = [(obj, None, "$")]
    while stack:
        entry = stack.pop()
        value = entry[0]
        if type(value) is str:
            if not _encodes(value):
                return "a string", value, _path_of(entry)
        elif type(value) is dict:
            children = []
            for key, item in value.items():
                step = _member_step(key)
                if not _encodes(key):
                    return "a member name", key, _path_of((key, entry, step))
                children.append((item, entry, step))
            stack.extend(reversed(children))
        elif type(value) is list:
            items = [(item, entry, f"[{index}]") for index, item in enumerate(value)]
            stack.extend(reversed(items))
    return None


def _member_step(key: str) -> str:
    """``.name``, or ``['any name']`` (escaped, at most 64 characters shown)."""
    if len(key) <= 64 and _IDENTIFIER.fullmatch(key):
        return f".{key}"
    return f"[{key[:64]!r}{'...' if len(key) > 64 else ''}]"


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _path_of(entry: tuple[Any, Any, str]) -> str:
    steps = []
    while entry is not None:
        steps.append(entry[2])
        entry = entry[1]
    return "".join(reversed(steps))
