"""Merge primitives on fake shard results: concatenation, ordered merge, group merges, DISTINCT, OFFSET/LIMIT."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from dbmesh.errors import MERGE_LIMIT_EXCEEDED, STATEMENT_UNSUPPORTED
from dbmesh.kernel.merge import (
    Aggregator,
    MergeError,
    concatenate,
    distinct,
    group_key,
    hash_group_merge,
    merge,
    merge_sorted,
    mysql_text_codec,
    offset_limit,
    pg_codec,
    stream_group_merge,
)
from dbmesh.kernel.merge import codec_pg as pg
from dbmesh.kernel.merge.testing import FakeShard, collect, make_result
from dbmesh.kernel.plan import Aggregate, MergeSpec, SortKey
from dbmesh.protocol.mysql.constants import ColumnType as T
from dbmesh.protocol.mysql.packets import ColumnDefinition41
from dbmesh.protocol.postgresql.messages import FieldDescription

MY = mysql_text_codec([ColumnDefinition41("k", T.LONGLONG, 63), ColumnDefinition41("s", T.VAR_STRING, 45),
                       ColumnDefinition41("n", T.LONGLONG, 63)])
PG = pg_codec([FieldDescription("k", type_oid=pg.INT4), FieldDescription("s", type_oid=pg.TEXT),
               FieldDescription("n", type_oid=pg.INT8)])


def texts(codec: object, payloads: Sequence[bytes]) -> list[str]:
    out = []
    for payload in payloads:
        cells = codec.split(payload)  # type: ignore[attr-defined]
        out.append("|".join("NULL" if c is None else c.decode() for c in cells))
    return out


async def run(spec: MergeSpec, shards: Sequence[FakeShard], codec: object = MY, dialect: str = "mysql",
              max_rows: int = 1000) -> list[str]:
    return texts(codec, await collect(merge(spec, shards, codec, max_rows=max_rows,  # type: ignore[arg-type]
                                            dialect=dialect)))  # type: ignore[arg-type]


# --- concatenation ---------------------------------------------------------------------------------------------

async def test_pass_through_returns_the_very_same_bytes_objects() -> None:
    shards = [make_result(MY, "1|a|1", "2|b|2", "3|c|3"), make_result(MY), make_result(MY, "4|d|4")]
    sent = [p for shard in shards for batch in shard.batches for p in batch]
    out = await collect(merge(MergeSpec(visible=3), shards, MY, max_rows=10, dialect="mysql"))
    assert len(out) == len(sent) and all(a is b for a, b in zip(out, sent, strict=True))


async def test_concatenation_cuts_derived_columns() -> None:
    shards = [make_result(MY, "1|a|9", "2|NULL|9"), make_result(MY, "3|c|9")]
    assert await run(MergeSpec(visible=2), shards) == ["1|a", "2|NULL", "3|c"]


async def test_concatenate_primitive_keeps_shard_order_and_reads_lazily() -> None:
    async def items(tag: str, n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            yield f"{tag}{i}"

    assert [x async for x in concatenate([items("a", 2), items("b", 0), items("c", 1)])] == ["a0", "a1", "c0"]
    shards = [make_result(MY, *[f"{i}|x|0" for i in range(6)], batch=2), make_result(MY, "9|y|0")]
    limited = merge(MergeSpec(visible=3, limit=3), shards, MY, max_rows=10, dialect="mysql")
    assert len(await collect(limited)) == 3
    assert shards[0].fetches == 2 and shards[1].fetches == 0  # the limit stopped the reads


# --- ordered merge ---------------------------------------------------------------------------------------------

async def test_ordered_merge_ties_by_shard_then_arrival() -> None:
    shards = [make_result(MY, "1|a0|0", "1|a1|0", "2|a2|0"), make_result(MY, "1|b0|0", "3|b1|0"),
              make_result(MY, "0|c0|0", "1|c1|0")]
    spec = MergeSpec(visible=2, order_by=(SortKey(0),))
    assert await run(spec, shards) == ["0|c0", "1|a0", "1|a1", "1|b0", "1|c1", "2|a2", "3|b1"]


async def test_merge_sorted_primitive_is_stable() -> None:
    async def items(*values: tuple[int, str]):  # type: ignore[no-untyped-def]
        for v in values:
            yield v

    merged = merge_sorted([items((1, "a"), (2, "b")), items((1, "c"), (1, "d"))], key=lambda v: v[0])
    assert [v async for v in merged] == [(1, "a"), (1, "c"), (1, "d"), (2, "b")]


@pytest.mark.parametrize(("dialect", "descending", "nulls_first", "expected"), [
    ("mysql", False, True, ["NULL", "NULL", "1", "2", "3"]),   # MySQL: NULLs first ascending
    ("mysql", True, False, ["3", "2", "1", "NULL", "NULL"]),   # ... and last descending
    ("postgres", False, False, ["1", "2", "3", "NULL", "NULL"]),  # PostgreSQL: NULLs last ascending
    ("postgres", True, True, ["NULL", "NULL", "3", "2", "1"]),  # ... and first descending
    ("postgres", False, True, ["NULL", "NULL", "1", "2", "3"]),  # NULLS FIRST
    ("postgres", True, False, ["3", "2", "1", "NULL", "NULL"]),  # DESC NULLS LAST
])
async def test_null_ordering(dialect: str, descending: bool, nulls_first: bool, expected: list[str]) -> None:
    codec = MY if dialect == "mysql" else PG

    def shard(*keys: str) -> FakeShard:
        return make_result(codec, *[f"{k}|x|0" for k in keys])

    # Each shard is sorted the way its own server sorts it.
    order = list(dict.fromkeys(expected))
    first = [k for k in order if k in ("NULL", "1", "3")]
    second = [k for k in order if k in ("NULL", "2")]
    spec = MergeSpec(visible=1, order_by=(SortKey(0, descending, nulls_first),))
    assert await run(spec, [shard(*first), shard(*second)], codec, dialect) == expected


async def test_order_by_case_insensitive_collation_and_descending_strings() -> None:
    shards = [make_result(MY, "0|apple|0", "0|Banana|0", "0|cherry|0"), make_result(MY, "0|Apricot|0", "0|banana|0")]
    spec = MergeSpec(visible=2, order_by=(SortKey(1),))
    assert [r.split("|")[1] for r in await run(spec, shards)] == ["apple", "Apricot", "Banana", "banana", "cherry"]
    shards = [make_result(MY, "0|cherry|0", "0|Banana|0", "0|apple|0"), make_result(MY, "0|banana|0", "0|Apricot|0")]
    spec = MergeSpec(visible=2, order_by=(SortKey(1, descending=True),))
    assert [r.split("|")[1] for r in await run(spec, shards)] == ["cherry", "Banana", "banana", "Apricot", "apple"]


async def test_order_by_derived_column_then_cut() -> None:
    # ORDER BY n, which the client did not select: the shards append it, the merger orders by it and drops it.
    shards = [make_result(MY, "1|a|5", "2|b|7"), make_result(MY, "3|c|6")]
    spec = MergeSpec(visible=2, order_by=(SortKey(2),))
    assert await run(spec, shards) == ["1|a", "3|c", "2|b"]


@pytest.mark.parametrize("spec", [
    MergeSpec(visible=3), MergeSpec(visible=3, order_by=(SortKey(0),)), MergeSpec(visible=3, distinct=True),
    MergeSpec(visible=3, grouped=True, group_by=(0,), aggregates=(Aggregate("COUNT", 2, (2,)),)),
])
async def test_all_shards_empty(spec: MergeSpec) -> None:
    assert await run(spec, [make_result(MY), make_result(MY), FakeShard([[], []])]) == []
    assert await run(spec, []) == []


async def test_empty_shards_among_full_ones() -> None:
    shards = [make_result(MY), make_result(MY, "2|b|0"), make_result(MY), make_result(MY, "1|a|0")]
    assert await run(MergeSpec(visible=2, order_by=(SortKey(0),)), shards) == ["1|a", "2|b"]


# --- OFFSET / LIMIT --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("offset", "limit", "expected"), [
    (0, None, ["1", "2", "3", "4"]), (0, 2, ["1", "2"]), (1, 2, ["2", "3"]), (3, 10, ["4"]), (0, 100, ["1", "2", "3", "4"]),
    (4, 1, []), (10, None, []), (0, 0, []),
])
async def test_offset_limit(offset: int, limit: int | None, expected: list[str]) -> None:
    shards = [make_result(MY, "1|a|0", "3|c|0"), make_result(MY, "2|b|0", "4|d|0")]
    spec = MergeSpec(visible=1, order_by=(SortKey(0),), offset=offset, limit=limit)
    assert await run(spec, shards) == expected


async def test_limit_stops_pulling_ordered_shards() -> None:
    shards = [make_result(MY, *[f"{i}|x|0" for i in range(0, 100, 2)], batch=5),
              make_result(MY, *[f"{i}|x|0" for i in range(1, 100, 2)], batch=5)]
    out = await run(MergeSpec(visible=1, order_by=(SortKey(0),), limit=3), shards)
    assert out == ["0", "1", "2"]
    assert shards[0].fetches == 1 and shards[1].fetches == 1


async def test_offset_limit_primitive_closes_source() -> None:
    closed = []

    async def source():  # type: ignore[no-untyped-def]
        try:
            for i in range(10):
                yield i
        finally:
            closed.append(True)

    assert [x async for x in offset_limit(source(), 2, 3)] == [2, 3, 4]
    assert closed == [True]


# --- DISTINCT --------------------------------------------------------------------------------------------------

async def test_distinct_collation_and_nulls() -> None:
    shards = [make_result(MY, "1|a|0", "1|NULL|0", "2|b|0"), make_result(MY, "1|A|0", "1|NULL|0", "2|b |0")]
    assert await run(MergeSpec(visible=2, distinct=True), shards) == ["1|a", "1|NULL", "2|b"]


async def test_distinct_ordered_keeps_order() -> None:
    shards = [make_result(MY, "1|a|0", "3|c|0"), make_result(MY, "1|a|0", "2|b|0", "3|c|0")]
    spec = MergeSpec(visible=2, distinct=True, order_by=(SortKey(0),))
    assert await run(spec, shards) == ["1|a", "2|b", "3|c"]


async def test_distinct_cap() -> None:
    shards = [make_result(MY, "1|a|0", "2|b|0"), make_result(MY, "1|a|0", "3|c|0")]
    assert len(await run(MergeSpec(visible=2, distinct=True), shards, max_rows=3)) == 3
    shards = [make_result(MY, "1|a|0", "2|b|0"), make_result(MY, "1|a|0", "3|c|0")]
    with pytest.raises(MergeError) as info:
        await run(MergeSpec(visible=2, distinct=True), shards, max_rows=2)
    assert info.value.entry is MERGE_LIMIT_EXCEEDED


async def test_distinct_primitive() -> None:
    async def items():  # type: ignore[no-untyped-def]
        for v in ["x", "X", "y", "x"]:
            yield v

    assert [v async for v in distinct(items(), str.lower, 5)] == ["x", "y"]


# --- GROUP BY: stream and hash ---------------------------------------------------------------------------------

def reference_groups(rows: list[tuple[int | None, str, int]]) -> dict[tuple[int | None, str], tuple[int, int]]:
    """count and sum per (k, lower(s)): what one database computes for GROUP BY k, s under a ci collation."""
    out: dict[tuple[int | None, str], tuple[int, int]] = {}
    for k, s, n in rows:
        count, total = out.get((k, s.lower()), (0, 0))
        out[(k, s.lower())] = (count + 1, total + n)
    return out


@pytest.mark.parametrize("seed", range(5))
async def test_stream_and_hash_group_merge_agree_with_reference(seed: int) -> None:
    rng = random.Random(seed)
    codec = mysql_text_codec([ColumnDefinition41("k", T.LONGLONG, 63), ColumnDefinition41("s", T.VAR_STRING, 45),
                              ColumnDefinition41("c", T.LONGLONG, 63), ColumnDefinition41("t", T.NEWDECIMAL, 63)])
    rows = [(rng.choice([None, 1, 2, 3]), rng.choice(["a", "A", "b", "B", "c"]), rng.randint(-5, 5))
            for _ in range(60)]
    shard_rows: list[list[tuple[int | None, str, int]]] = [[], [], []]
    for r in rows:
        rng.choice(shard_rows).append(r)

    def shard_result(part: list[tuple[int | None, str, int]]) -> FakeShard:
        # What a shard answers to SELECT k, s, COUNT(*), SUM(n) ... GROUP BY k, s ORDER BY k, s (MySQL: NULL first;
        # the string the server shows for a case-insensitive group is one of its members).
        groups: dict[tuple[int | None, str], list[tuple[int | None, str, int]]] = {}
        for r in part:
            groups.setdefault((r[0], r[1].lower()), []).append(r)
        ordered = sorted(groups.items(), key=lambda g: (g[0][0] is not None, g[0][0] or 0, g[0][1]))
        lines = [f"{'NULL' if k is None else k}|{members[0][1]}|{len(members)}|{sum(m[2] for m in members)}"
                 for (k, _), members in ordered]
        return make_result(codec, *lines, batch=3)

    aggregates = (Aggregate("COUNT", 2, (2,)), Aggregate("SUM", 3, (3,)))
    results = []
    for sorted_by_group in (True, False):
        spec = MergeSpec(visible=4, group_by=(0, 1), aggregates=aggregates, grouped=True,
                         shards_sorted_by_group=sorted_by_group)
        results.append(await run(spec, [shard_result(p) for p in shard_rows], codec))
    assert results[0] == results[1]
    expected = reference_groups(rows)
    got = {}
    for line in results[0]:
        k, s, count, total = line.split("|")
        got[(None if k == "NULL" else int(k), s.lower())] = (int(count), int(total))
    assert got == expected
    keys = [(None if line.split("|")[0] == "NULL" else int(line.split("|")[0]), line.split("|")[1].lower())
            for line in results[0]]
    assert keys == sorted(keys, key=lambda key: (key[0] is not None, key[0] or 0, key[1]))  # MariaDB's order


async def test_hash_group_cap() -> None:
    spec = MergeSpec(visible=1, group_by=(0,), grouped=True, aggregates=(Aggregate("COUNT", 2, (2,)),))
    shards = [make_result(MY, "1|a|1", "2|a|1"), make_result(MY, "3|a|1", "1|a|1")]
    with pytest.raises(MergeError) as info:
        await run(spec, shards, max_rows=2)
    assert info.value.entry is MERGE_LIMIT_EXCEEDED
    assert "GROUP BY" in info.value.message
    shards = [make_result(MY, "1|a|1", "2|a|1"), make_result(MY, "3|a|1", "1|a|1")]
    assert await run(spec, shards, max_rows=3) == ["1", "2", "3"]


async def test_stream_group_refuses_unsorted_shards() -> None:
    spec = MergeSpec(visible=1, group_by=(0,), grouped=True, shards_sorted_by_group=True,
                     aggregates=(Aggregate("COUNT", 2, (2,)),))
    with pytest.raises(MergeError) as info:
        await run(spec, [make_result(MY, "2|a|1", "1|a|1")])
    assert info.value.entry is STATEMENT_UNSUPPORTED


async def test_ordered_merge_refuses_a_shard_sorted_differently() -> None:
    # A shard sorting by a collation the merger does not reproduce would interleave wrongly: refuse instead.
    shards = [make_result(MY, "0|b|0", "0|a|0"), make_result(MY, "0|c|0")]
    with pytest.raises(MergeError) as info:
        await run(MergeSpec(visible=2, order_by=(SortKey(1),)), shards)
    assert info.value.entry is STATEMENT_UNSUPPORTED


async def test_group_primitives_directly() -> None:
    codec = MY
    aggregator = Aggregator((Aggregate("COUNT", 2, (2,)),), codec)
    key = group_key(codec, (1,), nulls_first=True)
    rows = [codec.split(codec.join([b"0", s, b"1"])) for s in (b"a", b"A", b"b", None)]

    async def stream(items):  # type: ignore[no-untyped-def]
        for item in items:
            yield item

    hashed = [f async for f in hash_group_merge(stream(rows), key, aggregator, 10)]
    assert [(f[1], f[2]) for f in hashed] == [(None, b"1"), (b"a", b"2"), (b"b", b"1")]
    ordered = sorted(rows, key=key)
    streamed = [f async for f in stream_group_merge(stream(ordered), key, aggregator)]
    assert streamed == hashed


async def test_grouped_order_by_aggregate_and_cap() -> None:
    spec = MergeSpec(visible=3, group_by=(0,), grouped=True, aggregates=(Aggregate("COUNT", 2, (2,)),),
                     order_by=(SortKey(2, descending=True),))
    shards = [make_result(MY, "1|a|1", "2|b|5"), make_result(MY, "1|a|7", "3|c|2")]
    assert await run(spec, shards) == ["1|a|8", "2|b|5", "3|c|2"]
    spec = MergeSpec(visible=3, group_by=(0,), grouped=True, shards_sorted_by_group=True,
                     aggregates=(Aggregate("COUNT", 2, (2,)),), order_by=(SortKey(2),))
    shards = [make_result(MY, "1|a|1", "2|b|5"), make_result(MY, "1|a|7", "3|c|2")]
    with pytest.raises(MergeError) as info:
        await run(spec, shards, max_rows=2)
    assert info.value.entry is MERGE_LIMIT_EXCEEDED


async def test_grouped_pg_nulls_last_and_limit() -> None:
    spec = MergeSpec(visible=2, group_by=(0,), grouped=True, aggregates=(Aggregate("COUNT", 2, (2,)),),
                     shards_sorted_by_group=True, limit=2, offset=1)
    shards = [make_result(PG, "1|x|1", "3|x|1", "NULL|x|1"), make_result(PG, "2|x|1", "NULL|x|4")]
    assert await run(spec, shards, PG, "postgres") == ["2|x", "3|x"]
    spec = MergeSpec(visible=3, group_by=(0,), grouped=True, aggregates=(Aggregate("COUNT", 2, (2,)),),
                     shards_sorted_by_group=True)
    shards = [make_result(PG, "1|x|1", "3|x|1", "NULL|x|1"), make_result(PG, "2|x|1", "NULL|x|4")]
    assert await run(spec, shards, PG, "postgres") == ["1|x|1", "2|x|1", "3|x|1", "NULL|x|5"]
