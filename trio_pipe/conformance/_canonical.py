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

    Returns ``(None, [why])`` when the dispatcher would refuse the frame outright.
    """
    try:
        message = decode(frame)
    except ProtocolError as exc:
        return None, [f"the dispatcher refuses this frame: {exc}: {_shorten(frame)}"]
    received = json.loads(frame)
    canonical = json.loads(encode(message))
    return message, _differences(received, canonical, received["type"])


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
