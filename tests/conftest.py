"""Shared fixtures: throwaway MariaDB, dbmesh config directories, dbmesh subprocesses, timeouts.

The contract (implemented in tests/support/):

- ``mariadb`` (session): a ``tests.support.MariaDB`` with database ``dbmesh_test``. Managed
  (started here) unless ``DBMESH_TEST_MYSQL_HOST`` names a server; ``managed_mariadb`` is the same
  object but skips the test when it cannot be killed/restarted.
- ``dbmesh_config`` (session): the ``DbMeshConfig`` of the shared dbmesh; ``make_config(**overrides)``
  writes another config directory (overrides as ``tests.support.make_dbmesh_config``).
- ``dbmesh`` (session): a running ``DbMeshProcess``; ``start_dbmesh(**overrides)`` starts an extra one
  that is stopped when the test ends.
- ``postgres`` (session): a ``tests.support.PostgreSQL`` 15 with database ``dbmesh_pg`` (user
  postgres/pgpw over SCRAM, md5user/md5pw over MD5). Managed unless ``DBMESH_TEST_PG_HOST`` names a
  server; ``managed_postgres`` skips the test when it cannot be killed/restarted.
- ``pg_dbmesh`` (session): a running ``DbMeshProcess`` serving the default MySQL database and the
  PostgreSQL logical database ``dbmesh_pg`` (data source: ``postgres``'s ``dbmesh_pg``) on ``.pg_port``,
  with users root/rootpw (SCRAM), md5client/md5pw (md5) and plainclient/plainpw (password);
  ``start_pg_dbmesh(**overrides)`` starts an extra one, stopped when the test ends.
- ``free_tcp_port``: a free loopback port.
- Every test runs under a timeout (pytest-timeout; faulthandler when the plugin is absent), and every
  asyncio test fails when its event loop saw an unhandled exception.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the repo root on the path
    sys.path.insert(0, str(ROOT))

from tests.support import (  # noqa: E402
    DEFAULT_USERS,
    PG_UNMANAGED_REASON,
    UNMANAGED_REASON,
    DbMeshConfig,
    DbMeshProcess,
    DbMeshStartError,
    MariaDB,
    PostgreSQL,
    free_port,
    make_dbmesh_config,
    wait_for_port,
)

DEFAULT_TIMEOUT = 300.0

# -- MariaDB ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    server = MariaDB.from_env()
    if server is None:
        server = MariaDB.managed_in(tmp_path_factory.mktemp("mariadb"))
        server.start()
    server.ensure_database("dbmesh_test")
    try:
        yield server
    finally:
        if server.is_managed:
            server.destroy()


@pytest.fixture
def managed_mariadb(mariadb: MariaDB) -> Iterator[MariaDB]:
    """The session MariaDB, for tests that kill or restart it; they must leave it running."""
    if not mariadb.is_managed:
        pytest.skip(UNMANAGED_REASON)
    yield mariadb
    if mariadb.pid is None:  # a test that killed it and failed before restarting
        mariadb.start()


@pytest.fixture
def start_mariadb(tmp_path: Path) -> Iterator[Callable[..., MariaDB]]:
    """Factory for a private managed MariaDB, destroyed at test end (skips with an external server)."""
    if os.environ.get("DBMESH_TEST_MYSQL_HOST"):
        pytest.skip(UNMANAGED_REASON)
    started: list[MariaDB] = []

    def start(**kwargs: Any) -> MariaDB:
        server = MariaDB.managed_in(tmp_path / f"mariadb{len(started)}", **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.destroy()


# -- dbmesh ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dbmesh_config(tmp_path_factory: pytest.TempPathFactory, mariadb: MariaDB) -> DbMeshConfig:
    return make_dbmesh_config(tmp_path_factory.mktemp("dbmesh-conf"), mariadb)


@pytest.fixture
def make_config(tmp_path: Path, mariadb: MariaDB) -> Callable[..., DbMeshConfig]:
    """Factory: ``make_config(**overrides)`` writes a fresh config dir under tmp_path."""
    counter = iter(range(1_000_000))

    def make(**overrides: Any) -> DbMeshConfig:
        return make_dbmesh_config(tmp_path / f"dbmesh-conf{next(counter)}", mariadb, **overrides)

    return make


@pytest.fixture(scope="session")
def dbmesh(dbmesh_config: DbMeshConfig) -> Iterator[DbMeshProcess]:
    proc = DbMeshProcess(dbmesh_config).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def start_dbmesh(make_config: Callable[..., DbMeshConfig]) -> Iterator[Callable[..., DbMeshProcess]]:
    """Factory: ``start_dbmesh(**config_overrides)`` starts an extra dbmesh, stopped at test end.

    ``timeout`` and ``env`` are taken for the process; everything else goes to make_dbmesh_config.
    """
    started: list[DbMeshProcess] = []

    def start(*, timeout: float = 30.0, env: dict[str, str] | None = None, **overrides: Any) -> DbMeshProcess:
        proc = DbMeshProcess(make_config(**overrides), env=env)
        started.append(proc)
        return proc.start(timeout)

    yield start
    for proc in started:
        proc.stop()


# -- PostgreSQL ------------------------------------------------------------------------------------

PG_DATABASE = "dbmesh_pg"

# Users of the PostgreSQL-serving dbmesh: the defaults (root has no method: MySQL's default, which the
# PostgreSQL listener treats as scram-sha-256) plus one user per PostgreSQL password method.
PG_USERS: tuple[dict[str, str], ...] = (
    *DEFAULT_USERS,
    {"user": "md5client@%", "password": "md5pw", "authenticationMethodName": "md5"},
    {"user": "plainclient@%", "password": "plainpw", "authenticationMethodName": "password"},
)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgreSQL]:
    server = PostgreSQL.from_env()
    if server is None:
        # Not under tmp_path: pytest's base temp dir is private to root, and the server runs as `postgres`.
        server = PostgreSQL.throwaway()
        server.start()
    server.ensure_database(PG_DATABASE)
    try:
        yield server
    finally:
        if server.is_managed:
            server.destroy()


@pytest.fixture
def managed_postgres(postgres: PostgreSQL) -> Iterator[PostgreSQL]:
    """The session PostgreSQL, for tests that kill or restart it; they must leave it running."""
    if not postgres.is_managed:
        pytest.skip(PG_UNMANAGED_REASON)
    yield postgres
    if postgres.pid is None:  # a test that killed it and failed before restarting
        postgres.start()


def _start_pg_listening(proc: DbMeshProcess, timeout: float) -> DbMeshProcess:
    """Start dbmesh and wait for its PostgreSQL listener too (start() waits for the MySQL one)."""
    proc.start(timeout)
    if not wait_for_port(proc.host, proc.pg_port, timeout=timeout):
        proc.stop()
        raise DbMeshStartError(
            f"dbmesh listens for MySQL on {proc.port} but not for PostgreSQL on {proc.pg_port} "
            f"within {timeout}s\nstderr:\n{proc.stderr_text()[-8000:]}"
        )
    return proc


def _pg_overrides(postgres: PostgreSQL, overrides: dict[str, Any]) -> dict[str, Any]:
    overrides.setdefault("users", PG_USERS)
    overrides.setdefault("pg_databases", {PG_DATABASE: postgres})
    return overrides


@pytest.fixture(scope="session")
def pg_dbmesh(
    tmp_path_factory: pytest.TempPathFactory, mariadb: MariaDB, postgres: PostgreSQL
) -> Iterator[DbMeshProcess]:
    config = make_dbmesh_config(tmp_path_factory.mktemp("pg-dbmesh-conf"), mariadb, **_pg_overrides(postgres, {}))
    proc = _start_pg_listening(DbMeshProcess(config), 30.0)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def start_pg_dbmesh(
    make_config: Callable[..., DbMeshConfig], postgres: PostgreSQL
) -> Iterator[Callable[..., DbMeshProcess]]:
    """Factory: ``start_pg_dbmesh(**config_overrides)`` starts an extra PostgreSQL-serving dbmesh.

    Defaults as ``pg_dbmesh`` (``users`` and ``pg_databases`` may be overridden); ``timeout`` and ``env``
    are taken for the process; the dbmesh is stopped at test end.
    """
    started: list[DbMeshProcess] = []

    def start(*, timeout: float = 30.0, env: dict[str, str] | None = None, **overrides: Any) -> DbMeshProcess:
        proc = DbMeshProcess(make_config(**_pg_overrides(postgres, overrides)), env=env)
        started.append(proc)
        return _start_pg_listening(proc, timeout)

    start.started = started  # type: ignore[attr-defined]  # for failure reports (tests/clients_pg)
    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def free_tcp_port() -> int:
    return free_port()


# -- timeouts --------------------------------------------------------------------------------------


def _timeout_for(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    if marker is not None and "timeout" in marker.kwargs:
        return float(marker.kwargs["timeout"])
    try:
        value = item.config.getini("timeout")
    except ValueError:  # pytest-timeout not installed: no such ini key
        return DEFAULT_TIMEOUT
    return float(value) if value not in (None, "") else DEFAULT_TIMEOUT


@pytest.fixture(autouse=True)
def _test_timeout(request: pytest.FixtureRequest) -> Iterator[None]:
    """pytest-timeout enforces the timeout; without it, faulthandler dumps stacks and exits the run."""
    if request.config.pluginmanager.hasplugin("timeout"):
        yield
        return
    timeout = _timeout_for(request.node)
    if timeout > 0:
        faulthandler.dump_traceback_later(timeout, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


# -- event loops -----------------------------------------------------------------------------------
# Async tests run on uvloop (what dbmesh serves on) by default; DBMESH_TEST_LOOPS=asyncio,uvloop runs
# them on both. Every loop records exceptions that reached its exception handler (a callback or a
# task that raised with nobody awaiting it), and the test during which that happened fails.

_loop_errors: list[dict[str, Any]] = []


def _recording_loop(
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> Callable[[], asyncio.AbstractEventLoop]:
    def new_loop() -> asyncio.AbstractEventLoop:
        loop = factory()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            _loop_errors.append(context)
            loop.default_exception_handler(context)

        loop.set_exception_handler(handler)
        return loop

    return new_loop


def _loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    names = [n.strip() for n in os.environ.get("DBMESH_TEST_LOOPS", "uvloop").split(",") if n.strip()]
    out: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {}
    for name in names:
        if name == "uvloop":
            import uvloop

            out[name] = _recording_loop(uvloop.new_event_loop)
        elif name == "asyncio":
            out[name] = _recording_loop(asyncio.new_event_loop)
        else:
            raise pytest.UsageError(f"DBMESH_TEST_LOOPS: unknown loop {name!r} (asyncio, uvloop)")
    return out


class _LoopFactoryPlugin:
    """Registered only when the installed pytest-asyncio has the loop-factory hook (1.5+)."""

    @staticmethod
    def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Any:
        return _loop_factories()


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.pluginmanager.hook, "pytest_asyncio_loop_factories"):
        config.pluginmanager.register(_LoopFactoryPlugin(), "dbmesh-loop-factories")


@pytest.fixture(autouse=True)
def _fail_on_loop_errors() -> Iterator[None]:
    del _loop_errors[:]
    yield
    if _loop_errors:
        errors = list(_loop_errors)
        del _loop_errors[:]
        details = "\n".join(f"- {c.get('message')}: {c.get('exception')!r}" for c in errors)
        pytest.fail(f"unhandled exception(s) in the event loop:\n{details}", pytrace=False)


def pytest_report_header(config: pytest.Config) -> str:
    host = os.environ.get("DBMESH_TEST_MYSQL_HOST")
    where = (
        f"external {host}:{os.environ.get('DBMESH_TEST_MYSQL_PORT', '3306')}"
        if host
        else "managed (throwaway)"
    )
    return f"dbmesh: MariaDB {where}; loops {os.environ.get('DBMESH_TEST_LOOPS', 'uvloop')}"
