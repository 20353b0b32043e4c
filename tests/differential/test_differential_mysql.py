"""Sharded dbmesh against one plain MariaDB database, through PyMySQL (text protocol): queries, placement, writes.

See tests/differential/conftest.py for how both sides are built and queries.py for the corpus.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.differential import dataset
from tests.differential.conftest import SELFCHECK, DiffEnv, Pair
from tests.differential.harness import Result, assert_same, catch, misplaced_rows, mysql_connect, run_mysql
from tests.differential.queries import CASES, EMPTY, REFUSED, Case, Refused
from tests.differential.scenarios import SCENARIOS, check_refused, ids, reset_ledger, run_scenario
from tests.support.sharded import fetch_nodes, index_count, query, table_exists

MYSQL_CASES = [c for c in CASES if "mysql" in c.dialects]


def test_corpus_is_not_vacuous(mysql_pair: Pair) -> None:
    """Every query returns rows on the plain database unless it is meant to be empty (checks the corpus itself)."""
    counts = {case.id: len(run_mysql(mysql_pair.plain, case.sql_for("mysql"), case.params).rows) for case in MYSQL_CASES}
    assert {i for i, n in counts.items() if n == 0} == {i for i in EMPTY if i in counts}


@pytest.mark.parametrize("table", dataset.TABLES, ids=lambda t: t.name)
def test_rows_loaded_through_dbmesh_are_on_their_data_nodes(mysql_env: DiffEnv, table: dataset.Table) -> None:
    # Expected rows as the plain database stores them (CHAR padding, DECIMAL scale), which the dataset equals.
    expected = query(mysql_env.server, dataset.PLAIN_DB, f"SELECT {', '.join(table.columns)} FROM {table.name}")
    assert len(expected) == len(dataset.rows_of(table))
    problems = misplaced_rows(mysql_env.server, mysql_env.physical, table, expected)
    assert not problems, f"{table.name}: " + "\n".join(problems)


@pytest.mark.parametrize("case", MYSQL_CASES, ids=ids(MYSQL_CASES))
def test_query(mysql_pair: Pair, case: Case) -> None:
    sql = case.sql_for("mysql")
    plain = catch(lambda: run_mysql(mysql_pair.plain, sql, case.params))
    mesh = catch(lambda: run_mysql(mysql_pair.mesh, sql, case.params))
    assert_same(sql, plain, mesh, ordered=case.ordered, ci=case.ci)


@pytest.mark.parametrize("case", REFUSED, ids=ids(REFUSED))
def test_refused(mysql_pair: Pair, case: Refused) -> None:
    plain = catch(lambda: run_mysql(mysql_pair.plain, case.sql))
    mesh = catch(lambda: run_mysql(mysql_pair.mesh, case.sql))
    check_refused(case.sql, case.construct, plain, mesh, errno=1235, sqlstate="42000")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_write_scenario(mysql_env: DiffEnv, name: str) -> None:
    reset_ledger(mysql_env.server, dataset.PLAIN_DB, dataset.MIRROR_DB if SELFCHECK else None)
    plain, mesh = mysql_connect(mysql_env.plain), mysql_connect(mysql_env.mesh)
    try:
        run_scenario(name, "mysql", lambda sql: run_mysql(plain, sql), lambda sql: run_mysql(mesh, sql),
                     mysql_env.server, check_placement=not SELFCHECK)
    finally:
        plain.close()
        mesh.close()


def test_insert_without_key_generates_snowflake_keys(mysql_env: DiffEnv) -> None:
    """The key column left out: dbmesh generates distinct keys, routes each row by its key, and reports the first
    row's key as the last insert id."""
    reset_ledger(mysql_env.server, dataset.PLAIN_DB, dataset.MIRROR_DB if SELFCHECK else None)
    conn = mysql_connect(mysql_env.mesh)
    try:
        with conn.cursor() as cur:
            affected = cur.execute("INSERT INTO t_ledger (user_id, kind, delta, memo) VALUES "
                                   "(5, 'gen', 1.00, NULL), (6, 'gen', 2.00, 'x'), (7, 'gen', 3.00, NULL), "
                                   "(8, 'gen', 4.00, 'y')")
            last_id = cur.lastrowid
        generated = run_mysql(conn, "SELECT ledger_id, user_id, kind, delta, memo FROM t_ledger WHERE kind = 'gen' "
                                    "ORDER BY delta").rows
    finally:
        conn.close()
    assert affected == 4
    assert [r[1] for r in generated] == [5, 6, 7, 8]
    keys = [r[0] for r in generated]
    assert len(set(keys)) == 4 and all(k > 0 for k in keys), keys
    assert last_id == keys[0], (last_id, keys)
    problems = misplaced_rows(mysql_env.server, mysql_env.physical, dataset.T_LEDGER,
                              [*dataset.ledger(), *generated])
    assert not problems, "\n".join(problems)


def test_ddl_fans_out_to_every_actual_table(mysql_env: DiffEnv) -> None:
    """CREATE TABLE / CREATE INDEX / TRUNCATE / DROP of a sharded table through dbmesh reach all its actual tables."""
    server, nodes = mysql_env.server, dataset.modulo_nodes("t_extra")
    conn = mysql_connect(mysql_env.mesh)

    def run(sql: str) -> Any:
        result = catch(lambda: run_mysql(conn, sql))
        assert isinstance(result, Result), f"{sql}: {result}"
        return result

    try:
        run(dataset.T_EXTRA_DDL)
        assert [table_exists(server, "mysql", dataset.PHYSICAL[ds], t) for ds, t in nodes] == [True] * 4
        run("CREATE INDEX idx_extra_user ON t_extra (user_id)")
        assert [index_count(server, "mysql", dataset.PHYSICAL[ds], t, "user_id") for ds, t in nodes] == [1] * 4
        assert run("INSERT INTO t_extra (extra_id, user_id, label) VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c'), "
                   "(4, 2, 'd'), (5, 3, 'e')").affected == 5
        counts = [len(rows) for rows in _node_rows(mysql_env, nodes, "extra_id").values()]
        assert counts == [1, 1, 1, 2], counts  # by user % 2, then id % 2: ds_0 {4} {3}, ds_1 {2} {1, 5}
        run("TRUNCATE TABLE t_extra")
        assert [len(r) for r in _node_rows(mysql_env, nodes, "extra_id").values()] == [0] * 4
        assert run("SELECT COUNT(*) FROM t_extra").rows == [(0,)]
        run("DROP TABLE t_extra")
        assert [table_exists(server, "mysql", dataset.PHYSICAL[ds], t) for ds, t in nodes] == [False] * 4
    finally:
        conn.close()


def _node_rows(env: DiffEnv, nodes: list[tuple[str, str]], columns: str) -> dict[tuple[str, str], list[Any]]:
    return fetch_nodes(env.server, env.physical, nodes, columns)


METADATA_QUERIES = [
    # one data node: the data source's response is forwarded with its column definitions renamed
    "SELECT order_id, amount FROM t_order WHERE user_id = 3 AND order_id = 7",
    "SELECT o.order_id, o.status FROM t_order o WHERE o.user_id = 3 AND o.order_id = 7",
    # several data nodes: merged results
    "SELECT order_id, amount FROM t_order WHERE user_id = 3 ORDER BY order_id LIMIT 5",
    "SELECT o.order_id, i.qty FROM t_order o JOIN t_order_item i ON i.order_id = o.order_id AND i.user_id = o.user_id "
    "ORDER BY o.order_id, i.item_id LIMIT 5",
]


@pytest.mark.parametrize("sql", METADATA_QUERIES)
def test_column_metadata_names_logic_tables(mysql_pair: Pair, sql: str) -> None:
    """Column definitions name the logic tables (table alias and org_table) and the logical database, as one
    server holding the logic tables would; never an actual table such as t_order_1."""
    described = []
    for conn, database in ((mysql_pair.plain, dataset.PLAIN_DB), (mysql_pair.mesh, dataset.LOGICAL_DB)):
        cur = conn.cursor()
        cur.execute(sql)
        cur.fetchall()
        fields = cur._result.fields
        assert all(f.db in (database.encode(), database, b"", "") for f in fields), [f.db for f in fields]
        described.append([(f.name, f.table_name, f.org_table, f.org_name) for f in fields])
        cur.close()
    assert described[0] == described[1]


def test_show_tables_lists_logic_tables(mysql_pair: Pair) -> None:
    """SHOW [FULL] TABLES names each logic table once (not its actual tables), like the plain database does."""
    for sql in ("SHOW TABLES", "SHOW FULL TABLES"):
        plain = run_mysql(mysql_pair.plain, sql)
        mesh = run_mysql(mysql_pair.mesh, sql)
        assert [c[0] for c in mesh.columns] == [c[0].replace(dataset.PLAIN_DB, dataset.LOGICAL_DB)
                                               for c in plain.columns]
        assert mesh.rows == plain.rows


def _connector(ep: Any) -> Any:
    import mysql.connector

    return mysql.connector.connect(host=ep.host, port=ep.port, user=ep.user, password=ep.password,
                                   database=ep.database, autocommit=True, use_pure=True, charset="utf8mb4",
                                   collation="utf8mb4_general_ci")


def _run_prepared(conn: Any, sql: str, params: tuple[Any, ...]) -> Result:
    cur = conn.cursor(prepared=True)
    try:
        cur.execute(sql, params or ())
        if cur.description is None:
            return Result(affected=cur.rowcount)
        columns = [(d[0], d[1], None, None, None) for d in cur.description]
        return Result(columns, [tuple(r) for r in cur.fetchall()], cur.rowcount)
    finally:
        cur.close()


@pytest.fixture(scope="module")
def connector_pair(mysql_env: DiffEnv) -> Any:
    plain, mesh = _connector(mysql_env.plain), _connector(mysql_env.mesh)
    yield plain, mesh
    plain.close()
    mesh.close()


# Every third query through server-side prepared statements (COM_STMT_PREPARE/EXECUTE, binary result rows):
# single-unit results are the data source's own binary rows, merged results are re-encoded from text rows.
PREPARED_CASES = [c for c in MYSQL_CASES if c.params or MYSQL_CASES.index(c) % 3 == 0]


@pytest.mark.parametrize("case", PREPARED_CASES, ids=ids(PREPARED_CASES))
def test_query_prepared(connector_pair: Any, case: Case) -> None:
    plain_conn, mesh_conn = connector_pair
    sql = case.sql_for("mysql").replace("%s", "?") if case.params else case.sql_for("mysql")
    if not case.params and "%" in sql:
        sql = sql.replace("%%", "%")
    plain = catch(lambda: _run_prepared(plain_conn, sql, case.params))
    mesh = catch(lambda: _run_prepared(mesh_conn, sql, case.params))
    assert_same(sql, plain, mesh, ordered=case.ordered, ci=case.ci)
