"""The live progress of an experiment: counts, rate, cost so far, ETA, backoff state.

In a Jupyter kernel it is one line that updates in place (an ipywidgets ``HTML``, whose
value changes without new outputs, so a saved notebook keeps the line it first showed;
without ipywidgets, an IPython display handle) and ends with the final numbers; elsewhere
it prints a line to stderr at most once a second, and a last line at the end.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from master_sdk.experiments.limiter import GateState


class GateReader(Protocol):
    """Where the progress line reads the gate's numbers (the gate, or a remote view)."""

    def state(self) -> GateState:
        """The window, backoffs, cost spent and any block, now."""
        ...

# how a run's status counts in the progress line
_DONE = frozenset({"completed", "rejected"})
_FAILED = frozenset({"failed", "blocked", "aborted", "interrupted"})
_PAUSED = frozenset({"waiting_approval", "waiting_input"})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The numbers one progress line shows."""

    name: str
    total: int
    done: int
    paused: int
    failed: int
    invalid: int
    elapsed_s: float
    rate: float
    cost_usd: float
    window: float
    limit: int
    backoffs: int
    congestion: int
    stopping: str | None

    @property
    def finished(self) -> int:
        """Cases that need nothing more from this process."""
        return self.done + self.paused + self.failed + self.invalid

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate (None before a rate is known)."""
        left = self.total - self.finished
        if left <= 0:
            return 0.0
        return left / self.rate if self.rate > 0 else None

    def text(self) -> str:
        """One line: ``prompt-v2: 120/200 done, 3 paused, 1 failed | 52.1/s | $0.0123 | ...``."""
        parts = [
            f"{self.name}: {self.done}/{self.total} done",
            f"{self.paused} paused",
            f"{self.failed} failed",
        ]
        if self.invalid:
            parts.append(f"{self.invalid} invalid")
        line = ", ".join(parts)
        line += f" | {self.rate:.1f} cases/s | ${self.cost_usd:.4f}"
        eta = self.eta_s
        line += f" | ETA {eta:.0f}s" if eta is not None else " | ETA ?"
        if self.window < self.limit - 1e-9:
            line += (
                f" | backing off: {int(self.window)}/{self.limit} calls in flight "
                f"({self.backoffs} backoffs after {self.congestion} rate limits/timeouts)"
            )
        elif self.congestion:
            line += f" | recovered from {self.congestion} rate limits/timeouts"
        if self.stopping:
            line += f" | stopping: {self.stopping}"
        return line


class Progress:
    """Counts cases as workers finish them; shows itself (see the module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        total: int,
        gate: GateReader,
        show: bool = True,
        already: Counter[str] | None = None,
        invalid: int = 0,
    ) -> None:
        self.name = name
        self.total = total
        self.gate = gate
        self.show = show
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter(already or ())
        self._invalid = invalid
        self._before = sum(self._counts.values()) + invalid
        self._started = time.monotonic()
        # the first line comes after a second (a short experiment shows only its last)
        self._last_print = self._started
        self._handle: Any = None
        self.stopping: str | None = None
        self._jupyter = _in_kernel()

    def count(self, status: str) -> None:
        """A case reached ``status`` (a run status, or ``error`` for a case that failed
        before it had a run)."""
        with self._lock:
            self._counts[status] += 1

    def snapshot(self) -> Snapshot:
        """The current numbers."""
        with self._lock:
            counts = Counter(self._counts)
        elapsed = max(1e-9, time.monotonic() - self._started)
        done = sum(counts[s] for s in _DONE)
        paused = sum(counts[s] for s in _PAUSED)
        failed = sum(n for s, n in counts.items() if s not in _DONE and s not in _PAUSED)
        state = self.gate.state()
        new = done + paused + failed + self._invalid - self._before
        return Snapshot(
            name=self.name,
            total=self.total,
            done=done,
            paused=paused,
            failed=failed,
            invalid=self._invalid,
            elapsed_s=elapsed,
            rate=new / elapsed,
            cost_usd=state.spent_usd,
            window=state.window,
            limit=state.limit,
            backoffs=state.backoffs,
            congestion=state.congestion,
            stopping=self.stopping or state.blocked,
        )

    def tick(self) -> None:
        """Refresh the display (cheap; call it often)."""
        if not self.show:
            return
        now = time.monotonic()
        if self._jupyter:
            if now - self._last_print < 0.25:
                return
            self._last_print = now
            self._update(self.snapshot().text())
            return
        if now - self._last_print < 1.0:
            return
        self._last_print = now
        print(self.snapshot().text(), file=sys.stderr, flush=True)

    def _update(self, text: str) -> None:
        if self._handle is None:
            self._handle = _LiveLine(f"{self.name}: starting {self.total} cases")
        self._handle.show(text)

    def finish(self) -> None:
        """Show the last numbers (in Jupyter, in place of the live line)."""
        if not self.show:
            return
        text = self.snapshot().text()
        if self._jupyter:
            self._update(text)
            return
        print(text, file=sys.stderr, flush=True)


def _in_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (not merely with ipykernel imported)."""
    if "ipykernel" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class _LiveLine:
    """One line of text shown once and changed in place."""

    def __init__(self, first: str) -> None:
        import html

        from IPython.display import display

        self._escape = html.escape
        self._widget: Any = None
        self._handle: Any = None
        try:
            from ipywidgets import HTML
        except ImportError:
            bundle = {"text/plain": first}
            # IPython's display is untyped
            self._handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]
            return
        self._widget = HTML(value=self._html(first))
        display(self._widget)  # type: ignore[no-untyped-call]  # IPython's display is untyped

    def _html(self, text: str) -> str:
        return f"<pre style='margin:0'>{self._escape(text)}</pre>"

    def show(self, text: str) -> None:
        """Replace the line's text."""
        if self._widget is not None:
            self._widget.value = self._html(text)
        else:
            self._handle.update({"text/plain": text}, raw=True)
