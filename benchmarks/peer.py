# ruff: noqa: E501 - the nginx config keeps one directive per line
"""The loopback peer of the benchmarks: a private nginx that answers like Meta's Graph API.

nginx answers from memory with `return`, with access logging off and keep-alive connections
that are never recycled, so a single worker serves tens of thousands of requests a second on
loopback: the client under test, not the peer, is the bottleneck.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PHONE_ID = "106540352242922"
#: The phone number id whose messages endpoint answers Meta's expired-token 401.
EXPIRED_PHONE_ID = "401401401401"
API_VERSION = "v23.0"

SUCCESS_BODY = (
    '{"messaging_product":"whatsapp","contacts":[{"input":"15551234567","wa_id":"15551234567"}],'
    '"messages":[{"id":"wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"}]}'
)
# Meta's literal answer to a call made with an expired user/system token (190 / 463).
EXPIRED_BODY = (
    '{"error":{"message":"Error validating access token: Session has expired on Tuesday, '
    '01-Jul-25 09:00:00 PDT. The current time is Tuesday, 01-Jul-25 10:15:42 PDT.",'
    '"type":"OAuthException","code":190,"error_subcode":463,'
    '"fbtrace_id":"AbCdEfGhIjKlMnOpQrStUv1"}}'
)

_CONF = """\
worker_processes 1;
daemon on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{user}
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    default_type application/json;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        server_name localhost;
        location = /{version}/{expired}/messages {{
            add_header WWW-Authenticate 'OAuth "Facebook Platform" "invalid_token" "Error validating access token: Session has expired"' always;
            return 401 '{expired_body}';
        }}
        location ~ ^/v[0-9.]+/[0-9]+/messages$ {{
            add_header x-business-use-case-usage '{{"{phone}":[{{"type":"whatsapp_business_management","call_count":1,"total_cputime":1,"total_time":1,"estimated_time_to_regain_access":0}}]}}';
            return 200 '{success_body}';
        }}
        location / {{ return 404 '{{"error":{{"message":"Unknown path","type":"GraphMethodException","code":100}}}}'; }}
    }}
}}
"""


def nginx_binary() -> str | None:
    """Return the path of the nginx binary, or None when it is not installed."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NginxPeer:
    """Start a private nginx on a free loopback port; stop it by the PID in its pid file."""

    def __init__(self) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (apt-get install -y nginx)")
        self.binary = binary
        self.prefix = Path(tempfile.mkdtemp(prefix="wa-auth-bench-nginx-"))
        self.port = 0
        self.pid = 0

    @property
    def base_url(self) -> str:
        """The peer's `http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> NginxPeer:
        """Write the config, start nginx and wait until it accepts connections."""
        for _ in range(5):  # a free port can be taken between the probe and nginx's bind
            self.port = _free_port()
            conf = self.prefix / "nginx.conf"
            conf.write_text(
                _CONF.format(
                    prefix=self.prefix,
                    port=self.port,
                    user="user root;" if os.geteuid() == 0 else "",
                    version=API_VERSION,
                    expired=EXPIRED_PHONE_ID,
                    phone=PHONE_ID,
                    expired_body=EXPIRED_BODY.replace("'", "\\'"),
                    success_body=SUCCESS_BODY,
                )
            )
            proc = subprocess.run(
                [self.binary, "-p", str(self.prefix), "-c", str(conf)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode == 0 and self._wait_ready():
                return self
            self.stop()
        log = (
            (self.prefix / "error.log").read_text() if (self.prefix / "error.log").exists() else ""
        )
        raise RuntimeError(f"nginx did not start: {proc.stderr.strip()} {log.strip()}")

    def _wait_ready(self) -> bool:
        pid_file = self.prefix / "nginx.pid"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text().strip():
                self.pid = int(pid_file.read_text())
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
                ):
                    return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop nginx (SIGQUIT to the master, by PID) and remove the temp dir."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGQUIT)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.02)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            self.pid = 0
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> NginxPeer:  # noqa: PYI034 - start() returns self
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
