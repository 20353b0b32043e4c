"""Parse cost per statement: sqlglot.parse_one (the reference) beside ParseCache.get(...).bound().

    python benchmarks/bench_parse_cache.py [--rounds 15] [--number 2000]

Each statement is run with fresh literal values every call (a rotating set of 64 variants), so the cache path
pays for normalisation, the lookup and the re-binding copy, never for a memoised tree. Rounds alternate
reference / cached so that machine drift hits both alike; the ratio is taken within each round and the median
across rounds is printed, with the median microseconds per call of each side. Also printed: the cost of the
prepared-statement path (get_prepared + bind) for the same statements.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlglot  # noqa: E402

from dbmesh.kernel.parse import ParseCache  # noqa: E402

STATEMENTS: dict[str, tuple[str, str, str, Callable[[int], list[object]]]] = {
    # name: (dialect, text with {} for values, prepared text, parameter maker)
    "point select (mysql)": (
        "mysql", "SELECT id, k, c, pad FROM sbtest1 WHERE id = {}",
        "SELECT id, k, c, pad FROM sbtest1 WHERE id = ?", lambda i: [i]),
    "insert (mysql)": (
        "mysql", "INSERT INTO orders (id, user_id, amount, note) VALUES ({}, {}, {}.50, 'note {}')",
        "INSERT INTO orders (id, user_id, amount, note) VALUES (?, ?, ?, ?)", lambda i: [i, i % 97, i, f"note {i}"]),
    "join (postgres)": (
        "postgres",
        "SELECT o.id, u.name, o.amount FROM orders o JOIN users u ON o.user_id = u.id "
        "WHERE o.user_id = {} AND o.status = 'open{}' ORDER BY o.created_at DESC LIMIT 20",
        "SELECT o.id, u.name, o.amount FROM orders o JOIN users u ON o.user_id = u.id "
        "WHERE o.user_id = $1 AND o.status = $2 ORDER BY o.created_at DESC LIMIT 20", lambda i: [i, f"open{i}"]),
}


def _time(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    print(f"sqlglot {sqlglot.__version__} ({'compiled' if sqlglot.parser.__file__.endswith('.so') else 'pure Python'}), "
          f"{args.rounds} rounds x {args.number} calls; median us/call and median per-round ratio")
    print(f"{'statement':<24}{'parse_one':>11}{'get+bound':>11}{'ratio':>8}{'prep+bind':>11}{'ratio':>8}")
    for name, (dialect, template, prepared_sql, make) in STATEMENTS.items():
        _measure(name, dialect, template, prepared_sql, make, args.rounds, args.number)


def _measure(name: str, dialect: str, template: str, prepared_sql: str, make: Callable[[int], list[object]],
             rounds: int, number: int) -> None:
    variants = [template.format(*([i] * template.count("{}"))) for i in range(1, 65)]
    params = [make(i) for i in range(1, 65)]
    cache = ParseCache(1024)
    # Equivalence guard: the figures mean nothing if the cache answered something else.
    for sql in variants:
        assert cache.get(sql, dialect).bound() == sqlglot.parse_one(sql, read=dialect), sql
    counter = [0]

    def reference() -> object:
        counter[0] += 1
        return sqlglot.parse_one(variants[counter[0] & 63], read=dialect)

    def cached() -> object:
        counter[0] += 1
        return cache.get(variants[counter[0] & 63], dialect).bound()

    def prepared() -> object:
        counter[0] += 1
        return cache.get_prepared(prepared_sql, dialect).bind(params[counter[0] & 63])

    ref_us, cached_us, prep_us, ratios, prep_ratios = [], [], [], [], []
    for _ in range(rounds):
        r = _time(reference, number)
        c = _time(cached, number)
        p = _time(prepared, number)
        ref_us.append(r)
        cached_us.append(c)
        prep_us.append(p)
        ratios.append(r / c)
        prep_ratios.append(r / p)
    print(f"{name:<24}{statistics.median(ref_us):>11.1f}{statistics.median(cached_us):>11.1f}"
          f"{statistics.median(ratios):>7.2f}x{statistics.median(prep_us):>11.1f}{statistics.median(prep_ratios):>7.2f}x")
    print(f"{'':<24}cache: {cache.hits} hits, {cache.misses} misses, {cache.uncacheable} uncacheable")


if __name__ == "__main__":
    main()
