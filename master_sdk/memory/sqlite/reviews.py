"""SQLite reads and writes for reviewing: the pending list and reservations.

The pending list reads paused and decided runs through the ``runs_status`` index, taking
only what the list shows: the ``pending`` and ``experiment`` parts of the state are cut
out by SQLite's ``json_extract`` so a large state is never decoded in Python.
A reservation is one row per run in ``reservations``, changed by one conditional upsert:
two reviewers reserving at once cannot both win.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from master_sdk.errors import NotFound
from master_sdk.memory.store import PendingRun, Reservation

_PENDING = (
    "SELECT r.run_id, r.product, r.flow, r.status, r.created_by, r.created_us, r.updated_us, "
    "json_extract(r.state, '$.pending.step'), json_extract(r.state, '$.pending.since_us'), "
    "json_extract(r.state, '$.pending.show'), json_extract(r.state, '$.experiment.name'), "
    "v.reserved_by, v.until_us "
    "FROM runs r LEFT JOIN reservations v ON v.run_pk = r.pk "
)


def read_pending(
    conn: sqlite3.Connection,
    statuses: Sequence[str],
    product: str | None,
    flow: str | None,
) -> list[PendingRun]:
    """Runs in ``statuses``, oldest update first. ``json_extract`` hands a string ``show``
    back as it is and anything else as JSON text: what :class:`PendingRun` holds."""
    if not statuses:
        return []
    clauses = [f"r.status IN ({', '.join('?' * len(statuses))})"]
    params: list[object] = list(statuses)
    for column, value in (("product", product), ("flow", flow)):
        if value is not None:
            clauses.append(f"r.{column} = ?")
            params.append(value)
    sql = _PENDING + "WHERE " + " AND ".join(clauses) + " ORDER BY r.updated_us, r.pk"
    return [
        PendingRun(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            None if row[7] is None else str(row[7]),
            row[8] if isinstance(row[8], int) else None,
            None if row[9] is None else str(row[9]),
            row[10] if isinstance(row[10], str) else None,
            None if row[11] is None else Reservation(row[0], row[11], row[12]),
        )
        for row in conn.execute(sql, params)
    ]


def reserve(
    conn: sqlite3.Connection, run_id: str, by: str, until_us: int, now_us: int, path: str
) -> Reservation:
    """Inside a write transaction: grant, renew or release a lease (see ``Store.reserve``)."""
    found = conn.execute("SELECT pk FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if found is None:
        raise NotFound(f"no run '{run_id}' in {path}")
    pk = found[0]
    conn.execute(
        "INSERT INTO reservations (run_pk, reserved_by, until_us) VALUES (?, ?, ?) "
        "ON CONFLICT (run_pk) DO UPDATE SET reserved_by = excluded.reserved_by, "
        "until_us = excluded.until_us "
        "WHERE reservations.reserved_by = excluded.reserved_by OR reservations.until_us <= ?",
        (pk, by, max(until_us, now_us), now_us),
    )
    held = conn.execute(
        "SELECT reserved_by, until_us FROM reservations WHERE run_pk = ?", (pk,)
    ).fetchone()
    return Reservation(run_id, held[0], held[1])


def read_reservation(conn: sqlite3.Connection, run_id: str) -> Reservation | None:
    """The lease stored on a run, or None."""
    row = conn.execute(
        "SELECT v.reserved_by, v.until_us FROM reservations v "
        "JOIN runs r ON r.pk = v.run_pk WHERE r.run_id = ?",
        (run_id,),
    ).fetchone()
    return None if row is None else Reservation(run_id, row[0], row[1])
