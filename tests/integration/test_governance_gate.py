"""Statement gate through real clients: compute-node and cluster states, circuit breakers on a killed data source,
and a QPS rate limit under five times its load, on MySQL and PostgreSQL listeners."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml

from tests.support import DbMeshProcess, MariaDB, PostgreSQL
from tests.support.sharded import (
    Tagged,
    dump_yaml,
    inline_algorithm,
    run_statements,
    sharded_database,
    standard,
    start_sharded_dbmesh,
    write_sharded_config,
)

DB = "gov_gate"
PHYSICAL = {"ds_0": "gov_gate_0", "ds_1": "gov_gate_1"}


def _sharding() -> Tagged:
    return Tagged("SHARDING", {
        "tables": {"t_item": {"actualDataNodes": "ds_${0..1}.t_item", "databaseStrategy": standard("id", "by_id")}},
        "shardingAlgorithms": {"by_id": inline_algorithm("ds_${id % 2}")},
    })


def _my(proc: DbMeshProcess, database: str = DB) -> Any:
    return pymysql.connect(host=proc.host, port=proc.port, user="root", password="rootpw", database=database,
                           autocommit=True, connect_timeout=10, read_timeout=30)


def _pg(proc: DbMeshProcess, database: str = DB) -> Any:
    return psycopg.connect(host=proc.host, port=proc.pg_port, user="root", password="rootpw", dbname=database,
                           autocommit=True, connect_timeout=10)


def _mysql_errno(fn: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(pymysql.MySQLError) as info:
        fn()
    return int(info.value.args[0]), str(info.value.args[1])


def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


@pytest.fixture
def states_mesh(mariadb: MariaDB, postgres: PostgreSQL, tmp_path: Path) -> Iterator[DbMeshProcess]:
    config = write_sharded_config(
        tmp_path / "conf", mariadb, {DB: sharded_database(DB, "mysql", mariadb, PHYSICAL, [_sharding()])},
        pg_databases={"gov_gate_pg": postgres})
    for db in PHYSICAL.values():
        run_statements(mariadb, db, ["DROP TABLE IF EXISTS t_item", "CREATE TABLE t_item (id INT PRIMARY KEY, v INT)"])
    run_statements(postgres, "gov_gate_pg", ["DROP TABLE IF EXISTS t_pg", "CREATE TABLE t_pg (id INT PRIMARY KEY)"])
    proc = start_sharded_dbmesh(config, postgresql=True)
    yield proc
    proc.stop()


def test_cluster_read_only_refuses_writes_everywhere_and_reads_go_on(states_mesh: DbMeshProcess) -> None:
    my, pg = _my(states_mesh), _pg(states_mesh, "gov_gate_pg")
    try:
        with my.cursor() as cur:
            cur.execute("INSERT INTO t_item (id, v) VALUES (1, 1), (2, 2)")
        pg.execute("INSERT INTO t_pg VALUES (1)")
        with my.cursor() as cur:
            cur.execute('LOCK CLUSTER WITH LOCK_STRATEGY(TYPE="WRITE")')
        assert _rows(my, "SHOW CLUSTER STATE") == [("READ_ONLY",)]
        errno, message = _mysql_errno(lambda: my.cursor().execute("INSERT INTO t_item (id, v) VALUES (3, 3)"))
        assert errno == 1290 and "READ_ONLY" in message and "INSERT" in message
        errno, _ = _mysql_errno(lambda: my.cursor().execute("UPDATE t_item SET v = 9 WHERE id = 1"))
        assert errno == 1290
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as pg_info:
            pg.execute("INSERT INTO t_pg VALUES (2)")
        assert "READ_ONLY" in str(pg_info.value)
        # Reads keep working on both listeners, and the session keeps working after each refusal.
        assert _rows(my, "SELECT id, v FROM t_item ORDER BY id") == [(1, 1), (2, 2)]
        assert pg.execute("SELECT id FROM t_pg").fetchall() == [(1,)]
        with my.cursor() as cur:
            cur.execute("UNLOCK CLUSTER")
        with my.cursor() as cur:
            cur.execute("INSERT INTO t_item (id, v) VALUES (3, 3)")
        pg.execute("INSERT INTO t_pg VALUES (2)")
        assert _rows(my, "SELECT COUNT(*) FROM t_item") == [(3,)]
        assert pg.execute("SELECT COUNT(*) FROM t_pg").fetchall() == [(2,)]
    finally:
        my.close()
        pg.close()


def test_disabled_compute_node_refuses_every_statement_until_enabled(states_mesh: DbMeshProcess) -> None:
    my, pg = _my(states_mesh), _pg(states_mesh, "gov_gate_pg")
    try:
        nodes = _rows(my, "SHOW COMPUTE NODES")
        assert len(nodes) == 1 and nodes[0][2] == "OK" and nodes[0][3] == "Standalone"
        node_id = nodes[0][0]
        with my.cursor() as cur:
            cur.execute(f"DISABLE COMPUTE NODE '{node_id}'")
        errno, message = _mysql_errno(lambda: my.cursor().execute("SELECT 1"))
        assert errno == 30003 and node_id in message
        with pytest.raises(psycopg.errors.CannotConnectNow):
            pg.execute("SELECT 1")
        # A new client is refused at its first statement (PyMySQL's SET NAMES while connecting).
        errno, _ = _mysql_errno(lambda: _my(states_mesh))
        assert errno == 30003
        # Governance DistSQL still answers, so the node can be enabled again through itself.
        assert _rows(my, "SHOW COMPUTE NODES")[0][2] == "DISABLED"
        with my.cursor() as cur:
            cur.execute(f"ENABLE COMPUTE NODE '{node_id}'")
        assert _rows(my, "SELECT 1") == [(1,)]
        assert pg.execute("SELECT 1").fetchall() == [(1,)]
    finally:
        my.close()
        pg.close()


def test_dist_variables_show_and_set(states_mesh: DbMeshProcess) -> None:
    my = _my(states_mesh)
    try:
        rows = dict(_rows(my, "SHOW DIST VARIABLES"))
        assert rows["max_connections_size_per_query"] == "1" and rows["cluster_state"] == "OK"
        assert _rows(my, "SHOW DIST VARIABLES LIKE 'sql_sh%'") == [("sql_show", "false")]
        # A standalone change rebuilds from the files loaded at start, not from what the directory holds now.
        (states_mesh.config_dir / "database-half_edited.yaml").write_text("databaseName: [\n")
        with my.cursor() as cur:
            cur.execute("SET DIST VARIABLE max_connections_size_per_query = 4")
        assert _rows(my, "SHOW DIST VARIABLE WHERE NAME = max_connections_size_per_query") == [
            ("max_connections_size_per_query", "4")]
        errno, message = _mysql_errno(lambda: my.cursor().execute("SET DIST VARIABLE no_such_thing = 1"))
        assert errno == 30006 and "no_such_thing" in message
        # A value the prop does not accept is refused by the same validation a pushed configuration gets.
        errno, message = _mysql_errno(
            lambda: my.cursor().execute("SET DIST VARIABLE max_connections_size_per_query = 0"))
        assert "max-connections-size-per-query" in message
        assert _rows(my, "SHOW DIST VARIABLE WHERE NAME = max_connections_size_per_query") == [
            ("max_connections_size_per_query", "4")]
        # The new props are in force for statements: a scatter query still answers exactly.
        with my.cursor() as cur:
            cur.execute("INSERT INTO t_item (id, v) VALUES (10, 1), (11, 2), (12, 3)")
        assert _rows(my, "SELECT SUM(v) FROM t_item") == [(6,)]
    finally:
        my.close()


# -- circuit breakers -----------------------------------------------------------------------------------------------


def _breaker_rule(open_s: int) -> Tagged:
    return Tagged("TRAFFIC", {"circuitBreakers": [{
        "resource": "ds_1", "grade": "ERROR_COUNT", "count": 1, "timeWindow": open_s, "minRequestAmount": 1,
        "statIntervalMs": 10000}]})


def _with_global_rules(config: Any, *rules: Tagged) -> Any:
    """Add tagged global rules to a written config's global.yaml (the config writer dumps plain YAML only)."""
    path = config.config_dir / "global.yaml"
    document = yaml.safe_load(path.read_text())
    document["rules"] = list(rules)
    path.write_text(dump_yaml(document))
    return config


def test_breaker_opens_on_a_killed_data_source_half_opens_and_closes(
        mariadb: MariaDB, start_mariadb: Callable[..., MariaDB], tmp_path: Path) -> None:
    victim = start_mariadb()
    victim.ensure_database("gov_brk_1")
    mariadb.ensure_database("gov_brk_0")
    document = {
        "databaseName": "gov_brk",
        "dataSources": {
            "ds_0": {"url": f"jdbc:mysql://{mariadb.host}:{mariadb.port}/gov_brk_0", "username": mariadb.user,
                     "password": mariadb.password, "maxPoolSize": 10, "connectTimeoutMilliseconds": 1000},
            "ds_1": {"url": f"jdbc:mysql://{victim.host}:{victim.port}/gov_brk_1", "username": victim.user,
                     "password": victim.password, "maxPoolSize": 10, "connectTimeoutMilliseconds": 1000},
        },
        "rules": [_sharding()],
    }
    config = _with_global_rules(write_sharded_config(tmp_path / "conf", mariadb, {"gov_brk": document}),
                                _breaker_rule(open_s=2))
    for server, db in ((mariadb, "gov_brk_0"), (victim, "gov_brk_1")):
        run_statements(server, db, ["DROP TABLE IF EXISTS t_item", "CREATE TABLE t_item (id INT PRIMARY KEY, v INT)"])
    proc = start_sharded_dbmesh(config, postgresql=False)
    try:
        conn = _my(proc, "gov_brk")
        with conn.cursor() as cur:
            cur.execute("INSERT INTO t_item (id, v) VALUES (0, 0), (1, 1)")  # id 0 -> ds_0, id 1 -> ds_1
        victim.kill()
        codes = []
        for _ in range(4):
            errno, message = _mysql_errno(lambda: _my(proc, "gov_brk").cursor().execute(
                "SELECT v FROM t_item WHERE id = 1"))
            codes.append(errno)
        # More than `count` (1) backend failures in the window, i.e. two lost or refused connections, trip it (Sentinel
        # compares with >); from then on statements for ds_1 fail fast with the breaker's error.
        assert set(codes[:2]) <= {1105, 1158} and codes[2:] == [30001, 30001], codes
        errno, message = _mysql_errno(lambda: _my(proc, "gov_brk").cursor().execute(
            "SELECT v FROM t_item WHERE id = 3"))
        assert errno == 30001 and "ds_1" in message
        started = time.monotonic()
        _mysql_errno(lambda: _my(proc, "gov_brk").cursor().execute("SELECT v FROM t_item WHERE id = 1"))
        assert time.monotonic() - started < 0.5  # fail fast: no connect attempt
        # Statements for the other data source are unaffected.
        ok = _my(proc, "gov_brk")
        assert _rows(ok, "SELECT v FROM t_item WHERE id = 0") == [(0,)]
        state = {r[0]: r[2] for r in _rows(ok, "SHOW CIRCUIT BREAKERS")}
        assert state["gov_brk.ds_1"] == "OPEN"
        # After the open time the next statement is the probe: the data source is still down, so it re-opens.
        time.sleep(2.2)
        errno, _ = _mysql_errno(lambda: _my(proc, "gov_brk").cursor().execute("SELECT v FROM t_item WHERE id = 1"))
        assert errno in (1105, 1158)
        assert {r[0]: r[2] for r in _rows(ok, "SHOW CIRCUIT BREAKERS")}["gov_brk.ds_1"] == "OPEN"
        victim.start()
        time.sleep(2.2)
        # Back: the probe succeeds and closes the breaker; every statement works again.
        assert _rows(_my(proc, "gov_brk"), "SELECT v FROM t_item WHERE id = 1") == [(1,)]
        assert {r[0]: r[2] for r in _rows(ok, "SHOW CIRCUIT BREAKERS")}["gov_brk.ds_1"] == "CLOSED"
        assert _rows(ok, "SELECT COUNT(*) FROM t_item") == [(2,)]
        metrics = _metrics(proc)
        assert 'dbmesh_circuit_breaker_state{resource="gov_brk.ds_1"} 0.0' in metrics
        assert 'dbmesh_circuit_breaker_transitions_total{resource="gov_brk.ds_1",to="OPEN"}' in metrics
    finally:
        proc.stop()


def _metrics(proc: DbMeshProcess) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://{proc.host}:{proc.admin_port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


# -- rate limits ----------------------------------------------------------------------------------------------------


def _offer(proc: DbMeshProcess, connect: Callable[[], Any], run: Callable[[Any], None], qps: float,
           seconds: float, threads: int) -> list[tuple[float, bool]]:
    """Send `qps` statements per second for `seconds` from `threads` connections; (time, passed) per statement.
    Any failure other than the rate limit's refusal fails the test (raised here, not lost in a thread)."""
    results: list[tuple[float, bool]] = []
    unexpected: list[BaseException] = []
    lock = threading.Lock()
    t0 = time.monotonic() + 0.2
    interval = threads / qps

    def send(k: int, conn: Any) -> None:
        i = 0
        while True:
            due = t0 + (i + k / threads) * interval
            if due - t0 >= seconds:
                return
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                run(conn)
                ok = True
            except (pymysql.MySQLError, psycopg.Error) as exc:
                if "rate limit" not in str(exc):
                    raise
                ok = False
            with lock:
                results.append((time.monotonic() - t0, ok))
            i += 1

    def worker(k: int) -> None:
        try:
            conn = connect()
            try:
                send(k, conn)
            finally:
                conn.close()
        except Exception as exc:  # reported by the main thread: an exception in a thread fails nothing
            unexpected.append(exc)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not unexpected, unexpected[:3]
    return results


@pytest.mark.parametrize("protocol", ["mysql", "postgresql"])
def test_qps_limit_holds_within_ten_percent_under_five_times_the_load(
        protocol: str, mariadb: MariaDB, postgres: PostgreSQL, tmp_path: Path) -> None:
    limit = 20
    traffic = Tagged("TRAFFIC", {"flowRules": [
        {"resource": "user:limited", "grade": "QPS", "count": limit, "controlBehavior": "REJECT"}]})
    users = [{"user": "root@%", "password": "rootpw"}, {"user": "limited@%", "password": "pw"}]
    if protocol == "mysql":
        config = write_sharded_config(tmp_path / "conf", mariadb, {}, include_default_database=True, users=users)
    else:
        config = write_sharded_config(tmp_path / "conf", mariadb, {}, users=users, pg_databases={"gov_rl_pg": postgres})
    _with_global_rules(config, traffic)
    proc = start_sharded_dbmesh(config, postgresql=protocol == "postgresql")
    try:
        def connect() -> Any:
            if protocol == "mysql":
                return pymysql.connect(host=proc.host, port=proc.port, user="limited", password="pw",
                                       database="dbmesh_test", autocommit=True)
            return psycopg.connect(host=proc.host, port=proc.pg_port, user="limited", password="pw",
                                   dbname="gov_rl_pg", autocommit=True)

        def run(conn: Any) -> None:
            if protocol == "mysql":
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchall()
            else:
                conn.execute("SELECT 1").fetchall()

        seconds = 6.0
        results = _offer(proc, connect, run, qps=5 * limit, seconds=seconds, threads=5)
        assert len(results) >= 0.9 * 5 * limit * seconds  # the client really offered 5x the limit
        # Steady state (after the first second's burst allowance): passes per second within 10% of the limit.
        steady = [ok for t, ok in results if 1.0 <= t < seconds]
        rate = sum(steady) / (seconds - 1.0)
        assert abs(rate - limit) <= 0.1 * limit, (rate, len(steady))
        # An unlimited user is not affected, and rejections are counted in the metrics.
        other = _my(proc, "dbmesh_test") if protocol == "mysql" else _pg(proc, "gov_rl_pg")
        try:
            for _ in range(50):
                run(other)
        finally:
            other.close()
        assert 'dbmesh_rate_limit_rejected_total{resource="user:limited"}' in _metrics(proc)
    finally:
        proc.stop()


@pytest.mark.parametrize("database", ["gov_gate_pg", "gov_gate_pg_sharded"])
def test_postgresql_extended_protocol_and_pipelines_under_read_only(
        database: str, postgres: PostgreSQL, tmp_path: Path) -> None:
    physical = {"ds_0": "gov_gate_pg_0", "ds_1": "gov_gate_pg_1"}
    config = write_sharded_config(
        tmp_path / "conf", postgres,
        {"gov_gate_pg_sharded": sharded_database("gov_gate_pg_sharded", "postgresql", postgres, physical,
                                                 [_sharding()])},
        pg_databases={"gov_gate_pg": postgres})
    for db in (*physical.values(), "gov_gate_pg"):
        run_statements(postgres, db, ["DROP TABLE IF EXISTS t_item",
                                      "CREATE TABLE t_item (id INT PRIMARY KEY, v INT)"])
    proc = start_sharded_dbmesh(config, postgresql=True)
    try:
        conn = _pg(proc, database)
        conn.execute("INSERT INTO t_item (id, v) VALUES (%s, %s)", (1, 10), prepare=True)
        conn.execute("SET CLUSTER STATE READ_ONLY")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO t_item (id, v) VALUES (%s, %s)", (2, 20), prepare=True)
        assert conn.execute("SELECT v FROM t_item WHERE id = %s", (1,), prepare=True).fetchall() == [(10,)]
        # A pipeline: the refused write fails alone; the reads around it are answered in order.
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            with conn.pipeline():
                first = conn.execute("SELECT v FROM t_item WHERE id = %s", (1,))
                conn.execute("INSERT INTO t_item (id, v) VALUES (%s, %s)", (3, 30))
        assert first.fetchall() == [(10,)]
        with conn.pipeline():
            reads = [conn.execute("SELECT v + %s FROM t_item WHERE id = 1", (k,)) for k in range(5)]
        assert [r.fetchall() for r in reads] == [[(10 + k,)] for k in range(5)]
        # In a transaction: the refusal fails it as the server would (sharded) or leaves it as it is (one data
        # source, whose transaction dbmesh did not touch); ROLLBACK ends it either way.
        conn.autocommit = False
        conn.execute("SELECT 1")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("UPDATE t_item SET v = 0 WHERE id = 1")
        conn.rollback()
        conn.autocommit = True
        conn.execute("SET CLUSTER STATE OK")
        conn.execute("INSERT INTO t_item (id, v) VALUES (%s, %s)", (2, 20), prepare=True)
        assert conn.execute("SELECT COUNT(*) FROM t_item").fetchall() == [(2,)]
        conn.close()
    finally:
        proc.stop()


def test_result_sets_dbmesh_writes_itself_carry_mariadb_extended_metadata(states_mesh: DbMeshProcess) -> None:
    """MariaDB Connector/C (mysqlclient) negotiates extended column metadata: every column definition dbmesh builds
    itself must carry it, or the client reads a malformed packet."""
    import MySQLdb

    conn = MySQLdb.connect(host=states_mesh.host, port=states_mesh.port, user="root", password="rootpw",
                           database=DB)
    try:
        cur = conn.cursor()
        cur.execute("SHOW DATABASES")
        assert {r[0] for r in cur.fetchall()} >= {DB, "gov_gate_pg"}
        cur.execute("SHOW COMPUTE NODES")
        assert cur.fetchall()[0][2] == "OK" and cur.description[0][0] == "instance_id"
        cur.execute("SHOW DIST VARIABLES LIKE 'sql_show'")
        assert cur.fetchall() == (("sql_show", "false"),)
        cur.execute("SHOW SHARDING TABLE RULES")
        assert [r[0] for r in cur.fetchall()] == ["t_item"]
        cur.execute("SELECT COUNT(*) FROM t_item")
        assert cur.fetchall() == ((0,),)
    finally:
        conn.close()


def test_postgresql_breaker_opens_on_a_killed_data_source_and_closes_when_it_is_back(
        postgres: PostgreSQL, tmp_path: Path) -> None:
    if not postgres.is_managed:
        pytest.skip("needs a PostgreSQL this test may start (DBMESH_TEST_PG_* names an external one)")
    victim = PostgreSQL.throwaway()
    victim.start()
    try:
        victim.ensure_database("gov_pgbrk_1")
        postgres.ensure_database("gov_pgbrk_0")
        document = {
            "databaseName": "gov_pgbrk",
            "dataSources": {
                "ds_0": {"url": f"jdbc:postgresql://{postgres.host}:{postgres.port}/gov_pgbrk_0",
                         "username": postgres.user, "password": postgres.password, "maxPoolSize": 10,
                         "connectTimeoutMilliseconds": 1000},
                "ds_1": {"url": f"jdbc:postgresql://{victim.host}:{victim.port}/gov_pgbrk_1",
                         "username": victim.user, "password": victim.password, "maxPoolSize": 10,
                         "connectTimeoutMilliseconds": 1000},
            },
            "rules": [_sharding()],
        }
        config = _with_global_rules(write_sharded_config(tmp_path / "conf", postgres, {"gov_pgbrk": document}),
                                    _breaker_rule(open_s=2))
        for server, db in ((postgres, "gov_pgbrk_0"), (victim, "gov_pgbrk_1")):
            run_statements(server, db, ["DROP TABLE IF EXISTS t_item",
                                        "CREATE TABLE t_item (id INT PRIMARY KEY, v INT)"])
        proc = start_sharded_dbmesh(config, postgresql=True)
        try:
            with _pg(proc, "gov_pgbrk") as conn:
                conn.execute("INSERT INTO t_item (id, v) VALUES (0, 0), (1, 1)")
            victim.kill()
            states = []
            for _ in range(4):
                with _pg(proc, "gov_pgbrk") as conn:
                    try:
                        conn.execute("SELECT v FROM t_item WHERE id = 1")
                        states.append("ok")
                    except psycopg.Error as exc:
                        states.append(exc.sqlstate or "")
            # Two backend failures (08xxx) trip it; then the breaker answers 57P03 naming the data source.
            assert all(s.startswith("08") for s in states[:2]) and states[2:] == ["57P03", "57P03"], states
            with _pg(proc, "gov_pgbrk") as conn, pytest.raises(psycopg.errors.CannotConnectNow) as info:
                conn.execute("SELECT v FROM t_item WHERE id = 3")
            assert "ds_1" in str(info.value)
            with _pg(proc, "gov_pgbrk") as conn:
                assert conn.execute("SELECT v FROM t_item WHERE id = 0").fetchall() == [(0,)]
            victim.start()
            time.sleep(2.2)
            with _pg(proc, "gov_pgbrk") as conn:
                assert conn.execute("SELECT v FROM t_item WHERE id = 1").fetchall() == [(1,)]
                assert conn.execute("SELECT COUNT(*) FROM t_item").fetchall() == [(2,)]
            assert 'dbmesh_circuit_breaker_state{resource="gov_pgbrk.ds_1"} 0.0' in _metrics(proc)
        finally:
            proc.stop()
    finally:
        victim.destroy()
