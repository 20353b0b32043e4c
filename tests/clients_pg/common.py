"""Shared pieces of the PostgreSQL client matrix: endpoints, the table every client uses, the scenarios
and the differential comparator (the PostgreSQL twin of tests/clients/common.py).

Each client runs the same scenario twice with the same driver — once against PostgreSQL directly, once
through dbmesh's PostgreSQL listener — on a table recreated before each run (so ``serial`` ids, command
tags and errors must agree). The comparator asserts the two traces are identical step by step: rows (as
the driver decodes them), column names, type OIDs, command tags / row counts and errors (SQLSTATE,
message, detail, position, constraint). Absolute expectations (ids 1..4, 23505/42P01/22012/42601, ...)
are asserted on top, so a client that misbehaves the same way on both paths still fails.

The scenario is data: ``Step`` (label, SQL with ``%s`` placeholders, parameters). Drivers that number
their placeholders get ``dollar(sql)``. Every placeholder carries an explicit cast, so each driver may
send its parameters typed or untyped and the server still sees the same types.
"""

from __future__ import annotations

import datetime
import decimal
import json
import pprint
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

DATABASE = "dbmesh_pg"

# Backend ParameterStatus values a client must see the same directly and through dbmesh. Left out:
# session_authorization / is_superuser (the dbmesh user is not the backend login), application_name
# (a client choice), in_hot_standby / default_transaction_read_only are included: same server.
COMPARED_PARAMETERS = (
    "server_version", "server_encoding", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone",
    "integer_datetimes", "standard_conforming_strings", "default_transaction_read_only", "in_hot_standby",
)


# -- endpoints ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where a client connects: PostgreSQL directly or dbmesh, with a user that exists there."""

    name: str  # "direct" | "dbmesh"
    host: str
    port: int
    user: str
    password: str
    database: str = DATABASE

    def as_user(self, user: str, password: str) -> Endpoint:
        return replace(self, user=user, password=password)

    def dsn(self, **extra: Any) -> str:
        params: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user,
                                  "password": self.password, "dbname": self.database, "sslmode": "disable",
                                  "connect_timeout": 10}
        params.update(extra)
        return " ".join(f"{k}='{v}'" for k, v in params.items())

    def url(self, scheme: str = "postgresql") -> str:
        return f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"


# -- the table ---------------------------------------------------------------------------------------

COLUMNS = ("id", "i4", "i8", "num", "f8", "txt", "bin", "d", "ts", "tstz", "iv", "u", "j", "arr", "tarr", "b")
CASTS = ("int4", "int8", "numeric", "float8", "text", "bytea", "date", "timestamp", "timestamptz",
         "interval", "uuid", "jsonb", "int4[]", "text[]", "bool")


def table_ddl(table: str) -> str:
    return f"""CREATE TABLE {table} (
  id serial PRIMARY KEY,
  i4 int4, i8 int8, num numeric(24,6), f8 float8, txt text, bin bytea, d date, ts timestamp(6),
  tstz timestamptz, iv interval, u uuid, j jsonb, arr int4[], tarr text[], b bool,
  CONSTRAINT {table}_i4_key UNIQUE (i4)
)"""


EMOJI_TEXT = "héllo wörld 😀 — ✓ 中文"
BINARY = b"\x00\xff" + bytes(range(256)) + b"\x00"
JSON_DOC = '{"a": [1, 2, {"b": null}], "emoji": "😀", "n": 1.5}'
UUID_A = "12345678-1234-5678-1234-567812345678"
UTC = datetime.UTC

# Parameters for every column but id, as Python objects (uuid and jsonb as text: every driver sends a
# str, and the cast in the SQL types it).
SAMPLE_ROWS: tuple[tuple[Any, ...], ...] = (
    (
        2147483647, 9223372036854775807, decimal.Decimal("123456789012345678.123456"), 3.141592653589793,
        EMOJI_TEXT, BINARY, datetime.date(2024, 2, 29), datetime.datetime(2024, 1, 2, 3, 4, 5, 123456),
        datetime.datetime(2024, 5, 6, 7, 8, 9, 654321, tzinfo=UTC),
        datetime.timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=500000),
        UUID_A, JSON_DOC, [1, 2, None, 4], ["a", "b c", "😀", None], True,
    ),
    (None,) * 15,
    (
        -2147483648, -9223372036854775808, decimal.Decimal("-0.000001"), -1.5e-300, "", b"",
        datetime.date(1970, 1, 1), datetime.datetime(1999, 12, 31, 23, 59, 59),
        datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))),
        datetime.timedelta(0), "00000000-0000-0000-0000-000000000000", "[]", [], [], False,
    ),
)
FOURTH_ROW = (7, *SAMPLE_ROWS[0][1:])  # i4 is UNIQUE: the 4th row copies row 1 with another i4

INSERT_COLUMNS = ", ".join(COLUMNS[1:])


def _values(placeholder: str = "%s") -> str:
    # (%s)::type, not %s::type: psycopg2 interpolates -2147483648 as text, and -2147483648::int4 parses as
    # -(2147483648::int4), which overflows.
    return "(" + ", ".join(f"({placeholder})::{c}" for c in CASTS) + ")"


def insert_sql(table: str, rows: int = 1, returning: bool = False) -> str:
    sql = f"INSERT INTO {table} ({INSERT_COLUMNS}) VALUES " + ", ".join([_values()] * rows)
    return sql + (" RETURNING id" if returning else "")


def flat(rows: Iterable[Sequence[Any]]) -> tuple[Any, ...]:
    return tuple(v for row in rows for v in row)


def dollar(sql: str) -> str:
    """``%s`` placeholders to ``$1, $2, ...`` (asyncpg, node-postgres, pg8000 native)."""
    counter = iter(range(1, 10_000))
    return re.sub(r"%s", lambda _m: f"${next(counter)}", sql)


# -- scenarios ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    label: str
    sql: str
    params: tuple[Any, ...] | None = None


def select_all(table: str) -> str:
    return f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY id"


def expression_select(table: str) -> str:
    """Server-computed columns: their names and types come from the server, so metadata must match."""
    return (
        f"SELECT id, i8 / 2 AS i8_half, num * 2 AS num2, octet_length(bin) AS bin_len, "
        f"encode(bin, 'hex') AS bin_hex, char_length(txt) AS txt_chars, j -> 'a' AS j_a, j ->> 'emoji' AS j_emoji, "
        f"arr[1] AS arr1, cardinality(tarr) AS tarr_n, tstz AT TIME ZONE 'UTC' AS tstz_utc, iv * 2 AS iv2, "
        f"u::text AS u_text, NOT b AS not_b, coalesce(txt, 'NULL!') AS txt_or, NULL::int AS nothing, "
        f"1.5::float8 AS f8_lit, 'literal' AS lit, ts::date AS ts_date, extract(epoch FROM ts) AS ts_epoch "
        f"FROM {table} ORDER BY id"
    )


def crud_steps(table: str) -> list[Step]:
    return [
        Step("insert 3 rows returning", insert_sql(table, 3, returning=True), flat(SAMPLE_ROWS)),
        Step("insert 1 row", insert_sql(table, 1), FOURTH_ROW),
        Step("select all", select_all(table)),
        Step("select expressions", expression_select(table)),
        Step("select where params", f"SELECT id, txt, bin FROM {table} WHERE txt = %s::text AND bin = %s::bytea "
             "ORDER BY id", (EMOJI_TEXT, BINARY)),
        Step("select null param", f"SELECT id FROM {table} WHERE i4 IS NOT DISTINCT FROM %s::int4 ORDER BY id",
             (None,)),
        Step("update 2 rows", f"UPDATE {table} SET f8 = f8 * 2 WHERE id IN (1, 3)"),
        Step("update no match", f"UPDATE {table} SET f8 = 0 WHERE id = 999"),
        Step("duplicate key", f"INSERT INTO {table} (i4) VALUES (2147483647)"),
        Step("missing table", "SELECT * FROM no_such_table_for_pg_matrix"),
        Step("division by zero", "SELECT 1 / 0 AS x"),
        Step("syntax error", "SELEC 1"),
        Step("after errors", "SELECT 'still usable' AS ok"),
        Step("delete 1 row", f"DELETE FROM {table} WHERE id = 2"),
        Step("delete nothing", f"DELETE FROM {table} WHERE id = 999"),
        Step("count", f"SELECT count(*) AS n, sum(i4) AS s FROM {table}"),
        Step("select after", select_all(table)),
        Step("select empty", f"SELECT id, txt FROM {table} WHERE false"),
    ]


# -- observations and the comparator ------------------------------------------------------------------


@dataclass
class Observation:
    """What one step produced, as the client reports it."""

    label: str
    status: Any = None  # command tag ("INSERT 0 3"), or what the driver keeps of it (rowcount)
    columns: Any = None  # ((name, type oid), ...) or None without a result
    rows: Any = None
    error: dict[str, Any] | None = None  # sqlstate, message, detail, position, constraint, ...
    extra: dict[str, Any] = field(default_factory=dict)


def assert_same_trace(direct: Sequence[Observation], proxied: Sequence[Observation], client: str) -> None:
    """Fail with the first differing step, both sides shown in full."""
    assert [o.label for o in direct] == [o.label for o in proxied], "scenario steps differ between runs"
    for d, p in zip(direct, proxied, strict=True):
        if d != p:
            raise AssertionError(
                f"{client}: step {d.label!r} differs between PostgreSQL direct and dbmesh\n"
                f"--- direct:\n{pprint.pformat(d, width=140)[:6000]}\n"
                f"--- dbmesh:\n{pprint.pformat(p, width=140)[:6000]}"
            )


def by_label(trace: Sequence[Observation]) -> dict[str, Observation]:
    return {o.label: o for o in trace}


def check_crud_expectations(trace: Sequence[Observation], *, rowcount: Callable[[Observation], Any] | None = None,
                            has_position: bool = True, has_detail: bool = True) -> None:
    """Absolute expectations for ``crud_steps`` (the proxied trace must also equal the direct one).

    ``rowcount(obs)`` extracts the affected-row count from a step's status (default: ``obs.status``).
    """
    count = rowcount or (lambda o: o.status)
    o = by_label(trace)
    for label in ("insert 3 rows returning", "insert 1 row", "select all", "after errors", "select after"):
        assert o[label].error is None, o[label]
    assert [r[0] for r in o["insert 3 rows returning"].rows] == [1, 2, 3]
    assert count(o["insert 1 row"]) == 1
    rows = o["select all"].rows
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert tuple(rows[1][1:]) == (None,) * 15
    assert rows[0][5] == EMOJI_TEXT and bytes(rows[0][6]) == BINARY and rows[0][1] == 2147483647
    assert rows[0][2] == 9223372036854775807 and rows[2][2] == -9223372036854775808
    assert [r[0] for r in o["select where params"].rows] == [1, 4]
    assert [r[0] for r in o["select null param"].rows] == [2]
    assert count(o["update 2 rows"]) == 2
    assert count(o["update no match"]) == 0
    errors = {k: o[k].error for k in ("duplicate key", "missing table", "division by zero", "syntax error")}
    assert all(e is not None for e in errors.values()), errors
    assert errors["duplicate key"]["sqlstate"] == "23505", errors
    assert errors["missing table"]["sqlstate"] == "42P01", errors
    assert errors["division by zero"]["sqlstate"] == "22012", errors
    assert errors["syntax error"]["sqlstate"] == "42601", errors
    assert errors["division by zero"]["message"] == "division by zero"
    assert errors["missing table"]["message"] == 'relation "no_such_table_for_pg_matrix" does not exist'
    if has_detail:
        assert errors["duplicate key"]["detail"] == "Key (i4)=(2147483647) already exists.", errors
    if has_position:
        assert str(errors["missing table"]["position"]) == "15", errors
        assert str(errors["syntax error"]["position"]) == "1", errors
    assert o["after errors"].rows[0][0] == "still usable"
    assert count(o["delete 1 row"]) == 1
    assert count(o["delete nothing"]) == 0
    assert [r[0] for r in o["select after"].rows] == [1, 3, 4]
    assert list(o["select empty"].rows) == [] and o["select empty"].columns is not None


# -- transactions ------------------------------------------------------------------------------------

TX_TABLE_DDL = "CREATE TABLE {t} (id serial PRIMARY KEY, v text)"


def transaction_steps(table: str) -> tuple[list[Step], list[Step], list[Step]]:
    """(committed, rolled back, visibility check) on ``table`` (id serial, v text)."""
    committed = [
        Step("begin", "BEGIN"),
        Step("insert a", f"INSERT INTO {table} (v) VALUES ('committed')"),
        Step("commit", "COMMIT"),
    ]
    rolled_back = [
        Step("begin", "BEGIN"),
        Step("insert b", f"INSERT INTO {table} (v) VALUES ('rolled back')"),
        Step("seen inside", f"SELECT v FROM {table} ORDER BY id"),
        Step("rollback", "ROLLBACK"),
    ]
    check = [Step("seen after", f"SELECT v FROM {table} ORDER BY id")]
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
        assert first_column(run(c2, check)[0]) == ["committed"]  # not committed: invisible elsewhere
        assert run(c1, rolled_back[3:])[0].error is None
        assert first_column(run(c1, check)[0]) == ["committed"]
        assert first_column(run(c2, check)[0]) == ["committed"]
    finally:
        c1.close()
        c2.close()


async def check_transactions_async(connect: Callable[[], Any], table: str,
                                   run: Callable[[Any, Sequence[Step]], Any]) -> None:
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
            await c.close()


def jsonable(value: Any) -> Any:
    """Sample values as JSON for the node script (bytes as hex, dates as ISO text)."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=jsonable)


# -- sync DB-API execution ----------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """memoryview (psycopg2's bytea) as bytes, so traces compare and print by value."""
    return bytes(value) if isinstance(value, memoryview) else value


def run_dbapi_steps(conn: Any, steps: Sequence[Step], *, errors: type[BaseException] | tuple[type[BaseException], ...],
                    error_dict: Callable[[Any], dict[str, Any]], status: Callable[[Any], Any]) -> list[Observation]:
    """Run each step on a fresh cursor of ``conn``; record rows, (name, type oid) columns, the status the
    driver keeps (``status(cursor)``) or the error (``error_dict(exc)``)."""
    out: list[Observation] = []
    for step in steps:
        cur = conn.cursor()
        try:
            if step.params is None:
                cur.execute(step.sql)
            else:
                cur.execute(step.sql, step.params)
            desc = cur.description
            out.append(Observation(
                step.label, status=status(cur),
                columns=tuple((d[0], d[1]) for d in desc) if desc else None,
                rows=[tuple(_plain(v) for v in r) for r in cur.fetchall()] if desc else None))
        except errors as exc:
            out.append(Observation(step.label, error=error_dict(exc)))
        finally:
            cur.close()
    return out
