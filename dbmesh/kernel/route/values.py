"""Where a value in a statement comes from: a literal slot of the shape, a parameter, or a constant.

Routing decisions are cached per statement shape; a `Slot` is what the cache keeps for each value that feeds a
sharding condition or an INSERT row, and `evaluate` reads the value of one statement.

>>> from sqlglot import exp
>>> slot_of(exp.Neg(this=exp.Placeholder(this="dbm_2")))
Slot(kind='literal', index=2, const=None, negate=True)
>>> slot_of(exp.column("__dbmesh_p1__")).evaluate(None, (10, 20))
20
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal

from sqlglot import exp

from dbmesh.kernel.parse import PARAMETER_MARKER, ParsedStatement


class _Unknown:
    """A value the planner cannot know before execution (a negated string, an unbound parameter)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()


@dataclass(frozen=True, slots=True)
class Slot:
    """A value source: literal `index` of the statement, parameter `index`, or the constant `const`."""

    kind: Literal["literal", "param", "const"]
    index: int = 0
    const: Any = None
    negate: bool = False

    def evaluate(self, parsed: ParsedStatement | None, params: Sequence[Any]) -> Any:
        """The value for one statement, or UNKNOWN."""
        if self.kind == "literal":
            if parsed is None:
                return UNKNOWN
            value: Any = parsed.value(self.index)
        elif self.kind == "param":
            if self.index >= len(params):
                return UNKNOWN
            value = params[self.index]
        else:
            value = self.const
        if self.negate:
            if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
                return UNKNOWN
            return -value
        return value


def literal_value(node: exp.Literal) -> Any:
    """A (pinned) literal node as a Python value, as ParsedStatement.value reads literals."""
    text = node.this
    if node.is_string:
        return text
    try:
        return int(text)
    except ValueError:
        return Decimal(text)


def param_index(node: exp.Expr) -> int | None:
    """The parameter index of a marker column (see parse.mark_parameters), else None."""
    if isinstance(node, exp.Column) and not node.table and isinstance(node.this, exp.Identifier):
        m = PARAMETER_MARKER.fullmatch(node.this.this)
        if m is not None:
            return int(m.group(1))
    return None


def slot_of(node: exp.Expr) -> Slot | None:
    """The slot a value expression reads, or None when it is not a plain value (a column, a function, ...)."""
    negate = False
    while True:
        if isinstance(node, exp.Paren):
            node = node.this
        elif isinstance(node, exp.Neg):
            negate = not negate
            node = node.this
        else:
            break
    if isinstance(node, exp.Placeholder) and isinstance(node.this, str) and node.this.startswith("dbm_"):
        return Slot("literal", int(node.this[4:]), None, negate)
    index = param_index(node)
    if index is not None:
        return Slot("param", index, None, negate)
    if isinstance(node, exp.Literal):
        return Slot("const", 0, literal_value(node), negate)
    if isinstance(node, exp.Null) and not negate:
        return Slot("const", 0, None)
    return None
