"""Typed settings: what ``configs/*.yaml``, the secrets file and ``MASTER_*`` variables hold.

Only :mod:`master_sdk.config.loader` builds these; everything else receives them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from master_sdk.config.server import ServerSecrets
from master_sdk.config.telemetry import TelemetrySettings
from master_sdk.contracts.policy import CanonicalName, Policy


class AppSettings(BaseModel):
    """``configs/app.yaml``: where things are and how the store behaves."""

    model_config = ConfigDict(extra="forbid")

    products_dir: str = "products"
    # a SQLite file path (relative to the project), sqlite:///path, memory:// or
    # postgresql://user@host:port/database
    store: str = "storage/master.sqlite3"
    password_ref: str | None = Field(
        default=None,
        description="Dotted path into secrets/secrets.yaml holding the PostgreSQL store's "
        "password (e.g. postgres.password); a store URL never holds one.",
    )
    default_user: str | None = Field(
        default=None, description="Who approves/submits when no `by=` is given; default: OS user."
    )
    identity: Literal["given", "database"] = Field(
        default="given",
        description="Who acts: `given` (by= or default_user) or `database`: on a PostgreSQL "
        "store, the role the store signs in as; it is recorded as the starter of runs and the "
        "actor of decisions, and a by= naming anyone else is refused.",
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="FULL: a completed step, a pause and the end of a run survive power loss "
        "(fsynced before anything else runs or the call returns). NORMAL: faster, may lose the "
        "last commits on power loss (never corrupts).",
    )
    sync_step_starts: bool = Field(
        default=False,
        description="Also fsync the record that a tool or agent step started, before it runs "
        "(one more fsync per such step). That record always survives a crashed process; "
        "synced at once, it also survives a power cut in the middle of the step, which is "
        "then reported as interrupted instead of the step running again.",
    )
    busy_timeout_ms: int = Field(default=5000, ge=0, le=600_000)
    allow_network_store: bool = Field(
        default=False,
        description="Open a store on a network filesystem (NFS, SMB, sshfs...) anyway. "
        "SQLite's WAL is not safe there; by default such a store is refused.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    load_timeout_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="How long importing a product's components may take before it is "
        "stopped and the product reported broken (0: no limit).",
    )
    log_file: str | None = None
    deterministic: bool = Field(
        default=False,
        description="Testing only: run ids from a seeded sequence, timestamps and durations "
        "from a test clock (starts 2026-01-01T00:00:00Z, 1 ms per read) and `analyst` as the "
        "default user, so a notebook shows the same values on every execution. `master test` "
        "turns it on.",
    )
    crash_point: str | None = Field(
        default=None,
        description="Testing only: hard-exit the process at this named point "
        "(see master_sdk.orchestrator.crashpoints).",
    )


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    output: float = Field(ge=0)


class ModelEntry(BaseModel):
    """One logical model in ``configs/models.yaml``."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["fake", "openai", "replay"]
    kind: Literal["chat", "embedding"] = Field(
        default="chat",
        description="chat: agents' ctx.complete(); embedding: ctx.embed() and vector memory.",
    )
    model: str | None = None
    base_url: str | None = None
    api_key_ref: str | None = Field(
        default=None, description="Dotted path into secrets.yaml, e.g. openai.api_key."
    )
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the key, e.g. OPENAI_API_KEY."
    )
    organization: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)
    # embedding models
    dimensions: int | None = Field(
        default=None, ge=1, le=65_536, description="Vector size (embedding models)."
    )
    batch_size: int = Field(
        default=256,
        ge=1,
        le=2048,
        description="Most texts sent in one embeddings request (OpenAI allows 2048).",
    )
    batch_tokens: int = Field(
        default=200_000,
        ge=1,
        description="Most estimated input tokens in one embeddings request (OpenAI: 300k).",
    )
    # fake provider
    responses: list[str] | None = None
    # replay provider
    mode: Literal["record", "replay"] | None = None
    cassette: str | None = None
    wraps: str | None = None
    # filled in by the loader, never read from files
    api_key: SecretStr | None = Field(default=None, exclude=True)


class ModelsSettings(BaseModel):
    """``configs/models.yaml``: logical names -> providers, and the price table."""

    model_config = ConfigDict(extra="forbid")

    models: dict[CanonicalName, ModelEntry] = Field(
        default_factory=lambda: {
            "default": ModelEntry(provider="fake"),
            "default_embedding": ModelEntry(provider="fake", kind="embedding", dimensions=384),
        }
    )
    prices: dict[str, Price] = Field(default_factory=dict)


class Settings(BaseModel):
    """Everything the workbench needs, resolved to absolute paths."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    root: Path
    app: AppSettings = Field(default_factory=AppSettings)
    policy: Policy = Field(default_factory=Policy)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    secret_values: tuple[str, ...] = ()
    user: str = "analyst"
    # the PostgreSQL store's password, resolved from app.password_ref
    store_password: SecretStr | None = None
    # `master serve`: API tokens and the link signing key (secrets file, `server:`)
    server: ServerSecrets = Field(default_factory=ServerSecrets)

    @property
    def store_path(self) -> Path | None:
        """The SQLite file ``app.store`` names, absolute; None for ``memory://``.

        Raises:
            ConfigError: ``app.store`` is not a store name (see :mod:`master_sdk.memory.open`).
        """
        from master_sdk.memory.open import store_location

        return store_location(self.app.store, self.root)

    @property
    def products_path(self) -> Path:
        """The products folder, absolute."""
        p = Path(self.app.products_dir)
        return p if p.is_absolute() else self.root / p
