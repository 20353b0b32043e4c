"""Errors the sharding engine raises while evaluating expressions, routing values or generating keys."""

from __future__ import annotations

from dbmesh.errors import STATEMENT_UNSUPPORTED, DbMeshError

# FIXME: these reuse STATEMENT_UNSUPPORTED (DBM-1304) until the catalogue gains sharding entries
# (null sharding value, algorithm evaluation failure, range refused, key generation failure).


class ShardingError(DbMeshError):
    """A sharding value, expression or algorithm cannot produce a route; the statement is refused."""

    layer = "route"

    def __init__(self, construct: str, detail: str) -> None:
        super().__init__(STATEMENT_UNSUPPORTED, construct=construct, detail=detail)
        self.construct = construct
        self.detail = detail


class InlineExpressionError(ShardingError):
    """An inline expression is malformed, uses a construct outside the safe subset, or fails to evaluate."""

    def __init__(self, expression: str, detail: str, position: int | None = None) -> None:
        where = f" at offset {position}" if position is not None else ""
        super().__init__(f"inline expression {expression!r}", f"{detail}{where}")
        self.expression = expression
        self.position = position


class KeyGenerateError(ShardingError):
    """A key generator could not produce a key (e.g. the clock moved backwards too far)."""
