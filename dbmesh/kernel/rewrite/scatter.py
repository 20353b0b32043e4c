"""A multi-node SELECT rewritten once per statement shape: the MergeSpec facts, where LIMIT/OFFSET values come
from, and the shard SQL generated once with marker tables and marker literals (see `template`). A further
statement of the shape then costs its LIMIT values, its literals' text and one string join per route unit.

Which shapes qualify, and why their rewrite does not depend on literal values: every literal slot the shard SQL
keeps sits in the WHERE clause or a join condition, under nothing but comparisons, IN lists, BETWEEN, LIKE,
arithmetic, AND/OR/NOT and parentheses, whose generated text embeds the literal's own text whatever its value;
the select list, GROUP BY, ORDER BY and HAVING (what `projections.plan_projections` reads, compares and copies)
hold no literal slot and no parameter in HAVING (which the merger evaluates); LIMIT and OFFSET slots are read per
statement (`pagination.page_values`) and the shard LIMIT's literal total is a hole of its own. Leaf literals are
plain `exp.Literal` nodes without comments (hex, national, raw strings and introducers take the tree path).
A shape is kept only after its filled text equals the tree path's units for the statement it was built from.

>>> from dbmesh.kernel.parse import ParseCache
>>> cache = ParseCache(8)
>>> sql = "SELECT a FROM t WHERE b = 'x' ORDER BY a LIMIT 5, 10"
>>> shape = build_scatter_shape(cache.get(sql, "mysql"), sql, ["t"], ["t"], "mysql", (), False)
>>> other = cache.get("SELECT a FROM t WHERE b = 'it''s' ORDER BY a LIMIT 2, 3", "mysql")
>>> units, merge = scatter_units(shape, other, (), [("ds_0", ["t_0"], ()), ("ds_1", ["t_1"], ())], "mysql")
>>> [u.sql for u in units], merge.offset, merge.limit
(["SELECT a FROM t_0 WHERE b = 'it''s' ORDER BY a LIMIT 0, 5", "SELECT a FROM t_1 WHERE b = 'it''s' ORDER BY a LIMIT 0, 5"], 2, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlglot import exp

from dbmesh.errors import DbMeshError
from dbmesh.kernel.parse import LiteralSlot, ParsedStatement
from dbmesh.kernel.plan import MergeSpec, RouteUnit
from dbmesh.kernel.rewrite.pagination import (
    PageShape,
    PageValues,
    PaginationError,
    page_shape,
    page_values,
    shard_limit,
    shard_params,
)
from dbmesh.kernel.rewrite.projections import plan_projections
from dbmesh.kernel.rewrite.tables import rename_tables
from dbmesh.kernel.rewrite.template import (
    MARKER_PREFIX,
    TOTAL_MARKER,
    SplitText,
    literal_marker,
    literal_sql,
    markers,
    split_markers,
    table_fills,
)
from dbmesh.kernel.rewrite.text import render_markers
from dbmesh.kernel.route.values import param_index

__all__ = ["ScatterShape", "build_scatter_shape", "markable", "scatter_merge", "scatter_units"]

# Parents under which a literal's generated text is its own, whatever its value (see the module docstring).
_CONTEXTS: Final = (
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ, exp.In, exp.Between,
    exp.Like, exp.ILike, exp.Neg, exp.Paren, exp.Tuple, exp.And, exp.Or, exp.Not, exp.Add, exp.Sub, exp.Mul,
)


@dataclass(frozen=True, slots=True)
class ScatterShape:
    """The rewrite of every statement of one multi-node SELECT shape."""

    logic: tuple[str, ...]  # logic tables renamed per unit, in marker order
    n_values: int  # parameter values the shape was built with (statements binding another count do not match)
    merge: dict[str, Any]  # MergeSpec fields but offset and limit
    page: PageShape | None
    page_slots: Mapping[str, LiteralSlot]  # the literal slots LIMIT/OFFSET read, by placeholder name
    keep_limit: bool
    text: SplitText | None  # None: units are the client's text with names spliced in (nothing to rewrite)
    param_order: tuple[int, ...]  # each unit's parameters: indexes into the values plus the shard LIMIT's own
    string_literals: frozenset[int]


def markable(parsed: ParsedStatement, text: str) -> bool:
    """Whether marker names cannot collide with anything the statement's generated SQL contains."""
    return parsed.cached and MARKER_PREFIX not in text and not any(
        MARKER_PREFIX in lit.content for lit in parsed.literals)


def _resolver(parsed: ParsedStatement, slots: Mapping[str, LiteralSlot]) -> Callable[[exp.Expr], exp.Expr]:
    """Reads a LIMIT/OFFSET node of the shape as the statement's own node (a literal slot becomes its literal)."""
    def resolve(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Placeholder) and isinstance(node.this, str) and node.this in slots:
            return parsed.literal_node(slots[node.this])
        return node
    return resolve


def _follow(tree: exp.Expr, path: Sequence[tuple[str, int | None]]) -> list[exp.Expr]:
    """The nodes along `path` from `tree` (tree excluded)."""
    out: list[exp.Expr] = []
    node = tree
    for key, index in path:
        value = node.args[key]
        node = value if index is None else value[index]
        out.append(node)
    return out


def scatter_merge(shape: ScatterShape, values: PageValues | None) -> MergeSpec:
    if values is None:
        return MergeSpec(**shape.merge)
    return MergeSpec(**shape.merge, offset=values.offset, limit=values.count)


def build_scatter_shape(parsed: ParsedStatement, text: str, names: Sequence[str], logic: Sequence[str],
                        dialect: str, values: tuple[Any, ...], spliceable: bool) -> ScatterShape | None:
    """The rewrite of the shape of `parsed` (whose text, parameters marked, is `text`), or None when the shape
    does not qualify. `names` are the sharded tables (for refusal messages), `logic` the tables each unit
    renames; `spliceable`: the planner can rename the client's text in place (analysis spans)."""
    template = parsed.tree.copy()
    if not isinstance(template, exp.Select) or not markable(parsed, text):
        return None
    try:
        page = page_shape(template)
    except PaginationError:
        return None
    limit_nodes = [n for n in (page.count, page.offset) if n is not None] if page is not None else []
    page_slots = {f"dbm_{s.index}": s for s in parsed.slots if any(
        isinstance(n, exp.Placeholder) and n.this == f"dbm_{s.index}" for n in limit_nodes)}
    strings: set[int] = set()
    for slot in parsed.slots:
        nodes = _follow(template, slot.path)
        leaf = nodes[-1]
        if any(leaf is n for n in limit_nodes):
            continue  # read per statement by page_values
        extra = dict(slot.extra)
        if slot.path[0][0] not in ("where", "joins") or slot.cls is not exp.Literal or slot.comments \
                or set(extra) - {"is_string"}:
            return None
        if slot.path[0][0] == "joins" and (len(slot.path) < 2 or slot.path[1][0] != "on"):
            return None
        # nodes[0] is the WHERE or JOIN node; everything from there down to the literal must be a context.
        if len(nodes) < 3 or not all(isinstance(n, _CONTEXTS) for n in nodes[1:-1]):
            return None
        is_string = bool(extra.get("is_string"))
        if is_string:
            strings.add(slot.index)
        leaf.replace(exp.Literal(this=literal_marker(slot.index), is_string=is_string))
    # Parameters are bound per statement only in WHERE / JOIN ... ON and LIMIT / OFFSET; anywhere else
    # (HAVING, the select list, ORDER BY ...) the projections would bake this statement's values into the shape.
    for node in template.walk():
        if param_index(node) is not None or isinstance(node, exp.Placeholder):
            top = node
            while top.parent is not None and top.parent is not template:
                top = top.parent
            if top.arg_key not in ("where", "joins", "limit", "offset"):
                return None
    try:
        projections = plan_projections(template, dialect, names, values)
    except DbMeshError:
        return None
    having = projections.having  # holds no slot or parameter (checked above): the same for every statement
    keep_limit = not projections.grouped and not (projections.distinct and projections.derived)
    merge = {
        "visible": projections.visible, "order_by": projections.order_by, "group_by": projections.group_by,
        "aggregates": projections.aggregates, "grouped": projections.grouped,
        "shards_sorted_by_group": projections.shards_sorted_by_group, "distinct": projections.distinct,
        "having": having,
    }
    shard = projections.tree
    extras: list[Any] = []
    if page is not None:
        try:
            first = page_values(page, values, _resolver(parsed, page_slots))
        except PaginationError:
            return None
        shard.set("offset", None)
        shard.set("limit", shard_limit(dialect, page, first, keep_limit, len(values),
                                       exp.Literal(this=TOTAL_MARKER, is_string=False)))
        extras = shard_params(dialect, page, first, keep_limit)
    elif not projections.changed and spliceable:
        return ScatterShape(tuple(logic), len(values), merge, None, {}, keep_limit, None, (), frozenset())
    sql = rename_tables(shard, markers(logic)).sql(dialect)
    rendered, order = render_markers(sql, dialect, list(range(len(values) + len(extras))))
    split = split_markers(rendered, dialect, len(logic), frozenset(strings), len(parsed.literals))
    if split is None:
        return None
    return ScatterShape(tuple(logic), len(values), merge, page, page_slots, keep_limit, split, tuple(order),
                        frozenset(strings))


def scatter_units(shape: ScatterShape, parsed: ParsedStatement, values: tuple[Any, ...],
                  targets: Sequence[tuple[str, Sequence[str], tuple[tuple[str, str], ...]]], dialect: str) \
        -> tuple[tuple[RouteUnit, ...], MergeSpec]:
    """One statement's units (`targets`: data source, actual table per `shape.logic`, the unit's table pairs)
    and MergeSpec. Raises PaginationError for a LIMIT/OFFSET value that is not a non-negative integer."""
    text = shape.text
    assert text is not None
    extras: list[Any] = []
    page = None
    if shape.page is not None:
        page = page_values(shape.page, values, _resolver(parsed, shape.page_slots))
        extras = shard_params(dialect, shape.page, page, shape.keep_limit)
    merge = scatter_merge(shape, page)
    all_values = values + tuple(extras) if extras else values
    unit_values = tuple(all_values[i] for i in shape.param_order)
    shared = [""] * len(parsed.literals)
    literals = parsed.literals
    strings = shape.string_literals
    for i in text.literals:
        shared[i] = literal_sql(literals[i].content, i in strings, dialect)
    if text.total_hole is not None:
        assert page is not None and page.count is not None
        shared.append(str(page.offset + page.count))
    units = tuple(RouteUnit(source, text.fill(table_fills(actual, dialect) + shared), unit_values, pairs)
                  for source, actual, pairs in targets)
    return units, merge
