"""psql (libpq; simple protocol; its backslash commands send catalog queries) through dbmesh: the same
script's output, text for text, directly and through dbmesh — queries in aligned and unaligned output,
``\\d``, ``\\dt``, ``\\l``, an error with its SQLSTATE (VERBOSITY verbose), a transaction, COPY via
``\\copy`` — plus logins and TLS.

``\\l`` lists the databases of the PostgreSQL server behind the logical database: dbmesh forwards the
catalog query like any other (as PgBouncer does), so its output must equal the direct one and name the
backend database ``dbmesh_pg`` (the logical database maps to the physical database of the same name).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest

from tests.clients_pg.common import Endpoint

pytestmark = pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")

SCRIPT = r"""
\set VERBOSITY verbose
\pset pager off
DROP TABLE IF EXISTS t_psql;
CREATE TABLE t_psql (id serial PRIMARY KEY, name text NOT NULL, amount numeric(10,2), tags text[], at timestamptz, UNIQUE (name));
CREATE INDEX t_psql_amount ON t_psql (amount);
INSERT INTO t_psql (name, amount, tags, at) VALUES ('a ☃', 1.50, '{x,y}', '2024-01-01 00:00:00+00'), ('b', NULL, '{}', NULL), ('c😀', -2, NULL, '2000-02-29 12:00+00');
SELECT * FROM t_psql ORDER BY id;
\pset format unaligned
SELECT id, name, amount FROM t_psql ORDER BY id;
\pset format aligned
\d t_psql
\dt t_psql
\l dbmesh_pg
SELECT * FROM no_such_table_psql;
INSERT INTO t_psql (name) VALUES ('a ☃');
SELECT 1/0;
BEGIN;
INSERT INTO t_psql (name) VALUES ('in tx');
SELECT count(*) FROM t_psql;
ROLLBACK;
SELECT count(*) FROM t_psql;
BEGIN;
SELECT nonsense_column FROM t_psql;
SELECT 1;
ROLLBACK;
\copy t_psql (name, amount) FROM STDIN
copied 1	10.5
copied 2	\N
\.
\copy (SELECT id, name FROM t_psql ORDER BY id) TO STDOUT WITH (FORMAT csv)
DO $$ BEGIN RAISE NOTICE 'notice from psql'; END $$;
SELECT 'a' AS x \gset
\echo :x
DROP TABLE t_psql;
"""


def psql(ep: Endpoint, script: str = "", *, sslmode: str = "disable", args: tuple[str, ...] = (),
         password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PGPASSWORD=ep.password if password is None else password, PGSSLMODE=sslmode,
               PGCONNECT_TIMEOUT="10", LC_ALL="C.UTF-8", PGCLIENTENCODING="UTF8", PGAPPNAME="psql")
    env.pop("PGSERVICE", None)
    cmd = ["psql", "-X", "-h", ep.host, "-p", str(ep.port), "-U", ep.user, "-d", ep.database, *args]
    return subprocess.run(cmd, input=script, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_script_output_matches_direct(pg_direct: Endpoint, pg_proxy: Endpoint) -> None:
    direct = psql(pg_direct, SCRIPT, args=("-f", "-"))
    proxied = psql(pg_proxy, SCRIPT, args=("-f", "-"))
    out, err = proxied.stdout, proxied.stderr
    assert proxied.returncode == 0, err
    assert " id | name | amount | tags  |           at           \n" in out
    assert "1|a ☃|1.50\n2|b|\n3|c😀|-2.00\n" in out
    assert 'Table "public.t_psql"' in out and '"t_psql_name_key" UNIQUE CONSTRAINT, btree (name)' in out
    assert " public | t_psql | table | postgres\n" in out
    assert "dbmesh_pg" in out.split("List of databases", 1)[1]
    assert "COPY 2" in out and '6,copied 1\n7,copied 2\n' in out  # 4 and 5 went to failed inserts
    assert "ERROR:  42P01: relation \"no_such_table_psql\" does not exist\nLINE 1: SELECT * FROM no_such_table_psql;\n" in err
    assert "ERROR:  23505: duplicate key value violates unique constraint \"t_psql_name_key\"\n" \
           "DETAIL:  Key (name)=(a ☃) already exists." in err
    assert "ERROR:  22012: division by zero" in err
    assert "ERROR:  25P02: current transaction is aborted" in err
    assert "NOTICE:  00000: notice from psql" in err
    assert " count \n-------\n     4\n" in out and " count \n-------\n     3\n" in out
    assert out.rstrip().endswith("a\nDROP TABLE")
    assert out == direct.stdout
    assert err == direct.stderr


def test_list_databases_matches_direct(pg_direct: Endpoint, pg_proxy: Endpoint) -> None:
    direct = psql(pg_direct, args=("-l",))
    proxied = psql(pg_proxy, args=("-l",))
    assert proxied.returncode == 0, proxied.stderr
    names = {line.split("|")[0].strip() for line in proxied.stdout.splitlines() if "|" in line}
    assert {"dbmesh_pg", "postgres", "template0", "template1"} <= names
    assert proxied.stdout == direct.stdout


def test_logins_and_tls(pg_proxy: Endpoint, require_dbmesh: None) -> None:
    for user, password in (("root", "rootpw"), ("md5client", "md5pw"), ("plainclient", "plainpw")):
        ok = psql(pg_proxy.as_user(user, password), sslmode="require", args=("-c", "\\conninfo", "-c", "SELECT 7"))
        assert ok.returncode == 0, ok.stderr
        assert "SSL connection (protocol: TLSv1." in ok.stdout and "\n        7\n" in ok.stdout, ok.stdout
        bad = psql(pg_proxy.as_user(user, password), password="wrong", args=("-c", "SELECT 1"))
        assert bad.returncode == 2
        assert f'password authentication failed for user "{user}"' in bad.stderr, bad.stderr
    plain = psql(pg_proxy, args=("-c", "\\conninfo"))
    assert plain.returncode == 0 and "SSL connection" not in plain.stdout


def test_cancel_with_sigint(pg_proxy: Endpoint) -> None:
    """Ctrl-C in psql sends a CancelRequest; the query stops and psql goes on with the script."""
    import signal
    import time

    env = dict(os.environ, PGPASSWORD=pg_proxy.password, PGSSLMODE="disable")
    proc: Any = subprocess.Popen(
        ["psql", "-X", "-h", pg_proxy.host, "-p", str(pg_proxy.port), "-U", pg_proxy.user, "-d", pg_proxy.database,
         "-c", "SELECT pg_sleep(30)", "-c", "SELECT 'after cancel' AS x"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(1.5)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=15)
    assert time.monotonic() - started < 6
    assert "canceling statement due to user request" in err, (out, err)

