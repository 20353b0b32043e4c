"""Planning cost of a sharded point statement: µs per Planner.plan(...) call, fresh literal every call.

    python benchmarks/bench_plan_point.py [--rounds 7] [--number 20000] [--profile CASE]

The rules are bench_sharded.py's: sysbench's sbtest1 over ds_${id % 2} (MySQL), pgbench_accounts over
ds_${aid % 2} with the other pgbench tables single (PostgreSQL). Cases: sysbench oltp_point_select as text
(`ps disable`) and with a `?` parameter (`ps auto`), pgbench -S as `-M simple` text and `-M prepared` `$1`.
Every call plans a different literal or parameter value (a rotating set of 100,000), so nothing is memoised
per value; every plan is checked against the expected route before timing. The reference is the same planner
without the point fast path (`Planner(..., point_fast_path=False)`: the general path every statement took before
kernel/point.py). Rounds alternate reference and planner per case; printed are the median µs per call over the
rounds and the median of the per-round ratios (reference / planner).

Before the point fast path (the general path alone, this machine, a shared 2-core box): 18.0-19.6 µs per text
statement, 10.4-11.5 µs per statement with a parameter.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dbmesh.config import load_config  # noqa: E402
from dbmesh.kernel.planner import Planner  # noqa: E402
from dbmesh.sharding.rule import sharding_rule_for  # noqa: E402

VALUES = 100_000

MYSQL_RULES = """\
databaseName: sb
dataSources:
  ds_0: {url: 'jdbc:mysql://127.0.0.1:3306/sb_0', username: root}
  ds_1: {url: 'jdbc:mysql://127.0.0.1:3306/sb_1', username: root}
rules:
- !SHARDING
  tables:
    sbtest1:
      actualDataNodes: ds_${0..1}.sbtest1
      databaseStrategy: {standard: {shardingColumn: id, shardingAlgorithmName: by_id}}
    t_scan:
      actualDataNodes: ds_${0..1}.t_scan_${0..1}
      databaseStrategy: {standard: {shardingColumn: id, shardingAlgorithmName: by_id}}
      tableStrategy: {standard: {shardingColumn: id, shardingAlgorithmName: scan_table}}
  shardingAlgorithms:
    by_id: {type: INLINE, props: {algorithm-expression: 'ds_${id % 2}'}}
    scan_table: {type: INLINE, props: {algorithm-expression: 't_scan_${id.intdiv(2) % 2}'}}
"""

PG_RULES = """\
databaseName: pgb
dataSources:
  ds_0: {url: 'jdbc:postgresql://127.0.0.1:5432/pgb_0', username: postgres}
  ds_1: {url: 'jdbc:postgresql://127.0.0.1:5432/pgb_1', username: postgres}
rules:
- !SHARDING
  tables:
    pgbench_accounts:
      actualDataNodes: ds_${0..1}.pgbench_accounts
      databaseStrategy: {standard: {shardingColumn: aid, shardingAlgorithmName: by_aid}}
  shardingAlgorithms:
    by_aid: {type: INLINE, props: {algorithm-expression: 'ds_${aid % 2}'}}
- !SINGLE
  tables: [ds_0.pgbench_branches, ds_0.pgbench_tellers, ds_0.pgbench_history]
  defaultDataSource: ds_0
"""

# name: (dialect, statement text ({} for the value) or prepared text, prepared?)
CASES: dict[str, tuple[str, str, bool]] = {
    "sysbench text": ("mysql", "SELECT c FROM sbtest1 WHERE id={}", False),
    "sysbench ?": ("mysql", "SELECT c FROM sbtest1 WHERE id=?", True),
    "pgbench simple": ("postgres", "SELECT abalance FROM pgbench_accounts WHERE aid = {};", False),
    "pgbench $1": ("postgres", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", True),
}


def planners(point_fast_path: bool) -> dict[str, Planner]:
    """One planner per dialect, on the benchmark's rules loaded by the real config loader."""
    out: dict[str, Planner] = {}
    for dialect, name, text in (("mysql", "sb", MYSQL_RULES), ("postgres", "pgb", PG_RULES)):
        directory = Path(tempfile.mkdtemp(prefix="bench_plan_point_"))
        (directory / f"database-{name}.yaml").write_text(text)
        (directory / "global.yaml").write_text("")
        config = load_config(directory)
        rule = sharding_rule_for(config, config.databases[name])
        assert rule is not None
        out[dialect] = Planner(rule, dialect, point_fast_path=point_fast_path)  # type: ignore[arg-type]
    return out


def calls(planner: Planner, template: str, prepared: bool) -> list[tuple[str, tuple[Any, ...]]]:
    """The (sql, params) of every call: one value each, checked to route where ds_${v % 2} says."""
    if prepared:
        out = [(template, (v,)) for v in range(1, VALUES + 1)]
    else:
        out = [(template.format(v), ()) for v in range(1, VALUES + 1)]
    for v in (1, 2, 77, VALUES):
        sql, params = out[v - 1]
        plan = planner.plan(sql, params)
        [unit] = plan.units
        assert unit.data_source == f"ds_{v % 2}" and unit.params == params and plan.merge is None, plan
        assert unit.sql == (template if prepared else sql), unit.sql
    return out


def timed(planner: Planner, work: list[tuple[str, tuple[Any, ...]]], number: int, offset: int) -> float:
    plan = planner.plan
    batch = [work[(offset + i) % VALUES] for i in range(number)]
    start = time.perf_counter()
    for sql, params in batch:
        plan(sql, params)
    return (time.perf_counter() - start) / number * 1e6


def profile(planner: Planner, work: list[tuple[str, tuple[Any, ...]]], number: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    for sql, params in work[:number]:
        planner.plan(sql, params)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--profile", choices=sorted(CASES), help="cProfile 50,000 plans of one case instead")
    args = parser.parse_args()
    systems = {"reference": planners(False), "planner": planners(True)}
    work: dict[tuple[str, str], tuple[Planner, list[tuple[str, tuple[Any, ...]]]]] = {}
    for system, by_dialect in systems.items():
        for name, (dialect, template, prepared) in CASES.items():
            planner = by_dialect[dialect]
            work[system, name] = (planner, calls(planner, template, prepared))
    if args.profile:
        profile(*work["planner", args.profile], 50_000)
        return
    us: dict[tuple[str, str], list[float]] = {key: [] for key in work}
    ratios: dict[str, list[float]] = {name: [] for name in CASES}
    for r in range(args.rounds):
        for name in CASES:
            for system in systems:
                us[system, name].append(timed(*work[system, name], args.number, r * args.number))
            ratios[name].append(us["reference", name][-1] / us["planner", name][-1])
    print(f"Planner.plan, {args.rounds} rounds x {args.number} calls, a fresh value per call; median µs per call, "
          "median per-round ratio")
    print(f"{'case':<18}{'reference µs':>14}{'planner µs':>12}{'ratio':>8}")
    for name in CASES:
        print(f"{name:<18}{statistics.median(us['reference', name]):>14.2f}"
              f"{statistics.median(us['planner', name]):>12.2f}{statistics.median(ratios[name]):>7.1f}x")


if __name__ == "__main__":
    main()
