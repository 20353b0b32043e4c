"""Parse SQL with sqlglot behind a statement-shape cache whose plans are re-bound to new literals."""

# How the cache stays exact
# -------------------------
# ``normalize`` is a hand-written scanner (one regular expression per dialect plus a little code for nested
# comments and dollar quotes) that mirrors sqlglot's tokenizer rules for MySQL and PostgreSQL. It replaces every
# literal token with a NUL-prefixed marker (NUL never occurs outside a literal: both servers reject it in query
# text, and the scanner refuses a statement that has one), so two statements share a key exactly when their
# non-literal text is identical and their literals have the same kinds and quote forms. Whatever the scanner
# is not sure about (a number glued to a word, ``.5``, ``U&'..'``, an unterminated quote, ...) makes it refuse:
# the statement is then parsed without the cache, never guessed at.
#
# On a miss, the statement itself is parsed (that tree is the reference), and so is a *probe*: the same text
# with every literal replaced by a unique sentinel of the same kind and quote form. The nodes holding the
# sentinels are located in the probe tree and replaced by indexed placeholders; that tree is the template.
# A literal whose sentinel does not come back as exactly one leaf literal node (sqlglot turned it into a JSON
# path, split an interval string, made it an alias, ...) or that is an ORDER BY / GROUP BY ordinal is *pinned*:
# its text becomes part of the key and the template keeps it as it is. Finally the template bound to the
# statement's own literals must equal the reference tree (== and generated SQL); otherwise every literal is
# pinned, which caches by the exact text. So a template never reaches the cache unless two different sets of
# values (the sentinels and the statement's own) produced the same structure, and the one it is stored for is
# proven. The tests check the rest over a corpus and generated statements.
#
# Templates are shared by every statement of their shape and must never be mutated: ``bound()`` copies the
# template (sqlglot's compiled deep copy; position metadata is stripped from templates, which makes that copy
# about four times cheaper) and puts fresh literal nodes at recorded paths.

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, NamedTuple

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import TokenType

from dbmesh.errors import PROTOCOL_MALFORMED, STATEMENT_UNSUPPORTED, DbMeshError, ProtocolError

__all__ = [
    "Literal",
    "LiteralSlot",
    "ParseCache",
    "ParsedStatement",
    "PreparedStatement",
    "Shape",
    "ShapeError",
    "SqlParseError",
    "mark_parameters",
    "normalize",
    "parse",
]

DIALECTS: Final = ("mysql", "postgres")
_ALIASES: Final = {"mysql": "mysql", "postgres": "postgres", "postgresql": "postgres"}

# Literal kinds. Signs are not part of a literal: sqlglot parses ``-5`` as Neg(5) in both dialects, so the
# minus stays in the key (``a = -5`` and ``a = 5`` are two shapes) and binding stays exact.
INT: Final = "int"
DECIMAL: Final = "decimal"
FLOAT: Final = "float"  # scientific notation
STRING: Final = "string"
HEX: Final = "hex"
BIT: Final = "bit"
_KIND_CODE: Final = {INT: "i", DECIMAL: "d", FLOAT: "f", STRING: "s", HEX: "x", BIT: "b"}

# Node classes a literal may become; anything else holding a sentinel pins the literal.
_LITERAL_NODES: Final = (exp.Literal, exp.HexString, exp.BitString, exp.ByteString, exp.National, exp.RawString)
_POSITION_META: Final = ("line", "col", "start", "end")
_SENTINEL_INT: Final = 73_580_000_000
_SENTINEL_PARAM: Final = 73_590_000_000


class SqlParseError(DbMeshError):
    """sqlglot could not parse a statement; the message carries sqlglot's own (line, column, token)."""

    layer = "parse"

    def __init__(self, detail: str) -> None:
        # FIXME(errors): the catalogue has no syntax-error entry (MySQL 1064/42000, PostgreSQL 42601) yet;
        # "not supported" is honest meanwhile: sqlglot's grammar is narrower than the servers'.
        super().__init__(STATEMENT_UNSUPPORTED, construct="statement", detail=detail)


class ShapeError(ValueError):
    """The scanner cannot normalise this statement safely; it is parsed without the cache."""


class Literal(NamedTuple):
    """One literal of a statement: its exact source text, kind, offset, quote form and content."""

    text: str  # exact source text, quotes and prefix included
    kind: str  # INT | DECIMAL | FLOAT | STRING | HEX | BIT
    start: int  # offset in the statement
    prefix: str = ""  # "'", '"', "E'", "x'", "0x", "$tag$", ... ("" for numbers)
    suffix: str = ""
    content: str = ""  # the text sqlglot keeps in the node (unescaped for strings); a NamedTuple: cheap to make


@dataclass(frozen=True, slots=True)
class Shape:
    """A statement with its literals taken out: ``key`` is the cache key, ``literals`` in source order."""

    key: str
    literals: tuple[Literal, ...]


def _dialect_name(dialect: str) -> str:
    try:
        return _ALIASES[dialect.lower()]
    except KeyError:
        raise ValueError(f"unsupported dialect {dialect!r} (expected one of {DIALECTS})") from None


# ---------------------------------------------------------------------------------------------------------------
# The scanner. Each match is a run of structural text (``skip``: operators, spaces, punctuation, words, any
# character no token starts with) followed by one token, the alternatives tried in order; ``end`` matches at the
# end of the text. Every character either continues the run or starts a token, so the loop only sees tokens; a
# position where no alternative matches (not expected) makes the scanner refuse rather than skip text.
_NUM = r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?"
# A word is only skipped when no quote follows it: ``x'..'``, ``N'..'``, ``_utf8mb4'..'`` and ``E'..'`` start
# literals. The negated class lists every character a token may start with.
_WORD = r"[^\W0-9][\w$]*+"
# The same for the common all-ASCII word, tried first (faster); it gives way to _WORD when a non-ASCII word
# character follows, so word boundaries stay _WORD's.
_ASCII_WORD = r"[A-Za-z_][A-Za-z0-9_$]*+"
_MYSQL_RE: Final = re.compile(
    r"""(?P<skip>(?:[ ,()=<>*+;|&!~^%:@]++|""" + _ASCII_WORD + r"""(?![\w'"`])|""" + _WORD + r"""(?!['"`])
                    |[^\w'"`\#/\-?$.\x00]|-(?!-)|/(?!\*)|\.(?![0-9]))*+)
      (?:(?P<lc>--[^\n]*|\#[^\n]*)
      |(?P<bc>/\*)
      |(?P<qid>`[^`]*`)
      |(?P<hex>[xX]'[0-9A-Fa-f]*'|0x[0-9A-Fa-f]+)
      |(?P<bit>[bB]'[01]*'|0b[01]+)
      |(?P<bad>[xXbB]'|\.[0-9]|\$|\x00)
      |(?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
      |(?P<num>""" + _NUM + r""")
      |(?P<word>[^\W0-9][\w$]*)
      |(?P<qmark>\?)
      |(?P<bad2>['"`])
      |(?P<end>\Z))""",
    re.VERBOSE | re.DOTALL,
)
_PG_RE: Final = re.compile(
    r"""(?P<skip>(?:[ ,()=<>*+;|!~^%:@]++|""" + _ASCII_WORD + r"""(?![\w&'"])|""" + _WORD + r"""(?![&'"])
                    |[^\w'"/\-$.&\x00]|&(?!['"])|-(?!-)|/(?!\*)|\.(?![0-9]))*+)
      (?:(?P<lc>--[^\n]*)
      |(?P<bc>/\*)
      |(?P<qid>"[^"]*")
      |(?P<hex>[xX]'[0-9A-Fa-f]*')
      |(?P<bit>[bB]'[01]*')
      |(?P<estr>[eE]'(?:[^'\\]|\\.|'')*')
      |(?P<bad>[xXbBeE]'|[uU]&['"]|&['"]|\.[0-9]|\x00)
      |(?P<param>\$[0-9]+)
      |(?P<dollar>\$(?:[^\W0-9]\w*)?\$)
      |(?P<str>'(?:[^']|'')*')
      |(?P<num>""" + _NUM + r""")
      |(?P<word>[^\W0-9][\w$]*)
      |(?P<bad2>['"$])
      |(?P<end>\Z))""",
    re.VERBOSE | re.DOTALL,
)
# After a number, hex or parameter these would glue on (MySQL identifiers may start with digits; ``1.2.3``).
_GLUE: Final = re.compile(r"[\w$.]")
_ESCAPY: Final = re.compile(r"['\"\\]")
_PG_PARAM: Final = re.compile(r"\$[0-9]+")


class _Scan(NamedTuple):
    """What the scanner finds (a NamedTuple: a cache hit makes one per statement, a frozen dataclass costs more)."""

    key: str
    literals: tuple[Literal, ...]
    markers: tuple[int, ...]  # offsets of MySQL '?' / PostgreSQL '$n' parameters (for prepared statements)

    @property
    def shape(self) -> Shape:
        return Shape(self.key, self.literals)


def _block_comment_end(sql: str, start: int, nested: bool) -> int:
    """End offset (exclusive) of the block comment opening at ``start``; PostgreSQL comments nest."""
    if not nested:
        end = sql.find("*/", start + 2)
        if end < 0:
            raise ShapeError("unterminated comment")
        return end + 2
    depth, pos = 0, start
    while True:
        opening = sql.find("/*", pos)
        closing = sql.find("*/", pos)
        if closing < 0:
            raise ShapeError("unterminated comment")
        if 0 <= opening < closing:
            depth += 1
            pos = opening + 2
        else:
            depth -= 1
            pos = closing + 2
            if depth == 0:
                return pos


def _string_content(text: str, prefix: str, suffix: str, dialect: str) -> str:
    """The text sqlglot keeps for a string literal: the inner text, unescaped by sqlglot's own tokenizer."""
    inner = text[len(prefix) : len(text) - len(suffix)]
    if not _ESCAPY.search(inner):
        return inner  # nothing to unescape: the tokenizer keeps such text as it is
    tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(text)
    # One token spanning exactly this text means sqlglot ends the string where the scanner did.
    if len(tokens) != 1 or tokens[0].start != 0 or tokens[0].end != len(text) - 1:
        raise ShapeError(f"string literal at odds with sqlglot's tokenizer: {text[:40]!r}")
    if tokens[0].token_type not in (TokenType.STRING, TokenType.BYTE_STRING, TokenType.HEREDOC_STRING):
        raise ShapeError(f"unexpected token for a string literal: {tokens[0].token_type}")
    return tokens[0].text


def _scan(sql: str, dialect: str) -> _Scan:
    pg = dialect == "postgres"
    match = (_PG_RE if pg else _MYSQL_RE).match
    glue = _GLUE.match
    size = len(sql)
    parts: list[str] = []
    literals: list[Literal] = []
    markers: list[int] = []
    last = 0  # end of the text already copied into parts
    pos = 0
    while True:
        m = match(sql, pos)
        if m is None:
            raise ShapeError(f"cannot normalise near offset {pos}")  # pragma: no cover - every character matches
        group = m.lastgroup
        if group == "end":
            break
        start = m.end(1)  # the token, after the structural run
        pos = m.end()
        if group == "word" or group == "qid" or group == "lc":
            continue
        if group == "num":
            text = sql[start:pos]
            if pos < size and glue(sql, pos):
                raise ShapeError("number glued to a word or a dot")
            kind = FLOAT if ("e" in text or "E" in text) else DECIMAL if "." in text else INT
            lit = Literal(text, kind, start, "", "", text)
        elif group == "str" or group == "estr":
            if start > 0 and sql[start - 1] == "@":
                continue  # MySQL @'quoted variable name': a name, not a value
            text = sql[start:pos]
            prefix = text[:2] if group == "estr" else text[0]
            lit = Literal(text, STRING, start, prefix, text[-1], _string_content(text, prefix, text[-1], dialect))
        elif group == "bc":
            pos = _block_comment_end(sql, start, pg)  # resume after it: nothing inside a comment is a literal
            continue
        elif group == "qmark" or group == "param":
            if group == "param" and pos < size and glue(sql, pos):
                raise ShapeError("parameter glued to a word")
            markers.append(start)
            continue
        elif group == "hex" or group == "bit":
            text = sql[start:pos]
            kind = HEX if group == "hex" else BIT
            if text[0] == "0":
                if pos < size and glue(sql, pos):
                    raise ShapeError("hex/bit literal glued to a word")
                prefix, suffix = text[:2], ""
            else:
                prefix, suffix = text[:2], "'"
            lit = Literal(text, kind, start, prefix, suffix, text[len(prefix) : len(text) - len(suffix)])
        elif group == "dollar":
            tag = sql[start:pos]
            close = sql.find(tag, pos)
            if close < 0:
                raise ShapeError("unterminated dollar-quoted string")
            pos = close + len(tag)
            text = sql[start:pos]
            lit = Literal(text, STRING, start, tag, tag, _string_content(text, tag, tag, dialect))
        else:  # bad, bad2
            raise ShapeError(f"cannot normalise near offset {start}: {sql[start:start + 20]!r}")
        parts.append(sql[last:start])
        parts.append("\x00" + _KIND_CODE[lit.kind] + lit.prefix)
        last = pos
        literals.append(lit)
    parts.append(sql[last:])
    return _Scan("".join(parts), tuple(literals), tuple(markers))


# Why `split_literals` finds exactly the normaliser's literals for the statements whose pieces are plain
# ------------------------------------------------------------------------------------------------------------
# (ParseCache.get and kernel.point's text form both rely on it.)
# It splits on runs of ASCII digits not preceded by a word character or `$`. A shape is only learnt when the
# normaliser (parse.normalize) found exactly those runs as its literals, all integers, with the same offsets, no
# literal pinned, and when the text between them (the pieces) holds only letters, digits, `_`, white space and
# `,()=<>*.;` (no quotes, comments, `$`, `?`, `-`, `/`, `@`, `#`, `:`). A later statement is matched to the shape
# only when its pieces are the same strings and as many. The normaliser's decisions around a literal look at one
# character on either side of a digit run (a word before it would have swallowed it, a word character, `.` or `$`
# after it glues, a `.` before it is refused), and those characters are the same pieces' ends; its decisions
# inside the pieces never look into a literal beyond its first digit. So it tokenizes every statement with the
# shape's pieces as it did the one the shape was learnt from: the same key, integer literals at the split's runs.
# The unit tests hold the split to the normaliser on generated statements.

# Integer literals of a statement: re.split with a group gives text, digits, text, ...
split_literals: Final = re.compile(r"(?<![\w$])([0-9]+)").split
_PLAIN_PIECE: Final = re.compile(r"[A-Za-z0-9_ \t\r\n,()=<>*.;]*")
_INT_MARKER: Final = "\x00i"  # what normalize puts for an integer literal in a shape key


def shape_key(parts: Sequence[str]) -> str:
    """The parse cache's shape key of a statement `split_literals` split, when the split is the normaliser's."""
    return _INT_MARKER.join(parts[0::2])


def plain_pieces(sql: str, literals: Sequence[Literal]) -> list[str] | None:
    """The text between a statement's literals when the text form can take it: `literals` (the normaliser's)
    are exactly the digit runs `split_literals` finds, all integers, and the text between them is plain (see the
    comment above); else None.

    >>> from dbmesh.kernel.parse import normalize
    >>> sql = "SELECT c FROM t WHERE id = 5;"
    >>> plain_pieces(sql, normalize(sql, "mysql").literals)
    ['SELECT c FROM t WHERE id = ', ';']
    >>> sql = "SELECT c FROM t WHERE id = 5.5"
    >>> plain_pieces(sql, normalize(sql, "mysql").literals) is None
    True
    """
    parts = split_literals(sql)
    if len(parts) != 2 * len(literals) + 1:
        return None
    offset = len(parts[0])
    for i, lit in enumerate(literals):
        if lit.kind != INT or lit.start != offset or lit.text != parts[2 * i + 1]:
            return None
        offset += len(lit.text) + len(parts[2 * i + 2])
    pieces = parts[0::2]
    if not all(_PLAIN_PIECE.fullmatch(piece) for piece in pieces):
        return None
    return pieces


_MAX_SPLIT_TEXT: Final = 8192  # longer statements (many-row INSERTs) are scanned: splitting them gains nothing


def _split_ints(parts: list[str]) -> tuple[Literal, ...]:
    """The literals of a statement `split_literals` split, for a shape where that split is the normaliser's."""
    out = []
    offset = len(parts[0])
    for i in range(1, len(parts), 2):
        text = parts[i]
        out.append(Literal(text, INT, offset, "", "", text))
        offset += len(text) + len(parts[i + 1])
    return tuple(out)


def normalize(sql: str, dialect: str) -> Shape:
    """Replace every literal by a marker: the key shared by all statements of one shape, and the literals.

    Numbers (int, decimal, scientific), strings in every quote form of the dialect, hex and bit literals are
    literals. TRUE, FALSE and NULL are not (they change the statement's logic and have two values at most),
    nor are signs, comments (MySQL ``/*! */`` and hints included: they stay in the key as written) or
    identifiers. Raises ShapeError where the scanner cannot be sure it tokenizes as sqlglot does.

    >>> a = normalize("SELECT * FROM t WHERE id = 42 AND name = 'x' LIMIT 10", "mysql")
    >>> b = normalize("SELECT * FROM t WHERE id = 7 AND name = 'yz' LIMIT 10", "mysql")
    >>> a.key == b.key, [lit.text for lit in a.literals]
    (True, ['42', "'x'", '10'])
    >>> normalize("SELECT a FROM t WHERE a IN (1, 2)", "postgres").key.replace("\\x00", "?")
    'SELECT a FROM t WHERE a IN (?i, ?i)'
    >>> normalize("SELECT 1 FROM t WHERE a = -1.5e3", "mysql").literals[1]
    Literal(text='1.5e3', kind='float', start=27, prefix='', suffix='', content='1.5e3')
    """
    return _scan(sql, _dialect_name(dialect)).shape


# ---------------------------------------------------------------------------------------------------------------
# Templates.


@dataclass(frozen=True, slots=True)
class LiteralSlot:
    """Where literal ``index`` goes in a template, and the leaf node class sqlglot makes for it."""

    index: int
    path: tuple[tuple[str, int | None], ...]
    cls: type[exp.Expr]
    extra: tuple[tuple[str, Any], ...]  # the node's other (non-expression) args, e.g. is_string
    comments: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class _Template:
    tree: exp.Expression
    slots: tuple[LiteralSlot, ...]


@dataclass(frozen=True, slots=True)
class _Pinned:
    """Stored under a shape key whose literals at ``indices`` are structural: their text extends the key."""

    indices: tuple[int, ...]


def _parse(sql: str, dialect: str) -> exp.Expression:
    try:
        return _statement(sqlglot.parse_one(sql, read=dialect))
    except SqlglotError as error:
        raise SqlParseError(str(error).split("\n", 1)[0]) from error


def _statement(tree: exp.Expr) -> exp.Expression:
    if not isinstance(tree, exp.Expression):  # pragma: no cover - parse_one returns statements
        raise SqlParseError(f"not a statement: {type(tree).__name__}")
    return tree


def _strip_positions(tree: exp.Expr) -> None:
    """Drop line/column metadata (meaningless for other statements of the shape; it makes copies slow)."""
    for node in tree.walk():
        meta = node._meta
        if meta:
            for key in _POSITION_META:
                meta.pop(key, None)
        if not meta:
            node._meta = None


def _path(node: exp.Expr, root: exp.Expr) -> tuple[tuple[str, int | None], ...]:
    steps: list[tuple[str, int | None]] = []
    while node is not root:
        parent = node.parent
        if parent is None:  # pragma: no cover - every located node hangs below the root
            raise ShapeError("detached node")
        steps.append((node.arg_key or "", node.index))
        node = parent
    steps.reverse()
    return tuple(steps)


def _put(parent: exp.Expr, key: str, index: int | None, node: exp.Expr) -> None:
    """Replace one child in a tree this module owns (``set`` would re-parent a whole list: O(n) per literal)."""
    if index is None:
        parent.args[key] = node
    else:
        parent.args[key][index] = node
    node.parent = parent
    node.arg_key = key
    node.index = index
    up: exp.Expr | None = parent
    while up is not None and up._hash is not None:
        up._hash = None
        up = up.parent


def _child(node: exp.Expr, key: str, index: int | None) -> exp.Expr:
    value = node.args[key]
    child = value if index is None else value[index]
    if not isinstance(child, exp.Expr):  # pragma: no cover - paths come from the template itself
        raise ShapeError("template path does not lead to a node")
    return child


def _leaf(slot: LiteralSlot, literals: Sequence[Literal]) -> exp.Expr:
    node = slot.cls(this=literals[slot.index].content, **dict(slot.extra))
    if slot.comments:
        node.comments = list(slot.comments)
    return node


def _bind(template: _Template, literals: Sequence[Literal]) -> exp.Expression:
    tree = template.tree.copy()
    for slot in template.slots:
        parent: exp.Expr = tree
        for key, index in slot.path[:-1]:
            parent = _child(parent, key, index)
        key, index = slot.path[-1]
        _put(parent, key, index, _leaf(slot, literals))
    return tree


def _sentinel(lit: Literal, i: int) -> str:
    if lit.kind == INT:
        return str(_SENTINEL_INT + i)
    if lit.kind == DECIMAL:
        return f"{_SENTINEL_INT + i}.5"
    if lit.kind == FLOAT:
        return f"{_SENTINEL_INT + i}e1"
    if lit.kind == HEX:
        return f"DB{i:06X}"
    if lit.kind == BIT:
        return "1101101" + format(i, "b")
    return f"__dbmesh_{i}__"


def _is_ordinal(node: exp.Expr) -> bool:
    parent = node.parent
    return (isinstance(parent, exp.Ordered) and node.arg_key == "this") or isinstance(parent, exp.Group)


def _probe(sql: str, dialect: str, literals: tuple[Literal, ...], pinned: frozenset[int]) -> tuple[_Template | None, set[int]]:
    """Parse the statement with sentinels for the unpinned literals; return the template or what to pin."""
    parts: list[str] = []
    wanted: dict[str, int] = {}
    last = 0
    for i, lit in enumerate(literals):
        if i in pinned:
            continue
        value = _sentinel(lit, i)
        wanted[value] = i
        parts.append(sql[last : lit.start])
        parts.append(lit.prefix + value + lit.suffix)
        last = lit.start + len(lit.text)
    parts.append(sql[last:])
    try:
        tree = _statement(sqlglot.parse_one("".join(parts), read=dialect))
    except (SqlglotError, SqlParseError):
        return None, set(wanted.values())
    found: dict[int, list[exp.Expr]] = {}
    for node in tree.walk():
        this = node.args.get("this")
        if type(this) is str and this in wanted:
            found.setdefault(wanted[this], []).append(node)
    missing = set(wanted.values()) - found.keys()
    for i, nodes in found.items():
        node = nodes[0]
        if (
            len(nodes) != 1
            or not isinstance(node, _LITERAL_NODES)
            or any(isinstance(v, (exp.Expr, list)) for k, v in node.args.items() if k != "this")
            or node.parent is None
            or _is_ordinal(node)
        ):
            missing.add(i)
    if missing:
        return None, missing
    _strip_positions(tree)
    slots: list[LiteralSlot] = []
    for i in sorted(found):
        node = found[i][0]
        path = _path(node, tree)
        extra = tuple((k, v) for k, v in node.args.items() if k != "this")
        comments = tuple(node.comments) if node.comments else None
        parent = node.parent
        assert parent is not None  # checked above
        _put(parent, path[-1][0], path[-1][1], exp.Placeholder(this=f"dbm_{i}"))
        slots.append(LiteralSlot(i, path, type(node), extra, comments))
    return _Template(tree, tuple(slots)), set()


def _same(a: exp.Expression, b: exp.Expression, dialect: str) -> bool:
    return a == b and a.sql(dialect) == b.sql(dialect)


def _build(
    sql: str, dialect: str, shape: Shape, reference: exp.Expression, pinned: frozenset[int]
) -> tuple[_Template, frozenset[int]]:
    """The template for ``sql`` and the literal indices it pins (all of them when nothing else is proven)."""
    everything = frozenset(range(len(shape.literals)))
    for _ in range(2):  # a first probe may reveal structural literals; a second one confirms without them
        if pinned == everything:
            break
        template, missing = _probe(sql, dialect, shape.literals, pinned)
        if template is None:
            pinned = pinned | missing
            continue
        if _same(_bind(template, shape.literals), reference, dialect):
            return template, pinned
        break
    exact = reference.copy()
    _strip_positions(exact)
    return _Template(exact, ()), everything


# ---------------------------------------------------------------------------------------------------------------
# Results.


class ParsedStatement:
    """A parsed statement: the shared template tree (read-only), its literals, and ``bound()`` for a new tree.

    ``tree`` has ``exp.Placeholder(dbm_<i>)`` nodes where literal ``i`` was (pinned literals stay as written).
    It is shared by every statement of the shape: never mutate it; ``bound()`` returns a tree you own.
    """

    __slots__ = ("_template", "cached", "dialect", "literals")

    def __init__(self, template: _Template, literals: tuple[Literal, ...], dialect: str, cached: bool) -> None:
        self._template = template
        self.literals = literals
        self.dialect = dialect
        self.cached = cached  # False: the statement could not be normalised and was parsed on its own

    @property
    def tree(self) -> exp.Expression:
        return self._template.tree

    def bound(self) -> exp.Expression:
        """A new tree with this statement's literals in place: equal to sqlglot's own parse of the SQL.

        >>> cache = ParseCache(16)
        >>> cache.get("SELECT a FROM t WHERE id = 5", "mysql").bound().sql("mysql")
        'SELECT a FROM t WHERE id = 5'
        >>> cache.get("SELECT a FROM t WHERE id = 6", "mysql").bound().sql("mysql"), cache.hits
        ('SELECT a FROM t WHERE id = 6', 1)
        """
        return _bind(self._template, self.literals)

    def literal(self, i: int) -> Literal:
        """Literal ``i`` in source order."""
        return self.literals[i]

    @property
    def slots(self) -> tuple[LiteralSlot, ...]:
        """The literal slots of ``tree``: where each ``Placeholder(dbm_<index>)`` sits and the node it binds to."""
        return self._template.slots

    def literal_node(self, slot: LiteralSlot) -> exp.Expr:
        """The node ``bound()`` puts at ``slot``: this statement's literal, as sqlglot parses it."""
        return _leaf(slot, self.literals)

    def value(self, i: int) -> object:
        """Literal ``i`` as a Python value for routing (signs are separate Neg nodes in the tree).

        int → int; decimal → Decimal; scientific → float in MySQL (a DOUBLE), Decimal in PostgreSQL
        (numeric); string → str (unescaped); hex → bytes in MySQL, an int in PostgreSQL (a bit string there);
        bit → int.

        >>> p = ParseCache(4).get("SELECT * FROM t WHERE a = 0x0A AND b = 'it''s' AND c IN (1.50, 2e1)", "mysql")
        >>> [p.value(i) for i in range(len(p.literals))]
        [b'\\n', "it's", Decimal('1.50'), 20.0]
        """
        lit = self.literals[i]
        if lit.kind == INT:
            return int(lit.content)
        if lit.kind == DECIMAL:
            return Decimal(lit.content)
        if lit.kind == FLOAT:
            return Decimal(lit.content) if self.dialect == "postgres" else float(lit.content)
        if lit.kind == HEX:
            if self.dialect == "postgres":
                return int(lit.content or "0", 16)
            digits = lit.content
            return bytes.fromhex(digits if len(digits) % 2 == 0 else "0" + digits)
        if lit.kind == BIT:
            return int(lit.content or "0", 2)
        return lit.content

    def values(self) -> tuple[object, ...]:
        """Every literal's value (see ``value``)."""
        return tuple(self.value(i) for i in range(len(self.literals)))

    def __repr__(self) -> str:
        return f"ParsedStatement({self.tree.sql(self.dialect)!r}, literals={len(self.literals)}, cached={self.cached})"


@dataclass(frozen=True, slots=True)
class _PreparedTemplate:
    tree: exp.Expression  # '?' / '$n' stay placeholders; shared, read-only
    slots: tuple[tuple[int, tuple[tuple[str, int | None], ...]], ...]  # (parameter index, path)
    count: int  # parameters expected by bind()
    sql: str
    markers: tuple[int, ...]  # parameter offsets in sql, for the text fallback
    exact: bool  # False: slots could not be proven; bind() substitutes text and parses


class PreparedStatement:
    """A prepared statement's tree, cached by its text; ``bind(params)`` returns a new tree with the values.

    Parameters are MySQL ``?`` (numbered by position in the text, which is not always tree order: sqlglot
    writes ``LIMIT ?, ?`` as ``LIMIT ? OFFSET ?``) or PostgreSQL ``$n``. Values are converted with sqlglot's
    ``exp.convert`` (None, bool, int, float, Decimal, str, bytes, date/datetime).

    >>> cache = ParseCache(16)
    >>> p = cache.get_prepared("SELECT * FROM t WHERE a = ? LIMIT ?, ?", "mysql")
    >>> p.tree.sql("mysql")
    'SELECT * FROM t WHERE a = ? LIMIT ? OFFSET ?'
    >>> p.bind([5, 20, 10]).sql("mysql")
    'SELECT * FROM t WHERE a = 5 LIMIT 10 OFFSET 20'
    >>> cache.get_prepared("SELECT $2 FROM t WHERE a = $1::text", "postgres").bind(["x'y", 1]).sql("postgres")
    "SELECT 1 FROM t WHERE a = CAST('x''y' AS TEXT)"
    """

    __slots__ = ("_template", "dialect")

    def __init__(self, template: _PreparedTemplate, dialect: str) -> None:
        self._template = template
        self.dialect = dialect

    @property
    def tree(self) -> exp.Expression:
        return self._template.tree

    @property
    def param_count(self) -> int:
        return self._template.count

    def bind(self, params: Sequence[object]) -> exp.Expression:
        """A new tree with ``params`` in place of the parameters (the cached tree is left alone)."""
        template = self._template
        if len(params) != template.count:
            raise ProtocolError(
                PROTOCOL_MALFORMED,
                detail=f"statement has {template.count} parameters, {len(params)} values were bound")
        try:
            values = [exp.convert(p) for p in params]
        except (ValueError, TypeError, SqlglotError) as error:
            raise ProtocolError(PROTOCOL_MALFORMED, detail=f"cannot bind parameter: {error}") from error
        if not template.exact:
            return self._bind_text(values)
        tree = template.tree.copy()
        for index, path in template.slots:
            parent: exp.Expr = tree
            for key, i in path[:-1]:
                parent = _child(parent, key, i)
            key, i = path[-1]
            _put(parent, key, i, values[index].copy())
        return tree

    def _bind_text(self, values: list[exp.Expr]) -> exp.Expression:
        """Fallback: write the values into the text and parse it (slow, and exact by construction)."""
        template = self._template
        sql, last = template.sql, 0
        parts: list[str] = []
        pg = self.dialect == "postgres"
        for start in template.markers:
            if pg:
                m = _PG_PARAM.match(sql, start)
                assert m is not None
                index, end = int(m.group()[1:]) - 1, m.end()
            else:
                index, end = len(parts) // 2, start + 1
            parts.append(sql[last:start])
            parts.append(_inline(values[index], self.dialect))
            last = end
        parts.append(sql[last:])
        return _parse("".join(parts), self.dialect)


def _inline(value: exp.Expr, dialect: str) -> str:
    text = value.sql(dialect)
    return f"({text})" if isinstance(value, exp.Neg) else text


def _prepare(sql: str, dialect: str) -> _PreparedTemplate:
    reference = _parse(sql, dialect)
    _strip_positions(reference)
    try:
        markers = _scan(sql, dialect).markers
    except ShapeError as error:
        # Without the parameters' offsets neither the tree slots nor the text fallback can be trusted.
        raise SqlParseError(f"cannot locate the parameters of this prepared statement: {error}") from error
    if dialect == "postgres":
        slots = []
        count = max((int(_PG_PARAM.match(sql, start).group()[1:]) for start in markers), default=0)  # type: ignore[union-attr]
        for node in reference.walk():
            if isinstance(node, exp.Parameter) and isinstance(node.this, exp.Literal) and node.this.is_int:
                slots.append((int(node.this.this) - 1, _path(node, reference)))
        # Each $n of the text must be one Parameter node of the tree, else the text fallback binds.
        exact = len(markers) == len(slots) and all(index < count for index, _ in slots)
        return _PreparedTemplate(reference, tuple(slots), count, sql, markers, exact)
    holes = [n for n in reference.walk() if isinstance(n, exp.Placeholder) and n.this is None]
    if not markers and not holes:
        return _PreparedTemplate(reference, (), 0, sql, (), True)
    # Which tree node is which '?': parse again with a unique number at each '?' and find the numbers.
    probe, last = [], 0
    for i, start in enumerate(markers):
        probe += [sql[last:start], str(_SENTINEL_PARAM + i)]
        last = start + 1
    probe.append(sql[last:])
    slots_found: list[tuple[int, tuple[tuple[str, int | None], ...]]] = []
    try:
        tree = _statement(sqlglot.parse_one("".join(probe), read=dialect))
        wanted = {str(_SENTINEL_PARAM + i): i for i in range(len(markers))}
        for node in list(tree.walk()):
            if isinstance(node, exp.Literal) and not node.is_string and node.this in wanted:
                parent = node.parent
                if parent is None:
                    raise ShapeError("parameter at the root")
                i = wanted.pop(node.this)
                path = _path(node, tree)
                _put(parent, path[-1][0], path[-1][1], exp.Placeholder())
                slots_found.append((i, path))
        _strip_positions(tree)
        exact = not wanted and len(holes) == len(markers) and _same(tree, reference, dialect)
    except (SqlglotError, ShapeError, SqlParseError):
        exact = False
    if exact:
        return _PreparedTemplate(tree, tuple(slots_found), len(markers), sql, markers, True)
    return _PreparedTemplate(reference, (), len(markers), sql, markers, False)


# ---------------------------------------------------------------------------------------------------------------
# The cache.


class ParseCache:
    """An LRU of statement templates keyed by shape, and of prepared statements keyed by text.

    Not thread-safe: one cache per event loop (a lost race would only cost a parse, but OrderedDict
    reordering from two threads is not something to rely on).
    """

    def __init__(self, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], _Template | _Pinned | _PreparedTemplate] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.uncacheable = 0  # statements the scanner refused (parsed on their own)
        # Shape keys (with the dialect) whose statements `split_literals` splits exactly as the normaliser does
        # (see the comment above split_literals): their literals are read off the split, without a scan.
        self._split_shapes: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def _lookup(self, key: tuple[str, str]) -> _Template | _Pinned | _PreparedTemplate | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def _store(self, key: tuple[str, str], entry: _Template | _Pinned | _PreparedTemplate) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def get(self, sql: str, dialect: str, parts: list[str] | None = None) -> ParsedStatement:
        """The statement parsed: from the cache when its shape is known, else parsed and cached. `parts`:
        `split_literals(sql)`, when the caller has it.

        Raises SqlParseError when sqlglot cannot parse the statement.
        """
        dialect = _dialect_name(dialect)
        if parts is None and len(sql) <= _MAX_SPLIT_TEXT:
            parts = split_literals(sql)
        if parts is not None and len(parts) > 1:
            key = (dialect, _INT_MARKER.join(parts[0::2]))
            if key in self._split_shapes:
                entry = self._lookup(key)
                if isinstance(entry, _Template):
                    self.hits += 1
                    return ParsedStatement(entry, _split_ints(parts), dialect, True)
        try:
            scan = _scan(sql, dialect)
        except ShapeError:
            self.uncacheable += 1
            reference = _parse(sql, dialect)
            return ParsedStatement(_Template(reference, ()), (), dialect, False)
        entry = self._lookup((dialect, scan.key))
        old_pins: tuple[int, ...] = ()
        if isinstance(entry, _Pinned):
            old_pins = entry.indices
            entry = self._lookup((dialect, _pinned_key(scan.shape, old_pins)))
        if isinstance(entry, _Template):
            self.hits += 1
            if not old_pins and parts is not None and len(parts) > 1 and \
                    plain_pieces(sql, scan.literals) is not None:
                if len(self._split_shapes) >= self.max_entries:
                    self._split_shapes.clear()
                self._split_shapes.add((dialect, scan.key))
            return ParsedStatement(entry, scan.literals, dialect, True)
        self.misses += 1
        shape = scan.shape
        reference = _parse(sql, dialect)
        template, pinned = _build(sql, dialect, shape, reference, frozenset(old_pins))
        # Pins only grow, so the entries stored under the shape's earlier pin set stay consistent; a template
        # built with fewer pins is still right under more (the extra pinned texts are equal by the key).
        pinned = pinned | frozenset(old_pins)
        if pinned:
            indices = tuple(sorted(pinned))
            self._store((dialect, shape.key), _Pinned(indices))
            self._store((dialect, _pinned_key(shape, indices)), template)
        else:
            self._store((dialect, shape.key), template)
        return ParsedStatement(template, shape.literals, dialect, True)

    def get_prepared(self, sql: str, dialect: str) -> PreparedStatement:
        """A prepared statement (``?`` or ``$n`` parameters) parsed once per distinct text."""
        dialect = _dialect_name(dialect)
        key = ("prepared:" + dialect, sql)
        entry = self._lookup(key)
        if isinstance(entry, _PreparedTemplate):
            self.hits += 1
            return PreparedStatement(entry, dialect)
        self.misses += 1
        template = _prepare(sql, dialect)
        self._store(key, template)
        return PreparedStatement(template, dialect)


def _pinned_key(shape: Shape, indices: tuple[int, ...]) -> str:
    # A pin-set entry and its templates live in one dict; "\x00\x00" cannot occur in a shape key.
    # Length-prefixed texts: literal texts may themselves contain NUL.
    return shape.key + "\x00\x00" + "".join(f"{len(t)}:{t}" for t in (shape.literals[i].text for i in indices))


PARAMETER_MARKER: Final = re.compile(r"__dbmesh_p([0-9]+)__")


def mark_parameters(sql: str, dialect: str) -> tuple[str, int]:
    """The statement with each parameter (MySQL ``?``, PostgreSQL ``$n``) replaced by the identifier
    ``__dbmesh_p<i>__`` (i zero-based: the i-th ``?`` in the text, or ``$<i+1>``), and how many values it takes.

    The marked text parses like any statement (the markers are column names to sqlglot, so its shape cache keys
    them as text), and its trees can be rewritten freely: whatever order a generator writes the markers in,
    ``PARAMETER_MARKER`` finds them in the output, which is how the caller renumbers its values. Raises
    SqlParseError when the scanner cannot locate the parameters, and ValueError when the text already contains
    a marker (it would be taken for a parameter).

    >>> mark_parameters("SELECT * FROM t WHERE a = ? LIMIT ?, ?", "mysql")
    ('SELECT * FROM t WHERE a = __dbmesh_p0__ LIMIT __dbmesh_p1__, __dbmesh_p2__', 3)
    >>> mark_parameters("SELECT $2 FROM t WHERE a = $1::text", "postgres")
    ('SELECT __dbmesh_p1__ FROM t WHERE a = __dbmesh_p0__::text', 2)
    """
    dialect = _dialect_name(dialect)
    if "__dbmesh_p" in sql and PARAMETER_MARKER.search(sql):
        raise ValueError("the statement contains a parameter marker name")
    try:
        markers = _scan(sql, dialect).markers
    except ShapeError as error:
        raise SqlParseError(f"cannot locate the parameters of this statement: {error}") from error
    parts: list[str] = []
    last = count = 0
    for i, start in enumerate(markers):
        if dialect == "postgres":
            m = _PG_PARAM.match(sql, start)
            assert m is not None  # the scanner matched the same pattern here
            index, end = int(m.group()[1:]) - 1, m.end()
            if index < 0:
                raise SqlParseError("parameter $0 does not exist")
        else:
            index, end = i, start + 1
        parts += [sql[last:start], f"__dbmesh_p{index}__"]
        last = end
        count = max(count, index + 1)
    parts.append(sql[last:])
    return "".join(parts), count


_DEFAULT_CACHE = ParseCache()


def parse(sql: str, dialect: str) -> ParsedStatement:
    """``get`` on a process-wide cache.

    >>> parse("UPDATE t SET a = 'x' WHERE id = 3", "postgres").values()
    ('x', 3)
    """
    return _DEFAULT_CACHE.get(sql, dialect)
