"""MySQL binary protocol values: COM_STMT_EXECUTE parameters decoded, and text-protocol rows re-encoded as binary
rows, byte for byte as the server would encode them (for prepared statements dbmesh answers itself).

>>> from dbmesh.protocol.mysql.packets import ColumnDefinition41
>>> cols = [ColumnDefinition41("a", ColumnType.LONG), ColumnDefinition41("b", ColumnType.DATETIME)]
>>> binary_row([b"7", b"2024-01-02 00:00:00"], cols).hex()
'00000700000004e8070102'
>>> inline_params("SELECT ? , '?' , ?", [1, "it's"], backslash_escapes=True)
"SELECT 1 , '?' , 'it''s'"
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from dbmesh import errors
from dbmesh.protocol.mysql.constants import UNSIGNED_FLAG, ColumnType
from dbmesh.protocol.mysql.packets import ColumnDefinition41, lenenc_bytes

_INT_SIZES = {ColumnType.TINY: 1, ColumnType.SHORT: 2, ColumnType.YEAR: 2, ColumnType.LONG: 4, ColumnType.INT24: 4,
              ColumnType.LONGLONG: 8}
_DATES = (ColumnType.DATE, ColumnType.DATETIME, ColumnType.TIMESTAMP)


def binary_row(fields: Sequence[bytes | None], columns: Sequence[ColumnDefinition41]) -> bytes:
    """A ProtocolBinary::ResultsetRow from a text row's field values."""
    n = len(fields)
    bitmap = bytearray((n + 9) // 8)
    out = []
    for i, (value, col) in enumerate(zip(fields, columns, strict=True)):
        if value is None:
            bitmap[(i + 2) // 8] |= 1 << ((i + 2) % 8)
            continue
        out.append(_binary_value(value, col))
    return b"\x00" + bytes(bitmap) + b"".join(out)


def _binary_value(text: bytes, col: ColumnDefinition41) -> bytes:
    t = col.type
    size = _INT_SIZES.get(ColumnType(t)) if t in _INT_SIZES else None
    if size is not None:
        return int(text).to_bytes(size, "little", signed=not col.flags & UNSIGNED_FLAG)
    if t == ColumnType.FLOAT:
        return struct.pack("<f", float(text))
    if t == ColumnType.DOUBLE:
        return struct.pack("<d", float(text))
    if t in _DATES:
        return _binary_datetime(text.decode())
    if t == ColumnType.TIME:
        return _binary_time(text.decode())
    return lenenc_bytes(text)


def _binary_datetime(text: str) -> bytes:
    date, _, time = text.partition(" ")
    y, m, d = (int(p) for p in date.split("-"))
    hh = mm = ss = us = 0
    if time:
        hms, _, frac = time.partition(".")
        hh, mm, ss = (int(p) for p in hms.split(":"))
        us = int(frac.ljust(6, "0")) if frac else 0
    if us:
        return b"\x0b" + struct.pack("<HBBBBBI", y, m, d, hh, mm, ss, us)
    if hh or mm or ss:
        return b"\x07" + struct.pack("<HBBBBB", y, m, d, hh, mm, ss)
    if y or m or d:
        return b"\x04" + struct.pack("<HBB", y, m, d)
    return b"\x00"


def _binary_time(text: str) -> bytes:
    negative = text.startswith("-")
    hms, _, frac = text.lstrip("-").partition(".")
    h, m, s = (int(p) for p in hms.split(":"))
    us = int(frac.ljust(6, "0")) if frac else 0
    days, h = divmod(h, 24)
    if us:
        return b"\x0c" + struct.pack("<BIBBBI", negative, days, h, m, s, us)
    if days or h or m or s:
        return b"\x08" + struct.pack("<BIBBB", negative, days, h, m, s)
    return b"\x00"


# -- COM_STMT_EXECUTE parameters -------------------------------------------------------------------------------


def decode_params(payload: bytes, count: int, previous_types: bytes | None) -> tuple[list[Any], bytes | None]:
    """Parameter values of a COM_STMT_EXECUTE payload (after the command byte) and the types that bound them.
    A payload that does not hold what it declares raises ProtocolError (PROTOCOL_MALFORMED), nothing else.

    Long data sent with COM_STMT_SEND_LONG_DATA is not supported here (the caller refuses it)."""
    try:
        return _decode_params(payload, count, previous_types)
    except errors.ProtocolError:
        raise
    except (IndexError, ValueError, struct.error, OverflowError, ArithmeticError) as exc:
        raise errors.ProtocolError(errors.PROTOCOL_MALFORMED,
                                   detail=f"COM_STMT_EXECUTE parameters: {type(exc).__name__}: {exc}") from exc


def _decode_params(payload: bytes, count: int, previous_types: bytes | None) -> tuple[list[Any], bytes | None]:
    if count == 0:
        return [], previous_types
    pos = 9  # statement id (4), flags (1), iteration count (4)
    bitmap_len = (count + 7) // 8
    bitmap = payload[pos:pos + bitmap_len]
    pos += bitmap_len
    new_bound = payload[pos]
    pos += 1
    types = previous_types
    if new_bound:
        types = payload[pos:pos + 2 * count]
        pos += 2 * count
    if types is None or len(types) != 2 * count:
        raise errors.ProtocolError(errors.PROTOCOL_MALFORMED, detail="COM_STMT_EXECUTE without parameter types")
    values: list[Any] = []
    for i in range(count):
        if bitmap[i // 8] & (1 << (i % 8)):
            values.append(None)
            continue
        t, flags = types[2 * i], types[2 * i + 1]
        value, pos = _param(payload, pos, t, bool(flags & 0x80))
        values.append(value)
    return values, types


def execute_payload(payload: bytes, count: int, types: bytes | None, statement_id: bytes) -> bytes:
    """A client's COM_STMT_EXECUTE payload (command byte included) re-addressed to another statement id, with the
    parameter types always bound (a statement prepared anew has not seen the client's earlier types)."""
    if count == 0:
        return payload[:1] + statement_id + payload[5:]
    bitmap_end = 10 + (count + 7) // 8
    new_bound = payload[bitmap_end]
    values = payload[bitmap_end + 1 + (2 * count if new_bound else 0):]
    if types is None:
        raise errors.ProtocolError(errors.PROTOCOL_MALFORMED, detail="COM_STMT_EXECUTE without parameter types")
    return payload[:1] + statement_id + payload[5:bitmap_end] + b"\x01" + types + values


def _param(p: bytes, pos: int, t: int, unsigned: bool) -> tuple[Any, int]:
    if t == ColumnType.NULL:
        return None, pos
    if t in _INT_SIZES:
        size = _INT_SIZES[ColumnType(t)]
        if len(p) < pos + size:
            raise ValueError("an integer parameter runs past the end of the packet")
        return int.from_bytes(p[pos:pos + size], "little", signed=not unsigned), pos + size
    if t == ColumnType.FLOAT:
        return struct.unpack_from("<f", p, pos)[0], pos + 4
    if t == ColumnType.DOUBLE:
        return struct.unpack_from("<d", p, pos)[0], pos + 8
    if t in _DATES:
        n = p[pos]
        parts = p[pos + 1:pos + 1 + n]
        pos += 1 + n
        if n == 0:
            return "0000-00-00 00:00:00", pos
        y, mo, d = struct.unpack_from("<HBB", parts)
        hh = mi = ss = us = 0
        if n >= 7:
            hh, mi, ss = parts[4], parts[5], parts[6]
        if n >= 11:
            us = struct.unpack_from("<I", parts, 7)[0]
        if t == ColumnType.DATE or n == 4:
            return datetime.date(y, mo, d), pos
        return datetime.datetime(y, mo, d, hh, mi, ss, us), pos
    if t == ColumnType.TIME:
        n = p[pos]
        parts = p[pos + 1:pos + 1 + n]
        pos += 1 + n
        if n == 0:
            return datetime.timedelta(0), pos
        neg, days, hh, mi, ss = struct.unpack_from("<BIBBB", parts)
        us = struct.unpack_from("<I", parts, 8)[0] if n >= 12 else 0
        delta = datetime.timedelta(days=days, hours=hh, minutes=mi, seconds=ss, microseconds=us)
        return (-delta if neg else delta), pos
    # Strings, decimals, blobs: length-encoded bytes.
    first = p[pos]
    if first < 0xFB:
        n, pos = first, pos + 1
    elif first == 0xFC:
        n, pos = int.from_bytes(p[pos + 1:pos + 3], "little"), pos + 3
    elif first == 0xFD:
        n, pos = int.from_bytes(p[pos + 1:pos + 4], "little"), pos + 4
    else:
        n, pos = int.from_bytes(p[pos + 1:pos + 9], "little"), pos + 9
    raw = p[pos:pos + n]
    if len(raw) != n:
        raise ValueError(f"a parameter of {n} bytes runs past the end of the packet")
    pos += n
    if t in (ColumnType.DECIMAL, ColumnType.NEWDECIMAL):
        return Decimal(raw.decode()), pos
    if t in (ColumnType.TINY_BLOB, ColumnType.MEDIUM_BLOB, ColumnType.LONG_BLOB, ColumnType.BLOB,
             ColumnType.GEOMETRY, ColumnType.BIT):
        try:
            return raw.decode("utf-8"), pos
        except UnicodeDecodeError:
            return raw, pos
    return raw.decode("utf-8", "replace"), pos


# -- placeholders to literals ------------------------------------------------------------------------------------


def sql_literal(value: Any, *, backslash_escapes: bool) -> str:
    """A value as a MySQL literal of the same meaning."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else "NULL"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return "X'" + value.hex() + "'"
    if isinstance(value, datetime.datetime):
        return "'" + value.isoformat(" ") + "'"
    if isinstance(value, datetime.date):
        return "'" + value.isoformat() + "'"
    if isinstance(value, datetime.timedelta):
        total = int(value.total_seconds())
        sign = "-" if total < 0 else ""
        total = abs(total)
        return f"'{sign}{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}'"
    text = str(value)
    if backslash_escapes:
        text = text.replace("\\", "\\\\")
    return "'" + text.replace("'", "''") + "'"


def inline_params(sql: str, params: Sequence[Any], *, backslash_escapes: bool) -> str:
    """Replace `?` placeholders (outside quotes and comments) with literals, in order."""
    out = []
    i = 0
    k = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\" and ch != "`" and backslash_escapes:
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i:j + 1])
            i = j + 1
        elif ch == "#" or (ch == "-" and sql.startswith("-- ", i)):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j])
            i = j
        elif ch == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j])
            i = j
        elif ch == "?":
            if k >= len(params):
                raise errors.ProtocolError(errors.PROTOCOL_MALFORMED, detail="more placeholders than parameters")
            out.append(sql_literal(params[k], backslash_escapes=backslash_escapes))
            k += 1
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)
