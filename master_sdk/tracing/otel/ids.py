"""Trace and span ids derived from a run's identity, so every process agrees on them.

A paused run is one trace across its pauses, even when another process resumes it days
later: the trace id is a hash of the run id, and every span id a hash of what the span
stands for (the run; a step and its attempt; the trace event a call or pause was recorded
as). Nothing has to be stored with the run, past runs exported from the store get the same
ids as they had live, and a run imported into another store keeps its trace. The hash is
SHA-256 truncated to the W3C sizes (16 and 8 bytes), never zero.
"""

from __future__ import annotations

try:  # CPython's own SHA-256: the same digests, a third fewer instructions per short
    # text than OpenSSL's (the live export hashes a few ids per run)
    from _sha256 import sha256  # type: ignore[import-not-found]  # 3.11
except ImportError:  # pragma: no cover - another Python or build
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]  # 3.12+
    except ImportError:
        from hashlib import sha256

__all__ = [
    "event_span_bytes",
    "event_span_id",
    "event_span_prefix",
    "root_span_id",
    "sampled",
    "sha256",
    "step_span_id",
    "trace_id",
]

_MASK64 = (1 << 64) - 1
_ZERO8 = bytes(8)
_ONE8 = (1).to_bytes(8, "big")


def _digest(text: str, size: int) -> int:
    value = int.from_bytes(sha256(text.encode("utf-8")).digest()[:size], "big")
    return value or 1


def trace_id(run_id: str) -> int:
    """The run's 128-bit trace id."""
    return _digest(f"master_sdk/trace/{run_id}", 16)


def root_span_id(run_id: str) -> int:
    """The run's root span (``invoke_workflow``)."""
    return _digest(f"master_sdk/run/{run_id}", 8)


def step_span_id(run_id: str, step_id: str, attempt: int) -> int:
    """One attempt of one step."""
    return _digest(f"master_sdk/step/{run_id}/{step_id}/{attempt}", 8)


def event_span_id(run_id: str, seq: int) -> int:
    """A span made from one trace event (a tool call, a model call, a pause)."""
    return _digest(f"master_sdk/event/{run_id}/{seq}", 8)


def event_span_bytes(run_id: str, seq: int) -> bytes:
    """:func:`event_span_id` as the 8 big-endian bytes OTLP carries, without the detour
    through an int (the live export writes a few of these per run)."""
    head = sha256(f"master_sdk/event/{run_id}/{seq}".encode()).digest()[:8]
    return head if head != _ZERO8 else _ONE8


def event_span_prefix(run_id: str) -> bytes:
    """What :func:`event_span_id` hashes for ``run_id``, before the event's ``seq``:
    ``event_span_bytes(run_id, seq)`` is ``sha256(prefix + b"%d" % seq)``'s first 8 bytes
    (or 1 if those are zero)."""
    return f"master_sdk/event/{run_id}/".encode()


def sampled(trace: int, ratio: float) -> bool:
    """Whether a trace is exported at ``ratio``: the same rule as OpenTelemetry's
    ``TraceIdRatioBased`` (the low 64 bits below ``ratio * 2**64``), so every process
    makes the same decision for a run."""
    if ratio >= 1.0:
        return True
    return (trace & _MASK64) < int(ratio * (1 << 64))
