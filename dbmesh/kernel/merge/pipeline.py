"""`merge`: the primitives assembled for one MergeSpec, from shard results to the client's row payloads.

    not grouped:  concatenate | ordered merge  ->  DISTINCT  ->  OFFSET/LIMIT
    grouped:      ordered merge by group keys -> stream group merge   (shards sorted by the group keys)
                  concatenate -> hash group merge                       (otherwise)
                  -> HAVING -> ORDER BY (held, unless the groups already come in that order) -> DISTINCT
                  -> OFFSET/LIMIT

Everything streams except hash grouping, DISTINCT and re-sorting groups, which hold at most `max_rows` rows.
Checks that can refuse the statement (HAVING constructs, aggregate types) run before any shard row is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

from dbmesh.kernel.merge.aggregate import Aggregator
from dbmesh.kernel.merge.base import Fields, RowCodec, ShardResult, limit_exceeded, payloads, split_rows
from dbmesh.kernel.merge.concat import concatenate
from dbmesh.kernel.merge.distinct import distinct
from dbmesh.kernel.merge.group import group_key, hash_group_merge, stream_group_merge
from dbmesh.kernel.merge.having import compile_having
from dbmesh.kernel.merge.limit import close, offset_limit
from dbmesh.kernel.merge.order import NULL_FIRST, NULL_LAST, merge_sorted, order_key
from dbmesh.kernel.plan import MergeSpec

Dialect = Literal["mysql", "postgres"]
# A shard row on the ungrouped paths: its original payload (re-sent untouched when possible) and its fields.
Row = tuple[bytes, Fields]


async def merge(spec: MergeSpec, shards: Sequence[ShardResult], codec: RowCodec, *, max_rows: int,
                dialect: Dialect) -> AsyncIterator[bytes]:
    """The merged result's row payloads, holding only the first `spec.visible` columns, in the statement's order.

    Raises MergeError (STATEMENT_UNSUPPORTED, MERGE_LIMIT_EXCEEDED) or InternalError; refusals that depend only
    on the spec and the column types come before the first row."""
    if spec.grouped:
        rows = _grouped(spec, shards, codec, max_rows=max_rows, dialect=dialect)
    else:
        rows = _ungrouped(spec, shards, codec, max_rows=max_rows)
    limited = offset_limit(rows, spec.offset, spec.limit)
    try:
        async for payload in limited:
            yield payload
    finally:
        await close(limited)


def _visible_key(codec: RowCodec, visible: int, nulls: tuple[int]) -> Callable[[Fields], tuple[Any, ...]]:
    """The DISTINCT key of a row: its visible columns, collation-aware, NULL equal to NULL."""
    decode = codec.decode
    sort_key = codec.sort_key

    def key(fields: Fields) -> tuple[Any, ...]:
        out: list[Any] = []
        for column in range(visible):
            value = decode(column, fields[column])
            out.append(nulls if value is None else (1, sort_key(column, value)))
        return tuple(out)

    return key


async def _ungrouped(spec: MergeSpec, shards: Sequence[ShardResult], codec: RowCodec, *,
                     max_rows: int) -> AsyncIterator[bytes]:
    visible = spec.visible
    if not spec.order_by and not spec.distinct:
        async for payload in concatenate_payloads(shards, codec, visible):
            yield payload
        return
    streams = [_rows(shard, codec) for shard in shards]
    stream: AsyncIterator[Row]
    if spec.order_by:
        key = order_key(codec, spec.order_by)
        stream = merge_sorted(streams, lambda row: key(row[1]))
    else:
        stream = concatenate(streams)
    if spec.distinct:
        visible_key = _visible_key(codec, visible, NULL_FIRST)
        stream = distinct(stream, lambda row: visible_key(row[1]), max_rows)
    join = codec.join
    async for payload, fields in stream:
        yield payload if len(fields) == visible else join(fields[:visible])


async def _rows(shard: ShardResult, codec: RowCodec) -> AsyncIterator[Row]:
    split = codec.split
    async for payload in payloads(shard):
        yield payload, split(payload)


async def concatenate_payloads(shards: Sequence[ShardResult], codec: RowCodec, visible: int) -> AsyncIterator[bytes]:
    """Every shard's rows in shard order. When the rows have exactly `visible` columns (checked on the first row:
    all rows of a result have the same columns) the payloads pass through as the very same bytes objects;
    otherwise the derived trailing columns are cut off."""
    width: int | None = None
    join = codec.join
    split = codec.split
    for shard in shards:
        async for payload in payloads(shard):
            if width is None:
                width = len(split(payload))
            if width == visible:
                yield payload
            else:
                yield join(split(payload)[:visible])


def _width(spec: MergeSpec, codec: RowCodec) -> int:
    """The shard rows' column count, for the row synthesized when no shard returned a row."""
    count = getattr(codec, "count", None)
    if isinstance(count, int):
        return count
    columns = [spec.visible - 1, *spec.group_by, *(k.column for k in spec.order_by)]
    for aggregate in spec.aggregates:
        columns += [aggregate.column, *aggregate.sources]
    return max(columns) + 1


async def _grouped(spec: MergeSpec, shards: Sequence[ShardResult], codec: RowCodec, *, max_rows: int,
                   dialect: Dialect) -> AsyncIterator[bytes]:
    aggregator = Aggregator(spec.aggregates, codec)
    having = compile_having(spec.having, codec, dialect) if spec.having is not None else None
    # Groups come out in ascending group-key order with NULLs where the dialect's ascending sort puts them
    # (MySQL first, PostgreSQL last): the order MariaDB gives GROUP BY without ORDER BY, and the order of a
    # shard query that sorts by the group keys.
    nulls_first = dialect == "mysql"
    key = group_key(codec, spec.group_by, nulls_first)
    streams = [split_rows(shard, codec) for shard in shards]
    groups: AsyncIterator[Fields]
    if spec.shards_sorted_by_group or not spec.group_by:
        ordered = merge_sorted(streams, key) if spec.group_by else concatenate(streams)
        groups = stream_group_merge(ordered, key, aggregator)
    else:
        groups = hash_group_merge(concatenate(streams), key, aggregator, max_rows)
    merged = _with_empty_row(groups, aggregator, _width(spec, codec)) if not spec.group_by else groups
    if having is not None:
        merged = _filter(merged, having)
    if spec.order_by and not _groups_already_ordered(spec, nulls_first):
        merged = _sorted(merged, order_key(codec, spec.order_by), max_rows)
    if spec.distinct:
        merged = distinct(merged, _visible_key(codec, spec.visible, NULL_LAST), max_rows)
    join = codec.join
    visible = spec.visible
    async for fields in merged:
        yield join(fields[:visible])


def _groups_already_ordered(spec: MergeSpec, nulls_first: bool) -> bool:
    """True when ORDER BY is a prefix of the group keys, ascending with the dialect's NULL placement: the
    order groups are emitted in."""
    if len(spec.order_by) > len(spec.group_by):
        return False
    return all(k.column == column and not k.descending and k.nulls_first == nulls_first
               for k, column in zip(spec.order_by, spec.group_by, strict=False))


async def _with_empty_row(groups: AsyncIterator[Fields], aggregator: Aggregator,
                          width: int) -> AsyncIterator[Fields]:
    """Aggregates without GROUP BY answer one row even over no rows (the shards, grouping by distinct
    arguments, may all return none)."""
    empty = True
    async for fields in groups:
        empty = False
        yield fields
    if empty:
        yield aggregator.empty_row(width)


async def _filter(rows: AsyncIterator[Fields], predicate: Callable[[Fields], bool]) -> AsyncIterator[Fields]:
    async for fields in rows:
        if predicate(fields):
            yield fields


async def _sorted(rows: AsyncIterator[Fields], key: Callable[[Fields], Any],
                  max_rows: int) -> AsyncIterator[Fields]:
    """Holds the merged groups and yields them sorted (stable: ties keep group-key order)."""
    held: list[Fields] = []
    async for fields in rows:
        if len(held) >= max_rows:
            raise limit_exceeded(max_rows, "ORDER BY over merged groups")
        held.append(fields)
    held.sort(key=key)
    for fields in held:
        yield fields

