"""Vector memory through a product's tools and the notebook API, on real SQLite stores.

The ``mem`` product (``tests/support/memory_project.py``) declares ``notes`` (tag, size;
at most 50 entries of at most 200 characters) and ``secret`` (not in its
``allowed_collections``); its tools add, search and delete, and an agent embeds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import master_sdk as ms
from master_sdk.errors import CollectionError, PolicyViolation
from master_sdk.models.providers.fake import hashed_ngrams
from tests.support.memory_project import make_memory_project

EMAIL = "ana.lopez@example.com"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_memory_project(tmp_path / "project")


@pytest.fixture
def wb(root: Path) -> Iterator[ms.Workbench]:
    bench = ms.Workbench.open(root)
    yield bench
    bench.close()


def remember(wb: ms.Workbench, texts: list[str], tag: str = "a") -> ms.Run:
    run = wb.run("mem/remember", inputs={"texts": texts, "tag": tag})
    assert run.status == "completed", run.error
    return run


def test_a_tool_adds_and_another_run_finds_the_most_similar(wb: ms.Workbench) -> None:
    """Entries added by one run are searched by the next, best match first."""
    remember(wb, ["my parcel arrived damaged", "reset my password", "refund a double charge"])
    run = wb.run("mem/recall", inputs={"query": "the parcel came damaged"})
    hits = run.output["hits"]
    assert hits[0]["text"] == "my parcel arrived damaged"
    assert hits[0]["score"] > hits[1]["score"]


def test_a_filter_keeps_only_matching_entries(wb: ms.Workbench) -> None:
    """``where`` on a declared field restricts the hits."""
    remember(wb, ["parcel damaged in transit"], tag="shipping")
    remember(wb, ["parcel invoice wrong"], tag="billing")
    run = wb.run("mem/recall", inputs={"query": "parcel damaged", "tag": "billing"})
    assert [h["text"] for h in run.output["hits"]] == ["parcel invoice wrong"]


def test_adds_and_searches_are_traced_and_embedding_tokens_are_budgeted(
    wb: ms.Workbench,
) -> None:
    """The embeddings call is a model_called event (operation embeddings) whose tokens
    count in the run; the search event holds the redacted query, k, filter, ids, scores."""
    added = remember(wb, ["alpha note", "beta note"])
    trace = added.trace()
    call = trace[trace["event"] == "model_called"].iloc[0]
    assert call["attrs"]["operation"] == "embeddings" and call["attrs"]["texts"] == 2
    assert call["name"] == "default_embedding" and call["tokens_in"] > 0
    budget = added.budget().set_index("budget")
    assert budget.loc["total_tokens", "used"] == call["tokens_in"]
    assert budget.loc["model_calls", "used"] == 1
    event = trace[trace["event"] == "memory_added"].iloc[0]
    assert event["name"] == "notes" and event["attrs"]["added"] == 2

    found = wb.run("mem/recall", inputs={"query": f"note from {EMAIL}", "tag": "a"})
    searched = found.trace().query("event == 'memory_searched'").iloc[0]
    attrs = searched["attrs"]
    assert attrs["query"] == "note from <EMAIL>"
    assert attrs["k"] == 3 and attrs["where"] == {"tag": "a"}
    assert [h["id"] for h in attrs["hits"]] == [h["id"] for h in found.output["hits"]]


def test_no_raw_personal_data_reaches_the_store_through_memory(
    wb: ms.Workbench, root: Path
) -> None:
    """Texts and string metadata are redacted before they are written; the file has no
    trace of the address."""
    remember(wb, [f"write to {EMAIL} about card 4111 1111 1111 1111"])
    stored = wb.memory("mem/notes").frame()
    assert stored["text"].tolist() == ["write to <EMAIL> about card <CARD>"]
    wb.close()
    for path in (root / "storage").iterdir():
        data = path.read_bytes()
        assert EMAIL.encode() not in data and b"4111 1111" not in data, path


def test_texts_are_embedded_redacted_by_default_and_raw_when_policy_allows(
    tmp_path: Path,
) -> None:
    """redact_before_embedding decides what the embedding model sees (the raw query then
    matches exactly only when raw text was embedded); the store holds the redacted text
    either way. (Inside a run, flow inputs are redacted before any tool sees them.)"""
    raw = f"mail {EMAIL} now"
    redacted = "mail <EMAIL> now"
    for flag in (True, False):
        root = make_memory_project(
            tmp_path / str(flag),
            policy=f"policy: {{redact_before_embedding: {str(flag).lower()}}}\n",
        )
        with ms.Workbench.open(root) as bench:
            notes = bench.memory("mem/notes")
            notes.add([raw])
            (hit,) = notes.search(raw, k=1)
            assert hit.text == redacted
            assert hit.score == pytest.approx(1.0, abs=1e-5)
            same = notes.search(redacted, k=1)[0].score
            assert (same == pytest.approx(1.0, abs=1e-5)) is flag


def test_a_collection_outside_allowed_collections_blocks_the_run(wb: ms.Workbench) -> None:
    """Asking for it is a policy violation even when the tool swallows the exception."""
    run = wb.run("mem/peek")
    assert run.status == "blocked"
    assert "allowed_collections" in (run.error or "")
    with pytest.raises(PolicyViolation, match="allowed_collections"):
        wb.memory("mem/secret")


def test_size_limits_block_the_run_and_write_nothing(wb: ms.Workbench) -> None:
    """A text over max_text_chars, or more entries than max_items, is refused before the
    write; the collection keeps what it had."""
    long = wb.run("mem/remember", inputs={"texts": ["x" * 201], "tag": "a"})
    assert long.status == "blocked" and "max_text_chars" in (long.error or "")
    remember(wb, [f"note {i}" for i in range(45)])
    over = wb.run("mem/remember", inputs={"texts": [f"more {i}" for i in range(6)], "tag": "a"})
    assert over.status == "blocked" and "max_items" in (over.error or "")
    assert wb.memory("mem/notes").count() == 45


def test_a_run_step_adds_under_stable_ids_and_deletes_by_id(wb: ms.Workbench) -> None:
    """Generated ids are run_id:step_id:n; delete removes them and reports the count."""
    run = remember(wb, ["one", "two"])
    assert run.output["ids"] == [f"{run.id}:add:0", f"{run.id}:add:1"]
    dropped = wb.run("mem/forget", inputs={"ids": [*run.output["ids"], "nope"]})
    assert dropped.output == {"deleted": 2}
    assert wb.memory("mem/notes").count() == 0


def test_the_notebook_sees_entries_as_dataframes(wb: ms.Workbench) -> None:
    """frame() lists entries with typed metadata columns and their origin; search hits
    have frame() too."""
    run = remember(wb, ["short", "a longer note"], tag="t")
    notes = wb.memory("mem/notes")
    frame = notes.frame()
    assert list(frame.columns) == [
        "id",
        "text",
        "tag",
        "size",
        "run_id",
        "step_id",
        "attempt",
        "added_at",
    ]
    assert (
        str(frame["size"].dtype) == "Int64"
        and str(frame["added_at"].dtype) == "datetime64[us, UTC]"
    )
    assert set(frame["run_id"]) == {run.id} and set(frame["step_id"]) == {"add"}
    hits = notes.search("a longer note", k=2)
    table = hits.frame()
    assert list(table.columns[:4]) == ["rank", "id", "score", "text"]
    assert table["text"].iloc[0] == "a longer note" and table["rank"].tolist() == [1, 2]
    assert str(table["size"].dtype) == "Int64" and str(table["tag"].dtype) == "string"


def test_notebook_adds_are_content_addressed(wb: ms.Workbench) -> None:
    """Adding the same text twice from a notebook keeps one entry."""
    notes = wb.memory("mem/notes")
    first = notes.add(["same text"], metadata=[{"tag": "n"}])
    again = notes.add(["same text"], metadata=[{"tag": "n"}])
    assert first == again and notes.count() == 1


def test_another_workbench_sees_writes_made_after_it_searched(root: Path) -> None:
    """A second workbench on the same store reloads the collection when its version moved."""
    with ms.Workbench.open(root) as one, ms.Workbench.open(root) as two:
        remember(one, ["first entry"])
        assert len(two.memory("mem/notes").search("entry", k=5)) == 1
        remember(one, ["second entry"])
        assert len(two.memory("mem/notes").search("entry", k=5)) == 2


def test_wrong_metadata_is_refused_naming_the_field(wb: ms.Workbench) -> None:
    """Undeclared fields and wrong types fail before anything is embedded."""
    notes = wb.memory("mem/notes")
    with pytest.raises(CollectionError, match=r"field 'colour'.*tag"):
        notes.add(["x"], metadata=[{"colour": "red"}])
    with pytest.raises(CollectionError, match="'size' must be integer, got str"):
        notes.add(["x"], metadata=[{"size": "big"}])
    with pytest.raises(CollectionError, match="id holds personal data"):
        notes.add(["x"], ids=[EMAIL])
    with pytest.raises(CollectionError, match="not one"):
        notes.add("a single string")  # type: ignore[arg-type]  # the mistake under test
    with pytest.raises(CollectionError, match="declares no vector collection 'nope'"):
        wb.memory("mem/nope")
    assert notes.count() == 0


def test_an_agent_embeds_through_its_context(wb: ms.Workbench) -> None:
    """ctx.embed on an agent uses default_embedding under the run's budget."""
    run = wb.run("mem/size", inputs={"text": "hello there"})
    assert run.status == "completed", run.error
    assert run.output["dims"] == 384 and run.output["tokens"] > 0
    events = run.trace()
    assert (events["event"] == "model_called").sum() == 1
    assert np.array_equal(hashed_ngrams(["hello there"])[0], hashed_ngrams(["hello there"])[0])


def test_memory_embeds_through_an_openai_compatible_server_with_retries(
    tmp_path: Path,
) -> None:
    """default_embedding on the openai provider: requests go to the loopback server in
    batches, a 429 is retried as policy allows, and both tries are in the trace."""
    from tests.support.openai_server import FakeOpenAIServer, Reply

    with FakeOpenAIServer() as server:
        root = make_memory_project(
            tmp_path / "project",
            policy="policy: {model_retries: {max_attempts: 2, backoff_s: 0}}\n",
        )
        (root / "configs" / "models.yaml").write_text(
            "models:\n"
            "  default: {provider: fake}\n"
            "  default_embedding: {provider: openai, kind: embedding, model: emb-small,\n"
            f"    base_url: '{server.base_url}', dimensions: 384, batch_size: 2}}\n",
            encoding="utf-8",
        )
        server.script(Reply.error(429, "slow down"))
        with ms.Workbench.open(root) as bench:
            run = remember(bench, ["one", "two", "three"])
            trace = run.trace()
            retried = trace[trace["event"] == "model_retry"]
            called = trace[trace["event"] == "model_called"]
            assert len(retried) == 1 and retried.iloc[0]["attrs"]["kind"] == "rate_limit"
            assert len(called) == 2  # two batches: 2 texts, then 1
            assert [c["texts"] for c in called["attrs"]] == [2, 1]
            assert {c["provider"] for c in called["attrs"]} == {"openai"}
            assert run.budget().set_index("budget").loc["model_calls", "used"] == 3
        sent = [r.body["input"] for r in server.embeddings]
        assert sent == [["one", "two"], ["one", "two"], ["three"]]


def test_an_export_of_chosen_runs_carries_no_vector_memory(
    wb: ms.Workbench, tmp_path: Path
) -> None:
    """Memory belongs to the product: exporting one run to SQLite does not share it."""
    import sqlite3
    from contextlib import closing

    remember(wb, ["private note about a customer"])
    shared = remember(wb, ["a note that may be shared"])
    target = tmp_path / "share.sqlite3"
    wb.export_store(target, runs=[shared.id])
    with closing(sqlite3.connect(target)) as conn:
        assert conn.execute("SELECT count(*) FROM vectors").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM vector_collections").fetchone() == (0,)
    assert b"private note" not in target.read_bytes()


def test_an_in_memory_run_store_keeps_collections_in_memory(root: Path) -> None:
    """With store="memory://" the collections live beside the runs, in the process."""
    with ms.Workbench.open(root, store="memory://") as bench:
        remember(bench, ["parcel damaged", "reset password"])
        (hit,) = bench.memory("mem/notes").search("parcel", k=1)
        assert hit.text == "parcel damaged"
    assert not (root / "storage").exists()


def test_threads_add_and_search_one_collection_at_once(wb: ms.Workbench) -> None:
    """Four threads adding and searching the same collection lose nothing and fail nothing."""
    from concurrent.futures import ThreadPoolExecutor

    notes = wb.memory("mem/notes")

    def work(worker: int) -> int:
        for i in range(10):
            notes.add([f"worker {worker} note {i}"], metadata=[{"tag": f"w{worker}"}])
            notes.search(f"worker {worker} note", k=3, where={"tag": f"w{worker}"})
        return worker

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(work, range(4))) == [0, 1, 2, 3]
    assert notes.count() == 40
    for worker in range(4):
        hits = notes.search(f"worker {worker} note 3", k=10, where={"tag": f"w{worker}"})
        assert len(hits) == 10 and hits[0].text == f"worker {worker} note 3"
