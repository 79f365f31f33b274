"""The PostgreSQL store's tables, and their migration under an advisory lock.

One ``runs`` row per run (compare-and-set on ``version``); ``attempts`` keeps every attempt
of every step and ``steps`` points at the latest attempt of each step position; trace
events are one ``trace_blocks`` row per commit (its events as one compact JSON array, their
attributes as another), so a frame reads one value per commit, not thirteen per event;
``approvals``, ``user_inputs``, ``flows``, ``experiments`` and ``experiment_cases`` as in
the SQLite store.

Every process that opens the store runs :func:`ensure_schema`: inside one transaction it
takes ``pg_advisory_xact_lock`` (so two processes never migrate at once), creates what is
missing and records the version in ``master_meta``. A database written by a newer
master_sdk is refused, with the versions named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from master_sdk.errors import StoreError
from master_sdk.memory.postgres.identity import ensure_guard

if TYPE_CHECKING:
    import psycopg

PG_SCHEMA_VERSION = 1
# a fixed key for pg_advisory_xact_lock: "master_sdk schema" (any constant would do)
LOCK_KEY = 0x6D617374_6572_5F73

DDL = """
CREATE TABLE IF NOT EXISTS master_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    pk bigserial PRIMARY KEY,
    run_id text NOT NULL UNIQUE,
    product text NOT NULL,
    flow text NOT NULL,
    status text NOT NULL,
    version integer NOT NULL,
    cursor integer NOT NULL,
    created_us bigint NOT NULL,
    updated_us bigint NOT NULL,
    flow_hash text NOT NULL,
    product_version text NOT NULL,
    created_by text,
    owner text,
    steps_used integer NOT NULL DEFAULT 0,
    tool_calls integer NOT NULL DEFAULT 0,
    model_calls integer NOT NULL DEFAULT 0,
    tokens_in bigint NOT NULL DEFAULT 0,
    tokens_out bigint NOT NULL DEFAULT 0,
    cost_usd double precision NOT NULL DEFAULT 0,
    inputs text,
    output text,
    state text,
    error text,
    parent_run_id text,
    forked_at text
);
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE INDEX IF NOT EXISTS runs_product_flow ON runs (product, flow);
CREATE TABLE IF NOT EXISTS attempts (
    run_pk bigint NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
    step_id text NOT NULL,
    attempt integer NOT NULL,
    idx integer NOT NULL,
    type text NOT NULL,
    status text NOT NULL,
    started_us bigint,
    ended_us bigint,
    output text,
    error text,
    PRIMARY KEY (run_pk, step_id, attempt)
);
CREATE TABLE IF NOT EXISTS steps (
    run_pk bigint NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
    idx integer NOT NULL,
    step_id text NOT NULL,
    attempt integer NOT NULL,
    PRIMARY KEY (run_pk, idx)
);
CREATE TABLE IF NOT EXISTS trace_blocks (
    run_pk bigint NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
    block bigserial NOT NULL,
    n integer NOT NULL,
    data bytea NOT NULL,
    metrics bytea,
    attrs text,
    PRIMARY KEY (run_pk, block)
);
CREATE TABLE IF NOT EXISTS trace_names (
    code serial PRIMARY KEY,
    text text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS approvals (
    run_pk bigint NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
    n bigserial NOT NULL,
    step_id text NOT NULL,
    decision text NOT NULL,
    by_ text,
    comment text,
    at_us bigint NOT NULL,
    PRIMARY KEY (run_pk, n)
);
CREATE TABLE IF NOT EXISTS user_inputs (
    run_pk bigint NOT NULL REFERENCES runs (pk) ON DELETE CASCADE,
    n bigserial NOT NULL,
    step_id text NOT NULL,
    data text,
    by_ text,
    at_us bigint NOT NULL,
    PRIMARY KEY (run_pk, n)
);
CREATE TABLE IF NOT EXISTS flows (
    flow_hash text PRIMARY KEY,
    product text NOT NULL,
    flow text NOT NULL,
    product_version text NOT NULL,
    source text NOT NULL
);
CREATE TABLE IF NOT EXISTS experiments (
    pk bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    ref text NOT NULL,
    flow_hash text NOT NULL,
    product_version text NOT NULL,
    status text NOT NULL,
    created_us bigint NOT NULL,
    updated_us bigint NOT NULL,
    created_by text,
    params text,
    error text
);
CREATE TABLE IF NOT EXISTS experiment_cases (
    experiment_pk bigint NOT NULL REFERENCES experiments (pk) ON DELETE CASCADE,
    case_key text NOT NULL,
    idx integer NOT NULL,
    invalid boolean NOT NULL DEFAULT false,
    row text NOT NULL,
    run_id text,
    scores text,
    error text,
    PRIMARY KEY (experiment_pk, case_key)
);
CREATE INDEX IF NOT EXISTS experiment_cases_run ON experiment_cases (run_id);
CREATE TABLE IF NOT EXISTS reservations (
    run_pk bigint PRIMARY KEY REFERENCES runs (pk) ON DELETE CASCADE,
    reserved_by text NOT NULL,
    until_us bigint NOT NULL
);
"""


def ensure_schema(conn: psycopg.Connection[tuple[object, ...]], *, location: str) -> int:
    """Create or migrate the tables (serialised by an advisory lock); returns the version.

    Raises:
        StoreError: the database holds a newer schema than this master_sdk knows.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        exists = conn.execute("SELECT to_regclass('master_meta') IS NOT NULL").fetchone()
        version = 0
        if exists is not None and exists[0]:
            row = conn.execute(
                "SELECT value FROM master_meta WHERE key = 'schema_version'"
            ).fetchone()
            version = int(str(row[0])) if row is not None else 0
        if version > PG_SCHEMA_VERSION:
            raise StoreError(
                f"{location}: the store's schema is version {version}, newer than this "
                f"master_sdk knows ({PG_SCHEMA_VERSION}); upgrade master_sdk to use it "
                "(nothing was changed)"
            )
        if version < PG_SCHEMA_VERSION:
            conn.execute(DDL, prepare=False)
            conn.execute(
                "INSERT INTO master_meta (key, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (str(PG_SCHEMA_VERSION),),
            )
        # who may record whom as an actor (memory/postgres/identity.py)
        ensure_guard(conn)
    return PG_SCHEMA_VERSION
