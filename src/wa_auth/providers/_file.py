"""`FileTokenProvider`: the token in a file that someone else rewrites (a mounted secret)."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from wa_auth import _deadline
from wa_auth.errors import ConfigurationError, TokenSourceMalformedError, TokenSourceMissingError
from wa_auth.providers._base import Token, clean_token, parse_expires_at
from wa_auth.providers._refresh import Fetched, RefreshingTokenProvider, RefreshPolicy

__all__ = ["FileTokenProvider"]

_log = logging.getLogger("wa_auth.providers")

#: A token file is a few hundred bytes; anything past this is the wrong file.
MAX_FILE_BYTES: Final = 64 * 1024
#: Default pause before a text file without a final newline is read again to see that it is
#: complete: a writer that is still writing changes it within this time.
DEFAULT_DEBOUNCE: Final = 0.25
#: Reads of one change before a still-changing or garbage file is given up on.
_SETTLE_READS: Final = 4
#: Seconds a token read from a text file without its final newline stays provisional: Meta's
#: rejection of it within this time (its first sends are a round trip away) may mean that the
#: writer had not finished, so the file is read again before the token is judged.
PROVISIONAL_FOR: Final = 10.0
#: How long, in debounces, that re-read waits for the file to change (the writer to finish).
_SETTLE_DEBOUNCES: Final = 4
_FORMATS: Final = ("auto", "text", "json")


class FileTokenProvider(RefreshingTokenProvider):
    """A token file, re-read when it changes; survives atomic replace, rewrite and re-creation.

    The file is `stat`ed at most every *check_interval* seconds, and read only when its
    identity, size or modification time changed (or after `invalidate`). A new content is
    committed only when complete: JSON must parse; text must end with a newline or read the
    same again after *debounce* seconds. Until then the previous token keeps being served, so a
    half-written file never replaces a good token.

    Replace the file atomically (write a new file, then rename it over the old one): that is
    the supported way to rotate it. A writer that rewrites the file in place and pauses
    mid-token for longer than *debounce* can still have its partial token read; such a token
    (text without its final newline) stays provisional for `PROVISIONAL_FOR` seconds. When
    Meta rejects it, the file is read again, after waiting up to four debounces for the writer
    to finish, before a verdict is recorded against it: a whole token read then is used, and
    the partial one is never judged. A token that changes again within *debounce* of being
    read is also seen at once, at the next check.

    Args:
        path: The file.
        format: `"text"` (the token, optionally followed by a newline), `"json"`
            (`{"access_token": ..., "expires_at": ...}`; `expires_at` in Unix seconds or ISO
            8601), or `"auto"` (JSON when the content starts with `{`).
        check_interval: Seconds between two `stat` calls.
        debounce: Seconds a text file without a final newline must stay unchanged.
        field: The JSON key holding the token.
        policy: Overrides the refresh policy derived from *check_interval*.
        clock: Wall clock, for expiry.
        monotonic: Interval clock.

    Raises:
        TokenSourceMissingError: From `get_token`, when the file is missing or unreadable and
            no cached token may be served.
        TokenSourceMalformedError: From `get_token`, when it holds no usable token.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        format: str = "auto",  # noqa: A002 - the issue fixes this name
        check_interval: float = 1.0,
        debounce: float = DEFAULT_DEBOUNCE,
        field: str = "access_token",
        policy: RefreshPolicy | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if format not in _FORMATS:
            raise ConfigurationError(f"format must be one of {_FORMATS}, got {format!r}")
        if check_interval <= 0 or debounce < 0:
            raise ConfigurationError("check_interval must be positive and debounce not negative")
        self.path = os.fspath(path)
        self.format = format
        self.check_interval = float(check_interval)
        self.debounce = float(debounce)
        self.field = field
        self._source = f"file:{self.path}"
        self._seen: tuple[int, int, int, int] | None = None
        self._bad: tuple[int, int, int, int] | None = None
        #: The fingerprint of a token read without its final newline, and when (`monotonic`).
        self._unterminated: tuple[str, float] | None = None
        self._clock_mono = monotonic
        self._warned_mode = False
        if policy is None:
            # A stat is cheap: re-check, retry and back off at the check interval itself, so a
            # re-created file is seen within one interval.
            policy = RefreshPolicy(
                recheck_interval=self.check_interval,
                min_retry_interval=self.check_interval,
                retry_backoff=self.check_interval,
                max_retry_backoff=self.check_interval,
                jitter=0.0,
            )
        super().__init__(policy=policy, name=self._source, clock=clock, monotonic=monotonic)

    def __repr__(self) -> str:
        return f"FileTokenProvider(path={self.path!r}, format={self.format!r})"

    def get_token(self) -> Token:
        """Return the token, re-reading the file only when its stat signature changed.

        An unchanged file (same device, inode, mtime and size) renews the cached token with one
        `stat` and no read; anything else goes through the single-flight refresh.

        Raises:
            TokenUnavailableError: The file is missing, unreadable or malformed and no cached
                token may be served (a subclass names why).
        """
        refresher = self._refresher
        token = refresher.fresh()
        if token is not None:
            return token
        token = refresher.peek()
        if token is not None and self._seen is not None:
            try:
                st = os.stat(self.path)  # noqa: PTH116 - no Path object on the hot path
            except OSError:
                return refresher.get()
            sig = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
            if sig == self._seen and refresher.renew(token):
                return token
        return refresher.get()

    def _source_changed(self) -> bool:
        """Return whether the file's stat signature differs from the last committed read.

        One `stat`: after a verdict fast-fail, a good token already written to the file is
        read at once instead of after `check_interval`. A missing file is no news here: the
        next check reports it.
        """
        try:
            st = os.stat(self.path)  # noqa: PTH116 - no Path object on the hot path
        except OSError:
            return False
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size) != self._seen

    # --- the load -------------------------------------------------------------------------------

    def _provisional(self, token: Token) -> bool:
        """Whether *token* was read without its final newline less than `PROVISIONAL_FOR` ago.

        Asked by the client after Meta rejected *token*: a provisional token is read again
        before it is judged (`wa_auth._core.call`).
        """
        mark = self._unterminated
        return (
            mark is not None
            and mark[0] == token.fingerprint
            and self._clock_mono() - mark[1] < PROVISIONAL_FOR
        )

    def _settle(self, sig: tuple[int, int, int, int]) -> None:
        """Wait up to four debounces (and no later than the deadline) for the file to change."""
        wait = _SETTLE_DEBOUNCES * self.debounce
        left = _deadline.left()
        if left is not None:
            wait = min(wait, left)
        until = time.monotonic() + wait
        step = max(self.debounce / 5, 0.01)
        while time.monotonic() < until:
            try:
                st = os.stat(self.path)  # noqa: PTH116 - no Path object on the hot path
            except OSError:
                return  # gone: the read reports it
            if (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size) != sig:
                return
            time.sleep(min(step, max(until - time.monotonic(), 0.0)))

    def _load(self, current: Token | None, forced: bool) -> Fetched:
        st = self._stat()
        sig = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if current is not None and not forced and sig == self._seen:
            return Fetched(current)
        if forced and current is not None and sig == self._seen and self._provisional(current):
            # Meta rejected a token read mid-write, maybe: give the writer time to finish.
            self._settle(sig)
            st = self._stat()
            sig = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        self._check_mode(st)
        error: TokenSourceMalformedError | None = None
        prev: bytes | None = None
        for _ in range(_SETTLE_READS):
            data = self._read()
            parsed, complete, problem = self._parse(data)
            if parsed is not None and (complete or data == prev):
                value, expires_at = parsed
                self._seen = sig
                self._bad = None
                token = Token(value, expires_at=expires_at, source=self._source)
                if complete:
                    self._unterminated = None
                    return Fetched(token)
                self._unterminated = (token.fingerprint, self._clock_mono())
                # Look again after one more debounce: a writer that paused is seen at once.
                return Fetched(token, recheck_after=self.debounce or None)
            if problem is not None or data == prev:
                error = problem or TokenSourceMalformedError(
                    f"token file {self.path} is incomplete (empty, or partial JSON)",
                    source=self._source,
                )
                break
            prev = data
            time.sleep(self.debounce)
        else:
            error = TokenSourceMalformedError(
                f"token file {self.path} kept changing while being read", source=self._source
            )
        if current is not None and not forced:
            # Probably a writer at work: keep the good token, look again at the next check.
            if sig != self._bad:
                self._bad = sig
                _log.warning("%s; still serving token %s", error, current.fingerprint)
            return Fetched(current)
        raise error

    def _stat(self) -> os.stat_result:
        problem: OSError | None = None
        try:
            return os.stat(self.path)  # noqa: PTH116 - no Path object on the hot path
        except OSError as exc:
            problem = exc
        raise _missing(self.path, problem)

    def _read(self) -> bytes:
        problem: OSError | None = None
        try:
            with Path(self.path).open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            problem = exc
        else:
            if len(data) > MAX_FILE_BYTES:
                raise TokenSourceMalformedError(
                    f"token file {self.path} is larger than {MAX_FILE_BYTES} bytes",
                    source=self._source,
                )
            return data
        raise _missing(self.path, problem)

    def _check_mode(self, st: os.stat_result) -> None:
        if self._warned_mode or os.name != "posix":
            return
        if st.st_mode & (stat.S_IRGRP | stat.S_IROTH):
            self._warned_mode = True
            _log.warning(
                "token file %s is readable by group or others (mode %s); chmod 600 it",
                self.path,
                oct(stat.S_IMODE(st.st_mode)),
            )

    def _parse(
        self, data: bytes
    ) -> tuple[tuple[str, float | None] | None, bool, TokenSourceMalformedError | None]:
        """Return (value and expiry, or None), whether the content is complete, and a problem."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            where = exc.start
            return None, False, self._malformed(f"is not UTF-8 (byte {where})")
        # A file saved by Notepad as "UTF-8 with BOM" starts with one; it is no part of the
        # content, and would hide the `{` of a JSON file from format="auto".
        stripped = text.removeprefix("\ufeff").strip()
        if not stripped:
            return None, False, None
        if self.format == "json" or (self.format == "auto" and stripped.startswith("{")):
            return self._parse_json(stripped)
        try:
            value = clean_token(stripped, what=f"token file {self.path}", source=self._source)
        except TokenSourceMalformedError as exc:
            return None, False, exc
        return (value, None), text.endswith("\n"), None

    def _parse_json(
        self, text: str
    ) -> tuple[tuple[str, float | None] | None, bool, TokenSourceMalformedError | None]:
        try:
            obj: Any = json.loads(text)
        except ValueError:
            return None, False, None  # maybe still being written: look again
        if not isinstance(obj, dict):
            return None, True, self._malformed("is JSON but not an object")
        value = obj.get(self.field)
        if not isinstance(value, str) or not value.strip():
            return None, True, self._malformed(f"has no usable {self.field!r} string")
        try:
            value = clean_token(
                value, what=f"the {self.field!r} of token file {self.path}", source=self._source
            )
            expires_at = parse_expires_at(obj.get("expires_at"))
        except TokenSourceMalformedError as exc:
            return None, True, exc
        except ValueError as exc:
            return None, True, self._malformed(str(exc))
        return (value, expires_at), True, None

    def _malformed(self, what: str) -> TokenSourceMalformedError:
        return TokenSourceMalformedError(f"token file {self.path} {what}", source=self._source)


def _missing(path: str, exc: OSError | None) -> TokenSourceMissingError:
    what = "does not exist" if isinstance(exc, FileNotFoundError) else "cannot be read"
    reason = f": {exc.strerror}" if exc is not None and exc.strerror else ""
    error = TokenSourceMissingError(f"token file {path} {what}{reason}", source=f"file:{path}")
    error.__cause__ = exc
    return error
