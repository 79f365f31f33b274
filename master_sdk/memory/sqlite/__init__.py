"""The embedded SQLite store (the default): one file, WAL, one short transaction per commit.

``store.py`` holds :class:`SQLiteStore`; ``connections.py`` its writer connection and
pool of readers; ``traces.py`` decodes trace chunks with numpy; ``reads.py`` the other
bulk reads. The schema and the chunk format live beside it (``memory/schema.py``,
``memory/chunks.py``).
"""

from master_sdk.memory.sqlite.store import TRACE_REDACTED, SQLiteStore

__all__ = ["TRACE_REDACTED", "SQLiteStore"]
