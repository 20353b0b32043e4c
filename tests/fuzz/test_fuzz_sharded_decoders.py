"""Decoders the sharded path added, fed hostile and random input: COM_STMT_EXECUTE parameters and COPY record
splitting. Malformed input gets the protocol error and nothing else; valid input decodes exactly."""

from __future__ import annotations

import struct
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbmesh import errors
from dbmesh.protocol.mysql.binary import decode_params, execute_payload
from dbmesh.protocol.mysql.constants import ColumnType

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=80), st.integers(0, 6), st.one_of(st.none(), st.binary(min_size=0, max_size=12)))
def test_execute_parameters_from_random_bytes(payload: bytes, count: int, types: bytes | None) -> None:
    try:
        values, bound = decode_params(payload, count, types)
    except errors.ProtocolError as exc:
        assert exc.entry is errors.PROTOCOL_MALFORMED
        return
    assert len(values) == count
    assert bound is None or len(bound) == 2 * count or count == 0


# An independent encoder of COM_STMT_EXECUTE parameters (from the protocol documentation).
_INTS = {ColumnType.TINY: ("b", "B"), ColumnType.SHORT: ("h", "H"), ColumnType.LONG: ("i", "I"),
         ColumnType.LONGLONG: ("q", "Q")}


def _lenenc(b: bytes) -> bytes:
    n = len(b)
    if n < 251:
        return bytes((n,)) + b
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n) + b
    return b"\xfd" + n.to_bytes(3, "little") + b


@st.composite
def _param(draw: Any) -> tuple[int, int, bytes | None, Any]:
    """(type, flags, encoded value or None for NULL, expected Python value)."""
    kind = draw(st.sampled_from(["null", "int", "uint", "double", "string", "decimal"]))
    if kind == "null":
        return ColumnType.NULL, 0, None, None
    if kind in ("int", "uint"):
        t = draw(st.sampled_from(list(_INTS)))
        fmt = _INTS[t][1 if kind == "uint" else 0]
        bits = struct.calcsize(fmt) * 8
        lo, hi = (0, (1 << bits) - 1) if kind == "uint" else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        v = draw(st.integers(lo, hi))
        return t, 0x80 if kind == "uint" else 0, struct.pack("<" + fmt, v), v
    if kind == "double":
        v = draw(st.floats(allow_nan=False))
        return ColumnType.DOUBLE, 0, struct.pack("<d", v), v
    if kind == "decimal":
        v = draw(st.decimals(allow_nan=False, allow_infinity=False, places=3))
        return ColumnType.NEWDECIMAL, 0, _lenenc(str(v).encode()), Decimal(str(v))
    text = draw(st.text(max_size=300))
    return ColumnType.VAR_STRING, 0, _lenenc(text.encode()), text


@FUZZ
@given(st.lists(_param(), max_size=8))
def test_execute_parameters_round_trip(params: list[tuple[int, int, bytes | None, Any]]) -> None:
    n = len(params)
    bitmap = bytearray((n + 7) // 8)
    for i, (_t, _f, enc, _v) in enumerate(params):
        if enc is None:
            bitmap[i // 8] |= 1 << (i % 8)
    types = b"".join(bytes((t, f)) for t, f, _e, _v in params)
    body = b"".join(e for _t, _f, e, _v in params if e is not None)
    payload = b"\x07\x00\x00\x00" + b"\x00" + b"\x01\x00\x00\x00" + (bytes(bitmap) + b"\x01" + types + body if n else b"")
    values, bound = decode_params(payload, n, None)
    assert values == [v for _t, _f, _e, v in params]
    # Re-addressed to another statement, the payload carries the same values and always its types.
    moved = execute_payload(b"\x17" + payload, n, bound, b"\x09\x00\x00\x00")
    assert moved[1:5] == b"\x09\x00\x00\x00"
    again, _ = decode_params(moved[1:], n, None)
    assert again == values
    if n:
        # A later execution that does not resend the types decodes with the remembered ones.
        later = b"\x07\x00\x00\x00\x00\x01\x00\x00\x00" + bytes(bitmap) + b"\x00" + body
        assert decode_params(later, n, bound)[0] == values


@pytest.mark.parametrize("cut", range(1, 12))
def test_truncated_parameters_are_a_protocol_error(cut: int) -> None:
    payload = b"\x07\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01" + bytes((ColumnType.LONGLONG, 0, ColumnType.VAR_STRING,
                                                                      0)) + struct.pack("<q", 5) + b"\x03abc"
    with pytest.raises(errors.ProtocolError):
        decode_params(payload[:-cut], 2, None)


def _feed_in_chunks(splitter: Any, data: bytes, cuts: list[int]) -> list[bytes]:
    """Feed `data` in chunks of the sizes `cuts` cycles through; the records that came out, in order."""
    out: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        out += splitter.feed(data[pos:pos + step])
        pos += step
        i += 1
    return out


def _csv_field(value: str | None) -> str:
    if value is None:
        return ""
    return '"' + value.replace('"', '""') + '"'


@FUZZ
@given(st.lists(st.lists(st.one_of(st.none(), st.text(alphabet="ab,\"\n\r\t\\ é", max_size=6)), min_size=1,
                         max_size=4), max_size=12),
       st.lists(st.integers(1, 7), min_size=1, max_size=30))
def test_copy_csv_records_survive_any_chunking(rows: list[list[str | None]], cuts: list[int]) -> None:
    from dbmesh.session.pg_sharded import _RecordSplitter, _split_record

    records = [(",".join(_csv_field(v) for v in row) + "\n").encode() for row in rows]
    data = b"".join(records)
    splitter = _RecordSplitter(csv_format=True)
    out = _feed_in_chunks(splitter, data, cuts)
    rest = splitter.finish()
    if rest is not None:
        out.append(rest)
    assert out == records
    for record, row in zip(out, rows, strict=True):
        assert _split_record(record, True, ",", "") == row


@FUZZ
@given(st.lists(st.lists(st.one_of(st.none(), st.text(alphabet="ab\t\\N é", max_size=5)), min_size=1,
                         max_size=4), max_size=12),
       st.lists(st.integers(1, 7), min_size=1, max_size=30))
def test_copy_text_records_survive_any_chunking(rows: list[list[str | None]], cuts: list[int]) -> None:
    from dbmesh.session.pg_sharded import _RecordSplitter, _split_record

    def escape(v: str | None) -> str:
        return "\\N" if v is None else v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    records = [("\t".join(escape(v) for v in row) + "\n").encode() for row in rows]
    data = b"".join(records)
    splitter = _RecordSplitter(csv_format=False)
    out = _feed_in_chunks(splitter, data, cuts)
    assert splitter.finish() is None
    assert out == records
    for record, row in zip(out, rows, strict=True):
        assert _split_record(record, False, "\t", "\\N") == row
