"""GROUP BY across shards: stream merge of shard rows already sorted by the group keys, or hash merge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from dbmesh.kernel.merge.aggregate import Aggregator
from dbmesh.kernel.merge.base import Fields, RowCodec, limit_exceeded, unsupported
from dbmesh.kernel.merge.order import NULL_FIRST, NULL_LAST

GroupKey = Callable[[Fields], tuple[Any, ...]]


def group_key(codec: RowCodec, columns: Sequence[int], nulls_first: bool) -> GroupKey:
    """A function giving a row's group key: collation-aware, NULLs one group placed first or last (the order
    of the dialect's ascending sort, which is also the order groups are emitted in)."""
    decode = codec.decode
    sort_key = codec.sort_key
    null = NULL_FIRST if nulls_first else NULL_LAST

    def key(fields: Fields) -> tuple[Any, ...]:
        out: list[Any] = []
        for column in columns:
            value = decode(column, fields[column])
            out.append(null if value is None else (1, sort_key(column, value)))
        return tuple(out)

    return key


async def stream_group_merge(rows: AsyncIterator[Fields], key: GroupKey,
                             aggregator: Aggregator) -> AsyncIterator[Fields]:
    """Merged rows of groups from rows sorted ascending by `key` (the k-way merge of shards sorted by the group
    keys): one group is held at a time, and each is emitted as soon as a row of the next group arrives.

    A key smaller than the previous group's means the shards were not sorted as the plan promised (or sort
    differently from the merger's collation): that raises STATEMENT_UNSUPPORTED rather than splitting a group
    in two."""
    current: tuple[Any, ...] | None = None
    state = None
    async for fields in rows:
        row_key = key(fields)
        if state is not None and row_key == current:
            aggregator.add(state, fields)
            continue
        if state is not None:
            assert current is not None
            if row_key < current:
                raise unsupported("GROUP BY across shards", "shard rows arrived out of group-key order (a "
                                  "collation or type the merger compares differently)")
            yield aggregator.finish(state)
        current = row_key
        state = aggregator.start(fields)
    if state is not None:
        yield aggregator.finish(state)


async def hash_group_merge(rows: AsyncIterator[Fields], key: GroupKey, aggregator: Aggregator,
                           max_rows: int) -> AsyncIterator[Fields]:
    """Merged rows of groups from rows in any order, emitted in ascending key order once every row is read.
    Holding more than `max_rows` groups raises MERGE_LIMIT_EXCEEDED."""
    groups: dict[tuple[Any, ...], Any] = {}
    async for fields in rows:
        row_key = key(fields)
        state = groups.get(row_key)
        if state is None:
            if len(groups) >= max_rows:
                raise limit_exceeded(max_rows, "GROUP BY")
            groups[row_key] = aggregator.start(fields)
        else:
            aggregator.add(state, fields)
    for row_key in sorted(groups):
        yield aggregator.finish(groups[row_key])
