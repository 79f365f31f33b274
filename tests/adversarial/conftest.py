"""Widgets a test opens are closed after it: values typed into them in one test must not
show up in another test's scan of every live widget."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _close_new_widgets() -> Iterator[None]:
    from ipywidgets.widgets.widget import _instances as live_widgets

    before = set(live_widgets)
    yield
    for key in set(live_widgets) - before:
        widget = live_widgets.get(key)
        if widget is not None:
            widget.close()
