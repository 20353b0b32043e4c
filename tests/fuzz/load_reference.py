"""A slow, literal model of the server's LOAD DATA reader, the reference the fast row splitter is held to.

It reads one byte at a time through a push-back stack, as the server's READ_INFO does (GET/PUSH), with the
multi-byte handling MariaDB 10.11 shows: after a UTF-8 lead byte, a field keeps reading continuation bytes and gives
back the first one that breaks the sequence, while the skip to the end of a line takes as many bytes as the lead
byte announces, whatever they are. tests/integration/
test_load_data_rows.py checks this model against a real MariaDB; the fuzz tests check the splitter against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dbmesh.kernel.load_rows import MISSING, UTF8_CHARSETS, FieldRules

EOF = -1
_UNESCAPE = {ord("n"): 0x0A, ord("t"): 0x09, ord("r"): 0x0D, ord("b"): 0x08, ord("0"): 0x00, ord("Z"): 0x1A}
TOOSMALL, ILSEQ = -101, -1


def charlen(seq: list[int], mb4: bool) -> int:
    """The length of the character `seq` starts, TOOSMALL while it is an incomplete valid prefix, ILSEQ."""
    c = seq[0]
    if c < 0x80:
        return 1
    if c < 0xC2:
        return ILSEQ
    if c < 0xE0:
        need = 2
    elif c < 0xF0:
        need = 3
    elif mb4 and c < 0xF5:
        need = 4
    else:
        return ILSEQ
    for b in seq[1:]:
        if not 0x80 <= b <= 0xBF:
            return ILSEQ
    return TOOSMALL if len(seq) < need else need


def lead_length(c: int, mb4: bool) -> int:
    """How many bytes a sequence starting with `c` takes, by its first byte alone."""
    if 0xC2 <= c < 0xE0:
        return 2
    if 0xE0 <= c < 0xF0:
        return 3
    if mb4 and 0xF0 <= c < 0xF5:
        return 4
    return 1


@dataclass
class Reference:
    data: bytes
    rules: FieldRules
    pos: int = 0
    stack: list[int] = field(default_factory=list)
    found_end_of_line: bool = False
    eof: bool = False
    start_of_line: bool = False
    enclosed: bool = False
    found_null: bool = False
    value: bytes = b""

    def __post_init__(self) -> None:
        r = self.rules
        self.mb = r.charset in UTF8_CHARSETS
        self.mb4 = r.charset == "utf8mb4"
        self.q = r.enclosed[0] if r.enclosed else None
        self.e = r.escape[0] if r.escape else None
        self.start_of_line = bool(r.line_start)

    # byte stream
    def get(self) -> int:
        if self.stack:
            return self.stack.pop()
        if self.pos < len(self.data):
            self.pos += 1
            return self.data[self.pos - 1]
        return EOF

    def push(self, c: int) -> None:
        self.stack.append(c)

    def consumed(self) -> int:
        return self.pos - sum(1 for c in self.stack if c != EOF)

    def terminator(self, term: bytes) -> bool:
        """`term`'s first byte was just read: read the rest, or give everything back."""
        read: list[int] = []
        for expected in term[1:]:
            c = self.get()
            if c != expected:
                self.push(c)
                for b in reversed(read):
                    self.push(b)
                return False
            read.append(c)
        return True

    def is_term(self, c: int, term: bytes) -> bool:
        return bool(term) and c == term[0] and self.terminator(term)

    # reader
    def find_start_of_fields(self) -> bool:
        while (c := self.get()) != EOF:
            if self.is_term(c, self.rules.line_start):
                return False
        self.found_end_of_line = self.eof = True
        return True

    def read_mbtail(self, data: list[int]) -> bool:
        lead = len(data) - 1
        chlen = charlen(data[lead:], self.mb4)
        while chlen == TOOSMALL:
            c = self.get()
            if c == EOF:
                return True
            data.append(c)
            chlen = charlen(data[lead:], self.mb4)
            if chlen == ILSEQ:
                data.pop()
                self.push(c)
                return False
        return False

    def read_field(self) -> bool:
        """True: no field (line or file ended). Else the field is in value/enclosed/found_null."""
        self.found_null = False
        if self.found_end_of_line:
            return True
        if self.start_of_line:
            self.start_of_line = False
            if self.find_start_of_fields():
                return True
        c = self.get()
        if c == EOF:
            self.found_end_of_line = self.eof = True
            return True
        data: list[int] = []
        lt, ft = self.rules.line_term, self.rules.field_term
        if c == self.q:
            quote: int | None = c
            data.append(c)
        else:
            quote = None
            self.push(c)
        while True:
            c = self.get()
            if c == EOF:
                return self._found_eof(data)
            if c == self.e:
                c = self.get()
                if c == EOF:
                    data.append(self.e)
                    return self._found_eof(data)
                if self.e != self.q or c == self.e:
                    if c == ord("N"):
                        self.found_null = True
                    data.append(_UNESCAPE.get(c, c))
                    continue
                self.push(c)
                c = self.e
            if quote is None and self.is_term(c, lt):
                return self._ended(data, False, True)
            if quote is not None and c == quote:
                c = self.get()
                if c == quote:
                    data.append(c)
                    continue
                if c == EOF or self.is_term(c, lt):
                    return self._ended(data, True, True)
                if self.is_term(c, ft):
                    return self._ended(data, True, False)
                self.push(c)
                c = quote
            elif quote is None and self.is_term(c, ft):
                return self._ended(data, False, False)
            data.append(c)
            if self.mb and self.read_mbtail(data):
                return self._found_eof(data)

    def _found_eof(self, data: list[int]) -> bool:
        self.found_end_of_line = self.eof = True
        return self._ended(data, False, True)

    def _ended(self, data: list[int], enclosed: bool, end_of_line: bool) -> bool:
        self.enclosed = enclosed
        if end_of_line:
            self.found_end_of_line = True
        self.value = bytes(data[1:] if enclosed else data)
        return False

    def next_line(self) -> bool:
        """Skip the rest of the line; True at the end of the file."""
        self.start_of_line = bool(self.rules.line_start)
        if self.found_end_of_line or self.eof:
            self.found_end_of_line = False
            return self.eof
        while True:
            c = self.get()
            if c == EOF:
                self.eof = True
                return True
            if self.mb and (need := lead_length(c, self.mb4)) > 1:
                # MariaDB 10.11 reads the bytes a lead byte announces without looking at them.
                for _ in range(need - 1):
                    if self.get() == EOF:
                        self.eof = True
                        return True
                continue
            if c == self.e:
                if self.get() == EOF:
                    return True
                continue
            if self.is_term(c, self.rules.line_term):
                return False


def reference_rows(data: bytes, rules: FieldRules, columns: int, skip_lines: int = 0) -> list[tuple[int, tuple]]:
    """Every row as (end offset in `data`, all its fields: bytes, None for NULL, MISSING)."""
    r = Reference(data, rules)
    rows: list[tuple[int, tuple]] = []
    while skip_lines > 0:
        skip_lines -= 1
        if r.next_line():
            return rows
    while True:
        fields: list[object] = []
        for _ in range(columns):
            if r.read_field():
                break
            v = r.value
            if (not r.enclosed and rules.enclosed and v == b"NULL") or (len(v) == 1 and r.found_null):
                fields.append(None)
            else:
                fields.append(v)
        if not fields:
            return rows
        fields += [MISSING] * (columns - len(fields))
        eof = r.next_line()
        rows.append((r.consumed(), tuple(fields)))
        if eof:
            return rows
