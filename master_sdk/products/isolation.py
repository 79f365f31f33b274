"""Loading products first in a child process, for commands that must always finish.

In-process, a product's import is bounded by ``load_timeout_s`` (see
:mod:`~master_sdk.products.imports`), which stops Python loops and sleeps. What it cannot
stop — C code that never returns to the interpreter, a loop that catches ``BaseException``,
``os._exit()``, a crash of the interpreter — would stop the command with it.
:func:`precheck` therefore imports every product in a child process first, one after the
other, watching each with a deadline; a product during which the child dies or stalls is
reported by name, the child is restarted for the rest, and the caller then loads only the
products that passed. ``master validate`` and ``master flows`` do this
(``Workbench.validate(isolate=True)``); a notebook does not (it pays the start of a Python
process, about half a second, for nothing on a healthy project).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

_STARTUP_S = 60.0  # importing master_sdk and pydantic in a loaded machine's child


def precheck(root: Path, names: list[str], *, timeout_s: float) -> dict[str, str]:
    """Import each product of ``root`` in a child process; return why each bad one failed.

    Only products that stop or stall the child are returned (name -> reason); a product
    that merely fails to load is left to the caller, which reports it with its FlowError.
    """
    bound = (timeout_s if timeout_s > 0 else 30.0) * 2 + 2.0
    failed: dict[str, str] = {}
    pending = list(names)
    while pending:
        done, stuck, reason = _run_child(root, pending, bound)
        pending = [n for n in pending if n not in done and n != stuck]
        if stuck is not None:
            failed[stuck] = reason
        elif pending:  # the child ended before it could name a product: give up checking
            break
    return failed


def _run_child(root: Path, names: list[str], bound: float) -> tuple[set[str], str | None, str]:
    """Run one child over ``names``: ``(finished, the product it stopped in, why)``."""
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
        [sys.executable, "-m", "master_sdk.products.isolation", str(root), *names],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert child.stdout is not None  # noqa: S101 - stdout=PIPE above
    done: set[str] = set()
    current: str | None = None
    deadline = time.monotonic() + _STARTUP_S
    buffer = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill(child)
                if current is None:
                    return done, None, "the checking process did not start"
                return (
                    done,
                    current,
                    (
                        f"importing it did not finish within {bound:g} s and could not be "
                        "interrupted (stopped in a separate process)"
                    ),
                )
            ready, _, _ = select.select([child.stdout], [], [], left)
            if not ready:
                continue
            chunk = os.read(child.stdout.fileno(), 65536)
            if not chunk:
                code = child.wait()
                if current is None:
                    return done, None, ""
                how = (
                    f"killed by signal {signal.Signals(-code).name}"
                    if code < 0
                    else f"exit code {code}"
                )
                return done, current, f"importing it ended the process ({how})"
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    kind, name = json.loads(line)
                except (ValueError, TypeError):
                    continue  # product code printing to stdout
                if kind == "start":
                    current = name
                    deadline = time.monotonic() + bound
                elif kind == "done":
                    done.add(name)
                    current = None
    finally:
        if child.poll() is None:
            _kill(child)


def _kill(child: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except OSError:
        child.kill()
    child.wait()


def _child(root: str, names: list[str]) -> None:
    """Load each named product, announcing it on the real stdout before and after."""
    from master_sdk.config.loader import load_settings
    from master_sdk.orchestrator.templating import TemplateEngine
    from master_sdk.products.loader import ProductCatalog

    out = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # what products print must not look like our messages
    settings = load_settings(Path(root))
    policy = settings.policy
    catalog = ProductCatalog(
        settings.products_path,
        policy=policy,
        templates=TemplateEngine(
            max_rendered_chars=policy.max_rendered_chars, max_render_ms=policy.max_render_ms
        ),
        model_names=set(settings.models.models),
        load_timeout_s=settings.app.load_timeout_s,
    )
    for name in names:
        out.write(json.dumps(["start", name]) + "\n")
        with contextlib.suppress(Exception):  # a FlowError is reported by the parent's load
            catalog.product(name)
        out.write(json.dumps(["done", name]) + "\n")
    out.flush()
    os._exit(0)  # skip interpreter teardown: product threads or atexit hooks must not hang it


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2:])
