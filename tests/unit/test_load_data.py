"""The LOAD DATA statement parser and the splitter's rules (pure logic; the row splitter itself is fuzzed in
tests/fuzz/test_fuzz_load_rows.py)."""

from __future__ import annotations

import doctest

import pytest

from dbmesh import errors
from dbmesh.kernel import load_data, load_rows
from dbmesh.kernel.load_data import is_load_data, parse_load_data
from dbmesh.kernel.load_rows import MISSING, FieldRules, RowSplitter


def test_docstring_examples() -> None:
    assert doctest.testmod(load_data).failed == 0
    assert doctest.testmod(load_rows).failed == 0


def test_defaults() -> None:
    s = parse_load_data("load data local infile 'f.txt' into table t")
    assert (s.local, s.file_name, s.table, s.schema, s.duplicates, s.priority) == (True, b"f.txt", "t", None, "", "")
    assert (s.field_term, s.enclosed, s.escaped, s.escaped_given, s.line_start, s.line_term) == (
        b"\t", b"", b"\\", False, b"", b"\n")
    assert (s.ignore_lines, s.columns, s.set_targets, s.charset, s.partition) == (0, None, (), None, False)


def test_every_clause() -> None:
    s = parse_load_data(
        "LOAD DATA LOW_PRIORITY LOCAL INFILE '/tmp/a\\'b.csv' REPLACE INTO TABLE `db`.`t``x` PARTITION (p0, p1) "
        "CHARACTER SET latin1 COLUMNS ESCAPED BY '' OPTIONALLY ENCLOSED BY '\"' TERMINATED BY 0x3B "
        "LINES TERMINATED BY '\\r\\n' STARTING BY 'x' IGNORE 2 ROWS (a, `B`, @v, t.c) "
        "SET d = CONCAT(@v, 'x,y'), `E` = (1 + 2) * 3;")
    assert s.file_name == b"/tmp/a'b.csv" and s.file_literal == "'/tmp/a\\'b.csv'"
    assert (s.priority, s.duplicates, s.schema, s.table, s.partition, s.charset) == (
        "LOW_PRIORITY", "REPLACE", "db", "t`x", True, "latin1")
    assert (s.field_term, s.enclosed, s.escaped, s.escaped_given) == (b";", b'"', b"", True)
    assert (s.line_term, s.line_start, s.ignore_lines) == (b"\r\n", b"x", 2)
    assert s.columns == ("a", "B", "@v", "c") and s.column_list_sql == "(a, `B`, @v, t.c)"
    assert s.set_targets == ("d", "e") and s.set_sql == "SET d = CONCAT(@v, 'x,y'), `E` = (1 + 2) * 3"
    assert s.for_table("t_1").startswith("LOAD DATA LOW_PRIORITY LOCAL INFILE '/tmp/a\\'b.csv' REPLACE INTO TABLE "
                                         "`t_1` PARTITION")
    assert not s.for_table("t_1").endswith(";")


def test_string_literals() -> None:
    s = parse_load_data("LOAD DATA LOCAL INFILE 'a' 'b' INTO TABLE t FIELDS TERMINATED BY '\\t' ENCLOSED BY '''' "
                        "ESCAPED BY '\\\\' LINES TERMINATED BY X'0D0A' STARTING BY \"\\\"\"")
    assert (s.file_name, s.field_term, s.enclosed, s.escaped, s.line_term, s.line_start) == (
        b"ab", b"\t", b"'", b"\\", b"\r\n", b'"')
    # NO_BACKSLASH_ESCAPES: a backslash is itself; ANSI_QUOTES: "..." is a name.
    s = parse_load_data("LOAD DATA LOCAL INFILE 'c:\\x.csv' INTO TABLE \"t\" FIELDS ESCAPED BY '\\'",
                        backslash_escapes=False, ansi_quotes=True)
    assert (s.file_name, s.table, s.escaped) == (b"c:\\x.csv", "t", b"\\")


def test_escape_char_follows_the_sql_mode() -> None:
    implicit = parse_load_data("LOAD DATA LOCAL INFILE 'f' INTO TABLE t")
    explicit = parse_load_data("LOAD DATA LOCAL INFILE 'f' INTO TABLE t FIELDS ESCAPED BY '\\\\'")
    none = parse_load_data("LOAD DATA LOCAL INFILE 'f' INTO TABLE t FIELDS ESCAPED BY ''")
    assert implicit.escape_char(False) == b"\\" and implicit.escape_char(True) == b""
    assert explicit.escape_char(True) == b"\\"
    assert none.escape_char(False) == b""


@pytest.mark.parametrize("sql", [
    "LOAD DATA LOCAL INFILE INTO TABLE t",
    "LOAD DATA LOCAL INFILE 'f' INTO t",
    "LOAD DATA LOCAL INFILE 'f' INTO TABLE t FIELDS",
    "LOAD DATA LOCAL INFILE 'f' INTO TABLE t IGNORE x LINES",
    "LOAD DATA LOCAL INFILE 'f' INTO TABLE t (a b)",
    "LOAD DATA LOCAL INFILE 'f' INTO TABLE t SET a",
    "LOAD DATA LOCAL INFILE 'f' INTO TABLE t garbage",
    "LOAD DATA LOCAL INFILE 'f",
])
def test_syntax_errors(sql: str) -> None:
    with pytest.raises(errors.DbMeshError) as info:
        parse_load_data(sql)
    assert info.value.entry is errors.SQL_SYNTAX


def test_is_load_data() -> None:
    assert is_load_data("  /* c */ load   data local infile 'x' into table t")
    assert is_load_data("-- c\nLOAD DATA INFILE 'x' INTO TABLE t")
    assert not is_load_data("LOAD XML LOCAL INFILE 'x' INTO TABLE t")
    assert not is_load_data("LOAD INDEX INTO CACHE t")
    assert not is_load_data("SELECT 'LOAD DATA'")


def _rules(**kw: bytes | str) -> FieldRules:
    base: dict[str, bytes | str] = {"field_term": b",", "enclosed": b'"', "escape": b"\\", "line_start": b"",
                                    "line_term": b"\n", "charset": "utf8mb4"}
    base.update(kw)
    return FieldRules(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kw", "words"), [
    ({"field_term": b"", "enclosed": b""}, "fixed-size"),
    ({"field_term": b"\n"}, "same FIELDS and LINES"),
    ({"line_term": b""}, "empty"),
    ({"field_term": b",\n"}, "inside the FIELDS terminator"),
    ({"line_start": b"x\ny"}, "LINES prefix"),
    ({"enclosed": b","}, "ENCLOSED BY or ESCAPED BY"),
    ({"escape": b"\n"}, "ENCLOSED BY or ESCAPED BY"),
    ({"escape": b"ab"}, "one character"),
    ({"field_term": "é".encode()}, "ASCII"),
    ({"charset": "gbk"}, "character set gbk"),
])
def test_unsplittable(kw: dict[str, bytes | str], words: str) -> None:
    reason = _rules(**kw).unsplittable()
    assert reason is not None and words in reason
    with pytest.raises(ValueError):
        RowSplitter(_rules(**kw), 2, [0])


def test_clause_is_explicit_hex() -> None:
    assert _rules(escape=b"").clause() == ("FIELDS TERMINATED BY X'2C' ENCLOSED BY X'22' ESCAPED BY X'' "
                                          "LINES STARTING BY X'' TERMINATED BY X'0A'")


def test_rows_wait_for_their_end_and_huge_rows_stay_linear() -> None:
    s = RowSplitter(_rules(), 2, [1])
    assert s.feed(b'1,"a') == []
    assert s.feed(b'b"\n2,') == [(b'1,"ab"\n', (b"ab",))]
    assert s.feed(b"x") == []
    assert s.finish() == [(b"2,x", (b"x",))]
    # A 4 MB field arriving in 16 KiB pieces is parsed a bounded number of times (the buffer must double).
    s = RowSplitter(_rules(), 2, [0])
    calls = 0
    cut = s._cut

    def counting() -> list[load_rows.Row]:
        nonlocal calls
        calls += 1
        return cut()

    s._cut = counting  # type: ignore[method-assign]
    piece = b"y" * 16384
    rows = []
    for _ in range(256):
        rows += s.feed(piece)
    rows += s.feed(b",z\n")
    rows += s.finish()
    assert len(rows) == 1 and len(rows[0][0]) == 256 * 16384 + 3 and rows[0][1] == (piece * 256,)
    assert calls < 30


def test_ignore_lines_and_missing_fields() -> None:
    s = RowSplitter(_rules(), 3, [0, 2], skip_lines=1)
    rows = s.feed(b"h1,h2,h3\n1,a\n2,b,c\n") + s.finish()
    assert rows == [(b"1,a\n", (b"1", MISSING)), (b"2,b,c\n", (b"2", b"c"))]
    assert s.rows == 2
