"""Row codec for MySQL/MariaDB text-protocol rows: length-encoded strings, 0xFB for NULL."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from dbmesh.kernel.merge.base import unsupported
from dbmesh.kernel.merge.collation import Collation, mysql_collation
from dbmesh.kernel.merge.numeric import EXACT, Quotient, divide, mysql_decimal_text, mysql_double_text
from dbmesh.protocol.mysql.constants import BINARY_FLAG, ColumnType
from dbmesh.protocol.mysql.packets import ColumnDefinition41

ENUM_FLAG = 0x100
SET_FLAG = 0x800

_INTEGER = frozenset({ColumnType.TINY, ColumnType.SHORT, ColumnType.LONG, ColumnType.INT24, ColumnType.LONGLONG,
                      ColumnType.YEAR})
_DECIMAL = frozenset({ColumnType.DECIMAL, ColumnType.NEWDECIMAL})
_FLOAT = frozenset({ColumnType.FLOAT, ColumnType.DOUBLE})
_STRING = frozenset({ColumnType.VARCHAR, ColumnType.VAR_STRING, ColumnType.STRING, ColumnType.TINY_BLOB,
                     ColumnType.MEDIUM_BLOB, ColumnType.LONG_BLOB, ColumnType.BLOB})
_DATE = frozenset({ColumnType.DATE, ColumnType.DATETIME, ColumnType.TIMESTAMP})

_DATETIME = re.compile(rb"(\d+)-(\d+)-(\d+)(?:[ T](\d+):(\d+):(\d+)(?:\.(\d*))?)?")
_TIME = re.compile(rb"(-?)(\d+):(\d+):(\d+)(?:\.(\d*))?")


def _decimal(field: bytes) -> Decimal:
    return Decimal(field.decode())


def _micros(fraction: bytes | None) -> int:
    return int(fraction.ljust(6, b"0")[:6]) if fraction else 0


def _decode_datetime(field: bytes) -> tuple[int, ...]:
    match = _DATETIME.fullmatch(field)
    if match is None:
        raise unsupported("DATE/DATETIME value", f"cannot read {field[:40]!r}")
    parts = [int(p) if p else 0 for p in match.groups()[:6]]
    return (*parts, _micros(match.group(7)))


def _decode_time(field: bytes) -> int:
    """A TIME as signed microseconds ('-838:59:59.000000' .. '838:59:59.000000')."""
    match = _TIME.fullmatch(field)
    if match is None:
        raise unsupported("TIME value", f"cannot read {field[:40]!r}")
    sign, hours, minutes, seconds, fraction = match.groups()
    total = ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1_000_000 + _micros(fraction)
    return -total if sign else total


def _read_lenenc(payload: bytes, pos: int) -> tuple[int, int]:
    first = payload[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFC:
        return payload[pos + 1] | payload[pos + 2] << 8, pos + 3
    if first == 0xFD:
        return payload[pos + 1] | payload[pos + 2] << 8 | payload[pos + 3] << 16, pos + 4
    if first == 0xFE:
        return struct.unpack_from("<Q", payload, pos + 1)[0], pos + 9
    raise unsupported("MySQL row", f"invalid length prefix 0x{first:02x}")


def _lenenc_prefix(length: int) -> bytes:
    if length < 0xFB:
        return bytes((length,))
    if length < 1 << 16:
        return b"\xfc" + struct.pack("<H", length)
    if length < 1 << 24:
        return b"\xfd" + struct.pack("<I", length)[:3]
    return b"\xfe" + struct.pack("<Q", length)


class MySQLTextCodec:
    """Decodes and encodes the fields of one text-protocol result (see RowCodec)."""

    __slots__ = ("_collations", "_decoders", "columns", "count")

    def __init__(self, columns: Sequence[ColumnDefinition41]) -> None:
        self.columns = tuple(columns)
        self.count = len(self.columns)
        self._collations: dict[int, Collation] = {}
        self._decoders: list[Callable[[bytes], Any]] = [self._decoder(c) for c in self.columns]

    # --- framing -------------------------------------------------------------------------------------------------
    def split(self, payload: bytes) -> list[bytes | None]:
        fields: list[bytes | None] = []
        pos = 0
        end = len(payload)
        while pos < end:
            if payload[pos] == 0xFB:
                fields.append(None)
                pos += 1
                continue
            length, pos = _read_lenenc(payload, pos)
            fields.append(payload[pos:pos + length])
            pos += length
        return fields

    def join(self, fields: Sequence[bytes | None]) -> bytes:
        out = []
        for field in fields:
            if field is None:
                out.append(b"\xfb")
            else:
                out.append(_lenenc_prefix(len(field)))
                out.append(field)
        return b"".join(out)

    # --- values --------------------------------------------------------------------------------------------------
    def _decoder(self, column: ColumnDefinition41) -> Callable[[bytes], Any]:
        kind = column.type
        if kind in _INTEGER:
            return int
        if kind in _DECIMAL:
            return _decimal
        if kind in _FLOAT:
            return float
        if kind in _DATE:
            return _decode_datetime
        if kind == ColumnType.TIME:
            return _decode_time
        # Strings stay bytes: their collation is resolved on first comparison, so a result with an unknown
        # collation fails only when one of its strings must be compared.
        return bytes

    def decode(self, column: int, field: bytes | None) -> Any:
        if field is None:
            return None
        return self._decoders[column](field)

    def sort_key(self, column: int, value: Any) -> Any:
        definition = self.columns[column]
        kind = definition.type
        if kind in _STRING:
            if definition.flags & (ENUM_FLAG | SET_FLAG):
                # ENUM/SET sort by their position in the type definition, which a result does not carry.
                raise unsupported(f"ordering or grouping by ENUM/SET column {definition.name!r}",
                                  "the server orders these by definition index")
            collation = self._collation(column)
            if collation.encoding is None:
                return value
            return collation.key(value.decode(collation.encoding, "surrogateescape"))
        if kind in (ColumnType.JSON, ColumnType.GEOMETRY):
            raise unsupported(f"ordering or grouping by {ColumnType(kind).name} column {definition.name!r}",
                              "values of this type do not compare as their text")
        return value

    def _collation(self, column: int) -> Collation:
        collation = self._collations.get(column)
        if collation is None:
            definition = self.columns[column]
            collation = mysql_collation(definition.charset, bool(definition.flags & BINARY_FLAG))
            self._collations[column] = collation
        return collation

    def encode(self, column: int, value: Any) -> bytes | None:
        if value is None:
            return None
        definition = self.columns[column]
        kind = definition.type
        if kind in _INTEGER and not isinstance(value, Quotient):
            return str(int(value)).encode()
        if kind in _DECIMAL:
            if isinstance(value, Quotient):  # AVG: the exact quotient rounded half up to the column's decimals
                return mysql_decimal_text(divide(EXACT.create_decimal(value.dividend), value.divisor,
                                                 definition.decimals), definition.decimals).encode()
            decimal = value if isinstance(value, Decimal) else EXACT.create_decimal(value)
            return mysql_decimal_text(decimal, definition.decimals).encode()
        if kind in _FLOAT:
            if isinstance(value, Quotient):
                value = float(value.dividend) / value.divisor
            return mysql_double_text(float(value)).encode()
        raise unsupported(f"an aggregate of {_type_name(kind)} column {definition.name!r}",
                          "only numeric aggregate results are computed")

    def aggregatable(self, column: int) -> str | None:
        """'int', 'decimal' or 'float' for numeric columns, else None."""
        kind = self.columns[column].type
        if kind in _INTEGER:
            return "int"
        if kind in _DECIMAL:
            return "decimal"
        if kind in _FLOAT:
            return "float"
        return None

    def type_name(self, column: int) -> str:
        return _type_name(self.columns[column].type)


def _type_name(kind: int) -> str:
    try:
        return ColumnType(kind).name
    except ValueError:
        return f"type {kind}"


def mysql_text_codec(columns: Sequence[ColumnDefinition41]) -> MySQLTextCodec:
    """The codec of a MySQL text-protocol result with these column definitions."""
    return MySQLTextCodec(columns)
