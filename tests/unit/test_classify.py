"""Statement classification (dbmesh.session.classify): a table of statements and what must come out of them."""

from __future__ import annotations

import doctest

import pytest

from dbmesh.session import classify as classify_module
from dbmesh.session.classify import REPLAYABLE, StatementInfo, classify

# (sql, expected fields); fields not named must have their defaults (None / False).
CASES: list[tuple[str, dict[str, object]]] = [
    # -- types -------------------------------------------------------------------------------------------------
    ("SELECT 1", {"type": "select"}),
    ("  /* hint */ select 1", {"type": "select"}),
    ("-- comment\nINSERT INTO t VALUES (1)", {"type": "insert"}),
    ("# comment\nUPDATE t SET a = 1", {"type": "update"}),
    ("WITH x AS (SELECT 1) SELECT * FROM x", {"type": "select"}),
    ("DELETE FROM t", {"type": "delete"}),
    ("REPLACE INTO t VALUES (1)", {"type": "replace"}),
    ("BEGIN", {"type": "begin"}),
    ("START TRANSACTION", {"type": "begin"}),
    ("COMMIT", {"type": "commit"}),
    ("ROLLBACK", {"type": "rollback"}),
    ("CREATE TABLE t (a INT)", {"type": "ddl"}),
    ("CALL p()", {"type": "call"}),
    ("EXPLAIN SELECT 1", {"type": "explain"}),
    ("", {"type": "other"}),
    ("   ", {"type": "other"}),
    # -- several statements: ';' outside strings, comments and identifiers ----------------------------------------
    ("SELECT 1; SELECT 2", {"type": "select", "pin": "multi-statement", "multi": True}),
    ("USE shop; SELECT 1", {"type": "use", "pin": "multi-statement", "multi": True}),
    ("SELECT 1;", {"type": "select"}),
    ("SELECT 1;;", {"type": "select"}),
    ("SELECT 1; -- trailing comment", {"type": "select"}),
    ("SELECT 1; /* c */ ;", {"type": "select"}),
    ("SELECT ';'", {"type": "select"}),
    ('SELECT "x;y"', {"type": "select"}),
    ("SELECT 'it\\'s; fine'", {"type": "select"}),
    ("SELECT 'a'';b'", {"type": "select"}),
    ("SELECT `a;b` FROM t", {"type": "select"}),
    ("SELECT `a``;b` FROM t", {"type": "select"}),
    ("SELECT 1 /* ; SELECT 2 */", {"type": "select"}),
    ("SELECT 1 # ; SELECT 2\n", {"type": "select"}),
    ("SELECT 1 -- ; SELECT 2\n", {"type": "select"}),
    ("SELECT 'a;' ; SELECT 'b'", {"type": "select", "pin": "multi-statement", "multi": True}),
    # -- SET ---------------------------------------------------------------------------------------------------
    ("SET @@session.sql_mode='STRICT_ALL_TABLES'", {"type": "set", "set_vars": (("sql_mode", "'STRICT_ALL_TABLES'"),)}),
    ("SET SESSION time_zone = '+00:00', sql_mode = ''",
     {"type": "set", "set_vars": (("time_zone", "'+00:00'"), ("sql_mode", "''"))}),
    ("SET LOCAL sql_mode=DEFAULT", {"type": "set", "set_vars": (("sql_mode", "DEFAULT"),)}),
    ("SET sql_mode = 'a;b'", {"type": "set", "set_vars": (("sql_mode", "'a;b'"),)}),
    ("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci",
     {"type": "set", "set_vars": (("NAMES", "utf8mb4 COLLATE utf8mb4_unicode_ci"),)}),
    ("SET CHARACTER SET utf8", {"type": "set", "set_vars": (("NAMES", "utf8"),)}),
    ("SET autocommit=1", {"type": "set", "set_vars": (("autocommit", "1"),)}),
    # autocommit=0 opens transactions: never replayed, the session keeps its connection.
    ("SET autocommit=0", {"type": "set", "pin": "SET"}),
    ("SET autocommit = OFF", {"type": "set", "pin": "SET"}),
    ("SET @@session.autocommit = 0", {"type": "set", "pin": "SET"}),
    # GLOBAL/PERSIST change the server, not the session: never replayable on other connections.
    ("SET GLOBAL max_connections=100", {"type": "set", "pin": "SET"}),
    ("SET GLOBAL sql_mode = ''", {"type": "set", "pin": "SET"}),
    ("SET @@global.sql_mode=''", {"type": "set", "pin": "SET"}),
    ("SET @@SESSION.sql_mode = '', @@GLOBAL.sql_mode = ''", {"type": "set", "pin": "SET"}),
    ("SET PERSIST max_connections=10", {"type": "set", "pin": "SET"}),
    ("SET foo_bar = 1", {"type": "set", "pin": "SET"}),  # not in the replayable set
    ("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", {"type": "set", "pin": "SET TRANSACTION"}),
    ("SET SESSION TRANSACTION READ ONLY", {"type": "set", "pin": "SET TRANSACTION"}),
    ("SET @x = 1", {"type": "set", "pin": "user variable"}),
    ("SET sql_mode = '', @x = 1", {"type": "set", "pin": "user variable"}),
    # -- user variables vs. '@' in literals ------------------------------------------------------------------------
    ("SELECT @x", {"type": "select", "pin": "user variable"}),
    ("SELECT @x := 1", {"type": "select", "pin": "user variable"}),
    ("SELECT @`quoted var`", {"type": "select", "pin": "user variable"}),
    ("SELECT * FROM users WHERE email = 'bob@example.com'", {"type": "select"}),
    ("SELECT `bob@example` FROM t", {"type": "select"}),
    # A literal that merely starts with '@' is (conservatively) taken for a variable: pinned, never wrong.
    ("SELECT * FROM t WHERE handle = '@bob'", {"type": "select", "pin": "user variable"}),
    ("SELECT @@version", {"type": "select"}),
    # -- state that pins ---------------------------------------------------------------------------------------
    ("SELECT * FROM t WHERE id = 1 FOR UPDATE", {"type": "select"}),  # a transaction pins, not the lock clause
    ("CREATE TEMPORARY TABLE tmp (id INT)", {"type": "ddl", "pin": "temporary table"}),
    ("CREATE OR REPLACE TEMPORARY TABLE tmp (id INT)", {"type": "ddl", "pin": "temporary table"}),
    ("LOCK TABLES t WRITE", {"type": "lock", "pin": "table lock"}),
    ("LOCK TABLE t READ", {"type": "lock", "pin": "table lock"}),
    ("UNLOCK TABLES", {"type": "lock", "pin": "lock"}),
    ("FLUSH TABLES WITH READ LOCK", {"type": "admin", "pin": "table lock"}),
    ("SELECT GET_LOCK('x', 10)", {"type": "select", "pin": "user lock"}),
    ("DO RELEASE_LOCK('x')", {"type": "select", "pin": "user lock"}),
    ("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1", {"type": "select", "pin": "SQL_CALC_FOUND_ROWS"}),
    ("SELECT LAST_INSERT_ID(5)", {"type": "select", "pin": "LAST_INSERT_ID(expr)"}),
    ("INSERT INTO t VALUES (LAST_INSERT_ID(id + 1))", {"type": "insert", "pin": "LAST_INSERT_ID(expr)"}),
    ("PREPARE s FROM 'SELECT 1'", {"type": "prepare", "pin": "SQL PREPARE"}),
    ("EXECUTE s", {"type": "execute", "pin": "SQL PREPARE"}),
    ("XA START 'x'", {"type": "xa", "pin": "XA transaction"}),
    ("HANDLER t OPEN", {"type": "handler", "pin": "HANDLER"}),
    # -- history readers ---------------------------------------------------------------------------------------
    ("SELECT LAST_INSERT_ID()", {"type": "select", "history": "LAST_INSERT_ID()"}),
    ("SELECT last_insert_id( )", {"type": "select", "history": "LAST_INSERT_ID()"}),
    ("SELECT FOUND_ROWS()", {"type": "select", "history": "FOUND_ROWS()"}),
    ("SELECT ROW_COUNT()", {"type": "select", "history": "ROW_COUNT()"}),
    ("SHOW WARNINGS", {"type": "show", "history": "SHOW WARNINGS"}),
    ("SHOW COUNT(*) ERRORS", {"type": "show", "history": "SHOW ERRORS"}),
    ("SELECT @@warning_count", {"type": "select", "history": "@@warning_count"}),
    ("SELECT @@session.identity", {"type": "select", "history": "@@identity"}),
    # -- answered by dbmesh ------------------------------------------------------------------------------------
    ("USE shop", {"type": "use", "use_db": "shop"}),
    ("use `we``ird`", {"type": "use", "use_db": "we`ird"}),
    ("USE shop;", {"type": "use", "use_db": "shop"}),
    ("SHOW DATABASES", {"type": "show", "local": "show_databases"}),
    ("show schemas;", {"type": "show", "local": "show_databases"}),
]


@pytest.mark.parametrize("sql,expected", CASES, ids=[c[0][:50] for c in CASES])
def test_classify_table(sql: str, expected: dict[str, object]) -> None:
    want = StatementInfo(**expected)  # type: ignore[arg-type]
    assert classify(sql) == want


@pytest.mark.parametrize("sql", [
    # mysqldump prologues: executable comments that change session state on whatever connection runs them.
    "/*!40103 SET TIME_ZONE='+00:00' */",
    "/*!40101 SET NAMES utf8mb4 */",
    "/*!40101 SET character_set_client = utf8 */",
    "/*!50503 SET NAMES utf8mb4 */",
])
def test_executable_comment_setting_session_state_is_not_left_untracked(sql: str) -> None:
    """`/*! ... */` is executed by MySQL/MariaDB. A SET inside it must be replayed or pin the session; classifying
    it as a stateless statement lets a multiplexed backend connection keep a changed time zone or charset."""
    info = classify(sql)
    assert info.pin is not None or info.set_vars is not None, info


def test_set_global_is_never_replayable() -> None:
    for name in sorted(REPLAYABLE):
        for sql in (f"SET GLOBAL {name} = 1", f"SET @@global.{name} = 1", f"SET PERSIST {name} = 1"):
            info = classify(sql)
            assert info.set_vars is None and info.pin is not None, sql


def test_every_replayable_variable_is_recognised_in_session_scope() -> None:
    for name in sorted(REPLAYABLE - {"autocommit"}):
        for sql in (f"SET {name} = 1", f"SET SESSION {name}=1", f"SET @@session.{name} = 1", f"SET @@{name}=1",
                    f"set local {name} = 'x'"):
            info = classify(sql)
            assert info.set_vars is not None and info.set_vars[0][0] == name, sql


def test_classify_is_pure_and_stable() -> None:
    sql = "SELECT GET_LOCK('a', 1); SELECT 2"
    assert classify(sql) == classify(sql)
    assert classify(sql).multi


def test_module_doctests() -> None:
    result = doctest.testmod(classify_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
