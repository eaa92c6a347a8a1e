"""pytest fixtures for plugin tests (see plugins/README.md)."""

import pytest

from fakehost import FakeHost


@pytest.fixture
def host():
    """A fresh FakeHost; the plugin's modules are forgotten afterwards."""
    with FakeHost() as h:
        yield h
