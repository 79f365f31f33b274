"""Safe YAML: the only way master_sdk reads YAML.

``yaml.safe_load`` semantics plus what a governed platform needs: a size cap, duplicate
keys refused (silently keeping the last one hides mistakes), and aliases refused so an
alias bomb ("billion laughs") fails at once instead of exhausting memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

MAX_YAML_BYTES = 1_000_000


class YamlProblem(ValueError):
    """A YAML file could not be read; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and duplicate keys."""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML is untyped
            raise YamlProblem(
                "YAML aliases (*name) are not allowed; write the value out",
                event.start_mark.line + 1,
            )
        return super().compose_node(parent, index)

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
        raise YamlProblem(f"file is larger than {MAX_YAML_BYTES} bytes")
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


def load_file(path: Path) -> Any:
    """Read and parse a YAML file, refusing files over the size cap before reading them."""
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise YamlProblem(f"file is {size} bytes; the limit is {MAX_YAML_BYTES}")
    return loads(path.read_text(encoding="utf-8"))
