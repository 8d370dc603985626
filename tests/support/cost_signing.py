"""Requests signed the way the cloud providers sign them, with self-made keys, for end-to-end tests.

Nothing here fetches anything: the bridge under test reads the signing certificates from files
(BRIDGE_SNS_CERT_DIR, BRIDGE_GCP_CERTS). The signing side is written from the providers' documentation, not
from the bridge's own verifier, so a bug in the verifier cannot cancel out against the same bug here:

- Amazon SNS (https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html): the string to
  sign is `key\\nvalue\\n` for the signed keys of the message type, in byte order, null keys left out; RSA
  PKCS#1 v1.5 with SHA1 (SignatureVersion 1) or SHA256 (2); base64. The certificate's file name is the last
  path segment of `SigningCertURL` (`https://sns.<region>.amazonaws.com/SimpleNotificationService-<id>.pem`),
  and its subject CN is `sns.amazonaws.com`, as real SNS certificates are. The validity period is around the
  real clock, because the server checks it against the time of receipt.
- Pub/Sub push (https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions): an RS256 JWT with
  `kid` in the header and `iss`, `aud`, `email`, `email_verified`, `iat`, `exp`, `sub`, `azp` claims; the
  public half is a `{kid: PEM certificate}` JSON file, the shape of https://www.googleapis.com/oauth2/v1/certs.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

# The keys SNS signs, per message type (sns-verify-signature-of-message.html).
_SNS_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def _self_signed(key: rsa.RSAPrivateKey, cn: str, *, valid_from: datetime, valid_to: datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(valid_from).not_valid_after(valid_to)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def sns_timestamp(at: datetime | None = None) -> str:
    """An SNS `Timestamp`: `2026-03-06T19:55:38.903Z` (UTC, milliseconds)."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class SnsSigner:
    """A self-made SNS signing key whose certificate sits in `cert_dir` under the SigningCertURL's file name."""

    def __init__(self, cert_dir: Path, *, region: str = "us-east-1",
                 file_name: str = "SimpleNotificationService-e2e00000000000000000000000007e57.pem",
                 key: rsa.RSAPrivateKey | None = None) -> None:
        # `key`: one kept between runs (scripts/sign-example), so a bridge started earlier still trusts it.
        self.key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(UTC)
        pem = _self_signed(self.key, "sns.amazonaws.com", valid_from=now - timedelta(days=1),
                           valid_to=now + timedelta(days=2))
        cert_dir.mkdir(parents=True, exist_ok=True)
        (cert_dir / file_name).write_bytes(pem)
        self.cert_dir = cert_dir
        self.region = region
        self.cert_url = f"https://sns.{region}.amazonaws.com/{file_name}"

    @staticmethod
    def string_to_sign(envelope: dict[str, Any]) -> bytes:
        keys = _SNS_SIGNED[envelope["Type"]]
        return "".join(f"{k}\n{envelope[k]}\n" for k in keys if envelope.get(k) is not None).encode("utf-8")

    def sign(self, envelope: dict[str, Any], *, version: str = "2") -> dict[str, Any]:
        """`envelope` with SignatureVersion, SigningCertURL and Signature set."""
        signed = dict(envelope, SignatureVersion=version, SigningCertURL=self.cert_url)
        algorithm: hashes.HashAlgorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signature = self.key.sign(self.string_to_sign(signed), padding.PKCS1v15(), algorithm)
        signed["Signature"] = base64.b64encode(signature).decode("ascii")
        return signed

    def notification(self, message: str, *, topic: str, message_id: str | None = None,
                     subject: str | None = None, timestamp: str | None = None, version: str = "2") -> dict[str, Any]:
        """A signed Notification, as SNS posts it to an HTTPS subscription."""
        envelope: dict[str, Any] = {
            "Type": "Notification",
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic,
            "Message": message,
            "Timestamp": timestamp or sns_timestamp(),
            "UnsubscribeURL": (f"https://sns.{self.region}.amazonaws.com/?Action=Unsubscribe"
                               f"&SubscriptionArn={topic}:{uuid.uuid4()}"),
        }
        if subject is not None:
            envelope["Subject"] = subject
        return self.sign(envelope, version=version)

    def subscription_confirmation(self, *, topic: str, token: str, message_id: str | None = None,
                                  kind: str = "SubscriptionConfirmation") -> dict[str, Any]:
        """A signed SubscriptionConfirmation (or, with `kind`, UnsubscribeConfirmation) with its SubscribeURL."""
        url = (f"https://sns.{self.region}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic}"
               f"&Token={token}")
        text = (f"You have chosen to subscribe to the topic {topic}.\nTo confirm the subscription, visit the "
                "SubscribeURL included in this message.")
        if kind == "UnsubscribeConfirmation":
            text = (f"You have chosen to deactivate subscription {topic}:{uuid.uuid4()}.\nTo cancel this "
                    "operation and restore the subscription, visit the SubscribeURL included in this message.")
        return self.sign({
            "Type": kind,
            "MessageId": message_id or str(uuid.uuid4()),
            "Token": token,
            "TopicArn": topic,
            "Message": text,
            "SubscribeURL": url,
            "Timestamp": sns_timestamp(),
        }, version="1")


def sns_headers(envelope: dict[str, Any], *, raw: bool = False) -> dict[str, str]:
    """The headers SNS sends with an HTTP(S) delivery (SendMessageToHttp.prepare.html)."""
    headers = {
        "Content-Type": "text/plain; charset=UTF-8",
        "User-Agent": "Amazon Simple Notification Service Agent",
        "x-amz-sns-message-type": str(envelope.get("Type", "Notification")),
        "x-amz-sns-message-id": str(envelope.get("MessageId", "")),
        "x-amz-sns-topic-arn": str(envelope.get("TopicArn", "")),
    }
    if raw:
        headers["x-amz-sns-rawdelivery"] = "true"
    return headers


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class GoogleSigner:
    """A self-made Google token-signing key; `write_certs` stores `{kid: PEM}` for BRIDGE_GCP_CERTS."""

    def __init__(self, kid: str = "e2e-kid-1", *, key: rsa.RSAPrivateKey | None = None) -> None:
        self.kid = kid
        self.key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(UTC)
        self.cert_pem = _self_signed(self.key, "e2e-test-google", valid_from=now - timedelta(days=1),
                                     valid_to=now + timedelta(days=2)).decode("ascii")

    def write_certs(self, path: Path) -> Path:
        path.write_text(json.dumps({self.kid: self.cert_pem}), encoding="utf-8")
        return path

    def token(self, *, audience: str, email: str, email_verified: bool = True, lifetime: int = 3600,
              **overrides: Any) -> str:
        """An RS256 OIDC token as Pub/Sub puts in `Authorization: Bearer` of a push request."""
        now = int(time.time())
        claims: dict[str, Any] = {"iss": "https://accounts.google.com", "aud": audience, "azp": "1089000000001",
                                  "sub": "1089000000001", "email": email, "email_verified": email_verified,
                                  "iat": now - 5, "exp": now + lifetime}
        claims.update(overrides)
        header = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
        signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
        signature = self.key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"


def pubsub_push(data: dict[str, Any], *, message_id: str, budget_id: str,
                billing_account: str = "01D4EE-079462-DFD6EC",
                subscription: str = "projects/e2e-project/subscriptions/budget-alerts") -> dict[str, Any]:
    """A wrapped Pub/Sub push body around a Cloud Billing budget notification (https://cloud.google.com/pubsub/docs/push
    and https://cloud.google.com/billing/docs/how-to/budgets-programmatic-notifications)."""
    return {
        "message": {
            "attributes": {"billingAccountId": billing_account, "budgetId": budget_id, "schemaVersion": "1.0"},
            "data": base64.b64encode(json.dumps(data).encode("utf-8")).decode("ascii"),
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "publish_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
        "subscription": subscription,
    }
