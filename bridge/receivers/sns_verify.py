"""Amazon SNS message signature verification (SignatureVersion 1 and 2), with no dependency but `cryptography`.

Algorithm, exactly as cloud-cost.md §3.3/§3.4 describes it, from the AWS documentation
(https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html and
https://docs.aws.amazon.com/sns/latest/dg/SendMessageToHttp.verify.signature.html) and the official validators
(aws/aws-php-sns-message-validator `src/MessageValidator.php`, aws-sdk-ruby `Aws::SNS::MessageVerifier`,
aws-sdk-java-v2 `sns-message-manager` `CertificateUrlValidator.java`):

1. validate `SigningCertURL` strictly (https, host `sns.<region>.amazonaws.com[.cn]`, path exactly
   `/SimpleNotificationService-<hex>.pem`, no query, fragment, userinfo or port): "not just something from the
   amazonaws domain, which could include S3 buckets" (PHP validator); `SubscribeURL` and `UnsubscribeURL`
   likewise (path `/`, the action in the query). Any URL with a control character, whitespace, a backslash,
   a `..` segment or a percent-encoded dot, slash, backslash or control character is refused before anything
   is fetched: such a URL is never one SNS wrote, and it is the raw material of path tricks and log forgery;
2. load the certificate (cache by URL), check its validity period against the caller's clock and its subject
   CN against the names AWS signs with. A certificate that cannot be had (network, non-200, not a PEM) is a
   503, not a 401: the envelope may well be genuine, and SNS retries a 5xx, so the alert is not lost;
3. build the string to sign from the decoded JSON values, keys in byte order, and verify the RSA PKCS#1 v1.5
   signature with SHA1 (version "1") or SHA256 (version "2"); any other version is rejected.

Checking the `TopicArn` allowlist and the message age is the receiver's job (`aws_sns.py`), after this.

Trust: the certificate chain is not walked. As in the PHP and Ruby validators, trust comes from fetching the
certificate over HTTPS (TLS-verified) from a validated SNS host, or from a file the operator placed in the
certificate directory; the CN check is the Java SDK's additional safeguard.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from bridge.errors import AuthError, ServiceUnavailable

log = logging.getLogger(__name__)

# The keys covered by the signature, in byte order, per message type (sns-verify-signature-of-message.html).
# MessageAttributes, UnsubscribeURL, SignatureVersion, Signature and SigningCertURL are not signed.
SIGNED_KEYS: Mapping[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}

# SignatureVersion "1" = SHA1withRSA, "2" = SHA256withRSA; "Reject any other value" (cloud-cost.md §3.3 step 4).
_HASHES: Mapping[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

# SNS endpoint host, `sns.<region>.amazonaws.com` or `.com.cn` in China. The PHP validator's pattern, lower-case
# only because hosts are compared after lower-casing.
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")

# Certificate subject CNs SNS signs with (aws-sdk-java-v2 `SnsHostProvider.java`): `sns.amazonaws.com` in most
# regions, `sns-signing.<region>.amazonaws.com` in opt-in regions, `sns-cn-north-1.amazonaws.com.cn` (and the
# other China region) and `sns-us-gov-west-1.amazonaws.com` (GovCloud). The URL host is regional, the CN is not.
SNS_CERT_CN = re.compile(
    r"^(sns\.amazonaws\.com"
    r"|sns-signing\.[a-z0-9-]+\.amazonaws\.com"
    r"|sns-cn-[a-z0-9-]+\.amazonaws\.com\.cn"
    r"|sns-us-gov-[a-z0-9-]+\.amazonaws\.com)$"
)

# A certificate file name as it may appear in a local certificate directory (no path separators, no "..").
_CERT_FILE = re.compile(r"^[A-Za-z0-9._-]+\.pem$")

LoadCert = Callable[[str], x509.Certificate]
FetchUrl = Callable[[str], bytes]


# The certificate's path as SNS serves it: one segment, `SimpleNotificationService-<hex id>.pem`.
_CERT_PATH = re.compile(r"^/SimpleNotificationService-[0-9a-fA-F]+\.pem$")
# A URL SNS writes is printable ASCII without spaces or backslashes (RFC 3986 characters only).
_URL_CHARS = re.compile(r"^[\x21-\x7e]+$")
# Percent-encoded dot, slash, backslash or control character: a path or log trick, never in a URL SNS writes.
_ENCODED_TRICK = re.compile(r"%(2e|2f|5c|[01][0-9a-f]|7f)", re.IGNORECASE)
# SNS headers (x-amz-sns-message-type, -message-id, -topic-arn, -subscription-arn): printable ASCII and spaces.
_HEADER_VALUE = re.compile(r"^[\x20-\x7e]*$")


class CertificateUnavailable(ServiceUnavailable):
    """The signing certificate could not be obtained (network error, non-200, not a PEM, air-gapped without
    the file): answered 503 with a JSON reason.

    It is our problem, not the sender's, so the answer must be 5xx: SNS retries it (cloud-cost.md §3.1: a
    status outside 200-4xx is retried) and the alert is not lost.
    """

    status = 503
    code = "sns_certificate_unavailable"


def normalize_envelope(message: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an SNS envelope with AWS Lambda's key spellings mapped to the HTTPS ones.

    Lambda spells `SigningCertUrl` / `UnsubscribeUrl`; the official PHP validator maps them the same way
    (aws/aws-php-sns-message-validator `src/MessageValidator.php`).
    """
    out = dict(message)
    for lam, https in (("SigningCertUrl", "SigningCertURL"), ("UnsubscribeUrl", "UnsubscribeURL"),
                       ("SubscribeUrl", "SubscribeURL")):
        if lam in out and https not in out:
            out[https] = out.pop(lam)
    return out


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signed: `key\\nvalue\\n` for each signed key present (not null), in byte order.

    Raises AuthError for an unknown message `Type`.
    """
    keys = SIGNED_KEYS.get(str(message.get("Type")))
    if keys is None:
        raise AuthError(f"unknown SNS message Type {message.get('Type')!r}", code="sns_bad_type")
    return "".join(f"{k}\n{message[k]}\n" for k in keys if message.get(k) is not None).encode("utf-8")


def validate_sns_url(url: str, *, what: str = "SigningCertURL", require_pem: bool = True) -> str:
    """Check that `url` has the exact shape of an SNS URL; returns it unchanged, raises AuthError otherwise.

    Every URL: only printable ASCII (no control character, whitespace or backslash: `urlsplit` silently drops
    tabs and newlines, so a check on its parts alone would pass a URL whose raw text is fetched and logged
    differently), no `..` segment, no percent-encoded dot, slash, backslash or control character; https, no
    userinfo (`https://sns.us-east-1.amazonaws.com@evil.example/` would otherwise pass a naive prefix check),
    no explicit port, no fragment, host `sns.<region>.amazonaws.com[.cn]` (cloud-cost.md §3.4).
    Certificates (`require_pem`): the path is exactly `/SimpleNotificationService-<hex>.pem`, with no query.
    `SubscribeURL` / `UnsubscribeURL` (`require_pem=False`): the path is `/` and the action is in the query.
    The messages never quote the URL's raw text (it may be crafted to forge log lines).
    """
    if not isinstance(url, str) or not url:
        raise AuthError(f"SNS message has no {what}", code="sns_bad_url")
    if not _URL_CHARS.match(url) or "\\" in url:
        raise AuthError(f"{what} contains control characters, whitespace, backslashes or non-ASCII characters",
                        code="sns_bad_url")
    if _ENCODED_TRICK.search(url):
        raise AuthError(f"{what} contains a percent-encoded dot, slash, backslash or control character",
                        code="sns_bad_url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise AuthError(f"{what} is not a valid URL", code="sns_bad_url") from None
    if ".." in parts.path.split("/"):
        raise AuthError(f"{what} contains a '..' path segment", code="sns_bad_url")
    host = (parts.hostname or "").lower()
    if parts.scheme != "https":
        raise AuthError(f"{what} must use https", code="sns_bad_url")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise AuthError(f"{what} must not contain user information", code="sns_bad_url")
    if port is not None or parts.netloc.lower() != host:
        raise AuthError(f"{what} must not name a port", code="sns_bad_url")
    if not SNS_HOST.match(host):
        raise AuthError(f"{what} host {host!r} is not an Amazon SNS endpoint", code="sns_bad_url")
    if "#" in url:
        raise AuthError(f"{what} must not have a fragment", code="sns_bad_url")
    if require_pem:
        if not _CERT_PATH.match(parts.path) or "?" in url:
            raise AuthError(f"{what} does not point at an SNS certificate "
                            "(https://sns.<region>.amazonaws.com/SimpleNotificationService-<id>.pem)",
                            code="sns_bad_url")
    elif parts.path != "/":
        raise AuthError(f"{what} does not point at the SNS API (https://sns.<region>.amazonaws.com/?Action=...)",
                        code="sns_bad_url")
    return url


def check_envelope_urls(message: Mapping[str, Any]) -> None:
    """Validate every URL of an envelope (`validate_sns_url`): the certificate's, and `SubscribeURL` and
    `UnsubscribeURL` when present. Raises AuthError (401) before anything is fetched or logged."""
    validate_sns_url(str(message.get("SigningCertURL") or ""))
    for key in ("SubscribeURL", "UnsubscribeURL"):
        if message.get(key) is not None:
            value = message[key]
            if not isinstance(value, str):
                raise AuthError(f"{key} is not a string", code="sns_bad_url")
            validate_sns_url(value, what=key, require_pem=False)


def check_sns_headers(headers: Mapping[str, str]) -> None:
    """Refuse SNS headers (`x-amz-sns-*`) holding anything but printable ASCII and spaces (AuthError, 401).

    SNS writes ids and ARNs there; a control character is never SNS's, and a newline could forge a log line.
    """
    for name, value in headers.items():
        if name.lower().startswith("x-amz-sns-") and not _HEADER_VALUE.match(value):
            raise AuthError(f"header {name} contains control or non-ASCII characters", code="sns_bad_header")


class CertificateCache:
    """In-process, thread-safe certificate cache keyed by URL (cloud-cost.md §3.3 step 5: "Cache certificates").

    SNS signs with one certificate per region for about a year, so a handful of entries is enough; the cache
    is bounded anyway so that a stream of forged (but host-valid) URLs cannot grow it without limit.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self._lock = threading.Lock()
        self._certs: dict[str, x509.Certificate] = {}
        self._max = max_entries

    def get_or_load(self, url: str, load: Callable[[], x509.Certificate]) -> x509.Certificate:
        """The cached certificate of `url`, loading it with `load()` (outside the lock) on a miss."""
        with self._lock:
            cert = self._certs.get(url)
        if cert is not None:
            return cert
        cert = load()
        with self._lock:
            if len(self._certs) >= self._max:
                self._certs.pop(next(iter(self._certs)))
            self._certs[url] = cert
        return cert

    def clear(self) -> None:
        """Forget every certificate."""
        with self._lock:
            self._certs.clear()


def make_cert_loader(*, cert_dir: str | Path | None, fetch_url: FetchUrl | None,
                     cache: CertificateCache | None = None) -> LoadCert:
    """A `load_cert(url)` for `verify_message`: the local directory first, then `fetch_url`, through `cache`.

    `cert_dir` serves air-gapped installs and tests: a URL whose file name (for example
    `SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem`) exists there is read from disk. Call it
    only with a URL that `validate_sns_url` accepted (`verify_message` does).
    """
    cache = cache if cache is not None else CertificateCache()
    directory = Path(cert_dir) if cert_dir else None

    def load_uncached(url: str) -> x509.Certificate:
        name = urlsplit(url).path.rsplit("/", 1)[-1]
        data: bytes | None = None
        if directory is not None and _CERT_FILE.match(name):
            candidate = directory / name
            if candidate.is_file():
                data = candidate.read_bytes()
        if data is None:
            if fetch_url is None:
                raise _unavailable(
                    f"SNS signing certificate {name} is not in the certificate directory and no fetcher is set; "
                    "put it in BRIDGE_SNS_CERT_DIR or allow HTTPS to SNS")
            try:
                data = fetch_url(url)
            except Exception as exc:  # network error, non-200 (raise_for_status): ours, so 5xx and SNS retries
                # One line: httpx's status errors end with a second line of advice.
                raise _unavailable(f"could not fetch SNS signing certificate {url}: {type(exc).__name__}: "
                                   f"{' '.join(str(exc).split())}") from exc
        try:
            return x509.load_pem_x509_certificate(data)
        except ValueError:
            # A captive proxy or an error page answered instead of SNS: nothing says the message is forged,
            # and the URL was validated, so this is a 503 (retried), never a 401 that drops a genuine alert.
            raise _unavailable(f"SNS signing certificate {url} is not a PEM certificate (an error page or a "
                               "proxy answered?)") from None

    def load_cert(url: str) -> x509.Certificate:
        return cache.get_or_load(url, lambda: load_uncached(url))

    return load_cert


def _unavailable(reason: str) -> CertificateUnavailable:
    # Logged here because the app answers a RequestError without logging it, and an operator must see why SNS
    # alerts are being retried. The URL in `reason` passed validate_sns_url: printable ASCII only.
    log.warning("SNS signing certificate unavailable, answering 503 (SNS retries): %s", reason)
    return CertificateUnavailable(reason)


def _cert_cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def check_certificate(cert: x509.Certificate, *, now: datetime) -> None:
    """Reject a certificate outside its validity period (as of `now`) or not issued to an SNS signing name."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if now < cert.not_valid_before_utc or now > cert.not_valid_after_utc:
        raise AuthError(
            f"SNS signing certificate is not valid at {now.isoformat()} (valid "
            f"{cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()})",
            code="sns_certificate_expired")
    cn = _cert_cn(cert)
    if not SNS_CERT_CN.match(cn.lower()):
        raise AuthError(f"SNS signing certificate subject CN {cn!r} is not an Amazon SNS signing name",
                        code="sns_bad_certificate")


def verify_message(message: Mapping[str, Any], *, now: datetime, load_cert: LoadCert) -> None:
    """Verify one SNS envelope (decoded JSON); return None if authentic, raise AuthError otherwise.

    `now` is the clock the certificate's validity is checked against: production passes the receipt time,
    tests pass the message's own `Timestamp` (the fixture certificate expired on 2026-10-14).
    `load_cert(url)` returns the certificate for a validated URL (see `make_cert_loader`); it may raise
    `CertificateUnavailable` (503). Every URL of the envelope is validated before `load_cert` is called.
    """
    message = normalize_envelope(message)
    version = str(message.get("SignatureVersion", ""))
    hash_factory = _HASHES.get(version)
    if hash_factory is None:
        raise AuthError(f"unsupported SNS SignatureVersion {version!r}: only 1 (SHA1) and 2 (SHA256) exist",
                        code="sns_bad_signature_version")
    to_sign = string_to_sign(message)  # also rejects unknown Types
    check_envelope_urls(message)
    url = str(message["SigningCertURL"])
    signature_text = message.get("Signature")
    if not isinstance(signature_text, str) or not signature_text:
        raise AuthError("SNS message has no Signature", code="sns_bad_signature")
    try:
        signature = base64.b64decode(signature_text, validate=True)
    except (binascii.Error, ValueError):
        raise AuthError("SNS Signature is not base64", code="sns_bad_signature") from None

    cert = load_cert(url)
    check_certificate(cert, now=now)
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise AuthError("SNS signing certificate does not hold an RSA key", code="sns_bad_certificate")
    try:
        key.verify(signature, to_sign, padding.PKCS1v15(), hash_factory())
    except InvalidSignature:
        raise AuthError("SNS signature does not verify: the message was modified or not sent by SNS",
                        code="sns_bad_signature") from None


def parse_sns_timestamp(text: Any) -> datetime:
    """Parse an SNS `Timestamp` ("2026-03-06T19:55:38.903Z") to an aware UTC datetime; ValueError if invalid."""
    if not isinstance(text, str) or not text:
        raise ValueError("missing Timestamp")
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
