"""The value routing and rewriting produce for one statement: where it runs, what SQL each data source gets, and
how the shard results merge back into one answer.

A `Plan` is plain data. The executor runs its `units` (in parallel, within a per-statement connection budget)
and, when `merge` is set, hands the shard results to the merger; when `merge` is None and there is one unit,
the data source's response goes to the client as it is (only column metadata naming actual tables is renamed).

Column indexes in `MergeSpec` are positions in the *shard* result rows. The first `visible` columns are what
the client sees, in the client's order; derived columns the rewriter appended (ORDER BY / GROUP BY keys missing
from the select list, AVG's SUM and COUNT, DISTINCT aggregate arguments) follow and are never sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sqlglot import exp

# The name of a column reference in a rewritten HAVING expression: `exp.column(having_column_name(i))` stands for
# column i of the merged row.
HAVING_COLUMN_PREFIX = "__dbmesh_col_"


def having_column_name(index: int) -> str:
    """The identifier the planner puts in a HAVING expression for merged-row column `index`."""
    return f"{HAVING_COLUMN_PREFIX}{index}"


@dataclass(frozen=True, slots=True)
class RouteUnit:
    """One statement for one data source."""

    data_source: str
    sql: str
    # Parameter values for placeholders in `sql` (extended protocol / prepared statements), in order.
    params: tuple[Any, ...] = ()
    # (actual table, logic table) pairs this unit's SQL touches: result metadata naming an actual table is renamed.
    tables: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ORDER BY key over a shard-row column. `nulls_first` is already resolved for the dialect (MySQL: NULLs
    first ascending and last descending; PostgreSQL: NULLs last ascending and first descending, unless the
    statement says NULLS FIRST/LAST)."""

    column: int
    descending: bool = False
    nulls_first: bool = False


AggregateFunction = Literal["COUNT", "SUM", "MIN", "MAX", "AVG", "COUNT_DISTINCT", "SUM_DISTINCT", "AVG_DISTINCT"]


@dataclass(frozen=True, slots=True)
class Aggregate:
    """An aggregate in the select list and how to combine it across shard rows.

    `column` is where it sits in the shard row (and the output row); the shard computed it over its own rows,
    so its column metadata is the right one for the output. `sources` are the shard columns merged:
    COUNT/SUM/MIN/MAX: (column,) — the shard's partial result; AVG: (sum column, count column) — derived
    columns; *_DISTINCT: (argument column,) — the raw argument, which the shard query also GROUPs BY, so the
    merger sees each distinct (group, argument) pair and builds the distinct set per group itself. Every
    non-distinct aggregate is then a partial per (group, argument) pair and still combines by SUM/MIN/MAX."""

    function: AggregateFunction
    column: int
    sources: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MergeSpec:
    """How shard results become the client's result."""

    visible: int  # how many leading shard columns the client sees
    order_by: tuple[SortKey, ...] = ()  # the output order (ORDER BY), empty when the statement has none
    group_by: tuple[int, ...] = ()  # shard columns of the GROUP BY keys (without distinct-aggregate arguments)
    aggregates: tuple[Aggregate, ...] = ()
    grouped: bool = False  # the statement aggregates (GROUP BY, or aggregate functions without GROUP BY)
    # The shard SQL orders each shard's rows by the group keys (then distinct arguments), so groups can be merged
    # as a stream; otherwise the merger hashes groups (bounded by the row cap).
    shards_sorted_by_group: bool = False
    distinct: bool = False  # SELECT DISTINCT over the visible columns
    having: exp.Expression | None = None  # evaluated on merged rows; column refs per having_column_name()
    offset: int = 0
    limit: int | None = None


StatementKind = Literal["query", "dml", "ddl", "other"]


@dataclass(frozen=True, slots=True)
class Plan:
    """A routed, rewritten statement."""

    kind: StatementKind
    units: tuple[RouteUnit, ...]
    merge: MergeSpec | None = None
    # Keys dbmesh generated for an INSERT (in row order): the first is the statement's last insert id.
    generated_keys: tuple[Any, ...] = ()
    # Logic tables the statement touches (for metrics, PREVIEW and error messages).
    tables: tuple[str, ...] = field(default=())
