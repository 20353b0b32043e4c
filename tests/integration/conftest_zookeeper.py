"""ZooKeeper fixtures: a one-node and a three-node ensemble shared by the session, a namespace per test.

- ``zookeeper`` (session): a standalone ``ZooKeeperEnsemble``; ``zookeeper3`` (session): a quorum of three.
  Tests may stop and start nodes but must leave every node running; the fixtures restart whatever a
  failed test left stopped, so one failure does not cascade.
- ``zk_namespace``: a fresh registry namespace (root znode name) for the test, so tests sharing an
  ensemble never see each other's nodes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.zookeeper import ZooKeeperEnsemble

__all__ = ["_zookeeper3_session", "_zookeeper_session", "zk_namespace", "zookeeper", "zookeeper3"]


def _shared(size: int) -> Iterator[ZooKeeperEnsemble]:
    ensemble = ZooKeeperEnsemble(size=size)
    try:
        ensemble.start_all()
        yield ensemble
    finally:
        ensemble.destroy()


@pytest.fixture(scope="session")
def _zookeeper_session() -> Iterator[ZooKeeperEnsemble]:
    yield from _shared(1)


@pytest.fixture(scope="session")
def _zookeeper3_session() -> Iterator[ZooKeeperEnsemble]:
    yield from _shared(3)


@pytest.fixture
def zookeeper(_zookeeper_session: ZooKeeperEnsemble) -> Iterator[ZooKeeperEnsemble]:
    yield _zookeeper_session
    _zookeeper_session.start_all()  # a no-op unless the test left nodes stopped


@pytest.fixture
def zookeeper3(_zookeeper3_session: ZooKeeperEnsemble) -> Iterator[ZooKeeperEnsemble]:
    yield _zookeeper3_session
    _zookeeper3_session.start_all()


@pytest.fixture
def zk_namespace(request: pytest.FixtureRequest) -> str:
    name = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    return f"test_{name}_{uuid.uuid4().hex[:8]}"
