"""kernel.parse: the shape cache must give exactly sqlglot's parse, share entries by shape, never mutate templates."""

from __future__ import annotations

import doctest
import re

import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from dbmesh.errors import ProtocolError
from dbmesh.kernel import parse as parse_module
from dbmesh.kernel.parse import (
    BIT,
    DECIMAL,
    FLOAT,
    HEX,
    INT,
    STRING,
    Literal,
    ParseCache,
    ShapeError,
    SqlParseError,
    normalize,
)

MYSQL_CORPUS = r"""
SELECT 1
SELECT * FROM t WHERE id = 42
SELECT id, name FROM users WHERE id = 42 AND status = 'active' LIMIT 10
SELECT a, b FROM t WHERE a = 1 OR b = 'x' ORDER BY a DESC LIMIT 5 OFFSET 10
SELECT a FROM t LIMIT 10, 20
SELECT o.id, u.name FROM orders o JOIN users u ON o.user_id = u.id WHERE o.user_id = 7 AND o.amount > 10.5
SELECT o.id FROM orders o LEFT JOIN items i ON i.order_id = o.id AND i.qty >= 3 WHERE o.status <> 'closed'
SELECT * FROM a INNER JOIN b USING (id) WHERE a.x BETWEEN 1 AND 100
SELECT * FROM a CROSS JOIN b WHERE a.k = b.k AND a.v = 'q'
SELECT * FROM t WHERE id IN (1, 2, 3)
SELECT * FROM t WHERE id IN (1, 2, 3, 4, 5, 6)
SELECT * FROM t WHERE id NOT IN ('a', 'b')
SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE score > 90)
SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id AND u.flag = 1)
SELECT (SELECT MAX(x) FROM u WHERE u.k = 3) AS m FROM t
SELECT * FROM (SELECT a, b FROM t WHERE c = 5) AS sub WHERE sub.a > 2
WITH x AS (SELECT a FROM t WHERE b = 2) SELECT * FROM x WHERE a < 100
WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r
SELECT a, ROW_NUMBER() OVER (PARTITION BY b ORDER BY c DESC) AS rn FROM t WHERE d = 'z'
SELECT a, SUM(b) OVER (ORDER BY a ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM t
SELECT a, LAG(b, 1, 0) OVER w FROM t WINDOW w AS (ORDER BY a)
SELECT b, COUNT(*) FROM t WHERE a > 5 GROUP BY b HAVING COUNT(*) > 10 ORDER BY 2 DESC
SELECT b, AVG(c) AS av FROM t GROUP BY b HAVING av < 3.75
SELECT DISTINCT a FROM t WHERE b LIKE 'a%'
SELECT a FROM t WHERE b LIKE '%\_x%' ESCAPE '\\'
SELECT a FROM t WHERE b NOT LIKE 'pre_%'
SELECT a FROM t WHERE b REGEXP '^[0-9]+$'
SELECT a FROM t WHERE b IS NULL AND c IS NOT NULL
SELECT a FROM t WHERE b = TRUE AND c = FALSE
SELECT a FROM t WHERE x = -5
SELECT a FROM t WHERE x = - 5
SELECT a - -3, a - 3, -a FROM t
SELECT 1e3, 1.5E-7, 2.0e+10 FROM dual
SELECT 3.14159, 0.0, 100. FROM t
SELECT 0x1F, 0xDEADBEEF, X'0A0B', x'ff' FROM t
SELECT b'0101', 0b1111, B'1' FROM t
SELECT 'it''s', 'say "hi"', "double", "it\"s", 'back\\slash' FROM t
SELECT 'line1\nline2', 'tab\there', 'nul\0char', 'pct\%' FROM t
SELECT 'multi
line', 'ünïcødé ✓', '中文' FROM t
SELECT N'national', _utf8mb4'introduced', _latin1 'x' FROM t
SELECT 'a' 'b' FROM t
SELECT CONCAT('a', b, 'c') FROM t WHERE d = 'e'
SELECT DATE '2024-01-01', TIMESTAMP '2024-01-01 10:00:00' FROM t
SELECT * FROM t WHERE created > DATE '2024-01-01' AND created < '2024-02-01'
SELECT DATE_ADD(d, INTERVAL 5 DAY), d - INTERVAL 1 MONTH FROM t
SELECT DATE_ADD(d, INTERVAL '1' DAY) FROM t
SELECT CAST(a AS CHAR(10)), CAST('5' AS SIGNED), CONVERT(b, DECIMAL(10, 2)) FROM t
SELECT IF(a > 0, 'pos', 'neg'), IFNULL(b, 0), COALESCE(c, d, 'e') FROM t
SELECT CASE WHEN a = 1 THEN 'one' WHEN a = 2 THEN 'two' ELSE 'many' END FROM t
SELECT CASE a WHEN 1 THEN 10 ELSE 20 END FROM t
SELECT j->'$.name', j->>'$.age' FROM t WHERE j->>'$.kind' = 'x'
SELECT JSON_EXTRACT(doc, '$.a.b'), JSON_OBJECT('k', 1) FROM t
SELECT a FROM t WHERE id = ? AND name = 'x'
SELECT `select`, `weird``name` FROM `my table` WHERE `id` = 9
SELECT a FROM db1.t1 AS x WHERE x.b = 'q' FOR UPDATE
SELECT a FROM t WHERE b = 1 LOCK IN SHARE MODE
SELECT SQL_CALC_FOUND_ROWS a FROM t LIMIT 3
SELECT a FROM t UNION SELECT b FROM u WHERE c = 4
SELECT a FROM t UNION ALL SELECT b FROM u ORDER BY 1 LIMIT 7
SELECT a FROM t -- trailing comment with 'quote' and 5
SELECT a /* inline 5 'x' */ FROM t WHERE b = 6
SELECT /*+ MAX_EXECUTION_TIME(1000) */ a FROM t WHERE b = 1
SELECT /*! STRAIGHT_JOIN */ a FROM t WHERE b = 2
# hash comment 7
SELECT a FROM t WHERE b = 8
SELECT a FROM t WHERE b = 'x' # tail comment 'y'
SELECT @uservar, @@session.sql_mode, @@global.max_connections FROM t
SELECT COUNT(DISTINCT a), MIN(b), MAX(c), SUM(d * 1.1) FROM t WHERE e = 'f'
SELECT GROUP_CONCAT(a ORDER BY a SEPARATOR ',') FROM t GROUP BY b
SELECT a FROM t WHERE (a, b) IN ((1, 'x'), (2, 'y'))
SELECT a FROM t WHERE a > ALL (SELECT b FROM u WHERE c = 1)
SELECT a FROM t WHERE MATCH(a) AGAINST('word' IN BOOLEAN MODE)
SELECT SUBSTRING(a, 2, 3), LEFT(b, 4), ROUND(c, 2), a % 3, a DIV 2 FROM t
SELECT a FROM t WHERE b = 'x' AND c = 'x' AND d = 1 AND e = 1
INSERT INTO t (a, b) VALUES (1, 'x')
INSERT INTO t (a, b, c) VALUES (1, 'x', 2.5), (2, 'y', -3.5), (3, 'z', 1e2)
INSERT INTO t VALUES (1, NULL, TRUE, 'a\'b')
INSERT INTO t (a, b) VALUES (1, 'x') ON DUPLICATE KEY UPDATE b = 'y', c = c + 1
INSERT INTO t (a, b) VALUES (5, 'v') ON DUPLICATE KEY UPDATE b = VALUES(b)
INSERT IGNORE INTO t (a) VALUES (10)
INSERT INTO t (a, b) SELECT x, 'k' FROM u WHERE y = 3
INSERT INTO t SET a = 1, b = 'two'
REPLACE INTO t (a, b) VALUES (1, 'r')
INSERT INTO t (ts, d) VALUES ('2024-01-01 00:00:00', DATE '2024-05-06')
UPDATE t SET a = 1, b = 'x' WHERE id = 5
UPDATE t SET a = a + 1 WHERE id IN (1, 2) ORDER BY id LIMIT 10
UPDATE t JOIN u ON t.id = u.tid SET t.a = u.b WHERE u.c = 'z'
UPDATE t SET j = JSON_SET(j, '$.a', 1) WHERE id = 3
DELETE FROM t WHERE id = 5
DELETE FROM t WHERE created < '2020-01-01' LIMIT 1000
DELETE FROM t WHERE a IN (SELECT b FROM u WHERE c = 'gone')
DELETE t FROM t JOIN u ON t.id = u.id WHERE u.x = 1
CREATE TABLE t (id BIGINT PRIMARY KEY, name VARCHAR(255) NOT NULL DEFAULT '', amount DECIMAL(10, 2) DEFAULT 0.00)
CREATE TABLE IF NOT EXISTS t2 (id INT AUTO_INCREMENT, c CHAR(3) DEFAULT 'abc', PRIMARY KEY (id))
CREATE INDEX idx_a ON t (a)
CREATE UNIQUE INDEX idx_b ON t (b(10))
ALTER TABLE t ADD COLUMN c INT DEFAULT 5
ALTER TABLE t DROP COLUMN c
DROP TABLE IF EXISTS t
TRUNCATE TABLE t
CREATE VIEW v AS SELECT a FROM t WHERE b = 1
SET autocommit = 1
SET NAMES utf8mb4
SET @x = 5, @y = 'str'
SET SESSION sql_mode = 'STRICT_TRANS_TABLES'
SET TRANSACTION ISOLATION LEVEL READ COMMITTED
BEGIN
COMMIT
ROLLBACK
USE db1
SHOW TABLES
SHOW VARIABLES LIKE 'max_%'
SELECT a FROM t WHERE b = 'semi;colon' AND c = 'dash--dash' AND d = 'slash/*star*/'
SELECT a FROM t WHERE b = '#not a comment' AND c = "x -- y"
SELECT a FROM t WHERE b = '\'' AND c = '\\' AND d = ''''
SELECT a FROM t WHERE b = '' AND c = "" AND d = ' '
SELECT a FROM t WHERE b = 'emoji 😀' AND c = 'tab	inside'
SELECT 18446744073709551615, 9223372036854775807, 0, 00012 FROM t
SELECT a FROM t WHERE b = 1.0e0 AND c = .5e0 + 0
SELECT a+1, a*2, a/3, a-4 FROM t WHERE b=5 AND c<>6 AND d!=7 AND e<=8 AND f>=9
SELECT a FROM t WHERE b = 1--2
SELECT a FROM t WHERE b BETWEEN 'a' AND 'm' AND c NOT BETWEEN 1 AND 2
SELECT a FROM t t1 WHERE t1.b = (SELECT MIN(b) FROM t t2 WHERE t2.c = t1.c AND t2.d = 'q')
SELECT a, b FROM t ORDER BY FIELD(a, 3, 1, 2)
SELECT a FROM t WHERE b = 'x' COLLATE utf8mb4_bin
SELECT CHAR_LENGTH('héllo'), UPPER('abc'), LOWER("DEF") FROM t
SELECT NOW(), CURRENT_TIMESTAMP, UNIX_TIMESTAMP('2024-01-01') FROM t
SELECT a FROM t WHERE ts >= NOW() - INTERVAL 7 DAY
SELECT a FROM t WHERE b IN (1) AND c IN (1, 2)
SELECT a FROM t WHERE b = 0x0 AND c = 0b0
SELECT a FROM t WHERE b = X'' AND c = ''
SELECT a FROM t HAVING a > 1
SELECT a AS 'quoted alias', b "other alias" FROM t
SELECT a FROM t WHERE b = @'weird var'
EXPLAIN SELECT a FROM t WHERE b = 1
"""

PG_CORPUS = r"""
SELECT 1
SELECT * FROM t WHERE id = 42
SELECT id, name FROM users WHERE id = 42 AND status = 'active' LIMIT 10
SELECT a, b FROM t WHERE a = 1 OR b = 'x' ORDER BY a DESC LIMIT 5 OFFSET 10
SELECT a FROM t OFFSET 5 ROWS FETCH FIRST 10 ROWS ONLY
SELECT o.id, u.name FROM orders o JOIN users u ON o.user_id = u.id WHERE o.user_id = 7 AND o.amount > 10.5
SELECT o.id FROM orders o LEFT JOIN items i ON i.order_id = o.id AND i.qty >= 3 WHERE o.status <> 'closed'
SELECT * FROM a FULL OUTER JOIN b ON a.id = b.id WHERE a.x BETWEEN 1 AND 100
SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.a = a.id LIMIT 2) l
SELECT * FROM t WHERE id IN (1, 2, 3)
SELECT * FROM t WHERE id IN (1, 2, 3, 4, 5, 6)
SELECT * FROM t WHERE id = ANY(ARRAY[1, 2, 3])
SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE score > 90)
SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id AND u.flag = 1)
SELECT (SELECT max(x) FROM u WHERE u.k = 3) AS m FROM t
WITH x AS (SELECT a FROM t WHERE b = 2) SELECT * FROM x WHERE a < 100
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r
WITH m AS MATERIALIZED (SELECT 1 AS a) SELECT a FROM m
SELECT a, row_number() OVER (PARTITION BY b ORDER BY c DESC NULLS LAST) AS rn FROM t WHERE d = 'z'
SELECT a, sum(b) OVER (ORDER BY a ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM t
SELECT b, count(*) FROM t WHERE a > 5 GROUP BY b HAVING count(*) > 10 ORDER BY 2 DESC
SELECT b, count(*) FILTER (WHERE c = 'x') FROM t GROUP BY b
SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b DESC
SELECT a FROM t WHERE b LIKE 'a%' AND c ILIKE '%Z'
SELECT a FROM t WHERE b ~ '^[0-9]+$' AND c !~* 'x'
SELECT a FROM t WHERE b IS NULL AND c IS NOT NULL AND d IS DISTINCT FROM 5
SELECT a FROM t WHERE b = TRUE AND c = FALSE
SELECT a FROM t WHERE x = -5
SELECT a - -3, a - 3, -a FROM t
SELECT 1e3, 1.5E-7, 2.0e+10
SELECT 3.14159, 0.0, 100.
SELECT X'1F', B'0101', x'ff'
SELECT 'it''s', 'back\slash', 'multi
line', 'ünïcødé ✓', '中文'
SELECT E'esc\'aped', E'new\nline', e'tab\t', E'quote''d'
SELECT $$dollar 'quoted'$$, $tag$with $$ inside$tag$, $a$x$a$
SELECT 'a' || 'b' || c FROM t
SELECT '1'::int, '2024-01-01'::date, 3::text, '{1,2}'::int[]
SELECT CAST('5' AS INTEGER), CAST(a AS VARCHAR(10)), a::numeric(10, 2) FROM t
SELECT DATE '2024-01-01', TIMESTAMP '2024-01-01 10:00:00', TIME '10:00'
SELECT * FROM t WHERE created > DATE '2024-01-01' AND created < '2024-02-01'
SELECT now() - INTERVAL '1 day', d + INTERVAL '3' HOUR FROM t
SELECT d + INTERVAL '2 hours 30 minutes' FROM t
SELECT j -> 'name', j ->> 'age', j #> '{a,b}', j #>> '{a}' FROM t
SELECT * FROM t WHERE j @> '{"k": 1}' AND j <@ '{"a": 2}'
SELECT * FROM t WHERE j ? 'key' AND tags && ARRAY['a', 'b']
SELECT ARRAY[1, 2, 3], ARRAY['x', 'y'], arr[1], arr[2:3] FROM t
SELECT a FROM t WHERE id = $1 AND name = 'x'
SELECT a FROM t WHERE id = $1 AND b = $2 LIMIT $3
SELECT "select", "Weird Name" FROM "my table" WHERE "id" = 9
SELECT a FROM s1.t1 AS x WHERE x.b = 'q' FOR UPDATE
SELECT a FROM t WHERE b = 1 FOR SHARE SKIP LOCKED
SELECT a FROM t UNION SELECT b FROM u WHERE c = 4
SELECT a FROM t UNION ALL SELECT b FROM u ORDER BY 1 LIMIT 7
SELECT a FROM t INTERSECT SELECT b FROM u WHERE c = 5
SELECT a FROM t -- trailing comment with 'quote' and 5
SELECT a /* inline 5 'x' */ FROM t WHERE b = 6
SELECT a /* outer /* nested 'q' */ still */ FROM t WHERE b = 7
SELECT coalesce(a, 'd'), nullif(b, 0), greatest(1, 2, c) FROM t
SELECT CASE WHEN a = 1 THEN 'one' WHEN a = 2 THEN 'two' ELSE 'many' END FROM t
SELECT string_agg(a, ',' ORDER BY a) FROM t GROUP BY b
SELECT a FROM t WHERE (a, b) IN ((1, 'x'), (2, 'y'))
SELECT substring(a FROM 2 FOR 3), position('x' IN b), round(c, 2), a % 3 FROM t
SELECT extract(year FROM d), date_trunc('month', d) FROM t
SELECT a FROM t WHERE b = 'x' AND c = 'x' AND d = 1 AND e = 1
SELECT a FROM t WHERE b = 'x' COLLATE "C"
SELECT generate_series(1, 10)
SELECT a FROM t TABLESAMPLE SYSTEM (10)
INSERT INTO t (a, b) VALUES (1, 'x')
INSERT INTO t (a, b, c) VALUES (1, 'x', 2.5), (2, 'y', -3.5), (3, 'z', 1e2)
INSERT INTO t VALUES (1, NULL, TRUE, 'a''b')
INSERT INTO t (a, b) VALUES (1, 'x') ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b, c = t.c + 1
INSERT INTO t (a, b) VALUES (1, 'x') ON CONFLICT DO NOTHING
INSERT INTO t (a, b) VALUES (1, 'x') ON CONFLICT ON CONSTRAINT t_pkey DO UPDATE SET b = 'y' WHERE t.c > 0
INSERT INTO t (a) VALUES (10) RETURNING id, a
INSERT INTO t (a, b) SELECT x, 'k' FROM u WHERE y = 3
INSERT INTO t (ts, d) VALUES ('2024-01-01 00:00:00', DATE '2024-05-06')
INSERT INTO t (j) VALUES ('{"a": [1, 2]}'::jsonb)
UPDATE t SET a = 1, b = 'x' WHERE id = 5
UPDATE t SET a = a + 1 WHERE id IN (1, 2) RETURNING a
UPDATE t SET a = u.b FROM u WHERE t.id = u.tid AND u.c = 'z'
UPDATE t SET j = jsonb_set(j, '{a}', '1') WHERE id = 3
DELETE FROM t WHERE id = 5
DELETE FROM t WHERE created < '2020-01-01' RETURNING *
DELETE FROM t USING u WHERE t.id = u.id AND u.x = 1
DELETE FROM t WHERE a IN (SELECT b FROM u WHERE c = 'gone')
CREATE TABLE t (id BIGINT PRIMARY KEY, name VARCHAR(255) NOT NULL DEFAULT '', amount NUMERIC(10, 2) DEFAULT 0.00)
CREATE TABLE IF NOT EXISTS t2 (id SERIAL, c CHAR(3) DEFAULT 'abc', tags TEXT[], PRIMARY KEY (id))
CREATE INDEX idx_a ON t (a) WHERE b > 5
CREATE UNIQUE INDEX CONCURRENTLY idx_b ON t USING btree (b)
ALTER TABLE t ADD COLUMN c INT DEFAULT 5
ALTER TABLE t DROP COLUMN c
DROP TABLE IF EXISTS t CASCADE
TRUNCATE TABLE t
CREATE VIEW v AS SELECT a FROM t WHERE b = 1
SET search_path = public, other
SET statement_timeout = 5000
SET TIME ZONE 'UTC'
SET LOCAL lock_timeout = '1s'
BEGIN
COMMIT
ROLLBACK
SHOW search_path
SELECT a FROM t WHERE b = 'semi;colon' AND c = 'dash--dash' AND d = 'slash/*star*/'
SELECT a FROM t WHERE b = '#not a comment' AND c = 'x -- y'
SELECT a FROM t WHERE b = '''' AND c = '\' AND d = ''
SELECT a FROM t WHERE b = 'emoji 😀' AND c = 'tab	inside'
SELECT 9223372036854775807, 0, 00012
SELECT a+1, a*2, a/3, a-4 FROM t WHERE b=5 AND c<>6 AND d!=7 AND e<=8 AND f>=9
SELECT a FROM t WHERE b BETWEEN 'a' AND 'm' AND c NOT BETWEEN 1 AND 2
SELECT a FROM t t1 WHERE t1.b = (SELECT min(b) FROM t t2 WHERE t2.c = t1.c AND t2.d = 'q')
SELECT upper('abc'), lower('DEF'), length('héllo')
SELECT a FROM t WHERE ts >= now() - INTERVAL '7 days'
SELECT a FROM t WHERE b IN (1) AND c IN (1, 2)
SELECT a FROM t WHERE b = X'' AND c = ''
SELECT a AS "quoted alias" FROM t
SELECT a FROM t WHERE b::text = '5' AND c::int > 3
SELECT a FROM t WHERE b @@ to_tsquery('english', 'cat & dog')
SELECT a FROM t WHERE b = 'x'::varchar AND c = 5::bigint
SELECT a FROM t ORDER BY a USING <
EXPLAIN SELECT a FROM t WHERE b = 1
SELECT a FROM t WHERE b = 1 /* trailing */
SELECT pg_sleep(0.5)
SELECT a FROM t WHERE b = U&'d\0061t\+000061'
SELECT .5 FROM t
"""


def _corpus(text: str) -> list[str]:
    # One statement per line, except that a line starting with a quote char continues a multi-line string,
    # and the MySQL '#' comment line joins the statement after it.
    statements: list[str] = []
    for line in text.strip("\n").split("\n"):
        if statements and (statements[-1].endswith("\n") or re.match(r"^[^A-Z#(]", line)):
            statements[-1] += ("" if statements[-1].endswith("\n") else "\n") + line
        elif line.startswith("#"):
            statements.append(line + "\n")
        else:
            statements.append(line)
    return statements


def _variant(sql: str, dialect: str) -> str | None:
    """The same statement with every literal changed (kind and quote form kept), or None if it has none."""
    try:
        shape = normalize(sql, dialect)
    except ShapeError:
        return None
    if not shape.literals:
        return None
    parts, last = [], 0
    for lit in shape.literals:
        parts.append(sql[last : lit.start])
        parts.append(_changed(lit))
        last = lit.start + len(lit.text)
    parts.append(sql[last:])
    return "".join(parts)


def _changed(lit: Literal) -> str:
    inner = lit.text[len(lit.prefix) : len(lit.text) - len(lit.suffix)]
    if lit.kind == INT:
        return str(int(lit.text) + 7)
    if lit.kind in (DECIMAL, FLOAT):
        return "9" + lit.text
    if lit.kind == HEX:
        return lit.prefix + "AB" + inner + lit.suffix
    if lit.kind == BIT:
        return lit.prefix + "1" + inner + lit.suffix
    return lit.prefix + "zq" + inner + lit.suffix


CASES = [("mysql", s) for s in _corpus(MYSQL_CORPUS)] + [("postgres", s) for s in _corpus(PG_CORPUS)]
VARIANTS = [(d, v) for d, s in CASES if (v := _variant(s, d)) is not None]


def _reference(sql: str, dialect: str) -> exp.Expression | None:
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except sqlglot.errors.SqlglotError:
        return None
    assert isinstance(tree, exp.Expression)
    return tree


def _check(cache: ParseCache, sql: str, dialect: str) -> None:
    """cache.get(sql) must be sqlglot's parse (or fail exactly when sqlglot fails)."""
    reference = _reference(sql, dialect)
    if reference is None:
        with pytest.raises(SqlParseError):
            cache.get(sql, dialect)
        return
    parsed = cache.get(sql, dialect)
    bound = parsed.bound()
    assert bound.sql(dialect) == reference.sql(dialect), sql
    assert bound == reference, sql
    assert bound is not parsed.tree


def test_corpus_size() -> None:
    for dialect in ("mysql", "postgres"):
        statements = [s for d, s in CASES + VARIANTS if d == dialect]
        assert len(statements) >= 150, (dialect, len(statements))
        assert len(set(statements)) == len(statements)


@pytest.mark.parametrize(("dialect", "sql"), CASES + VARIANTS)
def test_bound_equals_sqlglot(dialect: str, sql: str) -> None:
    cache = ParseCache(64)
    _check(cache, sql, dialect)  # miss
    _check(cache, sql, dialect)  # hit (or the same uncached path)


# Statements with literals to vary (the others have nothing to share an entry with).
VARYING = [(d, s) for d, s in CASES if _variant(s, d) is not None and _reference(s, d) is not None]


def test_most_of_the_corpus_has_literals_to_vary() -> None:
    assert len(VARYING) >= 0.8 * len(CASES)


@pytest.mark.parametrize(("dialect", "sql"), VARYING)
def test_variant_shares_the_entry_and_binds_its_own_values(dialect: str, sql: str) -> None:
    variant = _variant(sql, dialect)
    assert variant is not None
    cache = ParseCache(64)
    first = cache.get(sql, dialect)
    assert normalize(sql, dialect).key == normalize(variant, dialect).key
    entries = len(cache)
    _check(cache, variant, dialect)
    second = cache.get(variant, dialect)
    assert [lit.text for lit in second.literals] == [lit.text for lit in normalize(variant, dialect).literals]
    assert first.literals != second.literals
    # A shape with no structural literal is one entry; a pinned one adds an entry per pinned value.
    if not any(isinstance(e, parse_module._Pinned) for e in cache._entries.values()):
        assert len(cache) == entries == 1
        assert second._template is first._template


def test_variants_mostly_hit() -> None:
    cache = ParseCache(10_000)
    for dialect, sql in CASES:
        if _reference(sql, dialect) is not None:
            cache.get(sql, dialect)
    hits = cache.hits
    tried = 0
    for dialect, sql in VARIANTS:
        if _reference(sql, dialect) is not None:
            tried += 1
            cache.get(sql, dialect)
    assert cache.hits - hits >= 0.85 * tried, (cache.hits - hits, tried)


def _snapshot(tree: exp.Expression) -> tuple[str, str, exp.Expression]:
    return repr(tree), tree.sql("postgres"), tree.copy()


def test_templates_are_never_mutated() -> None:
    cache = ParseCache(10_000)
    parsed = [(d, cache.get(s, d)) for d, s in CASES + VARIANTS if _reference(s, d) is not None]
    before = {id(p.tree): _snapshot(p.tree) for _, p in parsed}
    for _ in range(3):
        for _, p in parsed:
            tree = p.bound()
            # Whatever a later pass does to its own tree must not reach the template.
            for node in list(tree.walk()):
                if isinstance(node, exp.Literal):
                    node.replace(exp.Literal.string("MUTATED"))
                elif isinstance(node, exp.Column):
                    node.set("this", exp.to_identifier("mutated"))
                elif isinstance(node, exp.Placeholder):
                    node.set("this", "mutated")
    for _, p in parsed:
        text, sql, copy = before[id(p.tree)]
        assert repr(p.tree) == text
        assert p.tree.sql("postgres") == sql
        assert p.tree == copy


def test_bound_tree_links_are_consistent() -> None:
    cache = ParseCache(16)
    tree = cache.get("SELECT a FROM t WHERE b IN (1, 2, 3) AND c = 'x'", "mysql").bound()
    for node in tree.walk():
        for key, value in node.args.items():
            children = value if isinstance(value, list) else [value]
            for i, child in enumerate(children):
                if isinstance(child, exp.Expr):
                    assert child.parent is node
                    assert child.arg_key == key
                    assert child.index == (i if isinstance(value, list) else None)


# -- normalize --------------------------------------------------------------------------------------------------


def _key(sql: str, dialect: str) -> str:
    return normalize(sql, dialect).key.replace("\x00", "?")


@pytest.mark.parametrize(
    ("dialect", "sql", "key", "kinds"),
    [
        ("mysql", "SELECT a FROM t WHERE b IN (1, 2)", "SELECT a FROM t WHERE b IN (?i, ?i)", [INT, INT]),
        ("mysql", "SELECT -1, - 2.5, 1e3", "SELECT -?i, - ?d, ?f", [INT, DECIMAL, FLOAT]),
        ("mysql", "SELECT 0x1F, X'1f', b'01', 0b1", "SELECT ?x0x, ?xX', ?bb', ?b0b", [HEX, HEX, BIT, BIT]),
        ("mysql", "SELECT 'a', \"b\", `c`, N'd'", "SELECT ?s', ?s\", `c`, N?s'", [STRING] * 3),
        ("mysql", "SELECT TRUE, FALSE, NULL, ?", "SELECT TRUE, FALSE, NULL, ?", []),
        ("mysql", "SELECT /*! STRAIGHT_JOIN 5 */ 1 -- 2\n# 3\n", "SELECT /*! STRAIGHT_JOIN 5 */ ?i -- 2\n# 3\n", [INT]),
        ("mysql", "SELECT t1.c2, x$1 FROM t1", "SELECT t1.c2, x$1 FROM t1", []),
        ("postgres", "SELECT $1, '1'::int, E'a\\'b'", "SELECT $1, ?s'::int, ?sE'", [STRING, STRING]),
        ("postgres", "SELECT $$a'b$$, $q$x$q$", "SELECT ?s$$, ?s$q$", [STRING, STRING]),
        ("postgres", "SELECT 1 /* a /* 2 */ 3 */ # 4", "SELECT ?i /* a /* 2 */ 3 */ # ?i", [INT, INT]),
        ("postgres", "SELECT j->>'k', 'a''b'", "SELECT j->>?s', ?s'", [STRING, STRING]),
    ],
)
def test_normalize(dialect: str, sql: str, key: str, kinds: list[str]) -> None:
    shape = normalize(sql, dialect)
    assert _key(sql, dialect) == key
    assert [lit.kind for lit in shape.literals] == kinds
    for lit in shape.literals:
        assert sql[lit.start : lit.start + len(lit.text)] == lit.text


def test_in_lists_of_other_lengths_differ() -> None:
    assert _key("SELECT a FROM t WHERE b IN (1, 2)", "mysql") != _key("SELECT a FROM t WHERE b IN (1, 2, 3)", "mysql")


def test_kinds_and_quote_forms_are_part_of_the_key() -> None:
    keys = {_key(f"SELECT a FROM t WHERE b = {v}", "mysql") for v in ["1", "1.0", "1e0", "'1'", '"1"', "0x1", "x'01'", "b'1'"]}
    assert len(keys) == 8
    assert _key("SELECT a FROM t WHERE b = -1", "mysql") != _key("SELECT a FROM t WHERE b = 1", "mysql")
    assert _key("SELECT 1 /* a */", "mysql") != _key("SELECT 1 /* b */", "mysql")


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        ("mysql", "SELECT .5"),
        ("mysql", "SELECT 1abc FROM t"),
        ("mysql", "SELECT 'unterminated"),
        ("mysql", "SELECT 1 /* unterminated"),
        ("mysql", "SELECT 0x1G"),
        ("mysql", "SELECT x'zz'"),
        ("mysql", "SELECT 1\x00"),
        ("mysql", "SELECT $x"),
        ("postgres", "SELECT U&'d\\0061'"),
        ("postgres", "SELECT 0x1F"),
        ("postgres", "SELECT $1a"),
        ("postgres", "SELECT $x$ unterminated"),
        ("postgres", "SELECT 1 /* a /* b */"),
    ],
)
def test_normalize_refuses_what_it_is_unsure_of(dialect: str, sql: str) -> None:
    with pytest.raises(ShapeError):
        normalize(sql, dialect)


def test_refused_statements_still_parse_exactly() -> None:
    cache = ParseCache(16)
    for dialect, sql in [("mysql", "SELECT .5 FROM t"), ("mysql", "SELECT 1abc FROM t"), ("postgres", "SELECT U&'a' FROM t")]:
        parsed = cache.get(sql, dialect)
        assert not parsed.cached
        assert parsed.bound() == sqlglot.parse_one(sql, read=dialect)
        assert parsed.bound() is not parsed.bound()
    assert cache.uncacheable == 3 and len(cache) == 0


def test_structural_literals_are_pinned() -> None:
    cache = ParseCache(64)
    for sql in ["SELECT a, b FROM t ORDER BY 1", "SELECT a, b FROM t ORDER BY 2"]:
        _check(cache, sql, "mysql")
    assert cache.get("SELECT a, b FROM t ORDER BY 2", "mysql").tree.sql("mysql") == "SELECT a, b FROM t ORDER BY 2"
    for sql in ["SELECT j->'$.a' FROM t WHERE id = 1", "SELECT j->'$.b' FROM t WHERE id = 2", "SELECT j->'$.a' FROM t WHERE id = 3"]:
        _check(cache, sql, "mysql")
    assert "dbm_" in cache.get("SELECT j->'$.a' FROM t WHERE id = 4", "mysql").tree.sql("mysql")  # id still bound
    for sql in ["SELECT d + INTERVAL '1 day' FROM t", "SELECT d + INTERVAL '2 hours' FROM t"]:
        _check(cache, sql, "postgres")


def test_parse_error() -> None:
    cache = ParseCache(4)
    with pytest.raises(SqlParseError) as info:
        cache.get("SELECT FROM WHERE (", "mysql")
    assert info.value.entry.code == "DBM-1304"
    with pytest.raises(ValueError):
        cache.get("SELECT 1", "oracle")


def test_values() -> None:
    p = ParseCache(4).get("SELECT 5, 1.50, 2e1, 'x''y', X'0a', b'101', -3 FROM t", "mysql")
    assert p.values() == (5, parse_module.Decimal("1.50"), 20.0, "x'y", b"\n", 5, 3)
    q = ParseCache(4).get("SELECT 2e1, X'0a', E'a\\nb', $$q$$", "postgres")
    assert q.values() == (parse_module.Decimal("2e1"), 10, "a\nb", "q")
    assert p.literal(3).text == "'x''y'" and p.literal(3).kind == STRING


def test_lru_and_counters() -> None:
    cache = ParseCache(2)
    cache.get("SELECT a FROM t WHERE b = 1", "mysql")
    cache.get("SELECT a FROM u WHERE b = 1", "mysql")
    cache.get("SELECT a FROM t WHERE b = 2", "mysql")  # hit: t becomes most recent
    cache.get("SELECT a FROM v WHERE b = 1", "mysql")  # evicts u
    assert (cache.hits, cache.misses, len(cache)) == (1, 3, 2)
    cache.get("SELECT a FROM u WHERE b = 3", "mysql")
    cache.get("SELECT a FROM v WHERE b = 3", "mysql")
    assert (cache.hits, cache.misses) == (2, 4)
    cache.get("SELECT a FROM t WHERE b = 4", "mysql")  # t was evicted by u
    assert cache.misses == 5
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError):
        ParseCache(0)


def test_dialects_do_not_share_entries() -> None:
    cache = ParseCache(8)
    cache.get("SELECT a FROM t WHERE b = 1", "mysql")
    assert cache.get("SELECT a FROM t WHERE b = 1", "postgresql").dialect == "postgres"
    assert cache.misses == 2


# -- prepared statements ----------------------------------------------------------------------------------------


def _inline(sql: str, params: list[object], dialect: str) -> str:
    """The statement with the values written in, at the parameters the scanner found (not inside quotes)."""
    parts, last = [], 0
    for n, start in enumerate(parse_module._scan(sql, dialect).markers):
        m = re.compile(r"\?|\$([0-9]+)").match(sql, start)
        assert m is not None
        index = int(m.group(1)) - 1 if m.group(1) else n
        parts += [sql[last:start], parse_module._inline(exp.convert(params[index]), dialect)]
        last = m.end()
    return "".join([*parts, sql[last:]])


PREPARED_MYSQL = [
    ("SELECT * FROM t WHERE id = ?", [5]),
    ("SELECT * FROM t WHERE a = ? LIMIT ?, ?", ["x", 20, 10]),
    ("SELECT * FROM t WHERE a = ? AND b IN (?, ?, ?) AND c LIKE ?", [1.5, None, True, -4, "a%"]),
    ("INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON DUPLICATE KEY UPDATE b = ?", [1, "a'b", 2, "c\\d", "e"]),
    ("UPDATE t SET a = ? WHERE id = ? ORDER BY id LIMIT ?", [parse_module.Decimal("1.25"), 3, 1]),
    ("DELETE FROM t WHERE a = ? AND b = 'literal ?' /* ? */", [7]),
    ("SELECT a - ? FROM t", [-3]),
]
PREPARED_PG = [
    ("SELECT * FROM t WHERE id = $1", [5]),
    ("SELECT $2, $1 FROM t WHERE a = $1::text", ["x", 2]),
    ("INSERT INTO t (a, b) VALUES ($1, $2) ON CONFLICT (a) DO UPDATE SET b = $2 RETURNING id", [1, "q"]),
    ("SELECT * FROM t WHERE a = ANY($1) LIMIT $2 OFFSET $3", ["{1,2}", 10, 0]),
    ("SELECT a - $1 FROM t WHERE b = '$2'", [-1]),
]


@pytest.mark.parametrize(("sql", "params"), PREPARED_MYSQL)
def test_prepared_mysql(sql: str, params: list[object]) -> None:
    _check_prepared(sql, params, "mysql", _inline(sql, params, "mysql"))


@pytest.mark.parametrize(("sql", "params"), PREPARED_PG)
def test_prepared_pg(sql: str, params: list[object]) -> None:
    _check_prepared(sql, params, "postgres", _inline(sql, params, "postgres"))


def _unparen_negatives(tree: exp.Expr) -> exp.Expr:
    # The text form wraps negative values in parentheses ("a - ?" must not become "a --3"); the tree holds them bare.
    return tree.transform(lambda n: n.this if isinstance(n, exp.Paren) and isinstance(n.this, exp.Neg) else n)


def _check_prepared(sql: str, params: list[object], dialect: str, inlined: str) -> None:
    cache = ParseCache(8)
    prepared = cache.get_prepared(sql, dialect)
    assert prepared.tree == sqlglot.parse_one(sql, read=dialect)
    before = _snapshot(prepared.tree)
    bound = prepared.bind(params)
    reference = _unparen_negatives(sqlglot.parse_one(inlined, read=dialect))
    assert bound.sql(dialect) == reference.sql(dialect)
    assert bound == reference
    assert cache.get_prepared(sql, dialect).bind(params) == bound
    assert (cache.hits, cache.misses) == (1, 1)
    assert _snapshot(prepared.tree)[:2] == before[:2]
    with pytest.raises(ProtocolError):
        prepared.bind([*params, 1])


def test_prepared_text_fallback_is_exact() -> None:
    # Force the fallback path and compare with the slot path.
    template = parse_module._prepare("SELECT * FROM t WHERE a = ? LIMIT ?, ?", "mysql")
    slow = parse_module.PreparedStatement(parse_module._PreparedTemplate(
        template.tree, (), template.count, template.sql, template.markers, False), "mysql")
    fast = parse_module.PreparedStatement(template, "mysql")
    assert slow.bind([1, 2, 3]) == fast.bind([1, 2, 3])


# -- generated statements ---------------------------------------------------------------------------------------

_ints = st.integers(min_value=0, max_value=10**20).map(str)
_decimals = st.tuples(st.integers(0, 10**6), st.integers(0, 10**4)).map(lambda t: f"{t[0]}.{t[1]}")
_floats = st.tuples(st.integers(0, 999), st.integers(-30, 30)).map(lambda t: f"{t[0]}e{t[1]}")
_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=("Cs",)), max_size=12)


def _mysql_string(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"


def _pg_string(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


_number = st.one_of(_ints, _decimals, _floats)
_mysql_value = st.one_of(_number, _text.map(_mysql_string))
_pg_value = st.one_of(_number, _text.map(_pg_string))

TEMPLATES = [
    "SELECT a FROM t WHERE b = {} AND c = {}",
    "SELECT a FROM t WHERE b = {} OR c = {}",
    "SELECT a FROM t WHERE b IN ({}, {})",
    "SELECT a FROM t WHERE b IN ({}, {}, {})",
    "SELECT a FROM t WHERE b = -{} AND c = {}",
    "SELECT a, {} FROM t WHERE b > {} ORDER BY a LIMIT 10",
    "INSERT INTO t (a, b) VALUES ({}, {})",
    "INSERT INTO t (a, b) VALUES ({}, {}), ({}, {})",
    "UPDATE t SET a = {} WHERE b = {}",
    "UPDATE t SET a = {} WHERE b = {} AND c LIKE {}",
    "DELETE FROM t WHERE a = {} AND b <> {}",
    "SELECT COUNT(*) FROM t JOIN u ON t.id = u.tid WHERE u.x = {} GROUP BY t.a HAVING SUM(u.y) > {}",
    "SELECT CASE WHEN a = {} THEN {} ELSE {} END FROM t",
    "SELECT a FROM t WHERE b BETWEEN {} AND {}",
    "SELECT a FROM (SELECT a FROM t WHERE b = {}) s WHERE a = {}",
]


@st.composite
def _statements(draw: st.DrawFn, dialect: str) -> tuple[int, str]:
    index = draw(st.integers(0, len(TEMPLATES) - 1))
    template = TEMPLATES[index]
    value = _mysql_value if dialect == "mysql" else _pg_value
    values = [draw(value) for _ in range(template.count("{}"))]
    return index, template.format(*values)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["mysql", "postgres"]).flatmap(lambda d: st.tuples(st.just(d), st.lists(_statements(d), min_size=2, max_size=6))))
def test_generated_statements(case: tuple[str, list[tuple[int, str]]]) -> None:
    dialect, statements = case
    cache = ParseCache(64)
    templates_by_key: dict[str, int] = {}
    for index, sql in statements:
        key = normalize(sql, dialect).key
        # Statements from different templates never share a key.
        assert templates_by_key.setdefault(key, index) == index
        _check(cache, sql, dialect)
    # A template's statements with literals of one kind-sequence share an entry.
    keys = {normalize(sql, dialect).key for _, sql in statements}
    assert len(cache) <= 2 * len(keys)


@settings(max_examples=300, deadline=None)
@given(_text)
def test_generated_strings(s: str) -> None:
    cache = ParseCache(8)
    for dialect, literal in [("mysql", _mysql_string(s)), ("mysql", '"' + s.replace("\\", "\\\\").replace('"', '""') + '"'),
                             ("postgres", _pg_string(s)), ("postgres", "E" + _mysql_string(s))]:
        sql = f"SELECT a FROM t WHERE b = {literal} AND c = 1"
        _check(cache, sql, dialect)
        assert cache.get(sql, dialect).value(0) == s


def test_module_doctests() -> None:
    result = doctest.testmod(parse_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


_SOUP = st.lists(st.sampled_from([*list("ab_xEe01259 .,;()=*+-/#$?@&`'\"\\\n€é"), "--", "/*", "*/", "0x"]),
                 max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["mysql", "postgres"]), _SOUP)
def test_scanner_on_character_soup(dialect: str, tail: str) -> None:
    """Whatever the text, the scanner refuses, or takes out literals (in order, at their offsets) whose markers and
    the text between them are the key, and finds the same parameters as a plain search for them where no quote,
    comment or dollar sign can hide one."""
    sql = "SELECT " + tail
    try:
        shape = normalize(sql, dialect)
        markers = parse_module._scan(sql, dialect).markers
    except ShapeError:
        return
    key, last = [], 0
    for lit in shape.literals:
        assert lit.start >= last and sql[lit.start:lit.start + len(lit.text)] == lit.text
        key += [sql[last:lit.start], "\x00" + parse_module._KIND_CODE[lit.kind] + lit.prefix]
        last = lit.start + len(lit.text)
    key.append(sql[last:])
    assert shape.key == "".join(key)
    if dialect == "mysql" and not any(c in sql for c in "'\"`#$") and "--" not in sql and "/*" not in sql:
        assert list(markers) == [i for i, c in enumerate(sql) if c == "?"]


@pytest.mark.parametrize(("dialect", "sql"), VARYING)
def test_split_hits_equal_scanned_hits(dialect: str, sql: str) -> None:
    """Once a shape is known to split as the normaliser does, later statements of it skip the scanner: their
    literals and bound trees are the scanner's."""
    variant = _variant(sql, dialect)
    assert variant is not None
    cache = ParseCache(64)
    cache.get(sql, dialect)
    cache.get(sql, dialect)  # a scanned hit: the shape may be learnt here
    for text in (variant, sql):
        parsed = cache.get(text, dialect)
        assert parsed.literals == normalize(text, dialect).literals, text
        _check(cache, text, dialect)


def test_split_shapes_are_learnt_only_for_plain_integer_shapes() -> None:
    cache = ParseCache(64)
    for sql in ["SELECT c FROM t WHERE id = 1 LIMIT 5", "SELECT c FROM t WHERE id = 2 LIMIT 5"]:
        cache.get(sql, "mysql")
    assert cache._split_shapes == {("mysql", normalize("SELECT c FROM t WHERE id = 1 LIMIT 5", "mysql").key)}
    hits = cache.hits
    parsed = cache.get("SELECT c FROM t WHERE id = 987 LIMIT 12", "mysql")
    assert cache.hits == hits + 1 and [lit.text for lit in parsed.literals] == ["987", "12"]
    assert parsed.literals == normalize("SELECT c FROM t WHERE id = 987 LIMIT 12", "mysql").literals
    for sql in ["SELECT c FROM t WHERE s = 'a' AND id = 1", "SELECT c FROM t WHERE s = 'b' AND id = 2",
                "SELECT c FROM t WHERE x = 1.5", "SELECT c FROM t WHERE x = 2.5",
                "SELECT c FROM t WHERE x = -1", "SELECT c FROM t WHERE x = -2"]:
        cache.get(sql, "mysql")
    assert len(cache._split_shapes) == 1  # strings, decimals and signs keep the scanner


def test_a_pinned_shape_is_not_taken_from_the_split() -> None:
    cache = ParseCache(64)
    for sql in ["SELECT a, b FROM t ORDER BY 1", "SELECT a, b FROM t ORDER BY 1", "SELECT a, b FROM t ORDER BY 2",
                "SELECT a, b FROM t ORDER BY 2"]:
        _check(cache, sql, "mysql")
    assert not cache._split_shapes
    assert cache.get("SELECT a, b FROM t ORDER BY 2", "mysql").tree.sql("mysql") == "SELECT a, b FROM t ORDER BY 2"
