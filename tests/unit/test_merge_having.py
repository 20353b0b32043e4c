"""HAVING over merged rows: three-valued logic, operators, dialect arithmetic, and refusal of the rest."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlglot
from sqlglot import exp

from dbmesh.errors import STATEMENT_UNSUPPORTED
from dbmesh.kernel.merge import MergeError, check_having, compile_having, merge, mysql_text_codec, pg_codec
from dbmesh.kernel.merge import codec_pg as pg
from dbmesh.kernel.merge.testing import collect, make_result
from dbmesh.kernel.plan import Aggregate, MergeSpec, having_column_name
from dbmesh.protocol.mysql.constants import ColumnType as T
from dbmesh.protocol.mysql.packets import ColumnDefinition41
from dbmesh.protocol.postgresql.messages import FieldDescription

# Merged rows: (name VARCHAR utf8mb4_general_ci, n BIGINT, d DECIMAL(10,2), f DOUBLE)
MY = mysql_text_codec([ColumnDefinition41("name", T.VAR_STRING, 45), ColumnDefinition41("n", T.LONGLONG, 63),
                       ColumnDefinition41("d", T.NEWDECIMAL, 63, decimals=2), ColumnDefinition41("f", T.DOUBLE, 63)])
PG = pg_codec([FieldDescription("name", type_oid=pg.TEXT), FieldDescription("n", type_oid=pg.INT8),
               FieldDescription("d", type_oid=pg.NUMERIC), FieldDescription("f", type_oid=pg.FLOAT8)])


def having(sql: str, dialect: str = "mysql") -> exp.Expression:
    """A HAVING expression over the planner's column names: name, n, d, f stand for merged columns 0..3."""
    tree = sqlglot.parse_one(sql, read=dialect)
    names = {"name": 0, "n": 1, "d": 2, "f": 3}

    def rename(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and node.name in names:
            return exp.column(having_column_name(names[node.name]))
        return node

    return tree.transform(rename)


def holds(sql: str, row: str, dialect: str = "mysql") -> bool:
    codec = MY if dialect == "mysql" else PG
    fields = codec.split(make_result(codec, row).batches[0][0])
    return compile_having(having(sql, dialect), codec, dialect)(fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("sql", "row", "expected"), [
    ("n > 1", "a|2|1.00|1", True),
    ("n > 1", "a|NULL|1.00|1", False),  # NULL comparison: unknown drops the row
    ("NOT n > 1", "a|NULL|1.00|1", False),  # NOT unknown is unknown
    ("n > 1 OR d = 1", "a|NULL|1.00|1", True),  # unknown OR true
    ("n > 1 OR d = 2", "a|NULL|1.00|1", False),  # unknown OR false
    ("n > 1 AND d = 2", "a|NULL|1.00|1", False),  # unknown AND false
    ("NOT (n > 1 AND d = 2)", "a|NULL|1.00|1", True),  # NOT (unknown AND false) = true
    ("n IS NULL", "a|NULL|1.00|1", True),
    ("n IS NOT NULL", "a|NULL|1.00|1", False),
    ("n IN (1, 2, 3)", "a|2|1.00|1", True),
    ("n IN (1, NULL)", "a|2|1.00|1", False),  # unknown
    ("n NOT IN (1, NULL)", "a|2|1.00|1", False),  # NOT unknown
    ("n NOT IN (1, 3)", "a|2|1.00|1", True),
    ("n BETWEEN 1 AND 2", "a|2|1.00|1", True),
    ("n NOT BETWEEN 1 AND 2", "a|3|1.00|1", True),
    ("n BETWEEN NULL AND 5", "a|3|1.00|1", False),
    ("d = 1.5", "a|1|1.50|1", True),
    ("d * 2 = 3", "a|1|1.50|1", True),
    ("d + n - 1 >= 1.5", "a|1|1.50|1", True),
    ("-d < 0", "a|1|1.50|1", True),
    ("f / 4 = 0.25", "a|1|1.00|1", True),
    ("n / 3 = 0.3333", "a|1|1.00|1", True),  # MySQL: 1/3 is DECIMAL with 4 decimals
    ("n / 0 IS NULL", "a|1|1.00|1", True),  # MySQL: division by zero is NULL
    ("name = 'ABC'", "abc|1|1.00|1", True),  # the column's case-insensitive collation
    ("name = 'abc  '", "abc|1|1.00|1", True),  # PAD SPACE
    ("name < 'b'", "ABC|1|1.00|1", True),
    ("name <> 'abd'", "abc|1|1.00|1", True),
    ("TRUE AND n = 1", "a|1|1.00|1", True),
    ("n", "a|2|1.00|1", True),  # MySQL: a number as a condition
    ("n", "a|0|1.00|1", False),
    ("n = 1 AND NULL", "a|1|1.00|1", False),
])
def test_mysql_having(sql: str, row: str, expected: bool) -> None:
    assert holds(sql, row) is expected


@pytest.mark.parametrize(("sql", "row", "expected"), [
    ("n / 2 = 3", "a|7|1|1", True),  # PostgreSQL: integer division truncates (7 / 2 = 3)
    ("-n / 2 = -3", "a|7|1|1", True),  # ... toward zero
    ("d / 2 = 3.5", "a|7|7.0|1", True),
    ("name = 'ABC'", "abc|1|1|1", False),  # C collation: case matters
    ("name < 'a'", "B|1|1|1", True),  # code point order
    ("f > 1e2", "a|1|1|150.5", True),
    ("n IS NOT NULL AND d IS NULL", "a|1|NULL|1", True),
])
def test_pg_having(sql: str, row: str, expected: bool) -> None:
    assert holds(sql, row, "postgres") is expected


def test_pg_division_by_zero_refused() -> None:
    with pytest.raises(MergeError):
        holds("n / 0 = 1", "a|1|1|1", "postgres")


@pytest.mark.parametrize("sql", [
    "name LIKE 'a%'", "n IN (SELECT 1)", "ABS(n) > 1", "n > (SELECT 1)", "CASE WHEN n > 1 THEN 1 END = 1",
    "n <=> 1", "n IS TRUE", "COALESCE(n, 0) > 1",
])
def test_check_having_refuses(sql: str) -> None:
    with pytest.raises(MergeError) as info:
        check_having(having(sql))
    assert info.value.entry is STATEMENT_UNSUPPORTED
    assert "HAVING" in info.value.message


def test_check_having_refuses_unknown_columns() -> None:
    with pytest.raises(MergeError) as info:
        check_having(sqlglot.parse_one("x > 1"))
    assert "column x" in info.value.message
    check_having(having("n > 1 AND (d BETWEEN 1 AND 2 OR name IN ('a', 'b')) AND f IS NOT NULL"))


async def test_having_in_merge_with_null_aggregates() -> None:
    codec = mysql_text_codec([ColumnDefinition41("g", T.VAR_STRING, 45), ColumnDefinition41("s", T.NEWDECIMAL, 63),
                              ColumnDefinition41("c", T.LONGLONG, 63)])
    # HAVING SUM(x) > 2 OR COUNT(*) >= 3, SUM in column 1 and COUNT in derived column 2.
    spec = MergeSpec(visible=2, group_by=(0,), grouped=True,
                     aggregates=(Aggregate("SUM", 1, (1,)), Aggregate("COUNT", 2, (2,))),
                     having=sqlglot.parse_one(f"{having_column_name(1)} > 2 OR {having_column_name(2)} >= 3"))
    shards = [make_result(codec, "a|1|1", "b|NULL|2", "c|NULL|1"), make_result(codec, "a|2|1", "b|NULL|1")]
    out = await collect(merge(spec, shards, codec, max_rows=10, dialect="mysql"))
    assert [codec.split(p) for p in out] == [[b"a", b"3"], [b"b", None]]


def test_having_uses_decimal_values() -> None:
    fields = MY.split(make_result(MY, "a|1|0.10|1").batches[0][0])
    assert MY.decode(2, fields[2]) == Decimal("0.10")
    assert compile_having(having("d + d + d = 0.3"), MY, "mysql")(fields)  # exact, unlike doubles
