"""SCRAM-SHA-256 (RFC 5802/7677) for both sides of a PostgreSQL login, SASLprep, and the md5 method."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata
from dataclasses import dataclass

MECHANISM = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations GUC since PG 16)
MAX_ITERATIONS = 10_000_000  # refuse a server-first message that would make us spin for minutes
SALT_LENGTH = 16  # PostgreSQL's SCRAM_DEFAULT_SALT_LEN
NONCE_LENGTH = 18  # PostgreSQL's SCRAM_RAW_NONCE_LEN (before base64)


class ScramError(ValueError):
    """A SCRAM message is malformed or asks for something not offered; the exchange must end."""


# -- SASLprep (RFC 4013), as PostgreSQL applies it to passwords ----------------------------------------------------


def _prohibited(c: str) -> bool:
    return (stringprep.in_table_c12(c) or stringprep.in_table_c21_c22(c) or stringprep.in_table_c3(c)
            or stringprep.in_table_c4(c) or stringprep.in_table_c5(c) or stringprep.in_table_c6(c)
            or stringprep.in_table_c7(c) or stringprep.in_table_c8(c) or stringprep.in_table_c9(c))


def saslprep(password: str) -> bytes:
    """The bytes PostgreSQL hashes for a password: SASLprep(password) as UTF-8, or the raw UTF-8 bytes when
    SASLprep rejects the string (prohibited or unassigned characters, bad bidi) - PostgreSQL falls back the same way
    (pg_saslprep failure => use the password as is), so both sides derive the same keys.
    """
    if password.isascii() and all(0x20 <= ord(c) < 0x7F for c in password):
        return password.encode()  # printable ASCII: SASLprep changes nothing
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c))
    norm = unicodedata.normalize("NFKC", mapped)
    if not norm or any(_prohibited(c) or stringprep.in_table_a1(c) for c in norm):
        return password.encode("utf-8", "surrogateescape")
    if any(stringprep.in_table_d1(c) for c in norm):
        if (any(stringprep.in_table_d2(c) for c in norm) or not stringprep.in_table_d1(norm[0])
                or not stringprep.in_table_d1(norm[-1])):
            return password.encode("utf-8", "surrogateescape")
    return norm.encode()


# -- primitives -----------------------------------------------------------------------------------------------------


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _b64(b: bytes) -> bytes:
    return base64.b64encode(b)


def _unb64(b: bytes, what: str) -> bytes:
    try:
        return base64.b64decode(b, validate=True)
    except ValueError as exc:
        raise ScramError(f"invalid base64 in {what}") from exc


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)


def _attributes(message: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """Split "a=v,b=w" into pairs; each attribute is one letter."""
    out = []
    for part in message.split(b","):
        if len(part) < 2 or part[1:2] != b"=" or not part[:1].isalpha():
            raise ScramError(f"malformed attribute {part[:20]!r} in {what}")
        out.append((part[:1], part[2:]))
    return out


def _valid_nonce(nonce: bytes) -> bool:
    # printable = %x21-2B / %x2D-7E (no comma)
    return bool(nonce) and all(0x21 <= b <= 0x7E and b != 0x2C for b in nonce)


# -- server side ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScramVerifier:
    """What a server stores: enough to check a client's proof and sign as server, not to log in anywhere."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_password(cls, password: str, salt: bytes | None = None,
                      iterations: int = DEFAULT_ITERATIONS) -> ScramVerifier:
        salt = os.urandom(SALT_LENGTH) if salt is None else salt
        sp = salted_password(password, salt, iterations)
        return cls(iterations, salt, hashlib.sha256(_hmac(sp, b"Client Key")).digest(), _hmac(sp, b"Server Key"))

    @classmethod
    def parse(cls, secret: str) -> ScramVerifier:
        """Parse PostgreSQL's stored form `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`."""
        try:
            scheme, iter_salt, keys = secret.split("$")
            iterations, salt = iter_salt.split(":")
            stored, server = keys.split(":")
            if scheme != MECHANISM or not iterations.isdigit():
                raise ValueError(secret)
            v = cls(int(iterations), base64.b64decode(salt, validate=True), base64.b64decode(stored, validate=True),
                    base64.b64decode(server, validate=True))
        except ValueError as exc:
            raise ScramError("not a SCRAM-SHA-256 secret") from exc
        if v.iterations < 1 or len(v.stored_key) != 32 or len(v.server_key) != 32:
            raise ScramError("not a SCRAM-SHA-256 secret")
        return v

    def __str__(self) -> str:
        return (f"{MECHANISM}${self.iterations}:{base64.b64encode(self.salt).decode()}"
                f"${base64.b64encode(self.stored_key).decode()}:{base64.b64encode(self.server_key).decode()}")

    def verify_password(self, password: str) -> bool:
        """Check a cleartext password against the secret (the 'password' method with a SCRAM secret stored)."""
        sp = salted_password(password, self.salt, self.iterations)
        return hmac.compare_digest(hashlib.sha256(_hmac(sp, b"Client Key")).digest(), self.stored_key)


def is_scram_secret(secret: str) -> bool:
    return secret.startswith(MECHANISM + "$")


class ServerScram:
    """The server's half: `first(client_first) -> server_first`, then `final(client_final) -> server_final`.

    `final` returns None when the proof is wrong (send the authentication failure). Malformed messages, an
    authorization identity, or channel binding ('p=', since SCRAM-SHA-256-PLUS is never offered) raise ScramError.
    A 'y' flag is accepted: the client could bind but saw no PLUS mechanism, which is true.
    """

    def __init__(self, verifier: ScramVerifier, *, nonce: bytes | None = None) -> None:
        self.verifier = verifier
        self._snonce = _b64(os.urandom(NONCE_LENGTH)) if nonce is None else nonce
        self._gs2_header = b""
        self._nonce = b""
        self._client_first_bare = b""
        self._server_first = b""
        self.done = False

    def first(self, client_first: bytes) -> bytes:
        if self._server_first:
            raise ScramError("client-first message sent twice")
        flag, sep, rest = client_first.partition(b",")
        if not sep:
            raise ScramError("malformed client-first message")
        if flag.startswith(b"p="):
            raise ScramError("channel binding was requested (p=) but SCRAM-SHA-256-PLUS is not offered")
        if flag not in (b"n", b"y"):
            raise ScramError(f"invalid channel-binding flag {flag[:20]!r}")
        authzid, sep, bare = rest.partition(b",")
        if not sep:
            raise ScramError("malformed client-first message")
        if authzid:
            raise ScramError("authorization identity (a=) is not supported")
        attrs = _attributes(bare, "client-first message")
        if attrs[0][0] == b"m":
            raise ScramError("SCRAM mandatory extensions are not supported")
        if len(attrs) < 2 or attrs[0][0] != b"n" or attrs[1][0] != b"r":
            raise ScramError("client-first message must carry n= and r=")
        cnonce = attrs[1][1]
        if not _valid_nonce(cnonce):
            raise ScramError("invalid client nonce")
        # The SCRAM user name is ignored, as PostgreSQL does: the startup packet's user is authenticated.
        self._gs2_header = flag + b"," + authzid + b","
        self._client_first_bare = bare
        self._nonce = cnonce + self._snonce
        v = self.verifier
        self._server_first = b"r=" + self._nonce + b",s=" + _b64(v.salt) + b",i=" + str(v.iterations).encode()
        return self._server_first

    def final(self, client_final: bytes) -> bytes | None:
        if not self._server_first or self.done:
            raise ScramError("client-final message out of order")
        self.done = True
        without_proof, sep, proof_attr = client_final.rpartition(b",")
        if not sep or not proof_attr.startswith(b"p="):
            raise ScramError("client-final message must end with p=")
        attrs = _attributes(without_proof, "client-final message")
        if len(attrs) < 2 or attrs[0][0] != b"c" or attrs[1][0] != b"r":
            raise ScramError("client-final message must start with c= and r=")
        if _unb64(attrs[0][1], "channel binding") != self._gs2_header:
            raise ScramError("channel binding data does not match the client-first message")
        if attrs[1][1] != self._nonce:
            raise ScramError("nonce mismatch in client-final message")
        proof = _unb64(proof_attr[2:], "proof")
        if len(proof) != 32:
            raise ScramError("malformed client proof")
        auth_message = self._client_first_bare + b"," + self._server_first + b"," + without_proof
        v = self.verifier
        client_key = _xor(proof, _hmac(v.stored_key, auth_message))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), v.stored_key):
            return None
        return b"v=" + _b64(_hmac(v.server_key, auth_message))


# -- client side ----------------------------------------------------------------------------------------------------


class ClientScram:
    """The client's half: `first()`, `final(server_first)`, then `verify(server_final)` (mutual authentication)."""

    def __init__(self, password: str, *, user: str = "", nonce: bytes | None = None) -> None:
        self.password = password
        self._cnonce = _b64(os.urandom(NONCE_LENGTH)) if nonce is None else nonce
        # PostgreSQL ignores the SCRAM user (it authenticates the startup packet's), so it is sent empty by default.
        name = user.encode().replace(b"=", b"=3D").replace(b",", b"=2C")
        self._client_first_bare = b"n=" + name + b",r=" + self._cnonce
        self._server_signature = b""
        self.verified = False

    def first(self) -> bytes:
        # gs2 header "n,,": no channel binding, no authorization identity.
        return b"n,," + self._client_first_bare

    def final(self, server_first: bytes) -> bytes:
        attrs = dict(_attributes(server_first, "server-first message"))
        if b"m" in attrs:
            raise ScramError("SCRAM mandatory extensions are not supported")
        nonce, salt_b64, iters = attrs.get(b"r"), attrs.get(b"s"), attrs.get(b"i")
        if nonce is None or salt_b64 is None or iters is None:
            raise ScramError("server-first message lacks r=, s= or i=")
        if not nonce.startswith(self._cnonce) or len(nonce) == len(self._cnonce) or not _valid_nonce(nonce):
            raise ScramError("server nonce does not extend the client nonce")
        if not (iters.isascii() and iters.isdigit()) or not 1 <= int(iters) <= MAX_ITERATIONS:
            raise ScramError(f"invalid iteration count {iters[:20]!r}")
        salt = _unb64(salt_b64, "salt")
        sp = salted_password(self.password, salt, int(iters))
        client_key = _hmac(sp, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = b"c=biws,r=" + nonce  # biws = base64("n,,")
        auth_message = self._client_first_bare + b"," + server_first + b"," + without_proof
        proof = _xor(client_key, _hmac(stored_key, auth_message))
        self._server_signature = _hmac(_hmac(sp, b"Server Key"), auth_message)
        return without_proof + b",p=" + _b64(proof)

    def verify(self, server_final: bytes) -> bool:
        """True when the server proved it knows the secret (v=), False on a wrong signature or an e= error."""
        if not self._server_signature or not server_final.startswith(b"v="):
            return False
        sig = server_final[2:].split(b",", 1)[0]
        try:
            got = base64.b64decode(sig, validate=True)
        except ValueError:
            return False
        self.verified = hmac.compare_digest(got, self._server_signature)
        return self.verified


# -- md5 ------------------------------------------------------------------------------------------------------------


def md5_stored(user: str, password: str) -> str:
    """PostgreSQL's stored md5 secret: "md5" + hex(md5(password + user))."""
    return "md5" + hashlib.md5(password.encode() + user.encode()).hexdigest()


def is_md5_secret(secret: str) -> bool:
    return len(secret) == 35 and secret.startswith("md5") and all(c in "0123456789abcdef" for c in secret[3:])


def md5_response(user: str, password: str, salt: bytes) -> bytes:
    """The client's answer: "md5" + hex(md5(hex(md5(password + user)) + salt)), from the cleartext password."""
    return md5_response_from_stored(md5_stored(user, password), salt)


def md5_response_from_stored(stored: str, salt: bytes) -> bytes:
    """The same answer from a stored "md5..." secret (how a proxy holding only the hash logs in, as PgBouncer does)."""
    return b"md5" + hashlib.md5(stored[3:].encode() + salt).hexdigest().encode()


def verify_md5(user: str, secret: str, salt: bytes, response: bytes) -> bool:
    """Check a client's md5 answer against a cleartext password, or a stored md5 secret (as PostgreSQL does)."""
    stored = secret if is_md5_secret(secret) else md5_stored(user, secret)
    return hmac.compare_digest(md5_response_from_stored(stored, salt), response)
