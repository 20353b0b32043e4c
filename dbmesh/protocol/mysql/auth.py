"""MySQL authentication plugin math: mysql_native_password and caching_sha2_password (fast and full paths)."""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SCRAMBLE_LENGTH = 20


def new_scramble() -> bytes:
    """20 random bytes masked to 7 bits, never NUL or '$', as MySQL generates them (the scramble is NUL-terminated)."""
    out = bytearray(os.urandom(SCRAMBLE_LENGTH))
    for i, b in enumerate(out):
        b &= 0x7F
        if b in (0, ord("$")):
            b += 1
        out[i] = b
    return bytes(out)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def native_password_response(password: str, scramble: bytes) -> bytes:
    """Client response: SHA1(pw) XOR SHA1(scramble || SHA1(SHA1(pw))); empty for an empty password."""
    if not password:
        return b""
    stage1 = hashlib.sha1(password.encode()).digest()
    stage2 = hashlib.sha1(stage1).digest()
    return _xor(stage1, hashlib.sha1(scramble[:SCRAMBLE_LENGTH] + stage2).digest())


def verify_native_password(password: str, scramble: bytes, response: bytes) -> bool:
    expected = native_password_response(password, scramble)
    return hmac.compare_digest(expected, response)


def caching_sha2_response(password: str, nonce: bytes) -> bytes:
    """Fast-path scramble: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) || nonce); empty for an empty password."""
    if not password:
        return b""
    p1 = hashlib.sha256(password.encode()).digest()
    p2 = hashlib.sha256(p1).digest()
    p3 = hashlib.sha256(p2 + nonce[:SCRAMBLE_LENGTH]).digest()
    return _xor(p1, p3)


def verify_caching_sha2(password: str, nonce: bytes, response: bytes) -> bool:
    return hmac.compare_digest(caching_sha2_response(password, nonce), response)


def verify_cleartext(password: str, response: bytes) -> bool:
    """Full authentication sends the password NUL-terminated (over TLS, or after RSA decryption)."""
    got = response[:-1] if response.endswith(b"\x00") else response
    return hmac.compare_digest(got, password.encode())


class RsaKeyPair:
    """An RSA key pair for caching_sha2_password full authentication on connections without TLS."""

    def __init__(self, key: rsa.RSAPrivateKey | None = None) -> None:
        self.private_key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def decrypt_password(self, ciphertext: bytes, nonce: bytes) -> bytes:
        """Undo RSA-OAEP(SHA-1) and the XOR with the repeated nonce; returns the password with its NUL."""
        plain = self.private_key.decrypt(
            ciphertext, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
        nonce = nonce[:SCRAMBLE_LENGTH]
        return bytes(b ^ nonce[i % len(nonce)] for i, b in enumerate(plain))


def rsa_encrypt_password(public_pem: bytes, password: str, nonce: bytes) -> bytes:
    """Client side of the RSA exchange (used when dbmesh logs in to a caching_sha2 data source without TLS)."""
    key = serialization.load_pem_public_key(public_pem)
    assert isinstance(key, rsa.RSAPublicKey)
    plain = password.encode() + b"\x00"
    nonce = nonce[:SCRAMBLE_LENGTH]
    mixed = bytes(b ^ nonce[i % len(nonce)] for i, b in enumerate(plain))
    return key.encrypt(mixed, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
