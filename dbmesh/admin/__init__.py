"""Admin statements (ShardingSphere DistSQL spellings): PREVIEW, SHOW SHARDING/STORAGE ..., session sharding hints.

>>> from dbmesh.admin import parse_admin
>>> parse_admin("SHOW STORAGE UNITS FROM sharding_db")
ShowStorageUnits(database='sharding_db')
"""

from __future__ import annotations

from dbmesh.admin.execute import AdminResult, HintChange, apply_hint_change, execute_admin
from dbmesh.admin.parse import (
    AdminError,
    AdminStatement,
    ClearShardingHint,
    Preview,
    SetShardingHint,
    ShowBroadcastTableRules,
    ShowShardingAlgorithms,
    ShowShardingHintStatus,
    ShowShardingTableNodes,
    ShowShardingTableRules,
    ShowSingleTables,
    ShowStorageUnits,
    parse_admin,
)

__all__ = [
    "AdminError",
    "AdminResult",
    "AdminStatement",
    "ClearShardingHint",
    "HintChange",
    "Preview",
    "SetShardingHint",
    "ShowBroadcastTableRules",
    "ShowShardingAlgorithms",
    "ShowShardingHintStatus",
    "ShowShardingTableNodes",
    "ShowShardingTableRules",
    "ShowSingleTables",
    "ShowStorageUnits",
    "apply_hint_change",
    "execute_admin",
    "parse_admin",
]
