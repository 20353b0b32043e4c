"""Configuration files <-> registry items: split a directory's texts into items, assemble items back, diff them.

The registry keeps a configuration as *items* (see `dbmesh.governance.layout`), each a text:

* ``rules``: global.yaml without its ``props:``, ``mode:`` and ``dbmesh:`` blocks. The last two belong to one
  process (how it reaches the registry, where it listens), never to the shared copy; props have their own item
  so that ``SET DIST VARIABLE`` can change them without rewriting the rest.
* ``props``: the props as a YAML mapping.
* ``metadata/{name}``: the text of database-{name}.yaml, verbatim (comments kept, so diffs read like the file).

Blocks are cut out of global.yaml by their line ranges, so every comment elsewhere survives; a global.yaml
whose top level is a flow mapping (``{...}``) cannot be cut and is refused with a ConfigError.

>>> items = split_files({"global.yaml": "authority:\\n  users: []\\nprops:\\n  sql-show: true\\n"})
>>> items["rules"], items["props"]
('authority:\\n  users: []\\n', 'sql-show: true\\n')
>>> assemble(items).props
{'sql-show': True}
>>> mask_secrets("  password: s3cret  # old")
'  password: ******  # old'
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from dbmesh.config import Config, load_config_files
from dbmesh.config.loader import DATABASE_FILE_RE, GLOBAL_FILE, LOCAL_GLOBAL_KEYS, WHOLE_FILE
from dbmesh.errors import ConfigError
from dbmesh.governance.layout import PROPS_ITEM, RULES_ITEM, database_item, database_name, item_sort_key

# Blocks of global.yaml that never go to the registry's rules item.
SPLIT_KEYS = ("props", *LOCAL_GLOBAL_KEYS)
MASK = "******"


class _TagTolerantLoader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]  # Any without types-PyYAML
    """SafeLoader that reads any `!TAG` node as its plain value (enough to find keys and read props)."""


def _construct_any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type,unused-ignore]


_TagTolerantLoader.add_multi_constructor("!", _construct_any_tag)


def _compose(file: str, text: str) -> yaml.Node | None:
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=_TagTolerantLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(file, WHOLE_FILE, f"invalid YAML: {exc}") from None
    return node


def _load(file: str, text: str) -> Any:
    try:
        return yaml.load(text, Loader=_TagTolerantLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ConfigError(file, WHOLE_FILE, f"invalid YAML: {exc}") from None


def _top_level_pairs(text: str) -> tuple[yaml.MappingNode | None, list[tuple[str, int, int]]]:
    """The root mapping node and, per top-level key, (key, first line, end line exclusive), 0-based.

    A block's range starts at its key, or at the column-0 comment lines right above it (they describe it), and
    ends after its value, less the blank lines and column-0 comments that follow it (they belong to what comes
    next).
    """
    root = _compose(GLOBAL_FILE, text)
    if root is None:
        return None, []
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(GLOBAL_FILE, WHOLE_FILE, "the top level must be a mapping of keys (mode, authority, props, ...)")
    lines = text.splitlines()

    def is_gap(i: int) -> bool:
        return not lines[i].strip() or lines[i].startswith("#")

    pairs: list[tuple[str, int, int]] = []
    for key_node, value_node in root.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        start = key_node.start_mark.line
        end_mark = value_node.end_mark
        end = end_mark.line if end_mark.column == 0 else end_mark.line + 1
        end = min(end, len(lines))
        while end > start + 1 and is_gap(end - 1):
            end -= 1
        while start > 0 and lines[start - 1].startswith("#"):
            start -= 1
        pairs.append((str(key_node.value), start, end))
    return root, pairs


def _cut(text: str, keys: tuple[str, ...], keep: bool) -> str:
    """The lines of `text` without the top-level `keys` blocks (`keep` False) or with only them (True)."""
    root, pairs = _top_level_pairs(text)
    wanted = [(key, start, end) for key, start, end in pairs if key in keys]
    if root is None or not wanted:
        return "" if keep else text
    if root.flow_style:
        raise ConfigError(GLOBAL_FILE, WHOLE_FILE, f"a top-level flow mapping ({{...}}) cannot be split into registry "
                          f"items; write global.yaml in block style (one top-level key per line), at least for "
                          f"{', '.join(key for key, _, _ in wanted)}")
    lines = text.splitlines(keepends=True)
    taken = {i for _, start, end in wanted for i in range(start, end)}
    if not keep:
        taken |= _orphaned_blank_lines(lines, wanted)
    out = "".join(line for i, line in enumerate(lines) if (i in taken) == keep)
    if out and not out.endswith("\n"):
        out += "\n"
    if not keep:
        # Removing a block that defines an anchor used elsewhere would change the meaning of what remains.
        problem = f"cannot separate the {', '.join(keys)} blocks from the rest of global.yaml (an anchor or an " \
                  "unusual layout ties them together)"
        try:
            left = _compose(GLOBAL_FILE, out)
        except ConfigError:
            raise ConfigError(GLOBAL_FILE, WHOLE_FILE, problem) from None
        left_keys = {str(k.value) for k, _ in left.value} if isinstance(left, yaml.MappingNode) else set()
        if left_keys != {key for key, _, _ in pairs if key not in keys}:
            raise ConfigError(GLOBAL_FILE, WHOLE_FILE, problem)
    return out


def _orphaned_blank_lines(lines: list[str], cut: list[tuple[str, int, int]]) -> set[int]:
    """Blank lines that would double up once the `cut` ranges are gone: those after a cut run that follows a
    blank line (or the start of the text), and those before a cut run that reaches the end. Only lines between
    top-level blocks are touched, never lines inside a value."""
    def blank(i: int) -> bool:
        return not lines[i].strip()

    runs: list[list[int]] = []  # adjacent ranges (mode: right before dbmesh:) count as one
    for _, start, end in sorted(cut, key=lambda c: c[1]):
        if runs and start <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([start, end])
    out: set[int] = set()
    for start, end in runs:
        if start == 0 or blank(start - 1):
            while end < len(lines) and blank(end):
                out.add(end)
                end += 1
        if end >= len(lines):
            i = start - 1
            while i >= 0 and blank(i):
                out.add(i)
                i -= 1
    return out


def remove_blocks(text: str, keys: tuple[str, ...]) -> str:
    """`text` (global.yaml) without its top-level `keys` blocks; every other line kept as written."""
    return _cut(text, keys, keep=False)


def extract_blocks(text: str, keys: tuple[str, ...]) -> str:
    """Only the top-level `keys` blocks of `text` (global.yaml), as written."""
    return _cut(text, keys, keep=True)


def dump_props(props: Mapping[str, Any]) -> str:
    """The props item text: a YAML mapping in the given order (``{}`` when empty)."""
    if not props:
        return "{}\n"
    out: str = yaml.safe_dump(dict(props), sort_keys=False, default_flow_style=False, allow_unicode=True)
    return out


def parse_props(text: str) -> dict[str, Any]:
    """The props mapping of a props item text."""
    data = _load(GLOBAL_FILE, text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(GLOBAL_FILE, "props", f"must be a mapping of prop names to values, got {type(data).__name__}")
    return {str(k): v for k, v in data.items()}


def _props_of(global_text: str) -> dict[str, Any]:
    data = _load(GLOBAL_FILE, global_text)
    props = data.get("props") if isinstance(data, dict) else None
    if props is None:
        return {}
    if not isinstance(props, dict):
        raise ConfigError(GLOBAL_FILE, "props", f"must be a mapping of prop names to values, got {type(props).__name__}")
    return {str(k): v for k, v in props.items()}


def split_files(files: Mapping[str, str]) -> dict[str, str]:
    """The registry items of a configuration's files (`read_config_files` output), by item key.

    Always has ``rules`` and ``props`` (empty texts/mappings when global.yaml is absent), and one
    ``metadata/{name}`` item per database-{name}.yaml (or .yml).
    """
    global_text = files.get(GLOBAL_FILE, "")
    items = {RULES_ITEM: remove_blocks(global_text, SPLIT_KEYS), PROPS_ITEM: dump_props(_props_of(global_text))}
    for file, text in files.items():
        if file == GLOBAL_FILE:
            continue
        match = DATABASE_FILE_RE.match(file)
        if match is None:
            raise ConfigError(file, WHOLE_FILE, "not a configuration file name (global.yaml or database-<name>.yaml)")
        try:
            key = database_item(match["name"])
        except ValueError as exc:
            raise ConfigError(file, WHOLE_FILE, str(exc)) from None
        if key in items:
            raise ConfigError(file, WHOLE_FILE, f"another file of the directory is also database {match['name']!r}")
        items[key] = text
    return dict(sorted(items.items(), key=lambda kv: item_sort_key(kv[0])))


def database_file(item: str) -> str:
    """database-{name}.yaml for item ``metadata/{name}``."""
    name = database_name(item)
    if name is None:
        raise ValueError(f"{item!r} is not a database item")
    return f"database-{name}.yaml"


def item_label(item: str) -> str:
    """How an item is named to people: the file (and block) it comes from."""
    if item == RULES_ITEM:
        return "global.yaml (without props, mode, dbmesh)"
    if item == PROPS_ITEM:
        return "global.yaml props"
    return database_file(item)


@dataclass(frozen=True, slots=True)
class Assembled:
    """Items put back together: the files for `load_config_files` and the props that replace global.yaml's."""

    files: dict[str, str]
    props: dict[str, Any]


def assemble(items: Mapping[str, str]) -> Assembled:
    """The `load_config_files` arguments for `items` (global.yaml is the rules item; props passed apart)."""
    files = {GLOBAL_FILE: items.get(RULES_ITEM, "")}
    for key in sorted(items, key=item_sort_key):
        if database_name(key) is not None:
            files[database_file(key)] = items[key]
    return Assembled(files=files, props=parse_props(items.get(PROPS_ITEM, "")))


def load_items(items: Mapping[str, str], source_dir: Path | str, local_global: str | None = None) -> Config:
    """Validate `items` into a Config, as `load_config_files` does for a directory; raise ConfigError."""
    assembled = assemble(items)
    return load_config_files(assembled.files, source_dir, local_global, props=assembled.props)


def pulled_files(items: Mapping[str, str], local_global: str | None = None) -> dict[str, str]:
    """A configuration directory's files for `items`: global.yaml gets its props block back, and the ``mode:``
    and ``dbmesh:`` blocks of `local_global` (this host's own global.yaml) so the directory is complete."""
    props = parse_props(items.get(PROPS_ITEM, ""))
    local = extract_blocks(local_global, LOCAL_GLOBAL_KEYS) if local_global else ""
    rules = items.get(RULES_ITEM, "")
    parts = [local.rstrip("\n"), rules.rstrip("\n")]
    if props:
        parts.append(yaml.safe_dump({"props": props}, sort_keys=False, default_flow_style=False,
                                    allow_unicode=True).rstrip("\n"))
    text = "\n\n".join(part for part in parts if part.strip())
    files = assemble(items).files
    files[GLOBAL_FILE] = text + "\n" if text else ""
    return files


# -------------------------------------------------------------------------------------------------- diffs

# A secret's key (`password: x`, `"password": "x"`, `digest: u:p`); URLs carry credentials as scheme://user:pw@host.
_SECRET_KEY = re.compile(r"""\b(?:password|passwd|digest)["']?\s*[:=][ \t]*""", re.IGNORECASE)
_QUOTED = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^']|'')*'""")
_COMMENT = re.compile(r"\s#")
_FLOW_STOP = re.compile(r"[,}\]]")
_URL_CREDENTIALS = re.compile(r"(?P<head>://[^/\s:@]*:)(?P<value>[^@\s/]+)(?P<at>@)")


def _secret_end(line: str, start: int) -> int:
    """Where the secret value starting at `start` ends: after a quoted string; in a flow collection ({...},
    [...]) a plain value ends at `,`, `}` or `]`; elsewhere at a comment (` #`) or the end of the line."""
    quoted = _QUOTED.match(line, start)
    if quoted:
        return quoted.end()
    head = line[:start]
    in_flow = head.count("{") + head.count("[") > head.count("}") + head.count("]")
    comment = _COMMENT.search(line, start)
    end = comment.start() if comment else len(line)
    if in_flow:
        stop = _FLOW_STOP.search(line, start, end)
        if stop:
            end = stop.start()
    while end > start and line[end - 1] in " \t":
        end -= 1
    return end


def _mask_line(line: str) -> str:
    out, pos = [], 0
    for match in _SECRET_KEY.finditer(line):
        if match.start() < pos:
            continue
        end = _secret_end(line, match.end())
        if end == match.end():  # `password:` with its value on the next lines, or none
            continue
        out.append(line[pos:match.end()] + MASK)
        pos = end
    out.append(line[pos:])
    return _URL_CREDENTIALS.sub(lambda m: m["head"] + MASK + m["at"], "".join(out))


def mask_secrets(text: str) -> str:
    """`text` with password/digest values and URL passwords replaced by ``******`` (for printing only)."""
    return "\n".join(_mask_line(line) for line in text.split("\n"))

ChangeKind = Literal["added", "changed", "removed"]


@dataclass(frozen=True, slots=True)
class ItemDiff:
    """One item that differs: how, and a unified diff with secrets masked."""

    item: str
    kind: ChangeKind
    text: str


def diff(old_items: Mapping[str, str], new_items: Mapping[str, str], *, old_name: str = "registry",
         new_name: str = "local") -> list[ItemDiff]:
    """Per item that differs between `old_items` and `new_items`, a readable unified diff (secrets masked).

    A changed password shows as a changed ``password: ******`` line: the diff runs on the real texts, and only
    the printed lines are masked.
    """
    out: list[ItemDiff] = []
    for key in sorted(set(old_items) | set(new_items), key=item_sort_key):
        old, new = old_items.get(key), new_items.get(key)
        if old == new:
            continue
        kind: ChangeKind = "added" if old is None else "removed" if new is None else "changed"
        label = item_label(key)
        lines = difflib.unified_diff((old or "").splitlines(), (new or "").splitlines(),
                                     fromfile=f"{old_name}: {label}" if old is not None else "/dev/null",
                                     tofile=f"{new_name}: {label}" if new is not None else "/dev/null", lineterm="")
        text = "\n".join(mask_secrets(line) for line in lines)
        if not text:  # an empty item appears or goes: unified_diff has no lines to show
            text = f"--- {old_name + ': ' + label if old is not None else '/dev/null'}\n" \
                   f"+++ {new_name + ': ' + label if new is not None else '/dev/null'}\n(empty)"
        out.append(ItemDiff(key, kind, text + "\n"))
    return out
