"""Sharded logical databases for tests: ShardingSphere rule YAML, config directories, physical shard tables.

A sharded logical database is a ``database-<name>.yaml`` whose data sources are several databases on one
test server (MariaDB or PostgreSQL) and whose ``rules:`` are YAML-tagged mappings (``- !SHARDING``). PyYAML's
safe dumper cannot write tags, so rules are ``Tagged`` values written by ``dump_yaml``; ``write_sharded_config``
writes the usual global.yaml through ``make_dbmesh_config`` and then the sharded database files beside it.

The physical side is created directly on the server, never through dbmesh: ``create_tables`` makes every
actual table of a rule from one DDL template, and ``fetch_nodes`` reads each actual table back, so a test can
check that every row sits on the data node its rule names.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import yaml

from .dbmesh_proc import DbMeshConfig, DbMeshProcess, DbMeshStartError, make_dbmesh_config
from .ports import wait_for_port

Dialect = Literal["mysql", "postgresql"]

# (data source name, actual table name)
DataNode = tuple[str, str]


class SqlServer(Protocol):
    """What the helpers need from a test server (tests.support.MariaDB and PostgreSQL both fit)."""

    host: str
    port: int
    user: str
    password: str

    def connect(self, database: str) -> Any: ...

    def ensure_database(self, name: str) -> None: ...


# -- YAML ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tagged:
    """A YAML-tagged mapping: ``Tagged("SHARDING", {...})`` is written as ``!SHARDING {...}``."""

    kind: str
    body: Mapping[str, Any]


class _Dumper(yaml.SafeDumper):
    """The safe dumper plus `Tagged` (a subclass, so the global SafeDumper stays untouched)."""


def _represent_tagged(dumper: yaml.SafeDumper, data: Tagged) -> yaml.Node:
    return dumper.represent_mapping(f"!{data.kind}", dict(data.body))


_Dumper.add_representer(Tagged, _represent_tagged)


def dump_yaml(document: Any) -> str:
    """YAML text for ``document``; `Tagged` values become tagged mappings, key order is kept."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def inline_algorithm(expression: str, *, allow_range: bool = True) -> dict[str, Any]:
    """An INLINE sharding algorithm. Range conditions (BETWEEN, <, >) route to every target when allowed, as
    ShardingSphere's ``allow-range-query-with-inline-sharding``; without it they are refused."""
    props: dict[str, Any] = {"algorithm-expression": expression}
    if allow_range:
        props["allow-range-query-with-inline-sharding"] = True
    return {"type": "INLINE", "props": props}


def standard(column: str, algorithm: str) -> dict[str, Any]:
    """A standard sharding strategy on one column."""
    return {"standard": {"shardingColumn": column, "shardingAlgorithmName": algorithm}}


# -- config directories ----------------------------------------------------------------------------------------------


def data_source(
    dialect: Dialect, server: SqlServer, database: str, *, max_pool_size: int = 20, min_pool_size: int = 1
) -> dict[str, Any]:
    """One ``dataSources`` entry for ``database`` on ``server``."""
    scheme = "mysql" if dialect == "mysql" else "postgresql"
    return {
        "url": f"jdbc:{scheme}://{server.host}:{server.port}/{database}",
        "username": server.user,
        "password": server.password,
        "maxPoolSize": max_pool_size,
        "minPoolSize": min_pool_size,
    }


def sharded_database(
    name: str,
    dialect: Dialect,
    server: SqlServer,
    physical: Mapping[str, str],
    rules: Sequence[Tagged],
    *,
    max_pool_size: int = 20,
) -> dict[str, Any]:
    """A ``database-<name>.yaml`` document: data source ``ds`` -> database ``physical[ds]`` on ``server``."""
    return {
        "databaseName": name,
        "dataSources": {
            ds: data_source(dialect, server, database, max_pool_size=max_pool_size)
            for ds, database in physical.items()
        },
        "rules": list(rules),
    }


def write_sharded_config(
    directory: str | os.PathLike[str],
    server: SqlServer,
    databases: Mapping[str, Mapping[str, Any]],
    **overrides: Any,
) -> DbMeshConfig:
    """A dbmesh config directory serving exactly ``databases`` (name -> ``sharded_database`` document).

    ``overrides`` go to ``make_dbmesh_config`` (users, props, limits, ...); the default unsharded database is
    left out, and every physical database named by a data source is created on ``server``.
    """
    overrides.setdefault("include_default_database", False)
    config = make_dbmesh_config(directory, server, **overrides)
    written: dict[str, dict[str, Any]] = {}
    for name, document in databases.items():
        for source in document["dataSources"].values():
            server.ensure_database(str(source["url"]).rsplit("/", 1)[1])
        (config.config_dir / f"database-{name}.yaml").write_text(dump_yaml(document))
        written[name] = dict(document)
    return dataclasses.replace(config, databases={**config.databases, **written})


def start_sharded_dbmesh(config: DbMeshConfig, *, postgresql: bool, timeout: float = 30.0) -> DbMeshProcess:
    """Start dbmesh on ``config``; with ``postgresql`` also wait for its PostgreSQL listener."""
    proc = DbMeshProcess(config).start(timeout)
    if postgresql and not wait_for_port(proc.host, proc.pg_port, timeout=timeout):
        proc.stop()
        raise DbMeshStartError(
            f"dbmesh listens for MySQL on {proc.port} but not for PostgreSQL on {proc.pg_port} within {timeout}s\n"
            f"stderr:\n{proc.stderr_text()[-8000:]}"
        )
    return proc


# -- physical tables -------------------------------------------------------------------------------------------------


def run_statements(server: SqlServer, database: str, statements: Iterable[str]) -> None:
    """Run statements in order on one autocommit connection to ``database``."""
    conn = server.connect(database)
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def query(server: SqlServer, database: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one query on ``database``."""
    conn = server.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [tuple(row) for row in cur.fetchall()]
    finally:
        conn.close()


def create_tables(
    server: SqlServer, physical: Mapping[str, str], nodes: Iterable[DataNode], ddl: str
) -> None:
    """(Re)create every actual table: ``ddl`` with ``{table}`` replaced, on the database of each node's data source.

    An existing table of the same name is dropped first, so every run starts from empty shards."""
    by_source: dict[str, list[str]] = {}
    for ds, table in nodes:
        by_source.setdefault(ds, []).extend([f"DROP TABLE IF EXISTS {table}", ddl.format(table=table)])
    for ds, statements in by_source.items():
        run_statements(server, physical[ds], statements)


def drop_tables(server: SqlServer, physical: Mapping[str, str], nodes: Iterable[DataNode]) -> None:
    """Drop actual tables where they exist."""
    for ds, table in nodes:
        run_statements(server, physical[ds], [f"DROP TABLE IF EXISTS {table}"])


def fetch_nodes(
    server: SqlServer, physical: Mapping[str, str], nodes: Iterable[DataNode], columns: str
) -> dict[DataNode, list[tuple[Any, ...]]]:
    """``SELECT columns`` from every actual table, read directly from its physical database."""
    return {
        (ds, table): query(server, physical[ds], f"SELECT {columns} FROM {table}")
        for ds, table in nodes
    }


def table_exists(server: SqlServer, dialect: Dialect, database: str, table: str) -> bool:
    """Whether ``table`` exists in ``database`` (the current schema for PostgreSQL)."""
    if dialect == "mysql":
        sql = (f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() "
               f"AND table_name = '{table}'")
    else:
        sql = f"SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = '{table}'"
    return bool(query(server, database, sql)[0][0])


def index_count(server: SqlServer, dialect: Dialect, database: str, table: str, column: str) -> int:
    """How many secondary (non-primary) indexes of ``table`` include ``column``."""
    if dialect == "mysql":
        sql = (f"SELECT COUNT(DISTINCT index_name) FROM information_schema.statistics WHERE "
               f"table_schema = DATABASE() AND table_name = '{table}' AND column_name = '{column}' "
               f"AND index_name <> 'PRIMARY'")
    else:
        sql = (f"SELECT COUNT(*) FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid "
               f"JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(x.indkey) "
               f"WHERE t.relname = '{table}' AND a.attname = '{column}' AND NOT x.indisprimary "
               f"AND t.relnamespace = current_schema()::regnamespace")
    return int(query(server, database, sql)[0][0])
