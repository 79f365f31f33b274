"""``identity: database``: on a shared PostgreSQL store the actor is the role the store
signs in as, not a name a caller gives.

The store asks the server who it is (``session_user``) when it opens, and every commit it
makes records that role as the starter of a new run and as the actor of each approval and
input, whatever ``created_by`` or ``by`` the caller put in the records. The workbench acts
as that role too and refuses a ``by=`` naming anyone else, so the team rules (``four_eyes``,
``approvers``, reservations) are checked against authenticated roles. Runs copied in from
another store (``write_runs``) keep the actors they were recorded with.

The database holds to it as well, whatever the client (:data:`GUARD`, made by the first
store that opens the database, recorded as ``identity_schema_version`` in
``master_meta``): a role that neither owns the tables nor is a member of their owner may
only write its own name (``session_user``) as a run's ``created_by`` and as the ``by_`` of
an approval or an input, and may never change a recorded one — by the store or by hand in
``psql``. The owner (and its members: an admin group) may write any name, which copying
runs between stores needs. So a team gives each person a login role with rights on the
tables but not their ownership; a superuser or the owner is not held (PostgreSQL cannot
hold a superuser to anything). Deleting rows is left to the roles' grants.
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


IDENTITY_SCHEMA_VERSION = 1

_GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION master_actor_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    actor text;
    was text;
BEGIN
    IF TG_TABLE_NAME = 'runs' THEN
        actor := NEW.created_by;
    ELSE
        actor := NEW.by_;
    END IF;
    IF TG_OP = 'INSERT' AND actor IS NOT DISTINCT FROM session_user::text THEN
        RETURN NEW;
    END IF;
    IF pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID),
                   'MEMBER') THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF TG_TABLE_NAME = 'runs' THEN
            was := OLD.created_by;
        ELSE
            was := OLD.by_;
        END IF;
        RAISE EXCEPTION 'role % may not change the recorded actor in % (% to %)',
            session_user, TG_TABLE_NAME, coalesce(was, 'nobody'), coalesce(actor, 'nobody')
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RAISE EXCEPTION 'role % may not record % as the actor in %; open the store with '
        'identity: database (it records the signed-in role), or sign in as that role',
        session_user, coalesce(actor, 'nobody'), TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
"""
# the column each guarded table records its actor in
_ACTOR_COLUMNS = (("runs", "created_by"), ("approvals", "by_"), ("user_inputs", "by_"))
_TRIGGERS = """\
DROP TRIGGER IF EXISTS {table}_actor_insert ON {table};
CREATE TRIGGER {table}_actor_insert BEFORE INSERT ON {table} FOR EACH ROW
    WHEN (NEW.{column} IS DISTINCT FROM session_user::text)
    EXECUTE FUNCTION master_actor_guard();
DROP TRIGGER IF EXISTS {table}_actor_update ON {table};
CREATE TRIGGER {table}_actor_update BEFORE UPDATE OF {column} ON {table} FOR EACH ROW
    WHEN (NEW.{column} IS DISTINCT FROM OLD.{column})
    EXECUTE FUNCTION master_actor_guard();
"""
# the function, then an insert and an update trigger on each table
GUARD = _GUARD_FUNCTION + "".join(
    _TRIGGERS.format(table=table, column=column) for table, column in _ACTOR_COLUMNS
)


def ensure_guard(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    """Make :data:`GUARD` if this database does not have it yet (call inside the schema
    migration's transaction, under its advisory lock)."""
    row = conn.execute(
        "SELECT value FROM master_meta WHERE key = 'identity_schema_version'"
    ).fetchone()
    if row is not None and int(str(row[0])) >= IDENTITY_SCHEMA_VERSION:
        return
    conn.execute(GUARD, prepare=False)
    conn.execute(
        "INSERT INTO master_meta (key, value) VALUES ('identity_schema_version', %s) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        (str(IDENTITY_SCHEMA_VERSION),),
    )
