"""Retention: removing old runs from a store (``master store prune``).

A run is pruned when it was last updated before the cutoff and its status is one of those
asked for: by default the ended ones (``completed``, ``rejected``, ``blocked``,
``aborted``). A run that may still continue (``running``, ``waiting_approval``,
``waiting_input``, ``decided``, ``interrupted``, ``failed``) is pruned only when its status
is named explicitly. A run that is a case of an experiment is kept (the experiment's
results read it); it is counted in the report. Flow texts are kept: they are few and
small, and other runs may share them.

Each store prunes in one transaction: a run resumed while the prune runs is either pruned
before it changes or kept (its status or time no longer match). A dry run reads the same
selection and writes nothing.

Example:
    >>> parse_duration("90d"), parse_duration("12h")
    (7776000, 43200)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from master_sdk.contracts.status import RunStatus
from master_sdk.errors import ConfigError

__all__ = ["PRUNED_BY_DEFAULT", "PruneReport", "parse_duration", "prune_statuses"]

PRUNED_BY_DEFAULT: tuple[str, ...] = ("aborted", "blocked", "completed", "rejected")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


@dataclass(slots=True, frozen=True)
class PruneReport:
    """What a prune removed (or, for a dry run, would remove).

    ``by_status`` counts the runs by status; ``attempts``, ``events``, ``approvals`` and
    ``inputs`` count their rows; ``kept_in_experiments`` counts runs that matched but were
    kept because an experiment holds them.
    """

    dry_run: bool
    before_us: int
    statuses: tuple[str, ...]
    runs: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    events: int = 0
    approvals: int = 0
    inputs: int = 0
    kept_in_experiments: int = 0

    def summary(self) -> str:
        """One line for people."""
        verb = "would remove" if self.dry_run else "removed"
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(self.by_status.items())) or "none"
        kept = (
            f"; kept {self.kept_in_experiments} run(s) held by experiments"
            if self.kept_in_experiments
            else ""
        )
        return (
            f"{verb} {self.runs} run(s) ({statuses}) with {self.attempts} step attempt(s), "
            f"{self.events} trace event(s), {self.approvals} approval(s) and {self.inputs} "
            f"input(s){kept}"
        )


def parse_duration(text: str) -> int:
    """Seconds in ``text``: a whole number and a unit, ``s``, ``m``, ``h``, ``d`` or ``w``.

    Raises:
        ConfigError: not of that form, or zero.
    """
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ConfigError(
            f"--older-than {text!r}: give a positive whole number and a unit: s, m, h, d or w "
            "(for example 90d, 12h)",
            key="older_than",
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


def prune_statuses(given: Iterable[str] | None) -> tuple[str, ...]:
    """The statuses to prune: ``given`` (checked; commas allowed), or the ended ones.

    Raises:
        ConfigError: a status that is not a run status.
    """
    if given is None:
        return PRUNED_BY_DEFAULT
    names: list[str] = []
    for item in given:
        names.extend(n.strip() for n in item.split(",") if n.strip())
    known = {s.value for s in RunStatus}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(
            f"--status {', '.join(unknown) or '(empty)'}: not a run status; give one or more "
            f"of {', '.join(sorted(known))}",
            key="status",
        )
    return tuple(sorted(set(names)))


def report(
    *,
    dry_run: bool,
    before_us: int,
    statuses: Sequence[str],
    by_status: dict[str, int],
    attempts: int,
    events: int,
    approvals: int,
    inputs: int,
    kept: int,
) -> PruneReport:
    """A :class:`PruneReport` from a store's counts."""
    return PruneReport(
        dry_run=dry_run,
        before_us=before_us,
        statuses=tuple(statuses),
        runs=sum(by_status.values()),
        by_status=dict(sorted(by_status.items())),
        attempts=attempts,
        events=events,
        approvals=approvals,
        inputs=inputs,
        kept_in_experiments=kept,
    )
