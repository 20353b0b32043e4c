"""A data source connection dies in the middle of a sharded statement: the client gets an error, the session and
everyone else keep being served, and nothing committed is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pymysql
import pytest

from tests.support import DbMeshProcess, MariaDB, PostgreSQL
from tests.support.sharded import (
    Tagged,
    inline_algorithm,
    run_statements,
    sharded_database,
    standard,
    start_sharded_dbmesh,
    write_sharded_config,
)

DB = "adv_sharded"
PHYSICAL = {"ds_0": "adv_ds_0", "ds_1": "adv_ds_1"}


def _rules() -> list[Tagged]:
    return [Tagged("SHARDING", {
        "tables": {"t_item": {"actualDataNodes": "ds_${0..1}.t_item", "databaseStrategy": standard("id", "by_id")}},
        "shardingAlgorithms": {"by_id": inline_algorithm("ds_${id % 2}")},
    })]


def _mesh(server: Any, dialect: str, tmp: Any) -> DbMeshProcess:
    config = write_sharded_config(tmp, server, {DB: sharded_database(DB, dialect, server, PHYSICAL, _rules())})
    for ds, db in PHYSICAL.items():
        n = int(ds[-1])
        run_statements(server, db, ["DROP TABLE IF EXISTS t_item", "CREATE TABLE t_item (id INT PRIMARY KEY, v INT)",
                                    f"INSERT INTO t_item VALUES ({n}, 1), ({n + 2}, 1)"])
    return start_sharded_dbmesh(config, postgresql=dialect == "postgresql")


@pytest.fixture(scope="module")
def mysql_mesh(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbMeshProcess]:
    proc = _mesh(mariadb, "mysql", tmp_path_factory.mktemp("adv-my"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def pg_mesh(postgres: PostgreSQL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbMeshProcess]:
    proc = _mesh(postgres, "postgresql", tmp_path_factory.mktemp("adv-pg"))
    yield proc
    proc.stop()


def _kill_when_running(kill: Any, deadline: float) -> threading.Thread:
    def worker() -> None:
        while time.monotonic() < deadline:
            if kill():
                return
            time.sleep(0.05)
    t = threading.Thread(target=worker, daemon=True)
    t.start()
    return t


def test_mysql_backend_killed_mid_scatter(mysql_mesh: DbMeshProcess, mariadb: MariaDB) -> None:
    def connect() -> Any:
        return pymysql.connect(host=mysql_mesh.host, port=mysql_mesh.port, user="root", password="rootpw",
                               database=DB, autocommit=True, read_timeout=30)

    victim, bystander = connect(), connect()
    admin = mariadb.connect(PHYSICAL["ds_1"])

    def kill() -> bool:
        with admin.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s AND info LIKE %s "
                        "AND id <> CONNECTION_ID()",
                        (PHYSICAL["ds_1"], "%SLEEP(%"))
            rows = cur.fetchall()
            for (thread,) in rows:
                cur.execute(f"KILL {int(thread)}")
            return bool(rows)

    killer = _kill_when_running(kill, time.monotonic() + 10)
    with pytest.raises(pymysql.err.OperationalError):
        with victim.cursor() as cur:
            cur.execute("SELECT id, SLEEP(3) FROM t_item ORDER BY id")
            cur.fetchall()
    killer.join()
    # Everyone keeps being served.
    with bystander.cursor() as cur:
        cur.execute("SELECT COUNT(*), SUM(v) FROM t_item")
        assert cur.fetchone() == (4, 4)
    # The error came before any row was sent, so the victim's own session goes on.
    with victim.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t_item")
        assert cur.fetchone() == (4,)
    victim.close()
    bystander.close()
    admin.close()


def test_pg_backend_terminated_mid_scatter(pg_mesh: DbMeshProcess, postgres: PostgreSQL) -> None:
    def connect() -> Any:
        return psycopg.connect(host=pg_mesh.host, port=pg_mesh.pg_port, user="root", password="rootpw", dbname=DB,
                               autocommit=True)

    victim, bystander = connect(), connect()
    admin = postgres.connect(PHYSICAL["ds_1"])

    def kill() -> bool:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                        "AND query LIKE %s AND pid <> pg_backend_pid()", (PHYSICAL["ds_1"], "%pg_sleep(%"))
            return bool(cur.fetchall())

    killer = _kill_when_running(kill, time.monotonic() + 10)
    with pytest.raises(psycopg.Error):
        victim.execute("SELECT id, pg_sleep(3) FROM t_item ORDER BY id").fetchall()
    killer.join()
    assert bystander.execute("SELECT COUNT(*), SUM(v) FROM t_item").fetchone() == (4, 4)
    assert victim.execute("SELECT COUNT(*) FROM t_item").fetchone() == (4,)
    victim.close()
    bystander.close()
    admin.close()
