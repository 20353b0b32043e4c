"""The PostgreSQL test support itself: the throwaway server starts, its logins use the authentication
methods the PostgreSQL client matrix relies on (SCRAM for postgres, MD5 for md5user), and it survives a
SIGKILL and a restart on the same data. Also the dbmesh config writer's PostgreSQL documents."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.support import PostgreSQL, PostgreSQLError, make_dbmesh_config, pg_database_config
from tests.support.postgres import MD5_PASSWORD, MD5_USER, PG_DATABASE


def _login_sqlstate(pg: PostgreSQL, user: str, password: str) -> str | None:
    """The SQLSTATE of a failed login (libpq, hence psycopg, does not expose it for connection errors)."""
    import asyncio

    import asyncpg

    async def go() -> str | None:
        try:
            conn = await asyncpg.connect(host=pg.host, port=pg.port, user=user, password=password,
                                         database=PG_DATABASE, ssl=False, timeout=10)
        except asyncpg.PostgresError as exc:
            return str(exc.sqlstate)
        await conn.close()
        return None

    return asyncio.run(go())


def _password_hash(pg: PostgreSQL, role: str) -> str:
    rows = pg.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", params=(role,))
    assert rows, f"role {role} missing"
    return str(rows[0][0])


def test_server_is_up_with_its_database(postgres: PostgreSQL) -> None:
    assert postgres.execute("SELECT current_database(), current_user", database=PG_DATABASE) == [
        (PG_DATABASE, postgres.user)
    ]
    version = postgres.execute("SHOW server_version_num")[0][0]
    assert int(version) >= 150000
    owner = postgres.execute(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", params=(PG_DATABASE,))
    assert owner == [(postgres.user,)]


def test_scram_login(postgres: PostgreSQL) -> None:
    if postgres.is_managed:
        assert _password_hash(postgres, postgres.user).startswith("SCRAM-SHA-256$")
    with postgres.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres.dsn(password="wrong"), connect_timeout=10)
    assert _login_sqlstate(postgres, postgres.user, "wrong") == "28P01"
    assert _login_sqlstate(postgres, postgres.user, postgres.password) is None


def test_md5_login(postgres: PostgreSQL) -> None:
    if not postgres.is_managed:
        pytest.skip("md5user is created only on the managed server")
    assert _password_hash(postgres, MD5_USER).startswith("md5")
    with psycopg.connect(postgres.dsn(user=MD5_USER, password=MD5_PASSWORD)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (MD5_USER,)
    # The hba lines for md5user say md5 (scram-sha-256 would refuse an MD5-hashed password).
    rules = postgres.execute("SELECT auth_method FROM pg_hba_file_rules WHERE %s = ANY(user_name) AND type = 'host'",
                             params=(MD5_USER,))
    assert {r[0] for r in rules} == {"md5"}
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres.dsn(user=MD5_USER, password="wrong"), connect_timeout=10)
    assert _login_sqlstate(postgres, MD5_USER, "wrong") == "28P01"
    assert _login_sqlstate(postgres, MD5_USER, MD5_PASSWORD) is None


def test_kill_and_restart(managed_postgres: PostgreSQL) -> None:
    pg = managed_postgres
    pg.execute("DROP TABLE IF EXISTS t_support_crash; CREATE TABLE t_support_crash (i int); "
               "INSERT INTO t_support_crash VALUES (1), (2)", database=PG_DATABASE)
    survivor = pg.connect()
    old_pid = pg.pid
    assert old_pid is not None
    pg.kill()
    assert pg.pid is None
    with pytest.raises(psycopg.OperationalError):
        survivor.execute("SELECT 1")
    survivor.close()
    pg.start()
    assert pg.pid not in (None, old_pid)
    assert pg.execute("SELECT count(*) FROM t_support_crash", database=PG_DATABASE) == [(2,)]
    pg.execute("DROP TABLE t_support_crash", database=PG_DATABASE)
    with psycopg.connect(pg.dsn(user=MD5_USER, password=MD5_PASSWORD)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_private_server_stop_and_destroy(tmp_path: Path, postgres: PostgreSQL) -> None:
    if not postgres.is_managed:
        pytest.skip("an external PostgreSQL is configured")
    with pytest.raises(PostgreSQLError, match="not searchable"):  # pytest's tmp_path is root-only
        PostgreSQL.managed_in(tmp_path / "pg").install() if os.geteuid() == 0 else pytest.skip("not root")
    pg = PostgreSQL.throwaway().start()
    assert pg.basedir is not None
    try:
        assert pg.execute("SELECT 1") == [(1,)]
        pg.stop()
        assert pg.pid is None
        pg.start()
        assert pg.execute("SELECT 2") == [(2,)]
    finally:
        pg.destroy()
    assert not pg.basedir.exists()


def test_config_writer_pg_databases(tmp_path: Path, postgres: PostgreSQL, mariadb: object) -> None:
    doc = pg_database_config("logical_pg", postgres, backend_database=PG_DATABASE, max_pool_size=2)
    assert doc["dataSources"]["ds_0"]["url"] == f"jdbc:postgresql://{postgres.host}:{postgres.port}/{PG_DATABASE}"
    assert (doc["dataSources"]["ds_0"]["username"], doc["dataSources"]["ds_0"]["password"]) == (
        postgres.user, postgres.password)
    cfg = make_dbmesh_config(tmp_path / "conf", mariadb, pg_databases={"pg_a": postgres, "pg_b": doc},
                             create_backend_databases=False)
    assert set(cfg.databases) == {"dbmesh_test", "pg_a", "pg_b"}
    written = yaml.safe_load((tmp_path / "conf" / "database-pg_a.yaml").read_text())
    assert written["dataSources"]["ds_0"]["url"].startswith("jdbc:postgresql://")
    assert written["dataSources"]["ds_0"]["url"].endswith("/pg_a")
    assert yaml.safe_load((tmp_path / "conf" / "database-pg_b.yaml").read_text()) == doc
    mysql_doc = yaml.safe_load((tmp_path / "conf" / "database-dbmesh_test.yaml").read_text())
    assert mysql_doc["dataSources"]["ds_0"]["url"].startswith("jdbc:mysql://")
