"""The differential harness: run one statement on the plain database and through dbmesh, and compare what clients see.

A `Result` is what a client reports: column metadata (names and the client's type codes), rows as the driver
decoded them, and the affected-row count / command tag. `compare` checks metadata and rows, ordered or as a
multiset, and explains a difference with the SQL and the first rows that differ. Values compare by type and
exact text where the type allows it (``Decimal('1.50')`` differs from ``Decimal('1.5')``: a merged AVG must
have the database's scale).

Clients: PyMySQL (MySQL text protocol); psycopg 3 with the simple query protocol ("text"), binary results over
the extended protocol ("binary") and named prepared statements ("prepared"); asyncpg (extended protocol,
binary, prepared).
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.differential import dataset
from tests.support.sharded import fetch_nodes, run_statements

Dialect = Literal["mysql", "postgresql"]
PG_CLIENTS = ("text", "binary", "prepared", "asyncpg")


@dataclass(frozen=True)
class Endpoint:
    """Where a client connects: dbmesh's listener or the server itself."""

    host: str
    port: int
    user: str
    password: str
    database: str


@dataclass
class Result:
    columns: list[tuple[Any, ...]] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    affected: int | None = None
    status: str | None = None  # PostgreSQL command tag


@dataclass(frozen=True)
class ServerError:
    """An error the server (or dbmesh) returned: MySQL errno + SQLSTATE, or PostgreSQL SQLSTATE."""

    code: int | None
    sqlstate: str | None
    message: str


# -- connections -----------------------------------------------------------------------------------------------------


def mysql_connect(ep: Endpoint) -> Any:
    import pymysql

    return pymysql.connect(host=ep.host, port=ep.port, user=ep.user, password=ep.password, database=ep.database,
                           autocommit=True, charset="utf8mb4", connect_timeout=10, read_timeout=120)


def pg_connect(ep: Endpoint) -> Any:
    import psycopg

    return psycopg.connect(host=ep.host, port=ep.port, user=ep.user, password=ep.password, dbname=ep.database,
                           autocommit=True, connect_timeout=10, sslmode="disable")


class AsyncpgClient:
    """An asyncpg connection driven from synchronous tests on a private event loop."""

    def __init__(self, ep: Endpoint) -> None:
        import asyncpg

        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(
            host=ep.host, port=ep.port, user=ep.user, password=ep.password, database=ep.database, ssl=False,
            timeout=10, statement_cache_size=0))

    def run(self, sql: str, params: Sequence[Any] = ()) -> Result:
        async def go() -> Result:
            stmt = await self.conn.prepare(dollar(sql))
            columns = [(a.name, a.type.oid) for a in stmt.get_attributes()]
            rows = [tuple(r) for r in await stmt.fetch(*params)]
            return Result(columns, rows)

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.conn.close(timeout=5))
        except Exception:  # a connection a test broke: drop it without the goodbye
            self.conn.terminate()
        finally:
            self.loop.close()


def dollar(sql: str) -> str:
    """``%s`` placeholders numbered as ``$1, $2, ...`` (asyncpg)."""
    counter = iter(range(1, 1_000))
    return re.sub(r"%s", lambda _: f"${next(counter)}", sql)


# -- running statements ----------------------------------------------------------------------------------------------


def run_mysql(conn: Any, sql: str, params: Sequence[Any] = ()) -> Result:
    with conn.cursor() as cur:
        affected = cur.execute(sql, tuple(params) if params else None)
        if cur.description is None:
            return Result(affected=affected)
        # PyMySQL: (name, type_code, None, length, length, decimals, nullable)
        columns = [(d[0], d[1], d[3], d[5], d[6]) for d in cur.description]
        return Result(columns, [tuple(r) for r in cur.fetchall()], affected)


def run_pg(conn: Any, sql: str, params: Sequence[Any] = (), client: str = "text") -> Result:
    """psycopg: "text" is the simple query protocol (extended when there are parameters), "binary" the extended
    protocol with binary results, "prepared" a named prepared statement (Parse once, then Bind/Execute)."""
    binary = client == "binary"
    with conn.cursor(binary=binary) as cur:
        cur.execute(sql, tuple(params) if params else None, prepare=True if client == "prepared" else None)
        if cur.description is None:
            return Result(affected=cur.rowcount, status=cur.statusmessage)
        columns = [(d.name, d.type_code, d.internal_size, d.precision, d.scale) for d in cur.description]
        return Result(columns, [tuple(r) for r in cur.fetchall()], cur.rowcount, cur.statusmessage)


def catch(fn: Callable[[], Result]) -> Result | ServerError:
    """Run a statement; a database error becomes a `ServerError` value."""
    import psycopg
    import pymysql

    try:
        return fn()
    except pymysql.err.MySQLError as exc:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        return ServerError(code, getattr(exc, "sqlstate", None), message)
    except psycopg.Error as exc:
        return ServerError(None, exc.sqlstate, str(exc))


# -- comparison ------------------------------------------------------------------------------------------------------


def mysql_collation_key(text: str) -> str:
    """What utf8mb4_general_ci compares for the strings in the dataset: case and accents folded, trailing spaces
    ignored (PAD SPACE)."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return folded.casefold().rstrip(" ")


def canonical(value: Any, ci: bool) -> Any:
    """A hashable, type-tagged form in which equal means identical to the client."""
    if value is None:
        return ("NULL",)
    if isinstance(value, decimal.Decimal):
        return ("decimal", str(value))
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, str):
        return ("str", mysql_collation_key(value) if ci else value)
    if isinstance(value, bool | int | bytes | bytearray | datetime.date | datetime.time | datetime.timedelta):
        return (type(value).__name__, bytes(value) if isinstance(value, bytearray) else value)
    return (type(value).__name__, repr(value))


def canonical_rows(rows: Iterable[tuple[Any, ...]], ci: bool) -> list[tuple[Any, ...]]:
    return [tuple(canonical(v, ci) for v in row) for row in rows]


def compare(sql: str, plain: Result, mesh: Result, *, ordered: bool, ci: bool = False) -> str | None:
    """None when a client cannot tell the two results apart, else a report of the first difference."""
    head = f"SQL: {sql}\n"
    if plain.columns != mesh.columns:
        return head + f"column metadata differs\n  plain: {plain.columns}\n  mesh:  {mesh.columns}"
    if plain.status != mesh.status:
        return head + f"command tag differs: plain {plain.status!r}, mesh {mesh.status!r}"
    a, b = canonical_rows(plain.rows, ci), canonical_rows(mesh.rows, ci)
    if ordered:
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                return (head + f"row {i} differs (ordered comparison; plain {len(a)} rows, mesh {len(b)} rows)\n"
                        f"  plain: {plain.rows[i]!r}\n  mesh:  {mesh.rows[i]!r}")
        if len(a) != len(b):
            n = min(len(a), len(b))
            extra = plain.rows[n:n + 3] if len(a) > len(b) else mesh.rows[n:n + 3]
            return (head + f"row count differs: plain {len(a)}, mesh {len(b)}; the first {n} agree; "
                    f"next rows of the longer: {extra!r}")
    only_plain = Counter(a) - Counter(b)
    only_mesh = Counter(b) - Counter(a)
    if only_plain or only_mesh:
        def originals(rows: list[tuple[Any, ...]], canon: list[tuple[Any, ...]], keep: Counter[Any]) -> list[Any]:
            return [row for row, c in zip(rows, canon, strict=True) if c in keep][:5]

        return (head + f"rows differ (multiset comparison; plain {len(a)} rows, mesh {len(b)} rows)\n"
                f"  only in plain ({sum(only_plain.values())}): {originals(plain.rows, a, only_plain)!r}\n"
                f"  only in mesh ({sum(only_mesh.values())}): {originals(mesh.rows, b, only_mesh)!r}")
    if plain.affected != mesh.affected:
        return head + f"affected-row count differs: plain {plain.affected}, mesh {mesh.affected}"
    return None


def assert_same(sql: str, plain: Result | ServerError, mesh: Result | ServerError, *, ordered: bool,
                ci: bool = False) -> None:
    if isinstance(plain, ServerError):
        raise AssertionError(f"the plain database rejected the statement (the corpus is wrong): {plain}\nSQL: {sql}")
    if isinstance(mesh, ServerError):
        raise AssertionError(f"dbmesh returned an error where the plain database answered:\n  {mesh}\nSQL: {sql}")
    problem = compare(sql, plain, mesh, ordered=ordered, ci=ci)
    if problem:
        raise AssertionError(problem)


# -- loading and placement -------------------------------------------------------------------------------------------


def create_plain_schema(server: Any, dialect: str, database: str) -> None:
    """Drop and create every table under its logic name in an unsharded database."""
    statements: list[str] = []
    for table in dataset.TABLES:
        statements += [f"DROP TABLE IF EXISTS {table.name}", table.ddl_for(dialect).format(table=table.name)]
    statements.append("DROP TABLE IF EXISTS t_extra")
    run_statements(server, database, statements)


def load_rows(execute: Callable[[str], Any], tables: Iterable[dataset.Table] = dataset.TABLES) -> float:
    """Insert every table's rows with multi-row INSERTs through ``execute``; returns the seconds it took."""
    started = time.monotonic()
    for table in tables:
        for sql in table.insert_statements(dataset.rows_of(table)):
            execute(sql)
    return time.monotonic() - started


def place_directly(server: Any, physical: dict[str, str], table: dataset.Table,
                   rows: Sequence[tuple[Any, ...]]) -> None:
    """Write rows straight to their data nodes (what a correct sharded INSERT does; used to reset state)."""
    by_node: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for row in rows:
        for node in dataset.home_nodes(table, row):
            by_node.setdefault(node, []).append(row)
    for (ds, actual), node_rows in by_node.items():
        run_statements(server, physical[ds], list(table.insert_statements(node_rows, table=actual)))


def misplaced_rows(server: Any, physical: dict[str, str], table: dataset.Table,
                   expected: Sequence[tuple[Any, ...]]) -> list[str]:
    """Problems with where ``table``'s rows are: each row must be on exactly its home nodes, once, intact."""
    found = fetch_nodes(server, physical, dataset.physical_nodes(table), ", ".join(table.columns))
    shown: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def tally(pairs: Iterable[tuple[tuple[str, str], tuple[Any, ...]]]) -> Counter[tuple[Any, ...]]:
        counts: Counter[tuple[Any, ...]] = Counter()
        for node, row in pairs:
            entry = (node, *canonical_rows([row], False)[0])
            shown.setdefault(entry, (node, row))
            counts[entry] += 1
        return counts

    want = tally((node, row) for row in expected for node in dataset.home_nodes(table, row))
    got = tally((node, row) for node, rows in found.items() for row in rows)
    problems = [f"unexpected on {shown[e][0]}: {shown[e][1]!r} x{n}" for e, n in (got - want).items()]
    problems += [f"missing on {shown[e][0]}: {shown[e][1]!r} x{n}" for e, n in (want - got).items()]
    return sorted(problems)[:20] + ([f"... {len(problems) - 20} more"] if len(problems) > 20 else [])
