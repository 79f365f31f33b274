"""Collection declarations and the memory policy: checked when a product loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import master_sdk as ms
from master_sdk.contracts.memory import CollectionSpec
from master_sdk.contracts.policy import Policy, PolicyOverride
from master_sdk.errors import CollectionError, FlowError
from master_sdk.governance.policy import tighten
from tests.support.memory_project import make_memory_project


def test_a_product_may_narrow_allowed_collections_but_not_widen_them() -> None:
    """allowed_collections tightens like allowed_tools: outside the platform's list fails."""
    base = Policy(allowed_collections=["notes", "tickets"])
    narrowed = tighten(base, PolicyOverride(allowed_collections=["notes"]), file="p.yaml")
    assert narrowed.allowed_collections == ["notes"]
    with pytest.raises(FlowError, match="secret not in the enclosing policy's allowed_collections"):
        tighten(base, PolicyOverride(allowed_collections=["secret"]), file="p.yaml")


def test_a_product_may_not_turn_redaction_before_embedding_off() -> None:
    """redact_before_embedding may be turned on by a product, never off."""
    with pytest.raises(FlowError, match="redact_before_embedding is on"):
        tighten(Policy(), PolicyOverride(redact_before_embedding=False), file="p.yaml")
    relaxed = Policy(redact_before_embedding=False)
    assert tighten(relaxed, PolicyOverride(redact_before_embedding=True), file="p.yaml")


def test_metadata_fields_must_be_identifiers_and_not_frame_columns() -> None:
    """A field named like a frame column, or not an identifier, is refused at load."""
    with pytest.raises(ValidationError, match="reserved"):
        CollectionSpec(metadata={"score": "number"})
    with pytest.raises(ValidationError, match="identifier"):
        CollectionSpec(metadata={"two words": "string"})
    with pytest.raises(ValidationError):
        CollectionSpec(metadata={"when": "date"})  # type: ignore[dict-item]  # the point


def test_a_collection_with_an_unknown_model_fails_when_the_product_loads(tmp_path: Path) -> None:
    """The product's flows do not load; the error names the file and the field."""
    root = make_memory_project(tmp_path / "p")
    config = root / "products" / "mem" / "config" / "product.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "  notes:\n", "  notes:\n    model: no_such_model\n"
        ),
        encoding="utf-8",
    )
    with (
        ms.Workbench.open(root) as wb,
        pytest.raises(FlowError, match=r"collections\.notes\.model.*no_such_model"),
    ):
        wb.flow("mem/remember")


def test_a_collection_on_a_chat_model_is_refused_when_used(tmp_path: Path) -> None:
    """Vector memory needs a model of kind embedding: a chat model is named as the cause."""
    root = make_memory_project(tmp_path / "p")
    config = root / "products" / "mem" / "config" / "product.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("  notes:\n", "  notes:\n    model: default\n"),
        encoding="utf-8",
    )
    with ms.Workbench.open(root) as wb, pytest.raises(CollectionError, match="chat model"):
        wb.memory("mem/notes")
