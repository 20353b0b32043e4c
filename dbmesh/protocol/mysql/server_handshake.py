"""Connection phase, server side: greeting, TLS upgrade, and password checks, as a state machine fed payloads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto

from dbmesh import errors
from dbmesh._wire.mysql_framing import FramingError
from dbmesh.protocol.mysql import auth
from dbmesh.protocol.mysql.constants import (
    CACHING_SHA2_PASSWORD,
    NATIVE_PASSWORD,
    SERVER_CAPABILITIES,
    Capability,
    Status,
)
from dbmesh.protocol.mysql.packets import (
    AuthSwitchRequest,
    HandshakeResponse41,
    HandshakeV10,
    OkPacket,
    PayloadReader,
    auth_more_data,
    is_ssl_request,
)

FAST_AUTH_SUCCESS = b"\x03"
PERFORM_FULL_AUTHENTICATION = b"\x04"
REQUEST_PUBLIC_KEY = b"\x02"


@dataclass(frozen=True, slots=True)
class Credential:
    """What the handshake needs to know about a configured user."""

    name: str
    password: str
    plugin: str


UserLookup = Callable[[str, str], Credential | None]


@dataclass(frozen=True, slots=True)
class Reply:
    """Send this payload with this sequence id."""

    payload: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class StartTls:
    """Upgrade the socket to TLS now; the next packet arrives encrypted."""


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The client is in: the session may start. `ok` must be sent first."""

    user: str
    database: str | None
    capabilities: int
    collation: int
    max_packet: int
    attributes: dict[str, str]
    ok: Reply
    plugin: str
    ext_capabilities: int = 0  # MariaDB capabilities both sides agreed on (bits 32-63, shifted down)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Send the error with this sequence id, then close."""

    error: errors.DbMeshError
    seq: int


Outcome = Reply | StartTls | Authenticated | Rejected


class _State(Enum):
    AWAIT_RESPONSE = auto()  # HandshakeResponse41 or SSLRequest
    AWAIT_SWITCH_RESPONSE = auto()  # the client's answer to AuthSwitchRequest
    AWAIT_FULL_AUTH = auto()  # caching_sha2: password over TLS, or a public-key request
    AWAIT_RSA_PASSWORD = auto()  # caching_sha2: the RSA-encrypted password
    DONE = auto()


@dataclass
class _Pending:
    user: str = ""
    database: str | None = None
    capabilities: int = 0
    collation: int = 0
    max_packet: int = 0
    attributes: dict[str, str] = field(default_factory=dict)
    credential: Credential | None = None
    plugin: str = NATIVE_PASSWORD
    ext_capabilities: int = 0


class ServerHandshake:
    """Runs one connection phase. Feed each client payload with its sequence id; act on the returned outcomes.

    Sequence ids are checked: the client must answer with the id after ours, as the protocol requires.
    """

    def __init__(self, *, connection_id: int, server_version: bytes, collation: int, tls_available: bool,
                 users: UserLookup, client_host: str, rsa_keys: auth.RsaKeyPair | None,
                 default_plugin: str = NATIVE_PASSWORD, ext_capabilities: int = 0) -> None:
        self.connection_id = connection_id
        self.server_version = server_version
        self.collation = collation
        self.tls_available = tls_available
        self.users = users
        self.client_host = client_host
        self.rsa_keys = rsa_keys
        self.default_plugin = default_plugin
        # MariaDB extended capabilities to offer; offering any means greeting as MariaDB does (CLIENT_MYSQL clear).
        self.ext_offered = ext_capabilities
        self.scramble = auth.new_scramble()
        self.tls_active = False
        self.state = _State.AWAIT_RESPONSE
        self.expected_seq = 1
        self._p = _Pending()

    @property
    def capabilities(self) -> int:
        caps = int(SERVER_CAPABILITIES)
        if self.tls_available:
            caps |= Capability.SSL
        if self.ext_offered:
            caps &= ~Capability.LONG_PASSWORD
        return caps

    def greeting(self) -> bytes:
        return HandshakeV10(self.server_version, self.connection_id, self.scramble, self.capabilities,
                            self.collation, Status.AUTOCOMMIT, self.default_plugin, self.ext_offered).encode()

    def feed(self, payload: bytes, seq: int) -> list[Outcome]:
        if seq != self.expected_seq:
            return [self._reject(errors.ProtocolError(errors.PROTOCOL_BAD_SEQUENCE, expected=self.expected_seq,
                                                      got=seq), seq)]
        try:
            if self.state is _State.AWAIT_RESPONSE:
                return self._on_response(payload, seq)
            if self.state is _State.AWAIT_SWITCH_RESPONSE:
                return self._check(payload, seq, self._p.plugin)
            if self.state is _State.AWAIT_FULL_AUTH:
                return self._on_full_auth(payload, seq)
            if self.state is _State.AWAIT_RSA_PASSWORD:
                assert self.rsa_keys is not None
                try:
                    password = self.rsa_keys.decrypt_password(payload, self.scramble)
                except ValueError:
                    return [self._deny(seq + 1)]
                return self._finish_cleartext(password, seq)
        except FramingError as exc:
            return [self._reject(errors.ProtocolError(errors.PROTOCOL_MALFORMED, detail=str(exc)), seq + 1)]
        return [self._reject(errors.ProtocolError(errors.PROTOCOL_MALFORMED, detail="data after authentication"),
                             seq + 1)]

    def begin_change_user(self, payload: bytes) -> list[Outcome]:
        """COM_CHANGE_USER (sequence id 0): re-authenticate. Always switches plugin with a fresh scramble."""
        r = PayloadReader(payload, 1)
        try:
            user = r.nul_bytes().decode("utf-8", "replace")
            caps = self._p.capabilities
            r.take(r.uint(1)) if caps & Capability.SECURE_CONNECTION else r.nul_bytes()
            database = r.nul_bytes_or_rest().decode("utf-8", "replace") or None
            collation = r.uint(2) & 0xFF if r.remaining() >= 2 else self._p.collation
        except FramingError as exc:
            return [self._reject(errors.ProtocolError(errors.PROTOCOL_MALFORMED, detail=str(exc)), 1)]
        self._p.user, self._p.database, self._p.collation = user, database, collation
        cred = self.users(user, self.client_host)
        if cred is None:
            return [self._deny(1, using_password=True)]
        self._p.credential = cred
        self._p.plugin = cred.plugin
        self.scramble = auth.new_scramble()
        self.state = _State.AWAIT_SWITCH_RESPONSE
        self.expected_seq = 2
        return [Reply(AuthSwitchRequest(cred.plugin, self.scramble + b"\x00").encode(), 1)]

    # -- steps ---------------------------------------------------------------------------------------------

    def _on_response(self, payload: bytes, seq: int) -> list[Outcome]:
        if is_ssl_request(payload):
            if not self.tls_available or self.tls_active:
                return [self._reject(errors.ProtocolError(errors.PROTOCOL_MALFORMED,
                                                          detail="TLS requested but not offered"), seq + 1)]
            self.tls_active = True
            self.expected_seq = seq + 1
            return [StartTls()]
        resp = HandshakeResponse41.decode(payload)
        p = self._p
        p.user, p.database, p.max_packet = resp.user, resp.database, resp.max_packet
        p.capabilities = resp.capabilities & self.capabilities
        p.ext_capabilities = resp.ext_capabilities & self.ext_offered
        p.collation, p.attributes = resp.collation, resp.attributes
        cred = self.users(resp.user, self.client_host)
        if cred is None:
            return [self._deny(seq + 1, using_password=bool(resp.auth_response))]
        p.credential = cred
        client_plugin = resp.auth_plugin or NATIVE_PASSWORD
        if client_plugin != cred.plugin:
            # Greet-with-default, then switch to the user's own plugin, as MySQL does; same scramble.
            p.plugin = cred.plugin
            self.state = _State.AWAIT_SWITCH_RESPONSE
            self.expected_seq = seq + 2
            return [Reply(AuthSwitchRequest(cred.plugin, self.scramble + b"\x00").encode(), seq + 1)]
        p.plugin = client_plugin
        return self._check(resp.auth_response, seq, client_plugin)

    def _check(self, response: bytes, seq: int, plugin: str) -> list[Outcome]:
        cred = self._p.credential
        assert cred is not None
        if plugin == NATIVE_PASSWORD:
            if auth.verify_native_password(cred.password, self.scramble, response):
                return [self._accept(seq + 1)]
            return [self._deny(seq + 1, using_password=bool(response))]
        if plugin == CACHING_SHA2_PASSWORD:
            if not cred.password and not response:
                return [self._accept(seq + 1)]
            if response and auth.verify_caching_sha2(cred.password, self.scramble, response):
                ok = self._accept(seq + 2)
                return [Reply(auth_more_data(FAST_AUTH_SUCCESS), seq + 1), ok]
            # A failed fast check moves to full authentication, as the server does (the proof is re-sent).
            self.state = _State.AWAIT_FULL_AUTH
            self.expected_seq = seq + 2
            return [Reply(auth_more_data(PERFORM_FULL_AUTHENTICATION), seq + 1)]
        return [self._reject(errors.AuthError(errors.AUTH_PLUGIN_UNSUPPORTED, plugin=plugin), seq + 1)]

    def _on_full_auth(self, payload: bytes, seq: int) -> list[Outcome]:
        if self.tls_active:
            return self._finish_cleartext(payload, seq)
        if payload == REQUEST_PUBLIC_KEY and self.rsa_keys is not None:
            self.state = _State.AWAIT_RSA_PASSWORD
            self.expected_seq = seq + 2
            return [Reply(auth_more_data(self.rsa_keys.public_pem), seq + 1)]
        return [self._reject(errors.AuthError(
            errors.AUTH_TLS_REQUIRED,
            detail="caching_sha2_password full authentication needs TLS or an RSA public key request"), seq + 1)]

    def _finish_cleartext(self, password: bytes, seq: int) -> list[Outcome]:
        cred = self._p.credential
        assert cred is not None
        if auth.verify_cleartext(cred.password, password):
            return [self._accept(seq + 1)]
        return [self._deny(seq + 1)]

    def _accept(self, seq: int) -> Authenticated:
        self.state = _State.DONE
        p = self._p
        ok = Reply(OkPacket(0, 0, Status.AUTOCOMMIT, 0).encode(), seq)
        return Authenticated(p.user, p.database, p.capabilities, p.collation, p.max_packet, p.attributes, ok,
                             p.plugin, p.ext_capabilities)

    def _deny(self, seq: int, using_password: bool = True) -> Rejected:
        return self._reject(errors.AuthError(errors.AUTH_ACCESS_DENIED, user=self._p.user, host=self.client_host,
                                             using_password="YES" if using_password else "NO"), seq)

    def _reject(self, error: errors.DbMeshError, seq: int) -> Rejected:
        self.state = _State.DONE
        return Rejected(error, seq)

