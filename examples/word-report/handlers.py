"""The Python worker of the word-report example: ``trio-pipe worker --stdio
--handlers handlers:HANDLERS``, which the pipeline starts in this folder."""

from __future__ import annotations

import collections
import re
from typing import Any

from trio_pipe.worker import Handlers, TaskFailure

HANDLERS = Handlers()


@HANDLERS.handler("word-frequencies")
async def word_frequencies(payload: dict[str, Any]) -> dict[str, Any]:
    """The *top* most frequent words of *text* (ties in order of first use)."""
    text, top = payload.get("text"), payload.get("top", 3)
    if not isinstance(text, str) or not isinstance(top, int) or top < 1:
        raise TaskFailure("BAD_INPUT", "expected {text: str, top: int >= 1}")
    words = re.findall(r"[a-z']+", text.lower())
    counts = collections.Counter(words)
    return {
        "words": len(words),
        "top": " ".join(f"{word}:{count}" for word, count in counts.most_common(top)),
    }
