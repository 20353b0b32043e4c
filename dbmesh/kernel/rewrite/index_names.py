"""Index names in CREATE/DROP INDEX get the actual table appended, as ShardingSphere names them per actual table
(`idx_status` on `t_order_1` becomes `idx_status_t_order_1`): index names are unique per schema in PostgreSQL,
so every actual table needs its own.

>>> import sqlglot
>>> actual_index_name("idx_status", "t_order_1")
'idx_status_t_order_1'
>>> rename_index(sqlglot.parse_one("CREATE INDEX idx_a ON t_order_0 (a)"), "t_order_0").sql()
'CREATE INDEX idx_a_t_order_0 ON t_order_0(a)'
>>> rename_index(sqlglot.parse_one("DROP INDEX idx_a ON t_order_0", read="mysql"), "t_order_0").sql("mysql")
'DROP INDEX idx_a_t_order_0 ON t_order_0'
"""

from __future__ import annotations

from sqlglot import exp


def actual_index_name(index: str, actual_table: str) -> str:
    return f"{index}_{actual_table}"


def index_identifier(tree: exp.Expr) -> exp.Identifier | None:
    """The index name of a CREATE INDEX / DROP INDEX statement, else None."""
    if not isinstance(tree, (exp.Create, exp.Drop)) or str(tree.args.get("kind") or "").upper() != "INDEX":
        return None
    if isinstance(tree, exp.Create):
        ident = tree.this.this if isinstance(tree.this, exp.Index) else None
    else:
        tables = tree.args.get("tables") or []
        ident = tables[0].this if len(tables) == 1 and isinstance(tables[0], exp.Table) else None
    return ident if isinstance(ident, exp.Identifier) else None


def rename_index(tree: exp.Expr, actual_table: str) -> exp.Expr:
    """A copy of an index statement with its index name suffixed by the actual table."""
    tree = tree.copy()
    ident = index_identifier(tree)
    if ident is not None:
        ident.set("this", actual_index_name(ident.this, actual_table))
    return tree
