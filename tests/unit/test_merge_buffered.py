"""merge_buffered against merge(): the same payloads (the very same bytes objects when passed through), the same
order and the same error, on random shard answers, specs and both protocols' codecs."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from dbmesh.errors import STATEMENT_UNSUPPORTED
from dbmesh.kernel.merge import MergeError, merge, mysql_text_codec, pg_codec
from dbmesh.kernel.merge import codec_pg as pg
from dbmesh.kernel.merge.buffered import merge_buffered, mergeable_buffered
from dbmesh.kernel.merge.testing import FakeShard, row
from dbmesh.kernel.plan import MergeSpec, SortKey
from dbmesh.protocol.mysql.constants import ColumnType as T
from dbmesh.protocol.mysql.packets import ColumnDefinition41
from dbmesh.protocol.postgresql.messages import FieldDescription

CODECS = {
    "mysql": mysql_text_codec([ColumnDefinition41("k", T.LONGLONG, 63), ColumnDefinition41("s", T.VAR_STRING, 45),
                               ColumnDefinition41("n", T.LONGLONG, 63)]),
    "postgres": pg_codec([FieldDescription("k", type_oid=pg.INT4), FieldDescription("s", type_oid=pg.TEXT),
                          FieldDescription("n", type_oid=pg.INT8)]),
}


def _reference(spec: MergeSpec, shards: list[list[bytes]], codec: Any, dialect: str) -> tuple[list[bytes], Any]:
    async def run() -> tuple[list[bytes], Any]:
        out: list[bytes] = []
        try:
            async for payload in merge(spec, [FakeShard([rows]) for rows in shards], codec, max_rows=10_000,
                                       dialect=dialect):  # type: ignore[arg-type]
                out.append(payload)
        except MergeError as exc:
            return out, exc.entry.code
        return out, None

    return asyncio.run(run())


def _buffered(spec: MergeSpec, shards: list[list[bytes]], codec: Any) -> tuple[list[bytes], Any]:
    out: list[bytes] = []
    try:
        merge_buffered(spec, shards, codec, out)
    except MergeError as exc:
        return out, exc.entry.code
    return out, None


def _shard(rng: random.Random, codec: Any, n: int, sort: list[SortKey] | None) -> list[bytes]:
    rows = [[rng.choice([None, str(rng.randrange(-5, 6))]), rng.choice(["a", "B", "b", "é", None, "ab"]),
             str(rng.randrange(100))] for _ in range(n)]
    if sort is not None and rng.random() < 0.9:  # mostly sorted as the merger expects; sometimes not
        key = _sort_key(sort)
        rows.sort(key=key)
    return [row(codec, [None if c is None else c for c in r]) for r in rows]


def _sort_key(sort: list[SortKey]) -> Any:
    def key(r: list[Any]) -> tuple[Any, ...]:
        out: list[Any] = []
        for k in sort:
            v = r[k.column]
            if v is None:
                out.append((0,) if k.nulls_first else (2,))
            else:
                value = int(v) if k.column != 1 else v
                out.append((1, -value if k.descending and isinstance(value, int) else value))
        return tuple(out)
    return key


@pytest.mark.parametrize("dialect", ["mysql", "postgres"])
@pytest.mark.parametrize("seed", range(60))
def test_same_rows_as_merge(dialect: str, seed: int) -> None:
    rng = random.Random(seed)
    codec = CODECS[dialect]
    ordered = rng.random() < 0.7
    sort = [SortKey(0, rng.random() < 0.5, rng.random() < 0.5)] if ordered else []
    if ordered and rng.random() < 0.5:
        sort.append(SortKey(2, rng.random() < 0.5, False))
    spec = MergeSpec(visible=rng.choice([1, 2, 3]), order_by=tuple(sort), offset=rng.choice([0, 0, 1, 3]),
                     limit=rng.choice([None, 0, 1, 5, 20]))
    assert mergeable_buffered(spec)
    shards = [_shard(rng, codec, rng.randrange(0, 8), sort if ordered else None) for _ in range(rng.randrange(1, 5))]
    want = _reference(spec, shards, codec, dialect)
    got = _buffered(spec, shards, codec)
    assert got[1] == want[1]
    assert got[0] == want[0]
    # Rows that need no trimming pass through as the very same objects.
    assert all(a is b for a, b in zip(got[0], want[0], strict=True) if spec.visible == 3)


def test_a_shard_going_backwards_is_refused() -> None:
    codec = CODECS["mysql"]
    spec = MergeSpec(visible=3, order_by=(SortKey(0),))
    shards = [[row(codec, "1|a|1"), row(codec, "0|a|2")], [row(codec, "5|b|3")]]
    out, code = _buffered(spec, shards, codec)
    assert code == STATEMENT_UNSUPPORTED.code and out == [shards[0][0]]


def test_grouped_and_distinct_specs_are_not_taken() -> None:
    assert not mergeable_buffered(MergeSpec(visible=1, grouped=True))
    assert not mergeable_buffered(MergeSpec(visible=1, distinct=True))
