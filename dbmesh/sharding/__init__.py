"""The sharding engine's pure logic: ShardingSphere-compatible inline expressions, algorithms and key generators.

>>> from dbmesh.sharding import create_algorithm, expand_data_nodes
>>> nodes = expand_data_nodes("ds_${0..1}.t_order_${0..1}")
>>> algo = create_algorithm("INLINE", {"algorithm-expression": "t_order_${order_id % 2}"})
>>> algo.do_sharding(["t_order_0", "t_order_1"], 3, column="order_id")
't_order_1'
"""

from __future__ import annotations

from dbmesh.sharding.algorithms import ALGORITHMS, create_algorithm
from dbmesh.sharding.autotables import DataNode, auto_table_nodes
from dbmesh.sharding.base import (
    AutoTableShardingAlgorithm,
    DataNodeInfo,
    ShardingAlgorithm,
    StandardShardingAlgorithm,
)
from dbmesh.sharding.errors import InlineExpressionError, KeyGenerateError, ShardingError
from dbmesh.sharding.inline import (
    DEFAULT_LIMITS,
    AlgorithmExpression,
    InlineLimits,
    compile_algorithm_expression,
    expand_data_nodes,
)
from dbmesh.sharding.inline_algorithm import (
    ComplexInlineShardingAlgorithm,
    HintInlineShardingAlgorithm,
    InlineShardingAlgorithm,
)
from dbmesh.sharding.interval import AutoIntervalShardingAlgorithm, IntervalShardingAlgorithm
from dbmesh.sharding.keygen import KEY_GENERATORS, KeyGenerator, SnowflakeKeyGenerator, UuidKeyGenerator
from dbmesh.sharding.mod import HashModShardingAlgorithm, ModShardingAlgorithm
from dbmesh.sharding.range import BoundaryRangeShardingAlgorithm, VolumeRangeShardingAlgorithm
from dbmesh.sharding.values import JNumber, Kind

__all__ = [
    "ALGORITHMS",
    "DEFAULT_LIMITS",
    "KEY_GENERATORS",
    "AlgorithmExpression",
    "AutoIntervalShardingAlgorithm",
    "AutoTableShardingAlgorithm",
    "BoundaryRangeShardingAlgorithm",
    "ComplexInlineShardingAlgorithm",
    "DataNode",
    "DataNodeInfo",
    "HashModShardingAlgorithm",
    "HintInlineShardingAlgorithm",
    "InlineExpressionError",
    "InlineLimits",
    "InlineShardingAlgorithm",
    "IntervalShardingAlgorithm",
    "JNumber",
    "KeyGenerateError",
    "KeyGenerator",
    "Kind",
    "ModShardingAlgorithm",
    "ShardingAlgorithm",
    "ShardingError",
    "SnowflakeKeyGenerator",
    "StandardShardingAlgorithm",
    "UuidKeyGenerator",
    "VolumeRangeShardingAlgorithm",
    "auto_table_nodes",
    "compile_algorithm_expression",
    "create_algorithm",
    "expand_data_nodes",
]
