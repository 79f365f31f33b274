"""How every store turns values into stored text: compact JSON, redacted first."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

Scrub = Callable[[Any], Any]

encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode

# the C encoder json.JSONEncoder.encode builds anew on every call (None without _json)
_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)

_local = threading.local()


def _encoder() -> Any:
    """This thread's C encoder, with the same settings as :data:`encode`, built once."""
    markers: dict[int, Any] = {}
    made = _make_encoder(
        markers, str, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    _local.encoder = (made, markers)
    return made


def encode_fast(value: Any) -> str:
    """:data:`encode` without building an encoder per call (one per thread: the encoder
    keeps the containers it is inside of, to refuse a cycle)."""
    if _make_encoder is None:  # pragma: no cover
        return encode(value)
    known = getattr(_local, "encoder", None)
    made = _encoder() if known is None else known[0]
    try:
        return "".join(made(value, 0))
    except BaseException:
        # an error left the containers it was inside of marked: start afresh
        _local.encoder = None
        raise


class Encoder:
    """JSON encoding and free-text redaction through one ``scrub``."""

    __slots__ = ("scrub",)

    def __init__(self, scrub: Scrub) -> None:
        self.scrub = scrub

    def dumps(self, value: Any) -> str | None:
        """A value as the store's JSON text (redacted), None for None."""
        return None if value is None else encode_fast(self.scrub(value))

    def text(self, value: str | None) -> str | None:
        """A free text, redacted (empty stays as it is)."""
        return self.scrub(value) if value else value
