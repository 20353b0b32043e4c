"""Row codec for PostgreSQL DataRow bodies, text or binary per column, for the built-in types a merge compares
or aggregates; text compares in code point order (the C / C.UTF-8 collation the data sources use)."""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from dbmesh.kernel.merge.base import unsupported
from dbmesh.kernel.merge.numeric import (
    EXACT,
    Quotient,
    divide,
    pg_div_scale,
    pg_float_text,
    pg_numeric_from_binary,
    pg_numeric_text,
    pg_numeric_to_binary,
    to_float32,
)
from dbmesh.protocol.postgresql.messages import FieldDescription

BOOL, BYTEA, NAME, INT8, INT2, INT4, TEXT, OID = 16, 17, 19, 20, 21, 23, 25, 26
FLOAT4, FLOAT8, BPCHAR, VARCHAR, DATE, TIME, TIMESTAMP, TIMESTAMPTZ = 700, 701, 1042, 1043, 1082, 1083, 1114, 1184
NUMERIC, UUID = 1700, 2950

TYPE_NAMES = {
    BOOL: "boolean", BYTEA: "bytea", NAME: "name", INT8: "bigint", INT2: "smallint", INT4: "integer",
    TEXT: "text", OID: "oid", FLOAT4: "real", FLOAT8: "double precision", BPCHAR: "character",
    VARCHAR: "character varying", DATE: "date", TIME: "time", TIMESTAMP: "timestamp",
    TIMESTAMPTZ: "timestamp with time zone", NUMERIC: "numeric", UUID: "uuid",
}
_INTEGERS = {INT2: "!h", INT4: "!i", INT8: "!q", OID: "!I"}

# Dates as days and timestamps as microseconds since 2000-01-01, PostgreSQL's own epoch; infinities are beyond
# every finite value.
_INFINITY = 1 << 80
_DAY_MICROS = 86_400_000_000
_DATE_TEXT = re.compile(r"(\d+)-(\d+)-(\d+)")
_TIME_TEXT = re.compile(r"(\d+):(\d+):(\d+)(?:\.(\d+))?")
_TIMESTAMP_TEXT = re.compile(r"(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)(?:\.(\d+))?(?:([+-])(\d+)(?::(\d+))?(?::(\d+))?)?"
                             r"( BC)?")


def _days(year: int, month: int, day: int) -> int:
    """Days since 2000-01-01 of a proleptic Gregorian date with an astronomical year (1 BC = year 0)."""
    # Days-from-civil: shift the year to start in March so the leap day is last.
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468 - 10957  # 719468: 0000-03-01 to 1970-01-01; 10957: 1970 to 2000


def _micros_text(fraction: str | None) -> int:
    return int(fraction.ljust(6, "0")[:6]) if fraction else 0


def _date_text(field: bytes) -> int:
    text = field.decode()
    if text == "infinity":
        return _INFINITY
    if text == "-infinity":
        return -_INFINITY
    match = _DATE_TEXT.match(text)
    if match is None:
        raise unsupported("date value", f"cannot read {text[:40]!r} (DateStyle must be ISO)")
    year = int(match.group(1))
    if text.endswith(" BC"):
        year = 1 - year
    return _days(year, int(match.group(2)), int(match.group(3)))


def _time_text(field: bytes) -> int:
    match = _TIME_TEXT.fullmatch(field.decode())
    if match is None:
        raise unsupported("time value", f"cannot read {field[:40]!r}")
    hours, minutes, seconds, fraction = match.groups()
    return ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1_000_000 + _micros_text(fraction)


def _timestamp_text(field: bytes) -> int:
    text = field.decode()
    if text == "infinity":
        return _INFINITY
    if text == "-infinity":
        return -_INFINITY
    match = _TIMESTAMP_TEXT.fullmatch(text)
    if match is None:
        raise unsupported("timestamp value", f"cannot read {text[:40]!r} (DateStyle must be ISO)")
    g = match.groups()
    year = int(g[0])
    if g[11]:
        year = 1 - year
    micros = _days(year, int(g[1]), int(g[2])) * _DAY_MICROS
    micros += ((int(g[3]) * 60 + int(g[4])) * 60 + int(g[5])) * 1_000_000 + _micros_text(g[6])
    if g[7]:  # a timestamptz's UTC offset: local = UTC + offset
        offset = (int(g[8]) * 60 + int(g[9] or 0)) * 60 + int(g[10] or 0)
        micros -= (offset if g[7] == "+" else -offset) * 1_000_000
    return micros


def _bytea_text(field: bytes) -> bytes:
    if field.startswith(b"\\x"):
        return bytes.fromhex(field[2:].decode())
    # bytea_output = 'escape': backslash-backslash and backslash-ooo (octal) escapes.
    out = bytearray()
    i = 0
    while i < len(field):
        byte = field[i]
        if byte == 0x5C:
            if field[i + 1] == 0x5C:
                out.append(0x5C)
                i += 2
            else:
                out.append(int(field[i + 1:i + 4], 8))
                i += 4
        else:
            out.append(byte)
            i += 1
    return bytes(out)


def _bool_text(field: bytes) -> bool:
    return field == b"t"


def _int_binary(fmt: str) -> Callable[[bytes], int]:
    return lambda field: int(struct.unpack(fmt, field)[0])


def _date_binary(field: bytes) -> int:
    days = int(struct.unpack("!i", field)[0])
    if days == 0x7FFFFFFF:
        return _INFINITY
    if days == -0x80000000:
        return -_INFINITY
    return days


def _timestamp_binary(field: bytes) -> int:
    micros = int(struct.unpack("!q", field)[0])
    if micros == 0x7FFFFFFFFFFFFFFF:
        return _INFINITY
    if micros == -0x8000000000000000:
        return -_INFINITY
    return micros


def _decoder(type_oid: int, binary: bool) -> Callable[[bytes], Any]:
    if type_oid in _INTEGERS:
        return _int_binary(_INTEGERS[type_oid]) if binary else int
    if type_oid == NUMERIC:
        return pg_numeric_from_binary if binary else (lambda field: Decimal(field.decode()))
    if type_oid == FLOAT8:
        return (lambda field: float(struct.unpack("!d", field)[0])) if binary else float
    if type_oid == FLOAT4:
        return (lambda field: float(struct.unpack("!f", field)[0])) if binary else float
    if type_oid == BOOL:
        return (lambda field: field != b"\x00") if binary else _bool_text
    if type_oid == DATE:
        return _date_binary if binary else _date_text
    if type_oid in (TIMESTAMP, TIMESTAMPTZ):
        return _timestamp_binary if binary else _timestamp_text
    if type_oid == TIME:
        return _int_binary("!q") if binary else _time_text
    if type_oid == BYTEA:
        return bytes if binary else _bytea_text
    if type_oid == UUID:
        return bytes if binary else (lambda field: bytes.fromhex(field.decode().replace("-", "")))
    # Text types compare by their UTF-8 bytes, which is code point order; unknown types by their bytes.
    return bytes


def _float_key(value: float) -> tuple[int, float] | tuple[int]:
    # PostgreSQL sorts NaN above every number, and NaN = NaN.
    return (1,) if math.isnan(value) else (0, value)


def _numeric_key(value: Decimal) -> tuple[int, Decimal] | tuple[int]:
    if value.is_nan():
        return (2,)
    if value.is_infinite():
        return (1,) if value > 0 else (-1,)
    return (0, value)


class PostgresCodec:
    """Decodes and encodes the fields of one PostgreSQL result (see RowCodec)."""

    __slots__ = ("_decoders", "count", "fields")

    def __init__(self, fields: Sequence[FieldDescription]) -> None:
        self.fields = tuple(fields)
        self.count = len(self.fields)
        self._decoders = [_decoder(f.type_oid, f.format == 1) for f in self.fields]

    def split(self, payload: bytes) -> list[bytes | None]:
        (count,) = struct.unpack_from("!H", payload)
        fields: list[bytes | None] = []
        pos = 2
        for _ in range(count):
            (length,) = struct.unpack_from("!i", payload, pos)
            pos += 4
            if length < 0:
                fields.append(None)
            else:
                fields.append(payload[pos:pos + length])
                pos += length
        return fields

    def join(self, fields: Sequence[bytes | None]) -> bytes:
        out = [struct.pack("!H", len(fields))]
        for field in fields:
            if field is None:
                out.append(b"\xff\xff\xff\xff")
            else:
                out.append(struct.pack("!i", len(field)))
                out.append(field)
        return b"".join(out)

    def decode(self, column: int, field: bytes | None) -> Any:
        if field is None:
            return None
        return self._decoders[column](field)

    def sort_key(self, column: int, value: Any) -> Any:
        type_oid = self.fields[column].type_oid
        if type_oid in (FLOAT4, FLOAT8):
            return _float_key(value)
        if type_oid == NUMERIC:
            return _numeric_key(value)
        if type_oid == BPCHAR:
            return value.rstrip(b" ")  # character(n) compares without its padding
        return value

    def encode(self, column: int, value: Any) -> bytes | None:
        if value is None:
            return None
        field = self.fields[column]
        type_oid = field.type_oid
        binary = field.format == 1
        if type_oid in (INT2, INT4, INT8) and not isinstance(value, Quotient):
            return struct.pack(_INTEGERS[type_oid], value) if binary else str(int(value)).encode()
        if type_oid == NUMERIC:
            if isinstance(value, Quotient):
                value = _numeric_quotient(value)
            decimal = value if isinstance(value, Decimal) else EXACT.create_decimal(value)
            if decimal.is_finite() and decimal.as_tuple().exponent > 0:  # type: ignore[operator]
                decimal = decimal.quantize(Decimal(1), context=EXACT)
            return pg_numeric_to_binary(decimal) if binary else pg_numeric_text(decimal).encode()
        if type_oid in (FLOAT4, FLOAT8):
            if isinstance(value, Quotient):
                value = float(value.dividend) / value.divisor
            number = float(value)
            if type_oid == FLOAT4:
                number = to_float32(number)
                return struct.pack("!f", number) if binary else pg_float_text(number, single=True).encode()
            return struct.pack("!d", number) if binary else pg_float_text(number).encode()
        raise unsupported(f"an aggregate of {self.type_name(column)} column {field.name!r}",
                          "only numeric aggregate results are computed")

    def type_name(self, column: int) -> str:
        type_oid = self.fields[column].type_oid
        return TYPE_NAMES.get(type_oid, f"type oid {type_oid}")

    def aggregatable(self, column: int) -> str | None:
        """'int', 'decimal' or 'float' for numeric columns, else None."""
        type_oid = self.fields[column].type_oid
        if type_oid in (INT2, INT4, INT8):
            return "int"
        if type_oid == NUMERIC:
            return "decimal"
        if type_oid in (FLOAT4, FLOAT8):
            return "float"
        return None


def _numeric_quotient(value: Quotient) -> Decimal:
    """numeric_div(sum, count) as PostgreSQL's AVG final functions compute it."""
    dividend = value.dividend if isinstance(value.dividend, Decimal) else EXACT.create_decimal(value.dividend)
    if not dividend.is_finite():
        return dividend
    return divide(dividend, value.divisor, pg_div_scale(dividend, Decimal(value.divisor)))


def pg_codec(fields: Sequence[FieldDescription]) -> PostgresCodec:
    """The codec of a PostgreSQL result with these RowDescription fields (per-column format codes)."""
    return PostgresCodec(fields)
