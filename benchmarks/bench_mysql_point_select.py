"""sysbench oltp_point_select through dbmesh, beside MariaDB direct and a plain byte relay.

    .venv/bin/python benchmarks/bench_mysql_point_select.py [--time 10] [--rounds 3] [--threads 1,8]

Systems, each measured with the same sysbench workload against the same table:

- **direct**: MariaDB itself (a throwaway server started here, or the one named by
  ``DBMESH_TEST_MYSQL_HOST``/``_PORT``/``_USER``/``_PASSWORD``);
- **relay**: ``benchmarks/relay.py`` in front of it, a uvloop byte forwarder: the ceiling for any
  Python proxy;
- **dbmesh**: ``dbmesh serve`` in front of it (user root/rootpw, logical database dbmesh_test).

Method. The table is prepared once, directly (``sysbench ... prepare``, 1 table of 10,000 rows in
``dbmesh_test``). For each thread count, rounds run A B C A B C ... so that drift of the machine
(other load, CPU frequency) hits every system alike, and ratios are taken *within* a round, then the
median across rounds is reported. Latency percentiles: sysbench reports one percentile per run, so
each run uses ``--percentile=99 --histogram=on`` and p50 and p99 are both computed from the printed
latency histogram (sysbench's own p99 is kept in the JSON as a cross-check). The histogram's buckets
are logarithmic, about 2% apart, and printed in ms to 3 decimals (1 µs): that is the resolution of p50.

Targets printed beside the figures: dbmesh >= 0.9 x relay throughput at every thread count, and p50
added latency of dbmesh over direct <= 30 µs. Results go to benchmarks/results/mysql_point_select.json.
If dbmesh fails to start, the direct and relay figures are still measured and the failure (with
dbmesh's stderr) is printed and recorded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from readme_block import update_readme_block  # noqa: E402

from tests.support import (  # noqa: E402
    DbMeshProcess,
    DbMeshStartError,
    MariaDB,
    free_port,
    make_dbmesh_config,
    wait_for_port,
)

DATABASE = "dbmesh_test"
TARGET_RELAY_RATIO = 0.9
TARGET_ADDED_P50_US = 30.0
SYSTEMS = ("direct", "relay", "dbmesh")


@dataclass
class Endpoint:
    name: str
    host: str
    port: int
    user: str
    password: str


@dataclass
class RunResult:
    system: str
    threads: int
    round: int
    tps: float
    qps: float
    p50_ms: float
    p99_ms: float
    sysbench_p99_ms: float
    errors: int
    ok: bool
    error: str = ""


# -- sysbench -------------------------------------------------------------------------------------


def sysbench_args(ep: Endpoint, args: argparse.Namespace) -> list[str]:
    return [
        "sysbench",
        "oltp_point_select",
        f"--mysql-host={ep.host}",
        f"--mysql-port={ep.port}",
        f"--mysql-user={ep.user}",
        f"--mysql-password={ep.password}",
        f"--mysql-db={DATABASE}",
        "--mysql-ssl=off",
        "--tables=1",
        f"--table-size={args.table_size}",
        f"--db-ps-mode={args.ps_mode}",
    ]


_TPS = re.compile(r"transactions:\s+(\d+)\s+\(([\d.]+) per sec")
_QPS = re.compile(r"queries:\s+(\d+)\s+\(([\d.]+) per sec")
_ERR = re.compile(r"ignored errors:\s+(\d+)")
_P99 = re.compile(r"(\d+)th percentile:\s+([\d.]+)")
_HIST_LINE = re.compile(r"^\s*([\d.]+)\s+\|\**\s+(\d+)\s*$")


def histogram_percentile(buckets: list[tuple[float, int]], pct: float) -> float:
    """The smallest bucket value with at least ``pct`` % of the events at or below it.

    >>> histogram_percentile([(0.010, 10), (0.020, 80), (0.030, 10)], 50)
    0.02
    """
    total = sum(count for _, count in buckets)
    if total == 0:
        return float("nan")
    threshold = total * pct / 100.0
    seen = 0
    for value, count in buckets:
        seen += count
        if seen >= threshold:
            return value
    return buckets[-1][0]


def parse_sysbench(text: str) -> dict[str, Any]:
    """TPS, QPS, errors, sysbench's percentile and the histogram from a ``run`` output."""
    tps = _TPS.search(text)
    qps = _QPS.search(text)
    if not tps or not qps:
        raise ValueError("no transaction statistics in sysbench output")
    buckets: list[tuple[float, int]] = []
    in_hist = False
    for line in text.splitlines():
        if line.startswith("Latency histogram"):
            in_hist = True
            continue
        if in_hist:
            m = _HIST_LINE.match(line)
            if m:
                buckets.append((float(m.group(1)), int(m.group(2))))
            elif buckets:
                in_hist = False
    p99 = _P99.search(text)
    err = _ERR.search(text)
    return {
        "tps": float(tps.group(2)),
        "qps": float(qps.group(2)),
        "errors": int(err.group(1)) if err else 0,
        "sysbench_p99_ms": float(p99.group(2)) if p99 else float("nan"),
        "p50_ms": histogram_percentile(buckets, 50),
        "p99_ms": histogram_percentile(buckets, 99),
    }


def run_sysbench(ep: Endpoint, threads: int, rnd: int, args: argparse.Namespace) -> RunResult:
    cmd = [
        *sysbench_args(ep, args),
        f"--threads={threads}",
        f"--time={args.time}",
        "--percentile=99",
        "--histogram=on",
        "--report-interval=0",
        "run",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.time + 120, check=False)
    try:
        if proc.returncode != 0:
            raise ValueError(f"sysbench exited {proc.returncode}")
        parsed = parse_sysbench(proc.stdout)
    except ValueError as exc:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-6:]
        nan = float("nan")
        return RunResult(
            ep.name, threads, rnd, 0.0, 0.0, nan, nan, nan, 0, False, f"{exc}: " + " | ".join(tail)
        )
    return RunResult(ep.name, threads, rnd, ok=True, **parsed)


# -- systems under test ---------------------------------------------------------------------------


def start_relay(target: MariaDB, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    with open(workdir / "relay.stderr", "wb") as log:  # the child keeps its own copy of the fd
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "relay.py"), "--listen", f"127.0.0.1:{port}",
             "--target", f"{target.host}:{target.port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    if not wait_for_port("127.0.0.1", port, timeout=15):
        proc.kill()
        raise RuntimeError(f"relay did not start: {(workdir / 'relay.stderr').read_text()}")
    return proc, port


def start_dbmesh(target: MariaDB, workdir: Path) -> tuple[DbMeshProcess | None, str]:
    config = make_dbmesh_config(workdir / "dbmesh-conf", target, max_pool_size=64)
    proc = DbMeshProcess(config)
    try:
        proc.start(timeout=30)
    except (DbMeshStartError, OSError) as exc:
        return None, str(exc)
    # Readiness is a TCP connect; make sure it also authenticates and serves the table.
    try:
        import pymysql

        conn = pymysql.connect(host=proc.host, port=proc.port, user="root", password="rootpw",
                               database=DATABASE, connect_timeout=10)  # fmt: skip
        with conn.cursor() as cur:
            cur.execute("SELECT c FROM sbtest1 WHERE id = 1")
            cur.fetchall()
        conn.close()
    except Exception as exc:
        err = f"dbmesh started but a point select failed: {exc!r}\nstderr:\n{proc.stderr_text()[-4000:]}"
        proc.stop()
        return None, err
    return proc, ""


# -- report ---------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def summarize(results: list[RunResult], threads_list: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for threads in threads_list:
        per_system: dict[str, Any] = {}
        for system in SYSTEMS:
            runs = [r for r in results if r.system == system and r.threads == threads and r.ok]
            per_system[system] = {
                "runs": len(runs),
                "tps": median([r.tps for r in runs]),
                "qps": median([r.qps for r in runs]),
                "p50_us": median([r.p50_ms * 1000 for r in runs]),
                "p99_us": median([r.p99_ms * 1000 for r in runs]),
            }
        ratios: dict[str, list[float]] = {"dbmesh_over_relay_tps": [], "dbmesh_over_direct_tps": [],
                                          "relay_over_direct_tps": [], "dbmesh_added_p50_us": [],
                                          "relay_added_p50_us": []}  # fmt: skip
        rounds = sorted({r.round for r in results if r.threads == threads})
        for rnd in rounds:
            by = {r.system: r for r in results if r.threads == threads and r.round == rnd and r.ok}
            a, b, c = by.get("direct"), by.get("relay"), by.get("dbmesh")
            if a and b:
                ratios["relay_over_direct_tps"].append(b.tps / a.tps)
                ratios["relay_added_p50_us"].append((b.p50_ms - a.p50_ms) * 1000)
            if c and b:
                ratios["dbmesh_over_relay_tps"].append(c.tps / b.tps)
            if c and a:
                ratios["dbmesh_over_direct_tps"].append(c.tps / a.tps)
                ratios["dbmesh_added_p50_us"].append((c.p50_ms - a.p50_ms) * 1000)
        out[str(threads)] = {
            "systems": per_system,
            "per_round": ratios,
            "median": {k: median(v) for k, v in ratios.items()},
        }
    return out


def _fmt(value: float, spec: str) -> str:
    return "-" if value != value else format(value, spec)


def print_report(summary: dict[str, Any], dbmesh_error: str, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(100, shutil.get_terminal_size().columns))
    table = Table(title=f"sysbench oltp_point_select — {args.time}s x {args.rounds} rounds per system "
                        f"(ps-mode {args.ps_mode}; medians)")  # fmt: skip
    for col in ("threads", "system", "TPS", "QPS", "p50 µs", "p99 µs", "runs"):
        table.add_column(col, justify="right" if col not in ("system",) else "left")
    for threads, data in summary.items():
        for system in SYSTEMS:
            s = data["systems"][system]
            table.add_row(threads, system, _fmt(s["tps"], ",.0f"), _fmt(s["qps"], ",.0f"),
                          _fmt(s["p50_us"], ".1f"), _fmt(s["p99_us"], ".1f"), str(s["runs"]))  # fmt: skip
        table.add_section()
    console.print(table)

    targets = Table(title="dbmesh against its targets (median of per-round ratios)")
    for col in ("threads", "measure", "value", "target", "verdict"):
        targets.add_column(col, justify="left" if col in ("measure", "verdict") else "right")
    for threads, data in summary.items():
        m = data["median"]
        rows = [
            ("dbmesh / relay throughput", m["dbmesh_over_relay_tps"], ".3f", f">= {TARGET_RELAY_RATIO}",
             lambda v: v >= TARGET_RELAY_RATIO),
            ("dbmesh p50 added over direct (µs)", m["dbmesh_added_p50_us"], ".1f", f"<= {TARGET_ADDED_P50_US:.0f}",
             lambda v: v <= TARGET_ADDED_P50_US),
            ("dbmesh / direct throughput", m["dbmesh_over_direct_tps"], ".3f", "", None),
            ("relay / direct throughput (reference)", m["relay_over_direct_tps"], ".3f", "", None),
            ("relay p50 added over direct (µs, reference)", m["relay_added_p50_us"], ".1f", "", None),
        ]  # fmt: skip
        for label, value, spec, target, check in rows:
            if value != value:
                verdict = "[yellow]not measured[/]"
            elif check is None:
                verdict = ""
            else:
                verdict = "[green]meets[/]" if check(value) else "[red]misses[/]"
            targets.add_row(threads, label, _fmt(value, spec), target, verdict)
        targets.add_section()
    console.print(targets)
    if dbmesh_error:
        console.print(f"[red]dbmesh was not measured:[/] {dbmesh_error}", markup=True, highlight=False)


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--time", type=int, default=10, help="seconds per sysbench run (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="A/B/C rounds per thread count (default 3)")
    p.add_argument("--threads", default="1,8", help="comma-separated thread counts (default 1,8)")
    p.add_argument("--table-size", type=int, default=10000)
    p.add_argument("--ps-mode", choices=("auto", "disable"), default="auto",
                   help="sysbench --db-ps-mode: auto = binary prepared statements, disable = text queries")  # fmt: skip
    p.add_argument("--systems", default=",".join(SYSTEMS), help="subset of direct,relay,dbmesh")
    p.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "mysql_point_select.json")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    p.add_argument("--update-readme", action="store_true", help="rewrite the results table in README.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("sysbench") is None:
        print("sysbench not found: run `make install` (scripts/install.sh installs it)", file=sys.stderr)
        return 2
    threads_list = [int(t) for t in args.threads.split(",") if t]
    systems = [s for s in args.systems.split(",") if s]
    workdir = Path(tempfile.mkdtemp(prefix="dbmesh-bench-"))
    mariadb = MariaDB.from_env()
    managed = mariadb is None
    relay_proc: subprocess.Popen[bytes] | None = None
    dbmesh_proc: DbMeshProcess | None = None
    dbmesh_error = ""
    try:
        if mariadb is None:
            mariadb = MariaDB.managed_in(workdir / "mariadb").start()
        mariadb.ensure_database(DATABASE)
        direct = Endpoint("direct", mariadb.host, mariadb.port, mariadb.user, mariadb.password)
        print(f"preparing sbtest1 ({args.table_size} rows) in {DATABASE} on {mariadb.host}:{mariadb.port}",
              file=sys.stderr)  # fmt: skip
        subprocess.run([*sysbench_args(direct, args), "cleanup"], capture_output=True, check=False)
        subprocess.run([*sysbench_args(direct, args), "prepare"], capture_output=True, check=True)

        endpoints = {"direct": direct}
        if "relay" in systems:
            relay_proc, relay_port = start_relay(mariadb, workdir)
            endpoints["relay"] = Endpoint("relay", "127.0.0.1", relay_port, mariadb.user, mariadb.password)
        if "dbmesh" in systems:
            dbmesh_proc, dbmesh_error = start_dbmesh(mariadb, workdir)
            if dbmesh_proc is not None:
                endpoints["dbmesh"] = Endpoint("dbmesh", dbmesh_proc.host, dbmesh_proc.port, "root", "rootpw")
            else:
                print(f"dbmesh failed to start; measuring the others.\n{dbmesh_error}", file=sys.stderr)

        results: list[RunResult] = []
        order = [s for s in SYSTEMS if s in endpoints and s in systems]
        for threads in threads_list:
            for rnd in range(1, args.rounds + 1):
                for system in order:
                    res = run_sysbench(endpoints[system], threads, rnd, args)
                    results.append(res)
                    status = (f"{res.tps:,.0f} tps p50 {res.p50_ms * 1000:.0f}µs p99 {res.p99_ms * 1000:.0f}µs"
                              if res.ok else f"FAILED {res.error}")  # fmt: skip
                    print(f"  threads={threads} round={rnd} {system:<6} {status}", file=sys.stderr)

        summary = summarize(results, threads_list)
        print_report(summary, dbmesh_error, args)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        mariadb_version = mariadb.execute("SELECT VERSION()")[0][0]
        document = {
            "benchmark": "sysbench oltp_point_select",
            "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "settings": {"time_s": args.time, "rounds": args.rounds, "threads": threads_list,
                         "table_size": args.table_size, "ps_mode": args.ps_mode,
                         "mariadb": mariadb_version, "mariadb_managed": managed,
                         "percentiles": "p50 and p99 from sysbench --histogram; sysbench_p99_ms from --percentile=99"},
            "targets": {"dbmesh_over_relay_tps_min": TARGET_RELAY_RATIO, "dbmesh_added_p50_us_max": TARGET_ADDED_P50_US},
            "dbmesh_error": dbmesh_error,
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
        if relay_proc is not None:
            relay_proc.terminate()
            try:
                relay_proc.wait(10)
            except subprocess.TimeoutExpired:
                relay_proc.kill()
        if managed and mariadb is not None:
            mariadb.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {workdir}", file=sys.stderr)




def readme_table(summary: dict[str, Any], document: dict[str, Any]) -> str:
    """The Markdown results table that goes between the README markers."""
    s = document["settings"]
    lines = [
        f"sysbench `oltp_point_select`, {s['time_s']} s x {s['rounds']} rounds, {s['mariadb']}, "
        f"{document['machine']['cpus']} CPUs, {document['when']} (medians; ratios are medians of per-round ratios).",
        "",
        "| threads | direct TPS | relay TPS | dbmesh TPS | dbmesh / relay (>= 0.9) "
        "| p50 direct µs | p50 dbmesh µs | dbmesh added p50 µs (<= 30) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for threads, data in summary.items():
        sy, m = data["systems"], data["median"]
        lines.append(
            f"| {threads} | {_fmt(sy['direct']['tps'], ',.0f')} | {_fmt(sy['relay']['tps'], ',.0f')} "
            f"| {_fmt(sy['dbmesh']['tps'], ',.0f')} | {_fmt(m['dbmesh_over_relay_tps'], '.3f')} "
            f"| {_fmt(sy['direct']['p50_us'], '.0f')} | {_fmt(sy['dbmesh']['p50_us'], '.0f')} "
            f"| {_fmt(m['dbmesh_added_p50_us'], '.1f')} |"
        )
    if document["dbmesh_error"]:
        lines += ["", "dbmesh was not measured in this run (it failed to start)."]
    return "\n".join(lines)


def update_readme(path: Path, summary: dict[str, Any], document: dict[str, Any]) -> None:
    update_readme_block(path, "mysql_point_select", readme_table(summary, document))


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
