"""The lab's own certificate authority and the TLS certificate of its AWS endpoint.

S3 clients that insist on TLS (pgBackRest: an S3 repository is reached over HTTPS only) talk to the lab's moto
server through its TLS listener (dev/lab/services/aws_server.py --tls-port). Its certificate is signed by a CA this
module makes once per lab folder, so clients verify it as they would verify AWS, with the CA file given to them
(pgBackRest repo1-storage-ca-file, botocore verify=, curl --cacert) instead of turning verification off.

    <lab-dir>/tls/ca.pem          the CA certificate (public: export it as LAB_CA_FILE)
    <lab-dir>/tls/ca.key          its key (0600; only used here, to sign the server certificate)
    <lab-dir>/tls/server.pem      the AWS endpoint's certificate for 127.0.0.1 and localhost, then the CA's
    <lab-dir>/tls/server.key      its key (0600)

The server certificate names 127.0.0.1 both as an IP address (what Python's ssl and curl check for an IP) and as a
DNS name (what pgBackRest 2.45 checks: it compares the host it connects to with the DNS names only).
Made with python `cryptography` (in the lab's venv); made again when missing, unreadable or due to expire within
30 days. Nothing here is a secret outside the lab.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

CA_NAME = "agbotkit.dr lab CA"
HOSTS = ("127.0.0.1", "localhost")
RENEW_BEFORE = dt.timedelta(days=30)


def paths(lab_dir: Path) -> dict[str, Path]:
    d = Path(lab_dir) / "tls"
    return {"dir": d, "ca": d / "ca.pem", "ca_key": d / "ca.key", "cert": d / "server.pem", "key": d / "server.key"}


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _valid(cert_path: Path, ca_path: Path) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    except (OSError, ValueError):
        return False
    now = dt.datetime.now(dt.UTC)
    return cert.issuer == ca.subject and cert.not_valid_after_utc - now > RENEW_BEFORE \
        and ca.not_valid_after_utc - now > RENEW_BEFORE


def ensure(lab_dir: Path) -> tuple[dict[str, Path], bool]:
    """Make the CA and the server certificate unless valid ones are there. Returns (paths, made)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    p = paths(lab_dir)
    if all(p[k].exists() for k in ("ca", "ca_key", "cert", "key")) and _valid(p["cert"], p["ca"]):
        return p, False
    p["dir"].mkdir(parents=True, exist_ok=True)
    os.chmod(p["dir"], 0o755)  # noqa: S103  (the database's OS user, pgBackRest, reads ca.pem; the keys are 0600)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_subject).issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in HOSTS]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    plain = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8
    _write(p["ca_key"], ca_key.private_bytes(pem, pkcs8, plain), 0o600)
    _write(p["key"], key.private_bytes(pem, pkcs8, plain), 0o600)
    _write(p["ca"], ca_cert.public_bytes(pem), 0o644)
    _write(p["cert"], cert.public_bytes(pem) + ca_cert.public_bytes(pem), 0o644)
    return p, True


def make_untrusted_ca(path: Path) -> Path:
    """A CA certificate that signed nothing of the lab's: what a client holding the wrong CA file trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some other CA")])
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    _write(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return path
