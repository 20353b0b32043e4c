"""MySQL `LOAD DATA [LOCAL] INFILE` statements: a small dedicated parser (sqlglot does not parse them) and the
statements dbmesh sends data nodes.

The grammar follows MariaDB's:

    LOAD DATA [LOW_PRIORITY | CONCURRENT] [LOCAL] INFILE 'file' [REPLACE | IGNORE] INTO TABLE t
        [PARTITION (p, ...)] [CHARACTER SET cs]
        [{FIELDS | COLUMNS} [TERMINATED BY s] [[OPTIONALLY] ENCLOSED BY c] [ESCAPED BY c]]
        [LINES [STARTING BY s] [TERMINATED BY s]] [IGNORE n {LINES | ROWS}]
        [(col_or_@var, ...)] [SET col = expr, ...]

String arguments are read as the server reads string literals (backslash escapes unless NO_BACKSLASH_ESCAPES,
doubled quotes, adjacent literals concatenated, X'..' and 0x.. hex strings). Column lists and SET clauses are kept
as the client wrote them: data nodes get them verbatim.

>>> stmt = parse_load_data("LOAD DATA LOCAL INFILE 'a.csv' INTO TABLE t_order FIELDS TERMINATED BY ',' "
...                        "ENCLOSED BY '\\"' IGNORE 1 LINES (order_id, @v) SET status = UPPER(@v)")
>>> stmt.table, stmt.field_term, stmt.enclosed, stmt.ignore_lines, stmt.columns, stmt.set_targets
('t_order', b',', b'"', 1, ('order_id', '@v'), ('status',))
>>> stmt.for_table("t_order_1")
'LOAD DATA LOCAL INFILE \\'a.csv\\' INTO TABLE `t_order_1` FIELDS TERMINATED BY \\',\\' ENCLOSED BY \\'"\\' IGNORE 1 LINES (order_id, @v) SET status = UPPER(@v)'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dbmesh import errors

# Token kinds.
_WS, _IDENT, _QIDENT, _STRING, _HEX, _NUMBER, _VAR, _PUNCT = range(8)

_ESCAPES = {"0": "\x00", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "%": "\\%", "_": "\\_"}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: int
    text: str  # as written
    start: int
    end: int
    value: bytes = b""  # a string or hex literal's bytes

    def word(self) -> str:
        return self.text.upper() if self.kind == _IDENT else ""


def _pattern(backslash_escapes: bool, ansi_quotes: bool) -> re.Pattern[str]:
    sq = r"'(?:[^'\\]|\\.|'')*'" if backslash_escapes else r"'(?:[^']|'')*'"
    dq = r'"(?:[^"\\]|\\.|"")*"' if backslash_escapes else r'"(?:[^"]|"")*"'
    parts = [
        r"(?P<ws>\s+|--(?:\s[^\n]*)?(?:\n|$)|\#[^\n]*(?:\n|$)|/\*(?!!)(?:.|\n)*?\*/)",
        r"(?P<qident>`(?:[^`]|``)*`" + (r"|" + r'"(?:[^"]|"")*"' if ansi_quotes else "") + ")",
        r"(?P<hex>[xX]'[0-9a-fA-F]*'|0x[0-9a-fA-F]+\b)",
        r"(?P<string>" + sq + ("" if ansi_quotes else "|" + dq) + ")",
        r"(?P<var>@(?:`(?:[^`]|``)*`|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[\w$.]+))",
        r"(?P<ident>[0-9]*[^\W\d][\w$]*|\$[\w$]*)",
        r"(?P<number>\d+\b)",
        r"(?P<punct>[^\s])",  # operators and anything else of a SET expression, one character at a time
    ]
    return re.compile("|".join(parts), re.S)


_PATTERNS = {(b, a): _pattern(b, a) for b in (True, False) for a in (True, False)}
_KINDS = {"ws": _WS, "qident": _QIDENT, "hex": _HEX, "string": _STRING, "var": _VAR, "ident": _IDENT,
          "number": _NUMBER, "punct": _PUNCT}


def _unescape(body: str, quote: str, backslash_escapes: bool) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and backslash_escapes and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        if ch == quote and i + 1 < len(body) and body[i + 1] == quote:
            out.append(quote)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _tokens(sql: str, backslash_escapes: bool, ansi_quotes: bool) -> list[_Token]:
    pattern = _PATTERNS[(backslash_escapes, ansi_quotes)]
    out: list[_Token] = []
    pos = 0
    while pos < len(sql):
        m = pattern.match(sql, pos)
        if m is None or m.end() == pos:
            raise _syntax(f"unexpected text near {sql[pos:pos + 20]!r}")
        kind = _KINDS[m.lastgroup or "ws"]
        text = m.group(0)
        if kind != _WS:
            value = b""
            if kind == _STRING:
                value = _unescape(text[1:-1], text[0], backslash_escapes).encode()
            elif kind == _HEX:
                digits = text[2:-1] if text[0] in "xX" else text[2:]
                if len(digits) % 2:
                    digits = "0" + digits
                value = bytes.fromhex(digits)
            out.append(_Token(kind, text, m.start(), m.end(), value))
        pos = m.end()
    return out


def _syntax(detail: str) -> errors.DbMeshError:
    return errors.DbMeshError(errors.SQL_SYNTAX, detail=f"LOAD DATA: {detail}")


def _ident_name(tok: _Token) -> str:
    if tok.kind == _QIDENT:
        quote = tok.text[0]
        return tok.text[1:-1].replace(quote * 2, quote)
    return tok.text


def quote_ident(name: str) -> str:
    """A backquoted identifier."""
    return "`" + name.replace("`", "``") + "`"


def hex_literal(value: bytes) -> str:
    """X'..': a string argument that reads the same whatever the session's sql_mode."""
    return "X'" + value.hex().upper() + "'"


@dataclass(frozen=True, slots=True)
class LoadData:
    """One parsed LOAD DATA statement. Names are as written (unquoted); `columns` items are column names or
    `@variables`, None without a column list."""

    sql: str
    local: bool
    priority: str  # "", "LOW_PRIORITY" or "CONCURRENT"
    file_name: bytes
    file_literal: str  # the file name's literal(s) as written
    duplicates: str  # "", "REPLACE" or "IGNORE"
    schema: str | None
    table: str
    table_span: tuple[int, int]  # where the (possibly qualified) table name is written
    partition: bool
    charset: str | None  # lower-case; None when absent or DEFAULT
    field_term: bytes
    enclosed: bytes
    escaped: bytes
    escaped_given: bool
    line_start: bytes
    line_term: bytes
    ignore_lines: int
    columns: tuple[str, ...] | None
    column_list_sql: str
    set_targets: tuple[str, ...]  # lower-case target columns of the SET clause
    set_sql: str

    def for_table(self, actual: str) -> str:
        """The statement as written, with the table (and any schema qualifier) replaced by `actual`."""
        start, end = self.table_span
        return self.sql[:start] + quote_ident(actual) + self.sql[end:]

    def escape_char(self, no_backslash_escapes: bool) -> bytes:
        """The escape character the server uses: none when empty, or when NO_BACKSLASH_ESCAPES is on and the
        statement did not name one."""
        if not self.escaped or (no_backslash_escapes and not self.escaped_given):
            return b""
        return self.escaped  # more than one character is the server's error to report


def is_load_data(sql: str) -> bool:
    """Does the statement start with LOAD DATA (after comments)?"""
    return _HEAD.match(sql) is not None


_HEAD = re.compile(r"^(?:\s+|/\*(?!!)(?:.|\n)*?\*/|--\s[^\n]*\n|#[^\n]*\n)*LOAD\s+DATA\b", re.I)


class _Reader:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self, ahead: int = 0) -> _Token | None:
        j = self.i + ahead
        return self.tokens[j] if j < len(self.tokens) else None

    def word(self, ahead: int = 0) -> str:
        tok = self.peek(ahead)
        return tok.word() if tok is not None else ""

    def take(self) -> _Token:
        tok = self.peek()
        if tok is None:
            raise _syntax("unexpected end of statement")
        self.i += 1
        return tok

    def accept(self, *words: str) -> bool:
        if all(self.word(k) == w for k, w in enumerate(words)):
            self.i += len(words)
            return True
        return False

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            tok = self.peek()
            near = tok.text if tok is not None else "end of statement"
            raise _syntax(f"expected {' '.join(words)} near {near!r}")

    def punct(self, ch: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == _PUNCT and tok.text == ch:
            self.i += 1
            return True
        return False

    def string(self) -> tuple[bytes, str]:
        """One string argument: adjacent literals concatenate. (value, text as written)"""
        first = self.take()
        if first.kind not in (_STRING, _HEX):
            raise _syntax(f"expected a string near {first.text!r}")
        value, last = first.value, first
        if first.kind == _STRING:
            while (tok := self.peek()) is not None and tok.kind == _STRING:
                value += tok.value
                last = self.take()
        return value, (first.text if last is first else f"{first.text} ... {last.text}")

    def name(self) -> _Token:
        tok = self.take()
        if tok.kind not in (_IDENT, _QIDENT):
            raise _syntax(f"expected a name near {tok.text!r}")
        return tok


def parse_load_data(sql: str, *, backslash_escapes: bool = True, ansi_quotes: bool = False) -> LoadData:
    """Parse one LOAD DATA statement (a trailing `;` is allowed). Raises DbMeshError SQL_SYNTAX."""
    tokens = _tokens(sql, backslash_escapes, ansi_quotes)
    while tokens and tokens[-1].kind == _PUNCT and tokens[-1].text == ";":
        tokens.pop()
    body_end = tokens[-1].end if tokens else 0
    r = _Reader(tokens)
    r.expect("LOAD", "DATA")
    priority = ""
    for word in ("LOW_PRIORITY", "CONCURRENT"):
        if r.accept(word):
            priority = word
            break
    local = r.accept("LOCAL")
    r.expect("INFILE")
    file_start = r.peek()
    file_name, _ = r.string()
    prev = r.tokens[r.i - 1]
    file_literal = sql[file_start.start:prev.end] if file_start is not None else ""
    duplicates = ""
    for word in ("REPLACE", "IGNORE"):
        if r.accept(word):
            duplicates = word
            break
    r.expect("INTO", "TABLE")
    first = r.name()
    schema: str | None = None
    last = first
    if r.punct("."):
        last = r.name()
        schema = _ident_name(first)
    table = _ident_name(last)
    table_span = (first.start, last.end)
    partition = False
    if r.accept("PARTITION"):
        partition = True
        if not r.punct("("):
            raise _syntax("expected ( after PARTITION")
        while not r.punct(")"):
            r.take()
    charset: str | None = None
    if r.accept("CHARACTER", "SET") or r.accept("CHARSET"):
        tok = r.take()
        name = tok.value.decode() if tok.kind == _STRING else _ident_name(tok)
        charset = None if name.upper() == "DEFAULT" else name.lower()
    field_term, enclosed, escaped, escaped_given = b"\t", b"", b"\\", False
    if r.accept("FIELDS") or r.accept("COLUMNS"):
        seen = False
        while True:
            if r.accept("TERMINATED", "BY"):
                field_term = r.string()[0]
            elif r.accept("OPTIONALLY", "ENCLOSED", "BY") or r.accept("ENCLOSED", "BY"):
                enclosed = r.string()[0]
            elif r.accept("ESCAPED", "BY"):
                escaped, escaped_given = r.string()[0], True
            else:
                break
            seen = True
        if not seen:
            raise _syntax("FIELDS needs TERMINATED BY, ENCLOSED BY or ESCAPED BY")
    line_start, line_term = b"", b"\n"
    if r.accept("LINES"):
        seen = False
        while True:
            if r.accept("STARTING", "BY"):
                line_start = r.string()[0]
            elif r.accept("TERMINATED", "BY"):
                line_term = r.string()[0]
            else:
                break
            seen = True
        if not seen:
            raise _syntax("LINES needs STARTING BY or TERMINATED BY")
    ignore_lines = 0
    if r.word() == "IGNORE":
        r.take()
        tok = r.take()
        if tok.kind != _NUMBER:
            raise _syntax(f"expected a number after IGNORE near {tok.text!r}")
        ignore_lines = int(tok.text)
        if not (r.accept("LINES") or r.accept("ROWS")):
            raise _syntax("expected LINES or ROWS after IGNORE n")
    columns: tuple[str, ...] | None = None
    column_list_sql = ""
    open_tok = r.peek()
    if open_tok is not None and r.punct("("):
        items: list[str] = []
        while not r.punct(")"):
            tok = r.take()
            if tok.kind == _VAR:
                items.append(tok.text)
            elif tok.kind in (_IDENT, _QIDENT):
                name_tok = tok
                while r.punct("."):
                    name_tok = r.name()
                items.append(_ident_name(name_tok))
            else:
                raise _syntax(f"unexpected {tok.text!r} in the column list")
            if not r.punct(","):
                if not r.punct(")"):
                    raise _syntax("expected , or ) in the column list")
                break
        columns = tuple(items)
        column_list_sql = sql[open_tok.start:r.tokens[r.i - 1].end]
    set_targets: tuple[str, ...] = ()
    set_sql = ""
    set_tok = r.peek()
    if set_tok is not None and r.accept("SET"):
        set_targets = tuple(_set_targets(r))
        set_sql = sql[set_tok.start:body_end]
    rest = r.peek()
    if rest is not None:
        raise _syntax(f"unexpected {rest.text!r}")
    return LoadData(sql[:body_end], local, priority, file_name, file_literal, duplicates, schema, table, table_span,
                    partition, charset, field_term, enclosed, escaped, escaped_given, line_start, line_term,
                    ignore_lines, columns, column_list_sql, set_targets, set_sql)


def _set_targets(r: _Reader) -> list[str]:
    """The target column of each `col = expr` of a SET clause (the expressions are skipped, kept as written)."""
    targets: list[str] = []
    while True:
        name_tok = r.name()
        while r.punct("."):
            name_tok = r.name()
        targets.append(_ident_name(name_tok).lower())
        if not r.punct("="):
            raise _syntax("expected = in the SET clause")
        depth = 0
        while (tok := r.peek()) is not None:
            if tok.kind == _PUNCT and tok.text == "(":
                depth += 1
            elif tok.kind == _PUNCT and tok.text == ")":
                depth -= 1
            elif tok.kind == _PUNCT and tok.text == "," and depth == 0:
                break
            r.take()
        if not r.punct(","):
            return targets
