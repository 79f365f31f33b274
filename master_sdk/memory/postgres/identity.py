"""``identity: database``: on a shared PostgreSQL store the actor is the role the store
signs in as, not a name a caller gives.

The store asks the server who it is (``session_user``) when it opens, and every commit it
makes records that role as the starter of a new run and as the actor of each approval and
input, whatever ``created_by`` or ``by`` the caller put in the records. The workbench acts
as that role too and refuses a ``by=`` naming anyone else, so the team rules (``four_eyes``,
``approvers``, reservations) are checked against authenticated roles. Runs copied in from
another store (``write_runs``) keep the actors they were recorded with.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from master_sdk.memory.store import Changes, RunRecord

if TYPE_CHECKING:
    import psycopg


def session_role(conn: psycopg.Connection[tuple[Any, ...]]) -> str:
    """The role a connection signed in as."""
    row = conn.execute("SELECT session_user").fetchone()
    assert row is not None  # noqa: S101  # a SELECT without FROM gives one row
    return str(row[0])


def as_role(role: str, run: RunRecord, changes: Changes, *, new: bool) -> Changes:
    """``changes`` with ``role`` as the actor of its decisions (a copy when anything
    changes; ``run.created_by`` is set on a new run)."""
    if new:
        run.created_by = role
    if not any(a.by != role for a in changes.approvals) and not any(
        i.by != role for i in changes.inputs
    ):
        return changes
    return replace(
        changes,
        approvals=[replace(a, by=role) for a in changes.approvals],
        inputs=[replace(i, by=role) for i in changes.inputs],
    )
