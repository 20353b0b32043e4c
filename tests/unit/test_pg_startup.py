"""PostgreSQL startup phase: SCRAM/md5 math, ServerStartup driven by ClientStartup in memory, and ClientStartup
against a throwaway PostgreSQL (skipped when no PostgreSQL binaries are installed)."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dbmesh import errors
from dbmesh._wire.pg_framing import MessageReader
from dbmesh.protocol.postgresql import client_startup as cs
from dbmesh.protocol.postgresql import messages as m
from dbmesh.protocol.postgresql import scram
from dbmesh.protocol.postgresql import server_startup as ss

# -- SCRAM and md5 math ----------------------------------------------------------------------------------------------

RFC7677_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")


def test_rfc7677_vector_both_sides() -> None:
    client = scram.ClientScram("pencil", user="user", nonce=b"rOprNGfwEbeRWgbNEkqO")
    server = scram.ServerScram(scram.ScramVerifier.from_password("pencil", RFC7677_SALT, 4096),
                               nonce=b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    assert client.first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = server.first(client.first())
    assert server_first == b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    client_final = client.final(server_first)
    assert client_final == (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                            b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    server_final = server.final(client_final)
    assert server_final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert client.verify(server_final) and client.verified


def test_verifier_string_round_trip() -> None:
    v = scram.ScramVerifier.from_password("pencil", RFC7677_SALT, 4096)
    assert scram.ScramVerifier.parse(str(v)) == v
    assert str(v).startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")
    assert v.verify_password("pencil") and not v.verify_password("pencil2")
    for bad in ("md5abc", "SCRAM-SHA-256$x:AA==$AA==:AA==", "SCRAM-SHA-256$4096:AA==$AA==:AA=="):
        with pytest.raises(scram.ScramError):
            scram.ScramVerifier.parse(bad)


def test_wrong_password_proof_is_refused() -> None:
    server = scram.ServerScram(scram.ScramVerifier.from_password("right", iterations=16))
    client = scram.ClientScram("wrong")
    assert server.final(client.final(server.first(client.first()))) is None


@pytest.mark.parametrize(("first", "reason"), [
    (b"p=tls-server-end-point,,n=,r=abc", "channel binding"),
    (b"n,a=bob,n=,r=abc", "authorization identity"),
    (b"x,,n=,r=abc", "channel-binding flag"),
    (b"n,,m=ext,n=,r=abc", "mandatory"),
    (b"n,,n=,", "malformed"),
    (b"n,,r=abc", "n= and r="),
    (b"garbage", "malformed"),
])
def test_server_refuses_bad_client_first(first: bytes, reason: str) -> None:
    server = scram.ServerScram(scram.ScramVerifier.from_password("x", iterations=16))
    with pytest.raises(scram.ScramError, match=reason):
        server.first(first)


def test_server_accepts_y_flag_and_checks_binding_echo() -> None:
    v = scram.ScramVerifier.from_password("pw", iterations=16)
    server = scram.ServerScram(v)
    client = scram.ClientScram("pw")
    server_first = server.first(b"y,," + client.first()[3:])
    final = client.final(server_first)  # sends c=biws ("n,,"), which does not echo "y,,"
    with pytest.raises(scram.ScramError, match="channel binding data"):
        server.final(final)
    server = scram.ServerScram(v)
    server_first = server.first(b"y,," + client.first()[3:])
    client2 = scram.ClientScram("pw", nonce=client.first()[8:])
    final = client2.final(server_first).replace(b"c=biws", b"c=" + base64.b64encode(b"y,,"))
    # The proof covers c=, so the tampered message fails the proof, not the parser.
    assert server.final(final) is None


def test_client_refuses_bad_server_first() -> None:
    client = scram.ClientScram("pw", nonce=b"abc")
    for bad in (b"r=xyz,s=AAAA,i=4096", b"r=abc,s=AAAA,i=4096", b"r=abcd,s=AAAA,i=0", b"r=abcd,s=!!,i=1",
                b"r=abcd,i=1", b"r=abcd,s=AAAA,i=99999999999"):
        with pytest.raises(scram.ScramError):
            client.final(bad)
    assert not client.verify(b"v=AAAA")  # no exchange yet


def test_md5() -> None:
    # Computed independently: md5(hex(md5("secret" + "alice")) + salt)
    import hashlib
    inner = hashlib.md5(b"secretalice").hexdigest()
    expected = b"md5" + hashlib.md5(inner.encode() + b"\x01\x02\x03\x04").hexdigest().encode()
    assert scram.md5_response("alice", "secret", b"\x01\x02\x03\x04") == expected
    assert scram.md5_stored("alice", "secret") == "md5" + inner
    assert scram.verify_md5("alice", "secret", b"\x01\x02\x03\x04", expected)
    assert scram.verify_md5("alice", "md5" + inner, b"\x01\x02\x03\x04", expected)
    assert not scram.verify_md5("alice", "other", b"\x01\x02\x03\x04", expected)


def test_saslprep() -> None:
    assert scram.saslprep("pencil") == b"pencil"
    assert scram.saslprep("I\u00adX") == b"IX"  # soft hyphen maps to nothing
    assert scram.saslprep("a\u00a0b") == b"a b"  # non-ASCII space maps to space
    assert scram.saslprep("\u2168") == b"IX"  # NFKC
    assert scram.saslprep("a\x07b") == b"a\x07b"  # prohibited: PostgreSQL falls back to the raw bytes


# -- ServerStartup driven by ClientStartup, in memory ---------------------------------------------------------------


@dataclass
class Result:
    client: list[cs.ClientOutcome]
    server: list[ss.Outcome]


def drive(server: ss.ServerStartup, client: cs.ClientStartup, after_ok: bytes = b"") -> Result:
    """Shuttle bytes between the two state machines until the client decides."""
    seen: list[ss.Outcome] = []
    sr = MessageReader()
    sr.feed(client.start())
    body = sr.read_startup()
    assert body is not None
    outs = server.feed_startup(body)
    for _ in range(10):
        seen += outs
        to_client = b""
        for o in outs:
            if isinstance(o, ss.Reply):
                to_client += o.data
            elif isinstance(o, ss.Authenticated):
                to_client += o.ok + after_ok
            elif isinstance(o, ss.Rejected):
                to_client += o.message
        cr = MessageReader()
        cr.feed(to_client)
        sr = MessageReader()
        while (msg := cr.read()) is not None:
            for co in client.feed(*msg):
                if isinstance(co, cs.Send):
                    sr.feed(co.data)
                else:
                    return Result([co], seen)
        outs = []
        while (msg := sr.read()) is not None:
            outs += server.feed(*msg)
    raise AssertionError("no outcome")


AFTER_OK = (m.ParameterStatus("server_version", "16.0").encode() + m.BackendKeyData(77, b"abcd").encode()
            + m.ReadyForQuery("I").encode())


def make_server(password: str | None, method: str, **kw: Any) -> ss.ServerStartup:
    def users(user: str, database: str) -> ss.Credential | None:
        return ss.Credential(user, password) if password is not None and user == "alice" else None
    return ss.ServerStartup(users=users, tls_available=kw.pop("tls", False), method_for=lambda _u: method, **kw)


METHODS = ["scram-sha-256", "md5", "password"]


# Every method/secret pairing except SCRAM with an md5 secret, which cannot work (test_scram_with_md5_secret).
LOGIN_CASES = [(m, s) for m in METHODS for s in ("cleartext", "md5", "scram")
               if not (m == "scram-sha-256" and s == "md5")]


@pytest.mark.parametrize(("method", "stored"), LOGIN_CASES)
def test_login_succeeds(method: str, stored: str) -> None:
    secret = {"cleartext": "s3cret", "md5": scram.md5_stored("alice", "s3cret"),
              "scram": str(scram.ScramVerifier.from_password("s3cret", iterations=64))}[stored]
    server = make_server(secret, method)
    client = cs.ClientStartup("alice", "s3cret", "shop", {"application_name": "t", "_pq_.x": "1"})
    r = drive(server, client, AFTER_OK)
    assert r.client == [cs.Ready({"server_version": "16.0"}, 77, b"abcd", "I")]
    auth = [o for o in r.server if isinstance(o, ss.Authenticated)]
    assert len(auth) == 1
    assert (auth[0].user, auth[0].database, auth[0].params) == ("alice", "shop", {"application_name": "t"})
    assert auth[0].protocol_version == 196608
    expected_method = "scram-sha-256" if stored == "scram" and method == "md5" else method
    assert client.method == expected_method
    # The _pq_ option drew exactly one NegotiateProtocolVersion, answered before authentication.
    assert client.negotiated == m.NegotiateProtocolVersion(196608, ("_pq_.x",))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("user", ["alice", "mallory"])
def test_wrong_password_and_unknown_user_look_the_same(method: str, user: str) -> None:
    r = drive(make_server("s3cret", method), cs.ClientStartup(user, "wrong"))
    assert len(r.client) == 1 and isinstance(r.client[0], cs.Failed)
    fields = r.client[0].fields
    assert fields.pairs == (("S", "FATAL"), ("V", "FATAL"), ("C", "28P01"),
                            ("M", f'password authentication failed for user "{user}"'))
    rejected = r.server[-1]
    assert isinstance(rejected, ss.Rejected) and rejected.error.entry is errors.AUTH_ACCESS_DENIED


def test_unknown_user_scram_salt_is_stable() -> None:
    salts = []
    for _ in range(2):
        server = make_server(None, "scram-sha-256")
        server.feed_startup(m.StartupMessage(196608, {"user": "ghost"}).body())
        client = scram.ClientScram("x")
        out = server.feed(ord("p"), m.SASLInitialResponse("SCRAM-SHA-256", client.first()).payload())
        assert isinstance(out[0], ss.Reply)
        salts.append(m.decode_authentication(out[0].data[5:]).data.split(b",")[1])  # type: ignore[union-attr]
    assert salts[0] == salts[1]


def test_scram_with_md5_secret_fails_like_a_wrong_password() -> None:
    r = drive(make_server(scram.md5_stored("alice", "s3cret"), "scram-sha-256"), cs.ClientStartup("alice", "s3cret"))
    assert isinstance(r.client[0], cs.Failed) and r.client[0].fields.sqlstate == "28P01"


def test_empty_password_never_authenticates() -> None:
    r = drive(make_server("", "password"), cs.ClientStartup("alice", ""))
    assert isinstance(r.client[0], cs.Failed) and r.client[0].fields.sqlstate == "28P01"


def test_client_refuses_a_server_that_skips_sasl_final() -> None:
    client = cs.ClientStartup("alice", "pw")
    client.start()
    out = client.feed(ord("R"), m.AuthenticationSASL(("SCRAM-SHA-256",)).payload())
    assert isinstance(out[0], cs.Send)
    out = client.feed(ord("R"), m.AuthenticationOk().payload())
    assert isinstance(out[0], cs.Failed) and "before completing SCRAM" in out[0].fields.message


def test_client_refuses_a_forged_server_signature() -> None:
    v = scram.ScramVerifier.from_password("pw", iterations=16)
    forged = scram.ScramVerifier(v.iterations, v.salt, v.stored_key, os.urandom(32))
    server = ss.ServerStartup(users=lambda u, d: ss.Credential(u, str(forged)), tls_available=False,
                              method_for=lambda u: "scram-sha-256")
    r = drive(server, cs.ClientStartup("alice", "pw"))
    assert isinstance(r.client[0], cs.Failed) and "server signature" in r.client[0].fields.message


def test_client_plus_only_and_unsupported_methods() -> None:
    client = cs.ClientStartup("a", "b")
    out = client.feed(ord("R"), m.AuthenticationSASL(("SCRAM-SHA-256-PLUS",)).payload())
    assert isinstance(out[0], cs.Failed)
    client = cs.ClientStartup("a", "b")
    out = client.feed(ord("R"), m.AuthenticationUnsupported(7).payload())
    assert isinstance(out[0], cs.Failed) and "(7)" in out[0].fields.message
    client = cs.ClientStartup("a", "b")
    out = client.feed(ord("R"), b"\x00")
    assert isinstance(out[0], cs.Failed) and out[0].fields.sqlstate == "08P01"


def test_client_trust_notice_and_no_key() -> None:
    client = cs.ClientStartup("a", "")
    assert client.feed(ord("R"), m.AuthenticationOk().payload()) == []
    assert client.feed(ord("N"), m.error_response({"S": "NOTICE", "M": "hi"})) == []
    out = client.feed(ord("Z"), b"T")
    assert out == [cs.Ready({}, None, None, "T")]
    assert client.method == "trust" and client.notices[0].message == "hi"


def test_client_server_error_passes_through() -> None:
    client = cs.ClientStartup("a", "b")
    payload = m.error_response({"S": "FATAL", "C": "3D000", "M": 'database "x" does not exist'})
    out = client.feed(ord("E"), payload)
    assert isinstance(out[0], cs.Failed) and out[0].fields.payload() == payload


# -- ServerStartup: negotiation, TLS, cancel, refusals ---------------------------------------------------------------


def startup_body(version: int = 196608, **params: str) -> bytes:
    return m.StartupMessage(version, params).body()


def test_ssl_request_with_and_without_tls() -> None:
    server = make_server("pw", "password", tls=True)
    assert server.feed_startup(struct.pack("!I", 80877103)) == [ss.Reply(b"S"), ss.StartTls()]
    assert server.expects_startup_packet
    server.on_tls_established()
    out = server.feed_startup(struct.pack("!I", 80877103))
    assert isinstance(out[0], ss.Rejected) and b"C08P01" in out[0].message and out[0].message[:1] == b"E"
    server = make_server("pw", "password")
    assert server.feed_startup(struct.pack("!I", 80877103)) == [ss.Reply(b"N")]
    assert server.feed_startup(struct.pack("!I", 80877104)) == [ss.Reply(b"N")]
    out = server.feed_startup(startup_body(user="alice"))
    assert out == [ss.Reply(m.AuthenticationCleartextPassword().encode())]
    assert not server.expects_startup_packet


def test_gssenc_request_twice_is_refused() -> None:
    server = make_server("pw", "password")
    assert server.feed_startup(struct.pack("!I", 80877104)) == [ss.Reply(b"N")]
    assert isinstance(server.feed_startup(struct.pack("!I", 80877104))[0], ss.Rejected)


def test_cancel_request() -> None:
    server = make_server("pw", "password")
    assert server.feed_startup(struct.pack("!IiI", 80877102, 99, 0xDEADBEEF)) == [
        ss.Cancel(99, b"\xde\xad\xbe\xef")]


def test_protocol_versions() -> None:
    out = make_server("pw", "md5").feed_startup(startup_body(0x00020000, user="alice"))
    assert isinstance(out[0], ss.Rejected) and m.ErrorFields.decode(out[0].message[5:]).sqlstate == "0A000"
    out = make_server("pw", "md5").feed_startup(startup_body(196610, user="alice"))
    assert len(out) == 2 and out[0] == ss.Reply(m.NegotiateProtocolVersion(196608, ()).encode())
    assert isinstance(out[1], ss.Reply) and out[1].data[:1] == b"R"
    out = make_server("pw", "md5").feed_startup(startup_body(196608, user="alice"))
    assert len(out) == 1 and out[0].data[:1] == b"R"  # type: ignore[union-attr]
    # PG 19 libpq "grease": 3.9999 plus an unknown option; exactly one 'v' names the option.
    out = make_server("pw", "md5").feed_startup(
        startup_body(0x0003270F, user="alice", **{"_pq_.test_protocol_negotiation": ""}))
    assert out[0] == ss.Reply(m.NegotiateProtocolVersion(196608, ("_pq_.test_protocol_negotiation",)).encode())


@pytest.mark.parametrize("body", [
    b"\x00\x03\x00\x00",  # no terminator
    startup_body(database="x"),  # no user
    struct.pack("!Ii", 80877102, 1) + b"k",  # short cancel key
])
def test_malformed_startup_is_rejected_with_08P01(body: bytes) -> None:
    out = make_server("pw", "md5").feed_startup(body)
    assert len(out) == 1 and isinstance(out[0], ss.Rejected)
    assert m.ErrorFields.decode(out[0].message[5:]).pairs[:3] == (("S", "FATAL"), ("V", "FATAL"), ("C", "08P01"))


@pytest.mark.parametrize(("method", "t", "payload"), [
    ("password", ord("Q"), b"select 1\x00"),
    ("password", ord("p"), b"no terminator"),
    ("md5", ord("p"), b"md5\x00extra"),
    ("scram-sha-256", ord("p"), b"SCRAM-SHA-256\x00\xff\xff\xff\xff"),
    ("scram-sha-256", ord("p"), b"SCRAM-SHA-1\x00\x00\x00\x00\x03abc"),
    ("scram-sha-256", ord("p"), m.SASLInitialResponse("SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=a").payload()),
    ("scram-sha-256", ord("p"), b"x" * 70000),
])
def test_malformed_auth_messages_are_rejected(method: str, t: int, payload: bytes) -> None:
    server = make_server("pw", method)
    server.feed_startup(startup_body(user="alice"))
    out = server.feed(t, payload)
    assert len(out) == 1 and isinstance(out[0], ss.Rejected) and b"C08P01" in out[0].message
    after = server.feed(ord("p"), b"x\x00")
    assert isinstance(after[0], ss.Rejected) and b"unexpected message during the startup phase" in after[0].message


def test_channel_binding_request_names_the_reason() -> None:
    server = make_server("pw", "scram-sha-256")
    server.feed_startup(startup_body(user="alice"))
    out = server.feed(ord("p"), m.SASLInitialResponse("SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=a").payload())
    assert isinstance(out[0], ss.Rejected) and b"SCRAM-SHA-256-PLUS is not offered" in out[0].message


def test_unknown_method_is_refused() -> None:
    out = make_server("pw", "gss").feed_startup(startup_body(user="alice"))
    assert isinstance(out[0], ss.Rejected) and out[0].error.entry is errors.AUTH_PLUGIN_UNSUPPORTED


# -- against a real PostgreSQL ---------------------------------------------------------------------------------------

PG_BIN = Path(os.environ.get("DBMESH_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class Postgres:
    host: str
    port: int
    sockdir: str

    def psql(self, sql: str) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "psql"), "-h", self.sockdir,
                               "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                               "-qc", sql], capture_output=True, timeout=30)
        if done.returncode:
            raise AssertionError(f"psql failed: {done.stderr.decode(errors='replace')}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("needs PostgreSQL binaries, runuser and root (initdb runs as the postgres user)")
    tmp = tempfile.mkdtemp(prefix="dbmesh-pg-")
    shutil.chown(tmp, "postgres")
    data = os.path.join(tmp, "data")
    port = _free_port()
    as_pg: Callable[..., subprocess.CompletedProcess[bytes]] = lambda *a: subprocess.run(  # noqa: E731
        ["runuser", "-u", "postgres", "--", *a], check=True, capture_output=True, timeout=120)
    started = False
    try:
        as_pg(str(PG_BIN / "initdb"), "-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=md5")
        # Per-user rules first: md5 rules authenticate SCRAM secrets with SCRAM, as the server documents.
        hba = ("local all all trust\n"
               "host all u_clear 127.0.0.1/32 password\n"
               "host all all 127.0.0.1/32 md5\n")
        Path(data, "pg_hba.conf").write_text(hba)
        as_pg(str(PG_BIN / "pg_ctl"), "-D", data, "-l", os.path.join(tmp, "log"), "-w", "-o",
              f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1", "start")
        started = True
        pg = Postgres("127.0.0.1", port, tmp)
        pg.psql("SET password_encryption = 'scram-sha-256'; CREATE USER u_scram PASSWORD 'sc ram!';"
                "SET password_encryption = 'md5'; CREATE USER u_md5 PASSWORD 'em-dee-5';"
                "CREATE USER u_clear PASSWORD 'clear';")
        yield pg
    finally:
        if started:
            subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", data, "-m", "immediate",
                            "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def login(pg: Postgres, client: cs.ClientStartup) -> cs.ClientOutcome:
    with socket.create_connection((pg.host, pg.port), timeout=10) as sock:
        sock.sendall(client.start())
        reader = MessageReader()
        while True:
            data = sock.recv(65536)
            if not data:
                raise AssertionError("server closed the connection")
            reader.feed(data)
            while (msg := reader.read()) is not None:
                for out in client.feed(*msg):
                    if isinstance(out, cs.Send):
                        sock.sendall(out.data)
                    else:
                        if isinstance(out, cs.Ready):
                            sock.sendall(m.Terminate().encode())
                        return out


@pytest.mark.parametrize(("user", "password", "method"), [
    ("u_scram", "sc ram!", "scram-sha-256"),
    ("u_md5", "em-dee-5", "md5"),
    ("u_clear", "clear", "password"),
])
def test_real_postgres_login(postgres: Postgres, user: str, password: str, method: str) -> None:
    client = cs.ClientStartup(user, password, "postgres", {"application_name": "dbmesh-test"})
    out = login(postgres, client)
    assert isinstance(out, cs.Ready), out
    assert client.method == method
    assert out.tx_status == "I" and out.pid is not None and out.key is not None and len(out.key) == 4
    assert out.params["application_name"] == "dbmesh-test" and "server_version" in out.params


@pytest.mark.parametrize("user", ["u_scram", "u_md5", "u_clear", "nobody"])
def test_real_postgres_wrong_password(postgres: Postgres, user: str) -> None:
    out = login(postgres, cs.ClientStartup(user, "wrong", "postgres"))
    assert isinstance(out, cs.Failed)
    assert out.fields.sqlstate == "28P01"
    # dbmesh answers with the same wording the real server uses
    assert out.fields.message == f'password authentication failed for user "{user}"'


def test_real_postgres_negotiates_unknown_option(postgres: Postgres) -> None:
    client = cs.ClientStartup("u_scram", "sc ram!", "postgres", {"_pq_.dbmesh_test": "1"})
    out = login(postgres, client)
    assert isinstance(out, cs.Ready)
    assert client.negotiated == m.NegotiateProtocolVersion(196608, ("_pq_.dbmesh_test",))


def test_real_postgres_accepts_verifier_made_here(postgres: Postgres) -> None:
    """A SCRAM secret computed by ScramVerifier is one PostgreSQL accepts as stored, and vice versa."""
    secret = str(scram.ScramVerifier.from_password("made here", iterations=4096))
    postgres.psql(f"CREATE USER u_ours PASSWORD '{secret}'")
    out = login(postgres, cs.ClientStartup("u_ours", "made here", "postgres"))
    assert isinstance(out, cs.Ready)
