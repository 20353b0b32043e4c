"""INLINE, COMPLEX_INLINE and HINT_INLINE: the target name is an `algorithm-expression` evaluated per value.

>>> algo = InlineShardingAlgorithm({"algorithm-expression": "t_order_${order_id % 2}"})
>>> algo.do_sharding(["t_order_0", "t_order_1"], 7, column="order_id")
't_order_1'
>>> ComplexInlineShardingAlgorithm({"algorithm-expression": "t_${a % 2}_${b % 2}"}).do_sharding(
...     [], {"a": [1, 2], "b": [3]})
['t_1_1', 't_0_1']
>>> HintInlineShardingAlgorithm({}).do_sharding(["ds_0", "ds_1"], ["ds_1"])
['ds_1']
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from dbmesh.sharding import values as jv
from dbmesh.sharding.base import DataNodeInfo, ShardingAlgorithm, StandardShardingAlgorithm, reject_null
from dbmesh.sharding.errors import InlineExpressionError, RangeRefusedError, ShardingError
from dbmesh.sharding.inline import AlgorithmExpression, compile_algorithm_expression

_ALLOW_RANGE = "allow-range-query-with-inline-sharding"


def _compile(algorithm: ShardingAlgorithm, default: str | None = None) -> AlgorithmExpression:
    text = algorithm.props.get("algorithm-expression") or default
    if text is None or not text.strip():
        raise algorithm.props.error("algorithm-expression", f"{algorithm.TYPE} requires this property")
    try:
        return compile_algorithm_expression(text.strip())
    except InlineExpressionError as exc:
        raise algorithm.props.error("algorithm-expression", exc.message) from exc


def _range_refused(algorithm: str) -> ShardingError:
    return RangeRefusedError(f"a range condition on an {algorithm} sharding column",
                             f"set {_ALLOW_RANGE}: true to route ranges to every target", algorithm=algorithm)


class InlineShardingAlgorithm(StandardShardingAlgorithm):
    """INLINE. The result is returned unfiltered (e.g. `t_-1` for `-7 % 2`); the standard strategy keeps it only
    if it is an available target."""

    TYPE = "INLINE"
    PROPS = ("algorithm-expression", _ALLOW_RANGE)

    def __init__(self, props: Mapping[str, Any], *, file: str = "<config>", path: str = "props") -> None:
        super().__init__(props, file=file, path=path)
        self.expression = _compile(self)
        self.allow_range = self.props.boolean(_ALLOW_RANGE, False)

    def do_sharding(self, available_targets: Sequence[str], value: object, *, column: str = "",
                    node_info: DataNodeInfo | None = None) -> str | None:
        reject_null(self.TYPE, value)
        if not column or column not in self.expression.text:
            raise ShardingError("INLINE sharding", f"algorithm-expression {self.expression.text!r} does not "
                                f"mention sharding column {column!r} (ShardingSphere error 52)")
        return self.expression({column: value})

    def do_sharding_range(self, available_targets: Sequence[str], lower: object | None, upper: object | None,
                          lower_inclusive: bool = True, upper_inclusive: bool = True, *, column: str = "",
                          node_info: DataNodeInfo | None = None) -> list[str]:
        if not self.allow_range:
            raise _range_refused(self.TYPE)
        return list(available_targets)

    def check_prefix(self, column: str, node_prefix: str) -> None:
        """ShardingSphere's startup check: the expression evaluated with Integer 1 must start with the nodes'
        prefix (their names without trailing digits)."""
        try:
            name = self.expression({column: jv.integer(1)})
        except ShardingError as exc:
            raise self.props.error("algorithm-expression", f"evaluating with {column}=1 failed: {exc.message}") from exc
        if not name.startswith(node_prefix):
            raise self.props.error("algorithm-expression", f"gives {name!r} for {column}=1, which does not start "
                                   f"with the data nodes' prefix {node_prefix!r}")


class ComplexInlineShardingAlgorithm(ShardingAlgorithm):
    """COMPLEX_INLINE: evaluated once per combination of the columns' values (first column outermost)."""

    TYPE = "COMPLEX_INLINE"
    PROPS = ("algorithm-expression", "sharding-columns", _ALLOW_RANGE)

    def __init__(self, props: Mapping[str, Any], *, file: str = "<config>", path: str = "props") -> None:
        super().__init__(props, file=file, path=path)
        self.expression = _compile(self)
        self.allow_range = self.props.boolean(_ALLOW_RANGE, False)
        columns = self.props.get("sharding-columns")
        # Only the number of columns matters to ShardingSphere.
        self.sharding_columns = tuple(c.strip() for c in columns.split(",")) if columns and columns.strip() else ()

    def do_sharding(self, available_targets: Sequence[str], values: Mapping[str, Sequence[object]],
                    ranges: Mapping[str, tuple[object | None, object | None]] | None = None) -> list[str]:
        """Names for the columns' precise values; any range gives every target (or is refused). The names are
        not filtered: an unknown data source is an error for the caller, an unknown table goes to the database."""
        if ranges:
            if not self.allow_range:
                raise _range_refused(self.TYPE)
            return list(available_targets)
        present = {column: list(vals) for column, vals in values.items() if vals}
        if self.sharding_columns and len(present) != len(self.sharding_columns):
            raise ShardingError("COMPLEX_INLINE sharding", f"sharding-columns lists {len(self.sharding_columns)} "
                                f"columns but the statement gives values for {len(present)} (ShardingSphere error 53)")
        for vals in present.values():
            for v in vals:
                reject_null(self.TYPE, v)
        columns = list(present)
        results: dict[str, None] = {}
        for combination in itertools.product(*(present[c] for c in columns)):
            results[self.expression(dict(zip(columns, combination, strict=True)))] = None
        return list(results)


class HintInlineShardingAlgorithm(ShardingAlgorithm):
    """HINT_INLINE: `algorithm-expression` (default `${value}`) evaluated per hint value, unfiltered; no values
    means every target."""

    TYPE = "HINT_INLINE"
    PROPS = ("algorithm-expression",)

    def __init__(self, props: Mapping[str, Any], *, file: str = "<config>", path: str = "props") -> None:
        super().__init__(props, file=file, path=path)
        self.expression = _compile(self, "${value}")

    def do_sharding(self, available_targets: Sequence[str], values: Sequence[object]) -> list[str]:
        if not values:
            return list(available_targets)
        results: dict[str, None] = {}
        for v in values:
            reject_null(self.TYPE, v)
            results[self.expression({"value": v})] = None
        return list(results)
