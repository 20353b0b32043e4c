"""The differential suite's schema, sharding rules and deterministic data, and where each row must live.

Every table's DDL is valid in both MariaDB and PostgreSQL, so the plain reference database and the physical
shards are created from the same text. Data comes from a seeded generator: the same rows on every run, with
NULLs in every nullable column, strings that differ only in case or accents (MariaDB's utf8mb4_general_ci
treats them as equal, PostgreSQL's byte order does not), duplicates for GROUP BY, negative amounts, empty
strings, trailing spaces (MariaDB's PAD SPACE ignores them) and quotes inside strings.

Rules (logical database ``sharding_db``, data sources ds_0/ds_1):
- t_order / t_order_item / t_ledger: database by ``user_id % 2``, table by ``<key> % 2``; t_order and
  t_order_item are binding tables (an item has its order's user_id, so both route alike).
- t_log: autoTable, MOD over 4 tables on ds_0, ds_1 (table i on ds_{i mod 2}).
- t_extra: configured but not created physically; the DDL fan-out tests create and drop it through dbmesh.
- t_status: broadcast; t_user: single table on ds_0.
"""

from __future__ import annotations

import datetime
import functools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tests.support.sharded import DataNode, Tagged, inline_algorithm, standard

LOGICAL_DB = "sharding_db"
PHYSICAL = {"ds_0": "diff_ds_0", "ds_1": "diff_ds_1"}
PLAIN_DB = "diff_plain"
# Self-check mode only: the stand-in for dbmesh, a second plain database loaded the way dbmesh is.
MIRROR_DB = "diff_mirror"
DATA_SOURCES = tuple(PHYSICAL)
BATCH = 500
SEED = 20240611

USERS = 200
ORDERS = 10_000
LOGS = 3_000
LEDGER = 240


@dataclass(frozen=True)
class Table:
    """A logic table: its DDL template (``{table}``; ``{datetime}`` is the dialect's date-time type), columns in
    insert order and the unique key."""

    name: str
    ddl: str
    columns: tuple[str, ...]
    key: str

    def ddl_for(self, dialect: str) -> str:
        """The DDL template for one dialect (``{table}`` left in place)."""
        return self.ddl.replace("{datetime}", "DATETIME" if dialect == "mysql" else "TIMESTAMP")

    def insert_statements(self, rows: Sequence[tuple[Any, ...]], table: str | None = None) -> Iterator[str]:
        """Multi-row INSERTs with explicit keys, ``BATCH`` rows each."""
        head = f"INSERT INTO {table or self.name} ({', '.join(self.columns)}) VALUES "
        for start in range(0, len(rows), BATCH):
            chunk = rows[start:start + BATCH]
            yield head + ", ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in chunk)


def literal(value: Any) -> str:
    """An SQL literal both dialects read the same way (no backslashes occur in the data: MySQL escapes them)."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        assert "\\" not in value
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, datetime.datetime):
        return f"'{value.isoformat(sep=' ')}'"
    if isinstance(value, datetime.date):
        return f"'{value.isoformat()}'"
    if isinstance(value, (int, Decimal)):
        return str(value)
    raise TypeError(f"no literal for {value!r}")


T_ORDER = Table(
    "t_order",
    "CREATE TABLE {table} (order_id BIGINT NOT NULL PRIMARY KEY, user_id INT NOT NULL, status VARCHAR(20) NOT NULL, "
    "amount DECIMAL(10,2) NOT NULL, created DATE NOT NULL, note VARCHAR(40), priority INT, region CHAR(4), "
    "updated_at {datetime} NOT NULL)",
    ("order_id", "user_id", "status", "amount", "created", "note", "priority", "region", "updated_at"),
    "order_id",
)
T_ORDER_ITEM = Table(
    "t_order_item",
    "CREATE TABLE {table} (item_id BIGINT NOT NULL PRIMARY KEY, order_id BIGINT NOT NULL, user_id INT NOT NULL, "
    "qty INT NOT NULL, price DECIMAL(10,2) NOT NULL, sku VARCHAR(20))",
    ("item_id", "order_id", "user_id", "qty", "price", "sku"),
    "item_id",
)
T_LOG = Table(
    "t_log",
    "CREATE TABLE {table} (log_id BIGINT NOT NULL PRIMARY KEY, user_id INT NOT NULL, level VARCHAR(10) NOT NULL, "
    "msg VARCHAR(40), code INT)",
    ("log_id", "user_id", "level", "msg", "code"),
    "log_id",
)
T_STATUS = Table(
    "t_status",
    "CREATE TABLE {table} (status VARCHAR(20) NOT NULL PRIMARY KEY, label VARCHAR(40) NOT NULL, rank_no INT NOT NULL)",
    ("status", "label", "rank_no"),
    "status",
)
T_USER = Table(
    "t_user",
    "CREATE TABLE {table} (user_id INT NOT NULL PRIMARY KEY, name VARCHAR(40) NOT NULL, city VARCHAR(40), "
    "vip INT NOT NULL)",
    ("user_id", "name", "city", "vip"),
    "user_id",
)
T_LEDGER = Table(
    "t_ledger",
    "CREATE TABLE {table} (ledger_id BIGINT NOT NULL PRIMARY KEY, user_id INT NOT NULL, kind VARCHAR(10) NOT NULL, "
    "delta DECIMAL(10,2) NOT NULL, memo VARCHAR(40))",
    ("ledger_id", "user_id", "kind", "delta", "memo"),
    "ledger_id",
)
# Created and dropped through dbmesh by the DDL fan-out tests.
T_EXTRA_DDL = ("CREATE TABLE t_extra (extra_id BIGINT NOT NULL PRIMARY KEY, user_id INT NOT NULL, "
               "label VARCHAR(20))")

TABLES = (T_ORDER, T_ORDER_ITEM, T_LOG, T_STATUS, T_USER, T_LEDGER)


def sharding_rules() -> list[Tagged]:
    """The rules of ``sharding_db`` (ShardingSphere 5.x YAML shape)."""

    def modulo_table(logic: str, key: str, generated: bool = True) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "actualDataNodes": f"ds_${{0..1}}.{logic}_${{0..1}}",
            "databaseStrategy": standard("user_id", "database_inline"),
            "tableStrategy": standard(key, f"{logic}_inline"),
        }
        if generated:
            spec["keyGenerateStrategy"] = {"column": key, "keyGeneratorName": "snowflake"}
        return spec

    sharding = {
        "tables": {
            "t_order": modulo_table("t_order", "order_id"),
            "t_order_item": modulo_table("t_order_item", "item_id") | {
                # The item table is split by its order's id, so an order and its items share a data node index.
                "tableStrategy": standard("order_id", "t_order_item_inline"),
            },
            "t_ledger": modulo_table("t_ledger", "ledger_id"),
            "t_extra": modulo_table("t_extra", "extra_id", generated=False),
        },
        "autoTables": {
            "t_log": {
                "actualDataSources": "ds_${0..1}",
                "shardingStrategy": standard("log_id", "t_log_mod"),
            },
        },
        "bindingTables": ["t_order,t_order_item"],
        "shardingAlgorithms": {
            "database_inline": inline_algorithm("ds_${user_id % 2}"),
            "t_order_inline": inline_algorithm("t_order_${order_id % 2}"),
            "t_order_item_inline": inline_algorithm("t_order_item_${order_id % 2}"),
            "t_ledger_inline": inline_algorithm("t_ledger_${ledger_id % 2}"),
            "t_extra_inline": inline_algorithm("t_extra_${extra_id % 2}"),
            "t_log_mod": {"type": "MOD", "props": {"sharding-count": 4}},
        },
        "keyGenerators": {"snowflake": {"type": "SNOWFLAKE"}},
    }
    return [
        Tagged("SHARDING", sharding),
        Tagged("BROADCAST", {"tables": ["t_status"]}),
        Tagged("SINGLE", {"tables": ["ds_0.t_user"]}),
    ]


# -- placement: the oracle, written out by hand rather than taken from dbmesh's rule engine ---------------------------


def modulo_nodes(logic: str) -> list[DataNode]:
    return [(ds, f"{logic}_{t}") for ds in DATA_SOURCES for t in (0, 1)]


LOG_NODES: list[DataNode] = [(f"ds_{i % 2}", f"t_log_{i}") for i in range(4)]


def physical_nodes(table: Table) -> list[DataNode]:
    """Every actual table of a logic table."""
    if table is T_LOG:
        return LOG_NODES
    if table is T_STATUS:
        return [(ds, "t_status") for ds in DATA_SOURCES]
    if table is T_USER:
        return [("ds_0", "t_user")]
    return modulo_nodes(table.name)


def home_nodes(table: Table, row: tuple[Any, ...]) -> list[DataNode]:
    """The data nodes a row belongs on."""
    col = dict(zip(table.columns, row, strict=True))
    if table is T_LOG:
        return [LOG_NODES[col["log_id"] % 4]]
    if table is T_STATUS:
        return [(ds, "t_status") for ds in DATA_SOURCES]
    if table is T_USER:
        return [("ds_0", "t_user")]
    table_key = "order_id" if table in (T_ORDER, T_ORDER_ITEM) else table.key
    return [(f"ds_{col['user_id'] % 2}", f"{table.name}_{col[table_key] % 2}")]


# -- data ----------------------------------------------------------------------------------------------------------

STATUSES = ("NEW", "PAID", "SHIPPED", "CANCELLED", "REFUNDED", "ÉMIS")
# Order statuses: case and accent variants of the dictionary's (equal under _ci), and one with no entry.
ORDER_STATUSES = ("NEW", "new", "New", "PAID", "paid", "SHIPPED", "shipped", "Shipped", "CANCELLED",
                  "REFUNDED", "ÉMIS", "émis", "Émis", "emis", "pending")
NOTES = ("alpha", "Alpha", "ALPHA", "élan", "Élan", "elan", "zeta", "Zoë", "zoe", "café", "Cafe", "CAFÉ",
         "naïve", "naive", "omega", "omega ", "", "O'Brien", "o'brien", "Ärger", "arger", "beta", "BETA", "Beta")
SKUS = ("A-1", "a-1", "B-2", "b-2", "C-3", "Ç-3", "D-4", "d-4 ", "E-5")
LEVELS = ("INFO", "info", "WARN", "Warn", "ERROR", "DEBUG", "débug")
CITIES = ("Paris", "paris", "PARIS", "Zürich", "Zurich", "zürich", "Lyon", "Köln", "Koln", "O'Hare")
REGIONS = ("EU", "eu", "Eu", "US", "us", "APAC", "Apac", "LATM", "ÉU", "NA ")
KINDS = ("credit", "debit", "Credit", "fee", "FEE")


@functools.cache
def statuses() -> list[tuple[Any, ...]]:
    return [(s, f"label {s.lower()}", rank) for rank, s in enumerate(STATUSES)]


@functools.cache
def users() -> list[tuple[Any, ...]]:
    rng = random.Random(SEED + 1)
    rows = []
    for user_id in range(USERS):
        name = rng.choice(("ann", "Ann", "ANN", "bob", "Bób", "chloé", "Chloe", "dan", "Dan", "O'Neil"))
        city = None if rng.random() < 0.15 else rng.choice(CITIES)
        rows.append((user_id, f"{name}{user_id % 7}", city, rng.randint(0, 3)))
    return rows


def _amount(rng: random.Random) -> Decimal:
    cents = rng.randint(-50_000, 0) if rng.random() < 0.1 else rng.randint(0, 500_000)
    if rng.random() < 0.4:  # round amounts repeat: duplicates for GROUP BY and DISTINCT
        cents = cents // 10_000 * 10_000
    return Decimal(cents).scaleb(-2)


@functools.cache
def orders() -> list[tuple[Any, ...]]:
    rng = random.Random(SEED + 2)
    start = datetime.date(2023, 1, 1)
    rows = []
    for i in range(ORDERS):
        order_id = 10_001 + i * 3  # alternating parity, gaps so that IN lists can miss
        user_id = rng.randrange(USERS)
        note = None if rng.random() < 0.2 else rng.choice(NOTES)
        priority = None if rng.random() < 0.25 else rng.randint(-2, 9)
        created = start + datetime.timedelta(days=rng.randint(0, 729))
        region = None if rng.random() < 0.1 else rng.choice(REGIONS)
        # Few distinct seconds: duplicate timestamps for GROUP BY and ties broken by the key.
        updated = datetime.datetime.combine(created, datetime.time()) + datetime.timedelta(
            seconds=rng.randrange(0, 86_400, 900))
        rows.append((order_id, user_id, rng.choice(ORDER_STATUSES), _amount(rng), created, note, priority, region,
                     updated))
    return rows


@functools.cache
def order_items() -> list[tuple[Any, ...]]:
    rng = random.Random(SEED + 3)
    rows = []
    item_id = 1
    for order_id, user_id, *_ in orders():
        for _ in range(rng.choice((1, 2, 3, 3, 4, 5))):
            price = Decimal(rng.randint(1, 400) * 25).scaleb(-2)
            sku = None if rng.random() < 0.1 else rng.choice(SKUS)
            rows.append((item_id, order_id, user_id, rng.randint(1, 12), price, sku))
            item_id += 1
    return rows


@functools.cache
def logs() -> list[tuple[Any, ...]]:
    rng = random.Random(SEED + 4)
    rows = []
    for log_id in range(1, LOGS + 1):
        msg = None if rng.random() < 0.1 else rng.choice(("started", "Started", "done", "DONE", "failed: disk",
                                                          "échec", "echec", "retry 'x'"))
        code = None if rng.random() < 0.3 else rng.randint(100, 120)
        rows.append((log_id, rng.randrange(USERS), rng.choice(LEVELS), msg, code))
    return rows


@functools.cache
def ledger() -> list[tuple[Any, ...]]:
    rng = random.Random(SEED + 5)
    rows = []
    for i in range(LEDGER):
        delta = Decimal(rng.randint(-20_000, 20_000)).scaleb(-2)
        memo = None if rng.random() < 0.2 else rng.choice(("rent", "Rent", "bonus", "café", "CAFE"))
        rows.append((500 + i, rng.randrange(40), rng.choice(KINDS), delta, memo))
    return rows


def rows_of(table: Table) -> list[tuple[Any, ...]]:
    return {
        "t_order": orders, "t_order_item": order_items, "t_log": logs, "t_status": statuses,
        "t_user": users, "t_ledger": ledger,
    }[table.name]()
