"""Self-signed TLS material for serving the emulator (or any test server) over HTTPS on 127.0.0.1.

PostHog is HTTPS, and a TLS handshake is a real cost of a client, so tests and benchmarks can serve the
emulator with ``PostHogEmulator(..., ssl_certfile=files.certfile, ssl_keyfile=files.keyfile)``. Clients trust
it through ``ca_bundle``: set ``SSL_CERT_FILE`` (honoured by httpx and aiohttp) or the connection extra
``verify``. The bundle is certifi's bundle *plus* the certificate, so building an SSL context costs what it
costs in production (loading ~150 roots). ``cryptography`` and ``certifi`` come with Airflow; imported here
only, so ``import airflow_provider_posthog.emulator`` stays cheap.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TLSFiles:
    """Paths of one run's certificate, key and client CA bundle."""

    certfile: Path
    keyfile: Path
    ca_bundle: Path


def make_tls_files(directory: Path) -> TLSFiles:
    """Write a fresh ECDSA P-256 self-signed certificate for 127.0.0.1 and a CA bundle that trusts it."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    files = TLSFiles(
        certfile=directory / "cert.pem",
        keyfile=directory / "key.pem",
        ca_bundle=directory / "ca-bundle.pem",
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    files.certfile.write_bytes(cert_pem)
    files.keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.keyfile.chmod(0o600)
    files.ca_bundle.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + cert_pem)
    return files
