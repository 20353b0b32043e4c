"""pgbench and sysbench (pgsql driver) through dbmesh.

pgbench: ``-i`` (DROP/CREATE, client-side COPY of the data, VACUUM, primary keys) through dbmesh, then
``-S`` (select-only) and the default TPC-B-like script for a few seconds each in ``-M simple``,
``-M extended`` and ``-M prepared`` with 2 clients: no failed transactions, and the books balance
afterwards — every account, teller and branch balance equals the sum of the deltas pgbench logged in
pgbench_history for it (checked directly on PostgreSQL).

sysbench oltp_read_write: prepare, a few seconds of 2 threads (libpq server-side prepared statements,
explicit transactions, deletes and inserts), cleanup. Its pgsql driver retries deadlocks (40P01) and
unique violations (23505) as "ignored errors", which two threads on the same rows produce on any server;
at most 1% of transactions may be such retries and reconnects must be 0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.clients_pg.common import Endpoint
from tests.support import PostgreSQL

SECONDS = 2


def _env(ep: Endpoint) -> dict[str, str]:
    return dict(os.environ, PGPASSWORD=ep.password, PGSSLMODE="disable", PGCONNECT_TIMEOUT="10")


def pgbench(ep: Endpoint, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["pgbench", "-h", ep.host, "-p", str(ep.port), "-U", ep.user, *args, ep.database]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(ep), timeout=120, check=False)


def _books_balance(pg: PostgreSQL, db: str) -> None:
    for table, key in (("pgbench_accounts", "aid"), ("pgbench_tellers", "tid"), ("pgbench_branches", "bid")):
        bal = table.split("_")[1][0] + "balance"
        mismatches = pg.execute(
            f"SELECT t.{key}, t.{bal}, coalesce(h.s, 0) FROM {table} t "
            f"LEFT JOIN (SELECT {key}, sum(delta) AS s FROM pgbench_history GROUP BY {key}) h USING ({key}) "
            f"WHERE t.{bal} <> coalesce(h.s, 0) LIMIT 5", database=db)
        assert mismatches == [], f"{table}: balances differ from the history's deltas: {mismatches}"
    totals = pg.execute("SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM "
                        "pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches), "
                        "(SELECT coalesce(sum(delta), 0) FROM pgbench_history)", database=db)[0]
    assert len(set(totals)) == 1, totals


@pytest.mark.skipif(shutil.which("pgbench") is None, reason="pgbench is not installed")
def test_pgbench(pg_proxy: Endpoint, postgres: PostgreSQL) -> None:
    try:
        init = pgbench(pg_proxy, "-i", "-s", "1", "-q")
        assert init.returncode == 0, init.stdout + init.stderr
        assert "done in" in init.stderr, init.stderr
        assert postgres.execute("SELECT count(*) FROM pgbench_accounts", database=pg_proxy.database) == [(100000,)]
        processed = {}
        for mode in ("simple", "extended", "prepared"):
            for script in ("-S", "-b"):
                args = [script] if script == "-S" else ["-b", "tpcb-like"]
                run = pgbench(pg_proxy, *args, "-M", mode, "-c", "2", "-j", "2", "-T", str(SECONDS), "-n")
                out = run.stdout + run.stderr
                assert run.returncode == 0, out
                assert re.search(r"number of failed transactions: 0 \(0\.000%\)", out), out
                n = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
                assert n > 20, out
                processed[(mode, script)] = n
        _books_balance(postgres, pg_proxy.database)
        history = postgres.execute("SELECT count(*) FROM pgbench_history", database=pg_proxy.database)[0][0]
        assert history == sum(n for (_, script), n in processed.items() if script == "-b")
    finally:
        for t in ("pgbench_accounts", "pgbench_branches", "pgbench_history", "pgbench_tellers"):
            postgres.execute(f"DROP TABLE IF EXISTS {t}", database=pg_proxy.database)


def _sysbench_has_pgsql() -> bool:
    if shutil.which("sysbench") is None:
        return False
    out = subprocess.run(["sysbench", "--help"], capture_output=True, text=True, check=False).stdout
    return "pgsql - PostgreSQL driver" in out


def sysbench(ep: Endpoint, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["sysbench", "oltp_read_write", "--db-driver=pgsql", f"--pgsql-host={ep.host}", f"--pgsql-port={ep.port}",
            f"--pgsql-user={ep.user}", f"--pgsql-password={ep.password}", f"--pgsql-db={ep.database}",
            "--tables=2", "--table-size=5000", *extra, command]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ, PGSSLMODE="disable"))


@pytest.mark.skipif(not _sysbench_has_pgsql(), reason="sysbench without its pgsql driver")
def test_sysbench_oltp_read_write(pg_proxy: Endpoint, postgres: PostgreSQL) -> None:
    try:
        for n in (1, 2):
            postgres.execute(f"DROP TABLE IF EXISTS sbtest{n}", database=pg_proxy.database)
        prep = sysbench(pg_proxy, "prepare")
        assert prep.returncode == 0, prep.stdout + prep.stderr
        run = sysbench(pg_proxy, "run", "--threads=2", f"--time={SECONDS + 1}", "--report-interval=0")
        out = run.stdout
        assert run.returncode == 0, out + run.stderr
        assert "FATAL" not in out + run.stderr, out + run.stderr
        transactions = int(re.search(r"transactions:\s+(\d+)", out).group(1))
        ignored = int(re.search(r"ignored errors:\s+(\d+)", out).group(1))
        reconnects = int(re.search(r"reconnects:\s+(\d+)", out).group(1))
        assert reconnects == 0, out
        assert transactions > 20, out
        assert ignored <= max(1, transactions // 100), out
        for n in (1, 2):  # oltp_read_write deletes and re-inserts the same ids: still 5000 rows each
            assert postgres.execute(f"SELECT count(*) FROM sbtest{n}", database=pg_proxy.database) == [(5000,)]
        clean = sysbench(pg_proxy, "cleanup")
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert postgres.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'sbtest%'",
                                database=pg_proxy.database) == [(0,)]
    finally:
        for n in (1, 2):
            postgres.execute(f"DROP TABLE IF EXISTS sbtest{n}", database=pg_proxy.database)
