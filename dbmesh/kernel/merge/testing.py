"""Fake shard results for testing merge primitives without servers (used by the unit tests and the executor's)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from dbmesh.kernel.merge.base import RowCodec

Cell = str | bytes | None


class FakeShard:
    """A shard result serving fixed batches; counts fetch() calls so tests can check what was read."""

    def __init__(self, batches: Sequence[Sequence[bytes]]) -> None:
        self.batches = [list(batch) for batch in batches]
        self.fetches = 0
        self.exhausted = False

    async def fetch(self) -> list[bytes] | None:
        self.fetches += 1
        if self.fetches > len(self.batches):
            self.exhausted = True
            return None
        return self.batches[self.fetches - 1]


def _cell(value: Cell) -> bytes | None:
    if value is None:
        return None
    return value.encode() if isinstance(value, str) else value


def row(codec: RowCodec, text: str | Sequence[Cell]) -> bytes:
    """A row payload from "a|1|NULL" (text cells, NULL for NULL) or a sequence of encoded cells."""
    if isinstance(text, str):
        cells: list[Cell] = [None if cell == "NULL" else cell for cell in text.split("|")]
    else:
        cells = list(text)
    return codec.join([_cell(cell) for cell in cells])


def make_result(codec: RowCodec, *rows: str | Sequence[Cell], batch: int = 2) -> FakeShard:
    """A shard result whose rows come in batches of `batch`."""
    payloads = [row(codec, r) for r in rows]
    return FakeShard([payloads[i:i + batch] for i in range(0, len(payloads), batch)])


async def collect(rows: AsyncIterator[bytes]) -> list[bytes]:
    """Every payload of a merged stream."""
    return [payload async for payload in rows]
