"""The select list across shards: derived columns the merger needs, and the MergeSpec facts that describe them.

Appended (hidden) columns, in this order of discovery: AVG's `SUM(x) AS AVG_DERIVED_SUM_n` and
`COUNT(x) AS AVG_DERIVED_COUNT_n`; distinct-aggregate arguments (`x AS AGGREGATION_DISTINCT_DERIVED_n`, also added
to the shard GROUP BY); GROUP BY keys missing from the select list (`GROUP_BY_DERIVED_n`); ORDER BY keys
(`ORDER_BY_DERIVED_n`); HAVING operands (`HAVING_DERIVED_n`). HAVING itself leaves the shard statement and is
evaluated by the merger on merged rows, its operands rewritten to `having_column_name(i)` columns.

With `*` in the select list the number of shard columns is unknown before execution, so derived columns are
addressed from the end of the row (negative, Python-style indexes) and `visible` is `-(number of derived
columns)`, so `row[:visible]` is what the client sees; without derived columns `visible` is STAR_VISIBLE (more
columns than any row has: `row[:visible]` is the whole row). DISTINCT, grouping and HAVING need every visible
column by position and are refused with `*` across shards.

>>> import sqlglot
>>> select = sqlglot.parse_one("SELECT user_id, AVG(price) FROM t GROUP BY user_id", read="mysql")
>>> p = plan_projections(select, "mysql", ["t"])
>>> p.tree.sql("mysql")
'SELECT user_id, AVG(price), SUM(price) AS AVG_DERIVED_SUM_0, COUNT(price) AS AVG_DERIVED_COUNT_0 FROM t GROUP BY user_id ORDER BY user_id'
>>> p.aggregates, p.group_by, p.shards_sorted_by_group
((Aggregate(function='AVG', column=1, sources=(2, 3)),), (0,), True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlglot import exp

from dbmesh.kernel.plan import Aggregate, AggregateFunction, SortKey, having_column_name
from dbmesh.kernel.route.errors import unsupported
from dbmesh.kernel.route.values import param_index

# Aggregates sqlglot leaves as anonymous functions in one dialect or another; none of them merge exactly.
UNSUPPORTED_AGGREGATE_NAMES: Final = frozenset({
    "group_concat", "string_agg", "array_agg", "json_arrayagg", "json_objectagg", "json_agg", "jsonb_agg",
    "json_object_agg", "jsonb_object_agg", "xmlagg", "std", "stddev", "stddev_pop", "stddev_samp", "variance",
    "var_pop", "var_samp", "bit_and", "bit_or", "bit_xor", "bool_and", "bool_or", "every", "percentile_cont",
    "percentile_disc", "mode", "any_value", "regr_count", "corr", "covar_pop", "covar_samp",
})
_MERGEABLE: Final = (exp.Count, exp.Sum, exp.Min, exp.Max, exp.Avg)
STAR_VISIBLE: Final = 2**31 - 1  # `visible` of a `SELECT *` without derived columns: every column


@dataclass(slots=True)
class Projections:
    tree: exp.Select
    visible: int
    order_by: tuple[SortKey, ...] = ()
    group_by: tuple[int, ...] = ()
    aggregates: tuple[Aggregate, ...] = ()
    grouped: bool = False
    shards_sorted_by_group: bool = False
    distinct: bool = False
    having: exp.Expression | None = None
    derived: int = 0  # how many columns were appended
    changed: bool = False  # the shard statement differs from the client's
    tables: list[str] = field(default_factory=list)


def is_aggregate(node: exp.Expr) -> bool:
    if isinstance(node, exp.AggFunc):
        return True
    return isinstance(node, exp.Anonymous) and str(node.this).lower() in UNSUPPORTED_AGGREGATE_NAMES


def _aggregates_in(node: exp.Expr) -> list[exp.Expr]:
    found = [n for n in node.walk() if is_aggregate(n)]
    # Aggregates of a subquery belong to it, not to this select list.
    return [n for n in found if not any(isinstance(p, (exp.Subquery, exp.Select)) for p in _ancestors(n, node))]


def _ancestors(node: exp.Expr, stop: exp.Expr) -> list[exp.Expr]:
    out: list[exp.Expr] = []
    if node is stop:
        return out
    parent = node.parent
    while parent is not None and parent is not stop:
        out.append(parent)
        parent = parent.parent
    return out


def _unalias(node: exp.Expr) -> exp.Expr:
    return node.this if isinstance(node, exp.Alias) else node


def _is_star(node: exp.Expr) -> bool:
    inner = _unalias(node)
    return isinstance(inner, exp.Star) or (isinstance(inner, exp.Column) and isinstance(inner.this, exp.Star))


def plan_projections(select: exp.Select, dialect: str, tables: Sequence[str], params: Sequence[Any] = ()) \
        -> Projections:
    """Rewrite a top-level SELECT for a multi-shard merge; raises SHARDING_UNSUPPORTED for what cannot merge.
    `params` are the statement's parameter values: HAVING is evaluated by the merger, so its parameters become
    values there."""
    select = select.copy()

    def refuse(construct: str, detail: str) -> Exception:
        return unsupported(construct, tables, detail)

    distinct = select.args.get("distinct")
    if distinct is not None and distinct.args.get("on") is not None:
        raise refuse("DISTINCT ON", "each shard keeps its own first row per key")
    if any(isinstance(n, exp.Window) for n in select.walk()
           if not any(isinstance(p, exp.Subquery) for p in _ancestors(n, select))):
        raise refuse("window function", "a window spans rows of every shard")
    group = select.args.get("group")
    if group is not None and any(group.args.get(k) for k in ("rollup", "cube", "grouping_sets", "totals")):
        raise refuse("GROUP BY WITH ROLLUP/CUBE/GROUPING SETS", "super-aggregate rows cannot be merged")

    items = list(select.expressions)
    n_items = len(items)
    star_at = next((i for i, e in enumerate(items) if _is_star(e)), None)
    derived: list[exp.Expr] = []
    derived_names: dict[int, str] = {}
    counters: dict[str, int] = {}
    aggregates: list[Aggregate] = []
    distinct_args: list[int] = []  # refs of distinct-aggregate arguments, in order
    distinct_exprs: list[exp.Expr] = []

    # A ref is an item index (>= 0) or ~k for derived column k; positions are fixed at the end.
    def position(ref: int) -> int:
        if ref >= 0:
            return ref
        k = ~ref
        return n_items + k if star_at is None else k - len(derived)

    def usable(i: int) -> bool:
        return star_at is None or i < star_at

    def derive(expr: exp.Expr, prefix: str) -> int:
        for k, existing in enumerate(derived):
            if existing == expr:
                return ~k
        n = counters.get(prefix, 0)
        counters[prefix] = n + 1
        derived.append(expr.copy())
        derived_names[len(derived) - 1] = f"{prefix}_{n}"
        return ~(len(derived) - 1)

    def find_item(expr: exp.Expr, by_name: bool) -> int | None:
        if by_name and isinstance(expr, exp.Column) and not expr.table and not isinstance(expr.this, exp.Star):
            name = expr.name.lower()
            for i, item in enumerate(items):
                if usable(i) and isinstance(item, exp.Alias) and item.alias.lower() == name:
                    return i
        for i, item in enumerate(items):
            if usable(i) and _unalias(item) == expr:
                return i
        if by_name and isinstance(expr, exp.Column) and not expr.table:
            name = expr.name.lower()
            for i, item in enumerate(items):
                inner = _unalias(item)
                if usable(i) and not isinstance(item, exp.Alias) and isinstance(inner, exp.Column) \
                        and inner.name.lower() == name:
                    return i
        return None

    def register(ref: int, agg: exp.Expr) -> None:
        if not isinstance(agg, _MERGEABLE):
            name = agg.sql(dialect).split("(", 1)[0].upper()
            raise refuse(f"aggregate {name}", "only COUNT, SUM, MIN, MAX and AVG merge exactly")
        if any(a.column == ref for a in aggregates):  # pragma: no cover - a ref is registered once
            return
        arg = agg.this
        fn: AggregateFunction = type(agg).__name__.upper()  # type: ignore[assignment]
        if isinstance(arg, exp.Distinct):
            if isinstance(agg, (exp.Min, exp.Max)):
                aggregates.append(Aggregate(fn, ref, (ref,)))
                return
            if len(arg.expressions) != 1:
                raise refuse(f"{fn}(DISTINCT with several arguments)", "distinct tuples cannot be merged")
            value = arg.expressions[0]
            source = find_item(value, False)
            if source is None:
                source = derive(value, "AGGREGATION_DISTINCT_DERIVED")
            if source not in distinct_args:
                distinct_args.append(source)
                distinct_exprs.append(value)
            aggregates.append(Aggregate(f"{fn}_DISTINCT", ref, (source,)))  # type: ignore[arg-type]
            return
        if isinstance(agg, exp.Avg):
            k = counters.get("AVG", 0)
            counters["AVG"] = k + 1
            derived.append(exp.Sum(this=arg.copy()))
            derived_names[len(derived) - 1] = f"AVG_DERIVED_SUM_{k}"
            derived.append(exp.Count(this=arg.copy()))
            derived_names[len(derived) - 1] = f"AVG_DERIVED_COUNT_{k}"
            aggregates.append(Aggregate("AVG", ref, (~(len(derived) - 2), ~(len(derived) - 1))))
            return
        aggregates.append(Aggregate(fn, ref, (ref,)))

    def aggregate_ref(expr: exp.Expr, prefix: str) -> int:
        """The ref of an expression that may be an aggregate (derived and registered when missing)."""
        found = _aggregates_in(expr)
        if found and found[0] is not expr:
            raise refuse("aggregate inside an expression", f"{expr.sql(dialect)} cannot be merged from shard results")
        ref = find_item(expr, True)
        if ref is not None:
            return ref
        ref = derive(expr, prefix)
        if found and not any(a.column == ref for a in aggregates):
            register(ref, expr)
        return ref

    # 1. Aggregates of the select list.
    for i, item in enumerate(items):
        inner = _unalias(item)
        found = _aggregates_in(inner)
        if not found:
            continue
        if found[0] is not inner or len(found) > 1:
            raise refuse("aggregate inside an expression", f"{item.sql(dialect)} cannot be merged from shard results")
        if not usable(i):
            raise refuse("aggregate after *", "its column position is unknown before execution")
        register(i, inner)

    # 2. GROUP BY keys.
    group_refs: list[int] = []
    group_exprs: list[exp.Expr] = list(group.expressions) if group is not None else []
    for key in group_exprs:
        if isinstance(key, exp.Literal) and not key.is_string and key.this.isdigit():
            i = int(key.this) - 1
            if not 0 <= i < n_items or not usable(i):
                raise refuse("GROUP BY ordinal", f"position {key.this} cannot be resolved")
            group_refs.append(i)
            continue
        ref = find_item(key, True)
        group_refs.append(ref if ref is not None else derive(key, "GROUP_BY_DERIVED"))

    grouped = bool(group_exprs) or bool(aggregates)
    if aggregates and not group_exprs:
        for i, item in enumerate(items):
            if any(a.column == i for a in aggregates):
                continue
            if any(isinstance(n, exp.Column) for n in _unalias(item).walk()):
                raise refuse("column beside aggregates without GROUP BY",
                             f"{item.sql(dialect)} takes an arbitrary row's value on each shard")

    # 3. ORDER BY keys.
    order = select.args.get("order")
    sort_keys: list[tuple[int, bool, bool]] = []
    for ordered in (order.expressions if order is not None else []):
        key = ordered.this
        if isinstance(key, exp.Literal) and not key.is_string and key.this.isdigit():
            i = int(key.this) - 1
            if not 0 <= i < n_items or not usable(i):
                raise refuse("ORDER BY ordinal", f"position {key.this} cannot be resolved")
            ref = i
        else:
            ref = aggregate_ref(key, "ORDER_BY_DERIVED")
        sort_keys.append((ref, bool(ordered.args.get("desc")), bool(ordered.args.get("nulls_first"))))

    # 4. HAVING: the merger evaluates it on merged rows.
    having_node = select.args.get("having")
    having: exp.Expression | None = None
    if having_node is not None:
        if star_at is not None:
            raise refuse("HAVING with *", "its operands' column positions are unknown before execution")

        def operand(node: exp.Expr) -> exp.Expr:
            if isinstance(node, (exp.Subquery, exp.Select)):
                raise refuse("subquery in HAVING", "it cannot be evaluated on merged rows")
            index = param_index(node)
            if index is not None:
                if index >= len(params):
                    raise refuse("HAVING parameter", f"parameter {index + 1} has no value")
                return exp.convert(params[index])
            if is_aggregate(node):
                return exp.column(having_column_name(position(aggregate_ref(node, "HAVING_DERIVED"))))
            if isinstance(node, exp.Column):
                ref = find_item(node, True)
                if ref is None:
                    ref = derive(node, "HAVING_DERIVED")
                return exp.column(having_column_name(position(ref)))
            return node

        rewritten = _transform_outside_aggregates(having_node.this.copy(), operand)
        assert isinstance(rewritten, exp.Expression)
        having = rewritten
        _check_having(having)
        select.set("having", None)

    # 5. Distinct-aggregate arguments join the shard GROUP BY (see plan.Aggregate).
    if distinct_exprs:
        keys = [k.copy() for k in group_exprs] + [e.copy() for e in distinct_exprs]
        select.set("group", exp.Group(expressions=keys))

    sorted_by_group = False
    shard_keys = group_exprs + distinct_exprs
    if grouped and shard_keys and order is None:
        select.set("order", exp.Order(expressions=[exp.Ordered(this=k.copy(), nulls_first=dialect == "mysql")
                                                     for k in shard_keys]))
        sorted_by_group = True
    elif grouped and group_refs and not distinct_exprs and [k[0] for k in sort_keys] == group_refs \
            and all(not desc and nulls_first == (dialect == "mysql") for _, desc, nulls_first in sort_keys):
        sorted_by_group = True  # ORDER BY is the group keys, ascending: the shards already sort that way

    for k, expr in enumerate(derived):
        select.append("expressions", exp.alias_(expr, derived_names[k]))

    if star_at is not None and (grouped or distinct is not None):
        raise refuse("SELECT * with DISTINCT or aggregates", "name the columns: their positions are unknown "
                     "before execution")
    visible = n_items if star_at is None else -len(derived) if derived else STAR_VISIBLE
    changed = bool(derived) or having is not None or sorted_by_group or bool(distinct_exprs)
    return Projections(
        tree=select,
        visible=visible,
        order_by=tuple(SortKey(position(r), d, nf) for r, d, nf in sort_keys),
        group_by=tuple(position(r) for r in group_refs),
        aggregates=tuple(Aggregate(a.function, position(a.column), tuple(position(s) for s in a.sources))
                         for a in aggregates),
        grouped=grouped,
        shards_sorted_by_group=sorted_by_group,
        distinct=distinct is not None,
        having=having,
        derived=len(derived),
        changed=changed,
        tables=list(tables),
    )


def _transform_outside_aggregates(node: exp.Expr, fn: Callable[[exp.Expr], exp.Expr]) -> exp.Expr:
    """Apply `fn` top-down; a node `fn` replaces is not descended into (aggregate arguments stay whole)."""
    replaced = fn(node)
    if replaced is not node:
        return replaced
    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expr):
            node.set(key, _transform_outside_aggregates(value, fn))
        elif isinstance(value, list):
            node.set(key, [_transform_outside_aggregates(v, fn) if isinstance(v, exp.Expr) else v for v in value])
    return node


def _check_having(having: exp.Expression) -> None:
    """The merger's own check of what it can evaluate, when the merger is installed."""
    try:
        from dbmesh.kernel.merge import check_having  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return
    check_having(having)
