"""Shard SQL generated once for every route unit: logic tables renamed to marker identifiers (and, for a cached
statement shape, literals replaced by marker values), the tree generated once, and the text split at the markers,
so each unit's SQL is a join of constant pieces with its own names (and the statement's literals) in the holes.

Why the text filled in is the text sqlglot would generate: a marker is a plain lower-case identifier or literal
text, so the generator writes it as it is (quoted only when the node is quoted), and writes every other part of
the tree the same whatever the name or value in the hole; the hole is then filled with what the generator writes
for the real node (`identifier_sql`, `literal_sql`). A statement whose text already contains `MARKER_PREFIX`
cannot be split reliably and is generated per unit instead; so is any text where a marker comes out in an
unexpected form (`split_markers` returns None).

>>> import sqlglot
>>> from dbmesh.kernel.rewrite.tables import rename_tables
>>> tree = sqlglot.parse_one("SELECT `t_order`.a FROM t_order WHERE t_order.b = 'x'", read="mysql")
>>> text = split_markers(rename_tables(tree, markers(["t_order"])).sql("mysql"), "mysql", 1)
>>> text.fill(table_fills(["t_order_1"], "mysql"))
"SELECT `t_order_1`.a FROM t_order_1 WHERE t_order_1.b = 'x'"
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import sqlglot
from sqlglot import exp

__all__ = [
    "MARKER_PREFIX",
    "TOTAL_MARKER",
    "SplitText",
    "identifier_sql",
    "literal_marker",
    "literal_sql",
    "markers",
    "split_markers",
    "table_fills",
]

MARKER_PREFIX: Final = "__dbmk_"
TOTAL_MARKER: Final = "__dbmk_n0__"  # a shard LIMIT's offset+count literal
_MARKER: Final = re.compile(r"__dbmk_([tln])([0-9]+)__")
_STRING_QUOTE: Final = {d: (sqlglot.Dialect.get_or_raise(d).QUOTE_START, sqlglot.Dialect.get_or_raise(d).QUOTE_END)
                        for d in ("mysql", "postgres")}
_IDENT_QUOTE: Final = {d: (sqlglot.Dialect.get_or_raise(d).IDENTIFIER_START,
                           sqlglot.Dialect.get_or_raise(d).IDENTIFIER_END) for d in ("mysql", "postgres")}


def _plain_string(dialect: str) -> re.Pattern[str]:
    """String contents the generator writes unchanged between quotes: no quote, no backslash, no character the
    dialect writes as an escape sequence, no control character."""
    d = sqlglot.Dialect.get_or_raise(dialect)
    special = set(d.ESCAPED_SEQUENCES) | {d.QUOTE_START, d.QUOTE_END, "\\"}
    special |= {chr(c) for c in range(32)} | {"\x7f"}
    return re.compile("[^" + "".join(re.escape(c) for c in sorted(special)) + "]*")


_PLAIN_STRING: Final = {d: _plain_string(d) for d in ("mysql", "postgres")}


def table_marker(k: int) -> str:
    return f"__dbmk_t{k}__"


def literal_marker(i: int) -> str:
    return f"__dbmk_l{i}__"


def markers(logic: Sequence[str]) -> dict[str, str]:
    """The rename mapping: logic table `logic[k]` to marker identifier k."""
    return {name: table_marker(k) for k, name in enumerate(logic)}


@lru_cache(maxsize=4096)
def identifier_sql(name: str, quoted: bool, dialect: str) -> str:
    """An identifier as the generator writes it (quoted when asked, or when the name needs it)."""
    return exp.Identifier(this=name, quoted=quoted).sql(dialect)


def table_fills(actual: Sequence[str], dialect: str) -> list[str]:
    """The table holes' fills for one unit: actual table k written bare (hole 2k) and quoted (hole 2k+1)."""
    out: list[str] = []
    for name in actual:
        out += [identifier_sql(name, False, dialect), identifier_sql(name, True, dialect)]
    return out


def literal_sql(content: str, is_string: bool, dialect: str) -> str:
    """What the generator writes for `exp.Literal(this=content, is_string=is_string)`."""
    if not is_string:
        return content
    if _PLAIN_STRING[dialect].fullmatch(content) is not None:
        start, end = _STRING_QUOTE[dialect]
        return f"{start}{content}{end}"
    return exp.Literal(this=content, is_string=True).sql(dialect)


@dataclass(frozen=True, slots=True)
class SplitText:
    """Generated SQL split at its markers: `pieces[0] fill[holes[0]] pieces[1] ... pieces[-1]`.

    Fill indexes: table k bare 2k, quoted 2k+1 (`n_tables` tables); then literal i at 2*n_tables + i; the LIMIT
    total after the literals (`total_hole`)."""

    pieces: tuple[str, ...]
    holes: tuple[int, ...]
    n_tables: int
    literals: tuple[int, ...]  # literal indexes that have holes, in first-appearance order
    total_hole: int | None

    def fill(self, fills: Sequence[str]) -> str:
        pieces = self.pieces
        out = [pieces[0]]
        for k, hole in enumerate(self.holes):
            out.append(fills[hole])
            out.append(pieces[k + 1])
        return "".join(out)


def split_markers(sql: str, dialect: str, n_tables: int, string_literals: frozenset[int] = frozenset(),
                  n_literals: int = 0) -> SplitText | None:
    """Split generated SQL at its table markers (0..n_tables-1), literal markers (strings among them:
    `string_literals`) and the LIMIT total marker; None when a marker is not in the form it was generated in."""
    id_start, id_end = _IDENT_QUOTE[dialect]
    s_start, s_end = _STRING_QUOTE[dialect]
    pieces: list[str] = []
    holes: list[int] = []
    literals: list[int] = []
    total_hole = 2 * n_tables + n_literals
    last = 0
    for m in _MARKER.finditer(sql):
        kind, number = m.group(1), int(m.group(2))
        start, end = m.span()
        before = sql[start - 1:start]
        after = sql[end:end + 1]
        if kind == "t":
            if number >= n_tables:
                return None
            if before == id_start and after == id_end:
                start, end, hole = start - 1, end + 1, 2 * number + 1
            elif before == id_start or after == id_end:
                return None
            else:
                hole = 2 * number
        elif kind == "l":
            if number >= n_literals:
                return None
            if number in string_literals:
                if before != s_start or after != s_end:
                    return None
                start, end = start - 1, end + 1
            hole = 2 * n_tables + number
            if number not in literals:
                literals.append(number)
        else:
            if number != 0:
                return None
            hole = total_hole
        if start < last:
            return None
        pieces.append(sql[last:start])
        holes.append(hole)
        last = end
    pieces.append(sql[last:])
    if any(MARKER_PREFIX in p for p in pieces):
        return None
    return SplitText(tuple(pieces), tuple(holes), n_tables, tuple(literals),
                     total_hole if total_hole in holes else None)
