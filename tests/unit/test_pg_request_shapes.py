"""Request shapes a PostgreSQL session relays without taking them apart: MessageReader.request_kind, bind_statement
and rename_bind, in the Cython module and its pure-Python twin.

Each is checked against a reference written from the protocol description with the general reader (read() of
every message), so the shortcut recognises a request exactly when the general path would see that request.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbmesh._wire import pg_framing as cy
from dbmesh._wire import pypgframing as py

IMPLS = (cy, py)
impls = pytest.mark.parametrize("impl", IMPLS, ids=("cython", "python"))
FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def msg(t: str, payload: bytes) -> bytes:
    return t.encode() + struct.pack("!I", len(payload) + 4) + payload


QUERY = msg("Q", b"SELECT abalance FROM pgbench_accounts WHERE aid = 7;\x00")
BIND = msg("B", b"\x00P0_1\x00\x00\x00\x00\x01\x00\x00\x00\x017\x00\x00")
DESCRIBE_PORTAL = msg("D", b"P\x00")
EXECUTE = msg("E", b"\x00\x00\x00\x00\x00")
SYNC = msg("S", b"")
PARSE = msg("P", b"\x00SELECT abalance FROM pgbench_accounts WHERE aid = $1;\x00\x00\x00")


def reference_kind(data: bytes, max_message: int = py.DEFAULT_MAX_MESSAGE) -> int:
    """The shape from whole messages read one by one: what the session's general path would be given."""
    reader = py.MessageReader(max_message)
    reader.feed(data)
    messages = []
    try:
        while (m := reader.read()) is not None:
            messages.append(m)
    except py.FramingError:
        return 0
    if reader.buffered():
        return 0
    types = [t for t, _ in messages]
    if types == [ord("Q")]:
        return ord("Q")
    first = 1 if types[:2] == [ord("P"), ord("B")] else 0
    if len(messages) >= 3 + first and types[first] == ord("B") and types[-1] == ord("S") and all(
            t == ord("E") or (t == ord("D") and p[:1] == b"P") for t, p in messages[1 + first:-1]):
        return types[0]
    return 0


@impls
@pytest.mark.parametrize(("data", "kind"), [
    (QUERY, ord("Q")),
    (BIND + DESCRIBE_PORTAL + EXECUTE + SYNC, ord("B")),
    (BIND + EXECUTE + SYNC, ord("B")),
    (BIND + EXECUTE + EXECUTE + SYNC, ord("B")),
    (BIND + SYNC, 0),  # nothing executed: not the shape
    (BIND + msg("D", b"S\x00") + EXECUTE + SYNC, 0),  # Describe of a statement
    (BIND + msg("D", b"") + EXECUTE + SYNC, 0),
    (BIND + DESCRIBE_PORTAL + EXECUTE, 0),  # no Sync yet
    (BIND + EXECUTE + SYNC + QUERY, 0),  # more after the Sync
    (BIND + EXECUTE + SYNC[:-1], 0),
    (QUERY + QUERY, 0),
    (QUERY[:-1], 0),
    (PARSE + BIND + EXECUTE + SYNC, ord("P")),
    (PARSE + BIND + DESCRIBE_PORTAL + EXECUTE + SYNC, ord("P")),
    (PARSE + BIND + SYNC, 0),
    (PARSE + SYNC, 0),
    (PARSE + PARSE + BIND + EXECUTE + SYNC, 0),
    (PARSE + BIND[:-1], 0),
    (PARSE, 0),
    (msg("X", b""), 0),
    (b"", 0),
    (b"Q\x00\x00\x00\x03", 0),  # invalid length
    (SYNC, 0),
])
def test_request_kind(impl: Any, data: bytes, kind: int) -> None:
    assert impl.MessageReader().request_kind(data) == kind == reference_kind(data)


@impls
def test_request_kind_is_0_while_bytes_are_buffered(impl: Any) -> None:
    reader = impl.MessageReader()
    reader.feed(QUERY[:3])
    assert reader.request_kind(QUERY) == 0
    reader.feed(QUERY[3:])
    assert reader.read() is not None
    assert reader.request_kind(QUERY) == ord("Q")


@impls
def test_request_kind_respects_the_message_limit(impl: Any) -> None:
    limit = len(QUERY) - 5 - 1
    reader = impl.MessageReader(limit)
    assert reader.request_kind(QUERY) == 0  # the general path refuses it with FramingError
    reader.feed(QUERY)
    with pytest.raises(impl.FramingError):
        reader.read()
    assert impl.MessageReader(len(QUERY) - 5).request_kind(QUERY) == ord("Q")
    big = msg("E", b"\x00" + b"x" * 100)
    assert impl.MessageReader(50).request_kind(BIND + big + SYNC) == 0
    assert impl.MessageReader(len(PARSE) - 6).request_kind(PARSE + BIND + EXECUTE + SYNC) == 0
    small_parse, big_bind = msg("P", b"\x00x\x00\x00\x00"), msg("B", b"\x00" * 60)
    assert impl.MessageReader(20).request_kind(small_parse + big_bind + EXECUTE + SYNC) == 0
    assert impl.MessageReader(60).request_kind(small_parse + big_bind + EXECUTE + SYNC) == ord("P")


@impls
def test_bind_statement(impl: Any) -> None:
    assert impl.bind_statement(BIND + EXECUTE + SYNC) == b"P0_1"
    assert impl.bind_statement(msg("B", b"portal\x00\x00\x00\x00\x00\x00\x00\x00")) == b""
    assert impl.bind_statement(msg("B", b"portal\x00name")) is None  # no NUL after the name
    assert impl.bind_statement(msg("B", b"portal")) is None
    assert impl.bind_statement(msg("B", b"\x00x\x00")[:-1]) is None  # not whole
    assert impl.bind_statement(EXECUTE) is None
    # The NULs must be inside the Bind, not in the message after it.
    assert impl.bind_statement(msg("B", b"p") + msg("E", b"\x00\x00")) is None


@impls
def test_rename_bind(impl: Any) -> None:
    rest = DESCRIBE_PORTAL + EXECUTE + SYNC
    renamed = impl.rename_bind(BIND + rest, b"dbmesh_1f")
    assert renamed == msg("B", b"\x00dbmesh_1f\x00\x00\x00\x00\x01\x00\x00\x00\x017\x00\x00") + rest
    assert impl.rename_bind(BIND, b"") == msg("B", b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x017\x00\x00")
    assert impl.rename_bind(msg("B", b"por\x00\x00tail"), b"n") == msg("B", b"por\x00n\x00tail")
    with pytest.raises(impl.FramingError):
        impl.rename_bind(msg("B", b"portal"), b"x")
    with pytest.raises(impl.FramingError):
        impl.rename_bind(EXECUTE, b"x")


def reference_rename(data: bytes, name: bytes) -> bytes | None:
    """Rename as the general path does: read the Bind, partition its payload, frame it again."""
    reader = py.MessageReader()
    reader.feed(data)
    try:
        first = reader.read()
    except py.FramingError:
        return None
    if first is None or first[0] != ord("B"):
        return None
    portal, sep1, rest = first[1].partition(b"\x00")
    _old, sep2, tail = rest.partition(b"\x00")
    if not sep1 or not sep2:
        return None
    return py.build_message(ord("B"), portal + b"\x00" + name + b"\x00" + tail) + data[5 + len(first[1]):]


FRONTEND_TYPES = b"QBDESPCHXFd"


@st.composite
def frontend_stream(draw: Any) -> bytes:
    """Mostly well-formed client messages of the shapes above, with planted garbage."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        t = draw(st.sampled_from(FRONTEND_TYPES))
        if t == ord("B"):
            payload = draw(st.binary(max_size=6)) + b"\x00" + draw(st.binary(max_size=6)) + b"\x00" \
                + draw(st.binary(max_size=12))
        elif t == ord("D"):
            payload = draw(st.sampled_from((b"P\x00", b"S\x00", b"Pname\x00", b"", b"P")))
        else:
            payload = draw(st.binary(max_size=20))
        raw = bytes((t,)) + struct.pack("!I", len(payload) + 4) + payload
        if draw(st.integers(0, 15)) == 0:
            raw = raw[:draw(st.integers(0, len(raw)))] + draw(st.binary(max_size=5))
        parts.append(raw)
    return b"".join(parts)


@FUZZ
@given(frontend_stream(), st.integers(0, 40), st.binary(max_size=10))
def test_shapes_agree_with_the_reader_and_both_implementations(data: bytes, limit: int, name: bytes) -> None:
    name = name.replace(b"\x00", b"")
    for max_message in (limit, py.DEFAULT_MAX_MESSAGE):
        kind = cy.MessageReader(max_message).request_kind(data)
        assert kind == py.MessageReader(max_message).request_kind(data) == reference_kind(data, max_message)
    assert cy.bind_statement(data) == py.bind_statement(data)
    expected = reference_rename(data, name)
    for impl in IMPLS:
        if expected is None:
            assert impl.bind_statement(data) is None
            with pytest.raises(impl.FramingError):
                impl.rename_bind(data, name)
        else:
            assert impl.rename_bind(data, name) == expected
            assert impl.bind_statement(data) == data[5:].partition(b"\x00")[2].partition(b"\x00")[0]
