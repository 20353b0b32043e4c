"""The ``mariadb``/``mysql`` command-line client through dbmesh, compared with MariaDB directly.

``--column-type-info`` makes the client print every column definition it receives (catalog, database,
table, name, type, collation, length, max length, decimals, flags), so comparing its output compares the
metadata byte for byte as the client decoded it, beside the rows, warnings and error lines.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from tests.clients.common import Endpoint

TABLE = "t_cli"
CLI = shutil.which("mariadb") or shutil.which("mysql")
pytestmark = pytest.mark.skipif(CLI is None, reason="no mariadb/mysql command-line client installed")


def cli(ep: Endpoint, sql: str, *extra: str, database: str | None = "dbmesh_test") -> subprocess.CompletedProcess[str]:
    """Run the client; output is decoded with surrogateescape so raw BLOB bytes survive exactly."""
    args = [str(CLI), "--no-defaults", "--protocol=TCP", f"--host={ep.host}", f"--port={ep.port}",
            f"--user={ep.user}", f"--password={ep.password}", "--batch", "--default-character-set=utf8mb4",
            *extra]
    if database:
        args.append(database)
    # The SQL goes in on stdin (a script, as `mariadb db < file.sql`): with -e, --force does not go on
    # after an error.
    return subprocess.run(args, input=sql, capture_output=True, text=True, encoding="utf-8",
                          errors="surrogateescape", timeout=60, check=False)


def both(direct: Endpoint, proxy: Endpoint, sql: str, *extra: str, prepare: Any = None) -> dict[str, Any]:
    out = {}
    for ep in (direct, proxy):
        if prepare is not None:
            prepare()
        r = cli(ep, sql, *extra)
        out[ep.name] = (r.returncode, r.stdout, r.stderr)
    return out


def test_connect(proxy: Endpoint) -> None:
    r = cli(proxy, "SELECT 1 AS one, DATABASE() AS db")
    assert (r.returncode, r.stdout, r.stderr) == (0, "one\tdb\n1\tdbmesh_test\n", "")


def test_connect_tls_verified(proxy: Endpoint, proxy_ca_file: str) -> None:
    r = cli(proxy, "status;", "--ssl", f"--ssl-ca={proxy_ca_file}")
    assert r.returncode == 0, r.stderr
    ssl_line = [line for line in r.stdout.splitlines() if line.startswith("SSL:")]
    assert ssl_line and "Cipher in use is" in ssl_line[0], r.stdout


@pytest.mark.parametrize("user", ["root", "sha2user"])
def test_wrong_password_is_1045(proxy: Endpoint, user: str) -> None:
    r = cli(proxy.as_user(user, "wrong"), "SELECT 1")
    assert r.returncode == 1
    assert r.stderr.startswith(f"ERROR 1045 (28000): Access denied for user '{user}'@"), r.stderr


def test_sha2_user_over_tls(sha2_proxy: Endpoint, proxy_ca_file: str) -> None:
    r = cli(sha2_proxy, "SELECT CONCAT('sha2', 'ok')", "--ssl", f"--ssl-ca={proxy_ca_file}")
    assert (r.returncode, r.stdout.splitlines()[-1:]) == (0, ["sha2ok"]), r.stderr


CRUD = f"""
INSERT INTO {TABLE} (i, bu, d, dbl, vc, txt, bl, dt, dtm, tm, ts, js, en, short) VALUES
  (42, 18446744073709551615, 12345678.90, 3.141592653589793, 'héllo wörld 😀', REPEAT('t', 300),
   X'00FF00FE0A0D5C27', '2024-02-29', '2024-01-02 03:04:05.123456', '-838:59:59', '2024-05-06 07:08:09',
   '{{"a": [1, 2], "e": "😀"}}', 'green', 'abc'),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SELECT ROW_COUNT() AS inserted, LAST_INSERT_ID() AS first_id;
SELECT * FROM {TABLE} ORDER BY id;
SELECT id, HEX(bl), LENGTH(vc), CHAR_LENGTH(vc), bu - 1, d / 3, JSON_EXTRACT(js, '$.e') FROM {TABLE} ORDER BY id;
UPDATE {TABLE} SET en = 'green' WHERE id IN (1, 2);
SELECT ROW_COUNT() AS changed;
INSERT IGNORE INTO {TABLE} (short) VALUES ('much too long');
SHOW WARNINGS;
PREPARE s FROM 'SELECT id, vc FROM {TABLE} WHERE id = ? OR vc IS NULL';
SET @x = 1;
EXECUTE s USING @x;
DEALLOCATE PREPARE s;
DELETE FROM {TABLE} WHERE id = 2;
SELECT ROW_COUNT() AS deleted, COUNT(*) AS n FROM {TABLE};
"""


def test_column_metadata_matches_direct(direct: Endpoint, proxy: Endpoint, fresh_table: Any) -> None:
    """Every column definition of every result set, as the client decodes it (--column-type-info only
    prints in --table mode). Includes MariaDB's extended type info ("BLOB (format=json)"), which the
    client receives when both ends negotiate MARIADB_CLIENT_EXTENDED_METADATA."""
    meta = both(direct, proxy, CRUD, "--table", "--column-type-info", prepare=lambda: fresh_table(TABLE))
    assert meta["direct"][0] == 0 and meta["direct"][1].count("Field   1:") == 7  # one dump per result set
    assert "Type:       BLOB (format=json)" in meta["direct"][1]
    assert meta["dbmesh"] == meta["direct"]


def test_crud_output_matches_direct(direct: Endpoint, proxy: Endpoint, fresh_table: Any) -> None:
    out = both(direct, proxy, CRUD, "--show-warnings", prepare=lambda: fresh_table(TABLE))
    assert out["dbmesh"] == out["direct"]
    rc, stdout, stderr = out["dbmesh"]
    assert (rc, stderr) == (0, "")
    assert "inserted\tfirst_id\n2\t1\n" in stdout
    assert "héllo wörld 😀" in stdout and "00FF00FE0A0D5C27" in stdout
    assert "changed\n1\n" in stdout
    assert "Warning\t1265\tData truncated for column 'short' at row 1" in stdout
    assert "deleted\tn\n1\t2\n" in stdout


@pytest.mark.parametrize(
    ("sql", "code", "state"),
    [
        ("SELECT * FROM no_such_table_for_client_matrix", 1146, "42S02"),
        (f"INSERT INTO {TABLE} (id) VALUES (1); INSERT INTO {TABLE} (id) VALUES (1)", 1062, "23000"),
        ("SELEC 1", 1064, "42000"),
    ],
    ids=["1146", "1062", "1064"],
)
def test_errors_match_direct(direct: Endpoint, proxy: Endpoint, fresh_table: Any, sql: str, code: int,
                             state: str) -> None:
    out = both(direct, proxy, sql + "; SELECT 'next statement runs'", "--force", prepare=lambda: fresh_table(TABLE))
    assert out["dbmesh"] == out["direct"]
    _, stdout, stderr = out["dbmesh"]
    assert f"\nERROR {code} ({state}) at line 1: " in stderr, stderr
    assert "next statement runs" in stdout  # --force: the session survives the error


def test_transactions(proxy: Endpoint, fresh_table: Any) -> None:
    fresh_table(TABLE)
    r = cli(proxy, f"""
        START TRANSACTION; INSERT INTO {TABLE} (vc) VALUES ('committed'); COMMIT;
        START TRANSACTION; INSERT INTO {TABLE} (vc) VALUES ('rolled back');
        SELECT GROUP_CONCAT(vc ORDER BY id) AS inside FROM {TABLE};
        ROLLBACK;
        SELECT GROUP_CONCAT(vc ORDER BY id) AS after_rollback FROM {TABLE};""")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == "inside\ncommitted,rolled back\nafter_rollback\ncommitted\n"
    r = cli(proxy, f"SELECT GROUP_CONCAT(vc ORDER BY id) AS other_session FROM {TABLE}")
    assert r.stdout == "other_session\ncommitted\n"


def test_use_and_set_names(direct: Endpoint, proxy: Endpoint) -> None:
    sql = ("SELECT DATABASE(); USE dbmesh_test; SELECT DATABASE(); SET NAMES latin1; "
           "SELECT @@character_set_client, @@character_set_results, HEX('é')")
    out = {}
    for ep in (direct, proxy):
        r = cli(ep, sql, "--default-character-set=latin1", database=None)
        out[ep.name] = (r.returncode, r.stdout, r.stderr)
    assert out["dbmesh"] == out["direct"]
    # The statement's bytes are UTF-8 (our argv), read by the server as latin1: 'é' arrives as C3 A9.
    assert out["dbmesh"][0] == 0 and "dbmesh_test\n" in out["dbmesh"][1]
    assert "latin1\tlatin1\tC3A9" in out["dbmesh"][1]
