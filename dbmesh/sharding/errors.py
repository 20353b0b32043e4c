"""Errors the sharding engine raises while evaluating expressions, routing values or generating keys.

Each class renders one catalogue entry. Algorithms raise them without knowing the table they serve; the sharding
rule adds that context (`with_context`) before the error leaves the router, so the client reads e.g.
"sharding algorithm t_order_inline (INLINE) failed for t_order: ...".

>>> err = NullShardingValueError("INLINE sharding", "sharding value cannot be null")
>>> err.with_context(table="t_order", column="user_id").message
'sharding value of t_order.user_id cannot be NULL'
"""

from __future__ import annotations

from typing import Any

from dbmesh.errors import (
    KEY_GENERATE_FAILED,
    SHARDING_ALGORITHM_FAILED,
    SHARDING_NO_ROUTE,
    SHARDING_NULL_VALUE,
    SHARDING_RANGE_REFUSED,
    SHARDING_UNSUPPORTED,
    DbMeshError,
    ErrorCode,
)

_UNKNOWN_TABLE = "(table)"
_UNKNOWN_COLUMN = "(column)"


class ShardingError(DbMeshError):
    """A sharding value, expression or algorithm cannot produce a route; the statement is refused
    (SHARDING_ALGORITHM_FAILED unless a subclass names a more precise entry).

    `construct` says what failed (e.g. "MOD sharding"), `detail` why. `table`, `column` and `algorithm` are
    filled in by the sharding rule once the error reaches a table's routing."""

    layer = "route"
    ENTRY: ErrorCode = SHARDING_ALGORITHM_FAILED

    def __init__(self, construct: str, detail: str, *, table: str | None = None, column: str | None = None,
                 algorithm: str | None = None) -> None:
        self.construct = construct
        self.detail = detail
        self.table = table
        self.column = column
        self.algorithm = algorithm
        self._render()

    def _args(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm or self.construct, "table": self.table or _UNKNOWN_TABLE,
                "detail": self.detail}

    def _render(self) -> None:
        DbMeshError.__init__(self, self.ENTRY, **self._args())
        # Entries without {detail} (NULL value, no route) would hide why; str() keeps it for logs and tests,
        # the client-facing `message` stays the catalogue's text.
        if self.detail and self.detail not in self.message:
            self.args = (f"{self.entry.code} {self.message} ({self.detail})",)

    def with_context(self, *, table: str | None = None, column: str | None = None,
                     algorithm: str | None = None) -> ShardingError:
        """A copy of this error naming the table, column and algorithm it happened in (given values win over
        ones already set, so the innermost context is replaced by the rule's)."""
        err = type(self).__new__(type(self))  # copy.copy would re-call __init__ with the rendered args
        err.__dict__.update(self.__dict__)
        err.table = table if table is not None else self.table
        err.column = column if column is not None else self.column
        err.algorithm = algorithm if algorithm is not None else self.algorithm
        err._render()
        return err


class InlineExpressionError(ShardingError):
    """An inline expression is malformed, uses a construct outside the safe subset, or fails to evaluate."""

    def __init__(self, expression: str, detail: str, position: int | None = None) -> None:
        where = f" at offset {position}" if position is not None else ""
        super().__init__(f"inline expression {expression!r}", f"{detail}{where}")
        self.expression = expression
        self.position = position


class NullShardingValueError(ShardingError):
    """A sharding column is NULL or missing (ShardingSphere error 20): no data node holds such a row."""

    ENTRY = SHARDING_NULL_VALUE

    def _args(self) -> dict[str, Any]:
        return {"table": self.table or _UNKNOWN_TABLE, "column": self.column or _UNKNOWN_COLUMN}


class RangeRefusedError(ShardingError):
    """A range condition reached an algorithm that cannot route ranges (INLINE and COMPLEX_INLINE without
    allow-range-query-with-inline-sharding)."""

    ENTRY = SHARDING_RANGE_REFUSED

    def _args(self) -> dict[str, Any]:
        return {"table": self.table or _UNKNOWN_TABLE, "column": self.column or _UNKNOWN_COLUMN,
                "algorithm": self.algorithm or self.construct, "detail": self.detail}


class NoRouteError(ShardingError):
    """A row's sharding values map to no data node of its table (ShardingSphere errors 54 and 56)."""

    ENTRY = SHARDING_NO_ROUTE

    def __init__(self, construct: str, detail: str, *, value: str, table: str | None = None,
                 column: str | None = None, algorithm: str | None = None) -> None:
        self.value = value
        super().__init__(construct, detail, table=table, column=column, algorithm=algorithm)

    def _args(self) -> dict[str, Any]:
        return {"table": self.table or _UNKNOWN_TABLE, "value": self.value}


class ShardingUnsupportedError(ShardingError):
    """A statement would need something across shards that dbmesh does not do (e.g. one INSERT row written to
    several data nodes)."""

    ENTRY = SHARDING_UNSUPPORTED

    def _args(self) -> dict[str, Any]:
        return {"construct": self.construct, "tables": self.table or _UNKNOWN_TABLE, "detail": self.detail}


class KeyGenerateError(ShardingError):
    """A key generator could not produce a key (e.g. the clock moved backwards too far, or the table has none)."""

    ENTRY = KEY_GENERATE_FAILED

    def _args(self) -> dict[str, Any]:
        return {"generator": self.algorithm or self.construct, "detail": self.detail}
