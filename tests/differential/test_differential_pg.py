"""Sharded dbmesh against one plain PostgreSQL database: queries through psycopg 3 (simple protocol text, extended
protocol binary, named prepared statements) and asyncpg, placement, writes, transactions and DDL.

Every query runs through the "text" and "binary" clients; "prepared" and asyncpg each take every third query
(different thirds), which keeps the run short while every client sees every kind of statement.
See tests/differential/conftest.py for how both sides are built and queries.py for the corpus.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.differential import dataset
from tests.differential.conftest import SELFCHECK, DiffEnv, Pair
from tests.differential.harness import Result, assert_same, catch, misplaced_rows, pg_connect, run_pg
from tests.differential.queries import CASES, EMPTY, REFUSED, Case, Refused
from tests.differential.scenarios import SCENARIOS, check_refused, ids, reset_ledger, run_scenario
from tests.support.sharded import fetch_nodes, index_count, query, table_exists

PG_CASES = [c for c in CASES if "postgresql" in c.dialects]


def _client_params() -> list[Any]:
    out = []
    for n, case in enumerate(PG_CASES):
        clients = ["text", "binary"] + (["prepared"] if n % 3 == 0 else []) + (["asyncpg"] if n % 3 == 1 else [])
        out += [pytest.param(client, case, id=f"{client}-{case.id}") for client in clients]
    return out


def test_corpus_is_not_vacuous(pg_pair: Pair) -> None:
    """Every query returns rows on the plain database unless it is meant to be empty (checks the corpus itself)."""
    counts = {case.id: len(run_pg(pg_pair.plain, case.sql_for("postgresql"), case.params).rows) for case in PG_CASES}
    assert {i for i, n in counts.items() if n == 0} == {i for i in EMPTY if i in counts}


@pytest.mark.parametrize("table", dataset.TABLES, ids=lambda t: t.name)
def test_rows_loaded_through_dbmesh_are_on_their_data_nodes(pg_env: DiffEnv, table: dataset.Table) -> None:
    # Expected rows as the plain database stores them (CHAR padding, DECIMAL scale), which the dataset equals.
    expected = query(pg_env.server, dataset.PLAIN_DB, f"SELECT {', '.join(table.columns)} FROM {table.name}")
    assert len(expected) == len(dataset.rows_of(table))
    problems = misplaced_rows(pg_env.server, pg_env.physical, table, expected)
    assert not problems, f"{table.name}: " + "\n".join(problems)


@pytest.mark.parametrize(("client", "case"), _client_params())
def test_query(request: pytest.FixtureRequest, client: str, case: Case) -> None:
    sql = case.sql_for("postgresql")
    if client == "asyncpg":
        pair: Pair = request.getfixturevalue("asyncpg_pair")
        plain = catch(lambda: pair.plain.run(sql, case.params))
        mesh = catch(lambda: pair.mesh.run(sql, case.params))
    else:
        pair = request.getfixturevalue("pg_pair")
        plain = catch(lambda: run_pg(pair.plain, sql, case.params, client))
        mesh = catch(lambda: run_pg(pair.mesh, sql, case.params, client))
    assert_same(sql, plain, mesh, ordered=case.ordered)


@pytest.mark.parametrize("case", REFUSED, ids=ids(REFUSED))
@pytest.mark.parametrize("client", ["text", "binary"])
def test_refused(pg_pair: Pair, client: str, case: Refused) -> None:
    plain = catch(lambda: run_pg(pg_pair.plain, case.sql, client=client))
    mesh = catch(lambda: run_pg(pg_pair.mesh, case.sql, client=client))
    check_refused(case.sql, case.construct, plain, mesh, errno=None, sqlstate="0A000")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_write_scenario(pg_env: DiffEnv, name: str) -> None:
    reset_ledger(pg_env.server, dataset.PLAIN_DB, dataset.MIRROR_DB if SELFCHECK else None)
    plain, mesh = pg_connect(pg_env.plain), pg_connect(pg_env.mesh)
    try:
        run_scenario(name, "postgresql", lambda sql: run_pg(plain, sql), lambda sql: run_pg(mesh, sql),
                     pg_env.server, check_placement=not SELFCHECK)
    finally:
        plain.close()
        mesh.close()


def test_write_scenario_extended_protocol(pg_env: DiffEnv) -> None:
    """A transaction with parameterised writes over the extended protocol (Parse/Bind/Execute per statement)."""
    reset_ledger(pg_env.server, dataset.PLAIN_DB, dataset.MIRROR_DB if SELFCHECK else None)
    steps: list[tuple[str, tuple[Any, ...]]] = [
        ("BEGIN", ()),
        ("INSERT INTO t_ledger (ledger_id, user_id, kind, delta, memo) VALUES (%s, %s, %s, %s, %s), "
         "(%s, %s, %s, %s, %s)", (960, 11, "p", 1, None, 961, 12, "p", 2, "m")),
        ("UPDATE t_ledger SET memo = %s WHERE user_id = %s", ("param", 11)),
        ("DELETE FROM t_ledger WHERE ledger_id = %s", (961,)),
        ("SELECT ledger_id, user_id, memo FROM t_ledger WHERE user_id IN (%s, %s) ORDER BY ledger_id", (11, 12)),
        ("COMMIT", ()),
        ("SELECT ledger_id, user_id, kind, delta, memo FROM t_ledger ORDER BY ledger_id", ()),
    ]
    plain, mesh = pg_connect(pg_env.plain), pg_connect(pg_env.mesh)
    try:
        for sql, params in steps:
            assert_same(sql, catch(lambda sql=sql, params=params: run_pg(plain, sql, params, "binary")),
                        catch(lambda sql=sql, params=params: run_pg(mesh, sql, params, "binary")), ordered=True)
        if not SELFCHECK:
            rows = run_pg(plain, "SELECT ledger_id, user_id, kind, delta, memo FROM t_ledger").rows
            problems = misplaced_rows(pg_env.server, pg_env.physical, dataset.T_LEDGER, rows)
            assert not problems, "\n".join(problems)
    finally:
        plain.close()
        mesh.close()


def test_insert_without_key_generates_snowflake_keys(pg_env: DiffEnv) -> None:
    """The key column left out: dbmesh generates distinct keys and routes each row by its key."""
    reset_ledger(pg_env.server, dataset.PLAIN_DB, dataset.MIRROR_DB if SELFCHECK else None)
    conn = pg_connect(pg_env.mesh)
    try:
        result = run_pg(conn, "INSERT INTO t_ledger (user_id, kind, delta, memo) VALUES (5, 'gen', 1.00, NULL), "
                              "(6, 'gen', 2.00, 'x'), (7, 'gen', 3.00, NULL), (8, 'gen', 4.00, 'y')")
        generated = run_pg(conn, "SELECT ledger_id, user_id, kind, delta, memo FROM t_ledger WHERE kind = 'gen' "
                                 "ORDER BY delta").rows
    finally:
        conn.close()
    assert (result.affected, result.status) == (4, "INSERT 0 4")
    assert [r[1] for r in generated] == [5, 6, 7, 8]
    keys = [r[0] for r in generated]
    assert len(set(keys)) == 4 and all(k > 0 for k in keys), keys
    problems = misplaced_rows(pg_env.server, pg_env.physical, dataset.T_LEDGER, [*dataset.ledger(), *generated])
    assert not problems, "\n".join(problems)


def test_ddl_fans_out_to_every_actual_table(pg_env: DiffEnv) -> None:
    """CREATE TABLE / CREATE INDEX / TRUNCATE / DROP of a sharded table through dbmesh reach all its actual tables
    (an index name is per schema in PostgreSQL, so each actual table's index needs its own name)."""
    server, nodes = pg_env.server, dataset.modulo_nodes("t_extra")
    conn = pg_connect(pg_env.mesh)

    def run(sql: str) -> Result:
        result = catch(lambda: run_pg(conn, sql))
        assert isinstance(result, Result), f"{sql}: {result}"
        return result

    def node_counts() -> list[int]:
        return [len(rows) for rows in fetch_nodes(server, pg_env.physical, nodes, "extra_id").values()]

    try:
        assert run(dataset.T_EXTRA_DDL).status == "CREATE TABLE"
        assert [table_exists(server, "postgresql", dataset.PHYSICAL[ds], t) for ds, t in nodes] == [True] * 4
        assert run("CREATE INDEX idx_extra_user ON t_extra (user_id)").status == "CREATE INDEX"
        assert [index_count(server, "postgresql", dataset.PHYSICAL[ds], t, "user_id") for ds, t in nodes] == [1] * 4
        assert run("INSERT INTO t_extra (extra_id, user_id, label) VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c'), "
                   "(4, 2, 'd'), (5, 3, 'e')").status == "INSERT 0 5"
        assert node_counts() == [1, 1, 1, 2]  # by user % 2, then id % 2: ds_0 {4} {3}, ds_1 {2} {1, 5}
        assert run("TRUNCATE TABLE t_extra").status == "TRUNCATE TABLE"
        assert node_counts() == [0] * 4
        assert run("SELECT COUNT(*) FROM t_extra").rows == [(0,)]
        assert run("DROP TABLE t_extra").status == "DROP TABLE"
        assert [table_exists(server, "postgresql", dataset.PHYSICAL[ds], t) for ds, t in nodes] == [False] * 4
    finally:
        conn.close()
