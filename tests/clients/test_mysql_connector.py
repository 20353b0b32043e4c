"""mysql-connector-python through dbmesh — C extension and pure mode — compared with MariaDB directly.

Every test runs in both modes (``cext`` in a child process, see connector_driver.py for why). The
caching_sha2_password user ``sha2user`` is used over TLS and without it.

What pure mode does for caching_sha2_password without TLS (documented by test_sha2_pure_without_tls):
dbmesh knows the configured password, so a correct scramble always passes the *fast* path
(AuthMoreData 0x03 then OK) and no full authentication is needed: the connection succeeds. With a wrong
password the fast check fails, dbmesh asks for full authentication (0x04), and the pure connector answers
by sending the password in clear text over the plain socket (plugins/caching_sha2_password.py returns
``password + b"\\0"``); dbmesh refuses cleartext without TLS and returns ERR 1045 (28000)
"caching_sha2_password full authentication needs TLS or an RSA public key request" (a MySQL 8 server would
try to RSA-decrypt it and say "Access denied"; the code and SQLSTATE are the same).
"""

from __future__ import annotations

import datetime
import struct
from typing import Any

import pytest

from tests.clients.common import (
    BINARY,
    COLUMNS,
    SAMPLE_ROWS,
    Endpoint,
    Step,
    assert_same_trace,
    by_label,
    check_crud_expectations,
    crud_steps,
    expected_crud_rows,
    found_rows_steps,
)
from tests.clients.connector_driver import drive

TABLE = "t_mysql_connector"
MODES = ["cext", "pure"]

FOUND_ROWS = 2  # mysql.connector.constants.ClientFlag.FOUND_ROWS (CLIENT_FOUND_ROWS)


def params(ep: Endpoint, *, tls_ca: str | None = None, **extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "host": ep.host,
        "port": ep.port,
        "user": ep.user,
        "password": ep.password,
        "database": ep.database,
        "autocommit": True,
        "charset": "utf8mb4",
        "collation": "utf8mb4_general_ci",  # the connector's default (utf8mb4_0900_ai_ci) is MySQL-only
        "connection_timeout": 10,
    }
    if tls_ca:
        p.update(ssl_ca=tls_ca, ssl_verify_cert=True, ssl_verify_identity=False)
    else:
        p["ssl_disabled"] = True
    p.update(extra)
    return p


@pytest.mark.parametrize("mode", MODES)
def test_connect(proxy: Endpoint, mode: str) -> None:
    got = drive(mode, "connect", params=params(proxy))
    assert got["rows"] == [(1, "dbmesh_test")]


@pytest.mark.parametrize("mode", MODES)
def test_connect_tls_verified(proxy: Endpoint, proxy_ca_file: str, mode: str) -> None:
    # ssl_verify_cert with dbmesh's own certificate as CA: succeeds only over a verified TLS session.
    got = drive(mode, "connect", params=params(proxy, tls_ca=proxy_ca_file))
    assert got["rows"] == [(1, "dbmesh_test")]


@pytest.mark.parametrize("mode", MODES)
def test_sha2_user_over_tls(sha2_proxy: Endpoint, proxy_ca_file: str, mode: str) -> None:
    got = drive(mode, "connect", params=params(sha2_proxy, tls_ca=proxy_ca_file))
    assert got["rows"] == [(1, "dbmesh_test")]


@pytest.mark.parametrize("mode", MODES)
def test_sha2_user_without_tls(sha2_proxy: Endpoint, mode: str) -> None:
    """Correct password, plain socket: the fast path succeeds (see the module docstring)."""
    got = drive(mode, "connect", params=params(sha2_proxy))
    assert got["rows"] == [(1, "dbmesh_test")]


def test_sha2_pure_without_tls_wrong_password(sha2_proxy: Endpoint) -> None:
    """Wrong password, pure mode, plain socket: full authentication is refused with 1045/28000."""
    got = drive("pure", "connect_error", params=params(sha2_proxy.as_user("sha2user", "wrong")))
    errno, sqlstate, msg = got["error"]
    assert (errno, sqlstate) == (1045, "28000"), got
    assert "full authentication needs TLS" in msg, got


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("user", ["root", "sha2user"])
def test_wrong_password_is_1045(proxy: Endpoint, proxy_ca_file: str, mode: str, user: str) -> None:
    got = drive(mode, "connect_error", params=params(proxy.as_user(user, "wrong"), tls_ca=proxy_ca_file))
    assert got["error"] is not None, got
    errno, sqlstate, msg = got["error"]
    assert (errno, sqlstate) == (1045, "28000"), got
    assert "Access denied" in msg


def _traces(direct: Endpoint, proxy: Endpoint, fresh_table: Any, mode: str, steps: list[Step], *,
            cursor_kwargs: dict[str, Any] | None = None, tls_ca: str | None = None,
            client_flags: list[int] | None = None, ddl: str | None = None) -> dict[str, Any]:
    traces = {}
    for ep in (direct, proxy):
        fresh_table(TABLE, ddl)
        traces[ep.name] = drive(mode, "steps", params=params(ep, tls_ca=tls_ca if ep is proxy else None),
                                steps=steps, cursor_kwargs=cursor_kwargs or {}, client_flags=client_flags)
    assert_same_trace(traces["direct"], traces["dbmesh"], f"mysql-connector {mode} {cursor_kwargs or ''}")
    return traces


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_crud_matches_direct(direct: Endpoint, proxy: Endpoint, fresh_table: Any, proxy_ca_file: str,
                             mode: str, tls: bool) -> None:
    traces = _traces(direct, proxy, fresh_table, mode, crud_steps(TABLE), tls_ca=proxy_ca_file if tls else None)
    check_crud_expectations(traces["dbmesh"])
    assert list(by_label(traces["dbmesh"])["select all"].rows) == expected_crud_rows()
    assert by_label(traces["dbmesh"])["insert ignore truncates"].warnings == 1


# Client bugs of the connector's binary protocol, seen identically against MariaDB directly (the
# differential check stays exact; only the absolute round-trip check accounts for them, cell by cell):
# - cext cannot bind 2**64-1 ("RuntimeError: Failed raising error."), so that mode binds 2**63-1;
# - cext binds Python floats as MYSQL_TYPE_FLOAT: DOUBLE columns store the float32 value;
# - cext binds datetime.timedelta as 00:00:00;
# - pure decodes a negative binary TIME wrongly (-838:59:59 reads as -793:00:01; the text protocol
#   reads the same stored value correctly).
CEXT_ROWS = tuple((row[0], 2**63 - 1, *row[2:]) if row[1] is not None else row for row in SAMPLE_ROWS)
DBL, TM = COLUMNS.index("dbl"), COLUMNS.index("tm")


def _float32(v: Any) -> Any:
    return None if v is None else struct.unpack("<f", struct.pack("<f", v))[0]


def _prepared_expected(mode: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    out = []
    for row in rows:
        cells = list(row)
        if mode == "cext":
            cells[DBL] = _float32(cells[DBL])
            cells[TM] = None if cells[TM] is None else datetime.timedelta(0)
        elif cells[TM] is not None and cells[TM] < datetime.timedelta(0):
            cells[TM] = PURE_NEGATIVE_TIME_DECODE.get(cells[TM], cells[TM])
        out.append(tuple(cells))
    return out


PURE_NEGATIVE_TIME_DECODE = {
    -datetime.timedelta(hours=838, minutes=59, seconds=59): datetime.timedelta(days=-34, seconds=82799),
}


@pytest.mark.parametrize("mode", MODES)
def test_prepared_crud_matches_direct(direct: Endpoint, proxy: Endpoint, fresh_table: Any, mode: str) -> None:
    """The same scenario through ``cursor(prepared=True)``: COM_STMT_PREPARE/EXECUTE, binary rows,
    NULL and binary parameters bound natively."""
    rows = CEXT_ROWS if mode == "cext" else SAMPLE_ROWS
    traces = _traces(direct, proxy, fresh_table, mode, crud_steps(TABLE, rows), cursor_kwargs={"prepared": True})
    check_crud_expectations(traces["dbmesh"])
    assert list(by_label(traces["dbmesh"])["select all"].rows) == _prepared_expected(mode, expected_crud_rows(rows))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("found_rows", [False, True], ids=["changed", "found"])
def test_update_counts_with_and_without_found_rows(direct: Endpoint, proxy: Endpoint, fresh_table: Any,
                                                   mode: str, found_rows: bool) -> None:
    flags = [FOUND_ROWS] if found_rows else [-FOUND_ROWS]  # a negative flag unsets it
    traces = _traces(direct, proxy, fresh_table, mode, found_rows_steps(TABLE), client_flags=flags)
    o = by_label(traces["dbmesh"])
    assert o["update 3 matched 1 changed"].rowcount == (3 if found_rows else 1)
    assert o["update 3 matched 0 changed"].rowcount == (3 if found_rows else 0)


LARGE_DDL = f"CREATE TABLE `{TABLE}` (id INT AUTO_INCREMENT PRIMARY KEY, bl LONGBLOB, txt LONGTEXT, i INT)"


@pytest.mark.parametrize("mode", ["pure"])  # cext: "Python type _io.BytesIO cannot be converted" (no long data)
def test_prepared_long_data(direct: Endpoint, proxy: Endpoint, fresh_table: Any, mode: str) -> None:
    """>1 MiB parameters streamed with COM_STMT_SEND_LONG_DATA, plus a NULL parameter."""
    blob = (BINARY * 9000)[: 2 * 1024 * 1024 + 7]
    text = "αβγ😀" * 150_000
    results = {}
    for ep in (direct, proxy):
        fresh_table(TABLE, LARGE_DDL)
        results[ep.name] = drive(mode, "long_data", params=params(ep), table=TABLE, blob=blob, text=text)
    assert results["dbmesh"] == results["direct"]
    got = results["dbmesh"]
    assert got["inserted"] == (1, 1)
    assert got["rows"] == [(1, blob, text, None, len(blob))]


@pytest.mark.parametrize("mode", MODES)
def test_prepared_large_inline_parameter(direct: Endpoint, proxy: Endpoint, fresh_table: Any, mode: str) -> None:
    """A 1.5 MiB bytes parameter bound inline in COM_STMT_EXECUTE (no long data)."""
    blob = (BINARY * 7000)[: 1536 * 1024]
    steps = [
        Step("insert", f"INSERT INTO `{TABLE}` (bl, i) VALUES (%s, %s)", (blob, None)),
        Step("select", f"SELECT id, LENGTH(bl), MD5(bl), i FROM `{TABLE}` WHERE bl = %s", (blob,)),
    ]
    traces = _traces(direct, proxy, fresh_table, mode, steps, cursor_kwargs={"prepared": True}, ddl=LARGE_DDL)
    import hashlib

    assert traces["dbmesh"][0].rowcount == 1
    assert traces["dbmesh"][1].rows == ((1, len(blob), hashlib.md5(blob).hexdigest(), None),)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("prepared", [False, True], ids=["text", "prepared"])
def test_transactions(proxy: Endpoint, fresh_table: Any, mode: str, prepared: bool) -> None:
    fresh_table(TABLE)
    assert drive(mode, "transactions", params=params(proxy), table=TABLE,
                 cursor_kwargs={"prepared": True} if prepared else {}) == "ok"
