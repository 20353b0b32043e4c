"""mysqlclient (MySQLdb, on MariaDB Connector/C) through dbmesh, compared with MariaDB directly.

mysqlclient has no server-side prepared statements (``%s`` is escaped client-side), and its exceptions
carry (errno, message) without the SQLSTATE, so SQLSTATEs are checked by the other clients.
"""

from __future__ import annotations

from typing import Any

import MySQLdb
import pytest
from MySQLdb.constants import CLIENT

from tests.clients.common import (
    Endpoint,
    Observation,
    Step,
    assert_same_trace,
    by_label,
    check_crud_expectations,
    check_transactions,
    crud_steps,
    expected_crud_rows,
    found_rows_steps,
    run_dbapi_steps,
)

TABLE = "t_mysqlclient"


def connect(ep: Endpoint, **kwargs: Any) -> Any:
    params: dict[str, Any] = {
        "host": ep.host,
        "port": ep.port,
        "user": ep.user,
        "password": ep.password,
        "database": ep.database,
        "autocommit": True,
        "charset": "utf8mb4",
        "connect_timeout": 10,
        "read_timeout": 30,
    }
    params.update(kwargs)
    return MySQLdb.connect(**params)


def run(conn: Any, steps: list[Step]) -> list[Observation]:
    return run_dbapi_steps(conn, steps, errors=MySQLdb.MySQLError)


def test_connect(proxy: Endpoint) -> None:
    conn = connect(proxy)
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1, DATABASE()")
        assert cur.fetchall() == ((1, "dbmesh_test"),)
    finally:
        conn.close()


def test_connect_tls_verified(proxy: Endpoint, proxy_ca_file: str) -> None:
    """TLS with dbmesh's certificate as the CA: the connection succeeds only if the chain verifies,
    so TLS really was negotiated; a wrong CA is refused by the client (2026)."""
    conn = connect(proxy, ssl={"ca": proxy_ca_file})
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert cur.fetchall() == ((1,),)
    finally:
        conn.close()
    with pytest.raises(MySQLdb.OperationalError) as info:
        connect(proxy, ssl={"ca": "/etc/ssl/certs/ca-certificates.crt"})
    assert info.value.args[0] == 2026


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_caching_sha2_user(sha2_proxy: Endpoint, proxy_ca_file: str, tls: bool) -> None:
    # Connector/C completes caching_sha2 full authentication over TLS, or without it by RSA key exchange.
    conn = connect(sha2_proxy, **({"ssl": {"ca": proxy_ca_file}} if tls else {}))
    try:
        cur = conn.cursor()
        cur.execute("SELECT 2")
        assert cur.fetchall() == ((2,),)
    finally:
        conn.close()


def test_wrong_password_is_1045(proxy: Endpoint) -> None:
    with pytest.raises(MySQLdb.OperationalError) as info:
        connect(proxy.as_user("root", "definitely-wrong"))
    assert info.value.args[0] == 1045
    assert "Access denied" in info.value.args[1]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_crud_matches_direct(direct: Endpoint, proxy: Endpoint, fresh_table: Any, proxy_ca_file: str,
                             tls: bool) -> None:
    traces = {}
    for ep in (direct, proxy):
        fresh_table(TABLE)
        conn = connect(ep, **({"ssl": {"ca": proxy_ca_file}} if tls and ep is proxy else {}))
        try:
            traces[ep.name] = run(conn, crud_steps(TABLE))
        finally:
            conn.close()
    assert_same_trace(traces["direct"], traces["dbmesh"], "mysqlclient")
    check_crud_expectations(traces["dbmesh"], check_sqlstate=False)
    assert list(by_label(traces["dbmesh"])["select all"].rows) == expected_crud_rows()
    assert by_label(traces["dbmesh"])["insert ignore truncates"].warnings == 1


@pytest.mark.parametrize("found_rows", [False, True], ids=["changed", "found"])
def test_update_counts_with_and_without_found_rows(direct: Endpoint, proxy: Endpoint, fresh_table: Any,
                                                   found_rows: bool) -> None:
    flag = CLIENT.FOUND_ROWS if found_rows else 0
    traces = {}
    for ep in (direct, proxy):
        fresh_table(TABLE)
        conn = connect(ep, client_flag=flag)
        try:
            traces[ep.name] = run(conn, found_rows_steps(TABLE))
            traces[ep.name].append(Observation("info()", rows=conn.info()))  # "Rows matched: 3  Changed: 0 ..."
        finally:
            conn.close()
    assert_same_trace(traces["direct"], traces["dbmesh"], "mysqlclient")
    o = by_label(traces["dbmesh"])
    assert o["update 3 matched 1 changed"].rowcount == (3 if found_rows else 1)
    assert o["update 3 matched 0 changed"].rowcount == (3 if found_rows else 0)


def test_transactions(proxy: Endpoint, fresh_table: Any) -> None:
    fresh_table(TABLE)
    check_transactions(lambda: connect(proxy), TABLE, run)


def test_multi_statements_and_call(direct: Endpoint, proxy: Endpoint, mariadb: Any) -> None:
    admin = mariadb.connect("dbmesh_test")
    try:
        with admin.cursor() as cur:
            cur.execute("DROP PROCEDURE IF EXISTS p_mysqlclient_matrix")
            cur.execute("CREATE PROCEDURE p_mysqlclient_matrix() BEGIN SELECT 1 AS a; SELECT 'b' AS b; END")
        results = {}
        for ep in (direct, proxy):
            conn = connect(ep, client_flag=CLIENT.MULTI_STATEMENTS | CLIENT.MULTI_RESULTS)
            try:
                out = []
                for sql in ("SELECT 1 AS one; SELECT 2 AS two", "CALL p_mysqlclient_matrix()"):
                    cur = conn.cursor()
                    cur.execute(sql)
                    sets = [(cur.description, cur.fetchall())]
                    while cur.nextset():
                        sets.append((cur.description, cur.fetchall()))
                    cur.close()
                    out.append(sets)
                cur = conn.cursor()
                cur.execute("SELECT 'after'")
                out.append(cur.fetchall())
                results[ep.name] = out
            finally:
                conn.close()
        assert results["dbmesh"] == results["direct"]
        multi, call, after = results["dbmesh"]
        assert [rows for _, rows in multi] == [((1,),), ((2,),)]
        assert [rows for _, rows in call] == [((1,),), (("b",),), ()]  # the CALL's final OK has no rows
        assert after == (("after",),)
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP PROCEDURE IF EXISTS p_mysqlclient_matrix")
        admin.close()
