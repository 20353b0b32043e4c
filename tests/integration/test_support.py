"""Tests of the test fixtures themselves: the throwaway MariaDB, config writing, the dbmesh runner."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.support import (
    DbMeshProcess,
    DbMeshStartError,
    MariaDB,
    UnmanagedServerError,
    free_port,
    free_ports,
    make_dbmesh_config,
    port_is_open,
)


def test_mariadb_accepts_root_over_tcp(mariadb: MariaDB) -> None:
    assert mariadb.execute("SELECT 1") == [(1,)]
    databases = {row[0] for row in mariadb.execute("SHOW DATABASES")}
    assert "dbmesh_test" in databases
    version = mariadb.execute("SELECT VERSION()")[0][0]
    assert "MariaDB" in version or mariadb.is_managed is False


def test_mariadb_connect_with_database(mariadb: MariaDB) -> None:
    conn = mariadb.connect("dbmesh_test")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT DATABASE()")
            assert cur.fetchone() == ("dbmesh_test",)
    finally:
        conn.close()


def test_mariadb_kill_and_restart_keeps_data(managed_mariadb: MariaDB) -> None:
    db = managed_mariadb
    db.execute("CREATE TABLE IF NOT EXISTS support_kill (id INT PRIMARY KEY, v VARCHAR(20))", "dbmesh_test")
    db.execute("REPLACE INTO support_kill VALUES (1, 'before-kill')", "dbmesh_test")
    old_pid, port = db.pid, db.port
    assert old_pid is not None

    db.kill()
    assert db.pid is None
    assert not port_is_open(db.host, port)
    with pytest.raises(Exception):  # noqa: B017 - any connection error will do
        db.connect(connect_timeout=1)

    db.start()
    assert db.port == port
    assert db.pid not in (None, old_pid)
    assert db.execute("SELECT v FROM support_kill WHERE id = 1", "dbmesh_test") == [("before-kill",)]


def test_mariadb_clean_stop_and_start(managed_mariadb: MariaDB) -> None:
    db = managed_mariadb
    db.stop()
    assert db.pid is None
    db.start()
    assert db.execute("SELECT 1") == [(1,)]


def test_private_mariadb_is_destroyed(start_mariadb, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = start_mariadb()
    assert db.execute("SELECT 2") == [(2,)]
    assert db.datadir.is_dir()


def test_unmanaged_server_refuses_kill() -> None:
    external = MariaDB(host="127.0.0.1", port=1, managed=False)
    assert not external.is_managed
    with pytest.raises(UnmanagedServerError, match="DBMESH_TEST_MYSQL_HOST"):
        external.kill()
    with pytest.raises(UnmanagedServerError):
        external.start()


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBMESH_TEST_MYSQL_HOST", raising=False)
    assert MariaDB.from_env() is None
    monkeypatch.setenv("DBMESH_TEST_MYSQL_HOST", "db.example")
    monkeypatch.setenv("DBMESH_TEST_MYSQL_PORT", "3307")
    monkeypatch.setenv("DBMESH_TEST_MYSQL_PASSWORD", "pw")
    db = MariaDB.from_env()
    assert db is not None
    assert (db.host, db.port, db.user, db.password, db.is_managed) == (
        "db.example",
        3307,
        "root",
        "pw",
        False,
    )


def test_free_ports_are_distinct_and_closed() -> None:
    ports = [*free_ports(5), free_port()]
    assert len(set(ports)) == 6
    assert not any(port_is_open("127.0.0.1", p) for p in ports)


def test_make_dbmesh_config_defaults(tmp_path: Path, mariadb: MariaDB) -> None:
    cfg = make_dbmesh_config(tmp_path / "conf", mariadb)
    global_doc = yaml.safe_load((cfg.config_dir / "global.yaml").read_text())
    db_doc = yaml.safe_load((cfg.config_dir / "database-dbmesh_test.yaml").read_text())

    users = {u["user"]: u for u in global_doc["authority"]["users"]}
    assert users["root@%"]["password"] == "rootpw"
    assert users["sha2user@%"]["authenticationMethodName"] == "caching_sha2_password"
    assert global_doc["props"] == {}
    section = global_doc["dbmesh"]
    assert section["listeners"]["mysql"] == {"host": "127.0.0.1", "port": cfg.port}
    assert section["listeners"]["postgresql"] == {"host": "127.0.0.1", "port": cfg.pg_port}
    assert section["admin"] == {"host": "127.0.0.1", "port": cfg.admin_port}
    assert len({cfg.port, cfg.pg_port, cfg.admin_port}) == 3
    assert section["tls"] == {"enabled": True}
    assert section["slowQueryLog"] == {"thresholdMilliseconds": 1000, "path": str(cfg.slow_log_path)}
    assert section["limits"] == {
        "maxPacketSize": 67108864,
        "maxConnections": 10000,
        "authTimeoutSeconds": 10,
        "shutdownTimeoutSeconds": 30,
    }
    assert "multiplexing" not in section

    assert db_doc == {
        "databaseName": "dbmesh_test",
        "dataSources": {
            "ds_0": {
                "url": f"jdbc:mysql://{mariadb.host}:{mariadb.port}/dbmesh_test",
                "username": mariadb.user,
                "password": mariadb.password,
                "maxPoolSize": 50,
                "minPoolSize": 1,
            }
        },
        "rules": [],
    }
    assert cfg.databases["dbmesh_test"] == db_doc


def test_make_dbmesh_config_overrides(tmp_path: Path, mariadb: MariaDB) -> None:
    sharded = {"databaseName": "sharded", "dataSources": {}, "rules": [{"!SHARDING": {"tables": {}}}]}
    cfg = make_dbmesh_config(
        tmp_path / "conf",
        mariadb,
        extra_users=[{"user": "app@%", "password": "apppw"}],
        limits={"maxConnections": 5},
        multiplexing={"enabled": True},
        max_pool_size=3,
        tls=False,
        databases={"support_extra": None, "sharded": sharded},
        global_overrides={"props": {"sql-show": True}},
    )
    global_doc = yaml.safe_load((cfg.config_dir / "global.yaml").read_text())
    assert [u["user"] for u in global_doc["authority"]["users"]] == ["root@%", "sha2user@%", "app@%"]
    assert global_doc["dbmesh"]["limits"]["maxConnections"] == 5
    assert global_doc["dbmesh"]["limits"]["maxPacketSize"] == 67108864  # merged, not replaced
    assert global_doc["dbmesh"]["multiplexing"] == {"enabled": True}
    assert global_doc["dbmesh"]["tls"] == {"enabled": False}
    assert global_doc["props"] == {"sql-show": True}
    names = sorted(p.name for p in cfg.config_dir.glob("database-*.yaml"))
    assert names == ["database-dbmesh_test.yaml", "database-sharded.yaml", "database-support_extra.yaml"]
    extra = yaml.safe_load((cfg.config_dir / "database-support_extra.yaml").read_text())
    assert extra["dataSources"]["ds_0"]["maxPoolSize"] == 3
    assert extra["dataSources"]["ds_0"]["url"].endswith("/support_extra")
    assert yaml.safe_load((cfg.config_dir / "database-sharded.yaml").read_text()) == sharded
    assert ("support_extra",) in mariadb.execute("SHOW DATABASES")  # backend database was created

    # Rewriting the directory without the extra databases removes their files.
    make_dbmesh_config(tmp_path / "conf", mariadb, port=cfg.port)
    assert [p.name for p in cfg.config_dir.glob("database-*.yaml")] == ["database-dbmesh_test.yaml"]


# -- the dbmesh runner, exercised with stand-in servers (dbmesh itself is tested elsewhere) --------


def _fake_python(tmp_path: Path, body: str) -> str:
    """An executable that ignores ``-m dbmesh serve --config DIR`` except DIR, and runs ``body``."""
    script = tmp_path / "fake-python"
    script.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            """\
            import os, signal, socket, sys, time, yaml
            conf = sys.argv[sys.argv.index("--config") + 1]
            g = yaml.safe_load(open(os.path.join(conf, "global.yaml")))
            port = g["dbmesh"]["listeners"]["mysql"]["port"]
            """
        )
        + textwrap.dedent(body)
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_dbmesh_runner_reports_early_exit(tmp_path: Path, mariadb: MariaDB) -> None:
    cfg = make_dbmesh_config(tmp_path / "conf", mariadb)
    python = _fake_python(tmp_path, 'print("config rejected: boom", file=sys.stderr)\nsys.exit(3)\n')
    with pytest.raises(DbMeshStartError, match=r"(?s)exited with 3.*config rejected: boom"):
        DbMeshProcess(cfg, python=python).start(timeout=10)


def test_dbmesh_runner_start_rss_terminate(tmp_path: Path, mariadb: MariaDB) -> None:
    cfg = make_dbmesh_config(tmp_path / "conf", mariadb)
    python = _fake_python(
        tmp_path,
        """\
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        time.sleep(0.3)  # readiness must wait for the port, not for the process
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port)); s.listen()
        print("listening", file=sys.stderr, flush=True)
        while True:
            time.sleep(0.1)
        """,
    )
    proc = DbMeshProcess(cfg, python=python).start(timeout=10)
    try:
        assert proc.is_running()
        assert port_is_open(proc.host, proc.port)
        assert proc.rss_bytes() > 1_000_000
        assert (proc.admin_port, proc.pg_port, proc.config_dir) == (
            cfg.admin_port,
            cfg.pg_port,
            cfg.config_dir,
        )
        assert proc.terminate(timeout=10) == 0
        assert "listening" in proc.stderr_text()
    finally:
        proc.stop()
    assert not proc.is_running()


def test_dbmesh_runner_stop_escalates_to_sigkill(tmp_path: Path, mariadb: MariaDB) -> None:
    cfg = make_dbmesh_config(tmp_path / "conf", mariadb)
    python = _fake_python(
        tmp_path,
        """\
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        s = socket.socket(); s.bind(("127.0.0.1", port)); s.listen()
        while True:
            time.sleep(0.1)
        """,
    )
    proc = DbMeshProcess(cfg, python=python).start(timeout=10)
    assert proc.stop(timeout=0.5) == -signal.SIGKILL
    assert not proc.is_running()


async def test_async_tests_run_on_a_recording_loop() -> None:
    loop = asyncio.get_running_loop()
    expected = os.environ.get("DBMESH_TEST_LOOPS", "uvloop")
    if expected == "uvloop":
        assert type(loop).__module__.startswith("uvloop")
    assert loop.get_exception_handler() is not None


# -- the real dbmesh --------------------------------------------------------------------------------


def test_dbmesh_fixture_serves_queries(dbmesh: DbMeshProcess) -> None:
    import pymysql

    conn = pymysql.connect(
        host=dbmesh.host,
        port=dbmesh.port,
        user="root",
        password="rootpw",
        database="dbmesh_test",
        connect_timeout=10,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchall() == ((1,),)
    finally:
        conn.close()
    assert dbmesh.is_running()
    assert dbmesh.rss_bytes() > 1_000_000
    assert port_is_open(dbmesh.host, dbmesh.admin_port)


def test_start_dbmesh_factory_and_sigterm(start_dbmesh) -> None:  # type: ignore[no-untyped-def]
    proc = start_dbmesh(limits={"maxConnections": 7})
    assert proc.is_running()
    assert proc.terminate() == 0
    assert not port_is_open(proc.host, proc.port)
