"""MySQL/MariaDB string collations as merge sort keys, against orders the server itself produced."""

from __future__ import annotations

import pytest

from dbmesh.errors import STATEMENT_UNSUPPORTED
from dbmesh.kernel.merge import MergeError, mysql_collation, mysql_text_codec
from dbmesh.protocol.mysql.constants import BINARY_FLAG, ColumnType
from dbmesh.protocol.mysql.packets import ColumnDefinition41

# The servers' own outputs: these strings sorted by MariaDB 10.11 (STRCMP over every pair, with
# COLLATE <name>), in ascending order, each inner list a class of strings the collation holds equal.
SERVER_ORDER = {
    "utf8mb4_general_ci": [
        ["", " "], ["a\t"], ["a \t"], ["a", "A", "a ", "Ä", "ä", "à"], ["a  b"], ["a b"], ["ab"], ["ae"],
        ["é", "E"], ["f"], ["o"], ["ß", "s", "S"], ["ss"], ["Ü"], ["y", "Y"], ["Z", "z"], ["Æ"], ["Ø"],
        ["😀", "😁", "\ufffd"]],
    "utf8mb4_bin": [
        ["", " "], ["A"], ["E"], ["S"], ["Y"], ["Z"], ["a\t"], ["a \t"], ["a", "a "], ["a  b"], ["a b"], ["ab"],
        ["ae"], ["f"], ["o"], ["s"], ["ss"], ["y"], ["z"], ["Ä"], ["Æ"], ["Ø"], ["Ü"], ["ß"], ["à"], ["ä"], ["é"],
        ["\ufffd"], ["😀"], ["😁"]],
    "utf8mb4_general_nopad_ci": [
        [""], [" "], ["a", "A", "Ä", "ä", "à"], ["a\t"], ["a "], ["a \t"], ["a  b"], ["a b"], ["ab"], ["ae"],
        ["é", "E"], ["f"], ["o"], ["ß", "s", "S"], ["ss"], ["Ü"], ["y", "Y"], ["Z", "z"], ["Æ"], ["Ø"],
        ["😀", "😁", "\ufffd"]],
    "latin1_swedish_ci": [
        ["", " "], ["a\t"], ["a \t"], ["a", "A", "a ", "à"], ["a  b"], ["a b"], ["ab"], ["ae"], ["é", "E"], ["f"],
        ["o"], ["s", "S"], ["ss"], ["Ü", "y", "Y"], ["Z", "z"], ["Ä", "ä", "Æ"], ["Ø"], ["ß"]],
}
# How each collation reaches the merger: (collation id in the column definition, BINARY_FLAG, wire encoding).
# A utf8mb4_bin column arrives as id 45 with BINARY_FLAG set (what MariaDB sends for it).
COLUMN_IDENTITY = {
    "utf8mb4_general_ci": (45, 0, "utf-8"),
    "utf8mb4_bin": (45, BINARY_FLAG, "utf-8"),
    "utf8mb4_general_nopad_ci": (1069, 0, "utf-8"),
    "latin1_swedish_ci": (8, 0, "latin-1"),
}


@pytest.mark.parametrize("name", sorted(SERVER_ORDER))
def test_codec_sort_keys_reproduce_server_order(name: str) -> None:
    collation_id, flags, encoding = COLUMN_IDENTITY[name]
    codec = mysql_text_codec([ColumnDefinition41("s", ColumnType.VAR_STRING, collation_id, flags=flags)])
    groups = SERVER_ORDER[name]
    strings = [s for group in groups for s in group]
    rank = {s: i for i, group in enumerate(groups) for s in group}

    def key(s: str) -> object:
        return codec.sort_key(0, codec.decode(0, s.encode(encoding)))

    for a in strings:
        for b in strings:
            expected = (rank[a] > rank[b]) - (rank[a] < rank[b])
            got = (key(a) > key(b)) - (key(a) < key(b))
            assert got == expected, (name, a, b)
    # Equal keys are equal hash keys: GROUP BY and DISTINCT fold each class into one.
    assert len({key(s) for s in strings}) == len(groups)


def test_binary_collation_compares_bytes_without_padding() -> None:
    codec = mysql_text_codec([ColumnDefinition41("b", ColumnType.BLOB, 63, flags=BINARY_FLAG)])
    values = [b"a ", b"a", b"A", b"a\x00", b"\xff", b""]
    keys = [codec.sort_key(0, codec.decode(0, v)) for v in values]
    assert sorted(range(len(values)), key=lambda i: keys[i]) == [5, 2, 1, 3, 0, 4]


def test_unknown_collation_refused_when_compared() -> None:
    codec = mysql_text_codec([ColumnDefinition41("s", ColumnType.VAR_STRING, 224)])  # utf8mb4_unicode_ci
    assert codec.decode(0, b"x") == b"x"  # reading is fine; comparing is refused
    with pytest.raises(MergeError) as info:
        codec.sort_key(0, b"x")
    assert info.value.entry is STATEMENT_UNSUPPORTED
    assert "collation id 224" in info.value.message


def test_enum_and_json_ordering_refused() -> None:
    codec = mysql_text_codec([ColumnDefinition41("e", ColumnType.STRING, 45, flags=0x100),
                              ColumnDefinition41("j", ColumnType.JSON, 45)])
    for column in (0, 1):
        with pytest.raises(MergeError) as info:
            codec.sort_key(column, b"x")
        assert info.value.entry is STATEMENT_UNSUPPORTED


def test_collation_names() -> None:
    assert mysql_collation(45, False).name == "utf8mb4_general_ci"
    assert mysql_collation(45, True).name == "utf8mb4_bin"
    assert mysql_collation(8, True).name == "latin1_bin"
    assert mysql_collation(63, False).encoding is None
