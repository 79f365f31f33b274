"""Typed settings of ``master serve``: API tokens and the link signing key, kept in the
``server:`` section of ``secrets/secrets.yaml``.

Only :mod:`master_sdk.config.loader` reads that file. Unlike the rest of the secrets file,
only the secret values of this section (tokens, the signing key) are redacted from
output: user names and role names are not secrets and stay readable.

Example ``secrets/secrets.yaml``::

    server:
      signing_key: "a long random string"        # signs approval links and CSRF tokens
      tokens:
        - user: ana
          roles: [reviewer]
          sha256: 5f1c...                        # sha256 of the token (`master token ana`)
        - user: billing-service
          roles: [runner]
          token: mst_...                         # or the token itself
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

Role = Literal["viewer", "reviewer", "runner", "admin"]
ROLES: tuple[str, ...] = ("viewer", "reviewer", "runner", "admin")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ServerToken(BaseModel):
    """One API token: who it is and what it may do. Give the token's ``sha256`` (hex of
    the SHA-256 of the token) or the ``token`` itself; either way it is compared hashed."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1)
    sha256: str | None = None
    token: SecretStr | None = None

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and not _HEX64.match(value.lower()):
            raise ValueError("must be the 64 hex digits of the token's SHA-256")
        return None if value is None else value.lower()

    @model_validator(mode="after")
    def _one(self) -> ServerToken:
        if (self.sha256 is None) == (self.token is None):
            raise ValueError("give exactly one of sha256 and token")
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError("a token must be at least 16 characters (`master token USER`)")
        return self


class ServerSecrets(BaseModel):
    """The ``server:`` section of the secrets file."""

    model_config = ConfigDict(extra="forbid")

    signing_key: SecretStr | None = Field(
        default=None,
        description="Signs approval links and CSRF tokens (at least 32 characters). "
        "Without it the server makes a random key at start, so links die with the process.",
    )
    tokens: list[ServerToken] = Field(default_factory=list)

    @field_validator("signing_key")
    @classmethod
    def _long(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    def secret_values(self) -> list[str]:
        """The values of this section to redact wherever they appear."""
        out = [t.token.get_secret_value() for t in self.tokens if t.token is not None]
        if self.signing_key is not None:
            out.append(self.signing_key.get_secret_value())
        return out
