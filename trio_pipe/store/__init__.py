"""Where a dispatcher keeps its tasks: :class:`MemoryStore` (the default, gone with
the process), :class:`SqliteStore` (an embedded database: accepted tasks survive a
crash) and :class:`PostgresStore` (a PostgreSQL database; the ``postgres`` extra,
imported on first use). See docs/durability.md for what each promises.
"""

from typing import TYPE_CHECKING, Any

from ._base import Store
from ._memory import MemoryStore
from ._records import AttemptRecord, CachedResult, Retention, TaskRecord
from ._sqlite import SqliteStore
from ._url import store_from_url

if TYPE_CHECKING:
    from ._postgres import PostgresStore as PostgresStore

# PostgresStore is left out of __all__: ``from trio_pipe.store import *`` must work
# without the postgres extra.
__all__ = [
    "AttemptRecord",
    "CachedResult",
    "MemoryStore",
    "Retention",
    "SqliteStore",
    "Store",
    "TaskRecord",
    "store_from_url",
]


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from ._postgres import PostgresStore

        globals()[name] = PostgresStore
        return PostgresStore
    raise AttributeError(f"module 'trio_pipe.store' has no attribute {name!r}")
