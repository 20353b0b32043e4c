"""The MySQL framing layer: the Cython module and its pure-Python twin must behave identically and correctly.

Every test runs against both implementations (`impl`), and the property tests also compare them with each other.
"""

from __future__ import annotations

import os
import random
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbmesh.protocol.mysql.packets import OkPacket
from tests.fuzz.mysql_wire_gen import (
    CURSOR_EXISTS,
    FIELD_LIST,
    IMPL_IDS,
    IMPLS,
    MAX_CHUNK,
    MORE_RESULTS,
    ONE_PACKET,
    PREPARE,
    RESULT,
    ROWS,
    SIMPLE,
    Response,
    cut_points,
    responses,
    scan,
    scanner_state,
    split,
)

impls = pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
cy, py = IMPLS
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def frame(payload: bytes, seq: int) -> bytes:
    """Independent framing, straight from the protocol description, to check build_packet against."""
    out = bytearray()
    i = 0
    while True:
        chunk = payload[i * MAX_CHUNK:(i + 1) * MAX_CHUNK]
        out += struct.pack("<I", len(chunk))[:3] + bytes(((seq + i) & 0xFF,)) + chunk
        i += 1
        if len(chunk) < MAX_CHUNK:
            return bytes(out)


def read_all(reader: Any) -> list[tuple[bytes, int, int]]:
    out = []
    while (p := reader.read()) is not None:
        out.append((p, reader.seq, reader.last_seq))
    return out


# -- constants and builders -----------------------------------------------------------------------------------------


def test_both_implementations_export_the_same_constants() -> None:
    for name in ("MAX_PACKET_CHUNK", "RESPONSE_RESULT", "RESPONSE_PREPARE", "RESPONSE_SIMPLE", "RESPONSE_ROWS",
                 "RESPONSE_FIELD_LIST", "RESPONSE_ONE_PACKET"):
        assert getattr(cy, name) == getattr(py, name), name
    assert cy.MAX_PACKET_CHUNK == 0xFFFFFF
    assert issubclass(cy.FramingError, ValueError) and issubclass(py.FramingError, ValueError)


@impls
@pytest.mark.parametrize("length", [0, 1, 250, 0xFFFF, MAX_CHUNK - 1])
def test_build_packet_small(impl: Any, length: int) -> None:
    payload = os.urandom(length)
    assert impl.build_packet(payload, 7) == frame(payload, 7)
    assert impl.packet_count(length) == 1


@impls
@pytest.mark.parametrize("length,chunks", [(MAX_CHUNK, 2), (MAX_CHUNK + 1, 2), (2 * MAX_CHUNK, 3),
                                           (2 * MAX_CHUNK + 5, 3)])
def test_build_packet_continuations(impl: Any, length: int, chunks: int) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    wire = impl.build_packet(payload, 254)  # sequence ids wrap at 255
    assert wire == frame(payload, 254)
    assert impl.packet_count(length) == chunks
    assert len(wire) == length + 4 * chunks
    if length % MAX_CHUNK == 0:  # an exact multiple ends with an empty chunk
        assert wire[-4:] == b"\x00\x00\x00" + bytes(((254 + chunks - 1) & 0xFF,))


# -- lenenc ---------------------------------------------------------------------------------------------------------

LENENC_CASES = [
    (0, 1), (250, 1), (251, 3), (0xFFFF, 3), (0x10000, 4), (0xFFFFFF, 4), (0x1000000, 9), (2**64 - 1, 9),
]


@impls
@pytest.mark.parametrize("value,size", LENENC_CASES)
def test_lenenc_round_trip_at_boundaries(impl: Any, value: int, size: int) -> None:
    enc = impl.lenenc_int(value)
    assert len(enc) == size
    assert enc == cy.lenenc_int(value) == py.lenenc_int(value)
    expected_prefix = {1: None, 3: 0xFC, 4: 0xFD, 9: 0xFE}[size]
    if expected_prefix is not None:
        assert enc[0] == expected_prefix
    # Decoding in the middle of a buffer, followed by junk.
    data = b"xy" + enc + b"\xff\xff"
    assert impl.read_lenenc(data, 2) == (value, 2 + size)
    assert impl.read_lenenc(bytearray(data), 2) == (value, 2 + size)


@impls
@pytest.mark.parametrize("data,pos", [
    (b"", 0), (b"\x01", 1), (b"\xfb", 0), (b"\xff", 0), (b"\xfc\x01", 0), (b"\xfd\x01\x02", 0),
    (b"\xfe" + b"\x01" * 7, 0), (b"\x01", 2), (b"\x01", -1),
])
def test_read_lenenc_rejects_invalid_or_truncated(impl: Any, data: bytes, pos: int) -> None:
    with pytest.raises(impl.FramingError):
        impl.read_lenenc(data, pos)


@given(st.integers(0, 2**64 - 1))
@SETTINGS
def test_lenenc_round_trip_property(value: int) -> None:
    enc = cy.lenenc_int(value)
    assert enc == py.lenenc_int(value)
    for impl in IMPLS:
        assert impl.read_lenenc(enc, 0) == (value, len(enc))


# -- PacketReader ---------------------------------------------------------------------------------------------------


@impls
def test_reader_needs_the_whole_packet(impl: Any) -> None:
    wire = impl.build_packet(b"hello", 3)
    r = impl.PacketReader()
    for i, b in enumerate(wire):
        assert r.read() is None
        r.feed(bytes((b,)))
        assert r.buffered() == i + 1
    assert r.read() == b"hello"
    assert (r.seq, r.last_seq) == (3, 3)
    assert r.read() is None
    assert r.buffered() == 0


@impls
def test_reader_empty_payload(impl: Any) -> None:
    r = impl.PacketReader()
    r.feed(b"\x00\x00\x00\x09")
    assert r.read() == b""
    assert r.seq == r.last_seq == 9


@given(payloads=st.lists(st.tuples(st.binary(max_size=300), st.integers(0, 255)), min_size=1, max_size=8),
       cuts=st.lists(st.integers(0, 3000), max_size=20))
@SETTINGS
def test_reader_reassembles_any_chunking(payloads: list[tuple[bytes, int]], cuts: list[int]) -> None:
    wire = b"".join(frame(p, s) for p, s in payloads)
    expected = [(p, s, s) for p, s in payloads]
    results = []
    for impl in IMPLS:
        r = impl.PacketReader()
        got = []
        for chunk in split(wire, cuts):
            r.feed(chunk)
            got += read_all(r)
        assert got == expected
        assert r.buffered() == 0
        results.append(got)
    assert results[0] == results[1]


@impls
@pytest.mark.parametrize("length,chunks", [(MAX_CHUNK, 2), (2 * MAX_CHUNK + 5, 3)])
def test_reader_16mib_continuations(impl: Any, length: int, chunks: int) -> None:
    rnd = random.Random(length)
    payload = rnd.randbytes(length)
    wire = frame(payload, 250) + frame(b"next", 3)
    r = impl.PacketReader(max_payload=length)  # the limit applies to the reassembled payload: exactly at it is fine
    # Arbitrary cut points, including inside chunk headers of the continuation.
    cuts = sorted({rnd.randrange(len(wire)) for _ in range(20)} | {MAX_CHUNK + 4 + 2, MAX_CHUNK + 4 + 4})
    got = []
    for chunk in split(wire, cuts):
        r.feed(chunk)
        got += read_all(r)
    assert len(got) == 2
    assert got[0][0] == payload
    assert (got[0][1], got[0][2]) == (250, (250 + chunks - 1) & 0xFF)
    assert got[1] == (b"next", 3, 3)


@impls
def test_reader_max_payload_limit(impl: Any) -> None:
    r = impl.PacketReader(max_payload=100)
    r.feed(frame(b"a" * 100, 0))
    assert r.read() == b"a" * 100
    # Over the limit: refused as soon as the header is seen, without waiting for the payload.
    r.feed(struct.pack("<I", 101)[:3] + b"\x01")
    with pytest.raises(impl.FramingError, match="exceeds the limit"):
        r.read()


@impls
def test_reader_max_payload_counts_continuations(impl: Any) -> None:
    r = impl.PacketReader(max_payload=MAX_CHUNK + 10)
    # First chunk is full-size (continued); the second declares enough to break the limit.
    r.feed(b"\xff\xff\xff\x00" + bytes(MAX_CHUNK) + struct.pack("<I", 11)[:3] + b"\x01")
    with pytest.raises(impl.FramingError):
        r.read()


@impls
def test_take_buffered_returns_the_unread_bytes(impl: Any) -> None:
    r = impl.PacketReader()
    tls_hello = b"\x16\x03\x01\x02\x00" + os.urandom(40)
    r.feed(frame(b"A" * 32, 1) + tls_hello)
    assert r.read() == b"A" * 32
    assert r.buffered() == len(tls_hello)
    assert r.take_buffered() == tls_hello
    assert r.buffered() == 0
    assert r.take_buffered() == b""
    r.feed(frame(b"after", 3))
    assert r.read() == b"after"


@impls
def test_take_buffered_includes_a_partial_packet(impl: Any) -> None:
    r = impl.PacketReader()
    r.feed(frame(b"one", 0) + frame(b"two", 1)[:5])
    assert r.read() == b"one"
    assert r.read() is None
    assert r.take_buffered() == frame(b"two", 1)[:5]


# -- ResponseScanner: hand-written cases -------------------------------------------------------------------------


def check(resp: Response, chunks: list[bytes] | None = None, trailing: bytes = b"NEXT") -> None:
    wire, _ends, _ = resp.wire()
    data = wire + trailing
    chunks = chunks if chunks is not None else [data]
    states = []
    for impl in IMPLS:
        s, consumed = scan(impl, resp.kind, resp.deprecate_eof, chunks)
        assert consumed == len(wire), impl.__name__
        state = scanner_state(s)
        expected = resp.expected()
        expected["mid_packet"] = False
        assert state == expected, impl.__name__
        states.append(state)
    assert states[0] == states[1]


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_scanner_ok(deprecate_eof: bool) -> None:
    r = Response(RESULT, deprecate_eof)
    r.ok_result(2**64 - 1, 0x1000000, 0x0002, 3)
    check(r)


def test_scanner_ok_with_info_and_err() -> None:
    r = Response(SIMPLE, False)
    r.ok(1, 2, 0x4002, 0, b"Rows matched: 1  Changed: 1  Warnings: 0" * 3)
    check(r)
    r = Response(RESULT, False)
    r.err(1064, "You have an error in your SQL syntax")
    check(r)


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_scanner_result_set(deprecate_eof: bool) -> None:
    r = Response(RESULT, deprecate_eof)
    r.result_set(3, [b"\x011\x012\xfb", b"\x00\x00\x00", b"\xfc\x00\x01" + b"x" * 256 + b"\x00\xfb"], 0x0022, 1)
    check(r)


def test_scanner_row_starting_0xfe_is_not_eof() -> None:
    # Without DEPRECATE_EOF, 0xFE-first packets of 9 bytes or more are rows (an 8-byte lenenc follows).
    r = Response(RESULT, False)
    r.result_set(1, [b"\xfe" + struct.pack("<Q", 3) + b"abc", b"\xfe" + bytes(8)], 0x0002)
    check(r)


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_scanner_multi_results(deprecate_eof: bool) -> None:
    r = Response(RESULT, deprecate_eof)
    r.result_set(1, [b"\x011"], 0x0002 | MORE_RESULTS)
    r.ok_result(5, 7, 0x0002 | MORE_RESULTS, 0)
    r.result_set(2, [b"\x01a\x01b"] * 3, 0x0002 | MORE_RESULTS)
    r.ok_result(0, 0, 0x0002, 1)  # CALL ends with an OK without MORE_RESULTS
    check(r)


@pytest.mark.parametrize("deprecate_eof", [False, True])
@pytest.mark.parametrize("nparams,ncols", [(0, 0), (2, 0), (0, 3), (2, 3)])
def test_scanner_prepare(deprecate_eof: bool, nparams: int, ncols: int) -> None:
    r = Response(PREPARE, deprecate_eof)
    r.prepare_ok(0xDEADBEEF, nparams, ncols, warnings=1)
    check(r)


def test_scanner_prepare_error() -> None:
    r = Response(PREPARE, False)
    r.err(1146, "Table 'x.y' doesn't exist")
    check(r)


def test_scanner_cursor() -> None:
    r = Response(RESULT, False)
    r.cursor(2, 0x0002)
    check(r)
    # A FETCH afterwards: rows then an EOF (LAST_ROW_SENT).
    f = Response(ROWS, False)
    f.payloads += [b"\x00\x00\x01\x02", b"\x00\x00\x03\x04"]
    f.expect["rows"] = 2
    f.eof(0x0002 | CURSOR_EXISTS | 0x80)
    check(f)


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_scanner_err_mid_rows(deprecate_eof: bool) -> None:
    r = Response(RESULT, deprecate_eof)
    r.err_mid_rows(2, [b"\x01a\x01b", b"\x01c\x01d"], 1317)
    check(r)


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_scanner_field_list_and_one_packet(deprecate_eof: bool) -> None:
    r = Response(FIELD_LIST, deprecate_eof)
    r.column_defs(3)
    r.expect["rows"] = 3
    r.terminator(0x0002)
    check(r)
    r = Response(ONE_PACKET, deprecate_eof)
    r.payloads.append(b"Uptime: 12  Threads: 1  Questions: 3")
    check(r)
    r = Response(ONE_PACKET, deprecate_eof)
    r.eof(0x0002, 0)
    check(r)


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_scanner_byte_at_a_time_and_mid_packet(deprecate_eof: bool) -> None:
    r = Response(RESULT, deprecate_eof)
    r.result_set(2, [b"\x01a\x01b", b"\xfb\xfb"], 0x0002 | MORE_RESULTS)
    r.ok_result(1, 0, 0x0002)
    wire, ends, _ = r.wire()
    for impl in IMPLS:
        s = impl.ResponseScanner()
        s.start(RESULT, deprecate_eof)
        assert not s.mid_packet()
        for i in range(len(wire)):
            assert s.feed(wire[i:i + 1]) == 1
            assert s.mid_packet() == ((i + 1) not in ends), (impl.__name__, i)
            assert s.done == (i + 1 == len(wire))
        assert s.feed(b"more") == 0  # nothing more belongs to it


@pytest.mark.parametrize("deprecate_eof", [False, True])
@pytest.mark.parametrize("row_len", [MAX_CHUNK - 4 + 4, MAX_CHUNK + 100])
def test_scanner_rows_over_16mib(deprecate_eof: bool, row_len: int) -> None:
    """A row of exactly 0xFFFFFF bytes (empty trailing chunk) and one over it, whose lenenc starts with 0xFE."""
    big = b"\x02ab"  # a small first row
    # row_len payload bytes: a single column value whose lenenc header is sized for its length.
    value_len = row_len - (9 if row_len - 9 >= 0x1000000 else 4)
    row = cy.lenenc_int(value_len) + b"v" * value_len
    assert len(row) == row_len
    r = Response(RESULT, deprecate_eof)
    r.result_set(1, [big, row, b"\x01z"], 0x0002, 2)
    wire, ends, _ = r.wire()
    rnd = random.Random(row_len + deprecate_eof)
    # Cuts: random, plus inside the header of the continuation chunk and around each packet end.
    row_start = ends[-4]  # payloads: count, definition, [EOF], small row, big row, last row, terminator
    cuts = [rnd.randrange(len(wire)) for _ in range(8)] + [row_start + 4 + MAX_CHUNK + 2] + ends
    chunks = split(wire + b"tail", cuts)
    check(r, chunks, trailing=b"tail")
    # mid_packet: true at the boundary between the chunks of one logical packet.
    for impl in IMPLS:
        s = impl.ResponseScanner()
        s.start(RESULT, deprecate_eof)
        first = row_start + 4 + MAX_CHUNK
        assert s.feed(wire[:first]) == first
        assert s.mid_packet()
        assert not s.done


# -- ResponseScanner: generated responses in random chunkings -----------------------------------------------------


@given(resp=responses(), data=st.data())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_scanner_generated_responses(resp: Response, data: st.DataObject) -> None:
    wire, _ends, _ = resp.wire()
    stream = wire + data.draw(st.binary(max_size=10))
    chunks = split(stream, data.draw(cut_points(len(stream))))
    check(resp, chunks, trailing=stream[len(wire):])


@given(resp=responses(kind=RESULT), data=st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_scanner_mid_packet_at_every_prefix(resp: Response, data: st.DataObject) -> None:
    wire, ends, _ = resp.wire()
    cuts = sorted(set(data.draw(cut_points(len(wire)))))
    for impl in IMPLS:
        s = impl.ResponseScanner()
        s.start(resp.kind, resp.deprecate_eof)
        pos = 0
        for c in [c for c in cuts if 0 < c < len(wire)] + [len(wire)]:
            assert s.feed(wire[pos:c]) == c - pos
            pos = c
            assert s.mid_packet() == (c not in ends and c != 0)
            assert s.done == (c == len(wire))


def test_scanner_simple_rejects_a_result_set() -> None:
    for impl in IMPLS:
        s, _consumed = scan(impl, SIMPLE, False, [cy.build_packet(b"\x01", 1)])
        assert s.done and s.protocol_error == "expected OK or ERR"


def test_scanner_local_infile_waits_for_the_client_file() -> None:
    """0xFB + file name ends the server's turn (no protocol error); after the file, the final OK ends the response."""
    for impl in IMPLS:
        s, used = scan(impl, RESULT, False, [cy.build_packet(b"\xfb/etc/passwd", 1) + b"extra"])
        assert s.done and s.local_infile and s.protocol_error is None and used == 4 + 12
        s.infile_sent(4)  # file packets 2, 3 and the empty packet 4 went to the server
        assert not s.done and not s.local_infile and s.last_seq == 4
        s.feed(cy.build_packet(OkPacket(3, 0, 0x0002, 1, b"Records: 3").encode(), 5))
        assert s.done and not s.is_error and s.affected_rows == 3 and s.warnings == 1 and s.last_seq == 5


def test_scanner_prepare_with_an_empty_packet() -> None:
    """A zero-length first packet to COM_STMT_PREPARE is malformed: both report it (no exception)."""
    states = []
    for impl in IMPLS:
        s = impl.ResponseScanner()
        s.start(PREPARE, False)
        assert s.feed(b"\x00\x00\x00\x01") == 4
        assert s.done and s.protocol_error == "malformed COM_STMT_PREPARE response"
        states.append(scanner_state(s))
    assert states[0] == states[1]
