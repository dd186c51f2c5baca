"""`verify_signature` / `averify_signature`: the raw body's HMAC, every failure typed and named."""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wa_auth.errors import (
    ConfigurationError,
    TokenSourceMissingError,
    WebhookSignatureError,
    WhatsAppError,
)
from wa_auth.events import Events
from wa_auth.providers import EnvTokenProvider, FileTokenProvider, StaticTokenProvider, Token
from wa_auth.webhooks import (
    SIGNATURE_HEADER,
    WebhookRejected,
    WebhookVerified,
    averify_signature,
    verify_signature,
)

SECRET = "6f1c3a0d9e8b7a65f4e3d2c1b0a99887"
BODY = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":'
    b'{"messages":[{"text":{"body":"Ol\\u00e1 \\ud83d\\ude00"}}]},"field":"messages"}]}]}'
)


def sign(body: bytes, secret: str = SECRET) -> str:
    """The header Meta would send: computed here with hmac/hashlib, not by the library."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def reason(body: object, header: object, secret: object = SECRET) -> str:
    with pytest.raises(WebhookSignatureError) as caught:
        verify_signature(body, header, secret)  # type: ignore[arg-type]
    return caught.value.reason


def test_a_correct_signature_passes():
    """The HMAC-SHA256 of the raw bytes with the app secret passes."""
    verify_signature(BODY, sign(BODY), SECRET)


def test_uppercase_hex_and_surrounding_blanks_pass():
    """The hex digits' case and blanks around the header do not matter."""
    header = "  sha256=" + sign(BODY)[7:].upper() + " "
    verify_signature(BODY, header, SECRET)


def test_bytearray_and_memoryview_bodies_pass():
    """A bytearray or memoryview of the body is the same bytes."""
    verify_signature(bytearray(BODY), sign(BODY), SECRET)
    verify_signature(memoryview(BODY), sign(BODY), SECRET)


def test_a_reserialised_body_fails_with_mismatch():
    """Meta escapes non-ASCII as \\uXXXX: the parsed-then-dumped body no longer matches."""
    reserialised = json.dumps(json.loads(BODY), ensure_ascii=False).encode()

    assert reason(reserialised, sign(BODY)) == "mismatch"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "missing_header"),
        ("", "missing_header"),
        ("   ", "missing_header"),
        (b"", "missing_header"),
        ("sha1=" + "0" * 40, "wrong_scheme"),
        ("0" * 64, "wrong_scheme"),
        ("md5=abc", "wrong_scheme"),
        ("sha256=", "malformed_signature"),
        ("sha256=" + "0" * 63, "malformed_signature"),
        ("sha256=" + "g" * 64, "malformed_signature"),
        ("sha256=" + "0" * 65, "malformed_signature"),
        ("sha256=" + "0" * 64, "mismatch"),
    ],
    ids=[
        "none",
        "empty",
        "blank",
        "empty-bytes",
        "sha1",
        "no-scheme",
        "md5",
        "no-digest",
        "short",
        "not-hex",
        "long",
        "wrong-digest",
    ],
)
def test_each_failure_names_its_check(header, expected):
    """A missing header, a wrong scheme, a malformed digest and a mismatch are told apart."""
    assert reason(BODY, header) == expected


def test_the_error_is_typed_and_shows_no_secret():
    """The error is category invalid_signature, a ValueError, pickles, and never shows the secret."""
    with pytest.raises(WebhookSignatureError) as caught:
        verify_signature(BODY, sign(BODY, "another-secret"), SECRET)
    err = caught.value

    assert err.category == "invalid_signature"
    assert isinstance(err, ValueError)
    assert SECRET not in str(err)
    assert SECRET not in repr(err)
    assert SECRET not in json.dumps(err.to_dict())
    assert err.to_dict()["reason"] == "mismatch"
    assert pickle.loads(pickle.dumps(err)).reason == "mismatch"


def test_a_strange_scheme_is_not_repeated():
    """A scheme that is not a short word is not echoed in the message."""
    with pytest.raises(WebhookSignatureError) as caught:
        verify_signature(BODY, "<script>alert(1)</script>=00", SECRET)

    assert "script" not in str(caught.value)


def test_a_rotation_window_accepts_any_of_its_secrets(counters):
    """With [new, old], a body signed with either passes; the event says which one matched."""
    events = Events(counters)
    seen = []
    events.subscribe(seen.append)

    verify_signature(BODY, sign(BODY, "old-secret"), ["new-secret", "old-secret"], events=events)
    verify_signature(BODY, sign(BODY, "new-secret"), ("new-secret", "old-secret"), events=events)

    assert [e.secret_index for e in seen] == [1, 0]
    assert all(isinstance(e, WebhookVerified) and e.check == "signature" for e in seen)
    assert seen[0].body_bytes == len(BODY)


def test_a_rejection_emits_its_reason(counters):
    """A rejected signature emits webhook.rejected with the reason and category, no secret."""
    events = Events(counters)
    seen = []
    events.subscribe(seen.append)

    with pytest.raises(WebhookSignatureError):
        verify_signature(BODY, None, SECRET, events=events)

    (event,) = seen
    assert isinstance(event, WebhookRejected)
    assert (event.reason, event.category, event.check) == (
        "missing_header",
        "invalid_signature",
        "signature",
    )
    assert counters.get("webhook.rejected", "invalid_signature") == 1
    assert SECRET not in json.dumps(event.to_dict())


def test_a_token_provider_gives_the_secret(tmp_path, monkeypatch):
    """The app secret can come from a file, an environment variable, a Token or a provider."""
    path = tmp_path / "app-secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    monkeypatch.setenv("WA_APP_SECRET", SECRET)

    for secret in (
        FileTokenProvider(path),
        EnvTokenProvider("WA_APP_SECRET"),
        StaticTokenProvider(SECRET),
        Token(SECRET),
        [StaticTokenProvider("old-secret"), FileTokenProvider(path)],
    ):
        verify_signature(BODY, sign(BODY), secret)


def test_a_provider_that_cannot_read_raises_its_typed_error(tmp_path):
    """A missing secret file is the provider's TokenSourceMissingError, not a signature failure."""
    with pytest.raises(TokenSourceMissingError):
        verify_signature(BODY, sign(BODY), FileTokenProvider(tmp_path / "nope"))


@pytest.mark.anyio
async def test_the_async_form_reads_the_provider_without_blocking(tmp_path):
    """`averify_signature` awaits `aget_token()` and checks the same way."""
    path = tmp_path / "app-secret"
    path.write_text(SECRET)
    path.chmod(0o600)

    await averify_signature(BODY, sign(BODY), FileTokenProvider(path))
    with pytest.raises(WebhookSignatureError) as caught:
        await averify_signature(BODY, sign(BODY, "x"), [SECRET, FileTokenProvider(path)])
    assert caught.value.reason == "mismatch"


@pytest.mark.parametrize(
    "secret",
    ["", "   ", [], 42, None, [SECRET, ""], object()],
    ids=["empty", "blank", "empty-list", "int", "none", "blank-in-window", "object"],
)
def test_a_bad_secret_is_a_configuration_error(secret):
    """A blank, empty or foreign app_secret is refused by name, never checked as a mismatch."""
    with pytest.raises(ConfigurationError, match="app_secret"):
        verify_signature(BODY, sign(BODY), secret)


def test_a_decoded_body_is_refused_with_the_reason():
    """A str body is a decoded (maybe re-serialised) one: refused with the reason why."""
    with pytest.raises(ConfigurationError, match="raw bytes"):
        verify_signature(BODY.decode(), sign(BODY), SECRET)  # type: ignore[arg-type]


def test_a_header_of_another_type_is_a_configuration_error():
    """A header that is neither text, bytes nor None is a caller's mistake, named."""
    with pytest.raises(ConfigurationError, match=SIGNATURE_HEADER):
        verify_signature(BODY, 123, SECRET)  # type: ignore[arg-type]


@given(body=st.binary(max_size=2048), secret=st.text(min_size=1).filter(str.strip))
def test_only_the_right_signature_passes(body, secret):
    """For any body and secret: the right HMAC passes, the same HMAC of another secret fails."""
    key = secret.strip().encode("utf-8", "surrogatepass")
    good = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    verify_signature(body, good, secret)
    other = "sha256=" + hmac.new(key + b"x", body, hashlib.sha256).hexdigest()
    with pytest.raises(WebhookSignatureError):
        verify_signature(body, other, secret)
    if body:
        with pytest.raises(WebhookSignatureError):
            verify_signature(body[:-1], good, secret)


@given(body=st.binary(max_size=512), header=st.one_of(st.none(), st.text(), st.binary()))
def test_any_header_is_a_typed_answer(body, header):
    """Any body with any header: it passes, or fails with a WhatsAppError; never a traceback."""
    try:
        verify_signature(body, header, SECRET)
    except WhatsAppError as exc:
        error: WhatsAppError | None = exc
    else:
        error = None
    if error is not None:
        assert error.category in {"invalid_signature", "invalid_request"}
        assert SECRET not in str(error)


def test_a_header_of_the_right_length_with_a_blank_among_its_digits_is_malformed():
    """`sha256=` and 64 characters one of which is a blank: malformed, though hex decodes it."""
    digits = sign(BODY)[len("sha256=") :]
    for header in (
        "sha256=" + digits[:62] + " " + digits[62],
        "sha256=" + digits[:31] + " " + digits[31:63],
    ):
        assert len(header) == len(sign(BODY))
        assert reason(BODY, header) == "malformed_signature"
