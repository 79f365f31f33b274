"""Scripted answers for the human steps of an experiment's runs.

``answers`` maps a step id to a decision — ``"approve"`` / ``"reject"`` (or True /
False, or ``{"decision": "approve", "comment": "..."}``) for a ``hitl`` step, a dict of data
for a ``user_input`` step — or is a callable ``(case, step) -> decision`` where ``case``
is the case's row and ``step`` what the run waits for (``step``, ``kind``, ``prompt``,
``show`` or ``schema``). ``None`` leaves the run paused: it shows in ``wb.pending()``
and the experiment completes once someone answers it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from master_sdk.errors import MasterError

if TYPE_CHECKING:
    from master_sdk.run import Run

Answers = Mapping[str, Any] | Callable[[Mapping[str, Any], Mapping[str, Any]], Any] | None

_APPROVE = frozenset({"approve", "approved", "yes"})
_REJECT = frozenset({"reject", "rejected", "no"})


class AnswerInvalid(MasterError):
    """A scripted answer does not fit the step it answers."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a paused run: approve / reject (with a comment), or submit data."""

    action: str  # "approve" | "reject" | "submit"
    comment: str | None = None
    data: Mapping[str, Any] | None = None


def decide(
    answers: Answers, case: Mapping[str, Any], waiting: Mapping[str, Any]
) -> Decision | None:
    """The decision for a paused run, or None to leave it paused.

    Raises:
        AnswerInvalid: the answer cannot be a decision for that kind of step.
    """
    if answers is None:
        return None
    step = str(waiting.get("step"))
    answer = answers(case, waiting) if callable(answers) else answers.get(step)
    if answer is None:
        return None
    if waiting.get("kind") == "hitl":
        return _approval(step, answer)
    if isinstance(answer, Mapping):
        return Decision("submit", data=dict(answer))
    raise AnswerInvalid(
        f"step '{step}' asks for input: its answer must be a dict of the fields it asks for, "
        f"not {type(answer).__name__}"
    )


def _approval(step: str, answer: Any) -> Decision:
    comment = None
    if isinstance(answer, Mapping):
        comment = answer.get("comment")
        answer = answer.get("decision")
    if answer is True or (isinstance(answer, str) and answer.lower() in _APPROVE):
        return Decision("approve", comment=comment)
    if answer is False or (isinstance(answer, str) and answer.lower() in _REJECT):
        return Decision("reject", comment=comment)
    raise AnswerInvalid(
        f"step '{step}' asks for an approval: answer 'approve' or 'reject' (or a dict with "
        f"'decision' and 'comment'), not {answer!r}"
    )


def answer_run(answers: Answers, case: Mapping[str, Any], run: Run, *, by: str | None) -> Run:
    """Answer ``run``'s human steps from ``answers`` until it ends or waits for one they do
    not answer; returns the run as it then is (the same handle).

    Raises:
        AnswerInvalid: an answer does not fit the step it answers.
        MasterError: what approving, rejecting or submitting raised.
    """
    while run.status.paused:
        decision = decide(answers, case, run.waiting_for or {})
        if decision is None:
            break
        if decision.action == "approve":
            run.approve(decision.comment, by=by)
        elif decision.action == "reject":
            run.reject(decision.comment, by=by)
        else:
            run.submit(decision.data or {}, by=by)
    return run


def describe(answers: Answers) -> Any:
    """How the answers are recorded with the experiment (a callable by its name)."""
    if answers is None or not callable(answers):
        return answers
    return f"<function {getattr(answers, '__qualname__', repr(answers))}>"
