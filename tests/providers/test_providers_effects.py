"""The providers' effects and their two drivers: one flow, run blocking and on an event loop."""

from __future__ import annotations

import threading

import httpx
import pytest

from helpers import graph_error
from wa_auth.errors import TokenUnavailableError
from wa_auth.providers import RotatingTokenProvider, StaticTokenProvider, Token, TokenVerdicts
from wa_auth.providers._effects import (
    Blocking,
    GetToken,
    GetVerdict,
    Http,
    Send,
    adrive,
    drive,
)

pytestmark = pytest.mark.anyio

A = "EAAGeffectsAAAA0123456789abcdefABCDEFGH"
B = "EAAGeffectsBBBB0123456789abcdefABCDEFGH"
REVOKED = graph_error(401, 190, 460, message="x")


def _flow(store):
    """Ask for a token, look up its verdict, call a blocking function; return what was seen."""
    token = yield GetToken(StaticTokenProvider(A))
    verdict = yield GetVerdict(store, token.fingerprint)
    thread = yield Blocking(threading.get_ident)
    return token.reveal(), verdict, thread


async def test_one_flow_runs_blocking_and_on_the_loop():
    """`drive` and `adrive` give the same answers; async runs blocking calls in a thread."""
    store = TokenVerdicts()
    store.record(Token(A).fingerprint, REVOKED)
    here = threading.get_ident()
    value, verdict, thread = drive(_flow(store))
    assert (value, verdict.category, thread) == (A, "token_revoked", here)
    value, verdict, thread = await adrive(_flow(store))
    assert (value, verdict.category) == (A, "token_revoked")
    assert thread != here


class Failing:
    """A provider whose token source is down."""

    def get_token(self):
        raise TokenUnavailableError("down", source="test")

    async def aget_token(self):
        raise TokenUnavailableError("down", source="test")

    def invalidate(self, token, reason):
        pass


def _recovering():
    try:
        yield GetToken(Failing())
    except TokenUnavailableError as exc:
        fallback = yield GetToken(StaticTokenProvider(B))
        return f"{exc.source}: {fallback.reveal()}"
    return "unreachable"


async def test_a_failed_effect_is_thrown_into_the_flow_at_its_yield():
    """The flow catches a step's error where it yielded the step, and carries on."""
    assert drive(_recovering()) == f"test: {B}"
    assert await adrive(_recovering()) == f"test: {B}"


def _unhandled():
    yield GetToken(Failing())


async def test_an_unhandled_failure_leaves_no_garbage(garbage_probe):
    """A failure the flow does not catch propagates, freed by reference counting."""
    with garbage_probe() as probe, pytest.raises(TokenUnavailableError):
        drive(_unhandled())
    assert probe.wa_auth_garbage() == []
    with garbage_probe() as probe, pytest.raises(TokenUnavailableError):
        await adrive(_unhandled())
    assert probe.wa_auth_garbage() == []


def _two_requests():
    first = yield Send("GET", "/one")
    second = yield Send("POST", "/two", json={"x": 1})
    return first.status_code, second.status_code


async def test_one_client_per_drive_opened_on_the_first_request():
    """Both requests of a drive share one client; a flow without requests opens none."""
    seen = []

    def handle(request):
        seen.append((request.method, request.url.path))
        return httpx.Response(204 if request.method == "POST" else 200)

    http = Http(
        {"base_url": "https://vault.test/v1/"},
        httpx.MockTransport(handle),
        httpx.MockTransport(handle),
    )
    assert drive(_two_requests(), http) == (200, 204)
    assert await adrive(_two_requests(), http) == (200, 204)
    assert seen == [("GET", "/v1/one"), ("POST", "/v1/two")] * 2
    assert drive(_flow(TokenVerdicts()), http)[0] == A  # no Send: no client


def test_a_request_without_http_options_says_so():
    """A flow that sends through a drive given no `http=` fails with a clear RuntimeError."""
    with pytest.raises(RuntimeError, match="drive it with http="):
        drive(_two_requests())


def test_the_rotating_flow_is_testable_step_by_step():
    """A provider's flow is driven by hand: each step is a plain value, each answer sent in."""
    store = TokenVerdicts()
    provider = RotatingTokenProvider([A, B], verdicts=store)
    flow = provider._token_flow()
    step = next(flow)
    assert isinstance(step, GetToken)
    assert step.provider is provider.candidates[0]
    step = flow.send(Token(A))
    assert isinstance(step, GetVerdict)
    assert step.fingerprint == Token(A).fingerprint
    step = flow.send(REVOKED)  # A is dead: the flow asks the next candidate
    assert step.provider is provider.candidates[1]
    flow.send(Token(B))
    with pytest.raises(StopIteration) as done:
        flow.send(None)
    assert done.value.value.reveal() == B
    assert provider.active == 1


def test_a_send_never_shows_its_secrets():
    """A `Send` step's repr leaves out the headers and bodies (a Vault token, an app secret)."""
    step = Send("POST", "/x", headers={"Authorization": "Bearer s.secret"}, data={"k": "v1"})
    assert "s.secret" not in repr(step)
    assert "v1" not in repr(step)


async def test_cancelling_a_caller_cancels_its_flow_only():
    """A cancelled caller's flow sees the cancellation at its step and ends; nothing leaks."""
    import asyncio

    started = asyncio.Event()

    async def block():
        started.set()
        await asyncio.Event().wait()

    class Slow(Failing):
        async def aget_token(self):
            await block()

    seen = []

    def flow():
        try:
            yield GetToken(Slow())
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = asyncio.ensure_future(adrive(flow()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]
