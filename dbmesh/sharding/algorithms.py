"""The registry of built-in sharding algorithms, keyed by ShardingSphere's type names (case-insensitive).

>>> ALGORITHMS["mod"].__name__
'ModShardingAlgorithm'
>>> create_algorithm("Hash_Mod", {"sharding-count": 2}).sharding_count
2
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbmesh.errors import ConfigError
from dbmesh.sharding.base import ShardingAlgorithm
from dbmesh.sharding.inline_algorithm import (
    ComplexInlineShardingAlgorithm,
    HintInlineShardingAlgorithm,
    InlineShardingAlgorithm,
)
from dbmesh.sharding.interval import AutoIntervalShardingAlgorithm, IntervalShardingAlgorithm
from dbmesh.sharding.mod import HashModShardingAlgorithm, ModShardingAlgorithm
from dbmesh.sharding.range import BoundaryRangeShardingAlgorithm, VolumeRangeShardingAlgorithm


class _CaseInsensitive(dict[str, type[ShardingAlgorithm]]):
    """A dict whose string keys are looked up without regard to case (keys are stored upper-case)."""

    def __getitem__(self, key: str) -> type[ShardingAlgorithm]:
        return super().__getitem__(key.upper())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.upper())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.upper(), default)


ALGORITHMS: dict[str, type[ShardingAlgorithm]] = _CaseInsensitive(
    (cls.TYPE, cls) for cls in (
        InlineShardingAlgorithm, ModShardingAlgorithm, HashModShardingAlgorithm, VolumeRangeShardingAlgorithm,
        BoundaryRangeShardingAlgorithm, AutoIntervalShardingAlgorithm, IntervalShardingAlgorithm,
        ComplexInlineShardingAlgorithm, HintInlineShardingAlgorithm))


def create_algorithm(type_name: str, props: Mapping[str, Any] | None, *, file: str = "<config>",
                     path: str = "props") -> ShardingAlgorithm:
    """Build an algorithm from its `type` and `props`; ConfigError (keyed at `path`) when either is wrong."""
    cls = ALGORITHMS.get(type_name.strip())
    if cls is None:
        raise ConfigError(file, path.rsplit(".", 1)[0] + ".type" if "." in path else "type",
                          f"unknown sharding algorithm type {type_name!r} (one of {', '.join(ALGORITHMS)})")
    return cls(props or {}, file=file, path=path)
