"""How a worker's message differs from the canonical form of the same message.

The dispatcher is liberal in what it accepts; the kit holds a worker to what the
protocol says a sender writes: every field, camelCase names, PascalCase enums. A
message is decoded as the dispatcher decodes it, encoded again, and the two JSON
values are compared; each difference is described with its path.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..protocol import Message, ProtocolError, decode, encode

__all__ = ["check_canonical"]

_MAX_SHOWN = 60


def check_canonical(frame: str) -> tuple[Message | None, list[str]]:
    """Decode *frame* and list how it departs from the canonical encoding.

    Field names that are not camelCase are reported and corrected before decoding, so
    that the rest of the message is still checked (and a case can go on). Returns
    ``(None, [why, ...])`` when the frame cannot be decoded even so.
    """
    problems: list[str] = []
    try:
        value = json.loads(frame)
    except ValueError:
        value = None
    root = str(value.get("type")) if isinstance(value, dict) else "$"
    received = _respelled(value, root, problems)
    try:
        message = decode(json.dumps(received) if problems else frame)
    except ProtocolError as exc:
        return None, [*problems, f"the dispatcher refuses it: {exc}"]
    canonical = json.loads(encode(message))
    return message, problems + _differences(received, canonical, canonical["type"])


_NOT_FIELDS = frozenset({"payload", "language"})
"""Members whose object values hold no field names: a payload (the user's own) and
``language`` (``{"Other": name}``, rust-pipe's spelling of a variant)."""


def _respelled(value: Any, path: str, problems: list[str]) -> Any:
    """*value* with every field name camelCase, outside payloads and ``language``;
    each name that had to change is added to *problems*."""
    if isinstance(value, list):
        return [_respelled(item, f"{path}[{i}]", problems) for i, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    respelled = {}
    for key, item in value.items():
        camel = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), key)
        camel = camel[:1].lower() + camel[1:]
        if camel != key:
            problems.append(f"{path}: field {key!r} must be spelled {camel!r}")
        inner = f"{path}.{camel}"
        respelled[camel] = item if key in _NOT_FIELDS else _respelled(item, inner, problems)
    return respelled


def _differences(received: Any, canonical: Any, path: str) -> list[str]:
    if isinstance(canonical, dict) and isinstance(received, dict):
        return _object_differences(received, canonical, path)
    if isinstance(canonical, list) and isinstance(received, list):
        if len(received) != len(canonical):
            return [f"{path}: {_show(received)} is not canonical, write {_show(canonical)}"]
        problems: list[str] = []
        for index, (got, want) in enumerate(zip(received, canonical, strict=True)):
            problems += _differences(got, want, f"{path}[{index}]")
        return problems
    if _same_json(received, canonical):
        return []
    return [f"{path}: {_show(received)} is not canonical, write {_show(canonical)}"]


def _object_differences(
    received: dict[str, Any], canonical: dict[str, Any], path: str
) -> list[str]:
    problems: list[str] = []
    explained: set[str] = set()
    for key, want in canonical.items():
        if key in received:
            problems += _differences(received[key], want, f"{path}.{key}")
            continue
        variants = [k for k in received if k not in canonical and _fold(k) == _fold(key)]
        if variants:
            explained.update(variants)
            problems.append(f"{path}: field {variants[0]!r} must be spelled {key!r}")
        else:
            problems.append(f"{path}: field {key!r} is missing (write {_show(want)})")
    for key in received.keys() - canonical.keys() - explained:
        problems.append(f"{path}: unknown field {key!r}")
    return problems


def _fold(name: str) -> str:
    """``task_id``, ``TaskId`` and ``taskId`` fold to the same key."""
    return re.sub(r"[_-]", "", name).lower()


def _same_json(a: Any, b: Any) -> bool:
    """JSON equality: ``1`` equals ``1.0`` (languages format numbers differently), but
    a boolean never equals a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _show(value: Any) -> str:
    return _shorten(json.dumps(value, ensure_ascii=False))


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
