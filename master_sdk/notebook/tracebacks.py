"""A :class:`~master_sdk.errors.MasterError` in a notebook reads as its message.

Errors of this library already say what is wrong and what to do (file, flow, step, field);
forty lines of library frames above that only hide it. Inside an IPython kernel,
``import master_sdk`` registers a handler for ``MasterError`` (IPython's
``set_custom_exc``): the cell's error output is the exception's name and message, with a
note that the traceback is one command away; the full traceback sits in a collapsed
"Traceback" section under it (one click), and ``%tb`` prints it as usual. Any other
exception is left to IPython.

The handler is installed only when IPython is already imported and running a shell,
and never over a custom handler someone else registered. :func:`uninstall` restores
IPython's default.
"""

from __future__ import annotations

import sys
import traceback
from html import escape
from types import TracebackType
from typing import Any

_RED = "\x1b[0;31m"
_DIM = "\x1b[2m"
_RESET = "\x1b[0m"
_MARK = "_master_sdk_handler"


def install() -> bool:
    """Register the short rendering of MasterError in the running IPython shell.

    Returns whether it is installed (False outside IPython, or when the shell already has
    a custom exception handler that is not this one).
    """
    shell = _shell()
    if shell is None:
        return False
    from master_sdk.errors import MasterError

    current = getattr(shell, "custom_exceptions", ())
    if current and not getattr(shell, _MARK, False):
        return False  # someone else's handler: leave it
    shell.set_custom_exc((MasterError,), _render)
    setattr(shell, _MARK, True)
    return True


def uninstall() -> None:
    """Give MasterError back to IPython's usual traceback."""
    shell = _shell()
    if shell is not None and getattr(shell, _MARK, False):
        shell.set_custom_exc((), None)
        setattr(shell, _MARK, False)


def short_traceback(value: BaseException) -> list[str]:
    """The lines shown for an error: its type and message, and where the traceback is."""
    message = str(value)
    lines = [f"{_RED}{type(value).__name__}{_RESET}: {message}"]
    hint = getattr(value, "hint", None)
    if hint and hint not in message:
        lines.append(f"hint: {hint}")
    lines.append(f"{_DIM}(the full traceback: open 'Traceback' below, or run %tb){_RESET}")
    return lines


def _render(
    shell: Any,
    etype: type[BaseException],
    value: BaseException,
    tb: TracebackType | None,
    tb_offset: int | None = None,
) -> list[str]:
    # %tb and the debugger (%debug) read these, as after any other error
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
    if sys.version_info >= (3, 12):
        sys.last_exc = value
    _show_details(shell, etype, value, tb)
    stb = short_traceback(value)
    # IPython drops what a custom handler returns (run_code ignores it): show it here
    shell._showtraceback(etype, value, stb)
    return stb


def _show_details(
    shell: Any, etype: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    """The full traceback as a collapsed HTML section (kernels only; a terminal has %tb)."""
    if type(shell).__name__ != "ZMQInteractiveShell":
        return
    text = "".join(traceback.format_exception(etype, value, tb))
    html = (
        "<details><summary>Traceback</summary>"
        f"<pre style='font-size:85%'>{escape(text)}</pre></details>"
    )
    from IPython.display import display

    display({"text/html": html, "text/plain": ""}, raw=True)  # type: ignore[no-untyped-call]  # IPython is untyped


def _shell() -> Any:
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    return get_ipython()
