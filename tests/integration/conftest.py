"""Fixtures for the integration tests (the shared ones are in tests/conftest.py)."""

from tests.integration.conftest_zookeeper import *  # noqa: F403
