"""Regenerates `_collation_tables.py` from a running MariaDB server's own WEIGHT_STRING() output.

Run: `python -m dbmesh.kernel.merge._gen_collation_tables [mysql client options]` (default: -uroot -h127.0.0.1).
The tables are the server's weights, so merging compares strings exactly as the server's collation does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_SINGLE_BYTE = ("latin1_swedish_ci", "latin1_general_ci", "latin1_general_cs", "ascii_general_ci")


def _query(options: list[str], sql: str) -> list[tuple[int, str]]:
    out = subprocess.run(["mysql", *options, "-N", "-B", "-e", sql], check=True, capture_output=True, text=True)
    rows = []
    for line in out.stdout.splitlines():
        cp, weight = line.split("\t")
        rows.append((int(cp), weight))
    return rows


def generate(options: list[str]) -> str:
    """The module text: general_ci exceptions for the BMP and full tables for single-byte collations."""
    # Surrogates cannot be converted to utf8mb4; they never occur in well-formed text.
    bmp = _query(options, (
        "SELECT seq, HEX(WEIGHT_STRING(CONVERT(CONVERT(UNHEX(LPAD(HEX(seq), 4, '0')) USING ucs2) USING utf8mb4) "
        "COLLATE utf8mb4_general_ci)) FROM mysql.seq_0_to_65535 WHERE seq < 55296 OR seq > 57343"))
    exceptions = {cp: int(w, 16) for cp, w in bmp if int(w, 16) != cp}
    lines = [
        '"""Collation weights generated from MariaDB\'s WEIGHT_STRING() by _gen_collation_tables.py: do not edit."""',
        "",
        "# utf8mb4_general_ci / utf8mb3_general_ci: BMP code points whose weight is not the code point itself.",
        "GENERAL_CI_EXCEPTIONS: dict[int, int] = {",
    ]
    items = [f"0x{cp:04X}: 0x{w:04X}" for cp, w in sorted(exceptions.items())]
    for i in range(0, len(items), 8):
        lines.append("    " + ", ".join(items[i:i + 8]) + ",")
    lines.append("}")
    lines.append("")
    lines.append("# Single-byte collations: the weight of every byte value, as 256 bytes in hex.")
    lines.append("SINGLE_BYTE_WEIGHTS: dict[str, str] = {")
    for name in _SINGLE_BYTE:
        charset = name.split("_")[0]
        rows = _query(options, (
            f"SELECT seq, HEX(WEIGHT_STRING(CONVERT(UNHEX(LPAD(HEX(seq), 2, '0')) USING {charset}) "
            f"COLLATE {name})) FROM mysql.seq_0_to_255"))
        table = "".join(w.rjust(2, "0")[-2:] for _, w in sorted(rows))
        lines.append(f'    "{name}": (')
        for i in range(0, len(table), 96):
            lines.append(f'        "{table[i:i + 96]}"')
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    options = sys.argv[1:] or ["-uroot", "-h127.0.0.1"]
    target = Path(__file__).with_name("_collation_tables.py")
    target.write_text(generate(options))


if __name__ == "__main__":
    main()
