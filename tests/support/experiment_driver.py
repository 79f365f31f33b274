"""A process that runs (or resumes) an experiment, for kill-and-resume tests and benchmarks.

    python -m tests.support.experiment_driver ROOT NAME N CALL_LOG [--resume] [--latency S]

The model answers like :class:`tests.support.experiments.LabelModel` after ``latency``
seconds. It counts every call twice, each as one line flushed at once (a killed process
leaves every counted call in the file): the prompt is appended to CALL_LOG + ".requests"
when the request arrives, and to CALL_LOG when the reply is handed back (after its
latency). A prompt in the first file but not the second was cut mid-flight by a kill.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import master_sdk as ms
from master_sdk.models.types import ModelRequest, ModelResponse, Usage
from tests.support.experiments import open_triage, triage_cases
from tests.support.triage import label_of

SCORERS = [ms.scorers.exact("label", expected="expected_label")]


def requests_log(log: Path) -> Path:
    """Where the model counts requests as they arrive (``log`` counts replies)."""
    return log.with_name(log.name + ".requests")


class LoggingModel:
    """Answers after a delay and logs each answered prompt to a file."""

    name = "logging"

    def __init__(self, log: Path, latency: float) -> None:
        self._file = log.open("a", encoding="utf-8", buffering=1)
        self._requests = requests_log(log).open("a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self.latency = latency

    def complete(self, request: ModelRequest) -> ModelResponse:
        prompt = request.messages[-1].content.replace("\n", " ")
        with self._lock:
            self._requests.write(prompt + "\n")
            self._requests.flush()
        time.sleep(self.latency)
        with self._lock:
            self._file.write(prompt + "\n")
            self._file.flush()
        return ModelResponse(
            text=f"Label: {label_of(prompt)}", usage=Usage(12, 3), model=request.model
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("name")
    parser.add_argument("n", type=int)
    parser.add_argument("log", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    model = LoggingModel(args.log, args.latency)
    with open_triage(args.root, providers={"default": model}) as wb:
        if args.resume:
            wb.experiment(args.name).resume(scorers=SCORERS, progress=False)
        else:
            wb.evaluate(
                "triage/classify",
                triage_cases(args.n),
                name=args.name,
                scorers=SCORERS,
                concurrency=args.concurrency,
                progress=False,
            )


if __name__ == "__main__":
    main()
