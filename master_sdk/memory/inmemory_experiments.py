"""The in-memory store's experiments (see ``memory/experiments.py``): kept as the SQLite
store keeps them (JSON texts through the store's ``scrub``), joined with runs on read."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from master_sdk.memory.experiments import (
    CaseRecord,
    CaseRun,
    CaseUpdate,
    ExperimentRecord,
    experiment_exists,
    experiment_not_found,
)

if TYPE_CHECKING:
    import threading

    from master_sdk.memory.encoding import Encoder


@dataclass(slots=True)
class _Kept:
    record: ExperimentRecord  # params as JSON text
    cases: dict[str, CaseRecord] = field(default_factory=dict)  # row/scores as JSON text
    order: int = 0


def _loads(text: Any) -> Any:
    return json.loads(text) if text is not None else None


def _same(text: Any) -> Any:
    return text


class InMemoryExperiments:
    """The :class:`~master_sdk.memory.experiments.ExperimentStore` half of
    ``InMemoryStore``."""

    if TYPE_CHECKING:  # provided by InMemoryStore
        _enc: Encoder
        _lock: threading.RLock
        _runs: dict[str, Any]

        def _check(self) -> None: ...

    def _experiments(self) -> dict[str, _Kept]:
        kept: dict[str, _Kept] | None = self.__dict__.get("_kept_experiments")
        if kept is None:
            kept = {}
            self.__dict__["_kept_experiments"] = kept
        return kept

    def _kept(self, name: str) -> _Kept:
        found = self._experiments().get(name)
        if found is None:
            raise experiment_not_found(name)
        return found

    def create_experiment(self, record: ExperimentRecord, cases: Sequence[CaseRecord]) -> None:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        dumps = self._enc.dumps
        with self._lock:
            self._check()
            experiments = self._experiments()
            if record.name in experiments:
                raise experiment_exists(record.name)
            header = ExperimentRecord(**{**_fields(record), "params": dumps(record.params)})
            kept = _Kept(header, order=len(experiments))
            for c in cases:
                row: Any = dumps(c.row)  # kept as JSON text, like SQLite
                scores: Any = dumps(c.scores)
                kept.cases[c.case_key] = CaseRecord(
                    c.case_key, c.idx, row, c.run_id, scores, c.error, c.invalid
                )
            experiments[record.name] = kept

    def _record(self, kept: _Kept) -> ExperimentRecord:
        header = kept.record
        return ExperimentRecord(
            **{**_fields(header), "params": _loads(header.params), "cases": len(kept.cases)}
        )

    def get_experiment(self, name: str) -> ExperimentRecord:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        with self._lock:
            return self._record(self._kept(name))

    def experiments(self) -> list[ExperimentRecord]:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        with self._lock:
            kept = sorted(
                self._experiments().values(),
                key=lambda k: (k.record.created_us, k.order),
                reverse=True,
            )
            return [self._record(k) for k in kept]

    def set_experiment_status(
        self,
        name: str,
        status: str,
        *,
        error: str | None,
        at_us: int,
        params: dict[str, Any] | None = None,
    ) -> None:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        with self._lock:
            self._check()
            header = self._kept(name).record
            header.status = status
            header.error = self._enc.text(error)
            header.updated_us = at_us
            if params is not None:
                header.params = self._enc.dumps(params)  # type: ignore[assignment]  # JSON text

    def update_cases(self, name: str, updates: Sequence[CaseUpdate]) -> None:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        with self._lock:
            self._check()
            cases = self._kept(name).cases
            for u in updates:
                case = cases.get(u.case_key)
                if case is None:
                    continue
                if u.run_id is not None:
                    case.run_id = u.run_id
                if u.scores is not None:
                    case.scores = self._enc.dumps(u.scores)  # type: ignore[assignment]
                if u.set_error:
                    case.error = self._enc.text(u.error)

    def claim_case(
        self, name: str, case_key: str, run_id: str, *, expected: str | None = None
    ) -> str | None:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        with self._lock:
            self._check()
            case = self._kept(name).cases.get(case_key)
            if case is None:
                return None
            if case.run_id == expected:
                case.run_id = run_id
            return case.run_id

    def experiment_cases(self, name: str, *, rows: bool = True, raw: bool = False) -> list[CaseRun]:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        parse: Callable[[Any], Any] = _same if raw else _loads
        with self._lock:
            cases = sorted(self._kept(name).cases.values(), key=lambda c: c.idx)
            out: list[CaseRun] = []
            for c in cases:
                stored = self._runs.get(c.run_id) if c.run_id else None
                run = stored.run if stored is not None else None
                state = _loads(run.state) if run is not None else None
                blocked = None
                if run is not None and run.status == "blocked":
                    blocked = ((state or {}).get("violation") or {}).get("rule")
                out.append(
                    CaseRun(
                        case_key=c.case_key,
                        idx=c.idx,
                        invalid=c.invalid,
                        row=parse(c.row) if rows else {},
                        scores=parse(c.scores),
                        case_error=c.error,
                        run_id=run.run_id if run else None,
                        status=run.status if run else None,
                        output=parse(run.output) if run else None,
                        tokens_in=run.tokens_in if run else None,
                        tokens_out=run.tokens_out if run else None,
                        cost_usd=run.cost_usd if run else None,
                        created_us=run.created_us if run else None,
                        updated_us=run.updated_us if run else None,
                        run_error=run.error if run else None,
                        blocked_rule=blocked,
                    )
                )
            return out

    def case_statuses(self, name: str) -> dict[str | None, int]:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        counts: dict[str | None, int] = {}
        for case in self.experiment_cases(name, rows=False, raw=True):
            counts[case.status] = counts.get(case.status, 0) + 1
        return counts

    def tagged_runs(self, name: str) -> dict[str, str]:
        """See :class:`~master_sdk.memory.experiments.ExperimentStore`."""
        found: dict[str, str] = {}
        with self._lock:
            stored = sorted(self._runs.values(), key=lambda s: s.run.pk or 0)
            for s in stored:
                tag = (_loads(s.run.state) or {}).get("experiment") or {}
                if tag.get("name") == name and tag.get("case") is not None:
                    found[str(tag["case"])] = s.run.run_id
        return found


def _fields(record: ExperimentRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in ExperimentRecord.__dataclass_fields__}
