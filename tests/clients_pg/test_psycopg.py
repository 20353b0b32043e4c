"""psycopg 3 through dbmesh — text results (simple protocol without parameters, extended with them),
binary results, server-side prepared statements and pipeline mode — each compared with the same steps
sent to PostgreSQL directly; plus logins (SCRAM, md5, password, TLS, wrong password), transactions and
NOTICE passthrough."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.clients_pg.common import (
    COMPARED_PARAMETERS,
    TX_TABLE_DDL,
    Endpoint,
    Observation,
    Step,
    assert_same_trace,
    by_label,
    check_crud_expectations,
    check_transactions,
    crud_steps,
)

TABLE = "t_psycopg"


def connect(ep: Endpoint, **kwargs: Any) -> psycopg.Connection[Any]:
    params: dict[str, Any] = {"host": ep.host, "port": ep.port, "user": ep.user, "password": ep.password,
                              "dbname": ep.database, "autocommit": True, "connect_timeout": 10,
                              "sslmode": "disable"}
    params.update(kwargs)
    return psycopg.connect(**params)


def error_dict(exc: psycopg.Error) -> dict[str, Any]:
    d = exc.diag
    return {"sqlstate": exc.sqlstate, "message": d.message_primary, "detail": d.message_detail,
            "hint": d.message_hint, "position": d.statement_position, "severity": d.severity_nonlocalized,
            "constraint": d.constraint_name, "table": d.table_name, "schema": d.schema_name,
            "type": type(exc).__name__}


def observe(cur: psycopg.Cursor[Any], label: str) -> Observation:
    columns = tuple((c.name, c.type_code) for c in cur.description) if cur.description else None
    rows = cur.fetchall() if cur.description else None
    return Observation(label, status=(cur.statusmessage, cur.rowcount), columns=columns, rows=rows)


def run(conn: psycopg.Connection[Any], steps: Sequence[Step], *, binary: bool = False,
        prepare: bool | None = None) -> list[Observation]:
    out: list[Observation] = []
    for step in steps:
        with conn.cursor(binary=binary) as cur:
            try:
                cur.execute(step.sql, step.params, prepare=prepare)
                out.append(observe(cur, step.label))
            except psycopg.Error as exc:
                out.append(Observation(step.label, error=error_dict(exc)))
    return out


def rowcount(o: Observation) -> int:
    return int(o.status[1])


MODES = {"text": {}, "binary": {"binary": True}, "prepared": {"prepare": True}}


@pytest.mark.parametrize("mode", list(MODES))
def test_crud_matches_direct(pg_direct: Endpoint, pg_proxy: Endpoint, pg_fresh_table: Any, mode: str) -> None:
    traces = []
    for ep in (pg_direct, pg_proxy):
        pg_fresh_table(TABLE)
        with connect(ep) as conn:
            trace = run(conn, crud_steps(TABLE), **MODES[mode])
            if mode == "prepared":  # the same statements again, now from the prepared cache
                pg_fresh_table(TABLE)
                trace += run(conn, crud_steps(TABLE), **MODES[mode])
                trace.append(Observation("prepared names", rows=sorted(
                    r[0] for r in conn.execute("SELECT statement FROM pg_prepared_statements "
                                               "WHERE statement LIKE 'INSERT INTO t_psycopg (i4, %%($1)::int4%%'"))))
        traces.append(trace)
    direct, proxied = traces
    check_crud_expectations(proxied[: len(crud_steps(TABLE))], rowcount=rowcount)
    o = by_label(proxied)
    assert o["insert 1 row"].status == ("INSERT 0 1", 1)
    assert o["update 2 rows"].status == ("UPDATE 2", 2)
    assert o["select all"].columns == (
        ("id", 23), ("i4", 23), ("i8", 20), ("num", 1700), ("f8", 701), ("txt", 25), ("bin", 17), ("d", 1082),
        ("ts", 1114), ("tstz", 1184), ("iv", 1186), ("u", 2950), ("j", 3802), ("arr", 1007), ("tarr", 1009),
        ("b", 16))
    if mode == "prepared":
        # prepare=True prepares on the server: the INSERTs are named statements of this session.
        assert len(o["prepared names"].rows) == 2, o["prepared names"]
    assert_same_trace(direct, proxied, f"psycopg ({mode})")


def test_pipeline_matches_direct(pg_direct: Endpoint, pg_proxy: Endpoint, pg_fresh_table: Any) -> None:
    traces = []
    for ep in (pg_direct, pg_proxy):
        pg_fresh_table(TABLE)
        trace: list[Any] = []
        with connect(ep) as conn:
            with conn.pipeline() as p:
                curs = [conn.cursor() for _ in range(5)]
                curs[0].execute(f"INSERT INTO {TABLE} (i4, txt) VALUES (%s, %s), (%s, %s) RETURNING id",
                                (1, "one", 2, "two ☃"))
                curs[1].execute(f"UPDATE {TABLE} SET txt = txt || '!' WHERE i4 = %s", (2,))
                curs[2].execute(f"SELECT id, i4, txt FROM {TABLE} ORDER BY id")
                curs[3].execute("SELECT %s::int8 * 2 AS n, %s::jsonb AS j", (21, Jsonb({"k": [1, 2]})))
                curs[4].execute(f"DELETE FROM {TABLE} WHERE i4 = %s", (1,))
                p.sync()
                for c in curs:
                    trace.append(observe(c, "pipeline ok"))
            # A failing statement aborts the rest of the pipeline up to the next sync.
            failed: list[Any] = []
            try:
                with conn.pipeline():
                    ok = conn.cursor()
                    ok.execute(f"INSERT INTO {TABLE} (i4) VALUES (%s)", (10,))
                    bad = conn.cursor()
                    bad.execute(f"INSERT INTO {TABLE} (i4) VALUES (%s)", (2,))  # duplicate i4
                    skipped = conn.cursor()
                    skipped.execute(f"INSERT INTO {TABLE} (i4) VALUES (%s)", (11,))
            except psycopg.Error as exc:
                failed.append(error_dict(exc))
            trace.append(Observation("pipeline error", error=failed[0] if failed else None))
            trace.append(observe(conn.execute(f"SELECT i4 FROM {TABLE} ORDER BY i4"), "after pipeline"))
        traces.append(trace)
    direct, proxied = traces
    assert proxied[0].rows == [(1,), (2,)] and proxied[0].status == ("INSERT 0 2", 2)
    assert proxied[2].rows == [(1, 1, "one"), (2, 2, "two ☃!")]
    assert proxied[3].rows == [(42, {"k": [1, 2]})]
    assert proxied[4].status == ("DELETE 1", 1)
    assert proxied[5].error is not None and proxied[5].error["sqlstate"] == "23505"
    # The pipeline ran as one implicit transaction up to its sync: the first INSERT (10) is rolled back too.
    assert proxied[6].rows == [(2,)]
    assert_same_trace(direct, proxied, "psycopg (pipeline)")


def test_transactions(pg_proxy: Endpoint, pg_fresh_table: Any) -> None:
    table = pg_fresh_table("t_psycopg_tx", TX_TABLE_DDL)
    check_transactions(lambda: connect(pg_proxy), table, run)


def test_transaction_status_and_failed_transaction(pg_direct: Endpoint, pg_proxy: Endpoint) -> None:
    seen = []
    for ep in (pg_direct, pg_proxy):
        with connect(ep, autocommit=False) as conn:
            states = [conn.info.transaction_status.name]
            conn.execute("SELECT 1")
            states.append(conn.info.transaction_status.name)
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1/0")
            states.append(conn.info.transaction_status.name)
            with pytest.raises(psycopg.errors.InFailedSqlTransaction) as err:
                conn.execute("SELECT 2")
            states.append(err.value.sqlstate)
            conn.rollback()
            states.append(conn.info.transaction_status.name)
            states.append(conn.execute("SELECT 3").fetchone())
            conn.commit()
        seen.append(states)
    assert seen[1] == ["IDLE", "INTRANS", "INERROR", "25P02", "IDLE", (3,)]
    assert seen[0] == seen[1]


def test_notice_passthrough(pg_direct: Endpoint, pg_proxy: Endpoint) -> None:
    got = []
    for ep in (pg_direct, pg_proxy):
        notices: list[Any] = []
        with connect(ep) as conn:
            conn.add_notice_handler(lambda d, out=notices: out.append(
                (d.severity_nonlocalized, d.sqlstate, d.message_primary, d.message_hint)))
            conn.execute("DO $$ BEGIN RAISE NOTICE 'hi'; END $$")
            conn.execute("DO $$ BEGIN RAISE WARNING 'careful' USING HINT = 'a hint', ERRCODE = '01000'; END $$")
            conn.execute("SELECT 1")
        got.append(notices)
    assert got[1] == [("NOTICE", "00000", "hi", None), ("WARNING", "01000", "careful", "a hint")]
    assert got[0] == got[1]


def test_parameter_status_matches_direct(pg_direct: Endpoint, pg_proxy: Endpoint) -> None:
    with connect(pg_direct) as d, connect(pg_proxy) as p:
        direct = {k: d.info.parameter_status(k) for k in COMPARED_PARAMETERS}
        proxied = {k: p.info.parameter_status(k) for k in COMPARED_PARAMETERS}
        assert p.info.backend_pid != 0  # BackendKeyData was sent (psycopg needs it to cancel)
        assert p.execute("SHOW server_version").fetchone()[0] == proxied["server_version"]
        assert p.execute("SELECT current_database()").fetchone() == ("dbmesh_pg",)
    assert direct["server_encoding"] == "UTF8" and direct["client_encoding"] == "UTF8"
    assert proxied == direct


def test_logins(pg_proxy: Endpoint, require_dbmesh: None) -> None:
    for user, password in (("root", "rootpw"), ("md5client", "md5pw"), ("plainclient", "plainpw")):
        with connect(pg_proxy.as_user(user, password)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,), user
    for user in ("root", "md5client", "plainclient", "nosuchuser"):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect(pg_proxy.as_user(user, "wrong"))


def test_tls(pg_proxy: Endpoint, require_dbmesh: None) -> None:
    with connect(pg_proxy, sslmode="require") as conn:
        assert conn.pgconn.ssl_in_use
        # The server's view: pg_stat_ssl is about the dbmesh -> PostgreSQL leg, so not asked here.
        assert conn.execute("SELECT %s::text", ("over tls 😀",)).fetchone() == ("over tls 😀",)
    with connect(pg_proxy.as_user("md5client", "md5pw"), sslmode="require") as conn:
        assert conn.pgconn.ssl_in_use and conn.execute("SELECT 1").fetchone() == (1,)
    with connect(pg_proxy, sslmode="disable") as conn:
        assert not conn.pgconn.ssl_in_use


def _edge_scenario(ep: Endpoint) -> list[Any]:
    out: list[Any] = []
    with connect(ep) as conn, conn.cursor() as cur:
        # several statements in one simple Query: every result, then the error stops the rest
        cur.execute("SELECT 1 AS a; SELECT 'two' AS b, 2.5::float8 AS c; VALUES (3), (4)")
        sets = []
        while True:
            sets.append((cur.statusmessage, [d.name for d in cur.description or []], cur.fetchall()))
            if not cur.nextset():
                break
        out.append(sets)
        try:
            cur.execute("CREATE TEMP TABLE edge_tmp (i int); INSERT INTO edge_tmp VALUES (1); SELECT 1/0; "
                        "INSERT INTO edge_tmp VALUES (2)")
        except psycopg.Error as exc:
            out.append(error_dict(exc))
        # the implicit transaction of that Query rolled back as a whole: no edge_tmp
        try:
            cur.execute("SELECT count(*) FROM edge_tmp")
            out.append(cur.fetchall())
        except psycopg.Error as exc:
            out.append(error_dict(exc)["sqlstate"])
        cur.execute("")  # EmptyQueryResponse
        out.append((cur.statusmessage, cur.description))
        cur.execute("-- just a comment")
        out.append((cur.statusmessage, cur.description))
        big = "x" * (4 * 1024 * 1024)  # a 4 MiB parameter and a 1 MiB statement text
        cur.execute("SELECT length(%s::text), md5(%s::text)", (big, big))
        out.append(cur.fetchall())
        cur.execute("SELECT length('" + "y" * (1024 * 1024) + "')")
        out.append(cur.fetchall())
        params = list(range(20000))  # many parameters in one Bind
        cur.execute("SELECT sum(x) FROM unnest(ARRAY[" + ", ".join(["%s::int8"] * len(params)) + "]) x", params)
        out.append(cur.fetchall())
        cur.execute("SELECT g FROM generate_series(1, 3) g", binary=True)
        out.append(cur.fetchall())
    return out


def test_edge_cases_match_direct(pg_direct: Endpoint, pg_proxy: Endpoint) -> None:
    direct = _edge_scenario(pg_direct)
    proxied = _edge_scenario(pg_proxy)
    assert proxied[0] == [("SELECT 1", ["a"], [(1,)]), ("SELECT 1", ["b", "c"], [("two", 2.5)]),
                          ("SELECT 2", ["column1"], [(3,), (4,)])]
    assert proxied[1]["sqlstate"] == "22012"
    assert proxied[2] == "42P01"
    assert proxied[3] == (None, None) and proxied[4] == (None, None)
    assert proxied[5][0][0] == 4 * 1024 * 1024 and proxied[6] == [(1024 * 1024,)]
    assert proxied[7] == [(Decimal(sum(range(20000))),)] and proxied[8] == [(1,), (2,), (3,)]
    assert proxied == direct
