"""Interim redaction: secrets-file values only (replaced by the full detector set)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class Redactor:
    """Replaces known secret values with ``<SECRET>``."""

    def __init__(self, secrets: Iterable[str] = (), *, min_secret_length: int = 4) -> None:
        self._secrets = sorted(
            {s for s in secrets if len(s) >= min_secret_length}, key=len, reverse=True
        )

    def text(self, s: str) -> str:
        """Redact one string."""
        for secret in self._secrets:
            if secret in s:
                s = s.replace(secret, "<SECRET>")
        return s

    def value(self, obj: Any) -> Any:
        """Redact every string in nested data."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {k: self.value(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.value(v) for v in obj]
        return obj
