"""aiomysql through dbmesh, compared with the same statements sent to MariaDB directly.

aiomysql speaks the text protocol only (``%s`` escaped client-side; no server-side prepared statements).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiomysql
import aiomysql.connection
import pymysql.converters
import pytest
from pymysql.constants import CLIENT

from tests.clients.common import (
    Endpoint,
    Observation,
    Step,
    assert_same_trace,
    by_label,
    check_crud_expectations,
    check_transactions_async,
    crud_steps,
    expected_crud_rows,
    found_rows_steps,
    run_async_steps,
)

TABLE = "t_aiomysql"


def insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def connect(ep: Endpoint, **kwargs: Any) -> Any:
    params: dict[str, Any] = {
        "host": ep.host,
        "port": ep.port,
        "user": ep.user,
        "password": ep.password,
        "db": ep.database,
        "autocommit": True,
        "charset": "utf8mb4",
        "connect_timeout": 10,
    }
    params.update(kwargs)
    return await asyncio.wait_for(aiomysql.connect(**params), 20)


@pytest.fixture(autouse=True)
def _aiomysql_bytes_escaping(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiomysql 0.3.2 escapes ``bytes`` with ``pymysql.converters.escape_bytes_prefixed``, which PyMySQL 1.2
    replaced by the string "DO NOT IMPORT THIS!!!" (PyMySQL issue 1274): any bytes parameter raises
    "TypeError: 'str' object is not callable", against any server. Use PyMySQL 1.2's own bytes escaping
    (``_binary X'...'``) so the matrix can still send binary data through aiomysql."""
    if callable(aiomysql.connection.escape_bytes_prefixed):
        return  # a compatible pairing: leave it alone
    monkeypatch.setattr(aiomysql.connection, "escape_bytes_prefixed", pymysql.converters.escape_bytes)


async def run(conn: Any, steps: list[Step]) -> list[Observation]:
    return await asyncio.wait_for(run_async_steps(conn, steps, errors=aiomysql.MySQLError), 60)


async def test_connect(proxy: Endpoint) -> None:
    conn = await connect(proxy)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1, DATABASE()")
            assert await cur.fetchall() == ((1, "dbmesh_test"),)
        assert conn.get_transaction_status() is False
    finally:
        conn.close()


@pytest.mark.parametrize("user", ["root", "sha2user"])
async def test_connect_tls(proxy: Endpoint, user: str) -> None:
    ep = proxy if user == "root" else proxy.as_user("sha2user", "sha2pw")
    conn = await connect(ep, ssl=insecure_context())
    try:
        assert conn._writer.get_extra_info("sslcontext") is not None  # the stream was upgraded to TLS
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1")
            assert await cur.fetchall() == ((1,),)
    finally:
        conn.close()


@pytest.mark.parametrize("user", ["root", "sha2user"])
async def test_wrong_password_is_1045(proxy: Endpoint, user: str) -> None:
    with pytest.raises(aiomysql.OperationalError) as info:
        await connect(proxy.as_user(user, "wrong"), ssl=insecure_context())
    assert info.value.args[0] == 1045


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_crud_matches_direct(direct: Endpoint, proxy: Endpoint, fresh_table: Any, tls: bool) -> None:
    traces = {}
    for ep in (direct, proxy):
        fresh_table(TABLE)
        conn = await connect(ep, ssl=insecure_context() if tls and ep is proxy else None)
        try:
            traces[ep.name] = await run(conn, crud_steps(TABLE))
        finally:
            conn.close()
    assert_same_trace(traces["direct"], traces["dbmesh"], "aiomysql")
    check_crud_expectations(traces["dbmesh"])
    assert list(by_label(traces["dbmesh"])["select all"].rows) == expected_crud_rows()


@pytest.mark.parametrize("found_rows", [False, True], ids=["changed", "found"])
async def test_update_counts_with_and_without_found_rows(direct: Endpoint, proxy: Endpoint, fresh_table: Any,
                                                         found_rows: bool) -> None:
    traces = {}
    for ep in (direct, proxy):
        fresh_table(TABLE)
        conn = await connect(ep, client_flag=CLIENT.FOUND_ROWS if found_rows else 0)
        try:
            traces[ep.name] = await run(conn, found_rows_steps(TABLE))
        finally:
            conn.close()
    assert_same_trace(traces["direct"], traces["dbmesh"], "aiomysql")
    o = by_label(traces["dbmesh"])
    assert o["update 3 matched 1 changed"].rowcount == (3 if found_rows else 1)


async def test_transactions(proxy: Endpoint, fresh_table: Any) -> None:
    fresh_table(TABLE)
    await check_transactions_async(lambda: connect(proxy), TABLE, run)


async def test_transactions_with_driver_api(proxy: Endpoint, fresh_table: Any) -> None:
    fresh_table(TABLE)
    c1, c2 = await connect(proxy, autocommit=False), await connect(proxy)
    try:
        await c1.begin()
        async with c1.cursor() as cur:
            await cur.execute(f"INSERT INTO `{TABLE}` (vc) VALUES ('kept')")
        await c1.commit()
        await c1.begin()
        async with c1.cursor() as cur:
            await cur.execute(f"INSERT INTO `{TABLE}` (vc) VALUES ('dropped')")
        assert c1.get_transaction_status() is True  # SERVER_STATUS_IN_TRANS as dbmesh reports it
        await c1.rollback()
        for conn in (c1, c2):
            async with conn.cursor() as cur:
                await cur.execute(f"SELECT vc FROM `{TABLE}` ORDER BY id")
                assert await cur.fetchall() == (("kept",),)
    finally:
        c1.close()
        c2.close()


async def test_pool_two_concurrent_tasks(proxy: Endpoint, fresh_table: Any) -> None:
    """An aiomysql pool of 2, two tasks doing 200 statements each."""
    fresh_table(TABLE)
    pool = await aiomysql.create_pool(host=proxy.host, port=proxy.port, user=proxy.user, password=proxy.password,
                                      db=proxy.database, autocommit=True, minsize=2, maxsize=2)

    async def worker(k: int) -> list[str]:
        bad: list[str] = []
        async with pool.acquire() as conn, conn.cursor() as cur:
            for n in range(100):
                await cur.execute(f"INSERT INTO `{TABLE}` (i, vc) VALUES (%s, %s)", (n, f"p{k}"))
                await cur.execute(f"SELECT MAX(i), COUNT(*) FROM `{TABLE}` WHERE vc = %s", (f"p{k}",))
                got = await cur.fetchall()
                if got != ((n, n + 1),):
                    bad.append(f"worker {k} step {n}: {got!r}")
        return bad

    try:
        assert await asyncio.wait_for(asyncio.gather(worker(1), worker(2)), 120) == [[], []]
    finally:
        pool.close()
        await pool.wait_closed()
