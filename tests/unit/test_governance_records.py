"""Registry records without a server (dbmesh.governance.registry): change records, compute nodes, server lists."""

from __future__ import annotations

import doctest
import json

import pytest

from dbmesh import errors
from dbmesh.config import ZooKeeperProps
from dbmesh.governance import registry
from dbmesh.governance.registry import ChangeRecord, ComputeNode, PublishResult, kazoo_hosts, new_node_id


def test_module_doctests() -> None:
    result = doctest.testmod(registry)
    assert result.attempted > 0 and result.failed == 0


def test_change_record_round_trip_and_summary() -> None:
    record = ChangeRecord(seq=7, time="2025-01-01T00:00:00+00:00", author="ops", message="m",
                          changed={"metadata/b": None, "props": 2, "metadata/a": 4},
                          active={"rules": 0, "props": 2, "metadata/a": 4}, rollback_of=3, txn="x")
    assert ChangeRecord.from_json(7, record.to_json()) == record
    assert record.summary() == "props v2, metadata/a v4, metadata/b removed"
    assert ChangeRecord(1, "", "", "", {}, {}).summary() == "(nothing)"
    with pytest.raises(errors.DbMeshError, match="change record 3 is not valid JSON"):
        ChangeRecord.from_json(3, b"{not json")


def test_compute_node_round_trip_and_garbage() -> None:
    node = ComputeNode(id="n1", address="10.0.0.1:3307", labels=("blue", "eu"), config_version=4,
                       error="bad", worker_id=12, started_at="t")
    assert ComputeNode.from_json("n1", node.to_json(), "DISABLED") == ComputeNode(
        id="n1", address="10.0.0.1:3307", labels=("blue", "eu"), state="DISABLED", config_version=4, error="bad",
        worker_id=12, started_at="t")
    assert "state" not in json.loads(node.to_json())  # the operator state lives in status/{id}
    broken = ComputeNode.from_json("n2", b"[1, 2]")
    assert (broken.id, broken.error) == ("n2", "unreadable node data")
    assert ComputeNode.from_json("n3", b"").address == ""


def test_publish_result() -> None:
    assert PublishResult(3).no_change and not PublishResult(4, ("props",)).no_change
    assert not PublishResult(4, (), ("metadata/x",)).no_change


@pytest.mark.parametrize(("servers", "ttl", "op_ms", "expected_copies"), [
    ("a:1", 60, 500, 30),         # a silent handshake is given up after 2 s instead of 60 s
    ("a:1,b:2,c:3", 60, 500, 10),
    ("a:1", 60, 10_000, 6),       # never below the operation timeout
    ("a:1", 1, 500, 1),
    ("a:1", 100_000, 500, 64),    # bounded
])
def test_kazoo_hosts(servers: str, ttl: int, op_ms: int, expected_copies: int) -> None:
    listed = kazoo_hosts(ZooKeeperProps(server_lists=servers, time_to_live_s=ttl, operation_timeout_ms=op_ms))
    names = servers.split(",")
    assert listed.split(",") == names * expected_copies


def test_node_ids_are_unique_znode_names() -> None:
    ids = {new_node_id() for _ in range(100)}
    assert len(ids) == 100 and all("/" not in i and i.strip() == i for i in ids)


def test_bad_digest_is_refused() -> None:
    with pytest.raises(errors.DbMeshError, match="user:password"):
        registry.Registry(ZooKeeperProps(server_lists="127.0.0.1:1", digest="nocolon"))
