"""Governance DistSQL: which statements are recognised, and what they do to a standalone runtime's state."""

from __future__ import annotations

import asyncio
from types import MappingProxyType
from typing import Any

import pytest

from dbmesh import errors
from dbmesh.admin.governance import AdminResult, Done, execute_governance, prop_name, variable_name
from dbmesh.session.classify import classify
from dbmesh.session.gate import is_governance_statement, is_write


class _Runtime:
    """The few attributes governance statements read on a standalone runtime."""

    def __init__(self) -> None:
        self.governor = None
        self.traffic = None
        self.cluster_state = "OK"
        self.node_state = "OK"
        self.node_id = "node-1"
        self.config_version = 3
        self.config_error: str | None = None
        self.props: dict[str, Any] = {"sql-show": False, "max-connections-size-per-query": 1}
        self.changes: list[dict[str, Any]] = []

    @property
    def config(self) -> Any:
        class _C:
            props = MappingProxyType(self.props)

        return _C()

    def apply_states(self, cluster_state: str, node_state: str) -> None:
        self.cluster_state, self.node_state = cluster_state, node_state

    async def set_props(self, changes: dict[str, Any], author: str) -> None:
        self.changes.append(dict(changes))


def _run(sql: str, rt: _Runtime) -> AdminResult | Done:
    return asyncio.run(execute_governance(sql, rt, user="root"))  # type: ignore[arg-type]


@pytest.mark.parametrize("sql", [
    "SHOW COMPUTE NODES", "show compute nodes;", "DISABLE COMPUTE NODE 'a'", "ENABLE COMPUTE NODE `a`",
    "SHOW DIST VARIABLES", "SHOW DIST VARIABLES LIKE 'sql%'", "SHOW DIST VARIABLE WHERE NAME = sql_show",
    "SET DIST VARIABLE sql_show = true", "SHOW CLUSTER STATE", "SET CLUSTER STATE READ_ONLY",
    'LOCK CLUSTER WITH LOCK_STRATEGY(TYPE="WRITE")', "UNLOCK CLUSTER", "SHOW CIRCUIT BREAKERS", "SHOW RATE LIMITS",
    "/* c */ SHOW COMPUTE NODES",
])
def test_recognised_and_classified_as_governance(sql: str) -> None:
    assert is_governance_statement(sql)
    assert classify(sql).local == "governance"


@pytest.mark.parametrize("sql", ["SHOW TABLES", "SET autocommit = 1", "LOCK TABLES t WRITE", "SELECT 1",
                                 "SHOW DATABASES"])
def test_other_statements_are_not_governance(sql: str) -> None:
    assert not is_governance_statement(sql)
    assert classify(sql).local != "governance"


def test_cluster_state_statements_change_a_standalone_runtime() -> None:
    rt = _Runtime()
    assert isinstance(_run('LOCK CLUSTER WITH LOCK_STRATEGY(TYPE="WRITE")', rt), Done)
    assert rt.cluster_state == "READ_ONLY"
    result = _run("SHOW CLUSTER STATE", rt)
    assert isinstance(result, AdminResult) and result.rows == (("READ_ONLY",),)
    _run("UNLOCK CLUSTER", rt)
    assert rt.cluster_state == "OK"
    _run("SET CLUSTER STATE unavailable", rt)
    assert rt.cluster_state == "UNAVAILABLE"
    with pytest.raises(errors.DbMeshError) as info:
        _run("SET CLUSTER STATE BROKEN", rt)
    assert "BROKEN" in info.value.message and rt.cluster_state == "UNAVAILABLE"
    with pytest.raises(errors.DbMeshError):
        _run('LOCK CLUSTER WITH LOCK_STRATEGY(TYPE="READ")', rt)


def test_node_state_names_the_node() -> None:
    rt = _Runtime()
    _run("DISABLE COMPUTE NODE 'node-1'", rt)
    assert rt.node_state == "DISABLED"
    with pytest.raises(errors.DbMeshError) as info:
        _run("ENABLE COMPUTE NODE 'other'", rt)
    assert "other" in info.value.message and rt.node_state == "DISABLED"
    _run("ENABLE COMPUTE NODE 'node-1'", rt)
    assert rt.node_state == "OK"


def test_dist_variables_show_and_set_props() -> None:
    rt = _Runtime()
    result = _run("SHOW DIST VARIABLES LIKE 'sql\\_%'", rt)
    assert isinstance(result, AdminResult) and result.rows == (("sql_show", "false"),)
    result = _run("SHOW DIST VARIABLE WHERE NAME = 'config_version'", rt)
    assert isinstance(result, AdminResult) and result.rows == (("config_version", "3"),)
    _run("SET DIST VARIABLE max_connections_size_per_query = 8", rt)
    _run("SET DIST VARIABLE sql_show = 'true'", rt)
    assert rt.changes == [{"max-connections-size-per-query": 8}, {"sql-show": "true"}]
    with pytest.raises(errors.DbMeshError):
        _run("SET DIST VARIABLE nope = 1", rt)
    assert prop_name("SQL_SHOW") == "sql-show" and variable_name("sql-show") == "sql_show"


@pytest.mark.parametrize(("stmt_type", "sql", "writes"), [
    ("insert", None, True), ("select", None, False), ("ddl", None, True), ("copy", "COPY t FROM STDIN", True),
    ("copy", "COPY t TO STDOUT", False), ("set", None, False), ("call", None, True),
])
def test_read_only_judges_writes(stmt_type: str, sql: str | None, writes: bool) -> None:
    assert is_write(stmt_type, sql) is writes
