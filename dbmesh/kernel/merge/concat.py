"""Concatenation: every shard's rows in shard order, untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

T = TypeVar("T")


async def concatenate(streams: Sequence[AsyncIterator[T]]) -> AsyncIterator[T]:
    """The items of each stream in turn; a stream is read only once the previous ones are exhausted."""
    for stream in streams:
        async for item in stream:
            yield item
