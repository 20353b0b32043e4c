"""Cutting a LOAD DATA file into rows exactly as the MariaDB/MySQL server's reader does, so each row can go to its
own data node and be read there the same way.

The server reads a row field by field: it reads one field per column of the statement's column list (or of the
table), each ended by FIELDS TERMINATED BY or, ending the line early, LINES TERMINATED BY; a field that starts
with the ENCLOSED BY character ends only at that character followed by a terminator (or the end of the file), and
a doubled one stands for itself; the ESCAPED BY character takes the next byte literally (`\\n`, `\\t`, `\\r`,
`\\b`, `\\0`, `\\Z` translated; `\\N` alone is NULL); an unenclosed `NULL` is NULL when ENCLOSED BY is set. Once a
row has all its fields, the rest of its line is skipped to the next line terminator, honouring escapes and (in
UTF-8) taking a lead byte and the bytes its sequence needs as one unit, even when one of them is a terminator byte
(fields themselves are read byte by byte as far as ASCII separators go). LINES
STARTING BY skips everything up to the prefix; IGNORE n LINES skips lines the same way as the rest of a line.

Guarantee: a row's bytes run from one row boundary to the next, and the server reading them from a fresh start
(same field and line rules, same character set, no IGNORE) reads exactly that row, because the reader keeps no
state across a row boundary and never decides a row on bytes after it (`FieldRules.unsplittable` refuses the
terminator combinations where it would). So the concatenation of any subsequence of rows is read as exactly those
rows, in order.

>>> rules = FieldRules(b",", b'"', b"\\\\", b"", b"\\n", "utf8mb4")
>>> s = RowSplitter(rules, columns=3, wanted=(0, 2))
>>> [(data, fields) for data, fields in s.feed(b'1,"a,b",\\\\N\\n2,x\\n3,y,z,extra\\n')]
[(b'1,"a,b",\\\\N\\n', (b'1', None)), (b'2,x\\n', (b'2', MISSING)), (b'3,y,z,extra\\n', (b'3', b'z'))]
>>> s.finish()
[]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from dbmesh.kernel.load_data import hex_literal


class _Missing:
    """The value of a field the row does not have (the line ended first): the server stores the column's
    empty value there (0, '' or NULL), which is not a value dbmesh can route by."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
Field = bytes | None | _Missing
Row = tuple[bytes, tuple[Field, ...]]

# Character sets whose rows dbmesh can cut: single-byte ones, and UTF-8, whose multi-byte sequences never contain
# an ASCII byte. (In big5, cp932, gbk, sjis or gb18030 a second byte may be an ASCII terminator or escape.)
SINGLE_BYTE_CHARSETS = frozenset({
    "armscii8", "ascii", "binary", "cp1250", "cp1251", "cp1256", "cp1257", "cp850", "cp852", "cp866", "dec8",
    "geostd8", "greek", "hebrew", "hp8", "keybcs2", "koi8r", "koi8u", "latin1", "latin2", "latin5", "latin7",
    "macce", "macroman", "swe7", "tis620"})
UTF8_CHARSETS = frozenset({"utf8", "utf8mb3", "utf8mb4"})

_UNESCAPE = {ord("n"): 0x0A, ord("t"): 0x09, ord("r"): 0x0D, ord("b"): 0x08, ord("0"): 0x00, ord("Z"): 0x1A}
_N = ord("N")


@dataclass(frozen=True, slots=True)
class FieldRules:
    """How a file is cut: the statement's terminators, enclosing and escape characters (`escape` is the one the
    server uses: empty for none), and the character set the file is read in."""

    field_term: bytes
    enclosed: bytes
    escape: bytes
    line_start: bytes
    line_term: bytes
    charset: str

    def unsplittable(self) -> str | None:
        """Why dbmesh cannot cut files under these rules into rows by itself, or None when it can."""
        if len(self.enclosed) > 1 or len(self.escape) > 1:
            return "ENCLOSED BY and ESCAPED BY take one character"
        specials = (self.field_term, self.enclosed, self.escape, self.line_start, self.line_term)
        if any(not s.isascii() for s in specials):
            return "separators outside ASCII"
        if not self.field_term and not self.enclosed:
            return "fixed-size rows (FIELDS TERMINATED BY '' ENCLOSED BY '') depend on column widths"
        if not self.field_term or not self.line_term:
            return "an empty FIELDS or LINES TERMINATED BY"
        if self.field_term == self.line_term:
            return "the same FIELDS and LINES terminator (the whole file is one line)"
        if self.line_term in self.field_term or (self.line_start and self.line_term in self.line_start):
            # The server would decide a row on bytes past its end (a partial FIELDS terminator match).
            return "a LINES terminator inside the FIELDS terminator or the LINES prefix"
        if any(c and c in t for c in (self.enclosed, self.escape)
               for t in (self.field_term, self.line_term, self.line_start)):
            return "an ENCLOSED BY or ESCAPED BY character inside a terminator or the LINES prefix"
        if self.charset not in SINGLE_BYTE_CHARSETS and self.charset not in UTF8_CHARSETS:
            return f"character set {self.charset} (multi-byte sequences may contain separator bytes)"
        return None

    def clause(self) -> str:
        """The FIELDS and LINES clauses, every argument explicit and in hex: data nodes read the rows under these
        rules whatever their sql_mode (an explicit ESCAPED BY is used even under NO_BACKSLASH_ESCAPES)."""
        return (f"FIELDS TERMINATED BY {hex_literal(self.field_term)} ENCLOSED BY {hex_literal(self.enclosed)} "
                f"ESCAPED BY {hex_literal(self.escape)} LINES STARTING BY {hex_literal(self.line_start)} "
                f"TERMINATED BY {hex_literal(self.line_term)}")


class _More(Exception):
    """The row goes on past the bytes received so far."""


def _char_class(codes: Sequence[int]) -> re.Pattern[bytes]:
    codes = sorted({c for c in codes if c >= 0})
    if not codes:
        return re.compile(b"(?!)")
    return re.compile(b"[" + b"".join(re.escape(bytes((c,))) for c in codes) + b"]")


class RowSplitter:
    """Feeds on the file's bytes as they arrive; returns complete rows as (bytes, wanted fields).

    `columns` is how many fields a row has (the column list's length, or the table's column count); `wanted`
    the indexes of the fields to return (the sharding columns). `skip_lines` lines are dropped first (IGNORE n
    LINES). Rows are returned once the server could not read them differently whatever follows; `finish()` at
    the end of the file returns the rest."""

    def __init__(self, rules: FieldRules, columns: int, wanted: Sequence[int], skip_lines: int = 0) -> None:
        reason = rules.unsplittable()
        if reason is not None:
            raise ValueError(reason)
        self.rules = rules
        self.columns = columns
        self.wanted = tuple(wanted)
        self._slot = {index: slot for slot, index in enumerate(self.wanted)}
        self._skip = skip_lines
        self.rows = 0
        self._buf = b""
        self._final = False
        self._done = False
        self._retry_at = 0  # don't re-parse an unfinished row before the buffer reaches this size
        self._q = rules.enclosed[0] if rules.enclosed else -1
        self._e = rules.escape[0] if rules.escape else -1
        self._ft = rules.field_term
        self._lt = rules.line_term
        self._ls = rules.line_start
        self._plain = _char_class((self._e, self._lt[0], self._ft[0]))
        self._in_quotes = _char_class((self._e, self._q))
        multibyte = rules.charset in UTF8_CHARSETS
        self._need = [0] * 256
        if multibyte:
            # Lead bytes and the length of the sequence they start (4-byte ones only in utf8mb4).
            for b in range(0xC2, 0xE0):
                self._need[b] = 2
            for b in range(0xE0, 0xF0):
                self._need[b] = 3
            if rules.charset == "utf8mb4":
                for b in range(0xF0, 0xF5):
                    self._need[b] = 4
        line_codes = [self._e, self._lt[0]] + [b for b in range(256) if self._need[b]]
        self._line = _char_class(line_codes)
        # The common case read without the field machine: a one-byte FIELDS terminator that cannot overlap the
        # LINES one, no LINES prefix, and (checked per row) no enclosing or escape character before the line's end.
        self._simple = len(self._ft) == 1 and self._ft not in self._lt and not self._ls
        self._quoting = _char_class((self._q, self._e))
        self._high = re.compile(b"[\x80-\xff]") if multibyte else None

    # -- public ------------------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Row]:
        if self._done or not data:
            return []
        self._buf = self._buf + data if self._buf else data
        if len(self._buf) < self._retry_at:
            return []
        return self._cut()

    def finish(self) -> list[Row]:
        """The end of the file: the rows still buffered (the last one may lack its line terminator)."""
        self._final = True
        if self._done:
            return []
        return self._cut()

    # -- the reader ----------------------------------------------------------------------------------------------

    def _cut(self) -> list[Row]:
        buf, n, final = self._buf, len(self._buf), self._final
        out: list[Row] = []
        i = 0
        try:
            while self._skip > 0:
                i, eof = self._next_line(buf, i, n, final)
                self._skip -= 1
                if eof:
                    self._done = True
                    break
            while not self._done:
                got = self._row(buf, i, n, final)
                if got is None:
                    self._done = True
                    break
                end, fields, eof = got
                out.append((buf[i:end], fields))
                i = end
                if eof:
                    self._done = True
        except _More:
            # Parse the unfinished row again only once the buffer has doubled: linear time for huge rows.
            self._retry_at = 2 * (n - i)
        else:
            self._retry_at = 0
        self._buf = buf[i:] if not self._done else b""
        self.rows += len(out)
        return out

    def _row(self, buf: bytes, i: int, n: int, final: bool) -> tuple[int, tuple[Field, ...], bool] | None:
        """One row from a row boundary: (end, wanted fields, the file ended), or None when the file has ended."""
        if self._simple:
            got = self._simple_row(buf, i)
            if got is not None:
                return got
        return self._field_row(buf, i, n, final)

    def _simple_row(self, buf: bytes, i: int) -> tuple[int, tuple[Field, ...], bool] | None:
        """A row that is its line split at the FIELDS terminator, or None when the general reader must read it
        (quotes or escapes before the line's end, no line end yet, or a skipped rest of line that holds multi-byte
        sequences). Same result as the general reader: with no enclosing or escape byte, a field ends at the first
        FIELDS or LINES terminator, and the rest of a line after the last column is skipped to the LINES one."""
        lt = self._lt
        j = buf.find(lt, i)
        if j < 0 or self._quoting.search(buf, i, j) is not None:
            return None
        parts = buf[i:j].split(self._ft, self.columns)
        if len(parts) > self.columns:
            high = self._high
            if high is not None and high.search(parts[-1]) is not None:
                return None
        q = self._q
        fields: list[Field] = []
        for index in self.wanted:
            if index >= len(parts):
                fields.append(MISSING)
            else:
                value = parts[index]
                fields.append(None if q >= 0 and value == b"NULL" else value)
        return j + len(lt), tuple(fields), False

    def _field_row(self, buf: bytes, i: int, n: int, final: bool) -> tuple[int, tuple[Field, ...], bool] | None:
        fields: list[Field] = [MISSING] * len(self.wanted)
        slot = self._slot
        start_of_line = bool(self._ls)
        end_of_line = eof = False
        read = 0
        for column in range(self.columns):
            if end_of_line:
                break
            if start_of_line:
                start_of_line = False
                j = buf.find(self._ls, i)
                if j < 0:
                    if not final:
                        raise _More
                    i, end_of_line, eof = n, True, True
                    break
                i = j + len(self._ls)
            if i >= n:
                if not final:
                    raise _More
                end_of_line = eof = True
                break
            keep = slot.get(column)
            i, value, end_of_line, eof = self._field(buf, i, n, final, keep is not None)
            read += 1
            if keep is not None:
                fields[keep] = value
        if read == 0:
            return None
        if not end_of_line:
            i, eof = self._next_line(buf, i, n, final)
        return i, tuple(fields), eof

    def _term(self, buf: bytes, i: int, n: int, final: bool, term: bytes) -> bool:
        """Is the rest of `term` (its first byte just read) at i? Needs more bytes when undecided."""
        if len(term) == 1 or buf.startswith(term[1:], i):
            return True
        if i + len(term) - 1 > n and term[1:].startswith(buf[i:n]) and not final:
            raise _More
        return False

    def _field(self, buf: bytes, i: int, n: int, final: bool, keep: bool) -> tuple[int, Field, bool, bool]:
        """One field starting at i (not at the end): (next position, value, line ended, file ended)."""
        q, e, ft, lt = self._q, self._e, self._ft, self._lt
        ft0, lt0 = ft[0], lt[0]
        quoted = buf[i] == q
        data = bytearray()
        found_null = False
        if quoted:
            i += 1
            data.append(q)
        pattern = self._in_quotes if quoted else self._plain
        while True:
            m = pattern.search(buf, i)
            j = m.start() if m is not None else n
            if keep and j > i:
                data += buf[i:j]
            i = j
            if i >= n:
                if not final:
                    raise _More
                return n, self._value(data, False, found_null, keep), True, True
            c = buf[i]
            i += 1
            if c == e:
                if i >= n:
                    if not final:
                        raise _More
                    data.append(e)
                    return n, self._value(data, False, found_null, keep), True, True
                c2 = buf[i]
                if e != q or c2 == e:
                    i += 1
                    if c2 == _N:
                        found_null = True
                    data.append(_UNESCAPE.get(c2, c2))
                    continue
                # ESCAPED BY equals ENCLOSED BY and is not doubled: it acts as the enclosing character.
            if c == lt0 and not quoted and self._term(buf, i, n, final, lt):
                return i + len(lt) - 1, self._value(data, False, found_null, keep), True, False
            if quoted and c == q:
                if i >= n:
                    if not final:
                        raise _More
                    return n, self._value(data, True, found_null, keep), True, False
                c2 = buf[i]
                i += 1
                if c2 == q:
                    data.append(q)
                    continue
                if c2 == lt0 and self._term(buf, i, n, final, lt):
                    return i + len(lt) - 1, self._value(data, True, found_null, keep), True, False
                if c2 == ft0 and self._term(buf, i, n, final, ft):
                    return i + len(ft) - 1, self._value(data, True, found_null, keep), False, False
                i -= 1  # not the end: the quote is data and the next byte is read again
            elif c == ft0 and not quoted and self._term(buf, i, n, final, ft):
                return i + len(ft) - 1, self._value(data, False, found_null, keep), False, False
            data.append(c)

    def _value(self, data: bytearray, enclosed: bool, found_null: bool, keep: bool) -> Field:
        if not keep:
            return None
        value = bytes(data[1:]) if enclosed else bytes(data)
        if (not enclosed and self._q >= 0 and value == b"NULL") or (len(value) == 1 and found_null):
            return None
        return value

    def _next_line(self, buf: bytes, i: int, n: int, final: bool) -> tuple[int, bool]:
        """Skip to just past the next line terminator: (position, the file ended first)."""
        e, lt, need = self._e, self._lt, self._need
        pattern = self._line
        while True:
            m = pattern.search(buf, i)
            if m is None:
                if not final:
                    raise _More
                return n, True
            i = m.start()
            c = buf[i]
            i += 1
            if need[c]:
                # The server takes a lead byte and the bytes its sequence needs as one character, whatever they
                # are: a line terminator among them is not one.
                i += need[c] - 1
                if i > n:
                    if not final:
                        raise _More
                    return n, True
                continue
            if c == e:
                if i >= n:
                    if not final:
                        raise _More
                    return n, True
                i += 1
                continue
            if self._term(buf, i, n, final, lt):
                return i + len(lt) - 1, False
