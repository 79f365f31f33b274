"""The redactor a workbench uses, built from the platform policy's ``redaction`` block.

``redaction.enabled`` (default true) runs every detector of
:mod:`master_sdk.governance.redaction`; false turns the personal-data and token detectors
off. Values of the secrets file are redacted either way: nothing switches that off.
``redaction.extra_patterns`` adds regular expressions, ``NAME: pattern``; each match
becomes ``<NAME>``.

Example:
    >>> from master_sdk.contracts.policy import RedactionPolicy
    >>> r = build_redactor(RedactionPolicy(extra_patterns={"TICKET": r"TCK-\\d{6}"}), [])
    >>> r.text("see TCK-123456, mail bob@example.com")
    'see <TICKET>, mail <EMAIL>'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from master_sdk.governance.detectors import Hit
from master_sdk.governance.redaction import Finding, Redactor, _resolve

if TYPE_CHECKING:  # opening a workbench from cached settings imports no pydantic
    from master_sdk.config.opening import RedactionRules
    from master_sdk.contracts.policy import RedactionPolicy

__all__ = ["PolicyRedactor", "build_redactor"]

# Any placeholder, built-in or custom: extra patterns never rewrite one.
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")


def build_redactor(policy: RedactionPolicy | RedactionRules, secrets: Iterable[str]) -> Redactor:
    """The redactor for a policy and the secrets file's values."""
    if policy.enabled and not policy.extra_patterns:
        return Redactor(secrets)
    return PolicyRedactor(secrets, detectors=policy.enabled, patterns=policy.extra_patterns)


class PolicyRedactor(Redactor):
    """A :class:`Redactor` with the detectors optionally off and extra patterns on.

    Args:
        secrets: values to redact wherever they appear (always on).
        detectors: run the built-in personal-data and token detectors.
        patterns: ``NAME -> regular expression``; matches become ``<NAME>``.
    """

    def __init__(
        self, secrets: Iterable[str], *, detectors: bool, patterns: Mapping[str, str]
    ) -> None:
        super().__init__(secrets)
        self._detectors = detectors
        self._patterns = tuple((re.compile(p), f"<{name}>") for name, p in patterns.items())

    def __repr__(self) -> str:
        names = ", ".join(placeholder for _, placeholder in self._patterns)
        return f"PolicyRedactor(detectors={self._detectors}, patterns=[{names}])"

    def text(self, s: str) -> str:
        """Redact one string: secrets, detectors (if on), then the extra patterns."""
        if not any(pattern.search(s) for pattern, _ in self._patterns):
            return super().text(s)
        out = super().text(s)
        # the base class remembers strings its own detectors found clean; this one is not
        self._clean.discard(s)
        for pattern, placeholder in self._patterns:
            out = _substitute(pattern, placeholder, out)
        return out

    def _scan(self, s: str) -> list[Finding]:
        if self._detectors:
            return super()._scan(s)
        hits: list[Hit] = []
        self._secrets.find(s, hits)
        return _resolve(hits) if hits else []


def _substitute(pattern: re.Pattern[str], placeholder: str, text: str) -> str:
    protected = [m.span() for m in _PLACEHOLDER.finditer(text)]

    def replace(match: re.Match[str]) -> str:
        start, end = match.span()
        if any(a < end and start < b for a, b in protected):
            return match.group()
        return placeholder

    return pattern.sub(replace, text)
