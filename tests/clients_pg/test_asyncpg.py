"""asyncpg through dbmesh: named prepared statements (its statement cache), binary codecs of many types,
executemany, COPY via copy_records_to_table / copy_to_table / copy_from_query / copy_from_table, logins,
TLS, transactions and notices — each compared with the same calls made to PostgreSQL directly."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import io
import ipaddress
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from tests.clients_pg.common import (
    TX_TABLE_DDL,
    Endpoint,
    Observation,
    Step,
    assert_same_trace,
    by_label,
    check_crud_expectations,
    check_transactions_async,
    crud_steps,
    dollar,
)
from tests.clients_pg.conftest import insecure_context

TABLE = "t_asyncpg"


async def connect(ep: Endpoint, **kwargs: Any) -> asyncpg.Connection:
    params: dict[str, Any] = {"host": ep.host, "port": ep.port, "user": ep.user, "password": ep.password,
                              "database": ep.database, "ssl": False, "timeout": 10}
    params.update(kwargs)
    return await asyncio.wait_for(asyncpg.connect(**params), 20)


def error_dict(exc: asyncpg.PostgresError) -> dict[str, Any]:
    return {"sqlstate": exc.sqlstate, "message": exc.message, "detail": exc.detail, "hint": exc.hint,
            "position": exc.position, "severity": exc.severity_en, "constraint": exc.constraint_name,
            "table": exc.table_name, "schema": exc.schema_name, "type": type(exc).__name__}


def status_count(o: Observation) -> int:
    return int(o.status.split()[-1])


async def run(conn: asyncpg.Connection, steps: Sequence[Step]) -> list[Observation]:
    async def go() -> list[Observation]:
        out: list[Observation] = []
        for step in steps:
            try:
                stmt = await conn.prepare(dollar(step.sql))
                attrs = stmt.get_attributes()
                rows = [tuple(r) for r in await stmt.fetch(*(step.params or ()))]
                out.append(Observation(
                    step.label, status=stmt.get_statusmsg(),
                    columns=tuple((a.name, a.type.oid, a.type.name) for a in attrs) if attrs else None,
                    rows=rows if attrs else None,
                    extra={"params": tuple(t.oid for t in stmt.get_parameters())}))
            except asyncpg.PostgresError as exc:
                out.append(Observation(step.label, error=error_dict(exc)))
        return out

    return await asyncio.wait_for(go(), 60)


async def test_crud_matches_direct(pg_direct: Endpoint, pg_proxy: Endpoint, pg_fresh_table: Any) -> None:
    traces = []
    for ep in (pg_direct, pg_proxy):
        pg_fresh_table(TABLE)
        conn = await connect(ep)
        try:
            trace = await run(conn, crud_steps(TABLE))
            # The same SQL through the implicit statement cache (fetch/execute/fetchrow): named statements
            # prepared once and executed again.
            for _ in range(3):
                trace.append(Observation("cached fetch", rows=[tuple(r) for r in await conn.fetch(
                    f"SELECT id, txt, bin FROM {TABLE} WHERE id = ANY($1::int4[]) ORDER BY id", [1, 3])]))
            trace.append(Observation("cached execute", status=await conn.execute(
                f"UPDATE {TABLE} SET txt = $1 WHERE id = $2", "updated ✓", 3)))
            trace.append(Observation("fetchrow", rows=tuple(await conn.fetchrow(
                f"SELECT txt FROM {TABLE} WHERE id = $1", 3))))
        finally:
            await conn.close()
        traces.append(trace)
    direct, proxied = traces
    check_crud_expectations(proxied, rowcount=status_count)
    o = by_label(proxied)
    assert o["insert 3 rows returning"].status == "INSERT 0 3"
    assert o["delete nothing"].status == "DELETE 0"
    assert o["select all"].rows[0][13] == [1, 2, None, 4] and o["select all"].rows[0][11] == uuid.UUID(
        "12345678-1234-5678-1234-567812345678")
    assert o["cached execute"].status == "UPDATE 1" and o["fetchrow"].rows == ("updated ✓",)
    assert_same_trace(direct, proxied, "asyncpg")


# Typed literals and the values asyncpg's binary codecs must decode them to.
CODEC_CASES: tuple[tuple[str, Any], ...] = (
    ("32767::int2", 32767),
    ("(-2147483648)::int4", -2147483648),
    ("9223372036854775807::int8", 9223372036854775807),
    ("1.25::float4", 1.25),
    ("'-Infinity'::float8", float("-inf")),
    ("'12345678901234567890.000000000001'::numeric", decimal.Decimal("12345678901234567890.000000000001")),
    ("'NaN'::numeric", "nan"),
    ("true", True),
    ("'héllo 😀'::text", "héllo 😀"),
    ("'abc'::varchar(5)", "abc"),
    ("'x'::char(3)", "x  "),
    ("'\\x00ff00'::bytea", b"\x00\xff\x00"),
    ("'2024-02-29'::date", datetime.date(2024, 2, 29)),
    ("'infinity'::date", datetime.date.max),
    ("'2024-01-02 03:04:05.123456'::timestamp", datetime.datetime(2024, 1, 2, 3, 4, 5, 123456)),
    ("'2024-01-02 03:04:05.5+02'::timestamptz",
     datetime.datetime(2024, 1, 2, 1, 4, 5, 500000, tzinfo=datetime.UTC)),
    ("'13:14:15.5'::time", datetime.time(13, 14, 15, 500000)),
    ("'1 day 02:03:04.5'::interval", datetime.timedelta(days=1, seconds=7384, microseconds=500000)),
    ("'12345678-1234-5678-1234-567812345678'::uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("'{\"a\": [1, null]}'::jsonb", '{"a": [1, null]}'),
    ("'{\"b\":2}'::json", '{"b":2}'),
    ("ARRAY[1, NULL, 3]::int4[]", [1, None, 3]),
    ("ARRAY[['a','b'],['c','d']]::text[]", [["a", "b"], ["c", "d"]]),
    ("'{}'::int8[]", []),
    ("'192.168.0.1/24'::inet", ipaddress.IPv4Interface("192.168.0.1/24")),
    ("'10.0.0.0/8'::cidr", ipaddress.IPv4Network("10.0.0.0/8")),
    ("'[1,5)'::int4range", asyncpg.Range(1, 5)),
    ("'(1,2)'::point", asyncpg.Point(1, 2)),
    ("'101'::bit(3)", asyncpg.BitString("101")),
    ("'pg_class'::regclass::oid", 1259),
    ("NULL::int4", None),
    ("ROW(1, 'two')", (1, "two")),
    ("'a b'::tsvector::text", "'a' 'b'"),
    ("12.34::money", "$12.34"),
)


async def test_binary_codecs_match_direct(pg_direct: Endpoint, pg_proxy: Endpoint) -> None:
    sql = "SELECT " + ", ".join(f"{expr} AS c{i}" for i, (expr, _) in enumerate(CODEC_CASES))
    results = []
    for ep in (pg_direct, pg_proxy):
        conn = await connect(ep)
        try:
            stmt = await conn.prepare(sql)
            row = await stmt.fetchrow()
            types = [a.type.name for a in stmt.get_attributes()]
            # and the same values sent back as binary parameters
            echoed = await conn.fetchrow("SELECT $1::numeric, $2::timestamptz, $3::uuid, $4::int4[], $5::bytea, "
                                         "$6::interval, $7::inet", decimal.Decimal("-1.000001"),
                                         datetime.datetime(2001, 2, 3, 4, 5, 6, tzinfo=datetime.UTC),
                                         uuid.UUID(int=7), [[1, 2], [3, 4]], bytes(range(256)),
                                         datetime.timedelta(microseconds=-1), ipaddress.ip_address("::1"))
        finally:
            await conn.close()
        results.append((list(row), types, list(echoed)))
    direct, proxied = results
    values = proxied[0]
    for (expr, expected), got in zip(CODEC_CASES, values, strict=True):
        if expected == "nan":
            assert got.is_nan(), expr
        else:
            assert got == expected, (expr, got)
    assert proxied[2] == [decimal.Decimal("-1.000001"), datetime.datetime(2001, 2, 3, 4, 5, 6, tzinfo=datetime.UTC),
                          uuid.UUID(int=7), [[1, 2], [3, 4]], bytes(range(256)),
                          datetime.timedelta(microseconds=-1), ipaddress.IPv6Address("::1")]
    assert [str(v) for v in direct[0]] == [str(v) for v in proxied[0]] and direct[1:] == proxied[1:]


async def test_executemany_and_copy_match_direct(pg_direct: Endpoint, pg_proxy: Endpoint,
                                                 pg_fresh_table: Any) -> None:
    ddl = "CREATE TABLE {t} (id int PRIMARY KEY, txt text, n numeric, ts timestamptz, b bytea)"
    results = []
    for ep in (pg_direct, pg_proxy):
        table = pg_fresh_table("t_asyncpg_copy", ddl)
        out: dict[str, Any] = {}
        conn = await connect(ep)
        try:
            rows = [(i, f"row {i} ✓", decimal.Decimal(i) / 7, datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
                     + datetime.timedelta(seconds=i), bytes([i % 256, 0, 255])) for i in range(1, 2001)]
            out["executemany"] = await conn.executemany(
                f"INSERT INTO {table} VALUES ($1, $2, $3, $4, $5)", rows[:500])
            out["copy records"] = await conn.copy_records_to_table(table, records=rows[500:],
                                                                   columns=["id", "txt", "n", "ts", "b"])
            text_in = "".join(f"{i}\tcopied {i}\t{i}.5\t\\N\t\\\\x00\n" for i in range(3001, 3101)).encode()
            out["copy to table text"] = await conn.copy_to_table(table, source=io.BytesIO(text_in),
                                                                 columns=["id", "txt", "n", "ts", "b"])
            csv_in = b"id,txt\n4001,\"csv, quoted\"\n4002,\n"
            out["copy to table csv"] = await conn.copy_to_table(table, source=io.BytesIO(csv_in),
                                                                columns=["id", "txt"], format="csv", header=True)
            buf = io.BytesIO()
            out["copy from query"] = await conn.copy_from_query(
                f"SELECT id, txt, n FROM {table} WHERE id % 100 = $1 ORDER BY id", 1, output=buf, format="csv")
            out["copy from query data"] = buf.getvalue()
            buf = io.BytesIO()
            out["copy from table"] = await conn.copy_from_table(table, output=buf, columns=["id", "b"])
            out["copy from table data"] = buf.getvalue()
            with pytest.raises(asyncpg.UniqueViolationError) as err:
                await conn.copy_records_to_table(table, records=[(1, "dup", None, None, None)])
            out["copy error"] = error_dict(err.value)
            out["count"] = await conn.fetchval(f"SELECT count(*) FROM {table}")
            out["sum"] = await conn.fetchval(f"SELECT sum(n) FROM {table}")
        finally:
            await conn.close()
        results.append(out)
    direct, proxied = results
    assert proxied["executemany"] is None
    assert proxied["copy records"] == "COPY 1500"
    assert proxied["copy to table text"] == "COPY 100" and proxied["copy to table csv"] == "COPY 2"
    assert proxied["copy from query"] == "COPY 22"  # 1, 101, ..., 1901, 3001, 4001
    assert proxied["copy from query data"].startswith(b"1,row 1 \xe2\x9c\x93,0.1428571428571428571428571429\n")
    assert proxied["copy from table"] == "COPY 2102"
    assert b"2000\t\\\\xd000ff\n" in proxied["copy from table data"]
    assert proxied["copy error"]["sqlstate"] == "23505" and proxied["copy error"]["detail"] == \
        "Key (id)=(1) already exists."
    assert proxied["count"] == 2102
    assert proxied == direct


async def test_transactions(pg_proxy: Endpoint, pg_fresh_table: Any) -> None:
    table = pg_fresh_table("t_asyncpg_tx", TX_TABLE_DDL)

    async def run_simple(conn: asyncpg.Connection, steps: Sequence[Step]) -> list[Observation]:
        return await run(conn, steps)

    await check_transactions_async(lambda: connect(pg_proxy), table, run_simple)
    conn = await connect(pg_proxy)
    try:  # asyncpg's transaction() helper: savepoints nested in a transaction
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} (v) VALUES ('outer')")
            with pytest.raises(asyncpg.DivisionByZeroError):
                async with conn.transaction():
                    await conn.execute(f"INSERT INTO {table} (v) VALUES ('inner')")
                    await conn.execute("SELECT 1/0")
        assert [r[0] for r in await conn.fetch(f"SELECT v FROM {table} ORDER BY id")] == ["committed", "outer"]
    finally:
        await conn.close()


async def test_logins_tls_and_notices(pg_proxy: Endpoint, require_dbmesh: None) -> None:
    for user, password in (("root", "rootpw"), ("md5client", "md5pw"), ("plainclient", "plainpw")):
        conn = await connect(pg_proxy.as_user(user, password))
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
    for user in ("root", "md5client", "plainclient"):
        with pytest.raises(asyncpg.InvalidPasswordError) as err:
            await connect(pg_proxy.as_user(user, "wrong"))
        assert err.value.sqlstate == "28P01"
    conn = await connect(pg_proxy, ssl=insecure_context())
    try:
        assert conn._transport.get_extra_info("ssl_object") is not None
        assert await conn.fetchval("SELECT $1::text", "tls ✓") == "tls ✓"
    finally:
        await conn.close()


async def test_notices(pg_direct: Endpoint, pg_proxy: Endpoint) -> None:
    got = []
    for ep in (pg_direct, pg_proxy):
        conn = await connect(ep)
        seen: list[Any] = []
        conn.add_log_listener(lambda _c, msg, out=seen: out.append((type(msg).__name__, msg.sqlstate, msg.message)))
        try:
            await conn.execute("DO $$ BEGIN RAISE NOTICE 'hi'; END $$")
            await conn.fetchval("SELECT 1")
            await asyncio.sleep(0.05)
        finally:
            await conn.close()
        got.append(seen)
    assert got[1] == [("PostgresLogMessage", "00000", "hi")]
    assert got[0] == got[1]


async def test_rollback_after_error_in_transaction(pg_direct: Endpoint, pg_proxy: Endpoint,
                                                   pg_fresh_table: Any) -> None:
    """BEGIN, a statement that fails (extended protocol), ROLLBACK: the way every ORM recovers from an
    IntegrityError. The ROLLBACK must reach the backend as it is and succeed."""
    results = []
    for ep in (pg_direct, pg_proxy):
        table = pg_fresh_table("t_asyncpg_rb", "CREATE TABLE {t} (i int PRIMARY KEY); INSERT INTO {t} VALUES (1)")
        conn = await connect(ep)
        steps: list[Any] = []
        try:
            tr = conn.transaction()
            await tr.start()
            steps.append([tuple(r) for r in await conn.fetch(f"SELECT i FROM {table}")])
            try:
                await conn.fetch(f"INSERT INTO {table} VALUES ($1) RETURNING i", 1)
            except asyncpg.PostgresError as exc:
                steps.append(exc.sqlstate)
            try:
                await tr.rollback()
                steps.append("rolled back")
            except asyncpg.PostgresError as exc:
                steps.append((exc.sqlstate, str(exc)))
            steps.append(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        finally:
            await conn.close()
        results.append(steps)
    assert results[1] == [[(1,)], "23505", "rolled back", 1]
    assert results[0] == results[1]
