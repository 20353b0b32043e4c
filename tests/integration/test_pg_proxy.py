"""The PostgreSQL proxy against a real PostgreSQL: prepared statements and settings over shared connections,
pinned state, backend failure, pgbench through a pool smaller than the client count."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Any

import psycopg
import pytest

from tests.support import DbMeshProcess, pg_database_config

PG_DB = "dbmesh_pg"


def dsn(proc: DbMeshProcess, **kw: Any) -> str:
    parts = {"host": proc.host, "port": proc.pg_port, "user": "root", "password": "rootpw", "dbname": PG_DB,
             "sslmode": "disable", **kw}
    return " ".join(f"{k}={v}" for k, v in parts.items())


def small_pool(postgres: Any, size: int = 2) -> dict[str, Any]:
    return {"pg_databases": {PG_DB: pg_database_config(PG_DB, postgres, max_pool_size=size, min_pool_size=0)}}


def assert_clean_log(proc: DbMeshProcess) -> None:
    text = proc.stderr_text()
    assert "Traceback" not in text and "[BUG]" not in text, text[-4000:]


def test_prepared_statements_survive_moving_between_shared_connections(start_pg_dbmesh: Any, postgres: Any) -> None:
    """Six clients, two backend connections: every client's server-side prepared statements keep working while
    multiplexing hands connections around (they are re-prepared where needed)."""
    proc = start_pg_dbmesh(**small_pool(postgres))
    conns = [psycopg.connect(dsn(proc), autocommit=True, prepare_threshold=0) for _ in range(6)]
    for i, c in enumerate(conns):
        c.execute(f"SET application_name = 'client{i}'")
    for round_ in range(4):
        for i, c in enumerate(conns):
            row = c.execute("SELECT %s::int * 10 + %s::int, current_setting('application_name')",
                            (i, round_), prepare=True).fetchone()
            assert row == (i * 10 + round_, f"client{i}")
    # Each client really used a named statement (psycopg prepares on the server with prepare=True).
    names = conns[0].execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
    assert names is not None and names[0] >= 1
    for c in conns:
        c.close()
    assert_clean_log(proc)


def test_protocol_statement_names_deallocate_and_discard(start_pg_dbmesh: Any, postgres: Any) -> None:
    proc = start_pg_dbmesh(**small_pool(postgres))
    conn = psycopg.connect(dsn(proc), autocommit=True)
    pg = conn.pgconn
    res = pg.prepare(b"s1", b"SELECT $1::int + 1")
    assert res.status == psycopg.pq.ExecStatus.COMMAND_OK
    res = pg.exec_prepared(b"s1", [b"41"])
    assert res.get_value(0, 0) == b"42"
    # The name is taken: the server's own refusal comes back.
    res = pg.prepare(b"s1", b"SELECT 2")
    assert res.status == psycopg.pq.ExecStatus.FATAL_ERROR
    assert res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42P05"
    res = pg.exec_(b"DEALLOCATE s1")
    assert res.status == psycopg.pq.ExecStatus.COMMAND_OK and res.command_status == b"DEALLOCATE"
    res = pg.exec_prepared(b"s1", [b"1"])
    assert res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"26000"  # gone for this client
    assert pg.prepare(b"s1", b"SELECT $1::text").status == psycopg.pq.ExecStatus.COMMAND_OK
    res = pg.exec_(b"DISCARD ALL")
    assert res.command_status == b"DISCARD ALL"
    res = pg.exec_prepared(b"s1", [b"x"])
    assert res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"26000"
    conn.close()
    assert_clean_log(proc)


def test_settings_startup_parameters_and_reset_over_shared_connections(start_pg_dbmesh: Any, postgres: Any) -> None:
    proc = start_pg_dbmesh(**small_pool(postgres))
    a = psycopg.connect(dsn(proc, application_name="alpha", options="'-c search_path=pg_catalog'"),
                        autocommit=True)
    b = psycopg.connect(dsn(proc, application_name="beta"), autocommit=True)
    c = psycopg.connect(dsn(proc), autocommit=True)
    a.execute("SET TimeZone = 'Asia/Tokyo'")
    b.execute("SET TimeZone = 'America/Lima'")
    for _ in range(3):
        assert a.execute("SHOW TimeZone").fetchone() == ("Asia/Tokyo",)
        assert b.execute("SHOW TimeZone").fetchone() == ("America/Lima",)
        assert c.execute("SHOW application_name").fetchone() == ("",)
        assert a.execute("SHOW application_name").fetchone() == ("alpha",)
        assert a.execute("SHOW search_path").fetchone() == ("pg_catalog",)
    a.execute("RESET ALL")  # back to the startup values, as on the server itself
    assert a.execute("SHOW application_name").fetchone() == ("alpha",)
    assert a.execute("SHOW search_path").fetchone() == ("pg_catalog",)
    assert a.execute("SHOW TimeZone").fetchone() == c.execute("SHOW TimeZone").fetchone()  # the server default
    assert a.info.parameter_status("application_name") == "alpha"
    for x in (a, b, c):
        x.close()
    assert_clean_log(proc)


def test_session_state_pins_and_transactions_stay_private(start_pg_dbmesh: Any, postgres: Any) -> None:
    # Three connections: a pins one, b's transaction holds another, c must still be served.
    proc = start_pg_dbmesh(**small_pool(postgres, size=3))
    a = psycopg.connect(dsn(proc), autocommit=True)
    b = psycopg.connect(dsn(proc), autocommit=True)
    c = psycopg.connect(dsn(proc), autocommit=True)
    a.execute("CREATE TEMP TABLE tmp_pin (x int)")
    a.execute("INSERT INTO tmp_pin VALUES (7)")
    a.execute("SELECT pg_advisory_lock(4242)")
    for _ in range(3):
        assert b.execute("SELECT 1").fetchone() == (1,)
        assert c.execute("SELECT 2").fetchone() == (2,)
        assert a.execute("SELECT x FROM tmp_pin").fetchone() == (7,)
    with pytest.raises(psycopg.errors.UndefinedTable):
        b.execute("SELECT x FROM tmp_pin")
    # The advisory lock is still a's: b cannot take it.
    assert b.execute("SELECT pg_try_advisory_lock(4242)").fetchone() == (False,)
    b.execute("CREATE TABLE IF NOT EXISTS t_pg_tx (id int PRIMARY KEY)")
    b.execute("TRUNCATE t_pg_tx")
    with b.transaction():
        b.execute("INSERT INTO t_pg_tx VALUES (1)")
        assert c.execute("SELECT count(*) FROM t_pg_tx").fetchone() == (0,)
    assert c.execute("SELECT count(*) FROM t_pg_tx").fetchone() == (1,)
    for x in (a, b, c):
        x.close()
    assert_clean_log(proc)


def test_pgbench_prepared_through_a_pool_smaller_than_its_clients(start_pg_dbmesh: Any, postgres: Any) -> None:
    proc = start_pg_dbmesh(**small_pool(postgres, size=3))
    env = {**os.environ, "PGPASSWORD": "rootpw"}
    base = ["pgbench", "-h", proc.host, "-p", str(proc.pg_port), "-U", "root"]
    init = subprocess.run([*base, "-i", "-s", "1", "-q", PG_DB], env=env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    # One thread per client: pgbench prepares synchronously, so a single thread would wait on itself.
    run = subprocess.run([*base, "-M", "prepared", "-c", "6", "-j", "6", "-T", "4", PG_DB], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "number of failed transactions: 0" in run.stdout, run.stdout
    with psycopg.connect(dsn(proc), autocommit=True) as conn:
        total = conn.execute("SELECT (SELECT sum(abalance) FROM pgbench_accounts)"
                             " - (SELECT coalesce(sum(delta), 0) FROM pgbench_history)").fetchone()
        assert total == (0,)
        tellers = conn.execute("SELECT (SELECT sum(tbalance) FROM pgbench_tellers)"
                               " - (SELECT coalesce(sum(delta), 0) FROM pgbench_history)").fetchone()
        assert tellers == (0,)
    assert_clean_log(proc)


def test_killed_backend_gives_a_clear_error_and_the_proxy_recovers(start_pg_dbmesh: Any,
                                                                   managed_postgres: Any) -> None:
    proc = start_pg_dbmesh()
    victim = psycopg.connect(dsn(proc), autocommit=True)
    result: dict[str, Any] = {}

    def long_query() -> None:
        try:
            victim.execute("SELECT pg_sleep(30)")
        except psycopg.Error as exc:
            result["error"] = exc

    t = threading.Thread(target=long_query)
    t.start()
    time.sleep(0.5)
    managed_postgres.kill()
    t.join(15)
    assert not t.is_alive()
    err = result.get("error")
    assert isinstance(err, psycopg.OperationalError), result
    assert "data source 'ds_0'" in str(err)
    managed_postgres.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            with psycopg.connect(dsn(proc), autocommit=True) as again:
                assert again.execute("SELECT 5").fetchone() == (5,)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    assert_clean_log(proc)


def test_a_pooled_connection_does_not_keep_earlier_sessions_statements_forever(start_pg_dbmesh: Any,
                                                                               postgres: Any) -> None:
    proc = start_pg_dbmesh(**small_pool(postgres, size=1))
    with psycopg.connect(dsn(proc), autocommit=True) as a:
        for i in range(300):
            assert a.execute(f"SELECT %s::int + {i}", (1,), prepare=True).fetchone() == (1 + i,)
        assert a.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] >= 300
    # The next session gets the same (only) connection; the 300 cached statements are closed for it.
    with psycopg.connect(dsn(proc), autocommit=True) as b:
        assert b.execute("SELECT %s::int", (5,), prepare=True).fetchone() == (5,)
        assert b.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] <= 2
    assert_clean_log(proc)
