"""A step commit on PostgreSQL is one round trip to the server, and loading a run is one:
counted by a loopback proxy between the store and the server, which counts the server's
``ReadyForQuery`` messages (one per answered round trip)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from master_sdk.memory.postgres import PostgresStore
from master_sdk.memory.store import ApprovalRecord, Changes, StepAttempt
from tests.contract.test_store_contract import TS, advance, event, start
from tests.support import postgres


class Counter:
    def __init__(self) -> None:
        self.ready = 0
        self.lock = threading.Lock()


def _pump(src: socket.socket, dst: socket.socket, counter: Counter | None) -> None:
    """Copy bytes; on the server's side, count ReadyForQuery ('Z') messages."""
    pending = b""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
            if counter is None:
                continue
            pending += data
            while len(pending) >= 5:
                kind, size = pending[:1], struct.unpack("!I", pending[1:5])[0]
                if len(pending) < 1 + size:
                    break
                if kind == b"Z":
                    with counter.lock:
                        counter.ready += 1
                pending = pending[1 + size :]
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@contextmanager
def proxy(url: str) -> Iterator[tuple[str, Counter]]:
    """A URL reaching ``url``'s server through a counting proxy (no TLS, no GSS, so every
    byte from the server is a typed protocol message)."""
    parts = urlsplit(url)
    counter = Counter()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection((parts.hostname, parts.port))
            for a, b, c in ((client, server, None), (server, client, counter)):
                threading.Thread(target=_pump, args=(a, b, c), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield (
            f"postgresql://{parts.username}@127.0.0.1:{port}{parts.path}"
            "?sslmode=disable&gssencmode=disable",
            counter,
        )
    finally:
        listener.close()


def test_a_step_commit_and_a_load_are_one_round_trip_each() -> None:
    """After a warm-up commit (trace name codes known), a commit holding a step, its trace
    events and an approval costs one round trip, with a commit hook too; a load costs one."""
    with proxy(postgres.fresh_url()) as (url, counter):
        store = PostgresStore(url, pool_size=2)
        try:
            run = start(store, events=2)
            step = StepAttempt(0, "echo", "tool", "completed", 1, TS, TS + 1, {"ok": True})

            def commit() -> int:
                before = counter.ready
                advance(
                    store,
                    run,
                    Changes(
                        steps={0: step},
                        events=[event(3, step_id="echo", step_type="tool", name="echo")],
                        approvals=[ApprovalRecord("echo", "approved", "ana", None, TS)],
                    ),
                )
                return counter.ready - before

            commit()  # warm: the name "echo" gets its code here
            assert commit() == 1

            class Hook:
                def before_commit(self, commit: object) -> None: ...

                def after_commit(self, commit: object) -> None: ...

            store.hooks.append(Hook())
            assert commit() == 1
            before = counter.ready
            loaded, steps = store.load(run.run_id)
            assert counter.ready - before == 1
            assert loaded.version == run.version and [s.step_id for s in steps] == ["echo"]
        finally:
            store.close()
