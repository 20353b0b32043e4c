"""LIMIT/OFFSET across shards: each shard returns its first offset+count rows (`LIMIT 0, offset+count` in MySQL,
`LIMIT offset+count` in PostgreSQL), and the merger skips `offset` and keeps `count` of the merged stream.

Placeholders stay placeholders: their new values go to the unit's parameters (as markers numbered from
`param_base`, see text.render_markers).

>>> import sqlglot
>>> p = paginate(sqlglot.parse_one("SELECT a FROM t ORDER BY a LIMIT 5, 10", read="mysql"), "mysql", [], True, 0)
>>> p.tree.sql("mysql"), p.offset, p.limit
('SELECT a FROM t ORDER BY a LIMIT 0, 15', 5, 10)
"""

from __future__ import annotations

from collections.abc import Sequence
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


def _value(node: exp.Expr | None, params: Sequence[Any]) -> tuple[int | None, bool]:
    """(value, is_parameter) of a LIMIT/OFFSET expression."""
    if node is None:
        return None, False
    index = param_index(node)
    if index is not None:
        value = params[index] if index < len(params) else None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise PaginationError(f"parameter {index + 1} of LIMIT/OFFSET is {value!r}")
        return value, True
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
        return int(node.this), False
    raise PaginationError(f"LIMIT/OFFSET {node.sql()} is not an integer")


def paginate(tree: exp.Expr, dialect: str, params: Sequence[Any], keep_shard_limit: bool,
             param_base: int) -> Pagination:
    """The shard statement and the merger's offset and limit. `keep_shard_limit` is False when shards must return
    every row (groups or distinct rows span shards)."""
    limit_node, offset_node = tree.args.get("limit"), tree.args.get("offset")
    if limit_node is None and offset_node is None:
        return Pagination(tree)
    if isinstance(limit_node, exp.Fetch) or (limit_node is not None and not isinstance(limit_node, exp.Limit)):
        raise PaginationError("FETCH FIRST is not supported across shards")
    count, count_param = _value(limit_node.expression if limit_node is not None else None, params)
    if limit_node is not None and limit_node.args.get("offset") is not None:
        offset, offset_param = _value(limit_node.args["offset"], params)
    else:
        offset, offset_param = _value(offset_node.expression if offset_node is not None else None, params)
    offset = offset or 0
    tree = tree.copy()
    tree.set("offset", None)
    result = Pagination(tree, offset, count)
    if not keep_shard_limit or count is None:
        tree.set("limit", None)
        return result

    def node(value: int, as_param: bool) -> exp.Expr:
        if not as_param:
            return exp.Literal.number(value)
        result.extra_params.append(value)
        return exp.column(f"__dbmesh_p{param_base + len(result.extra_params) - 1}__")

    no_offset = offset_node is None and (limit_node is None or limit_node.args.get("offset") is None)
    if dialect == "postgres" or no_offset:
        tree.set("limit", exp.Limit(expression=node(offset + count, count_param or offset_param)))
    else:
        zero = node(0, offset_param)
        tree.set("limit", exp.Limit(expression=node(offset + count, count_param), offset=zero))
    return result
