"""Usage errors: a command line argparse could not read, told without any of its values.

argparse's own messages repeat what was typed ("unrecognized arguments: --acess-token EAA...",
"invalid _positive_int value: 'abc'"), and what was typed may be a token. So its text never
reaches the output: a usage error names the argument our parser knows (or an option name that
was typed, when it is short and shaped like one), counts the values, and shows none of them.
Every reason is a text of this module, of the parser's own type functions, or a name from the
parser; nothing the caller typed is echoed unless it is one of those names.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, NoReturn

#: Words of argparse's own messages that hold no value of the caller ("expected one argument",
#: "not allowed with argument --image", "the following arguments are required: --to"). A
#: message made only of these and of the parser's own names is shown; any other is replaced.
_ARGPARSE_WORDS: Final = frozenset(
    {
        *("the", "following", "arguments", "argument", "are", "is", "required", "one", "of"),
        *("expected", "at", "most", "least", "not", "allowed", "with"),
    }
)

#: An option name as a person types one: words of one case joined by `-` or `_`, short, with
#: few digits. Anything else typed where an option name goes (mixed case, long, odd
#: characters: a pasted token or key) is not shown.
_OPTION_NAME: Final = re.compile(
    r"--(?:[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*|[A-Z][A-Z0-9]*(?:[-_][A-Z0-9]+)*)"
)
_MAX_NAME: Final = 32
_MAX_DIGITS: Final = 4

#: Words in an option name that say a secret was meant to follow it.
_SECRET_WORDS: Final = ("token", "key", "secret", "bearer", "password", "credential")

_NOT_UNDERSTOOD: Final = "the arguments were not understood (values are never shown)"

SECRET_HINT: Final = (
    "a token or key is never accepted as a command-line argument (every user of this host can "  # noqa: S105 - advice, not a password
    "read a process's arguments): set WA_ACCESS_TOKEN, WA_TOKEN_FILE or WA_VAULT_* in the "
    "environment instead (serve's API key: WA_AUTH_API_KEY or --api-key-file)"
)


class UsageError(Exception):
    """The command line cannot run as typed; the message holds none of its values."""

    def __init__(self, message: str, *, to_stderr: bool = False) -> None:
        super().__init__(message)
        self.message = message
        #: The command's stdout is reserved (`sandbox`): the error goes to stderr.
        self.to_stderr = to_stderr


class Parser(argparse.ArgumentParser):
    """An argument parser whose every refusal is a `UsageError` that shows no value.

    Abbreviations are off (so `--tok` is never taken for `--token-file`), every parser of the
    CLI shows defaults in its help, and argparse's exit is replaced: `main` prints the error
    as one JSON line (or a sentence with `--format text`) and returns the usage exit code.
    """

    #: The command's stdout carries something else (`sandbox`'s info line).
    to_stderr = False

    def __init__(
        self, *args: Any, lazy_epilog: Callable[[], str] | None = None, **kwargs: Any
    ) -> None:
        kwargs.update(formatter_class=HelpFormatter, allow_abbrev=False, exit_on_error=False)
        super().__init__(*args, **kwargs)
        #: Made only when the help is shown: it reads the package's metadata (the docs' URL),
        #: which every other run can skip.
        self.lazy_epilog = lazy_epilog

    def format_help(self) -> str:
        """Return the help, its epilog made now."""
        if self.lazy_epilog is not None:
            self.epilog, self.lazy_epilog = self.lazy_epilog(), None
        return super().format_help()

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse *args*; raise a `UsageError` for a value argparse refused."""
        try:
            return super().parse_known_args(args, namespace)
        except argparse.ArgumentError as err:
            raise self._usage(self._argument_error(err)) from None

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """Parse *args*; raise a `UsageError` naming what was not understood, never its value."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            target = self._command_parser(parsed)
            message = unrecognized(target.prog, extras, target.option_names())
            raise UsageError(message, to_stderr=target.to_stderr)
        return parsed

    def error(self, message: str) -> NoReturn:
        """Raise argparse's remaining refusals (required arguments) as a `UsageError`."""
        raise self._usage(f"{self.prog}: {message if self._is_safe(message) else _NOT_UNDERSTOOD}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:  # noqa: ARG002
        """Exit after `--help` (argparse's only other exit); argparse's *message* is dropped."""
        raise SystemExit(status)

    # --- the names this parser knows ------------------------------------------------------------

    def option_names(self) -> list[str]:
        """Return every option string of this parser (`--to`, `--text`, `-h`, ...)."""
        return [name for action in self._actions for name in action.option_strings]

    def _names(self) -> set[str]:
        names = set(self.option_names())
        for action in self._actions:
            names.add(_action_name(action))
            if isinstance(action.metavar, str):
                names.add(action.metavar)
        return names

    def _action(self, name: str | None) -> argparse.Action | None:
        return next((a for a in self._actions if _action_name(a) == name), None)

    def commands(self) -> dict[str, Parser]:
        """Return this parser's subcommands by name (none without subcommands)."""
        for action in self._actions:
            if isinstance(action.choices, dict):  # only a subparsers action maps names
                return action.choices
        return {}

    def _command_parser(self, parsed: argparse.Namespace) -> Parser:
        """Return the (sub)command parser *parsed* ended in: the one whose options apply."""
        parser = self
        for dest in ("command", "outbox_command", "state_command"):
            sub = parser.commands().get(getattr(parsed, dest, None) or "")
            if sub is not None:
                parser = sub
        return parser

    # --- the messages ---------------------------------------------------------------------------

    def _usage(self, message: str) -> UsageError:
        return UsageError(message, to_stderr=self.to_stderr)

    def _is_safe(self, message: str) -> bool:
        """Return whether argparse's *message* holds only its own words and the parser's names."""
        words = [w for w in re.split(r"[\s,:()]+", message) if w]
        known = _ARGPARSE_WORDS | self._names()
        return bool(words) and all(w in known for w in words)

    def _argument_error(self, err: argparse.ArgumentError) -> str:
        name, text = err.argument_name, err.message
        if name is None:
            return f"{self.prog}: {text if self._is_safe(text) else _NOT_UNDERSTOOD}"
        if text in _REASONS or self._is_safe(text):
            return f"{self.prog}: {name}: {text}"
        return f"{self.prog}: {name}: {self._expects(name)}"

    def _expects(self, name: str) -> str:
        """Say what *name* takes, from the parser alone (the value refused is not shown)."""
        action = self._action(name)
        if action is None:
            return "not understood (the value is not shown)"
        if isinstance(action.choices, dict):  # a subcommand
            return f"unknown (not shown); the choices are {', '.join(action.choices)}"
        if action.choices is not None:
            choices = ", ".join(str(c) for c in action.choices)
            return f"must be one of {choices} (the value given is not shown)"
        if action.nargs == 0:
            return "takes no value"
        return "its value was not understood (the value is not shown)"


def _action_name(action: argparse.Action) -> str:
    """Return the name argparse gives *action* in its errors (`--a/-b`, the metavar, or dest)."""
    if action.option_strings:
        return "/".join(action.option_strings)
    if isinstance(action.metavar, str):
        return action.metavar
    return str(action.dest)


def option_name(arg: str) -> str | None:
    """Return the option name *arg* was typed as, or None for a value.

    `--name=value` is `--name`; `-xVALUE` is `-x` (a short option takes what follows it). A
    long name not shaped like one (mixed case, too long, many digits, odd characters) is
    `--…`: it may be a pasted secret.
    """
    if arg.startswith("--") and len(arg) > 2:
        head = arg.split("=", 1)[0]
        shaped = _OPTION_NAME.fullmatch(head) and len(head) <= _MAX_NAME
        return head if shaped and sum(c.isdigit() for c in head) <= _MAX_DIGITS else "--…"
    if len(arg) > 1 and arg[0] == "-" and arg[1].isalpha():
        return arg[:2]
    return None


def _values(count: int) -> str:
    return f"{count} value{'s' if count != 1 else ''}"


def _wants_a_secret(args: Iterable[str]) -> bool:
    for arg in args:
        if not arg.startswith("-"):
            continue
        name = arg.split("=", 1)[0].lower().replace("_", "-")
        if name.endswith("-file"):
            continue
        if any(word in name for word in _SECRET_WORDS):
            return True
    return False


def unrecognized(prog: str, extras: list[str], known: Sequence[str]) -> str:
    """Return the usage error of arguments the parser did not take: names, never values.

    Everything after `--` is counted, not shown (argparse would take it as values).
    """
    rest, after = extras, 0
    if "--" in extras:
        cut = extras.index("--")
        rest, after = extras[:cut], len(extras) - cut - 1
    names: list[str] = []
    values = 0
    for arg in rest:
        name = option_name(arg)
        if name is None:
            values += 1
            continue
        names.append(name)
        if "=" in arg or (name != arg and not arg.startswith("--")):
            values += 1  # --name=VALUE, -xVALUE
    parts = list(names)
    if values:
        parts.append(_values(values))
    if after or "--" in extras:
        parts.append(f"-- and the {_values(after)} after it")
    message = f"{prog}: unrecognized arguments: {' and '.join(parts)} (values are never shown)"
    if not names and not after:
        message += f"; {prog} takes no positional arguments"
    hints = []
    if names:
        import difflib  # a refused flag's suggestion only

    for name in names:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        if close and close[0] != name:
            hints.append(f"did you mean {close[0]}?")
    if _wants_a_secret(extras):
        hints.append(SECRET_HINT)
    return "; ".join([message, *hints])


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the descriptions' and examples' line breaks, and show each option's default.

    The width is the terminal's, as argparse's own, but found without `shutil`: argparse makes a
    formatter for every option it adds, and each would import shutil (with bz2 and lzma), a
    few ms of every run that never shows a help.
    """

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = terminal_columns() - 2  # argparse's margin
        super().__init__(prog, indent_increment, max_help_position, width)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and default not in (None, False, [], argparse.SUPPRESS)
            and "%(default)" not in text
        ):
            text += " (default: %(default)s)"
        return text


def terminal_columns() -> int:
    """`shutil.get_terminal_size().columns`: `COLUMNS`, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


# --- the flags' value types ----------------------------------------------------------------------
#
# Each refuses a value with one of these fixed reasons, which never hold the value: argparse's
# own ("invalid _positive_int value: 'abc'") names an internal function and echoes the value.

POSITIVE_INT: Final = "must be a positive integer"
SECONDS: Final = "must be a finite number of seconds, 0 or more"
POSITIVE_SECONDS: Final = "must be a finite number of seconds above 0"
RATE: Final = "must be a finite number of messages per second above 0"
UNIX_TIME: Final = "must be a Unix time in seconds"
DAYS: Final = "must be a finite number of days, 0 or more"
HTTP_STATUS: Final = "must be an HTTP status, 100 to 599"
PORT: Final = "must be a port number, 0 to 65535"
INTEGER: Final = "must be an integer"
FINGERPRINT: Final = "must be a token fingerprint: sha256: and 12 hex digits"

#: The only reasons of a refused value shown as they are.
_REASONS: Final = frozenset(
    {
        *(POSITIVE_INT, SECONDS, POSITIVE_SECONDS, RATE, UNIX_TIME, DAYS, HTTP_STATUS, PORT),
        *(INTEGER, FINGERPRINT),
    }
)
_FINGERPRINT: Final = re.compile(r"sha256:[0-9a-f]{12}")


def _number(text: str, why: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(why) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(why)
    return value


def _integer(text: str, why: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(why) from None


def positive_int(text: str) -> int:
    """A count: 1 or more."""
    value = _integer(text, POSITIVE_INT)
    if value < 1:
        raise argparse.ArgumentTypeError(POSITIVE_INT)
    return value


def seconds(text: str) -> float:
    """A duration that may be 0 (`--budget 0`: one attempt, no waiting)."""
    value = _number(text, SECONDS)
    if value < 0:
        raise argparse.ArgumentTypeError(SECONDS)
    return value


def positive_seconds(text: str) -> float:
    """A duration above 0 (`--timeout`: a 0 s timeout would fail every request)."""
    value = _number(text, POSITIVE_SECONDS)
    if value <= 0:
        raise argparse.ArgumentTypeError(POSITIVE_SECONDS)
    return value


def rate(text: str) -> float:
    """Messages per second, above 0."""
    value = _number(text, RATE)
    if value <= 0:
        raise argparse.ArgumentTypeError(RATE)
    return value


def unix_time(text: str) -> float:
    """A point in time as Unix seconds."""
    return _number(text, UNIX_TIME)


def days(text: str) -> float:
    """A number of days, 0 or more."""
    value = _number(text, DAYS)
    if value < 0:
        raise argparse.ArgumentTypeError(DAYS)
    return value


def http_status(text: str) -> int:
    """An HTTP status code."""
    value = _integer(text, HTTP_STATUS)
    if not 100 <= value <= 599:
        raise argparse.ArgumentTypeError(HTTP_STATUS)
    return value


def port(text: str) -> int:
    """A TCP port; 0 picks a free one."""
    value = _integer(text, PORT)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(PORT)
    return value


def integer(text: str) -> int:
    """Any integer (a seed)."""
    return _integer(text, INTEGER)


def fingerprint(text: str) -> str:
    """A token fingerprint (`sha256:` and 12 hex digits), never a token."""
    if not _FINGERPRINT.fullmatch(text):
        raise argparse.ArgumentTypeError(FINGERPRINT)
    return text
