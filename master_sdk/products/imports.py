"""Importing a product's Python: confined to its folder, fresh per version, bounded in time.

A product's modules live in a private package ``master_products.<name>_v<N>``, one per
loaded version of the product, so that reloading an edited product never mixes its new
modules with old ones, and objects a paused run or a notebook still holds keep their own
code. Three guards apply while such a package is imported:

- **Confinement.** A meta path finder resolves every module of a product package
  (``from . import helper``, ``from .pkg import mod``, ``importlib.import_module(...)``)
  and refuses any whose file — or package folder — lies outside the product folder once
  symbolic links are resolved. This guards the import system, not the interpreter:
  product code is Python and, once running, can open any file it can read.
- **Fresh code.** Modules are compiled from their source on every load; no ``.pyc`` is
  read or written, so an edit made within the same second as the last load (same size,
  same mtime to the second) is never hidden by a stale bytecode cache.
- **A time bound.** :func:`bounded` interrupts an import that runs longer than its limit
  with :class:`LoadTimeout`, every 0.1 s until the import gives up. A watchdog thread
  does it: in the main thread by sending it a signal that has no handler of its own
  (SIGALRM, else SIGUSR2 or SIGUSR1), whose temporary handler raises — which also
  interrupts ``time.sleep``, lock waits and I/O; in any other thread (or when all three
  signals are taken) by raising the exception asynchronously in the loading thread, which
  takes effect only when that thread runs Python bytecode again (a ``time.sleep(60)``
  there ends first). Nothing in-process stops C code that never returns to the
  interpreter (``sum(range(10**12))``) or a loop that catches ``BaseException`` itself:
  such an import keeps the caller waiting.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import signal
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from typing_extensions import Buffer

PACKAGE_ROOT = "master_products"
_RETRY_S = 0.1  # how often an interrupted import that swallowed the interrupt is hit again

T = TypeVar("T")


class LoadTimeout(BaseException):
    """Raised inside a product import that ran past its time limit.

    A ``BaseException`` so that ``except Exception`` in product code does not swallow it.
    """


class ImportRefused(ImportError):
    """A product module resolved outside its product folder."""


class _FreshSourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles from source every time; never reads or writes bytecode caches."""

    def get_code(self, fullname: str) -> types.CodeType:
        source = self.get_data(self.path)
        return self.source_to_code(source, self.path)

    def set_data(self, path: str, data: Buffer, *, _mode: int = 0o666) -> None:
        return None


class _ProductFinder(importlib.abc.MetaPathFinder):
    """Finds modules of ``master_products.*`` packages inside their product folder only."""

    def __init__(self) -> None:
        self._roots: dict[str, Path] = {}
        self._lock = threading.Lock()

    def register(self, package: str, folder: Path) -> None:
        with self._lock:
            self._roots[package] = folder

    def forget(self, package: str) -> None:
        with self._lock:
            self._roots.pop(package, None)

    def _root(self, fullname: str) -> Path | None:
        with self._lock:
            for package, folder in self._roots.items():
                if fullname.startswith(package + "."):
                    return folder
        return None

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(PACKAGE_ROOT + "."):
            return None
        root = self._root(fullname)
        if root is None:
            return None  # a package root itself is registered in sys.modules directly
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None:
            return None
        places = []
        if spec.origin and spec.has_location:
            places.append(spec.origin)
        places.extend(spec.submodule_search_locations or ())
        for place in places:
            resolved = Path(place).resolve()
            if resolved != root and root not in resolved.parents:
                raise ImportRefused(
                    f"module '{fullname.split('.', 2)[-1]}' resolves to {resolved}, outside "
                    f"the product folder {root} (through a symbolic link?); a product may "
                    "import only its own files, the standard library and installed packages"
                )
        if spec.submodule_search_locations is not None:
            spec.submodule_search_locations = [
                str(Path(p).resolve()) for p in spec.submodule_search_locations
            ]
        if isinstance(spec.loader, importlib.machinery.SourceFileLoader) and spec.origin:
            origin = str(Path(spec.origin).resolve())
            spec.loader = _FreshSourceLoader(fullname, origin)
            spec.origin = origin
        return spec


_FINDER = _ProductFinder()


def _install() -> None:
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    if PACKAGE_ROOT not in sys.modules:
        root = types.ModuleType(PACKAGE_ROOT)
        root.__path__ = []
        sys.modules[PACKAGE_ROOT] = root


def new_package(package: str, folder: Path) -> None:
    """Register an empty package ``package`` for a product folder (resolved)."""
    _install()
    drop_package(package)
    module = types.ModuleType(package)
    module.__path__ = [str(folder)]
    module.__package__ = package
    sys.modules[package] = module
    _FINDER.register(package, folder)


def drop_package(package: str) -> None:
    """Forget a product package and its modules (objects already made keep their code)."""
    for loaded in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[loaded]
    _FINDER.forget(package)


def import_module(name: str) -> types.ModuleType:
    """Import a module of a registered product package."""
    return importlib.import_module(name)


# ---------------------------------------------------------------------- time bound


def bounded(call: Callable[[], T], timeout_s: float | None) -> T:
    """Run ``call`` (an import), raising :class:`LoadTimeout` in it after ``timeout_s``.

    ``None`` or ``0`` means no bound.
    """
    if not timeout_s or timeout_s <= 0:
        return call()
    with _watchdog(timeout_s, _signal_for_main()):
        return call()


_CANDIDATE_SIGNALS = ("SIGALRM", "SIGUSR2", "SIGUSR1")


def _signal_for_main() -> signal.Signals | None:
    """A signal with no handler to interrupt the main thread with, or None (another
    thread, or every candidate taken: e.g. SIGALRM by a test runner's timeout)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    for name in _CANDIDATE_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) in (signal.SIG_DFL, None):
            return signal.Signals(number)
    return None


def _set_async_exc(thread: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in ``thread`` at its next bytecode (None: clear a pending one).
    ctypes is imported here, not with the module: most loads never need it."""
    import ctypes

    set_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    set_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
    set_exc(thread, ctypes.py_object() if exc is None else exc)  # NULL clears it


@contextmanager
def _watchdog(timeout_s: float, interrupt_with: signal.Signals | None) -> Iterator[None]:
    """After ``timeout_s``, raise LoadTimeout in this thread, again every 0.1 s until the
    block ends. With a signal (main thread only), a blocking call (sleep, a lock, I/O) is
    interrupted too: its handler raises; without, the exception is set asynchronously and
    raised at the thread's next bytecode."""
    target = threading.get_ident()
    done = threading.Event()
    lock = threading.Lock()
    previous: Any = None

    def raise_timeout(_signum: int, _frame: Any) -> None:
        if not done.is_set():
            raise LoadTimeout

    def watch() -> None:
        wait = timeout_s
        while not done.wait(wait):
            with lock:
                if done.is_set():
                    return
                if interrupt_with is not None:
                    signal.pthread_kill(target, interrupt_with)
                else:
                    _set_async_exc(target, LoadTimeout)
            wait = _RETRY_S

    if interrupt_with is not None:
        previous = signal.signal(interrupt_with, raise_timeout)
    watcher = threading.Thread(target=watch, name="master-load-watchdog", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        with lock:
            done.set()
            if interrupt_with is None:
                # an exception sent but not yet raised must not hit the caller's next line
                _set_async_exc(target, None)
        watcher.join()
        if interrupt_with is not None:
            signal.signal(interrupt_with, previous)
