"""Helpers for experiment tests: a triage project and a labelling model that counts calls."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import master_sdk as ms
from master_sdk.models.types import ModelRequest, ModelResponse, Usage
from tests.support.triage import label_of, write_triage


class LabelModel:
    """Answers ``Label: spam|ham`` from the prompt; counts calls per prompt (thread-safe)."""

    name = "label"

    def __init__(self, *, fail_on: str | None = None) -> None:
        self.prompts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.fail_on = fail_on

    @property
    def calls(self) -> int:
        return sum(self.prompts.values())

    def complete(self, request: ModelRequest) -> ModelResponse:
        prompt = request.messages[-1].content
        if self.fail_on is not None and self.fail_on in prompt:
            raise RuntimeError(f"model down for {self.fail_on}")
        with self._lock:
            self.prompts[prompt] += 1
        return ModelResponse(
            text=f"Label: {label_of(prompt)}", usage=Usage(12, 3), model=request.model
        )


def triage_cases(n: int, *, style: str = "v1") -> list[dict[str, object]]:
    """``n`` cases keyed c0..c<n-1>: every third mentions money (expected spam)."""
    rows: list[dict[str, object]] = []
    for i in range(n):
        spam = i % 3 == 0
        rows.append(
            {
                "case_key": f"c{i}",
                "text": f"win money now, offer {i}" if spam else f"meeting notes number {i}",
                "style": style,
                "expected_label": "spam" if spam else "ham",
            }
        )
    return rows


def open_triage(root: Path, **kwargs: object) -> ms.Workbench:
    """A workbench on a fresh triage project under ``root`` (created if missing)."""
    if not (root / "products").exists():
        write_triage(root)
    return ms.Workbench.open(root, **kwargs)  # type: ignore[arg-type]


class TravellingLabelModel:
    """``LabelModel``'s answers with no lock or counters, so it pickles and travels to Ray
    workers; ``latency_s`` sleeps like a remote model; ``rate_limit_every`` answers a
    429 to every n-th call of each process."""

    name = "label"

    def __init__(self, *, latency_s: float = 0.0, rate_limit_every: int = 0) -> None:
        self.latency_s = latency_s
        self.rate_limit_every = rate_limit_every
        self.seen = 0

    def complete(self, request: ModelRequest) -> ModelResponse:
        import time

        from master_sdk.errors import ModelCallError

        self.seen += 1
        if self.rate_limit_every and self.seen % self.rate_limit_every == 0:
            raise ModelCallError("429 slow down", kind="rate_limit", retryable=True, status=429)
        if self.latency_s:
            time.sleep(self.latency_s)
        prompt = request.messages[-1].content
        return ModelResponse(
            text=f"Label: {label_of(prompt)}", usage=Usage(12, 3), model=request.model
        )
