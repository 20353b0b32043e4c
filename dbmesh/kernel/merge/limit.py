"""OFFSET/LIMIT over a merged stream; stops reading the source once the limit is reached."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def offset_limit(rows: AsyncIterator[T], offset: int = 0, limit: int | None = None) -> AsyncIterator[T]:
    """Skips `offset` items, then yields at most `limit` (all when None). The source is closed as soon as the
    limit is reached, so no further shard batch is fetched."""
    try:
        if limit is not None and limit <= 0:
            return
        skipped = 0
        emitted = 0
        async for item in rows:
            if skipped < offset:
                skipped += 1
                continue
            yield item
            emitted += 1
            if limit is not None and emitted >= limit:
                return
    finally:
        await close(rows)


async def close(rows: AsyncIterator[T]) -> None:
    """Closes an async generator (and, through its finally blocks, the streams it reads); other iterators are
    left alone."""
    aclose = getattr(rows, "aclose", None)
    if aclose is not None:
        await aclose()
