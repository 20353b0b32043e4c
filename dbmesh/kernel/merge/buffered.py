"""`merge_buffered`: `merge` in one synchronous pass for the common small case, every shard's rows already at hand.

A scatter query with a LIMIT usually has its whole answer buffered by the time the headers are in. Walking the
chain of async generators then costs more than the merge itself, so an ungrouped, non-DISTINCT spec is merged here
in one loop. It gives the same rows, in the same order, as the same bytes objects as `merge`: shard heads read
first, a shard's next row read (and checked for going backwards) only once its current row is taken, reading
stopped at the limit; an error leaves in `out` the rows `merge` yields before raising it.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any, Protocol

from dbmesh.kernel.merge.base import Fields, RowCodec, unsupported
from dbmesh.kernel.merge.order import order_key
from dbmesh.kernel.plan import MergeSpec


def mergeable_buffered(spec: MergeSpec) -> bool:
    """Whether merge_buffered takes this spec (the caller also needs every shard's rows at hand)."""
    return not spec.grouped and not spec.distinct


class BufferedShard(Protocol):
    """A shard answer as its cursor holds it: complete or not, and the rows it has buffered."""

    done: bool
    rows: list[bytes]


def all_buffered(shards: Sequence[BufferedShard], max_rows: int) -> bool:
    """Every shard's answer is complete, with at most `max_rows` rows held in all: nothing to wait for and small
    enough to merge and send in one piece."""
    held = 0
    for shard in shards:
        if not shard.done:
            return False
        held += len(shard.rows)
    return held <= max_rows


def merge_buffered(spec: MergeSpec, shards: Sequence[Sequence[bytes]], codec: RowCodec, out: list[bytes]) -> None:
    """Append to `out` the row payloads `merge(spec, ...)` yields for shards whose complete row payloads are
    `shards` (in shard order). Only for specs `mergeable_buffered` accepts."""
    visible = spec.visible
    limit = spec.limit
    if limit is not None and limit <= 0:
        return
    end = -1 if limit is None else spec.offset + limit  # rows to take from the merged stream
    skip = spec.offset
    split = codec.split
    join = codec.join
    taken = 0
    if not spec.order_by:  # concatenate_payloads: shard order; the width checked on the first row
        width: int | None = None
        for rows in shards:
            for payload in rows:
                if width is None:
                    width = len(split(payload))
                row = payload if width == visible else join(split(payload)[:visible])
                taken += 1
                if taken > skip:
                    out.append(row)
                if taken == end:
                    return
        return
    key = order_key(codec, spec.order_by)
    streams = []
    heap: list[tuple[Any, int, Fields, bytes]] = []
    for index, rows in enumerate(shards):
        stream = iter(rows)
        streams.append(stream)
        first = next(stream, None)
        if first is not None:
            fields = split(first)
            heap.append((key(fields), index, fields, first))
    heapq.heapify(heap)
    while heap:
        current, index, fields, payload = heap[0]
        row = payload if len(fields) == visible else join(fields[:visible])
        taken += 1
        if taken > skip:
            out.append(row)
        if taken == end:
            return
        following = next(streams[index], None)
        if following is None:
            heapq.heappop(heap)
            continue
        following_fields = split(following)
        following_key = key(following_fields)
        if following_key < current:
            raise unsupported("ORDER BY across shards", f"shard {index} returned rows in an order the merger does "
                              "not reproduce (a collation or type it compares differently)")
        # (key, index) is unique among the heap's entries, so fields and payloads are never compared.
        heapq.heapreplace(heap, (following_key, index, following_fields, following))
