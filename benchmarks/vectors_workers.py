"""The two sides of ``benchmarks/vectors.py``, each run in its own fresh process.

``python -m benchmarks.vectors_workers master|chroma DIR N DIM QUERIES SEED`` inserts ``N``
seeded random unit vectors of ``DIM`` dimensions (with a short text and two metadata
fields each) in batches of 1,000, then runs ``QUERIES`` top-10 searches without and with a
metadata filter (``category == "c3"``: a tenth of the rows), and prints one JSON line.

Why separate processes: Chroma's client bundles its own SQLite library; two SQLite
libraries in one process break each other's POSIX locks (the data-loss bug the store's
design rules out), and separate processes also keep memory figures apart.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 1000
CATEGORIES = 10


def dataset(n: int, dim: int, seed: int) -> tuple[np.ndarray, list[str], list[dict[str, Any]]]:
    """Seeded unit vectors, short texts and metadata (category c0..c9, priority 1..4)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [f"document {i} about topic c{i % CATEGORIES}" for i in range(n)]
    meta = [{"category": f"c{i % CATEGORIES}", "priority": 1 + i % 4} for i in range(n)]
    return vectors, texts, meta


def queries(count: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    q = rng.standard_normal((count, dim), dtype=np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def percentiles(samples: list[tuple[float, float]]) -> dict[str, float]:
    """Wall-clock and CPU-time percentiles: on a shared machine the CPU time shows the
    work a search does, the wall clock adds the waits for a core."""
    wall = np.asarray([w for w, _ in samples]) * 1000
    cpu = np.asarray([c for _, c in samples]) * 1000
    return {
        "p50_ms": float(np.percentile(wall, 50)),
        "p99_ms": float(np.percentile(wall, 99)),
        "cpu_p50_ms": float(np.percentile(cpu, 50)),
        "cpu_p99_ms": float(np.percentile(cpu, 99)),
        "load_avg_1m": os.getloadavg()[0],
    }


def run_master(folder: Path, n: int, dim: int, nq: int, seed: int) -> dict[str, Any]:
    """master_sdk: the governed Collection path (redaction, checks, durable upserts in the
    run store's SQLite file with synchronous=FULL), with an embedder that returns the
    dataset's vectors, so the figures measure memory, not a model."""
    from master_sdk.authoring import Embeddings
    from master_sdk.contracts.memory import CollectionSpec
    from master_sdk.contracts.policy import Policy
    from master_sdk.governance.redaction import Redactor
    from master_sdk.memory.sqlite import SQLiteStore
    from master_sdk.memory.sqlite_vectors import SQLiteVectorStore
    from master_sdk.memory.vector_memory import Declared, VectorMemory

    vectors, texts, meta = dataset(n, dim, seed)
    qs = queries(nq, dim, seed)
    lookup = {t: i for i, t in enumerate(texts)}
    qtexts = [f"query {i}" for i in range(nq)]
    qlookup = {t: i for i, t in enumerate(qtexts)}

    def embed(model: str, batch: Any, scope: Any, policy: Any) -> Embeddings:
        rows = [vectors[lookup[t]] if t in lookup else qs[qlookup[t]] for t in batch]
        return Embeddings(vectors=np.vstack(rows), model=model, tokens=0, cost_usd=0.0)

    spec = CollectionSpec(
        dimensions=dim, metadata={"category": "string", "priority": "integer"}, max_items=n
    )
    declared = Declared("bench", "docs", spec, "default_embedding", "bench:vectors", dim, Policy())
    path = folder / "store.sqlite3"
    store = SQLiteStore(path, synchronous="FULL")
    redactor = Redactor(())
    memory = VectorMemory(
        SQLiteVectorStore(store),
        embed=embed,
        declared=lambda product, name: declared,
        redact=redactor.value,
    )
    coll = memory.collection("bench", "docs")
    before = dir_bytes(folder)
    rss_before = rss_mib()
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        coll.add(
            texts[start : start + BATCH],
            metadata=meta[start : start + BATCH],
            ids=[str(i) for i in range(start, min(n, start + BATCH))],
        )
    insert_s = time.perf_counter() - started
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    grown = dir_bytes(folder) - before
    # a fresh process would load the collection from the store on its first search
    memory2 = VectorMemory(
        SQLiteVectorStore(store),
        embed=embed,
        declared=lambda product, name: declared,
        redact=redactor.value,
    )
    coll2 = memory2.collection("bench", "docs")
    started = time.perf_counter()
    coll2.search(qtexts[0], k=10)
    load_s = time.perf_counter() - started
    del memory, coll
    plain = _timed(lambda q: coll2.search(q, k=10), qtexts)
    index = memory2._slot(coll2.full_name).index
    scored = index.scored if index is not None else 0
    filtered = _timed(lambda q: coll2.search(q, k=10, where={"category": "c3"}), qtexts)
    # exactness: the first query's hits against brute force over the dataset
    exact = np.argsort(-(vectors @ qs[0]), kind="stable")[:10]
    got = [int(h.id) for h in coll2.search(qtexts[0], k=10)]
    return {
        "system": f"master_sdk ({index.kernel if index is not None else '?'} scan)",
        "rows_scored_last_query": scored,
        "insert_per_s": n / insert_s,
        "insert_s": insert_s,
        "first_search_load_s": load_s,
        "search": percentiles(plain),
        "search_filtered": percentiles(filtered),
        "rss_mib": rss_mib(),
        "rss_growth_mib": rss_mib() - rss_before,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "store_bytes_per_vector": grown / n,
        "recall_at_10": len(set(got) & {int(i) for i in exact}) / 10,
    }


def run_chroma(folder: Path, n: int, dim: int, nq: int, seed: int) -> dict[str, Any]:
    """Chroma's local persistent client (HNSW index, cosine space), same data and batches."""
    import chromadb
    from chromadb.config import Settings

    vectors, texts, meta = dataset(n, dim, seed)
    qs = queries(nq, dim, seed)
    target = folder / "chroma"
    before = 0
    rss_before = rss_mib()
    client = chromadb.PersistentClient(
        path=str(target), settings=Settings(anonymized_telemetry=False)
    )
    coll = client.create_collection("docs", metadata={"hnsw:space": "cosine"})
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        stop = min(n, start + BATCH)
        coll.add(
            ids=[str(i) for i in range(start, stop)],
            embeddings=vectors[start:stop],
            documents=texts[start:stop],
            metadatas=meta[start:stop],
        )
    insert_s = time.perf_counter() - started
    grown = dir_bytes(target) - before
    plain = _timed(lambda q: coll.query(query_embeddings=[q], n_results=10), list(qs))
    filtered = _timed(
        lambda q: coll.query(query_embeddings=[q], n_results=10, where={"category": "c3"}),
        list(qs),
    )
    exact = np.argsort(-(vectors @ qs[0]), kind="stable")[:10]
    got = coll.query(query_embeddings=[qs[0]], n_results=10)["ids"][0]
    return {
        "system": f"chromadb {chromadb.__version__}",
        "insert_per_s": n / insert_s,
        "insert_s": insert_s,
        "search": percentiles(plain),
        "search_filtered": percentiles(filtered),
        "rss_mib": rss_mib(),
        "rss_growth_mib": rss_mib() - rss_before,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "store_bytes_per_vector": grown / n,
        "recall_at_10": len({int(i) for i in got} & {int(i) for i in exact}) / 10,
    }


def _timed(call: Any, items: list[Any]) -> list[tuple[float, float]]:
    for item in items[:5]:  # warm up caches and lazy imports
        call(item)
    samples: list[tuple[float, float]] = []
    for item in items:
        started, cpu = time.perf_counter(), time.thread_time()
        call(item)
        samples.append((time.perf_counter() - started, time.thread_time() - cpu))
    return samples


def main(argv: list[str]) -> None:
    which, folder, n, dim, nq, seed = argv
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    run = run_master if which == "master" else run_chroma
    result = run(Path(folder), int(n), int(dim), int(nq), int(seed))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
