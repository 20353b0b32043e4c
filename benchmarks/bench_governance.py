"""What traffic governance costs per statement, and how fast a pushed configuration reaches Cluster-mode sidecars.

    .venv/bin/python benchmarks/bench_governance.py [--parts gate,apply] [--time 4] [--rounds 3] [--pushes 10]

Parts, each with its own target:

1. **gate**: two ``dbmesh serve`` processes serve the same unsharded logical database (one data source on the same
   physical database, same settings, both running throughout):

   - **plain**: no traffic rules;
   - **governed**: a global ``!TRAFFIC`` rule with a QPS flow rule on the benchmark's user
     (``user:root``, 1,000,000 a second, REJECT: never reached, so every statement pays the check and passes) and
     an ERROR_RATIO circuit breaker on ``ds_0`` (0.5 over 1 s, at least 5 requests, open 10 s: every statement
     is counted in its window).

   sysbench ``oltp_point_select`` (``--table-size``, default 100,000 rows, ``--rand-type=uniform``) at 1 and 8
   threads with ``--db-ps-mode=disable``, and ``pgbench -S`` (scale ``--scale``, default 5) at 1 and 8 clients
   with ``-M simple``. Target: governed TPS >= 0.9 x plain TPS. Before timing, answers of point selects are
   checked identical on both processes, and the admin ``/metrics`` must show the flow rule and the (closed)
   breaker on the governed process and no traffic series on the plain one; around every governed run the flow
   rule's ``dbmesh_rate_limit_passed_total`` and ``_rejected_total`` counters are read, and the run only counts as governed if the rule passed at least as many statements as the tool
   reports transactions (one statement each) and rejected none, so a path that skipped the gate would show.
2. **apply**: a one-node ZooKeeper and two sidecars in Cluster mode on one namespace, serving a table
   ``t_item`` sharded over two data sources by ``ds_${id % 2}``. ``--pushes`` times (default 10), the command
   line ``python -m dbmesh governance push --config DIR`` pushes the other of ``ds_${id % 2}`` and
   ``ds_${(id + 1) % 2}``, while ``PREVIEW SELECT v FROM t_item WHERE id = 1`` is polled every 5 ms through
   PyMySQL on both sidecars until both route it to the new data source. Recorded per push: the command's own
   run time, and the time until both sidecars route by the new rule, from the command returning and from its
   start. Target: applied on both within 1 s of the command returning (the maximum over the pushes).

Method of the gate part as in bench_sharded.py (whose helpers it uses): for each case the rounds run plain,
governed, plain, governed, ... so drift of the machine hits both alike; ratios are taken *within* a round and
the median across rounds is reported. Data is written directly on the physical database (sysbench ``prepare``,
``pgbench -i``), never through dbmesh. Results go to benchmarks/results/governance.json; ``--update-readme``
rewrites the README block between ``<!-- bench:governance:start -->`` and ``<!-- bench:governance:end -->``.
Servers: a throwaway MariaDB, PostgreSQL 15 and ZooKeeper started here (the databases may instead be the ones
named by ``DBMESH_TEST_MYSQL_*`` / ``DBMESH_TEST_PG_*``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_sharded import (  # noqa: E402
    PASSWORD,
    POOL_SIZE,
    USER,
    Bench,
    Mesh,
    Run,
    _first_error,
    _fmt,
    _ints,
    _nan_to_none,
    _revision_text,
    _words,
    engine_revision,
    fetch,
    median,
    pg_connect,
    pgbench_env,
    pgbench_run,
    sysbench_base,
    sysbench_run,
)
from readme_block import update_readme_block  # noqa: E402

from tests.support import DbMeshProcess, DbMeshStartError, MariaDB, PostgreSQL  # noqa: E402
from tests.support.sharded import (  # noqa: E402
    Dialect,
    Tagged,
    dump_yaml,
    inline_algorithm,
    run_statements,
    sharded_database,
    standard,
    start_sharded_dbmesh,
    write_sharded_config,
)
from tests.support.zookeeper import ZooKeeperEnsemble  # noqa: E402

PARTS = ("gate", "apply")
GATE_TOOLS = ("sysbench", "pgbench")
SYSTEMS = ("plain", "governed")  # also the logical database names, so bench_sharded's tool runners fit as they are
GATE_DB = "bgov_gate"  # the physical database both processes serve

APPLY_DB = "bgov_apply"  # logical database of the Cluster-mode sidecars
APPLY_PHYSICAL = {"ds_0": "bgov_apply_0", "ds_1": "bgov_apply_1"}
APPLY_EXPRESSIONS = ("ds_${id % 2}", "ds_${(id + 1) % 2}")  # id 1 goes to ds_1, then to ds_0
APPLY_PROBE = "PREVIEW SELECT v FROM t_item WHERE id = 1"
APPLY_NAMESPACE = "dbmesh_bench_governance"

TARGET_TPS_RATIO = 0.9  # governed / plain, at least
TARGET_APPLY_S = 1.0  # from the push command returning to both sidecars applying it, at most

FLOW_RESOURCE = f"user:{USER}"


def traffic_rule() -> Tagged:
    """The governed process's global rule: a flow rule never reached and a breaker that counts every statement."""
    return Tagged("TRAFFIC", {
        "flowRules": [{"resource": FLOW_RESOURCE, "grade": "QPS", "count": 1_000_000, "controlBehavior": "REJECT"}],
        "circuitBreakers": [{"resource": "ds_0", "grade": "ERROR_RATIO", "count": 0.5, "timeWindow": 10,
                             "minRequestAmount": 5, "statIntervalMs": 1000}],
    })  # fmt: skip


# -- gate: the two processes ----------------------------------------------------------------------------------------


class GateMesh(Mesh):
    """One dbmesh process of the gate part: logical database ``system`` on the physical ``GATE_DB``, with the
    traffic rule when ``system`` is governed. Restarted (and noted) like bench_sharded's Mesh."""

    def __init__(self, system: str, dialect: Dialect, server: Any, workdir: Path, notes: list[str]) -> None:
        super().__init__(dialect, server, workdir, notes)
        self.system = system

    def start(self) -> GateMesh:
        self.starts += 1
        document = sharded_database(self.system, self.dialect, self.server, {"ds_0": GATE_DB}, [],
                                    max_pool_size=POOL_SIZE)  # fmt: skip
        config = write_sharded_config(self.workdir / f"dbmesh-{self.dialect}-{self.system}-{self.starts}",
                                      self.server, {self.system: document}, tls=False)  # fmt: skip
        if self.system == "governed":
            # The config writer dumps plain YAML; a tagged global rule needs dump_yaml.
            (config.config_dir / "global.yaml").write_text(dump_yaml({**config.global_config,
                                                                      "rules": [traffic_rule()]}))
        self.proc = start_sharded_dbmesh(config, postgresql=self.dialect == "postgresql")
        return self


def gate_connect(mesh: GateMesh) -> Any:
    """A client connection to the mesh's logical database (mysqlclient or psycopg, as bench_sharded's)."""
    if mesh.dialect == "postgresql":
        return pg_connect(mesh.host, mesh.port, mesh.system)
    import MySQLdb

    return MySQLdb.connect(host=mesh.host, port=mesh.port, user=USER, password=PASSWORD, database=mesh.system,
                           autocommit=True, connect_timeout=10)  # fmt: skip


_SAMPLE = re.compile(r'^(?P<name>[a-z_]+)\{resource="(?P<resource>[^"]*)"\} (?P<value>\S+)$')


def traffic_metrics(mesh: GateMesh) -> dict[tuple[str, str], float]:
    """(metric, resource) -> value of the traffic series on the process's admin ``/metrics``.

    Read over HTTP rather than with SHOW RATE LIMITS so that both listeners' processes are read the same way."""
    assert mesh.proc is not None
    url = f"http://{mesh.proc.host}:{mesh.proc.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m["name"].startswith(("dbmesh_rate_limit_", "dbmesh_circuit_breaker_state")) \
                and not m["name"].endswith("_created"):
            out[(m["name"], m["resource"])] = float(m["value"])
    return out


def flow_counters(mesh: GateMesh) -> tuple[int, int]:
    """(passed, rejected) of the governed process's flow rule."""
    series = traffic_metrics(mesh)
    key = ("dbmesh_rate_limit_passed_total", FLOW_RESOURCE)
    if key not in series:
        raise RuntimeError(f"no {key[0]} series for {FLOW_RESOURCE} on /metrics")
    return int(series[key]), int(series[("dbmesh_rate_limit_rejected_total", FLOW_RESOURCE)])


@dataclass
class GateCount:
    """What the governed process's flow rule counted during one governed run."""

    part: str
    case: str
    round: int
    transactions: int  # as the tool reports them (sysbench: TPS x --time, a lower bound of its count)
    passed: int | None  # None: the counters could not be read (the process was restarted in between)
    rejected: int | None


def gate_checks(bench: Bench, part: str, meshes: dict[str, GateMesh], queries: Sequence[tuple[str, Sequence[Any]]]
                ) -> None:
    """Same answers on both processes; the traffic rules on the governed one only (the benchmark would measure
    nothing if the governed process had dropped its rule)."""
    for mesh in meshes.values():
        mesh.ensure_running(f"{part} checks")
    try:
        conns = {system: gate_connect(mesh) for system, mesh in meshes.items()}
    except Exception as exc:
        bench.check(part, "point selects identical on both processes", False, f"connect failed: {exc!r}")
        return
    try:
        answers = {system: [fetch(conn, sql, params) for sql, params in queries] for system, conn in conns.items()}
        same = answers["plain"] == answers["governed"] and any(answers["plain"])
        differ = sum(a != b for a, b in zip(answers["plain"], answers["governed"], strict=True))
        bench.check(part, f"{len(queries)} point selects identical on both processes", same,
                    f"{differ} of {len(queries)} differ" if differ else
                    f"{len(queries)} queries" if same else "every answer was empty")  # fmt: skip
    except Exception as exc:
        bench.check(part, f"{len(queries)} point selects identical on both processes", False, repr(exc))
    finally:
        for conn in conns.values():
            conn.close()
    # After the point selects: the governed process's flow rule has passed them and its breaker on ds_0 is
    # closed; the plain process exports no traffic series at all.
    series = {system: traffic_metrics(mesh) for system, mesh in meshes.items()}
    governed = series["governed"]
    passed = governed.get(("dbmesh_rate_limit_passed_total", FLOW_RESOURCE), 0.0)
    breaker = governed.get(("dbmesh_circuit_breaker_state", f"{meshes['governed'].system}.ds_0"))
    ok = not series["plain"] and passed >= len(queries) and breaker == 0.0
    bench.check(part, "traffic rules in force on the governed process only", ok,
                f"plain {series['plain']}, governed {governed}")  # fmt: skip


def alternate_pair(bench: Bench, meshes: dict[str, GateMesh], cases: Sequence[Any],
                   run: Callable[[GateMesh, str, Any, int], Run], status: Callable[[Run], str], part: str,
                   counts: list[GateCount]) -> None:
    """Rounds of plain then governed for every case; the governed process's flow counters are read around each
    of its runs."""
    for case in cases:
        for rnd in range(1, bench.args.rounds + 1):
            for system in SYSTEMS:
                mesh = meshes[system]
                try:
                    mesh.ensure_running(f"{part} {case} round {rnd} {system}")
                except (DbMeshStartError, OSError) as exc:
                    bench.record(Run(part, _case(case), system, rnd, False, error=f"dbmesh restart failed: {exc}"), "")
                    continue
                before = _counters_or_none(mesh) if system == "governed" else None
                result = run(mesh, system, case, rnd)
                bench.record(result, status(result) if result.ok else "")
                if not result.ok and mesh.proc is not None and not mesh.proc.is_running():
                    print(f"    dbmesh stderr: {mesh.stderr_tail()}", file=sys.stderr)
                if system == "governed" and result.ok:
                    after = _counters_or_none(mesh) if mesh.proc is not None and mesh.proc.is_running() else None
                    passed = rejected = None
                    if before is not None and after is not None:
                        passed, rejected = after[0] - before[0], after[1] - before[1]
                    counts.append(GateCount(part, result.case, rnd, result.count, passed, rejected))


def _case(case: Any) -> str:
    return "/".join(str(c) for c in case) if isinstance(case, tuple) else str(case)


def _counters_or_none(mesh: GateMesh) -> tuple[int, int] | None:
    try:
        return flow_counters(mesh)
    except Exception as exc:  # reported as an unread count, the run itself still counts
        print(f"    reading the flow counters failed: {exc!r}", file=sys.stderr)
        return None


def check_counts(bench: Bench, part: str, counts: list[GateCount]) -> None:
    """Every governed run: the flow rule passed at least the statements the tool reports, and rejected none."""
    unread = [c for c in counts if c.passed is None]
    short = [c for c in counts if c.passed is not None and (c.passed < c.transactions or c.rejected)]
    if short:
        detail = "; ".join(f"{c.case} round {c.round}: {c.transactions} transactions, passed {c.passed}, "
                           f"rejected {c.rejected}" for c in short[:3])  # fmt: skip
    elif unread:
        detail = f"{len(unread)} of {len(counts)} run(s) unread"
    else:
        detail = (f"{len(counts)} governed runs: {sum(c.passed or 0 for c in counts):,} statements passed for "
                  f"{sum(c.transactions for c in counts):,} transactions reported, none rejected")
    bench.check(part, "the flow rule passed every statement of the governed runs and rejected none",
                bool(counts) and not short and not unread, detail)  # fmt: skip


def load_gate_sysbench(mariadb: MariaDB, table_size: int) -> None:
    base = sysbench_base(mariadb.host, mariadb.port, mariadb.user, mariadb.password, GATE_DB, table_size)
    subprocess.run([*base, "cleanup"], capture_output=True, check=False)
    prep = subprocess.run([*base, "--auto-inc=off", "prepare"], capture_output=True, text=True, check=False)
    if prep.returncode != 0:
        raise RuntimeError(f"sysbench prepare failed: {prep.stdout[-2000:]} {prep.stderr[-2000:]}")
    run_statements(mariadb, GATE_DB, ["ANALYZE TABLE sbtest1"])


def load_gate_pgbench(pg: PostgreSQL, scale: int) -> None:
    proc = subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), "-h", pg.host, "-p", str(pg.port), "-U", pg.user,
                           GATE_DB], capture_output=True, text=True, env=pgbench_env(pg.password), check=False)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench -i on {GATE_DB} failed: {proc.stderr[-2000:]}")


def part_gate(bench: Bench, tool: str, server: Any, counts: list[GateCount]) -> None:
    """Load the tool's data, start both processes and alternate them over the tool's cases."""
    args = bench.args
    dialect: Dialect = "mysql" if tool == "sysbench" else "postgresql"
    server.ensure_database(GATE_DB)
    print(f"gate {tool}: loading", file=sys.stderr)
    if tool == "sysbench":
        load_gate_sysbench(server, args.table_size)
    else:
        load_gate_pgbench(server, args.scale)
    meshes = {system: GateMesh(system, dialect, server, bench.workdir, bench.notes) for system in SYSTEMS}
    try:
        for mesh in meshes.values():
            mesh.start()
        if tool == "sysbench":
            ids = random.Random(1).sample(range(1, args.table_size + 1), 100)
            gate_checks(bench, tool, meshes, [("SELECT id, k, c, pad FROM sbtest1 WHERE id = %s", (i,)) for i in ids])
            cases: list[Any] = [(t, m) for t in args.threads for m in args.ps_modes]
            alternate_pair(bench, meshes, cases, lambda mesh, s, c, r: sysbench_run(mesh, s, c[0], c[1], r, args),
                           lambda r: f"{r.tps:,.0f} tps p50 {r.p50_us:.0f}µs p99 {r.p99_us:.0f}µs", tool, counts)
        else:
            aids = random.Random(2).sample(range(1, args.scale * 100_000 + 1), 100)
            gate_checks(bench, tool, meshes,
                        [("SELECT abalance, bid, aid FROM pgbench_accounts WHERE aid = %s", (a,)) for a in aids])
            cases = [(c, m) for c in args.clients for m in args.pg_modes]
            alternate_pair(bench, meshes, cases, lambda mesh, s, c, r: pgbench_run(mesh, s, c[0], c[1], r, args),
                           lambda r: f"{r.tps:,.0f} tps avg {r.mean_us:.0f}µs", tool, counts)
        check_counts(bench, tool, [c for c in counts if c.part == tool])
    finally:
        for mesh in meshes.values():
            mesh.stop()


# -- apply: pushes to Cluster-mode sidecars ------------------------------------------------------------------------


@dataclass
class Push:
    """One pushed change and when the sidecars applied it (seconds; None: not within the timeout)."""

    index: int
    expression: str
    want: str  # the data source id 1 routes to under the pushed expression
    ok: bool
    cli_s: float = float("nan")  # the push command's run time, start to exit
    applied_after_cli_s: float | None = None  # both sidecars, from the command's exit (0 if already applied)
    applied_after_start_s: float | None = None  # both sidecars, from the command's start
    applied_before_cli_exit: bool = False  # both had applied it before the command had exited
    per_sidecar_after_start_s: list[float | None] = field(default_factory=list)
    error: str = ""


def sharding_rules(expression: str) -> list[Tagged]:
    return [Tagged("SHARDING", {
        "tables": {"t_item": {"actualDataNodes": "ds_${0..1}.t_item", "databaseStrategy": standard("id", "by_id")}},
        "shardingAlgorithms": {"by_id": inline_algorithm(expression)},
    })]  # fmt: skip


def cluster_mode(ensemble: ZooKeeperEnsemble) -> dict[str, Any]:
    return {"mode": {"type": "Cluster", "repository": {"type": "ZooKeeper", "props": {
        "namespace": APPLY_NAMESPACE, "server-lists": ensemble.server_lists}}}}  # fmt: skip


def push_command(config_dir: Path, message: str) -> list[str]:
    return [sys.executable, "-m", "dbmesh", "governance", "push", "--message", message, "--config", str(config_dir)]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def route_of(conn: Any) -> str:
    with conn.cursor() as cur:
        cur.execute(APPLY_PROBE)
        return str(cur.fetchall()[0][0])


def time_push(index: int, config_dir: Path, expression: str, want: str, probes: list[Any], timeout: float,
              interval: float = 0.005) -> Push:
    """Run the push command and poll both sidecars every ``interval`` from its start until both route id 1 to
    ``want``; the command's exit is noticed within the same loop, so both clocks come from one timeline."""
    push = Push(index, expression, want, False)
    start = time.monotonic()
    cli = subprocess.Popen(push_command(config_dir, f"bench push {index}: {expression}"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=str(ROOT))  # fmt: skip
    cli_end: float | None = None
    seen: list[float | None] = [None] * len(probes)
    try:
        while time.monotonic() - start < timeout:
            now = time.monotonic()
            if cli_end is None and cli.poll() is not None:
                cli_end = now
                if cli.returncode != 0:
                    break
            for i, conn in enumerate(probes):
                if seen[i] is None and route_of(conn) == want:
                    seen[i] = time.monotonic() - start
            if cli_end is not None and all(s is not None for s in seen):
                break
            time.sleep(interval)
    except Exception as exc:  # a broken probe connection is this push's failure; the next push still runs
        push.error = f"probe failed: {exc!r}"
    finally:
        if cli.poll() is None:
            cli.kill()
        _, err = cli.communicate()
    push.per_sidecar_after_start_s = seen
    if cli_end is not None and cli.returncode != 0:
        push.error = f"push exited {cli.returncode}: {err.strip()[-1000:]}"
    if cli_end is None and not push.error:
        push.error = f"push did not exit within {timeout:.0f} s: {err.strip()[-500:]}"
    if cli_end is not None:
        push.cli_s = cli_end - start
    if not push.error and all(s is not None for s in seen):
        both = max(s for s in seen if s is not None)
        push.applied_after_start_s = both
        push.applied_after_cli_s = max(0.0, both - push.cli_s)
        push.applied_before_cli_exit = both <= push.cli_s
        push.ok = True
    elif not push.error:
        push.error = f"not applied by every sidecar within {timeout:.0f} s of the push starting: {seen}"
    return push


def write_push_dir(base: Path, target: Path, mariadb: MariaDB, expression: str) -> Path:
    """A copy of a sidecar's configuration directory (its global.yaml names the registry) whose sharding rule
    uses ``expression``: what an operator edits and pushes."""
    shutil.copytree(base, target, ignore=shutil.ignore_patterns("*.log", "dbmesh.*"))
    (target / f"database-{APPLY_DB}.yaml").write_text(dump_yaml(apply_database(mariadb, expression)))
    return target


def apply_database(mariadb: MariaDB, expression: str) -> dict[str, Any]:
    return sharded_database(APPLY_DB, "mysql", mariadb, APPLY_PHYSICAL, sharding_rules(expression))


def apply_connect(proc: DbMeshProcess) -> Any:
    import pymysql

    return pymysql.connect(host=proc.host, port=proc.port, user=USER, password=PASSWORD, database=APPLY_DB,
                           autocommit=True, connect_timeout=10, read_timeout=30)  # fmt: skip


def wait_routes(probes: list[Any], want: str, timeout: float) -> list[str]:
    """Poll until every probe routes id 1 to ``want`` or ``timeout`` passes; the last routes seen."""
    deadline = time.monotonic() + timeout
    while True:
        routes = [route_of(conn) for conn in probes]
        if all(r == want for r in routes) or time.monotonic() > deadline:
            return routes
        time.sleep(0.02)


def part_apply(bench: Bench, mariadb: MariaDB, pushes: list[Push]) -> None:
    """Two Cluster-mode sidecars on a one-node ZooKeeper; ``--pushes`` pushes timed until both apply them."""
    args = bench.args
    for ds, database in APPLY_PHYSICAL.items():
        mariadb.ensure_database(database)
        n = int(ds[-1])
        run_statements(mariadb, database, ["DROP TABLE IF EXISTS t_item",
                                           "CREATE TABLE t_item (id INT PRIMARY KEY, v INT)",
                                           f"INSERT INTO t_item (id, v) VALUES ({n}, {n}), ({n + 2}, {n + 2})"])
    print("apply: starting ZooKeeper and two Cluster-mode sidecars", file=sys.stderr)
    with ZooKeeperEnsemble(size=1, basedir=bench.workdir / "zookeeper") as zk:
        bench.versions["zookeeper"] = _zookeeper_version(zk)
        sidecars: list[DbMeshProcess] = []
        probes: list[Any] = []
        try:
            first = None
            for name in ("a", "b"):
                config = write_sharded_config(bench.workdir / f"sidecar-{name}", mariadb,
                                              {APPLY_DB: apply_database(mariadb, APPLY_EXPRESSIONS[0])},
                                              global_overrides=cluster_mode(zk), tls=False)  # fmt: skip
                first = first or config
                # One after the other: the first publishes its configuration to the empty registry.
                sidecars.append(start_sharded_dbmesh(config, postgresql=False))
            assert first is not None
            push_dirs = [write_push_dir(first.config_dir, bench.workdir / f"push-{i}", mariadb, expression)
                         for i, expression in enumerate(APPLY_EXPRESSIONS)]  # fmt: skip
            probes = [apply_connect(proc) for proc in sidecars]
            routes = wait_routes(probes, "ds_1", args.push_timeout)
            bench.check("apply", "both sidecars route id 1 to ds_1 under the first rule", routes == ["ds_1"] * 2,
                        f"routes {routes}")  # fmt: skip
            for i in range(args.pushes):
                new = (i + 1) % 2  # push 1 sets the second expression, push 2 the first again, ...
                want, old = ("ds_0", "ds_1") if new == 1 else ("ds_1", "ds_0")
                # A push is timed only from a settled state: both sidecars on the previous rule.
                routes = wait_routes(probes, old, args.push_timeout)
                if routes != [old] * 2:
                    pushes.append(Push(i + 1, APPLY_EXPRESSIONS[new], want, False,
                                       error=f"sidecars did not settle on {old} before the push: {routes}"))
                    break
                push = time_push(i + 1, push_dirs[new], APPLY_EXPRESSIONS[new], want, probes, args.push_timeout)
                pushes.append(push)
                label = (f"command {push.cli_s * 1000:.0f} ms, both applied {push.applied_after_cli_s * 1000:.0f} ms "
                         f"after it returned ({push.applied_after_start_s * 1000:.0f} ms after its start)"
                         if push.ok and push.applied_after_cli_s is not None and push.applied_after_start_s is not None
                         else f"FAILED {push.error}")  # fmt: skip
                print(f"  apply push {push.index} {push.expression:<20} {label}", file=sys.stderr)
                time.sleep(args.push_gap)
            for proc in sidecars:
                if not proc.is_running():
                    bench.notes.append(f"sidecar on {proc.port} had exited ({proc.returncode}) at the end of the "
                                       f"apply part; stderr: {proc.stderr_text()[-800:]}")  # fmt: skip
        finally:
            for conn in probes:
                conn.close()
            for proc in sidecars:
                proc.stop()


def _zookeeper_version(zk: ZooKeeperEnsemble) -> str:
    from tests.support.zookeeper import four_letter_word

    node = zk.nodes[0]
    for line in four_letter_word(node.host, node.client_port, "srvr").splitlines():
        if line.startswith("Zookeeper version:"):
            return line.split(":", 1)[1].split("-")[0].split(",")[0].strip()
    return "-"


# -- report ---------------------------------------------------------------------------------------------------------


def summarize_gate(runs: list[Run]) -> list[dict[str, Any]]:
    """One entry per (tool, case): per-system medians, per-round governed/plain ratios and their median."""
    out: list[dict[str, Any]] = []
    keys = sorted(dict.fromkeys((r.part, r.case) for r in runs), key=lambda k: GATE_TOOLS.index(k[0]))
    for part, case in keys:
        mine = [r for r in runs if r.part == part and r.case == case]
        systems = {}
        for system in SYSTEMS:
            ok = [r for r in mine if r.system == system and r.ok]
            systems[system] = {"runs": len(ok), "tps": median([r.tps for r in ok]),
                               "p50_us": median([r.p50_us for r in ok]), "p99_us": median([r.p99_us for r in ok]),
                               "mean_us": median([r.mean_us for r in ok]),
                               "errors": [r.error for r in mine if r.system == system and not r.ok]}  # fmt: skip
        ratios: dict[str, list[float]] = {"tps": [], "p50_us": [], "p99_us": [], "mean_us": []}
        for rnd in sorted({r.round for r in mine}):
            by = {r.system: r for r in mine if r.round == rnd and r.ok}
            if "plain" in by and "governed" in by:
                for name in ratios:
                    a, b = getattr(by["plain"], name), getattr(by["governed"], name)
                    if a == a and b == b and a > 0:
                        ratios[name].append(b / a)
        ratio = median(ratios["tps"])
        out.append({"part": part, "case": case, "measure": "tps", "target": f">= {TARGET_TPS_RATIO}", "ratio": ratio,
                    "meets": None if ratio != ratio else ratio >= TARGET_TPS_RATIO, "systems": systems,
                    "per_round_ratios": ratios, "median_ratios": {k: median(v) for k, v in ratios.items()}})  # fmt: skip
    return out


def summarize_apply(pushes: list[Push]) -> dict[str, Any]:
    """Medians (p50) and maxima over the pushes; the target is judged on the worst push, and a push that was not
    applied at all misses it."""
    ok = [p for p in pushes if p.ok]

    def stats(values: list[float]) -> dict[str, float]:
        return {"p50": median(values), "max": max(values) if values else float("nan")}

    after_cli = stats([p.applied_after_cli_s for p in ok if p.applied_after_cli_s is not None])
    meets = None if not pushes else len(ok) == len(pushes) and after_cli["max"] < TARGET_APPLY_S
    return {"pushes": len(pushes), "applied": len(ok), "target": f"< {TARGET_APPLY_S:g} s", "meets": meets,
            "applied_before_cli_exit": sum(p.applied_before_cli_exit for p in ok),
            "after_cli_s": after_cli,
            "after_start_s": stats([p.applied_after_start_s for p in ok if p.applied_after_start_s is not None]),
            "cli_s": stats([p.cli_s for p in pushes if p.cli_s == p.cli_s]),
            "errors": [p.error for p in pushes if not p.ok]}  # fmt: skip


def describe_case(entry: dict[str, Any]) -> tuple[str, str]:
    """(workload, case) labels for tables."""
    count, mode = entry["case"].split("/")
    if entry["part"] == "sysbench":
        return "sysbench point_select", f"{count} thr, ps {mode}"
    return "pgbench -S", f"{count} cl, -M {mode}"


def _ms(value: float | None) -> str:
    return _fmt(None if value is None else value * 1000, ".0f", " ms")


def print_report(bench: Bench, gate: list[dict[str, Any]], apply: dict[str, Any] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, shutil.get_terminal_size().columns))
    if gate:
        table = Table(title=f"governed vs plain dbmesh — {bench.args.rounds} rounds (medians; ratio = median of "
                            "per-round governed/plain)")  # fmt: skip
        for col in ("workload", "case", "plain", "governed", "ratio", "target", "verdict", "runs"):
            table.add_column(col, justify="left" if col in ("workload", "case", "verdict") else "right")
        for e in gate:
            workload, case = describe_case(e)
            sy = e["systems"]
            verdict = {None: "[yellow]not measured[/]", True: "[green]meets[/]", False: "[red]misses[/]"}[e["meets"]]
            table.add_row(workload, case, _fmt(sy["plain"]["tps"], ",.0f", " tps"),
                          _fmt(sy["governed"]["tps"], ",.0f", " tps"), _fmt(e["ratio"], ".3f"), e["target"], verdict,
                          f"{sy['plain']['runs']}/{sy['governed']['runs']}")  # fmt: skip
        console.print(table)
    if apply is not None:
        table = Table(title=f"pushed change applied by two Cluster-mode sidecars — {apply['applied']} of "
                            f"{apply['pushes']} pushes applied")  # fmt: skip
        for col in ("measure", "p50", "max", "target"):
            table.add_column(col, justify="left" if col == "measure" else "right")
        table.add_row("both applied, after the push command returned", _ms(apply["after_cli_s"]["p50"]),
                      _ms(apply["after_cli_s"]["max"]), apply["target"])
        table.add_row("both applied, after the push command started", _ms(apply["after_start_s"]["p50"]),
                      _ms(apply["after_start_s"]["max"]), "")
        table.add_row("the push command's run time", _ms(apply["cli_s"]["p50"]), _ms(apply["cli_s"]["max"]), "")
        console.print(table)
        for err in apply["errors"][:3]:
            console.print(f"[red]push failed:[/] {err}", markup=True, highlight=False)
    for c in bench.checks:
        if not c.ok:
            console.print(f"[red]check failed[/] {c.part}: {c.what}: {c.detail}", markup=True, highlight=False)
    for part, why in bench.failures.items():
        console.print(f"[red]{part} was not measured:[/] {why}", markup=True, highlight=False)
    for e in gate:
        for system in SYSTEMS:
            for err in e["systems"][system]["errors"][:1]:
                console.print(f"[red]{e['part']} {e['case']} {system} failed:[/] {err}", markup=True,
                              highlight=False)  # fmt: skip


def readme_block(document: dict[str, Any]) -> str:
    """The Markdown that goes between the README markers, from a results document (fresh or reloaded)."""
    s, gate, apply = document["settings"], document["summary"]["gate"], document["summary"]["apply"]
    v = s["versions"]
    lines = [
        f"sysbench table-size {s['table_size']:,} (`--rand-type=uniform`), pgbench scale {s['scale']}, "
        f"{s['time_s']} s per run, {s['rounds']} rounds; {s['pushes']} pushes; {v.get('mariadb', '-')}, "
        f"PostgreSQL {v.get('postgresql', '-')}, ZooKeeper {v.get('zookeeper', '-')}, a shared "
        f"{document['machine']['cpus']}-core machine, {document['when']}, dbmesh at "
        f"{_revision_text(document['dbmesh'])} (medians; ratios are medians of per-round governed/plain ratios).",
    ]
    if gate:
        lines += ["", "| workload | case | plain | governed | governed / plain | target | |",
                  "|:---|:---|---:|---:|---:|---:|:---|"]  # fmt: skip
        for e in gate:
            workload, case = describe_case(e)
            sy = e["systems"]
            verdict = {None: "not measured", True: "meets", False: "**misses**"}[e["meets"]]
            lines.append(f"| {workload} | {case} | {_fmt(sy['plain']['tps'], ',.0f', ' TPS')} "
                         f"| {_fmt(sy['governed']['tps'], ',.0f', ' TPS')} | {_fmt(e['ratio'], '.3f')} "
                         f"| {e['target']} | {verdict} |")  # fmt: skip
        for e in gate:
            for system in SYSTEMS:
                failed = e["systems"][system]["errors"]
                if failed:
                    workload, case = describe_case(e)
                    lines += ["", f"{workload} {case}: {len(failed)} {system} run(s) failed: `{_first_error(failed[0])}`"]
    if apply is not None:
        verdict = {None: "not measured", True: "meets", False: "**misses**"}[apply["meets"]]
        lines += ["", f"Pushes applied by both sidecars: {apply['applied']} of {apply['pushes']}, of which "
                      f"{apply['applied_before_cli_exit']} before the push command had exited (0 ms after it).", "",
                  "| pushed change | p50 | max | target | |", "|:---|---:|---:|---:|:---|",
                  f"| applied on both sidecars, from the push command's exit | {_ms(apply['after_cli_s']['p50'])} "
                  f"| {_ms(apply['after_cli_s']['max'])} | {apply['target']} | {verdict} |",
                  f"| applied on both sidecars, from the push command's start | {_ms(apply['after_start_s']['p50'])} "
                  f"| {_ms(apply['after_start_s']['max'])} | | |",
                  f"| the push command's run time | {_ms(apply['cli_s']['p50'])} | {_ms(apply['cli_s']['max'])} | | |"]
        if apply["errors"]:
            lines += ["", f"{len(apply['errors'])} push(es) failed: `{_first_error(apply['errors'][0])}`"]
    bad = [c for c in document["checks"] if not c["ok"]]
    checked = len(document["checks"])
    lines += ["", f"Checks before and during timing (same answers on both processes, rules in force on the governed "
                  f"one only, the flow rule passing every governed statement, the sidecars' first rule): "
                  f"{checked - len(bad)} of {checked} passed."]  # fmt: skip
    for c in bad:
        lines += ["", f"**Check failed**: {c['part']}: {c['what']}: {c['detail']}"]
    for part, why in document["failures"].items():
        lines += ["", f"{part} was not measured in this run: `{_first_error(why)}`"]
    if document["notes"]:
        lines += ["", f"dbmesh was found exited {len(document['notes'])} time(s) during this run "
                      "(`notes` in the JSON)."]  # fmt: skip
    return "\n".join(lines)


def update_readme(path: Path, block: str) -> None:
    update_readme_block(path, "governance", block)


# -- main -----------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--parts", type=_words, default=list(PARTS), help="subset of gate,apply")
    p.add_argument("--gate-tools", type=_words, default=list(GATE_TOOLS), help="subset of sysbench,pgbench")
    p.add_argument("--time", type=int, default=4, help="seconds per sysbench/pgbench run (default 4)")
    p.add_argument("--rounds", type=int, default=3, help="plain/governed rounds per case (default 3)")
    p.add_argument("--threads", type=_ints, default=[1, 8], help="sysbench thread counts (default 1,8)")
    p.add_argument("--ps-modes", type=_words, default=["disable"], help="sysbench --db-ps-mode values (default disable)")
    p.add_argument("--table-size", type=int, default=100_000, help="sysbench rows (default 100000)")
    p.add_argument("--clients", type=_ints, default=[1, 8], help="pgbench client counts (default 1,8)")
    p.add_argument("--pg-modes", type=_words, default=["simple"], help="pgbench -M modes (default simple)")
    p.add_argument("--scale", type=int, default=5, help="pgbench -i scale (default 5: 500,000 accounts)")
    p.add_argument("--pushes", type=int, default=10, help="configuration pushes timed (default 10)")
    p.add_argument("--push-timeout", type=float, default=10.0, help="seconds a push may take to apply (default 10)")
    p.add_argument("--push-gap", type=float, default=0.5, help="seconds between pushes (default 0.5)")
    p.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "governance.json")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, dbmesh and ZooKeeper logs)")
    p.add_argument("--update-readme", action="store_true", help="rewrite the governance block in README.md")
    p.add_argument("--readme-from", type=Path, metavar="JSON",
                   help="only rewrite the README block from a results file written earlier; measure nothing")
    args = p.parse_args(argv)
    if bad := [x for x in args.parts if x not in PARTS]:
        p.error(f"unknown part(s) {bad}: choose from {PARTS}")
    if bad := [x for x in args.gate_tools if x not in GATE_TOOLS]:
        p.error(f"unknown gate tool(s) {bad}: choose from {GATE_TOOLS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.readme_from is not None:
        update_readme(ROOT / "README.md", readme_block(json.loads(args.readme_from.read_text())))
        return 0
    tools = [t for t in args.gate_tools if "gate" in args.parts]
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        print(f"{', '.join(missing)} not found: run `make install` (scripts/install.sh installs them)",
              file=sys.stderr)  # fmt: skip
        return 2
    started = time.monotonic()
    revision = engine_revision()
    workdir = Path(tempfile.mkdtemp(prefix="dbmesh-bench-governance-"))
    bench = Bench(args, workdir)
    counts: list[GateCount] = []
    pushes: list[Push] = []
    mariadb: MariaDB | None = None
    pg: PostgreSQL | None = None
    managed_mysql = managed_pg = False
    try:
        if "sysbench" in tools or "apply" in args.parts:
            mariadb = MariaDB.from_env()
            if mariadb is None:
                managed_mysql = True
                mariadb = MariaDB.managed_in(workdir / "mariadb").start()
            bench.versions["mariadb"] = str(mariadb.execute("SELECT VERSION()")[0][0])
        if "pgbench" in tools:
            pg = PostgreSQL.from_env()
            if pg is None:
                managed_pg = True
                pg = PostgreSQL.throwaway(prefix="dbmesh-bench-governance-pg-").start()
            bench.versions["postgresql"] = str(pg.execute("SHOW server_version")[0][0]).split(" ")[0]
        parts: list[tuple[str, Callable[[], None]]] = []
        if "sysbench" in tools:
            parts.append(("gate-sysbench", lambda: part_gate(bench, "sysbench", mariadb, counts)))
        if "pgbench" in tools:
            parts.append(("gate-pgbench", lambda: part_gate(bench, "pgbench", pg, counts)))
        if "apply" in args.parts:
            assert mariadb is not None
            parts.append(("apply", lambda: part_apply(bench, mariadb, pushes)))
        for name, measure in parts:
            try:
                measure()
            except Exception as exc:  # a broken part is reported; the other parts still run
                bench.failures[name] = repr(exc)
                print(f"{name} failed: {exc!r}", file=sys.stderr)

        gate = summarize_gate(bench.runs)
        apply = summarize_apply(pushes) if "apply" in args.parts else None
        print_report(bench, gate, apply)
        document = {
            "benchmark": "traffic governance: governed vs plain dbmesh (sysbench oltp_point_select, pgbench -S); "
                         "a pushed configuration applied by two Cluster-mode sidecars",
            "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "dbmesh": revision,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "settings": {"parts": args.parts, "gate_tools": tools, "time_s": args.time, "rounds": args.rounds,
                         "threads": args.threads, "ps_modes": args.ps_modes, "table_size": args.table_size,
                         "rand_type": "uniform", "clients": args.clients, "pg_modes": args.pg_modes,
                         "scale": args.scale, "pool_size": POOL_SIZE, "traffic_rule": traffic_rule().body,
                         "pushes": args.pushes, "push_expressions": list(APPLY_EXPRESSIONS),
                         "push_probe": APPLY_PROBE, "poll_interval_ms": 5, "push_gap_s": args.push_gap,
                         "versions": bench.versions,
                         "servers_managed": {"mariadb": managed_mysql, "postgresql": managed_pg, "zookeeper": True},
                         "elapsed_s": round(time.monotonic() - started, 1)},
            "targets": {"gate_governed_over_plain_tps_min": TARGET_TPS_RATIO,
                        "apply_after_push_command_max_s": TARGET_APPLY_S},
            "checks": [asdict(c) for c in bench.checks],
            "failures": bench.failures,
            "notes": bench.notes,
            "summary": {"gate": gate, "apply": apply},
            "gate_counts": [asdict(c) for c in counts],
            "runs": [asdict(r) for r in bench.runs],
            "pushes": [asdict(p) for p in pushes],
        }  # fmt: skip
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(_nan_to_none(document), indent=2, ensure_ascii=False) + "\n")
        print(f"results written to {args.output} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
        if args.update_readme:
            update_readme(ROOT / "README.md", readme_block(_nan_to_none(document)))
        return 0
    finally:
        if mariadb is not None and managed_mysql:
            mariadb.stop()
        if pg is not None and managed_pg:
            pg.destroy()
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
