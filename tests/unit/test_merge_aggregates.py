"""Aggregates combined across shards, in both dialects, against results the servers themselves gave."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from dbmesh.errors import STATEMENT_UNSUPPORTED
from dbmesh.kernel.merge import MergeError, merge, mysql_text_codec, pg_codec
from dbmesh.kernel.merge import codec_pg as pg
from dbmesh.kernel.merge.testing import FakeShard, collect, make_result
from dbmesh.kernel.plan import Aggregate, MergeSpec
from dbmesh.protocol.mysql.constants import ColumnType as T
from dbmesh.protocol.mysql.packets import ColumnDefinition41
from dbmesh.protocol.postgresql.messages import FieldDescription


def my(*columns: tuple[str, int, int, int]) -> object:
    return mysql_text_codec([ColumnDefinition41(n, t, cs, decimals=d) for n, t, cs, d in columns])


def pgc(*columns: tuple[int, int]) -> object:
    return pg_codec([FieldDescription(f"c{i}", type_oid=oid, format=fmt) for i, (oid, fmt) in enumerate(columns)])


async def rows(codec: object, spec: MergeSpec, shards: Sequence[FakeShard], dialect: str = "mysql") -> list[list[str | None]]:
    out = await collect(merge(spec, shards, codec, max_rows=100, dialect=dialect))  # type: ignore[arg-type]
    return [[None if c is None else c.decode() for c in codec.split(p)] for p in out]  # type: ignore[attr-defined]


# --- MySQL: the shard columns are what MariaDB 10.11 reports for these aggregates over
# CREATE TABLE dq (x DECIMAL(10,3), y INT, f DOUBLE) with rows (1.001,1,1), (1.002,2,2), (1.002,2,2), (NULL,NULL,NULL):
# AVG(x) NEWDECIMAL decimals 7, SUM(x) NEWDECIMAL 3, AVG(y) NEWDECIMAL 4, SUM(y) NEWDECIMAL 0, AVG(f)/SUM(f) DOUBLE 31,
# COUNT LONGLONG.
DQ = my(("avg_x", T.NEWDECIMAL, 63, 7), ("sum_x", T.NEWDECIMAL, 63, 3), ("cnt_x", T.LONGLONG, 63, 0),
        ("avg_y", T.NEWDECIMAL, 63, 4), ("sum_y", T.NEWDECIMAL, 63, 0), ("cnt_y", T.LONGLONG, 63, 0),
        ("avg_f", T.DOUBLE, 63, 31), ("sum_f", T.DOUBLE, 63, 31), ("cnt_f", T.LONGLONG, 63, 0),
        ("min_x", T.NEWDECIMAL, 63, 3), ("max_x", T.NEWDECIMAL, 63, 3), ("count", T.LONGLONG, 63, 0))
DQ_SPEC = MergeSpec(visible=12, grouped=True, aggregates=(
    Aggregate("AVG", 0, (1, 2)), Aggregate("SUM", 1, (1,)), Aggregate("COUNT", 2, (2,)),
    Aggregate("AVG", 3, (4, 5)), Aggregate("SUM", 4, (4,)), Aggregate("COUNT", 5, (5,)),
    Aggregate("AVG", 6, (7, 8)), Aggregate("SUM", 7, (7,)), Aggregate("COUNT", 8, (8,)),
    Aggregate("MIN", 9, (9,)), Aggregate("MAX", 10, (10,)), Aggregate("COUNT", 11, (11,))))


async def test_mysql_aggregates_match_server() -> None:
    # The rows split over three shards; each shard's partials are what it would compute over its rows.
    shards = [
        make_result(DQ, "1.0010000|1.001|1|1.0000|1|1|1|1|1|1.001|1.001|1"),
        make_result(DQ, "1.0020000|2.004|2|2.0000|4|2|2|4|2|1.002|1.002|2"),
        make_result(DQ, "NULL|NULL|0|NULL|NULL|0|NULL|NULL|0|NULL|NULL|1"),
    ]
    # MariaDB: SELECT AVG(x), SUM(x), COUNT(x), AVG(y), SUM(y), COUNT(y), AVG(f), SUM(f), COUNT(f), MIN(x), MAX(x),
    # COUNT(*) FROM dq  ->  the server's own output:
    assert await rows(DQ, DQ_SPEC, shards) == [[
        "1.0016667", "3.005", "3", "1.6667", "5", "3", "1.6666666666666667", "5", "3", "1.001", "1.002", "4"]]


async def test_mysql_aggregates_over_no_rows() -> None:
    # MariaDB: the same SELECT ... WHERE x IS NULL AND y = 0 gives one row: NULLs and zero counts.
    expected = [[None, None, "0", None, None, "0", None, None, "0", None, None, "0"]]
    assert await rows(DQ, DQ_SPEC, [make_result(DQ), make_result(DQ)]) == expected
    assert await rows(DQ, DQ_SPEC, []) == expected


@pytest.mark.parametrize(("partials", "expected"), [
    # (sum, count) per shard -> MariaDB's AVG(int) output (the servers' own results: AVG over
    # seq_1_to_30000 of IF(seq=1,-1,0) = 0.0000, of IF(seq=1,-2,0) = -0.0001; over seq_1_to_100000 of
    # IF(seq<=5,-1,0) = -0.0001; AVG of 1,2,2 = 1.6667 and of -1,-2,-2 = -1.6667; 1,2,2,2,2,2,1,2 = 1.7500)
    ([("-1", "10000"), ("0", "20000")], "0.0000"),
    ([("-2", "29999"), ("0", "1")], "-0.0001"),
    ([("-5", "50000"), ("0", "50000")], "-0.0001"),
    ([("3", "2"), ("2", "1")], "1.6667"),
    ([("-3", "2"), ("-2", "1")], "-1.6667"),
    ([("7", "4"), ("7", "4")], "1.7500"),
])
async def test_mysql_avg_rounding(partials: list[tuple[str, str]], expected: str) -> None:
    codec = my(("avg", T.NEWDECIMAL, 63, 4), ("s", T.NEWDECIMAL, 63, 0), ("c", T.LONGLONG, 63, 0))
    spec = MergeSpec(visible=1, grouped=True, aggregates=(Aggregate("AVG", 0, (1, 2)),))
    shards = [make_result(codec, f"0|{s}|{c}") for s, c in partials]
    assert await rows(codec, spec, shards) == [[expected]]


async def test_mysql_distinct_aggregates_match_server() -> None:
    # SELECT AVG(DISTINCT x), SUM(DISTINCT x), COUNT(DISTINCT x), AVG(DISTINCT f) FROM dq: the shards group by the
    # argument, so each sends (argument, ...) rows; the server's own output is 1.0015000, 2.003, 2, 1.5.
    codec = my(("avg_dx", T.NEWDECIMAL, 63, 7), ("sum_dx", T.NEWDECIMAL, 63, 3), ("cnt_dx", T.LONGLONG, 63, 0),
               ("avg_df", T.DOUBLE, 63, 31), ("x", T.NEWDECIMAL, 63, 3), ("f", T.DOUBLE, 63, 31))
    spec = MergeSpec(visible=4, grouped=True, aggregates=(
        Aggregate("AVG_DISTINCT", 0, (4,)), Aggregate("SUM_DISTINCT", 1, (4,)), Aggregate("COUNT_DISTINCT", 2, (4,)),
        Aggregate("AVG_DISTINCT", 3, (5,))))
    shards = [make_result(codec, "0|0|0|0|1.001|1", "0|0|0|0|1.002|2"),
              make_result(codec, "0|0|0|0|1.002|2", "0|0|0|0|NULL|NULL")]
    assert await rows(codec, spec, shards) == [["1.0015000", "2.003", "2", "1.5"]]
    # Over no rows at all (every shard's GROUP BY returned nothing): COUNT 0, the others NULL.
    assert await rows(codec, spec, [make_result(codec), make_result(codec)]) == [[None, None, "0", None]]


async def test_mysql_count_distinct_folds_collation_equal_strings() -> None:
    codec = my(("g", T.LONGLONG, 63, 0), ("n", T.LONGLONG, 63, 0), ("s", T.VAR_STRING, 45, 0))
    spec = MergeSpec(visible=2, group_by=(0,), grouped=True, shards_sorted_by_group=True,
                     aggregates=(Aggregate("COUNT_DISTINCT", 1, (2,)),))
    shards = [make_result(codec, "1|0|a", "1|0|b", "2|0|x"), make_result(codec, "1|0|A", "1|0|b  ", "1|0|c")]
    assert await rows(codec, spec, shards) == [["1", "3"], ["2", "1"]]


async def test_min_max_keep_original_bytes_by_collation() -> None:
    codec = my(("lo", T.VAR_STRING, 45, 0), ("hi", T.VAR_STRING, 45, 0), ("d", T.NEWDECIMAL, 63, 2))
    spec = MergeSpec(visible=3, grouped=True, aggregates=(
        Aggregate("MIN", 0, (0,)), Aggregate("MAX", 1, (1,)), Aggregate("MIN", 2, (2,))))
    shards = [make_result(codec, "Banana|apple|10.00"), make_result(codec, "apple|Cherry|-1.50"),
              make_result(codec, "NULL|NULL|NULL")]
    assert await rows(codec, spec, shards) == [["apple", "Cherry", "-1.50"]]


async def test_sum_all_null_partials_is_null_and_group_by_sum() -> None:
    codec = my(("g", T.VAR_STRING, 45, 0), ("s", T.NEWDECIMAL, 63, 2))
    spec = MergeSpec(visible=2, group_by=(0,), grouped=True, aggregates=(Aggregate("SUM", 1, (1,)),))
    shards = [make_result(codec, "a|NULL", "b|1.25"), make_result(codec, "A|NULL", "b|-3.00")]
    assert await rows(codec, spec, shards) == [["a", None], ["b", "-1.75"]]


async def test_aggregate_over_non_numeric_refused_before_reading() -> None:
    codec = my(("s", T.VAR_STRING, 45, 0),)
    shard = make_result(codec, "x")
    with pytest.raises(MergeError) as info:
        await rows(codec, MergeSpec(visible=1, grouped=True, aggregates=(Aggregate("SUM", 0, (0,)),)), [shard])
    assert info.value.entry is STATEMENT_UNSUPPORTED and "VAR_STRING" in info.value.message
    assert shard.fetches == 0
    interval = pg_codec([FieldDescription("iv", type_oid=1186)])
    shard = make_result(interval, "1 day")
    with pytest.raises(MergeError) as info:
        await rows(interval, MergeSpec(visible=1, grouped=True, aggregates=(Aggregate("MAX", 0, (0,)),)), [shard],
                   "postgres")
    assert "type oid 1186" in info.value.message
    assert shard.fetches == 0


# --- PostgreSQL ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("sum_oid", "partials", "expected"), [
    # (sum, count) per shard -> PostgreSQL 15's AVG output for the same rows (the server's own results):
    (pg.INT8, [("3", "2"), ("2", "1")], "1.6666666666666667"),  # avg of 1, 2, 2
    (pg.INT8, [("-1", "1"), ("0", "2")], "-0.33333333333333333333"),  # avg of -1, 0, 0
    (pg.INT8, [("5", "1"), ("5", "1")], "5.0000000000000000"),  # avg of 5, 5
    (pg.NUMERIC, [("200100000", "2"), ("2", "1")], "66700000.666666666667"),  # avg of int8 100000, 200000000, 2
    (pg.NUMERIC, [("0.00003", "2"), ("0.00002", "1")], "0.000016666666666666666667"),  # 0.00001, 0.00002, 0.00002
    (pg.NUMERIC, [("12345678901234567890.5", "1"), ("1", "1")], "6172839450617283945.8"),
    (pg.NUMERIC, [("3.60", "2"), ("2", "1")], "1.8666666666666667"),  # avg of 1.50, 2.1, 2
    (pg.NUMERIC, [("3.60", "2"), (None, "0")], "1.8000000000000000"),  # avg of 1.50, 2.1, NULL
    (pg.INT8, [("10000", "1"), ("20000", "1")], "15000.000000000000"),
    (pg.INT8, [("9999", "1"), ("1", "1")], "5000.0000000000000000"),
    (pg.INT8, [("123456789", "1"), ("2", "1")], "61728395.500000000000"),
    (pg.NUMERIC, [("0.500", "1")], "0.50000000000000000000"),  # avg of 0.5::numeric(10,3)
    (pg.INT8, [("7", "3")], "2.3333333333333333"),  # avg of int2 1, 2, 4
])
@pytest.mark.parametrize("fmt", [0, 1])
async def test_pg_avg_numeric_scale(sum_oid: int, partials: list[tuple[str | None, str]], expected: str,
                                    fmt: int) -> None:
    text = pgc((pg.NUMERIC, 0), (sum_oid, 0), (pg.INT8, 0))
    codec = pgc((pg.NUMERIC, fmt), (sum_oid, fmt), (pg.INT8, fmt))
    spec = MergeSpec(visible=1, grouped=True, aggregates=(Aggregate("AVG", 0, (1, 2)),))

    def encoded(value: str | None, column: int) -> bytes | None:
        # Build the shard's field in the column's format from its text.
        return None if value is None else codec.encode(column, text.decode(column, value.encode()))  # type: ignore[attr-defined]

    shards = [make_result(codec, [None, encoded(s, 1), encoded(c, 2)]) for s, c in partials]
    out = await collect(merge(spec, shards, codec, max_rows=10, dialect="postgres"))  # type: ignore[arg-type]
    (field,) = codec.split(out[0])  # type: ignore[attr-defined]
    assert text.encode(0, codec.decode(0, field)) == expected.encode()  # type: ignore[attr-defined]


async def test_pg_sum_types_and_scales() -> None:
    # SUM(int4) is int8, SUM(numeric) keeps the largest input scale (PostgreSQL: sum of 1.5, 2.25 -> 3.75;
    # of 1.50, 2 -> 3.50), SUM(float4) is float4 (1.5 + 1.25 -> 2.75), all NULL -> NULL.
    codec = pgc((pg.INT8, 0), (pg.NUMERIC, 0), (pg.FLOAT4, 0), (pg.NUMERIC, 0))
    spec = MergeSpec(visible=4, grouped=True, aggregates=tuple(Aggregate("SUM", i, (i,)) for i in range(4)))
    shards = [make_result(codec, "3|1.50|1.5|NULL"), make_result(codec, "4|2|1.25|NULL")]
    assert await rows(codec, spec, shards, "postgres") == [["7", "3.50", "2.75", None]]


async def test_pg_numeric_special_values() -> None:
    codec = pgc((pg.NUMERIC, 0), (pg.NUMERIC, 0), (pg.INT8, 0))
    spec = MergeSpec(visible=2, grouped=True, aggregates=(Aggregate("SUM", 0, (0,)), Aggregate("AVG", 1, (0, 2))))
    shards = [make_result(codec, "Infinity|0|1"), make_result(codec, "-Infinity|0|1")]
    assert await rows(codec, spec, shards, "postgres") == [["NaN", "NaN"]]
    shards = [make_result(codec, "Infinity|0|1"), make_result(codec, "5|0|1")]
    assert await rows(codec, spec, shards, "postgres") == [["Infinity", "Infinity"]]


async def test_pg_distinct_aggregates_match_server() -> None:
    # PostgreSQL: SELECT avg(DISTINCT x), sum(DISTINCT x), count(DISTINCT x) FROM (VALUES (1),(1),(2),(4)) t(x)
    # -> 2.3333333333333333 | 7 | 3 (the server's own output); x is int4, so avg is numeric and sum int8.
    codec = pgc((pg.NUMERIC, 0), (pg.INT8, 0), (pg.INT8, 0), (pg.INT4, 0))
    spec = MergeSpec(visible=3, grouped=True, aggregates=(
        Aggregate("AVG_DISTINCT", 0, (3,)), Aggregate("SUM_DISTINCT", 1, (3,)), Aggregate("COUNT_DISTINCT", 2, (3,))))
    shards = [make_result(codec, "0|0|0|1", "0|0|0|2"), make_result(codec, "0|0|0|1", "0|0|0|4", "0|0|0|NULL")]
    assert await rows(codec, spec, shards, "postgres") == [["2.3333333333333333", "7", "3"]]
    assert await rows(codec, spec, [make_result(codec)], "postgres") == [[None, None, "0"]]


async def test_pg_avg_of_floats_is_float8() -> None:
    codec = pgc((pg.FLOAT8, 0), (pg.FLOAT8, 0), (pg.INT8, 0))
    spec = MergeSpec(visible=1, grouped=True, aggregates=(Aggregate("AVG", 0, (1, 2)),))
    # PostgreSQL: avg of 1e20::float8 and 1::float8 -> 5e+19
    shards = [make_result(codec, "0|1e+20|1"), make_result(codec, "0|1|1")]
    assert await rows(codec, spec, shards, "postgres") == [["5e+19"]]


async def test_grouped_min_max_count_pg_binary() -> None:
    codec = pgc((pg.TEXT, 0), (pg.INT8, 1), (pg.TIMESTAMP, 0), (pg.TIMESTAMP, 0))
    import struct

    spec = MergeSpec(visible=4, group_by=(0,), grouped=True, aggregates=(
        Aggregate("COUNT", 1, (1,)), Aggregate("MIN", 2, (2,)), Aggregate("MAX", 3, (3,))))
    shards = [
        make_result(codec, [b"b", struct.pack("!q", 2), b"2024-01-01 00:00:00", b"2024-01-02 00:00:00"],
                    [b"a", struct.pack("!q", 1), b"2023-05-05 10:00:00", b"2023-05-05 10:00:00"]),
        make_result(codec, [b"b", struct.pack("!q", 3), b"2023-12-31 23:59:59.5", b"2024-01-02 00:00:00.000001"]),
    ]
    out = await collect(merge(spec, shards, codec, max_rows=10, dialect="postgres"))  # type: ignore[arg-type]
    assert [codec.split(p) for p in out] == [  # type: ignore[attr-defined]
        [b"a", struct.pack("!q", 1), b"2023-05-05 10:00:00", b"2023-05-05 10:00:00"],
        [b"b", struct.pack("!q", 5), b"2023-12-31 23:59:59.5", b"2024-01-02 00:00:00.000001"]]
