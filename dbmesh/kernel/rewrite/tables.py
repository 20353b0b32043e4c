"""Rename logic tables to actual tables: table references and the qualifiers naming them, never user aliases.

>>> import sqlglot
>>> tree = sqlglot.parse_one("SELECT t_order.id, o2.x FROM t_order JOIN t_order AS o2 ON o2.id = t_order.id")
>>> rename_tables(tree, {"t_order": "t_order_1"}).sql()
'SELECT t_order_1.id, o2.x FROM t_order_1 JOIN t_order_1 AS o2 ON o2.id = t_order_1.id'
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp


def user_aliases(tree: exp.Expr) -> set[str]:
    """Every table alias and CTE name the statement defines (lower-case): qualifiers spelled so are never renamed."""
    names = {t.alias.lower() for t in tree.find_all(exp.Table) if t.alias}
    names |= {s.alias.lower() for s in tree.find_all(exp.Subquery) if s.alias}
    names |= {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    return names


def _renamed(ident: exp.Expr, actual: str) -> exp.Identifier:
    quoted = bool(ident.args.get("quoted")) if isinstance(ident, exp.Identifier) else False
    return exp.Identifier(this=actual, quoted=quoted)


def rename_tables(tree: exp.Expr, mapping: Mapping[str, str]) -> exp.Expr:
    """A copy of `tree` with each logic table (lower-case key) replaced by its actual table.

    Table references lose a database qualifier (the actual table lives in the data source's own database);
    column qualifiers naming a renamed table follow it unless the statement also uses that name as an alias."""
    tree = tree.copy()
    if not mapping:
        return tree
    aliases = user_aliases(tree)
    for table in list(tree.find_all(exp.Table)):
        if not isinstance(table.this, exp.Identifier):
            continue
        name = table.name.lower()
        actual = mapping.get(name)
        if actual is None:
            continue
        if isinstance(table.parent, exp.Delete) and table.arg_key == "tables" and name in aliases:
            continue  # DELETE o FROM t_order o: `o` is an alias
        table.set("this", _renamed(table.this, actual))
        table.set("db", None)
        table.set("catalog", None)
    for column in list(tree.find_all(exp.Column)):
        qualifier = column.args.get("table")
        if not isinstance(qualifier, exp.Identifier):
            continue
        name = qualifier.this.lower()
        if name in mapping and name not in aliases:
            column.set("table", _renamed(qualifier, mapping[name]))
            column.set("db", None)
            column.set("catalog", None)
    return tree
