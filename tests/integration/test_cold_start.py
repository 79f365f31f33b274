"""Opening a workbench in a fresh process from cached settings and parsed YAML, in real
subprocesses: a second process sees every edit made after the cache was written, never
trusts a tampered or foreign cache, and gives the same results warm as cold.

Each test gives its processes their own ``-X pycache_prefix``, where the caches are kept
(beside the bytecode, as Python keeps it), so the tests share nothing with each other or
with the installed library's caches.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import master_sdk
from master_sdk.config.file_cache import beside_bytecode
from master_sdk.config.loader import SETTINGS_CACHE_FILE

REPO = Path(__file__).resolve().parents[2]

# Opens the workbench of the current folder and reports what a user could see of it.
OPEN = """
import json, sys
import master_sdk as ms
if len(sys.argv) > 1:
    ms.__version__ = sys.argv[1]
wb = ms.Workbench.open(".")
warm = "pydantic" not in sys.modules
report = {
    "warm": warm,
    "store": str(wb.store.location),
    "user": wb.user,
    "redacted": wb.redact("key sk-test-0123456789abcdefghij, word hunter2, ip 10.1.2.3"),
    "settings": wb.settings.model_dump(mode="json", exclude={"secret_values"}),
    "secret_count": len(wb.settings.secret_values),
}
wb.close()
print(json.dumps(report))
"""


def _env(prefix: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASTER_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


def _python(
    root: Path, prefix: Path, script: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", f"pycache_prefix={prefix}", "-c", script, *args],
        cwd=root,
        env=_env(prefix, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _open(root: Path, prefix: Path, *args: str, **env: str) -> dict[str, Any]:
    done = _python(root, prefix, OPEN, *args, **env)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _settings_cache(prefix: Path) -> Path:
    loader = Path(master_sdk.__file__).parent / "config" / "loader.py"
    sys_prefix = sys.pycache_prefix
    try:
        sys.pycache_prefix = str(prefix)
        return beside_bytecode(str(loader), SETTINGS_CACHE_FILE)
    finally:
        sys.pycache_prefix = sys_prefix


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    return tmp_path / "pycache"


def test_a_second_process_opens_from_the_cache_without_pydantic(
    hello_root: Path, prefix: Path
) -> None:
    """The first process builds the settings and caches the opening fields; the second
    opens without importing pydantic and ends up with the same full settings."""
    cold = _open(hello_root, prefix)
    warm = _open(hello_root, prefix)
    assert cold["warm"] is False
    assert warm["warm"] is True
    assert warm == {**cold, "warm": True}
    assert _settings_cache(prefix).is_file()


@pytest.mark.parametrize(
    ("name", "text", "field", "expected"),
    [
        ("app.yaml", "store: other/runs.sqlite3\nlog_level: INFO\n", ("app", "log_level"), "INFO"),
        ("policy.yaml", "policy:\n  max_steps: 7\n", ("policy", "max_steps"), 7),
        (
            "models.yaml",
            "models:\n  default: {provider: fake, responses: [hi]}\n",
            ("models", "models", "default", "responses"),
            ["hi"],
        ),
        (
            "telemetry.yaml",
            "telemetry:\n  service_name: edited\n",
            ("telemetry", "service_name"),
            "edited",
        ),
    ],
)
def test_an_edit_to_a_config_file_after_the_cache_is_seen(
    hello_root: Path, prefix: Path, name: str, text: str, field: tuple[str, ...], expected: Any
) -> None:
    """Editing any config file after a process cached the settings: the next process
    builds them again from the edited file, and the one after opens warm with them."""
    _open(hello_root, prefix)
    assert _open(hello_root, prefix)["warm"] is True
    (hello_root / "configs" / name).write_text(text, encoding="utf-8")
    edited = _open(hello_root, prefix)
    value: Any = edited["settings"]
    for part in field:
        value = value[part]
    assert value == expected
    assert edited["warm"] is False
    again = _open(hello_root, prefix)
    assert again == {**edited, "warm": True}
    if name == "app.yaml":
        assert again["store"] == str(hello_root / "other" / "runs.sqlite3")


def test_a_secrets_file_added_after_the_cache_is_read_and_redacted(
    hello_root: Path, prefix: Path
) -> None:
    """A secrets file appearing after the cache was written: its values are redacted in
    the next process (the cache is never used while a secrets file exists)."""
    before = _open(hello_root, prefix)
    assert "hunter2" in before["redacted"]
    (hello_root / "secrets").mkdir()
    (hello_root / "secrets" / "secrets.yaml").write_text("db: {password: hunter2}\n")
    after = _open(hello_root, prefix)
    assert after["warm"] is False
    assert "hunter2" not in after["redacted"]
    assert after["secret_count"] == 1
    assert "hunter2" not in _settings_cache(prefix).read_text(encoding="utf-8")


def test_variables_and_dotenv_after_the_cache_are_seen(hello_root: Path, prefix: Path) -> None:
    """A MASTER_* variable set, or a .env file written, after the cache: the next process
    follows them."""
    _open(hello_root, prefix)
    assert _open(hello_root, prefix, MASTER_DEFAULT_USER="zoe")["user"] == "zoe"
    assert _open(hello_root, prefix, MASTER_DEFAULT_USER="zoe")["warm"] is True
    assert _open(hello_root, prefix)["user"] != "zoe"
    (hello_root / ".env").write_text("MASTER_DEFAULT_USER=yann\n", encoding="utf-8")
    dotenv = _open(hello_root, prefix)
    assert (dotenv["user"], dotenv["warm"]) == ("yann", False)


def test_a_model_key_variable_set_after_the_cache_is_redacted(
    hello_root: Path, prefix: Path
) -> None:
    """A model reading its key from a variable: the cache was written while the variable
    was unset; once it is set, the key is a secret the next process redacts."""
    models = hello_root / "configs" / "models.yaml"
    models.write_text(
        "models:\n  default: {provider: fake}\n"
        "  gpt: {provider: openai, model: gpt-4o-mini, api_key_env: COLD_TEST_KEY}\n",
        encoding="utf-8",
    )
    _open(hello_root, prefix)
    assert _open(hello_root, prefix)["warm"] is True
    keyed = _open(hello_root, prefix, COLD_TEST_KEY="hunter2")
    assert keyed["warm"] is False
    assert "hunter2" not in keyed["redacted"]


def test_another_library_version_never_uses_the_cache(hello_root: Path, prefix: Path) -> None:
    """A cache written by one version of the library is not used by another."""
    _open(hello_root, prefix)
    assert _open(hello_root, prefix)["warm"] is True
    other = _open(hello_root, prefix, "99.0.0")
    assert other["warm"] is False
    assert _open(hello_root, prefix)["warm"] is False  # rewritten by 99.0.0: not ours
    assert _open(hello_root, prefix)["warm"] is True


def test_a_tampered_cache_is_ignored_and_rewritten(hello_root: Path, prefix: Path) -> None:
    """A cache file edited by hand (its checksum no longer matches) or replaced by
    garbage is ignored: the settings are built from the files and cached again."""
    expected = _open(hello_root, prefix)
    cache = _settings_cache(prefix)
    document = json.loads(cache.read_text(encoding="utf-8"))
    for entry in document["entries"].values():
        entry["opening"]["app"]["store"] = "/tmp/elsewhere.sqlite3"  # never opened
    cache.write_text(json.dumps(document), encoding="utf-8")
    tampered = _open(hello_root, prefix)
    assert tampered == expected
    assert _open(hello_root, prefix) == {**expected, "warm": True}
    cache.write_bytes(b"\x00garbage{")
    assert _open(hello_root, prefix) == expected
    assert _open(hello_root, prefix)["warm"] is True


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="file ownership is POSIX")
def test_a_cache_others_can_write_is_not_trusted(hello_root: Path, prefix: Path) -> None:
    """A cache file writable by the group or by anyone is ignored, whatever it holds."""
    expected = _open(hello_root, prefix)
    cache = _settings_cache(prefix)
    assert cache.stat().st_mode & 0o077 == 0  # written private
    cache.chmod(0o666)
    assert _open(hello_root, prefix) == expected  # not warm: ignored, then rewritten private
    assert cache.stat().st_mode & 0o077 == 0


def test_the_cache_serves_processes_without_bytecode(hello_root: Path, prefix: Path) -> None:
    """With bytecode writing off (-B, as PYTHONDONTWRITEBYTECODE=1 on many machines), the
    first process still leaves the cache and the next one opens warm."""

    def open_without_bytecode() -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-B", "-X", f"pycache_prefix={prefix}", "-c", OPEN],
            cwd=hello_root,
            env=_env(prefix),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        result: dict[str, object] = json.loads(done.stdout)
        return result

    first = open_without_bytecode()
    assert first["warm"] is False
    assert _settings_cache(prefix).exists()
    second = open_without_bytecode()
    assert second["warm"] is True
    assert {k: v for k, v in second.items() if k != "warm"} == {
        k: v for k, v in first.items() if k != "warm"
    }


# Runs hello_world to its end in three fresh processes (start, approve, submit) and
# prints what the user sees of the run.
RUN_STEPS = {
    "start": """
import sys, master_sdk as ms
wb = ms.Workbench.open(".", deterministic=True)
print(wb.run("hello_world/greet", inputs={"text": sys.argv[1]}).id)
wb.close()
""",
    "approve": """
import sys, master_sdk as ms
wb = ms.Workbench.open(".", deterministic=True)
run = wb.get_run(sys.argv[1], recover=False)
run.approve("fine", by="ana")
print(run.status, run.waiting_for.get("prompt"))
wb.close()
""",
    "submit": """
import json, sys, master_sdk as ms
wb = ms.Workbench.open(".", deterministic=True)
run = wb.get_run(sys.argv[1], recover=False)
run.submit({"audience": "the board"}, by="ana")
trace = wb.get_run(sys.argv[1]).trace()
print(json.dumps({"status": str(run.status), "output": run.output,
                  "events": list(trace["event"]), "steps": list(trace["step_id"].fillna(""))}))
wb.close()
""",
}


def _run_to_end(root: Path, prefix: Path) -> tuple[str, dict[str, Any]]:
    started = _python(root, prefix, RUN_STEPS["start"], "Hello from a cold process")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    approved = _python(root, prefix, RUN_STEPS["approve"], run_id)
    assert approved.returncode == 0, approved.stderr
    submitted = _python(root, prefix, RUN_STEPS["submit"], run_id)
    assert submitted.returncode == 0, submitted.stderr
    result: dict[str, Any] = json.loads(submitted.stdout)
    return approved.stdout.strip(), result


def test_warm_results_equal_cold_results(tmp_path: Path) -> None:
    """hello_world run start to end in fresh processes: with every cache cold (a new
    pycache prefix each time) and with them warm, the statuses, prompts, output and trace
    are the same."""
    results = []
    for name in ("cold", "warm"):
        root = tmp_path / name
        shutil.copytree(REPO / "products", root / "products")
        shutil.copytree(REPO / "configs", root / "configs")
        prefix = tmp_path / f"pycache-{name}"
        if name == "warm":
            _open(root, prefix)  # fills the caches
            assert _open(root, prefix)["warm"] is True
        results.append(_run_to_end(root, prefix))
    cold, warm = results
    assert cold[0].startswith("waiting_input Who is the summary for?")
    assert cold[1]["status"] == "completed"
    assert warm == cold


def test_an_edited_flow_after_the_parse_cache_is_seen(hello_root: Path, prefix: Path) -> None:
    """A flow file edited after a process parsed (and cached) it: the next process runs
    the edited flow."""
    first = _python(hello_root, prefix, RUN_STEPS["start"], "hello")
    assert first.returncode == 0, first.stderr
    flow = hello_root / "products" / "hello_world" / "flows" / "greet.yaml"
    flow.write_text(
        flow.read_text(encoding="utf-8").replace(
            "Send this text to the summariser?", "Edited: send it?"
        ),
        encoding="utf-8",
    )
    script = textwrap.dedent(
        """
        import master_sdk as ms
        wb = ms.Workbench.open(".")
        print(wb.run("hello_world/greet", inputs={"text": "hello"}).waiting_for["prompt"])
        wb.close()
        """
    )
    second = _python(hello_root, prefix, script)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "Edited: send it?"


PLUGIN_CHECK = """
import json
import master_sdk as ms
wb = ms.Workbench.open(".")
wb.settings  # builds the first models
from pydantic.plugin import _loader
print(json.dumps(sorted(_loader._plugins or {})))
wb.close()
"""


def test_a_pydantic_plugin_installed_after_the_cache_is_loaded(
    hello_root: Path, prefix: Path, tmp_path: Path
) -> None:
    """The cached "no pydantic plugin" is only trusted while the folders on sys.path are
    unchanged: a plugin installed afterwards is found and loaded by pydantic."""
    site = tmp_path / "site"
    site.mkdir()
    none = _python(hello_root, prefix, PLUGIN_CHECK, PYTHONPATH=str(site))
    assert none.returncode == 0, none.stderr
    assert json.loads(none.stdout) == []
    (site / "cold_plugin.py").write_text(
        "class Plugin:\n"
        "    def new_schema_validator(self, *args, **kwargs):\n"
        "        return None, None, None\n\n"
        "plugin = Plugin()\n"
    )
    info = site / "cold_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cold-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pydantic]\ncold = cold_plugin:plugin\n")
    found = _python(hello_root, prefix, PLUGIN_CHECK, PYTHONPATH=str(site))
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == ["cold_plugin:plugin"]


SCANS = """
import importlib.metadata as metadata
scans = []
real = metadata.entry_points
metadata.entry_points = lambda *a, **k: scans.append(1) or real(*a, **k)
from master_sdk.config.pydantic_plugins import skip_scan_if_none
skip_scan_if_none()
print(len(scans))
"""


def test_a_file_made_in_the_current_folder_keeps_the_no_plugin_answer(
    hello_root: Path, prefix: Path
) -> None:
    """A kernel's current folder changes whenever a notebook is saved there: that is no
    install, so the next process still skips pydantic's scan of every distribution."""
    first = _python(hello_root, prefix, SCANS)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() in ("0", "1")  # found in the cache, or scanned once
    (hello_root / "saved.ipynb").write_text("{}")
    second = _python(hello_root, prefix, SCANS)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "0"
