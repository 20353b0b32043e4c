"""Admin SQL and sharding hints through real clients on a sharded logical database (both protocols).

PREVIEW must show what the planner does, SHOW statements must describe the loaded rules, and session hints must
change where statements go, on the connection that set them only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pymysql
import pytest

from tests.support import DbMeshProcess, MariaDB, PostgreSQL
from tests.support.sharded import (
    Tagged,
    inline_algorithm,
    sharded_database,
    standard,
    start_sharded_dbmesh,
    write_sharded_config,
)

DB = "admin_sharded"


def _rules() -> list[Tagged]:
    return [Tagged("SHARDING", {
        "tables": {"t_order": {
            "actualDataNodes": "ds_${0..1}.t_order_${0..1}",
            "databaseStrategy": standard("user_id", "by_user"),
            "tableStrategy": standard("order_id", "by_order"),
        }},
        "shardingAlgorithms": {"by_user": inline_algorithm("ds_${user_id % 2}"),
                               "by_order": inline_algorithm("t_order_${order_id % 2}")},
    })]


@pytest.fixture(scope="module")
def mysql_mesh(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbMeshProcess]:
    physical = {"ds_0": "adm_ds_0", "ds_1": "adm_ds_1"}
    config = write_sharded_config(tmp_path_factory.mktemp("adm-my"), mariadb,
                                  {DB: sharded_database(DB, "mysql", mariadb, physical, _rules())})
    proc = start_sharded_dbmesh(config, postgresql=False)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def pg_mesh(postgres: PostgreSQL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbMeshProcess]:
    physical = {"ds_0": "adm_ds_0", "ds_1": "adm_ds_1"}
    config = write_sharded_config(tmp_path_factory.mktemp("adm-pg"), postgres,
                                  {DB: sharded_database(DB, "postgresql", postgres, physical, _rules())})
    proc = start_sharded_dbmesh(config, postgresql=True)
    yield proc
    proc.stop()


def _my(proc: DbMeshProcess) -> Any:
    return pymysql.connect(host=proc.host, port=proc.port, user="root", password="rootpw", database=DB,
                           autocommit=True)


def _pg(proc: DbMeshProcess) -> Any:
    return psycopg.connect(host=proc.host, port=proc.pg_port, user="root", password="rootpw", dbname=DB,
                           autocommit=True)


def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(sql)
    rows = [tuple(r) for r in cur.fetchall()]
    cur.close()
    return rows


@pytest.fixture(params=["mysql", "postgresql"])
def connect(request: pytest.FixtureRequest) -> Any:
    if request.param == "mysql":
        proc = request.getfixturevalue("mysql_mesh")
        return lambda: _my(proc)
    proc = request.getfixturevalue("pg_mesh")
    return lambda: _pg(proc)


def test_preview_shows_the_route_units(connect: Any) -> None:
    conn = connect()
    try:
        assert _rows(conn, "PREVIEW SELECT * FROM t_order WHERE user_id = 1 AND order_id = 2") == [
            ("ds_1", "SELECT * FROM t_order_0 WHERE user_id = 1 AND order_id = 2")]
        units = _rows(conn, "PREVIEW SELECT * FROM t_order")
        assert sorted(units) == [("ds_0", "SELECT * FROM t_order_0"), ("ds_0", "SELECT * FROM t_order_1"),
                                 ("ds_1", "SELECT * FROM t_order_0"), ("ds_1", "SELECT * FROM t_order_1")]
    finally:
        conn.close()


def test_show_statements_describe_the_loaded_rules(connect: Any) -> None:
    conn = connect()
    try:
        nodes = _rows(conn, "SHOW SHARDING TABLE NODES")
        assert nodes == [("t_order", "ds_0.t_order_0, ds_0.t_order_1, ds_1.t_order_0, ds_1.t_order_1")]
        algorithms = {r[0]: r[1] for r in _rows(conn, "SHOW SHARDING ALGORITHMS")}
        assert algorithms == {"by_user": "INLINE", "by_order": "INLINE"}
        units = _rows(conn, "SHOW STORAGE UNITS")
        assert sorted(r[0] for r in units) == ["ds_0", "ds_1"]
        assert not any("rootpw" in str(cell) for row in units for cell in row)
    finally:
        conn.close()


def test_session_hint_forces_a_data_source_on_its_own_connection_only(connect: Any) -> None:
    hinted, other = connect(), connect()
    try:
        hinted.cursor().execute("SET SHARDING HINT DATA_SOURCE = 'ds_0'")
        assert _rows(hinted, "PREVIEW SELECT * FROM t_order") == [("ds_0", "SELECT * FROM t_order")]
        assert len(_rows(other, "PREVIEW SELECT * FROM t_order")) == 4
        hinted.cursor().execute("CLEAR SHARDING HINT")
        assert len(_rows(hinted, "PREVIEW SELECT * FROM t_order")) == 4
    finally:
        hinted.close()
        other.close()


def test_comment_hint_sets_the_sharding_values(connect: Any) -> None:
    conn = connect()
    try:
        sql = "/* SHARDINGSPHERE_HINT: dataSourceName=ds_1 */ SELECT * FROM t_order"
        assert _rows(conn, f"PREVIEW {sql}") == [("ds_1", sql)]
    finally:
        conn.close()


def test_malformed_admin_statement_is_a_syntax_error(connect: Any) -> None:
    conn = connect()
    try:
        with pytest.raises((pymysql.err.ProgrammingError, pymysql.err.OperationalError, psycopg.Error)) as info:
            _rows(conn, "SHOW SHARDING TABLE")
        error = info.value
        # SQL_SYNTAX: MySQL error 1064 / PostgreSQL SQLSTATE 42601, with a detail naming what was expected.
        if isinstance(error, psycopg.Error):
            assert error.sqlstate == "42601", error
        else:
            assert error.args[0] == 1064, error
        assert "expected" in str(error), error
        assert _rows(conn, "PREVIEW SELECT 1")  # the connection keeps working
    finally:
        conn.close()

