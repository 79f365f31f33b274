"""A throwaway PostgreSQL server for the tests: ``initdb`` into a temporary folder, started
with ``pg_ctl`` on a free loopback port (its unix socket in the same folder), one fresh
database per store, stopped at the end of the session.

Started once per test process, on first use (``server()``). As root the cluster belongs
to the ``postgres`` OS user (PostgreSQL refuses to run as root); the user is created when
missing. When the server cannot be started, :func:`server` raises :class:`Unavailable`
with the reason, so every test needing it fails, saying why; none is skipped.

Two more, also started on first use and stopped at the end: :func:`ssl_server`, a second
cluster with ``ssl=on`` and a self-signed certificate made by the ``openssl`` command in its
folder (``hostssl`` only: a connection without TLS is refused), and :func:`bouncer`, Debian's
PgBouncer in ``pool_mode = transaction`` on its own loopback port in front of
:func:`server` (``scripts/ensure-postgres`` installs it).
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
import time
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
    ssl: bool = False

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


def _self_signed(server: Server) -> None:
    """A key and a self-signed certificate for 127.0.0.1 in the data folder (``openssl``)."""
    data = server.folder / "data"
    openssl = shutil.which("openssl")
    if openssl is None:
        raise Unavailable("the SSL test server needs the openssl command (apt-get install openssl)")
    _run(
        server,
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-keyout", str(data / "server.key"),
            "-out", str(data / "server.crt"),
        ],
    )  # fmt: skip
    _run(server, ["chmod", "600", str(data / "server.key")])  # the server insists


def _start(*, ssl: bool = False) -> Server:
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
    server = Server(folder, 0, user, pg_bin, ssl)
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
        if not ssl
        # TLS or nothing: a client that does not ask for it is refused
        else "local all all trust\nhostssl all all 127.0.0.1/32 trust\n"
    )
    if ssl:
        _self_signed(server)
    for attempt in range(5):
        server.port = _free_port()
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={server.port} "
            f"-c unix_socket_directories={folder} -c fsync=off -c max_connections=200"
        )
        if ssl:
            opts += " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
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
    """Stop the servers (and PgBouncer) that were started."""
    global _server, _ssl_server, _bouncer
    with _lock:
        if _bouncer is not None:
            _bouncer.stop()
            _bouncer = None
        if _server is not None:
            _server.stop()
            _server = None
        if _ssl_server is not None:
            _ssl_server.stop()
            _ssl_server = None


def fresh_url() -> str:
    """A URL of a new empty database on the session's server."""
    return server().fresh_database()


# --------------------------------------------------------------------------- SSL

_ssl_server: Server | None = None
_ssl_failure: str | None = None


def ssl_server() -> Server:
    """A second server of the session, TLS only (``ssl=on``, a self-signed certificate,
    ``hostssl`` in ``pg_hba.conf``), started on first use (raises :class:`Unavailable`)."""
    global _ssl_server, _ssl_failure
    with _lock:
        if _ssl_server is None:
            if _ssl_failure is not None:
                raise Unavailable(_ssl_failure)
            try:
                _ssl_server = _start(ssl=True)
            except (Unavailable, OSError, subprocess.SubprocessError) as exc:
                _ssl_failure = f"the SSL test PostgreSQL server could not be started: {exc}"
                raise Unavailable(_ssl_failure) from exc
        return _ssl_server


# --------------------------------------------------------------------------- PgBouncer


@dataclass
class Bouncer:
    """PgBouncer in transaction-pooling mode in front of ``server``."""

    folder: Path
    port: int
    server: Server
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def fresh_url(self) -> str:
        """A new empty database on the server; its URL through PgBouncer."""
        return self.url(self.server.fresh_database().rsplit("/", 1)[1])

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


_bouncer: Bouncer | None = None
_bouncer_failure: str | None = None

# every server connection is handed back to the pool when its transaction ends; statements
# are never tracked (PgBouncer 1.18 has no max_prepared_statements)
_BOUNCER_INI = """\
[databases]
* = host=127.0.0.1 port={server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder}/users.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
logfile = {folder}/pgbouncer.log
log_connections = 0
log_disconnections = 0
"""


def _pgbouncer() -> str:
    found = os.environ.get("PGBOUNCER") or shutil.which("pgbouncer")
    if found is None and Path("/usr/sbin/pgbouncer").exists():
        found = "/usr/sbin/pgbouncer"
    if found is None:
        raise Unavailable(
            "pgbouncer not found; run scripts/ensure-postgres (installs Debian's pgbouncer "
            "as root) or set PGBOUNCER to its path"
        )
    return found


def _start_bouncer(server: Server) -> Bouncer:
    import psycopg

    program = _pgbouncer()
    folder = Path(tempfile.mkdtemp(prefix="master-pgbouncer-"))
    ids: dict[str, int] = {}
    if server.user is not None:  # PgBouncer refuses to run as root
        entry = pwd.getpwnam(server.user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        ids = {"user": entry.pw_uid, "group": entry.pw_gid}
    (folder / "users.txt").write_text('"postgres" ""\n')
    last = ""
    for _attempt in range(5):
        port = _free_port()
        ini = folder / "pgbouncer.ini"
        ini.write_text(_BOUNCER_INI.format(server_port=server.port, port=port, folder=folder))
        process = subprocess.Popen(
            [program, str(ini)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **ids,  # type: ignore[arg-type]  # user= and group= of subprocess.Popen
        )
        bouncer = Bouncer(folder, port, server, process)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with psycopg.connect(bouncer.url(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return bouncer
            except psycopg.OperationalError as exc:
                last = str(exc)
                time.sleep(0.05)
        err = b""
        if process.poll() is None:
            process.kill()
        _, err = process.communicate(timeout=10)
        last = f"{last} {err.decode(errors='replace')} {bouncer.log()}"
    shutil.rmtree(folder, ignore_errors=True)
    raise Unavailable(f"pgbouncer did not start: {last.strip()}")


def bouncer() -> Bouncer:
    """PgBouncer (transaction pooling) in front of the session's server, started on first
    use (raises :class:`Unavailable`)."""
    global _bouncer, _bouncer_failure
    target = server()
    with _lock:
        if _bouncer is None:
            if _bouncer_failure is not None:
                raise Unavailable(_bouncer_failure)
            try:
                _bouncer = _start_bouncer(target)
            except (Unavailable, OSError, subprocess.SubprocessError) as exc:
                _bouncer_failure = f"PgBouncer could not be started for the tests: {exc}"
                raise Unavailable(_bouncer_failure) from exc
        return _bouncer
