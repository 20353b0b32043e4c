"""PostgreSQL protocol features through dbmesh, with psycopg 3 and asyncpg: COPY in every format both
ways (and CopyFail), CancelRequest, a million-row result streamed to a slow reader with bounded proxy
memory, LISTEN/NOTIFY between two clients, and session settings that stay private to their session even
when two sessions share a pool of two backend connections."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.clients_pg.common import Endpoint
from tests.clients_pg.test_psycopg import connect, error_dict
from tests.support import DbMeshProcess

COPY_DDL = "CREATE TABLE {t} (id int PRIMARY KEY, txt text, bin bytea, j jsonb, n numeric, ts timestamptz)"
COPY_ROWS = [
    (1, "plain", b"\x00\xff\x01", '{"a": 1}', "1.5", "2024-01-02 03:04:05+00"),
    (2, "tab\tnewline\nback\\slash 😀", b"", "[]", "-0.000001", "1999-12-31 23:59:59.999999+00"),
    (3, None, None, None, None, None),
]


# -- COPY --------------------------------------------------------------------------------------------


def _copy_scenario(ep: Endpoint, table: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with connect(ep) as conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {table}")
        # text format via write_row (psycopg formats the rows), then raw text and csv blocks
        with cur.copy(f"COPY {table} (id, txt, bin, j, n, ts) FROM STDIN") as copy:
            for row in COPY_ROWS:
                copy.write_row(row)
        out["text in"] = (cur.statusmessage, cur.rowcount)
        with cur.copy(f"COPY {table} (id, txt) FROM STDIN") as copy:
            copy.write("10\tten\n11\t\\N\n")
        with cur.copy(f"COPY {table} (id, txt, n) FROM STDIN (FORMAT csv, HEADER true)") as copy:
            copy.write('id,txt,n\n20,"quoted, comma",2.5\n21,"multi\nline ""q""",\n')
        out["csv in"] = (cur.statusmessage, cur.rowcount)
        with cur.copy(f"COPY {table} (id, txt, bin, j, n, ts) FROM STDIN (FORMAT binary)") as copy:
            copy.set_types(["int4", "text", "bytea", "jsonb", "numeric", "timestamptz"])
            copy.write_row((30, "binary ✓", b"\x00\x00\xff", Jsonb({"bin": True}), Decimal("3.25"),
                            datetime(2020, 2, 29, 12, tzinfo=UTC)))
            copy.write_row((31, None, None, None, None, None))
        out["binary in"] = (cur.statusmessage, cur.rowcount)
        # COPY TO STDOUT: raw text and csv blocks, and rows decoded from binary
        with cur.copy(f"COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT") as copy:
            out["text out"] = b"".join(bytes(b) for b in copy)
        out["text out status"] = (cur.statusmessage, cur.rowcount)
        with cur.copy(f"COPY (SELECT id, txt, n FROM {table} ORDER BY id) TO STDOUT (FORMAT csv, HEADER)") as copy:
            out["csv out"] = b"".join(bytes(b) for b in copy)
        with cur.copy(f"COPY (SELECT id, txt, bin FROM {table} ORDER BY id) TO STDOUT (FORMAT binary)") as copy:
            copy.set_types(["int4", "text", "bytea"])
            out["binary out"] = list(copy.rows())
        # CopyFail: an exception inside the block makes psycopg send CopyFail; the COPY aborts and the
        # connection stays usable.
        try:
            with cur.copy(f"COPY {table} (id, txt) FROM STDIN") as copy:
                copy.write_row((100, "never stored"))
                raise RuntimeError("client gave up")
        except (RuntimeError, psycopg.Error) as exc:
            out["copyfail"] = (type(exc).__name__, getattr(exc, "sqlstate", None), str(exc).splitlines()[0])
        out["after copyfail"] = cur.execute(f"SELECT count(*), max(id) FROM {table}").fetchone()
        # A COPY that fails server-side (bad data) reports the error with its context
        try:
            with cur.copy(f"COPY {table} (id, txt) FROM STDIN") as copy:
                copy.write("40\tok\nnot-a-number\tbad\n")
        except psycopg.Error as exc:
            err = error_dict(exc)
            out["bad data"] = (err["sqlstate"], err["message"], exc.diag.context)
        out["final"] = cur.execute(f"SELECT count(*) FROM {table}").fetchone()
        out["status"] = conn.info.transaction_status.name
    return out


def test_copy_matches_direct(pg_direct: Endpoint, pg_proxy: Endpoint, pg_fresh_table: Any) -> None:
    table = pg_fresh_table("t_pg_copy", COPY_DDL)
    direct = _copy_scenario(pg_direct, table)
    proxied = _copy_scenario(pg_proxy, table)
    assert proxied["text in"] == ("COPY 3", 3)
    assert proxied["csv in"] == ("COPY 2", 2)
    assert proxied["binary in"] == ("COPY 2", 2)
    assert proxied["text out"].startswith(b"1\tplain\t\\\\x00ff01\t{\"a\": 1}\t1.5\t")
    assert b"tab\\tnewline\\nback\\\\slash \xf0\x9f\x98\x80" in proxied["text out"]
    # psycopg keeps no status message after COPY TO (the direct run shows the same), only the count
    assert proxied["text out"].count(b"\n") == 9 and proxied["text out status"][1] == 9
    assert proxied["csv out"].startswith(b"id,txt,n\n1,plain,1.5\n")
    assert b'21,"multi\nline ""q""",\n' in proxied["csv out"]
    assert proxied["binary out"][0] == (1, "plain", b"\x00\xff\x01")
    assert proxied["binary out"][-1] == (31, None, None) and len(proxied["binary out"]) == 9
    # psycopg sends CopyFail, reads the server's 57014 error and re-raises the client's own exception
    assert proxied["copyfail"] == ("RuntimeError", None, "client gave up")
    assert proxied["after copyfail"] == (9, 31)
    assert proxied["bad data"][0] == "22P02" and "line 2" in proxied["bad data"][2]
    assert proxied["final"] == (9,) and proxied["status"] == "IDLE"
    assert proxied == direct


# -- cancel ------------------------------------------------------------------------------------------


def test_cancel_psycopg(pg_proxy: Endpoint) -> None:
    with connect(pg_proxy) as conn:
        timer = threading.Timer(1.0, conn.cancel)
        timer.start()
        started = time.monotonic()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled) as err:
                conn.execute("SELECT pg_sleep(30)")
        finally:
            timer.cancel()
        elapsed = time.monotonic() - started
        assert elapsed < 6, f"cancel took {elapsed:.1f}s"
        assert err.value.sqlstate == "57014"
        assert conn.execute("SELECT 'usable'").fetchone() == ("usable",)
        # and again, inside a transaction: the transaction is failed, then rolled back
        conn.execute("BEGIN")
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert conn.info.transaction_status.name == "INERROR"
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT 2").fetchone() == (2,)


async def test_cancel_asyncpg_timeout(pg_proxy: Endpoint) -> None:
    conn = await asyncpg.connect(host=pg_proxy.host, port=pg_proxy.port, user=pg_proxy.user,
                                 password=pg_proxy.password, database=pg_proxy.database, ssl=False, timeout=10)
    try:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await conn.fetchval("SELECT pg_sleep(30)", timeout=1.0)  # asyncpg sends a CancelRequest
        assert time.monotonic() - started < 6
        assert await asyncio.wait_for(conn.fetchval("SELECT 'usable'"), 10) == "usable"
    finally:
        await asyncio.wait_for(conn.close(), 10)


def test_cancel_of_idle_session_is_harmless(pg_proxy: Endpoint) -> None:
    with connect(pg_proxy) as conn:
        conn.cancel()
        time.sleep(0.3)
        assert conn.execute("SELECT 1").fetchone() == (1,)


# -- a million rows, slowly -------------------------------------------------------------------------

BIG_QUERY = "SELECT g, repeat('x', 100) FROM generate_series(1, 1000000) g"


def test_slow_reader_streams_with_bounded_memory(pg_proxy: Endpoint, pg_proxy_process: DbMeshProcess) -> None:
    """~110 MB of DataRows read slowly: dbmesh must apply backpressure (pause reading the backend)
    rather than buffer the result; its RSS may grow by less than 50 MB."""
    proc = pg_proxy_process
    baseline = proc.rss_bytes()
    peak = baseline
    count = total = 0
    with connect(pg_proxy, autocommit=False) as conn:
        with conn.cursor(name="big") as cur:  # server-side cursor: FETCH in batches of itersize
            cur.itersize = 5000
            cur.execute(BIG_QUERY)
            for g, x in cur:
                count += 1
                total += g
                if count % 50000 == 0:
                    assert len(x) == 100
                    time.sleep(0.25)  # the slow reader
                    peak = max(peak, proc.rss_bytes())
        conn.commit()
    # The cursor above batches at the server; a plain query must stream too (one huge result).
    with connect(pg_proxy) as conn:
        with conn.cursor() as cur:
            cur.execute(BIG_QUERY.replace("1000000", "300000"))
            got = 0
            while rows := cur.fetchmany(50000):
                got += len(rows)
                peak = max(peak, proc.rss_bytes())
        assert got == 300000
    assert count == 1_000_000 and total == 1_000_000 * 1_000_001 // 2
    growth = peak - baseline
    assert growth < 50 * 1024 * 1024, f"dbmesh RSS grew by {growth / 2**20:.1f} MB (baseline {baseline / 2**20:.1f} MB)"


async def test_slow_asyncpg_cursor_with_bounded_memory(pg_proxy: Endpoint,
                                                       pg_proxy_process: DbMeshProcess) -> None:
    """The same million rows through the unbuffered extended protocol (asyncpg reads Execute with a
    row limit, PortalSuspended between batches), slowly."""
    proc = pg_proxy_process
    baseline = peak = proc.rss_bytes()
    conn = await asyncpg.connect(host=pg_proxy.host, port=pg_proxy.port, user=pg_proxy.user,
                                 password=pg_proxy.password, database=pg_proxy.database, ssl=False, timeout=10)
    try:
        n = 0
        async with conn.transaction():
            async for rec in conn.cursor(BIG_QUERY, prefetch=10000):
                n += 1
                if n % 100000 == 0:
                    assert rec[0] == n
                    await asyncio.sleep(0.2)
                    peak = max(peak, proc.rss_bytes())
        assert n == 1_000_000
    finally:
        await asyncio.wait_for(conn.close(), 10)
    assert peak - baseline < 50 * 1024 * 1024, f"dbmesh RSS grew by {(peak - baseline) / 2**20:.1f} MB"


# -- LISTEN / NOTIFY ---------------------------------------------------------------------------------


def test_listen_notify_between_two_clients(pg_proxy: Endpoint) -> None:
    with connect(pg_proxy) as listener, connect(pg_proxy) as sender:
        listener.execute("LISTEN dbmesh_chan")
        listener.execute("LISTEN other_chan")
        sender.execute("NOTIFY dbmesh_chan, 'hello 😀'")
        sender.execute("SELECT pg_notify('other_chan', %s)", ("second",))
        with sender.transaction():  # delivered at commit, not before
            sender.execute("NOTIFY dbmesh_chan, 'from a transaction'")
        with sender.transaction():
            sender.execute("NOTIFY dbmesh_chan, 'rolled back'")
            raise psycopg.Rollback()  # leaves the block rolling back: never delivered
        got = []
        gen = listener.notifies(timeout=5.0, stop_after=3)
        for n in gen:
            got.append((n.channel, n.payload, n.pid != 0))
        assert got == [("dbmesh_chan", "hello 😀", True), ("other_chan", "second", True),
                       ("dbmesh_chan", "from a transaction", True)]
        listener.execute("UNLISTEN *")
        sender.execute("NOTIFY dbmesh_chan, 'nobody listens'")
        assert list(listener.notifies(timeout=0.5)) == []


# -- session state isolation -------------------------------------------------------------------------


def test_sessions_do_not_see_each_others_settings(start_pg_dbmesh: Any, require_dbmesh: None,
                                                  postgres: Any) -> None:
    """Two clients, a pool of two backend connections: each session's SET survives, privately, across
    many statements and transactions even if dbmesh multiplexes them over the same backends."""
    default_tz = postgres.execute("SHOW TimeZone")[0][0]
    proc = start_pg_dbmesh(max_pool_size=2)
    ep = Endpoint("dbmesh", proc.host, proc.pg_port, "root", "rootpw")
    with connect(ep) as a, connect(ep) as b, connect(ep) as c:
        a.execute("SET TimeZone = 'Asia/Tokyo'")
        a.execute("SET search_path = pg_catalog, public")
        b.execute("SET TimeZone = 'America/New_York'")
        b.execute("SET application_name = 'session-b'")
        for i in range(30):
            for conn, tz in ((a, "Asia/Tokyo"), (b, "America/New_York"), (c, None)):
                if i % 3 == 0:
                    conn.execute("BEGIN")
                shown = conn.execute("SHOW TimeZone").fetchone()[0]
                if i % 3 == 0:
                    conn.execute("COMMIT")
                assert shown == (tz or default_tz), (i, shown, tz)
        assert a.execute("SHOW search_path").fetchone() == ("pg_catalog, public",)
        assert b.execute("SHOW search_path").fetchone() == ('"$user", public',)
        assert c.execute("SHOW search_path").fetchone() == ('"$user", public',)
        assert b.execute("SHOW application_name").fetchone() == ("session-b",)
        assert a.execute("SHOW application_name").fetchone()[0] != "session-b"
        # The client's own view of the setting (ParameterStatus) follows its SETs only.
        assert a.info.parameter_status("TimeZone") == "Asia/Tokyo"
        assert b.info.parameter_status("TimeZone") == "America/New_York"
        assert c.info.parameter_status("TimeZone") == default_tz
        a.execute("RESET TimeZone")
        assert a.execute("SHOW TimeZone").fetchone() == (default_tz,)
        assert b.execute("SHOW TimeZone").fetchone() == ("America/New_York",)



# -- authentication methods on the wire --------------------------------------------------------------


def _auth_request(host: str, port: int, user: str) -> int:
    """Send a StartupMessage and return the code of the server's first Authentication request."""
    import socket
    import struct

    body = struct.pack("!i", 196608) + b"".join(
        k.encode() + b"\0" + v.encode() + b"\0" for k, v in (("user", user), ("database", "dbmesh_pg"))) + b"\0"
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(struct.pack("!i", len(body) + 4) + body)
        head = b""
        while len(head) < 9:
            chunk = sock.recv(9 - len(head))
            assert chunk, "connection closed before an authentication request"
            head += chunk
    assert head[:1] == b"R", head
    return int(struct.unpack("!i", head[5:9])[0])


@pytest.mark.parametrize(("user", "code"), [
    ("root", 10),  # no method: MySQL's default, scram-sha-256 on PostgreSQL -> AuthenticationSASL
    ("sha2user", 10),  # caching_sha2_password is MySQL-only -> scram-sha-256
    ("md5client", 5),  # AuthenticationMD5Password
    ("plainclient", 3),  # AuthenticationCleartextPassword
])
def test_authentication_method_per_user(pg_proxy: Endpoint, require_dbmesh: None, user: str, code: int) -> None:
    assert _auth_request(pg_proxy.host, pg_proxy.port, user) == code


def test_transactional_set_semantics_survive_multiplexing(start_pg_dbmesh: Any, require_dbmesh: None,
                                                          postgres: Any) -> None:
    """SET inside a rolled-back transaction is undone, SET LOCAL ends with its transaction, a SET in a
    committed transaction stays, RESET ALL / DISCARD ALL restore the defaults — as on a plain server,
    while three sessions interleave on a pool of two backend connections (so dbmesh must replay or
    forget exactly the settings PostgreSQL would keep)."""
    default_tz = postgres.execute("SHOW TimeZone")[0][0]
    proc = start_pg_dbmesh(max_pool_size=2)
    ep = Endpoint("dbmesh", proc.host, proc.pg_port, "root", "rootpw")

    def tz(conn: Any) -> str:
        return str(conn.execute("SHOW TimeZone").fetchone()[0])

    with connect(ep) as a, connect(ep) as b, connect(ep) as c:
        def churn() -> None:  # other sessions' statements in between, so backends change hands
            for other in (b, c, b, c):
                other.execute("SELECT 1")

        a.execute("BEGIN")
        a.execute("SET TimeZone = 'Asia/Tokyo'")
        assert tz(a) == "Asia/Tokyo"
        a.execute("ROLLBACK")
        churn()
        assert tz(a) == default_tz, "a SET rolled back with its transaction came back"
        a.execute("BEGIN")
        a.execute("SET LOCAL TimeZone = 'Europe/Paris'")
        assert tz(a) == "Europe/Paris"
        a.execute("COMMIT")
        churn()
        assert tz(a) == default_tz, "SET LOCAL outlived its transaction"
        a.execute("BEGIN")
        a.execute("SET TimeZone = 'America/Lima'")
        a.execute("COMMIT")
        churn()
        assert tz(a) == "America/Lima"
        assert tz(b) == default_tz and tz(c) == default_tz
        a.execute("BEGIN")
        a.execute("SAVEPOINT s1")
        a.execute("SET TimeZone = 'Africa/Cairo'")
        a.execute("ROLLBACK TO SAVEPOINT s1")
        a.execute("COMMIT")
        churn()
        assert tz(a) == "America/Lima", "a SET rolled back to a savepoint came back"
        a.execute("SET search_path = pg_catalog")
        a.execute("RESET ALL")
        churn()
        assert tz(a) == default_tz
        assert a.execute("SHOW search_path").fetchone() == ('"$user", public',)
        b.execute("SET TimeZone = 'Asia/Kolkata'")
        b.execute("DISCARD ALL")
        churn()
        assert tz(b) == default_tz
        # A failed transaction's SET is rolled back too
        c.execute("BEGIN")
        c.execute("SET TimeZone = 'Asia/Tokyo'")
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 1/0")
        c.execute("ROLLBACK")
        churn()
        assert tz(c) == default_tz


def test_backend_restart_is_survived(start_pg_dbmesh: Any, require_dbmesh: None, postgres: Any) -> None:
    """A private PostgreSQL behind a private dbmesh is killed (SIGKILL) and started again: clients get
    an error instead of a hang while it is down, and new statements work once it is back."""
    from tests.support import PostgreSQL

    if not postgres.is_managed:
        pytest.skip("needs a managed PostgreSQL")
    private = PostgreSQL.throwaway().start()
    try:
        private.ensure_database("dbmesh_pg")
        proc = start_pg_dbmesh(pg_databases={"dbmesh_pg": private})
        ep = Endpoint("dbmesh", proc.host, proc.pg_port, "root", "rootpw")
        with connect(ep) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            private.kill()
            started = time.monotonic()
            with pytest.raises(psycopg.Error):
                conn.execute("SELECT 2")
            assert time.monotonic() - started < 15
        private.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                with connect(ep) as conn:
                    assert conn.execute("SELECT 3").fetchone() == (3,)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert proc.is_running()
    finally:
        private.destroy()
