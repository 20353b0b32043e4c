"""Statement classification for session handling: type, state it leaves on a connection, and what dbmesh answers itself.

This is deliberately a lexical pass, not a parse: it runs on every statement, and when in doubt it pins the
session to its connection (always correct, only less multiplexed).

>>> classify("SELECT 1").type, classify("SELECT 1").pin
('select', None)
>>> classify("set names utf8mb4").set_vars
(('NAMES', 'utf8mb4'),)
>>> classify("SELECT @x := 1").pin
'user variable'
>>> classify("use `shop`").use_db
'shop'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dbmesh.session.gate import is_governance_statement

_LEADING = re.compile(r"\s*(?:(?:/\*(?!!).*?\*/|--[ \t][^\n]*\n?|#[^\n]*\n?)\s*)*", re.S)
_FIRST_WORD = re.compile(r"[A-Za-z_]+")

# Constructs that leave state on the connection which dbmesh does not replay: the session keeps its connection.
_PIN = re.compile(
    r"(?P<uservar>(?<![@\w$`])@(?!@)[\w$.`'\"])"
    r"|(?P<getlock>\b(?:GET_LOCK|RELEASE_LOCK|RELEASE_ALL_LOCKS|IS_USED_LOCK)\s*\()"
    r"|(?P<locktables>\bLOCK\s+TABLES?\b|\bFLUSH\s+TABLES?\b[^;]*\bWITH\s+READ\s+LOCK\b)"
    r"|(?P<temptable>\bCREATE\s+(?:OR\s+REPLACE\s+)?TEMPORARY\b)"
    r"|(?P<calcfound>\bSQL_CALC_FOUND_ROWS\b)"
    r"|(?P<lastid>\bLAST_INSERT_ID\s*\(\s*[^\s)])"
    r"|(?P<handler>^\s*HANDLER\b)"
    r"|(?P<xa>^\s*XA\b)"
    r"|(?P<sqlprepare>^\s*(?:PREPARE|EXECUTE|DEALLOCATE)\b)",
    re.I,
)
# Every _PIN / _HISTORY match contains one of these: a substring test spares the regexes on ordinary statements.
_PIN_HINTS = ("@", "lock", "temporary", "sql_calc_found_rows", "last_insert_id", "handler", "xa", "prepare",
              "execute", "deallocate")
_HISTORY_HINTS = ("row_count", "found_rows", "last_insert_id", "@@", "warnings", "errors")
_PIN_NAMES = {
    "uservar": "user variable", "getlock": "user lock", "locktables": "table lock",
    "temptable": "temporary table", "calcfound": "SQL_CALC_FOUND_ROWS", "lastid": "LAST_INSERT_ID(expr)",
    "handler": "HANDLER", "xa": "XA transaction", "sqlprepare": "SQL PREPARE",
}
# Functions and statements that read what an earlier statement left on the connection.
_HISTORY = re.compile(
    r"\b(?P<c>ROW_COUNT|FOUND_ROWS|LAST_INSERT_ID)\s*\(\s*\)|@@(?:SESSION\.)?(?P<v>warning_count|error_count|identity|"
    r"last_insert_id)\b|^\s*SHOW\s+(?:COUNT\s*\(\s*\*\s*\)\s+)?(?P<s>WARNINGS|ERRORS)\b",
    re.I,
)

# Session variables dbmesh can replay on another connection with one SET (value kept as SQL text).
REPLAYABLE = frozenset({
    "autocommit", "sql_mode", "time_zone", "character_set_client", "character_set_connection",
    "character_set_results", "collation_connection", "sql_select_limit", "max_execution_time", "max_statement_time",
    "transaction_isolation", "tx_isolation", "transaction_read_only", "tx_read_only", "group_concat_max_len",
    "sql_auto_is_null", "sql_safe_updates", "foreign_key_checks", "unique_checks", "div_precision_increment",
    "lc_time_names", "wait_timeout", "interactive_timeout", "net_read_timeout", "net_write_timeout",
    "innodb_lock_wait_timeout", "lock_wait_timeout", "sql_big_selects", "sql_notes", "sql_warnings",
    "big_tables", "optimizer_switch", "sql_quote_show_create", "default_storage_engine", "session_track_schema",
    "session_track_state_change", "session_track_system_variables", "session_track_transaction_info",
    "explicit_defaults_for_timestamp", "max_join_size", "sort_buffer_size", "join_buffer_size", "tmp_table_size",
    "max_heap_table_size", "long_query_time", "sql_log_off", "character_set_database", "collation_database",
    "default_week_format", "time_format", "date_format", "datetime_format", "profiling", "max_sort_length",
    "timestamp", "query_cache_type", "sql_buffer_result", "net_buffer_length", "old_passwords",
    "default_tmp_storage_engine", "completion_type", "updatable_views_with_limit", "max_error_count",
    "optimizer_search_depth", "eq_range_index_dive_limit", "in_predicate_conversion_threshold",
})
_SET_PREFIX = re.compile(r"SET\s+", re.I)
_SET_NAMES = re.compile(
    r"(?:NAMES|CHARACTER\s+SET|CHARSET)\s+('[^']*'|`[^`]*`|\"[^\"]*\"|\w+|DEFAULT)(?:\s+COLLATE\s+('[^']*'|`[^`]*`|\w+))?\s*",
    re.I)
_SET_ASSIGN = re.compile(
    r"(?:(?:SESSION|LOCAL)\s+|@@(?:SESSION\.|LOCAL\.)?)?`?(?P<name>[A-Za-z_][\w]*)`?\s*(?::=|=)\s*"
    r"(?P<value>'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"|[-+]?[\w.]+)\s*",
    re.I)
_USE = re.compile(r"USE\s+(`(?:[^`]|``)+`|[\w$]+)\s*;?\s*$", re.I | re.S)
_KILL = re.compile(r"KILL\s+(?:(CONNECTION|QUERY)\s+)?(\d+)\s*;?\s*$", re.I)
_SHOW_DATABASES = re.compile(r"SHOW\s+(?:DATABASES|SCHEMAS)\s*;?\s*$", re.I)


@dataclass(frozen=True, slots=True)
class StatementInfo:
    type: str  # metrics label: select, insert, update, delete, replace, set, show, use, begin, commit, ddl, ...
    pin: str | None = None  # why the session must keep its connection (state not replayable), if it must
    set_vars: tuple[tuple[str, str], ...] | None = None  # a SET made only of replayable assignments
    use_db: str | None = None  # USE <db>: answered by dbmesh
    history: str | None = None  # reads per-connection history (ROW_COUNT(), SHOW WARNINGS ...)
    local: str | None = None  # answered by dbmesh itself: "show_databases", "kill_query", "kill_connection",
    # "governance" (compute nodes, dist variables, cluster state, traffic rules: dbmesh.admin.governance)
    target: int = 0  # KILL's connection id (dbmesh's own ids, as the handshake gave them)
    multi: bool = False  # several statements in one COM_QUERY


_TYPES = {
    "select": "select", "with": "select", "insert": "insert", "update": "update", "delete": "delete",
    "replace": "replace", "set": "set", "show": "show", "use": "use", "begin": "begin", "start": "begin",
    "commit": "commit", "rollback": "rollback", "create": "ddl", "alter": "ddl", "drop": "ddl",
    "truncate": "ddl", "rename": "ddl", "call": "call", "explain": "explain", "describe": "explain",
    "desc": "explain", "load": "load", "savepoint": "savepoint", "release": "savepoint", "do": "select",
    "values": "select", "table": "select", "grant": "dcl", "revoke": "dcl", "flush": "admin", "kill": "admin",
    "analyze": "admin", "optimize": "admin", "check": "admin", "repair": "admin", "lock": "lock",
    "unlock": "lock", "xa": "xa", "prepare": "prepare", "execute": "execute", "deallocate": "prepare",
    "handler": "handler", "help": "show",
}


def _has_second_statement(sql: str) -> bool:
    """True when a ';' outside quotes and comments is followed by more than whitespace or comments."""
    if ";" not in sql.rstrip(" \t\r\n;"):
        return False  # the common case: no semicolon but a trailing one
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\" and c != "`":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
            continue
        if c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if (c == "#") or (c == "-" and sql.startswith("-- ", i)):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if c == ";":
            m = _LEADING.match(sql, i + 1)
            tail = sql[m.end():] if m else sql[i + 1:]
            return bool(tail.strip().strip(";").strip())
        i += 1
    return False


def _parse_set(body: str) -> tuple[tuple[str, str], ...] | None:
    """Assignments of a SET statement if every one is replayable, else None."""
    pos, n = 0, len(body)
    out: list[tuple[str, str]] = []
    while pos < n:
        m = _SET_NAMES.match(body, pos)
        if m:
            value = m.group(1) + (f" COLLATE {m.group(2)}" if m.group(2) else "")
            out.append(("NAMES", value))
        else:
            m = _SET_ASSIGN.match(body, pos)
            if not m or m.group("name").lower() not in REPLAYABLE:
                return None
            name = m.group("name").lower()
            if name == "autocommit" and m.group("value").strip("'\"").lower() in ("0", "off", "false"):
                return None  # autocommit=0 opens transactions: the status flags pin the session instead
            if m.group(0).lstrip().upper().startswith(("GLOBAL", "@@GLOBAL")):
                return None
            out.append((name, m.group("value")))
        pos = m.end()
        if pos < n and body[pos] == ",":
            pos += 1
            while pos < n and body[pos].isspace():
                pos += 1
        elif pos < n and body[pos:].strip(" \t\r\n;") == "":
            break
        elif pos < n:
            return None
    return tuple(out) or None


# Statements that need no look beyond their first word, shared (no allocation per statement).
_PLAIN = {"select ": StatementInfo("select"), "insert ": StatementInfo("insert"),
          "update ": StatementInfo("update"), "delete ": StatementInfo("delete")}
# (substring tests on the lower-cased text: far cheaper than one case-insensitive alternation regex)
_ANY_HINTS = (*_PIN_HINTS, *_HISTORY_HINTS, "/*", "#", "--")


def quick_classify(sql: str) -> StatementInfo | None:
    """The common case in a few string operations: a plain DML statement with nothing that leaves state.

    None means "not sure": call classify(). Never wrong: the same checks classify() makes, in cheaper form.

    >>> quick_classify("SELECT c FROM sbtest1 WHERE id=7").type
    'select'
    >>> quick_classify("SELECT @x") is None
    True
    """
    info = _PLAIN.get(sql[:7].lower())
    if info is None or ";" in sql.rstrip(" \t\r\n;"):
        return None
    low = sql.lower()
    for hint in _ANY_HINTS:
        if hint in low:
            return None
    return info


_GOVERNANCE_WORDS = frozenset({"show", "set", "enable", "disable", "lock", "unlock"})

_EXECUTABLE_COMMENT = re.compile(r"/\*M?!\d*(.*?)\*/", re.S)


def classify(sql: str) -> StatementInfo:
    """Classify one COM_QUERY text. Pure; callers cache by text."""
    if "/*!" in sql or "/*M!" in sql:
        # MySQL/MariaDB execute the text of /*! ... */ (when their version is at least the one given): judge
        # the statement with those comments opened. A version-gated SET may or may not run, so any state it
        # could leave pins the session rather than being replayed.
        opened = _EXECUTABLE_COMMENT.sub(lambda m: " " + m.group(1) + " ", sql)
        inner = _classify(opened)
        if inner.set_vars or inner.pin:
            return StatementInfo(inner.type, pin="executable comment", history=inner.history, multi=inner.multi)
        return inner
    return _classify(sql)


def _classify(sql: str) -> StatementInfo:
    start = _LEADING.match(sql)
    body = sql[start.end():] if start else sql
    m = _FIRST_WORD.match(body)
    word = m.group(0).lower() if m else ""
    kind = _TYPES.get(word, "other")
    multi = _has_second_statement(body)
    if multi:
        return StatementInfo(kind, pin="multi-statement", multi=True)
    if kind == "use":
        u = _USE.match(body)
        if u:
            name = u.group(1)
            if name.startswith("`"):
                name = name[1:-1].replace("``", "`")
            return StatementInfo("use", use_db=name)
    if word == "kill":
        k = _KILL.match(body)
        if k:
            scope = "kill_query" if (k.group(1) or "").upper() == "QUERY" else "kill_connection"
            return StatementInfo("admin", local=scope, target=int(k.group(2)))
        return StatementInfo("admin", local="kill_unsupported")
    if kind == "show" and _SHOW_DATABASES.match(body):
        return StatementInfo("show", local="show_databases")
    if word in _GOVERNANCE_WORDS and is_governance_statement(body):
        return StatementInfo("admin", local="governance")
    lowered = body.lower()
    hist = _HISTORY.search(body) if any(h in lowered for h in _HISTORY_HINTS) else None
    history = None
    if hist:
        history = (hist.group("c") and hist.group("c").upper() + "()") or (
            hist.group("v") and "@@" + hist.group("v").lower()) or ("SHOW " + hist.group("s").upper())
    if kind == "set":
        prefix = _SET_PREFIX.match(body)
        rest = body[prefix.end():] if prefix else ""
        assigns = _parse_set(rest)
        if assigns is not None:
            return StatementInfo("set", set_vars=assigns, history=history)
        if re.match(r"(?:SESSION\s+|LOCAL\s+)?TRANSACTION\b", rest, re.I):
            return StatementInfo("set", pin="SET TRANSACTION", history=history)
        pin_m = _PIN.search(body)
        return StatementInfo("set", pin=_PIN_NAMES[pin_m.lastgroup] if pin_m and pin_m.lastgroup else "SET",
                             history=history)
    pin_m = _PIN.search(body) if any(h in lowered for h in _PIN_HINTS) else None
    pin = _PIN_NAMES[pin_m.lastgroup] if pin_m and pin_m.lastgroup else None
    if pin is None and kind in ("lock", "load", "xa", "handler", "prepare", "execute"):
        pin = kind
    return StatementInfo(kind, pin=pin, history=history)
