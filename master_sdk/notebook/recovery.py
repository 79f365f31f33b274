"""The form for an interrupted run: retry the step, skip it with an output, or abort the run.

Like the other forms it is a thin view: each button calls the callback it was given
(``run.retry`` / ``run.skip`` / ``run.abort`` in a run's view) and shows the outcome in
the form itself.

Example:
    >>> form = run.form()                  # the run is interrupted
    >>> form.output.value = '{"text": "done by hand"}'
    >>> form.skip_button.click()
    >>> form.status
    'skipped'
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from typing import Any

import ipywidgets as widgets

from master_sdk.errors import MasterError
from master_sdk.notebook.forms import HandledElsewhere

__all__ = ["RecoveryForm"]

_OK_STYLE = "color:#1b5e20"
_BAD_STYLE = "color:#b00020"


class RecoveryForm:
    """Retry, Skip or Abort buttons for a step whose process ended before it finished.

    Skip uses the JSON typed into ``output`` as the step's output (empty: null); Abort
    records the text in ``reason``. After one action goes through, the form is disabled;
    if the callback raises, the message is shown and the form stays usable.

    Attributes:
        retry_button: run the step again.
        skip_button: mark the step done with ``output`` and continue.
        abort_button: end the run as aborted.
        output: a ``Textarea`` holding the skipped step's output as JSON.
        reason: a ``Text`` holding why the run is aborted.
        widget: the container to display.
        status: ``""``, ``"retried"``, ``"skipped"``, ``"aborted"``, ``"invalid"`` (the
            output is not JSON) or ``"error: <message>"``.
    """

    def __init__(
        self,
        *,
        step: str | None,
        error: str | None,
        on_retry: Callable[[], object],
        on_skip: Callable[[Any], object],
        on_abort: Callable[[str], object],
    ) -> None:
        self.status = ""
        self._done = False
        self._busy = False
        what = "A step did not finish."
        if step:
            what = f"Step <code>{escape(step)}</code> did not finish."
        detail = f"<br/><span style='color:#555'>{escape(error)}</span>" if error else ""
        self.output = widgets.Textarea(
            description="Output",
            placeholder="JSON output for Skip (empty: null)",
            rows=3,
            layout=widgets.Layout(width="95%"),
        )
        self.reason = widgets.Text(description="Reason", placeholder="why abort (optional)")
        self.retry_button = widgets.Button(description="Retry", button_style="primary", icon="redo")
        self.skip_button = widgets.Button(
            description="Skip", button_style="warning", icon="forward"
        )
        self.abort_button = widgets.Button(description="Abort", button_style="danger", icon="stop")
        self.retry_button.on_click(lambda _b: self._act("retried", on_retry))
        self.skip_button.on_click(lambda _b: self._skip(on_skip))
        self.abort_button.on_click(
            lambda _b: self._act("aborted", lambda: on_abort(str(self.reason.value)))
        )
        self._status_html = widgets.HTML(layout=widgets.Layout(display="none"))
        self.widget = widgets.VBox(
            [
                widgets.HTML(f"<p style='margin:4px 0'>{what}{detail}</p>"),
                self.output,
                self.reason,
                widgets.HBox([self.retry_button, self.skip_button, self.abort_button]),
                self._status_html,
            ]
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        from master_sdk.notebook.summary import form_text

        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):  # a stable text/plain instead of the widget's repr
            bundle["text/plain"] = form_text(self)
        return bundle

    def _skip(self, on_skip: Callable[[Any], object]) -> None:
        text = str(self.output.value).strip()
        try:
            value = json.loads(text) if text else None
        except json.JSONDecodeError as exc:
            self._show("invalid", f"Output must be JSON (line {exc.lineno}: {exc.msg}).", ok=False)
            return
        self._act("skipped", lambda: on_skip(value))

    def _act(self, outcome: str, action: Callable[[], object]) -> None:
        # A disabled button still runs its handlers when clicked from code.
        if self._done or self._busy:
            return
        self._busy = True
        self._enable(False)
        try:
            action()
        except HandledElsewhere:
            self.status = ""
            self._status_html.layout.display = "none"
        except MasterError as exc:
            self._show(f"error: {exc}", f"error: {exc}", ok=False)
        except Exception as exc:  # any failure must reach the user, not a log they never see
            message = f"error: {type(exc).__name__}: {exc}"
            self._show(message, message, ok=False)
        else:
            self._done = True
            self._show(outcome, outcome.capitalize() + ".", ok=True)
        finally:
            self._busy = False
            self._enable(not self._done)

    def _enable(self, enabled: bool) -> None:
        for control in (
            self.retry_button,
            self.skip_button,
            self.abort_button,
            self.output,
            self.reason,
        ):
            control.disabled = not enabled

    def _show(self, status: str, text: str, *, ok: bool) -> None:
        self.status = status
        style = _OK_STYLE if ok else _BAD_STYLE
        self._status_html.value = f'<div style="{style}">{escape(text)}</div>'
        self._status_html.layout.display = None
