"""TLS for client connections: the configured certificate, or a self-signed one generated at start."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dbmesh.config import TlsSettings


def self_signed_pem(common_name: str = "dbmesh") -> tuple[bytes, bytes]:
    """A fresh self-signed certificate and key (PEM) for localhost, valid for one year."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def server_context(settings: TlsSettings) -> ssl.SSLContext | None:
    """The server-side SSLContext, or None when TLS is off."""
    if not settings.enabled:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.certificate_file and settings.key_file:
        ctx.load_cert_chain(settings.certificate_file, settings.key_file)
        return ctx
    cert, key = self_signed_pem()
    # load_cert_chain reads files only: write them to a private temporary directory and remove them at once.
    with tempfile.TemporaryDirectory(prefix="dbmesh-tls-") as tmp:
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        with open(cert_path, "wb") as f:
            f.write(cert)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


class TlsStream:
    """Server-side TLS over memory BIOs, so bytes that arrived together with the SSLRequest are not lost.

    asyncio's start_tls cannot take bytes the protocol already read; MySQL clients send their ClientHello right
    behind the SSLRequest, often in the same TCP segment.
    """

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(self._in, self._out, server_side=True)
        self.handshake_done = False
        self.closed = False

    def receive(self, data: bytes) -> bytes:
        """Feed ciphertext; returns the plaintext it completes. Raises ssl.SSLError on a broken peer."""
        if data:
            self._in.write(data)
        if not self.handshake_done:
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.handshake_done = True
        chunks = []
        while True:
            try:
                chunk = self._obj.read(262144)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.closed = True
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def encrypt(self, data: bytes) -> bytes:
        self._obj.write(data)
        return self._out.read()

    def pending(self) -> bytes:
        """Ciphertext to send now (handshake records, alerts)."""
        return self._out.read()
