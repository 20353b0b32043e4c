"""Shared pieces of the client matrix: endpoints, the table every client uses, the statement scenarios
and the differential comparator.

The matrix is differential (as PgDog's ``integration/`` and our principle 13): each client runs the same
scenario twice with the same driver — once against MariaDB directly, once through dbmesh — on a table it
recreates before each run, so AUTO_INCREMENT ids, affected-row counts, warnings and errors must agree.
The comparator then asserts that the two traces are identical step by step: rows, column metadata
(``cursor.description``), affected rows, insert ids, warning counts and errors (code, SQLSTATE, message).
Absolute expectations (3 rows inserted, first id 1, error 1146/42S02, ...) are asserted on top, so a
client that misbehaves the same way on both paths still fails.

A scenario is data: a list of ``Step`` (label, SQL, parameters). Each client supplies an executor that
turns one step into an ``Observation``; sync DB-API drivers share ``run_dbapi_steps``, async drivers
``run_async_steps``.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import inspect
import pprint
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

DATABASE = "dbmesh_test"


# -- endpoints ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where a client connects: MariaDB directly or dbmesh, with a user that exists there."""

    name: str  # "direct" | "dbmesh"
    host: str
    port: int
    user: str
    password: str
    database: str = DATABASE

    def as_user(self, user: str, password: str) -> Endpoint:
        return replace(self, user=user, password=password)


# -- the table ---------------------------------------------------------------------------------------

# Varied column types; `short` (VARCHAR(5)) exists so INSERT IGNORE can truncate and warn.
COLUMNS = ("id", "i", "bu", "d", "dbl", "vc", "txt", "bl", "dt", "dtm", "tm", "ts", "js", "en", "short")


def table_ddl(table: str) -> str:
    return f"""CREATE TABLE `{table}` (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  i INT NULL,
  bu BIGINT UNSIGNED NULL,
  d DECIMAL(10,2) NULL,
  dbl DOUBLE NULL,
  vc VARCHAR(100) CHARACTER SET utf8mb4 NULL,
  txt TEXT NULL,
  bl BLOB NULL,
  dt DATE NULL,
  dtm DATETIME(6) NULL,
  tm TIME NULL,
  ts TIMESTAMP NULL DEFAULT NULL,
  js JSON NULL,
  en ENUM('red','green','blue') NULL,
  short VARCHAR(5) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


EMOJI_TEXT = "héllo wörld 😀 — ✓ 中文"
BINARY = bytes(range(256)) + b"\x00\xff\x00"  # every byte value, NUL and 0xFF included
LONG_TEXT = "long text ⚙ " * 500
JSON_DOC = '{"a": [1, 2, {"b": null}], "emoji": "😀", "n": 1.5}'

# Values for every column but id, as Python objects the DB-API drivers escape (or bind) themselves.
SAMPLE_ROWS: tuple[tuple[Any, ...], ...] = (
    (
        42,
        18446744073709551615,
        decimal.Decimal("12345678.90"),
        3.141592653589793,
        EMOJI_TEXT,
        LONG_TEXT,
        BINARY,
        datetime.date(2024, 2, 29),
        datetime.datetime(2024, 1, 2, 3, 4, 5, 123456),
        datetime.timedelta(hours=25, minutes=3, seconds=4),
        datetime.datetime(2024, 5, 6, 7, 8, 9),
        JSON_DOC,
        "green",
        "abc",
    ),
    (None,) * 14,  # all NULL
    (
        -2147483648,
        0,
        decimal.Decimal("-0.01"),
        -1.5e-300,
        "",
        "",
        b"\x00",
        datetime.date(1000, 1, 1),
        datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
        -datetime.timedelta(hours=838, minutes=59, seconds=59),
        datetime.datetime(2001, 9, 9, 1, 46, 40),
        "[]",
        "red",
        "",
    ),
)

INSERT_COLUMNS = ", ".join(COLUMNS[1:])
PLACEHOLDERS = ", ".join(["%s"] * (len(COLUMNS) - 1))


def insert_sql(table: str, rows: int = 1, placeholder: str = "%s") -> str:
    one = "(" + ", ".join([placeholder] * (len(COLUMNS) - 1)) + ")"
    return f"INSERT INTO `{table}` ({INSERT_COLUMNS}) VALUES " + ", ".join([one] * rows)


def flat(rows: Iterable[Sequence[Any]]) -> tuple[Any, ...]:
    return tuple(v for row in rows for v in row)


# -- scenarios ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    label: str
    sql: str
    params: tuple[Any, ...] | None = None


def select_all(table: str) -> str:
    return f"SELECT {', '.join(COLUMNS)} FROM `{table}` ORDER BY id"


def expression_select(table: str) -> str:
    """Server-computed columns: their types and lengths come from the server, so metadata must match."""
    return (
        f"SELECT id, bu + 0 AS bu_num, d * 2 AS d2, LENGTH(bl) AS bl_len, HEX(bl) AS bl_hex, "
        f"CHAR_LENGTH(vc) AS vc_chars, JSON_EXTRACT(js, '$.a[1]') AS js_a1, en + 0 AS en_idx, "
        f"CAST(dtm AS CHAR) AS dtm_text, TIME_TO_SEC(tm) AS tm_sec, UNIX_TIMESTAMP(ts) IS NULL AS ts_null, "
        f"COALESCE(vc, 'NULL!') AS vc_or, NULL AS nothing, 1.5e0 AS dbl_lit, 'literal' AS lit "
        f"FROM `{table}` ORDER BY id"
    )


def crud_steps(table: str, rows: Sequence[tuple[Any, ...]] = SAMPLE_ROWS) -> list[Step]:
    """The CRUD scenario (``%s`` parameters, escaped by the client or bound by a prepared cursor)."""
    return [
        Step("insert 3 rows", insert_sql(table, 3), flat(rows)),
        Step("insert 1 row", insert_sql(table, 1), rows[0]),
        Step("select all", select_all(table)),
        Step("select expressions", expression_select(table)),
        Step("select where param", f"SELECT id, vc, bl FROM `{table}` WHERE vc = %s AND bl = %s ORDER BY id",
             (EMOJI_TEXT, BINARY)),
        Step("update 2 rows", f"UPDATE `{table}` SET i = i + 1 WHERE id IN (1, 3)"),
        Step("update matches 2 changes 1", f"UPDATE `{table}` SET en = 'green' WHERE id IN (1, 3)"),
        Step("update no match", f"UPDATE `{table}` SET i = 0 WHERE id = 999"),
        Step("insert ignore truncates", f"INSERT IGNORE INTO `{table}` (short) VALUES (%s)", ("too long for five",)),
        Step("show warnings", "SHOW WARNINGS"),
        Step("warning count", "SELECT @@warning_count AS wc"),
        Step("missing table", "SELECT * FROM `no_such_table_for_client_matrix`"),
        Step("duplicate key", f"INSERT INTO `{table}` (id) VALUES (1)"),
        Step("syntax error", "SELEC 1"),
        Step("delete 1 row", f"DELETE FROM `{table}` WHERE id = 2"),
        Step("delete nothing", f"DELETE FROM `{table}` WHERE id = 999"),
        Step("count", f"SELECT COUNT(*) AS n, SUM(i) AS s FROM `{table}`"),
        Step("select after", select_all(table)),
        Step("select empty", f"SELECT id, vc FROM `{table}` WHERE 1 = 0"),
    ]


def found_rows_steps(table: str) -> list[Step]:
    """UPDATE counts depend on CLIENT_FOUND_ROWS: matched rows with it, changed rows without."""
    return [
        Step("insert 3", f"INSERT INTO `{table}` (i, en) VALUES (1, 'red'), (2, 'green'), (3, 'green')"),
        Step("update 3 matched 1 changed", f"UPDATE `{table}` SET en = 'green' WHERE id IN (1, 2, 3)"),
        Step("update 3 matched 0 changed", f"UPDATE `{table}` SET en = 'green'"),
        Step("info", "SELECT ROW_COUNT() AS rc"),
    ]


# -- observations and the comparator ------------------------------------------------------------------


@dataclass
class Observation:
    """What one step produced, as the client reports it."""

    label: str
    rowcount: Any = None
    lastrowid: Any = None
    description: Any = None
    rows: Any = None
    warnings: Any = None
    error: tuple[Any, ...] | None = None  # (errno, sqlstate or None, message)
    extra: dict[str, Any] = field(default_factory=dict)


def error_info(exc: BaseException) -> tuple[Any, Any, Any]:
    """(errno, sqlstate, message) of a driver exception, whatever the driver."""
    errno = getattr(exc, "errno", None)
    sqlstate = getattr(exc, "sqlstate", None)
    msg = getattr(exc, "msg", None)
    args = getattr(exc, "args", ())
    if errno is None and args and isinstance(args[0], int):
        errno = args[0]
    if msg is None and len(args) > 1:
        msg = args[1]
    return (errno, sqlstate, msg if msg is not None else str(exc))


def assert_same_trace(direct: Sequence[Observation], proxied: Sequence[Observation], client: str) -> None:
    """Fail with the first differing step, both sides shown in full."""
    assert [o.label for o in direct] == [o.label for o in proxied], "scenario steps differ between runs"
    for d, p in zip(direct, proxied, strict=True):
        if d != p:
            raise AssertionError(
                f"{client}: step {d.label!r} differs between MariaDB direct and dbmesh\n"
                f"--- direct:\n{pprint.pformat(d, width=140)[:6000]}\n"
                f"--- dbmesh:\n{pprint.pformat(p, width=140)[:6000]}"
            )


def by_label(trace: Sequence[Observation]) -> dict[str, Observation]:
    return {o.label: o for o in trace}


def check_crud_expectations(trace: Sequence[Observation], *, found_rows: bool = False,
                            check_sqlstate: bool = True) -> None:
    """Absolute expectations for ``crud_steps`` (the proxied trace must also equal the direct one)."""
    o = by_label(trace)
    assert o["insert 3 rows"].error is None, o["insert 3 rows"]
    assert o["insert 3 rows"].rowcount == 3
    assert o["insert 3 rows"].lastrowid == 1  # a multi-row INSERT reports the first generated id
    assert o["insert 1 row"].rowcount == 1 and o["insert 1 row"].lastrowid == 4
    rows = o["select all"].rows
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert rows[1][1:] == (None,) * 14
    assert o["select where param"].rows is not None and [r[0] for r in o["select where param"].rows] == [1, 4]
    assert o["update 2 rows"].rowcount == 2
    assert o["update matches 2 changes 1"].rowcount == (2 if found_rows else 1)
    assert o["update no match"].rowcount == 0
    assert o["insert ignore truncates"].rowcount == 1
    warnings = o["show warnings"].rows
    assert len(warnings) == 1 and warnings[0][1] == 1265, warnings  # Data truncated for column 'short'
    errors = {k: o[k].error for k in ("missing table", "duplicate key", "syntax error")}
    assert errors["missing table"] is not None and errors["missing table"][0] == 1146, errors
    assert errors["duplicate key"] is not None and errors["duplicate key"][0] == 1062, errors
    assert errors["syntax error"] is not None and errors["syntax error"][0] == 1064, errors
    if check_sqlstate:
        assert errors["missing table"][1] == "42S02", errors
        assert errors["duplicate key"][1] == "23000", errors
        assert errors["syntax error"][1] == "42000", errors
    assert o["delete 1 row"].rowcount == 1
    assert o["delete nothing"].rowcount == 0
    assert [r[0] for r in o["select after"].rows] == [1, 3, 4, 5]
    assert o["select empty"].rows in ((), [])


# -- sync DB-API execution ----------------------------------------------------------------------------


def run_dbapi_steps(
    conn: Any,
    steps: Sequence[Step],
    *,
    errors: type[BaseException] | tuple[type[BaseException], ...],
    cursor: Callable[[Any], Any] | None = None,
    warnings: Callable[[Any, Any], Any] | None = None,
) -> list[Observation]:
    """Run each step on a fresh cursor of ``conn`` and record what the driver reports."""
    out: list[Observation] = []
    for step in steps:
        cur = cursor(conn) if cursor is not None else conn.cursor()
        try:
            if step.params is None:
                cur.execute(step.sql)
            else:
                cur.execute(step.sql, step.params)
            rows = tuple(tuple(r) for r in cur.fetchall()) if cur.description else None
            out.append(Observation(
                step.label,
                rowcount=cur.rowcount,
                lastrowid=cur.lastrowid,
                description=tuple(tuple(d) for d in cur.description) if cur.description else None,
                rows=rows,
                warnings=warnings(conn, cur) if warnings is not None else getattr(cur, "warning_count", None),
            ))
        except errors as exc:
            out.append(Observation(step.label, error=error_info(exc)))
        finally:
            cur.close()
    return out


# -- async drivers ------------------------------------------------------------------------------------


async def run_async_steps(
    conn: Any,
    steps: Sequence[Step],
    *,
    errors: type[BaseException] | tuple[type[BaseException], ...],
) -> list[Observation]:
    """Warning counts of OK packets are not recorded (neither driver keeps them after the cursor has
    read the result); the scenarios' ``SELECT @@warning_count`` and ``SHOW WARNINGS`` steps cover them."""
    """``run_dbapi_steps`` for aiomysql/asyncmy-style cursors (awaitable execute/fetchall/close)."""
    out: list[Observation] = []
    for step in steps:
        cur = conn.cursor()
        if inspect.isawaitable(cur):  # aiomysql: ``await conn.cursor()``; asyncmy: plain call
            cur = await cur
        try:
            if step.params is None:
                await cur.execute(step.sql)
            else:
                await cur.execute(step.sql, step.params)
            rows = tuple(tuple(r) for r in await cur.fetchall()) if cur.description else None
            out.append(Observation(
                step.label,
                rowcount=cur.rowcount,
                lastrowid=cur.lastrowid,
                description=tuple(tuple(d) for d in cur.description) if cur.description else None,
                rows=rows,
            ))
        except errors as exc:
            out.append(Observation(step.label, error=error_info(exc)))
        finally:
            await cur.close()
    return out


# -- transactions ------------------------------------------------------------------------------------


def transaction_steps(table: str) -> tuple[list[Step], list[Step], list[Step]]:
    """(committed, rolled back, visibility check) on ``table`` created by ``table_ddl``."""
    committed = [
        Step("begin", "START TRANSACTION"),
        Step("insert a", f"INSERT INTO `{table}` (i, vc) VALUES (100, 'committed')"),
        Step("commit", "COMMIT"),
    ]
    rolled_back = [
        Step("begin", "START TRANSACTION"),
        Step("insert b", f"INSERT INTO `{table}` (i, vc) VALUES (200, 'rolled back')"),
        Step("seen inside", f"SELECT vc FROM `{table}` ORDER BY id"),
        Step("rollback", "ROLLBACK"),
    ]
    check = [Step("seen after", f"SELECT vc FROM `{table}` ORDER BY id")]
    return committed, rolled_back, check


def first_column(obs: Observation) -> list[Any]:
    assert obs.error is None, obs
    return [r[0] for r in obs.rows]


def check_transactions(connect: Callable[[], Any], table: str,
                       run: Callable[[Any, Sequence[Step]], list[Observation]]) -> None:
    """A committed and a rolled-back transaction on one connection, watched from a second one.

    ``connect()`` returns an autocommit connection; ``run(conn, steps)`` executes steps on it.
    """
    committed, rolled_back, check = transaction_steps(table)
    c1, c2 = connect(), connect()
    try:
        for obs in run(c1, committed):
            assert obs.error is None, obs
        assert first_column(run(c2, check)[0]) == ["committed"]
        inside = run(c1, rolled_back[:3])
        assert all(o.error is None for o in inside), inside
        assert first_column(inside[2]) == ["committed", "rolled back"]
        # Not committed yet: the second connection does not see it.
        assert first_column(run(c2, check)[0]) == ["committed"]
        assert run(c1, rolled_back[3:])[0].error is None
        assert first_column(run(c1, check)[0]) == ["committed"]
        assert first_column(run(c2, check)[0]) == ["committed"]
    finally:
        c1.close()
        c2.close()


def expected_crud_rows(rows: Sequence[tuple[Any, ...]] = SAMPLE_ROWS) -> list[tuple[Any, ...]]:
    """``select all`` after the first two steps of ``crud_steps``, as Python values."""
    inserted = [*rows, rows[0]]
    return [(i + 1, *row) for i, row in enumerate(inserted)]


async def check_transactions_async(connect: Callable[[], Any], table: str,
                                   run: Callable[[Any, Sequence[Step]], Any]) -> None:
    """``check_transactions`` for async drivers (``connect`` and ``run`` are coroutine functions)."""
    committed, rolled_back, check = transaction_steps(table)
    c1, c2 = await connect(), await connect()
    try:
        for obs in await run(c1, committed):
            assert obs.error is None, obs
        assert first_column((await run(c2, check))[0]) == ["committed"]
        inside = await run(c1, rolled_back[:3])
        assert all(o.error is None for o in inside), inside
        assert first_column(inside[2]) == ["committed", "rolled back"]
        assert first_column((await run(c2, check))[0]) == ["committed"]
        assert (await run(c1, rolled_back[3:]))[0].error is None
        assert first_column((await run(c1, check))[0]) == ["committed"]
        assert first_column((await run(c2, check))[0]) == ["committed"]
    finally:
        for c in (c1, c2):
            result = c.close()
            if asyncio.iscoroutine(result):
                await result
