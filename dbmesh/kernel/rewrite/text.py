"""Rewritten SQL as text: logic table names replaced at known spans of the client's own text (so everything else
stays byte for byte as written), and parameter markers turned back into the dialect's placeholders with each
unit's values in order.

>>> splice("SELECT * FROM t_order WHERE id = 1", [(14, 21, "t_order_1")])
'SELECT * FROM t_order_1 WHERE id = 1'
>>> render_markers("SELECT a FROM t LIMIT __dbmesh_p2__ OFFSET __dbmesh_p0__", "mysql", ["x", "y", 10])
('SELECT a FROM t LIMIT ? OFFSET ?', (10, 'x'))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dbmesh.kernel.parse import PARAMETER_MARKER


def splice(sql: str, edits: Sequence[tuple[int, int, str]]) -> str:
    """`sql` with each (start, end-exclusive, replacement) edit applied; edits are sorted and disjoint."""
    parts: list[str] = []
    last = 0
    for start, end, text in edits:
        parts += [sql[last:start], text]
        last = end
    parts.append(sql[last:])
    return "".join(parts)


def restore_markers(sql: str, dialect: str) -> str:
    """Marked text back to the client's placeholders (the inverse of parse.mark_parameters)."""
    if "__dbmesh_p" not in sql:
        return sql
    if dialect == "postgres":
        return PARAMETER_MARKER.sub(lambda m: f"${int(m.group(1)) + 1}", sql)
    return PARAMETER_MARKER.sub("?", sql)


def render_markers(sql: str, dialect: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """Generated SQL with markers replaced by placeholders, and the values they take in order.

    MySQL placeholders are positional, so values follow the order the markers appear in. PostgreSQL keeps each
    `$n` when the markers still cover 1..n exactly; otherwise (rows or LIMIT values dropped or added) they are
    renumbered in their original order."""
    if not values:
        # Without values the statement's text was not marked: marker-like text is the client's own (a string
        # literal spelling `__dbmesh_p0__`), not a parameter.
        return sql, ()
    found = [int(m.group(1)) for m in PARAMETER_MARKER.finditer(sql)] if "__dbmesh_p" in sql else []
    if not found:
        return sql, ()
    if dialect != "postgres":
        return PARAMETER_MARKER.sub("?", sql), tuple(values[i] for i in found)
    used = sorted(set(found))
    if used == list(range(len(used))) and len(used) == len(values):
        return PARAMETER_MARKER.sub(lambda m: f"${int(m.group(1)) + 1}", sql), tuple(values)
    number = {index: n + 1 for n, index in enumerate(used)}
    text = PARAMETER_MARKER.sub(lambda m: f"${number[int(m.group(1))]}", sql)
    return text, tuple(values[i] for i in used)
