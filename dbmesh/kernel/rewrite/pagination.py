"""LIMIT/OFFSET across shards: each shard returns its first offset+count rows (`LIMIT 0, offset+count` in MySQL,
`LIMIT offset+count` in PostgreSQL), and the merger skips `offset` and keeps `count` of the merged stream.

Placeholders stay placeholders: their new values go to the unit's parameters (as markers numbered from
`param_base`, see text.render_markers).

The work is split so a statement shape can be rewritten once: `page_shape` (where the values sit), `page_values`
(one statement's values), `shard_limit` (the shard LIMIT, with a stand-in node for the offset+count literal when
the shape's text is generated once) and `shard_params` (the parameter values that LIMIT adds). `paginate` is the
whole pass on one tree.

>>> import sqlglot
>>> p = paginate(sqlglot.parse_one("SELECT a FROM t ORDER BY a LIMIT 5, 10", read="mysql"), "mysql", [], True, 0)
>>> p.tree.sql("mysql"), p.offset, p.limit
('SELECT a FROM t ORDER BY a LIMIT 0, 15', 5, 10)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from dbmesh.kernel.route.values import param_index


class PaginationError(ValueError):
    """A LIMIT or OFFSET that is not a non-negative integer literal or parameter."""


@dataclass(slots=True)
class Pagination:
    tree: exp.Expr
    offset: int = 0
    limit: int | None = None
    extra_params: list[Any] = field(default_factory=list)  # values of markers param_base, param_base+1, ...


@dataclass(frozen=True, slots=True)
class PageShape:
    """Where a SELECT's LIMIT count and OFFSET are written (nodes of the statement's tree), or None for absent."""

    count: exp.Expr | None
    offset: exp.Expr | None


@dataclass(frozen=True, slots=True)
class PageValues:
    """One statement's LIMIT/OFFSET: the values, and whether each was a parameter."""

    offset: int
    count: int | None
    offset_param: bool
    count_param: bool


def page_shape(tree: exp.Expr) -> PageShape | None:
    """The LIMIT/OFFSET nodes of a SELECT, None without either; FETCH FIRST raises PaginationError."""
    limit_node, offset_node = tree.args.get("limit"), tree.args.get("offset")
    if limit_node is None and offset_node is None:
        return None
    if isinstance(limit_node, exp.Fetch) or (limit_node is not None and not isinstance(limit_node, exp.Limit)):
        raise PaginationError("FETCH FIRST is not supported across shards")
    count = limit_node.expression if limit_node is not None else None
    if limit_node is not None and limit_node.args.get("offset") is not None:
        offset = limit_node.args["offset"]
    else:
        offset = offset_node.expression if offset_node is not None else None
    return PageShape(count, offset)


def _value(node: exp.Expr | None, params: Sequence[Any]) -> tuple[int | None, bool]:
    """(value, is_parameter) of a LIMIT/OFFSET expression."""
    if node is None:
        return None, False
    index = param_index(node)
    if index is not None:
        value = params[index] if index < len(params) else None
        # str.isdigit() also accepts digits int() refuses ('²'): only ASCII digits are a number here, as for the server.
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise PaginationError(f"parameter {index + 1} of LIMIT/OFFSET is {value!r}")
        return value, True
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isascii() and node.this.isdigit():
        return int(node.this), False
    raise PaginationError(f"LIMIT/OFFSET {node.sql()} is not an integer")


def page_values(shape: PageShape, params: Sequence[Any],
                resolve: Callable[[exp.Expr], exp.Expr] | None = None) -> PageValues:
    """The statement's LIMIT/OFFSET values. `resolve` maps a node of `shape` to the statement's own node (a shape
    read from a template tree holds literal slots, not literals)."""
    count_node, offset_node = shape.count, shape.offset
    if resolve is not None:
        count_node = resolve(count_node) if count_node is not None else None
        offset_node = resolve(offset_node) if offset_node is not None else None
    count, count_param = _value(count_node, params)
    offset, offset_param = _value(offset_node, params)
    return PageValues(offset or 0, count, offset_param, count_param)


def _limit_form(dialect: str, shape: PageShape, values: PageValues) -> tuple[bool, bool, bool]:
    """(pair, zero_param, total_param) of the shard LIMIT: `pair` is MySQL's `LIMIT 0, total` (the statement had
    an offset; the zero stays a parameter when the offset was one), else `LIMIT total`. The total (offset+count)
    is a parameter when a value it sums was one."""
    pair = dialect != "postgres" and shape.offset is not None
    if pair:
        return True, values.offset_param, values.count_param
    return False, False, values.count_param or values.offset_param


def shard_limit(dialect: str, shape: PageShape, values: PageValues, keep_shard_limit: bool, param_base: int,
                total: exp.Expr | None = None) -> exp.Limit | None:
    """The shard statement's LIMIT (None: every row). Parameters are markers numbered from `param_base` (their
    values: `shard_params`); a literal total is `total` when given (a stand-in filled per statement), else the
    number offset+count."""
    if not keep_shard_limit or values.count is None:
        return None
    pair, zero_param, total_param = _limit_form(dialect, shape, values)
    base = param_base

    def node(value: int, as_param: bool, stand_in: exp.Expr | None) -> exp.Expr:
        nonlocal base
        if as_param:
            base += 1
            return exp.column(f"__dbmesh_p{base - 1}__")
        return stand_in if stand_in is not None else exp.Literal.number(value)

    if not pair:
        return exp.Limit(expression=node(values.offset + values.count, total_param, total))
    zero = node(0, zero_param, None)
    return exp.Limit(expression=node(values.offset + values.count, total_param, total), offset=zero)


def shard_params(dialect: str, shape: PageShape, values: PageValues, keep_shard_limit: bool) -> list[Any]:
    """The values of the parameter markers `shard_limit` writes, in marker order."""
    if not keep_shard_limit or values.count is None:
        return []
    pair, zero_param, total_param = _limit_form(dialect, shape, values)
    out: list[Any] = [0] if pair and zero_param else []
    if total_param:
        out.append(values.offset + values.count)
    return out


def paginate(tree: exp.Expr, dialect: str, params: Sequence[Any], keep_shard_limit: bool,
             param_base: int) -> Pagination:
    """The shard statement and the merger's offset and limit. `keep_shard_limit` is False when shards must return
    every row (groups or distinct rows span shards)."""
    shape = page_shape(tree)
    if shape is None:
        return Pagination(tree)
    values = page_values(shape, params)
    tree = tree.copy()
    tree.set("offset", None)
    tree.set("limit", shard_limit(dialect, shape, values, keep_shard_limit, param_base))
    return Pagination(tree, values.offset, values.count, shard_params(dialect, shape, values, keep_shard_limit))
