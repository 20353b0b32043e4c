"""The MySQL proxy against a real MariaDB: streaming, backend failure, multiplexing isolation, limits, lifecycle."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import urllib.request
from typing import Any

import pymysql
import pytest

from tests.support import DbMeshProcess, MariaDB, database_config


def connect(proc: DbMeshProcess, **kw: Any) -> pymysql.Connection:
    kw.setdefault("user", "root")
    kw.setdefault("password", "rootpw")
    kw.setdefault("database", "dbmesh_test")
    return pymysql.connect(host=proc.host, port=proc.port, autocommit=True, **kw)


def scalar(conn: pymysql.Connection, sql: str, args: Any = None) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
        return None if row is None else row[0]


def health(proc: DbMeshProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{proc.host}:{proc.admin_port}/healthz", timeout=5) as resp:
        return json.loads(resp.read())


def assert_clean_log(proc: DbMeshProcess) -> None:
    text = proc.stderr_text()
    assert "Traceback" not in text and "[BUG]" not in text, text[-4000:]


# -- streaming ----------------------------------------------------------------------------------------------------


def test_million_row_select_streams_to_a_slow_reader_in_bounded_memory(dbmesh: DbMeshProcess) -> None:
    """1,000,000 rows of ~120 bytes (~120 MB) pass through while the proxy's RSS grows by < 50 MB."""
    conn = connect(dbmesh, cursorclass=pymysql.cursors.SSCursor)
    baseline = dbmesh.rss_bytes()
    peak = baseline
    rows = 0
    digest = hashlib.sha256()
    with conn.cursor() as cur:
        cur.execute("SELECT seq, REPEAT(CHAR(65 + seq % 26), 100) FROM seq_1_to_1000000")
        started = time.monotonic()
        while True:
            batch = cur.fetchmany(20000)
            if not batch:
                break
            rows += len(batch)
            digest.update(repr(batch[-1]).encode())
            if rows % 100000 == 0:
                # The reader is slow: the proxy must stop reading the data source instead of buffering.
                time.sleep(0.4)
                peak = max(peak, dbmesh.rss_bytes())
        elapsed = time.monotonic() - started
    conn.close()
    assert rows == 1_000_000
    growth = peak - baseline
    assert growth < 50 * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB (from {baseline / 1e6:.1f} MB)"
    assert elapsed > 4  # the reader really was slow, so backpressure was exercised
    assert_clean_log(dbmesh)


# -- backend failure ----------------------------------------------------------------------------------------------


def test_killed_backend_gives_a_clear_error_and_the_proxy_recovers(
        start_dbmesh: Any, managed_mariadb: MariaDB) -> None:
    proc = start_dbmesh()
    victim = connect(proc)
    bystander = connect(proc)
    assert scalar(bystander, "SELECT 1") == 1
    result: dict[str, Any] = {}

    def long_query() -> None:
        try:
            scalar(victim, "SELECT SLEEP(30)")
            result["ok"] = True
        except pymysql.MySQLError as exc:
            result["error"] = exc

    t = threading.Thread(target=long_query)
    t.start()
    time.sleep(0.5)
    managed_mariadb.kill()
    t.join(10)
    assert not t.is_alive()
    err = result.get("error")
    assert isinstance(err, pymysql.err.OperationalError), result
    assert err.args[0] == 1158 and "lost connection to data source 'ds_0'" in err.args[1], err.args
    # While the data source is down, statements fail fast with a clear error instead of hanging.
    started = time.monotonic()
    with pytest.raises(pymysql.MySQLError) as down:
        scalar(bystander, "SELECT 2")
    assert time.monotonic() - started < 10
    assert "data source 'ds_0'" in str(down.value)
    managed_mariadb.start()
    # Back again: the same proxy serves without a restart, on old and new client connections.
    deadline = time.monotonic() + 20
    while True:
        try:
            assert scalar(victim, "SELECT 3") == 3
            break
        except pymysql.MySQLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert scalar(bystander, "SELECT 4") == 4
    assert scalar(connect(proc), "SELECT 5") == 5
    assert_clean_log(proc)


# -- multiplexing and session isolation ---------------------------------------------------------------------------


def test_sessions_share_few_backend_connections_without_seeing_each_others_state(start_dbmesh: Any) -> None:
    proc = start_dbmesh(max_pool_size=2, min_pool_size=0)
    clients = [connect(proc) for _ in range(8)]
    modes = ["ANSI_QUOTES", "NO_ZERO_DATE", "PIPES_AS_CONCAT", "IGNORE_SPACE", "ANSI_QUOTES,NO_ZERO_DATE",
             "NO_BACKSLASH_ESCAPES", "REAL_AS_FLOAT", "ONLY_FULL_GROUP_BY"]
    zones = ["+01:00", "+02:00", "+03:00", "+04:00", "-01:00", "-02:00", "-03:00", "+05:30"]
    for c, mode, zone in zip(clients, modes, zones, strict=True):
        with c.cursor() as cur:
            cur.execute("SET SESSION sql_mode = %s, time_zone = %s", (mode, zone))
    for _ in range(5):
        for c, mode, zone in zip(clients, modes, zones, strict=True):
            assert scalar(c, "SELECT @@session.sql_mode") == mode
            assert scalar(c, "SELECT @@session.time_zone") == zone
    pools = health(proc)["pools"]
    assert sum(p["total"] for p in pools.values()) <= 2, pools
    for c in clients:
        c.close()
    assert_clean_log(proc)


def test_state_that_cannot_be_replayed_pins_the_session(start_dbmesh: Any) -> None:
    proc = start_dbmesh(max_pool_size=3, min_pool_size=0)
    a, b, c = connect(proc), connect(proc), connect(proc)
    with a.cursor() as cur:
        cur.execute("SET @mine = 42")
        cur.execute("CREATE TEMPORARY TABLE tmp_pin (x INT)")
        cur.execute("INSERT INTO tmp_pin VALUES (7)")
    for _ in range(3):
        assert scalar(b, "SELECT @mine") is None
        assert scalar(c, "SELECT 1") == 1
        assert scalar(a, "SELECT @mine") == 42
        assert scalar(a, "SELECT x FROM tmp_pin") == 7
    with pytest.raises(pymysql.err.ProgrammingError) as missing:
        scalar(b, "SELECT x FROM tmp_pin")
    assert missing.value.args[0] == 1146


def test_uncommitted_work_is_invisible_to_other_sessions_on_shared_connections(start_dbmesh: Any) -> None:
    proc = start_dbmesh(max_pool_size=2, min_pool_size=0)
    setup = connect(proc)
    with setup.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS t_mux")
        cur.execute("CREATE TABLE t_mux (id INT PRIMARY KEY, v VARCHAR(10))")
    writer, reader = connect(proc), connect(proc)
    writer.begin()
    with writer.cursor() as cur:
        cur.execute("INSERT INTO t_mux VALUES (1, 'a')")
    assert scalar(reader, "SELECT COUNT(*) FROM t_mux") == 0
    writer.rollback()
    assert scalar(reader, "SELECT COUNT(*) FROM t_mux") == 0
    writer.begin()
    with writer.cursor() as cur:
        cur.execute("INSERT INTO t_mux VALUES (2, 'b')")
    writer.commit()
    assert scalar(reader, "SELECT v FROM t_mux WHERE id = 2") == "b"


def test_insert_id_and_row_count_refer_to_the_sessions_own_statements(start_dbmesh: Any) -> None:
    proc = start_dbmesh(max_pool_size=2, min_pool_size=0)
    setup = connect(proc)
    with setup.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS t_ids")
        cur.execute("CREATE TABLE t_ids (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    a, b = connect(proc), connect(proc)
    with a.cursor() as cur:
        cur.execute("INSERT INTO t_ids (v) VALUES (1)")
        first = cur.lastrowid
    with b.cursor() as cur:
        cur.execute("INSERT INTO t_ids (v) VALUES (2), (3)")
    assert scalar(a, "SELECT LAST_INSERT_ID()") == first
    with a.cursor() as cur:
        cur.execute("UPDATE t_ids SET v = v + 1")
    assert scalar(a, "SELECT ROW_COUNT()") == 3


def test_pool_exhaustion_waits_then_fails_with_a_clear_error(start_dbmesh: Any, mariadb: MariaDB) -> None:
    doc = database_config("dbmesh_test", mariadb, max_pool_size=1, min_pool_size=0)
    doc["dataSources"]["ds_0"]["connectionTimeoutMilliseconds"] = 700
    proc = start_dbmesh(databases={"dbmesh_test": doc}, include_default_database=False)
    holder = connect(proc)
    other = connect(proc)  # PyMySQL's connect runs SET NAMES: both sessions share the one connection
    holder.begin()  # a transaction pins the only connection
    assert scalar(holder, "SELECT 1") == 1
    started = time.monotonic()
    with pytest.raises(pymysql.MySQLError) as exc:
        scalar(other, "SELECT 2")
    assert 0.5 < time.monotonic() - started < 5
    assert exc.value.args[0] == 1040 and "pool size 1" in exc.value.args[1]
    holder.commit()
    assert scalar(other, "SELECT 3") == 3  # the released connection serves the waiting session's next statement


# -- protocol features ----------------------------------------------------------------------------------------------


def test_packets_larger_than_16_mib_cross_in_both_directions(start_dbmesh: Any, mariadb: MariaDB) -> None:
    mariadb.execute("SET GLOBAL max_allowed_packet = 67108864")
    proc = start_dbmesh()
    conn = connect(proc, max_allowed_packet=64 * 1024 * 1024)
    blob = os.urandom(20 * 1024 * 1024 + 12345)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS t_big")
        cur.execute("CREATE TABLE t_big (id INT PRIMARY KEY, b LONGBLOB)")
        cur.execute("INSERT INTO t_big VALUES (1, %s)", (blob,))
        cur.execute("SELECT b, LENGTH(b) FROM t_big WHERE id = 1")
        got, length = cur.fetchone()
    assert length == len(blob) and hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()


def test_use_show_databases_and_unknown_database(dbmesh: DbMeshProcess) -> None:
    conn = connect(dbmesh, database=None)
    with conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        assert [r[0] for r in cur.fetchall()] == ["dbmesh_test"]
        with pytest.raises(pymysql.err.OperationalError) as exc:
            cur.execute("USE nope")
        assert exc.value.args[0] == 1049
        cur.execute("USE dbmesh_test")
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone()[0] == "dbmesh_test"
    with pytest.raises(pymysql.err.OperationalError) as exc:
        connect(dbmesh, database="nope")
    assert exc.value.args[0] == 1049


def test_session_without_database_gets_no_database_selected(dbmesh: DbMeshProcess) -> None:
    conn = connect(dbmesh, database=None)
    assert scalar(conn, "SELECT DATABASE()") is None
    with pytest.raises(pymysql.MySQLError) as exc:
        scalar(conn, "SELECT * FROM some_table")
    assert exc.value.args[0] == 1046


def test_com_change_user_and_reset_connection(dbmesh: DbMeshProcess) -> None:
    mysqldb = pytest.importorskip("MySQLdb")
    conn = mysqldb.connect(host=dbmesh.host, port=dbmesh.port, user="root", password="rootpw",
                           database="dbmesh_test")
    cur = conn.cursor()
    cur.execute("SET @v = 5")
    conn.change_user("sha2user", "sha2pw", "dbmesh_test")
    cur = conn.cursor()
    cur.execute("SELECT @v, 1")
    assert cur.fetchone() == (None, 1)
    with pytest.raises(mysqldb.OperationalError) as exc:
        conn.change_user("root", "wrong", "dbmesh_test")
    assert exc.value.args[0] == 1045


def test_reset_connection_clears_session_state(dbmesh: DbMeshProcess) -> None:
    connector = pytest.importorskip("mysql.connector")
    conn = connector.connect(host=dbmesh.host, port=dbmesh.port, user="root", password="rootpw",
                             database="dbmesh_test", use_pure=True, ssl_disabled=True)
    cur = conn.cursor()
    cur.execute("SET @v = 5")
    cur.execute("SET SESSION sql_mode = 'ANSI_QUOTES'")
    conn.cmd_reset_connection()
    cur = conn.cursor()
    cur.execute("SELECT @v, @@session.sql_mode = @@global.sql_mode, DATABASE()")
    assert cur.fetchone() == (None, 1, "dbmesh_test")
    conn.close()


# -- observability and lifecycle --------------------------------------------------------------------------------------


def test_metrics_and_slow_query_log(start_dbmesh: Any) -> None:
    proc = start_dbmesh(slow_query_threshold_ms=200)
    conn = connect(proc)
    assert scalar(conn, "SELECT 1") == 1
    assert scalar(conn, "SELECT SLEEP(0.3)") == 0
    with pytest.raises(pymysql.MySQLError):
        scalar(conn, "SELECT * FROM no_such_table")
    with urllib.request.urlopen(f"http://{proc.host}:{proc.admin_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    labels = 'data_source="ds_0",database="dbmesh_test",type="select"'
    count = [line for line in text.splitlines() if line.startswith(f"dbmesh_statements_total{{{labels}}}")]
    assert count and float(count[0].split()[-1]) >= 3
    errs = [line for line in text.splitlines() if line.startswith(f"dbmesh_statement_errors_total{{{labels}}}")]
    assert errs and float(errs[0].split()[-1]) >= 1
    assert 'dbmesh_client_connections{protocol="mysql"}' in text
    assert "dbmesh_backend_connections" in text
    lines = [json.loads(line) for line in proc.slow_log_path.read_text().splitlines()]
    assert len(lines) == 1, lines
    entry = lines[0]
    assert entry["user"] == "root" and entry["database"] == "dbmesh_test"
    assert entry["digest"] == "SELECT SLEEP(?)" and entry["data_sources"] == ["ds_0"]
    assert entry["duration_ms"] >= 300 and entry["rows"] == 1


def test_sigterm_lets_running_statements_finish_then_exits(start_dbmesh: Any) -> None:
    proc = start_dbmesh()
    conn = connect(proc)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = scalar(conn, "SELECT SLEEP(1.5), 7")
        except pymysql.MySQLError as exc:
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.4)
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(pymysql.MySQLError):
        connect(proc)  # no longer accepting
    t.join(10)
    assert result.get("value") == 0, result
    assert proc.terminate(timeout=10) == 0
    assert_clean_log(proc)


def test_kill_query_uses_dbmesh_connection_ids(dbmesh: DbMeshProcess) -> None:
    """What the mysql client does on Ctrl-C: a second connection sends KILL QUERY <id from the handshake>."""
    victim = connect(dbmesh)
    victim_id = victim.thread_id()
    result: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            result["value"] = scalar(victim, "SELECT SLEEP(20)")
        except pymysql.MySQLError as exc:
            result["error"] = exc
        result["elapsed"] = time.monotonic() - started

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    killer = connect(dbmesh)
    with killer.cursor() as cur:
        cur.execute(f"KILL QUERY {victim_id}")
    t.join(10)
    # MariaDB answers an interrupted SLEEP() with 1 (or error 1317, depending on timing); either way it stopped.
    assert result["elapsed"] < 5, result
    assert result.get("value") == 1 or result["error"].args[0] == 1317, result
    assert scalar(victim, "SELECT 9") == 9  # the session goes on
    with pytest.raises(pymysql.MySQLError) as exc, killer.cursor() as cur:
        cur.execute("KILL QUERY 987654")
    assert exc.value.args[0] == 1094


def test_pool_lifetime_idle_timeout_and_dead_idle_connections(start_dbmesh: Any, mariadb: MariaDB) -> None:
    doc = database_config("dbmesh_test", mariadb, max_pool_size=4, min_pool_size=0)
    doc["dataSources"]["ds_0"].update(
        maxLifetimeMilliseconds=1500, idleTimeoutMilliseconds=600, healthCheckIntervalMilliseconds=300)
    proc = start_dbmesh(databases={"dbmesh_test": doc}, include_default_database=False)
    conn = connect(proc)
    first = scalar(conn, "SELECT CONNECTION_ID()")
    assert scalar(conn, "SELECT CONNECTION_ID()") == first  # the session keeps its connection
    time.sleep(1.7)
    second = scalar(conn, "SELECT CONNECTION_ID()")
    assert second != first  # replaced after maxLifetime, without an error
    conn.close()
    time.sleep(0.3)
    # An idle pooled connection that the server drops is never handed to a client.
    threads = [r[0] for r in mariadb.execute(
        "SELECT id FROM information_schema.processlist WHERE db = 'dbmesh_test' AND command = 'Sleep'"
        " AND user = 'root' AND id <> CONNECTION_ID()")]
    assert threads, "the released connection should be idle in the pool"
    for thread in threads:
        mariadb.execute(f"KILL {thread}")
    again = connect(proc)
    assert scalar(again, "SELECT 1") == 1
    again.close()
    # Idle connections above minPoolSize close after idleTimeout.
    deadline = time.monotonic() + 5
    while sum(p["total"] for p in health(proc)["pools"].values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sum(p["total"] for p in health(proc)["pools"].values()) == 0, health(proc)
    assert_clean_log(proc)
