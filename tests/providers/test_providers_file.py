"""FileTokenProvider against real files: rewrites, replaces, partial writes, deletions."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import pytest

from wa_auth.errors import TokenSourceMalformedError, TokenSourceMissingError
from wa_auth.providers import FileTokenProvider, Token

pytestmark = pytest.mark.anyio

CHECK = 0.05
DEBOUNCE = 0.5


def write(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)


def tok(n: int) -> str:
    return f"EAAGtoken{n:04d}" + "x" * 40


def test_reads_text_file(tmp_path):
    """A text file with a final newline yields its token, stripped."""
    path = tmp_path / "token"
    write(path, tok(1) + "\n")
    assert FileTokenProvider(path).get_token().reveal() == tok(1)


def test_reads_json_file_with_expiry(tmp_path):
    """A JSON file yields its access_token and expires_at (Unix seconds or ISO 8601)."""
    path = tmp_path / "token.json"
    write(path, json.dumps({"access_token": tok(1), "expires_at": 2_000_000_000}))
    token = FileTokenProvider(path).get_token()
    assert (token.reveal(), token.expires_at) == (tok(1), 2_000_000_000.0)
    write(path, json.dumps({"access_token": tok(2), "expires_at": "2033-05-18T03:33:20Z"}))
    token = FileTokenProvider(path, format="json").get_token()
    assert (token.reveal(), token.expires_at) == (tok(2), 2_000_000_000.0)


def test_text_without_newline_is_committed_after_debounce(tmp_path):
    """A text file without a final newline is accepted once it reads the same twice."""
    path = tmp_path / "token"
    write(path, tok(1))
    provider = FileTokenProvider(path, debounce=0.05)
    assert provider.get_token().reveal() == tok(1)


@pytest.mark.parametrize(
    ("content", "fmt", "error", "words"),
    [
        ("", "auto", TokenSourceMalformedError, "incomplete"),
        ("   \n", "text", TokenSourceMalformedError, "incomplete"),
        ("two words\n", "text", TokenSourceMalformedError, "more than one word"),
        ('{"access_token": ', "auto", TokenSourceMalformedError, "incomplete"),
        ('{"token": "x"}', "json", TokenSourceMalformedError, "access_token"),
        ('["x"]', "json", TokenSourceMalformedError, "not an object"),
        (
            '{"access_token": "abc", "expires_at": "soon"}',
            "json",
            TokenSourceMalformedError,
            "expires_at",
        ),
    ],
    ids=["empty", "blank", "two-words", "partial-json", "json-no-field", "json-list", "bad-expiry"],
)
def test_garbage_raises_malformed_with_path(tmp_path, content, fmt, error, words):
    """A file without a usable token raises TokenSourceMalformedError naming the path."""
    path = tmp_path / "token"
    write(path, content)
    with pytest.raises(error) as info:
        FileTokenProvider(path, format=fmt, debounce=0.01).get_token()
    assert str(path) in str(info.value)
    assert words in str(info.value)
    assert info.value.source == f"file:{path}"


def test_missing_file_raises_missing_with_path(tmp_path):
    """A missing file raises TokenSourceMissingError naming the path, with the OSError as cause."""
    path = tmp_path / "nope"
    with pytest.raises(TokenSourceMissingError) as info:
        FileTokenProvider(path).get_token()
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_unreadable_path_raises_missing(tmp_path):
    """A path that cannot be read (a directory here) raises TokenSourceMissingError."""
    path = tmp_path / "token"
    path.mkdir()
    with pytest.raises(TokenSourceMissingError, match="cannot be read"):
        FileTokenProvider(path).get_token()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_raises_missing(tmp_path):
    """A file without read permission raises TokenSourceMissingError."""
    path = tmp_path / "token"
    write(path, tok(1) + "\n", mode=0o000)
    with pytest.raises(TokenSourceMissingError, match="cannot be read"):
        FileTokenProvider(path).get_token()


def test_group_readable_file_warns_once(tmp_path, caplog):
    """A file readable by group or others logs one warning, however often it is re-read."""
    path = tmp_path / "token"
    write(path, tok(1) + "\n", mode=0o644)
    provider = FileTokenProvider(path, check_interval=CHECK)
    with caplog.at_level(logging.WARNING, logger="wa_auth.providers"):
        provider.get_token()
        for n in range(2, 4):
            write(path, tok(n) + "\n", mode=0o644)
            time.sleep(CHECK * 2)
            provider.get_token()
    warnings = [r for r in caplog.records if "readable by group or others" in r.getMessage()]
    assert len(warnings) == 1


def test_stat_at_most_every_check_interval(tmp_path):
    """A thousand calls within the check interval cause one stat-and-read, not one per call."""
    path = tmp_path / "token"
    write(path, tok(1) + "\n")
    provider = FileTokenProvider(path, check_interval=60)
    for _ in range(1000):
        provider.get_token()
    assert provider.loads == 1


def test_unchanged_file_is_not_reread(tmp_path, monkeypatch):
    """After the interval a stat sees the same file and does not read it again."""
    path = tmp_path / "token"
    write(path, tok(1) + "\n")
    provider = FileTokenProvider(path, check_interval=CHECK)
    provider.get_token()
    opened = []
    real_read = FileTokenProvider._read
    monkeypatch.setattr(
        FileTokenProvider, "_read", lambda self: opened.append(1) or real_read(self)
    )
    time.sleep(CHECK * 2)
    provider.get_token()
    assert provider.loads == 1  # the unchanged stat renews the token without a refresh flight
    assert opened == []


def test_invalidate_forces_a_reread(tmp_path):
    """`invalidate` re-reads the file even when its stat looks unchanged."""
    path = tmp_path / "token"
    write(path, tok(1) + "\n")
    provider = FileTokenProvider(path, check_interval=60)
    first = provider.get_token()
    st = path.stat()
    write(path, tok(2) + "\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    assert provider.get_token() == first
    provider.invalidate(first, "test")
    assert provider.get_token().reveal() == tok(2)


def test_invalidate_with_deleted_file_raises(tmp_path):
    """An invalidated token whose file is gone yields TokenSourceMissingError, not the dead token."""
    path = tmp_path / "token"
    write(path, tok(1) + "\n")
    provider = FileTokenProvider(path, check_interval=60)
    first = provider.get_token()
    path.unlink()
    provider.invalidate(first, "test")
    with pytest.raises(TokenSourceMissingError):
        provider.get_token()


def test_deleted_file_keeps_serving_cached_token(tmp_path, caplog):
    """While the file is missing the cached token is served (warned once), then the new one."""
    path = tmp_path / "token"
    write(path, tok(1) + "\n")
    provider = FileTokenProvider(path, check_interval=CHECK)
    provider.get_token()
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="wa_auth.providers"):
        for _ in range(5):
            time.sleep(CHECK)
            assert provider.get_token().reveal() == tok(1)
    assert sum("serving the cached token" in r.getMessage() for r in caplog.records) == 1
    write(path, tok(2) + "\n")
    deadline = time.monotonic() + 2
    while provider.get_token().reveal() != tok(2):
        assert time.monotonic() < deadline
        time.sleep(CHECK / 2)


async def test_async_reads_the_file(tmp_path):
    """`aget_token` reads the file off the event loop and shares one read among tasks."""
    import asyncio

    path = tmp_path / "token"
    write(path, tok(1) + "\n")
    provider = FileTokenProvider(path, check_interval=60)
    tokens = await asyncio.gather(*(provider.aget_token() for _ in range(1000)))
    assert {t.reveal() for t in tokens} == {tok(1)}
    assert provider.loads == 1


def _replace(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)  # os.replace: an atomic rename over the file


def _rewrite_in_place(path, text):
    with path.open("w") as f:  # truncates: readers may see an empty file
        half = len(text) // 2
        f.write(text[:half])
        f.flush()
        time.sleep(0.01)  # readers may see a partial token without its newline
        f.write(text[half:])


def _delete_and_recreate(path, text):
    path.unlink()
    time.sleep(CHECK * 2)
    _rewrite_in_place(path, text)


def _rewrite_json_in_place(path, text):
    _rewrite_in_place(path, json.dumps({"access_token": text.strip()}))


@pytest.mark.parametrize("fmt", ["text", "auto"], ids=["text", "auto"])
def test_writer_and_readers_never_see_partial_tokens(tmp_path, fmt):
    """Readers see every completed rewrite within check_interval + debounce, never a partial one."""
    path = tmp_path / "token"
    write(path, tok(0) + "\n")
    provider = FileTokenProvider(path, format=fmt, check_interval=CHECK, debounce=DEBOUNCE)
    provider.get_token()
    complete = {tok(0)}
    seen: set[str] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.add(provider.get_token().reveal())
            except BaseException as exc:
                errors.append(exc)
            time.sleep(0.002)

    readers = [threading.Thread(target=reader) for _ in range(8)]
    for r in readers:
        r.start()
    ops = [_replace, _rewrite_in_place, _delete_and_recreate]
    if fmt == "auto":
        ops.append(_rewrite_json_in_place)
    latencies = []
    try:
        for n in range(1, 13):
            op = ops[n % len(ops)]
            value = tok(n)
            op(path, value + "\n")
            complete.add(value)
            started = time.monotonic()
            while value not in seen:
                assert time.monotonic() - started < (CHECK + DEBOUNCE) * 4 + 1, op.__name__
                time.sleep(0.005)
            latencies.append(time.monotonic() - started)
    finally:
        stop.set()
        for r in readers:
            r.join()
    assert errors == []
    assert seen <= complete  # never an empty, partial or garbage token
    print(f"max latency {max(latencies):.3f}s")


def test_repr_shows_path_not_token(tmp_path):
    """The provider's repr names the path only."""
    path = tmp_path / "token"
    write(path, tok(1) + "\n")
    provider = FileTokenProvider(path)
    provider.get_token()
    assert tok(1) not in repr(provider)
    assert str(path) in repr(provider)
    assert isinstance(provider.get_token(), Token)


# --- characters a header cannot carry, and expiries that are not dates (issue 9) --------------


@pytest.mark.parametrize(
    ("content", "fmt"),
    [
        ("\ufeff" + tok(1) + "\r\n", "text"),
        ("\ufeff" + tok(1) + "\n", "auto"),
        ("\ufeff" + json.dumps({"access_token": tok(1)}), "auto"),
        ("\ufeff" + json.dumps({"access_token": tok(1)}), "json"),
        (json.dumps({"access_token": "\ufeff" + tok(1)}), "json"),
    ],
    ids=["text", "auto-text", "auto-json", "json", "bom-in-json-value"],
)
def test_leading_bom_is_dropped(tmp_path, content, fmt):
    """A file saved by Notepad (UTF-8 with BOM) yields the token; `auto` still detects JSON."""
    path = tmp_path / "token"
    path.write_bytes(content.encode())
    path.chmod(0o600)
    assert FileTokenProvider(path, format=fmt, debounce=0.01).get_token().reveal() == tok(1)


@pytest.mark.parametrize(
    ("content", "fmt", "words"),
    [
        (
            tok(1)[:4] + "\u200b" + tok(1)[4:] + "\n",
            "text",
            "U+200B (ZERO WIDTH SPACE) at character 5",
        ),
        (tok(1) + "\ufeff\n", "text", "U+FEFF (ZERO WIDTH NO-BREAK SPACE) at character 54 of 54"),
        (
            "\u201c" + tok(1) + "\u201d\n",
            "text",
            "U+201C (LEFT DOUBLE QUOTATION MARK) at character 1",
        ),
        (
            tok(1)[:9] + "\x00" + tok(1)[9:] + "\n",
            "text",
            "U+0000 (a control character) at character 10",
        ),
        (
            json.dumps({"access_token": tok(1) + "\u00e9"}),
            "auto",
            "'access_token' of token file",
        ),
        (
            json.dumps({"access_token": tok(1)[:3] + "\t" + tok(1)}),
            "json",
            "whitespace at character 4",
        ),
    ],
    ids=["zero-width-space", "inner-bom", "smart-quotes", "nul", "json-accent", "json-tab"],
)
def test_characters_a_header_cannot_carry_are_refused_at_load(tmp_path, content, fmt, words):
    """A non-printable or non-ASCII character is refused at load, by position, never the token."""
    path = tmp_path / "token"
    path.write_bytes(content.encode())
    path.chmod(0o600)
    with pytest.raises(TokenSourceMalformedError) as info:
        FileTokenProvider(path, format=fmt, debounce=0.01).get_token()
    assert words in str(info.value)
    assert str(path) in str(info.value)
    assert tok(1)[4:] not in str(info.value)
    assert tok(1)[4:] not in repr(info.value)


def test_bom_token_file_sends_against_the_sandbox(tmp_path):
    """A token file saved with a BOM sends: the BOM never reaches the Authorization header."""
    from wa_auth import WhatsAppClient
    from wa_auth.sandbox import Sandbox

    with Sandbox() as sandbox:
        path = tmp_path / "token"
        path.write_bytes(("\ufeff" + sandbox.issue_token() + "\r\n").encode())
        path.chmod(0o600)
        with WhatsAppClient(
            token_provider=FileTokenProvider(path),
            phone_number_id=sandbox.phone_number_id,
            base_url=sandbox.base_url,
        ) as client:
            assert client.send_text("15551234567", "hi").message_id


@pytest.mark.parametrize(
    ("expires_at", "words"),
    [
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (float("-inf"), "not a finite number"),
        ("Infinity", "not a finite number"),
        ("nan", "not a finite number"),
        (10**400, "not a finite number"),
        (2_000_000_000_000, "looks like milliseconds"),
        ("2000000000000", "looks like milliseconds"),
        (2_000_000_000_000_000, "looks like microseconds"),
        (2_000_000_000_000_000_000, "looks like nanoseconds"),
        (5_184_000, "looks like a lifetime in seconds"),
        (-5, "negative"),
        (10**12 * 50, "after the year 2100"),
        ("9999-12-31T00:00:00Z", "outside the years 2000 to 2100"),
        ("1999-12-31", "outside the years 2000 to 2100"),
        (True, "neither Unix seconds nor ISO 8601"),
    ],
    ids=[
        "nan",
        "inf",
        "-inf",
        "Infinity-text",
        "nan-text",
        "huge-int",
        "milliseconds",
        "milliseconds-text",
        "microseconds",
        "nanoseconds",
        "a-lifetime",
        "negative",
        "far-future",
        "iso-year-9999",
        "iso-1999",
        "bool",
    ],
)
def test_implausible_expiry_is_refused_with_the_likely_mistake(tmp_path, expires_at, words):
    """NaN, infinity, milliseconds and other non-dates raise TokenSourceMalformedError."""
    path = tmp_path / "token.json"
    text = json.dumps({"access_token": tok(1), "expires_at": expires_at})  # NaN/Infinity: JSON5-ish
    write(path, text)
    with pytest.raises(TokenSourceMalformedError, match=words) as info:
        FileTokenProvider(path).get_token()
    assert "expires_at" in str(info.value)


@pytest.mark.parametrize(
    ("expires_at", "seconds"),
    [
        (0, None),
        (None, None),
        (2_000_000_000, 2_000_000_000.0),
        (2_000_000_000.5, 2_000_000_000.5),
        ("2000000000", 2_000_000_000.0),
        ("2033-05-18T03:33:20+00:00", 2_000_000_000.0),
        ("2033-05-18T03:33:20", 2_000_000_000.0),
    ],
    ids=["zero", "null", "int", "float", "text", "iso-offset", "iso-naive-utc"],
)
def test_plausible_expiry_is_read(tmp_path, expires_at, seconds):
    """Unix seconds (number or text), ISO 8601, and 0/null for "no expiry" are accepted."""
    path = tmp_path / "token.json"
    write(path, json.dumps({"access_token": tok(1), "expires_at": expires_at}))
    assert FileTokenProvider(path).get_token().expires_at == seconds


# --- a fixed file is used at once after a verdict fast-fail (issue 9) ----------------------------


def _replace_atomically(path, text):
    tmp = path.with_name(path.name + ".tmp")
    write(tmp, text)
    tmp.replace(path)


def test_invalidate_during_the_quiet_period_sees_a_changed_file(tmp_path):
    """After a re-read found nothing newer, an invalidation still notices a rewritten file."""
    path = tmp_path / "token"
    write(path, tok(1) + "\n")
    provider = FileTokenProvider(path, check_interval=60)
    first = provider.get_token()
    provider.invalidate(first, "revoked")
    assert provider.get_token() == first  # nothing newer: quiet for min_retry_interval
    provider.invalidate(first, "revoked")
    assert provider.get_token() == first  # still nothing newer: no re-read, one stat
    assert provider.loads == 2
    _replace_atomically(path, tok(2) + "\n")
    provider.invalidate(first, "revoked")
    assert provider.get_token().reveal() == tok(2)


def _sandbox_client(sandbox, provider, cls):
    from wa_auth.providers import TokenVerdicts

    return cls(
        token_provider=provider,
        phone_number_id=sandbox.phone_number_id,
        base_url=sandbox.base_url,
        verdicts=TokenVerdicts(),
    )


def test_sandbox_token_written_after_a_revocation_sends_at_once(tmp_path):
    """Token A revoked, sends fail; B written to the file: the very next send uses B."""
    from wa_auth import WhatsAppClient
    from wa_auth.errors import TokenRevokedError
    from wa_auth.sandbox import Sandbox

    with Sandbox() as sandbox:
        a, b = sandbox.issue_token(), sandbox.issue_token()
        path = tmp_path / "token"
        write(path, a + "\n")
        provider = FileTokenProvider(path, check_interval=60)
        with _sandbox_client(sandbox, provider, WhatsAppClient) as client:
            client.send_text("15551234567", "with A")
            sandbox.set_token_state(a, "revoked_password_changed")
            for _ in range(2):  # the first is sent and fails; the second fails fast
                with pytest.raises(TokenRevokedError):
                    client.send_text("15551234567", "A is dead")
            _replace_atomically(path, b + "\n")
            assert client.send_text("15551234567", "with B").message_id
        assert provider.get_token().reveal() == b


async def test_sandbox_token_written_after_a_revocation_sends_at_once_async(tmp_path):
    """The same with the async client: the fixed file is read on the next send."""
    from wa_auth import AsyncWhatsAppClient
    from wa_auth.errors import TokenRevokedError
    from wa_auth.sandbox import Sandbox

    with Sandbox() as sandbox:
        a, b = sandbox.issue_token(), sandbox.issue_token()
        path = tmp_path / "token"
        write(path, a + "\n")
        provider = FileTokenProvider(path, check_interval=60)
        async with _sandbox_client(sandbox, provider, AsyncWhatsAppClient) as client:
            await client.send_text("15551234567", "with A")
            sandbox.set_token_state(a, "revoked_password_changed")
            for _ in range(2):
                with pytest.raises(TokenRevokedError):
                    await client.send_text("15551234567", "A is dead")
            _replace_atomically(path, b + "\n")
            assert (await client.send_text("15551234567", "with B")).message_id
