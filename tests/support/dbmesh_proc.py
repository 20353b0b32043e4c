"""Writing dbmesh config directories and running ``dbmesh serve`` as a subprocess.

The config directory follows the ShardingSphere-Proxy shape: ``global.yaml`` (authority, props and
the ``dbmesh:`` section with listeners, admin, TLS, slow-query log and limits) and one
``database-<name>.yaml`` per logical database.

dbmesh runs as ``<python> -m dbmesh serve --config DIR``; it is ready when its MySQL port accepts a
TCP connection. Its stdout and stderr go to files in the config directory (never to pipes, which
would block a chatty server once the pipe buffer fills).
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from .ports import free_port, port_is_open

DEFAULT_DATABASE = "dbmesh_test"

DEFAULT_USERS: tuple[dict[str, str], ...] = (
    {"user": "root@%", "password": "rootpw"},
    {"user": "sha2user@%", "password": "sha2pw", "authenticationMethodName": "caching_sha2_password"},
)

DEFAULT_LIMITS: dict[str, int] = {
    "maxPacketSize": 67108864,
    "maxConnections": 10000,
    "authTimeoutSeconds": 10,
    "shutdownTimeoutSeconds": 30,
}

REPO_ROOT = Path(__file__).resolve().parents[2]


class BackendServer(Protocol):
    """What the config writer needs from a backend (tests.support.mariadb.MariaDB fits)."""

    host: str
    port: int
    user: str
    password: str


@dataclass(frozen=True)
class DbMeshConfig:
    """A written config directory and the endpoints it configures."""

    config_dir: Path
    host: str
    port: int  # MySQL listener
    pg_port: int
    admin_port: int
    slow_log_path: Path
    global_config: dict[str, Any]
    databases: dict[str, dict[str, Any]]

    @property
    def users(self) -> list[dict[str, Any]]:
        return list(self.global_config["authority"]["users"])


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``; nested mappings merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def database_config(
    name: str,
    backend: BackendServer,
    *,
    backend_database: str | None = None,
    max_pool_size: int = 50,
    min_pool_size: int = 1,
    rules: list[Any] | None = None,
) -> dict[str, Any]:
    """A ``database-<name>.yaml`` document with one data source ``ds_0`` on ``backend``."""
    return {
        "databaseName": name,
        "dataSources": {
            "ds_0": {
                "url": f"jdbc:mysql://{backend.host}:{backend.port}/{backend_database or name}",
                "username": backend.user,
                "password": backend.password,
                "maxPoolSize": max_pool_size,
                "minPoolSize": min_pool_size,
            }
        },
        "rules": list(rules or []),
    }


def pg_database_config(
    name: str,
    pg: BackendServer,
    *,
    backend_database: str | None = None,
    username: str | None = None,
    password: str | None = None,
    max_pool_size: int = 50,
    min_pool_size: int = 1,
    rules: list[Any] | None = None,
) -> dict[str, Any]:
    """A ``database-<name>.yaml`` document with one PostgreSQL data source ``ds_0`` on ``pg``.

    The URL is ``jdbc:postgresql://host:port/<backend_database or name>``; dbmesh logs in as
    ``username``/``password`` (default: the server's ``user``/``password``). Clients reach the logical
    database on dbmesh's PostgreSQL listener with ``dbname=<name>``.
    """
    return {
        "databaseName": name,
        "dataSources": {
            "ds_0": {
                "url": f"jdbc:postgresql://{pg.host}:{pg.port}/{backend_database or name}",
                "username": pg.user if username is None else username,
                "password": pg.password if password is None else password,
                "maxPoolSize": max_pool_size,
                "minPoolSize": min_pool_size,
            }
        },
        "rules": list(rules or []),
    }


def make_dbmesh_config(
    directory: str | os.PathLike[str],
    mariadb: BackendServer,
    *,
    users: Iterable[Mapping[str, Any]] | None = None,
    extra_users: Iterable[Mapping[str, Any]] = (),
    limits: Mapping[str, Any] | None = None,
    multiplexing: Any = None,
    max_pool_size: int = 50,
    min_pool_size: int = 1,
    tls: bool | Mapping[str, Any] = True,
    props: Mapping[str, Any] | None = None,
    slow_query_threshold_ms: int = 1000,
    databases: Mapping[str, Mapping[str, Any] | None] | None = None,
    pg_databases: Mapping[str, Mapping[str, Any] | BackendServer] | None = None,
    include_default_database: bool = True,
    create_backend_databases: bool = True,
    dbmesh: Mapping[str, Any] | None = None,
    global_overrides: Mapping[str, Any] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    pg_port: int | None = None,
    admin_port: int | None = None,
) -> DbMeshConfig:
    """Write a dbmesh config directory for ``mariadb`` and return what it configures.

    - ``users`` replaces the default users, ``extra_users`` adds to them.
    - ``limits`` merges into the default limits; ``multiplexing`` (any YAML value) is written as
      ``dbmesh.multiplexing``; ``dbmesh`` deep-merges into the ``dbmesh:`` section and
      ``global_overrides`` into the whole of global.yaml, last.
    - ``max_pool_size``/``min_pool_size`` apply to every generated data source.
    - ``databases`` maps logical database names to a full ``database-<name>.yaml`` document, or to
      None for one data source on the backend database of the same name; the default database
      ``dbmesh_test`` is included unless ``include_default_database`` is False.
    - ``pg_databases`` maps logical database names served on the PostgreSQL listener to a PostgreSQL
      server (one data source on its database of the same name, see ``pg_database_config``) or to a
      full ``database-<name>.yaml`` document.
    - With ``create_backend_databases``, generated data sources' backend databases are created
      (when ``mariadb`` or the PostgreSQL server has an ``ensure_database`` method).
    """
    config_dir = Path(directory).resolve()
    config_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    pg_port = pg_port or free_port(host)
    admin_port = admin_port or free_port(host)
    slow_log_path = config_dir / "slow.log"

    dbmesh_section: dict[str, Any] = {
        "listeners": {
            "mysql": {"host": host, "port": port},
            "postgresql": {"host": host, "port": pg_port},
        },
        "admin": {"host": host, "port": admin_port},
        "tls": dict(tls) if isinstance(tls, Mapping) else {"enabled": bool(tls)},
        "slowQueryLog": {"thresholdMilliseconds": slow_query_threshold_ms, "path": str(slow_log_path)},
        "limits": _deep_merge(DEFAULT_LIMITS, limits or {}),
    }
    if multiplexing is not None:
        dbmesh_section["multiplexing"] = copy.deepcopy(multiplexing)
    if dbmesh:
        dbmesh_section = _deep_merge(dbmesh_section, dbmesh)

    user_list = [dict(u) for u in (users if users is not None else DEFAULT_USERS)]
    user_list += [dict(u) for u in extra_users]
    global_config: dict[str, Any] = {
        "authority": {"users": user_list},
        "props": dict(props or {}),
        "dbmesh": dbmesh_section,
    }
    if global_overrides:
        global_config = _deep_merge(global_config, global_overrides)

    wanted: dict[str, Mapping[str, Any] | None] = {}
    if include_default_database:
        wanted[DEFAULT_DATABASE] = None
    wanted.update(databases or {})
    documents: dict[str, dict[str, Any]] = {}
    for name, spec in wanted.items():
        if spec is None:
            documents[name] = database_config(
                name, mariadb, max_pool_size=max_pool_size, min_pool_size=min_pool_size
            )
            ensure = getattr(mariadb, "ensure_database", None)
            if create_backend_databases and callable(ensure):
                ensure(name)
        else:
            documents[name] = copy.deepcopy(dict(spec))
    for name, pg_spec in (pg_databases or {}).items():
        if name in documents:
            raise ValueError(f"logical database {name!r} is configured twice (databases and pg_databases)")
        if isinstance(pg_spec, Mapping):
            documents[name] = copy.deepcopy(dict(pg_spec))
            continue
        documents[name] = pg_database_config(
            name, pg_spec, max_pool_size=max_pool_size, min_pool_size=min_pool_size
        )
        ensure = getattr(pg_spec, "ensure_database", None)
        if create_backend_databases and callable(ensure):
            ensure(name)

    for old in config_dir.glob("database-*.yaml"):  # a rewritten directory keeps no stale databases
        old.unlink()
    (config_dir / "global.yaml").write_text(yaml.safe_dump(global_config, sort_keys=False))
    for name, doc in documents.items():
        (config_dir / f"database-{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    return DbMeshConfig(
        config_dir=config_dir,
        host=host,
        port=port,
        pg_port=pg_port,
        admin_port=admin_port,
        slow_log_path=slow_log_path,
        global_config=global_config,
        databases=documents,
    )


class DbMeshStartError(RuntimeError):
    """dbmesh exited or did not open its MySQL port in time."""


class DbMeshProcess:
    """``dbmesh serve`` running as a child process."""

    def __init__(
        self,
        config: DbMeshConfig,
        *,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.python = python or os.environ.get("DBMESH_PYTHON") or sys.executable
        self.env = dict(os.environ if env is None else env)
        self.extra_args = list(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self.stdout_path = config.config_dir / "dbmesh.stdout"
        self.stderr_path = config.config_dir / "dbmesh.stderr"

    # endpoints
    host = property(lambda self: self.config.host)
    port = property(lambda self: self.config.port)
    pg_port = property(lambda self: self.config.pg_port)
    admin_port = property(lambda self: self.config.admin_port)
    config_dir = property(lambda self: self.config.config_dir)
    slow_log_path = property(lambda self: self.config.slow_log_path)

    @property
    def command(self) -> list[str]:
        return [
            self.python,
            "-m",
            "dbmesh",
            "serve",
            "--config",
            str(self.config.config_dir),
            *self.extra_args,
        ]

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise DbMeshStartError("dbmesh is not started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exited {self.returncode}"
        return f"<DbMeshProcess mysql={self.host}:{self.port} {state} config={self.config_dir}>"

    def start(self, timeout: float = 30.0) -> DbMeshProcess:
        """Start dbmesh and wait until its MySQL port accepts TCP connections."""
        if self.is_running():
            raise DbMeshStartError(f"{self!r} already running")
        env = dict(self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # The repo root goes first on the path so an uninstalled checkout runs too.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self._stderr_offset = err.tell()
            self._proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=str(REPO_ROOT)
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DbMeshStartError(
                    f"dbmesh exited with {self._proc.returncode} before listening on {self.host}:{self.port}; "
                    f"command: {' '.join(self.command)}\nstderr:\n{self.stderr_text()[-8000:]}"
                )
            if port_is_open(self.host, self.port, timeout=0.5):
                return self
            time.sleep(0.05)
        self.stop()
        raise DbMeshStartError(
            f"dbmesh did not listen on {self.host}:{self.port} within {timeout}s\nstderr:\n{self.stderr_text()[-8000:]}"
        )

    def stderr_text(self) -> str:
        """Everything dbmesh wrote to stderr since the last start()."""
        try:
            with open(self.stderr_path, "rb") as fh:
                fh.seek(getattr(self, "_stderr_offset", 0))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def terminate(self, timeout: float | None = None) -> int:
        """SIGTERM and wait for exit (default: shutdownTimeoutSeconds + 10 s); returns the exit code.

        Raises subprocess.TimeoutExpired if dbmesh does not exit in time (it is left running).
        """
        if self._proc is None:
            raise DbMeshStartError("dbmesh is not started")
        if timeout is None:
            timeout = (
                float(self.config.global_config["dbmesh"]["limits"].get("shutdownTimeoutSeconds", 30)) + 10
            )
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        return self._proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def stop(self, timeout: float | None = None) -> int | None:
        """Stop however it takes: SIGTERM, then SIGKILL when it does not exit in time. Idempotent."""
        if self._proc is None:
            return None
        try:
            return self.terminate(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self._proc.returncode

    def rss_bytes(self) -> int:
        """Resident set size of the dbmesh process (VmRSS from /proc/<pid>/status)."""
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    value, unit = line.split()[1:3]
                    assert unit.lower() == "kb"
                    return int(value) * 1024
        raise DbMeshStartError(f"no VmRSS for pid {self.pid} (exited?)")

    def __enter__(self) -> DbMeshProcess:
        return self if self.is_running() else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_dbmesh(config: DbMeshConfig, timeout: float = 30.0, **kwargs: Any) -> DbMeshProcess:
    """Start dbmesh on ``config`` and return the running process."""
    return DbMeshProcess(config, **kwargs).start(timeout)
