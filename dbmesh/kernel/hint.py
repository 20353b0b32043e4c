"""ShardingSphere's SQL-comment hints: `/* SHARDINGSPHERE_HINT: dataSourceName=ds_0, t_order.SHARDING_DATABASE_VALUE=1,
... */`, read as ShardingSphere reads them, and merged with a session's Hint (the comment wins).

The SQL must contain `/*`, `*/` and `SHARDINGSPHERE_HINT`; the text after the next `:` up to `*/` is split on
`,` into `key=value` pairs with case-insensitive keys. Sharding values are ints when they parse as integers (Java
BigInteger), else strings; only the upper-case `SHARDING_DATABASE_VALUE`/`SHARDING_TABLE_VALUE` spellings (bare or
table-prefixed) carry values, while the flags also accept their camelCase aliases.

>>> h = parse_hint("/* SHARDINGSPHERE_HINT: dataSourceName=ds_1, t_order.SHARDING_TABLE_VALUE=3 */ SELECT 1")
>>> h.data_source, dict(h.table_values)
('ds_1', {'t_order': (3,)})
>>> parse_hint("SELECT 1") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from dbmesh.sharding.conditions import Hint

_MARK: Final = "SHARDINGSPHERE_HINT"
_DATA_SOURCE: Final = frozenset({"data_source_name", "datasourcename"})
_SKIP_REWRITE: Final = frozenset({"skip_sql_rewrite", "skipsqlrewrite"})
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")


def _value(text: str) -> Any:
    return int(text) if _INTEGER.fullmatch(text) else text


def parse_hint(sql: str) -> Hint | None:
    """The hint a statement's comment carries, or None."""
    if _MARK not in sql:
        return None
    start = sql.find("/*")
    end = sql.find("*/", start + 2) if start >= 0 else -1
    mark = sql.find(_MARK, start) if start >= 0 else -1
    if start < 0 or end < 0 or mark < 0 or mark > end:
        return None
    colon = sql.find(":", mark)
    if colon < 0 or colon > end:
        return None
    data_source: str | None = None
    skip = False
    databases: dict[str, tuple[Any, ...]] = {}
    tables: dict[str, tuple[Any, ...]] = {}
    for pair in sql[colon + 1 : end].split(","):
        key, sep, value = pair.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        lower = key.lower()
        if lower in _DATA_SOURCE:
            data_source = value
        elif lower in _SKIP_REWRITE:
            skip = value.lower() == "true"
        else:
            table, dot, name = key.rpartition(".")
            if name == "SHARDING_DATABASE_VALUE":
                databases[table.lower() if dot else ""] = (_value(value),)
            elif name == "SHARDING_TABLE_VALUE":
                tables[table.lower() if dot else ""] = (_value(value),)
    return Hint(data_source, MappingProxyType(databases), MappingProxyType(tables), skip)


def _merged(base: Mapping[str, tuple[Any, ...]], top: Mapping[str, tuple[Any, ...]]) -> Mapping[str, tuple[Any, ...]]:
    if not base:
        return top
    if not top:
        return base
    return MappingProxyType({**base, **top})


def merge_hints(session: Hint | None, comment: Hint | None) -> Hint | None:
    """One hint from the session's and the comment's: the comment's settings win, key by key.

    >>> merge_hints(Hint(data_source="ds_0"), Hint(table_values={"t": (1,)})).data_source
    'ds_0'
    """
    if comment is None:
        return session
    if session is None:
        return comment
    return Hint(
        comment.data_source if comment.data_source is not None else session.data_source,
        _merged(session.database_values, comment.database_values),
        _merged(session.table_values, comment.table_values),
        comment.skip_sql_rewrite or session.skip_sql_rewrite,
    )
