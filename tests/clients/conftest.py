"""Fixtures for the client matrix: the two endpoints (MariaDB direct, dbmesh) and fresh tables.

When a test here fails, the tail of dbmesh's stderr is attached to the report (section "dbmesh log"),
so a proxy bug shows its own log lines beside the client's view of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.clients.common import DATABASE, Endpoint, table_ddl
from tests.support import DbMeshProcess, MariaDB


@pytest.fixture(scope="session")
def direct(mariadb: MariaDB) -> Endpoint:
    return Endpoint("direct", mariadb.host, mariadb.port, mariadb.user, mariadb.password)


_STARTED: dict[str, DbMeshProcess] = {}  # the shared dbmesh once a test here used it (for failure reports)


@pytest.fixture(scope="session")
def proxy(dbmesh: DbMeshProcess) -> Endpoint:
    _STARTED["dbmesh"] = dbmesh
    return Endpoint("dbmesh", dbmesh.host, dbmesh.port, "root", "rootpw")


@pytest.fixture(scope="session")
def sha2_proxy(proxy: Endpoint) -> Endpoint:
    """The caching_sha2_password user of the shared dbmesh."""
    return proxy.as_user("sha2user", "sha2pw")


@pytest.fixture(scope="session")
def proxy_ca_file(proxy: Endpoint, tmp_path_factory: pytest.TempPathFactory) -> str:
    """dbmesh's (self-signed) certificate as a PEM file, so clients can verify the TLS they negotiate.

    Taken from a PyMySQL TLS session: the certificate only appears after the MySQL handshake's
    SSLRequest, so ``ssl.get_server_certificate`` cannot fetch it.
    """
    import ssl

    import pymysql

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = pymysql.connect(host=proxy.host, port=proxy.port, user=proxy.user, password=proxy.password,
                           ssl=ctx, connect_timeout=10)
    try:
        der = conn._sock.getpeercert(binary_form=True)
    finally:
        conn.close()
    path = tmp_path_factory.mktemp("dbmesh-ca") / "dbmesh-cert.pem"
    path.write_text(ssl.DER_cert_to_PEM_cert(der))
    return str(path)


@pytest.fixture
def fresh_table(mariadb: MariaDB) -> Iterator[Callable[[str], str]]:
    """``fresh_table(name)`` (re)creates ``name`` with the matrix DDL, directly on MariaDB; dropped at the end.

    Called again with the same name it recreates the table, so a scenario can run once directly and once
    through dbmesh from the same starting point (AUTO_INCREMENT back at 1).
    """
    made: set[str] = set()

    def make(name: str, ddl: str | None = None) -> str:
        conn = mariadb.connect(DATABASE)
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS `{name}`")
                cur.execute(ddl or table_ddl(name))
        finally:
            conn.close()
        made.add(name)
        return name

    yield make
    conn = mariadb.connect(DATABASE)
    try:
        with conn.cursor() as cur:
            for name in made:
                cur.execute(f"DROP TABLE IF EXISTS `{name}`")
    finally:
        conn.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("call", "setup"):
        proc = getattr(item, "funcargs", {}).get("dbmesh") or _STARTED.get("dbmesh")
        if isinstance(proc, DbMeshProcess):
            report.sections.append(("dbmesh log (tail)", proc.stderr_text()[-6000:]))
