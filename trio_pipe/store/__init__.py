"""Where a dispatcher keeps its tasks: :class:`MemoryStore` (the default, gone with
the process) and :class:`SqliteStore` (an embedded database: accepted tasks survive a
crash). See docs/durability.md for what each promises.
"""

from ._base import Store
from ._memory import MemoryStore
from ._records import AttemptRecord, CachedResult, Retention, TaskRecord
from ._sqlite import SqliteStore
from ._url import store_from_url

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
