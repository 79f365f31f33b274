"""A step commit on PostgreSQL is one round trip to the server, and loading a run is one:
counted by a loopback proxy between the store and the server, which counts the server's
``ReadyForQuery`` messages (one per answered round trip)."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from master_sdk.memory.postgres import PostgresStore
from master_sdk.memory.store import ApprovalRecord, Changes, StepAttempt
from tests.contract.test_store_contract import TS, advance, event, start
from tests.support import postgres
from tests.support.relay import Relay


class Counter:
    """Counts the server's ReadyForQuery ('Z') messages, parsed per connection."""

    def __init__(self) -> None:
        self.ready = 0
        self.lock = threading.Lock()
        self._pending: dict[int, bytes] = {}

    def observe(self, number: int, from_client: bool, data: bytes) -> None:
        if from_client:
            return
        pending = self._pending.get(number, b"") + data
        while len(pending) >= 5:
            kind, size = pending[:1], struct.unpack("!I", pending[1:5])[0]
            if len(pending) < 1 + size:
                break
            if kind == b"Z":
                with self.lock:
                    self.ready += 1
            pending = pending[1 + size :]
        self._pending[number] = pending


@contextmanager
def proxy(url: str) -> Iterator[tuple[str, Counter]]:
    """A URL reaching ``url``'s server through a counting relay (no TLS, no GSS, so every
    byte from the server is a typed protocol message)."""
    parts = urlsplit(url)
    counter = Counter()
    with Relay(int(parts.port or 5432), observe=counter.observe) as relay:
        yield (
            f"postgresql://{parts.username}@127.0.0.1:{relay.port}{parts.path}"
            "?sslmode=disable&gssencmode=disable",
            counter,
        )


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
