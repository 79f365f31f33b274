"""Frames and transfers every store offers, derived from the :class:`Store` protocol.

A store class inherits :class:`Derived` to offer ``runs_frame``, ``trace_frame``,
``steps_frame``, ``approvals_frame``, ``export_runs`` and ``import_runs``, each written
once (``memory/frames.py``, ``memory/transfer.py``) on top of the protocol's reads and
writes. The store's ``scrub`` is its redaction: applied to ``attrs`` as the trace frame is
built (see :data:`TRACE_REDACTED`) and to everything an export writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk.memory.store import Store
    from master_sdk.memory.transfer import TransferReport

TRACE_REDACTED: tuple[str, ...] = ("attrs",)
"""Columns of :meth:`Derived.trace_frame` redacted by the store's ``scrub`` as they are
built (once per distinct ``attrs`` text): a reader holding the same redactor need not walk
them again."""


def identity(value: Any) -> Any:
    """No redaction."""
    return value


class Derived:
    """Frames, export and import for a class implementing the Store protocol."""

    scrub: Callable[[Any], Any] = identity

    def _store(self) -> Store:
        store: Store = self  # type: ignore[assignment]  # subclasses implement Store
        return store

    def runs_frame(
        self, *, product: str | None = None, flow: str | None = None, status: str | None = None
    ) -> pd.DataFrame:
        """The run list (columns in docs/dataframes.md)."""
        from master_sdk.memory import frames

        return frames.runs(self._store(), product=product, flow=flow, status=status)

    def trace_frame(
        self,
        *,
        run_id: str | None = None,
        product: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since_us: int | None = None,
    ) -> pd.DataFrame:
        """Trace events; the columns of :data:`TRACE_REDACTED` passed this store's
        ``scrub`` on the way out."""
        from master_sdk.memory import frames

        return frames.traces(
            self._store(),
            run_id=run_id,
            product=product,
            flow=flow,
            status=status,
            since_us=since_us,
            redact=None if self.scrub is identity else self.scrub,
        )

    def steps_frame(self, run_id: str, *, attempts: bool = False) -> pd.DataFrame:
        """One row per step of a run (``attempts=True``: one per attempt)."""
        from master_sdk.memory import frames

        return frames.steps(self._store(), run_id, attempts=attempts)

    def approvals_frame(
        self, *, product: str | None = None, flow: str | None = None
    ) -> pd.DataFrame:
        """The approval audit."""
        from master_sdk.memory import frames

        return frames.approvals(self._store(), product=product, flow=flow)

    def export_runs(
        self,
        target: Path,
        *,
        run_ids: Sequence[str] | None = None,
        fmt: str | None = None,
        overwrite: bool = False,
    ) -> TransferReport:
        """Write runs to a JSON Lines file or a standalone SQLite file (see
        :func:`master_sdk.memory.transfer.export_store`), redacted by ``scrub``."""
        from master_sdk.memory.transfer import export_store

        return export_store(
            self._store(),
            Path(target),
            run_ids=run_ids,
            fmt=fmt,
            overwrite=overwrite,
            redact=self.scrub,
        )

    def import_runs(
        self, source: Path, *, fmt: str | None = None, on_duplicate: str = "skip"
    ) -> TransferReport:
        """Add the runs of an export (or of another store file) to this store (see
        :func:`master_sdk.memory.transfer.import_store`)."""
        from master_sdk.memory.transfer import import_store

        return import_store(self._store(), Path(source), fmt=fmt, on_duplicate=on_duplicate)
