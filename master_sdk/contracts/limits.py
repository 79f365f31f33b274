"""Render limits every policy starts from, importable without pydantic (the template
engine needs them; a resumed run may never build a policy model)."""

from __future__ import annotations

MAX_RENDERED_CHARS = 1_000_000
"""The most characters one template may render."""
MAX_RENDER_MS = 1000
"""The longest one template may take to render, in milliseconds."""
