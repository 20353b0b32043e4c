"""Throwaway PostgreSQL 15 servers for tests (the PostgreSQL twin of ``tests.support.mariadb``).

A managed server is a real ``postgres`` process with its own data directory, unix-socket directory and
TCP port, so tests may kill it (SIGKILL, as a crash) and start it again on the same data and port. When
the environment names a server (``DBMESH_TEST_PG_HOST`` + ``_PORT``, ``_USER``, ``_PASSWORD``), that
server is used as it is and cannot be killed or restarted: ``is_managed`` is False and those methods
raise ``UnmanagedServerError``.

PostgreSQL refuses to run as root. When we are root, the data directory is owned by the ``postgres``
OS user, ``initdb`` runs through ``runuser -u postgres --``, and the server itself is started as our
direct child with its uid/gid switched to ``postgres`` between fork and exec. It is deliberately not
started through ``pg_ctl`` (which daemonizes the postmaster): as our child it gets the same
parent-death signal as the managed MariaDB, so a killed pytest leaves no server behind, and ``kill()``
has the postmaster's pid without reading ``postmaster.pid``.

Authentication of a managed server (written by ``install()``, before the first start)::

    local all all                 trust           # the unix socket: bootstrap only
    host  all md5user 127.0.0.1/32 md5            # md5user's password is stored as an MD5 hash
    host  all all     127.0.0.1/32 scram-sha-256  # everyone else over TCP: SCRAM

``postgres`` has the password ``pgpw`` (stored as SCRAM, so a TCP login is a SCRAM exchange), role
``md5user``/``md5pw`` is created with ``password_encryption = 'md5'`` so its login is an MD5 exchange,
and database ``dbmesh_pg`` exists, owned by ``postgres``.

Layout of a managed server's base directory::

    <base>/data          PGDATA (initdb)
    <base>/sock          unix socket directory (-k)
    <base>/postgres.log  the server's log (stderr), quoted when start-up fails
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .mariadb import UnmanagedServerError
from .ports import free_port

ENV_HOST = "DBMESH_TEST_PG_HOST"
ENV_PORT = "DBMESH_TEST_PG_PORT"
ENV_USER = "DBMESH_TEST_PG_USER"
ENV_PASSWORD = "DBMESH_TEST_PG_PASSWORD"

PG_UNMANAGED_REASON = (
    f"PostgreSQL comes from ${ENV_HOST} (an external server the tests do not manage): "
    "kill/restart are unavailable"
)

PG_BIN = Path(os.environ.get("DBMESH_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "postgres"

DEFAULT_PASSWORD = "pgpw"
PG_DATABASE = "dbmesh_pg"
MD5_USER = "md5user"
MD5_PASSWORD = "md5pw"

# Server settings for a fast, disposable server: no fsync (an OS crash could lose data; a process
# crash cannot, since written WAL is in the OS page cache). synchronous_commit stays ON on purpose:
# with it off a commit returns before its WAL leaves the server's shared memory, and a kill() within
# wal_writer_delay (200 ms) of a COMMIT loses that transaction, which crash tests must be able to rely
# on (the managed MariaDB likewise writes its redo log to the OS at every commit). With fsync=off a
# synchronous commit costs a write(), not a flush, so nothing measurable is lost.
SERVER_SETTINGS: tuple[tuple[str, str], ...] = (
    ("fsync", "off"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "off"),
    ("max_connections", "300"),
    ("shared_buffers", "128MB"),
    ("logging_collector", "off"),
    ("log_min_messages", "warning"),
    ("unix_socket_permissions", "0777"),
)

PG_HBA = """\
# Written by tests/support/postgres.py; first matching line wins.
local all all trust
host  all {md5_user} 127.0.0.1/32 md5
host  all {md5_user} ::1/128 md5
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128 scram-sha-256
"""


class PostgreSQLError(RuntimeError):
    """A managed server failed to initialize, start or stop."""


def _pg_binary(name: str) -> str:
    path = PG_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise PostgreSQLError(f"{name} not found in {PG_BIN} or on PATH; install postgresql-15")


def _pg_account() -> pwd.struct_passwd | None:
    """The account the server runs as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_OS_USER)
    except KeyError as exc:
        raise PostgreSQLError(f"running as root needs the {PG_OS_USER!r} OS user (apt install postgresql)") from exc


def _demote(account: pwd.struct_passwd | None, pdeathsig: bool) -> Any:
    """A preexec_fn: become ``account`` (when given), then ask for SIGKILL when our parent dies.

    The parent-death signal is set after the credential change because Linux clears it on setuid.
    """

    def run() -> None:  # pragma: no cover - runs in the child between fork and exec
        if account is not None:
            os.setgid(account.pw_gid)
            os.setgroups([])
            os.setuid(account.pw_uid)
        if pdeathsig:
            with contextlib.suppress(Exception):
                libc = ctypes.CDLL("libc.so.6", use_errno=True)
                libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return run


class PostgreSQL:
    """A PostgreSQL server: managed (a child process of ours) or external (named by the environment)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        user: str = "postgres",
        password: str = DEFAULT_PASSWORD,
        basedir: str | os.PathLike[str] | None = None,
        managed: bool = True,
        die_with_parent: bool = True,
        settings: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.host = host
        self.port = port if port is not None else (free_port(host) if managed else 5432)
        self.user = user
        self.password = password
        self.is_managed = managed
        self.basedir = Path(basedir).resolve() if basedir is not None else None
        if managed and self.basedir is None:
            raise ValueError("a managed PostgreSQL needs a basedir")
        self.die_with_parent = die_with_parent
        self.settings = (*SERVER_SETTINGS, *settings)
        self.md5_user = MD5_USER
        self.md5_password = MD5_PASSWORD
        self._proc: subprocess.Popen[bytes] | None = None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_env(cls) -> PostgreSQL | None:
        """The server named by DBMESH_TEST_PG_HOST/_PORT/_USER/_PASSWORD, or None when unset."""
        host = os.environ.get(ENV_HOST)
        if not host:
            return None
        return cls(
            host=host,
            port=int(os.environ.get(ENV_PORT, "5432")),
            user=os.environ.get(ENV_USER, "postgres"),
            password=os.environ.get(ENV_PASSWORD, ""),
            managed=False,
        )

    @classmethod
    def managed_in(cls, basedir: str | os.PathLike[str], port: int | None = None, **kwargs: Any) -> PostgreSQL:
        """A managed server living in ``basedir`` (created on start).

        As root, every directory above ``basedir`` must be searchable by the ``postgres`` OS user;
        pytest's ``tmp_path`` is not (/tmp/pytest-of-root is 0700): use ``throwaway()`` there.
        """
        return cls(basedir=basedir, port=port, managed=True, **kwargs)

    @classmethod
    def throwaway(cls, prefix: str = "dbmesh-pg-", port: int | None = None, **kwargs: Any) -> PostgreSQL:
        """A managed server in a fresh directory under the system temp dir; ``destroy()`` removes it."""
        return cls.managed_in(tempfile.mkdtemp(prefix=prefix), port=port, **kwargs)

    # -- paths ---------------------------------------------------------------------------------

    @property
    def datadir(self) -> Path:
        assert self.basedir is not None
        return self.basedir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.basedir is not None
        return self.basedir / "sock"

    @property
    def log_path(self) -> Path:
        assert self.basedir is not None
        return self.basedir / "postgres.log"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs (ours, or a live one named by postmaster.pid)."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        if self.basedir is not None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
                os.kill(pid, 0)
                return pid
        return None

    def __repr__(self) -> str:
        kind = f"managed in {self.basedir}" if self.is_managed else "external"
        return f"<PostgreSQL {self.user}@{self.host}:{self.port} {kind}>"

    # -- lifecycle -----------------------------------------------------------------------------

    def _require_managed(self, what: str) -> None:
        if not self.is_managed:
            raise UnmanagedServerError(f"{what}: {PG_UNMANAGED_REASON}")

    def _chown(self, path: Path) -> None:
        account = _pg_account()
        if account is not None:
            os.chown(path, account.pw_uid, account.pw_gid)

    def install(self) -> bool:
        """initdb the data directory unless it exists; True when it was created now."""
        self._require_managed("install")
        if (self.datadir / "PG_VERSION").exists():
            return False
        assert self.basedir is not None
        account = _pg_account()
        if account is not None:
            for parent in self.basedir.parents:
                st = parent.stat()
                if not (st.st_mode & 0o001 or st.st_uid == account.pw_uid):
                    raise PostgreSQLError(
                        f"{parent} is not searchable by the {PG_OS_USER!r} OS user that runs the server; "
                        f"use PostgreSQL.throwaway() or a base directory outside it")
        for d in (self.basedir, self.datadir, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
            self._chown(d)
        os.chmod(self.datadir, 0o700)
        pwfile = self.basedir / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._chown(pwfile)
        cmd = [
            _pg_binary("initdb"), "-D", str(self.datadir), "-U", self.user, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
            "--no-sync",
        ]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
                                 preexec_fn=_demote(_pg_account(), False), cwd=str(self.basedir), timeout=120)
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise PostgreSQLError(f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        hba = self.datadir / "pg_hba.conf"
        hba.write_text(PG_HBA.format(md5_user=self.md5_user))
        self._chown(hba)
        return True

    def start(self, timeout: float = 60.0, detach: bool = False) -> PostgreSQL:
        """Start (or restart, after kill()/stop()) the server on the same data directory and port."""
        self._require_managed("start")
        if self.pid is not None:
            raise PostgreSQLError(f"{self!r} is already running (pid {self.pid})")
        created = self.install()
        self._wait_orphans_gone(30.0)
        cmd = [
            _pg_binary("postgres"), "-D", str(self.datadir), "-p", str(self.port), "-k", str(self.socket_dir),
            "-c", f"listen_addresses={self.host}",
        ]
        for name, value in self.settings:
            cmd += ["-c", f"{name}={value}"]
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        use_pdeathsig = (
            not detach and self.die_with_parent and threading.current_thread() is threading.main_thread()
        )
        with open(self.log_path, "ab") as log:
            self._chown(self.log_path)
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(self.datadir),
                start_new_session=detach, preexec_fn=_demote(_pg_account(), use_pdeathsig),
            )
        self._wait_ready(timeout, log_offset)
        if created:
            self._bootstrap()
        return self

    def _wait_orphans_gone(self, timeout: float) -> None:
        """After a SIGKILL of the postmaster, its backends exit on their own once they notice; a new
        postmaster refuses to start while any of them still holds the old shared memory. They run with
        the data directory as their working directory, which is how they are found."""
        deadline = time.monotonic() + timeout
        target = str(self.datadir)
        while time.monotonic() < deadline:
            alive = []
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    with contextlib.suppress(OSError):
                        if os.readlink(entry / "cwd") == target:
                            alive.append(int(entry.name))
            if not alive:
                return
            time.sleep(0.05)

    def _wait_ready(self, timeout: float, log_offset: int) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise PostgreSQLError(
                    f"postgres exited with {self._proc.returncode} during start-up; log:\n" + self._log_tail(log_offset)
                )
            try:
                self.connect("postgres", connect_timeout=2).close()
                return
            except Exception as exc:  # psycopg.OperationalError until the socket is up and recovery is done
                last_error = exc
                time.sleep(0.05)
        raise PostgreSQLError(f"postgres not ready after {timeout}s ({last_error}); log:\n" + self._log_tail(log_offset))

    def _bootstrap(self) -> None:
        """Roles and the test database, once after initdb."""
        self.execute("SET password_encryption = 'md5'; "
                     f"CREATE ROLE {self.md5_user} LOGIN PASSWORD '{self.md5_password}'")
        self.ensure_database(PG_DATABASE)
        self.execute(f"GRANT ALL ON SCHEMA public TO {self.md5_user}", database=PG_DATABASE)

    def _log_tail(self, offset: int = 0, limit: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")[-limit:]
        except OSError:
            return "(no log)"

    def log_text(self) -> str:
        return self._log_tail(0, 1 << 30)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; start() recovers it."""
        self._require_managed("kill")
        pid = self.pid
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        self._reap(pid, 30.0)

    def stop(self, timeout: float = 60.0) -> None:
        """Fast shutdown (SIGINT: abort sessions, checkpoint), SIGKILL after ``timeout``."""
        self._require_managed("stop")
        pid = self.pid
        if pid is None:
            return
        os.kill(pid, signal.SIGINT)
        if not self._reap(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            self._reap(pid, 10.0)

    def _reap(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            self._proc = None
            return True
        deadline = time.monotonic() + timeout
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

    def dsn(self, database: str = PG_DATABASE, **extra: Any) -> str:
        """A libpq connection string (TCP, password login) for ``database``."""
        params: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user,
                                  "password": self.password, "dbname": database, "sslmode": "disable"}
        params.update(extra)
        return " ".join(f"{k}={_quote(str(v))}" for k, v in params.items())

    def url(self, database: str = PG_DATABASE) -> str:
        """The JDBC-style URL dbmesh configs use for this server."""
        return f"jdbc:postgresql://{self.host}:{self.port}/{database}"

    def connect(self, database: str = PG_DATABASE, **kwargs: Any) -> Any:
        """A new autocommit ``psycopg.Connection`` (TCP, so a SCRAM login)."""
        import psycopg

        params: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user,
                                  "password": self.password, "dbname": database, "autocommit": True,
                                  "connect_timeout": 10, "sslmode": "disable"}
        params.update(kwargs)
        return psycopg.connect(**params)

    def execute(self, sql: str, database: str | None = None, params: Any = None) -> list[tuple[Any, ...]]:
        """Run SQL on a fresh autocommit connection; returns the last statement's rows (empty for none)."""
        conn = self.connect(database or "postgres")
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def ensure_database(self, name: str) -> None:
        if not self.execute("SELECT 1 FROM pg_database WHERE datname = %s", params=(name,)):
            self.execute(f'CREATE DATABASE "{name}" OWNER "{self.user}"')


def _quote(value: str) -> str:
    """libpq conninfo quoting: single quotes when the value is empty or has spaces, quotes or backslashes."""
    if value and not any(c in value for c in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
