"""Exponential backoff with jitter: dispatcher retries, supervisor restarts and worker
reconnects all wait this way."""

from __future__ import annotations

import random
from typing import Literal

__all__ = ["backoff_delay"]

_RANDOM = random.Random()


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    *,
    jitter: Literal["equal", "full"] = "equal",
    rng: random.Random | None = None,
) -> float:
    """How long to wait before try number *attempt* + 1 (*attempt* counts from 0).

    The ceiling is ``min(cap, base * 2**attempt)``. Equal jitter waits between half
    and all of it (a floor keeps retries from hammering); full jitter anywhere from 0
    to all of it (spreads a crowd of reconnecting clients best).
    """
    ceiling = min(cap, base * 2.0 ** min(attempt, 64))
    draw = (rng or _RANDOM).uniform
    if jitter == "full":
        return draw(0.0, ceiling)
    return ceiling / 2 + draw(0.0, ceiling / 2)
