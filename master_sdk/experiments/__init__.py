"""Experiments: a flow over a table of cases, scored, resumable, comparable.

One idea per module: ``cases`` (admission and case keys), ``answers`` (scripted human
steps), ``scorers`` (``ms.scorers``) and ``scoring`` (running them, judges governed),
``stats`` (bootstrap intervals), ``limiter`` (the experiment-wide AIMD window and cost
cap), ``progress`` (the live display), ``runner`` (the worker threads that drive the
cases), ``ray_backend`` and ``ray_worker`` (the same cases on a Ray cluster's workers,
``backend="ray"``), ``evaluate`` (``wb.evaluate`` and ``resume``'s plan), ``experiment`` (the handle
users hold), ``results`` (the results frame and summary), ``listing``
(``wb.experiments()``), ``compare`` (two experiments paired by case). Persistence is the
store's (``memory/experiments.py``).
"""
