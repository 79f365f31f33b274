"""How every store turns values into stored text: compact JSON, redacted first."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Scrub = Callable[[Any], Any]

encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


class Encoder:
    """JSON encoding and free-text redaction through one ``scrub``."""

    __slots__ = ("scrub",)

    def __init__(self, scrub: Scrub) -> None:
        self.scrub = scrub

    def dumps(self, value: Any) -> str | None:
        """A value as the store's JSON text (redacted), None for None."""
        return None if value is None else encode(self.scrub(value))

    def text(self, value: str | None) -> str | None:
        """A free text, redacted (empty stays as it is)."""
        return self.scrub(value) if value else value
