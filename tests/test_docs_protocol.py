"""The examples in docs/protocol.md are real: every ```json block decodes, and every
block introduced as canonical (the last non-blank line before it says "canonical") is
exactly what ``encode`` writes for it, up to whitespace."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import pytest
from helpers import ROOT

from trio_pipe.protocol import DISPATCHER_MESSAGES, WORKER_MESSAGES, decode, encode

DOC = ROOT / "docs" / "protocol.md"


class Example(NamedTuple):
    line: int  # 1-based line of the opening fence
    text: str
    canonical: bool


def _examples() -> list[Example]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    examples = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```json":
            end = i + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            assert end < len(lines), f"unterminated ```json block at line {i + 1}"
            before = [line for line in lines[:i] if line.strip()]
            canonical = bool(before) and "canonical" in before[-1].lower()
            examples.append(Example(i + 1, "\n".join(lines[i + 1 : end]), canonical))
            i = end
        i += 1
    return examples


EXAMPLES = _examples()


def test_the_doc_has_examples_of_every_message() -> None:
    types = {decode(example.text).TYPE for example in EXAMPLES}
    assert types == {cls.TYPE for cls in (*DISPATCHER_MESSAGES, *WORKER_MESSAGES)}
    assert sum(example.canonical for example in EXAMPLES) >= 9


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"line{e.line}")
def test_example_decodes(example: Example) -> None:
    decode(example.text)  # raises ProtocolError with the reason if not


@pytest.mark.parametrize(
    "example",
    [e for e in EXAMPLES if e.canonical],
    ids=lambda e: f"line{e.line}",
)
def test_canonical_example_is_what_encode_writes(example: Example) -> None:
    compact = json.dumps(
        json.loads(example.text), separators=(",", ":"), ensure_ascii=False
    )
    assert encode(decode(example.text)) == compact


# -- the page against spec/schema -------------------------------------------------------

SCHEMA = json.loads((ROOT / "spec" / "schema" / "messages.schema.json").read_text())
# The heading of each schema definition on the page, where it is not the name itself.
HEADINGS = {
    "TaskResultMessage": "#### TaskResult",
    "HeartbeatPayload": "### Heartbeat payload",
    "BackpressureSignal": "### Backpressure signal",
}


def _section(heading: str) -> str:
    """The text under *heading* (exactly that line) up to the next heading."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(heading) + 1
    end = next(
        (i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines)
    )
    return "\n".join(lines[start:end])


DOCUMENTED = [
    (name, definition)
    for name, definition in SCHEMA["$defs"].items()
    if "properties" in definition or "enum" in definition
]


@pytest.mark.parametrize(("name", "definition"), DOCUMENTED, ids=[n for n, _ in DOCUMENTED])
def test_every_schema_field_and_enum_value_is_on_the_page(
    name: str, definition: dict[str, Any]
) -> None:
    messages = {cls.__name__ for cls in (*DISPATCHER_MESSAGES, *WORKER_MESSAGES)}
    default = f"#### {name}" if name in messages else f"### {name}"
    section = _section(HEADINGS.get(name, default))
    names = [*definition.get("properties", {}), *definition.get("enum", [])]
    missing = [
        field
        for field in names
        if f"`{field}`" not in section and f'`"{field}"`' not in section and field != "type"
    ]
    assert not missing, f"{name}: not documented under its heading: {missing}"
