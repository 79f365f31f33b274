"""The YAML parser behind :mod:`master_sdk.config.safe_yaml` (imported only on a cache miss:
PyYAML's import and its pure-Python parser are most of what reading a config costs)."""

from __future__ import annotations

from typing import IO, Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

from master_sdk.config.safe_yaml import MAX_YAML_DEPTH, YamlProblem


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


def parse(text: str) -> Any:
    """Parse YAML text with the strict loader (see :mod:`master_sdk.config.safe_yaml`)."""
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
