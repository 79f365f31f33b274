"""Reviewing at scale: the pending list, decisions apart from continuation, team rules,
reservations and the worker that continues decided runs (DESIGN.md §11).

* :mod:`~master_sdk.review.pending` — ``wb.pending()``, one row per paused run.
* :mod:`~master_sdk.review.rules` — ``approvers``, ``four_eyes`` and reservations,
  checked before a decision is recorded.
* :mod:`~master_sdk.review.decisions` — many decisions with one comment, each committed
  on its own, continued now, in a background thread or by any other executor.
* :mod:`~master_sdk.review.work` — ``wb.work()`` / ``master work``: continue every
  decided run exactly once.
"""
