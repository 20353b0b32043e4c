"""The statement gate: compute-node and cluster states, rate limits and circuit breakers, checked before a statement runs."""

from __future__ import annotations

import asyncio
import contextlib
import re
from time import perf_counter
from typing import TYPE_CHECKING, Literal

from sqlglot import exp

from dbmesh import errors
from dbmesh.observe.digest import digest_hash

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from dbmesh.kernel.plan import Plan
    from dbmesh.server.runtime import Runtime
    from dbmesh.traffic.governor import Probe
    from dbmesh.traffic.limiter import Admission

Dialect = Literal["mysql", "postgres"]

# Statement types (as the classifiers name them) that change data or schema: refused while the cluster is READ_ONLY.
# CALL/DO may write through a procedure, so they count as writes; a COPY is judged by its direction.
WRITE_TYPES = frozenset({"insert", "update", "delete", "replace", "ddl", "load", "dcl", "call", "xa"})
_COPY_FROM = re.compile(r"\bFROM\s+(?:STDIN|'|PROGRAM\b)", re.I)

# Governance DistSQL always passes the gate: an operator must be able to re-enable a disabled node or set the
# cluster back to OK through the very node they are connected to.
_GOVERNANCE = re.compile(
    r"\s*(?:/\*.*?\*/\s*)*(?:"
    r"SHOW\s+(?:COMPUTE\s+NODES?|DIST\s+VARIABLES?|CLUSTER\s+STATE|CIRCUIT\s+BREAKERS|RATE\s+LIMITS|"
    r"CONFIG(?:URATION)?\s+VERSIONS?)"
    r"|(?:ENABLE|DISABLE)\s+COMPUTE\s+NODE|SET\s+DIST\s+VARIABLE|SET\s+CLUSTER\s+STATE|(?:UN)?LOCK\s+CLUSTER\b"
    r")", re.I | re.S)


def is_governance_statement(sql: str) -> bool:
    """True for the governance DistSQL statements dbmesh answers itself on every logical database.

    >>> is_governance_statement("show compute nodes"), is_governance_statement("SHOW TABLES")
    (True, False)
    """
    return _GOVERNANCE.match(sql) is not None


# The first three letters of every governance statement's first word (upper case): ordinary statements such as
# SELECT are told apart from the raw bytes without decoding them.
_GOVERNANCE_HEADS = frozenset({b"SHO", b"SET", b"ENA", b"DIS", b"LOC", b"UNL"})


def is_governance_text(text: bytes) -> bool:
    """`is_governance_statement` for a statement's raw UTF-8 text (NUL-terminated or not), cheap for the rest.

    >>> is_governance_text(b"SELECT 1"), is_governance_text(b"show compute nodes"), is_governance_text(b" SET DIST VARIABLE a = 1")
    (False, True, True)
    """
    head = text[:3].upper()
    if head not in _GOVERNANCE_HEADS and not head[:1].isspace() and head[:2] != b"/*":
        return False
    return is_governance_statement(text.partition(b"\x00")[0].decode("utf-8", "replace"))


def is_write(stmt_type: str, sql: str | None) -> bool:
    """Whether a statement of this classifier type writes (a COPY writes when it reads FROM somewhere)."""
    if stmt_type == "copy":
        return sql is not None and _COPY_FROM.search(sql) is not None
    return stmt_type in WRITE_TYPES


class Ticket:
    """What a statement holds while it runs: its rate-limit admission and its circuit-breaker probe."""

    __slots__ = ("admission", "done", "probe", "start")

    def __init__(self, admission: Admission | None, probe: Probe | None) -> None:
        self.admission = admission
        self.probe = probe
        self.done = False
        self.start = perf_counter()

    def abandon(self, runtime: Runtime) -> None:
        """The statement never ran (its QUEUE wait failed): free what it held without telling breakers anything."""
        self._close(runtime, None)

    def finish(self, runtime: Runtime, backend_failed: bool) -> None:
        """Release concurrency permits and feed the breakers (response time from the ticket's creation, so a
        QUEUE wait counts, as Sentinel counts it)."""
        self._close(runtime, backend_failed)

    def _close(self, runtime: Runtime, backend_failed: bool | None) -> None:
        # Idempotent: a statement has many exits, and each of them closes its ticket.
        if self.done:
            return
        self.done = True
        if self.admission is not None:
            self.admission.release()
        gov = runtime.traffic
        if gov is not None and self.probe is not None:
            if backend_failed is None:
                gov.abandon(self.probe)
            else:
                gov.record(self.probe, perf_counter() - self.start, backend_failed)


async def wait_admission(admission: Admission) -> None:
    """Hold a statement a QUEUE rate limit admitted for later (raises RATE_LIMITED if its slot never came)."""
    if admission.wait_s > 0:
        await asyncio.sleep(admission.wait_s)
    if admission.waiter is not None:
        await admission.waiter


def check_states(runtime: Runtime, stmt_type: str, sql: str | None) -> None:
    """Refuse a statement the node or cluster state forbids (raises the catalogue error)."""
    if runtime.node_state == "DISABLED":
        raise errors.SessionError(errors.COMPUTE_NODE_DISABLED, node=runtime.node_id)
    state = runtime.cluster_state
    if state == "UNAVAILABLE":
        raise errors.SessionError(errors.CLUSTER_UNAVAILABLE)
    if state == "READ_ONLY" and is_write(stmt_type, sql):
        raise errors.SessionError(errors.CLUSTER_READ_ONLY, statement=stmt_type.upper())


def tables_of(runtime: Runtime, sql: str, dialect: Dialect) -> tuple[str, ...]:
    """Logical table names a statement names (parsed through the shared shape cache; empty when unparsable)."""
    try:
        tree = runtime.parse_cache(dialect).get(sql, dialect).tree
    except errors.DbMeshError:
        return ()
    return tuple(sorted({t.name for t in tree.find_all(exp.Table) if t.name}))


def admit(runtime: Runtime, *, user: str, database: str, stmt_type: str, sql: str | None, dialect: Dialect,
          data_sources: Iterable[str] | None = None) -> Ticket | None:
    """Run the gate for one statement; None when nothing applies. Raises the error the client must get.

    `data_sources` are the ones the statement will use when the caller knows them already (a logical database
    with one data source): their breakers and the logical tables' are checked here. None: the caller checks
    breakers itself once it knows the plan (sharded sessions, see `breakers`), so none is counted twice.
    """
    check_states(runtime, stmt_type, sql)
    gov = runtime.traffic
    if gov is None:
        return None
    tables: tuple[str, ...] = ()
    if sql and gov.has_table_rules:
        tables = tables_of(runtime, sql, dialect)
    digest = digest_hash(sql, dialect="postgresql" if dialect == "postgres" else "mysql") if sql and gov.needs_digest \
        else None
    admission = gov.admit(user, database, tables, digest) if gov.has_flow_rules else None
    try:
        probe = gov.breaker_check(database, data_sources, tables) if data_sources is not None else None
    except errors.DbMeshError:
        if admission is not None:
            admission.release()
        raise
    if admission is None and probe is None:
        return None
    return Ticket(admission, probe)


@contextlib.contextmanager
def breakers(runtime: Runtime, database: str, plan: Plan) -> Iterator[None]:
    """Circuit breakers around a planned statement: refuse it when one of its data sources' (or logical tables')
    breakers is open, else feed them its outcome (only failures that say a data source is unhealthy count)."""
    gov = runtime.traffic
    probe = gov.breaker_check(database, {u.data_source for u in plan.units}, plan.tables) if gov is not None \
        else None
    if probe is None:
        yield
        return
    ticket = Ticket(None, probe)
    failed = False
    try:
        yield
    except BaseException as exc:
        failed = is_backend_failure(exc)
        raise
    finally:
        ticket.finish(runtime, failed)


def is_backend_failure(exc: BaseException) -> bool:
    """Errors that say a data source is unhealthy (they feed circuit breakers); SQL errors do not."""
    if isinstance(exc, errors.BackendError):
        return True
    return isinstance(exc, OSError | TimeoutError)
