"""Throwaway MariaDB servers for tests, benchmarks and the demo.

A managed server is a real ``mariadbd`` process with its own data directory and port, so tests may
kill it (SIGKILL, as a crash) and start it again on the same data and port. When the environment
names a server (``DBMESH_TEST_MYSQL_HOST``), that server is used as it is and cannot be killed or
restarted: ``is_managed`` is False and those methods raise ``UnmanagedServerError``.

Layout of a managed server's base directory::

    <base>/data          the datadir (mariadb-install-db)
    <base>/mariadbd.pid  pid file
    <base>/mysqld.sock   unix socket (unused by tests, which speak TCP)
    <base>/error.log     the server's error log, quoted when start-up fails

Command line (used by scripts/demo.sh and the benchmarks)::

    python -m tests.support.mariadb start --datadir .demo/mariadb --port 13306 [--database demo_ds_0]
    python -m tests.support.mariadb stop --datadir .demo/mariadb
    python -m tests.support.mariadb status --datadir .demo/mariadb
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .ports import free_port

ENV_HOST = "DBMESH_TEST_MYSQL_HOST"
ENV_PORT = "DBMESH_TEST_MYSQL_PORT"
ENV_USER = "DBMESH_TEST_MYSQL_USER"
ENV_PASSWORD = "DBMESH_TEST_MYSQL_PASSWORD"

UNMANAGED_REASON = (
    f"MariaDB comes from ${ENV_HOST} (an external server the tests do not manage): "
    "kill/restart are unavailable"
)

# Server options chosen for a fast start and fast writes; durability does not matter for a
# throwaway server, and a crash (kill()) must still recover, which InnoDB does from its redo log.
SERVER_OPTIONS: tuple[str, ...] = (
    "--bind-address=127.0.0.1",
    "--skip-name-resolve",
    "--max-connections=500",
    "--innodb-buffer-pool-size=128M",
    "--innodb-log-file-size=48M",
    "--innodb-flush-log-at-trx-commit=2",
    "--innodb-doublewrite=0",
    "--skip-log-bin",
    "--sync-binlog=0",
    "--performance-schema=OFF",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
)


class MariaDBError(RuntimeError):
    """A managed server failed to install, start or stop."""


class UnmanagedServerError(MariaDBError):
    """kill()/start()/stop() on a server named by the environment."""


def _find_binary(*names: str) -> str:
    """Locate a server binary; /usr/sbin is not on every PATH."""
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/libexec:/usr/local/sbin:/sbin")
        if found:
            return found
    raise MariaDBError(f"none of {names} found; install mariadb-server (scripts/install.sh does)")


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL the child when the parent dies, so a killed pytest leaves no server behind."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


class MariaDB:
    """A MariaDB server: managed (a child process of ours) or external (named by the environment)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        user: str = "root",
        password: str = "",
        basedir: str | os.PathLike[str] | None = None,
        managed: bool = True,
        die_with_parent: bool = True,
        extra_options: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.port = port if port is not None else (free_port(host) if managed else 3306)
        self.user = user
        self.password = password
        self.is_managed = managed
        self.basedir = Path(basedir).resolve() if basedir is not None else None
        if managed and self.basedir is None:
            raise ValueError("a managed MariaDB needs a basedir")
        self.die_with_parent = die_with_parent
        self.extra_options = tuple(extra_options)
        self._proc: subprocess.Popen[bytes] | None = None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_env(cls) -> MariaDB | None:
        """The server named by DBMESH_TEST_MYSQL_HOST/_PORT/_USER/_PASSWORD, or None when unset."""
        host = os.environ.get(ENV_HOST)
        if not host:
            return None
        return cls(
            host=host,
            port=int(os.environ.get(ENV_PORT, "3306")),
            user=os.environ.get(ENV_USER, "root"),
            password=os.environ.get(ENV_PASSWORD, ""),
            managed=False,
        )

    @classmethod
    def managed_in(cls, basedir: str | os.PathLike[str], port: int | None = None, **kwargs: Any) -> MariaDB:
        """A managed server living in ``basedir`` (created on start)."""
        return cls(basedir=basedir, port=port, managed=True, **kwargs)

    # -- paths ---------------------------------------------------------------------------------

    @property
    def datadir(self) -> Path:
        assert self.basedir is not None
        return self.basedir / "data"

    @property
    def tmpdir(self) -> Path:
        return self.datadir.parent / (self.datadir.name + "-tmp")

    @property
    def pid_file(self) -> Path:
        assert self.basedir is not None
        return self.basedir / "mariadbd.pid"

    @property
    def socket_path(self) -> Path:
        assert self.basedir is not None
        return self.basedir / "mysqld.sock"

    @property
    def error_log(self) -> Path:
        assert self.basedir is not None
        return self.basedir / "error.log"

    @property
    def pid(self) -> int | None:
        """The server's pid when we started it or its pid file names a live process."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        if self.basedir is not None:
            with contextlib.suppress(OSError, ValueError):
                pid = int(self.pid_file.read_text().strip())
                os.kill(pid, 0)
                return pid
        return None

    def __repr__(self) -> str:
        kind = f"managed in {self.basedir}" if self.is_managed else "external"
        return f"<MariaDB {self.user}@{self.host}:{self.port} {kind}>"

    # -- lifecycle -----------------------------------------------------------------------------

    def _require_managed(self, what: str) -> None:
        if not self.is_managed:
            raise UnmanagedServerError(f"{what}: {UNMANAGED_REASON}")

    def install(self) -> None:
        """Create the datadir with mariadb-install-db unless it exists already."""
        self._require_managed("install")
        if (self.datadir / "mysql").is_dir():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            _find_binary("mariadb-install-db", "mysql_install_db"),
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",  # root@localhost/127.0.0.1 with an empty password
            "--skip-test-db",
            "--skip-name-resolve",  # no root@<hostname> rows that --skip-name-resolve would then warn about
            f"--tmpdir={self.tmpdir}",  # private: concurrent installs in a shared /tmp collide on temp tables
        ]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        if res.returncode != 0:
            raise MariaDBError(f"mariadb-install-db failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")

    def start(self, timeout: float = 60.0, detach: bool = False) -> MariaDB:
        """Start (or restart, after kill()/stop()) the server on the same datadir and port.

        ``detach`` starts it in its own session and does not tie its life to ours (the demo).
        """
        self._require_managed("start")
        if self.pid is not None:
            raise MariaDBError(f"{self!r} is already running (pid {self.pid})")
        self.install()
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            _find_binary("mariadbd", "mysqld"),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.error_log}",
            f"--tmpdir={self.tmpdir}",
            *SERVER_OPTIONS,
            *self.extra_options,
        ]
        if os.geteuid() == 0:
            cmd.append("--user=root")  # mariadbd refuses to run as root without it
        if self.host != "127.0.0.1":
            cmd = [c for c in cmd if not c.startswith("--bind-address=")] + [f"--bind-address={self.host}"]
        log_offset = self.error_log.stat().st_size if self.error_log.exists() else 0
        use_pdeathsig = (
            not detach and self.die_with_parent and threading.current_thread() is threading.main_thread()
        )
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=detach,
            preexec_fn=_set_pdeathsig if use_pdeathsig else None,
        )
        self._wait_ready(timeout, log_offset)
        return self

    def _wait_ready(self, timeout: float, log_offset: int) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise MariaDBError(
                    f"mariadbd exited with {self._proc.returncode} during start-up; error log:\n"
                    + self._log_tail(log_offset)
                )
            try:
                self.connect(connect_timeout=2).close()
                return
            except Exception as exc:  # pymysql raises OperationalError until the socket is up
                last_error = exc
                time.sleep(0.1)
        raise MariaDBError(
            f"mariadbd not ready after {timeout}s ({last_error}); error log:\n" + self._log_tail(log_offset)
        )

    def _log_tail(self, offset: int = 0, limit: int = 4000) -> str:
        try:
            with open(self.error_log, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")[-limit:]
        except OSError:
            return "(no error log)"

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; start() recovers it."""
        self._require_managed("kill")
        pid = self.pid
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        self._reap(pid, 30.0)

    def stop(self, timeout: float = 60.0) -> None:
        """Shut the server down cleanly (SIGTERM), SIGKILL after ``timeout``."""
        self._require_managed("stop")
        pid = self.pid
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        if not self._reap(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            self._reap(pid, 10.0)

    def _reap(self, pid: int, timeout: float) -> bool:
        """Wait until ``pid`` is gone; True if it went within ``timeout``."""
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            self._proc = None
            return True
        deadline = time.monotonic() + timeout  # not our child (detached demo server): poll
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        return False

    def destroy(self) -> None:
        """Stop the server and remove its base directory."""
        self._require_managed("destroy")
        self.stop()
        if self.basedir is not None:
            shutil.rmtree(self.basedir, ignore_errors=True)

    # -- SQL -----------------------------------------------------------------------------------

    def connect(self, database: str | None = None, **kwargs: Any) -> Any:
        """A new autocommit ``pymysql.Connection`` to the server (TCP)."""
        import pymysql

        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": database,
            "autocommit": True,
            "connect_timeout": 10,
            "charset": "utf8mb4",
        }
        params.update(kwargs)
        return pymysql.connect(**params)

    def execute(self, sql: str, database: str | None = None, args: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection; returns its rows (empty for non-queries)."""
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def ensure_database(self, name: str) -> None:
        self.execute(f"CREATE DATABASE IF NOT EXISTS `{name}`")

    def url(self, database: str) -> str:
        """The JDBC-style URL dbmesh configs use for this server."""
        return f"jdbc:mysql://{self.host}:{self.port}/{database}"


# -- command line --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.mariadb", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "status"):
        p = sub.add_parser(name)
        p.add_argument(
            "--datadir", "--dir", dest="basedir", required=True, help="base directory of the server"
        )
        p.add_argument("--port", type=int, default=13306)
        p.add_argument("--host", default="127.0.0.1")
        if name == "start":
            p.add_argument(
                "--database", action="append", default=[], help="create this database (repeatable)"
            )
            p.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    db = MariaDB.managed_in(args.basedir, port=args.port, host=args.host, die_with_parent=False)
    if args.command == "start":
        if db.pid is None:
            db.start(timeout=args.timeout, detach=True)
            print(f"mariadb started: {db.host}:{db.port} pid {db.pid} datadir {db.datadir}")
        else:
            print(f"mariadb already running: pid {db.pid}")
        for name in args.database:
            db.ensure_database(name)
        return 0
    if args.command == "stop":
        pid = db.pid
        db.stop()
        print(f"mariadb stopped (pid {pid})" if pid else "mariadb was not running")
        return 0
    pid = db.pid
    print(f"running, pid {pid}" if pid else "not running")
    return 0 if pid else 1


if __name__ == "__main__":
    sys.exit(main())
