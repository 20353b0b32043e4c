"""Combining the shards' partial aggregates of one group into the group's merged row.

COUNT adds partial counts; SUM adds partial sums exactly (NULL when every partial is NULL); MIN/MAX keep the
winning partial's original bytes; AVG divides the merged SUM and COUNT sources as the server would (the codec
encodes the quotient in the AVG column's type); the *_DISTINCT functions build the set of distinct non-NULL
argument values (equal by sort key, so collation-equal strings are one value) from the argument column.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from dbmesh.kernel.merge.base import Fields, RowCodec, unsupported
from dbmesh.kernel.merge.numeric import EXACT, Quotient
from dbmesh.kernel.plan import Aggregate

_NUMBER = (int, Decimal, float)
_NUMERIC_FUNCTIONS = frozenset({"SUM", "AVG", "SUM_DISTINCT", "AVG_DISTINCT"})


def add(left: Any, right: Any) -> Any:
    """left + right for partial sums: None is the empty sum; DECIMAL/numeric adds exactly; NaN absorbs,
    +Infinity + -Infinity is NaN (PostgreSQL numeric)."""
    if left is None:
        return right
    if right is None:
        return left
    if isinstance(left, Decimal) or isinstance(right, Decimal):
        if isinstance(left, float) or isinstance(right, float):
            return float(left) + float(right)
        left = EXACT.create_decimal(left)
        right = EXACT.create_decimal(right)
        if left.is_nan() or right.is_nan():
            return Decimal("NaN")
        if left.is_infinite() and right.is_infinite() and left != right:
            return Decimal("NaN")
        return EXACT.add(left, right)
    return left + right


def _type_name(codec: RowCodec, column: int) -> str:
    name = getattr(codec, "type_name", None)
    return name(column) if name is not None else f"column {column}"


class _State:
    __slots__ = ("counts", "distinct", "fields", "sums", "winners")

    def __init__(self, fields: Fields, size: int) -> None:
        self.fields = fields  # the group's first row: group keys and columns no aggregate computes
        self.counts = [0] * size
        self.sums: list[Any] = [None] * size
        self.winners: list[tuple[Any, bytes] | None] = [None] * size
        self.distinct: list[dict[Any, Any]] = [{} for _ in range(size)]


class Aggregator:
    """Folds shard rows of one group into per-aggregate state and produces the merged row."""

    def __init__(self, aggregates: Sequence[Aggregate], codec: RowCodec) -> None:
        self.aggregates = tuple(aggregates)
        self.codec = codec
        for aggregate in self.aggregates:
            self._check(aggregate)

    def _check(self, aggregate: Aggregate) -> None:
        """Refuses, before any row is read, aggregates over types whose results the merger cannot compute."""
        check = getattr(self.codec, "aggregatable", None)
        if check is None:
            return
        function = aggregate.function
        if function in _NUMERIC_FUNCTIONS:
            columns = [aggregate.column, *aggregate.sources] if function in ("SUM", "AVG") else [aggregate.column]
            for column in columns:
                if check(column) is None:
                    raise unsupported(f"{function} over {_type_name(self.codec, column)}",
                                      "the merger combines only numeric aggregate results")
        elif function in ("MIN", "MAX") and _type_name(self.codec, aggregate.column).startswith("type "):
            raise unsupported(f"{function} over {_type_name(self.codec, aggregate.column)}",
                              "values of this type have no known order")

    def start(self, fields: Fields) -> _State:
        state = _State(fields, len(self.aggregates))
        self.add(state, fields)
        return state

    def add(self, state: _State, fields: Fields) -> None:
        decode = self.codec.decode
        for i, aggregate in enumerate(self.aggregates):
            function = aggregate.function
            if function == "COUNT":
                partial = decode(aggregate.column, fields[aggregate.column])
                state.counts[i] += partial or 0
            elif function == "SUM":
                state.sums[i] = add(state.sums[i], self._number(aggregate, aggregate.column, fields))
            elif function == "AVG":
                sum_column, count_column = aggregate.sources
                state.sums[i] = add(state.sums[i], self._number(aggregate, sum_column, fields))
                state.counts[i] += decode(count_column, fields[count_column]) or 0
            elif function in ("MIN", "MAX"):
                field = fields[aggregate.column]
                value = decode(aggregate.column, field)
                if value is None:
                    continue
                assert field is not None
                key = self.codec.sort_key(aggregate.column, value)
                winner = state.winners[i]
                if winner is None or (key < winner[0] if function == "MIN" else winner[0] < key):
                    state.winners[i] = (key, field)
            else:  # *_DISTINCT: one partial per distinct (group, argument) pair
                (argument,) = aggregate.sources
                value = decode(argument, fields[argument])
                if value is None:
                    continue
                if function != "COUNT_DISTINCT":
                    self._require_number(aggregate, argument, value)
                state.distinct[i].setdefault(self.codec.sort_key(argument, value), value)

    def _number(self, aggregate: Aggregate, column: int, fields: Fields) -> Any:
        value = self.codec.decode(column, fields[column])
        if value is not None:
            self._require_number(aggregate, column, value)
        return value

    def _require_number(self, aggregate: Aggregate, column: int, value: Any) -> None:
        if not isinstance(value, _NUMBER) or isinstance(value, bool):
            raise unsupported(f"{aggregate.function} over {_type_name(self.codec, column)}",
                              "the merger combines only numeric aggregate results")

    def finish(self, state: _State) -> Fields:
        fields = list(state.fields)
        encode = self.codec.encode
        for i, aggregate in enumerate(self.aggregates):
            function = aggregate.function
            column = aggregate.column
            if function == "COUNT":
                fields[column] = encode(column, state.counts[i])
            elif function == "SUM":
                fields[column] = encode(column, state.sums[i])
            elif function == "AVG":
                total, count = state.sums[i], state.counts[i]
                sum_column, count_column = aggregate.sources
                fields[sum_column] = encode(sum_column, total)
                fields[count_column] = encode(count_column, count)
                fields[column] = None if count == 0 or total is None else encode(column, Quotient(total, count))
            elif function in ("MIN", "MAX"):
                winner = state.winners[i]
                fields[column] = None if winner is None else winner[1]
            else:
                values = state.distinct[i]
                if function == "COUNT_DISTINCT":
                    fields[column] = encode(column, len(values))
                    continue
                if not values:
                    fields[column] = None
                    continue
                # Add in ascending order: float sums then do not depend on which shard answered first.
                total = None
                for key in sorted(values):
                    total = add(total, values[key])
                value = total if function == "SUM_DISTINCT" else Quotient(total, len(values))
                fields[column] = encode(column, value)
        return fields

    def empty_row(self, width: int) -> Fields:
        """The one row an aggregate without GROUP BY returns over no rows: COUNTs 0, everything else NULL."""
        fields: Fields = [None] * width
        for aggregate in self.aggregates:
            if aggregate.function in ("COUNT", "COUNT_DISTINCT"):
                fields[aggregate.column] = self.codec.encode(aggregate.column, 0)
            elif aggregate.function == "AVG":
                _, count_column = aggregate.sources
                fields[count_column] = self.codec.encode(count_column, 0)
        return fields
