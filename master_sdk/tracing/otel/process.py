"""The runs' side of live export: commits to the exporter process, never in a run's way.

Spans are built and sent in a separate process (:mod:`.exporter`), not in a thread of the
runs' own: Python code on another thread of the same process holds the interpreter lock
while it works, and a run waiting for it after every SQLite call or fsync pays for the
builder's CPU as if it were its own. What stays on the run's thread is one ``os.write``
of the commit's frame (a few hundred bytes of ``marshal`` data) to a non-blocking pipe.

The process starts when the workbench opens, so that its start-up (an interpreter
importing OpenTelemetry) overlaps what happens before the first run. The pipe holds about
``max_queue`` commits; when it is full, frames wait in a local buffer of at most
``max_queue`` more; beyond it, or when the exporter is gone (it could not start, or it
crashed), a commit is dropped and counted: a run never waits, and never fails, for
telemetry. :meth:`ExportProcess.status` adds these counters to the exporter's own.
:meth:`ExportProcess.close` closes the pipe; the exporter sends what it holds within the
budget and exits. A parent that dies without closing (killed) closes the pipe all the same:
the exporter sends what it received and exits, so spans of every committed event still
arrive.
"""

from __future__ import annotations

import atexit
import json
import os
import pickle
import select
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from master_sdk.tracing.otel.exporter import CONFIG, HEAD

if TYPE_CHECKING:
    from master_sdk.config.telemetry import TelemetrySettings

__all__ = ["ExportProcess"]

# the pipe holds about max_queue commits (a few hundred bytes each), up to 1 MiB (Linux's
# default /proc/sys/fs/pipe-max-size); at least a page
_PIPE_MAX, _PIPE_MIN, _COMMIT_BYTES = 1 << 20, 4096, 256
_STATUS_WAIT_S = 1.0
_READY_WAIT_S = 10.0
# ``python -m master_sdk.tracing.otel.exporter``, with the folder holding this package
# appended to the path: found where the runs' process found it (a source tree added at run
# time included), never ahead of the standard library or what is installed
_RUN_EXPORTER = (
    "import sys; sys.path.append(sys.argv[2]); "
    "from master_sdk.tracing.otel.exporter import main; raise SystemExit(main(sys.argv[1:2]))"
)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])
_ERROR, _EXIT = "E", "X"  # the exporter's own lines: it could not start; its last counters
_COUNTERS = (
    "exported",
    "queued",
    "pending_commits",
    "dropped_queue_full",
    "dropped_export_failed",
    "dropped_commits",
    "failed_requests",
    "build_errors",
)


class ExportProcess:
    """Feeds committed events to the exporter process (see the module docstring).

    Args:
        settings: the telemetry settings (endpoint, headers, sampling, limits).
        scrub: the workbench's redaction; the exporter applies it to every free text in a
            span (it is sent to the exporter with the settings, through the pipe).
        sdk_export: the exporter sends span records through the SDK's public
            ``export()`` rather than encoded bytes.
    """

    def __init__(
        self,
        settings: TelemetrySettings,
        *,
        scrub: Callable[[Any], Any],
        sdk_export: bool = False,
    ) -> None:
        self.settings = settings
        self._scrub = scrub
        self._sdk_export = sdk_export
        self._fd = -1
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctrl: socket.socket | None = None
        self._lock = threading.Lock()  # the pipe: one frame at a time, in order
        self._ctrl_lock = threading.Lock()  # the control socket: one request at a time
        self._pending: deque[bytes] = deque()  # frames the full pipe could not take yet
        self._pending_events: deque[int] = deque()
        self._started = False
        self._closed = False
        self._failed: str | None = None  # why there is no exporter
        self._token = 0
        self._replies = b""
        self._last: dict[str, Any] = {}  # the exporter's latest counters
        self._final = False
        self.written_commits = 0
        self.written_events = 0
        self.dropped_commits = 0
        self.dropped_events = 0

    def start(self, wait_s: float = _READY_WAIT_S) -> None:
        """Start the exporter now rather than with the first commit, and wait (at most
        ``wait_s``) until it is ready to send: spans of the first runs then leave at once,
        as they would from a thread. A failure to start is kept for :meth:`status`, never
        raised; an exporter slower than ``wait_s`` to start reads the pipe when it is ready.
        """
        with self._lock:
            if self._started or self._closed or self._start() < 0:
                return
        with self._ctrl_lock:
            self._line(time.monotonic() + wait_s)  # "R": ready, or "E": why not

    # ------------------------------------------------------------------ the commit path

    def write(self, frame: bytes, events: int) -> bool:
        """Hand one commit's frame (``events`` trace events) to the exporter; never
        blocks, never raises: a commit that finds no room is dropped and counted (False)."""
        with self._lock:
            fd = self._fd
            if fd < 0:
                if self._started or self._closed:
                    self._drop(events)
                    return False
                fd = self._start()
                if fd < 0:
                    self._drop(events)
                    return False
            if self._pending:
                kept = self._queue(frame, events)
                self._write_pending()
                return kept
            try:
                written = os.write(fd, frame)
            except BlockingIOError:
                written = 0
            except OSError as exc:  # the exporter is gone
                self._lost(f"the exporter process stopped reading: {exc}")
                self._drop(events)
                return False
            if written == 0:  # the pipe is full: the frame waits here, if there is room
                return self._queue(frame, events)
            self.written_commits += 1
            self.written_events += events
            if written < len(frame):
                # the rest of a frame must follow it, whatever the buffer's bound
                self._pending.append(frame[written:])
                self._pending_events.append(0)
            return True

    def _queue(self, frame: bytes, events: int) -> bool:
        if len(self._pending) >= self.settings.max_queue:
            self._drop(events)
            return False
        self._pending.append(frame)
        self._pending_events.append(events)
        self.written_commits += 1
        self.written_events += events
        return True

    def _write_pending(self) -> bool:
        """Write what the pipe takes of the waiting frames (lock held); True when none waits."""
        pending = self._pending
        while pending:
            frame = pending[0]
            try:
                written = os.write(self._fd, frame)
            except BlockingIOError:
                return False
            except OSError as exc:
                self._lost(f"the exporter process stopped reading: {exc}")
                return False
            if written < len(frame):
                pending[0] = frame[written:]
                self._pending_events[0] = 0
                return False
            pending.popleft()
            self._pending_events.popleft()
        return True

    def drop(self, events: int) -> None:
        """Count a commit of ``events`` trace events that could not be written."""
        with self._lock:
            self._drop(events)

    def _drop(self, events: int) -> None:
        self.dropped_commits += 1
        self.dropped_events += events

    def _lost(self, why: str) -> None:
        """The exporter is gone: what waits here will never be read (lock held)."""
        if self._failed is None:
            code = self._proc.poll() if self._proc is not None else None
            self._failed = why if code is None else f"{why} (exit code {code})"
        self._give_up_pending()

    def _give_up_pending(self) -> None:
        """What waits here will never be read: count it as dropped (it was counted as
        written) and close the pipe (lock held)."""
        while self._pending:
            self._pending.popleft()
            events = self._pending_events.popleft()
            if events:
                self.written_commits -= 1
                self.written_events -= events
                self._drop(events)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # ------------------------------------------------------------------ the process

    def _start(self) -> int:
        """Start the exporter (lock held); the pipe's write end, or -1 with the reason
        kept for :meth:`status`."""
        self._started = True
        read_end = write_end = -1
        mine = theirs = None
        try:
            config = pickle.dumps(
                {"settings": self.settings, "scrub": self._scrub, "sdk_export": self._sdk_export}
            )
            read_end, write_end = os.pipe()
            _grow(write_end, self.settings.max_queue * _COMMIT_BYTES)
            mine, theirs = socket.socketpair()
            self._proc = subprocess.Popen(  # noqa: S603  # our own module, no shell
                [sys.executable, "-c", _RUN_EXPORTER, str(theirs.fileno()), _PACKAGE_ROOT],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # a kernel interrupt to its group is not for it
            )
            os.close(read_end)
            read_end = -1
            theirs.close()
            _write_all(write_end, HEAD.pack(len(config), CONFIG) + config)
            os.set_blocking(write_end, False)
        except Exception as exc:  # no exporter: runs go on, commits are dropped and counted
            self._failed = f"the exporter process could not start: {type(exc).__name__}: {exc}"
            for fd in (read_end, write_end):
                if fd >= 0:
                    os.close(fd)
            for sock in (mine, theirs):
                if sock is not None:
                    sock.close()
            return -1
        self._fd = write_end
        self._ctrl = mine
        ref = weakref.ref(self)
        # a kernel or script that ends without wb.close() still sends what waits
        atexit.register(_close_at_exit, ref)
        # a fork (multiprocessing) must not hold the pipe open, nor write into it
        os.register_at_fork(after_in_child=lambda: _forget_in_child(ref))
        return write_end

    def _request(self, kind: str, arg: str, deadline: float) -> dict[str, Any] | None:
        """Ask the exporter; its answer, or None (gone, or no answer by ``deadline``)."""
        with self._ctrl_lock:
            if self._ctrl is None:
                return None
            self._token += 1
            token = str(self._token)
            try:
                self._ctrl.sendall(f"{kind} {token} {arg}\n".encode("ascii"))
            except OSError:
                return None
            if kind == "C":
                return {}
            while True:
                line = self._line(deadline)
                if line is None:
                    return None
                if line[0] == token:
                    return line[1]

    def _line(self, deadline: float) -> tuple[str, dict[str, Any]] | None:
        """The next answer (ctrl lock held); exit and error lines are kept as they pass."""
        while b"\n" not in self._replies:
            if self._ctrl is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._ctrl.settimeout(left)
            try:
                data = self._ctrl.recv(65536)
            except (TimeoutError, OSError):
                return None
            if not data:
                self._exited()
                return None
            self._replies += data
        line, self._replies = self._replies.split(b"\n", 1)
        token, _, text = line.decode().partition(" ")
        payload = json.loads(text)
        if token == _ERROR:
            self._failed = str(payload.get("error"))
        else:
            self._last = payload
            self._final = token == _EXIT
        return token, payload

    def _exited(self) -> None:
        if self._failed is None and not self._closed:
            code = self._proc.poll() if self._proc is not None else None
            self._failed = f"the exporter process exited (exit code {code})"
        if self._ctrl is not None:
            self._ctrl.close()
            self._ctrl = None

    # ------------------------------------------------------------------ control

    def flush(self, timeout_s: float | None = None) -> bool:
        """Have the exporter send everything written so far; wait at most ``timeout_s``
        (default: the export timeout plus a second). True when nothing is left waiting."""
        if not self._started:
            return True
        wait = timeout_s if timeout_s is not None else self.settings.timeout_s + 1.0
        deadline = time.monotonic() + wait
        if not self._drain_pending(deadline):
            return False
        reply = self._request("F", f"{max(deadline - time.monotonic(), 0.0):.3f}", deadline + 0.5)
        return bool(reply and reply.get("flushed"))

    def _drain_pending(self, deadline: float) -> bool:
        while True:
            with self._lock:
                if self._fd < 0:
                    return not self._pending
                if self._write_pending():
                    return True
                fd = self._fd
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([], [fd], [], min(left, 0.05))

    def close(self, timeout_s: float | None = None) -> None:
        """Close the pipe: the exporter sends what it holds within ``timeout_s`` (default:
        the export timeout plus a second), reports its final counters and exits. What is
        not sent by then is dropped, and counted."""
        if self._closed:
            return
        budget = timeout_s if timeout_s is not None else self.settings.timeout_s + 1.0
        deadline = time.monotonic() + budget
        if not self._started:
            self._closed = True
            return
        self._drain_pending(deadline)
        self._request("C", f"{max(deadline - time.monotonic(), 0.05):.3f}", deadline)
        with self._lock:
            self._closed = True
            self._give_up_pending()  # what the exporter could not take in time
        with self._ctrl_lock:
            # nothing was ever written: nothing to wait for (the exporter ends on the EOF)
            while self._ctrl is not None and not self._final and self.written_commits:
                if self._line(deadline + 0.5) is None:
                    break
            if self._ctrl is not None:
                self._ctrl.close()
                self._ctrl = None
        if self._proc is not None and self.written_commits:
            # past this it ends on its own, once its budget is spent
            with suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=max(deadline + 0.5 - time.monotonic(), 0.05))

    def status(self) -> dict[str, Any]:
        """Counters: the exporter's (exported, queued, dropped and why) plus the commits
        dropped here, and the exporter process's state."""
        if self._started and not self._closed:
            self._request("S", "", time.monotonic() + _STATUS_WAIT_S)
        last = self._last
        out: dict[str, Any] = {
            "enabled": True,
            "endpoint": self.settings.endpoint,
            "service_name": self.settings.service_name,
            "semconv": self.settings.semconv,
            "sample_ratio": self.settings.sample_ratio,
        }
        for key in _COUNTERS:
            out[key] = int(last.get(key, 0))
        with self._lock:
            # written (or waiting here for room in the pipe) but not read yet: on the way,
            # unless the exporter is gone — then lost
            gone = self._failed is not None or self._final
            commits = self.written_commits - int(last.get("commits_received", 0))
            events = self.written_events - int(last.get("events_received", 0))
            out["dropped_commits"] += self.dropped_commits + (commits if gone else 0)
            out["dropped_queue_full"] += self.dropped_events + (events if gone else 0)
            if not gone:
                out["pending_commits"] += commits
        out["dropped"] = out["dropped_queue_full"] + out["dropped_export_failed"]
        out["last_error"] = self._failed or last.get("last_error")
        out["last_error_at"] = None if self._failed else last.get("last_error_at")
        out["exporter_pid"] = self._proc.pid if self._proc is not None else None
        out["exporter"] = self._state()
        return out

    def _state(self) -> str:
        if not self._started:
            return "not started"
        if self._failed is not None:
            return "gone"
        if self._closed:
            return "closed"
        return "running"


def _grow(fd: int, size: int) -> None:
    """Size the pipe for about ``size`` bytes of commits (the default is 64 KiB), where the
    system allows."""
    import fcntl

    size_flag = getattr(fcntl, "F_SETPIPE_SZ", None)
    if size_flag is None:
        return
    with suppress(OSError):  # a lower system limit: the default size works, less slack
        fcntl.fcntl(fd, size_flag, min(max(size, _PIPE_MIN), _PIPE_MAX))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _close_at_exit(ref: weakref.ref[ExportProcess]) -> None:
    exporter = ref()
    if exporter is not None:
        exporter.close()


def _forget_in_child(ref: weakref.ref[ExportProcess]) -> None:
    """In a forked copy of the process: let go of the parent's exporter."""
    exporter = ref()
    if exporter is None:
        return
    if exporter._fd >= 0:
        os.close(exporter._fd)
    if exporter._ctrl is not None:
        exporter._ctrl.close()
    exporter._fd = -1
    exporter._ctrl = None
    exporter._proc = None
    exporter._failed = "a forked process does not export (its parent's exporter stays its parent's)"
    exporter._lock = threading.Lock()
    exporter._ctrl_lock = threading.Lock()
    # what the parent wrote and dropped is the parent's to count
    exporter._pending.clear()
    exporter._pending_events.clear()
    exporter._last = {}
    exporter.written_commits = exporter.written_events = 0
    exporter.dropped_commits = exporter.dropped_events = 0
