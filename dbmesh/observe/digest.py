"""Statement digests: SQL text with its literals taken out, so that statements that differ only in values group.

This follows MySQL's ``performance_schema`` digest text: literals become ``?``, a list of values after ``IN``
becomes ``IN (...)``, comments go, and tokens are re-joined with single spaces so that layout does not split a
group. It is a tokenizer, not a parser: one compiled regular expression per dialect walks the text once, which
keeps it cheap and lets it accept any text (unknown syntax, unterminated strings) without failing.

Known approximations, all of which can only split a group or merge look-alikes, never fail:

* only keywords from a small list are upper-cased (``select`` -> ``SELECT``); other words keep their case;
* ``mysql``: ``"..."`` is a string literal (the default ``sql_mode``; with ``ANSI_QUOTES`` it would be a name),
  ``#`` starts a comment, and ``--`` starts one only when followed by whitespace, as in MySQL itself;
* ``postgresql``: ``"..."`` is a name and kept, backslashes escape only inside ``E'...'``, ``$tag$...$tag$``
  is a literal, ``$1`` is a parameter and kept, and ``#`` is an operator;
* MySQL executable comments (``/*! ... */``) and optimizer hints (``/*+ ... */``) are dropped like any comment.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final, Literal

Dialect = Literal["mysql", "postgresql"]

_NUMBER = r"0[xX][0-9a-fA-F]+(?![\w$])|0[bB][01]+(?![\w$])|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![\w$])"

# Alternatives are tried in order at each position, and every character is matched by some group (the last
# one takes any single non-space, non-word character), so finditer() never skips text. Literals come before
# words so that prefixed strings (x'0a', _utf8mb4'a', E'a') win over the prefix read as a name; a word that
# starts with a digit ("1abc" is a valid MySQL name) is not a number because numbers must not run into \w.
_MYSQL_TOKEN: Final = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<comment>/\*.*?(?:\*/|\Z)|--(?=\s|\Z)[^\n]*|\#[^\n]*)
    |(?P<literal>
        (?:[nN]|_[A-Za-z0-9]+)?'(?:[^'\\]|\\.|'')*(?:'|\\?\Z)
        |"(?:[^"\\]|\\.|"")*(?:"|\\?\Z)
        |[xX]'[^']*'|[bB]'[^']*'
        |""" + _NUMBER + r"""
    )
    |(?P<param>\?)
    |(?P<word>`(?:[^`]|``)*`?|[\w$]+)
    |(?P<op><=>|->>|->|<>|!=|<=|>=|<<|>>|:=|\|\||&&|[^\s\w])
    """,
    re.VERBOSE | re.DOTALL,
)

_PG_TOKEN: Final = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<comment>/\*.*?(?:\*/|\Z)|--[^\n]*)
    |(?P<literal>
        [eE]'(?:[^'\\]|\\.|'')*(?:'|\\?\Z)
        |(?:[uU]&|[nNxXbB])?'(?:[^']|'')*(?:'|\Z)
        |\$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?(?:\$(?P=tag)\$|\Z)
        |""" + _NUMBER + r"""
    )
    |(?P<param>\$\d+)
    |(?P<word>"(?:[^"]|"")*"?|[\w$]+)
    |(?P<op>->>|->|\#>>|\#>|\#-|@>|<@|<>|!=|<=|>=|<<|>>|::|\|\||&&|!~\*|!~|~\*|[^\s\w])
    """,
    re.VERBOSE | re.DOTALL,
)

_TOKEN_RE: Final = {"mysql": _MYSQL_TOKEN, "postgresql": _PG_TOKEN}

# Words after which a sign belongs to the following operand ("LIMIT -1", "WHEN -1") and before which a
# parenthesis is set off by a space ("IN (", "VALUES ("). Listed words are also upper-cased in the digest.
_KEYWORDS: Final = frozenset(
    """
    ADD AGAINST ALL AND ANY AS ASC BETWEEN BY CALL CASE DEFAULT DELETE DESC DISTINCT DIV DO ELSE ESCAPE EXISTS
    FROM GROUP HAVING ILIKE IN INSERT INTERVAL INTO IS JOIN LIKE LIMIT MOD NOT OFFSET ON OR ORDER REGEXP
    REPLACE RETURN RETURNING RLIKE SELECT SET SOME THEN UNION UPDATE USING VALUE VALUES WHEN WHERE WITH XOR
    """.split()
)

_NO_SPACE_BEFORE: Final = frozenset({")", ",", ".", ";", "::", "[", "]"})
_NO_SPACE_AFTER: Final = frozenset({"(", ".", "@", "@@", "::", "["})
_VALUE = "?"  # what a literal becomes
_COLLAPSED_LIST = "(...)"


def digest(sql: str, *, dialect: Dialect = "mysql") -> str:
    """Return the digest text of one SQL statement.

    >>> digest("SELECT * FROM t WHERE id = 42 AND name = 'O''Brien'")
    'SELECT * FROM t WHERE id = ? AND name = ?'
    >>> digest("select a from t  where b in (1, -2, 'x') -- why")
    'SELECT a FROM t WHERE b IN (...)'
    >>> digest("INSERT INTO t (a, b) VALUES (-1.5e3, x'0aff') /* batch 7 */;")
    'INSERT INTO t(a, b) VALUES (?, ?)'
    >>> digest("UPDATE t SET n = n-1, s = 'it\\\\'s' WHERE id = ?")
    'UPDATE t SET n = n - ?, s = ? WHERE id = ?'
    >>> digest('SELECT "Name" FROM t WHERE x = $1 AND y = $q$it\\'s$q$', dialect="postgresql")
    'SELECT "Name" FROM t WHERE x = $1 AND y = ?'
    """
    out: list[str] = []
    kinds: list[str] = []  # per output token: "value", "word", "keyword" or "op"
    for match in _TOKEN_RE[dialect].finditer(sql):
        group = match.lastgroup
        if group == "ws" or group == "comment":
            continue
        if group == "literal" or group == "param":
            if group == "literal":
                # A sign is part of the literal when it cannot be binary: at the start, after an operator or
                # opening bracket, or after a keyword. "a-1" keeps its minus, "a = -1" and "(-1" do not.
                while out and out[-1] in ("-", "+") and _unary_context(out, kinds, len(out) - 2):
                    out.pop()
                    kinds.pop()
                text = _VALUE
            else:
                text = match.group()
            out.append(text)
            kinds.append("value")
        elif group == "word":
            text = match.group()
            upper = text.upper()
            if upper in _KEYWORDS:
                out.append(upper)
                kinds.append("keyword")
            else:
                out.append(text)
                kinds.append("word")
        else:
            text = match.group()
            if text == ")" and _collapse_in_list(out, kinds):
                continue
            out.append(text)
            kinds.append("op")
    while out and out[-1] == ";":
        out.pop()
        kinds.pop()
    return _join(out, kinds)


def _unary_context(out: list[str], kinds: list[str], i: int) -> bool:
    if i < 0:
        return True
    kind = kinds[i]
    if kind == "keyword":
        return True
    return kind == "op" and out[i] not in (")", "]")


def _collapse_in_list(out: list[str], kinds: list[str]) -> bool:
    """Turn a trailing ``IN ( v , v , ... v`` into ``IN (...)`` when the closing parenthesis arrives."""
    i = len(out) - 1
    while i >= 1 and kinds[i] == "value":
        if out[i - 1] == ",":
            i -= 2
        elif out[i - 1] == "(":
            if i >= 2 and out[i - 2] == "IN":
                del out[i - 1:]
                del kinds[i - 1:]
                out.append(_COLLAPSED_LIST)
                kinds.append("op")
                return True
            return False
        else:
            return False
    return False


def _join(out: list[str], kinds: list[str]) -> str:
    parts: list[str] = []
    prev = ""
    prev_kind = ""
    for text, kind in zip(out, kinds, strict=True):
        if parts:
            if text in _NO_SPACE_BEFORE or prev in _NO_SPACE_AFTER:
                pass
            elif text == "(" and prev_kind == "word":  # a function call or a column list: f(x), t(a, b)
                pass
            else:
                parts.append(" ")
        parts.append(text)
        prev = text
        prev_kind = kind
    return "".join(parts)


def hash_digest_text(digest_text: str) -> str:
    """The digest hash of an already computed digest text (see :func:`digest_hash`)."""
    return hashlib.sha256(digest_text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def digest_hash(sql: str, *, dialect: Dialect = "mysql") -> str:
    """Return the first 32 hex digits of the SHA-256 of the digest text: a stable id for a statement group.

    >>> digest_hash("SELECT 1") == digest_hash("select   2 -- other")
    True
    >>> len(digest_hash("SELECT 1"))
    32
    """
    return hash_digest_text(digest(sql, dialect=dialect))
