"""The exporter process: committed events in through a pipe, spans out over OTLP/HTTP.

``python -m master_sdk.tracing.otel.exporter CTRL_FD`` (or its equivalent with the
package's folder appended to the path) is started by :class:`~.process.ExportProcess` when a
workbench with telemetry opens. Its
standard input is the commit pipe: a configuration frame first (the settings and the
workbench's redaction, pickled: secrets never appear on the command line or in the
environment), then one frame per commit (:data:`HEAD`: the body's length and kind, then the
commit as ``marshal`` data — plain tuples — or, for values ``marshal`` cannot write,
``pickle``; or, from a store that encodes chunks, the commit's chunk bytes as the store
wrote them with the name codes not sent before, decoded here by ``memory/chunks.py``).
Spans are built and sent here by a :class:`~.pipeline.TelemetryPipeline`, so
the builder's CPU never competes with the runs for their process's interpreter lock.

``CTRL_FD`` is one end of a socket pair: the parent asks for counters (``S token``) or a
flush (``F token timeout``), or announces its close budget (``C token timeout``); every
answer is one line, ``token json``. ``R {}`` says the exporter is ready, ``E json`` why it
could not start or stopped. When the commit pipe ends — the parent closed it, or
the parent died, even by ``SIGKILL`` — the exporter sends what it holds within its budget
(the export timeout plus a second unless the parent said otherwise), writes its final
counters (``X json``) and exits: it is never left behind.
"""

from __future__ import annotations

import json
import marshal
import os
import pickle
import select
import signal
import socket
import struct
import sys
import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any, NamedTuple

from master_sdk.memory.chunks import EVENT, METRICS, NO_NAME, NO_TOKENS
from master_sdk.tracing.events import EVENTS, STATUSES, STEP_TYPES

if TYPE_CHECKING:
    from master_sdk.tracing.otel.pipeline import TelemetryPipeline

__all__ = [
    "CONFIG",
    "HEAD",
    "MARSHAL",
    "MARSHAL_CHUNK",
    "PICKLE",
    "PICKLE_CHUNK",
    "EventRow",
    "main",
]

HEAD = struct.Struct("<Ic")  # body length, kind
CONFIG, MARSHAL, PICKLE = b"C", b"M", b"P"
# a commit whose events come as the store's chunk (``memory/chunks.py``)
MARSHAL_CHUNK, PICKLE_CHUNK = b"K", b"Q"
_READ = 1 << 20
# the chunk records' codes as names (memory/chunks.py, tracing/events.py): a code a newer
# version wrote reads as unknown_<code> (event) or None (step type, status), as the store
# reads it
_EVENT_NAMES = [*EVENTS, *(f"unknown_{code}" for code in range(len(EVENTS), 256))]
_STEP_TYPE_NAMES = [*STEP_TYPES, *[None] * (256 - len(STEP_TYPES))]
_STATUS_NAMES = [*STATUSES, *[None] * (256 - len(STATUSES))]
_UNMEASURED = (None, None, None, None)
EVENT_SIZE, METRICS_SIZE = EVENT.size, METRICS.size
iter_events, iter_metrics = EVENT.iter_unpack, METRICS.iter_unpack
_READS = 4  # reads of at most _READ bytes per turn of the loop
_new = tuple.__new__


class EventRow(NamedTuple):
    """A trace event as the commit pipe carries it (the fields of
    ``memory.store.TraceEvent``, in order)."""

    seq: int
    ts_us: int
    event: str
    step_id: str | None
    step_type: str | None
    name: str | None
    status: str | None
    duration_ms: float | None
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None
    attrs: dict[str, Any] | None


class _Exporter:
    """The exporter's loop over the commit pipe and the control socket."""

    def __init__(self, pipeline: TelemetryPipeline, fd: int, ctrl: socket.socket) -> None:
        self.pipeline = pipeline
        self.fd = fd
        self.ctrl: socket.socket | None = ctrl
        self.buf = bytearray()
        self.requests = b""
        self.eof = False
        self.commits = 0
        self.events = 0
        self.decode_errors = 0
        # the store's trace name codes, as the frames taught them (0: no name)
        self.codes: dict[int, str | None] = {NO_NAME: None}
        self.budget = pipeline.settings.timeout_s + 1.0
        # commits gather in the pipe between reads: the runs' process never pays for a
        # wake-up of this one per commit, and spans still leave well within a flush interval
        self.delay = min(0.05, pipeline.settings.flush_interval_s / 2)

    def loop(self) -> int:
        os.set_blocking(self.fd, False)
        while not self.eof:
            watch: list[Any] = [self.fd] if self.ctrl is None else [self.fd, self.ctrl]
            ready = select.select(watch, [], [])[0]
            if self.ctrl is not None and self.ctrl in ready:
                self.answer()
            if self.fd in ready:
                self.drain()
            if self.eof:
                break
            if self.ctrl is None:
                time.sleep(self.delay)
            elif select.select([self.ctrl], [], [], self.delay)[0]:
                self.answer()
        self.pipeline.close(self.budget)
        self.say("X", self.status())
        return 0

    # ------------------------------------------------------------------ commits

    def drain(self) -> None:
        """Read the commits waiting in the pipe (a few MiB at most, so that a writer faster
        than this never keeps requests unanswered) and hand them to the pipeline."""
        for _ in range(_READS):
            try:
                chunk = os.read(self.fd, _READ)
            except BlockingIOError:
                break
            if not chunk:
                self.eof = True
                break
            self.buf += chunk
        self.parse()

    def parse(self) -> None:
        buf = self.buf
        size_all = len(buf)
        pos = 0
        submit = self.pipeline.submit
        from master_sdk.tracing.otel.spans import RunInfo, StepRows

        with memoryview(buf) as view:
            while size_all - pos >= HEAD.size:
                size, kind = HEAD.unpack_from(buf, pos)
                end = pos + HEAD.size + size
                if end > size_all:
                    break
                body = view[pos + HEAD.size : end]
                pos = end
                try:
                    # frames written by our own parent process
                    if kind == MARSHAL:
                        run, status, events, steps = marshal.loads(body)  # noqa: S302  # see above
                        rows = [_new(EventRow, event) for event in events]
                    elif kind == PICKLE:
                        run, status, events, steps = pickle.loads(body)  # noqa: S301  # see above
                        rows = [_new(EventRow, event) for event in events]
                    else:
                        item = (
                            marshal.loads(body)  # noqa: S302  # see above
                            if kind == MARSHAL_CHUNK
                            else pickle.loads(body)  # noqa: S301  # see above
                        )
                        run, status, data, metrics, attrs, new, steps = item
                        rows = self.unchunk(data, metrics, attrs, new)
                    self.commits += 1
                    self.events += len(rows)
                    head: tuple[Any, ...] = (*run[:3], status, *run[3:])
                    info = RunInfo(*head)  # inputs and output default to None
                    submit(info, rows, StepRows(steps) if steps else None)
                except Exception as exc:  # a frame we cannot read must not stop the rest
                    self.decode_errors += 1
                    self.pipeline.record_error(f"reading a commit: {type(exc).__name__}: {exc}")
                del body
        del buf[:pos]

    def unchunk(
        self,
        data: bytes,
        metrics: bytes | None,
        attrs: str | None,
        new: tuple[bool, tuple[tuple[str, int], ...]] | None,
    ) -> list[EventRow]:
        """A commit's events from the store's chunk (the records of ``memory/chunks.py``,
        read as :func:`~master_sdk.memory.chunks.unpack` reads them, in one pass), with the
        name codes the frame brought learnt first.

        Raises:
            ValueError: the chunk is not whole records, or names a code never sent.
        """
        if new is not None:
            replace, pairs = new
            if replace:
                self.codes = {NO_NAME: None}
            self.codes.update((code, name) for name, code in pairs)
        if len(data) % EVENT_SIZE or (metrics is not None and len(metrics) % METRICS_SIZE):
            raise ValueError("a trace chunk that is not whole records")
        values = None if attrs is None else json.loads(attrs)
        measured = {}
        if metrics is not None:
            for i, dur, cost, t_in, t_out in iter_metrics(metrics):
                measured[i] = (
                    None if dur != dur else dur,  # NaN: none
                    None if cost != cost else cost,
                    None if t_in == NO_TOKENS else t_in,
                    None if t_out == NO_TOKENS else t_out,
                )
        codes = self.codes
        rows = []
        for i, (ts, seq, step_id, name, event, step_type, status) in enumerate(iter_events(data)):
            dur, cost, t_in, t_out = measured.get(i, _UNMEASURED)
            rows.append(
                _new(
                    EventRow,
                    (
                        seq,
                        ts,
                        _EVENT_NAMES[event],
                        codes[step_id],
                        _STEP_TYPE_NAMES[step_type],
                        codes[name],
                        _STATUS_NAMES[status],
                        dur,
                        t_in,
                        t_out,
                        cost,
                        None if values is None else values[i],
                    ),
                )
            )
        return rows

    # ------------------------------------------------------------------ control

    def answer(self) -> None:
        """Answer the parent's requests waiting on the control socket."""
        if self.ctrl is None:
            return
        try:
            data = self.ctrl.recv(65536)
        except OSError:
            data = b""
        if not data:  # the parent is gone; the commit pipe ends too
            self.ctrl.close()
            self.ctrl = None
            return
        self.requests += data
        *lines, self.requests = self.requests.split(b"\n")
        for line in lines:
            kind, token, arg = [*line.decode("ascii").split(" "), "", ""][:3]
            if kind == "S":
                self.say(token, self.status())
            elif kind == "F":
                self.drain()
                flushed = self.pipeline.flush(float(arg))
                self.say(token, {**self.status(), "flushed": flushed})
            elif kind == "C":
                self.budget = float(arg)

    def status(self) -> dict[str, Any]:
        status = self.pipeline.status()
        status["build_errors"] += self.decode_errors
        status["commits_received"] = self.commits
        status["events_received"] = self.events
        return status

    def say(self, token: str, payload: dict[str, Any]) -> None:
        if self.ctrl is None:
            return
        try:
            self.ctrl.sendall(f"{token} {json.dumps(payload)}\n".encode())
        except OSError:
            self.ctrl = None


def _read_frame(fd: int) -> tuple[bytes, bytes]:
    """One whole frame, blocking (the configuration, before anything else)."""
    head = _read_exactly(fd, HEAD.size)
    size, kind = HEAD.unpack(head)
    return kind, _read_exactly(fd, size)


def _read_exactly(fd: int, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = os.read(fd, size - len(out))
        if not chunk:
            raise EOFError("the commit pipe ended before the configuration")
        out += chunk
    return bytes(out)


def main(argv: list[str] | None = None) -> int:
    """Serve the commit pipe on standard input (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    # the kernel's interrupt (sent to its process group by some front ends) is not ours
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctrl = socket.socket(fileno=int(args[0]))
    fd = sys.stdin.fileno()
    try:
        kind, body = _read_frame(fd)
        if kind != CONFIG:
            raise ValueError(f"expected the configuration frame, got {kind!r}")
        config = pickle.loads(body)  # noqa: S301  # written by our own parent
        from master_sdk.tracing.otel.pipeline import TelemetryPipeline

        pipeline = TelemetryPipeline(
            config["settings"], scrub=config["scrub"], sdk_export=config.get("sdk_export", False)
        )
    except Exception as exc:
        message = str(exc) if exc.__class__.__name__ == "ConfigError" else repr(exc)
        _fail(ctrl, f"the exporter process could not start: {message}")
        return 1
    with suppress(OSError):
        ctrl.sendall(b"R {}\n")  # ready: the runs' process may stop waiting
    try:
        return _Exporter(pipeline, fd, ctrl).loop()
    except Exception as exc:  # a bug: the runs' process says so in its status
        _fail(ctrl, f"the exporter process failed: {type(exc).__name__}: {exc}")
        return 1


def _fail(ctrl: socket.socket, message: str) -> None:
    with suppress(OSError):
        ctrl.sendall(f"E {json.dumps({'error': message})}\n".encode())


if __name__ == "__main__":
    raise SystemExit(main())
