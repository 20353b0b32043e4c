"""The sharded MySQL session's fast paths keep every guarantee of the general path: prepared point statements
executed without a task (autocommit, explicit transactions committed and rolled back, autocommit=0, a connection
another session took back), and scatter queries whose units on one data source are pipelined (errors in any unit,
results identical to the data sources' own)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mysql.connector
import pymysql
import pytest

from tests.support import DbMeshProcess, MariaDB
from tests.support.sharded import (
    Tagged,
    inline_algorithm,
    run_statements,
    sharded_database,
    standard,
    start_sharded_dbmesh,
    write_sharded_config,
)

DB = "fast_sharded"
PHYSICAL = {"ds_0": "fast_ds_0", "ds_1": "fast_ds_1"}
ROWS = 40


def _rules() -> list[Tagged]:
    return [Tagged("SHARDING", {
        "tables": {"t_item": {"actualDataNodes": "ds_${0..1}.t_item_${0..1}",
                              "databaseStrategy": standard("id", "by_id"),
                              "tableStrategy": standard("id", "by_table")}},
        "shardingAlgorithms": {"by_id": inline_algorithm("ds_${id % 2}"),
                               "by_table": inline_algorithm("t_item_${id.intdiv(2) % 2}")},
    })]


@pytest.fixture(scope="module")
def mesh(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbMeshProcess]:
    config = write_sharded_config(tmp_path_factory.mktemp("fast-my"), mariadb,
                                  {DB: sharded_database(DB, "mysql", mariadb, PHYSICAL, _rules())})
    for ds, db in PHYSICAL.items():
        n = int(ds[-1])
        statements: list[str] = []
        for t in (0, 1):
            statements += [f"DROP TABLE IF EXISTS t_item_{t}",
                           f"CREATE TABLE t_item_{t} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(20), KEY (k))"]
        for i in range(n, ROWS, 2):
            statements.append(f"INSERT INTO t_item_{(i // 2) % 2} VALUES ({i}, {(i * 7) % 13}, 'v{i}')")
        run_statements(mariadb, db, statements)
    proc = start_sharded_dbmesh(config, postgresql=False)
    yield proc
    proc.stop()


def _connector(mesh: DbMeshProcess, **kw: Any) -> Any:
    return mysql.connector.connect(host=mesh.host, port=mesh.port, user="root", password="rootpw", database=DB,
                                   use_pure=True, **kw)


def _pymysql(mesh: DbMeshProcess) -> Any:
    return pymysql.connect(host=mesh.host, port=mesh.port, user="root", password="rootpw", database=DB,
                           autocommit=True)


def _value(mesh: DbMeshProcess, i: int) -> str | None:
    conn = _pymysql(mesh)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT v FROM t_item WHERE id = %s", (i,))
            row = cur.fetchone()
            return None if row is None else str(row[0])
    finally:
        conn.close()


def test_prepared_point_selects_answer_every_row(mesh: DbMeshProcess) -> None:
    conn = _connector(mesh, autocommit=True)
    try:
        cur = conn.cursor(prepared=True)
        for _ in range(3):  # the first executions prepare on each connection, later ones take the fast path
            for i in range(ROWS):
                cur.execute("SELECT id, k, v FROM t_item WHERE id = ?", (i,))
                assert cur.fetchall() == [(i, (i * 7) % 13, f"v{i}")]
        cur.execute("SELECT id FROM t_item WHERE id = ?", (ROWS + 5,))
        assert cur.fetchall() == []
    finally:
        conn.close()


def test_prepared_updates_in_transactions_commit_and_roll_back(mesh: DbMeshProcess) -> None:
    conn = _connector(mesh, autocommit=True)
    try:
        cur = conn.cursor(prepared=True)
        for i in (2, 3):  # warm both data sources' prepared units
            cur.execute("UPDATE t_item SET v = ? WHERE id = ?", (f"v{i}", i))
        conn.start_transaction()
        cur.execute("UPDATE t_item SET v = ? WHERE id = ?", ("rolled", 2))
        cur.execute("UPDATE t_item SET v = ? WHERE id = ?", ("rolled", 3))
        cur.execute("SELECT v FROM t_item WHERE id = ?", (3,))
        assert cur.fetchall() == [("rolled",)]
        conn.rollback()
        assert _value(mesh, 2) == "v2" and _value(mesh, 3) == "v3"
        conn.start_transaction()
        cur.execute("UPDATE t_item SET v = ? WHERE id = ?", ("kept", 2))
        cur.execute("UPDATE t_item SET v = ? WHERE id = ?", ("kept", 3))
        assert _value(mesh, 2) == "v2"  # not visible to others before COMMIT
        conn.commit()
        assert _value(mesh, 2) == "kept" and _value(mesh, 3) == "kept"
    finally:
        conn.close()


def test_prepared_statements_with_autocommit_off_stay_in_the_transaction(mesh: DbMeshProcess) -> None:
    conn = _connector(mesh, autocommit=True)
    try:
        cur = conn.cursor(prepared=True)
        cur.execute("UPDATE t_item SET v = ? WHERE id = ?", ("v5", 5))  # prepared on ds_1's connection
        conn.autocommit = False
        cur.execute("UPDATE t_item SET v = ? WHERE id = ?", ("uncommitted", 5))
        assert _value(mesh, 5) == "v5"
        conn.rollback()
        assert _value(mesh, 5) == "v5"
        cur.execute("UPDATE t_item SET v = ? WHERE id = ?", ("committed", 5))
        conn.commit()
        assert _value(mesh, 5) == "committed"
    finally:
        conn.close()


SCATTERS = [
    "SELECT id, k, v FROM t_item WHERE k >= {b} ORDER BY k, id LIMIT 7",
    "SELECT id, k FROM t_item WHERE k < {b} ORDER BY id DESC",
    "SELECT k, COUNT(*), MIN(id) FROM t_item WHERE id > {b} GROUP BY k ORDER BY k",
    "SELECT COUNT(*), SUM(k) FROM t_item WHERE k <> {b}",
]


def _direct(mariadb: MariaDB, sql: str) -> list[tuple[Any, ...]]:
    """The same query over one table holding every row (a temporary union of the actual tables)."""
    union = " UNION ALL ".join(f"SELECT * FROM {db}.t_item_{t}" for db in PHYSICAL.values() for t in (0, 1))
    rows = mariadb.execute(sql.replace("FROM t_item", f"FROM ({union}) AS t_item"))
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("template", SCATTERS)
def test_pipelined_scatter_queries_match_one_table(mesh: DbMeshProcess, mariadb: MariaDB, template: str) -> None:
    conn = _pymysql(mesh)
    try:
        with conn.cursor() as cur:
            for b in (0, 3, 9, 20):
                sql = template.format(b=b)
                cur.execute(sql)
                assert [tuple(r) for r in cur.fetchall()] == _direct(mariadb, sql), sql
    finally:
        conn.close()


def test_an_error_in_one_pipelined_unit_is_the_statement_error_and_the_session_goes_on(
        mesh: DbMeshProcess, mariadb: MariaDB) -> None:
    run_statements(mariadb, PHYSICAL["ds_1"], ["ALTER TABLE t_item_1 RENAME COLUMN v TO w"])
    conn = _pymysql(mesh)
    try:
        with conn.cursor() as cur:
            with pytest.raises(pymysql.err.OperationalError) as info:
                cur.execute("SELECT id, v FROM t_item WHERE k >= 0 ORDER BY id")
            assert info.value.args[0] == 1054  # ER_BAD_FIELD_ERROR, as the data source said it
            cur.execute("SELECT COUNT(*) FROM t_item")
            assert cur.fetchall() == ((ROWS,),)
    finally:
        conn.close()
        run_statements(mariadb, PHYSICAL["ds_1"], ["ALTER TABLE t_item_1 RENAME COLUMN w TO v"])
