# ruff: noqa: INP001 - a script run from the repository, not an importable package
"""Check the distributions as a user gets them: build, install the wheel afresh, use it.

Usage:
    python scripts/check_dist.py [--uv PATH]   # `make dist-check`; exit 1 on the first failure

Builds the sdist and, from the sdist, the wheel (`uv build`, as a PyPI upload would be made),
then checks:

- the wheel holds the package with `py.typed`, the `wa-auth` console script and the version of
  pyproject.toml, and no tests; the sdist holds the sources, `py.typed`, the tests and LICENSE;
- the wheel installs into a new virtualenv (runtime dependencies at uv.lock's versions), and
  there, outside the work tree, `import wa_auth` loads the installed copy, whose
  `__version__` is the version, `py.typed` is installed, and `wa-auth --version` prints it.

Everything happens in a temporary directory, removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


class CheckError(Exception):
    """A distribution is not what a user should get."""


def _run(*args: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run(  # noqa: S603 - fixed commands of this script, no shell
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise CheckError(f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def _one(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    if len(found) != 1:
        raise CheckError(f"expected one {pattern} in {directory}, found {found}")
    return found[0]


def _require(names: set[str], wanted: list[str], what: str) -> None:
    missing = [name for name in wanted if name not in names]
    if missing:
        raise CheckError(f"{what} lacks {missing}")


def check_wheel(wheel: Path, version: str) -> None:
    """Check the wheel's files, entry point and metadata version."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"wa_auth-{version}.dist-info"
        _require(
            names,
            [
                "wa_auth/__init__.py",
                "wa_auth/py.typed",
                f"{info}/METADATA",
                f"{info}/entry_points.txt",
                f"{info}/licenses/LICENSE",
            ],
            wheel.name,
        )
        stray = sorted(n for n in names if not n.startswith(("wa_auth/", f"{info}/")))
        if stray:
            raise CheckError(f"{wheel.name} holds files outside the package: {stray[:5]}")
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    if f"\nVersion: {version}\n" not in metadata:
        raise CheckError(f"{wheel.name}: METADATA does not say Version: {version}")
    if "wa-auth = wa_auth._cli:main" not in entry_points:
        raise CheckError(f"{wheel.name}: no wa-auth console script in entry_points.txt")


def check_sdist(sdist: Path, version: str) -> None:
    """Check that the sdist holds what building and testing the wheel from it needs."""
    top = f"wa_auth-{version}"
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(f"{top}/") for name in archive.getnames()}
    _require(
        names,
        ["pyproject.toml", "LICENSE", "README.md", "src/wa_auth/py.typed", "tests/conftest.py"],
        sdist.name,
    )


def check_install(uv: str, wheel: Path, work: Path, version: str) -> None:
    """Install *wheel* into a new virtualenv and use it from outside the work tree."""
    venv = work / "venv"
    _run(uv, "venv", "-q", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    constraints = work / "constraints.txt"
    # The runtime dependencies at the versions of uv.lock; the wheel's metadata decides which.
    _run(
        uv,
        *("export", "-q", "--locked", "--no-emit-project", "--no-hashes"),
        *("--format", "requirements.txt", "-o", constraints),
    )
    _run(uv, "pip", "install", "-q", "--python", python, "-c", constraints, wheel)
    probe = (
        "import json, pathlib, wa_auth\n"
        "package = pathlib.Path(wa_auth.__file__).parent\n"
        "print(json.dumps({'file': str(package), 'version': wa_auth.__version__,"
        " 'typed': (package / 'py.typed').is_file()}))\n"
    )
    seen = json.loads(_run(python, "-I", "-c", probe, cwd=work))
    if not Path(seen["file"]).is_relative_to(venv):
        raise CheckError(f"import wa_auth loaded {seen['file']}, not the installed wheel")
    if seen["version"] != version:
        raise CheckError(f"wa_auth.__version__ is {seen['version']!r}, not {version!r}")
    if not seen["typed"]:
        raise CheckError("py.typed is not installed: type checkers would ignore the annotations")
    cli = json.loads(_run(venv / "bin" / "wa-auth", "--version", cwd=work))
    if cli != {"version": version}:
        raise CheckError(f"wa-auth --version printed {cli}, not version {version}")


def main(argv: list[str]) -> int:
    """Build, check and install; print one line per step, or the failure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uv", default=shutil.which("uv") or "uv", help="the uv to run")
    args = parser.parse_args(argv)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    version: str = project["version"]
    with tempfile.TemporaryDirectory(prefix="wa-auth-dist-") as tmp:
        work = Path(tmp)
        try:
            _run(args.uv, "build", "-q", "--out-dir", work / "dist", ROOT)
            wheel = _one(work / "dist", "*.whl")
            sdist = _one(work / "dist", "*.tar.gz")
            check_wheel(wheel, version)
            check_sdist(sdist, version)
            sys.stdout.write(f"dist-check: built {sdist.name} and, from it, {wheel.name}\n")
            check_install(args.uv, wheel, work, version)
        except CheckError as exc:
            sys.stderr.write(f"dist-check: FAILED: {exc}\n")
            return 1
    sys.stdout.write(f"dist-check: the fresh install imports, has py.typed, is {version}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
