"""Live export: committed events in, spans out, inside the exporter process.

The exporter process (:mod:`.exporter`) reads commits from the runs' process and hands
each to :meth:`TelemetryPipeline.submit`, which puts it on a bounded queue without waiting.
Two daemon threads do the rest — one writes spans straight as OTLP bytes (:mod:`.direct`),
one joins them into requests and sends them — so a collector that is down, slow or
answering 503 only ever delays the sending thread. Spans wait in a buffer of at most
``max_queue``; beyond it, and when an export fails after its ``timeout_s`` budget, they
are dropped and counted (:meth:`TelemetryPipeline.status`). Nothing is retried outside
that budget.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from master_sdk.tracing.otel import ids
from master_sdk.tracing.otel.sender import SpanSender, quiet_in_thread
from master_sdk.tracing.otel.spans import RunInfo, SpanBuilder, SpanTree, StepRows

if TYPE_CHECKING:
    from master_sdk.config.telemetry import TelemetrySettings

__all__ = ["TelemetryPipeline"]


# one commit: the run as of it, its events, its step attempts' (step_id, attempt,
# started_us[, output]); plain tuples, made on the run's thread
_Commit = tuple[RunInfo, Sequence[Any], StepRows | None]


class TelemetryPipeline:
    """Builds and exports spans for committed events in the background.

    Args:
        settings: the telemetry settings (endpoint, headers, sampling, limits).
        scrub: the workbench's redaction, applied to every free text in a span.
        sdk_export: send span records through the SDK's public ``export()`` even where
            the exporter's HTTP client takes encoded spans (the two paths are compared in
            the tests).

    Raises:
        ConfigError: the ``otel`` extra is missing.
    """

    def __init__(
        self,
        settings: TelemetrySettings,
        *,
        scrub: Callable[[Any], Any],
        sdk_export: bool = False,
    ) -> None:
        self.settings = settings
        self.sender = SpanSender(
            settings.endpoint,
            headers=settings.all_headers(),
            service_name=settings.service_name,
            timeout_s=settings.timeout_s,
        )
        if sdk_export:
            self.sender.use_public_export()
        self.builder: SpanTree[Any]
        if self.sender.direct:
            from master_sdk.tracing.otel.direct import DirectSpanBuilder

            self.builder = DirectSpanBuilder(
                self.sender.encoder,
                semconv=settings.semconv,
                capture_content=settings.capture_content,
                scrub=scrub,
            )
        else:  # spans go through the SDK's public export(): records, not bytes
            self.builder = SpanBuilder(
                semconv=settings.semconv, capture_content=settings.capture_content, scrub=scrub
            )
        self._ratio = settings.sample_ratio
        self._max_queue = settings.max_queue
        self._sampled: dict[str, bool] = {}
        # commits waiting to become spans (bounded, like the spans waiting to be sent)
        self._commits: deque[_Commit] = deque()
        self._spans: deque[Any] = deque()  # span entries (bytes) or records
        self._cond = threading.Condition()
        self._batch_size = settings.batch_size
        # the builder wakes every flush interval, or when this many commits wait: rarely,
        # so that it works in few long turns (each turn costs the runs' thread hand-overs
        # of the interpreter lock and cold caches; waking every 32 commits cost the two
        # telemetry threads 20-30 % more CPU per run than this, measured)
        self._wake_at = max(1, min(settings.batch_size, settings.max_queue) // 2)
        self._building = False
        self._sending = 0  # spans in the request under way
        self._flush = False
        self._closed = False
        self.exported = 0
        self.dropped_queue_full = 0
        self.dropped_export_failed = 0
        self.dropped_commits = 0
        self.failed_requests = 0
        self.build_errors = 0
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()

    # ------------------------------------------------------------------ the commit path

    def submit(
        self,
        run: RunInfo,
        events: Sequence[Any],
        steps: StepRows | None = None,
    ) -> None:
        """Queue one commit's events of ``run`` (and its step attempts as ``(step_id,
        attempt, started_us[, output])``); returns at once, never raises for the
        collector's sake (a full queue drops the commit and counts it).

        No lock and no thread wake-up here in the common case: the commit goes on a deque
        the builder drains every ``flush_interval_s`` (or sooner once many are waiting).
        """
        if not events or self._closed:
            return
        if self._ratio < 1.0 and not self._keep(run.run_id):
            return
        if not self._threads:
            self._start()
        commits = self._commits
        if len(commits) >= self._max_queue:
            with self._cond:
                self.dropped_commits += 1
                # about one span per event: what the buffer would have held
                self.dropped_queue_full += len(events)
            return
        commits.append((run, events, steps))
        if len(commits) == self._wake_at:
            with self._cond:
                self._cond.notify_all()

    def _keep(self, run_id: str) -> bool:
        """The run's sampling decision (remembered)."""
        keep = self._sampled.get(run_id)
        if keep is None:
            keep = ids.sampled(ids.trace_id(run_id), self._ratio)
            if len(self._sampled) > 100_000:
                self._sampled.clear()
            self._sampled[run_id] = keep
        return keep

    # ------------------------------------------------------------------ threads

    def _start(self) -> None:
        with self._start_lock:
            if self._threads:
                return
            # a kernel or script that ends without wb.close() still sends what waits
            # (bounded like close; the weak reference lets a dropped workbench go)
            atexit.register(_flush_at_exit, weakref.ref(self))
            for target, name in (
                (self._build_loop, "master-telemetry-build"),
                (self._send_loop, "master-telemetry-export"),
            ):
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    def _build_loop(self) -> None:
        limit = self.settings.max_queue
        interval = self.settings.flush_interval_s
        commits = self._commits
        cond = self._cond

        def due() -> bool:
            return self._closed or (
                bool(commits) and (self._flush or len(commits) >= self._wake_at)
            )

        while True:
            with cond:
                cond.wait_for(due, timeout=interval)
                if self._closed and not commits:
                    return
                if not commits:
                    continue
                self._building = True
            spans: list[Any] = []
            built = 0
            build = self.builder.build
            while commits:
                run, events, steps = commits.popleft()
                built += 1
                if built % 64 == 0:
                    # let a run's thread take the GIL (runs come first) every ~0.1 ms of
                    # work; each hand-over costs two context switches, so not more often
                    time.sleep(0)
                try:
                    spans.extend(build(run, events, starts=steps))
                except Exception as exc:  # a bug here must never reach a run
                    self._error(f"building spans: {type(exc).__name__}: {exc}")
                    with cond:
                        self.build_errors += 1
            with cond:
                room = max(limit - len(self._spans) - self._sending, 0)
                if len(spans) > room:
                    self.dropped_queue_full += len(spans) - room
                    del spans[room:]
                self._spans.extend(spans)
                self._building = False
                if self._flush or self._closed or len(self._spans) >= self._batch_size:
                    cond.notify_all()

    def _send_loop(self) -> None:
        quiet_in_thread()
        batch_size = self._batch_size
        interval = self.settings.flush_interval_s
        cond = self._cond

        def due() -> bool:
            spans = len(self._spans)
            return self._closed or (spans > 0 and (self._flush or spans >= batch_size))

        while True:
            with cond:
                cond.wait_for(due, timeout=interval)
                if self._closed and not self._spans and not self._commits:
                    return
                if not self._spans:
                    continue
                batch = [self._spans.popleft() for _ in range(min(batch_size, len(self._spans)))]
                self._sending = len(batch)
            try:
                ok, why = self.sender.send(batch)
            except Exception as exc:  # the exporter's own bug: count it, keep going
                ok, why = False, f"{type(exc).__name__}: {exc}"
            with cond:
                self._sending = 0
                if ok:
                    self.exported += len(batch)
                else:
                    self.dropped_export_failed += len(batch)
                    self.failed_requests += 1
                    self._error(f"export to {self.settings.endpoint} failed: {why}", lock=False)
                if self._idle():
                    self._flush = False
                cond.notify_all()
            if self._closed and not ok:
                # closing with a collector that refuses: drop the rest at once
                with cond:
                    self.dropped_export_failed += len(self._spans)
                    self._spans.clear()
                    cond.notify_all()

    def _idle(self) -> bool:
        """Nothing waits anywhere (call with the lock held)."""
        return not (self._commits or self._building or self._spans or self._sending)

    def record_error(self, message: str) -> None:
        """Keep ``message`` as the last error (:meth:`status`), with the time."""
        self._error(message)

    def _error(self, message: str, *, lock: bool = True) -> None:
        at = datetime.now(UTC).isoformat()
        if lock:
            with self._cond:
                self.last_error, self.last_error_at = message, at
        else:
            self.last_error, self.last_error_at = message, at

    # ------------------------------------------------------------------ control

    def flush(self, timeout_s: float | None = None) -> bool:
        """Send everything submitted so far; wait at most ``timeout_s`` (default: the
        export timeout plus a second). True when nothing is left waiting."""
        if not self._threads:
            return True
        wait = timeout_s if timeout_s is not None else self.settings.timeout_s + 1.0
        end = time.monotonic() + wait
        with self._cond:
            while not self._idle():
                self._flush = True
                self._cond.notify_all()
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            self._flush = False
        return True

    def close(self, timeout_s: float | None = None) -> None:
        """Flush, then stop the threads and the exporter; all of it within ``timeout_s``
        (default: the export timeout plus a second). A request still under way then ends
        on its own timeout in its daemon thread; its spans count as dropped."""
        if self._closed:
            return
        budget = timeout_s if timeout_s is not None else self.settings.timeout_s + 1.0
        end = time.monotonic() + budget
        self.flush(budget)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._threads:
            self.sender.shutdown()  # an export waiting to retry gives up now
            for thread in self._threads:
                thread.join(timeout=max(end - time.monotonic(), 0.05))
        with self._cond:
            # what could not be sent in time is dropped, and counted
            self.dropped_queue_full += len(self._spans)
            self._spans.clear()
            dropped = list(self._commits)
            self._commits.clear()
            self.dropped_queue_full += sum(len(item[1]) for item in dropped)

    def status(self) -> dict[str, Any]:
        """Counters: what was exported, what waits, what was dropped and why."""
        with self._cond:
            dropped = self.dropped_queue_full + self.dropped_export_failed
            return {
                "enabled": True,
                "endpoint": self.settings.endpoint,
                "service_name": self.settings.service_name,
                "semconv": self.settings.semconv,
                "sample_ratio": self.settings.sample_ratio,
                "exported": self.exported,
                "queued": len(self._spans) + self._sending,
                "pending_commits": len(self._commits),
                "dropped": dropped,
                "dropped_queue_full": self.dropped_queue_full,
                "dropped_export_failed": self.dropped_export_failed,
                "dropped_commits": self.dropped_commits,
                "failed_requests": self.failed_requests,
                "build_errors": self.build_errors,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
            }


def _flush_at_exit(ref: weakref.ref[TelemetryPipeline]) -> None:
    pipeline = ref()
    if pipeline is not None and not pipeline._closed:
        pipeline.flush()
