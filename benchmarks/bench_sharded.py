"""Sharded logical databases through dbmesh, beside the same workloads on an unsharded one.

    .venv/bin/python benchmarks/bench_sharded.py [--parts sysbench,pgbench,scatter] [--time 4] [--rounds 3]

Two systems, both ``dbmesh serve`` (one process per dialect serving both logical databases), measured with the
same workload against the same rows:

- **plain**: logical database ``plain``, one data source and no rules: dbmesh's single-data-source path;
- **sharded**: logical database ``sharded``, two data sources (two databases on the same server) under a
  ``!SHARDING`` rule: the planner, the per-data-source executor and the merger.

Parts, each with its own target (from the sharding issue):

1. **sysbench** ``oltp_point_select`` on ``sbtest1`` (``--table-size``, default 100,000 rows; ``--rand-type=uniform``
   so that repeated statement texts are rare) at 1 and 8 threads, ``--db-ps-mode=disable`` (text queries) and
   ``auto`` (COM_STMT_PREPARE/EXECUTE). sharded: ``databaseStrategy`` standard on ``id``, INLINE ``ds_${id % 2}``,
   ``actualDataNodes: ds_${0..1}.sbtest1``. Target: sharded TPS >= 0.9 x plain TPS.
2. **pgbench** ``-S`` (scale ``--scale``, default 5: 500,000 accounts) at 1 and 8 clients, ``-M simple`` and
   ``-M prepared``. sharded: ``pgbench_accounts`` by ``aid`` over ``ds_${aid % 2}``, the other pgbench tables
   single on ds_0. Target: sharded TPS >= 0.9 x plain TPS.
3. **scatter**: ``SELECT id, k, c FROM t_scan WHERE k >= ? ORDER BY k LIMIT 10`` (``k`` indexed, not a sharding
   column; a random lower bound per query) over ``--scatter-rows`` rows (default 100,000). sharded: 4 shards,
   ``ds_${id % 2}`` and ``t_scan_${id.intdiv(2) % 2}``; every query goes to all four and is merge-sorted. plain:
   one table holding all rows. One client connection per system (mysqlclient for MySQL, psycopg for PostgreSQL,
   both C clients, so client overhead dilutes the ratio as little as possible) in a loop timing every query.
   Target: sharded p50 latency <= 2 x plain p50 latency.

Data is written directly on the physical databases, never through dbmesh: sysbench ``prepare`` and ``pgbench -i``
fill the plain database, and each data node of the sharded side gets a copy of the plain rows its rule assigns to
it (same DDL, same rows, analysed/vacuumed alike). Before any timing, answers are checked through dbmesh: totals
of every table and a sample of point and scatter queries must be identical on both logical databases; a mismatch
is printed and recorded (``checks`` in the JSON) and the part is still timed.

Method. For each case the rounds run plain, sharded, plain, sharded, ... so drift of the machine (other load, CPU
frequency) hits both alike; ratios are taken *within* a round and the median across rounds is reported. sysbench
p50/p99 come from its latency histogram, pgbench's latency is its mean per transaction, the scatter loop keeps
every query's latency. Results go to benchmarks/results/sharded.json; ``--update-readme`` rewrites the README block
between ``<!-- bench:sharded:start -->`` and ``<!-- bench:sharded:end -->``. Servers: a throwaway MariaDB and
PostgreSQL 15 started here, or the ones named by ``DBMESH_TEST_MYSQL_*`` / ``DBMESH_TEST_PG_*``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_mysql_point_select import parse_sysbench  # noqa: E402
from bench_pg_select import parse_pgbench  # noqa: E402
from readme_block import update_readme_block  # noqa: E402

from tests.support import DbMeshProcess, DbMeshStartError, MariaDB, PostgreSQL  # noqa: E402
from tests.support.sharded import (  # noqa: E402
    Dialect,
    Tagged,
    inline_algorithm,
    run_statements,
    sharded_database,
    standard,
    start_sharded_dbmesh,
    write_sharded_config,
)

PARTS = ("sysbench", "pgbench", "scatter")
SYSTEMS = ("plain", "sharded")
PLAIN_DB = "bsh_plain"  # physical database of the plain logical database
SHARD_DBS = {"ds_0": "bsh_ds_0", "ds_1": "bsh_ds_1"}  # physical databases of the sharded one
USER, PASSWORD = "root", "rootpw"
POOL_SIZE = 64

TARGET_TPS_RATIO = 0.9  # sharded / plain, at least
TARGET_SCATTER_P50_RATIO = 2.0  # sharded / plain, at most

PG_SINGLE_TABLES = ("pgbench_branches", "pgbench_tellers", "pgbench_history")

# t_scan: k is a permutation of the ids (7919 is coprime to the prime modulus), so ORDER BY k has no ties and a
# scatter answer is deterministic; rows are about as wide as sysbench's.
SCAN_K_MOD = 1_000_003
SCAN_QUERY = "SELECT id, k, c FROM t_scan WHERE k >= %s ORDER BY k LIMIT 10"
SCAN_DDL = "CREATE TABLE {table} (id INT NOT NULL PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, " \
           "pad CHAR(60) NOT NULL)"  # fmt: skip


def scan_row(i: int) -> tuple[int, int, str, str]:
    digest = hashlib.md5(str(i).encode()).hexdigest()
    return i, i * 7919 % SCAN_K_MOD, (digest * 4)[:120], (digest[::-1] * 2)[:60]


def scan_node(i: int) -> tuple[str, str]:
    """The data node the sharded rule assigns to id ``i`` (checked through dbmesh before timing)."""
    return f"ds_{i % 2}", f"t_scan_{i // 2 % 2}"


SCAN_NODES = [(ds, f"t_scan_{t}") for ds in SHARD_DBS for t in (0, 1)]


def sharding_rules(dialect: Dialect) -> list[Tagged]:
    scan = {"actualDataNodes": "ds_${0..1}.t_scan_${0..1}", "databaseStrategy": standard("id", "by_id"),
            "tableStrategy": standard("id", "scan_table")}  # fmt: skip
    algorithms = {"by_id": inline_algorithm("ds_${id % 2}"),
                  "scan_table": inline_algorithm("t_scan_${id.intdiv(2) % 2}")}  # fmt: skip
    if dialect == "mysql":
        tables = {"sbtest1": {"actualDataNodes": "ds_${0..1}.sbtest1", "databaseStrategy": standard("id", "by_id")},
                  "t_scan": scan}  # fmt: skip
        return [Tagged("SHARDING", {"tables": tables, "shardingAlgorithms": algorithms})]
    tables = {"pgbench_accounts": {"actualDataNodes": "ds_${0..1}.pgbench_accounts",
                                   "databaseStrategy": standard("aid", "by_aid")},
              "t_scan": scan}  # fmt: skip
    algorithms["by_aid"] = inline_algorithm("ds_${aid % 2}")
    return [
        Tagged("SHARDING", {"tables": tables, "shardingAlgorithms": algorithms}),
        Tagged("SINGLE", {"tables": [f"ds_0.{t}" for t in PG_SINGLE_TABLES], "defaultDataSource": "ds_0"}),
    ]


# -- results --------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    part: str
    case: str
    system: str
    round: int
    ok: bool
    tps: float = float("nan")
    p50_us: float = float("nan")
    p99_us: float = float("nan")
    mean_us: float = float("nan")
    count: int = 0  # transactions (tools) or queries (scatter)
    errors: int = 0
    error: str = ""


@dataclass
class Check:
    part: str
    what: str
    ok: bool
    detail: str = ""


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    runs: list[Run] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # part -> why it was not measured
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    def check(self, part: str, what: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(part, what, ok, detail))
        mark = "ok" if ok else "MISMATCH"
        print(f"  check {part}: {what}: {mark}{' ' + detail if detail and not ok else ''}", file=sys.stderr)

    def record(self, run: Run, status: str) -> None:
        self.runs.append(run)
        label = status if run.ok else f"FAILED {run.error}"
        print(f"  {run.part} {run.case} round={run.round} {run.system:<7} {label}", file=sys.stderr)


# -- dbmesh ---------------------------------------------------------------------------------------------------------


class Mesh:
    """dbmesh serving ``plain`` and ``sharded`` for one dialect; restarted (and noted) if found gone between runs.

    The machine is shared with other test runs: a dbmesh killed from outside is restarted rather than losing
    every later run of the part; the event is listed under ``notes`` in the JSON and the README block.
    """

    def __init__(self, dialect: Dialect, server: Any, workdir: Path, notes: list[str]) -> None:
        self.dialect, self.server, self.workdir, self.notes = dialect, server, workdir, notes
        self.proc: DbMeshProcess | None = None
        self.starts = 0

    def start(self) -> Mesh:
        self.starts += 1
        documents = {
            "plain": sharded_database("plain", self.dialect, self.server, {"ds_0": PLAIN_DB}, [],
                                      max_pool_size=POOL_SIZE),
            "sharded": sharded_database("sharded", self.dialect, self.server, SHARD_DBS,
                                        sharding_rules(self.dialect), max_pool_size=POOL_SIZE),
        }  # fmt: skip
        config = write_sharded_config(self.workdir / f"dbmesh-{self.dialect}-{self.starts}", self.server,
                                      documents, tls=False)  # fmt: skip
        self.proc = start_sharded_dbmesh(config, postgresql=self.dialect == "postgresql")
        return self

    @property
    def port(self) -> int:
        assert self.proc is not None
        return self.proc.pg_port if self.dialect == "postgresql" else self.proc.port

    @property
    def host(self) -> str:
        assert self.proc is not None
        return str(self.proc.host)

    def ensure_running(self, where: str) -> None:
        if self.proc is not None and self.proc.is_running():
            return
        old = self.proc
        note = f"{self.dialect} dbmesh had exited before {where}"
        if old is not None:
            note += f" ({old.returncode}); stderr: {old.stderr_text()[-800:]}"
            old.stop()
        print(f"  {note}\n  restarting dbmesh", file=sys.stderr)
        self.notes.append(note)
        self.start()

    def stderr_tail(self) -> str:
        return "" if self.proc is None else self.proc.stderr_text()[-3000:]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def mysql_connect(host: str, port: int, database: str) -> Any:
    import MySQLdb

    return MySQLdb.connect(host=host, port=port, user=USER, password=PASSWORD, database=database,
                           autocommit=True, connect_timeout=10)  # fmt: skip


def pg_connect(host: str, port: int, database: str) -> Any:
    import psycopg

    return psycopg.connect(host=host, port=port, user=USER, password=PASSWORD, dbname=database,
                           autocommit=True, connect_timeout=10, sslmode="disable")  # fmt: skip


def mesh_connect(mesh: Mesh, database: str) -> Any:
    connect = mysql_connect if mesh.dialect == "mysql" else pg_connect
    return connect(mesh.host, mesh.port, database)


def mysql_prepared_connect(host: str, port: int, database: str) -> Any:
    """A mysql-connector connection: its ``cursor(prepared=True)`` uses COM_STMT_PREPARE/EXECUTE, as sysbench's
    ``--db-ps-mode=auto`` does, and reads binary rows."""
    import mysql.connector

    return mysql.connector.connect(host=host, port=port, user=USER, password=PASSWORD, database=database,
                                   autocommit=True, ssl_disabled=True, connection_timeout=10)  # fmt: skip


def fetch(conn: Any, sql: str, params: Sequence[Any] = (), prepared: bool = False) -> list[tuple[Any, ...]]:
    cur = conn.cursor(prepared=True) if prepared else conn.cursor()
    try:
        cur.execute(sql, tuple(params) or None)
        return [tuple(r) for r in cur.fetchall()]
    finally:
        cur.close()


def compare(bench: Bench, part: str, mesh: Mesh, what: str, queries: Sequence[tuple[str, Sequence[Any]]],
            prepared: bool = False) -> None:
    """The answers of ``queries`` on plain and sharded through dbmesh must be identical (and not all empty).

    With ``prepared`` (MySQL), both run as server-side prepared statements through mysql-connector."""
    connect = (lambda db: mysql_prepared_connect(mesh.host, mesh.port, db)) if prepared else (
        lambda db: mesh_connect(mesh, db))
    try:
        plain, sharded = connect("plain"), connect("sharded")
    except Exception as exc:
        bench.check(part, what, False, f"connect failed: {exc!r}")
        return
    try:
        bad: list[str] = []
        rows_seen = 0
        for sql, params in queries:
            a = fetch(plain, sql, params, prepared)
            try:
                b = fetch(sharded, sql, params, prepared)
            except Exception as exc:
                bad.append(f"{sql} {list(params)}: sharded raised {exc!r}")
                continue
            rows_seen += len(a)
            if a != b:
                bad.append(f"{sql} {list(params)}: plain {a[:3]} sharded {b[:3]}")
        detail = f"{len(bad)} of {len(queries)} differ; first: {bad[0]}" if bad else f"{len(queries)} queries"
        if not bad and rows_seen == 0:
            bad, detail = ["empty"], "every answer was empty on both sides"
        bench.check(part, what, not bad, detail)
    finally:
        plain.close()
        sharded.close()


# -- data -----------------------------------------------------------------------------------------------------------


def load_scan_mysql(mariadb: MariaDB, rows: int) -> None:
    plain = ["DROP TABLE IF EXISTS t_scan", SCAN_DDL.format(table="t_scan"), "CREATE INDEX k_scan ON t_scan (k)"]
    run_statements(mariadb, PLAIN_DB, plain)
    conn = mariadb.connect(PLAIN_DB)
    try:
        with conn.cursor() as cur:
            for chunk in _chunks(range(1, rows + 1), 2000):
                cur.executemany("INSERT INTO t_scan VALUES (%s, %s, %s, %s)", [scan_row(i) for i in chunk])
    finally:
        conn.close()
    for ds, table in SCAN_NODES:
        index, part = int(ds[-1]), int(table[-1])
        run_statements(mariadb, SHARD_DBS[ds], [
            f"DROP TABLE IF EXISTS {table}", f"CREATE TABLE {table} LIKE {PLAIN_DB}.t_scan",
            f"INSERT INTO {table} SELECT * FROM {PLAIN_DB}.t_scan WHERE id % 2 = {index} AND id DIV 2 % 2 = {part}",
            f"ANALYZE TABLE {table}",
        ])  # fmt: skip
    run_statements(mariadb, PLAIN_DB, ["ANALYZE TABLE t_scan"])


def load_scan_pg(pg: PostgreSQL, rows: int) -> None:
    targets: dict[tuple[str, str], list[tuple[int, int, str, str]]] = {}
    for i in range(1, rows + 1):
        targets.setdefault(scan_node(i), []).append(scan_row(i))
    loads = [(PLAIN_DB, "t_scan", [r for part in targets.values() for r in part])]
    loads += [(SHARD_DBS[ds], table, targets[(ds, table)]) for ds, table in SCAN_NODES]
    for database, table, data in loads:
        conn = pg.connect(database)
        try:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(SCAN_DDL.format(table=table))
            with conn.cursor() as cur, cur.copy(f"COPY {table} (id, k, c, pad) FROM STDIN") as copy:
                for row in sorted(data):
                    copy.write_row(row)
            conn.execute(f"CREATE INDEX {table}_k ON {table} (k)")
            conn.execute(f"VACUUM ANALYZE {table}")
        finally:
            conn.close()


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def sysbench_base(host: str, port: int, user: str, password: str, database: str, table_size: int) -> list[str]:
    return ["sysbench", "oltp_point_select", f"--mysql-host={host}", f"--mysql-port={port}", f"--mysql-user={user}",
            f"--mysql-password={password}", f"--mysql-db={database}", "--mysql-ssl=off", "--tables=1",
            f"--table-size={table_size}"]  # fmt: skip


def load_sysbench(mariadb: MariaDB, table_size: int) -> None:
    base = sysbench_base(mariadb.host, mariadb.port, mariadb.user, mariadb.password, PLAIN_DB, table_size)
    subprocess.run([*base, "cleanup"], capture_output=True, check=False)
    # --auto-inc=off: explicit ids 1..table-size, the same on both sides.
    prep = subprocess.run([*base, "--auto-inc=off", "prepare"], capture_output=True, text=True, check=False)
    if prep.returncode != 0:
        raise RuntimeError(f"sysbench prepare failed: {prep.stdout[-2000:]} {prep.stderr[-2000:]}")
    for ds, database in SHARD_DBS.items():
        run_statements(mariadb, database, [
            "DROP TABLE IF EXISTS sbtest1", f"CREATE TABLE sbtest1 LIKE {PLAIN_DB}.sbtest1",
            f"INSERT INTO sbtest1 SELECT * FROM {PLAIN_DB}.sbtest1 WHERE id % 2 = {ds[-1]}", "ANALYZE TABLE sbtest1",
        ])  # fmt: skip
    run_statements(mariadb, PLAIN_DB, ["ANALYZE TABLE sbtest1"])


def pgbench_env(password: str) -> dict[str, str]:
    return dict(os.environ, PGPASSWORD=password, PGSSLMODE="disable", PGCONNECT_TIMEOUT="10")


def load_pgbench(pg: PostgreSQL, scale: int) -> None:
    """``pgbench -i`` into the plain database; each shard gets pgbench's own DDL and its rows copied over."""
    conn_args = ["-h", pg.host, "-p", str(pg.port), "-U", pg.user]
    env = pgbench_env(pg.password)

    def pgbench_init(database: str, *extra: str) -> None:
        proc = subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), *extra, *conn_args, database],
                              capture_output=True, text=True, env=env, check=False)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"pgbench -i {' '.join(extra)} on {database} failed: {proc.stderr[-2000:]}")

    pgbench_init(PLAIN_DB)
    src = pg.connect(PLAIN_DB)
    try:
        for ds, database in SHARD_DBS.items():
            pgbench_init(database, "-I", "dt")  # drop and create the tables, no rows
            dst = pg.connect(database)
            try:
                copies = [("pgbench_accounts", f"WHERE aid % 2 = {ds[-1]}")]
                if ds == "ds_0":
                    copies += [("pgbench_branches", ""), ("pgbench_tellers", "")]
                for table, where in copies:
                    with src.cursor() as out_cur, dst.cursor() as in_cur, \
                            out_cur.copy(f"COPY (SELECT * FROM {table} {where}) TO STDOUT") as out, \
                            in_cur.copy(f"COPY {table} FROM STDIN") as into:  # fmt: skip
                        for chunk in out:
                            into.write(chunk)
            finally:
                dst.close()
            pgbench_init(database, "-I", "vp")  # vacuum (analyze) and primary keys, as after a full -i
            if ds != "ds_0":
                run_statements(pg, database, [f"DROP TABLE {t}" for t in PG_SINGLE_TABLES])
    finally:
        src.close()


# -- workloads ------------------------------------------------------------------------------------------------------


def run_tool(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a benchmark tool; one that hangs (a statement never answered) is killed and its output kept."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
            err += f"\n[killed: no exit within {timeout:.0f} s]"
        return subprocess.CompletedProcess(cmd, child.returncode, out, err)


def sysbench_run(mesh: Mesh, system: str, threads: int, ps_mode: str, rnd: int, args: argparse.Namespace) -> Run:
    case = f"{threads}/{ps_mode}"
    cmd = [*sysbench_base(mesh.host, mesh.port, USER, PASSWORD, system, args.table_size),
           f"--db-ps-mode={ps_mode}", "--rand-type=uniform", f"--threads={threads}", f"--time={args.time}",
           "--percentile=99", "--histogram=on", "--report-interval=0", "run"]  # fmt: skip
    proc = run_tool(cmd, timeout=args.time + 60)
    try:
        if proc.returncode != 0:
            raise ValueError(f"sysbench exited {proc.returncode}")
        parsed = parse_sysbench(proc.stdout)
    except ValueError as exc:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-6:]
        return Run("sysbench", case, system, rnd, False, error=f"{exc}: " + " | ".join(tail))
    return Run("sysbench", case, system, rnd, True, tps=parsed["tps"], p50_us=parsed["p50_ms"] * 1000,
               p99_us=parsed["p99_ms"] * 1000, count=int(parsed["tps"] * args.time), errors=parsed["errors"])


def pgbench_run(mesh: Mesh, system: str, clients: int, mode: str, rnd: int, args: argparse.Namespace) -> Run:
    case = f"{clients}/{mode}"
    jobs = max(1, min(clients, os.cpu_count() or 1))
    cmd = ["pgbench", "-S", "-n", "-M", mode, "-c", str(clients), "-j", str(jobs), "-T", str(args.time),
           "-h", mesh.host, "-p", str(mesh.port), "-U", USER, system]  # fmt: skip
    proc = run_tool(cmd, timeout=args.time + 60, env=pgbench_env(PASSWORD))
    try:
        if proc.returncode != 0:
            raise ValueError(f"pgbench exited {proc.returncode}")
        parsed = parse_pgbench(proc.stdout)
        if parsed["failed"]:
            raise ValueError(f"{parsed['failed']} failed transactions")
    except ValueError as exc:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-6:]
        return Run("pgbench", case, system, rnd, False, error=f"{exc}: " + " | ".join(tail))
    return Run("pgbench", case, system, rnd, True, tps=parsed["tps"], mean_us=parsed["latency_avg_ms"] * 1000,
               count=parsed["transactions"])


def scan_bounds(seed: int, n: int = 50_000) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(0, SCAN_K_MOD - 10_000) for _ in range(n)]


def scatter_run(conn: Any, system: str, case: str, rnd: int, seconds: float) -> Run:
    """Time every query of a loop on one connection for ``seconds``; the bounds are the same for both systems."""
    sql = SCAN_QUERY
    bounds = scan_bounds(rnd)
    latencies: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    cur = conn.cursor()
    try:
        for bound in bounds:
            start = clock()
            cur.execute(sql, (bound,))
            cur.fetchall()
            end = clock()
            latencies.append(end - start)
            if end >= deadline:
                break
    except Exception as exc:
        return Run("scatter", case, system, rnd, False, error=repr(exc))
    finally:
        cur.close()
    latencies.sort()
    us = [v / 1000 for v in latencies]
    return Run("scatter", case, system, rnd, True, p50_us=percentile(us, 50), p99_us=percentile(us, 99),
               mean_us=statistics.fmean(us), count=len(us), tps=len(us) / (sum(us) / 1e6))


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50), percentile([1.0, 2.0, 3.0, 4.0], 99)
    (2.0, 4.0)
    """
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


# -- parts ----------------------------------------------------------------------------------------------------------


def alternate(bench: Bench, mesh: Mesh, cases: Sequence[Any], run: Callable[[str, Any, int], Run],
              status: Callable[[Run], str], part: str) -> None:
    """Rounds of plain then sharded for every case: ratios are taken within a round."""
    for case in cases:
        for rnd in range(1, bench.args.rounds + 1):
            for system in SYSTEMS:
                try:
                    mesh.ensure_running(f"{part} {case} round {rnd} {system}")
                except (DbMeshStartError, OSError) as exc:
                    bench.record(Run(part, str(case), system, rnd, False, error=f"dbmesh restart failed: {exc}"), "")
                    continue
                result = run(system, case, rnd)
                bench.record(result, status(result) if result.ok else "")
                if not result.ok and mesh.proc is not None and not mesh.proc.is_running():
                    print(f"    dbmesh stderr: {mesh.stderr_tail()}", file=sys.stderr)


def part_sysbench(bench: Bench, mesh: Mesh) -> None:
    args = bench.args
    mesh.ensure_running("sysbench checks")
    ids = random.Random(1).sample(range(1, args.table_size + 1), 200)
    compare(bench, "sysbench", mesh, "COUNT(*), SUM(k), MIN(id), MAX(id) of sbtest1",
            [("SELECT COUNT(*), SUM(k), MIN(id), MAX(id) FROM sbtest1", ())])
    point = [("SELECT id, k, c, pad FROM sbtest1 WHERE id = %s", (i,)) for i in ids]
    compare(bench, "sysbench", mesh, "200 point selects by id (text)", point)
    if "auto" in args.ps_modes:
        compare(bench, "sysbench", mesh, "200 point selects by id (server-side prepared, binary rows)", point,
                prepared=True)
    cases = [(t, m) for t in args.threads for m in args.ps_modes]
    alternate(bench, mesh, cases, lambda s, c, r: sysbench_run(mesh, s, c[0], c[1], r, args),
              lambda r: f"{r.tps:,.0f} tps p50 {r.p50_us:.0f}µs p99 {r.p99_us:.0f}µs", "sysbench")


def part_pgbench(bench: Bench, mesh: Mesh) -> None:
    args = bench.args
    mesh.ensure_running("pgbench checks")
    aids = random.Random(2).sample(range(1, args.scale * 100_000 + 1), 200)
    compare(bench, "pgbench", mesh, "count, sums and bounds of pgbench_accounts",
            [("SELECT count(*), sum(bid), sum(abalance), min(aid), max(aid) FROM pgbench_accounts", ())])
    compare(bench, "pgbench", mesh, "200 account point selects (-S's query)",
            [("SELECT abalance, bid, aid FROM pgbench_accounts WHERE aid = %s", (a,)) for a in aids])
    compare(bench, "pgbench", mesh, "branches and tellers (single tables on ds_0)",
            [("SELECT count(*), sum(bid) FROM pgbench_tellers", ()), ("SELECT count(*) FROM pgbench_branches", ())])
    cases = [(c, m) for c in args.clients for m in args.pg_modes]
    alternate(bench, mesh, cases, lambda s, c, r: pgbench_run(mesh, s, c[0], c[1], r, args),
              lambda r: f"{r.tps:,.0f} tps avg {r.mean_us:.0f}µs", "pgbench")


def part_scatter(bench: Bench, dialect: Dialect, mesh: Mesh) -> None:
    args = bench.args
    mesh.ensure_running(f"scatter {dialect} checks")
    compare(bench, f"scatter-{dialect}", mesh, "COUNT(*), SUM(k) of t_scan",
            [("SELECT COUNT(*), SUM(k) FROM t_scan", ())])
    ids = random.Random(3).sample(range(1, args.scatter_rows + 1), 100)
    compare(bench, f"scatter-{dialect}", mesh, "100 point selects by id (placement agrees with the rule)",
            [("SELECT id, k, c FROM t_scan WHERE id = %s", (i,)) for i in ids])
    compare(bench, f"scatter-{dialect}", mesh, "200 scatter queries (the timed query)",
            [(SCAN_QUERY, (b,)) for b in scan_bounds(0, 200)])
    conns: dict[str, Any] = {}

    def run(system: str, case: Any, rnd: int) -> Run:
        conn = conns.get(system)
        if conn is None or mesh.starts != conns.get("starts"):
            conns.update({"starts": mesh.starts})
            conn = conns[system] = mesh_connect(mesh, system)
        return scatter_run(conn, system, case, rnd, args.scatter_time)

    try:
        alternate(bench, mesh, [dialect], run,
                  lambda r: f"{r.count} queries p50 {r.p50_us:.0f}µs p99 {r.p99_us:.0f}µs", "scatter")
    finally:
        for key, conn in conns.items():
            if key != "starts":
                conn.close()


# -- report ---------------------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    kept = [v for v in values if v == v]  # drop NaN
    return statistics.median(kept) if kept else float("nan")


# part -> (the Run field compared, the target for sharded / plain, how the ratio must compare to it)
MEASURES = {
    "sysbench": ("tps", TARGET_TPS_RATIO, ">="),
    "pgbench": ("tps", TARGET_TPS_RATIO, ">="),
    "scatter": ("p50_us", TARGET_SCATTER_P50_RATIO, "<="),
}


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    """One entry per (part, case): per-system medians, per-round sharded/plain ratios and their median."""
    out: list[dict[str, Any]] = []
    # Parts in the order of PARTS whatever order they ran in (the dialects interleave them); cases as they ran.
    keys = sorted(dict.fromkeys((r.part, r.case) for r in runs), key=lambda k: PARTS.index(k[0]))
    for part, case in keys:
        mine = [r for r in runs if r.part == part and r.case == case]
        measure, target, op = MEASURES[part]
        systems = {}
        for system in SYSTEMS:
            ok = [r for r in mine if r.system == system and r.ok]
            systems[system] = {"runs": len(ok), "tps": median([r.tps for r in ok]),
                               "p50_us": median([r.p50_us for r in ok]), "p99_us": median([r.p99_us for r in ok]),
                               "mean_us": median([r.mean_us for r in ok]),
                               "errors": [r.error for r in mine if r.system == system and not r.ok]}  # fmt: skip
        ratios: dict[str, list[float]] = {name: [] for name in dict.fromkeys((measure, "p50_us", "p99_us", "mean_us"))}
        for rnd in sorted({r.round for r in mine}):
            by = {r.system: r for r in mine if r.round == rnd and r.ok}
            if "plain" in by and "sharded" in by:
                for name in ratios:
                    a, b = getattr(by["plain"], name), getattr(by["sharded"], name)
                    if a == a and b == b and a > 0:
                        ratios[name].append(b / a)
        ratio = median(ratios[measure])
        met = None if ratio != ratio else (ratio >= target if op == ">=" else ratio <= target)
        out.append({"part": part, "case": case, "measure": measure, "target": f"{op} {target}", "ratio": ratio,
                    "meets": met, "systems": systems, "per_round_ratios": ratios,
                    "median_ratios": {k: median(v) for k, v in ratios.items()}})  # fmt: skip
    return out


def describe_case(entry: dict[str, Any]) -> tuple[str, str]:
    """(workload, case) labels for tables."""
    part, case = entry["part"], entry["case"]
    if part == "sysbench":
        threads, mode = case.split("/")
        return "sysbench point_select", f"{threads} thr, ps {mode}"
    if part == "pgbench":
        clients, mode = case.split("/")
        return "pgbench -S", f"{clients} cl, -M {mode}"
    return "scatter ORDER BY k LIMIT 10", case


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    """A figure with its unit, or "-" when it was not measured (NaN here, null in a reloaded JSON)."""
    return "-" if value is None or value != value else format(value, spec) + unit


def print_report(bench: Bench, summary: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, shutil.get_terminal_size().columns))
    table = Table(title=f"sharded vs plain dbmesh — {bench.args.rounds} rounds (medians; ratio = median of "
                        "per-round sharded/plain)")  # fmt: skip
    for col in ("workload", "case", "plain", "sharded", "ratio", "target", "verdict", "runs"):
        table.add_column(col, justify="left" if col in ("workload", "case", "verdict") else "right")
    for e in summary:
        workload, case = describe_case(e)
        sy = e["systems"]
        if e["measure"] == "tps":
            plain, sharded = _fmt(sy["plain"]["tps"], ",.0f", " tps"), _fmt(sy["sharded"]["tps"], ",.0f", " tps")
        else:
            plain, sharded = _fmt(sy["plain"]["p50_us"], ".0f", " µs p50"), _fmt(sy["sharded"]["p50_us"], ".0f", " µs p50")
        verdict = {None: "[yellow]not measured[/]", True: "[green]meets[/]", False: "[red]misses[/]"}[e["meets"]]
        if e["meets"] is None and sy["sharded"]["errors"]:
            verdict = "[red]fails (error below)[/]"
        table.add_row(workload, case, plain, sharded, _fmt(e["ratio"], ".3f"), e["target"], verdict,
                      f"{sy['plain']['runs']}/{sy['sharded']['runs']}")  # fmt: skip
    console.print(table)
    for c in bench.checks:
        if not c.ok:
            console.print(f"[red]answer check failed[/] {c.part}: {c.what}: {c.detail}", markup=True, highlight=False)
    for part, why in bench.failures.items():
        console.print(f"[red]{part} was not measured:[/] {why}", markup=True, highlight=False)
    for e in summary:
        for system in SYSTEMS:
            for err in e["systems"][system]["errors"][:1]:
                console.print(f"[red]{e['part']} {e['case']} {system} failed:[/] {err}", markup=True,
                              highlight=False)  # fmt: skip




def readme_block(document: dict[str, Any]) -> str:
    """The Markdown that goes between the README markers, from a results document (fresh or reloaded)."""
    s, summary = document["settings"], document["summary"]
    lines = [
        "Sharding: the same workloads on a logical database sharded over two data sources and on an unsharded one "
        "(one data source, dbmesh's plain path), both through dbmesh, in alternating rounds "
        "(`benchmarks/bench_sharded.py`, results in `benchmarks/results/sharded.json`). Targets: sharded >= 0.9 x "
        "plain throughput for sysbench `oltp_point_select` and `pgbench -S`; a 4-shard scatter "
        "`SELECT id, k, c FROM t_scan WHERE k >= ? ORDER BY k LIMIT 10` (k indexed, not a sharding column) at "
        "<= 2 x the p50 latency of the same query on one table.",
        "",
        f"sysbench table-size {s['table_size']:,} (`--rand-type=uniform`), pgbench scale {s['scale']}, scatter table "
        f"{s['scatter_rows']:,} rows; {s['time_s']} s per tool run and {s['scatter_time_s']} s per scatter run, "
        f"{s['rounds']} rounds; {s['versions'].get('mariadb', '-')}, PostgreSQL {s['versions'].get('postgresql', '-')}, "
        f"a shared {document['machine']['cpus']}-core machine, {document['when']}, dbmesh at "
        f"{_revision_text(document['dbmesh'])} (medians; ratios are medians of per-round sharded/plain ratios).",
        "",
        "| workload | case | plain | sharded | sharded / plain | target | |",
        "|:---|:---|---:|---:|---:|---:|:---|",
    ]
    for e in summary:
        workload, case = describe_case(e)
        sy = e["systems"]
        if e["measure"] == "tps":
            plain, sharded = _fmt(sy["plain"]["tps"], ",.0f", " TPS"), _fmt(sy["sharded"]["tps"], ",.0f", " TPS")
        else:
            plain, sharded = _fmt(sy["plain"]["p50_us"], ".0f", " µs p50"), _fmt(sy["sharded"]["p50_us"], ".0f", " µs p50")
        verdict = {None: "not measured", True: "meets", False: "**misses**"}[e["meets"]]
        if e["meets"] is None and sy["sharded"]["errors"]:
            verdict = "**fails** (error below)"
        lines.append(f"| {workload} | {case} | {plain} | {sharded} | {_fmt(e['ratio'], '.3f')} "
                     f"| {e['target']} | {verdict} |")  # fmt: skip
    for e in summary:
        for system in SYSTEMS:
            failed = e["systems"][system]["errors"]
            if failed:
                workload, case = describe_case(e)
                lines += ["", f"{workload} {case}: {len(failed)} {system} run(s) failed: `{_first_error(failed[0])}`"]
    missed = [e for e in summary if e["meets"] is False]
    if missed:
        names = "; ".join(f"{describe_case(e)[0]} {describe_case(e)[1]} at {_fmt(e['ratio'], '.3f')}" for e in missed)
        lines += ["", f"Targets missed in this run: {names}."]
    bad = [c for c in document["checks"] if not c["ok"]]
    checked = len(document["checks"])
    lines += ["", f"Answers checked through dbmesh before timing (totals, point selects, the scatter query on both "
                  f"logical databases): {checked - len(bad)} of {checked} checks identical."]  # fmt: skip
    for c in bad:
        lines += ["", f"**Check failed** (answers differ or the sharded database raised): {c['part']}: "
                      f"{c['what']}: {c['detail']}"]
    for part in document["failures"]:
        lines += ["", f"{part} was not measured in this run (see `failures` in the JSON)."]
    if document["notes"]:
        lines += ["", f"dbmesh was found exited and restarted {len(document['notes'])} time(s) during this run "
                      "(`notes` in the JSON)."]  # fmt: skip
    return "\n".join(lines)


def _first_error(text: str, limit: int = 200) -> str:
    """The first line of a failed run's output that names an error, shortened for the README.

    >>> _first_error("sysbench exited 1: Threads started! | FATAL: boom (1243) | FATAL: again")
    'FATAL: boom (1243)'
    """
    parts = [re.sub(r"^\w+ exited -?\d+: ", "", p.strip()) for p in text.split(" | ")]
    named = [p for p in parts if "error" in p.lower() or "fatal" in p.lower()]
    line = (named or parts)[0].replace("`", "'")
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _revision_text(revision: dict[str, Any]) -> str:
    changed = revision["uncommitted_engine_files"]
    if not changed:
        return f"`{revision['commit']}`"
    names = ", ".join(f"`{name}`" for name in changed) if len(changed) <= 3 else f"{len(changed)} engine files"
    return f"`{revision['commit']}` plus uncommitted changes to {names}"


def update_readme(path: Path, block: str) -> None:
    update_readme_block(path, "sharded", block)


def _nan_to_none(value: Any) -> Any:
    """JSON has no NaN: unmeasured figures become null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


# -- main -----------------------------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t]


def _words(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--parts", type=_words, default=list(PARTS), help="subset of sysbench,pgbench,scatter")
    p.add_argument("--time", type=int, default=4, help="seconds per sysbench/pgbench run (default 4)")
    p.add_argument("--rounds", type=int, default=3, help="plain/sharded rounds per case (default 3)")
    p.add_argument("--threads", type=_ints, default=[1, 8], help="sysbench thread counts (default 1,8)")
    p.add_argument("--ps-modes", type=_words, default=["disable", "auto"], help="sysbench --db-ps-mode values")
    p.add_argument("--table-size", type=int, default=100_000, help="sysbench rows (default 100000)")
    p.add_argument("--clients", type=_ints, default=[1, 8], help="pgbench client counts (default 1,8)")
    p.add_argument("--pg-modes", type=_words, default=["simple", "prepared"],
                   help="pgbench -M modes (default simple,prepared; extended also works)")  # fmt: skip
    p.add_argument("--scale", type=int, default=5, help="pgbench -i scale (default 5: 500,000 accounts)")
    p.add_argument("--scatter-rows", type=int, default=100_000, help="rows of t_scan (default 100000)")
    p.add_argument("--scatter-time", type=float, default=3.0, help="seconds per scatter run (default 3)")
    p.add_argument("--scatter-dialects", type=_words, default=["mysql", "postgresql"])
    p.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "sharded.json")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, dbmesh logs)")
    p.add_argument("--update-readme", action="store_true", help="rewrite the sharded block in README.md")
    p.add_argument("--readme-from", type=Path, metavar="JSON",
                   help="only rewrite the README block from a results file written earlier; measure nothing")
    args = p.parse_args(argv)
    if bad := [x for x in args.parts if x not in PARTS]:
        p.error(f"unknown part(s) {bad}: choose from {PARTS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.readme_from is not None:
        update_readme(ROOT / "README.md", readme_block(json.loads(args.readme_from.read_text())))
        return 0
    tools = {"sysbench": "sysbench", "pgbench": "pgbench"}
    missing = [tool for part, tool in tools.items() if part in args.parts and shutil.which(tool) is None]
    if missing:
        print(f"{', '.join(missing)} not found: run `make install` (scripts/install.sh installs them)",
              file=sys.stderr)  # fmt: skip
        return 2
    started = time.monotonic()
    revision = engine_revision()
    workdir = Path(tempfile.mkdtemp(prefix="dbmesh-bench-sharded-"))
    bench = Bench(args, workdir)
    want_mysql = "sysbench" in args.parts or ("scatter" in args.parts and "mysql" in args.scatter_dialects)
    want_pg = "pgbench" in args.parts or ("scatter" in args.parts and "postgresql" in args.scatter_dialects)
    mariadb: MariaDB | None = None
    pg: PostgreSQL | None = None
    managed_mysql = managed_pg = False
    meshes: list[Mesh] = []
    try:
        if want_mysql:
            mariadb = MariaDB.from_env()
            if mariadb is None:
                managed_mysql = True
                mariadb = MariaDB.managed_in(workdir / "mariadb").start()
            bench.versions["mariadb"] = str(mariadb.execute("SELECT VERSION()")[0][0])
            mesh = Mesh("mysql", mariadb, workdir, bench.notes)
            meshes.append(mesh)
            run_dialect(bench, "mysql", mariadb, mesh)
        if want_pg:
            pg = PostgreSQL.from_env()
            if pg is None:
                managed_pg = True
                pg = PostgreSQL.throwaway(prefix="dbmesh-bench-sharded-pg-").start()
            bench.versions["postgresql"] = str(pg.execute("SHOW server_version")[0][0]).split(" ")[0]
            mesh = Mesh("postgresql", pg, workdir, bench.notes)
            meshes.append(mesh)
            run_dialect(bench, "postgresql", pg, mesh)

        summary = summarize(bench.runs)
        print_report(bench, summary)
        document = {
            "benchmark": "sharded vs plain dbmesh: sysbench oltp_point_select, pgbench -S, scatter ORDER BY LIMIT",
            "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "dbmesh": revision,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "settings": {"parts": args.parts, "time_s": args.time, "rounds": args.rounds, "threads": args.threads,
                         "ps_modes": args.ps_modes, "table_size": args.table_size, "rand_type": "uniform",
                         "clients": args.clients, "pg_modes": args.pg_modes, "scale": args.scale,
                         "scatter_rows": args.scatter_rows, "scatter_time_s": args.scatter_time,
                         "scatter_query": SCAN_QUERY, "scatter_clients": "mysqlclient (MySQLdb), psycopg 3",
                         "pool_size": POOL_SIZE, "versions": bench.versions,
                         "servers_managed": {"mariadb": managed_mysql, "postgresql": managed_pg},
                         "elapsed_s": round(time.monotonic() - started, 1)},
            "targets": {"sysbench_sharded_over_plain_tps_min": TARGET_TPS_RATIO,
                        "pgbench_sharded_over_plain_tps_min": TARGET_TPS_RATIO,
                        "scatter_sharded_over_plain_p50_max": TARGET_SCATTER_P50_RATIO},
            "checks": [asdict(c) for c in bench.checks],
            "failures": bench.failures,
            "notes": bench.notes,
            "summary": summary,
            "runs": [asdict(r) for r in bench.runs],
        }  # fmt: skip
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(_nan_to_none(document), indent=2, ensure_ascii=False) + "\n")
        print(f"results written to {args.output} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
        if args.update_readme:
            update_readme(ROOT / "README.md", readme_block(_nan_to_none(document)))
        return 0
    finally:
        for mesh in meshes:
            mesh.stop()
        if mariadb is not None and managed_mysql:
            mariadb.stop()
        if pg is not None and managed_pg:
            pg.destroy()
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def engine_revision() -> dict[str, Any]:
    """The commit dbmesh ran from and the engine files that differed from it (dbmesh runs from the working tree)."""

    def git(*cmd: str) -> str:
        proc = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=False)
        return proc.stdout if proc.returncode == 0 else ""

    # Porcelain lines are "XY path": the status columns may begin with a space, so nothing is stripped before them.
    changed = [line[3:] for line in git("status", "--porcelain", "--", "dbmesh").splitlines() if len(line) > 3]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "uncommitted_engine_files": changed}


def run_dialect(bench: Bench, dialect: Dialect, server: Any, mesh: Mesh) -> None:
    """Load the data of ``dialect``'s parts, then start dbmesh and measure them; a part that cannot run is
    recorded and the others still run. dbmesh starts after the loads, so it never sees a table half made."""
    args = bench.args
    for database in (PLAIN_DB, *SHARD_DBS.values()):
        server.ensure_database(database)
    parts: list[tuple[str, Callable[[], None], Callable[[], None]]] = []
    if dialect == "mysql" and "sysbench" in args.parts:
        parts.append(("sysbench", lambda: load_sysbench(server, args.table_size),
                      lambda: part_sysbench(bench, mesh)))
    if dialect == "postgresql" and "pgbench" in args.parts:
        parts.append(("pgbench", lambda: load_pgbench(server, args.scale), lambda: part_pgbench(bench, mesh)))
    if "scatter" in args.parts and dialect in args.scatter_dialects:
        load_scan = load_scan_mysql if dialect == "mysql" else load_scan_pg
        parts.append((f"scatter-{dialect}", lambda: load_scan(server, args.scatter_rows),
                      lambda: part_scatter(bench, dialect, mesh)))
    loaded: list[tuple[str, Callable[[], None]]] = []
    for name, load, measure in parts:
        print(f"{name}: loading", file=sys.stderr)
        try:
            load()
            loaded.append((name, measure))
        except Exception as exc:  # a part that cannot load is reported; the others still run
            bench.failures[name] = f"loading failed: {exc!r}"
            print(f"{name}: loading failed: {exc!r}", file=sys.stderr)
    if not loaded:
        return
    try:
        mesh.start()
    except (DbMeshStartError, OSError) as exc:
        for name, _ in loaded:
            bench.failures[name] = f"dbmesh did not start: {exc}"
        print(f"{dialect} dbmesh did not start: {exc}", file=sys.stderr)
        return
    for name, measure in loaded:
        try:
            measure()
        except Exception as exc:  # a broken part is reported; the other parts still run
            bench.failures[name] = f"{exc!r}\ndbmesh stderr:\n{mesh.stderr_tail()}"
            print(f"{name} failed: {exc!r}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
