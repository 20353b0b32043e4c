"""Self-signed certificates for TLS tests (clients that verify, or a backend that speaks TLS).

dbmesh generates its own self-signed certificate when ``tls.enabled`` is true and no files are
configured; tests that want to pin or verify a certificate write one here and point the config at it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CertPair:
    cert_path: Path
    key_path: Path


def make_self_signed(
    directory: str | os.PathLike[str], common_name: str = "dbmesh-test", days: int = 7
) -> CertPair:
    """Write ``cert.pem``/``key.pem`` (EC P-256) valid for localhost and 127.0.0.1 into ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pair = CertPair(out / "cert.pem", out / "key.pem")
    pair.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.chmod(pair.key_path, 0o600)
    return pair
