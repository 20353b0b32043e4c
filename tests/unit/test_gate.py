"""The statement gate's bookkeeping: who checks which breakers, and what a planned statement feeds them."""

from __future__ import annotations

import pytest

from dbmesh import errors
from dbmesh.config import load_config_files
from dbmesh.kernel.parse import ParseCache
from dbmesh.kernel.plan import Plan, RouteUnit
from dbmesh.session import gate
from dbmesh.traffic.governor import TrafficGovernor

FILES = {
    "global.yaml": """
rules:
  - !TRAFFIC
    circuitBreakers:
      - {resource: "table:t_item", grade: ERROR_COUNT, count: 1, timeWindow: 10, minRequestAmount: 1,
         statIntervalMs: 10000}
""",
    "database-db.yaml": "databaseName: db\ndataSources:\n  ds_0: {url: 'mysql://u@h/d0'}\n  ds_1: {url: 'mysql://u@h/d1'}\n",
}


class _Runtime:
    """What the gate reads of a runtime: states, the traffic governor, the parse cache."""

    node_state = "OK"
    cluster_state = "OK"
    node_id = "n"

    def __init__(self) -> None:
        self.traffic = TrafficGovernor.build(load_config_files(FILES, "/"), None)
        self._cache = ParseCache()

    def parse_cache(self, dialect: str) -> ParseCache:
        return self._cache


def _plan() -> Plan:
    return Plan("query", (RouteUnit("ds_0", "SELECT 1"), RouteUnit("ds_1", "SELECT 1")), tables=("t_item",))


def test_sharded_callers_leave_breakers_to_the_plan_so_none_is_counted_twice() -> None:
    rt = _Runtime()
    sql = "SELECT v FROM t_item WHERE id = 1"
    # Without data sources (a sharded session) the statement-level gate takes no breaker probe ...
    assert gate.admit(rt, user="u", database="db", stmt_type="select", sql=sql, dialect="mysql") is None  # type: ignore[arg-type]
    # ... with them (one data source) it does, for the logical table the statement names.
    ticket = gate.admit(rt, user="u", database="db", stmt_type="select", sql=sql, dialect="mysql",  # type: ignore[arg-type]
                        data_sources=("ds_0",))
    assert ticket is not None and ticket.probe is not None
    ticket.abandon(rt)  # type: ignore[arg-type]


def test_breakers_around_a_plan_count_backend_failures_only() -> None:
    rt = _Runtime()
    with pytest.raises(errors.DbMeshError):  # an SQL error says nothing about the data source
        with gate.breakers(rt, "db", _plan()):  # type: ignore[arg-type]
            raise errors.DbMeshError(errors.SHARDING_NO_ROUTE, table="t_item", value=1)
    with pytest.raises(errors.BackendError):
        with gate.breakers(rt, "db", _plan()):  # type: ignore[arg-type]
            raise errors.BackendError(errors.BACKEND_LOST, data_source="ds_1", detail="gone")
    with gate.breakers(rt, "db", _plan()):  # type: ignore[arg-type]
        pass  # one failure is not more than count 1 (the SQL error did not count): still closed
    with pytest.raises(errors.BackendError):
        with gate.breakers(rt, "db", _plan()):  # type: ignore[arg-type]
            raise errors.BackendError(errors.BACKEND_LOST, data_source="ds_1", detail="gone")
    with pytest.raises(errors.DbMeshError) as info:  # two failures > count 1: open
        with gate.breakers(rt, "db", _plan()):  # type: ignore[arg-type]
            pass
    assert info.value.entry is errors.CIRCUIT_OPEN and "t_item" in info.value.message
