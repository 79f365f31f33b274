"""Safe YAML: the only way master_sdk reads YAML.

``yaml.safe_load`` semantics plus what a governed platform needs:

* a size cap (1 MB), checked before a file is read, and reading stops at the cap;
* aliases refused, so an alias bomb ("billion laughs") fails at the first ``*name``
  instead of exhausting memory (anchors alone are harmless and allowed);
* nesting capped at 100 levels, so ``[[[[...`` fails with a clear error instead of
  overflowing the parser's recursion;
* duplicate keys refused (silently keeping the last one hides mistakes), including keys
  that differ only in spelling (``1`` and ``0x1``, ``yes`` and ``true``).

``yaml.load`` itself is banned elsewhere by ruff (S506); this module is the one use, with
a loader derived from ``SafeLoader``.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

MAX_YAML_BYTES = 1_000_000
MAX_YAML_DEPTH = 100


class YamlProblem(ValueError):
    """A YAML file could not be read; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, deep nesting and duplicate keys."""

    def __init__(self, stream: str | IO[str]) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML is untyped
            raise YamlProblem(
                "YAML aliases (*name) are not allowed; write the value out",
                event.start_mark.line + 1,
            )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML is untyped
                raise YamlProblem(
                    f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark.line + 1
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable keys are reported by the base class
            if duplicate:
                raise YamlProblem(f"duplicate key '{key}'", key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def loads(text: str) -> Any:
    """Parse YAML text safely (see module docstring)."""
    if len(text) > MAX_YAML_BYTES:
        raise YamlProblem(f"text is longer than {MAX_YAML_BYTES} characters")
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506  # _StrictLoader derives from SafeLoader
    except YamlProblem:
        raise
    except ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise YamlProblem(str(exc.problem or exc), line) from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise YamlProblem(str(exc.problem or exc), line) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(str(exc)) from None
    except RecursionError:
        raise YamlProblem(f"nested deeper than {MAX_YAML_DEPTH} levels") from None


def read_text(path: Path) -> str:
    """A YAML file's text, refusing files over the size cap without reading past it.

    Raises:
        YamlProblem: the file is too large or is not UTF-8 text.
        OSError: the file cannot be read.
    """
    with path.open("rb") as handle:
        data = handle.read(MAX_YAML_BYTES + 1)
    if len(data) > MAX_YAML_BYTES:
        raise YamlProblem(f"file is larger than {MAX_YAML_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"not UTF-8 text (byte {exc.start})") from None


def load_file(path: Path) -> Any:
    """Read and parse a YAML file, refusing files over the size cap before reading them."""
    return loads(read_text(path))
