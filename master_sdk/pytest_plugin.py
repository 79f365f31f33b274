"""A pytest plugin: the ``block_network_models`` fixture.

Installed with master_sdk, pytest loads it by itself (the ``pytest11`` entry point); in a
checkout that is not installed, name it in the top-level ``conftest.py``::

    pytest_plugins = ["master_sdk.pytest_plugin"]

Then ask for the fixture in a test, or block network model calls in every test::

    @pytest.fixture(autouse=True)
    def _no_network_models(block_network_models):
        yield
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from master_sdk.testing import NetworkGuard, no_network_models

__all__ = ["block_network_models"]


@pytest.fixture
def block_network_models() -> Iterator[NetworkGuard]:
    """Fail the test if any model call tries to leave the machine.

    The call itself raises :class:`~master_sdk.testing.NetworkModelCallBlocked` before
    anything is sent; and because a flow turns that into a failed step the test might
    not look at, the test also fails at teardown, listing every refused call. Loopback
    servers (``127.0.0.1``, ``localhost``) stay reachable.
    """
    with no_network_models() as guard:
        yield guard
    if guard.blocked:
        pytest.fail(
            "network model calls were attempted in this test (blocked): "
            + "; ".join(guard.blocked),
            pytrace=False,
        )
