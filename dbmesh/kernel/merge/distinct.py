"""DISTINCT over a merged stream by collation-aware keys, holding the keys seen (bounded by the row cap)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from dbmesh.kernel.merge.base import limit_exceeded

T = TypeVar("T")


async def distinct(rows: AsyncIterator[T], key: Callable[[T], Any], max_rows: int) -> AsyncIterator[T]:
    """The first item of every key, in stream order (so an ordered stream stays ordered). Holding more than
    `max_rows` keys raises MERGE_LIMIT_EXCEEDED."""
    seen: set[Any] = set()
    async for item in rows:
        item_key = key(item)
        if item_key in seen:
            continue
        if len(seen) >= max_rows:
            raise limit_exceeded(max_rows, "DISTINCT")
        seen.add(item_key)
        yield item
