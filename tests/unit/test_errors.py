"""The error catalogue (dbmesh.errors): stable identities, valid MySQL/PostgreSQL codes, formattable templates."""

from __future__ import annotations

import re
import string

import pytest

from dbmesh import errors
from dbmesh.protocol.mysql.packets import ErrPacket
from dbmesh.server.mysql_frontend import render_error

ENTRIES = sorted(errors.catalogue().values(), key=lambda e: e.code)
SQLSTATE = re.compile(r"^[0-9A-Z]{5}$")


def template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def test_catalogue_is_not_empty_and_is_a_copy() -> None:
    cat = errors.catalogue()
    assert len(cat) >= 10
    cat.clear()
    assert errors.catalogue()


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.code for e in ENTRIES])
def test_entry_identities(entry: errors.ErrorCode) -> None:
    assert re.fullmatch(r"DBM-\d{4}", entry.code)
    assert errors.catalogue()[entry.code] is entry
    # Server-range MySQL error numbers: 2000-2999 and 5000-5999 are client-library codes.
    assert 1000 <= entry.mysql_errno <= 65535
    assert not 2000 <= entry.mysql_errno <= 2999
    assert not 5000 <= entry.mysql_errno <= 5999
    assert SQLSTATE.match(entry.mysql_sqlstate), entry.mysql_sqlstate
    assert SQLSTATE.match(entry.pg_sqlstate), entry.pg_sqlstate
    assert entry.mysql_sqlstate != "00000" and entry.pg_sqlstate != "00000"  # never "success"
    assert entry.description.strip() and entry.template.strip()


def test_codes_are_unique() -> None:
    codes = [e.code for e in ENTRIES]
    assert len(codes) == len(set(codes))
    # Module attributes and catalogue agree one to one.
    attrs = {v.code for v in vars(errors).values() if isinstance(v, errors.ErrorCode)}
    assert attrs == set(codes)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.code for e in ENTRIES])
def test_templates_format_with_their_arguments(entry: errors.ErrorCode) -> None:
    fields = template_fields(entry.template)
    assert all(f and f.isidentifier() for f in fields), fields  # named, never positional
    args = {f: f"<{f}>" for f in fields}
    message = entry.template.format(**args)
    assert "{" not in message and "}" not in message
    for f in fields:
        assert f"<{f}>" in message
    err = errors.DbMeshError(entry, **args)
    assert err.message == message
    assert str(err) == f"{entry.code} {message}"
    assert err.args_map == args


def test_a_wrong_call_site_does_not_hide_the_error() -> None:
    err = errors.ProtocolError(errors.PROTOCOL_MALFORMED)  # missing {detail}
    assert err.message.startswith("malformed packet: {detail}")
    assert err.entry is errors.PROTOCOL_MALFORMED


def test_hierarchy_and_layers() -> None:
    subclasses = [errors.ProtocolError, errors.AuthError, errors.BackendError, errors.SessionError,
                  errors.ConfigError, errors.InternalError]
    for cls in subclasses:
        assert issubclass(cls, errors.DbMeshError)
    assert len({cls.layer for cls in subclasses}) == len(subclasses)
    cfg = errors.ConfigError("global.yaml", "dbmesh.limits", "must be positive")
    assert cfg.message == "global.yaml: dbmesh.limits: must be positive"
    assert (cfg.file, cfg.key, cfg.detail) == ("global.yaml", "dbmesh.limits", "must be positive")
    bug = errors.InternalError("invariant broke")
    assert bug.entry is errors.BUG and bug.message == "[BUG] invariant broke"


def test_documented_mysql_identities() -> None:
    """The numbers clients act on (PROTOCOL-NOTES, MySQL server error reference)."""
    assert (errors.AUTH_ACCESS_DENIED.mysql_errno, errors.AUTH_ACCESS_DENIED.mysql_sqlstate) == (1045, "28000")
    assert errors.AUTH_TOO_MANY_CONNECTIONS.mysql_errno == 1040
    assert errors.PROTOCOL_PACKET_TOO_LARGE.mysql_errno == 1153
    assert errors.PROTOCOL_UNSUPPORTED_COMMAND.mysql_errno == 1047
    assert errors.AUTH_UNKNOWN_DATABASE.mysql_errno == 1049
    assert errors.NO_DATABASE_SELECTED.mysql_errno == 1046


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.code for e in ENTRIES])
def test_render_error_is_a_valid_err_packet(entry: errors.ErrorCode) -> None:
    args = {f: "ü" + f for f in template_fields(entry.template)}
    exc = errors.DbMeshError(entry, **args)
    payload = render_error(exc)
    assert payload[0] == 0xFF and payload[3:4] == b"#"
    assert ErrPacket.decode(payload) == ErrPacket(entry.mysql_errno, entry.mysql_sqlstate, exc.message)
