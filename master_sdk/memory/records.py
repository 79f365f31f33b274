"""Older names of the store's records, kept while callers move to :mod:`master_sdk.memory.store`.

``RunRow`` is :class:`~master_sdk.memory.store.RunRecord` and ``StepRow`` is
:class:`~master_sdk.memory.store.StepAttempt`; everything else is re-exported as it is.
"""

from __future__ import annotations

from master_sdk.memory.store import Changes, RunRecord, StepAttempt, Store, VersionConflict

RunRow = RunRecord
StepRow = StepAttempt

__all__ = ["Changes", "RunRow", "StepRow", "Store", "VersionConflict"]
