"""Test support: throwaway servers, dbmesh config writing and dbmesh subprocesses.

Used by tests/conftest.py (the fixtures), benchmarks/ and scripts/demo.sh. Importing this package
needs only the standard library and PyYAML; PyMySQL is imported when a server is first contacted.
"""

from .dbmesh_proc import (
    DEFAULT_DATABASE,
    DEFAULT_USERS,
    DbMeshConfig,
    DbMeshProcess,
    DbMeshStartError,
    database_config,
    make_dbmesh_config,
    start_dbmesh,
)
from .mariadb import UNMANAGED_REASON, MariaDB, MariaDBError, UnmanagedServerError
from .ports import free_port, free_ports, port_is_open, wait_for_port

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_USERS",
    "UNMANAGED_REASON",
    "DbMeshConfig",
    "DbMeshProcess",
    "DbMeshStartError",
    "MariaDB",
    "MariaDBError",
    "UnmanagedServerError",
    "database_config",
    "free_port",
    "free_ports",
    "make_dbmesh_config",
    "port_is_open",
    "start_dbmesh",
    "wait_for_port",
]
