"""Plain-text tables whose columns line up, as the command line prints them."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["aligned"]


def aligned(rows: Sequence[Sequence[str]], *, indent: str = "") -> list[str]:
    """*rows* (a header first, usually) as lines whose columns line up: each column
    but the last is padded to its widest cell, two spaces apart, and no line ends in
    spaces. Every row has the same number of cells."""
    if not rows:
        return []
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    return [(indent + "  ".join(map(str.ljust, row, widths))).rstrip() for row in rows]
