"""Registry items (dbmesh.governance.snapshot, .layout): split, assemble, pull, diff, secret masking, znode paths."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from dbmesh.config import load_config, load_config_files, read_config_files
from dbmesh.errors import ConfigError
from dbmesh.governance import layout, snapshot
from dbmesh.governance.layout import Layout, database_item
from dbmesh.governance.snapshot import (
    assemble,
    diff,
    dump_props,
    extract_blocks,
    load_items,
    mask_secrets,
    parse_props,
    pulled_files,
    remove_blocks,
    split_files,
)

ROOT = Path(__file__).resolve().parents[2]

GLOBAL = """\
# cluster-wide settings

mode:
  type: Cluster
  repository:
    type: ZooKeeper
    props:
      namespace: gov
      server-lists: 127.0.0.1:2181
      digest: admin:topsecret

# who may log in
authority:
  users:
    - user: root@%
      password: rootpw   # the administrator
    - {user: app@%, password: 'app pw'}
  privilege:
    type: ALL_PERMITTED

props:
  sql-show: true
  max-connections-size-per-query: 2
  # comment inside props
  kernel-executor-size: 4

# listeners of this host
dbmesh:
  listeners:
    mysql: {host: 127.0.0.1, port: 13307}

transaction:
  defaultType: LOCAL
"""

DATABASE = """\
databaseName: sharding_db  # comment kept
dataSources:
  ds_0:
    url: jdbc:mysql://127.0.0.1:3306/demo_ds_0
    username: root
    password: dspw
"""


def test_module_doctests() -> None:
    for module in (layout, snapshot):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# -- layout ------------------------------------------------------------------------------------------------


def test_layout_paths() -> None:
    paths = Layout("gov")
    assert paths.root == "/gov"
    assert paths.versions("rules") == "/gov/rules/versions"
    assert paths.active_version(database_item("db1")) == "/gov/metadata/db1/active_version"
    assert paths.change(12) == "/gov/changes/12"
    assert paths.online_node("n1") == "/gov/nodes/compute_nodes/online/n1"
    assert paths.node_status("n1") == "/gov/nodes/compute_nodes/status/n1"
    assert paths.worker_id(7) == "/gov/reservation/worker_id/7"
    assert paths.cluster_state == "/gov/states/cluster_state"
    assert Layout("/a/b/").root == "/a/b"
    assert set(paths.skeleton()) >= {paths.metadata, paths.changes, paths.online, paths.status, paths.worker_ids}


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "x\x00", "x\x7f"])
def test_layout_refuses_bad_names(bad: str) -> None:
    with pytest.raises(ValueError):
        database_item(bad)
    with pytest.raises(ValueError):
        Layout("gov").online_node(bad)


def test_layout_item_keys() -> None:
    assert layout.is_item("rules") and layout.is_item("props") and layout.is_item("metadata/x")
    assert not layout.is_item("metadata/") and not layout.is_item("other") and not layout.is_item("metadata/a/b")
    with pytest.raises(ValueError):
        Layout("gov").item("nodes")
    keys = ["metadata/b", "props", "metadata/a", "rules"]
    assert sorted(keys, key=layout.item_sort_key) == ["rules", "props", "metadata/a", "metadata/b"]


# -- split / assemble --------------------------------------------------------------------------------------


def test_split_cuts_local_blocks_and_props_keeping_comments() -> None:
    items = split_files({"global.yaml": GLOBAL, "database-sharding_db.yaml": DATABASE})
    assert list(items) == ["rules", "props", "metadata/sharding_db"]
    rules = items["rules"]
    assert "mode:" not in rules and "dbmesh:" not in rules and "props:" not in rules
    assert "topsecret" not in rules and "13307" not in rules and "sql-show" not in rules
    # Comments that belong to kept blocks survive; the comments right above a cut block go with it.
    assert "# cluster-wide settings" in rules and "# who may log in" in rules and "# the administrator" in rules
    assert "# listeners of this host" not in rules
    assert "transaction:\n  defaultType: LOCAL\n" in rules
    assert parse_props(items["props"]) == {"sql-show": True, "max-connections-size-per-query": 2,
                                           "kernel-executor-size": 4}
    assert items["metadata/sharding_db"] == DATABASE  # verbatim


def test_split_then_assemble_loads_the_same_config(tmp_path: Path) -> None:
    local = "mode:\n  type: Standalone\ndbmesh:\n  listeners:\n    mysql: {port: 13307}\n"
    files = {"global.yaml": GLOBAL, "database-sharding_db.yaml": DATABASE}
    direct = load_config_files(files, tmp_path, local)
    via_items = load_items(split_files(files), tmp_path, local)
    assert via_items.props == direct.props and via_items.users == direct.users
    assert via_items.databases == direct.databases and via_items.global_rules == direct.global_rules
    assert via_items.server == direct.server and via_items.server.mysql.port == 13307


def test_split_of_the_shipped_rule_sets_round_trips() -> None:
    for directory in sorted((ROOT / "rules").iterdir()):
        if not (directory / "global.yaml").is_file():
            continue
        files = read_config_files(directory)
        cfg = load_config(directory)
        items = split_files(files)
        again = load_items(items, directory, files["global.yaml"])
        assert again.props == cfg.props and again.databases == cfg.databases and again.users == cfg.users
        assert again.server == cfg.server, directory


def test_split_without_global_yaml() -> None:
    items = split_files({"database-a.yml": "databaseName: a\n"})
    assert items == {"rules": "", "props": "{}\n", "metadata/a": "databaseName: a\n"}
    assembled = assemble(items)
    assert assembled.files == {"global.yaml": "", "database-a.yaml": "databaseName: a\n"}
    assert assembled.props == {}


def test_split_refuses_what_it_cannot_store() -> None:
    with pytest.raises(ConfigError, match="block style"):
        split_files({"global.yaml": "{props: {sql-show: true}, authority: {users: []}}\n"})
    with pytest.raises(ConfigError, match="props: must be a mapping"):
        split_files({"global.yaml": "props: [1, 2]\n"})
    with pytest.raises(ConfigError, match="not a configuration file name"):
        split_files({"server.yaml": ""})
    with pytest.raises(ConfigError, match="also database"):
        split_files({"database-a.yaml": "", "database-a.yml": ""})
    with pytest.raises(ConfigError, match="anchor"):
        split_files({"global.yaml": "props: &p\n  sql-show: true\nother: *p\n"})


def test_flow_root_without_split_keys_is_kept() -> None:
    assert remove_blocks("{authority: {users: []}}\n", ("props",)) == "{authority: {users: []}}\n"


def test_extract_blocks_keeps_only_the_named_keys() -> None:
    local = extract_blocks(GLOBAL, ("mode", "dbmesh"))
    assert local.startswith("mode:\n") and "digest: admin:topsecret" in local and "port: 13307" in local
    assert "authority" not in local and "sql-show" not in local and "transaction" not in local
    assert extract_blocks("authority: {}\n", ("mode",)) == ""


def test_props_the_registry_item_wins_over_the_text() -> None:
    # load_config_files(props=...) replaces the text's props before validation.
    cfg = load_config_files({"global.yaml": "props:\n  sql-show: true\n"}, "/", props={"sql-show": False})
    assert cfg.props["sql-show"] is False
    with pytest.raises(ConfigError, match="unknown prop"):
        load_config_files({"global.yaml": ""}, "/", props={"no-such-prop": 1})


def test_dump_and_parse_props() -> None:
    assert dump_props({}) == "{}\n" and parse_props("{}\n") == {} and parse_props("") == {}
    props = {"sql-show": True, "proxy-mysql-default-version": "8.0.33", "kernel-executor-size": 3}
    assert parse_props(dump_props(props)) == props
    assert list(parse_props(dump_props(props))) == list(props)  # order kept


def test_pulled_files_make_a_complete_directory(tmp_path: Path) -> None:
    files = {"global.yaml": GLOBAL, "database-sharding_db.yaml": DATABASE}
    items = split_files(files)
    local = "mode:\n  type: Standalone\n"
    pulled = pulled_files(items, local)
    assert set(pulled) == {"global.yaml", "database-sharding_db.yaml"}
    assert pulled["global.yaml"].startswith("mode:\n  type: Standalone\n")
    assert "props:\n  sql-show: true\n" in pulled["global.yaml"]
    for name, text in pulled.items():
        (tmp_path / name).write_text(text)
    cfg = load_config(tmp_path)
    assert cfg.mode.type == "Standalone" and cfg.props["kernel-executor-size"] == 4
    # Splitting the pulled directory gives the registry's items back.
    assert split_files(read_config_files(tmp_path)) == items


# -- diff and masking --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "masked"), [
    ("    password: dspw", "    password: ******"),
    ("    password: 'a b'  # c", "    password: ******  # c"),
    ('  "password": "x\\"y", "user": "u"', '  "password": ******, "user": "u"'),
    ("- {user: app@%, password: app pw}", "- {user: app@%, password: ******}"),
    ("- {password: a#b, user: x}", "- {password: ******, user: x}"),
    ("password: a,b # c", "password: ****** # c"),
    ("password: a#b", "password: ******"),
    ("password:", "password:"),
    ("PASSWORD = x", "PASSWORD = ******"),
    ("- {user: app@%, password: 'app pw'}", "- {user: app@%, password: ******}"),
    ("      digest: admin:topsecret", "      digest: ******"),
    ("url: jdbc:mysql://root:pw@127.0.0.1:3306/db", "url: jdbc:mysql://root:******@127.0.0.1:3306/db"),
    ("url: postgresql://u@h/db", "url: postgresql://u@h/db"),
    ("passwordless: true", "passwordless: true"),
])
def test_mask_secrets(line: str, masked: str) -> None:
    assert mask_secrets(line) == masked


def test_diff_lists_changed_items_with_secrets_masked() -> None:
    old = split_files({"global.yaml": GLOBAL, "database-sharding_db.yaml": DATABASE,
                       "database-gone.yaml": "databaseName: gone\n"})
    new_db = DATABASE.replace("password: dspw", "password: newpw").replace("demo_ds_0", "demo_ds_1")
    new = split_files({"global.yaml": GLOBAL.replace("sql-show: true", "sql-show: false"),
                       "database-sharding_db.yaml": new_db, "database-added.yaml": "databaseName: added\n"})
    diffs = {d.item: d for d in diff(old, new)}
    assert list(diffs) == ["props", "metadata/added", "metadata/gone", "metadata/sharding_db"]
    assert [diffs[k].kind for k in diffs] == ["changed", "added", "removed", "changed"]
    text = diffs["metadata/sharding_db"].text
    assert "-    password: ******" in text and "+    password: ******" in text
    assert "dspw" not in text and "newpw" not in text
    assert "-    url: jdbc:mysql://127.0.0.1:3306/demo_ds_0" in text and "registry: database-sharding_db.yaml" in text
    assert "+sql-show: false" in diffs["props"].text
    assert diff(old, old) == []
    assert "topsecret" not in "".join(d.text for d in diff({}, new))
