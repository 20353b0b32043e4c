"""PyMySQL through dbmesh, compared with the same statements sent to MariaDB directly.

PyMySQL also carries the session-level part of the matrix: multi-statements, stored procedures
(MULTI_RESULTS), SET NAMES latin1, USE/COM_INIT_DB, large text-protocol values and two concurrent clients.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

import pymysql
import pytest
from pymysql.constants import CLIENT

from tests.clients.common import (
    BINARY,
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

TABLE = "t_pymysql"


def connect(ep: Endpoint, **kwargs: Any) -> pymysql.Connection:
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
    if params.get("ssl") is None:
        params.pop("ssl", None)
        params["ssl_disabled"] = True  # PyMySQL >= 1.2 otherwise prefers TLS when the server offers it
    return pymysql.connect(**params)


def run(conn: Any, steps: list[Step]) -> list[Observation]:
    return run_dbapi_steps(conn, steps, errors=pymysql.MySQLError)


def insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # dbmesh's certificate is self-signed
    return ctx


# -- connecting ----------------------------------------------------------------------------------------


def test_connect(proxy: Endpoint) -> None:
    with connect(proxy) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1, DATABASE()")
        assert cur.fetchall() == ((1, "dbmesh_test"),)
        assert not isinstance(conn._sock, ssl.SSLSocket)


def test_connect_tls(proxy: Endpoint) -> None:
    with connect(proxy, ssl=insecure_context()) as conn, conn.cursor() as cur:
        assert isinstance(conn._sock, ssl.SSLSocket) and conn._sock.cipher() is not None
        cur.execute("SELECT 1, DATABASE()")
        assert cur.fetchall() == ((1, "dbmesh_test"),)


@pytest.mark.parametrize("use_tls", [True, False], ids=["tls", "plain-rsa"])
def test_caching_sha2_user(sha2_proxy: Endpoint, use_tls: bool) -> None:
    # Without TLS, PyMySQL completes caching_sha2 full authentication by fetching the server's RSA key.
    with connect(sha2_proxy, ssl=insecure_context() if use_tls else None) as conn, conn.cursor() as cur:
        cur.execute("SELECT 2")
        assert cur.fetchall() == ((2,),)


@pytest.mark.parametrize("user", ["root", "sha2user"])
def test_wrong_password_is_1045(proxy: Endpoint, user: str) -> None:
    with pytest.raises(pymysql.OperationalError) as info:
        connect(proxy.as_user(user, "definitely-wrong"))
    assert info.value.args[0] == 1045
    assert info.value.sqlstate == "28000"
    assert "Access denied" in info.value.args[1]


# -- CRUD, differential -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_crud_matches_direct(direct: Endpoint, proxy: Endpoint, fresh_table: Any, tls: bool) -> None:
    traces = {}
    for ep in (direct, proxy):
        fresh_table(TABLE)
        with connect(ep, ssl=insecure_context() if tls and ep is proxy else None) as conn:
            traces[ep.name] = run(conn, crud_steps(TABLE))
    assert_same_trace(traces["direct"], traces["dbmesh"], "pymysql")
    check_crud_expectations(traces["dbmesh"])
    assert list(by_label(traces["dbmesh"])["select all"].rows) == expected_crud_rows()
    assert by_label(traces["dbmesh"])["insert ignore truncates"].warnings == 1


@pytest.mark.parametrize("found_rows", [False, True], ids=["changed", "found"])
def test_update_counts_with_and_without_found_rows(direct: Endpoint, proxy: Endpoint, fresh_table: Any,
                                                   found_rows: bool) -> None:
    flag = CLIENT.FOUND_ROWS if found_rows else 0
    traces = {}
    for ep in (direct, proxy):
        fresh_table(TABLE)
        with connect(ep, client_flag=flag) as conn:
            traces[ep.name] = run(conn, found_rows_steps(TABLE))
    assert_same_trace(traces["direct"], traces["dbmesh"], "pymysql")
    o = by_label(traces["dbmesh"])
    assert o["update 3 matched 1 changed"].rowcount == (3 if found_rows else 1)
    assert o["update 3 matched 0 changed"].rowcount == (3 if found_rows else 0)


LARGE_DDL = f"CREATE TABLE `{TABLE}` (id INT AUTO_INCREMENT PRIMARY KEY, bl LONGBLOB, txt LONGTEXT)"


def test_large_value_round_trip(direct: Endpoint, proxy: Endpoint, fresh_table: Any) -> None:
    """A 3 MiB BLOB and a 2 MiB utf8mb4 TEXT through the text protocol (one >1 MiB packet each way)."""
    blob = (BINARY * 12_000)[: 3 * 1024 * 1024]
    text = ("😀é" * 400_000)[:700_000]
    steps = [
        Step("insert large", f"INSERT INTO `{TABLE}` (bl, txt) VALUES (%s, %s)", (blob, text)),
        Step("read large", f"SELECT id, bl, txt, LENGTH(bl), CHAR_LENGTH(txt) FROM `{TABLE}`"),
    ]
    traces = {}
    for ep in (direct, proxy):
        fresh_table(TABLE, LARGE_DDL)
        with connect(ep) as conn:
            traces[ep.name] = run(conn, steps)
    assert_same_trace(traces["direct"], traces["dbmesh"], "pymysql")
    assert traces["dbmesh"][0].error is None and traces["dbmesh"][0].rowcount == 1
    assert traces["dbmesh"][1].rows == ((1, blob, text, len(blob), len(text)),)


def test_transactions(proxy: Endpoint, fresh_table: Any) -> None:
    fresh_table(TABLE)
    check_transactions(lambda: connect(proxy), TABLE, run)


def test_transactions_with_driver_api(proxy: Endpoint, fresh_table: Any) -> None:
    """autocommit off, conn.commit()/conn.rollback(), seen from a second connection."""
    fresh_table(TABLE)
    with connect(proxy, autocommit=False) as c1, connect(proxy) as c2:
        with c1.cursor() as cur:
            cur.execute(f"INSERT INTO `{TABLE}` (vc) VALUES ('kept')")
        c1.commit()
        with c1.cursor() as cur:
            cur.execute(f"INSERT INTO `{TABLE}` (vc) VALUES ('dropped')")
        with c2.cursor() as cur:
            cur.execute(f"SELECT vc FROM `{TABLE}` ORDER BY id")
            assert cur.fetchall() == (("kept",),)
        c1.rollback()
        for conn in (c1, c2):
            with conn.cursor() as cur:
                cur.execute(f"SELECT vc FROM `{TABLE}` ORDER BY id")
                assert cur.fetchall() == (("kept",),)
        c1.commit()


# -- multi-statements and stored procedures -----------------------------------------------------------------


def _all_results(conn: pymysql.Connection, sql: str) -> list[Any]:
    """Every result of a multi-result statement: rows+description, OK counts, or the error that ended it."""
    out: list[Any] = []
    cur = conn.cursor()
    try:
        cur.execute(sql)
        while True:
            if cur.description:
                out.append(("rows", tuple(cur.description), cur.fetchall()))
            else:
                out.append(("ok", cur.rowcount, cur.lastrowid))
            if not cur.nextset():
                break
    except pymysql.MySQLError as exc:
        out.append(("error", exc.args[0], exc.sqlstate, exc.args[1]))
    finally:
        cur.close()
    # The connection must still be usable after the last result (or the error) of the batch.
    with conn.cursor() as check:
        check.execute("SELECT 'still usable'")
        out.append(("after", check.fetchall()))
    return out


def test_multi_statements(direct: Endpoint, proxy: Endpoint, fresh_table: Any) -> None:
    fresh_table(TABLE)
    batches = [
        "SELECT 1 AS one; SELECT 2 AS two, 'b' AS bee",
        f"INSERT INTO `{TABLE}` (i) VALUES (7); SELECT LAST_INSERT_ID() AS id; DELETE FROM `{TABLE}`",
        "SELECT 1; SELECT * FROM no_such_table_for_client_matrix; SELECT 3",
        "SET @mm = 5; SELECT @mm AS mm",
    ]
    results = {}
    for ep in (direct, proxy):
        fresh_table(TABLE)
        with connect(ep, client_flag=CLIENT.MULTI_STATEMENTS) as conn:
            results[ep.name] = [_all_results(conn, sql) for sql in batches]
    assert results["dbmesh"] == results["direct"]
    first = results["dbmesh"][0]
    assert [r[0] for r in first] == ["rows", "rows", "after"]
    assert first[0][2] == ((1,),) and first[1][2] == ((2, "b"),)
    assert results["dbmesh"][2][1][:3] == ("error", 1146, "42S02")


def test_stored_procedure_call(direct: Endpoint, proxy: Endpoint, mariadb: Any) -> None:
    conn = mariadb.connect("dbmesh_test")
    try:
        with conn.cursor() as cur:
            cur.execute("DROP PROCEDURE IF EXISTS p_client_matrix")
            cur.execute(
                "CREATE PROCEDURE p_client_matrix(IN x INT) BEGIN "
                "SELECT x * 2 AS doubled, 'é😀' AS txt; SELECT x AS again UNION ALL SELECT x + 1; END"
            )
        results = {}
        for ep in (direct, proxy):
            with connect(ep) as c:  # PyMySQL always sets CLIENT_MULTI_RESULTS
                results[ep.name] = [_all_results(c, "CALL p_client_matrix(21)")]
                with c.cursor() as cur:
                    cur.callproc("p_client_matrix", (5,))
                    got = [cur.fetchall()]
                    while cur.nextset():
                        got.append(cur.fetchall())
                    results[ep.name].append(got)
        assert results["dbmesh"] == results["direct"]
        call = results["dbmesh"][0]
        assert [r[0] for r in call] == ["rows", "rows", "ok", "after"]
        assert call[0][2] == ((42, "é😀"),) and call[1][2] == ((21,), (22,))
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP PROCEDURE IF EXISTS p_client_matrix")
        conn.close()


# -- character sets and schemas ------------------------------------------------------------------------------

LATIN1_TEXT = "café ñ ü ÿ £ ©"


def test_set_names_latin1_round_trip(direct: Endpoint, proxy: Endpoint, fresh_table: Any) -> None:
    table = "t_pymysql_latin1"
    ddl = (f"CREATE TABLE `{table}` (id INT PRIMARY KEY, l VARCHAR(50) CHARACTER SET latin1, "
           f"u VARCHAR(50) CHARACTER SET utf8mb4)")
    results = {}
    for ep in (direct, proxy):
        fresh_table(table, ddl)
        with connect(ep) as conn:
            conn.set_character_set("latin1")  # SET NAMES latin1, and PyMySQL now encodes as latin1
            with conn.cursor() as cur:
                cur.execute("SELECT @@character_set_client, @@character_set_connection, @@character_set_results")
                names = cur.fetchall()
                cur.execute(f"INSERT INTO `{table}` VALUES (1, %s, %s)", (LATIN1_TEXT, LATIN1_TEXT))
                # A few statements later the session must still be latin1 (multiplexing must replay it).
                for _ in range(5):
                    cur.execute("SELECT 1")
                cur.execute(f"SELECT l, u, HEX(l), HEX(u), %s AS echo FROM `{table}`", (LATIN1_TEXT,))
                latin1_rows = (cur.fetchall(), tuple(cur.description))
        with connect(ep) as conn, conn.cursor() as cur:  # the same data read by a utf8mb4 session
            cur.execute(f"SELECT l, u, HEX(l), HEX(u) FROM `{table}`")
            utf8_rows = cur.fetchall()
        results[ep.name] = (names, latin1_rows, utf8_rows)
    assert results["dbmesh"] == results["direct"]
    names, (rows, _), utf8_rows = results["dbmesh"]
    assert names == (("latin1", "latin1", "latin1"),)
    assert rows[0][:2] == (LATIN1_TEXT, LATIN1_TEXT) and rows[0][4] == LATIN1_TEXT
    assert rows[0][2] == LATIN1_TEXT.encode("latin1").hex().upper()
    assert utf8_rows[0][:2] == (LATIN1_TEXT, LATIN1_TEXT)
    assert utf8_rows[0][3] == LATIN1_TEXT.encode("utf-8").hex().upper()


def test_latin1_handshake_charset(direct: Endpoint, proxy: Endpoint) -> None:
    """charset=latin1 in the handshake (no SET NAMES): the session starts in latin1."""
    results = {}
    for ep in (direct, proxy):
        with connect(ep, charset="latin1") as conn, conn.cursor() as cur:
            cur.execute("SELECT @@character_set_client, @@character_set_results, %s AS echo, HEX(%s)",
                        (LATIN1_TEXT, LATIN1_TEXT))
            results[ep.name] = (cur.fetchall(), tuple(cur.description))
    assert results["dbmesh"] == results["direct"]
    assert results["dbmesh"][0][0][:3] == ("latin1", "latin1", LATIN1_TEXT)


def test_use_database(direct: Endpoint, proxy: Endpoint, fresh_table: Any) -> None:
    fresh_table(TABLE)
    results = {}
    for ep in (direct, proxy):
        out: list[Any] = []
        with connect(ep, database=None) as conn, conn.cursor() as cur:
            cur.execute("SELECT DATABASE()")
            out.append(cur.fetchall())
            cur.execute("USE dbmesh_test")
            out.append(cur.fetchall())
            cur.execute("SELECT DATABASE()")
            out.append(cur.fetchall())
            cur.execute(f"SELECT COUNT(*) FROM `{TABLE}`")
            out.append(cur.fetchall())
            try:
                cur.execute("USE no_such_database_for_client_matrix")
            except pymysql.MySQLError as exc:
                out.append(("error", exc.args[0], exc.sqlstate))
            cur.execute("SELECT DATABASE()")
            out.append(cur.fetchall())
            conn.select_db("dbmesh_test")  # COM_INIT_DB
            cur.execute("SELECT DATABASE()")
            out.append(cur.fetchall())
        results[ep.name] = out
    assert results["dbmesh"] == results["direct"]
    assert results["dbmesh"][0] == ((None,),)
    assert results["dbmesh"][2] == (("dbmesh_test",),)
    assert results["dbmesh"][4] == ("error", 1049, "42000")


# -- concurrency -------------------------------------------------------------------------------------------


def test_two_concurrent_clients(proxy: Endpoint, fresh_table: Any) -> None:
    """Two threads, 200 statements each, interleaved on the proxy; every answer belongs to its asker."""
    fresh_table(TABLE)
    failures: list[str] = []
    barrier = threading.Barrier(2)

    def worker(k: int) -> None:
        try:
            with connect(proxy) as conn, conn.cursor() as cur:
                barrier.wait(10)
                for n in range(100):  # 2 statements per iteration
                    cur.execute(f"INSERT INTO `{TABLE}` (i, vc) VALUES (%s, %s)", (k * 1000 + n, f"w{k}"))
                    if cur.rowcount != 1:
                        failures.append(f"worker {k} insert {n}: rowcount {cur.rowcount}")
                    cur.execute("SELECT %s, CONCAT('w', %s), COUNT(*) FROM `" + TABLE + "` WHERE vc = %s",
                                (k * 1000 + n, k, f"w{k}"))
                    got = cur.fetchall()
                    if got != ((k * 1000 + n, f"w{k}", n + 1),):
                        failures.append(f"worker {k} select {n}: {got!r}")
        except Exception as exc:  # reported below; a thread's exception would otherwise vanish
            failures.append(f"worker {k}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    assert failures == []
    with connect(proxy) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT vc, COUNT(*), MIN(i), MAX(i) FROM `{TABLE}` GROUP BY vc ORDER BY vc")
        assert cur.fetchall() == (("w1", 100, 1000, 1099), ("w2", 100, 2000, 2099))


# -- COM_PING between statements ------------------------------------------------------------------------------


def test_ping_between_statements_matches_direct(direct: Endpoint, proxy: Endpoint, fresh_table: Any) -> None:
    """COM_PING is a command like any other for the server: it resets ROW_COUNT() and the warnings of
    the previous statement. Drivers ping between statements (mysql-connector's cursor() pings to check
    the connection), so a proxy that answers COM_PING itself must give the same session state afterwards."""
    fresh_table(TABLE)
    results = {}
    for ep in (direct, proxy):
        fresh_table(TABLE)
        out: list[Any] = []
        with connect(ep) as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{TABLE}` (i) VALUES (1), (2)")
            cur.execute(f"UPDATE `{TABLE}` SET i = i + 1")
            conn.ping(reconnect=False)
            cur.execute("SELECT ROW_COUNT()")
            out.append(("row_count after ping", cur.fetchall()))
            cur.execute(f"INSERT IGNORE INTO `{TABLE}` (short) VALUES ('too long for five')")
            conn.ping(reconnect=False)
            cur.execute("SHOW WARNINGS")
            out.append(("warnings after ping", cur.fetchall()))
        results[ep.name] = out
    assert results["dbmesh"] == results["direct"]
