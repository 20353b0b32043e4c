"""Split a multi-row INSERT: each data node's statement keeps only the rows routed to it, in their order.

>>> import sqlglot
>>> keep_rows(sqlglot.parse_one("INSERT INTO t (a) VALUES (1), (2), (3)"), [0, 2]).sql()
'INSERT INTO t (a) VALUES (1), (3)'
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp


def insert_rows(tree: exp.Expr) -> list[exp.Tuple] | None:
    """The VALUES rows of an INSERT, or None when it has no VALUES list (INSERT ... SELECT, SET, DEFAULT VALUES)."""
    if not isinstance(tree, exp.Insert) or not isinstance(tree.expression, exp.Values):
        return None
    rows = tree.expression.expressions
    return rows if all(isinstance(r, exp.Tuple) for r in rows) else None


def keep_rows(tree: exp.Expr, indices: Sequence[int]) -> exp.Expr:
    """A copy of an INSERT keeping VALUES rows `indices` (in that order)."""
    tree = tree.copy()
    rows = insert_rows(tree)
    if rows is None:
        raise ValueError("not an INSERT ... VALUES")
    tree.expression.set("expressions", [rows[i] for i in indices])
    return tree
