"""``None`` and ``bytes`` parameters skip sqlite3's adaptation search, and bind as before."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import master_sdk.memory.sqlite.connections  # noqa: F401  # registers the adapter


def test_none_binds_as_null_through_the_registered_adapter() -> None:
    assert (type(None), sqlite3.PrepareProtocol) in sqlite3.adapters
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a, b)")
    conn.execute("INSERT INTO t VALUES (?, ?)", (None, 1))
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(None, None), ("x", None)])
    rows = conn.execute("SELECT a, typeof(a), b, typeof(b) FROM t ORDER BY rowid").fetchall()
    assert rows == [
        (None, "null", 1, "integer"),
        (None, "null", None, "null"),
        ("x", "text", None, "null"),
    ]
    assert conn.execute("SELECT count(*) FROM t WHERE a IS ?", (None,)).fetchone() == (2,)


def test_bytes_bind_as_the_same_blob() -> None:
    assert (bytes, sqlite3.PrepareProtocol) in sqlite3.adapters
    conn = sqlite3.connect(":memory:")
    blob = bytes(range(256)) * 3
    assert conn.execute("SELECT ?, typeof(?), ?", (blob, b"", b"\x00")).fetchone() == (
        blob,
        "blob",
        b"\x00",
    )


def test_an_adapter_registered_before_is_left_alone() -> None:
    code = (
        "import sqlite3\n"
        "mine = lambda value: 'none'\n"
        "sqlite3.register_adapter(type(None), mine)\n"
        "import master_sdk.memory.sqlite.connections\n"
        "assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)] is mine\n"
        "conn = sqlite3.connect(':memory:')\n"
        "print(conn.execute('SELECT ?', (None,)).fetchone()[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "none"
