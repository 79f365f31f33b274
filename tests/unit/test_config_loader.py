"""Settings come from configs/*.yaml, secrets, .env and MASTER_* variables, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from master_sdk.config.loader import find_root, load_settings
from master_sdk.errors import ConfigError


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_defaults_work_with_no_config_at_all(tmp_path: Path) -> None:
    """An empty folder gives a store under storage/, products/, and a fake default model."""
    settings = load_settings(tmp_path, environ={})
    assert settings.store_path == tmp_path.resolve() / "storage" / "master.sqlite3"
    assert settings.products_path == tmp_path.resolve() / "products"
    assert settings.models.models["default"].provider == "fake"
    assert settings.app.synchronous == "FULL"


def test_precedence_files_then_dotenv_then_environment(tmp_path: Path) -> None:
    """app.yaml < .env < process environment."""
    write(tmp_path / "configs" / "app.yaml", "store: from-yaml.sqlite3\nbusy_timeout_ms: 100\n")
    write(tmp_path / ".env", "MASTER_STORE=from-dotenv.sqlite3\nMASTER_DEFAULT_USER='dot'\n")
    only_files = load_settings(tmp_path, environ={})
    assert only_files.app.store == "from-dotenv.sqlite3"
    assert only_files.user == "dot"
    assert only_files.app.busy_timeout_ms == 100
    env = load_settings(tmp_path, environ={"MASTER_STORE": "from-env.sqlite3"})
    assert env.app.store == "from-env.sqlite3"


def test_policy_and_secret_variables(tmp_path: Path) -> None:
    """MASTER_POLICY__X sets policy fields (YAML-typed); MASTER_SECRET__A__B sets secrets."""
    write(
        tmp_path / "configs" / "models.yaml",
        "models:\n  gpt: {provider: openai, model: gpt-4o-mini, api_key_ref: openai.api_key}\n",
    )
    settings = load_settings(
        tmp_path,
        environ={
            "MASTER_POLICY__MAX_STEPS": "7",
            "MASTER_POLICY__ALLOWED_TOOLS": "[echo, count]",
            "MASTER_SECRET__OPENAI__API_KEY": "sk-test-123456",
        },
    )
    assert settings.policy.max_steps == 7
    assert settings.policy.allowed_tools == ["echo", "count"]
    key = settings.models.models["gpt"].api_key
    assert key is not None and key.get_secret_value() == "sk-test-123456"
    assert "sk-test-123456" in settings.secret_values


def test_secret_leaves_are_collected_once_in_file_order(tmp_path: Path) -> None:
    """Nested mappings and lists are walked in order; repeats, keys, booleans and empty
    strings are dropped; numbers count (a numeric PIN is a secret too)."""
    write(
        tmp_path / "secrets" / "secrets.yaml",
        "openai: {api_key: k-1xyz, org: ''}\n"
        "db: {dsn: 'postgres://u:p@h/d', replicas: [pw-aaaa, pw-bbbb, pw-aaaa], port: 5432}\n"
        "debug: true\n",
    )
    settings = load_settings(tmp_path, environ={})
    assert settings.secret_values == ("k-1xyz", "postgres://u:p@h/d", "pw-aaaa", "pw-bbbb", "5432")


def test_secrets_file_values_are_collected_for_redaction(tmp_path: Path) -> None:
    """Every leaf value of secrets/secrets.yaml becomes a redaction target."""
    write(tmp_path / "secrets" / "secrets.yaml", "db:\n  password: hunter2hunter2\n  port: 5432\n")
    settings = load_settings(tmp_path, environ={})
    assert "hunter2hunter2" in settings.secret_values


@pytest.mark.parametrize(
    ("file", "text", "key"),
    [
        ("app.yaml", "stroe: x\n", "stroe"),
        ("app.yaml", "busy_timeout_ms: soon\n", "busy_timeout_ms"),
        ("policy.yaml", "policy:\n  max_stepz: 3\n", "max_stepz"),
        ("models.yaml", "models:\n  m: {provider: nope}\n", "models.m.provider"),
    ],
)
def test_unknown_keys_and_wrong_types_name_file_and_key(
    tmp_path: Path, file: str, text: str, key: str
) -> None:
    """A bad config value is a ConfigError naming the file and the key."""
    write(tmp_path / "configs" / file, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    assert caught.value.key == key
    assert caught.value.file is not None and caught.value.file.endswith(file)
    assert file in str(caught.value)


def test_unknown_master_variable_is_an_error_naming_it(tmp_path: Path) -> None:
    """A misspelt MASTER_* variable is reported, not ignored."""
    with pytest.raises(ConfigError, match="MASTER_STROE"):
        load_settings(tmp_path, environ={"MASTER_STROE": "x"})


def test_find_root_walks_up_to_the_project(tmp_path: Path) -> None:
    """From a notebooks/ subfolder the project root is found."""
    (tmp_path / "products").mkdir()
    deep = tmp_path / "notebooks" / "sub"
    deep.mkdir(parents=True)
    assert find_root(deep) == tmp_path.resolve()


def test_store_argument_overrides_config(tmp_path: Path) -> None:
    """Workbench.open(store=...) wins over app.yaml."""
    write(tmp_path / "configs" / "app.yaml", "store: a.sqlite3\n")
    settings = load_settings(tmp_path, store=tmp_path / "b.sqlite3", environ={})
    assert settings.store_path == tmp_path / "b.sqlite3"
