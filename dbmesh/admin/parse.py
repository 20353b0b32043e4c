"""Recognise dbmesh's admin statements (ShardingSphere DistSQL spellings) and parse them into frozen values.

`parse_admin` runs on every statement of a sharded database, so it first tries one anchored regular expression
on the statement's head: ordinary SQL (``SELECT``, ``SHOW TABLES``, ``SET NAMES``, ``SHOW STORAGE ENGINES``)
fails it within a few characters and costs a fraction of a microsecond. Only a statement whose head is an admin
keyword sequence is tokenised; a malformed admin statement is then refused with SQL_SYNTAX (DBM-1306) naming
what was expected, never passed on to a data source.

>>> parse_admin("preview SELECT * FROM t_order WHERE order_id = 1;")
Preview(sql='SELECT * FROM t_order WHERE order_id = 1')
>>> parse_admin("SHOW SHARDING TABLE RULE t_order FROM sharding_db")
ShowShardingTableRules(table='t_order', database='sharding_db')
>>> parse_admin("SET SHARDING HINT TABLE_VALUE t_order = 3")
SetShardingHint(target='table_value', table='t_order', value=3)
>>> parse_admin("SHOW TABLES") is None
True
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Final, Literal

from dbmesh.errors import SQL_SYNTAX, DbMeshError


class AdminError(DbMeshError):
    """An admin statement is malformed or cannot be answered; raised with a catalogue entry."""

    layer = "admin"


def syntax_error(detail: str) -> AdminError:
    """A SQL_SYNTAX error for a malformed admin statement."""
    return AdminError(SQL_SYNTAX, detail=detail)


# ------------------------------------------------------------------------------------------------ values


@dataclass(frozen=True, slots=True)
class Preview:
    """`PREVIEW <sql>`: where a statement would run and what each data source would receive."""

    sql: str


@dataclass(frozen=True, slots=True)
class ShowShardingTableRules:
    """`SHOW SHARDING TABLE RULES [FROM db]` (table None) or `SHOW SHARDING TABLE RULE <table> [FROM db]`."""

    table: str | None = None
    database: str | None = None


@dataclass(frozen=True, slots=True)
class ShowShardingTableNodes:
    """`SHOW SHARDING TABLE NODES [<table>] [FROM db]`."""

    table: str | None = None
    database: str | None = None


@dataclass(frozen=True, slots=True)
class ShowShardingAlgorithms:
    """`SHOW SHARDING ALGORITHMS | KEY GENERATORS | AUDITORS [FROM db]`: the named typed entries of the rule."""

    section: Literal["shardingAlgorithms", "keyGenerators", "auditors"] = "shardingAlgorithms"
    database: str | None = None


@dataclass(frozen=True, slots=True)
class ShowStorageUnits:
    """`SHOW STORAGE UNITS [FROM db]`: the database's data sources (never passwords)."""

    database: str | None = None


@dataclass(frozen=True, slots=True)
class ShowBroadcastTableRules:
    """`SHOW BROADCAST TABLE RULES [FROM db]`."""

    database: str | None = None


@dataclass(frozen=True, slots=True)
class ShowSingleTables:
    """`SHOW SINGLE TABLES [FROM db] [LIKE 'pattern']` or `SHOW SINGLE TABLE <table> [FROM db]`."""

    table: str | None = None
    like: str | None = None
    database: str | None = None


HintTarget = Literal["data_source", "database_value", "table_value"]


@dataclass(frozen=True, slots=True)
class SetShardingHint:
    """`SET SHARDING HINT DATA_SOURCE = 'ds'`, or `SET|ADD SHARDING HINT DATABASE_VALUE|TABLE_VALUE [<table>] = v`.

    `table` is lower-case, "" when omitted (the value then applies to every table); `value` is an int or a
    str (the data source name for DATA_SOURCE)."""

    target: HintTarget
    table: str
    value: int | str


@dataclass(frozen=True, slots=True)
class ClearShardingHint:
    """`CLEAR SHARDING HINT` or `CLEAR HINT`."""


@dataclass(frozen=True, slots=True)
class ShowShardingHintStatus:
    """`SHOW SHARDING HINT STATUS`."""


AdminStatement = (Preview | ShowShardingTableRules | ShowShardingTableNodes | ShowShardingAlgorithms
                  | ShowStorageUnits | ShowBroadcastTableRules | ShowSingleTables
                  | SetShardingHint | ClearShardingHint | ShowShardingHintStatus)

# ------------------------------------------------------------------------------------------------ parsing

# The admin heads, by their first three letters. Each needs at least two words that ordinary MySQL/PostgreSQL
# statements never start with (`SHOW STORAGE ENGINES` and `SET sharding_x = 1` stay ordinary), so a match means
# "admin". Statements starting with anything else (SELECT, INSERT, BEGIN, ...) leave after one slice and one
# dictionary lookup; only leading whitespace sends a statement through the slower general expression.
_HEADS: Final = {
    "pre": re.compile(r"(?P<preview>preview)(?=[\s(;]|$)", re.IGNORECASE),
    "sho": re.compile(r"show\s+(?:(?:sharding|broadcast|single)(?=[\s;]|$)|storage\s+units\b)", re.IGNORECASE),
    "set": re.compile(r"set\s+sharding\s+hint\b", re.IGNORECASE),
    "add": re.compile(r"add\s+sharding\s+hint\b", re.IGNORECASE),
    "cle": re.compile(r"clear\s+(?:sharding\s+)?hint\b", re.IGNORECASE),
}
# Every spelling of the three letters (case-insensitive keywords) maps to its expression.
_HEAD_BY_START: Final = {
    "".join(spelling): head
    for start, head in _HEADS.items()
    for spelling in itertools.product(*((c.lower(), c.upper()) for c in start))
}
_ANY_HEAD: Final = re.compile(r"\s*(?:" + "|".join(h.pattern for h in _HEADS.values()) + ")", re.IGNORECASE)

_TOKEN: Final = re.compile(
    r"\s*(?:(?P<word>[A-Za-z_][A-Za-z0-9_$]*)"
    r"|`(?P<backtick>(?:[^`]|``)*)`"
    r"|\"(?P<dquote>(?:[^\"]|\"\")*)\""
    r"|'(?P<string>(?:[^']|'')*)'"
    r"|(?P<number>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
    r"|(?P<symbol>[=.,;]))")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["word", "identifier", "string", "number", "symbol"]
    text: str  # the value (unquoted); words keep their spelling
    source: str  # as written, for error messages

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


def _backslash_error() -> AdminError:
    return syntax_error("backslashes in quoted values are not accepted here (their meaning differs between MySQL "
                        "and PostgreSQL); write the value without them")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    end = len(text.rstrip())
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            rest = text[pos:].strip()
            if "\\" in text:
                raise _backslash_error()
            raise syntax_error(f"unexpected text near {rest[:30]!r}")
        kind = m.lastgroup
        value = m.group(kind) if kind else ""
        source = m.group(0).strip()
        if kind == "word":
            tokens.append(_Token("word", value, source))
        elif kind == "backtick":
            tokens.append(_Token("identifier", value.replace("``", "`"), source))
        elif kind == "dquote":
            tokens.append(_Token("identifier", value.replace('""', '"'), source))
        elif kind == "string":
            tokens.append(_Token("string", value.replace("''", "'"), source))
        elif kind == "number":
            tokens.append(_Token("number", value, source))
        else:
            tokens.append(_Token("symbol", value, source))
        pos = m.end()
    return tokens


class _Parser:
    """A cursor over the tokens of one admin statement (the head already recognised)."""

    def __init__(self, statement: str, tokens: list[_Token]) -> None:
        self.statement = statement
        self.tokens = tokens
        self.pos = 0
        if tokens and tokens[-1].kind == "symbol" and tokens[-1].text == ";":
            tokens.pop()

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def error(self, expected: str) -> AdminError:
        tok = self.peek()
        found = f"{tok.source!r}" if tok else "the end of the statement"
        return syntax_error(f"{expected} expected, found {found} in {_abbreviate(self.statement)!r}")

    def accept(self, *words: str) -> str | None:
        tok = self.peek()
        if tok is not None and tok.is_word(*words):
            self.pos += 1
            return tok.text.upper()
        return None

    def expect(self, *words: str) -> str:
        word = self.accept(*words)
        if word is None:
            raise self.error(" or ".join(words))
        return word

    def expect_symbol(self, symbol: str) -> None:
        tok = self.peek()
        if tok is None or tok.kind != "symbol" or tok.text != symbol:
            raise self.error(f"'{symbol}'")
        self.pos += 1

    def at_name(self) -> bool:
        """A name follows (a word that is not FROM/LIKE, or a quoted identifier)."""
        tok = self.peek()
        return tok is not None and (tok.kind == "identifier" or (tok.kind == "word" and not tok.is_word("FROM", "LIKE")))

    def name(self, what: str) -> str:
        tok = self.peek()
        if tok is None or tok.kind not in ("word", "identifier"):
            raise self.error(what)
        self.pos += 1
        return tok.text

    def table_name(self) -> str:
        """A table name, optionally qualified by a schema (`db.t`): the last part is the logic table."""
        name = self.name("a table name")
        tok = self.peek()
        if tok is not None and tok.kind == "symbol" and tok.text == ".":
            self.pos += 1
            name = self.name("a table name")
        return name

    def from_database(self) -> str | None:
        if self.accept("FROM", "IN") is None:
            return None
        return self.name("a database name")

    def value(self) -> int | str:
        tok = self.peek()
        if tok is not None and tok.kind == "string":
            if "\\" in tok.text:
                raise _backslash_error()
            self.pos += 1
            return tok.text
        if tok is not None and tok.kind == "number":
            if not re.fullmatch(r"[-+]?\d+", tok.text):
                raise syntax_error(f"hint values are integers or quoted strings, found {tok.source!r}")
            self.pos += 1
            return int(tok.text)
        raise self.error("an integer or a quoted string")

    def end(self) -> None:
        if self.peek() is not None:
            raise self.error("the end of the statement")


def _abbreviate(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _strip_terminator(sql: str) -> str:
    body = sql.rstrip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    return body


def parse_admin(sql: str) -> AdminStatement | None:
    """The admin statement `sql` is, or None for ordinary SQL; raises AdminError (SQL_SYNTAX) when `sql` starts
    like an admin statement but is malformed.

    >>> parse_admin("CLEAR HINT")
    ClearShardingHint()
    >>> parse_admin("SELECT 'PREVIEW'") is None
    True
    """
    pattern = _HEAD_BY_START.get(sql[:3])
    if pattern is None:
        if not sql[:1].isspace():
            return None
        pattern = _ANY_HEAD
    head = pattern.match(sql)
    if head is None:
        return None
    if head.groupdict().get("preview") is not None:
        body = _strip_terminator(sql[head.end():]).strip()
        if not body:
            raise syntax_error("PREVIEW needs a statement to preview, e.g. PREVIEW SELECT * FROM t_order")
        return Preview(body)
    statement = sql.strip()
    p = _Parser(statement, _tokenize(statement))
    verb = p.expect("SHOW", "SET", "ADD", "CLEAR")
    result: AdminStatement
    if verb == "SHOW":
        result = _parse_show(p)
    elif verb == "CLEAR":
        p.accept("SHARDING")
        p.expect("HINT")
        result = ClearShardingHint()
    else:
        p.expect("SHARDING")
        p.expect("HINT")
        result = _parse_set_hint(p, verb)
    p.end()
    return result


def _parse_show(p: _Parser) -> AdminStatement:
    kind = p.expect("SHARDING", "STORAGE", "BROADCAST", "SINGLE")
    if kind == "STORAGE":
        p.expect("UNITS")
        return ShowStorageUnits(p.from_database())
    if kind == "BROADCAST":
        p.expect("TABLE")
        p.expect("RULES")
        return ShowBroadcastTableRules(p.from_database())
    if kind == "SINGLE":
        if p.expect("TABLES", "TABLE") == "TABLE":
            return ShowSingleTables(table=p.table_name(), database=p.from_database())
        database = p.from_database()
        like = None
        if p.accept("LIKE"):
            tok = p.peek()
            if tok is None or tok.kind != "string":
                raise p.error("a quoted LIKE pattern")
            p.pos += 1
            like = tok.text
        return ShowSingleTables(like=like, database=database)
    what = p.expect("TABLE", "ALGORITHMS", "KEY", "AUDITORS", "HINT")
    if what == "ALGORITHMS":
        return ShowShardingAlgorithms("shardingAlgorithms", p.from_database())
    if what == "KEY":
        p.expect("GENERATORS")
        return ShowShardingAlgorithms("keyGenerators", p.from_database())
    if what == "AUDITORS":
        return ShowShardingAlgorithms("auditors", p.from_database())
    if what == "HINT":
        p.expect("STATUS")
        return ShowShardingHintStatus()
    sub = p.expect("RULES", "RULE", "NODES")
    if sub == "RULES":
        return ShowShardingTableRules(None, p.from_database())
    if sub == "RULE":
        return ShowShardingTableRules(p.table_name(), p.from_database())
    nodes_of = p.table_name() if p.at_name() else None
    return ShowShardingTableNodes(nodes_of, p.from_database())


def _parse_set_hint(p: _Parser, verb: str) -> SetShardingHint:
    target = p.expect("DATA_SOURCE", "DATASOURCE", "DATABASE_VALUE", "TABLE_VALUE")
    if target in ("DATA_SOURCE", "DATASOURCE"):
        if verb != "SET":
            raise syntax_error("use SET SHARDING HINT DATA_SOURCE = 'name' (a statement has one data source hint)")
        p.expect_symbol("=")
        tok = p.peek()
        if tok is None or tok.kind not in ("string", "word", "identifier"):
            raise p.error("a data source name")
        p.pos += 1
        if not tok.text:
            raise syntax_error("the data source name is empty")
        if "\\" in tok.text:
            raise _backslash_error()
        return SetShardingHint("data_source", "", tok.text)
    table = p.table_name().lower() if p.at_name() else ""
    p.expect_symbol("=")
    value = p.value()
    return SetShardingHint("database_value" if target == "DATABASE_VALUE" else "table_value", table, value)
