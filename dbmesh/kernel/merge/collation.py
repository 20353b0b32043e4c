"""MySQL/MariaDB string collations as sort keys: binary, *_bin, general_ci and single-byte tables, PAD SPACE or not.

A sort key is a `str` (or `bytes` for the binary collation) that Python compares exactly as the server compares
the strings, so keys also serve as hash keys for GROUP BY and DISTINCT (collation-equal strings get equal keys).

Weights come from the server itself (`_collation_tables.py`, generated from WEIGHT_STRING()): general_ci maps
every BMP character to one 16-bit weight (its uppercase base letter for the Latin ranges, 'ß' = 'S', ...) and every
supplementary character to U+FFFD's weight, as the server does.

Where the approximation stops: a result's column definition carries the *connection's* result character set and
its default collation, plus BINARY_FLAG for *_bin collations; it does not say which case-insensitive collation
the column really has. A latin1_swedish_ci or utf8mb4_unicode_ci column therefore arrives as utf8mb4_general_ci
and is compared with general_ci weights: equal for ASCII and most Latin-1 letters, different for the few letters
those collations treat specially ('Ä'/'Ö'/'Ü' in swedish_ci, expansions such as 'ß' = 'ss' in unicode_ci).
Collation ids this module does not know are refused (STATEMENT_UNSUPPORTED), never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from dbmesh.kernel.merge._collation_tables import GENERAL_CI_EXCEPTIONS, SINGLE_BYTE_WEIGHTS
from dbmesh.kernel.merge.base import unsupported

BINARY_COLLATION = 63

# PAD SPACE keys: the server compares two strings as if the shorter were padded with spaces, so trailing spaces
# do not count, and "a" > "a\t" (the pad space outweighs the tab). A key string encodes each weight as one
# character, with the symbols ordered  low weights (< space) < _LOW_SPACE < _END < space < high weights,
# so that plain string comparison of keys equals the padded comparison:
# - a weight above the space is its own character, a space is " ", the key ends with _END;
# - a weight below the space becomes _LOW_MARK + a character keeping the order among low weights, and the run of
#   spaces just before it becomes _LOW_SPACE characters (a run before a low weight must weigh less than the end).
_LOW_MARK = "\x1d"
_LOW_SPACE = "\x1e"
_END = "\x1f"
_LOW_RUN = re.compile(r"( *)([\x00-\x1f])")


def _low(match: re.Match[str]) -> str:
    return _LOW_SPACE * len(match.group(1)) + _LOW_MARK + chr(ord(match.group(2)) + 0x21)


def pad_space_key(weights: str) -> str:
    """The PAD SPACE key of a weight string (one character per weight, the space weight being " ")."""
    stripped = weights.rstrip(" ")
    if stripped and min(stripped) < " ":
        stripped = _LOW_RUN.sub(_low, stripped)
    return stripped + _END


_SUPPLEMENTARY = re.compile("[\U00010000-\U0010ffff]")
_general_ci_table: list[int] | None = None


def _general_ci_weights(text: str) -> str:
    global _general_ci_table
    table = _general_ci_table
    if table is None:
        table = list(range(0x10000))
        for cp, weight in GENERAL_CI_EXCEPTIONS.items():
            table[cp] = weight
        _general_ci_table = table
    if text and max(text) > "\uffff":
        text = _SUPPLEMENTARY.sub("\ufffd", text)  # general_ci weighs every supplementary character as U+FFFD
    return text.translate(table)


def _single_byte(name: str) -> Callable[[str], str]:
    table = bytes.fromhex(SINGLE_BYTE_WEIGHTS[name])
    # Texts of single-byte character sets are decoded as latin-1, so each character is the byte itself.
    mapping = list(table)
    return lambda text: text.translate(mapping)


@dataclass(frozen=True, slots=True)
class Collation:
    """How one column's strings decode and compare."""

    name: str
    encoding: str | None  # Python codec of the wire bytes; None = compare the bytes themselves
    weights: Callable[[str], str] | None  # None = code points are the weights (*_bin)
    pad_space: bool

    def key(self, text: str) -> str:
        weights = text if self.weights is None else self.weights(text)
        return pad_space_key(weights) if self.pad_space else weights


# id: (name, encoding, weights, pad space). Ids are MariaDB's (information_schema.COLLATIONS).
_KNOWN: dict[int, tuple[str, str, Callable[[str], str] | None, bool]] = {
    33: ("utf8mb3_general_ci", "utf-8", _general_ci_weights, True),
    83: ("utf8mb3_bin", "utf-8", None, True),
    1057: ("utf8mb3_general_nopad_ci", "utf-8", _general_ci_weights, False),
    1107: ("utf8mb3_nopad_bin", "utf-8", None, False),
    45: ("utf8mb4_general_ci", "utf-8", _general_ci_weights, True),
    46: ("utf8mb4_bin", "utf-8", None, True),
    1069: ("utf8mb4_general_nopad_ci", "utf-8", _general_ci_weights, False),
    1070: ("utf8mb4_nopad_bin", "utf-8", None, False),
    8: ("latin1_swedish_ci", "latin-1", _single_byte("latin1_swedish_ci"), True),
    1032: ("latin1_swedish_nopad_ci", "latin-1", _single_byte("latin1_swedish_ci"), False),
    47: ("latin1_bin", "latin-1", None, True),
    1071: ("latin1_nopad_bin", "latin-1", None, False),
    48: ("latin1_general_ci", "latin-1", _single_byte("latin1_general_ci"), True),
    49: ("latin1_general_cs", "latin-1", _single_byte("latin1_general_cs"), True),
    11: ("ascii_general_ci", "latin-1", _single_byte("ascii_general_ci"), True),
    65: ("ascii_bin", "latin-1", None, True),
}

BINARY = Collation("binary", None, None, False)


def mysql_collation(collation_id: int, binary_flag: bool) -> Collation:
    """The collation of a string column from its definition's collation id and BINARY_FLAG.

    The server reports a *_bin column as its character set's default collation with BINARY_FLAG set, so the
    flag turns the id's character set into its PAD SPACE binary collation."""
    if collation_id == BINARY_COLLATION:
        return BINARY
    known = _KNOWN.get(collation_id)
    if known is None:
        raise unsupported(f"collation id {collation_id}",
                          "comparing strings of this collation across shards is not implemented")
    name, encoding, weights, pad_space = known
    if binary_flag and weights is not None:
        return Collation(name.split("_", 1)[0] + "_bin", encoding, None, pad_space)
    return Collation(name, encoding, weights, pad_space)
