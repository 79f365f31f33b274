"""The inbox: a widget over ``wb.pending()`` to decide many paused runs at once.

A sortable, paged list of paused runs with what a reviewer needs to decide (product, flow,
step, prompt, the ``show:`` value, who started it, how long it waits, who reserved it);
filters; a multiple selection that spans pages (pick items, *Select page*, or *Select all
matching* — every run the current filters match, on every page); one comment for Approve or
Reject of the whole selection;
Open shows one item's full view and form; inputs sharing one schema are answered in bulk
with one form. Every decision is committed first (at once, each on its own); the decided
runs are then continued in a background thread that updates the progress bar, so the
kernel stays responsive. A run whose continuation failed stays listed under *Failed* with
its error. Refresh shows runs paused or decided elsewhere; with ``every=`` (seconds) the
inbox looks by itself: while nothing is selected it refreshes the list, and while the
reviewer holds a selection it leaves the list as it is and says how many runs arrived or
left since it was read (a click never decides what the reviewer has not seen).

Drivable from code, like the forms: set ``selector.value`` (or :meth:`select`, or click
``select_all_button``), the ``comment``, click ``approve_button``; :meth:`join` waits for
the continuations.

The selection holds only runs the list shows: a refresh or a filter change drops the
selected runs it no longer lists (decided elsewhere, or filtered out), so a click never
decides what the reviewer cannot see.

Example:
    >>> inbox = wb.inbox(product="hello_world")          # doctest: +SKIP
    >>> inbox.select(inbox.frame["run_id"][:25])          # doctest: +SKIP
    >>> inbox.comment.value = "batch ok"                 # doctest: +SKIP
    >>> inbox.approve_button.click(); inbox.join()        # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

if TYPE_CHECKING:
    import pandas as pd

    from master_sdk import Workbench

SORTS: dict[str, tuple[str, bool]] = {
    "longest wait": ("waiting_since", True),
    "newest": ("waiting_since", False),
    "product / flow": ("product", True),
    "step": ("step", True),
    "started by": ("started_by", True),
}
"""Sort choices: label -> (column, ascending)."""
PAGE_SIZE = 50


class Inbox:
    """The inbox widget (see the module docstring).

    Attributes:
        frame: the pending list as last read (filtered and sorted).
        selector: a ``SelectMultiple`` over the current page (values are run ids); what
            is picked there joins the selection, which spans pages (:attr:`selected`).
        select_all_button: selects every run the current filters match, on every page.
        comment, by: the comment and the decider's name for the selection.
        approve_button, reject_button, open_button, refresh_button: the actions.
        notice: what changed in the store since the list was read (with ``every``).
        progress: decisions and continuations of the last batch.
        outcomes: one row per run of the last batch (``decide`` columns).
        failures: run id -> error, for runs whose decision or continuation failed.
        detail: where Open puts one run's view, or the bulk input form.
        widget: the container to display.
    """

    def __init__(
        self,
        wb: Workbench,
        *,
        product: str | None = None,
        flow: str | None = None,
        step: str | None = None,
        kind: str | None = None,
        experiment: str | None = None,
        older_than: Any = None,
        page_size: int = PAGE_SIZE,
        every: float | None = None,
    ) -> None:
        self._wb = wb
        self._fixed: dict[str, Any] = {"older_than": older_than, "experiment": experiment}
        self.page_size = page_size
        self.page = 0
        self.frame: pd.DataFrame = _empty()  # until the first refresh below
        self._quiet = True  # no refresh per control change while the inbox sets them
        self.failures: dict[str, str] = {}
        self.outcomes: pd.DataFrame = _empty()
        self._results: dict[str, Any] = {}
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._chosen: dict[str, None] = {}  # the selection, every page (an ordered set)
        self._showing = False  # the inbox itself is setting the selector's page
        # the list, the selection and their widgets change under this lock: the reviewer's
        # clicks and the watch thread (every=) both change them
        self._view = threading.RLock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.every: float | None = None

        self.product = widgets.Dropdown(description="Product", options=[("(all)", None)])
        self.flow = widgets.Text(value=flow or "", description="Flow", placeholder="any")
        self.step = widgets.Text(value=step or "", description="Step", placeholder="any")
        self.kind = widgets.Dropdown(
            description="Kind",
            options=[("(all)", None), ("approval", "approval"), ("input", "input")],
            value=kind,
        )
        self.sort = widgets.Dropdown(description="Sort", options=list(SORTS))
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.table = widgets.HTML()
        self.selector = widgets.SelectMultiple(
            options=[], rows=10, layout=widgets.Layout(width="98%")
        )
        self.select_page_button = widgets.Button(description="Select page")
        self.select_all_button = widgets.Button(description="Select all matching")
        self.clear_button = widgets.Button(description="Clear selection")
        self.selection_label = widgets.Label()
        self.prev_button = widgets.Button(description="◀", layout=widgets.Layout(width="40px"))
        self.next_button = widgets.Button(description="▶", layout=widgets.Layout(width="40px"))
        self.page_label = widgets.Label()
        self.by = widgets.Text(value=wb.user, description="By")
        self.comment = widgets.Text(description="Comment", placeholder="one comment for all")
        self.approve_button = widgets.Button(
            description="Approve selected", button_style="success", icon="check"
        )
        self.reject_button = widgets.Button(
            description="Reject selected", button_style="danger", icon="times"
        )
        self.open_button = widgets.Button(description="Open", icon="folder-open")
        self.answer_button = widgets.Button(description="Answer selected inputs")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="Continued")
        self.status = widgets.HTML()
        self.notice = widgets.HTML()
        self.failed_html = widgets.HTML()
        self.detail = widgets.VBox()

        self.refresh_button.on_click(lambda _b: self.refresh())
        self.select_page_button.on_click(lambda _b: self._select_page())
        self.select_all_button.on_click(lambda _b: self.select_all())
        self.clear_button.on_click(lambda _b: self.select(()))
        self.selector.observe(self._picked, names="value")
        self.prev_button.on_click(lambda _b: self._turn(-1))
        self.next_button.on_click(lambda _b: self._turn(1))
        self.approve_button.on_click(lambda _b: self.decide("approve"))
        self.reject_button.on_click(lambda _b: self.decide("reject"))
        self.open_button.on_click(lambda _b: self.open())
        self.answer_button.on_click(lambda _b: self.answer())
        for control in (self.product, self.kind, self.sort):
            control.observe(self._changed, names="value")

        self.widget = widgets.VBox(
            [
                widgets.HBox([self.product, self.kind, self.sort]),
                widgets.HBox([self.flow, self.step, self.refresh_button]),
                self.notice,
                self.table,
                self.selector,
                widgets.HBox(
                    [self.prev_button, self.page_label, self.next_button, self.select_page_button]
                ),
                widgets.HBox([self.select_all_button, self.clear_button, self.selection_label]),
                widgets.HBox([self.by, self.comment]),
                widgets.HBox(
                    [self.approve_button, self.reject_button, self.open_button, self.answer_button]
                ),
                self.progress,
                self.status,
                self.failed_html,
                self.detail,
            ]
        )
        if product is not None:
            self.product.options = [("(all)", None), (product, product)]
            self.product.value = product
        self._quiet = False
        self.refresh()
        if every is not None:
            self.watch(every)

    def _changed(self, _change: Any) -> None:
        if not self._quiet:
            self.page = 0
            self.refresh()

    # ------------------------------------------------------------------ the list

    def _pending(self) -> pd.DataFrame:
        return self._wb.pending(
            product=self.product.value,
            flow=self.flow.value or None,
            step=self.step.value or None,
            kind=self.kind.value,
            **self._fixed,
        )

    def refresh(self) -> None:
        """Read the pending list again (runs paused or decided elsewhere show up or go)."""
        with self._view:
            self._show(self._pending())

    def _show(self, frame: pd.DataFrame) -> None:
        wb = self._wb
        self.notice.value = ""
        column, ascending = SORTS[self.sort.value]
        frame = frame.sort_values(column, ascending=ascending, kind="stable").reset_index(drop=True)
        self.frame = frame
        products = sorted(set(wb.products()) | set(frame["product"].astype(str)))
        options = [("(all)", None), *((p, p) for p in products)]
        if list(self.product.options) != options:
            keep = self.product.value
            quiet, self._quiet = self._quiet, True
            try:
                self.product.options = options
                self.product.value = keep if keep in products else None
            finally:
                self._quiet = quiet
        listed = set(frame["run_id"].astype(str))
        self._chosen = {r: None for r in self._chosen if r in listed}
        self.page = min(self.page, max(0, (len(frame) - 1) // self.page_size))
        self._render()

    def _page_frame(self) -> pd.DataFrame:
        start = self.page * self.page_size
        return self.frame.iloc[start : start + self.page_size]

    def _render(self) -> None:
        page = self._page_frame()
        total = len(self.frame)
        pages = max(1, -(-total // self.page_size))
        self.page_label.value = f"page {self.page + 1} of {pages} · {total} waiting"
        options = [(_label(row), str(row["run_id"])) for _i, row in page.iterrows()]
        self._showing = True
        try:
            self.selector.options = options
            self.selector.value = tuple(v for _l, v in options if v in self._chosen)
        finally:
            self._showing = False
        self.table.value = _table(page)
        self._render_selection()
        self._render_failures()

    def _render_selection(self) -> None:
        total = len(self.frame)
        chosen = len(self._chosen)
        self.selection_label.value = f"{chosen} selected of {total}"
        self.select_all_button.description = f"Select all {total} matching"

    def _picked(self, change: Any) -> None:
        """The reviewer picked on the current page: that page's part of the selection
        becomes what the selector shows; other pages' part stays."""
        if self._showing:
            return
        with self._view:
            page = [v for _l, v in self.selector.options]
            now = set(change["new"])
            for run_id in page:
                if run_id in now:
                    self._chosen[run_id] = None
                else:
                    self._chosen.pop(run_id, None)
            self._render_selection()

    def _render_failures(self) -> None:
        if not self.failures:
            self.failed_html.value = ""
            return
        items = "".join(
            f"<li><code>{escape(run_id)}</code>: {escape(error)}</li>"
            for run_id, error in self.failures.items()
        )
        self.failed_html.value = f"<b>Failed ({len(self.failures)})</b><ul>{items}</ul>"

    def _turn(self, by: int) -> None:
        with self._view:
            pages = max(1, -(-len(self.frame) // self.page_size))
            self.page = max(0, min(pages - 1, self.page + by))
            self._render()

    def _select_page(self) -> None:
        self.selector.value = tuple(v for _l, v in self.selector.options)

    def select(self, run_ids: Iterable[str]) -> None:
        """Make these runs the selection, on whatever page they are (ids the list does not
        show are ignored); ``select(())`` clears it."""
        wanted = {str(r) for r in run_ids}
        with self._view:
            self._chosen = {r: None for r in self.frame["run_id"].astype(str) if r in wanted}
            self._render()

    def select_all(self) -> None:
        """Select every run the current filters match, on every page."""
        self.select(self.frame["run_id"].astype(str))

    @property
    def selected(self) -> list[str]:
        """The selected run ids, every page, in the list's order."""
        chosen = self._chosen
        return [r for r in self.frame["run_id"].astype(str) if r in chosen]

    # ------------------------------------------------------------------ watching

    def watch(self, every: float) -> None:
        """Look at the store every ``every`` seconds from a background thread (replacing
        an earlier watch): with nothing selected the list is refreshed; with a selection
        it stays as it is and :attr:`notice` says how many runs arrived or left since it
        was read. Stops with :meth:`stop` or when the workbench closes."""
        from master_sdk.errors import MasterError

        if isinstance(every, bool) or not isinstance(every, int | float) or not every > 0:
            raise MasterError(f"every must be a positive number of seconds, not {every!r}")
        self.stop()
        self.every = float(every)
        self._stop = stop = threading.Event()
        self._watcher = threading.Thread(
            target=self._watch, args=(stop, self.every), name="inbox-watch", daemon=True
        )
        self._watcher.start()
        self._wb._inboxes.add(self)

    def stop(self) -> None:
        """Stop watching the store (idempotent); the list stays as last read."""
        self._stop.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=10)
        self.every = None

    @property
    def watching(self) -> bool:
        """True while a background thread looks at the store (``every=``)."""
        return self._watcher is not None and self._watcher.is_alive()

    def _watch(self, stop: threading.Event, every: float) -> None:
        from master_sdk.errors import MasterError

        while not stop.wait(every):
            try:
                self._look(stop)
            except MasterError as exc:  # shown; the next look tries again
                self.notice.value = f"<i>could not look at the store: {escape(str(exc))}</i>"

    def _look(self, stop: threading.Event) -> None:
        """One look (see :meth:`watch`): never while a batch is being decided here."""
        if self.busy:
            return
        frame = self._pending()
        with self._view:
            if stop.is_set():
                return
            if not self._chosen:
                self._show(frame)
                return
            listed = set(self.frame["run_id"].astype(str))
            now = set(frame["run_id"].astype(str))
            came, went = len(now - listed), len(listed - now)
            parts = [f"{came} new" if came else "", f"{went} no longer waiting" if went else ""]
            said = " and ".join(p for p in parts if p)
            self.notice.value = (
                f"<b>{said}</b> since this list was read: Refresh to see them "
                "(the list stays as it is while items are selected)"
                if said
                else ""
            )

    # ------------------------------------------------------------------ deciding

    def decide(
        self,
        action: str,
        data: dict[str, Any] | None = None,
        *,
        run_ids: list[str] | None = None,
        already_decided: Iterable[str] = (),
    ) -> None:
        """Decide every selected run (``approve`` / ``reject`` with the comment, or
        ``submit`` with ``data``), then continue them in a background thread (with the
        runs ``decided`` already)."""
        import pandas as pd

        run_ids = self.selected if run_ids is None else run_ids
        first = list(already_decided)
        if not run_ids and not first:
            self.status.value = "Select at least one item first."
            return
        if self._worker is not None and self._worker.is_alive():
            self.status.value = "Still continuing the last batch; wait for it to finish."
            return
        frame = self._wb.decide(
            run_ids,
            action,
            comment=self.comment.value or None,
            data=data,
            by=self.by.value or None,
            proceed=False,
        )
        if first:
            done = pd.DataFrame(
                {"run_id": first, "outcome": "decided", "status": "decided", "error": None}
            ).astype("string")
            frame = pd.concat([done, frame], ignore_index=True)
        mine = (frame["outcome"] == "decided") & (frame["status"] == "decided")
        todo = [str(r) for r in frame.loc[mine, "run_id"]]
        with self._lock:
            self._results = {str(r.run_id): r for r in frame.itertuples(index=False)}
            for r in frame.itertuples(index=False):
                if r.outcome != "decided":
                    self.failures[str(r.run_id)] = f"{r.outcome}: {r.error}"
        self.outcomes = frame
        self.progress.max = max(1, len(todo))
        self.progress.value = 0
        refused = int((frame["outcome"] != "decided").sum())
        self.status.value = (
            f"{action}: {len(frame) - refused} decided"
            + (f", {refused} not (see Failed)" if refused else "")
            + (f"; continuing {len(todo)} in the background…" if todo else "")
        )
        self.refresh()
        self._worker = threading.Thread(
            target=self._continue, args=(todo, action), name="inbox-continue", daemon=True
        )
        self._worker.start()

    def _continue(self, run_ids: list[str], action: str) -> None:
        import pandas as pd

        def progress(outcome: Any, done: int, total: int) -> None:
            with self._lock:
                self._results[outcome.run_id] = outcome
                if outcome.outcome not in ("continued", "taken"):
                    self.failures[outcome.run_id] = f"{outcome.outcome}: {outcome.error}"
            self.progress.value = done

        try:
            outcomes = self._wb.work(run_ids, on_progress=progress)
        except BaseException as exc:  # shown, never lost in a thread
            self.status.value = f"continuing stopped: {escape(str(exc))}"
            raise
        with self._lock:
            rows = [
                {"run_id": r.run_id, "outcome": r.outcome, "status": r.status, "error": r.error}
                for r in self._results.values()
            ]
        self.outcomes = pd.DataFrame(rows, columns=list(outcomes.columns)).astype("string")
        failed = int((~outcomes["outcome"].isin(["continued", "taken"])).sum())
        self.status.value = f"{action}: {len(outcomes)} continued" + (
            f", {failed} failed (see Failed)" if failed else ""
        )
        self._render_failures()

    def join(self, timeout: float | None = 60) -> None:
        """Wait for the background continuations of the last batch (tests, scripts)."""
        if self._worker is not None:
            self._worker.join(timeout)

    @property
    def busy(self) -> bool:
        """True while a batch is being continued in the background."""
        return self._worker is not None and self._worker.is_alive()

    # ------------------------------------------------------------------ one item, inputs

    def open(self) -> Any:
        """Show the first selected run's full view and form under the list."""
        if not self.selected:
            self.status.value = "Select an item to open."
            return None
        run = self._wb.get_run(self.selected[0], recover=False)
        view = run.view()
        self.detail.children = [view.widget]
        return view

    def answer(self) -> Any:
        """One input form for every selected input sharing one step (product, flow, step):
        submitting it submits the same data to each. Returns the form, or None."""
        chosen = self.frame[self.frame["run_id"].isin(self.selected)]
        if chosen.empty or set(chosen["kind"].astype(str)) != {"input"}:
            self.status.value = "Select inputs waiting at one step to answer them together."
            return None
        keys = {(str(r.product), str(r.flow), str(r.step)) for r in chosen.itertuples()}
        if len(keys) != 1:
            self.status.value = "The selected inputs wait at different steps: answer them apart."
            return None
        from master_sdk.notebook.forms import SchemaForm

        schema = (self._wb.get_run(self.selected[0], recover=False).waiting_for or {}).get(
            "schema"
        ) or {"type": "object"}
        ((product, flow, step),) = keys
        form = SchemaForm(
            schema,
            on_submit=self._submit_all,
            title=f"{len(chosen)} runs of {product}/{flow} · {step}",
            prompt=str(chosen["prompt"].iloc[0] or ""),
        )
        self.detail.children = [form.widget]
        return form

    def _submit_all(self, data: dict[str, Any]) -> None:
        """Submit ``data`` to the first selected run alone first, so that input failing
        the schema raises here (the form shows it under its fields, nothing is recorded),
        then to every other selected run; then continue them all."""
        first, *rest = self.selected
        self._wb.resume(first, "submit", data=data, by=self.by.value or None, proceed=False)
        self.decide("submit", data, run_ids=rest, already_decided=[first])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # the widget view, with a short plain-text form (the widget's own repr lists every
        # child's value, waiting times included)
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            data["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        return f"Inbox({len(self.frame)} waiting)"


def _empty() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame()


def _label(row: Any) -> str:
    reserved = f" · reserved by {row['reserved_by']}" if _present(row["reserved_by"]) else ""
    show = f" · {row['show']}" if _present(row["show"]) else ""
    return (
        f"{str(row['run_id'])[-8:]} · {row['product']}/{row['flow']} · {row['step']} "
        f"({row['kind']}) · {row['started_by']} · {_waited(row['waited'])}{reserved}{show}"
    )[:240]


def _present(value: Any) -> bool:
    import pandas as pd

    return value is not None and not pd.isna(value)


def _waited(value: Any) -> str:
    seconds = int(value.total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400} d"
    if seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _table(page: pd.DataFrame) -> str:
    if page.empty:
        return "<p>Nothing waiting.</p>"
    head = "".join(
        f"<th style='text-align:left;padding:2px 6px'>{h}</th>"
        for h in (
            "run",
            "product/flow",
            "step",
            "kind",
            "prompt",
            "show",
            "by",
            "waited",
            "reserved",
        )
    )
    body = []
    for row in page.itertuples():
        reserved = row.reserved_by if _present(row.reserved_by) else ""
        show = row.show if _present(row.show) else ""
        cells = (
            str(row.run_id)[-8:],
            f"{row.product}/{row.flow}",
            row.step,
            row.kind,
            row.prompt,
            show,
            row.started_by,
            _waited(row.waited),
            reserved,
        )
        body.append(
            "<tr>"
            + "".join(f"<td style='padding:2px 6px'>{escape(str(c))}</td>" for c in cells)
            + "</tr>"
        )
    return (
        "<table style='border-collapse:collapse;font-size:12px'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )
