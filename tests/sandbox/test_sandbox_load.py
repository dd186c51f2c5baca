"""Load: 256 concurrent keep-alive clients, 5,000 requests in all, and not one reset."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from wa_auth.sandbox import Sandbox

pytestmark = pytest.mark.anyio

CLIENTS = 256
REQUESTS = 5000


async def _client(host, port, path, token, count, connected, go, errors):
    """Open one connection, wait for every client to connect, then send *count* requests on it."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        errors.append(f"connect: {exc!r}")
        return 0
    finally:
        # Every client counts itself, connected or not, so the others never wait forever.
        connected.append(port)
        if len(connected) == CLIENTS:
            go.set()
    ok = 0
    try:
        await go.wait()
        for i in range(count):
            body = json.dumps(
                {
                    "messaging_product": "whatsapp",
                    "to": "+15551234567",
                    "type": "text",
                    "text": {"body": f"load {i}"},
                    "biz_opaque_callback_data": f"{port}-{id(writer)}-{i}",
                }
            ).encode()
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            status = await reader.readline()
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                close |= name.lower() == "connection" and "close" in value.lower()
            await reader.readexactly(length)
            if status.split()[1:2] != [b"200"] or close:
                errors.append(f"{status!r} close={close}")
            else:
                ok += 1
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(repr(exc))
    finally:
        writer.close()
        await writer.wait_closed()
    return ok


async def test_256_keep_alive_clients_5000_requests_no_reset():
    """256 clients connected at once send 5,000 messages over keep-alive with zero resets."""
    with Sandbox(seed=1, freeze_clock=True) as sb:
        host, port = "127.0.0.1", int(sb.base_url.rsplit(":", 1)[1])
        token = sb.issue_token()
        path = f"/v23.0/{sb.phone_number_id}/messages"
        counts = [REQUESTS // CLIENTS + (i < REQUESTS % CLIENTS) for i in range(CLIENTS)]
        connected, go, errors = [], asyncio.Event(), []
        started = time.perf_counter()
        done = await asyncio.wait_for(
            asyncio.gather(
                *(_client(host, port, path, token, n, connected, go, errors) for n in counts)
            ),
            timeout=120,
        )
        elapsed = time.perf_counter() - started
        print(f"{REQUESTS} requests, {CLIENTS} clients: {elapsed:.2f} s")
        assert errors == []
        assert sum(done) == REQUESTS
        messages = sb.messages()
        assert len(messages) == REQUESTS
        assert len({m.id for m in messages}) == REQUESTS
        assert len({m.idempotency_key for m in messages}) == REQUESTS
        assert {r.outcome for r in sb.requests()} == {"accepted"}
