"""The one-data-source PostgreSQL session's hot paths give what its general path gives.

A request the client sends alone in one read takes a hot path (PgSession.on_query_frame / on_execute_frame, and
the short case of on_ready); the same request cut in two reads takes the general path (MessageReader, on_messages,
_render). Both must send the data source the same bytes, return the client the same bytes, and leave the session
and its connection in the same state. Where the hot path must not be taken (inside a transaction, a statement not
prepared on the connection, a gate, state-changing statements), it must leave the request to the general path.

The session runs on fake transports: no server, no event loop work.
"""

from __future__ import annotations

import doctest
import random
import struct
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbmesh.backend.pg_connection import PgBackendConnection
from dbmesh.observe.metrics import Metrics
from dbmesh.server.pg_frontend import PgFrontend
from dbmesh.session import pg_classify
from dbmesh.session.pg_classify import classify, quick_classify
from dbmesh.session.pg_session import PgSession


def msg(t: str, payload: bytes) -> bytes:
    return t.encode() + struct.pack("!I", len(payload) + 4) + payload


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 5000)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.out = b"".join(self.out), []
        return data


class Harness:
    """A logged-in session with a leased backend connection, both on fake transports."""

    def __init__(self) -> None:
        names: dict[bytes, bytes] = {}
        self.spawned: list[Any] = []
        ds = SimpleNamespace(name="ds", pool=SimpleNamespace(max_lifetime_s=1e9), database="db",
                             protocol="postgresql")
        self.database = SimpleNamespace(name="plain", default_data_source=ds)
        self.runtime = SimpleNamespace(
            guarded=False, generation=0, traffic_waits=False, multiplexing=True, slow_log=None, metrics=Metrics(),
            sharding_rule=lambda db: None, next_pg_pid=lambda: 7,
            pg_statement_name=lambda body: names.setdefault(body, b"dbmesh_%x" % len(names)),
            spawn=self._spawn, config=SimpleNamespace(server=SimpleNamespace(limits=SimpleNamespace(
                max_packet_size=1 << 24))))
        self.frontend = PgFrontend(self.runtime)  # type: ignore[arg-type]
        self.client = FakeTransport()
        self.frontend.transport = self.client  # type: ignore[assignment]
        self.session = PgSession(self.runtime, self.frontend, user="u", database=self.database,  # type: ignore[arg-type]
                                 params={"application_name": "t", "client_encoding": "UTF8"})
        self.frontend.session = self.session
        self.frontend._relay = self.session
        self.conn = PgBackendConnection(ds, (0, 0), "db")  # type: ignore[arg-type]
        self.server = FakeTransport()
        self.conn.transport = self.server  # type: ignore[assignment]
        self.conn.vars = dict(self.session.vars)
        self.session.conn = self.conn
        self.session.pool = SimpleNamespace(_waiters=(), hold=lambda s: None, unhold=lambda s: None)  # type: ignore[assignment]
        self.conn.attach(self.session)

    def _spawn(self, coro: Any) -> None:
        coro.close()
        self.spawned.append(coro)

    def request(self, data: bytes, split: bool) -> bytes:
        """Send `data` from the client, in one read or two; return what reached the data source."""
        if split:
            self.frontend.data_received(data[:3])
            self.frontend.data_received(data[3:])
        else:
            self.frontend.data_received(data)
        return self.server.take()

    def answer(self, data: bytes) -> bytes:
        self.conn.data_received(data)
        return self.client.take()

    def state(self) -> dict[str, Any]:
        s, c = self.session, self.conn
        # Statements and errors counted per label set (durations, and so histogram buckets, differ run to run).
        rows = {k: (v[-2], v[-1]) for k, v in self.runtime.metrics._statement_stats.series.items()}
        return {"tx": s.tx_status, "awaiting": s.awaiting, "open_batch": s.open_batch, "start": bool(s._start),
                "reclaimable": s.reclaimable, "pinned": s.pinned, "vars": dict(s.vars), "conn_vars": dict(c.vars),
                "statements": dict(s.statements), "prepared": set(c.prepared), "replay": s._needs_replay,
                "target": c.scanner.target, "ready": c.scanner.ready_count, "rows": rows, "type": s._type,
                "spawned": len(self.spawned), "in_tx": s._in_tx}


ROW_DESCRIPTION = msg("T", b"\x00\x01abalance\x00\x00\x00@\x0c\x00\x03\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00")
SELECT_ANSWER = ROW_DESCRIPTION + msg("D", b"\x00\x01\x00\x00\x00\x010") + msg("C", b"SELECT 1\x00")


def ready(status: bytes = b"I") -> bytes:
    return msg("Z", status)


def query(sql: str) -> bytes:
    return msg("Q", sql.encode() + b"\x00")


PARSE_P1 = msg("P", b"P0_1\x00SELECT abalance FROM pgbench_accounts WHERE aid = $1;\x00\x00\x00")
SYNC = msg("S", b"")


def execute(name: bytes, value: bytes = b"7", describe: bool = True) -> bytes:
    bind = msg("B", b"\x00" + name + b"\x00\x00\x00\x00\x01" + struct.pack("!I", len(value)) + value + b"\x00\x00")
    return bind + (msg("D", b"P\x00") if describe else b"") + msg("E", b"\x00\x00\x00\x00\x00") + SYNC


def prepare(h: Harness) -> None:
    h.request(PARSE_P1 + SYNC, split=False)
    h.answer(msg("1", b"") + ready())


def run_both(script: list[tuple[bytes, bytes]], setup: Any = None) -> None:
    """Run the same (request, answer) exchanges whole and split; every byte and every state must agree."""
    results = []
    for split in (False, True):
        h = Harness()
        if setup is not None:
            setup(h)
        trace = []
        for request, answer in script:
            sent = h.request(request, split)
            got = h.answer(answer)
            trace.append((sent, got, h.state()))
        results.append(trace)
    assert results[0] == results[1]


def test_simple_query_hot_path_is_the_general_path() -> None:
    q = query("SELECT abalance FROM pgbench_accounts WHERE aid = 7;")
    run_both([(q, SELECT_ANSWER + ready())] * 3)
    h = Harness()
    assert h.request(q, split=False) == q  # forwarded as framed
    assert h.session._start and h.session.awaiting == 1
    assert h.answer(SELECT_ANSWER + ready()) == SELECT_ANSWER + ready()
    assert not h.session._start and h.session.awaiting == 0 and h.session.reclaimable


def test_errors_and_transactions_agree() -> None:
    err = msg("E", b"SERROR\x00C42P01\x00Mno such table\x00\x00")
    run_both([
        (query("SELECT * FROM nope"), err + ready()),
        (query("BEGIN"), msg("C", b"BEGIN\x00") + ready(b"T")),
        (query("SELECT 1"), SELECT_ANSWER + ready(b"T")),
        (query("SELECT nope"), err + ready(b"E")),
        (query("ROLLBACK"), msg("C", b"ROLLBACK\x00") + ready()),
        (query("SET search_path TO app"), msg("C", b"SET\x00") + ready()),
        (query("SELECT 2"), SELECT_ANSWER + ready()),
        (query("SELECT pg_advisory_lock(1)"), SELECT_ANSWER + ready()),
        (query("SELECT 3"), SELECT_ANSWER + ready()),
    ])


def test_prepared_execute_hot_path_is_the_general_path() -> None:
    answer = msg("2", b"") + SELECT_ANSWER + ready()
    run_both([(execute(b"P0_1"), answer), (execute(b"P0_1", b"12345", describe=False), answer),
              (execute(b""), answer), (execute(b"unknown"), answer)], setup=prepare)
    h = Harness()
    prepare(h)
    sent = h.request(execute(b"P0_1"), split=False)
    assert sent == execute(b"dbmesh_0")  # renamed to the backend name, every other byte as it came
    assert h.session._type == "select"
    h.answer(answer)
    assert h.request(execute(b""), split=False) == execute(b"")


def test_prepared_execute_of_a_statement_the_connection_lacks_is_left_to_the_general_path() -> None:
    h = Harness()
    prepare(h)
    h.conn.prepared.clear()
    assert not h.session.on_execute_frame(execute(b"P0_1"))
    assert h.server.take() == b""


def test_hot_paths_stand_aside() -> None:
    h = Harness()
    q = query("SELECT 1")
    # A request still being answered: the next one goes through the general path (which pipelines it).
    h.frontend.data_received(q)
    assert not h.session.on_query_frame(q)
    assert not h.session.on_execute_frame(execute(b""))
    h.answer(SELECT_ANSWER + ready())
    for flag, value in (("guarded", True), ("generation", 1)):
        old = getattr(h.runtime, flag)
        setattr(h.runtime, flag, value)
        assert not h.session.on_query_frame(q) and not h.session.on_execute_frame(execute(b""))
        setattr(h.runtime, flag, old)
    h.session._removed_database = "plain"
    assert not h.session.on_query_frame(q) and not h.session.on_execute_frame(execute(b""))
    h.session._removed_database = None
    h.session._local_statements[b"gov"] = "SHOW COMPUTE NODES"
    assert not h.session.on_execute_frame(execute(b"gov"))
    h.session._local_statements.clear()
    h.session._needs_replay = True
    assert not h.session.on_query_frame(q) and not h.session.on_execute_frame(execute(b""))
    h.session._needs_replay = False
    h.session.open_batch = True
    assert not h.session.on_execute_frame(execute(b""))
    h.session.open_batch = False
    # Statements that leave state, governance text, several statements: classify() decides, off the hot path.
    for sql in ("SET x TO 1", "SHOW COMPUTE NODES", "SELECT 1; SELECT 2", "LISTEN x", "select pg_advisory_lock(1)",
                "SELECT * FROM t FOR UPDATE NOWAIT; DISCARD ALL"):
        assert not h.session.on_query_frame(query(sql)), sql
    assert h.session.on_query_frame(q)


def test_a_malformed_bind_goes_to_the_server_as_it_came() -> None:
    run_both([(msg("B", b"portal") + msg("E", b"\x00\x00\x00\x00\x00") + SYNC,
               msg("E", b"SERROR\x00C08P01\x00Mbad\x00\x00") + ready())])


def test_slow_log_gets_the_statement_text_of_an_execute() -> None:
    h = Harness()
    records: list[dict[str, Any]] = []
    h.runtime.slow_log = SimpleNamespace(maybe_record=lambda **kw: records.append(kw))
    h.session._slow_s = 0.0
    prepare(h)
    h.request(execute(b"P0_1"), split=False)
    h.answer(msg("2", b"") + SELECT_ANSWER + ready())
    h.request(query("SELECT 5"), split=False)
    h.answer(SELECT_ANSWER + ready())
    assert [r["sql"] for r in records] == ["SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
                                            "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", "SELECT 5"]


# -- quick_classify: never disagrees with classify() --------------------------------------------------------------

FRAGMENTS = ["SELECT ", "select ", "INSERT ", "update ", "DELETE ", "WITH ", " ", "\t", "\n", ";", "; ", "'", '"',
             "$$", "--", "/*", "*/", "1", "abc", "pg_advisory_lock(", "pg_try_advisory_lock_shared (", "CREATE ",
             "TEMP ", "temporary ", "ON COMMIT DROP", "WITH HOLD", "hold", "LISTEN ", "listen", "PREPARE ",
             "LOAD ", "SET ROLE ", "SET ", "session authorization", "role", "FROM t", "(", ")", "ÄÖ", "K", "İ"]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=10))
def test_quick_classify_is_classify_or_unsure(parts: list[str]) -> None:
    sql = "".join(parts)
    info = quick_classify(sql)
    assert info is None or info == classify(sql), sql


def test_quick_classify_on_common_statements() -> None:
    rng = random.Random(5)
    for _ in range(200):
        sql = f"SELECT abalance FROM pgbench_accounts WHERE aid = {rng.randrange(10**6)};"
        assert quick_classify(sql) == classify(sql)
        assert quick_classify(sql) is not None


def test_pg_classify_doctests() -> None:
    result = doctest.testmod(pg_classify, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("sql", ["SELECT pg_advisory_lock(1)", "select * from t with hold",
                                 "SELECT 1; CREATE TEMP TABLE x()", "delete from temp_things"])
def test_quick_classify_is_unsure_of_hints(sql: str) -> None:
    assert quick_classify(sql) is None


# -- the shape cache of plain Query texts: a hit is what quick_classify() says -----------------------------------

SHAPE_FRAGMENTS = ["SELECT ", "select ", "UPDATE ", "insert ", "abalance", " FROM t", " WHERE aid = ", "=", " ", ";",
                   "'", "x", "temp", "hold", "advisory", "(", "Ä", "1", "--", "\t"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(SHAPE_FRAGMENTS), max_size=8), st.text("0123456789", max_size=4),
       st.text("0123456789", max_size=4), st.text(";", max_size=2), st.text("; ", max_size=2))
def test_shape_cache_hit_is_quick_classify(parts: list[str], digits1: str, digits2: str, end1: str,
                                           end2: str) -> None:
    from dbmesh.session import pg_session

    head = "".join(parts)
    first, second = head + digits1 + end1, head + digits2 + end2
    h = Harness()
    taken = h.session.on_query_frame(query(first))
    assert taken == (quick_classify(first) is not None)
    if taken:
        h.answer(SELECT_ANSWER + ready())
    expected = quick_classify(second)
    original = pg_session.quick_classify
    calls: list[str] = []
    pg_session.quick_classify = lambda sql: calls.append(sql) or original(sql)  # type: ignore[assignment,func-returns-value]
    try:
        taken = h.session.on_query_frame(query(second))
    finally:
        pg_session.quick_classify = original
    assert taken == (expected is not None), second
    if taken:
        assert expected is not None and h.session._type == expected.type
        h.answer(SELECT_ANSWER + ready())
    if calls:
        assert calls == [second]


def test_shape_cache_serves_point_selects_without_classifying() -> None:
    from dbmesh.session import pg_session

    h = Harness()
    assert h.session.on_query_frame(query("SELECT abalance FROM pgbench_accounts WHERE aid = 1;"))
    h.answer(SELECT_ANSWER + ready())
    original = pg_session.quick_classify
    pg_session.quick_classify = None  # type: ignore[assignment]
    try:
        for aid in (7, 123456, 99):
            assert h.session.on_query_frame(query(f"SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"))
            assert h.session._type == "select"
            h.answer(SELECT_ANSWER + ready())
    finally:
        pg_session.quick_classify = original
    # The slow log decodes the text it kept as bytes.
    records: list[dict[str, Any]] = []
    h.runtime.slow_log = SimpleNamespace(maybe_record=lambda **kw: records.append(kw))
    h.session._slow_s = 0.0
    h.session.on_query_frame(query("SELECT abalance FROM pgbench_accounts WHERE aid = 5;"))
    h.answer(SELECT_ANSWER + ready())
    assert records[0]["sql"] == "SELECT abalance FROM pgbench_accounts WHERE aid = 5;"


# -- the unnamed statement: Parse, Bind, Describe, Execute, Sync in one read -------------------------------------


def unnamed(sql: bytes, value: bytes = b"7", bind_name: bytes = b"") -> bytes:
    parse = msg("P", b"\x00" + sql + b"\x00\x00\x00")
    return parse + execute(bind_name, value)


EXTENDED_ANSWER = msg("1", b"") + msg("2", b"") + SELECT_ANSWER + ready()


def test_unnamed_statement_hot_path_is_the_general_path() -> None:
    sql = b"SELECT abalance FROM pgbench_accounts WHERE aid = $1"
    run_both([(unnamed(sql), EXTENDED_ANSWER), (unnamed(sql, b"99"), EXTENDED_ANSWER),
              (unnamed(b"UPDATE t SET x = $1"), EXTENDED_ANSWER), (unnamed(b"SET x TO 1"), EXTENDED_ANSWER),
              (unnamed(sql, bind_name=b"P0_1"), EXTENDED_ANSWER), (unnamed(b"SELECT pg_advisory_lock($1)"),
                                                                   EXTENDED_ANSWER)], setup=prepare)
    h = Harness()
    request = unnamed(sql)
    assert h.session.on_parse_execute_frame(request)
    assert h.server.take() == request  # byte for byte
    assert h.session._type == "select"
    h.answer(EXTENDED_ANSWER)
    assert not h.session._start and h.session.reclaimable


def test_unnamed_statement_hot_path_stands_aside() -> None:
    h = Harness()
    prepare(h)
    sql = b"SELECT abalance FROM pgbench_accounts WHERE aid = $1"
    named_parse = msg("P", b"s1\x00" + sql + b"\x00\x00\x00") + execute(b"s1")
    assert not h.session.on_parse_execute_frame(named_parse)
    assert not h.session.on_parse_execute_frame(unnamed(sql, bind_name=b"P0_1"))  # Bind of a renamed statement
    for text in (b"SET x TO 1", b"SHOW COMPUTE NODES", b"SELECT pg_advisory_lock($1)", b"LISTEN x"):
        assert not h.session.on_parse_execute_frame(unnamed(text)), text
    h.runtime.guarded = True
    assert not h.session.on_parse_execute_frame(unnamed(sql))
    h.runtime.guarded = False
    h.session.open_batch = True
    assert not h.session.on_parse_execute_frame(unnamed(sql))
    h.session.open_batch = False
    assert h.server.take() == b""
    assert h.session.on_parse_execute_frame(unnamed(sql))
