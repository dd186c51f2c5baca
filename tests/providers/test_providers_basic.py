"""Static, environment and routing providers: the protocol, their errors, their reprs."""

from __future__ import annotations

import re

import pytest

from wa_auth.errors import TokenSourceMalformedError, TokenSourceMissingError, TokenUnavailableError
from wa_auth.providers import (
    EnvTokenProvider,
    FileTokenProvider,
    RotatingTokenProvider,
    RoutingTokenProvider,
    StaticTokenProvider,
    Token,
    TokenProvider,
    VaultTokenProvider,
)

pytestmark = pytest.mark.anyio

TOKEN = "EAAGbasictoken0123456789abcdefABCDEFGH"


@pytest.mark.parametrize(
    "provider",
    [
        StaticTokenProvider(TOKEN),
        EnvTokenProvider(environ={"WA_ACCESS_TOKEN": TOKEN}),
        FileTokenProvider("/nonexistent"),
        VaultTokenProvider("https://v", "p", vault_token="t"),
        RotatingTokenProvider([TOKEN]),
        RoutingTokenProvider({"1": StaticTokenProvider(TOKEN)}),
    ],
    ids=["static", "env", "file", "vault", "rotating", "routing"],
)
def test_every_provider_implements_the_protocol(provider):
    """Each provider is a TokenProvider (get_token, aget_token, invalidate)."""
    assert isinstance(provider, TokenProvider)


def test_env_reads_and_follows_changes(monkeypatch):
    """The environment variable is read per call; a new value is picked up at once."""
    monkeypatch.setenv("WA_ACCESS_TOKEN", f" {TOKEN}\n")
    provider = EnvTokenProvider()
    first = provider.get_token()
    assert first.reveal() == TOKEN
    assert first.source == "env:WA_ACCESS_TOKEN"
    assert provider.get_token() is first
    monkeypatch.setenv("WA_ACCESS_TOKEN", "EAAGother")
    assert provider.get_token().reveal() == "EAAGother"


async def test_env_unset_and_blank(monkeypatch):
    """Unset is TokenSourceMissingError, blank TokenSourceMalformedError, both naming the var."""
    monkeypatch.delenv("WA_TOKEN_X", raising=False)
    provider = EnvTokenProvider("WA_TOKEN_X")
    with pytest.raises(TokenSourceMissingError, match="WA_TOKEN_X is not set"):
        await provider.aget_token()
    monkeypatch.setenv("WA_TOKEN_X", "   ")
    with pytest.raises(TokenSourceMalformedError, match="WA_TOKEN_X is blank"):
        provider.get_token()


def test_errors_are_token_unavailable():
    """Every source error is a TokenUnavailableError with category token_unavailable."""
    with pytest.raises(TokenUnavailableError) as info:
        EnvTokenProvider(environ={}).get_token()
    assert info.value.category == "token_unavailable"
    assert info.value.source == "env:WA_ACCESS_TOKEN"
    assert info.value.to_dict()["source"] == "env:WA_ACCESS_TOKEN"


def test_routing_by_id_and_default():
    """Routes pick by phone number id or WABA id; the default serves the rest."""
    a, b = StaticTokenProvider("EAAGa"), StaticTokenProvider("EAAGb")
    routing = RoutingTokenProvider({"111": a, 222: b}, default=a)
    assert routing.provider_for("222") is b
    assert routing.provider_for("333") is a
    assert routing.get_token().reveal() == "EAAGa"
    assert "EAAG" not in repr(routing)


def test_routing_invalidate_reaches_the_holder_only():
    """`invalidate` goes to every routed provider; only the one holding the token acts."""

    class Spy(StaticTokenProvider):
        def __init__(self, value):
            super().__init__(value)
            self.calls = []

        def invalidate(self, token, reason):
            self.calls.append(token == self._token)

    a, b = Spy("EAAGa"), Spy("EAAGb")
    RoutingTokenProvider({"1": a, "2": b, "3": a}).invalidate(Token("EAAGa"), "test")
    assert a.calls == [True]
    assert b.calls == [False]


def test_static_rejects_blank():
    """A blank static token is refused at construction."""
    with pytest.raises(ValueError, match="non-empty"):
        StaticTokenProvider("  ")


# --- characters a header cannot carry (issue 9) -------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        StaticTokenProvider,
        lambda value: StaticTokenProvider(Token(value, source="config")),
        lambda value: EnvTokenProvider(environ={"WA_ACCESS_TOKEN": value}),
        lambda value: RotatingTokenProvider([value]),
    ],
    ids=["static", "static-token", "env", "rotating"],
)
def test_leading_bom_is_dropped(make):
    """A value with a leading BOM (Notepad, a paste) yields the token without it."""
    assert make("\ufeff" + TOKEN + "\n").get_token().reveal() == TOKEN


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (TOKEN[:4] + "\u200b" + TOKEN[4:], "U+200B (ZERO WIDTH SPACE) at character 5 of"),
        (TOKEN[:4] + "\u2060" + TOKEN[4:], "U+2060 (WORD JOINER) at character 5 of"),
        (TOKEN + "\ufeff", "U+FEFF (ZERO WIDTH NO-BREAK SPACE)"),
        (TOKEN[:4] + "\u00a0" + TOKEN[4:], "whitespace at character 5"),
        (TOKEN[:4] + "\x7f" + TOKEN[4:], "U+007F (a control character)"),
        (TOKEN.replace("a", "\u0430"), "U+0430 (CYRILLIC SMALL LETTER A)"),
    ],
    ids=["zero-width-space", "word-joiner", "trailing-bom", "nbsp", "del", "cyrillic-a"],
)
@pytest.mark.parametrize(
    "make",
    [
        StaticTokenProvider,
        lambda value: EnvTokenProvider(environ={"WA_ACCESS_TOKEN": value}).get_token(),
        lambda value: RotatingTokenProvider([value]),
    ],
    ids=["static", "env", "rotating"],
)
def test_characters_a_header_cannot_carry_are_refused(make, value, words):
    """A non-printable or non-ASCII character raises TokenSourceMalformedError by position."""
    with pytest.raises(TokenSourceMalformedError, match=re.escape(words)) as info:
        make(value)
    for text in (str(info.value), repr(info.value)):
        assert TOKEN[5:] not in text
        assert value not in text


def test_static_token_message_names_the_source():
    """A static token's error names it as the token and carries source `static`."""
    with pytest.raises(TokenSourceMalformedError, match="the token holds U") as info:
        StaticTokenProvider("EAAG\u200bx")
    assert info.value.source == "static"


# --- a token string wherever a provider goes (issue 9) ------------------------------------------


def test_routing_accepts_token_strings_for_routes_and_default():
    """A route or default given as a token string is a static provider of that token."""
    routing = RoutingTokenProvider({"111": "EAAGa", 222: Token("EAAGb")}, default="EAAGc")
    assert routing.provider_for("111").get_token().reveal() == "EAAGa"
    assert routing.provider_for("222").get_token().reveal() == "EAAGb"
    assert routing.provider_for("333").get_token().reveal() == "EAAGc"
    assert isinstance(routing.provider_for("111"), StaticTokenProvider)
    assert "EAAG" not in repr(routing)


@pytest.mark.parametrize(
    ("routes", "default", "words"),
    [
        ({"111": object()}, None, ("routes['111'] must be a token provider", "got a object")),
        ({"111": 42}, None, ("routes['111'] must be a token provider", "got a int")),
        ({"111": "EAAGa"}, b"EAAGb", ("default must be a token provider", "got a bytes")),
    ],
    ids=["object", "int", "bytes-default"],
)
def test_routing_refuses_non_providers_at_construction(routes, default, words):
    """A route or default that is neither provider nor token fails at once, naming which."""
    with pytest.raises(ValueError) as info:
        RoutingTokenProvider(routes, default=default)
    for word in words:
        assert word in str(info.value)
