"""What a one-message send does not create is still there when asked for (issue 19).

The cold start of `wa-auth send` leaves out the event classes, the other answers' models, the
refresh engine and the file provider, `importlib.metadata` and `shutil`: each is created on
first use. These tests check that every name still resolves (and where it says it lives), that
the stand-ins answer as the stdlib would, and that the effects, now plain classes, still
compare, hash, print and refuse changes as attrs' frozen classes did.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import shutil
import subprocess
import sys

import pytest

import wa_auth
from wa_auth import _version
from wa_auth._cli._usage import terminal_columns
from wa_auth._effects import Step, init

#: The public modules that create some of their names on first use (PEP 562).
LAZY_MODULES = ("wa_auth", "wa_auth.models", "wa_auth.providers", "wa_auth.events")


def _fresh(code: str) -> list[str]:
    """Run *code* in a new interpreter; its stdout's words."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.split()


@pytest.mark.parametrize("module", LAZY_MODULES)
def test_every_name_of_all_resolves_and_dir_lists_it(module):
    """`from <module> import X` works for every X of its `__all__`, and `dir()` shows them all."""
    names = [n for n in importlib.import_module(module).__all__ if n != "__version__"]
    code = (
        f"import {module} as m\n"
        f"for n in {names!r}:\n"
        f"    exec(f'from {module} import {{n}}')\n"
        "missing = sorted(set(m.__all__) - set(dir(m)))\n"
        "print('ok' if not missing else missing)"
    )
    assert _fresh(code) == ["ok"]


@pytest.mark.parametrize(
    ("module", "name", "loads"),
    [
        ("wa_auth.models", "PhoneNumber", "wa_auth._answers"),
        ("wa_auth.models", "MANAGEMENT_SCOPES", "wa_auth._answers"),
        ("wa_auth.providers", "FileTokenProvider", "wa_auth.providers._file"),
        ("wa_auth.providers", "RefreshPolicy", "wa_auth.providers._refresh"),
        ("wa_auth.providers", "TokenActivated", "wa_auth.events"),
    ],
)
def test_a_lazy_name_loads_its_module_on_first_use_only(module, name, loads):
    """Importing the module does not load *loads*; asking for *name* does."""
    code = (
        f"import sys, {module} as m\n"
        f"print({loads!r} in sys.modules)\n"
        f"getattr(m, {name!r})\n"
        f"print({loads!r} in sys.modules)"
    )
    assert _fresh(code) == ["False", "True"]


def test_the_send_path_creates_no_event_class():
    """The guard, the stdlib client and the hub load without `wa_auth.events`."""
    code = (
        "import sys, wa_auth.guards, wa_auth._client._stdlib, wa_auth._client._sync\n"
        "print(sorted(m for m in ('wa_auth.events', 'wa_auth._answers', 'wa_auth._counters')"
        " if m in sys.modules))"
    )
    assert _fresh(code) == ["[]"]


def test_lazy_names_keep_their_module_names():
    """Exported names say `wa_auth`; the others the public module users import them from."""
    from wa_auth import models, providers

    assert models.PhoneNumber is wa_auth.PhoneNumber
    assert models.PhoneNumber.__module__ == "wa_auth"
    assert providers.FileTokenProvider.__module__ == "wa_auth"
    assert models.GranularScope.__module__ == "wa_auth.models"
    assert models.AppUsage.__module__ == "wa_auth.models"
    assert wa_auth.events.LoggingSubscriber.__module__ == "wa_auth.events"
    assert wa_auth.events.Events is wa_auth.Events
    assert wa_auth.Events.__module__ == "wa_auth"


def test_unknown_lazy_names_raise_attribute_error():
    """A name a lazy module does not have is an AttributeError naming it."""
    from wa_auth import models, providers

    with pytest.raises(AttributeError, match="'nope'"):
        _ = models.nope
    with pytest.raises(AttributeError, match="'nope'"):
        _ = providers.nope


# --- the hub ------------------------------------------------------------------------------------


def test_a_hub_without_subscribers_says_so():
    """`Events.subscribers` is what an emitter checks before it builds (or imports) an event."""
    hub = wa_auth.Events()
    assert hub.subscribers == ()

    def seen(_event: object) -> None:
        return None

    hub.subscribe(seen)
    assert hub.subscribers == (seen,)


def test_event_levels_are_what_the_logging_subscriber_logs_at():
    """Failed calls are WARNING, everything else INFO (a subclass inherits its base's level)."""
    from wa_auth import events

    assert events.AuthFailed.level == events.ApiCallFailed.level == logging.WARNING
    assert events.MessageDelivered.level == events.TokenInvalidated.level == logging.INFO

    class Louder(events.AuthFailed):
        name = "custom.failed"

    assert Louder.level == logging.WARNING


# --- the stdlib stand-ins -----------------------------------------------------------------------


def test_version_from_the_dist_info_is_importlib_metadata_s():
    """The dist-info read finds what `importlib.metadata.version` finds."""
    assert _version._dist_info_version() == importlib.metadata.version("wa-auth")


def test_version_falls_back_to_importlib_metadata(monkeypatch):
    """Without a dist-info folder on the path, `importlib.metadata` answers."""
    monkeypatch.setattr(_version, "_dist_info_version", lambda: None)
    _version.package_version.cache_clear()
    try:
        assert _version.package_version() == importlib.metadata.version("wa-auth")
    finally:
        _version.package_version.cache_clear()


def test_dist_info_read_skips_what_it_cannot_read(monkeypatch, tmp_path):
    """A missing path entry and a dist-info without METADATA are skipped, not raised."""
    (tmp_path / "wa_auth-9.9.dist-info").mkdir()
    monkeypatch.setattr(sys, "path", [str(tmp_path / "absent"), str(tmp_path)])
    assert _version._dist_info_version() is None
    (tmp_path / "wa_auth-9.9.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: wa-auth\nVersion: 9.9\n\nbody\n", encoding="utf-8"
    )
    assert _version._dist_info_version() == "9.9"


@pytest.mark.parametrize("columns", [None, "57", "0", "-3", "wide"])
def test_terminal_columns_are_shutil_s(monkeypatch, columns):
    """The help's width is what `shutil.get_terminal_size()` would have said."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert terminal_columns() == shutil.get_terminal_size().columns


# --- the plain effects --------------------------------------------------------------------------


class _Pair(Step):
    __slots__ = ("left", "right")
    left: object
    right: object

    def __init__(self, left: object, right: object) -> None:
        init(self, "left", left)
        init(self, "right", right)


class _Keyed(_Pair):
    __slots__ = ()
    compared = ("left",)
    shown = ("left",)


def test_steps_compare_hash_and_print_by_their_fields():
    """Equal fields: equal and one hash; another type or field: not equal."""
    assert _Pair(1, "a") == _Pair(1, "a")
    assert hash(_Pair(1, "a")) == hash(_Pair(1, "a"))
    assert _Pair(1, "a") != _Pair(1, "b")
    assert _Pair(1, "a") != _Keyed(1, "a")
    assert repr(_Pair(1, "a")) == "_Pair(left=1, right='a')"


def test_steps_compare_and_print_only_the_named_fields():
    """`compared` and `shown` narrow equality (an error's copy) and repr (a provider)."""
    assert _Keyed(1, "a") == _Keyed(1, "b")
    assert repr(_Keyed(1, "secret-ish")) == "_Keyed(left=1)"


def test_steps_are_immutable():
    """Setting or deleting a field raises AttributeError, as attrs' FrozenInstanceError does."""
    step = _Pair(1, "a")
    with pytest.raises(AttributeError, match="immutable"):
        step.left = 2  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del step.left
    assert step.left == 1


def test_steps_copy_and_pickle():
    """A copy (or a pickle's round trip) is an equal step, still immutable."""
    import copy
    import pickle

    step = _Keyed(1, "a")
    for twin in (copy.copy(step), copy.deepcopy(step), pickle.loads(pickle.dumps(step))):
        assert (twin.left, twin.right) == (1, "a")
        assert twin == step
        with pytest.raises(AttributeError):
            twin.left = 2  # type: ignore[misc]


def test_the_library_s_effects_keep_equality():
    """The guard's and the client's effects: equal by value, the error left out where it was."""
    from wa_auth import _core
    from wa_auth.errors import TransientError
    from wa_auth.guards import _effects

    assert _effects.Acquire("r", "to", 1.0) == _effects.Acquire("r", "to", 1.0)
    assert _effects.SendIntent(None) == _effects.SendIntent(None)  # type: ignore[arg-type]
    first, second = TransientError("a"), TransientError("b")
    assert _effects.Handle((), None, first) == _effects.Handle((), None, second)
    assert _core.CheckVerdict("sha256:0") == _core.CheckVerdict("sha256:0")
    assert _core.RecordVerdict("f", first) != _core.RecordVerdict("f", second)
    assert "provider" not in repr(_core.GetToken("123", provider=object()))  # type: ignore[arg-type]
