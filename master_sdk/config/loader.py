"""The ONLY place that reads the environment, ``.env``, secrets and ``configs/*.yaml``.

Precedence, lowest first: built-in defaults, ``configs/app.yaml`` / ``policy.yaml`` /
``models.yaml``, ``secrets/secrets.yaml`` (secret values, referenced by ``api_key_ref``),
the ``.env`` file in the project root, then ``MASTER_*`` environment variables.

Environment variables:

* ``MASTER_<APP_FIELD>`` sets a field of ``app.yaml`` (``MASTER_STORE``,
  ``MASTER_SYNCHRONOUS``, ``MASTER_DEFAULT_USER``, ...);
* ``MASTER_POLICY__<FIELD>`` sets a policy field (value parsed as YAML: ``[a, b]``, ``10``);
* ``MASTER_SECRET__<A>__<B>`` sets secret ``a.b`` (e.g. ``MASTER_SECRET__OPENAI__API_KEY``);
* ``MASTER_TELEMETRY__<FIELD>`` sets a field of ``configs/telemetry.yaml`` (parsed as YAML);
  ``OTEL_SEMCONV_STABILITY_OPT_IN`` (``gen_ai_latest_experimental``, ``.../dup``) chooses the
  GenAI attribute set when ``semconv`` is not set there.

Unknown keys, unknown ``MASTER_*`` variables and wrong types are errors naming the file
(or variable) and the key.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from master_sdk.config import safe_yaml
from master_sdk.errors import ConfigError

if TYPE_CHECKING:
    # imported where used: opening a workbench from cached settings needs no pydantic
    from pydantic import BaseModel

    from master_sdk.config.opening import OpeningSettings, SettingsSource
    from master_sdk.config.server import ServerSecrets
    from master_sdk.config.settings import Settings
    from master_sdk.config.telemetry import TelemetrySettings

M = TypeVar("M", bound="BaseModel")

ENV_PREFIX = "MASTER_"
CONFIG_FILES = ("app.yaml", "policy.yaml", "models.yaml", "telemetry.yaml")
SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"


def find_root(start: Path | None = None) -> Path:
    """The project folder: the nearest folder upward holding ``products/`` or ``configs/``.

    Falls back to ``start`` (default: the current directory) when none is found.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "products").is_dir() or (folder / "configs").is_dir():
            return folder
    return here


def load_settings(
    root: Path | str | None = None,
    *,
    store: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    telemetry: bool | Mapping[str, Any] | TelemetrySettings | None = None,
    texts: Mapping[str, str | None] | None = None,
) -> Settings:
    """Build :class:`Settings` for a project.

    Args:
        root: project folder; found with :func:`find_root` when omitted.
        store: overrides the SQLite file (``app.store``).
        environ: the environment to read (default ``os.environ``); tests pass their own.
        telemetry: overrides ``configs/telemetry.yaml``: a bool turns export on or off, a
            mapping sets fields over the file's (``enabled`` defaults to true there), a
            :class:`TelemetrySettings` replaces it.
        texts: the config files' texts already read, by path relative to the root
            (``configs/app.yaml``; None: the file does not exist); the others are read.
    """
    from master_sdk.config.pydantic_plugins import skip_scan_if_none

    skip_scan_if_none()  # before the settings build what may be the process's first models
    from pydantic import SecretStr

    from master_sdk.config.settings import AppSettings, ModelsSettings, Settings
    from master_sdk.config.telemetry import TelemetrySettings
    from master_sdk.contracts.policy import Policy

    base = Path(root).resolve() if root is not None else find_root()
    env = dict(os.environ if environ is None else environ)
    configs = base / "configs"
    given = texts or {}

    def read(name: str) -> dict[str, Any]:
        return (
            _read_mapping(base / name, given[name]) if name in given else _read_mapping(base / name)
        )

    app_data = read("configs/app.yaml")
    policy_data = read("configs/policy.yaml")
    policy_data = policy_data.get("policy", policy_data) if isinstance(policy_data, dict) else {}
    models_data = read("configs/models.yaml")
    telemetry_data = read("configs/telemetry.yaml")
    telemetry_data = telemetry_data.get("telemetry", telemetry_data)
    if not isinstance(telemetry_data, dict):
        raise ConfigError(
            "expected a mapping under 'telemetry'", file=str(configs / "telemetry.yaml")
        )
    secrets_file = base / "secrets" / "secrets.yaml"
    secrets = _read_mapping(secrets_file, cached=False)

    dotenv_file = base / ".env"
    dotenv = _read_dotenv(dotenv_file) if dotenv_file.is_file() else {}
    # the process environment wins over .env
    layered = [(f"{dotenv_file}", dotenv), ("environment", _prefixed(env))]
    for source, values in layered:
        for name, value in values.items():
            if not name.startswith(ENV_PREFIX):
                continue
            if name.startswith(TELEMETRY_PREFIX):
                _apply_telemetry_variable(name, value, source, telemetry_data)
                continue
            _apply_variable(name, value, source, app_data, policy_data, secrets)
    if "semconv" not in telemetry_data:
        opted = _semconv_from_opt_in(env.get(SEMCONV_OPT_IN, ""))
        if opted is not None:
            telemetry_data["semconv"] = opted

    app = _validate(AppSettings, app_data, configs / "app.yaml")
    if store is not None:
        app = app.model_copy(update={"store": str(store)})
    policy = _validate(Policy, policy_data, configs / "policy.yaml")
    models = _validate(ModelsSettings, models_data, configs / "models.yaml")
    if isinstance(telemetry, bool):
        telemetry_data["enabled"] = telemetry
    elif isinstance(telemetry, Mapping):
        telemetry_data.update({"enabled": True, **telemetry})
    telemetry_settings = (
        telemetry.model_copy(deep=True)
        if isinstance(telemetry, TelemetrySettings)
        else _validate(TelemetrySettings, telemetry_data, configs / "telemetry.yaml")
    )
    if "default" not in models.models:
        models.models["default"] = ModelsSettings().models["default"]

    server = _server_secrets(secrets, secrets_file)
    secret_values = list(flatten_strings(secrets))
    secret_values.extend(server.secret_values())
    for alias, entry in models.models.items():
        key = _resolve_key(alias, entry.api_key_ref, entry.api_key_env, secrets, env, configs)
        if key is not None:
            entry.api_key = SecretStr(key)
            secret_values.append(key)

    for header, ref in telemetry_settings.headers_ref.items():
        header_value = _secret_at(ref, secrets)
        if header_value is None:
            raise ConfigError(
                f"header {header!r} refers to secret '{ref}', which secrets/secrets.yaml "
                f"(or MASTER_SECRET__{ref.upper().replace('.', '__')}) does not hold",
                file=str(configs / "telemetry.yaml"),
                key=f"headers_ref.{header}",
            )
        telemetry_settings.secret_headers[header] = SecretStr(header_value)
        secret_values.append(header_value)

    store_password = None
    if app.password_ref is not None:
        password = _secret_at(app.password_ref, secrets)
        if password is None:
            raise ConfigError(
                f"password_ref '{app.password_ref}' does not name a string in "
                f"secrets/secrets.yaml (or MASTER_SECRET__"
                f"{app.password_ref.upper().replace('.', '__')})",
                file=str(configs / "app.yaml"),
                key="password_ref",
            )
        store_password = SecretStr(password)
        secret_values.append(password)

    # deterministic mode must not show who ran the notebook (a laptop's user vs CI's)
    user = app.default_user or ("analyst" if app.deterministic else _os_user())
    return Settings(
        root=base,
        app=app,
        policy=policy,
        models=models,
        telemetry=telemetry_settings,
        secret_values=tuple(dict.fromkeys(v for v in secret_values if v)),
        user=user,
        store_password=store_password,
        server=server,
    )


def _server_secrets(secrets: dict[str, Any], file: Path) -> ServerSecrets:
    """The ``server:`` section, taken out of the secrets: its user and role names are
    not secrets (only its tokens and signing key are redacted)."""
    from pydantic import ValidationError

    from master_sdk.config.server import ServerSecrets

    data = secrets.pop("server", None)
    if data is None:
        return ServerSecrets()
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping", file=str(file), key="server")
    try:
        return ServerSecrets.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(["server", *(str(p) for p in first["loc"])])
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(message, file=str(file), key=key) from None


def child_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with ``overrides`` on top: for a child process (a
    notebook kernel started by ``master test``) whose own loader should see them."""
    return {**os.environ, **overrides}


def flatten_strings(tree: Any) -> Iterable[str]:
    """Every leaf string (and number) of a nested mapping/list, as strings."""
    if isinstance(tree, Mapping):
        for value in tree.values():
            yield from flatten_strings(value)
    elif isinstance(tree, list | tuple):
        for value in tree:
            yield from flatten_strings(value)
    elif isinstance(tree, str):
        yield tree
    elif isinstance(tree, int | float) and not isinstance(tree, bool):
        yield str(tree)


def _prefixed(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}


_ABSENT = object()


def _read_mapping(path: Path, text: Any = _ABSENT, *, cached: bool = True) -> dict[str, Any]:
    """A YAML file's top-level mapping (``text``: its text already read, None when it does
    not exist); ``cached``: parsed once per content (never for the secrets file, whose
    values must not be copied anywhere)."""
    if text is None or (text is _ABSENT and not path.is_file()):
        return {}
    try:
        data = (
            safe_yaml.load_file(path, cached=cached)
            if text is _ABSENT
            else safe_yaml.loads(text, cached=cached)
        )
    except safe_yaml.YamlProblem as exc:
        raise ConfigError(str(exc), file=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", file=str(path))
    return data


def _read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"line {number}: expected NAME=value", file=str(path))
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def _apply_variable(
    name: str,
    value: str,
    source: str,
    app: dict[str, Any],
    policy: dict[str, Any],
    secrets: dict[str, Any],
) -> None:
    from master_sdk.config.settings import AppSettings
    from master_sdk.contracts.policy import Policy

    key = name[len(ENV_PREFIX) :]
    if key.startswith("POLICY__"):
        field = key[len("POLICY__") :].lower()
        if field not in Policy.model_fields:
            raise ConfigError(f"unknown policy field '{field}'", file=source, key=name)
        policy[field] = _scalar(value, source, name)
        return
    if key.startswith("SECRET__"):
        path = [p.lower() for p in key[len("SECRET__") :].split("__") if p]
        if not path:
            raise ConfigError("secret name missing", file=source, key=name)
        node = secrets
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"secret '{part}' is not a mapping", file=source, key=name)
            node = child
        node[path[-1]] = value
        return
    field = key.lower()
    if field not in AppSettings.model_fields:
        known = ", ".join(ENV_PREFIX + f.upper() for f in AppSettings.model_fields)
        raise ConfigError(
            f"unknown setting; known: {known}, MASTER_POLICY__<FIELD>, MASTER_SECRET__<PATH>",
            file=source,
            key=name,
        )
    app[field] = value


TELEMETRY_PREFIX = ENV_PREFIX + "TELEMETRY__"


def _apply_telemetry_variable(
    name: str, value: str, source: str, telemetry: dict[str, Any]
) -> None:
    from master_sdk.config.telemetry import TelemetrySettings

    field = name[len(TELEMETRY_PREFIX) :].lower()
    fields = [f for f in TelemetrySettings.model_fields if f != "secret_headers"]
    if field not in fields:
        known = ", ".join(TELEMETRY_PREFIX + f.upper() for f in fields)
        raise ConfigError(f"unknown telemetry setting; known: {known}", file=source, key=name)
    telemetry[field] = _scalar(value, source, name)


def _semconv_from_opt_in(value: str) -> str | None:
    """The GenAI attribute set ``OTEL_SEMCONV_STABILITY_OPT_IN`` asks for (comma-separated
    categories, as the semantic conventions define it); None when it names no GenAI one."""
    wanted = {part.strip() for part in value.split(",")}
    if "gen_ai_latest_experimental/dup" in wanted:
        return "both"
    return "latest" if "gen_ai_latest_experimental" in wanted else None


def _secret_at(ref: str, secrets: Mapping[str, Any]) -> str | None:
    node: Any = secrets
    for part in ref.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return str(node) if isinstance(node, str | int) and not isinstance(node, bool) else None


def _scalar(value: str, source: str, name: str) -> Any:
    try:
        return safe_yaml.loads(value)
    except safe_yaml.YamlProblem as exc:
        raise ConfigError(str(exc), file=source, key=name) from None


def _validate(model: type[M], data: dict[str, Any], path: Path) -> M:
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{message}{more}", file=str(path), key=key) from None


def _resolve_key(
    alias: str,
    ref: str | None,
    env_name: str | None,
    secrets: Mapping[str, Any],
    env: Mapping[str, str],
    configs: Path,
) -> str | None:
    if ref:
        node: Any = secrets
        for part in ref.split("."):
            if not isinstance(node, Mapping) or part not in node:
                # a missing secret is only an error when the model is used; the router says so
                return None
            node = node[part]
        if not isinstance(node, str | int):
            raise ConfigError(
                f"api_key_ref '{ref}' does not name a string in secrets/secrets.yaml",
                file=str(configs / "models.yaml"),
                key=f"models.{alias}.api_key_ref",
            )
        return str(node)
    if env_name:
        return env.get(env_name)
    return None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "analyst"


# --- opening without building the full settings (see master_sdk.config.opening) ---------

SETTINGS_CACHE_FILE = "master_sdk-settings.json"
_OPENING_FILES = tuple(f"configs/{name}" for name in CONFIG_FILES)
_NOT_CACHED_WITH = ("secrets/secrets.yaml", ".env")


def settings_cache_path() -> Path:
    """Where the opening settings of recently opened projects are kept (beside this
    module's bytecode; see :mod:`master_sdk.config.file_cache`)."""
    from master_sdk.config.file_cache import beside_bytecode

    return beside_bytecode(__file__, SETTINGS_CACHE_FILE)


def load_settings_source(
    root: Path | str | None = None,
    *,
    store: Path | str | None = None,
    telemetry: bool | Mapping[str, Any] | TelemetrySettings | None = None,
) -> SettingsSource:
    """The settings of a project as a workbench opens them: the opening fields at once,
    the full settings (:func:`load_settings`, from the same texts and environment) when
    first asked for.

    The opening fields come from a cache when the project's config files, the ``MASTER_*``
    variables, ``store``, ``telemetry`` and this library's version are all as they were
    when full settings were last built for it. A project with a secrets file or a
    ``.env``, or a process with ``MASTER_SECRET__*`` variables, always builds the full
    settings (its secrets are never cached, nor their hashes).
    """
    from master_sdk.config.file_cache import JsonCache
    from master_sdk.config.opening import SettingsSource

    base = Path(root).resolve() if root is not None else find_root()
    env = dict(os.environ)
    texts = _opening_texts(base)
    key = None if texts is None else _opening_key(base, store, telemetry, env, texts)
    cache = JsonCache(settings_cache_path(), max_entries=64)

    def build() -> Settings:
        return load_settings(base, store=store, environ=env, telemetry=telemetry, texts=texts)

    if key is not None:
        entry = cache.get(key)
        opening = _cached_opening(entry, env)
        if opening is not None:
            return SettingsSource(opening, build, key=key)
    settings = build()
    source = SettingsSource.of(settings)
    if key is not None and not settings.secret_values and settings.store_password is None:
        key_env = sorted({e.api_key_env for e in settings.models.models.values() if e.api_key_env})
        cache.put(key, {"opening": source.opening.to_json(), "key_env": key_env})
        source.key = key
    return source


def _cached_opening(entry: Any, env: Mapping[str, str]) -> OpeningSettings | None:
    from master_sdk.config.opening import OpeningSettings, StoreSettings

    if not isinstance(entry, dict):
        return None
    key_env = entry.get("key_env")
    if not isinstance(key_env, list) or any(not isinstance(n, str) or n in env for n in key_env):
        return None  # a model's key variable is set now: it is a secret to redact

    def user(app: StoreSettings) -> str:
        return app.default_user or ("analyst" if app.deterministic else _os_user())

    return OpeningSettings.from_json(entry.get("opening"), user=user)


def _opening_texts(base: Path) -> dict[str, str | None] | None:
    """The config files' texts (None: absent); None when the cache must not be used."""
    for name in _NOT_CACHED_WITH:
        if (base / name).exists():
            return None
    texts: dict[str, str | None] = {}
    for name in _OPENING_FILES:
        path = base / name
        try:
            texts[name] = safe_yaml.read_text(path) if path.is_file() else None
        except (OSError, safe_yaml.YamlProblem):
            return None  # the full load reports it
    return texts


def _opening_key(
    base: Path,
    store: Path | str | None,
    telemetry: Any,
    env: Mapping[str, str],
    texts: Mapping[str, str | None],
) -> str | None:
    import hashlib
    import json

    if telemetry is not None and not isinstance(telemetry, bool):
        return None
    variables = sorted((k, v) for k, v in env.items() if k.startswith(ENV_PREFIX))
    if any(k.startswith(ENV_PREFIX + "SECRET__") for k, _ in variables):
        return None
    material = {
        "root": str(base),
        "store": None if store is None else str(store),
        "telemetry": telemetry,
        "files": texts,
        "variables": variables,
        "semconv": env.get(SEMCONV_OPT_IN),
    }
    text = json.dumps(material, sort_keys=True, ensure_ascii=False)
    return "opening:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
