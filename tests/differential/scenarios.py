"""Writes through dbmesh: DML and transaction scenarios on ``t_ledger``, and the shared checks both frontends run.

Each scenario starts from the same ``t_ledger`` rows on both sides (reset directly: plain table, physical data
nodes), runs its steps on one fresh connection per side, and compares every step: result rows, affected-row
counts, PostgreSQL command tags, or the error (MySQL errno / PostgreSQL SQLSTATE) when both sides fail. At the
end the whole table must be identical on both sides, and every row must sit on the data node its rule names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.differential import dataset
from tests.differential.harness import (
    Result,
    ServerError,
    catch,
    compare,
    misplaced_rows,
    place_directly,
)
from tests.support.sharded import run_statements

L = dataset.ledger()
K = [row[0] for row in L]  # ledger ids
U = {row[0]: row[1] for row in L}  # ledger id -> user id
_ALL = "SELECT ledger_id, user_id, kind, delta, memo FROM t_ledger ORDER BY ledger_id"
_NEW_ROWS = ("INSERT INTO t_ledger (ledger_id, user_id, kind, delta, memo) VALUES "
             "(900, 1, 'new', 1.00, NULL), (901, 2, 'new', -2.50, 'a'), (902, 3, 'New', 3.25, 'b'), "
             "(903, 4, 'new', 0.00, NULL), (904, 5, 'NEW', 10.10, 'c'), (905, 6, 'new', -0.01, 'd'), "
             "(906, 7, 'new', 99.99, NULL), (907, 8, 'new', 5.00, 'e')")


@dataclass(frozen=True)
class Step:
    sql: str
    ordered: bool = False
    pg: str | None = None

    def sql_for(self, dialect: str) -> str:
        return self.pg if dialect == "postgresql" and self.pg is not None else self.sql


def S(sql: str, ordered: bool = False, pg: str | None = None) -> Step:
    return Step(sql, ordered, pg)


_TX_WRITES = [
    S(_NEW_ROWS),
    S("UPDATE t_ledger SET delta = delta + 100 WHERE kind = 'debit'"),
    S(f"DELETE FROM t_ledger WHERE user_id = {U[K[0]]} AND ledger_id = {K[0]}"),
    S(f"UPDATE t_ledger SET memo = 'in tx' WHERE ledger_id IN ({K[1]}, {K[2]}, {K[3]}, 901)"),
    S("SELECT COUNT(*), SUM(delta), MAX(ledger_id) FROM t_ledger", True),
    S(f"SELECT ledger_id, memo FROM t_ledger WHERE ledger_id IN ({K[0]}, {K[1]}, 901) ORDER BY ledger_id", True),
]

def _oltp_transaction(n: int) -> list[Step]:
    """One sysbench oltp_read_write transaction on t_ledger: reads (merged ranges) then writes on both data sources."""
    a = K[20 + 17 * n]
    return [
        S("BEGIN"),
        S(f"SELECT memo FROM t_ledger WHERE ledger_id = {a}"),
        S(f"SELECT memo FROM t_ledger WHERE ledger_id BETWEEN {a} AND {a + 30}"),
        S(f"SELECT SUM(delta) FROM t_ledger WHERE ledger_id BETWEEN {a} AND {a + 30}", True),
        S(f"SELECT kind FROM t_ledger WHERE ledger_id BETWEEN {a} AND {a + 30} ORDER BY kind, ledger_id", True),
        # UPPER: MariaDB's DISTINCT would show any one of 'fee'/'FEE'; their upper-case form is one value.
        S(f"SELECT DISTINCT UPPER(kind) FROM t_ledger WHERE ledger_id BETWEEN {a} AND {a + 30} ORDER BY 1", True),
        S(f"UPDATE t_ledger SET delta = delta + 1 WHERE ledger_id = {a + 1}"),
        S(f"UPDATE t_ledger SET memo = 'oltp {n}' WHERE ledger_id = {a + 2}"),
        S(f"DELETE FROM t_ledger WHERE ledger_id = {a + 3}"),
        S(f"INSERT INTO t_ledger (ledger_id, user_id, kind, delta, memo) VALUES ({a + 3}, {U[a + 3]}, 'oltp', 1.00, "
          "NULL)"),
        S("COMMIT"),
    ]


SCENARIOS: dict[str, list[Step]] = {
    "update_point": [S(f"UPDATE t_ledger SET memo = 'point' WHERE user_id = {U[K[0]]} AND ledger_id = {K[0]}")],
    "update_key_only": [S(f"UPDATE t_ledger SET delta = delta * 2 WHERE ledger_id = {K[1]}")],
    "update_in_keys": [S(f"UPDATE t_ledger SET kind = 'moved' WHERE ledger_id IN ({', '.join(map(str, K[:9]))})")],
    "update_user_in": [S("UPDATE t_ledger SET memo = 'users' WHERE user_id IN (1, 2, 3)")],
    "update_full_route": [S("UPDATE t_ledger SET delta = delta + 1 WHERE kind = 'fee'")],
    "update_unchanged_rows": [S("UPDATE t_ledger SET kind = kind WHERE user_id < 10")],
    "update_partly_unchanged": [S("UPDATE t_ledger SET memo = 'rent' WHERE user_id < 20")],
    "update_range": [S("UPDATE t_ledger SET memo = NULL WHERE ledger_id BETWEEN 550 AND 600")],
    "update_no_match": [S("UPDATE t_ledger SET memo = 'none' WHERE user_id = 1000")],
    "update_all": [S("UPDATE t_ledger SET delta = -delta")],
    "delete_point": [S(f"DELETE FROM t_ledger WHERE user_id = {U[K[2]]} AND ledger_id = {K[2]}")],
    "delete_key_only": [S(f"DELETE FROM t_ledger WHERE ledger_id = {K[3]}")],
    "delete_in": [S(f"DELETE FROM t_ledger WHERE ledger_id IN ({', '.join(map(str, K[10:30]))}, 99999)")],
    "delete_full_route": [S("DELETE FROM t_ledger WHERE delta < 0")],
    "delete_no_match": [S("DELETE FROM t_ledger WHERE memo = 'nothing'")],
    "delete_all": [S("DELETE FROM t_ledger"), S("SELECT COUNT(*), SUM(delta) FROM t_ledger", True)],
    "insert_one": [S("INSERT INTO t_ledger (ledger_id, user_id, kind, delta, memo) VALUES (950, 9, 'one', 9.50, 'x')")],
    "insert_multi_row": [S(_NEW_ROWS), S("SELECT * FROM t_ledger WHERE ledger_id >= 900", False)],
    "insert_duplicate_key": [S(f"INSERT INTO t_ledger (ledger_id, user_id, kind, delta, memo) VALUES "
                               f"({K[5]}, {U[K[5]]}, 'dup', 1.00, NULL)")],
    "insert_update_delete": [
        S(_NEW_ROWS),
        S("UPDATE t_ledger SET delta = delta + 0.5 WHERE ledger_id >= 900"),
        S("DELETE FROM t_ledger WHERE ledger_id IN (900, 903, 906)"),
        S("SELECT ledger_id, delta FROM t_ledger WHERE ledger_id >= 900 ORDER BY ledger_id", True),
    ],
    "tx_rollback": [S("BEGIN"), *_TX_WRITES, S("ROLLBACK")],
    "tx_commit": [S("BEGIN"), *_TX_WRITES, S("COMMIT")],
    "tx_start_transaction_commit": [S("START TRANSACTION"), S(_NEW_ROWS),
                                    S("DELETE FROM t_ledger WHERE kind = 'credit'"), S("COMMIT")],
    "tx_oltp_read_write": [step for n in range(4) for step in _oltp_transaction(n)],
    # Savepoints: every data source the transaction touched rolls back to the same point, including one that
    # joined the transaction only after the savepoint was set.
    "tx_savepoint_rollback_to": [
        S("BEGIN"),
        S("UPDATE t_ledger SET memo = 'before' WHERE user_id = 1"),
        S("SAVEPOINT a"),
        S("UPDATE t_ledger SET delta = delta + 7 WHERE user_id IN (1, 2)"),
        S(_NEW_ROWS),
        S("ROLLBACK TO SAVEPOINT a"),
        S("SELECT COUNT(*), SUM(delta) FROM t_ledger", True),
        S("UPDATE t_ledger SET memo = 'after' WHERE user_id = 2"),
        S("COMMIT"),
    ],
    "tx_savepoint_late_joiner": [
        S("BEGIN"),
        S("SAVEPOINT a"),
        S("UPDATE t_ledger SET delta = 0 WHERE user_id = 1"),
        S("UPDATE t_ledger SET delta = 0 WHERE user_id = 2"),
        S("ROLLBACK TO SAVEPOINT a"),
        S("SELECT COUNT(*), SUM(delta) FROM t_ledger", True),
        S("COMMIT"),
    ],
    "tx_savepoint_release_and_nested": [
        S("BEGIN"),
        S("SAVEPOINT a"),
        S("UPDATE t_ledger SET memo = 'a' WHERE user_id = 2"),
        S("SAVEPOINT b"),
        S("UPDATE t_ledger SET memo = 'b' WHERE user_id = 1"),
        S("RELEASE SAVEPOINT b"),
        S("SAVEPOINT c"),
        S("DELETE FROM t_ledger WHERE user_id = 3"),
        S("ROLLBACK TO SAVEPOINT c"),
        S("COMMIT"),
    ],
    "tx_rollback_after_reads": [
        S("BEGIN"),
        S("SELECT COUNT(*) FROM t_ledger", True),
        S("UPDATE t_ledger SET delta = 0 WHERE user_id IN (1, 2)"),
        S("SELECT user_id, SUM(delta) FROM t_ledger WHERE user_id IN (1, 2) GROUP BY user_id"),
        S("ROLLBACK"),
        S("SELECT COUNT(*), SUM(delta) FROM t_ledger", True),
    ],
}

# Scenarios whose table must end exactly as it started (the initial rows), not just equal on both sides.
UNCHANGED = {"tx_rollback", "tx_rollback_after_reads", "tx_savepoint_late_joiner", "update_no_match", "delete_no_match", "insert_duplicate_key"}


def reset_ledger(server: Any, plain_db: str, mirror_db: str | None) -> None:
    """Put the initial ``t_ledger`` rows back: plain table (and mirror), and every physical data node."""
    inserts = list(dataset.T_LEDGER.insert_statements(L))
    for db in (plain_db, mirror_db):
        if db is not None:
            run_statements(server, db, ["DELETE FROM t_ledger", *inserts])
    for ds, table in dataset.physical_nodes(dataset.T_LEDGER):
        run_statements(server, dataset.PHYSICAL[ds], [f"DELETE FROM {table}"])
    place_directly(server, dataset.PHYSICAL, dataset.T_LEDGER, L)


def same_outcome(sql: str, plain: Result | ServerError, mesh: Result | ServerError, ordered: bool) -> str | None:
    """None when both sides answered alike: equal results, or errors with the same code."""
    if isinstance(plain, ServerError) or isinstance(mesh, ServerError):
        if isinstance(plain, ServerError) and isinstance(mesh, ServerError):
            if (plain.code, plain.sqlstate) == (mesh.code, mesh.sqlstate):
                return None
        return f"SQL: {sql}\noutcomes differ\n  plain: {plain}\n  mesh:  {mesh}"
    return compare(sql, plain, mesh, ordered=ordered)


def run_scenario(
    name: str,
    dialect: str,
    run_plain: Callable[[str], Result],
    run_mesh: Callable[[str], Result],
    server: Any,
    *,
    check_placement: bool = True,
) -> None:
    """Run one scenario's steps on both sides and check the table afterwards (raises AssertionError).

    ``check_placement`` reads the physical data nodes; the self-check mode writes to a mirror database instead."""
    problems: list[str] = []
    for step in SCENARIOS[name]:
        sql = step.sql_for(dialect)
        plain, mesh = catch(lambda sql=sql: run_plain(sql)), catch(lambda sql=sql: run_mesh(sql))
        if isinstance(plain, ServerError) and name != "insert_duplicate_key":
            raise AssertionError(f"the plain database rejected a scenario step (the scenario is wrong): {plain}\n"
                                 f"SQL: {sql}")
        problem = same_outcome(sql, plain, mesh, step.ordered)
        if problem:
            problems.append(problem)
    plain_all, mesh_all = catch(lambda: run_plain(_ALL)), catch(lambda: run_mesh(_ALL))
    problem = same_outcome(_ALL, plain_all, mesh_all, True)
    if problem:
        problems.append("table contents after the scenario: " + problem)
    if isinstance(plain_all, Result):
        if name in UNCHANGED:
            initial = Result(plain_all.columns, [tuple(r) for r in L], plain_all.affected, plain_all.status)
            problem = compare(_ALL, initial, plain_all, ordered=True)
            if problem:
                problems.append("the plain table changed in a scenario that must leave it as it was (scenario bug): "
                                + problem)
            if isinstance(mesh_all, Result) and (problem := compare(_ALL, initial, mesh_all, ordered=True)):
                problems.append("dbmesh's table is not back to its initial rows: " + problem)
        placement = misplaced_rows(server, dataset.PHYSICAL, dataset.T_LEDGER, plain_all.rows) if check_placement else []
        if placement:
            problems.append("rows are not on their data nodes after the scenario:\n  " + "\n  ".join(placement))
    assert not problems, "\n\n".join(problems)


def check_refused(
    sql: str, construct: str, plain: Result | ServerError, mesh: Result | ServerError, *, errno: int | None,
    sqlstate: str,
) -> None:
    """The plain database answers; dbmesh refuses with SHARDING_UNSUPPORTED naming the construct."""
    import re

    assert isinstance(plain, Result), f"the plain database rejected a statement listed as valid: {plain}\nSQL: {sql}"
    assert isinstance(mesh, ServerError), (
        f"dbmesh answered a statement it must refuse (first rows {mesh.rows[:3]!r} of {len(mesh.rows)}; "
        f"plain has {len(plain.rows)})\nSQL: {sql}")
    assert (mesh.code, mesh.sqlstate) == (errno, sqlstate), f"wrong error identity: {mesh}\nSQL: {sql}"
    assert "DBM-1506" in mesh.message, f"the message lacks the catalogue code DBM-1506: {mesh.message!r}"
    assert re.search(construct, mesh.message, re.IGNORECASE), (
        f"the message does not name the construct /{construct}/: {mesh.message!r}")


def ids(items: Sequence[Any]) -> list[str]:
    return [item.id for item in items]
