"""An SNS signer of our own: an RSA key and a self-signed certificate written into a certificate directory.

For the cases the real signed fixtures in ../shared cannot express (a wrong CN, new payloads inside signed
envelopes). Signs with the bridge's own `string_to_sign` and loads with its own certificate loader, unlike
`cost_signing.SnsSigner`, which is written from the AWS documentation for end-to-end tests.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from bridge.receivers.sns_verify import CertificateCache, make_cert_loader, string_to_sign


class TestSigner:
    """An RSA key and a self-signed certificate, written into a certificate directory like SNS's."""

    __test__ = False

    def __init__(self, directory: Path, *, cn: str = "sns.amazonaws.com",
                 name: str = "SimpleNotificationService-00000000000000000000000000007e57.pem",
                 not_before: datetime | None = None, not_after: datetime | None = None) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        nb = not_before or datetime(2020, 1, 1, tzinfo=UTC)
        na = not_after or datetime(2040, 1, 1, tzinfo=UTC)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(nb).not_valid_after(na).sign(self.key, hashes.SHA256()))
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.directory = directory
        self.url = f"https://sns.us-east-1.amazonaws.com/{name}"

    def sign(self, message: dict[str, Any], version: str = "2") -> dict[str, Any]:
        signed = dict(message, SignatureVersion=version, SigningCertURL=self.url)
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signature = self.key.sign(string_to_sign(signed), padding.PKCS1v15(), algorithm)
        signed["Signature"] = base64.b64encode(signature).decode("ascii")
        return signed

    def loader(self) -> Any:
        return make_cert_loader(cert_dir=self.directory, fetch_url=None, cache=CertificateCache())
