"""Runs in a PostgreSQL database, shared by a team (``postgresql://`` stores)."""

from master_sdk.memory.postgres.store import INSTALL_HINT, PostgresStore

__all__ = ["INSTALL_HINT", "PostgresStore"]
