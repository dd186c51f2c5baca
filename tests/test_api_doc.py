"""docs/api.md is generated from `wa_auth.__all__` and must not drift from it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location(
        "gen_api_doc", ROOT / "scripts" / "gen_api_doc.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_doc_is_current():
    """The page equals what the generator renders (run scripts/gen_api_doc.py to refresh)."""
    gen = _generator()
    assert (ROOT / "docs" / "api.md").read_text(encoding="utf-8") == gen.render(), (
        "docs/api.md is out of date: run python scripts/gen_api_doc.py"
    )


def test_api_doc_names_every_public_name():
    """Every exported name appears on the page."""
    import wa_auth

    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [n for n in wa_auth.__all__ if n != "__version__" and f"`{n}`" not in text]
    assert missing == []
