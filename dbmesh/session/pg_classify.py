"""PostgreSQL statement classification for session handling: type, state left on a connection, replayable SETs.

A lexical pass, like the MySQL one: when in doubt it pins the session to its connection (correct, less shared).

>>> classify("SELECT 1").type, classify("SELECT 1").pin
('select', None)
>>> classify("SET search_path TO app, public").set_vars
(('search_path', 'app, public'),)
>>> classify("set local statement_timeout = 5").set_vars is None
True
>>> classify("LISTEN jobs").pin
'LISTEN'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LEADING = re.compile(r"\s*(?:(?:/\*.*?\*/|--[^\n]*\n?)\s*)*", re.S)
_FIRST_WORD = re.compile(r"[A-Za-z_]+")
_PIN = re.compile(
    r"(?P<listen>^\s*LISTEN\b)"
    r"|(?P<advisory>\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\()"
    r"|(?P<temp>\bCREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?(?:TEMP|TEMPORARY)\b(?![^;]*\bON\s+COMMIT\s+DROP\b))"
    r"|(?P<prepare>^\s*PREPARE\s)"
    r"|(?P<hold>\bWITH\s+HOLD\b)"
    r"|(?P<load>^\s*LOAD\b)"
    r"|(?P<role>^\s*SET\s+(?:SESSION\s+)?(?:ROLE|SESSION\s+AUTHORIZATION)\b)",
    re.I,
)
# Words one of which every _PIN match contains: a cheap substring test spares the regex on ordinary statements.
_PIN_HINTS = ("listen", "advisory", "temp", "prepare", "hold", "load", "role", "authorization")
_PIN_NAMES = {"listen": "LISTEN", "advisory": "advisory lock", "temp": "temporary table", "prepare": "SQL PREPARE",
              "hold": "cursor WITH HOLD", "load": "LOAD", "role": "SET ROLE"}
_SET = re.compile(
    r"SET\s+(?:(?P<local>LOCAL)\s+|SESSION\s+)?(?:(?P<tz>TIME\s+ZONE)\s+(?P<tzval>.+?)|"
    r"(?P<name>[A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)?)\s*(?:TO|=)\s*(?P<value>.+?))\s*;?\s*$",
    re.I | re.S)
_RESET = re.compile(r"RESET\s+(?P<name>ALL|[A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)?)\s*;?\s*$", re.I)
_DISCARD = re.compile(r"DISCARD\s+(?P<what>ALL|PLANS|SEQUENCES|TEMP|TEMPORARY)\s*;?\s*$", re.I)
_DEALLOCATE = re.compile(r"DEALLOCATE\s+(?:PREPARE\s+)?(?P<name>ALL|\S+)\s*;?\s*$", re.I)

_TYPES = {
    "select": "select", "with": "select", "values": "select", "table": "select", "insert": "insert",
    "update": "update", "delete": "delete", "merge": "update", "set": "set", "reset": "set", "show": "show",
    "begin": "begin", "start": "begin", "commit": "commit", "end": "commit", "rollback": "rollback",
    "abort": "rollback", "savepoint": "savepoint", "release": "savepoint", "create": "ddl", "alter": "ddl",
    "drop": "ddl", "truncate": "ddl", "comment": "ddl", "grant": "dcl", "revoke": "dcl", "copy": "copy",
    "explain": "explain", "listen": "listen", "unlisten": "listen", "notify": "notify", "prepare": "prepare",
    "execute": "execute", "deallocate": "prepare", "discard": "discard", "do": "call", "call": "call",
    "vacuum": "admin", "analyze": "admin", "cluster": "admin", "reindex": "admin", "checkpoint": "admin",
    "lock": "lock", "declare": "cursor", "fetch": "cursor", "move": "cursor", "close": "cursor",
    "load": "admin", "refresh": "ddl", "security": "ddl", "import": "ddl",
}
_NOT_REPLAYABLE = frozenset({"role", "session_authorization", "transaction_isolation", "transaction_read_only",
                             "transaction_deferrable"})


@dataclass(frozen=True, slots=True)
class PgStatementInfo:
    type: str  # metrics label
    pin: str | None = None  # why the session must keep its connection, if it must
    set_vars: tuple[tuple[str, str], ...] | None = None  # SET name TO value (value as SQL text), session scope
    reset_vars: tuple[str, ...] | None = None  # RESET name
    reset_all: bool = False  # RESET ALL / DISCARD ALL: back to the startup parameters
    discard_all: bool = False  # DISCARD ALL also drops prepared statements, temp tables, listeners
    deallocate: str | None = None  # DEALLOCATE name | ALL (SQL-level prepared statements)
    multi: bool = False


def _has_second_statement(sql: str) -> bool:
    """True when a ';' outside quotes, dollar quotes and comments is followed by more than whitespace."""
    if ";" not in sql.rstrip(" \t\r\n;"):
        return False  # the common case: no semicolon but a trailing one
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "'" or c == '"':
            j = sql.find(c, i + 1)
            while j >= 0 and j + 1 < n and sql[j + 1] == c:  # doubled quote inside the literal
                j = sql.find(c, j + 2)
            i = n if j < 0 else j + 1
            continue
        if c == "$":
            m = re.match(r"\$([A-Za-z_]\w*)?\$", sql[i:])
            if m:
                end = sql.find(m.group(0), i + len(m.group(0)))
                i = n if end < 0 else end + len(m.group(0))
                continue
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if c == ";":
            m2 = _LEADING.match(sql, i + 1)
            tail = sql[m2.end():] if m2 else sql[i + 1:]
            return bool(tail.strip().strip(";").strip())
        i += 1
    return False


# Statements that need no look beyond their first word, shared (no allocation per statement).
_PLAIN = {"select ": PgStatementInfo("select"), "insert ": PgStatementInfo("insert"),
          "update ": PgStatementInfo("update"), "delete ": PgStatementInfo("delete")}


def quick_classify(sql: str) -> PgStatementInfo | None:
    """The common case in a few string operations: a plain DML statement with nothing that leaves state.

    None means "not sure": call classify(). Never wrong: the checks classify() makes on such a statement, in
    cheaper form. Its first word starts the text, so of the _PIN groups only those not anchored at the start
    (advisory locks, temporary tables, WITH HOLD) can match it, and only where their hint occurs.

    >>> quick_classify("SELECT abalance FROM t WHERE aid = 7;").type
    'select'
    >>> quick_classify("SELECT pg_advisory_lock(1)") is None
    True
    """
    info = _PLAIN.get(sql[:7].lower())
    if info is None or ";" in sql.rstrip(" \t\r\n;"):
        return None
    low = sql.lower()  # substring tests: far cheaper than one case-insensitive alternation regex
    if "advisory" in low or "temp" in low or "hold" in low:
        return None
    return info


def classify(sql: str) -> PgStatementInfo:
    """Classify one statement text (a Query message, or a Parse's query). Pure; callers cache by text."""
    start = _LEADING.match(sql)
    body = sql[start.end():] if start else sql
    m = _FIRST_WORD.match(body)
    word = m.group(0).lower() if m else ""
    kind = _TYPES.get(word, "other")
    if _has_second_statement(body):
        return PgStatementInfo(kind, pin="multi-statement", multi=True)
    lowered = body.lower()
    pin_m = _PIN.search(body) if any(h in lowered for h in _PIN_HINTS) else None
    if pin_m and pin_m.lastgroup:
        return PgStatementInfo(kind, pin=_PIN_NAMES[pin_m.lastgroup])
    if word == "set":
        s = _SET.match(body)
        if s is None:
            return PgStatementInfo("set", pin="SET")
        if s.group("local"):
            return PgStatementInfo("set")  # transaction-scoped: gone at the transaction's end
        if s.group("tz"):
            return PgStatementInfo("set", set_vars=(("timezone", s.group("tzval").strip()),))
        name = s.group("name").lower()
        if name in _NOT_REPLAYABLE or name == "transaction":
            return PgStatementInfo("set", pin=f"SET {name}")
        value = s.group("value").strip()
        if value.upper() == "DEFAULT":
            return PgStatementInfo("set", reset_vars=(name,))
        return PgStatementInfo("set", set_vars=((name, value),))
    if word == "reset":
        r = _RESET.match(body)
        if r is None:
            return PgStatementInfo("set", pin="RESET")
        name = r.group("name").lower()
        if name == "all":
            return PgStatementInfo("set", reset_all=True)
        return PgStatementInfo("set", reset_vars=(name,))
    if word == "discard":
        d = _DISCARD.match(body)
        if d and d.group("what").upper() == "ALL":
            return PgStatementInfo("discard", reset_all=True, discard_all=True)
        return PgStatementInfo("discard")
    if word == "deallocate":
        d2 = _DEALLOCATE.match(body)
        return PgStatementInfo("prepare", deallocate=d2.group("name") if d2 else None)
    return PgStatementInfo(kind)
