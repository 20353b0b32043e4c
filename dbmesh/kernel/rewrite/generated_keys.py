"""Add a generated key column to an INSERT that omits the key column: one key per VALUES row, in row order.

>>> import sqlglot
>>> add_generated_key(sqlglot.parse_one("INSERT INTO t (a) VALUES (1), (2)"), "id", [7, 8]).sql()
'INSERT INTO t (a, id) VALUES (1, 7), (2, 8)'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlglot import exp

from dbmesh.kernel.rewrite.insert_rows import insert_rows


def insert_columns(tree: exp.Expr) -> list[str] | None:
    """The INSERT's column list (lower-case), or None when it names no columns."""
    if not isinstance(tree, exp.Insert) or not isinstance(tree.this, exp.Schema):
        return None
    names = [c.name.lower() for c in tree.this.expressions]
    return names or None


def add_generated_key(tree: exp.Expr, column: str, keys: Sequence[Any]) -> exp.Expr:
    """A copy of the INSERT with `column` appended to its column list and `keys[i]` to row i."""
    tree = tree.copy()
    rows = insert_rows(tree)
    if rows is None or not isinstance(tree.this, exp.Schema) or len(rows) != len(keys):
        raise ValueError("not an INSERT ... VALUES with a column list and one key per row")
    tree.this.append("expressions", exp.to_identifier(column))
    for row, key in zip(rows, keys, strict=True):
        row.append("expressions", exp.convert(key))
    return tree
