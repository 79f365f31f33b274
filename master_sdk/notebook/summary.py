"""What a run looks like at a glance, as text and as HTML, without widgets.

:class:`RunSummary` reads a run through the public API (``run.steps()``, ``run.waiting_for``,
the flow's step list) once, and renders it as plain text (terminals, ``text/plain`` in a
notebook file) or as HTML (the widget view's header, step table and result, and the
display of a run where ipywidgets is not available). Everything shown comes from the store,
where it was redacted before it was written; all of it is HTML-escaped here.

Example:
    >>> print(RunSummary.of(run).text())          # doctest: +SKIP
    hello_world/greet · run 0f3c… · waiting_approval
      echo      tool        completed         0.2 ms
      review    hitl        waiting_approval
      ...
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

from master_sdk.errors import MasterError

if TYPE_CHECKING:
    from master_sdk import Run

NOT_REACHED = "not reached"
_NOTE_LIMIT = 80
_STATUS_COLOURS = {
    "running": "#1565c0",
    "waiting_approval": "#b26a00",
    "waiting_input": "#b26a00",
    "completed": "#1b5e20",
    "skipped": "#616161",
    "rejected": "#b00020",
    "failed": "#b00020",
    "blocked": "#b00020",
    "aborted": "#616161",
    "interrupted": "#6a1b9a",
    NOT_REACHED: "#9e9e9e",
}
_WAITING_TEXT = {"waiting_approval": "approval", "waiting_input": "input"}


@dataclass(frozen=True, slots=True)
class StepLine:
    """One step of a run as the summary shows it.

    Attributes:
        step_id: the step's id in the flow.
        step_type: ``tool``, ``agent``, ``hitl`` or ``user_input``.
        status: the step's status, or ``"not reached"``.
        attempt: how many times it was started (0 when not reached).
        duration_ms: from start to end, None while unfinished or not reached.
        note: who decided an approval, or why a step failed; ``""`` otherwise.
    """

    step_id: str
    step_type: str
    status: str
    attempt: int = 0
    duration_ms: float | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run's state, read once, rendered as text or HTML.

    Attributes:
        ref: ``product/flow``.
        run_id: the run id.
        status: the run status.
        steps: every step of the flow in order (those not reached yet included when the
            flow can still be loaded).
        waiting_for: ``run.waiting_for`` (None unless paused).
        output: the flow's output once completed.
        error: why the run failed, was blocked, rejected or interrupted.
    """

    ref: str
    run_id: str
    status: str
    steps: tuple[StepLine, ...]
    waiting_for: dict[str, Any] | None
    output: Any
    error: str | None

    @classmethod
    def of(cls, run: Run) -> RunSummary:
        """Read ``run``'s current state (as last loaded; call ``run.refresh()`` to re-read)."""
        frame = run.steps()
        try:
            planned = run.workbench.flow(run.ref).steps
        except MasterError:  # a product broken since the run started: show what was stored
            planned = []
        guards = {str(step["id"]): step.get("when") for step in planned}
        lines: list[StepLine] = []
        seen: set[str] = set()
        for row in frame.to_dict("records"):
            step_id = str(row["step_id"])
            seen.add(step_id)
            duration = float(row["duration_ms"])
            status = str(row["status"])
            guard = guards.get(step_id)
            by_guard = status == "skipped" and bool(guard) and row["output"] is None
            lines.append(
                StepLine(
                    step_id=step_id,
                    step_type=str(row["step_type"]),
                    status=status,
                    # a step its guard skipped never started: no attempt to count
                    attempt=0 if by_guard else int(row["attempt"]),
                    duration_ms=None if math.isnan(duration) or by_guard else duration,
                    note=_shorten(f"skipped: when {guard} was false")
                    if by_guard
                    else _note(str(row["step_type"]), row["output"], row["error"]),
                )
            )
        lines.extend(
            StepLine(str(step["id"]), str(step["type"]), NOT_REACHED)
            for step in planned
            if step["id"] not in seen
        )
        return cls(
            ref=run.ref,
            run_id=run.id,
            status=run.status,
            steps=tuple(lines),
            waiting_for=run.waiting_for,
            output=run.output,
            error=run.error,
        )

    # ------------------------------------------------------------------ text

    def text(self) -> str:
        """Plain text: a header line, one line per step, then what the run waits for or
        how it ended."""
        lines = [f"{self.ref} · run {self.run_id} · {self.status}"]
        width_id = max((len(s.step_id) for s in self.steps), default=0)
        width_type = max((len(s.step_type) for s in self.steps), default=0)
        width_status = max((len(s.status) for s in self.steps), default=0)
        for step in self.steps:
            parts = [
                step.step_id.ljust(width_id),
                step.step_type.ljust(width_type),
                step.status.ljust(width_status),
            ]
            if step.duration_ms is not None:
                parts.append(f"{step.duration_ms:.1f} ms")
            if step.note:
                parts.append(step.note)
            lines.append(("  " + "  ".join(parts)).rstrip())
        last = self.outcome()
        if last:
            lines.append(last)
        return "\n".join(lines)

    def outcome(self) -> str:
        """One sentence: what the run waits for, its output, or why it stopped."""
        pending = self.waiting_for
        if pending is not None:
            what = _WAITING_TEXT.get(self.status, "a decision")
            prompt = pending.get("prompt")
            tail = f": {prompt}" if prompt else ""
            return f"Waiting for {what} at step '{pending.get('step')}'{tail}"
        if self.status == "completed":
            return f"Output: {_compact(self.output, 400)}"
        if self.status == "interrupted":
            return f"Interrupted: {self.error or 'a step did not finish'} (retry, skip or abort)"
        if self.status == "running":
            return "Running in another process (refresh to see its progress)"
        if self.error:
            return f"{self.status.capitalize()}: {self.error}"
        return f"{self.status.capitalize()}."

    # ------------------------------------------------------------------ HTML

    def header_html(self) -> str:
        """The run's flow, id and a coloured status badge."""
        return (
            "<div style='margin:2px 0 6px 0'>"
            f"<b>{escape(self.ref)}</b> · run <code>{escape(self.run_id)}</code> · "
            f"{_badge(self.status)}</div>"
        )

    def steps_html(self) -> str:
        """A table of steps: id, type, status, attempt, duration and note."""
        head = "".join(
            f"<th style='text-align:left;padding:2px 10px 2px 0'>{h}</th>"
            for h in ("step", "type", "status", "attempt", "duration", "note")
        )
        body = []
        for step in self.steps:
            duration = "" if step.duration_ms is None else f"{step.duration_ms:,.1f} ms"
            attempt = str(step.attempt) if step.attempt else ""
            cells = (
                f"<code>{escape(step.step_id)}</code>",
                escape(step.step_type),
                _badge(step.status),
                attempt,
                duration,
                escape(step.note),
            )
            body.append(
                "<tr>"
                + "".join(f"<td style='padding:2px 10px 2px 0'>{c}</td>" for c in cells)
                + "</tr>"
            )
        return (
            "<table style='border-collapse:collapse;font-size:90%'>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )

    def result_html(self) -> str:
        """The outcome: the output of a completed run, or why it stopped; ``""`` while paused
        (the form says what is needed)."""
        if self.waiting_for is not None:
            return ""
        if self.status == "completed":
            return (
                "<div style='margin:6px 0 2px 0'><b>Output</b></div>"
                "<pre style='max-height:20em;overflow:auto;white-space:pre-wrap;"
                "background:#f6f8fa;padding:6px;margin:0'>"
                f"{escape(_pretty(self.output))}</pre>"
            )
        colour = _STATUS_COLOURS.get(self.status, "#333")
        return f"<div style='color:{colour};margin:6px 0'>{escape(self.outcome())}</div>"

    def html(self) -> str:
        """Header, step table and outcome in one block (used where widgets are unavailable)."""
        outcome = self.result_html()
        if self.waiting_for is not None:
            outcome = f"<div style='margin:6px 0'>{escape(self.outcome())}</div>"
        return f"<div>{self.header_html()}{self.steps_html()}{outcome}</div>"


def _badge(status: str) -> str:
    colour = _STATUS_COLOURS.get(status, "#333")
    return (
        f"<span style='color:{colour};border:1px solid {colour};border-radius:3px;"
        f"padding:0 4px;font-size:90%'>{escape(status)}</span>"
    )


def _note(step_type: str, output: Any, error: Any) -> str:
    if isinstance(error, str) and error:
        return _shorten(error)
    if step_type == "hitl" and isinstance(output, dict) and "approved" in output:
        decision = "approved" if output.get("approved") else "rejected"
        who = output.get("by")
        note = f"{decision} by {who}" if who else decision
        comment = output.get("comment")
        if isinstance(comment, str) and comment.strip():
            note = f"{note}: “{' '.join(comment.split())}”"
        return _shorten(note)
    return ""


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # circular structures
        return repr(value)


def _compact(value: Any, limit: int) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return _shorten(text, limit)


def _shorten(text: str, limit: int = _NOTE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_FORM_BUTTONS = (
    "approve_button",
    "reject_button",
    "submit_button",
    "retry_button",
    "skip_button",
    "abort_button",
)


_FORM_KINDS = {"ApprovalForm": "approval", "SchemaForm": "input", "RecoveryForm": "recovery"}


def form_text(form: Any, context: str | None = None) -> str:
    """A form as one stable line of text: what a notebook file keeps as its ``text/plain``.

    Widget model ids change on every execution; this line does not, so a notebook compared
    with its committed outputs (``master test``) reads the form, not an id::

        waiting_approval · review · Approve/Reject
        waiting_input · audience · fields: audience · Submit

    Args:
        form: an approval, input or recovery form (its buttons and ``fields`` are read).
        context: what comes first, e.g. the run's status and step id (default: the kind of
            form, ``approval``, ``input`` or ``recovery``).
    """
    if context is None:
        context = _FORM_KINDS.get(type(form).__name__)
    parts = [context] if context else []
    fields = getattr(form, "fields", None)
    if fields:
        parts.append("fields: " + ", ".join(fields))
    buttons = [getattr(form, name, None) for name in _FORM_BUTTONS]
    labels = [str(b.description) for b in buttons if b is not None]
    if labels:
        parts.append("/".join(labels))
    status = getattr(form, "status", "")
    if status:
        parts.append(str(status))
    return " · ".join(parts)

