"""A TCP relay on a loopback port for the tests: forwards every connection to a target
port, and :meth:`Relay.cut` drops all of them at once (both sockets shut and closed), as a
pooler, load balancer or firewall dropping idle connections does. New connections are
relayed as before. An ``observe`` callback sees every chunk relayed, to count what crosses
(round trips, protocol messages)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType

# observe(connection number, whether the chunk came from the client, the chunk)
Observer = Callable[[int, bool, bytes], None]


class Relay:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target``."""

    def __init__(self, target: int, observe: Observer | None = None) -> None:
        self.target = target
        self.observe = observe
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.accepted = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="relay-accept").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._open += [client, upstream]
                self.accepted += 1
                number = self.accepted
            for a, b, from_client in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(a, b, number, from_client), daemon=True
                ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, number: int, from_client: bool
    ) -> None:
        observe = self.observe
        try:
            while data := source.recv(65536):
                if observe is not None:
                    observe(number, from_client, data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> int:
        """Drop every relayed connection; returns how many there were."""
        with self._lock:
            cut, self._open = self._open, []
        for sock in cut:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        return len(cut) // 2

    def close(self) -> None:
        self._listener.close()
        self.cut()

    def __enter__(self) -> Relay:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

