"""What the CLI never prints: the values of variables (and file flags) named for a secret.

A secret pasted where a file name belongs (`WA_VAULT_TOKEN_FILE=hvs.…`) is still a secret, but
the token providers name their file in their errors ("token file … does not exist"). So `main`
wraps stdout and stderr for the run of a command: a line that holds the value of a variable
whose name says TOKEN, KEY or SECRET (or of `--token-file`, `--api-key-file` or
`--app-secret-file`) is printed with the variable's name in its place,
`[WA_VAULT_TOKEN_FILE]`. A JSON line is rewritten as JSON (its strings only, so its shape
stays the contract's); other lines as text. The check is a substring test per value, so a
line without a secret costs next to nothing.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, Final

from wa_auth._redact import (
    MIN_SECRET_LENGTH,
    holds_secret,
    named_secrets,
    scrub,
    scrub_text,
    secret_forms,
)

__all__ = ["ScrubbedStream", "scrubbed_output", "secrets"]

#: Flags whose value names a secret's file: what follows them is treated like the variable.
_SECRET_FILE_FLAGS: Final = ("--token-file", "--api-key-file", "--app-secret-file")


def secrets(environ: Mapping[str, str], argv: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Return `(name, value)` of the secrets of *environ* and of the file flags of *argv*."""
    found = dict.fromkeys(named_secrets(environ))
    for i, arg in enumerate(argv):
        name, sep, value = arg.partition("=")
        if name not in _SECRET_FILE_FLAGS:
            continue
        if not sep:
            value = argv[i + 1] if i + 1 < len(argv) else ""
        if len(value.strip()) >= MIN_SECRET_LENGTH:
            found[(name, value.strip())] = None
    return tuple(sorted(found, key=lambda item: (-len(item[1]), item[0])))


class ScrubbedStream:
    """A text stream that replaces secret values before they reach *inner* (see the module)."""

    def __init__(self, inner: IO[str], named: Sequence[tuple[str, str]]) -> None:
        self.inner = inner
        self._secrets = tuple(named)
        self._forms = secret_forms(self._secrets)

    def write(self, text: str) -> int:
        """Write *text*, its secrets replaced."""
        if self._forms and holds_secret(text, self._forms):
            text = "".join(self._line(line) for line in text.splitlines(keepends=True))
        return self.inner.write(text)

    def _line(self, line: str) -> str:
        body = line.rstrip("\r\n")
        end = line[len(body) :]
        if body.startswith(("{", "[")):
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):
                pass  # not JSON after all: scrubbed as text
            else:
                return json.dumps(scrub(data, self._secrets), ensure_ascii=False) + end
        return scrub_text(body, self._secrets) + end

    def writelines(self, lines: Sequence[str]) -> None:
        """Write each of *lines*."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the inner stream."""
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        # isatty, fileno, encoding, buffer...: the inner stream's.
        return getattr(self.inner, name)


@contextlib.contextmanager
def scrubbed_output(environ: Mapping[str, str], argv: Sequence[str]) -> Iterator[None]:
    """Replace stdout and stderr by `ScrubbedStream`s for the block, then restore them."""
    named = secrets(environ, argv)
    if not named:
        yield
        return
    out, err = sys.stdout, sys.stderr
    sys.stdout = ScrubbedStream(out, named)
    sys.stderr = ScrubbedStream(err, named)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
