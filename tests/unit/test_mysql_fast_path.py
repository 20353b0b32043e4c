"""The one-data-source MySQL hot path: what it takes without the general dispatch must be what the general path does.

- `PacketReader.whole_command` (both framing implementations) says yes only for a read that is exactly one
  single-chunk command packet with sequence id 0 and an empty buffer.
- The plain-statement shape cache (SQL bytes less trailing digits -> classification) gives what quick_classify()
  gives for every text of that shape, and never takes a text quick_classify() would not.
- A session fed frames through the fast path sends the data source the same bytes, answers the client the same
  bytes and counts the same statement types as through the general path; what it cannot take falls back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbmesh._wire import pyframing
from dbmesh._wire.mysql_framing import PacketReader, build_packet
from dbmesh.backend.mysql_connection import MySQLBackendConnection, MySQLPool
from dbmesh.config import load_config
from dbmesh.observe.metrics import ROW_COUNT
from dbmesh.protocol.mysql.constants import Capability
from dbmesh.protocol.mysql.packets import ErrPacket, OkPacket
from dbmesh.server.mysql_frontend import MySQLFrontend
from dbmesh.server.runtime import Runtime
from dbmesh.session import mysql_session
from dbmesh.session.classify import classify, quick_classify
from dbmesh.session.mysql_session import MySQLSession, classify_cached
from tests.fuzz.mysql_wire_gen import IMPL_IDS, IMPLS, RESULT, SIMPLE, responses, scan, split
from tests.support.dbmesh_proc import make_dbmesh_config

READERS = [PacketReader, pyframing.PacketReader]
READER_IDS = ["cython", "python"]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- whole_command ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader_cls", READERS, ids=READER_IDS)
def test_whole_command_cases(reader_cls: Any) -> None:
    r = reader_cls(max_payload=100)
    assert r.whole_command(build_packet(b"\x03SELECT 1", 0))
    assert not r.whole_command(build_packet(b"\x03SELECT 1", 1))  # not the start of a command
    assert not r.whole_command(b"\x00\x00\x00\x00")  # empty payload
    assert not r.whole_command(build_packet(b"\x03SELECT 1", 0)[:-1])  # short
    assert not r.whole_command(build_packet(b"\x03SELECT 1", 0) + b"\x01")  # more than one packet
    assert not r.whole_command(build_packet(b"\x03" + b"x" * 100, 0))  # over max_payload
    assert r.whole_command(build_packet(b"\x03" + b"x" * 99, 0))  # exactly max_payload
    r.feed(b"\x05\x00")  # half a header is buffered: the next read continues it
    assert not r.whole_command(build_packet(b"\x03SELECT 1", 0))
    big = reader_cls(max_payload=1 << 26)
    chunk = b"\xff\xff\xff\x00" + b"x" * 0xFFFFFF  # a full chunk is continued by the next one: not whole
    assert not big.whole_command(chunk)


@pytest.mark.parametrize("reader_cls", READERS, ids=READER_IDS)
@SETTINGS
@given(data=st.binary(max_size=40), prefix=st.binary(max_size=6), limit=st.integers(1, 40))
def test_whole_command_agrees_with_read(reader_cls: Any, data: bytes, prefix: bytes, limit: int) -> None:
    r = reader_cls(max_payload=limit)
    r.feed(prefix) if prefix else None
    said = r.whole_command(data)
    if said:
        assert not prefix
        r.feed(data)
        assert r.read() == data[4:]
        assert r.seq == 0 and r.buffered() == 0
    elif not prefix and len(data) > 4 and data[3] == 0:
        # Anything refused is not one whole non-empty packet within the limit.
        fresh = reader_cls(max_payload=limit)
        fresh.feed(data)
        try:
            payload = fresh.read()
        except ValueError:
            return
        assert payload is None or payload == b"" or fresh.buffered() != 0


# -- the plain-statement shape cache ---------------------------------------------------------------------------------

_FRAGMENTS = ["SELECT ", "select ", "INSERT ", "UPDATE ", "DELETE ", "SHOW ", "c ", "FROM t ", "WHERE id=", ";", " ",
              "@", "@x", "lock", "LOCK ", "last_insert_id", "row_count()", "--", "-- x\n", "/*", "*/", "#", "é", "\u212a",
              "1", "23", "'a'", "(", ")", "xa", "Xa", "prepare", "\t", "\n", "found_rows"]


@pytest.fixture
def fresh_caches() -> Iterator[None]:
    saved = (dict(mysql_session._PLAIN_SHAPES), dict(mysql_session._FAST_QUERIES))
    mysql_session._PLAIN_SHAPES.clear()
    yield
    mysql_session._PLAIN_SHAPES.clear()
    mysql_session._PLAIN_SHAPES.update(saved[0])
    mysql_session._FAST_QUERIES.clear()
    mysql_session._FAST_QUERIES.update(saved[1])


@SETTINGS
@given(parts=st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=10), seed=st.text("0123456789", max_size=4),
       other=st.text("0123456789", max_size=6))
def test_shape_cache_hit_is_quick_classify(parts: list[str], seed: str, other: str) -> None:
    mysql_session._PLAIN_SHAPES.clear()
    sql = "".join(parts) + seed
    raw = sql.encode()
    info = classify_cached(sql, raw)
    assert info == (quick_classify(sql) or classify(sql))
    for head, cached in mysql_session._PLAIN_SHAPES.items():
        text = (head + other.encode()).decode("ascii")
        assert quick_classify(text) == cached
    # What the hot path would look up for a text of the same shape.
    probe = raw.rstrip(b"0123456789") + other.encode()
    hit = mysql_session._PLAIN_SHAPES.get(probe.rstrip(b"0123456789"))
    if hit is not None:
        assert quick_classify(probe.decode("ascii")) == hit


def test_shape_cache_takes_only_plain_ascii_heads(fresh_caches: None) -> None:
    for sql in ("SELECT c FROM sbtest1 WHERE id=42", "SELECT @x FROM t WHERE id=4", "SELECT 1;2",
                "SELECT 'é' FROM t WHERE id=4", "SELECT c FROM t", "DO 1", "SELECT 7", "SELEC7"):
        classify_cached(sql, sql.encode())
    plain = quick_classify("SELECT 1")
    assert mysql_session._PLAIN_SHAPES == {b"SELECT c FROM sbtest1 WHERE id=": plain, b"SELECT ": plain}


# -- the session --------------------------------------------------------------------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.out.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 5)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True


_CAPS = int(Capability.PROTOCOL_41 | Capability.DEPRECATE_EOF | Capability.SECURE_CONNECTION
            | Capability.TRANSACTIONS | Capability.CONNECT_WITH_DB)
_COLDEF = b"\x03def\x02db\x01t\x01t\x01c\x01c\x0c\x2d\x00\xe0\x01\x00\x00\xfe\x00\x00\x00\x00\x00"
_ROWS = (build_packet(b"\x01", 1) + build_packet(_COLDEF, 2) + build_packet(b"\x03abc", 3)
         + build_packet(b"\xfe\x00\x00\x02\x00\x00\x00", 4))
_OK = build_packet(b"\x00\x00\x00\x02\x00\x00\x00", 1)


class _Rig:
    """A logged-in session on database `plain` with a connection whose sockets are recorders."""

    def __init__(self, tmp_path: Path) -> None:
        written = make_dbmesh_config(tmp_path, SimpleNamespace(host="127.0.0.1", port=1, user="u", password="p"),
                                     databases={"plain": None}, tls=False, create_backend_databases=False)
        config = load_config(written.config_dir)
        self.rt = Runtime(config)
        self.fe = MySQLFrontend(self.rt)
        self.client = _Transport()
        self.fe._attach_transport(self.client)  # type: ignore[arg-type]
        db = config.databases["plain"]
        self.session = MySQLSession(self.rt, self.fe, user="root", capabilities=_CAPS, collation=45, database=db)
        self.fe.session = self.session
        self.fe.handshake = None
        ds = db.default_data_source
        self.conn = MySQLBackendConnection(ds, self.session.key, ds.database)
        self.backend = _Transport()
        self.conn.connection_made(self.backend)  # type: ignore[arg-type]
        pool = MySQLPool(ds, self.rt.metrics, MySQLBackendConnection)  # not started: nothing connects
        self.session.conn, self.session.pool = self.conn, pool
        pool.hold(self.session)
        self.dispatched: list[bytes] = []
        real = self.session._dispatch

        def spy(payload: bytes, seq: int) -> None:
            self.dispatched.append(payload)
            real(payload, seq)

        self.session._dispatch = spy  # type: ignore[method-assign]

    def run(self, frame: bytes, response: bytes, *, general: bool = False) -> tuple[bytes, bytes]:
        """One command in, one response back; returns (bytes to the data source, bytes to the client)."""
        self.backend.out.clear()
        self.client.out.clear()
        if general:
            self.session.on_packet(frame[4:], 0)
        else:
            self.fe.data_received(frame)
        if self.backend.out:
            self.conn.data_received(response)
        assert self.session.current is None
        return b"".join(self.backend.out), b"".join(self.client.out)

    def count(self, stmt_type: str) -> float:
        return self.rt.metrics.statement_row("plain", self.session._ds_name, stmt_type)[ROW_COUNT]


@pytest.fixture
def rig(tmp_path: Path, fresh_caches: None) -> _Rig:
    return _Rig(tmp_path)


def _query(sql: str) -> bytes:
    return build_packet(b"\x03" + sql.encode(), 0)


def test_text_statement_of_a_known_shape_skips_the_general_path(rig: _Rig) -> None:
    first = _query("SELECT c FROM t WHERE id=17")
    to_ds, to_client = rig.run(first, _ROWS)
    assert rig.dispatched == [first[4:]]  # the first of its shape is classified by the general path
    assert to_ds == first and to_client == _ROWS
    for n in (18, 1234567, 0):
        frame = _query(f"SELECT c FROM t WHERE id={n}")
        rig.dispatched.clear()
        fast = rig.run(frame, _ROWS)
        assert rig.dispatched == []
        assert fast == rig.run(frame, _ROWS, general=True) == (frame, _ROWS)
    assert rig.count("select") == 7
    assert rig.session.reclaimable and rig.session.pinned is None


def test_statements_that_are_not_plain_take_the_general_path(rig: _Rig) -> None:
    rig.run(_query("SELECT c FROM t WHERE id=1"), _ROWS)
    for sql in ("SELECT c FROM t WHERE id=1;2", "SELECT c FROM t WHERE id=@x1", "SELECT LAST_INSERT_ID(5)"):
        rig.dispatched.clear()
        rig.run(_query(sql), _ROWS)
        assert rig.dispatched == [_query(sql)[4:]]
    assert rig.session.pinned is not None  # the user variable / LAST_INSERT_ID(expr) pinned the session


def test_prepared_execute_and_reset_forward_the_frame(rig: _Rig) -> None:
    rig.session.prepared[b"\x07\x00\x00\x00"] = "select"
    execute = build_packet(b"\x17\x07\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\x03\x00\x05\x00\x00\x00", 0)
    assert rig.run(execute, _ROWS) == (execute, _ROWS) == rig.run(execute, _ROWS, general=True)
    reset = build_packet(b"\x1a\x07\x00\x00\x00", 0)
    assert rig.run(reset, _OK) == (reset, _OK) == rig.run(reset, _OK, general=True)
    assert rig.count("select") == 2 and rig.count("execute") == 2
    rig.dispatched.clear()
    rig.run(execute, _ROWS)
    rig.run(reset, _OK)
    assert rig.dispatched == []


def test_a_removed_database_is_refused_on_the_fast_path_too(rig: _Rig) -> None:
    rig.session.prepared[b"\x07\x00\x00\x00"] = "select"
    rig.run(_query("SELECT c FROM t WHERE id=1"), _ROWS)
    rig.session._removed_database = "plain"
    for frame in (build_packet(b"\x17\x07\x00\x00\x00\x00\x01\x00\x00\x00", 0), _query("SELECT c FROM t WHERE id=2")):
        to_ds, to_client = rig.run(frame, _ROWS)
        assert to_ds == b""
        assert to_client[4] == 0xFF and b"plain" in to_client  # ERR: unknown database


# -- the scanner's one-read summary ------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@SETTINGS
@given(response=responses(), cuts=st.lists(st.integers(0, 400), max_size=4), garbage=st.booleans())
def test_clean_status_summarises_the_outcome(impl: Any, response: Any, cuts: list[int], garbage: bool) -> None:
    data = bytes(response.wire(1)[0])
    if garbage:
        data += b"\x01\x00\x00\x09\x00"  # a packet after the end: a protocol error for some kinds
    s, _ = scan(impl, response.kind, response.deprecate_eof, split(data, cuts))
    plain = not s.is_error and s.protocol_error is None and s.last_insert_id == 0
    assert s.clean_status() == (s.status if plain else -1)


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
def test_clean_status_cases(impl: Any) -> None:
    ok = build_packet(OkPacket(1, 0, 0x0002, 0).encode(), 1)
    assert scan(impl, SIMPLE, True, [ok])[0].clean_status() == 2
    with_id = build_packet(OkPacket(1, 7, 0x0002, 0).encode(), 1)
    assert scan(impl, SIMPLE, True, [with_id])[0].clean_status() == -1
    err = build_packet(ErrPacket(1064, "42000", "syntax").encode(), 1)
    assert scan(impl, RESULT, True, [err])[0].clean_status() == -1
    assert scan(impl, SIMPLE, True, [build_packet(b"\x01abc", 1)])[0].clean_status() == -1  # not OK/ERR
