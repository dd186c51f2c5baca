"""`wa-auth`'s usage errors: they name what was not understood and never show a value.

argparse's own messages echo what was typed ("unrecognized arguments: --acess-token EAA…",
"invalid _positive_int value: 'abc'"); the CLI's never do. Most cases run `main()` in this
process (the same code path, without a process start each); the cases of the issue run as
real `wa-auth` processes too. Every printed line is validated against the JSON Schema.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from running import TO, cli, env_for, validate_lines
from wa_auth._cli import _parser, main

META = "EAAG" + "CANARYusage" + "x7Q2mZ9kLp4RtV8wYb3NcD6fHj1KsU5eGa"
VAULT = "hvs." + "CANARYusage" + "CAESIJq4H0dZ8n2k7VtYb3NcD6fHj1KsU5eGa0"
API_KEY = "CANARYusage" + "-0123456789abcdefghijklmnop"
APP = "900000000000001|" + "CANARYusage" + "2dc477ac10d6c07b3fe0"
SECRETS = {"meta": META, "vault": VAULT, "api_key": API_KEY, "app_secret": APP}
MARK = "CANARYusage"

#: Every way the issue found to put a secret on the command line, and what must be named.
FORMS = [
    pytest.param(["send", "--acess-token", "{s}"], "--acess-token", id="misspelt-flag"),
    pytest.param(["send", "--tokens", "{s}"], "--tokens", id="tokens"),
    pytest.param(["send", "--TOKEN", "{s}"], "--TOKEN", id="upper-case"),
    pytest.param(["send", "--token_file", "{s}"], "--token_file", id="underscore"),
    pytest.param(["send", "-token", "{s}"], "-t", id="single-dash"),
    pytest.param(["send", "-t", "{s}"], "-t", id="short"),
    pytest.param(["send", "-t{s}"], "-t", id="short-attached"),
    pytest.param(["send", "--wa-token={s}"], "--wa-token", id="equals"),
    pytest.param(["send", "--", "--token", "{s}"], "--", id="after-double-dash"),
    pytest.param(["send", "{s}"], "1 value", id="positional"),
    pytest.param(["{s}"], "COMMAND", id="as-the-command"),
    pytest.param(["--{s}"], "--…", id="as-an-option-name"),
    pytest.param(["check", "--bearer", "{s}"], "--bearer", id="check-bearer"),
    pytest.param(["serve", "--apikey", "{s}"], "--apikey", id="serve-apikey"),
    pytest.param(["classify", "--status", "{s}"], "--status", id="bad-typed-value"),
    pytest.param(["send", "--format", "{s}"], "--format", id="bad-choice"),
    pytest.param(["send", "--preview-url={s}"], "--preview-url", id="value-for-a-switch"),
    pytest.param(["outbox", "{s}"], "ACTION", id="as-the-action"),
    pytest.param(["state", "clear", "--fingerprint", "{s}"], "--fingerprint", id="fingerprint"),
    pytest.param(["sandbox", "--port", "{s}"], "--port", id="sandbox-port"),
    pytest.param(["webhook", "verify", "--app-secret", "{s}"], "--app-secret", id="app-secret"),
    pytest.param(["webhook", "verify", "--app-secret={s}"], "--app-secret", id="app-secret-eq"),
    pytest.param(["webhook", "verify", "--secret", "{s}"], "--secret", id="webhook-secret"),
    pytest.param(["webhook", "{s}"], "ACTION", id="as-the-webhook-action"),
]


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith(("WA_", "VAULT_")):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("secret", list(SECRETS.values()), ids=list(SECRETS))
@pytest.mark.parametrize(("form", "named"), FORMS)
def test_a_usage_error_names_the_argument_and_shows_no_value(
    form, named, secret, capsys, monkeypatch
):
    """Each usage error exits 2 with one usage line naming the argument; no secret is shown."""
    _clean_env(monkeypatch)
    argv = [a.replace("{s}", secret) for a in form]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert MARK not in out + err
    (line,) = validate_lines(err if argv[0] == "sandbox" else out)
    assert line["category"] == "usage"
    assert named in line["error"]["message"]
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["send", "--max-attempts", "abc"], "--max-attempts: must be a positive integer", id="max-attempts"),
        pytest.param(["send", "--rate", "0"], "--rate: must be a finite number of messages per second above 0", id="rate-0"),
        pytest.param(["serve", "--rate", "nan"], "--rate: must be", id="rate-nan"),
        pytest.param(["send", "--timeout", "0"], "--timeout: must be a finite number of seconds above 0", id="timeout-0"),
        pytest.param(["check", "--timeout", "inf"], "--timeout: must be", id="timeout-inf"),
        pytest.param(["check", "--warn-days", "-1"], "--warn-days: must be a finite number of days", id="warn-days"),
        pytest.param(["send", "--not-after", "soon"], "--not-after: must be a Unix time", id="not-after"),
        pytest.param(["serve", "--port", "70000"], "--port: must be a port number", id="port"),
        pytest.param(["serve", "--request-timeout", "0"], "--request-timeout: must be", id="request-timeout"),
        pytest.param(["send", "--to", TO, "--text", "hi", "--caption", "c"], "--caption goes with --image or --document", id="caption-with-text"),
        pytest.param(["send", "--to", TO, "--image", "https://x/y", "--filename", "f"], "--filename goes with --document", id="filename-with-image"),
        pytest.param(["send", "--to", TO, "--template", "t", "--preview-url"], "--preview-url goes with --text", id="preview-with-template"),
        pytest.param(["send", "--to", TO, "--text", "hi", "--param", "p"], "--param goes with --template", id="param-with-text"),
        pytest.param(["send", "--to", TO, "--text", "hi", "--lang", "de"], "--lang goes with --template", id="lang-with-text"),
        pytest.param(["send", "--text", "a", "--image", "b"], "--image: not allowed with argument --text", id="exclusive"),
        pytest.param(["outbox"], "the following arguments are required: ACTION", id="required"),
        pytest.param(["send", "--token_file", "x"], "did you mean --token-file?", id="suggestion"),
    ],
)  # fmt: skip
def test_a_bad_value_is_named_by_its_flag_without_internals(argv, message, capsys, monkeypatch):
    """A refused value names its flag and the rule, never a function of wa_auth's."""
    _clean_env(monkeypatch)
    assert main(argv) == 2
    out = capsys.readouterr().out
    (line,) = validate_lines(out)
    assert message in line["error"]["message"]
    assert "_positive_int" not in out
    assert "invalid" not in line["error"]["message"]


def test_format_text_is_honoured_by_usage_errors(capsys, monkeypatch):
    """With --format text, a usage error is a sentence on stderr, and stdout stays empty."""
    _clean_env(monkeypatch)
    assert main(["check", "--format", "text", "--warn-days", MARK]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert (
        err
        == "wa-auth check: --warn-days: must be a finite number of days, 0 or more [usage, exit 2]\n"
    )
    assert main(["send", "--format=text", "--to", TO, "--text", "x", "--caption", "c"]) == 2
    assert capsys.readouterr().err.startswith("wa-auth send: --caption goes with")


# --- the property: no argv makes a usage error show a value ------------------------------------

_NAMES = sorted(
    {
        "--version", "--to", "--text", "--template", "--image", "--document", "--preview-url",
        "--lang", "--param", "--caption", "--filename", "--idempotency-key", "--not-after",
        "--input", "--input-b64", "--concurrency", "--budget", "--max-attempts", "--rate",
        "--outbox", "--phone-number-id", "--business-account-id", "--base-url",
        "--api-version", "--token-file", "--consumer", "--timeout", "--state", "--format",
        "--exit-zero", "--verbose", "--warn-days", "--status", "--port", "--host", "--tokens",
        "--seed", "--freeze-clock", "--api-key-file", "--max-body", "--request-timeout",
        "--shutdown-timeout", "--fingerprint", "--all", "--limit", "--dead-letters",
    }
)  # fmt: skip
_COMMANDS = ["send", "check", "classify", "outbox", "state", "sandbox", "serve", "list", "clear"]
_FORMS = st.sampled_from(sorted(SECRETS.values())).flatmap(
    lambda s: st.sampled_from([s, f"--{s}", f"-{s}", f"-t{s}", f"--x={s}", f"--token={s}"])
)


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    """A command line of known and unknown flags, values, `--`, and the canary somewhere."""
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(_NAMES),
                st.sampled_from(_COMMANDS),
                st.sampled_from(["--", "-", "0", "1", "x", "--nope", "-z", "text", "json"]),
                st.text(max_size=8),
            ),
            max_size=8,
        )
    )
    secret = draw(_FORMS)
    where = draw(st.integers(0, len(parts)))
    parts.insert(where, secret)
    for name in _NAMES:  # a flag right before the canary may take it as its value
        if where and parts[where - 1] == name:
            parts[where] = secret.lstrip("-") or secret
    return parts


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=argvs())
def test_no_command_line_makes_a_usage_error_show_a_value(argv):
    """Whatever is typed, parsing succeeds or raises a UsageError without the canary."""
    from wa_auth._cli._usage import UsageError

    parser = _parser.build()
    message = None
    try:
        args = parser.parse_args(argv)
        _parser.check(args)
    except UsageError as exc:
        message = exc.message
    except SystemExit as exc:  # argparse exits only for --help, which is never drawn
        pytest.fail(f"argparse exited {exc.code} for {argv!r}")
    if message is not None:
        assert MARK not in message, (argv, message)
        assert message.startswith("wa-auth")


# --- as real processes ---------------------------------------------------------------------------


@pytest.mark.parametrize(("form", "named"), FORMS[:10] + FORMS[12:14])
def test_a_real_process_shows_no_secret_in_a_usage_error(form, named, wa_sandbox):
    """The issue's cases as `wa-auth` processes: exit 2, the argument named, no secret anywhere."""
    argv = [a.replace("{s}", META) for a in form]
    run = cli(*argv, env=env_for(wa_sandbox))
    assert run.code == 2
    assert MARK not in run.stdout + run.stderr
    assert named in run.line["error"]["message"]
    assert wa_sandbox.requests() == ()


# --- the help ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["send"], ["check"], ["serve"], ["sandbox"], ["state"]])
def test_help_names_the_project_url_and_shows_defaults(command):
    """--help points at the documentation URL of the package metadata, else the sdist's page."""
    from importlib.metadata import metadata

    urls = [
        u.split(",", 1)[1].strip()
        for u in metadata("wa-auth").get_all("Project-URL") or []
        if u.startswith("Documentation,")
    ]
    # No public home yet: the pages are named in the source distribution, which has docs/.
    url = urls[0] if urls else "in wa-auth's source distribution (pip download --no-binary"
    proc = subprocess.run(
        [sys.executable, "-m", "wa_auth", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    if urls:
        assert "docs/" not in proc.stdout.replace(url, "")
    if command in ([], ["send"], ["serve"], ["sandbox"]):
        assert url in proc.stdout
    if command in (["send"], ["serve"]):
        assert "(default: 4)" in proc.stdout  # --max-attempts


def test_exit_codes_are_in_the_help():
    """`wa-auth --help` lists every exit code, since the docs are not installed."""
    from wa_auth._cli import _codes

    proc = subprocess.run(
        [sys.executable, "-m", "wa_auth", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    flat = " ".join(proc.stdout.split())
    for code, name in _codes.NAMES.items():
        assert f"{code} {name}" in flat


def test_the_usage_lines_are_json():
    """A usage error is a schema-valid JSON line (the contract of every other failure)."""
    proc = subprocess.run(
        [sys.executable, "-m", "wa_auth", "send", "--budget", "-1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    (line,) = validate_lines(proc.stdout)
    assert json.dumps(line).count("--budget") == 1
