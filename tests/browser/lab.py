"""Drive a notebook in a real JupyterLab from headless Chromium.

A throwaway JupyterLab server runs on 127.0.0.1 with every Jupyter directory isolated
under a test's temporary folder; Playwright drives Debian's Chromium against it and
clicks the ipywidgets the notebook renders. The functions here know JupyterLab's DOM;
tests only name notebooks, buttons and fields.

Example::

    server = start_lab(tmp_path / "root", tmp_path / "state")
    try:
        with sync_playwright() as playwright:
            context = launch_chromium(playwright, tmp_path / "profile", base_url=server.url)
            page = context.pages[0]
            open_notebook(page, "quickstart.ipynb")
            wait_kernel_ready(page)
            run_all(page)
            click_widget_button(page, "Approve")
    finally:
        server.stop()
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil  # type: ignore[import-untyped]  # no stubs installed; ipykernel depends on it
from playwright.sync_api import BrowserContext, Locator, Page, Playwright

DEFAULT_CHROMIUM = Path("/usr/bin/chromium")

# Flags measured to keep Chromium quiet and offline on these machines; the profile
# directory is passed separately because Playwright owns --user-data-dir.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# JupyterLab user settings that keep a test run offline and deterministic: no news or
# update requests, no autosave racing the test's own edits, and every cell attached to
# the DOM so outputs below the fold can still be found and clicked.
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}

# Kernel labels JupyterLab shows before a kernel is attached ("Kernel" while loading).
_NO_KERNEL_LABELS = frozenset({"", "No Kernel", "Kernel", "Connecting"})

_CURRENT_PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"


class ChromiumMissingError(RuntimeError):
    """Raised when the Chromium executable the browser tests drive is not installed."""


def chromium_path() -> Path:
    """Return the Chromium executable to drive: ``$CHROMIUM_PATH`` or Debian's path."""
    return Path(os.environ.get("CHROMIUM_PATH", str(DEFAULT_CHROMIUM)))


def require_chromium(path: Path | None = None) -> Path:
    """Return ``path`` (default: :func:`chromium_path`) if it is an executable file.

    Raises:
        ChromiumMissingError: with the commands that install it.
    """
    path = path or chromium_path()
    if path.is_file() and os.access(path, os.X_OK):
        return path
    raise ChromiumMissingError(
        f"The browser tests need Chromium at {path}, which is missing. Install it with "
        "`scripts/ensure-chromium` (Debian: `apt-get install -y chromium`, as root) or point "
        "CHROMIUM_PATH at an existing Chromium. Do not run `playwright install`: it "
        "downloads browsers and fails on these machines."
    )


def wait_until(
    condition: Callable[[], Any], *, timeout_s: float, interval_s: float = 0.1, what: str
) -> Any:
    """Poll ``condition`` until it returns a truthy value and return that value.

    Raises:
        TimeoutError: naming ``what`` once ``timeout_s`` has passed.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


@dataclass
class LabServer:
    """A running JupyterLab server owned by a test.

    Attributes:
        process: the ``jupyter lab`` process.
        url: base URL with a trailing slash, e.g. ``http://127.0.0.1:8123/``.
        root_dir: directory the server serves notebooks from.
        log_path: file receiving the server's stdout and stderr.
    """

    process: subprocess.Popen[bytes]
    url: str
    root_dir: Path
    log_path: Path

    def add_notebook(self, source: Path, name: str | None = None) -> str:
        """Copy notebook ``source`` into the served root and return its name there.

        Tests work on the copy, so the committed notebook is never touched.
        """
        name = name or source.name
        shutil.copyfile(source, self.root_dir / name)
        return name

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the server log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the server and the kernels it started.

        SIGTERM lets the server shut its kernels down itself; anything still alive after
        ``timeout_s`` is killed by PID. Safe to call twice.
        """
        if self.process.poll() is not None:
            return
        try:
            # Kernels run in their own sessions, so they are remembered by PID in case
            # the server dies before it can shut them down.
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout_s)
        _, alive = psutil.wait_procs(children, timeout=timeout_s)
        for child in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def jupyter_executable() -> Path:
    """Return the ``jupyter`` script installed next to the running Python."""
    # Not resolved: a venv's python is a symlink to the base interpreter.
    return Path(sys.executable).with_name("jupyter")


def _write_lab_settings(settings_dir: Path) -> None:
    for relative, values in LAB_SETTINGS.items():
        path = settings_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


def _server_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "api/status", timeout=2) as response:  # noqa: S310 -- loopback URL built by start_lab
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def start_lab(
    root_dir: Path,
    state_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    jupyter: Path | None = None,
    timeout_s: float = 60.0,
) -> LabServer:
    """Start JupyterLab on a free loopback port and wait until it answers.

    The server has no token or password, opens no browser, exposes
    ``window.jupyterapp`` to the page, and keeps its config, data, runtime, IPython and
    settings directories under ``state_dir``. The venv's own data directory stays on
    Jupyter's search path (it is the ``sys.prefix`` entry, not ``JUPYTER_DATA_DIR``), so
    the ipywidgets front-end extension and the ``python3`` kernelspec are still found.

    Args:
        root_dir: directory to serve; created if missing.
        state_dir: directory for Jupyter's state and the server log; created if missing.
        env: extra environment variables for the server and the kernels it starts.
        jupyter: the ``jupyter`` executable; defaults to :func:`jupyter_executable`.
        timeout_s: how long to wait for ``/api/status`` to answer.

    Raises:
        RuntimeError: if the server exits or does not answer in time (log tail included).
    """
    root_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    dirs = {name: state_dir / name for name in ("config", "data", "runtime", "ipython")}
    for path in dirs.values():
        path.mkdir(exist_ok=True)
    settings_dir = dirs["config"] / "lab" / "user-settings"
    workspaces_dir = dirs["config"] / "lab" / "workspaces"
    _write_lab_settings(settings_dir)

    server_env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        **(env or {}),
    }
    port = free_port()
    command = [
        str(jupyter or jupyter_executable()),
        "lab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        # Fail loudly if the port was taken meanwhile instead of silently moving.
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root_dir}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--LabApp.expose_app_in_browser=True",
        # The default PyPI-backed manager may query the network.
        "--LabApp.extension_manager=readonly",
        f"--LabApp.user_settings_dir={settings_dir}",
        f"--LabApp.workspaces_dir={workspaces_dir}",
    ]
    log_path = state_dir / "jupyter-lab.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=root_dir,
            env=server_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LabServer(process, f"http://127.0.0.1:{port}/", root_dir, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited with code {process.returncode} before answering; "
                f"log {log_path}:\n{server.log_tail()}"
            )
        return _server_ready(server.url)

    try:
        wait_until(ready, timeout_s=timeout_s, interval_s=0.2, what=f"{server.url}api/status")
    except TimeoutError as exc:
        server.stop()
        raise RuntimeError(f"{exc}; log {log_path}:\n{server.log_tail()}") from exc
    except BaseException:
        server.stop()
        raise
    return server


def launch_chromium(
    playwright: Playwright,
    profile_dir: Path,
    *,
    base_url: str,
    executable: Path | None = None,
    timeout_s: float = 30.0,
) -> BrowserContext:
    """Launch headless Chromium with a fresh profile and return its browser context.

    Relative URLs given to ``page.goto`` resolve against ``base_url``; every Playwright
    action and ``expect`` waits up to ``timeout_s`` by default.
    """
    if profile_dir.exists():
        shutil.rmtree(profile_dir)
    context = playwright.chromium.launch_persistent_context(
        profile_dir,
        executable_path=executable or require_chromium(),
        headless=True,
        args=list(CHROMIUM_ARGS),
        base_url=base_url,
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(timeout_s * 1000)
    return context


def open_notebook(
    page: Page, name: str, *, timeout_s: float = 60.0, workspace: str | None = None
) -> None:
    """Open notebook ``name`` (relative to the server root) and wait for its cells; with
    ``workspace``, in that JupyterLab workspace, reset first (a later test of a module
    sharing one server then does not get the notebooks an earlier test left open)."""
    where = f"lab/workspaces/{quote(workspace)}/tree" if workspace else "lab/tree"
    page.goto(f"{where}/{quote(name)}" + ("?reset" if workspace else ""))
    page.locator(f"{_CURRENT_PANEL} .jp-Notebook .jp-Cell").first.wait_for(
        state="visible", timeout=timeout_s * 1000
    )


def _accept_kernel_dialog(page: Page) -> bool:
    dialog = page.locator(".jp-Dialog").filter(has_text="Select Kernel")
    if not dialog.is_visible():
        return False
    # The dialog preselects the notebook's preferred kernel (python3 here).
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    return True


def kernel_name(page: Page) -> str:
    """Return the kernel name shown in the current notebook's toolbar."""
    label = page.locator(f"{_CURRENT_PANEL} .jp-Toolbar-kernelName")
    return label.inner_text().strip() if label.count() == 1 else ""


def kernel_status(page: Page) -> str:
    """Return the current notebook's execution indicator status, e.g. ``"idle"``."""
    indicator = page.locator(f"{_CURRENT_PANEL} .jp-Notebook-ExecutionIndicator")
    if indicator.count() != 1:
        return ""
    return indicator.get_attribute("data-status") or ""


def wait_kernel_ready(page: Page, *, timeout_s: float = 60.0) -> str:
    """Wait until the notebook has a named kernel that is idle; return its name.

    Both are needed: the toolbar can read "idle" while the kernel name still reads
    "No Kernel", and Run All then does nothing. A "Select Kernel" dialog (notebooks
    without kernel metadata) is accepted with its default choice.
    """

    def ready() -> str:
        _accept_kernel_dialog(page)
        name = kernel_name(page)
        if name in _NO_KERNEL_LABELS or kernel_status(page) != "idle":
            return ""
        return name

    try:
        name: str = wait_until(ready, timeout_s=timeout_s, interval_s=0.2, what="an idle kernel")
    except TimeoutError as exc:
        raise TimeoutError(
            f"{exc}: kernel name {kernel_name(page)!r}, status {kernel_status(page)!r}"
        ) from exc
    return name


def has_app_handle(page: Page) -> bool:
    """Return whether the page exposes ``window.jupyterapp`` (see :func:`start_lab`)."""
    return bool(page.evaluate("() => Boolean(window.jupyterapp)"))


def run_all(page: Page) -> None:
    """Run every cell of the current notebook (command ``runmenu:run-all``).

    Uses the app's command registry when the page exposes it, otherwise the Run menu.
    Returns once the command is issued; wait on what the cells render.
    """
    if has_app_handle(page):
        # Not awaited: the command resolves only when every cell has run, and
        # page.evaluate has no timeout of its own.
        page.evaluate("() => { window.jupyterapp.commands.execute('runmenu:run-all'); }")
        return
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def _exact(text: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(text)}\s*$")


def widget_button(page: Page, text: str) -> Locator:
    """Return the ipywidgets button whose label is exactly ``text``."""
    return page.locator(f"{_CURRENT_PANEL} button.jupyter-button").filter(has_text=_exact(text))


def click_widget_button(page: Page, text: str, *, timeout_s: float = 30.0) -> None:
    """Click the ipywidgets button labelled ``text`` once it is rendered and enabled.

    Fails if several buttons carry the label (Playwright's strict mode), which usually
    means the notebook ran twice.
    """
    widget_button(page, text).click(timeout=timeout_s * 1000)


def widget_text_input(page: Page, label_or_placeholder: str) -> Locator:
    """Return the ipywidgets Text/Textarea input matched by description or placeholder."""
    panel = page.locator(_CURRENT_PANEL)
    fields = panel.locator(".widget-text input, .widget-textarea textarea")
    by_placeholder = fields.and_(panel.get_by_placeholder(label_or_placeholder, exact=True))
    by_label = (
        panel.locator(".widget-text, .widget-textarea")
        .filter(has=page.locator("label.widget-label", has_text=_exact(label_or_placeholder)))
        .locator("input, textarea")
    )
    return by_placeholder.or_(by_label)


def fill_widget_text(
    page: Page, label_or_placeholder: str, text: str, *, timeout_s: float = 30.0
) -> None:
    """Type ``text`` into the ipywidgets text field named by description or placeholder.

    The field is blurred afterwards so widgets with ``continuous_update=False`` also
    send the value to the kernel before the next click.
    """
    field = widget_text_input(page, label_or_placeholder)
    field.fill(text, timeout=timeout_s * 1000)
    field.blur()


def screenshot(page: Page, path: Path) -> Path:
    """Save a full-page PNG of ``page`` to ``path`` (parents created) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, full_page=True)
    return path


def wait_for_json(path: Path, *, timeout_s: float = 30.0) -> Any:
    """Poll until ``path`` holds valid JSON and return it.

    Raises:
        TimeoutError: if the file is still missing or partial after ``timeout_s``.
    """

    def load() -> tuple[Any] | None:
        try:
            return (json.loads(path.read_text()),)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    loaded: tuple[Any] = wait_until(load, timeout_s=timeout_s, what=f"JSON in {path}")
    return loaded[0]
