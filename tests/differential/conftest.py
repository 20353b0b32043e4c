"""The differential suite: the same SQL on one plain database and on the sharded ``sharding_db`` through dbmesh.

Per frontend, one session builds everything once: the physical shard databases ``diff_ds_0``/``diff_ds_1`` and
their actual tables (created directly on the server), the plain reference database ``diff_plain`` (loaded
directly), and one dbmesh serving ``sharding_db`` over those shards; the same rows are then loaded through
dbmesh with multi-row INSERTs (which dbmesh must split across data nodes). Tests compare answers
(tests/differential/queries.py through harness.py), check where rows landed, run DML and transactions on
``t_ledger`` (reset before each such test), and DDL on ``t_extra``.

``DBMESH_DIFF_SELFCHECK=1`` checks the harness without dbmesh: the "dbmesh" side becomes a second plain database
(``diff_mirror``) loaded the same way, and the shards are filled directly by the rule oracle in dataset.py.
Every comparison must then pass; the tests that need dbmesh itself (refusals, generated keys, DDL fan-out)
fail in that mode, by design, since nothing there refuses or fans out.

When a test fails, the tail of that dbmesh's stderr is attached to the report (section "dbmesh log").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.differential import dataset
from tests.differential.harness import (
    AsyncpgClient,
    Dialect,
    Endpoint,
    create_plain_schema,
    load_rows,
    mysql_connect,
    pg_connect,
    place_directly,
)
from tests.support import DbMeshProcess, MariaDB, PostgreSQL
from tests.support.sharded import (
    create_tables,
    drop_tables,
    sharded_database,
    start_sharded_dbmesh,
    write_sharded_config,
)

SELFCHECK = os.environ.get("DBMESH_DIFF_SELFCHECK", "") not in ("", "0")

_PROCS: list[DbMeshProcess] = []


@dataclass
class DiffEnv:
    """One frontend's side of the suite, built once per session."""

    dialect: Dialect
    server: Any  # MariaDB | PostgreSQL
    proc: DbMeshProcess | None  # None in self-check mode
    plain: Endpoint
    mesh: Endpoint
    load_seconds: float

    @property
    def physical(self) -> dict[str, str]:
        return dict(dataset.PHYSICAL)


def _build(dialect: Dialect, server: Any, config_dir: Path) -> DiffEnv:
    for db in (dataset.PLAIN_DB, *dataset.PHYSICAL.values()):
        server.ensure_database(db)
    for table in dataset.TABLES:
        create_tables(server, dataset.PHYSICAL, dataset.physical_nodes(table), table.ddl_for(dialect))
    drop_tables(server, dataset.PHYSICAL, dataset.modulo_nodes("t_extra"))
    create_plain_schema(server, dialect, dataset.PLAIN_DB)
    plain = Endpoint(server.host, server.port, server.user, server.password, dataset.PLAIN_DB)
    connect = mysql_connect if dialect == "mysql" else pg_connect
    conn = connect(plain)
    try:
        with conn.cursor() as cur:
            load_rows(cur.execute)
    finally:
        conn.close()

    proc: DbMeshProcess | None = None
    if SELFCHECK:
        server.ensure_database(dataset.MIRROR_DB)
        create_plain_schema(server, dialect, dataset.MIRROR_DB)
        mesh = Endpoint(server.host, server.port, server.user, server.password, dataset.MIRROR_DB)
        for table in dataset.TABLES:
            place_directly(server, dataset.PHYSICAL, table, dataset.rows_of(table))
    else:
        document = sharded_database(dataset.LOGICAL_DB, dialect, server, dataset.PHYSICAL, dataset.sharding_rules())
        config = write_sharded_config(config_dir, server, {dataset.LOGICAL_DB: document})
        proc = start_sharded_dbmesh(config, postgresql=dialect == "postgresql")
        _PROCS.append(proc)
        port = proc.port if dialect == "mysql" else proc.pg_port
        mesh = Endpoint(proc.host, port, "root", "rootpw", dataset.LOGICAL_DB)
    conn = connect(mesh)
    try:
        with conn.cursor() as cur:
            seconds = load_rows(cur.execute)
    finally:
        conn.close()
    return DiffEnv(dialect, server, proc, plain, mesh, seconds)


@pytest.fixture(scope="session")
def mysql_env(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiffEnv]:
    env = _build("mysql", mariadb, tmp_path_factory.mktemp("diff-mysql"))
    try:
        yield env
    finally:
        if env.proc is not None:
            env.proc.stop()


@pytest.fixture(scope="session")
def pg_env(postgres: PostgreSQL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiffEnv]:
    env = _build("postgresql", postgres, tmp_path_factory.mktemp("diff-pg"))
    try:
        yield env
    finally:
        if env.proc is not None:
            env.proc.stop()


@dataclass
class Pair:
    """One client's connections: to the plain database and to dbmesh, reopened when a test left one unusable."""

    plain: Any
    mesh: Any
    connect_plain: Callable[[], Any]
    connect_mesh: Callable[[], Any]
    alive: Callable[[Any], bool]
    close: Callable[[Any], None]

    def repair(self) -> None:
        """A statement that broke the protocol stream (a dbmesh bug) must fail only its own test."""
        if not self.alive(self.plain):
            self.close(self.plain)
            self.plain = self.connect_plain()
        if not self.alive(self.mesh):
            self.close(self.mesh)
            self.mesh = self.connect_mesh()

    def close_all(self) -> None:
        self.close(self.plain)
        self.close(self.mesh)


def _alive_dbapi(conn: Any) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            return [tuple(r) for r in cur.fetchall()] == [(1,)]
    except Exception:
        return False


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:
        pass


def _alive_asyncpg(client: AsyncpgClient) -> bool:
    try:
        return client.run("SELECT 1").rows == [(1,)]
    except Exception:
        return False


def _dbapi_pair(env: DiffEnv) -> Pair:
    connect = mysql_connect if env.dialect == "mysql" else pg_connect
    return Pair(connect(env.plain), connect(env.mesh), lambda: connect(env.plain), lambda: connect(env.mesh),
                _alive_dbapi, _close_quietly)


@pytest.fixture(scope="session")
def _mysql_session_pair(mysql_env: DiffEnv) -> Iterator[Pair]:
    pair = _dbapi_pair(mysql_env)
    yield pair
    pair.close_all()


@pytest.fixture
def mysql_pair(_mysql_session_pair: Pair) -> Iterator[Pair]:
    yield _mysql_session_pair
    _mysql_session_pair.repair()


@pytest.fixture(scope="session")
def _pg_session_pair(pg_env: DiffEnv) -> Iterator[Pair]:
    pair = _dbapi_pair(pg_env)
    yield pair
    pair.close_all()


@pytest.fixture
def pg_pair(_pg_session_pair: Pair) -> Iterator[Pair]:
    yield _pg_session_pair
    _pg_session_pair.repair()


@pytest.fixture(scope="session")
def _asyncpg_session_pair(pg_env: DiffEnv) -> Iterator[Pair]:
    pair = Pair(AsyncpgClient(pg_env.plain), AsyncpgClient(pg_env.mesh), lambda: AsyncpgClient(pg_env.plain),
                lambda: AsyncpgClient(pg_env.mesh), _alive_asyncpg, lambda c: c.close())
    yield pair
    pair.close_all()


@pytest.fixture
def asyncpg_pair(_asyncpg_session_pair: Pair) -> Iterator[Pair]:
    yield _asyncpg_session_pair
    _asyncpg_session_pair.repair()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _PROCS:
        for proc in _PROCS:
            report.sections.append((f"dbmesh log ({proc.config_dir.name})", proc.stderr_text()[-4000:]))
