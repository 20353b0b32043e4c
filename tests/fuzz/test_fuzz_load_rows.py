"""The LOAD DATA row splitter against the byte-at-a-time reference model of the server's reader.

For random field/line rules, character sets, column counts, IGNORE counts and files built from the bytes that
matter (separators, quotes, escapes, CR/LF, UTF-8 lead and continuation bytes, `N`), fed in random chunks:
- the rows' bytes are consecutive slices that tile the file after the ignored lines;
- each row ends where the reference's reader stands after that row, with the same fields;
- a row read again on its own (a data node's view) gives the same fields;
- chunking does not change the result.
Bounded: a few seconds.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbmesh.kernel.load_rows import FieldRules, RowSplitter
from tests.fuzz.load_reference import reference_rows

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_TERMS = (b",", b"\t", b";", b"|", b"::", b",\"", b"ab", b"\\")
_LINES = (b"\n", b"\r\n", b"\r", b"\n\n", b"x", b"|\n", b"\"\n")


@st.composite
def rules(draw: Any) -> FieldRules:
    while True:
        r = FieldRules(
            field_term=draw(st.sampled_from(_TERMS)),
            enclosed=draw(st.sampled_from((b"", b"", b'"', b"'", b"\\", b"x"))),
            escape=draw(st.sampled_from((b"\\", b"\\", b"", b'"', b"x"))),
            line_start=draw(st.sampled_from((b"", b"", b"", b">", b"xx", b"\\"))),
            line_term=draw(st.sampled_from(_LINES)),
            charset=draw(st.sampled_from(("utf8mb4", "utf8mb3", "latin1", "binary"))),
        )
        if r.unsplittable() is None:
            return r


def _pieces(r: FieldRules) -> list[bytes]:
    return [r.field_term, r.line_term, r.enclosed or b'"', r.escape or b"\\", r.line_start or b">", b"a", b"bc",
            b"N", b"NULL", b"\\N", b"\r", b"\n", b" ", b"x", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80",
            b"\xe2", b"\xc3", b"\xf0\x9f", b"\x80", b"\xff", b"0", b"Z", b"t",
            # A broken multi-byte sequence right before a separator: read as data in a field, swallowed when the
            # rest of a line is skipped.
            b"\xe2" + r.line_term, b"\xc3" + r.line_term, b"\xf0\x9f" + r.line_term, b"\xe2\x82" + r.field_term,
            r.field_term + b"\xf0" + r.line_term, (r.escape or b"\\") + r.line_term,
            # NULL spellings as whole fields.
            r.field_term + b"NULL" + r.field_term, b"NULL" + r.line_term, r.field_term + b"\\N" + r.line_term,
            r.field_term + (r.enclosed or b'"') + b"NULL" + (r.enclosed or b'"') + r.field_term]


@st.composite
def cases(draw: Any) -> tuple[FieldRules, bytes, int, int, list[int]]:
    r = draw(rules())
    pieces = st.sampled_from(_pieces(r))
    # Lines of random pieces, mostly ended by the line terminator: many rows per file, and every odd byte.
    lines = draw(st.lists(st.tuples(st.lists(pieces, max_size=10), st.sampled_from((r.line_term, r.line_term, b""))),
                          min_size=1, max_size=12))
    data = b"".join(b"".join(p) + end for p, end in lines)
    columns = draw(st.integers(1, 5))
    skip = draw(st.sampled_from((0, 0, 0, 1, 2)))
    cuts = sorted(draw(st.lists(st.integers(0, max(len(data), 1)), max_size=8)))
    return r, data, columns, skip, cuts


def _split(r: FieldRules, data: bytes, columns: int, skip: int, cuts: list[int]) -> list[tuple[bytes, tuple]]:
    s = RowSplitter(r, columns, range(columns), skip)
    out = []
    prev = 0
    for c in [*cuts, len(data)]:
        if c > prev:
            out += s.feed(data[prev:c])
            prev = c
    out += s.finish()
    return out


@given(case=cases())
@FUZZ
def test_splitter_matches_the_reference(case: tuple[FieldRules, bytes, int, int, list[int]]) -> None:
    r, data, columns, skip, cuts = case
    rows = _split(r, data, columns, skip, cuts)
    expected = reference_rows(data, r, columns, skip)
    assert [f for _, f in rows] == [f for _, f in expected]
    if rows:
        # Rows tile the file from the end of the ignored lines to the reference's last position.
        start = expected[0][0] - len(rows[0][0])
        assert b"".join(d for d, _ in rows) == data[start:expected[-1][0]]
        ends, pos = [], start
        for d, _ in rows:
            pos += len(d)
            ends.append(pos)
        assert ends == [e for e, _ in expected]
        # A data node reading one row alone reads the same row.
        for d, fields in rows:
            alone = reference_rows(d, r, columns)
            assert [f for _, f in alone] == [fields]
    assert rows == _split(r, data, columns, skip, [])


@given(case=cases(), wanted=st.lists(st.integers(0, 4), min_size=1, max_size=3, unique=True))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_wanted_fields_are_the_right_ones(case: tuple[FieldRules, bytes, int, int, list[int]],
                                          wanted: list[int]) -> None:
    r, data, columns, skip, _cuts = case
    wanted = [w for w in wanted if w < columns] or [0]
    s = RowSplitter(r, columns, wanted, skip)
    rows = s.feed(data) + s.finish()
    full = reference_rows(data, r, columns, skip)
    assert [f for _, f in rows] == [tuple(f[w] for w in wanted) for _, f in full]
