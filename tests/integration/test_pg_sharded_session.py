"""Point statements on a sharded PostgreSQL logical database, against the same statements on one plain database.

Most point statements (one data node, no merge) run on a connection the session already holds, sent as soon as
their messages arrive and answered as the data source answers. These tests hold that path to the plain database's
answers at the protocol level (a raw client compares every message but the RowDescription's table OIDs) and
through psycopg and asyncpg; and to its own cases: statements prepared once per data source connection that go
stale when their table changes, more statements than a connection keeps, batches that arrive while a statement is
running, transactions and a data source connection lost mid-statement.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import pytest

from dbmesh.protocol.postgresql.client_startup import ClientStartup, Ready, Send
from dbmesh.protocol.postgresql.messages import RowDescription
from tests.support import DbMeshProcess, PostgreSQL
from tests.support.sharded import (
    Tagged,
    inline_algorithm,
    run_statements,
    sharded_database,
    standard,
    start_sharded_dbmesh,
    write_sharded_config,
)

DB = "pss_sharded"
PHYSICAL = {"ds_0": "pss_ds_0", "ds_1": "pss_ds_1"}
PLAIN = "pss_plain"
DDL = "CREATE TABLE t_acc (id INT PRIMARY KEY, v INT NOT NULL, c TEXT)"
ROWS = [(i, i * 10, f"c{i}") for i in range(1, 21)]


def _rules() -> list[Tagged]:
    return [Tagged("SHARDING", {
        "tables": {"t_acc": {"actualDataNodes": "ds_${0..1}.t_acc", "databaseStrategy": standard("id", "by_id")}},
        "shardingAlgorithms": {"by_id": inline_algorithm("ds_${id % 2}")},
    })]


def _values(rows: Sequence[tuple[int, int, str]]) -> str:
    return ", ".join(f"({i}, {v}, '{c}')" for i, v, c in rows)


def _load(server: PostgreSQL) -> None:
    """Every test starts from the same rows: on the plain database, and on each data source its own."""
    run_statements(server, PLAIN, ["DROP TABLE IF EXISTS t_acc", DDL, f"INSERT INTO t_acc VALUES {_values(ROWS)}"])
    for ds, database in PHYSICAL.items():
        mine = [r for r in ROWS if r[0] % 2 == int(ds[-1])]
        run_statements(server, database, ["DROP TABLE IF EXISTS t_acc", DDL,
                                          f"INSERT INTO t_acc VALUES {_values(mine)}"])


@pytest.fixture(scope="module")
def mesh(postgres: PostgreSQL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbMeshProcess]:
    for database in (PLAIN, *PHYSICAL.values()):
        postgres.ensure_database(database)
    _load(postgres)
    config = write_sharded_config(tmp_path_factory.mktemp("pss"), postgres,
                                  {DB: sharded_database(DB, "postgresql", postgres, PHYSICAL, _rules())})
    proc = start_sharded_dbmesh(config, postgresql=True)
    yield proc
    proc.stop()


@pytest.fixture
def fresh(mesh: DbMeshProcess, postgres: PostgreSQL) -> DbMeshProcess:
    _load(postgres)
    return mesh


def _all_rows(postgres: PostgreSQL) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """t_acc on the plain database and on the data sources together, ordered."""
    plain = postgres.execute("SELECT * FROM t_acc ORDER BY id", PLAIN)
    shards = sorted(r for database in PHYSICAL.values()
                    for r in postgres.execute("SELECT * FROM t_acc ORDER BY id", database))
    return plain, shards


# -- a raw protocol client -------------------------------------------------------------------------------------


def _message(t: bytes, payload: bytes = b"") -> bytes:
    return t + struct.pack("!I", len(payload) + 4) + payload


def parse(sql: str, name: str = "") -> bytes:
    return _message(b"P", name.encode() + b"\x00" + sql.encode() + b"\x00\x00\x00")


def bind(params: Sequence[str | None], statement: str = "", result_formats: Sequence[int] = ()) -> bytes:
    body = [b"\x00", statement.encode(), b"\x00\x00\x00", struct.pack("!H", len(params))]
    for p in params:
        body.append(b"\xff\xff\xff\xff" if p is None else struct.pack("!i", len(p.encode())) + p.encode())
    body.append(struct.pack(f"!H{len(result_formats)}h", len(result_formats), *result_formats))
    return _message(b"B", b"".join(body))


DESCRIBE_PORTAL = _message(b"D", b"P\x00")
EXECUTE = _message(b"E", b"\x00\x00\x00\x00\x00")
SYNC = _message(b"S")


def query(sql: str) -> bytes:
    return _message(b"Q", sql.encode() + b"\x00")


class RawClient:
    """A PostgreSQL connection driven message by message."""

    def __init__(self, host: str, port: int, user: str, password: str, database: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=15)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        startup = ClientStartup(user, password, database, {})
        self.sock.sendall(startup.start())
        while True:
            t, payload = self._read()
            for outcome in startup.feed(t, payload):
                if isinstance(outcome, Send):
                    self.sock.sendall(outcome.data)
                elif isinstance(outcome, Ready):
                    return
                else:
                    raise AssertionError(f"login failed: {outcome}")

    def _read(self) -> tuple[int, bytes]:
        while True:
            if len(self.buf) >= 5:
                length = struct.unpack_from("!I", self.buf, 1)[0]
                if len(self.buf) >= 1 + length:
                    t, payload = self.buf[0], self.buf[5:1 + length]
                    self.buf = self.buf[1 + length:]
                    return t, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buf += chunk

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answers(self, ready: int = 1) -> list[tuple[str, Any]]:
        """Messages up to the `ready`-th ReadyForQuery, comparable across servers: RowDescription without table
        OIDs and column numbers, ErrorResponse and NoticeResponse as (severity, SQLSTATE)."""
        out: list[tuple[str, Any]] = []
        while ready:
            t, payload = self._read()
            kind = chr(t)
            if kind == "Z":
                ready -= 1
            if kind == "T":
                fields = RowDescription.decode(payload).fields
                out.append((kind, [(f.name, f.type_oid, f.type_size, f.type_modifier, f.format) for f in fields]))
            elif kind in "EN":
                parts = {p[:1]: p[1:] for p in payload.split(b"\x00") if p}
                out.append((kind, (parts.get(b"V"), parts.get(b"C"))))
            elif kind != "S":  # ParameterStatus: not part of a statement's answer
                out.append((kind, payload))
        return out

    def close(self) -> None:
        self.sock.close()


def _raw_pair(mesh: DbMeshProcess, postgres: PostgreSQL) -> tuple[RawClient, RawClient]:
    return (RawClient(postgres.host, postgres.port, postgres.user, postgres.password, PLAIN),
            RawClient(mesh.host, mesh.pg_port, "root", "rootpw", DB))


def _same(plain: RawClient, mesh: RawClient, data: bytes, ready: int = 1) -> list[tuple[str, Any]]:
    plain.send(data)
    expected = plain.answers(ready)
    mesh.send(data)
    got = mesh.answers(ready)
    assert got == expected
    return got


POINT = "SELECT id, v, c FROM t_acc WHERE id = $1"


def test_extended_point_statements_answer_message_for_message(fresh: DbMeshProcess, postgres: PostgreSQL) -> None:
    plain, mesh = _raw_pair(fresh, postgres)
    try:
        # Unnamed statement, Describe of the portal: the first run learns the description, later ones reuse it.
        for key in ("3", "4", "3", "999"):
            _same(plain, mesh, parse(POINT) + bind([key]) + DESCRIBE_PORTAL + EXECUTE + SYNC)
        # A named statement executed without Describe: BindComplete, rows, CommandComplete only.
        _same(plain, mesh, parse(POINT, "s1") + SYNC)
        for key in ("5", "6", "5"):
            answer = _same(plain, mesh, bind([key], "s1") + EXECUTE + SYNC)
            assert [kind for kind, _p in answer][:1] == ["2"]
        # Binary results, and a Describe answering in the formats the client bound.
        _same(plain, mesh, bind(["7"], "s1", [1]) + DESCRIBE_PORTAL + EXECUTE + SYNC)
        _same(plain, mesh, bind(["8"], "s1", [0, 1, 0]) + DESCRIBE_PORTAL + EXECUTE + SYNC)
        # Writes: tags as the server gives them (RETURNING included), then the rows both sides hold.
        for data in (parse("UPDATE t_acc SET v = v + 1 WHERE id = $1") + bind(["9"]) + DESCRIBE_PORTAL + EXECUTE
                     + SYNC,
                     parse("INSERT INTO t_acc (id, v, c) VALUES ($1, 1, 'n') RETURNING id, v", "ins") + SYNC,
                     bind(["101"], "ins") + DESCRIBE_PORTAL + EXECUTE + SYNC,
                     bind(["102"], "ins") + EXECUTE + SYNC,
                     bind(["102"], "ins") + EXECUTE + SYNC,  # duplicate key
                     parse("DELETE FROM t_acc WHERE id = $1 RETURNING c") + bind(["101"]) + EXECUTE + SYNC):
            _same(plain, mesh, data)
        # An error at execution, then the session goes on.
        _same(plain, mesh, parse("SELECT id, v / (v - v) FROM t_acc WHERE id = $1") + bind(["10"]) + EXECUTE + SYNC)
        _same(plain, mesh, bind(["10"], "s1") + EXECUTE + SYNC)
    finally:
        plain.close()
        mesh.close()
    rows_plain, rows_shards = _all_rows(postgres)
    assert rows_shards == rows_plain


def test_simple_queries_answer_message_for_message(fresh: DbMeshProcess, postgres: PostgreSQL) -> None:
    plain, mesh = _raw_pair(fresh, postgres)
    try:
        for sql in ("SELECT v, c FROM t_acc WHERE id = 11", "SELECT v, c FROM t_acc WHERE id = 12",
                    "SELECT v, c FROM t_acc WHERE id = 11", "UPDATE t_acc SET v = v * 2 WHERE id = 12",
                    "UPDATE t_acc SET v = v * 2 WHERE id = 12",
                    "INSERT INTO t_acc (id, v, c) VALUES (201, 2, 'x') RETURNING v + 1, c",
                    "DELETE FROM t_acc WHERE id = 201", "SELECT 1 / (v - v) FROM t_acc WHERE id = 13",
                    "SELECT c FROM t_acc WHERE id = 1000"):
            _same(plain, mesh, query(sql))
    finally:
        plain.close()
        mesh.close()
    rows_plain, rows_shards = _all_rows(postgres)
    assert rows_shards == rows_plain


def test_batches_arriving_while_a_statement_runs_are_answered_in_order(fresh: DbMeshProcess,
                                                                       postgres: PostgreSQL) -> None:
    slow = "SELECT id, v FROM t_acc WHERE id = $1 AND (SELECT 1 FROM pg_sleep(0.2)) = 1"
    plain, mesh = _raw_pair(fresh, postgres)
    try:
        _same(plain, mesh, parse(slow, "slow") + parse(POINT, "p") + SYNC)
        for key in ("2", "3"):  # both data sources: their connections are held from now on
            _same(plain, mesh, bind([key], "slow") + EXECUTE + SYNC + bind([key], "p") + EXECUTE + SYNC, ready=2)
        # The statements after the slow one go to the other data source too, which could answer them first.
        batches = [bind(["2"], "slow") + DESCRIBE_PORTAL + EXECUTE + SYNC, query("SELECT c FROM t_acc WHERE id = 3"),
                   bind(["4"], "p") + EXECUTE + SYNC, query("UPDATE t_acc SET v = 0 WHERE id = 5"),
                   bind(["5"], "p") + EXECUTE + SYNC, bind(["3"], "slow") + EXECUTE + SYNC,
                   bind(["6"], "p") + EXECUTE + SYNC]
        for client in (plain, mesh):
            client.send(batches[0])
            time.sleep(0.05)  # the first statement is running (it sleeps 0.2 s) when the others arrive
            for data in batches[1:]:
                client.send(data)
        expected = plain.answers(len(batches))
        assert mesh.answers(len(batches)) == expected
    finally:
        plain.close()
        mesh.close()


def test_transaction_with_point_statements(fresh: DbMeshProcess, postgres: PostgreSQL) -> None:
    plain, mesh = _raw_pair(fresh, postgres)
    try:
        _same(plain, mesh, parse(POINT, "p") + parse("UPDATE t_acc SET v = v + $2 WHERE id = $1", "u") + SYNC)
        steps = [
            query("BEGIN"),
            query("SELECT v FROM t_acc WHERE id = 2"),  # ds_0 joins the transaction
            bind(["4", "5"], "u") + EXECUTE + SYNC,  # ds_0 again: sent at once, inside the transaction
            bind(["4"], "p") + DESCRIBE_PORTAL + EXECUTE + SYNC,
            bind(["3", "5"], "u") + EXECUTE + SYNC,  # ds_1 joins
            query("SELECT v / 0 FROM t_acc WHERE id = 4"),  # fails the transaction
            bind(["4"], "p") + EXECUTE + SYNC,  # refused: 25P02
            query("SELECT 1"),
            query("BEGIN"),
            query("ROLLBACK"),
            bind(["4"], "p") + EXECUTE + SYNC,
            query("START TRANSACTION"),
            bind(["6", "1"], "u") + EXECUTE + SYNC,
            bind(["8", "1"], "u") + EXECUTE + SYNC,
            query("COMMIT"),
        ]
        for data in steps:
            _same(plain, mesh, data)
    finally:
        plain.close()
        mesh.close()
    rows_plain, rows_shards = _all_rows(postgres)
    assert rows_shards == rows_plain


# -- through client libraries ----------------------------------------------------------------------------------


def _psycopg(host: str, port: int, user: str, password: str, dbname: str) -> Any:
    return psycopg.connect(host=host, port=port, user=user, password=password, dbname=dbname, autocommit=True,
                           sslmode="disable", connect_timeout=10)


def _outcome(run: Callable[[], Any]) -> Any:
    try:
        return ("ok", run())
    except psycopg.Error as exc:
        return ("error", exc.sqlstate)


STATEMENTS: list[tuple[str, tuple[Any, ...]]] = [
    ("SELECT id, v, c FROM t_acc WHERE id = %s", (3,)),
    ("SELECT id, v, c FROM t_acc WHERE id = %s", (4,)),
    ("SELECT v FROM t_acc WHERE id = %s AND c = %s", (5, "c5")),
    ("SELECT v FROM t_acc WHERE id = %s AND c = %s", (5, None)),
    ("UPDATE t_acc SET v = v + 1 WHERE id = %s", (6,)),
    ("INSERT INTO t_acc (id, v, c) VALUES (%s, %s, %s) RETURNING id, v", (301, 1, "x")),
    ("DELETE FROM t_acc WHERE id = %s RETURNING c", (301,)),
    ("SELECT id, v / (v - v) FROM t_acc WHERE id = %s", (7,)),
    ("SELECT v FROM t_acc WHERE id = %s", (999,)),
]


@pytest.mark.parametrize("mode", ["simple", "extended", "binary", "prepared"])
def test_psycopg_point_statements_match_plain(fresh: DbMeshProcess, postgres: PostgreSQL, mode: str) -> None:
    plain = _psycopg(postgres.host, postgres.port, postgres.user, postgres.password, PLAIN)
    mesh = _psycopg(fresh.host, fresh.pg_port, "root", "rootpw", DB)
    try:
        for _ in range(3):  # the first run of a statement learns what later runs reuse
            for sql, params in STATEMENTS:
                answers = []
                for conn in (plain, mesh):
                    cur = conn.cursor(binary=mode == "binary") if mode != "simple" else psycopg.ClientCursor(conn)

                    def run(cur: Any = cur, sql: str = sql, params: tuple[Any, ...] = params) -> Any:
                        cur.execute(sql, params, prepare=True if mode == "prepared" else None)
                        rows = cur.fetchall() if cur.description is not None else None
                        names = [(d.name, d.type_code) for d in cur.description or ()]
                        return rows, names, cur.statusmessage, cur.rowcount

                    answers.append(_outcome(run))
                assert answers[1] == answers[0], sql
    finally:
        plain.close()
        mesh.close()
    rows_plain, rows_shards = _all_rows(postgres)
    assert rows_shards == rows_plain


def test_asyncpg_point_statements_match_plain(fresh: DbMeshProcess, postgres: PostgreSQL) -> None:
    import asyncpg

    async def run(dsn: dict[str, Any]) -> list[Any]:
        conn = await asyncpg.connect(**dsn, ssl=False)
        out: list[Any] = []
        try:
            for _ in range(3):
                for sql, params in STATEMENTS:
                    text = sql
                    for n in range(1, len(params) + 1):
                        text = text.replace("%s", f"${n}", 1)
                    try:
                        rows = await conn.fetch(text, *params)
                        out.append([tuple(r) for r in rows])
                    except asyncpg.PostgresError as exc:
                        out.append(exc.sqlstate)
        finally:
            await conn.close()
        return out

    plain = asyncio.run(run({"host": postgres.host, "port": postgres.port, "user": postgres.user,
                             "password": postgres.password, "database": PLAIN}))
    _load(postgres)
    mesh = asyncio.run(run({"host": fresh.host, "port": fresh.pg_port, "user": "root", "password": "rootpw",
                            "database": DB}))
    assert mesh == plain


# -- statements prepared per data source connection ------------------------------------------------------------


def test_statement_follows_a_change_of_its_tables_columns(fresh: DbMeshProcess, postgres: PostgreSQL) -> None:
    """A statement the connection prepared earlier returns the new columns, as a fresh statement does on the plain
    database (the data source refuses the old one: its result type changed)."""
    plain = _psycopg(postgres.host, postgres.port, postgres.user, postgres.password, PLAIN)
    mesh = _psycopg(fresh.host, fresh.pg_port, "root", "rootpw", DB)
    sql = "SELECT * FROM t_acc WHERE id = %s"
    try:
        for conn in (plain, mesh):
            for key in (1, 2, 1, 2):
                conn.execute(sql, (key,)).fetchall()
        for database in (PLAIN, *PHYSICAL.values()):
            run_statements(postgres, database, ["ALTER TABLE t_acc ADD COLUMN extra INT DEFAULT 7"])
        for binary in (False, True):
            for key in (1, 2, 1, 2):
                expected = plain.cursor(binary=binary).execute(sql, (key,)).fetchall()
                assert mesh.cursor(binary=binary).execute(sql, (key,)).fetchall() == expected
                assert len(expected[0]) == 4
    finally:
        plain.close()
        mesh.close()


def test_more_statements_than_a_connection_keeps(fresh: DbMeshProcess, postgres: PostgreSQL) -> None:
    plain = _psycopg(postgres.host, postgres.port, postgres.user, postgres.password, PLAIN)
    mesh = _psycopg(fresh.host, fresh.pg_port, "root", "rootpw", DB)
    try:
        texts = [f"SELECT id, v + {k} AS w FROM t_acc WHERE id = %s" for k in range(300)]
        for k, sql in enumerate(texts + texts[:40] + texts[250:] + texts[:10]):
            key = k % 20 + 1
            assert mesh.execute(sql, (key,)).fetchall() == plain.execute(sql, (key,)).fetchall()
    finally:
        plain.close()
        mesh.close()


def test_data_source_connection_lost_mid_statement(fresh: DbMeshProcess, postgres: PostgreSQL) -> None:
    """The client gets an error for the statement whose connection died, and its session goes on."""
    mesh = _psycopg(fresh.host, fresh.pg_port, "root", "rootpw", DB)
    admin = postgres.connect(PHYSICAL["ds_1"])
    sql = "SELECT id, v FROM t_acc WHERE id = %s AND (SELECT 1 FROM pg_sleep(%s)) = 1"
    try:
        for _ in range(2):
            assert mesh.execute(sql, (3, 0)).fetchall() == [(3, 30)]

        def kill() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                                     "AND query LIKE %s AND pid <> pg_backend_pid() AND state = 'active'",
                                     (PHYSICAL["ds_1"], "%pg_sleep%")).fetchall()
                if rows:
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill, daemon=True)
        killer.start()
        with pytest.raises(psycopg.Error) as info:
            mesh.execute(sql, (3, 5)).fetchall()
        killer.join()
        assert info.value.sqlstate is not None and info.value.sqlstate != "57P01"  # dbmesh's error, not the FATAL
        for key in (3, 4, 3):
            assert mesh.execute(sql, (key, 0)).fetchall() == [(key, key * 10)]
    finally:
        mesh.close()
        admin.close()


# -- Bind payloads ---------------------------------------------------------------------------------------------

def test_bind_parts_read_what_bind_writes() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from dbmesh.protocol.postgresql.messages import Bind
    from dbmesh.session.pg_sharded import _bind_parts, _result_formats

    names = st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=8)
    formats = st.lists(st.integers(0, 1), max_size=4).map(tuple)

    @settings(max_examples=300, deadline=None)
    @given(names, names, formats, st.lists(st.one_of(st.none(), st.binary(max_size=12)), max_size=5).map(tuple),
           formats)
    def check(portal: str, statement: str, pformats: tuple[int, ...], params: tuple[bytes | None, ...],
              rformats: tuple[int, ...]) -> None:
        payload = Bind(portal, statement, pformats, params, rformats).payload()
        got_portal, got_statement, got_pformats, got_params, at = _bind_parts(payload)
        assert (got_portal.decode(), got_statement.decode(), got_pformats, tuple(got_params)) == (
            portal, statement, pformats, params)
        assert _result_formats(payload, at) == rformats
        assert payload[at:] == Bind("", "", (), (), rformats).payload()[6:]  # sent on as the client wrote it

    check()


def test_bind_parts_refuse_what_bind_refuses() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from dbmesh.protocol.postgresql.messages import Bind
    from dbmesh.session.pg_sharded import _bind_parts, _result_formats, _text

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=40))
    def check(payload: bytes) -> None:
        try:
            expected = Bind.decode(payload)
        except Exception:
            expected = None
        try:
            portal, statement, pformats, params, at = _bind_parts(payload)
            got = (_text(portal), _text(statement), pformats, tuple(params), _result_formats(payload, at))
        except (ValueError, IndexError, struct.error):
            got = None
        if expected is None:
            assert got is None
        else:
            assert got == (expected.portal, expected.statement, expected.param_formats, expected.params,
                           expected.result_formats)

    check()
