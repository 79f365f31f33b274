"""The inbox widget, driven from code as a reviewer would drive it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import master_sdk as ms
from tests.support.waiting import wait_until


def waiting(wb: ms.Workbench, n: int, *, by: str = "bob") -> list[str]:
    return [wb.run("hello_world/greet", inputs={"text": f"t{i}"}, by=by).id for i in range(n)]


def test_the_inbox_lists_pages_and_sorts_the_pending_runs(wb: ms.Workbench) -> None:
    """Pages of ``page_size``; next/previous move between them; the table and the selector
    show the current page."""
    ids = waiting(wb, 7)
    inbox = wb.inbox(page_size=3)
    assert len(inbox.frame) == 7 and inbox.page_label.value.startswith("page 1 of 3")
    assert [v for _l, v in inbox.selector.options] == ids[:3]
    inbox.next_button.click()
    inbox.next_button.click()
    assert [v for _l, v in inbox.selector.options] == ids[6:]
    inbox.sort.value = "newest"
    assert [v for _l, v in inbox.selector.options] == list(reversed(ids))[:3]
    assert "t" in inbox.table.value and "<table" in inbox.table.value


def test_approving_a_selection_with_one_comment_decides_and_continues_each(
    wb: ms.Workbench,
) -> None:
    """Select several, one comment, Approve: every decision is stored with that comment,
    the runs are continued in the background (progress reaches the count), and a refresh
    shows them at their next pause; the others stay."""
    ids = waiting(wb, 5)
    inbox = wb.inbox()
    inbox.select(ids[:3])
    inbox.comment.value = "batch ok"
    inbox.by.value = "ana"
    inbox.approve_button.click()
    inbox.join()
    assert inbox.progress.value == 3 and not inbox.busy
    assert set(inbox.outcomes["outcome"]) == {"continued"}
    audit = wb.approvals()
    assert sorted(audit["run_id"]) == sorted(ids[:3]) and set(audit["comment"]) == {"batch ok"}
    inbox.refresh()
    kinds = dict(zip(inbox.frame["run_id"], inbox.frame["kind"].astype(str), strict=True))
    assert [kinds[i] for i in ids] == ["input"] * 3 + ["approval"] * 2


def test_refused_items_stay_visible_with_their_error(wb: ms.Workbench) -> None:
    """A run reserved by someone else is refused; it stays in the list and under Failed
    with the reason, while the rest of the selection goes through."""
    ids = waiting(wb, 3)
    wb.reserve(ids[0], 10, by="zoe")
    inbox = wb.inbox(kind="approval")
    inbox.select(ids)
    inbox.by.value = "ana"
    inbox.reject_button.click()
    inbox.join()
    assert ids[0] in inbox.failures and "zoe reserved it" in inbox.failures[ids[0]]
    assert "Failed (1)" in inbox.failed_html.value
    assert list(inbox.frame["run_id"]) == [ids[0]]
    assert {wb.get_run(i).status for i in ids[1:]} == {"rejected"}


def test_inputs_sharing_a_step_are_answered_with_one_form(wb: ms.Workbench) -> None:
    """Select inputs waiting at the same step, Answer: one form; invalid data shows under
    its field and records nothing; valid data is submitted to each and continued."""
    ids = waiting(wb, 3)
    wb.decide(ids, "approve", by="ana")
    inbox = wb.inbox(kind="input")
    inbox.select(ids)
    form = inbox.answer()
    assert form is not None
    form.fields["audience"].value = ""
    form.submit_button.click()
    assert form.status == "invalid" and {wb.get_run(i).status for i in ids} == {"waiting_input"}
    form.fields["audience"].value = "the board"
    form.submit_button.click()
    inbox.join()
    assert form.status == "submitted"
    assert {wb.get_run(i).status for i in ids} == {"completed"}


def test_open_shows_one_runs_full_view_and_its_form(wb: ms.Workbench) -> None:
    """Open puts the first selected run's view (with its approval form) under the list."""
    ids = waiting(wb, 2)
    inbox = wb.inbox()
    inbox.select(ids[1:])
    view = inbox.open()
    assert view is not None and inbox.detail.children == (view.widget,)


def test_select_all_matching_selects_every_page_of_the_filter_and_nothing_else(
    wb: ms.Workbench,
) -> None:
    """With ``kind=approval`` over three pages, *Select all matching* selects the eight
    approvals on every page and none of the inputs; approving decides exactly those."""
    ids = waiting(wb, 12)
    wb.decide(ids[:4], "approve", by="ana")  # these now wait for input
    inbox = wb.inbox(page_size=3)
    inbox.kind.value = "approval"
    assert len(inbox.frame) == 8 and inbox.page_label.value.startswith("page 1 of 3")
    assert inbox.select_all_button.description == "Select all 8 matching"
    inbox.select_all_button.click()
    assert inbox.selected == ids[4:] and inbox.selection_label.value == "8 selected of 8"
    assert list(inbox.selector.value) == ids[4:7]  # the page shows its part of it
    inbox.comment.value = "all of them"
    inbox.by.value = "carl"
    inbox.approve_button.click()
    inbox.join()
    audit = wb.approvals()
    assert sorted(audit.loc[audit["by"] == "carl", "run_id"]) == sorted(ids[4:])
    assert inbox.selected == [] and inbox.frame.empty  # decided runs leave the list


def test_picks_on_different_pages_add_up_and_a_filter_change_drops_the_unlisted(
    wb: ms.Workbench,
) -> None:
    """Picking on page 1, then on page 2, selects both; turning pages keeps the picks; a
    filter that no longer lists a run drops it from the selection; Clear empties it."""
    ids = waiting(wb, 6)
    wb.decide(ids[3:4], "approve", by="ana")  # ids[3] waits for input now
    inbox = wb.inbox(page_size=2)
    listed = list(inbox.frame["run_id"])  # longest wait first: ids[3] waits since last
    assert listed == [ids[0], ids[1], ids[2], ids[4], ids[5], ids[3]]
    inbox.selector.value = (ids[0],)
    inbox.next_button.click()
    inbox.selector.value = (ids[4],)
    inbox.next_button.click()
    inbox.selector.value = (ids[3],)
    assert inbox.selected == [ids[0], ids[4], ids[3]]
    inbox.prev_button.click()
    inbox.prev_button.click()
    assert list(inbox.selector.value) == [ids[0]]
    inbox.kind.value = "approval"
    assert inbox.selected == [ids[0], ids[4]]
    inbox.clear_button.click()
    assert inbox.selected == [] and inbox.selector.value == ()


def test_a_watching_inbox_shows_runs_paused_elsewhere_without_a_click(
    wb: ms.Workbench, hello_root: Path
) -> None:
    """With ``every=``, a run paused by another workbench (another kernel) appears in the
    list by itself, and one decided elsewhere leaves it; ``stop()`` ends the thread."""
    first = waiting(wb, 2)
    inbox = wb.inbox(every=0.05)
    try:
        assert inbox.watching and len(inbox.frame) == 2
        with ms.Workbench.open(hello_root) as other:
            (late,) = waiting(other, 1, by="cy")
            other.get_run(first[0]).reject("elsewhere", by="ana")
        assert wait_until(lambda: set(inbox.frame["run_id"]) == {first[1], late})
        assert inbox.page_label.value.endswith("2 waiting")
    finally:
        inbox.stop()
    assert not inbox.watching and inbox.every is None


def test_a_watching_inbox_keeps_a_selected_list_and_says_what_changed(
    wb: ms.Workbench,
) -> None:
    """While items are selected the list is not replaced under the reviewer: the notice
    says how many arrived and left; Refresh then shows them and clears the notice."""
    ids = waiting(wb, 3)
    inbox = wb.inbox(every=0.05)
    try:
        inbox.select(ids[:1])
        listed = list(inbox.frame["run_id"])
        new = waiting(wb, 2)
        wb.get_run(ids[2]).reject("done", by="ana")
        assert wait_until(lambda: "2 new and 1 no longer waiting" in inbox.notice.value)
        assert list(inbox.frame["run_id"]) == listed and inbox.selected == ids[:1]
        inbox.refresh_button.click()
        assert set(inbox.frame["run_id"]) == {ids[0], ids[1], *new}
        assert inbox.selected == ids[:1] and inbox.notice.value == ""
    finally:
        inbox.stop()


def test_closing_the_workbench_stops_its_watching_inboxes(hello_root: Path) -> None:
    """No thread is left looking at a closed store; a bad interval is refused."""
    bench = ms.Workbench.open(hello_root)
    inbox = bench.inbox(every=0.05)
    assert inbox.watching
    bench.close()
    assert not inbox.watching
    assert not any(t.name == "inbox-watch" and t.is_alive() for t in threading.enumerate())
    with ms.Workbench.open(hello_root) as again:
        for bad in (0, -1, "5", True):
            with pytest.raises(ms.MasterError, match="every must be a positive number"):
                again.inbox(every=bad)
