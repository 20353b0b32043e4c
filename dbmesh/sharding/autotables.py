"""How ShardingSphere lays out an autoTable: `<logic>_0..n-1`, table i on `actualDataSources[i mod n]`.

>>> [str(n) for n in auto_table_nodes("ds_${0..1}", 4, "t_order")]
['ds_0.t_order_0', 'ds_1.t_order_1', 'ds_0.t_order_2', 'ds_1.t_order_3']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from dbmesh.sharding.errors import ShardingError
from dbmesh.sharding.inline import DEFAULT_LIMITS, InlineLimits, expand_data_nodes


class DataNode(NamedTuple):
    """One actual table: its data source and its name."""

    data_source: str
    table: str

    def __str__(self) -> str:
        return f"{self.data_source}.{self.table}"


def auto_table_nodes(actual_data_sources: str | Sequence[str], sharding_count: int, logic_table: str,
                     limits: InlineLimits = DEFAULT_LIMITS) -> list[DataNode]:
    """The actual tables of an autoTable, in suffix order. `actual_data_sources` is the config text (expanded as
    an inline expression, in expansion order) or the already expanded list. Names are never zero-padded."""
    sources = expand_data_nodes(actual_data_sources, limits) if isinstance(actual_data_sources, str) else list(
        actual_data_sources)
    if not sources:
        raise ShardingError(f"autoTable {logic_table}", "actualDataSources is empty")
    if sharding_count < 1:
        raise ShardingError(f"autoTable {logic_table}", f"sharding count must be positive, got {sharding_count}")
    if sharding_count > limits.max_results:
        raise ShardingError(f"autoTable {logic_table}", f"{sharding_count} tables exceed the limit of "
                            f"{limits.max_results}")
    return [DataNode(sources[i % len(sources)], f"{logic_table}_{i}") for i in range(sharding_count)]
