"""The experiments benchmark flow in LangGraph, run with ``graph.batch`` over many inputs.

``prepare`` (a tool) -> ``classify`` (a fake model call that sleeps like a remote model)
-> ``tag`` (a tool), checkpointed by ``SqliteSaver`` (WAL, SQLite's default
``synchronous``); one thread per case; ``graph.batch(inputs, configs,
max_concurrency=64)`` as LangGraph documents for running many inputs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from benchmarks.experiments_flow import classify_reply, label_of, prepared


class CaseState(TypedDict, total=False):
    """The graph's state: the input and each step's output."""

    text: str
    prepare: dict[str, Any]
    classify: dict[str, Any]
    tag: dict[str, Any]


def build(checkpointer: SqliteSaver, latency_s: float) -> Any:
    """The three-step graph with the fake model sleeping ``latency_s`` per call."""

    def prepare(state: CaseState) -> CaseState:
        return {"prepare": {"text": prepared(state["text"])}}

    def classify(state: CaseState) -> CaseState:
        time.sleep(latency_s)
        reply = classify_reply(state["prepare"]["text"])
        return {"classify": {"label": label_of(reply)}}

    def tag(state: CaseState) -> CaseState:
        label = state["classify"]["label"]
        return {"tag": {"label": label, "tag": f"#{label}"}}

    builder = StateGraph(CaseState)
    builder.add_node("prepare", prepare)
    builder.add_node("classify", classify)
    builder.add_node("tag", tag)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "classify")
    builder.add_edge("classify", "tag")
    builder.add_edge("tag", END)
    return builder.compile(checkpointer=checkpointer)


def run_batch(db: Path, texts: list[str], *, concurrency: int, latency_s: float) -> list[Any]:
    """Run every text as its own thread with ``graph.batch``; returns the final states."""
    with SqliteSaver.from_conn_string(str(db)) as saver:
        saver.setup()
        graph = build(saver, latency_s)
        configs: list[RunnableConfig] = [
            {"configurable": {"thread_id": f"case-{i}"}, "max_concurrency": concurrency}
            for i in range(len(texts))
        ]
        return list(graph.batch([{"text": t} for t in texts], configs, max_concurrency=concurrency))
