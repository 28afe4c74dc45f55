"""Standard Webhooks signatures, checked with the independent `standardwebhooks` verifier."""

from __future__ import annotations

import base64
import json
import time
import tracemalloc

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from atkproxy.signing import decode_secret, signed_headers

OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 24).decode()
BODY = b'{"id":"i-1","name":"john"}'


def headers(secrets: list[str], msg_id: str = "job-1", at: int | None = None) -> dict[str, str]:
    keys = [decode_secret(s) for s in secrets]
    return signed_headers(msg_id, int(time.time()) if at is None else at, BODY, keys)


@pytest.mark.parametrize("secrets", [[OLD], [NEW], [OLD, NEW], [NEW, OLD]])
@pytest.mark.parametrize("verifier", [OLD, NEW])
def test_any_configured_secret_verifies(secrets: list[str], verifier: str) -> None:
    signed = headers(secrets)
    if verifier in secrets:  # during a rotation receivers with the old or the new secret pass
        assert Webhook(verifier).verify(BODY, signed) == {"id": "i-1", "name": "john"}
    else:
        with pytest.raises(WebhookVerificationError):
            Webhook(verifier).verify(BODY, signed)


def test_one_signature_per_secret() -> None:
    signature = headers([OLD, NEW])["webhook-signature"]
    assert [s[:3] for s in signature.split(" ")] == ["v1,", "v1,"]


def test_an_altered_body_or_id_fails() -> None:
    signed = headers([OLD])
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(BODY + b" ", signed)
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(BODY, {**signed, "webhook-id": "job-2"})


def test_an_old_timestamp_fails() -> None:
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(BODY, headers([OLD], at=int(time.time()) - 3600))


def test_the_id_is_the_message_id_and_stable() -> None:
    first, later = headers([OLD], at=1_700_000_000), headers([OLD], at=1_700_000_060)
    assert first["webhook-id"] == later["webhook-id"] == "job-1"
    assert first["webhook-timestamp"] == "1700000000"
    assert first["webhook-signature"] != later["webhook-signature"]


def test_the_prefix_is_optional() -> None:
    assert decode_secret(OLD) == decode_secret(OLD.removeprefix("whsec_")) == b"o" * 32


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("whsec_not base64!", "whsec_ followed by base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "at least 16 bytes"),
        ("", "at least 16 bytes"),
    ],
)
def test_malformed_secrets(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_secret(secret)


def test_a_large_body_is_signed_without_a_copy_of_it() -> None:
    body = json.dumps({"pad": "x" * (8 << 20)}).encode()
    keys = [decode_secret(OLD)]
    tracemalloc.start()
    try:
        signed = signed_headers("job-1", int(time.time()), body, keys)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 64 * 1024, f"{peak} bytes to sign {len(body)}"
    assert Webhook(OLD).verify(body, signed) == {"pad": "x" * (8 << 20)}
