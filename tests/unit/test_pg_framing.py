"""The PostgreSQL framing layer: the Cython module and its pure-Python twin must behave identically and correctly."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from dbmesh._wire import pg_framing as cy
from dbmesh._wire import pypgframing as py

IMPLS = (cy, py)
impls = pytest.mark.parametrize("impl", IMPLS, ids=("cython", "python"))


def msg(t: str, payload: bytes) -> bytes:
    """Independent framing, straight from the protocol description."""
    return t.encode() + struct.pack("!I", len(payload) + 4) + payload


def startup(body: bytes) -> bytes:
    return struct.pack("!I", len(body) + 4) + body


def error(sqlstate: str, message: str = "boom", pad: int = 0) -> bytes:
    return msg("E", b"SERROR\x00VERROR\x00" + b"X" + b"y" * pad + b"\x00C" + sqlstate.encode() + b"\x00M"
               + message.encode() + b"\x00\x00")


def split_every(data: bytes, n: int) -> list[bytes]:
    return [data[i:i + n] for i in range(0, len(data), n)] or [b""]


# -- builders --------------------------------------------------------------------------------------------------------


@impls
def test_build_message(impl: Any) -> None:
    assert impl.build_message(ord("Q"), b"select 1\x00") == msg("Q", b"select 1\x00")
    assert impl.build_message(ord("S"), b"") == b"S\x00\x00\x00\x04"
    with pytest.raises(impl.FramingError):
        impl.build_message(256, b"")


@impls
def test_build_startup(impl: Any) -> None:
    assert impl.build_startup(struct.pack("!I", 80877103)) == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    with pytest.raises(impl.FramingError):
        impl.build_startup(b"abc")
    with pytest.raises(impl.FramingError):
        impl.build_startup(b"x" * 9997)
    assert len(impl.build_startup(b"x" * 9996)) == 10000


def test_framing_error_is_a_value_error_in_both() -> None:
    assert issubclass(cy.FramingError, ValueError) and issubclass(py.FramingError, ValueError)
    assert cy.MAX_STARTUP_PACKET == py.MAX_STARTUP_PACKET == 10000


# -- MessageReader ---------------------------------------------------------------------------------------------------


@impls
def test_reader_startup_then_typed(impl: Any) -> None:
    body = struct.pack("!I", 196608) + b"user\x00alice\x00\x00"
    stream = startup(body) + msg("Q", b"select 1\x00") + msg("X", b"")
    r = impl.MessageReader()
    for b in stream:  # byte by byte: nothing is returned early
        r.feed(bytes((b,)))
    assert r.read_startup() == body
    assert r.read() == (ord("Q"), b"select 1\x00")
    assert r.read() == (ord("X"), b"")
    assert r.read() is None
    assert r.buffered() == 0


@impls
def test_reader_partial(impl: Any) -> None:
    r = impl.MessageReader()
    data = msg("d", b"x" * 100)
    r.feed(data[:4])
    assert r.read() is None
    r.feed(data[4:50])
    assert r.read() is None
    assert r.buffered() == 50
    r.feed(data[50:])
    assert r.read() == (ord("d"), b"x" * 100)


@impls
@pytest.mark.parametrize("length", [0, 4, 7, 10001, 0xFFFFFFFF])
def test_reader_rejects_startup_lengths(impl: Any, length: int) -> None:
    r = impl.MessageReader()
    r.feed(struct.pack("!I", length))
    with pytest.raises(impl.FramingError):
        r.read_startup()


@impls
def test_reader_startup_limits_inclusive(impl: Any) -> None:
    r = impl.MessageReader()
    r.feed(startup(b"x" * 9996) + startup(b"abcd"))
    assert r.read_startup() == b"x" * 9996
    assert r.read_startup() == b"abcd"


@impls
@pytest.mark.parametrize("length", [0, 3])
def test_reader_rejects_short_message_lengths(impl: Any, length: int) -> None:
    r = impl.MessageReader()
    r.feed(b"Q" + struct.pack("!I", length))
    with pytest.raises(impl.FramingError):
        r.read()


@impls
def test_reader_max_message(impl: Any) -> None:
    r = impl.MessageReader(max_message=10)
    r.feed(msg("d", b"x" * 10))
    assert r.read() == (ord("d"), b"x" * 10)
    r.feed(b"d" + struct.pack("!I", 15))  # the header alone is enough to refuse
    with pytest.raises(impl.FramingError):
        r.read()
    big = impl.MessageReader()
    big.feed(b"d\xff\xff\xff\xff")
    with pytest.raises(impl.FramingError):
        big.read()


@impls
def test_reader_take_buffered(impl: Any) -> None:
    r = impl.MessageReader()
    r.feed(startup(struct.pack("!I", 80877103)) + b"\x16\x03\x01")
    assert r.read_startup() == struct.pack("!I", 80877103)
    assert r.buffered() == 3
    assert r.take_buffered() == b"\x16\x03\x01"
    assert r.buffered() == 0 and r.read() is None


@impls
def test_reader_many_messages_compacts(impl: Any) -> None:
    r = impl.MessageReader()
    one = msg("D", b"\x00\x01\x00\x00\x00\x03abc")
    r.feed(one * 20000)
    n = 0
    while r.read() is not None:
        n += 1
    assert n == 20000 and r.buffered() == 0


# -- BackendScanner --------------------------------------------------------------------------------------------------


def simple_query_response(rows: int = 2, status: bytes = b"I") -> bytes:
    out = msg("T", b"\x00\x01a\x00" + b"\x00" * 18)
    out += b"".join(msg("D", b"\x00\x01\x00\x00\x00\x011") for _ in range(rows))
    out += msg("C", f"SELECT {rows}".encode() + b"\x00")
    return out + msg("Z", status)


def state(s: Any) -> dict[str, Any]:
    return {k: getattr(s, k) for k in (
        "ready_count", "tx_status", "rows", "errors", "last_error_sqlstate", "copy_in", "copy_out", "copy_both",
        "parameter_status_changed", "notifications", "messages", "last_type", "last_command_tag",
        "protocol_error")} | {"mid": s.mid_message()}


@impls
@pytest.mark.parametrize("chunk", [1, 2, 5, 7, 64, 100000])
def test_scanner_simple_query(impl: Any, chunk: int) -> None:
    s = impl.BackendScanner()
    data = simple_query_response(3, b"T")
    consumed = sum(s.feed(c) for c in split_every(data, chunk))
    assert consumed == len(data)
    assert s.ready_count == 1 and s.tx_status == ord("T") and s.rows == 3
    assert s.last_command_tag == b"SELECT 3" and s.errors == 0 and not s.mid_message()
    assert s.messages == 6 and s.last_type == ord("Z")


@impls
@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_scanner_error_sqlstate(impl: Any, chunk: int) -> None:
    s = impl.BackendScanner()
    data = error("42P01") + msg("Z", b"E")
    for c in split_every(data, chunk):
        s.feed(c)
    assert s.errors == 1 and s.last_error_sqlstate == "42P01" and s.tx_status == ord("E")


@impls
def test_scanner_error_sqlstate_beyond_head(impl: Any) -> None:
    s = impl.BackendScanner()
    s.feed(error("42P01", pad=300))  # the C field starts after the 256 bytes kept
    assert s.errors == 1 and s.last_error_sqlstate == ""
    s.feed(error("23505", pad=200))
    assert s.errors == 2 and s.last_error_sqlstate == "23505"


@impls
def test_scanner_stops_at_target(impl: Any) -> None:
    s = impl.BackendScanner()
    s.target = 2
    first, second = simple_query_response(1), simple_query_response(2)
    stray = msg("N", b"SNOTICE\x00Mlate\x00\x00")
    data = first + second + stray
    assert s.feed(data) == len(first) + len(second)
    assert s.ready_count == 2 and s.rows == 3
    assert s.feed(stray) == 0  # still at the target: nothing more is accepted
    s.target = 0
    assert s.feed(stray) == len(stray)


@impls
def test_scanner_stops_at_target_across_chunks(impl: Any) -> None:
    s = impl.BackendScanner()
    s.target = 1
    data = simple_query_response(1) + b"garbage"
    total = 0
    for c in split_every(data, 3):
        total += s.feed(c)
    assert total == len(data) - len(b"garbage")


@impls
def test_scanner_flags(impl: Any) -> None:
    s = impl.BackendScanner()
    s.feed(msg("S", b"TimeZone\x00UTC\x00") + msg("A", b"\x00\x00\x00\x01ch\x00hi\x00")
           + msg("G", b"\x00\x00\x01\x00\x00"))
    assert s.parameter_status_changed and s.notifications == 1 and s.copy_in and not s.copy_out
    s.feed(msg("Z", b"I"))
    assert not s.copy_in and s.parameter_status_changed  # ParameterStatus is remembered until reset
    s.feed(msg("H", b"\x00\x00\x00") + msg("W", b"\x00\x00\x00"))
    assert s.copy_out and s.copy_both
    s.reset()
    assert state(s) == state(impl.BackendScanner())


@impls
def test_scanner_command_tag_limits(impl: Any) -> None:
    s = impl.BackendScanner()
    s.feed(msg("C", b"t" * 64 + b"\x00"))
    assert s.last_command_tag == b"t" * 64
    s.feed(msg("C", b"t" * 65 + b"\x00"))
    assert s.last_command_tag == b""
    s.feed(msg("C", b"INSERT 0 1"))  # no NUL: taken as is
    assert s.last_command_tag == b"INSERT 0 1"


@impls
def test_scanner_mid_message(impl: Any) -> None:
    s = impl.BackendScanner()
    data = simple_query_response(1)
    s.feed(data[:3])
    assert s.mid_message()
    s.feed(data[3:10])
    assert s.mid_message()
    s.feed(data[10:])
    assert not s.mid_message()


@impls
def test_scanner_bad_length(impl: Any) -> None:
    s = impl.BackendScanner()
    assert s.feed(b"Z\x00\x00\x00\x02rest") == 5
    assert s.protocol_error is not None
    assert s.feed(b"more") == 0


@impls
def test_scanner_empty_ready_for_query(impl: Any) -> None:
    s = impl.BackendScanner()
    s.feed(b"Z\x00\x00\x00\x04")
    assert s.ready_count == 1 and s.tx_status == 0


@pytest.mark.parametrize("chunk", [1, 4, 9, 50])
def test_scanner_twins_agree(chunk: int) -> None:
    data = (simple_query_response(2) + error("40001") + msg("Z", b"E") + msg("C", b"COPY 5\x00")
            + msg("S", b"a\x00b\x00") + msg("Z", b"I") + msg("D", b"\x00\x00") + b"Z\x00\x00")
    for target in (0, 1, 2, 3):
        a, b = cy.BackendScanner(), py.BackendScanner()
        a.target = b.target = target
        for c in split_every(data, chunk):
            assert a.feed(c) == b.feed(c)
            assert state(a) == state(b)
