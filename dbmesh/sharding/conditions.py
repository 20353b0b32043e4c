"""Sharding conditions: the values a statement gives a table's sharding columns, as the router hands them to rules.

A statement's WHERE clause becomes a disjunction of `ConditionGroup`s (one per OR branch after distribution);
each group maps a sharding column (lower-case) to the values it may take. A column absent from a group is
unconstrained. `Hint` carries values forced by SQL hints or SET variables.

>>> g = ConditionGroup({"order_id": Values((1, 2))})
>>> g.get("ORDER_ID")
Values(values=(1, 2))
>>> Range(lower=10, upper=None).contains(11)
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class Values:
    """The column equals one of these values (`=` or `IN`); values are Python values (int, Decimal, str, datetime,
    date, None for SQL NULL)."""

    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Range:
    """The column lies in a range (`BETWEEN`, `<`, `<=`, `>`, `>=`); None bounds are unbounded."""

    lower: Any = None
    upper: Any = None
    lower_inclusive: bool = True
    upper_inclusive: bool = True

    def contains(self, value: Any) -> bool:
        if self.lower is not None and (value < self.lower or (value == self.lower and not self.lower_inclusive)):
            return False
        if self.upper is not None and (value > self.upper or (value == self.upper and not self.upper_inclusive)):
            return False
        return True


Condition = Values | Range


@dataclass(frozen=True, slots=True)
class ConditionGroup:
    """An AND of column conditions for one table (column names lower-case). Empty: no constraint."""

    columns: Mapping[str, Condition] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, column: str) -> Condition | None:
        return self.columns.get(column.lower())


@dataclass(frozen=True, slots=True)
class Hint:
    """Values forced by a hint (`/* SHARDINGSPHERE_HINT: ... */` or SET variables) for one statement.

    `data_source` forces every table of the statement to that data source (ShardingSphere's
    `dataSourceName` hint). `database_values`/`table_values` feed `hint` strategies (HINT_INLINE), keyed by
    logic table name (lower-case); a key of "" applies to every table."""

    data_source: str | None = None
    database_values: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: MappingProxyType({}))
    table_values: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: MappingProxyType({}))
    skip_sql_rewrite: bool = False
