"""Sharding conditions of a statement shape: WHERE/ON predicates in disjunctive normal form, per table reference,
with the values left as slots; `evaluate` turns them into the rule's ConditionGroups for one statement.

Every simplification here widens the route, never narrows it: a predicate that is not a plain comparison of a
sharding column with a value reads as TRUE (the WHERE still filters on every node it runs on), an expansion
beyond `MAX_GROUPS` becomes "unconstrained", and values are only intersected where Python compares them as the
database does (numbers); a contradiction proven that way routes to the table's first node, where the statement
matches nothing, exactly as anywhere else.

>>> import sqlglot
>>> where = sqlglot.parse_one("SELECT 1 FROM t WHERE (a = 1 OR a IN (2, 3)) AND b > 4").args["where"].this
>>> [[(x.column, x.values, x.lower) for x in g] for g in dnf(where, lambda c: [(0, c.name)])]  # doctest: +ELLIPSIS
[[('a', (Slot(kind='const', index=0, const=1, ...),), None), ('b', None, Slot(kind='const', index=0, const=4, ...))], ...]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from sqlglot import exp

from dbmesh.kernel.parse import ParsedStatement
from dbmesh.kernel.route.values import UNKNOWN, Slot, slot_of
from dbmesh.sharding.conditions import Condition, ConditionGroup, Range, Values

MAX_GROUPS: Final = 64  # DNF groups kept before a WHERE is treated as unconstrained (always correct)


@dataclass(frozen=True, slots=True)
class Atom:
    """`column` of table reference `ref` equals one of `values`, or lies between `lower` and `upper`."""

    ref: int
    column: str
    values: tuple[Slot, ...] | None = None
    lower: Slot | None = None
    upper: Slot | None = None
    lower_inclusive: bool = True
    upper_inclusive: bool = True


Resolver = Callable[[exp.Column], list[tuple[int, str]]]
Groups = tuple[tuple[Atom, ...], ...]


class _Overflow(Exception):
    pass


_FLIP: Final = {exp.GT: exp.LT, exp.GTE: exp.LTE, exp.LT: exp.GT, exp.LTE: exp.GTE, exp.EQ: exp.EQ}


def _atoms(node: exp.Expr, resolve: Resolver) -> list[Atom] | None:
    """The atoms one predicate gives (one per table/column it constrains), or None when it constrains nothing."""
    if isinstance(node, (exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE)):
        left, right = node.this, node.expression
        cls: type[exp.Binary] = type(node)
        if not isinstance(left, exp.Column) and isinstance(right, exp.Column):
            left, right, cls = right, left, _FLIP[cls]
        if not isinstance(left, exp.Column) or isinstance(left.this, exp.Star):
            return None
        slot = slot_of(right)
        if slot is None:
            return None
        targets = resolve(left)
        if cls is exp.EQ:
            return [Atom(r, c, values=(slot,)) for r, c in targets]
        if cls in (exp.GT, exp.GTE):
            return [Atom(r, c, lower=slot, lower_inclusive=cls is exp.GTE) for r, c in targets]
        return [Atom(r, c, upper=slot, upper_inclusive=cls is exp.LTE) for r, c in targets]
    if isinstance(node, exp.In) and isinstance(node.this, exp.Column) and not node.args.get("query") \
            and not node.args.get("unnest") and not node.args.get("field") and node.expressions:
        slots = [slot_of(v) for v in node.expressions]
        if any(s is None for s in slots):
            return None
        return [Atom(r, c, values=tuple(s for s in slots if s is not None)) for r, c in resolve(node.this)]
    if isinstance(node, exp.Between) and isinstance(node.this, exp.Column) and not node.args.get("symmetric"):
        low, high = slot_of(node.args["low"]), slot_of(node.args["high"])
        if low is None or high is None:
            return None
        return [Atom(r, c, lower=low, upper=high) for r, c in resolve(node.this)]
    # `col IS NULL` constrains nothing: no stored row has a NULL sharding value (INSERT refuses it), but an outer
    # join's missing side reads as NULL (`LEFT JOIN ... WHERE i.order_id IS NULL`), and every node answers that.
    return None


def _dnf(node: exp.Expr, resolve: Resolver) -> list[list[Atom]]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        left, right = _dnf(node.this, resolve), _dnf(node.expression, resolve)
        if len(left) * len(right) > MAX_GROUPS:
            raise _Overflow
        return [a + b for a in left for b in right]
    if isinstance(node, exp.Or):
        groups = _dnf(node.this, resolve) + _dnf(node.expression, resolve)
        if any(not g for g in groups):
            return [[]]  # A OR TRUE: a branch that constrains nothing makes the whole OR constrain nothing
        if len(groups) > MAX_GROUPS:
            raise _Overflow
        return groups
    atoms = _atoms(node, resolve)
    return [atoms or []]


def dnf(node: exp.Expr | None, resolve: Resolver) -> list[list[Atom]]:
    """The predicate as an OR of ANDs of atoms; [[]] (one unconstrained group) when it constrains nothing."""
    if node is None:
        return [[]]
    try:
        return _dnf(node, resolve)
    except _Overflow:
        return [[]]


def for_ref(groups: list[list[Atom]], ref: int) -> Groups:
    """The groups restricted to one table reference. Any group without an atom for it leaves it unconstrained."""
    return tuple(tuple(a for a in g if a.ref == ref) for g in groups)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def _intersect(a: Condition, b: Condition) -> Condition | None:
    """Both conditions at once; None when provably nothing satisfies both. Where Python cannot compare the values
    as the database would (strings under collations, mixed types), the first condition is kept: a wider route."""
    if isinstance(a, Values) and isinstance(b, Values):
        if all(_number(v) for v in a.values + b.values):
            kept = tuple(v for v in a.values if v in b.values)
            return Values(kept) if kept else None
        return a
    if isinstance(a, Range) and isinstance(b, Values):
        a, b = b, a
    if isinstance(a, Values) and isinstance(b, Range):
        bounds = [x for x in (b.lower, b.upper) if x is not None]
        if all(_number(v) for v in list(a.values) + bounds):
            kept = tuple(v for v in a.values if b.contains(v))
            return Values(kept) if kept else None
        return a
    assert isinstance(a, Range) and isinstance(b, Range)
    values = [x for x in (a.lower, a.upper, b.lower, b.upper) if x is not None]
    if not all(_number(v) for v in values):
        return a
    lower, lower_inc = a.lower, a.lower_inclusive
    if b.lower is not None and (lower is None or b.lower > lower or (b.lower == lower and not b.lower_inclusive)):
        lower, lower_inc = b.lower, b.lower_inclusive
    upper, upper_inc = a.upper, a.upper_inclusive
    if b.upper is not None and (upper is None or b.upper < upper or (b.upper == upper and not b.upper_inclusive)):
        upper, upper_inc = b.upper, b.upper_inclusive
    if lower is not None and upper is not None and (lower > upper or (lower == upper and not (lower_inc and upper_inc))):
        return None
    return Range(lower, upper, lower_inc, upper_inc)


def _condition(atom: Atom, parsed: ParsedStatement | None, params: Sequence[Any]) -> Condition | None:
    if atom.values is not None:
        if len(atom.values) == 1:  # the point-query case, kept cheap
            value = atom.values[0].evaluate(parsed, params)
            return None if value is UNKNOWN else Values((value,))
        values = tuple(s.evaluate(parsed, params) for s in atom.values)
        if any(v is UNKNOWN for v in values):
            return None
        return Values(values)
    lower = atom.lower.evaluate(parsed, params) if atom.lower is not None else None
    upper = atom.upper.evaluate(parsed, params) if atom.upper is not None else None
    if lower is UNKNOWN or upper is UNKNOWN or (lower is None and upper is None):
        return None  # `col > NULL` matches nothing; unconstrained is still a correct (wider) route
    if (atom.lower is not None and lower is None) or (atom.upper is not None and upper is None):
        return None
    return Range(lower, upper, atom.lower_inclusive, atom.upper_inclusive)


def evaluate(groups: Groups, parsed: ParsedStatement | None, params: Sequence[Any]) -> list[ConditionGroup] | None:
    """ConditionGroups for one statement: [] means unconstrained (every node), None means provably nothing."""
    result: list[ConditionGroup] = []
    for group in groups:
        columns: dict[str, Condition] = {}
        contradiction = False
        for atom in group:
            cond = _condition(atom, parsed, params)
            if cond is None:
                continue
            prior = columns.get(atom.column)
            if prior is not None:
                merged = _intersect(prior, cond)
                if merged is None:
                    contradiction = True
                    break
                cond = merged
            columns[atom.column] = cond
        if contradiction:
            continue
        if not columns:
            return []  # one unconstrained OR branch makes the whole disjunction unconstrained
        result.append(ConditionGroup(columns))
    return result or None
