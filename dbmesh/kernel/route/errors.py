"""The planner's refusals: catalogue errors raised while routing and rewriting a statement."""

from __future__ import annotations

from collections.abc import Iterable

from dbmesh.errors import SHARDING_COLUMN_UPDATE, SHARDING_UNSUPPORTED, SQL_SYNTAX, DbMeshError


class RouteError(DbMeshError):
    """A statement the planner refuses to route or rewrite (it could give a wrong answer)."""

    layer = "route"


def unsupported(construct: str, tables: Iterable[str], detail: str) -> RouteError:
    """SHARDING_UNSUPPORTED naming the construct and the logic tables involved."""
    names = ", ".join(sorted(set(tables))) or "-"
    return RouteError(SHARDING_UNSUPPORTED, construct=construct, tables=names, detail=detail)


def column_update(table: str, column: str, detail: str) -> RouteError:
    return RouteError(SHARDING_COLUMN_UPDATE, table=table, column=column, detail=detail)


def syntax(detail: str) -> RouteError:
    return RouteError(SQL_SYNTAX, detail=detail)
