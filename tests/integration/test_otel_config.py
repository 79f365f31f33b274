"""Telemetry settings: off by default, configs/telemetry.yaml and variables, the install
hint when the extra is missing, and no OpenTelemetry import unless telemetry is on."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from master_sdk.config.loader import load_settings
from master_sdk.errors import ConfigError


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


def python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_telemetry_is_off_by_default_and_in_the_shipped_config(tmp_path: Path) -> None:
    """No file, and the repository's configs/telemetry.yaml: export is off."""
    assert load_settings(tmp_path, environ={}).telemetry.enabled is False
    repo = Path(__file__).resolve().parents[2]
    shipped = load_settings(repo, environ={}).telemetry
    assert shipped.enabled is False and shipped.capture_content is False
    assert shipped.semconv == "latest"


def test_the_file_and_variables_set_telemetry_and_secret_headers_are_redacted(
    tmp_path: Path,
) -> None:
    """configs/telemetry.yaml, then MASTER_TELEMETRY__* variables; a header named by
    secret reference gets the secret's value, which joins the redacted values."""
    write(
        tmp_path / "configs" / "telemetry.yaml",
        """
        telemetry:
          enabled: true
          endpoint: http://127.0.0.1:9/v1/traces
          headers: {x-team: analytics}
          headers_ref: {Authorization: otel.auth}
          sample_ratio: 0.25
        """,
    )
    env = {"MASTER_SECRET__OTEL__AUTH": "Bearer abc-123", "MASTER_TELEMETRY__SEMCONV": "both"}
    settings = load_settings(tmp_path, environ=env)
    telemetry = settings.telemetry
    assert telemetry.enabled and telemetry.sample_ratio == 0.25 and telemetry.semconv == "both"
    assert telemetry.all_headers() == {"x-team": "analytics", "Authorization": "Bearer abc-123"}
    assert "Bearer abc-123" in settings.secret_values
    assert "abc-123" not in repr(telemetry)


def test_a_missing_secret_header_and_unknown_keys_are_errors_naming_the_key(
    tmp_path: Path,
) -> None:
    """headers_ref to a secret that does not exist, an unknown key, an unknown variable."""
    write(tmp_path / "configs" / "telemetry.yaml", "headers_ref: {Authorization: otel.none}\n")
    with pytest.raises(ConfigError, match=r"headers_ref\.Authorization.*otel\.none"):
        load_settings(tmp_path, environ={})
    write(tmp_path / "configs" / "telemetry.yaml", "endpont: http://x\n")
    with pytest.raises(ConfigError, match=r"telemetry\.yaml.*endpont.*unknown key"):
        load_settings(tmp_path, environ={})
    write(tmp_path / "configs" / "telemetry.yaml", "enabled: false\n")
    with pytest.raises(ConfigError, match=r"MASTER_TELEMETRY__ENDPONT.*unknown telemetry"):
        load_settings(tmp_path, environ={"MASTER_TELEMETRY__ENDPONT": "x"})


def test_the_semconv_opt_in_variable_chooses_the_attribute_set(tmp_path: Path) -> None:
    """OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental/dup means both sets; the
    file's own `semconv` wins over it; other categories leave the default."""
    env = {"OTEL_SEMCONV_STABILITY_OPT_IN": "http,gen_ai_latest_experimental/dup"}
    assert load_settings(tmp_path, environ=env).telemetry.semconv == "both"
    other = {"OTEL_SEMCONV_STABILITY_OPT_IN": "http"}
    assert load_settings(tmp_path, environ=other).telemetry.semconv == "latest"
    write(tmp_path / "configs" / "telemetry.yaml", "semconv: legacy\n")
    assert load_settings(tmp_path, environ=env).telemetry.semconv == "legacy"


def test_workbench_open_telemetry_overrides_the_file(tmp_path: Path) -> None:
    """A dict turns export on and sets fields over the file's; False turns it off."""
    write(tmp_path / "configs" / "telemetry.yaml", "enabled: true\nservice_name: from-file\n")
    on = load_settings(tmp_path, environ={}, telemetry={"sample_ratio": 0.5})
    assert on.telemetry.enabled and on.telemetry.service_name == "from-file"
    assert on.telemetry.sample_ratio == 0.5
    assert load_settings(tmp_path, environ={}, telemetry=False).telemetry.enabled is False


def test_without_the_extra_turning_telemetry_on_says_how_to_install_it(hello_root: Path) -> None:
    """In a process where OpenTelemetry cannot be imported, telemetry on is a ConfigError
    naming `pip install 'master-sdk[otel]'`; telemetry off works and imports none of it."""
    done = python(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
        import master_sdk as ms
        wb = ms.Workbench.open()
        run = wb.run("hello_world/greet", inputs={"text": "hi"})
        assert run.status == "waiting_approval"
        assert wb.telemetry_status() == {"enabled": False}
        wb.close()
        try:
            ms.Workbench.open(telemetry=True)
        except ms.ConfigError as exc:
            print(exc)
        """,
        hello_root,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'master-sdk[otel]'" in done.stdout


def test_nothing_imports_opentelemetry_unless_telemetry_is_on(hello_root: Path) -> None:
    """A run with telemetry off loads no opentelemetry module."""
    done = python(
        """
        import sys
        import master_sdk as ms
        wb = ms.Workbench.open()
        wb.run("hello_world/greet", inputs={"text": "hi"})
        wb.close()
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """,
        hello_root,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
