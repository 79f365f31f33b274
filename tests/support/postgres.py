"""A throwaway PostgreSQL server for the tests: ``initdb`` into a temporary folder, started
with ``pg_ctl`` on a free loopback port (its unix socket in the same folder), one fresh
database per store, stopped at the end of the session.

Started once per test process, on first use (``server()``). As root the cluster belongs
to the ``postgres`` OS user (PostgreSQL refuses to run as root); the user is created when
missing. When the server cannot be started, :func:`server` raises :class:`Unavailable`
with the reason, so every test needing it fails, saying why; none is skipped.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path


class Unavailable(RuntimeError):
    """The test server could not be started (the message says why and what to do)."""


@dataclass
class Server:
    folder: Path
    port: int
    user: str | None  # the OS user owning the cluster (None: this process's user)
    pg_bin: Path

    @property
    def base_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def url(self, database: str = "postgres") -> str:
        return f"{self.base_url}/{database}"

    def fresh_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        _run(
            self,
            [
                str(self.pg_bin / "pg_ctl"),
                "-D",
                str(self.folder / "data"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            check=False,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


_lock = threading.Lock()
_server: Server | None = None
_failure: str | None = None


def _pg_bin() -> Path:
    given = os.environ.get("PG_BIN")
    candidates = [given] if given else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).resolve().parent))
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    raise Unavailable(
        "PostgreSQL binaries (initdb, pg_ctl) not found; run scripts/ensure-postgres "
        "(installs Debian's postgresql as root) or set PG_BIN to their folder"
    )


def _run(
    server: Server, argv: list[str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    if server.user is not None:
        argv = ["runuser", "-u", server.user, "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise Unavailable(
            f"{' '.join(argv)} failed ({done.returncode}): {done.stderr or done.stdout}"
        )
    return done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start() -> Server:
    pg_bin = _pg_bin()
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        user = "postgres"
    folder = Path(tempfile.mkdtemp(prefix="master-pg-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    server = Server(folder, 0, user, pg_bin)
    data = folder / "data"
    _run(
        server,
        [
            str(pg_bin / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ],
    )
    # the role "ana" signs in with a password over TCP (the password_ref tests); every
    # other role is trusted on loopback
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "host all ana 127.0.0.1/32 scram-sha-256\n"
        "host all all 127.0.0.1/32 trust\n"
    )
    for attempt in range(5):
        server.port = _free_port()
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={server.port} "
            f"-c unix_socket_directories={folder} -c fsync=off -c max_connections=200"
        )
        done = _run(
            server,
            [
                str(pg_bin / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(folder / "log"),
                "-o",
                opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
            check=False,
        )
        if done.returncode == 0:
            return server
        if attempt == 4:
            log = (
                (folder / "log").read_text(errors="replace")[-2000:]
                if (folder / "log").exists()
                else ""
            )
            shutil.rmtree(folder, ignore_errors=True)
            raise Unavailable(f"pg_ctl start failed: {done.stderr}\n{log}")
    raise AssertionError("unreachable")


def server() -> Server:
    """The session's server, started on first use (raises :class:`Unavailable`)."""
    global _server, _failure
    with _lock:
        if _server is None:
            if _failure is not None:
                raise Unavailable(_failure)
            try:
                _server = _start()
            except (Unavailable, OSError, subprocess.SubprocessError) as exc:
                _failure = f"the test PostgreSQL server could not be started: {exc}"
                raise Unavailable(_failure) from exc
        return _server


def stop() -> None:
    """Stop the server if it was started."""
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None


def fresh_url() -> str:
    """A URL of a new empty database on the session's server."""
    return server().fresh_database()
