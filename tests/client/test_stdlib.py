"""The stdlib transport on real sockets: keep-alive, the failure kinds, proxies, TLS.

`test_client.py` and `test_e2e_sync.py` run the client's tables over this transport too; here is
what only real sockets show: one connection reused, a connection the peer closed while idle
replaced before it is written to, each failure mapped to the kind (and `maybe_delivered`) httpx
gives it, HTTPS verified against a CA of the test's own (trustme) through a `CONNECT` proxy.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import pytest
import trustme

from loopback_peers import PROXY_VARIABLES, peer, proxy
from loopback_peers import url as _url
from wa_auth import TransportError, WhatsAppClient
from wa_auth._client._stdlib import Headers, proxy_for

TOKEN = "EAAGstdlibtransport0123456789abcdefABCD"
PHONE = "106540352242922"
TO = "+15551234567"


def _client(base_url: str, **options: Any) -> WhatsAppClient:
    return WhatsAppClient(
        transport="stdlib", token=TOKEN, phone_number_id=PHONE, base_url=base_url, **options
    )


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def _failure(call: Any) -> TransportError:
    with pytest.raises(TransportError) as info:
        call()
    error = info.value
    assert TOKEN not in str(error) + repr(error) + repr(error.__cause__)
    assert error.__context__ is None
    return error


# --- keep-alive ---------------------------------------------------------------------------------


def test_one_connection_carries_every_request():
    """Requests in turn reuse one kept-alive connection."""
    with peer() as server, _client(_url(server)) as client:
        for i in range(5):
            assert client.send_text(TO, f"hi {i}").message_id == "wamid.stdlib"
    assert (len(server.requests), server.connections) == (5, 1)


def test_a_connection_the_peer_closed_while_idle_is_replaced_unsent():
    """A connection the peer closed is dropped before reuse: the next send succeeds, once."""
    with peer("close-after") as server, _client(_url(server)) as client:
        client.send_text(TO, "one")
        assert server.closed.wait(10)
        assert client.send_text(TO, "two").message_id == "wamid.stdlib"
    assert (len(server.requests), server.connections) == (2, 2)


def test_threads_share_one_client_each_on_a_connection_of_its_own():
    """Eight threads send at once: every send delivered, at most one connection per thread."""
    errors: list[BaseException] = []
    with peer() as server, _client(_url(server)) as client:

        def sends() -> None:
            try:
                for i in range(5):
                    client.send_text(TO, f"hi {i}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=sends) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert len(server.requests) == 40
    assert 1 <= server.connections <= 8


def test_the_request_carries_the_headers_httpx_would():
    """User-Agent, Accept, the bearer token and the JSON body's type; the Host of the URL."""
    with peer() as server, _client(_url(server)) as client:
        client.send_text(TO, "hi")
    _, path, headers = server.requests[0]
    assert path == f"/v23.0/{PHONE}/messages"
    assert headers["User-Agent"].startswith("wa-auth/")
    assert "python-http.client" in headers["User-Agent"]
    assert headers["Accept"] == "application/json"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/json"
    assert headers["Host"] == f"127.0.0.1:{server.server_address[1]}"


def test_answer_headers_are_looked_up_without_regard_to_case():
    """Repeated headers are joined as httpx joins them."""
    headers = Headers([("Retry-After", "5"), ("X-A", "1"), ("x-a", "2")])
    assert (headers["retry-after"], headers.get("RETRY-AFTER"), headers["X-A"]) == (
        "5",
        "5",
        "1, 2",
    )
    assert len(headers) == 2
    assert "retry-after" in headers


# --- failures -----------------------------------------------------------------------------------


def test_a_refused_connection_was_not_sent():
    """Nothing listens: ConnectError, not delivered, retryable."""
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()
    with _client(f"http://127.0.0.1:{port}") as client:
        error = _failure(lambda: client.send_text(TO, "hi"))
    assert str(error).startswith("ConnectError on send_text: the request was not sent")
    assert (error.maybe_delivered, error.retryable) == (False, True)


@pytest.mark.parametrize("operation", ["send_text", "get_phone_number"])
def test_a_dropped_answer_may_have_delivered_a_send(operation):
    """The peer read the request and closed: a send may have been delivered, a read not."""
    with peer("drop") as server, _client(_url(server)) as client:
        call = getattr(client, operation)
        error = _failure(lambda: call(TO, "hi") if operation == "send_text" else call())
    assert str(error).startswith(f"RemoteProtocolError on {operation}")
    assert error.maybe_delivered is (operation == "send_text")
    assert len(server.requests) == 1  # never sent twice


def test_silence_past_the_read_timeout_is_a_read_timeout():
    """No answer within the read timeout: ReadTimeout, the send maybe delivered."""
    with peer("silent") as server, _client(_url(server), timeout=0.3) as client:
        error = _failure(lambda: client.send_text(TO, "hi"))
    assert str(error).startswith("ReadTimeout on send_text")
    assert error.maybe_delivered is True


def test_a_url_that_is_no_http_url_is_refused_unsent():
    """A media URL with another scheme is a validation error, as over httpx."""
    with _client("http://127.0.0.1:9") as client:
        transport = client._transport
        from wa_auth._core import Request
        from wa_auth.errors import RequestValidationError
        from wa_auth.providers import Token

        with pytest.raises(RequestValidationError, match="http"):
            transport.send(Request("GET", "ftp://example.com/x", idempotent=True), Token(TOKEN))


def test_an_unknown_transport_name_is_refused():
    """transport= names httpx, stdlib, or is an httpx transport."""
    from wa_auth import ConfigurationError

    with pytest.raises(ConfigurationError, match="transport must be"):
        WhatsAppClient(token=TOKEN, transport="curl")  # type: ignore[arg-type]


# --- TLS and proxies ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls(ca) -> ssl.SSLContext:
    """A server context with a certificate for localhost from the test's CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return context


@pytest.fixture
def trusted(ca, tmp_path, monkeypatch) -> None:
    """Make the test's CA the trust store (SSL_CERT_FILE, as httpx reads it)."""
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))


def test_https_is_verified_against_the_trust_store(tls, trusted):
    """A certificate from the trusted CA is accepted."""
    with peer(tls=tls) as server, _client(_url(server, "https", "localhost")) as client:
        assert client.send_text(TO, "hi").message_id == "wamid.stdlib"


def test_an_untrusted_certificate_is_a_connect_error_unsent(tls):
    """Without the CA in the store the handshake fails: nothing was sent."""
    with peer(tls=tls) as server, _client(_url(server, "https", "localhost")) as client:
        error = _failure(lambda: client.send_text(TO, "hi"))
    assert str(error).startswith("ConnectError on send_text: the request was not sent")
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)
    assert server.requests == []


def test_https_goes_through_the_proxy_in_a_connect_tunnel(tls, trusted, monkeypatch):
    """HTTPS_PROXY: a CONNECT to the peer, the proxy's credentials, TLS to the peer inside."""
    with peer(tls=tls) as server, proxy() as p:
        monkeypatch.setenv("HTTPS_PROXY", p.url)
        with _client(_url(server, "https", "localhost")) as client:
            client.send_text(TO, "one")
            client.send_text(TO, "two")
    assert len(p.heads) == 1  # one tunnel, kept alive
    assert p.heads[0].startswith(f"CONNECT localhost:{server.server_address[1]} HTTP/")
    assert "Proxy-Authorization: Basic dXNlcjpwQHNz" in p.heads[0]  # user:p@ss
    assert len(server.requests) == 2


def test_no_proxy_names_hosts_that_go_direct(tls, trusted, monkeypatch):
    """NO_PROXY=localhost: the proxy sees nothing."""
    with peer(tls=tls) as server, proxy() as p:
        monkeypatch.setenv("HTTPS_PROXY", p.url)
        monkeypatch.setenv("NO_PROXY", "example.com, localhost")
        with _client(_url(server, "https", "localhost")) as client:
            client.send_text(TO, "hi")
    assert p.heads == []
    assert len(server.requests) == 1


def test_a_proxy_that_refuses_the_tunnel_is_a_proxy_error_unsent(tls, trusted, monkeypatch):
    """A 407 to CONNECT: ProxyError, the message certainly not sent."""
    with peer(tls=tls) as server, proxy(refuse=True) as p:
        monkeypatch.setenv("HTTPS_PROXY", p.url)
        with _client(_url(server, "https", "localhost")) as client:
            error = _failure(lambda: client.send_text(TO, "hi"))
    assert str(error).startswith("ProxyError on send_text: the request was not sent")
    assert "407" in str(error)
    assert "p@ss" not in str(error)
    assert "p%40ss" not in str(error)
    assert server.requests == []


@pytest.mark.parametrize(
    ("no_proxy", "host", "bypassed"),
    [
        ("*", "graph.facebook.com", True),
        ("facebook.com", "graph.facebook.com", True),
        ("facebook.com", "facebook.com", True),
        ("facebook.com", "notfacebook.com", False),
        (".facebook.com", "graph.facebook.com", True),
        (".facebook.com", "facebook.com", False),
        ("127.0.0.1, localhost", "localhost", True),
        ("http://graph.facebook.com", "graph.facebook.com", True),
        ("", "graph.facebook.com", False),
    ],
)
def test_no_proxy_follows_httpx(no_proxy, host, bypassed, monkeypatch):
    """NO_PROXY entries match as httpx (curl) matches them."""
    monkeypatch.setenv("HTTPS_PROXY", "proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    expected = None if bypassed else "http://proxy.internal:3128"
    assert proxy_for("https", host) == expected


def test_plain_http_goes_to_the_proxy_in_absolute_form(monkeypatch):
    """HTTP_PROXY for an http:// base URL: the request line names the whole URL."""
    with peer() as forward:
        monkeypatch.setenv("HTTP_PROXY", f"http://user:pw@127.0.0.1:{forward.server_address[1]}")
        with _client("http://graph.example.invalid") as client:
            assert client.send_text(TO, "hi").message_id == "wamid.stdlib"
    _, path, headers = forward.requests[0]
    assert path == f"http://graph.example.invalid/v23.0/{PHONE}/messages"
    assert headers["Proxy-Authorization"] == "Basic dXNlcjpwdw=="  # user:pw


def test_a_deadline_passed_before_the_write_is_not_sent():
    """A kept connection, the deadline already gone: refused before a byte, so not delivered."""
    from wa_auth import _deadline
    from wa_auth._client._base import Timeouts
    from wa_auth._client._stdlib import StdlibTransport
    from wa_auth._core import Request
    from wa_auth.providers._base import Token

    transport = StdlibTransport(Timeouts(2.0, 2.0, 2.0, 2.0), {"User-Agent": "test"})
    with peer() as server:
        url = _url(server) + "/v1/messages"
        send = Request("POST", url, content=b'{"to": "1"}')
        assert transport.send(send, Token(TOKEN)).status_code == 200  # the connection kept
        with _deadline.scope(0.0, "deadline"), pytest.raises(TransportError) as caught:
            transport.send(send, Token(TOKEN))
        transport.close()
    assert str(caught.value).startswith("WriteTimeout on POST: the request was not sent")
    assert caught.value.maybe_delivered is False
    assert len(server.requests) == 1
