"""Real broken file systems for tests, importable as `mounts` (`pythonpath = ["tests"]`).

`tiny_filesystem` mounts a tmpfs of a few KiB (a real ENOSPC once it is full) and
`read_only_mount` bind-mounts a directory read-only (root ignores file modes, not a read-only
mount). Both need root and CAP_SYS_ADMIN; where this process may not mount, the test is
skipped with the reason. `fill_disk` fills a file system up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess[bytes] | None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return None
    return subprocess.run(["mount", *args], check=False, capture_output=True)


def _unmount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


@contextlib.contextmanager
def tiny_filesystem(where: Path, kib: int) -> Iterator[Path]:
    """A tmpfs of *kib* KiB under *where*, or a skip where mounting is not allowed."""
    mount = where / f"tiny-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    done = _mount("-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(mount))
    if done is None or done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        yield mount
    finally:
        _unmount(mount)


@contextlib.contextmanager
def read_only_mount(source: Path) -> Iterator[Path]:
    """*source* bind-mounted read-only next to it, or a skip where mounting is not allowed."""
    target = source.parent / f"ro-{uuid.uuid4().hex[:8]}"
    target.mkdir()
    bound = _mount("--bind", str(source), str(target))
    if bound is None or bound.returncode != 0:
        pytest.skip("cannot bind-mount here (needs root and CAP_SYS_ADMIN)")
    try:
        again = _mount("-o", "remount,ro,bind", str(target))
        if again is None or again.returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield target
    finally:
        _unmount(target)


def fill_disk(where: Path) -> Path:
    """Write a file in *where* until the file system is full (ENOSPC); return the file."""
    filler = where / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:
        while True:
            out.write(b"\0" * 4096)
            out.flush()
    return filler
