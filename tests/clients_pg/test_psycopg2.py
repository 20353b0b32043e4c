"""psycopg2 (libpq, client-side parameter interpolation, simple protocol) through dbmesh, compared with
the same steps sent to PostgreSQL directly; SQL-level PREPARE/EXECUTE, named (DECLARE) cursors, logins,
TLS, transactions and notices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest

from tests.clients_pg.common import (
    TX_TABLE_DDL,
    Endpoint,
    Observation,
    Step,
    assert_same_trace,
    check_crud_expectations,
    check_transactions,
    crud_steps,
    run_dbapi_steps,
)

TABLE = "t_psycopg2"


def connect(ep: Endpoint, **kwargs: Any) -> Any:
    conn = psycopg2.connect(ep.dsn(**kwargs))
    conn.autocommit = True
    return conn


def error_dict(exc: Any) -> dict[str, Any]:
    d = exc.diag
    return {"sqlstate": exc.pgcode, "message": d.message_primary, "detail": d.message_detail,
            "hint": d.message_hint, "position": d.statement_position, "severity": d.severity_nonlocalized,
            "constraint": d.constraint_name, "table": d.table_name, "type": type(exc).__name__}


def run(conn: Any, steps: Sequence[Step]) -> list[Observation]:
    return run_dbapi_steps(conn, steps, errors=psycopg2.Error, error_dict=error_dict,
                           status=lambda cur: (cur.statusmessage, cur.rowcount))


def test_crud_matches_direct(pg_direct: Endpoint, pg_proxy: Endpoint, pg_fresh_table: Any) -> None:
    traces = []
    for ep in (pg_direct, pg_proxy):
        pg_fresh_table(TABLE)
        conn = connect(ep)
        try:
            traces.append(run(conn, crud_steps(TABLE)))
        finally:
            conn.close()
    direct, proxied = traces
    check_crud_expectations(proxied, rowcount=lambda o: o.status[1])
    assert_same_trace(direct, proxied, "psycopg2")


def test_sql_prepare_and_named_cursor(pg_direct: Endpoint, pg_proxy: Endpoint, pg_fresh_table: Any) -> None:
    steps = [
        Step("prepare", f"PREPARE ins (int4, text) AS INSERT INTO {TABLE} (i4, txt) VALUES ($1, $2) RETURNING id"),
        Step("execute 1", "EXECUTE ins (%s, %s)", (1, "one ✓")),
        Step("execute 2", "EXECUTE ins (%s, %s)", (2, None)),
        # Only this statement: through dbmesh the view also lists the backend's shared protocol-level
        # statements (as with PgBouncer's max_prepared_statements), which are not the session's own.
        Step("prepared", "SELECT name, parameter_types::text FROM pg_prepared_statements WHERE name = 'ins'"),
        Step("prepare twice", "PREPARE ins (int4) AS SELECT 1"),
        Step("deallocate", "DEALLOCATE ins"),
        Step("execute gone", "EXECUTE ins (3, 'x')"),
        Step("read", f"SELECT id, i4, txt FROM {TABLE} ORDER BY id"),
    ]
    traces = []
    for ep in (pg_direct, pg_proxy):
        pg_fresh_table(TABLE)
        conn = connect(ep)
        try:
            trace = run(conn, steps)
            conn.autocommit = False
            with conn.cursor(name="named_cur") as cur:  # DECLARE ... CURSOR + FETCH FORWARD itersize
                cur.itersize = 7
                cur.execute("SELECT g, md5(g::text) FROM generate_series(1, 100) g")
                trace.append(Observation("named cursor", rows=list(cur)))
            conn.commit()
        finally:
            conn.close()
        traces.append(trace)
    direct, proxied = traces
    o = {x.label: x for x in proxied}
    assert o["execute 1"].rows == [(1,)] and o["execute 2"].rows == [(2,)]
    assert o["prepared"].rows == [("ins", "{integer,text}")]
    assert o["prepare twice"].error["sqlstate"] == "42P05"
    assert o["execute gone"].error["sqlstate"] == "26000"
    assert o["read"].rows == [(1, 1, "one ✓"), (2, 2, None)]
    assert len(o["named cursor"].rows) == 100 and o["named cursor"].rows[-1][0] == 100
    assert_same_trace(direct, proxied, "psycopg2 (PREPARE/EXECUTE, named cursor)")


def test_transactions(pg_proxy: Endpoint, pg_fresh_table: Any) -> None:
    table = pg_fresh_table("t_psycopg2_tx", TX_TABLE_DDL)
    check_transactions(lambda: connect(pg_proxy), table, run)


def test_notices_and_encoding(pg_direct: Endpoint, pg_proxy: Endpoint) -> None:
    got = []
    for ep in (pg_direct, pg_proxy):
        conn = connect(ep)
        try:
            with conn.cursor() as cur:
                cur.execute("DO $$ BEGIN RAISE NOTICE 'hi'; END $$")
                conn.set_client_encoding("LATIN1")
                cur.execute("SELECT 'café'::text, current_setting('client_encoding')")
                latin = cur.fetchone()
                conn.set_client_encoding("UTF8")
            got.append((list(conn.notices), latin, conn.get_parameter_status("client_encoding")))
        finally:
            conn.close()
    assert got[1] == (["NOTICE:  hi\n"], ("café", "LATIN1"), "UTF8")
    assert got[0] == got[1]


def test_logins_and_tls(pg_proxy: Endpoint, require_dbmesh: None) -> None:
    for user, password in (("root", "rootpw"), ("md5client", "md5pw"), ("plainclient", "plainpw")):
        conn = connect(pg_proxy.as_user(user, password), sslmode="require")
        try:
            assert conn.info.ssl_in_use
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                assert cur.fetchone() == (1,)
        finally:
            conn.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        connect(pg_proxy.as_user("md5client", "wrong"))
