"""Authentication math (auth.py) and the connection phase as state machines, without sockets.

The server side (ServerHandshake) is driven by dbmesh's own client side (ClientHandshake): they must interoperate,
and every packet's sequence id is checked on the way.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbmesh import errors
from dbmesh.protocol.mysql import auth
from dbmesh.protocol.mysql.client_handshake import ClientHandshake, Failed, Ready, Send
from dbmesh.protocol.mysql.constants import (
    BACKEND_BASE_CAPABILITIES,
    CACHING_SHA2_PASSWORD,
    NATIVE_PASSWORD,
    Capability,
)
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

USERS = {
    "root": Credential("root", "rootpw", NATIVE_PASSWORD),
    "sha2user": Credential("sha2user", "sha2pw", CACHING_SHA2_PASSWORD),
    "nopw": Credential("nopw", "", CACHING_SHA2_PASSWORD),
}


@pytest.fixture(scope="module")
def rsa_keys() -> auth.RsaKeyPair:
    return auth.RsaKeyPair()


def sha1(b: bytes) -> bytes:
    return hashlib.sha1(b).digest()


def sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=False))


# -- auth.py ---------------------------------------------------------------------------------------------------------


def test_new_scramble_is_mysql_shaped() -> None:
    for _ in range(200):
        s = auth.new_scramble()
        assert len(s) == 20
        assert all(0 < b < 0x80 and b != ord("$") for b in s)


def test_native_password_known_vector() -> None:
    # The stored hash of "password" as every MySQL shows it (mysql.user.authentication_string).
    assert "*" + sha1(sha1(b"password")).hex().upper() == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
    scramble = bytes(range(0x21, 0x21 + 20))
    expected = xor(sha1(b"password"), sha1(scramble + sha1(sha1(b"password"))))
    got = auth.native_password_response("password", scramble)
    assert got == expected and len(got) == 20
    # What a server holding only the stored hash recovers: SHA1(pw).
    assert xor(got, sha1(scramble + bytes.fromhex("2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"))) == sha1(b"password")
    assert auth.verify_native_password("password", scramble, got)
    assert not auth.verify_native_password("Password", scramble, got)
    # A scramble sent NUL-terminated (21 bytes) gives the same answer.
    assert auth.native_password_response("password", scramble + b"\x00") == expected


def test_empty_passwords_give_empty_responses() -> None:
    assert auth.native_password_response("", bytes(20)) == b""
    assert auth.caching_sha2_response("", bytes(20)) == b""
    assert auth.verify_native_password("", bytes(20), b"")
    assert not auth.verify_native_password("", bytes(20), b"\x00")


def test_caching_sha2_fast_path_vector() -> None:
    nonce = bytes(range(1, 21))
    pw = "sha2pw"
    expected = xor(sha256(pw.encode()), sha256(sha256(sha256(pw.encode())) + nonce))
    got = auth.caching_sha2_response(pw, nonce)
    assert got == expected and len(got) == 32
    assert auth.caching_sha2_response(pw, nonce + b"\x00") == expected  # AuthSwitch data carries a trailing NUL
    assert auth.verify_caching_sha2(pw, nonce, got)
    assert not auth.verify_caching_sha2(pw, nonce, got[:-1])
    assert not auth.verify_caching_sha2("other", nonce, got)
    # The server's check with only its cache entry SHA256(SHA256(pw)): XOR gives SHA256(pw) back.
    cache = sha256(sha256(pw.encode()))
    assert sha256(xor(got, sha256(cache + nonce))) == cache


def test_verify_cleartext() -> None:
    assert auth.verify_cleartext("pw", b"pw\x00")
    assert auth.verify_cleartext("pw", b"pw")
    assert not auth.verify_cleartext("pw", b"pw\x00\x00")
    assert not auth.verify_cleartext("pw", b"p\x00")


@pytest.mark.parametrize("password", ["", "sha2pw", "a much longer password than twenty bytes, with ünïcode"])
def test_rsa_round_trip(rsa_keys: auth.RsaKeyPair, password: str) -> None:
    nonce = auth.new_scramble()
    assert rsa_keys.public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    ct = auth.rsa_encrypt_password(rsa_keys.public_pem, password, nonce + b"\x00")
    assert len(ct) == 256
    assert rsa_keys.decrypt_password(ct, nonce) == password.encode() + b"\x00"
    # XOR with the nonce happened before encryption: another nonce does not give the password back.
    assert rsa_keys.decrypt_password(ct, bytes(b ^ 1 for b in nonce)) != password.encode() + b"\x00"


def test_rsa_decrypt_garbage_raises_value_error(rsa_keys: auth.RsaKeyPair) -> None:
    with pytest.raises(ValueError):
        rsa_keys.decrypt_password(bytes(256), bytes(20))
    with pytest.raises(ValueError):
        rsa_keys.decrypt_password(b"short", bytes(20))


# -- server/client handshake flows -----------------------------------------------------------------------------------


def make_server(*, tls: bool = False, rsa: auth.RsaKeyPair | None = None, default_plugin: str = NATIVE_PASSWORD,
                users: dict[str, Credential] | None = None) -> ServerHandshake:
    table = USERS if users is None else users
    return ServerHandshake(connection_id=7, server_version=b"8.0.36-dbmesh", collation=45, tls_available=tls,
                           users=lambda name, host: table.get(name), client_host="10.0.0.9", rsa_keys=rsa,
                           default_plugin=default_plugin)


def make_client(user: str, password: str, database: str | None = "shop", **kw: Any) -> ClientHandshake:
    caps = int(BACKEND_BASE_CAPABILITIES | Capability.DEPRECATE_EOF | Capability.MULTI_STATEMENTS)
    return ClientHandshake(user=user, password=password, database=database, capabilities=caps, collation=45,
                           attributes={"_client_name": "test"}, **kw)


def err_payload(rej: Rejected) -> bytes:
    e = rej.error
    return ErrPacket(e.entry.mysql_errno, e.entry.mysql_sqlstate, e.message).encode()


class Wire:
    """Carries packets between the two state machines, recording (direction, seq, payload)."""

    def __init__(self, server: ServerHandshake, client: ClientHandshake) -> None:
        self.server, self.client = server, client
        self.log: list[tuple[str, int, bytes]] = []
        self.server_outcomes: list[Any] = []
        self.client_outcomes: list[Any] = []

    def to_client(self, payload: bytes, seq: int) -> list[Any]:
        self.log.append(("s->c", seq, payload))
        outs = self.client.feed(payload, seq)
        self.client_outcomes += outs
        return outs

    def to_server(self, payload: bytes, seq: int) -> list[Any]:
        self.log.append(("c->s", seq, payload))
        outs = self.server.feed(payload, seq)
        self.server_outcomes += outs
        return outs

    def run(self, first: list[Any] | None = None, tamper: Any = None) -> None:
        """Greet (unless `first` client outcomes are given) and pass packets until neither side sends."""
        pending = first if first is not None else self.to_client(self.server.greeting(), 0)
        while pending:
            nxt: list[Any] = []
            for out in pending:
                if isinstance(out, Send):
                    payload = tamper(out.payload) if tamper else out.payload
                    tamper = None
                    for s in self.to_server(payload, out.seq):
                        if isinstance(s, Reply):
                            nxt += self.to_client(s.payload, s.seq)
                        elif isinstance(s, Authenticated):
                            nxt += self.to_client(s.ok.payload, s.ok.seq)
                        elif isinstance(s, Rejected):
                            nxt += self.to_client(err_payload(s), s.seq)
            pending = nxt

    def seqs(self) -> list[int]:
        return [seq for _, seq, _ in self.log]


def test_native_ok() -> None:
    server, client = make_server(), make_client("root", "rootpw")
    w = Wire(server, client)
    w.run()
    assert w.seqs() == [0, 1, 2]
    auth_ok = w.server_outcomes[-1]
    assert isinstance(auth_ok, Authenticated)
    assert (auth_ok.user, auth_ok.database, auth_ok.plugin, auth_ok.collation) == ("root", "shop", NATIVE_PASSWORD, 45)
    assert auth_ok.attributes == {"_client_name": "test"}
    # Negotiated = what the client asked, limited to what the server offers.
    assert auth_ok.capabilities == client.capabilities & server.capabilities
    assert auth_ok.capabilities & Capability.CONNECT_WITH_DB
    assert not auth_ok.capabilities & Capability.SSL
    assert OkPacket.decode(auth_ok.ok.payload).status & 0x2
    ready = w.client_outcomes[-1]
    assert isinstance(ready, Ready) and ready.server.connection_id == 7


def test_native_wrong_password() -> None:
    w = Wire(make_server(), make_client("root", "nope"))
    w.run()
    assert w.seqs() == [0, 1, 2]
    rej = w.server_outcomes[-1]
    assert isinstance(rej, Rejected) and isinstance(rej.error, errors.AuthError)
    assert rej.error.entry is errors.AUTH_ACCESS_DENIED and rej.seq == 2
    failed = w.client_outcomes[-1]
    assert isinstance(failed, Failed)
    assert (failed.err.code, failed.err.sqlstate) == (1045, "28000")
    assert failed.err.message == "Access denied for user 'root'@'10.0.0.9' (using password: YES)"


@pytest.mark.parametrize("user", ["ghost", ""])
def test_unknown_user(user: str) -> None:
    w = Wire(make_server(), make_client(user, "x"))
    w.run()
    failed = w.client_outcomes[-1]
    assert isinstance(failed, Failed) and failed.err.code == 1045
    assert f"'{user}'@'10.0.0.9' (using password: YES)" in failed.err.message
    w = Wire(make_server(), make_client(user, ""))  # no password: "using password: NO"
    w.run()
    assert w.client_outcomes[-1].err.message.endswith("(using password: NO)")
    assert w.seqs() == [0, 1, 2]


def test_caching_sha2_fast_path() -> None:
    server, client = make_server(default_plugin=CACHING_SHA2_PASSWORD), make_client("sha2user", "sha2pw")
    w = Wire(server, client)
    w.run()
    assert w.seqs() == [0, 1, 2, 3]
    assert w.log[2][2] == b"\x01\x03"  # fast auth success, then OK
    assert isinstance(w.server_outcomes[-1], Authenticated)
    assert w.server_outcomes[-1].plugin == CACHING_SHA2_PASSWORD
    assert isinstance(w.client_outcomes[-1], Ready)


def test_caching_sha2_empty_password() -> None:
    w = Wire(make_server(default_plugin=CACHING_SHA2_PASSWORD), make_client("nopw", ""))
    w.run()
    assert isinstance(w.client_outcomes[-1], Ready)
    assert w.seqs() == [0, 1, 2]


def test_caching_sha2_wrong_password_without_tls_or_rsa_is_refused() -> None:
    w = Wire(make_server(default_plugin=CACHING_SHA2_PASSWORD), make_client("sha2user", "bad"))
    w.run()
    assert w.log[2][2] == b"\x01\x04"  # a failed fast check asks for full authentication, not ERR
    failed = w.client_outcomes[-1]
    assert isinstance(failed, Failed) and failed.err.code == 1045
    assert w.seqs() == [0, 1, 2, 3, 4]  # the client's public-key request (3) is refused (4)


def tls_login(server: ServerHandshake, client: ClientHandshake) -> tuple[Wire, list[Any]]:
    """SSLRequest (seq 1) → StartTls; the client's HandshakeResponse then goes with seq 2."""
    w = Wire(server, client)
    first = w.to_client(server.greeting(), 0)
    assert isinstance(first[0], Send) and first[0].seq == 1
    outs = w.to_server(ssl_request(client.capabilities, client.max_packet, client.collation), 1)
    assert outs == [StartTls()]
    assert server.tls_active
    # A TLS client repeats its capabilities, CLIENT_SSL included, in the HandshakeResponse that follows.
    r = HandshakeResponse41.decode(first[0].payload)
    resp = HandshakeResponse41(r.capabilities | Capability.SSL, r.max_packet, r.collation, r.user, r.auth_response,
                               r.database, r.auth_plugin, r.attributes)
    return w, [Send(resp.encode(), 2)]


def test_caching_sha2_full_auth_over_tls() -> None:
    server = make_server(tls=True, default_plugin=CACHING_SHA2_PASSWORD)
    w, first = tls_login(server, make_client("sha2user", "sha2pw"))
    # A wrong fast-path proof (e.g. a cold server cache on the client's side of things): full authentication.
    bad = HandshakeResponse41.decode(first[0].payload)
    tampered = HandshakeResponse41(bad.capabilities, bad.max_packet, bad.collation, bad.user, bytes(32),
                                   bad.database, bad.auth_plugin, bad.attributes).encode()
    outs = w.to_server(tampered, 2)
    assert outs == [Reply(b"\x01\x04", 3)]
    outs = w.to_server(b"sha2pw\x00", 4)  # cleartext, safe inside TLS
    assert len(outs) == 1 and isinstance(outs[0], Authenticated) and outs[0].ok.seq == 5
    assert outs[0].capabilities & Capability.SSL


def test_caching_sha2_full_auth_over_tls_wrong_password() -> None:
    server = make_server(tls=True, default_plugin=CACHING_SHA2_PASSWORD)
    w, first = tls_login(server, make_client("sha2user", "bad"))
    assert w.to_server(first[0].payload, 2) == [Reply(b"\x01\x04", 3)]
    outs = w.to_server(b"bad\x00", 4)
    assert len(outs) == 1 and isinstance(outs[0], Rejected)
    assert outs[0].error.entry.mysql_errno == 1045 and outs[0].seq == 5


def test_native_over_tls() -> None:
    server = make_server(tls=True)
    w, first = tls_login(server, make_client("root", "rootpw"))
    w.run(first)
    assert isinstance(w.client_outcomes[-1], Ready)
    assert [s for d, s, _ in w.log if d == "s->c"][-1] == 3


def test_caching_sha2_full_auth_with_rsa(rsa_keys: auth.RsaKeyPair) -> None:
    server = make_server(rsa=rsa_keys, default_plugin=CACHING_SHA2_PASSWORD)
    client = make_client("sha2user", "sha2pw")
    w = Wire(server, client)

    def wrong_proof(payload: bytes) -> bytes:
        r = HandshakeResponse41.decode(payload)
        return HandshakeResponse41(r.capabilities, r.max_packet, r.collation, r.user, bytes(32), r.database,
                                   r.auth_plugin, r.attributes).encode()

    w.run(tamper=wrong_proof)
    payloads = [p for _, _, p in w.log]
    assert payloads[2] == b"\x01\x04"
    assert payloads[3] == b"\x02"  # public key request
    assert payloads[4] == b"\x01" + rsa_keys.public_pem
    assert len(payloads[5]) == 256  # RSA-OAEP ciphertext
    assert w.seqs() == [0, 1, 2, 3, 4, 5, 6]
    assert isinstance(w.server_outcomes[-1], Authenticated)
    assert isinstance(w.client_outcomes[-1], Ready)


def test_rsa_password_garbage_is_denied(rsa_keys: auth.RsaKeyPair) -> None:
    server = make_server(rsa=rsa_keys, default_plugin=CACHING_SHA2_PASSWORD)
    client = make_client("sha2user", "bad")
    w = Wire(server, client)
    client_out = w.to_client(server.greeting(), 0)
    assert w.to_server(client_out[0].payload, 1) == [Reply(b"\x01\x04", 2)]
    assert w.to_server(b"\x02", 3) == [Reply(b"\x01" + rsa_keys.public_pem, 4)]
    outs = w.to_server(b"\x00" * 256, 5)
    assert len(outs) == 1 and isinstance(outs[0], Rejected) and outs[0].error.entry.mysql_errno == 1045
    assert outs[0].seq == 6


def test_switch_native_client_to_caching_sha2_user() -> None:
    server = make_server(default_plugin=NATIVE_PASSWORD)
    w = Wire(server, make_client("sha2user", "sha2pw"))
    w.run()
    switch = AuthSwitchRequest.decode(w.log[2][2])
    assert switch.plugin == CACHING_SHA2_PASSWORD
    assert switch.data == server.scramble + b"\x00" and len(switch.data) == 21
    assert w.seqs() == [0, 1, 2, 3, 4, 5]  # greet, response, switch, proof, fast-ok, OK
    assert w.log[4][2] == b"\x01\x03"
    assert isinstance(w.server_outcomes[-1], Authenticated)
    assert w.server_outcomes[-1].plugin == CACHING_SHA2_PASSWORD
    assert isinstance(w.client_outcomes[-1], Ready)


def test_switch_caching_sha2_client_to_native_user() -> None:
    server = make_server(default_plugin=CACHING_SHA2_PASSWORD)
    w = Wire(server, make_client("root", "rootpw"))
    w.run()
    assert AuthSwitchRequest.decode(w.log[2][2]).plugin == NATIVE_PASSWORD
    assert w.seqs() == [0, 1, 2, 3, 4]
    assert isinstance(w.client_outcomes[-1], Ready)
    assert w.server_outcomes[-1].plugin == NATIVE_PASSWORD


def test_switch_then_wrong_password() -> None:
    w = Wire(make_server(default_plugin=CACHING_SHA2_PASSWORD), make_client("root", "bad"))
    w.run()
    failed = w.client_outcomes[-1]
    assert isinstance(failed, Failed) and failed.err.code == 1045
    assert w.seqs() == [0, 1, 2, 3, 4]


def test_ssl_request_without_tls_is_rejected() -> None:
    server = make_server(tls=False)
    assert not server.capabilities & Capability.SSL
    outs = server.feed(ssl_request(int(BACKEND_BASE_CAPABILITIES), 1 << 24, 45), 1)
    assert len(outs) == 1 and isinstance(outs[0], Rejected)
    assert isinstance(outs[0].error, errors.ProtocolError) and outs[0].seq == 2


def test_second_ssl_request_is_rejected() -> None:
    server = make_server(tls=True)
    assert server.capabilities & Capability.SSL
    req = ssl_request(int(BACKEND_BASE_CAPABILITIES), 1 << 24, 45)
    assert server.feed(req, 1) == [StartTls()]
    outs = server.feed(req, 2)
    assert len(outs) == 1 and isinstance(outs[0], Rejected)


@pytest.mark.parametrize("seq", [0, 2, 255])
def test_wrong_sequence_id(seq: int) -> None:
    server = make_server()
    client = make_client("root", "rootpw")
    send = client.feed(server.greeting(), 0)[0]
    outs = server.feed(send.payload, seq)
    assert len(outs) == 1 and isinstance(outs[0], Rejected)
    assert isinstance(outs[0].error, errors.ProtocolError)
    assert outs[0].error.entry is errors.PROTOCOL_BAD_SEQUENCE
    assert outs[0].error.entry.mysql_errno == 1156
    assert 0 <= outs[0].seq <= 255


def test_wrong_sequence_id_after_switch() -> None:
    server = make_server(default_plugin=CACHING_SHA2_PASSWORD)
    client = make_client("root", "rootpw")
    send = client.feed(server.greeting(), 0)[0]
    outs = server.feed(send.payload, 1)
    assert isinstance(outs[0], Reply) and outs[0].seq == 2
    proof = client.feed(outs[0].payload, 2)[0]
    assert proof.seq == 3
    rej = server.feed(proof.payload, 4)
    assert len(rej) == 1 and isinstance(rej[0], Rejected) and rej[0].error.entry is errors.PROTOCOL_BAD_SEQUENCE


def truncations() -> list[bytes]:
    client = make_client("root", "rootpw")
    full = client.feed(make_server().greeting(), 0)[0].payload
    return [full[:n] for n in (0, 1, 4, 9, 31, 33, 36, 40)]


@pytest.mark.parametrize("payload", truncations())
def test_truncated_handshake_response_is_a_protocol_error(payload: bytes) -> None:
    server = make_server()
    outs = server.feed(payload, 1)
    assert len(outs) == 1 and isinstance(outs[0], Rejected), outs
    assert isinstance(outs[0].error, errors.ProtocolError)
    assert outs[0].error.entry is errors.PROTOCOL_MALFORMED and outs[0].seq == 2


def test_data_after_authentication_is_rejected() -> None:
    server = make_server()
    w = Wire(server, make_client("root", "rootpw"))
    w.run()
    outs = server.feed(b"\x03SELECT 1", 3)
    assert len(outs) == 1 and isinstance(outs[0], Rejected)


def test_change_user() -> None:
    server = make_server()
    server._p.capabilities = int(BACKEND_BASE_CAPABILITIES)
    outs = server.begin_change_user(b"\x11sha2user\x00\x00shop\x00" + struct.pack("<H", 45))
    assert len(outs) == 1 and isinstance(outs[0], Reply) and outs[0].seq == 1
    switch = AuthSwitchRequest.decode(outs[0].payload)
    assert switch.plugin == CACHING_SHA2_PASSWORD
    fin = server.feed(auth.caching_sha2_response("sha2pw", switch.data), 2)
    assert isinstance(fin[-1], Authenticated) and fin[-1].user == "sha2user" and fin[-1].database == "shop"
    assert [o.seq for o in fin[:-1]] == [3] and fin[-1].ok.seq == 4


def test_client_refuses_unknown_plugin_switch() -> None:
    client = make_client("root", "rootpw")
    client.feed(make_server().greeting(), 0)
    outs = client.feed(AuthSwitchRequest("auth_gssapi_client", b"x").encode(), 2)
    assert len(outs) == 1 and isinstance(outs[0], Failed) and outs[0].err.code == 1251


def test_client_reports_malformed_greeting() -> None:
    outs = make_client("root", "rootpw").feed(b"\x0a5.7", 0)
    assert len(outs) == 1 and isinstance(outs[0], Failed) and outs[0].err.sqlstate == "08S01"


@given(version=st.binary(max_size=20).map(lambda b: b.replace(b"\x00", b"")))
@settings(max_examples=30, deadline=None)
def test_greeting_decodes(version: bytes) -> None:
    server = ServerHandshake(connection_id=1, server_version=version, collation=45, tls_available=True,
                             users=lambda n, h: None, client_host="h", rsa_keys=None)
    hs = HandshakeV10.decode(server.greeting())
    assert hs.auth_data == server.scramble and hs.server_version == version
    assert hs.capabilities == server.capabilities and hs.auth_plugin == NATIVE_PASSWORD
