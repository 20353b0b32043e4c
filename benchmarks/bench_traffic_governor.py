"""Traffic-governor cost per statement: admit + breaker_check + release + record, beside an empty call sequence.

    python benchmarks/bench_traffic_governor.py [--rounds 15] [--number 20000]

Every case calls, as a session does for each statement while traffic rules are configured:

    adm = gov.admit(user, database, tables, digest); probe = gov.breaker_check(database, data_sources, tables)
    adm.release(); gov.record(probe, seconds, error)

on a governor built from a real configuration (two logical databases, each with a data source ds_0) with
Prometheus metrics attached and the real monotonic clock. The reference is the same four calls on objects
that do nothing: the floor any implementation of this API pays. Rounds alternate reference / governor so that
machine drift hits both alike; the best (lowest) microseconds per statement across rounds are printed, the
figure least disturbed by other work on the machine, with what the governor adds over the floor.

Figures on a 2-core machine, Python 3.11 (best us/statement; the reference is 0.11): no rule applies 0.23,
QPS rule + CLOSED breaker 1.16, THREAD rule + CLOSED breaker 1.49, '*' + user + table rules with 2 tables 3.55
(before the hot path was reworked: 0.26, 4.3, 4.4 and 8.7).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dbmesh.config import load_config_files  # noqa: E402
from dbmesh.observe import Metrics  # noqa: E402
from dbmesh.traffic import TrafficGovernor  # noqa: E402

DATABASES = {
    "database-shop.yaml": "databaseName: shop\ndataSources:\n  ds_0: {url: 'mysql://127.0.0.1:3306/shop_0', username: root}\n",
    "database-crm.yaml": "databaseName: crm\ndataSources:\n  ds_0: {url: 'mysql://127.0.0.1:3306/crm_0', username: root}\n",
}
BREAKER = "{resource: ds_0, grade: ERROR_RATIO, count: 0.5, timeWindow: 10, minRequestAmount: 5, statIntervalMs: 1000}"

# name: (traffic rule body, user, database, tables)
CASES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "no rule applies": (
        "    circuitBreakers:\n      - {resource: crm.ds_0, grade: ERROR_RATIO, count: 0.5, timeWindow: 10}\n"
        "    flowRules:\n      - {resource: 'user:other', grade: QPS, count: 1000000}\n",
        "app", "shop", ()),
    "QPS rule + CLOSED breaker": (
        f"    circuitBreakers:\n      - {BREAKER}\n"
        "    flowRules:\n      - {resource: 'user:app', grade: QPS, count: 1000000, controlBehavior: REJECT}\n",
        "app", "shop", ()),
    "THREAD rule + CLOSED breaker": (
        f"    circuitBreakers:\n      - {BREAKER}\n"
        "    flowRules:\n      - {resource: 'user:app', grade: THREAD, count: 1000000}\n",
        "app", "shop", ()),
    "'*' + user + table rules, 2 tables": (
        f"    circuitBreakers:\n      - {BREAKER}\n"
        "      - {resource: 'table:t_order', grade: ERROR_COUNT, count: 10, timeWindow: 10}\n"
        "    flowRules:\n      - {resource: '*', grade: QPS, count: 1000000}\n"
        "      - {resource: 'user:app', grade: THREAD, count: 1000000}\n"
        "      - {resource: 'table:t_order', grade: QPS, count: 1000000}\n",
        "app", "shop", ("t_order", "t_item")),
}


class _Nothing:
    """The same API doing nothing: the reference floor."""

    def admit(self, user: str, database: str, tables: Any, digest: Any) -> _Nothing:
        return self

    def breaker_check(self, database: str, data_sources: Any, tables: Any) -> None:
        return None

    def release(self) -> None:
        return None

    def record(self, probe: Any, seconds: float, error: bool) -> None:
        return None


def statement_loop(gov: Any, user: str, database: str, tables: tuple[str, ...]) -> Callable[[int], float]:
    data_sources = ("ds_0",)

    def run(number: int) -> float:
        admit, check, record = gov.admit, gov.breaker_check, gov.record
        start = time.perf_counter()
        for _ in range(number):
            adm = admit(user, database, tables, None)
            probe = check(database, data_sources, tables)
            adm.release()
            record(probe, 0.0005, False)
        return (time.perf_counter() - start) / number * 1e6

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds x {args.number} statements; best us/statement")
    print(f"{'case':<38}{'reference':>11}{'governor':>10}{'added':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (body, user, database, tables) in CASES.items():
            config = load_config_files({**DATABASES, "global.yaml": "rules:\n  - !TRAFFIC\n" + body}, tmp)
            gov = TrafficGovernor.build(config, Metrics())
            assert gov is not None
            reference = statement_loop(_Nothing(), user, database, tables)
            governed = statement_loop(gov, user, database, tables)
            governed(args.number)  # warm up: first-use caches, bound metric children
            refs, govs = [], []
            for _ in range(args.rounds):
                refs.append(reference(args.number))
                govs.append(governed(args.number))
            print(f"{name:<38}{min(refs):>11.2f}{min(govs):>10.2f}{min(govs) - min(refs):>8.2f}")


if __name__ == "__main__":
    main()
