"""What opening a workbench reads from the settings, without pydantic.

Opening a workbench needs a handful of settings (where the store is and how it syncs, the
redaction rules, the log level, the user); a command that then only reads the store needs no
more. Building the full, validated :class:`~master_sdk.config.settings.Settings` costs
pydantic's import and the building of its models: more than everything else a fresh
process does to open a workbench. So the workbench opens from :class:`OpeningSettings` and
builds the full settings the first time something asks for them (:class:`SettingsSource`).

:class:`OpeningSettings` comes either from full settings just built, or from the settings
cache of :mod:`master_sdk.config.loader` (the same fields, stored when those settings were
built from the same files and environment). Values read from the cache are checked field by
field here: anything of the wrong shape and the cache entry is not used.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from master_sdk.config.settings import AppSettings, Settings


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """The ``app.yaml`` fields that opening the store and the trace log read (the names
    and meanings of :class:`~master_sdk.config.settings.AppSettings`)."""

    store: str
    identity: Literal["given", "database"]
    synchronous: Literal["FULL", "NORMAL"]
    busy_timeout_ms: int
    allow_network_store: bool
    sync_step_starts: bool
    log_level: str
    log_file: str | None
    crash_point: str | None
    deterministic: bool
    default_user: str | None


@dataclass(frozen=True, slots=True)
class RedactionRules:
    """The policy's redaction section (see :class:`~master_sdk.contracts.policy.Policy`)."""

    enabled: bool
    extra_patterns: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OpeningSettings:
    """Everything :class:`~master_sdk.workbench.Workbench` reads when it opens."""

    root: Path
    user: str
    app: StoreSettings
    redaction: RedactionRules
    secret_values: tuple[str, ...]
    telemetry_enabled: bool
    has_store_password: bool
    # replay models are checked against the others when the router is built: at opening,
    # so that a wrong one is reported there
    replay_models: bool = False

    @classmethod
    def of(cls, settings: Settings) -> OpeningSettings:
        """The opening fields of full settings."""
        return cls(
            root=settings.root,
            user=settings.user,
            app=store_settings(settings.app),
            redaction=RedactionRules(
                settings.policy.redaction.enabled, dict(settings.policy.redaction.extra_patterns)
            ),
            secret_values=settings.secret_values,
            telemetry_enabled=settings.telemetry.enabled,
            has_store_password=settings.store_password is not None,
            replay_models=any(e.provider == "replay" for e in settings.models.models.values()),
        )

    def to_json(self) -> dict[str, Any]:
        """The cacheable fields as JSON data (never the secret values or the user, which are
        found again by each process)."""
        return {
            "root": str(self.root),
            "app": asdict(self.app),
            "redaction": {
                "enabled": self.redaction.enabled,
                "extra_patterns": dict(self.redaction.extra_patterns),
            },
            "telemetry_enabled": self.telemetry_enabled,
            "replay_models": self.replay_models,
        }

    @classmethod
    def from_json(
        cls, data: Any, *, user: Callable[[StoreSettings], str]
    ) -> OpeningSettings | None:
        """Opening settings from :meth:`to_json` data (no secrets, no store password);
        None when anything is missing or of the wrong type. ``user`` finds the user from
        the app settings (as the loader does)."""
        if not isinstance(data, dict) or not isinstance(data.get("root"), str):
            return None
        app = _store_settings(data.get("app"))
        redaction = data.get("redaction")
        if app is None or not isinstance(redaction, dict):
            return None
        enabled, patterns = redaction.get("enabled"), redaction.get("extra_patterns")
        if not isinstance(enabled, bool) or not isinstance(patterns, dict):
            return None
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in patterns.items()):
            return None
        telemetry, replay = data.get("telemetry_enabled"), data.get("replay_models")
        if not isinstance(telemetry, bool) or not isinstance(replay, bool):
            return None
        return cls(
            root=Path(data["root"]),
            user=user(app),
            app=app,
            redaction=RedactionRules(enabled, dict(patterns)),
            secret_values=(),
            telemetry_enabled=telemetry,
            has_store_password=False,
            replay_models=replay,
        )


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "store": (str,),
    "identity": (str,),
    "synchronous": (str,),
    "busy_timeout_ms": (int,),
    "allow_network_store": (bool,),
    "sync_step_starts": (bool,),
    "log_level": (str,),
    "log_file": (str, type(None)),
    "crash_point": (str, type(None)),
    "deterministic": (bool,),
    "default_user": (str, type(None)),
}


def _store_settings(data: Any) -> StoreSettings | None:
    if not isinstance(data, dict) or set(data) != {f.name for f in fields(StoreSettings)}:
        return None
    for name, types in _FIELD_TYPES.items():
        value = data[name]
        # bool is an int: a number field must not take one, nor a flag a number
        if type(value) not in types:
            return None
    if data["identity"] not in ("given", "database") or data["synchronous"] not in (
        "FULL",
        "NORMAL",
    ):
        return None
    return StoreSettings(**data)


def store_settings(app: AppSettings) -> StoreSettings:
    """The opening fields of ``app.yaml``'s settings."""
    return StoreSettings(**{f.name: getattr(app, f.name) for f in fields(StoreSettings)})


class SettingsSource:
    """The opening settings now, the full settings when first asked for (built once, by
    ``build``, from the same files and environment the opening settings came from)."""

    def __init__(
        self,
        opening: OpeningSettings,
        build: Callable[[], Settings] | None = None,
        *,
        settings: Settings | None = None,
        key: str | None = None,
    ) -> None:
        if build is None and settings is None:
            raise ValueError("give the settings or a way to build them")
        self.opening = opening
        # what identifies these settings without building them (a hash of the config
        # files' texts, the MASTER_* variables, the arguments), or None when they hold
        # secrets or were given as an object: caches of what the settings decide
        # (see master_sdk.products.flow_cache) are keyed by it
        self.key = key
        self._build = build
        self._settings = settings
        self._lock = threading.Lock()

    @classmethod
    def of(cls, settings: Settings) -> SettingsSource:
        """A source whose full settings are already built."""
        return cls(OpeningSettings.of(settings), settings=settings)

    @property
    def built(self) -> bool:
        """Whether the full settings exist yet."""
        return self._settings is not None

    def full(self) -> Settings:
        """The full, validated settings (built on the first call)."""
        if self._settings is None:
            with self._lock:
                if self._settings is None:
                    assert self._build is not None  # noqa: S101  # one of the two is given
                    self._settings = self._build()
        return self._settings

    def deterministic(self, on: bool) -> SettingsSource:
        """The same settings with ``app.deterministic`` set to ``on``."""
        opening = replace(self.opening, app=replace(self.opening.app, deterministic=on))

        def build() -> Settings:
            settings = self.full()
            app = settings.app.model_copy(update={"deterministic": on})
            return settings.model_copy(update={"app": app})

        key = None if self.key is None else f"{self.key}|deterministic={on}"
        if self._settings is not None:
            return SettingsSource(opening, settings=build(), key=key)
        return SettingsSource(opening, build, key=key)
