"""Vector memory declarations: the collections a product keeps (``config/product.yaml``).

```yaml
collections:
  tickets:
    description: Past support tickets and how they were resolved.
    model: default_embedding        # a logical model of kind embedding
    dimensions: 384                 # optional: the model's configured dimensions
    metadata: {category: string, priority: integer, resolved: boolean}
    max_items: 50000
    max_text_chars: 4000
```

A collection is reached as ``ctx.memory("tickets")`` from the product's tools and as
``wb.memory("<product>/tickets")`` from a notebook; the policy's ``allowed_collections``
may narrow which ones a product or flow uses.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from master_sdk.contracts.policy import CanonicalName

FieldType = Literal["string", "integer", "number", "boolean"]
"""What a metadata field holds; a value of another type is refused when it is added."""

FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
RESERVED_FIELDS = frozenset(
    {"id", "text", "score", "rank", "run_id", "step_id", "attempt", "added_at"}
)
MAX_ITEMS = 1_000_000
"""Default and ceiling of ``max_items``."""


class CollectionSpec(BaseModel):
    """One vector memory collection of a product."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    model: CanonicalName = Field(
        default="default_embedding",
        description="Logical embedding model (kind: embedding in configs/models.yaml).",
    )
    dimensions: int | None = Field(
        default=None, ge=1, le=65_536, description="Vector size; default: the model's."
    )
    metadata: dict[str, FieldType] = Field(
        default_factory=dict,
        description="Metadata fields and their types; `where=` filters on these.",
    )
    max_items: int = Field(default=MAX_ITEMS, ge=1, le=MAX_ITEMS)
    max_text_chars: int = Field(default=8_000, ge=1, le=1_000_000)

    @field_validator("metadata")
    @classmethod
    def _field_names(cls, fields: dict[str, FieldType]) -> dict[str, FieldType]:
        """Metadata field names are identifiers, and not the columns frames add."""
        for name in fields:
            if not re.fullmatch(FIELD_NAME, name):
                raise ValueError(f"metadata field {name!r} must be an identifier")
            if name in RESERVED_FIELDS:
                raise ValueError(f"metadata field {name!r} is reserved (a column of frames)")
        return fields
