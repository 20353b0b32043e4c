"""Rewrite one benchmark's results block in the README, between its `<!-- bench:NAME:start/end -->` markers."""

from __future__ import annotations

import sys
from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def update_readme_block(path: Path, name: str, block: str) -> None:
    """Replace the text between the block's markers with `block`; a README without them is left alone (said so)."""
    start, end = markers(name)
    text = path.read_text() if path.exists() else ""
    if start not in text or end not in text:
        print(f"{path}: no {start} markers; README not updated", file=sys.stderr)
        return
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    path.write_text(f"{head}{start}\n{block}\n{end}{tail}")
    print(f"{path}: {name} benchmark block updated", file=sys.stderr)
