"""sysbench and pgbench against sharded logical databases: the tools' own DDL, bulk loads and workloads through
dbmesh, then every row on the data node its rule names and totals through dbmesh equal to the physical sums.

sysbench oltp_read_write (MySQL driver) on ``sb_sharded``: sbtest1/sbtest2 split by ``ds_${id % 2}`` over two
MariaDB databases, one actual table per data source. ``prepare`` runs CREATE TABLE and CREATE INDEX (fanned
out) and multi-row INSERTs (split); ``run`` uses server-side prepared statements (sysbench's default
``--db-ps-mode=auto``) for point selects, BETWEEN ranges with ``ORDER BY c``, ``DISTINCT c`` and ``SUM(k)``
(merged across both data sources), updates, and a delete + insert of the same id, in explicit transactions.

pgbench on ``pgbench_sharded``: pgbench_accounts split by ``ds_${aid % 2}`` over two PostgreSQL databases;
branches, tellers and history are single tables on ds_0 (TPC-B writes them in every transaction, so a copy on
each data source would double every write for nothing; as single tables each transaction touches ds_0 and the
account's data source). ``pgbench -i`` drops and creates the tables, loads accounts with COPY FROM STDIN (split
by aid), vacuums and adds primary keys; ``-S`` and the TPC-B script then run for a few seconds each, and the
books must balance across data sources: the sum of account balances equals the history's deltas on ds_0.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pymysql

from tests.support import DbMeshProcess, MariaDB, PostgreSQL
from tests.support.sharded import (
    Tagged,
    drop_tables,
    index_count,
    inline_algorithm,
    query,
    sharded_database,
    standard,
    start_sharded_dbmesh,
    table_exists,
    write_sharded_config,
)

SECONDS = 10

SB_DB = "sb_sharded"
SB_PHYSICAL = {"ds_0": "sbshard_ds_0", "ds_1": "sbshard_ds_1"}
SB_TABLE_SIZE = 2000
SB_TABLES = ("sbtest1", "sbtest2")

PGB_DB = "pgbench_sharded"
PGB_PHYSICAL = {"ds_0": "pgbshard_ds_0", "ds_1": "pgbshard_ds_1"}
PGB_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_history", "pgbench_tellers")
PGB_SINGLE = ("pgbench_branches", "pgbench_history", "pgbench_tellers")


def _sysbench_rules() -> list[Tagged]:
    return [Tagged("SHARDING", {
        "tables": {
            t: {"actualDataNodes": f"ds_${{0..1}}.{t}", "databaseStrategy": standard("id", "by_id")}
            for t in SB_TABLES
        },
        "shardingAlgorithms": {"by_id": inline_algorithm("ds_${id % 2}")},
    })]


def _pgbench_rules() -> list[Tagged]:
    return [
        Tagged("SHARDING", {
            "tables": {
                "pgbench_accounts": {
                    "actualDataNodes": "ds_${0..1}.pgbench_accounts",
                    "databaseStrategy": standard("aid", "by_aid"),
                },
            },
            "shardingAlgorithms": {"by_aid": inline_algorithm("ds_${aid % 2}")},
        }),
        Tagged("SINGLE", {"tables": [f"ds_0.{t}" for t in PGB_SINGLE], "defaultDataSource": "ds_0"}),
    ]


def _start(server: Any, dialect: str, name: str, physical: dict[str, str], rules: list[Tagged],
           config_dir: Path) -> DbMeshProcess:
    document = sharded_database(name, dialect, server, physical, rules)  # type: ignore[arg-type]
    config = write_sharded_config(config_dir, server, {name: document})
    return start_sharded_dbmesh(config, postgresql=dialect == "postgresql")


def _tail(proc: DbMeshProcess) -> str:
    return "\ndbmesh stderr:\n" + proc.stderr_text()[-4000:]


def _run_tool(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool; one that hangs (a statement dbmesh never answers) is killed and reported with its output."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
            err += f"\n[killed: no exit within {timeout:.0f} s]"
        return subprocess.CompletedProcess(cmd, child.returncode, out, err)


# -- sysbench ------------------------------------------------------------------------------------------------------


def sysbench(proc: DbMeshProcess, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
    # --auto-inc=off: sysbench then inserts explicit ids 1..table-size, which route by id. With AUTO_INCREMENT the
    # loading INSERTs leave out the sharding column, and a generated SNOWFLAKE key does not fit sbtest's INTEGER id.
    args = ["sysbench", "oltp_read_write", "--db-driver=mysql", f"--mysql-host={proc.host}",
            f"--mysql-port={proc.port}", "--mysql-user=root", "--mysql-password=rootpw", f"--mysql-db={SB_DB}",
            "--tables=2", f"--table-size={SB_TABLE_SIZE}", "--auto-inc=off", *extra, command]
    # A transaction waits for a row lock at most innodb_lock_wait_timeout (lowered by the test), so a run that
    # does not end within a minute of --time hangs in dbmesh.
    return _run_tool(args, timeout=90)


def _physical_sb(mariadb: MariaDB, table: str) -> dict[str, list[tuple[Any, ...]]]:
    return {ds: query(mariadb, db, f"SELECT id, k FROM {table}") for ds, db in SB_PHYSICAL.items()}


def _check_sysbench_tables(mariadb: MariaDB, proc: DbMeshProcess) -> None:
    """Every row on ds_{id % 2}, the ids unchanged, and totals through dbmesh equal to the physical sums."""
    conn = pymysql.connect(host=proc.host, port=proc.port, user="root", password="rootpw", database=SB_DB,
                           autocommit=True)
    try:
        for table in SB_TABLES:
            physical = _physical_sb(mariadb, table)
            misplaced = [(ds, i) for ds, rows in physical.items() for i, _ in rows if f"ds_{i % 2}" != ds]
            assert misplaced == [], f"{table}: rows on the wrong data source: {misplaced[:10]}"
            ids = sorted(i for rows in physical.values() for i, _ in rows)
            # oltp_read_write deletes and re-inserts the same ids: the set of ids is unchanged.
            assert ids == list(range(1, SB_TABLE_SIZE + 1)), f"{table}: ids changed"
            expected = (len(ids), sum(k for rows in physical.values() for _, k in rows))
            in_range = [k for rows in physical.values() for i, k in rows if 100 <= i <= 1099]
            with conn.cursor() as cur:
                cur.execute(f"SELECT COUNT(*), SUM(k) FROM {table}")
                assert tuple(int(v) for v in cur.fetchone()) == expected, table
                cur.execute(f"SELECT COUNT(*), SUM(k) FROM {table} WHERE id BETWEEN 100 AND 1099")
                assert tuple(int(v) for v in cur.fetchone()) == (1000, sum(in_range)), table
    finally:
        conn.close()


def test_sysbench_oltp_read_write_on_sharded_tables(mariadb: MariaDB, tmp_path: Path) -> None:
    for db in SB_PHYSICAL.values():
        mariadb.ensure_database(db)
    nodes = [(ds, t) for ds in SB_PHYSICAL for t in SB_TABLES]
    drop_tables(mariadb, SB_PHYSICAL, nodes)
    # Two threads whose transactions write rows on both data sources can deadlock across them; neither server
    # sees the cycle, so it ends only by a lock wait timeout (sysbench retries it as an ignored error). The
    # default 50 s would outlast the run: new connections (dbmesh's pool, opened after this) wait at most 3 s.
    saved_wait = mariadb.execute("SELECT @@GLOBAL.innodb_lock_wait_timeout")[0][0]
    mariadb.execute("SET GLOBAL innodb_lock_wait_timeout = 3")
    proc = _start(mariadb, "mysql", SB_DB, SB_PHYSICAL, _sysbench_rules(), tmp_path / "sb-conf")
    try:
        prep = sysbench(proc, "prepare")
        assert prep.returncode == 0, prep.stdout + prep.stderr + _tail(proc)
        for ds, table in nodes:  # CREATE TABLE and CREATE INDEX reached both data sources
            assert table_exists(mariadb, "mysql", SB_PHYSICAL[ds], table), (ds, table)
            assert index_count(mariadb, "mysql", SB_PHYSICAL[ds], table, "k") == 1, (ds, table)
        for table in SB_TABLES:
            physical = _physical_sb(mariadb, table)
            assert sorted(i for rows in physical.values() for i, _ in rows) == list(range(1, SB_TABLE_SIZE + 1))

        # Text protocol first, then sysbench's default: server-side prepared statements (COM_STMT_PREPARE/EXECUTE
        # on the sharded database, BEGIN and COMMIT included).
        for ps_mode in ("disable", "auto"):
            run = sysbench(proc, "run", "--threads=2", f"--time={SECONDS // 2}", "--report-interval=0",
                           f"--db-ps-mode={ps_mode}")
            out = run.stdout + run.stderr
            assert run.returncode == 0, f"--db-ps-mode={ps_mode}\n" + out + _tail(proc)
            assert "FATAL" not in out, out + _tail(proc)
            transactions = int(re.search(r"transactions:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
            ignored = int(re.search(r"ignored errors:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
            reconnects = int(re.search(r"reconnects:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
            assert reconnects == 0, out
            assert transactions > 20, out
            # sysbench retries deadlocks as "ignored errors"; two threads on 2000 rows make a few on any server.
            assert ignored <= max(1, transactions // 100), out
            _check_sysbench_tables(mariadb, proc)

        clean = sysbench(proc, "cleanup")
        assert clean.returncode == 0, clean.stdout + clean.stderr + _tail(proc)
        assert [table_exists(mariadb, "mysql", SB_PHYSICAL[ds], t) for ds, t in nodes] == [False] * len(nodes)
    finally:
        proc.stop()
        mariadb.execute(f"SET GLOBAL innodb_lock_wait_timeout = {int(saved_wait)}")
        drop_tables(mariadb, SB_PHYSICAL, nodes)


# -- pgbench -------------------------------------------------------------------------------------------------------


def pgbench(proc: DbMeshProcess, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["pgbench", "-h", proc.host, "-p", str(proc.pg_port), "-U", "root", *args, PGB_DB]
    env = dict(os.environ, PGPASSWORD="rootpw", PGSSLMODE="disable", PGCONNECT_TIMEOUT="10")
    return _run_tool(cmd, timeout=120, env=env)


def _processed(out: str) -> int:
    assert re.search(r"number of failed transactions: 0 \(0\.000%\)", out), out
    return int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))  # type: ignore[union-attr]


def test_pgbench_on_sharded_accounts(postgres: PostgreSQL, tmp_path: Path) -> None:
    for db in PGB_PHYSICAL.values():
        postgres.ensure_database(db)
    nodes = [(ds, t) for ds in PGB_PHYSICAL for t in PGB_TABLES]
    drop_tables(postgres, PGB_PHYSICAL, nodes)
    proc = _start(postgres, "postgresql", PGB_DB, PGB_PHYSICAL, _pgbench_rules(), tmp_path / "pgb-conf")
    ds0, ds1 = PGB_PHYSICAL["ds_0"], PGB_PHYSICAL["ds_1"]
    try:
        init = pgbench(proc, "-i", "-s", "1", "-q")
        assert init.returncode == 0, init.stdout + init.stderr + _tail(proc)
        assert "done in" in init.stderr, init.stderr
        assert [table_exists(postgres, "postgresql", ds1, t) for t in PGB_SINGLE] == [False] * 3
        assert query(postgres, ds0, "SELECT count(*) FROM pgbench_branches") == [(1,)]
        assert query(postgres, ds0, "SELECT count(*) FROM pgbench_tellers") == [(10,)]
        for ds, db in PGB_PHYSICAL.items():  # the primary key was added on every data node
            assert query(postgres, db, "SELECT count(*) FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid "
                                       "WHERE t.relname = 'pgbench_accounts' AND x.indisprimary") == [(1,)], ds

        processed = {}
        for script in (["-S"], ["-b", "tpcb-like"]):
            run = pgbench(proc, *script, "-c", "2", "-j", "2", "-T", str(SECONDS), "-n")
            assert run.returncode == 0, run.stdout + run.stderr + _tail(proc)
            processed[script[0]] = _processed(run.stdout + run.stderr)
            assert processed[script[0]] > 20, run.stdout

        misplaced = {ds: query(postgres, db, f"SELECT count(*) FROM pgbench_accounts WHERE aid % 2 <> {ds[-1]}")
                     for ds, db in PGB_PHYSICAL.items()}
        assert misplaced == {"ds_0": [(0,)], "ds_1": [(0,)]}, misplaced
        per_node = [query(postgres, db, "SELECT count(*), coalesce(sum(abalance), 0) FROM pgbench_accounts")[0]
                    for db in PGB_PHYSICAL.values()]
        expected = (sum(n for n, _ in per_node), sum(s for _, s in per_node))
        assert expected[0] == 100_000
        conn = psycopg_connect(proc)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*), sum(abalance) FROM pgbench_accounts")
                assert tuple(int(v) for v in cur.fetchone()) == expected
        finally:
            conn.close()
        # TPC-B books balance across data sources: each transaction changed one account (ds_0 or ds_1) and
        # logged its delta in history on ds_0, atomically.
        history = query(postgres, ds0, "SELECT count(*), coalesce(sum(delta), 0) FROM pgbench_history")[0]
        assert history[0] == processed["-b"], (history, processed)
        assert history[1] == expected[1]
        assert query(postgres, ds0, "SELECT sum(tbalance) FROM pgbench_tellers")[0][0] == expected[1]
        assert query(postgres, ds0, "SELECT sum(bbalance) FROM pgbench_branches")[0][0] == expected[1]
    finally:
        proc.stop()
        drop_tables(postgres, PGB_PHYSICAL, nodes)


def psycopg_connect(proc: DbMeshProcess) -> Any:
    import psycopg

    return psycopg.connect(host=proc.host, port=proc.pg_port, user="root", password="rootpw", dbname=PGB_DB,
                           autocommit=True, connect_timeout=10, sslmode="disable")

