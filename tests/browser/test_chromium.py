"""The browser machinery refuses to run without Chromium instead of skipping."""

from __future__ import annotations

from pathlib import Path

import pytest

from .lab import ChromiumMissingError, require_chromium


def test_missing_chromium_fails_with_install_command(tmp_path: Path) -> None:
    """A missing Chromium is an error that says how to install it, never a skip."""
    with pytest.raises(ChromiumMissingError, match=r"apt-get install -y chromium"):
        require_chromium(tmp_path / "no-such-chromium")
