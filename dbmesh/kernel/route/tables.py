"""Table references of a statement: which logic tables it names, in which query scope, under which alias.

>>> import sqlglot
>>> refs = collect_tables(sqlglot.parse_one(
...     "SELECT * FROM t_order o JOIN t_item ON o.id = t_item.id WHERE o.x IN (SELECT x FROM t_user)"))
>>> [(r.name, r.alias, r.nested) for r in refs]
[('t_order', 'o', False), ('t_item', None, False), ('t_user', None, True)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlglot import exp

# Nodes that open a query scope: columns inside resolve against the tables of the nearest one.
SCOPES: Final = (exp.Select, exp.Update, exp.Delete, exp.Insert, exp.Create, exp.Alter, exp.Drop,
                 exp.TruncateTable, exp.SetOperation)


@dataclass(frozen=True, slots=True, eq=False)
class TableRef:
    """One occurrence of a table in a statement (a self-join has two)."""

    index: int
    name: str  # logic table name, lower-case
    alias: str | None  # lower-case alias the user wrote, if any
    node: exp.Table  # the node in the analysed tree (identity only; never mutated)
    scope: exp.Expr  # the query node whose FROM/JOIN (or target) holds it
    nested: bool  # not in the statement's top-level scope (subquery, derived table, CTE, set operation)
    join_side: str  # "" for FROM/inner/cross joins, else LEFT/RIGHT/FULL


def scope_of(node: exp.Expr) -> exp.Expr | None:
    """The nearest enclosing query scope of a node."""
    parent = node.parent
    while parent is not None and not isinstance(parent, SCOPES):
        parent = parent.parent
    return parent


def _cte_names(tree: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def _is_name_only(table: exp.Table) -> bool:
    # DELETE o FROM t_order o: the tables to delete from are alias references, not table references;
    # DROP INDEX idx ON t: sqlglot holds the index name as a table.
    parent = table.parent
    if table.arg_key != "tables":
        return False
    return isinstance(parent, exp.Delete) or (
        isinstance(parent, exp.Drop) and str(parent.args.get("kind") or "").upper() == "INDEX")


def collect_tables(tree: exp.Expr) -> list[TableRef]:
    """Every real table reference (CTE names, table functions and DELETE target lists excluded), in tree order."""
    ctes = _cte_names(tree)
    refs: list[TableRef] = []
    for node in tree.find_all(exp.Table):
        if not isinstance(node.this, exp.Identifier) or _is_name_only(node):
            continue
        name = node.name.lower()
        if name in ctes and not node.args.get("db"):
            continue
        scope = scope_of(node) or tree  # DESCRIBE t, SHOW ... FROM t: the statement itself
        alias = node.alias.lower() if node.alias else None
        join = node.parent if isinstance(node.parent, exp.Join) else None
        side = (join.side or "").upper() if join is not None else ""
        refs.append(TableRef(len(refs), name, alias, node, scope, scope is not tree, side))
    return refs


def resolve_qualifier(refs: list[TableRef], scope: exp.Expr, qualifier: str) -> TableRef | None:
    """The table reference a column qualifier names in `scope` (aliases first, then unaliased table names)."""
    q = qualifier.lower()
    for ref in refs:
        if ref.scope is scope and ref.alias == q:
            return ref
    for ref in refs:
        if ref.scope is scope and ref.alias is None and ref.name == q:
            return ref
    return None
