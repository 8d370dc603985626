"""SNS signature verification against the real signed messages and the real certificate in ../shared.

The certificate (`SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem`) expired on 2026-10-14, so
fixtures are verified as of their own `Timestamp`; production passes the receipt time and rejects it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography import x509

from bridge.errors import AuthError
from bridge.receivers.sns_verify import (
    CertificateCache,
    CertificateUnavailable,
    make_cert_loader,
    parse_sns_timestamp,
    string_to_sign,
    validate_sns_url,
    verify_message,
)
from tests.support.shared import shared_json, shared_path
from tests.support.sns_signer import TestSigner

CERT_DIR = "fixtures/aws-sns/certs"
CERT_NAME = "SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem"
VALID = [
    "subscription-confirmation-sigv1-2026-03-06-us-west-2.json",
    "notification-sigv1-with-subject-2026-03-06-us-west-2.json",
    "notification-sigv1-no-subject-2026-03-06-us-west-2.json",
    "notification-sigv2-no-subject-2026-03-06-us-west-2.json",
    "unsubscribe-confirmation-sigv2-2026-03-06-us-west-2.json",
]
REDACTED = "budgets-forecasted-2026-01-28-eu-west-1.redacted.json"
PRODUCTION_NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    return shared_json(f"fixtures/aws-sns/{name}")


def fixture_loader() -> Any:
    def no_fetch(url: str) -> bytes:
        raise AssertionError(f"unexpected fetch of {url}")

    return make_cert_loader(cert_dir=shared_path(CERT_DIR), fetch_url=no_fetch, cache=CertificateCache())


def as_of(message: dict[str, Any]) -> datetime:
    return parse_sns_timestamp(message["Timestamp"])


# --- a signer of our own (tests/support/sns_signer.py), for cases the real fixtures cannot express ---------


def notification(**overrides: Any) -> dict[str, Any]:
    base = {"Type": "Notification", "MessageId": "11111111-2222-3333-4444-555555555555",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:cost-alerts", "Message": "hello",
            "Timestamp": "2030-01-01T00:00:00.000Z"}
    base.update(overrides)
    return base


# --- the real fixtures -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALID, ids=lambda n: n.split("-2026")[0])
def test_real_messages_verify_as_of_their_timestamp(name: str) -> None:
    message = fixture(name)
    verify_message(message, now=as_of(message), load_cert=fixture_loader())


@pytest.mark.parametrize("name", VALID, ids=lambda n: n.split("-2026")[0])
def test_one_changed_byte_in_message_fails(name: str) -> None:
    message = fixture(name)
    text = message["Message"]
    message["Message"] = text[:-1] + chr(ord(text[-1]) ^ 1)
    with pytest.raises(AuthError) as err:
        verify_message(message, now=as_of(message), load_cert=fixture_loader())
    assert err.value.code == "sns_bad_signature"


def test_redacted_budgets_message_fails() -> None:
    # Its publisher replaced the account id after signing (fixtures/README.md).
    message = fixture(REDACTED)
    with pytest.raises(AuthError) as err:
        verify_message(message, now=as_of(message), load_cert=fixture_loader())
    assert err.value.code == "sns_bad_signature"


@pytest.mark.parametrize("name", VALID[:2], ids=["sigv1-confirmation", "sigv1-notification"])
def test_expired_certificate_rejected_with_production_clock(name: str) -> None:
    message = fixture(name)
    with pytest.raises(AuthError) as err:
        verify_message(message, now=PRODUCTION_NOW, load_cert=fixture_loader())
    assert err.value.code == "sns_certificate_expired"


def test_certificate_not_yet_valid_rejected() -> None:
    message = fixture(VALID[1])
    with pytest.raises(AuthError, match="not valid at"):
        verify_message(message, now=datetime(2025, 1, 1, tzinfo=UTC), load_cert=fixture_loader())


@pytest.mark.parametrize("version", ["3", "", "0", None, 2], ids=["3", "empty", "0", "missing", "int-2"])
def test_other_signature_versions_rejected(version: object) -> None:
    message = fixture(VALID[3])
    if version is None:
        del message["SignatureVersion"]
    else:
        message["SignatureVersion"] = version
    if version == 2:  # JSON number 2 is not the string "2" SNS sends, but means the same; accept it
        verify_message(message, now=as_of(message), load_cert=fixture_loader())
        return
    with pytest.raises(AuthError) as err:
        verify_message(message, now=as_of(message), load_cert=fixture_loader())
    assert err.value.code == "sns_bad_signature_version"


def test_sigv1_signature_presented_as_v2_fails() -> None:
    message = fixture(VALID[1])
    message["SignatureVersion"] = "2"
    with pytest.raises(AuthError, match="does not verify"):
        verify_message(message, now=as_of(message), load_cert=fixture_loader())


def test_lambda_spelling_signingcerturl_accepted() -> None:
    message = fixture(VALID[2])
    message["SigningCertUrl"] = message.pop("SigningCertURL")
    message["UnsubscribeUrl"] = message.pop("UnsubscribeURL")
    verify_message(message, now=as_of(message), load_cert=fixture_loader())


def test_unsigned_keys_do_not_matter() -> None:
    # MessageAttributes and UnsubscribeURL are not part of the string to sign (sns-verify-signature-of-message).
    message = fixture(VALID[2])
    message["UnsubscribeURL"] = "https://sns.us-west-2.amazonaws.com/?changed"
    message["MessageAttributes"] = {}
    verify_message(message, now=as_of(message), load_cert=fixture_loader())


def test_string_to_sign_notification_without_subject() -> None:
    message = fixture(VALID[2])
    text = string_to_sign(message).decode()
    assert text.startswith("Message\nThis notification has no subject.\nMessageId\n")
    assert "Subject" not in text and "SigningCertURL" not in text and text.endswith("Type\nNotification\n")


# --- certificate URL --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    pytest.param(f"http://sns.us-west-2.amazonaws.com/{CERT_NAME}", id="http"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com@evil.example/{CERT_NAME}", id="userinfo-at-evil"),
    pytest.param(f"https://user:pw@sns.us-west-2.amazonaws.com/{CERT_NAME}", id="userinfo"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com:8443/{CERT_NAME}", id="port"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com:443/{CERT_NAME}", id="explicit-443"),
    pytest.param(f"https://s3.amazonaws.com/sns.us-west-2.amazonaws.com/{CERT_NAME}", id="s3-host"),
    pytest.param(f"https://my-bucket.s3.us-west-2.amazonaws.com/{CERT_NAME}", id="s3-bucket-host"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com.evil.example/{CERT_NAME}", id="suffix-host"),
    pytest.param(f"https://evilsns.us-west-2.amazonaws.com/{CERT_NAME}", id="prefix-host"),
    pytest.param("https://sns.us-west-2.amazonaws.com/cert.txt", id="not-pem"),
    pytest.param("https://sns.us-west-2.amazonaws.com/cert.txt?x=.pem", id="pem-in-query-only"),
    pytest.param("", id="empty"),
    pytest.param("https://[::1/x.pem", id="malformed"),
    # Strict shape: one path segment, SimpleNotificationService-<hex>.pem, no query or fragment.
    pytest.param("https://sns.us-west-2.amazonaws.com/other.pem", id="other-file-name"),
    pytest.param("https://sns.us-west-2.amazonaws.com/SimpleNotificationService-xyz.pem", id="id-not-hex"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/certs/{CERT_NAME}", id="two-segments"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/{CERT_NAME}?x=1", id="query"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/{CERT_NAME}?", id="empty-query"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/{CERT_NAME}#x", id="fragment"),
    # Control characters, whitespace, '..' segments, encoded dots/slashes, backslashes: never in an SNS URL.
    # urlsplit drops \n and \t silently, so these would pass a check on the parsed parts alone.
    pytest.param(f"https://sns.us-west-2.amazonaws.com/{CERT_NAME}\n2026-01-01 CRITICAL forged", id="newline"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/Simple\nNotificationService-{CERT_NAME[26:]}",
                 id="newline-inside"),
    pytest.param(f"https://sns.us-west-2.amazon\taws.com/{CERT_NAME}", id="tab-in-host"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/{CERT_NAME}\r", id="carriage-return"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/\x00{CERT_NAME}", id="nul"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/\x85{CERT_NAME}", id="c1-nel"),
    pytest.param(f" https://sns.us-west-2.amazonaws.com/{CERT_NAME}", id="leading-space"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/{CERT_NAME} ", id="trailing-space"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/../{CERT_NAME}", id="dot-dot-segment"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/x/../{CERT_NAME}", id="dot-dot-inside"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/%2e%2e/{CERT_NAME}", id="encoded-dots"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/x%2F..%2F{CERT_NAME}", id="encoded-slash"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/{CERT_NAME[:-4]}%2Epem", id="encoded-dot-upper"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/x%5C{CERT_NAME}", id="encoded-backslash"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/{CERT_NAME}%0a", id="encoded-newline"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com\\@evil.example/{CERT_NAME}", id="backslash"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com/\u2028{CERT_NAME}", id="line-separator"),
    pytest.param(f"https://sns.us-west-2.amazonaws.com./{CERT_NAME}", id="trailing-dot-host"),
])
def test_bad_certificate_urls_rejected(url: str) -> None:
    with pytest.raises(AuthError) as err:
        validate_sns_url(url)
    assert err.value.code == "sns_bad_url"
    # The answer never repeats the raw URL (it may be crafted to forge a log line).
    assert "\n" not in err.value.message and "\r" not in err.value.message


# The real UnsubscribeURL and SubscribeURL shapes (fixtures/aws-sns), then variations on them.
UNSUBSCRIBE_URL = ("https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn="
                   "arn:aws:sns:us-west-2:131990247566:dongie-standard-topic:b24e11a2-06bd-4e73-aa29-0ed2de3b41b5")


@pytest.mark.parametrize(("url", "ok"), [
    pytest.param(UNSUBSCRIBE_URL, True, id="real-unsubscribe"),
    pytest.param(fixture(VALID[0])["SubscribeURL"], True, id="real-subscribe"),
    pytest.param("https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:x:1:t.fifo:id",
                 True, id="fifo-topic"),
    pytest.param(UNSUBSCRIBE_URL.replace("/?", "/x?"), False, id="other-path"),
    pytest.param(UNSUBSCRIBE_URL.replace("/?", "/../?"), False, id="dot-dot"),
    pytest.param(UNSUBSCRIBE_URL + "\nCRITICAL forged", False, id="newline"),
    pytest.param(UNSUBSCRIBE_URL + "%0d%0aCRITICAL", False, id="encoded-crlf"),
    pytest.param(UNSUBSCRIBE_URL + "&x=%2e%2e%2f", False, id="encoded-dot-slash"),
    pytest.param(UNSUBSCRIBE_URL + "#frag", False, id="fragment"),
    pytest.param(UNSUBSCRIBE_URL.replace("https://", "https://user@"), False, id="userinfo"),
    pytest.param(UNSUBSCRIBE_URL.replace("amazonaws.com/", "amazonaws.com:443/"), False, id="port"),
    pytest.param(UNSUBSCRIBE_URL.replace("sns.us-west-2", "sqs.us-west-2"), False, id="other-service"),
    pytest.param(UNSUBSCRIBE_URL.replace("https", "http", 1), False, id="http"),
])
def test_subscribe_and_unsubscribe_urls(url: str, ok: bool) -> None:
    for what in ("SubscribeURL", "UnsubscribeURL"):
        if ok:
            assert validate_sns_url(url, what=what, require_pem=False) == url
        else:
            with pytest.raises(AuthError, match=what) as err:
                validate_sns_url(url, what=what, require_pem=False)
            assert err.value.code == "sns_bad_url"


def recording_loader(calls: list[str]) -> Any:
    """A loader over the real fixture certificate that records every URL it is asked to fetch."""
    pem = shared_path(f"{CERT_DIR}/{CERT_NAME}").read_bytes()

    def fetch(url: str) -> bytes:
        calls.append(url)
        return pem

    return make_cert_loader(cert_dir=None, fetch_url=fetch, cache=CertificateCache())


@pytest.mark.parametrize(("name", "key", "value"), [
    pytest.param(VALID[1], "SigningCertURL", "https://sns.us-west-2.amazonaws.com/{cert}\n2026-03-06 CRITICAL x",
                 id="cert-url-newline"),
    pytest.param(VALID[1], "SigningCertURL", "https://sns.us-west-2.amazonaws.com/x/../{cert}", id="cert-url-dotdot"),
    pytest.param(VALID[1], "SigningCertURL", "https://sns.us-west-2.amazonaws.com/%2e%2e/{cert}",
                 id="cert-url-encoded-dots"),
    pytest.param(VALID[1], "UnsubscribeURL", UNSUBSCRIBE_URL + "\r\nCRITICAL forged", id="unsubscribe-url-crlf"),
    pytest.param(VALID[1], "UnsubscribeURL", "https://evil.example/?Action=Unsubscribe", id="unsubscribe-url-host"),
    pytest.param(VALID[0], "SubscribeURL", "https://sns.us-west-2.amazonaws.com/..\\?Action=ConfirmSubscription",
                 id="subscribe-url-backslash"),
    pytest.param(VALID[0], "SubscribeURL", 42, id="subscribe-url-not-a-string"),
])
def test_malformed_urls_are_401_before_any_fetch(name: str, key: str, value: Any) -> None:
    message = fixture(name)
    message[key] = value.format(cert=CERT_NAME) if isinstance(value, str) else value
    calls: list[str] = []
    with pytest.raises(AuthError) as err:
        verify_message(message, now=as_of(message), load_cert=recording_loader(calls))
    assert err.value.status == 401 and err.value.code == "sns_bad_url" and key in err.value.message
    assert calls == []
    # The same message with its real URLs verifies through the same fetcher: the fetch is the only difference.
    verify_message(fixture(name), now=as_of(message), load_cert=recording_loader(calls))
    assert calls == [fixture(name)["SigningCertURL"]]


@pytest.mark.parametrize("url", [
    f"https://sns.us-west-2.amazonaws.com/{CERT_NAME}",
    f"https://sns.cn-north-1.amazonaws.com.cn/{CERT_NAME}",
    f"https://SNS.EU-WEST-1.AMAZONAWS.COM/{CERT_NAME}",
], ids=["us-west-2", "china", "upper-case-host"])
def test_good_certificate_urls_accepted(url: str) -> None:
    assert validate_sns_url(url) == url


def test_bad_url_rejected_before_any_certificate_load() -> None:
    message = fixture(VALID[1])
    message["SigningCertURL"] = f"https://evil.example/{CERT_NAME}"

    def load(url: str) -> x509.Certificate:
        raise AssertionError("must not load a certificate from an unvalidated URL")

    with pytest.raises(AuthError, match="not an Amazon SNS endpoint"):
        verify_message(message, now=as_of(message), load_cert=load)


# --- certificate subject, loading and cache ------------------------------------------------------------------


@pytest.mark.parametrize(("cn", "ok"), [
    ("sns.amazonaws.com", True),
    ("sns-signing.ap-east-1.amazonaws.com", True),
    ("sns-cn-north-1.amazonaws.com.cn", True),
    ("sns-us-gov-west-1.amazonaws.com", True),
    ("evil.example.com", False),
    ("sns.amazonaws.com.evil.example", False),
    ("s3.amazonaws.com", False),
], ids=lambda v: str(v))
def test_certificate_subject_cn(tmp_path: Path, cn: str, ok: bool) -> None:
    signer = TestSigner(tmp_path, cn=cn)
    message = signer.sign(notification())
    now = parse_sns_timestamp(message["Timestamp"])
    if ok:
        verify_message(message, now=now, load_cert=signer.loader())
    else:
        with pytest.raises(AuthError) as err:
            verify_message(message, now=now, load_cert=signer.loader())
        assert err.value.code == "sns_bad_certificate"


def test_own_signer_sigv1_and_changed_topic(tmp_path: Path) -> None:
    signer = TestSigner(tmp_path)
    message = signer.sign(notification(Subject="s"), version="1")
    now = parse_sns_timestamp(message["Timestamp"])
    verify_message(message, now=now, load_cert=signer.loader())
    message["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:other"  # the topic is signed too
    with pytest.raises(AuthError):
        verify_message(message, now=now, load_cert=signer.loader())


def test_unknown_type_rejected(tmp_path: Path) -> None:
    signer = TestSigner(tmp_path)
    message = signer.sign(notification())
    message["Type"] = "Surprise"
    with pytest.raises(AuthError, match="Type"):
        verify_message(message, now=parse_sns_timestamp(message["Timestamp"]), load_cert=signer.loader())


def test_signature_not_base64_rejected() -> None:
    message = fixture(VALID[1])
    message["Signature"] = "not base64 !!"
    with pytest.raises(AuthError, match="base64"):
        verify_message(message, now=as_of(message), load_cert=fixture_loader())


def test_loader_reads_cert_dir_then_fetches_and_caches() -> None:
    pem = shared_path(f"{CERT_DIR}/{CERT_NAME}").read_bytes()
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        return pem

    cache = CertificateCache()
    # Empty directory: falls back to the fetcher, once per URL thanks to the cache.
    load = make_cert_loader(cert_dir=None, fetch_url=fetch, cache=cache)
    message = fixture(VALID[1])
    for _ in range(3):
        verify_message(message, now=as_of(message), load_cert=load)
    assert calls == [message["SigningCertURL"]]


def test_cache_is_thread_safe_and_loads_once_per_url_when_warm() -> None:
    cache = CertificateCache()
    pem = shared_path(f"{CERT_DIR}/{CERT_NAME}").read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    loads: list[int] = []
    cache.get_or_load("u", lambda: loads.append(1) or cert)  # type: ignore[func-returns-value]
    results: list[x509.Certificate] = []

    def worker() -> None:
        for _ in range(50):
            results.append(cache.get_or_load("u", lambda: loads.append(1) or cert))  # type: ignore[func-returns-value]

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len(results) == 400 and all(r is cert for r in results)


def test_cache_is_bounded() -> None:
    cache = CertificateCache(max_entries=2)
    cert = x509.load_pem_x509_certificate(shared_path(f"{CERT_DIR}/{CERT_NAME}").read_bytes())
    for i in range(5):
        cache.get_or_load(str(i), lambda: cert)
    assert len(cache._certs) == 2


def test_missing_certificate_without_fetcher_is_unavailable_not_401() -> None:
    # The 2023 Lambda record is signed with a certificate nobody published (fixtures/README.md).
    message = shared_json("fixtures/aws-sns/budgets-actual-daily-2023-03-05-us-east-1.lambda-record.json")
    load = make_cert_loader(cert_dir=shared_path(CERT_DIR), fetch_url=None, cache=CertificateCache())
    with pytest.raises(CertificateUnavailable):
        verify_message(message, now=as_of(message), load_cert=load)


def test_fetch_failure_is_unavailable(tmp_path: Path) -> None:
    def fetch(url: str) -> bytes:
        raise OSError("network unreachable")

    load = make_cert_loader(cert_dir=tmp_path, fetch_url=fetch, cache=CertificateCache())
    message = fixture(VALID[1])
    with pytest.raises(CertificateUnavailable, match="network unreachable"):
        verify_message(message, now=as_of(message), load_cert=load)


def _network_error(url: str) -> bytes:
    raise httpx2.ConnectError("connection refused")


def _not_found(url: str) -> bytes:
    # What the production fetcher (bridge.web._fetch_url) raises for a non-200: raise_for_status().
    httpx2.Response(404, request=httpx2.Request("GET", url)).raise_for_status()
    return b""


@pytest.mark.parametrize(("fetch", "match"), [
    pytest.param(_network_error, "ConnectError: connection refused", id="network-error"),
    pytest.param(_not_found, "HTTPStatusError: Client error '404 Not Found'", id="non-200"),
    pytest.param(lambda url: b"<html>captive portal</html>", "not a PEM", id="not-a-pem"),
    pytest.param(lambda url: b"", "not a PEM", id="empty"),
])
def test_certificate_that_cannot_be_had_is_503_not_401(fetch: Any, match: str) -> None:
    # The envelope may be genuine: a 5xx makes SNS retry, a 401 would drop the alert.
    load = make_cert_loader(cert_dir=None, fetch_url=fetch, cache=CertificateCache())
    message = fixture(VALID[1])
    with pytest.raises(CertificateUnavailable, match=match) as err:
        verify_message(message, now=as_of(message), load_cert=load)
    assert err.value.status == 503 and err.value.code == "sns_certificate_unavailable"
    assert "\n" not in err.value.message
    assert err.value.to_json()["error"] == "sns_certificate_unavailable"


def test_timestamp_parsing() -> None:
    assert parse_sns_timestamp("2026-03-06T19:55:38.903Z") == datetime(
        2026, 3, 6, 19, 55, 38, 903000, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_sns_timestamp(None)
