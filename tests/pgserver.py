"""A real PostgreSQL server for the tests: `initdb` and `pg_ctl` in a temp dir, 127.0.0.1.

`PostgresServer.start()` makes a cluster in a fresh temporary directory (owned by the
unprivileged `postgres` user when the tests run as root, since PostgreSQL refuses to run as
root, which CI does), listens on 127.0.0.1 on a free port with password authentication
(scram-sha-256) over TCP, and creates the database `wa_auth_test`. `stop()` and `start()` again
restart it on the same port (a test of an outage); `close()` stops it and removes the directory.

The root `conftest.py` makes one per session (`postgres_server`, `postgres_dsn`); tests needing
a schema of their own use `fresh_dsn()` or a `schema=` of their own.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PostgresServer", "find_bin"]

#: The password of the test cluster's superuser (a test secret: it must never be printed).
PASSWORD = "wa-auth-test-" + secrets.token_hex(8)


def find_bin() -> Path | None:
    """The directory of `initdb` and `pg_ctl` (Debian's /usr/lib/postgresql/N/bin), or None."""
    if os.environ.get("WA_AUTH_PG_BIN"):
        return Path(os.environ["WA_AUTH_PG_BIN"])
    versions = sorted(
        (str(p) for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("initdb")
    return Path(os.path.realpath(found)).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temp dir, on 127.0.0.1 and a random port."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="wa-auth-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.port = _free_port()
        self.password = PASSWORD
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._user = pwd.getpwnam("postgres")
            # The temp dir's parents must be searchable by that user (mkdtemp makes 0700).
            os.chmod(self.root, 0o755)  # noqa: PTH101
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        user = self._user
        return subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )

    @property
    def dsn(self) -> str:
        """The URL of the test database (password included: a test secret)."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/wa_auth_test"

    def url(self, database: str = "wa_auth_test", *, password: str | None = None) -> str:
        """The URL of *database* (with another *password*, e.g. a wrong one)."""
        pw = self.password if password is None else password
        return f"postgresql://postgres:{pw}@127.0.0.1:{self.port}/{database}"

    def init(self) -> PostgresServer:
        """Make the cluster (superuser `postgres` with `password`), start it, create the db."""
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        self.sock.mkdir()
        if self._user:
            for p in (pwfile, self.sock):
                os.chown(p, self._user.pw_uid, self._user.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--pwfile",
            str(pwfile),
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        pwfile.unlink()
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.sock}'\nfsync = off\n"
                "full_page_writes = off\nmax_connections = 200\nshared_buffers = 32MB\n"
            )
        self.start()
        self.psql("CREATE DATABASE wa_auth_test", database="postgres")
        return self

    def start(self) -> None:
        """Start the server (again) and wait until it takes connections."""
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast` rolls back open transactions; `immediate` is a crash)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def psql(self, sql: str, *, database: str = "wa_auth_test") -> str:
        """Run *sql* with psql over the Unix socket (trust); return its output."""
        return self._run(
            str(self.bindir / "psql"),
            "-h",
            str(self.sock),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-qAtc",
            sql,
        ).stdout

    def close(self) -> None:
        """Stop the server and remove its directory."""
        with contextlib.suppress(Exception):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
