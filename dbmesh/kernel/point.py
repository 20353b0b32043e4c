"""Point statements: the planner's fast path for a statement on one sharded table whose only sharding condition is
`column = value`, the value an integer literal of the text or a parameter.

Such a statement's plan depends on its value only through the data node the value routes to, and the rule says
which values route alike (`TableRule.point_key`: values with one key reach the same nodes). So the planner keeps,
per shape and per key, the one route unit the general path planned for a value with that key, and a later
statement of the shape is planned by finding its value, computing the key and filling the unit in:

* parameter form (prepared statements, extended protocol): per exact text, the unit's data source, SQL and table
  pairs, as the general path gave them (the text, so the unit's SQL, does not change with the values);
* text form: per shape, the text between the literals (the shape's key), and per key, the data source, table
  pairs and that text with the node's actual table names in place; the unit's SQL is those pieces joined with the
  statement's own literals, or the statement itself when no name changes.

Nothing is guessed: a shape qualifies only from the general path's analysis (one table reference, one condition
group with one `=` on a sharding column whose slot is a plain literal or parameter, no assignments to sharding
columns, text renamed in place), and every route is learnt from a plan the general path made, after checking that
the fast path gives that very plan for that statement. A statement the fast path cannot answer (a value without
a key, a key not learnt yet, any other text) takes the general path, which then learns from it.

>>> from dbmesh.kernel.parse import normalize
>>> parts = split_literals("SELECT c FROM sbtest1 WHERE id=42 LIMIT 1")
>>> parts, shape_key(parts) == normalize("SELECT c FROM sbtest1 WHERE id=7 LIMIT 1", "mysql").key
(['SELECT c FROM sbtest1 WHERE id=', '42', ' LIMIT ', '1', ''], True)
"""

# Why `split_literals` finds exactly the parse cache's literals for the statements the text form accepts: see the
# comment above `split_literals` in kernel.parse, which uses the same split for its own lookups.

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from dbmesh.kernel.parse import ParsedStatement, plain_pieces, shape_key, split_literals
from dbmesh.kernel.plan import Plan, RouteUnit, StatementKind
from dbmesh.kernel.route.analysis import Analysis, Span
from dbmesh.kernel.route.protocols import ShardingRuleLike

__all__ = ["MAX_KEYS", "MAX_POINT_TEXT", "ParamPoint", "PointFacts", "TextPoint", "plain_pieces", "point_facts",
           "shape_key", "split_literals"]

# Parameter form: the exact text is the key; only its characters are restricted (no quotes, no comments).
_PLAIN_PARAM_TEXT: Final = {"mysql": re.compile(r"[A-Za-z0-9_ \t\r\n,()=<>*.;?]*"),
                            "postgres": re.compile(r"[A-Za-z0-9_ \t\r\n,()=<>*.;$]*")}
_MAX_DIGITS: Final = 18  # longer literals may leave Java's long range: the general path reads them
MAX_POINT_TEXT: Final = 8192  # longer statements are not looked at by the text form
MAX_KEYS: Final = 256  # learnt keys per shape (a key is a remainder; rules with large moduli stop learning here)


class PointFacts:
    """What makes a shape a point shape, from the general path's analysis: the plan's kind and tables, which
    literal (text form) or parameter (parameter form) gives the value, and the rule's key for it."""

    __slots__ = ("index", "key", "kind", "param", "spans", "tables")

    def __init__(self, kind: StatementKind, tables: tuple[str, ...], param: bool, index: int,
                 key: Callable[[object], int | None], spans: tuple[Span, ...]) -> None:
        self.kind = kind
        self.tables = tables
        self.param = param
        self.index = index
        self.key = key
        self.spans = spans


def point_facts(a: Analysis, rule: ShardingRuleLike) -> PointFacts | None:
    """The point facts of an analysed shape, or None when it is not a point shape."""
    if a.statement not in ("select", "update", "delete") or len(a.refs) != 1 or a.sharded != [a.refs[0].index]:
        return None
    if a.singles or a.broadcast or a.write_error is not None or a.insert is not None or a.sets or a.index_ddl:
        return None
    if a.spans is None or any(span.kind != "table" for span in a.spans):
        return None
    groups = a.conditions.get(a.refs[0].index)
    if groups is None or len(groups) != 1 or len(groups[0]) != 1:
        return None
    atom = groups[0][0]
    if atom.values is None or len(atom.values) != 1:
        return None
    slot = atom.values[0]
    if slot.negate or slot.kind == "const":
        return None
    key = rule.table_rule(a.refs[0].name).point_key(atom.column)
    if key is None:
        return None
    return PointFacts(a.kind, a.tables, slot.kind == "param", slot.index, key, a.spans)


class TextPoint:
    """A text-form point shape: its pieces (the text between its literals) and, per learnt key, the data source,
    the pieces with that node's actual table names (None: the same as the statement's) and the table pairs."""

    __slots__ = ("at", "dead", "facts", "n_parts", "pieces", "routes")

    def __init__(self, facts: PointFacts, pieces: list[str]) -> None:
        self.facts = facts
        self.pieces = pieces
        self.n_parts = 2 * len(pieces) - 1
        self.at = 2 * facts.index + 1  # where the value's literal is in a split statement
        # By point key (never None: a dict that a None key finds nothing in, without a test on the hot path).
        self.routes: dict[int | None, tuple[str, list[str] | None, tuple[tuple[str, str], ...]]] = {}
        self.dead = False

    @classmethod
    def of(cls, facts: PointFacts, parsed: ParsedStatement, sql: str) -> TextPoint | None:
        """The shape of a statement the general path planned without parameters, if the text form takes it."""
        if facts.param or not parsed.cached or len(parsed.slots) != len(parsed.literals) \
                or len(sql) > MAX_POINT_TEXT or "SHARDINGSPHERE_HINT" in sql or "__dbmesh_p" in sql:
            return None
        pieces = plain_pieces(sql, parsed.literals)
        return cls(facts, pieces) if pieces is not None else None

    def plan(self, sql: str, parts: list[str]) -> Plan | None:
        """The plan of a statement with this shape's pieces (`parts` split by `split_literals`), or None when no
        route is learnt for its value."""
        text = parts[self.at]
        if len(text) > _MAX_DIGITS:
            return None
        facts = self.facts
        route = self.routes.get(facts.key(int(text)))
        if route is None:
            return None
        data_source, pieces, pairs = route
        if pieces is not None:
            parts = parts.copy()
            parts[0::2] = pieces
            sql = "".join(parts)
        return Plan(facts.kind, (RouteUnit(data_source, sql, (), pairs),), None, (), facts.tables)

    def learn(self, sql: str, plan: Plan) -> None:
        """Keep the route of a single-unit plan the general path made for `sql` (a statement of this shape)."""
        if self.dead:
            return
        parts = split_literals(sql)
        text = parts[self.at] if len(parts) == self.n_parts else ""
        if len(parts) != self.n_parts or parts[0::2] != self.pieces or len(text) > _MAX_DIGITS:
            return
        key = self.facts.key(int(text))
        if key is None or key in self.routes or len(self.routes) >= MAX_KEYS:
            return
        [unit] = plan.units
        names = dict((logic, actual) for actual, logic in unit.tables)
        renamed = _renamed(self.pieces, self.facts.spans, names)
        self.routes[key] = (unit.data_source, None if renamed == self.pieces else renamed, unit.tables)
        if self.plan(sql, parts) != plan:  # pragma: no cover - a bug: forget the shape rather than misplan
            self.dead = True
            self.routes.clear()


class ParamPoint:
    """A parameter-form point statement (one exact text): per learnt key, the route unit's data source, SQL and
    table pairs."""

    __slots__ = ("dead", "facts", "routes")

    def __init__(self, facts: PointFacts) -> None:
        self.facts = facts
        self.routes: dict[int | None, tuple[str, str, tuple[tuple[str, str], ...]]] = {}  # by point key, as above
        self.dead = False

    @classmethod
    def of(cls, facts: PointFacts, sql: str, dialect: str) -> ParamPoint | None:
        """The point statement of a text the general path planned with parameter values, if the form takes it."""
        if not facts.param or "SHARDINGSPHERE_HINT" in sql or _PLAIN_PARAM_TEXT[dialect].fullmatch(sql) is None:
            return None
        return cls(facts)

    def plan(self, params: Sequence[Any]) -> Plan | None:
        """The plan for these parameter values, or None when no route is learnt for the value."""
        facts = self.facts
        if facts.index >= len(params):
            return None
        route = self.routes.get(facts.key(params[facts.index]))
        if route is None:
            return None
        return Plan(facts.kind, (RouteUnit(route[0], route[1], tuple(params), route[2]),), None, (), facts.tables)

    def learn(self, params: Sequence[Any], plan: Plan) -> None:
        """Keep the route of a single-unit plan the general path made for this text with `params`."""
        facts = self.facts
        if self.dead or facts.index >= len(params):
            return
        key = facts.key(params[facts.index])
        if key is None or key in self.routes or len(self.routes) >= MAX_KEYS:
            return
        [unit] = plan.units
        self.routes[key] = (unit.data_source, unit.sql, unit.tables)
        if self.plan(params) != plan:  # pragma: no cover - a bug: forget the statement rather than misplan
            self.dead = True
            self.routes.clear()


def _renamed(pieces: list[str], spans: tuple[Span, ...], names: dict[str, str]) -> list[str]:
    """The pieces with each span's logic table name replaced by its actual name, as the general path's text
    renaming does (a span's anchor is the piece it sits in, its delta the offset there)."""
    out = list(pieces)
    for span in sorted(spans, key=lambda s: (s.anchor, s.delta), reverse=True):
        piece = out[span.anchor]
        name = f"{span.quote}{names[span.logic]}{span.quote}"
        out[span.anchor] = piece[:span.delta] + name + piece[span.delta + span.length:]
    return out
