"""The ZooKeeper registry: versioned configuration change sets, compute nodes, worker ids and states (kazoo).

`Registry` is blocking; the CLI calls it directly and the sidecar from worker threads. Its guarantees:

* **Atomic change sets.** `publish` and `rollback` write the new item versions, flip every changed item's
  ``active_version``, record the change under ``changes/{seq}`` and bump ``config_version`` in ONE ZooKeeper
  multi-op, guarded by the version of ``config_version`` read before: a reader never sees half a change, and of
  two concurrent changes exactly one commits; the other fails with a GOVERNANCE_FAILED that says so.
* **Consistent reads.** `active_items` re-reads ``config_version`` after reading the items and starts over
  when it moved, so the items returned are exactly those of the change set whose number it returns.
* **Bounded calls.** Every call waits at most ``operationTimeoutMilliseconds`` (at least 1 s) per attempt and
  makes ``maxRetries`` more attempts ``retryIntervalMilliseconds`` apart on connection loss; then it raises.
  The connection itself is retried forever in the background (the sidecar outlives a registry outage).
* **Ephemeral nodes outlive sessions.** The compute node and the worker id reservation are ephemeral; after a
  session expiry they are created again on the new session (the worker id kept when still free).
* **ACLs.** With ``digest: user:password`` every node this registry creates gets one ACL, all permissions for
  that digest user, and nothing for anyone else: a client without the credentials cannot read a config.
* **No secrets in logs.** Only node paths and numbers are logged, never item texts (which hold passwords).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    RolledBackError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.recipe.cache import TreeCache, TreeEvent
from kazoo.retry import KazooRetry
from kazoo.security import make_digest_acl

from dbmesh import __version__, errors
from dbmesh.config import ZooKeeperProps
from dbmesh.governance.layout import (
    CLUSTER_STATES,
    GLOBAL_ITEMS,
    MAX_WORKER_ID,
    NODE_STATES,
    Layout,
    database_item,
    is_item,
    item_sort_key,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Failures a retry may cure: the connection dropped or the server did not answer in time.
_TRANSIENT = (ConnectionLoss, OperationTimeoutError, SessionExpiredError, ConnectionClosedError, KazooTimeoutError)


class _PerAttemptChatter(logging.Filter):
    """kazoo logs every connection attempt ("Connecting to ...", "Connection dropped: ..."); while ZooKeeper is
    away that is a line per attempt. The registry logs each state change itself, so these go to DEBUG only."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith(("Connecting to", "Connection dropped", "Transition to CONNECTING")):
            return _kazoo_log.isEnabledFor(logging.DEBUG)
        return True


_kazoo_log = logging.getLogger("dbmesh.governance.kazoo")
_kazoo_log.addFilter(_PerAttemptChatter())


def kazoo_hosts(props: ZooKeeperProps) -> str:
    """The server list given to kazoo: each server repeated so that a silent handshake is given up quickly.

    kazoo waits for the answer to a session handshake for (session timeout / number of servers listed). A
    ZooKeeper server that is starting can accept a connection and drop its handshake without a word, which would
    leave the client waiting a whole session timeout (60 s by default) and lose the session. Listing every server
    k times bounds that wait near operationTimeoutMilliseconds (at least 2 s), which is what ShardingSphere's
    Curator client does with the same prop (its connection timeout).

    >>> kazoo_hosts(ZooKeeperProps(server_lists="a:1,b:2", time_to_live_s=8, operation_timeout_ms=500))
    'a:1,b:2,a:1,b:2'
    """
    servers = [s.strip() for s in props.server_lists.split(",") if s.strip()]
    handshake = max(props.operation_timeout_ms / 1000, 2.0)
    copies = min(max(1, math.ceil(props.time_to_live_s / (len(servers) * handshake))), 64)
    return ",".join(servers * copies)


def governance_error(detail: str) -> errors.DbMeshError:
    return errors.DbMeshError(errors.GOVERNANCE_FAILED, detail=detail)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One change set, as kept under ``changes/{seq}``; `seq` is the configuration version users see."""

    seq: int
    time: str  # ISO 8601, UTC
    author: str
    message: str
    changed: Mapping[str, int | None]  # the items this change flipped -> version now active (None: removed)
    active: Mapping[str, int]  # every active item after the change -> its version (what rollback restores)
    rollback_of: int | None = None  # the change set this one re-activated, for a rollback
    txn: str = ""  # a random id, to recognise our own commit after a connection loss

    def to_json(self) -> bytes:
        return json.dumps({"seq": self.seq, "time": self.time, "author": self.author, "message": self.message,
                           "changed": dict(self.changed), "active": dict(self.active),
                           "rollback_of": self.rollback_of, "txn": self.txn}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, seq: int, data: bytes) -> ChangeRecord:
        try:
            raw = json.loads(data.decode())
            return cls(seq=seq, time=str(raw.get("time", "")), author=str(raw.get("author", "")),
                       message=str(raw.get("message", "")),
                       changed={str(k): (None if v is None else int(v)) for k, v in raw.get("changed", {}).items()},
                       active={str(k): int(v) for k, v in raw.get("active", {}).items()},
                       rollback_of=raw.get("rollback_of"), txn=str(raw.get("txn", "")))
        except (ValueError, AttributeError, TypeError):
            raise governance_error(f"change record {seq} is not valid JSON of a change set") from None

    def summary(self) -> str:
        """The items and versions this change flipped, e.g. ``props v2, metadata/db removed``."""
        if not self.changed:
            return "(nothing)"
        return ", ".join(f"{key} removed" if v is None else f"{key} v{v}"
                         for key, v in sorted(self.changed.items(), key=lambda kv: item_sort_key(kv[0])))


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What a publish or rollback did: the configuration version now current and the items it flipped."""

    seq: int
    changed: tuple[str, ...] = ()  # items added or given a new active version
    removed: tuple[str, ...] = ()

    @property
    def no_change(self) -> bool:
        return not self.changed and not self.removed


@dataclass(frozen=True, slots=True)
class ComputeNode:
    """A running dbmesh as the registry knows it: what it reports (ephemeral node) and its operator state."""

    id: str
    address: str
    version: str = __version__
    labels: tuple[str, ...] = ()
    state: str = "OK"  # operator-set: OK | DISABLED (status/{id}); not part of the ephemeral node's data
    config_version: int = 0  # the change set it applied last
    error: str | None = None  # why the newest change set it saw could not be applied
    worker_id: int | None = None
    started_at: str = field(default_factory=_now)

    def to_json(self) -> bytes:
        return json.dumps({"id": self.id, "address": self.address, "version": self.version,
                           "labels": list(self.labels), "config_version": self.config_version,
                           "error": self.error, "worker_id": self.worker_id, "started_at": self.started_at},
                          sort_keys=True).encode()

    @classmethod
    def from_json(cls, node_id: str, data: bytes, state: str = "OK") -> ComputeNode:
        try:
            raw = json.loads(data.decode()) if data else {}
            if not isinstance(raw, dict):
                raise ValueError("not an object")
        except ValueError:
            return cls(id=node_id, address="?", version="?", state=state, error="unreadable node data")
        worker = raw.get("worker_id")
        return cls(id=node_id, address=str(raw.get("address", "")), version=str(raw.get("version", "")),
                   labels=tuple(str(x) for x in raw.get("labels", ())), state=state,
                   config_version=int(raw.get("config_version", 0) or 0),
                   error=None if raw.get("error") is None else str(raw["error"]),
                   worker_id=None if worker is None else int(worker), started_at=str(raw.get("started_at", "")))


def _as_int(data: bytes | None, default: int = 0) -> int:
    text = (data or b"").decode().strip()
    return int(text) if text.isascii() and text.isdigit() else default


# --------------------------------------------------------------------------------------------- registry


class Registry:
    """A kazoo client bound to one namespace of the ZooKeeper registry (see `dbmesh.governance.layout`)."""

    def __init__(self, props: ZooKeeperProps) -> None:
        self.props = props
        self.layout = Layout(props.namespace)
        interval = props.retry_interval_ms / 1000
        self._retry_interval = interval
        self._call_timeout = max(props.operation_timeout_ms / 1000, 1.0)
        self._acl: list[Any] | None = None
        auth: list[tuple[str, str]] = []
        if props.digest:
            user, sep, password = props.digest.partition(":")
            if not sep or not user:
                raise governance_error("the digest must be 'user:password'")
            self._acl = [make_digest_acl(user, password, all=True)]
            auth = [("digest", props.digest)]
        # The connection is retried forever: a sidecar must find the registry again after any outage. Each
        # call is bounded instead (see `_call`).
        connection_retry = KazooRetry(max_tries=-1, delay=max(interval, 0.05), backoff=2, max_jitter=0.2,
                                      max_delay=max(interval * max(props.max_retries, 1), 0.1))
        self._client = KazooClient(hosts=kazoo_hosts(props), timeout=float(props.time_to_live_s),
                                   connection_retry=connection_retry, command_retry={"max_tries": 0},
                                   auth_data=auth, default_acl=self._acl, logger=_kazoo_log)
        self._connected = threading.Event()
        self._lock = threading.RLock()
        self._expired = False
        self._skeleton_done = False
        self._closed = False
        self._node: ComputeNode | None = None
        self._worker_id: int | None = None
        self._state_listeners: list[Callable[[str], None]] = []
        self._worker_listeners: list[Callable[[int], None]] = []
        self._caches: list[TreeCache] = []
        self._client.add_listener(self._on_state)

    # -- connection -------------------------------------------------------------------------------

    @property
    def client(self) -> KazooClient:
        """The underlying kazoo client (tests use it to expire sessions)."""
        return self._client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self, timeout: float | None = None) -> None:
        """Connect, waiting at most `timeout` seconds (default: retryInterval x maxRetries, at least 2 s);
        raise GOVERNANCE_FAILED (and stop connecting) when ZooKeeper does not answer in time."""
        self.start_background()
        wait = timeout if timeout is not None else max(self._retry_interval * self.props.max_retries, 2.0)
        if not self.wait_connected(wait):
            self.stop()
            raise governance_error(f"cannot reach ZooKeeper at {self.props.server_lists} within {wait:g} s")

    def start_background(self) -> None:
        """Start connecting and return at once; the client keeps trying until `stop`."""
        self._closed = False
        self._client.start_async()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Close the session (its ephemeral nodes go at once) and the client."""
        with self._lock:
            self._closed = True
            self._node = None
            self._worker_id = None
            caches, self._caches = self._caches, []
        for cache in caches:
            cache.close()
        try:
            self._client.stop()
            self._client.close()
        except KazooException as exc:  # already stopped, or the connection died under us
            log.debug("registry stop: %s", type(exc).__name__)
        self._connected.clear()

    def add_state_listener(self, listener: Callable[[str], None]) -> None:
        """`listener(state)` on every connection change: "CONNECTED", "SUSPENDED" (connection lost, session may
        survive) or "LOST" (session expired or closed). Called on kazoo's thread; it must not block."""
        self._state_listeners.append(listener)

    def add_worker_id_listener(self, listener: Callable[[int], None]) -> None:
        """`listener(worker_id)` when a re-reservation after a session expiry had to take another worker id."""
        self._worker_listeners.append(listener)

    def _on_state(self, state: str) -> None:
        # kazoo's connection thread: record and hand off, never block here.
        if state == KazooState.CONNECTED:
            self._connected.set()
            if self._expired and not self._closed:
                self._expired = False
                self._client.handler.spawn(self._restore_ephemerals)
        else:
            self._connected.clear()
            if state == KazooState.LOST:
                self._expired = True
        if state == KazooState.CONNECTED:
            log.info("ZooKeeper registry %s: connected", self.layout.root)
        elif state == KazooState.SUSPENDED:
            log.warning("ZooKeeper registry %s: connection lost, reconnecting to %s", self.layout.root,
                        self.props.server_lists)
        elif not self._closed:
            log.warning("ZooKeeper registry %s: session expired (its ephemeral nodes are gone); a new one follows",
                        self.layout.root)
        for listener in list(self._state_listeners):
            try:
                listener(str(state))
            except Exception:
                log.exception("registry state listener failed")

    # -- bounded calls ----------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run `fn` (kazoo async calls waited with `_wait`), retrying transient failures maxRetries times."""
        attempts = self.props.max_retries + 1
        last: BaseException | None = None
        for attempt in range(attempts):
            if self._closed:
                raise governance_error(f"{what}: the registry client is stopped")
            try:
                return fn()
            except _TRANSIENT as exc:
                last = exc
                if attempt + 1 < attempts:
                    # Wait for a reconnection (another server of the ensemble) rather than a fixed time.
                    self._connected.wait(max(self._retry_interval, self._call_timeout))
            except NoAuthError:
                raise governance_error(f"{what}: not authorised for {self.layout.root} (check the digest in "
                                       "mode.repository.props)") from None
            except KazooException as exc:  # the registry refused the call: say which call and how
                raise governance_error(f"{what}: ZooKeeper refused it ({type(exc).__name__})") from None
        raise governance_error(f"{what}: ZooKeeper at {self.props.server_lists} did not answer "
                               f"({type(last).__name__}) after {attempts} attempt(s)")

    def _wait(self, async_result: Any) -> Any:
        return async_result.get(timeout=self._call_timeout)

    def _get(self, path: str) -> tuple[bytes, Any] | None:
        """(data, stat) of `path`, None when it does not exist."""
        try:
            return cast("tuple[bytes, Any]", self._wait(self._client.get_async(path)))
        except NoNodeError:
            return None

    def _children(self, path: str) -> list[str]:
        try:
            return cast("list[str]", self._wait(self._client.get_children_async(path)))
        except NoNodeError:
            return []

    def _get_many(self, paths: Sequence[str]) -> list[tuple[bytes, Any] | None]:
        """`_get` of every path, sent together (one round trip's latency, not one per path)."""
        pending = [self._client.get_async(path) for path in paths]
        out: list[tuple[bytes, Any] | None] = []
        for result in pending:
            try:
                out.append(cast("tuple[bytes, Any]", self._wait(result)))
            except NoNodeError:
                out.append(None)
        return out

    def _exists(self, path: str) -> bool:
        return self._wait(self._client.exists_async(path)) is not None

    def _ensure(self, path: str) -> None:
        if self._exists(path):
            return
        parent = path.rsplit("/", 1)[0]
        if parent:
            self._ensure(parent)
        try:
            self._wait(self._client.create_async(path, b"", acl=self._acl))
        except NodeExistsError:
            pass

    def _ensure_skeleton(self) -> None:
        if self._skeleton_done:
            return
        for path in self.layout.skeleton():
            self._ensure(path)
        self._skeleton_done = True

    # -- configuration ----------------------------------------------------------------------------

    def is_empty(self) -> bool:
        """True when no configuration was ever published in this namespace."""
        return self._call("read the configuration version", lambda: not self._exists(self.layout.config_version))

    def config_version(self) -> int:
        """The latest change-set number (0 before the first publish)."""
        def read() -> int:
            got = self._get(self.layout.config_version)
            return 0 if got is None else _as_int(got[0])
        return self._call("read the configuration version", read)

    def _read_active(self) -> tuple[int, Any, dict[str, tuple[int, str]]]:
        """(config_version, its stat or None, {item: (active version, text)}), all of one change set."""
        for _ in range(20):
            got = self._get(self.layout.config_version)
            seq, stat = (0, None) if got is None else (_as_int(got[0]), got[1])
            keys = [*GLOBAL_ITEMS, *(database_item(n) for n in sorted(self._children(self.layout.metadata))
                                      if is_item(f"metadata/{n}"))]
            actives = self._get_many([self.layout.active_version(k) for k in keys])
            versions: dict[str, int] = {}
            for key, active in zip(keys, actives, strict=True):
                if active is not None and active[0].strip():
                    versions[key] = _as_int(active[0], -1)
            texts = self._get_many([self.layout.version(k, n) for k, n in versions.items()])
            items: dict[str, tuple[int, str]] = {}
            for (key, n), text in zip(versions.items(), texts, strict=True):
                if text is None:
                    raise governance_error(f"{self.layout.active_version(key)} names version {n}, which does not exist")
                items[key] = (n, text[0].decode())
            again = self._get(self.layout.config_version)
            if (again is None and stat is None) or (again is not None and stat is not None
                                                    and again[1].mzxid == stat.mzxid):
                return seq, stat, items
        raise governance_error("the configuration kept changing while it was being read; try again")

    def active_items(self) -> tuple[int, dict[str, str]]:
        """(config_version, {item key: text}) of the active configuration, consistent with each other."""
        def read() -> tuple[int, dict[str, str]]:
            seq, _, items = self._read_active()
            return seq, {key: text for key, (_, text) in items.items()}
        return self._call("read the active configuration", read)

    def publish(self, items: Mapping[str, str], author: str, message: str = "", *,
                expected_version: int | None = None) -> PublishResult:
        """Make `items` (every item of a configuration: an active item missing here is removed) the active
        configuration in one change set. Only items whose text differs get a new version; when none differs
        nothing is written and the result has `no_change`. `expected_version` makes the publish fail unless
        it is still the current configuration version (read-modify-write callers)."""
        for key in items:
            if not is_item(key):
                raise governance_error(f"not a configuration item key: {key!r}")

        def attempt() -> PublishResult:
            self._ensure_skeleton()
            seq, stat, active = self._read_active()
            if expected_version is not None and seq != expected_version:
                raise self._conflict(seq)
            new_texts = {k: text for k, text in items.items() if k not in active or active[k][1] != text}
            removed = sorted((k for k in active if k not in items), key=item_sort_key)
            if not new_texts and not removed:
                return PublishResult(seq)
            return self._commit(seq, stat, active, new_texts, {}, removed, author, message, None)

        return self._call("publish the configuration", attempt)

    def rollback(self, seq: int, author: str, message: str | None = None) -> PublishResult:
        """A new change set that re-activates exactly the item versions that change set `seq` left active."""
        def attempt() -> PublishResult:
            self._ensure_skeleton()
            target = self._change(seq)
            current, stat, active = self._read_active()
            activate = {k: v for k, v in target.active.items() if k not in active or active[k][0] != v}
            missing = [self.layout.version(k, v) for k, v in activate.items()
                       if not self._exists(self.layout.version(k, v))]
            if missing:
                raise governance_error(f"cannot roll back to configuration version {seq}: {', '.join(missing)} "
                                       "no longer exists")
            removed = sorted((k for k in active if k not in target.active), key=item_sort_key)
            if not activate and not removed:
                return PublishResult(current)
            return self._commit(current, stat, active, {}, activate, removed, author,
                                message or f"rollback to configuration version {seq}", seq)

        return self._call(f"roll back to configuration version {seq}", attempt)

    def _conflict(self, seq: int) -> errors.DbMeshError:
        return governance_error(f"a concurrent change was published meanwhile (configuration version is now "
                                f"{seq}); nothing was written: review it (dbmesh governance diff) and try again")

    def _commit(self, seq: int, stat: Any, active: Mapping[str, tuple[int, str]], new_texts: Mapping[str, str],
                activate: Mapping[str, int], removed: Sequence[str], author: str, message: str,
                rollback_of: int | None) -> PublishResult:
        """One multi-op: new versions, flipped active_version nodes, the change record, config_version + 1."""
        layout = self.layout
        new_seq = seq + 1
        txn = self._client.transaction()
        if stat is None:
            txn.create(layout.config_version, str(new_seq).encode(), acl=self._acl)
        else:
            txn.set_data(layout.config_version, str(new_seq).encode(), version=stat.version)
        flips: dict[str, int] = {}
        for key, text in sorted(new_texts.items(), key=lambda kv: item_sort_key(kv[0])):
            for path in (layout.item(key), layout.versions(key)):
                if not self._exists(path):
                    txn.create(path, b"", acl=self._acl)
            # Versions are never rewritten: a new text always gets the next number, even after a rollback.
            numbers = [int(n) for n in self._children(layout.versions(key)) if n.isdigit()]
            flips[key] = max(numbers, default=-1) + 1
            txn.create(layout.version(key, flips[key]), text.encode(), acl=self._acl)
        flips.update(activate)
        for key, version in flips.items():
            if self._exists(layout.active_version(key)):
                txn.set_data(layout.active_version(key), str(version).encode())
            else:
                txn.create(layout.active_version(key), str(version).encode(), acl=self._acl)
        changed: dict[str, int | None] = dict(flips)
        for key in removed:
            txn.delete(layout.active_version(key))
            changed[key] = None
        after = {k: v for k, (v, _) in active.items() if k not in removed}
        after.update({k: v for k, v in changed.items() if v is not None})
        record = ChangeRecord(seq=new_seq, time=_now(), author=author, message=message, changed=changed,
                              active=dict(sorted(after.items(), key=lambda kv: item_sort_key(kv[0]))),
                              rollback_of=rollback_of, txn=uuid.uuid4().hex)
        txn.create(layout.change(new_seq), record.to_json(), acl=self._acl)
        try:
            results = self._wait(txn.commit_async())
        except _TRANSIENT:
            # The commit may have reached the server before the connection went: look for our record.
            if self._committed(record):
                return self._result(record)
            raise
        failures = [r for r in results if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
        if not failures:
            log.info("registry %s: change set %d committed (%s)", layout.root, new_seq, record.summary())
            return self._result(record)
        if any(isinstance(f, BadVersionError | NodeExistsError | NoNodeError | NotEmptyError) for f in failures):
            if self._committed(record):
                return self._result(record)
            raise self._conflict(self._current_seq())
        raise governance_error(f"the change set was refused: {type(failures[0]).__name__}")

    def _committed(self, record: ChangeRecord) -> bool:
        got = self._get(self.layout.change(record.seq))
        return got is not None and ChangeRecord.from_json(record.seq, got[0]).txn == record.txn

    def _current_seq(self) -> int:
        got = self._get(self.layout.config_version)
        return 0 if got is None else _as_int(got[0])

    @staticmethod
    def _result(record: ChangeRecord) -> PublishResult:
        keys = sorted(record.changed, key=item_sort_key)
        changed = tuple(k for k in keys if record.changed[k] is not None)
        removed = tuple(k for k in keys if record.changed[k] is None)
        return PublishResult(record.seq, changed, removed)

    def _change(self, seq: int) -> ChangeRecord:
        got = self._get(self.layout.change(seq))
        if got is None:
            raise governance_error(f"there is no configuration version {seq}")
        return ChangeRecord.from_json(seq, got[0])

    def change(self, seq: int) -> ChangeRecord:
        """The record of change set `seq`; GOVERNANCE_FAILED when there is none."""
        return self._call(f"read configuration version {seq}", lambda: self._change(seq))

    def history(self) -> list[ChangeRecord]:
        """Every change set, oldest first."""
        def read() -> list[ChangeRecord]:
            seqs = sorted(int(n) for n in self._children(self.layout.changes) if n.isdigit())
            got = self._get_many([self.layout.change(s) for s in seqs])
            return [ChangeRecord.from_json(s, g[0]) for s, g in zip(seqs, got, strict=True) if g is not None]
        return self._call("read the change history", read)

    def items_of(self, seq: int) -> dict[str, str]:
        """The item texts that change set `seq` left active (for diffs against history)."""
        def read() -> dict[str, str]:
            record = self._change(seq)
            got = self._get_many([self.layout.version(k, v) for k, v in record.active.items()])
            return {k: g[0].decode() for k, g in zip(record.active, got, strict=True) if g is not None}
        return self._call(f"read configuration version {seq}", read)

    def watch_config(self, callback: Callable[[int], None]) -> None:
        """`callback(config_version)` now, on every change, and after every reconnection (kazoo's thread)."""
        def on_data(data: bytes | None, stat: Any) -> None:
            try:
                callback(_as_int(data))
            except Exception:
                log.exception("configuration watch callback failed")

        self._client.DataWatch(self.layout.config_version, on_data)

    # -- compute nodes and worker ids -------------------------------------------------------------

    def register_node(self, node: ComputeNode) -> str:
        """Create this process's ephemeral compute node (again after every session expiry); returns its id."""
        with self._lock:
            self._node = node
        self._call("register the compute node", lambda: self._put_ephemeral(self.layout.online_node(node.id),
                                                                             node.to_json()))
        return node.id

    def update_node(self, node: ComputeNode) -> None:
        """Replace what the registered compute node reports (config version applied, last error, ...)."""
        with self._lock:
            self._node = node
        self._call("update the compute node", lambda: self._put_ephemeral(self.layout.online_node(node.id),
                                                                           node.to_json()))

    def _put_ephemeral(self, path: str, data: bytes) -> None:
        """Set `path` when this session owns it, else (re)create it as this session's ephemeral node."""
        self._ensure_skeleton()
        got = self._get(path)
        if got is not None:
            if got[1].ephemeralOwner == self._session_id():
                self._wait(self._client.set_async(path, data, got[1].version))
                return
            # Left by an expired session of ours (the server deletes it soon); take it over now.
            try:
                self._wait(self._client.delete_async(path, got[1].version))
            except NoNodeError:
                pass
        self._wait(self._client.create_async(path, data, acl=self._acl, ephemeral=True))

    def _session_id(self) -> int | None:
        client_id = self._client.client_id
        return int(client_id[0]) if client_id else None

    def allocate_worker_id(self, node_id: str, preferred: int | None = None) -> int:
        """Reserve the lowest free Snowflake worker id (0..1023), or `preferred` when it is free, as an
        ephemeral node owned by this session: two live nodes never hold the same id."""
        def attempt() -> int:
            self._ensure_skeleton()
            with self._lock:
                held = self._worker_id
            if held is not None:  # already reserved on this session (a retried join): keep it
                got = self._get(self.layout.worker_id(held))
                if got is not None and got[1].ephemeralOwner == self._session_id():
                    return held
            for _ in range(10):
                taken = {int(n) for n in self._children(self.layout.worker_ids) if n.isdigit()}
                free = [n for n in range(MAX_WORKER_ID + 1) if n not in taken]
                if preferred is not None and preferred in free:
                    free.insert(0, preferred)
                if not free:
                    raise governance_error(f"all {MAX_WORKER_ID + 1} Snowflake worker ids are reserved")
                for n in free[:16]:
                    try:
                        self._wait(self._client.create_async(self.layout.worker_id(n), node_id.encode(),
                                                             acl=self._acl, ephemeral=True))
                    except NodeExistsError:
                        continue  # another node took it since we listed: try the next one
                    with self._lock:
                        self._worker_id = n
                    return n
            raise governance_error("could not reserve a worker id: every free one was taken concurrently")
        return self._call("reserve a worker id", attempt)

    def _restore_ephemerals(self) -> None:
        """After a session expiry: the compute node and worker id again, on the new session."""
        with self._lock:
            node, worker = self._node, self._worker_id
        try:
            if worker is not None and node is not None:
                new_worker = self.allocate_worker_id(node.id, preferred=worker)
                if new_worker != worker:
                    node = replace(node, worker_id=new_worker)
                    for listener in list(self._worker_listeners):
                        listener(new_worker)
            if node is not None:
                self.register_node(node)
            log.info("registry %s: compute node re-registered after session expiry", self.layout.root)
        except Exception as exc:  # the next expiry/reconnect tries again; nothing else can be done here
            log.warning("registry %s: re-registering after session expiry failed: %s", self.layout.root, exc)
            self._expired = True

    def compute_nodes(self) -> list[ComputeNode]:
        """Every online compute node with its operator state, by id."""
        def read() -> list[ComputeNode]:
            ids = sorted(self._children(self.layout.online))
            data = self._get_many([self.layout.online_node(i) for i in ids])
            states = self._get_many([self.layout.node_status(i) for i in ids])
            out = []
            for node_id, got, state in zip(ids, data, states, strict=True):
                if got is not None:
                    out.append(ComputeNode.from_json(node_id, got[0], _state_of(state)))
            return out
        return self._call("list the compute nodes", read)

    def watch_nodes(self, callback: Callable[[list[ComputeNode]], None]) -> None:
        """`callback(nodes)` with every online node whenever one comes, goes, reports or changes state (kazoo's
        thread; from a local cache of the ``nodes`` subtree, no extra reads)."""
        self._call("watch the compute nodes", lambda: self._ensure_skeleton())
        cache = TreeCache(self._client, self.layout.nodes)
        initialized = threading.Event()

        def on_event(event: Any) -> None:
            if event.event_type == TreeEvent.INITIALIZED:
                initialized.set()
            elif event.event_type not in (TreeEvent.NODE_ADDED, TreeEvent.NODE_UPDATED, TreeEvent.NODE_REMOVED):
                return
            if not initialized.is_set():
                return
            try:
                callback(self._nodes_from(cache))
            except Exception:
                log.exception("compute node watch callback failed")

        cache.listen(on_event)
        with self._lock:
            self._caches.append(cache)
        cache.start()

    def _nodes_from(self, cache: TreeCache) -> list[ComputeNode]:
        out = []
        for node_id in sorted(cache.get_children(self.layout.online) or ()):
            data = cache.get_data(self.layout.online_node(node_id))
            if data is None:
                continue
            status = cache.get_data(self.layout.node_status(node_id))
            out.append(ComputeNode.from_json(node_id, data.data, _state_of((status.data, None) if status else None)))
        return out

    # -- states -----------------------------------------------------------------------------------

    def set_node_state(self, node_id: str, state: str) -> None:
        """Set an online compute node's operator state (OK | DISABLED); GOVERNANCE_FAILED for an unknown node."""
        state = state.upper()
        if state not in NODE_STATES:
            raise governance_error(f"compute node state must be one of {', '.join(NODE_STATES)}, got {state!r}")

        def write() -> None:
            self._ensure_skeleton()
            if not self._exists(self.layout.online_node(node_id)):
                raise governance_error(f"no compute node {node_id!r} is online")
            self._put(self.layout.node_status(node_id), state.encode())
        self._call(f"set compute node {node_id} {state}", write)

    def node_state(self, node_id: str) -> str:
        return self._call("read a compute node state", lambda: _state_of(self._get(self.layout.node_status(node_id))))

    def set_cluster_state(self, state: str) -> None:
        """Set the cluster state every compute node applies: OK | READ_ONLY | UNAVAILABLE."""
        state = state.upper()
        if state not in CLUSTER_STATES:
            raise governance_error(f"cluster state must be one of {', '.join(CLUSTER_STATES)}, got {state!r}")

        def write() -> None:
            self._ensure_skeleton()
            self._put(self.layout.cluster_state, state.encode())
        self._call(f"set the cluster state {state}", write)

    def cluster_state(self) -> str:
        return self._call("read the cluster state", lambda: _state_of(self._get(self.layout.cluster_state)))

    def _put(self, path: str, data: bytes) -> None:
        try:
            self._wait(self._client.set_async(path, data))
        except NoNodeError:
            try:
                self._wait(self._client.create_async(path, data, acl=self._acl))
            except NodeExistsError:
                self._wait(self._client.set_async(path, data))

    def watch_states(self, node_id: str, callback: Callable[[str, str], None]) -> None:
        """`callback(cluster_state, node_state)` now and whenever either changes (kazoo's thread)."""
        values = {"cluster": "OK", "node": "OK"}
        lock = threading.Lock()

        def watcher(which: str) -> Callable[[bytes | None, Any], None]:
            def on_data(data: bytes | None, stat: Any) -> None:
                with lock:
                    values[which] = _state_of((data, stat) if data is not None else None)
                    cluster, node = values["cluster"], values["node"]
                try:
                    callback(cluster, node)
                except Exception:
                    log.exception("state watch callback failed")
            return on_data

        self._client.DataWatch(self.layout.cluster_state, watcher("cluster"))
        self._client.DataWatch(self.layout.node_status(node_id), watcher("node"))


def _state_of(got: tuple[bytes, Any] | None) -> str:
    """A state node's value; OK when the node is absent or empty."""
    if got is None:
        return "OK"
    return got[0].decode().strip().upper() or "OK"


def default_author() -> str:
    """$USER@host, the author of a change when none is given."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment or the password database
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def new_node_id() -> str:
    """A compute node id: host name, process id and a random suffix (unique even across pid reuse)."""
    host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


__all__ = ["ChangeRecord", "ComputeNode", "PublishResult", "Registry", "default_author", "governance_error",
           "new_node_id"]
