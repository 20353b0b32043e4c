"""Fuzz tests of the packet decoders and the server-side connection phase.

Contracts checked:
- HandshakeResponse41/HandshakeV10/OkPacket/ErrPacket/AuthSwitchRequest.decode raise only FramingError or
  ValueError (never IndexError, struct.error, TypeError ...) on any bytes.
- ServerHandshake.feed always returns a list of outcomes, never raises, on any payloads and sequence ids; the
  sequence ids it asks to send are bytes (0-255); after a rejection or acceptance it accepts nothing more.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbmesh._wire.mysql_framing import FramingError
from dbmesh.protocol.mysql import auth
from dbmesh.protocol.mysql.constants import CACHING_SHA2_PASSWORD, NATIVE_PASSWORD, Capability
from dbmesh.protocol.mysql.packets import (
    AuthSwitchRequest,
    ErrPacket,
    HandshakeResponse41,
    HandshakeV10,
    OkPacket,
    ssl_request,
)
from dbmesh.protocol.mysql.server_handshake import (
    Authenticated,
    Credential,
    Rejected,
    Reply,
    ServerHandshake,
    StartTls,
)
from tests.fuzz.test_fuzz_framing import mutated

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
C = Capability
RSA = auth.RsaKeyPair()
USERS = {
    "root": Credential("root", "rootpw", NATIVE_PASSWORD),
    "sha2user": Credential("sha2user", "sha2pw", CACHING_SHA2_PASSWORD),
}

DECODERS = [HandshakeResponse41.decode, HandshakeV10.decode, OkPacket.decode, ErrPacket.decode,
            AuthSwitchRequest.decode]


def decode_safely(decoder: Any, payload: bytes) -> None:
    try:
        decoder(payload)
    except (FramingError, ValueError):
        pass


def valid_payloads() -> list[bytes]:
    caps_all = int(C.PROTOCOL_41 | C.SECURE_CONNECTION | C.CONNECT_WITH_DB | C.PLUGIN_AUTH | C.CONNECT_ATTRS
                   | C.PLUGIN_AUTH_LENENC_CLIENT_DATA)
    return [
        HandshakeResponse41(caps_all, 1 << 24, 45, "root", bytes(20), "shop", NATIVE_PASSWORD,
                            {"_client_name": "x", "_pid": "1"}).encode(),
        HandshakeResponse41(int(C.PROTOCOL_41 | C.SECURE_CONNECTION), 0, 8, "u", b"", None, None).encode(),
        HandshakeV10(b"8.0.36", 1, bytes(range(1, 21)), 0xFFFFFFFF, 45, 2, CACHING_SHA2_PASSWORD).encode(),
        OkPacket(300, 70000, 2, 1, b"info").encode(),
        OkPacket(0, 0, 2, 0).encode(0xFE),
        ErrPacket(1045, "28000", "Access denied").encode(),
        AuthSwitchRequest(CACHING_SHA2_PASSWORD, bytes(range(1, 21)) + b"\x00").encode(),
    ]


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: d.__qualname__)
@given(payload=st.binary(max_size=200))
@FUZZ
def test_decoders_on_random_bytes(decoder: Any, payload: bytes) -> None:
    decode_safely(decoder, payload)


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: d.__qualname__)
@given(data=st.data())
@FUZZ
def test_decoders_on_mutated_packets(decoder: Any, data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(valid_payloads()))
    decode_safely(decoder, data.draw(mutated(base)))


@given(caps=st.integers(0, 2**32 - 1), tail=st.binary(max_size=80))
@FUZZ
def test_handshake_response_any_capabilities(caps: int, tail: bytes) -> None:
    """Any capability combination over a plausible body (the flags select which optional fields are parsed)."""
    payload = struct.pack("<IIB", caps, 1 << 24, 45) + bytes(23) + b"root\x00" + tail
    decode_safely(HandshakeResponse41.decode, payload)


# -- ServerHandshake ------------------------------------------------------------------------------------------------


def make_server(tls: bool, rsa: bool, plugin: str) -> ServerHandshake:
    return ServerHandshake(connection_id=1, server_version=b"8.0.36", collation=45, tls_available=tls,
                           users=lambda name, host: USERS.get(name), client_host="127.0.0.1",
                           rsa_keys=RSA if rsa else None, default_plugin=plugin)


def feed_checked(server: ServerHandshake, payload: bytes, seq: int) -> list[Any]:
    outs = server.feed(payload, seq)
    assert isinstance(outs, list) and outs
    for o in outs:
        assert isinstance(o, (Reply, StartTls, Authenticated, Rejected)), o
        if isinstance(o, Reply):
            assert 0 <= o.seq <= 255
        elif isinstance(o, Rejected):
            assert 0 <= o.seq <= 255
        elif isinstance(o, Authenticated):
            assert 0 <= o.ok.seq <= 255
    return outs


servers = st.tuples(st.booleans(), st.booleans(), st.sampled_from((NATIVE_PASSWORD, CACHING_SHA2_PASSWORD)))


@given(cfg=servers, packets=st.lists(st.tuples(st.binary(max_size=120), st.integers(0, 255)), min_size=1,
                                     max_size=4))
@FUZZ
def test_server_handshake_random_payloads(cfg: tuple[bool, bool, str], packets: list[tuple[bytes, int]]) -> None:
    server = make_server(*cfg)
    for payload, seq in packets:
        feed_checked(server, payload, seq)


@given(cfg=servers, data=st.data())
@FUZZ
def test_server_handshake_mutated_responses(cfg: tuple[bool, bool, str], data: st.DataObject) -> None:
    server = make_server(*cfg)
    user = data.draw(st.sampled_from(("root", "sha2user", "nobody")))
    plugin = data.draw(st.sampled_from((NATIVE_PASSWORD, CACHING_SHA2_PASSWORD, "dialog", "")))
    caps = int(C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.CONNECT_ATTRS
               | C.PLUGIN_AUTH_LENENC_CLIENT_DATA | C.CONNECT_WITH_DB)
    caps ^= data.draw(st.integers(0, 2**32 - 1)) & data.draw(st.sampled_from((0, 0xFFFFFFFF, int(C.SSL))))
    seq = 1
    if cfg[0] and data.draw(st.booleans()):
        outs = feed_checked(server, ssl_request(caps, 1 << 24, 45), 1)
        seq = 2 if outs == [StartTls()] else seq
    resp = HandshakeResponse41(caps | C.PROTOCOL_41, 1 << 24, 45, user, data.draw(st.binary(max_size=40)), "db",
                               plugin, {"a": "b"}).encode()
    outs = feed_checked(server, data.draw(mutated(resp)), data.draw(st.sampled_from((seq, seq, 0, 255))))
    # Then whatever a confused or hostile client sends next, including a public-key request and RSA garbage.
    for _ in range(data.draw(st.integers(0, 3))):
        nxt = max((o.seq for o in outs if isinstance(o, Reply)), default=seq) + 1
        payload = data.draw(st.sampled_from((b"\x02", b"\x01", b"", b"sha2pw\x00", bytes(256))) | st.binary(max_size=300))
        outs = feed_checked(server, payload, data.draw(st.sampled_from((nxt & 0xFF, (nxt + 1) & 0xFF, 0))))


@given(payload=st.binary(max_size=120), then=st.binary(max_size=60))
@FUZZ
def test_change_user_random_payloads(payload: bytes, then: bytes) -> None:
    server = make_server(False, True, NATIVE_PASSWORD)
    server._p.capabilities = int(C.PROTOCOL_41 | C.SECURE_CONNECTION)
    outs = server.begin_change_user(b"\x11" + payload)
    assert isinstance(outs, list) and outs
    feed_checked(server, then, 2)


def test_after_a_rejection_nothing_is_accepted() -> None:
    server = make_server(False, False, NATIVE_PASSWORD)
    outs = feed_checked(server, b"\x00\x00", 1)
    assert isinstance(outs[0], Rejected)
    for seq in (2, 3):
        again = feed_checked(server, b"\x00" * 40, seq)
        assert all(isinstance(o, Rejected) for o in again)
