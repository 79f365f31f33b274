"""Claiming the next free runs in a SQLite store (see ``Store.claim``): one write
transaction under the store's write lock, so claims are serialised and never overlap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from master_sdk.memory.store import Reservation

if TYPE_CHECKING:
    import sqlite3


def claim(
    conn: sqlite3.Connection,
    by: str,
    until_us: int,
    *,
    now_us: int,
    statuses: Sequence[str],
    product: str | None,
    flow: str | None,
    limit: int,
) -> list[Reservation]:
    """Inside a write transaction: lease up to ``limit`` free runs to ``by``."""
    if limit <= 0 or not statuses:
        return []
    marks = ", ".join(f"?{5 + i}" for i in range(len(statuses)))
    rows = conn.execute(
        f"SELECT r.pk, r.run_id FROM runs r WHERE r.status IN ({marks}) "  # noqa: S608  # placeholders only
        "AND (?1 IS NULL OR r.product = ?1) AND (?2 IS NULL OR r.flow = ?2) "
        "AND NOT EXISTS (SELECT 1 FROM reservations v WHERE v.run_pk = r.pk "
        "AND v.until_us > ?3) ORDER BY r.updated_us, r.pk LIMIT ?4",
        (product, flow, now_us, limit, *statuses),
    ).fetchall()
    until = max(until_us, now_us)
    conn.executemany(
        "INSERT INTO reservations (run_pk, reserved_by, until_us) VALUES (?, ?, ?) "
        "ON CONFLICT (run_pk) DO UPDATE SET reserved_by = excluded.reserved_by, "
        "until_us = excluded.until_us",
        [(pk, by, until) for pk, _ in rows],
    )
    return [Reservation(str(run_id), by, until) for _, run_id in rows]
