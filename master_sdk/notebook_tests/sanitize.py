"""Rewriting what legitimately changes between executions before outputs are compared.

The rules ship with the package (``sanitize.cfg`` beside this module: run ids, durations,
timestamps, temporary paths, memory addresses). A ``sanitize.cfg`` next to a notebook adds
its own rules, in nbval's format, so one file serves ``master test``, ``pytest
--master-notebooks`` and ``pytest --nbval --nbval-sanitize-with``::

    [order numbers]
    regex: ORD-\\d{6}
    replace: <ORDER>

Deterministic mode (on under ``master test``) makes most of these rules unnecessary; they
stay as a safety net for what no clock controls (a temporary path, an object's address).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from master_sdk.errors import ConfigError

__all__ = ["DEFAULT_RULES_FILE", "SANITIZE_FILE", "Rule", "Sanitizer", "read_rules"]

DEFAULT_RULES_FILE = Path(__file__).with_name("sanitize.cfg")
"""The rules shipped with master_sdk."""

SANITIZE_FILE = "sanitize.cfg"
"""The name of a user's own rules file, looked for next to each notebook."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One rewrite: every match of ``pattern`` becomes ``replace`` (taken literally)."""

    name: str
    pattern: re.Pattern[str]
    replace: str


def read_rules(path: Path) -> list[Rule]:
    """The rules of one sanitize file (nbval's format: ``[name]``, ``regex:``, ``replace:``).

    Raises:
        ConfigError: a regex does not compile, or a ``regex:`` line has no ``replace:``
            line under it; the message names the file, line and section.
    """
    rules: list[Rule] = []
    section = ""
    pending: tuple[str, int] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif line.startswith("regex:"):
            pending = (line[len("regex:") :].strip(), number)
        elif line.startswith("replace:") and pending is not None:
            text, at = pending
            try:
                pattern = re.compile(text)
            except re.error as exc:
                raise ConfigError(
                    f"line {at}, [{section}]: the regex does not compile: {exc}", file=str(path)
                ) from None
            rules.append(Rule(section or f"line {at}", pattern, line[len("replace:") :].strip()))
            pending = None
        else:
            raise ConfigError(
                f"line {number}: expected [section], 'regex: ...' or 'replace: ...'",
                file=str(path),
            )
    if pending is not None:
        raise ConfigError(f"line {pending[1]}: 'regex:' without a 'replace:' line", file=str(path))
    return rules


class Sanitizer:
    """Applies rules in order to the text of an output.

    Args:
        rules: the rules, applied in order.

    Example:
        >>> Sanitizer.for_notebook(Path("notebooks/01_quickstart.ipynb")).apply(
        ...     "run 01a215f1bb4880366caf6930599f81b9")                       # doctest: +SKIP
        'run <RUN-ID>'
    """

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self.rules = tuple(rules)

    @classmethod
    def default(cls) -> Sanitizer:
        """The rules shipped with master_sdk."""
        return cls(read_rules(DEFAULT_RULES_FILE))

    @classmethod
    def for_notebook(cls, path: Path, *, builtin: bool = True) -> Sanitizer:
        """The shipped rules (unless ``builtin=False``) plus a ``sanitize.cfg`` next to
        the notebook, if there is one."""
        rules = read_rules(DEFAULT_RULES_FILE) if builtin else []
        own = path.parent / SANITIZE_FILE
        if own.is_file():
            rules.extend(read_rules(own))
        return cls(rules)

    def extended(self, rules: Iterable[Rule]) -> Sanitizer:
        """These rules followed by ``rules``."""
        return Sanitizer([*self.rules, *rules])

    def apply(self, text: str) -> str:
        """``text`` with every rule applied, in order."""
        for rule in self.rules:
            # a function, so that backslashes in the replacement are not escapes
            text = rule.pattern.sub(_literal(rule.replace), text)
        return text


def _literal(replacement: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: replacement
