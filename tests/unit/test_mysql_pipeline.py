"""Pipelined commands on one MySQL backend connection: one write, responses delivered in order to their own sinks
whatever the chunking, and every waiting sink told when the connection is lost."""

from __future__ import annotations

import pytest

from dbmesh._wire.mysql_framing import RESPONSE_RESULT, build_packet
from dbmesh.backend.mysql_connection import MySQLBackendConnection
from dbmesh.config import DataSource
from dbmesh.protocol.mysql.constants import Capability


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Sink:
    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events
        self.data = b""
        self.lost: str | None = None

    def forward(self, data: bytes) -> None:
        self.data += data

    def response_done(self, conn: MySQLBackendConnection) -> None:
        self.events.append(f"{self.name} done")

    def backend_lost(self, conn: MySQLBackendConnection, detail: str) -> None:
        self.lost = detail
        self.events.append(f"{self.name} lost")


def _conn() -> tuple[MySQLBackendConnection, _Transport]:
    ds = DataSource(name="ds_0", protocol="mysql", host="h", port=3306, database="d", username="u", password="pw")
    conn = MySQLBackendConnection(ds, (int(Capability.DEPRECATE_EOF), 45), "d")
    transport = _Transport()
    conn.transport = transport  # type: ignore[assignment]
    return conn, transport


def _result(value: bytes) -> bytes:
    """A one-column, one-row text result set (DEPRECATE_EOF: ends with an OK-style EOF packet)."""
    column = b"\x03def\x01d\x01t\x01t\x01c\x01c\x0c\x2d\x00\xff\x00\x00\x00\xfd\x00\x00\x00\x00\x00"
    return b"".join((build_packet(b"\x01", 1), build_packet(column, 2), build_packet(bytes([len(value)]) + value, 3),
                     build_packet(b"\xfe\x00\x00\x02\x00\x00\x00", 4)))


def _error() -> bytes:
    return build_packet(b"\xff\x7a\x04#42S02Table 'd.t' doesn't exist", 1)


def _pipeline(n: int) -> tuple[MySQLBackendConnection, _Transport, list[_Sink], list[str]]:
    conn, transport = _conn()
    events: list[str] = []
    sinks = [_Sink(f"s{i}", events) for i in range(n)]
    conn.start_pipeline([(build_packet(b"\x03SELECT %d" % i, 0), RESPONSE_RESULT, s) for i, s in enumerate(sinks)])
    return conn, transport, sinks, events


def test_one_write_for_all_commands() -> None:
    _, transport, _, _ = _pipeline(3)
    assert transport.written == [b"".join(build_packet(b"\x03SELECT %d" % i, 0) for i in range(3))]


@pytest.mark.parametrize("chunk", [1, 2, 7, 13, 1000])
def test_responses_reach_their_own_sinks_in_order(chunk: int) -> None:
    conn, transport, sinks, events = _pipeline(3)
    responses = [_result(b"a"), _error(), _result(b"ccc")]
    stream = b"".join(responses)
    for pos in range(0, len(stream), chunk):
        conn.data_received(stream[pos:pos + chunk])
    assert [s.data for s in sinks] == responses
    assert events == ["s0 done", "s1 done", "s2 done"]
    assert not conn.busy and not conn.broken and not transport.closed


def test_a_lost_connection_tells_every_waiting_sink() -> None:
    conn, _, sinks, events = _pipeline(3)
    first = _result(b"a")
    conn.data_received(first + _result(b"b")[:5])
    conn.connection_lost(None)
    assert events == ["s0 done", "s1 lost", "s2 lost"]
    assert sinks[0].data == first and sinks[1].lost and sinks[2].lost


def test_bytes_after_the_last_response_break_the_connection() -> None:
    conn, transport, _, events = _pipeline(2)
    conn.data_received(_result(b"a") + _result(b"b") + b"\x01\x00\x00\x09")
    assert events == ["s0 done", "s1 done"]
    assert conn.broken and transport.closed


def test_a_closed_transport_fails_every_sink_at_once() -> None:
    conn, transport = _conn()
    transport.closed = True
    events: list[str] = []
    sinks = [_Sink(f"s{i}", events) for i in range(2)]
    conn.start_pipeline([(build_packet(b"\x03SELECT 1", 0), RESPONSE_RESULT, s) for s in sinks])
    assert events == ["s0 lost", "s1 lost"] and not conn.busy
