"""TLS plumbing: a throw-away PKI for the Graph emulator, and client trust that ignores the environment.

Two things drive this module:

* MSAL refuses any authority that is not https, so the emulator must serve real TLS with a
  certificate a client can verify (a CA made with ``cryptography``, SANs for localhost,
  127.0.0.1 and ::1).
* On these machines ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE`` point at the system bundle, and
  both requests and OpenSSL let them override what the code asked for. SPEC §5 says a tenant's
  ``ca_bundle`` is trusted *in addition to* the system store and wins over the environment, so
  the contexts built here load the compiled-in system store plus the bundle, never the env vars.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from requests.adapters import HTTPAdapter


@dataclass(frozen=True, slots=True)
class TestPKI:
    """Paths of a generated CA and the server certificate it signed."""

    __test__ = False  # not a pytest test class, whatever its name says

    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A self-signed certificate for the certificate credential of an app registration."""

    pem_path: Path  # private key + certificate, what ``TenantConfig.certificate`` points at
    certificate_pem: str  # public part only, what an app registration holds
    thumbprint_sha1: str  # hex, upper case: what the Entra portal shows
    thumbprint_sha256: str


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_private(path: Path, data: bytes) -> None:
    """Write key material readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def make_test_pki(directory: Path) -> TestPKI:
    """Create (or reuse) ``ca.pem``, ``server.pem`` and ``server.key`` in ``directory``.

    EC P-256 keys keep generation in the low milliseconds, so a test session can afford a
    fresh PKI; existing files are reused so parallel fixtures agree on one CA.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pki = TestPKI(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if pki.ca_cert.is_file() and pki.server_cert.is_file() and pki.server_key.is_file():
        return pki

    now = _utcnow()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("licsync test CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    sans = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    _write_private(
        pki.server_key,
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    pki.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))  # last: marks completion
    return pki


def make_client_certificate(
    directory: Path, name: str = "licsync-app", *, password: str | None = None
) -> ClientCertificate:
    """Write ``{name}.pem`` (RSA private key + self-signed certificate) for certificate auth.

    RSA because Entra ID signs client assertions with RS256/PS256 only.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = _utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    path = directory / f"{name}.pem"
    _write_private(path, key_pem + cert_pem)
    return ClientCertificate(
        pem_path=path,
        certificate_pem=cert_pem.decode("ascii"),
        thumbprint_sha1=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - an identifier, not security
        thumbprint_sha256=cert.fingerprint(hashes.SHA256()).hex().upper(),
    )


def _load_system_store(ctx: ssl.SSLContext) -> None:
    """Load OpenSSL's compiled-in trust store, deliberately not the ``SSL_CERT_*`` overrides."""
    paths = ssl.get_default_verify_paths()
    cafile = paths.openssl_cafile if paths.openssl_cafile and os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if paths.openssl_capath and os.path.isdir(paths.openssl_capath) else None
    if cafile or capath:
        ctx.load_verify_locations(cafile=cafile, capath=capath)
        return
    try:  # Python builds without a system store (python.org macOS): fall back to certifi
        import certifi  # noqa: PLC0415 - only where Python has no system store
    except ImportError:  # pragma: no cover - certifi ships with requests
        return
    ctx.load_verify_locations(cafile=certifi.where())


def client_ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """System trust store plus ``ca_bundle``; environment variables never decide."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and host names
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_system_store(ctx)
    if ca_bundle is not None:
        ctx.load_verify_locations(cafile=str(ca_bundle))
    return ctx


class _ContextAdapter(HTTPAdapter):
    """A requests adapter that verifies with our SSLContext and applies a default timeout.

    requests would otherwise load certifi (``verify=True``) or only the named bundle
    (``verify=path``) into every connection, which is neither "system store plus bundle".
    """

    def __init__(self, ssl_context: ssl.SSLContext, timeout: float) -> None:
        self._ssl_context = ssl_context
        self._timeout = timeout
        super().__init__(max_retries=0)  # licsync owns retries; MSAL adds its own throttling cache

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(*args, **kwargs)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        pool_kwargs.pop("ca_certs", None)
        pool_kwargs.pop("ca_cert_dir", None)
        pool_kwargs["ssl_context"] = self._ssl_context
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        conn.ca_certs = None  # the context already holds the trust store
        conn.ca_cert_dir = None

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, *args, **kwargs)


def requests_session(ca_bundle: Path | None, *, timeout: float = 30.0) -> requests.Session:
    """A ``requests.Session`` for MSAL: environment ignored, system store plus ``ca_bundle``."""
    session = requests.Session()
    session.trust_env = False  # no REQUESTS_CA_BUNDLE, no proxies or .netrc from the environment
    session.verify = True
    adapter = _ContextAdapter(client_ssl_context(ca_bundle), timeout)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
