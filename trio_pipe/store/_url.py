"""Stores named by URL, for the command line and configuration files."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
      :class:`SqliteStore`;
    - ``postgresql://user:password@host:port/database`` (or ``postgres://``): a
      :class:`~trio_pipe.store.PostgresStore` (the ``postgres`` extra). The URL goes
      to libpq as it is, with its own options (``?sslmode=verify-full`` ...), except
      ``?commit_delay=`` and ``?writeback_delay=``, which are the store's.

    Raises ``ValueError`` naming what is wrong with the URL.
    """
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    if parts.scheme in ("postgresql", "postgres"):
        commit_delay, writeback_delay = _delays(redacted(url), options)
        try:
            from ._postgres import PostgresStore
        except ImportError as exc:
            raise ValueError(
                f"a PostgreSQL store needs psycopg ({exc}): "
                "pip install 'trio-pipe[postgres]'"
            ) from None
        dsn = urlunsplit(parts._replace(query=urlencode(options)))
        return PostgresStore(
            dsn,
            commit_delay=commit_delay,
            writeback_delay=writeback_delay,
            readonly=readonly,
        )
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
        commit_delay, writeback_delay = _delays(url, options)
        if options:
            raise ValueError(
                f"{url!r}: unknown option(s) {', '.join(sorted(options))} "
                "(known: synchronous, commit_delay, writeback_delay)"
            )
        return SqliteStore(
            path,
            synchronous=synchronous,  # type: ignore[arg-type]  # SqliteStore checks it
            commit_delay=commit_delay,
            writeback_delay=writeback_delay,
            readonly=readonly,
        )
    raise ValueError(
        f"{url!r}: unknown store; use memory://, sqlite:///path/to/tasks.db or "
        "postgresql://user@host/database"
    )


def _delays(name: str, options: dict[str, str]) -> tuple[float, float]:
    """``commit_delay`` and ``writeback_delay``, taken out of *options* (seconds)."""
    delays = []
    for option, default in (("commit_delay", "0"), ("writeback_delay", "0.01")):
        text = options.pop(option, default)
        try:
            delays.append(float(text))
        except ValueError:
            raise ValueError(f"{name!r}: {option} must be seconds, not {text!r}") from None
    return delays[0], delays[1]


def redacted(dsn: str) -> str:
    """A database URL or connection string without its password, to name a store in
    messages and logs."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password is None:
            return dsn
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)
