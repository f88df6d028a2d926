"""A real Docker engine and a test image built here (no image can be pulled)."""

import pytest

from tests.providers.agent.images import engine_with_test_image


@pytest.fixture(scope="session")
def engine():  # type: ignore[no-untyped-def]
    """The Docker engine, with ``IMAGE`` imported from a busybox root filesystem."""
    client, missing = engine_with_test_image()
    if client is None:
        pytest.skip(missing)
    return client
