"""pgbench -S (select-only) through dbmesh, beside PostgreSQL direct and PgBouncer.

    python benchmarks/bench_pg_select.py [--time 10] [--rounds 3] [--clients 1,8] [--modes simple,prepared]

Systems, each measured with the same pgbench workload against the same tables:

- **direct**: PostgreSQL itself (a throwaway PostgreSQL 15 started here through
  ``tests.support.PostgreSQL``, or the one named by ``DBMESH_TEST_PG_HOST``/``_PORT``/``_USER``/``_PASSWORD``);
- **pgbouncer**: the OS package's PgBouncer in front of it, in transaction pooling mode. PgBouncer
  keeps named prepared statements across transaction-mode server connections only from 1.21 on
  (``max_prepared_statements``); with an older PgBouncer, ``-M prepared`` fails in transaction mode
  (a statement prepared on one server connection is executed on another), so that mode runs through
  the same PgBouncer in *session* mode and is labelled ``pgbouncer (session)`` everywhere;
- **dbmesh**: ``dbmesh serve`` in front of it, PostgreSQL listener, logical database ``bench`` on the
  backend database ``bench`` (user root/rootpw, md5, TLS off).

Method. ``pgbench -i -s SCALE`` runs once, directly (default scale 10: 1,000,000 accounts). For each
(clients, mode) the rounds run A B C A B C ... so that drift of the machine (other load, CPU frequency)
hits every system alike; ratios are taken *within* a round and the median across rounds is reported.
Each run is ``pgbench -S -n -M MODE -c N -j min(N, cpus) -T TIME``; ``-n`` skips pgbench's vacuum of
the tables before every run (they are vacuumed once after init and a select-only run changes nothing).
TPS is pgbench's ``tps = ... (without initial connection time)``; latency is pgbench's ``latency average``
(the mean over all transactions of the run, no percentiles: pgbench prints none without per-transaction
logs, and writing those would add client work to every run).

Target printed beside the figures: dbmesh >= 1.0 x PgBouncer's TPS at every (clients, mode).
Results go to benchmarks/results/pg_select.json; ``--update-readme`` rewrites the README block. If
PgBouncer or dbmesh fails to start, the other systems are still measured and the failure is printed
and recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import os
import platform
import pwd
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from readme_block import update_readme_block  # noqa: E402

from tests.support import (  # noqa: E402
    DbMeshProcess,
    DbMeshStartError,
    PostgreSQL,
    free_port,
    make_dbmesh_config,
    wait_for_port,
)

DATABASE = "bench"
PGBOUNCER_SESSION_DATABASE = "bench_session"  # PgBouncer alias of DATABASE with pool_mode=session
DBMESH_USER, DBMESH_PASSWORD = "root", "rootpw"
TARGET_PGBOUNCER_RATIO = 1.0
SYSTEMS = ("direct", "pgbouncer", "dbmesh")
MODES = ("simple", "prepared")
PGBOUNCER_PREPARED_MIN = (1, 21)  # first PgBouncer with max_prepared_statements


@dataclass
class Endpoint:
    name: str
    host: str
    port: int
    user: str
    password: str
    database: str = DATABASE


@dataclass
class RunResult:
    system: str
    clients: int
    mode: str
    round: int
    tps: float
    latency_avg_ms: float
    transactions: int
    failed: int
    ok: bool
    label: str = ""  # how the system ran, e.g. "pgbouncer (session)"
    error: str = ""


@dataclass(frozen=True)
class _MySQLStub:
    """The config writer always writes a MySQL listener; nothing here is served on it."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "unused"
    password: str = "unused"


# -- pgbench --------------------------------------------------------------------------------------


def pgbench_env(ep: Endpoint) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PGPASSWORD": ep.password, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"})
    return env


def pgbench_conn_args(ep: Endpoint) -> list[str]:
    return ["-h", ep.host, "-p", str(ep.port), "-U", ep.user, ep.database]


_TPS = re.compile(r"^tps = ([\d.]+) \(without initial connection time\)", re.M)
_LAT = re.compile(r"^latency average = ([\d.]+) ms", re.M)
_TXN = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)


def parse_pgbench(text: str) -> dict[str, Any]:
    """TPS, mean latency and transaction counts from pgbench's summary.

    >>> parse_pgbench("number of transactions actually processed: 1000\\n"
    ...               "number of failed transactions: 0 (0.000%)\\nlatency average = 0.105 ms\\n"
    ...               "initial connection time = 2.1 ms\\ntps = 9523.8 (without initial connection time)\\n")
    {'tps': 9523.8, 'latency_avg_ms': 0.105, 'transactions': 1000, 'failed': 0}
    """
    tps, lat, txn = _TPS.search(text), _LAT.search(text), _TXN.search(text)
    if not tps or not lat or not txn:
        raise ValueError("no transaction statistics in pgbench output")
    failed = _FAILED.search(text)
    return {
        "tps": float(tps.group(1)),
        "latency_avg_ms": float(lat.group(1)),
        "transactions": int(txn.group(1)),
        "failed": int(failed.group(1)) if failed else 0,
    }


def run_pgbench(ep: Endpoint, clients: int, mode: str, rnd: int, args: argparse.Namespace) -> RunResult:
    jobs = max(1, min(clients, os.cpu_count() or 1))
    cmd = ["pgbench", "-S", "-n", "-M", mode, "-c", str(clients), "-j", str(jobs), "-T", str(args.time),
           *pgbench_conn_args(ep)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=pgbench_env(ep), timeout=args.time + 120,
                          check=False)  # fmt: skip
    try:
        if proc.returncode != 0:
            raise ValueError(f"pgbench exited {proc.returncode}")
        parsed = parse_pgbench(proc.stdout)
        if parsed["failed"]:
            raise ValueError(f"{parsed['failed']} failed transactions")
    except ValueError as exc:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-6:]
        nan = float("nan")
        error = f"{exc}: " + " | ".join(tail)
        return RunResult(ep.name, clients, mode, rnd, 0.0, nan, 0, 0, False, "", error)
    return RunResult(ep.name, clients, mode, rnd, ok=True, **parsed)


# -- systems under test ---------------------------------------------------------------------------


def pgbouncer_version() -> tuple[int, ...]:
    out = subprocess.run(["pgbouncer", "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"PgBouncer (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


class PgBouncer:
    """The OS package's PgBouncer as a foreground child, run as the ``postgres`` OS user.

    PgBouncer refuses to run as root, so when we are root its directory (ini, userlist, log, pid file)
    is owned by ``postgres`` and the process switches to that user between fork and exec (what
    ``runuser -u postgres --`` would do). It is our direct child rather than runuser's: runuser exits
    on SIGTERM before PgBouncer does, leaving PgBouncer to a pid 1 that, in a container, may never
    reap it; as our child it is waited for here, and it gets SIGKILL if this script dies.
    Clients log in with md5 against the plaintext userlist; the plaintext password also lets
    PgBouncer answer the server's SCRAM challenge.
    """

    def __init__(self, pg: PostgreSQL, pool_size: int) -> None:
        self.pg = pg
        self.version = pgbouncer_version()
        self.prepared_in_transaction_mode = self.version >= PGBOUNCER_PREPARED_MIN
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dbmesh-bench-pgbouncer-"))
        self.pool_size = pool_size
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.dir / "pgbouncer.log"

    def database_for(self, mode: str) -> tuple[str, str]:
        """(database to connect to, label) for a pgbench mode."""
        if mode == "prepared" and not self.prepared_in_transaction_mode:
            return PGBOUNCER_SESSION_DATABASE, "pgbouncer (session)"
        return DATABASE, "pgbouncer"

    def start(self, timeout: float = 15.0) -> PgBouncer:
        target = f"host={self.pg.host} port={self.pg.port} dbname={DATABASE}"
        lines = [
            "[databases]",
            f"{DATABASE} = {target}",
            f"{PGBOUNCER_SESSION_DATABASE} = {target} pool_mode=session",
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = md5",
            f"auth_file = {self.dir / 'userlist.txt'}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 500",
            f"logfile = {self.log_path}",
            f"pidfile = {self.dir / 'pgbouncer.pid'}",
            "log_connections = 0",
            "log_disconnections = 0",
            "ignore_startup_parameters = extra_float_digits",
        ]
        if self.prepared_in_transaction_mode:
            lines.append("max_prepared_statements = 200")
        (self.dir / "pgbouncer.ini").write_text("\n".join(lines) + "\n")
        (self.dir / "userlist.txt").write_text(f'"{self.pg.user}" "{self.pg.password}"\n')
        cmd = ["pgbouncer", "-q", str(self.dir / "pgbouncer.ini")]
        account = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if account is not None:
            for path in (self.dir, *self.dir.iterdir()):
                os.chown(path, account.pw_uid, account.pw_gid)
        os.chmod(self.dir / "userlist.txt", 0o600)
        with open(self.dir / "pgbouncer.stderr", "wb") as err:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                          preexec_fn=_as_user(account))  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited {self._proc.returncode}: {self._log_tail()}")
            if wait_for_port("127.0.0.1", self.port, timeout=0.2):
                return self
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen on {self.port} within {timeout}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        text = ""
        for name in ("pgbouncer.stderr", "pgbouncer.log"):
            path = self.dir / name
            if path.exists():
                text += path.read_text(errors="replace")[-2000:]
        return text

    def stop(self) -> None:
        """SIGTERM (PgBouncer's immediate shutdown), SIGKILL after 10 s."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _as_user(account: pwd.struct_passwd | None) -> Any:
    """A preexec_fn: become ``account`` (when given), then ask for SIGKILL when our parent dies.

    The parent-death signal is set after the credential change because Linux clears it on setuid.
    """

    def run() -> None:  # runs in the child between fork and exec
        if account is not None:
            os.setgid(account.pw_gid)
            os.setgroups([])
            os.setuid(account.pw_uid)
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return run


def start_dbmesh(pg: PostgreSQL, workdir: Path, pool_size: int) -> tuple[DbMeshProcess | None, str]:
    config = make_dbmesh_config(
        workdir / "dbmesh-conf", _MySQLStub(),
        users=[{"user": f"{DBMESH_USER}@%", "password": DBMESH_PASSWORD, "authenticationMethodName": "md5"}],
        pg_databases={DATABASE: pg}, include_default_database=False, tls=False,
        max_pool_size=pool_size, min_pool_size=1,
    )  # fmt: skip
    proc = DbMeshProcess(config)
    try:
        proc.start(timeout=30)  # waits for the MySQL listener
        if not wait_for_port(proc.host, proc.pg_port, timeout=30):
            tail = proc.stderr_text()[-4000:]
            raise DbMeshStartError(f"no PostgreSQL listener on {proc.pg_port}\nstderr:\n{tail}")
    except (DbMeshStartError, OSError) as exc:
        proc.stop()
        return None, str(exc)
    # Readiness is a TCP connect; make sure it also authenticates and serves the table.
    try:
        import psycopg

        with psycopg.connect(host=proc.host, port=proc.pg_port, user=DBMESH_USER, password=DBMESH_PASSWORD,
                             dbname=DATABASE, sslmode="disable", connect_timeout=10) as conn:  # fmt: skip
            conn.execute("SELECT abalance FROM pgbench_accounts WHERE aid = 1").fetchall()
    except Exception as exc:
        err = f"dbmesh started but a select failed: {exc!r}\nstderr:\n{proc.stderr_text()[-4000:]}"
        proc.stop()
        return None, err
    return proc, ""


def dbmesh_endpoint(proc: DbMeshProcess) -> Endpoint:
    return Endpoint("dbmesh", proc.host, proc.pg_port, DBMESH_USER, DBMESH_PASSWORD)


def restart_dbmesh(
    old: DbMeshProcess, pg: PostgreSQL, workdir: Path, args: argparse.Namespace, where: str, notes: list[str]
) -> DbMeshProcess | None:
    """Start a new dbmesh in place of one found gone, and note the event in the results.

    The machine is shared with other engineers' test runs: a dbmesh found gone (so far: a SIGTERM
    from outside, logged as "shutting down") is restarted rather than losing every later dbmesh run.
    """
    note = f"before {where}: dbmesh had exited ({old.returncode}); stderr: {old.stderr_text()[-1000:]}"
    print(f"  {note}\n  restarting dbmesh", file=sys.stderr)
    notes.append(note)
    old.stop()
    proc, error = start_dbmesh(pg, workdir / f"restart-{len(notes)}", args.pool_size)
    if proc is None:
        notes.append(f"restart failed: {error}")
    return proc


# -- report ---------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def case_key(clients: int, mode: str) -> str:
    return f"{clients}/{mode}"


def summarize(results: list[RunResult], clients_list: list[int], modes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for clients in clients_list:
        for mode in modes:
            case = [r for r in results if r.clients == clients and r.mode == mode]
            per_system: dict[str, Any] = {}
            for system in SYSTEMS:
                runs = [r for r in case if r.system == system and r.ok]
                labels = sorted({r.label for r in case if r.system == system})
                per_system[system] = {
                    "label": labels[0] if labels else system,
                    "runs": len(runs),
                    "tps": median([r.tps for r in runs]),
                    "latency_avg_us": median([r.latency_avg_ms * 1000 for r in runs]),
                }
            ratios: dict[str, list[float]] = {"dbmesh_over_pgbouncer_tps": [], "dbmesh_over_direct_tps": [],
                                              "pgbouncer_over_direct_tps": [], "dbmesh_added_latency_us": [],
                                              "pgbouncer_added_latency_us": []}  # fmt: skip
            for rnd in sorted({r.round for r in case}):
                by = {r.system: r for r in case if r.round == rnd and r.ok}
                a, b, c = by.get("direct"), by.get("pgbouncer"), by.get("dbmesh")
                if a and b:
                    ratios["pgbouncer_over_direct_tps"].append(b.tps / a.tps)
                    ratios["pgbouncer_added_latency_us"].append((b.latency_avg_ms - a.latency_avg_ms) * 1000)
                if c and b:
                    ratios["dbmesh_over_pgbouncer_tps"].append(c.tps / b.tps)
                if c and a:
                    ratios["dbmesh_over_direct_tps"].append(c.tps / a.tps)
                    ratios["dbmesh_added_latency_us"].append((c.latency_avg_ms - a.latency_avg_ms) * 1000)
            out[case_key(clients, mode)] = {
                "clients": clients,
                "mode": mode,
                "systems": per_system,
                "per_round": ratios,
                "median": {k: median(v) for k, v in ratios.items()},
            }
    return out


def _fmt(value: float, spec: str) -> str:
    return "-" if value != value else format(value, spec)


def print_report(summary: dict[str, Any], errors: dict[str, str], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(100, shutil.get_terminal_size().columns))
    table = Table(title=f"pgbench -S (scale {args.scale}) — {args.time}s x {args.rounds} rounds per system "
                        "(medians; latency = pgbench's latency average)")  # fmt: skip
    for col in ("clients", "mode", "system", "TPS", "avg latency µs", "runs"):
        table.add_column(col, justify="left" if col in ("mode", "system") else "right")
    for data in summary.values():
        for system in SYSTEMS:
            s = data["systems"][system]
            table.add_row(str(data["clients"]), data["mode"], s["label"], _fmt(s["tps"], ",.0f"),
                          _fmt(s["latency_avg_us"], ".1f"), str(s["runs"]))  # fmt: skip
        table.add_section()
    console.print(table)

    targets = Table(title="dbmesh against its target (median of per-round ratios)")
    for col in ("clients", "mode", "measure", "value", "target", "verdict"):
        targets.add_column(col, justify="left" if col in ("mode", "measure", "verdict") else "right")
    for data in summary.values():
        m = data["median"]
        bouncer = data["systems"]["pgbouncer"]["label"]
        rows = [
            (f"dbmesh / {bouncer} TPS", m["dbmesh_over_pgbouncer_tps"], ".3f", f">= {TARGET_PGBOUNCER_RATIO}",
             lambda v: v >= TARGET_PGBOUNCER_RATIO),
            ("dbmesh / direct TPS (reference)", m["dbmesh_over_direct_tps"], ".3f", "", None),
            (f"{bouncer} / direct TPS (reference)", m["pgbouncer_over_direct_tps"], ".3f", "", None),
            ("dbmesh avg latency added over direct (µs)", m["dbmesh_added_latency_us"], ".1f", "", None),
            (f"{bouncer} avg latency added over direct (µs)", m["pgbouncer_added_latency_us"], ".1f", "", None),
        ]  # fmt: skip
        for label, value, spec, target, check in rows:
            if value != value:
                verdict = "[yellow]not measured[/]"
            elif check is None:
                verdict = ""
            else:
                verdict = "[green]meets[/]" if check(value) else "[red]misses[/]"
            targets.add_row(str(data["clients"]), data["mode"], label, _fmt(value, spec), target, verdict)
        targets.add_section()
    console.print(targets)
    for system, error in errors.items():
        console.print(f"[red]{system} was not measured:[/] {error}", markup=True, highlight=False)


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--time", type=int, default=10, help="seconds per pgbench run (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="A/B/C rounds per (clients, mode) (default 3)")
    p.add_argument("--clients", default="1,8", help="comma-separated client counts (default 1,8)")
    p.add_argument("--modes", default="simple,prepared", help="pgbench -M modes (default simple,prepared)")
    p.add_argument("--scale", type=int, default=10, help="pgbench -i scale factor (default 10)")
    p.add_argument("--pool-size", type=int, default=20,
                   help="server connections per pool for PgBouncer and dbmesh (default 20)")  # fmt: skip
    p.add_argument("--systems", default=",".join(SYSTEMS), help="subset of direct,pgbouncer,dbmesh")
    p.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "pg_select.json")
    p.add_argument("--keep", action="store_true", help="keep the work directories (logs, configs)")
    p.add_argument("--update-readme", action="store_true", help="rewrite the results block in README.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("pgbench", "pgbouncer"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: run `make install` (scripts/install.sh installs it)", file=sys.stderr)
            return 2
    clients_list = [int(c) for c in args.clients.split(",") if c]
    modes = [m for m in args.modes.split(",") if m]
    if bad := [m for m in modes if m not in MODES]:
        print(f"unknown mode(s) {bad}: choose from {MODES}", file=sys.stderr)
        return 2
    systems = [s for s in args.systems.split(",") if s]
    workdir = Path(tempfile.mkdtemp(prefix="dbmesh-bench-pg-"))
    pg = PostgreSQL.from_env()
    managed = pg is None
    bouncer: PgBouncer | None = None
    dbmesh_proc: DbMeshProcess | None = None
    errors: dict[str, str] = {}
    try:
        if pg is None:
            pg = PostgreSQL.throwaway(prefix="dbmesh-bench-pg-server-").start()
        pg.ensure_database(DATABASE)
        direct = Endpoint("direct", pg.host, pg.port, pg.user, pg.password)
        print(f"pgbench -i -s {args.scale} in {DATABASE} on {pg.host}:{pg.port}", file=sys.stderr)
        subprocess.run(["pgbench", "-i", "-q", "-s", str(args.scale), *pgbench_conn_args(direct)],
                       capture_output=True, text=True, env=pgbench_env(direct), check=True)  # fmt: skip

        endpoints: dict[str, Endpoint] = {"direct": direct}
        if "pgbouncer" in systems:
            try:
                bouncer = PgBouncer(pg, args.pool_size).start()
                endpoints["pgbouncer"] = Endpoint("pgbouncer", "127.0.0.1", bouncer.port, pg.user,
                                                  pg.password)  # fmt: skip
            except (RuntimeError, OSError, KeyError) as exc:
                errors["pgbouncer"] = str(exc)
                print(f"pgbouncer failed to start; measuring the others.\n{exc}", file=sys.stderr)
        if "dbmesh" in systems:
            dbmesh_proc, dbmesh_error = start_dbmesh(pg, workdir, args.pool_size)
            if dbmesh_proc is not None:
                endpoints["dbmesh"] = dbmesh_endpoint(dbmesh_proc)
            else:
                errors["dbmesh"] = dbmesh_error
                print(f"dbmesh failed to start; measuring the others.\n{dbmesh_error}", file=sys.stderr)

        results: list[RunResult] = []
        restarts: list[str] = []
        order = [s for s in SYSTEMS if s in endpoints and s in systems]
        for clients in clients_list:
            for mode in modes:
                for rnd in range(1, args.rounds + 1):
                    for system in order:
                        ep, label = endpoints[system], system
                        if system == "pgbouncer" and bouncer is not None:
                            database, label = bouncer.database_for(mode)
                            ep = Endpoint(ep.name, ep.host, ep.port, ep.user, ep.password, database)
                        if system == "dbmesh" and dbmesh_proc is not None and not dbmesh_proc.is_running():
                            where = f"clients={clients} {mode} round={rnd}"
                            dbmesh_proc = restart_dbmesh(dbmesh_proc, pg, workdir, args, where, restarts)
                            if dbmesh_proc is not None:
                                ep = endpoints["dbmesh"] = dbmesh_endpoint(dbmesh_proc)
                        res = run_pgbench(ep, clients, mode, rnd, args)
                        res.label = label
                        results.append(res)
                        status = (f"{res.tps:,.0f} tps avg {res.latency_avg_ms * 1000:.0f}µs"
                                  if res.ok else f"FAILED {res.error}")  # fmt: skip
                        print(f"  clients={clients} {mode:<8} round={rnd} {label:<19} {status}",
                              file=sys.stderr)  # fmt: skip

        summary = summarize(results, clients_list, modes)
        print_report(summary, errors, args)
        for note in restarts:
            print(f"dbmesh restart: {note}", file=sys.stderr)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        pg_version = pg.execute("SHOW server_version")[0][0]
        version = bouncer.version if bouncer is not None else pgbouncer_version()
        document = {
            "benchmark": "pgbench -S (select-only)",
            "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "settings": {"time_s": args.time, "rounds": args.rounds, "clients": clients_list, "modes": modes,
                         "scale": args.scale, "pool_size": args.pool_size, "postgresql": pg_version,
                         "postgresql_managed": managed, "pgbouncer": ".".join(map(str, version)),
                         "pgbouncer_prepared_pool_mode":
                             "transaction" if version >= PGBOUNCER_PREPARED_MIN else "session",
                         "latency": "pgbench 'latency average' (mean per transaction); no percentiles"},
            "targets": {"dbmesh_over_pgbouncer_tps_min": TARGET_PGBOUNCER_RATIO},
            "errors": errors,
            "dbmesh_restarts": restarts,
            "summary": summary,
            "runs": [asdict(r) for r in results],
        }  # fmt: skip
        args.output.write_text(json.dumps(_nan_to_none(document), indent=2) + "\n")
        print(f"results written to {args.output}", file=sys.stderr)
        if args.update_readme:
            update_readme(ROOT / "README.md", summary, document)
        return 0
    finally:
        if dbmesh_proc is not None:
            dbmesh_proc.stop()
        if bouncer is not None:
            if args.keep:
                bouncer.stop()
                print(f"pgbouncer directory kept: {bouncer.dir}", file=sys.stderr)
            else:
                bouncer.destroy()
        if managed and pg is not None:
            if args.keep:
                pg.stop()
                print(f"PostgreSQL directory kept: {pg.basedir}", file=sys.stderr)
            else:
                pg.destroy()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {workdir}", file=sys.stderr)




def readme_table(summary: dict[str, Any], document: dict[str, Any]) -> str:
    """The Markdown results table that goes between the README markers."""
    s = document["settings"]
    lines = [
        "PostgreSQL: `pgbench -S` (select-only) at 1 and 8 clients, `-M simple` and `-M prepared`, against "
        "PostgreSQL directly, PgBouncer in transaction mode and dbmesh, in alternating rounds "
        "(`benchmarks/bench_pg_select.py`, results in `benchmarks/results/pg_select.json`). "
        "Target: dbmesh >= PgBouncer's TPS.",
        "",
        f"`pgbench -S` scale {s['scale']}, {s['time_s']} s x {s['rounds']} rounds, PostgreSQL {s['postgresql']}, "
        f"PgBouncer {s['pgbouncer']}, a shared {document['machine']['cpus']}-core machine, {document['when']} "
        "(medians; ratios are medians of per-round ratios; latency is pgbench's mean).",
        "",
        "| clients | mode | direct TPS | PgBouncer TPS | dbmesh TPS | dbmesh / PgBouncer (>= 1.0) "
        "| dbmesh / direct | avg µs direct | avg µs PgBouncer | avg µs dbmesh |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    session_note = False
    for data in summary.values():
        sy, m = data["systems"], data["median"]
        mode = data["mode"]
        if sy["pgbouncer"]["label"] == "pgbouncer (session)":
            mode += " *"
            session_note = True
        lines.append(
            f"| {data['clients']} | {mode} | {_fmt(sy['direct']['tps'], ',.0f')} "
            f"| {_fmt(sy['pgbouncer']['tps'], ',.0f')} | {_fmt(sy['dbmesh']['tps'], ',.0f')} "
            f"| {_fmt(m['dbmesh_over_pgbouncer_tps'], '.3f')} | {_fmt(m['dbmesh_over_direct_tps'], '.3f')} "
            f"| {_fmt(sy['direct']['latency_avg_us'], '.0f')} | {_fmt(sy['pgbouncer']['latency_avg_us'], '.0f')} "
            f"| {_fmt(sy['dbmesh']['latency_avg_us'], '.0f')} |"
        )
    if session_note:
        lines += ["", f"\\* PgBouncer {s['pgbouncer']} cannot keep prepared statements in transaction mode "
                      "(that needs 1.21+): `-M prepared` went through it in session mode."]  # fmt: skip
    for system in document["errors"]:
        lines += ["", f"{system} was not measured in this run (it failed to start)."]
    if document["dbmesh_restarts"]:
        lines += ["", f"dbmesh was found exited and restarted {len(document['dbmesh_restarts'])} time(s) "
                      "during this run (`dbmesh_restarts` in the JSON)."]  # fmt: skip
    return "\n".join(lines)


def update_readme(path: Path, summary: dict[str, Any], document: dict[str, Any]) -> None:
    update_readme_block(path, "pg_select", readme_table(summary, document))


def _nan_to_none(value: Any) -> Any:
    """JSON has no NaN: unmeasured figures become null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
