"""What the planner learns from a statement's shape, once per shape: its kind, its tables and how each is
sharded, which literal or parameter slots feed which sharding condition, INSERT rows, UPDATE assignments to
sharding columns, whether joined sharded tables are bound on their sharding columns, which constructs forbid a
multi-node route, and where the logic table names sit in the text.

Nothing here depends on the values of one statement: `route.engine` evaluates the slots."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from dbmesh.kernel.plan import StatementKind
from dbmesh.kernel.rewrite.generated_keys import insert_columns
from dbmesh.kernel.rewrite.index_names import index_identifier
from dbmesh.kernel.rewrite.insert_rows import insert_rows
from dbmesh.kernel.rewrite.tables import user_aliases
from dbmesh.kernel.route.conditions import Groups, dnf, for_ref
from dbmesh.kernel.route.errors import RouteError, unsupported
from dbmesh.kernel.route.protocols import ShardingRuleLike, StrategyLike
from dbmesh.kernel.route.tables import TableRef, collect_tables, resolve_qualifier, scope_of
from dbmesh.kernel.route.values import Slot, slot_of


@dataclass(frozen=True, slots=True)
class InsertInfo:
    """An INSERT into a sharded table: per VALUES row, the slot of each sharding column (None: not a plain value)."""

    logic: str
    rows: tuple[tuple[tuple[str, Slot | None], ...], ...]
    missing: tuple[str, ...]  # sharding columns the INSERT does not name
    generate_key: str | None  # key column to generate (omitted by the INSERT)


@dataclass(frozen=True, slots=True)
class SetInfo:
    """`SET column = value` on a sharding column of an UPDATE's table."""

    column: str
    slot: Slot | None
    same: bool  # the value is the column itself (no change)


@dataclass(frozen=True, slots=True)
class Span:
    """A name to replace in the statement's text: `kind` is "table" (the actual table) or "index" (index name
    suffixed with the actual table). Offsets are kept relative to the end of literal `anchor - 1` (or the start
    of the text), so one shape's spans apply to every statement of the shape."""

    anchor: int
    delta: int
    length: int
    kind: str
    logic: str
    name: str  # the identifier as written, unquoted
    quote: str  # the quote character it was written with, or ""


@dataclass(slots=True)
class Analysis:
    kind: StatementKind
    statement: str  # select | setop | insert | update | delete | ddl | other
    tables: tuple[str, ...]  # logic tables in order of appearance
    refs: list[TableRef]
    sharded: list[int]  # indexes of refs to sharded tables
    broadcast: set[str]
    singles: list[str]  # tables that are neither sharded nor broadcast
    conditions: dict[int, Groups]  # per sharded ref
    primary: int | None = None  # the sharded ref a multi-node route follows
    multi_error: RouteError | None = None  # why the statement cannot span several nodes
    write_error: RouteError | None = None  # refused whatever the route
    insert: InsertInfo | None = None
    sets: tuple[SetInfo, ...] = ()
    target: str | None = None  # the table a write or DDL changes
    spans: tuple[Span, ...] | None = None  # None: the text cannot be renamed in place
    index_ddl: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def statement_kind(tree: exp.Expr) -> tuple[StatementKind, str]:
    if isinstance(tree, exp.Select):
        return "query", "select"
    if isinstance(tree, exp.SetOperation):
        return "query", "setop"
    if isinstance(tree, exp.Insert):
        return "dml", "insert"
    if isinstance(tree, exp.Update):
        return "dml", "update"
    if isinstance(tree, exp.Delete):
        return "dml", "delete"
    if isinstance(tree, (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable)):
        return "ddl", "ddl"
    if isinstance(tree, exp.Merge):
        return "dml", "merge"
    return "other", "other"


def _strategy_columns(strategy: StrategyLike | None) -> tuple[str, ...]:
    if strategy is None or strategy.kind not in ("standard", "complex"):
        return ()
    return tuple(strategy.columns)


def _conjuncts(node: exp.Expr | None) -> list[exp.Expr]:
    if node is None:
        return []
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


class _Classes:
    """Union-find over (ref, column): columns a top-level conjunct equates."""

    def __init__(self) -> None:
        self.parent: dict[tuple[int, str], tuple[int, str]] = {}

    def find(self, x: tuple[int, str]) -> tuple[int, str]:
        while self.parent.get(x, x) != x:
            x = self.parent[x]
        return x

    def union(self, a: tuple[int, str], b: tuple[int, str]) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb

    def members(self, x: tuple[int, str]) -> list[tuple[int, str]]:
        root = self.find(x)
        found = {k for k in self.parent if self.find(k) == root} | {root, x}
        return sorted(found)


class Analyzer:
    """Analyses statement shapes against one sharding rule."""

    def __init__(self, rule: ShardingRuleLike, dialect: str) -> None:
        self.rule = rule
        self.dialect = dialect
        names = [str(n).lower() for n in rule.tables] + [str(n).lower() for n in rule.broadcast_tables]
        self._routed_names = re.compile(
            r"(?<![\w$])(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")(?![\w$])",
            re.IGNORECASE) if names else None

    def mentions_routed_table(self, sql: str) -> bool:
        """Whether a text names a sharded or broadcast table (for statements sqlglot does not parse)."""
        return self._routed_names is not None and self._routed_names.search(sql) is not None

    # ------------------------------------------------------------------------------------------------ main

    def analyse(self, tree: exp.Expr, sql: str, positioned: exp.Expr | None, literal_spans: list[tuple[int, int]]) \
            -> Analysis:
        kind, statement = statement_kind(tree)
        refs = collect_tables(tree)
        rule = self.rule
        tables: list[str] = []
        for ref in refs:
            if ref.name not in tables:
                tables.append(ref.name)
        sharded = [r.index for r in refs if rule.table_rule(r.name) is not None]
        broadcast = {r.name for r in refs if r.index not in sharded and rule.is_broadcast(r.name)}
        singles = [n for n in tables if n not in broadcast and rule.table_rule(n) is None]
        a = Analysis(kind, statement, tuple(tables), refs, sharded, broadcast, singles, {})
        sharded_names = sorted({refs[i].name for i in sharded})

        if isinstance(tree, exp.Command) and self.mentions_routed_table(sql):
            named = sorted({m.lower() for m in self._routed_names.findall(sql)}) if self._routed_names else []
            a.write_error = unsupported(f"statement {tree.name.upper()}", named, "dbmesh cannot parse it, so it "
                                        "cannot route it across the data sources of a sharded table")
            return a
        if statement == "merge" and (sharded or broadcast):
            a.write_error = unsupported("MERGE", sharded_names or broadcast, "not supported on sharded tables")
            return a

        classes = self._conditions(tree, a)
        if len(sharded) > 0:
            self._multi_checks(tree, a, classes, sharded_names)
        if statement in ("insert", "update", "delete", "ddl") and refs:
            a.target = refs[0].name
            self._write_checks(tree, a, sharded_names)
        if statement == "insert" and sharded and refs[0].index in sharded:
            self._insert(tree, a)
        if statement == "update" and sharded and refs[0].index in sharded:
            self._sets(tree, a)
        a.index_ddl = index_identifier(tree) is not None
        if positioned is not None and sharded:
            a.spans = self._spans(positioned, a, sql, literal_spans)
        elif not sharded:
            a.spans = ()
        return a

    # ----------------------------------------------------------------------------------------- conditions

    def _conditions(self, tree: exp.Expr, a: Analysis) -> _Classes:
        refs, rule = a.refs, self.rule
        classes = _Classes()
        scopes: list[exp.Expr] = []
        for i in a.sharded:
            if refs[i].scope not in scopes:
                scopes.append(refs[i].scope)
        top_scope = tree
        # Equalities between columns of the top-level scope (WHERE and every ON; USING) pair bound tables.
        for cond in self._scope_predicates(top_scope, every_join=True):
            for c in _conjuncts(cond):
                if isinstance(c, exp.EQ) and isinstance(c.this, exp.Column) and isinstance(c.expression, exp.Column):
                    left = self._resolve(refs, top_scope, c.this)
                    right = self._resolve(refs, top_scope, c.expression)
                    if len(left) == 1 and len(right) == 1:
                        classes.union(left[0], right[0])
        for join in (tree.args.get("joins") or []) if isinstance(tree, exp.Select) else []:
            using = join.args.get("using")
            joined = next((r for r in refs if r.node is join.this), None)
            if not using or joined is None:
                continue
            for ident in using:
                col = ident.name.lower()
                for r in refs:
                    if r.scope is top_scope and r.index < joined.index:
                        classes.union((joined.index, col), (r.index, col))
        for scope in scopes:
            scope_refs = [r for r in refs if r.scope is scope]

            def resolve(column: exp.Column, scope: exp.Expr = scope) -> list[tuple[int, str]]:
                direct = self._resolve(refs, scope, column)
                out: list[tuple[int, str]] = []
                for member in direct:
                    for ref_index, col in (classes.members(member) if scope is top_scope else [member]):
                        table_rule = rule.table_rule(refs[ref_index].name)
                        if table_rule is not None and col in table_rule.sharding_columns:
                            out.append((ref_index, col))
                return out

            predicate: exp.Expr | None = None
            for cond in self._scope_predicates(scope, every_join=False):
                predicate = cond if predicate is None else exp.And(this=predicate, expression=cond)
            groups = dnf(predicate, resolve)
            for r in scope_refs:
                if r.index in a.sharded:
                    a.conditions[r.index] = for_ref(groups, r.index)
        return classes

    @staticmethod
    def _scope_predicates(scope: exp.Expr, every_join: bool) -> list[exp.Expr]:
        """WHERE and the ON conditions that filter like WHERE (inner joins; every join when pairing tables)."""
        out: list[exp.Expr] = []
        where = scope.args.get("where")
        if isinstance(where, exp.Where):
            out.append(where.this)
        joins = list(scope.args.get("joins") or [])
        from_ = scope.args.get("from_") or scope.args.get("from")
        if isinstance(from_, exp.From) and isinstance(from_.this, exp.Table):
            joins += list(from_.this.args.get("joins") or [])
        if isinstance(scope, (exp.Update, exp.Delete)) and isinstance(scope.this, exp.Table):
            joins += list(scope.this.args.get("joins") or [])  # UPDATE t a JOIN u b ON ...: the joins hang on t
        for join in joins:
            on = join.args.get("on")
            if on is not None and (every_join or not join.side):
                out.append(on)
        return out

    def _resolve(self, refs: list[TableRef], scope: exp.Expr, column: exp.Column) -> list[tuple[int, str]]:
        """(ref, column) pairs a column reference may denote in `scope` (none for outer/correlated references)."""
        if isinstance(column.this, exp.Star):
            return []
        name = column.name.lower()
        if column.table:
            ref = resolve_qualifier(refs, scope, column.table)
            return [(ref.index, name)] if ref is not None else []
        local = [r for r in refs if r.scope is scope]
        if len(local) == 1:
            return [(local[0].index, name)]
        out: list[tuple[int, str]] = []
        for r in local:
            table_rule = self.rule.table_rule(r.name)
            if table_rule is not None and name in table_rule.sharding_columns:
                out.append((r.index, name))
        return out

    # ------------------------------------------------------------------------------------ multi-node checks

    def _multi_checks(self, tree: exp.Expr, a: Analysis, classes: _Classes, names: list[str]) -> None:
        refs, rule = a.refs, self.rule
        nested = [refs[i] for i in a.sharded if refs[i].nested]
        if a.statement == "setop":
            a.multi_error = unsupported("UNION/INTERSECT/EXCEPT", names, "each part would be merged separately")
            return
        if nested:
            what = "INSERT ... SELECT" if a.statement == "insert" else "subquery over a sharded table"
            a.multi_error = unsupported(what, names, "only a statement whose every table routes to one data node "
                                        "can use it")
            return
        top = [refs[i] for i in a.sharded]
        if a.statement in ("update", "delete"):
            others = [r for r in refs if r.scope is tree and r.index != refs[0].index]
            if others or tree.args.get("tables") or tree.args.get("using"):
                a.multi_error = unsupported(f"multi-table {a.statement.upper()}", names,
                                            "it would join rows of one data node only")
                return
            if tree.args.get("limit") is not None or tree.args.get("order") is not None:
                a.multi_error = unsupported(f"{a.statement.upper()} with ORDER BY/LIMIT", names,
                                            "the limit would apply on every data node")
                return
        a.primary = top[0].index
        primary = top[0]
        primary_rule = rule.table_rule(primary.name)
        for other in top[1:]:
            if other.name != primary.name and not rule.are_bound(primary.name, other.name):
                a.multi_error = unsupported("join of sharded tables that are not bound", [primary.name, other.name],
                                            "declare them in one bindingTables group, or add conditions that route "
                                            "the statement to one data node")
                return
            other_rule = rule.table_rule(other.name)
            for getter in ("database_strategy", "table_strategy"):
                p_cols = _strategy_columns(getattr(primary_rule, getter))
                o_cols = _strategy_columns(getattr(other_rule, getter))
                if len(p_cols) != len(o_cols) or any(
                        classes.find((primary.index, p)) != classes.find((other.index, o))
                        for p, o in zip(p_cols, o_cols, strict=True)):
                    a.multi_error = unsupported(
                        "join of bound tables on other columns than their sharding columns",
                        [primary.name, other.name],
                        f"join them with {primary.name}.{', '.join(p_cols) or '?'} = "
                        f"{other.name}.{', '.join(o_cols) or '?'}")
                    return

    def _write_checks(self, tree: exp.Expr, a: Analysis, names: list[str]) -> None:
        target = a.target
        if target is None:
            return
        if target in a.broadcast and (a.sharded or a.singles):
            a.write_error = unsupported("write to a broadcast table reading other tables",
                                        [target, *names, *a.singles],
                                        "a broadcast table is written on every data source")
        if a.statement == "ddl" and isinstance(tree, exp.Create):
            kind = str(tree.args.get("kind") or "").upper()
            if kind not in ("TABLE", "INDEX") and a.sharded:
                a.write_error = unsupported(f"CREATE {kind}", names, "only tables and indexes are created per "
                                            "actual table")
        if a.statement == "ddl" and isinstance(tree, exp.Drop) and str(tree.args.get("kind") or "").upper() == "INDEX":
            if tree.args.get("cluster") is None and not a.refs:
                a.extra["drop_index_without_table"] = True
        if a.statement == "ddl" and len({r.name for r in a.refs if r.index in a.sharded}) > 1:
            names_ = sorted({a.refs[i].name for i in a.sharded})
            if isinstance(tree, exp.Drop) or isinstance(tree, exp.TruncateTable):
                a.write_error = unsupported(f"{tree.key.upper()} of several sharded tables", names_,
                                            "run one statement per table")

    # -------------------------------------------------------------------------------------------- INSERT

    def _insert(self, tree: exp.Expr, a: Analysis) -> None:
        target = a.refs[0].name
        table_rule = self.rule.table_rule(target)
        names = [target]
        rows = insert_rows(tree)
        if rows is None:
            query = isinstance(tree.expression, (exp.Query, exp.Subquery))
            a.write_error = unsupported("INSERT ... SELECT" if query else "INSERT without VALUES", names,
                                        "each row must route by its own sharding values")
            return
        columns = insert_columns(tree)
        if columns is None:
            a.write_error = unsupported("INSERT without a column list", names,
                                        "name the columns so the sharding column can be found")
            return
        sharding = sorted(table_rule.sharding_columns)
        key = table_rule.key_column.lower() if table_rule.key_column else None
        generate = key if key is not None and table_rule.key_generator is not None and key not in columns else None
        info_rows: list[tuple[tuple[str, Slot | None], ...]] = []
        for row in rows:
            if len(row.expressions) != len(columns):
                a.write_error = unsupported("INSERT row", names, "a row's value count differs from the column list")
                return
            info_rows.append(tuple((c, slot_of(row.expressions[columns.index(c)])) for c in sharding if c in columns))
        missing = tuple(c for c in sharding if c not in columns and c != generate)
        a.insert = InsertInfo(target, tuple(info_rows), missing, generate)
        conflict = tree.args.get("conflict")
        if isinstance(conflict, exp.OnConflict):
            for assignment in conflict.expressions or []:
                if not isinstance(assignment, exp.EQ) or not isinstance(assignment.this, exp.Column):
                    continue
                column = assignment.this.name.lower()
                if column not in table_rule.sharding_columns:
                    continue
                value = assignment.expression
                same = (isinstance(value, exp.Anonymous) and str(value.this).upper() == "VALUES"
                        and len(value.expressions) == 1 and value.expressions[0].name.lower() == column) or (
                    isinstance(value, exp.Column) and value.name.lower() == column
                    and value.table.lower() in ("", "excluded"))
                if not same:
                    construct = "ON DUPLICATE KEY UPDATE" if conflict.args.get("duplicate") else "ON CONFLICT DO UPDATE"
                    a.write_error = unsupported(f"{construct} of a sharding column", names,
                                                f"{column} would move the row to another data node")
                    return

    def _sets(self, tree: exp.Expr, a: Analysis) -> None:
        target = a.refs[0]
        table_rule = self.rule.table_rule(target.name)
        sets: list[SetInfo] = []
        for assignment in tree.expressions or []:
            if not isinstance(assignment, exp.EQ) or not isinstance(assignment.this, exp.Column):
                continue
            column = assignment.this
            if column.table and resolve_qualifier(a.refs, tree, column.table) not in (target, None):
                continue
            name = column.name.lower()
            if name not in table_rule.sharding_columns:
                continue
            value = assignment.expression
            same = isinstance(value, exp.Column) and value.name.lower() == name and (
                not value.table or resolve_qualifier(a.refs, tree, value.table) is target)
            sets.append(SetInfo(name, slot_of(value), same))
        a.sets = tuple(sets)

    # ---------------------------------------------------------------------------------------------- spans

    def _spans(self, positioned: exp.Expr, a: Analysis, sql: str, literal_spans: list[tuple[int, int]]) \
            -> tuple[Span, ...] | None:
        """Where the statement's text names its sharded tables, or None when renaming in place is not provably the
        same as renaming the tree (a name without a position, a schema-qualified table, ...)."""
        refs = collect_tables(positioned)
        if [(r.name, r.alias) for r in refs] != [(r.name, r.alias) for r in a.refs]:
            return None
        sharded_names = {a.refs[i].name for i in a.sharded}
        aliases = user_aliases(positioned)
        idents: list[tuple[exp.Identifier, str, str]] = []
        for ref in refs:
            if ref.name in sharded_names:
                if ref.node.args.get("db") or ref.node.args.get("catalog"):
                    return None
                idents.append((ref.node.this, "table", ref.name))
        for table in positioned.find_all(exp.Table):
            if table.arg_key == "tables" and isinstance(table.parent, exp.Delete) and \
                    table.name.lower() in sharded_names and table.name.lower() not in aliases:
                idents.append((table.this, "table", table.name.lower()))
        for column in positioned.find_all(exp.Column):
            q = column.args.get("table")
            if isinstance(q, exp.Identifier) and q.this.lower() in sharded_names and q.this.lower() not in aliases:
                if column.args.get("db"):
                    return None
                idents.append((q, "table", q.this.lower()))
        index = index_identifier(positioned)
        if index is not None:
            owner = [a.refs[i].name for i in a.sharded]
            if owner:
                idents.append((index, "index", owner[0]))
        spans: list[Span] = []
        starts = [s for s, _ in literal_spans]
        for ident, kind, logic in idents:
            meta = ident.meta
            if "start" not in meta or "end" not in meta:
                return None
            start, end = meta["start"], meta["end"] + 1
            written = sql[start:end]
            quote = ""
            if written != ident.this:
                if len(written) == len(ident.this) + 2 and written[0] in "`\"" and written[-1] == written[0] \
                        and written[1:-1] == ident.this:
                    quote = written[0]
                else:
                    return None
            k = sum(1 for s in starts if s < start)
            base = literal_spans[k - 1][1] if k else 0
            spans.append(Span(k, start - base, end - start, kind, logic, ident.this, quote))
        spans.sort(key=lambda s: (s.anchor, s.delta))
        for x, y in itertools.pairwise(spans):
            if x.anchor == y.anchor and x.delta + x.length > y.delta:
                return None
        return tuple(spans)


__all__ = ["Analysis", "Analyzer", "InsertInfo", "SetInfo", "Span", "scope_of", "statement_kind"]
