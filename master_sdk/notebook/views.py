"""The live view of a run in a notebook: :class:`RunView`.

A run displays itself through this view (``run`` as the last expression of a cell, or
``display(run)``). The view shows the flow, the run id and status, one line per step, and
the form the run needs now: an :class:`~master_sdk.notebook.forms.ApprovalForm` while it
waits for approval, a :class:`~master_sdk.notebook.forms.SchemaForm` while it waits for
input, a :class:`~master_sdk.notebook.recovery.RecoveryForm` when it was interrupted. A
click continues the run through the public ``Run`` API and the same view redraws itself in
place, until the run pauses again or ends. Refresh re-reads a run another process moved.

The view is the same object for the life of a ``Run`` handle (``run.view()``), and so is
the form of one pause (``run.form()``): a test can fill a form and click it from code.

Example:
    >>> run = wb.run("hello_world/greet", inputs={"text": "Hello"})
    >>> run                                   # the view, with the approval form
    >>> run.form().approve_button.click()     # the view now shows the audience form
    >>> form = run.form()
    >>> form.fields["audience"].value = "the board"
    >>> form.submit_button.click()            # the view shows the output
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from master_sdk.errors import FlowChanged, InputInvalid, MasterError
from master_sdk.notebook.forms import ApprovalForm, HandledElsewhere, SchemaForm
from master_sdk.notebook.recovery import RecoveryForm
from master_sdk.notebook.summary import RunSummary, form_text

if TYPE_CHECKING:
    from master_sdk import Run

__all__ = ["Form", "RunView"]

Form = ApprovalForm | SchemaForm | RecoveryForm
"""The forms a run's view can hold."""

_BAD_STYLE = "color:#b00020"


class RunView:
    """A widget showing one run, redrawn in place whenever the run handle changes it.

    Args:
        run: the run to show; its actions (approve, submit, retry, refresh, ...) redraw
            this view.

    Attributes:
        run: the run shown.
        widget: the container to display.
        header: flow, run id and status.
        steps: the step table.
        form_box: holds the current form's widget, or nothing.
        result: the output of a completed run, or why it stopped.
        notice: the last action's error (another kernel answered first, ...); hidden
            when there is none.
        flow_change: shown when an action found the flow (or the product's code) changed
            since the run started: what changed, a short diff, and ``continue_button``.
        continue_button: "Continue on the new flow": repeats the action that was refused,
            accepting the change (``allow_flow_change=True``; recorded in the trace).
        refresh_button: re-read the run from the store.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.header = widgets.HTML()
        self.steps = widgets.HTML()
        self.form_box = widgets.VBox()
        self.result = widgets.HTML()
        self.notice = widgets.HTML(layout=widgets.Layout(display="none"))
        self.flow_change_text = widgets.HTML()
        self.continue_button = widgets.Button(
            description="Continue on the new flow",
            button_style="warning",
            icon="forward",
            layout=widgets.Layout(width="auto"),
            tooltip="Accept the change and continue this run on the flow as it is now",
        )
        self.continue_button.on_click(lambda _b: self._continue())
        self.flow_change = widgets.VBox(
            [self.flow_change_text, self.continue_button],
            layout=widgets.Layout(display="none"),
        )
        self._refused: Callable[[bool], object] | None = None
        self.refresh_button = widgets.Button(
            description="Refresh", icon="refresh", tooltip="Re-read the run from the store"
        )
        self.refresh_button.on_click(lambda _b: self._refresh())
        self.widget = widgets.VBox(
            [
                self.header,
                self.steps,
                self.form_box,
                self.result,
                self.notice,
                self.flow_change,
                widgets.HBox([self.refresh_button]),
            ]
        )
        self._form: tuple[tuple[str, ...], Form] | None = None
        self.update()

    # ------------------------------------------------------------------ public

    def form(self) -> Form | None:
        """The form the run needs now, or None; the same object while the run stays at the
        same pause."""
        key = self._form_key()
        if key is None:
            self._discard_form()
            return None
        if self._form is None or self._form[0] != key:
            self._discard_form()
            self._form = (key, self._build_form())
        return self._form[1]

    def _discard_form(self) -> None:
        """Close the widgets of a form whose pause was answered: what was typed into it
        (before redaction) must not stay in the notebook's widget state."""
        if self._form is not None:
            _close_tree(self._form[1].widget)
            self._form = None

    def update(self) -> None:
        """Redraw from the run's current state (as the handle last read it).

        Drawing never raises: a failure to draw is shown in the view, so that an action
        that went through is not reported as failed because of its display.
        """
        try:
            summary = RunSummary.of(self.run)
            self.header.value = summary.header_html()
            self.steps.value = summary.steps_html()
            self.result.value = summary.result_html()
            form = self.form()
            self.form_box.children = (form.widget,) if form is not None else ()
        except Exception as exc:  # the display must not break the action that asked for it
            self.show_notice(f"Could not draw the run: {type(exc).__name__}: {exc}")

    def show_notice(self, text: str) -> None:
        """Show ``text`` under the run (``""`` hides the notice)."""
        self.notice.value = f"<div style='{_BAD_STYLE}'>{escape(text)}</div>" if text else ""
        self.notice.layout.display = None if text else "none"

    @property
    def text(self) -> str:
        """The view as plain text (what a notebook stores as ``text/plain``): the run's
        summary and, while it needs one, its form as one line, e.g.
        ``waiting_approval · review · Approve/Reject``."""
        text = RunSummary.of(self.run).text()
        form = self._form[1] if self._form is not None else None
        pending = self.run.waiting_for
        if form is not None:
            step = pending.get("step") if pending else None
            context = " · ".join(str(p) for p in (self.run.status, step) if p)
            text += "\n" + form_text(form, context)
        return text

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle["text/plain"] = self.text
        return bundle

    # ------------------------------------------------------------------ forms

    def _form_key(self) -> tuple[str, ...] | None:
        run = self.run
        pending = run.waiting_for
        if pending is not None:
            return (run.status, str(pending.get("step")))
        if run.status.recoverable:  # interrupted or failed: retry, skip or abort
            return (run.status, run.error or "")
        return None

    def _build_form(self) -> Form:
        run = self.run
        pending = run.waiting_for
        if pending is not None and run.status == "waiting_approval":
            return self._approval_form(pending)
        if pending is not None:
            return self._input_form(pending)
        return self._recovery_form()

    def _approval_form(self, pending: dict[str, Any]) -> ApprovalForm:
        run = self.run

        def decide(approved: bool, comment: str) -> None:
            by = str(form.user.value).strip() or None
            note = comment or None
            if approved:
                self._act(lambda allow: run.approve(comment=note, by=by, allow_flow_change=allow))
            else:
                self._act(lambda allow: run.reject(comment=note, by=by, allow_flow_change=allow))

        step = str(pending.get("step"))
        form = ApprovalForm(
            prompt=str(pending.get("prompt") or f"Approve step '{step}'?"),
            shown=pending.get("show"),
            default_user=run.workbench.user,
            on_approve=lambda comment: decide(True, comment),
            on_reject=lambda comment: decide(False, comment),
        )
        return form

    def _input_form(self, pending: dict[str, Any]) -> SchemaForm:
        run = self.run
        schema = pending.get("schema") or {"type": "object"}
        step = str(pending.get("step"))
        return SchemaForm(
            schema,
            on_submit=lambda data: self._act(
                lambda allow: run.submit(data, allow_flow_change=allow)
            ),
            prompt=str(pending.get("prompt") or f"Input for step '{step}'"),
        )

    def _recovery_form(self) -> RecoveryForm:
        run = self.run
        stuck = [
            line.step_id
            for line in RunSummary.of(run).steps
            if line.status in ("interrupted", "failed")
        ]
        return RecoveryForm(
            step=stuck[-1] if stuck else None,
            error=run.error,
            on_retry=lambda: self._act(lambda allow: run.retry(allow_flow_change=allow)),
            on_skip=lambda output: self._act(
                lambda allow: run.skip(output, allow_flow_change=allow)
            ),
            on_abort=lambda reason: self._act(lambda _allow: run.abort(reason or None)),
        )

    # ------------------------------------------------------------------ actions

    def _act(self, action: Callable[[bool], object], *, allow_change: bool = False) -> None:
        """Run a ``Run`` action for a form; the run redraws this view itself.

        ``action(allow_flow_change)`` calls the run. An error other than invalid input
        (which the form shows under its fields) is shown under the run, once, because the
        form it came from may have just been replaced. A changed flow is not an error to
        read but a choice: the view shows what changed and offers to continue on the new
        flow, which repeats the same action accepting the change.
        """
        try:
            action(allow_change)
        except InputInvalid:
            raise
        except FlowChanged as exc:
            with contextlib.suppress(MasterError):
                self.run.refresh()
            self.show_notice("")
            if allow_change:  # even accepted, the run cannot go on (its step is gone)
                self._show_flow_change(None, None)
                self.show_notice(f"{type(exc).__name__}: {exc}")
                raise
            self._show_flow_change(exc, action)
            raise HandledElsewhere(str(exc)) from exc
        except MasterError as exc:
            # The handle may hold what this process tried rather than what was stored
            # (another kernel answered first): read the store again before redrawing.
            with contextlib.suppress(MasterError):
                self.run.refresh()
            self._show_flow_change(None, None)
            self.show_notice(f"{type(exc).__name__}: {exc}")
            raise
        else:
            self._show_flow_change(None, None)
            self.show_notice("")
        finally:
            # ``run.view()`` is redrawn by the run itself; a view built directly is not.
            self.update()

    def _show_flow_change(
        self, exc: FlowChanged | None, action: Callable[[bool], object] | None
    ) -> None:
        """Offer to continue on the changed flow (``exc``), or hide the offer (None)."""
        self._refused = action
        if exc is None:
            self.flow_change_text.value = ""
            self.flow_change.layout.display = "none"
            return
        changes = exc.changes or "the flow changed"
        diff = (
            "<pre style='max-height:16em;overflow:auto;background:#f6f8fa;padding:6px;"
            f"margin:4px 0'>{escape(exc.diff)}</pre>"
            if exc.diff
            else ""
        )
        self.flow_change_text.value = (
            f"<div style='color:#b26a00'><b>The flow changed since this run started</b>: "
            f"{escape(changes)}.</div>{diff}"
            "<div style='color:#555'>Continue on the new flow (recorded in the trace), "
            "or restore the files to continue as it was.</div>"
        )
        self.flow_change.layout.display = None

    def _continue(self) -> None:
        action = self._refused
        if action is None:
            return
        self.continue_button.disabled = True
        try:
            self._act(action, allow_change=True)
        except MasterError:
            pass  # shown under the run by _act
        finally:
            self.continue_button.disabled = False

    def _refresh(self) -> None:
        try:
            self.run.refresh()
        except MasterError as exc:
            self.show_notice(f"{type(exc).__name__}: {exc}")
            return
        self.show_notice("")
        self._show_flow_change(None, None)
        self.update()


def _close_tree(widget: Any) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()
