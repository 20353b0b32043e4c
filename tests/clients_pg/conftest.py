"""Fixtures for the PostgreSQL client matrix: the two endpoints (PostgreSQL direct, dbmesh) and fresh tables.

``DBMESH_PG_MATRIX_SELFCHECK=1`` points the "dbmesh" endpoint at PostgreSQL itself (as the postgres user):
the differential harness must then find no difference and every fixed expectation must hold, which
checks the harness without dbmesh. Tests that only make sense against dbmesh (its TLS, its RSS, its
pool) skip in that mode.

When a test here fails, the tail of dbmesh's stderr is attached to the report (section "dbmesh log").
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.clients_pg.common import DATABASE, Endpoint, table_ddl
from tests.support import DbMeshProcess, PostgreSQL

SELFCHECK = os.environ.get("DBMESH_PG_MATRIX_SELFCHECK", "") not in ("", "0")

_STARTED: dict[str, DbMeshProcess] = {}


@pytest.fixture(scope="session")
def pg_direct(postgres: PostgreSQL) -> Endpoint:
    return Endpoint("direct", postgres.host, postgres.port, postgres.user, postgres.password)


@pytest.fixture(scope="session")
def pg_proxy(request: pytest.FixtureRequest, pg_direct: Endpoint) -> Endpoint:
    if SELFCHECK:
        return Endpoint("dbmesh", pg_direct.host, pg_direct.port, pg_direct.user, pg_direct.password)
    proc: DbMeshProcess = request.getfixturevalue("pg_dbmesh")
    _STARTED["dbmesh"] = proc
    return Endpoint("dbmesh", proc.host, proc.pg_port, "root", "rootpw")


@pytest.fixture(scope="session")
def pg_proxy_process(pg_proxy: Endpoint) -> DbMeshProcess:
    """The dbmesh behind ``pg_proxy`` (tests needing the process skip in self-check mode)."""
    if SELFCHECK:
        pytest.skip("DBMESH_PG_MATRIX_SELFCHECK: no dbmesh process")
    return _STARTED["dbmesh"]


@pytest.fixture
def require_dbmesh() -> None:
    if SELFCHECK:
        pytest.skip("DBMESH_PG_MATRIX_SELFCHECK: this checks dbmesh itself (TLS, users, pool)")


def insecure_context() -> ssl.SSLContext:
    """TLS without verification: dbmesh presents a self-signed certificate (sslmode=require semantics)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture
def pg_fresh_table(postgres: PostgreSQL) -> Iterator[Callable[..., str]]:
    """``pg_fresh_table(name, ddl=None)`` (re)creates ``name`` directly on PostgreSQL; dropped at the end.

    Called again with the same name it recreates the table, so a scenario runs once directly and once
    through dbmesh from the same starting point (serial back at 1).
    """
    made: set[str] = set()

    def make(name: str, ddl: str | None = None) -> str:
        postgres.execute(f"DROP TABLE IF EXISTS {name}; " + (ddl.format(t=name) if ddl else table_ddl(name)),
                         database=DATABASE)
        made.add(name)
        return name

    yield make
    for name in made:
        postgres.execute(f"DROP TABLE IF EXISTS {name}", database=DATABASE)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("call", "setup"):
        funcargs = getattr(item, "funcargs", {})
        proc = funcargs.get("pg_dbmesh") or _STARTED.get("dbmesh")
        if isinstance(proc, DbMeshProcess):
            state = "running" if proc.is_running() else f"EXITED with {proc.returncode}"
            report.sections.append((f"dbmesh log (tail; dbmesh {state})", proc.stderr_text()[-6000:]))
        for i, extra in enumerate(getattr(funcargs.get("start_pg_dbmesh"), "started", [])):
            report.sections.append((f"extra dbmesh #{i} log (tail)", extra.stderr_text()[-6000:]))
