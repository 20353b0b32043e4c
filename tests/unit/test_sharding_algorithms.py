"""Sharding algorithms (dbmesh.sharding): every behaviour in SHARDINGSPHERE-COMPAT.md §2-§3 as a case, plus
property tests (MOD/HASH_MOD consistency, range results covering the precise results)."""

from __future__ import annotations

import datetime as dt
import doctest
import importlib
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dbmesh.errors import ConfigError
from dbmesh.sharding import (
    ALGORITHMS,
    AutoIntervalShardingAlgorithm,
    BoundaryRangeShardingAlgorithm,
    ComplexInlineShardingAlgorithm,
    DataNode,
    DataNodeInfo,
    HashModShardingAlgorithm,
    HintInlineShardingAlgorithm,
    InlineShardingAlgorithm,
    IntervalShardingAlgorithm,
    ModShardingAlgorithm,
    ShardingError,
    StandardShardingAlgorithm,
    VolumeRangeShardingAlgorithm,
    auto_table_nodes,
    create_algorithm,
)
from dbmesh.sharding import values as jv


def tables(n: int, prefix: str = "t_") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


# -- props validation ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("type_name", "props", "key", "message"), [
    ("INLINE", {}, "props.algorithm-expression", "requires"),
    ("INLINE", {"algorithm-expression": "t_${x"}, "props.algorithm-expression", "unterminated"),
    ("INLINE", {"algorithm-expression": "t_${x}", "allow-range-query-with-inline-sharding": "yes"},
     "props.allow-range-query-with-inline-sharding", "not true or false"),
    ("INLINE", {"algorithm-expression": "t_${x}", "sharding-count": 2}, "props.sharding-count", "unknown property"),
    ("MOD", {}, "props.sharding-count", "requires"),
    ("MOD", {"sharding-count": 0}, "props.sharding-count", "at least 1"),
    ("MOD", {"sharding-count": "four"}, "props.sharding-count", "not an integer"),
    ("MOD", {"sharding-count": 4, "start-offset": -1}, "props.start-offset", "at least 0"),
    ("HASH_MOD", {"sharding-count": 2**31}, "props.sharding-count", "not an integer"),
    ("VOLUME_RANGE", {"range-lower": 0, "range-upper": 5, "sharding-volume": 10}, "props.range-upper", "at least"),
    ("VOLUME_RANGE", {"range-lower": 0, "range-upper": 50, "sharding-volume": 0}, "props.sharding-volume", "at least 1"),
    ("BOUNDARY_RANGE", {"sharding-ranges": "x, y"}, "props.sharding-ranges", "no long values"),
    ("AUTO_INTERVAL", {"datetime-lower": "2024-01-01", "datetime-upper": "2024-02-01 00:00:00",
                       "sharding-seconds": 1}, "props.datetime-lower", "yyyy-MM-dd HH:mm:ss"),
    ("AUTO_INTERVAL", {"datetime-lower": "2024-02-01 00:00:00", "datetime-upper": "2024-01-01 00:00:00",
                       "sharding-seconds": 1}, "props.datetime-upper", "before"),
    ("INTERVAL", {"datetime-pattern": "yyyy-MM-dd", "datetime-lower": "2024-01-01", "sharding-suffix-pattern": "yyyyMMdd",
                  "datetime-interval-unit": "HOURS"}, "props.datetime-interval-unit", "Unsupported unit"),
    ("INTERVAL", {"datetime-pattern": "yyyy-MM-dd", "datetime-lower": "2024-01-01", "sharding-suffix-pattern": "yyyyMMdd",
                  "datetime-interval-unit": "FORTNIGHTS"}, "props.datetime-interval-unit", "not a supported"),
    ("INTERVAL", {"datetime-pattern": "yyyy-MMM-dd", "datetime-lower": "2024-Jan-01",
                  "sharding-suffix-pattern": "yyyy"}, "props.datetime-pattern", "month names"),
    ("INTERVAL", {"datetime-pattern": "yyyy-MM-dd", "datetime-lower": "2024/01/01",
                  "sharding-suffix-pattern": "yyyy"}, "props.datetime-lower", "does not match"),
    ("INTERVAL", {"datetime-pattern": "yyyy-MM-dd HH:mm:ss", "datetime-lower": "2000-01-01 00:00:00",
                  "datetime-upper": "2024-01-01 00:00:00", "sharding-suffix-pattern": "yyyyMMddHHmmss",
                  "datetime-interval-unit": "SECONDS"}, "props.datetime-interval-unit", "more than"),
])
def test_bad_props_are_config_errors(type_name: str, props: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        create_algorithm(type_name, props, file="database-x.yaml", path="props")
    assert info.value.key == key and info.value.file == "database-x.yaml"


def test_registry_is_case_insensitive_and_knows_placement() -> None:
    assert set(ALGORITHMS) == {"INLINE", "MOD", "HASH_MOD", "VOLUME_RANGE", "BOUNDARY_RANGE", "AUTO_INTERVAL",
                               "INTERVAL", "COMPLEX_INLINE", "HINT_INLINE"}
    assert ALGORITHMS["hash_mod"] is HashModShardingAlgorithm and "Auto_Interval" in ALGORITHMS
    auto_only = {name for name, cls in ALGORITHMS.items() if cls.AUTO_TABLE}
    assert auto_only == {"MOD", "HASH_MOD", "VOLUME_RANGE", "BOUNDARY_RANGE", "AUTO_INTERVAL"}
    with pytest.raises(ConfigError, match="unknown sharding algorithm type") as info:
        create_algorithm("CLASS_BASED", {}, path="shardingAlgorithms.x.props")
    assert info.value.key == "shardingAlgorithms.x.type"


def test_props_values_go_through_to_string() -> None:
    algo = create_algorithm("mod", {"sharding-count": 4, "zero-padding": True})
    assert isinstance(algo, ModShardingAlgorithm) and algo.sharding_count == 4 and algo.zero_padding


@pytest.mark.parametrize("algo", [
    InlineShardingAlgorithm({"algorithm-expression": "t_${id % 2}"}),
    ModShardingAlgorithm({"sharding-count": 2}), HashModShardingAlgorithm({"sharding-count": 2}),
    VolumeRangeShardingAlgorithm({"range-lower": 0, "range-upper": 10, "sharding-volume": 5}),
    BoundaryRangeShardingAlgorithm({"sharding-ranges": "1"}),
    AutoIntervalShardingAlgorithm({"datetime-lower": "2024-01-01 00:00:00", "datetime-upper": "2024-01-02 00:00:00",
                                   "sharding-seconds": 3600}),
    IntervalShardingAlgorithm({"datetime-pattern": "yyyy-MM-dd", "datetime-lower": "2024-01-01",
                               "datetime-upper": "2024-01-02", "sharding-suffix-pattern": "yyyyMMdd"}),
], ids=lambda a: a.TYPE)
def test_null_is_refused_by_every_algorithm(algo: StandardShardingAlgorithm) -> None:
    with pytest.raises(ShardingError, match="cannot be null"):
        algo.do_sharding(tables(2), None, column="id")


# -- suffix matching and autoTables --------------------------------------------------------------------------

def test_data_node_info() -> None:
    assert DataNodeInfo.of(["t_order_0", "t_order_1"]) == DataNodeInfo("t_order_", 1)
    assert DataNodeInfo.of(["t_order_00", "t_order_01", "t_order_100"]) == DataNodeInfo("t_order_", 2)
    info = DataNodeInfo.of(["t_order_00", "t_order_01"])
    assert info.target(["t_order_00", "t_order_01"], "1") == "t_order_01"
    assert info.target(["T_ORDER_01"], "1") is None  # containment is case-sensitive


def test_auto_table_nodes_round_robin() -> None:
    nodes = auto_table_nodes("ds_${0..2}", 7, "t_order")
    assert [str(n) for n in nodes] == ["ds_0.t_order_0", "ds_1.t_order_1", "ds_2.t_order_2", "ds_0.t_order_3",
                                       "ds_1.t_order_4", "ds_2.t_order_5", "ds_0.t_order_6"]
    assert auto_table_nodes(["b", "a"], 3, "t") == [DataNode("b", "t_0"), DataNode("a", "t_1"), DataNode("b", "t_2")]
    # Names are never padded, even with more than 10 tables.
    assert auto_table_nodes(["ds"], 12, "t")[3].table == "t_3"
    with pytest.raises(ShardingError, match="empty"):
        auto_table_nodes([], 2, "t")


# -- INLINE --------------------------------------------------------------------------------------------------

def test_inline_precise_range_and_checks() -> None:
    algo = InlineShardingAlgorithm({"algorithm-expression": "t_order_$->{order_id % 2}"})
    targets = ["t_order_0", "t_order_1"]
    assert algo.do_sharding(targets, 4, column="order_id") == "t_order_0"
    assert algo.do_sharding(targets, jv.long(5), column="order_id") == "t_order_1"
    # Unfiltered: the standard strategy drops `t_order_-1` because it is not a target.
    assert algo.do_sharding(targets, -7, column="order_id") == "t_order_-1"
    with pytest.raises(ShardingError, match="error 52"):
        algo.do_sharding(targets, 4, column="user_id")
    with pytest.raises(ShardingError, match="allow-range-query-with-inline-sharding"):
        algo.do_sharding_range(targets, 1, 5, column="order_id")
    allowed = InlineShardingAlgorithm({"algorithm-expression": "t_order_${order_id % 2}",
                                       "allow-range-query-with-inline-sharding": "TRUE"})
    assert allowed.do_sharding_range(targets, 1, None, column="order_id") == targets
    algo.check_prefix("order_id", "t_order_")
    with pytest.raises(ConfigError, match="does not start with"):
        algo.check_prefix("order_id", "t_user_")


def test_inline_string_modulo_is_refused() -> None:
    algo = InlineShardingAlgorithm({"algorithm-expression": "t_${id % 2}"})
    with pytest.raises(ShardingError, match="MissingMethodException"):
        algo.do_sharding(tables(2), "7", column="id")


# -- MOD -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "target"), [
    (5, "t_1"), (-7, "t_1"), (jv.long(-7), "t_1"), ("5", "t_1"), ("+5", "t_1"), ("-7", "t_1"),
    (jv.big_decimal("5.9"), "t_1"),  # longValue() truncates
    (jv.big_decimal("-5.9"), "t_3"),
    (jv.big_integer(2**64 + 1), "t_1"),  # longValue() wraps BigInteger to 64 bits
    (jv.big_integer(2**63), "t_0"),  # wraps to Long.MIN_VALUE, then mod 4
    (jv.double(6.7), "t_2"),
    ("123456789012345678901234567890", "t_2"),  # non-numbers go through new BigInteger(toString())
])
def test_mod_values(value: object, target: str) -> None:
    assert ModShardingAlgorithm({"sharding-count": 4}).do_sharding(tables(4), value) == target


@pytest.mark.parametrize("value", ["abc", " 5", "5.0", True])
def test_mod_refuses_non_integers(value: object) -> None:
    with pytest.raises(ShardingError, match="not an integer"):
        ModShardingAlgorithm({"sharding-count": 4}).do_sharding(tables(4), value)


def test_mod_offsets() -> None:
    algo = ModShardingAlgorithm({"sharding-count": 4, "start-offset": 4, "stop-offset": 1})
    assert algo.do_sharding(tables(4), "2024000" + "7" + "X") == "t_3"  # "0007" → 7 mod 4
    assert algo.do_sharding(tables(4), 20240006) == "t_0"  # "000" → 0
    with pytest.raises(ShardingError, match="error 23"):
        algo.do_sharding(tables(4), "12345")
    assert algo.do_sharding_range(tables(4), 1, 2) == tables(4)  # ranges of cut-out numbers are not ranges


def test_mod_zero_padding() -> None:
    small = ModShardingAlgorithm({"sharding-count": 10, "zero-padding": True})
    assert small.suffix(3) == "3"  # digits of 9: one, so nothing changes
    big = ModShardingAlgorithm({"sharding-count": 16, "zero-padding": True})
    assert big.suffix(3) == "03" and big.suffix(13) == "13"
    # autoTables are named t_0..t_15, unpadded: ShardingSphere drops value 3 (t_03 is no target); dbmesh routes it.
    assert big.do_sharding(tables(16), 13) == "t_13"
    assert big.do_sharding(tables(16), 3) == "t_3"
    padded = [f"t_{i:02d}" for i in range(16)]
    assert big.do_sharding(padded, 3) == "t_03"


@pytest.mark.parametrize(("lower", "upper", "expected"), [
    (5, None, tables(4)),  # no upper bound
    (None, 5, tables(4)),  # only an upper bound: ShardingSphere throws; every target is the right answer
    (None, None, tables(4)),
    (0, 3, tables(4)),  # span >= count - 1
    (5, 6, ["t_1", "t_2"]),
    (7, 8, ["t_0", "t_3"]),
    (6, 6, ["t_2"]),
    (9, 5, []),
    (-2, -1, ["t_2", "t_3"]),
    (0, 2**70, tables(4)),  # a huge span never enumerates
])
def test_mod_ranges(lower: object, upper: object, expected: list[str]) -> None:
    assert ModShardingAlgorithm({"sharding-count": 4}).do_sharding_range(tables(4), lower, upper) == expected


@given(st.integers(jv.LONG_MIN, jv.LONG_MAX), st.integers(1, 64))
def test_mod_is_consistent_across_java_types(v: int, count: int) -> None:
    algo = ModShardingAlgorithm({"sharding-count": count})
    names = tables(count)
    expected = f"t_{v % count}"
    assert algo.do_sharding(names, jv.long(v)) == expected
    assert algo.do_sharding(names, str(v)) == expected
    assert algo.do_sharding(names, jv.big_integer(v)) == expected
    assert algo.do_sharding(names, jv.from_python(v)) == expected


# -- HASH_MOD ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "target"), [
    (jv.integer(-7), "t_3"),  # hash -7, abs 7
    (jv.long(-7), "t_2"),  # hash 6
    (jv.long(-1), "t_0"),  # hash 0
    (jv.long(2**32), "t_1"),  # hash 1
    (jv.integer(jv.INT_MIN), "t_0"),  # abs((long) MIN_VALUE) = 2^31
    ("hello", "t_2"),  # 99162322
    (jv.big_decimal("7"), "t_1"),  # 217
    (jv.big_decimal("7.0"), "t_3"),  # 2171
])
def test_hash_mod_by_java_type(value: object, target: str) -> None:
    algo = HashModShardingAlgorithm({"sharding-count": 4})
    assert algo.do_sharding(tables(4), value) == target
    assert algo.do_sharding_range(tables(4), 1, 2) == tables(4)


@given(st.one_of(st.integers(jv.LONG_MIN, jv.LONG_MAX).map(jv.long), st.integers(jv.INT_MIN, jv.INT_MAX).map(jv.integer),
                 st.text(max_size=20), st.integers(-(2**100), 2**100).map(jv.big_integer)), st.integers(1, 64))
def test_hash_mod_always_hits_a_table(value: jv.Scalar, count: int) -> None:
    algo = HashModShardingAlgorithm({"sharding-count": count})
    target = algo.do_sharding(tables(count), value)
    assert target in tables(count)
    assert target == algo.do_sharding(tables(count), value)


@given(st.integers(0, jv.INT_MAX), st.integers(1, 64))
def test_hash_mod_of_non_negative_integers_is_mod(v: int, count: int) -> None:
    assert HashModShardingAlgorithm({"sharding-count": count}).do_sharding(tables(count), jv.integer(v)) == \
        f"t_{v % count}"


# -- VOLUME_RANGE and BOUNDARY_RANGE -------------------------------------------------------------------------

def test_volume_range_partitions() -> None:
    algo = VolumeRangeShardingAlgorithm({"range-lower": 10, "range-upper": 45, "sharding-volume": 10})
    assert algo.auto_tables_amount == 6  # n = ceil(35/10) = 4, plus below and above
    names = tables(6)
    cases = {-5: "t_0", 9: "t_0", 10: "t_1", 19: "t_1", 20: "t_2", 40: "t_4", 44: "t_4", 45: "t_5", 10**12: "t_5"}
    for v, target in cases.items():
        assert algo.do_sharding(names, v) == target, v
    assert algo.do_sharding(names, "20") == "t_2"
    with pytest.raises(ShardingError, match="not a long"):
        algo.do_sharding(names, jv.big_decimal("20.0"))
    assert algo.do_sharding_range(names, 15, 25) == ["t_1", "t_2"]
    assert algo.do_sharding_range(names, None, 15) == ["t_0", "t_1"]
    assert algo.do_sharding_range(names, 41, None) == ["t_4", "t_5"]


def test_boundary_range_partitions() -> None:
    algo = BoundaryRangeShardingAlgorithm({"sharding-ranges": "20, 10, abc, 30"})
    assert algo.boundaries == (10, 20, 30) and algo.ignored_entries == ("abc",)
    assert algo.auto_tables_amount == 4
    names = tables(4)
    for v, target in {9: "t_0", 10: "t_1", 19: "t_1", 20: "t_2", 30: "t_3", -(2**63): "t_0"}.items():
        assert algo.do_sharding(names, v) == target
    assert algo.do_sharding_range(names, 15, 20, upper_inclusive=False) == ["t_1", "t_2"]  # open bounds kept
    repeated = BoundaryRangeShardingAlgorithm({"sharding-ranges": "10,10"})
    assert repeated.auto_tables_amount == 3 and repeated.partition(10) == 2 and repeated.partition(9) == 0


# -- AUTO_INTERVAL -------------------------------------------------------------------------------------------

AUTO = {"datetime-lower": "2024-01-01 00:00:00", "datetime-upper": "2024-01-03 12:00:00", "sharding-seconds": 86400}


def test_auto_interval_count_and_index() -> None:
    algo = AutoIntervalShardingAlgorithm(AUTO)
    assert algo.auto_tables_amount == 4  # ⌊2.5⌋ + 2
    assert algo.index("2024-01-01 00:00:00") == 0
    assert algo.index("2023-06-01 00:00:00") == 0  # clamped
    assert algo.index("2024-01-01 06:00:00") == 1
    assert algo.index("2024-01-02 00:00:00") == 1
    assert algo.index("2024-01-02 00:05:00") == 1  # 1.0035 rounds to 1.00 before the ceiling
    assert algo.index("2024-01-02 00:10:00") == 2  # 1.0069 → 1.01 → 2
    assert algo.index("2030-01-01 00:00:00") == 3  # clamped to count - 1
    assert algo.index(dt.datetime(2024, 1, 2, 12)) == 2  # a Timestamp's toString parses
    assert algo.index("2024-01-02 12:00:00.0 trailing") == 2  # trailing text ignored


def test_auto_interval_rounds_the_binary_double() -> None:
    algo = AutoIntervalShardingAlgorithm({"datetime-lower": "2024-01-01 00:00:00",
                                          "datetime-upper": "2024-01-01 01:00:00", "sharding-seconds": 1000})
    assert algo.index("2024-01-01 00:16:44") == 1  # 1.004 → 1.00
    assert algo.index("2024-01-01 00:16:45") == 1  # 1.005 is 1.00499999... as a double → 1.00
    assert algo.index("2024-01-01 00:16:46") == 2  # 1.006 → 1.01


@pytest.mark.parametrize("value", ["2024-01-02T00:00:00", "2024-01-02", dt.date(2024, 1, 2)])
def test_auto_interval_refuses_iso_and_date_only(value: object) -> None:
    with pytest.raises(ShardingError, match="yyyy-MM-dd HH:mm:ss"):
        AutoIntervalShardingAlgorithm(AUTO).index(value)


def test_auto_interval_ranges() -> None:
    algo = AutoIntervalShardingAlgorithm(AUTO)
    names = tables(4)
    assert algo.do_sharding(names, "2024-01-02 06:00:00") == "t_2"
    assert algo.do_sharding_range(names, "2024-01-01 06:00:00", "2024-01-02 06:00:00") == ["t_1", "t_2"]
    assert algo.do_sharding_range(names, None, "2024-01-01 00:00:00") == ["t_0"]
    assert algo.do_sharding_range(names, "2024-01-03 00:00:00", None) == ["t_2", "t_3"]


# -- INTERVAL ------------------------------------------------------------------------------------------------

MONTHLY = {"datetime-pattern": "yyyy-MM-dd HH:mm:ss", "datetime-lower": "2024-01-01 00:00:00",
           "datetime-upper": "2024-12-31 23:59:59", "sharding-suffix-pattern": "yyyyMM",
           "datetime-interval-unit": "months"}
MONTH_TABLES = [f"t_order_2024{m:02d}" for m in range(1, 13)]


def test_interval_precise_values() -> None:
    algo = IntervalShardingAlgorithm(MONTHLY)
    assert algo.do_sharding(MONTH_TABLES, "2024-03-15 10:00:00") == "t_order_202403"
    assert algo.do_sharding(MONTH_TABLES, "2024-03-15 10:00:00.0") == "t_order_202403"  # cut to the pattern length
    assert algo.do_sharding(MONTH_TABLES, "2024-03-15") == "t_order_202403"  # shorter: shortened pattern, midnight
    assert algo.do_sharding(MONTH_TABLES, dt.datetime(2024, 12, 31, 23, 59, 59)) == "t_order_202412"
    assert algo.do_sharding(MONTH_TABLES, dt.date(2024, 6, 1)) == "t_order_202406"
    assert algo.do_sharding(MONTH_TABLES, "2023-12-31 23:59:59") is None  # before lower: no bucket
    assert algo.do_sharding(MONTH_TABLES, "2025-01-01 00:00:00") is None  # after the last bucket
    assert algo.do_sharding(MONTH_TABLES[:2], "2024-03-01 00:00:00") is None  # bucket without a table
    with pytest.raises(ShardingError, match="does not match datetime-pattern"):
        algo.do_sharding(MONTH_TABLES, "15/03/2024")


def test_interval_ambiguous_suffix_is_refused() -> None:
    algo = IntervalShardingAlgorithm(MONTHLY)
    with pytest.raises(ShardingError, match="several targets"):
        algo.do_sharding(["a_202403", "b_202403"], "2024-03-15 10:00:00")


def test_interval_ranges() -> None:
    algo = IntervalShardingAlgorithm(MONTHLY)
    assert algo.do_sharding_range(MONTH_TABLES, "2024-02-10 00:00:00", "2024-04-01 00:00:00") == \
        ["t_order_202402", "t_order_202403", "t_order_202404"]
    assert algo.do_sharding_range(MONTH_TABLES, "2024-02-10 00:00:00", "2024-04-01 00:00:00",
                                  upper_inclusive=False) == ["t_order_202402", "t_order_202403"]
    assert algo.do_sharding_range(MONTH_TABLES, "2024-11-10 00:00:00", None) == ["t_order_202411", "t_order_202412"]
    assert algo.do_sharding_range(MONTH_TABLES, None, None) == MONTH_TABLES
    assert algo.do_sharding_range(MONTH_TABLES, "2026-01-01 00:00:00", None) == []
    # Every target whose name ends with a selected suffix (other logic prefixes included).
    assert algo.do_sharding_range(["x_202401", "y_202401", "y_202402"], None, "2024-01-05 00:00:00") == \
        ["x_202401", "y_202401"]


def test_interval_steps_clamp_months_iteratively() -> None:
    algo = IntervalShardingAlgorithm({"datetime-pattern": "yyyy-MM-dd", "datetime-lower": "2024-01-31",
                                      "datetime-upper": "2024-05-01", "sharding-suffix-pattern": "yyyyMMdd",
                                      "datetime-interval-unit": "MONTHS"})
    assert algo.suffixes == ["20240131", "20240229", "20240329", "20240429"]


def test_interval_amount_year_month_and_default_upper() -> None:
    algo = IntervalShardingAlgorithm({"datetime-pattern": "yyyy-MM", "datetime-lower": "2024-01",
                                      "sharding-suffix-pattern": "yyyy_MM", "datetime-interval-amount": 3,
                                      "datetime-interval-unit": "Months"}, now=dt.datetime(2024, 12, 5, 8))
    assert algo.suffixes == ["2024_01", "2024_04", "2024_07", "2024_10"]
    assert algo.do_sharding(["t_2024_01", "t_2024_04"], "2024-05") == "t_2024_04"
    days = IntervalShardingAlgorithm({"datetime-pattern": "yyyy-MM-dd", "datetime-lower": "2024-01-01",
                                      "sharding-suffix-pattern": "MMdd", "datetime-interval-amount": 2},
                                     now=dt.datetime(2024, 1, 6, 23))
    assert days.suffixes == ["0101", "0103", "0105"]  # DAYS by default; upper = now, read once


# -- COMPLEX_INLINE and HINT_INLINE --------------------------------------------------------------------------

def test_complex_inline() -> None:
    algo = ComplexInlineShardingAlgorithm({"algorithm-expression": "t_${user_id % 2}_${order_id % 2}",
                                           "sharding-columns": "user_id, order_id"})
    assert algo.do_sharding([], {"user_id": [1, 2], "order_id": [3, 4]}) == ["t_1_1", "t_1_0", "t_0_1", "t_0_0"]
    assert algo.do_sharding([], {"user_id": [1, 3], "order_id": [5]}) == ["t_1_1"]  # duplicates collapse
    assert algo.do_sharding([], {"user_id": [-1], "order_id": [1]}) == ["t_-1_1"]  # not filtered
    with pytest.raises(ShardingError, match="error 53"):
        algo.do_sharding([], {"user_id": [1], "order_id": []})
    with pytest.raises(ShardingError, match="allow-range"):
        algo.do_sharding(["t_0_0"], {"user_id": [1]}, ranges={"order_id": (1, 5)})
    with pytest.raises(ShardingError, match="cannot be null"):
        algo.do_sharding([], {"user_id": [None], "order_id": [1]})
    allowed = ComplexInlineShardingAlgorithm({"algorithm-expression": "t_${a}",
                                              "allow-range-query-with-inline-sharding": True})
    assert allowed.do_sharding(["t_0", "t_1"], {"a": [1]}, ranges={"a": (1, None)}) == ["t_0", "t_1"]
    # Without sharding-columns there is no count check; a missing column reads as null.
    assert ComplexInlineShardingAlgorithm({"algorithm-expression": "t_${a}_${b}"}).do_sharding([], {"a": [1]}) == \
        ["t_1_null"]


def test_hint_inline() -> None:
    default = HintInlineShardingAlgorithm({})
    assert default.do_sharding(["ds_0", "ds_1"], []) == ["ds_0", "ds_1"]
    assert default.do_sharding(["ds_0", "ds_1"], ["ds_9"]) == ["ds_9"]  # not filtered
    algo = HintInlineShardingAlgorithm({"algorithm-expression": "t_order_${Integer.valueOf(value) % 2}"})
    # SQL-hint values are BigInteger when they parse as an integer, else String.
    assert algo.do_sharding([], [jv.big_integer(3), "4", jv.big_integer(5)]) == ["t_order_1", "t_order_0"]
    assert HintInlineShardingAlgorithm({"algorithm-expression": "t_${value % 2}"}).do_sharding(
        [], [jv.big_integer(-3)]) == ["t_1"]  # BigInteger % is never negative


# -- ranges cover precise results (property) -----------------------------------------------------------------

def _standard_algorithms() -> list[tuple[StandardShardingAlgorithm, list[str]]]:
    return [
        (ModShardingAlgorithm({"sharding-count": 7}), tables(7)),
        (HashModShardingAlgorithm({"sharding-count": 5}), tables(5)),
        (VolumeRangeShardingAlgorithm({"range-lower": -100, "range-upper": 100, "sharding-volume": 30}), tables(9)),
        (BoundaryRangeShardingAlgorithm({"sharding-ranges": "-50,0,0,25,1000"}), tables(6)),
    ]


@given(st.integers(-500, 500), st.integers(0, 40), st.integers(0, 40), st.integers(0, 3))
def test_numeric_ranges_cover_precise_results(v: int, below: int, above: int, which: int) -> None:
    algo, names = _standard_algorithms()[which]
    precise = algo.do_sharding(names, v)
    assert precise is not None
    assert precise in algo.do_sharding_range(names, v - below, v + above)
    assert precise in algo.do_sharding_range(names, v - below, None)
    assert precise in algo.do_sharding_range(names, None, v + above)


moments = st.datetimes(min_value=dt.datetime(2023, 12, 1), max_value=dt.datetime(2025, 2, 1)).map(
    lambda d: d.replace(microsecond=0))


@given(moments, st.timedeltas(dt.timedelta(0), dt.timedelta(days=90)),
       st.timedeltas(dt.timedelta(0), dt.timedelta(days=90)), st.booleans())
def test_time_ranges_cover_precise_results(v: dt.datetime, below: dt.timedelta, above: dt.timedelta,
                                           interval: bool) -> None:
    algo: StandardShardingAlgorithm
    if interval:
        algo, names = IntervalShardingAlgorithm(MONTHLY), MONTH_TABLES
    else:
        algo = AutoIntervalShardingAlgorithm({"datetime-lower": "2024-01-01 00:00:00",
                                              "datetime-upper": "2024-12-31 00:00:00", "sharding-seconds": 2592000})
        names = tables(algo.auto_tables_amount)
    precise = algo.do_sharding(names, v)
    covering = algo.do_sharding_range(names, v - below, v + above)
    if precise is None:
        assert interval and not dt.datetime(2024, 1, 1) <= v < dt.datetime(2025, 1, 1)
    else:
        assert precise in covering
        assert precise in algo.do_sharding_range(names, v, v)


def test_decimal_and_timestamp_inputs_are_typed() -> None:
    assert jv.from_python(Decimal("7.0")) == jv.big_decimal("7.0")
    assert jv.java_str(dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02 03:04:05.0"  # java.sql.Timestamp


def test_module_doctests() -> None:
    for name in ("base", "mod", "range", "interval", "inline_algorithm", "autotables", "algorithms", "__init__"):
        module = importlib.import_module("dbmesh.sharding" if name == "__init__" else f"dbmesh.sharding.{name}")
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, name
