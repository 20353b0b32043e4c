"""The merger's interfaces: shard results, row codecs, merge errors, and lazy row streams over shard batches."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from dbmesh.errors import MERGE_LIMIT_EXCEEDED, STATEMENT_UNSUPPORTED, DbMeshError

Fields = list[bytes | None]


class ShardResult(Protocol):
    """One shard's rows, in batches.

    MySQL: each payload is a text-protocol row packet's payload (no 4-byte header). PostgreSQL: each payload is a
    DataRow body after the type byte and length, i.e. starting at the int16 column count."""

    async def fetch(self) -> list[bytes] | None:
        """The next batch of row payloads; None once the shard has no more rows."""
        ...


class RowCodec(Protocol):
    """Splits, joins, decodes and encodes the rows of one result's columns."""

    def split(self, payload: bytes) -> list[bytes | None]:
        """The encoded field values of a row payload (None = SQL NULL)."""
        ...

    def join(self, fields: Sequence[bytes | None]) -> bytes:
        """A row payload from encoded fields."""
        ...

    def decode(self, column: int, field: bytes | None) -> Any:
        """The Python value of a field, for comparing and aggregating (None for NULL)."""
        ...

    def sort_key(self, column: int, value: Any) -> Any:
        """A key ordering non-NULL values of `column` as the server's collation/type does (never None)."""
        ...

    def encode(self, column: int, value: Any) -> bytes | None:
        """A computed value (an aggregate result) in the column's type and wire format."""
        ...


class MergeError(DbMeshError):
    """Merging shard results failed or was refused; raised before any row is sent whenever it can be."""

    layer = "merge"


def unsupported(construct: str, detail: str) -> MergeError:
    """STATEMENT_UNSUPPORTED: a construct the merger refuses rather than answer wrongly."""
    return MergeError(STATEMENT_UNSUPPORTED, construct=construct, detail=detail)


def limit_exceeded(limit: int, construct: str) -> MergeError:
    """MERGE_LIMIT_EXCEEDED: a merge that holds rows went past the configured cap."""
    return MergeError(MERGE_LIMIT_EXCEEDED, limit=limit, construct=construct)


async def payloads(shard: ShardResult) -> AsyncIterator[bytes]:
    """A shard's row payloads one by one; the next batch is fetched only when the previous one is used up."""
    while True:
        batch = await shard.fetch()
        if batch is None:
            return
        for payload in batch:
            yield payload


async def split_rows(shard: ShardResult, codec: RowCodec) -> AsyncIterator[Fields]:
    """A shard's rows as field lists, lazily."""
    split = codec.split
    async for payload in payloads(shard):
        yield split(payload)
