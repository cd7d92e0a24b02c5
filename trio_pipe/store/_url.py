"""Stores named by URL, for the command line and configuration files."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from ._base import Store
from ._memory import MemoryStore
from ._sqlite import SqliteStore

__all__ = ["store_from_url"]


def store_from_url(url: str, *, readonly: bool = False) -> Store:
    """The store *url* names:

    - ``memory://``: a :class:`MemoryStore`;
    - ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (the path is
      what follows ``sqlite:///``, as in SQLAlchemy), with ``?synchronous=FULL`` and
      ``?commit_delay=0.002`` and ``?writeback_delay=0.01`` as options: a
      :class:`SqliteStore`.

    Raises ``ValueError`` naming what is wrong with the URL.
    """
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    if parts.scheme == "memory":
        if parts.netloc or parts.path or options or readonly:
            raise ValueError(f"{url!r}: a memory store takes no path or options")
        return MemoryStore()
    if parts.scheme == "sqlite":
        if parts.netloc:
            raise ValueError(
                f"{url!r}: a SQLite URL has no host; write sqlite:///relative.db or "
                "sqlite:////absolute/path.db"
            )
        path = parts.path[1:]
        if not path:
            raise ValueError(f"{url!r}: no database file given (sqlite:///tasks.db)")
        synchronous = options.pop("synchronous", "NORMAL").upper()
        delays = {}
        for name, default in (("commit_delay", "0"), ("writeback_delay", "0.01")):
            text = options.pop(name, default)
            try:
                delays[name] = float(text)
            except ValueError:
                raise ValueError(f"{url!r}: {name} must be seconds, not {text!r}") from None
        if options:
            raise ValueError(
                f"{url!r}: unknown option(s) {', '.join(sorted(options))} "
                "(known: synchronous, commit_delay, writeback_delay)"
            )
        return SqliteStore(
            path,
            synchronous=synchronous,  # type: ignore[arg-type]  # SqliteStore checks it
            commit_delay=delays["commit_delay"],
            writeback_delay=delays["writeback_delay"],
            readonly=readonly,
        )
    raise ValueError(f"{url!r}: unknown store; use memory:// or sqlite:///path/to/tasks.db")
