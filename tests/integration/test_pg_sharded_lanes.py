"""Scatter statements on a sharded PostgreSQL logical database (two tables on each of two data sources), against the
same statements on one plain database: each data source gets all its units at once on one connection (a lane),
outside transactions as statements prepared once per connection, and the shard answers are merged.

Cases: every protocol mode, row limits and offsets, results larger than what a unit buffers, statements gone stale
when their tables change, more statements than a connection keeps, an error on one shard, transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.support import DbMeshProcess, PostgreSQL
from tests.support.sharded import (
    Tagged,
    inline_algorithm,
    run_statements,
    sharded_database,
    standard,
    start_sharded_dbmesh,
    write_sharded_config,
)

DB = "psl_sharded"
PHYSICAL = {"ds_0": "psl_ds_0", "ds_1": "psl_ds_1"}
PLAIN = "psl_plain"
DDL = "CREATE TABLE {table} (id INT PRIMARY KEY, k INT NOT NULL, c TEXT)"
N = 1200
ROWS = [(i, (i * 7919) % 1201, f"c{i % 37}") for i in range(1, N + 1)]  # k: a permutation of 1..1200


def _rules() -> list[Tagged]:
    return [Tagged("SHARDING", {
        "tables": {"t_sc": {"actualDataNodes": "ds_${0..1}.t_sc_${0..1}",
                            "databaseStrategy": standard("id", "by_id"), "tableStrategy": standard("id", "by_half")}},
        "shardingAlgorithms": {"by_id": inline_algorithm("ds_${id % 2}"),
                               "by_half": inline_algorithm("t_sc_${id.intdiv(2) % 2}")},
    })]


def _values(rows: list[tuple[int, int, str]]) -> str:
    return ", ".join(f"({i}, {k}, '{c}')" for i, k, c in rows)


def _load(server: PostgreSQL) -> None:
    run_statements(server, PLAIN, ["DROP TABLE IF EXISTS t_sc", DDL.format(table="t_sc"),
                                   f"INSERT INTO t_sc VALUES {_values(ROWS)}"])
    for ds, database in PHYSICAL.items():
        statements = []
        for part in (0, 1):
            table = f"t_sc_{part}"
            mine = [r for r in ROWS if r[0] % 2 == int(ds[-1]) and r[0] // 2 % 2 == part]
            statements += [f"DROP TABLE IF EXISTS {table}", DDL.format(table=table),
                           f"INSERT INTO {table} VALUES {_values(mine)}"]
        run_statements(server, database, statements)


@pytest.fixture(scope="module")
def mesh(postgres: PostgreSQL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbMeshProcess]:
    for database in (PLAIN, *PHYSICAL.values()):
        postgres.ensure_database(database)
    _load(postgres)
    config = write_sharded_config(tmp_path_factory.mktemp("psl"), postgres,
                                  {DB: sharded_database(DB, "postgresql", postgres, PHYSICAL, _rules())})
    proc = start_sharded_dbmesh(config, postgresql=True)
    yield proc
    proc.stop()


@pytest.fixture
def fresh(mesh: DbMeshProcess, postgres: PostgreSQL) -> DbMeshProcess:
    _load(postgres)
    return mesh


def _connect(host: str, port: int, user: str, password: str, dbname: str) -> Any:
    return psycopg.connect(host=host, port=port, user=user, password=password, dbname=dbname, autocommit=True,
                           sslmode="disable", connect_timeout=10)


@pytest.fixture
def pair(fresh: DbMeshProcess, postgres: PostgreSQL) -> Iterator[tuple[Any, Any]]:
    plain = _connect(postgres.host, postgres.port, postgres.user, postgres.password, PLAIN)
    sharded = _connect(fresh.host, fresh.pg_port, "root", "rootpw", DB)
    try:
        yield plain, sharded
    finally:
        plain.close()
        sharded.close()


def _outcome(run: Callable[[], Any]) -> Any:
    try:
        return ("ok", run())
    except psycopg.Error as exc:
        return ("error", exc.sqlstate)


SCATTER = [
    ("SELECT id, k, c FROM t_sc WHERE k >= %s ORDER BY k LIMIT 10", (500,)),
    ("SELECT id, k, c FROM t_sc WHERE k >= %s ORDER BY k DESC LIMIT 7 OFFSET 3", (100,)),
    ("SELECT c, k FROM t_sc WHERE k < %s ORDER BY c, k", (300,)),  # ORDER BY a text column, then k
    ("SELECT id, k FROM t_sc WHERE k > %s ORDER BY id", (0,)),  # every row: past what a unit buffers
    ("SELECT count(*), sum(k) FROM t_sc WHERE k >= %s", (10,)),
    ("SELECT c, count(*) FROM t_sc WHERE k >= %s GROUP BY c ORDER BY c", (10,)),
    ("SELECT id FROM t_sc WHERE k >= %s AND k < %s", (1190, 1195)),  # no ORDER BY: compared as sets
    ("SELECT id, k FROM t_sc WHERE k >= %s ORDER BY k LIMIT 0", (1,)),
]


@pytest.mark.parametrize("mode", ["simple", "extended", "binary", "prepared"])
def test_scatter_statements_answer_as_one_database(pair: tuple[Any, Any], mode: str) -> None:
    plain, sharded = pair
    for _ in range(3):  # the first run prepares per connection; later runs reuse
        for sql, params in SCATTER:
            answers = []
            for conn in (plain, sharded):
                if mode == "simple":
                    text = sql % params
                    answers.append(_outcome(lambda c=conn, t=text: c.execute(t).fetchall()))
                else:
                    cur = conn.cursor(binary=mode == "binary")
                    prepare = True if mode == "prepared" else None
                    answers.append(_outcome(lambda cur=cur, s=sql, p=params, prepare=prepare: cur.execute(
                        s, p, prepare=prepare).fetchall()))
            if "ORDER BY" not in sql:
                answers = [(kind, sorted(rows)) if kind == "ok" else (kind, rows) for kind, rows in answers]
            assert answers[1] == answers[0], sql


def test_scatter_statement_follows_a_change_of_its_tables_columns(pair: tuple[Any, Any],
                                                                   postgres: PostgreSQL) -> None:
    """The statements each connection prepared earlier are refused by the data source once their result type
    changed; dbmesh prepares them again and answers with the new columns, as the plain database does. (Text
    statements; the extended protocol's Describe is the next test's.)"""
    plain, sharded = pair
    sql = "SELECT * FROM t_sc WHERE k >= {} ORDER BY k LIMIT 5"
    for conn in (plain, sharded):
        for key in (1, 2, 1):
            conn.execute(sql.format(key)).fetchall()
    run_statements(postgres, PLAIN, ["ALTER TABLE t_sc ADD COLUMN extra INT DEFAULT 7"])
    for database in PHYSICAL.values():
        run_statements(postgres, database, [f"ALTER TABLE t_sc_{p} ADD COLUMN extra INT DEFAULT 7" for p in (0, 1)])
    for key in (1, 2, 1, 2):
        expected = plain.execute(sql.format(key)).fetchall()
        assert sharded.execute(sql.format(key)).fetchall() == expected
        assert len(expected[0]) == 4


def test_more_scatter_statements_than_a_connection_keeps(pair: tuple[Any, Any]) -> None:
    plain, sharded = pair
    texts = [f"SELECT id, k + {n} AS w FROM t_sc WHERE k >= %s ORDER BY k LIMIT 3" for n in range(140)]
    for n, sql in enumerate(texts + texts[:30] + texts[120:]):
        key = n % 50 + 1
        assert sharded.execute(sql, (key,)).fetchall() == plain.execute(sql, (key,)).fetchall()


def test_error_on_one_shard_then_the_session_goes_on(pair: tuple[Any, Any]) -> None:
    plain, sharded = pair
    failing = "SELECT id, 100 / (id - %s) FROM t_sc WHERE k >= 0 ORDER BY id"  # division by zero on one table
    for _ in range(2):
        for key in (3, 6):
            assert _outcome(lambda k=key: sharded.execute(failing, (k,)).fetchall()) == \
                _outcome(lambda k=key: plain.execute(failing, (k,)).fetchall()) == ("error", "22012")
        sql = "SELECT id, k FROM t_sc WHERE k >= %s ORDER BY k LIMIT 4"
        assert sharded.execute(sql, (9,)).fetchall() == plain.execute(sql, (9,)).fetchall()


def test_scatter_statements_in_transactions(pair: tuple[Any, Any]) -> None:
    plain, sharded = pair
    sql = "SELECT id, k FROM t_sc WHERE k >= %s ORDER BY k LIMIT 6"
    for conn in (plain, sharded):
        conn.autocommit = False
    try:
        for ending in ("rollback", "commit"):
            answers = []
            for conn in (plain, sharded):
                conn.execute("UPDATE t_sc SET k = k + 5000 WHERE id IN (1, 2, 3, 4)")
                first = conn.execute(sql, (1000,)).fetchall()
                failed = _outcome(lambda c=conn: c.execute("SELECT 1 / 0 FROM t_sc").fetchall())
                refused = _outcome(lambda c=conn: c.execute(sql, (1,)).fetchall())
                getattr(conn, ending)()
                after = conn.execute(sql, (1000,)).fetchall()
                conn.commit()
                answers.append((first, failed, refused, after))
            assert answers[1] == answers[0]
            assert answers[0][1] == ("error", "22012") and answers[0][2] == ("error", "25P02")
    finally:
        for conn in (plain, sharded):
            conn.rollback()
            conn.autocommit = True


def test_extended_protocol_describe_follows_a_change_of_columns(fresh: DbMeshProcess,
                                                                postgres: PostgreSQL) -> None:
    """A multi-unit statement's Describe is answered from what dbmesh learnt for its text. A change made through
    dbmesh forgets that at once; a change made behind dbmesh's back fails the next execution once with 0A000
    (what PostgreSQL says of a prepared statement whose result changed), and then the new columns are learnt."""
    sql = "SELECT * FROM t_sc WHERE k >= %s ORDER BY k LIMIT 5"

    def connect_both() -> tuple[Any, Any]:
        return (_connect(postgres.host, postgres.port, postgres.user, postgres.password, PLAIN),
                _connect(fresh.host, fresh.pg_port, "root", "rootpw", DB))

    plain, sharded = connect_both()
    try:
        for key in (1, 2):
            assert sharded.execute(sql, (key,)).fetchall() == plain.execute(sql, (key,)).fetchall()
        # Through dbmesh: fanned out to every actual table; no stale description afterwards.
        plain.execute("ALTER TABLE t_sc ADD COLUMN extra INT DEFAULT 7")
        sharded.execute("ALTER TABLE t_sc ADD COLUMN extra INT DEFAULT 7")
    finally:
        plain.close()
        sharded.close()
    plain, sharded = connect_both()
    try:
        for key in (1, 2):
            expected = plain.execute(sql, (key,)).fetchall()
            assert len(expected[0]) == 4 and sharded.execute(sql, (key,)).fetchall() == expected
    finally:
        plain.close()
        sharded.close()
    # Behind dbmesh's back: one 0A000 at most, then the new columns.
    run_statements(postgres, PLAIN, ["ALTER TABLE t_sc ADD COLUMN more TEXT DEFAULT 'm'"])
    for database in PHYSICAL.values():
        run_statements(postgres, database, [f"ALTER TABLE t_sc_{p} ADD COLUMN more TEXT DEFAULT 'm'" for p in (0, 1)])
    plain, sharded = connect_both()
    try:
        expected = plain.execute(sql, (3,)).fetchall()
        assert len(expected[0]) == 5
        first = _outcome(lambda: sharded.execute(sql, (3,)).fetchall())
        assert first in (("ok", expected), ("error", "0A000")), first
        for _ in range(2):
            assert sharded.execute(sql, (3,)).fetchall() == expected
    finally:
        plain.close()
        sharded.close()
