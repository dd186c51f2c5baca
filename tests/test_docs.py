"""The docs run: every Python block is collected (conftest.py), compiles, and the examples work.

The blocks themselves run as Sybil items of README.md and docs/*.md (issue #9); these tests
check what Sybil cannot: that no block escapes collection, that a skipped block says why, that
the docs point nowhere outside the repository, and that `make demo` tells its story.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
DOC_IDS = [str(p.relative_to(ROOT)) for p in DOCS]

# A fence opening: up to 3 spaces, three or more backticks or tildes, then the info string.
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n]*$", re.MULTILINE)
PYTHON_TAGS = {"python", "py", "python3", "py3", "pycon", "ipython", "pytb"}
SKIP = re.compile(r"<!--\s*skip:\s*(\w+)(.*?)-->", re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")
# A Graph API token as the sandbox issues them: "EAA" and a long run of letters and digits.
TOKEN = re.compile(r"EAA[A-Za-z0-9]{20,}")


def _fences(text: str) -> list[tuple[int, str]]:
    """Return (line, language) of every fenced block's opening, skipping closing fences."""
    found: list[tuple[int, str]] = []
    open_fence: str | None = None
    for match in FENCE.finditer(text):
        fence, language = match.group(1), match.group(2)
        if open_fence is None:
            open_fence = fence
            found.append((text.count("\n", 0, match.start()) + 1, language.lower()))
        elif fence[0] == open_fence[0] and len(fence) >= len(open_fence) and not language:
            open_fence = None
    return found


def _examples(path: Path) -> list:
    sybil = Sybil(parsers=[PythonCodeBlockParser(), SkipParser()], path=str(ROOT))
    return list(sybil.parse(path).examples())


def _is_python_block(example, text: str) -> bool:
    return text.startswith(("```", "~~~"), example.region.start)


@pytest.mark.parametrize("path", DOCS, ids=DOC_IDS)
def test_every_python_block_is_collected(path):
    """Each fenced Python block is tagged `python` and is one Sybil example, none left out."""
    text = path.read_text(encoding="utf-8")
    fences = _fences(text)
    odd = [(line, lang) for line, lang in fences if lang in PYTHON_TAGS - {"python"}]
    assert not odd, f"{path.name}: tag these blocks `python` so they run: {odd}"
    wanted = [line for line, lang in fences if lang == "python"]
    collected = [e.line for e in _examples(path) if _is_python_block(e, text)]
    assert collected == wanted


@pytest.mark.parametrize("path", DOCS, ids=DOC_IDS)
def test_every_python_block_compiles(path):
    """Each block compiles, so a syntax error names its line (Sybil's own report of one crashes)."""
    for example in _examples(path):
        if isinstance(example.parsed, str):  # a code block; skip directives are tuples
            compile(example.parsed, f"{path.name}:{example.line}", "exec")


@pytest.mark.parametrize("path", DOCS, ids=DOC_IDS)
def test_skipped_blocks_say_why(path):
    """A skipped block has a reason in its directive and a visible sentence saying it is not run."""
    text = path.read_text(encoding="utf-8")
    for match in SKIP.finditer(text):
        action, reason = match.group(1), match.group(2).strip()
        if action == "end":
            continue
        assert re.fullmatch(r'"[^"]+"', reason), f"{path.name}: skip without a reason: {match[0]}"
        before = text[: match.start()].rstrip().rsplit("\n\n", 1)[-1]
        assert "does not run" in before, (
            f"{path.name}: say in the text before {match[0]} that the block does not run, and why"
        )


@pytest.mark.parametrize("path", DOCS, ids=DOC_IDS)
def test_docs_point_nowhere_outside_the_repository(path):
    """Relative links resolve to files of the repository; nothing names ../shared."""
    text = path.read_text(encoding="utf-8")
    assert "../shared" not in text
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"{path.name}: {target} is outside the repository"
        assert resolved.exists(), f"{path.name}: {target} does not exist"


#: Words that say a capability does not exist yet. "Planned rotation" is a feature's name
#: (`rotate_to`), not a promise.
NOT_BUILT = re.compile(
    r"\b(planned|not (?:yet )?built|not yet (?:implemented|available)|ships only)\b(?! rotation)",
    re.IGNORECASE,
)
#: What the docs call some exported names besides their own name, and the `wa-auth` command
#: (the package's console script) by its descriptions.
ALIASES = {
    "StateFile": ("state file",),
    "SqliteVerdictStore": ("SQLite store", "SQLite verdict store", "verdict store"),
    "SqlitePauseStore": ("SQLite store", "pause store"),
    "SqliteOutbox": ("SQLite outbox",),
    "wa-auth": ("wa-auth", "front door", "command-line", "command line"),
}


def _sentences(text: str) -> list[str]:
    """Return the prose sentences of a page, code blocks left out, each on one line."""
    prose = re.sub(
        r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$", "", text, flags=re.MULTILINE | re.DOTALL
    )
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", prose):
        out.extend(re.split(r"(?<=[.!?])\s+", " ".join(paragraph.split())))
    return out


@pytest.mark.parametrize("path", DOCS, ids=DOC_IDS)
def test_nothing_exported_is_called_planned(path):
    """No sentence calls what wa_auth exports (`__all__`, the `wa-auth` command) planned."""
    import wa_auth

    text = path.read_text(encoding="utf-8")
    for sentence in _sentences(text):
        found = NOT_BUILT.search(sentence)
        if found is None:
            continue
        named = [n for n in wa_auth.__all__ if re.search(rf"\b{re.escape(n)}\b", sentence)]
        named += [n for n, words in ALIASES.items() for w in words if w.lower() in sentence.lower()]
        assert not named, f"{path.name} calls {named} {found.group(0)!r}: {sentence}"


def test_docs_run_in_the_default_pytest_run():
    """`pytest` with no arguments (so `make test`) collects README.md and docs/ with Sybil."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert {"tests", "README.md", "docs"} <= set(
        config["tool"]["pytest"]["ini_options"]["testpaths"]
    )
    dev = config["project"]["optional-dependencies"]["dev"]
    assert any(re.match(r"sybil\b", requirement) for requirement in dev)
    assert "pytest_collect_file" in (ROOT / "conftest.py").read_text(encoding="utf-8")


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def test_quickstart_tells_its_story():
    """`make demo` exits 0 and shows fail-over, a rollback, a confirmation and an account lock."""
    result = _run("quickstart.py")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for line in (
        "event auth.token_failover",
        "-> accepted, sent with the standby token: one call, no error for the caller",
        "event auth.token_activated",
        "-> TokenRevokedError (category 'token_revoked')",
        "-> TokenRevokedError at once: the token is known dead, nothing sent",
        "event auth.rotation_rolled_back",
        "-> rolled back: candidate 1 (standby) is active again",
        "event auth.rotation_confirmed",
        "-> AccountStateError (category 'account_state')",
        "-> a brand-new token gets the same AccountStateError",
        "Done: fail-over, rollback, confirmation and an account lock, all offline.",
    ):
        assert line in out
    assert out.index("auth.token_failover") < out.index("auth.rotation_rolled_back")
    assert out.index("auth.rotation_rolled_back") < out.index("auth.rotation_confirmed")
    assert not TOKEN.search(out + result.stderr), "a token value was printed"


def test_examples_readme_lists_every_script():
    """examples/README.md has a row for every script in examples/."""
    readme = (ROOT / "examples" / "README.md").read_text(encoding="utf-8")
    for script in sorted((ROOT / "examples").glob("*.py")):
        assert f"| `{script.name}` |" in readme
