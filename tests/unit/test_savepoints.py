"""Savepoint statements and the stack a sharded transaction keeps of them."""

from __future__ import annotations

import doctest

import pytest

from dbmesh.session import savepoints
from dbmesh.session.savepoints import SavepointStack, parse_savepoint


def test_docstring_examples() -> None:
    assert doctest.testmod(savepoints).failed == 0


@pytest.mark.parametrize(("sql", "action", "key"), [
    ("SAVEPOINT a", "save", "a"),
    ("savepoint Sp_1;", "save", "sp_1"),
    ("RELEASE SAVEPOINT a", "release", "a"),
    ("RELEASE a", "release", "a"),
    ("ROLLBACK TO SAVEPOINT a", "rollback", "a"),
    ("ROLLBACK WORK TO a", "rollback", "a"),
    ("ROLLBACK TRANSACTION TO SAVEPOINT \"Mixed\"", "rollback", "Mixed"),
    ("SAVEPOINT `odd name`", "save", "odd name"),
])
def test_parse(sql: str, action: str, key: str) -> None:
    sp = parse_savepoint(sql)
    assert sp is not None and (sp.action, sp.key) == (action, key)


@pytest.mark.parametrize("sql", ["ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT a, b", "SELECT 'SAVEPOINT a'"])
def test_not_a_savepoint_statement(sql: str) -> None:
    assert parse_savepoint(sql) is None


def test_mysql_replaces_a_savepoint_of_the_same_name_postgresql_keeps_both() -> None:
    mysql, pg = SavepointStack(), SavepointStack(replace_same_name=False)
    for sql in ("SAVEPOINT a", "SAVEPOINT b", "SAVEPOINT A"):
        mysql.apply(parse_savepoint(sql))
        pg.apply(parse_savepoint(sql))
    assert mysql.names == ["b", "A"]
    assert pg.names == ["a", "b", "A"]
    # Releasing the newer "a" leaves PostgreSQL's older one (and what precedes it).
    pg.apply(parse_savepoint("RELEASE SAVEPOINT a"))
    assert pg.names == ["a", "b"]


def test_rollback_to_keeps_the_savepoint_and_drops_later_ones_unknown_names_change_nothing() -> None:
    stack = SavepointStack()
    for sql in ("SAVEPOINT a", "SAVEPOINT b", "SAVEPOINT c", "ROLLBACK TO b", "RELEASE SAVEPOINT zz"):
        stack.apply(parse_savepoint(sql))
    assert stack.names == ["a", "b"]
