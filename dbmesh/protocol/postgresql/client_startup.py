"""Startup phase, client side: how dbmesh logs in to a PostgreSQL data source, as a state machine."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from dbmesh._wire.pg_framing import FramingError
from dbmesh.protocol.postgresql import scram
from dbmesh.protocol.postgresql.messages import (
    FIELD_MESSAGE,
    FIELD_SEVERITY,
    FIELD_SEVERITY_RAW,
    FIELD_SQLSTATE,
    PROTOCOL_3_0,
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    BackendKeyData,
    ErrorFields,
    NegotiateProtocolVersion,
    ParameterStatus,
    PasswordMessage,
    ReadyForQuery,
    SASLInitialResponse,
    SASLResponse,
    StartupMessage,
    decode_authentication,
)

_R, _E, _N, _S, _K, _Z, _V = (ord(c) for c in "RENSKZv")


@dataclass(frozen=True, slots=True)
class Send:
    """Send these bytes (a framed message) to the server."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    """Logged in; the connection is idle (or as `tx_status` says) and ready for queries."""

    params: dict[str, str]  # ParameterStatus values reported during startup
    pid: int | None  # BackendKeyData; None when the server sent none (some managed proxies do not)
    key: bytes | None
    tx_status: str


@dataclass(frozen=True, slots=True)
class Failed:
    """The server refused (its ErrorResponse fields), or broke the protocol (synthesized fields, SQLSTATE 08P01)."""

    fields: ErrorFields


ClientOutcome = Send | Ready | Failed


class _State(Enum):
    AWAIT_AUTH = auto()  # an authentication request (or NegotiateProtocolVersion first)
    AWAIT_SASL_CONTINUE = auto()
    AWAIT_SASL_FINAL = auto()
    AWAIT_OK = auto()  # AuthenticationOk after a verified SASLFinal, or after a password was sent
    AWAIT_READY = auto()  # ParameterStatus*, BackendKeyData, ReadyForQuery
    DONE = auto()


class ClientStartup:
    """Logs in with a user and password: send `start()`, then feed each server message (type byte, payload)."""

    def __init__(self, user: str, password: str, database: str | None = None,
                 params: dict[str, str] | None = None, *, protocol_version: int = PROTOCOL_3_0) -> None:
        self.user = user
        self.password = password
        self.database = database
        self.params = dict(params or {})
        self.protocol_version = protocol_version
        self.state = _State.AWAIT_AUTH
        self.server_params: dict[str, str] = {}
        self.pid: int | None = None
        self.key: bytes | None = None
        self.notices: list[ErrorFields] = []
        self.negotiated: NegotiateProtocolVersion | None = None
        self.method = ""  # how the server authenticated us: trust, password, md5 or scram-sha-256
        self._scram: scram.ClientScram | None = None

    def start(self) -> bytes:
        """The framed StartupMessage."""
        params = {"user": self.user}
        if self.database:
            params["database"] = self.database
        params.update(self.params)
        return StartupMessage(self.protocol_version, params).encode()

    def feed(self, type: int, payload: bytes) -> list[ClientOutcome]:
        if self.state is _State.DONE:
            return [self._fail("message after the startup phase ended")]
        try:
            return self._feed(type, payload)
        except (FramingError, scram.ScramError) as exc:
            return [self._fail(f"malformed startup message: {exc}")]

    def _feed(self, type: int, payload: bytes) -> list[ClientOutcome]:
        if type == _E:
            self.state = _State.DONE
            return [Failed(ErrorFields.decode(payload))]
        if type == _N:
            self.notices.append(ErrorFields.decode(payload))
            return []
        st = self.state
        if type == _V and st is _State.AWAIT_AUTH and self.negotiated is None:
            npv = NegotiateProtocolVersion.decode(payload)
            if npv.newest_version >> 16 != 3 or npv.newest_version > self.protocol_version:
                return [self._fail(f"server negotiated unsupported protocol version {npv.newest_version:#x}")]
            self.negotiated = npv
            self.protocol_version = npv.newest_version
            return []
        if type == _R and st in (_State.AWAIT_AUTH, _State.AWAIT_SASL_CONTINUE, _State.AWAIT_SASL_FINAL,
                                 _State.AWAIT_OK):
            return self._on_auth(payload)
        if st is _State.AWAIT_READY:
            if type == _S:
                ps = ParameterStatus.decode(payload)
                self.server_params[ps.name] = ps.value
                return []
            if type == _K:
                kd = BackendKeyData.decode(payload)
                self.pid, self.key = kd.pid, kd.key
                return []
            if type == _Z:
                rfq = ReadyForQuery.decode(payload)
                self.state = _State.DONE
                return [Ready(dict(self.server_params), self.pid, self.key, rfq.status)]
        return [self._fail(f"unexpected message type {type} during startup")]

    def _on_auth(self, payload: bytes) -> list[ClientOutcome]:
        msg = decode_authentication(payload)
        st = self.state
        if isinstance(msg, AuthenticationOk):
            if st in (_State.AWAIT_SASL_CONTINUE, _State.AWAIT_SASL_FINAL):
                # Mutual authentication: a server that skips SASLFinal never proved it knows the secret.
                return [self._fail("server sent AuthenticationOk before completing SCRAM authentication")]
            if st is _State.AWAIT_AUTH:
                self.method = "trust"
            self.state = _State.AWAIT_READY
            return []
        if st is _State.AWAIT_AUTH:
            if isinstance(msg, AuthenticationCleartextPassword):
                self.method = "password"
                self.state = _State.AWAIT_OK
                return [Send(PasswordMessage(self.password.encode("utf-8", "surrogateescape")).encode())]
            if isinstance(msg, AuthenticationMD5Password):
                self.method = "md5"
                self.state = _State.AWAIT_OK
                return [Send(PasswordMessage(scram.md5_response(self.user, self.password, msg.salt)).encode())]
            if isinstance(msg, AuthenticationSASL):
                if scram.MECHANISM not in msg.mechanisms:
                    return [self._fail(f"server offers no supported SASL mechanism: {', '.join(msg.mechanisms)}")]
                self.method = "scram-sha-256"
                self._scram = scram.ClientScram(self.password)
                self.state = _State.AWAIT_SASL_CONTINUE
                return [Send(SASLInitialResponse(scram.MECHANISM, self._scram.first()).encode())]
            return [self._fail(f"server asked for an unsupported authentication method ({_auth_code(payload)})")]
        if st is _State.AWAIT_SASL_CONTINUE and isinstance(msg, AuthenticationSASLContinue):
            assert self._scram is not None
            self.state = _State.AWAIT_SASL_FINAL
            return [Send(SASLResponse(self._scram.final(msg.data)).encode())]
        if st is _State.AWAIT_SASL_FINAL and isinstance(msg, AuthenticationSASLFinal):
            assert self._scram is not None
            if not self._scram.verify(msg.data):
                return [self._fail("invalid SCRAM server signature: the server does not know the password")]
            self.state = _State.AWAIT_OK
            return []
        return [self._fail(f"unexpected authentication message ({_auth_code(payload)})")]

    def _fail(self, message: str) -> Failed:
        self.state = _State.DONE
        return Failed(ErrorFields(((FIELD_SEVERITY, "FATAL"), (FIELD_SEVERITY_RAW, "FATAL"),
                                   (FIELD_SQLSTATE, "08P01"), (FIELD_MESSAGE, message))))


def _auth_code(payload: bytes) -> int:
    return int.from_bytes(payload[:4], "big", signed=True)
