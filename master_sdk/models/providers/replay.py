"""The ``replay`` provider: record model calls to a cassette once, answer from it after.

``mode: record`` sends each request to the wrapped provider (the logical model named by
``wraps``) and writes the request and the reply to the cassette; ``mode: replay`` answers
from the cassette alone, byte for byte, and never touches the network. A request the
cassette does not hold fails loudly, showing the closest recorded request as a diff. This
is how a notebook recorded once against a real model becomes a regression test.

The cassette is a JSON Lines file, one recorded call per line, so a re-recording shows in
``git diff`` as the lines of the calls that changed::

    {"key": "9f2c…", "request": {"max_tokens": 200, "messages": [{"content": "…",
     "role": "user"}], "model": "gpt-4o-mini"}, "response": {"text": "…", "usage":
     {"tokens_in": 21, "tokens_out": 9, "cached_tokens": 0, "reported": true},
     "model": "gpt-4o-mini", "finish_reason": "stop"}, "recorded_at": "2025-05-01T09:30:00Z"}

- ``request`` is the normalised request: model, messages, max_tokens, temperature, the
  structured-output schema and its name, and parameters, with sorted keys and nothing
  that changes from call to call (no ids, no timestamps). ``key`` is the SHA-256 of its
  canonical JSON; it is recomputed when the file is read, so a hand-edited request still
  matches, and one entry is kept per key (recording the same request again replaces it).
- Redaction applies before anything is written: the request and the reply pass through
  the workbench's redactor, and the key is computed on the redacted request, so a
  request carrying a secret still finds its (redacted) recording.
- The reply handed back while recording is the redacted one that was written, so a
  recorded run and its replays see exactly the same text.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from master_sdk.errors import ConfigError, ModelCallError
from master_sdk.models.types import (
    Embedder,
    EmbedRequest,
    EmbedResponse,
    ModelRequest,
    ModelResponse,
    Provider,
    Usage,
)

__all__ = [
    "MODES",
    "Cassette",
    "ReplayProvider",
    "normalized_request",
    "request_key",
]

Scrub = Callable[[Any], Any]
MODES = ("record", "replay")
# Diffs cut long strings into pieces of this width so a one-word change stays visible.
_DIFF_WIDTH = 96
_DIFF_MAX_LINES = 40
_SENTENCE_END = re.compile(r"(?<=[.!?;])(?=\s)")
_WORD = re.compile(r"\s*\S+|\s+$")


def _identity(value: Any) -> Any:
    return value


def _canonical(data: Any) -> Any:
    # Through JSON once: tuples become lists and every mapping gets sorted keys.
    return json.loads(json.dumps(data, sort_keys=True, ensure_ascii=False))


def normalized_request(
    request: ModelRequest, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The request as a cassette stores and compares it.

    Args:
        request: the request the router built.
        params: the model's configured parameters (``params:`` in ``models.yaml``); the
            request's own ``params`` win over them, as they do on the wire.

    Returns:
        A JSON-able dict with sorted keys: ``model``, ``messages`` and, when set,
        ``max_tokens``, ``temperature``, ``output_schema``, ``output_name``, ``params``.
    """
    data = request.to_dict()
    data.pop("params", None)
    merged = {**(params or {}), **request.params}
    if merged:
        data["params"] = merged
    normal: dict[str, Any] = _canonical(data)
    return normal


def request_key(normalized: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of a normalised request's canonical JSON."""
    canonical = json.dumps(normalized, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "expected a JSON object"
    request = entry.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("model"), str):
        return "'request' must be an object with a 'model'"
    if request.get("operation") == "embeddings":
        return _embedding_problem(request, entry.get("response"))
    if not isinstance(request.get("messages"), list):
        return "'request.messages' must be a list"
    response = entry.get("response")
    if not isinstance(response, dict) or not isinstance(response.get("text"), str):
        return "'response' must be an object with a 'text' string"
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return "'response.usage' must be an object"
    for name in ("tokens_in", "tokens_out", "cached_tokens"):
        value = usage.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"'response.usage.{name}' must be a non-negative integer"
    if not isinstance(response.get("model", ""), str):
        return "'response.model' must be a string"
    if not isinstance(response.get("finish_reason"), str | None):
        return "'response.finish_reason' must be a string or null"
    return None


def _embedding_problem(request: Mapping[str, Any], response: Any) -> str | None:
    texts = request.get("input")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return "'request.input' must be a list of strings"
    if not isinstance(response, dict):
        return "'response' must be an object"
    vectors = response.get("vectors")
    if not isinstance(vectors, list) or len(vectors) != len(texts):
        return "'response.vectors' must hold one base64 float32 vector per input text"
    if not all(isinstance(v, str) for v in vectors):
        return "'response.vectors' must be base64 strings (little-endian float32)"
    usage = response.get("usage")
    if not isinstance(usage, dict) or not isinstance(usage.get("tokens_in", 0), int):
        return "'response.usage' must be an object with integer 'tokens_in'"
    return None


def _embed_data(reply: EmbedResponse) -> dict[str, Any]:
    import numpy as np

    little = np.ascontiguousarray(reply.vectors, dtype="<f4")
    return {
        "vectors": [base64.b64encode(row.tobytes()).decode("ascii") for row in little],
        "usage": {"tokens_in": reply.usage.tokens_in, "reported": reply.usage.reported},
        "model": reply.model,
    }


def _embed_response(data: Mapping[str, Any], fallback_model: str) -> EmbedResponse:
    import numpy as np

    rows = [np.frombuffer(base64.b64decode(v), dtype="<f4") for v in data["vectors"]]
    if len({row.shape for row in rows}) > 1:
        raise ModelCallError(
            "a recorded embedding differs in length from the others", kind="invalid_response"
        )
    vectors = np.vstack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
    usage = data["usage"]
    return EmbedResponse(
        vectors=vectors,
        usage=Usage(
            tokens_in=int(usage.get("tokens_in", 0)),
            tokens_out=0,
            reported=bool(usage.get("reported", True)),
        ),
        model=data.get("model") or fallback_model,
    )


def _response_data(response: ModelResponse) -> dict[str, Any]:
    usage = response.usage
    return {
        "text": response.text,
        "usage": {
            "tokens_in": usage.tokens_in,
            "tokens_out": usage.tokens_out,
            "cached_tokens": usage.cached_tokens,
            "reported": usage.reported,
        },
        "model": response.model,
        "finish_reason": response.finish_reason,
    }


def _response(data: Mapping[str, Any], fallback_model: str) -> ModelResponse:
    usage = data["usage"]
    return ModelResponse(
        text=data["text"],
        usage=Usage(
            tokens_in=int(usage.get("tokens_in", 0)),
            tokens_out=int(usage.get("tokens_out", 0)),
            cached_tokens=int(usage.get("cached_tokens", 0)),
            reported=bool(usage.get("reported", True)),
        ),
        model=data.get("model") or fallback_model,
        finish_reason=data.get("finish_reason"),
    )


def _diff_lines(value: Any, path: str = "") -> list[str]:
    """A request as ``path: value`` lines, long or multi-line strings cut into pieces."""
    if isinstance(value, dict):
        lines = [ln for k in sorted(value) for ln in _diff_lines(value[k], _join(path, k))]
        return lines or [f"{path}: {{}}"]
    if isinstance(value, list):
        lines = [ln for i, item in enumerate(value) for ln in _diff_lines(item, f"{path}[{i}]")]
        return lines or [f"{path}: []"]
    if isinstance(value, str) and ("\n" in value or len(value) > _DIFF_WIDTH):
        return [f"{path} | {piece}" for line in value.split("\n") for piece in _pieces(line)]
    return [f"{path}: {json.dumps(value, ensure_ascii=False)}"]


def _pieces(line: str) -> list[str]:
    """A line cut after sentences, then between words, into pieces of at most about
    ``_DIFF_WIDTH`` characters: a changed word then changes one piece, not every one
    after it."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(line):
        current = ""
        for word in _WORD.findall(sentence):
            if current and len(current) + len(word) > _DIFF_WIDTH:
                pieces.append(current)
                current = ""
            current += word
        pieces.append(current)
    return [piece for piece in pieces if piece] or [""]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Cassette:
    """One cassette file: recorded calls by request key, read once, written as recorded.

    Args:
        path: the JSON Lines file (it need not exist yet).
        label: how messages name the file (the path as configured).
    """

    def __init__(self, path: Path, *, label: str | None = None) -> None:
        self.path = path
        self.label = label or str(path)
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] | None = None

    def entries(self) -> dict[str, dict[str, Any]]:
        """Every recorded call by key, in file order (a copy).

        Raises:
            ConfigError: a line is not JSON or not a recorded call; names file and line.
        """
        with self._lock:
            return dict(self._loaded())

    def get(self, key: str) -> dict[str, Any] | None:
        """The recorded call with this key, if any."""
        with self._lock:
            return self._loaded().get(key)

    def put(self, entry: dict[str, Any]) -> None:
        """Record a call: append it, or replace the entry with the same key.

        An entry identical to the recorded one (request and response) leaves the file
        untouched, so re-recording an unchanged call does not churn its ``recorded_at``.
        """
        with self._lock:
            entries = self._loaded()
            key = entry["key"]
            old = entries.get(key)
            if old is not None and (old["request"], old["response"]) == (
                entry["request"],
                entry["response"],
            ):
                return
            entries[key] = entry
            if old is None:
                self._append(entry)
            else:
                self._rewrite(entries)

    def closest(self, normalized: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The recorded call whose request reads most like ``normalized``."""
        target = _diff_lines(normalized)
        best: tuple[float, str, dict[str, Any]] | None = None
        for key, entry in self.entries().items():
            ratio = difflib.SequenceMatcher(
                None, _diff_lines(entry["request"]), target, autojunk=False
            ).ratio()
            if best is None or ratio > best[0]:
                best = (ratio, key, entry)
        return None if best is None else (best[1], best[2])

    # file ------------------------------------------------------------------------------

    def _loaded(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> dict[str, dict[str, Any]]:
        entries: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return entries
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError as exc:
                    raise ConfigError(
                        f"line {number} is not valid JSON ({exc}); fix or delete that line, "
                        "or record the cassette again",
                        file=self.label,
                    ) from None
                problem = _entry_problem(entry)
                if problem is not None:
                    raise ConfigError(f"line {number}: {problem}", file=self.label)
                entry["request"] = _canonical(entry["request"])
                key = request_key(entry["request"])
                entry["key"] = key
                entries[key] = entry  # a later line wins, as a later recording would
        return entries

    @staticmethod
    def _line(entry: Mapping[str, Any]) -> str:
        ordered = {
            "key": entry["key"],
            "request": entry["request"],
            "response": entry["response"],
            "recorded_at": entry.get("recorded_at"),
        }
        return json.dumps(ordered, ensure_ascii=False) + "\n"

    def _append(self, entry: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a hand edit left no final newline
                    handle.write(b"\n")
            handle.write(self._line(entry).encode("utf-8"))

    def _rewrite(self, entries: Mapping[str, Mapping[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.writelines(self._line(e) for e in entries.values())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


class ReplayProvider:
    """A :class:`~master_sdk.models.types.Provider` that records to or replays from a
    cassette (see the module docstring).

    The router creates it from a ``provider: replay`` entry of ``configs/models.yaml``:

    .. code-block:: yaml

        models:
          gpt: {provider: openai, model: gpt-4o-mini, api_key_ref: openai.api_key}
          default: {provider: replay, mode: replay, wraps: gpt,
                    cassette: cassettes/summaries.jsonl}

    Args:
        cassette: the cassette file.
        mode: ``record`` (call ``wrapped`` and write) or ``replay`` (answer from the file).
        wrapped: the provider a recording calls; unused when replaying.
        scrub: redaction applied to requests and replies before they are written.
        params: the wrapped model's configured parameters, part of each request's key.
        label: how messages name the cassette (the path as configured).

    Raises:
        ConfigError: an unknown mode, or ``record`` without a wrapped provider.
    """

    name = "replay"

    def __init__(
        self,
        *,
        cassette: Path | str,
        mode: str = "replay",
        wrapped: Provider | None = None,
        scrub: Scrub | None = None,
        params: Mapping[str, Any] | None = None,
        label: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "record" and wrapped is None:
            raise ConfigError("mode 'record' needs a model to record (set 'wraps')")
        self.mode = mode
        self.cassette = Cassette(Path(cassette), label=label)
        self.wrapped = wrapped
        self.params: dict[str, Any] = dict(params or {})
        self._scrub: Scrub = scrub or _identity

    def __repr__(self) -> str:
        return f"ReplayProvider(mode={self.mode!r}, cassette={self.cassette.label!r})"

    def complete(self, request: ModelRequest) -> ModelResponse:
        """Replay the recorded reply, or (recording) call the wrapped model and record it.

        Raises:
            ModelCallError: ``kind="replay_miss"`` when replaying a request the cassette
                does not hold; the message shows the closest recorded request. Recording
                passes on the wrapped provider's errors (nothing is written for them).
            ConfigError: the cassette file is malformed.
        """
        normalized: dict[str, Any] = _canonical(
            self._scrub(normalized_request(request, self.params))
        )
        key = request_key(normalized)
        if self.mode == "replay":
            entry = self.cassette.get(key)
            if entry is None:
                raise self._miss(normalized)
            return _response(entry["response"], request.model)
        assert self.wrapped is not None  # noqa: S101  # checked in __init__
        reply = self.wrapped.complete(request)
        written = self._scrub(_response_data(reply))
        problem = _entry_problem({"request": normalized, "response": written})
        if problem is not None:
            raise ModelCallError(
                f"cannot record this reply to cassette '{self.cassette.label}': {problem}",
                kind="invalid_response",
            )
        entry = {
            "key": key,
            "request": normalized,
            "response": _response_data(_response(written, request.model)),
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        self.cassette.put(entry)
        return _response(entry["response"], request.model)

    def embed(self, request: EmbedRequest) -> EmbedResponse:
        """Replay recorded vectors, or (recording) embed with the wrapped model and record.

        The cassette holds each vector as base64 of its little-endian ``float32`` bytes, so
        a replay returns exactly the recorded vectors. Misses fail like :meth:`complete`'s.
        """
        data = request.to_dict()
        merged = {**self.params, **request.params}
        data.pop("params", None)
        if merged:
            data["params"] = merged
        normalized: dict[str, Any] = _canonical(self._scrub(data))
        key = request_key(normalized)
        if self.mode == "replay":
            entry = self.cassette.get(key)
            if entry is None:
                raise self._miss(normalized)
            return _embed_response(entry["response"], request.model)
        wrapped = self.wrapped
        if not isinstance(wrapped, Embedder):
            raise ModelCallError(
                f"cannot record embeddings to cassette '{self.cassette.label}': the wrapped "
                "model's provider makes no embeddings",
                kind="bad_request",
            )
        reply = wrapped.embed(request)
        entry = {
            "key": key,
            "request": normalized,
            "response": _embed_data(reply),
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        self.cassette.put(entry)
        return _embed_response(entry["response"], request.model)

    def _miss(self, normalized: Mapping[str, Any]) -> ModelCallError:
        label = self.cassette.label
        recorded = len(self.cassette.entries())
        if recorded == 0:
            where = "does not exist yet" if not self.cassette.path.exists() else "is empty"
            return ModelCallError(
                f"no recorded reply: cassette '{label}' {where}; run once with "
                "mode: record to record it",
                kind="replay_miss",
            )
        lines = [
            f"no recorded reply for this request in cassette '{label}' "
            f"({recorded} recorded); if the request changed on purpose, record again "
            "with mode: record"
        ]
        found = self.cassette.closest(normalized)
        if found is not None:
            key, entry = found
            diff = list(
                difflib.unified_diff(
                    _diff_lines(entry["request"]),
                    _diff_lines(normalized),
                    fromfile="recorded",
                    tofile="requested",
                    n=1,
                    lineterm="",
                )
            )
            lines.append(f"closest recorded request (key {key[:12]}), - recorded / + requested:")
            body = diff[2:]  # the ---/+++ header is said in words above
            lines.extend(body[:_DIFF_MAX_LINES])
            if len(body) > _DIFF_MAX_LINES:
                lines.append(f"... ({len(body) - _DIFF_MAX_LINES} more diff lines)")
        return ModelCallError("\n".join(lines), kind="replay_miss")
