"""The merger: primitives that turn shard results into one result, and row codecs for both protocols."""

from dbmesh.kernel.merge.aggregate import Aggregator
from dbmesh.kernel.merge.base import MergeError, RowCodec, ShardResult, payloads, split_rows
from dbmesh.kernel.merge.codec_mysql import MySQLTextCodec, mysql_text_codec
from dbmesh.kernel.merge.codec_pg import PostgresCodec, pg_codec
from dbmesh.kernel.merge.collation import Collation, mysql_collation
from dbmesh.kernel.merge.concat import concatenate
from dbmesh.kernel.merge.distinct import distinct
from dbmesh.kernel.merge.group import group_key, hash_group_merge, stream_group_merge
from dbmesh.kernel.merge.having import check_having, compile_having
from dbmesh.kernel.merge.limit import offset_limit
from dbmesh.kernel.merge.order import Descending, merge_sorted, order_key
from dbmesh.kernel.merge.pipeline import concatenate_payloads, merge

__all__ = [
    "Aggregator",
    "Collation",
    "Descending",
    "MergeError",
    "MySQLTextCodec",
    "PostgresCodec",
    "RowCodec",
    "ShardResult",
    "check_having",
    "compile_having",
    "concatenate",
    "concatenate_payloads",
    "distinct",
    "group_key",
    "hash_group_merge",
    "merge",
    "merge_sorted",
    "mysql_collation",
    "mysql_text_codec",
    "offset_limit",
    "order_key",
    "payloads",
    "pg_codec",
    "split_rows",
    "stream_group_merge",
]
