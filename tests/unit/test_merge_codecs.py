"""Row codecs: framing of MySQL text rows and PostgreSQL DataRows, value decoding and ordering per type, and the
servers' own number formats for computed aggregates."""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest

from dbmesh.errors import STATEMENT_UNSUPPORTED
from dbmesh.kernel.merge import MergeError, mysql_text_codec, pg_codec
from dbmesh.kernel.merge import codec_pg as pg
from dbmesh.kernel.merge.numeric import (
    Quotient,
    mysql_double_text,
    pg_float_text,
    pg_numeric_from_binary,
    pg_numeric_to_binary,
    scale_of,
)
from dbmesh.protocol.mysql.constants import ColumnType as T
from dbmesh.protocol.mysql.packets import ColumnDefinition41, text_row
from dbmesh.protocol.postgresql.messages import DataRow, FieldDescription


def col(name: str, kind: int = T.VAR_STRING, charset: int = 45, decimals: int = 0) -> ColumnDefinition41:
    return ColumnDefinition41(name, kind, charset, decimals=decimals)


# --- MySQL framing -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cells", [
    [b"a", None, b""],
    [b"x" * 250, b"y" * 251, b"z" * 65535, b"w" * 65536],
    [None, None],
    [b"\xfb", b"\xff\x00"],
])
def test_mysql_split_join_round_trip(cells: list[bytes | None]) -> None:
    codec = mysql_text_codec([col(str(i)) for i in range(len(cells))])
    payload = text_row(cells)  # the protocol layer's own row encoder
    assert codec.split(payload) == cells
    assert codec.join(cells) == payload


def test_mysql_decode_types() -> None:
    codec = mysql_text_codec([col("i", T.LONGLONG, 63), col("d", T.NEWDECIMAL, 63, 2), col("f", T.DOUBLE, 63),
                              col("dt", T.DATETIME, 63), col("t", T.TIME, 63), col("dd", T.DATE, 63),
                              col("y", T.YEAR, 63)])
    assert codec.decode(0, b"-18446744073709551615") == -18446744073709551615
    assert codec.decode(1, b"-1.50") == Decimal("-1.50")
    assert codec.decode(2, b"1e-7") == 1e-7
    assert codec.decode(3, None) is None
    assert codec.decode(6, b"2024") == 2024


def test_mysql_temporal_order() -> None:
    codec = mysql_text_codec([col("dt", T.DATETIME, 63), col("t", T.TIME, 63), col("d", T.DATE, 63)])

    def ordered(column: int, values: list[bytes]) -> list[bytes]:
        return sorted(values, key=lambda v: codec.sort_key(column, codec.decode(column, v)))

    assert ordered(0, [b"2024-01-02 03:04:05.123", b"2024-01-02 03:04:05", b"2023-12-31 23:59:59.999",
                       b"0000-00-00 00:00:00"]) == [
        b"0000-00-00 00:00:00", b"2023-12-31 23:59:59.999", b"2024-01-02 03:04:05", b"2024-01-02 03:04:05.123"]
    assert ordered(1, [b"10:00:00", b"-01:00:00", b"-838:59:59.000000", b"9:00:00", b"100:00:00", b"-00:00:01"]) \
        == [b"-838:59:59.000000", b"-01:00:00", b"-00:00:01", b"9:00:00", b"10:00:00", b"100:00:00"]
    assert ordered(2, [b"2024-10-01", b"2024-09-30", b"0000-00-00"]) == [b"0000-00-00", b"2024-09-30", b"2024-10-01"]


def test_mysql_encode_refuses_non_numeric_column() -> None:
    codec = mysql_text_codec([col("s")])
    with pytest.raises(MergeError) as info:
        codec.encode(0, 3)
    assert info.value.entry is STATEMENT_UNSUPPORTED


# The servers' own outputs (MariaDB 10.11 `SELECT <double literal>` and AVG/SUM over doubles).
MARIADB_DOUBLES = [
    (1e15, "1e15"), (1e14, "100000000000000"), (123456789012345678e0, "1.2345678901234568e17"),
    (1e-7, "0.0000001"), (0.0001, "0.0001"), (0.00001, "0.00001"), (1.5, "1.5"),
    (0.1 + 0.2, "0.30000000000000004"), (-2.5e-10, "-0.00000000025"),
    (1.7976931348623157e308, "1.7976931348623157e308"), (100.0, "100"), (1e16, "1e16"),
    (12345678901234567e0, "1.2345678901234568e16"), (123456789012345.0, "123456789012345"),
    (1234567890123456.0, "1.234567890123456e15"), (1.2345678901234e-10, "0.00000000012345678901234"),
    (0.000123456789012345678, "0.00012345678901234567"), (1e-15, "0.000000000000001"), (1.5e-5, "0.000015"),
    (12345678901234.5, "12345678901234.5"), (1234567890123456.7, "1234567890123456.8"),
    (123456789012345.67, "123456789012345.67"), (1.2345e-20, "1.2345e-20"),
    (0.012345678901234567, "0.012345678901234567"), (1e-100, "1e-100"), (1.5e-300, "1.5e-300"), (1e100, "1e100"),
    (1.5e-3, "0.0015"), (1.2345678901234567e-15, "0.0000000000000012345678901234568"),
    (1.234567890123456e-14, "0.00000000000001234567890123456"),
    (12345678901234567e-30, "0.000000000000012345678901234567"), (-0.5, "-0.5"), (0.0, "0"), (-1.5e20, "-1.5e20"),
    (2e15, "2e15"), (5 / 3, "1.6666666666666667"),
]


@pytest.mark.parametrize(("value", "text"), MARIADB_DOUBLES)
def test_mysql_double_format(value: float, text: str) -> None:
    assert mysql_double_text(value) == text


def test_mysql_avg_of_float_column_is_double() -> None:
    # MariaDB: AVG/SUM of FLOAT values CAST(1.1 AS FLOAT), CAST(2.2 AS FLOAT) -> 1.6500000357627869, 3.3000000715255737
    f11 = struct.unpack("f", struct.pack("f", 1.1))[0]
    f22 = struct.unpack("f", struct.pack("f", 2.2))[0]
    codec = mysql_text_codec([col("avg", T.DOUBLE, 63, 31)])
    assert codec.encode(0, Quotient(f11 + f22, 2)) == b"1.6500000357627869"
    assert codec.encode(0, f11 + f22) == b"3.3000000715255737"


# --- PostgreSQL framing and types ------------------------------------------------------------------------------

def fields(*specs: tuple[int, int]) -> list[FieldDescription]:
    return [FieldDescription(f"c{i}", type_oid=oid, format=fmt) for i, (oid, fmt) in enumerate(specs)]


def test_pg_split_join_round_trip() -> None:
    codec = pg_codec(fields((pg.TEXT, 0), (pg.INT4, 0), (pg.BYTEA, 1)))
    values = (b"abc", None, b"")
    payload = DataRow(values).payload()  # the protocol layer's own encoder
    assert codec.split(payload) == list(values)
    assert codec.join(list(values)) == payload


TEXT_CASES = [
    (pg.INT2, b"-32768", -32768), (pg.INT4, b"42", 42), (pg.INT8, b"9223372036854775807", 9223372036854775807),
    (pg.OID, b"4294967295", 4294967295), (pg.NUMERIC, b"1.50", Decimal("1.50")), (pg.FLOAT8, b"NaN", None),
    (pg.FLOAT4, b"-Infinity", float("-inf")), (pg.BOOL, b"t", True), (pg.BOOL, b"f", False),
    (pg.BYTEA, b"\\x00ff", b"\x00\xff"), (pg.BYTEA, b"a\\\\b\\000", b"a\\b\x00"),
    (pg.UUID, b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", bytes.fromhex("a0eebc999c0b4ef8bb6d6bb9bd380a11")),
    (pg.DATE, b"2000-01-01", 0), (pg.DATE, b"2000-03-01", 60), (pg.DATE, b"1999-12-31", -1),
    (pg.TIME, b"01:00:00.5", 3_600_500_000), (pg.TIMESTAMP, b"2000-01-02 00:00:01", 86_401_000_000),
    (pg.TIMESTAMPTZ, b"2000-01-01 05:30:00+05:30", 0), (pg.TIMESTAMPTZ, b"1999-12-31 16:00:00-08", 0),
    (pg.TEXT, "é".encode(), "é".encode()),
]


@pytest.mark.parametrize(("oid", "text", "value"), TEXT_CASES)
def test_pg_text_decode(oid: int, text: bytes, value: object) -> None:
    codec = pg_codec(fields((oid, 0)))
    decoded = codec.decode(0, text)
    if value is None:
        assert decoded != decoded  # NaN
    else:
        assert decoded == value


BINARY_CASES = [
    (pg.INT2, struct.pack("!h", -5), -5), (pg.INT4, struct.pack("!i", 7), 7), (pg.INT8, struct.pack("!q", -9), -9),
    (pg.FLOAT4, struct.pack("!f", 1.5), 1.5), (pg.FLOAT8, struct.pack("!d", -2.25), -2.25),
    (pg.BOOL, b"\x01", True), (pg.DATE, struct.pack("!i", -1), -1), (pg.TIMESTAMP, struct.pack("!q", 5), 5),
    (pg.TIMESTAMPTZ, struct.pack("!q", 5), 5), (pg.TIME, struct.pack("!q", 5), 5),
    (pg.NUMERIC, bytes.fromhex("0003000140000008270f270f270f"), Decimal("-99999999.99990000")),
]


@pytest.mark.parametrize(("oid", "data", "value"), BINARY_CASES)
def test_pg_binary_decode(oid: int, data: bytes, value: object) -> None:
    assert pg_codec(fields((oid, 1))).decode(0, data) == value


def test_pg_dates_bc_and_infinity_order() -> None:
    codec = pg_codec(fields((pg.DATE, 0), (pg.TIMESTAMP, 0)))
    dates = [b"infinity", b"2024-01-01", b"0001-01-01", b"0001-12-31 BC", b"0044-03-15 BC", b"-infinity",
             b"10000-01-01"]
    ordered = sorted(dates, key=lambda v: codec.sort_key(0, codec.decode(0, v)))
    assert ordered == [b"-infinity", b"0044-03-15 BC", b"0001-12-31 BC", b"0001-01-01", b"2024-01-01",
                       b"10000-01-01", b"infinity"]
    assert codec.decode(0, b"0001-01-01") - codec.decode(0, b"0001-12-31 BC") == 1
    stamps = [b"2024-01-01 00:00:00.000001", b"2024-01-01 00:00:00", b"0001-01-01 00:00:00 BC"]
    assert sorted(stamps, key=lambda v: codec.decode(1, v)) == [stamps[2], stamps[1], stamps[0]]


def test_pg_sort_keys_nan_and_bpchar() -> None:
    codec = pg_codec(fields((pg.FLOAT8, 0), (pg.NUMERIC, 0), (pg.BPCHAR, 0)))

    def key(column: int, text: bytes) -> object:
        return codec.sort_key(column, codec.decode(column, text))

    floats = [b"NaN", b"Infinity", b"1", b"-Infinity"]
    assert sorted(floats, key=lambda v: key(0, v)) == [b"-Infinity", b"1", b"Infinity", b"NaN"]
    assert key(0, b"NaN") == key(0, b"NaN")
    numerics = [b"NaN", b"Infinity", b"1.0", b"-Infinity", b"0.5"]
    assert sorted(numerics, key=lambda v: key(1, v)) == [b"-Infinity", b"0.5", b"1.0", b"Infinity", b"NaN"]
    assert key(1, b"1.0") == key(1, b"1.00")  # equal numerics group together whatever their scale
    assert key(2, b"ab  ") == key(2, b"ab")
    assert key(2, b"ab") < key(2, b"ab\x01")  # code point order (C collation), padding ignored


def test_pg_text_is_code_point_order() -> None:
    codec = pg_codec(fields((pg.TEXT, 0)))
    words = ["b", "B", "a", "é", "z", "😀", "\uffff", ""]
    ordered = sorted(words, key=lambda w: codec.sort_key(0, codec.decode(0, w.encode())))
    assert ordered == sorted(words)  # Python's str order is code point order


def test_pg_unknown_type_compares_bytes_but_is_not_encoded() -> None:
    codec = pg_codec([FieldDescription("iv", type_oid=1186)])  # interval
    assert codec.sort_key(0, codec.decode(0, b"1 day")) == b"1 day"
    with pytest.raises(MergeError) as info:
        codec.encode(0, 1)
    assert "type oid 1186" in info.value.message


# The servers' own outputs (PostgreSQL 15: SELECT <literal>::float8 / ::float4).
PG_FLOAT8 = [
    (1e15, "1e+15"), (1e14, "100000000000000"), (0.0001, "0.0001"), (0.00001, "1e-05"),
    (123456789012345678.0, "1.2345678901234568e+17"), (1234567890123456.7, "1.2345678901234568e+15"),
    (1e100, "1e+100"), (1.5e-300, "1.5e-300"), (float("nan"), "NaN"), (float("-inf"), "-Infinity"),
    (0.1 + 0.2, "0.30000000000000004"), (-0.0, "-0"), (1e20, "1e+20"), (5e19, "5e+19"),
]
PG_FLOAT4 = [
    (1.1, "1.1"), (16777217.0, "1.6777216e+07"), (1e10, "1e+10"), (1.5e-5, "1.5e-05"), (3.4e38, "3.4e+38"),
    (1.5e6, "1.5e+06"), (123456.0, "123456"), (1234567.0, "1.234567e+06"), (0.0001, "0.0001"), (0.00001, "1e-05"),
    (12345.678, "12345.678"), (100000.0, "100000"), (1000000.0, "1e+06"), (2.75, "2.75"),
]


@pytest.mark.parametrize(("value", "text"), PG_FLOAT8)
def test_pg_float8_format(value: float, text: str) -> None:
    assert pg_float_text(value) == text
    assert pg_codec(fields((pg.FLOAT8, 0))).encode(0, value) == text.encode()


@pytest.mark.parametrize(("value", "text"), PG_FLOAT4)
def test_pg_float4_format(value: float, text: str) -> None:
    assert pg_codec(fields((pg.FLOAT4, 0))).encode(0, value) == text.encode()


# The servers' own outputs: encode(numeric_send(x), 'hex') on PostgreSQL 15.
PG_NUMERIC_BINARY = [
    ("0", "0000000000000000"), ("1.5", "000200000000000100011388"), ("-0.0001", "0001ffff400000040001"),
    ("12345678.9", "000300010000000104d2162e2328"), ("1e20", "00010005000000000001"),
    ("-99999999.99990000", "0003000140000008270f270f270f"), ("0.00000001", "0001fffe000000080001"),
    ("0.00", "0000000000000002"), ("NaN", "00000000c0000000"),
]


@pytest.mark.parametrize(("text", "data"), PG_NUMERIC_BINARY)
def test_pg_numeric_binary(text: str, data: str) -> None:
    value = Decimal(text) if text != "1e20" else Decimal("100000000000000000000")
    assert pg_numeric_to_binary(value).hex() == data
    decoded = pg_numeric_from_binary(bytes.fromhex(data))
    if text == "NaN":
        assert decoded.is_nan()
    else:
        assert decoded == value
        assert scale_of(decoded) == scale_of(value)  # the display scale survives the round trip


def test_pg_binary_encode_of_aggregates() -> None:
    codec = pg_codec(fields((pg.INT8, 1), (pg.NUMERIC, 1), (pg.FLOAT8, 1)))
    assert codec.encode(0, 12) == struct.pack("!q", 12)
    assert codec.encode(1, Quotient(5, 3)) == pg_numeric_to_binary(Decimal("1.6666666666666667"))
    assert codec.encode(2, Quotient(5.0, 2)) == struct.pack("!d", 2.5)
