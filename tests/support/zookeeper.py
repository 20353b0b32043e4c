"""Throwaway ZooKeeper servers for tests: one standalone node or a quorum of three on loopback ports.

Each node is a real ``QuorumPeerMain`` JVM with its own ``zoo.cfg``, ``myid`` and data directory, so a
test may stop one node (the others keep a quorum), stop them all, and start them again on the same data
and ports; the registry's contents survive a restart. Ports are free loopback ports (client, quorum and
election port per node); the admin HTTP server is off and the four-letter words are whitelisted, which is
how readiness is checked (``srvr`` answers with a ``Mode:`` line only once a node serves requests).

Layout of the ensemble's base directory::

    <base>/node<i>/zoo.cfg     the node's configuration (written once, reused by restarts)
    <base>/node<i>/data/myid   its server id (i + 1)
    <base>/node<i>/server.log  its log (slf4j-simple on stderr)

Usage::

    with ZooKeeperEnsemble(size=3) as zk:
        client = KazooClient(hosts=zk.server_lists)
        zk.stop_node(0)
        ...

The JVM and jars come from the OS packages (Debian's ``zookeeper``, installed by scripts/install.sh);
``DBMESH_TEST_ZK_CLASSPATH`` overrides the class path and ``DBMESH_TEST_ZK_LOG_LEVEL`` the log level.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .ports import free_port

ENV_CLASSPATH = "DBMESH_TEST_ZK_CLASSPATH"
ENV_LOG_LEVEL = "DBMESH_TEST_ZK_LOG_LEVEL"
JARS = ("/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"

# A throwaway server starts fast and small: one GC thread, C1 only, class-data sharing when available.
JVM_OPTIONS: tuple[str, ...] = (
    "-Xms32m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
    "-XX:-UsePerfData",
    "-Djava.net.preferIPv4Stack=true",
    "-Dzookeeper.admin.enableServer=false",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
)

# A short tick keeps elections and session expiry quick; session timeouts may go down to 1 s so tests
# can expire sessions without waiting long. Durability of a throwaway server does not matter:
# forceSync=no skips fsync (a SIGKILLed JVM still leaves its writes in the page cache).
TICK_MS = 500


class ZooKeeperError(RuntimeError):
    """A node failed to start or stop."""


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL the JVM when the test process dies, so a killed pytest leaves no server behind."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _classpath() -> str:
    override = os.environ.get(ENV_CLASSPATH)
    if override:
        return override
    if not Path(JARS[0]).is_file():
        raise ZooKeeperError(f"{JARS[0]} not found; install the zookeeper package (scripts/install.sh does)")
    return ":".join(jar for jar in JARS if Path(jar).is_file())


def four_letter_word(host: str, port: int, word: str, timeout: float = 1.0) -> str:
    """Send a ZooKeeper four-letter command ("ruok", "srvr", ...) and return the whole answer ('' on error)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(word.encode())
            chunks: list[bytes] = []
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError:
        return ""
    return b"".join(chunks).decode(errors="replace")


@dataclass
class ZooKeeperNode:
    """One server of the ensemble: its id, ports, files and (while running) its process."""

    myid: int
    client_port: int
    quorum_port: int
    election_port: int
    basedir: Path
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def config_file(self) -> Path:
        return self.basedir / "zoo.cfg"

    @property
    def log_file(self) -> Path:
        return self.basedir / "server.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def mode(self) -> str | None:
        """'standalone', 'leader' or 'follower' once the node serves requests, else None."""
        for line in four_letter_word(self.host, self.client_port, "srvr").splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no log)"


class ZooKeeperEnsemble:
    """``size`` ZooKeeper servers (1: standalone, 3: a quorum) on free loopback ports, in a temp directory.

    A context manager; ``start_all()``/``destroy()`` do the same by hand (pytest fixtures). ``destroy``
    kills every node and removes the directory, whatever state a failed test left the ensemble in.
    """

    def __init__(self, size: int = 1, basedir: Path | str | None = None, *, start_timeout: float = 60.0) -> None:
        if size < 1:
            raise ValueError("an ensemble has at least one node")
        self.size = size
        self.start_timeout = start_timeout
        self._own_dir = basedir is None
        self.basedir = Path(basedir) if basedir is not None else Path(tempfile.mkdtemp(prefix="dbmesh-zk-"))
        self.nodes: list[ZooKeeperNode] = []
        for i in range(size):
            node = ZooKeeperNode(myid=i + 1, client_port=free_port(), quorum_port=free_port(),
                                 election_port=free_port(), basedir=self.basedir / f"node{i}")
            self.nodes.append(node)
        for node in self.nodes:
            self._write_config(node)

    # -- configuration -------------------------------------------------------------------------

    def _write_config(self, node: ZooKeeperNode) -> None:
        data = node.basedir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{node.myid}\n")
        lines = [
            f"tickTime={TICK_MS}",
            "initLimit=20",
            "syncLimit=10",
            f"dataDir={data}",
            f"clientPort={node.client_port}",
            f"clientPortAddress={node.host}",
            "minSessionTimeout=1000",
            "maxSessionTimeout=120000",
            "maxClientCnxns=0",
            "forceSync=no",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "reconfigEnabled=false",
            "autopurge.purgeInterval=0",
        ]
        if self.size > 1:
            lines.append("standaloneEnabled=false")
            lines.extend(f"server.{n.myid}={n.host}:{n.quorum_port}:{n.election_port}" for n in self.nodes)
        node.config_file.write_text("\n".join(lines) + "\n")

    @property
    def server_lists(self) -> str:
        """Every node's client address, "host:port,host:port" (ShardingSphere's server-lists)."""
        return ",".join(node.address for node in self.nodes)

    # -- lifecycle -----------------------------------------------------------------------------

    def _spawn(self, node: ZooKeeperNode) -> None:
        if node.running:
            raise ZooKeeperError(f"node {node.myid} is already running (pid {node.proc.pid if node.proc else '?'})")
        level = os.environ.get(ENV_LOG_LEVEL, "warn")
        cmd = [shutil.which("java") or "java", *JVM_OPTIONS, f"-Dorg.slf4j.simpleLogger.defaultLogLevel={level}",
               "-cp", _classpath(), MAIN_CLASS, str(node.config_file)]
        # PR_SET_PDEATHSIG fires when the forking *thread* ends, so only the main thread may ask for it.
        use_pdeathsig = threading.current_thread() is threading.main_thread()
        with open(node.log_file, "ab") as log:  # the child keeps its own copy of the descriptor
            node.proc = subprocess.Popen(cmd, cwd=node.basedir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         preexec_fn=_set_pdeathsig if use_pdeathsig else None)

    def _wait_serving(self, nodes: list[ZooKeeperNode], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(nodes)
        while pending:
            for node in list(pending):
                if not node.running:
                    code = node.proc.returncode if node.proc else None
                    raise ZooKeeperError(f"ZooKeeper node {node.myid} exited ({code}) during start-up; log:\n"
                                         + node.log_tail())
                if node.mode() is not None:
                    pending.remove(node)
            if not pending:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- node {n.myid}:\n{n.log_tail(2000)}" for n in pending)
                raise ZooKeeperError(f"ZooKeeper node(s) {[n.myid for n in pending]} not serving after "
                                     f"{timeout}s; logs:\n{tails}")
            time.sleep(0.05)

    def start_node(self, i: int, wait: bool = True) -> None:
        """Start node ``i`` (0-based) on its data and ports; wait until it serves (it needs a quorum)."""
        node = self.nodes[i]
        self._spawn(node)
        if wait:
            self._wait_serving([node], self.start_timeout)

    def stop_node(self, i: int, kill: bool = False) -> None:
        """Stop node ``i``: SIGTERM (SIGKILL with ``kill``, or when it does not exit within 10 s)."""
        node = self.nodes[i]
        proc = node.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(10.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10.0)
        node.proc = None

    def start_all(self) -> ZooKeeperEnsemble:
        """Start every node that is not running and wait until all of them serve."""
        stopped = [node for node in self.nodes if not node.running]
        for node in stopped:
            self._spawn(node)
        self._wait_serving(stopped, self.start_timeout)
        return self

    def stop_all(self, kill: bool = False) -> None:
        for i in range(self.size):
            self.stop_node(i, kill=kill)

    def destroy(self) -> None:
        """Kill every node and remove the ensemble's directory (when this object made it)."""
        for i in range(self.size):
            with contextlib.suppress(Exception):
                self.stop_node(i, kill=True)
        if self._own_dir:
            shutil.rmtree(self.basedir, ignore_errors=True)

    def __enter__(self) -> ZooKeeperEnsemble:
        try:
            return self.start_all()
        except BaseException:
            self.destroy()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.destroy()

    def __repr__(self) -> str:
        running = sum(node.running for node in self.nodes)
        return f"<ZooKeeperEnsemble size={self.size} running={running} {self.server_lists}>"
