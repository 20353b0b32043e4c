"""ORDER BY keys over shard rows and the ordered k-way merge of sorted shard streams."""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from dbmesh.kernel.merge.base import Fields, RowCodec, unsupported
from dbmesh.kernel.plan import SortKey

T = TypeVar("T")

# A NULL's key element: before or after every (1, value) element, whatever the direction.
NULL_FIRST: tuple[int] = (0,)
NULL_LAST: tuple[int] = (2,)


class Descending:
    """Reverses the order of a key (for DESC keys inside a composite key)."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __lt__(self, other: Descending) -> bool:
        return bool(other.key < self.key)

    def __gt__(self, other: Descending) -> bool:
        return bool(other.key > self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Descending) and bool(self.key == other.key)

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Descending({self.key!r})"


def order_key(codec: RowCodec, order_by: Sequence[SortKey]) -> Callable[[Fields], tuple[Any, ...]]:
    """A function giving a row's composite ORDER BY key: NULLs placed by each key's nulls_first, values by the
    codec's collation-aware sort key, DESC keys reversed."""
    decode = codec.decode
    sort_key = codec.sort_key
    keys = [(k.column, k.descending, NULL_FIRST if k.nulls_first else NULL_LAST) for k in order_by]

    def key(fields: Fields) -> tuple[Any, ...]:
        out: list[Any] = []
        for column, descending, null in keys:
            value = decode(column, fields[column])
            if value is None:
                out.append(null)
            else:
                value_key = sort_key(column, value)
                out.append((1, Descending(value_key) if descending else value_key))
        return tuple(out)

    return key


async def merge_sorted(streams: Sequence[AsyncIterator[T]], key: Callable[[T], Any]) -> AsyncIterator[T]:
    """Merges streams that are each sorted by `key` into one sorted stream.

    Holds one item per stream (a heap over their keys); equal keys come out by stream index, then in each
    stream's own order, so the merge is deterministic and stable. A stream is read only when its current item
    has been emitted. A stream going backwards (a shard sorting differently from the merger's keys, e.g. under
    a collation the merger does not reproduce) raises STATEMENT_UNSUPPORTED instead of yielding a wrong order."""
    heap: list[tuple[Any, int, T]] = []
    for index, stream in enumerate(streams):
        item = await anext(stream, _END)
        if item is not _END:
            heap.append((key(item), index, item))
    heapq.heapify(heap)
    while heap:
        current, index, item = heap[0]
        yield item
        following = await anext(streams[index], _END)
        if following is _END:
            heapq.heappop(heap)
            continue
        following_key = key(following)
        if following_key < current:
            raise unsupported("ORDER BY across shards", f"shard {index} returned rows in an order the merger does "
                              "not reproduce (a collation or type it compares differently)")
        # (key, index) is unique among the heap's entries, so items themselves are never compared.
        heapq.heapreplace(heap, (following_key, index, following))


_END: Any = object()
