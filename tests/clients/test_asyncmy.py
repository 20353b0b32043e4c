"""asyncmy through dbmesh (text protocol, server-side prepared statements, its statement cache and
MariaDB bulk execution), compared with the same statements sent to MariaDB directly."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import asyncmy
import pytest
from asyncmy.constants import CLIENT
from asyncmy.errors import MySQLError

from tests.clients.common import (
    BINARY,
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

TABLE = "t_asyncmy"


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
        "database": ep.database,
        "autocommit": True,
        "charset": "utf8mb4",
        "connect_timeout": 10,
    }
    params.update(kwargs)
    return await asyncio.wait_for(asyncmy.connect(**params), 20)


async def run(conn: Any, steps: list[Step]) -> list[Observation]:
    return await asyncio.wait_for(run_async_steps(conn, steps, errors=MySQLError), 60)


async def test_connect(proxy: Endpoint) -> None:
    conn = await connect(proxy)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1, DATABASE()")
            assert await cur.fetchall() == ((1, "dbmesh_test"),)
    finally:
        conn.close()


@pytest.mark.parametrize("user", ["root", "sha2user"])
async def test_connect_tls(proxy: Endpoint, user: str) -> None:
    ep = proxy if user == "root" else proxy.as_user("sha2user", "sha2pw")
    conn = await connect(ep, ssl=insecure_context())
    try:
        assert conn._secure  # set once the in-protocol TLS upgrade (SSLRequest) completed
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1")
            assert await cur.fetchall() == ((1,),)
    finally:
        conn.close()


async def test_sha2_user_plain(sha2_proxy: Endpoint) -> None:
    conn = await connect(sha2_proxy)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT 2")
            assert await cur.fetchall() == ((2,),)
    finally:
        conn.close()


@pytest.mark.parametrize("user", ["root", "sha2user"])
async def test_wrong_password_is_1045(proxy: Endpoint, user: str) -> None:
    with pytest.raises(MySQLError) as info:
        await connect(proxy.as_user(user, "wrong"), ssl=insecure_context())
    assert info.value.args[0] == 1045
    assert info.value.sqlstate == "28000"


@pytest.mark.parametrize("mode", ["text", "tls", "stmt-cache"])
async def test_crud_matches_direct(direct: Endpoint, proxy: Endpoint, fresh_table: Any, mode: str) -> None:
    """``stmt-cache``: asyncmy runs parameterised statements as server-side prepared statements."""
    extra: dict[str, Any] = {"stmt_cache_size": 32} if mode == "stmt-cache" else {}
    traces = {}
    for ep in (direct, proxy):
        fresh_table(TABLE)
        conn = await connect(ep, ssl=insecure_context() if mode == "tls" and ep is proxy else None, **extra)
        try:
            traces[ep.name] = await run(conn, crud_steps(TABLE))
        finally:
            conn.close()
    assert_same_trace(traces["direct"], traces["dbmesh"], f"asyncmy {mode}")
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
    assert_same_trace(traces["direct"], traces["dbmesh"], "asyncmy")
    o = by_label(traces["dbmesh"])
    assert o["update 3 matched 1 changed"].rowcount == (3 if found_rows else 1)


LARGE_DDL = f"CREATE TABLE `{TABLE}` (id INT AUTO_INCREMENT PRIMARY KEY, bl LONGBLOB, txt LONGTEXT, i INT)"


async def _prepared_run(conn: Any) -> list[Any]:
    """COM_STMT_PREPARE/EXECUTE/CLOSE with NULL, binary, utf8mb4 and a 2 MiB parameter; errors too."""
    big = (BINARY * 9000)[: 2 * 1024 * 1024 + 3]
    out: list[Any] = []

    def result(r: Any) -> Any:
        return (r.rows, r.description, r.affected_rows, r.insert_id)

    ins = await conn.prepare(f"INSERT INTO `{TABLE}` (bl, txt, i) VALUES (?, ?, ?)")
    out.append(("params", ins.parameter_count))
    out.append(result(await ins.execute((BINARY, "é😀", None))))
    out.append(result(await ins.execute((big, None, 7))))
    out.append(result(await ins.execute((None, None, None))))
    await ins.close()
    sel = await conn.prepare(f"SELECT id, LENGTH(bl), MD5(bl), txt, i, bl = ? AS same FROM `{TABLE}` ORDER BY id")
    out.append(result(await sel.execute((BINARY,))))
    out.append(result(await sel.execute((None,))))
    await sel.close()
    back = await conn.prepare(f"SELECT bl FROM `{TABLE}` WHERE id = ?")
    out.append((await back.execute((2,))).rows == ((big,),))
    await back.close()
    for bad in ("SELECT * FROM no_such_table_for_client_matrix WHERE a = ?", "SELEC ?"):
        try:
            await conn.prepare(bad)
            out.append("prepared?!")
        except MySQLError as exc:
            out.append(("error", exc.args[0], exc.sqlstate, exc.args[1]))
    dup = await conn.prepare(f"INSERT INTO `{TABLE}` (id) VALUES (?)")
    try:
        await dup.execute((1,))
        out.append("inserted?!")
    except MySQLError as exc:
        out.append(("error", exc.args[0], exc.sqlstate, exc.args[1]))
    await dup.close()
    async with conn.cursor() as cur:  # the connection is still in step after all of that
        await cur.execute("SELECT 'after'")
        out.append(await cur.fetchall())
    return out


async def test_prepared_statements_match_direct(direct: Endpoint, proxy: Endpoint, fresh_table: Any) -> None:
    results = {}
    for ep in (direct, proxy):
        fresh_table(TABLE, LARGE_DDL)
        conn = await connect(ep)
        try:
            results[ep.name] = await asyncio.wait_for(_prepared_run(conn), 60)
        finally:
            conn.close()
    assert results["dbmesh"] == results["direct"]
    got = results["dbmesh"]
    assert got[0] == ("params", 3)
    assert [r[2:] for r in got[1:4]] == [(1, 1), (1, 2), (1, 3)]
    assert [row[0] for row in got[4][0]] == [1, 2, 3] and got[4][0][0][5] == 1
    assert got[6] is True
    assert got[7][1:3] == (1146, "42S02") and got[8][1:3] == (1064, "42000") and got[9][1:3] == (1062, "23000")


async def test_bulk_execute_matches_direct(direct: Endpoint, proxy: Endpoint, fresh_table: Any) -> None:
    """executemany with the statement cache: MariaDB's COM_STMT_BULK_EXECUTE when the server offers it."""
    rows = [(i, f"row {i} 😀", bytes([i % 256, 0, 255])) for i in range(50)] + [(None, None, None)]
    results = {}
    for ep in (direct, proxy):
        fresh_table(TABLE)
        conn = await connect(ep, stmt_cache_size=8)
        try:
            async with conn.cursor() as cur:
                n = await cur.executemany(f"INSERT INTO `{TABLE}` (i, vc, bl) VALUES (%s, %s, %s)", rows)
                await cur.execute(f"SELECT i, vc, bl FROM `{TABLE}` ORDER BY id")
                results[ep.name] = (n, await cur.fetchall(), conn._bulk_supported)
        finally:
            conn.close()
    assert results["dbmesh"][:2] == results["direct"][:2]
    assert results["dbmesh"][0] == len(rows) and list(results["dbmesh"][1]) == rows


async def test_transactions(proxy: Endpoint, fresh_table: Any) -> None:
    fresh_table(TABLE)
    await check_transactions_async(lambda: connect(proxy), TABLE, run)


async def test_two_concurrent_connections(proxy: Endpoint, fresh_table: Any) -> None:
    """Two connections on one event loop, 200 statements each, interleaved."""
    fresh_table(TABLE)

    async def worker(k: int) -> list[str]:
        bad: list[str] = []
        conn = await connect(proxy)
        try:
            async with conn.cursor() as cur:
                for n in range(100):
                    await cur.execute(f"INSERT INTO `{TABLE}` (i, vc) VALUES (%s, %s)", (k * 1000 + n, f"a{k}"))
                    await cur.execute(f"SELECT %s, COUNT(*) FROM `{TABLE}` WHERE vc = %s", (k * 1000 + n, f"a{k}"))
                    got = await cur.fetchall()
                    if got != ((k * 1000 + n, n + 1),):
                        bad.append(f"worker {k} step {n}: {got!r}")
        finally:
            conn.close()
        return bad

    failures = await asyncio.wait_for(asyncio.gather(worker(1), worker(2)), 120)
    assert failures == [[], []]
