"""Test support: throwaway servers, dbmesh config writing and dbmesh subprocesses.

Used by tests/conftest.py (the fixtures), benchmarks/ and scripts/demo.sh. Importing this package
needs only the standard library and PyYAML; PyMySQL is imported when a server is first contacted.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names are loaded lazily, so `python -m tests.support.mariadb` does not import its own module twice
# (runpy warns when the package __init__ already imported the module it is asked to run).
_EXPORTS = {
    "DEFAULT_DATABASE": "dbmesh_proc",
    "DEFAULT_USERS": "dbmesh_proc",
    "DbMeshConfig": "dbmesh_proc",
    "DbMeshProcess": "dbmesh_proc",
    "DbMeshStartError": "dbmesh_proc",
    "database_config": "dbmesh_proc",
    "make_dbmesh_config": "dbmesh_proc",
    "pg_database_config": "dbmesh_proc",
    "start_dbmesh": "dbmesh_proc",
    "UNMANAGED_REASON": "mariadb",
    "MariaDB": "mariadb",
    "MariaDBError": "mariadb",
    "UnmanagedServerError": "mariadb",
    "PG_UNMANAGED_REASON": "postgres",
    "PostgreSQL": "postgres",
    "PostgreSQLError": "postgres",
    "free_port": "ports",
    "free_ports": "ports",
    "port_is_open": "ports",
    "wait_for_port": "ports",
}

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_USERS",
    "PG_UNMANAGED_REASON",
    "UNMANAGED_REASON",
    "DbMeshConfig",
    "DbMeshProcess",
    "DbMeshStartError",
    "MariaDB",
    "MariaDBError",
    "PostgreSQL",
    "PostgreSQLError",
    "UnmanagedServerError",
    "database_config",
    "free_port",
    "free_ports",
    "make_dbmesh_config",
    "pg_database_config",
    "port_is_open",
    "start_dbmesh",
    "wait_for_port",
]

if TYPE_CHECKING:
    from .dbmesh_proc import (
        DEFAULT_DATABASE,
        DEFAULT_USERS,
        DbMeshConfig,
        DbMeshProcess,
        DbMeshStartError,
        database_config,
        make_dbmesh_config,
        pg_database_config,
        start_dbmesh,
    )
    from .mariadb import UNMANAGED_REASON, MariaDB, MariaDBError, UnmanagedServerError
    from .ports import free_port, free_ports, port_is_open, wait_for_port
    from .postgres import PG_UNMANAGED_REASON, PostgreSQL, PostgreSQLError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
