"""Startup phase, server side: TLS/GSS negotiation, cancel requests, protocol negotiation and password checks."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto

from dbmesh import errors
from dbmesh._wire.pg_framing import FramingError, build_message
from dbmesh.protocol.postgresql import scram
from dbmesh.protocol.postgresql.messages import (
    PROTOCOL_3_0,
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    CancelRequest,
    GSSENCRequest,
    NegotiateProtocolVersion,
    PasswordMessage,
    SASLInitialResponse,
    SASLResponse,
    SSLRequest,
    StartupMessage,
    decode_startup,
    render_error,
)

METHOD_SCRAM = "scram-sha-256"
METHOD_MD5 = "md5"
METHOD_PASSWORD = "password"

NEWEST_PROTOCOL = PROTOCOL_3_0  # 3.2 only lengthens cancel keys; dbmesh issues 4-byte keys
MAX_AUTH_MESSAGE = 65535  # PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH
_TYPE_PASSWORD = 0x70  # 'p'

# Mock SCRAM salts for unknown users derive from this per-process secret, so repeated attempts for one name see
# the same salt and an unknown user cannot be told from a wrong password (PostgreSQL's scram_mock_salt).
_MOCK_SECRET = os.urandom(32)


@dataclass(frozen=True, slots=True)
class Credential:
    """A configured user. `password` is cleartext, or a stored "md5..." or "SCRAM-SHA-256$..." secret."""

    name: str
    password: str


UserLookup = Callable[[str, str], Credential | None]  # (user, database) -> credential
MethodFor = Callable[[str], str]  # user -> "scram-sha-256" | "md5" | "password"


@dataclass(frozen=True, slots=True)
class Reply:
    """Send these bytes (one or more framed messages; for SSLRequest/GSSENCRequest the single answer byte)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StartTls:
    """Upgrade the socket to TLS now (after sending the 'S' before it). Bytes already buffered must be refused."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """A CancelRequest: cancel what the session with this (pid, key) runs, then close this socket without reply."""

    pid: int
    key: bytes


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The client is in. Send `ok` (AuthenticationOk, after SASLFinal for SCRAM), then ParameterStatus messages,
    BackendKeyData and ReadyForQuery."""

    user: str
    database: str
    params: dict[str, str]  # startup parameters other than user, database and `_pq_.` options
    protocol_version: int  # as negotiated
    ok: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """Send `message` (a framed FATAL ErrorResponse), then close."""

    error: errors.DbMeshError
    message: bytes


Outcome = Reply | StartTls | Cancel | Authenticated | Rejected


class _State(Enum):
    AWAIT_STARTUP = auto()  # StartupMessage, SSLRequest, GSSENCRequest or CancelRequest (untyped packets)
    AWAIT_PASSWORD = auto()  # PasswordMessage after AuthenticationCleartextPassword
    AWAIT_MD5 = auto()  # PasswordMessage after AuthenticationMD5Password
    AWAIT_SASL_INITIAL = auto()  # SASLInitialResponse after AuthenticationSASL
    AWAIT_SASL_RESPONSE = auto()  # SASLResponse after AuthenticationSASLContinue
    DONE = auto()


class ServerStartup:
    """Runs one startup phase. Feed untyped packets while `expects_startup_packet`, typed messages after.

    Never raises on client input: anything malformed becomes Rejected with SQLSTATE 08P01.
    """

    def __init__(self, *, users: UserLookup, tls_available: bool, method_for: MethodFor, client_host: str = "",
                 scram_iterations: int = scram.DEFAULT_ITERATIONS) -> None:
        self.users = users
        self.tls_available = tls_available
        self.method_for = method_for
        self.client_host = client_host
        self.scram_iterations = scram_iterations
        self.state = _State.AWAIT_STARTUP
        self.tls_active = False
        self._ssl_answered = False  # the server answers SSLRequest and GSSENCRequest at most once each
        self._gss_answered = False
        self.user = ""
        self.database = ""
        self.params: dict[str, str] = {}
        self.protocol_version = NEWEST_PROTOCOL
        self._credential: Credential | None = None
        self._salt = b""
        self._scram: scram.ServerScram | None = None

    @property
    def expects_startup_packet(self) -> bool:
        """True while the next client bytes are an untyped packet (read with MessageReader.read_startup)."""
        return self.state is _State.AWAIT_STARTUP

    def on_tls_established(self) -> None:
        self.tls_active = True

    def feed_startup(self, body: bytes) -> list[Outcome]:
        """A startup-phase packet body (after its length)."""
        if self.state is not _State.AWAIT_STARTUP:
            return [self.malformed("startup packet after the startup phase began")]
        try:
            packet = decode_startup(body)
        except FramingError as exc:
            return [self.malformed(f"invalid startup packet: {exc}")]
        if isinstance(packet, SSLRequest):
            if self._ssl_answered:
                return [self.malformed("SSLRequest sent twice")]
            self._ssl_answered = True
            if not self.tls_available:
                return [Reply(b"N")]
            return [Reply(b"S"), StartTls()]
        if isinstance(packet, GSSENCRequest):
            if self._gss_answered:
                return [self.malformed("GSSENCRequest sent twice")]
            self._gss_answered = True
            return [Reply(b"N")]
        if isinstance(packet, CancelRequest):
            self.state = _State.DONE
            return [Cancel(packet.pid, packet.key)]
        return self._on_startup(packet)

    def feed(self, type: int, payload: bytes) -> list[Outcome]:
        """A typed message (type byte, payload) during authentication."""
        if self.state in (_State.AWAIT_STARTUP, _State.DONE):
            return [self.malformed("unexpected message during the startup phase")]
        if type != _TYPE_PASSWORD:
            return [self.malformed(f"expected password response, got message type {type}")]
        if len(payload) > MAX_AUTH_MESSAGE:
            return [self.malformed(f"authentication message of {len(payload)} bytes")]
        try:
            if self.state is _State.AWAIT_PASSWORD:
                return self._check_cleartext(PasswordMessage.decode(payload).password)
            if self.state is _State.AWAIT_MD5:
                return self._check_md5(PasswordMessage.decode(payload).password)
            if self.state is _State.AWAIT_SASL_INITIAL:
                return self._on_sasl_initial(SASLInitialResponse.decode(payload))
            return self._on_sasl_response(SASLResponse.decode(payload))
        except (FramingError, scram.ScramError) as exc:
            return [self.malformed(str(exc))]

    def malformed(self, detail: str) -> Rejected:
        """The rejection for a protocol violation (also for the caller's own framing errors)."""
        return self._reject(errors.ProtocolError(errors.PROTOCOL_MALFORMED, detail=detail))

    # -- steps ---------------------------------------------------------------------------------------------

    def _on_startup(self, msg: StartupMessage) -> list[Outcome]:
        if msg.major != 3:
            return [self._reject(errors.ProtocolError(
                errors.PROTOCOL_UNSUPPORTED_COMMAND,
                command=f"frontend protocol {msg.major}.{msg.minor}: server supports 3.0 to 3.0"))]
        user = msg.params.get("user", "")
        if not user:
            return [self.malformed("no PostgreSQL user name specified in startup packet")]
        self.user = user
        self.database = msg.params.get("database") or user
        self.params = {k: v for k, v in msg.params.items()
                       if k not in ("user", "database") and not k.startswith("_pq_.")}
        out: list[Outcome] = []
        unrecognized = tuple(k for k in msg.params if k.startswith("_pq_."))
        if msg.minor > 0 or unrecognized:
            # Exactly one NegotiateProtocolVersion, before the authentication request (PgBouncer #1459 sent two).
            out.append(Reply(NegotiateProtocolVersion(NEWEST_PROTOCOL, unrecognized).encode()))
        self.protocol_version = NEWEST_PROTOCOL
        request = self._begin_auth()
        if isinstance(request, Rejected):
            return [request]
        out.append(request)
        return out

    def _begin_auth(self) -> Reply | Rejected:
        cred = self.users(self.user, self.database)
        self._credential = cred
        method = self.method_for(self.user)
        secret = cred.password if cred is not None else ""
        if method == METHOD_MD5 and scram.is_scram_secret(secret):
            method = METHOD_SCRAM  # PostgreSQL: an md5 rule with a SCRAM secret authenticates with SCRAM
        if method == METHOD_SCRAM:
            self.state = _State.AWAIT_SASL_INITIAL
            return Reply(AuthenticationSASL((scram.MECHANISM,)).encode())
        if method == METHOD_MD5:
            self._salt = os.urandom(4)
            self.state = _State.AWAIT_MD5
            return Reply(AuthenticationMD5Password(self._salt).encode())
        if method == METHOD_PASSWORD:
            self.state = _State.AWAIT_PASSWORD
            return Reply(AuthenticationCleartextPassword().encode())
        return self._reject(errors.AuthError(errors.AUTH_PLUGIN_UNSUPPORTED, plugin=method))

    def _verifier(self) -> scram.ScramVerifier:
        """The user's SCRAM verifier, or a mock one that no proof matches (unknown user, md5 or empty secret)."""
        cred = self._credential
        if cred is not None and cred.password:
            if scram.is_scram_secret(cred.password):
                try:
                    return scram.ScramVerifier.parse(cred.password)
                except scram.ScramError:
                    pass
            elif not scram.is_md5_secret(cred.password):
                # FIXME: derived per login (PBKDF2, 4096 rounds); cache verifiers per credential in the session layer.
                return scram.ScramVerifier.from_password(cred.password, iterations=self.scram_iterations)
        salt = hashlib.sha256(_MOCK_SECRET + self.user.encode()).digest()[:scram.SALT_LENGTH]
        return scram.ScramVerifier(self.scram_iterations, salt, os.urandom(32), os.urandom(32))

    def _on_sasl_initial(self, msg: SASLInitialResponse) -> list[Outcome]:
        if msg.mechanism != scram.MECHANISM:
            return [self.malformed("client selected an invalid SASL authentication mechanism")]
        if msg.data is None:
            return [self.malformed("SASLInitialResponse without a client-first message")]
        self._scram = scram.ServerScram(self._verifier())
        server_first = self._scram.first(msg.data)
        self.state = _State.AWAIT_SASL_RESPONSE
        return [Reply(AuthenticationSASLContinue(server_first).encode())]

    def _on_sasl_response(self, msg: SASLResponse) -> list[Outcome]:
        assert self._scram is not None
        server_final = self._scram.final(msg.data)
        if server_final is None or self._credential is None:
            return [self._deny()]
        return [self._accept(AuthenticationSASLFinal(server_final).encode())]

    def _check_md5(self, response: bytes) -> list[Outcome]:
        cred = self._credential
        if (cred is None or not cred.password or scram.is_scram_secret(cred.password)
                or not scram.verify_md5(self.user, cred.password, self._salt, response)):
            return [self._deny()]
        return [self._accept()]

    def _check_cleartext(self, password: bytes) -> list[Outcome]:
        cred = self._credential
        if cred is None or not cred.password or not password:
            return [self._deny()]
        given = password.decode("utf-8", "surrogateescape")
        if scram.is_scram_secret(cred.password):
            try:
                ok = scram.ScramVerifier.parse(cred.password).verify_password(given)
            except scram.ScramError:
                ok = False
        elif scram.is_md5_secret(cred.password):
            ok = scram.md5_stored(self.user, given) == cred.password
        else:
            ok = _equal(given, cred.password)
        return [self._accept()] if ok else [self._deny()]

    def _accept(self, before_ok: bytes = b"") -> Authenticated:
        self.state = _State.DONE
        return Authenticated(self.user, self.database, dict(self.params), self.protocol_version,
                             before_ok + AuthenticationOk().encode())

    def _deny(self) -> Rejected:
        # The same answer for an unknown user and a wrong password: the client learns nothing about which it was.
        error = errors.AuthError(errors.AUTH_ACCESS_DENIED, user=self.user, host=self.client_host,
                                 using_password="YES")
        return self._reject(error, message=f'password authentication failed for user "{self.user}"')

    def _reject(self, error: errors.DbMeshError, message: str | None = None) -> Rejected:
        self.state = _State.DONE
        return Rejected(error, build_message(ord("E"), render_error(error, "FATAL", message=message)))


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))
